"""Chapter 2 figures: label prevalence against a reference, co-occurrence heatmap, studies per patient."""

from __future__ import annotations

from typing import Mapping, cast

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..cohorts.synthetic.patients import MIMIC_CXR_COUNTS, STUDIES_PER_PATIENT, PublishedCounts, StudiesPerPatientLaw
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


def plot_studies_per_patient(
    counts: Mapping[str, pd.Series],
    ax: Axes | None = None,
    simulation: bool = True,
    law: Mapping[int, float] | pd.Series | None = None,
    law_label: str = "fitted law",
    reference_mean: tuple[str, float] | None = None,
    log: bool = True,
) -> Axes:
    """Share of patients by number of studies, one bar group per cohort, on a log y axis (``log``).

    ``counts``: name -> patients by studies (``relink_lib.cohorts.stats.studies_per_patient``); ``law``:
    probability by number of studies, drawn as a black line with markers up to the largest count shown;
    ``reference_mean``: ``(label, mean)`` drawn as a dotted vertical line (e.g. MIMIC-CXR's published mean).
    """
    fig, ax = plt.subplots(figsize=(6.4, 3.6)) if ax is None else (cast(Figure, ax.figure), ax)
    w = 0.8 / max(len(counts), 1)
    top = 1
    for k, (name, series) in enumerate(counts.items()):
        share = series / series.sum() * 100
        if len(share):
            top = max(top, int(np.max(np.asarray(share.index)[np.asarray(share.values) > 0])))
        ax.bar(np.asarray(share.index) + (k - (len(counts) - 1) / 2) * w, share.values, width=w, label=name)
    if law is not None:
        lk = pd.Series(law, dtype=float)
        lk = lk[(lk.index >= 1) & (lk.index <= top) & (lk > 0)]
        ax.plot(lk.index, lk.values * 100, "k.-", lw=0.8, ms=3, label=law_label, zorder=3)
    if reference_mean is not None:
        label, mean = reference_mean
        ax.axvline(mean, color="0.3", ls=":", lw=1.0, label=f"{label}: mean {mean:.2f}")
    if log:
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("studies per patient")
    ax.set_ylabel("patients (%, log scale)" if log else "patients (%)")
    ax.legend(fontsize=7)
    if simulation:
        label_simulation(ax)
    fig.tight_layout()
    return ax


def plot_studies_per_patient_vs_mimic(
    counts: Mapping[str, pd.Series],
    ax: Axes | None = None,
    simulation: bool = True,
    law: StudiesPerPatientLaw = STUDIES_PER_PATIENT,
    published: PublishedCounts = MIMIC_CXR_COUNTS,
) -> Axes:
    """:func:`plot_studies_per_patient` with the generator's fitted ``law`` as a line and the ``published`` mean
    studies per patient (MIMIC-CXR's) as a dotted vertical line, on a log y axis."""
    return plot_studies_per_patient(
        counts,
        ax=ax,
        simulation=simulation,
        law=law.pmf_series(),
        law_label=f"fitted law (1 + NB, r = {law.shape:g})",
        reference_mean=(f"{published.name} (published)", published.mean_studies_per_patient),
    )
