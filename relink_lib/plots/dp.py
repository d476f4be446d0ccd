"""Figures of chapters 6-8: training curves, recall before/after with CIs, reductions, utility, transfer.

Cuts are drawn as percentages of Recall@1 removed (positive = less re-linkage; below zero a rise,
the sign convention of :mod:`relink_lib.signs`). DP points are filled circles, squares and
triangles; the controls have shapes of their own (plus, cross, diamond) and bars their own
hatching, so no figure relies on colour alone. Colours come from the Okabe-Ito palette
(:data:`relink_lib.plots.common.PALETTE`); the paper's figures are labelled "paper: ...".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ..paper import PAPER
from .common import PALETTE, finish_axes, legend_outside, log_pool_axis, paper_label

if TYPE_CHECKING:  # the figures read the records' attributes only; no torch import for the plots
    from ..dp.factorial_stage import FactorialResult
    from ..dp.frontier import FrontierPoint, FrontierResult

VARIANT_STYLE = {
    "pretrained": {"color": "0.2", "marker": "o", "hatch": "", "label": "pretrained heads"},
    "dp": {"color": PALETTE["blue"], "marker": "s", "hatch": "", "label": "DP heads"},
    "nonprivate": {"color": PALETTE["orange"], "marker": "P", "hatch": "//", "label": "non-private fine-tuning"},
    "reinit": {"color": PALETTE["gray"], "marker": "X", "hatch": "xx", "label": "re-initialised heads"},
    "output_perturbation": {"color": PALETTE["purple"], "marker": "D", "hatch": "..", "label": "output perturbation"},
}
CUT_AXIS_NOTE = "below 0: a rise"
"""What a negative cut on a figure's axis is (the sign convention of :mod:`relink_lib.signs`)."""


def plot_epsilon_spent(history: pd.DataFrame, target: float, ax: Axes | None = None) -> Axes:
    """Epsilon spent (RDP accountant) against the step, with the target."""
    ax = plt.subplots()[1] if ax is None else ax
    ax.plot(history["step"], history["epsilon_spent"], "o-", ms=3, color=PALETTE["blue"], label="epsilon spent")
    ax.axhline(target, ls="--", color="0.4", lw=1, label=f"target eps = {target:g}")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("epsilon spent")
    legend_outside(ax, fontsize=8)
    return ax


def plot_recall_variants(
    recall: pd.DataFrame,
    k: int = 1,
    ax: Axes | None = None,
    *,
    pool: str = "random",
    variants: Sequence[str] = tuple(VARIANT_STYLE),
    simulation: bool = True,
) -> Axes:
    """Recall@K against N (log-log) per variant with 95% CI bars, and chance."""
    ax = plt.subplots()[1] if ax is None else ax
    rows = recall[(recall["pool"] == pool) & (recall["k"] == k)]
    sizes = sorted(rows["pool_size"].astype(int).unique())
    for v in variants:
        r = rows[rows["variant"] == v].sort_values("pool_size")
        if r.empty:
            continue
        st = VARIANT_STYLE[v]
        yerr = None
        if {"ci_low", "ci_high"} <= set(r.columns):
            yerr = np.vstack(
                [np.clip(r["recall"] - r["ci_low"], 0, None), np.clip(r["ci_high"] - r["recall"], 0, None)]
            )
        ax.errorbar(
            r["pool_size"],
            r["recall"],
            yerr=yerr,
            marker=st["marker"],
            color=st["color"],
            label=st["label"],
            ms=4,
            capsize=2,
            lw=1,
        )
    chance = rows.groupby("pool_size")["chance"].mean()
    ax.plot(chance.index, chance.values, ":", color="0.5", label="chance")
    ax.set_yscale("log")
    full = (
        int(rows[rows["full_database"].astype(bool)]["pool_size"].max())
        if "full_database" in rows and rows["full_database"].astype(bool).any()
        else None
    )
    log_pool_axis(ax, sizes, full)
    ax.set_ylabel(f"Recall@{k} (log scale)")
    return finish_axes(ax, simulation, legend_fontsize=7)


