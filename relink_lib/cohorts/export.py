"""Export a cohort to the official MIMIC-CXR-JPG or CheXpert Plus layout, so the real loaders can read it back."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ..labels import CHEXPERT_LABELS
from .base import Cohort
from .chexpert_plus import CSV_NAME, LABEL_DIR, LABEL_SOURCES
from .images import to_uint8, write_jpeg
from .mimic import LABEL_CSV, META_CSV, REPORTS_DIR, SPLIT_CSV, mimic_paths
from .synthetic.reports import full_report

LAYOUTS: tuple[str, ...] = ("mimic-cxr-jpg", "chexpert-plus")
_MIMIC_SPLIT = {"train": "train", "val": "validate", "test": "test"}


def _key(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)


def _study_order(pairs: pd.DataFrame) -> np.ndarray:
    if "study_order" in pairs.columns and pairs["study_order"].notna().all():
        return pairs["study_order"].astype(int).to_numpy()
    return pairs.groupby("patient_id", sort=False).cumcount().to_numpy() + 1


def _numeric_ids(pairs: pd.DataFrame) -> tuple[pd.Series, pd.Series, bool]:
    """Subject and study ids usable in MIMIC paths (digits only); re-coded when the cohort's are not."""
    if pairs["patient_id"].str.fullmatch(r"\d{3,}").all() and pairs["study_id"].str.fullmatch(r"\d{3,}").all():
        return pairs["patient_id"], pairs["study_id"], False
    subj = pd.Series(pd.factorize(pairs["patient_id"])[0] + 10000000, index=pairs.index).astype(str)
    study = pd.Series(pd.factorize(pairs["study_id"])[0] + 50000000, index=pairs.index).astype(str)
    return subj, study, True


def _label_str(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1f}"


