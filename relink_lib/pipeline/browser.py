"""A real-browser check of the built book: headless Chromium on a loopback HTTP server, network off.

Every page of ``_toc.yml`` (and ``index.html``) is loaded in Chromium with every host but
127.0.0.1 unresolvable, so nothing can come from a CDN. The server injects a small script into
each page that waits for MathJax to finish and then records, in the DOM, what the check needs:

- the math elements Sphinx wrote and how many MathJax typeset (every one must be);
- raw TeX left in the visible text (``\\(``, ``\\[``, ``$$``, ``\\frac`` ...: none allowed);
- Python reprs in cell outputs (``Text(``, ``<Figure size`` ...: none allowed);
- tables wider than the content column at the check's 1,280 px window (none allowed, even one
  that would scroll inside the column: a reader on a laptop would not see its last columns),
  and horizontal overflow of the page;
- images that failed to load, and the download links of the page;
- the **dark theme** (the pydata theme's ``data-theme="dark"``, switched on in the same page):
  that it applies (a dark page background), that every table's text keeps a contrast of at
  least :data:`MIN_DARK_CONTRAST` against its background, and that no figure is transparent
  over a dark background;
- printed text outputs wider than the column (reported as notes, not failures).

Console errors come from Chromium's log. A screenshot of every page lands in
``_build/html/_screenshots/`` and one in the dark theme in ``_build/html/_screenshots/dark/``
(the server switches a page to dark when its URL asks ``?theme=dark``). Pages listed in
``_build/html/_downloads.json`` (written by :mod:`relink_lib.pipeline.book`) must link each of
their downloads, and every linked download must exist in the build.
"""

from __future__ import annotations

import functools
import html as htmlmod
import http.server
import json
import re
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import unquote, urljoin, urlsplit

from ..profiles import project_root
from .toc import toc_entries

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    # the network is off: only the loopback server resolves (a CDN request fails)
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)
WINDOW = "1280,2000"
RESULT_ID = "relink-check-result"
MIN_DARK_CONTRAST = 3.0
"""Least contrast ratio (WCAG's formula) of a table's text against its background in the dark theme."""
DARK_QUERY = "theme=dark"
"""A page URL with this query is served in the dark theme (:data:`DARK_SCRIPT` injected at the top of its head)."""
DARK_SCRIPT = (
    "<script>(function(){var d=document.documentElement;d.dataset.theme='dark';d.dataset.mode='dark';"
    "try{localStorage.setItem('theme','dark');localStorage.setItem('mode','dark');}catch(e){}})();</script>"
)
"""Switches the pydata theme to dark before its own script reads the stored mode."""

#: Python reprs that must never reach a rendered cell output.
REPR_PATTERNS = (
    r"\bText\(",
    r"<Figure size",
    r"<matplotlib\.",
    r"<Axes[:\s]",
    r"\bLine2D\(",
    r"<IPython\.core",
    r"<pandas\.io\.formats\.style\.Styler",
)