def plot_reductions(
    reductions: pd.DataFrame,
    ax: Axes | None = None,
    *,
    paper: float | None = PAPER.dp_r1_reduction_n10000,
    simulation: bool = True,
) -> Axes:
    """Relative Recall@1 reduction at the reference N per rung (groups) and variant (bars)."""
    ax = plt.subplots()[1] if ax is None else ax
    red = reductions[reductions["k"] == 1]
    models = list(dict.fromkeys(red["model"]))
    variants = [v for v in VARIANT_STYLE if v in set(red["variant"])]
    width = 0.8 / max(len(variants), 1)
    x = np.arange(len(models))
    for i, v in enumerate(variants):
        vals = [
            float(red[(red["model"] == m) & (red["variant"] == v)]["relative_reduction"].iloc[0]) * 100 for m in models
        ]
        ax.bar(
            x + (i - (len(variants) - 1) / 2) * width,
            vals,
            width,
            color=VARIANT_STYLE[v]["color"],
            hatch=VARIANT_STYLE[v]["hatch"],
            edgecolor="white",
            label=VARIANT_STYLE[v]["label"],
        )
    if paper is not None:
        ax.axhline(
            paper * 100,
            ls="--",
            color="0.3",
            lw=1,
            label=paper_label(f"DP cut of R@1, {100 * paper:.1f}% at N = 10,000"),
        )
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(models)
    ax.set_xlabel("model (rung of the ladder)")
    ax.set_ylabel(f"relative cut of Recall@1 (%; {CUT_AXIS_NOTE})")
    return finish_axes(ax, simulation, legend_fontsize=7)


def plot_utility_by_variant(
    table: pd.DataFrame, metric: str, ylabel: str, ax: Axes | None = None, *, simulation: bool = True
) -> Axes:
    """One utility metric per rung (groups) and variant (bars)."""
    ax = plt.subplots()[1] if ax is None else ax
    models = list(dict.fromkeys(table["model"]))
    variants = [v for v in VARIANT_STYLE if v in set(table["variant"])]
    width = 0.8 / max(len(variants), 1)
    x = np.arange(len(models))
    for i, v in enumerate(variants):
        vals = [float(table[(table["model"] == m) & (table["variant"] == v)][metric].iloc[0]) for m in models]
        ax.bar(
            x + (i - (len(variants) - 1) / 2) * width,
            vals,
            width,
            color=VARIANT_STYLE[v]["color"],
            hatch=VARIANT_STYLE[v]["hatch"],
            edgecolor="white",
            label=VARIANT_STYLE[v]["label"],
        )
    ax.set_xticks(x)
    ax.set_xticklabels(models)
    ax.set_xlabel("model (rung of the ladder)")
    ax.set_ylabel(ylabel)
    return finish_axes(ax, simulation, legend_fontsize=7)


# ---------------------------------------------------------------------------------------- frontier (chapter 6)
FRONTIER_STYLE = {
    ("pretrained", "sgd"): {"color": PALETTE["blue"], "marker": "o", "label": "pretrained init, SGD"},
    ("pretrained", "adam"): {"color": PALETTE["sky"], "marker": "s", "label": "pretrained init, Adam"},
    ("reinit", "sgd"): {"color": PALETTE["green"], "marker": "^", "label": "fresh init, SGD"},
    ("reinit", "adam"): {"color": PALETTE["black"], "marker": "v", "label": "fresh init, Adam"},
}
"""DP points of the frontier: filled circles, squares and triangles (the controls: :data:`CONTROL_STYLE`)."""
CONTROL_STYLE = {
    "nonprivate": ("P", PALETTE["orange"], "non-private fine-tuning"),
    "reinit_untrained": ("X", PALETTE["gray"], "fresh heads, untrained"),
    "output_perturbation_matched": ("D", PALETTE["purple"], "output perturbation (matched R@1)"),
}
"""Controls of the frontier: marker, colour, label (shapes no DP point uses)."""


def _grid_points(fr: FrontierResult, init: str, optimizer: str) -> list[FrontierPoint]:
    return [p for p in fr.points("grid") if p.init == init and p.optimizer == optimizer]


