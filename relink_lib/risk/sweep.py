"""The privacy-budget sweep: train the heads at each eps and seed, then measure re-linkage, utility and risk.

For every target eps (``None`` = non-private) and every seed the mitigation's trainer
(:func:`relink_lib.dp.train_heads`) trains the heads from ``start(seed)`` (chapter 9: fresh,
data-independent heads drawn from the seed) on the same data, steps and objective; the trainer's
record gives sigma, q and T, from which :func:`privacy_risks` computes the worst-case and relaxed
ReRo bounds at the training-set prior (kappa = 1 / number of privacy units) and :func:`prior_risks`
at the re-linkage priors (kappa = 1 / N for the audit's pool sizes), and :func:`gradient_access_attack`
runs the gradient-access reconstruction (the attacker sees one pair's clipped noisy per-sample update)
on the trained heads. Re-linkage and utility come from a caller-supplied
``evaluate(image_head, text_head) -> Evaluation`` so that this module stays independent of the audit
and utility code (see :mod:`relink_lib.risk.stage`).

:func:`budget_sweep` returns a :class:`SweepResult`: ``table``, one row per eps (the DP record, the
risks, the attack and the evaluation's scalars as means over seeds, and the relative cut of
Recall@1 with its CI: :func:`cut_interval`); ``recall``, the evaluation's long rows averaged over
seeds and stacked with their ``target_epsilon``; ``rero``, the bounds at each prior, one row per eps
and prior; ``runs``, one row per eps and seed. The chapter's stage
(:func:`relink_lib.risk.stage.run_budget_sweep`) adds the threat models, the settings and the start;
:meth:`SweepResult.to_json` is then ``results/<profile>/privacy_budget.json``'s payload, written by the
chapter's notebook.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..audit.bootstrap import patient_bootstrap, percentile_interval
from ..config import BudgetConfig, ProfileLike, as_profile
from ..dp import DPConfig, per_sample_head_grads
from ..dp.batched import train_heads_seeds
from ..dp.objective import DEFAULT_TEMPERATURE
from ..results import jsonable
from .attack import AttackResult, gradient_inversion_attack
from .rero import kappa_for, no_dp_bounds, rero_bounds
from .tradeoff import DEFAULT_DISCRETIZATION, Mechanism

__all__ = [
    "AttackSettings",
    "CutBaseline",
    "Evaluation",
    "SweepResult",
    "privacy_risks",
    "prior_risks",
    "gradient_access_attack",
    "cut_interval",
    "budget_sweep",
    "door_position",
    "RECORD_FIELDS",
    "ATTACK_COLUMNS",
    "RERO_COLUMNS",
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

#: The gradient-access reconstruction's columns of the per-eps table (means over seeds).
ATTACK_COLUMNS = (
    "gradient_access_risk",
    "gradient_access_cosine_rate",
    "gradient_access_mean_abs_cos",
    "gradient_access_chance",
)

#: Columns of the long ReRo table, one row per (eps, prior).
RERO_COLUMNS = (
    "target_epsilon",
    "prior",
    "N",
    "kappa",
    "worst_case_risk",
    "worst_case_risk_lower",
    "relaxed_risk",
)

Heads = tuple[nn.Module, nn.Module]


@dataclass(frozen=True)
class AttackSettings:
    """The gradient-access reconstruction: ``n_targets`` training pairs attacked, ``n_candidates`` images to
    pick from (chance 1 / N), success also as |cos| >= ``cos_threshold``, ``n_updates`` intercepted
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


@dataclass(frozen=True, eq=False)
class Evaluation:
    """What ``evaluate(image_head, text_head)`` returns for one trained model: ``metrics``, scalar
    columns of the per-eps table; ``recall``, long rows (any columns but ``target_epsilon``, the
    values in ``recall`` and ``lift``); ``per_query``, each held-out query's expected Recall@1 at the
    cut's pool size (:class:`CutBaseline`; ``None`` when no cut is measured)."""

    metrics: Mapping[str, float]
    recall: pd.DataFrame = field(default_factory=pd.DataFrame)
    per_query: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class CutBaseline:
    """What the relative cut of Recall@1 is measured against: ``per_query`` (n,), each held-out query's
    expected Recall@1 with the pretrained heads at pool size ``pool_size`` (``None``: the full database);
    ``patient_ids`` (n,), the clusters of the bootstrap; ``n_boot`` replicates, ``seed``, ``level``."""

    per_query: np.ndarray
    patient_ids: np.ndarray
    pool_size: int | None
    n_boot: int
    seed: int
    level: float = 0.95


