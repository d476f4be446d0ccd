"""Exact expectations over uniformly random pools (hypergeometric), from per-query counts.

A query has ``population`` possible distractors ``D``, of which ``counts`` ``c`` score at
least as high as its own report. A pool of ``N`` candidates is the true report plus
``n = N - 1`` distractors drawn uniformly without replacement, so the number ``X`` of pool
distractors ranking at or above the truth is hypergeometric ``HG(D, c, n)`` and the true
report's rank is ``1 + X``:

- Recall@K = P(X <= K - 1), a hypergeometric lower tail of at most ``K`` terms;
- reciprocal rank E[1 / (1 + X)] = (D + 1) / ((n + 1)(c + 1)) * (1 - C(D - c, n + 1) / C(D + 1, n + 1)),
  from ``C(c, x) / (x + 1) = C(c + 1, x + 1) / (c + 1)`` and Vandermonde's identity.

All functions are vectorised over queries (arrays of equal length, or scalars broadcast).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.special import digamma, gammaln

__all__ = [
    "log_comb",
    "hypergeom_lower_tail",
    "expected_recall",
    "expected_reciprocal_rank",
    "chance_recall",
    "expected_recall_ties",
    "expected_reciprocal_rank_ties",
    "tie_median_rank",
    "chance_reciprocal_rank",
]


def log_comb(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    """``log C(a, b)`` elementwise for ``0 <= b <= a`` (``-inf`` where ``b < 0`` or ``b > a``)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    valid = (b >= 0) & (b <= a)
    with np.errstate(invalid="ignore"):
        out = gammaln(a + 1) - gammaln(b + 1) - gammaln(np.where(valid, a - b, 0) + 1)
    return np.where(valid, out, -np.inf)


def _as_int(name: str, x: np.ndarray | int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name}: expected integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _check(
    counts: np.ndarray | int, population: np.ndarray | int, draws: np.ndarray | int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = _as_int("counts", counts)
    d = _as_int("population", population)
    n = _as_int("draws", draws)
    c, d, n = np.broadcast_arrays(c, d, n)
    if np.any(c < 0) or np.any(c > d):
        bad = int(np.flatnonzero((c < 0) | (c > d))[0])
        raise ValueError(
            f"counts: entry {bad} is {int(c.flat[bad])}, expected 0 <= count <= population ({int(d.flat[bad])})"
        )
    if np.any(n < 0) or np.any(n > d):
        bad = int(np.flatnonzero((n < 0) | (n > d))[0])
        raise ValueError(
            f"draws: entry {bad} is {int(n.flat[bad])}, expected 0 <= draws <= population ({int(d.flat[bad])})"
        )
    return c, d, n


def hypergeom_lower_tail(
    x_max: int, population: np.ndarray | int, successes: np.ndarray | int, draws: np.ndarray | int
) -> np.ndarray:
    """``P(X <= x)`` for ``x = 0 .. x_max`` with ``X ~ HG(population, successes, draws)``.

    Returns an array of shape ``(len, x_max + 1)`` (``len`` = broadcast length of the inputs).
    Exact up to float rounding: the sum of at most ``x_max + 1`` log-space pmf terms.
    """
    c, d, n = _check(successes, population, draws)
    c, d, n = (np.atleast_1d(v).ravel() for v in (c, d, n))
    x = np.arange(x_max + 1, dtype=np.float64)[None, :]
    log_pmf = log_comb(c[:, None], x) + log_comb((d - c)[:, None], n[:, None] - x) - log_comb(d, n)[:, None]
    cdf = np.minimum(np.cumsum(np.exp(log_pmf), axis=1), 1.0)
    # exact 1 where the whole support lies at or below x (X <= min(c, n))
    cdf[x >= np.minimum(c, n)[:, None]] = 1.0
    return cdf


def expected_recall(
    counts: np.ndarray, population: np.ndarray | int, draws: np.ndarray | int, ks: tuple[int, ...] | list[int]
) -> np.ndarray:
    """Expected Recall@K per query, shape ``(n_queries, len(ks))``.

    ``counts``: distractors scoring at least the truth; ``population``: distractors available;
    ``draws``: distractors in the pool (``N - 1``). Recall@K = P(X <= K - 1).
    """
    ks = _check_ks(ks)
    tail = hypergeom_lower_tail(max(ks) - 1, population, counts, draws)
    return tail[:, [k - 1 for k in ks]]


def expected_reciprocal_rank(counts: np.ndarray, population: np.ndarray | int, draws: np.ndarray | int) -> np.ndarray:
    """Expected reciprocal rank ``E[1 / (1 + X)]`` per query, shape ``(n_queries,)`` (closed form)."""
    c, d, n = _check(counts, population, draws)
    c, d, n = (np.atleast_1d(v).ravel().astype(np.float64) for v in (c, d, n))
    # ratio = C(D - c, n + 1) / C(D + 1, n + 1), zero when n + 1 > D - c
    log_ratio = log_comb(d - c, n + 1) - log_comb(d + 1, n + 1)
    one_minus = -np.expm1(log_ratio)  # exact 1 where log_ratio = -inf
    return np.clip((d + 1) / ((n + 1) * (c + 1)) * one_minus, 0.0, 1.0)


def chance_recall(pool_size: np.ndarray | int, ks: tuple[int, ...] | list[int]) -> np.ndarray:
    """Recall@K of a random ranking, ``min(K, N) / N``, shape ``(len(pool_size), len(ks))``."""
    ks = _check_ks(ks)
    size = np.atleast_1d(np.asarray(pool_size, dtype=np.float64)).ravel()
    if np.any(size < 1):
        raise ValueError("pool_size: expected pool sizes >= 1")
    k = np.asarray(ks, dtype=np.float64)[None, :]
    return np.minimum(k, size[:, None]) / size[:, None]


def chance_reciprocal_rank(pool_size: np.ndarray | int) -> np.ndarray:
    """Reciprocal rank of a random ranking, ``H_N / N`` (harmonic number), shape ``(len,)``."""
    size = np.atleast_1d(np.asarray(pool_size, dtype=np.float64)).ravel()
    if np.any(size < 1):
        raise ValueError("pool_size: expected pool sizes >= 1")
    return (digamma(size + 1) + np.euler_gamma) / size


def _check_ks(ks: Sequence[int]) -> list[int]:
    out = list(ks)
    if not out:
        raise ValueError("ks: expected at least one K")
    for k in out:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"ks: {k!r} is not a positive integer (K of Recall@K)")
    return [int(k) for k in out]


