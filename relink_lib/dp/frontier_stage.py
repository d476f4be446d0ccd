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

One function per step (:func:`make_evaluator`, :func:`run_grid`, :func:`select_reference`,
:func:`seen_vs_heldout`, :func:`run_controls`, :func:`run_scaling`), each returning a frozen record;
:func:`build_frontier` runs them in order and assembles the :class:`~relink_lib.dp.frontier.FrontierResult`.
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

import numpy as np
from torch import nn

from .. import cache
from ..cohorts.stage import get_cohort
from ..config import FrontierConfig, Profile, ProfileLike, as_profile
from ..features import feature_dir, get_features
from ..labels import CHEXPERT_LABELS
from ..models.stage import Rung, get_ladder
from ..profiles import cache_dir
from .calibrate import calibrate_noise
from .config import DPConfig
from .controls import nonprivate_config, tune_output_perturbation
from .frontier import (
    PER_SEED_KEYS,
    BankInfo,
    FrontierCost,
    FrontierPoint,
    FrontierResult,
    HeldoutEvaluator,
    HeldoutSplit,
    PrivatePoolInfo,
    RungInfo,
    SeedOutcome,
    SeenVsHeldout,
    SelectionRule,
    Setting,
    aggregate_seeds,
    embed_heads,
    frontier_grid,
    interpolate_at_cut,
    per_query_recall_at_1,
    reduction_interval,
    select_point,
)
from .heads import clone_head, fresh_heads, perturb_heads, relative_drift
from .outcomes import PromptFeatures, few_threads, prompt_features_of, relative_reduction
from .train import sampling_plan, train_heads

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
    ``chunk_size``: rows per similarity chunk.
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
    """One trained point: its record, the mean per-query report-half R@1 over seeds and each seed's heads."""

    point: FrontierPoint
    report_per_query: np.ndarray
    heads: tuple[Heads, ...]


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
    ``(steps, seconds)`` of every training run.
    """

    ev: HeldoutEvaluator
    template: Heads
    base: DPConfig
    bank_text: np.ndarray
    bank_image: np.ndarray
    seeds: tuple[int, ...]
    sigmas: dict[tuple[float, int], float] = field(default_factory=dict)
    train_s: float = 0.0
    eval_s: float = 0.0
    n_evals: int = 0
    run_log: list[tuple[int, float]] = field(default_factory=list)

    def init_heads(self, init: str, seed: int) -> Heads:
        if init == "pretrained":
            return clone_head(self.template[0]), clone_head(self.template[1])
        return fresh_heads(self.template[0], self.template[1], seed=seed)

    def train(
        self, setting: Setting, seed: int, data: PrivateSet, private: bool = True
    ) -> tuple[Heads, dict[str, Any]]:
        cfg = self.base.replace(optimizer=setting.optimizer, lr=setting.lr, epochs=setting.epochs, seed=seed)
        if private:
            q, steps, _ = sampling_plan(len(data), cfg)
            if (q, steps) not in self.sigmas:
                assert cfg.target_epsilon is not None, "a private frontier run needs dp.training.target_epsilon"
                self.sigmas[(q, steps)] = calibrate_noise(float(cfg.target_epsilon), cfg.delta, q, steps)
            cfg = cfg.replace(noise_multiplier=self.sigmas[(q, steps)])
        else:
            cfg = nonprivate_config(cfg)
        start = self.init_heads(setting.init, seed)
        t0 = time.perf_counter()
        res = train_heads(
            data.image,
            data.text,
            start[0],
            start[1],
            config=cfg,
            patient_ids=data.patients,
            bank_text_feats=self.bank_text,
            bank_image_feats=self.bank_image,
        )
        self.train_s += time.perf_counter() - t0
        self.run_log.append((int(res.record["steps"]), time.perf_counter() - t0))
        return (res.image_head, res.text_head), res.record

    def evaluate(self, heads: Heads) -> tuple[dict[str, float], np.ndarray]:
        t0 = time.perf_counter()
        m = self.ev.measure(heads)
        rel = self.ev.relative(m)
        rel["drift"] = relative_drift(heads, self.template)
        self.eval_s += time.perf_counter() - t0
        self.n_evals += 1
        return rel, m["r1_report_per_query"]

    def point(self, setting: Setting, data: PrivateSet, *, study: str, private: bool = True) -> PointRun:
        """One frontier point: ``len(seeds)`` runs, their mean and spread; with the mean per-query report R@1 and
        the heads."""
        per_seed, pq, heads_list = [], [], []
        record: dict[str, Any] = {}
        for seed in self.seeds:
            heads, record = self.train(setting, seed, data, private)
            rel, q = self.evaluate(heads)
            per_seed.append(dict(rel, seed=seed))
            pq.append(q)
            heads_list.append(heads)
        ind = record.get("epsilon_independent") or {}
        privacy: dict[str, Any] = {k: record.get(k) for k in PRIVACY_FIELDS}
        means: dict[str, Any] = aggregate_seeds(per_seed)
        outcomes: list[dict[str, Any]] = [{k: s[k] for k in PER_SEED_KEYS} for s in per_seed]
        point = FrontierPoint(
            **setting.as_dict(),
            n_private=int(len(data)),
            study=study,
            private=private,
            **privacy,
            epsilon_dp_accounting_rdp=ind.get("dp_accounting_rdp"),
            epsilon_dp_accounting_pld=ind.get("dp_accounting_pld"),
            **means,
            seeds=self.seeds,
            per_seed=tuple(SeedOutcome(**o) for o in outcomes),
        )
        return PointRun(point, np.mean(pq, axis=0), tuple(heads_list))


def make_evaluator(inputs: FrontierInputs, spec: FrontierConfig) -> HeldoutEvaluator:
    """The held-out evaluator of a build: the halves, the reference N (``spec.reference_pool_size``, or the smaller
    half) and the pretrained heads' baseline."""
    return HeldoutEvaluator(
        inputs.template,
        inputs.test_img,
        inputs.test_txt,
        inputs.test_labels,
        inputs.test_patients,
        inputs.train_img,
        inputs.train_labels,
        inputs.prompt_features,
        probe_C=float(inputs.probe_C),
        split_seed=spec.split_seed,
        reference_pool_size=spec.reference_pool_size,
        chunk_size=int(inputs.chunk_size),
        probe_max_train=spec.probe_max_train,
    )


