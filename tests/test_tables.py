"""HTML tables: number formats on known values, the column checks, and the rendered structure."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from relink_lib.tables import (
    MISSING,
    fmt_count,
    fmt_lift,
    fmt_percent,
    fmt_sci,
    fmt_sig,
    fmt_signed_percent,
    format_value,
    html_table,
    table_html,
)


@pytest.mark.parametrize(
    "value, text",
    [
        (2.456, "2.46"),
        (0.198, "0.198"),
        (0.0057, "0.00570"),
        (0.000123, "1.23e-04"),
        (1.5e-8, "1.50e-08"),
        (0.0, "0"),
        (-0.0421, "-0.0421"),
        (17.43, "17.4"),
        (9.996, "10.0"),
        (0.9996, "1.00"),
        (12345.6, "12,346"),
        (3.2e7, "3.20e+07"),
        (float("inf"), "inf"),
        (np.float32(0.25), "0.250"),
    ],
)
def test_significant_figures_and_scientific_notation(value, text):
    assert fmt_sig(value) == text


def test_significant_figures_are_three_for_every_magnitude_in_range():
    rng = np.random.default_rng(0)
    for v in 10 ** rng.uniform(-3, 3, 500):
        text = fmt_sig(float(v))
        assert len(text.replace(".", "").lstrip("0")) == 3, (v, text)
        assert abs(float(text) - v) <= 0.005 * v, (v, text)  # rounding to 3 figures errs at most 0.5%


def test_counts_percentages_lift_and_missing():
    assert fmt_count(4000.0) == "4,000" and fmt_count(10861) == "10,861" and fmt_count(np.int64(7)) == "7"
    assert fmt_percent(0.618) == "61.8%" and fmt_percent(0.0) == "0.0%"
    assert fmt_signed_percent(0.139) == "+13.9%" and fmt_signed_percent(-2.0) == "-200.0%"
    assert fmt_lift(17.43) == "17.4x" and fmt_sci(0.000123) == "1.23e-04"
    for fn in (fmt_sig, fmt_count, fmt_percent, fmt_signed_percent, fmt_lift, fmt_sci, format_value):
        assert fn(None) == MISSING and fn(float("nan")) == MISSING
    assert format_value(4000) == "4,000" and format_value(4000.0) == "4,000" and format_value(0.000) == "0"
    assert format_value(True) == "yes" and format_value("eps=0.34") == "eps=0.34"


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.header, self._cell, self._in = [], [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self._in, self._cell = tag, ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._in:
            (self.header if self._in == "th" else self.rows[-1]).append(self._cell)
            self._in = None

    def handle_data(self, data):
        if self._in:
            self._cell += data


def _parse(text):
    parser = _Cells()
    parser.feed(text)
    return parser.header, [r for r in parser.rows if r]


def test_table_applies_formats_per_column_and_defaults_elsewhere():
    df = pd.DataFrame(
        {
            "rung": ["captions", "full <reports>"],
            "N": [10861, 4000],
            "R@1": [0.000123, 0.198],
            "cut": [0.618, -2.0],
            "lift": [0.92, 17.43],
        }
    )
    text = table_html(df, {"cut": "signed_percent", "lift": "lift"})
    header, rows = _parse(text)
    assert header == ["rung", "N", "R@1", "cut", "lift"]
    assert rows == [
        ["captions", "10,861", "1.23e-04", "+61.8%", "0.920x"],
        ["full <reports>", "4,000", "0.198", "-200.0%", "17.4x"],
    ]
    assert "full &lt;reports&gt;" in text  # cell text is escaped
    assert "overflow-x:auto" in text  # wide tables scroll inside the column, never cut off
    assert html_table(df).data == table_html(df)


def test_index_and_callable_and_sigN_formats():
    df = pd.DataFrame({"v": [1 / 3]}, index=pd.Index(["a"], name="key"))
    header, rows = _parse(table_html(df, {"v": "sig2"}, index=True))
    assert header == ["key", "v"] and rows == [["a", "0.33"]]
    _, rows = _parse(table_html(df, {"v": lambda v: f"<{v:.1f}>"}))
    assert rows == [["<0.3>"]]


def test_bad_formats_name_the_column():
    df = pd.DataFrame({"a": [1.0]})
    with pytest.raises(ValueError, match=r"formats: column\(s\) \['b'\] not in the table"):
        table_html(df, {"b": "sig"})
    with pytest.raises(ValueError, match=r"formats\['a'\] = 'pct'"):
        table_html(df, {"a": "pct"})
    with pytest.raises(TypeError, match="expected a pandas DataFrame"):
        table_html([1, 2])


def test_caption_sits_above_the_scrolling_box_and_is_escaped():
    out = table_html(pd.DataFrame({"a": [1.0]}), caption="R@1 < chance?")
    assert out.index("R@1 &lt; chance?") < out.index('<div class="relink-table"') and "<caption" not in out
    assert "relink-caption" not in table_html(pd.DataFrame({"a": [1.0]}))
