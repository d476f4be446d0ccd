"""Controls for the DP heads: non-private fine-tuning, re-initialised heads, output perturbation.

- non-private fine-tuning: :func:`relink_lib.dp.train_heads` with ``config.replace(target_epsilon=None)``
  (same objective, data, sampling and steps; no clipping, no noise);
- re-initialised heads: :func:`relink_lib.dp.heads.fresh_heads` (data-independent;
  :func:`relink_lib.dp.heads.reinit_heads` keeps the pretrained scale and embeds identically, since
  cosines are scale-invariant);
- output perturbation: Gaussian noise on the pretrained head weights, its scale tuned here so
  the re-linkage score falls as far as under DP. Comparing DP with it asks what DP's training
  adds over plain noise at the same loss of re-linkage. (Noise tuned to a score measured on
  held-out data is a control, not a privacy mechanism: it has no epsilon.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from torch import nn

from ..config import DPConfig
from .heads import perturb_heads


def nonprivate_config(config: DPConfig) -> DPConfig:
    """The same configuration without privacy (the non-private fine-tuning control)."""
    return config.replace(target_epsilon=None, noise_multiplier=None)


@dataclass
class PerturbationFit:
    """Result of :func:`tune_output_perturbation`: relative ``scale``, the heads and their score."""

    scale: float
    image_head: nn.Module
    text_head: nn.Module
    score: float
    baseline_score: float
    evaluations: int


def tune_output_perturbation(
    image_head: nn.Module,
    text_head: nn.Module,
    score_fn: Callable[[nn.Module, nn.Module], float],
    target_score: float,
    *,
    seed: int = 0,
    abs_tol: float = 0.005,
    max_scale: float = 1e3,
    max_iter: int = 30,
) -> PerturbationFit:
    """Find the relative noise scale whose perturbed heads score ``target_score``.

    ``score_fn(image_head, text_head)``: e.g. Recall@1 at N on held-out pairs, assumed to fall
    as the scale grows (the noise direction is fixed by ``seed``). Bisects log(scale) until
    ``|score - target| <= abs_tol`` or ``max_iter`` evaluations; returns the closest fit.
    """
    baseline = float(score_fn(image_head, text_head))
    if target_score >= baseline:
        img, txt = perturb_heads(image_head, text_head, 0.0, seed)
        return PerturbationFit(0.0, img, txt, baseline, baseline, 1)

    def evaluate(scale: float) -> tuple[float, nn.Module, nn.Module]:
        img, txt = perturb_heads(image_head, text_head, scale, seed)
        return float(score_fn(img, txt)), img, txt

    lo, hi = 0.0, 0.05
    evals = 1
    best: tuple[float, float, nn.Module, nn.Module] | None = None
    while True:
        score, img, txt = evaluate(hi)
        evals += 1
        best = (
            (hi, score, img, txt) if best is None or abs(score - target_score) < abs(best[1] - target_score) else best
        )
        if score <= target_score or hi >= max_scale:
            break
        lo, hi = hi, hi * 2
    while evals < max_iter and abs(best[1] - target_score) > abs_tol:
        mid = math.sqrt(lo * hi) if lo > 0 else hi / 2
        score, img, txt = evaluate(mid)
        evals += 1
        if abs(score - target_score) < abs(best[1] - target_score):
            best = (mid, score, img, txt)
        if score > target_score:
            lo = mid
        else:
            hi = mid
    return PerturbationFit(best[0], best[2], best[3], best[1], baseline, evals)
