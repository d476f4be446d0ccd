"""Pipeline stage of the DP frontier (chapter 6): train every setting with several noise seeds, select, scale.

On the most specialised rung (cached pre-projection features; the encoders never run here):

1. every setting of :func:`relink_lib.dp.frontier.frontier_grid` at the profile's own private-set
   size, each with ``n_seeds`` noise seeds, at the profile's (eps, delta): sigma is calibrated once
   per (sample rate, steps) by :func:`relink_lib.dp.calibrate.calibrate_noise` and every record is
   re-accounted by dp-accounting;
2. the declared rule (:func:`relink_lib.dp.frontier.select_point`) on the selection half;
3. controls on the same axes: non-private fine-tuning and untrained re-initialised heads at the
   selected setting, output perturbation over a range of scales and matched on R@1;
4. the selected setting at larger private sets: the internal train split plus pairs of a
   supplementary synthetic private pool (same generator and settings, another seed; only
   generated and featurised, never audited) -- a scaling study beside the selection;
5. the selected heads' effect on the pairs they were fine-tuned on (seen) and on held-out pairs.

One function per step (:func:`make_evaluator`, :func:`run_points` on :func:`grid_tasks` for the grid and the public
pilot, :func:`private_frontier_protocol`, :func:`public_pilot_protocol`,
:func:`seen_vs_heldout`, :func:`run_controls`, :func:`run_scaling`), each returning a frozen record;
:func:`build_frontier` runs them in order (the grid's and the pilot's points side by side in one-thread workers
where more than one core is usable: :mod:`relink_lib.workers`, which says when that gives the same bits) and
assembles the :class:`~relink_lib.dp.frontier.FrontierResult`.
Writes ``frontier.json`` (``FrontierResult.to_json()``: what ``results/<profile>/mitigation.json``
stores under ``frontier``, ``selection_rule``, ``selected`` ...) and ``report_per_query.npz``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import dp_accounting
import numpy as np
from dp_accounting import rdp as dp_accounting_rdp
from torch import nn

from .. import cache
from ..cohorts.stage import get_cohort
from ..config import FrontierConfig, Profile, ProfileLike, as_profile
from ..features import feature_dir, get_features
from ..labels import CHEXPERT_LABELS
from ..models.stage import Rung, get_ladder
from ..numerics import cache_token
from ..profiles import cache_dir
from ..utility.probe import patient_split
from ..workers import map_in_workers, worker_count
from .accounting import dp_event
from .batched import train_heads_seeds
from .calibrate import RDP_ORDERS, calibrate_noise
from .config import DPConfig
from .controls import nonprivate_config, tune_output_perturbation
from .frontier import (
    DROP_BOUND_N_BOOT,
    PER_SEED_KEYS,
    BankInfo,
    DropBootstrap,
    FrontierCost,
    FrontierPoint,
    FrontierResult,
    HeldoutEvaluator,
    HeldoutSplit,
    PrivatePoolInfo,
    Protocol,
    RungInfo,
    SeedOutcome,
    SeenVsHeldout,
    SelectionRule,
    Setting,
    aggregate_seeds,
    drop_upper_bound,
    embed_heads,
    frontier_grid,
    interpolate_at_cut,
    per_query_recall_at_1,
    reduction_interval,
    seed_winners,
    select_point,
)
from .heads import clone_head, fresh_heads, perturb_heads, relative_drift
from .outcomes import PromptFeatures, prompt_features_of, relative_reduction
from .train import sampling_plan
from .tuning import composed_epsilon, poisson_tuning_epsilon_of_runs

POOL_SEED_OFFSET = 7001
"""The supplementary private pool is generated with ``params["seed"] + POOL_SEED_OFFSET``."""
PRIVACY_FIELDS = (
    "target_epsilon",
    "epsilon",
    "delta",
    "noise_multiplier",
    "sample_rate",
    "steps",
    "max_grad_norm",
    "accountant",
)


def pool_params(params: ProfileLike, n_pairs: int) -> Profile:
    """Parameters of the supplementary synthetic private pool: the profile's cohort, another seed, all ``train``."""
    cfg = as_profile(params)
    return cfg.replace_sections(
        seed=cfg.seed + POOL_SEED_OFFSET,
        cohort={"n_pairs": int(n_pairs), "split_fractions": (1.0, 0.0, 0.0), "roundtrip": False},
    )


def private_pool(params: ProfileLike, rung: Rung, n_pairs: int, *, progress: bool = False) -> dict[str, Any]:
    """Features (``image``, ``text``) and patient ids of ``n_pairs`` supplementary private pairs (cached)."""
    if not as_profile(params).cohort.simulation:
        raise ValueError(
            "dp.frontier.scaling_sizes: a supplementary private pool exists only for synthetic cohorts; "
            "set scaling_sizes = () for real data"
        )
    p = pool_params(params, n_pairs)
    cohort = get_cohort(p, site="internal")
    feats = get_features(p, cohort, rung, "train", progress=progress)
    pats = cohort.pairs.iloc[np.asarray(feats.rows)]["patient_id"].astype(str).to_numpy()
    return {
        "image": feats.image,
        "text": feats.text,
        "patients": np.char.add("pool:", pats.astype(str)),
        "features": feature_dir(p, cohort, rung, "train").name,
        "n_pairs": len(feats),
    }


