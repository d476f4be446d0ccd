"""train_heads end to end on random features: record, noise scale, inputs untouched, engines, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from relink_lib.dp import DPConfig, poisson_batches, privacy_units, sampling_plan, train_heads
from relink_lib.dp.accounting import independent_epsilons

pytestmark = [
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.filterwarnings("ignore:Full backward hook is firing"),
]

REQUIRED = (
    "target_epsilon",
    "epsilon",
    "delta",
    "noise_multiplier",
    "sample_rate",
    "steps",
    "max_grad_norm",
    "accountant",
)


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


@pytest.mark.parametrize("sigma", [1.7, 0.6])  # also below 1: noise must not depend on sigma > 1
def test_noise_has_the_stated_scale(sigma):
    # zero features -> every per-sample gradient is exactly 0, so the update is pure noise:
    # with SGD, W_T - W_0 = -lr * sigma * C / B * sum_t N_t  ->  std = lr * sigma * C * sqrt(T) / B
    n, d_img, d_txt, d = 200, 40, 30, 24
    ih, th = nn.Linear(d_img, d, bias=False), nn.Linear(d_txt, d, bias=False)
    C, lr = 0.8, 0.05
    cfg = DPConfig(noise_multiplier=sigma, max_grad_norm=C, lr=lr, optimizer="sgd", epochs=1, batch_size=50, seed=3)
    res = train_heads(
        torch.zeros(n, d_img), torch.zeros(n, d_txt), ih, th, bank_text_feats=torch.randn(8, d_txt), config=cfg
    )
    steps, B = res.record["steps"], res.record["expected_batch_size"]
    assert (steps, B) == (4, 50)
    delta_w = torch.cat(
        [(res.image_head.weight - ih.weight).flatten(), (res.text_head.weight - th.weight).flatten()]
    ).detach()
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
    by_patient = train_heads(
        xi, xt, ih, th, bank_text_feats=bt, config=base.replace(sampling="patient"), patient_ids=pid
    ).record
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


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(xi_rows=10), "same number of rows"),
        (dict(xt_cols=3), "text_feats: expected 10 feature columns"),
        (dict(nan=True), "NaN"),
        (dict(config=DPConfig(sampling="patient")), "patient_ids"),
    ],
)
def test_input_validation(kwargs, match):
    xi, xt, bi, bt, ih, th = _data()
    if "xi_rows" in kwargs:
        xi = xi[: kwargs["xi_rows"]]
    if "xt_cols" in kwargs:
        xt = xt[:, : kwargs["xt_cols"]]
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
        train_heads(
            torch.randn(4, 3),
            torch.randn(4, 3),
            nn.Linear(3, 2),
            nn.Linear(3, 2, bias=False),
            bank_text_feats=torch.randn(2, 3),
            config=DPConfig(engine="fast"),
        )


# --- The mechanism itself: each test below fails under a one-line mutation of the training loop
# (docs/dp.md, "What the DP tests defend"): no clipping, the wrong sample rate, per-pair clipping in
# patient mode, division by the actual batch size.


def _aligned(n_rows: int, d_img: int = 8, d_txt: int = 6, d: int = 4, weight_scale: float = 1e-2, seed: int = 0):
    """Identical rows (so every unit's gradient points the same way) and tiny head weights (so the
    unclipped per-pair gradient norm is in the hundreds, far above C = 1). float64 heads."""
    g = torch.Generator().manual_seed(seed)
    x_img = torch.randn(1, d_img, generator=g, dtype=torch.float64).repeat(n_rows, 1)
    x_txt = torch.randn(1, d_txt, generator=g, dtype=torch.float64).repeat(n_rows, 1)
    bank = torch.randn(5, d_txt, generator=g, dtype=torch.float64)
    ih = nn.Linear(d_img, d, bias=False).double()
    th = nn.Linear(d_txt, d, bias=False).double()
    with torch.no_grad():
        ih.weight.copy_(weight_scale * torch.randn(d, d_img, generator=g, dtype=torch.float64))
        th.weight.copy_(weight_scale * torch.randn(d, d_txt, generator=g, dtype=torch.float64))
    return x_img, x_txt, bank, ih, th


def _update_norm(res, ih, th) -> float:
    """Joint Frobenius norm of the weight change of both heads."""
    di = (res.image_head.weight - ih.weight).detach()
    dt = (res.text_head.weight - th.weight).detach()
    return float(torch.sqrt(di.pow(2).sum() + dt.pow(2).sum()))


def _per_pair_grad_norm(x_img, x_txt, bank, ih, th) -> float:
    from relink_lib.dp.train import clipped_grad_sum

    _, _, norms, _, _ = clipped_grad_sum(
        ih.weight.detach(),
        th.weight.detach(),
        x_img[:1],
        x_txt[:1],
        bank,
        max_grad_norm=None,
        bank_grad=DPConfig().bank_grad,
    )
    return float(norms[0])


def test_one_step_update_is_bounded_by_the_clipping():
    # zero noise, SGD, one step over every pair (q = 1): update = lr * mean of clipped gradients, so
    # |update| <= lr * C. The gradients are aligned and ~100x C, so the bound is tight (= lr * C up to
    # the 1e-6 in the clip coefficient) and an unclipped sum would be ~100x over it.
    n, C, lr = 12, 1.0, 0.1
    x_img, x_txt, bank, ih, th = _aligned(n)
    assert _per_pair_grad_norm(x_img, x_txt, bank, ih, th) > 100 * C  # the premise of the test
    cfg = DPConfig(noise_multiplier=0.0, max_grad_norm=C, lr=lr, optimizer="sgd", epochs=1, batch_size=n)
    res = train_heads(x_img, x_txt, ih, th, bank_text_feats=bank, config=cfg)
    assert (res.record["steps"], res.record["sample_rate"]) == (1, 1.0)
    assert _update_norm(res, ih, th) <= lr * C * (1 + 1e-9)
    assert _update_norm(res, ih, th) == pytest.approx(lr * C, rel=1e-4)


def test_per_patient_clipping_bounds_a_whole_patient():
    # 3 patients x 4 identical pairs, q = 1, zero noise, SGD: each PATIENT's summed gradient is clipped
    # to C, the sum is divided by the expected batch of 3 patients, so |update| = lr * C. Clipping each
    # pair instead would give 4x that.
    pid = np.repeat(np.arange(3), 4)
    C, lr = 1.0, 0.1
    x_img, x_txt, bank, ih, th = _aligned(len(pid))
    cfg = DPConfig(
        noise_multiplier=0.0, max_grad_norm=C, lr=lr, optimizer="sgd", epochs=1, batch_size=len(pid), sampling="patient"
    )
    res = train_heads(x_img, x_txt, ih, th, bank_text_feats=bank, config=cfg, patient_ids=pid)
    assert (res.record["n_units"], res.record["expected_batch_size"], res.record["steps"]) == (3, 3, 1)
    assert _update_norm(res, ih, th) <= lr * C * (1 + 1e-9)
    assert _update_norm(res, ih, th) == pytest.approx(lr * C, rel=1e-4)


def _record_batches(monkeypatch) -> list[int]:
    """Wrap the loop's Poisson sampler and record the number of training rows of every step."""
    import relink_lib.dp.train as train_mod

    sizes: list[int] = []
    real = train_mod.poisson_batches

    def spy(units, sample_rate, steps, generator):
        for rows, groups, n_groups in real(units, sample_rate, steps, generator):
            sizes.append(int(rows.numel()))
            yield rows, groups, n_groups

    monkeypatch.setattr(train_mod, "poisson_batches", spy)
    return sizes


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
@pytest.mark.parametrize("n,batch,seeds", [(100, 10, range(4)), (4, 1, range(8))])
def test_noisy_mean_is_divided_by_the_expected_batch(monkeypatch, n, batch, seeds):
    # one step at q = batch / n over n identical pairs, zero noise, SGD: every pair is clipped to exactly C
    # in the same direction, so |update| = lr * C * |B| / E[B] with E[B] = q * n (Opacus' convention),
    # NOT lr * C (the mean over the actual batch). The small case has batches of 0, 1 and 2 pairs.
    sizes = _record_batches(monkeypatch)
    C, lr = 1.0, 0.1
    ratios = []
    for seed in seeds:
        x_img, x_txt, bank, ih, th = _aligned(n, seed=seed)
        cfg = DPConfig(
            noise_multiplier=0.0, max_grad_norm=C, lr=lr, optimizer="sgd", epochs=batch / n, batch_size=batch, seed=seed
        )
        res = train_heads(x_img, x_txt, ih, th, bank_text_feats=bank, config=cfg)
        assert (res.record["steps"], res.record["expected_batch_size"]) == (1, batch)
        ratios.append((_update_norm(res, ih, th) / (lr * C), sizes[-1] / batch))
    for got, want in ratios:
        assert got == pytest.approx(want, rel=1e-4, abs=1e-12)
    assert len({s for _, s in ratios}) > 1  # the batches differed in size: the division is visible
    if n == 4:
        assert {0, 1} <= set(sizes)  # an empty batch and a single-pair batch were both taken


