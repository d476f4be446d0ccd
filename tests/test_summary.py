"""The summary page's generated findings, on small synthetic payloads (no chapter needs to run)."""

from __future__ import annotations

import json

import pytest

from relink_lib.calibration import CALIBRATED_KNOBS, calibration_box, calibration_record
from relink_lib.paper import PAPER
from relink_lib.profiles import get_profile
from relink_lib.summary import (
    NA,
    load_payloads,
    summary_display,
    summary_findings,
    summary_payload,
    summary_table,
)


def _audit_rows(rung, model, n_big, full=False):
    rows = []
    for n, recall, lift in ((10, 0.4, 4.0), (100, 0.15, 15.0), (n_big, 50.0 / n_big, 50.0)):
        rows.append(
            {
                "rung": rung,
                "model": model,
                "pool": "random",
                "k": 1,
                "pool_size": n,
                "recall": recall,
                "lift": lift,
                "chance": 1 / n,
                "ci_low": recall * 0.8,
                "ci_high": recall * 1.2,
                "lift_ci_low": lift * 0.8,
                "lift_ci_high": lift * 1.2,
                "full_database": full and n == n_big,
            }
        )
    return rows


def payloads(n_big=10_000, full=False):
    return {
        "audit": {
            "rows": _audit_rows(0, "captions", n_big, full) + _audit_rows(2, "full-reports", n_big, full),
            "provenance": {"simulation": True},
        },
        "hard_negatives": {
            "matched_pools": [
                {
                    "rung": 2,
                    "model": "full-reports",
                    "pool": "matched",
                    "k": 1,
                    "pool_size": 10_000,
                    "recall": 0.127,
                    "chance": 0.057,
                    "mean_pool_size": 17.5,
                    "ci_low": 0.10,
                    "ci_high": 0.15,
                    "n_queries": 900,
                },
                {
                    "rung": 2,
                    "model": "full-reports",
                    "pool": "matched",
                    "k": 1,
                    "pool_size": 100,
                    "recall": 0.2,
                    "chance": 0.06,
                    "mean_pool_size": 16.0,
                    "ci_low": 0.1,
                    "ci_high": 0.3,
                },
            ]
        },
        "mitigation": {
            "rungs": [
                {
                    "rung": 2,
                    "model": "full-reports",
                    "dp_record": {"epsilon": 0.339, "delta": 6e-6, "target_epsilon": 0.34},
                    "reduction": [
                        {
                            "variant": "dp",
                            "k": 1,
                            "pool": "random",
                            "pool_size": 10_000,
                            "recall_before": 0.0057,
                            "recall_after": 0.0049,
                            "relative_reduction": 0.139,
                            "relative_reduction_ci_low": -0.2,
                            "relative_reduction_ci_high": 0.4,
                            "baseline": "non-private fine-tuning",
                        }
                    ],
                }
            ]
        },
        "utility": {
            "table": [
                {"rung": 2, "variant": "pretrained", "probe_macro_auroc": 0.812, "zero_shot_macro_auroc": 0.7},
                {"rung": 2, "variant": "dp", "probe_macro_auroc": 0.81, "zero_shot_macro_auroc": 0.69},
            ]
        },
        "transfer": {
            "rungs": [
                {
                    "rung": 2,
                    "recall": [
                        {
                            "variant": "pretrained",
                            "pool": "random",
                            "k": 1,
                            "pool_size": 600,
                            "recall": 0.01,
                            "ci_low": 0.005,
                            "ci_high": 0.02,
                        },
                        {"variant": "dp", "pool": "random", "k": 1, "pool_size": 600, "recall": 0.01},
                    ],
                }
            ]
        },
        "privacy_budget": {
            "sweep": [
                {
                    "target_epsilon": 0.34,
                    "kappa": 1e-4,
                    "worst_case_risk": 1.02e-4,
                    "realistic_risk": 0.01,
                    "realistic_chance": 0.01,
                },
                {
                    "target_epsilon": 1e6,
                    "kappa": 1e-4,
                    "worst_case_risk": 0.99,
                    "realistic_risk": 0.9,
                    "realistic_chance": 0.01,
                },
                {
                    "target_epsilon": None,
                    "kappa": 1e-4,
                    "worst_case_risk": 1.0,
                    "realistic_risk": 0.97,
                    "realistic_chance": 0.01,
                },
            ]
        },
    }


