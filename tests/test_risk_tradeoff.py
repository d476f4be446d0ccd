"""Trade-off curves of the Poisson-subsampled Gaussian: PLD against exact, GDP and Monte Carlo answers."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import norm

from relink_lib.risk.tradeoff import (
    Mechanism,
    gdp_mu,
    gdp_tradeoff,
    max_test_beta,
    monte_carlo_privacy_loss,
    monte_carlo_profile,
    noiseless_limit_beta,
    tradeoff_curve,
    tradeoff_from_profile,
)


@pytest.mark.parametrize("sigma,steps", [(2.0, 10), (5.0, 100), (0.8, 3)])
def test_full_batch_gaussian_matches_exact_gdp(sigma, steps):
    # q = 1: T Gaussian steps are exactly mu-GDP with mu = sqrt(T) / sigma
    mech = Mechanism(sigma, 1.0, steps)
    alpha = np.array([1e-4, 1e-3, 0.01, 0.1, 0.5])
    exact = norm.cdf(norm.ppf(1 - alpha) - math.sqrt(steps) / sigma)
    np.testing.assert_allclose(tradeoff_curve(alpha, mech), exact, atol=2e-5, rtol=1e-3)
    assert gdp_mu(mech) == pytest.approx(math.sqrt(steps) / sigma)


@pytest.mark.parametrize("sigma,q,steps", [(2.0, 0.02, 2000), (3.0, 0.05, 1000)])
def test_subsampled_agrees_with_gdp_clt_where_it_applies(sigma, q, steps):
    # small q, many steps, moderate noise: the CLT's mu-GDP is accurate to about 1e-3
    mech = Mechanism(sigma, q, steps)
    for alpha in (0.01, 0.05):
        pld = 1 - float(tradeoff_curve(alpha, mech))
        clt = 1 - float(gdp_tradeoff(alpha, gdp_mu(mech)))
        assert pld == pytest.approx(clt, abs=3e-3)


def test_subsampled_agrees_with_monte_carlo_neyman_pearson_test():
    # the optimal test thresholds the privacy loss; simulate it directly, no PLD, no conversion
    mech = Mechanism(1.0, 0.3, 5)
    loss_p, loss_q = monte_carlo_privacy_loss(mech, 200_000, seed=1)
    for alpha in (0.01, 0.05, 0.2):
        tau = float(np.quantile(loss_p, 1 - alpha))
        power_mc = float(np.mean(loss_q > tau))
        # binomial error of the power plus the estimated threshold's (slope d power / d alpha = e^tau)
        se = math.sqrt((power_mc * (1 - power_mc) + math.exp(2 * tau) * alpha * (1 - alpha)) / loss_q.size)
        assert 1 - float(tradeoff_curve(alpha, mech)) == pytest.approx(power_mc, abs=4 * se)


def test_monte_carlo_profile_gives_the_same_curve():
    mech = Mechanism(1.5, 0.5, 4)
    eps = np.linspace(0, 8, 801)
    d_r, d_a = monte_carlo_profile(eps, mech, 200_000, seed=2)
    for alpha in (0.02, 0.1):
        assert float(tradeoff_from_profile(alpha, eps, d_r, d_a)) == pytest.approx(
            float(tradeoff_curve(alpha, mech)), abs=0.01
        )


def test_pure_dp_profile_gives_the_randomised_response_curve():
    # (eps, 0)-DP at a single eps: beta = max(0, 1 - e^eps alpha, e^-eps (1 - alpha))
    eps = math.log(3.0)
    alpha = np.array([0.0, 0.1, 0.25, 0.5, 0.9])
    expected = np.maximum(0, np.maximum(1 - 3 * alpha, (1 - alpha) / 3))
    np.testing.assert_allclose(tradeoff_from_profile(alpha, np.array([eps]), np.array([0.0])), expected)


def test_no_noise_and_infinite_noise_known_answers():
    alpha = np.array([1e-4, 0.01, 0.3])
    # no noise, full batch: the target is always seen, beta = 0
    np.testing.assert_array_equal(tradeoff_curve(alpha, Mechanism(0.0, 1.0, 3)), 0.0)
    # no noise, Poisson sampling: fails only when never sampled
    mech = Mechanism(0.0, 0.1, 20)
    np.testing.assert_allclose(tradeoff_curve(alpha, mech), 0.9**20 * (1 - alpha))
    # infinite noise, or a target never sampled: perfect privacy, beta = 1 - alpha
    for m in (Mechanism(math.inf, 0.1, 20), Mechanism(1.0, 0.0, 20), Mechanism(1.0, 0.1, 0)):
        np.testing.assert_allclose(tradeoff_curve(alpha, m), 1 - alpha)
        assert gdp_mu(m) == 0.0


def test_robust_at_tiny_and_huge_noise():
    kappa = 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # eps ~ 1e15 needs sigma ~ 1e-7: the certified noiseless limit, finite, no warnings
        tiny = Mechanism(1e-7, 0.02, 250)
        beta = float(tradeoff_curve(kappa, tiny))
        assert beta == pytest.approx(float(noiseless_limit_beta(kappa, tiny)), abs=1e-12)
        assert float(max_test_beta(kappa, tiny)) - beta < 1e-6
        # sigma huge: indistinguishable, 1 - beta -> kappa
        huge = Mechanism(1e6, 0.02, 250)
        assert 1 - float(tradeoff_curve(kappa, huge)) == pytest.approx(kappa, rel=0.01)


def test_curve_is_sandwiched_and_monotone_in_noise():
    kappa = 1e-3
    sigmas = [0.15, 0.3, 0.6, 1.0, 3.0, 10.0]
    risks = []
    for s in sigmas:
        mech = Mechanism(s, 0.05, 60)
        beta = float(tradeoff_curve(kappa, mech))
        # the optimum lies between the noiseless limit and one explicit test
        assert float(noiseless_limit_beta(kappa, mech)) - 1e-12 <= beta <= float(max_test_beta(kappa, mech)) + 1e-12
        risks.append(1 - beta)
    assert all(a > b for a, b in zip(risks, risks[1:]))
    assert risks[-1] >= kappa


def test_curve_is_a_trade_off_function():
    mech = Mechanism(0.9, 0.1, 30)
    alpha = np.linspace(0, 1, 41)
    beta = tradeoff_curve(alpha, mech)
    assert beta[0] == 1.0 and beta[-1] == 0.0
    assert np.all(np.diff(beta) <= 1e-12)  # non-increasing
    assert np.all(beta <= 1 - alpha + 1e-12)  # never better than guessing


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(noise_multiplier=-1.0, sample_rate=0.1, steps=5), "noise_multiplier"),
        (dict(noise_multiplier=float("nan"), sample_rate=0.1, steps=5), "noise_multiplier"),
        (dict(noise_multiplier=1.0, sample_rate=1.5, steps=5), "sample_rate"),
        (dict(noise_multiplier=1.0, sample_rate=0.1, steps=2.5), "steps"),
    ],
)
def test_mechanism_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Mechanism(**kwargs)


def test_alpha_and_profile_validation():
    mech = Mechanism(1.0, 0.1, 5)
    with pytest.raises(ValueError, match="alpha"):
        tradeoff_curve(1.5, mech)
    with pytest.raises(ValueError, match="epsilons"):
        tradeoff_from_profile(0.1, np.array([-1.0]), np.array([0.0]))
    with pytest.raises(ValueError, match="epsilons/deltas"):
        tradeoff_from_profile(0.1, np.array([0.0, 1.0]), np.array([0.0]))
