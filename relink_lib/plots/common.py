"""Shared figure style and axis helpers.

The book's figures follow four rules, applied here once:

- **a colour-blind-safe palette**: Okabe and Ito's eight colours (:data:`PALETTE`), the colour
  cycle of :func:`set_style`; every figure helper takes its named colours from :data:`PALETTE`
  (and rungs from viridis, :func:`relink_lib.plots.audit.rung_colors`), never ``tab:...``;
- **legends outside the data** (:func:`legend_outside`: right of the axes, or under its x label
  when another panel sits beside it); :func:`legend_overlaps` lists the plotted points a legend
  covers, and the tests call every figure helper and require none;
- **readable log ticks** (:func:`readable_log_ticks`): plain numbers (``1``, ``10``, ``1,000``,
  ``0.01``) on log and symlog axes where they fit, ``10^n`` only beyond;
- **the paper's marks** are drawn in :data:`PAPER_COLOR` with a legend entry that starts with
  ``"paper"`` (:data:`PAPER_LABEL`), so a reader never takes them for this run's.
"""

from __future__ import annotations

import math
import weakref
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
from cycler import cycler
from matplotlib import transforms
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure, SubFigure
from matplotlib.patches import Rectangle
from matplotlib.ticker import LogFormatter

SIMULATION_NOTE = "simulation: synthetic cohort"

#: Okabe & Ito (2008), "Color Universal Design": eight colours told apart under the common colour-vision
#: deficiencies; named by their role in the book's figures (``red`` is vermillion, ``purple`` reddish purple).
PALETTE: dict[str, str] = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "red": "#D55E00",
    "purple": "#CC79A7",
    "sky": "#56B4E9",
    "yellow": "#F0E442",
    "black": "#000000",
    "gray": "#7F7F7F",
}
#: The colour cycle of :func:`set_style` (``C0``, ``C1``, ... in a figure helper are these).
CYCLE: tuple[str, ...] = tuple(PALETTE[c] for c in ("blue", "orange", "green", "red", "purple", "sky", "black"))
PAPER_COLOR = PALETTE["red"]
"""The colour of the paper's figures drawn beside this run's."""
PAPER_LABEL = "paper"
"""Every legend entry of a mark taken from the paper starts with this word."""

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
            "axes.prop_cycle": cycler(color=list(CYCLE)),
            # an opaque white figure: it stays legible on the book's dark theme
            "figure.facecolor": "white",
            "savefig.facecolor": "white",
            "axes.facecolor": "white",
        }
    )


def paper_label(text: str) -> str:
    """A legend label for a mark taken from the paper: ``"paper: <text>"``."""
    return f"{PAPER_LABEL}: {text}"


# ------------------------------------------------------------------------------------------------ log ticks
PLAIN_RANGE = (1e-4, 1e7)
"""Tick values whose magnitude lies in this range print as plain numbers on a log axis; others as 10^n."""


def plain_number(x: float) -> str:
    """A log-axis tick value as a plain number (``1``, ``0.01``, ``1,000``) inside :data:`PLAIN_RANGE`,
    else as ``10^n`` (mathtext)."""
    if x == 0:
        return "0"
    a = abs(x)
    if PLAIN_RANGE[0] <= a < PLAIN_RANGE[1]:
        return f"{int(x):,}" if float(x).is_integer() else f"{x:,g}"
    exponent = math.log10(a)
    sign = "-" if x < 0 else ""
    if abs(exponent - round(exponent)) < 1e-9:
        return f"${sign}10^{{{int(round(exponent))}}}$"
    return f"{x:.0e}"


