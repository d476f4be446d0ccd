"""Result types and data checks of DP head training.

:class:`DPConfig` (the hyper-parameters) and the names its fields take live in
:mod:`relink_lib.config` with the rest of the configuration; they are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from torch import nn

from ..config import ENGINES, OPTIMIZERS, DPConfig

__all__ = ["DPConfig", "ENGINES", "OPTIMIZERS", "HeadTrainingResult", "check_delta"]


def check_delta(delta: float, n_units: int, unit: str = "pair") -> None:
    """Refuse ``delta >= 1 / n_units``.

    A mechanism that releases one random unit's data outright is (0, 1/n)-DP: with delta at or
    above 1/n the (eps, delta) guarantee allows exactly that, so it protects no one. Raises
    ``ValueError`` naming delta, n and the bound.
    """
    if n_units >= 1 and delta >= 1.0 / n_units:
        raise ValueError(
            f"DPConfig.delta={delta!r}: expected delta < 1/n_private = 1/{n_units} = {1.0 / n_units:.3g} "
            f"(n_private = {n_units} private {unit}s); with delta >= 1/n a mechanism that publishes one "
            f"random {unit} in the clear satisfies the guarantee, so it protects nobody"
        )


@dataclass
class HeadTrainingResult:
    """Trained head copies, the privacy record and the training history.

    ``record``: target_epsilon, epsilon, delta, noise_multiplier, sample_rate, steps,
    max_grad_norm, accountant, and the unit, neighbouring relation, engine, ...
    ``history``: one row per epoch end (step, epoch, epsilon spent, public eval loss, ...).
    """

    image_head: nn.Module
    text_head: nn.Module
    record: dict[str, Any]
    history: pd.DataFrame
