"""Patient-level bootstrap: cluster resampling, shared resamples, known-variance checks."""

from __future__ import annotations

import numpy as np
import pytest

from relink_lib.audit.bootstrap import patient_bootstrap, percentile_interval


def test_one_query_per_patient_matches_the_normal_standard_error():
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    reps = patient_bootstrap({"x": x}, n_boot=3000, seed=1)["x"]
    assert reps.shape == (3000,)
    assert reps.mean() == pytest.approx(x.mean(), abs=0.01)
    assert reps.std() == pytest.approx(x.std() / np.sqrt(400), rel=0.08)


def test_duplicated_queries_within_patients_do_not_shrink_the_interval():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=100)
    one = patient_bootstrap({"x": x}, np.arange(100), n_boot=500, seed=3)["x"]
    tripled = patient_bootstrap({"x": np.repeat(x, 3)}, np.repeat(np.arange(100), 3), n_boot=500, seed=3)["x"]
    np.testing.assert_allclose(tripled, one, atol=1e-12)  # same patients drawn, same means
    naive = patient_bootstrap({"x": np.repeat(x, 3)}, None, n_boot=500, seed=3)["x"]
    assert naive.std() < 0.75 * one.std()  # ignoring the clusters is overconfident


def test_names_share_resamples_so_ratios_are_valid():
    rng = np.random.default_rng(2)
    a = rng.uniform(size=(50, 2))
    reps = patient_bootstrap({"a": a, "twice": 2 * a}, rng.integers(0, 10, 50), n_boot=100, seed=0)
    assert reps["a"].shape == (100, 2)
    np.testing.assert_allclose(reps["twice"] / reps["a"], 2.0)


def test_string_patient_ids_and_percentiles():
    x = np.arange(6, dtype=float)
    ids = np.array(["p1", "p1", "p2", "p3", "p3", "p3"], dtype=object)
    reps = patient_bootstrap({"x": x}, ids, n_boot=50, seed=0)["x"]
    # a replicate is a mean over whole patients: only these cluster means can be combined
    assert reps.min() >= 0.5 - 1e-12 and reps.max() <= 4.0 + 1e-12
    lo, hi = percentile_interval(np.arange(101.0), 0.9)
    assert (lo, hi) == (pytest.approx(5.0), pytest.approx(95.0))


def test_validation():
    with pytest.raises(ValueError, match="patient_ids: expected a 1-D array of length 3"):
        patient_bootstrap({"x": np.zeros(3)}, np.zeros(4))
    with pytest.raises(ValueError, match="n_boot"):
        patient_bootstrap({"x": np.zeros(3)}, n_boot=0)
    with pytest.raises(ValueError, match=r"per_query\['y'\]"):
        patient_bootstrap({"x": np.zeros(3), "y": np.zeros(4)})
    with pytest.raises(ValueError, match="row 1 is NaN"):
        patient_bootstrap({"x": np.zeros(3)}, np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="level"):
        percentile_interval(np.zeros(5), 1.5)
