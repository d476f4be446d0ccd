"""The budget sweep on a toy linear-head set-up: one row per eps, risks ordered, the record carried."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from relink_lib.dp import DPConfig
from relink_lib.risk.sweep import RECORD_FIELDS, AttackSettings, budget_sweep, privacy_risks


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
        return {"emb_norm": float(np.linalg.norm(emb, axis=1).mean())}

    eps = [0.34, 1e15, None]
    df = budget_sweep(x_img, x_txt, img_head, txt_head, bank_text_feats=bank, epsilons=eps, config=cfg,
                      evaluate=evaluate, attack=AttackSettings(n_targets=60, n_candidates=20, seed=0))
    assert len(df) == 3 and len(calls) == 3
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
        budget_sweep(x_img, x_txt, img_head, txt_head, bank_text_feats=bank, epsilons=[float("inf")],
                     config=DPConfig(), evaluate=lambda a, b: {})


def test_door_position_known_answer():
    from relink_lib.risk.sweep import door_position

    table = pd.DataFrame({"target_epsilon": [0.34, 8.0, 1e6, None], "recall": [0.2, 0.3, 0.6, 0.7]})
    np.testing.assert_allclose(door_position(table, "recall"), [0.0, 0.2, 0.8, 1.0])
    flat = table.assign(recall=0.5)
    assert door_position(flat, "recall").isna().all()
    with pytest.raises(ValueError, match="non-private"):
        door_position(table.iloc[:3], "recall")
    with pytest.raises(ValueError, match="column"):
        door_position(table, "nope")
