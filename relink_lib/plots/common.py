"""Shared figure style and axis helpers."""

from __future__ import annotations

import math
import weakref
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure, SubFigure

SIMULATION_NOTE = "simulation: synthetic cohort"

#: The simulation note each figure is stamped with (:func:`label_simulation`), so it is stamped once.
_SIMULATION_NOTES: weakref.WeakKeyDictionary[Figure | SubFigure, str] = weakref.WeakKeyDictionary()

#: Two tick labels of a log axis closer than this many decades are merged into one (the larger N wins).
MIN_TICK_DECADES = 0.25


def set_style() -> None:
    """The book's figure style: readable at page width, no chart junk."""
    plt.rcParams.update(
        {
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 110,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "legend.frameon": False,
            "font.size": 10,
        }
    )


def spaced_log_ticks(values: Sequence[float], min_decades: float = MIN_TICK_DECADES) -> list[float]:
    """The ticks of ``values`` (> 0) that keep at least ``min_decades`` between neighbours on a log axis.

    Walks from the largest value down and drops a tick that is too close to the last one kept, so
    "10,000" and "full (10,861)" (0.04 decades apart) do not print on top of each other.
    """
    ticks = sorted({float(v) for v in values if v is not None and float(v) > 0}, reverse=True)
    kept: list[float] = []
    for t in ticks:
        if not kept or math.log10(kept[-1]) - math.log10(t) >= min_decades:
            kept.append(t)
    return sorted(kept)


def log_pool_axis(
    ax: Axes, pool_sizes: Sequence[int], full_size: int | None = None, label: str = "candidate pool size N (log scale)"
) -> None:
    """Put pool sizes N on a log x axis with tick labels at the given N (and 'full' at the database size).

    A pool size within :data:`MIN_TICK_DECADES` of the full database gets no label of its own; the
    full-database tick then reads "full (M)", so labels never overlap.
    """
    ax.set_xscale("log")
    sizes = sorted(set(int(n) for n in pool_sizes))
    if full_size is not None and full_size not in sizes:
        sizes.append(int(full_size))
    ticks = [int(t) for t in spaced_log_ticks(sizes)]  # the largest (the full database) is always kept
    labels = [f"{n:,}" for n in ticks]
    if full_size is not None and full_size in ticks:
        labels[ticks.index(full_size)] = f"full\n({full_size:,})"
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels)
    ax.minorticks_off()
    ax.set_xlabel(label)


def log_limits(values: Sequence[float], pad_decades: float = 0.15) -> tuple[float, float]:
    """y limits of a log axis that fit the positive ``values`` (zeros, NaN and negatives ignored).

    CI bands reaching zero would otherwise stretch a log axis to 1e-8; the band is drawn clipped
    at the lower limit instead (see :func:`clip_for_log`).
    """
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr) & (arr > 0)]
    if arr.size == 0:
        raise ValueError("log_limits: no positive finite value to scale a log axis to")
    lo, hi = float(arr.min()), float(arr.max())
    return lo / 10**pad_decades, hi * 10**pad_decades


def clip_for_log(values: Sequence[float] | np.ndarray, floor: float) -> np.ndarray:
    """``values`` with zeros and anything below ``floor`` raised to ``floor`` (for bands on a log axis)."""
    arr = np.asarray(values, dtype=float)
    return np.where(np.isfinite(arr), np.maximum(arr, floor), floor)


def label_simulation(ax: Axes, text: str = SIMULATION_NOTE) -> None:
    """Stamp a figure as a simulation, in the figure's top-right margin (off the data and legends).

    One stamp per figure, however many of its axes call this.
    """
    fig = ax.figure
    if _SIMULATION_NOTES.get(fig) == text:
        return
    fig.text(0.995, 0.995, text, ha="right", va="top", fontsize=7, color="0.35", style="italic")
    _SIMULATION_NOTES[fig] = text


def finish_axes(
    ax: Axes,
    simulation: bool,
    legend_fontsize: float | None = None,
    *,
    ylabel: str | None = None,
    title: str | None = None,
) -> Axes:
    """The common last steps of a figure helper: the y label and title (when given), a legend (when
    ``legend_fontsize`` is given), the simulation stamp."""
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    if legend_fontsize is not None:
        ax.legend(fontsize=legend_fontsize)
    if simulation:
        label_simulation(ax)
    return ax
