"""The book pipeline: toc parsing, content-hash skip, resume after a failure, baselines."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import nbformat
import pytest

from relink_lib.pipeline.baselines import CHECK_TAG, slim_baseline
from relink_lib.pipeline.browser import console_errors
from relink_lib.pipeline.execute import execute_notebook, to_ipynb
from relink_lib.pipeline.toc import chapter_notebooks, toc_entries

NOTEBOOK = textwrap.dedent("""\
    # %% tags=["parameters"]
    profile = "default"
    overrides = {}

    # %%
    value = VALUE

    # %% tags=["nbval-check-output"]
    print(f"profile={profile} value={value}")
    """)


def write_notebook(path: Path, value: str) -> Path:
    path.write_text(NOTEBOOK.replace("VALUE", value))
    return path


def test_toc_entries_in_book_order(tmp_path):
    (tmp_path / "_toc.yml").write_text(
        textwrap.dedent("""\
        format: jb-book
        root: book/intro
        parts:
          - caption: A
            chapters:
              - file: notebooks/01_a
              - file: notebooks/02_b
                sections:
                  - file: notebooks/03_c
          - caption: B
            chapters:
              - file: book/refs
        """)
    )
    assert toc_entries(tmp_path / "_toc.yml") == [
        "book/intro",
        "notebooks/01_a",
        "notebooks/02_b",
        "notebooks/03_c",
        "book/refs",
    ]
    (tmp_path / "notebooks").mkdir()
    for name in ("01_a", "02_b"):
        (tmp_path / "notebooks" / f"{name}.py").write_text("")
    with pytest.raises(FileNotFoundError, match="03_c"):
        chapter_notebooks(tmp_path)


def test_first_code_cell_must_be_parameters(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("# %%\nx = 1\n")
    with pytest.raises(ValueError, match="tagged 'parameters'"):
        to_ipynb(bad)


@pytest.fixture
def library(monkeypatch):
    """A fixed library version that the test can change (the real one hashes relink_lib's source)."""
    version = {"value": "v1"}
    monkeypatch.setattr("relink_lib.pipeline.execute.library_version", lambda: version["value"])
    return version


def test_unchanged_notebook_is_not_re_executed_and_a_change_is(tmp_path, library):
    source = write_notebook(tmp_path / "ch.py", "1")
    out = tmp_path / "out"
    first = execute_notebook(source, "smoke", out_dir=out, progress=False)
    assert first.status == "executed"
    text = "".join(o.get("text", "") for c in nbformat.read(first.output, 4).cells for o in c.get("outputs", []))
    assert "profile=smoke value=1" in text
    assert execute_notebook(source, "smoke", out_dir=out, progress=False).status == "cached"
    write_notebook(source, "2")
    assert execute_notebook(source, "smoke", out_dir=out, progress=False).status == "executed"
    assert execute_notebook(source, "ci", out_dir=out / "ci", progress=False).status == "executed"
    assert execute_notebook(source, "smoke", out_dir=out, progress=False).status == "cached"
    library["value"] = "v2"  # a library change re-executes
    assert execute_notebook(source, "smoke", out_dir=out, progress=False).status == "executed"


def test_failed_notebook_leaves_no_output_and_reruns(tmp_path, library):
    source = write_notebook(tmp_path / "ch.py", "undefined_name")
    out = tmp_path / "out"
    with pytest.raises(Exception, match="undefined_name"):
        execute_notebook(source, "smoke", out_dir=out, progress=False)
    assert not (out / "ch.ipynb").exists() and not (out / "ch.hash").exists()
    write_notebook(source, "3")
    assert execute_notebook(source, "smoke", out_dir=out, progress=False).status == "executed"


def test_slim_baseline_keeps_only_tagged_outputs():
    nb = nbformat.v4.new_notebook()
    kept = nbformat.v4.new_code_cell("print(1)", metadata={"tags": [CHECK_TAG]})
    dropped = nbformat.v4.new_code_cell("print(2)")
    for cell in (kept, dropped):
        cell.outputs = [nbformat.v4.new_output("stream", text="x\n")]
        cell.metadata["papermill"] = {"duration": 1.0}
    nb.cells = [kept, dropped]
    nb.metadata["papermill"] = {"duration": 2.0}
    slim = slim_baseline(nb)
    assert len(slim.cells[0].outputs) == 1 and slim.cells[1].outputs == []
    assert "papermill" not in slim.metadata and "papermill" not in slim.cells[0].metadata


def test_console_errors_are_found_in_chromium_log():
    log = "\n".join(
        [
            "[1:1:INFO:CONSOLE:62] \"Uncaught SyntaxError: Identifier 'X' has already been declared\", "
            "source: a.html (62)",
            '[1:1:INFO:CONSOLE:3] "hello", source: a.html (3)',
            "[1:1:WARNING:gpu] something unrelated",
        ]
    )
    errors = console_errors(log)
    assert len(errors) == 1 and "Uncaught SyntaxError" in errors[0]


def test_every_committed_baseline_has_checked_cells():
    root = Path(__file__).resolve().parent / "nbval"
    for path in root.glob("*.ipynb"):
        cells = json.loads(path.read_text())["cells"]
        assert any(CHECK_TAG in c.get("metadata", {}).get("tags", []) for c in cells), path.name


def _executed_notebook() -> nbformat.NotebookNode:
    """A notebook as papermill leaves it: defaults, injected parameters, set-up, a checked print, a how-to."""
    nb = nbformat.v4.new_notebook()
    cells = [
        nbformat.v4.new_markdown_cell("# 4. A chapter"),
        nbformat.v4.new_code_cell('profile = "default"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('profile = "ci"', metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell("import x"),
        nbformat.v4.new_code_cell("print(r1)", metadata={"tags": ["nbval-check-output", "remove-cell"]}),
        nbformat.v4.new_code_cell("make book", metadata={"tags": ["show-code"]}),
        nbformat.v4.new_code_cell("print(r5)", metadata={"tags": ["nbval-check-output"]}),
    ]
    cells[3].outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="100%|###| /home/me/cache\n"),
        nbformat.v4.new_output("stream", name="stdout", text="kept\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": "Text(0.5, 1.0, 'title')"}, execution_count=1),
        nbformat.v4.new_output("display_data", data={"text/plain": "<Figure size 640x480 with 0 Axes>"}),
        nbformat.v4.new_output(
            "execute_result", data={"text/plain": "Text(0.5, 1.0, 't')", "image/png": "iVBO"}, execution_count=2
        ),
        nbformat.v4.new_output("execute_result", data={"text/plain": "0.25"}, execution_count=3),
    ]
    nb.cells = cells
    return nb


