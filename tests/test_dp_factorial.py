"""The factorial's paired bootstrap (relink_lib.dp.factorial) on small arrays with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from relink_lib.dp.factorial import (
    Estimate,
    cut,
    difference,
    paired_bootstrap,
    replicate_means,
    resample_weights,
    share,
)


def test_identical_arms_have_share_zero_with_a_degenerate_interval() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, 40)
    dp = rng.uniform(0.0, 0.2, (3, 40))
    pats = np.repeat(np.arange(20), 2)
    est = paired_bootstrap({"base": base, "a": dp, "b": dp.copy()}, pats, share("base", "a", "b"), n_boot=200)
    assert est.value == 0.0 and est.ci_low == 0.0 and est.ci_high == 0.0
    assert est.includes_zero


def test_a_planted_constant_cut_and_share_are_recovered_exactly() -> None:
    base = np.full(30, 0.5)
    arms = {"base": base, "dp": np.full((3, 30), 0.2), "clip": np.full((3, 30), 0.3)}
    c = paired_bootstrap(arms, None, cut("base", "dp"), n_boot=50)
    assert c.value == pytest.approx(0.6) and c.ci_low == pytest.approx(0.6) and c.ci_high == pytest.approx(0.6)
    s = paired_bootstrap(arms, None, share("base", "dp", "clip"), n_boot=50)
    assert s.value == pytest.approx(1 / 3) and s.ci_low == pytest.approx(1 / 3) and s.ci_high == pytest.approx(1 / 3)
    d = paired_bootstrap(arms, None, difference("base", "clip", "dp"), n_boot=50)
    assert d.value == pytest.approx(-0.2) and not d.includes_zero


def test_a_planted_share_lies_inside_its_interval_and_noise_widens_it() -> None:
    rng = np.random.default_rng(1)
    n, s = 400, 5
    base = rng.uniform(0.4, 0.6, n)
    dp = base * 0.4 * (1 + 0.1 * rng.standard_normal((s, n)))  # cut 0.6
    clip = base * 0.7 * (1 + 0.1 * rng.standard_normal((s, n)))  # cut 0.3 -> share 0.5
    pats = np.repeat(np.arange(n // 2), 2)
    est = paired_bootstrap({"base": base, "dp": dp, "clip": clip}, pats, share("base", "dp", "clip"), n_boot=400)
    assert abs(est.value - 0.5) < 0.02
    assert est.ci_low < 0.5 < est.ci_high
    assert 0 < est.ci_high - est.ci_low < 0.1
    assert not est.includes_zero


def test_replicates_agree_with_brute_force_resampling() -> None:
    rng = np.random.default_rng(2)
    n, s = 7, 3
    pats = np.array(["a", "a", "b", "c", "c", "c", "d"])
    arms = {"base": rng.random(n), "dp": rng.random((s, n))}
    w, c = resample_weights(4, s, 25, seed=3)
    got = replicate_means(arms, pats, w, c)
    order = np.unique(pats)
    for b in range(25):
        rows = [i for p, k in zip(order, w[b]) for _ in range(int(k)) for i in np.flatnonzero(pats == p)]
        seeds = [j for j, k in enumerate(c[b]) for _ in range(int(k))]
        assert got["base"][b] == pytest.approx(arms["base"][rows].mean())
        assert got["dp"][b] == pytest.approx(
            arms["dp"][np.ix_(np.array(seeds, dtype=np.intp), np.array(rows, dtype=np.intp))].mean()
        )


def test_resample_weights_draw_patients_and_seeds_with_replacement() -> None:
    w, c = resample_weights(5, 3, 100, seed=0)
    assert w.shape == (100, 5) and c.shape == (100, 3)
    assert (w.sum(axis=1) == 5).all() and (c.sum(axis=1) == 3).all()
    assert (c == 3).any(axis=1).any()  # some replicate draws one seed three times


def test_bad_shapes_and_nonfinite_values_are_refused() -> None:
    with pytest.raises(ValueError, match="seeds"):
        paired_bootstrap({"a": np.ones((2, 4)), "b": np.ones((3, 4))}, None, cut("a", "b"))
    with pytest.raises(ValueError, match="finite"):
        paired_bootstrap({"a": np.ones(4), "b": np.array([1.0, np.nan, 1, 1])}, None, cut("a", "b"))


def test_estimate_round_trips_and_a_zero_baseline_gives_nan() -> None:
    e = Estimate(0.25, 0.1, 0.4, "a definition")
    assert Estimate.from_json(e.to_json()) == e
    est = paired_bootstrap({"a": np.zeros(5), "b": np.zeros(5)}, None, cut("a", "b"), n_boot=20)
    assert math.isnan(est.value) and math.isnan(est.ci_low) and est.includes_zero
