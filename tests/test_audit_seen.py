"""Seen vs unseen: the patient-level training sample and the gap with its bootstrap interval."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relink_lib.audit import rank_counts, relink_audit
from relink_lib.audit.seen import GAP_COLUMNS, sample_patients, seen_unseen_gap


def _pairs(m, noise, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(m, 6))
    return z + noise * rng.normal(size=(m, 6)), z + noise * rng.normal(size=(m, 6))


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


def test_gap_is_train_minus_test_with_a_bracketing_interval():
    seen = rank_counts(*_pairs(80, 0.3, seed=0))  # memorised: images close to their own reports
    unseen = rank_counts(*_pairs(80, 1.5, seed=1))
    ids = np.arange(80) // 2
    gap = seen_unseen_gap(seen, unseen, (10, 50, None, 1000), (1, 5), train_patients=ids, test_patients=ids, n_boot=200)
    assert list(gap.columns) == list(GAP_COLUMNS)
    assert sorted(set(gap.pool_size)) == [10, 50, 80]  # 1000 exceeds both databases: skipped
    tr = relink_audit(*_pairs(80, 0.3, seed=0), pool_sizes=(10, 50, None), ks=(1, 5))
    te = relink_audit(*_pairs(80, 1.5, seed=1), pool_sizes=(10, 50, None), ks=(1, 5))
    np.testing.assert_allclose(gap.recall_train, tr.recall, atol=1e-12)
    np.testing.assert_allclose(gap.recall_test, te.recall, atol=1e-12)
    np.testing.assert_allclose(gap.gap, tr.recall - te.recall, atol=1e-12)
    assert (gap.gap_ci_low <= gap.gap).all() and (gap.gap <= gap.gap_ci_high).all()
    assert (gap.gap_ci_low[gap.k == 1] > 0).all()  # a clear memorisation gap is resolved by the interval
    assert gap.full_database.tolist() == [False, False, False, False, True, True]


def test_no_gap_between_two_samples_of_one_model():
    a = rank_counts(*_pairs(120, 1.0, seed=2))
    b = rank_counts(*_pairs(120, 1.0, seed=3))
    gap = seen_unseen_gap(a, b, (10,), (1,), n_boot=300)
    assert gap.gap_ci_low.iloc[0] < 0 < gap.gap_ci_high.iloc[0]
