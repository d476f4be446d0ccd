"""The re-linkage audit: exact expected Recall@K, lift over chance and reciprocal rank per pool size.

Two steps, so that the expensive one runs once:

1. :func:`rank_counts` streams the similarity matrix (:mod:`.kernel`) and keeps, per query,
   the number of distractors scoring strictly higher than the true report, the number that tie
   it, and the number of distractors available (all other reports, or those with the same label
   key for hard negatives).
2. :func:`audit_table` turns those counts into exact expectations over uniformly random pools
   (:mod:`.expected`) for every pool size ``N`` and ``K``, with patient-level bootstrap
   intervals (:mod:`.bootstrap`) when asked. Ties are broken uniformly at random (``recall``,
   ``mrr``, ``median_rank``), with both bounds beside them (``*_ties_against``: a tied
   distractor ranks above the truth; ``*_ties_for``: below it).

:func:`relink_audit` does both (its contract: docs/audit.md).

Pool sizes larger than the database (``N > M``) cannot be drawn without replacement. They are
dropped from the table with a ``UserWarning`` that names them (``oversize="drop"``, the
default) or raise a ``ValueError`` (``oversize="raise"``). ``None`` always means the full
database (``N = M``; for hard negatives, each query's whole matched pool).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence, cast

import numpy as np
import pandas as pd
import torch
from scipy.special import digamma

from ..config import DEFAULT_KS, DEFAULT_POOL_SIZES  # AuditConfig's defaults, defined once
from .bootstrap import patient_bootstrap, percentile_interval
from .expected import (
    _check_ks,
    chance_reciprocal_rank,
    expected_recall,
    expected_recall_ties,
    expected_reciprocal_rank,
    expected_reciprocal_rank_ties,
    tie_median_rank,
)
from .hard_negatives import describe_match, label_groups
from .kernel import as_embeddings, count_better_and_tied, count_within_groups

__all__ = [
    "RankCounts",
    "rank_counts",
    "audit_table",
    "relink_audit",
    "rank_statistics",
    "per_query_recall",
    "TABLE_COLUMNS",
    "DEFAULT_POOL_SIZES",
    "DEFAULT_KS",
]

TABLE_COLUMNS: tuple[str, ...] = (
    "pool_size",
    "k",
    "recall",
    "recall_ties_against",
    "recall_ties_for",
    "chance",
    "lift",
    "n_queries",
    "n_queries_with_ties",
    "full_database",
    "hard_negatives",
    "match",
    "mrr",
    "mrr_ties_against",
    "mrr_ties_for",
    "chance_mrr",
    "median_rank",
    "median_rank_ties_against",
    "median_rank_ties_for",
    "n_full_pools",
    "mean_pool_size",
    "n_excluded",
)
"""Columns of :func:`audit_table` (``ci_low, ci_high, lift_ci_low, lift_ci_high`` are added with a bootstrap)."""


@dataclass(frozen=True)
class RankCounts:
    """Per-query outcome of the similarity pass.

    ``counts[i]``: distractors scoring at least the true report (strictly higher, or tied);
    ``population[i]``: distractors the query's pools are drawn from (``M - 1``, or the size of
    its label group minus one for hard negatives); ``tied[i]``: how many of ``counts[i]`` tie
    the true report exactly (``None`` = no ties). The full-database rank is ``1 + counts`` with
    ties against the query, ``1 + better`` with ties for it, and uniform between the two under
    random tie-breaking.
    """

    counts: np.ndarray
    population: np.ndarray
    hard_negatives: bool = False
    match: str | None = None
    groups: np.ndarray | None = field(default=None, repr=False)
    # ``tied=None`` (no ties) becomes zeros in ``__post_init__``: the attribute is always an array
    tied: np.ndarray = cast("np.ndarray", None)

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts, dtype=np.int64)
        tied = np.zeros_like(counts) if self.tied is None else np.asarray(self.tied, dtype=np.int64)
        if tied.shape != counts.shape or np.any(tied < 0) or np.any(tied > counts):
            raise ValueError(f"tied: expected {counts.shape} counts with 0 <= tied <= counts")
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "tied", tied)

    @property
    def better(self) -> np.ndarray:
        """Distractors scoring strictly above the true report, ``(M,)`` int64."""
        return self.counts - self.tied

    @property
    def mid_ranks(self) -> np.ndarray:
        """Expected full-database rank under random tie-breaking, ``1 + better + tied / 2``, ``(M,)`` float."""
        return 1.0 + self.better + self.tied / 2.0

    @property
    def n_database(self) -> int:
        """``M``, the number of image-report pairs audited."""
        return int(self.counts.shape[0])

    @property
    def ranks(self) -> np.ndarray:
        """Rank of the true report against all the query's distractors, ties against it, ``(M,)`` int64 (1 = top)."""
        return self.counts + 1


