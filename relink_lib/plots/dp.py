"""Figures of chapters 6-8: training curves, recall before/after with CIs, reductions, utility, transfer."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from .common import label_simulation, log_pool_axis

VARIANT_STYLE = {
    "pretrained": {"color": "0.2", "marker": "o", "label": "pretrained heads"},
    "dp": {"color": "tab:blue", "marker": "s", "label": "DP heads"},
    "nonprivate": {"color": "tab:orange", "marker": "^", "label": "non-private fine-tuning"},
    "reinit": {"color": "tab:gray", "marker": "x", "label": "re-initialised heads"},
    "output_perturbation": {"color": "tab:red", "marker": "d", "label": "output perturbation"},
}


def plot_training_curves(ax: Axes, histories: dict[str, pd.DataFrame], *, simulation: bool = True) -> None:
    """Public evaluation loss (in-batch InfoNCE on the public split) against the step, one line per run."""
    for i, (name, h) in enumerate(histories.items()):
        ax.plot(h["step"], h["public_eval_loss"], marker="o", ms=3, label=name, color=f"C{i}")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("public evaluation loss (InfoNCE, nats)")
    ax.legend(fontsize=8)
    if simulation:
        label_simulation(ax)


def plot_epsilon_spent(ax: Axes, history: pd.DataFrame, target: float) -> None:
    """Epsilon spent (RDP accountant) against the step, with the target."""
    ax.plot(history["step"], history["epsilon_spent"], "o-", ms=3, color="tab:blue")
    ax.axhline(target, ls="--", color="0.4", lw=1, label=f"target eps = {target:g}")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("epsilon spent")
    ax.legend(fontsize=8)


def plot_recall_variants(ax: Axes, recall: pd.DataFrame, k: int = 1, *, pool: str = "random",
                         variants: Sequence[str] = tuple(VARIANT_STYLE), simulation: bool = True) -> None:
    """Recall@K against N (log-log) per variant with 95% CI bars, and chance."""
    rows = recall[(recall["pool"] == pool) & (recall["k"] == k)]
    sizes = sorted(rows["pool_size"].astype(int).unique())
    for v in variants:
        r = rows[rows["variant"] == v].sort_values("pool_size")
        if r.empty:
            continue
        st = VARIANT_STYLE[v]
        yerr = None
        if {"ci_low", "ci_high"} <= set(r.columns):
            yerr = np.vstack([np.clip(r["recall"] - r["ci_low"], 0, None), np.clip(r["ci_high"] - r["recall"], 0, None)])
        ax.errorbar(r["pool_size"], r["recall"], yerr=yerr, marker=st["marker"], color=st["color"], label=st["label"],
                    ms=4, capsize=2, lw=1)
    chance = rows.groupby("pool_size")["chance"].mean()
    ax.plot(chance.index, chance.values, ":", color="0.5", label="chance")
    ax.set_yscale("log")
    full = int(rows[rows["full_database"].astype(bool)]["pool_size"].max()) if "full_database" in rows and rows["full_database"].astype(bool).any() else None
    log_pool_axis(ax, sizes, full)
    ax.set_ylabel(f"Recall@{k} (log scale)")
    ax.legend(fontsize=7)
    if simulation:
        label_simulation(ax)


def plot_reductions(ax: Axes, reductions: pd.DataFrame, *, paper: float | None = 0.618, simulation: bool = True) -> None:
    """Relative Recall@1 reduction at the reference N per rung (groups) and variant (bars)."""
    red = reductions[reductions["k"] == 1]
    models = list(dict.fromkeys(red["model"]))
    variants = [v for v in VARIANT_STYLE if v in set(red["variant"])]
    width = 0.8 / max(len(variants), 1)
    x = np.arange(len(models))
    for i, v in enumerate(variants):
        vals = [float(red[(red["model"] == m) & (red["variant"] == v)]["relative_reduction"].iloc[0]) * 100 for m in models]
        ax.bar(x + (i - (len(variants) - 1) / 2) * width, vals, width, color=VARIANT_STYLE[v]["color"], label=VARIANT_STYLE[v]["label"])
    if paper is not None:
        ax.axhline(paper * 100, ls="--", color="0.3", lw=1, label="the paper's DP reduction (61.8%, N = 10,000)")
    ax.axhline(0, color="0.5", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels(models)
    ax.set_xlabel("model (rung of the ladder)")
    ax.set_ylabel("relative Recall@1 reduction (%)")
    ax.legend(fontsize=7)
    if simulation:
        label_simulation(ax)


def plot_utility(ax: Axes, table: pd.DataFrame, metric: str, ylabel: str, *, simulation: bool = True) -> None:
    """One utility metric per rung (groups) and variant (bars)."""
    models = list(dict.fromkeys(table["model"]))
    variants = [v for v in VARIANT_STYLE if v in set(table["variant"])]
    width = 0.8 / max(len(variants), 1)
    x = np.arange(len(models))
    for i, v in enumerate(variants):
        vals = [float(table[(table["model"] == m) & (table["variant"] == v)][metric].iloc[0]) for m in models]
        ax.bar(x + (i - (len(variants) - 1) / 2) * width, vals, width, color=VARIANT_STYLE[v]["color"], label=VARIANT_STYLE[v]["label"])
    ax.set_xticks(x)
    ax.set_xticklabels(models)
    ax.set_xlabel("model (rung of the ladder)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    if simulation:
        label_simulation(ax)
