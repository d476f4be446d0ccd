"""The DP frontier: grid, held-out halves, seed aggregation, the selection rule, the bootstrap CI, a tiny build."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from relink_lib.config import FrontierConfig
from relink_lib.dp import DPConfig
from relink_lib.dp.accounting import epsilon_dp_accounting
from relink_lib.dp.frontier import (
    SEED_METRICS,
    FrontierResult,
    Setting,
    aggregate_seeds,
    frontier_grid,
    heldout_halves,
    heldout_reference_pool_size,
    interpolate_at_cut,
    per_query_recall_at_1,
    reduction_interval,
    select_point,
)
from relink_lib.dp.frontier_stage import FrontierInputs, build_frontier, reference_setting
from relink_lib.dp.heads import fresh_heads, relative_drift

RULE = {"max_probe_auroc_drop": 0.5, "max_zero_shot_auroc_drop": 1.0, "reference_pool_size": 100, "n_private": 1000}


def _pt(cut, probe, zs, n=1000, private=True):
    return {
        "r1_reduction_select": cut,
        "probe_auroc_drop": probe,
        "zero_shot_auroc_drop": zs,
        "n_private": n,
        "private": private,
        "r1_reduction": 0.99,
    }


def test_select_point_picks_the_largest_eligible_cut():
    points = [
        _pt(0.30, 0.1, 0.2),
        _pt(0.90, 0.6, 0.0),  # probe too costly
        _pt(0.80, 0.1, 1.5),  # zero-shot too costly
        _pt(0.95, 0.0, 0.0, n=50_000),  # another private-set size (scaling study)
        _pt(0.99, 0.0, 0.0, private=False),  # a control, not DP
        _pt(0.45, 0.5, 1.0),  # on the bounds: eligible
        _pt(float("nan"), 0.0, 0.0),
        _pt(0.45, 0.0, 0.0),
    ]  # ties go to the first index
    assert select_point(points, RULE) == 5
    assert select_point(points[:5], RULE) == 0
    assert select_point([_pt(0.9, 2.0, 0.0)], RULE) is None
    # the report half's cut is never read
    flipped = [dict(p, r1_reduction=-p["r1_reduction"]) for p in points]
    assert select_point(flipped, RULE) == 5
    with pytest.raises(ValueError, match="max_zero_shot_auroc_drop"):
        select_point(points, {"max_probe_auroc_drop": 0.5, "reference_pool_size": 1, "n_private": 1})


def test_select_point_agrees_with_brute_force_on_random_frontiers():
    rng = np.random.default_rng(0)
    for _ in range(50):
        pts = [
            _pt(
                float(rng.uniform(-0.2, 1)),
                float(rng.uniform(-1, 1)),
                float(rng.uniform(-2, 3)),
                n=int(rng.choice([1000, 5000])),
            )
            for _ in range(12)
        ]
        ok = [
            i
            for i, p in enumerate(pts)
            if p["n_private"] == 1000 and p["probe_auroc_drop"] <= 0.5 and p["zero_shot_auroc_drop"] <= 1.0
        ]
        expected = max(ok, key=lambda i: pts[i]["r1_reduction_select"]) if ok else None
        assert select_point(pts, RULE) == expected


def test_frontier_grid_order_and_validation():
    spec = FrontierConfig(
        inits=("pretrained", "reinit"),
        optimizers=("sgd", "adam"),
        lrs={"sgd": (0.1, 1.0, 3.0), "adam": (1e-3, 1e-2, 3e-2)},
        epochs=(5, 20),
    )
    grid = frontier_grid(spec)
    assert len(grid) == 24
    assert grid[0] == Setting("pretrained", "sgd", 0.1, 5.0) and grid[-1] == Setting("reinit", "adam", 3e-2, 20.0)
    assert {s.lr for s in grid if s.optimizer == "adam"} == {1e-3, 1e-2, 3e-2}
    with pytest.raises(ValueError, match=r"\['lrs'\].*learning rates > 0 for every optimizer"):
        dataclasses.replace(spec, lrs={"sgd": (1.0,)})
    with pytest.raises(ValueError, match=r"\['dp'\]\['frontier'\]\['inits'\]"):
        dataclasses.replace(spec, inits=("public",))
    with pytest.raises(ValueError, match=r"unknown key 'dp.frontier.epoch' \(did you mean 'epochs'\?\)"):
        FrontierConfig.from_mapping({"epoch": (5,)})


def test_heldout_halves_split_patients_and_cover_every_row():
    ids = np.repeat(np.arange(40), np.arange(40) % 4 + 1)
    sel, rep = heldout_halves(ids, seed=3)
    assert (sel ^ rep).all()
    assert not set(ids[sel]) & set(ids[rep])
    assert len(set(ids[sel])) == 20
    again = heldout_halves(ids, seed=3)
    assert (again[0] == sel).all()
    assert heldout_reference_pool_size(5400, 5461, 10_000) == 5400
    assert heldout_reference_pool_size(20_000, 30_000, 10_000) == 10_000
    assert heldout_reference_pool_size(20_000, 30_000, FrontierConfig().reference_pool_size) == 10_000
    assert heldout_reference_pool_size(20_000, 30_000, 1000) == 1000
    with pytest.raises(ValueError, match="at least 2 pairs"):
        heldout_reference_pool_size(1, 10, 10_000)


def test_aggregate_seeds_mean_and_sample_sd():
    agg = aggregate_seeds(
        [{"r1_reduction": 0.1, "drift": 1.0}, {"r1_reduction": 0.3, "drift": 1.0}, {"r1_reduction": 0.5, "drift": 1.0}],
        metrics=("r1_reduction", "drift"),
    )
    assert agg["n_seeds"] == 3
    assert agg["r1_reduction"] == pytest.approx(0.3)
    assert agg["r1_reduction_seed_sd"] == pytest.approx(0.2)
    assert agg["drift_seed_sd"] == 0.0
    assert math.isnan(aggregate_seeds([{"drift": 2.0}], metrics=("drift",))["drift_seed_sd"])
    with pytest.raises(ValueError, match="at least one seed"):
        aggregate_seeds([])


def test_reduction_interval_covers_the_point_estimate_and_shrinks_with_more_patients():
    rng = np.random.default_rng(1)

    def width(n_pat):
        ids = np.repeat(np.arange(n_pat), 2)
        before = rng.uniform(0.2, 0.6, len(ids))
        after = before * 0.5
        lo, hi = reduction_interval(before, after, ids, n_boot=300)
        assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)  # a constant ratio: no spread
        noisy = np.clip(after + rng.normal(0, 0.1, len(ids)), 0, 1)
        lo, hi = reduction_interval(before, noisy, ids, n_boot=300)
        point = 1 - noisy.mean() / before.mean()
        assert lo <= point <= hi
        return hi - lo

    assert width(400) < width(25)
    with pytest.raises(ValueError, match="same length"):
        reduction_interval(np.ones(3), np.ones(4), np.arange(3))


def test_per_query_recall_matches_brute_force_pools():
    g = torch.Generator().manual_seed(0)
    img, rep = torch.randn(30, 4, generator=g).numpy(), torch.randn(30, 4, generator=g).numpy()
    pq = per_query_recall_at_1(img, rep, pool_size=30)  # the whole set: R@1 is 1 exactly when the truth is top
    u = img / np.linalg.norm(img, axis=1, keepdims=True)
    v = rep / np.linalg.norm(rep, axis=1, keepdims=True)
    s = u @ v.T
    top = (s.max(1) <= np.diag(s)) & ((s >= np.diag(s)[:, None]).sum(1) == 1)
    assert (pq == top.astype(float)).all()
    assert 0 < per_query_recall_at_1(img, rep, pool_size=5).mean() < 1


def test_per_query_recall_breaks_exact_ties_uniformly_at_random():
    # all-equal embeddings: every distractor ties the truth, so R@1 is chance, 1 / N, exactly
    same = np.ones((12, 3))
    for n in (2, 5, 12, 50):
        np.testing.assert_allclose(per_query_recall_at_1(same, same, pool_size=n), 1 / min(n, 12), rtol=0, atol=1e-12)
    # exact ties and strict orders mixed: cosines in {0, 1/sqrt(2), 1} from three distinct directions
    basis = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])
    rng = np.random.default_rng(3)
    img, rep = basis[rng.integers(0, 3, 9)], basis[rng.integers(0, 3, 9)]
    u = img / np.linalg.norm(img, axis=1, keepdims=True)
    v = rep / np.linalg.norm(rep, axis=1, keepdims=True)
    s = np.round(u @ v.T, 12)
    m = len(s)
    for n in (2, 4, 9):
        got = per_query_recall_at_1(img, rep, pool_size=n)
        # brute force: the mean over every pool of n - 1 distractors of R@1 under a uniform random tie-break
        want = np.zeros(m)
        for i in range(m):
            others = [j for j in range(m) if j != i]
            pools = list(itertools.combinations(others, n - 1))
            for pool in pools:
                better = sum(s[i, j] > s[i, i] for j in pool)
                tied = sum(s[i, j] == s[i, i] for j in pool)
                want[i] += (better == 0) / (tied + 1) / len(pools)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)
        # and a Monte Carlo of random pools with random tie-breaking agrees within its error
        hits = np.zeros(m)
        draws = 4000
        for i in range(m):
            others = np.array([j for j in range(m) if j != i])
            for _ in range(draws):
                pool = np.concatenate([[i], rng.choice(others, n - 1, replace=False)])
                scores = s[i, pool]
                top = pool[scores == scores.max()]
                hits[i] += rng.choice(top) == i
        np.testing.assert_allclose(hits / draws, want, atol=4.5 * np.sqrt(0.25 / draws))
    # the mitigation's mean R@1 is the same function
    from relink_lib.dp.outcomes import recall_at_1

    assert recall_at_1(same, same, 5, 64) == pytest.approx(0.2, abs=1e-12)
    assert recall_at_1(img, rep, 4, 64) == pytest.approx(float(per_query_recall_at_1(img, rep, 4).mean()), abs=1e-12)


def test_interpolate_at_cut():
    curve = [{"r1_reduction": 0.0, "zs": 0.0}, {"r1_reduction": 0.5, "zs": 10.0}, {"r1_reduction": 1.0, "zs": 30.0}]
    assert interpolate_at_cut(curve, 0.25, "zs") == pytest.approx(5.0)
    assert interpolate_at_cut(curve, 0.75, "zs") == pytest.approx(20.0)
    assert math.isnan(interpolate_at_cut(curve, 1.2, "zs"))


def test_fresh_heads_are_data_independent_and_drift_is_relative():
    ih, th = nn.Linear(50, 20, bias=False), nn.Linear(40, 20, bias=False)
    with torch.no_grad():
        ih.weight.mul_(100.0)  # the pretrained scale must not leak into the fresh draw
    a = fresh_heads(ih, th, seed=4)
    b = fresh_heads(nn.Linear(50, 20, bias=False), nn.Linear(40, 20, bias=False), seed=4)
    torch.testing.assert_close(a[0].weight, b[0].weight)
    assert float(a[0].weight.detach().pow(2).mean()) == pytest.approx(1 / 50, rel=0.15)
    assert relative_drift((ih, th), (ih, th)) == 0.0
    doubled = (nn.Linear(50, 20, bias=False), nn.Linear(40, 20, bias=False))
    with torch.no_grad():
        doubled[0].weight.copy_(2 * ih.weight)
        doubled[1].weight.copy_(2 * th.weight)
    assert relative_drift(doubled, (ih, th)) == pytest.approx(1.0)


def _tiny_inputs(seed=0, n_train=120, n_test=60, d_img=6, d_txt=5, d=4, n_public=0):
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_all = n_train + n_test + n_public
    latent = torch.randn(n_all, d, generator=g)
    a, b = torch.randn(d, d_img, generator=g), torch.randn(d, d_txt, generator=g)
    x_img = (latent @ a + 0.5 * torch.randn(n_all, d_img, generator=g)).numpy()
    x_txt = (latent @ b + 0.5 * torch.randn(n_all, d_txt, generator=g)).numpy()
    labels = rng.choice([0.0, 1.0], size=(n_all, 14))
    ih, th = nn.Linear(d_img, d, bias=False), nn.Linear(d_txt, d, bias=False)
    with torch.no_grad():
        ih.weight.copy_(torch.linalg.pinv(a).T)
        th.weight.copy_(torch.linalg.pinv(b).T)
    prompts = {
        k: (rng.normal(size=(1, d_txt)), rng.normal(size=(1, d_txt)))
        for k in __import__("relink_lib.labels", fromlist=["CHEXPERT_LABELS"]).CHEXPERT_LABELS
    }
    tr, te, pu = slice(0, n_train), slice(n_train, n_train + n_test), slice(n_train + n_test, None)
    public = (
        {
            "public_img": x_img[pu],
            "public_txt": x_txt[pu],
            "public_labels": labels[pu],
            "public_patients": np.arange(n_public) // 2,
        }
        if n_public
        else {}
    )
    bank = rng.normal(size=(16, d_txt)).astype(np.float32), rng.normal(size=(16, d_img)).astype(np.float32)
    return FrontierInputs(
        template=(ih, th),
        train_img=x_img[tr],
        train_txt=x_txt[tr],
        train_labels=labels[tr],
        train_patients=np.arange(n_train) // 2,
        test_img=x_img[te],
        test_txt=x_txt[te],
        test_labels=labels[te],
        test_patients=np.arange(n_test) // 2,
        bank_text=bank[0],
        bank_image=bank[1],
        prompt_features=prompts,
        chunk_size=64,
        probe_C=1.0,
        **public,
    )


TINY_SPEC = FrontierConfig(
    inits=("pretrained", "reinit"),
    optimizers=("sgd", "adam"),
    lrs={"sgd": (0.5,), "adam": (1e-2,)},
    epochs=(1,),
    n_seeds=2,
    scaling_sizes=(200,),
    max_probe_auroc_drop=0.5,
    max_zero_shot_auroc_drop=1.0,
    op_scales=(0.1, 1.0),
    n_boot=50,
    split_seed=0,
    probe_max_train=2000,
)
TINY_BASE = DPConfig(target_epsilon=0.34, delta=6e-6, epochs=1, batch_size=16, engine="fast")


def tiny_frontier(spec: FrontierConfig = TINY_SPEC, workers: int | None = None) -> tuple[FrontierResult, dict]:
    """A whole frontier build on tiny arrays, with a supplementary pool for the scaling study."""
    extra = _tiny_inputs(seed=1, n_train=100, n_test=2)

    def pool(n):
        return {
            "image": extra.train_img[:n],
            "text": extra.train_txt[:n],
            "patients": np.char.add("pool:", extra.train_patients[:n].astype(str)),
            "n_pairs": n,
        }

    return build_frontier(_tiny_inputs(n_public=60), spec, TINY_BASE, pool=pool, workers=workers)


def test_points_in_workers_are_the_same_bits_as_in_process():
    """The grid's and the pilot's points computed in two spawned one-thread workers: every number of the result
    and every per-query array equal to the in-process build's (only the cost record differs)."""
    alone, arr_alone = tiny_frontier(workers=1)
    side, arr_side = tiny_frontier(workers=2)
    a, b = alone.to_json(), side.to_json()
    assert a["cost"]["n_evaluations"] == b["cost"]["n_evaluations"] > 0
    assert a["cost"]["n_runs_trained"] == b["cost"]["n_runs_trained"]
    for d in (a, b):  # seconds: the cost record and the pool's generation time
        d.pop("cost"), d["private_pool"].pop("generation_and_features_s")
    assert json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)
    for k in arr_alone:
        np.testing.assert_array_equal(arr_alone[k], arr_side[k])