def rank_counts(
    image_emb: Any,
    report_emb: Any,
    *,
    labels: Any = None,
    hard_negatives: bool = False,
    match: str = "exact",
    nan_as: float | None = 0.0,
    uncertain_as: float = -1.0,
    chunk_size: int = 4096,
    device: str | torch.device | None = "cpu",
    tie_tol: float = 0.0,
    compute_dtype: torch.dtype = torch.float32,
) -> RankCounts:
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
        raise ValueError(
            f"image_emb has shape {tuple(img.shape)} but report_emb has shape {tuple(rep.shape)}; "
            "row i of image_emb must pair with row i of report_emb (same n and d)"
        )
    m = img.shape[0]
    if m < 2:
        raise ValueError(f"image_emb: expected at least 2 pairs to audit, got {m}")
    if not hard_negatives:
        if labels is not None:
            label_groups(labels, n_rows=m, match=match, nan_as=nan_as, uncertain_as=uncertain_as)  # validate only
        better, tied = count_better_and_tied(img, rep, chunk_size=chunk_size, device=device, tie_tol=tie_tol)
        return RankCounts(counts=better + tied, population=np.full(m, m - 1, dtype=np.int64), tied=tied)
    if labels is None:
        raise ValueError(
            "labels: required when hard_negatives=True (an (M, 14) CheXpert label matrix or (M,) group keys)"
        )
    groups = label_groups(labels, n_rows=m, match=match, nan_as=nan_as, uncertain_as=uncertain_as)
    better, tied, population = count_within_groups(
        img, rep, groups, chunk_size=chunk_size, device=device, tie_tol=tie_tol
    )
    one_d = not isinstance(labels, pd.DataFrame) and np.asarray(labels).ndim == 1
    desc = "given group keys" if one_d else describe_match(match, nan_as, uncertain_as)
    return RankCounts(
        counts=better + tied, population=population, hard_negatives=True, match=desc, groups=groups, tied=tied
    )


def _pool_sizes(pool_sizes: Iterable[int | None], m: int, oversize: str) -> list[tuple[int | None, int]]:
    if oversize not in ("drop", "raise"):
        raise ValueError(f"oversize={oversize!r}: expected 'drop' or 'raise'")
    sizes = list(pool_sizes)
    if not sizes:
        raise ValueError("pool_sizes: expected at least one pool size (an int >= 1, or None for the full database)")
    out: list[tuple[int | None, int]] = []
    dropped: list[int] = []
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
        msg = (
            f"pool_sizes {dropped} exceed the database size M={m}: a pool of N-1 distractors cannot be "
            f"drawn without replacement from {m - 1} other reports"
        )
        if oversize == "raise":
            raise ValueError(msg)
        warnings.warn(msg + "; those rows are dropped from the table", UserWarning, stacklevel=3)
    return out


def _per_query(rc: RankCounts, requested: int | None, size: int, ks: list[int]) -> dict[str, np.ndarray]:
    """Per-query expectations for one pool size over the included queries."""
    draws = rc.population if requested is None else np.minimum(size - 1, rc.population)
    against = expected_recall(rc.counts, rc.population, draws, ks)
    ties_for = expected_recall(rc.better, rc.population, draws, ks)
    has_ties = rc.tied > 0
    recall = against.copy()  # no tie: all three agree; the closed form runs only where there are ties
    if has_ties.any():
        recall[has_ties] = expected_recall_ties(
            rc.better[has_ties], rc.tied[has_ties], rc.population[has_ties], draws[has_ties], ks
        )
    pool = draws + 1
    k = np.asarray(ks, dtype=np.float64)[None, :]
    chance = np.minimum(k, pool[:, None]) / pool[:, None]
    rr_against = expected_reciprocal_rank(rc.counts, rc.population, draws)
    rr_for = expected_reciprocal_rank(rc.better, rc.population, draws)
    rr = rr_against.copy()
    if has_ties.any():
        rr[has_ties] = expected_reciprocal_rank_ties(
            rc.better[has_ties], rc.tied[has_ties], rc.population[has_ties], draws[has_ties]
        )
    return {
        "recall": recall,
        "recall_against": against,
        "recall_for": ties_for,
        "chance": chance,
        "rr": rr,
        "rr_against": rr_against,
        "rr_for": rr_for,
        "chance_rr": chance_reciprocal_rank(pool),
        "pool": pool.astype(np.float64),
        "full_pool": (draws == size - 1) if requested is not None else np.ones_like(draws, bool),
    }


