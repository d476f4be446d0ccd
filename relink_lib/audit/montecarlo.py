"""Monte Carlo pool sampler: an independent check of the exact expectations.

It does what the threat model describes, literally: for each query, draw ``n_pools`` pools of
``N - 1`` distractors uniformly without replacement (from all other reports, or from the
query's label group), rank the true report inside each pool by cosine similarity computed in
float64 numpy (ties broken uniformly at random, or against the query with ``ties="against"``),
and average. It shares no code with the torch kernel
or the hypergeometric formulas, so agreement within its standard error is a real test.
It is slow by design (``O(queries * n_pools * N)``) and meant for tests and benchmarks.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

__all__ = ["monte_carlo_recall"]


def _normalise(x: Any, name: str) -> np.ndarray:
    arr = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    if arr.ndim != 2 or arr.dtype.kind != "f":
        raise ValueError(f"{name}: expected a 2-D float array, got shape {arr.shape} dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    return arr / np.linalg.norm(arr, axis=1, keepdims=True)


def monte_carlo_recall(
    image_emb: Any,
    report_emb: Any,
    pool_sizes: Sequence[int | None],
    ks: Sequence[int] = (1, 5, 10),
    *,
    n_pools: int = 100,
    seed: int = 0,
    groups: np.ndarray | None = None,
    queries: np.ndarray | None = None,
    ties: str = "random",
) -> pd.DataFrame:
    """Monte Carlo estimate of Recall@K and MRR with standard errors.

    ``groups`` (``(M,)`` ids) restricts distractors to the query's group (hard negatives; a
    query with fewer than ``N - 1`` matches takes its whole group, one without any is
    skipped). ``queries`` (indices) audits a subset. Returns columns ``pool_size, k, recall,
    recall_se, mrr, mrr_se, n_queries, n_pools``; the standard errors are over the pool draws
    with the queries held fixed (what the exact expectation removes).
    """
    if ties not in ("random", "against"):
        raise ValueError(f"ties={ties!r}: expected 'random' (uniform tie-breaking) or 'against' (ties above the truth)")
    if isinstance(n_pools, bool) or not isinstance(n_pools, (int, np.integer)) or n_pools < 2:
        raise ValueError(f"n_pools={n_pools!r}: expected an integer >= 2 (pools per query, for a standard error)")
    img = _normalise(image_emb, "image_emb")
    rep = _normalise(report_emb, "report_emb")
    m = img.shape[0]
    rng = np.random.default_rng(seed)
    qs = np.arange(m) if queries is None else np.asarray(queries, dtype=np.int64)
    ks = [int(k) for k in ks]
    rows = []
    for n_req in pool_sizes:
        hits = []  # per query: (n_pools, len(ks)) indicators and (n_pools,) reciprocal ranks
        rrs = []
        for i in qs:
            cand = (
                np.flatnonzero(np.arange(m) != i)
                if groups is None
                else np.flatnonzero((groups == groups[i]) & (np.arange(m) != i))
            )
            if cand.size == 0:
                continue
            sims = rep[cand] @ img[i]
            own = float(rep[i] @ img[i])
            beats, same = sims > own, sims == own
            draws = cand.size if n_req is None else min(n_req - 1, cand.size)
            picks = [rng.choice(cand.size, size=draws, replace=False) for _ in range(n_pools)]
            above = np.array([beats[p].sum() for p in picks])
            tied = np.array([same[p].sum() for p in picks])
            # random tie-break: the truth's position among itself and its tied pool members is uniform
            rank = 1 + above + (rng.integers(0, tied + 1) if ties == "random" else tied)
            hits.append(rank[:, None] <= np.asarray(ks)[None, :])
            rrs.append(1.0 / rank)
        h = np.stack(hits).astype(np.float64)  # (Q, pools, K)
        r = np.stack(rrs)  # (Q, pools)
        q = h.shape[0]
        recall = h.mean(axis=(0, 1))
        recall_se = np.sqrt(h.var(axis=1, ddof=1).sum(axis=0) / n_pools) / q
        mrr = r.mean()
        mrr_se = np.sqrt(r.var(axis=1, ddof=1).sum() / n_pools) / q
        for j, k in enumerate(ks):
            rows.append(
                {
                    "pool_size": m if n_req is None else int(n_req),
                    "k": k,
                    "recall": recall[j],
                    "recall_se": recall_se[j],
                    "mrr": mrr,
                    "mrr_se": mrr_se,
                    "n_queries": q,
                    "n_pools": n_pools,
                }
            )
    return pd.DataFrame(rows)
