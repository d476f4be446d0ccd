"""Stage the executed notebooks beside the prose pages and build the HTML book (jupyter-book 1.x).

Staging applies the book's rendering rules to every executed chapter, so no notebook has to:

- code cells are collapsed (``hide-input``) unless tagged ``show-code`` (code that is the lesson,
  as in chapter 10's how-to) or already tagged ``remove-cell`` / ``remove-input`` / ``hide-cell``;
  the ``parameters`` cell is removed when papermill injected its own (the injected one, with the
  values the run used, is kept, collapsed), so the parameters show once;
- stderr outputs (progress bars, warnings with local paths) are dropped, and so is a cell value
  that is only a plotting object's repr (``Text(0.5, 1.0, ...)`` from a last-line ``ax.set_title``);
- cells tagged ``remove-cell`` (for instance the nbval-checked print cells that an HTML table
  repeats) are left for jupyter-book to remove from the page; other nbval-checked print cells
  are collapsed whole (``hide-cell``: code and printed output behind one toggle);
- a "Downloads" section is appended to every chapter with a results file: the chapter's
  ``results/<profile>/<chapter>.json`` and a CSV of its main table (:func:`main_table`), copied
  into the build through Sphinx's ``{download}`` role. ``_build/html/_downloads.json`` lists
  them per page for the browser check.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

import nbformat
import pandas as pd
import yaml

from ..profiles import project_root, results_dir
from .baselines import CHECK_TAG
from .execute import executed_dir
from .toc import toc_entries

STATIC_FILES = ("_config.yml", "_toc.yml")
SHOW_TAG = "show-code"
KEEP_TAGS = frozenset({SHOW_TAG, "remove-cell", "remove-input", "hide-input", "hide-cell"})
DOWNLOADS_DIR = "downloads"
#: Payload fields tried, in this order, as a chapter's main table when it names none (``main_table``).
MAIN_TABLE_KEYS = ("main_table", "table", "rows", "sweep", "matched_pools", "rungs", "table_rows")


def _tags(cell: Mapping[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _set_tags(cell: nbformat.NotebookNode, tags: list[str]) -> None:
    cell.setdefault("metadata", {})["tags"] = list(dict.fromkeys(tags))


#: A cell's value that is only the repr of a plotting object (``ax.set_title(...)`` as a cell's last line).
PLOT_REPR = re.compile(r"^\[?<?(Text\(|Line2D\(|Figure size|Axes:|BarContainer|matplotlib\.)")


def _noise(output: Mapping[str, Any]) -> bool:
    """stderr, or a plain-text value that is only a plotting object's repr."""
    if output.get("output_type") == "stream":
        return output.get("name") == "stderr"
    data = output.get("data", {})
    if output.get("output_type") in ("execute_result", "display_data") and set(data) == {"text/plain"}:
        text = data["text/plain"]
        return bool(PLOT_REPR.match("".join(text) if isinstance(text, list) else str(text)))
    return False


def apply_render_rules(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The book's rendering rules (module docstring) applied to an executed notebook, in place."""
    injected = any("injected-parameters" in _tags(c) for c in nb.cells if c.get("cell_type") == "code")
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        tags = _tags(cell)
        cell["outputs"] = [o for o in cell.get("outputs", []) if not _noise(o)]
        if "parameters" in tags and injected:
            _set_tags(cell, tags + ["remove-cell"])
        elif not KEEP_TAGS.intersection(tags):
            # a regression check's compact print is for nbval, not the reader: collapsed with its code
            _set_tags(cell, tags + ["hide-cell" if CHECK_TAG in tags else "hide-input"])
    return nb


def _flat_records(value: Any) -> list[dict[str, Any]] | None:
    """A list of records with scalar fields; a nested list of records in each one is exploded."""
    if not isinstance(value, list) or not value or not all(isinstance(v, Mapping) for v in value):
        return None
    rows: list[dict[str, Any]] = []
    for record in value:
        scalars = {k: v for k, v in record.items() if not isinstance(v, (Mapping, list))}
        nested = [
            (k, v) for k, v in record.items() if isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v)
        ]
        if nested:
            key, inner = max(nested, key=lambda kv: len(kv[1]))
            for sub in inner:
                rows.append({**scalars, **{k: v for k, v in sub.items() if not isinstance(v, (Mapping, list))}})
        else:
            rows.append(scalars)
    return rows if rows and any(rows) else None


