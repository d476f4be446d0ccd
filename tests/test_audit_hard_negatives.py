"""Label keys for pathology-matched pools: exact and positive-set matching, NaN and -1 options."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relink_lib.audit.hard_negatives import describe_match, label_groups
from relink_lib.labels import CHEXPERT_LABELS


def _same(groups: np.ndarray) -> set[tuple[int, int]]:
    return {(i, j) for i in range(len(groups)) for j in range(i + 1, len(groups)) if groups[i] == groups[j]}


ROWS = np.array(
    [
        [1, 0, np.nan],  # 0
        [1, 0, 0],  # 1  == 0 when NaN -> 0
        [1, -1, 0],  # 2  uncertain
        [1, 1, 0],  # 3
        [1, np.nan, -1],  # 4
        [1, 0, np.nan],  # 5  == 0 always
    ]
)


def test_exact_defaults_nan_is_negative_uncertain_distinct():
    assert _same(label_groups(ROWS)) == {(0, 1), (0, 5), (1, 5)}


def test_nan_kept_distinct():
    assert _same(label_groups(ROWS, nan_as=None)) == {(0, 5)}


def test_uncertain_as_negative_or_positive():
    assert _same(label_groups(ROWS, uncertain_as=0.0)) == {
        (0, 1),
        (0, 2),
        (0, 4),
        (0, 5),
        (1, 2),
        (1, 4),
        (1, 5),
        (2, 4),
        (2, 5),
        (4, 5),
    }
    assert _same(label_groups(ROWS, uncertain_as=1.0)) == {(0, 1), (0, 5), (1, 5), (2, 3)}


def test_positive_set_is_looser_than_exact():
    loose = label_groups(ROWS, match="positive")
    assert _same(loose) == {(0, 1), (0, 2), (0, 4), (0, 5), (1, 2), (1, 4), (1, 5), (2, 4), (2, 5), (4, 5)}
    assert _same(label_groups(ROWS)) <= _same(loose)


def test_dataframe_uses_the_chexpert_columns_in_order():
    rng = np.random.default_rng(0)
    mat = rng.choice([1.0, 0.0, -1.0, np.nan], size=(30, 14))
    frame = pd.DataFrame(mat, columns=CHEXPERT_LABELS)
    frame.insert(0, "patient_id", np.arange(30))  # extra columns are ignored
    shuffled = frame[list(reversed(frame.columns))]
    np.testing.assert_array_equal(label_groups(shuffled), label_groups(mat))


def test_one_d_keys_are_groups():
    np.testing.assert_array_equal(label_groups(np.array(["a", "b", "a"])), [0, 1, 0])


def test_describe_match():
    assert describe_match() == "same 14-label vector (NaN->0, -1 distinct)"
    assert describe_match("positive", None, 0.0) == "same positive-label set (NaN distinct, -1->0)"


def test_validation():
    with pytest.raises(ValueError, match="row 1, column 2 is 2.0"):
        label_groups(np.array([[1, 0, 0], [0, 1, 2]]))
    with pytest.raises(ValueError, match="match"):
        label_groups(ROWS, match="fuzzy")
    with pytest.raises(ValueError, match="nan_as"):
        label_groups(ROWS, nan_as=0.5)
    with pytest.raises(ValueError, match="uncertain_as"):
        label_groups(ROWS, uncertain_as=None)
    with pytest.raises(ValueError, match="expected 7 rows"):
        label_groups(ROWS, n_rows=7)
    with pytest.raises(ValueError, match="missing"):
        label_groups(pd.DataFrame(np.zeros((2, 2)), columns=list(CHEXPERT_LABELS[:2])))