def test_findings_state_the_numbers_with_their_intervals_beside_the_paper():
    payload = summary_payload(payloads())
    assert payload["audit"]["model"] == "full-reports"  # the strongest rung, not the first
    assert [p["n"] for p in payload["audit"]["points"]] == [100, 10_000]
    text = "\n".join(summary_findings(payload))
    assert "Recall@1 = 0.150 (95% CI 0.120 to 0.180) at N = 100, 15.0x chance" in text
    assert "at N = 10,000, 50.0x chance (95% CI 40.0 to 60.0)" in text
    assert f"{PAPER.r1_lift_n100:g}x at N = 100 and {PAPER.r1_lift_n10000:g}x at N = 10,000" in text
    assert "not available" not in text and "this simulation" in text


def test_hard_negatives_use_the_effective_pool_and_chance_not_one_over_n():
    hard = summary_payload(payloads())["hard_negatives"]
    assert hard["n"] == 10_000 and hard["effective_pool"] == 17.5 and hard["effective_chance"] == 0.057
    assert hard["lift_effective"] == pytest.approx(0.127 / 0.057)
    text = summary_findings(summary_payload(payloads()))[1]
    assert "effective pool of 17.5 candidates (effective chance 0.0570)" in text
    assert "is above that effective chance (2.23x)" in text
    assert "1e-04" not in text and "0.0001" not in text  # never against 1/N
    weak = payloads()
    weak["hard_negatives"]["matched_pools"][0].update(ci_low=0.03)
    assert "not distinguishable from that effective chance" in summary_findings(summary_payload(weak))[1]


def test_dp_cut_names_its_baseline_and_its_interval_and_the_direction_follows_the_sign():
    text = summary_findings(summary_payload(payloads()))[2]
    assert (
        "cut Recall@1 at N = 10,000: 0.00570 -> 0.00490, a relative cut of 13.9% (95% CI: 20.0% rise to 40.0% cut)"
    ) in text
    assert "against non-private fine-tuning" in text and "61.8% cut" in text and "includes zero" in text
    up = payloads()
    row = up["mitigation"]["rungs"][0]["reduction"][0]
    row.update(relative_reduction=-0.5, baseline=None)
    del row["relative_reduction_ci_low"]
    text = summary_findings(summary_payload(up))[2]
    assert "DP heads raised Recall@1" in text and "a relative rise of 50.0%" in text and "no CI in the results" in text
    assert "against the pretrained heads" in text and "not evidence either way" in text


def test_utility_states_its_intervals_when_the_chapter_has_them():
    data = payloads()
    assert "AUROC 0.812 with the pretrained heads" in summary_findings(summary_payload(data))[3]
    data["utility"]["table"][0].update(probe_macro_auroc_ci_low=0.8, probe_macro_auroc_ci_high=0.82)
    assert "AUROC 0.812 (95% CI 0.800 to 0.820) with the pretrained heads" in summary_findings(summary_payload(data))[3]


def test_missing_chapters_and_changed_shapes_say_not_available():
    findings = summary_findings(summary_payload({}))
    assert len(findings) == 6 and all(NA in f for f in findings)
    odd = {
        "audit": {"rows": "not a list"},
        "mitigation": {"rungs": [{"rung": 2, "reduction": [{"variant": "dp"}]}]},
        "utility": {"table": [{"rung": "x"}]},
        "privacy_budget": {"sweep": [{"target_epsilon": "n/a"}]},
    }
    findings = summary_findings(summary_payload(odd))
    assert all(NA in f for f in findings)
    assert list(summary_table(summary_payload({})).columns) == [
        "finding",
        "this run",
        "CI low",
        "CI high",
        "the paper",
        "kind",
    ]