Heads = tuple[nn.Module, nn.Module]
"""A pair of projection heads: ``(image_head, text_head)``."""


@dataclass(frozen=True, eq=False)
class FrontierInputs:
    """What one frontier build reads (in memory; :func:`get_frontier` fills it from the caches).

    ``template``: the pretrained heads; ``train_*``: pre-projection features ``(n, D)``, CheXpert
    labels ``(n, 14)`` and patient ids of the private training pairs; ``test_*``: the same of the
    held-out split (cut into the selection and report halves); ``bank_text`` / ``bank_image``: the
    public bank of the objective; ``prompt_features``: pre-projection text features of the zero-shot
    prompts (``None``: no zero-shot AUROC); ``probe_C``: the linear probe's inverse L2 strength;
    ``chunk_size``: rows per similarity chunk; ``public_*``: features, labels and patient ids of the public
    val split: the probe's fit set and the public pilot's pairs (``None``: the probe is fit on the private
    pairs and there is no pilot, as before issue 22).
    """

    template: Heads
    train_img: np.ndarray
    train_txt: np.ndarray
    train_labels: np.ndarray
    train_patients: np.ndarray
    test_img: np.ndarray
    test_txt: np.ndarray
    test_labels: np.ndarray
    test_patients: np.ndarray
    bank_text: np.ndarray
    bank_image: np.ndarray
    prompt_features: PromptFeatures | None
    probe_C: float
    chunk_size: int
    public_img: np.ndarray | None = None
    public_txt: np.ndarray | None = None
    public_labels: np.ndarray | None = None
    public_patients: np.ndarray | None = None


PILOT_SPLIT_SEED = 11
"""Seed of the patient split of the public val split into the pilot's training half and its bank half."""


@dataclass(frozen=True, eq=False)
class PrivateSet:
    """Private training pairs: pre-projection ``image`` and ``text`` features and ``patients`` (the privacy units'
    grouping)."""

    image: np.ndarray
    text: np.ndarray
    patients: np.ndarray

    def __len__(self) -> int:
        return len(self.image)

    def extended(self, pool: Mapping[str, Any], k: int) -> PrivateSet:
        """This set and the first ``k`` pairs of a supplementary ``pool`` (``image``, ``text``, ``patients``)."""
        return PrivateSet(
            np.concatenate([self.image, pool["image"][:k]]),
            np.concatenate([self.text, pool["text"][:k]]),
            np.concatenate([self.patients, np.asarray(pool["patients"])[:k]]),
        )


@dataclass(frozen=True, eq=False)
class PointRun:
    """One trained point: its record, the mean per-query report-half R@1 over seeds and each seed's heads (and
    each seed's per-query report-half R@1)."""

    point: FrontierPoint
    report_per_query: np.ndarray
    heads: tuple[Heads, ...]
    seed_report_per_query: tuple[np.ndarray, ...] = ()


@dataclass(frozen=True, eq=False)
class GridRun:
    """Step 1: every setting of the grid at the own private-set size (in grid order)."""

    runs: tuple[PointRun, ...]

    @property
    def points(self) -> tuple[FrontierPoint, ...]:
        return tuple(r.point for r in self.runs)


@dataclass(frozen=True)
class Selection:
    """Step 2: the rule, its pick, the reference point (the pick, or the largest selection-half cut) and the
    reference's patient-bootstrap CI of the report-half cut."""

    rule: SelectionRule
    selected: int | None
    reference: int
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class ControlsRun:
    """Step 4: the controls at the reference setting (JSON records), output perturbation's scale sweep, and
    output perturbation's report-half utility drops at the reference point's cut."""

    controls: tuple[Mapping[str, Any], ...]
    op_curve: tuple[Mapping[str, Any], ...]
    reference_at_same_cut: Mapping[str, Any]


@dataclass(frozen=True)
class ScalingRun:
    """Step 5: the reference setting at larger private sets, and the supplementary pool it drew on."""

    points: tuple[FrontierPoint, ...]
    pool: PrivatePoolInfo | None


AT_SAME_CUT_COLUMNS: tuple[str, ...] = ("zero_shot_auroc_drop_report", "probe_auroc_drop_report")
"""Report-half utility drops of output perturbation read off its scale sweep at another row's cut."""


