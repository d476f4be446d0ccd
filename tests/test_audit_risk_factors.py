"""Per-study risk: the report-property extractor, the fractional logit (planted signs, the mediator, cluster-robust
intervals), its check against the generator, the validation of the extractor and the refit under other heads."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from relink_lib.audit.risk_factors import (
    FEATURES,
    RISK_COLUMNS,
    fit_fractional_logit,
    fit_risk_factors,
    report_properties,
    study_properties,
    validate_properties,
)
from relink_lib.labels import CHEXPERT_LABELS


def test_report_properties_on_known_sentences():
    texts = [
        "Endotracheal tube terminates 4.5 cm above the carina.",
        "Small left pleural effusion, unchanged since the prior study.",
        "The lungs are clear bilaterally. No acute cardiopulmonary process.",
        "Right upper lobe nodule measuring 12 mm. Right chest wall pacemaker.",
        None,
    ]
    p = report_properties(texts)
    assert p.device.tolist() == [True, False, False, True, False]
    assert p.laterality.tolist() == [False, True, False, True, False]  # "bilaterally" is not a side
    assert p.measurement.tolist() == [True, False, False, True, False]
    assert p.prior_comparison.tolist() == [False, True, False, False, False]
    assert p.n_words.tolist() == [8, 9, 9, 11, 0]
    with pytest.raises(TypeError, match="row 0"):
        report_properties([3])


def _pairs(n, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.choice([1.0, 0.0, np.nan], size=(n, 14), p=[0.1, 0.7, 0.2])
    frame = pd.DataFrame(labels, columns=CHEXPERT_LABELS)
    dev = rng.random(n) < 0.4
    lat = rng.random(n) < 0.5
    frame["text"] = [
        ("Left chest tube in place. " if d else "") + ("Right effusion. " if l else "") + "Lungs clear."
        for d, l in zip(dev, lat)
    ]
    frame["view"] = np.where(rng.random(n) < 0.5, "AP", "PA")
    frame["patient_id"] = [f"p{i // 3}" for i in range(n)]
    return frame, dev, lat


def test_study_properties_add_labels_and_view():
    frame, dev, _ = _pairs(50)
    props = study_properties(frame)
    assert list(props.columns[:4]) == ["device", "laterality", "measurement", "prior_comparison"]
    np.testing.assert_array_equal(props.device, dev)
    np.testing.assert_array_equal(props.n_positive, (frame[list(CHEXPERT_LABELS)] == 1.0).sum(axis=1))
    np.testing.assert_array_equal(props.view_ap, frame.view == "AP")
    assert set(FEATURES) <= set(props.columns)
    with pytest.raises(ValueError, match="view"):
        study_properties(frame.drop(columns="view"))


def _planted(n, seed, *, length_mediates=False):
    """Study properties and a per-query expected R@1 from a known fractional logit: bounded, zero-heavy.

    The outcome is a binomial fraction of 20 draws at ``expit(eta)``, so most queries score 0 and a few
    near 1, like the expected Recall@1 of a weak model. ``length_mediates``: naming a device adds about
    30 words, and the re-linkage rises with length (more detail) while the device itself, at a fixed
    length, lowers it a little (the words went to the device, not to something more distinctive).
    """
    rng = np.random.default_rng(seed)
    props = pd.DataFrame(
        {
            "device": rng.random(n) < 0.4,
            "laterality": rng.random(n) < 0.5,
            "measurement": rng.random(n) < 0.3,
            "prior_comparison": rng.random(n) < 0.5,
            "n_positive": rng.poisson(1.5, n),
            "view_ap": rng.random(n) < 0.5,
        }
    )
    length = 4.0 + rng.normal(0.0, 1.0, n) + (3.0 * props.device if length_mediates else 0.0)
    props["length_10_words"] = length
    if length_mediates:
        eta = -5.0 + 0.8 * length - 0.8 * props.device
    else:
        eta = -3.5 + 1.0 * props.device + 0.7 * props.measurement + 0.2 * props.n_positive - 0.5 * props.view_ap
    y = rng.binomial(20, expit(eta.to_numpy(dtype=float))) / 20
    patients = np.array([f"p{i // 3}" for i in range(n)])
    return props, y, patients


def test_fractional_logit_recovers_planted_odds_ratios_with_covering_intervals():
    props, y, patients = _planted(3000, seed=1)
    assert (y == 0).mean() > 0.2 and y.max() <= 1  # bounded and zero-heavy
    eff = fit_risk_factors(props, y, patients).set_index("feature")
    assert list(eff.reset_index().columns) == list(RISK_COLUMNS)
    for name, b in (("device", 1.0), ("measurement", 0.7), ("n_positive", 0.2), ("view_ap", -0.5)):
        assert eff.loc[name, "or_adjusted_ci_low"] <= np.exp(b) <= eff.loc[name, "or_adjusted_ci_high"], name
        assert np.sign(np.log(eff.loc[name, "or_marginal"])) == np.sign(b)  # one at a time: same signs here
        assert np.sign(eff.loc[name, "ame_adjusted"]) == np.sign(b)
    for name in ("laterality", "prior_comparison"):  # no planted effect: the intervals cover 1
        assert eff.loc[name, "or_adjusted_ci_low"] < 1 < eff.loc[name, "or_adjusted_ci_high"], name
    assert np.isnan(eff.loc["length_10_words", "or_adjusted"])  # length: its own row, not adjusted for
    assert eff.loc["length_10_words", "or_marginal_ci_low"] < 1 < eff.loc["length_10_words", "or_marginal_ci_high"]
    assert eff.loc["device", "mean"] == pytest.approx(props.device.mean())
    assert eff.loc["device", "n"] == 3000 and eff.loc["device", "n_patients"] == 1000
    assert eff.loc["device", "expected_sign"] == "+" and eff.loc["n_positive", "expected_sign"] == ""


def test_adjusting_for_the_mediator_length_flips_the_sign_and_the_model_does_not():
    """The issue's reading backwards: a device mention raises re-linkage (through the words it adds), but
    holding length fixed makes it look protective. The marginal and the adjusted-without-length fits
    keep the true (total) sign; the old adjustment for length gives the opposite one."""
    props, y, patients = _planted(4000, seed=2, length_mediates=True)
    eff = fit_risk_factors(props, y, patients).set_index("feature")
    assert eff.loc["device", "or_marginal_ci_low"] > 1
    assert eff.loc["device", "or_adjusted_ci_low"] > 1
    assert eff.loc["length_10_words", "or_marginal_ci_low"] > 1
    with_length = fit_risk_factors(props, y, patients, adjusted=FEATURES).set_index("feature")
    assert with_length.loc["device", "or_adjusted_ci_high"] < 1  # the flip the length-adjusted model produced
    assert with_length.loc["device", "or_adjusted"] == pytest.approx(np.exp(-0.8), rel=0.15)
    with pytest.raises(ValueError, match="adjusted"):
        fit_risk_factors(props, y, patients, adjusted=("device", "no such"))


def test_one_binary_property_reproduces_the_group_means():
    """Known answer: a logit on one 0/1 regressor fits both group means exactly (the score equations), so
    its odds ratio is the ratio of the groups' odds and its average marginal effect their difference."""
    props, y, patients = _planted(1500, seed=3)
    eff = fit_risk_factors(props, y, patients).set_index("feature")
    dev = props.device.to_numpy()
    m1, m0 = y[dev].mean(), y[~dev].mean()
    assert eff.loc["device", "or_marginal"] == pytest.approx((m1 / (1 - m1)) / (m0 / (1 - m0)), rel=1e-6)
    assert eff.loc["device", "ame_marginal"] == pytest.approx(m1 - m0, abs=1e-8)
    assert eff.loc["device", "ame_marginal_ci_low"] < m1 - m0 < eff.loc["device", "ame_marginal_ci_high"]


