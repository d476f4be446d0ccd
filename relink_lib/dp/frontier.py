"""The DP frontier of head-only fine-tuning: grid, held-out halves, evaluation, the selection rule, typed results.

Chapter 6 asks where on the design space head-only DP at the profile's (eps, delta) cuts
re-linkage and at what utility cost. This module holds the pieces that do not train:

- :func:`frontier_grid`: the settings (init x optimizer x learning rate x epochs) of the profile;
- :func:`heldout_halves`: the held-out split cut by patient into a *selection* and a *report* half;
- :class:`HeldoutEvaluator`: Recall@1 at the reference N on each half, linear-probe and zero-shot
  macro AUROC, relative to the pretrained heads;
- :func:`aggregate_seeds`: means over noise seeds with the seed spread;
- :func:`select_point`: the declared rule, a pure function of the frontier and the rule;
- :func:`reduction_interval`: the patient-bootstrap CI of a cut on the report half;
- the typed records of the study (:class:`FrontierPoint`, :class:`FrontierResult` and their
  parts), each with ``to_json()`` and ``from_json()`` that keep the field names of
  ``frontier.json`` and of ``results/<profile>/mitigation.json``.

Training and caching live in :mod:`relink_lib.dp.frontier_stage`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Mapping, Sequence, TypeVar

import numpy as np
import torch
from torch import nn

from ..audit.bootstrap import patient_bootstrap, percentile_interval
from ..audit.engine import per_query_recall, rank_counts
from ..config import OPTIMIZERS, FrontierConfig
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ..utility.probe import binarize_labels, patient_split
from ..utility.retrieval import label_retrieval_precision
from .outcomes import RETRIEVAL_K, relative_reduction

INITS: tuple[str, ...] = ("pretrained", "reinit")
SEED_METRICS: tuple[str, ...] = (
    "r1_reduction_select",
    "r1_reduction",
    "probe_auroc_drop",
    "zero_shot_auroc_drop",
    "probe_auroc_drop_report",
    "zero_shot_auroc_drop_report",
    "retrieval_p10_drop_report",
    "drift",
    "r1_select",
    "r1_report",
)
"""Per-seed metrics averaged by :func:`aggregate_seeds` (each also gets a ``*_seed_sd``)."""


@dataclass(frozen=True)
class Setting:
    """One point of the design space: ``init`` (``pretrained`` or ``reinit``), ``optimizer``, ``lr``, ``epochs``."""

    init: str
    optimizer: str
    lr: float
    epochs: float

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"Setting.init: expected one of {INITS}, got {self.init!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Setting.optimizer: expected one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"Setting.lr: expected a finite value > 0, got {self.lr!r}")
        if not (isinstance(self.epochs, (int, float)) and math.isfinite(self.epochs) and self.epochs > 0):
            raise ValueError(f"Setting.epochs: expected a finite value > 0, got {self.epochs!r}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def frontier_grid(spec: FrontierConfig) -> list[Setting]:
    """The settings of ``params["dp"]["frontier"]``: ``inits`` x ``optimizers`` x ``lrs[optimizer]`` x ``epochs``.

    ``lrs`` maps each optimizer to its learning rates (SGD and Adam steps live on different
    scales). Order: init, optimizer, lr, epochs (the frontier list keeps it).
    """
    return [
        Setting(str(init), str(opt), float(lr), float(ep))
        for init in spec.inits
        for opt in spec.optimizers
        for lr in spec.lrs[opt]
        for ep in spec.epochs
    ]


def heldout_halves(patient_ids: Sequence | np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean ``(select, report)`` masks: the held-out rows cut in two by patient (half the patients each)."""
    select, report = patient_split(np.asarray(patient_ids).astype(str), 0.5, seed)
    return select, report


def heldout_reference_pool_size(n_select: int, n_report: int, preferred: int) -> int:
    """N of the frontier's cut: ``preferred`` (``dp.frontier.reference_pool_size``), or the smaller half when it
    has fewer pairs."""
    n = int(min(preferred, n_select, n_report))
    if n < 2:
        raise ValueError(f"held-out halves of {n_select} and {n_report} pairs: need at least 2 pairs each")
    return n