def test_render_rules_hide_code_keep_one_parameters_cell_and_drop_stderr():
    from relink_lib.pipeline.book import apply_render_rules

    nb = apply_render_rules(_executed_notebook())
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert "remove-cell" in tags[1]  # the notebook's defaults: papermill's injected cell replaces them
    assert "remove-cell" in tags[2]  # papermill's values: set-up, not content (the page's banner names the profile)
    assert "hide-input" in tags[3]
    assert tags[4] == ["nbval-check-output", "remove-cell"]  # the author's remove-cell is left to jupyter-book
    assert tags[5] == ["show-code"]  # code that is the lesson stays visible
    assert tags[6] == ["nbval-check-output", "hide-cell"]  # a check's print without an HTML twin: collapsed whole
    kept = nb.cells[3].outputs
    assert [o.get("name") for o in kept] == ["stdout", None, None]  # stderr and bare plot reprs dropped
    assert "image/png" in kept[1]["data"] and kept[2]["data"]["text/plain"] == "0.25"
    plain = _executed_notebook()
    plain.cells.pop(2)  # not run by papermill: the defaults are the only parameters cell, so they stay
    assert "remove-cell" not in apply_render_rules(plain).cells[1].metadata["tags"]


def test_main_table_named_preferred_or_largest_and_nested_records_exploded():
    from relink_lib.pipeline.book import main_table, results_name

    nested = {
        "rungs": [
            {"rung": 0, "model": "a", "recall": [{"k": 1, "recall": 0.1}, {"k": 5, "recall": 0.4}]},
            {"rung": 1, "model": "b", "recall": [{"k": 1, "recall": 0.2}]},
        ],
        "provenance": {"x": 1},
    }
    table = main_table(nested)
    assert table.to_dict(orient="records") == [
        {"rung": 0, "model": "a", "k": 1, "recall": 0.1},
        {"rung": 0, "model": "a", "k": 5, "recall": 0.4},
        {"rung": 1, "model": "b", "k": 1, "recall": 0.2},
    ]
    big = [{"i": i} for i in range(10)]
    assert len(main_table({"extra": big, "rows": [{"a": 1}]})) == 1  # a preferred name wins over size
    assert len(main_table({"small": [{"a": 1}], "extra": big})) == 10  # else the largest
    assert list(main_table({"main_table": "small", "small": [{"a": 1}], "rows": big}).columns) == ["a"]
    assert main_table({"notes": "text", "provenance": {}}) is None
    with pytest.raises(KeyError, match="main_table = 'nope'"):
        main_table({"main_table": "nope"})
    assert results_name("notebooks/04_audit") == "audit" and results_name("notebooks/00_summary") == "summary"