def test_intervals_are_cluster_robust_by_patient():
    """Copying every query of a patient three times (same patient) leaves the estimate and, up to the
    small-sample factor, the interval unchanged; counting the copies as independent patients narrows it."""
    props, y, patients = _planted(900, seed=4)
    base = fit_fractional_logit(props[["device"]].to_numpy(float), y, patients, ["device"])
    rep = np.repeat(np.arange(900), 3)
    tripled = fit_fractional_logit(props[["device"]].to_numpy(float)[rep], y[rep], patients[rep], ["device"])
    naive = fit_fractional_logit(props[["device"]].to_numpy(float)[rep], y[rep], np.arange(2700), ["device"])
    np.testing.assert_allclose(tripled.params, base.params, rtol=1e-8)
    se = lambda f: np.sqrt(f.cov[1, 1])  # noqa: E731
    assert se(tripled) == pytest.approx(se(base), rel=0.01)
    assert se(naive) < 0.7 * se(base)
    assert tripled.n_clusters == 300 and tripled.converged
    o, lo, hi = base.odds_ratio("device")
    assert lo < o < hi and o == pytest.approx(np.exp(base.params[1]))
    with pytest.raises(KeyError, match="view_ap"):
        base.odds_ratio("view_ap")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_fractional_logit(props[["device"]].to_numpy(float), y - 0.5, patients)


