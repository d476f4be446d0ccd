"""Checks that run before any long step of the ``paper`` profile: roots, files and checkpoints.

Each problem is reported with the path and what was expected, all at once, so a reviewer fixes
the set-up in one go instead of discovering a missing file an hour into feature extraction.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..cohorts.chexpert_plus import CSV_NAME, LABEL_DIR
from ..cohorts.mimic import LABEL_CSV, META_CSV, REPORTS_DIR, SPLIT_CSV
from ..config import ProfileLike, as_profile
from ..models import catalog
from ..models.catalog import ModelEntry, ModelListError, ModelListSpec

MIMIC_FILES = (SPLIT_CSV, LABEL_CSV, META_CSV)
MIMIC_DIRS = ("files", f"{REPORTS_DIR}/files")
CHEXPERT_PLUS_FILES = (CSV_NAME,)
CHEXPERT_PLUS_LABEL_FILES = tuple(f"{LABEL_DIR}/{s}_fixed.json" for s in ("impression", "findings", "report"))


class PreflightError(ValueError):
    """The inputs of a real-data run are missing or have the wrong layout."""


def _exists_csv(root: Path, name: str) -> bool:
    return (root / name).exists() or (root / f"{name}.gz").exists()


def _root_problem(root: str | Path | None, variable: str, expected: str) -> list[str]:
    """The problem with a dataset root given by ``variable`` (unset or not a directory), or none."""
    if not root:
        return [f"{variable} is not set: expected {expected}"]
    return [] if Path(root).is_dir() else [f"{root}: {variable} is not a directory"]


def check_mimic_root(root: str | Path | None) -> list[str]:
    """Problems with a MIMIC-CXR-JPG 2.0.0 root (empty list when it looks right)."""
    problem = _root_problem(root, "MIMIC_CXR_ROOT", "the MIMIC-CXR-JPG 2.0.0 folder (with files/ and the 2.0.0 CSVs)")
    if problem:
        return problem
    assert root is not None  # _root_problem reports a missing root
    root = Path(root)
    problems = [
        f"{root / name}: missing (MIMIC-CXR-JPG 2.0.0 file, .csv or .csv.gz)"
        for name in MIMIC_FILES
        if not _exists_csv(root, name)
    ]
    problems += [
        f"{root / d}: missing folder (images files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg, "
        "reports mimic-cxr-reports/files/pXX/pSUBJECT/sSTUDY.txt)"
        for d in MIMIC_DIRS
        if not (root / d).is_dir()
    ]
    return problems + check_mimic_files_resolve(root)


def _first(root: Path, pattern: str) -> Path | None:
    """The first file under ``root`` matching ``pattern`` (a lazy glob: stops at the first hit)."""
    return next((p for p in root.glob(pattern) if p.is_file()), None)


def check_mimic_files_resolve(root: Path) -> list[str]:
    """At least one image ``files/pXX/pSUBJECT/sSTUDY/*.jpg`` and one report ``.../sSTUDY.txt`` exist.

    Catches archives unpacked one level too deep (``mimic-cxr-reports/mimic-cxr-reports/files``)
    or not at all, before anything long runs.
    """
    problems = []
    for rel, pattern, what in (
        ("files", "p*/p*/s*/*.jpg", "image"),
        ("mimic-cxr-reports/files", "p*/p*/s*.txt", "report"),
    ):
        base = root / rel
        if base.is_dir() and _first(base, pattern) is None:
            deeper = [str(p.relative_to(root)) for p in base.glob(f"*/{pattern}")][:1] + [
                str(p.relative_to(root)) for p in base.parent.glob(f"*/{rel.split('/')[-1]}/{pattern}")
            ][:1]
            hint = f"; found {deeper[0]} one level deeper: unpacked into an extra folder?" if deeper else ""
            problems.append(f"{base}: no {what} at {rel}/{pattern}{hint}")
    return problems


def check_chexpert_plus_images_resolve(root: Path, n_rows: int = 200) -> list[str]:
    """At least one of the first ``n_rows`` ``path_to_image`` entries exists under ``root`` (``.png`` twin allowed)."""
    csv = root / CHEXPERT_PLUS_FILES[0]
    try:
        paths = pd.read_csv(csv, nrows=n_rows, usecols=["path_to_image"], dtype=str)["path_to_image"].dropna()
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        return [f"{csv}: cannot read its path_to_image column ({type(exc).__name__})"]
    for p in paths:
        rel = Path(p)
        if rel.is_absolute() or ".." in rel.parts:
            continue
        if (root / rel).is_file() or (root / rel.with_suffix(".png")).is_file():
            return []
    return [f"{root}: none of the first {len(paths)} path_to_image entries of {csv.name} exists under the root"]


def check_chexpert_plus_root(root: str | Path | None) -> list[str]:
    """Problems with a CheXpert Plus root (empty list when it looks right)."""
    problem = _root_problem(root, "CHEXPERT_PLUS_ROOT", f"the CheXpert Plus folder with {CSV_NAME}")
    if problem:
        return problem
    assert root is not None  # _root_problem reports a missing root
    root = Path(root)
    problems = [
        f"{root / name}: missing (CheXpert Plus file)"
        for name in CHEXPERT_PLUS_FILES + CHEXPERT_PLUS_LABEL_FILES
        if not (root / name).exists()
    ]
    if (root / CHEXPERT_PLUS_FILES[0]).exists():
        problems += check_chexpert_plus_images_resolve(root)
    return problems


def read_model_list(models: ModelListSpec) -> list[ModelEntry]:
    """The rung list of a real run (:func:`relink_lib.models.catalog.read_model_list`: inline, JSON or YAML),
    with its problems raised as :class:`PreflightError`."""
    try:
        return catalog.read_model_list(models)
    except ModelListError as err:
        raise PreflightError(str(err)) from err


def check_models(models: ModelListSpec) -> list[str]:
    """Problems with the checkpoint list: each path must be a directory with weights in it."""
    if not models:
        return [
            "MODELS is not set: expected a JSON or YAML file listing the checkpoints ({name, kind, path}), "
            "least specialised first"
        ]
    try:
        entries = read_model_list(models)
    except PreflightError as err:
        return [str(err)]
    problems = []
    for entry in entries:
        path = entry.path
        if path.is_file() and path.suffix in (".pt", ".pth"):
            continue  # an OpenAI-CLIP-format state dict (CheXzero) may be a single file
        if not path.is_dir():
            problems.append(f"{path}: checkpoint directory of model {entry.name!r} not found")
            continue
        weights = [p for p in path.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth")]
        if not weights:
            problems.append(
                f"{path}: no weights (*.safetensors, *.bin, *.pt) in the checkpoint of model {entry.name!r}"
            )
    return problems


def check_paper_inputs(params: ProfileLike) -> None:
    """Raise :class:`PreflightError` listing every problem with the real-data inputs of ``params``."""
    data = as_profile(params).data
    problems = (
        check_mimic_root(data.mimic_cxr_root)
        + check_chexpert_plus_root(data.chexpert_plus_root)
        + check_models(data.models)
    )
    if problems:
        raise PreflightError("the paper profile cannot start:\n  - " + "\n  - ".join(problems))
