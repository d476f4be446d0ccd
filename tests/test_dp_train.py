"""train_heads end to end on random features: record, noise scale, inputs untouched, engines, errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from relink_lib.dp import DPConfig, poisson_batches, privacy_units, sampling_plan, train_heads
from relink_lib.dp.accounting import independent_epsilons

pytestmark = pytest.mark.filterwarnings("ignore:Full backward hook is firing")

REQUIRED = ("target_epsilon", "epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "max_grad_norm", "accountant")


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny matrices: one thread avoids oversubscription on shared CPUs
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _data(n=120, d_img=12, d_txt=10, d=6, m=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n + m, 4, generator=g)
    x_img = z @ torch.randn(4, d_img, generator=g) + 0.3 * torch.randn(n + m, d_img, generator=g)
    x_txt = z @ torch.randn(4, d_txt, generator=g) + 0.3 * torch.randn(n + m, d_txt, generator=g)
    torch.manual_seed(seed)
    ih, th = nn.Linear(d_img, d, bias=False), nn.Linear(d_txt, d, bias=False)
    return x_img[:n], x_txt[:n], x_img[n:], x_txt[n:], ih, th


def test_private_run_record_and_independent_accountants():
    xi, xt, bi, bt, ih, th = _data()
    cfg = DPConfig(target_epsilon=0.34, delta=6e-6, epochs=2, batch_size=20, lr=1e-2, seed=1)
    w0 = (ih.weight.detach().clone(), th.weight.detach().clone())
    res = train_heads(xi, xt, ih, th, bank_text_feats=bt, config=cfg, eval_feats=(bi, bt))
    rec = res.record
    for key in REQUIRED:
        assert key in rec, key
    q, steps, _ = sampling_plan(120, cfg)
    assert (rec["sample_rate"], rec["steps"]) == (q, steps) == (1 / 6, 12)
    assert 0.99 * 0.34 <= rec["epsilon"] <= 0.34
    again = independent_epsilons(rec)
    assert again["dp_accounting_rdp"] == pytest.approx(rec["epsilon"], rel=1e-6)
    assert again["dp_accounting_pld"] <= rec["epsilon"]
    # inputs untouched, outputs moved
    torch.testing.assert_close(ih.weight, w0[0])
    torch.testing.assert_close(th.weight, w0[1])
    assert not torch.allclose(res.image_head.weight, w0[0])
    # history: epsilon spent grows to the recorded one; public eval loss is logged
    h = res.history
    assert list(h["step"]) == [0, 6, 12]
    assert h["epsilon_spent"].is_monotonic_increasing
    assert h["epsilon_spent"].iloc[-1] == pytest.approx(rec["epsilon"])
    assert h["public_eval_loss"].notna().all()
    assert h["train_loss_nonprivate"].isna().all()  # private-batch statistics are not released


def test_noise_has_the_stated_scale():
    # zero features -> every per-sample gradient is exactly 0, so the update is pure noise:
    # with SGD, W_T - W_0 = -lr * sigma * C / B * sum_t N_t  ->  std = lr * sigma * C * sqrt(T) / B
    n, d_img, d_txt, d = 200, 40, 30, 24
    ih, th = nn.Linear(d_img, d, bias=False), nn.Linear(d_txt, d, bias=False)
    sigma, C, lr = 1.7, 0.8, 0.05
    cfg = DPConfig(noise_multiplier=sigma, max_grad_norm=C, lr=lr, optimizer="sgd", epochs=1, batch_size=50, seed=3)
    res = train_heads(torch.zeros(n, d_img), torch.zeros(n, d_txt), ih, th, bank_text_feats=torch.randn(8, d_txt),
                      config=cfg)
    steps, B = res.record["steps"], res.record["expected_batch_size"]
    assert (steps, B) == (4, 50)
    delta_w = torch.cat([(res.image_head.weight - ih.weight).flatten(), (res.text_head.weight - th.weight).flatten()]).detach()
    expected_std = lr * sigma * C * math.sqrt(steps) / B
    assert float(delta_w.std()) == pytest.approx(expected_std, rel=0.04)  # 1680 draws: ~2% sampling error
    assert abs(float(delta_w.mean())) < 4 * expected_std / math.sqrt(delta_w.numel())


def test_nonprivate_run_has_no_noise_and_learns():
    xi, xt, bi, bt, ih, th = _data()
    cfg = DPConfig(target_epsilon=None, epochs=3, batch_size=20, lr=3e-2)
    res = train_heads(xi, xt, ih, th, bank_text_feats=bt, config=cfg, eval_feats=(bi, bt))
    assert res.record["epsilon"] == math.inf and res.record["noise_multiplier"] == 0.0
    assert res.record["max_grad_norm"] is None
    h = res.history
    assert h["public_eval_loss"].iloc[-1] < h["public_eval_loss"].iloc[0]
    # deterministic given the seed
    res2 = train_heads(xi, xt, ih, th, bank_text_feats=bt, config=cfg)
    torch.testing.assert_close(res.image_head.weight, res2.image_head.weight)


def test_opacus_engine_agrees_on_accounting_and_learns_like_fast():
    xi, xt, bi, bt, ih, th = _data()
    cfg = DPConfig(target_epsilon=1.0, epochs=2, batch_size=20, lr=1e-2, engine="opacus")
    res = train_heads(xi, xt, ih, th, bank_text_feats=bt, bank_image_feats=bi, config=cfg, eval_feats=(bi, bt))
    rec = res.record
    assert rec["engine"] == "opacus"
    # Opacus' own PrivacyEngine accountant (its default orders) reports about the same epsilon
    assert rec["epsilon_independent"]["opacus_privacy_engine"] == pytest.approx(rec["epsilon"], rel=0.02)
    assert not hasattr(res.image_head.weight, "grad_sample")
    fast = train_heads(xi, xt, ih, th, bank_text_feats=bt, bank_image_feats=bi, config=cfg.replace(engine="fast"))
    assert fast.record["noise_multiplier"] == pytest.approx(rec["noise_multiplier"])


def test_patient_sampling_and_group_privacy_records():
    xi, xt, bi, bt, ih, th = _data(n=90)
    pid = np.repeat(np.arange(30), 3)
    base = DPConfig(target_epsilon=1.0, epochs=1, batch_size=15)
    by_pair = train_heads(xi, xt, ih, th, bank_text_feats=bt, config=base, patient_ids=pid).record
    assert by_pair["group_privacy"]["max_pairs_per_patient"] == 3
    assert by_pair["group_privacy"]["patient_epsilon"] == pytest.approx(3 * by_pair["epsilon"])
    by_patient = train_heads(xi, xt, ih, th, bank_text_feats=bt, config=base.replace(sampling="patient"),
                             patient_ids=pid).record
    assert by_patient["n_units"] == 30 and "patient" in by_patient["neighbouring"]
    assert by_patient["epsilon"] <= 1.0


def test_poisson_batches_keep_patients_whole_and_have_the_expected_size():
    pid = np.repeat(np.arange(50), 4)
    units = privacy_units(200, "patient", pid)
    sizes = []
    for rows, groups, n_groups in poisson_batches(units, 0.2, 300, torch.Generator().manual_seed(0)):
        sizes.append(len(rows))
        if len(rows):
            assert n_groups == len(set(pid[rows.numpy()].tolist()))
            assert all((pid[rows.numpy()] == p).sum() == 4 for p in set(pid[rows.numpy()].tolist()))
            assert int(groups.max()) + 1 == n_groups
    assert np.mean(sizes) == pytest.approx(0.2 * 200, rel=0.05)


@pytest.mark.parametrize("kwargs,match", [
    (dict(xi_rows=10), "same number of rows"),
    (dict(xt_cols=3), "text_feats: expected 10 feature columns"),
    (dict(nan=True), "NaN"),
    (dict(config=DPConfig(sampling="patient")), "patient_ids"),
])
def test_input_validation(kwargs, match):
    xi, xt, bi, bt, ih, th = _data()
    if "xi_rows" in kwargs:
        xi = xi[:kwargs["xi_rows"]]
    if "xt_cols" in kwargs:
        xt = xt[:, :kwargs["xt_cols"]]
    if kwargs.get("nan"):
        xi = xi.clone()
        xi[0, 0] = float("nan")
    with pytest.raises(ValueError, match=match):
        train_heads(xi, xt, ih, th, bank_text_feats=bt, config=kwargs.get("config", DPConfig(epochs=1)))


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="DPConfig.target_epsilon"):
        DPConfig(target_epsilon=-1)
    with pytest.raises(ValueError, match="DPConfig.sampling"):
        DPConfig(sampling="study")
    with pytest.raises(ValueError, match="engine='fast'"):
        train_heads(torch.randn(4, 3), torch.randn(4, 3), nn.Linear(3, 2), nn.Linear(3, 2, bias=False),
                    bank_text_feats=torch.randn(2, 3), config=DPConfig(engine="fast"))