def test_constant_features_and_outcomes_are_not_estimable():
    frame, dev, lat = _pairs(300, seed=1)
    props = study_properties(frame)
    y = np.clip(0.1 + 0.3 * props.device.to_numpy(), 0, 1)
    eff = fit_risk_factors(props, y, frame.patient_id).set_index("feature")
    assert np.isnan(eff.loc["measurement", "or_marginal"]) and np.isnan(eff.loc["measurement", "or_adjusted"])
    assert eff.loc["device", "or_marginal"] > 1
    flat = fit_risk_factors(props, np.zeros(300), frame.patient_id)
    assert flat[["or_marginal", "or_adjusted"]].isna().all().all()  # nothing re-linked: no effect to estimate
    with pytest.raises(ValueError, match="outcome: expected shape"):
        fit_risk_factors(props, y[:10])
    with pytest.raises(ValueError, match="outcome: expected values in"):
        fit_risk_factors(props, y + 1.0)


def test_the_generator_flags_come_out_positive_on_a_planted_cohort():
    """The validation against the generator: where re-linkage rises with the detail the generator wrote,
    ``or_truth`` (the generator's own flag) and the extracted property's odds ratio are both above 1."""
    frame, dev, lat = _pairs(1200, seed=5)
    props = study_properties(frame)
    rng = np.random.default_rng(6)
    y = rng.binomial(20, expit(-2.5 + 1.2 * dev + 0.6 * lat)) / 20
    truth = pd.DataFrame({"mentions_device": dev, "mentions_laterality": lat})
    eff = fit_risk_factors(props, y, frame.patient_id, truth=truth).set_index("feature")
    for prop in ("device", "laterality"):
        assert eff.loc[prop, "or_truth_ci_low"] > 1 and eff.loc[prop, "or_marginal_ci_low"] > 1
        assert eff.loc[prop, "truth_column"] == f"mentions_{prop}"
    assert np.isnan(eff.loc["measurement", "or_truth"]) and eff.loc["measurement", "truth_column"] == ""
    with pytest.raises(ValueError, match="truth: expected"):
        fit_risk_factors(props, y, frame.patient_id, truth=truth.iloc[:5])


