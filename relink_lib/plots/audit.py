"""Figures of chapters 4 and 5: recall and lift against pool size, rank distributions, matched pools, detail split.

All take the tables of :mod:`relink_lib.audit.stage` (columns ``model, rung, pool, pool_size,
k, recall, chance, lift, full_database, ci_low, ci_high, ...``) and draw on given axes. Helpers
that draw no legend leave it to the caller, who places it outside the data with
:func:`relink_lib.plots.common.legend_outside`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from ..paper import PAPER
from .common import (
    PALETTE,
    PAPER_COLOR,
    clip_for_log,
    finish_axes,
    label_simulation,
    log_limits,
    log_pool_axis,
    paper_label,
    readable_log_ticks,
)

__all__ = [
    "plot_recall_vs_pool",
    "plot_lift_vs_pool",
    "plot_rank_distribution",
    "plot_random_vs_matched",
    "plot_detail_split",
    "plot_seen_unseen",
    "plot_risk_factors",
    "rung_colors",
]


def rung_colors(models: Sequence[str]) -> dict[str, tuple]:
    """One colour per model, light (least specialised) to dark (most): viridis, readable under colour-vision
    deficiencies and in greyscale."""
    cmap = plt.get_cmap("viridis")
    n = max(len(models), 1)
    return {m: cmap(0.15 + 0.7 * i / max(n - 1, 1)) for i, m in enumerate(models)}


def _ordered_models(table: pd.DataFrame) -> list[str]:
    return list(table.sort_values("rung")["model"].drop_duplicates())


def _select(table: pd.DataFrame, pool: str, k: int, split: str = "test") -> pd.DataFrame:
    rows = table[(table["pool"] == pool) & (table["k"] == k)]
    if "split" in rows.columns:
        rows = rows[rows["split"] == split]
    if rows.empty:
        raise ValueError(f"table: no rows with pool={pool!r} and k={k}")
    return rows.sort_values("pool_size")


def _full_size(rows: pd.DataFrame) -> int | None:
    full = rows[rows["full_database"].astype(bool)]
    return int(full["pool_size"].max()) if len(full) else None


def _rows_by_rung(
    table: pd.DataFrame, pool: str, k: int, split: str = "test"
) -> tuple[list[tuple[str, pd.DataFrame]], set[int], int | None]:
    """Per rung (least specialised first) its rows of ``pool`` and ``k``; every pool size seen; the
    full-database size."""
    lines, sizes, full = [], set(), None
    for model in _ordered_models(table):
        rows = _select(table[table["model"] == model], pool, k, split)
        sizes.update(rows["pool_size"].astype(int))
        full = _full_size(rows) or full
        lines.append((model, rows))
    return lines, sizes, full


def plot_recall_vs_pool(
    table: pd.DataFrame,
    k: int,
    ax: Axes | None = None,
    *,
    pool: str = "random",
    split: str = "test",
    simulation: bool = True,
) -> Axes:
    """Recall@K against N (log-log), one line per rung with its 95% CI band, and the chance line.

    The y range fits the recalls and chance (a CI reaching zero is drawn clipped at the lower
    limit instead of stretching the log axis); where the tie bounds differ from the fair
    recall, a vertical bar spans them (ties against to ties for).
    """
    ax = plt.subplots()[1] if ax is None else ax
    colors = rung_colors(_ordered_models(table))
    lines, sizes, full = _rows_by_rung(table, pool, k, split)
    rows = lines[-1][1]
    grid = np.array(sorted(sizes), dtype=float)
    chance = rows.drop_duplicates("pool_size").set_index("pool_size")["chance"].reindex(grid.astype(int))
    lo, hi = log_limits([*np.concatenate([r["recall"].to_numpy() for _, r in lines]), *chance.to_numpy()])
    hi = min(hi, 1.5)
    for model, rows in lines:
        ax.plot(rows["pool_size"], clip_for_log(rows["recall"], lo), "o-", color=colors[model], label=model, ms=4)
        zero = rows[rows["recall"] <= 0]
        if len(zero):  # a recall of exactly 0 sits on the lower edge, marked with a downward triangle
            ax.plot(zero["pool_size"], np.full(len(zero), lo), "v", color=colors[model], ms=7, clip_on=False)
        if {"ci_low", "ci_high"} <= set(rows.columns):
            ax.fill_between(
                rows["pool_size"],
                clip_for_log(rows["ci_low"], lo),
                clip_for_log(rows["ci_high"], lo),
                color=colors[model],
                alpha=0.2,
                lw=0,
            )
        if {"recall_ties_against", "recall_ties_for"} <= set(rows.columns):
            tied = rows[(rows["recall_ties_for"] - rows["recall_ties_against"]).abs() > 1e-9]
            if len(tied):
                ax.vlines(
                    tied["pool_size"],
                    clip_for_log(tied["recall_ties_against"], lo),
                    clip_for_log(tied["recall_ties_for"], lo),
                    color=colors[model],
                    lw=2.5,
                    alpha=0.6,
                )
    ax.plot(grid, chance.to_numpy(), "k--", lw=1, label="chance" if pool == "random" else "chance (matched pools)")
    ax.set_yscale("log")
    ax.set_ylim(lo, hi)
    log_pool_axis(ax, sorted(sizes), full_size=full)
    return finish_axes(ax, simulation, ylabel=f"Recall@{k} (log scale)", title=f"Recall@{k}, {pool} pools")


def plot_lift_vs_pool(
    table: pd.DataFrame,
    k: int = 1,
    ax: Axes | None = None,
    *,
    pool: str = "random",
    paper: bool = True,
    simulation: bool = True,
) -> Axes:
    """Lift over chance against N for every rung, with the paper's R@1 headline as labelled marks (K = 1)."""
    ax = plt.subplots()[1] if ax is None else ax
    colors = rung_colors(_ordered_models(table))
    lines, sizes, full = _rows_by_rung(table, pool, k)
    values = []
    for model, rows in lines:
        values.extend(rows["lift"].tolist())
        yerr = None
        if {"lift_ci_low", "lift_ci_high"} <= set(rows.columns):
            yerr = np.vstack([rows["lift"] - rows["lift_ci_low"], rows["lift_ci_high"] - rows["lift"]]).clip(min=0)
        ax.errorbar(
            rows["pool_size"], rows["lift"], yerr=yerr, fmt="o-", color=colors[model], label=model, ms=4, capsize=2
        )
    ax.axhline(1.0, color="k", ls="--", lw=1, label="chance (lift = 1)")
    if paper and k == 1:
        for n, lift in PAPER.r1_lift_by_pool.items():
            ax.plot(
                n,
                lift,
                marker="*",
                ms=12,
                color=PAPER_COLOR,
                ls="none",
                label=paper_label("R@1 lift of its strongest model") if n == 100 else None,
            )
            ax.annotate(
                f"paper: {lift:g}x\n(N = {n:,})",
                (n, lift),
                textcoords="offset points",
                xytext=(6, 6),
                fontsize=8,
                color=PAPER_COLOR,
            )
            sizes.add(n)
            values.append(lift)
    ax.set_yscale("log")
    ax.set_ylim(*log_limits([*values, 1.0]))
    sel = (table["pool"] == pool) & (table["k"] == k) & (table["lift"] <= 0)
    if "split" in table.columns:
        sel &= table["split"] == "test"
    for n, model in zip(
        table.loc[sel, "pool_size"], table.loc[sel, "model"]
    ):  # a lift of exactly 0 sits on the lower edge, marked with a downward triangle
        ax.plot(n, ax.get_ylim()[0], "v", color=colors[model], ms=7, clip_on=False)
    log_pool_axis(ax, sorted(sizes), full_size=full)
    return finish_axes(
        ax,
        simulation,
        ylabel=f"lift of Recall@{k} over chance (log scale)",
        title=f"Lift over chance, K = {k}, {pool} pools",
    )


