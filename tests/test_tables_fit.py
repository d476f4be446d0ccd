"""Wide tables fit the content column: set smaller, then split into parts that repeat their key columns."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from relink_lib.tables import CONTENT_WIDTH_PX, table_html, table_width


def _frontier(n: int = 12) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "init": ["pretrained", "reinit"] * (n // 2),
            "opt.": ["sgd", "adam"] * (n // 2),
            "lr": rng.choice([0.1, 0.03, 0.01], n),
            "epochs": rng.integers(1, 10, n),
            "sigma": rng.random(n) * 10,
            "cut (selection)": rng.normal(0.3, 0.5, n),
            "cut (report)": rng.normal(0.3, 0.5, n),
            "seed SD": rng.random(n) / 10,
            "probe drop": rng.normal(0, 5, n),
            "zero-shot drop": rng.normal(5, 10, n),
            "zero_shot_drop_at_same_cut": rng.normal(5, 10, n),
            "drift": rng.random(n),
            "selected": [False] * (n - 1) + [True],
        }
    )


FORMATS = {
    "cut (selection)": "cut",
    "cut (report)": "cut",
    "seed SD": "percent",
    "probe drop": "drop",
    "zero-shot drop": "drop",
    "zero_shot_drop_at_same_cut": "drop",
    "drift": "sig2",
}


def _tables(text: str) -> list[list[str]]:
    """The header texts of each <table> of ``text``."""
    return [
        [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<th[^>]*>(.*?)</th>", t)]
        for t in re.findall(r"<table.*?</table>", text, flags=re.S)
    ]


def test_a_narrow_table_is_one_table_at_the_normal_size():
    df = pd.DataFrame({"N": [10, 100], "R@1": [0.5, 0.1]})
    text = table_html(df)
    assert len(_tables(text)) == 1 and "font-size:0.9em" in text and "part 1" not in text


def test_a_wide_table_is_split_into_parts_that_repeat_its_key_and_each_fits():
    df = _frontier()
    assert table_width(df, FORMATS, size="compact") > CONTENT_WIDTH_PX  # the case: too wide even when set smaller
    text = table_html(df, FORMATS, caption="Frontier points")
    parts = _tables(text)
    assert len(parts) >= 2 and "font-size:0.8em" in text
    key = ["init", "opt.", "lr", "epochs", "sigma"]  # the settings before the first result column
    assert all(p[: len(key)] == key for p in parts)
    shown = [c for p in parts for c in p[len(key) :]]
    assert shown == [c for c in df.columns if c not in key]  # every other column once, in order
    for p in parts:
        assert table_width(df[p], {k: v for k, v in FORMATS.items() if k in p}, size="compact") <= CONTENT_WIDTH_PX
    assert "part 1 of" in text and text.index("Frontier points") < text.index("part 1 of")
    assert "% cut" in text and "% rise" in text and "+" not in re.sub(r"<[^>]+>", "", text)  # no signed cuts


def test_key_columns_can_be_named_and_must_exist():
    df = _frontier()
    parts = _tables(table_html(df, FORMATS, key_columns=["init", "opt."]))
    assert all(p[:2] == ["init", "opt."] for p in parts)
    with pytest.raises(ValueError, match="key_columns"):
        table_html(df, FORMATS, key_columns=["nope"])


def test_headers_may_break_after_underscores():
    df = pd.DataFrame({"zero_shot_drop_report": [0.2]})
    assert "zero_<wbr>shot_<wbr>drop_<wbr>report" in table_html(df, {"zero_shot_drop_report": "drop"})


def test_every_cell_of_a_split_table_is_shown_once_per_part():
    df = _frontier(4)
    text = table_html(df, FORMATS)
    bodies = re.findall(r"<tbody>(.*?)</tbody>", text, flags=re.S)
    assert len(bodies) == len(_tables(text)) >= 2
    assert all(body.count("<tr>") == len(df) for body in bodies)  # each part has every row