@pytest.mark.parametrize("sampling", ["pair", "patient"])
def test_empirical_batch_sizes_match_the_recorded_sample_rate(monkeypatch, sampling):
    sizes = _record_batches(monkeypatch)
    n = 200
    pid = np.repeat(np.arange(100), 2)
    xi, xt, bi, bt, ih, th = _data(n=n)
    cfg = DPConfig(noise_multiplier=1.0, epochs=20, batch_size=20, sampling=sampling, lr=1e-3)
    rec = train_heads(xi, xt, ih, th, bank_text_feats=bt, config=cfg, patient_ids=pid).record
    assert len(sizes) == rec["steps"] == 200
    # E|B| = q * n rows (pairs or patients x 2 rows); over 200 steps the mean is within ~3% (sd of the mean)
    expected = rec["sample_rate"] * n
    sd_of_mean = math.sqrt(
        n * rec["sample_rate"] * (1 - rec["sample_rate"]) * (2 if sampling == "patient" else 1)
    ) / math.sqrt(200)
    assert abs(np.mean(sizes) - expected) < 4 * sd_of_mean + 1e-9
    assert 4 * sd_of_mean < 0.25 * expected  # the check separates q from 2q (and from 0.75q)


@pytest.mark.parametrize("bank_image,bank_grad,temperature", [(False, False, 0.07), (True, True, 0.2)])
def test_opacus_and_fast_engines_take_the_same_clipped_step(bank_image, bank_grad, temperature):
    # zero noise, q = 1 (every pair in the one batch), SGD: both engines compute the same clipped mean
    # gradient of the same objective (image bank, bank gradients and temperature passed through), so
    # the heads after one step agree.
    n, C, lr = 12, 1.0, 0.1
    x_img, x_txt, bank, ih, th = _aligned(n)
    g = torch.Generator().manual_seed(5)
    x_img = x_img + 0.1 * torch.randn(x_img.shape, generator=g, dtype=torch.float64)
    bank_img = torch.randn(6, x_img.shape[1], generator=g, dtype=torch.float64) if bank_image else None
    cfg = DPConfig(
        noise_multiplier=0.0,
        max_grad_norm=C,
        lr=lr,
        optimizer="sgd",
        epochs=1,
        batch_size=n,
        bank_grad=bank_grad,
        temperature=temperature,
    )
    fast = train_heads(
        x_img, x_txt, ih, th, bank_text_feats=bank, bank_image_feats=bank_img, config=cfg.replace(engine="fast")
    )
    opac = train_heads(
        x_img, x_txt, ih, th, bank_text_feats=bank, bank_image_feats=bank_img, config=cfg.replace(engine="opacus")
    )
    assert opac.record["engine"] == "opacus"
    torch.testing.assert_close(opac.image_head.weight, fast.image_head.weight, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(opac.text_head.weight, fast.text_head.weight, rtol=1e-6, atol=1e-9)
    assert _update_norm(fast, ih, th) > 0.5 * lr * C  # a real step was taken


def test_opacus_engine_samples_poisson_batches_at_the_recorded_rate(monkeypatch):
    # the accounting assumes Poisson sampling: batch sizes vary around q * n (a fixed-size loader would not)
    import relink_lib.dp.train as train_mod

    sizes: list[int] = []

    class Spy(train_mod.ExpandedBankLoss):
        def forward(self, image_feats, text_feats):
            sizes.append(int(image_feats.shape[0]))
            return super().forward(image_feats, text_feats)

    monkeypatch.setattr(train_mod, "ExpandedBankLoss", Spy)
    xi, xt, bi, bt, ih, th = _data()
    rec = train_heads(
        xi,
        xt,
        ih,
        th,
        bank_text_feats=bt,
        config=DPConfig(noise_multiplier=1.0, epochs=10, batch_size=20, engine="opacus"),
    ).record
    assert len(sizes) == rec["steps"] == 60
    assert len(set(sizes)) > 3  # Poisson: the sizes vary
    sd_of_mean = math.sqrt(120 * rec["sample_rate"] * (1 - rec["sample_rate"]) / 60)
    assert abs(np.mean(sizes) - rec["sample_rate"] * 120) < 4 * sd_of_mean


def test_opacus_engine_learns():
    xi, xt, bi, bt, ih, th = _data()
    cfg = DPConfig(target_epsilon=8.0, epochs=6, batch_size=20, lr=3e-2, engine="opacus", seed=2)
    h = train_heads(xi, xt, ih, th, bank_text_feats=bt, bank_image_feats=bi, config=cfg, eval_feats=(bi, bt)).history
    assert h["public_eval_loss"].iloc[-1] < h["public_eval_loss"].iloc[0] - 0.05


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("lr", math.inf, "DPConfig.lr: expected a finite value"),
        ("lr", math.nan, "DPConfig.lr"),
        ("epochs", math.inf, "DPConfig.epochs: expected a finite value"),
        ("batch_size", math.inf, "DPConfig.batch_size"),
        ("delta", "1e-5", "DPConfig.delta"),
        ("temperature", math.inf, "DPConfig.temperature"),
    ],
)
def test_config_refuses_non_finite_and_non_numeric_values(field, value, match):
    with pytest.raises(ValueError, match=match):
        DPConfig(**{field: value})


