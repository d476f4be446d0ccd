"""Chapter 2 figures: label prevalence against a reference, co-occurrence heatmap, studies per patient."""

from __future__ import annotations

from typing import Mapping, cast

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..labels import CHEXPERT_LABELS
from .common import label_simulation

# A given ``ax`` lies on a Figure (``cast(Figure, ax.figure)``): a SubFigure has no tight_layout.


def plot_prevalence_vs_reference(
    prevalence: Mapping[str, pd.DataFrame],
    reference: Mapping[str, Mapping[str, tuple[float, float]]],
    ax: Axes | None = None,
    simulation: bool = True,
) -> Axes:
    """Horizontal bars of positive-label prevalence per cohort, with published reference values as markers.

    ``prevalence``: name -> ``label_prevalence`` frame; ``reference``: name -> {label: (positive, uncertain)}.
    """
    labels = list(CHEXPERT_LABELS)
    y = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(6.8, 6.0)) if ax is None else (cast(Figure, ax.figure), ax)
    h = 0.8 / max(len(prevalence), 1)
    markers = ["D", "o", "s", "^"]
    for k, (name, frame) in enumerate(prevalence.items()):
        ax.barh(
            y + (k - (len(prevalence) - 1) / 2) * h,
            frame.loc[labels, "positive"] * 100,
            height=h,
            label=f"{name}: positive",
        )
    for k, (name, ref) in enumerate(reference.items()):
        offs = (k - (len(reference) - 1) / 2) * h
        ax.scatter(
            [ref[l][0] * 100 for l in labels],
            y + offs,
            marker=markers[k % 4],
            color="k",
            s=18,
            zorder=3,
            label=f"{name} (published)",
        )
    ax.set_yticks(y)
    ax.set_yticklabels(labels)
    ax.invert_yaxis()
    ax.set_xlabel("pairs with the label positive (%)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.4, -0.1), ncol=2)
    if simulation:
        label_simulation(ax)
    fig.tight_layout()
    return ax


def plot_cooccurrence(cond: pd.DataFrame, ax: Axes | None = None, title: str = "", simulation: bool = True) -> Axes:
    """Heatmap of ``P(column positive | row positive)`` (from ``relink_lib.cohorts.stats.cooccurrence``)."""
    fig, ax = plt.subplots(figsize=(6.6, 5.6)) if ax is None else (cast(Figure, ax.figure), ax)
    im = ax.imshow(cond.to_numpy() * 100, cmap="viridis", vmin=0, vmax=100)
    ax.set_xticks(range(len(cond.columns)))
    ax.set_xticklabels(cond.columns, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(cond.index)))
    ax.set_yticklabels(cond.index, fontsize=7)
    ax.set_xlabel("label B")
    ax.set_ylabel("label A (given positive)")
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="P(B positive | A positive) (%)")
    if title:
        ax.set_title(title, fontsize=9)
    if simulation:
        label_simulation(ax)
    fig.tight_layout()
    return ax


def plot_studies_per_patient(counts: Mapping[str, pd.Series], ax: Axes | None = None, simulation: bool = True) -> Axes:
    """Share of patients by number of studies, one bar group per cohort."""
    fig, ax = plt.subplots(figsize=(5.6, 3.4)) if ax is None else (cast(Figure, ax.figure), ax)
    w = 0.8 / max(len(counts), 1)
    for k, (name, series) in enumerate(counts.items()):
        share = series / series.sum() * 100
        ax.bar(share.index + (k - (len(counts) - 1) / 2) * w, share.values, width=w, label=name)
    ax.set_xlabel("studies per patient")
    ax.set_ylabel("patients (%)")
    ax.legend(fontsize=8)
    if simulation:
        label_simulation(ax)
    fig.tight_layout()
    return ax
