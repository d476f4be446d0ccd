"""The synthetic paired cohort: contract, determinism, prevalence, co-occurrence, shared instance detail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relink_lib.cohorts import Cohort, make_synthetic_cohort
from relink_lib.cohorts.base import REQUIRED_COLUMNS
from relink_lib.cohorts.synthetic.anatomy import sample_studies
from relink_lib.cohorts.synthetic.prevalence import CHEXPERT_PREVALENCE, MIMIC_CXR_PREVALENCE
from relink_lib.cohorts.synthetic.reports import write_reports
from relink_lib.labels import CHEXPERT_LABELS

PATHO = [l for l in CHEXPERT_LABELS if l not in ("No Finding", "Support Devices")]


@pytest.fixture(scope="module")
def small() -> Cohort:
    return make_synthetic_cohort(240, image_size=32, seed=3)


@pytest.fixture(scope="module")
def labelled() -> dict[str, pd.DataFrame]:
    """Reports and labels of 6,000 studies per site (no rendering: fast)."""
    out = {}
    for site in ("internal", "external"):
        s = sample_studies(6000, np.random.default_rng(11), site)
        frame = pd.DataFrame(write_reports(s, np.random.default_rng(12), site))
        frame["patient"] = s["patient"]
        out[site] = frame
    return out


def test_contract_columns_types_and_images(small: Cohort) -> None:
    pairs = small.pairs
    assert len(small) == 240 and small.public and small.name == "synthetic-internal"
    for col in (
        *REQUIRED_COLUMNS,
        *CHEXPERT_LABELS,
        "mentions_device",
        "mentions_measurement",
        "mentions_laterality",
        "mentions_chronic",
    ):
        assert col in pairs.columns, col
    for col in ("mentions_device", "mentions_measurement", "mentions_laterality", "mentions_chronic"):
        assert pairs[col].dtype == bool
    values = small.label_matrix()
    assert values.shape == (240, 14)
    assert set(np.unique(values[~np.isnan(values)])) <= {-1.0, 0.0, 1.0}
    assert set(pairs["split"]) <= {"train", "val", "test"}
    assert set(pairs["view"]) <= {"AP", "PA"}
    assert (pairs["text"].str.len() > 0).all()
    imgs = small.load_images([0, 5, 239])
    assert imgs.shape == (3, 32, 32) and imgs.dtype == np.float32
    assert imgs.min() >= 0.0 and imgs.max() <= 1.0 and imgs.std() > 0.05
    np.testing.assert_array_equal(small.load_image(5), imgs[1])


def test_deterministic_from_seed_and_independent_of_threads() -> None:
    a = make_synthetic_cohort(300, image_size=32, seed=7, n_jobs=1)
    b = make_synthetic_cohort(300, image_size=32, seed=7, n_jobs=2)
    c = make_synthetic_cohort(300, image_size=32, seed=8)
    pd.testing.assert_frame_equal(a.pairs, b.pairs)
    np.testing.assert_array_equal(a.load_images(), b.load_images())
    assert not a.pairs["text"].equals(c.pairs["text"])
    assert not np.array_equal(a.load_images(), c.load_images())


def test_patients_hold_one_to_six_studies_with_stable_anatomy_and_chronic_devices() -> None:
    s = sample_studies(3000, np.random.default_rng(0), "internal")
    counts = np.bincount(s["patient"])
    assert counts.min() >= 1 and counts.max() <= 6 and (counts >= 2).mean() > 0.4
    frame = pd.DataFrame(
        {k: s[k] for k in ("patient", "lung_w", "rib_spacing", "sternotomy", "port", "pacemaker", "scoliosis")}
    )
    per_patient = frame.groupby("patient").nunique()
    assert (per_patient.drop(columns=[]) == 1).all().all()  # anatomy and chronic devices stable within a patient
    assert s["support_devices"][s["sternotomy"]].all()


def test_label_prevalence_close_to_published(labelled: dict[str, pd.DataFrame]) -> None:
    for site, table in (("internal", MIMIC_CXR_PREVALENCE), ("external", CHEXPERT_PREVALENCE)):
        frame = labelled[site]
        for label in PATHO + ["No Finding"]:
            got = (frame[label] == 1.0).mean()
            assert abs(got - table[label][0]) < 0.035 + 0.15 * table[label][0], (site, label, got, table[label][0])
        # uncertain labels exist where the published data have many
        assert (frame["Pneumonia"] == -1.0).mean() > 0.04
    # sites differ the way MIMIC-CXR and CheXpert do
    assert (labelled["external"]["Lung Opacity"] == 1).mean() > (labelled["internal"]["Lung Opacity"] == 1).mean() + 0.1


def test_co_occurrence_and_no_finding_exclusivity(labelled: dict[str, pd.DataFrame]) -> None:
    frame = labelled["internal"]
    pos = frame[PATHO].isin([1.0, -1.0]).any(axis=1)
    assert not (pos & (frame["No Finding"] == 1.0)).any()  # No Finding excludes any positive/uncertain finding
    assert ((frame["No Finding"] == 1.0) | pos).all()  # and is set whenever nothing is found
    eff = frame["Pleural Effusion"] == 1.0

    def lift(a: pd.Series, b: pd.Series) -> float:
        return (a & b).mean() / (a.mean() * b.mean())

    for other in ("Atelectasis", "Edema", "Cardiomegaly"):
        assert lift(eff, frame[other] == 1.0) > 1.4, other
    assert lift(frame["Consolidation"] == 1.0, frame["Pneumonia"].isin([1.0, -1.0])) > 1.5
    assert lift(frame["Lung Lesion"] == 1.0, frame["Edema"] == 1.0) < 1.5  # unrelated pairs are not forced together


def test_labels_follow_the_report_text(labelled: dict[str, pd.DataFrame]) -> None:
    frame = labelled["internal"]
    text = frame["findings"] + " " + frame["impression"]
    has_effusion_word = text.str.contains("effusion", case=False)
    assert has_effusion_word[frame["Pleural Effusion"].isin([1.0, -1.0, 0.0])].all()
    assert not has_effusion_word[frame["Pleural Effusion"].isna()].any()
    ptx_neg = frame["Pneumothorax"] == 0.0
    assert text[ptx_neg].str.contains("pneumothorax").all()
    assert frame["mentions_measurement"].eq(text.str.contains(r"\d+(?:\.\d)? (?:mm|cm)")).all()


def test_report_detail_knob_controls_mentions() -> None:
    s = sample_studies(800, np.random.default_rng(5), "internal")
    full = pd.DataFrame(write_reports(s, np.random.default_rng(6), "internal", report_detail=1.0))
    none = pd.DataFrame(write_reports(s, np.random.default_rng(6), "internal", report_detail=0.0))
    assert full["mentions_measurement"].mean() > 0.02 and none["mentions_measurement"].sum() == 0
    assert none["mentions_laterality"].mean() < 0.5 * full["mentions_laterality"].mean()
    # labels do not depend on how much detail is kept
    lab = [l for l in CHEXPERT_LABELS if l not in ("Cardiomegaly", "Enlarged Cardiomediastinum") + tuple(PATHO)]
    pd.testing.assert_frame_equal(full[lab].isna(), none[lab].isna())


def test_image_and_report_share_instance_detail() -> None:
    c = make_synthetic_cohort(1500, image_size=48, seed=1)
    text = c.pairs["findings"].str.lower()
    imgs = c.load_images()
    lower = imgs[:, 30:44]
    asym = lower[:, :, 4:22].mean(axis=(1, 2)) - lower[:, :, 26:44].mean(
        axis=(1, 2)
    )  # image left (patient right) minus image right
    right = text.str.contains("right pleural effusion") & ~text.str.contains("left pleural effusion|bilateral")
    left = text.str.contains("left pleural effusion") & ~text.str.contains("right pleural effusion|bilateral")
    assert right.sum() > 10 and left.sum() > 10
    assert asym[right.to_numpy()].mean() > asym[left.to_numpy()].mean() + 0.01
    ett = text.str.contains("endotracheal tube|et tube")
    column = imgs[:, 2:14, 22:26].max(axis=(1, 2))
    assert column[ett.to_numpy()].mean() > column[~ett.to_numpy()].mean() + 0.03


def test_image_noise_knob_and_site_style() -> None:
    quiet = make_synthetic_cohort(60, image_size=32, seed=2, image_noise=0.0).load_images()
    one = make_synthetic_cohort(60, image_size=32, seed=2, image_noise=1.0).load_images()
    two = make_synthetic_cohort(60, image_size=32, seed=2, image_noise=2.0).load_images()
    # same anatomy (same seed); the noise added scales with the knob
    d1, d2 = np.abs(one - quiet).mean(), np.abs(two - quiet).mean()
    assert d1 > 0.01 and 1.6 < d2 / d1 < 2.3
    ext = make_synthetic_cohort(60, image_size=32, seed=2, site="external")
    assert ext.pairs["site"].eq("external").all() and set(ext.pairs["split"]) <= {"train", "val"}
    assert ext.pairs["study_id"].str.fullmatch(r"patient\d{5}/study\d").all()
    # burned-in marker: top right for the internal site, top left for the external site
    ext_imgs = ext.load_images()
    assert quiet[:, 1, 29].mean() > quiet[:, 1, 2].mean() + 0.3
    assert ext_imgs[:, 2, 3].mean() > ext_imgs[:, 2, 28].mean() + 0.3


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"n_pairs": 0}, "n_pairs"),
        ({"image_size": 8}, "image_size"),
        ({"site": "mars"}, "site"),
        ({"report_detail": -1.0}, "report_detail"),
        ({"image_noise": float("nan")}, "image_noise"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs: dict, word: str) -> None:
    args = {"n_pairs": 10, "image_size": 32} | kwargs
    with pytest.raises(ValueError, match=word):
        make_synthetic_cohort(**args)