def _none_eps(frame: pd.DataFrame) -> pd.DataFrame:
    """``target_epsilon`` as floats with ``None`` (not NaN) for the non-private rows."""
    if "target_epsilon" in frame.columns:
        eps = frame["target_epsilon"]
        frame["target_epsilon"] = eps.astype(object).where(eps.notna(), None)
    return frame


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records")) if len(frame.columns) else []


@dataclass(frozen=True, eq=False)
class SweepResult:
    """The privacy-budget sweep (chapter 9).

    ``table`` (JSON ``sweep``), one row per eps; ``recall``, one row per eps and evaluation row
    (``target_epsilon`` first, then the evaluation's columns; means over seeds); ``rero``, one row per
    eps and prior (:data:`RERO_COLUMNS`); ``runs``, one row per eps and seed; ``threat_models``, the rows
    of the chapter's threat-model table; ``settings``, what the sweep ran with; ``start``, the heads
    and schedule it trained from (the last three empty as :func:`budget_sweep` returns it;
    :func:`relink_lib.risk.stage.run_budget_sweep` fills them).
    """

    table: pd.DataFrame
    recall: pd.DataFrame
    rero: pd.DataFrame = field(default_factory=pd.DataFrame)
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    threat_models: tuple[Mapping[str, str], ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)
    start: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """``{"sweep", "recall", "rero", "runs", "threat_models", "settings", "start"}``, JSON-ready (the field
        names of ``privacy_budget.json``; tables as records through pandas, NaN and inf -> null)."""
        return {
            "sweep": _records(self.table),
            "recall": _records(self.recall),
            "rero": _records(self.rero),
            "runs": _records(self.runs),
            "threat_models": [dict(t) for t in self.threat_models],
            "settings": jsonable(self.settings),
            "start": jsonable(self.start),
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> "SweepResult":
        """The inverse of :meth:`to_json` (``target_epsilon`` null -> ``None``; missing ``rero``, ``runs``,
        ``threat_models``, ``settings`` or ``start``, as in a cached sweep, -> empty)."""
        return cls(
            table=_none_eps(pd.DataFrame(list(payload["sweep"]))),
            recall=_none_eps(pd.DataFrame(list(payload["recall"]))),
            rero=_none_eps(pd.DataFrame(list(payload.get("rero") or []))),
            runs=_none_eps(pd.DataFrame(list(payload.get("runs") or []))),
            threat_models=tuple(dict(t) for t in payload.get("threat_models") or ()),
            settings=dict(payload.get("settings") or {}),
            start=dict(payload.get("start") or {}),
        )


def _is_private(record: Mapping[str, Any]) -> bool:
    sigma = record.get("noise_multiplier")
    return bool(record.get("private", True)) and sigma is not None and float(sigma) > 0


def _check_record(record: Mapping[str, Any]) -> None:
    missing = [k for k in ("noise_multiplier", "sample_rate", "steps") if k not in record]
    if missing:
        raise ValueError(f"record: missing {missing}; expected the trainer's DP record")


def privacy_risks(
    record: Mapping[str, Any],
    *,
    n_units: int | None = None,
    dof: int = 1,
    discretization: float = DEFAULT_DISCRETIZATION,
) -> dict[str, float]:
    """Worst-case and relaxed ReRo of one trained model from its DP record at the training-set prior.

    kappa = 1 / ``n_units`` (default ``record["n_units"]``, the privacy units the trainer sampled);
    ``dof`` and ``discretization`` (nats) as in :func:`relink_lib.risk.rero.rero_bounds`.
    A non-private record (no noise) gets risk 1: no bound holds.
    """
    _check_record(record)
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


def prior_risks(
    record: Mapping[str, Any],
    priors: Sequence[tuple[str, int]],
    *,
    dof: int = 1,
    discretization: float = DEFAULT_DISCRETIZATION,
) -> list[dict[str, Any]]:
    """The ReRo bounds of one trained model at several priors, one dict per prior (:data:`RERO_COLUMNS` but
    ``target_epsilon``).

    ``priors``: ``(name, N)`` pairs, kappa = 1 / N: ``("training set", n_units)`` is the worst case's prior
    (match the target among the training set), ``("re-linkage", N)`` the re-linker's (pick the target's
    report among a pool of N). The mechanism (and so its PLD, cached) is the same for every prior.
    """
    _check_record(record)
    private = _is_private(record)
    mech = (
        Mechanism(float(record["noise_multiplier"]), float(record["sample_rate"]), int(record["steps"]))
        if private
        else None
    )
    out = []
    for name, n in priors:
        kappa = kappa_for(int(n))
        b = rero_bounds(kappa, mech, dof=dof, discretization=discretization) if mech else no_dp_bounds(kappa, dof)
        out.append(
            {
                "prior": str(name),
                "N": int(n),
                "kappa": b.kappa,
                "worst_case_risk": b.worst_case,
                "worst_case_risk_lower": b.worst_case_lower,
                "relaxed_risk": b.relaxed,
            }
        )
    return out


def _linear_weight(head: nn.Module, name: str) -> torch.Tensor:
    if isinstance(head, nn.Linear) and head.bias is None:
        return head.weight.detach()
    raise TypeError(
        f"{name}: the gradient-access reconstruction needs a bias-free nn.Linear head (got {type(head).__name__})"
    )


def gradient_access_attack(
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
    """The gradient-access reconstruction on ``settings.n_targets`` random training pairs of the trained heads.

    ``image_feats`` (n, d_img), ``text_feats`` (n, d_txt): the private training pairs; banks (m, d).
    Each target's per-sample gradient of the trainer's objective (:func:`relink_lib.dp.per_sample_head_grads`,
    temperature ``record["temperature"]``, else ``temperature``) is clipped as the trainer clips it
    (jointly over both heads, at ``record["max_grad_norm"]``), the image-head part is released with
    the record's noise (the attacker sees this one pair's update: gradient access), and the attack must
    pick the target's image among ``settings.n_candidates`` training images. Non-private records release
    the raw gradient.
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


def cut_interval(
    before: np.ndarray,
    after: np.ndarray,
    patient_ids: Any,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """The relative cut ``1 - mean(after) / mean(before)`` and its CI over held-out patients and seeds.

    ``before`` (n,): per-query Recall@1 of the reference heads; ``after`` (n, S): of the trained heads, one
    column per seed; ``patient_ids`` (n,): the clusters. Each replicate resamples the patients (all columns
    together, :func:`relink_lib.audit.bootstrap.patient_bootstrap`) and, independently, S seeds with
    replacement, so the interval holds both the held-out sampling and the seed-to-seed spread (with one seed
    it is the patient bootstrap alone). Returns ``(cut, low, high)``; NaN where ``mean(before)`` is 0.
    """
    before = np.asarray(before, dtype=float)
    after = np.asarray(after, dtype=float)
    if after.ndim == 1:
        after = after[:, None]
    if before.ndim != 1 or after.ndim != 2 or after.shape[0] != before.shape[0] or after.shape[1] < 1:
        raise ValueError(
            f"before/after: expected (n,) and (n, S) arrays with the same n, got {before.shape} and {after.shape}"
        )
    keep = np.isfinite(before) & np.all(np.isfinite(after), axis=1)
    ids = np.asarray(patient_ids)[keep] if patient_ids is not None else None
    before, after = before[keep], after[keep]
    base = float(before.mean()) if len(before) else math.nan
    if not base > 0:
        return math.nan, math.nan, math.nan
    point = 1.0 - float(after.mean()) / base
    reps = patient_bootstrap({"before": before, "after": after}, ids, n_boot=n_boot, seed=seed)
    n_seeds = after.shape[1]
    rng = np.random.default_rng(seed + 1)
    pick = rng.integers(0, n_seeds, size=(n_boot, n_seeds)) if n_seeds > 1 else np.zeros((n_boot, 1), dtype=int)
    after_rep = np.take_along_axis(reps["after"], pick, axis=1).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = 1.0 - after_rep / reps["before"]
    ratio = ratio[np.isfinite(ratio)]
    if len(ratio) == 0:
        return point, math.nan, math.nan
    lo, hi = percentile_interval(ratio, level)
    return point, float(lo), float(hi)


def _mean_recall(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The seeds' long rows (same rows in the same order) with ``recall`` and ``lift`` averaged over seeds."""
    first = frames[0].reset_index(drop=True)
    values = [c for c in ("recall", "lift") if c in first.columns]
    keys = [c for c in first.columns if c not in values]
    out = first.copy()
    for f in frames[1:]:
        f = f.reset_index(drop=True)
        if list(f.columns) != list(first.columns) or not f[keys].equals(first[keys]):
            raise ValueError("evaluate: returned different recall rows for two seeds of one budget")
    for c in values:
        out[c] = np.mean([f[c].astype(float).to_numpy() for f in frames], axis=0)
    return out


def _seed_mean(rows: Sequence[Mapping[str, Any]], column: str) -> tuple[float, float]:
    vals = np.array([float(r[column]) for r in rows], dtype=float)
    return float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else math.nan


def budget_sweep(
    image_feats: np.ndarray,
    text_feats: np.ndarray,
    start: Callable[[int], Heads],
    *,
    bank_text_feats: np.ndarray,
    epsilons: Sequence[float | None],
    config: DPConfig,
    evaluate: Callable[[nn.Module, nn.Module], Evaluation],
    attack: AttackSettings,
    dof: int,
    discretization: float,
    seeds: Sequence[int] | None = None,
    patient_ids: np.ndarray | None = None,
    bank_image_feats: np.ndarray | None = None,
    cut: CutBaseline | None = None,
    relinkage_pool_sizes: Sequence[int] = (),
    progress: Callable[[str], None] | None = None,
) -> SweepResult:
    """Train and measure at each eps in ``epsilons`` (``None`` = non-private), in the given order, once per seed.

    ``start(seed)``: the heads a run with that seed trains from (chapter 9: fresh heads drawn from the seed).
    ``config``: the :class:`relink_lib.dp.DPConfig` of the sweep; only ``target_epsilon`` (per budget) and
    ``seed`` (per run; ``seeds``, default ``(config.seed,)``) change between runs. ``dof``, ``discretization``
    (nats): of the ReRo bounds (:func:`privacy_risks`, :func:`prior_risks`; the re-linkage priors are
    kappa = 1 / N for N in ``relinkage_pool_sizes``). ``evaluate(image_head, text_head)`` measures the
    trained heads (:class:`Evaluation`); with ``cut`` its ``per_query`` Recall@1 gives the relative cut
    against ``cut.per_query`` and its CI (:func:`cut_interval`).

    ``table`` columns: :data:`RECORD_FIELDS` (of the first seed; sigma, q and T are the same for every
    seed), ``kappa, worst_case_risk, worst_case_risk_lower, worst_case_risk_gdp, relaxed_risk, relaxed_dof``
    (the training-set prior), :data:`ATTACK_COLUMNS` (``gradient_access_risk`` is the re-identification rate
    of the attack) and the evaluation's metrics as means over seeds (each with ``<name>_seed_sd``),
    ``attack_candidates, attack_targets, attack_cos_threshold, n_seeds, train_time_s, eval_time_s`` (sums
    over seeds) and, with ``cut``: ``cut_pool_size, r1_before, r1_after, r1_cut, r1_cut_ci_low,
    r1_cut_ci_high, r1_cut_seed_sd``. ``recall``: ``target_epsilon``, then the evaluation's ``recall``
    columns (``recall`` and ``lift`` averaged over seeds). ``rero``: :data:`RERO_COLUMNS`. ``runs``:
    ``target_epsilon, seed``, the attack's columns, the metrics, ``r1_after`` and ``r1_cut`` per run.
    """
    if len(epsilons) == 0:
        raise ValueError("epsilons: expected at least one budget (None = no DP)")
    for e in epsilons:
        if e is not None and not (isinstance(e, (int, float)) and math.isfinite(e) and e > 0):
            raise ValueError(f"epsilons: {e!r} is not a finite eps > 0 or None (no DP)")
    seeds = (int(config.seed),) if seeds is None else tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    rows, recall, rero, runs = [], [], [], []
    base_r1 = float(np.nanmean(cut.per_query)) if cut is not None else math.nan
    for eps in epsilons:
        label = "no DP" if eps is None else f"eps={eps:g}"
        eps_value = None if eps is None else float(eps)
        seed_rows: list[dict[str, Any]] = []
        seed_recall: list[pd.DataFrame] = []
        seed_queries: list[np.ndarray] = []
        first_record: Mapping[str, Any] = {}
        train_s = eval_s = 0.0
        if progress:
            progress(f"budget sweep: training at {label}, seeds {', '.join(map(str, seeds))} (stacked)")
        # the seeds of one eps are one mechanism: stacked into one computation (dp.batched), as run one by one
        trained = train_heads_seeds(
            image_feats,
            text_feats,
            [start(seed) for seed in seeds],
            bank_text_feats=bank_text_feats,
            config=config.replace(target_epsilon=eps_value, noise_multiplier=None),
            seeds=seeds,
            patient_ids=patient_ids,
            bank_image_feats=bank_image_feats,
        )
        for i, (seed, result) in enumerate(zip(seeds, trained, strict=True)):
            cfg = config.replace(target_epsilon=eps_value, noise_multiplier=None, seed=seed)
            rec = result.record
            if i == 0:
                first_record = rec
            att = gradient_access_attack(
                result.image_head,
                result.text_head,
                image_feats,
                text_feats,
                bank_text_feats=bank_text_feats,
                record=rec,
                settings=dataclasses.replace(attack, seed=attack.seed + i),
                temperature=cfg.temperature,
                bank_image_feats=bank_image_feats,
            )
            train_s += float(rec.get("train_time_s") or 0.0)
            t0 = time.perf_counter()
            evaluation = evaluate(result.image_head, result.text_head)
            eval_s += time.perf_counter() - t0
            metrics = dict(evaluation.metrics)
            clash = set(metrics) & {*RECORD_FIELDS, *ATTACK_COLUMNS, "kappa", "seed", "r1_cut", "r1_after"}
            if clash:
                raise ValueError(f"evaluate: returned metrics {sorted(clash)} that clash with the sweep's own columns")
            if "target_epsilon" in evaluation.recall.columns:
                raise ValueError("evaluate: its recall rows must not carry target_epsilon (the sweep adds it)")
            run: dict[str, Any] = {
                "target_epsilon": eps_value,
                "seed": seed,
                "gradient_access_risk": att.reidentification_rate,
                "gradient_access_cosine_rate": att.cosine_rate,
                "gradient_access_mean_abs_cos": att.mean_abs_cos,
                "gradient_access_chance": att.chance,
                **metrics,
            }
            if cut is not None:
                if evaluation.per_query is None:
                    raise ValueError("evaluate: returned no per_query Recall@1, which the cut needs")
                pq = np.asarray(evaluation.per_query, dtype=float)
                if pq.shape != np.shape(cut.per_query):
                    raise ValueError(
                        f"evaluate: per_query has shape {pq.shape}, the baseline {np.shape(cut.per_query)}"
                    )
                seed_queries.append(pq)
                run["r1_after"] = float(np.nanmean(pq))
                run["r1_cut"] = 1.0 - run["r1_after"] / base_r1 if base_r1 > 0 else math.nan
            seed_rows.append(run)
            seed_recall.append(evaluation.recall)
        runs += seed_rows
        row: dict[str, Any] = {k: first_record.get(k) for k in RECORD_FIELDS}
        row["target_epsilon"] = eps_value
        row.update(privacy_risks(first_record, dof=dof, discretization=discretization))
        n_units = int(first_record["n_units"]) if first_record.get("n_units") is not None else None
        priors = ([("training set", n_units)] if n_units else []) + [
            ("re-linkage", int(n)) for n in relinkage_pool_sizes
        ]
        rero += [
            {"target_epsilon": eps_value, **r}
            for r in prior_risks(first_record, priors, dof=dof, discretization=discretization)
        ]
        for col in ATTACK_COLUMNS:
            row[col] = _seed_mean(seed_rows, col)[0]
        row["gradient_access_risk_seed_sd"] = _seed_mean(seed_rows, "gradient_access_risk")[1]
        row.update(
            {
                "attack_candidates": int(attack.n_candidates),
                "attack_targets": int(min(attack.n_targets, len(image_feats))),
                "attack_cos_threshold": float(attack.cos_threshold),
                "n_seeds": len(seeds),
                "train_time_s": train_s,
                "eval_time_s": eval_s,
            }
        )
        for name in seed_rows[0]:
            if name in metrics:
                row[name], row[f"{name}_seed_sd"] = _seed_mean(seed_rows, name)
        if cut is not None:
            after = np.stack(seed_queries, axis=1)
            point, lo, hi = cut_interval(
                cut.per_query, after, cut.patient_ids, n_boot=cut.n_boot, seed=cut.seed, level=cut.level
            )
            row.update(
                {
                    "cut_pool_size": cut.pool_size,
                    "r1_before": base_r1,
                    "r1_after": float(np.nanmean(after)),
                    "r1_cut": point,
                    "r1_cut_ci_low": lo,
                    "r1_cut_ci_high": hi,
                    "r1_cut_seed_sd": _seed_mean(seed_rows, "r1_cut")[1],
                }
            )
        rows.append(row)
        mean = _mean_recall(seed_recall)
        recall.append(mean.assign(target_epsilon=eps_value)[["target_epsilon", *mean.columns]])
    return SweepResult(
        table=pd.DataFrame(rows),
        recall=pd.concat(recall, ignore_index=True),
        rero=pd.DataFrame(rero, columns=list(RERO_COLUMNS)),
        runs=pd.DataFrame(runs),
    )


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
