"""Cohort type: subsets, labels, cache format, validation errors; patient-level splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from relink_lib.cohorts import Cohort, make_synthetic_cohort
from relink_lib.cohorts.images import ImageReadError
from relink_lib.cohorts.splits import assert_patient_disjoint, patient_split
from relink_lib.labels import CHEXPERT_LABELS


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return make_synthetic_cohort(200, image_size=32, seed=4)


def _minimal_pairs(n: int = 4) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "patient_id": [f"p{i // 2}" for i in range(n)],
            "study_id": [f"s{i}" for i in range(n)],
            "image_path": [f"img{i}.png" for i in range(n)],
            "text": [f"report {i}" for i in range(n)],
            "findings": "",
            "impression": [f"report {i}" for i in range(n)],
            "split": "train",
            "view": "PA",
            "site": "x",
        }
    )
    for label in CHEXPERT_LABELS:
        frame[label] = np.nan
    return frame


def test_split_subsets_reindex_and_share_images(cohort: Cohort) -> None:
    parts = {name: cohort.split(name) for name in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == len(cohort)
    test = parts["test"]
    rows = np.flatnonzero(cohort.pairs["split"].to_numpy() == "test")
    assert list(test.pairs.index) == list(range(len(test)))
    pd.testing.assert_frame_equal(test.pairs, cohort.pairs.iloc[rows].reset_index(drop=True))
    np.testing.assert_array_equal(test.load_image(1), cohort.load_image(int(rows[1])))
    np.testing.assert_array_equal(test.load_images([0, 2]), cohort.load_images(rows[[0, 2]]))
    ids = [set(p.pairs["patient_id"]) for p in parts.values()]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    with pytest.raises(ValueError, match="split='validate'"):
        cohort.split("validate")


def test_label_matrix_matches_columns(cohort: Cohort) -> None:
    m = cohort.label_matrix()
    assert m.shape == (len(cohort), 14) and m.dtype == np.float64
    np.testing.assert_array_equal(m[:, CHEXPERT_LABELS.index("Edema")], cohort.pairs["Edema"].to_numpy())
    assert np.isnan(m).any()


def test_save_load_round_trip(tmp_path: Path, cohort: Cohort) -> None:
    sub = cohort.split("train")
    sub.save(tmp_path / "c")
    back = Cohort.load(tmp_path / "c")
    pd.testing.assert_frame_equal(back.pairs, sub.pairs)
    np.testing.assert_array_equal(back.load_images(), sub.load_images())
    assert back.public == sub.public and back.name == sub.name and back.summary == sub.summary and len(back) == len(sub)
    with pytest.raises(FileNotFoundError, match="pairs.pkl"):
        Cohort.load(tmp_path / "nothing")


def test_row_errors(cohort: Cohort) -> None:
    with pytest.raises(IndexError, match="row 10000"):
        cohort.load_image(10000)
    with pytest.raises(TypeError, match="boolean"):
        cohort.load_images(np.ones(len(cohort), dtype=bool))
    assert "report" not in repr(cohort) and cohort.pairs["text"].iloc[0] not in repr(cohort)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda f: f.drop(columns=["view"]), r"lack column\(s\) \['view'\]"),
        (lambda f: f.assign(Edema=[1.0, 2.0, np.nan, 0.0]), r"row 1 column 'Edema' has value 2.0"),
        (
            lambda f: f.assign(Edema=["1", "yes", "", "0"]),
            r"row 1 column 'Edema' has a non-numeric value \(not shown\)",
        ),
        (lambda f: f.assign(split=["train", "train", "holdout", "holdout"]), r"row 2 column 'split' is not one of"),
        (lambda f: f.assign(text=["a", " ", "c", "d"]), r"row 1 has empty report text"),
        (
            lambda f: pd.concat([f, f.iloc[[0]]], ignore_index=True),
            r"row 4 duplicates an earlier row's study_id and image_path",
        ),
        (
            lambda f: f.assign(split=["train", "test", "val", "val"]),
            r"patient_id='p0' appears in splits \['test', 'train'\]",
        ),
    ],
)
def test_validation_errors(mutate, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Cohort(mutate(_minimal_pairs()), name="fixture")


def test_lazy_images_resize_and_corrupt_file(tmp_path: Path) -> None:
    frame = _minimal_pairs()
    for i in range(3):
        Image.fromarray((np.arange(40 * 60).reshape(40, 60) % 256).astype(np.uint8)).save(tmp_path / f"img{i}.png")
    (tmp_path / "img3.png").write_bytes(b"not an image at all")
    c = Cohort(frame, root=tmp_path, image_size=16, name="files")
    img = c.load_image(0)
    assert img.shape == (16, 16) and img.dtype == np.float32 and 0 <= img.min() <= img.max() <= 1
    assert c.load_images([0, 1, 2]).shape == (3, 16, 16)
    with pytest.raises(ImageReadError, match="img3.png: cannot read image"):
        c.load_image(3)
    (tmp_path / "img2.png").unlink()
    with pytest.raises(ImageReadError, match="img2.png: image file not found"):
        c.load_images([0, 2])
    full = Cohort(frame, root=tmp_path, name="files")
    assert full.load_image(0).shape == (40, 60)


def test_patient_split_is_patient_level_and_deterministic() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 400, 3000).astype(str)
    split = patient_split(ids, (0.7, 0.2, 0.1), seed=3)
    np.testing.assert_array_equal(split, patient_split(ids, (0.7, 0.2, 0.1), seed=3))
    # brute force: every patient has exactly one split
    for pid in np.unique(ids)[:50]:
        assert len(set(split[ids == pid])) == 1
    per_patient = pd.Series(split).groupby(ids).first().value_counts(normalize=True)
    assert abs(per_patient["train"] - 0.7) < 0.01 and abs(per_patient["val"] - 0.2) < 0.01
    assert not np.array_equal(split, patient_split(ids, (0.7, 0.2, 0.1), seed=4))
    with pytest.raises(ValueError, match="fractions"):
        patient_split(ids, (0.5, 0.4))
    with pytest.raises(ValueError, match="fractions"):
        patient_split(ids, (0.9, 0.2, -0.1))
    frame = pd.DataFrame({"patient_id": ["a", "a", "b"], "split": ["train", "val", "val"]})
    with pytest.raises(ValueError, match="patient_id='a'"):
        assert_patient_disjoint(frame)
