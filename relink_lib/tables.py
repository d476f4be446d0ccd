"""HTML tables for the book: readable number formats, no truncated columns.

``html_table(df, formats={"R@1": "sig", "reduction": "percent", "N": "count"})`` returns an
``IPython.display.HTML`` that a chapter ``display()``-s. Without a format, integers get thousands
separators and floats three significant figures (scientific notation below 1e-3); missing
values print as "n/a". Wide tables scroll inside the content column instead of being cut off.

Format names (or pass any callable ``value -> str``):

- ``"sig"``: 3 significant figures, scientific below 1e-3 (``sig4`` etc. for other widths);
- ``"count"``: an integer with thousands separators (``4,000``, never ``4,000.000``);
- ``"percent"``: a fraction as a percentage with 1 decimal (``0.618 -> 61.8%``);
- ``"signed_percent"``: the same with an explicit sign, for reductions and changes (``+61.8%``);
- ``"sci"``: scientific notation with 3 significant figures;
- ``"lift"``: a multiple of chance (``17.4x``);
- ``"text"``: ``str(value)``.
"""

from __future__ import annotations

import html
import math
import numbers
import re
from typing import Any, Callable, Mapping

import pandas as pd
from IPython.display import HTML

Formatter = Callable[[Any], str]

MISSING = "n/a"
SCI_BELOW = 1e-3  # |v| below this (and not 0) prints in scientific notation
SCI_ABOVE = 1e6  # |v| at or above this (non-integers) prints in scientific notation

__all__ = [
    "html_table",
    "table_html",
    "format_value",
    "fmt_sig",
    "fmt_count",
    "fmt_percent",
    "fmt_signed_percent",
    "fmt_sci",
    "fmt_lift",
    "FORMATS",
    "MISSING",
]


def _missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _numeric(render: Callable[[float], str]) -> Formatter:
    """A formatter that prints missing values as :data:`MISSING`, non-numbers as ``str`` and numbers with ``render``."""

    def fmt(value: Any) -> str:
        if _missing(value):
            return MISSING
        v = _number(value)
        return str(value) if v is None else render(v)

    return fmt


def fmt_sci(value: Any, digits: int = 3) -> str:
    """Scientific notation with ``digits`` significant figures: ``1.23e-05``."""
    return _numeric(lambda v: "0" if v == 0 else f"{v:.{digits - 1}e}")(value)


def fmt_sig(value: Any, digits: int = 3) -> str:
    """``digits`` significant figures; scientific notation for tiny (< 1e-3) or huge values.

    0.000123 -> ``1.23e-04``; 0.0057 -> ``0.00570``; 2.456 -> ``2.46``; 12345.6 -> ``12,346``.
    """
    return _numeric(lambda v: _sig(v, digits))(value)


def _sig(v: float, digits: int) -> str:
    if v == 0:
        return "0"
    if not math.isfinite(v):
        return "inf" if v > 0 else "-inf"
    a = abs(v)
    if a < SCI_BELOW or a >= SCI_ABOVE:
        return fmt_sci(v, digits)
    magnitude = math.floor(math.log10(a))
    decimals = max(digits - 1 - magnitude, 0)
    rounded = round(v, decimals)
    if decimals > 0 and abs(rounded) >= 10 ** (magnitude + 1):  # 9.996 rounds up to 10.0: one decimal fewer
        decimals -= 1
        rounded = round(v, decimals)
    if decimals == 0:
        return f"{rounded:,.0f}"
    return f"{rounded:,.{decimals}f}"


def fmt_count(value: Any) -> str:
    """An integer count with thousands separators; a non-integer float is rounded to the nearest integer."""
    if _missing(value):
        return MISSING
    v = _number(value)
    if v is None:
        return str(value)
    if not math.isfinite(v):
        return "inf" if v > 0 else "-inf"
    return f"{int(round(v)):,}"


def fmt_percent(value: Any, decimals: int = 1) -> str:
    """A fraction as a percentage: 0.618 -> ``61.8%``."""
    return _numeric(lambda v: f"{100 * v:.{decimals}f}%")(value)


def fmt_signed_percent(value: Any, decimals: int = 1) -> str:
    """A fraction as a signed percentage (for reductions and changes): 0.618 -> ``+61.8%``, -2 -> ``-200.0%``."""
    return _numeric(lambda v: f"{100 * v:+.{decimals}f}%")(value)


def fmt_lift(value: Any) -> str:
    """A multiple of chance with 3 significant figures: 17.43 -> ``17.4x``."""
    return _numeric(lambda v: f"{fmt_sig(v)}x")(value)


