"""Real-layout loaders (MIMIC-CXR-JPG, CheXpert Plus, folder), export round trips and bad input."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from relink_lib.cohorts import Cohort, export, load_chexpert_plus, load_folder, load_mimic_cxr, make_synthetic_cohort
from relink_lib.cohorts.images import ImageReadError
from relink_lib.cohorts.text import compose_text, parse_sections
from relink_lib.labels import CHEXPERT_LABELS

KEY_COLUMNS = [
    "patient_id",
    "study_id",
    "image_path",
    "text",
    "findings",
    "impression",
    "split",
    "view",
    "site",
    *CHEXPERT_LABELS,
    "study_order",
]
SPLIT, LABELS, META = (
    "mimic-cxr-2.0.0-split.csv.gz",
    "mimic-cxr-2.0.0-chexpert.csv.gz",
    "mimic-cxr-2.0.0-metadata.csv.gz",
)


@pytest.fixture(scope="module")
def internal() -> Cohort:
    return make_synthetic_cohort(60, image_size=32, seed=5)


@pytest.fixture(scope="module")
def external() -> Cohort:
    return make_synthetic_cohort(40, image_size=32, seed=5, site="external")


@pytest.fixture(scope="module")
def mimic_dir(tmp_path_factory, internal: Cohort) -> Path:
    return export(internal, tmp_path_factory.mktemp("mimic") / "root", layout="mimic-cxr-jpg")


@pytest.fixture(scope="module")
def chexpert_dir(tmp_path_factory, external: Cohort) -> Path:
    return export(external, tmp_path_factory.mktemp("chexpert") / "root", layout="chexpert-plus")


@pytest.fixture
def mimic_copy(tmp_path: Path, mimic_dir: Path) -> Path:
    return Path(shutil.copytree(mimic_dir, tmp_path / "root"))


@pytest.fixture
def chexpert_copy(tmp_path: Path, chexpert_dir: Path) -> Path:
    return Path(shutil.copytree(chexpert_dir, tmp_path / "root"))


def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _write(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False)


# ------------------------------------------------------------------ round trips
def test_mimic_round_trip_is_exact(internal: Cohort, mimic_dir: Path) -> None:
    back = load_mimic_cxr(mimic_dir, site="internal")
    cols = KEY_COLUMNS + ["dicom_id", "study_date"]
    pd.testing.assert_frame_equal(back.pairs[cols], internal.pairs[cols], check_dtype=False)
    assert not back.public and back.root == mimic_dir
    assert sum(back.summary["excluded"].values()) == 0 and back.summary["n_pairs"] == len(internal)
    diff = np.abs(back.load_images() - internal.load_images())
    assert diff.mean() < 2.5 / 255  # JPEG quality 95
    # the report files hold header sections that never reach the text
    report = (
        (mimic_dir / "mimic-cxr-reports" / internal.pairs["image_path"].iloc[0].rsplit("/", 1)[0])
        .with_suffix(".txt")
        .read_text()
    )
    sections = parse_sections(report)
    assert {"EXAMINATION", "INDICATION", "TECHNIQUE", "COMPARISON", "IMPRESSION"} <= set(sections)
    assert sections["INDICATION"] not in back.pairs["text"].iloc[0] and "INDICATION" not in " ".join(back.pairs["text"])


def test_chexpert_round_trip_is_exact(external: Cohort, chexpert_dir: Path) -> None:
    back = load_chexpert_plus(chexpert_dir, site="external")
    pd.testing.assert_frame_equal(back.pairs[KEY_COLUMNS], external.pairs[KEY_COLUMNS], check_dtype=False)
    assert set(back.pairs["split"]) <= {"train", "val"} and not back.public
    assert np.abs(back.load_images() - external.load_images()).mean() < 2.5 / 255


def test_text_modes(mimic_dir: Path, internal: Cohort) -> None:
    for mode in ("impression", "findings", "longer"):
        back = load_mimic_cxr(mimic_dir, text=mode, site="internal")
        expected = [compose_text(f, i, mode) for f, i in zip(internal.pairs["findings"], internal.pairs["impression"])]
        keep = [bool(t) for t in expected]
        assert back.summary["excluded"]["empty_report"] == keep.count(False)
        assert back.pairs["text"].tolist() == [t for t in expected if t]
    with pytest.raises(ValueError, match="text='everything'"):
        load_mimic_cxr(mimic_dir, text="everything")


def test_cross_layout_export_recodes_ids(tmp_path: Path, internal: Cohort) -> None:
    no_test = internal.subset(np.flatnonzero(internal.pairs["split"] != "test"))
    out = export(no_test, tmp_path / "x", layout="chexpert-plus")
    back = load_chexpert_plus(out, site="internal")
    assert (out / "id_map.csv").is_file()
    assert back.pairs["text"].tolist() == no_test.pairs["text"].tolist()
    np.testing.assert_array_equal(back.label_matrix(), no_test.label_matrix())
    with pytest.raises(ValueError, match="'test' split"):
        export(internal, tmp_path / "y", layout="chexpert-plus")
    with pytest.raises(FileExistsError, match="not empty"):
        export(no_test, out, layout="chexpert-plus")
    with pytest.raises(ValueError, match="layout='dicom'"):
        export(no_test, tmp_path / "z", layout="dicom")


# ------------------------------------------------------------------ selection policy and counted exclusions (MIMIC)
def test_mimic_view_policy_and_counted_exclusions(mimic_copy: Path, internal: Cohort) -> None:
    split, meta = _csv(mimic_copy / SPLIT), _csv(mimic_copy / META)
    p = internal.pairs
    # study 0 gains an AP image (PA preferred stays) ; study 1 (AP in the fixture?) gets a PA that must win
    pa_row = int(np.flatnonzero(p["view"] == "PA")[0])
    ap_row = int(np.flatnonzero((p["view"] == "AP") & (np.arange(len(p)) > 5))[0])  # clear of the rows used above
    extra = []
    for row, view, dicom in (
        (pa_row, "AP", "aaaa-extra-ap"),
        (ap_row, "PA", "zzzz-extra-pa"),
        (2, "LATERAL", "0000-lateral"),
    ):
        extra.append((p["patient_id"][row], p["study_id"][row], dicom, view))
    # a lateral-only study
    extra.append((p["patient_id"][0], "59999999", "lat-only", "LATERAL"))
    for subject, study, dicom, view in extra:
        split.loc[len(split)] = {
            "dicom_id": dicom,
            "study_id": study,
            "subject_id": subject,
            "split": p["split"][0] if study == "59999999" else p.loc[p["study_id"] == study, "split"].iloc[0],
        }
        meta.loc[len(meta)] = {
            **meta.iloc[0].to_dict(),
            "dicom_id": dicom,
            "study_id": study,
            "subject_id": subject,
            "ViewPosition": view,
        }
        img = mimic_copy / f"files/p{subject[:2]}/p{subject}/s{study}/{dicom}.jpg"
        img.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((32, 32), 200, np.uint8)).save(img)
    _write(split, mimic_copy / SPLIT)
    _write(meta, mimic_copy / META)

    # a study without a report, one with an empty report, one without its image
    def report(row: int) -> Path:
        return mimic_copy / "mimic-cxr-reports" / (p["image_path"][row].rsplit("/", 1)[0] + ".txt")

    report(3).unlink()
    report(4).write_text(" EXAMINATION:  CHEST\n INDICATION:  ___ with cough.\n")
    (mimic_copy / p["image_path"][5]).unlink()
    back = load_mimic_cxr(mimic_copy, site="internal")
    ex = back.summary["excluded"]
    assert (ex["no_frontal_image"], ex["no_report"], ex["empty_report"], ex["missing_image"]) == (1, 1, 1, 1)
    assert len(back) == len(internal) - 3
    chosen = back.pairs.set_index("study_id")
    assert (
        chosen.loc[p["study_id"][pa_row], "view"] == "PA"
        and chosen.loc[p["study_id"][pa_row], "dicom_id"] == p["dicom_id"][pa_row]
    )
    assert chosen.loc[p["study_id"][ap_row], "dicom_id"] == "zzzz-extra-pa"
    assert chosen.loc[p["study_id"][2], "dicom_id"] == p["dicom_id"][2]


def test_mimic_duplicates(mimic_copy: Path) -> None:
    labels = _csv(mimic_copy / LABELS)
    _write(pd.concat([labels, labels.iloc[[0, 1]]]), mimic_copy / LABELS)
    assert load_mimic_cxr(mimic_copy).summary["excluded"]["duplicate_label_rows"] == 2
    clash = labels.iloc[[0]].copy()
    clash["Edema"] = "1.0" if labels["Edema"].iloc[0] != "1.0" else "0.0"
    _write(pd.concat([labels, clash]), mimic_copy / LABELS)
    with pytest.raises(
        ValueError, match=r"chexpert.csv.gz: conflicting duplicate rows \[\d+, \d+\].*same \['study_id'\]"
    ):
        load_mimic_cxr(mimic_copy)


# ------------------------------------------------------------------ bad input: clear errors naming the file
def test_mimic_missing_root_files_and_columns(tmp_path: Path, mimic_copy: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere: directory not found"):
        load_mimic_cxr(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no directory given"):
        load_mimic_cxr(None)
    (mimic_copy / META).unlink()
    with pytest.raises(FileNotFoundError, match="mimic-cxr-2.0.0-metadata.csv: not found"):
        load_mimic_cxr(mimic_copy)


def test_mimic_missing_column_malformed_csv_bad_labels(mimic_copy: Path) -> None:
    split = _csv(mimic_copy / SPLIT)
    _write(split.drop(columns=["split"]), mimic_copy / SPLIT)
    with pytest.raises(ValueError, match=r"split.csv.gz: missing column\(s\) \['split'\]"):
        load_mimic_cxr(mimic_copy)
    _write(split, mimic_copy / SPLIT)
    with gzip.open(mimic_copy / SPLIT, "wt") as fh:
        fh.write('dicom_id,study_id,subject_id,split\n"a,1,2,train\nb,3,4,"test",extra,"x\n')
    with pytest.raises(ValueError, match="split.csv.gz: malformed CSV"):
        load_mimic_cxr(mimic_copy)
    _write(split, mimic_copy / SPLIT)
    labels = _csv(mimic_copy / LABELS)
    labels.loc[7, "Pneumonia"] = "2.0"
    _write(labels, mimic_copy / LABELS)
    with pytest.raises(ValueError, match=r"chexpert.csv.gz: row 7 column 'Pneumonia' has value 2.0;"):
        load_mimic_cxr(mimic_copy)
    split.loc[3, "split"] = "holdout"
    _write(split, mimic_copy / SPLIT)
    labels.loc[7, "Pneumonia"] = ""
    _write(labels, mimic_copy / LABELS)
    with pytest.raises(ValueError, match="row 3 column 'split' is not train, validate or test"):
        load_mimic_cxr(mimic_copy)


def test_corrupt_image_error_names_the_file(mimic_copy: Path) -> None:
    cohort = load_mimic_cxr(mimic_copy)
    bad = mimic_copy / cohort.pairs["image_path"].iloc[4]
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    cohort.load_image(3)
    with pytest.raises(ImageReadError, match=str(bad.name)):
        cohort.load_image(4)


# ------------------------------------------------------------------ CheXpert Plus specifics
def test_chexpert_policy_nulls_and_errors(chexpert_copy: Path, external: Cohort) -> None:
    table = pd.read_csv(chexpert_copy / "df_chexpert_plus_240401.csv", dtype=str)
    first = table.iloc[0].to_dict()
    lateral = {
        **first,
        "path_to_image": first["path_to_image"].replace("view1_frontal", "view2_lateral"),
        "frontal_lateral": "Lateral",
        "ap_pa": np.nan,
    }
    other_pa = {
        **first,
        "path_to_image": first["path_to_image"].replace("view1_frontal", "view3_frontal"),
        "ap_pa": "PA",
    }
    table = pd.concat([table, pd.DataFrame([lateral, other_pa])], ignore_index=True)
    Image.fromarray(np.full((32, 32), 50, np.uint8)).save(
        chexpert_copy / other_pa["path_to_image"].replace(".jpg", ".png")
    )
    table.to_csv(chexpert_copy / "df_chexpert_plus_240401.csv", index=False)
    back = load_chexpert_plus(chexpert_copy)
    expected_first = (
        other_pa["path_to_image"].replace(".jpg", ".png") if first["ap_pa"] == "AP" else first["path_to_image"]
    )
    assert back.pairs.set_index("study_id").loc[external.pairs["study_id"][0], "image_path"] == expected_first
    assert back.summary["excluded"]["no_label_line"] == (1 if first["ap_pa"] == "AP" else 0)
    assert np.isnan(back.label_matrix()).any()
    lines = (chexpert_copy / "chexbert_labels/report_fixed.json").read_text().splitlines()
    rec = json.loads(lines[2])
    rec["Edema"] = 3
    lines[2] = json.dumps(rec)
    (chexpert_copy / "chexbert_labels/report_fixed.json").write_text("\n".join(lines) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"report_fixed.json: line 41 is not valid JSON"):
        load_chexpert_plus(chexpert_copy)
    (chexpert_copy / "chexbert_labels/report_fixed.json").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"report_fixed.json: row 2 column 'Edema' has value 3"):
        load_chexpert_plus(chexpert_copy)
    with pytest.raises(ValueError, match="labels_from='everything'"):
        load_chexpert_plus(chexpert_copy, labels_from="everything")
    (chexpert_copy / "chexbert_labels/report_fixed.json").unlink()
    with pytest.raises(FileNotFoundError, match="report_fixed.json: not found"):
        load_chexpert_plus(chexpert_copy)


def test_chexpert_empty_reports_counted(chexpert_copy: Path) -> None:
    table = pd.read_csv(chexpert_copy / "df_chexpert_plus_240401.csv", dtype=str)
    table.loc[[1, 2], ["section_findings", "section_impression"]] = np.nan
    table.to_csv(chexpert_copy / "df_chexpert_plus_240401.csv", index=False)
    back = load_chexpert_plus(chexpert_copy)
    assert back.summary["excluded"]["empty_report"] == 2 and len(back) == len(table) - 2


# ------------------------------------------------------------------ bring your own folder
def test_load_folder(tmp_path: Path) -> None:
    for i in range(6):
        Image.fromarray(np.full((20, 24), 40 * i, np.uint8)).save(tmp_path / f"im{i}.png")
    frame = pd.DataFrame(
        {
            "patient_id": ["a", "a", "b", "c", "d", "d"],
            "image_path": [f"im{i}.png" for i in range(6)],
            "findings": ["Clear lungs.", "Small left effusion.", "", "x", "Edema.", "Normal."],
            "impression": ["Normal.", "Effusion.", "", "y", "", "Normal."],
            "Edema": [np.nan, 0, np.nan, 1, 1, -1],
        }
    )
    frame = pd.concat([frame, frame.iloc[[1]]], ignore_index=True)  # an exact duplicate row
    frame.loc[len(frame)] = {
        "patient_id": "e",
        "image_path": "missing.png",
        "findings": "a",
        "impression": "b",
        "Edema": np.nan,
    }
    frame.to_csv(tmp_path / "pairs.csv", index=False)
    c = load_folder(tmp_path / "pairs.csv", tmp_path, image_size=16)
    assert c.summary["excluded"] == {"duplicate_rows": 1, "empty_report": 1, "missing_image": 1}
    assert len(c) == 5 and not c.public and c.load_images().shape == (5, 16, 16)
    assert c.pairs["text"].iloc[1] == "Small left effusion. Effusion."
    assert np.isnan(c.pairs["Atelectasis"]).all() and c.pairs["Edema"].tolist()[1:4] == [0.0, 1.0, 1.0]
    assert c.pairs.groupby("patient_id")["split"].nunique().max() == 1
    bad = frame.assign(Edema=[0, 0, 0, 0, 0, 5, 0, 0])
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"bad.csv: row \d column 'Edema' has value 5"):
        load_folder(tmp_path / "bad.csv", tmp_path)
    frame.drop(columns=["findings", "impression"]).to_csv(tmp_path / "notext.csv", index=False)
    with pytest.raises(ValueError, match="notext.csv: needs a 'text' column"):
        load_folder(tmp_path / "notext.csv", tmp_path)
    with pytest.raises(FileNotFoundError, match="absent.csv: cohort CSV not found"):
        load_folder(tmp_path / "absent.csv", tmp_path)
