"""Seen against unseen pairs: the memorisation gap at equal N and equal population.

The held-out (``test``) audit measures how well a model's image-report correspondence
generalises. The pairs a model was trained on (the ``train`` split; for the embedded ladder,
seen in training by both the encoders and the projection heads) are what differential privacy
protects, so the audit also asks how much more the model re-links them.

A fair comparison needs the same N *and* the same population behind it: Recall@K at pool size N
depends on the database the N - 1 distractors come from, and a "full database" row of a split of
8,086 pairs is not comparable with one of 10,861. So the larger split is cut to the smaller one's
size ``m`` by patient (:func:`sample_patients`: whole patients, so every query keeps its own
patient's other studies among its distractors, as in the smaller split), repeatedly
(:func:`equal_size_draws`, ``n_draws`` seeds), and each draw is audited as a database of its own
with the exact expected recall (random pools and random tie-breaking, :func:`.engine.per_query_recall`;
no Monte Carlo inside a draw). The smaller split is audited whole. :func:`seen_unseen_gap` then
reports ``seen - unseen`` at every requested N up to ``m`` and at ``m`` itself (the largest
common N), with a patient-bootstrap interval: each replicate resamples the patients of both
splits (a resampled patient brings its queries of every draw: the draws are pooled) and the gap
of the replicate means is the replicate of the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .bootstrap import patient_bootstrap, percentile_interval
from .engine import RankCounts, per_query_recall, rank_counts
from .expected import _check_ks

__all__ = ["N_DRAWS", "SplitDraws", "sample_patients", "equal_size_draws", "seen_unseen_gap", "GAP_COLUMNS"]

N_DRAWS = 10
"""Patient-level subsamples of the larger split (each one similarity pass over ``m`` pairs)."""

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
    "n_train_split",
    "n_test_split",
    "subsampled",
    "n_draws",
    "draw_sd",
)
"""Columns of :func:`seen_unseen_gap`. ``train`` = seen, ``test`` = unseen. ``full_database``: the row at
the largest common N (every pair of each audited database in the pool); ``n_train``, ``n_test``: queries
per draw (both ``m``); ``n_*_split``: the split's size before subsampling; ``subsampled``: which split was
cut to ``m`` (``"train"``, ``"test"`` or ``""``); ``n_draws``: its draws; ``draw_sd``: the standard
deviation of the gap over the draws (the spread one draw alone would have; the reported gap averages
them); ``ratio = recall_train / recall_test``."""


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


@dataclass(frozen=True)
class SplitDraws:
    """One split audited at a common database size: per draw, the positions of its pairs in the split
    (``rows``), their similarity-pass counts (``counts``, a database of its own) and patient ids
    (``patients``); ``n_split``: the split's size. Without subsampling there is one draw, the whole split."""

    rows: tuple[np.ndarray, ...]
    counts: tuple[RankCounts, ...]
    patients: tuple[np.ndarray, ...]
    n_split: int

    def __post_init__(self) -> None:
        if not self.counts or not (len(self.rows) == len(self.counts) == len(self.patients)):
            raise ValueError("SplitDraws: expected one or more draws, each with rows, counts and patients")
        sizes = {rc.n_database for rc in self.counts} | {len(r) for r in self.rows} | {len(p) for p in self.patients}
        if len(sizes) != 1:
            raise ValueError(f"SplitDraws: every draw must hold the same number of pairs, got sizes {sorted(sizes)}")

    @property
    def size(self) -> int:
        """Pairs per draw (the common database size ``m``)."""
        return self.counts[0].n_database

    @property
    def n_draws(self) -> int:
        return len(self.counts)

    @property
    def subsampled(self) -> bool:
        """Whether the split was cut (``size < n_split``)."""
        return self.size < self.n_split


def equal_size_draws(
    image_emb: Any,
    report_emb: Any,
    patient_ids: Any,
    size: int,
    *,
    n_draws: int = N_DRAWS,
    seed: int = 0,
    whole: RankCounts | None = None,
    chunk_size: int = 4096,
    device: Any = "cpu",
) -> SplitDraws:
    """The split at database size ``size``: ``n_draws`` patient-level subsamples (:func:`sample_patients`,
    seeds ``seed, seed + 1, ...``), each run through its own similarity pass (random pools), or the
    whole split once when it has at most ``size`` pairs (``whole``: its counts if already computed)."""
    ids = np.asarray(patient_ids).astype(str)
    m = int(ids.shape[0])
    if len(image_emb) != m or len(report_emb) != m:
        raise ValueError(f"patient_ids: expected one id per pair ({len(image_emb)} pairs), got {m}")
    if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
        raise ValueError(f"n_draws={n_draws!r}: expected a positive integer")
    if size >= m:
        if whole is not None and whole.n_database != m:
            raise ValueError(f"whole: expected the counts of all {m} pairs, got {whole.n_database}")
        rc = whole if whole is not None else rank_counts(image_emb, report_emb, chunk_size=chunk_size, device=device)
        return SplitDraws(rows=(np.arange(m),), counts=(rc,), patients=(ids,), n_split=m)
    rows, counts, patients = [], [], []
    for r in range(int(n_draws)):
        pick = sample_patients(ids, int(size), seed=seed + r)
        rows.append(pick)
        counts.append(rank_counts(image_emb[pick], report_emb[pick], chunk_size=chunk_size, device=device))
        patients.append(ids[pick])
    return SplitDraws(rows=tuple(rows), counts=tuple(counts), patients=tuple(patients), n_split=m)


