"""Patient-level (cluster) bootstrap of per-query audit quantities.

Studies of one patient are not independent (same anatomy, same chronic findings), so the
resampling unit is the patient: a replicate draws ``P`` patients with replacement and keeps
all of their queries. The per-query expectations are computed once; a replicate is a
weighted mean of them, so ``n_boot`` replicates cost ``O(n_boot * P * S)`` and no
similarity is recomputed.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["patient_bootstrap", "percentile_interval"]


def _patient_index(patient_ids: Any, n: int) -> np.ndarray:
    if patient_ids is None:
        return np.arange(n)
    ids = np.asarray(patient_ids)
    if ids.ndim != 1 or ids.shape[0] != n:
        raise ValueError(f"patient_ids: expected a 1-D array of length {n} (one id per query), got shape {ids.shape}")
    if ids.dtype.kind == "f" and np.isnan(ids).any():
        raise ValueError(
            f"patient_ids: row {int(np.flatnonzero(np.isnan(ids))[0])} is NaN; every query needs a patient id"
        )
    if ids.dtype == object and any(v is None for v in ids):
        raise ValueError(
            f"patient_ids: row {[v is None for v in ids].index(True)} is None; every query needs a patient id"
        )
    _, inverse = np.unique(ids.astype(str) if ids.dtype == object else ids, return_inverse=True)
    return inverse.ravel()


def patient_bootstrap(
    per_query: Mapping[str, np.ndarray], patient_ids: Any = None, *, n_boot: int = 1000, seed: int = 0, batch: int = 128
) -> dict[str, np.ndarray]:
    """Bootstrap replicates of the mean of each per-query array.

    ``per_query`` maps a name to an ``(n,)`` or ``(n, S)`` array (one row per query; all the
    same ``n``). ``patient_ids`` (length ``n``) gives the cluster of each query; ``None``
    treats every query as its own patient. Returns, per name, an ``(n_boot, S)`` array of
    replicate means (``(n_boot,)`` for 1-D input). All names share the same resamples, so
    ratios of two replicate arrays (e.g. recall / chance) are valid replicates of the ratio.
    """
    if not per_query:
        raise ValueError("per_query: expected at least one array")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot={n_boot!r}: expected a positive integer")
    arrays = {name: np.asarray(v, dtype=np.float64) for name, v in per_query.items()}
    n = next(iter(arrays.values())).shape[0]
    for name, arr in arrays.items():
        if arr.ndim not in (1, 2) or arr.shape[0] != n:
            raise ValueError(f"per_query[{name!r}]: expected shape ({n},) or ({n}, S), got {arr.shape}")
    if n == 0:
        raise ValueError("per_query: no queries to resample")
    patient = _patient_index(patient_ids, n)
    n_pat = int(patient.max()) + 1
    sizes = np.bincount(patient, minlength=n_pat).astype(np.float64)
    sums = {}
    for name, arr in arrays.items():
        flat = arr.reshape(n, -1)
        total = np.zeros((n_pat, flat.shape[1]))
        np.add.at(total, patient, flat)
        sums[name] = total
    rng = np.random.default_rng(seed)
    out = {name: np.empty((n_boot, s.shape[1])) for name, s in sums.items()}
    probs = np.full(n_pat, 1.0 / n_pat)
    for start in range(0, n_boot, batch):
        stop = min(start + batch, n_boot)
        weights = rng.multinomial(n_pat, probs, size=stop - start).astype(np.float64)  # (b, P)
        denom = weights @ sizes
        for name, total in sums.items():
            out[name][start:stop] = (weights @ total) / denom[:, None]
    return {name: (rep[:, 0] if arrays[name].ndim == 1 else rep) for name, rep in out.items()}


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval ``(low, high)`` of bootstrap replicates along axis 0."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r}: expected a coverage in (0, 1), e.g. 0.95")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(np.asarray(replicates, dtype=np.float64), [alpha, 1.0 - alpha], axis=0)
    return low, high
