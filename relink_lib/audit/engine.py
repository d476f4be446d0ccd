"""The re-linkage audit: exact expected Recall@K, lift over chance and reciprocal rank per pool size.

Two steps, so that the expensive one runs once:

1. :func:`rank_counts` streams the similarity matrix (:mod:`.kernel`) and keeps, per query,
   the number of distractors scoring at least as high as the true report and the number of
   distractors available (all other reports, or those with the same label key for hard
   negatives).
2. :func:`audit_table` turns those counts into exact expectations over uniformly random pools
   (:mod:`.expected`) for every pool size ``N`` and ``K``, with patient-level bootstrap
   intervals (:mod:`.bootstrap`) when asked.

:func:`relink_audit` does both (the contract of the design notes, section 3).

Pool sizes larger than the database (``N > M``) cannot be drawn without replacement. They are
dropped from the table with a ``UserWarning`` that names them (``oversize="drop"``, the
default) or raise a ``ValueError`` (``oversize="raise"``). ``None`` always means the full
database (``N = M``; for hard negatives, each query's whole matched pool).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import torch

from .bootstrap import patient_bootstrap, percentile_interval
from .expected import chance_reciprocal_rank, expected_reciprocal_rank, expected_recall, _check_ks
from .hard_negatives import describe_match, label_groups
from .kernel import as_embeddings, count_at_least_own, count_within_groups

__all__ = ["RankCounts", "rank_counts", "audit_table", "relink_audit", "rank_statistics", "TABLE_COLUMNS",
           "DEFAULT_POOL_SIZES", "DEFAULT_KS"]

DEFAULT_POOL_SIZES: tuple[int | None, ...] = (10, 100, 1000, 10000, None)
DEFAULT_KS: tuple[int, ...] = (1, 5, 10)

TABLE_COLUMNS: tuple[str, ...] = (
    "pool_size", "k", "recall", "chance", "lift", "n_queries", "full_database", "hard_negatives", "match",
    "mrr", "chance_mrr", "median_rank", "n_full_pools", "mean_pool_size", "n_excluded",
)
"""Columns of :func:`audit_table` (``ci_low, ci_high, lift_ci_low, lift_ci_high`` are added with a bootstrap)."""


@dataclass(frozen=True)
class RankCounts:
    """Per-query outcome of the similarity pass.

    ``counts[i]``: distractors scoring at least the true report (ties against the query);
    ``population[i]``: distractors the query's pools are drawn from (``M - 1``, or the size of
    its label group minus one for hard negatives). The full-database rank is ``1 + counts``.
    """

    counts: np.ndarray
    population: np.ndarray
    hard_negatives: bool = False
    match: str | None = None
    groups: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_database(self) -> int:
        """``M``, the number of image-report pairs audited."""
        return int(self.counts.shape[0])

    @property
    def ranks(self) -> np.ndarray:
        """Rank of the true report against all the query's distractors, ``(M,)`` int64 (1 = top)."""
        return self.counts + 1


def rank_counts(image_emb: Any, report_emb: Any, *, labels: Any = None, hard_negatives: bool = False,
                match: str = "exact", nan_as: float | None = 0.0, uncertain_as: float = -1.0,
                chunk_size: int = 4096, device: str | torch.device | None = "cpu", tie_tol: float = 0.0,
                compute_dtype: torch.dtype = torch.float32) -> RankCounts:
    """Run the similarity pass; see :class:`RankCounts`.

    ``image_emb``, ``report_emb``: ``(M, d)`` numpy arrays or torch tensors of any float
    dtype, row ``i`` paired with row ``i``; they are L2-normalised here and compared in
    ``compute_dtype``. ``labels`` (``(M, 14)`` CheXpert labels, or ``(M,)`` group keys) is
    required when ``hard_negatives`` is true; see :func:`.hard_negatives.label_groups` for
    ``match``, ``nan_as`` and ``uncertain_as``.
    """
    img = as_embeddings(image_emb, "image_emb", dtype=compute_dtype)
    rep = as_embeddings(report_emb, "report_emb", dtype=compute_dtype)
    if img.shape != rep.shape:
        raise ValueError(f"image_emb has shape {tuple(img.shape)} but report_emb has shape {tuple(rep.shape)}; "
                         "row i of image_emb must pair with row i of report_emb (same n and d)")
    m = img.shape[0]
    if m < 2:
        raise ValueError(f"image_emb: expected at least 2 pairs to audit, got {m}")
    if not hard_negatives:
        if labels is not None:
            label_groups(labels, n_rows=m, match=match, nan_as=nan_as, uncertain_as=uncertain_as)  # validate only
        counts = count_at_least_own(img, rep, chunk_size=chunk_size, device=device, tie_tol=tie_tol)
        return RankCounts(counts=counts, population=np.full(m, m - 1, dtype=np.int64))
    if labels is None:
        raise ValueError("labels: required when hard_negatives=True (an (M, 14) CheXpert label matrix or (M,) group keys)")
    groups = label_groups(labels, n_rows=m, match=match, nan_as=nan_as, uncertain_as=uncertain_as)
    counts, population = count_within_groups(img, rep, groups, chunk_size=chunk_size, device=device, tie_tol=tie_tol)
    one_d = not isinstance(labels, pd.DataFrame) and np.asarray(labels).ndim == 1
    desc = "given group keys" if one_d else describe_match(match, nan_as, uncertain_as)
    return RankCounts(counts=counts, population=population, hard_negatives=True, match=desc, groups=groups)


