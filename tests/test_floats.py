"""Numbered figures and tables: the notebook outputs (relink_lib.floats) and their Sphinx rendering.

The end-to-end test builds a two-page Sphinx project with MyST-NB and the book's extension: a chapter
notebook ``notebooks/04_demo`` holding two figures, a table and a labelled equation, and an index page
that refers to them with ``{numref}`` and ``{eq}``. It checks the numbers the reader sees ("Figure 4.2",
"Table 4.1", "(4.1)") on both pages and in the single-page build the PDF is printed from.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from relink_lib.floats import FLOAT_MIME, Float, check_label, figure_float, table_float  # noqa: E402
from relink_lib.pipeline.sphinx_floats import chapter_numbers  # noqa: E402
from relink_lib.tables import html_table  # noqa: E402

CONF = """
extensions = ["myst_nb", "relink_lib.pipeline.sphinx_floats"]
numfig = True
numfig_format = {"figure": "Figure %s", "table": "Table %s"}
math_numfig = True
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath"]
exclude_patterns = ["_build"]
"""

INDEX = """# Home

See {numref}`fig-second`, {numref}`tab-demo` and equation {eq}`eq-demo`.

```{toctree}
notebooks/04_demo
```
"""


def _figure(label: str, caption: str) -> Float:
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [1, 0])
    return figure_float(fig, label, caption)


def _output(obj: Float) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("display_data", data=obj._repr_mimebundle_())


def _project(root: Path) -> None:
    (root / "notebooks").mkdir(parents=True)
    (root / "conf.py").write_text(CONF)
    (root / "index.md").write_text(INDEX)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    table = html_table(pd.DataFrame({"N": [10, 100], "lift": [1.5, 2.5]}), caption="A demo table.", label="tab-demo")
    cells = [nbformat.v4.new_markdown_cell("# 4. Demo\n\n$$ a = b $$ (eq-demo)\n\nAs {numref}`tab-demo` shows.")]
    for obj in (_figure("fig-first", "The first figure."), table, _figure("fig-second", "The second figure.")):
        cell = nbformat.v4.new_code_cell("shown()")
        cell.outputs = [_output(obj)]
        cells.append(cell)
    nb.cells = cells
    nbformat.write(nb, root / "notebooks" / "04_demo.ipynb")


def _build(root: Path, builder: str) -> Path:
    from sphinx.cmd.build import build_main

    out = root / "_build" / builder
    assert build_main(["-q", "-W", "-b", builder, str(root), str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("book")
    _project(root)
    html = _build(root, "html")
    single = _build(root, "singlehtml")
    return {
        "index": (html / "index.html").read_text(),
        "chapter": (html / "notebooks" / "04_demo.html").read_text(),
        "single": (single / "index.html").read_text(),
    }


def _captions(page: str) -> list[str]:
    found = re.findall(r'<span class="caption-number">([^<]*)</span><span class="caption-text">([^<]*)</span>', page)
    return [f"{number.strip()}: {text}" for number, text in found]


def test_floats_are_numbered_by_chapter_in_page_order(built: dict[str, str]) -> None:
    assert _captions(built["chapter"]) == [
        "Figure 4.1: The first figure.",
        "Table 4.1: A demo table.",
        "Figure 4.2: The second figure.",
    ]
    assert 'id="tab-demo"' in built["chapter"] and 'class="relink-table' in built["chapter"]
    # the table's parts sit in one block, which the CSS keeps under the caption as one piece
    assert re.search(r'id="tab-demo">\s*<div class="relink-float-body"><div class="relink-table"', built["chapter"])
    assert "(4.1)" in built["chapter"]  # the labelled equation


def test_numref_resolves_across_pages(built: dict[str, str]) -> None:
    index = re.sub(r"<[^>]+>", "", built["index"])
    assert "See Figure 4.2, Table 4.1 and equation (4.1)." in index
    assert "As Table 4.1 shows." in re.sub(r"<[^>]+>", "", built["chapter"])


def test_single_page_build_keeps_the_numbers(built: dict[str, str]) -> None:
    assert _captions(built["single"]) == _captions(built["chapter"])


def test_table_body_holds_no_caption_but_jupyter_fallback_does() -> None:
    t = table_float("<table></table>", "tab-x", "Caption here.")
    bundle = t._repr_mimebundle_()
    assert bundle[FLOAT_MIME] == {
        "kind": "table",
        "label": "tab-x",
        "caption": "Caption here.",
        "content": "<table></table>",
    }
    assert "Caption here." in bundle["text/html"] and bundle["text/html"].endswith("<table></table>")


def test_figure_bundle_is_a_png_for_jupyter() -> None:
    bundle = _figure("fig-x", "A figure.")._repr_mimebundle_()
    assert bundle["image/png"] == bundle[FLOAT_MIME]["content"]
    import base64

    assert base64.b64decode(bundle["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("label", "kind"),
    [
        ("frontier", "figure"),
        ("tab-frontier", "figure"),
        ("fig-Frontier", "figure"),
        ("fig-a b", "figure"),
        ("fig-x", "table"),
        ("tab-", "table"),
        ("tab--x", "table"),
    ],
)
def test_bad_labels_are_refused_with_the_label_named(label: str, kind: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(label))):
        check_label(label, kind)  # type: ignore[arg-type]


def test_a_float_needs_a_caption() -> None:
    with pytest.raises(ValueError, match="tab-x: a numbered float needs a caption"):
        table_float("<table></table>", "tab-x", "  ")
    with pytest.raises(ValueError, match="tab-y: a numbered table needs a caption"):
        html_table(pd.DataFrame({"a": [1]}), label="tab-y")


def test_chapter_numbers_keep_page_order_per_kind() -> None:
    sphinx_numbers = {"figure": {"b": (7,), "a": (3,), "c": (12,)}, "table": {"t": (5,)}}
    assert chapter_numbers(sphinx_numbers, 6) == {
        "figure": {"a": (6, 1), "b": (6, 2), "c": (6, 3)},
        "table": {"t": (6, 1)},
    }


def test_a_legend_over_the_data_is_recorded_and_marked_for_the_browser_check() -> None:
    from docutils.frontend import get_default_settings
    from docutils.parsers.rst import Parser
    from docutils.utils import new_document

    from relink_lib.pipeline.sphinx_floats import LEGEND_OVERLAP_CLASS, float_nodes

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([i / 10 for i in range(31)], [i / 10 for i in range(31)], "o", label="points")
    ax.legend(loc="center")  # over the middle points
    covered = figure_float(fig, "fig-covered", "A legend over the data.")
    assert covered.legend_overlaps and all(s.startswith("axes 0: ") for s in covered.legend_overlaps)
    clear = _figure("fig-clear", "No legend.")
    assert clear.legend_overlaps == () and "legend_overlaps" not in clear.payload()
    doc = new_document("test", get_default_settings(Parser))
    (marked,) = float_nodes(doc, covered.payload(), [])
    (plain,) = float_nodes(doc, clear.payload(), [])
    assert LEGEND_OVERLAP_CLASS in marked["classes"] and LEGEND_OVERLAP_CLASS not in plain["classes"]
    assert marked["ids"] == ["fig-covered"]
