"""Stage the executed notebooks beside the prose pages and build the HTML book (jupyter-book 1.x).

Staging applies the book's rendering rules to every executed chapter, so no notebook has to:

- code cells are collapsed (``hide-input``) unless tagged ``show-code`` (code that is the lesson,
  as in chapter 10's how-to) or already tagged ``remove-cell`` / ``remove-input`` / ``hide-cell``;
  the ``parameters`` cell and papermill's injected one are removed from the page (set-up, not content:
  the page's banner names the profile and seed; the downloadable notebook keeps both, so it re-runs);
  set-up cells (imports, the profile) are tagged ``remove-cell`` in the sources, so at most one
  "show source" toggle comes before a page's first figure or table (``tests/test_notebooks.py``);
- stderr outputs (progress bars, warnings with local paths) are dropped, and so is a cell value
  that is only a plotting object's repr (``Text(0.5, 1.0, ...)`` from a last-line ``ax.set_title``);
- cells tagged ``remove-cell`` (for instance the nbval-checked print cells that an HTML table
  repeats) are left for jupyter-book to remove from the page; other nbval-checked print cells
  are collapsed whole (``hide-cell``: code and printed output behind one toggle);
- a "Downloads" section is appended to every chapter: its jupytext source (``notebooks/<stem>.py``),
  its executed notebook as a reader may have it (:func:`public_notebook`: stripped as the page
  is), and, when the chapter wrote one, its ``results/<profile>/<name>.json`` and a CSV of its
  main table (:func:`main_table`), copied into the build through Sphinx's ``{download}`` role.
  ``_build/html/_downloads.json`` lists them per page for the browser check;
- the "Provenance" page (``book/provenance``, when the toc lists it) is generated from the
  ``provenance`` blocks of ``results/<profile>/*.json`` (:func:`provenance_page`): per chapter the
  profile, seed, commit, package versions, numerical mode and wall time;
- ``book/_static/`` becomes the book's ``_static/`` (its CSS: figures on a white background in
  the dark theme, no figure or table split across printed pages).

:func:`build_pdf` prints the whole book to one PDF: jupyter-book's single-page HTML build of the
same staged sources, opened in headless Chromium (network off, MathJax from ``_static``) and
printed with ``--print-to-pdf`` (docs/stack.md).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

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
PROVENANCE_PAGE = "book/provenance"
"""The toc entry of the generated Provenance page (:func:`provenance_page`)."""
PDF_NAME = "relink.pdf"
"""The PDF's name in ``_build/html/`` (the intro page links it) and, prefixed by the profile, in ``_build/pdf/``."""
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
        if ("parameters" in tags and injected) or "injected-parameters" in tags:
            # the profile a page ran on is in its banner; papermill's parameter cells are set-up, not content
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


#: ``write_results(params, "<name>", ...)`` in a chapter's source: the results file it writes.
WRITE_RESULTS = re.compile(r"write_results\(\s*\w+\s*,\s*[\"']([\w.-]+)[\"']")


def chapter_results_name(entry: str, root: Path) -> str:
    """The results file stem a chapter writes: the name its source passes to ``write_results`` (chapter 11,
    ``11_custodian``, writes ``adaptive``), else :func:`results_name` of the entry."""
    source = Path(root) / f"{entry}.py"
    if source.exists():
        found = WRITE_RESULTS.search(source.read_text(encoding="utf-8"))
        if found:
            return found.group(1)
    return results_name(entry)


#: papermill's notebook metadata a reader may see: the parameters and the timing, not the machine's paths.
PUBLIC_PAPERMILL_KEYS = ("parameters", "start_time", "end_time", "duration", "version")


