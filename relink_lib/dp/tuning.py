"""The privacy cost of choosing among several DP runs on the same private pairs (pure maths).

Two numbers for a study that trains ``k`` DP runs on the same private set and releases one:

- :func:`composed_epsilon`: what the fixed study pays. Every run is a Poisson-subsampled Gaussian
  mechanism; their RDP curves are summed at the same orders (:data:`relink_lib.dp.calibrate.RDP_ORDERS`)
  and converted to (eps, delta) with Balle et al. (2020), as for one run. Releasing any function of all
  runs' outputs (the best one included) is then post-processing of the composition.
- :func:`poisson_tuning_rdp` / :func:`poisson_tuning_epsilon`: what a randomised-count version of the study
  would pay. Papernot & Steinke (2022, "Hyperparameter Tuning with Renyi Differential Privacy", ICLR,
  Theorem 6): if one run ``Q`` is (lambda, eps)-RDP and (eps_hat, delta_hat)-DP with
  ``exp(eps_hat) <= 1 + 1 / (lambda - 1)``, running it ``K ~ Poisson(mu)`` times and releasing only the best
  output is (lambda, eps')-RDP with ``eps' = eps + mu * delta_hat + log(mu) / (lambda - 1)``. Here
  ``eps_hat`` is the largest value the condition allows and ``delta_hat`` the smallest delta that the
  per-run RDP curve certifies at that ``eps_hat`` (:func:`delta_hat`). dp-accounting implements the
  same theorem (``RepeatAndSelectDpEvent``); the tests check that both agree.
  The theorem assumes a random number of runs; a study with a fixed number does not satisfy it.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .calibrate import RDP_ORDERS, _rdp_int_numpy, _spent

Run = tuple[float, float, int]
"""One DP-SGD run: ``(noise_multiplier, sample_rate, steps)``."""


def run_rdp(runs: Sequence[Run], orders: Sequence[float] | np.ndarray = RDP_ORDERS) -> np.ndarray:
    """The RDP curve (at ``orders``) of the composition of ``runs``: the sum of every run's curve."""
    o = np.asarray(orders, dtype=float)
    if not runs:
        raise ValueError("runs: expected at least one (noise_multiplier, sample_rate, steps)")
    total = np.zeros(len(o))
    for sigma, q, steps in runs:
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"noise_multiplier: expected a finite value > 0, got {sigma}")
        if not 0 < q <= 1 or int(steps) != steps or steps < 1:
            raise ValueError(f"run ({sigma}, {q}, {steps}): expected sample_rate in (0, 1] and steps >= 1")
        total += _rdp_int_numpy(float(q), float(sigma), int(steps), o)
    return total


def rdp_to_epsilon(
    rdp: Sequence[float] | np.ndarray, delta: float, orders: Sequence[float] | np.ndarray = RDP_ORDERS
) -> float:
    """(eps at ``delta``) of an RDP curve, Balle et al. (2020) conversion (as Opacus' ``get_privacy_spent``)."""
    if not 0 < delta < 1:
        raise ValueError(f"delta: expected a value in (0, 1), got {delta}")
    eps, _ = _spent(np.asarray(orders, dtype=float), np.asarray(rdp, dtype=float), delta)
    return eps


def composed_epsilon(runs: Sequence[Run], delta: float, orders: Sequence[float] | np.ndarray = RDP_ORDERS) -> float:
    """Epsilon at ``delta`` of all ``runs`` together (RDP curves summed at the same orders)."""
    return rdp_to_epsilon(run_rdp(runs, orders), delta, orders)


