"""Command line: ``python -m relink_lib <command>`` (the Makefile calls these).

- ``book --profile P``: execute every chapter of ``_toc.yml`` (skipping unchanged ones), build ``_build/html``.
- ``run NOTEBOOK --profile P``: execute one chapter notebook.
- ``html --profile P``: build the HTML book from already executed notebooks.
- ``baselines``: regenerate the nbval baselines under ``tests/nbval/`` from the ci profile.
- ``paper-dry-run``: every chapter on the ``paper`` profile against synthetic data exported in the official layouts.
- ``nbval``: re-execute the baselines with nbval and compare the tagged metric cells.
- ``browser-check``: open the built pages in headless Chromium (title, figure, console errors, screenshot).
- ``pdf --profile P [--no-check]``: the whole book as one PDF (single-page HTML printed by headless Chromium,
  ``relink_lib.pipeline.pdf``), then its check with ``pdftotext``; needs the chapters executed on ``P``.
- ``features --profile P [--shard K/N | --merge | --status] [--rungs ...] [--splits ...]``: feature extraction by
  shard for job arrays (``relink_lib.pipeline.shards``).

Each command imports its pipeline modules when it runs (lazily, on purpose): the command line
starts without loading papermill, jupytext or the models that only other commands need.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .pipeline.shards import add_arguments as add_feature_arguments
from .profiles import PROFILE_NAMES, get_profile, project_root, validate_overrides


def _overrides(text: str | None, profile: str | None = None) -> dict[str, Any]:
    """Parse ``--overrides`` and validate it at every depth against ``profile`` (before any kernel starts)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise SystemExit(
            f'--overrides: expected a JSON object, e.g. \'{{"audit": {{"n_boot": 10}}}}\' ({err})'
        ) from err
    if not isinstance(value, dict):
        raise SystemExit("--overrides: expected a JSON object")
    if profile is not None:
        try:
            validate_overrides(profile, value)
        except ValueError as err:
            raise SystemExit(f"--{err}") from err
    return value


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m relink_lib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add_profile(p: argparse.ArgumentParser) -> None:
        p.add_argument("--profile", default="default", choices=PROFILE_NAMES)
        p.add_argument("--overrides", default=None, help="JSON object deep-merged into the profile's parameters")

    p_book = sub.add_parser("book", help="execute every chapter and build the HTML book")
    add_profile(p_book)
    p_book.add_argument("--force", action="store_true", help="re-execute notebooks even when unchanged")
    p_book.add_argument("--no-html", action="store_true", help="execute only, do not build HTML")
    p_run = sub.add_parser("run", help="execute one chapter notebook")
    p_run.add_argument("notebook", type=Path)
    add_profile(p_run)
    p_run.add_argument("--force", action="store_true")
    p_html = sub.add_parser("html", help="build the HTML book from executed notebooks")
    add_profile(p_html)
    sub.add_parser("baselines", help="regenerate the nbval baselines (ci profile)")
    sub.add_parser(
        "paper-dry-run", help="run every chapter on the paper profile against synthetic data in the official layouts"
    )
    p_nbval = sub.add_parser("nbval", help="compare the ci-profile notebooks against their baselines")
    p_nbval.add_argument("pytest_args", nargs="*")
    p_browser = sub.add_parser("browser-check", help="open the built book in headless Chromium")
    p_browser.add_argument("--html", type=Path, default=project_root() / "_build" / "html")
    p_pdf = sub.add_parser("pdf", help="print the whole book to one PDF (headless Chromium) and check it")
    add_profile(p_pdf)
    p_pdf.add_argument("--no-check", action="store_true", help="skip the pdftotext check of titles and captions")
    p_features = sub.add_parser("features", help="extract features by shard (job arrays), merge, status")
    add_profile(p_features)
    add_feature_arguments(p_features)

    args = parser.parse_args(argv)
    root = project_root()
    # each command imports its pipeline modules here, lazily (see the module docstring)
    if args.command in ("book", "run"):
        from .pipeline.execute import execute_book, execute_notebook
        from .pipeline.toc import chapter_notebooks

        start = time.perf_counter()
        overrides = _overrides(args.overrides, args.profile)
        if args.profile == "paper":
            from .pipeline.preflight import PreflightError, check_paper_inputs

            try:
                check_paper_inputs(get_profile("paper", overrides))
            except PreflightError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
        if args.command == "run":
            run = execute_notebook(args.notebook, args.profile, force=args.force, overrides=overrides)
            print(f"{run.name}: {run.status} ({run.wall_s:.1f} s) -> {run.output}")
            return 0
        execute_book(chapter_notebooks(root), args.profile, force=args.force, overrides=overrides)
        if not args.no_html:
            from .pipeline.book import build_html

            html = build_html(args.profile, root)
            print(f"book ({args.profile}) built at {html / 'index.html'}")
        print(f"total wall time {time.perf_counter() - start:.1f} s")
        return 0
    if args.command == "html":
        from .pipeline.book import build_html

        print(build_html(args.profile, root) / "index.html")
        return 0
    if args.command == "baselines":
        from .pipeline.baselines import write_baselines

        for path in write_baselines(root):
            print(f"baseline written: {path.relative_to(root)}")
        return 0
    if args.command == "paper-dry-run":
        from .pipeline.dryrun import run_dry_run

        runs = run_dry_run(root)
        print(
            f"paper dry run: {len(runs)} chapters executed on the paper profile "
            "against synthetic data in the official layouts"
        )
        return 0
    if args.command == "nbval":
        from .pipeline.baselines import run_nbval

        return run_nbval(root, args.pytest_args)
    if args.command == "features":
        from .pipeline.preflight import PreflightError, check_paper_inputs
        from .pipeline.shards import run as run_features

        params = get_profile(args.profile, _overrides(args.overrides, args.profile))
        if args.profile == "paper":
            try:
                check_paper_inputs(params)
            except PreflightError as err:
                print(f"error: {err}", file=sys.stderr)
                return 2
        return run_features(args, params)
    if args.command == "pdf":
        from .pipeline.pdf import build_pdf

        report = build_pdf(args.profile, root, check=not args.no_check)
        print(json.dumps(report, indent=1))
        return 0
    if args.command == "browser-check":
        from .pipeline.browser import check_book

        report = check_book(args.html)
        print(json.dumps(report, indent=1))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