def test_tiny_frontier_build_records_every_field_and_honest_epsilons():
    result, arrays = tiny_frontier()
    payload = result.to_json()
    fr = payload["frontier"]
    assert len(fr) == 5 and [p["study"] for p in fr] == ["grid"] * 4 + ["scaling"]
    assert fr[-1]["n_private"] == 200
    assert [p.study for p in result.frontier] == ["grid"] * 4 + ["scaling"]
    # points x seeds (grid, pilot, scaling), the released run's evaluation, controls
    assert result.cost.n_evaluations == 9 * 2 + 1 + 2 + 2 + len(TINY_SPEC.op_scales) + 1
    assert result.cost.n_runs_trained == 9 * 2 + 2 and len(result.cost.runs_steps_seconds) == 20
    fields = (
        "init",
        "optimizer",
        "lr",
        "epochs",
        "n_private",
        "epsilon",
        "delta",
        "noise_multiplier",
        "sample_rate",
        "steps",
        "max_grad_norm",
        "r1_reduction_select",
        "r1_reduction",
        "probe_auroc_drop",
        "zero_shot_auroc_drop",
        "drift",
        "n_seeds",
        "r1_reduction_seed_sd",
    )
    for p in fr:
        assert all(k in p for k in fields)
        assert p["n_seeds"] == 2
        eps = epsilon_dp_accounting(p["noise_multiplier"], p["sample_rate"], p["steps"], 6e-6, "rdp")
        assert eps <= 0.34 * 1.01 and p["epsilon"] <= 0.34 * 1.01
    # the headline is the public pilot: its pick on the pilot's points is the released (reference) setting
    assert result.headline_protocol == "public_pilot" and [p.name for p in result.protocols] == [
        "public_pilot",
        "private_frontier",
    ]
    pilot, private = result.protocols
    assert len(result.pilot) == 4 and all(p.study == "pilot" and p.n_private == 30 for p in result.pilot)
    pilot_rule = dataclasses.replace(result.selection_rule, n_private=30)
    pick = select_point(result.pilot, pilot_rule)
    assert result.selected == (None if pick is None else result.reference) and pilot.fallback == (pick is None)
    assert result.frontier[result.reference].setting == result.pilot[pilot.frontier_index].setting
    assert reference_setting(result) == result.frontier[pilot.frontier_index].setting
    assert payload["selected"] in (None, payload["reference"])
    # the private frontier's pick is the rule on the private grid; fresh heads only, upper bounds
    priv_pick = select_point(result.frontier, result.selection_rule)
    assert private.fallback == (priv_pick is None) and (priv_pick is None or priv_pick == private.frontier_index)
    assert result.selection_rule.inits == ("reinit",) and result.selection_rule.drop_statistic == "upper95"
    grid = result.points("grid")
    for p in grid + list(result.pilot):
        assert p.probe_auroc_drop_upper is not None and p.zero_shot_auroc_drop_upper is not None
        assert p.retrieval_p10_drop_report is not None
    # privacy: one run for the pilot's release; the composition of all 4 x 2 runs for the private frontier
    assert pilot.n_dp_runs_on_private == 1 and pilot.epsilon <= 0.34 * 1.01
    assert private.n_dp_runs_on_private == 8 and private.epsilon == private.epsilon_composed
    assert private.epsilon_composed == pytest.approx(private.epsilon_composed_dp_accounting_rdp, rel=1e-4)
    assert private.epsilon > 0.34 and private.tuning_mu == 8 and private.epsilon_tuning_bound > 0.34
    assert 0 <= pilot.seed_winners_agree <= pilot.n_seeds == 2
    assert result.selection_rule.reference_pool_size == result.heldout.reference_pool_size == 30  # the smaller half
    ref = fr[payload["reference"]]
    assert "r1_reduction_ci_low" in ref and sum("r1_reduction_ci_low" in p for p in fr) == 1
    assert ref["r1_reduction_ci_low"] <= ref["r1_reduction_ci_high"]
    assert {c["control"] for c in payload["controls"]} == {
        "nonprivate",
        "reinit_untrained",
        "output_perturbation_matched",
    }
    npv = next(c for c in payload["controls"] if c["control"] == "nonprivate")
    assert npv["private"] is False and npv["epsilon"] == math.inf
    # the pretrained heads' drift is 0 and the curve's drift follows the relative scale
    drifts = [o["drift"] for o in payload["output_perturbation_curve"]]
    assert drifts == pytest.approx([0.1, 1.0], rel=0.35)  # 44 Gaussian draws per scale
    assert arrays["pretrained"].shape == arrays["reference"].shape == (payload["heldout"]["n_report"],)


