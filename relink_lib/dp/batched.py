"""Several seeds of one DP-SGD head-training run as one batched computation (fast engine, pair sampling).

A factorial arm or a frontier setting trains the same mechanism under ``S`` seeds. The heads are small linear
maps, so the ``S`` runs are stacked: weights ``(S, d, D)``, each step's Poisson batches padded to the largest
(``(S, B_max, D)`` with a row mask), and the forward pass, the per-pair gradient factors, the clipped sums and
the optimiser update are batched matrix products over the seed axis. Per seed everything else is what
:func:`relink_lib.dp.train.train_heads` does with that seed: the sampler generator seeded ``seed``, the noise
generator seeded ``seed + NOISE_SEED_OFFSET`` (the image head's noise drawn before the text head's at every step),
the same clipping, divisor and optimiser (SGD and Adam act elementwise, so a stacked parameter is ``S``
independent optimisers). Results agree with the sequential runs up to floating-point summation order (tested);
the privacy record of each seed is the sequential one's (:func:`relink_lib.dp.train.training_record`).

Only the objective without gradient through the bank (``bank_grad=False``, the default), pair sampling and
bias-free ``nn.Linear`` heads batch; :func:`train_heads_seeds` runs anything else seed by seed.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .config import DPConfig, HeadTrainingResult
from .heads import linear_weight
from .objective import l2_normalize
from .sampling import poisson_batches
from .train import (
    NOISE_SEED_OFFSET,
    FeatureMatrix,
    as_feature_tensor,
    expected_batch_size,
    resolve_engine,
    run_plan,
    train_heads,
    training_record,
)

Heads = tuple[nn.Module, nn.Module]
SeedsHook = Callable[[int, list[Heads]], None]
"""Called after every step with ``(step, heads)``: one (image, text) pair of ``nn.Linear`` heads per seed, views of
the stacked weights at that step (copy them to keep a checkpoint)."""


def batchable(config: DPConfig, starts: Sequence[Heads]) -> bool:
    """Whether :func:`train_heads_seeds` can stack these runs: the fast engine on bias-free linear heads of one
    shape, pair sampling, no gradient through the bank."""
    if config.sampling != "pair" or config.bank_grad or not starts:
        return False
    if any(resolve_engine(config, *h) != "fast" for h in starts):
        return False
    shapes = {(tuple(linear_weight(i).shape), tuple(linear_weight(t).shape)) for i, t in starts}  # type: ignore[union-attr]
    return len(shapes) == 1


def _linear(w: Tensor) -> nn.Linear:
    head = nn.Linear(w.shape[1], w.shape[0], bias=False).to(w.dtype)
    with torch.no_grad():
        head.weight.copy_(w)
    head.weight.requires_grad_(False)
    return head


def _pad(rows: list[Tensor]) -> tuple[Tensor, Tensor]:
    """``(index (S, B_max), mask (S, B_max))``: each seed's rows padded with its first row (or row 0), masked out."""
    b_max = max(1, max(r.numel() for r in rows))
    idx = torch.zeros(len(rows), b_max, dtype=torch.int64)
    mask = torch.zeros(len(rows), b_max)
    for s, r in enumerate(rows):
        idx[s, : r.numel()] = r
        mask[s, : r.numel()] = 1.0
    return idx, mask


def _batched_loss(a: Tensor, c: Tensor, k_t: Tensor, k_i: Tensor | None, temperature: float) -> Tensor:
    """Per-pair loss ``(S, B)`` of the bank objective from projections ``a``, ``c`` ``(S, B, d)`` and unit bank
    embeddings ``k_t`` / ``k_i`` ``(S, m, d)`` (as :func:`relink_lib.dp.fastgrad.head_grad_factors`)."""
    u, v = l2_normalize(a), l2_normalize(c)
    pos = (u * v).sum(-1, keepdim=True)
    logp = torch.log_softmax(torch.cat([pos, u @ k_t.transpose(1, 2)], -1) / temperature, -1)
    loss = -logp[..., 0]
    if k_i is not None:
        logp2 = torch.log_softmax(torch.cat([pos, v @ k_i.transpose(1, 2)], -1) / temperature, -1)
        loss = 0.5 * (loss - logp2[..., 0])
    return loss