def run_grid(run: _Runner, spec: FrontierConfig, own: PrivateSet, say: Callable[[str], None]) -> GridRun:
    """Step 1: every setting of :func:`frontier_grid` on the own private set, ``n_seeds`` noise seeds each."""
    grid = frontier_grid(spec)
    runs = []
    for i, setting in enumerate(grid):
        say(f"frontier {i + 1}/{len(grid)}: {setting}")
        runs.append(run.point(setting, own, study="grid"))
    return GridRun(tuple(runs))


def select_reference(grid: GridRun, ev: HeldoutEvaluator, spec: FrontierConfig, *, seed: int) -> Selection:
    """Step 2: the declared rule on the selection half, the reference point and its report-half bootstrap CI."""
    points = grid.points
    n_own = points[0].n_private
    rule = SelectionRule(
        max_probe_auroc_drop=float(spec.max_probe_auroc_drop),
        max_zero_shot_auroc_drop=float(spec.max_zero_shot_auroc_drop),
        reference_pool_size=int(ev.pool_size),
        n_private=int(n_own),
    )
    selected = select_point(points, rule)
    own = [i for i, p in enumerate(points) if p.n_private == n_own]
    reference = selected if selected is not None else max(own, key=lambda i: (points[i].r1_reduction_select, -i))
    lo, hi = reduction_interval(
        ev.baseline["r1_report_per_query"],
        grid.runs[reference].report_per_query,
        ev.test_patients[ev.report],
        n_boot=spec.n_boot,
        seed=seed,
    )
    return Selection(rule, selected, reference, lo, hi)


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
) -> tuple[FrontierResult, dict[str, Any]]:
    """Run the whole frontier study on in-memory ``inputs``, one step after the other (see the module docstring).

    ``pool(n)``: supplementary private pairs (``image``, ``text``, ``patients``, ``n_pairs``) for the
    scaling study (``None``: only sizes up to the own set). Returns ``(result, arrays)``: the
    :class:`FrontierResult` (without ``rung`` and ``bank``) and the per-query report-half R@1 of the
    pretrained and the reference heads with the report half's patient ids.
    """
    t_start = time.perf_counter()
    say = progress or (lambda s: None)
    ev = make_evaluator(inputs, spec)
    seeds = tuple(int(seed) + i for i in range(spec.n_seeds))
    run = _Runner(ev, inputs.template, base, inputs.bank_text, inputs.bank_image, seeds)
    own = PrivateSet(inputs.train_img, inputs.train_txt, np.asarray(inputs.train_patients).astype(str))
    grid = run_grid(run, spec, own, say)
    sel = select_reference(grid, ev, spec, seed=seed)
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
            baseline={k: v for k, v in ev.baseline.items() if k != "r1_report_per_query"},
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
        "dp": {k: v for k, v in cfg.dp.to_dict().items() if k not in ("frontier", "budget_sweep")},
        "probe_C": cfg.utility.probe_C,
        "seed": cfg.seed,
        "chunk": cfg.audit.chunk_size,
        "code": cache.stage_code_version(__name__),
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
        )
        with few_threads():
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
    """The setting chapters 7-8 use: the selected point, or (when no point meets the rule) the reference point."""
    return frontier.reference_point.setting


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