CHECK_SCRIPT = """
<script>
(function () {
  var REPRS = %(reprs)s;
  var TEX = /\\\\\\(|\\\\\\)|\\\\\\[|\\\\\\]|\\$\\$|\\\\(frac|begin|min|text|mathrm|sum|gamma|kappa)\\b/;
  function skip(node) {
    for (var el = node.parentElement; el; el = el.parentElement) {
      var tag = el.tagName.toLowerCase();
      if (tag === 'script' || tag === 'style' || tag === 'pre' || tag === 'code' || tag === 'textarea' ||
          tag.indexOf('mjx-') === 0) return true;
    }
    return false;
  }
  function scrollsX(el) {
    var o = getComputedStyle(el).overflowX;
    return (o === 'auto' || o === 'scroll') && el.clientWidth < el.scrollWidth + 1;
  }
  function rgba(text) {
    var m = (text || '').match(/rgba?\\(([^)]+)\\)/);
    if (!m) return {r: 0, g: 0, b: 0, a: 0};
    var p = m[1].split(',').map(function (x) { return parseFloat(x); });
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
  }
  function luminance(c) {
    function ch(v) { v = v / 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }
    return 0.2126 * ch(c.r) + 0.7152 * ch(c.g) + 0.0722 * ch(c.b);
  }
  function background(el) {
    for (; el; el = el.parentElement) {
      var c = rgba(getComputedStyle(el).backgroundColor);
      if (c.a > 0.5) return c;
    }
    return {r: 255, g: 255, b: 255, a: 1};
  }
  function contrast(a, b) {
    var x = luminance(a), y = luminance(b);
    return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05);
  }
  // the dark theme switched on in place: does it apply, are tables legible, is any figure transparent on it?
  function darkCheck(article) {
    var html = document.documentElement, before = html.getAttribute('data-theme');
    html.setAttribute('data-theme', 'dark');
    var d = {page_luminance: Math.round(luminance(background(article)) * 1000) / 1000, low_contrast: [], transparent_figures: []};
    article.querySelectorAll('table').forEach(function (t) {
      var cells = t.querySelectorAll('th, td');
      for (var i = 0; i < Math.min(cells.length, 60); i++) {
        var c = cells[i];
        if (!(c.innerText || '').trim()) continue;
        var ratio = contrast(rgba(getComputedStyle(c).color), background(c));
        if (ratio < %(min_contrast)s) {
          d.low_contrast.push((c.innerText || '').trim().slice(0, 40) + ' (contrast ' + ratio.toFixed(2) + ')');
          break;
        }
      }
    });
    article.querySelectorAll('img').forEach(function (img) {
      if (!(img.complete && img.naturalWidth > 0)) return;
      try {
        var cv = document.createElement('canvas');
        cv.width = 1; cv.height = 1;
        var ctx = cv.getContext('2d');
        ctx.drawImage(img, 0, 0, 1, 1, 0, 0, 1, 1);
        var alpha = ctx.getImageData(0, 0, 1, 1).data[3];
        if (alpha < 250 && luminance(background(img)) < 0.5) d.transparent_figures.push(img.getAttribute('src'));
      } catch (e) { /* an image the canvas may not read: not a figure of ours */ }
    });
    if (before === null) html.removeAttribute('data-theme'); else html.setAttribute('data-theme', before);
    return d;
  }
  function check() {
    var r = {};
    var article = document.querySelector('article.bd-article') || document.querySelector('main') || document.body;
    var maths = article.querySelectorAll('.math');
    r.math = maths.length;
    r.typeset = Array.prototype.filter.call(maths, function (m) { return !!m.querySelector('mjx-container'); }).length;
    r.mathjax = !!(window.MathJax && window.MathJax.version);
    r.raw_tex = [];
    var walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT, null);
    for (var n = walker.nextNode(); n; n = walker.nextNode()) {
      if (TEX.test(n.nodeValue) && !skip(n)) r.raw_tex.push(n.nodeValue.trim().slice(0, 80));
    }
    r.reprs = [];
    article.querySelectorAll('.cell_output, .output').forEach(function (o) {
      var t = o.innerText || '';
      REPRS.forEach(function (p) { var m = t.match(new RegExp(p)); if (m) r.reprs.push(t.slice(Math.max(0, m.index - 20), m.index + 40)); });
    });
    var right = article.getBoundingClientRect().right;
    // every table must fit the content column: one that would scroll inside it still hides its last columns
    var column = article.getBoundingClientRect();
    r.content_width = Math.round(column.width);
    r.wide_tables = [];
    article.querySelectorAll('table').forEach(function (t) {
      var width = Math.max(t.scrollWidth, t.getBoundingClientRect().width);
      var left = t.getBoundingClientRect().left;
      if (width <= column.width + 1 && left + width <= right + 1) return;
      var scrolls = false;
      for (var el = t.parentElement; el && el !== article; el = el.parentElement) { if (scrollsX(el)) scrolls = true; }
      r.wide_tables.push((t.innerText || '').trim().split('\\n')[0].slice(0, 60) + ' (' + Math.round(width) +
        ' px in a ' + Math.round(column.width) + ' px column' + (scrolls ? ', scrolls sideways' : '') + ')');
    });
    r.wide_text_outputs = [];
    article.querySelectorAll('.cell_output pre, .output pre').forEach(function (pre) {
      if (pre.scrollWidth > pre.clientWidth + 1) r.wide_text_outputs.push((pre.innerText || '').trim().split('\\n')[0].slice(0, 80));
    });
    r.page_overflow_px = Math.max(0, document.documentElement.scrollWidth - window.innerWidth);
    // a figure whose legend covers plotted points (relink_lib.floats.Float.legend_overlaps)
    r.legend_overlaps = Array.prototype.map.call(article.querySelectorAll('figure.relink-legend-overlap'),
      function (f) { return f.id; });
    // every figure and results table of a cell output is a numbered float (relink_lib.floats)
    r.unnumbered = [];
    article.querySelectorAll('.cell_output img, .cell_output table.relink').forEach(function (el) {
      var fig = el.closest('figure');
      if (fig && fig.querySelector('.caption-number')) return;
      r.unnumbered.push(el.tagName.toLowerCase() === 'img' ? 'figure ' + (el.getAttribute('src') || '') :
        'table "' + (el.innerText || '').trim().split('\\n')[0].slice(0, 40) + '"');
    });
    r.images = article.querySelectorAll('img').length;
    r.broken_images = Array.prototype.filter.call(article.querySelectorAll('img'), function (i) {
      return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.getAttribute('src'); });
    r.links = Array.prototype.map.call(article.querySelectorAll('a[href]'), function (a) { return a.getAttribute('href'); });
    r.dark = darkCheck(article);
    var out = document.createElement('script');
    out.type = 'application/json';
    out.id = '%(result_id)s';
    out.textContent = JSON.stringify(r);
    document.body.appendChild(out);
  }
  window.addEventListener('load', function () {
    var ready = (window.MathJax && MathJax.startup && MathJax.startup.promise) || Promise.resolve();
    ready.then(check, check);
  });
})();
</script>
"""


