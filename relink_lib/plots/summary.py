"""The summary page's chart: Recall@1 lift per rung with CIs, and the paper's figures marked."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ..paper import PAPER
from .common import PAPER_COLOR, label_simulation, legend_outside, paper_label


def plot_lift_summary(points: pd.DataFrame, ax: Axes | None = None, simulation: bool = True) -> Axes:
    """Grouped bars of Recall@1 lift (``relink_lib.summary.lift_points``) with 95% CI whiskers.

    The paper's 15x (N = 100) and 50x (N = 10,000) are drawn as diamonds (:data:`PAPER_COLOR`) beside
    the most specialised rung's bars, labelled "paper: ..."; the legend sits under the axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(7.2, 4.0))
    if points.empty:
        raise ValueError("points: no Recall@1 lift to plot (has the audit run?)")
    rungs = sorted(points["rung"].unique())
    groups = list(dict.fromkeys(zip(points["n"], points["full_database"])))
    width = 0.8 / max(len(groups), 1)
    x = np.arange(len(rungs))
    for i, (n, full) in enumerate(groups):
        sel = points[(points["n"] == n) & (points["full_database"] == full)].set_index("rung").reindex(rungs)
        lift = sel["lift"].astype(float).to_numpy()
        lo = np.clip(lift - sel["lift_ci_low"].astype(float).to_numpy(), 0, None)
        hi = np.clip(sel["lift_ci_high"].astype(float).to_numpy() - lift, 0, None)
        name = f"full database (N = {n:,})" if full else f"N = {n:,}"
        ax.bar(
            x + i * width,
            lift,
            width,
            yerr=np.vstack([np.nan_to_num(lo), np.nan_to_num(hi)]),
            capsize=3,
            label=f"this run, {name} (95% CI)",
        )
        paper = PAPER.r1_lift_at(int(n)) if not full else None
        if paper is not None:
            ax.plot(
                x[-1] + i * width,
                paper,
                "D",
                color=PAPER_COLOR,
                mec="white",
                ms=7,
                zorder=5,
                label=paper_label(f"{paper:g}x at N = {n:,} (its strongest model, MIMIC-CXR)"),
            )
    ax.axhline(1.0, color="0.3", lw=1, ls="--", label="chance (lift 1)")
    labels = points.drop_duplicates("rung").set_index("rung").reindex(rungs)["model"]
    ax.set_xticks(x + width * (len(groups) - 1) / 2)
    ax.set_xticklabels([f"{r}: {m}" for r, m in zip(rungs, labels)])
    ax.set_xlabel("rung (rising clinical specialization)")
    ax.set_ylabel("Recall@1 / chance")
    ax.set_ylim(bottom=0)
    legend_outside(ax, "below", fontsize=8, ncol=2)
    if simulation:
        label_simulation(ax)
    return ax