def plot_rank_distribution(
    histograms: Mapping[str, Mapping[str, list]], ax: Axes | None = None, *, simulation: bool = True
) -> Axes:
    """Cumulative share of queries whose true report ranks within r, against r (log), one line per model.

    ``histograms``: model -> ``{"edges": [...], "counts": [...]}`` (from
    :func:`~relink_lib.audit.stage.rank_histogram`), in rung order.
    """
    ax = plt.subplots()[1] if ax is None else ax
    colors = rung_colors(list(histograms))
    for model, h in histograms.items():
        edges = np.asarray(h["edges"], dtype=float)
        counts = np.asarray(h["counts"], dtype=float)
        cdf = np.cumsum(counts) / counts.sum()
        # rank < edges[i+1] for a share cdf[i]: draw at the largest rank of each bin
        ax.step(edges[1:] - 1, cdf, where="post", color=colors[model], label=model)
        n = edges[-1] - 1
    ranks = np.logspace(0, np.log10(max(n, 1)), 100)
    ax.plot(ranks, ranks / n, "k--", lw=1, label="chance (uniform rank)")
    ax.set_xscale("log")
    ax.set_xlabel("rank r of the true report in the full held-out database (log scale)")
    ax.set_ylabel("share of images with rank <= r")
    ax.set_ylim(0, 1.02)
    readable_log_ticks(ax)
    ax.set_title("Where the true report lands")
    if simulation:
        label_simulation(ax)
    return ax