@pytest.mark.parametrize("delta,sampling", [(0.5, "pair"), (1 / 120, "pair"), (0.025, "patient")])
def test_delta_at_or_above_one_over_n_is_refused_and_says_why(delta, sampling):
    xi, xt, bi, bt, ih, th = _data()  # 120 pairs; 40 patients of 3
    pid = np.repeat(np.arange(40), 3)
    cfg = DPConfig(target_epsilon=1.0, delta=delta, epochs=1, batch_size=20, sampling=sampling)
    n = 40 if sampling == "patient" else 120
    with pytest.raises(ValueError, match=rf"DPConfig.delta=.*delta < 1/n_private = 1/{n}.*protects nobody"):
        train_heads(xi, xt, ih, th, bank_text_feats=bt, config=cfg, patient_ids=pid)


def test_delta_just_below_one_over_n_calibrates():
    xi, xt, bi, bt, ih, th = _data()
    cfg = DPConfig(target_epsilon=1.0, delta=0.9 / 120, epochs=1, batch_size=20)
    rec = train_heads(xi, xt, ih, th, bank_text_feats=bt, config=cfg).record
    assert 0.99 <= rec["epsilon"] <= 1.0


def test_calibration_at_a_large_delta_names_delta_or_succeeds():
    # eps(sigma) reaches 0 at a large delta; the search must not die in log() ("math domain error")
    from relink_lib.dp import calibrate_noise, rdp_epsilon

    sigma = calibrate_noise(0.34, 0.1, 0.1, 30)
    assert rdp_epsilon(sigma, 0.1, 30, 0.1)[0] <= 0.34