def test_small_profile_says_n_10000_is_not_available_and_names_the_full_database():
    payload = summary_payload(payloads(n_big=220, full=True))
    text = summary_findings(payload)[0]
    assert "the full held-out database (N = 220)" in text and "N = 10,000 is not available" in text
    table = summary_table(payload)
    assert table["the paper"].isna().iloc[1]  # no paper figure beside a pool the paper did not use
    assert table["the paper"].iloc[0] == PAPER.r1_lift_n100


def test_summary_table_rows_match_the_findings():
    table = summary_table(summary_payload(payloads()))
    lifts = table[table["finding"].str.startswith("R@1 lift")]
    assert lifts["this run"].tolist() == [15.0, 50.0] and lifts["the paper"].tolist() == [15.0, 50.0]
    cut = table[table["finding"].str.contains("cut")].iloc[0]
    assert (cut["this run"], cut["CI low"], cut["CI high"], cut["the paper"]) == (0.139, -0.2, 0.4, 0.618)


def test_calibration_box_reads_the_profile():
    rec = calibration_record(None, get_profile("default"))
    box = calibration_box(rec)
    assert box.startswith('<div class="admonition') and box.endswith("</div>")
    assert "What was calibrated" in box and "prediction of the simulation" in box and "Searched" in box
    assert "<code>cohort.report_detail</code> = 1.0" in box and "<code>ladder.epochs_scale</code> = 1.0" in box
    assert "20,000; 0.4, 0.05, 0.55" in box and "eps = 0.34" in box
    assert len(rec["knobs"]) == len(CALIBRATED_KNOBS)
    ci = get_profile("ci")
    ci_box = calibration_box(calibration_record(None, ci))
    assert f"<code>ladder.epochs_scale</code> = {ci['ladder']['epochs_scale']}" in ci_box
    assert f"<code>cohort.image_noise, ladder.overrides</code> = {ci['cohort']['image_noise']};" in ci_box


def test_every_headline_number_has_a_kind_from_the_record():
    table = summary_table(summary_payload(payloads()))
    kinds = dict(zip(table["finding"], table["kind"]))
    assert kinds["R@1 lift over chance, N = 100"] == "calibration"
    assert kinds["R@1 lift over chance, N = 10,000"] == "calibration"
    assert next(v for k, v in kinds.items() if "cut" in k) == "searched"
    assert set(table["kind"]) <= {"calibration", "searched", "prediction"}
    assert summary_display(summary_payload(payloads()))["kind"].tolist() == table["kind"].tolist()


def test_summary_display_puts_units_and_intervals_in_one_cell():
    shown = summary_display(summary_payload(payloads())).set_index("finding")
    assert shown.loc["R@1 lift over chance, N = 100", "this run (95% CI)"] == "15.0x (12.0x to 18.0x)"
    assert shown.loc["R@1 lift over chance, N = 100", "the paper"] == "15.0x"
    cut = shown.loc["relative cut of R@1 by DP, N = 10,000"]
    assert cut["this run (95% CI)"] == "13.9% cut (20.0% rise to 40.0% cut)" and cut["the paper"] == "61.8% cut"
    assert shown.loc["linear-probe macro AUROC, pretrained", "this run (95% CI)"] == "0.812"


def test_load_payloads_reads_the_results_dir_and_marks_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("RELINK_RESULTS", str(tmp_path))
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "audit.json").write_text(json.dumps({"rows": []}))
    loaded = load_payloads("ci", ("audit", "utility"))
    assert loaded == {"audit": {"rows": []}, "utility": None}


