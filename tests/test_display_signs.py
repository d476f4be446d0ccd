"""The sign convention (relink_lib.signs): a cut is a positive percentage with the word "cut", an increase a
"rise"; a utility change a "drop" or a "gain"; intervals name the direction of each end."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from relink_lib.signs import (
    change_phrase,
    cut_phrase,
    drop_phrase,
    fmt_cut,
    fmt_cut_ci,
    fmt_drop,
    fmt_drop_ci,
)
from relink_lib.tables import table_html


@pytest.mark.parametrize(
    "value, want",
    [
        (0.706, "70.6% cut"),
        (-0.1, "10.0% rise"),
        (0.0, "0.0%"),
        (-0.0, "0.0%"),
        (0.0004, "0.0%"),  # rounds to zero: no direction to name
        (-0.0004, "0.0%"),
        (1.0, "100.0% cut"),
        (-2.0, "200.0% rise"),
        (-25.0, "2,500.0% rise"),
        (math.nan, "n/a"),
        (None, "n/a"),
        (math.inf, "n/a"),
        (np.float32(0.5), "50.0% cut"),
    ],
)
def test_fmt_cut_known_answers(value, want):
    assert fmt_cut(value) == want


@pytest.mark.parametrize(
    "value, want",
    [(0.2, "0.20 drop"), (-4.91, "4.91 gain"), (0.0, "0.00"), (-0.001, "0.00"), (math.nan, "n/a"), (None, "n/a")],
)
def test_fmt_drop_known_answers(value, want):
    assert fmt_drop(value) == want


def test_no_printed_change_carries_a_sign():
    for v in np.linspace(-3, 3, 61):
        for text in (fmt_cut(v), fmt_drop(v), fmt_cut_ci(v, v + 1), fmt_drop_ci(v - 1, v)):
            assert "+" not in text and not text.startswith("-") and " -" not in text


@pytest.mark.parametrize(
    "low, high, want",
    [
        (0.6, 0.8, "60.0% to 80.0% cut"),
        (-0.02, 0.12, "2.0% rise to 12.0% cut"),  # straddles zero: each end names its direction
        (-0.3, -0.1, "30.0% to 10.0% rise"),
        (0.0, 0.05, "0.0% to 5.0% cut"),
        (-0.05, 0.0, "5.0% rise to 0.0%"),
        (math.nan, 0.1, "n/a"),
        (0.1, None, "n/a"),
    ],
)
def test_fmt_cut_ci_known_answers(low, high, want):
    assert fmt_cut_ci(low, high) == want


def test_fmt_drop_ci_straddling_zero():
    assert fmt_drop_ci(-0.3, 0.7) == "0.30 gain to 0.70 drop"
    assert fmt_drop_ci(0.5, 1.9) == "0.50 to 1.90 drop"
    assert fmt_drop_ci(-1.9, -0.5) == "1.90 to 0.50 gain"


def test_phrases_read_as_sentences():
    assert cut_phrase(0.05, -0.02, 0.12) == "a cut of 5.0% (95% CI: 2.0% rise to 12.0% cut)"
    assert cut_phrase(0.767, 0.6, 0.85, adjective="relative") == (
        "a relative cut of 76.7% (95% CI: 60.0% to 85.0% cut)"
    )
    assert cut_phrase(-0.5, adjective="relative") == "a relative rise of 50.0%"
    assert cut_phrase(0.0) == "a cut of 0.0%"
    assert cut_phrase(math.nan) == "a cut of n/a"
    assert cut_phrase(0.2, math.nan, 0.3) == "a cut of 20.0% (95% CI: n/a)"
    assert drop_phrase(0.2) == "a drop of 0.20 points"
    assert drop_phrase(-4.91) == "a gain of 4.91 points"
    assert drop_phrase(1.2, 0.5, 1.9) == "a drop of 1.20 points (95% CI: 0.50 to 1.90 drop)"
    assert drop_phrase(-1.2, -1.9, 0.1, adjective="zero-shot") == (
        "a zero-shot gain of 1.20 points (95% CI: 1.90 gain to 0.10 drop)"
    )
    assert change_phrase(0.5, adjective="expected") == "an expected cut of 50.0%"
    assert drop_phrase(0.2, 0.1, 0.3, note="paired") == "a drop of 0.20 points (95% CI: 0.10 to 0.30 drop, paired)"
    assert cut_phrase(0.1, -0.1, 0.3, level=90) == "a cut of 10.0% (90% CI: 10.0% rise to 30.0% cut)"


def test_table_formats_cut_and_drop():
    df = pd.DataFrame({"cut": [0.618, -0.1, math.nan], "zero-shot drop": [0.2, -4.91, 0.0]})
    text = table_html(df, {"cut": "cut", "zero-shot drop": "drop"})
    for cell in ("61.8% cut", "10.0% rise", "n/a", "0.20 drop", "4.91 gain", "0.00"):
        assert f">{cell}</td>" in text
