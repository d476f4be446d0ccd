"""Seen vs unseen: the patient-level sample, the equal-size draws and the gap at equal N with its interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relink_lib.audit import rank_counts, relink_audit
from relink_lib.audit.seen import GAP_COLUMNS, SplitDraws, equal_size_draws, sample_patients, seen_unseen_gap


def _pairs(m, noise, seed, d=6):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(m, d))
    return z + noise * rng.normal(size=(m, d)), z + noise * rng.normal(size=(m, d))


def _ids(m, prefix, per=2):
    return np.array([f"{prefix}{i // per}" for i in range(m)])


def test_sample_patients_takes_whole_patients_but_the_last():
    ids = np.repeat([f"p{i}" for i in range(30)], np.arange(30) % 4 + 1)
    rows = sample_patients(ids, 25, seed=3)
    assert len(rows) == 25 and len(set(rows)) == 25 and (np.diff(rows) > 0).all()
    counts = pd.Series(ids[rows]).value_counts()
    full = pd.Series(ids).value_counts()
    cut = [p for p in counts.index if counts[p] < full[p]]
    assert len(cut) <= 1  # only the last patient taken can be partial
    assert not np.array_equal(rows, sample_patients(ids, 25, seed=4))
    np.testing.assert_array_equal(rows, sample_patients(ids, 25, seed=3))
    np.testing.assert_array_equal(sample_patients(ids, 10_000), np.arange(len(ids)))
    with pytest.raises(ValueError, match="n=0"):
        sample_patients(ids, 0)


def test_equal_size_draws_cut_the_larger_split_by_patient_and_keep_the_smaller_whole():
    img, rep = _pairs(90, 1.0, seed=0)
    ids = _ids(90, "p", per=3)
    d = equal_size_draws(img, rep, ids, 40, n_draws=4, seed=5)
    assert d.n_draws == 4 and d.size == 40 and d.n_split == 90 and d.subsampled
    for i, (r, rc, pid) in enumerate(zip(d.rows, d.counts, d.patients)):
        np.testing.assert_array_equal(r, sample_patients(ids, 40, seed=5 + i))  # draw i: seed + i
        np.testing.assert_array_equal(pid, ids[r])
        direct = rank_counts(img[r], rep[r])  # each draw is a database of its own
        np.testing.assert_array_equal(rc.counts, direct.counts)
        sizes = pd.Series(ids[r]).value_counts()
        assert (sizes < 3).sum() <= 1  # whole patients, but the last one taken
    assert len({tuple(r) for r in d.rows}) > 1  # the draws differ
    whole = rank_counts(img, rep)
    w = equal_size_draws(img, rep, ids, 90, n_draws=4, whole=whole)
    assert w.n_draws == 1 and not w.subsampled and w.counts[0] is whole  # the smaller split: once, whole
    assert equal_size_draws(img, rep, ids, 500).size == 90
    with pytest.raises(ValueError, match="whole"):
        equal_size_draws(img, rep, ids, 90, whole=rank_counts(img[:10], rep[:10]))
    with pytest.raises(ValueError, match="n_draws"):
        equal_size_draws(img, rep, ids, 40, n_draws=0)


def test_gap_is_exact_per_draw_and_averages_the_draws():
    """Known answer: each side's recall is the mean over its draws of relink_audit on the drawn database."""
    s_img, s_rep = _pairs(60, 0.5, seed=1)
    u_img, u_rep = _pairs(150, 0.5, seed=2)
    s_ids, u_ids = _ids(60, "s"), _ids(150, "u", per=3)
    seen = equal_size_draws(s_img, s_rep, s_ids, 60)
    unseen = equal_size_draws(u_img, u_rep, u_ids, 60, n_draws=3, seed=11)
    gap = seen_unseen_gap(seen, unseen, (10, 50, 60, 100, None), (1, 5), n_boot=100)
    assert list(gap.columns) == list(GAP_COLUMNS)
    assert gap.pool_size.tolist() == [10, 10, 50, 50, 60, 60]  # 100 exceeds the common size; 60 is the full row
    assert gap.full_database.tolist() == [False, False, False, False, True, True]
    per_draw = [relink_audit(u_img[r], u_rep[r], (10, 50, None), (1, 5)).recall.to_numpy() for r in unseen.rows]
    np.testing.assert_allclose(gap.recall_test, np.mean(per_draw, axis=0), atol=1e-12)
    np.testing.assert_allclose(gap.recall_train, relink_audit(s_img, s_rep, (10, 50, None), (1, 5)).recall, atol=1e-12)
    np.testing.assert_allclose(gap.gap, gap.recall_train - gap.recall_test, atol=1e-15)
    np.testing.assert_allclose(gap.draw_sd, np.std(per_draw, axis=0, ddof=1), atol=1e-12)
    assert (gap.subsampled == "test").all() and (gap.n_draws == 3).all()
    assert (gap.n_train == 60).all() and (gap.n_test == 60).all() and (gap.n_test_split == 150).all()
    assert (gap.gap_ci_low <= gap.gap).all() and (gap.gap <= gap.gap_ci_high).all()
    with pytest.raises(ValueError, match="one size"):
        seen_unseen_gap(seen, equal_size_draws(u_img, u_rep, u_ids, 50), (10,), (1,))