def _fake_frontier(cut=0.62, ci=(0.55, 0.70), probe=0.2, selected=True):
    def point(i, init, opt, c, drift, study="grid", n=8000):
        return {
            "init": init,
            "optimizer": opt,
            "lr": 0.1 * (i + 1),
            "epochs": 3.0,
            "n_private": n,
            "study": study,
            "private": True,
            "epsilon": 0.339,
            "delta": 6e-6,
            "noise_multiplier": 4.7,
            "sample_rate": 0.03,
            "steps": 96,
            "max_grad_norm": 1.0,
            "r1_reduction_select": c,
            "r1_reduction": c,
            "r1_reduction_seed_sd": 0.05,
            "probe_auroc_drop": 0.1,
            "zero_shot_auroc_drop": 0.3,
            "probe_auroc_drop_report": 0.1,
            "zero_shot_auroc_drop_report": 0.3,
            "drift": drift,
            "r1_select": 0.01,
            "r1_report": 0.01,
            "n_seeds": 3,
        }

    pts = [
        point(0, "pretrained", "sgd", 0.1, 0.1),
        point(1, "pretrained", "sgd", 0.2, 0.3),
        point(2, "pretrained", "adam", 0.3, 0.6),
        point(3, "reinit", "sgd", cut, 1.4),
    ]
    pts[3]["probe_auroc_drop_report"] = probe
    pts.append(point(4, "reinit", "sgd", 0.8, 1.4, study="scaling", n=50_000))
    rule = {
        "max_probe_auroc_drop": 0.5,
        "max_zero_shot_auroc_drop": 1.0,
        "reference_pool_size": 5000,
        "n_private": 8000,
    }
    ctrl = [
        {
            "control": "nonprivate",
            "r1_reduction": 0.05,
            "zero_shot_auroc_drop_report": 0.0,
            "probe_auroc_drop_report": 0.0,
            "drift": 0.2,
        },
        {
            "control": "reinit_untrained",
            "r1_reduction": 0.9,
            "zero_shot_auroc_drop_report": 30.0,
            "probe_auroc_drop_report": 0.1,
            "drift": 1.4,
        },
        {
            "control": "output_perturbation_matched",
            "r1_reduction": cut,
            "zero_shot_auroc_drop_report": 8.0,
            "probe_auroc_drop_report": 0.3,
            "drift": 2.0,
            "scale": 2.0,
        },
    ]
    seen = {
        "pool_size": 5000,
        "seen_r1_before": 0.02,
        "seen_r1_after": 0.008,
        "seen_r1_reduction": 0.6,
        "heldout_r1_before": 0.01,
        "heldout_r1_after": 0.004,
        "heldout_r1_reduction": cut,
    }
    return {
        "frontier": pts,
        "selection_rule": rule,
        "selected": 3 if selected else None,
        "reference": 3,
        "reference_is_selected": selected,
        "r1_reduction_ci_low": ci[0],
        "r1_reduction_ci_high": ci[1],
        "controls": ctrl,
        "seen": seen,
        "n_seeds": 3,
        "output_perturbation_curve": [],
    }


