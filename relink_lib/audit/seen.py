"""Seen against unseen pairs: the audit of training pairs beside the held-out ones, and the gap.

The held-out (``test``) audit measures how well a model's correspondence generalises. The pairs a
model was trained on are what differential privacy protects, so the audit also runs on a
patient-level sample of the ``train`` split of the same size (:func:`sample_patients`), and
:func:`seen_unseen_gap` reports ``train - test`` per pool size and K with a patient-bootstrap
interval (the two splits hold disjoint patients, so their replicates are drawn independently
and the interval is that of the difference of the two replicate means).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .bootstrap import patient_bootstrap, percentile_interval
from .engine import RankCounts, per_query_recall
from .expected import _check_ks

__all__ = ["sample_patients", "seen_unseen_gap", "GAP_COLUMNS"]

GAP_COLUMNS: tuple[str, ...] = (
    "pool_size",
    "full_database",
    "k",
    "recall_train",
    "recall_test",
    "gap",
    "gap_ci_low",
    "gap_ci_high",
    "ratio",
    "n_train",
    "n_test",
)
"""Columns of :func:`seen_unseen_gap` (``ratio = recall_train / recall_test``)."""


def sample_patients(patient_ids: Any, n: int, *, seed: int = 0) -> np.ndarray:
    """Positions of a patient-level sample of exactly ``n`` rows, ``(n,)`` int64, sorted.

    Patients are taken whole in a random order (``seed``) until ``n`` rows are reached; only the
    last patient taken may be cut. ``n`` larger than the number of rows keeps every row.
    """
    ids = np.asarray(patient_ids)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"patient_ids: expected a non-empty 1-D array, got shape {ids.shape}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n={n!r}: expected a positive integer (rows to sample)")
    if n >= ids.size:
        return np.arange(ids.size)
    uniq, inverse = np.unique(ids.astype(str), return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(uniq))
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    rows = np.lexsort((np.arange(ids.size), rank[inverse.ravel()]))  # patients in random order, rows in order within
    return np.sort(rows[:n])


def seen_unseen_gap(
    train: RankCounts,
    test: RankCounts,
    pool_sizes: Sequence[int | None],
    ks: Sequence[int],
    *,
    train_patients: Any = None,
    test_patients: Any = None,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """``recall(train) - recall(test)`` per pool size (``None`` = each split's full database) and K.

    Recall is the fair one (random pools, random tie-breaking), from :func:`.engine.per_query_recall`.
    A pool size larger than either database is skipped. Returns :data:`GAP_COLUMNS`; the interval
    is the percentile interval of the difference of independent patient-bootstrap replicates.
    """
    ks = _check_ks(ks)
    rows = []
    for n in pool_sizes:
        if n is not None and n > min(train.n_database, test.n_database):
            continue
        per: dict[str, tuple[np.ndarray, np.ndarray | None, int]] = {}
        for name, rc, ids, s in (("train", train, train_patients, seed), ("test", test, test_patients, seed + 1)):
            vals = np.stack([per_query_recall(rc, n, k) for k in ks], axis=1)
            keep = ~np.isnan(vals[:, 0])
            pid = None if ids is None else np.asarray(ids)[keep]
            reps = patient_bootstrap({"r": vals[keep]}, pid, n_boot=n_boot, seed=s)["r"] if n_boot else None
            per[name] = (vals[keep].mean(axis=0), reps, int(keep.sum()))
        for j, k in enumerate(ks):
            tr, te = per["train"][0][j], per["test"][0][j]
            lo: float | np.ndarray = float("nan")
            hi: float | np.ndarray = float("nan")
            if n_boot:
                reps_train, reps_test = per["train"][1], per["test"][1]
                assert reps_train is not None and reps_test is not None  # replicates are drawn when n_boot > 0
                lo, hi = percentile_interval(reps_train[:, j] - reps_test[:, j], level)
            rows.append(
                {
                    "pool_size": train.n_database if n is None else int(n),
                    "full_database": n is None,
                    "k": k,
                    "recall_train": float(tr),
                    "recall_test": float(te),
                    "gap": float(tr - te),
                    "gap_ci_low": float(lo),
                    "gap_ci_high": float(hi),
                    "ratio": float(tr / te) if te > 0 else float("nan"),
                    "n_train": per["train"][2],
                    "n_test": per["test"][2],
                }
            )
    return pd.DataFrame(rows, columns=list(GAP_COLUMNS))
