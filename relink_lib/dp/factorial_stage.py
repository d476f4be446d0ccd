"""Pipeline stage of chapter 6's factorial: where the selected setting's cut comes from (cached).

At the selected setting of the frontier (:func:`relink_lib.dp.frontier_stage.reference_setting`:
optimizer, learning rate, epochs), every arm of

    init {pretrained, reinit} x training {none, nonprivate, clip_only, dp at each eps of dp.factorial.epsilons}

plus ``public_only`` (fresh heads trained non-privately on the public val split alone, the split the
bank comes from) is trained with the same steps, learning rate, expected batch size and, per seed
index, the same init seed and Poisson sampler seed (``dp.factorial.n_seeds`` seeds, fresh ones:
``params["seed"] + FACTORIAL_SEED_BASE + i``, so the frontier's selection never saw their noise).
``clip_only`` clips every pair's gradient exactly as DP does (same C, divided by the expected batch)
with sigma = 0: it has no epsilon. Every arm and seed is evaluated on the confirmation cohort
(:func:`relink_lib.dp.confirmation.get_confirmation`): per-query tie-fair expected R@1 at
N = min(``dp.frontier.reference_pool_size``, n - 1), zero-shot macro AUROC and label-level
retrieval P@10 (among the first ``dp.factorial.retrieval_pairs`` pairs: its cost is quadratic).
The shares and the paired intervals are :mod:`relink_lib.dp.factorial`'s. Also: the
non-private learning curve from fresh heads (one run per seed to the largest of
``dp.factorial.curve_epochs``, evaluated at the checkpoints) and the confirmation curve over N and
K of the pretrained against the selected DP heads.

Writes ``factorial.json`` (:meth:`FactorialResult.to_json`) and ``per_query.npz`` (per-query R@1 of
every arm and seed, and the confirmation patients). A real-data profile has no confirmation cohort:
:func:`get_factorial` returns ``None``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Sequence

import numpy as np
from torch import nn

from .. import cache
from ..audit.engine import per_query_recall, rank_counts
from ..cohorts.stage import get_cohort
from ..config import DPConfig, ProfileLike, as_profile
from ..features import feature_dir, get_features
from ..models.stage import get_ladder
from ..numerics import cache_token
from ..paper import PAPER
from ..profiles import cache_dir
from ..utility.retrieval import label_retrieval_precision
from ..utility.zero_shot import zero_shot_auroc
from .batched import SeedsHook, train_heads_seeds
from .calibrate import calibrate_noise
from .confirmation import ConfirmationSet, get_confirmation
from .controls import nonprivate_config
from .factorial import Estimate, cut, difference, paired_bootstrap, share
from .frontier import JsonRecord, Setting, drop_interval, embed_heads
from .frontier import zero_shot_scores as zero_shot_scores_of
from .frontier_stage import get_frontier, reference_setting
from .heads import clone_head, fresh_heads
from .outcomes import PromptFeatures, prompt_features_of
from .train import sampling_plan

FACTORIAL_SEED_BASE = 1000
"""Seed index i of every arm is ``params["seed"] + FACTORIAL_SEED_BASE + i`` (init, sampler and noise)."""
TRAININGS: tuple[str, ...] = ("none", "nonprivate", "clip_only", "dp", "public_only")
BASE_ARM = "pretrained/none"
"""The untrained pretrained heads: the baseline of every cut."""
NOISE_SHARE_DEFINITION = (
    "(cut of DP - cut of clip-only) / cut of DP, at the selected init and epsilon: the part of the DP cut that "
    "the Gaussian noise adds over the same clipped training with sigma = 0"
)
REINIT_SHARE_DEFINITION = (
    "(cut of reinit + DP - cut of pretrained + DP) / cut of reinit + DP, at the selected epsilon: the part of "
    "the fresh-start DP cut that disappears when DP fine-tunes the pretrained heads instead"
)
PUBLIC_DEFINITION = (
    "cut of public-only heads - cut of the DP heads (selected init and epsilon): positive = the public-only "
    "heads cut more"
)

ZERO_SHOT_DROP_DEFINITION = (
    "100 x (macro zero-shot AUROC of the pretrained heads - mean over seeds of the selected DP arm's), confirmation "
    "cohort, labels 1 / 0 (uncertain and missing left out); positive = worse"
)

Heads = tuple[nn.Module, nn.Module]


@dataclass(frozen=True)
class FactorialArm(JsonRecord):
    """One arm: ``init`` x ``training`` (``epsilon_target`` for DP arms), the means over ``n_seeds`` seeds on the
    confirmation cohort (``r1`` at ``pool_size``, ``zero_shot_auroc``, ``retrieval_precision_at_10``), the cut
    against the untrained pretrained heads with its paired CI, and the privacy record (DP arms only: the
    recorded RDP ``epsilon`` and ``epsilon_dp_accounting_rdp``; clip-only and non-private arms have none);
    ``r1_seed_min`` / ``r1_seed_max``: the range of the per-seed mean R@1."""

    OPTIONAL: ClassVar[tuple[str, ...]] = (
        "epsilon_target",
        "epsilon",
        "epsilon_dp_accounting_rdp",
        "r1_seed_min",
        "r1_seed_max",
    )
    name: str
    init: str
    training: str
    n_seeds: int
    trained_on: str
    n_train: int
    steps: int
    expected_batch_size: int
    noise_multiplier: float | None
    r1: float
    r1_seed_sd: float
    cut: float
    cut_ci_low: float
    cut_ci_high: float
    zero_shot_auroc: float
    retrieval_precision_at_10: float
    epsilon_target: float | None = None
    epsilon: float | None = None
    epsilon_dp_accounting_rdp: float | None = None
    r1_seed_min: float | None = None
    r1_seed_max: float | None = None


@dataclass(frozen=True)
class CurvePoint(JsonRecord):
    """One epoch count of the non-private learning curve from fresh heads (means over ``n_seeds``)."""

    epochs: float
    steps: int
    n_seeds: int
    r1: float
    cut: float
    cut_ci_low: float
    cut_ci_high: float
    zero_shot_auroc: float
    zero_shot_auroc_drop: float


@dataclass(frozen=True)
class RecallCurvePoint(JsonRecord):
    """Recall@K at pool size N on the confirmation cohort for ``variant`` (``pretrained`` or ``dp``, mean over
    seeds) with its patient(-and-seed) bootstrap CI, and (``dp``) the cut against the pretrained heads."""

    variant: str
    pool_size: int
    k: int
    recall: float
    ci_low: float
    ci_high: float
    cut: float | None = None
    cut_ci_low: float | None = None
    cut_ci_high: float | None = None
    OPTIONAL: ClassVar[tuple[str, ...]] = ("cut", "cut_ci_low", "cut_ci_high")


@dataclass(frozen=True)
class ConfirmationSummary(JsonRecord):
    """``confirmation`` of ``mitigation.json``: the cohort, the selected DP arm's cut at ``pool_size`` (the paper's
    estimand, N = 10,000 when the cohort is large enough) with its CI beside the paper's cut (quoted), and the
    curve over N and K."""

    NESTED: ClassVar[Mapping[str, Any]] = {"dp_cut": Estimate, "curve": (RecallCurvePoint,)}
    n_pairs: int
    n_patients: int
    seed: int
    seed_offset: int
    features: str
    source: str
    pool_size: int
    dp_arm: str
    dp_cut: Estimate
    paper_cut: float
    curve: tuple[RecallCurvePoint, ...]

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out["dp_cut"] = self.dp_cut.to_json()
        return out


@dataclass(frozen=True)
class FactorialCost(JsonRecord):
    """Seconds training and evaluating, runs and evaluations of one build."""

    train_s: float
    eval_s: float
    total_s: float
    n_runs_trained: int
    n_evaluations: int
    n_curve_checkpoints: int


@dataclass(frozen=True)
class FactorialResult(JsonRecord):
    """The factorial at the selected ``setting``: ``arms``, the ``noise_share`` and ``reinit_share`` (each an
    :class:`Estimate` with its definition), ``public_vs_dp`` (difference of cuts), the non-private
    ``learning_curve`` from fresh heads, the ``confirmation`` summary, the selected DP arm's macro zero-shot AUROC
    ``zero_shot_drop`` against the pretrained heads on the confirmation cohort (percentage points, paired over
    patients and seeds), ``seeds`` and ``cost``."""

    NESTED: ClassVar[Mapping[str, Any]] = {
        "arms": (FactorialArm,),
        "noise_share": Estimate,
        "reinit_share": Estimate,
        "public_vs_dp": Estimate,
        "learning_curve": (CurvePoint,),
        "confirmation": ConfirmationSummary,
        "zero_shot_drop": Estimate,
        "cost": FactorialCost,
    }
    setting: Mapping[str, Any]
    selected_init: str
    target_epsilon: float
    pool_size: int
    n_private: int
    n_public: int
    seeds: tuple[int, ...]
    n_boot: int
    arms: tuple[FactorialArm, ...]
    noise_share: Estimate
    reinit_share: Estimate
    public_vs_dp: Estimate
    learning_curve: tuple[CurvePoint, ...]
    confirmation: ConfirmationSummary
    zero_shot_drop: Estimate
    cost: FactorialCost

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        return {k: v.to_json() if isinstance(v, Estimate) else v for k, v in out.items()}

    def arm(self, name: str) -> FactorialArm:
        """The arm called ``name`` (e.g. ``reinit/dp@0.34``)."""
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(f"no arm {name!r}; arms: {[a.name for a in self.arms]}")

    @property
    def selected_dp_arm(self) -> FactorialArm:
        return self.arm(arm_name(self.selected_init, "dp", self.target_epsilon))


def arm_name(init: str, training: str, epsilon: float | None = None) -> str:
    """``reinit/dp@0.34``, ``pretrained/clip_only``, ``public_only``."""
    if training == "public_only":
        return "public_only"
    return f"{init}/{training}" + (f"@{epsilon:g}" if training == "dp" else "")


@dataclass(frozen=True)
class ArmSpec:
    """What one arm trains: ``init``, ``training``, target ``epsilon`` (DP) and the run's :class:`DPConfig`
    without its seed."""

    init: str
    training: str
    epsilon: float | None
    config: DPConfig | None

    @property
    def name(self) -> str:
        return arm_name(self.init, self.training, self.epsilon)


def arm_specs(
    setting: Setting, base: DPConfig, n_private: int, n_public: int, epsilons: Sequence[float]
) -> list[ArmSpec]:
    """The arms of the factorial at ``setting``: every init x {none, nonprivate, clip_only, dp at each eps}, then
    ``public_only``. DP sigma is calibrated per eps for the private set's (q, steps); clip-only is the same clipped
    mechanism with sigma = 0 and no target; public-only keeps the private run's steps and batch size on the
    ``n_public`` public pairs."""
    cfg = base.replace(optimizer=setting.optimizer, lr=setting.lr, epochs=setting.epochs)
    q, steps, _ = sampling_plan(n_private, cfg)
    specs = []
    for init in ("pretrained", "reinit"):
        specs.append(ArmSpec(init, "none", None, None))
        specs.append(ArmSpec(init, "nonprivate", None, nonprivate_config(cfg)))
        specs.append(ArmSpec(init, "clip_only", None, cfg.replace(target_epsilon=None, noise_multiplier=0.0)))
        for eps in epsilons:
            sigma = calibrate_noise(float(eps), cfg.delta, q, steps)
            specs.append(
                ArmSpec(init, "dp", float(eps), cfg.replace(target_epsilon=float(eps), noise_multiplier=sigma))
            )
    per_epoch_public = max(1, math.ceil(n_public / cfg.batch_size))
    public = nonprivate_config(cfg).replace(epochs=steps / per_epoch_public)
    specs.append(ArmSpec("reinit", "public_only", None, public))
    return specs


@dataclass(frozen=True, eq=False)
class FactorialInputs:
    """What one build reads: the pretrained heads, the private train features and patients, the public val
    features (the bank is their first ``bank_n`` rows), the confirmation cohort, the zero-shot prompts."""

    template: Heads
    train_img: np.ndarray
    train_txt: np.ndarray
    train_patients: np.ndarray
    public_img: np.ndarray
    public_txt: np.ndarray
    bank_n: int
    confirmation: ConfirmationSet
    prompt_features: PromptFeatures | None
    chunk_size: int


@dataclass(slots=True)
class _Evaluator:
    """Evaluates heads on the confirmation cohort and keeps the time spent."""

    inputs: FactorialInputs
    pool_size: int
    retrieval_pairs: int
    eval_s: float = 0.0
    n_evals: int = 0

    def rank_counts(self, heads: Heads) -> tuple[Any, np.ndarray, np.ndarray]:
        c = self.inputs.confirmation
        img, rep = embed_heads(heads, c.image, c.text)
        return rank_counts(img, rep, chunk_size=self.inputs.chunk_size, device="cpu"), img, rep

    def measure(
        self, heads: Heads, *, retrieval: bool = True, zero_shot_scores: bool = False
    ) -> tuple[dict[str, Any], Any]:
        """``r1`` (mean), ``r1_per_query``, ``zero_shot_auroc`` and ``retrieval_precision_at_10`` (and with
        ``zero_shot_scores`` the per-label scores ``(n, 14)`` under that key); and the rank counts (for the N x K
        curve)."""
        t0 = time.perf_counter()
        c = self.inputs.confirmation
        rc, img, rep = self.rank_counts(heads)
        pq = per_query_recall(rc, self.pool_size, 1)
        out: dict[str, Any] = {"r1_per_query": pq, "zero_shot_auroc": math.nan, "retrieval_precision_at_10": math.nan}
        if self.inputs.prompt_features is not None:
            zs = zero_shot_auroc(
                None,
                c.image,
                c.labels,
                image_head=heads[0],
                text_head=heads[1],
                prompt_features=self.inputs.prompt_features,
            )
            out["zero_shot_auroc"] = float(zs.loc[zs["label"] == "macro", "auroc"].iloc[0])
            if zero_shot_scores:
                out["zero_shot_scores"] = zero_shot_scores_of(heads, c.image, self.inputs.prompt_features)
        if retrieval:
            m = min(len(c), self.retrieval_pairs)
            ret = label_retrieval_precision(img[:m], rep[:m], c.labels[:m], k=min(10, m - 1))
            out["retrieval_precision_at_10"] = float(ret["precision"].iloc[0])
        self.eval_s += time.perf_counter() - t0
        self.n_evals += 1
        return out, rc


def _start(template: Heads, init: str, seed: int) -> Heads:
    if init == "pretrained":
        return clone_head(template[0]), clone_head(template[1])
    return fresh_heads(template[0], template[1], seed=seed)


def _train(
    inputs: FactorialInputs,
    spec: ArmSpec,
    seeds: Sequence[int],
    on_step: SeedsHook | None = None,
) -> tuple[list[Heads], dict[str, Any]]:
    """Every seed of one arm, stacked into one computation (:func:`relink_lib.dp.batched.train_heads_seeds`):
    seed i starts from the arm's init drawn with seed i and trains with sampler and noise seeded from it. Returns
    the heads per seed and the first seed's privacy record (the mechanism is the same for every seed)."""
    assert spec.config is not None
    public = spec.training == "public_only"
    x_img = inputs.public_img if public else inputs.train_img
    x_txt = inputs.public_txt if public else inputs.train_txt
    res = train_heads_seeds(
        x_img,
        x_txt,
        [_start(inputs.template, spec.init, s) for s in seeds],
        config=spec.config,
        seeds=seeds,
        patient_ids=None if public else inputs.train_patients,
        bank_text_feats=inputs.public_txt[: inputs.bank_n],
        bank_image_feats=inputs.public_img[: inputs.bank_n],
        on_step=on_step,
    )
    return [(r.image_head, r.text_head) for r in res], res[0].record


