"""Chapters 4 and 5 text: the tables and sentences follow the numbers of the stage (built on a real audit)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from relink_lib.audit.risk_factors import fit_risk_factors, study_properties
from relink_lib.audit.stage import AuditResult, HardNegativeResult, audit_rung
from relink_lib.audit.summary import (
    audit_findings,
    audit_overview,
    audit_tables,
    build_audit_payload,
    build_hard_negative_payload,
    hard_negative_findings,
    hard_negative_tables,
    pool_label,
)
from relink_lib.config import AuditConfig
from relink_lib.labels import CHEXPERT_LABELS

SETTINGS = AuditConfig(
    pool_sizes=(10, 100, None), ks=(1, 5), n_boot=40, chunk_size=64, device="cpu", nan_as=0.0, uncertain_as=-1.0
)


def _pairs(m, seed):
    rng = np.random.default_rng(seed)
    labels = np.zeros((m, 14))
    labels[:, 0] = rng.integers(0, 2, m)
    frame = pd.DataFrame(labels, columns=CHEXPERT_LABELS)
    frame.insert(0, "patient_id", [f"p{seed}-{i // 2}" for i in range(m)])
    frame["mentions_device"] = rng.random(m) < 0.5
    frame["text"] = np.where(frame["mentions_device"], "Left chest tube. Lungs clear.", "Lungs clear.")
    frame["view"] = np.where(rng.random(m) < 0.5, "AP", "PA")
    return frame


def _emb(m, noise, seed):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(m, 8))
    return z + noise * rng.normal(size=(m, 8)), z + noise * rng.normal(size=(m, 8))


@pytest.fixture(scope="module")
def stage_outputs():
    m = 120
    tables, gaps, breakdowns, risks = [], [], [], []
    test_pairs = _pairs(m, 0)
    for rung, (name, noise) in enumerate((("weak", 3.0), ("strong", 0.6))):
        img, rep = _emb(m, noise, seed=rung)
        if rung == 0:
            rep[1:6] = rep[0]  # duplicated reports: ties for the weak rung
        t_img, t_rep = _emb(m, noise / 3, seed=10 + rung)  # the trained-on pairs are re-linked more
        ra = audit_rung(img, rep, test_pairs, SETTINGS, train=(t_img, t_rep, _pairs(m, 1)))
        lab = lambda f, split=None, name=name, rung=rung: f.assign(  # noqa: E731
            model=name, rung=rung, **({"split": split} if split else {})
        )
        tables += [lab(ra.table, "test"), lab(ra.train_table, "train")]
        gaps.append(lab(ra.gap))
        breakdowns.append(lab(ra.breakdown))
        outcome = 1.0 / (1.0 + ra.counts["test_better"] + ra.counts["test_tied"] / 2)
        eff = fit_risk_factors(study_properties(test_pairs), outcome, test_pairs.patient_id, n_boot=30)
        risks.append(eff.assign(model=name, rung=rung, mean_outcome=outcome.mean()))
    table = pd.concat(tables, ignore_index=True).assign(cohort="fake")
    audit = AuditResult(
        table=table,
        gap=pd.concat(gaps, ignore_index=True),
        risk_factors=pd.concat(risks, ignore_index=True),
        risk_pool_size=100,
        extractor_validation=pd.DataFrame(),
        rank_histograms={},
        n_database={"weak": m, "strong": m},
        dropped_pool_sizes=(1000,),
    )
    hard = HardNegativeResult(
        matched_pools=table[table.pool != "random"], by_detail=pd.concat(breakdowns, ignore_index=True)
    )
    return audit, hard


def _payload(audit, table=None):
    audit = audit if table is None else dataclasses.replace(audit, table=table)
    return build_audit_payload(audit, (1, 5), profile="unit", simulation=True)


def test_tables_hold_the_stage_numbers(stage_outputs):
    audit, _ = stage_outputs
    table = audit.table
    p = _payload(audit)
    assert (p["profile"], p["cohort"], p["simulation"]) == ("unit", "fake", True)
    t = audit_tables(p)
    assert p["n_database"] == 120 and set(p["random"].split) == {"test"}
    strong = table[(table.split == "test") & (table.pool == "random") & (table.model == "strong") & (table.k == 1)]
    got = t["recall"].set_index(["model", "N"]).loc[("strong", "100"), "R@1"]
    assert got == strong.loc[strong.pool_size == 100, "recall"].iloc[0]
    assert set(t["ties"].model) == {"weak"}  # only the rung with duplicated reports has differing bounds
    row = t["ties"].iloc[0]
    assert row["ties against"] <= row["fair (random tie-break)"] <= row["ties for"]
    assert list(t["gap"].N.unique()) == ["10", "100", "full (120)"]
    assert len(t["risk"]) == 7
    assert "120 image-report pairs" in audit_overview(p) and "1,000 exceeds" in audit_overview(p)


def test_findings_state_the_numbers_they_come_from(stage_outputs):
    audit, _ = stage_outputs
    p = _payload(audit)
    text = "\n".join(audit_findings(p))
    strong = p["random"][(p["random"].model == "strong") & (p["random"].k == 1) & (p["random"].pool_size == 100)].iloc[
        0
    ]
    assert f"Recall@1 = {strong.recall:.3f}" in text and f"{strong.lift:.1f}x chance" in text
    assert "N = 10,000 is larger than this profile's held-out database (120 pairs)" in text
    assert "Ties: weak" in text and "between" in text
    gap = p["gap"][(p["gap"].model == "strong") & (p["gap"].k == 1) & (p["gap"].pool_size == 100)].iloc[0]
    assert f"a gap of {gap.gap:+.3g}" in text
    assert ("beyond sampling noise" in text) == bool(gap.gap_ci_low > 0 or gap.gap_ci_high < 0)
    assert "Per-study risk (strong" in text


def test_lift_below_one_is_explained_only_when_it_happens(stage_outputs):
    audit, _ = stage_outputs
    t = audit.table.copy()
    sel = (t.model == "weak") & (t.pool == "random") & (t.k == 1) & (t.pool_size == 10) & (t.split == "test")
    t.loc[sel, ["lift", "lift_ci_low", "lift_ci_high"]] = [0.5, 0.3, 0.8]
    text = "\n".join(audit_findings(_payload(audit, t)))
    assert "weak at N = 10: 0.50x (95% CI 0.30 to 0.80), below chance beyond sampling noise" in text  # 12 expected
    t.loc[sel, "n_queries"] = 30  # 3 queries expected first by chance: too few to call
    text = "\n".join(audit_findings(_payload(audit, t)))
    assert "chance alone expects only 3 of its 30 queries first, too few to tell this from chance" in text
    t.loc[(t.pool == "random") & (t.split == "test"), "lift"] = 1.5
    assert "Lift below 1" not in "\n".join(audit_findings(_payload(audit, t)))


def test_hard_negative_text_gives_effective_pool_and_chance(stage_outputs):
    audit, hard = stage_outputs
    p = build_hard_negative_payload(audit, hard, "same 14-label vector", profile="unit", simulation=True)
    assert p["cohort"] == "fake" and p["breakdown"] is hard.by_detail
    assert set(p["table"].split) == {"test"}
    tabs = hard_negative_tables(p)
    m = p["table"][
        (p["table"].model == "strong")
        & (p["table"].pool == "matched")
        & (p["table"].k == 1)
        & (p["table"].pool_size == 100)
    ].iloc[0]
    side = tabs["side"].set_index(["model", "N"]).loc[("strong", "100")]
    assert side["effective chance"] == m.chance and side["effective pool"] == m.mean_pool_size
    text = "\n".join(hard_negative_findings(p))
    assert f"on average {m.mean_pool_size:.1f} candidates" in text and f"effective chance is {m.chance:.3g}" in text
    assert "detail: device" in text
    assert pool_label(2000, True) == "full (2,000)" and pool_label(10000, False) == "10,000"


def test_compact_rounds_to_significant_figures():
    from relink_lib.audit.summary import compact

    f = compact(pd.DataFrame({"a": [4.71428, 0.000123456, 0.0, np.nan, 1234.5, 9.45e-18], "n": [1, 2, 3, 4, 5, 6]}))
    assert f.a.tolist() == ["4.71", "0.000123", "0", "nan", "1.23e+03", "<1e-06"]
    assert f.n.tolist() == [1, 2, 3, 4, 5, 6]