def per_query_recall_at_1(
    image_emb: np.ndarray, report_emb: np.ndarray, pool_size: int, chunk_size: int = 4096
) -> np.ndarray:
    """Expected Recall@1 of every query over random pools of ``pool_size`` within the given rows, ``(n,)``.

    Ties broken uniformly at random (the book's convention): a thin call of
    :func:`relink_lib.audit.engine.per_query_recall` on :func:`relink_lib.audit.engine.rank_counts`.
    """
    rc = rank_counts(image_emb, report_emb, chunk_size=chunk_size, device="cpu")
    return per_query_recall(rc, int(pool_size), 1)


def _embed_images(head: nn.Module, x_img: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        a = head(torch.as_tensor(x_img, dtype=next(head.parameters()).dtype))
        return (a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)).numpy()


def embed_heads(
    heads: tuple[nn.Module, nn.Module], x_img: np.ndarray, x_txt: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised embeddings ``(n, d)`` of pre-projection image and text features through ``heads``."""
    with torch.no_grad():
        dtype = next(heads[0].parameters()).dtype
        a = heads[0](torch.as_tensor(x_img, dtype=dtype))
        b = heads[1](torch.as_tensor(x_txt, dtype=dtype))
        a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-12)
        b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return a.numpy(), b.numpy()


class HeldoutEvaluator:
    """Outcomes of a pair of heads on the two held-out halves, and relative to the pretrained heads.

    ``test_*``: pre-projection features (n, D), labels (n, 14) and patient ids of the held-out
    split; ``train_*``: the private training pairs' image features and labels (the probe's fit
    set, as in chapter 7); ``prompt_features``: pre-projection text features of the zero-shot
    prompts (or ``None``: no zero-shot AUROC); ``reference_pool_size``: the preferred N of the cuts
    (``dp.frontier.reference_pool_size``; the smaller half when it has fewer pairs). :meth:`measure`
    gives absolute numbers, :meth:`relative` the frontier's fields against :attr:`baseline` (the
    pretrained heads).
    """

    def __init__(
        self,
        pretrained: tuple[nn.Module, nn.Module],
        test_img: np.ndarray,
        test_txt: np.ndarray,
        test_labels: np.ndarray,
        test_patients: np.ndarray,
        train_img: np.ndarray,
        train_labels: np.ndarray,
        prompt_features: Mapping[str, Any] | None,
        *,
        probe_C: float = 1.0,
        split_seed: int = 0,
        reference_pool_size: int,
        chunk_size: int = 4096,
        probe_max_train: int | None = None,
    ) -> None:
        self.test_img, self.test_txt = np.asarray(test_img), np.asarray(test_txt)
        self.test_labels = np.asarray(test_labels, dtype=float)
        self.test_patients = np.asarray(test_patients).astype(str)
        n = len(self.test_img)
        if not (len(self.test_txt) == len(self.test_labels) == len(self.test_patients) == n):
            raise ValueError("test features, labels and patient ids: expected the same number of rows")
        self.select, self.report = heldout_halves(self.test_patients, split_seed)
        self.pool_size = heldout_reference_pool_size(
            int(self.select.sum()), int(self.report.sum()), reference_pool_size
        )
        self.train_img, self.train_labels = np.asarray(train_img), np.asarray(train_labels, dtype=float)
        if len(self.train_img) != len(self.train_labels):
            raise ValueError(
                f"train_img/train_labels: expected the same number of rows, got {len(self.train_img)} "
                f"and {len(self.train_labels)}"
            )
        if probe_max_train is not None and len(self.train_img) > int(probe_max_train):
            keep = np.sort(
                np.random.default_rng(split_seed).choice(len(self.train_img), int(probe_max_train), replace=False)
            )
            self.train_img, self.train_labels = self.train_img[keep], self.train_labels[keep]
        self.prompt_features = prompt_features
        self.probe_C = float(probe_C)
        self.chunk_size = int(chunk_size)
        self.pretrained = pretrained
        self.baseline = self.measure(pretrained)

    def measure(self, heads: tuple[nn.Module, nn.Module], *, utility: bool = True) -> dict[str, Any]:
        """Absolute outcomes: ``r1_select, r1_report`` (mean expected R@1 at :attr:`pool_size`),
        ``r1_report_per_query`` (n_report,), and with ``utility`` ``probe_select, probe_report,
        zero_shot_select, zero_shot_report`` (macro AUROC, fractions)."""
        img, rep = embed_heads(heads, self.test_img, self.test_txt)
        out: dict[str, Any] = {}
        for half, mask in (("select", self.select), ("report", self.report)):
            pq = per_query_recall_at_1(img[mask], rep[mask], self.pool_size, self.chunk_size)
            out[f"r1_{half}"] = float(pq.mean())
            if half == "report":
                out["r1_report_per_query"] = pq
        if not utility:
            return out
        tr_img = _embed_images(heads[0], self.train_img)
        probes = linear_probe_aurocs(
            tr_img,
            self.train_labels,
            {h: (img[m], self.test_labels[m]) for h, m in (("select", self.select), ("report", self.report))},
            C=self.probe_C,
            solver="newton-cholesky",
        )
        for half in ("select", "report"):
            t = probes[half]
            out[f"probe_{half}"] = float(t.loc[t["label"] == "macro", "auroc"].iloc[0])
            out[f"zero_shot_{half}"] = math.nan
        if self.prompt_features is not None:
            for half, mask in (("select", self.select), ("report", self.report)):
                zs = zero_shot_auroc(
                    None,
                    self.test_img[mask],
                    self.test_labels[mask],
                    image_head=heads[0],
                    text_head=heads[1],
                    prompt_features=self.prompt_features,
                )
                out[f"zero_shot_{half}"] = float(zs.loc[zs["label"] == "macro", "auroc"].iloc[0])
        return out

    def relative(self, m: Mapping[str, Any]) -> dict[str, float]:
        """The frontier's fields of a measurement ``m`` against the pretrained :attr:`baseline`.

        ``r1_reduction_select`` / ``r1_reduction``: 1 - R@1 / R@1_pretrained on the selection /
        report half (fractions, positive = less re-linkage); ``probe_auroc_drop`` and
        ``zero_shot_auroc_drop`` (selection half) and their ``_report`` twins: the fall in macro
        AUROC in percentage points (positive = worse).
        """
        b = self.baseline
        out = {
            "r1_select": m["r1_select"],
            "r1_report": m["r1_report"],
            "r1_reduction_select": relative_reduction(b["r1_select"], m["r1_select"]),
            "r1_reduction": relative_reduction(b["r1_report"], m["r1_report"]),
        }
        if "probe_select" in m:
            out.update(
                probe_auroc_drop=100 * (b["probe_select"] - m["probe_select"]),
                probe_auroc_drop_report=100 * (b["probe_report"] - m["probe_report"]),
                zero_shot_auroc_drop=100 * (b["zero_shot_select"] - m["zero_shot_select"]),
                zero_shot_auroc_drop_report=100 * (b["zero_shot_report"] - m["zero_shot_report"]),
            )
        return out


def aggregate_seeds(per_seed: Sequence[Mapping[str, float]], metrics: Sequence[str] = SEED_METRICS) -> dict[str, float]:
    """Mean over seeds of each metric, its sample SD (``<metric>_seed_sd``, ddof = 1; NaN for one seed), ``n_seeds``."""
    if not per_seed:
        raise ValueError("per_seed: expected at least one seed's measurements")
    out: dict[str, float] = {"n_seeds": len(per_seed)}
    for key in metrics:
        vals = np.array([float(s[key]) for s in per_seed if key in s], dtype=float)
        if len(vals) == 0:
            continue
        out[key] = float(vals.mean())
        out[f"{key}_seed_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
    return out


RULE_KEYS: tuple[str, ...] = ("max_probe_auroc_drop", "max_zero_shot_auroc_drop", "reference_pool_size", "n_private")


def select_point(
    points: Sequence[FrontierPoint | Mapping[str, Any]], rule: SelectionRule | Mapping[str, Any]
) -> int | None:
    """Index of the largest ``r1_reduction_select`` among the eligible points, or ``None``.

    Eligible: a DP point (``private`` not false) at ``rule["n_private"]`` whose
    ``probe_auroc_drop <= rule["max_probe_auroc_drop"]`` and ``zero_shot_auroc_drop <=
    rule["max_zero_shot_auroc_drop"]`` (both in points, measured on the selection half); points
    with a NaN in one of these are not eligible. Ties go to the first index. Reads nothing of the
    report half. ``points`` and ``rule``: typed records or their JSON dicts.
    """
    rule = rule.to_json() if isinstance(rule, SelectionRule) else rule
    missing = [k for k in RULE_KEYS if k not in rule]
    if missing:
        raise ValueError(f"selection rule: missing {missing}; expected keys {RULE_KEYS}")
    best, best_val = None, -math.inf
    for i, q in enumerate(points):
        p = q.to_json() if isinstance(q, FrontierPoint) else q
        if not p.get("private", True) or int(p["n_private"]) != int(rule["n_private"]):
            continue
        vals = [float(p[k]) for k in ("r1_reduction_select", "probe_auroc_drop", "zero_shot_auroc_drop")]
        if any(math.isnan(v) for v in vals):
            continue
        cut, probe, zs = vals
        if (
            probe <= float(rule["max_probe_auroc_drop"])
            and zs <= float(rule["max_zero_shot_auroc_drop"])
            and cut > best_val
        ):
            best, best_val = i, cut
    return best


def reduction_interval(
    before: np.ndarray, after: np.ndarray, patient_ids: Any, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Patient-bootstrap percentile CI of ``1 - mean(after) / mean(before)``.

    ``before``, ``after``: per-query expected Recall@1 (n,) of the pretrained and the mitigated
    heads (e.g. the mean over noise seeds) on the same queries; ``patient_ids`` (n,) the clusters.
    """
    before, after = np.asarray(before, float), np.asarray(after, float)
    if before.shape != after.shape or before.ndim != 1:
        raise ValueError(
            f"before/after: expected two (n,) arrays of the same length, got {before.shape} and {after.shape}"
        )
    reps = patient_bootstrap({"before": before, "after": after}, patient_ids, n_boot=n_boot, seed=seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = 1.0 - reps["after"] / reps["before"]
    ratio = ratio[np.isfinite(ratio)]
    if len(ratio) == 0:
        return math.nan, math.nan
    lo, hi = percentile_interval(ratio, level)
    return float(lo), float(hi)


def interpolate_at_cut(curve: Sequence[Mapping[str, float]], cut: float, column: str) -> float:
    """``column`` of a control curve (e.g. output perturbation at increasing scale) linearly
    interpolated at R@1 cut ``cut`` (the curve's ``r1_reduction``); NaN outside its range."""
    pts = sorted(
        (float(c["r1_reduction"]), float(c[column]))
        for c in curve
        if math.isfinite(float(c["r1_reduction"])) and math.isfinite(float(c[column]))
    )
    if not pts or not math.isfinite(cut) or cut < pts[0][0] or cut > pts[-1][0]:
        return math.nan
    xs, ys = zip(*pts)
    return float(np.interp(cut, xs, ys))


# ------------------------------------------------------------------------------------------ typed results
R = TypeVar("R", bound="JsonRecord")


def _frozen(v: Any) -> Any:
    """Lists (JSON arrays) as tuples, recursively inside dicts too: the records compare and hash by value."""
    if isinstance(v, (list, tuple)):
        return tuple(_frozen(x) for x in v)
    if isinstance(v, dict):
        return {k: _frozen(x) for k, x in v.items()}
    return v


def _plain(v: Any) -> Any:
    """The JSON form of a field value: records by their ``to_json()``, tuples as lists, numpy scalars as floats."""
    if isinstance(v, JsonRecord):
        return v.to_json()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, np.generic):
        return v.item()
    return v