def train_heads_seeds(
    image_feats: FeatureMatrix,
    text_feats: FeatureMatrix,
    starts: Sequence[Heads],
    *,
    bank_text_feats: FeatureMatrix,
    config: DPConfig,
    seeds: Sequence[int],
    bank_image_feats: FeatureMatrix | None = None,
    patient_ids: Sequence | np.ndarray | None = None,
    on_step: SeedsHook | None = None,
    batched: bool | None = None,
) -> list[HeadTrainingResult]:
    """Train ``len(seeds)`` runs of one mechanism, run ``s`` from ``starts[s]`` with ``config.replace(seed=seeds[s])``.

    Features and bank as in :func:`relink_lib.dp.train.train_heads`. ``batched=None`` stacks the runs when
    :func:`batchable` says they can be; ``False`` runs them one by one through ``train_heads`` (the reference);
    ``True`` insists. ``on_step`` sees every seed's heads after each step. Histories hold the per-epoch privacy
    spend only (no evaluation loss). Returns one :class:`HeadTrainingResult` per seed, in order.
    """
    if len(starts) != len(seeds):
        raise ValueError(f"starts/seeds: expected one start per seed, got {len(starts)} and {len(seeds)}")
    can = batchable(config, starts)
    if batched is True and not can:
        raise ValueError("train_heads_seeds(batched=True): needs pair sampling, bank_grad=False, linear heads")
    if not (can if batched is None else batched):
        out = []
        hook = None
        if on_step is not None:
            outer = on_step

            def hook(step: int, i: nn.Module, t: nn.Module) -> None:
                outer(step, [(i, t)])

        for start, seed in zip(starts, seeds, strict=True):
            out.append(
                train_heads(
                    image_feats,
                    text_feats,
                    start[0],
                    start[1],
                    bank_text_feats=bank_text_feats,
                    bank_image_feats=bank_image_feats,
                    config=config.replace(seed=int(seed)),
                    patient_ids=patient_ids,
                    on_step=hook,
                )
            )
        return out
    return _train_stacked(
        image_feats, text_feats, starts, bank_text_feats, bank_image_feats, config, seeds, patient_ids, on_step
    )


