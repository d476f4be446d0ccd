"""The whole book as one PDF, offline: jupyter-book's single-page HTML printed by headless Chromium.

``python -m relink_lib pdf --profile P`` (``make pdf``), after the book of profile ``P`` was executed:

1. :func:`relink_lib.pipeline.book.build_singlehtml` builds ``_build/singlehtml/index.html`` from the
   same staged sources as the HTML book (every page in toc order on one page);
2. :func:`print_pdf` serves it on a loopback HTTP server (every other host unresolvable, as in the
   browser check: MathJax comes from the book's own ``_static/mathjax``) and prints it with Debian's
   Chromium, ``--headless --no-pdf-header-footer --print-to-pdf``; ``--virtual-time-budget`` lets the
   page's scripts (MathJax's typesetting) finish before the page is printed. The book's CSS
   (``book/_static/relink.css``) keeps figures and tables whole (``break-inside: avoid``) and drops
   the navigation from the printed page;
3. :func:`check_pdf` reads the PDF back with ``pdftotext`` (poppler-utils) and requires every chapter
   title of ``_toc.yml`` and every figure caption of the single-page HTML (its ``<figcaption>``
   elements; none yet is no failure) in its text, and none of its formulas left as TeX source (MathJax
   had typeset them when the page was printed).

The PDF lands in ``_build/pdf/<profile>-relink.pdf`` and, when the HTML book of the same profile is
built, as ``_build/html/relink.pdf``, where the intro page links it.
"""

from __future__ import annotations

import html as htmlmod
import re
import shutil
import subprocess
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any, Iterable

from ..profiles import project_root
from .book import PDF_NAME, build_singlehtml
from .browser import CHROMIUM_FLAGS, find_chromium, serve
from .toc import toc_entries

VIRTUAL_TIME_BUDGET_MS = 60_000
"""Virtual time Chromium gives the page's scripts (MathJax) before it prints."""
PRINT_TIMEOUT_S = 600
MATH_ELEMENT = re.compile(r'<(span|div) class="math[^"]*"[^>]*>(.*?)</\1>', flags=re.S)


def find_pdftotext() -> str:
    """Path to ``pdftotext`` (Debian package ``poppler-utils``); a clear error when missing."""
    path = shutil.which("pdftotext")
    if path:
        return path
    raise FileNotFoundError("no pdftotext on PATH: install the Debian package `poppler-utils`")