def _fmt_text(value: Any) -> str:
    return MISSING if _missing(value) else str(value)


FORMATS: dict[str, Formatter] = {
    "sig": fmt_sig,
    "count": fmt_count,
    "percent": fmt_percent,
    "signed_percent": fmt_signed_percent,
    "sci": fmt_sci,
    "lift": fmt_lift,
    "text": _fmt_text,
}
"""The named formats of :func:`html_table` (``sigN`` for N significant figures is also accepted)."""


def _formatter(spec: str | Formatter, column: str) -> Formatter:
    if callable(spec):
        return spec
    if isinstance(spec, str):
        if spec in FORMATS:
            return FORMATS[spec]
        match = re.fullmatch(r"sig(\d)", spec)
        if match:
            digits = int(match.group(1))
            return lambda v: fmt_sig(v, digits)
    raise ValueError(f"formats[{column!r}] = {spec!r}: expected a callable or one of {sorted(FORMATS)} or 'sigN'")


def format_value(value: Any) -> str:
    """The default format of a cell: counts for integers, :func:`fmt_sig` for floats, ``str`` otherwise."""
    if _missing(value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return fmt_count(value)
    if isinstance(value, numbers.Real):
        v = float(value)
        if v.is_integer() and abs(v) >= 1000:
            return fmt_count(v)
        return fmt_sig(v)
    return str(value)


def _is_numeric_column(series: pd.Series) -> bool:
    values = [v for v in series if not _missing(v)]
    return bool(values) and all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values)


def table_html(
    df: pd.DataFrame,
    formats: Mapping[str, str | Formatter] | None = None,
    *,
    index: bool = False,
    caption: str | None = None,
    max_height_px: int | None = None,
) -> str:
    """The HTML string of :func:`html_table` (same arguments)."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"html_table: expected a pandas DataFrame, got {type(df).__name__}")
    formats = dict(formats or {})
    frame = df.reset_index() if index else df
    unknown = sorted(set(formats) - {str(c) for c in frame.columns})
    if unknown:
        raise ValueError(
            f"formats: column(s) {unknown} not in the table; its columns are {[str(c) for c in frame.columns]}"
        )
    columns = [str(c) for c in frame.columns]
    fns = {c: (_formatter(formats[c], c) if c in formats else format_value) for c in columns}
    numeric = {c: _is_numeric_column(frame.iloc[:, i]) for i, c in enumerate(columns)}
    style = "overflow-x:auto;max-width:100%;margin:0.5em 0 1em 0"
    if max_height_px:
        style += f";max-height:{int(max_height_px)}px;overflow-y:auto"
    out = []
    if caption:  # above the scrolling box, so a wide table does not clip it
        out.append(
            f'<div class="relink-caption" style="font-size:0.9em;margin:0.5em 0 0 0">{html.escape(caption)}</div>'
        )
    out += [
        f'<div class="relink-table" style="{style}">',
        '<table class="table relink" style="border-collapse:collapse;font-size:0.9em;width:auto">',
    ]
    out.append("<thead><tr>")
    for c in columns:
        align = "right" if numeric[c] else "left"
        out.append(f'<th style="text-align:{align};padding:0.25em 0.6em">{html.escape(c)}</th>')
    out.append("</tr></thead><tbody>")
    for row in frame.itertuples(index=False, name=None):
        out.append("<tr>")
        for c, value in zip(columns, row):
            align = "right" if numeric[c] else "left"
            text = fns[c](value)
            wrap = "white-space:nowrap" if numeric[c] else "white-space:normal"  # numbers never break; text wraps
            out.append(f'<td style="text-align:{align};padding:0.25em 0.6em;{wrap}">{html.escape(text)}</td>')
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def html_table(
    df: pd.DataFrame,
    formats: Mapping[str, str | Formatter] | None = None,
    *,
    index: bool = False,
    caption: str | None = None,
    max_height_px: int | None = None,
) -> HTML:
    """Render ``df`` as an HTML table (an ``IPython.display.HTML`` to ``display()``).

    ``formats`` maps a column name to a format name of :data:`FORMATS` (``"sig"``, ``"count"``,
    ``"percent"``, ``"signed_percent"``, ``"sci"``, ``"lift"``, ``"text"``, ``"sigN"``) or a callable;
    other columns get :func:`format_value`. ``index=True`` shows the index as leading column(s).
    Numeric columns are right-aligned; the table scrolls horizontally inside the page's content
    column when it is wider (``max_height_px`` also caps its height, scrolling vertically).
    Raises ``ValueError`` naming a format or column that does not exist.
    """
    return HTML(table_html(df, formats, index=index, caption=caption, max_height_px=max_height_px))