class JsonRecord:
    """Mixin of the frozen result records: ``to_json()`` gives the dict ``frontier.json`` stores (field names
    unchanged), ``from_json(d)`` reads it back. Fields named in ``OPTIONAL`` are left out of the JSON when
    ``None``; ``NESTED`` maps a field to the record type (or a one-tuple of it: a sequence of records) it holds."""

    OPTIONAL: ClassVar[tuple[str, ...]] = ()
    NESTED: ClassVar[Mapping[str, Any]] = {}

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, (list, tuple, dict)) and f.name not in self.NESTED:
                object.__setattr__(self, f.name, _frozen(v))
            elif isinstance(v, list):
                object.__setattr__(self, f.name, tuple(v))

    def to_json(self) -> dict[str, Any]:
        """The record as the JSON dict of ``frontier.json`` (lists, plain floats; optional ``None`` fields left out)."""
        out: dict[str, Any] = {}
        for f in fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if v is None and f.name in self.OPTIONAL:
                continue
            out[f.name] = _plain(v)
        return out

    @classmethod
    def from_json(cls: type[R], d: Mapping[str, Any]) -> R:
        """The record of a JSON dict written by :meth:`to_json` (unknown keys are an error)."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{cls.__name__}.from_json: unknown fields {unknown}")
        kw: dict[str, Any] = {}
        for k, v in d.items():
            kind = cls.NESTED.get(k)
            if kind is None or v is None:
                kw[k] = v
            elif isinstance(kind, tuple):
                kw[k] = tuple(kind[0].from_json(x) for x in v)
            else:
                kw[k] = kind.from_json(v)
        return cls(**kw)


@dataclass(frozen=True)
class SelectionRule(JsonRecord):
    """The declared rule (``selection_rule``): the utility bounds (percentage points, selection half), the
    reference N and the own private-set size the eligible points are trained at; ``objective`` and ``among`` say
    it in words."""

    max_probe_auroc_drop: float
    max_zero_shot_auroc_drop: float
    reference_pool_size: int
    n_private: int
    objective: str = "largest r1_reduction_select (mean over noise seeds, selection half)"
    among: str = (
        "DP points at the profile's own private-set size with probe_auroc_drop and zero_shot_auroc_drop "
        "(selection half, percentage points) at most the maxima"
    )


@dataclass(frozen=True)
class SeedOutcome(JsonRecord):
    """One noise seed of a frontier point (``per_seed``)."""

    seed: int
    r1_reduction_select: float
    r1_reduction: float
    probe_auroc_drop: float
    zero_shot_auroc_drop: float
    drift: float


PER_SEED_KEYS: tuple[str, ...] = tuple(f.name for f in fields(SeedOutcome))


@dataclass(frozen=True)
class FrontierPoint(JsonRecord):
    """One point of the frontier (or of the scaling study): the setting, the private-set size, the DP record of
    its last seed's run (sigma is the same for every seed), the means over noise seeds of :data:`SEED_METRICS`
    with their seed SD, and each seed's outcome.

    The reference point also carries its patient-bootstrap CI (``r1_reduction_ci_low/high``) and output
    perturbation's utility at the same cut; these are ``None`` (and absent from the JSON) on the other points.
    """

    init: str
    optimizer: str
    lr: float
    epochs: float
    n_private: int
    study: str
    private: bool
    target_epsilon: float | None
    epsilon: float | None
    delta: float | None
    noise_multiplier: float | None
    sample_rate: float | None
    steps: int | None
    max_grad_norm: float | None
    accountant: str | None
    epsilon_dp_accounting_rdp: float | None
    epsilon_dp_accounting_pld: float | None
    n_seeds: int
    r1_reduction_select: float
    r1_reduction_select_seed_sd: float
    r1_reduction: float
    r1_reduction_seed_sd: float
    probe_auroc_drop: float
    probe_auroc_drop_seed_sd: float
    zero_shot_auroc_drop: float
    zero_shot_auroc_drop_seed_sd: float
    probe_auroc_drop_report: float
    probe_auroc_drop_report_seed_sd: float
    zero_shot_auroc_drop_report: float
    zero_shot_auroc_drop_report_seed_sd: float
    drift: float
    drift_seed_sd: float
    r1_select: float
    r1_select_seed_sd: float
    r1_report: float
    r1_report_seed_sd: float
    seeds: tuple[int, ...]
    per_seed: tuple[SeedOutcome, ...]
    r1_reduction_ci_low: float | None = None
    r1_reduction_ci_high: float | None = None
    output_perturbation_zero_shot_auroc_drop_report_at_same_cut: float | None = None
    output_perturbation_probe_auroc_drop_report_at_same_cut: float | None = None

    OPTIONAL: ClassVar[tuple[str, ...]] = (
        "r1_reduction_ci_low",
        "r1_reduction_ci_high",
        "output_perturbation_zero_shot_auroc_drop_report_at_same_cut",
        "output_perturbation_probe_auroc_drop_report_at_same_cut",
    )
    NESTED: ClassVar[Mapping[str, Any]] = {"per_seed": (SeedOutcome,)}

    @property
    def setting(self) -> Setting:
        """The point's :class:`Setting`."""
        return Setting(self.init, self.optimizer, float(self.lr), float(self.epochs))


