"""Patient-level splits: no patient in two splits, asserted on every load."""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import pandas as pd

SPLITS: tuple[str, ...] = ("train", "val", "test")
OFFICIAL_SPLIT_NAMES: dict[str, str] = {
    "train": "train",
    "validate": "val",
    "valid": "val",
    "val": "val",
    "test": "test",
}
"""Official split spellings (MIMIC-CXR ``validate``, CheXpert ``valid``) mapped to ours."""


SPLIT_BALANCE: tuple[str, ...] = ("patients", "pairs")
"""What :func:`patient_split`'s fractions count: patients, or pairs (rows) assigned patient by patient."""


def patient_split(
    patient_ids: Sequence | np.ndarray | pd.Series,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    names: Sequence[str] = SPLITS,
    balance: str = "patients",
    too_few: str = "raise",
) -> np.ndarray:
    """Assign each row a split by patient, so that all rows of a patient share one split.

    Patients (unique ids) are shuffled with ``seed`` and cut at the cumulative ``fractions``
    (which must be non-negative and sum to 1). Returns an object array of split names, one per row.

    ``balance="patients"``: the fractions are of the patients (each split gets about that share of the
    patients, whatever their sizes; a split can come out empty when there are very few patients).
    ``balance="pairs"``: the fractions are of the rows: a patient goes to the split that holds the middle
    of its rows in the shuffled order, so each split's row count is within the largest patient's size of
    its share, however long the tail of patient sizes is (one patient with 100 rows among 2,000 moves a
    split by at most 100 rows); and every split with a positive fraction gets at least one patient (the
    cut points move to the nearest patient boundary if needed). Fewer patients than splits with a
    positive fraction cannot give that: ``too_few="raise"`` makes it a ``ValueError`` naming both counts,
    ``too_few="warn"`` a ``UserWarning`` saying which splits stay empty (the patients go one each to the
    splits with the largest fractions) for callers that use every row whatever its split.
    """
    fracs = np.asarray(fractions, dtype=float)
    if fracs.ndim != 1 or len(fracs) != len(names) or np.any(fracs < 0) or not np.isclose(fracs.sum(), 1.0):
        raise ValueError(
            f"fractions={fracs.tolist()}: expected {len(names)} non-negative numbers summing to 1 (for {list(names)})"
        )
    if balance not in SPLIT_BALANCE:
        raise ValueError(f"balance={balance!r}: expected one of {list(SPLIT_BALANCE)}")
    if too_few not in ("raise", "warn"):
        raise ValueError(f"too_few={too_few!r}: expected 'raise' or 'warn'")
    ids = pd.Series(np.asarray(patient_ids).astype(str))
    unique = np.sort(ids.unique())
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(unique))
    which = np.empty(len(unique), dtype=np.int64)
    if balance == "patients":
        cuts = np.round(np.cumsum(fracs)[:-1] * len(unique)).astype(int)
        which[order] = np.searchsorted(cuts, np.arange(len(unique)), side="right")
    else:
        sizes = ids.value_counts().reindex(unique).to_numpy()[order]  # rows of each patient, in shuffled order
        which[order] = _split_by_rows(sizes, fracs, names, too_few)
    lookup = dict(zip(unique, which))
    codes = ids.map(lookup).to_numpy()
    return np.asarray(names, dtype=object)[codes]


def _split_by_rows(sizes: np.ndarray, fracs: np.ndarray, names: Sequence[str], too_few: str) -> np.ndarray:
    """Split index of each patient (in the given order) cut at the row fractions, by the middle of its rows;
    then every split with a positive fraction is made non-empty by the smallest moves of the cut points."""
    n_pat = len(sizes)
    if n_pat == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(sizes, dtype=np.float64)
    mids = ends - sizes / 2.0
    cuts = np.cumsum(fracs)[:-1] * ends[-1]
    raw = np.searchsorted(cuts, mids, side="right")  # non-decreasing along the order
    positive = np.flatnonzero(fracs > 0)
    m = len(positive)
    if n_pat < m:
        msg = (
            f"{n_pat} patient(s) cannot fill the {m} splits with a positive fraction "
            f"({', '.join(names[int(i)] for i in positive)}): every split needs at least one patient; "
            "generate more pairs or set a split's fraction to 0"
        )
        if too_few == "raise":
            raise ValueError(msg)
        kept = np.sort(positive[np.argsort(-fracs[positive], kind="stable")[:n_pat]])
        empty = [names[int(i)] for i in positive if i not in kept]
        warnings.warn(f"{msg}; split(s) {empty} left empty", UserWarning, stacklevel=3)
        return kept
    # a zero-fraction split is an empty interval, so raw lands in positive splits only; rank j = j-th positive split
    rank = np.searchsorted(positive, raw)
    # start of rank j (j = 1 .. m-1): number of patients before it; each rank needs at least one patient
    start = np.array([int(np.sum(rank < j)) for j in range(1, m)], dtype=np.int64)
    lo = np.arange(1, m)
    for j in range(len(start)):  # forward: strictly increasing, at least j + 1
        start[j] = max(start[j], lo[j], start[j - 1] + 1 if j else 1)
    for j in range(len(start) - 1, -1, -1):  # backward: room for the later ranks
        start[j] = min(start[j], n_pat - (m - 1 - j), start[j + 1] - 1 if j + 1 < len(start) else n_pat)
    fixed = np.searchsorted(start, np.arange(n_pat), side="right")
    return positive[fixed]


def assert_patient_disjoint(pairs: pd.DataFrame, where: str = "cohort") -> None:
    """Raise ``ValueError`` naming a patient whose rows fall in more than one split."""
    if len(pairs) == 0:
        return
    n_splits = pairs.groupby("patient_id", sort=False)["split"].nunique()
    leaking = n_splits[n_splits > 1]
    if len(leaking):
        pid = leaking.index[0]
        got = sorted(pairs.loc[pairs["patient_id"] == pid, "split"].unique())
        raise ValueError(
            f"{where}: patient_id={pid!r} appears in splits {got}; splits must be patient-level "
            f"({len(leaking)} patient(s) leak)"
        )


def validate_split_values(split: pd.Series, where: str = "cohort") -> None:
    """Raise ``ValueError`` naming the first row whose split is not one of train/val/test."""
    bad = ~split.isin(SPLITS)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(f"{where}: row {row} column 'split' is not one of {list(SPLITS)} (value not shown)")