def audit_table(
    rc: RankCounts,
    pool_sizes: Sequence[int | None] = DEFAULT_POOL_SIZES,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    patient_ids: Any = None,
    n_boot: int = 0,
    seed: int = 0,
    level: float = 0.95,
    query_mask: Any = None,
    oversize: str = "drop",
) -> pd.DataFrame:
    """The audit table from per-query counts: one row per (pool size, K).

    Columns (:data:`TABLE_COLUMNS`): ``pool_size`` (``N``; ``M`` for the full database),
    ``k``, ``recall`` (mean expected Recall@K over random pools and uniformly random
    tie-breaking), ``recall_ties_against`` and ``recall_ties_for`` (its bounds: every tied
    distractor above / below the truth), ``chance`` (mean of ``min(K, N_i)/N_i`` over the pools
    ``N_i`` the queries get), ``lift = recall / chance``, ``n_queries``, ``n_queries_with_ties``
    (queries with at least one distractor tied with their own report), ``full_database``,
    ``hard_negatives``, ``match``, ``mrr`` (mean expected reciprocal rank, same convention) with
    ``mrr_ties_against``/``mrr_ties_for`` and ``chance_mrr``, ``median_rank`` (full-database rows
    only: the median of the rank under random tie-breaking) with its two bounds,
    ``n_full_pools`` (queries whose pool has all ``N`` candidates), ``mean_pool_size`` and
    ``n_excluded`` (hard negatives: queries without a single matched distractor, left out of
    every row).

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
            raise ValueError(
                f"query_mask: expected a boolean array of shape ({m},), got dtype {mask.dtype} shape {mask.shape}"
            )
        include = include & mask
    ids = None
    if patient_ids is not None:
        ids = np.asarray(patient_ids)
        if ids.ndim != 1 or ids.shape[0] != m:
            raise ValueError(
                f"patient_ids: expected a 1-D array of length {m} (one id per query), got shape {ids.shape}"
            )
        ids = ids[include]
    sub = RankCounts(counts=rc.counts[include], population=rc.population[include], tied=rc.tied[include])
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
            nan = float("nan")
            mean = (
                (lambda key, col=j, pq=pq: float(pq[key][:, col].mean())) if pq else (lambda key, col=j, nan=nan: nan)
            )
            mean1 = (lambda key, pq=pq: float(pq[key].mean())) if pq else (lambda key, nan=nan: nan)
            recall, chance = mean("recall"), mean("chance")
            rows.append(
                {
                    "pool_size": size,
                    "k": k,
                    "recall": recall,
                    "recall_ties_against": mean("recall_against"),
                    "recall_ties_for": mean("recall_for"),
                    "chance": chance,
                    "lift": recall / chance if pq else nan,
                    "n_queries": n_q,
                    "n_queries_with_ties": int((sub.tied > 0).sum()),
                    "full_database": full,
                    "hard_negatives": rc.hard_negatives,
                    "match": rc.match,
                    "mrr": mean1("rr"),
                    "mrr_ties_against": mean1("rr_against"),
                    "mrr_ties_for": mean1("rr_for"),
                    "chance_mrr": mean1("chance_rr"),
                    "median_rank": tie_median_rank(sub.better, sub.tied) if pq and full else nan,
                    "median_rank_ties_against": float(np.median(sub.counts + 1)) if pq and full else nan,
                    "median_rank_ties_for": float(np.median(sub.better + 1)) if pq and full else nan,
                    "n_full_pools": int(pq["full_pool"].sum()) if pq else 0,
                    "mean_pool_size": float(pq["pool"].mean()) if pq else float("nan"),
                    "n_excluded": n_excluded,
                }
            )
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    if n_boot and n_q > 0:
        reps = patient_bootstrap(
            {"recall": np.concatenate(recall_cols, axis=1), "chance": np.concatenate(chance_cols, axis=1)},
            ids,
            n_boot=n_boot,
            seed=seed,
        )
        lo, hi = percentile_interval(reps["recall"], level)
        with np.errstate(divide="ignore", invalid="ignore"):
            llo, lhi = percentile_interval(reps["recall"] / reps["chance"], level)
        table["ci_low"], table["ci_high"] = lo, hi
        table["lift_ci_low"], table["lift_ci_high"] = llo, lhi
    elif n_boot:
        for col in ("ci_low", "ci_high", "lift_ci_low", "lift_ci_high"):
            table[col] = float("nan")
    return table


def relink_audit(
    image_emb: Any,
    report_emb: Any,
    pool_sizes: Sequence[int | None] = DEFAULT_POOL_SIZES,
    ks: Sequence[int] = DEFAULT_KS,
    labels: Any = None,
    hard_negatives: bool = False,
    *,
    match: str = "exact",
    nan_as: float | None = 0.0,
    uncertain_as: float = -1.0,
    chunk_size: int = 4096,
    device: str | torch.device | None = "cpu",
    tie_tol: float = 0.0,
    patient_ids: Any = None,
    n_boot: int = 0,
    seed: int = 0,
    level: float = 0.95,
    oversize: str = "drop",
) -> pd.DataFrame:
    """Exact expected Recall@K of image-to-report re-linkage over random (or matched) pools.

    Row ``i`` of ``image_emb`` pairs with row ``i`` of ``report_emb`` (``(M, d)``, numpy or
    torch, any float dtype; L2-normalised here). For each ``N`` in ``pool_sizes`` (``None`` =
    the full database) and ``K`` in ``ks``, ``recall`` is the expected Recall@K over uniformly
    random pools of ``N - 1`` distractors drawn without replacement from the other reports
    (``hard_negatives=True``: from the reports whose label key equals the query's; a query
    with fewer matches gets its whole matched pool). Ties are broken uniformly at random
    (``recall``), with the two bounds in ``recall_ties_against`` and ``recall_ties_for``. Returns
    the :func:`audit_table` DataFrame; keyword-only arguments are passed to
    :func:`rank_counts` and :func:`audit_table`.
    """
    rc = rank_counts(
        image_emb,
        report_emb,
        labels=labels,
        hard_negatives=hard_negatives,
        match=match,
        nan_as=nan_as,
        uncertain_as=uncertain_as,
        chunk_size=chunk_size,
        device=device,
        tie_tol=tie_tol,
    )
    return audit_table(
        rc, pool_sizes, ks, patient_ids=patient_ids, n_boot=n_boot, seed=seed, level=level, oversize=oversize
    )


def rank_statistics(rc: RankCounts) -> dict[str, float]:
    """Full-database rank summary under random tie-breaking: MRR, median and mean rank, Recall@1, sizes.

    With ``tied = t`` the rank is uniform on ``better + 1 .. better + t + 1``, so its expected
    reciprocal is ``(H_{better + t + 1} - H_{better}) / (t + 1)`` and ``P(rank = 1) = [better = 0] / (t + 1)``.
    """
    include = rc.population > 0
    if not include.any():
        raise ValueError("rank_statistics: no query has a distractor")
    b = rc.better[include].astype(np.float64)
    t = rc.tied[include].astype(np.float64)
    harmonic = lambda x: digamma(x + 1) + np.euler_gamma  # noqa: E731  H_x
    rr = (harmonic(b + t + 1) - harmonic(b)) / (t + 1)
    return {
        "mrr": float(np.mean(rr)),
        "median_rank": tie_median_rank(b.astype(np.int64), t.astype(np.int64)),
        "mean_rank": float(np.mean(1 + b + t / 2)),
        "recall_at_1": float(np.mean((b == 0) / (t + 1))),
        "n_queries": int(b.size),
        "n_queries_with_ties": int((t > 0).sum()),
        "n_database": rc.n_database,
    }


def per_query_recall(rc: RankCounts, pool_size: int | None, k: int = 1) -> np.ndarray:
    """Each query's expected Recall@K at one pool size under random tie-breaking, ``(M,)`` (NaN: no distractor).

    ``pool_size=None`` is the full database; a pool larger than a query's distractors gets them all.
    """
    m = rc.n_database
    size = m if pool_size is None else int(pool_size)
    if size < 1:
        raise ValueError(f"pool_size={pool_size!r}: expected a positive integer or None")
    out = np.full(m, np.nan)
    include = rc.population > 0
    if include.any():
        sub = RankCounts(counts=rc.counts[include], population=rc.population[include], tied=rc.tied[include])
        out[include] = _per_query(sub, pool_size, size, [int(k)])["recall"][:, 0]
    return out
