"""Results JSON with a provenance block, one file per chapter under ``results/<profile>/``.

Results are written one way: a stage returns a typed result (e.g. :class:`relink_lib.audit.stage.AuditResult`)
whose ``to_json()`` gives the chapter's payload, and the chapter's notebook calls :func:`write_results`
with it. :func:`jsonable` is the conversion :func:`write_results` applies (the typed results use it in
their ``to_json``), :func:`frame_from_records` its inverse for tables (their ``from_json``).
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .cache import atomic_write_bytes
from .config import ProfileLike, as_profile
from .numerics import record as numerics_record
from .profiles import project_root, results_dir

_PACKAGES = ("relink", "torch", "numpy", "scipy", "pandas", "scikit-learn", "transformers", "opacus", "dp-accounting")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a result depends on."""
    out: dict[str, str] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit() -> str:
    """The repository's HEAD commit, with ``+dirty`` when tracked files differ; ``unknown`` outside git."""
    root = project_root()
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def provenance(params: ProfileLike, *, cohort: str, model: str | list[str], wall_time_s: float) -> dict[str, Any]:
    """The provenance block every results file carries."""
    cfg = as_profile(params)
    return {
        "profile": cfg.name,
        "seed": cfg.seed,
        "cohort": cohort,
        "model": model,
        "simulation": cfg.cohort.simulation,
        "packages": package_versions(),
        "git_commit": git_commit(),
        "wall_time_s": round(float(wall_time_s), 3),
        "numerics": {"requested": cfg.numerics.mode, **numerics_record()},
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "to_dict") and hasattr(obj, "columns"):  # pandas DataFrame
        return _jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, Path):
        return str(obj)
    return obj


def jsonable(obj: Any) -> Any:
    """``obj`` as JSON-ready values, as :func:`write_results` writes them.

    Mappings and sequences recursively; DataFrames become lists of row records; numpy scalars and
    arrays become Python numbers and lists; NaN becomes ``None`` and +-inf the strings ``"inf"`` / ``"-inf"``.
    """
    return _jsonable(obj)


def _inf_back(value: Any) -> Any:
    if isinstance(value, str) and value in ("inf", "-inf"):
        return math.inf if value == "inf" else -math.inf
    return value


def _number_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def frame_from_records(records: Any) -> pd.DataFrame:
    """A table from its JSON records (the inverse of :func:`jsonable` on a DataFrame).

    ``None`` or an empty list gives an empty frame; a DataFrame is copied. ``null`` in a numeric
    column becomes NaN (pandas' inference), in any other column ``None`` (an object column); the
    strings ``"inf"`` / ``"-inf"`` of a column whose other values are numbers become floats again.
    """
    if isinstance(records, pd.DataFrame):
        return records.copy()
    frame = pd.DataFrame([dict(r) for r in (records or [])])
    for col in frame.columns:
        values = frame[col]
        if values.dtype.kind in "biufcmM":
            continue
        back = values.map(_inf_back)
        if (back != values).any() and back.map(_number_or_null).all():
            frame[col] = back.astype(float)
        elif values.isna().any():
            frame[col] = values.astype(object).where(values.notna(), None)
    return frame


def write_results(
    params: ProfileLike,
    chapter: str,
    payload: Mapping[str, Any],
    *,
    cohort: str,
    model: str | list[str],
    wall_time_s: float,
) -> Path:
    """Write ``results/<profile>/<chapter>.json`` with ``payload`` and a ``provenance`` block.

    NaN becomes ``null``; numpy scalars, arrays and DataFrames (as lists of rows) are converted.
    """
    body = dict(_jsonable(payload))
    body["provenance"] = provenance(params, cohort=cohort, model=model, wall_time_s=wall_time_s)
    path = results_dir(as_profile(params).name) / f"{chapter}.json"
    atomic_write_bytes(path, (json.dumps(body, indent=1, allow_nan=False) + "\n").encode())
    return path


def read_results(profile: str, chapter: str) -> dict[str, Any]:
    """Read ``results/<profile>/<chapter>.json``; a clear error names the file when it is missing."""
    path = results_dir(profile) / f"{chapter}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: no results for chapter {chapter!r} on profile {profile!r}; run that chapter first"
        )
    return json.loads(path.read_text())
