"""relink_audit against explicit enumeration of every pool, Monte Carlo, and its own invariants."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from relink_lib.audit import TABLE_COLUMNS, audit_table, monte_carlo_recall, rank_counts, rank_statistics, relink_audit


def _pairs(m: int, d: int, seed: int = 0, noise: float = 0.8):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(m, d))
    return z + noise * rng.normal(size=(m, d)), z + noise * rng.normal(size=(m, d))


def _enumerate_audit(img, rep, pool_sizes, ks, groups=None):
    """Every pool of every query, ranked by sorting (float64, ties above the truth)."""
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    rep = rep / np.linalg.norm(rep, axis=1, keepdims=True)
    sims = (img[:, None, :] * rep[None, :, :]).sum(-1)
    m = len(img)
    out = {}
    for n in pool_sizes:
        rec, chance, rr, q = np.zeros(len(ks)), np.zeros(len(ks)), 0.0, 0
        for i in range(m):
            others = [j for j in range(m) if j != i and (groups is None or groups[j] == groups[i])]
            if not others:
                continue
            size = len(others) if n is None else min(n - 1, len(others))
            pools = list(itertools.combinations(others, size))
            r_i, rr_i = np.zeros(len(ks)), 0.0
            for pool in pools:
                cand = [i, *pool]
                order = sorted(cand, key=lambda j: (-sims[i, j], j == i))
                rank = order.index(i) + 1
                r_i += [rank <= k for k in ks]
                rr_i += 1 / rank
            rec += r_i / len(pools)
            rr += rr_i / len(pools)
            chance += [min(k, size + 1) / (size + 1) for k in ks]
            q += 1
        out[n] = (rec / q, chance / q, rr / q, q)
    return out


def _check(table, ref, ks, m):
    for n, (rec, chance, rr, q) in ref.items():
        rows = table[table.pool_size == (m if n is None else n)].sort_values("k")
        np.testing.assert_allclose(rows.recall, rec, atol=1e-12)
        np.testing.assert_allclose(rows.chance, chance, atol=1e-12)
        np.testing.assert_allclose(rows.lift, rec / chance, atol=1e-10)
        np.testing.assert_allclose(rows.mrr, rr, atol=1e-12)
        assert (rows.n_queries == q).all()


def test_matches_enumeration_of_all_pools():
    img, rep = _pairs(9, 4, seed=0)
    ks, sizes = (1, 2, 5), (2, 3, 5, 9, None)
    table = relink_audit(img, rep, pool_sizes=sizes, ks=ks, chunk_size=4)
    assert list(table.columns[: len(TABLE_COLUMNS)]) == list(TABLE_COLUMNS)
    assert len(table) == len(sizes) * len(ks)
    ref = _enumerate_audit(img, rep, [2, 3, 5, None], ks)
    _check(table.iloc[:9], {n: ref[n] for n in (2, 3, 5)}, ks, 9)
    _check(table.iloc[9:12], {None: ref[None]}, ks, 9)  # N = M is the full database
    _check(table.iloc[12:], {None: ref[None]}, ks, 9)
    assert table.full_database.tolist() == [False] * 9 + [True] * 6


def test_ties_against_bound_counts_ties_against_the_query_in_every_pool():
    img, rep = _pairs(8, 4, seed=1)
    rep[[2, 6]] = rep[0]  # duplicates of query 0's report
    img[5] = img[4]
    rep[5] = rep[4]  # two identical pairs: each one's twin ties
    ref = _enumerate_audit(img, rep, [3, 4, None], (1, 3))
    table = relink_audit(img, rep, pool_sizes=(3, 4, None), ks=(1, 3))
    _check(
        table.assign(
            recall=table.recall_ties_against, mrr=table.mrr_ties_against, lift=table.recall_ties_against / table.chance
        ),
        ref,
        (1, 3),
        8,
    )
    rc = rank_counts(img, rep)
    assert rc.counts[4] >= 1 and rc.counts[5] >= 1 and rc.counts[0] >= 2
    assert rc.tied[0] == 2 and rc.tied[4] == 1 and rc.tied[5] == 1


def test_hard_negatives_match_enumeration_with_partial_pools():
    img, rep = _pairs(11, 4, seed=2)
    groups = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2, 0])  # group 2 is a singleton: excluded
    ks = (1, 2)
    table = relink_audit(img, rep, pool_sizes=(3, 5, None), ks=ks, labels=groups, hard_negatives=True)
    ref = _enumerate_audit(img, rep, [3, 5, None], ks, groups=groups)
    _check(table, ref, ks, 11)
    assert (table.n_excluded == 1).all() and table.hard_negatives.all()
    n5 = table[table.pool_size == 5].iloc[0]
    assert n5.n_full_pools == 7  # the 7 queries of group 0 have 6 matches >= 4; group 1 has only 2
    assert n5.mean_pool_size == pytest.approx((7 * 5 + 3 * 3) / 10)
    assert n5.chance == pytest.approx((7 * (1 / 5) + 3 * (1 / 3)) / 10)


def test_hard_negatives_with_label_matrix_and_options():
    img, rep = _pairs(6, 4, seed=3)
    lab = np.zeros((6, 14))
    lab[:, 8] = 1.0
    lab[1, 8], lab[1, 0] = 0.0, 1.0
    lab[2] = lab[1]
    lab[3, 0] = np.nan  # NaN == 0 by default: matches rows 0, 4, 5
    lab[4, 0] = -1.0  # uncertain kept distinct by default
    t = relink_audit(img, rep, pool_sizes=(None,), ks=(1,), labels=lab, hard_negatives=True)
    assert int(t.n_excluded.iloc[0]) == 1  # row 4 alone
    t2 = relink_audit(img, rep, pool_sizes=(None,), ks=(1,), labels=lab, hard_negatives=True, uncertain_as=0.0)
    assert int(t2.n_excluded.iloc[0]) == 0
    groups_loose = relink_audit(
        img, rep, pool_sizes=(None,), ks=(1,), labels=lab, hard_negatives=True, match="positive"
    )
    assert int(groups_loose.n_excluded.iloc[0]) == 0 and "positive" in groups_loose.match.iloc[0]


def test_agrees_with_monte_carlo_within_standard_error():
    img, rep = _pairs(150, 8, seed=4, noise=1.0)
    sizes, ks = (10, 50, None), (1, 5, 10)
    exact = relink_audit(img, rep, pool_sizes=sizes, ks=ks)
    mc = monte_carlo_recall(img, rep, sizes, ks, n_pools=40, seed=1)
    merged = exact.merge(mc, on=["pool_size", "k"], suffixes=("", "_mc"))
    assert len(merged) == 9
    z = np.abs(merged.recall - merged.recall_mc) / np.maximum(merged.recall_se, 1e-12)
    assert (z < 4).all(), merged[["pool_size", "k", "recall", "recall_mc", "recall_se"]]
    zr = np.abs(merged.mrr - merged.mrr_mc) / np.maximum(merged.mrr_se, 1e-12)
    assert (zr < 4).all()
    full = merged[merged.pool_size == 150]
    np.testing.assert_allclose(full.recall, full.recall_mc, atol=1e-12)  # one possible pool: no noise


def test_hard_negatives_agree_with_monte_carlo():
    img, rep = _pairs(120, 8, seed=5, noise=1.0)
    groups = np.random.default_rng(0).integers(0, 4, size=120)
    exact = relink_audit(img, rep, pool_sizes=(10, 40), ks=(1, 5), labels=groups, hard_negatives=True)
    mc = monte_carlo_recall(img, rep, (10, 40), (1, 5), n_pools=30, seed=2, groups=groups)
    merged = exact.merge(mc, on=["pool_size", "k"], suffixes=("", "_mc"))
    assert ((merged.recall - merged.recall_mc).abs() < 4 * merged.recall_se + 1e-12).all()


def test_input_types_dtypes_and_chunking_do_not_change_the_table():
    img, rep = _pairs(70, 6, seed=6)
    ref = relink_audit(img, rep, pool_sizes=(10, None), chunk_size=70)
    cols = ["recall", "chance", "lift", "mrr"]
    variants = [
        relink_audit(img.astype(np.float32), rep.astype(np.float32), pool_sizes=(10, None), chunk_size=3),
        relink_audit(torch.tensor(img), torch.tensor(rep, dtype=torch.float32), pool_sizes=(10, None), chunk_size=11),
        relink_audit(img * 7.0, rep * 0.01, pool_sizes=(10, None)),
    ]
    for v in variants:
        pd.testing.assert_frame_equal(v[cols], ref[cols])


def test_known_answers_on_degenerate_embeddings():
    m = 20
    same = np.ones((m, 3))
    t = relink_audit(same, same, pool_sizes=(5, None), ks=(1, 5))
    # every distractor ties: a fair tie-break gives exactly chance; the bounds are last and first
    np.testing.assert_allclose(t.recall, t.chance, rtol=1e-12)
    np.testing.assert_allclose(t.recall, [0.2, 1.0, 1 / m, 5 / m], rtol=1e-12)
    np.testing.assert_allclose(t.lift, 1.0, rtol=1e-12)
    np.testing.assert_allclose(t.mrr, t.chance_mrr, rtol=1e-12)
    np.testing.assert_allclose(t.recall_ties_against, [0.0, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(t.recall_ties_for, 1.0)
    assert (t.n_queries_with_ties == m).all()
    assert t.median_rank.iloc[2] == (m + 1) / 2 and t.median_rank_ties_against.iloc[2] == m
    perfect = np.eye(m)
    t = relink_audit(perfect, perfect, pool_sizes=(5, None), ks=(1,))
    np.testing.assert_allclose(t.recall, 1.0)
    np.testing.assert_allclose(t.lift, [5.0, float(m)])
    assert t.median_rank.iloc[1] == 1.0 and np.isnan(t.median_rank.iloc[0])


def test_full_database_rank_statistics():
    img, rep = _pairs(50, 6, seed=7)
    rc = rank_counts(img, rep)
    stats = rank_statistics(rc)
    t = audit_table(rc, (None,), (1,))
    assert stats["mrr"] == pytest.approx(t.mrr.iloc[0], abs=1e-12)
    assert stats["recall_at_1"] == pytest.approx(t.recall.iloc[0])
    assert stats["median_rank"] == float(np.median(rc.ranks)) == t.median_rank.iloc[0]  # no ties here
    assert stats["n_queries_with_ties"] == 0 and (t.recall == t.recall_ties_against).all()
    assert t.pool_size.iloc[0] == 50 and bool(t.full_database.iloc[0])


def test_query_mask_averages_a_subset():
    img, rep = _pairs(40, 6, seed=8)
    rc = rank_counts(img, rep)
    mask = np.arange(40) % 2 == 0
    sub = audit_table(rc, (10,), (1,), query_mask=mask)
    allq = audit_table(rc, (10,), (1,))
    other = audit_table(rc, (10,), (1,), query_mask=~mask)
    assert sub.n_queries.iloc[0] == 20
    assert allq.recall.iloc[0] == pytest.approx((sub.recall.iloc[0] + other.recall.iloc[0]) / 2)


def test_bootstrap_columns_bracket_the_estimate():
    img, rep = _pairs(60, 6, seed=9)
    t = relink_audit(img, rep, pool_sizes=(10, None), ks=(1, 5), patient_ids=np.arange(60) // 3, n_boot=200, seed=0)
    assert (t.ci_low <= t.recall + 1e-12).all() and (t.recall <= t.ci_high + 1e-12).all()
    assert (t.lift_ci_low <= t.lift + 1e-9).all() and (t.lift <= t.lift_ci_high + 1e-9).all()
    np.testing.assert_allclose(t.lift_ci_low, t.ci_low / t.chance)  # random pools: chance is a constant
    t2 = relink_audit(img, rep, pool_sizes=(10, None), ks=(1, 5), patient_ids=np.arange(60) // 3, n_boot=200, seed=0)
    pd.testing.assert_frame_equal(t, t2)


def test_oversize_pool_sizes_are_dropped_or_raise():
    img, rep = _pairs(30, 4, seed=10)
    with pytest.warns(UserWarning, match=r"pool_sizes \[100, 1000\] exceed the database size M=30"):
        t = relink_audit(img, rep, pool_sizes=(10, 100, 1000, None), ks=(1,))
    assert sorted(t.pool_size) == [10, 30]
    with pytest.raises(ValueError, match="exceed the database size"):
        relink_audit(img, rep, pool_sizes=(100,), ks=(1,), oversize="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        relink_audit(img, rep, pool_sizes=(30, None), ks=(1,))  # N = M is allowed


def test_validation_errors():
    img, rep = _pairs(10, 4)
    with pytest.raises(ValueError, match="row i of image_emb must pair"):
        relink_audit(img, rep[:9])
    with pytest.raises(ValueError, match="at least 2 pairs"):
        relink_audit(img[:1], rep[:1])
    with pytest.raises(ValueError, match="pool_sizes: 0"):
        relink_audit(img, rep, pool_sizes=(0,))
    with pytest.raises(ValueError, match="pool_sizes: expected at least one"):
        relink_audit(img, rep, pool_sizes=())
    with pytest.raises(ValueError, match="ks: -1"):
        relink_audit(img, rep, ks=(-1,))
    with pytest.raises(ValueError, match="labels: required when hard_negatives"):
        relink_audit(img, rep, hard_negatives=True)
    with pytest.raises(ValueError, match="labels: expected 10 rows"):
        relink_audit(img, rep, labels=np.zeros((9, 14)), hard_negatives=True)
    with pytest.raises(ValueError, match="oversize"):
        relink_audit(img, rep, oversize="clip")
    with pytest.raises(ValueError, match="patient_ids: expected a 1-D array of length 10"):
        relink_audit(img, rep, pool_sizes=(5,), patient_ids=np.arange(9), n_boot=10)
    with pytest.raises(ValueError, match="query_mask"):
        audit_table(rank_counts(img, rep), (5,), (1,), query_mask=np.ones(10))
