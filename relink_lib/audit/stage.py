"""Pipeline stage of chapters 4 and 5: the re-linkage audit of every rung of the ladder.

For each rung the held-out (``test``) split of the internal cohort is embedded
(:func:`relink_lib.features.get_embeddings`) and audited three ways from one similarity pass
per pool type:

- random pools (``hard_negatives=False``);
- pathology-matched pools, exact 14-label vector (NaN -> 0, -1 distinct; ``match="exact"``);
- the looser match, same positive-label set (``match="positive"``), as a sensitivity analysis;

each with patient-level bootstrap intervals. Chapter 5 also splits the recall by the instance
detail a report mentions (synthetic cohorts carry ``mentions_device``, ``mentions_measurement``,
``mentions_laterality``, ``mentions_chronic``; real cohorts have no such flags and get no split).

The per-rung computation is cached under ``cache_dir(profile)/audit/<hash>/`` (key: the
embeddings' content, the audit parameters and this package's code version). Results:
``results/<profile>/audit.json`` (:func:`audit_ladder`) and ``results/<profile>/hard_negatives.json``
(:func:`hard_negative_breakdown`). Report text is never read here.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import cache
from ..labels import CHEXPERT_LABELS
from ..profiles import cache_dir

__all__ = ["DETAIL_COLUMNS", "RungAudit", "audit_rung", "audit_ladder", "hard_negative_breakdown", "rank_histogram",
           "load_ladder_audits"]

DETAIL_COLUMNS: tuple[str, ...] = ("mentions_device", "mentions_measurement", "mentions_laterality", "mentions_chronic")
"""Instance-detail flags of synthetic cohorts, used for the chapter-5 split."""

POOL_TYPES: tuple[tuple[str, bool, str], ...] = (("random", False, "exact"), ("matched", True, "exact"),
                                                  ("matched-positive", True, "positive"))


@dataclass
class RungAudit:
    """The audit of one rung: ``table`` (all pool types), ``breakdown`` (by detail), full-database ``ranks``."""

    table: pd.DataFrame
    breakdown: pd.DataFrame
    ranks: dict[str, np.ndarray]
    dropped_pool_sizes: list[int]


def _settings(params: Mapping[str, Any]) -> dict[str, Any]:
    cfg = dict(params.get("audit", {}))
    return {"pool_sizes": tuple(cfg.get("pool_sizes", (10, 100, 1000, 10000, None))), "ks": tuple(cfg.get("ks", (1, 5, 10))),
            "n_boot": int(cfg.get("n_boot", 200)), "chunk_size": int(cfg.get("chunk_size", 4096)),
            "device": cfg.get("device", "auto"), "nan_as": cfg.get("nan_as", 0.0),
            "uncertain_as": cfg.get("uncertain_as", -1.0), "seed": int(params.get("seed", 0))}


def _code_version() -> str:
    from .. import audit

    return cache.code_version(audit)


def audit_rung(image_emb: np.ndarray, report_emb: np.ndarray, pairs: pd.DataFrame, settings: Mapping[str, Any]) -> RungAudit:
    """Audit one rung's held-out embeddings; ``pairs`` holds the rows' ``patient_id``, labels and detail flags.

    Pure function of its inputs (no files): random, exact-matched and positive-matched pools,
    bootstrap CIs by patient, and the split by detail flag (both random and exact-matched pools).
    """
    from .engine import audit_table, rank_counts

    if len(pairs) != len(image_emb):
        raise ValueError(f"pairs: expected {len(image_emb)} rows (one per embedding), got {len(pairs)}")
    missing = [c for c in ("patient_id", *CHEXPERT_LABELS) if c not in pairs.columns]
    if missing:
        raise ValueError(f"pairs: missing column(s) {missing}")
    labels = pairs[list(CHEXPERT_LABELS)]
    patients = pairs["patient_id"].astype(str).to_numpy()
    common = {"patient_ids": patients, "n_boot": settings["n_boot"], "seed": settings["seed"]}
    tables, parts, ranks, dropped = [], [], {}, set()
    for name, hard, match in POOL_TYPES:
        rc = rank_counts(image_emb, report_emb, labels=labels if hard else None, hard_negatives=hard, match=match,
                         nan_as=settings["nan_as"], uncertain_as=settings["uncertain_as"],
                         chunk_size=settings["chunk_size"], device=settings["device"])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t = audit_table(rc, settings["pool_sizes"], settings["ks"], **common)
        for w in caught:
            if "exceed the database size" in str(w.message):
                dropped.update(n for n in settings["pool_sizes"] if n is not None and n > rc.n_database)
        t.insert(0, "pool", name)
        tables.append(t)
        ranks[name] = rc.ranks[rc.population > 0]
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
                    b = audit_table(rc, settings["pool_sizes"], settings["ks"], query_mask=mask, **common)
                b.insert(0, "mentioned", value)
                b.insert(0, "detail", col.removeprefix("mentions_"))
                b.insert(0, "pool", name)
                parts.append(b)
    breakdown = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return RungAudit(table=pd.concat(tables, ignore_index=True), breakdown=breakdown, ranks=ranks,
                     dropped_pool_sizes=sorted(dropped))


def _save(ra: RungAudit, directory: Path) -> None:
    ra.table.to_csv(directory / "table.csv", index=False)
    ra.breakdown.to_csv(directory / "breakdown.csv", index=False)
    np.savez(directory / "ranks.npz", **ra.ranks)
    (directory / "meta.json").write_text(json.dumps({"dropped_pool_sizes": ra.dropped_pool_sizes}))


def _load(directory: Path) -> RungAudit:
    table = pd.read_csv(directory / "table.csv")
    table["match"] = table["match"].astype(object).where(table["match"].notna(), None)
    bpath = directory / "breakdown.csv"
    breakdown = pd.read_csv(bpath) if bpath.stat().st_size > 1 else pd.DataFrame()
    with np.load(directory / "ranks.npz") as z:
        ranks = {k: z[k] for k in z.files}
    meta = json.loads((directory / "meta.json").read_text())
    return RungAudit(table=table, breakdown=breakdown, ranks=ranks, dropped_pool_sizes=meta["dropped_pool_sizes"])


def load_ladder_audits(params: Mapping[str, Any], *, progress: bool = False) -> tuple[Any, list[Any], list[RungAudit]]:
    """``(cohort, rungs, audits)`` for the profile: each rung audited on the test split (cached)."""
    from ..cohorts.stage import get_cohort
    from ..features import get_embeddings
    from ..models.stage import get_ladder

    cohort = get_cohort(params, site="internal")
    rungs = get_ladder(params, progress=progress)
    settings = _settings(params)
    code = _code_version()
    audits = []
    for rung in rungs:
        image_emb, report_emb, rows = get_embeddings(params, cohort, rung, split="test", progress=progress)
        keep = ["patient_id", *CHEXPERT_LABELS, *[c for c in DETAIL_COLUMNS if c in cohort.pairs.columns]]
        pairs = cohort.pairs.iloc[np.asarray(rows)][keep].reset_index(drop=True)
        key = {"step": "audit", "image": image_emb, "report": report_emb, "rows": np.asarray(rows),
               "labels": np.nan_to_num(pairs[list(CHEXPERT_LABELS)].to_numpy(dtype=np.float64), nan=9.0),
               "patients": cache.content_hash(pairs["patient_id"].astype(str).tolist()),
               "details": {c: pairs[c].astype(bool).tolist() for c in DETAIL_COLUMNS if c in pairs.columns},
               "settings": {k: v for k, v in settings.items() if k != "device"}, "code": code}
        path = cache.cached_dir(cache_dir(params["profile"]), "audit", key,
                                lambda tmp, a=image_emb, b=report_emb, p=pairs: _save(audit_rung(a, b, p, settings), tmp))
        audits.append(_load(path))
    return cohort, rungs, audits


def _label_rows(frame: pd.DataFrame, rung: Any, cohort: Any) -> pd.DataFrame:
    out = frame.copy()
    out.insert(0, "cohort", cohort.name)
    out.insert(0, "rung", int(rung.index))
    out.insert(0, "model", rung.name)
    return out


def audit_ladder(params: Mapping[str, Any], *, write: bool = True, progress: bool = False) -> pd.DataFrame:
    """The audit table of every rung (random and matched pools, with CIs); writes ``results/<profile>/audit.json``.

    Columns: ``model, rung, cohort, pool`` then :data:`~relink_lib.audit.engine.TABLE_COLUMNS`
    and ``ci_low, ci_high, lift_ci_low, lift_ci_high``. ``pool`` is ``random``, ``matched``
    (exact label vector) or ``matched-positive`` (same positive labels).
    """
    from ..results import write_results

    started = time.perf_counter()
    cohort, rungs, audits = load_ladder_audits(params, progress=progress)
    table = pd.concat([_label_rows(a.table, r, cohort) for r, a in zip(rungs, audits)], ignore_index=True)
    if write:
        dropped = sorted({n for a in audits for n in a.dropped_pool_sizes})
        write_results(params, "audit", {
            "rows": table,
            "rank_histograms": {r.name: rank_histogram(a.ranks["random"]) for r, a in zip(rungs, audits)},
            "split": "test", "n_database": {r.name: int(len(a.ranks["random"])) for r, a in zip(rungs, audits)},
            "dropped_pool_sizes": dropped,
            "notes": "recall is the exact expected Recall@K over uniformly random pools (ties against the query); "
                     "pool sizes larger than the held-out database are dropped; CIs: patient-level bootstrap, "
                     f"{_settings(params)['n_boot']} replicates, percentile 95%",
        }, cohort=cohort.name, model=[r.name for r in rungs], wall_time_s=time.perf_counter() - started)
    return table


def hard_negative_breakdown(params: Mapping[str, Any], *, write: bool = True, progress: bool = False) -> pd.DataFrame:
    """Chapter 5: recall by instance detail mentioned, random and matched pools, every rung.

    Columns: ``model, rung, cohort, pool, detail, mentioned`` then the audit-table columns.
    Writes ``results/<profile>/hard_negatives.json`` with it and the matched-pool summary.
    """
    from ..results import write_results

    started = time.perf_counter()
    cohort, rungs, audits = load_ladder_audits(params, progress=progress)
    parts = [_label_rows(a.breakdown, r, cohort) for r, a in zip(rungs, audits) if len(a.breakdown)]
    breakdown = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if write:
        table = pd.concat([_label_rows(a.table, r, cohort) for r, a in zip(rungs, audits)], ignore_index=True)
        matched = table[table["pool"] != "random"][["model", "rung", "pool", "match", "pool_size", "k", "recall", "chance",
                                                    "lift", "n_queries", "n_full_pools", "mean_pool_size", "n_excluded",
                                                    "ci_low", "ci_high"]]
        write_results(params, "hard_negatives", {
            "matched_pools": matched, "by_detail": breakdown,
            "detail_columns": [c for c in DETAIL_COLUMNS if c in cohort.pairs.columns], "split": "test",
        }, cohort=cohort.name, model=[r.name for r in rungs], wall_time_s=time.perf_counter() - started)
    return breakdown


def rank_histogram(ranks: Sequence[int] | np.ndarray, n_bins: int = 24) -> dict[str, list]:
    """Counts of full-database ranks in logarithmic bins: ``{"edges": [...], "counts": [...]}``.

    Bin ``i`` holds ranks in ``[edges[i], edges[i+1])``; the first bin is rank 1 alone.
    """
    r = np.asarray(ranks, dtype=np.int64)
    if r.ndim != 1 or r.size == 0 or r.min() < 1:
        raise ValueError("ranks: expected a non-empty 1-D array of ranks >= 1")
    top = int(r.max()) + 1
    edges = np.unique(np.concatenate([[1, 2], np.round(np.logspace(np.log10(2), np.log10(top), n_bins)).astype(np.int64), [top]]))
    counts, _ = np.histogram(r, bins=edges)
    return {"edges": edges.tolist(), "counts": counts.tolist()}
