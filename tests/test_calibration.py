"""The calibration record and its box: known answers on planted audit rows."""

from __future__ import annotations

import pytest

from relink_lib.calibration import TARGETS, calibration_box, calibration_record, finding_kind, top_rung_lift


def _row(rung: int, n: int, lift: float, *, split: str = "test", pool: str = "random", full: bool = False) -> dict:
    return {
        "rung": rung,
        "model": f"rung{rung}",
        "split": split,
        "pool": pool,
        "pool_size": n,
        "k": 1,
        "lift": lift,
        "lift_ci_low": lift * 0.9,
        "lift_ci_high": lift * 1.1,
        "full_database": full,
    }


PARAMS = {"profile": "default", "cohort": {"source": "synthetic"}}


def test_the_top_rung_held_out_random_pool_row_is_read() -> None:
    rows = [
        _row(0, 100, 3.0),
        _row(2, 100, 14.0),
        _row(2, 100, 99.0, split="train"),
        _row(2, 100, 98.0, pool="matched"),
        _row(1, 100, 50.0),
    ]
    got = top_rung_lift({"rows": rows}, 100)
    assert got == {"rung": 2, "model": "rung2", "pool_size": 100, "lift": 14.0, "ci": [14.0 * 0.9, 14.0 * 1.1]}
    assert top_rung_lift({"rows": rows}, 10_000) is None


@pytest.mark.parametrize(
    ("lift100", "lift10k", "status"),
    [
        (15.0, 50.0, "within tolerance"),
        (17.2, 40.5, "within tolerance"),
        (19.8, 64.0, "drifted"),
        (15.0, 61.0, "drifted"),
    ],
)
def test_status_follows_the_declared_bands(lift100: float, lift10k: float, status: str) -> None:
    rec = calibration_record({"rows": [_row(2, 100, lift100), _row(2, 10_000, lift10k)]}, PARAMS)
    assert rec["status"] == status
    t100, t10k = rec["targets"]
    assert t100["band"] == pytest.approx([12.75, 17.25]) and t10k["band"] == pytest.approx([40.0, 60.0])
    assert t100["achieved"] == lift100 and t10k["achieved"] == lift10k
    assert t100["within"] == (12.75 <= lift100 <= 17.25) and t10k["within"] == (40.0 <= lift10k <= 60.0)


def test_a_missing_figure_is_not_measured_and_a_real_cohort_is_not_calibrated() -> None:
    rec = calibration_record({"rows": [_row(2, 100, 15.0)]}, PARAMS)
    assert rec["status"] == "not measured" and rec["targets"][1]["status"] == "not measured"
    real = calibration_record({"rows": [_row(2, 100, 15.0)]}, {"profile": "paper", "cohort": {"source": "real"}})
    assert real["status"] == "not applicable" and real["targets"] == []
    assert "nothing was calibrated" in calibration_box(real)


def test_the_box_says_drifted_with_the_numbers_and_pending_boxes_claim_nothing() -> None:
    rec = calibration_record({"rows": [_row(2, 100, 19.8), _row(2, 10_000, 64.0)]}, PARAMS)
    box = calibration_box(rec)
    assert "drifted" in box and "19.8x" in box and "64.0x" in box and "admonition warning" in box
    assert "12.8x to 17.2x" in box and "40.0x to 60.0x" in box
    pending = calibration_box(rec, pending=True, where="Chapter 2's cohort sizes are knobs.")
    assert "measured in chapter 4" in pending and "19.8x" not in pending and "Chapter 2" in pending
    ok = calibration_box(calibration_record({"rows": [_row(2, 100, 15.0), _row(2, 10_000, 50.0)]}, PARAMS))
    assert "within tolerance" in ok and "admonition important" in ok


def test_kinds() -> None:
    for t in TARGETS:
        assert finding_kind("lift", pool_size=t.pool_size) == "calibration"
    assert finding_kind("lift", pool_size=1000) == "prediction"
    assert finding_kind("lift", pool_size=100, top_rung=False) == "prediction"
    assert finding_kind("dp_cut") == "searched" and finding_kind("hard_negatives") == "prediction"
