"""Chapter 9's generated sentences and display table, on small synthetic sweep tables."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from relink_lib.plots.risk import budget_axis, budget_positions, plot_relinkage, plot_risks  # noqa: E402
from relink_lib.risk.summary import (  # noqa: E402
    budget_doors,
    budget_findings,
    budget_pool,
    budget_tradeoff_curves,  # noqa: E402
    budget_view,
    eps_tick_label,
    pool_size_label,
    recall_at,
    sampling_se,
    select_recall,
)

EPS = [0.34, 1.0, 8.0, 32.0, 1e3, 1e6, 1e9, 1e12, 1e15, None]
N_FULL = 220  # the held-out database


def sweep(r1_strict=0.02, r1_no_dp=0.02, attack_high=0.9):
    """A sweep's two tables: per eps, and long (one row per eps, pool, k, N)."""
    rows, recall = [], []
    for i, e in enumerate(EPS):
        frac = i / (len(EPS) - 1)
        rows.append(
            {
                "target_epsilon": e,
                "epsilon": e,
                "noise_multiplier": 5.0 / (1 + i) ** 3 if e else 0.0,
                "sample_rate": 0.08,
                "steps": 39,
                "kappa": 1e-3,
                "worst_case_risk": 1e-3 + 0.99 * frac,
                "relaxed_risk": 1e-3 + 0.9 * frac,
                "realistic_chance": 0.02,
                "realistic_risk": 0.02 if e is not None and e < 1e6 else attack_high,
                "attack_candidates": 50,
                "probe_macro_auroc": 0.8,
                "zero_shot_macro_auroc": 0.7,
            }
        )
        r1 = r1_strict + (r1_no_dp - r1_strict) * frac
        recall += [
            {
                "target_epsilon": e,
                "pool": "random",
                "k": 1,
                "N": 10,
                "full_database": False,
                "recall": 0.3,
                "lift": 3.0,
            },
            {
                "target_epsilon": e,
                "pool": "random",
                "k": 1,
                "N": 100,
                "full_database": False,
                "recall": r1,
                "lift": r1 * 100,
            },
            {
                "target_epsilon": e,
                "pool": "random",
                "k": 1,
                "N": N_FULL,
                "full_database": True,
                "recall": 0.005,
                "lift": 1.0,
            },
            {
                "target_epsilon": e,
                "pool": "matched",
                "k": 1,
                "N": 100,
                "full_database": False,
                "recall": 0.12,
                "lift": 0.12 / 0.057,
            },
        ]
    return pd.DataFrame(rows), pd.DataFrame(recall)


def test_no_comes_back_claim_when_no_dp_is_within_sampling_noise_or_lower():
    same = "\n".join(budget_findings(*sweep(0.021, 0.020), n_test=220, pool=100))
    assert "within two sampling standard errors" in same and "higher" not in same.split("**Utility")[0]
    assert "Recall@1 at N = 100 is 0.0210" in same
    back = "\n".join(budget_findings(*sweep(0.02, 0.30), n_test=220, pool=100))
    assert "the second is higher by 0.280" in back
    lower = "\n".join(budget_findings(*sweep(0.30, 0.02), n_test=220, pool=100))
    assert "the second is lower by 0.280" in lower


def test_findings_describe_the_attack_as_gradient_access_and_report_its_onset():
    text = "\n".join(budget_findings(*sweep(), n_test=220, pool=100))
    assert "gradient access" in text and "released weights" in text and "Ziller et al.'s realistic setting" in text
    assert "first beats twice chance at eps = 1e6" in text and "does not stop this adversary" in text
    assert "first exceeds ten times the prior at eps = 1" in text
    calm = "\n".join(budget_findings(*sweep(attack_high=0.02), n_test=220, pool=100))
    assert "never beats twice chance" in calm