def _pool_sizes(pool_sizes: Iterable[int | None], m: int, oversize: str) -> list[tuple[int | None, int]]:
    if oversize not in ("drop", "raise"):
        raise ValueError(f"oversize={oversize!r}: expected 'drop' or 'raise'")
    sizes = list(pool_sizes)
    if not sizes:
        raise ValueError("pool_sizes: expected at least one pool size (an int >= 1, or None for the full database)")
    out, dropped = [], []
    for n in sizes:
        if n is None:
            out.append((None, m))
            continue
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"pool_sizes: {n!r} is not a positive integer or None")
        if n > m:
            dropped.append(int(n))
            continue
        out.append((int(n), int(n)))
    if dropped:
        msg = (f"pool_sizes {dropped} exceed the database size M={m}: a pool of N-1 distractors cannot be "
               f"drawn without replacement from {m - 1} other reports")
        if oversize == "raise":
            raise ValueError(msg)
        warnings.warn(msg + "; those rows are dropped from the table", UserWarning, stacklevel=3)
    return out


def _per_query(rc: RankCounts, requested: int | None, size: int, ks: list[int]) -> dict[str, np.ndarray]:
    """Per-query expectations for one pool size over the included queries."""
    draws = rc.population if requested is None else np.minimum(size - 1, rc.population)
    recall = expected_recall(rc.counts, rc.population, draws, ks)
    pool = draws + 1
    k = np.asarray(ks, dtype=np.float64)[None, :]
    chance = np.minimum(k, pool[:, None]) / pool[:, None]
    rr = expected_reciprocal_rank(rc.counts, rc.population, draws)
    return {"recall": recall, "chance": chance, "rr": rr, "chance_rr": chance_reciprocal_rank(pool),
            "pool": pool.astype(np.float64), "full_pool": (draws == size - 1) if requested is not None else np.ones_like(draws, bool)}


