"""MIMIC-CXR-JPG 2.0.0 loader (official layout, docs/cohorts.md).

Layout under ``root``::

    files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg
    mimic-cxr-2.0.0-split.csv[.gz]        dicom_id, study_id, subject_id, split (train/validate/test)
    mimic-cxr-2.0.0-chexpert.csv[.gz]     subject_id, study_id, 14 labels (1.0, 0.0, -1.0, blank)
    mimic-cxr-2.0.0-metadata.csv[.gz]     dicom_id, subject_id, study_id, ViewPosition, Rows, Columns,
                                          StudyDate, StudyTime, ...
    mimic-cxr-reports/files/pXX/pSUBJECT/sSTUDY.txt   free-text reports (from MIMIC-CXR)
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..labels import CHEXPERT_LABELS
from .base import Cohort, validate_labels
from .io import (
    UndecodableReport,
    check_exclusions,
    check_safe_paths,
    drop_duplicates,
    find_file,
    read_csv,
    read_report,
    require_dir,
    safe_relative,
)
from .splits import OFFICIAL_SPLIT_NAMES
from .text import TEXT_MODES, compose_text, findings_impression

SPLIT_CSV = "mimic-cxr-2.0.0-split.csv"
LABEL_CSV = "mimic-cxr-2.0.0-chexpert.csv"
META_CSV = "mimic-cxr-2.0.0-metadata.csv"
REPORTS_DIR = "mimic-cxr-reports"
VIEW_PREFERENCE: tuple[str, ...] = ("PA", "AP")
"""Frontal views in order of preference; other views (LATERAL, LL, ...) are never chosen."""


def mimic_paths(subject_id: str, study_id: str, dicom_id: str | None = None) -> tuple[str, str]:
    """Relative image path and report path of a study.

    ``files/pXX/pSUBJECT/sSTUDY/DICOM.jpg`` and ``files/pXX/pSUBJECT/sSTUDY.txt``.
    """
    folder = f"files/p{subject_id[:2]}/p{subject_id}"
    return f"{folder}/s{study_id}/{dicom_id}.jpg", f"{folder}/s{study_id}.txt"


def load_mimic_cxr(
    root: str | Path | None,
    *,
    text: str = "findings+impression",
    image_size: int | None = None,
    reports_dir: str | Path | None = None,
    check_images: bool = True,
    site: str = "mimic-cxr",
    views: Sequence[str] = VIEW_PREFERENCE,
    public: bool = False,
    name: str = "mimic-cxr-jpg",
) -> Cohort:
    """Load MIMIC-CXR-JPG as one frontal image per study (PA preferred over AP).

    Studies without a frontal image, without a report file, with an empty FINDINGS+IMPRESSION
    text (for the chosen ``text`` mode) or (``check_images``) whose image file is missing are left
    out and counted in ``cohort.summary["excluded"]``. Header sections (EXAMINATION, INDICATION,
    COMPARISON, TECHNIQUE, ...) never enter ``text``. Official splits, ``validate`` -> ``val``.
    Exact duplicate CSV rows are dropped and counted; conflicting duplicates, label values outside
    {1, 0, -1, blank}, missing files or columns and malformed CSVs raise errors naming the file.
    ``reports_dir`` defaults to ``root/mimic-cxr-reports``. The cohort is private (``public=False``).
    """
    if text not in TEXT_MODES:
        raise ValueError(f"text={text!r}: expected one of {list(TEXT_MODES)}")
    root = require_dir(root, "MIMIC-CXR-JPG root (holding files/ and the mimic-cxr-2.0.0-*.csv files)")
    split_path = find_file(root, (SPLIT_CSV, SPLIT_CSV + ".gz"), "MIMIC-CXR-JPG split file")
    label_path = find_file(root, (LABEL_CSV, LABEL_CSV + ".gz"), "MIMIC-CXR-JPG CheXpert label file")
    meta_path = find_file(root, (META_CSV, META_CSV + ".gz"), "MIMIC-CXR-JPG metadata file")
    reports_root = require_dir(
        Path(reports_dir) if reports_dir is not None else root / REPORTS_DIR,
        "MIMIC-CXR free-text reports (mimic-cxr-reports/files/pXX/pSUBJECT/sSTUDY.txt)",
    )
    ids = ("dicom_id", "study_id", "subject_id")
    split = read_csv(split_path, ids + ("split",), str_columns=ids)
    meta = read_csv(meta_path, ids + ("ViewPosition",), str_columns=ids + ("StudyDate", "StudyTime"))
    labels = read_csv(label_path, ("subject_id", "study_id") + CHEXPERT_LABELS, str_columns=("subject_id", "study_id"))
    excluded: dict[str, int] = {}
    split, excluded["duplicate_split_rows"] = drop_duplicates(split, ["dicom_id"], split_path)
    meta, excluded["duplicate_metadata_rows"] = drop_duplicates(meta, ["dicom_id"], meta_path)
    labels, excluded["duplicate_label_rows"] = drop_duplicates(labels, ["study_id"], label_path)
    labels = validate_labels(labels, str(label_path))
    bad_split = ~split["split"].isin(["train", "validate", "test"])
    if bad_split.any():
        i = int(np.flatnonzero(bad_split.to_numpy())[0])
        raise ValueError(f"{split_path}: row {i} column 'split' is not train, validate or test (value not shown)")

    images = split.merge(
        meta[["dicom_id", "ViewPosition"] + [c for c in ("StudyDate", "StudyTime") if c in meta.columns]],
        on="dicom_id",
        how="left",
    )
    n_studies = images["study_id"].nunique()
    view = images["ViewPosition"].fillna("").astype(str).str.strip().str.upper()
    rank = {v: k for k, v in enumerate(views)}
    images["_rank"] = view.map(rank)
    images["view"] = view
    frontal = images[images["_rank"].notna()].sort_values(["study_id", "_rank", "dicom_id"])
    chosen = frontal.drop_duplicates("study_id", keep="first").copy()
    excluded["no_frontal_image"] = int(n_studies - len(chosen))

    # one report file per study
    findings, impressions, keep = [], [], []
    n_no_report = n_empty = n_undecodable = 0
    for row, (subject, study) in enumerate(zip(chosen["subject_id"], chosen["study_id"])):
        _, rel = mimic_paths(subject, study)
        safe_relative(reports_root, rel, split_path, row, "subject_id/study_id")
        path = reports_root / rel
        try:
            raw = read_report(path)
        except (FileNotFoundError, UndecodableReport) as exc:
            if isinstance(exc, UndecodableReport):
                n_undecodable += 1
            else:
                n_no_report += 1
            keep.append(False)
            findings.append("")
            impressions.append("")
            continue
        f, imp = findings_impression(raw)
        if not compose_text(f, imp, text):
            n_empty += 1
            keep.append(False)
        else:
            keep.append(True)
        findings.append(f)
        impressions.append(imp)
    chosen["findings"], chosen["impression"] = findings, impressions
    excluded["no_report"], excluded["empty_report"] = n_no_report, n_empty
    excluded["undecodable_report"] = n_undecodable
    chosen = chosen[np.asarray(keep, dtype=bool)]
    chosen["image_path"] = [
        mimic_paths(s, st, d)[0] for s, st, d in zip(chosen["subject_id"], chosen["study_id"], chosen["dicom_id"])
    ]
    check_safe_paths(chosen, "image_path", root, split_path)
    if check_images:
        exists = np.array([(root / p).is_file() for p in chosen["image_path"]], dtype=bool)
        excluded["missing_image"] = int((~exists).sum())
        chosen = chosen[exists]
    # labels (studies absent from the label file get blank labels, counted)
    pairs = chosen.merge(labels.drop(columns=["subject_id"]), on="study_id", how="left", indicator=True)
    excluded["no_label_row"] = int((pairs["_merge"] == "left_only").sum())
    pairs = pairs.drop(columns=["_merge"])
    pairs["patient_id"] = pairs["subject_id"].astype(str)
    pairs["text"] = [compose_text(f, i, text) for f, i in zip(pairs["findings"], pairs["impression"])]
    pairs["split"] = pairs["split"].map(OFFICIAL_SPLIT_NAMES)
    pairs["site"] = site
    if "StudyDate" in pairs.columns:
        pairs["study_date"] = pairs["StudyDate"].astype(str).str.replace(r"\.0$", "", regex=True)
        date = pd.to_numeric(pairs["StudyDate"], errors="coerce").fillna(0)
        tod = pd.to_numeric(pairs["StudyTime"], errors="coerce").fillna(0) if "StudyTime" in pairs.columns else 0
        when = date * 1e6 + tod
        pairs["study_order"] = when.groupby(pairs["patient_id"]).rank(method="first").astype(int)
    cols = [
        "patient_id",
        "study_id",
        "dicom_id",
        "image_path",
        "text",
        "findings",
        "impression",
        "split",
        "view",
        "site",
        *CHEXPERT_LABELS,
    ] + [c for c in ("study_order", "study_date") if c in pairs.columns]
    pairs = pairs[cols].sort_values(["patient_id", "study_id"]).reset_index(drop=True)
    # no pair is the error "0 usable", naming the largest reason and where the loader looked
    study_reasons = {
        k: excluded[k] for k in ("no_frontal_image", "no_report", "undecodable_report", "empty_report", "missing_image")
    }
    # studies kept without a label row (blank labels) count among the warned reasons: a truncated label
    # table (an interrupted copy) shows up here, and a table that labels none of them is refused
    incomplete = {"no_label_row": excluded["no_label_row"]}
    where_looked = {
        "no_frontal_image": f"{meta_path} (ViewPosition in {list(views)})",
        "missing_image": f"{root}/files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg",
        "no_label_row": f"{label_path} (one row per study_id)",
    }
    counts = {**study_reasons, **incomplete} if len(pairs) else study_reasons
    top = max(counts, key=counts.__getitem__) if any(counts.values()) else "no_report"
    check_exclusions(
        n_studies,
        len(pairs),
        study_reasons,
        root,
        where_looked.get(top, f"{reports_root}/files/pXX/pSUBJECT/sSTUDY.txt"),
        unit="studies",
        incomplete=incomplete,
    )
    summary = {
        "source": "mimic-cxr-jpg",
        "root": str(root),
        "n_images_listed": int(len(split)),
        "n_studies_listed": int(n_studies),
        "n_pairs": int(len(pairs)),
        "n_patients": int(pairs["patient_id"].nunique()),
        "text": text,
        "excluded": {k: int(v) for k, v in excluded.items()},
    }
    return Cohort(pairs, root=root, public=public, name=name, summary=summary, image_size=image_size)