class PlainLogFormatter(LogFormatter):
    """matplotlib's choice of which log (or symlog) ticks to label, printed by :func:`plain_number`."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        if x == 0:
            return "0"
        if not super().__call__(x, pos):  # a tick matplotlib leaves unlabelled (crowded minor ticks)
            return ""
        return self.fix_minus(plain_number(float(x)))


def readable_log_ticks(ax: Axes) -> Axes:
    """Plain-number tick labels on every log or symlog axis of ``ax`` that still has matplotlib's default
    (``10^0``-style) formatter; an axis with fixed labels (:func:`log_pool_axis`) is left alone."""
    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() not in ("log", "symlog"):
            continue
        if isinstance(axis.get_major_formatter(), LogFormatter) and not isinstance(
            axis.get_major_formatter(), PlainLogFormatter
        ):
            axis.set_major_formatter(PlainLogFormatter())
        if isinstance(axis.get_minor_formatter(), LogFormatter) and not isinstance(
            axis.get_minor_formatter(), PlainLogFormatter
        ):
            axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))
    return ax


# ------------------------------------------------------------------------------------------------- legends
LEGEND_PAD_PT = 6.0
"""Gap (points) between the axes (or its x label) and a legend outside it."""


def _renderer(fig: Figure | SubFigure) -> Any:
    """The renderer of ``fig``'s root figure (for text extents before the figure is shown)."""
    root: Any = fig.get_figure(root=True) if isinstance(fig, SubFigure) else fig
    get = getattr(root.canvas, "get_renderer", None)
    return get() if get is not None else root._get_renderer()


def _neighbours(ax: Axes) -> bool:
    """Whether another axes of the figure sits beside ``ax`` (overlapping rows): a legend right of ``ax`` would
    cover it."""
    box = ax.get_position()
    for other in ax.figure.get_axes():
        if other is ax or not other.get_visible():
            continue
        o = other.get_position()
        if o.y0 < box.y1 and o.y1 > box.y0 and (o.x0 >= box.x1 - 1e-9 or o.x1 <= box.x0 + 1e-9):
            return True
    return False


def legend_outside(
    ax: Axes,
    where: str = "auto",
    *,
    fontsize: float | None = 8,
    ncol: int | None = None,
    **kwargs: Any,
) -> Any:
    """The legend of ``ax`` outside its data area; returns the ``Legend`` (``None`` when nothing is labelled).

    ``where``: ``"right"`` (beside the axes, top-aligned), ``"below"`` (under the x tick labels and the
    x label, centred) or ``"auto"``: right, unless another panel of the figure sits beside ``ax``; then
    below, and a panel drawn earlier whose legend says the same is left without one (side-by-side
    panels of one helper share one legend, under the last drawn). The offsets are in points from the
    axes' edges, so a later ``tight_layout`` or a resize keeps them; a figure saved with
    ``bbox_inches="tight"`` (the notebooks' inline backend) keeps the legend whole.
    """
    if where not in ("auto", "right", "below"):
        raise ValueError(f"where={where!r}: expected 'auto', 'right' or 'below'")
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return None
    if where == "auto":
        where = "below" if _neighbours(ax) else "right"
        if where == "below":
            for other in ax.get_figure(root=True).get_axes():  # type: ignore[union-attr]
                legend = other.get_legend() if other is not ax else None
                if legend is not None and [t.get_text() for t in legend.get_texts()] == list(labels):
                    legend.remove()
    fig: Any = ax.get_figure(root=True)
    if where == "right":
        anchor = transforms.offset_copy(ax.transAxes, fig=fig, x=LEGEND_PAD_PT, y=0, units="points")
        return ax.legend(
            loc="upper left",
            bbox_to_anchor=(1.0, 1.0),
            bbox_transform=anchor,
            borderaxespad=0.0,
            fontsize=fontsize,
            ncol=ncol or 1,
            **kwargs,
        )
    old = ax.get_legend()
    if old is not None:
        old.remove()
    renderer = _renderer(fig)
    below = ax.xaxis.get_tightbbox(renderer)
    drop_px = max(0.0, ax.bbox.y0 - below.y0) if below is not None else 0.0
    drop_pt = drop_px * 72.0 / fig.dpi + LEGEND_PAD_PT
    anchor = transforms.offset_copy(ax.transAxes, fig=fig, x=0, y=-drop_pt, units="points")
    return ax.legend(
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        bbox_transform=anchor,
        borderaxespad=0.0,
        fontsize=fontsize,
        ncol=ncol or min(2, len(handles)),
        **kwargs,
    )


