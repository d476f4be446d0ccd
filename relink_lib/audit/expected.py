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

import numpy as np
from scipy.special import digamma, gammaln

__all__ = ["log_comb", "hypergeom_lower_tail", "expected_recall", "expected_reciprocal_rank", "chance_recall",
           "chance_reciprocal_rank"]


def log_comb(a: np.ndarray, b: np.ndarray) -> np.ndarray:
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


def _check(counts: np.ndarray, population: np.ndarray, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = _as_int("counts", counts)
    d = _as_int("population", population)
    n = _as_int("draws", draws)
    c, d, n = np.broadcast_arrays(c, d, n)
    if np.any(c < 0) or np.any(c > d):
        bad = int(np.flatnonzero((c < 0) | (c > d))[0])
        raise ValueError(f"counts: entry {bad} is {int(c.flat[bad])}, expected 0 <= count <= population ({int(d.flat[bad])})")
    if np.any(n < 0) or np.any(n > d):
        bad = int(np.flatnonzero((n < 0) | (n > d))[0])
        raise ValueError(f"draws: entry {bad} is {int(n.flat[bad])}, expected 0 <= draws <= population ({int(d.flat[bad])})")
    return c, d, n


def hypergeom_lower_tail(x_max: int, population: np.ndarray | int, successes: np.ndarray | int,
                         draws: np.ndarray | int) -> np.ndarray:
    """``P(X <= x)`` for ``x = 0 .. x_max`` with ``X ~ HG(population, successes, draws)``.

    Returns an array of shape ``(len, x_max + 1)`` (``len`` = broadcast length of the inputs).
    Exact up to float rounding: the sum of at most ``x_max + 1`` log-space pmf terms.
    """
    c, d, n = _check(successes, population, draws)
    c, d, n = (np.atleast_1d(v).ravel() for v in (c, d, n))
    x = np.arange(x_max + 1, dtype=np.float64)[None, :]
    log_pmf = (log_comb(c[:, None], x) + log_comb((d - c)[:, None], n[:, None] - x)
               - log_comb(d, n)[:, None])
    cdf = np.minimum(np.cumsum(np.exp(log_pmf), axis=1), 1.0)
    # exact 1 where the whole support lies at or below x (X <= min(c, n))
    cdf[x >= np.minimum(c, n)[:, None]] = 1.0
    return cdf


def expected_recall(counts: np.ndarray, population: np.ndarray | int, draws: np.ndarray | int,
                    ks: tuple[int, ...] | list[int]) -> np.ndarray:
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


def _check_ks(ks: tuple[int, ...] | list[int]) -> list[int]:
    out = list(ks)
    if not out:
        raise ValueError("ks: expected at least one K")
    for k in out:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"ks: {k!r} is not a positive integer (K of Recall@K)")
    return [int(k) for k in out]