@pytest.mark.filterwarnings("ignore:Mean of empty slice")
def test_diverging_heads_are_an_error_not_a_result():
    xi, xt, bi, bt, ih, th = _data()
    cfg = DPConfig(target_epsilon=None, epochs=2, batch_size=20, lr=1e37, optimizer="sgd")
    with pytest.raises(FloatingPointError, match="NaN or inf weights.*lower DPConfig.lr"):
        train_heads(xi, xt, ih, th, bank_text_feats=bt, config=cfg)


def test_nonprivate_step_is_the_mean_over_the_actual_batch(monkeypatch):
    # the non-private control: no clipping, no noise, the plain mean gradient of the batch it drew
    sizes = _record_batches(monkeypatch)
    n, lr = 100, 1e-6
    for seed in range(3):
        x_img, x_txt, bank, ih, th = _aligned(n, seed=seed)
        g = _per_pair_grad_norm(x_img, x_txt, bank, ih, th)
        cfg = DPConfig(target_epsilon=None, lr=lr, optimizer="sgd", epochs=0.1, batch_size=10, seed=seed)
        res = train_heads(x_img, x_txt, ih, th, bank_text_feats=bank, config=cfg)
        assert sizes[-1] > 0 and _update_norm(res, ih, th) == pytest.approx(lr * g, rel=1e-4)
    assert len(set(sizes)) > 1


