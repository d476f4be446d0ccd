"""The privacy cost of selecting among DP runs: composition and the Papernot-Steinke Poisson bound."""

from __future__ import annotations

import math

import dp_accounting
import numpy as np
import pytest
from dp_accounting import rdp as rdp_acc

from relink_lib.dp.accounting import dp_event
from relink_lib.dp.calibrate import RDP_ORDERS, calibrate_noise, rdp_epsilon
from relink_lib.dp.tuning import (
    composed_epsilon,
    delta_hat,
    poisson_tuning_epsilon,
    poisson_tuning_epsilon_of_runs,
    poisson_tuning_rdp,
    run_rdp,
)

DELTA = 6e-6
Q, STEPS = 1 / 19, 57
SIGMA = calibrate_noise(0.34, DELTA, Q, STEPS)


def test_one_run_composes_to_its_own_epsilon() -> None:
    assert composed_epsilon([(SIGMA, Q, STEPS)], DELTA) == pytest.approx(rdp_epsilon(SIGMA, Q, STEPS, DELTA)[0], 1e-9)


def test_k_identical_runs_are_one_run_with_k_times_the_steps() -> None:
    k = 5
    assert composed_epsilon([(SIGMA, Q, STEPS)] * k, DELTA) == pytest.approx(
        rdp_epsilon(SIGMA, Q, k * STEPS, DELTA)[0], 1e-9
    )


def test_composition_agrees_with_dp_accounting() -> None:
    runs = [(SIGMA, Q, STEPS), (SIGMA * 1.3, 0.1, 30), (SIGMA, Q, STEPS)]
    acc = rdp_acc.RdpAccountant(orders=list(RDP_ORDERS))
    acc.compose(dp_accounting.ComposedDpEvent([dp_event(*r) for r in runs]))
    assert composed_epsilon(runs, DELTA) == pytest.approx(acc.get_epsilon(DELTA), rel=1e-5)
    assert composed_epsilon(runs, DELTA) > composed_epsilon(runs[:2], DELTA) > composed_epsilon(runs[:1], DELTA)


def test_poisson_bound_special_case_mu_one() -> None:
    # mu = 1: log(mu) = 0, so eps'(lambda) = eps(lambda) + delta_hat(lambda) exactly
    o = np.asarray(RDP_ORDERS)
    r = run_rdp([(SIGMA, Q, STEPS)])
    got = poisson_tuning_rdp(r, 1.0)
    want = np.array([r[j] + delta_hat(r, math.log1p(1 / (lam - 1))) for j, lam in enumerate(o)])
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_poisson_bound_grows_with_mu_and_exceeds_one_run() -> None:
    eps = [poisson_tuning_epsilon((SIGMA, Q, STEPS), mu, DELTA) for mu in (0.5, 1, 3, 10, 30, 100)]
    assert all(b > a for a, b in zip(eps, eps[1:]))
    assert eps[1] > rdp_epsilon(SIGMA, Q, STEPS, DELTA)[0]


def test_poisson_bound_is_monotone_in_the_per_run_noise() -> None:
    # more noise per run -> a smaller per-run RDP curve -> a smaller bound
    eps = [poisson_tuning_epsilon((SIGMA * f, Q, STEPS), 10.0, DELTA) for f in (0.8, 1.0, 1.5, 3.0)]
    assert all(b < a for a, b in zip(eps, eps[1:]))
    # a grid's bound uses its most expensive run
    grid = [(SIGMA, Q, STEPS), (SIGMA * 2, Q, STEPS)]
    assert poisson_tuning_epsilon_of_runs(grid, 10.0, DELTA) == pytest.approx(
        poisson_tuning_epsilon((SIGMA, Q, STEPS), 10.0, DELTA)
    )


def test_delta_hat_is_a_probability_and_falls_with_eps_hat() -> None:
    r = run_rdp([(SIGMA, Q, STEPS)])
    d = [delta_hat(r, e) for e in (0.01, 0.1, 0.5, 2.0)]
    assert all(0 <= x <= 1 for x in d)
    assert all(b <= a for a, b in zip(d, d[1:]))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="mu"):
        poisson_tuning_rdp(run_rdp([(SIGMA, Q, STEPS)]), 0.0)
    with pytest.raises(ValueError, match="runs"):
        run_rdp([])


@pytest.mark.parametrize("mu", [1.0, 3.0, 10.0, 72.0])
def test_poisson_bound_agrees_with_dp_accounting_repeat_and_select(mu: float) -> None:
    """dp-accounting implements the same theorem (RepeatAndSelectDpEvent, Poisson shape) independently."""
    acc = rdp_acc.RdpAccountant(orders=list(RDP_ORDERS))
    acc.compose(dp_accounting.dp_event.RepeatAndSelectDpEvent(dp_event(SIGMA, Q, STEPS), mu, math.inf))
    assert poisson_tuning_epsilon((SIGMA, Q, STEPS), mu, DELTA) == pytest.approx(acc.get_epsilon(DELTA), rel=1e-6)
