"""CheXpert Plus loader (official layout, docs/cohorts.md).

Layout under ``root``::

    df_chexpert_plus_240401.csv     path_to_image, frontal_lateral, ap_pa, deid_patient_id,
                                    patient_report_date_order, report, section_findings,
                                    section_impression, ..., split (train/valid)
    chexbert_labels/{impression,findings,report}_fixed.json
                                    JSON lines keyed by path_to_image with the 14 labels (1, 0, -1, null)
    <path_to_image>                 the images (a ``.png`` twin is accepted when the ``.jpg`` is absent)
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from ..labels import CHEXPERT_LABELS
from .base import Cohort, validate_labels
from .io import check_exclusions, check_safe_paths, drop_duplicates, find_file, read_csv, require_dir
from .splits import OFFICIAL_SPLIT_NAMES
from .text import TEXT_MODES, compose_text

CSV_NAME = "df_chexpert_plus_240401.csv"
LABEL_DIR = "chexbert_labels"
LABEL_SOURCES: tuple[str, ...] = ("report", "findings", "impression")
CSV_COLUMNS: tuple[str, ...] = (
    "path_to_image",
    "frontal_lateral",
    "ap_pa",
    "deid_patient_id",
    "patient_report_date_order",
    "section_findings",
    "section_impression",
    "split",
)


def study_of_path(path: str) -> str:
    """Study id from ``path_to_image``: the ``patientN/studyM`` part (split folder and file name dropped)."""
    parts = PurePosixPath(path).parts
    return "/".join(parts[-3:-1]) if len(parts) >= 3 else str(PurePosixPath(path).parent)


def read_label_jsonl(path: Path) -> pd.DataFrame:
    """Read a CheXbert label file (JSON lines with ``path_to_image`` and the 14 labels).

    Errors name the file and line.
    """
    records = []
    lineno = 0
    try:
        with open(path, encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}: line {lineno} is not valid JSON ({exc.msg})") from exc
                if not isinstance(rec, dict) or "path_to_image" not in rec:
                    raise ValueError(f"{path}: line {lineno} has no 'path_to_image' key")
                records.append(rec)
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: not UTF-8 (near line {lineno + 1}: {exc.reason}); expected UTF-8 JSON lines"
        ) from None
    frame = (
        pd.DataFrame.from_records(records, columns=["path_to_image", *CHEXPERT_LABELS])
        if records
        else pd.DataFrame(columns=["path_to_image", *CHEXPERT_LABELS])
    )
    return frame


def load_chexpert_plus(
    root: str | Path | None,
    *,
    text: str = "findings+impression",
    labels_from: str = "report",
    image_size: int | None = None,
    check_images: bool = True,
    site: str = "chexpert-plus",
    public: bool = False,
    name: str = "chexpert-plus",
) -> Cohort:
    """Load CheXpert Plus as one frontal image per study (PA preferred over AP, then the lowest view number).

    ``text`` is composed from ``section_findings`` / ``section_impression`` (header sections never
    enter it); labels come from ``chexbert_labels/<labels_from>_fixed.json``. Studies without a
    frontal image, with an empty text, whose image is missing (``check_images``) are left out
    and counted in ``cohort.summary["excluded"]``; images without a label line get blank labels
    (counted). Official splits: ``valid`` -> ``val``. The cohort is private (``public=False``).
    """
    if text not in TEXT_MODES:
        raise ValueError(f"text={text!r}: expected one of {list(TEXT_MODES)}")
    if labels_from not in LABEL_SOURCES:
        raise ValueError(f"labels_from={labels_from!r}: expected one of {list(LABEL_SOURCES)}")
    root = require_dir(root, "CheXpert Plus root (holding df_chexpert_plus_240401.csv and chexbert_labels/)")
    csv_path = find_file(root, (CSV_NAME,), "CheXpert Plus report table")
    label_path = find_file(root, (f"{LABEL_DIR}/{labels_from}_fixed.json",), "CheXbert labels")
    table = read_csv(
        csv_path, CSV_COLUMNS, str_columns=("path_to_image", "deid_patient_id", "ap_pa", "frontal_lateral", "split")
    )
    excluded: dict[str, int] = {}
    table, excluded["duplicate_rows"] = drop_duplicates(table, ["path_to_image"], csv_path)
    labels = read_label_jsonl(label_path)
    labels, excluded["duplicate_label_lines"] = drop_duplicates(
        labels.astype({"path_to_image": str}), ["path_to_image"], label_path
    )
    labels = validate_labels(labels, str(label_path))
    bad_split = ~table["split"].isin(list(OFFICIAL_SPLIT_NAMES))
    if bad_split.any():
        i = int(np.flatnonzero(bad_split.to_numpy())[0])
        raise ValueError(f"{csv_path}: row {i} column 'split' is not train or valid (value not shown)")

    check_safe_paths(table, "path_to_image", root, csv_path)
    table["study_id"] = table["path_to_image"].map(study_of_path)
    n_studies = table["study_id"].nunique()
    fl = table["frontal_lateral"].fillna("").str.strip().str.lower()
    appa = table["ap_pa"].fillna("").str.strip().str.upper()
    table["view"] = np.where(appa.isin(["AP", "PA"]), appa, "FRONTAL")
    table["_rank"] = appa.map({"PA": 0, "AP": 1}).fillna(2)
    frontal = table[fl == "frontal"].sort_values(["study_id", "_rank", "path_to_image"])
    chosen = frontal.drop_duplicates("study_id", keep="first").copy()
    excluded["no_frontal_image"] = int(n_studies - len(chosen))
    chosen["findings"] = chosen["section_findings"].fillna("").astype(str).map(lambda t: " ".join(t.split()))
    chosen["impression"] = chosen["section_impression"].fillna("").astype(str).map(lambda t: " ".join(t.split()))
    chosen["text"] = [compose_text(f, i, text) for f, i in zip(chosen["findings"], chosen["impression"])]
    empty = chosen["text"] == ""
    excluded["empty_report"] = int(empty.sum())
    chosen = chosen[~empty]
    if check_images:

        def resolve(p: str) -> str | None:
            if (root / p).is_file():
                return p
            alt = str(PurePosixPath(p).with_suffix(".png"))
            return alt if (root / alt).is_file() else None

        resolved = chosen["path_to_image"].map(resolve)
        excluded["missing_image"] = int(resolved.isna().sum())
        chosen = chosen[resolved.notna()].copy()
        chosen["image_path"] = resolved[resolved.notna()]
    else:
        chosen["image_path"] = chosen["path_to_image"]
    pairs = chosen.merge(labels, on="path_to_image", how="left", indicator=True)
    excluded["no_label_line"] = int((pairs["_merge"] == "left_only").sum())
    pairs["patient_id"] = pairs["deid_patient_id"].astype(str)
    pairs["split"] = pairs["split"].map(OFFICIAL_SPLIT_NAMES)
    pairs["site"] = site
    pairs["study_order"] = pd.to_numeric(pairs["patient_report_date_order"], errors="coerce").astype("Int64")
    cols = [
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
    pairs = pairs[cols].sort_values(["patient_id", "study_order", "study_id"]).reset_index(drop=True)
    # images kept without a label line (blank labels) count among the warned reasons (a truncated label file)
    incomplete = {"no_label_line": excluded["no_label_line"]}
    check_exclusions(
        n_studies,
        len(pairs),
        {k: excluded[k] for k in ("no_frontal_image", "empty_report", "missing_image")},
        root,
        f"{csv_path} (frontal_lateral, section_findings / section_impression), images under {root} "
        f"and {label_path} (one line per path_to_image)",
        unit="studies",
        incomplete=incomplete,
    )
    summary = {
        "source": "chexpert-plus",
        "root": str(root),
        "n_images_listed": int(len(table)),
        "n_studies_listed": int(n_studies),
        "n_pairs": int(len(pairs)),
        "n_patients": int(pairs["patient_id"].nunique()),
        "text": text,
        "labels_from": labels_from,
        "excluded": {k: int(v) for k, v in excluded.items()},
    }
    return Cohort(pairs, root=root, public=public, name=name, summary=summary, image_size=image_size)
