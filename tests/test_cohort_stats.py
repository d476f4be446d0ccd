"""Chapter 2 statistics on a hand-made cohort with known answers."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

matplotlib.use("Agg")

from relink_lib.cohorts import Cohort  # noqa: E402
from relink_lib.cohorts.stats import (  # noqa: E402
    STUDIES_PER_PATIENT_STATS,
    cooccurrence,
    label_prevalence,
    split_sizes,
    studies_per_patient,
    studies_per_patient_summary,
)
from relink_lib.cohorts.synthetic.patients import STUDIES_PER_PATIENT  # noqa: E402
from relink_lib.labels import CHEXPERT_LABELS  # noqa: E402
from relink_lib.plots.cohort import (  # noqa: E402
    plot_cooccurrence,
    plot_prevalence_vs_reference,
    plot_studies_per_patient,
    plot_studies_per_patient_vs_mimic,
)


def _cohort() -> Cohort:
    n = 6
    frame = pd.DataFrame(
        {
            "patient_id": ["a", "a", "a", "b", "c", "c"],
            "study_id": [f"s{i}" for i in range(n)],
            "image_path": [f"{i}.png" for i in range(n)],
            "text": "t",
            "findings": "",
            "impression": "t",
            "split": ["train", "train", "train", "val", "test", "test"],
            "view": "PA",
            "site": "x",
        }
    )
    for label in CHEXPERT_LABELS:
        frame[label] = np.nan
    frame["Pleural Effusion"] = [1, 1, 1, 0, -1, np.nan]
    frame["Atelectasis"] = [1, np.nan, 1, 1, np.nan, np.nan]
    return Cohort(frame, name="known")


def test_known_answers() -> None:
    c = _cohort()
    prev = label_prevalence(c)
    assert prev.loc["Pleural Effusion"].tolist() == [3 / 6, 1 / 6, 1 / 6, 1 / 6]
    np.testing.assert_allclose(prev.sum(axis=1), 1.0)
    cond = cooccurrence(c)
    assert cond.loc["Pleural Effusion", "Atelectasis"] == 2 / 3  # 2 of the 3 effusions have atelectasis
    assert cond.loc["Atelectasis", "Pleural Effusion"] == 2 / 3
    assert cond.loc["Pleural Effusion", "Pleural Effusion"] == 1.0 and np.isnan(cond.loc["Edema", "Atelectasis"])
    assert cooccurrence(c, include_uncertain=True).loc["Pleural Effusion", "Atelectasis"] == 2 / 4
    assert studies_per_patient(c).to_dict() == {1: 1, 2: 1, 3: 1}
    sizes = split_sizes(c)
    assert sizes.loc["train"].tolist() == [3, 1] and sizes.loc["total"].tolist() == [6, 3]


def test_figures_have_labelled_axes() -> None:
    c = _cohort()
    ax = plot_prevalence_vs_reference({"known": label_prevalence(c)}, {"ref": {l: (0.1, 0.0) for l in CHEXPERT_LABELS}})
    assert "%" in ax.get_xlabel()
    ax = plot_cooccurrence(cooccurrence(c))
    assert ax.get_xlabel() and ax.get_ylabel()
    ax = plot_studies_per_patient({"known": studies_per_patient(c)})
    assert ax.get_xlabel() == "studies per patient" and ax.get_yscale() == "log"
    ax = plot_studies_per_patient(
        {"known": studies_per_patient(c)},
        law=STUDIES_PER_PATIENT.pmf_series(),
        reference_mean=("published", 3.48),
        log=False,
    )
    assert ax.get_yscale() == "linear" and "%" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "fitted law" in labels and any(t.startswith("published: mean 3.48") for t in labels)
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "fitted law"]
    assert list(line.get_xdata()) == [1, 2, 3]  # the law is drawn up to the largest count shown
    ax = plot_studies_per_patient_vs_mimic({"known": studies_per_patient(c)})
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert ax.get_yscale() == "log" and "fitted law (1 + NB, r = 0.5)" in labels
    assert "MIMIC-CXR v2.0.0 (published): mean 3.48" in labels


def test_studies_per_patient_summary_known_answers() -> None:
    got = studies_per_patient_summary(_cohort())  # patients a (3 studies), b (1), c (2)
    assert got == {
        "patients": 3.0,
        "studies": 6.0,
        "mean": 2.0,
        "median": 2.0,
        "share_one": 1 / 3,
        "share_over_6": 0.0,
        "p90": 3.0,
        "p99": 3.0,
        "max": 3.0,
    }
    k = np.array([1] * 50 + [2] * 30 + [7] * 19 + [100])
    got = studies_per_patient_summary(k)
    assert list(got) == list(STUDIES_PER_PATIENT_STATS)
    assert got["median"] == 1 and got["share_one"] == 0.5 and got["share_over_6"] == 0.2
    assert got["p90"] == 7 and got["p99"] == 7 and got["max"] == 100 and got["mean"] == pytest.approx(3.43)
    assert all(np.isnan(v) for v in studies_per_patient_summary(np.array([], dtype=int)).values())
    with pytest.raises(ValueError, match="at least one study"):
        studies_per_patient_summary(np.array([0, 2]))