@dataclass(frozen=True)
class SeenVsHeldout(JsonRecord):
    """R@1 at the reference N on the private pairs the reference heads were fine-tuned on (``seen``) and on the
    report half (``heldout``), before (pretrained) and after (mean over noise seeds), with the relative cuts."""

    pool_size: int
    n_seen: int
    n_heldout: int
    seen_r1_before: float
    seen_r1_after: float
    seen_r1_reduction: float
    heldout_r1_before: float
    heldout_r1_after: float
    heldout_r1_reduction: float


@dataclass(frozen=True)
class HeldoutSplit(JsonRecord):
    """The held-out halves (``heldout``): their sizes, the split seed, the reference N and the pretrained heads'
    absolute outcomes on each half (``baseline``)."""

    n_select: int
    n_report: int
    split_seed: int
    reference_pool_size: int
    baseline: Mapping[str, float]


@dataclass(frozen=True)
class PrivatePoolInfo(JsonRecord):
    """The supplementary synthetic private pool of the scaling study (``private_pool``)."""

    n_pairs: int
    features: str | None
    generation_and_features_s: float
    source: str


@dataclass(frozen=True)
class FrontierCost(JsonRecord):
    """Wall-clock cost of one build (``cost``): seconds training and evaluating, runs, evaluations, and
    ``(steps, seconds)`` of every training run."""

    train_s: float
    eval_s: float
    total_s: float
    n_runs_trained: int
    n_evaluations: int
    runs_steps_seconds: tuple[tuple[int, float], ...]


