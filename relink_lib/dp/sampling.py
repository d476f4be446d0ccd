"""Poisson sampling of privacy units: one image-report pair, or one patient with all their pairs.

With ``sampling="pair"`` each pair enters a step's batch independently with probability q;
the neighbouring relation is add/remove one pair. With ``sampling="patient"`` each PATIENT
enters with probability q together with all of their pairs, the per-patient summed gradient is
clipped, and the guarantee is for add/remove one patient (all of their studies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from ..config import SAMPLING_MODES  # defined with DPConfig's other names; re-exported here


@dataclass(frozen=True)
class PrivacyUnits:
    """Which privacy unit each training row belongs to.

    ``unit_of_row`` (n,) int64 in [0, n_units); ``kind`` is ``"pair"`` or ``"patient"``.
    """

    unit_of_row: Tensor
    n_units: int
    kind: str

    @property
    def max_rows_per_unit(self) -> int:
        return int(torch.bincount(self.unit_of_row, minlength=self.n_units).max()) if self.n_units else 0


def privacy_units(
    n_rows: int, sampling: str = "pair", patient_ids: Sequence | np.ndarray | None = None
) -> PrivacyUnits:
    """Privacy units for ``n_rows`` training pairs; ``patient_ids`` (n_rows,) is needed for ``"patient"``."""
    if sampling not in SAMPLING_MODES:
        raise ValueError(f"sampling: expected one of {SAMPLING_MODES}, got {sampling!r}")
    if sampling == "pair":
        return PrivacyUnits(torch.arange(n_rows), n_rows, "pair")
    if patient_ids is None:
        raise ValueError("patient_ids: required with sampling='patient' (one id per training pair)")
    ids = np.asarray(patient_ids)
    if ids.shape != (n_rows,):
        raise ValueError(f"patient_ids: expected shape ({n_rows},) (one per training pair), got {ids.shape}")
    _, inverse = np.unique(ids, return_inverse=True)
    return PrivacyUnits(torch.as_tensor(inverse.reshape(-1), dtype=torch.int64), int(inverse.max()) + 1, "patient")


def poisson_batches(
    units: PrivacyUnits, sample_rate: float, steps: int, generator: torch.Generator
) -> Iterator[tuple[Tensor, Tensor, int]]:
    """Yield ``(rows, groups, n_groups)`` per step.

    Each unit is included independently with probability ``sample_rate``; ``rows`` are the
    training rows of the included units and ``groups`` (len(rows),) their unit index within the
    batch in [0, n_groups). A batch may be empty.
    """
    if not 0 < sample_rate <= 1:
        raise ValueError(f"sample_rate: expected a probability in (0, 1], got {sample_rate}")
    for _ in range(int(steps)):
        take = torch.rand(units.n_units, generator=generator) < sample_rate
        row_mask = take[units.unit_of_row]
        rows = torch.nonzero(row_mask, as_tuple=False).flatten()
        if units.kind == "pair":
            yield rows, torch.arange(rows.numel()), int(rows.numel())
        else:
            _, groups = torch.unique(units.unit_of_row[rows], return_inverse=True)
            yield rows, groups.reshape(-1), int(take.sum())