def _result(fake: dict) -> FrontierResult:
    """The :class:`FrontierResult` of a fake frontier dict, its missing fields filled with placeholders."""
    nan = math.nan
    point = {
        "target_epsilon": 0.34,
        "accountant": "rdp",
        "epsilon_dp_accounting_rdp": 0.339,
        "epsilon_dp_accounting_pld": 0.3,
        "seeds": [0, 1, 2],
        "per_seed": [],
        **{f"{k}_seed_sd": nan for k in SEED_METRICS},
    }
    seen = {"n_seen": 8000, "n_heldout": 5000}
    rest = {
        "private_pool": None,
        "heldout": {"n_select": 5000, "n_report": 5000, "split_seed": 0, "reference_pool_size": 5000, "baseline": {}},
        "seeds": [0, 1, 2],
        "cost": {
            "train_s": 1.0,
            "eval_s": 1.0,
            "total_s": 2.0,
            "n_runs_trained": 1,
            "n_evaluations": 1,
            "runs_steps_seconds": [[96, 1.0]],
        },
    }
    return FrontierResult.from_json(
        {
            **rest,
            **fake,
            "frontier": [{**point, **p} for p in fake["frontier"]],
            "seen": {**seen, **fake["seen"]},
        }
    )


def test_findings_state_the_claim_from_the_numbers():
    from relink_lib.dp.summary import frontier_findings, mechanism_paragraph, paper_claim_check

    fr = _result(_fake_frontier())
    chk = paper_claim_check(fr)
    assert chk["selected"]["reached"] and chk["selected"]["ci_above"] and chk["any_point"] == [3, 4]
    text = " ".join(frontier_findings(fr))
    assert "reaches the paper's claim" in text and "whole CI lies above 50%" in text and "62%" in text
    assert "80% at 50,000 pairs" in text
    low_ci = " ".join(frontier_findings(_result(_fake_frontier(ci=(0.45, 0.7)))))
    assert "but the CI reaches below 50%" in low_ci
    miss = _result(_fake_frontier(cut=0.3))
    assert not paper_claim_check(miss)["selected"]["reached"]
    text_miss = " ".join(frontier_findings(miss))
    assert (
        "does not reach the paper's claim" in text_miss
        and "the selected setting has a cut of 30% with a drop of 0.20 points in linear-probe AUROC" in text_miss
    )
    assert "+" not in text_miss  # one sign convention: sizes with words, never a signed change
    costly = _result(
        _fake_frontier(probe=0.8)
    )  # the report half's probe drop breaks the claim though the rule passed it
    assert not paper_claim_check(costly)["selected"]["reached"]
    none = " ".join(frontier_findings(_result(_fake_frontier(selected=False))))
    assert "No setting meets the declared rule" in none and "no setting meets the rule" in none
    para = mechanism_paragraph(fr)
    assert "Spearman rho +1.00" in para  # the three pretrained points rise with drift
    assert "comes with a drop of 8.00 points in zero-shot AUROC, against a drop of 0.30 points for the DP heads" in para
    assert "keeps the label-level alignment" in para
    assert "the instance-level detail the noise keeps the heads from re-learning" in para  # a fresh-init reference
    fake = _fake_frontier()
    fake["frontier"][3]["init"] = "pretrained"
    assert "most of the cut comes from the noise and clipping" in mechanism_paragraph(_result(fake))
    fake["frontier"][1]["r1_reduction"], fake["frontier"][2]["r1_reduction"] = 0.9, 0.05
    assert "is not tied to how far the heads move" in mechanism_paragraph(_result(fake))


