"""The privacy-budget sweep: train the heads at each eps, then measure re-linkage, utility and risk.

For every target eps (``None`` = non-private) the mitigation's trainer
(:func:`relink_lib.dp.train_heads`) fine-tunes the heads on the same data, steps and objective;
the trainer's record gives sigma, q and T, from which :func:`privacy_risks` computes the
worst-case and relaxed ReRo bounds (prior kappa = 1 / number of privacy units), and
:func:`realistic_attack` runs the gradient-inversion attack on the trained heads. Re-linkage and
utility come from a caller-supplied ``evaluate(image_head, text_head) -> dict`` so that this module
stays independent of the audit and utility code (see :mod:`relink_lib.risk.stage`).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .attack import DEFAULT_COS_THRESHOLD, AttackResult, gradient_inversion_attack
from .rero import kappa_for, no_dp_bounds, rero_bounds
from .tradeoff import DEFAULT_DISCRETIZATION, Mechanism

__all__ = ["AttackSettings", "privacy_risks", "realistic_attack", "budget_sweep", "door_position", "RECORD_FIELDS"]

#: The DP record's fields copied into every sweep row.
RECORD_FIELDS = ("target_epsilon", "epsilon", "delta", "noise_multiplier", "sample_rate", "steps",
                 "max_grad_norm", "accountant")


@dataclass(frozen=True)
class AttackSettings:
    """The realistic attack: ``n_targets`` training pairs attacked, ``n_candidates`` images to pick
    from (chance 1 / N), success also as |cos| >= ``cos_threshold``, ``n_updates`` intercepted
    updates per target, ``seed``."""

    n_targets: int = 100
    n_candidates: int = 100
    cos_threshold: float = DEFAULT_COS_THRESHOLD
    n_updates: int = 1
    seed: int = 0

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "AttackSettings":
        b = params.get("budget", {})
        return cls(n_targets=int(b.get("attack_targets", cls.n_targets)),
                   n_candidates=int(b.get("attack_candidates", cls.n_candidates)),
                   cos_threshold=float(b.get("attack_cos_threshold", cls.cos_threshold)),
                   n_updates=int(b.get("attack_updates", cls.n_updates)),
                   seed=int(params.get("seed", 0)))


def _is_private(record: Mapping[str, Any]) -> bool:
    sigma = record.get("noise_multiplier")
    return bool(record.get("private", True)) and sigma is not None and float(sigma) > 0


def privacy_risks(record: Mapping[str, Any], *, n_units: int | None = None, dof: int = 1,
                  discretization: float = DEFAULT_DISCRETIZATION) -> dict[str, float]:
    """Worst-case and relaxed ReRo of one trained model from its DP record.

    kappa = 1 / ``n_units`` (default ``record["n_units"]``, the privacy units the trainer sampled).
    A non-private record (no noise) gets risk 1: no bound holds.
    """
    missing = [k for k in ("noise_multiplier", "sample_rate", "steps") if k not in record]
    if missing:
        raise ValueError(f"record: missing {missing}; expected the trainer's DP record")
    units = n_units if n_units is not None else record.get("n_units")
    if units is None:
        raise ValueError("n_units: not given and not in the record")
    kappa = kappa_for(int(units))
    if not _is_private(record):
        bounds = no_dp_bounds(kappa, dof)
    else:
        mech = Mechanism(float(record["noise_multiplier"]), float(record["sample_rate"]), int(record["steps"]))
        bounds = rero_bounds(kappa, mech, dof=dof, discretization=discretization)
    return {"kappa": bounds.kappa, "worst_case_risk": bounds.worst_case, "worst_case_risk_lower": bounds.worst_case_lower,
            "worst_case_risk_gdp": bounds.worst_case_gdp, "relaxed_risk": bounds.relaxed, "relaxed_dof": bounds.relaxed_dof}


def _linear_weight(head: nn.Module, name: str) -> torch.Tensor:
    if isinstance(head, nn.Linear) and head.bias is None:
        return head.weight.detach()
    raise TypeError(f"{name}: the realistic attack needs a bias-free nn.Linear head (got {type(head).__name__})")


def realistic_attack(image_head: nn.Module, text_head: nn.Module, image_feats: Any, text_feats: Any, *,
                     bank_text_feats: Any, record: Mapping[str, Any], settings: AttackSettings,
                     temperature: float | None = None, bank_image_feats: Any | None = None) -> AttackResult:
    """Attack ``settings.n_targets`` random training pairs of the trained heads.

    Each target's per-sample gradient of the trainer's objective (:func:`relink_lib.dp.per_sample_head_grads`)
    is clipped as the trainer clips it (jointly over both heads, at ``record["max_grad_norm"]``), the
    image-head part is released with the record's noise, and the attack must pick the target's image
    among ``settings.n_candidates`` training images. Non-private records release the raw gradient.
    """
    from ..dp import per_sample_head_grads
    from ..dp.objective import DEFAULT_TEMPERATURE

    w_img, w_txt = _linear_weight(image_head, "image_head"), _linear_weight(text_head, "text_head")
    x_img = torch.as_tensor(np.asarray(image_feats), dtype=w_img.dtype)
    x_txt = torch.as_tensor(np.asarray(text_feats), dtype=w_txt.dtype)
    if x_img.shape[0] != x_txt.shape[0]:
        raise ValueError(f"image_feats/text_feats: expected the same number of rows, got {x_img.shape[0]} and {x_txt.shape[0]}")
    n = x_img.shape[0]
    if settings.n_candidates > n:
        raise ValueError(f"settings.n_candidates={settings.n_candidates}: more than the {n} training images")
    rng = np.random.default_rng(settings.seed)
    targets = np.sort(rng.choice(n, size=min(settings.n_targets, n), replace=False))
    bank_t = torch.as_tensor(np.asarray(bank_text_feats), dtype=w_txt.dtype)
    bank_i = None if bank_image_feats is None else torch.as_tensor(np.asarray(bank_image_feats), dtype=w_img.dtype)
    tau = float(record.get("temperature") or temperature or DEFAULT_TEMPERATURE)
    g_img, g_txt = per_sample_head_grads(w_img, w_txt, x_img[targets], x_txt[targets], bank_t, bank_i, tau)
    joint = torch.sqrt((g_img**2).sum((1, 2)) + (g_txt**2).sum((1, 2))).numpy()
    private = _is_private(record)
    return gradient_inversion_attack(
        g_img.numpy(), x_img.numpy(), targets,
        noise_multiplier=float(record["noise_multiplier"]) if private else 0.0,
        max_grad_norm=float(record["max_grad_norm"]) if private else None,
        n_candidates=settings.n_candidates, cos_threshold=settings.cos_threshold, n_updates=settings.n_updates,
        clip_norms=joint, seed=settings.seed + 1)


def budget_sweep(image_feats: Any, text_feats: Any, image_head: nn.Module, text_head: nn.Module, *,
                 bank_text_feats: Any, epsilons: Sequence[float | None], config: Any,
                 evaluate: Callable[[nn.Module, nn.Module], Mapping[str, Any]],
                 attack: AttackSettings = AttackSettings(), patient_ids: Any | None = None,
                 bank_image_feats: Any | None = None, dof: int = 1,
                 discretization: float = DEFAULT_DISCRETIZATION,
                 progress: Callable[[str], None] | None = None) -> pd.DataFrame:
    """One row per eps in ``epsilons`` (``None`` = non-private), in the given order.

    ``config``: the mitigation's :class:`relink_lib.dp.DPConfig`; only ``target_epsilon`` changes
    between rows (same data, steps, objective and seed). ``evaluate(image_head, text_head)``
    returns the re-linkage and utility numbers of the trained heads (flat dict, merged into the row).
    Columns: :data:`RECORD_FIELDS`, ``kappa, worst_case_risk, worst_case_risk_lower,
    worst_case_risk_gdp, relaxed_risk, relaxed_dof, realistic_risk`` (re-identification rate of the
    attack), ``realistic_cosine_rate, realistic_mean_abs_cos, realistic_chance, attack_candidates,
    attack_targets, train_time_s, eval_time_s``, then the ``evaluate`` columns.
    """
    from ..dp import train_heads

    if len(epsilons) == 0:
        raise ValueError("epsilons: expected at least one budget (None = no DP)")
    for e in epsilons:
        if e is not None and not (isinstance(e, (int, float)) and math.isfinite(e) and e > 0):
            raise ValueError(f"epsilons: {e!r} is not a finite eps > 0 or None (no DP)")
    rows = []
    for eps in epsilons:
        label = "no DP" if eps is None else f"eps={eps:g}"
        if progress:
            progress(f"budget sweep: training at {label}")
        cfg = config.replace(target_epsilon=None if eps is None else float(eps), noise_multiplier=None)
        result = train_heads(image_feats, text_feats, image_head, text_head, bank_text_feats=bank_text_feats,
                             config=cfg, patient_ids=patient_ids, bank_image_feats=bank_image_feats)
        rec = result.record
        row: dict[str, Any] = {k: rec.get(k) for k in RECORD_FIELDS}
        row["target_epsilon"] = None if eps is None else float(eps)
        row.update(privacy_risks(rec, dof=dof, discretization=discretization))
        att = realistic_attack(result.image_head, result.text_head, image_feats, text_feats,
                               bank_text_feats=bank_text_feats, record=rec, settings=attack,
                               temperature=getattr(cfg, "temperature", None), bank_image_feats=bank_image_feats)
        row.update({"realistic_risk": att.reidentification_rate, "realistic_cosine_rate": att.cosine_rate,
                    "realistic_mean_abs_cos": att.mean_abs_cos, "realistic_chance": att.chance,
                    "attack_candidates": att.n_candidates, "attack_targets": att.n_targets,
                    "attack_cos_threshold": att.cos_threshold, "train_time_s": rec.get("train_time_s")})
        t0 = time.perf_counter()
        metrics = dict(evaluate(result.image_head, result.text_head))
        row["eval_time_s"] = time.perf_counter() - t0
        clash = set(metrics) & set(row)
        if clash:
            raise ValueError(f"evaluate: returned keys {sorted(clash)} that clash with the sweep's own columns")
        row.update(metrics)
        rows.append(row)
    return pd.DataFrame(rows)


def door_position(table: pd.DataFrame, column: str) -> pd.Series:
    """Where each budget lands between the strictest budget ("vault door", 0) and no DP ("no door", 1).

    (value - value at the smallest eps) / (value without DP - value at the smallest eps), per row,
    for a sweep table with a non-private row. NaN when the two ends coincide (nothing to place).
    """
    if column not in table.columns:
        raise ValueError(f"column={column!r}: not in the sweep table (columns: {sorted(table.columns)})")
    eps = pd.to_numeric(table["target_epsilon"], errors="coerce")
    no_dp = eps.isna()
    if not no_dp.any() or no_dp.all():
        raise ValueError("table: needs a non-private row (target_epsilon None) and at least one DP row")
    vault = float(table.loc[eps.idxmin(), column])
    door = float(table.loc[no_dp, column].iloc[0])
    span = door - vault
    if not math.isfinite(span) or abs(span) < 1e-12:
        return pd.Series(np.nan, index=table.index, name=column)
    return ((table[column].astype(float) - vault) / span).rename(column)
