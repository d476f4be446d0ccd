"""Exact expectations (hypergeometric tails, reciprocal rank) against scipy and brute-force enumeration."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from math import comb

import numpy as np
import pytest
from scipy.stats import hypergeom

from relink_lib.audit.expected import (
    chance_recall,
    chance_reciprocal_rank,
    expected_recall,
    expected_reciprocal_rank,
    hypergeom_lower_tail,
    log_comb,
)


def test_log_comb_matches_math_comb():
    for a, b in [(0, 0), (5, 2), (30, 15), (43792, 9), (43792, 43790), (43792, 20000)]:
        assert log_comb(a, b) == pytest.approx(math.log(comb(a, b)), rel=1e-12, abs=1e-12)
    assert log_comb(3, 4) == -np.inf and log_comb(3, -1) == -np.inf


@pytest.mark.parametrize("population", [7, 99, 43792])
def test_lower_tail_matches_scipy(population):
    rng = np.random.default_rng(population)
    c = rng.integers(0, population + 1, size=200)
    n = rng.integers(0, population + 1, size=200)
    c[:3], n[:3] = 0, population  # edge: no success / draw everything
    ours = hypergeom_lower_tail(9, population, c, n)
    ref = hypergeom.cdf(np.arange(10)[None, :], population, c[:, None], n[:, None])
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


def _enumerate(c: int, d: int, n: int, ks):
    """Brute force over every pool: distractors 0..c-1 beat the truth, the rest do not."""
    recall = np.zeros(len(ks))
    rr = Fraction(0)
    pools = list(itertools.combinations(range(d), n))
    for pool in pools:
        rank = 1 + sum(1 for j in pool if j < c)
        recall += [rank <= k for k in ks]
        rr += Fraction(1, rank)
    return recall / len(pools), float(rr / len(pools))


@pytest.mark.parametrize("d", [1, 5, 9])
def test_recall_and_rr_match_enumeration(d):
    ks = [1, 2, 3, 5]
    for c in range(d + 1):
        for n in range(d + 1):
            want_recall, want_rr = _enumerate(c, d, n, ks)
            np.testing.assert_allclose(expected_recall(np.array([c]), d, n, ks)[0], want_recall, atol=1e-12)
            assert expected_reciprocal_rank(np.array([c]), d, n)[0] == pytest.approx(want_rr, abs=1e-12)


def test_reciprocal_rank_large_population_against_pmf_sum():
    d = 43792
    for c, n in [(0, 9), (3, 99), (250, 9999), (20000, 999), (43792, 43792), (17, 43792)]:
        x = np.arange(0, min(c, n) + 1)
        want = np.sum(hypergeom.pmf(x, d, c, n) / (1 + x))
        assert expected_reciprocal_rank(np.array([c]), d, n)[0] == pytest.approx(want, rel=1e-7)


def test_recall_boundaries_are_exact():
    # full database (draws = population): recall@K is the indicator count < K
    c = np.arange(0, 12)
    got = expected_recall(c, 11, 11, [1, 5, 10])
    np.testing.assert_array_equal(got, (c[:, None] < np.array([1, 5, 10])[None, :]).astype(float))
    # pool no larger than K: always recalled
    assert expected_recall(np.array([11]), 11, 4, [5])[0, 0] == 1.0


def test_chance_formulas():
    np.testing.assert_allclose(
        chance_recall([10, 100, 3], [1, 5, 10]), [[0.1, 0.5, 1.0], [0.01, 0.05, 0.1], [1 / 3, 1.0, 1.0]]
    )
    for n in (1, 2, 10, 1000):
        assert chance_reciprocal_rank(n)[0] == pytest.approx(sum(1.0 / r for r in range(1, n + 1)) / n, rel=1e-12)


def test_input_validation():
    with pytest.raises(ValueError, match="counts"):
        expected_recall(np.array([5]), 4, 2, [1])
    with pytest.raises(ValueError, match="draws"):
        expected_recall(np.array([1]), 4, 5, [1])
    with pytest.raises(ValueError, match="ks"):
        expected_recall(np.array([1]), 4, 2, [0])
    with pytest.raises(ValueError, match="integers"):
        expected_recall(np.array([1.5]), 4, 2, [1])
    with pytest.raises(ValueError, match="pool_size"):
        chance_recall(0, [1])