def delta_hat(
    rdp: Sequence[float] | np.ndarray, eps_hat: float, orders: Sequence[float] | np.ndarray = RDP_ORDERS
) -> float:
    """The smallest ``delta`` with (``eps_hat``, delta)-DP that an RDP curve certifies, capped at 1.

    Minimum over the orders ``a`` of two valid bounds: Canonne, Kamath & Steinke (2020, Prop. 12),
    ``log delta = (a - 1) (rdp(a) - eps_hat + log(1 - 1/a)) - log(a)`` (for ``a > 1.01``), and the
    KL bound ``delta <= sqrt(1 - exp(-rdp(a)))``; the same conversion as dp-accounting's
    ``compute_delta`` (Mironov 2017, Prop. 3, ``exp((a - 1) (rdp(a) - eps_hat))``, is looser).
    """
    o, r = np.asarray(orders, dtype=float), np.asarray(rdp, dtype=float)
    if np.any(o < 1) or np.any(r < 0):
        raise ValueError("rdp/orders: expected orders >= 1 and non-negative RDP values")
    with np.errstate(divide="ignore"):
        log_kl = np.where(r > 0, 0.5 * np.log1p(-np.exp(-r)), -np.inf)
    big = o > 1.01
    log_ckst = np.full(len(o), np.inf)
    log_ckst[big] = (o[big] - 1) * (r[big] - float(eps_hat) + np.log1p(-1 / o[big])) - np.log(o[big])
    return float(min(1.0, math.exp(float(np.min(np.minimum(log_kl, log_ckst))))))


def poisson_tuning_rdp(
    rdp: Sequence[float] | np.ndarray, mu: float, orders: Sequence[float] | np.ndarray = RDP_ORDERS
) -> np.ndarray:
    """Papernot & Steinke (2022), Theorem 6: the RDP curve of releasing the best of ``K ~ Poisson(mu)`` runs,
    each with RDP curve ``rdp`` (at ``orders``).

    At each order ``lambda``: ``eps'(lambda) = rdp(lambda) + mu * delta_hat + log(mu) / (lambda - 1)``, with
    ``eps_hat = log(1 + 1 / (lambda - 1))`` (the largest the theorem allows) and ``delta_hat`` from the
    per-run curve at that ``eps_hat`` (:func:`delta_hat`, minimised over the orders).
    """
    if not (mu > 0 and math.isfinite(mu)):
        raise ValueError(f"mu: expected a finite mean number of runs > 0, got {mu}")
    o, r = np.asarray(orders, dtype=float), np.asarray(rdp, dtype=float)
    if o.shape != r.shape or np.any(o <= 1):
        raise ValueError("rdp/orders: expected curves of the same length at orders > 1")
    out = np.empty(len(o))
    for j, lam in enumerate(o):
        e_hat = math.log1p(1.0 / (lam - 1.0))
        out[j] = r[j] + mu * delta_hat(r, e_hat, o) + math.log(mu) / (lam - 1.0)
    return out


def poisson_tuning_epsilon(
    run: Run, mu: float, delta: float, orders: Sequence[float] | np.ndarray = RDP_ORDERS
) -> float:
    """Epsilon at ``delta`` of releasing the best of ``K ~ Poisson(mu)`` runs of ``run`` (Theorem 6 of
    Papernot & Steinke 2022, then the Balle et al. conversion). One DP-SGD setting per run: for a grid, ``run``
    is the most expensive run (every run's RDP curve is at most its)."""
    o = np.asarray(orders, dtype=float)
    return rdp_to_epsilon(poisson_tuning_rdp(run_rdp([run], o), mu, o), delta, o)


def worst_run(runs: Sequence[Run], orders: Sequence[float] | np.ndarray = RDP_ORDERS) -> np.ndarray:
    """The pointwise maximum of the runs' RDP curves: one curve that bounds every run (for the tuning bound)."""
    return np.max(np.stack([run_rdp([r], orders) for r in runs]), axis=0)


def poisson_tuning_epsilon_of_runs(
    runs: Sequence[Run], mu: float, delta: float, orders: Sequence[float] | np.ndarray = RDP_ORDERS
) -> float:
    """:func:`poisson_tuning_epsilon` for a grid: each candidate run bounded by the pointwise maximum of the
    runs' RDP curves (:func:`worst_run`)."""
    o = np.asarray(orders, dtype=float)
    return rdp_to_epsilon(poisson_tuning_rdp(worst_run(runs, o), mu, o), delta, o)
