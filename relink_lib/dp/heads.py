"""Projection-head helpers: copies, the linear fast-path check, re-initialisation, perturbation."""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn


def clone_head(head: nn.Module) -> nn.Module:
    """A trainable deep copy of ``head`` (the input is never modified)."""
    if not isinstance(head, nn.Module):
        raise TypeError(f"head: expected a torch.nn.Module, got {type(head).__name__}")
    out = copy.deepcopy(head)
    for p in out.parameters():
        p.requires_grad_(True)
    return out


def linear_weight(head: nn.Module) -> Tensor | None:
    """The (d, D) weight of a bias-free ``nn.Linear`` head, else ``None`` (no fast path)."""
    if isinstance(head, nn.Linear) and head.bias is None:
        return head.weight
    return None


def head_params(*heads: nn.Module) -> list[nn.Parameter]:
    """All trainable parameters of the heads, in order."""
    return [p for h in heads for p in h.parameters() if p.requires_grad]


def _rms(t: Tensor) -> float:
    return float(t.detach().pow(2).mean().sqrt())


@torch.no_grad()
def reinit_heads(image_head: nn.Module, text_head: nn.Module, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """Copies of the heads with freshly drawn weights (the control "re-initialised heads").

    Every parameter is replaced by Gaussian noise with the same RMS as the pretrained parameter,
    so the scale of the embeddings is kept and only the learned structure is lost.
    """
    gen = torch.Generator().manual_seed(int(seed))
    outs = []
    for head in (image_head, text_head):
        new = clone_head(head)
        for p in new.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * _rms(p))
        outs.append(new)
    return outs[0], outs[1]


@torch.no_grad()
def perturb_heads(
    image_head: nn.Module, text_head: nn.Module, scale: float, seed: int = 0
) -> tuple[nn.Module, nn.Module]:
    """Output perturbation: copies with ``W + scale * rms(W) * N(0, I)`` on every parameter.

    ``scale`` is relative to each parameter's RMS (0 returns exact copies). The same ``seed``
    draws the same noise direction for every ``scale``, so the effect is monotone in ``scale``.
    """
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(f"scale: expected a finite value >= 0, got {scale}")
    gen = torch.Generator().manual_seed(int(seed))
    outs = []
    for head in (image_head, text_head):
        new = clone_head(head)
        for p in new.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * (scale * _rms(p)))
        outs.append(new)
    return outs[0], outs[1]


@torch.no_grad()
def fresh_heads(image_head: nn.Module, text_head: nn.Module, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """Copies of the heads with data-independent weights N(0, 1 / fan_in) drawn from ``seed``.

    Unlike :func:`reinit_heads` nothing is read from the pretrained weights (not even their
    scale), so heads trained from here under DP carry the guarantee on the heads themselves,
    given the frozen encoders. Cosine similarities are scale-invariant, so untrained fresh heads
    re-link exactly as :func:`reinit_heads` with the same draw would.
    """
    gen = torch.Generator().manual_seed(int(seed))
    outs = []
    for head in (image_head, text_head):
        new = clone_head(head)
        for p in new.parameters():
            fan_in = p.shape[1] if p.dim() >= 2 else p.shape[0]
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) / math.sqrt(fan_in))
        outs.append(new)
    return outs[0], outs[1]


@torch.no_grad()
def relative_drift(heads: tuple[nn.Module, nn.Module], reference: tuple[nn.Module, nn.Module]) -> float:
    """``||W - W_ref|| / ||W_ref||`` over all parameters of both heads together (Frobenius norms)."""
    num = den = 0.0
    for h, r in zip(heads, reference):
        for p, q in zip(h.parameters(), r.parameters()):
            if p.shape != q.shape:
                raise ValueError(
                    f"heads: parameter shape {tuple(p.shape)} differs from the reference's {tuple(q.shape)}"
                )
            num += float((p.detach() - q.detach()).pow(2).sum())
            den += float(q.detach().pow(2).sum())
    if den == 0:
        raise ValueError("reference: all-zero heads, relative drift undefined")
    return math.sqrt(num / den)
