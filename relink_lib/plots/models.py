"""Figures of chapter 3: training curves of the ladder and zero-shot label AUROC per rung."""

from __future__ import annotations

from typing import Mapping, Sequence, cast

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .common import label_simulation, legend_outside, set_style

# A given ``ax`` lies on a Figure (``cast(Figure, ax.figure)``): a SubFigure has no tight_layout.


def plot_ladder_training(
    histories: Mapping[str, pd.DataFrame], ax: Axes | None = None, *, smooth: int = 5, simulation: bool = True
) -> Axes:
    """Training loss (moving average over ``smooth`` steps) and per-epoch validation loss per rung.

    histories: rung name -> history DataFrame (``step, epoch, loss, val_loss``). x axis: epochs.
    """
    set_style()
    fig, ax = plt.subplots(figsize=(6.4, 3.8)) if ax is None else (cast(Figure, ax.figure), ax)
    for i, (name, hist) in enumerate(histories.items()):
        if hist is None or hist.empty:
            continue
        color = f"C{i}"
        loss = hist["loss"].rolling(max(1, smooth), min_periods=1).mean()
        ax.plot(hist["epoch"], loss, color=color, lw=1.4, label=f"{name} (train)")
        val = hist.dropna(subset=["val_loss"]) if "val_loss" in hist else hist.iloc[0:0]
        if len(val):
            ax.plot(val["epoch"], val["val_loss"], color=color, ls="--", marker="o", ms=3, lw=1, label=f"{name} (val)")
    ax.set_xlabel("epoch (passes over the training split)")
    ax.set_ylabel("InfoNCE loss (nats, in-batch)")
    legend_outside(ax, fontsize=8)
    if simulation:
        label_simulation(ax)
    fig.tight_layout()
    return ax


def plot_zero_shot(
    table: pd.DataFrame, ax: Axes | None = None, *, rung_order: Sequence[str] | None = None, simulation: bool = True
) -> Axes:
    """Zero-shot AUROC per label (rows) and rung (columns) as a heat map, macro AUROC last.

    table: long format with columns ``rung, label, auroc``.
    """
    set_style()
    wide = table.pivot(index="label", columns="rung", values="auroc")
    if rung_order is not None:
        wide = wide[[r for r in rung_order if r in wide.columns]]
    order = [lab for lab in table["label"].drop_duplicates() if lab != "macro"] + (
        ["macro"] if "macro" in wide.index else []
    )
    wide = wide.loc[order]
    fig, ax = (
        plt.subplots(figsize=(1.6 + 1.3 * wide.shape[1], 0.32 * len(wide) + 1.2))
        if ax is None
        else (cast(Figure, ax.figure), ax)
    )
    im = ax.imshow(wide.to_numpy(dtype=float), cmap="RdBu_r", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(wide.shape[1]))
    ax.set_xticklabels(wide.columns, rotation=20, ha="right")
    ax.set_yticks(range(len(wide)))
    ax.set_yticklabels(wide.index)
    ax.grid(False)
    for (r, c), v in np.ndenumerate(wide.to_numpy(dtype=float)):
        ax.text(
            c,
            r,
            "n/a" if np.isnan(v) else f"{v:.2f}",
            ha="center",
            va="center",
            fontsize=7,
            color="white" if not np.isnan(v) and abs(v - 0.5) > 0.3 else "black",
        )
    ax.set_xlabel("rung (rising clinical specialization)")
    ax.set_ylabel("CheXpert label")
    fig.colorbar(im, ax=ax, label="zero-shot AUROC (0.5 = chance)", fraction=0.05)
    if simulation:
        ax.set_title("simulation: synthetic cohort", fontsize=8, color="0.4", loc="right")
    fig.tight_layout()
    return ax
