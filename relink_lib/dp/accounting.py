"""Independent recomputation of epsilon with Google's dp-accounting (PLD and RDP).

The training run's epsilon comes from Opacus' RDP analysis (:mod:`relink_lib.dp.calibrate`).
Here the same mechanism (``steps`` compositions of a Poisson-subsampled Gaussian with the
recorded noise multiplier and sample rate, add/remove-one neighbouring relation) is described
as a ``dp_accounting`` event and re-accounted by a separate implementation:

- RDP (``dp_accounting.rdp.RdpAccountant``) over the same orders: must agree to ~1e-6;
- PLD (``dp_accounting.pld.PLDAccountant``): a tight numerical accountant; RDP is an upper
  bound, so PLD's epsilon is at most the recorded one (up to discretisation), typically lower.

Group privacy for patients with several pairs when the unit is one pair is in :func:`group_privacy`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import dp_accounting
from dp_accounting import pld as _pld
from dp_accounting import rdp as _rdpacc

from .calibrate import RDP_ORDERS, rdp_epsilon

PLD_MAX_EPSILON = 50.0
"""Above this the PLD grid is not meaningful/fast; :func:`independent_epsilons` reports ``None``."""


def dp_event(noise_multiplier: float, sample_rate: float, steps: int) -> dp_accounting.DpEvent:
    """The training mechanism as a dp-accounting event."""
    gauss = dp_accounting.GaussianDpEvent(noise_multiplier)
    return dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(sample_rate, gauss), int(steps))


def epsilon_dp_accounting(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    method: str = "pld",
    orders: tuple[float, ...] = RDP_ORDERS,
    pld_discretization: float | None = None,
) -> float:
    """Epsilon from dp-accounting with ``method`` = ``"pld"`` or ``"rdp"``.

    ``pld_discretization``: the PLD grid step of privacy-loss values; default ``1e-4``, widened to
    ``1e-4 * RDP-epsilon`` for budgets above 1 (dp-accounting discretises pessimistically, so a
    coarser grid only moves epsilon up, by about the grid step).
    """
    if method == "rdp":
        acc = _rdpacc.RdpAccountant(orders=list(orders))
    elif method == "pld":
        if pld_discretization is None:
            pld_discretization = 1e-4 * max(
                1.0, rdp_epsilon(noise_multiplier, sample_rate, steps, delta, orders, backend="numpy")[0]
            )
        acc = _pld.PLDAccountant(value_discretization_interval=pld_discretization)
    else:
        raise ValueError(f"method: expected 'pld' or 'rdp', got {method!r}")
    acc.compose(dp_event(noise_multiplier, sample_rate, steps))
    return float(acc.get_epsilon(delta))


def independent_epsilons(record: Mapping[str, Any]) -> dict[str, float | None]:
    """Recompute a DP record's epsilon: Opacus RDP, dp-accounting RDP and dp-accounting PLD.

    ``record`` needs ``noise_multiplier, sample_rate, steps, delta``. PLD is ``None`` when the
    recorded epsilon exceeds :data:`PLD_MAX_EPSILON`.
    """
    for key in ("noise_multiplier", "sample_rate", "steps", "delta"):
        if record.get(key) is None:
            raise ValueError(f"record: missing {key!r} (a non-private run has no epsilon to recompute)")
    sigma, q, steps, delta = (
        float(record["noise_multiplier"]),
        float(record["sample_rate"]),
        int(record["steps"]),
        float(record["delta"]),
    )
    eps_opacus = rdp_epsilon(sigma, q, steps, delta)[0]
    out: dict[str, float | None] = {
        "opacus_rdp": eps_opacus,
        "dp_accounting_rdp": epsilon_dp_accounting(sigma, q, steps, delta, "rdp"),
        "dp_accounting_pld": None,
    }
    if eps_opacus <= PLD_MAX_EPSILON:
        out["dp_accounting_pld"] = epsilon_dp_accounting(sigma, q, steps, delta, "pld")
    return out


def group_privacy(epsilon: float, delta: float, group_size: int) -> tuple[float, float]:
    """(eps, delta) for a group of ``group_size`` units from a per-unit (eps, delta) guarantee.

    The standard bound (Dwork & Roth, Lemma 2.2 generalised): ``(k eps, k e^{(k-1) eps} delta)``.
    Used for patients with ``k`` image-report pairs when the unit of privacy is one pair.
    """
    if int(group_size) != group_size or group_size < 1:
        raise ValueError(f"group_size: expected a positive integer, got {group_size}")
    k = int(group_size)
    if not math.isfinite(epsilon):
        return math.inf, 1.0
    exponent = (k - 1) * epsilon
    grp_delta = 1.0 if exponent > 700 else min(1.0, k * math.exp(exponent) * delta)
    return k * epsilon, grp_delta
