"""The book as a reference work: every chapter's downloads (.py, executed .ipynb, JSON, CSV), the generated
Provenance page, the PDF's helpers and check, and the browser check's new findings (tables that do not fit the
column, the dark theme, downloads missing from the build). No jupyter-book or Chromium run here."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _executed() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {
        "parameters": {"profile": "ci"},
        "input_path": "/home/someone/relink/_build/executed/ci/04_audit.input.ipynb",
        "output_path": "/home/someone/relink/_build/executed/ci/04_audit.ipynb",
        "environment_variables": {"HOME": "/home/someone"},
        "duration": 12.5,
    }
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 4. A chapter"),
        nbformat.v4.new_code_cell('profile = "default"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell('profile = "ci"', metadata={"tags": ["injected-parameters"]}),
        nbformat.v4.new_code_cell(
            "run()",
            metadata={"papermill": {"duration": 1.0}, "execution": {"iopub.status.busy": "2026-12-03T10:00:00Z"}},
        ),
        nbformat.v4.new_code_cell("print(r1)", metadata={"tags": ["nbval-check-output", "remove-cell"]}),
        nbformat.v4.new_code_cell("noisy()", metadata={"tags": ["remove-output"]}),
        nbformat.v4.new_code_cell("from relink_lib import x", metadata={"tags": ["remove-cell"]}),
    ]
    nb.cells[3].outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="warning: /home/someone/cache/x.npz\n"),
        nbformat.v4.new_output("stream", name="stdout", text="kept\n"),
    ]
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", name="stdout", text="0.25\n")]
    nb.cells[5].outputs = [nbformat.v4.new_output("stream", name="stdout", text="hidden\n")]
    return nb


def test_public_notebook_is_stripped_as_the_page_is():
    from relink_lib.pipeline.book import public_notebook

    nb = _executed()
    out = public_notebook(nb)
    text = json.dumps(out)
    assert "/home/someone" not in text  # no stderr with local paths, no papermill paths or environment
    assert out.metadata["papermill"] == {"parameters": {"profile": "ci"}, "duration": 12.5}
    sources = [c.source for c in out.cells]
    assert "print(r1)" not in sources  # removed from the page, removed here
    assert 'profile = "default"' in sources and "remove-cell" not in out.cells[1].metadata["tags"]  # re-runnable
    assert out.cells[3].outputs == [nbformat.v4.new_output("stream", name="stdout", text="kept\n")]
    assert "papermill" not in out.cells[3].metadata and "execution" not in out.cells[3].metadata
    assert out.cells[-2].outputs == []  # remove-output
    assert out.cells[-1].source == "from relink_lib import x" and "remove-cell" not in out.cells[-1].metadata["tags"]
    assert 'profile = "ci"' in sources  # papermill's values: the download re-runs what the page ran
    assert len(nb.cells[3].outputs) == 2 and "input_path" in nb.metadata["papermill"]  # the input is left alone
    nbformat.validate(out)


def test_chapter_results_name_reads_the_source(tmp_path):
    from relink_lib.pipeline.book import chapter_results_name

    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "11_custodian.py").write_text('x = 1\npath = write_results(params, "adaptive", {})\n')
    assert chapter_results_name("notebooks/11_custodian", tmp_path) == "adaptive"
    assert chapter_results_name("notebooks/04_audit", tmp_path) == "audit"  # no source: the entry's name
    assert chapter_results_name("notebooks/11_custodian", ROOT) == "adaptive"  # the real chapter 11


def _provenance(profile="ci", seed=0, commit="a" * 40 + "+dirty", mode="portable", wall=93.2, torch="2.13.0"):
    return {
        "profile": profile,
        "seed": seed,
        "git_commit": commit,
        "wall_time_s": wall,
        "packages": {"python": "3.11.2", "torch": torch, "numpy": "2.1.0"},
        "numerics": {"requested": mode, "numerical_mode": mode, "cpu_capability": "DEFAULT", "torch_threads": 1},
        "written_at": "2026-12-03T10:00:00Z",
    }


def _repo(tmp_path: Path) -> tuple[Path, Path, Path]:
    root = tmp_path / "repo"
    (root / "book" / "_static").mkdir(parents=True)
    (root / "docs").mkdir()
    (root / "notebooks").mkdir()
    (root / "book" / "_static" / "relink.css").write_text("img {}\n")
    (root / "book" / "provenance.md").write_text("# Provenance\n\nplaceholder\n")
    (root / "_config.yml").write_text("title: t\n")
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: notebooks/04_audit\n"
        "  - file: notebooks/11_custodian\n  - file: book/provenance\n"
    )
    (root / "notebooks" / "04_audit.py").write_text('# # 4. Audit\nwrite_results(params, "audit", {})\n')
    (root / "notebooks" / "11_custodian.py").write_text('# # 11. Custodian\nwrite_results(params, "adaptive", {})\n')
    executed, results = tmp_path / "executed", tmp_path / "results"
    executed.mkdir()
    results.mkdir()
    for stem in ("04_audit", "11_custodian"):
        nbformat.write(_executed(), executed / f"{stem}.ipynb")
    (results / "audit.json").write_text(json.dumps({"rows": [{"k": 1, "recall": 0.25}], "provenance": _provenance()}))
    (results / "adaptive.json").write_text(
        json.dumps({"table": [{"m": 10}], "provenance": _provenance(wall=300.0, torch="2.12.0")})
    )
    (results / "stray.json").write_text(json.dumps({"no": "provenance"}))
    return root, executed, results


def test_every_chapter_offers_its_source_notebook_json_and_csv(tmp_path):
    from relink_lib.pipeline.book import stage_book

    root, executed, results = _repo(tmp_path)
    src = stage_book("ci", root, executed=executed, results=results)
    manifest = json.loads((src / "downloads.json").read_text())
    assert manifest == {
        "notebooks/04_audit.html": ["04_audit.py", "ci_04_audit.ipynb", "ci_audit.json", "ci_audit.csv"],
        # chapter 11 writes adaptive.json: found through its source, not its file name
        "notebooks/11_custodian.html": [
            "11_custodian.py",
            "ci_11_custodian.ipynb",
            "ci_adaptive.json",
            "ci_adaptive.csv",
        ],
    }
    staged = src / "downloads"
    assert (staged / "04_audit.py").read_text() == (root / "notebooks" / "04_audit.py").read_text()
    assert "/home/someone" not in (staged / "ci_04_audit.ipynb").read_text()
    last = nbformat.read(src / "notebooks" / "04_audit.ipynb", 4).cells[-1].source
    for name in ("04_audit.py", "ci_04_audit.ipynb", "ci_audit.json", "ci_audit.csv"):
        assert f"{{download}}`{name} </downloads/{name}>`" in last
    assert "{doc}`../book/provenance`" in last
    assert (src / "_static" / "relink.css").exists()  # the book's CSS reaches jupyter-book's _static


def test_provenance_page_lists_each_chapters_run(tmp_path):
    from relink_lib.pipeline.book import stage_book

    root, executed, results = _repo(tmp_path)
    src = stage_book("ci", root, executed=executed, results=results)
    page = (src / "book" / "provenance.md").read_text()
    assert page.startswith("# Provenance\n") and "placeholder" not in page
    rows = [line for line in page.splitlines() if line.startswith("| 04_audit") or line.startswith("| 11_custodian")]
    assert rows == [
        "| 04_audit | ci | 0 | `aaaaaaaaaa+dirty` | portable (DEFAULT) | 1 | 93.2 s |",
        "| 11_custodian | ci | 0 | `aaaaaaaaaa+dirty` | portable (DEFAULT) | 1 | 5.0 min |",
    ]
    assert "| torch | 2.12.0 (11_custodian); 2.13.0 (04_audit) |" in page  # versions that differ, per chapter
    assert "| numpy | 2.1.0 |" in page and "stray" not in page
    assert max(len(line) for line in page.splitlines() if line.startswith("|")) < 100  # fits the column


def test_provenance_page_without_results_says_so(tmp_path):
    from relink_lib.pipeline.book import provenance_page

    assert "No results with a provenance block" in provenance_page(tmp_path, "smoke")


def test_the_repository_config_toc_and_intro():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert config["repository"]["url"] == "https://example.org/relink"  # a placeholder: no foreign project
    assert "placeholder" in (ROOT / "_config.yml").read_text().lower()
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    reference = next(p for p in toc["parts"] if p["caption"] == "Reference")
    assert {"file": "book/provenance"} in reference["chapters"]
    intro = (ROOT / "book" / "intro.md").read_text()
    assert "relink.pdf" in intro and "make pdf" in intro
    css = (ROOT / "book" / "_static" / "relink.css").read_text()
    assert "break-inside: avoid" in css and 'html[data-theme="dark"]' in css


def test_pdf_check_reads_titles_from_the_sources_and_captions_from_the_html(tmp_path, monkeypatch):
    from relink_lib.pipeline import pdf

    root, _, _ = _repo(tmp_path)
    (root / "book" / "intro.md").write_text("# relink: can a chest X-ray be re-linked?\n\ntext\n")
    titles = pdf.chapter_titles(root)
    assert titles == {
        "book/intro": "relink: can a chest X-ray be re-linked?",
        "notebooks/04_audit": "4. Audit",
        "notebooks/11_custodian": "11. Custodian",
        "book/provenance": "Provenance",
    }
    single = tmp_path / "single"
    single.mkdir()
    (single / "index.html").write_text(
        '<figure><img src="a.png"><figcaption><p><span class="caption-number">Fig. 1 </span>'
        '<span class="caption-text">Recall@1 against N &amp; chance</span>'
        '<a class="headerlink" href="#f">¶</a></p></figcaption></figure>'
        '<figure class="relink-table"><div>...</div><figcaption><p><span class="caption-number">Table 4.1 </span>'
        '<span class="caption-text">Lift, patient-level</span>'
        '<a class="headerlink" href="#t" title="Link">#</a></p></figcaption>'
        "</figure>"
        '<div class="math notranslate nohighlight">\\[\\text{chance}(K, N) = \\frac{\\min(K, N)}{N}\\]</div>'
        '<p>pools of <span class="math notranslate nohighlight">\\(N\\)</span> reports</p>'
    )
    assert pdf.figure_captions(single / "index.html") == [
        "Fig. 1 Recall@1 against N & chance",
        "Table 4.1 Lift, patient-level",
    ]
    assert pdf.math_sources(single / "index.html") == ["\\text{chance}(K, N) = \\frac{\\min(K, N)}{N}", "N"]
    text = (
        "relink: can a chest X-\nray be re-linked?\n4. Audit\nFig. 1 Recall@1\nagainst N & chance\n"
        "Table 4.1 Lift, patientlevel\n"
        "11. Custodian\n\u000cProvenance\n"
    )
    monkeypatch.setattr(pdf, "pdf_text", lambda path: text)
    assert pdf.check_pdf(tmp_path / "x.pdf", single, root) == {
        "titles": 4,
        "captions": 2,
        "formulas": 2,
        "pages": 1,
        "chars": len(text),
    }
    monkeypatch.setattr(pdf, "pdf_text", lambda path: text.replace("11. Custodian", "").replace("chance", ""))
    with pytest.raises(AssertionError) as err:
        pdf.check_pdf(tmp_path / "x.pdf", single, root)
    assert "11. Custodian" in str(err.value) and "Recall@1 against N & chance" in str(err.value)
    # a formula MathJax had not typeset is printed as its TeX; a "\\frac" in running text (a code span) is not one
    monkeypatch.setattr(pdf, "pdf_text", lambda path: text + "no \\frac left in the text")
    assert pdf.check_pdf(tmp_path / "x.pdf", single, root)["formulas"] == 2
    monkeypatch.setattr(pdf, "pdf_text", lambda path: text + "\\[ \\text{chance}(K, N) = \\frac{\\min(K, N)}{N}. \\]")
    with pytest.raises(AssertionError, match="left as TeX"):
        pdf.check_pdf(tmp_path / "x.pdf", single, root)
    (single / "index.html").write_text("<p>no figure has a caption yet</p>")
    monkeypatch.setattr(pdf, "pdf_text", lambda path: text)
    assert pdf.check_pdf(tmp_path / "x.pdf", single, root)["captions"] == 0  # nothing to check yet, no failure


def test_normalize_undoes_smart_quotes_dashes_ligatures_and_hyphenation():
    from relink_lib.pipeline.pdf import normalize

    assert normalize("The custodian\u2019s  decision \u2013 e\ufb03cient re-\nlinkage") == (
        "the custodian's decision - efficient relinkage"
    )


def test_chapter_titles_of_the_real_book():
    from relink_lib.pipeline.pdf import chapter_titles

    titles = chapter_titles(ROOT)
    chapters = [e for e in titles if e.startswith("notebooks/")]
    assert len(chapters) == 12 and titles["book/provenance"] == "Provenance"


def test_browser_problems_for_wide_tables_the_dark_theme_and_missing_downloads(tmp_path):
    from relink_lib.pipeline.browser import broken_downloads, check_script, page_problems

    script = check_script()
    assert "darkCheck" in script and "content_width" in script and "%(" not in script
    clean = {
        "math": 0,
        "typeset": 0,
        "mathjax": True,
        "raw_tex": [],
        "reprs": [],
        "wide_tables": [],
        "page_overflow_px": 0,
        "images": 1,
        "broken_images": [],
        "links": [],
        "dark": {"page_luminance": 0.01, "low_contrast": [], "transparent_figures": []},
    }
    ok = {"title": "t", "findings": clean, "console_errors": [], "screenshot": "x.png", "dark_screenshot": "d.png"}
    assert page_problems("p.html", ok) == []
    bad = dict(
        clean,
        wide_tables=["init opt. lr (912 px in a 760 px column, scrolls sideways)"],
        dark={"page_luminance": 0.9, "low_contrast": ["0.25 (contrast 1.20)"], "transparent_figures": ["a.png"]},
    )
    text = "; ".join(
        page_problems("p.html", dict(ok, findings=bad, dark_screenshot=None, broken_downloads=["../_downloads/x"]))
    )
    for needle in (
        "wider than the content column",
        "dark theme did not apply",
        "hard to read in the dark theme",
        "transparent figures",
        "no dark-theme screenshot",
        "missing from the build",
    ):
        assert needle in text
    html = tmp_path / "html"
    (html / "_downloads" / "ab").mkdir(parents=True)
    (html / "_downloads" / "ab" / "ci_audit.json").write_text("{}")
    links = ["../_downloads/ab/ci_audit.json", "../_downloads/cd/ci_audit.csv", "https://example.org/x", "#top"]
    assert broken_downloads(html, "notebooks/04_audit.html", links) == ["../_downloads/cd/ci_audit.csv"]


def test_the_dark_query_switches_the_served_page(tmp_path):
    import urllib.request

    from relink_lib.pipeline.browser import DARK_QUERY, serve

    (tmp_path / "p.html").write_text("<html><head><title>t</title></head><body>x</body></html>")
    with serve(tmp_path) as base:
        light = urllib.request.urlopen(f"{base}/p.html").read().decode()
        dark = urllib.request.urlopen(f"{base}/p.html?{DARK_QUERY}").read().decode()
    assert "data-theme" not in light
    assert dark.index("dataset.theme='dark'") < dark.index("<title>")  # before the theme's own scripts
