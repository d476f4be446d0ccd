"""Chapter 9's generated sentences and display table, on small synthetic sweep tables."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from relink_lib.plots.risk import budget_axis, budget_positions, eps_tick_label, plot_relinkage, plot_risks  # noqa: E402
from relink_lib.risk.summary import budget_findings, budget_pool, budget_view, sampling_se  # noqa: E402

EPS = [0.34, 1.0, 8.0, 32.0, 1e3, 1e6, 1e9, 1e12, 1e15, None]


def sweep(r1_strict=0.02, r1_no_dp=0.02, attack_high=0.9):
    rows = []
    for i, e in enumerate(EPS):
        frac = i / (len(EPS) - 1)
        rows.append({"target_epsilon": e, "epsilon": e, "noise_multiplier": 5.0 / (1 + i) ** 3 if e else 0.0,
                     "sample_rate": 0.08, "steps": 39, "kappa": 1e-3, "worst_case_risk": 1e-3 + 0.99 * frac,
                     "relaxed_risk": 1e-3 + 0.9 * frac, "realistic_chance": 0.02,
                     "realistic_risk": 0.02 if e is not None and e < 1e6 else attack_high,
                     "recall_random_k1_n100": r1_strict + (r1_no_dp - r1_strict) * frac,
                     "lift_random_k1_n100": (r1_strict + (r1_no_dp - r1_strict) * frac) * 100,
                     "recall_random_k1_nfull": 0.005, "lift_random_k1_nfull": 1.0,
                     "recall_hard_k1_n100": 0.12, "lift_hard_k1_n100": 0.12 / 0.057, "attack_candidates": 50,
                     "probe_macro_auroc": 0.8, "zero_shot_macro_auroc": 0.7})
    return pd.DataFrame(rows)


def test_no_comes_back_claim_when_no_dp_is_within_sampling_noise_or_lower():
    same = "\n".join(budget_findings(sweep(0.021, 0.020), n_test=220))
    assert "within two sampling standard errors" in same and "higher" not in same.split("**Utility")[0]
    back = "\n".join(budget_findings(sweep(0.02, 0.30), n_test=220))
    assert "the second is higher by 0.280" in back
    lower = "\n".join(budget_findings(sweep(0.30, 0.02), n_test=220))
    assert "the second is lower by 0.280" in lower


def test_findings_describe_the_attack_as_gradient_access_and_report_its_onset():
    text = "\n".join(budget_findings(sweep(), n_test=220))
    assert "gradient access" in text and "released weights" in text and "Ziller et al.'s realistic setting" in text
    assert "first beats twice chance at eps = 1e6" in text and "does not stop this adversary" in text
    assert "first exceeds ten times the prior at eps = 1" in text
    calm = "\n".join(budget_findings(sweep(attack_high=0.02), n_test=220))
    assert "never beats twice chance" in calm


def test_sampling_se_and_pool_and_view():
    assert sampling_se(0.5, 100) == pytest.approx(0.05)
    assert sampling_se(0.0, 10) == 0.0
    with pytest.raises(ValueError, match="n=0"):
        sampling_se(0.1, 0)
    table = sweep()
    assert budget_pool(table) == "100"
    view = budget_view(table)
    assert view["target eps"].tolist()[-1] == "no DP" and view["target eps"].tolist()[5] == "1e6"
    assert np.isnan(view["eps reached"].iloc[-1]) and view["eps reached"].iloc[0] == 0.34
    assert view["matched effective chance"].iloc[0] == pytest.approx(0.057)
    with pytest.raises(ValueError, match="non-private row"):
        budget_findings(table[table["target_epsilon"].notna()], n_test=10)


def test_budget_axis_one_step_per_budget_no_dp_last_and_short_labels():
    table = sweep().iloc[::-1].reset_index(drop=True)  # any row order
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
    fig, ax = plt.subplots()
    plot_relinkage(sweep(), pool_size="100", ax=ax)
    names = [line.get_label() for line in ax.get_lines()]
    assert any(n.startswith("effective chance (matched pools") and n.endswith("0.057") for n in names)
    assert any(n.startswith("chance 1/N") for n in names)
    fig2, ax2 = plt.subplots()
    plot_risks(sweep(), ax=ax2)
    assert ax2.get_legend() is not None
    plt.close("all")