def test_perfect_memorisation_gives_recall_one_and_a_resolved_gap():
    rng = np.random.default_rng(3)
    z = rng.normal(size=(80, 8))
    seen = equal_size_draws(z, z.copy(), _ids(80, "s"), 80)  # the model maps each seen image onto its report
    u_img, u_rep = rng.normal(size=(200, 8)), rng.normal(size=(200, 8))  # and knows nothing of unseen pairs
    unseen = equal_size_draws(u_img, u_rep, _ids(200, "u"), 80, n_draws=5)
    gap = seen_unseen_gap(seen, unseen, (10, None), (1,), n_boot=200)
    assert (gap.recall_train == 1.0).all()
    assert gap.recall_test.tolist() == pytest.approx([0.1, 1 / 80], abs=0.06)  # about chance
    assert (gap.gap_ci_low > 0.5).all()


def test_same_distribution_gap_covers_zero_where_the_unequal_comparison_is_biased():
    """Seen and unseen pairs from one model and one population, the unseen split 5x larger: the old
    "full database" comparison (8,086 against 10,861 on default) credits the smaller split with a gap
    that is only its smaller pool; at equal N and equal database size the interval covers zero."""
    s_img, s_rep = _pairs(300, 0.6, seed=4)
    u_img, u_rep = _pairs(1500, 0.6, seed=5)
    s_ids, u_ids = _ids(300, "s"), _ids(1500, "u")
    naive = (
        relink_audit(s_img, s_rep, (None,), (1,)).recall.iloc[0]
        - relink_audit(u_img, u_rep, (None,), (1,)).recall.iloc[0]
    )
    seen = equal_size_draws(s_img, s_rep, s_ids, 300)
    unseen = equal_size_draws(u_img, u_rep, u_ids, 300, n_draws=8, seed=1)
    gap = seen_unseen_gap(seen, unseen, (10, 100, None), (1,), n_boot=400, seed=2)
    assert (gap.gap_ci_low < 0).all() and (gap.gap_ci_high > 0).all()
    full = gap[gap.full_database].iloc[0]
    assert naive > full.gap_ci_high  # the unequal comparison sits outside the fair interval


def test_two_samples_of_one_model_without_subsampling():
    a = equal_size_draws(*_pairs(120, 1.0, seed=2), np.arange(120), 120)
    b = equal_size_draws(*_pairs(120, 1.0, seed=3), np.arange(120), 120)
    gap = seen_unseen_gap(a, b, (10,), (1,), n_boot=300)
    assert gap.gap_ci_low.iloc[0] < 0 < gap.gap_ci_high.iloc[0]
    assert gap.subsampled.iloc[0] == "" and gap.n_draws.iloc[0] == 1 and gap.draw_sd.iloc[0] == 0.0
    assert seen_unseen_gap(a, b, (500,), (1,)).empty  # nothing fits the common size
    no_boot = seen_unseen_gap(a, b, (10,), (1,), n_boot=0)
    assert np.isnan(no_boot.gap_ci_low.iloc[0]) and no_boot.gap.iloc[0] == pytest.approx(gap.gap.iloc[0])


def test_bootstrap_pools_the_draws_by_patient():
    """A patient drawn in several subsamples is one cluster: its queries of every draw are resampled together,
    so duplicating the draws (the same subsample twice) leaves the interval unchanged."""
    img, rep = _pairs(100, 0.8, seed=6)
    ids = _ids(100, "u", per=4)
    one = equal_size_draws(img, rep, ids, 50, n_draws=1, seed=3)
    twice = SplitDraws(rows=one.rows * 2, counts=one.counts * 2, patients=one.patients * 2, n_split=one.n_split)
    seen = equal_size_draws(*_pairs(50, 0.8, seed=7), _ids(50, "s"), 50)
    g1 = seen_unseen_gap(seen, one, (10,), (1,), n_boot=300, seed=0)
    g2 = seen_unseen_gap(seen, twice, (10,), (1,), n_boot=300, seed=0)
    pd.testing.assert_series_equal(g1.gap_ci_low, g2.gap_ci_low, atol=1e-12)
    pd.testing.assert_series_equal(g1.gap_ci_high, g2.gap_ci_high, atol=1e-12)
    assert g2.draw_sd.iloc[0] == 0.0
    with pytest.raises(ValueError, match="same number of pairs"):
        SplitDraws(rows=(np.arange(3),), counts=one.counts, patients=one.patients, n_split=100)


