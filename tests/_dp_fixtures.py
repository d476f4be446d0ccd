"""Tiny random features and linear heads shared by the DP tests (float64 for exact comparisons)."""

from __future__ import annotations

import torch
from torch import nn


def tiny_problem(
    n: int = 7,
    d: int = 5,
    d_img: int = 6,
    d_txt: int = 8,
    m: int = 9,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> dict:
    """Random private pairs, a public bank (text and image), and bias-free linear heads."""
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype)

    return {
        "w_img": r(d, d_img),
        "w_txt": r(d, d_txt),
        "x_img": r(n, d_img),
        "x_txt": r(n, d_txt),
        "bank_txt": r(m, d_txt),
        "bank_img": r(m + 2, d_img),
    }


def linear_heads(w_img: torch.Tensor, w_txt: torch.Tensor) -> tuple[nn.Linear, nn.Linear]:
    """nn.Linear heads (no bias) holding copies of the given weights."""
    ih = nn.Linear(w_img.shape[1], w_img.shape[0], bias=False).to(w_img.dtype)
    th = nn.Linear(w_txt.shape[1], w_txt.shape[0], bias=False).to(w_txt.dtype)
    with torch.no_grad():
        ih.weight.copy_(w_img)
        th.weight.copy_(w_txt)
    return ih, th


def brute_per_sample(p: dict, bank_img: torch.Tensor | None, temperature: float = 0.07, bank_grad: bool = True):
    """Per-sample gradients by torch.func (vmap over grad), the independent reference."""
    from torch.func import grad, vmap

    from relink_lib.dp.objective import per_example_loss_weights

    def f(wi, wt, x, t):
        return per_example_loss_weights(wi, wt, x[None], t[None], p["bank_txt"], bank_img, temperature, bank_grad)[0]

    return vmap(grad(f, argnums=(0, 1)), in_dims=(None, None, 0, 0))(p["w_img"], p["w_txt"], p["x_img"], p["x_txt"])
