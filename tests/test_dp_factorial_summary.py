"""Chapter 6's factorial: the typed result's round trip, the payload, the sentences (both branches), the arms and the
step hook its learning curve reads."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from relink_lib.config import DPConfig
from relink_lib.dp.factorial import Estimate
from relink_lib.dp.factorial_stage import (
    ConfirmationSummary,
    CurvePoint,
    FactorialArm,
    FactorialCost,
    FactorialResult,
    RecallCurvePoint,
    arm_specs,
)
from relink_lib.dp.frontier import Setting
from relink_lib.dp.summary import NO_CONFIRMATION, factorial_findings, factorial_payload, factorial_table
from relink_lib.dp.train import train_heads


def _arm(
    name: str, init: str, training: str, cut: float, lo: float, hi: float, eps: float | None = None
) -> FactorialArm:
    return FactorialArm(
        name=name,
        init=init,
        training=training,
        n_seeds=3,
        trained_on="private train split",
        n_train=100,
        steps=10,
        expected_batch_size=16,
        noise_multiplier=2.0 if training == "dp" else None,
        r1=0.01 * (1 - cut),
        r1_seed_sd=0.001,
        cut=cut,
        cut_ci_low=lo,
        cut_ci_high=hi,
        zero_shot_auroc=0.7,
        retrieval_precision_at_10=0.3,
        epsilon_target=eps,
        epsilon=eps * 0.99 if eps is not None else None,
        epsilon_dp_accounting_rdp=eps * 0.99 if eps is not None else None,
    )


def _result(*, clear: bool) -> FactorialResult:
    wide = (-0.2, 0.6) if not clear else (0.3, 0.7)
    arms = (
        _arm("pretrained/none", "pretrained", "none", 0.0, 0.0, 0.0),
        _arm("pretrained/dp@0.34", "pretrained", "dp", 0.1, -0.05, 0.25, 0.34),
        dataclasses.replace(
            _arm("reinit/none", "reinit", "none", 0.3, 0.1, 0.5), r1=0.00007, r1_seed_min=0.00003, r1_seed_max=0.00014
        ),
        _arm("reinit/clip_only", "reinit", "clip_only", 0.45, 0.35, 0.55),
        _arm("reinit/dp@0.34", "reinit", "dp", 0.5, 0.4, 0.6, 0.34),
        _arm("public_only", "reinit", "public_only", 0.55 if clear else 0.5, 0.45, 0.65),
    )
    curve = (CurvePoint(1.0, 10, 2, 0.005, 0.5, 0.4, 0.6, 0.69, 1.0),)
    conf = ConfirmationSummary(
        n_pairs=20000,
        n_patients=8000,
        seed=9001,
        seed_offset=9001,
        features="abc",
        source="fresh synthetic patients",
        pool_size=10000,
        dp_arm="reinit/dp@0.34",
        dp_cut=Estimate(0.5, *(wide if not clear else (0.4, 0.6)), "1 - R@1(DP) / R@1(pretrained)"),
        paper_cut=0.618,
        curve=(
            RecallCurvePoint("pretrained", 10000, 1, 0.01, 0.008, 0.012),
            RecallCurvePoint("dp", 10000, 1, 0.005, 0.004, 0.006, 0.5, 0.4, 0.6),
        ),
    )
    return FactorialResult(
        setting={"init": "reinit", "optimizer": "sgd", "lr": 0.03, "epochs": 3.0},
        selected_init="reinit",
        target_epsilon=0.34,
        pool_size=10000,
        n_private=100,
        n_public=20,
        seeds=(1000, 1001, 1002),
        n_boot=100,
        arms=arms,
        noise_share=Estimate(0.1, *wide, "noise def") if not clear else Estimate(0.8, 0.6, 0.95, "noise def"),
        reinit_share=Estimate(0.8, 0.6, 0.95, "reinit def") if clear else Estimate(0.3, -0.1, 0.7, "reinit def"),
        public_vs_dp=Estimate(0.05, 0.01, 0.09, "pub def") if clear else Estimate(0.0, -0.05, 0.05, "pub def"),
        learning_curve=curve,
        confirmation=conf,
        zero_shot_drop=Estimate(1.2, 0.5, 1.9, "zs def") if clear else Estimate(0.2, -0.4, 0.8, "zs def"),
        cost=FactorialCost(1.0, 2.0, 3.5, 10, 12, 4),
    )


@pytest.mark.parametrize("clear", [True, False])
def test_factorial_result_round_trips_through_json(clear: bool) -> None:
    r = _result(clear=clear)
    back = FactorialResult.from_json(json.loads(json.dumps(r.to_json())))
    assert back == r
    assert back.selected_dp_arm.name == "reinit/dp@0.34"
    assert isinstance(back.confirmation.dp_cut, Estimate)


def test_payload_has_the_documented_keys_and_says_when_unavailable() -> None:
    p = factorial_payload(_result(clear=True))
    for key in ("factorial", "noise_share", "reinit_share", "public_vs_dp", "learning_curve", "confirmation"):
        assert key in p
    assert set(p["noise_share"]) == {"value", "ci_low", "ci_high", "definition"}
    assert p["confirmation"]["available"] and p["confirmation"]["paper_cut"] == 0.618
    assert {"init", "training", "epsilon_target", "n_seeds", "r1", "cut", "cut_ci_low"} <= set(p["factorial"][1])
    assert "epsilon" not in p["factorial"][2]  # clip-only claims no epsilon
    none = factorial_payload(None)
    assert none == {"confirmation": {"available": False, "note": NO_CONFIRMATION}}
    json.dumps(p)


def test_findings_when_the_intervals_exclude_zero() -> None:
    out = factorial_findings(_result(clear=True), simulation=True)
    text = " ".join(out)
    assert "In this simulation" in out[0] and "N = 10,000" in out[0]
    assert "a cut of 50.0% (95% CI: 40.0% to 60.0% cut)" in out[0]
    assert "61.8%" in out[0] and "the paper's figure" in out[0]
    assert "most of the cut comes from the noise" in text
    assert "most of the cut comes from re-initialising the heads" in text
    assert "the public-only heads cut more" in text
    assert "cannot tell" not in text


def test_findings_when_the_intervals_include_zero() -> None:
    out = factorial_findings(_result(clear=False), simulation=True)
    text = " ".join(out)
    assert "cannot tell whether the selected DP heads cut re-linkage" in text
    assert "cannot tell whether any of the cut comes from the noise" in text
    assert "cannot tell whether any of the cut comes from re-initialising" in text
    assert "cannot tell them apart" in text


def test_findings_without_a_confirmation_cohort_say_so() -> None:
    assert factorial_findings(None) == [f"The confirmation cohort is {NO_CONFIRMATION}."]


def test_an_undefined_share_is_said_to_be_undefined() -> None:
    r = _result(clear=True)
    import dataclasses

    r = dataclasses.replace(r, noise_share=Estimate(math.nan, math.nan, math.nan, "noise def"))
    assert any("noise share is undefined" in s for s in factorial_findings(r))


def test_factorial_table_has_one_row_per_arm() -> None:
    t = factorial_table(_result(clear=True))
    assert list(t["arm"]) == [a.name for a in _result(clear=True).arms]
    assert t.loc[t["arm"] == "public_only", "init"].item() == "fresh"


def test_arm_specs_share_the_schedule_and_clip_only_has_no_noise_and_no_target() -> None:
    base = DPConfig(target_epsilon=0.34, delta=1e-3, batch_size=16, lr=0.1, epochs=1.0, optimizer="sgd")
    specs = arm_specs(Setting("reinit", "sgd", 0.1, 2.0), base, 160, 40, (0.34, 8.0))
    names = [s.name for s in specs]
    assert names == [
        "pretrained/none", "pretrained/nonprivate", "pretrained/clip_only", "pretrained/dp@0.34", "pretrained/dp@8",
        "reinit/none", "reinit/nonprivate", "reinit/clip_only", "reinit/dp@0.34", "reinit/dp@8", "public_only",
    ]  # fmt: skip
    clip = next(s for s in specs if s.name == "reinit/clip_only").config
    assert clip is not None and clip.noise_multiplier == 0.0 and clip.target_epsilon is None and clip.private
    dp = [s.config for s in specs if s.training == "dp"]
    assert all(c is not None and c.noise_multiplier and c.noise_multiplier > 0 for c in dp)
    assert dp[0].noise_multiplier > dp[1].noise_multiplier  # type: ignore[union-attr,operator]
    assert all(s.config is None or (s.config.lr, s.config.optimizer) == (0.1, "sgd") for s in specs)
    pub = specs[-1].config
    assert pub is not None and not pub.private and pub.epochs * 3 == pytest.approx(20)  # 20 steps on 40 pairs


def _w(m: nn.Module) -> torch.Tensor:
    w = m.weight
    assert isinstance(w, torch.Tensor)
    return w.detach()


def _heads(seed: int) -> tuple[nn.Linear, nn.Linear]:
    torch.manual_seed(seed)
    return nn.Linear(6, 4, bias=False), nn.Linear(5, 4, bias=False)


def test_clip_only_clips_without_noise_and_claims_no_epsilon() -> None:
    rng = np.random.default_rng(0)
    x_img, x_txt, bank = rng.standard_normal((64, 6)), rng.standard_normal((64, 5)), rng.standard_normal((8, 5))
    a, b = _heads(0)
    cfg = DPConfig(target_epsilon=None, noise_multiplier=0.0, batch_size=16, epochs=1.0, lr=0.5, optimizer="sgd",
                   max_grad_norm=1e-3, delta=1e-3)  # fmt: skip
    res = train_heads(x_img, x_txt, a, b, bank_text_feats=bank, config=cfg)
    assert math.isinf(res.record["epsilon"]) and "epsilon_independent" not in res.record
    res2 = train_heads(x_img, x_txt, a, b, bank_text_feats=bank, config=cfg)
    assert torch.equal(_w(res.image_head), _w(res2.image_head))  # no noise: deterministic
    step = (_w(res.image_head) - _w(a)).norm() ** 2 + (_w(res.text_head) - _w(b)).norm() ** 2
    # 4 steps, each a clipped sum of at most ~2B pairs of norm <= C divided by B: bounded by lr * C * 2 * steps
    assert float(step.detach().sqrt()) <= 0.5 * 1e-3 * 2 * 4 + 1e-6


def test_a_checkpoint_of_the_step_hook_equals_a_shorter_run() -> None:
    rng = np.random.default_rng(1)
    x_img, x_txt, bank = rng.standard_normal((64, 6)), rng.standard_normal((64, 5)), rng.standard_normal((8, 5))
    a, b = _heads(1)
    cfg = DPConfig(target_epsilon=None, batch_size=16, epochs=3.0, lr=0.01, optimizer="adam", seed=4)
    snaps: dict[int, torch.Tensor] = {}
    train_heads(x_img, x_txt, a, b, bank_text_feats=bank, config=cfg,
                on_step=lambda s, i, t: snaps.__setitem__(s, _w(i).clone()))  # fmt: skip
    short = train_heads(x_img, x_txt, a, b, bank_text_feats=bank, config=cfg.replace(epochs=1.0))
    assert sorted(snaps) == list(range(1, 13))
    assert torch.allclose(snaps[4], _w(short.image_head))


def test_the_factorial_figures_draw_labelled_axes() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from relink_lib.plots.dp import plot_confirmation_curve, plot_factorial_cuts, plot_learning_curve

    r = _result(clear=True)
    fig, axes = plt.subplots(1, 3)
    outs = [
        plot_factorial_cuts(r, ax=axes[0]),
        plot_learning_curve(r, ax=axes[1]),
        plot_confirmation_curve(r, ax=axes[2]),
    ]
    for ax, out in zip(axes, outs):
        assert out is ax and ax.get_xlabel() and ax.get_ylabel()
    assert axes[1].get_xscale() == "log" and axes[2].get_xscale() == "log"
    plt.close(fig)


def test_the_confirmation_cohort_is_a_fresh_draw_and_absent_on_real_data() -> None:
    from relink_lib.dp.confirmation import (
        CONFIRMATION_SEED_OFFSET,
        ConfirmationInfo,
        ConfirmationSet,
        confirmation_params,
        get_confirmation,
    )
    from relink_lib.dp.factorial_stage import get_factorial
    from relink_lib.dp.frontier_stage import POOL_SEED_OFFSET
    from relink_lib.profiles import get_profile

    smoke = get_profile("smoke")
    p = confirmation_params(smoke)
    assert p.seed == smoke.seed + CONFIRMATION_SEED_OFFSET and CONFIRMATION_SEED_OFFSET != POOL_SEED_OFFSET
    assert p.cohort.n_pairs == smoke.dp.confirmation.n_pairs == 300
    assert p.cohort.split_fractions == (1.0, 0.0, 0.0) and not p.cohort.roundtrip
    assert get_profile("ci").dp.confirmation.n_pairs == 2500 and get_profile("default").dp.confirmation.n_pairs == 20000
    paper = get_profile("paper")
    assert get_confirmation(paper) is None and get_factorial(paper) is None
    info = ConfirmationInfo(10, 4, 9001, 9001, "abc", "fresh")
    arrays = {
        "image": np.zeros((10, 3)),
        "text": np.ones((10, 2)),
        "labels": np.zeros((10, 14)),
        "patients": np.arange(10),
    }
    cs = ConfirmationSet.from_json(info.to_json(), arrays)
    assert cs.info == info and len(cs) == 10 and ConfirmationInfo.from_json(cs.to_json()) == info
    with pytest.raises(ValueError, match="same number of rows"):
        ConfirmationSet(info, np.zeros((3, 2)), np.zeros((2, 2)), np.zeros((3, 14)), np.arange(3))


@pytest.mark.parametrize("clear", [True, False])
def test_chapter_7_headline_reads_the_confirmation_cohort(clear: bool) -> None:
    from relink_lib.dp.summary import confirmation_utility, confirmation_utility_sentence

    cu = confirmation_utility(_result(clear=clear))
    assert cu is not None and cu["cohort"] == "confirmation" and cu["n_pairs"] == 20000 and cu["n_seeds"] == 3
    text = confirmation_utility_sentence(cu)
    assert "20,000 fresh pairs of 8,000 patients" in text
    if clear:
        assert "a drop of 1.20 points (95% CI: 0.50 to 1.90 drop, paired over patients and seeds)" in text
        assert "cost zero-shot accuracy" in text
    else:
        assert "cannot tell the drop from zero" in text
    assert confirmation_utility(None) is None


def test_untrained_fresh_heads_are_reported_with_their_spread_over_init_draws() -> None:
    from relink_lib.dp.summary import factorial_findings

    text = "\n".join(factorial_findings(_result(clear=True)))
    assert "Untrained fresh heads, the chance-level control, re-link at 0.70x chance at N = 10,000" in text
    assert "anywhere from 0.30x to 1.40x" in text and "only the average over many draws" in text
