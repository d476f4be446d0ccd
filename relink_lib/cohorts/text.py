"""Report text: section parsing (MIMIC-CXR free text), whitespace normalisation, text composition."""

from __future__ import annotations

import re
import textwrap

TEXT_MODES: tuple[str, ...] = ("findings+impression", "impression", "findings", "longer")
"""How ``text`` is built from the sections: both joined (default), one of them, or the longer one."""

EXCLUDED_SECTIONS: tuple[str, ...] = (
    "EXAMINATION",
    "INDICATION",
    "HISTORY",
    "COMPARISON",
    "TECHNIQUE",
    "CLINICAL HISTORY",
    "REASON FOR EXAMINATION",
    "NOTIFICATION",
    "WET READ",
    "FINAL REPORT",
    "ADDENDUM",
)
"""Header sections that never enter ``text``."""

_HEADER = re.compile(r"^\s*([A-Z][A-Z /&()-]{2,40}?)\s*:", re.MULTILINE)


def normalise_whitespace(text: str) -> str:
    """Collapse runs of whitespace (including wrapped lines) to single spaces and strip."""
    return " ".join(str(text).split())


def parse_sections(report: str) -> dict[str, str]:
    """Split a free-text report into ``{SECTION NAME: normalised text}`` at upper-case ``NAME:`` headers.

    Text before the first header is returned under ``""``. Later duplicates of a section are appended.
    """
    out: dict[str, str] = {}
    matches = list(_HEADER.finditer(report))
    starts = [m.start() for m in matches] + [len(report)]
    lead = normalise_whitespace(report[: starts[0]])
    if lead:
        out[""] = lead
    for m, end in zip(matches, starts[1:]):
        name = m.group(1).strip()
        body = normalise_whitespace(report[m.end() : end])
        out[name] = (out[name] + " " + body).strip() if name in out else body
    return out


def findings_impression(report: str) -> tuple[str, str]:
    """The FINDINGS and IMPRESSION sections of a free-text report (empty strings when absent)."""
    sec = parse_sections(report)
    return sec.get("FINDINGS", ""), sec.get("IMPRESSION", "")


def compose_text(findings: str, impression: str, mode: str = "findings+impression") -> str:
    """Build the report ``text`` from its sections according to ``mode`` (one of ``TEXT_MODES``)."""
    findings, impression = normalise_whitespace(findings or ""), normalise_whitespace(impression or "")
    if mode == "findings+impression":
        return " ".join(p for p in (findings, impression) if p)
    if mode == "impression":
        return impression
    if mode == "findings":
        return findings
    if mode == "longer":
        return findings if len(findings) >= len(impression) else impression
    raise ValueError(f"text={mode!r}: expected one of {list(TEXT_MODES)}")


def wrap_report_section(text: str, width: int = 72, indent: str = " ") -> str:
    """Wrap a section body like MIMIC-CXR's report files (leading space, ~72 columns)."""
    return "\n".join(
        textwrap.wrap(
            text,
            width=width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
    )
