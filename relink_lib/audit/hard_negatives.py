"""Pathology-matched ("hard negative") pools: which reports count as the same label vector.

The 14 CheXpert labels take the values 1 (positive), 0 (negative), -1 (uncertain) or missing
(NaN, "not mentioned"). Two reports match when their label keys are equal, where the key is

- ``match="exact"``: the full 14-vector after mapping NaN to ``nan_as`` (default 0: a finding
  not mentioned counts as absent) and -1 to ``uncertain_as`` (default -1: uncertain stays a
  value of its own, distinct from positive and negative);
- ``match="positive"`` (the looser sensitivity analysis): only the set of labels equal to 1
  after that mapping, so uncertain and negative findings are ignored (with the defaults).

``nan_as=None`` keeps NaN as a value of its own (NaN matches NaN only).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..labels import CHEXPERT_LABELS

__all__ = ["label_groups", "describe_match", "MATCH_MODES"]

MATCH_MODES: tuple[str, ...] = ("exact", "positive")
_NAN_CODE = 9.0  # stands for "missing" in a key when nan_as is None


def _label_matrix(labels: Any) -> np.ndarray:
    if isinstance(labels, pd.DataFrame):
        cols = [c for c in CHEXPERT_LABELS if c in labels.columns]
        if cols and len(cols) != len(CHEXPERT_LABELS):
            missing = [c for c in CHEXPERT_LABELS if c not in labels.columns]
            raise ValueError(f"labels: DataFrame has some but not all CheXpert label columns; missing {missing}")
        frame = labels[cols] if cols else labels
        try:
            return frame.to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError("labels: DataFrame columns must be numeric (1, 0, -1 or NaN)") from exc
    if hasattr(labels, "detach"):  # torch tensor
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"labels: expected a 2-D (n, n_labels) matrix, got shape {arr.shape}")
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"labels: expected numeric values (1, 0, -1 or NaN), got dtype {arr.dtype}") from exc


def _check_value(name: str, value: float | None, allow_none: bool) -> float | None:
    if value is None and allow_none:
        return None
    if value is None or float(value) not in (1.0, 0.0, -1.0):
        allowed = "1, 0, -1" + (" or None" if allow_none else "")
        raise ValueError(f"{name}={value!r}: expected one of {allowed}")
    return float(value)


def label_groups(
    labels: Any,
    *,
    n_rows: int | None = None,
    match: str = "exact",
    nan_as: float | None = 0.0,
    uncertain_as: float = -1.0,
) -> np.ndarray:
    """Group id per row, ``(n,)`` int64: rows with equal label keys share an id.

    ``labels`` is an ``(n, 14)`` matrix or DataFrame of CheXpert labels (values 1, 0, -1,
    NaN), or a 1-D array of precomputed group keys (any values; equal keys = same group, and
    ``match``/``nan_as``/``uncertain_as`` are then ignored). ``n_rows``, when given, is the
    expected number of rows (the number of embeddings).
    """
    if match not in MATCH_MODES:
        raise ValueError(f"match={match!r}: expected one of {MATCH_MODES}")
    nan_value = _check_value("nan_as", nan_as, allow_none=True)
    unc_value = _check_value("uncertain_as", uncertain_as, allow_none=False)
    raw = labels.to_numpy() if isinstance(labels, pd.Series) else labels
    if not isinstance(raw, pd.DataFrame) and np.asarray(raw).ndim == 1:
        keys = np.asarray(raw)
        if n_rows is not None and keys.shape[0] != n_rows:
            raise ValueError(f"labels: expected {n_rows} group keys (one per embedding row), got {keys.shape[0]}")
        _, inverse = np.unique(keys, return_inverse=True)
        return inverse.astype(np.int64).ravel()
    mat = _label_matrix(raw)
    if n_rows is not None and mat.shape[0] != n_rows:
        raise ValueError(f"labels: expected {n_rows} rows (one per embedding row), got {mat.shape[0]}")
    finite = np.isfinite(mat)
    bad = finite & ~np.isin(mat, (1.0, 0.0, -1.0))
    if bad.any():
        row, col = (int(v[0]) for v in np.nonzero(bad))
        raise ValueError(f"labels: row {row}, column {col} is {float(mat[row, col])}; expected 1, 0, -1 or NaN")
    key = mat.copy()
    key[mat == -1.0] = unc_value
    key[~finite] = _NAN_CODE if nan_value is None else nan_value
    if match == "positive":
        key = (key == 1.0).astype(np.float64)
    _, inverse = np.unique(key, axis=0, return_inverse=True)
    return inverse.astype(np.int64).ravel()


def describe_match(match: str = "exact", nan_as: float | None = 0.0, uncertain_as: float = -1.0) -> str:
    """A short human-readable statement of the matching rule (for tables and figure captions)."""
    nan_txt = "NaN distinct" if nan_as is None else f"NaN->{nan_as:g}"
    unc_txt = "-1 distinct" if uncertain_as == -1.0 else f"-1->{uncertain_as:g}"
    what = "same 14-label vector" if match == "exact" else "same positive-label set"
    return f"{what} ({nan_txt}, {unc_txt})"
