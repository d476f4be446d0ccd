"""Set-up that several chapters share, so no notebook copies it.

:func:`mitigation_chapter` opens chapters 6-8: figure style, library warnings kept off the page,
and the per-rung mitigation at chapter 6's selected setting (cached after chapter 6 built it).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

from .cohorts.base import Cohort
from .config import ProfileLike, as_profile
from .dp.stage import RungMitigation, mitigation_ladder
from .models.stage import Rung
from .plots.common import set_style


@dataclass(frozen=True)
class MitigationChapter:
    """What chapters 6-8 start from: one :class:`~relink_lib.dp.stage.RungMitigation` per rung (the stage's
    frozen result); started: ``time.perf_counter()`` at the start (for the results' wall time, seconds)."""

    cohort: Cohort
    rungs: list[Rung]
    mitigations: list[RungMitigation]
    simulation: bool
    started: float = field(default_factory=time.perf_counter)

    def wall_time_s(self) -> float:
        """Seconds since the chapter started."""
        return time.perf_counter() - self.started


def mitigation_chapter(params: ProfileLike) -> MitigationChapter:
    """Open a DP chapter: style, warnings filtered (they carry local paths), cohort, rungs and mitigations."""
    started = time.perf_counter()
    warnings.filterwarnings("ignore", category=UserWarning)
    set_style()
    cfg = as_profile(params)
    cohort, rungs, mitigations = mitigation_ladder(cfg)
    return MitigationChapter(
        cohort=cohort,
        rungs=list(rungs),
        mitigations=list(mitigations),
        simulation=cfg.cohort.simulation,
        started=started,
    )