def test_validation_counts_precision_and_recall():
    props = pd.DataFrame(
        {
            "device": [True, True, False, False],
            "laterality": [True, False, True, False],
            "measurement": [False] * 4,
            "prior_comparison": [True, True, False, False],
        }
    )
    truth = pd.DataFrame(
        {
            "mentions_device": [True, False, True, False],
            "mentions_laterality": [True, False, True, True],
            "study_order": [0, 2, 0, 1],
        }
    )
    v = validate_properties(props, truth).set_index("property")
    assert v.loc["device", "precision"] == 0.5 and v.loc["device", "recall"] == 0.5
    assert v.loc["laterality", "precision"] == 1.0 and v.loc["laterality", "recall"] == pytest.approx(2 / 3)
    assert "measurement" not in v.index  # no ground-truth column
    assert v.loc["prior_comparison", "precision"] == 0.5 and np.isnan(v.loc["prior_comparison", "recall"])
    with pytest.raises(ValueError, match="truth: expected 4 rows"):
        validate_properties(props, truth.iloc[:3])


def test_extractor_against_the_synthetic_generator():
    from relink_lib.cohorts.synthetic.generate import make_synthetic_cohort

    pairs = make_synthetic_cohort(400, image_size=16, seed=5, n_jobs=1).pairs
    v = validate_properties(study_properties(pairs), pairs).set_index("property")
    for prop in ("device", "laterality", "measurement"):
        assert v.loc[prop, "precision"] > 0.9 and v.loc[prop, "recall"] > 0.9, v


def test_a_separated_property_is_not_estimable():
    props, y, patients = _planted(600, seed=7)
    y = np.where(props.device, y, 0.0)  # studies without a device never re-link: OR infinite
    eff = fit_risk_factors(props, y, patients).set_index("feature")
    assert np.isnan(eff.loc["device", "or_marginal"]) and np.isnan(eff.loc["device", "or_adjusted"])
    assert np.isfinite(eff.loc["laterality", "or_adjusted"])  # the others are still fitted


def _refit_setup(monkeypatch, n=150, d=6):
    """A fake held-out split: features whose identity heads re-link the studies that name a device."""
    import torch

    from relink_lib.audit import stage as audit_stage
    from relink_lib.features import Features

    frame, dev, lat = _pairs(n, seed=8)
    frame["mentions_device"], frame["mentions_laterality"] = dev, lat
    rng = np.random.default_rng(9)
    z = rng.normal(size=(n, d))
    noise = np.where(dev[:, None], 0.3, 2.0)  # device studies: image and report close
    image = (z + noise * rng.normal(size=(n, d))).astype(np.float32)
    text = (z + noise * rng.normal(size=(n, d))).astype(np.float32)
    feats = Features(image=image, text=text, rows=np.arange(n))

    class _Cohort:
        pairs = frame

    def linear(weight):
        head = torch.nn.Linear(d, d, bias=False)
        with torch.no_grad():
            head.weight.copy_(torch.as_tensor(weight, dtype=torch.float32))
        return head

    heads = {
        "pretrained": (linear(np.eye(d)), linear(np.eye(d))),
        "dp": (linear(np.eye(d)), linear(rng.normal(size=(d, d)))),  # a scrambled text head: little re-linkage
    }
    monkeypatch.setattr(audit_stage, "get_features", lambda params, cohort, rung, split, progress=False: feats)
    return audit_stage, _Cohort(), heads, frame, feats


