"""One sign convention for every cut, rise, drop and gain the book prints.

A signed number ("+70.6%", "-4.91 points") makes the reader work out which way is good. The book
never prints one for a change; it prints the size and says the direction in a word:

- a **cut** of re-linkage (``1 - after / before``, a fraction; positive = less re-linkage) is a
  positive percentage with the word *cut*: ``0.706 -> "70.6% cut"``; a negative value is a
  *rise*: ``-0.1 -> "10.0% rise"``;
- a **utility drop** (percentage points of AUROC, positive = worse) is a positive number with the
  word *drop*: ``0.2 -> "0.20 drop"``; a negative value is a *gain*: ``-4.91 -> "4.91 gain"``;
- a value that rounds to zero prints with no word (``"0.0%"``, ``"0.00"``); a missing one
  (``None``, NaN) as ``"n/a"``;
- an interval names the direction of each end, once when both ends agree:
  ``(0.6, 0.8) -> "60.0% to 80.0% cut"``, ``(-0.02, 0.12) -> "2.0% rise to 12.0% cut"``: it runs
  from the lower end of the signed quantity to the upper (less cut to more cut), so an interval
  that straddles zero reads "... rise to ... cut" (or "... gain to ... drop").

Sentences use the phrase helpers: ``cut_phrase(0.05, -0.02, 0.12)`` ->
``"a cut of 5.0% (95% CI: 2.0% rise to 12.0% cut)"``; ``drop_phrase(-4.91)`` ->
``"a gain of 4.91 points"``. Tables use the ``"cut"`` and ``"drop"`` formats of
:func:`relink_lib.tables.html_table`, which are :func:`fmt_cut` and :func:`fmt_drop`: each cell
carries its own word, so a column of cuts may hold a rise and still read correctly.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

__all__ = [
    "Convention",
    "CUT",
    "DROP",
    "MORE_CUT",
    "MISSING",
    "fmt_change",
    "fmt_change_ci",
    "change_phrase",
    "fmt_cut",
    "fmt_cut_ci",
    "cut_phrase",
    "fmt_drop",
    "fmt_drop_ci",
    "drop_phrase",
]

MISSING = "n/a"


@dataclass(frozen=True)
class Convention:
    """How one kind of change prints: the word for a positive and for a negative value, the factor from the
    stored value to the printed number (100 for a fraction printed as a percentage), the unit right after the
    number (``"%"``) and the decimals."""

    positive: str
    negative: str
    scale: float = 1.0
    suffix: str = ""
    decimals: int = 2


CUT = Convention("cut", "rise", scale=100.0, suffix="%", decimals=1)
"""A relative cut of re-linkage, stored as a fraction (positive = less re-linkage)."""
DROP = Convention("drop", "gain", scale=1.0, suffix="", decimals=2)
"""A utility drop in percentage points (positive = worse)."""
MORE_CUT = Convention("more", "less", scale=100.0, suffix=" points", decimals=1)
"""A paired difference of two cuts (fractions), printed in percentage points: ``0.05 -> "5.0 points more"``."""


def _value(value: Any) -> float | None:
    """``value`` as a finite float, or ``None`` when missing (None, NaN, inf, not a number)."""
    if value is None or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def _parts(value: Any, conv: Convention, decimals: int | None) -> tuple[str, str] | None:
    """``(number, word)`` of ``value``: the rounded magnitude with its unit and the direction word ("" at zero)."""
    v = _value(value)
    if v is None:
        return None
    d = conv.decimals if decimals is None else decimals
    number = f"{abs(v) * conv.scale:,.{d}f}"
    if float(number.replace(",", "")) == 0:  # rounds to zero: no direction to name
        return f"{0:.{d}f}{conv.suffix}", ""
    return f"{number}{conv.suffix}", conv.positive if v > 0 else conv.negative


def fmt_change(value: Any, conv: Convention, decimals: int | None = None) -> str:
    """``value`` as its magnitude and direction word under ``conv``: ``"70.6% cut"``, ``"10.0% rise"``, ``"0.0%"``,
    ``"n/a"``."""
    parts = _parts(value, conv, decimals)
    if parts is None:
        return MISSING
    number, word = parts
    return f"{number} {word}" if word else number


def fmt_change_ci(low: Any, high: Any, conv: Convention, decimals: int | None = None) -> str:
    """An interval from ``low`` to ``high`` (the signed quantity's lower and upper ends) with each end's direction,
    the word said once when both ends share it: ``"60.0% to 80.0% cut"``, ``"2.0% rise to 12.0% cut"``,
    ``"0.0% to 5.0% cut"``; ``"n/a"`` when an end is missing."""
    lo, hi = _parts(low, conv, decimals), _parts(high, conv, decimals)
    if lo is None or hi is None:
        return MISSING
    (n_lo, w_lo), (n_hi, w_hi) = lo, hi
    if w_lo == w_hi or not w_lo:
        return f"{n_lo} to {n_hi}" + (f" {w_hi}" if w_hi else "")
    if not w_hi:
        return f"{n_lo} {w_lo} to {n_hi}"
    return f"{n_lo} {w_lo} to {n_hi} {w_hi}"


def change_phrase(
    value: Any,
    low: Any = None,
    high: Any = None,
    conv: Convention = CUT,
    *,
    adjective: str = "",
    unit: str = "",
    level: float = 95,
    decimals: int | None = None,
    note: str = "",
) -> str:
    """A noun phrase for a sentence: ``"a cut of 5.0% (95% CI: 2.0% rise to 12.0% cut)"``, ``"a rise of 10.0%"``,
    ``"a drop of 0.20 points"``. ``adjective`` goes before the word (``"relative"``: "a relative cut of");
    ``unit`` after the number (``"points"``; the interval's ends are in the same unit); the interval is added
    when ``low`` or ``high`` is given, with ``note`` after it inside the parentheses (``"paired over patients"``)."""
    parts = _parts(value, conv, decimals)
    number, word = parts if parts is not None else (MISSING, "")
    noun = word or conv.positive
    if unit:
        number = f"{number} {unit}"
    head = f"{adjective} {noun}".strip()
    article = "an" if head[:1].lower() in "aeiou" else "a"
    text = f"{article} {head} of {number}"
    if low is not None or high is not None:
        ci = fmt_change_ci(low, high, conv, decimals)
        text += f" ({level:g}% CI: {ci}{f', {note}' if note else ''})"
    return text


def fmt_cut(value: Any, decimals: int | None = None) -> str:
    """A relative cut (fraction): ``0.706 -> "70.6% cut"``, ``-0.1 -> "10.0% rise"``, ``0 -> "0.0%"``, NaN ->
    ``"n/a"``."""
    return fmt_change(value, CUT, decimals)


def fmt_cut_ci(low: Any, high: Any, decimals: int | None = None) -> str:
    """The interval of a cut: ``(-0.02, 0.12) -> "2.0% rise to 12.0% cut"``."""
    return fmt_change_ci(low, high, CUT, decimals)


def cut_phrase(
    value: Any, low: Any = None, high: Any = None, *, adjective: str = "", level: float = 95, note: str = ""
) -> str:
    """``"a cut of 5.0% (95% CI: 2.0% rise to 12.0% cut)"``; ``adjective="relative"``: "a relative cut of"."""
    return change_phrase(value, low, high, CUT, adjective=adjective, level=level, note=note)


def fmt_drop(value: Any, decimals: int | None = None) -> str:
    """A utility drop (points): ``0.2 -> "0.20 drop"``, ``-4.91 -> "4.91 gain"``, ``0 -> "0.00"``."""
    return fmt_change(value, DROP, decimals)


def fmt_drop_ci(low: Any, high: Any, decimals: int | None = None) -> str:
    """The interval of a drop: ``(-0.3, 0.7) -> "0.30 gain to 0.70 drop"``."""
    return fmt_change_ci(low, high, DROP, decimals)


def drop_phrase(
    value: Any,
    low: Any = None,
    high: Any = None,
    *,
    unit: str = "points",
    adjective: str = "",
    level: float = 95,
    note: str = "",
) -> str:
    """``"a drop of 0.20 points"``, ``"a gain of 4.91 points (95% CI: 3.00 to 6.00 gain)"`` (the interval in the same
    unit)."""
    return change_phrase(value, low, high, DROP, adjective=adjective, unit=unit, level=level, note=note)