def test_summary_chart_marks_the_paper_beside_the_strongest_rung_with_ci_whiskers():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from relink_lib.plots.summary import plot_lift_summary
    from relink_lib.summary import lift_points

    points = lift_points(payloads()["audit"])
    assert points["n"].tolist() == [100, 10_000, 100, 10_000] and points["lift_ci_low"].notna().all()
    fig, ax = plt.subplots()
    plot_lift_summary(points, ax=ax)
    marks = [line for line in ax.get_lines() if line.get_label().startswith("paper:")]
    assert sorted(m.get_ydata()[0] for m in marks) == [PAPER.r1_lift_n100, PAPER.r1_lift_n10000]
    assert all(m.get_xdata()[0] > 0.9 for m in marks)  # beside rung 2 (x = 1 and beyond), not rung 0
    assert len(ax.containers) >= 2 and ax.get_legend() is not None
    plt.close(fig)
    with pytest.raises(ValueError, match="has the audit run"):
        plot_lift_summary(lift_points(None))


def test_headlines_use_n_10000_when_the_full_database_is_larger():
    data = payloads()
    data["audit"]["rows"].append(
        {
            "rung": 2,
            "model": "full-reports",
            "pool": "random",
            "k": 1,
            "pool_size": 10_861,
            "recall": 0.004,
            "lift": 43.0,
            "full_database": True,
        }
    )
    data["hard_negatives"]["matched_pools"].append(
        {
            "rung": 2,
            "model": "full-reports",
            "pool": "matched",
            "k": 1,
            "pool_size": 10_861,
            "recall": 0.1,
            "chance": 0.05,
            "mean_pool_size": 20.0,
            "full_database": True,
        }
    )
    payload = summary_payload(data)
    assert [p["n"] for p in payload["audit"]["points"]] == [100, 10_000]
    assert payload["hard_negatives"]["n"] == 10_000 and payload["hard_negatives"]["effective_pool"] == 17.5


def test_dp_cut_comes_from_the_frontier_reference_point_when_chapter_6_has_one():
    data = payloads()
    data["mitigation"].update(
        {
            "frontier": [
                {"init": "pretrained", "r1_reduction": 0.1, "epsilon": 0.339},
                {
                    "init": "reinit",
                    "optimizer": "sgd",
                    "lr": 0.03,
                    "epochs": 3.0,
                    "r1_reduction": 0.733,
                    "epsilon": 0.339,
                    "delta": 6e-6,
                    "r1_report": 0.014,
                },
            ],
            "reference": 1,
            "selected": 1,
            "r1_reduction_ci_low": -0.333,
            "r1_reduction_ci_high": 0.944,
            "heldout": {"reference_pool_size": 95, "baseline": {"r1_report": 0.0526}},
        }
    )
    dp = summary_payload(data)["dp"]
    assert (dp["reduction"], dp["ci"], dp["n"], dp["before"], dp["after"]) == (
        0.733,
        (-0.333, 0.944),
        95,
        0.0526,
        0.014,
    )
    text = summary_findings(summary_payload(data))[2]
    assert "the DP heads selected by the chapter's rule (init reinit, optimizer sgd, lr 0.03, epochs 3.0) cut" in text
    assert "The interval includes zero" in text
    assert "cut Recall@1 at N = 95: 0.0526 -> 0.0140, a relative cut of 73.3% (95% CI: 33.3% rise to 94.4% cut)" in text
    assert "against the pretrained heads, on the held-out report half" in text
    data["mitigation"]["selected"] = None
    assert "no point met the chapter's rule" in summary_findings(summary_payload(data))[2]
    data["mitigation"]["reference"] = 7  # out of range: back to the per-rung rows
    assert summary_payload(data)["dp"]["reduction"] == 0.139


def test_audit_headline_reads_the_held_out_rows_even_when_train_rows_come_first():
    from relink_lib.summary import audit_headline

    base = payloads()["audit"]["rows"]
    seen = [{**r, "split": "train", "recall": 0.9, "lift": 90.0} for r in base]
    held = [{**r, "split": "test"} for r in base]
    head = audit_headline({"rows": seen + held})
    assert head["rung"] == 2 and [p["lift"] for p in head["points"]] == [15.0, 50.0]