def test_frontier_figures_draw_every_point_and_control():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from relink_lib.plots.dp import plot_cut_vs_drift, plot_frontier, plot_scaling

    fake = _fake_frontier()
    fake["output_perturbation_curve"] = [
        {"scale": 0.1, "drift": 0.1, "r1_reduction": 0.05},
        {"scale": 1.0, "drift": 1.0, "r1_reduction": 0.5},
    ]
    fr = _result(fake)
    fig, axes = plt.subplots(1, 3)
    plot_frontier(fr, ax=axes[0])
    offsets = np.concatenate([c.get_offsets() for c in axes[0].collections if len(c.get_offsets())])
    # 4 grid points + 3 controls + the selected ring; cuts in percent
    assert len(offsets) == 8 and sorted(offsets[:, 1])[-1] == pytest.approx(90.0)
    plot_cut_vs_drift(fr, ax=axes[1])
    line = [ln for ln in axes[1].get_lines() if ln.get_label() == "output perturbation (scale sweep)"][0]
    assert list(line.get_ydata()) == [5.0, 50.0]
    plot_scaling(fr, ax=axes[2])
    xs = [ln.get_xdata() for ln in axes[2].get_lines() if len(ln.get_xdata()) == 2][0]
    assert list(xs) == [8000, 50_000]  # the own size, then the scaling point
    plt.close(fig)