@dataclass(slots=True)
class _Runner:
    """Trains settings with several seeds on one private set and evaluates them.

    The explicit mutable state of one build: the noise multipliers calibrated so far per (sample
    rate, steps), the seconds spent training and evaluating, the number of evaluations and the
    ``(steps, seconds)`` of every training run, and the bootstrap resamples of the baseline's drops.
    """

    ev: HeldoutEvaluator
    template: Heads
    base: DPConfig
    bank_text: np.ndarray
    bank_image: np.ndarray
    seeds: tuple[int, ...]
    n_boot: int = DROP_BOUND_N_BOOT
    sigmas: dict[tuple[float, int], float] = field(default_factory=dict)
    train_s: float = 0.0
    eval_s: float = 0.0
    n_evals: int = 0
    run_log: list[tuple[int, float]] = field(default_factory=list)
    # (kind, seed, n_boot) -> the selection half's patient resamples of ``ev``'s baseline (a runner copied for the
    # pilot keeps ``ev``, so it shares them)
    _bootstraps: dict[tuple[str, int, int], DropBootstrap] = field(default_factory=dict)

    def init_heads(self, init: str, seed: int) -> Heads:
        if init == "pretrained":
            return clone_head(self.template[0]), clone_head(self.template[1])
        return fresh_heads(self.template[0], self.template[1], seed=seed)

    def config_for(
        self, setting: Setting, data: PrivateSet, private: bool = True, match_n: int | None = None
    ) -> DPConfig:
        """The run config of ``setting`` (seed unset). ``match_n``: run with the noise multiplier and number of
        steps of a DP run on ``match_n`` pairs (the public pilot: same batch size, noise and steps as the private
        run, on other pairs)."""
        cfg = self.base.replace(optimizer=setting.optimizer, lr=setting.lr, epochs=setting.epochs)
        if not private:
            return nonprivate_config(cfg)
        q, steps, _ = sampling_plan(match_n or len(data), cfg)
        if (q, steps) not in self.sigmas:
            assert cfg.target_epsilon is not None, "a private frontier run needs dp.training.target_epsilon"
            self.sigmas[(q, steps)] = calibrate_noise(float(cfg.target_epsilon), cfg.delta, q, steps)
        cfg = cfg.replace(noise_multiplier=self.sigmas[(q, steps)])
        if match_n is not None:
            per_epoch = sampling_plan(len(data), cfg)[2]
            cfg = cfg.replace(epochs=steps / per_epoch)
        return cfg

    def train_seeds(
        self,
        setting: Setting,
        seeds: Sequence[int],
        data: PrivateSet,
        private: bool = True,
        match_n: int | None = None,
    ) -> tuple[list[Heads], dict[str, Any]]:
        """Runs of ``setting``, one per seed, stacked into one computation
        (:func:`relink_lib.dp.batched.train_heads_seeds`); the heads per seed and the first seed's record."""
        cfg = self.config_for(setting, data, private, match_n)
        t0 = time.perf_counter()
        res = train_heads_seeds(
            data.image,
            data.text,
            [self.init_heads(setting.init, s) for s in seeds],
            config=cfg,
            seeds=seeds,
            patient_ids=data.patients,
            bank_text_feats=self.bank_text,
            bank_image_feats=self.bank_image,
        )
        elapsed = time.perf_counter() - t0
        self.train_s += elapsed
        self.run_log.extend((int(r.record["steps"]), elapsed / len(res)) for r in res)
        return [(r.image_head, r.text_head) for r in res], res[0].record

    def train(
        self, setting: Setting, seed: int, data: PrivateSet, private: bool = True, match_n: int | None = None
    ) -> tuple[Heads, dict[str, Any]]:
        """One run of ``setting`` with ``seed`` (see :meth:`config_for` for ``match_n``)."""
        heads, record = self.train_seeds(setting, (seed,), data, private, match_n)
        return heads[0], record

    def evaluate(self, heads: Heads) -> tuple[dict[str, float], dict[str, Any]]:
        """The frontier's fields of ``heads`` (with ``drift``) and the evaluator's raw measurement."""
        t0 = time.perf_counter()
        m = self.ev.measure(heads)
        rel = self.ev.relative(m)
        rel["drift"] = relative_drift(heads, self.template)
        self.eval_s += time.perf_counter() - t0
        self.n_evals += 1
        return rel, m

    def bounds(self, measured: Sequence[Mapping[str, Any]], seed: int) -> dict[str, float]:
        """Upper 95% bounds (patients and seeds) of the selection-half probe and zero-shot drops.

        The patient resamples and the baseline's resampled AUROCs depend only on the selection half, the
        baseline and ``seed``: drawn once per runner and kind (:class:`DropBootstrap`), the same numbers."""
        ev, b = self.ev, self.ev.baseline
        pats = ev.test_patients[ev.select]
        n_boot = min(self.n_boot, DROP_BOUND_N_BOOT)
        kinds = [("probe", ev.y_probe[ev.select])]
        if b.get("zero_shot_scores_select") is not None:
            kinds.append(("zero_shot", ev.y_zero_shot[ev.select]))
        out = {"probe_auroc_drop_upper": math.nan, "zero_shot_auroc_drop_upper": math.nan}
        for kind, y in kinds:
            key = (kind, seed, n_boot)
            if key not in self._bootstraps:
                self._bootstraps[key] = DropBootstrap.draw(b[f"{kind}_scores_select"], y, pats, n_boot, seed)
            out[f"{kind}_auroc_drop_upper"] = drop_upper_bound(
                b[f"{kind}_scores_select"],
                [m[f"{kind}_scores_select"] for m in measured],
                y,
                pats,
                n_boot=n_boot,
                seed=seed,
                bootstrap=self._bootstraps[key],
            )
        return out

    def point(
        self,
        setting: Setting,
        data: PrivateSet,
        *,
        study: str,
        private: bool = True,
        match_n: int | None = None,
    ) -> PointRun:
        """One frontier point: ``len(seeds)`` runs, their mean and spread and the upper bounds of the utility
        drops; with the mean per-query report R@1 and the heads."""
        per_seed, pq, heads_list, measured = [], [], [], []
        trained, record = self.train_seeds(setting, self.seeds, data, private, match_n)
        for seed, heads in zip(self.seeds, trained, strict=True):
            rel, m = self.evaluate(heads)
            per_seed.append(dict(rel, seed=seed))
            pq.append(m["r1_report_per_query"])
            measured.append(m)
            heads_list.append(heads)
        t0 = time.perf_counter()
        upper: dict[str, Any] = self.bounds(measured, self.seeds[0]) if private else {}
        self.eval_s += time.perf_counter() - t0
        ind = record.get("epsilon_independent") or {}
        privacy: dict[str, Any] = {k: record.get(k) for k in PRIVACY_FIELDS}
        means: dict[str, Any] = aggregate_seeds(per_seed)
        outcomes: list[dict[str, Any]] = [{k: s[k] for k in PER_SEED_KEYS if k in s} for s in per_seed]
        point = FrontierPoint(
            **setting.as_dict(),
            n_private=int(len(data)),
            study=study,
            private=private,
            **privacy,
            epsilon_dp_accounting_rdp=ind.get("dp_accounting_rdp"),
            epsilon_dp_accounting_pld=ind.get("dp_accounting_pld"),
            **means,
            **upper,
            seeds=self.seeds,
            per_seed=tuple(SeedOutcome(**o) for o in outcomes),
        )
        return PointRun(point, np.mean(pq, axis=0), tuple(heads_list), tuple(pq))