def _stage_pairs(m, prefix, seed):
    from relink_lib.labels import CHEXPERT_LABELS

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(np.zeros((m, 14)), columns=CHEXPERT_LABELS)
    frame[CHEXPERT_LABELS[0]] = rng.integers(0, 2, m)
    frame.insert(0, "patient_id", _ids(m, prefix))
    return frame


def test_audit_rung_compares_unequal_splits_at_their_common_size():
    """The default profile's case: more held-out than training pairs. The training split is audited whole,
    the held-out split is cut to its size for the gap, and the gap's full row is at the training size."""
    from relink_lib.audit.stage import audit_rung
    from relink_lib.config import AuditConfig

    settings = AuditConfig(pool_sizes=(10, 100, None), ks=(1,), n_boot=50, chunk_size=64, device="cpu")
    img, rep = _pairs(140, 0.8, seed=8)
    t_img, t_rep = _pairs(60, 0.3, seed=9)  # trained-on pairs: re-linked more
    ra = audit_rung(img, rep, _stage_pairs(140, "u", 0), settings, train=(t_img, t_rep, _stage_pairs(60, "s", 1)))
    train = ra.train_table[ra.train_table.pool == "random"]
    assert (train.n_queries == 60).all() and train.pool_size.max() == 60  # the whole training split
    assert ra.gap.pool_size.tolist() == [10, 60] and ra.gap.full_database.tolist() == [False, True]
    assert (ra.gap.subsampled == "test").all() and (ra.gap.n_test_split == 140).all() and (ra.gap.n_test == 60).all()
    np.testing.assert_allclose(ra.gap.recall_train, train.set_index("pool_size").loc[[10, 60], "recall"], atol=1e-12)
    test_full = ra.table[(ra.table.pool == "random") & ra.table.full_database].recall.iloc[0]
    assert ra.gap.recall_test.iloc[1] != pytest.approx(test_full)  # not the 140-pair database's full row
    assert (ra.gap.gap_ci_low > 0).all()
    # the larger training split: it is the one cut, and the training table audits a sample of the held-out size
    ra2 = audit_rung(t_img, t_rep, _stage_pairs(60, "u", 2), settings, train=(img, rep, _stage_pairs(140, "s", 3)))
    assert (ra2.gap.subsampled == "train").all() and (ra2.train_table.n_queries == 60).all()


def test_gap_sentences_report_each_size_and_say_cannot_tell():
    from relink_lib.audit.summary import _gap_n_label, gap_findings

    rows = []
    for n, full, gap, lo, hi in (
        (100, False, 0.05, 0.01, 0.09),
        (1000, False, 0.01, -0.02, 0.04),
        (8086, True, 0.0, -0.01, 0.01),
    ):
        rows.append(
            dict(
                pool_size=n,
                full_database=full,
                k=1,
                recall_train=0.2 + gap,
                recall_test=0.2,
                gap=gap,
                gap_ci_low=lo,
                gap_ci_high=hi,
                ratio=1.0,
                n_train=8086,
                n_test=8086,
                n_train_split=8086,
                n_test_split=10861,
                subsampled="test",
                n_draws=10,
                draw_sd=0.001,
                model="m",
                rung=2,
            )
        )
    g = pd.DataFrame(rows)
    assert _gap_n_label(g).tolist() == ["100", "1,000", "largest common (8,086)"]
    assert _gap_n_label(g.assign(subsampled=""))[2] == "full (8,086)"
    (text,) = gap_findings({"gap": g})
    assert "the held-out split (10,861 pairs) cut by patient to the training split's 8,086, 10 draws" in text
    assert "at N = 100, 0.25 vs 0.2, a gap of +0.05 (95% CI +0.01 to +0.09), higher on the trained-on pairs" in text
    assert (
        "at N = 1,000, 0.21 vs 0.2, a gap of +0.01 (95% CI -0.02 to +0.04), the interval includes zero: cannot tell"
        in text
    )
    assert "at the largest common N, 8,086" in text and "both the encoders and the projection heads" in text
