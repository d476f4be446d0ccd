"""The privacy-budget sweep: train the heads at each eps, then measure re-linkage, utility and risk.

For every target eps (``None`` = non-private) the mitigation's trainer
(:func:`relink_lib.dp.train_heads`) fine-tunes the heads on the same data, steps and objective;
the trainer's record gives sigma, q and T, from which :func:`privacy_risks` computes the
worst-case and relaxed ReRo bounds (prior kappa = 1 / number of privacy units), and
:func:`realistic_attack` runs the gradient-inversion attack on the trained heads. Re-linkage and
utility come from a caller-supplied ``evaluate(image_head, text_head) -> Evaluation`` so that this
module stays independent of the audit and utility code (see :mod:`relink_lib.risk.stage`).

:func:`budget_sweep` returns a :class:`SweepResult`: ``table``, one row per eps (the DP record,
the risks, the attack, the evaluation's scalars), and ``recall``, the evaluation's long rows
stacked with their ``target_epsilon`` (one row per eps and whatever the rows index, e.g. pool,
K and N). The chapter's stage (:func:`relink_lib.risk.stage.run_budget_sweep`) adds the threat
models and the settings; :meth:`SweepResult.to_json` is then ``results/<profile>/privacy_budget.json``'s
payload, written by the chapter's notebook.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..config import BudgetConfig, ProfileLike, as_profile
from ..dp import DPConfig, per_sample_head_grads, train_heads
from ..dp.objective import DEFAULT_TEMPERATURE
from ..results import jsonable
from .attack import AttackResult, gradient_inversion_attack
from .rero import kappa_for, no_dp_bounds, rero_bounds
from .tradeoff import DEFAULT_DISCRETIZATION, Mechanism

__all__ = [
    "AttackSettings",
    "Evaluation",
    "SweepResult",
    "privacy_risks",
    "realistic_attack",
    "budget_sweep",
    "door_position",
    "RECORD_FIELDS",
]

#: The DP record's fields copied into every sweep row.
RECORD_FIELDS = (
    "target_epsilon",
    "epsilon",
    "delta",
    "noise_multiplier",
    "sample_rate",
    "steps",
    "max_grad_norm",
    "accountant",
)


@dataclass(frozen=True)
class AttackSettings:
    """The realistic attack: ``n_targets`` training pairs attacked, ``n_candidates`` images to pick
    from (chance 1 / N), success also as |cos| >= ``cos_threshold``, ``n_updates`` intercepted
    updates per target, ``seed``. The profile's values: :meth:`from_config`."""

    n_targets: int
    n_candidates: int
    cos_threshold: float
    n_updates: int
    seed: int

    @classmethod
    def from_config(cls, budget: BudgetConfig, seed: int) -> "AttackSettings":
        """The ``attack_*`` settings of the profile's ``budget`` section, with the profile's seed."""
        return cls(
            n_targets=int(budget.attack_targets),
            n_candidates=int(budget.attack_candidates),
            cos_threshold=float(budget.attack_cos_threshold),
            n_updates=int(budget.attack_updates),
            seed=int(seed),
        )

    @classmethod
    def from_params(cls, params: ProfileLike) -> "AttackSettings":
        cfg = as_profile(params)
        return cls.from_config(cfg.budget, cfg.seed)


@dataclass(frozen=True)
class Evaluation:
    """What ``evaluate(image_head, text_head)`` returns for one trained model: ``metrics``, scalar
    columns of the per-eps table; ``recall``, long rows (any columns but ``target_epsilon``)."""

    metrics: Mapping[str, float]
    recall: pd.DataFrame = field(default_factory=pd.DataFrame)


def _none_eps(frame: pd.DataFrame) -> pd.DataFrame:
    """``target_epsilon`` as floats with ``None`` (not NaN) for the non-private rows."""
    if "target_epsilon" in frame.columns:
        eps = frame["target_epsilon"]
        frame["target_epsilon"] = eps.astype(object).where(eps.notna(), None)
    return frame