def plot_random_vs_matched(
    table: pd.DataFrame,
    k: int = 1,
    axes: Sequence[Axes] | None = None,
    *,
    matched: str = "matched",
    simulation: bool = True,
) -> Sequence[Axes]:
    """Two panels with a shared y axis: Recall@K against N for random and pathology-matched pools (``axes``: two)."""
    axes = plt.subplots(1, 2, figsize=(10, 3.8))[1] if axes is None else axes
    if len(axes) != 2:
        raise ValueError(f"axes: expected 2 axes (random, matched), got {len(axes)}")
    for ax, pool in zip(axes, ("random", matched)):
        plot_recall_vs_pool(table, k, ax=ax, pool=pool, simulation=simulation)
    lo = min(ax.get_ylim()[0] for ax in axes)
    hi = max(ax.get_ylim()[1] for ax in axes)
    for ax in axes:
        ax.set_ylim(lo, hi)
    return axes


def plot_detail_split(
    breakdown: pd.DataFrame,
    ax: Axes | None = None,
    *,
    model: str,
    pool_size: int,
    k: int = 1,
    metric: str = "lift",
    simulation: bool = True,
) -> Axes:
    """Recall@K (``metric="recall"``) or its lift over each subset's own chance (``"lift"``, the default)
    by instance detail mentioned / not mentioned, random and matched pools, with 95% CIs.

    Lift is the fair comparison for matched pools: subsets can differ in matched-pool size and so
    in chance.
    """
    ax = plt.subplots()[1] if ax is None else ax
    if metric not in ("recall", "lift"):
        raise ValueError(f"metric={metric!r}: expected 'recall' or 'lift'")
    lo_col, hi_col = ("ci_low", "ci_high") if metric == "recall" else ("lift_ci_low", "lift_ci_high")
    rows = breakdown[(breakdown["model"] == model) & (breakdown["pool_size"] == pool_size) & (breakdown["k"] == k)]
    if rows.empty:
        raise ValueError(f"breakdown: no rows for model={model!r}, pool_size={pool_size}, k={k}")
    details = list(dict.fromkeys(rows["detail"]))
    pools = list(dict.fromkeys(rows["pool"]))
    width = 0.8 / (2 * len(pools))
    x = np.arange(len(details))
    hatches: dict[bool, str | None] = {True: None, False: "//"}
    palette = {"random": PALETTE["blue"], "matched": PALETTE["orange"], "matched-positive": PALETTE["green"]}
    j = 0
    for pool in pools:
        for mentioned in (True, False):
            sub = (
                rows[(rows["pool"] == pool) & (rows["mentioned"].astype(bool) == mentioned)]
                .set_index("detail")
                .reindex(details)
            )
            err = None
            if {lo_col, hi_col} <= set(sub.columns):
                err = np.vstack([sub[metric] - sub[lo_col], sub[hi_col] - sub[metric]]).clip(min=0)
            ax.bar(
                x + (j - (2 * len(pools) - 1) / 2) * width,
                sub[metric],
                width,
                yerr=err,
                capsize=2,
                color=palette.get(pool, "0.5"),
                alpha=1.0 if mentioned else 0.45,
                edgecolor="0.2",
                lw=0.5,
                label=f"{pool} pools, {'mentioned' if mentioned else 'not mentioned'}",
                hatch=hatches[mentioned],
            )
            j += 1
    if metric == "lift":
        ax.axhline(1.0, color="k", ls="--", lw=1, label="chance (lift = 1)")
    else:
        chance = rows[rows["pool"] == "random"]["chance"]
        if len(chance):
            ax.axhline(float(chance.iloc[0]), color="k", ls="--", lw=1, label="chance (random pools)")
    ax.set_xticks(x)
    ax.set_xticklabels(details)
    ax.set_xlabel("instance detail in the report")
    ax.set_ylabel(
        f"Recall@{k} at N = {pool_size:,}"
        if metric == "recall"
        else f"lift of Recall@{k} over chance, N = {pool_size:,}"
    )
    ax.set_title(f"{model}: what carries the signal")
    if simulation:
        label_simulation(ax)
    return ax