# --- uniformly random tie-breaking -------------------------------------------------------------
#
# A query has ``b`` distractors scoring strictly above its own report, ``t`` scoring exactly the
# same (ties) and ``r = D - b - t`` below. A pool of ``n`` distractors holds ``X`` of the better
# ones and ``Y`` of the tied ones, ``(X, Y, n - X - Y)`` multivariate hypergeometric, and a fair
# adversary breaks the tie among the truth and its ``Y`` tied distractors uniformly at random, so
# the truth's rank is ``1 + X + U`` with ``U`` uniform on ``0 .. Y``. Then
#
#   P(rank <= K) = sum_{x < K} [ (K - x) A(x) + sum_{y < K - x} pmf(x, y) (1 - (K - x) / (y + 1)) ],
#   A(x) = E[1 / (Y + 1); X = x] = C(b, x) [C(D - b + 1, n - x + 1) - C(r, n - x + 1)] / ((t + 1) C(D, n)),
#
# from min(K - x, y + 1) / (y + 1) = (K - x) / (y + 1) + a correction that is non-zero only for
# y < K - x, and C(t, y) / (y + 1) = C(t + 1, y + 1) / (t + 1) with Vandermonde's identity. It is
# ``O(K^2)`` terms per query whatever ``t`` is. The same expectation is the average of the
# tie-free formula over ``c = b .. b + t`` (a uniformly random order of the tied items restricted
# to the pool is a uniformly random order of the pool's tied items); :func:`expected_reciprocal_rank_ties`
# uses that form, with cumulative sums over ``c``.


def _log1mexp(x: np.ndarray) -> np.ndarray:
    """``log(1 - exp(x))`` for ``x <= 0`` (``-inf`` at ``x = 0``), stable at both ends."""
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(x > -0.6931471805599453, np.log(-np.expm1(x)), np.log1p(-np.exp(x)))
    return np.where(x >= 0, -np.inf, out)