def _mark_reference(ax: Axes, fr: FrontierResult, x: str, y: str, scale: float = 1.0) -> None:
    p = fr.reference_point
    ax.scatter(
        [getattr(p, x)],
        [getattr(p, y) * scale],
        s=160,
        facecolors="none",
        edgecolors="k",
        lw=1.5,
        zorder=5,
        label="selected" if fr.reference_is_selected else "reference (no point meets the rule)",
    )


def _finite_or_0(x: float | None) -> float:
    """A seed SD for an error bar: 0 where there is none (one seed: NaN)."""
    return 0.0 if x is None or not np.isfinite(x) else float(x)


def plot_cut_vs_drift(fr: FrontierResult, ax: Axes | None = None, *, simulation: bool = True) -> Axes:
    """Relative R@1 cut (report half, %) against head drift ||W - W0|| / ||W0|| (log x): DP points and output
    perturbation."""
    ax = plt.subplots()[1] if ax is None else ax
    for (init, opt), st in FRONTIER_STYLE.items():
        pts = _grid_points(fr, init, opt)
        if pts:
            ax.errorbar(
                [p.drift for p in pts],
                [100 * p.r1_reduction for p in pts],
                yerr=[100 * _finite_or_0(p.r1_reduction_seed_sd) for p in pts],
                fmt=st["marker"],
                color=st["color"],
                label=f"DP, {st['label']}",
                ms=5,
                capsize=2,
                lw=0.8,
            )
    curve = sorted(fr.output_perturbation_curve, key=lambda o: o["drift"])
    ax.plot(
        [o["drift"] for o in curve],
        [100 * o["r1_reduction"] for o in curve],
        "D--",
        color=CONTROL_STYLE["output_perturbation_matched"][1],
        ms=5,
        label="output perturbation (scale sweep)",
    )
    _mark_reference(ax, fr, "drift", "r1_reduction", 100)
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("head drift ||W - W_pretrained|| / ||W_pretrained|| (log scale)")
    ax.set_ylabel(
        f"R@1 cut at N = {fr.selection_rule.reference_pool_size:,}\n(%, report half, mean +- seed SD; {CUT_AXIS_NOTE})"
    )
    return finish_axes(ax, simulation, legend_fontsize=7)


def plot_frontier(
    fr: FrontierResult,
    ax: Axes | None = None,
    *,
    paper: float | None = PAPER.dp_r1_reduction_n10000,
    simulation: bool = True,
) -> Axes:
    """The frontier: R@1 cut (%) against zero-shot macro AUROC drop (points), both on the report half, by init and
    optimizer."""
    ax = plt.subplots()[1] if ax is None else ax
    ax.set_xscale("symlog", linthresh=1.0)  # before any artist: set afterwards, the x limits clip the largest drops
    for (init, opt), st in FRONTIER_STYLE.items():
        pts = _grid_points(fr, init, opt)
        if pts:
            ax.scatter(
                [p.zero_shot_auroc_drop_report for p in pts],
                [100 * p.r1_reduction for p in pts],
                marker=st["marker"],
                color=st["color"],
                edgecolors="0.2",
                linewidths=0.4,
                label=f"DP, {st['label']}",
                s=30,
            )
    for c in fr.controls:
        m, col, lab = CONTROL_STYLE.get(c["control"], ("*", "k", c["control"]))
        ax.scatter([c["zero_shot_auroc_drop_report"]], [100 * c["r1_reduction"]], marker=m, color=col, s=70, label=lab)
    p = fr.reference_point
    ax.scatter(
        [p.zero_shot_auroc_drop_report],
        [100 * p.r1_reduction],
        s=160,
        facecolors="none",
        edgecolors="k",
        lw=1.5,
        zorder=5,
        label="selected" if fr.reference_is_selected else "reference",
    )
    ax.axvline(
        fr.selection_rule.max_zero_shot_auroc_drop,
        ls=":",
        color="0.4",
        lw=1,
        label="rule's zero-shot bound (applied on the selection half)",
    )
    if paper is not None:
        ax.axhline(
            100 * paper, ls="--", color="0.3", lw=1, label=paper_label(f"cut of {100 * paper:.1f}% at N = 10,000")
        )
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xlabel("zero-shot macro AUROC drop (points, report half; symlog; below 0: a gain)")
    ax.set_ylabel(f"R@1 cut (%, report half; {CUT_AXIS_NOTE})")
    return finish_axes(ax, simulation, legend_fontsize=7)


