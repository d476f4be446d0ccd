"""Chapter 4/5 figure helpers: log axes, labelled axes, one line per rung, the paper's marks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from relink_lib.audit.stage import audit_rung, rank_histogram  # noqa: E402
from relink_lib.config import AuditConfig  # noqa: E402
from relink_lib.labels import CHEXPERT_LABELS  # noqa: E402
from relink_lib.plots.audit import (
    plot_detail_split,
    plot_lift_vs_pool,
    plot_random_vs_matched,
    plot_rank_distribution,  # noqa: E402
    plot_recall_vs_pool,
)


@pytest.fixture(scope="module")
def tables():
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


def test_recall_and_lift_figures(tables):
    table, _, _ = tables
    fig, ax = plt.subplots()
    plot_recall_vs_pool(table, 1, ax=ax)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "Recall@1" in ax.get_ylabel() and "pool size" in ax.get_xlabel()
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["rung0", "rung1", "chance"]
    np.testing.assert_allclose(ax.get_lines()[2].get_ydata(), [0.1, 0.02, 1 / 90])
    fig, ax = plt.subplots()
    plot_lift_vs_pool(table, 1, ax=ax)
    stars = [t.get_text() for t in ax.texts if t.get_text().startswith("paper")]
    assert stars == ["paper: 15x\n(N = 100)", "paper: 50x\n(N = 10,000)"]
    plt.close("all")


def test_rank_distribution_and_side_by_side(tables):
    table, _, hists = tables
    fig, ax = plt.subplots()
    plot_rank_distribution(hists, ax=ax)
    assert ax.get_xscale() == "log" and ax.get_ylabel().startswith("share")
    assert ax.get_lines()[0].get_ydata()[-1] == pytest.approx(1.0)
    fig, axes = plt.subplots(1, 2)
    plot_random_vs_matched(table, k=1, axes=axes)
    assert axes[0].get_ylim() == axes[1].get_ylim()
    assert axes[1].get_title() == "Recall@1, matched pools"
    with pytest.raises(ValueError, match="axes"):
        plot_random_vs_matched(table, axes=[axes[0]])
    plt.close("all")


def test_detail_split(tables):
    _, breakdown, _ = tables
    fig, ax = plt.subplots()
    plot_detail_split(breakdown, ax=ax, model="rung1", pool_size=10, k=1, metric="recall")
    assert len(ax.patches) == 4  # {random, matched} x {mentioned, not} for one detail
    assert ax.get_ylabel() == "Recall@1 at N = 10"
    want = breakdown[(breakdown.model == "rung1") & (breakdown.pool_size == 10) & (breakdown.k == 1)]
    heights = sorted(p.get_height() for p in ax.patches)
    np.testing.assert_allclose(heights, sorted(want.recall))
    fig, ax = plt.subplots()
    plot_detail_split(breakdown, ax=ax, model="rung1", pool_size=10, k=1)
    np.testing.assert_allclose(sorted(p.get_height() for p in ax.patches), sorted(want.lift))
    assert ax.get_ylabel().startswith("lift")
    with pytest.raises(ValueError, match="no rows"):
        plot_detail_split(breakdown, ax=ax, model="rung1", pool_size=11, k=1)
    plt.close("all")


def test_zero_ci_does_not_stretch_the_log_axis_and_tie_bounds_are_drawn(tables):
    table, _, _ = tables
    t = table.copy()
    t.loc[t.pool == "random", "ci_low"] = 0.0  # a CI reaching zero
    sel = (t.pool == "random") & (t.k == 1) & (t.pool_size == 10) & (t.model == "rung0")
    t.loc[sel, "recall_ties_against"] = t.loc[sel, "recall"] / 2
    fig, ax = plt.subplots()
    plot_recall_vs_pool(t, 1, ax=ax)
    lo, hi = ax.get_ylim()
    assert lo > 1e-3 and hi <= 1.5
    assert len(ax.collections) == 3  # two CI bands and one tie-bound bar
    plt.close("all")


def test_seen_unseen_and_risk_figures(tables):
    from relink_lib.audit.risk_factors import FEATURES, PROPERTY_LABELS
    from relink_lib.plots.audit import plot_risk_factors, plot_seen_unseen

    table, _, _ = tables
    both = pd.concat([table.assign(split="test"), table.assign(split="train", recall=table.recall * 1.5)])
    fig, ax = plt.subplots()
    plot_seen_unseen(both, 1, ax=ax)
    assert [line.get_label() for line in ax.get_lines()][:2] == ["rung0, held-out (unseen)", "rung0, trained-on (seen)"]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    with pytest.raises(ValueError, match="split='train'"):
        plot_seen_unseen(table.assign(split="test"), 1, ax=ax)
    eff = pd.DataFrame(
        {
            "feature": list(FEATURES),
            "label": [PROPERTY_LABELS[f] for f in FEATURES],
            "effect": [0.1, -0.02, np.nan, 0.0, 0.01, 0.005, -0.03],
            "ci_low": [0.05, -0.05, np.nan, -0.01, 0.0, -0.001, -0.06],
            "ci_high": [0.15, 0.01, np.nan, 0.01, 0.02, 0.01, -0.01],
            "model": "m",
            "rung": 0,
        }
    )
    fig, ax = plt.subplots()
    plot_risk_factors(eff, ax=ax)
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "names a device"
    assert len(ax.get_yticks()) == 6  # the unestimated property is left out
    plt.close("all")


def test_zero_recall_is_marked_on_the_lower_edge(tables):
    table, _, _ = tables
    t = table.copy()
    sel = (t.pool == "random") & (t.k == 1) & (t.pool_size == 90) & (t.model == "rung0")
    t.loc[sel, ["recall", "lift"]] = 0.0
    fig, ax = plt.subplots()
    plot_recall_vs_pool(t, 1, ax=ax)
    marks = [line for line in ax.get_lines() if line.get_marker() == "v"]
    assert len(marks) == 1 and marks[0].get_ydata()[0] == pytest.approx(ax.get_ylim()[0])
    fig, ax = plt.subplots()
    plot_lift_vs_pool(t, 1, ax=ax)
    assert sum(line.get_marker() == "v" for line in ax.get_lines()) == 1
    plt.close("all")
