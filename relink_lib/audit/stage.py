"""Pipeline stage of chapters 4 and 5: the re-linkage audit of every rung of the ladder.

For each rung the held-out (``test``) split of the internal cohort is embedded
(:func:`relink_lib.features.get_embeddings`) and audited three ways from one similarity pass
per pool type (ties broken uniformly at random, with both bounds):

- random pools (``hard_negatives=False``);
- pathology-matched pools, exact 14-label vector (NaN -> 0, -1 distinct; ``match="exact"``);
- the looser match, same positive-label set (``match="positive"``), as a sensitivity analysis;

each with patient-level bootstrap intervals. The same audit (random and exact-matched pools) runs
on a patient-level sample of the ``train`` split of the same size (pairs the rung was trained
on; :mod:`.seen`), and rows carry ``split``. Chapter 4 also models each held-out query's expected
Recall@1 at a reference pool size on properties derived from its report (:mod:`.risk_factors`;
the text is read only to derive them). Chapter 5 also splits the recall by the instance
detail a report mentions (synthetic cohorts carry ``mentions_device``, ``mentions_measurement``,
``mentions_laterality``, ``mentions_chronic``; real cohorts have no such flags and get no split).

The per-rung computation is cached under ``cache_dir(profile)/audit/<hash>/`` (key: the
embeddings' content, the audit parameters and this package's code version). Results:
``results/<profile>/audit.json`` (:func:`audit_ladder`) and ``results/<profile>/hard_negatives.json``
(:func:`hard_negative_breakdown`). No report text is written anywhere.
"""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .. import cache
from ..cohorts.base import Cohort
from ..cohorts.stage import get_cohort
from ..config import AuditConfig, ProfileLike, as_profile
from ..features import get_embeddings
from ..labels import CHEXPERT_LABELS
from ..models.stage import Rung, get_ladder
from ..profiles import cache_dir
from ..results import write_results
from .engine import RankCounts, audit_table, per_query_recall, rank_counts
from .risk_factors import fit_risk_factors, study_properties, validate_properties
from .seen import sample_patients, seen_unseen_gap

__all__ = [
    "DETAIL_COLUMNS",
    "RungAudit",
    "audit_rung",
    "audit_ladder",
    "hard_negative_breakdown",
    "rank_histogram",
    "load_ladder_audits",
    "reference_pool_size",
    "risk_factor_tables",
]

DETAIL_COLUMNS: tuple[str, ...] = ("mentions_device", "mentions_measurement", "mentions_laterality", "mentions_chronic")
"""Instance-detail flags of synthetic cohorts, used for the chapter-5 split."""

POOL_TYPES: tuple[tuple[str, bool, str], ...] = (
    ("random", False, "exact"),
    ("matched", True, "exact"),
    ("matched-positive", True, "positive"),
)


@dataclass
class RungAudit:
    """The audit of one rung.

    ``table`` (held-out split, all pool types), ``breakdown`` (by detail), full-database
    ``ranks`` (expected rank under random tie-breaking, rounded down, per pool type),
    ``dropped_pool_sizes``; ``train_table`` (the same-size training sample, random and matched
    pools; empty without one), ``gap`` (:func:`.seen.seen_unseen_gap`, random pools) and
    ``counts`` (``test_better``, ``test_tied`` per held-out query, random pools, and the
    ``train_*`` ones) for per-query analyses.
    """

    table: pd.DataFrame
    breakdown: pd.DataFrame
    ranks: dict[str, np.ndarray]
    dropped_pool_sizes: list[int]
    train_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    gap: pd.DataFrame = field(default_factory=pd.DataFrame)
    counts: dict[str, np.ndarray] = field(default_factory=dict)


def _code_version() -> str:
    from .. import audit  # lazily: the package imports this module

    return cache.code_version(audit)


def _check_pairs(pairs: pd.DataFrame, n: int, name: str = "pairs") -> None:
    if len(pairs) != n:
        raise ValueError(f"{name}: expected {n} rows (one per embedding), got {len(pairs)}")
    missing = [c for c in ("patient_id", *CHEXPERT_LABELS) if c not in pairs.columns]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}")


