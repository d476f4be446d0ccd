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

NOTEBOOK = textwrap.dedent('''\
    # %% tags=["parameters"]
    profile = "default"
    overrides = {}

    # %%
    value = VALUE

    # %% tags=["nbval-check-output"]
    print(f"profile={profile} value={value}")
    ''')


def write_notebook(path: Path, value: str) -> Path:
    path.write_text(NOTEBOOK.replace("VALUE", value))
    return path


def test_toc_entries_in_book_order(tmp_path):
    (tmp_path / "_toc.yml").write_text(textwrap.dedent("""\
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
        """))
    assert toc_entries(tmp_path / "_toc.yml") == ["book/intro", "notebooks/01_a", "notebooks/02_b", "notebooks/03_c", "book/refs"]
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
    log = "\n".join([
        '[1:1:INFO:CONSOLE:62] "Uncaught SyntaxError: Identifier \'X\' has already been declared", source: a.html (62)',
        '[1:1:INFO:CONSOLE:3] "hello", source: a.html (3)',
        "[1:1:WARNING:gpu] something unrelated",
    ])
    errors = console_errors(log)
    assert len(errors) == 1 and "Uncaught SyntaxError" in errors[0]


def test_every_committed_baseline_has_checked_cells():
    root = Path(__file__).resolve().parent / "nbval"
    for path in root.glob("*.ipynb"):
        cells = json.loads(path.read_text())["cells"]
        assert any(CHECK_TAG in c.get("metadata", {}).get("tags", []) for c in cells), path.name