def test_sampling_se_and_pool_and_view():
    assert sampling_se(0.5, 100) == pytest.approx(0.05)
    assert sampling_se(0.0, 10) == 0.0
    with pytest.raises(ValueError, match="n=0"):
        sampling_se(0.1, 0)
    table, recall = sweep()
    assert budget_pool(recall) == 100  # the largest finite pool, not the full database
    assert budget_pool(recall[recall["full_database"]]) is None and pool_size_label(None) == "full"
    view = budget_view(table, recall, 100)
    assert view["target eps"].tolist()[-1] == "no DP" and view["target eps"].tolist()[5] == "1e6"
    assert np.isnan(view["eps reached"].iloc[-1]) and view["eps reached"].iloc[0] == 0.34
    assert view["matched effective chance"].iloc[0] == pytest.approx(0.057)
    assert view["R@1, N = 100"].iloc[0] == pytest.approx(0.02)
    full = budget_view(table, recall, None)
    assert (full["R@1, N = full"] == 0.005).all() and full["R@1 matched, N = full"].isna().all()
    with pytest.raises(ValueError, match="non-private row"):
        budget_findings(table[table["target_epsilon"].notna()], recall, n_test=10, pool=100)


def test_rows_are_selected_from_the_long_table_and_aligned_to_the_budgets():
    table, recall = sweep(0.02, 0.30)
    assert len(select_recall(recall, "random", 1, 100)) == len(EPS)
    assert select_recall(recall, "random", 1, None)["N"].unique().tolist() == [N_FULL]
    assert select_recall(recall, "random", 1, N_FULL).empty  # N = M is the full-database row, asked for as None
    assert select_recall(recall, "matched", 5, 100).empty
    shuffled = recall.sample(frac=1.0, random_state=0)
    r1 = recall_at(table, shuffled, "random", 1, 100)
    assert r1.iloc[0] == pytest.approx(0.02) and r1.iloc[-1] == pytest.approx(0.30)  # by eps, not by row order
    assert recall_at(table, recall[recall["target_epsilon"].notna()], "random", 1, 100).isna().tolist()[-1]
    doors = budget_doors(table, recall, 100)
    assert doors.columns.tolist() == [
        "eps",
        "R@1",
        "probe AUROC",
        "zero-shot AUROC",
        "worst-case risk",
        "relaxed risk",
        "attack success",
    ]
    np.testing.assert_allclose(doors["R@1"], [i / (len(EPS) - 1) for i in range(len(EPS))])
    assert doors["eps"].tolist()[-1] == "no DP" and doors["probe AUROC"].isna().all()  # flat: nothing to place


def test_tradeoff_curves_of_the_chosen_private_budgets():
    table, _ = sweep()
    curves = budget_tradeoff_curves(table, budgets=(0.34, 1e6))
    assert [name for name, _, _ in curves] == ["eps = 0.34", "eps = 1e6"]
    name, alpha, beta = curves[0]
    assert alpha.shape == beta.shape == (60,) and np.all((beta >= 0) & (beta <= 1 - alpha + 1e-9))
    assert budget_tradeoff_curves(table, budgets=(2.0,)) == []


def test_budget_axis_one_step_per_budget_no_dp_last_and_short_labels():
    table = sweep()[0].iloc[::-1].reset_index(drop=True)  # any row order
    pos = budget_positions(table)
    assert pos[0] == len(EPS) - 1 and sorted(pos.tolist()) == list(range(len(EPS)))  # no DP last
    fig, ax = plt.subplots(figsize=(6, 3))
    budget_axis(ax, table)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["0.34", "1", "8", "32", "1e3", "1e6", "1e9", "1e12", "1e15", "no DP"]
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.get_xticklabels()]
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))  # no two eps ticks overlap at this width
    assert eps_tick_label(2.5e6) == "2e6" or eps_tick_label(2.5e6) == "3e6"
    plt.close(fig)


def test_relinkage_plot_draws_the_effective_chance_of_matched_pools():
    table, recall = sweep()
    fig, ax = plt.subplots()
    plot_relinkage(recall, pool_size=100, ax=ax)
    names = [line.get_label() for line in ax.get_lines()]
    assert any(n.startswith("effective chance (matched pools") and n.endswith("0.057") for n in names)
    assert any(n.startswith("chance 1/N") for n in names)
    assert ax.get_ylabel() == "Recall@1 at N = 100"
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["0.34", "1", "8", "32", "1e3", "1e6", "1e9", "1e12", "1e15", "no DP"]  # one tick per budget
    random_line = next(line for line in ax.get_lines() if line.get_label() == "Recall@1, random pools")
    np.testing.assert_array_equal(random_line.get_xdata(), np.arange(len(EPS)))
    fig2, ax2 = plt.subplots()
    plot_risks(table, ax=ax2)
    assert ax2.get_legend() is not None
    plt.close("all")
