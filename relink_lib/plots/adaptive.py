"""Chapter 11's figures: lift against the attacker's public pairs m, and the per-patient tail."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from ..adaptive.stage import AdaptiveResult
from .common import PALETTE, finish_axes, legend_outside, set_style

_ATTACK_STYLE = {"ridge": "o-", "cca": "s-", "new_heads": "^-", "finetune": "D-", "text_side": "v--"}


def plot_lift_vs_m(result: AdaptiveResult, variant: str = "dp", *, simulation: bool = True) -> Figure:
    """Lift over chance at N = pool_ref against m (log axis, m > 0) per attack and source on ``variant``'s
    release, with the passive lifts of the DP and the pretrained heads as horizontal lines."""
    set_style()
    frame = result.outcome_frame()
    sources = sorted(result.sources)
    fig, axes = plt.subplots(1, len(sources), figsize=(5.2 * len(sources), 3.6), sharey=True, squeeze=False)
    passive = frame[frame["attack"] == "passive"].set_index("variant")["lift_ref"]
    for ax, source in zip(axes[0], sources):
        sub = frame[(frame["variant"] == variant) & (frame["source"] == source)]
        for attack, style in _ATTACK_STYLE.items():
            t = sub[sub["attack"] == attack].sort_values("m")
            if not t.empty:
                ax.plot(t["m"], t["lift_ref"], style, label=attack.replace("_", " "), ms=4)
        ax.axhline(passive["pretrained"], color="0.2", ls="--", lw=1, label="full model, passive")
        ax.axhline(passive[variant], color=PALETTE["red"], ls=":", lw=1, label=f"{variant} heads, passive")
        ax.set_xscale("log")
        ax.set_xlabel(f"public pairs m ({source})")
        finish_axes(ax, simulation, title=f"{variant} release, source {source}")
    axes[0][0].set_ylabel(f"Recall@1 lift over chance, N = {result.pool_ref:,}")
    legend_outside(axes[0][-1], "right", fontsize=7)  # the panels share their entries: one legend, right
    fig.tight_layout()
    return fig


def plot_tail(result: AdaptiveResult, *, simulation: bool = True) -> Figure:
    """Per-patient expected Recall@1 at N = pool_small, patients sorted from the most re-linkable, per condition;
    the 10x-chance line."""
    set_style()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for condition, values in result.per_patient.items():
        v = np.sort(np.asarray(values, float))[::-1]
        ax.plot(np.arange(1, v.size + 1) / v.size, v, label=condition)
    ax.axhline(10.0 / result.pool_small, color="0.3", ls="--", lw=1, label="10x chance")
    ax.set_xscale("log")
    ax.set_xlabel("fraction of held-out patients (most re-linkable first)")
    finish_axes(ax, simulation, 7, ylabel=f"expected Recall@1, N = {result.pool_small:,}")
    fig.tight_layout()
    return fig