def _data_points(ax: Axes) -> list[tuple[str, np.ndarray]]:
    """The display coordinates of what ``ax`` plots in data coordinates: line vertices (markers, error bars),
    scatter offsets; reference lines (``axhline``, ``axvline``: not in data coordinates on both axes) are not
    points."""
    out: list[tuple[str, np.ndarray]] = []
    for line in ax.get_lines():
        if not line.get_visible() or line.get_transform() != ax.transData:
            continue
        xy = np.asarray(line.get_xydata(), dtype=float)
        if xy.size:
            out.append((str(line.get_label()), line.get_transform().transform(xy)))
    for coll in ax.collections:
        if not coll.get_visible() or not isinstance(coll, PathCollection):
            continue
        offsets = np.asarray(coll.get_offsets(), dtype=float)
        if offsets.size and coll.get_offset_transform() == ax.transData:
            out.append((str(coll.get_label()), ax.transData.transform(offsets)))
    return out


def legend_overlaps(ax: Axes, *, draw: bool = True) -> list[str]:
    """What the legend of ``ax`` covers: one entry per plotted point (line vertex, scatter point) or bar that
    lies inside the legend's box on the drawn figure (names its artist and its display coordinates). Empty
    when the legend covers nothing, or there is no legend.

    Points outside the axes' view (clipped, not drawn) do not count; bars count by their drawn rectangle.
    ``draw=False`` skips drawing the figure first (its caller has just drawn it).
    """
    legend = ax.get_legend()
    if legend is None or not legend.get_visible():
        return []
    fig = ax.get_figure(root=True)
    if fig is None:
        return []
    if draw:
        fig.canvas.draw()
    renderer = _renderer(fig)
    box = legend.get_window_extent(renderer)
    view = ax.bbox
    hits = []
    for name, xy in _data_points(ax):
        finite = xy[np.isfinite(xy).all(axis=1)]
        inside_view = (
            (finite[:, 0] >= view.x0 - 0.5)
            & (finite[:, 0] <= view.x1 + 0.5)
            & (finite[:, 1] >= view.y0 - 0.5)
            & (finite[:, 1] <= view.y1 + 0.5)
        )
        for x, y in finite[inside_view]:
            if box.x0 <= x <= box.x1 and box.y0 <= y <= box.y1:
                hits.append(f"{name} at ({x:.0f}, {y:.0f}) px")
    for patch in ax.patches:
        if not isinstance(patch, Rectangle) or not patch.get_visible() or patch.get_data_transform() != ax.transData:
            continue
        ext = patch.get_window_extent(renderer)
        if not np.isfinite([ext.x0, ext.x1, ext.y0, ext.y1]).all() or ext.width == 0 or ext.height == 0:
            continue
        clipped = transforms.Bbox.intersection(ext, view)
        if clipped is not None and transforms.Bbox.intersection(clipped, box) is not None:
            over = transforms.Bbox.intersection(clipped, box)
            if over is not None and over.width > 0.5 and over.height > 0.5:
                hits.append(f"bar {patch.get_label()!s} at ({ext.x0:.0f}, {ext.y0:.0f}) px")
    return hits


def figure_legend_overlaps(fig: Figure) -> dict[int, list[str]]:
    """:func:`legend_overlaps` of every axes of ``fig`` that has any (axes index -> what its legend covers)."""
    out = {}
    fig.canvas.draw()
    for i, ax in enumerate(fig.get_axes()):
        hits = legend_overlaps(ax, draw=False)
        if hits:
            out[i] = hits
    return out


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
    """The common last steps of a figure helper: the y label and title (when given), readable log ticks, a
    legend outside the data (when ``legend_fontsize`` is given; :func:`legend_outside`), the simulation stamp."""
    if ylabel is not None:
        ax.set_ylabel(ylabel)
    if title is not None:
        ax.set_title(title)
    readable_log_ticks(ax)
    if legend_fontsize is not None:
        legend_outside(ax, fontsize=legend_fontsize)
    if simulation:
        label_simulation(ax)
    return ax
