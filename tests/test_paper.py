"""The paper's quoted figures have one home: the lift by pool size is read from :data:`relink_lib.paper.PAPER`."""

from __future__ import annotations

import dataclasses

import pytest

from relink_lib.paper import PAPER, PaperFigures
from relink_lib.threat_model import threat_model_payload


def test_lift_by_pool_holds_the_two_quoted_lifts():
    assert PAPER.r1_lift_by_pool == {100: 15.0, 10_000: 50.0}
    assert list(PAPER.r1_lift_by_pool) == [100, 10_000]  # smallest pool first
    PAPER.r1_lift_by_pool[100] = 0.0  # a fresh dict each time: the figures cannot be changed through it
    assert PAPER.r1_lift_at(100) == 15.0


def test_lift_at_a_pool_size():
    assert PAPER.r1_lift_at(100) == PAPER.r1_lift_n100 and PAPER.r1_lift_at(10_000) == PAPER.r1_lift_n10000
    assert PAPER.r1_lift_at(1000) is None and PAPER.r1_lift_at(10) is None
    assert PAPER.r1_at(10_000) == pytest.approx(50.0 / 10_000)
    with pytest.raises(ValueError, match="N = 100 and N = 10,000"):
        PAPER.r1_at(1000)


def test_every_user_follows_the_one_home():
    other = dataclasses.replace(PAPER, r1_lift_n100=7.0)
    assert isinstance(other, PaperFigures) and other.r1_lift_by_pool == {100: 7.0, 10_000: 50.0}
    assert other.r1_at(100) == pytest.approx(0.07)
    ref = threat_model_payload()["paper_reference"]
    assert (ref["r1_lift_n100"], ref["r1_lift_n10000"]) == (PAPER.r1_lift_n100, PAPER.r1_lift_n10000)