@dataclass(frozen=True, eq=False)
class SweepResult:
    """The privacy-budget sweep (chapter 9).

    ``table`` (JSON ``sweep``), one row per eps; ``recall``, one row per eps and evaluation row
    (``target_epsilon`` first, then the evaluation's columns); ``threat_models``, the rows of the
    chapter's threat-model table, and ``settings``, what the sweep ran with (both empty as
    :func:`budget_sweep` returns it; :func:`relink_lib.risk.stage.run_budget_sweep` fills them).
    """

    table: pd.DataFrame
    recall: pd.DataFrame
    threat_models: tuple[Mapping[str, str], ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"sweep": per-eps rows, "recall": long rows, "threat_models": [...], "settings": {...}}``, JSON-ready
        (the field names of ``privacy_budget.json``; tables as records through pandas, NaN and inf -> null)."""
        return {
            "sweep": json.loads(self.table.to_json(orient="records")),
            "recall": json.loads(self.recall.to_json(orient="records")),
            "threat_models": [dict(t) for t in self.threat_models],
            "settings": jsonable(self.settings),
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> "SweepResult":
        """The inverse of :meth:`to_json` (``target_epsilon`` null -> ``None``; missing ``threat_models`` or
        ``settings``, as in a cached sweep, -> empty)."""
        return cls(
            table=_none_eps(pd.DataFrame(list(payload["sweep"]))),
            recall=_none_eps(pd.DataFrame(list(payload["recall"]))),
            threat_models=tuple(dict(t) for t in payload.get("threat_models") or ()),
            settings=dict(payload.get("settings") or {}),
        )


def _is_private(record: Mapping[str, Any]) -> bool:
    sigma = record.get("noise_multiplier")
    return bool(record.get("private", True)) and sigma is not None and float(sigma) > 0


def privacy_risks(
    record: Mapping[str, Any],
    *,
    n_units: int | None = None,
    dof: int = 1,
    discretization: float = DEFAULT_DISCRETIZATION,
) -> dict[str, float]:
    """Worst-case and relaxed ReRo of one trained model from its DP record (probabilities).

    kappa = 1 / ``n_units`` (default ``record["n_units"]``, the privacy units the trainer sampled);
    ``dof`` and ``discretization`` (nats) as in :func:`relink_lib.risk.rero.rero_bounds`.
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
    return {
        "kappa": bounds.kappa,
        "worst_case_risk": bounds.worst_case,
        "worst_case_risk_lower": bounds.worst_case_lower,
        "worst_case_risk_gdp": bounds.worst_case_gdp,
        "relaxed_risk": bounds.relaxed,
        "relaxed_dof": bounds.relaxed_dof,
    }


def _linear_weight(head: nn.Module, name: str) -> torch.Tensor:
    if isinstance(head, nn.Linear) and head.bias is None:
        return head.weight.detach()
    raise TypeError(f"{name}: the realistic attack needs a bias-free nn.Linear head (got {type(head).__name__})")


def realistic_attack(
    image_head: nn.Module,
    text_head: nn.Module,
    image_feats: np.ndarray,
    text_feats: np.ndarray,
    *,
    bank_text_feats: np.ndarray,
    record: Mapping[str, Any],
    settings: AttackSettings,
    temperature: float | None = None,
    bank_image_feats: np.ndarray | None = None,
) -> AttackResult:
    """Attack ``settings.n_targets`` random training pairs of the trained heads.

    ``image_feats`` (n, d_img), ``text_feats`` (n, d_txt): the private training pairs; banks (m, d).
    Each target's per-sample gradient of the trainer's objective (:func:`relink_lib.dp.per_sample_head_grads`,
    temperature ``record["temperature"]``, else ``temperature``) is clipped as the trainer clips it
    (jointly over both heads, at ``record["max_grad_norm"]``), the image-head part is released with
    the record's noise, and the attack must pick the target's image among ``settings.n_candidates``
    training images. Non-private records release the raw gradient.
    """
    w_img, w_txt = _linear_weight(image_head, "image_head"), _linear_weight(text_head, "text_head")
    x_img = torch.as_tensor(np.asarray(image_feats), dtype=w_img.dtype)
    x_txt = torch.as_tensor(np.asarray(text_feats), dtype=w_txt.dtype)
    if x_img.shape[0] != x_txt.shape[0]:
        raise ValueError(
            f"image_feats/text_feats: expected the same number of rows, got {x_img.shape[0]} and {x_txt.shape[0]}"
        )
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
        g_img.numpy(),
        x_img.numpy(),
        targets,
        noise_multiplier=float(record["noise_multiplier"]) if private else 0.0,
        max_grad_norm=float(record["max_grad_norm"]) if private else None,
        n_candidates=settings.n_candidates,
        cos_threshold=settings.cos_threshold,
        n_updates=settings.n_updates,
        clip_norms=joint,
        seed=settings.seed + 1,
    )


