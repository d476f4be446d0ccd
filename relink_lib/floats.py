"""Numbered, captioned figures and tables for the chapter notebooks.

A chapter shows a figure with :func:`show_figure` and a results table with
``relink_lib.tables.html_table(..., label="tab-...")``. Both display a :class:`Float`: one output whose
MIME bundle carries the plain rendering (a PNG, or the HTML table with its caption) for Jupyter and
nbval, and a :data:`FLOAT_MIME` entry (label, kind, caption, content) that the book's Sphinx extension
(:mod:`relink_lib.pipeline.sphinx_floats`) turns into a numbered figure or table. Prose refers to a float
with ``{numref}`fig-frontier``` (Sphinx numbers them by chapter: "Figure 6.2", "Table 4.1").
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass
from typing import Any, Literal

from IPython.display import display

FLOAT_MIME = "application/vnd.relink.float+json"
"""The MIME type of a numbered float in a notebook output (a JSON object, see :meth:`Float.payload`)."""

LABEL_PATTERN = re.compile(r"^(fig|tab)-[a-z0-9]+(-[a-z0-9]+)*$")
"""Labels: ``fig-`` for figures, ``tab-`` for tables, then lower-case words joined by ``-``."""

FloatKind = Literal["figure", "table"]


def check_label(label: str, kind: FloatKind) -> str:
    """``label`` if it matches :data:`LABEL_PATTERN` with the prefix of ``kind``; else ``ValueError``."""
    prefix = "fig-" if kind == "figure" else "tab-"
    if not isinstance(label, str) or not LABEL_PATTERN.match(label) or not label.startswith(prefix):
        raise ValueError(
            f"label {label!r}: a {kind} label must start with {prefix!r} and continue with lower-case words "
            "joined by '-' (e.g. 'fig-frontier', 'tab-lift')"
        )
    return label


def check_caption(caption: str, label: str) -> str:
    """``caption`` stripped; ``ValueError`` naming ``label`` if it is empty or not a string."""
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError(f"{label}: a numbered float needs a caption (a non-empty sentence)")
    return caption.strip()


@dataclass(frozen=True)
class Float:
    """A numbered figure or table as one notebook output.

    ``content`` is the HTML of a table (without its caption) or the base64 PNG of a figure;
    ``fallback_html`` is what Jupyter shows for a table (the table with its caption above it);
    ``legend_overlaps``: for a figure, the plotted points or bars a legend covers
    (:func:`relink_lib.plots.common.figure_legend_overlaps`), which the browser check reports.
    """

    kind: FloatKind
    label: str
    caption: str
    content: str
    fallback_html: str = ""
    legend_overlaps: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("figure", "table"):
            raise ValueError(f"kind {self.kind!r}: expected 'figure' or 'table'")
        check_label(self.label, self.kind)
        object.__setattr__(self, "caption", check_caption(self.caption, self.label))

    def payload(self) -> dict[str, Any]:
        """The :data:`FLOAT_MIME` entry: ``kind``, ``label``, ``caption``, ``content`` (and ``legend_overlaps``)."""
        out: dict[str, Any] = {"kind": self.kind, "label": self.label, "caption": self.caption, "content": self.content}
        if self.legend_overlaps:
            out["legend_overlaps"] = list(self.legend_overlaps)
        return out

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle: dict[str, Any] = {FLOAT_MIME: self.payload(), "text/plain": f"{self.label}: {self.caption}"}
        if self.kind == "figure":
            bundle["image/png"] = self.content
        else:
            bundle["text/html"] = self.fallback_html or self.content
        return bundle


def figure_png(fig: Any) -> str:
    """``fig`` (a matplotlib Figure) as base64 PNG at its own dpi, cropped to its drawn area."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def figure_float(fig: Any, label: str, caption: str) -> Float:
    """A numbered figure of ``fig``; the figure is closed (so the inline backend does not show it twice)."""
    import matplotlib.pyplot as plt

    from .plots.common import figure_legend_overlaps

    check_label(label, "figure")
    png = figure_png(fig)
    overlaps = tuple(f"axes {i}: {hit}" for i, hits in figure_legend_overlaps(fig).items() for hit in hits)
    plt.close(fig)
    return Float("figure", label, caption, png, legend_overlaps=overlaps)


def show_figure(fig: Any, label: str, caption: str) -> None:
    """Display ``fig`` as a numbered figure with ``caption`` (one sentence; the axes carry the details)."""
    display(figure_float(fig, label, caption))


def caption_html(caption: str) -> str:
    """A table's caption as the HTML block shown above it where the book's numbering does not apply (Jupyter)."""
    return f'<div class="relink-caption" style="font-size:0.9em;margin:0.5em 0 0 0">{html.escape(caption)}</div>'


def table_float(table_html: str, label: str, caption: str) -> Float:
    """A numbered table: ``table_html`` is the table without a caption (``relink_lib.tables.table_html``)."""
    check_label(label, "table")
    caption = check_caption(caption, label)
    return Float("table", label, caption, table_html, caption_html(caption) + table_html)
