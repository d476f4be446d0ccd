"""The synthetic paired cohort: contract, determinism, prevalence, co-occurrence, shared instance detail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from relink_lib.audit.bootstrap import patient_bootstrap
from relink_lib.cohorts import Cohort, make_synthetic_cohort
from relink_lib.cohorts.base import REQUIRED_COLUMNS
from relink_lib.cohorts.splits import assert_patient_disjoint, patient_split
from relink_lib.cohorts.synthetic.anatomy import sample_studies
from relink_lib.cohorts.synthetic.patients import (
    MIMIC_CXR_COUNTS,
    SAFETY_CAP,
    STUDIES_PER_PATIENT,
    fit_studies_per_patient,
    sample_study_counts,
)
from relink_lib.cohorts.synthetic.prevalence import CHEXPERT_PREVALENCE, MIMIC_CXR_PREVALENCE
from relink_lib.cohorts.synthetic.reports import write_reports
from relink_lib.labels import CHEXPERT_LABELS
from relink_lib.profiles import get_profile

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


def test_patients_hold_a_long_tail_of_studies_with_stable_anatomy_and_chronic_devices() -> None:
    s = sample_studies(3000, np.random.default_rng(0), "internal")
    counts = np.bincount(s["patient"])
    assert counts.min() >= 1 and counts.max() <= SAFETY_CAP and counts.sum() == 3000
    assert counts.max() > 6 and (counts >= 2).mean() > 0.4
    frame = pd.DataFrame(
        {k: s[k] for k in ("patient", "lung_w", "rib_spacing", "sternotomy", "port", "pacemaker", "scoliosis")}
    )
    per_patient = frame.groupby("patient").nunique()
    assert (per_patient.drop(columns=[]) == 1).all().all()  # anatomy and chronic devices stable within a patient
    assert s["support_devices"][s["sternotomy"]].all()
    # studies are in order within a patient and days since the first study strictly increase
    days = pd.Series(s["days"]).groupby(s["patient"])
    assert (days.diff().dropna() >= 1).all() and (days.first() == 0).all()
    assert np.array_equal(s["order"], pd.Series(s["patient"]).groupby(s["patient"]).cumcount().to_numpy())


# MEAN_TOL: the fitted law's mean may differ from MIMIC-CXR's published 227,835 / 65,379 by at most this much;
# SAMPLE_TOL: a sample of 10^6 patients (standard error 3.85 / 1000 = 0.004) may differ by at most this much.
MEAN_TOL = 1e-9
SAMPLE_TOL = 0.02


def test_fitted_law_matches_the_published_mean() -> None:
    published = 227_835 / 65_379
    assert MIMIC_CXR_COUNTS.mean_studies_per_patient == pytest.approx(published, abs=1e-12)
    law = STUDIES_PER_PATIENT
    assert abs(law.mean - published) < MEAN_TOL  # from the law itself (exact sum over 1 .. cap)
    assert law.pmf(law.support).sum() == pytest.approx(1.0, abs=1e-12) and law.pmf(0) == 0 and law.pmf(201) == 0
    assert law.cap == SAFETY_CAP == 200 and law.truncated_mass < 1e-12  # the cap does not bind
    draws = law.sample(np.random.default_rng(2024), 1_000_000)
    assert abs(draws.mean() - published) < SAMPLE_TOL  # from a large sample
    assert draws.min() == 1 and draws.max() <= law.cap
    # what the shape gives (an assumption, recorded in docs/cohorts.md): a long tail of dozens of studies
    summary = law.summary(MIMIC_CXR_COUNTS.patients)
    assert summary["median"] == 2 and 0.35 < summary["share_one"] < 0.45 and summary["share_over_6"] > 0.1
    assert summary["p99"] >= 15 and 30 < summary["expected_max"] < law.cap
    assert (draws == 1).mean() == pytest.approx(summary["share_one"], abs=0.003)
    assert np.quantile(draws, 0.99, method="inverted_cdf") == summary["p99"]
    # a cohort drawn patient by patient holds exactly n_pairs studies and keeps the mean
    counts = sample_study_counts(200_000, np.random.default_rng(3))
    assert counts.sum() == 200_000 and abs(counts[:-1].mean() - published) < 0.05
    # the fit solves the mean for any shape; the default is the one recorded
    other = fit_studies_per_patient(shape=1.0)
    assert abs(other.mean - published) < MEAN_TOL and other.summary()["share_one"] < summary["share_one"]  # thinner
    with pytest.raises(ValueError, match="mean"):
        fit_studies_per_patient(mean=0.5)


def test_default_size_cohort_has_a_tail_beyond_six() -> None:
    n = get_profile("default").cohort.n_pairs
    counts = np.bincount(sample_studies(n, np.random.default_rng(0), "internal")["patient"])
    assert counts.sum() == n and abs(counts.mean() - MIMIC_CXR_COUNTS.mean_studies_per_patient) < 0.25
    assert counts.max() >= 20 and (counts > 6).mean() > 0.08 and (counts > 12).sum() > 50


def test_same_seed_same_patients_and_splits() -> None:
    a = sample_studies(2000, np.random.default_rng(9), "internal")
    b = sample_studies(2000, np.random.default_rng(9), "internal")
    c = sample_studies(2000, np.random.default_rng(10), "internal")
    for key in ("patient", "order", "days", "age", "lesion_mm"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a["patient"], c["patient"])
    x = make_synthetic_cohort(400, image_size=16, seed=21, n_jobs=1).pairs
    y = make_synthetic_cohort(400, image_size=16, seed=21, n_jobs=1).pairs
    pd.testing.assert_frame_equal(x, y)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_splits_are_patient_level_and_hold_their_share_of_pairs(seed: int) -> None:
    c = make_synthetic_cohort(1200, image_size=16, seed=seed, n_jobs=1)
    assert_patient_disjoint(c.pairs)
    assert c.pairs.groupby("patient_id")["split"].nunique().max() == 1  # no patient in two splits
    largest = int(c.pairs.groupby("patient_id").size().max())
    got = c.pairs["split"].value_counts()
    for name, frac in zip(("train", "val", "test"), (0.8, 0.1, 0.1)):
        assert abs(got.get(name, 0) - frac * 1200) <= largest, (name, got.to_dict(), largest)
    # study dates increase within a patient (the MIMIC loader orders studies by date)
    dates = pd.to_datetime(c.pairs["study_date"], format="%Y%m%d")
    assert (dates.groupby(c.pairs["patient_id"]).diff().dropna() > pd.Timedelta(0)).all()


def _ids(counts: np.ndarray) -> np.ndarray:
    return np.repeat(np.char.mod("p%d", np.arange(len(counts))), counts)


def test_a_patient_with_100_studies_does_not_break_the_split_fractions() -> None:
    rng = np.random.default_rng(0)
    counts = np.concatenate([[100], sample_study_counts(1900, rng)])
    ids = _ids(counts)
    for seed in range(10):
        split = pd.Series(patient_split(ids, (0.8, 0.1, 0.1), seed=seed, balance="pairs"))
        assert split.groupby(ids).nunique().max() == 1
        got = split.value_counts()
        for name, frac in zip(("train", "val", "test"), (0.8, 0.1, 0.1)):
            assert abs(got.get(name, 0) - frac * len(ids)) <= 100, (seed, got.to_dict())
        assert got.get("val", 0) > 0 and got.get("test", 0) > 0


@pytest.mark.parametrize("profile", ["smoke", "ci"])
def test_small_profiles_get_non_empty_splits(profile: str) -> None:
    cfg = get_profile(profile).cohort
    for n, fractions in ((cfg.n_pairs, cfg.split_fractions), (cfg.n_pairs_external, cfg.external_split_fractions)):
        for seed in range(25):
            counts = sample_study_counts(int(n), np.random.default_rng(seed))
            split = patient_split(_ids(counts), fractions, seed=seed, balance="pairs")
            got = pd.Series(split).value_counts()
            for name, frac in zip(("train", "val", "test"), fractions):
                assert (got.get(name, 0) > 0) == (frac > 0), (profile, n, seed, got.to_dict())


def test_splitter_says_when_a_split_cannot_be_filled() -> None:
    with pytest.raises(ValueError, match=r"2 patient\(s\) cannot fill the 3 splits with a positive fraction"):
        patient_split(["a"] * 50 + ["b"], (0.8, 0.1, 0.1), balance="pairs")
    assert set(patient_split(["a"] * 50 + ["b"], (0.9, 0.1, 0.0), balance="pairs")) == {"train", "val"}
    # three patients fill three splits, however unequal
    assert sorted(patient_split(["a"] * 50 + ["b", "c"], (0.8, 0.1, 0.1), balance="pairs")[[0, 50, 51]]) == [
        "test",
        "train",
        "val",
    ]
    with pytest.raises(ValueError, match="balance"):
        patient_split(["a", "b"], (0.5, 0.5, 0.0), balance="studies")
    with pytest.warns(UserWarning, match=r"1 patient\(s\) cannot fill the 3 splits.*\['val', 'test'\] left empty"):
        split = patient_split(["a"] * 5, (0.4, 0.3, 0.3), balance="pairs", too_few="warn")
    assert set(split) == {"train"}
    with pytest.warns(UserWarning, match=r"\['val'\] left empty"):
        split = patient_split(["a"] * 5 + ["b"], (0.3, 0.2, 0.5), balance="pairs", too_few="warn")
    assert set(split) == {"train", "test"}  # the two largest fractions get the two patients
    # the generator warns (a tiny cohort, e.g. a top-up used whole, still builds) and names the empty splits
    with pytest.warns(UserWarning, match="left empty"):
        tiny = make_synthetic_cohort(1, image_size=16, seed=0, split_fractions=(0.4, 0.3, 0.3), n_jobs=1)
    assert tiny.pairs["split"].tolist() == ["train"]


def test_patient_bootstrap_is_right_with_unequal_cluster_sizes() -> None:
    s = sample_studies(3000, np.random.default_rng(4), "internal")
    pid = s["patient"]
    sizes = np.bincount(pid)
    assert sizes.max() >= 15  # clusters of very unequal size
    rng = np.random.default_rng(5)
    value = (rng.random(len(pid)) < 0.2 + 0.5 * rng.random(sizes.size)[pid]).astype(float)  # patient effect
    rep = patient_bootstrap({"v": value}, pid, n_boot=4000, seed=1)["v"]
    assert rep.mean() == pytest.approx(value.mean(), abs=0.003)
    # linearised standard error of the ratio estimator sum(t_i) / sum(k_i) over resampled patients
    t = np.bincount(pid, weights=value)
    r = t.sum() / sizes.sum()
    se = np.sqrt(np.sum((t - r * sizes) ** 2)) / sizes.sum()
    assert rep.std() == pytest.approx(se, rel=0.1)
    naive = value.std() / np.sqrt(len(value))  # treating studies as independent understates it
    assert rep.std() > 1.2 * naive


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
    assert ext.pairs["study_id"].str.fullmatch(r"patient\d{5}/study\d+").all()
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
