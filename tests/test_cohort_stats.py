"""Chapter 2 statistics on a hand-made cohort with known answers."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")

from relink_lib.cohorts import Cohort  # noqa: E402
from relink_lib.cohorts.stats import cooccurrence, label_prevalence, split_sizes, studies_per_patient  # noqa: E402
from relink_lib.labels import CHEXPERT_LABELS  # noqa: E402
from relink_lib.plots.cohort import plot_cooccurrence, plot_prevalence_vs_reference, plot_studies_per_patient  # noqa: E402


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
    assert ax.get_xlabel() == "studies per patient"