def plot_scaling(
    fr: FrontierResult,
    ax: Axes | None = None,
    *,
    paper: float | None = PAPER.dp_r1_reduction_n10000,
    simulation: bool = True,
) -> Axes:
    """R@1 cut (%, report half, mean +- seed SD) against the private-set size (log x) at the selected setting."""
    ax = plt.subplots()[1] if ax is None else ax
    pts = [fr.reference_point] + sorted(fr.points("scaling"), key=lambda p: p.n_private)
    ax.errorbar(
        [p.n_private for p in pts],
        [100 * p.r1_reduction for p in pts],
        yerr=[100 * _finite_or_0(p.r1_reduction_seed_sd) for p in pts],
        fmt="o-",
        color=PALETTE["blue"],
        capsize=3,
        label="DP heads, " + ("selected" if fr.reference_is_selected else "reference") + " setting",
    )
    for p in pts:
        ax.annotate(
            f"sigma {p.noise_multiplier:.1f}",
            (p.n_private, 100 * p.r1_reduction),
            fontsize=7,
            textcoords="offset points",
            xytext=(4, -10),
        )
    if paper is not None:
        ax.axhline(
            100 * paper,
            ls="--",
            color="0.3",
            lw=1,
            label=paper_label(f"cut of {100 * paper:.1f}%, with about 40x more private pairs"),
        )
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("private training pairs (log scale)")
    ax.set_ylabel(f"R@1 cut (%, report half, mean +- seed SD; {CUT_AXIS_NOTE})")
    return finish_axes(ax, simulation, legend_fontsize=7)


CUT_AXIS_FLOOR = -200.0
"""Lowest cut (%) the factorial figures show: lower interval ends (a resample whose baseline R@1 is near zero) are
cut off at the axis."""
CUT_AXIS_CEILING = 110.0
"""Highest value (%) the factorial figures show: no cut exceeds 100%, so a taller axis only squeezes the bars."""


def _cut_limits(ax: Axes) -> None:
    """y limits of a cut axis: from :data:`CUT_AXIS_FLOOR` (a near-zero baseline resample puts CIs far below) to
    :data:`CUT_AXIS_CEILING` at most (autoscaling around such a CI would stretch the top as far)."""
    lo, hi = ax.get_ylim()
    ax.set_ylim(max(lo, CUT_AXIS_FLOOR), min(hi, CUT_AXIS_CEILING))


FACTORIAL_COLORS = {
    "none": PALETTE["gray"],
    "nonprivate": PALETTE["orange"],
    "clip_only": PALETTE["green"],
    "dp": PALETTE["blue"],
    "public_only": PALETTE["purple"],
}
FACTORIAL_HATCHES = {"none": "xx", "nonprivate": "//", "clip_only": "\\\\", "dp": "", "public_only": ".."}
"""Each training of the factorial has its own hatching too: the DP bars are the plain ones."""