def make_evaluator(inputs: FrontierInputs, spec: FrontierConfig) -> HeldoutEvaluator:
    """The held-out evaluator of a build: the halves, the reference N (``spec.reference_pool_size``, or the smaller
    half), the probe's fit set (the public val split when given) and the pretrained heads' baseline."""
    return HeldoutEvaluator(
        inputs.template,
        inputs.test_img,
        inputs.test_txt,
        inputs.test_labels,
        inputs.test_patients,
        inputs.public_img if inputs.public_img is not None else inputs.train_img,
        inputs.public_labels if inputs.public_labels is not None else inputs.train_labels,
        inputs.prompt_features,
        probe_C=float(inputs.probe_C),
        split_seed=spec.split_seed,
        reference_pool_size=spec.reference_pool_size,
        chunk_size=int(inputs.chunk_size),
        probe_max_train=spec.probe_max_train,
    )


@dataclass(frozen=True)
class PointTask:
    """One frontier point to compute: ``setting`` trained by runner ``runner`` (``"grid"`` or ``"pilot"``) on that
    runner's training set, for ``study``; ``match_n``: as in :meth:`_Runner.config_for`."""

    runner: str
    setting: Setting
    study: str
    match_n: int | None = None


@dataclass(frozen=True, eq=False)
class PointState:
    """What every point task reads: the runners by name and their training sets (sent to each worker once)."""

    runners: Mapping[str, _Runner]
    data: Mapping[str, PrivateSet]


@dataclass(frozen=True)
class PointDone:
    """A computed point and what its runner spent on it (merged into the parent's runner)."""

    run: PointRun
    train_s: float
    eval_s: float
    n_evals: int
    run_log: tuple[tuple[int, float], ...]
    sigmas: Mapping[tuple[float, int], float]


def compute_point(state: PointState, task: PointTask) -> PointDone:
    """:meth:`_Runner.point` of ``task`` (in a worker or in this process) with the runner's spending."""
    run = state.runners[task.runner]
    t, e, n, k = run.train_s, run.eval_s, run.n_evals, len(run.run_log)
    pr = run.point(task.setting, state.data[task.runner], study=task.study, match_n=task.match_n)
    return PointDone(pr, run.train_s - t, run.eval_s - e, run.n_evals - n, tuple(run.run_log[k:]), dict(run.sigmas))


def run_points(
    state: PointState, tasks: Sequence[PointTask], say: Callable[[str], None], *, workers: int | None = None
) -> list[PointRun]:
    """Every task's point, in order; side by side in one-thread workers (:func:`relink_lib.workers.map_in_workers`)
    when more than one core is usable (``workers``: how many; ``None``: :func:`relink_lib.workers.worker_count`),
    one thread each (the same bits as one after the other in the portable mode; see :mod:`relink_lib.workers`).
    Each runner's spending and noise calibrations are merged back into ``state.runners``."""
    n_pairs = min(len(d) for d in state.data.values())
    n = worker_count(len(tasks), n_pairs=n_pairs) if workers is None else int(workers)
    say(f"frontier: {len(tasks)} points ({n} at once)")
    done = map_in_workers(compute_point, state, tasks, workers=n, desc="frontier points", progress=n > 1)
    if n > 1:  # in-process runs updated the runners already
        for task, d in zip(tasks, done, strict=True):
            run = state.runners[task.runner]
            run.train_s += d.train_s
            run.eval_s += d.eval_s
            run.n_evals += d.n_evals
            run.run_log.extend(d.run_log)
            run.sigmas.update(d.sigmas)
    return [d.run for d in done]


