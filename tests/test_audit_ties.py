"""Fair ties: recall, MRR and median rank under uniformly random tie-breaking, against brute force.

The enumerator below shares no code with the audit: it lists every pool of every query, ranks
the pool by sorting exact float64 similarities, and then lists every order of the tied items
(itertools.permutations), counting each order once. Fractions keep it exact.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from relink_lib.audit import (
    RankCounts,
    audit_table,
    expected_recall,
    expected_recall_ties,
    expected_reciprocal_rank,
    expected_reciprocal_rank_ties,
    per_query_recall,
    rank_counts,
    rank_statistics,
    relink_audit,
    tie_median_rank,
)
from relink_lib.audit.expected import _recall_ties_closed_form


def _grid_pairs(m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer-valued embeddings (exact float similarities, so ties are exact by construction)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(-2, 3, size=(m, 3)).astype(np.float64)
    rep = img + rng.integers(-1, 2, size=(m, 3))
    img[np.all(img == 0, axis=1)] = 1.0
    rep[np.all(rep == 0, axis=1)] = 1.0
    return img, rep


def _brute(img, rep, pool_sizes, ks, groups=None):
    """{N: {convention: (recall per K, mrr)}} by enumerating pools and tie orders; conventions fair/against/for."""
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    rep = rep / np.linalg.norm(rep, axis=1, keepdims=True)
    sims = np.round(img @ rep.T, 12)  # exact equality for equal directions
    m = len(img)
    out = {}
    for n in pool_sizes:
        acc = {c: ([Fraction(0)] * len(ks), Fraction(0)) for c in ("fair", "against", "for")}
        q = 0
        for i in range(m):
            others = [j for j in range(m) if j != i and (groups is None or groups[j] == groups[i])]
            if not others:
                continue
            q += 1
            size = len(others) if n is None else min(n - 1, len(others))
            pools = list(itertools.combinations(others, size))
            per = {c: ([Fraction(0)] * len(ks), Fraction(0)) for c in acc}
            for pool in pools:
                above = sum(sims[i, j] > sims[i, i] for j in pool)
                tied = [j for j in pool if sims[i, j] == sims[i, i]]
                orders = list(itertools.permutations([i, *tied]))  # every tie-break, equally likely
                ranks_fair = [1 + above + order.index(i) for order in orders]
                for conv, ranks in (("fair", ranks_fair), ("against", [1 + above + len(tied)]), ("for", [1 + above])):
                    rec, rr = per[conv]
                    w = Fraction(1, len(pools) * len(ranks))
                    per[conv] = (
                        [r + w * sum(rk <= k for rk in ranks) for r, k in zip(rec, ks)],
                        rr + w * sum(Fraction(1, rk) for rk in ranks),
                    )
            for conv in acc:
                rec, rr = acc[conv]
                acc[conv] = ([a + b for a, b in zip(rec, per[conv][0])], rr + per[conv][1])
        out[n] = {c: ([float(r / q) for r in rec], float(rr / q)) for c, (rec, rr) in acc.items()}
    return out


def _check(table, ref, m):
    for n, conv in ref.items():
        rows = table[table.pool_size == (m if n is None else n)].sort_values("k")
        for name, col, mrr in (
            ("fair", "recall", "mrr"),
            ("against", "recall_ties_against", "mrr_ties_against"),
            ("for", "recall_ties_for", "mrr_ties_for"),
        ):
            np.testing.assert_allclose(rows[col], conv[name][0], atol=1e-12, err_msg=f"N={n} {col}")
            np.testing.assert_allclose(rows[mrr], conv[name][1], atol=1e-12, err_msg=f"N={n} {mrr}")
        np.testing.assert_allclose(rows.lift, rows.recall / rows.chance, rtol=1e-12)


def test_duplicated_reports_match_enumeration():
    img, rep = _grid_pairs(8, seed=0)
    rep[[2, 5, 7]] = rep[0]  # the same report text three more times
    table = relink_audit(img, rep, pool_sizes=(2, 3, 4, None), ks=(1, 2, 3))
    assert (table.n_queries_with_ties >= 4).all()
    _check(table, _brute(img, rep, (2, 3, 4, None), (1, 2, 3)), 8)


def test_duplicated_images_match_enumeration():
    img, rep = _grid_pairs(8, seed=1)
    img[[1, 3, 6]] = img[0]  # the same image (direction) four times, each with its own report
    rep[[1, 3]] = rep[0] * 2.0  # and two reports equal to query 0's up to scale
    table = relink_audit(img, rep, pool_sizes=(3, 5, None), ks=(1, 2))
    _check(table, _brute(img, rep, (3, 5, None), (1, 2)), 8)


def test_all_equal_scores_give_chance_exactly():
    m = 7
    same = np.tile([[0.3, -1.0, 2.0]], (m, 1))
    table = relink_audit(same, same, pool_sizes=(2, 3, 5, None), ks=(1, 2, 4))
    _check(table, _brute(same, same, (2, 3, 5, None), (1, 2, 4)), m)
    np.testing.assert_allclose(table.recall, table.chance, rtol=1e-12)
    np.testing.assert_allclose(table.mrr, table.chance_mrr, rtol=1e-12)
    assert (table.n_queries_with_ties == m).all()


def test_hard_negative_pools_with_ties_match_enumeration():
    img, rep = _grid_pairs(10, seed=2)
    rep[[3, 4]] = rep[1]
    img[8] = img[7]
    groups = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 2])  # group 2 is a singleton: excluded
    table = relink_audit(img, rep, pool_sizes=(2, 3, None), ks=(1, 2), labels=groups, hard_negatives=True)
    _check(table, _brute(img, rep, (2, 3, None), (1, 2), groups=groups), 10)
    assert (table.n_excluded == 1).all()


def test_hard_negative_all_equal_gives_effective_chance():
    same = np.ones((9, 2))
    groups = np.array([0] * 6 + [1] * 3)
    table = relink_audit(same, same, pool_sizes=(3, 5, None), ks=(1,), labels=groups, hard_negatives=True)
    np.testing.assert_allclose(table.recall, table.chance, rtol=1e-12)  # chance over the pools actually drawn


@pytest.mark.parametrize("seed", range(6))
def test_closed_form_equals_average_over_tie_positions(seed):
    rng = np.random.default_rng(seed)
    d = int(rng.integers(1, 60))
    b = rng.integers(0, d + 1, size=40)
    t = np.array([rng.integers(0, d - x + 1) for x in b])
    n = rng.integers(0, d + 1, size=40)
    ks = (1, 3, 7)
    got = _recall_ties_closed_form(*(np.asarray(v, dtype=np.float64) for v in (b, t, np.full(40, d), n)), list(ks))
    got_rr = expected_reciprocal_rank_ties(b, t, d, n)
    for i in range(40):
        cs = np.arange(b[i], b[i] + t[i] + 1)
        np.testing.assert_allclose(got[i], expected_recall(cs, d, n[i], ks).mean(axis=0), atol=1e-12)
        assert got_rr[i] == pytest.approx(expected_reciprocal_rank(cs, d, n[i]).mean(), abs=1e-12)
    np.testing.assert_allclose(expected_recall_ties(b, 0 * t, d, n, ks), expected_recall(b, d, n, ks), atol=1e-13)
    np.testing.assert_allclose(expected_recall_ties(b, t, d, n, ks), got, atol=1e-12)  # the public function


def _exact_tie_recall(b, t, d, n, k):
    """P(rank <= k) under random tie-breaking, summed exactly over the multivariate hypergeometric."""
    total, r, p = math.comb(d, n), d - b - t, Fraction(0)
    for x in range(min(b, n) + 1):
        for y in range(min(t, n - x) + 1):
            w = math.comb(b, x) * math.comb(t, y) * math.comb(r, n - x - y)
            if w and x < k:
                p += Fraction(w, total) * Fraction(min(k - x, y + 1), y + 1)
    return float(p)


@pytest.mark.parametrize("b, t, n", [(0, 5, 9), (2, 40, 9), (0, 200, 9), (1, 1000, 9), (0, 3, 99)])
def test_both_paths_are_exact_at_mimic_scale(b, t, n):
    d = 43_792
    want = [_exact_tie_recall(b, t, d, n, k) for k in (1, 5)]
    # the tie-free hypergeometric itself carries ~4e-11 absolute (gammaln of numbers near 4e5)
    np.testing.assert_allclose(expected_recall_ties([b], [t], d, [n], (1, 5))[0], want, rtol=0, atol=1e-9)
    closed = _recall_ties_closed_form(*(np.array([v], dtype=np.float64) for v in (b, t, d, n)), [1, 5])[0]
    np.testing.assert_allclose(closed, want, rtol=0, atol=1e-9)
    assert 0 < want[0] <= 1


def test_all_ties_at_mimic_scale_is_chance():
    d = 43_792
    got = expected_recall_ties([0], [d], d, [9], (1, 5, 10))
    np.testing.assert_allclose(got, [[0.1, 0.5, 1.0]], rtol=1e-10)
    got = expected_recall_ties([0, 0], [d, 5_000], d, [d, 99], (1, 10))
    np.testing.assert_allclose(got[0], [1 / (d + 1), 10 / (d + 1)], rtol=1e-9)
    assert 0.0 < got[1, 0] < got[1, 1] <= 1.0


def test_tie_median_rank_against_replicated_ranks():
    rng = np.random.default_rng(3)
    for _ in range(20):
        b = rng.integers(0, 6, size=int(rng.integers(1, 7)))
        t = rng.integers(0, 4, size=b.size)
        lcm = math.lcm(*(int(x) + 1 for x in t))
        pooled = np.concatenate([np.repeat(np.arange(bi + 1, bi + ti + 2), lcm // (ti + 1)) for bi, ti in zip(b, t)])
        assert tie_median_rank(b, t) == float(np.median(pooled))
    assert tie_median_rank([0, 1, 2, 3], [0, 0, 0, 0]) == 2.5


def test_full_database_statistics_follow_the_fair_convention():
    img, rep = _grid_pairs(9, seed=4)
    rep[[1, 2]] = rep[0]
    rc = rank_counts(img, rep)
    stats = rank_statistics(rc)
    t = audit_table(rc, (None,), (1,))
    assert stats["mrr"] == pytest.approx(t.mrr.iloc[0], abs=1e-12)
    assert stats["recall_at_1"] == pytest.approx(t.recall.iloc[0], abs=1e-12)
    assert stats["median_rank"] == t.median_rank.iloc[0]
    assert t.median_rank_ties_for.iloc[0] <= t.median_rank.iloc[0] <= t.median_rank_ties_against.iloc[0]
    np.testing.assert_allclose(per_query_recall(rc, None, 1).mean(), t.recall.iloc[0], atol=1e-12)


def test_bounds_bracket_recall_and_bootstrap_is_on_the_fair_recall():
    img, rep = _grid_pairs(30, seed=5)
    t = relink_audit(img, rep, pool_sizes=(5, 10, None), ks=(1, 5), patient_ids=np.arange(30) // 2, n_boot=100)
    assert (t.recall_ties_against <= t.recall + 1e-12).all() and (t.recall <= t.recall_ties_for + 1e-12).all()
    assert (t.n_queries_with_ties > 0).all() and (t.recall_ties_against < t.recall_ties_for).any()
    assert (t.ci_low <= t.recall + 1e-12).all() and (t.recall <= t.ci_high + 1e-12).all()


def test_rank_counts_record_ties_and_validate():
    with pytest.raises(ValueError, match="tied"):
        RankCounts(counts=np.array([1, 2]), population=np.array([3, 3]), tied=np.array([2, 0]))
    with pytest.raises(ValueError, match="tied: entry 0"):
        expected_recall_ties([0], [-1], 5, [2], (1,))
    with pytest.raises(ValueError, match="counts: entry 0"):
        expected_recall_ties([3], [4], 5, [2], (1,))


def test_monte_carlo_with_random_tie_breaking_agrees():
    from relink_lib.audit import monte_carlo_recall

    img, rep = _grid_pairs(60, seed=6)
    rep[10:25] = rep[0]  # many copies of one report
    exact = relink_audit(img, rep, pool_sizes=(10, 30), ks=(1, 5))
    mc = monte_carlo_recall(img, rep, (10, 30), (1, 5), n_pools=60, seed=3)
    merged = exact.merge(mc, on=["pool_size", "k"], suffixes=("", "_mc"))
    assert ((merged.recall - merged.recall_mc).abs() < 4 * merged.recall_se + 1e-12).all()
    against = monte_carlo_recall(img, rep, (10,), (1,), n_pools=60, seed=3, ties="against")
    row = exact[(exact.pool_size == 10) & (exact.k == 1)].iloc[0]
    assert abs(against.recall.iloc[0] - row.recall_ties_against) < 4 * against.recall_se.iloc[0] + 1e-12
    with pytest.raises(ValueError, match="ties="):
        monte_carlo_recall(img, rep, (10,), ties="for")