def find_chromium() -> str:
    """Path to a Chromium binary (Debian package ``chromium``); a clear error when missing."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError(
        "no Chromium found on PATH: install the Debian package `chromium` (apt-get install chromium)"
    )


def check_script() -> str:
    """The ``<script>`` the check server injects before ``</body>`` of every HTML page."""
    return CHECK_SCRIPT % {
        "reprs": json.dumps(list(REPR_PATTERNS)),
        "result_id": RESULT_ID,
        "min_contrast": MIN_DARK_CONTRAST,
    }


@contextmanager
def serve(directory: Path, inject: str | None = None) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 at a free port for the duration of the block.

    ``inject``: HTML inserted before ``</body>`` of every ``.html`` response (the check script).
    """
    directory = Path(directory)

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
            pass

        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            path = self.translate_path(self.path)
            dark = DARK_QUERY in urlsplit(self.path).query
            if (inject is None and not dark) or not path.endswith(".html") or not Path(path).is_file():
                return super().do_GET()
            text = Path(path).read_text(encoding="utf-8")
            if dark:
                text = re.sub(r"(<head[^>]*>)", lambda m: m.group(1) + DARK_SCRIPT, text, count=1)
            if inject is not None:
                text = text.replace("</body>", inject + "</body>", 1) if "</body>" in text else text + inject
            body = text.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class QuietServer(http.server.ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # the browser closing a connection early (broken pipe) is not a page error

    handler = functools.partial(QuietHandler, directory=str(directory))
    server = QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _chromium(url: str, *extra: str, timeout: int = 120) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="relink-chromium-") as profile:
        cmd = [
            find_chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            f"--window-size={WINDOW}",
            "--virtual-time-budget=10000",
            *extra,
            url,
        ]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def console_errors(stderr: str) -> list[str]:
    """Console messages at error level (and uncaught exceptions) in Chromium's stderr log."""
    errors = []
    for line in stderr.splitlines():
        if "CONSOLE" in line and (":ERROR:" in line or "Uncaught" in line or "Error" in line):
            errors.append(line.strip())
        elif "Uncaught" in line:
            errors.append(line.strip())
    return errors


