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

- :func:`tradeoff_curve`: from the privacy loss distribution (PLD) of ``dp_accounting``: the
  privacy profile delta(eps) (hockey-stick divergences, both add and remove directions) is turned
  into the trade-off curve it implies, beta(alpha) = sup_eps max(0, 1 - delta - e^eps alpha,
  e^-eps (1 - delta - alpha)). Numerically robust from sigma -> 0 (the exact noiseless limit,
  used once a certified explicit test is within ``tol`` of it) to sigma -> inf (beta = 1 - alpha).
- :func:`gdp_tradeoff` with :func:`gdp_mu`: the Gaussian-DP central-limit approximation
  mu = q sqrt(T (e^{1/sigma^2} - 1)), exact when q = 1 (mu = sqrt(T) / sigma).
- :func:`monte_carlo_profile`: a Monte Carlo estimate of the privacy loss and of delta(eps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr, ndtr, ndtri

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
#: Number of eps grid points of the profile -> trade-off conversion (refined once around the best).
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
        if sigma is None or not isinstance(sigma, (int, float, np.integer, np.floating)) or math.isnan(sigma) or sigma < 0:
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
        return -math.expm1(self.steps * math.log1p(-self.sample_rate)) if self.sample_rate < 1 else float(self.steps > 0)


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
        # per-step acceptance probability under P: (1 - alpha)^(1/T), computed in logs
        log_accept = np.log1p(-np.minimum(a, 1.0 - 1e-300)) / steps
    z = ndtri(np.exp(log_accept))  # c / sigma
    c = z * sigma
    # per-step acceptance under Q: (1-q) Phi(c/sigma) + q Phi((c-1)/sigma)
    acc_q = (1.0 - q) * np.exp(log_accept) + q * ndtr((c - 1.0) / sigma)
    beta = np.power(np.clip(acc_q, 0.0, 1.0), steps)
    return np.where(a >= 1.0, 0.0, beta)


def _discretization(sigma: float, base: float) -> float:
    return base * max(1.0, (0.5 / sigma) ** 2)


def privacy_profile(epsilons: np.ndarray, mech: Mechanism, *, discretization: float = DEFAULT_DISCRETIZATION) -> np.ndarray:
    """delta(eps) of the composed mechanism from dp_accounting's PLD (max over add and remove).

    Pessimistic (rounding keeps every delta an upper bound). ``epsilons`` in nats, any shape.
    """
    from dp_accounting.pld import privacy_loss_distribution as pld_lib

    eps = np.asarray(epsilons, dtype=float)
    if mech.trivial:
        return np.zeros_like(eps)
    if mech.noise_multiplier == 0.0:
        raise ValueError("noise_multiplier=0: the PLD is a point mass at infinity; use noiseless_limit_beta")
    pld = pld_lib.from_gaussian_mechanism(
        standard_deviation=mech.noise_multiplier,
        sensitivity=1.0,
        sampling_prob=mech.sample_rate,
        value_discretization_interval=_discretization(mech.noise_multiplier, discretization),
    )
    if mech.steps > 1:
        pld = pld.self_compose(mech.steps)
    return np.clip(np.asarray(pld.get_delta_for_epsilon(eps.ravel()), dtype=float).reshape(eps.shape), 0.0, 1.0)


def tradeoff_from_profile(alpha: float | np.ndarray, epsilons: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """The trade-off curve implied by a privacy profile: sup over the grid of the (eps, delta) lines.

    beta(alpha) = max(0, max_j max(1 - delta_j - e^{eps_j} alpha, e^{-eps_j} (1 - delta_j - alpha))).
    A finite grid gives a beta no larger than the exact one (a conservative risk).
    """
    a = _as_alpha(alpha)
    eps = np.asarray(epsilons, dtype=float).ravel()
    dl = np.asarray(deltas, dtype=float).ravel()
    if eps.shape != dl.shape or eps.size == 0:
        raise ValueError(f"epsilons/deltas: expected two non-empty arrays of one length, got {eps.shape} and {dl.shape}")
    if np.any(eps < 0):
        raise ValueError("epsilons: expected eps >= 0")
    af = a.ravel()[:, None]
    with np.errstate(over="ignore"):
        line1 = 1.0 - dl[None, :] - np.exp(eps)[None, :] * af
    line2 = np.exp(-eps)[None, :] * (1.0 - dl[None, :] - af)
    beta = np.maximum(np.maximum(line1, line2).max(axis=1), 0.0)
    return beta.reshape(a.shape)


def _pld_beta(alpha: float, mech: Mechanism, discretization: float) -> float:
    # Only eps <= log(1/alpha) can make the first line positive; the second line is largest at small eps.
    eps_max = max(math.log(1.0 / max(alpha, 1e-300)), 1e-3)
    grid = np.linspace(0.0, eps_max, _EPS_GRID)
    beta_grid = tradeoff_from_profile(np.full(1, alpha), grid, privacy_profile(grid, mech, discretization=discretization))
    # refine around the best grid point
    vals = np.maximum(1.0 - privacy_profile(grid, mech, discretization=discretization) - np.exp(grid) * alpha, 0.0)
    best = int(np.argmax(vals))
    step = grid[1] - grid[0]
    fine = np.linspace(max(grid[best] - step, 0.0), grid[best] + step, 201)
    beta_fine = tradeoff_from_profile(np.full(1, alpha), fine, privacy_profile(fine, mech, discretization=discretization))
    return float(max(beta_grid[0], beta_fine[0]))


def tradeoff_curve(alpha: float | np.ndarray, mech: Mechanism, *, discretization: float = DEFAULT_DISCRETIZATION,
                   tol: float = 1e-6) -> np.ndarray:
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
    out = np.empty(a.size)
    for i, ai in enumerate(a.ravel()):
        if ai >= 1.0:
            out[i] = 0.0
            continue
        limit = float(noiseless_limit_beta(ai, mech))
        certified = float(max_test_beta(ai, mech))
        if certified - limit <= tol:
            out[i] = limit
        elif ai <= 0.0:
            out[i] = 1.0 - mech.inclusion_probability * 0.0 - 0.0 if False else float(max_test_beta(0.0, mech))
        else:
            out[i] = min(max(_pld_beta(float(ai), mech, discretization), limit), certified)
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


def monte_carlo_profile(epsilons: np.ndarray, mech: Mechanism, n_samples: int = 200_000, *, seed: int = 0) -> np.ndarray:
    """Monte Carlo delta(eps) = max(E_Q[(1 - e^{eps - L})_+], E_P[(1 - e^{eps + L})_+]) (remove, add)."""
    eps = np.asarray(epsilons, dtype=float)
    loss_p, loss_q = monte_carlo_privacy_loss(mech, n_samples, seed=seed)
    e = eps.ravel()[:, None]
    with np.errstate(over="ignore"):
        remove = np.clip(1.0 - np.exp(e - loss_q[None, :]), 0.0, None).mean(axis=1)
        add = np.clip(1.0 - np.exp(e + loss_p[None, :]), 0.0, None).mean(axis=1)
    return np.maximum(remove, add).reshape(eps.shape)


def _log_phi(x: np.ndarray) -> np.ndarray:  # kept for numerical experiments; log Phi(x)
    return log_ndtr(x)
