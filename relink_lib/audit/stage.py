"""Pipeline stage of chapters 4 and 5: the re-linkage audit of every rung of the ladder.

For each rung the held-out (``test``) split of the internal cohort is embedded
(:func:`relink_lib.features.get_embeddings`) and audited three ways from one similarity pass
per pool type (ties broken uniformly at random, with both bounds):

- random pools (``hard_negatives=False``);
- pathology-matched pools, exact 14-label vector (NaN -> 0, -1 distinct; ``match="exact"``);
- the looser match, same positive-label set (``match="positive"``), as a sensitivity analysis;

each with patient-level bootstrap intervals. The same audit (random and exact-matched pools) runs
on a patient-level sample of the ``train`` split of the held-out split's size (all of it when it is
smaller; pairs the rung's encoders and heads were trained on), and rows carry ``split``. The
seen/unseen gap compares the two splits at equal N and equal database size (:mod:`.seen`: the
larger split cut by patient to the smaller one's size, over several draws). Chapter 4 also models
each held-out query's expected Recall@1 at a reference pool size on properties derived from its
report (:mod:`.risk_factors`, a fractional logit; the text is read only to derive them), and
chapter 6 refits that model under the DP heads (:func:`risk_factor_refit`). Chapter 5 also splits
the recall by the instance detail a report mentions (synthetic cohorts carry ``mentions_device``,
``mentions_measurement``, ``mentions_laterality``, ``mentions_chronic``; real cohorts have no such
flags and get no split).

The per-rung computation is cached under ``cache_dir(profile)/audit/<hash>/`` (key: the
embeddings' content, the audit parameters and this package's code version). The stage writes no
results: :func:`audit_ladder` returns an :class:`AuditResult` and :func:`hard_negative_breakdown` a
:class:`HardNegativeResult`, whose ``to_json()`` the chapters' notebooks pass to
:func:`relink_lib.results.write_results` (``results/<profile>/audit.json``, ``hard_negatives.json``).
No report text is written anywhere.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from torch import nn

from .. import cache
from ..cohorts.base import Cohort
from ..cohorts.stage import get_cohort
from ..config import AuditConfig, ProfileLike, as_profile
from ..features import embed_features, get_embeddings, get_features
from ..labels import CHEXPERT_LABELS
from ..models.stage import Rung, get_ladder
from ..numerics import cache_token
from ..profiles import cache_dir
from ..results import frame_from_records, jsonable
from .engine import RankCounts, audit_table, per_query_recall, rank_counts
from .risk_factors import GROUND_TRUTH, fit_risk_factors, study_properties, validate_properties
from .seen import N_DRAWS, equal_size_draws, sample_patients, seen_unseen_gap

__all__ = [
    "DETAIL_COLUMNS",
    "MATCHED_POOL_COLUMNS",
    "RungAudit",
    "AuditResult",
    "HardNegativeResult",
    "audit_rung",
    "audit_ladder",
    "hard_negative_breakdown",
    "rank_histogram",
    "load_ladder_audits",
    "risk_factor_pool_size",
    "risk_factor_tables",
    "RiskRefit",
    "risk_factor_refit",
]

DETAIL_COLUMNS: tuple[str, ...] = ("mentions_device", "mentions_measurement", "mentions_laterality", "mentions_chronic")
"""Instance-detail flags of synthetic cohorts, used for the chapter-5 split."""

MATCHED_POOL_COLUMNS: tuple[str, ...] = (
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
)
"""Columns of :attr:`HardNegativeResult.matched_pools` (``matched_pools`` of ``hard_negatives.json``)."""

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
    ``dropped_pool_sizes``; ``train_table`` (the training sample of the held-out split's size, or the
    whole training split when smaller; random and matched pools; empty without one), ``gap``
    (:func:`.seen.seen_unseen_gap` at equal N and database size, random pools) and
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
    test: tuple[np.ndarray, np.ndarray, RankCounts, np.ndarray],
    n_draws: int,
) -> tuple[pd.DataFrame, pd.DataFrame, RankCounts]:
    """The training split's audit (a sample of the held-out split's size) and the equal-N seen/unseen gap."""
    _check_pairs(pairs, len(image_emb), "train pairs")
    t_img, t_rep, test_rc, test_patients = test
    patients = pairs["patient_id"].astype(str).to_numpy()
    size = min(len(image_emb), test_rc.n_database)  # the common database size
    pick = sample_patients(patients, size, seed=seed)  # the whole split when it is the smaller one
    labels = pairs[list(CHEXPERT_LABELS)].iloc[pick]
    tables: list[pd.DataFrame] = []
    rc_random: RankCounts | None = None
    for name, hard, match in POOL_TYPES[:2]:
        rc = rank_counts(
            image_emb[pick],
            report_emb[pick],
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
            t = audit_table(
                rc, config.pool_sizes, config.ks, patient_ids=patients[pick], n_boot=config.n_boot, seed=seed + 7
            )
        t.insert(0, "pool", name)
        tables.append(t)
        rc_random = rc if name == "random" else rc_random
    if rc_random is None:
        raise ValueError("POOL_TYPES: expected a 'random' pool for the seen/unseen gap")
    draws = partial(equal_size_draws, n_draws=n_draws, seed=seed, chunk_size=config.chunk_size, device=config.device)
    seen = draws(image_emb, report_emb, patients, size, whole=rc_random if len(pick) == len(patients) else None)
    unseen = draws(t_img, t_rep, test_patients, size, whole=test_rc if test_rc.n_database == size else None)
    gap = seen_unseen_gap(seen, unseen, config.pool_sizes, config.ks, n_boot=config.n_boot, seed=seed)
    return pd.concat(tables, ignore_index=True), gap, rc_random


def audit_rung(
    image_emb: np.ndarray,
    report_emb: np.ndarray,
    pairs: pd.DataFrame,
    config: AuditConfig,
    *,
    seed: int = 0,
    train: tuple[np.ndarray, np.ndarray, pd.DataFrame] | None = None,
    n_draws: int = N_DRAWS,
) -> RungAudit:
    """Audit one rung's held-out embeddings; ``pairs`` holds the rows' ``patient_id``, labels and detail flags.

    Pure function of its inputs (no files): random, exact-matched and positive-matched pools,
    bootstrap CIs by patient, and the split by detail flag (both random and exact-matched pools).
    ``train``: ``(image_emb, report_emb, pairs)`` of the training split. A patient-level sample of it
    of the held-out split's size (all of it when it is smaller) is audited with random and
    exact-matched pools (``train_table``), and the seen/unseen gap of random pools compares the two
    splits at equal N and equal database size (:mod:`.seen`: the larger split cut by patient to the
    smaller one's size, ``n_draws`` times). ``seed``: of the samples and the bootstrap.
    """
    _check_pairs(pairs, len(image_emb))
    labels = pairs[list(CHEXPERT_LABELS)]
    patients = pairs["patient_id"].astype(str).to_numpy()
    common = {"patient_ids": patients, "n_boot": config.n_boot, "seed": seed}
    tables: list[pd.DataFrame] = []
    parts: list[pd.DataFrame] = []
    ranks: dict[str, np.ndarray] = {}
    dropped: set[int] = set()
    counts: dict[str, np.ndarray] = {}
    test_rc: RankCounts | None = None
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
        if test_rc is None:
            raise ValueError("POOL_TYPES: expected a 'random' pool for the train split's comparison")
        train_table, gap, train_rc = _audit_train(
            *train, config, seed, (image_emb, report_emb, test_rc, patients), n_draws
        )
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


def _audit_into(
    image_emb: np.ndarray,
    report_emb: np.ndarray,
    pairs: pd.DataFrame,
    config: AuditConfig,
    seed: int,
    train: tuple[np.ndarray, np.ndarray, pd.DataFrame] | None,
    directory: Path,
) -> None:
    """Audit one rung (:func:`audit_rung`) and save it to the cache entry ``directory``."""
    _save(audit_rung(image_emb, report_emb, pairs, config, seed=seed, train=train), directory)


def _save(ra: RungAudit, directory: Path) -> None:
    ra.table.to_csv(directory / "table.csv", index=False)
    ra.breakdown.to_csv(directory / "breakdown.csv", index=False)
    ra.train_table.to_csv(directory / "train_table.csv", index=False)
    ra.gap.to_csv(directory / "gap.csv", index=False)
    np.savez(directory / "ranks.npz", **ra.ranks)  # type: ignore[arg-type]  # numpy's stub types **kwds as bool
    np.savez(directory / "counts.npz", **ra.counts)  # type: ignore[arg-type]  # (allow_pickle): arrays are allowed
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
    gap = _read_csv(directory / "gap.csv")
    if "subsampled" in gap.columns:  # "" (neither split cut) reads back as NaN
        gap["subsampled"] = gap["subsampled"].fillna("").astype(str)
    return RungAudit(
        table=_read_csv(directory / "table.csv"),
        breakdown=_read_csv(directory / "breakdown.csv"),
        ranks=ranks,
        dropped_pool_sizes=meta["dropped_pool_sizes"],
        train_table=_read_csv(directory / "train_table.csv"),
        gap=gap,
        counts=counts,
    )


def load_ladder_audits(params: ProfileLike, *, progress: bool = False) -> tuple[Cohort, list[Rung], list[RungAudit]]:
    """``(cohort, rungs, audits)`` for the profile: each rung audited on the test split and a same-size
    train sample (cached).

    Each audit carries ``rows`` (positions into ``cohort.pairs`` of its held-out queries) in ``counts``.
    """
    cfg = as_profile(params)
    cohort = get_cohort(cfg, site="internal")
    rungs = get_ladder(cfg, progress=progress)
    config, seed = cfg.audit, cfg.seed
    code = cache.stage_code_version(__name__)
    audits = []
    keep = ["patient_id", *CHEXPERT_LABELS, *[c for c in DETAIL_COLUMNS if c in cohort.pairs.columns]]
    for rung in rungs:
        image_emb, report_emb, rows = get_embeddings(params, cohort, rung, split="test", progress=progress)
        pairs = cohort.pairs.iloc[np.asarray(rows)][keep].reset_index(drop=True)
        train = None
        if config.seen:  # the whole training split: audit_rung samples it and draws the equal-size subsamples
            t_img, t_rep, t_rows = get_embeddings(params, cohort, rung, split="train", progress=progress)
            t_pairs = cohort.pairs.iloc[np.asarray(t_rows)][keep].reset_index(drop=True)
            train = (t_img, t_rep, t_pairs)
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
            "settings": {
                **{k: v for k, v in config.to_dict().items() if k != "device"},
                "seed": seed,
                "gap_draws": N_DRAWS,
            },
            "code": code,
            "numerics": cache_token(),  # the dispatch and the audit's BLAS
        }
        path = cache.cached_dir(
            cache_dir(cfg.name),
            "audit",
            key,
            partial(_audit_into, image_emb, report_emb, pairs, config, seed, train),
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


def risk_factor_pool_size(config: AuditConfig, n_database: int) -> int | None:
    """The pool size N at which :func:`risk_factor_tables` takes each held-out query's expected Recall@1 as
    the outcome of the per-study risk model: ``audit.risk_pool_size`` if it fits in the held-out database
    of ``n_database`` pairs, else ``None`` (the full database). Saved as ``risk_pool_size`` in ``audit.json``."""
    n = config.risk_pool_size
    return None if int(n) > n_database else int(n)


def _truth(pairs: pd.DataFrame) -> pd.DataFrame | None:
    """The generator's flags of the text properties (synthetic cohorts), or ``None`` (real cohorts have none)."""
    cols = [c for c in GROUND_TRUTH.values() if c in pairs.columns]
    return pairs[cols].reset_index(drop=True) if cols else None


def risk_factor_tables(
    cohort: Cohort, rungs: Sequence[Rung], audits: Sequence[RungAudit], config: AuditConfig, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, int | None]:
    """Per-rung effects of report properties on each held-out query's expected R@1, and the extractor's validation.

    Returns ``(effects, validation, reference_n)``: ``effects`` has ``model, rung`` and the
    columns of :func:`.risk_factors.fit_risk_factors` (fractional logit, marginal and adjusted without
    report length, cluster-robust by patient; ``or_truth``: the generator's own flag, synthetic cohorts);
    ``validation`` is :func:`.risk_factors.validate_properties` on the held-out reports against the
    generator's flags (empty for real cohorts); ``reference_n`` is the pool size (``None`` = full
    database). ``seed`` is unused (the intervals are analytic); kept for the callers.
    """
    rows = audits[0].counts["rows"]
    pairs = cohort.pairs.iloc[rows].reset_index(drop=True)
    props = study_properties(pairs)
    validation = validate_properties(props, pairs)
    truth = _truth(pairs)
    patients = pairs["patient_id"].astype(str).to_numpy()
    ref = risk_factor_pool_size(config, len(rows))
    parts = []
    for rung, ra in zip(rungs, audits):
        if not np.array_equal(ra.counts["rows"], rows):
            raise ValueError(f"rung {rung.name}: its held-out rows differ from rung {rungs[0].name}'s")
        b, t = ra.counts["test_better"], ra.counts["test_tied"]
        rc = RankCounts(counts=b + t, population=np.full(len(b), len(b) - 1), tied=t)
        eff = fit_risk_factors(props, per_query_recall(rc, ref, 1), patients, truth=truth)
        eff.insert(0, "rung", int(rung.index))
        eff.insert(0, "model", rung.name)
        parts.append(eff)
    return pd.concat(parts, ignore_index=True), validation, ref


@dataclass(frozen=True, eq=False)
class RiskRefit:
    """Chapter 6's refit of the per-study model (:func:`risk_factor_refit`): ``effects`` has ``variant``
    (``pretrained``: the rung's own heads, as in chapter 4; ``dp``: the released DP heads), ``model``,
    ``rung`` and the columns of :func:`.risk_factors.fit_risk_factors`; ``pool_size``: the reference N of
    the outcome (``None``: the full held-out database); ``n_database``: held-out pairs."""

    effects: pd.DataFrame
    pool_size: int | None
    n_database: int

    def to_json(self) -> dict[str, Any]:
        """The JSON payload (``risk_refit`` of ``mitigation.json``; NaN -> null)."""
        return jsonable({"effects": self.effects, "pool_size": self.pool_size, "n_database": self.n_database})

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> "RiskRefit":
        """The inverse of :meth:`to_json`."""
        ref = payload.get("pool_size")
        return cls(
            effects=frame_from_records(payload["effects"]),
            pool_size=None if ref is None else int(ref),
            n_database=int(payload["n_database"]),
        )


def risk_factor_refit(
    params: ProfileLike,
    cohort: Cohort,
    rung: Rung,
    heads: Mapping[str, tuple[nn.Module, nn.Module]],
    variants: Sequence[str] = ("pretrained", "dp"),
    *,
    progress: bool = False,
) -> RiskRefit:
    """The per-study model refit under each of ``variants``' heads (chapter 6: before and after the mitigation).

    The held-out split's cached pre-projection features of ``rung`` go through each variant's
    ``(image head, text head)``; one similarity pass (random pools) gives each query's expected
    Recall@1 at chapter 4's reference N (:func:`risk_factor_pool_size`), modelled on the same report
    properties by :func:`.risk_factors.fit_risk_factors`. Not cached (two passes and a few GLM fits).
    """
    cfg = as_profile(params)
    feats = get_features(cfg, cohort, rung, "test", progress=progress)
    pairs = cohort.pairs.iloc[np.asarray(feats.rows)].reset_index(drop=True)
    props, truth = study_properties(pairs), _truth(pairs)
    patients = pairs["patient_id"].astype(str).to_numpy()
    ref = risk_factor_pool_size(cfg.audit, len(pairs))
    parts = []
    for variant in variants:
        if variant not in heads:
            raise KeyError(f"variants: {variant!r} has no heads (have {sorted(heads)})")
        image, report = embed_features(feats, *heads[variant])
        rc = rank_counts(image, report, chunk_size=cfg.audit.chunk_size, device=cfg.audit.device)
        eff = fit_risk_factors(props, per_query_recall(rc, ref, 1), patients, truth=truth)
        eff.insert(0, "rung", int(rung.index))
        eff.insert(0, "model", rung.name)
        eff.insert(0, "variant", variant)
        parts.append(eff)
    return RiskRefit(effects=pd.concat(parts, ignore_index=True), pool_size=ref, n_database=len(pairs))


def _notes(n_boot: int) -> str:
    return (
        "recall is the exact expected Recall@K over uniformly random pools and uniformly random "
        "tie-breaking (recall_ties_against / recall_ties_for are the bounds); rows with split=train audit "
        "a patient-level sample of the training pairs of the held-out split's size (all of them when "
        "fewer); the gap compares seen and unseen pairs at equal N and equal database size (the larger "
        f"split cut by patient to the smaller one's size, {N_DRAWS} draws, pooled in the bootstrap); pool "
        "sizes larger than the database are dropped; CIs: patient-level bootstrap, "
        f"{n_boot} replicates, percentile 95%; risk_factors: fractional logit of each held-out query's "
        "expected Recall@1, marginal and adjusted (without report length), Wald 95% CIs cluster-robust "
        "by patient"
    )


@dataclass(frozen=True, eq=False)
class AuditResult:
    """Chapter 4's stage result (:func:`audit_ladder`); :meth:`to_json` is ``results/<profile>/audit.json``'s payload.

    - ``table`` (JSON ``rows``): the audit table of every rung, columns ``model, rung, cohort, split, pool``
      then :data:`~relink_lib.audit.engine.TABLE_COLUMNS` and ``ci_low, ci_high, lift_ci_low, lift_ci_high``.
      ``split`` is ``test`` (held out) or ``train`` (a patient-level sample of the pairs the rung was
      trained on, of the held-out split's size or all of them when fewer; random and matched pools).
      ``pool`` is ``random``, ``matched`` (exact label vector) or ``matched-positive`` (same positive labels).
    - ``gap``: the seen/unseen gap per rung at equal N and database size (:func:`.seen.seen_unseen_gap`,
      labelled rows; empty without a training sample).
    - ``risk_factors``, ``risk_pool_size``, ``extractor_validation``: :func:`risk_factor_tables`.
    - ``rank_histograms``: per model, :func:`rank_histogram` of the full-database ranks (random pools).
    - ``n_database``: per model, the held-out database size; ``dropped_pool_sizes``: requested pool sizes
      larger than it; ``notes``: how to read the numbers.
    """

    table: pd.DataFrame
    gap: pd.DataFrame
    risk_factors: pd.DataFrame
    risk_pool_size: int | None
    extractor_validation: pd.DataFrame
    rank_histograms: Mapping[str, Mapping[str, list]]
    n_database: Mapping[str, int]
    dropped_pool_sizes: tuple[int, ...] = ()
    notes: str = ""

    @property
    def cohort(self) -> str:
        """The audited cohort's name (the table's ``cohort`` column)."""
        return str(self.table["cohort"].iloc[0])

    @property
    def models(self) -> list[str]:
        """The rungs' model names, least specialised first."""
        return [str(m) for m in dict.fromkeys(self.table.sort_values("rung", kind="stable")["model"])]

    @property
    def splits(self) -> list[str]:
        """The splits the table holds (``["test"]`` or ``["test", "train"]``)."""
        return sorted(set(self.table["split"]))

    def to_json(self) -> dict[str, Any]:
        """The JSON payload (field names of ``audit.json``; tables as row records, NaN -> null)."""
        return jsonable(
            {
                "rows": self.table,
                "gap": self.gap,
                "risk_factors": self.risk_factors,
                "risk_pool_size": self.risk_pool_size,
                "extractor_validation": self.extractor_validation,
                "rank_histograms": self.rank_histograms,
                "split": "test",
                "splits": self.splits,
                "n_database": self.n_database,
                "dropped_pool_sizes": list(self.dropped_pool_sizes),
                "notes": self.notes,
            }
        )

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> "AuditResult":
        """The inverse of :meth:`to_json` (a written ``audit.json`` also works: its ``provenance`` is ignored)."""
        ref = payload.get("risk_pool_size")
        return cls(
            table=frame_from_records(payload["rows"]),
            gap=frame_from_records(payload.get("gap")),
            risk_factors=frame_from_records(payload.get("risk_factors")),
            risk_pool_size=None if ref is None else int(ref),
            extractor_validation=frame_from_records(payload.get("extractor_validation")),
            rank_histograms={str(k): dict(v) for k, v in (payload.get("rank_histograms") or {}).items()},
            n_database={str(k): int(v) for k, v in (payload.get("n_database") or {}).items()},
            dropped_pool_sizes=tuple(int(n) for n in payload.get("dropped_pool_sizes") or ()),
            notes=str(payload.get("notes", "")),
        )


@dataclass(frozen=True, eq=False)
class HardNegativeResult:
    """Chapter 5's stage result (:func:`hard_negative_breakdown`); :meth:`to_json` is ``hard_negatives.json``'s payload.

    ``matched_pools``: the held-out audit rows of the matched pools (``matched``, ``matched-positive``),
    columns :data:`MATCHED_POOL_COLUMNS`; ``by_detail``: recall by instance detail mentioned, random and
    exact-matched pools, every rung (columns ``model, rung, cohort, pool, detail, mentioned`` then the
    audit-table columns; empty for cohorts without detail flags); ``detail_columns``: the cohort's
    detail flags; ``split``: the audited split (``test``).
    """

    matched_pools: pd.DataFrame
    by_detail: pd.DataFrame
    detail_columns: tuple[str, ...] = ()
    split: str = "test"

    def to_json(self) -> dict[str, Any]:
        """The JSON payload (field names of ``hard_negatives.json``; tables as row records, NaN -> null)."""
        return jsonable(
            {
                "matched_pools": self.matched_pools,
                "by_detail": self.by_detail,
                "detail_columns": list(self.detail_columns),
                "split": self.split,
            }
        )

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> "HardNegativeResult":
        """The inverse of :meth:`to_json` (a written ``hard_negatives.json`` also works)."""
        return cls(
            matched_pools=frame_from_records(payload["matched_pools"]),
            by_detail=frame_from_records(payload.get("by_detail")),
            detail_columns=tuple(str(c) for c in payload.get("detail_columns") or ()),
            split=str(payload.get("split", "test")),
        )


def audit_ladder(params: ProfileLike, *, progress: bool = False) -> AuditResult:
    """Chapter 4's stage: every rung audited (random and matched pools, with CIs), the seen/unseen gap,
    the per-study risk model and the rank histograms (:class:`AuditResult`; cached per rung, writes nothing)."""
    cfg = as_profile(params)
    cohort, rungs, audits = load_ladder_audits(params, progress=progress)
    parts = []
    for r, a in zip(rungs, audits):
        parts.append(_label_rows(a.table, r, cohort, "test"))
        if len(a.train_table):
            parts.append(_label_rows(a.train_table, r, cohort, "train"))
    gaps = [_label_rows(a.gap, r, cohort) for r, a in zip(rungs, audits) if len(a.gap)]
    effects, validation, ref = risk_factor_tables(cohort, rungs, audits, cfg.audit, cfg.seed)
    return AuditResult(
        table=pd.concat(parts, ignore_index=True),
        gap=pd.concat(gaps, ignore_index=True) if gaps else pd.DataFrame(),
        risk_factors=effects,
        risk_pool_size=ref,
        extractor_validation=validation,
        rank_histograms={r.name: rank_histogram(a.ranks["random"]) for r, a in zip(rungs, audits)},
        n_database={r.name: int(len(a.ranks["random"])) for r, a in zip(rungs, audits)},
        dropped_pool_sizes=tuple(sorted({n for a in audits for n in a.dropped_pool_sizes})),
        notes=_notes(cfg.audit.n_boot),
    )


def hard_negative_breakdown(params: ProfileLike, *, progress: bool = False) -> HardNegativeResult:
    """Chapter 5's stage: the matched-pool rows and the recall by instance detail mentioned, random and
    matched pools, every rung (:class:`HardNegativeResult`; from the cached audits, writes nothing)."""
    cohort, rungs, audits = load_ladder_audits(params, progress=progress)
    parts = [_label_rows(a.breakdown, r, cohort) for r, a in zip(rungs, audits) if len(a.breakdown)]
    table = pd.concat([_label_rows(a.table, r, cohort, "test") for r, a in zip(rungs, audits)], ignore_index=True)
    return HardNegativeResult(
        matched_pools=table[table["pool"] != "random"][list(MATCHED_POOL_COLUMNS)],
        by_detail=pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(),
        detail_columns=tuple(c for c in DETAIL_COLUMNS if c in cohort.pairs.columns),
        split="test",
    )


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