def test_dp_cut_comes_from_the_confirmation_cohort_when_chapter_6_has_one():
    data = payloads()
    curve = [
        {"variant": "pretrained", "pool_size": 100, "k": 1, "recall": 0.07},
        {"variant": "dp", "pool_size": 100, "k": 1, "recall": 0.035, "cut": 0.5, "cut_ci_low": 0.4, "cut_ci_high": 0.6},
        {"variant": "pretrained", "pool_size": 1000, "k": 1, "recall": 0.008},
        {
            "variant": "dp",
            "pool_size": 1000,
            "k": 1,
            "recall": 0.006,
            "cut": 0.25,
            "cut_ci_low": -0.1,
            "cut_ci_high": 0.5,
        },
        {
            "variant": "dp",
            "pool_size": 1000,
            "k": 5,
            "recall": 0.02,
            "cut": 0.9,
            "cut_ci_low": 0.8,
            "cut_ci_high": 0.95,
        },
    ]
    data["mitigation"].update(
        {
            "confirmation": {"available": True, "n_pairs": 2500, "curve": curve},
            "protocols": [
                {"name": "private_frontier", "epsilon": 2.26, "setting": {"init": "reinit"}},
                {"name": "public_pilot", "epsilon": 0.339, "delta": 6e-6, "setting": {"init": "reinit", "lr": 0.003}},
            ],
            "headline_protocol": "public_pilot",
        }
    )
    dp = summary_payload(data)["dp"]
    assert (dp["n"], dp["reduction"], dp["ci"], dp["before"], dp["after"], dp["epsilon"]) == (
        1000,
        0.25,
        (-0.1, 0.5),
        0.008,
        0.006,
        0.339,
    )
    text = summary_findings(summary_payload(data))[2]
    assert "released by the public pilot protocol (init reinit, lr 0.003)" in text
    assert "on the confirmation cohort (2,500 pairs of fresh patients" in text
    assert "The interval includes zero" in text
    data["mitigation"]["confirmation"] = {"available": False}  # real data: back to the frontier or the rungs
    assert summary_payload(data)["dp"]["n"] != 1000


def test_adaptive_finding_carries_the_custodians_recommendation():
    adaptive = {
        "headline": {
            "n": 10_000,
            "m": 1_000,
            "attack": "ridge",
            "full_passive": 50.0,
            "dp_passive": 20.0,
            "dp_adaptive": 45.0,
            "dp_adaptive_ci": [40.0, 50.0],
            "recovered": 25.0 / 30.0,
            "verdict": "not_stopped",
        },
        "recommendation": {"sentence": "Under the profile's tolerances no option is acceptable."},
    }
    payload = summary_payload({**payloads(), "adaptive": adaptive})
    text = "\n".join(summary_findings(payload))
    assert "re-links the DP-head release at 45.0x chance at N = 10,000 (95% CI 40.0 to 50.0)" in text
    assert "recovers 83% of the DP cut: **head-only DP does not stop this attacker.**" in text
    assert "Under the profile's tolerances no option is acceptable." in text
    # without chapter 11 there is no adaptive sentence at all
    assert "Adaptive attacker" not in "\n".join(summary_findings(summary_payload(payloads())))


def test_utility_finding_adds_the_confirmation_cohorts_zero_shot_drop_with_its_interval():
    base = payloads()
    conf = {"n_pairs": 20000, "n_seeds": 10, "zero_shot_drop": {"value": 1.2, "ci_low": 0.5, "ci_high": 1.9}}
    text = "\n".join(summary_findings(summary_payload({**base, "utility": {**base["utility"], "confirmation": conf}})))
    assert "On the confirmation cohort (20,000 pairs, 10 seeds) the DP heads' macro zero-shot AUROC shows " in text
    assert "a drop of 1.20 points (95% CI: 0.50 to 1.90 drop, paired over patients and seeds)." in text
    assert "cannot tell a zero-shot cost" not in text
    conf["zero_shot_drop"] = {"value": 0.2, "ci_low": -0.4, "ci_high": 0.8}
    text = "\n".join(summary_findings(summary_payload({**base, "utility": {**base["utility"], "confirmation": conf}})))
    assert "this run cannot tell a zero-shot cost from none" in text