def page_findings(dom: str) -> dict[str, Any] | None:
    """The check script's record from a dumped DOM (``None`` when the script did not finish)."""
    match = re.search(rf'<script type="application/json" id="{RESULT_ID}">(.*?)</script>', dom, flags=re.S)
    return json.loads(htmlmod.unescape(match.group(1))) if match else None


def page_notes(result: dict[str, Any]) -> list[str]:
    """What a reader would stumble on but the check does not fail: printed text outputs that scroll sideways
    (a printed table whose columns are cut off belongs in :func:`relink_lib.tables.html_table`)."""
    found = result.get("findings") or {}
    wide = found.get("wide_text_outputs") or []
    return [f"{len(wide)} printed output(s) wider than the column, e.g. {wide[:2]}"] if wide else []


def page_problems(page: str, result: dict[str, Any], downloads: Sequence[str] = ()) -> list[str]:
    """What is wrong with one checked page (empty when it passes)."""
    problems = []
    if not result.get("title"):
        problems.append("no <title>")
    found = result.get("findings")
    if found is None:
        problems.append("the check script did not finish (a page script failed or MathJax never became ready)")
    else:
        if found["math"] and (not found["mathjax"] or found["typeset"] < found["math"]):
            problems.append(
                f"math not typeset: {found['typeset']} of {found['math']} formulas (MathJax loaded: {found['mathjax']})"
            )
        if found["raw_tex"]:
            problems.append(f"raw TeX left in the page: {found['raw_tex'][:3]}")
        if found["reprs"]:
            problems.append(f"Python reprs in outputs: {found['reprs'][:3]}")
        if found["wide_tables"]:
            problems.append(f"tables wider than the content column: {found['wide_tables'][:3]}")
        if found["page_overflow_px"] > 1:
            problems.append(f"the page scrolls sideways by {found['page_overflow_px']} px")
        if found["broken_images"]:
            problems.append(f"images that did not load: {found['broken_images'][:3]}")
        if found.get("legend_overlaps"):
            problems.append(f"legends over plotted data in figures {found['legend_overlaps'][:3]}")
        if found.get("unnumbered"):
            problems.append(f"figures or tables without a number and caption: {found['unnumbered'][:3]}")
        missing = [d for d in downloads if not any(link.endswith(d) for link in found["links"])]
        if missing:
            problems.append(f"no link to its download(s) {missing}")
        dark = found.get("dark")
        if dark is not None:
            if dark.get("page_luminance", 0) > 0.2:
                problems.append(f"the dark theme did not apply (page background luminance {dark['page_luminance']})")
            if dark.get("low_contrast"):
                problems.append(f"tables hard to read in the dark theme: {dark['low_contrast'][:3]}")
            if dark.get("transparent_figures"):
                problems.append(f"transparent figures on the dark theme: {dark['transparent_figures'][:3]}")
    if result.get("broken_downloads"):
        problems.append(f"download links to files missing from the build: {result['broken_downloads'][:3]}")
    if result.get("console_errors"):
        problems.append(f"console errors: {result['console_errors'][:3]}")
    if not result.get("screenshot"):
        problems.append("no screenshot written")
    if "dark_screenshot" in result and not result["dark_screenshot"]:
        problems.append("no dark-theme screenshot written")
    return problems


