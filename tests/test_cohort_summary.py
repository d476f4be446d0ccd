"""Chapter 2's payload and sentences follow the cohorts they are given."""

from __future__ import annotations

import numpy as np
import pytest

from relink_lib.cohorts.base import Cohort
from relink_lib.cohorts.summary import (
    MENTION_FLAGS,
    cohorts_findings,
    cohorts_payload,
    cooccurrence_pairs,
    mention_rates,
    prevalence_table,
    split_table,
)
from relink_lib.cohorts.synthetic.generate import make_synthetic_cohort
from relink_lib.cohorts.synthetic.prevalence import MIMIC_CXR_PREVALENCE
from relink_lib.labels import CHEXPERT_LABELS


@pytest.fixture(scope="module")
def sites():
    return (
        make_synthetic_cohort(150, image_size=16, seed=1, n_jobs=1),
        make_synthetic_cohort(60, image_size=16, seed=1, site="external", n_jobs=1),
    )


def test_prevalence_table_counts_positive_labels_and_quotes_the_references(sites):
    internal, external = sites
    table = prevalence_table(internal, external)
    edema = internal.pairs["Edema"].to_numpy()
    assert table.loc["Edema", "internal positive"] == pytest.approx(np.mean(edema == 1))
    assert table.loc["Edema", "internal uncertain"] == pytest.approx(np.mean(edema == -1))
    assert table["MIMIC-CXR positive"].tolist() == [MIMIC_CXR_PREVALENCE[l][0] for l in CHEXPERT_LABELS]


def test_payload_gap_and_findings_agree(sites):
    internal, external = sites
    payload = cohorts_payload(internal, external, {"internal": "a", "external": "b"})
    table = prevalence_table(internal, external)
    gap = (table["internal positive"] - table["MIMIC-CXR positive"]).abs()
    assert payload["largest_gap_internal_vs_mimic"] == {"label": gap.idxmax(), "abs_gap": pytest.approx(gap.max())}
    lines = cohorts_findings(payload)
    assert lines[0].startswith("The internal and external cohorts are simulations of 150 pairs")
    assert f"{gap.max():.3f} ({gap.idxmax()})" in lines[1]
    assert "excluded no study" in lines[-1]
    payload["internal"]["excluded"] = {"no_report": 3}
    assert cohorts_findings(payload, simulation=False)[-1] == "The loaders excluded 3 (no_report)."


def test_chapter_tables_count_pairs_patients_and_conditional_shares(sites):
    internal, external = sites
    sizes = split_table(internal, external)
    assert sizes.loc["total", "internal pairs"] == 150 and sizes.loc["total", "external pairs"] == 60
    assert sizes.loc[["train", "val", "test"], "internal pairs"].sum() == 150
    assert sizes.loc["total", "internal patients"] == internal.pairs["patient_id"].nunique()
    pairs = cooccurrence_pairs(internal, [("Pleural Effusion", "Edema")]).iloc[0]
    a, b = internal.pairs["Pleural Effusion"].to_numpy() == 1, internal.pairs["Edema"].to_numpy() == 1
    assert pairs["conditional"] == pytest.approx(b[a].mean()) and pairs["base_rate"] == pytest.approx(b.mean())
    rates = mention_rates(internal)
    assert set(rates.index) == set(MENTION_FLAGS) and 0 <= rates.min() <= rates.max() <= 1
    assert mention_rates(Cohort(internal.pairs.drop(columns=list(MENTION_FLAGS)), name="no flags")).empty
    share = cohorts_payload(internal, external, {"internal": "a", "external": "b"})["internal"][
        "studies_per_patient_share"
    ]
    assert sum(share) == pytest.approx(1.0, abs=0.01)
