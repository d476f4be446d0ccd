"""HTML tables for the book: readable number formats, no truncated columns.

``html_table(df, formats={"R@1": "sig", "reduction": "percent", "N": "count"})`` returns an
``IPython.display.HTML`` that a chapter ``display()``-s. Without a format, integers get thousands
separators and floats three significant figures (scientific notation below 1e-3); missing
values print as "n/a". No table is wider than the book's content column: a wide one is set smaller,
then split into parts that repeat its key columns (:func:`html_table`).

Format names (or pass any callable ``value -> str``):

- ``"sig"``: 3 significant figures, scientific below 1e-3 (``sig4`` etc. for other widths);
- ``"count"``: an integer with thousands separators (``4,000``, never ``4,000.000``);
- ``"percent"``: a fraction as a percentage with 1 decimal (``0.618 -> 61.8%``);
- ``"cut"``: a relative cut of re-linkage (a fraction) with its direction word, never a sign
  (``0.618 -> 61.8% cut``, ``-0.1 -> 10.0% rise``; :mod:`relink_lib.signs`);
- ``"drop"``: a utility drop in points with its direction word (``0.2 -> 0.20 drop``,
  ``-4.91 -> 4.91 gain``);
- ``"signed_percent"``: a percentage with an explicit sign, for a signed difference that is not a
  cut or a drop (``+61.8%``); cuts and drops use ``"cut"`` and ``"drop"``;
- ``"sci"``: scientific notation with 3 significant figures;
- ``"lift"``: a multiple of chance (``17.4x``);
- ``"text"``: ``str(value)``.
"""

from __future__ import annotations

import html
import math
import numbers
import re
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
from IPython.display import HTML

from .floats import Float, caption_html, table_float
from .signs import fmt_cut, fmt_drop

Formatter = Callable[[Any], str]

MISSING = "n/a"
SCI_BELOW = 1e-3  # |v| below this (and not 0) prints in scientific notation
SCI_ABOVE = 1e6  # |v| at or above this (non-integers) prints in scientific notation

