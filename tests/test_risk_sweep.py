"""The budget sweep on a toy linear-head set-up: one row per eps, risks ordered, the record carried,
the long table tagged with its budget, seeds averaged, the cut with its CI, the bounds at the re-linkage
priors; the attack settings come from the profile's budget section."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from relink_lib.audit import relink_audit
from relink_lib.config import BudgetConfig, as_profile
from relink_lib.dp import DPConfig
from relink_lib.risk.stage import RECALL_COLUMNS, _recall_rows
from relink_lib.risk.sweep import (
    RECORD_FIELDS,
    RERO_COLUMNS,
    AttackSettings,
    CutBaseline,
    Evaluation,
    SweepResult,
    budget_sweep,
    cut_interval,
    door_position,
    prior_risks,
    privacy_risks,
)

ATTACK = AttackSettings(n_targets=60, n_candidates=20, cos_threshold=0.5, n_updates=1, seed=0)


def _toy(n=96, d_img=12, d_txt=10, d=6, m=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_img = torch.randn(n, d_img, generator=g)
    x_txt = torch.randn(n, d_txt, generator=g)
    bank = torch.randn(m, d_txt, generator=g)
    img_head, txt_head = nn.Linear(d_img, d, bias=False), nn.Linear(d_txt, d, bias=False)
    with torch.no_grad():
        img_head.weight.copy_(torch.randn(d, d_img, generator=g) / math.sqrt(d_img))
        txt_head.weight.copy_(torch.randn(d, d_txt, generator=g) / math.sqrt(d_txt))
    return x_img.numpy(), x_txt.numpy(), bank.numpy(), img_head, txt_head


def test_sweep_rows_and_risk_ordering():
    x_img, x_txt, bank, img_head, txt_head = _toy()
    cfg = DPConfig(target_epsilon=0.34, delta=1e-5, epochs=2, batch_size=16, max_grad_norm=1.0, lr=1e-2, seed=0)
    calls = []

    def evaluate(ih, th):
        calls.append(1)
        emb = ih(torch.as_tensor(x_img)).detach().numpy()
        rows = pd.DataFrame({"pool": ["random", "matched"], "k": [1, 1], "recall": [len(calls), -len(calls)]})
        return Evaluation(metrics={"emb_norm": float(np.linalg.norm(emb, axis=1).mean())}, recall=rows)

    eps = [0.34, 1e15, None]
    result = budget_sweep(
        x_img,
        x_txt,
        lambda seed: (img_head, txt_head),
        bank_text_feats=bank,
        epsilons=eps,
        config=cfg,
        evaluate=evaluate,
        attack=ATTACK,
        dof=1,
        discretization=1e-3,
    )
    df = result.table
    assert len(df) == 3 and len(calls) == 3
    # the long table: the evaluation's rows of each budget, tagged with it, target_epsilon first
    long = result.recall
    assert long.columns.tolist() == ["target_epsilon", "pool", "k", "recall"] and len(long) == 6
    assert long["target_epsilon"].tolist()[:4] == [0.34, 0.34, 1e15, 1e15] and long["target_epsilon"].iloc[-1] is None
    assert long["recall"].tolist() == [1, -1, 2, -2, 3, -3]
    back = SweepResult.from_json(json.loads(json.dumps(result.to_json())))
    assert back.table["target_epsilon"].tolist()[-1] is None and back.recall["target_epsilon"].tolist()[-1] is None
    pd.testing.assert_frame_equal(back.recall.drop(columns="target_epsilon"), long.drop(columns="target_epsilon"))
    assert set(RECORD_FIELDS) <= set(df.columns)
    for col in ("kappa", "worst_case_risk", "relaxed_risk", "gradient_access_risk", "emb_norm", "emb_norm_seed_sd"):
        assert col in df.columns
    assert pd.isna(df["target_epsilon"].iloc[-1])
    assert np.allclose(df["kappa"], 1 / 96)
    # the same schedule at every budget; sigma falls as eps grows
    assert df["steps"].nunique() == 1 and df["sample_rate"].nunique() == 1
    sig = df["noise_multiplier"].to_numpy()
    assert sig[0] > sig[1] > 0 and sig[2] == 0
    # risks rise with eps; no DP: no bound
    wc, rx = df["worst_case_risk"].to_numpy(), df["relaxed_risk"].to_numpy()
    assert np.all(np.diff(wc) >= -1e-12) and np.all(np.diff(rx) >= -1e-12)
    assert np.all(rx <= wc + 1e-12) and wc[-1] == 1.0
    assert wc[0] < 3 / 96
    # the attack: near chance at eps = 0.34, near certain at eps = 1e15 and without DP
    assert df["gradient_access_risk"].iloc[0] <= 0.05 + 4 * math.sqrt(0.05 * 0.95 / 60)
    assert df["gradient_access_risk"].iloc[1] >= 0.9 and df["gradient_access_risk"].iloc[2] >= 0.9
    assert not any(c.startswith("realistic") for c in df.columns)  # named for what it is: gradient access
    assert (df["n_seeds"] == 1).all() and result.runs["seed"].tolist() == [0, 0, 0]


def test_privacy_risks_validation_and_no_dp():
    with pytest.raises(ValueError, match="record"):
        privacy_risks({"noise_multiplier": 1.0})
    with pytest.raises(ValueError, match="n_units"):
        privacy_risks({"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 5})
    r = privacy_risks({"noise_multiplier": 0.0, "sample_rate": 0.1, "steps": 5, "private": False, "n_units": 50})
    assert r["worst_case_risk"] == 1.0 and r["relaxed_risk"] == 1.0 and r["kappa"] == 0.02


def test_sweep_validation():
    x_img, x_txt, bank, img_head, txt_head = _toy(n=20)
    with pytest.raises(ValueError, match="epsilons"):
        budget_sweep(
            x_img,
            x_txt,
            lambda seed: (img_head, txt_head),
            bank_text_feats=bank,
            epsilons=[float("inf")],
            config=DPConfig(),
            evaluate=lambda a, b: Evaluation({}),
            attack=ATTACK,
            dof=1,
            discretization=1e-3,
        )
    cfg = DPConfig(target_epsilon=None, epochs=1, batch_size=10, seed=0)
    with pytest.raises(ValueError, match="clash"):
        budget_sweep(
            x_img,
            x_txt,
            lambda seed: (img_head, txt_head),
            bank_text_feats=bank,
            epsilons=[None],
            config=cfg,
            evaluate=lambda a, b: Evaluation({"gradient_access_risk": 1.0}),
            attack=AttackSettings(n_targets=5, n_candidates=5, cos_threshold=0.5, n_updates=1, seed=0),
            dof=1,
            discretization=1e-3,
        )


def test_attack_settings_are_the_profiles_budget_section():
    budget = BudgetConfig(attack_candidates=30, attack_targets=7, attack_cos_threshold=0.25, attack_updates=3)
    assert AttackSettings.from_config(budget, seed=4) == AttackSettings(
        n_targets=7, n_candidates=30, cos_threshold=0.25, n_updates=3, seed=4
    )
    cfg = as_profile({"seed": 2, "budget": {"attack_targets": 9}})
    default = BudgetConfig()
    assert AttackSettings.from_params(cfg) == AttackSettings(
        n_targets=9,
        n_candidates=default.attack_candidates,
        cos_threshold=default.attack_cos_threshold,
        n_updates=default.attack_updates,
        seed=2,
    )


def test_audit_tables_become_long_rows_with_the_full_database_once():
    rng = np.random.default_rng(0)
    img, rep = rng.standard_normal((40, 8)), rng.standard_normal((40, 8))
    table = relink_audit(img, rep, pool_sizes=(10, 40, None), ks=(1, 5))  # N = 40 = M is the full database too
    rows = _recall_rows(table, "random")
    assert rows.columns.tolist() == list(RECALL_COLUMNS[1:])
    assert rows[["k", "N", "full_database"]].values.tolist() == [
        [1, 10, False],
        [5, 10, False],
        [1, 40, True],
        [5, 40, True],
    ]
    full = table[table["full_database"] & (table["k"] == 1)]["recall"].iloc[-1]
    assert rows[(rows["k"] == 1) & rows["full_database"]]["recall"].item() == full
    assert (rows["pool"] == "random").all() and rows["lift"].tolist() == table.drop_duplicates(
        subset=["k", "pool_size", "full_database"], keep="last"
    )["lift"].tolist()


def test_door_position_known_answer():
    table = pd.DataFrame({"target_epsilon": [0.34, 8.0, 1e6, None], "recall": [0.2, 0.3, 0.6, 0.7]})
    np.testing.assert_allclose(door_position(table, "recall"), [0.0, 0.2, 0.8, 1.0])
    flat = table.assign(recall=0.5)
    assert door_position(flat, "recall").isna().all()
    with pytest.raises(ValueError, match="non-private"):
        door_position(table.iloc[:3], "recall")
    with pytest.raises(ValueError, match="column"):
        door_position(table, "nope")


def test_sweep_result_round_trips_with_its_threat_models_and_settings():
    table = pd.DataFrame(
        {
            "target_epsilon": [0.34, 1e15, None],
            "epsilon": [0.34, 1e15, np.inf],
            "steps": [10, 10, 10],
            "worst_case_risk": [0.0105, 0.99, 1.0],
        }
    )
    recall = pd.DataFrame(
        {
            "target_epsilon": [0.34, 0.34, None],
            "pool": ["random", "matched", "random"],
            "k": [1, 1, 1],
            "N": [100, 100, 100],
            "full_database": [False, False, False],
            "recall": [0.02, 0.1, 0.25],
            "lift": [2.0, 1.5, 25.0],
        }
    )
    settings = {"epsilons": (0.34, 1e15, None), "budget": {"relaxed_dof": 1}, "rung": "full-reports"}
    result = SweepResult(
        table=table, recall=recall, threat_models=({"threat model": "worst case", "risk": "ReRo"},), settings=settings
    )
    body = result.to_json()
    # the field names of privacy_budget.json (an empty rero / runs / start as budget_sweep's callers may leave them)
    assert list(body) == ["sweep", "recall", "rero", "runs", "threat_models", "settings", "start"]
    assert body["settings"]["epsilons"] == [0.34, 1e15, None]
    back = SweepResult.from_json(json.loads(json.dumps(body)))
    assert back.to_json() == body
    pd.testing.assert_frame_equal(back.recall.drop(columns="target_epsilon"), recall.drop(columns="target_epsilon"))
    assert back.recall["target_epsilon"].tolist() == [0.34, 0.34, None]
    assert back.table["target_epsilon"].tolist() == [0.34, 1e15, None]
    assert np.isnan(back.table["epsilon"].iloc[-1])  # inf is not JSON: the cache and results hold null
    assert back.threat_models == ({"threat model": "worst case", "risk": "ReRo"},)
    cached = SweepResult.from_json({"sweep": body["sweep"], "recall": body["recall"]})  # a cached sweep: tables only
    assert cached.threat_models == () and cached.settings == {}


def _toy_eval(x_img, x_txt, n_eval=40):
    """An evaluator on the first ``n_eval`` pairs: one long row and per-query Recall@1 at N = 10 (brute force)."""
    from relink_lib.audit.engine import per_query_recall, rank_counts

    def evaluate(ih, th):
        with torch.no_grad():
            a = ih(torch.as_tensor(x_img[:n_eval])).numpy()
            b = th(torch.as_tensor(x_txt[:n_eval])).numpy()
        pq = per_query_recall(rank_counts(a, b, chunk_size=64, device="cpu"), 10, 1)
        rows = pd.DataFrame({"pool": ["random"], "k": [1], "recall": [float(pq.mean())], "lift": [10 * pq.mean()]})
        return Evaluation(metrics={"probe_macro_auroc": 0.7}, recall=rows, per_query=pq)

    return evaluate


def test_seeds_are_averaged_the_cut_has_a_ci_and_fresh_heads_are_drawn_per_seed():
    from relink_lib.dp.heads import fresh_heads

    x_img, x_txt, bank, img_head, txt_head = _toy()
    cfg = DPConfig(target_epsilon=0.34, delta=1e-5, epochs=2, batch_size=16, max_grad_norm=1.0, lr=1e-2, seed=0)
    evaluate = _toy_eval(x_img, x_txt)
    before = evaluate(img_head, txt_head).per_query
    drawn = []

    def start(seed):
        drawn.append(seed)
        return fresh_heads(img_head, txt_head, seed=seed)

    result = budget_sweep(
        x_img,
        x_txt,
        start,
        bank_text_feats=bank,
        epsilons=[0.34, None],
        config=cfg,
        seeds=(3, 4),
        evaluate=evaluate,
        attack=ATTACK,
        dof=1,
        discretization=1e-3,
        cut=CutBaseline(per_query=before, patient_ids=np.arange(40) // 2, pool_size=10, n_boot=200, seed=0),
        relinkage_pool_sizes=(10, 100),
    )
    assert drawn == [3, 4, 3, 4]
    df, runs = result.table, result.runs
    assert len(df) == 2 and len(runs) == 4 and runs["seed"].tolist() == [3, 4, 3, 4]
    assert (df["n_seeds"] == 2).all()
    # the per-eps row is the mean of its seeds; the long recall rows too
    np.testing.assert_allclose(df["gradient_access_risk"], runs.groupby(runs.index // 2)["gradient_access_risk"].mean())
    np.testing.assert_allclose(result.recall["recall"], runs.groupby(runs.index // 2)["r1_after"].mean())
    np.testing.assert_allclose(df["r1_after"], result.recall["recall"])
    # the cut: 1 - after / before, inside its CI
    np.testing.assert_allclose(df["r1_cut"], 1 - df["r1_after"] / before.mean())
    assert (df["r1_cut_ci_low"] <= df["r1_cut"] + 1e-12).all() and (df["r1_cut"] <= df["r1_cut_ci_high"] + 1e-12).all()
    assert (df["cut_pool_size"] == 10).all() and df["r1_before"].iloc[0] == pytest.approx(before.mean())
    # the bounds at the training-set prior and the re-linkage priors 1/10 and 1/100, in the long table
    rero = result.rero
    assert rero.columns.tolist() == list(RERO_COLUMNS) and len(rero) == 6
    assert rero["prior"].tolist()[:3] == ["training set", "re-linkage", "re-linkage"]
    assert rero["N"].tolist()[:3] == [96, 10, 100]
    np.testing.assert_allclose(rero["kappa"].iloc[:3], [1 / 96, 0.1, 0.01])
    strict = rero[rero["target_epsilon"] == 0.34]
    assert strict["worst_case_risk"].iloc[0] == pytest.approx(df["worst_case_risk"].iloc[0])
    # a larger prior (1/10 > 1/96 > 1/100), a larger bound, but never below the prior
    assert (strict["worst_case_risk"] >= strict["kappa"] - 1e-12).all()
    assert strict["worst_case_risk"].iloc[1] > strict["worst_case_risk"].iloc[0] > strict["worst_case_risk"].iloc[2]
    assert (rero[rero["target_epsilon"].isna()]["worst_case_risk"] == 1.0).all()
    back = SweepResult.from_json(json.loads(json.dumps(result.to_json())))
    pd.testing.assert_frame_equal(back.rero.drop(columns="target_epsilon"), rero.drop(columns="target_epsilon"))
    assert back.runs["seed"].tolist() == [3, 4, 3, 4] and back.rero["target_epsilon"].tolist()[-1] is None
    with pytest.raises(ValueError, match="per_query"):
        budget_sweep(
            x_img,
            x_txt,
            start,
            bank_text_feats=bank,
            epsilons=[None],
            config=cfg,
            evaluate=lambda a, b: Evaluation({}),
            attack=ATTACK,
            dof=1,
            discretization=1e-3,
            cut=CutBaseline(per_query=before, patient_ids=None, pool_size=10, n_boot=10, seed=0),
        )


def test_cut_interval_known_answers_and_seed_spread():
    rng = np.random.default_rng(0)
    before = rng.uniform(0.2, 0.6, size=200)
    ids = np.arange(200) // 4
    # identical seeds and after = before / 2: the cut is 0.5 in every replicate
    cut, lo, hi = cut_interval(before, np.stack([before / 2, before / 2], axis=1), ids, n_boot=200)
    assert cut == pytest.approx(0.5) and lo == pytest.approx(0.5) and hi == pytest.approx(0.5)
    # two seeds that disagree (cut 0.2 and 0.8): the interval spans most of the seed spread
    after = np.stack([0.8 * before, 0.2 * before], axis=1)
    cut, lo, hi = cut_interval(before, after, ids, n_boot=400, seed=1)
    assert cut == pytest.approx(0.5) and lo <= 0.25 and hi >= 0.75
    # one seed: the patient bootstrap alone; noise around no cut gives a CI that includes zero
    noisy = np.clip(before + rng.normal(0, 0.2, size=200), 0, 1)
    cut, lo, hi = cut_interval(before, noisy, ids, n_boot=400)
    assert lo < 0 < hi and lo < cut < hi
    assert all(np.isnan(v) for v in cut_interval(np.zeros(5), np.zeros(5), None, n_boot=10))
    with pytest.raises(ValueError, match="same n"):
        cut_interval(before, after[:10], ids)


def test_prior_risks_at_the_relinkage_priors():
    rec = {"noise_multiplier": 1.0, "sample_rate": 0.05, "steps": 40}
    rows = prior_risks(rec, [("training set", 1000), ("re-linkage", 10), ("re-linkage", 100)])
    assert [r["N"] for r in rows] == [1000, 10, 100] and [r["kappa"] for r in rows] == [1e-3, 0.1, 0.01]
    risks = [r["worst_case_risk"] for r in rows]
    assert risks[1] > risks[2] > risks[0] and all(r["worst_case_risk"] >= r["kappa"] for r in rows)
    assert all(r["relaxed_risk"] <= r["worst_case_risk"] + 1e-12 for r in rows)
    assert rows[0]["worst_case_risk"] == privacy_risks(rec, n_units=1000)["worst_case_risk"]
    none = prior_risks({**rec, "noise_multiplier": 0.0, "private": False}, [("re-linkage", 10)])
    assert none[0]["worst_case_risk"] == 1.0


def test_profile_knobs_of_the_start_the_seeds_and_the_priors():
    from relink_lib.profiles import get_profile
    from relink_lib.risk.stage import budget_seeds, cut_pool_size, relinkage_pool_sizes

    assert BudgetConfig().n_seeds == 3
    assert get_profile("smoke").budget.n_seeds == 1 and get_profile("ci").budget.n_seeds == 2
    assert budget_seeds({"seed": 5, "budget": {"n_seeds": 3}}) == (5, 6, 7)
    with pytest.raises(ValueError, match=r"\['budget'\]\['n_seeds'\]=0"):
        as_profile({"budget": {"n_seeds": 0}})
    # chapter 9 starts from chapter 6's released setting unless told to use the profile's own schedule
    assert as_profile({}).dp.budget_sweep.start == "released"
    assert as_profile({"dp": {"budget_sweep": {"start": "profile"}}}).dp.budget_sweep.start == "profile"
    assert "start" not in dataclasses_fields_of_training()
    with pytest.raises(ValueError, match=r"\['budget_sweep'\]\['start'\]='pretrained'"):
        as_profile({"dp": {"budget_sweep": {"start": "pretrained"}}})
    # the re-linkage priors: the finite audit pool sizes; the cut's N: the largest below the test split
    cfg = {"audit": {"pool_sizes": [10, 100, 1000, None]}}
    assert relinkage_pool_sizes(cfg) == (10, 100, 1000)
    assert cut_pool_size(cfg, 1200) == 1000 and cut_pool_size(cfg, 1000) == 100 and cut_pool_size(cfg, 5) is None


def dataclasses_fields_of_training():
    """The DPConfig fields of the profile's own training schedule (``start`` is not one: it is the sweep's)."""
    import dataclasses

    return {f.name for f in dataclasses.fields(as_profile({}).dp.budget_sweep_training)}
