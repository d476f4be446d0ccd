"""Trade-off curves of the Poisson-subsampled Gaussian mechanism composed over T steps.

DP-SGD on the heads releases, at each of ``steps`` steps, the sum of the clipped per-sample
gradients of a Poisson sample (each pair kept with probability ``sample_rate`` = q) plus
Gaussian noise of standard deviation ``noise_multiplier`` x clip norm (sigma x C). Scaled by C,
one step with and without the target is the pair

    P = N(0, sigma^2)                       (target absent)
    Q = (1 - q) N(0, sigma^2) + q N(1, sigma^2)   (target present)

and T steps are the T-fold product. The *trade-off curve* beta(alpha) is the smallest type-II
error of any test between the two at type-I error alpha (Dong, Roth and Su's f-DP). Three ways
to compute it live here:

- :func:`tradeoff_curve`: from the privacy loss distribution (PLD) of ``dp_accounting``: the two
  hockey-stick profiles delta_remove(eps) (Q against P) and delta_add(eps) (P against Q) give
  T(P, Q)(alpha) = sup_{eps >= 0} max(0, 1 - delta_remove - e^eps alpha, e^-eps (1 - alpha - delta_add)).
  Numerically robust from sigma -> 0 (the exact noiseless limit, used once a certified explicit
  test is within ``tol`` of it) to sigma -> inf (beta = 1 - alpha).
- :func:`gdp_tradeoff` with :func:`gdp_mu`: the Gaussian-DP central-limit approximation
  mu = q sqrt(T (e^{1/sigma^2} - 1)), exact when q = 1 (mu = sqrt(T) / sigma).
- :func:`monte_carlo_profile`: a Monte Carlo estimate of the privacy loss and of delta(eps).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from dp_accounting.pld import privacy_loss_distribution as pld_lib
from scipy.special import ndtr, ndtri

__all__ = [
    "Mechanism",
    "tradeoff_curve",
    "tradeoff_from_profile",
    "privacy_profile",
    "noiseless_limit_beta",
    "max_test_beta",
    "gdp_mu",
    "gdp_tradeoff",
    "monte_carlo_privacy_loss",
    "monte_carlo_profile",
]

#: Base PLD discretisation of the privacy loss (nats); widened as (0.5 / sigma)^2 for small sigma.
DEFAULT_DISCRETIZATION = 1e-3
#: Number of eps grid points of the profile -> trade-off conversion.
_EPS_GRID = 2001


@dataclass(frozen=True)
class Mechanism:
    """A Poisson-subsampled Gaussian mechanism composed over ``steps`` steps.

    ``noise_multiplier`` is sigma (noise std / clip norm; ``math.inf`` = output independent of the
    data, 0 = no noise), ``sample_rate`` q in [0, 1], ``steps`` T >= 0.
    """

    noise_multiplier: float
    sample_rate: float
    steps: int

    def __post_init__(self) -> None:
        sigma, q, steps = self.noise_multiplier, self.sample_rate, self.steps
        if (
            sigma is None
            or not isinstance(sigma, (int, float, np.integer, np.floating))
            or math.isnan(sigma)
            or sigma < 0
        ):
            raise ValueError(f"noise_multiplier={sigma!r}: expected a number >= 0 (math.inf allowed)")
        if not isinstance(q, (int, float, np.integer, np.floating)) or not 0.0 <= q <= 1.0:
            raise ValueError(f"sample_rate={q!r}: expected a probability in [0, 1]")
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0:
            raise ValueError(f"steps={steps!r}: expected an integer >= 0")
        object.__setattr__(self, "noise_multiplier", float(sigma))
        object.__setattr__(self, "sample_rate", float(q))
        object.__setattr__(self, "steps", int(steps))

    @property
    def trivial(self) -> bool:
        """True when the output does not depend on the target (beta(alpha) = 1 - alpha exactly)."""
        return math.isinf(self.noise_multiplier) or self.sample_rate == 0.0 or self.steps == 0

    @property
    def inclusion_probability(self) -> float:
        """P(the target is sampled in at least one step) = 1 - (1 - q)^T."""
        return (
            -math.expm1(self.steps * math.log1p(-self.sample_rate)) if self.sample_rate < 1 else float(self.steps > 0)
        )


def _as_alpha(alpha: float | np.ndarray) -> np.ndarray:
    a = np.asarray(alpha, dtype=float)
    if np.any(~np.isfinite(a)) or np.any(a < 0) or np.any(a > 1):
        raise ValueError("alpha: expected type-I error(s) in [0, 1]")
    return a


def noiseless_limit_beta(alpha: float | np.ndarray, mech: Mechanism) -> np.ndarray:
    """beta(alpha) in the limit sigma -> 0: (1 - q)^T (1 - alpha).

    Without noise the target is seen exactly when it is sampled at least once, so the best
    test fails only when it was never sampled (probability (1 - q)^T) and it did not reject by
    chance. Any sigma > 0 gives a beta at least this large (more noise is post-processing).
    """
    a = _as_alpha(alpha)
    return (1.0 - mech.inclusion_probability) * (1.0 - a)


def max_test_beta(alpha: float | np.ndarray, mech: Mechanism) -> np.ndarray:
    """Type-II error of an explicit test at level alpha: reject 'target absent' when max_t y_t > c.

    c is set so that the type-I error is exactly alpha: Phi(c / sigma)^T = 1 - alpha. Being one
    test among many, its beta is an upper bound on the optimal beta (so 1 - beta is a certified
    lower bound on the worst-case risk). Used to certify the noiseless limit at small sigma.
    """
    a = _as_alpha(alpha)
    if mech.trivial:
        return 1.0 - a
    sigma, q, steps = mech.noise_multiplier, mech.sample_rate, mech.steps
    if sigma == 0.0:
        return noiseless_limit_beta(a, mech)
    with np.errstate(divide="ignore"):
        # per-step rejection probability under P: x = 1 - (1 - alpha)^(1/T), computed in logs
        x = -np.expm1(np.log1p(-np.minimum(a, 1.0 - 1e-300)) / steps)
    c = -ndtri(x) * sigma  # P(y > c) = x per step
    # per-step acceptance under Q: (1-q) Phi(c/sigma) + q Phi((c-1)/sigma)
    acc_q = (1.0 - q) * (1.0 - x) + q * ndtr((c - 1.0) / sigma)
    beta = np.power(np.clip(acc_q, 0.0, 1.0), steps)
    return np.where(a >= 1.0, 0.0, beta)


def _discretization(sigma: float, base: float) -> float:
    return base * max(1.0, (0.5 / sigma) ** 2)


@functools.lru_cache(maxsize=32)
def _composed_pld(
    mech: Mechanism, discretization: float
) -> tuple[pld_lib.PrivacyLossDistribution, pld_lib.PrivacyLossDistribution]:
    """The T-fold composed PLD of the mechanism, split into its remove and add directions (cached)."""
    pld = pld_lib.from_gaussian_mechanism(
        standard_deviation=mech.noise_multiplier,
        sensitivity=1.0,
        sampling_prob=mech.sample_rate,
        value_discretization_interval=_discretization(mech.noise_multiplier, discretization),
    )
    if mech.steps > 1:
        pld = pld.self_compose(mech.steps)
    # The two directions separately: T(P, Q) needs each, while the public get_delta_for_epsilon
    # returns their maximum (the symmetric guarantee).
    remove = pld_lib.PrivacyLossDistribution(pld._pmf_remove)  # noqa: SLF001
    add = pld_lib.PrivacyLossDistribution(pld._pmf_add)  # noqa: SLF001
    return remove, add


def privacy_profile(
    epsilons: np.ndarray, mech: Mechanism, *, discretization: float = DEFAULT_DISCRETIZATION
) -> tuple[np.ndarray, np.ndarray]:
    """Hockey-stick divergences of the composed mechanism from dp_accounting's PLD.

    Returns ``(delta_remove, delta_add)`` at ``epsilons`` (nats, >= 0, any shape):
    delta_remove(eps) = sup_S Q(S) - e^eps P(S) and delta_add(eps) = sup_S P(S) - e^eps Q(S),
    with Q the output law with the target and P without. Pessimistic: every delta is an upper bound.
    """
    eps = np.asarray(epsilons, dtype=float)
    if mech.trivial:
        return np.zeros_like(eps), np.zeros_like(eps)
    if mech.noise_multiplier == 0.0:
        raise ValueError("noise_multiplier=0: the PLD is a point mass at infinity; use noiseless_limit_beta")
    remove, add = _composed_pld(mech, float(discretization))
    flat = eps.ravel()
    out = []
    for one in (remove, add):
        out.append(np.clip(np.asarray(one.get_delta_for_epsilon(flat), dtype=float), 0.0, 1.0).reshape(eps.shape))
    return out[0], out[1]


def tradeoff_from_profile(
    alpha: float | np.ndarray, epsilons: np.ndarray, delta_remove: np.ndarray, delta_add: np.ndarray | None = None
) -> np.ndarray:
    """The trade-off curve T(P, Q)(alpha) implied by the two hockey-stick profiles on an eps grid.

    For a test of H0 'target absent' (P) against H1 'present' (Q) with type-I error alpha,
    beta >= 1 - delta_remove(eps) - e^eps alpha and beta >= e^-eps (1 - alpha - delta_add(eps))
    for every eps >= 0; the supremum over all eps >= 0 is exactly T(P, Q). A finite grid gives a
    beta no larger than the exact one (a conservative risk). ``delta_add=None`` uses
    ``delta_remove`` for both (a symmetric mechanism or a symmetric guarantee).
    """
    a = _as_alpha(alpha)
    eps = np.asarray(epsilons, dtype=float).ravel()
    d_r = np.asarray(delta_remove, dtype=float).ravel()
    d_a = d_r if delta_add is None else np.asarray(delta_add, dtype=float).ravel()
    if eps.size == 0 or eps.shape != d_r.shape or eps.shape != d_a.shape:
        raise ValueError(
            f"epsilons/deltas: expected non-empty arrays of one length, got {eps.shape}, {d_r.shape}, {d_a.shape}"
        )
    if np.any(eps < 0) or np.any(~np.isfinite(eps)):
        raise ValueError("epsilons: expected finite eps >= 0")
    af = a.ravel()[:, None]
    with np.errstate(over="ignore", invalid="ignore"):
        line1 = 1.0 - d_r[None, :] - np.exp(eps)[None, :] * af
    line1 = np.where(af > 0, line1, 1.0 - d_r[None, :])
    line2 = np.exp(-eps)[None, :] * (1.0 - d_a[None, :] - af)
    beta = np.maximum(np.maximum(line1, line2).max(axis=1), 0.0)
    return beta.reshape(a.shape)


@functools.lru_cache(maxsize=32)
def _profile_grid(mech: Mechanism, discretization: float, eps_max: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The PLD's two profiles on a uniform eps grid over [0, eps_max] (cached per mechanism)."""
    grid = np.linspace(0.0, eps_max, _EPS_GRID)
    d_r, d_a = privacy_profile(grid, mech, discretization=discretization)
    return grid, d_r, d_a


