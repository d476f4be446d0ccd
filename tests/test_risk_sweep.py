"""The budget sweep on a toy linear-head set-up: one row per eps, risks ordered, the record carried,
the long table tagged with its budget; the attack settings come from the profile's budget section."""

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
    AttackSettings,
    Evaluation,
    SweepResult,
    budget_sweep,
    door_position,
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
        img_head,
        txt_head,
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
    for col in ("kappa", "worst_case_risk", "relaxed_risk", "realistic_risk", "emb_norm"):
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
    assert df["realistic_risk"].iloc[0] <= 0.05 + 4 * math.sqrt(0.05 * 0.95 / 60)
    assert df["realistic_risk"].iloc[1] >= 0.9 and df["realistic_risk"].iloc[2] >= 0.9


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
            img_head,
            txt_head,
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
            img_head,
            txt_head,
            bank_text_feats=bank,
            epsilons=[None],
            config=cfg,
            evaluate=lambda a, b: Evaluation({"kappa": 1.0}),
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
    assert list(body) == ["sweep", "recall", "threat_models", "settings"]  # the field names of privacy_budget.json
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