def _pooled(draws: SplitDraws, sizes: list[int | None], ks: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-query recall of every draw, stacked: ``(values (n_draws * m, S), patients, draw index)``."""
    vals = [
        np.stack([per_query_recall(rc, n, k) for n in sizes for k in ks], axis=1) for rc in draws.counts
    ]  # (m, S) per draw
    which = np.concatenate([np.full(v.shape[0], d) for d, v in enumerate(vals)])
    return np.concatenate(vals), np.concatenate(draws.patients), which


def seen_unseen_gap(
    seen: SplitDraws,
    unseen: SplitDraws,
    pool_sizes: Sequence[int | None],
    ks: Sequence[int],
    *,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """``recall(seen) - recall(unseen)`` at equal N and equal database size, per pool size and K.

    Both sides hold ``m`` pairs per draw (:func:`equal_size_draws` at the smaller split's size). Pool
    sizes larger than ``m`` are skipped; ``None`` (and a size equal to ``m``) is the largest common N,
    ``m``, the row flagged ``full_database``. Recall is the exact expectation over random pools and
    random tie-breaking, averaged over each side's draws (every draw has ``m`` queries, so this is the
    mean over the pooled queries). With ``n_boot`` the interval is the percentile interval of the gap
    over patient-bootstrap replicates of both sides (pooled draws; the splits share no patient, so
    their patients are resampled independently and each replicate pairs one resample of each side).
    Returns :data:`GAP_COLUMNS`.
    """
    ks = _check_ks(ks)
    m = seen.size
    if unseen.size != m:
        raise ValueError(
            f"seen, unseen: expected databases of one size (the smaller split's), got {m} and {unseen.size}"
        )
    sizes: list[int | None] = []
    for n in pool_sizes:
        if n is None or int(n) >= m:
            if n is None or int(n) == m:
                sizes.append(None)
            continue
        sizes.append(int(n))
    sizes = sorted(set(sizes), key=lambda n: m if n is None else n)
    if not sizes:
        return pd.DataFrame(columns=list(GAP_COLUMNS))
    sides = {}
    for name, draws, s in (("train", seen, seed), ("test", unseen, seed + 1)):
        vals, pid, which = _pooled(draws, sizes, ks)
        per_draw = np.stack([vals[which == d].mean(axis=0) for d in range(draws.n_draws)])  # (n_draws, S)
        reps = patient_bootstrap({"r": vals}, pid, n_boot=n_boot, seed=s)["r"] if n_boot else None
        sides[name] = (vals.mean(axis=0), per_draw, reps)
    tr, te = sides["train"][0], sides["test"][0]
    # the gap's spread over draws: only the subsampled side varies (the other has one draw)
    spread = np.zeros_like(tr)
    for name in ("train", "test"):
        per_draw = sides[name][1]
        if per_draw.shape[0] > 1:
            spread = np.sqrt(spread**2 + per_draw.var(axis=0, ddof=1))
    lo = np.full_like(tr, np.nan)
    hi = np.full_like(tr, np.nan)
    if n_boot:
        reps_train, reps_test = sides["train"][2], sides["test"][2]
        assert reps_train is not None and reps_test is not None  # drawn when n_boot > 0
        lo, hi = percentile_interval(reps_train - reps_test, level)
    sub = "train" if seen.subsampled else ("test" if unseen.subsampled else "")
    n_draws = seen.n_draws if seen.subsampled else unseen.n_draws
    rows = []
    j = 0
    for n in sizes:
        for k in ks:
            rows.append(
                {
                    "pool_size": m if n is None else n,
                    "full_database": n is None,
                    "k": k,
                    "recall_train": float(tr[j]),
                    "recall_test": float(te[j]),
                    "gap": float(tr[j] - te[j]),
                    "gap_ci_low": float(lo[j]),
                    "gap_ci_high": float(hi[j]),
                    "ratio": float(tr[j] / te[j]) if te[j] > 0 else float("nan"),
                    "n_train": m,
                    "n_test": m,
                    "n_train_split": seen.n_split,
                    "n_test_split": unseen.n_split,
                    "subsampled": sub,
                    "n_draws": int(n_draws),
                    "draw_sd": float(spread[j]),
                }
            )
            j += 1
    return pd.DataFrame(rows, columns=list(GAP_COLUMNS))