def _pld_beta(alpha: np.ndarray, mech: Mechanism, discretization: float) -> np.ndarray:
    """T(P, Q)(alpha) from the PLD profiles on one eps grid, for 0 < alpha < 1.

    Line 1 is positive only for eps < log(1/alpha) and line 2 decays as e^-eps, so the grid
    covers [0, log(1/min alpha) + 2]. The sup is flat at its optimum, so a grid step of a few
    thousandths of a nat changes beta by far less than the PLD's own discretisation.
    """
    eps_max = float(math.ceil(math.log(1.0 / float(np.min(alpha))))) + 2.0
    grid, d_r, d_a = _profile_grid(mech, float(discretization), eps_max)
    return tradeoff_from_profile(alpha, grid, d_r, d_a)


def tradeoff_curve(
    alpha: float | np.ndarray, mech: Mechanism, *, discretization: float = DEFAULT_DISCRETIZATION, tol: float = 1e-6
) -> np.ndarray:
    """beta(alpha) of the composed Poisson-subsampled Gaussian, from the PLD.

    Exact edge cases: sigma = inf, q = 0 or T = 0 -> 1 - alpha; sigma = 0 -> the noiseless limit
    (1 - q)^T (1 - alpha). For small sigma, where the PLD would need an enormous loss range, the
    noiseless limit is returned when the explicit max-test certifies it to within ``tol``
    (the optimal beta lies between the two). Same shape as ``alpha``.
    """
    a = _as_alpha(alpha)
    if mech.trivial:
        return 1.0 - a
    if mech.noise_multiplier == 0.0:
        return noiseless_limit_beta(a, mech)
    flat = a.ravel()
    limit = noiseless_limit_beta(flat, mech)
    certified = max_test_beta(flat, mech)
    out = np.where(flat >= 1.0, 0.0, np.where(flat <= 0.0, 1.0, limit))
    # sigma > 0: P and Q are mutually absolutely continuous, so alpha = 0 forces beta = 1
    need = (flat > 0.0) & (flat < 1.0) & (certified - limit > tol)
    if np.any(need):
        out[need] = np.minimum(np.maximum(_pld_beta(flat[need], mech, discretization), limit[need]), certified[need])
    return out.reshape(a.shape)