__all__ = [
    "html_table",
    "table_html",
    "table_width",
    "format_value",
    "fmt_sig",
    "fmt_count",
    "fmt_percent",
    "fmt_signed_percent",
    "fmt_sci",
    "fmt_lift",
    "fmt_cut",
    "fmt_drop",
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
    """A fraction as a signed percentage: 0.618 -> ``+61.8%``, -2 -> ``-200.0%``.

    For a signed difference only; a cut or a utility drop prints with its direction word instead
    (:func:`relink_lib.signs.fmt_cut`, :func:`relink_lib.signs.fmt_drop`)."""
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
    "cut": fmt_cut,
    "drop": fmt_drop,
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


#: A table's room on a chapter page at the browser check's 1,280 px window: the cell output inside the 752 px
#: content column is 688 px wide; no table may be wider (a little is kept for the estimate's error).
CONTENT_WIDTH_PX = 672
#: Estimated width of one character and one cell's horizontal padding, at the normal and the compact size
#: (calibrated on the built book in Chromium: the estimate of a table's narrowest width within a few percent).
CHAR_PX = {"normal": 8.0, "compact": 7.1}
PAD_PX = {"normal": 20.0, "compact": 12.0}
STYLE = {
    "normal": ("0.9em", "0.25em 0.6em"),
    "compact": ("0.8em", "0.2em 0.35em"),
}
RESULT_FORMATS = frozenset({"cut", "drop", "percent", "signed_percent", "lift"})
"""Formats of result columns: the columns before the first of them are a table's key (repeated when it is split)."""
KEY_SHARE = 0.45
"""A split table repeats at most this share of the column width as key columns."""
_BREAK_AFTER = re.compile(r"([_/(])")


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s_/(]+", text) if w] or [""]


TEXT_CHARS = 18
"""A text column is given room for this many characters a line (or its longest cell, if shorter): wrapped
narrower, a sentence becomes a tall column of single words."""


def _column_width(header: str, cells: list[str], numeric: bool, size: str) -> float:
    """Estimated width (px) of a column at its narrowest readable: its header wraps at spaces and underscores,
    numeric cells never wrap, text cells wrap at spaces to lines of about :data:`TEXT_CHARS` characters."""
    longest = max(len(w) for w in _words(header))
    for text in cells:
        if numeric:
            longest = max(longest, len(text))
        else:
            longest = max(longest, min(len(text), max(TEXT_CHARS, *(len(w) for w in _words(text)))))
    return longest * CHAR_PX[size] + PAD_PX[size]


def _header_html(name: str) -> str:
    """A header cell's text that may break after ``_``, ``/`` and ``(`` (snake_case names fit narrow columns)."""
    return _BREAK_AFTER.sub(r"\1<wbr>", html.escape(name))


def _key_columns(columns: list[str], formats: Mapping[str, Any], widths: dict[str, float], limit: float) -> list[str]:
    """The leading columns before the first result column (:data:`RESULT_FORMATS`), while they take at most
    :data:`KEY_SHARE` of ``limit``; at least the first column."""
    key: list[str] = []
    for c in columns:
        spec = formats.get(c)
        if isinstance(spec, str) and spec in RESULT_FORMATS:
            break
        if sum(widths[k] for k in key) + widths[c] > KEY_SHARE * limit:
            break
        key.append(c)
    return key or columns[:1]


def _parts(columns: list[str], key: list[str], widths: dict[str, float], limit: float) -> list[list[str]]:
    """The columns of each part of a split table: ``key`` first in every part, then as many of the other columns,
    in order, as fit in ``limit``."""
    base = sum(widths[k] for k in key)
    parts: list[list[str]] = []
    current: list[str] = []
    for c in (c for c in columns if c not in key):
        if current and base + sum(widths[x] for x in current) + widths[c] > limit:
            parts.append(key + current)
            current = []
        current.append(c)
    if current or not parts:
        parts.append(key + current)
    return parts


def table_width(
    df: pd.DataFrame,
    formats: Mapping[str, str | Formatter] | None = None,
    *,
    index: bool = False,
    size: str = "normal",
) -> float:
    """The estimated width (px) of :func:`html_table`'s table of ``df`` at ``size`` (``"normal"``, ``"compact"``)
    when the browser shrinks it to its narrowest (headers and text wrapped)."""
    frame = df.reset_index() if index else df
    columns = [str(c) for c in frame.columns]
    fns = {c: (_formatter(formats[c], c) if formats and c in formats else format_value) for c in columns}
    return sum(
        _column_width(c, [fns[c](v) for v in frame.iloc[:, i]], _is_numeric_column(frame.iloc[:, i]), size)
        for i, c in enumerate(columns)
    )


def table_html(
    df: pd.DataFrame,
    formats: Mapping[str, str | Formatter] | None = None,
    *,
    index: bool = False,
    caption: str | None = None,
    max_height_px: int | None = None,
    max_width_px: float = CONTENT_WIDTH_PX,
    key_columns: Sequence[str] | None = None,
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
    texts = {c: [fns[c](v) for v in frame.iloc[:, i]] for i, c in enumerate(columns)}
    if key_columns is not None:
        missing = [k for k in key_columns if k not in columns]
        if missing:
            raise ValueError(f"key_columns: {missing} not in the table; its columns are {columns}")

    def widths(size: str) -> dict[str, float]:
        return {c: _column_width(c, texts[c], numeric[c], size) for c in columns}

    size = "normal"
    w = widths(size)
    parts = [columns]
    if sum(w.values()) > max_width_px:
        size = "compact"  # smaller type and padding first; split only what still does not fit
        w = widths(size)
        if sum(w.values()) > max_width_px and len(columns) > 1:
            key = list(key_columns) if key_columns is not None else _key_columns(columns, formats, w, max_width_px)
            parts = _parts(columns, key, w, max_width_px)
    font, padding = STYLE[size]
    style = "overflow-x:auto;max-width:100%;margin:0.5em 0 1em 0"
    if max_height_px:
        style += f";max-height:{int(max_height_px)}px;overflow-y:auto"
    out = []
    if caption:  # above the table, so a wide table does not clip it
        out.append(caption_html(caption))
    for n, part in enumerate(parts, start=1):
        if len(parts) > 1:
            rest = [c for c in part if c not in parts[0] or n == 1]
            out.append(
                f'<div class="relink-caption relink-part" style="font-size:0.8em;margin:0.4em 0 0 0;color:#777">'
                f"part {n} of {len(parts)}: {html.escape(', '.join(rest[:3]) + (', ...' if len(rest) > 3 else ''))}"
                "</div>"
            )
        out += [
            f'<div class="relink-table" style="{style}">',
            f'<table class="table relink" style="border-collapse:collapse;font-size:{font};width:auto">',
            "<thead><tr>",
        ]
        for c in part:
            align = "right" if numeric[c] else "left"
            out.append(f'<th style="text-align:{align};padding:{padding}">{_header_html(c)}</th>')
        out.append("</tr></thead><tbody>")
        for r in range(len(frame)):
            out.append("<tr>")
            for c in part:
                align = "right" if numeric[c] else "left"
                wrap = "white-space:nowrap" if numeric[c] else "white-space:normal"  # numbers never break; text wraps
                out.append(f'<td style="text-align:{align};padding:{padding};{wrap}">{html.escape(texts[c][r])}</td>')
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
    max_width_px: float = CONTENT_WIDTH_PX,
    key_columns: Sequence[str] | None = None,
    label: str | None = None,
) -> HTML | Float:
    """Render ``df`` as an HTML table (an object to ``display()``).

    With ``label`` (``"tab-..."``, a ``caption`` required) it is a numbered table of the book
    (:class:`relink_lib.floats.Float`: "Table 6.1", referred to with ``{numref}``); without, a plain
    ``IPython.display.HTML`` with the caption above it.

    ``formats`` maps a column name to a format name of :data:`FORMATS` (``"sig"``, ``"count"``,
    ``"percent"``, ``"cut"``, ``"drop"``, ``"signed_percent"``, ``"sci"``, ``"lift"``, ``"text"``, ``"sigN"``)
    or a callable;
    other columns get :func:`format_value`. ``index=True`` shows the index as leading column(s).
    Numeric columns are right-aligned and never wrap; text and headers wrap (headers also after
    ``_``). A table fits the content column (``max_width_px``, :data:`CONTENT_WIDTH_PX` at the
    book's 1,280 px check): when its estimated narrowest width (:func:`table_width`) is wider, it is
    set smaller first and, if still too wide, split into parts stacked one under the other, each
    repeating the key columns (``key_columns``; by default the leading columns before the first
    cut, drop, percentage or lift column). ``max_height_px`` caps the height, scrolling vertically.
    Raises ``ValueError`` naming a format or column that does not exist, or a bad label or caption.
    """
    if label is not None:
        if caption is None:
            raise ValueError(f"{label}: a numbered table needs a caption")
        body = table_html(
            df, formats, index=index, max_height_px=max_height_px, max_width_px=max_width_px, key_columns=key_columns
        )
        return table_float(body, label, caption)
    return HTML(
        table_html(
            df,
            formats,
            index=index,
            caption=caption,
            max_height_px=max_height_px,
            max_width_px=max_width_px,
            key_columns=key_columns,
        )
    )
