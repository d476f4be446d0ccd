"""Stage the executed notebooks beside the prose pages and build the HTML book (jupyter-book 1.x)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from ..profiles import project_root
from .execute import executed_dir
from .toc import toc_entries

STATIC_FILES = ("_config.yml", "_toc.yml")


def stage_book(profile: str, root: Path | None = None) -> Path:
    """Copy the book config, ``book/`` pages and the profile's executed notebooks to ``_build/src/<profile>/``.

    Every ``notebooks/...`` entry of ``_toc.yml`` must have been executed; the error names the missing one.
    """
    root = root or project_root()
    src = root / "_build" / "src" / profile
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in STATIC_FILES:
        shutil.copy2(root / name, src / name)
    shutil.copytree(root / "book", src / "book")
    shutil.copytree(root / "docs", src / "docs")  # book/benchmarks.md includes the tables kept in docs/
    (src / "notebooks").mkdir()
    done = executed_dir(profile, root)
    for entry in toc_entries(root / "_toc.yml"):
        if not entry.startswith("notebooks/"):
            continue
        executed = done / f"{Path(entry).name}.ipynb"
        if not executed.exists():
            raise FileNotFoundError(f"{executed}: chapter {entry!r} has not been executed on profile {profile!r}; run `python -m relink_lib book --profile {profile}`")
        shutil.copy2(executed, src / f"{entry}.ipynb")
    return src


def build_html(profile: str, root: Path | None = None, warnings_as_errors: bool = True) -> Path:
    """Build ``_build/html`` from the staged sources with jupyter-book (Sphinx warnings fail the build)."""
    root = root or project_root()
    src = stage_book(profile, root)
    html = root / "_build" / "html"
    if html.exists():
        shutil.rmtree(html)
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(src), "--path-output", str(root), "--builder", "html", "--all"]
    if warnings_as_errors:
        cmd += ["-W", "--keep-going"]
    proc = subprocess.run(cmd, cwd=root)
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed for profile {profile!r} (exit {proc.returncode}); see the warnings above")
    (html / "PROFILE").write_text(profile + "\n")
    return html