def budget_sweep(
    image_feats: np.ndarray,
    text_feats: np.ndarray,
    image_head: nn.Module,
    text_head: nn.Module,
    *,
    bank_text_feats: np.ndarray,
    epsilons: Sequence[float | None],
    config: DPConfig,
    evaluate: Callable[[nn.Module, nn.Module], Evaluation],
    attack: AttackSettings,
    dof: int,
    discretization: float,
    patient_ids: np.ndarray | None = None,
    bank_image_feats: np.ndarray | None = None,
    progress: Callable[[str], None] | None = None,
) -> SweepResult:
    """Train and measure at each eps in ``epsilons`` (``None`` = non-private), in the given order.

    ``config``: the :class:`relink_lib.dp.DPConfig` of the sweep (the profile's
    ``DPSectionConfig.budget_sweep_training``); only ``target_epsilon`` changes
    between budgets (same data, steps, objective and seed). ``dof``, ``discretization`` (nats): of
    the ReRo bounds (:func:`privacy_risks`). ``evaluate(image_head, text_head)`` measures the
    trained heads (:class:`Evaluation`).

    ``table`` columns: :data:`RECORD_FIELDS`, ``kappa, worst_case_risk, worst_case_risk_lower,
    worst_case_risk_gdp, relaxed_risk, relaxed_dof, realistic_risk`` (re-identification rate of the
    attack), ``realistic_cosine_rate, realistic_mean_abs_cos, realistic_chance, attack_candidates,
    attack_targets, attack_cos_threshold, train_time_s, eval_time_s``, then the evaluation's
    metrics. ``recall``: ``target_epsilon``, then the evaluation's ``recall`` columns.
    """
    if len(epsilons) == 0:
        raise ValueError("epsilons: expected at least one budget (None = no DP)")
    for e in epsilons:
        if e is not None and not (isinstance(e, (int, float)) and math.isfinite(e) and e > 0):
            raise ValueError(f"epsilons: {e!r} is not a finite eps > 0 or None (no DP)")
    rows, recall = [], []
    for eps in epsilons:
        label = "no DP" if eps is None else f"eps={eps:g}"
        if progress:
            progress(f"budget sweep: training at {label}")
        cfg = config.replace(target_epsilon=None if eps is None else float(eps), noise_multiplier=None)
        result = train_heads(
            image_feats,
            text_feats,
            image_head,
            text_head,
            bank_text_feats=bank_text_feats,
            config=cfg,
            patient_ids=patient_ids,
            bank_image_feats=bank_image_feats,
        )
        rec = result.record
        row: dict[str, Any] = {k: rec.get(k) for k in RECORD_FIELDS}
        row["target_epsilon"] = None if eps is None else float(eps)
        row.update(privacy_risks(rec, dof=dof, discretization=discretization))
        att = realistic_attack(
            result.image_head,
            result.text_head,
            image_feats,
            text_feats,
            bank_text_feats=bank_text_feats,
            record=rec,
            settings=attack,
            temperature=cfg.temperature,
            bank_image_feats=bank_image_feats,
        )
        row.update(
            {
                "realistic_risk": att.reidentification_rate,
                "realistic_cosine_rate": att.cosine_rate,
                "realistic_mean_abs_cos": att.mean_abs_cos,
                "realistic_chance": att.chance,
                "attack_candidates": att.n_candidates,
                "attack_targets": att.n_targets,
                "attack_cos_threshold": att.cos_threshold,
                "train_time_s": rec.get("train_time_s"),
            }
        )
        t0 = time.perf_counter()
        evaluation = evaluate(result.image_head, result.text_head)
        row["eval_time_s"] = time.perf_counter() - t0
        metrics = dict(evaluation.metrics)
        clash = set(metrics) & set(row)
        if clash:
            raise ValueError(f"evaluate: returned metrics {sorted(clash)} that clash with the sweep's own columns")
        if "target_epsilon" in evaluation.recall.columns:
            raise ValueError("evaluate: its recall rows must not carry target_epsilon (the sweep adds it)")
        row.update(metrics)
        rows.append(row)
        recall.append(
            evaluation.recall.assign(target_epsilon=row["target_epsilon"])[
                ["target_epsilon", *evaluation.recall.columns]
            ]
        )
    return SweepResult(table=pd.DataFrame(rows), recall=pd.concat(recall, ignore_index=True))


def door_position(table: pd.DataFrame, column: str) -> pd.Series:
    """Where each budget lands between the strictest budget ("vault door", 0) and no DP ("no door", 1).

    (value - value at the smallest eps) / (value without DP - value at the smallest eps), per row,
    for a per-eps table with a non-private row. NaN when the two ends coincide (nothing to place).
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