def test_seed_spread_is_the_median_over_the_grid_only():
    from relink_lib.dp.summary import seed_spread

    fake = _fake_frontier()
    for i, p in enumerate(fake["frontier"]):
        p["zero_shot_auroc_drop_seed_sd"] = 100.0 if p["study"] == "scaling" else float(i)
    fr = _result(fake)
    assert seed_spread(fr)["zero_shot_drop"] == pytest.approx(1.5)  # median of 0, 1, 2, 3
    assert math.isnan(seed_spread(fr)["probe_drop"])


def test_fresh_and_rms_matched_reinit_heads_embed_identically():
    from relink_lib.dp.frontier import embed_heads as _embed
    from relink_lib.dp.heads import reinit_heads

    torch.manual_seed(0)
    ih, th = nn.Linear(12, 6, bias=False), nn.Linear(9, 6, bias=False)
    x_img, x_txt = np.random.default_rng(0).normal(size=(20, 12)), np.random.default_rng(1).normal(size=(20, 9))
    a = _embed(fresh_heads(ih, th, seed=5), x_img, x_txt)
    b = _embed(reinit_heads(ih, th, seed=5), x_img, x_txt)
    assert np.allclose(a[0], b[0], atol=1e-6) and np.allclose(a[1], b[1], atol=1e-6)


