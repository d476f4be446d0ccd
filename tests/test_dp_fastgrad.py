"""Closed-form per-sample gradients of linear heads against torch.func and Opacus hooks."""

from __future__ import annotations

import pytest
import torch
from _dp_fixtures import brute_per_sample, linear_heads, tiny_problem

from relink_lib.dp import head_grad_factors, per_sample_head_grads
from relink_lib.dp.objective import ExpandedBankLoss
from relink_lib.dp.train import clipped_grad_sum

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")


@pytest.mark.parametrize("bank_grad", [True, False])
@pytest.mark.parametrize("symmetric", [False, True])
def test_materialized_equals_torch_func(symmetric, bank_grad):
    p = tiny_problem()
    bank_img = p["bank_img"] if symmetric else None
    gi, gt = brute_per_sample(p, bank_img, bank_grad=bank_grad)
    fi, ft = per_sample_head_grads(
        p["w_img"], p["w_txt"], p["x_img"], p["x_txt"], p["bank_txt"], bank_img, bank_grad=bank_grad
    )
    torch.testing.assert_close(fi, gi, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ft, gt, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("symmetric", [False, True])
def test_norms_and_weighted_sums_without_materializing(symmetric):
    p = tiny_problem(n=8)
    bank_img = p["bank_img"] if symmetric else None
    gi, gt = brute_per_sample(p, bank_img)
    fi, ft, _ = head_grad_factors(p["w_img"], p["w_txt"], p["x_img"], p["x_txt"], p["bank_txt"], bank_img)
    torch.testing.assert_close(fi.sq_norms(), gi.pow(2).sum((1, 2)))
    torch.testing.assert_close(ft.sq_norms(), gt.pow(2).sum((1, 2)))
    groups = torch.tensor([0, 1, 0, 2, 1, 1, 3, 0])
    for f, g in ((fi, gi), (ft, gt)):
        summed = torch.zeros(4, *g.shape[1:], dtype=g.dtype).index_add_(0, groups, g)
        torch.testing.assert_close(f.sq_norms(groups, 4), summed.pow(2).sum((1, 2)))
        w = torch.linspace(0.1, 1.0, 8, dtype=g.dtype)
        torch.testing.assert_close(f.weighted_sum(w), (w[:, None, None] * g).sum(0))


def test_clipped_units_within_bound_and_small_ones_untouched():
    p = tiny_problem(n=10)
    gi, gt = brute_per_sample(p, p["bank_img"])
    norms = (gi.pow(2).sum((1, 2)) + gt.pow(2).sum((1, 2))).sqrt()
    C = float(norms.median())  # about half the pairs get clipped
    s_img, s_txt, n_fast, coef, _ = clipped_grad_sum(
        p["w_img"], p["w_txt"], p["x_img"], p["x_txt"], p["bank_txt"], p["bank_img"], max_grad_norm=C
    )
    torch.testing.assert_close(n_fast, norms)
    clipped_norms = coef * norms
    assert bool((clipped_norms <= C * (1 + 1e-9)).all())
    assert bool((coef[norms < C * 0.999] == 1).all())
    assert 0 < int((coef < 1).sum()) < 10
    torch.testing.assert_close(s_img, (coef[:, None, None] * gi).sum(0))
    torch.testing.assert_close(s_txt, (coef[:, None, None] * gt).sum(0))


def test_per_patient_clipping_bounds_the_patient_sum():
    p = tiny_problem(n=9)
    gi, gt = brute_per_sample(p, None)
    groups = torch.tensor([0, 0, 0, 1, 2, 2, 3, 3, 3])
    C = 0.5
    s_img, s_txt, norms, coef, _ = clipped_grad_sum(
        p["w_img"], p["w_txt"], p["x_img"], p["x_txt"], p["bank_txt"], max_grad_norm=C, groups=groups, n_groups=4
    )
    for gidx in range(4):
        rows = groups == gidx
        total = torch.cat([gi[rows].sum(0).flatten(), gt[rows].sum(0).flatten()]).norm()
        assert float(norms[gidx]) == pytest.approx(float(total), rel=1e-9)
        assert float(coef[gidx] * total) <= C * (1 + 1e-9)
    w = coef[groups]
    torch.testing.assert_close(s_txt, (w[:, None, None] * gt).sum(0))


@pytest.mark.parametrize("bank_grad", [True, False])
@pytest.mark.parametrize("symmetric", [False, True])
def test_equals_opacus_hooks(symmetric, bank_grad):
    from opacus import GradSampleModule

    p = tiny_problem(n=6)
    bank_img = p["bank_img"] if symmetric else None
    ih, th = linear_heads(p["w_img"], p["w_txt"])
    gsm = GradSampleModule(ExpandedBankLoss(ih, th, p["bank_txt"], bank_img, bank_grad=bank_grad), loss_reduction="sum")
    gsm(p["x_img"], p["x_txt"]).sum().backward()
    fi, ft = per_sample_head_grads(
        p["w_img"], p["w_txt"], p["x_img"], p["x_txt"], p["bank_txt"], bank_img, bank_grad=bank_grad
    )
    torch.testing.assert_close(ih.weight.grad_sample, fi, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(th.weight.grad_sample, ft, rtol=1e-9, atol=1e-12)


def test_fast_step_equals_opacus_dp_optimizer_without_noise():
    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    p = tiny_problem(n=6)
    ih, th = linear_heads(p["w_img"], p["w_txt"])
    gsm = GradSampleModule(ExpandedBankLoss(ih, th, p["bank_txt"], p["bank_img"]))
    C, expected = 0.3, 4
    opt = DPOptimizer(
        torch.optim.SGD(list(ih.parameters()) + list(th.parameters()), lr=1.0),
        noise_multiplier=0.0,
        max_grad_norm=C,
        expected_batch_size=expected,
    )
    opt.zero_grad()
    gsm(p["x_img"], p["x_txt"]).mean().backward()
    opt.pre_step()  # clip + (zero) noise + scale, leaves p.grad
    s_img, s_txt, *_ = clipped_grad_sum(
        p["w_img"], p["w_txt"], p["x_img"], p["x_txt"], p["bank_txt"], p["bank_img"], max_grad_norm=C
    )
    # Opacus clips with max_norm / (norm + 1e-6), as here
    torch.testing.assert_close(ih.weight.grad, s_img / expected, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(th.weight.grad, s_txt / expected, rtol=1e-7, atol=1e-10)


def test_stop_gradient_bank_gives_rank_one_per_sample_gradients():
    p = tiny_problem()
    fi, ft, _ = head_grad_factors(
        p["w_img"], p["w_txt"], p["x_img"], p["x_txt"], p["bank_txt"], p["bank_img"], bank_grad=False
    )
    for g in (fi.materialize(), ft.materialize()):
        assert all(int(torch.linalg.matrix_rank(gi)) == 1 for gi in g)