def main_table(payload: Mapping[str, Any]) -> pd.DataFrame | None:
    """The main table of a chapter's results payload, or ``None`` when it has none.

    A payload may name it: ``"main_table": "<field>"``. Otherwise the first of
    :data:`MAIN_TABLE_KEYS` that holds a list of records, else the largest list of records.
    Nested records (``rungs[i].recall[j]``) are exploded with their parent's scalar fields.
    """
    named = payload.get("main_table")
    if isinstance(named, str):
        if named not in payload:
            raise KeyError(f"main_table = {named!r}: no such field in the payload (fields: {sorted(payload)})")
        rows = _flat_records(payload[named])
        return pd.DataFrame(rows) if rows else None
    for key in MAIN_TABLE_KEYS:
        rows = _flat_records(payload.get(key))
        if rows:
            return pd.DataFrame(rows)
    best = None
    for key, value in payload.items():
        rows = _flat_records(value) if key != "provenance" else None
        if rows and (best is None or len(rows) * len(rows[0]) > len(best) * len(best[0])):
            best = rows
    return pd.DataFrame(best) if best else None


def results_name(entry: str) -> str:
    """The results file stem of a chapter entry: ``notebooks/04_audit`` -> ``audit``."""
    stem = Path(entry).name
    head, _, rest = stem.partition("_")
    return rest if head.isdigit() and rest else stem


def stage_downloads(entry: str, profile: str, src: Path, results: Path) -> list[str]:
    """Copy a chapter's results JSON and its main-table CSV under ``src/downloads/``; their staged paths."""
    name = results_name(entry)
    json_path = results / f"{name}.json"
    if not json_path.exists():
        return []
    out = src / DOWNLOADS_DIR
    out.mkdir(exist_ok=True)
    staged_json = out / f"{profile}_{name}.json"
    shutil.copy2(json_path, staged_json)
    files = [staged_json]
    payload = json.loads(json_path.read_text())
    table = main_table(payload) if isinstance(payload, Mapping) else None
    if table is not None:
        csv = out / f"{profile}_{name}.csv"
        table.to_csv(csv, index=False)
        files.append(csv)
    return [f"/{DOWNLOADS_DIR}/{f.name}" for f in files]


def downloads_cell(files: list[str], profile: str) -> nbformat.NotebookNode:
    """The markdown cell that links a chapter's downloads (Sphinx ``{download}`` role)."""
    lines = ["## Downloads", "", f"The numbers of this page (profile `{profile}`):", ""]
    for f in files:
        what = (
            "every number of this chapter, with its provenance (JSON)"
            if f.endswith(".json")
            else "the chapter's main table (CSV)"
        )
        lines.append(f"- {{download}}`{Path(f).name} <{f}>`: {what}")
    return nbformat.v4.new_markdown_cell("\n".join(lines))


METHOD_NOTES = "Method notes"


def complete_docs_toc(toc_path: Path, docs: Path, book: Path) -> list[str]:
    """Add every ``docs/*.md`` not yet in the toc (nor included by a ``book/`` page) to its "Method notes" part.

    Chapters and notes link the method notes; a note left out of the toc would be excluded from
    the build and every link to it would fail. Returns the entries added (``docs/<stem>``).
    """
    toc = yaml.safe_load(toc_path.read_text())
    listed = set(toc_entries(toc_path))
    included = {
        m.group(1)
        for page in book.glob("*.md")
        for m in re.finditer(r"\{include\}\s+\.\./docs/([\w.-]+)\.md", page.read_text())
    }
    missing = [
        f"docs/{f.stem}" for f in sorted(docs.glob("*.md")) if f"docs/{f.stem}" not in listed and f.stem not in included
    ]
    if not missing:
        return []
    parts = toc.setdefault("parts", [])
    part = next((p for p in parts if p.get("caption") == METHOD_NOTES), None)
    if part is None:
        part = {"caption": METHOD_NOTES, "chapters": []}
        parts.append(part)
    part.setdefault("chapters", []).extend({"file": entry} for entry in missing)
    toc_path.write_text(yaml.safe_dump(toc, sort_keys=False))
    return missing