def _audit_train(
    image_emb: np.ndarray,
    report_emb: np.ndarray,
    pairs: pd.DataFrame,
    config: AuditConfig,
    seed: int,
    test_rc: RankCounts,
    test_patients: np.ndarray,
) -> tuple[pd.DataFrame, pd.DataFrame, RankCounts]:
    _check_pairs(pairs, len(image_emb), "train pairs")
    labels = pairs[list(CHEXPERT_LABELS)]
    patients = pairs["patient_id"].astype(str).to_numpy()
    tables, rc_random = [], None
    for name, hard, match in POOL_TYPES[:2]:
        rc = rank_counts(
            image_emb,
            report_emb,
            labels=labels if hard else None,
            hard_negatives=hard,
            match=match,
            nan_as=config.nan_as,
            uncertain_as=config.uncertain_as,
            chunk_size=config.chunk_size,
            device=config.device,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = audit_table(rc, config.pool_sizes, config.ks, patient_ids=patients, n_boot=config.n_boot, seed=seed + 7)
        t.insert(0, "pool", name)
        tables.append(t)
        rc_random = rc if name == "random" else rc_random
    gap = seen_unseen_gap(
        rc_random,
        test_rc,
        config.pool_sizes,
        config.ks,
        train_patients=patients,
        test_patients=test_patients,
        n_boot=config.n_boot,
        seed=seed,
    )
    return pd.concat(tables, ignore_index=True), gap, rc_random


def audit_rung(
    image_emb: np.ndarray,
    report_emb: np.ndarray,
    pairs: pd.DataFrame,
    config: AuditConfig,
    *,
    seed: int = 0,
    train: tuple[np.ndarray, np.ndarray, pd.DataFrame] | None = None,
) -> RungAudit:
    """Audit one rung's held-out embeddings; ``pairs`` holds the rows' ``patient_id``, labels and detail flags.

    Pure function of its inputs (no files): random, exact-matched and positive-matched pools,
    bootstrap CIs by patient, and the split by detail flag (both random and exact-matched pools).
    ``train``: ``(image_emb, report_emb, pairs)`` of the training sample, audited with random and
    exact-matched pools, and the seen/unseen gap of random pools. ``seed``: of the bootstrap.
    """
    _check_pairs(pairs, len(image_emb))
    labels = pairs[list(CHEXPERT_LABELS)]
    patients = pairs["patient_id"].astype(str).to_numpy()
    common = {"patient_ids": patients, "n_boot": config.n_boot, "seed": seed}
    tables, parts, ranks, dropped, counts, test_rc = [], [], {}, set(), {}, None
    for name, hard, match in POOL_TYPES:
        rc = rank_counts(
            image_emb,
            report_emb,
            labels=labels if hard else None,
            hard_negatives=hard,
            match=match,
            nan_as=config.nan_as,
            uncertain_as=config.uncertain_as,
            chunk_size=config.chunk_size,
            device=config.device,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t = audit_table(rc, config.pool_sizes, config.ks, **common)
        for w in caught:
            if "exceed the database size" in str(w.message):
                dropped.update(n for n in config.pool_sizes if n is not None and n > rc.n_database)
        t.insert(0, "pool", name)
        tables.append(t)
        ranks[name] = np.floor(rc.mid_ranks[rc.population > 0]).astype(np.int64)
        if name == "random":
            test_rc = rc
            counts["test_better"], counts["test_tied"] = rc.better, rc.tied
        if name == "matched-positive":
            continue
        for col in DETAIL_COLUMNS:
            if col not in pairs.columns:
                continue
            flag = pairs[col].fillna(False).astype(bool).to_numpy()
            for value in (True, False):
                mask = flag == value
                if not (mask & (rc.population > 0)).any():
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    b = audit_table(rc, config.pool_sizes, config.ks, query_mask=mask, **common)
                b.insert(0, "mentioned", value)
                b.insert(0, "detail", col.removeprefix("mentions_"))
                b.insert(0, "pool", name)
                parts.append(b)
    breakdown = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    train_table, gap = pd.DataFrame(), pd.DataFrame()
    if train is not None:
        train_table, gap, train_rc = _audit_train(*train, config, seed, test_rc, patients)
        counts["train_better"], counts["train_tied"] = train_rc.better, train_rc.tied
    return RungAudit(
        table=pd.concat(tables, ignore_index=True),
        breakdown=breakdown,
        ranks=ranks,
        dropped_pool_sizes=sorted(dropped),
        train_table=train_table,
        gap=gap,
        counts=counts,
    )


def _save(ra: RungAudit, directory: Path) -> None:
    ra.table.to_csv(directory / "table.csv", index=False)
    ra.breakdown.to_csv(directory / "breakdown.csv", index=False)
    ra.train_table.to_csv(directory / "train_table.csv", index=False)
    ra.gap.to_csv(directory / "gap.csv", index=False)
    np.savez(directory / "ranks.npz", **ra.ranks)
    np.savez(directory / "counts.npz", **ra.counts)
    (directory / "meta.json").write_text(json.dumps({"dropped_pool_sizes": ra.dropped_pool_sizes}))


def _read_csv(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path) if path.stat().st_size > 1 else pd.DataFrame()
    if "match" in frame.columns:
        frame["match"] = frame["match"].astype(object).where(frame["match"].notna(), None)
    return frame


def _load(directory: Path) -> RungAudit:
    with np.load(directory / "ranks.npz") as z:
        ranks = {k: z[k] for k in z.files}
    with np.load(directory / "counts.npz") as z:
        counts = {k: z[k] for k in z.files}
    meta = json.loads((directory / "meta.json").read_text())
    return RungAudit(
        table=_read_csv(directory / "table.csv"),
        breakdown=_read_csv(directory / "breakdown.csv"),
        ranks=ranks,
        dropped_pool_sizes=meta["dropped_pool_sizes"],
        train_table=_read_csv(directory / "train_table.csv"),
        gap=_read_csv(directory / "gap.csv"),
        counts=counts,
    )


def load_ladder_audits(params: ProfileLike, *, progress: bool = False) -> tuple[Cohort, list[Rung], list[RungAudit]]:
    """``(cohort, rungs, audits)`` for the profile: each rung audited on the test split and a same-size train sample (cached).

    Each audit carries ``rows`` (positions into ``cohort.pairs`` of its held-out queries) in ``counts``.
    """
    cfg = as_profile(params)
    cohort = get_cohort(cfg, site="internal")
    rungs = get_ladder(cfg, progress=progress)
    config, seed = cfg.audit, cfg.seed
    code = _code_version()
    audits = []
    keep = ["patient_id", *CHEXPERT_LABELS, *[c for c in DETAIL_COLUMNS if c in cohort.pairs.columns]]
    for rung in rungs:
        image_emb, report_emb, rows = get_embeddings(params, cohort, rung, split="test", progress=progress)
        pairs = cohort.pairs.iloc[np.asarray(rows)][keep].reset_index(drop=True)
        train = None
        if config.seen:
            t_img, t_rep, t_rows = get_embeddings(params, cohort, rung, split="train", progress=progress)
            pick = sample_patients(cohort.pairs.iloc[np.asarray(t_rows)]["patient_id"].to_numpy(), len(rows), seed=seed)
            t_pairs = cohort.pairs.iloc[np.asarray(t_rows)[pick]][keep].reset_index(drop=True)
            train = (t_img[pick], t_rep[pick], t_pairs)
        key = {
            "step": "audit",
            "image": image_emb,
            "report": report_emb,
            "rows": np.asarray(rows),
            "labels": np.nan_to_num(pairs[list(CHEXPERT_LABELS)].to_numpy(dtype=np.float64), nan=9.0),
            "patients": cache.content_hash(pairs["patient_id"].astype(str).tolist()),
            "details": {c: pairs[c].astype(bool).tolist() for c in DETAIL_COLUMNS if c in pairs.columns},
            "train": None
            if train is None
            else {
                "image": train[0],
                "report": train[1],
                "labels": np.nan_to_num(train[2][list(CHEXPERT_LABELS)].to_numpy(dtype=np.float64), nan=9.0),
                "patients": cache.content_hash(train[2]["patient_id"].astype(str).tolist()),
            },
            "settings": {**{k: v for k, v in config.to_dict().items() if k != "device"}, "seed": seed},
            "code": code,
        }
        path = cache.cached_dir(
            cache_dir(cfg.name),
            "audit",
            key,
            lambda tmp, a=image_emb, b=report_emb, p=pairs, tr=train: _save(
                audit_rung(a, b, p, config, seed=seed, train=tr), tmp
            ),
        )
        ra = _load(path)
        ra.counts["rows"] = np.asarray(rows)
        audits.append(ra)
    return cohort, rungs, audits


def _label_rows(frame: pd.DataFrame, rung: Rung, cohort: Cohort, split: str | None = None) -> pd.DataFrame:
    out = frame.copy()
    if split is not None:
        out.insert(0, "split", split)
    out.insert(0, "cohort", cohort.name)
    out.insert(0, "rung", int(rung.index))
    out.insert(0, "model", rung.name)
    return out


def reference_pool_size(config: AuditConfig, n_database: int) -> int | None:
    """The pool size of the per-query risk model: ``audit.risk_pool_size`` if it fits, else ``None`` (the full database)."""
    n = config.risk_pool_size
    return None if int(n) > n_database else int(n)


def risk_factor_tables(
    cohort: Cohort, rungs: Sequence[Rung], audits: Sequence[RungAudit], config: AuditConfig, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, int | None]:
    """Per-rung effects of report properties on each held-out query's expected R@1, and the extractor's validation.

    Returns ``(effects, validation, reference_n)``: ``effects`` has ``model, rung`` and the
    columns of :func:`.risk_factors.fit_risk_factors` plus ``mean_outcome``; ``validation`` is
    :func:`.risk_factors.validate_properties` on the held-out reports against the generator's flags
    (empty for real cohorts); ``reference_n`` is the pool size (``None`` = full database).
    """
    rows = audits[0].counts["rows"]
    pairs = cohort.pairs.iloc[rows].reset_index(drop=True)
    props = study_properties(pairs)
    validation = validate_properties(props, pairs)
    ref = reference_pool_size(config, len(rows))
    parts = []
    for rung, ra in zip(rungs, audits):
        if not np.array_equal(ra.counts["rows"], rows):
            raise ValueError(f"rung {rung.name}: its held-out rows differ from rung {rungs[0].name}'s")
        b, t = ra.counts["test_better"], ra.counts["test_tied"]
        rc = RankCounts(counts=b + t, population=np.full(len(b), len(b) - 1), tied=t)
        outcome = per_query_recall(rc, ref, 1)
        eff = fit_risk_factors(
            props, outcome, pairs["patient_id"].astype(str).to_numpy(), n_boot=config.n_boot, seed=seed
        )
        eff.insert(0, "rung", int(rung.index))
        eff.insert(0, "model", rung.name)
        eff["mean_outcome"] = float(np.nanmean(outcome))
        parts.append(eff)
    return pd.concat(parts, ignore_index=True), validation, ref


def audit_ladder(params: ProfileLike, *, write: bool = True, progress: bool = False) -> pd.DataFrame:
    """The audit table of every rung (random and matched pools, with CIs); writes ``results/<profile>/audit.json``.

    Columns: ``model, rung, cohort, split, pool`` then :data:`~relink_lib.audit.engine.TABLE_COLUMNS`
    and ``ci_low, ci_high, lift_ci_low, lift_ci_high``. ``split`` is ``test`` (held out) or
    ``train`` (a same-size patient-level sample of the pairs the rung was trained on; random and
    matched pools). ``pool`` is ``random``, ``matched`` (exact label vector) or
    ``matched-positive`` (same positive labels). The JSON also holds the seen/unseen ``gap``, the
    per-query ``risk_factors`` and the extractor's ``extractor_validation``.
    """
    started = time.perf_counter()
    cfg = as_profile(params)
    cohort, rungs, audits = load_ladder_audits(params, progress=progress)
    parts = []
    for r, a in zip(rungs, audits):
        parts.append(_label_rows(a.table, r, cohort, "test"))
        if len(a.train_table):
            parts.append(_label_rows(a.train_table, r, cohort, "train"))
    table = pd.concat(parts, ignore_index=True)
    if write:
        dropped = sorted({n for a in audits for n in a.dropped_pool_sizes})
        gaps = [_label_rows(a.gap, r, cohort) for r, a in zip(rungs, audits) if len(a.gap)]
        effects, validation, ref = risk_factor_tables(cohort, rungs, audits, cfg.audit, cfg.seed)
        write_results(
            params,
            "audit",
            {
                "rows": table,
                "gap": pd.concat(gaps, ignore_index=True) if gaps else [],
                "risk_factors": effects,
                "risk_pool_size": ref,
                "extractor_validation": validation,
                "rank_histograms": {r.name: rank_histogram(a.ranks["random"]) for r, a in zip(rungs, audits)},
                "split": "test",
                "splits": sorted(set(table["split"])),
                "n_database": {r.name: int(len(a.ranks["random"])) for r, a in zip(rungs, audits)},
                "dropped_pool_sizes": dropped,
                "notes": "recall is the exact expected Recall@K over uniformly random pools and uniformly random "
                "tie-breaking (recall_ties_against / recall_ties_for are the bounds); rows with split=train audit "
                "a patient-level sample of the training pairs of the same size as the held-out split; pool sizes "
                "larger than the database are dropped; CIs: patient-level bootstrap, "
                f"{cfg.audit.n_boot} replicates, percentile 95%",
            },
            cohort=cohort.name,
            model=[r.name for r in rungs],
            wall_time_s=time.perf_counter() - started,
        )
    return table


def hard_negative_breakdown(params: ProfileLike, *, write: bool = True, progress: bool = False) -> pd.DataFrame:
    """Chapter 5: recall by instance detail mentioned, random and matched pools, every rung.

    Columns: ``model, rung, cohort, pool, detail, mentioned`` then the audit-table columns.
    Writes ``results/<profile>/hard_negatives.json`` with it and the matched-pool summary.
    """
    started = time.perf_counter()
    cohort, rungs, audits = load_ladder_audits(params, progress=progress)
    parts = [_label_rows(a.breakdown, r, cohort) for r, a in zip(rungs, audits) if len(a.breakdown)]
    breakdown = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if write:
        table = pd.concat([_label_rows(a.table, r, cohort, "test") for r, a in zip(rungs, audits)], ignore_index=True)
        matched = table[table["pool"] != "random"][
            [
                "model",
                "rung",
                "split",
                "pool",
                "match",
                "pool_size",
                "k",
                "recall",
                "recall_ties_against",
                "recall_ties_for",
                "chance",
                "lift",
                "n_queries",
                "n_queries_with_ties",
                "n_full_pools",
                "mean_pool_size",
                "n_excluded",
                "ci_low",
                "ci_high",
            ]
        ]
        write_results(
            params,
            "hard_negatives",
            {
                "matched_pools": matched,
                "by_detail": breakdown,
                "detail_columns": [c for c in DETAIL_COLUMNS if c in cohort.pairs.columns],
                "split": "test",
            },
            cohort=cohort.name,
            model=[r.name for r in rungs],
            wall_time_s=time.perf_counter() - started,
        )
    return breakdown


def rank_histogram(ranks: Sequence[int] | np.ndarray, n_bins: int = 24) -> dict[str, list]:
    """Counts of full-database ranks in logarithmic bins: ``{"edges": [...], "counts": [...]}``.

    Bin ``i`` holds ranks in ``[edges[i], edges[i+1])``; the first bin is rank 1 alone.
    """
    r = np.asarray(ranks, dtype=np.int64)
    if r.ndim != 1 or r.size == 0 or r.min() < 1:
        raise ValueError("ranks: expected a non-empty 1-D array of ranks >= 1")
    top = int(r.max()) + 1
    edges = np.unique(
        np.concatenate([[1, 2], np.round(np.logspace(np.log10(2), np.log10(top), n_bins)).astype(np.int64), [top]])
    )
    counts, _ = np.histogram(r, bins=edges)
    return {"edges": edges.tolist(), "counts": counts.tolist()}