def print_pdf(
    single: Path,
    pdf: Path,
    *,
    budget_ms: int = VIRTUAL_TIME_BUDGET_MS,
    timeout: int = PRINT_TIMEOUT_S,
) -> Path:
    """Print ``single/index.html`` (a single-page HTML build) to ``pdf`` with headless Chromium, network off."""
    single, pdf = Path(single), Path(pdf)
    if not (single / "index.html").exists():
        raise FileNotFoundError(f"{single / 'index.html'}: build the single-page HTML first (build_singlehtml)")
    pdf.parent.mkdir(parents=True, exist_ok=True)
    if pdf.exists():
        pdf.unlink()
    with serve(single) as base, tempfile.TemporaryDirectory(prefix="relink-chromium-") as profile:
        cmd = [
            find_chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            f"--virtual-time-budget={int(budget_ms)}",
            "--run-all-compositor-stages-before-draw",
            f"{base}/index.html",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if not pdf.exists() or pdf.stat().st_size == 0:
        raise RuntimeError(f"Chromium wrote no PDF (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return pdf


def pdf_text(pdf: Path) -> str:
    """The text of ``pdf`` (``pdftotext``, UTF-8, reading order)."""
    proc = subprocess.run(
        [find_pdftotext(), "-enc", "UTF-8", str(pdf), "-"], capture_output=True, text=True, check=True
    )
    return proc.stdout


def normalize(text: str, keep_break_hyphens: bool = False) -> str:
    """Text compared across HTML and PDF: NFKC (ligatures), straight quotes and hyphens (Sphinx's smart quotes and
    dashes), words re-joined where a line break split them after a hyphen (the hyphen dropped, or kept with
    ``keep_break_hyphens``: "X-" + "ray"), whitespace collapsed, lower case."""
    text = unicodedata.normalize("NFKC", text).replace("\u00ad", "")
    for curly, plain in (("\u2019", "'"), ("\u2018", "'"), ("\u201c", '"'), ("\u201d", '"')):
        text = text.replace(curly, plain)
    text = re.sub(r"[\u2010-\u2015\u2212]", "-", text).replace("--", "-")
    text = re.sub(r"(\w)-[ \t]*\n\s*(\w)", r"\1-\2" if keep_break_hyphens else r"\1\2", text)
    return re.sub(r"\s+", " ", text).strip().lower()


def _plain_title(line: str) -> str:
    """A Markdown heading's text without its emphasis, code and link markup (``relink_lib`` keeps its ``_``)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", line)
    text = re.sub(r"\{[a-z]+\}`([^`<]*)(<[^>]*>)?`", r"\1", text)
    text = text.replace("`", "")
    return re.sub(r"(?<!\w)[*_]+|[*_]+(?!\w)", "", text).strip()


def page_title(path: Path) -> str | None:
    """The first level-1 heading of a chapter source: ``# # Title`` in a jupytext ``.py``, ``# Title`` in ``.md``."""
    pattern = r"^# # (.+)$" if path.suffix == ".py" else r"^# (.+)$"
    found = re.search(pattern, path.read_text(encoding="utf-8"), flags=re.M)
    return _plain_title(found.group(1)) if found else None


def chapter_titles(root: Path, toc: Path | None = None) -> dict[str, str]:
    """Toc entry -> its page title, for every entry of ``_toc.yml`` whose source has a level-1 heading."""
    root = Path(root)
    out = {}
    for entry in toc_entries(toc or root / "_toc.yml"):
        for suffix in (".py", ".md", ".ipynb"):
            path = root / f"{entry}{suffix}"
            if path.exists() and suffix != ".ipynb":
                title = page_title(path)
                if title:
                    out[entry] = title
                break
    return out


def figure_captions(html_file: Path) -> list[str]:
    """The text of every ``<figcaption>`` of a built HTML page, its number kept ("Figure 6.1 ..."), tags and the
    permalink anchor (shown as "¶" or "#" on hover, never printed) dropped."""
    text = Path(html_file).read_text(encoding="utf-8")
    out = []
    for raw in re.findall(r"<figcaption[^>]*>(.*?)</figcaption>", text, flags=re.S):
        raw = re.sub(r'<a class="headerlink"[^>]*>.*?</a>', " ", raw, flags=re.S)
        plain = htmlmod.unescape(re.sub(r"<[^>]+>", " ", raw))
        plain = re.sub(r"\s+", " ", plain).strip().rstrip("¶").strip()
        if plain:
            out.append(plain)
    return out


def math_sources(html_file: Path) -> list[str]:
    """The TeX of every formula Sphinx wrote into a built page (``class="math"`` elements, delimiters dropped)."""
    out = []
    for _, raw in MATH_ELEMENT.findall(Path(html_file).read_text(encoding="utf-8")):
        tex = htmlmod.unescape(re.sub(r"<[^>]+>", "", raw)).strip()
        tex = re.sub(r"^(\\\(|\\\[|\$\$)|(\\\)|\\\]|\$\$)$", "", tex).strip()
        if tex:
            out.append(tex)
    return out


def untypeset(formulas: Iterable[str], text: str) -> list[str]:
    """The formulas whose TeX source is in ``text`` (a PDF's): MathJax had not typeset them when the page was
    printed. Only TeX with markup (a command, braces, a sub- or superscript) is looked for: a plain ``N`` is in
    any text."""
    flat = re.sub(r"\s+", "", text)
    return [f for f in formulas if re.search(r"[\\{}^_]", f) and re.sub(r"\s+", "", f)[:40] in flat]


def _missing(needles: Iterable[str], text: str) -> list[str]:
    """The needles found in neither reading of ``text`` (a hyphen at a line break dropped, or kept), compared
    without spaces (``pdftotext`` puts spaces around inline code: "( relink_lib.cohorts )")."""
    readings = [r.replace(" ", "") for r in (normalize(text), normalize(text, keep_break_hyphens=True))]
    # pdftotext also joins a word hyphenated at a line break itself ("patient-level" -> "patientlevel"): compared
    # once more with every hyphen dropped on both sides
    unhyphenated = readings[0].replace("-", "")

    def found(needle: str) -> bool:
        flat = normalize(needle).replace(" ", "")
        return any(flat in r for r in readings) or flat.replace("-", "") in unhyphenated

    return [n for n in needles if not found(n)]


def check_pdf(pdf: Path, single: Path, root: Path | None = None, toc: Path | None = None) -> dict[str, Any]:
    """Check the printed book: every chapter title and every figure caption is in the PDF's text, no raw TeX.

    Raises ``AssertionError`` naming what is missing; returns what was checked (``titles``, ``captions``,
    ``formulas``, ``pages`` of text, ``chars``)."""
    root = Path(root) if root else project_root()
    text = pdf_text(pdf)
    titles = chapter_titles(root, toc)
    captions = figure_captions(Path(single) / "index.html")
    formulas = math_sources(Path(single) / "index.html")
    problems = []
    missing_titles = _missing(titles.values(), text)
    if missing_titles:
        problems.append(f"chapter titles missing from the PDF: {missing_titles}")
    missing_captions = _missing(captions, text)
    if missing_captions:
        problems.append(f"figure captions missing from the PDF: {missing_captions[:5]}")
    raw = untypeset(formulas, text)
    if raw:
        problems.append(f"formulas left as TeX in the PDF (MathJax had not typeset them when printed): {raw[:3]}")
    if problems:
        raise AssertionError("PDF check failed:\n" + "\n".join(problems))
    return {
        "titles": len(titles),
        "captions": len(captions),
        "formulas": len(formulas),
        "pages": text.count("\f"),
        "chars": len(text),
    }


def build_pdf(profile: str, root: Path | None = None, *, check: bool = True) -> dict[str, Any]:
    """Build the single-page HTML, print it to ``_build/pdf/<profile>-relink.pdf`` (copied to
    ``_build/html/relink.pdf`` when the HTML book of ``profile`` is there) and check it; returns paths and
    timings (seconds)."""
    root = Path(root) if root else project_root()
    t0 = time.perf_counter()
    single = build_singlehtml(profile, root)
    t1 = time.perf_counter()
    pdf = print_pdf(single, root / "_build" / "pdf" / f"{profile}-{PDF_NAME}")
    t2 = time.perf_counter()
    html = root / "_build" / "html"
    beside = None
    if (html / "PROFILE").exists() and (html / "PROFILE").read_text().strip() == profile:
        beside = html / PDF_NAME
        shutil.copy2(pdf, beside)
    report: dict[str, Any] = {
        "pdf": str(pdf),
        "in_html": str(beside) if beside else None,
        "bytes": pdf.stat().st_size,
        "singlehtml_s": round(t1 - t0, 1),
        "print_s": round(t2 - t1, 1),
    }
    if check:
        report["check"] = check_pdf(pdf, single, root)
        report["check_s"] = round(time.perf_counter() - t2, 1)
    report["total_s"] = round(time.perf_counter() - t0, 1)
    return report