def test_private_runs_are_reproducible_from_the_seed():
    xi, xt, bi, bt, ih, th = _data()
    cfg = DPConfig(noise_multiplier=1.3, epochs=1, batch_size=20, seed=4)
    a = train_heads(xi, xt, ih, th, bank_text_feats=bt, config=cfg)
    b = train_heads(xi, xt, ih, th, bank_text_feats=bt, config=cfg)
    c = train_heads(xi, xt, ih, th, bank_text_feats=bt, config=cfg.replace(seed=5))
    torch.testing.assert_close(a.image_head.weight, b.image_head.weight, rtol=0, atol=0)
    assert not torch.allclose(a.image_head.weight, c.image_head.weight)


def test_noise_is_drawn_from_the_seed_plus_the_named_offset():
    # q = 1 (every pair, one step), SGD at lr = 1: the noisy run minus the noiseless run is exactly the
    # noise over the expected batch, -sigma * C * z / E[B], with z drawn image head first, then text head,
    # from a generator seeded config.seed + NOISE_SEED_OFFSET (a stream apart from the sampler's).
    from relink_lib.dp.train import NOISE_SEED_OFFSET, expected_batch_size

    n, C, sigma, seed = 6, 1.0, 0.5, 3
    x_img, x_txt, bank, ih, th = _aligned(n)
    base = DPConfig(noise_multiplier=0.0, max_grad_norm=C, lr=1.0, optimizer="sgd", epochs=1, batch_size=n, seed=seed)
    quiet = train_heads(x_img, x_txt, ih, th, bank_text_feats=bank, config=base)
    noisy = train_heads(x_img, x_txt, ih, th, bank_text_feats=bank, config=base.replace(noise_multiplier=sigma))
    e_b = expected_batch_size(n, 1.0)
    assert e_b == noisy.record["expected_batch_size"] == n
    g = torch.Generator().manual_seed(seed + NOISE_SEED_OFFSET)
    z_img = torch.randn(ih.weight.shape, generator=g, dtype=torch.float64)
    z_txt = torch.randn(th.weight.shape, generator=g, dtype=torch.float64)
    for got, want in (
        (noisy.image_head.weight - quiet.image_head.weight, -sigma * C * z_img / e_b),
        (noisy.text_head.weight - quiet.text_head.weight, -sigma * C * z_txt / e_b),
    ):
        torch.testing.assert_close(got.detach(), want, rtol=1e-9, atol=1e-12)
    # not the sampler's stream (a generator seeded config.seed)
    z_sampler = torch.randn(ih.weight.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    assert not torch.allclose(noisy.image_head.weight - quiet.image_head.weight, -sigma * C * z_sampler / e_b)
    assert expected_batch_size(10, 0.05) == 1 and expected_batch_size(1000, 0.1) == 100
