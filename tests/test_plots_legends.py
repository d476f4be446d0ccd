"""Figures that read at a glance: every figure helper of relink_lib/plots (on small synthetic inputs) keeps its
legend off the plotted points, prints plain numbers on log axes, draws the paper's marks as "paper: ...", and
takes its colours from the colour-blind-safe palette."""

from __future__ import annotations

import math
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from relink_lib.plots import adaptive as p_adaptive  # noqa: E402
from relink_lib.plots import audit as p_audit  # noqa: E402
from relink_lib.plots import dp as p_dp  # noqa: E402
from relink_lib.plots import models as p_models  # noqa: E402
from relink_lib.plots import risk as p_risk  # noqa: E402
from relink_lib.plots import summary as p_summary  # noqa: E402
from relink_lib.plots import threat as p_threat  # noqa: E402
from relink_lib.plots.common import (  # noqa: E402
    CYCLE,
    PALETTE,
    PAPER_LABEL,
    figure_legend_overlaps,
    legend_outside,
    legend_overlaps,
    plain_number,
    readable_log_ticks,
    set_style,
)

# ----------------------------------------------------------------------------------------- synthetic inputs


@pytest.fixture(scope="module")
def audit_tables():
    from relink_lib.audit.stage import audit_rung, rank_histogram
    from relink_lib.config import AuditConfig
    from relink_lib.labels import CHEXPERT_LABELS

    rng = np.random.default_rng(0)
    m = 90
    labels = np.zeros((m, 14))
    labels[:, 0] = rng.integers(0, 2, m)
    pairs = pd.DataFrame(labels, columns=CHEXPERT_LABELS)
    pairs.insert(0, "patient_id", np.arange(m) // 2)
    pairs["mentions_device"] = rng.random(m) < 0.5
    settings = AuditConfig(
        pool_sizes=(10, 50, None), ks=(1, 5), n_boot=20, chunk_size=64, device="cpu", nan_as=0.0, uncertain_as=-1.0
    )
    tabs, parts, hists = [], [], {}
    for rung, noise in enumerate((2.0, 0.5)):
        z = rng.normal(size=(m, 8))
        ra = audit_rung(z + noise * rng.normal(size=(m, 8)), z + noise * rng.normal(size=(m, 8)), pairs, settings)
        name = f"rung{rung}"
        for frame, out in ((ra.table, tabs), (ra.breakdown, parts)):
            f = frame.copy()
            f.insert(0, "rung", rung)
            f.insert(0, "model", name)
            out.append(f)
        hists[name] = rank_histogram(ra.ranks["random"])
    return pd.concat(tabs, ignore_index=True), pd.concat(parts, ignore_index=True), hists


def _variant_recall() -> pd.DataFrame:
    rows = []
    for pool in ("random", "matched"):
        for v, scale in (("pretrained", 1.0), ("dp", 0.4), ("nonprivate", 0.9), ("reinit", 0.1)):
            for n in (10, 100, 1000, 2000):
                r = min(1.0, scale * 5 / n)
                rows.append(
                    {
                        "pool": pool,
                        "k": 1,
                        "pool_size": n,
                        "variant": v,
                        "recall": r,
                        "ci_low": r * 0.8,
                        "ci_high": min(1.0, r * 1.2),
                        "chance": 1 / n,
                        "full_database": n == 2000,
                    }
                )
    return pd.DataFrame(rows)


def _by_variant(column: str, values: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"model": m, "variant": v, "k": 1, column: x * (1 + 0.1 * i)}
            for i, m in enumerate(("rung-a", "rung-b"))
            for v, x in values.items()
        ]
    )


def _frontier():
    from test_dp_frontier import _fake_frontier, _result

    fake = _fake_frontier()
    fake["output_perturbation_curve"] = [
        {"scale": 0.1, "drift": 0.1, "r1_reduction": 0.05},
        {"scale": 1.0, "drift": 1.0, "r1_reduction": 0.5},
    ]
    return _result(fake)


def _factorial():
    from test_dp_factorial_summary import _result

    return _result(clear=True)


def _adaptive():
    import dataclasses

    from test_adaptive_attacks import _result

    from relink_lib.adaptive.stage import AttackOutcome

    base = _result()
    outcomes = [
        AttackOutcome(v, "passive", src, 0, 0.1, lift / 2, (lift / 3, lift), 0.01, lift, (lift / 2, lift * 1.5))
        for v, lift in (("pretrained", 40.0), ("dp", 5.0))
        for src in ("val",)
    ]
    for attack, scale in (("ridge", 1.0), ("cca", 0.8), ("new_heads", 0.6)):
        for src in ("val", "external"):
            for m in (10, 100, 1000):
                lift = scale * 10 * math.log10(m)
                outcomes.append(
                    AttackOutcome("dp", attack, src, m, 0.1, lift, (lift / 2, lift * 2), 0.01, lift, (0, 1))
                )
    per_patient = {c: tuple(np.sort(np.random.default_rng(i).random(200))) for i, c in enumerate(("full", "dp"))}
    return dataclasses.replace(
        base, outcomes=tuple(outcomes), sources={"val": 30, "external": 30}, per_patient=per_patient
    )


