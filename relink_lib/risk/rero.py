"""Reconstruction robustness (ReRo) of DP-SGD under the worst-case and the relaxed threat model.

Both bound the probability gamma that an adversary reconstructs a training pair, given a prior
under which a blind guess succeeds with probability ``kappa`` (Hayes et al. 2023; Kaissis et al.
2023; used for medical imaging by Ziller et al. 2024).

- Worst case (the adversary knows every training pair but the target, the training code and
  every released update, and must *match* the target among candidates, kappa = 1 / n_train; or,
  at the re-linkage prior, among a pool of N, kappa = 1 / N):
  gamma = 1 - T(P, Q)(kappa), the composed trade-off curve of the Poisson-subsampled Gaussian at
  type-I error kappa (see :mod:`relink_lib.risk.tradeoff`). This is the optimal test's power.
- Relaxed (the adversary must *reconstruct* the target, so does not know its gradient): it
  cannot run the likelihood-ratio test and uses the generalised likelihood-ratio test (GLRT),
  which thresholds the squared observations S = sum_t ||y_t||^2 / sigma^2. Without the target
  S ~ chi2(d T); with it, S ~ chi2(d T, K / sigma^2) with K ~ Binomial(T, q) the number of steps
  that sampled it. gamma = P(S > c | target) with P(S > c | no target) = kappa. ``dof`` = d is the
  dimension of the observation per step (1: the scalar case, the most favourable to the adversary).

Units: ``noise_multiplier`` is sigma (noise std / clip norm), the observation is scaled by the
clip norm C, so the target's clipped contribution has norm at most 1 (the worst case is norm 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom, chi2, ncx2

from .tradeoff import (
    DEFAULT_DISCRETIZATION,
    Mechanism,
    gdp_mu,
    gdp_tradeoff,
    max_test_beta,
    noiseless_limit_beta,
    tradeoff_curve,
)

__all__ = [
    "ReRoBounds",
    "kappa_for",
    "worst_case_risk",
    "worst_case_risk_lower",
    "worst_case_risk_gdp",
    "relaxed_risk",
    "relaxed_risk_monte_carlo",
    "rero_bounds",
]


def _check_kappa(kappa: float) -> float:
    if (
        isinstance(kappa, bool)
        or not isinstance(kappa, (int, float, np.integer, np.floating))
        or not 0.0 < float(kappa) < 1.0
    ):
        raise ValueError(f"kappa={kappa!r}: expected the prior success probability in (0, 1), e.g. 1 / n_train")
    return float(kappa)


def kappa_for(n_train: int) -> float:
    """The prior of a blind guess among ``n_train`` candidates: 1 / n_train.

    The worst case matches among the training set (kappa = 1 / n_train); chapter 9 also reads the bounds
    at the re-linkage prior, one report in a pool of N (kappa = 1 / N).
    """
    if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or n_train < 2:
        raise ValueError(f"n_train={n_train!r}: expected an integer >= 2")
    return 1.0 / int(n_train)


def worst_case_risk(kappa: float, mech: Mechanism, *, discretization: float = DEFAULT_DISCRETIZATION) -> float:
    """gamma = 1 - T(P, Q)(kappa) from the privacy loss distribution (an upper bound on any attack).

    Equals 1 - (1 - q)^T (1 - kappa) without noise (1 when q = 1), kappa with infinite noise.
    """
    kappa = _check_kappa(kappa)
    return float(1.0 - tradeoff_curve(kappa, mech, discretization=discretization))


def worst_case_risk_lower(kappa: float, mech: Mechanism) -> float:
    """Success of one explicit worst-case attack (reject when max_t y_t exceeds its threshold).

    A certified lower bound on the optimal worst-case adversary's success.
    """
    kappa = _check_kappa(kappa)
    return float(1.0 - max_test_beta(kappa, mech))


def worst_case_risk_gdp(kappa: float, mech: Mechanism) -> float:
    """The Gaussian-DP (CLT) approximation Phi(mu - Phi^{-1}(1 - kappa)); exact when q = 1."""
    kappa = _check_kappa(kappa)
    if mech.noise_multiplier == 0.0 and not mech.trivial and mech.sample_rate < 1.0:
        return float(1.0 - noiseless_limit_beta(kappa, mech))
    return float(1.0 - gdp_tradeoff(kappa, gdp_mu(mech)))


def _ncx2_sf(c: float, df: float, nc: np.ndarray) -> np.ndarray:
    nc = np.asarray(nc, dtype=float)
    out = np.ones_like(nc)
    # far above the threshold the survival function is 1 to double precision (z < -250)
    exact = (nc <= 1e6) | (nc <= 4.0 * c)
    out[exact] = ncx2.sf(c, df, nc[exact]) if np.any(nc[exact] > 0) else chi2.sf(c, df)
    central = exact & (nc == 0)
    if np.any(central):
        out[central] = chi2.sf(c, df)
    return np.clip(out, 0.0, 1.0)


def relaxed_risk(kappa: float, mech: Mechanism, *, dof: int = 1) -> float:
    """gamma of the GLRT adversary at level kappa (see the module docstring); ``dof`` >= 1 per step.

    sum_k Binom(k; T, q) P(chi2(d T, k / sigma^2) > c), c the (1 - kappa) quantile of chi2(d T).
    Never above :func:`worst_case_risk` (the GLRT is one test among those the bound covers).
    """
    kappa = _check_kappa(kappa)
    if isinstance(dof, bool) or not isinstance(dof, (int, np.integer)) or dof < 1:
        raise ValueError(f"dof={dof!r}: expected an integer >= 1 (dimension of one released update)")
    if mech.trivial:
        return kappa
    if mech.noise_multiplier == 0.0:
        return float(1.0 - noiseless_limit_beta(kappa, mech))
    q, steps, sigma = mech.sample_rate, mech.steps, mech.noise_multiplier
    df = float(dof) * steps
    c = float(chi2.isf(kappa, df))
    if q == 1.0:
        ks, pmf = np.array([steps]), np.array([1.0])
    else:
        lo, hi = binom.ppf(1e-17, steps, q), binom.isf(1e-17, steps, q)
        ks = np.arange(int(max(lo - 1, 0)), int(min(hi + 1, steps)) + 1)
        pmf = binom.pmf(ks, steps, q)
    sf = _ncx2_sf(c, df, ks / sigma**2)
    sf[ks == 0] = kappa
    risk = float(np.dot(pmf, sf) / pmf.sum())
    return min(max(risk, kappa), 1.0)


def relaxed_risk_monte_carlo(
    kappa: float, mech: Mechanism, *, dof: int = 1, n_samples: int = 100_000, seed: int = 0
) -> float:
    """Monte Carlo estimate of :func:`relaxed_risk`: simulate the updates, threshold sum ||y_t||^2.

    The threshold is the exact chi2 quantile; the target's unit-norm contribution is added in the
    steps that sample it. Memory O(n_samples x T) floats.
    """
    kappa = _check_kappa(kappa)
    if mech.trivial or mech.noise_multiplier == 0.0:
        raise ValueError("relaxed_risk_monte_carlo: needs 0 < noise_multiplier < inf, sample_rate > 0, steps > 0")
    rng = np.random.default_rng(seed)
    sigma, q, steps = mech.noise_multiplier, mech.sample_rate, mech.steps
    c = float(chi2.isf(kappa, dof * steps))
    stat = np.zeros(n_samples)
    for _ in range(steps):
        included = rng.random(n_samples) < q
        y = rng.normal(0.0, sigma, size=(n_samples, dof))
        y[:, 0] += included  # unit-norm contribution along the first axis (the GLRT is rotation invariant)
        stat += (y**2).sum(axis=1) / sigma**2
    return float(np.mean(stat > c))


@dataclass(frozen=True)
class ReRoBounds:
    """The reconstruction risks of one trained model (probabilities in [kappa, 1]).

    As a dict: ``dataclasses.asdict``."""

    kappa: float
    worst_case: float
    worst_case_lower: float
    worst_case_gdp: float
    relaxed: float
    relaxed_dof: int


def rero_bounds(
    kappa: float, mech: Mechanism, *, dof: int = 1, discretization: float = DEFAULT_DISCRETIZATION
) -> ReRoBounds:
    """All the bounds of one mechanism at prior ``kappa``."""
    return ReRoBounds(
        kappa=_check_kappa(kappa),
        worst_case=worst_case_risk(kappa, mech, discretization=discretization),
        worst_case_lower=worst_case_risk_lower(kappa, mech),
        worst_case_gdp=worst_case_risk_gdp(kappa, mech),
        relaxed=relaxed_risk(kappa, mech, dof=dof),
        relaxed_dof=int(dof),
    )


def no_dp_bounds(kappa: float, dof: int = 1) -> ReRoBounds:
    """Non-private training gives no bound: every risk is 1 (the model may reveal the pair exactly)."""
    kappa = _check_kappa(kappa)
    return ReRoBounds(
        kappa=kappa, worst_case=1.0, worst_case_lower=math.nan, worst_case_gdp=1.0, relaxed=1.0, relaxed_dof=int(dof)
    )