def grid_tasks(spec: FrontierConfig, runner: str, study: str, match_n: int | None = None) -> list[PointTask]:
    """Step 1 (``runner="grid"``) or the public pilot (``"pilot"``, ``match_n`` private pairs): every setting of
    :func:`frontier_grid`, ``n_seeds`` noise seeds each."""
    return [PointTask(runner, s, study, match_n) for s in frontier_grid(spec)]


def make_rule(spec: FrontierConfig, pool_size: int, n_private: int) -> SelectionRule:
    """The declared rule at ``n_private`` pairs: the profile's utility bounds on the upper 95% bounds of the
    selection-half drops, fresh heads only."""
    return SelectionRule(
        max_probe_auroc_drop=float(spec.max_probe_auroc_drop),
        max_zero_shot_auroc_drop=float(spec.max_zero_shot_auroc_drop),
        reference_pool_size=int(pool_size),
        n_private=int(n_private),
    )


def choose(points: Sequence[FrontierPoint], rule: SelectionRule) -> tuple[int | None, int]:
    """``(selected, chosen)``: the rule's pick (``None`` when no point qualifies) and the point used: the pick, or
    else the largest selection-half cut among the rule's inits at its size (any point there when none has them)."""
    selected = select_point(points, rule)
    if selected is not None:
        return selected, selected
    own = [i for i, p in enumerate(points) if p.n_private == rule.n_private and p.private]
    cands = [i for i in own if points[i].init in rule.inits] or own
    return None, max(cands, key=lambda i: (points[i].r1_reduction_select, -i))


def _ci(ev: HeldoutEvaluator, after: np.ndarray, spec: FrontierConfig, seed: int) -> tuple[float, float]:
    return reduction_interval(
        ev.baseline["r1_report_per_query"], after, ev.test_patients[ev.report], n_boot=spec.n_boot, seed=seed
    )


def private_frontier_protocol(
    grid: GridRun, ev: HeldoutEvaluator, spec: FrontierConfig, base: DPConfig, *, seed: int
) -> Protocol:
    """The rule on the grid run on the private pairs; its privacy cost: the composition of every DP run of the grid
    (all seeds), checked with dp-accounting, and Papernot & Steinke's bound for a Poisson number of runs."""
    points = grid.points
    rule = make_rule(spec, ev.pool_size, points[0].n_private)
    selected, idx = choose(points, rule)
    p = points[idx]
    lo, hi = _ci(ev, grid.runs[idx].report_per_query, spec, seed)
    runs = [
        (float(q.noise_multiplier or 0), float(q.sample_rate or 0), int(q.steps or 0)) for q in points for _ in q.seeds
    ]
    acc = dp_accounting_rdp.RdpAccountant(orders=list(RDP_ORDERS))
    acc.compose(dp_accounting.ComposedDpEvent([dp_event(*r) for r in runs]))
    winners = seed_winners(points, rule)
    return Protocol(
        name="private_frontier",
        description="the rule applied to the grid trained on the private pairs (every setting, every seed); the "
        "release depends on all of these DP runs",
        setting=None if selected is None else p.setting.as_dict(),
        fallback=selected is None,
        frontier_index=idx,
        n_pairs_candidates_trained_on=int(p.n_private),
        r1_reduction=float(p.r1_reduction),
        r1_reduction_ci_low=lo,
        r1_reduction_ci_high=hi,
        probe_auroc_drop_report=float(p.probe_auroc_drop_report),
        zero_shot_auroc_drop_report=float(p.zero_shot_auroc_drop_report),
        retrieval_p10_drop_report=float(
            p.retrieval_p10_drop_report if p.retrieval_p10_drop_report is not None else math.nan
        ),
        epsilon=composed_epsilon(runs, float(base.delta)),
        delta=float(base.delta),
        epsilon_single_run=float(p.epsilon if p.epsilon is not None else math.nan),
        n_dp_runs_on_private=len(runs),
        seed_winners_agree=sum(w == idx for w in winners),
        n_seeds=len(winners),
        epsilon_composed=composed_epsilon(runs, float(base.delta)),
        epsilon_composed_dp_accounting_rdp=float(acc.get_epsilon(float(base.delta))),
        epsilon_tuning_bound=poisson_tuning_epsilon_of_runs(runs, float(len(runs)), float(base.delta)),
        tuning_mu=float(len(runs)),
    )