def test_stage_book_applies_rules_and_links_downloads(tmp_path):
    import csv

    from relink_lib.pipeline.book import stage_book

    root = tmp_path / "repo"
    (root / "book").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "_config.yml").write_text("title: t\n")
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/04_audit\n  - file: notebooks/10_reproduce\n"
    )
    executed, results = tmp_path / "executed", tmp_path / "results"
    executed.mkdir()
    results.mkdir()
    for stem in ("04_audit", "10_reproduce"):
        nbformat.write(_executed_notebook(), executed / f"{stem}.ipynb")
    (results / "audit.json").write_text(
        json.dumps({"rows": [{"k": 1, "recall": 0.25}], "provenance": {"profile": "ci"}})
    )
    src = stage_book("ci", root, executed=executed, results=results)
    nb = nbformat.read(src / "notebooks" / "04_audit.ipynb", 4)
    assert "hide-input" in nb.cells[3].metadata["tags"]
    last = nb.cells[-1].source
    assert "{download}`ci_audit.json </downloads/ci_audit.json>`" in last and "ci_audit.csv" in last
    with open(src / "downloads" / "ci_audit.csv") as fh:
        assert list(csv.DictReader(fh)) == [{"k": "1", "recall": "0.25"}]
    assert json.loads((src / "downloads.json").read_text()) == {
        "notebooks/04_audit.html": ["ci_04_audit.ipynb", "ci_audit.json", "ci_audit.csv"],
        "notebooks/10_reproduce.html": ["ci_10_reproduce.ipynb"],  # its executed notebook only: no results file
    }
    assert "ci_audit.json" not in nbformat.read(src / "notebooks" / "10_reproduce.ipynb", 4).cells[-1].source
    assert json.loads((src / "pages.json").read_text()) == [
        "index.html",
        "book/intro.html",
        "notebooks/04_audit.html",
        "notebooks/10_reproduce.html",
    ]
    (executed / "10_reproduce.ipynb").unlink()
    with pytest.raises(FileNotFoundError, match="10_reproduce"):
        stage_book("ci", root, executed=executed, results=results)


def test_browser_findings_round_trip_and_problems():
    from relink_lib.pipeline.browser import RESULT_ID, check_script, page_findings, page_problems

    assert "</script>" in check_script() and "%(" not in check_script()
    assert all(line.count("'") % 2 == 0 for line in check_script().splitlines()), "a JS string literal spans lines"
    clean = {
        "math": 2,
        "typeset": 2,
        "mathjax": True,
        "raw_tex": [],
        "reprs": [],
        "wide_tables": [],
        "page_overflow_px": 0,
        "images": 1,
        "broken_images": [],
        "links": ["../_downloads/ab/ci_audit.json"],
    }
    dom = f'<html><body><script type="application/json" id="{RESULT_ID}">{json.dumps(clean)}</script></body></html>'
    found = page_findings(dom)
    assert found == clean
    ok = {"title": "t", "findings": found, "console_errors": [], "screenshot": "x.png"}
    assert page_problems("p.html", ok, ["ci_audit.json"]) == []
    bad = dict(
        found,
        typeset=0,
        raw_tex=["\\(x\\)"],
        reprs=["Text(0.5, 1.0, 'x')"],
        wide_tables=["R@1 (1400 px)"],
        legend_overlaps=["fig-x"],
        unnumbered=['table "model"'],
    )
    problems = page_problems("p.html", dict(ok, findings=bad), ["ci_audit.json", "ci_audit.csv"])
    text = "; ".join(problems)
    for needle in (
        "math not typeset: 0 of 2",
        "raw TeX",
        "Python reprs",
        "wider than the content column",
        "without a number and caption: ['table \"model\"']",
        "legends over plotted data in figures ['fig-x']",
        "ci_audit.csv",
    ):
        assert needle in text
    assert "did not finish" in page_problems("p.html", dict(ok, findings=page_findings("<html></html>")))[0]
    from relink_lib.pipeline.browser import page_notes

    assert (
        page_notes(ok) == []
        and "1 printed output(s)" in page_notes(dict(ok, findings=dict(clean, wide_text_outputs=["x"])))[0]
    )


def test_every_method_note_joins_the_toc_unless_a_book_page_includes_it(tmp_path):
    import yaml

    from relink_lib.pipeline.book import complete_docs_toc

    (tmp_path / "docs").mkdir()
    (tmp_path / "book").mkdir()
    for stem in ("audit", "benchmarks", "mutation"):
        (tmp_path / "docs" / f"{stem}.md").write_text(f"# {stem}\n")
    (tmp_path / "book" / "benchmarks.md").write_text("# B\n\n```{include} ../docs/benchmarks.md\n```\n")
    toc = tmp_path / "_toc.yml"
    toc.write_text(
        "format: jb-book\nroot: book/intro\nparts:\n  - caption: Method notes\n"
        "    chapters:\n      - file: docs/audit\n"
    )
    assert complete_docs_toc(toc, tmp_path / "docs", tmp_path / "book") == ["docs/mutation"]
    assert toc_entries(toc) == ["book/intro", "docs/audit", "docs/mutation"]
    assert yaml.safe_load(toc.read_text())["format"] == "jb-book"
    assert complete_docs_toc(toc, tmp_path / "docs", tmp_path / "book") == []  # idempotent