def public_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """An executed chapter as a reader downloads it, stripped as its page is (a copy; ``nb`` is left alone).

    The page's rules (:func:`apply_render_rules`: stderr outputs, which carry local paths and library
    warnings, and bare plotting reprs are dropped) and what jupyter-book removes from the page: the
    nbval print cells (``remove-cell`` and ``nbval-check-output``), outputs of ``remove-output`` cells.
    Set-up cells that are off the page (parameters, imports, the profile: ``remove-cell``) stay, so the
    notebook runs again under papermill. papermill's metadata
    keeps only :data:`PUBLIC_PAPERMILL_KEYS` (no input or output paths), and the per-cell execution
    records go. Report text never reaches a notebook in the first place: the display helpers refuse
    private text (:mod:`relink_lib.cohorts.phi`), which the paper dry run checks on every output.
    """
    out = apply_render_rules(copy.deepcopy(nb))
    cells = []
    for cell in out.cells:
        tags = _tags(cell)
        # set-up cells (parameters, imports, the profile) are off the page but needed to run the notebook again;
        # only the nbval print cells, which an HTML table repeats, leave the download too
        if "remove-cell" in tags and CHECK_TAG in tags:
            continue
        if "remove-cell" in tags:
            _set_tags(cell, [t for t in tags if t != "remove-cell"])
        cell.get("metadata", {}).pop("papermill", None)
        cell.get("metadata", {}).pop("execution", None)
        if cell.get("cell_type") == "code" and "remove-output" in tags:
            cell["outputs"] = []
        cells.append(cell)
    out.cells = cells
    papermill = out.metadata.get("papermill")
    if isinstance(papermill, Mapping):
        out.metadata["papermill"] = {k: papermill[k] for k in PUBLIC_PAPERMILL_KEYS if k in papermill}
    return out


def stage_downloads(
    entry: str,
    profile: str,
    src: Path,
    results: Path,
    *,
    root: Path | None = None,
    notebook: nbformat.NotebookNode | None = None,
) -> list[str]:
    """Stage a chapter's downloads under ``src/downloads/``; their staged paths (``/downloads/<file>``).

    ``root``'s ``<entry>.py`` (the jupytext source) and ``notebook`` (the executed chapter, written as
    :func:`public_notebook`) when given; the results JSON and its main-table CSV when the chapter
    wrote results (:func:`chapter_results_name`).
    """
    out = src / DOWNLOADS_DIR
    out.mkdir(exist_ok=True)
    stem = Path(entry).name
    files = []
    source = Path(root) / f"{entry}.py" if root is not None else None
    if source is not None and source.exists():
        shutil.copy2(source, out / source.name)
        files.append(out / source.name)
    if notebook is not None:
        executed = out / f"{profile}_{stem}.ipynb"
        nbformat.write(public_notebook(notebook), executed)
        files.append(executed)
    name = chapter_results_name(entry, root) if root is not None else results_name(entry)
    json_path = results / f"{name}.json"
    if json_path.exists():
        staged_json = out / f"{profile}_{name}.json"
        shutil.copy2(json_path, staged_json)
        files.append(staged_json)
        payload = json.loads(json_path.read_text())
        table = main_table(payload) if isinstance(payload, Mapping) else None
        if table is not None:
            csv = out / f"{profile}_{name}.csv"
            table.to_csv(csv, index=False)
            files.append(csv)
    return [f"/{DOWNLOADS_DIR}/{f.name}" for f in files]


def _download_what(name: str, profile: str) -> str:
    if name.endswith(".py"):
        return (
            "the chapter's source, a jupytext notebook in percent format (open it in Jupyter with jupytext, or run "
            f"it: `python -m relink_lib run notebooks/{name} --profile {profile}`)"
        )
    if name.endswith(".ipynb"):
        return f"the executed notebook of this page (profile `{profile}`), with its outputs as shown here"
    if name.endswith(".json"):
        return "every number of this chapter, with its provenance (JSON)"
    return "the chapter's main table (CSV)"


def downloads_cell(files: list[str], profile: str, provenance_doc: str | None = None) -> nbformat.NotebookNode:
    """The markdown cell that links a chapter's downloads (Sphinx ``{download}`` role); ``provenance_doc``: the
    Provenance page's path relative to the chapter, linked when given."""
    lines = ["## Downloads", "", f"This page's source, notebook and numbers (profile `{profile}`):", ""]
    for f in files:
        lines.append(f"- {{download}}`{Path(f).name} <{f}>`: {_download_what(Path(f).name, profile)}")
    if provenance_doc:
        lines += [
            "",
            f"How every chapter of this run was made (seed, commit, packages, wall time): {{doc}}`{provenance_doc}`.",
        ]
    return nbformat.v4.new_markdown_cell("\n".join(lines))


# ------------------------------------------------------------------------------------------ provenance page
def _short_commit(commit: Any) -> str:
    text = str(commit or "unknown")
    head, plus, rest = text.partition("+")
    return (head[:10] if len(head) == 40 else head) + (plus + rest)