def public_pilot_protocol(pilot: GridRun, grid: GridRun, run: _Runner, spec: FrontierConfig, *, seed: int) -> Protocol:
    """The rule on the public pilot; the released heads: one DP run on the private pairs with the chosen setting
    (the grid's run of that setting with the first noise seed, evaluated on its own)."""
    ev = run.ev
    pts = pilot.points
    rule = make_rule(spec, ev.pool_size, pts[0].n_private)
    selected, idx = choose(pts, rule)
    setting = pts[idx].setting
    fidx = next(i for i, q in enumerate(grid.points) if q.setting == setting)
    priv = grid.runs[fidx]
    rel, m = run.evaluate(priv.heads[0])
    lo, hi = _ci(ev, m["r1_report_per_query"], spec, seed)
    winners = seed_winners(pts, rule)
    q = priv.point
    return Protocol(
        name="public_pilot",
        description=f"the rule applied to the grid trained on {pts[0].n_private:,} public pairs (half the val "
        "split's patients) with the private runs' batch size, noise multiplier and steps; then one DP run on the "
        "private pairs with the chosen setting (noise seed "
        f"{run.seeds[0]}): the released heads are that one (eps, delta)-DP run",
        setting=None if selected is None else setting.as_dict(),
        fallback=selected is None,
        frontier_index=fidx,
        n_pairs_candidates_trained_on=int(pts[0].n_private),
        r1_reduction=float(rel["r1_reduction"]),
        r1_reduction_ci_low=lo,
        r1_reduction_ci_high=hi,
        probe_auroc_drop_report=float(rel["probe_auroc_drop_report"]),
        zero_shot_auroc_drop_report=float(rel["zero_shot_auroc_drop_report"]),
        retrieval_p10_drop_report=float(rel.get("retrieval_p10_drop_report", math.nan)),
        epsilon=float(q.epsilon if q.epsilon is not None else math.nan),
        delta=float(q.delta if q.delta is not None else math.nan),
        epsilon_single_run=float(q.epsilon if q.epsilon is not None else math.nan),
        n_dp_runs_on_private=1,
        seed_winners_agree=sum(w == idx for w in winners),
        n_seeds=len(winners),
    )


def pilot_split(inputs: FrontierInputs, bank_size: int) -> tuple[PrivateSet, np.ndarray, np.ndarray] | None:
    """The public val split cut by patient: the pilot's training pairs and its bank (text, image; at most
    ``bank_size``), disjoint from them. ``None`` without public pairs."""
    if inputs.public_img is None or inputs.public_txt is None or inputs.public_patients is None:
        return None
    pats = np.asarray(inputs.public_patients).astype(str)
    train, bank = patient_split(pats, 0.5, PILOT_SPLIT_SEED)
    t = np.flatnonzero(train)
    k = np.flatnonzero(bank)[: max(1, int(bank_size))]
    return (
        PrivateSet(inputs.public_img[t], inputs.public_txt[t], pats[t]),
        inputs.public_txt[k],
        inputs.public_img[k],
    )


def seen_vs_heldout(
    ev: HeldoutEvaluator, template: Heads, own: PrivateSet, ref: PointRun, baseline_r1_report: float
) -> SeenVsHeldout:
    """Step 3: R@1 at the reference N on the pairs the reference heads were fine-tuned on and on the report half."""
    before = float(per_query_recall_at_1(*embed_heads(template, own.image, own.text), ev.pool_size).mean())
    after = float(
        np.mean([per_query_recall_at_1(*embed_heads(h, own.image, own.text), ev.pool_size).mean() for h in ref.heads])
    )
    return SeenVsHeldout(
        pool_size=int(ev.pool_size),
        n_seen=int(len(own)),
        n_heldout=int(ev.report.sum()),
        seen_r1_before=before,
        seen_r1_after=after,
        seen_r1_reduction=relative_reduction(before, after),
        heldout_r1_before=baseline_r1_report,
        heldout_r1_after=ref.point.r1_report,
        heldout_r1_reduction=ref.point.r1_reduction,
    )


def _at_same_cut(op_points: Sequence[Mapping[str, Any]], cut: float) -> dict[str, float]:
    return {
        f"output_perturbation_{col}_at_same_cut": interpolate_at_cut(op_points, cut, col) for col in AT_SAME_CUT_COLUMNS
    }


def run_controls(run: _Runner, spec: FrontierConfig, ref: FrontierPoint, own: PrivateSet, *, seed: int) -> ControlsRun:
    """Step 4: non-private fine-tuning at the reference setting, untrained fresh heads, output perturbation over
    ``spec.op_scales`` and matched to the reference point's selection-half R@1."""
    template, ev = run.template, run.ev
    npv = run.point(ref.setting, own, study="control", private=False).point.to_json()
    reinit = [run.evaluate(fresh_heads(template[0], template[1], seed=s))[0] for s in run.seeds]
    op_curve = []
    for s in spec.op_scales:
        rel, _ = run.evaluate(perturb_heads(template[0], template[1], float(s), seed))
        op_curve.append(dict(rel, scale=float(s)))
    target = ref.r1_select
    fit = tune_output_perturbation(
        template[0],
        template[1],
        lambda a, b: ev.measure((a, b), utility=False)["r1_select"],
        target,
        seed=seed,
        abs_tol=max(1e-4, 0.02 * target),
    )
    rel, _ = run.evaluate((fit.image_head, fit.text_head))
    matched = {
        "control": "output_perturbation_matched",
        "private": False,
        "scale": fit.scale,
        "matched_to": "the reference point's mean R@1 on the selection half",
        **rel,
        "n_seeds": 1,
    }
    op_points = op_curve + [matched]  # the matched fit is one more point of the same curve
    controls = [
        dict(npv, control="nonprivate"),
        {"control": "reinit_untrained", "init": "reinit", "private": False, "n_private": 0, **aggregate_seeds(reinit)},
        matched,
    ]
    controls = [dict(c, **_at_same_cut(op_points, c.get("r1_reduction", math.nan))) for c in controls]
    return ControlsRun(tuple(controls), tuple(op_curve), _at_same_cut(op_points, ref.r1_reduction))


