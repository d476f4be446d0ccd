"""The chapter 6-8 stage (relink_lib.dp.stage) on the smoke profile with a one-rung ladder, cached in a tmp dir.

Invariants that could fail: the pretrained variant is the audit of the same held-out features; the DP
record meets its target; the reduction is the table's (before - after) / before at the profile's reference
N; the output-perturbation control is tuned to the DP heads' Recall@1; the cached result reads back as
it was built and round-trips through its JSON; transfer with every variant's heads set to the pretrained
ones reproduces the pretrained numbers (and gets its own cache entry).
"""

from __future__ import annotations

import dataclasses
import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from relink_lib.audit import relink_audit
from relink_lib.cohorts.stage import get_cohort
from relink_lib.config import as_profile
from relink_lib.dp.frontier import Setting
from relink_lib.dp.stage import (
    MITIGATION_FORMAT,
    OP_MATCH_ABS_TOL,
    OP_MATCH_REL_TOL,
    VARIANTS,
    RungMitigation,
    mitigate_rung,
    reduction_at_reference,
    transfer_rung,
)
from relink_lib.features import embed_features, get_features
from relink_lib.labels import CHEXPERT_LABELS
from relink_lib.models.stage import get_ladder
from relink_lib.profiles import get_profile

OVERRIDES = {"ladder": {"rungs": ("full-reports",)}, "dp": {"frontier": {"scaling_factors": ()}}}
SETTING = Setting("pretrained", "sgd", 0.1, 1.0)
SMALL_REFERENCE = 10  # an N of the smoke audit's pool sizes, below the held-out split


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Every stage call of this module, once, against a module-wide cache folder."""
    base = tmp_path_factory.mktemp("dp-stage")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELINK_CACHE", str(base / "cache"))
        mp.setenv("RELINK_RESULTS", str(base / "results"))
        cfg = as_profile(get_profile("smoke", OVERRIDES))
        cohort = get_cohort(cfg, site="internal")
        rung = get_ladder(cfg, progress=False)[-1]
        m = mitigate_rung(cfg, cohort, rung, setting=SETTING)
        again = mitigate_rung(cfg, cohort, rung, setting=SETTING)
        small_cfg = as_profile(
            get_profile("smoke", {**OVERRIDES, "dp": {"frontier": {"scaling_factors": (), "reference_pool_size": 10}}})
        )
        small = mitigate_rung(small_cfg, cohort, rung, setting=SETTING)
        external = get_cohort(cfg, site="external")
        transfer = transfer_rung(cfg, external, rung, m)
        same = dataclasses.replace(m, heads={v: m.heads["pretrained"] for v in VARIANTS}, path=None)
        transfer_same = transfer_rung(cfg, external, rung, same)
        test = get_features(cfg, cohort, rung, "test", progress=False)
        encoder = rung.load(device="cpu")
    return SimpleNamespace(
        cfg=cfg,
        cohort=cohort,
        rung=rung,
        m=m,
        again=again,
        small=small,
        transfer=transfer,
        transfer_same=transfer_same,
        test=test,
        template=(encoder.image_head, encoder.text_head),
    )


def test_pretrained_variant_is_the_audit_of_the_same_features(stage):
    cfg, m = stage.cfg, stage.m
    img, rep = embed_features(stage.test, *stage.template)
    pairs = stage.cohort.pairs.iloc[stage.test.rows].reset_index(drop=True)
    pre = m.recall[m.recall["variant"] == "pretrained"]
    for pool, hard in (("random", False), ("matched", True)):
        direct = relink_audit(
            img,
            rep,
            cfg.audit.pool_sizes,
            cfg.audit.ks,
            labels=pairs[list(CHEXPERT_LABELS)] if hard else None,
            hard_negatives=hard,
            chunk_size=cfg.audit.chunk_size,
        )
        got = pre[pre["pool"] == pool].reset_index(drop=True)
        assert list(got["pool_size"]) == list(direct["pool_size"]) and list(got["k"]) == list(direct["k"])
        np.testing.assert_allclose(got["recall"], direct["recall"], rtol=1e-9, atol=1e-12)
    # every variant is measured on the same pools and the same held-out queries
    counts = m.recall.groupby("variant")["n_queries"].apply(tuple)
    assert set(counts.index) == set(VARIANTS) and len(set(counts)) == 1


def test_dp_record_meets_its_target_and_the_controls_are_what_they_say(stage):
    m, rec = stage.m, stage.m.record
    assert rec["private"] and rec["target_epsilon"] == stage.cfg.dp.target_epsilon
    assert 0 < rec["epsilon"] <= rec["target_epsilon"] * (1 + 1e-9)
    assert rec["lr"] == SETTING.lr and rec["optimizer"] == SETTING.optimizer and rec["epochs"] == SETTING.epochs
    npr = m.nonprivate_record
    assert not npr["private"] and math.isinf(npr["epsilon"]) and npr["steps"] == rec["steps"]
    assert m.setting == SETTING.as_dict()
    assert list(m.heads) == list(VARIANTS)
    # output perturbation is tuned to the DP heads' Recall@1 at the reference N, read from the table
    op = m.perturbation
    dp_r1 = reduction_at_reference(m, "dp")["recall_after"]
    assert op["target_recall_at_1"] == pytest.approx(dp_r1, abs=1e-9)
    pre_r1 = reduction_at_reference(m, "dp")["recall_before"]
    assert op["pretrained_recall_at_1"] == pytest.approx(pre_r1, abs=1e-9)
    op_r1 = reduction_at_reference(m, "output_perturbation")["recall_after"]
    assert op["recall_at_1"] == pytest.approx(op_r1, abs=1e-9)
    if dp_r1 >= pre_r1:  # DP did not cut re-linkage (the smoke model is barely trained): no noise to match it
        assert op["relative_scale"] == 0.0 and op_r1 == pre_r1
        for a, b in zip(m.heads["output_perturbation"], m.heads["pretrained"]):
            assert torch.equal(a.weight, b.weight)
    else:
        assert abs(op_r1 - dp_r1) <= max(OP_MATCH_ABS_TOL, OP_MATCH_REL_TOL * dp_r1) or op["evaluations"] >= 30


def test_reduction_at_reference_is_the_hand_computed_cut_at_the_profiles_n(stage):
    m, small, n_test = stage.m, stage.small, len(stage.test)
    # default reference N (10,000) is above the held-out split: the whole split
    assert stage.cfg.dp.frontier.reference_pool_size == 10_000 and m.reference_pool_size == n_test
    assert small.reference_pool_size == SMALL_REFERENCE < n_test and small.path != m.path
    for res in (m, small):
        r = res.recall
        at = r[(r["pool"] == "random") & (r["k"] == 1) & (r["pool_size"] == res.reference_pool_size)]
        before = float(at[at["variant"] == "pretrained"]["recall"].iloc[0])
        after = float(at[at["variant"] == "dp"]["recall"].iloc[0])
        red = reduction_at_reference(res, "dp")
        assert red["pool_size"] == res.reference_pool_size
        assert (red["recall_before"], red["recall_after"]) == (before, after)
        assert red["relative_reduction"] == pytest.approx((before - after) / before)

    # the reference N changes only where the cut is read, not the heads (same seed, same data); output
    # perturbation is the exception by design: its noise scale is tuned at the reference N
    def fixed(r: pd.DataFrame) -> pd.DataFrame:
        return r[r["variant"] != "output_perturbation"].reset_index(drop=True)

    assert (m.recall["variant"] != "output_perturbation").any()
    pd.testing.assert_frame_equal(fixed(small.recall), fixed(m.recall))


def test_cached_result_reads_back_as_built_and_round_trips_through_json(stage):
    m, again = stage.m, stage.again
    assert again.path == m.path and (m.path / "mitigation.json").is_file() and (m.path / "heads.pt").is_file()
    assert not (m.path / "meta.json").exists() and MITIGATION_FORMAT == 2
    dump = json.dumps(m.to_json(), sort_keys=True)
    assert json.dumps(again.to_json(), sort_keys=True) == dump
    for v in VARIANTS:
        for a, b in zip(m.heads[v], again.heads[v]):
            assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    back = RungMitigation.from_json(json.loads(json.dumps(m.to_json())), heads=m.heads, path=m.path)
    assert json.dumps(back.to_json(), sort_keys=True) == dump
    for name in ("recall", "utility", "history", "nonprivate_history"):
        pd.testing.assert_frame_equal(getattr(back, name), getattr(m, name))
    assert (back.rung_index, back.rung_name) == (stage.rung.index, stage.rung.name)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.setting = None  # type: ignore[misc]


def test_transfer_with_identical_heads_reproduces_the_pretrained_numbers(stage):
    (recall, util), (recall_same, util_same) = stage.transfer, stage.transfer_same

    def part(t: pd.DataFrame, v: str) -> pd.DataFrame:
        return t[t["variant"] == v].drop(columns="variant").reset_index(drop=True)

    for v in VARIANTS:
        pd.testing.assert_frame_equal(part(recall_same, v), part(recall, "pretrained"))
        pd.testing.assert_frame_equal(part(util_same, v), part(util, "pretrained"))
    # the real heads differ, so the transfer keyed on the heads did not reuse the entry above
    assert not part(recall, "reinit")["recall"].equals(part(recall, "pretrained")["recall"])


def _hand_made(recall: pd.DataFrame, reference: int) -> RungMitigation:
    return RungMitigation(
        rung_index=2,
        rung_name="full-reports",
        record={"epsilon": np.float64(0.33), "target_epsilon": 0.34, "steps": np.int64(12), "x": math.inf},
        nonprivate_record={"epsilon": math.inf},
        history=pd.DataFrame({"step": [0, 1], "public_eval_loss": [1.5, math.nan]}),
        nonprivate_history=pd.DataFrame({"step": [0], "public_eval_loss": [1.5]}),
        perturbation={"relative_scale": 0.1},
        recall=recall,
        utility=pd.DataFrame({"variant": ["dp"], "metric": ["linear_probe_auroc"], "label": ["macro"], "value": [0.7]}),
        reference_pool_size=reference,
        heads={},
        setting=SETTING.as_dict(),
    )


def _recall(before: dict[int, float], after: dict[int, float]) -> pd.DataFrame:
    rows = [
        {"variant": v, "pool": "random", "k": 1, "pool_size": n, "recall": r}
        for v, table in (("pretrained", before), ("dp", after))
        for n, r in table.items()
    ]
    return pd.DataFrame(rows)


def test_mitigation_json_round_trip_on_a_hand_made_result():
    m = _hand_made(_recall({100: 0.2}, {100: 0.05}), reference=100)
    data = json.loads(json.dumps(m.to_json()))
    assert data["record"]["steps"] == 12 and data["recall"][1]["recall"] == 0.05 and "heads" not in data
    back = RungMitigation.from_json(data)
    assert json.dumps(back.to_json(), sort_keys=True) == json.dumps(m.to_json(), sort_keys=True)
    pd.testing.assert_frame_equal(back.history, m.history)
    pd.testing.assert_frame_equal(back.recall, m.recall)
    assert back.heads == {} and back.path is None and back.setting == SETTING.as_dict()
    assert reduction_at_reference(back)["relative_reduction"] == pytest.approx(0.75)


def test_reduction_at_reference_reads_the_reference_n_not_the_largest():
    recall = _recall({10: 0.5, 100: 0.2}, {10: 0.4, 100: 0.05})
    red = reduction_at_reference(_hand_made(recall, reference=10))
    assert red == {"pool_size": 10, "recall_before": 0.5, "recall_after": 0.4, "relative_reduction": pytest.approx(0.2)}
    # a reference N above the held-out split: the largest N the table has
    assert reduction_at_reference(_hand_made(recall, reference=10_000))["pool_size"] == 100
