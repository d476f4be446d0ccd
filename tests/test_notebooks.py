"""The chapter sources read as chapters: rules every ``notebooks/*.py`` follows (the developers' guide).

- no ``def`` or ``class``, no code cell over 20 lines;
- every figure is shown as a numbered float (``show_figure(fig, "fig-...", caption)``, never ``plt.show()``)
  and every HTML table carries a ``label="tab-..."``; labels are unique across the book and every
  ``{numref}`` in the chapters and pages names one of them;
- set-up is not content: at most one code cell with visible source (a "show source" toggle) comes
  before a page's first figure or table.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
HIDDEN = {"remove-cell", "remove-input", "parameters"}
FLOAT_CALL = re.compile(r"\b(show_figure|html_table)\(")
LABEL = re.compile(r"""["'](?P<label>(fig|tab)-[a-z0-9-]+)["']""")
NUMREF = re.compile(r"\{numref\}`(?:[^<`]*<)?(?P<label>[a-z0-9-]+)>?`")


def _code_cells(path: Path) -> list[tuple[int, list[str], str]]:
    nb = jupytext.read(path)
    return [(i, list(c.metadata.get("tags", [])), c.source) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def _calls(source: str, name: str) -> list[str]:
    """The argument text of every call of ``name`` in ``source`` (balanced parentheses)."""
    out = []
    for m in re.finditer(rf"\b{name}\(", source):
        depth, i = 1, m.end()
        while depth and i < len(source):
            depth += {"(": 1, ")": -1}.get(source[i], 0)
            i += 1
        out.append(source[m.end() : i - 1])
    return out


def test_there_are_twelve_chapters() -> None:
    assert len(CHAPTERS) == 12


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_definitions_and_short_cells(path: Path) -> None:
    for i, _, source in _code_cells(path):
        assert not re.search(r"^\s*(def|class)\s", source, flags=re.M), f"{path.name} cell {i}: def/class"
        assert len(source.splitlines()) <= 20, f"{path.name} cell {i}: {len(source.splitlines())} lines (max 20)"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_figures_and_tables_are_numbered_floats(path: Path) -> None:
    for i, _, source in _code_cells(path):
        assert "plt.show()" not in source, f"{path.name} cell {i}: show figures with show_figure(fig, label, caption)"
        for call in _calls(source, "html_table"):
            assert "label=" in call and "caption=" in call, f"{path.name} cell {i}: html_table without label/caption"
        for call in _calls(source, "show_figure"):
            assert LABEL.search(call), f"{path.name} cell {i}: show_figure without a 'fig-...' label"


def _labels() -> list[tuple[str, str]]:
    found = []
    for path in CHAPTERS:
        for _, _, source in _code_cells(path):
            for name in ("html_table", "show_figure"):
                for call in _calls(source, name):
                    found += [(m.group("label"), path.stem) for m in LABEL.finditer(call)]
    return found


def test_labels_are_unique_and_every_numref_resolves() -> None:
    labels = _labels()
    names = [label for label, _ in labels]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"labels used twice: {duplicates}"
    assert len(names) >= 40  # every chapter's figures and results tables
    pages = CHAPTERS + sorted((ROOT / "book").glob("*.md")) + sorted((ROOT / "docs").glob("*.md"))
    refs = {(m.group("label"), p.name) for p in pages for m in NUMREF.finditer(p.read_text(encoding="utf-8"))}
    unknown = sorted(r for r in refs if r[0].startswith(("fig-", "tab-")) and r[0] not in set(names))
    assert not unknown, f"{{numref}} to labels no chapter defines: {unknown}"
    chapters_citing = {page for _, page in refs}
    assert len(chapters_citing) >= 10  # prose refers to its figures and tables by number
    defined_in = dict(labels)
    across = {(label, page) for label, page in refs if label in defined_in and not page.startswith(defined_in[label])}
    assert len(across) >= 3, f"cross-chapter references: {sorted(across)}"  # and to other chapters' floats


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_at_most_one_source_toggle_before_the_first_float(path: Path) -> None:
    visible = []
    for i, tags, source in _code_cells(path):
        if FLOAT_CALL.search(source):
            break
        if not HIDDEN.intersection(tags):
            visible.append(i)
    assert len(visible) <= 1, f"{path.name}: code cells {visible} show a source toggle before the first float"