def _train_stacked(
    image_feats: FeatureMatrix,
    text_feats: FeatureMatrix,
    starts: Sequence[Heads],
    bank_text_feats: FeatureMatrix,
    bank_image_feats: FeatureMatrix | None,
    config: DPConfig,
    seeds: Sequence[int],
    patient_ids: Sequence | np.ndarray | None,
    on_step: SeedsHook | None,
) -> list[HeadTrainingResult]:
    t0 = time.perf_counter()
    w0 = [(linear_weight(i), linear_weight(t)) for i, t in starts]
    dtype = w0[0][0].dtype  # type: ignore[union-attr]
    d_img, d_txt = w0[0][0].shape[1], w0[0][1].shape[1]  # type: ignore[union-attr]
    x_img = as_feature_tensor(image_feats, "image_feats", dtype, d_img)
    x_txt = as_feature_tensor(text_feats, "text_feats", dtype, d_txt)
    if x_img.shape[0] != x_txt.shape[0] or x_img.shape[0] < 2:
        raise ValueError(
            f"image_feats/text_feats: expected the same number (>= 2) of rows, got {x_img.shape[0]}, {x_txt.shape[0]}"
        )
    bank_txt = as_feature_tensor(bank_text_feats, "bank_text_feats", dtype, d_txt)
    bank_img = (
        None if bank_image_feats is None else as_feature_tensor(bank_image_feats, "bank_image_feats", dtype, d_img)
    )
    n = x_img.shape[0]
    plan = run_plan(n, config)  # pair sampling (batchable): the units are the pairs
    units, q, steps, per_epoch, sigma = plan.units, plan.q, plan.steps, plan.per_epoch, plan.sigma
    clip, tau, cn = config.private, float(config.temperature), float(config.max_grad_norm)
    w_img = torch.stack([w[0].detach().clone() for w in w0]).requires_grad_(True)  # type: ignore[union-attr]
    w_txt = torch.stack([w[1].detach().clone() for w in w0]).requires_grad_(True)  # type: ignore[union-attr]
    opt: torch.optim.Optimizer
    if config.optimizer == "sgd":
        opt = torch.optim.SGD([w_img, w_txt], lr=config.lr)
    else:
        opt = torch.optim.Adam([w_img, w_txt], lr=config.lr)
    samplers = [poisson_batches(units, q, steps, torch.Generator().manual_seed(int(s))) for s in seeds]
    noise_gens = [torch.Generator().manual_seed(int(s) + NOISE_SEED_OFFSET) for s in seeds]
    expected = float(expected_batch_size(units.n_units, q))
    for step in range(1, steps + 1):
        rows = [next(sm)[0] for sm in samplers]
        idx, mask = _pad(rows)
        xi, xt = x_img[idx], x_txt[idx]  # (S, B, D)
        wi, wt = w_img.detach(), w_txt.detach()
        with torch.enable_grad():
            a = torch.bmm(xi, wi.transpose(1, 2)).requires_grad_(True)
            c = torch.bmm(xt, wt.transpose(1, 2)).requires_grad_(True)
            k_t = l2_normalize(torch.matmul(bank_txt, wt.transpose(1, 2)))
            k_i = None if bank_img is None else l2_normalize(torch.matmul(bank_img, wi.transpose(1, 2)))
            loss = _batched_loss(a, c, k_t, k_i, tau)
            e_img, e_txt = torch.autograd.grad((loss * mask).sum(), [a, c])
        if clip:
            sq = (e_img * e_img).sum(-1) * (xi * xi).sum(-1) + (e_txt * e_txt).sum(-1) * (xt * xt).sum(-1)
            coef = (cn / (sq.clamp_min(0).sqrt() + 1e-6)).clamp(max=1.0) * mask
        else:
            coef = mask
        g_img = torch.bmm((e_img * coef[..., None]).transpose(1, 2), xi)
        g_txt = torch.bmm((e_txt * coef[..., None]).transpose(1, 2), xt)
        if clip and sigma > 0:
            std = sigma * cn
            g_img = g_img + std * torch.stack(
                [torch.randn(g_img.shape[1:], generator=g, dtype=dtype) for g in noise_gens]
            )
            g_txt = g_txt + std * torch.stack(
                [torch.randn(g_txt.shape[1:], generator=g, dtype=dtype) for g in noise_gens]
            )
        if clip:
            denom = torch.full((len(seeds), 1, 1), expected, dtype=dtype)
        else:
            denom = mask.sum(1).clamp_min(1.0).to(dtype)[:, None, None]
        w_img.grad, w_txt.grad = g_img / denom, g_txt / denom
        opt.step()
        opt.zero_grad(set_to_none=True)
        if on_step is not None:
            on_step(step, [(_linear(w_img[s].detach()), _linear(w_txt[s].detach())) for s in range(len(seeds))])
    elapsed = time.perf_counter() - t0
    out = []
    for s, seed in enumerate(seeds):
        img, txt = _linear(w_img[s].detach()), _linear(w_txt[s].detach())
        for name, head in (("image_head", img), ("text_head", txt)):
            if not bool(torch.isfinite(head.weight).all()):
                raise FloatingPointError(
                    f"train_heads_seeds: the trained {name} of seed {seed} has NaN or inf weights after {steps} "
                    f"steps (lr={config.lr}, optimizer={config.optimizer!r}); lower DPConfig.lr"
                )
        cfg = config.replace(seed=int(seed))
        record = training_record(cfg, "fast", sigma, q, steps, units, n, bank_txt, bank_img, patient_ids, None)
        record["train_time_s"] = elapsed / len(seeds)
        record["batched_seeds"] = len(seeds)
        history = pd.DataFrame(
            [{"step": k, "epoch": k / per_epoch} for k in range(per_epoch, steps + 1, per_epoch)]
            + ([] if steps % per_epoch == 0 else [{"step": steps, "epoch": steps / per_epoch}])
        )
        out.append(HeadTrainingResult(img, txt, record, history))
    return out
