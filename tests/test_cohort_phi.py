"""PHI guard: no report text of a private cohort reaches a rendered page."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

from relink_lib.cohorts import Cohort, export, load_mimic_cxr, make_synthetic_cohort  # noqa: E402
from relink_lib.cohorts.phi import (
    PrivateTextError,
    display_frame,
    render_pairs_html,  # noqa: E402
    report_text_for_display,
    show_pairs,
)


@pytest.fixture(scope="module")
def public() -> Cohort:
    return make_synthetic_cohort(30, image_size=32, seed=9)


@pytest.fixture(scope="module")
def private(tmp_path_factory, public: Cohort) -> Cohort:
    """A credentialed-style cohort: the real MIMIC loader on exported files (private by default)."""
    root = export(public, tmp_path_factory.mktemp("phi") / "root")
    cohort = load_mimic_cxr(root)
    assert not cohort.public
    return cohort


def _fragments(cohort: Cohort, rows: list[int]) -> list[str]:
    """Every report's text and each of its sentences long enough to be identifying."""
    out = []
    for r in rows:
        text = cohort.pairs["text"].iloc[r]
        out.append(text)
        out += [s.strip() for s in re.split(r"(?<=\.)\s", text) if len(s.strip()) >= 25]
    return out


def test_text_helpers_refuse_private(private: Cohort, public: Cohort) -> None:
    with pytest.raises(PrivateTextError, match="not public"):
        report_text_for_display(private, 0)
    with pytest.raises(PrivateTextError):
        show_pairs(private, [0, 1], show_text=True)
    assert report_text_for_display(public, 0) == public.pairs["text"].iloc[0]
    frame = display_frame(private, [0, 1, 2])
    assert not {"text", "findings", "impression"} & set(frame.columns) and "Edema" in frame.columns
    assert "text" in display_frame(public, [0]).columns


def test_rendered_page_of_private_cohort_holds_none_of_its_text(
    tmp_path: Path, private: Cohort, public: Cohort
) -> None:
    rows = list(range(6))
    page = render_pairs_html(private, rows, title="private fixture")
    (tmp_path / "page.html").write_text(page)
    fragments = _fragments(private, rows)
    assert len(fragments) > 6
    leaked = [f for f in fragments if f in page]
    assert not leaked, f"{len(leaked)} report fragments leaked into the page"
    assert "withheld" in page
    # control: the same page for the public twin shows its text, so the check above can fail
    public_page = render_pairs_html(public, rows)
    assert any(s in public_page for s in _fragments(public, rows)[len(rows) :])
