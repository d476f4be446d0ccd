"""A real-browser check of the built book: headless Chromium on a loopback HTTP server.

For each page it loads the DOM (title, figures), collects console errors from Chromium's log
and writes a screenshot into the build folder (``_build/html/_screenshots/``).
"""
from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


def find_chromium() -> str:
    """Path to a Chromium binary (Debian package ``chromium``); a clear error when missing."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("no Chromium found on PATH: install the Debian package `chromium` (apt-get install chromium)")


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    """Serve ``directory`` on 127.0.0.1 at a free port for the duration of the block."""
    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
            pass

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
        cmd = [find_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
               "--virtual-time-budget=5000", *extra, url]
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


def check_page(base_url: str, page: str, screenshot: Path) -> dict:
    """Load one page: its title, number of images, console errors; save a screenshot."""
    url = f"{base_url}/{page}"
    dom = _chromium(url, "--dump-dom")
    title = re.search(r"<title>(.*?)</title>", dom.stdout, flags=re.S)
    images = len(re.findall(r"<img\b", dom.stdout))
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    shot = _chromium(url, f"--screenshot={screenshot}", "--window-size=1280,1800")
    return {
        "page": page,
        "title": title.group(1).strip() if title else None,
        "images": images,
        "console_errors": console_errors(dom.stderr) + console_errors(shot.stderr),
        "screenshot": str(screenshot) if screenshot.exists() else None,
    }


def check_book(html: Path, pages: tuple[str, ...] = ("index.html", "notebooks/01_threat_model.html")) -> dict:
    """Check the built book's pages; raise AssertionError naming the page and what is wrong."""
    html = Path(html)
    if not (html / "index.html").exists():
        raise FileNotFoundError(f"{html / 'index.html'}: build the book first (make book PROFILE=ci)")
    report = {}
    with serve(html) as base:
        for page in pages:
            if not (html / page).exists():
                raise FileNotFoundError(f"{html / page}: page missing from the built book")
            shot = html / "_screenshots" / (Path(page).stem + ".png")
            result = check_page(base, page, shot)
            problems = []
            if not result["title"]:
                problems.append("no <title>")
            if page != "index.html" and result["images"] < 1:
                problems.append("no figure (<img>) on the page")
            if result["console_errors"]:
                problems.append(f"console errors: {result['console_errors']}")
            if not result["screenshot"]:
                problems.append("no screenshot written")
            if problems:
                raise AssertionError(f"{page}: " + "; ".join(problems))
            report[page] = result
    return report