def _histories() -> dict[str, pd.DataFrame]:
    out = {}
    for i, name in enumerate(("0: generic", "1: captions", "2: full reports")):
        steps = np.arange(40)
        out[name] = pd.DataFrame(
            {
                "step": steps,
                "epoch": steps / 10,
                "loss": 4.0 - 0.05 * steps * (1 + i) / 3,
                "val_loss": np.where(steps % 10 == 9, 3.9 - 0.04 * steps, np.nan),
            }
        )
    return out


def _zero_shot() -> pd.DataFrame:
    from relink_lib.labels import CHEXPERT_LABELS

    rows = [
        {"rung": r, "label": lab, "auroc": 0.5 + 0.02 * i + 0.1 * j}
        for j, r in enumerate(("a", "b"))
        for i, lab in enumerate(list(CHEXPERT_LABELS) + ["macro"])
    ]
    return pd.DataFrame(rows)


def _risk_effects() -> pd.DataFrame:
    from relink_lib.audit.risk_factors import FEATURES, PROPERTY_LABELS

    n = len(FEATURES)
    effect = np.linspace(-0.03, 0.1, n)
    return pd.DataFrame(
        {
            "feature": list(FEATURES),
            "label": [PROPERTY_LABELS[f] for f in FEATURES],
            "effect": effect,
            "ci_low": effect - 0.02,
            "ci_high": effect + 0.02,
            "model": "m",
            "rung": 0,
        }
    )


def _summary_points() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "rung": r,
                "model": f"m{r}",
                "n": n,
                "full_database": False,
                "lift": lift,
                "lift_ci_low": lift * 0.8,
                "lift_ci_high": lift * 1.2,
            }
            for r in (0, 1, 2)
            for n, lift in ((100, 2.0 + 5 * r), (10_000, 3.0 + 20 * r))
        ]
    )


def _tradeoff():
    alpha = np.logspace(-6, 0, 50)
    return [(f"eps = {e:g}", alpha, np.clip(1 - alpha * math.exp(e), 0, 1)) for e in (0.34, 1.0, 8.0)]


# --------------------------------------------------------------- every figure helper, as the notebooks call them


def _one(fn):
    """A helper drawn on the notebooks' usual single axes (6.4 x 4 in)."""

    def draw():
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        fn(ax)
        return fig

    return draw


def _row(n, fn, width=5.0):
    """A helper drawn on each panel of a row of ``n`` axes (side-by-side panels, as chapters 6-7 draw them)."""

    def draw():
        fig, axes = plt.subplots(1, n, figsize=(width * n, 4.0))
        for i, ax in enumerate(np.atleast_1d(axes)):
            fn(ax, i)
        return fig

    return draw


