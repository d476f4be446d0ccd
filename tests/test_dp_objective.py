"""The bank objective: known values, module/functional agreement, and per-example decomposability."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _dp_fixtures import linear_heads, tiny_problem
from torch.func import grad, vmap

from relink_lib.dp.objective import ExpandedBankLoss, batch_infonce, per_example_loss, per_example_loss_weights


def test_known_value_identity_heads():
    # identity heads, unit features: logits are plain dot products / tau
    tau = 0.5
    x = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    bank = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64)
    loss = per_example_loss_weights(eye, eye, x, t, bank, temperature=tau)
    logits = np.array([0.0, 1.0, -1.0]) / tau
    expected = -(logits[0] - np.log(np.exp(logits).sum()))
    assert loss.shape == (1,)
    assert float(loss[0]) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("symmetric", [False, True])
def test_module_forms_agree(symmetric):
    p = tiny_problem()
    bank_img = p["bank_img"] if symmetric else None
    ih, th = linear_heads(p["w_img"], p["w_txt"])
    a = per_example_loss(ih, th, p["x_img"], p["x_txt"], p["bank_txt"], bank_img)
    b = per_example_loss_weights(p["w_img"], p["w_txt"], p["x_img"], p["x_txt"], p["bank_txt"], bank_img)
    c = ExpandedBankLoss(ih, th, p["bank_txt"], bank_img)(p["x_img"], p["x_txt"])
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


@pytest.mark.parametrize("bank_grad", [True, False])
@pytest.mark.parametrize("symmetric", [False, True])
def test_changing_one_pair_leaves_other_pairs_gradients(symmetric, bank_grad):
    p = tiny_problem(n=5)
    bank_img = p["bank_img"] if symmetric else None

    def grads(x_img, x_txt):
        def f(wi, wt, x, t):
            return per_example_loss_weights(wi, wt, x[None], t[None], p["bank_txt"], bank_img, bank_grad=bank_grad)[0]

        return vmap(grad(f, argnums=(0, 1)), in_dims=(None, None, 0, 0))(p["w_img"], p["w_txt"], x_img, x_txt)

    def batch_grads(x_img, x_txt):
        # gradient of loss_i computed inside the whole batch (what training does)
        jac = torch.autograd.functional.jacobian(
            lambda wi, wt: per_example_loss_weights(wi, wt, x_img, x_txt, p["bank_txt"], bank_img, bank_grad=bank_grad),
            (p["w_img"], p["w_txt"]),
        )
        return jac

    j0 = batch_grads(p["x_img"], p["x_txt"])
    x_img2, x_txt2 = p["x_img"].clone(), p["x_txt"].clone()
    x_img2[2] += 3.0
    x_txt2[2] -= 2.0
    j1 = batch_grads(x_img2, x_txt2)
    others = [0, 1, 3, 4]
    for h in range(2):
        torch.testing.assert_close(j0[h][others], j1[h][others])
        assert not torch.allclose(j0[h][2], j1[h][2])
    # and the in-batch gradient of loss_i equals the gradient of example i alone
    gi, gt = grads(p["x_img"], p["x_txt"])
    torch.testing.assert_close(j0[0], gi)
    torch.testing.assert_close(j0[1], gt)


def test_in_batch_infonce_is_not_decomposable():
    # the contrast: the standard loss couples rows, so the test above would fail for it
    p = tiny_problem(n=5)

    def per_row(wi, wt, xi, xt):
        u, v = xi @ wi.T, xt @ wt.T
        u = u / u.norm(dim=1, keepdim=True)
        v = v / v.norm(dim=1, keepdim=True)
        logits = u @ v.T / 0.07
        return -torch.log_softmax(logits, 1).diagonal()

    j0 = torch.autograd.functional.jacobian(lambda wi: per_row(wi, p["w_txt"], p["x_img"], p["x_txt"]), p["w_img"])
    x_txt2 = p["x_txt"].clone()
    x_txt2[2] -= 2.0
    j1 = torch.autograd.functional.jacobian(lambda wi: per_row(wi, p["w_txt"], p["x_img"], x_txt2), p["w_img"])
    assert not torch.allclose(j0[0], j1[0])


def test_batch_infonce_perfect_alignment_is_small():
    e = torch.eye(4, dtype=torch.float64)
    assert float(batch_infonce(e, e, temperature=0.01)) < 1e-6
    assert float(batch_infonce(e, e.flip(0), temperature=0.01)) > 10
    assert math.isfinite(float(batch_infonce(e, e)))