# ------------------------------------------------------------------------------------------ issue 22: the rule's bounds
UPPER_RULE = dict(RULE, inits=("reinit",), drop_statistic="upper95")


def _up(cut, probe_up, zs_up, init="reinit"):
    return dict(_pt(cut, 0.0, 0.0), init=init, probe_auroc_drop_upper=probe_up, zero_shot_auroc_drop_upper=zs_up)


def test_select_point_bounds_the_upper_drops_and_keeps_to_fresh_heads():
    points = [
        _up(0.9, 0.1, 0.1, init="pretrained"),  # covers only the update: not selectable
        _up(0.8, 0.6, 0.1),  # mean drops 0 but upper probe bound too high
        _up(0.5, 0.5, 1.0),  # on the bounds
        _up(0.4, 0.0, 0.0),
    ]
    assert select_point(points, UPPER_RULE) == 2
    assert select_point(points, RULE) == 0  # a stored rule without the new keys keeps the mean semantics
    assert select_point([dict(points[1], probe_auroc_drop_upper=None)], UPPER_RULE) is None


def test_seed_winners_apply_the_rule_to_each_seed():
    from relink_lib.dp.frontier import FrontierPoint, SeedOutcome, seed_winners

    def point(init, cuts):
        nan = math.nan
        base = {f.name: nan for f in dataclasses.fields(FrontierPoint) if f.default is dataclasses.MISSING}
        per = tuple(SeedOutcome(i, c, c, 0.0, 0.0, 0.0) for i, c in enumerate(cuts))
        return FrontierPoint(
            **dict(
                base,
                init=init,
                optimizer="sgd",
                lr=0.1,
                epochs=1.0,
                n_private=1000,
                study="grid",
                private=True,
                n_seeds=len(cuts),
                seeds=tuple(range(len(cuts))),
                per_seed=per,
            )
        )

    pts = [point("reinit", [0.5, 0.2, 0.5]), point("reinit", [0.4, 0.6, 0.1]), point("pretrained", [0.9, 0.9, 0.9])]
    assert seed_winners(pts, UPPER_RULE) == [0, 1, 0]