def stage_book(
    profile: str,
    root: Path | None = None,
    *,
    executed: Path | None = None,
    results: Path | None = None,
    build_root: Path | None = None,
) -> Path:
    """Copy the book config, ``book/`` pages, ``docs/`` and the executed notebooks to ``_build/src/<profile>/``.

    Every ``notebooks/...`` entry of ``_toc.yml`` must have been executed; the error names the missing one.
    ``executed`` (default ``_build/executed/<profile>/``) and ``results`` (default
    ``results/<profile>/``) say where the executed notebooks and the results JSON are;
    ``build_root`` (default ``root``) where ``_build/src/<profile>/`` goes. Writes ``downloads.json``
    (page -> staged download paths) beside the staged sources.
    """
    root = root or project_root()
    src = (Path(build_root) if build_root else root) / "_build" / "src" / profile
    if src.exists():
        shutil.rmtree(src)
    src.mkdir(parents=True)
    for name in STATIC_FILES:
        shutil.copy2(root / name, src / name)
    shutil.copytree(root / "book", src / "book")
    shutil.copytree(root / "docs", src / "docs")  # method notes are book pages; book/benchmarks.md includes docs/
    complete_docs_toc(src / "_toc.yml", src / "docs", src / "book")
    (src / "notebooks").mkdir()
    done = Path(executed) if executed else executed_dir(profile, root)
    results = Path(results) if results else results_dir(profile)
    downloads: dict[str, list[str]] = {}
    for entry in toc_entries(root / "_toc.yml"):
        if not entry.startswith("notebooks/"):
            continue
        source = done / f"{Path(entry).name}.ipynb"
        if not source.exists():
            raise FileNotFoundError(
                f"{source}: chapter {entry!r} has not been executed on profile {profile!r}; "
                f"run `python -m relink_lib book --profile {profile}`"
            )
        nb = apply_render_rules(nbformat.read(source, as_version=4))
        files = stage_downloads(entry, profile, src, results)
        if files:
            nb.cells.append(downloads_cell(files, profile))
            downloads[f"{entry}.html"] = [Path(f).name for f in files]
        nbformat.write(nb, src / f"{entry}.ipynb")
    (src / "downloads.json").write_text(json.dumps(downloads, indent=1) + "\n")
    pages = ["index.html"] + [f"{entry}.html" for entry in toc_entries(src / "_toc.yml")]
    (src / "pages.json").write_text(json.dumps(list(dict.fromkeys(pages)), indent=1) + "\n")
    return src


def build_html(
    profile: str,
    root: Path | None = None,
    warnings_as_errors: bool = True,
    *,
    executed: Path | None = None,
    results: Path | None = None,
    build_root: Path | None = None,
) -> Path:
    """Build ``<build_root>/_build/html`` (default: the project's) from the staged sources with jupyter-book.

    Sphinx warnings fail the build unless ``warnings_as_errors=False``.
    """
    root = root or project_root()
    out = Path(build_root) if build_root else root
    src = stage_book(profile, root, executed=executed, results=results, build_root=out)
    html = out / "_build" / "html"
    if html.exists():
        shutil.rmtree(html)
    cmd = [
        str(Path(sys.executable).parent / "jupyter-book"),
        "build",
        str(src),
        "--path-output",
        str(out),
        "--builder",
        "html",
        "--all",
    ]
    if warnings_as_errors:
        cmd += ["-W", "--keep-going"]
    proc = subprocess.run(cmd, cwd=root)
    if proc.returncode != 0:
        raise RuntimeError(
            f"jupyter-book build failed for profile {profile!r} (exit {proc.returncode}); see the warnings above"
        )
    (html / "PROFILE").write_text(profile + "\n")
    shutil.copy2(src / "downloads.json", html / "_downloads.json")
    shutil.copy2(src / "pages.json", html / "_pages.json")
    return html