def broken_downloads(html: Path, page: str, links: Sequence[str]) -> list[str]:
    """The page's links into ``_downloads/`` (Sphinx's download folder) whose file is not in the build ``html``."""
    out = []
    for link in links:
        target = urlsplit(urljoin(f"http://book/{page}", link))
        if target.netloc != "book" or "/_downloads/" not in target.path:
            continue
        if not (Path(html) / unquote(target.path.lstrip("/"))).is_file():
            out.append(link)
    return out


def check_page(base_url: str, page: str, screenshot: Path, dark_screenshot: Path | None = None) -> dict:
    """Load one page: title, the check script's findings, console errors; save a screenshot (and, with
    ``dark_screenshot``, one in the dark theme)."""
    url = f"{base_url}/{page}"
    dom = _chromium(url, "--dump-dom")
    title = re.search(r"<title>(.*?)</title>", dom.stdout, flags=re.S)
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    shot = _chromium(url, f"--screenshot={screenshot}")
    errors = console_errors(dom.stderr) + console_errors(shot.stderr)
    findings = page_findings(dom.stdout)
    out = {
        "page": page,
        "title": title.group(1).strip() if title else None,
        "images": findings["images"] if findings else 0,
        "findings": findings,
        "console_errors": errors,
        "screenshot": str(screenshot) if screenshot.exists() else None,
    }
    if dark_screenshot is not None:
        dark_screenshot.parent.mkdir(parents=True, exist_ok=True)
        dark = _chromium(f"{url}?{DARK_QUERY}", f"--screenshot={dark_screenshot}", "--force-dark-mode")
        errors += console_errors(dark.stderr)
        out["dark_screenshot"] = str(dark_screenshot) if dark_screenshot.exists() else None
    return out


def book_pages(html: Path, toc: Path | None = None) -> tuple[str, ...]:
    """``index.html`` and the HTML page of every toc entry of the build (``_pages.json``, else ``_toc.yml``)."""
    listed = Path(html) / "_pages.json"
    if toc is None and listed.exists():
        return tuple(json.loads(listed.read_text()))
    toc = toc or project_root() / "_toc.yml"
    pages = ["index.html"] + [f"{entry}.html" for entry in toc_entries(toc)]
    return tuple(dict.fromkeys(pages))


def check_book(html: Path, pages: Sequence[str] | None = None, workers: int = 2, dark: bool = True) -> dict:
    """Check the built book's pages; raise AssertionError naming every failing page and what is wrong.

    ``dark``: also screenshot every page in the dark theme (``_screenshots/dark/``)."""
    html = Path(html)
    if not (html / "index.html").exists():
        raise FileNotFoundError(f"{html / 'index.html'}: build the book first (make book PROFILE=ci)")
    pages = tuple(pages) if pages is not None else book_pages(html)
    for page in pages:
        if not (html / page).exists():
            raise FileNotFoundError(f"{html / page}: page missing from the built book")
    manifest = html / "_downloads.json"
    downloads = json.loads(manifest.read_text()) if manifest.exists() else {}
    report, failures = {}, []
    with serve(html, inject=check_script()) as base:

        def one(page: str) -> tuple[str, dict]:
            name = page.replace("/", "__").removesuffix(".html") + ".png"
            shot = html / "_screenshots" / name
            return page, check_page(base, page, shot, html / "_screenshots" / "dark" / name if dark else None)

        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for page, result in pool.map(one, pages):
                found = result.get("findings") or {}
                result["broken_downloads"] = broken_downloads(html, page, found.get("links") or [])
                result["problems"] = page_problems(page, result, [Path(d).name for d in downloads.get(page, [])])
                result["notes"] = page_notes(result)
                report[page] = result
                if result["problems"]:
                    failures.append(f"{page}: " + "; ".join(result["problems"]))
    if failures:
        raise AssertionError("browser check failed:\n" + "\n".join(failures))
    return report
