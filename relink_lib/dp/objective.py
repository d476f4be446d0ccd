"""A per-example-decomposable contrastive objective for the projection heads.

The usual CLIP/InfoNCE loss contrasts every pair in a batch against the other pairs of the
same batch, so changing one private pair moves every other row's gradient and per-sample
clipping no longer bounds one pair's influence (docs/dp.md). Here each private
pair ``i`` is contrasted only against a FIXED bank of non-private (public) features:

    L_i = w * CE([u_i . v_i, u_i . k_1, ..., u_i . k_m] / tau, target 0)          image -> report
        + w * CE([v_i . u_i, v_i . k'_1, ..., v_i . k'_m'] / tau, target 0)        report -> image (optional)

with ``u_i = normalize(W_img x_i)``, ``v_i = normalize(W_txt t_i)``, ``k_j = normalize(W_txt b_j)``
for the public report bank ``b`` and ``k'_j = normalize(W_img b'_j)`` for the optional public
image bank ``b'``; ``w = 1`` with one direction and ``1/2`` with both. ``L_i`` depends on pair
``i``, the heads and public data only, so the gradient of ``sum_i L_i`` is a sum of per-pair
terms and clipping each one bounds the sensitivity exactly.

Two implementations of the same loss are provided: :func:`per_example_loss` (the heads as
arbitrary modules, used with Opacus hooks and ``torch.func``) and the closed-form per-sample
gradients of bias-free linear heads in :mod:`relink_lib.dp.fastgrad`.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import DEFAULT_TEMPERATURE  # defined with DPConfig's other defaults; re-exported here


def l2_normalize(x: Tensor, eps: float = 1e-12) -> Tensor:
    """Rows of ``x`` scaled to unit L2 norm (last dimension); ``eps`` guards zero rows."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def _direction_loss(query: Tensor, positive: Tensor, bank: Tensor, temperature: float) -> Tensor:
    """Per-example CE of ``query`` (n, d) against its ``positive`` (n, d) and a ``bank``.

    ``bank`` is (m, d) (shared) or (n, m, d) (one copy per example, as Opacus hooks need).
    Returns (n,).
    """
    pos = (query * positive).sum(-1, keepdim=True)
    if bank.dim() == 2:
        neg = query @ bank.T
    else:
        neg = torch.einsum("nd,nmd->nm", query, bank)
    logits = torch.cat([pos, neg], dim=1) / temperature
    return -F.log_softmax(logits, dim=1)[:, 0]


def per_example_loss(
    image_head: Callable[[Tensor], Tensor],
    text_head: Callable[[Tensor], Tensor],
    image_feats: Tensor,
    text_feats: Tensor,
    bank_text_feats: Tensor,
    bank_image_feats: Tensor | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    bank_grad: bool = True,
) -> Tensor:
    """The decomposable contrastive loss of each private pair, shape (n,).

    ``image_feats`` (n, D_img) and ``text_feats`` (n, D_txt) are pre-projection features of the
    private pairs; ``bank_text_feats`` (m, D_txt) and optional ``bank_image_feats`` (m', D_img)
    are pre-projection features of PUBLIC data, never of the private training pairs.
    ``bank_grad=False`` treats the bank's embeddings as constants (no gradient through them, as
    MoCo's keys): the per-sample gradients are then rank one per head.
    """
    u = l2_normalize(image_head(image_feats))
    v = l2_normalize(text_head(text_feats))
    k = l2_normalize(text_head(bank_text_feats))
    k = k if bank_grad else k.detach()
    loss = _direction_loss(u, v, k, temperature)
    if bank_image_feats is None:
        return loss
    k_img = l2_normalize(image_head(bank_image_feats))
    k_img = k_img if bank_grad else k_img.detach()
    return 0.5 * (loss + _direction_loss(v, u, k_img, temperature))


def per_example_loss_weights(
    w_img: Tensor,
    w_txt: Tensor,
    image_feats: Tensor,
    text_feats: Tensor,
    bank_text_feats: Tensor,
    bank_image_feats: Tensor | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    bank_grad: bool = True,
) -> Tensor:
    """:func:`per_example_loss` for bias-free linear heads given as weight matrices (d, D).

    A pure function of the weights, for ``torch.func.grad``/``vmap`` brute-force checks.
    """
    return per_example_loss(
        lambda x: x @ w_img.T,
        lambda x: x @ w_txt.T,
        image_feats,
        text_feats,
        bank_text_feats,
        bank_image_feats,
        temperature,
        bank_grad,
    )


class ExpandedBankLoss(nn.Module):
    """The objective as a module whose every input row carries its own copy of the banks.

    Opacus' grad-sample hooks treat the first dimension of every activation as the example
    index, so the shared bank cannot go through the heads as a separate batch. Here the head
    inputs are (n, 1 + m, D): row 0 the example's own feature, rows 1.. the public bank, and
    ``forward`` returns the per-example losses (n,). Exact, but it repeats the bank pass n
    times; :mod:`relink_lib.dp.fastgrad` avoids that for linear heads.
    """

    image_head: nn.Module
    text_head: nn.Module
    bank_text: Tensor
    bank_image: Tensor | None

    def __init__(
        self,
        image_head: nn.Module,
        text_head: nn.Module,
        bank_text_feats: Tensor,
        bank_image_feats: Tensor | None = None,
        temperature: float = DEFAULT_TEMPERATURE,
        bank_grad: bool = True,
    ) -> None:
        super().__init__()
        self.image_head = image_head
        self.text_head = text_head
        self.register_buffer("bank_text", bank_text_feats.detach().clone())
        self.register_buffer("bank_image", None if bank_image_feats is None else bank_image_feats.detach().clone())
        self.temperature = float(temperature)
        self.bank_grad = bool(bank_grad)

    def forward(self, image_feats: Tensor, text_feats: Tensor) -> Tensor:
        n = image_feats.shape[0]
        txt_in = torch.cat([text_feats[:, None, :], self.bank_text.expand(n, -1, -1)], dim=1)
        txt_out = l2_normalize(self.text_head(txt_in))
        v, k = txt_out[:, 0], txt_out[:, 1:]
        k = k if self.bank_grad else k.detach()
        if self.bank_image is None:
            u = l2_normalize(self.image_head(image_feats[:, None, :]))[:, 0]
            return _direction_loss(u, v, k, self.temperature)
        img_in = torch.cat([image_feats[:, None, :], self.bank_image.expand(n, -1, -1)], dim=1)
        img_out = l2_normalize(self.image_head(img_in))
        u, k_img = img_out[:, 0], img_out[:, 1:]
        k_img = k_img if self.bank_grad else k_img.detach()
        return 0.5 * (_direction_loss(u, v, k, self.temperature) + _direction_loss(v, u, k_img, self.temperature))


def batch_infonce(image_emb: Tensor, report_emb: Tensor, temperature: float = DEFAULT_TEMPERATURE) -> Tensor:
    """Symmetric in-batch InfoNCE of (n, d) embeddings (a diagnostic on PUBLIC data only).

    Not decomposable; never use it on private data under DP.
    """
    u, v = l2_normalize(image_emb), l2_normalize(report_emb)
    logits = u @ v.T / temperature
    target = torch.arange(u.shape[0], device=u.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
