"""Execute chapter notebooks with papermill, skipping those whose inputs are unchanged.

A notebook is re-executed only when its content hash changes: the hash covers the notebook
source, the papermill parameters, the source of the whole ``relink_lib`` package and the input
data (:func:`data_fingerprint`: the cohort cache's own key of each site, which for a real cohort
holds the size and modification time of every table, report and image file). The
executed notebook and its hash are written only after a successful run, so a run stopped
part-way resumes at the first notebook that did not finish (and, inside it, from the
library's cached steps).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import jupytext
import nbformat
import papermill

import relink_lib

from .. import cache
from ..config import Profile
from ..numerics import kernel_env, mode_of
from ..profiles import PROFILE_NAMES, get_profile, project_root

LIBRARY_DIR = Path(__file__).resolve().parent.parent
SUMMARY_STEM = "00_summary"  # executed last: it reads every chapter's results


@dataclass
class NotebookRun:
    """What happened to one notebook: ``status`` is ``executed`` or ``cached``; ``wall_s`` seconds."""

    name: str
    status: str
    wall_s: float
    output: Path


def executed_dir(profile: str, root: Path | None = None) -> Path:
    """Where executed notebooks of a profile are kept: ``_build/executed/<profile>/``."""
    return (root or project_root()) / "_build" / "executed" / profile


def library_version() -> str:
    """Hash of every source file of ``relink_lib``."""
    return cache.code_version(relink_lib)


def data_fingerprint(profile: Profile) -> dict[str, str]:
    """What the input data of a run is, per cohort site (``internal``, ``external``).

    The content hash of the cohort cache's own key (:func:`relink_lib.cohorts.stage.cohort_key`), so
    the chapter skip and the cohort cache detect the same changes: for a real cohort the tables'
    size and mtime and a manifest of (relative path, size, mtime in ns) of every report and image file
    under the data root (``os.scandir`` and ``stat`` only, no file is read); for the synthetic cohort
    its generator parameters, seed and code, so the fingerprint is stable. A site whose root or
    official files are missing gets ``"missing: <why>"`` (a chapter that needs it fails when it runs;
    the others still run and skip), and its hash changes once the files appear.
    """
    from ..cohorts.stage import SITES, cohort_key

    out: dict[str, str] = {}
    for site in SITES:
        try:
            out[site] = cache.content_hash(cohort_key(profile, site))
        except FileNotFoundError as err:
            out[site] = f"missing: {err}"
    return out


def notebook_hash(source: Path, parameters: Mapping[str, Any], data: Mapping[str, str] | None = None) -> str:
    """Content hash of a notebook run: its source, its parameters, the library code and the input data.

    ``data`` is :func:`data_fingerprint` of the run's profile (``parameters["profile"]`` with
    ``parameters["overrides"]``); computed here when not given.
    """
    env = {k: os.environ.get(k) for k in ("MIMIC_CXR_ROOT", "CHEXPERT_PLUS_ROOT", "MODELS")}
    if data is None:
        data = data_fingerprint(get_profile(parameters["profile"], parameters.get("overrides")))
    return cache.content_hash(source.read_text(), dict(parameters), library_version(), env, dict(data))


def to_ipynb(source: Path) -> nbformat.NotebookNode:
    """Read a jupytext percent-format notebook; check its first code cell is tagged ``parameters``."""
    nb = jupytext.read(source)
    code = [c for c in nb.cells if c.cell_type == "code"]
    if not code or "parameters" not in code[0].get("metadata", {}).get("tags", []):
        raise ValueError(
            f"{source}: the first code cell must be tagged 'parameters' (papermill injects the profile there)"
        )
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    return nb


def execute_notebook(
    source: Path,
    profile: str,
    *,
    out_dir: Path | None = None,
    force: bool = False,
    overrides: Mapping[str, Any] | None = None,
    progress: bool = True,
    data: Mapping[str, str] | None = None,
) -> NotebookRun:
    """Execute one jupytext notebook on ``profile`` with papermill (kernel ``python3``).

    Writes ``<out_dir>/<stem>.ipynb`` (default ``_build/executed/<profile>/``) and a ``.hash``
    beside it; skips the run when the hash (:func:`notebook_hash`) matches unless ``force``.
    ``data``: the profile's :func:`data_fingerprint` when the caller has it (the book computes it
    once for all chapters); computed here otherwise.
    """
    if profile not in PROFILE_NAMES:
        raise ValueError(f"profile={profile!r}: expected one of {', '.join(PROFILE_NAMES)}")
    source = Path(source).resolve()
    if not source.exists():
        raise FileNotFoundError(f"{source}: no such notebook")
    out_dir = Path(out_dir) if out_dir else executed_dir(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    parameters: dict[str, Any] = {"profile": profile, "overrides": dict(overrides or {})}
    digest = notebook_hash(source, parameters, data)
    output = out_dir / f"{source.stem}.ipynb"
    hash_file = out_dir / f"{source.stem}.hash"
    if not force and output.exists() and hash_file.exists() and hash_file.read_text().strip() == digest:
        return NotebookRun(source.stem, "cached", 0.0, output)

    hash_file.unlink(missing_ok=True)
    src_nb = out_dir / f".{source.stem}.src.ipynb"
    tmp_out = out_dir / f".{source.stem}.running.ipynb"
    nbformat.write(to_ipynb(source), src_nb)
    start = time.perf_counter()
    try:
        with kernel_environment(profile, overrides):
            papermill.execute_notebook(
                str(src_nb),
                str(tmp_out),
                parameters=parameters,
                kernel_name="python3",
                cwd=str(source.parent),
                progress_bar=progress,
                log_output=False,
            )
    finally:
        src_nb.unlink(missing_ok=True)
    wall = time.perf_counter() - start
    os.replace(tmp_out, output)
    hash_file.write_text(digest + "\n")
    return NotebookRun(source.stem, "executed", wall, output)


@contextlib.contextmanager
def kernel_environment(profile: str, overrides: Mapping[str, Any] | None = None) -> Iterator[None]:
    """Within the block, ``os.environ`` is the environment of the profile's numerical mode
    (:func:`relink_lib.numerics.kernel_env`), so a kernel started there inherits it; restored after."""
    env = kernel_env(mode_of(get_profile(profile, overrides)))
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def execution_order(notebooks: Sequence[Path]) -> list[Path]:
    """Chapter notebooks in the order they must run: book order, the summary last (it reads the others' results)."""
    return [nb for nb in notebooks if nb.stem != SUMMARY_STEM] + [nb for nb in notebooks if nb.stem == SUMMARY_STEM]


def execute_book(
    notebooks: Sequence[Path],
    profile: str,
    *,
    force: bool = False,
    overrides: Mapping[str, Any] | None = None,
    out_dir: Path | None = None,
) -> list[NotebookRun]:
    """Execute every chapter notebook in order (the summary last), printing per-notebook wall time.

    ``out_dir`` defaults to ``_build/executed/<profile>/``. The input data's fingerprint
    (:func:`data_fingerprint`) is taken once, before the first chapter.
    """
    out_dir = Path(out_dir) if out_dir else executed_dir(profile)
    data = data_fingerprint(get_profile(profile, overrides)) if profile in PROFILE_NAMES else None
    ordered = execution_order(notebooks)
    runs = []
    total = len(ordered)
    for i, nb in enumerate(ordered, 1):
        print(f"[{i}/{total}] {nb.stem} (profile {profile}) ...", flush=True)
        run = execute_notebook(nb, profile, force=force, overrides=overrides, out_dir=out_dir, data=data)
        note = "unchanged, not re-executed" if run.status == "cached" else f"executed in {run.wall_s:.1f} s"
        print(f"[{i}/{total}] {nb.stem}: {note}", flush=True)
        runs.append(run)
    record = {r.name: {"status": r.status, "wall_s": round(r.wall_s, 1)} for r in runs}
    (out_dir / "runs.json").write_text(json.dumps(record, indent=1) + "\n")
    return runs
