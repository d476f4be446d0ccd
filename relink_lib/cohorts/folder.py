"""Bring-your-own cohort: a CSV of image-report pairs and a folder of images."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..labels import CHEXPERT_LABELS
from .base import Cohort, validate_labels
from .io import check_exclusions, check_safe_paths, drop_duplicates, read_csv, require_dir
from .splits import SPLITS, patient_split
from .text import TEXT_MODES, compose_text, normalise_whitespace


def load_folder(
    csv: str | Path,
    root: str | Path,
    *,
    text: str = "findings+impression",
    image_size: int | None = None,
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    check_images: bool = True,
    public: bool = False,
    site: str = "folder",
    name: str | None = None,
) -> Cohort:
    """Load a cohort from ``csv`` (one row per image-report pair) with images under ``root``.

        Required columns: ``patient_id``, ``image_path`` (relative to ``root``) and either ``text`` or
        ``findings`` / ``impression``. Optional: ``study_id`` (default: one study per row), ``split``
        (train/val/test; default: patient-level split with ``split_fractions`` and ``seed``), ``view``,
        ``site`` and any of the 14 label columns (missing ones are blank). A given ``split`` is used as
    given: a blank or unknown value is an error naming the row. ``image_path`` must stay inside
    ``root`` (absolute paths and ``..`` are errors). Exact duplicate rows and
        rows with empty text or (``check_images``) a missing image file are left out and counted in
        ``summary["excluded"]`` (more than 5% left out warns; none left is an error naming the largest
        reason); conflicting duplicates and bad label values raise errors naming the file and row, never a cell.
        The cohort is private unless ``public=True``.
    """
    if text not in TEXT_MODES:
        raise ValueError(f"text={text!r}: expected one of {list(TEXT_MODES)}")
    root = require_dir(root, "image folder of the bring-your-own cohort")
    csv = Path(csv)
    if not csv.is_file():
        raise FileNotFoundError(f"{csv}: cohort CSV not found")
    frame = read_csv(
        csv, ("patient_id", "image_path"), str_columns=("patient_id", "study_id", "image_path", "split", "view", "site")
    )
    if "text" not in frame.columns and not {"findings", "impression"} & set(frame.columns):
        raise ValueError(f"{csv}: needs a 'text' column or 'findings' / 'impression' columns")
    excluded: dict[str, int] = {}
    n_listed = len(frame)
    frame, excluded["duplicate_rows"] = drop_duplicates(frame, ["patient_id", "image_path"], csv)
    check_safe_paths(frame, "image_path", root, csv)
    given_split = "split" in frame.columns
    if given_split:  # used as given: a blank or unknown value is an error naming the row (never the cell)
        for i, value in enumerate(frame["split"]):
            if pd.isna(value) or str(value).strip() == "":
                raise ValueError(
                    f"{csv}: row {i} column 'split' is blank; a given split column is used as given, "
                    f"so every row needs one of {list(SPLITS)} (or drop the column to draw a patient split)"
                )
            if str(value).strip() not in SPLITS:
                raise ValueError(f"{csv}: row {i} column 'split' is not one of {list(SPLITS)} (value not shown)")
        frame["split"] = frame["split"].astype(str).str.strip()
    for col in ("findings", "impression"):
        frame[col] = frame[col].fillna("").astype(str).map(normalise_whitespace) if col in frame.columns else ""
    if "text" in frame.columns:
        frame["text"] = frame["text"].fillna("").astype(str).map(normalise_whitespace)
        if not {"findings", "impression"} & set(pd.read_csv(csv, nrows=0).columns):
            frame["impression"] = frame["text"]
    else:
        frame["text"] = [compose_text(f, i, text) for f, i in zip(frame["findings"], frame["impression"])]
    empty = (frame["text"] == "").to_numpy()
    excluded["empty_report"] = int(empty.sum())
    frame = frame[~empty].reset_index(drop=True)
    if check_images:
        exists = np.array([(root / p).is_file() for p in frame["image_path"]], dtype=bool)
        excluded["missing_image"] = int((~exists).sum())
        frame = frame[exists].reset_index(drop=True)
    if "study_id" not in frame.columns:
        frame["study_id"] = frame["patient_id"] + "/" + frame["image_path"]
    for label in CHEXPERT_LABELS:
        if label not in frame.columns:
            frame[label] = np.nan
    check_exclusions(
        n_listed,
        len(frame),
        excluded,
        csv,
        f"{csv} (report text) and {root} (image_path{', checked on disk' if check_images else ''})",
    )
    if not given_split:
        frame["split"] = patient_split(frame["patient_id"], split_fractions, seed)
    frame["view"] = frame["view"].fillna("unknown") if "view" in frame.columns else "unknown"
    frame["site"] = frame["site"].fillna(site) if "site" in frame.columns else site
    summary = {
        "source": "folder",
        "csv": str(csv),
        "root": str(root),
        "n_rows_listed": int(n_listed),
        "n_pairs": int(len(frame)),
        "n_patients": int(frame["patient_id"].nunique()),
        "excluded": excluded,
    }
    frame = validate_labels(frame, str(csv))
    return Cohort(frame, root=root, public=public, name=name or csv.stem, summary=summary, image_size=image_size)