def _figures(audit_tables):
    table, breakdown, hists = audit_tables
    both = pd.concat([table.assign(split="test"), table.assign(split="train", recall=table.recall * 1.5)])
    from test_risk_summary import rero_table, sweep

    risk_table, risk_recall = sweep()
    fr, fac, adaptive = _frontier(), _factorial(), _adaptive()
    recall = _variant_recall()
    return {
        # chapter 1 and the summary
        "threat.plot_chance_vs_pool": _one(lambda ax: p_threat.plot_chance_vs_pool(ax=ax)),
        "summary.plot_lift_summary": _one(lambda ax: p_summary.plot_lift_summary(_summary_points(), ax=ax)),
        # chapter 3
        "models.plot_ladder_training": _one(lambda ax: p_models.plot_ladder_training(_histories(), ax=ax)),
        "models.plot_zero_shot": _one(lambda ax: p_models.plot_zero_shot(_zero_shot(), ax=ax)),
        # chapters 4-5 (helpers that leave the legend to the caller get legend_outside, as a notebook should)
        "audit.plot_recall_vs_pool": _row(2, lambda ax, i: (p_audit.plot_recall_vs_pool(table, 1 + 4 * i, ax=ax),)),
        "audit.plot_recall_vs_pool+legend": _one(
            lambda ax: (p_audit.plot_recall_vs_pool(table, 1, ax=ax), legend_outside(ax))
        ),
        "audit.plot_lift_vs_pool+legend": _one(
            lambda ax: (p_audit.plot_lift_vs_pool(table, 1, ax=ax), legend_outside(ax))
        ),
        "audit.plot_rank_distribution+legend": _one(
            lambda ax: (p_audit.plot_rank_distribution(hists, ax=ax), legend_outside(ax))
        ),
        "audit.plot_random_vs_matched+legend": lambda: _random_vs_matched(table),
        "audit.plot_detail_split+legend": _one(
            lambda ax: (
                p_audit.plot_detail_split(breakdown, ax=ax, model="rung1", pool_size=10, k=1),
                legend_outside(ax, "below"),
            )
        ),
        "audit.plot_seen_unseen+legend": _one(
            lambda ax: (p_audit.plot_seen_unseen(both, 1, ax=ax), legend_outside(ax, "below"))
        ),
        "audit.plot_risk_factors+legend": _one(
            lambda ax: (p_audit.plot_risk_factors(_risk_effects(), ax=ax), legend_outside(ax, "below"))
        ),
        # chapters 6-8
        "dp.plot_epsilon_spent": _one(
            lambda ax: p_dp.plot_epsilon_spent(
                pd.DataFrame({"step": np.arange(10), "epsilon_spent": np.linspace(0, 0.34, 10)}), 0.34, ax=ax
            )
        ),
        "dp.plot_recall_variants": _one(lambda ax: p_dp.plot_recall_variants(recall, ax=ax)),
        "dp.plot_recall_variants (two panels)": _row(
            2, lambda ax, i: p_dp.plot_recall_variants(recall, ax=ax, pool=("random", "matched")[i]), width=5.5
        ),
        "dp.plot_reductions": _one(
            lambda ax: p_dp.plot_reductions(
                _by_variant("relative_reduction", {"dp": 0.5, "nonprivate": 0.1, "reinit": 0.9}), ax=ax
            )
        ),
        "dp.plot_utility_by_variant (three panels)": _row(
            3,
            lambda ax, i: p_dp.plot_utility_by_variant(
                _by_variant("auroc", {"pretrained": 0.8, "dp": 0.78, "reinit": 0.6}), "auroc", "AUROC", ax=ax
            ),
        ),
        "dp.plot_frontier": _one(lambda ax: p_dp.plot_frontier(fr, ax=ax)),
        "dp.plot_cut_vs_drift": _one(lambda ax: p_dp.plot_cut_vs_drift(fr, ax=ax)),
        "dp.plot_scaling": _one(lambda ax: p_dp.plot_scaling(fr, ax=ax)),
        "dp.plot_factorial_cuts": _one(lambda ax: p_dp.plot_factorial_cuts(fac, ax=ax)),
        "dp.plot_learning_curve": _one(lambda ax: p_dp.plot_learning_curve(fac, ax=ax)),
        "dp.plot_confirmation_curve (two panels)": _row(
            2, lambda ax, i: p_dp.plot_confirmation_curve(fac, k=1, ax=ax), width=6.0
        ),
        # chapter 9
        "risk.plot_risks": _one(lambda ax: p_risk.plot_risks(risk_table, ax=ax)),
        "risk.plot_rero_priors": _one(lambda ax: p_risk.plot_rero_priors(rero_table(), ax=ax)),
        "risk.plot_cut": _one(lambda ax: p_risk.plot_cut(risk_table, ax=ax, pool_size=100)),
        "risk.plot_relinkage": _one(lambda ax: p_risk.plot_relinkage(risk_recall, pool_size=100, ax=ax)),
        "risk.plot_budget_utility": _one(lambda ax: p_risk.plot_budget_utility(risk_table, ax=ax)),
        "risk.plot_tradeoff_curves": _one(lambda ax: p_risk.plot_tradeoff_curves(_tradeoff(), ax=ax)),
        # chapter 11
        "adaptive.plot_lift_vs_m": lambda: p_adaptive.plot_lift_vs_m(adaptive, "dp"),
        "adaptive.plot_tail": lambda: p_adaptive.plot_tail(adaptive),
    }


def _random_vs_matched(table):
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.0))
    p_audit.plot_random_vs_matched(table, k=1, axes=axes)
    legend_outside(axes[0])
    return fig


PLOT_MODULES = (p_adaptive, p_audit, p_dp, p_models, p_risk, p_summary, p_threat)


@pytest.fixture(scope="module")
def drawn(audit_tables):
    """Every figure of :func:`_figures`, drawn once in the book's style (name -> figure; closed afterwards)."""
    set_style()
    with plt.rc_context({"figure.max_open_warning": 0}):
        figures = {name: draw() for name, draw in _figures(audit_tables).items()}
    for fig in figures.values():
        fig.canvas.draw()
    yield figures
    plt.close("all")


