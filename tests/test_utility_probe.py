"""Linear probe: known answers, uncertain handling, patient-level splits, and the invariance chapter 7 discusses."""

from __future__ import annotations

import numpy as np
import pytest

from relink_lib.utility.probe import binarize_labels, linear_probe_auroc, patient_split


def _data(n=400, d=8, L=3, seed=0, signal=3.0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=(n, L)).astype(float)
    x = rng.normal(size=(n, d))
    x[:, :L] += signal * (y - 0.5)
    return x, y


def test_binarize_protocol():
    y = np.array([[1, 0, -1, np.nan]], dtype=float)
    np.testing.assert_array_equal(binarize_labels(y, "ignore", 4), [[1, 0, np.nan, 0]])
    np.testing.assert_array_equal(binarize_labels(y, "positive", 4), [[1, 0, 1, 0]])
    np.testing.assert_array_equal(binarize_labels(y, "negative", 4), [[1, 0, 0, 0]])
    with pytest.raises(ValueError, match="row 0 column 1"):
        binarize_labels(np.array([[1, 2.0]]), n_labels=2)


def test_separable_labels_score_high_and_noise_labels_near_half():
    x, y = _data()
    noise = np.random.default_rng(1).integers(0, 2, size=(400, 1)).astype(float)
    y = np.hstack([y, noise])
    tr = np.arange(400) < 250
    df = linear_probe_auroc(x[tr], y[tr], x[~tr], y[~tr], labels=["a", "b", "c", "noise"])
    per = df.set_index("label")["auroc"]
    assert (per[["a", "b", "c"]] > 0.95).all()
    assert 0.3 < per["noise"] < 0.7
    assert per["macro"] == pytest.approx(per[["a", "b", "c", "noise"]].mean())
    assert int(df["n_labels"].iloc[0]) == 4


def test_uncertain_rows_are_left_out_and_single_class_label_is_nan():
    x, y = _data(L=2)
    y[:50, 0] = -1
    y[:, 1] = 0  # no positives
    tr = np.arange(400) < 250
    df = linear_probe_auroc(x[tr], y[tr], x[~tr], y[~tr], labels=["a", "b"]).set_index("label")
    assert df.loc["a", "n_train_pos"] + df.loc["a", "n_train_neg"] == 200
    assert np.isnan(df.loc["b", "auroc"])
    assert df.loc["macro", "auroc"] == pytest.approx(df.loc["a", "auroc"])


def test_probe_is_invariant_to_an_invertible_linear_map_of_the_embedding():
    # the point of chapter 7: a linear probe on a linear head's output re-learns around the head
    x, y = _data(d=6)
    a = np.random.default_rng(3).normal(size=(6, 6)) + 3 * np.eye(6)
    tr = np.arange(400) < 250
    base = linear_probe_auroc(x[tr], y[tr], x[~tr], y[~tr], labels=list("abc"), C=1e6)
    mapped = linear_probe_auroc(x[tr] @ a, y[tr], x[~tr] @ a, y[~tr], labels=list("abc"), C=1e6)
    np.testing.assert_allclose(base["auroc"], mapped["auroc"], atol=2e-3)


def test_patient_split_is_disjoint():
    ids = np.repeat(np.arange(20), 3)
    tr, te = patient_split(ids, 0.25, seed=0)
    assert set(ids[tr]).isdisjoint(ids[te])
    assert len(set(ids[te])) == 5 and (tr | te).all()


def test_validation_messages():
    x, y = _data()
    with pytest.raises(ValueError, match="test_emb: expected 8 columns"):
        linear_probe_auroc(x, y, x[:, :3], y, labels=list("abc"))
    with pytest.raises(ValueError, match="expected 400 and 400 rows"):
        linear_probe_auroc(x, y[:10], x, y, labels=list("abc"))


def test_several_test_sets_share_one_fit_and_the_newton_solver_agrees():
    from relink_lib.utility.probe import linear_probe_aurocs

    x, y = _data()
    a, b = x[:200], x[200:]
    both = linear_probe_aurocs(x, y, {"a": (a, y[:200]), "b": (b, y[200:])}, labels=list("abc"))
    for name, (xe, ye) in {"a": (a, y[:200]), "b": (b, y[200:])}.items():
        alone = linear_probe_auroc(x, y, xe, ye, labels=list("abc"))
        assert np.allclose(both[name]["auroc"].to_numpy(), alone["auroc"].to_numpy(), equal_nan=True)
    newton = linear_probe_aurocs(x, y, {"a": (a, y[:200])}, labels=list("abc"), solver="newton-cholesky")["a"]
    assert np.allclose(newton["auroc"].to_numpy(), both["a"]["auroc"].to_numpy(), atol=2e-3, equal_nan=True)
    with pytest.raises(ValueError, match="solver"):
        linear_probe_aurocs(x, y, {"a": (a, y[:200])}, labels=list("abc"), solver="sag")