def _check_ties(
    better: np.ndarray, tied: np.ndarray, population: np.ndarray | int, draws: np.ndarray | int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    b = _as_int("better", better)
    t = _as_int("tied", tied)
    b, t = np.broadcast_arrays(b, t)
    if np.any(t < 0):
        bad = int(np.flatnonzero(t < 0)[0])
        raise ValueError(f"tied: entry {bad} is {int(t.flat[bad])}, expected a count >= 0")
    c, d, n = _check(b + t, population, draws)  # 0 <= better + tied <= population, 0 <= draws <= population
    b, t = np.broadcast_to(b, c.shape), np.broadcast_to(t, c.shape)
    if np.any(b < 0):
        bad = int(np.flatnonzero(b < 0)[0])
        raise ValueError(f"better: entry {bad} is {int(b.flat[bad])}, expected a count >= 0")
    return tuple(np.atleast_1d(v).ravel().astype(np.float64) for v in (b, t, d, n))  # type: ignore[return-value]


SMALL_TIES = 64
"""Queries with at most this many ties use the average over tie positions; more ties use the
closed form. Against exact rational arithmetic at M = 43,793 both are within 1e-9 absolute
(the log-space hypergeometric itself carries ~4e-11)."""


def expected_recall_ties(
    better: np.ndarray,
    tied: np.ndarray,
    population: np.ndarray | int,
    draws: np.ndarray | int,
    ks: tuple[int, ...] | list[int],
) -> np.ndarray:
    """Expected Recall@K under random pools and uniformly random tie-breaking, ``(n_queries, len(ks))``.

    ``better``: distractors scoring strictly above the truth; ``tied``: distractors scoring the
    same; ``population``: distractors available (``D``); ``draws``: distractors in the pool
    (``N - 1``). Exact: for ``tied <= SMALL_TIES`` the mean of :func:`expected_recall` over
    ``c = better .. better + tied``, otherwise the multivariate hypergeometric closed form above
    (``O(K^2)`` terms whatever ``tied`` is); the two are the same expectation. With ``tied = 0``
    it equals :func:`expected_recall`.
    """
    ks = _check_ks(ks)
    b, t, d, n = _check_ties(better, tied, population, draws)
    out = np.empty((b.shape[0], len(ks)))
    small = t <= SMALL_TIES
    if small.any():
        reps = (t[small] + 1).astype(np.int64)
        starts = np.concatenate([[0], np.cumsum(reps)[:-1]])
        owner = np.repeat(np.arange(reps.size), reps)
        c = b[small][owner] + (np.arange(owner.size) - starts[owner])
        vals = expected_recall(
            c.astype(np.int64), d[small][owner].astype(np.int64), n[small][owner].astype(np.int64), ks
        )
        out[small] = np.add.reduceat(vals, starts, axis=0) / reps[:, None]
    if (~small).any():
        out[~small] = _recall_ties_closed_form(b[~small], t[~small], d[~small], n[~small], ks)
    return out


_SHORT_PRODUCT = 256


def _log_binom_ratio(r: np.ndarray, a: np.ndarray, m: np.ndarray) -> np.ndarray:
    """``log C(r, m) - log C(a, m)`` elementwise for ``r <= a`` (``-inf`` where ``m > r``).

    For ``m <= 256`` it is the sum of ``log1p(-(a - r) / (a - i))`` over ``i < m``, accurate even
    when the ratio is close to 1 (where the difference of two log-binomials of size ~ a log a
    would lose ~1e-11 absolutely); larger ``m`` keep that difference (the ratio is then far from 1).
    """
    r, a, m = (np.asarray(v, dtype=np.float64) for v in np.broadcast_arrays(r, a, m))
    with np.errstate(invalid="ignore"):
        out = log_comb(r, m) - log_comb(a, m)
    out = np.where(m > r, -np.inf, out)
    short = (m <= _SHORT_PRODUCT) & (m <= r)
    if short.any():
        rs, as_, ms = r[short], a[short], m[short]
        i = np.arange(int(ms.max()), dtype=np.float64)[None, :]
        with np.errstate(divide="ignore", invalid="ignore"):  # masked entries (i >= m) may divide by zero
            terms = np.log1p(-(as_ - rs)[:, None] / (as_[:, None] - i))
        out[short] = np.where(i < ms[:, None], terms, 0.0).sum(axis=1)
    return out


def _recall_ties_closed_form(b: np.ndarray, t: np.ndarray, d: np.ndarray, n: np.ndarray, ks: list[int]) -> np.ndarray:
    """The closed form above on validated float arrays (see :func:`expected_recall_ties`)."""
    r = d - b - t
    log_total = log_comb(d, n)
    out = np.empty((b.shape[0], len(ks)))
    for j, k in enumerate(ks):
        x = np.arange(k, dtype=np.float64)[None, :]  # x = 0 .. K-1
        m = n[:, None] - x + 1
        log_hi = log_comb((d - b + 1)[:, None], m)
        gap = np.where(
            np.isfinite(log_hi),
            _log_binom_ratio(np.broadcast_to(r[:, None], m.shape), np.broadcast_to((d - b + 1)[:, None], m.shape), m),
            -np.inf,
        )
        log_a = log_comb(b[:, None], x) - log_total[:, None] - np.log(t + 1)[:, None] + log_hi + _log1mexp(gap)
        total = ((k - x) * np.exp(log_a)).sum(axis=1)
        for xi in range(k):
            y = np.arange(k - xi, dtype=np.float64)[None, :]  # y = 0 .. K-x-1
            log_pmf = (
                log_comb(b, xi)[:, None]
                + log_comb(t[:, None], y)
                + log_comb(r[:, None], n[:, None] - xi - y)
                - log_total[:, None]
            )
            total += (np.exp(log_pmf) * (1.0 - (k - xi) / (y + 1.0))).sum(axis=1)
        out[:, j] = total
    out = np.clip(out, 0.0, 1.0)
    worst = 1.0 + np.minimum(b + t, n)  # the truth's lowest possible rank in the pool
    out[worst[:, None] <= np.asarray(ks, dtype=np.float64)[None, :]] = 1.0
    return out


def expected_reciprocal_rank_ties(
    better: np.ndarray, tied: np.ndarray, population: np.ndarray | int, draws: np.ndarray | int
) -> np.ndarray:
    """Expected reciprocal rank under random pools and uniformly random tie-breaking, ``(n_queries,)``.

    The mean of :func:`expected_reciprocal_rank` over ``c = better .. better + tied``, from one
    table of it over ``c = 0 .. D`` per distinct ``(D, N - 1)`` and its cumulative sums, so the
    cost is ``O(M)`` per pool size however many ties there are.
    """
    b, t, d, n = _check_ties(better, tied, population, draws)
    out = np.empty(b.shape[0])
    keys = np.stack([d, n], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    for g, (dg, ng) in enumerate(uniq):
        members = np.flatnonzero(inverse == g)
        c = np.arange(int(dg) + 1)
        table = expected_reciprocal_rank(c, int(dg), int(ng))
        cums = np.concatenate([[0.0], np.cumsum(table)])
        lo = b[members].astype(np.int64)
        hi = (b[members] + t[members]).astype(np.int64) + 1
        out[members] = (cums[hi] - cums[lo]) / (hi - lo)
        exact = t[members] == 0  # no tie: the table entry itself, free of cancellation
        out[members[exact]] = table[lo[exact]]
    return np.clip(out, 0.0, 1.0)


def tie_median_rank(better: np.ndarray, tied: np.ndarray) -> float:
    """Median rank of a random query under uniformly random tie-breaking.

    Query ``i``'s full-database rank is uniform on ``better_i + 1 .. better_i + tied_i + 1``;
    this is the median of the mixture of those distributions over queries, with ``np.median``'s
    convention (the midpoint of the two middle ranks where the distribution function is exactly
    1/2), so it equals ``np.median(better + 1)`` when there are no ties.
    """
    b = _as_int("better", better).ravel().astype(np.float64)
    t = _as_int("tied", tied).ravel().astype(np.float64)
    if b.shape != t.shape or b.size == 0:
        raise ValueError(f"better, tied: expected two non-empty arrays of one length, got {b.shape} and {t.shape}")

    def cdf(r: float) -> float:
        return float(np.clip((r - b) / (t + 1.0), 0.0, 1.0).mean())

    def first_at_least(level: float, strict: bool) -> int:
        lo, hi = 1, int((b + t).max()) + 1
        while lo < hi:
            mid = (lo + hi) // 2
            v = cdf(mid)
            ok = v > level + 1e-12 if strict else v >= level - 1e-12
            if ok:
                hi = mid
            else:
                lo = mid + 1
        return lo

    low = first_at_least(0.5, strict=False)
    if abs(cdf(low) - 0.5) <= 1e-12:
        return (low + first_at_least(0.5, strict=True)) / 2.0
    return float(low)
