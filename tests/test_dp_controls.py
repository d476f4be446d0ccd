"""Controls: output perturbation scale and tuning, re-initialisation, the non-private config."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from relink_lib.dp import DPConfig, perturb_heads, reinit_heads, tune_output_perturbation
from relink_lib.dp.controls import nonprivate_config


def _heads(seed=0):
    torch.manual_seed(seed)
    return nn.Linear(64, 32, bias=False), nn.Linear(48, 32, bias=False)


def test_perturbation_has_the_stated_relative_scale_and_is_reproducible():
    ih, th = _heads()
    same = perturb_heads(ih, th, 0.0)
    torch.testing.assert_close(same[0].weight, ih.weight)
    pi, pt = perturb_heads(ih, th, 0.5, seed=3)
    for new, old in ((pi, ih), (pt, th)):
        rel = float(((new.weight - old.weight).pow(2).mean().sqrt() / old.weight.pow(2).mean().sqrt()).detach())
        assert rel == pytest.approx(0.5, rel=0.06)  # 2048 / 1536 Gaussian draws
    again = perturb_heads(ih, th, 0.5, seed=3)
    torch.testing.assert_close(again[0].weight, pi.weight)
    with pytest.raises(ValueError, match="scale"):
        perturb_heads(ih, th, -1.0)


def test_reinit_keeps_scale_and_loses_the_weights():
    ih, th = _heads()
    ri, rt = reinit_heads(ih, th, seed=1)
    for new, old in ((ri, ih), (rt, th)):
        assert float(new.weight.pow(2).mean().sqrt()) == pytest.approx(float(old.weight.pow(2).mean().sqrt()), rel=0.06)
        corr = torch.corrcoef(torch.stack([new.weight.flatten(), old.weight.flatten()]))[0, 1]
        assert abs(float(corr)) < 0.1


def test_tuning_hits_the_target_score():
    ih, th = _heads()

    def score(i, t):  # falls monotonically with the perturbation: cosine to the original weights
        w0 = torch.cat([ih.weight.flatten(), th.weight.flatten()])
        w = torch.cat([i.weight.flatten(), t.weight.flatten()])
        return float(torch.nn.functional.cosine_similarity(w, w0, dim=0).detach())

    fit = tune_output_perturbation(ih, th, score, target_score=0.6, seed=5, abs_tol=0.002)  # seed != init seed
    assert fit.score == pytest.approx(0.6, abs=0.002)
    assert fit.baseline_score == pytest.approx(1.0)
    # cos = 1 / sqrt(1 + s^2) for noise of relative scale s: s = sqrt(1/0.36 - 1) = 1.333
    assert fit.scale == pytest.approx((1 / 0.36 - 1) ** 0.5, rel=0.05)
    none = tune_output_perturbation(ih, th, score, target_score=1.5)
    assert none.scale == 0.0


def test_nonprivate_config_drops_noise_only():
    cfg = DPConfig(target_epsilon=0.34, noise_multiplier=2.0, lr=0.1, epochs=2)
    npc = nonprivate_config(cfg)
    assert not npc.private and npc.lr == 0.1 and npc.epochs == 2