def _arm_record(
    spec: ArmSpec,
    record: Mapping[str, Any] | None,
    seeds: Sequence[int],
    outs: Sequence[Mapping[str, Any]],
    ci: Estimate,
    n_train: int,
    trained_on: str,
) -> FactorialArm:
    r1s = np.array([float(np.mean(o["r1_per_query"])) for o in outs])
    rec = record or {}
    dp = spec.training == "dp"
    return FactorialArm(
        name=spec.name,
        init=spec.init,
        training=spec.training,
        n_seeds=len(seeds),
        trained_on=trained_on,
        n_train=n_train,
        steps=int(rec.get("steps", 0)),
        expected_batch_size=int(rec.get("expected_batch_size", 0)),
        noise_multiplier=rec.get("noise_multiplier") if spec.training in ("dp", "clip_only") else None,
        r1=float(r1s.mean()),
        r1_seed_sd=float(r1s.std(ddof=1)) if len(r1s) > 1 else math.nan,
        cut=ci.value,
        cut_ci_low=ci.ci_low,
        cut_ci_high=ci.ci_high,
        zero_shot_auroc=float(np.mean([o["zero_shot_auroc"] for o in outs])),
        retrieval_precision_at_10=float(np.mean([o["retrieval_precision_at_10"] for o in outs])),
        epsilon_target=spec.epsilon if dp else None,
        epsilon=float(rec["epsilon"]) if dp else None,
        epsilon_dp_accounting_rdp=(rec.get("epsilon_independent") or {}).get("dp_accounting_rdp") if dp else None,
        r1_seed_min=float(r1s.min()),
        r1_seed_max=float(r1s.max()),
    )


