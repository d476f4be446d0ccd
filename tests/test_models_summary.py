"""Chapter 3's generated sentences follow the numbers they are given."""

from __future__ import annotations

import pandas as pd
import pytest

from relink_lib.models.summary import ladder_findings, rises_in_order, run_size, zero_shot_macro
from relink_lib.profiles import get_profile


def _payload(lifts, with_default=True):
    preview = [
        {"rung": i, "name": f"r{i}", "recall@1": lift / 200, "chance": 1 / 200, "lift": lift, "n_test": 200}
        for i, lift in enumerate(lifts)
    ]
    zs = [{"rung": f"r{i}", "label": "macro", "auroc": a} for i, a in enumerate((0.61, 0.70, 0.66)[: len(lifts)])]
    zs += [{"rung": "r0", "label": "Edema", "auroc": 0.99}]
    sizes = {"this": run_size(get_profile("ci"))}
    if with_default:
        sizes["default"] = run_size(get_profile("default"))
    return {"recall_at_1_preview": preview, "zero_shot": zs, "run_size": sizes}


@pytest.mark.parametrize("values, expected", [((1, 2, 3), True), ((1, 3, 2), False), ((2, 2, 3), False), ((5,), False)])
def test_rises_in_order(values, expected):
    assert rises_in_order(values) is expected


def test_findings_say_whether_the_ladder_rises_and_quote_each_lift():
    rising = ladder_findings(_payload([1.0, 2.5, 7.25]))
    assert "rises with every rung" in rising[0] and "7.2x chance" in rising[0] and "(simulation)" in rising[0]
    assert "200 pairs" in rising[0]
    falling = ladder_findings(_payload([3.0, 2.0, 4.0]), simulation=False)
    assert "does **not** rise" in falling[0] and "(real data)" in falling[0]


def test_findings_use_the_macro_rows_only_and_compare_with_the_default_run():
    lines = ladder_findings(_payload([1.0, 2.0, 3.0]))
    assert "0.61 to 0.70" in lines[1]  # the per-label 0.99 is not a macro value
    ci, default = get_profile("ci")["cohort"], get_profile("default")["cohort"]
    assert f"{ci['n_pairs']:,} pairs" in lines[2] and f"against {default['n_pairs']:,}" in lines[2]
    assert len(ladder_findings(_payload([1.0, 2.0, 3.0], with_default=False))) == 2
    assert lines[1].startswith("Every rung sees the labels")
    blind = _payload([1.0, 2.0, 3.0])
    blind["zero_shot"][0]["auroc"] = 0.45
    assert "Not every rung sees the labels" in ladder_findings(blind)[1] and "`r0`" in ladder_findings(blind)[1]


def test_zero_shot_macro_picks_macro_rows():
    zs = pd.DataFrame([{"rung": "a", "label": "macro", "auroc": 0.6}, {"rung": "a", "label": "Edema", "auroc": 0.9}])
    assert zero_shot_macro(zs).to_dict() == {"a": 0.6}


def test_recall_preview_counts_queries_whose_own_report_is_nearest(monkeypatch):
    import numpy as np

    from relink_lib.models import summary as models_summary

    rng = np.random.default_rng(0)
    z = rng.normal(size=(40, 6))
    embeddings = {
        0: (z, rng.normal(size=(40, 6))),  # unrelated reports: about chance
        1: (z, z + 0.01 * rng.normal(size=(40, 6))),
    }  # near copies: every image finds its report

    class _Rung:
        def __init__(self, index):
            self.index, self.name = index, f"r{index}"

    monkeypatch.setattr(
        models_summary, "get_embeddings", lambda params, cohort, rung, split: (*embeddings[rung.index], np.arange(40))
    )
    table = models_summary.recall_preview(get_profile("smoke"), None, [_Rung(0), _Rung(1)])
    assert table["n_test"].tolist() == [40, 40] and table["chance"].tolist() == pytest.approx([1 / 40, 1 / 40])
    img, rep = embeddings[0]
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    brute = float(np.mean(np.argmax(unit(img) @ unit(rep).T, axis=1) == np.arange(40)))
    assert table.loc[0, "recall@1"] == pytest.approx(brute) and table.loc[1, "recall@1"] == 1.0
    assert table.loc[1, "lift"] == pytest.approx(40.0)