def audit_table(rc: RankCounts, pool_sizes: Sequence[int | None] = DEFAULT_POOL_SIZES, ks: Sequence[int] = DEFAULT_KS, *,
                patient_ids: Any = None, n_boot: int = 0, seed: int = 0, level: float = 0.95,
                query_mask: Any = None, oversize: str = "drop") -> pd.DataFrame:
    """The audit table from per-query counts: one row per (pool size, K).

    Columns (:data:`TABLE_COLUMNS`): ``pool_size`` (``N``; ``M`` for the full database),
    ``k``, ``recall`` (mean expected Recall@K), ``chance`` (mean of ``min(K, N_i)/N_i`` over
    the pools ``N_i`` the queries get), ``lift = recall / chance``, ``n_queries``,
    ``full_database``, ``hard_negatives``, ``match``, ``mrr`` (mean expected reciprocal rank)
    and ``chance_mrr``, ``median_rank`` (full-database rows only), ``n_full_pools`` (queries
    whose pool has all ``N`` candidates), ``mean_pool_size`` and ``n_excluded`` (hard
    negatives: queries without a single matched distractor, left out of every row).

    With ``n_boot > 0`` a patient-level bootstrap (``patient_ids``, one per query; ``None``
    resamples queries) adds ``ci_low, ci_high`` (recall) and ``lift_ci_low, lift_ci_high``
    at coverage ``level``. ``query_mask`` (boolean ``(M,)``) averages over a subset of the
    queries (the distractors stay the whole database or matched pool).
    """
    ks = _check_ks(ks)
    m = rc.n_database
    sizes = _pool_sizes(pool_sizes, m, oversize)
    include = rc.population > 0
    n_excluded = int((~include).sum())
    if query_mask is not None:
        mask = np.asarray(query_mask)
        if mask.dtype != bool or mask.shape != (m,):
            raise ValueError(f"query_mask: expected a boolean array of shape ({m},), got dtype {mask.dtype} shape {mask.shape}")
        include = include & mask
    ids = None
    if patient_ids is not None:
        ids = np.asarray(patient_ids)
        if ids.ndim != 1 or ids.shape[0] != m:
            raise ValueError(f"patient_ids: expected a 1-D array of length {m} (one id per query), got shape {ids.shape}")
        ids = ids[include]
    sub = RankCounts(counts=rc.counts[include], population=rc.population[include])
    n_q = int(include.sum())
    rows: list[dict[str, Any]] = []
    recall_cols, chance_cols = [], []
    for requested, size in sizes:
        full = requested is None or size == m
        if n_q == 0:
            pq = None
        else:
            pq = _per_query(sub, requested, size, ks)
            recall_cols.append(pq["recall"])
            chance_cols.append(pq["chance"])
        for j, k in enumerate(ks):
            recall = float(pq["recall"][:, j].mean()) if pq else float("nan")
            chance = float(pq["chance"][:, j].mean()) if pq else float("nan")
            rows.append({
                "pool_size": size, "k": k, "recall": recall, "chance": chance,
                "lift": recall / chance if pq else float("nan"), "n_queries": n_q, "full_database": full,
                "hard_negatives": rc.hard_negatives, "match": rc.match,
                "mrr": float(pq["rr"].mean()) if pq else float("nan"),
                "chance_mrr": float(pq["chance_rr"].mean()) if pq else float("nan"),
                "median_rank": float(np.median(sub.counts + 1)) if pq and full else float("nan"),
                "n_full_pools": int(pq["full_pool"].sum()) if pq else 0,
                "mean_pool_size": float(pq["pool"].mean()) if pq else float("nan"),
                "n_excluded": n_excluded,
            })
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    if n_boot and n_q > 0:
        reps = patient_bootstrap({"recall": np.concatenate(recall_cols, axis=1),
                                  "chance": np.concatenate(chance_cols, axis=1)}, ids, n_boot=n_boot, seed=seed)
        lo, hi = percentile_interval(reps["recall"], level)
        with np.errstate(divide="ignore", invalid="ignore"):
            llo, lhi = percentile_interval(reps["recall"] / reps["chance"], level)
        table["ci_low"], table["ci_high"] = lo, hi
        table["lift_ci_low"], table["lift_ci_high"] = llo, lhi
    elif n_boot:
        for col in ("ci_low", "ci_high", "lift_ci_low", "lift_ci_high"):
            table[col] = float("nan")
    return table


def relink_audit(image_emb: Any, report_emb: Any, pool_sizes: Sequence[int | None] = DEFAULT_POOL_SIZES,
                 ks: Sequence[int] = DEFAULT_KS, labels: Any = None, hard_negatives: bool = False, *,
                 match: str = "exact", nan_as: float | None = 0.0, uncertain_as: float = -1.0,
                 chunk_size: int = 4096, device: str | torch.device | None = "cpu", tie_tol: float = 0.0,
                 patient_ids: Any = None, n_boot: int = 0, seed: int = 0, level: float = 0.95,
                 oversize: str = "drop") -> pd.DataFrame:
    """Exact expected Recall@K of image-to-report re-linkage over random (or matched) pools.

    Row ``i`` of ``image_emb`` pairs with row ``i`` of ``report_emb`` (``(M, d)``, numpy or
    torch, any float dtype; L2-normalised here). For each ``N`` in ``pool_sizes`` (``None`` =
    the full database) and ``K`` in ``ks``, ``recall`` is the expected Recall@K over uniformly
    random pools of ``N - 1`` distractors drawn without replacement from the other reports
    (``hard_negatives=True``: from the reports whose label key equals the query's; a query
    with fewer matches gets its whole matched pool). Ties count against the query. Returns
    the :func:`audit_table` DataFrame; keyword-only arguments are passed to
    :func:`rank_counts` and :func:`audit_table`.
    """
    rc = rank_counts(image_emb, report_emb, labels=labels, hard_negatives=hard_negatives, match=match, nan_as=nan_as,
                     uncertain_as=uncertain_as, chunk_size=chunk_size, device=device, tie_tol=tie_tol)
    return audit_table(rc, pool_sizes, ks, patient_ids=patient_ids, n_boot=n_boot, seed=seed, level=level,
                       oversize=oversize)


def rank_statistics(rc: RankCounts) -> dict[str, float]:
    """Full-database rank summary: MRR, median and mean rank, Recall@1 and the database size."""
    include = rc.population > 0
    ranks = rc.ranks[include].astype(np.float64)
    if ranks.size == 0:
        raise ValueError("rank_statistics: no query has a distractor")
    return {"mrr": float(np.mean(1.0 / ranks)), "median_rank": float(np.median(ranks)),
            "mean_rank": float(np.mean(ranks)), "recall_at_1": float(np.mean(ranks == 1)),
            "n_queries": int(ranks.size), "n_database": rc.n_database}
