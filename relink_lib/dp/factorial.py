"""The factorial decomposition of a DP cut: paired bootstrap over patients and seeds (pure maths, no training).

Every arm of chapter 6's factorial (init x training, :mod:`relink_lib.dp.factorial_stage`) is evaluated
on the same confirmation queries with the same seed indices (seed ``s`` draws the same fresh init and
the same Poisson batches in every arm), so two arms are compared *paired*: a bootstrap replicate
draws patients with replacement (all their queries) **and** seed indices with replacement, and
recomputes every arm's mean per-query Recall@1 on that one resample. Arms with a single row (the
untrained pretrained heads: no seed) keep it in every replicate.

Definitions (R(a): mean over seeds and queries of arm ``a``'s expected R@1 at the reference N;
``base`` the untrained pretrained heads):

- **cut** of arm a: ``1 - R(a) / R(base)`` (:func:`relink_lib.dp.outcomes.relative_reduction`);
- **share** of the cut of arm a that arm b lacks: ``(cut(a) - cut(b)) / cut(a)``. The *noise share*
  is ``share(dp, clip_only)`` at the selected init and epsilon: the part of the DP cut that the
  Gaussian noise adds over the same clipped training without noise. The *re-init share* is
  ``share(reinit + dp, pretrained + dp)`` at the selected epsilon: the part of the fresh-start DP cut
  that disappears when DP fine-tunes the pretrained heads instead;
- **difference** of cuts ``cut(a) - cut(b)`` (e.g. public-only heads against the DP heads).

Each estimate is the statistic on the full sample with a percentile interval of its replicates
(non-finite replicates, a resample with ``R(base) = 0``, left out).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ..audit.bootstrap import percentile_interval

ArmMeans = Mapping[str, Any]
"""Arm name -> its mean R@1: a float (the full sample) or an ``(n_boot,)`` array (replicates)."""
Statistic = Callable[[ArmMeans], Any]
"""A function of the arms' means, vectorised: floats in, a float out; arrays in, an array out."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its paired-bootstrap percentile interval and, for the shares, its definition."""

    value: float
    ci_low: float
    ci_high: float
    definition: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high, "definition": self.definition}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Estimate:
        return cls(float(d["value"]), float(d["ci_low"]), float(d["ci_high"]), str(d.get("definition", "")))

    @property
    def includes_zero(self) -> bool:
        """Whether the interval contains 0 (or is undefined): the data cannot tell the sign."""
        if not (math.isfinite(self.ci_low) and math.isfinite(self.ci_high)):
            return True
        return self.ci_low <= 0.0 <= self.ci_high


def _as_rows(per_query: Any) -> np.ndarray:
    a = np.asarray(per_query, dtype=np.float64)
    return a[None, :] if a.ndim == 1 else a


def _check_arms(arms: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], int, int]:
    if not arms:
        raise ValueError("arms: expected at least one arm")
    rows = {k: _as_rows(v) for k, v in arms.items()}
    n = next(iter(rows.values())).shape[1]
    n_seeds = max(a.shape[0] for a in rows.values())
    for k, a in rows.items():
        if a.ndim != 2 or a.shape[1] != n or a.shape[0] not in (1, n_seeds):
            raise ValueError(
                f"arms[{k!r}]: expected (n,) or (S, n) with n = {n} queries and S = 1 or {n_seeds} seeds, got {a.shape}"
            )
        if not np.isfinite(a).all():
            raise ValueError(f"arms[{k!r}]: per-query values must be finite")
    if n == 0:
        raise ValueError("arms: no queries")
    return rows, n, n_seeds


def patient_index(patient_ids: Any, n: int) -> np.ndarray:
    """Each query's patient as an index in ``[0, P)`` (``None``: every query its own patient)."""
    if patient_ids is None:
        return np.arange(n)
    ids = np.asarray(patient_ids).astype(str)
    if ids.shape != (n,):
        raise ValueError(f"patient_ids: expected one id per query ({n},), got {ids.shape}")
    return np.unique(ids, return_inverse=True)[1].ravel()


