"""Shared figure helpers: non-overlapping log ticks, log limits that ignore zeros, the simulation stamp."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from relink_lib.plots.common import (
    SIMULATION_NOTE,
    clip_for_log,
    label_simulation,
    log_limits,
    log_pool_axis,  # noqa: E402
    spaced_log_ticks,
)


def test_spaced_ticks_drop_the_smaller_of_two_close_values():
    assert spaced_log_ticks([10, 100, 1000, 10_000, 10_861]) == [10, 100, 1000, 10_861]
    assert spaced_log_ticks([10, 100, 220]) == [10, 100, 220]  # 0.34 decades apart: both kept
    assert spaced_log_ticks([0, None, 5]) == [5]


def test_full_database_tick_never_overlaps_a_pool_size():
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    ax.plot([10, 10_861], [0.1, 0.01])
    log_pool_axis(ax, (10, 100, 1000, 10_000, 10_861), full_size=10_861)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["10", "100", "1,000", "full\n(10,861)"]
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.get_xticklabels()]
    assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))
    plt.close(fig)


def test_log_limits_ignore_zeros_and_clip_for_log_raises_them():
    lo, hi = log_limits([0.0, 0.002, 0.02, np.nan, -1.0])
    assert lo == pytest.approx(0.002 / 10**0.15) and hi == pytest.approx(0.02 * 10**0.15)
    assert clip_for_log([0.0, 0.5, np.nan], lo).tolist() == [lo, 0.5, lo]
    with pytest.raises(ValueError, match="no positive finite value"):
        log_limits([0.0, np.nan])


def test_simulation_stamp_sits_outside_the_axes_once_per_figure():
    fig, axes = plt.subplots(1, 2)
    for ax in axes:
        label_simulation(ax)
    stamps = [t for t in fig.texts if t.get_text() == SIMULATION_NOTE]
    assert len(stamps) == 1
    fig.canvas.draw()
    box = stamps[0].get_window_extent()
    for ax in axes:  # above every axes' data area: it covers no bar, cell or legend inside the axes
        assert box.y0 >= ax.get_window_extent().y1
    plt.close(fig)
