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
    reference_studies_per_patient,
    split_table,
    studies_per_patient_notes,
    studies_per_patient_table,
)
from relink_lib.cohorts.synthetic.generate import make_synthetic_cohort
from relink_lib.cohorts.synthetic.patients import MIMIC_CXR_COUNTS, STUDIES_PER_PATIENT
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


def test_studies_per_patient_table_sets_the_cohorts_beside_the_published_counts_and_the_law(sites):
    internal, external = sites
    table = studies_per_patient_table({"internal": internal, "external": external})
    assert list(table.index) == ["MIMIC-CXR (published)", "fitted law", "internal", "external"]
    assert list(table.columns) == [
        "patients",
        "studies",
        "mean",
        "median",
        "1 study",
        "more than 6",
        "90th pct",
        "99th pct",
        "max",
    ]
    pub = table.loc["MIMIC-CXR (published)"]
    assert pub["patients"] == 65_379 and pub["studies"] == 227_835 and pub["mean"] == pytest.approx(3.4848, abs=1e-4)
    assert pub[["median", "1 study", "more than 6", "90th pct", "99th pct", "max"]].isna().all()  # not published
    law = table.loc["fitted law"]
    assert law["mean"] == pytest.approx(pub["mean"], abs=1e-9) and law["median"] == 2
    assert law["max"] == pytest.approx(STUDIES_PER_PATIENT.expected_max(65_379))
    per = internal.pairs.groupby("patient_id").size()
    row = table.loc["internal"]
    assert row["patients"] == len(per) and row["studies"] == 150 and row["max"] == per.max()
    assert row["1 study"] == pytest.approx((per == 1).mean()) and row["mean"] == pytest.approx(per.mean())
    assert list(studies_per_patient_table({"x": internal}, reference=False).index) == ["x"]
    ref = reference_studies_per_patient()
    assert set(ref) == {"MIMIC-CXR (published)", "fitted law"}


def test_studies_per_patient_notes_and_findings_quote_the_published_counts(sites):
    internal, external = sites
    notes = studies_per_patient_notes()
    assert notes[0].startswith("MIMIC-CXR v2.0.0 holds 227,835 studies of 65,379 patients (Johnson et al.")
    assert "3.48 studies per patient" in notes[0]
    assert "only the mean is fitted" in notes[1] and "shape r = 0.5" in notes[1] and "assumption" in notes[1]
    assert "cap of 200 studies" in notes[2] and "never binds" in notes[2]
    assert "3,269 studies of 293 patients (11.2 per patient)" in notes[3]
    payload = cohorts_payload(internal, external, {"internal": "a", "external": "b"})
    ref = payload["reference_studies_per_patient"]
    assert ref["MIMIC-CXR"]["patients"] == MIMIC_CXR_COUNTS.patients and ref["law"]["shape"] == 0.5
    assert ref["law"]["cap"] == 200 and ref["law_summary"]["median"] == 2
    sm = payload["internal"]["studies_per_patient_summary"]
    assert sm["studies"] == 150 and sm["max"] == max(payload["internal"]["studies_per_patient"])
    line = cohorts_findings(payload)[2]
    assert line.startswith(f"Patients hold {payload['internal']['mean_studies_per_patient']:.2f} studies on average")
    assert "against 3.48 in MIMIC-CXR v2.0.0 (227,835 studies of 65,379 patients, published)" in line
    assert "fitted to" in line and "fitted to" not in cohorts_findings(payload, simulation=False)[2]