def test_every_plotting_function_is_drawn_here(drawn):
    """The list above covers every public ``plot_*`` of relink_lib/plots (but cohort.py, tested with its chapter)."""
    covered = {re.sub(r"[ +].*$", "", name) for name in drawn}
    public = {
        f"{mod.__name__.rsplit('.', 1)[1]}.{name}"
        for mod in PLOT_MODULES
        for name in dir(mod)
        if name.startswith("plot_") and getattr(getattr(mod, name), "__module__", "") == mod.__name__
    }
    assert public <= covered, f"figure helpers not drawn by this test: {sorted(public - covered)}"


def test_no_legend_covers_a_plotted_point(drawn):
    failures = {}
    for name, fig in drawn.items():
        for i, hits in figure_legend_overlaps(fig).items():
            failures[f"{name}, axes {i}"] = hits[:3]
    assert not failures, f"legends over plotted points: {failures}"
    assert sum(ax.get_legend() is not None for fig in drawn.values() for ax in fig.get_axes()) >= 25


def test_every_scattered_point_lies_inside_its_axes(drawn):
    """No marker of a scatter is cut off at the axes' edge (a log or symlog scale set after the artists can
    leave the limits short of the data)."""
    from matplotlib.collections import PathCollection

    outside = {}
    for name, fig in drawn.items():
        for i, ax in enumerate(fig.get_axes()):
            view = ax.bbox
            for coll in ax.collections:
                if not isinstance(coll, PathCollection) or coll.get_offset_transform() != ax.transData:
                    continue
                xy = ax.transData.transform(np.asarray(coll.get_offsets(), dtype=float))
                xy = xy[np.isfinite(xy).all(axis=1)]
                sizes = coll.get_sizes()  # points^2: half a marker's width, in pixels, must fit too
                r = 0.5 * np.sqrt(float(sizes.max()) if len(sizes) else 36.0) * fig.dpi / 72.0 * 0.9
                bad = (
                    (xy[:, 0] - r < view.x0)
                    | (xy[:, 0] + r > view.x1)
                    | (xy[:, 1] - r < view.y0)
                    | (xy[:, 1] + r > view.y1)
                )
                if bad.any():
                    outside[f"{name}, axes {i}"] = f"{coll.get_label()}: {int(bad.sum())} point(s)"
    assert not outside, f"scatter points outside their axes: {outside}"


def test_no_legend_sits_inside_the_data_area(drawn):
    """Outside means outside: a legend box does not intersect its axes' data area."""
    inside = []
    for name, fig in drawn.items():
        for i, ax in enumerate(fig.get_axes()):
            legend = ax.get_legend()
            if legend is None:
                continue
            box, view = legend.get_window_extent(), ax.bbox
            if box.x0 < view.x1 - 1 and box.x1 > view.x0 + 1 and box.y0 < view.y1 - 1 and box.y1 > view.y0 + 1:
                inside.append(f"{name}, axes {i}")
    assert not inside, f"legends inside the data area: {inside}"


def test_the_overlap_check_sees_a_legend_over_the_data():
    """The control: a legend forced onto the points is reported, with the artist that it covers."""
    fig, ax = plt.subplots()
    x = np.linspace(0, 1, 50)
    ax.plot(x, np.full_like(x, 0.9), "o", label="top row")
    ax.scatter(x, np.full_like(x, 0.1), label="bottom row")
    ax.bar([0.5], [0.95], width=0.05, label="bar")
    ax.legend(loc="upper left")
    hits = legend_overlaps(ax)
    assert any(h.startswith("top row") for h in hits)
    ax.legend(loc="lower left")
    assert any(h.startswith("bottom row") for h in legend_overlaps(ax))
    ax.legend(loc="center")
    assert any(h.startswith("bar") for h in legend_overlaps(ax))
    legend_outside(ax)
    assert legend_overlaps(ax) == []
    # reference lines are not points: an axhline under the legend is no overlap
    fig2, ax2 = plt.subplots()
    ax2.plot([0, 1], [0, 0.1], "o", label="low points")
    ax2.axhline(0.9, label="reference")
    ax2.legend(loc="upper right")
    assert legend_overlaps(ax2) == []
    plt.close("all")