@dataclass
class _Build:
    train_s: float = 0.0
    n_runs: int = 0
    per_query: dict[str, np.ndarray] = field(default_factory=dict)


def build_factorial(
    inputs: FactorialInputs,
    setting: Setting,
    base: DPConfig,
    *,
    epsilons: Sequence[float],
    target_epsilon: float,
    selected_init: str,
    seeds: Sequence[int],
    pool_size: int,
    n_boot: int,
    curve_epochs: Sequence[float],
    curve_n_seeds: int,
    confirmation_pool_sizes: Sequence[int],
    ks: Sequence[int],
    retrieval_pairs: int = 2000,
    boot_seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> tuple[FactorialResult, dict[str, Any]]:
    """Train and evaluate every arm, the learning curve and the confirmation curve (see the module docstring).

    Returns the result and the arrays of ``per_query.npz`` (per-query R@1 per arm, ``(S, n)``; ``patients``)."""
    t_start = time.perf_counter()
    say = progress or (lambda s: None)
    conf = inputs.confirmation
    pats = conf.patients
    n_private, n_public = len(inputs.train_img), len(inputs.public_img)
    ev = _Evaluator(inputs, pool_size, retrieval_pairs)
    b = _Build()
    eps_all = sorted({float(e) for e in epsilons} | {float(target_epsilon)})
    specs = arm_specs(setting, base, n_private, n_public, eps_all)
    arms: list[FactorialArm] = []
    rcs: dict[str, list[Any]] = {}
    sel_dp = arm_name(selected_init, "dp", target_epsilon)
    outs_by_arm: dict[str, tuple[ArmSpec, dict[str, Any] | None, list[dict[str, Any]]]] = {}
    for i, spec in enumerate(specs):
        say(f"factorial arm {i + 1}/{len(specs)}: {spec.name}")
        arm_seeds = seeds[:1] if spec.name == BASE_ARM else seeds
        outs, record = [], None
        if spec.config is None:
            trained = [_start(inputs.template, spec.init, s) for s in arm_seeds]
        else:
            t0 = time.perf_counter()
            trained, record = _train(inputs, spec, arm_seeds)
            b.train_s += time.perf_counter() - t0
            b.n_runs += len(arm_seeds)
        keep_scores = spec.name in (BASE_ARM, sel_dp)
        for heads in trained:
            o, rc = ev.measure(heads, zero_shot_scores=keep_scores)
            outs.append(o)
            if spec.name in (BASE_ARM, sel_dp):
                rcs.setdefault(spec.name, []).append(rc)
        b.per_query[spec.name] = np.stack([o["r1_per_query"] for o in outs])
        outs_by_arm[spec.name] = (spec, record, outs)
    for name, (spec, record, outs) in outs_by_arm.items():
        ci = paired_bootstrap(
            {"base": b.per_query[BASE_ARM], "arm": b.per_query[name]},
            pats,
            cut("base", "arm"),
            n_boot=n_boot,
            seed=boot_seed,
        )
        public = spec.training == "public_only"
        trained_on = "-" if spec.config is None else ("public val split" if public else "private train split")
        n_train = 0 if spec.config is None else (n_public if public else n_private)
        arms.append(_arm_record(spec, record, seeds[: len(outs)], outs, ci, n_train, trained_on))
    pq = {"base": b.per_query[BASE_ARM]}
    pq.update(
        dp=b.per_query[sel_dp],
        clip=b.per_query[arm_name(selected_init, "clip_only")],
        reinit_dp=b.per_query[arm_name("reinit", "dp", target_epsilon)],
        pretrained_dp=b.per_query[arm_name("pretrained", "dp", target_epsilon)],
        public=b.per_query["public_only"],
    )
    noise = paired_bootstrap(
        pq, pats, share("base", "dp", "clip"), n_boot=n_boot, seed=boot_seed, definition=NOISE_SHARE_DEFINITION
    )
    reinit = paired_bootstrap(
        pq,
        pats,
        share("base", "reinit_dp", "pretrained_dp"),
        n_boot=n_boot,
        seed=boot_seed,
        definition=REINIT_SHARE_DEFINITION,
    )
    public_vs_dp = paired_bootstrap(
        pq, pats, difference("base", "public", "dp"), n_boot=n_boot, seed=boot_seed, definition=PUBLIC_DEFINITION
    )
    zs_drop = Estimate(math.nan, math.nan, math.nan, ZERO_SHOT_DROP_DEFINITION)
    if inputs.prompt_features is not None:
        y = np.where(np.isin(conf.labels, (0.0, 1.0)), conf.labels, np.nan)
        point, lo, hi = drop_interval(
            outs_by_arm[BASE_ARM][2][0]["zero_shot_scores"],
            [o["zero_shot_scores"] for o in outs_by_arm[sel_dp][2]],
            y,
            pats,
            n_boot=n_boot,
            seed=boot_seed,
        )
        zs_drop = Estimate(point, lo, hi, ZERO_SHOT_DROP_DEFINITION)
    say("factorial: learning curve")
    curve, n_ckpt, t_curve = _learning_curve(
        inputs, ev, specs, setting, seeds[:curve_n_seeds], curve_epochs, b.per_query[BASE_ARM], n_boot, boot_seed
    )
    b.train_s += t_curve
    b.n_runs += min(curve_n_seeds, len(seeds))
    base_zs = next(a.zero_shot_auroc for a in arms if a.name == BASE_ARM)
    curve = tuple(
        CurvePoint(**{**c.to_json(), "zero_shot_auroc_drop": 100 * (base_zs - c.zero_shot_auroc)}) for c in curve
    )
    dp_arm = next(a for a in arms if a.name == sel_dp)
    info = conf.info
    summary = ConfirmationSummary(
        n_pairs=info.n_pairs,
        n_patients=info.n_patients,
        seed=info.seed,
        seed_offset=info.seed_offset,
        features=info.features,
        source=info.source,
        pool_size=int(pool_size),
        dp_arm=sel_dp,
        dp_cut=Estimate(dp_arm.cut, dp_arm.cut_ci_low, dp_arm.cut_ci_high, "1 - R@1(DP heads) / R@1(pretrained heads)"),
        paper_cut=PAPER.dp_r1_reduction_n10000,
        curve=_recall_curve(
            rcs[BASE_ARM], rcs[sel_dp], pats, confirmation_pool_sizes, ks, len(conf), n_boot, boot_seed
        ),
    )
    result = FactorialResult(
        setting=setting.as_dict(),
        selected_init=selected_init,
        target_epsilon=float(target_epsilon),
        pool_size=int(pool_size),
        n_private=n_private,
        n_public=n_public,
        seeds=tuple(int(s) for s in seeds),
        n_boot=int(n_boot),
        arms=tuple(arms),
        noise_share=noise,
        reinit_share=reinit,
        public_vs_dp=public_vs_dp,
        learning_curve=curve,
        confirmation=summary,
        zero_shot_drop=zs_drop,
        cost=FactorialCost(
            train_s=b.train_s,
            eval_s=ev.eval_s,
            total_s=time.perf_counter() - t_start,
            n_runs_trained=b.n_runs,
            n_evaluations=ev.n_evals,
            n_curve_checkpoints=n_ckpt,
        ),
    )
    arrays: dict[str, Any] = {k.replace("/", "__"): v for k, v in b.per_query.items()}
    arrays["patients"] = np.asarray(pats).astype(str)
    return result, arrays


def _learning_curve(
    inputs: FactorialInputs,
    ev: _Evaluator,
    specs: Sequence[ArmSpec],
    setting: Setting,
    seeds: Sequence[int],
    epochs: Sequence[float],
    base_pq: np.ndarray,
    n_boot: int,
    boot_seed: int,
) -> tuple[tuple[CurvePoint, ...], int, float]:
    """Fresh heads trained non-privately at the selected setting to ``max(epochs)``, checkpointed at each epoch
    count (a run of k steps is the first k steps of the longer run: same sampler stream)."""
    npv = next(s for s in specs if s.init == "reinit" and s.training == "nonprivate")
    assert npv.config is not None
    _, _, per_epoch = sampling_plan(len(inputs.train_img), npv.config)
    grid = sorted({float(e) for e in epochs})
    steps_at = {e: max(1, int(round(e * per_epoch))) for e in grid}
    longest = ArmSpec("reinit", "nonprivate", None, npv.config.replace(epochs=max(grid)))
    per_epoch_out: dict[float, list[dict[str, Any]]] = {e: [] for e in grid}
    snaps: dict[int, list[Heads]] = {}
    t0 = time.perf_counter()
    _train(inputs, longest, seeds, on_step=_checkpointer(snaps, set(steps_at.values())))
    t_train = time.perf_counter() - t0
    for e in grid:
        for heads in snaps[steps_at[e]]:
            o, _ = ev.measure(heads, retrieval=False)
            per_epoch_out[e].append(o)
    points = []
    for e in grid:
        outs = per_epoch_out[e]
        arm = np.stack([o["r1_per_query"] for o in outs])
        est = paired_bootstrap(
            {"base": base_pq, "arm": arm},
            inputs.confirmation.patients,
            cut("base", "arm"),
            n_boot=n_boot,
            seed=boot_seed,
        )
        points.append(
            CurvePoint(
                epochs=e,
                steps=steps_at[e],
                n_seeds=len(outs),
                r1=float(arm.mean()),
                cut=est.value,
                cut_ci_low=est.ci_low,
                cut_ci_high=est.ci_high,
                zero_shot_auroc=float(np.mean([o["zero_shot_auroc"] for o in outs])),
                zero_shot_auroc_drop=math.nan,
            )
        )
    return tuple(points), len(grid) * len(seeds), t_train


def _checkpointer(snaps: dict[int, list[Heads]], wanted: set[int]) -> SeedsHook:
    """A step hook that keeps copies of every seed's heads after each step in ``wanted`` in ``snaps``."""

    def keep(step: int, heads: list[Heads]) -> None:
        if step in wanted:
            snaps[step] = [(clone_head(a), clone_head(b)) for a, b in heads]

    return keep


def _mean_of(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda m: m[name]


def _recall_curve(
    base_rcs: Sequence[Any],
    dp_rcs: Sequence[Any],
    patients: np.ndarray,
    pool_sizes: Sequence[int],
    ks: Sequence[int],
    n: int,
    n_boot: int,
    boot_seed: int,
) -> tuple[RecallCurvePoint, ...]:
    """Recall@K over N (pool sizes up to the cohort) of the pretrained and the DP heads with paired CIs."""
    out = []
    for size in sorted({min(int(p), n) for p in pool_sizes}):
        for k in ks:
            arms = {
                "base": np.stack([per_query_recall(rc, size, int(k)) for rc in base_rcs]),
                "dp": np.stack([per_query_recall(rc, size, int(k)) for rc in dp_rcs]),
            }
            for variant in ("base", "dp"):
                est = paired_bootstrap(arms, patients, _mean_of(variant), n_boot=n_boot, seed=boot_seed)
                c = paired_bootstrap(arms, patients, cut("base", "dp"), n_boot=n_boot, seed=boot_seed)
                extra = {"cut": c.value, "cut_ci_low": c.ci_low, "cut_ci_high": c.ci_high} if variant == "dp" else {}
                out.append(
                    RecallCurvePoint(
                        variant="pretrained" if variant == "base" else "dp",
                        pool_size=size,
                        k=int(k),
                        recall=est.value,
                        ci_low=est.ci_low,
                        ci_high=est.ci_high,
                        **extra,
                    )
                )
    return tuple(out)


def get_factorial(params: ProfileLike, *, progress: bool = False) -> FactorialResult | None:
    """The factorial at chapter 6's selected setting on the confirmation cohort (cached; see the module
    docstring), or ``None`` for a real-data profile (no confirmation cohort)."""
    cfg = as_profile(params)
    conf = get_confirmation(cfg, progress=progress)
    if conf is None:
        return None
    spec = cfg.dp.factorial
    setting = reference_setting(get_frontier(cfg, progress=progress))
    cohort = get_cohort(cfg, site="internal")
    rung = get_ladder(cfg, progress=progress)[-1]
    splits = {s: get_features(cfg, cohort, rung, s, progress=progress) for s in ("train", "val")}
    bank_n = min(cfg.dp.bank_size, len(splits["val"]))
    pool_size = int(min(cfg.dp.frontier.reference_pool_size, len(conf) - 1))
    seeds = tuple(cfg.seed + FACTORIAL_SEED_BASE + i for i in range(spec.n_seeds))
    dp_shared = {k: v for k, v in cfg.dp.to_dict().items() if k not in ("frontier", "budget_sweep")}
    key = {
        "step": "dp-factorial",
        "features": {s: feature_dir(cfg, cohort, rung, s).name for s in splits},
        "confirmation": conf.info.features,
        "setting": setting.as_dict(),
        "dp": dp_shared,
        "reference_pool_size": cfg.dp.frontier.reference_pool_size,
        "seed": cfg.seed,
        "chunk": cfg.audit.chunk_size,
        "code": cache.stage_code_version(__name__),
        "numerics": cache_token(),  # the dispatch and the audit's BLAS
    }

    def build(tmp: Path) -> None:
        encoder = rung.load(device="cpu")
        pairs = cohort.pairs.iloc[np.asarray(splits["train"].rows)]
        inputs = FactorialInputs(
            template=(encoder.image_head, encoder.text_head),
            train_img=splits["train"].image,
            train_txt=splits["train"].text,
            train_patients=pairs["patient_id"].astype(str).to_numpy(),
            public_img=splits["val"].image,
            public_txt=splits["val"].text,
            bank_n=bank_n,
            confirmation=conf,
            prompt_features=prompt_features_of(encoder),
            chunk_size=cfg.audit.chunk_size,
        )
        base = cfg.dp.training_config(optimizer=setting.optimizer, lr=setting.lr, epochs=setting.epochs)
        result, arrays = build_factorial(
            inputs,
            setting,
            base,
            epsilons=spec.epsilons,
            target_epsilon=float(cfg.dp.target_epsilon or PAPER.dp_epsilon),
            selected_init=setting.init,
            seeds=seeds,
            pool_size=pool_size,
            n_boot=spec.n_boot,
            curve_epochs=spec.curve_epochs,
            curve_n_seeds=spec.curve_n_seeds,
            confirmation_pool_sizes=cfg.dp.confirmation.pool_sizes,
            ks=cfg.dp.confirmation.ks,
            retrieval_pairs=spec.retrieval_pairs,
            boot_seed=cfg.seed,
            progress=print if progress else None,
        )
        (tmp / "factorial.json").write_text(json.dumps(result.to_json(), indent=1))
        np.savez(tmp / "per_query.npz", **arrays)

    path = cache.cached_dir(cache_dir(cfg.name), "dp-factorial", key, build)
    return FactorialResult.from_json(json.loads((path / "factorial.json").read_text()))