def run_scaling(
    run: _Runner,
    spec: FrontierConfig,
    ref: Setting,
    own: PrivateSet,
    pool: Callable[[int], Mapping[str, Any]] | None,
    say: Callable[[str], None],
) -> ScalingRun:
    """Step 5: the reference setting at the sizes of :meth:`FrontierConfig.scaling_sizes_above` the own set, on the
    own pairs plus the first pairs of the supplementary pool ``pool(n)`` (none without ``pool``)."""
    n_own = len(own)
    sizes = spec.scaling_sizes_above(n_own)
    if not sizes or pool is None:
        return ScalingRun((), None)
    say(f"frontier scaling: private pool of {sizes[-1] - n_own} pairs")
    t0 = time.perf_counter()
    extra = pool(sizes[-1] - n_own)
    info = PrivatePoolInfo(
        n_pairs=int(extra["n_pairs"]),
        features=extra.get("features"),
        generation_and_features_s=time.perf_counter() - t0,
        source="supplementary synthetic private pool: the profile's generator and cohort settings with "
        f"seed + {POOL_SEED_OFFSET}, no export round trip, all pairs private (train)",
    )
    points = []
    for n in sizes:
        say(f"frontier scaling: n_private = {n}")
        points.append(run.point(ref, own.extended(extra, n - n_own), study="scaling").point)
    return ScalingRun(tuple(points), info)


def build_frontier(
    inputs: FrontierInputs,
    spec: FrontierConfig,
    base: DPConfig,
    *,
    seed: int = 0,
    pool: Callable[[int], Mapping[str, Any]] | None = None,
    progress: Callable[[str], None] | None = None,
    workers: int | None = None,
) -> tuple[FrontierResult, dict[str, Any]]:
    """Run the whole frontier study on in-memory ``inputs``, one step after the other (see the module docstring).

    ``pool(n)``: supplementary private pairs (``image``, ``text``, ``patients``, ``n_pairs``) for the
    scaling study (``None``: only sizes up to the own set). Returns ``(result, arrays)``: the
    :class:`FrontierResult` (without ``rung`` and ``bank``) and the per-query report-half R@1 of the
    pretrained and the reference heads with the report half's patient ids. ``workers``: processes for the grid's
    and the pilot's points (:func:`run_points`; ``None``: one per usable core on large enough sets).
    """
    t_start = time.perf_counter()
    say = progress or (lambda s: None)
    ev = make_evaluator(inputs, spec)
    seeds = tuple(int(seed) + i for i in range(spec.n_seeds))
    run = _Runner(ev, inputs.template, base, inputs.bank_text, inputs.bank_image, seeds, n_boot=spec.n_boot)
    own = PrivateSet(inputs.train_img, inputs.train_txt, np.asarray(inputs.train_patients).astype(str))
    split = pilot_split(inputs, len(inputs.bank_text))
    runners, data = {"grid": run}, {"grid": own}
    tasks = grid_tasks(spec, "grid", "grid")
    if split is not None:  # the pilot's runner: the same evaluator, seeds and noise calibrations, its own bank
        prun = dataclasses.replace(run, bank_text=split[1], bank_image=split[2], sigmas=run.sigmas, run_log=[])
        prun.train_s = prun.eval_s = 0.0
        prun.n_evals = 0
        runners["pilot"], data["pilot"] = prun, split[0]
        tasks += grid_tasks(spec, "pilot", "pilot", match_n=len(own))
    done = run_points(PointState(runners, data), tasks, say, workers=workers)
    n_grid = len(frontier_grid(spec))
    grid = GridRun(tuple(done[:n_grid]))
    private = private_frontier_protocol(grid, ev, spec, base, seed=seed)
    protocols = [private]
    pilot_points: tuple[FrontierPoint, ...] = ()
    if split is not None:
        pilot = GridRun(tuple(done[n_grid:]))
        pilot_points = pilot.points
        protocols.insert(0, public_pilot_protocol(pilot, grid, prun, spec, seed=seed))
        run.train_s, run.eval_s, run.n_evals = (
            run.train_s + prun.train_s,
            run.eval_s + prun.eval_s,
            run.n_evals + prun.n_evals,
        )
        run.run_log.extend(prun.run_log)
    head = protocols[0]
    rule = make_rule(spec, ev.pool_size, len(own))
    selected = None if head.fallback else head.frontier_index
    sel = Selection(
        rule, selected, head.frontier_index, *_ci(ev, grid.runs[head.frontier_index].report_per_query, spec, seed)
    )
    ref_run = grid.runs[sel.reference]
    ref = dataclasses.replace(ref_run.point, r1_reduction_ci_low=sel.ci_low, r1_reduction_ci_high=sel.ci_high)
    seen = seen_vs_heldout(ev, inputs.template, own, ref_run, ev.baseline["r1_report"])
    say("frontier controls")
    ctrl = run_controls(run, spec, ref, own, seed=seed)
    ref = dataclasses.replace(ref, **ctrl.reference_at_same_cut)
    scaling = run_scaling(run, spec, ref.setting, own, pool, say)
    points = list(grid.points)
    points[sel.reference] = ref
    result = FrontierResult(
        frontier=tuple(points) + scaling.points,
        selection_rule=sel.rule,
        selected=sel.selected,
        reference=sel.reference,
        reference_is_selected=sel.selected is not None,
        r1_reduction_ci_low=sel.ci_low,
        r1_reduction_ci_high=sel.ci_high,
        controls=ctrl.controls,
        output_perturbation_curve=ctrl.op_curve,
        seen=seen,
        private_pool=scaling.pool,
        heldout=HeldoutSplit(
            n_select=int(ev.select.sum()),
            n_report=int(ev.report.sum()),
            split_seed=spec.split_seed,
            reference_pool_size=int(ev.pool_size),
            baseline={k: v for k, v in ev.baseline.items() if np.ndim(v) == 0 and v is not None},
        ),
        n_seeds=len(seeds),
        seeds=seeds,
        cost=FrontierCost(
            train_s=run.train_s,
            eval_s=run.eval_s,
            total_s=time.perf_counter() - t_start,
            n_runs_trained=len(run.run_log),
            n_evaluations=run.n_evals,
            runs_steps_seconds=tuple((n, round(t, 4)) for n, t in run.run_log),
        ),
        pilot=pilot_points,
        protocols=tuple(protocols),
        headline_protocol=head.name,
    )
    arrays: dict[str, Any] = {
        "pretrained": ev.baseline["r1_report_per_query"],
        "reference": ref_run.report_per_query,
        "report_patients": ev.test_patients[ev.report],
    }
    return result, arrays


