"""Chapter 9's generated sentences and display table, on small synthetic sweep tables."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from relink_lib.plots.risk import (  # noqa: E402
    budget_axis,
    budget_positions,
    plot_cut,
    plot_relinkage,
    plot_rero_priors,
    plot_risks,
)
from relink_lib.risk.summary import (  # noqa: E402
    COVERAGE_SENTENCE,
    budget_cut_view,
    budget_doors,
    budget_findings,
    budget_pool,
    budget_rero_view,
    budget_tradeoff_curves,  # noqa: E402
    budget_view,
    cut_findings,
    eps_tick_label,
    pool_size_label,
    recall_at,
    rero_findings,
    sampling_se,
    select_recall,
)

EPS = [0.34, 1.0, 8.0, 32.0, 1e3, 1e6, 1e9, 1e12, 1e15, None]
N_FULL = 220  # the held-out database


def sweep(r1_strict=0.02, r1_no_dp=0.02, attack_high=0.9, cut_strict=0.9, cut_no_dp=0.1, ci_half=0.05):
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
                "gradient_access_chance": 0.02,
                "gradient_access_risk": 0.02 if e is not None and e < 1e6 else attack_high,
                "n_seeds": 2,
                "r1_before": 0.4,
                "r1_after": 0.4 * (1 - cut_strict + (cut_strict - cut_no_dp) * frac),
                "r1_cut": cut_strict + (cut_no_dp - cut_strict) * frac,
                "r1_cut_ci_low": cut_strict + (cut_no_dp - cut_strict) * frac - ci_half,
                "r1_cut_ci_high": cut_strict + (cut_no_dp - cut_strict) * frac + ci_half,
                "r1_cut_seed_sd": 0.01,
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
    assert "**The gradient-access reconstruction.**" in text and "individual clipped, noisy per-sample" in text
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
        "gradient-access success",
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


def rero_table(n_train=1000, pool_sizes=(10, 100)):
    """A long ReRo table: the bound rises with eps and with the prior (capped at 1, no DP at 1)."""
    rows = []
    for i, e in enumerate(EPS):
        for prior, n in [("training set", n_train)] + [("re-linkage", n) for n in pool_sizes]:
            k = 1 / n
            risk = 1.0 if e is None else min(1.0, k * (1 + 3 * i**2))
            rows.append(
                {
                    "target_epsilon": e,
                    "prior": prior,
                    "N": n,
                    "kappa": k,
                    "worst_case_risk": risk,
                    "worst_case_risk_lower": risk,
                    "relaxed_risk": risk,
                }
            )
    return pd.DataFrame(rows)


def test_dose_response_sentences_say_cannot_tell_where_the_ci_includes_zero():
    table, _ = sweep(cut_strict=0.9, cut_no_dp=0.02, ci_half=0.05)
    text = "\n".join(cut_findings(table, pool=100))
    assert "give a cut of 90.0% (95% CI: 85.0% to 95.0% cut) in Recall@1" in text
    assert "without DP a cut of 2.0% (95% CI: 3.0% rise to 7.0% cut)" in text and "2 seeds" in text
    assert "+" not in text.replace("+-", "")  # no signed change anywhere
    assert "Without DP the CI of the cut includes zero: the simulation cannot tell" in text
    assert "do not overlap" in text and "pretrained heads (Recall@1 0.400" in text
    flat = "\n".join(cut_findings(sweep(cut_strict=0.05, cut_no_dp=0.0, ci_half=0.1)[0], pool=100, simulation=False))
    assert "this run cannot tell the cut at the strictest budget from the cut without DP" in flat
    assert "At every budget (and without DP) the CI of the cut includes zero" in flat
    part = sweep(cut_strict=0.5, cut_no_dp=0.0, ci_half=0.1)[0]  # cuts 0.5 - i / 18, CI +- 0.1: zero inside from i = 8
    assert "At eps = 1e15 and without DP the CI" in "\n".join(cut_findings(part, pool=100))
    clear = "\n".join(cut_findings(sweep(cut_strict=0.9, cut_no_dp=0.6, ci_half=0.05)[0], pool=100))
    assert "cannot tell" not in clear
    # the summary bullets carry them, and say what the sweep trained from and what the bounds cover
    start = {"init": "reinit", "optimizer": "adam", "lr": 0.01, "epochs": 3.0}
    text = "\n".join(budget_findings(*sweep(), n_test=220, pool=100, start=start))
    assert (
        "The sweep trained fresh, data-independent heads at chapter 6's released setting (adam, lr 0.0100, 3.00" in text
    )
    assert "**Dose-response.**" in text and text.endswith(COVERAGE_SENTENCE)
    assert "head" in COVERAGE_SENTENCE and "encoders" in COVERAGE_SENTENCE and "without DP" in COVERAGE_SENTENCE
    view = budget_cut_view(table)
    assert view.columns.tolist()[:4] == ["target eps", "R@1 pretrained", "R@1 trained", "cut"]
    assert view["cut"].iloc[0] == pytest.approx(0.9) and view["target eps"].iloc[-1] == "no DP"


def test_bounds_at_the_relinkage_prior_table_and_sentence():
    rero = rero_table()
    view = budget_rero_view(rero)
    assert view.columns.tolist() == ["target eps", "1/1,000 (training set)", "1/10 (re-linkage)", "1/100 (re-linkage)"]
    assert view["target eps"].tolist()[0] == "0.34" and view["target eps"].tolist()[-1] == "no DP"
    assert view["1/10 (re-linkage)"].iloc[0] == pytest.approx(0.1)
    text = "\n".join(rero_findings(rero))
    assert "0.00100 at kappa = 1/1,000 (training set); 0.100 at kappa = 1/10 (re-linkage)" in text
    assert "At N = 10 the bound reaches 1/2" in text and "from eps = 8 on" in text
    assert rero_findings(rero[rero["prior"] == "training set"]) == []
    bullets = "\n".join(budget_findings(*sweep(), n_test=220, pool=100, rero=rero))
    assert "**At the re-linkage prior.**" in bullets
    fig, ax = plt.subplots()
    plot_rero_priors(rero, ax=ax)
    names = [line.get_label() for line in ax.get_lines()]
    assert "prior 1/1,000 (training set)" in names and "prior 1/10 (re-linkage pool)" in names
    fig2, ax2 = plt.subplots()
    plot_cut(sweep()[0], ax=ax2, pool_size=100)
    assert ax2.get_ylabel() == "relative cut of Recall@1 at N = 100"
    assert [t.get_text() for t in ax2.get_xticklabels()][-1] == "no DP"
    plt.close("all")
