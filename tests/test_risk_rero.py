"""ReRo bounds: known answers, agreement with independent computations, ordering and robustness."""

from __future__ import annotations

import math
import warnings

import pytest

from relink_lib.dp import rdp_epsilon
from relink_lib.risk.rero import (
    kappa_for,
    no_dp_bounds,
    relaxed_risk,
    relaxed_risk_monte_carlo,
    rero_bounds,
    worst_case_risk,
    worst_case_risk_gdp,
)
from relink_lib.risk.tradeoff import Mechanism


def test_known_answers_no_noise_and_infinite_noise():
    kappa = kappa_for(1000)
    assert kappa == 1e-3
    # no noise, every step sees the target: certain reconstruction
    assert worst_case_risk(kappa, Mechanism(0.0, 1.0, 5)) == 1.0
    assert relaxed_risk(kappa, Mechanism(0.0, 1.0, 5)) == 1.0
    # no noise, Poisson sampling: certain unless never sampled
    mech = Mechanism(0.0, 0.05, 40)
    expected = 1 - 0.95**40 * (1 - kappa)
    assert worst_case_risk(kappa, mech) == pytest.approx(expected, abs=1e-15)
    assert relaxed_risk(kappa, mech) == pytest.approx(expected, abs=1e-15)
    # infinite noise: the model says nothing, the adversary is left with the prior
    for risk in (worst_case_risk, relaxed_risk, worst_case_risk_gdp):
        assert risk(kappa, Mechanism(math.inf, 0.05, 40)) == pytest.approx(kappa, abs=1e-15)
    # no DP at all: no bound
    assert no_dp_bounds(kappa).worst_case == 1.0 and no_dp_bounds(kappa).relaxed == 1.0


def test_worst_case_equals_gdp_when_exact():
    # q = 1: mu-GDP with mu = sqrt(T) / sigma is exact, so both computations must agree
    for sigma, steps, kappa in [(4.0, 50, 1e-3), (10.0, 200, 1e-4)]:
        mech = Mechanism(sigma, 1.0, steps)
        assert worst_case_risk(kappa, mech) == pytest.approx(worst_case_risk_gdp(kappa, mech), rel=2e-3, abs=1e-6)


def test_worst_case_near_gdp_clt_in_its_regime():
    mech = Mechanism(2.0, 0.02, 2000)
    for kappa in (0.01, 0.05):
        assert worst_case_risk(kappa, mech) == pytest.approx(worst_case_risk_gdp(kappa, mech), abs=3e-3)


@pytest.mark.parametrize("sigma,q,steps,dof", [(1.0, 0.3, 20, 1), (0.7, 0.3, 20, 3), (2.0, 1.0, 10, 1)])
def test_relaxed_agrees_with_monte_carlo(sigma, q, steps, dof):
    mech = Mechanism(sigma, q, steps)
    kappa = 0.05
    exact = relaxed_risk(kappa, mech, dof=dof)
    mc = relaxed_risk_monte_carlo(kappa, mech, dof=dof, n_samples=40_000, seed=3)
    se = math.sqrt(mc * (1 - mc) / 40_000)
    assert exact == pytest.approx(mc, abs=4 * se + 1e-3)


def test_ordering_relaxed_below_worst_case_above_prior():
    kappa = 1e-3
    for sigma in (0.2, 0.5, 1.0, 3.0):
        b = rero_bounds(kappa, Mechanism(sigma, 0.05, 100))
        assert kappa - 1e-12 <= b.relaxed <= b.worst_case + 1e-9
        assert kappa - 1e-12 <= b.worst_case_lower <= b.worst_case + 1e-9
        # a larger observation per step only hides the target better from the GLRT adversary
        assert relaxed_risk(kappa, Mechanism(sigma, 0.05, 100), dof=16) <= b.relaxed + 1e-12


def test_risks_grow_with_epsilon():
    # the mitigation's accountant maps each sigma to its eps; risk must rise with eps
    q, steps, delta, kappa = 0.05, 100, 1e-5, 1e-3
    sigmas = [20.0, 5.7, 2.3, 0.74, 0.47, 0.25, 1e-2, 3e-7]  # about eps = 0.05 ... 1e15
    eps = [rdp_epsilon(s, q, steps, delta)[0] for s in sigmas]
    assert all(b > a for a, b in zip(eps, eps[1:])) and eps[-1] > 1e14
    worst = [worst_case_risk(kappa, Mechanism(s, q, steps)) for s in sigmas]
    relaxed = [relaxed_risk(kappa, Mechanism(s, q, steps)) for s in sigmas]
    assert all(b >= a - 1e-12 for a, b in zip(worst, worst[1:]))
    assert all(b >= a - 1e-12 for a, b in zip(relaxed, relaxed[1:]))
    assert worst[0] < 1.1 * kappa  # tiny eps: the prior
    assert worst[-1] == pytest.approx(1 - (1 - q) ** steps * (1 - kappa), abs=1e-9)  # eps ~ 1e15: the noiseless limit


def test_finite_and_quiet_at_extreme_budgets():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for sigma in (1e-9, 1e-6, 1e4, 1e8):
            b = rero_bounds(1e-4, Mechanism(sigma, 0.01, 500))
            for v in (b.worst_case, b.worst_case_lower, b.worst_case_gdp, b.relaxed):
                assert math.isfinite(v) and 1e-4 - 1e-12 <= v <= 1.0


@pytest.mark.parametrize("kappa", [0.0, 1.0, -0.1, float("nan")])
def test_kappa_validation(kappa):
    with pytest.raises(ValueError, match="kappa"):
        worst_case_risk(kappa, Mechanism(1.0, 0.1, 10))


def test_other_validation():
    with pytest.raises(ValueError, match="n_train"):
        kappa_for(1)
    with pytest.raises(ValueError, match="dof"):
        relaxed_risk(0.1, Mechanism(1.0, 0.1, 10), dof=0)