def _wall_time(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "n/a"
    s = float(seconds)
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def _md_cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def provenance_rows(results: Path, entries: Sequence[str] = (), root: Path | None = None) -> list[dict[str, Any]]:
    """One record per results file of ``results`` that carries a ``provenance`` block: the chapter (its toc entry
    when one writes it), the file, and the block's profile, seed, commit, numerical mode, CPU capability, threads,
    wall time, packages and time written. Chapters in toc order, then any other file by name."""
    by_name: dict[str, str] = {}
    for entry in entries:
        if entry.startswith("notebooks/"):
            by_name[chapter_results_name(entry, root) if root is not None else results_name(entry)] = entry
    rows = []
    for path in sorted(Path(results).glob("*.json")):
        try:
            payload = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        prov = payload.get("provenance") if isinstance(payload, Mapping) else None
        if not isinstance(prov, Mapping):
            continue
        numerics: Mapping[str, Any] = prov["numerics"] if isinstance(prov.get("numerics"), Mapping) else {}
        owner = by_name.get(path.stem)
        rows.append(
            {
                "entry": owner,
                "chapter": Path(owner).name if owner else path.stem,
                "file": path.name,
                "profile": prov.get("profile", "n/a"),
                "seed": prov.get("seed", "n/a"),
                "commit": _short_commit(prov.get("git_commit")),
                "numerical_mode": numerics.get("numerical_mode", numerics.get("requested", "n/a")),
                "cpu_capability": numerics.get("cpu_capability", "n/a"),
                "threads": numerics.get("torch_threads", "n/a"),
                "wall_time_s": prov.get("wall_time_s"),
                "written_at": prov.get("written_at", "n/a"),
                "packages": dict(prov.get("packages") or {}),
            }
        )
    order = {e: i for i, e in enumerate(entries)}
    rows.sort(key=lambda r: (order.get(r["entry"], len(order)), r["file"]))
    return rows


def provenance_page(results: Path, profile: str, entries: Sequence[str] = (), root: Path | None = None) -> str:
    """The Provenance page (MyST Markdown) of one profile, generated from the results' ``provenance`` blocks.

    A run table (chapter, profile, seed, commit, numerical mode, threads, wall time) and a package table
    (one row per package: its version, or each chapter's where they differ), both narrow enough for the
    content column."""
    rows = provenance_rows(results, entries, root)
    lines = [
        "# Provenance",
        "",
        f"How each chapter's numbers on profile `{profile}` were made, read from the `provenance` block of its "
        f"results file (`results/{profile}/<chapter>.json`, also a download at the end of the chapter). This page "
        "is generated when the book is built (`relink_lib.pipeline.book.provenance_page`).",
        "",
    ]
    if not rows:
        lines.append(f"No results with a provenance block were found for profile `{profile}`: run the book first.")
        return "\n".join(lines) + "\n"
    lines += [
        "## The runs",
        "",
        "Commit: the repository's HEAD when the chapter ran (`+dirty`: tracked files differed from it). Numerical "
        "mode: `portable` pins the CPU kernels so that numbers are the same on every x86-64 CPU, `native` uses the "
        "machine's fastest ({doc}`../docs/stack`).",
        "",
        "| chapter | profile | seed | commit | numerical mode | threads | wall time |",
        "|---|---|---:|---|---|---:|---:|",
    ]
    for r in rows:
        mode = f"{r['numerical_mode']} ({r['cpu_capability']})"
        lines.append(
            "| "
            + " | ".join(
                _md_cell(v)
                for v in (
                    r["chapter"],
                    r["profile"],
                    r["seed"],
                    f"`{r['commit']}`",
                    mode,
                    r["threads"],
                    _wall_time(r["wall_time_s"]),
                )
            )
            + " |"
        )
    packages = sorted({name for r in rows for name in r["packages"]}, key=lambda n: (n != "python", n))
    lines += ["", "## Package versions", "", "| package | version |", "|---|---|"]
    for name in packages:
        versions = {r["chapter"]: r["packages"].get(name, "n/a") for r in rows}
        distinct = sorted(set(versions.values()))
        text = (
            distinct[0]
            if len(distinct) == 1
            else "; ".join(f"{v} ({', '.join(c for c, x in versions.items() if x == v)})" for v in distinct)
        )
        lines.append(f"| {_md_cell(name)} | {_md_cell(text)} |")
    written = sorted(str(r["written_at"]) for r in rows if r["written_at"] != "n/a")
    if written:
        lines += ["", f"Results written between {written[0]} and {written[-1]} (UTC)."]
    return "\n".join(lines) + "\n"


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
    if (root / "book" / "_static").is_dir():  # the book's CSS: jupyter-book adds every _static/*.css to the pages
        shutil.copytree(root / "book" / "_static", src / "_static")
    shutil.copytree(root / "docs", src / "docs")  # method notes are book pages; book/benchmarks.md includes docs/
    complete_docs_toc(src / "_toc.yml", src / "docs", src / "book")
    (src / "notebooks").mkdir()
    done = Path(executed) if executed else executed_dir(profile, root)
    results = Path(results) if results else results_dir(profile)
    entries = toc_entries(root / "_toc.yml")
    provenance_doc = f"../{PROVENANCE_PAGE}" if PROVENANCE_PAGE in entries else None
    if provenance_doc:
        (src / f"{PROVENANCE_PAGE}.md").write_text(provenance_page(results, profile, entries, root), encoding="utf-8")
    downloads: dict[str, list[str]] = {}
    for entry in entries:
        if not entry.startswith("notebooks/"):
            continue
        source = done / f"{Path(entry).name}.ipynb"
        if not source.exists():
            raise FileNotFoundError(
                f"{source}: chapter {entry!r} has not been executed on profile {profile!r}; "
                f"run `python -m relink_lib book --profile {profile}`"
            )
        executed_nb = nbformat.read(source, as_version=4)
        nb = apply_render_rules(copy.deepcopy(executed_nb))
        files = stage_downloads(entry, profile, src, results, root=root, notebook=executed_nb)
        if files:
            nb.cells.append(downloads_cell(files, profile, provenance_doc))
            downloads[f"{entry}.html"] = [Path(f).name for f in files]
        nbformat.write(nb, src / f"{entry}.ipynb")
    (src / "downloads.json").write_text(json.dumps(downloads, indent=1) + "\n")
    pages = ["index.html"] + [f"{entry}.html" for entry in toc_entries(src / "_toc.yml")]
    (src / "pages.json").write_text(json.dumps(list(dict.fromkeys(pages)), indent=1) + "\n")
    return src


def _jupyter_book(src: Path, out: Path, builder: str, profile: str, cwd: Path, warnings_as_errors: bool) -> Path:
    """Run ``jupyter-book build`` on the staged sources ``src`` with ``builder`` into ``out/_build/<builder>``."""
    target = out / "_build" / builder
    if target.exists():
        shutil.rmtree(target)
    cmd = [
        str(Path(sys.executable).parent / "jupyter-book"),
        "build",
        str(src),
        "--path-output",
        str(out),
        "--builder",
        builder,
        "--all",
    ]
    if warnings_as_errors:
        cmd += ["-W", "--keep-going"]
    proc = subprocess.run(cmd, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(
            f"jupyter-book build ({builder}) failed for profile {profile!r} (exit {proc.returncode}); "
            "see the warnings above"
        )
    return target


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
    html = _jupyter_book(src, out, "html", profile, root, warnings_as_errors)
    (html / "PROFILE").write_text(profile + "\n")
    shutil.copy2(src / "downloads.json", html / "_downloads.json")
    shutil.copy2(src / "pages.json", html / "_pages.json")
    return html


def build_singlehtml(
    profile: str,
    root: Path | None = None,
    warnings_as_errors: bool = False,
    *,
    executed: Path | None = None,
    results: Path | None = None,
    build_root: Path | None = None,
) -> Path:
    """Build ``<build_root>/_build/singlehtml`` (the whole book as one HTML page, the PDF's source) from the same
    staged sources as :func:`build_html`; returns its folder (``index.html`` holds every page).

    Sphinx writes the single page under the root document's name (``book/intro.html``) but with the links of a
    page at the top (``_static/...``, ``_images/...``), and jupyter-book puts a redirect in ``index.html``; the
    page is moved to ``index.html``, where its links resolve (elsewhere its MathJax, CSS and figures would not
    load)."""
    root = root or project_root()
    out = Path(build_root) if build_root else root
    src = stage_book(profile, root, executed=executed, results=results, build_root=out)
    single = _jupyter_book(src, out, "singlehtml", profile, root, warnings_as_errors)
    page = single / f"{toc_entries(src / '_toc.yml')[0]}.html"
    if page.exists() and page != single / "index.html":
        shutil.move(page, single / "index.html")
    (single / "PROFILE").write_text(profile + "\n")
    return single