def get_frontier(params: ProfileLike, *, progress: bool = False) -> FrontierResult:
    """The frontier payload of the profile's most specialised rung (cached; see the module docstring)."""
    cfg = as_profile(params)
    spec = cfg.dp.frontier
    cohort = get_cohort(cfg, site="internal")
    rung = get_ladder(cfg, progress=progress)[-1]
    splits = {s: get_features(cfg, cohort, rung, s, progress=progress) for s in ("train", "val", "test")}
    first = spec.optimizers[0]  # the grid sets optimizer, lr, epochs and seed per run
    base = cfg.dp.training_config(optimizer=first, lr=spec.lrs[first][0], epochs=spec.epochs[0])
    bank_n = min(cfg.dp.bank_size, len(splits["val"]))
    key = {
        "step": "dp-frontier",
        "features": {s: feature_dir(cfg, cohort, rung, s).name for s in splits},
        "spec": spec.to_dict(),
        "dp": {
            k: v
            for k, v in cfg.dp.to_dict().items()
            if k not in ("frontier", "budget_sweep", "factorial", "confirmation")
        },
        "probe_C": cfg.utility.probe_C,
        "seed": cfg.seed,
        "chunk": cfg.audit.chunk_size,
        "code": cache.stage_code_version(__name__),
        "numerics": cache_token(),  # the dispatch and the audit's BLAS
    }

    def build(tmp: Path) -> None:
        encoder = rung.load(device="cpu")
        pairs = {s: cohort.pairs.iloc[np.asarray(f.rows)].reset_index(drop=True) for s, f in splits.items()}
        inputs = FrontierInputs(
            template=(encoder.image_head, encoder.text_head),
            train_img=splits["train"].image,
            train_txt=splits["train"].text,
            train_labels=pairs["train"][list(CHEXPERT_LABELS)].to_numpy(float),
            train_patients=pairs["train"]["patient_id"].astype(str).to_numpy(),
            test_img=splits["test"].image,
            test_txt=splits["test"].text,
            test_labels=pairs["test"][list(CHEXPERT_LABELS)].to_numpy(float),
            test_patients=pairs["test"]["patient_id"].astype(str).to_numpy(),
            bank_text=splits["val"].text[:bank_n],
            bank_image=splits["val"].image[:bank_n],
            prompt_features=prompt_features_of(encoder),
            probe_C=cfg.utility.probe_C,
            chunk_size=cfg.audit.chunk_size,
            public_img=splits["val"].image,
            public_txt=splits["val"].text,
            public_labels=pairs["val"][list(CHEXPERT_LABELS)].to_numpy(float),
            public_patients=pairs["val"]["patient_id"].astype(str).to_numpy(),
        )
        # every stage step uses the process's threads (native: all cores; portable: one)
        result, arrays = build_frontier(
            inputs,
            spec,
            base,
            seed=cfg.seed,
            pool=lambda n: private_pool(cfg, rung, n, progress=progress),
            progress=print if progress else None,
        )
        result = dataclasses.replace(
            result,
            rung=RungInfo(rung.index, rung.name),
            bank=BankInfo("internal cohort, val split (declared public)", bank_n),
        )
        (tmp / "frontier.json").write_text(json.dumps(result.to_json(), indent=1, default=_json_default))
        np.savez(tmp / "report_per_query.npz", **arrays)

    path = cache.cached_dir(cache_dir(cfg.name), "dp-frontier", key, build)
    return FrontierResult.from_json(json.loads((path / "frontier.json").read_text()))


def reference_setting(frontier: FrontierResult) -> Setting:
    """The released setting, which chapters 7-8 use: the headline protocol's choice (the public pilot's since
    issue 22; the point ``reference`` indexes), or the fallback point when no point meets the rule there."""
    return frontier.reference_point.setting


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
