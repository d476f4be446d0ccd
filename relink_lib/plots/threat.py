"""Chapter 1's figure: chance re-linkage against the pool size, with the paper's Recall@1 marked."""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from ..paper import PAPER
from ..threat_model import chance_recall
from .common import PAPER_COLOR, legend_outside, log_pool_axis, paper_label, readable_log_ticks

__all__ = ["plot_chance_vs_pool"]


def plot_chance_vs_pool(
    ks: Sequence[int] = (1, 5, 10),
    ax: Axes | None = None,
    *,
    pool_range: tuple[float, float] = (10, 1e4),
    paper: bool = True,
) -> Axes:
    """Chance Recall@K = min(K, N)/N against N (log-log), one line per K; with ``paper`` the paper's
    Recall@1 of its strongest model at N = 100 and N = 10,000 (its lift x chance) as labelled marks."""
    ax = plt.subplots()[1] if ax is None else ax
    pool = np.logspace(np.log10(pool_range[0]), np.log10(pool_range[1]), 200)
    for k, style in zip(ks, ("-", "--", ":", "-.")):
        ax.plot(pool, chance_recall(k, pool), style, color="0.3", label=f"chance, K = {k}")
    if paper:
        for n, lift in PAPER.r1_lift_by_pool.items():
            ax.plot(
                n,
                PAPER.r1_at(n),
                "D",
                color=PAPER_COLOR,
                label=paper_label("R@1 of its strongest model") if n == 100 else None,
            )
            ax.annotate(
                f"paper: {lift:g}x chance\n(R@1, N = {n:,})",
                (n, PAPER.r1_at(n)),
                textcoords="offset points",
                xytext=(8, 4),
                fontsize=8,
                color=PAPER_COLOR,
            )
    ax.set_yscale("log")
    log_pool_axis(ax, [int(n) for n in (10, 100, 1000, 10000) if pool_range[0] <= n <= pool_range[1]])
    ax.set_ylabel("Recall@K (log scale)")
    readable_log_ticks(ax)
    legend_outside(ax, "right", fontsize=9)
    return ax