def export(
    cohort: Cohort,
    directory: str | Path,
    layout: str = "mimic-cxr-jpg",
    *,
    jpeg_quality: int = 95,
    overwrite: bool = False,
) -> Path:
    """Write ``cohort`` to ``directory`` in the official ``layout`` (``"mimic-cxr-jpg"`` or ``"chexpert-plus"``).

    Writes JPEG images, the CSV files, report files (MIMIC) or report columns (CheXpert Plus) and
    label files. Loading the result with ``load_mimic_cxr`` / ``load_chexpert_plus`` reproduces
    pairs, labels, splits and text exactly when the cohort's ids fit the layout (synthetic internal
    cohorts for MIMIC, external ones for CheXpert Plus); otherwise ids are re-coded and the map is
    written to ``id_map.csv``. Images are JPEG-compressed (``jpeg_quality``), so pixels differ slightly.
    Refuses a non-empty ``directory`` unless ``overwrite``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r}: expected one of {list(LAYOUTS)}")
    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{directory}: not empty; pass overwrite=True to replace it")
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if layout == "mimic-cxr-jpg":
        _export_mimic(cohort, directory, jpeg_quality)
    else:
        _export_chexpert(cohort, directory, jpeg_quality)
    return directory


def _write_images(
    cohort: Cohort, directory: Path, rel_paths: list[str], quality: int, batch: int = 512
) -> list[tuple[int, int]]:
    sizes = []
    for a in range(0, len(cohort), batch):
        rows = np.arange(a, min(a + batch, len(cohort)))
        imgs = to_uint8(cohort.load_images(rows))
        for r, img in zip(rows, imgs):
            write_jpeg(directory / rel_paths[r], img, quality=quality)
            sizes.append(img.shape)
    return sizes


def _export_mimic(cohort: Cohort, directory: Path, quality: int) -> None:
    pairs = cohort.pairs
    subj, study, recoded = _numeric_ids(pairs)
    dicom = (
        pairs["dicom_id"]
        if "dicom_id" in pairs.columns
        else pairs["study_id"].map(
            lambda s: "-".join(hashlib.sha1(s.encode()).hexdigest()[k : k + 8] for k in range(0, 40, 8))
        )
    )
    rel_img, rel_rep = zip(*[mimic_paths(s, st, d) for s, st, d in zip(subj, study, dicom)]) if len(pairs) else ((), ())
    sizes = _write_images(cohort, directory, list(rel_img), quality)
    reports_root = directory / REPORTS_DIR
    order = _study_order(pairs)
    sex = pairs["sex"] if "sex" in pairs.columns else pd.Series("F", index=pairs.index)
    for _k, (rel, f, imp, view, sx, o, sid) in enumerate(
        zip(rel_rep, pairs["findings"], pairs["impression"], pairs["view"], sex, order, pairs["study_id"])
    ):
        path = reports_root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(full_report(f, imp, "internal", view, sx, o > 1, _key(sid)), encoding="utf-8")
    pd.DataFrame(
        {"dicom_id": dicom, "study_id": study, "subject_id": subj, "split": pairs["split"].map(_MIMIC_SPLIT)}
    ).to_csv(directory / (SPLIT_CSV + ".gz"), index=False)
    lab = pd.DataFrame({"subject_id": subj, "study_id": study})
    for label in CHEXPERT_LABELS:
        lab[label] = pairs[label].to_numpy()
    lab.to_csv(directory / (LABEL_CSV + ".gz"), index=False, float_format="%.1f")
    dates = (
        pairs["study_date"]
        if "study_date" in pairs.columns
        else pd.Series([f"2150{1 + (o - 1) // 28 % 12:02d}{1 + (o - 1) % 28:02d}" for o in order], index=pairs.index)
    )
    times = [f"{(8 + _key(s) % 10):02d}{_key(s) % 60:02d}{(_key(s) // 60) % 60:02d}.000" for s in pairs["study_id"]]
    pd.DataFrame(
        {
            "dicom_id": dicom,
            "subject_id": subj,
            "study_id": study,
            "PerformedProcedureStepDescription": np.where(
                pairs["view"] == "AP", "CHEST (PORTABLE AP)", "CHEST (PA AND LAT)"
            ),
            "ViewPosition": pairs["view"],
            "Rows": [s[0] for s in sizes],
            "Columns": [s[1] for s in sizes],
            "StudyDate": dates,
            "StudyTime": times,
            "ProcedureCodeSequence_CodeMeaning": "CHEST (PA AND LAT)",
            "ViewCodeSequence_CodeMeaning": np.where(pairs["view"] == "AP", "antero-posterior", "postero-anterior"),
            "PatientOrientationCodeSequence_CodeMeaning": "Erect",
        }
    ).to_csv(directory / (META_CSV + ".gz"), index=False)
    if recoded:
        pd.DataFrame(
            {
                "patient_id": pairs["patient_id"],
                "study_id": pairs["study_id"],
                "subject_id": subj,
                "mimic_study_id": study,
            }
        ).to_csv(directory / "id_map.csv", index=False)


def _export_chexpert(cohort: Cohort, directory: Path, quality: int) -> None:
    pairs = cohort.pairs
    order = _study_order(pairs)
    split_dir = np.where(pairs["split"].to_numpy() == "train", "train", "valid")
    if (pairs["split"] == "test").any():
        raise ValueError(
            "export(layout='chexpert-plus'): the cohort has a 'test' split, which CheXpert Plus does not have "
            "(train/valid only); export a cohort without test rows (e.g. the synthetic external site)"
        )
    paths = [f"{sd}/{p}/study{o}/view1_frontal.jpg" for sd, p, o in zip(split_dir, pairs["patient_id"], order)]
    expected = [f"{p}/study{o}" for p, o in zip(pairs["patient_id"], order)]
    recoded = [e != s for e, s in zip(expected, pairs["study_id"])]
    _write_images(cohort, directory, paths, quality)
    sex = pairs["sex"] if "sex" in pairs.columns else pd.Series("F", index=pairs.index)
    age = pairs["age"] if "age" in pairs.columns else pd.Series(np.nan, index=pairs.index)
    table = pd.DataFrame(
        {
            "path_to_image": paths,
            "path_to_dcm": [p.replace(".jpg", ".dcm") for p in paths],
            "frontal_lateral": "Frontal",
            "ap_pa": pairs["view"],
            "deid_patient_id": pairs["patient_id"],
            "patient_report_date_order": order,
            "report": [
                full_report(f, i, "external", v, sx, o > 1, _key(s))
                for f, i, v, sx, o, s in zip(
                    pairs["findings"], pairs["impression"], pairs["view"], sex, order, pairs["study_id"]
                )
            ],
            "section_findings": pairs["findings"].replace("", np.nan),
            "section_impression": pairs["impression"].replace("", np.nan),
            "age": age,
            "sex": sex.map({"M": "Male", "F": "Female"}),
            "split": np.where(pairs["split"] == "train", "train", "valid"),
        }
    )
    table.to_csv(directory / CSV_NAME, index=False)
    (directory / LABEL_DIR).mkdir(parents=True, exist_ok=True)
    lines = []
    for k, path in enumerate(paths):
        rec: dict[str, str | float | None] = {"path_to_image": path}
        for label in CHEXPERT_LABELS:
            v = pairs[label].iloc[k]
            rec[label] = None if pd.isna(v) else float(v)
        lines.append(json.dumps(rec))
    body = "\n".join(lines) + ("\n" if lines else "")
    for source in LABEL_SOURCES:
        (directory / LABEL_DIR / f"{source}_fixed.json").write_text(body, encoding="utf-8")
    if any(recoded):
        pd.DataFrame({"study_id": pairs["study_id"], "chexpert_study_id": expected}).to_csv(
            directory / "id_map.csv", index=False
        )
