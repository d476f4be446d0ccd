"""PHI guard: display helpers that refuse report text of a non-public (credentialed) cohort.

Notebooks show pairs only through these helpers. For a private cohort they show images, ids and
labels, never ``text`` / ``findings`` / ``impression``; asking for the text raises
``PrivateTextError``.
"""

from __future__ import annotations

import html
import io
import textwrap
from typing import Iterable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..labels import CHEXPERT_LABELS
from .base import TEXT_COLUMNS, Cohort

WITHHELD = "[report text withheld: credentialed cohort]"

PRIVATE_DISPLAY_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "study_id",
    "dicom_id",
    "image_path",
    "split",
    "view",
    "site",
    "study_order",
    *CHEXPERT_LABELS,
)
"""The only columns :func:`display_frame` shows for a private cohort (an allow-list: any other
column, such as a free-text ``notes`` a user's CSV carried along, is never shown)."""


class PrivateTextError(PermissionError):
    """Report text of a non-public cohort was requested for display."""


def report_text_for_display(cohort: Cohort, i: int) -> str:
    """Report text of positional row ``i``; raises ``PrivateTextError`` unless ``cohort.public``."""
    if not cohort.public:
        raise PrivateTextError(f"cohort {cohort.name!r} is not public: its report text must not be displayed or logged")
    return str(cohort.pairs["text"].iloc[cohort._check_row(i)])


def display_frame(
    cohort: Cohort, rows: Iterable[int] | None = None, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """A table of ``rows`` for display.

    A public cohort shows ``columns`` (default all). A private cohort shows only the columns of
    :data:`PRIVATE_DISPLAY_COLUMNS` among them (ids, split, view, site, labels); report text and
    any column not on that list are left out.
    """
    frame = cohort.pairs if rows is None else cohort.pairs.iloc[list(rows)]
    if columns is not None:
        frame = frame[list(columns)]
    if not cohort.public:
        frame = frame[[c for c in frame.columns if c in PRIVATE_DISPLAY_COLUMNS and c not in TEXT_COLUMNS]]
    return frame.copy()


def _labels_line(row: pd.Series) -> str:
    pos = [l for l in CHEXPERT_LABELS if row[l] == 1.0]
    unc = [l for l in CHEXPERT_LABELS if row[l] == -1.0]
    return ", ".join(pos + [f"{l}?" for l in unc]) or "(no positive label)"


def show_pairs(
    cohort: Cohort, rows: Sequence[int], ncols: int = 3, text_chars: int = 260, show_text: bool | None = None
) -> Figure:
    """A matplotlib figure of image-report pairs of ``rows``: image, labels and (public cohorts only) the report.

    ``show_text=True`` on a private cohort raises ``PrivateTextError``; the default shows text
    only for public cohorts.
    """
    if show_text is None:
        show_text = cohort.public
    if show_text and not cohort.public:
        raise PrivateTextError(f"cohort {cohort.name!r} is not public: show_pairs(show_text=True) refused")
    rows = list(rows)
    nrows = int(np.ceil(len(rows) / ncols))
    fig, axes = plt.subplots(
        nrows, ncols * 2, figsize=(ncols * 4.6, nrows * 2.4), gridspec_kw={"width_ratios": [1, 1.3] * ncols}
    )
    axes = np.atleast_2d(axes)
    for ax in axes.ravel():
        ax.axis("off")
    images = cohort.load_images(rows)
    for k, r in enumerate(rows):
        row = cohort.pairs.iloc[r]
        ax_img, ax_txt = axes[k // ncols, 2 * (k % ncols)], axes[k // ncols, 2 * (k % ncols) + 1]
        ax_img.imshow(images[k], cmap="gray", vmin=0, vmax=1)
        ax_img.set_title(f"{row['site']} | {row['view']} | {row['split']}", fontsize=7)
        body = report_text_for_display(cohort, r) if show_text else WITHHELD
        body = body if len(body) <= text_chars else body[: text_chars - 3] + "..."
        ax_txt.text(
            0,
            1,
            "\n".join(textwrap.wrap(body, 38)) + "\n\nlabels: " + "\n".join(textwrap.wrap(_labels_line(row), 38)),
            va="top",
            ha="left",
            fontsize=6.5,
            transform=ax_txt.transAxes,
        )
    fig.tight_layout()
    return fig


def render_pairs_html(cohort: Cohort, rows: Sequence[int], title: str | None = None) -> str:
    """A self-contained HTML page of ``rows`` via the guarded helpers.

    The figure is inline SVG (its text kept as text), followed by a table."""
    # SVG with text kept as text, so any string that reached the figure is searchable in the page
    with plt.rc_context({"svg.fonttype": "none"}):
        fig = show_pairs(cohort, rows)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", dpi=80)
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.find("<svg") :]
    table = display_frame(cohort, rows).to_html(index=False, na_rep="")
    summary = html.escape(repr(cohort))
    return (
        f"<html><head><meta charset='utf-8'><title>{html.escape(title or cohort.name)}</title></head><body>"
        f"<h1>{html.escape(title or cohort.name)}</h1><p>{summary}</p>"
        f"{svg}{table}</body></html>"
    )