@dataclass(frozen=True)
class RungInfo(JsonRecord):
    """The ladder rung the frontier ran on (``rung``)."""

    index: int
    name: str


@dataclass(frozen=True)
class BankInfo(JsonRecord):
    """The public bank of the objective (``bank``)."""

    source: str
    size: int


@dataclass(frozen=True)
class FrontierResult(JsonRecord):
    """The whole frontier study (``frontier.json``; what ``results/<profile>/mitigation.json`` stores).

    ``frontier``: the grid points, then the scaling points; ``selected``: the rule's pick (``None``: no
    point meets it); ``reference``: the selected point, or the largest cut on the selection half when none
    is selected (the setting of the controls and of chapters 7-8); ``controls`` and
    ``output_perturbation_curve``: JSON records (``control`` names one of ``nonprivate``,
    ``reinit_untrained``, ``output_perturbation_matched``; the curve has one record per scale).
    ``rung`` and ``bank`` are set by :func:`relink_lib.dp.frontier_stage.get_frontier` (``None`` from
    :func:`relink_lib.dp.frontier_stage.build_frontier` alone).
    """

    frontier: tuple[FrontierPoint, ...]
    selection_rule: SelectionRule
    selected: int | None
    reference: int
    reference_is_selected: bool
    r1_reduction_ci_low: float
    r1_reduction_ci_high: float
    controls: tuple[Mapping[str, Any], ...]
    output_perturbation_curve: tuple[Mapping[str, Any], ...]
    seen: SeenVsHeldout
    private_pool: PrivatePoolInfo | None
    heldout: HeldoutSplit
    n_seeds: int
    seeds: tuple[int, ...]
    cost: FrontierCost
    rung: RungInfo | None = None
    bank: BankInfo | None = None

    OPTIONAL: ClassVar[tuple[str, ...]] = ("rung", "bank")
    NESTED: ClassVar[Mapping[str, Any]] = {
        "frontier": (FrontierPoint,),
        "selection_rule": SelectionRule,
        "seen": SeenVsHeldout,
        "private_pool": PrivatePoolInfo,
        "heldout": HeldoutSplit,
        "cost": FrontierCost,
        "rung": RungInfo,
        "bank": BankInfo,
    }

    @property
    def reference_point(self) -> FrontierPoint:
        """The reference point (the selected one, or the largest cut on the selection half when none is)."""
        return self.frontier[self.reference]

    def control(self, name: str) -> Mapping[str, Any] | None:
        """The control record named ``name`` (``nonprivate``, ``reinit_untrained``,
        ``output_perturbation_matched``), or ``None``."""
        return next((c for c in self.controls if c.get("control") == name), None)

    def points(self, study: str | None = "grid") -> list[FrontierPoint]:
        """The points of one study (``grid``, ``scaling``; ``None``: all)."""
        return [p for p in self.frontier if study is None or p.study == study]