def plot_seen_unseen(table: pd.DataFrame, k: int = 1, ax: Axes | None = None, *, simulation: bool = True) -> Axes:
    """Recall@K against N for the held-out split (solid) and the same-size training sample (dashed), per rung.

    ``table``: the stage table with a ``split`` column (``train`` / ``test``); random pools.
    CI bands are clipped at the lower limit of the log axis.
    """
    ax = plt.subplots()[1] if ax is None else ax
    if "split" not in table.columns or not (table["split"] == "train").any():
        raise ValueError("table: no rows with split='train' (was the training sample audited?)")
    colors = rung_colors(_ordered_models(table))
    sizes: set[int] = set()
    full = None
    series = []
    for model in _ordered_models(table):
        for split, style in (("test", "o-"), ("train", "s--")):
            rows = _select(table[table["model"] == model], "random", k, split)
            sizes.update(rows["pool_size"].astype(int))
            full = full or (_full_size(rows) if split == "test" else None)
            series.append((model, split, style, rows))
    lo, hi = log_limits(np.concatenate([r["recall"].to_numpy() for *_, r in series]).tolist())
    for model, split, style, rows in series:
        ax.plot(
            rows["pool_size"],
            clip_for_log(rows["recall"], lo),
            style,
            color=colors[model],
            ms=4,
            label=f"{model}, {'held-out (unseen)' if split == 'test' else 'trained-on (seen)'}",
        )
        zero = rows[rows["recall"] <= 0]
        if len(zero):  # exactly 0: on the lower edge, a downward triangle
            ax.plot(zero["pool_size"], np.full(len(zero), lo), "v", color=colors[model], ms=7, clip_on=False)
        if {"ci_low", "ci_high"} <= set(rows.columns):
            ax.fill_between(
                rows["pool_size"],
                clip_for_log(rows["ci_low"], lo),
                clip_for_log(rows["ci_high"], lo),
                color=colors[model],
                alpha=0.12,
                lw=0,
            )
    ax.set_yscale("log")
    ax.set_ylim(lo, min(hi, 1.5))
    log_pool_axis(ax, sorted(sizes), full_size=full)
    readable_log_ticks(ax)
    ax.set_ylabel(f"Recall@{k} (log scale)")
    ax.set_title(f"Seen vs unseen pairs, Recall@{k}, random pools")
    if simulation:
        label_simulation(ax)
    return ax


def plot_risk_factors(
    effects: pd.DataFrame,
    ax: Axes | None = None,
    *,
    model: str | None = None,
    simulation: bool = True,
    xlabel: str = "change in expected Recall@1 per unit (others held fixed)",
) -> Axes:
    """Forest plot: effect of each report property on a query's expected Recall@1, with its 95% CI.

    ``effects``: rows of :func:`relink_lib.audit.risk_factors.fit_risk_factors` with ``model``
    (``None`` = the most specialised rung); properties that could not be estimated are left out.
    ``xlabel`` names what ``effect`` is (e.g. an average marginal effect of the adjusted model).
    """
    ax = plt.subplots()[1] if ax is None else ax
    rows = effects
    if "rung" in rows.columns:
        model = model or rows.loc[rows["rung"] == rows["rung"].max(), "model"].iloc[0]
        rows = rows[rows["model"] == model]
    rows = rows.dropna(subset=["effect"])
    if rows.empty:
        raise ValueError(f"effects: no estimated effect for model={model!r}")
    y = np.arange(len(rows))[::-1]
    err = np.vstack([rows["effect"] - rows["ci_low"], rows["ci_high"] - rows["effect"]]).clip(min=0)
    excl = ((rows["ci_low"] > 0) | (rows["ci_high"] < 0)).to_numpy()
    ax.errorbar(rows["effect"], y, xerr=err, fmt="none", ecolor="0.4", capsize=3)
    ax.scatter(rows["effect"][excl], y[excl], color=PALETTE["red"], marker="o", zorder=3, label="95% CI excludes 0")
    ax.scatter(rows["effect"][~excl], y[~excl], color="0.5", marker="s", zorder=3, label="95% CI includes 0")
    ax.axvline(0.0, color="k", lw=1, ls="--")
    ax.set_yticks(y)
    ax.set_yticklabels(rows["label"] if "label" in rows.columns else rows["feature"])
    ax.set_xlabel(xlabel)
    ax.set_title(f"{model}: what makes a study re-linkable" if model else "What makes a study re-linkable")
    if simulation:
        label_simulation(ax)
    return ax
