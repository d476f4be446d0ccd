"""Per-study risk: the report-property extractor, the linear model with bootstrap CIs, and the validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relink_lib.audit.risk_factors import (
    FEATURES,
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


def test_fit_recovers_known_effects_with_covering_intervals():
    frame, dev, lat = _pairs(900, seed=1)
    props = study_properties(frame)
    rng = np.random.default_rng(2)
    y = 0.1 + 0.3 * props.device + 0.02 * props.n_positive - 0.05 * props.view_ap + 0.02 * rng.normal(size=900)
    eff = fit_risk_factors(props, y.to_numpy(), frame.patient_id, n_boot=100, seed=0).set_index("feature")
    for name, truth in (("device", 0.3), ("n_positive", 0.02), ("view_ap", -0.05)):
        assert eff.loc[name, "ci_low"] <= truth <= eff.loc[name, "ci_high"]
        assert eff.loc[name, "effect"] == pytest.approx(truth, abs=0.01)
    assert eff.loc["laterality", "ci_low"] < 0 < eff.loc["laterality", "ci_high"]  # no effect: interval covers 0
    assert np.isnan(eff.loc["measurement", "effect"])  # never present: not identifiable
    assert eff.loc["device", "prevalence"] == pytest.approx(dev.mean())
    with pytest.raises(ValueError, match="outcome: expected shape"):
        fit_risk_factors(props, y.to_numpy()[:10])


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
