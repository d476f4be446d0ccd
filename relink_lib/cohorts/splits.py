"""Patient-level splits: no patient in two splits, asserted on every load."""

from __future__ import annotations

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


def patient_split(
    patient_ids: Sequence | np.ndarray | pd.Series,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    names: Sequence[str] = SPLITS,
) -> np.ndarray:
    """Assign each row a split by patient, so that all rows of a patient share one split.

    Patients (unique ids) are shuffled with ``seed`` and cut at the cumulative ``fractions``
    (which must be non-negative and sum to 1). Returns an object array of split names, one per row.
    """
    fracs = np.asarray(fractions, dtype=float)
    if fracs.ndim != 1 or len(fracs) != len(names) or np.any(fracs < 0) or not np.isclose(fracs.sum(), 1.0):
        raise ValueError(
            f"fractions={fracs.tolist()}: expected {len(names)} non-negative numbers summing to 1 (for {list(names)})"
        )
    ids = pd.Series(np.asarray(patient_ids).astype(str))
    unique = np.sort(ids.unique())
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(unique))
    cuts = np.round(np.cumsum(fracs)[:-1] * len(unique)).astype(int)
    which = np.empty(len(unique), dtype=np.int64)
    which[order] = np.searchsorted(cuts, np.arange(len(unique)), side="right")
    lookup = dict(zip(unique, which))
    codes = ids.map(lookup).to_numpy()
    return np.asarray(names, dtype=object)[codes]


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