def test_refit_under_the_dp_heads_and_its_table(monkeypatch):
    from dataclasses import dataclass

    from relink_lib.audit import per_query_recall, rank_counts
    from relink_lib.audit.summary import risk_refit_findings, risk_refit_table
    from relink_lib.features import embed_features
    from relink_lib.profiles import get_profile

    @dataclass
    class _Rung:
        index: int = 2
        name: str = "full-reports"

    audit_stage, cohort, heads, frame, feats = _refit_setup(monkeypatch)
    params = get_profile("smoke", {"audit": {"device": "cpu", "chunk_size": 64}})
    refit = audit_stage.risk_factor_refit(params, cohort, _Rung(), heads)
    assert refit.pool_size == 100 and refit.n_database == 150
    e = refit.effects
    assert set(e.variant) == {"pretrained", "dp"} and (e.model == "full-reports").all() and len(e) == 14
    # the "before" rows are the chapter-4 model on the pretrained heads' own expected Recall@1
    outcome = per_query_recall(rank_counts(*embed_features(feats, *heads["pretrained"])), 100, 1)
    direct = fit_risk_factors(study_properties(frame), outcome, frame.patient_id.astype(str))
    before = e[e.variant == "pretrained"].reset_index(drop=True)
    pd.testing.assert_series_equal(before.or_marginal, direct.or_marginal)
    dev = before.set_index("feature").loc["device"]
    assert dev.or_marginal_ci_low > 1 and dev.or_truth_ci_low > 1  # planted: device studies re-link
    t = risk_refit_table(refit)
    assert list(t.columns) == ["property", "OR before", "OR before low", "OR before high", "OR after", "OR after low",
                               "OR after high"]  # fmt: skip
    row = t.set_index("property").loc["names a device"]
    assert row["OR before"] == pytest.approx(dev.or_adjusted)
    length = t.set_index("property").loc["report length (per 10 words)"]
    assert length["OR before"] == pytest.approx(before.set_index("feature").loc["length_10_words", "or_marginal"])
    text = "\n".join(risk_refit_findings(refit, simulation=True))
    assert "refit under the released DP heads (a simulation)" in text and "N = 100" in text
    assert f"averages {e[e.variant == 'pretrained'].mean_outcome.iloc[0]:.3g} before" in text
    back = audit_stage.RiskRefit.from_json(refit.to_json())
    pd.testing.assert_frame_equal(back.effects, refit.effects, check_dtype=False)
    with pytest.raises(KeyError, match="nonprivate"):
        audit_stage.risk_factor_refit(params, cohort, _Rung(), heads, variants=("nonprivate",))
    with pytest.raises(ValueError, match="form"):
        risk_refit_table(refit, form="total")


def test_chapter_tables_and_sentences_follow_the_fit():
    from relink_lib.audit.summary import risk_check_table, risk_findings, risk_plot_frame, risk_table

    frame, dev, lat = _pairs(1200, seed=5)
    props = study_properties(frame)
    y = np.random.default_rng(6).binomial(20, expit(-2.5 + 1.2 * dev + 0.6 * lat)) / 20
    truth = pd.DataFrame({"mentions_device": dev, "mentions_laterality": lat})
    eff = fit_risk_factors(props, y, frame.patient_id, truth=truth)
    risk = pd.concat([eff.assign(model="weak", rung=0), eff.assign(model="strong", rung=1)], ignore_index=True)
    t = risk_table(risk).set_index("property")
    assert len(t) == 7 and t.loc["names a device", "OR alone"] == eff.or_marginal.iloc[0]
    assert np.isnan(t.loc["report length (per 10 words)", "OR adjusted"])
    check = risk_check_table(risk).set_index("property")
    assert list(check.index) == ["names a device", "laterality word"]  # the generator records no measurement here
    assert (check.verdict == "positive, as the generator implies").all()
    plot = risk_plot_frame(risk)
    length = plot[(plot.feature == "length_10_words") & (plot.rung == 1)].iloc[0]
    assert length.effect == length.ame_marginal and plot.effect.iloc[0] == plot.ame_adjusted.iloc[0]
    text = "\n".join(risk_findings({"risk": risk, "risk_pool_size": 100}))
    d = eff.set_index("feature").loc["device"]
    assert (
        f"names a device {d.or_marginal:.2f} (95% CI {d.or_marginal_ci_low:.2f} to {d.or_marginal_ci_high:.2f})" in text
    )
    assert "Per-study risk (strong, expected Recall@1 at N = 100" in text
    assert "cannot tell for" in text and "(the interval includes 1)" in text  # the null properties
    assert "not estimable for gives a measurement (cm/mm)" in text  # never present in these reports
    assert "The model passes this check." in text
    flipped = risk.assign(or_truth=1 / risk.or_truth, or_truth_ci_low=1 / risk.or_truth_ci_high,
                          or_truth_ci_high=1 / risk.or_truth_ci_low)  # fmt: skip
    assert "The model fails this check on this profile." in "\n".join(
        risk_findings({"risk": flipped, "risk_pool_size": 100})
    )