def plot_factorial_cuts(
    fr: FactorialResult,
    ax: Axes | None = None,
    *,
    paper: float | None = PAPER.dp_r1_reduction_n10000,
    simulation: bool = True,
) -> Axes:
    """R@1 cut (%, confirmation cohort, mean over seeds) of every factorial arm with its paired 95% CI, one bar per
    arm, coloured by training; the paper's cut (quoted) as a dashed line."""
    ax = plt.subplots()[1] if ax is None else ax
    arms = [a for a in fr.arms if not (a.init == "pretrained" and a.training == "none")]
    x = np.arange(len(arms))
    cuts = np.array([100 * a.cut for a in arms])
    lo = np.array([100 * a.cut_ci_low for a in arms])
    hi = np.array([100 * a.cut_ci_high for a in arms])
    ax.bar(
        x,
        cuts,
        color=[FACTORIAL_COLORS[a.training] for a in arms],
        hatch=[FACTORIAL_HATCHES[a.training] for a in arms],
        edgecolor="white",
        alpha=0.9,
    )
    ax.errorbar(
        x, cuts, yerr=[np.clip(cuts - lo, 0, None), np.clip(hi - cuts, 0, None)], fmt="none", color="k", capsize=3, lw=1
    )
    ax.set_xticks(x)
    ax.set_xticklabels([a.name.replace("/", "\n") for a in arms], rotation=0, fontsize=7)
    if paper is not None:
        ax.axhline(100 * paper, ls="--", color="0.3", lw=1, label=paper_label(f"cut of {100 * paper:.1f}%"))
    for training, color in FACTORIAL_COLORS.items():
        if any(a.training == training for a in arms):
            ax.bar(
                [np.nan],
                [np.nan],
                color=color,
                hatch=FACTORIAL_HATCHES[training],
                edgecolor="white",
                label=training.replace("_", " "),
            )
    ax.axhline(0, color="0.5", lw=0.8)
    _cut_limits(ax)
    ax.set_xlabel("arm (init / training)")
    ax.set_ylabel(f"R@1 cut at N = {fr.pool_size:,} (%, 95% CI; {CUT_AXIS_NOTE})")
    return finish_axes(ax, simulation, legend_fontsize=7)


def plot_learning_curve(fr: FactorialResult, ax: Axes | None = None, *, simulation: bool = True) -> Axes:
    """Non-private training from fresh heads: R@1 cut (%, with CI) and zero-shot AUROC drop (points) against epochs
    (log x), with the selected setting's epochs marked."""
    ax = plt.subplots()[1] if ax is None else ax
    pts = fr.learning_curve
    ep = [p.epochs for p in pts]
    cut = np.array([100 * p.cut for p in pts])
    ax.errorbar(
        ep,
        cut,
        yerr=[
            np.clip(cut - [100 * p.cut_ci_low for p in pts], 0, None),
            np.clip([100 * p.cut_ci_high for p in pts] - cut, 0, None),
        ],
        fmt="o-",
        color=PALETTE["orange"],
        capsize=3,
        label="R@1 cut (%, 95% CI)",
    )
    ax.plot(
        ep, [p.zero_shot_auroc_drop for p in pts], "s--", color=PALETTE["green"], label="zero-shot AUROC drop (points)"
    )
    ax.axvline(float(fr.setting["epochs"]), color="0.4", lw=1, ls=":", label="selected setting's epochs")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xscale("log")
    ax.set_xticks(ep, [f"{e:g}" for e in ep], minor=False)
    ax.set_xticks([], minor=True)
    _cut_limits(ax)
    ax.set_xlabel("epochs of non-private training from fresh heads (log scale)")
    ax.set_ylabel(f"cut (%) / AUROC drop (points); {CUT_AXIS_NOTE} / gain")
    return finish_axes(ax, simulation, legend_fontsize=7)


def plot_confirmation_curve(
    fr: FactorialResult, *, k: int = 1, ax: Axes | None = None, simulation: bool = True
) -> Axes:
    """Recall@``k`` against N (log x) on the confirmation cohort for the pretrained and the selected DP heads, with
    95% CIs, and chance."""
    ax = plt.subplots()[1] if ax is None else ax
    rows = [p for p in fr.confirmation.curve if p.k == k]
    for variant, style in (("pretrained", VARIANT_STYLE["pretrained"]), ("dp", VARIANT_STYLE["dp"])):
        pts = sorted((p for p in rows if p.variant == variant), key=lambda p: p.pool_size)
        ns = [p.pool_size for p in pts]
        ax.plot(ns, [p.recall for p in pts], marker=style["marker"], color=style["color"], label=style["label"])
        ax.fill_between(ns, [p.ci_low for p in pts], [p.ci_high for p in pts], color=style["color"], alpha=0.2)
    ns = sorted({p.pool_size for p in rows})
    ax.plot(ns, [min(k, n) / n for n in ns], ":", color="0.5", label="chance")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("candidate pool size N (log scale)")
    ax.set_ylabel(f"Recall@{k} (log scale, 95% CI)")
    return finish_axes(ax, simulation, legend_fontsize=7)
