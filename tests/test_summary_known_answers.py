"""Chapter-level summaries with known answers: the DP reductions, the accounting table, the headline table.

Small hand-made recall/utility tables whose answers can be worked out on paper; the tests are about
behaviour (a relative reduction is (before - after) / before), not about layout.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from relink_lib.dp.outcomes import recall_reduction, relative_reduction
from relink_lib.dp.stage import RungMitigation, reduction_at_reference
from relink_lib.dp.summary import accounting_table, reduction_table, transfer_tables


def _recall_rows(before: dict, after: dict, pools=("random", "matched"), ks=(1, 5, 10)) -> pd.DataFrame:
    """Recall of the pretrained and dp variants: ``before[n]`` / ``after[n]`` at pool size n (k scales it)."""
    rows = []
    for pool in pools:
        for k in ks:
            for variant, table in (
                ("pretrained", before),
                ("dp", after),
                ("nonprivate", before),
                ("reinit", after),
                ("output_perturbation", after),
            ):
                for n, r in table.items():
                    scale = (0.5 if pool == "matched" else 1.0) * k
                    rows.append(
                        {
                            "variant": variant,
                            "pool": pool,
                            "k": k,
                            "pool_size": n,
                            "recall": min(1.0, r * scale),
                            "lift": min(1.0, r * scale) / (min(k, n) / n),
                        }
                    )
    return pd.DataFrame(rows)


def _mitigation(
    before: dict, after: dict, reference: int = 100, record: dict | None = None, index: int = 0
) -> RungMitigation:
    rec = record or {
        "target_epsilon": 0.34,
        "epsilon": 0.339,
        "delta": 6e-6,
        "noise_multiplier": 6.3,
        "sample_rate": 0.09,
        "steps": 33,
        "max_grad_norm": 1.0,
        "accountant": "rdp",
        "epsilon_independent": {"dp_accounting_rdp": 0.339, "dp_accounting_pld": 0.25},
        "group_privacy": {"patient_epsilon": 1.017, "max_pairs_per_patient": 3},
    }
    return RungMitigation(
        rung_index=index,
        rung_name=f"rung{index}",
        record=rec,
        nonprivate_record={},
        history=pd.DataFrame(),
        nonprivate_history=pd.DataFrame(),
        perturbation={},
        recall=_recall_rows(before, after),
        utility=pd.DataFrame(),
        reference_pool_size=reference,
        heads={},
    )


def test_relative_reduction_is_before_minus_after_over_before():
    m = _mitigation({10: 0.5, 100: 0.2}, {10: 0.4, 100: 0.05})
    red = reduction_at_reference(m, "dp", k=1)
    assert red == {
        "pool_size": 100,
        "recall_before": 0.2,
        "recall_after": 0.05,
        "relative_reduction": pytest.approx(0.75),
    }
    # an increase is a negative reduction, not a positive one
    up = reduction_at_reference(_mitigation({100: 0.1}, {100: 0.15}), "dp")
    assert up["relative_reduction"] == pytest.approx(-0.5)
    # nothing to reduce: NaN, not a division error or a fake 0
    assert math.isnan(reduction_at_reference(_mitigation({100: 0.0}, {100: 0.0}), "dp")["relative_reduction"])


def test_reduction_falls_back_to_the_largest_pool():
    # reference N = 10,000 is not available (a held-out split of 600): the largest pool is used
    m = _mitigation({10: 0.5, 100: 0.2, 600: 0.04}, {10: 0.5, 100: 0.2, 600: 0.03}, reference=10_000)
    red = reduction_at_reference(m, "dp")
    assert red["pool_size"] == 600 and red["relative_reduction"] == pytest.approx(0.25)


def test_reduction_table_rows_per_variant_and_k():
    m = _mitigation({100: 0.1}, {100: 0.08})
    t = reduction_table([m], ks=(1, 5))
    assert len(t) == 4 * 2  # four non-pretrained variants x two k
    nonprivate = t[t["variant"] == "nonprivate"]["relative_reduction"]
    assert (nonprivate == 0).all()  # same recall as pretrained
    dp = t[(t["variant"] == "dp")].set_index("k")
    assert dp.loc[1, "relative_reduction"] == pytest.approx(0.2)
    assert dp.loc[5, "recall_before"] == pytest.approx(0.5) and dp.loc[5, "relative_reduction"] == pytest.approx(0.2)
    matched = reduction_table([m], ks=(1,), pool="matched")
    assert matched[matched["variant"] == "dp"]["recall_before"].iloc[0] == pytest.approx(0.05)


def test_accounting_table_carries_the_record_and_the_independent_accountants():
    m0 = _mitigation({100: 0.1}, {100: 0.1})
    m1 = _mitigation(
        {100: 0.1},
        {100: 0.1},
        index=1,
        record={
            "target_epsilon": None,
            "epsilon": math.inf,
            "delta": 6e-6,
            "noise_multiplier": 0.0,
            "sample_rate": 0.1,
            "steps": 10,
            "max_grad_norm": None,
            "accountant": "none",
        },
    )
    t = accounting_table([m0, m1]).set_index("rung")
    assert t.loc[0, "epsilon_opacus_rdp"] == 0.339 and t.loc[0, "epsilon_dp_accounting_pld"] == 0.25
    assert t.loc[0, "noise_multiplier"] == 6.3 and t.loc[0, "steps"] == 33
    assert t.loc[0, "patient_epsilon_group"] == 1.017 and t.loc[0, "max_pairs_per_patient"] == 3
    # a record without independent accounting or group privacy gives empty cells, not an error
    assert t.loc[1, "epsilon_dp_accounting_rdp"] is None or pd.isna(t.loc[1, "epsilon_dp_accounting_rdp"])
    assert pd.isna(t.loc[1, "patient_epsilon_group"])


def test_headline_dp_cut_is_the_reduction_of_the_strongest_rung():
    # chain: recall table -> reduction_table (chapter 6) -> the summary's headline DP cut
    from relink_lib.summary import summary_payload

    weak = _mitigation({100: 0.2, 600: 0.1}, {100: 0.2, 600: 0.1}, reference=10_000, index=0)
    strong = _mitigation({100: 0.3, 600: 0.04}, {100: 0.3, 600: 0.01}, reference=10_000, index=2)
    mitigation = {
        "rungs": [
            {
                "rung": m.rung_index,
                "model": m.rung_name,
                "dp_record": m.record,
                "reduction": reduction_table([m]).to_dict(orient="records"),
            }
            for m in (weak, strong)
        ]
    }
    dp = summary_payload({"mitigation": mitigation})["dp"]
    assert dp["rung"] == 2 and dp["n"] == 600
    assert (dp["before"], dp["after"]) == (0.04, 0.01)
    assert dp["reduction"] == pytest.approx((0.04 - 0.01) / 0.04)  # 0.75, not after/before = 0.25


def test_one_reduction_rule_serves_tables_and_the_frontier():
    assert relative_reduction(0.2, 0.05) == pytest.approx(0.75) and relative_reduction(0.1, 0.15) == pytest.approx(-0.5)
    assert math.isnan(relative_reduction(0.0, 0.0))
    rows = _recall_rows({10: 0.5, 100: 0.2}, {10: 0.4, 100: 0.05})
    # no N asked for: the largest N of the table (the full database of an external cohort)
    assert recall_reduction(rows, "dp")["pool_size"] == 100
    assert recall_reduction(rows, "dp", pool_size=10)["relative_reduction"] == pytest.approx(0.2)
    assert recall_reduction(rows, "dp", k=5, pool="matched")["recall_before"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no row for variant 'ghost'"):
        recall_reduction(rows, "ghost")
    with pytest.raises(ValueError, match="no rows with pool='hard'"):
        recall_reduction(rows, "dp", pool="hard")


def test_transfer_tables_give_each_variants_cut_at_the_largest_external_n():
    m = _mitigation({10: 0.5, 300: 0.1}, {10: 0.4, 300: 0.02})
    util = pd.DataFrame(
        [
            {"variant": v, "metric": "linear_probe_auroc", "label": "macro", "value": 0.8 - 0.01 * i}
            for i, v in enumerate(("pretrained", "dp", "nonprivate", "reinit", "output_perturbation"))
        ]
    )
    tables = transfer_tables({m.rung_name: (m.recall, util)}, [m])
    rec = tables["recall"].set_index("variant")
    assert set(rec["N"]) == {300} and rec.loc["pretrained", "relative_reduction"] == 0.0
    assert rec.loc["dp", "relative_reduction"] == pytest.approx(0.8) and rec.loc["dp", "recall@1"] == pytest.approx(
        0.02
    )
    assert tables["utility"].set_index("variant").loc["dp", "linear_probe_auroc"] == pytest.approx(0.79)
