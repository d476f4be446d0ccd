"""nbval baselines: the ci-profile notebooks, executed, with the metric cells' outputs kept.

CI re-executes them with ``pytest --nbval-lax``: only cells tagged ``nbval-check-output`` are
compared, after the substitutions in ``tests/nbval/sanitize.cfg``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import nbformat

from ..numerics import kernel_env, mode_of
from ..profiles import get_profile
from .execute import execute_book
from .execute import execution_order as _order
from .toc import chapter_notebooks

CHECK_TAG = "nbval-check-output"
BASELINE_PROFILE = "ci"


def baseline_dir(root: Path) -> Path:
    """``tests/nbval/`` under the repository root."""
    return root / "tests" / "nbval"


def slim_baseline(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Keep outputs only of tagged metric cells and drop run-specific metadata (timings, ids)."""
    nb.metadata.pop("papermill", None)
    nb.metadata.pop("widgets", None)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:03d}"  # stable ids keep baseline diffs to the numbers that changed
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        if CHECK_TAG not in cell.metadata.get("tags", []):
            cell.outputs = []
            cell.execution_count = None  # nbval refuses outputs on a cell it considers unrun
    return nb


def execution_order(root: Path) -> list[Path]:
    """The book's chapter notebooks in the order they must run (the summary reads the others' results)."""
    return _order(chapter_notebooks(root))


def write_baselines(root: Path) -> list[Path]:
    """Execute the book on the ci profile and write slim baselines to ``tests/nbval/``."""
    runs = execute_book(execution_order(root), BASELINE_PROFILE)
    out_dir = baseline_dir(root)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for run in runs:
        nb = slim_baseline(nbformat.read(run.output, as_version=4))
        path = out_dir / f"{run.name}.ipynb"
        nbformat.write(nb, path)
        written.append(path)
    return written


def run_nbval(root: Path, extra_args: Sequence[str] = ()) -> int:
    """Run ``pytest --nbval-lax`` on the baselines, in execution order; returns pytest's exit status."""
    out_dir = baseline_dir(root)
    files = [out_dir / f"{nb.stem}.ipynb" for nb in execution_order(root)]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        print(f"nbval: no baseline for {', '.join(missing)}; run `python -m relink_lib baselines`", file=sys.stderr)
        return 2
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "--nbval-lax",
        "--nbval-sanitize-with",
        str(out_dir / "sanitize.cfg"),
        "--nbval-cell-timeout",
        "1200",
        "-p",
        "no:cacheprovider",
        *map(str, files),
        *extra_args,
    ]
    env = kernel_env(mode_of(get_profile(BASELINE_PROFILE)))  # the baselines' numerical mode, whatever the shell says
    return subprocess.run(cmd, cwd=root, env=env).returncode


def tagged_cells(path: Path) -> int:
    """How many cells of a notebook are tagged for output comparison."""
    nb = json.loads(Path(path).read_text())
    return sum(CHECK_TAG in c.get("metadata", {}).get("tags", []) for c in nb["cells"])
