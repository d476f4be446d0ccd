"""Figures of chapter 9: re-linkage, utility and reconstruction risk against the privacy budget.

They read the sweep's two tables (:class:`relink_lib.risk.sweep.SweepResult`): the per-eps ``table``
and the long ``recall`` table (one row per eps, pool, k, N; :data:`relink_lib.risk.stage.RECALL_COLUMNS`).
A budget axis works on either: one step per distinct ``target_epsilon``.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ..risk.summary import HIGH_BUDGET, eps_tick_label, eps_values, pool_size_label, select_recall
from .common import PALETTE, label_simulation, legend_outside, readable_log_ticks

__all__ = [
    "budget_positions",
    "budget_axis",
    "shade_high_budget",
    "plot_risks",
    "plot_relinkage",
    "plot_budget_utility",
    "plot_tradeoff_curves",
    "plot_cut",
    "plot_rero_priors",
]


def budget_positions(table: pd.DataFrame) -> np.ndarray:
    """x positions of the rows: the budget's rank (0, 1, ... by increasing eps), the non-private budget last.

    Rows with the same ``target_epsilon`` (a long table) share a position. The sweep's budgets are
    unevenly spaced (0.34, 1, 8, 32, then factors of 1,000), so an axis in log eps would crowd the
    small ones into overlapping ticks; one step per budget keeps every label readable. The axis
    says it is not to scale.
    """
    eps = eps_values(table)
    distinct = sorted(set(eps), key=lambda e: (e is None, e if e is not None else 0.0))
    rank = {e: float(i) for i, e in enumerate(distinct)}
    return np.array([rank[e] for e in eps], dtype=float)


def budget_axis(
    ax: Axes, table: pd.DataFrame, label: str = "privacy budget eps (one step per budget, not to scale)"
) -> None:
    """An eps axis with one tick per budget of the sweep and a 'no DP' tick last."""
    pos = budget_positions(table)
    eps = eps_values(table)
    names = {p: eps_tick_label(e) for p, e in zip(pos, eps)}
    ticks = sorted(names)
    ax.set_xscale("linear")
    ax.set_xticks(ticks)
    ax.set_xticklabels([names[t] for t in ticks])
    ax.set_xlim(min(ticks) - 0.5, max(ticks) + 0.5)
    ax.minorticks_off()
    ax.set_xlabel(label)


def shade_high_budget(ax: Axes, table: pd.DataFrame, text: str = "high-budget DP") -> None:
    """Shade the budgets with eps in [1e6, 1e12] (Ziller et al.'s high-budget regime), if the sweep has any."""
    pos = budget_positions(table)
    inside = [p for p, e in zip(pos, eps_values(table)) if e is not None and HIGH_BUDGET[0] <= e <= HIGH_BUDGET[1]]
    if not inside:
        return
    lo, hi = min(inside) - 0.4, max(inside) + 0.4
    ax.axvspan(lo, hi, color=PALETTE["orange"], alpha=0.1, lw=0, label=f"{text} (Ziller et al.: eps 1e6 to 1e12)")


def _legend_below(ax: Axes) -> None:
    """The legend under the axes' x label (off the data), in two columns."""
    legend_outside(ax, "below", fontsize=8, ncol=2)


def _finish_budget_axes(ax: Axes, table: pd.DataFrame, simulation: bool) -> Axes:
    """The budget x-axis, the high-budget band, the legend below and the simulation stamp."""
    budget_axis(ax, table)
    shade_high_budget(ax, table)
    readable_log_ticks(ax)
    _legend_below(ax)
    if simulation:
        label_simulation(ax)
    return ax


def _new(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots()
    return ax


def plot_risks(table: pd.DataFrame, ax: Axes | None = None, simulation: bool = True) -> Axes:
    """Worst-case and relaxed bounds (training-set prior) and the gradient-access reconstruction's success
    against eps (log y), with the priors."""
    ax = _new(ax)
    x = budget_positions(table)
    floor = min(table["kappa"].min(), table["gradient_access_chance"].min()) / 2
    # a success rate of 0 has no place on a log axis: drawn on the bottom edge
    ax.plot(x, table["worst_case_risk"], "o-", color=PALETTE["red"], label="worst case (ReRo bound, PLD)")
    ax.plot(x, table["relaxed_risk"], "s-", color=PALETTE["purple"], label="relaxed (GLRT bound)")
    ax.plot(
        x,
        np.maximum(table["gradient_access_risk"].astype(float), floor),
        "^-",
        color=PALETTE["blue"],
        label="gradient-access reconstruction: images re-identified (0 on the bottom edge)",
    )
    ax.plot(
        x,
        np.full(len(x), table["kappa"].iloc[0]),
        ":",
        color=PALETTE["red"],
        lw=1,
        label=f"training-set prior kappa = 1/{round(1 / table['kappa'].iloc[0]):,}",
    )
    ax.plot(
        x,
        np.full(len(x), table["gradient_access_chance"].iloc[0]),
        ":",
        color=PALETTE["blue"],
        lw=1,
        label=f"attack chance 1/N = 1/{int(table['attack_candidates'].iloc[0])}",
    )
    ax.set_yscale("log")
    ax.set_ylim(floor, 1.5)
    ax.set_ylabel("probability of reconstruction (log scale)")
    return _finish_budget_axes(ax, table, simulation)


def plot_rero_priors(rero: pd.DataFrame, ax: Axes | None = None, simulation: bool = True) -> Axes:
    """The worst-case ReRo bound against eps at each prior of the long ReRo table (the training-set prior
    1/n_train and the re-linkage priors 1/N), each with its prior as a dotted line of the same colour (log y)."""
    ax = _new(ax)
    rows = rero.assign(_x=budget_positions(rero))
    priors = sorted(set(zip(rows["prior"], rows["N"])), key=lambda p: (p[0] != "training set", int(p[1])))
    colors = plt.get_cmap("viridis")(np.linspace(0.0, 0.85, max(len(priors), 1)))
    floor = float(rows["kappa"].min()) / 2
    for (prior, n), color in zip(priors, colors):
        sel = rows[(rows["prior"] == prior) & (rows["N"] == n)].sort_values("_x")
        name = "training set" if prior == "training set" else "re-linkage pool"
        style = "o-" if prior == "training set" else "s--"
        ax.plot(sel["_x"], sel["worst_case_risk"], style, color=color, label=f"prior 1/{int(n):,} ({name})")
        ax.axhline(1.0 / int(n), color=color, ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_ylim(floor, 1.5)
    ax.set_ylabel("worst-case ReRo bound (log scale; dotted: the prior)")
    return _finish_budget_axes(ax, rero, simulation)


def plot_cut(
    table: pd.DataFrame, ax: Axes | None = None, simulation: bool = True, pool_size: int | None = None
) -> Axes:
    """The dose-response: relative cut of Recall@1 (``r1_cut``, at pool size ``pool_size``; ``None``: the full
    database) against eps, with its CI as error bars."""
    ax = _new(ax)
    x = budget_positions(table)
    cut = table["r1_cut"].astype(float).to_numpy()
    lo = table["r1_cut_ci_low"].astype(float).to_numpy()
    hi = table["r1_cut_ci_high"].astype(float).to_numpy()
    yerr = np.vstack([np.clip(cut - lo, 0, None), np.clip(hi - cut, 0, None)])
    ax.errorbar(x, cut, yerr=np.nan_to_num(yerr), fmt="o-", capsize=3, label="cut of Recall@1 (95% CI)")
    ax.axhline(0.0, color="0.4", ls=":", lw=1, label="no cut (pretrained heads)")
    ax.axhline(1.0, color=PALETTE["green"], ls=":", lw=1, label="re-linkage removed entirely")
    ax.set_ylabel(f"relative cut of Recall@1 at N = {pool_size_label(pool_size)}")
    return _finish_budget_axes(ax, table, simulation)


def plot_relinkage(
    recall: pd.DataFrame, pool_size: int | None, k: int = 1, ax: Axes | None = None, simulation: bool = True
) -> Axes:
    """Recall@k at pool size ``pool_size`` (N; ``None``: the full database) for random and
    pathology-matched pools against eps, with the chance lines; ``recall``: the sweep's long table."""
    ax = _new(ax)
    x = pd.Series(budget_positions(recall), index=recall.index)
    for pool, style, name in (("random", "o-", "random pools"), ("matched", "s--", "pathology-matched pools")):
        rows = select_recall(recall, pool, k, pool_size)
        if len(rows):
            ax.plot(x[rows.index].to_numpy(), rows["recall"], style, label=f"Recall@{k}, {name}")
    for pool, color, name in (
        ("random", "0.45", "chance 1/N (random pools)"),
        ("matched", PALETTE["orange"], "effective chance (matched pools: the pool a query gets)"),
    ):
        rows = select_recall(recall, pool, k, pool_size)
        if len(rows):
            chance = float((rows["recall"].astype(float) / rows["lift"].astype(float)).median())
            if np.isfinite(chance):
                ax.axhline(chance, color=color, ls=":", lw=1, label=f"{name} = {chance:.3g}")
    ax.set_ylabel(f"Recall@{k} at N = {pool_size_label(pool_size)}")
    ax.set_ylim(bottom=0)
    return _finish_budget_axes(ax, recall, simulation)


def plot_budget_utility(table: pd.DataFrame, ax: Axes | None = None, simulation: bool = True) -> Axes:
    """Image-side linear-probe and zero-shot (cross-modal) macro AUROC against eps."""
    ax = _new(ax)
    x = budget_positions(table)
    for col, style, name in (
        ("probe_macro_auroc", "o-", "linear probe (image side)"),
        ("zero_shot_macro_auroc", "s-", "zero-shot (cross-modal)"),
    ):
        if col in table.columns:
            ax.plot(x, table[col], style, label=f"{name} macro AUROC")
    ax.axhline(0.5, color="0.5", ls=":", lw=1, label="chance AUROC 0.5")
    ax.set_ylabel("macro AUROC over 14 labels")
    return _finish_budget_axes(ax, table, simulation)


def plot_tradeoff_curves(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], ax: Axes | None = None) -> Axes:
    """Trade-off curves beta(alpha) (type-II against type-I error) on log-x axes; ``(label, alpha, beta)``."""
    ax = _new(ax)
    for name, alpha, beta in curves:
        ax.plot(alpha, beta, label=name)
    a = np.logspace(-6, 0, 200)
    ax.plot(a, 1 - a, ":", color="0.5", lw=1, label="perfect privacy (1 - alpha)")
    ax.set_xscale("log")
    ax.set_xlabel("type-I error alpha (log scale)")
    ax.set_ylabel("type-II error beta")
    readable_log_ticks(ax)
    legend_outside(ax, fontsize=7)
    return ax