def test_weighted_macro_auroc_matches_sklearn_and_the_bound_covers_the_drop():
    from sklearn.metrics import roc_auc_score

    from relink_lib.dp.frontier import drop_upper_bound, macro_auroc, weighted_macro_auroc

    rng = np.random.default_rng(0)
    n = 200
    y = rng.choice([0.0, 1.0], size=(n, 3))
    y[:5, 0] = np.nan
    base = np.nan_to_num(y) + rng.normal(0, 0.8, size=y.shape)
    base[:, 1] = np.round(base[:, 1])  # ties
    want = np.mean([roc_auc_score(y[~np.isnan(y[:, j]), j], base[~np.isnan(y[:, j]), j]) for j in range(3)])
    assert macro_auroc(base, y) == pytest.approx(want)
    assert weighted_macro_auroc(base, y, np.ones((1, n)))[0] == pytest.approx(want)
    # integer weights = duplicated rows
    w = rng.integers(0, 3, size=n)
    rows = np.repeat(np.arange(n), w)
    assert weighted_macro_auroc(base, y, w[None].astype(float))[0] == pytest.approx(macro_auroc(base[rows], y[rows]))
    seeds = [np.nan_to_num(y) + rng.normal(0, 1.2, size=y.shape) for _ in range(3)]
    drop = 100 * (macro_auroc(base, y) - np.mean([macro_auroc(s, y) for s in seeds]))
    up = drop_upper_bound(base, seeds, y, np.arange(n) // 2, n_boot=300, seed=1)
    assert up > drop > 0
    # identical heads: the drop and its bound are 0
    assert drop_upper_bound(base, [base, base], y, np.arange(n), n_boot=50) == pytest.approx(0.0, abs=1e-12)


def test_a_reused_drop_bootstrap_gives_exactly_a_fresh_one():
    """The frontier draws the baseline's patient resamples once (DropBootstrap) and bounds every point with them:
    each bound must be the very number a fresh draw gives, for any set of seeds, in any order."""
    from relink_lib.dp.frontier import DropBootstrap, drop_upper_bound

    rng = np.random.default_rng(3)
    n, labels = 400, 5
    y = rng.integers(0, 2, (n, labels)).astype(float)
    y[rng.random((n, labels)) < 0.1] = np.nan
    base = np.round(rng.normal(size=(n, labels)), 1)  # ties
    pats = rng.integers(0, 150, n)
    shared = DropBootstrap.draw(base, y, pats, 120, 7)
    for k in (3, 1, 2):
        seeds = [base + rng.normal(scale=0.4, size=(n, labels)) for _ in range(k)]
        fresh = drop_upper_bound(base, seeds, y, pats, n_boot=120, seed=7)
        assert drop_upper_bound(base, seeds, y, pats, n_boot=120, seed=7, bootstrap=shared) == fresh
