"""The adversary of the re-linkage audit, chance levels, and the reconstruction threat models.

Chance: an adversary who ranks a pool of N candidate reports (the true one and N-1 distractors)
at random puts the true report in the top K with probability min(K, N)/N.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .paper import PAPER, PAPER_CITATION


def chance_recall(k: int | np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """Recall@K of a random ranking of a pool of ``n`` candidates: ``min(k, n) / n``.

    Both arguments broadcast; ``k >= 1`` and ``n >= 1`` are required.
    """
    k_arr, n_arr = np.asarray(k, dtype=float), np.asarray(n, dtype=float)
    if np.any(k_arr < 1) or np.any(n_arr < 1):
        raise ValueError(f"chance_recall: expected k >= 1 and n >= 1, got k={k!r}, n={n!r}")
    return np.minimum(k_arr, n_arr) / n_arr


def lift_over_chance(recall: float | np.ndarray, k: int | np.ndarray, n: int | np.ndarray) -> np.ndarray:
    """How many times chance a Recall@K is: ``recall / chance_recall(k, n)`` ("x chance")."""
    return np.asarray(recall, dtype=float) / chance_recall(k, n)


def chance_table(ks: Sequence[int] = (1, 5, 10), pool_sizes: Sequence[int] = (10, 100, 1000, 10000)) -> pd.DataFrame:
    """Chance Recall@K for each K (rows) and pool size N (columns)."""
    return pd.DataFrame(
        {f"N = {n:,}": [float(chance_recall(k, n)) for k in ks] for n in pool_sizes},
        index=pd.Index([f"K = {k}" for k in ks], name="Recall@K"),
    )


# Capabilities of the three reconstruction threat models of Ziller et al. (2024), of the attacks this book runs
# against them (chapter 9's gradient-access reconstruction), and of this study's re-linkage adversaries: the
# passive one of chapters 4-6 and the adaptive one of chapter 11.
_CAPABILITIES = (
    "sees the trained weights",
    "sees every noisy update of training",
    "knows all training data but the target",
    "holds a candidate set that contains the target",
    "holds public image-report pairs",
    "wins by matching (not reconstructing)",
)

THREAT_MODELS = pd.DataFrame(
    [
        ["yes", "yes", "yes", "yes", "no", "yes"],
        ["yes", "yes", "yes", "no", "no", "no: must reconstruct"],
        ["yes", "no", "no", "no", "no", "no: a practical attack"],
        ["yes", "yes: the target's own update", "no", "no", "no", "no: must reconstruct"],
        ["yes", "no", "no", "yes: the report pool", "no", "yes: rank by cosine"],
        ["yes (and re-fits the heads)", "no", "no", "yes: the report pool", "yes: m of them", "yes: rank by cosine"],
    ],
    index=pd.Index(
        [
            "worst case",
            "relaxed",
            "realistic (Ziller et al.)",
            "gradient-access reconstruction (chapter 9)",
            "passive re-linker (chapters 4-6)",
            "adaptive re-linker (chapter 11)",
        ],
        name="adversary",
    ),
    columns=list(_CAPABILITIES),
)
"""Adversary capabilities (rows: threat models; columns: capabilities)."""


def threat_model_table() -> pd.DataFrame:
    """A copy of :data:`THREAT_MODELS` for display."""
    return THREAT_MODELS.copy()


def threat_model_payload(ks: Sequence[int] = (1, 5, 10), pool_sizes: Sequence[int] = (10, 100, 1000, 10000)) -> dict:
    """What chapter 1 records: chance Recall@K per K and N, the paper's quoted lifts, the threat-model table."""
    return {
        "chance": {f"K={k}": {str(n): float(chance_recall(k, n)) for n in pool_sizes} for k in ks},
        "paper_reference": {
            "source": f"{PAPER_CITATION} (the paper's figures)",
            **{f"r1_lift_n{n}": lift for n, lift in PAPER.r1_lift_by_pool.items()},
        },
        "threat_models": threat_model_table().reset_index().to_dict(orient="records"),
    }
