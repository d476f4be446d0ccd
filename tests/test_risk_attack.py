"""The gradient-access reconstruction: reconstruct a pair's image feature from its (noisy) head-gradient update."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from relink_lib.dp import per_sample_head_grads, rdp_epsilon
from relink_lib.risk.attack import clip_per_sample, gradient_inversion_attack, reconstruct_features, release_updates

Q, STEPS, DELTA = 0.05, 100, 1e-5
SIGMA_HUGE_EPS, SIGMA_TINY_EPS = 9e-3, 6.0  # eps >= 1e6 and eps <= 0.34 at (Q, STEPS, DELTA), checked below


def _toy(n=160, d_img=24, d_txt=16, d=8, m=32, seed=0):
    """A toy pair of bias-free linear heads with the mitigation's bank objective."""
    g = torch.Generator().manual_seed(seed)
    x_img = torch.randn(n, d_img, generator=g, dtype=torch.float64)
    x_txt = torch.randn(n, d_txt, generator=g, dtype=torch.float64)
    bank = torch.randn(m, d_txt, generator=g, dtype=torch.float64)
    w_img = torch.randn(d, d_img, generator=g, dtype=torch.float64) / math.sqrt(d_img)
    w_txt = torch.randn(d, d_txt, generator=g, dtype=torch.float64) / math.sqrt(d_txt)
    g_img, g_txt = per_sample_head_grads(w_img, w_txt, x_img, x_txt, bank)
    return x_img.numpy(), g_img.numpy(), g_txt.numpy()


def test_noise_levels_are_the_budgets_they_claim():
    assert rdp_epsilon(SIGMA_HUGE_EPS, Q, STEPS, DELTA)[0] >= 1e6
    assert rdp_epsilon(SIGMA_TINY_EPS, Q, STEPS, DELTA)[0] <= 0.34


def test_linear_head_gradient_is_rank_one_and_reveals_the_feature():
    x, g_img, _ = _toy()
    s = np.linalg.svd(g_img, compute_uv=False)
    assert np.all(s[:, 1] <= 1e-10 * s[:, 0])
    x_hat = reconstruct_features(g_img)
    cos = np.abs(np.sum(x_hat * x, axis=1)) / np.linalg.norm(x, axis=1)
    np.testing.assert_allclose(cos, 1.0, atol=1e-10)


def test_attack_succeeds_at_huge_eps_and_without_dp():
    x, g_img, g_txt = _toy()
    joint = np.sqrt((g_img**2).sum((1, 2)) + (g_txt**2).sum((1, 2)))
    idx = np.arange(len(x))
    res = gradient_inversion_attack(
        g_img, x, idx, noise_multiplier=SIGMA_HUGE_EPS, max_grad_norm=1.0, n_candidates=20, clip_norms=joint, seed=1
    )
    assert res.reidentification_rate >= 0.95 and res.cosine_rate >= 0.95
    res = gradient_inversion_attack(g_img, x, idx, noise_multiplier=0.0, max_grad_norm=None, n_candidates=20, seed=1)
    assert res.reidentification_rate == 1.0 and res.mean_abs_cos == pytest.approx(1.0)


def test_attack_fails_near_chance_at_tiny_eps():
    x, g_img, _ = _toy(n=400, seed=2)
    res = gradient_inversion_attack(
        g_img, x, np.arange(len(x)), noise_multiplier=SIGMA_TINY_EPS, max_grad_norm=1.0, n_candidates=20, seed=3
    )
    se = math.sqrt(res.chance * (1 - res.chance) / res.n_targets)
    assert res.chance == 0.05
    assert res.reidentification_rate <= res.chance + 4 * se
    assert res.cosine_rate <= 0.02  # |cos| of a random direction in 24 dims rarely reaches 0.5
    # and infinite noise is exactly a blind guess
    res_inf = gradient_inversion_attack(
        g_img, x, np.arange(len(x)), noise_multiplier=math.inf, max_grad_norm=1.0, n_candidates=20, seed=3
    )
    assert res_inf.reidentification_rate <= res_inf.chance + 4 * se


def test_success_falls_with_noise():
    x, g_img, _ = _toy(seed=4)
    rates = [
        gradient_inversion_attack(
            g_img, x, np.arange(len(x)), noise_multiplier=s, max_grad_norm=1.0, n_candidates=20, seed=5
        ).reidentification_rate
        for s in (0.01, 0.05, 0.2, 1.0)
    ]
    assert rates[0] > rates[-1] and rates[0] >= 0.95 and rates[-1] <= 0.3


def test_clipping_and_noise_scale():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(50, 6, 10)) * rng.uniform(0.1, 5, size=(50, 1, 1))
    c = clip_per_sample(g, 1.0)
    norms = np.linalg.norm(c.reshape(50, -1), axis=1)
    assert np.all(norms <= 1.0 + 1e-12)
    small = np.linalg.norm(g.reshape(50, -1), axis=1) <= 1.0
    np.testing.assert_allclose(c[small], g[small])  # unclipped when already inside the ball
    zero = np.zeros((400, 6, 10))
    noise = release_updates(zero, noise_multiplier=2.0, max_grad_norm=0.5, rng=rng, n_updates=4)
    assert noise.std() == pytest.approx(2.0 * 0.5 * 2.0, rel=0.02)  # sigma C sqrt(n_updates)


def test_validation():
    x, g_img, _ = _toy(n=30)
    idx = np.arange(30)
    with pytest.raises(ValueError, match="n_candidates"):
        gradient_inversion_attack(g_img, x, idx, noise_multiplier=1.0, max_grad_norm=1.0, n_candidates=31)
    with pytest.raises(ValueError, match="d_in"):
        gradient_inversion_attack(g_img, x[:, :5], idx, noise_multiplier=1.0, max_grad_norm=1.0, n_candidates=5)
    with pytest.raises(ValueError, match="target_index"):
        gradient_inversion_attack(g_img, x, idx[:5], noise_multiplier=1.0, max_grad_norm=1.0, n_candidates=5)
    with pytest.raises(ValueError, match="max_grad_norm"):
        release_updates(g_img, noise_multiplier=1.0, max_grad_norm=None, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="NaN"):
        reconstruct_features(np.full((2, 3, 4), np.nan))


def test_large_heads_use_subspace_iteration_that_matches_the_exact_vector():
    from relink_lib.risk.attack import _top_right_exact, _unit

    rng = np.random.default_rng(0)
    x, g = rng.normal(size=(3, 300)), rng.normal(size=(3, 260))
    grads = np.einsum("ni,nj->nij", g, x)
    grads /= np.linalg.norm(grads.reshape(3, -1), axis=1)[:, None, None]
    noisy = grads + 0.01 * rng.normal(size=grads.shape)
    fast = reconstruct_features(noisy)  # min side 260 > 256: the subspace path
    exact = _unit(_top_right_exact(noisy))
    np.testing.assert_allclose(np.abs(np.sum(fast * exact, axis=1)), 1.0, atol=1e-6)
    assert np.all(np.abs(np.sum(fast * x, axis=1)) / np.linalg.norm(x, axis=1) > 0.95)
