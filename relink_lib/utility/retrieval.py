"""Label-level retrieval precision@K: does an image retrieve reports with the same findings?

For each image query the K most similar reports (cosine) are retrieved from the other pairs'
reports (``exclude_self=True``: the query's own report is removed, so this measures label
semantics and not re-linkage). A retrieved report is relevant when its positive-label set
equals the query's (``relevance="exact"``; labels 1 = positive, 0 / -1 / NaN = not positive)
or when the two share at least one positive label (``relevance="any"``). Ties in similarity
are broken by row order. ``chance`` is the expected precision of K reports drawn at random.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

RELEVANCE = ("exact", "any")


def _set_codes(pos: np.ndarray) -> np.ndarray:
    """One integer per row naming its positive-label set (rows with equal codes have equal sets)."""
    _, codes = np.unique(pos, axis=0, return_inverse=True)
    return codes.reshape(-1)


def _relevance_matrix(pos: np.ndarray, rows: np.ndarray, relevance: str, codes: np.ndarray | None = None) -> np.ndarray:
    """(len(rows), n) boolean relevance of every report for the queries ``rows`` (``codes``: :func:`_set_codes`)."""
    if relevance == "exact":
        c = _set_codes(pos) if codes is None else codes
        return c[rows][:, None] == c[None, :]
    return (pos[rows].astype(np.int32) @ pos.T.astype(np.int32)) > 0


def _top_k_relevant(sims: np.ndarray, rel: np.ndarray, k: int) -> np.ndarray:
    """Per row, how many of the ``k`` highest ``sims`` are relevant, ties broken by column order (lower first).

    The same as a stable descending sort and its first ``k`` columns, without sorting: everything strictly above
    the row's k-th largest score is in; the remaining places go to the tied scores in column order."""
    kth = -np.partition(-sims, k - 1, axis=1)[:, k - 1 : k]  # (rows, 1) the k-th largest score
    above = sims > kth
    tied = sims == kth
    slots = k - above.sum(1, keepdims=True)
    tied_in = tied & (np.cumsum(tied, axis=1) <= slots)
    return (rel & (above | tied_in)).sum(1)


def label_retrieval_precision(
    image_emb: ArrayLike,
    report_emb: ArrayLike,
    label_matrix: ArrayLike,
    *,
    k: int = 10,
    relevance: str = "exact",
    exclude_self: bool = True,
    chunk_size: int = 256,
) -> pd.DataFrame:
    """Mean label-level precision@``k`` of image -> report retrieval.

    ``image_emb`` / ``report_emb`` (n, d), row i pairs with row i (L2-normalised here);
    ``label_matrix`` (n, L) with 1 / 0 / -1 / NaN. Returns a one-row DataFrame with
    ``k, relevance, precision, chance, n_queries``.
    """
    if relevance not in RELEVANCE:
        raise ValueError(f"relevance: expected one of {RELEVANCE}, got {relevance!r}")
    img, rep = np.asarray(image_emb, dtype=np.float32), np.asarray(report_emb, dtype=np.float32)
    if img.ndim != 2 or img.shape != rep.shape:
        raise ValueError(
            f"image_emb/report_emb: expected two (n, d) arrays of the same shape, got {img.shape} and {rep.shape}"
        )
    y = np.asarray(label_matrix, dtype=np.float64)
    if y.ndim != 2 or len(y) != len(img):
        raise ValueError(f"label_matrix: expected {len(img)} rows (one per pair), got shape {y.shape}")
    n = len(img)
    n_cand = n - 1 if exclude_self else n
    if int(k) != k or not 1 <= k <= n_cand:
        raise ValueError(f"k: expected an integer in [1, {n_cand}], got {k}")
    img = img / np.maximum(np.linalg.norm(img, axis=1, keepdims=True), 1e-12)
    rep = rep / np.maximum(np.linalg.norm(rep, axis=1, keepdims=True), 1e-12)
    pos = y == 1
    codes = _set_codes(pos) if relevance == "exact" else None
    precision = np.empty(n)
    chance = np.empty(n)
    for s in range(0, n, chunk_size):
        rows = np.arange(s, min(n, s + chunk_size))
        sims = img[rows] @ rep.T
        rel_c = _relevance_matrix(pos, rows, relevance, codes)
        if exclude_self:
            sims[np.arange(len(rows)), rows] = -np.inf
            rel_c[np.arange(len(rows)), rows] = False
        precision[rows] = _top_k_relevant(sims, rel_c, int(k)) / k
        chance[rows] = rel_c.sum(1) / n_cand
    return pd.DataFrame(
        [
            {
                "k": int(k),
                "relevance": relevance,
                "precision": float(precision.mean()),
                "chance": float(chance.mean()),
                "n_queries": n,
            }
        ]
    )