def test_legend_outside_goes_below_when_a_panel_sits_beside():
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax in axes:
        ax.plot([1, 2], [1, 2], label="line")
        ax.set_xlabel("x label")
    left = legend_outside(axes[0])
    fig.canvas.draw()
    assert left.get_window_extent().y1 < axes[0].xaxis.get_tightbbox().y0 + 1  # under the x label
    fig2, ax2 = plt.subplots()
    ax2.plot([1, 2], [1, 2], label="line")
    right = legend_outside(ax2)
    fig2.canvas.draw()
    assert right.get_window_extent().x0 > ax2.bbox.x1
    with pytest.raises(ValueError, match="where"):
        legend_outside(ax2, "inside")
    fig3, ax3 = plt.subplots()
    ax3.plot([1, 2], [1, 2])  # nothing labelled: no legend
    assert legend_outside(ax3) is None
    plt.close("all")


@pytest.mark.parametrize(
    "value, want",
    [(1, "1"), (10, "10"), (1000, "1,000"), (1e6, "1,000,000"), (0.01, "0.01"), (1e-4, "0.0001"), (-10, "-10")],
)
def test_plain_numbers_on_log_axes(value, want):
    assert plain_number(value) == want


def test_log_and_symlog_axes_print_plain_numbers(drawn):
    set_style()
    fig, ax = plt.subplots()
    ax.plot([0.5, 3, 40, 900], [0.001, 0.01, 0.1, 1])
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_yscale("log")
    readable_log_ticks(ax)
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
    assert labels and not any("10^" in s or "e+" in s or "e-" in s for s in labels), labels
    assert {"0", "1", "10", "100"} <= set(labels) and {"0.001", "0.01", "0.1"} <= set(labels)
    # every helper's log axes: no 10^n where plain numbers fit
    plt.close(fig)
    bad = {}
    for name, f in drawn.items():
        for i, a in enumerate(f.get_axes()):
            for axis, ticks in (("x", a.get_xticklabels()), ("y", a.get_yticklabels())):
                scale = a.xaxis.get_scale() if axis == "x" else a.yaxis.get_scale()
                texts = [t.get_text() for t in ticks if t.get_text()]
                if scale in ("log", "symlog") and any("10^" in s for s in texts):
                    lim = a.get_xlim() if axis == "x" else a.get_ylim()
                    if min(abs(v) for v in lim if v) >= 1e-4 and max(abs(v) for v in lim) < 1e7:
                        bad[f"{name}, axes {i}, {axis}"] = texts
    assert not bad, f"10^n tick labels where plain numbers fit: {bad}"


def test_the_paper_marks_say_paper_in_the_legend(drawn):
    """Every figure that draws the paper's numbers names them "paper: ..." in its legend."""
    with_paper = (
        "threat.plot_chance_vs_pool",
        "summary.plot_lift_summary",
        "audit.plot_lift_vs_pool+legend",
        "dp.plot_reductions",
        "dp.plot_frontier",
        "dp.plot_scaling",
        "dp.plot_factorial_cuts",
    )
    for name in with_paper:
        fig = drawn[name]
        texts = [t.get_text() for ax in fig.get_axes() if ax.get_legend() for t in ax.get_legend().get_texts()]
        assert any(t.startswith(f"{PAPER_LABEL}:") for t in texts), (name, texts)


def test_palette_is_okabe_ito_and_no_helper_uses_tableau_colours():
    okabe_ito = {"#000000", "#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7"}
    assert {c.lower() for c in CYCLE} <= okabe_ito
    assert {PALETTE[k].lower() for k in PALETTE if k != "gray"} <= okabe_ito
    set_style()
    assert [to_hex(c["color"]) for c in plt.rcParams["axes.prop_cycle"]] == [c.lower() for c in CYCLE]
    import inspect

    for mod in PLOT_MODULES:
        assert "tab:" not in inspect.getsource(mod), f"{mod.__name__} names a tableau colour"


def test_dp_points_and_controls_have_distinct_marker_shapes():
    dp_markers = {st["marker"] for st in p_dp.FRONTIER_STYLE.values()}
    control_markers = {m for m, _, _ in p_dp.CONTROL_STYLE.values()}
    assert not dp_markers & control_markers
    variant_markers = [st["marker"] for st in p_dp.VARIANT_STYLE.values()]
    assert len(set(variant_markers)) == len(variant_markers)
    hatches = [st["hatch"] for st in p_dp.VARIANT_STYLE.values() if st["label"] != "pretrained heads"]
    assert len(set(hatches)) == len(hatches)


def test_figures_have_an_opaque_white_background():
    set_style()
    fig, ax = plt.subplots()
    assert to_hex(fig.get_facecolor()) == "#ffffff" and to_hex(ax.get_facecolor()) == "#ffffff"
    assert plt.rcParams["savefig.facecolor"] == "white"
    plt.close(fig)