def resample_weights(n_patients: int, n_seeds: int, n_boot: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(patient_weights (n_boot, P), seed_counts (n_boot, S))``: how often each patient and each seed index is
    drawn in each replicate (each row sums to P, resp. S)."""
    if n_boot < 1:
        raise ValueError(f"n_boot={n_boot!r}: expected a positive integer")
    rng = np.random.default_rng(seed)
    w = rng.multinomial(n_patients, np.full(n_patients, 1.0 / n_patients), size=n_boot).astype(np.float64)
    picks = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
    counts = np.stack([np.bincount(p, minlength=n_seeds) for p in picks]).astype(np.float64)
    return w, counts


def replicate_means(
    arms: Mapping[str, Any], patient_ids: Any, weights: np.ndarray, seed_counts: np.ndarray
) -> dict[str, np.ndarray]:
    """Each arm's mean per-query value in every replicate given by ``weights`` (patients) and ``seed_counts``.

    ``arms``: name -> ``(S, n)`` per-query values per seed (or ``(n,)`` / ``(1, n)``: no seed). The replicate
    mean of an arm is ``sum_s sum_p c_s w_p T[s, p] / (S * sum_p w_p n_p)`` with ``T[s, p]`` the sum of patient
    p's queries under seed s and ``n_p`` its number of queries: the mean over the resampled seeds and the
    resampled patients' queries.
    """
    rows, n, n_seeds = _check_arms(arms)
    pat = patient_index(patient_ids, n)
    n_pat = int(pat.max()) + 1
    if weights.shape[1] != n_pat or seed_counts.shape[1] != n_seeds:
        raise ValueError(
            f"weights/seed_counts: expected (B, {n_pat}) and (B, {n_seeds}), got {weights.shape}, {seed_counts.shape}"
        )
    sizes = np.bincount(pat, minlength=n_pat).astype(np.float64)
    denom = weights @ sizes
    out = {}
    for name, a in rows.items():
        totals = np.zeros((a.shape[0], n_pat))
        np.add.at(totals.T, pat, a.T)
        if a.shape[0] == 1:
            num = weights @ totals[0]
        else:
            num = ((seed_counts @ totals) * weights).sum(axis=1) / n_seeds
        out[name] = num / denom
    return out


def full_means(arms: Mapping[str, Any]) -> dict[str, float]:
    """Each arm's mean over seeds and queries (the full-sample value)."""
    rows, _, _ = _check_arms(arms)
    return {name: float(a.mean()) for name, a in rows.items()}


def paired_bootstrap(
    arms: Mapping[str, Any],
    patient_ids: Any,
    statistic: Statistic,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    definition: str = "",
) -> Estimate:
    """``statistic`` of the arms' means with a paired percentile interval over patients and seeds (see module)."""
    rows, n, n_seeds = _check_arms(arms)
    n_pat = int(patient_index(patient_ids, n).max()) + 1
    w, c = resample_weights(n_pat, n_seeds, n_boot, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(statistic(full_means(rows)))
        reps = np.asarray(statistic(replicate_means(rows, patient_ids, w, c)), dtype=np.float64)
    reps = reps[np.isfinite(reps)]
    value = value if math.isfinite(value) else math.nan  # e.g. a share of a zero cut
    if len(reps) == 0:
        return Estimate(value, math.nan, math.nan, definition)
    lo, hi = percentile_interval(reps, level)
    return Estimate(value, float(lo), float(hi), definition)


def cut(base: str, arm: str) -> Statistic:
    """The statistic ``1 - R(arm) / R(base)`` (the relative cut)."""
    return lambda m: 1.0 - np.divide(m[arm], m[base])


def share(base: str, full: str, reduced: str) -> Statistic:
    """The statistic ``(cut(full) - cut(reduced)) / cut(full)``: the part of ``full``'s cut that ``reduced`` lacks."""
    cf, cr = cut(base, full), cut(base, reduced)
    return lambda m: np.divide(cf(m) - cr(m), cf(m))


def difference(base: str, a: str, b: str) -> Statistic:
    """The statistic ``cut(a) - cut(b)``."""
    ca, cb = cut(base, a), cut(base, b)
    return lambda m: ca(m) - cb(m)
