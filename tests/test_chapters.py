"""The shared opening of chapters 6-8 returns the mitigation of every rung and sets the figure style."""

from __future__ import annotations

import matplotlib as mpl

from relink_lib.chapters import mitigation_chapter
from relink_lib.profiles import get_profile


def test_mitigation_chapter_opens_with_one_mitigation_per_rung():
    params = get_profile(
        "smoke", {"ladder": {"rungs": ("captions", "full-reports")}, "dp": {"frontier": {"scaling_factors": ()}}}
    )
    mpl.rcdefaults()
    chapter = mitigation_chapter(params)
    assert [r.name for r in chapter.rungs] == ["captions", "full-reports"]
    assert [m.rung_name for m in chapter.mitigations] == ["captions", "full-reports"]
    assert chapter.simulation and chapter.wall_time_s() > 0
    assert mpl.rcParams["figure.dpi"] == 110 and not mpl.rcParams["axes.spines.top"]