def gdp_mu(mech: Mechanism) -> float:
    """Gaussian-DP parameter of the mechanism: sqrt(T)/sigma when q = 1 (exact), else the CLT
    value mu = q sqrt(T (e^{1/sigma^2} - 1)) (Bu, Dong, Long and Su), accurate for small q and large T.
    """
    if mech.trivial:
        return 0.0
    sigma, q, steps = mech.noise_multiplier, mech.sample_rate, mech.steps
    if sigma == 0.0:
        return math.inf
    if q == 1.0:
        return math.sqrt(steps) / sigma
    inv = 1.0 / sigma**2
    if inv > 700:
        return math.inf
    return q * math.sqrt(steps * math.expm1(inv))


def gdp_tradeoff(alpha: float | np.ndarray, mu: float) -> np.ndarray:
    """The mu-GDP trade-off curve G_mu(alpha) = Phi(Phi^{-1}(1 - alpha) - mu)."""
    a = _as_alpha(alpha)
    if mu < 0 or math.isnan(mu):
        raise ValueError(f"mu={mu!r}: expected mu >= 0")
    if math.isinf(mu):
        return np.where(a > 0, 0.0, 1.0)
    return ndtr(ndtri(1.0 - a) - mu)


def monte_carlo_privacy_loss(mech: Mechanism, n_samples: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Samples of the composed privacy loss L = log dQ/dP (remove direction) under P and under Q.

    Returns ``(loss_under_P, loss_under_Q)``, each ``(n_samples,)`` in nats. Independent of the
    PLD: the outputs y_t are simulated and the exact per-step log-likelihood ratio
    log((1 - q) + q exp((2 y - 1) / (2 sigma^2))) is summed over the T steps.
    """
    if mech.noise_multiplier == 0.0 or mech.trivial:
        raise ValueError("monte_carlo_privacy_loss: needs 0 < noise_multiplier < inf, sample_rate > 0 and steps > 0")
    if n_samples < 1:
        raise ValueError(f"n_samples={n_samples!r}: expected >= 1")
    rng = np.random.default_rng(seed)
    sigma, q, steps = mech.noise_multiplier, mech.sample_rate, mech.steps

    def loss(y: np.ndarray) -> np.ndarray:
        llr = (2.0 * y - 1.0) / (2.0 * sigma**2)
        if q == 1.0:
            return llr.sum(axis=1)
        return np.logaddexp(math.log1p(-q), math.log(q) + llr).sum(axis=1)

    y_p = rng.normal(0.0, sigma, size=(n_samples, steps))
    included = rng.random((n_samples, steps)) < q
    y_q = rng.normal(0.0, sigma, size=(n_samples, steps)) + included
    return loss(y_p), loss(y_q)


def _mc_hockey_stick(loss: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """E[(1 - e^{eps - L})_+] for each eps from samples of L, via sorting: O((n + m) log n)."""
    srt = np.sort(loss)
    # suffix sums over the samples with L > eps: count and sum of e^{-L}
    with np.errstate(over="ignore"):
        neg_exp = np.exp(-srt)
    tail_exp = np.concatenate([np.cumsum(neg_exp[::-1])[::-1], [0.0]])
    first = np.searchsorted(srt, eps, side="right")
    count = srt.size - first
    with np.errstate(over="ignore", invalid="ignore"):
        val = (count - np.exp(eps) * tail_exp[first]) / srt.size
    return np.clip(np.nan_to_num(val, nan=0.0), 0.0, 1.0)


def monte_carlo_profile(
    epsilons: np.ndarray, mech: Mechanism, n_samples: int = 200_000, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo ``(delta_remove, delta_add)``: E_Q[(1 - e^{eps - L})_+] and E_P[(1 - e^{eps + L})_+]."""
    eps = np.asarray(epsilons, dtype=float)
    loss_p, loss_q = monte_carlo_privacy_loss(mech, n_samples, seed=seed)
    flat = eps.ravel()
    return _mc_hockey_stick(loss_q, flat).reshape(eps.shape), _mc_hockey_stick(-loss_p, flat).reshape(eps.shape)
