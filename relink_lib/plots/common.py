"""Shared figure style and axis helpers."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

SIMULATION_NOTE = "simulation: synthetic cohort"


def set_style() -> None:
    """The book's figure style: readable at page width, no chart junk."""
    plt.rcParams.update({
        "figure.figsize": (6.4, 4.0),
        "figure.dpi": 110,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "legend.frameon": False,
        "font.size": 10,
    })


def log_pool_axis(ax: Axes, pool_sizes: Sequence[int], full_size: int | None = None, label: str = "candidate pool size N (log scale)") -> None:
    """Put pool sizes N on a log x axis with tick labels at the given N (and 'full' at the database size)."""
    ax.set_xscale("log")
    ticks = sorted(set(int(n) for n in pool_sizes))
    labels = [f"{n:,}" for n in ticks]
    if full_size is not None and full_size in ticks:
        labels[ticks.index(full_size)] = f"full\n({full_size:,})"
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels)
    ax.minorticks_off()
    ax.set_xlabel(label)


def label_simulation(ax: Axes, text: str = SIMULATION_NOTE) -> None:
    """Stamp a figure as a simulation in its lower-right corner."""
    ax.text(0.99, 0.01, text, transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.4")
