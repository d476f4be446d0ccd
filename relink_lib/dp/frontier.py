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
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from torch import nn

from ..audit.bootstrap import patient_bootstrap, percentile_interval
from ..audit.engine import per_query_recall, rank_counts
from ..config import OPTIMIZERS, FrontierConfig
from ..labels import CHEXPERT_LABELS
from ..utility.probe import binarize_labels, patient_split
from ..utility.retrieval import label_retrieval_precision
from ..utility.zero_shot import _head_apply
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
    split; ``train_*``: image features and labels of the probe's fit set (the public val split in
    chapter 6's frontier, so the rule reads no private pairs); ``prompt_features``: pre-projection
    text features of the zero-shot prompts (or ``None``: no zero-shot AUROC); ``reference_pool_size``:
    the preferred N of the cuts
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
        self.y_probe = binarize_labels(self.test_labels)
        self.y_zero_shot = np.where(np.isin(self.test_labels, (0.0, 1.0)), self.test_labels, np.nan)
        self.probe_C = float(probe_C)
        self.chunk_size = int(chunk_size)
        self.pretrained = pretrained
        self.baseline = self.measure(pretrained)

    def measure(self, heads: tuple[nn.Module, nn.Module], *, utility: bool = True) -> dict[str, Any]:
        """Absolute outcomes: ``r1_select, r1_report`` (mean expected R@1 at :attr:`pool_size`),
        ``r1_report_per_query`` (n_report,), and with ``utility`` ``probe_select, probe_report,
        zero_shot_select, zero_shot_report`` (macro AUROC, fractions), ``retrieval_report`` (label-level
        retrieval precision@10 on the report half) and the selection half's per-label scores
        ``probe_scores_select`` / ``zero_shot_scores_select`` (n_select, 14) for :func:`drop_upper_bound`."""
        img, rep = embed_heads(heads, self.test_img, self.test_txt)
        out: dict[str, Any] = {}
        for half, mask in (("select", self.select), ("report", self.report)):
            pq = per_query_recall_at_1(img[mask], rep[mask], self.pool_size, self.chunk_size)
            out[f"r1_{half}"] = float(pq.mean())
            if half == "report":
                out["r1_report_per_query"] = pq
        if not utility:
            return out
        ps = probe_scores(_embed_images(heads[0], self.train_img), self.train_labels, img, C=self.probe_C)
        zs = zero_shot_scores(heads, self.test_img, self.prompt_features) if self.prompt_features is not None else None
        for half, mask in (("select", self.select), ("report", self.report)):
            out[f"probe_{half}"] = macro_auroc(ps[mask], self.y_probe[mask])
            out[f"zero_shot_{half}"] = macro_auroc(zs[mask], self.y_zero_shot[mask]) if zs is not None else math.nan
        out["probe_scores_select"] = ps[self.select]
        out["zero_shot_scores_select"] = zs[self.select] if zs is not None else None
        m = self.report
        ret = label_retrieval_precision(
            img[m], rep[m], self.test_labels[m], k=max(1, min(RETRIEVAL_K, int(m.sum()) - 1))
        )
        out["retrieval_report"] = float(ret["precision"].iloc[0])
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
        if "retrieval_report" in m:
            out["retrieval_p10_drop_report"] = 100 * (b["retrieval_report"] - m["retrieval_report"])
        return out


# ------------------------------------------------------------------------------------------ utility scores and bounds
def probe_scores(
    train_emb: np.ndarray, train_labels: np.ndarray, test_emb: np.ndarray, *, C: float = 1.0
) -> np.ndarray:
    """Per-label linear-probe decision scores ``(n_test, 14)`` (NaN columns: a label without both classes in the fit
    set). The protocol of :func:`relink_lib.utility.probe.linear_probe_aurocs` (standardised embeddings, L2 logistic
    regression, newton-cholesky; NaN label -> negative, uncertain left out of the fit)."""
    xtr, xte = np.asarray(train_emb, dtype=np.float64), np.asarray(test_emb, dtype=np.float64)
    ytr = binarize_labels(train_labels)
    scaler = StandardScaler().fit(xtr)
    ztr, zte = scaler.transform(xtr), scaler.transform(xte)
    out = np.full((len(xte), ytr.shape[1]), np.nan)
    with threadpool_limits(limits=1):
        for j in range(ytr.shape[1]):
            keep = ~np.isnan(ytr[:, j])
            a = ytr[keep, j]
            if a.sum() > 0 and (a == 0).sum() > 0:
                clf = LogisticRegression(C=C, max_iter=2000, solver="newton-cholesky").fit(ztr[keep], a)
                out[:, j] = clf.decision_function(zte)
    return out


def zero_shot_scores(heads: tuple[nn.Module, nn.Module], x_img: np.ndarray, prompts: Mapping[str, Any]) -> np.ndarray:
    """Per-label zero-shot scores ``(n, 14)``: cos(image, positive prompt) - cos(image, negative prompt), as
    :func:`relink_lib.utility.zero_shot.zero_shot_auroc` (``mode="contrast"``) computes them."""
    img = _head_apply(heads[0], x_img)
    out = np.empty((len(img), len(CHEXPERT_LABELS)))
    for j, label in enumerate(CHEXPERT_LABELS):
        pos_f, neg_f = (np.atleast_2d(np.asarray(a, dtype=np.float32)) for a in prompts[label])
        pos, neg = _head_apply(heads[1], pos_f).mean(0), _head_apply(heads[1], neg_f).mean(0)
        pos /= max(np.linalg.norm(pos), 1e-12)
        neg /= max(np.linalg.norm(neg), 1e-12)
        out[:, j] = img @ pos - img @ neg
    return out


def macro_auroc(scores: np.ndarray, y: np.ndarray) -> float:
    """Mean AUROC over the labels with a score and both classes (``y``: 1 / 0, NaN = left out); NaN when none."""
    vals = []
    for j in range(scores.shape[1]):
        keep = ~np.isnan(y[:, j])
        b = y[keep, j]
        if np.isnan(scores[:, j]).any() or b.sum() == 0 or (b == 0).sum() == 0:
            continue
        vals.append(float(roc_auc_score(b, scores[keep, j])))
    return float(np.mean(vals)) if vals else math.nan


def weighted_macro_auroc(scores: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """:func:`macro_auroc` under row weights ``(B, n)`` (e.g. bootstrap multiplicities), one value per row of
    ``weights``: the Mann-Whitney statistic with ties counted one half, vectorised over the rows.

    For integer weights (bootstrap counts) every sum below is an exact integer (or half-integer) in float64,
    so the result does not depend on the order of summation: one gather of the weights per label, and tie
    groups summed as differences of running sums (scores without ties, the usual case, skip that)."""
    weights = np.atleast_2d(np.asarray(weights, dtype=float))
    aucs = []
    for j in range(scores.shape[1]):
        keep = ~np.isnan(y[:, j])
        if np.isnan(scores[:, j]).any() or not keep.any():
            continue
        rows = np.flatnonzero(keep)
        order = rows[np.argsort(scores[rows, j], kind="mergesort")]
        xs, ys = scores[order, j], y[order, j]
        ws = weights[:, order]  # a gathered copy: ours to change in place
        pos = ws * ys
        neg = np.subtract(ws, pos, out=ws)
        ends = np.flatnonzero(np.diff(xs)) + 1  # where a new score value starts
        if len(ends) < len(xs) - 1:  # ties: sum each tie group (differences of running sums, exact for integers)
            last = np.r_[ends, len(xs)] - 1
            pos = np.diff(np.cumsum(pos, axis=1)[:, last], axis=1, prepend=0.0)
            neg = np.diff(np.cumsum(neg, axis=1)[:, last], axis=1, prepend=0.0)
        below = np.cumsum(neg, axis=1) - neg
        den = pos.sum(1) * neg.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            aucs.append(np.where(den > 0, (pos * (below + 0.5 * neg)).sum(1) / den, np.nan))
    if not aucs:
        return np.full(len(weights), np.nan)
    a = np.stack(aucs)
    with np.errstate(invalid="ignore"):
        n_def = np.isfinite(a).sum(0)
        return np.where(n_def > 0, np.nansum(a, 0) / np.maximum(n_def, 1), np.nan)


DROP_BOUND_N_BOOT = 200
"""Bootstrap resamples of :func:`drop_upper_bound` in the frontier (at most ``dp.frontier.n_boot``)."""


@dataclass(frozen=True, eq=False)
class DropBootstrap:
    """The patient resamples of :func:`drop_upper_bound` for one baseline, drawn once and reused.

    A frontier bounds the drop of every point against the same pretrained heads on the same rows with the same
    seed: the bootstrap weights and the baseline's resampled AUROCs are the same for every point, so they are
    computed once (:meth:`drops` then gives exactly what a fresh computation would: the seed draws continue
    from the generator's state after the patient draws).
    """

    weights: np.ndarray
    base_auroc: np.ndarray
    rng_state: dict[str, Any]

    @classmethod
    def draw(cls, base_scores: np.ndarray, y: np.ndarray, patient_ids: Any, n_boot: int, seed: int) -> DropBootstrap:
        uniq, inv = np.unique(np.asarray(patient_ids).astype(str), return_inverse=True)
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(len(uniq), np.full(len(uniq), 1.0 / len(uniq)), size=int(n_boot))
        w = counts[:, inv].astype(float)
        return cls(w, weighted_macro_auroc(base_scores, y, w), dict(rng.bit_generator.state))

    def drops(self, seed_scores: Sequence[np.ndarray], y: np.ndarray) -> np.ndarray:
        """Resamples of ``100 * (AUROC_base - mean over drawn seeds of AUROC_seed)``, the finite ones."""
        if not seed_scores:
            raise ValueError("seed_scores: expected at least one seed's scores")
        rng = np.random.default_rng()
        rng.bit_generator.state = self.rng_state
        n_boot = len(self.weights)
        a_s = np.stack([weighted_macro_auroc(s, y, self.weights) for s in seed_scores])
        pick = rng.integers(0, len(seed_scores), size=(n_boot, len(seed_scores)))
        drops = 100 * (self.base_auroc - a_s[pick, np.arange(n_boot)[:, None]].mean(1))
        return drops[np.isfinite(drops)]


def _drop_resamples(
    base_scores: np.ndarray,
    seed_scores: Sequence[np.ndarray],
    y: np.ndarray,
    patient_ids: Any,
    n_boot: int,
    seed: int,
) -> np.ndarray:
    """Bootstrap resamples of ``100 * (AUROC_base - mean over drawn seeds of AUROC_seed)`` (patients and seeds drawn
    with replacement), the finite ones (``ValueError`` without seeds, from :meth:`DropBootstrap.drops`)."""
    return DropBootstrap.draw(base_scores, y, patient_ids, n_boot, seed).drops(seed_scores, y)


def drop_upper_bound(
    base_scores: np.ndarray,
    seed_scores: Sequence[np.ndarray],
    y: np.ndarray,
    patient_ids: Any,
    *,
    n_boot: int = DROP_BOUND_N_BOOT,
    seed: int = 0,
    level: float = 0.95,
    bootstrap: DropBootstrap | None = None,
) -> float:
    """One-sided upper ``level`` bound of a macro-AUROC drop (percentage points, positive = worse) over patients and
    noise seeds: each resample draws the patients (with replacement) and the seeds (with replacement among
    ``seed_scores``) and takes ``100 * (AUROC_base - mean over the drawn seeds of AUROC_seed)``; the bound is the
    ``level`` quantile. ``base_scores`` / each of ``seed_scores``: per-label scores ``(n, L)`` of the pretrained and
    of each seed's heads on the same rows; ``y`` ``(n, L)``: 1 / 0 / NaN (left out). NaN when no resample is defined.
    ``bootstrap``: the resamples of this baseline drawn before (:class:`DropBootstrap`, same rows, ``n_boot`` and
    ``seed``), reused instead of drawn again."""
    if bootstrap is None:
        bootstrap = DropBootstrap.draw(base_scores, y, patient_ids, n_boot, seed)
    drops = bootstrap.drops(seed_scores, y)
    return float(np.quantile(drops, level)) if len(drops) else math.nan


def drop_interval(
    base_scores: np.ndarray,
    seed_scores: Sequence[np.ndarray],
    y: np.ndarray,
    patient_ids: Any,
    *,
    n_boot: int = DROP_BOUND_N_BOOT,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(drop, ci_low, ci_high)`` of a macro-AUROC drop in percentage points: the drop of the mean over seeds, and
    the two-sided 95% percentile interval of the resamples of :func:`drop_upper_bound` (patients and seeds)."""
    point = 100 * (macro_auroc(base_scores, y) - float(np.mean([macro_auroc(s, y) for s in seed_scores])))
    drops = _drop_resamples(base_scores, seed_scores, y, patient_ids, n_boot, seed)
    if not len(drops):
        return point, math.nan, math.nan
    lo, hi = np.quantile(drops, [0.025, 0.975])
    return point, float(lo), float(hi)


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


DROP_STATISTICS: dict[str, tuple[str, str]] = {
    "upper95": ("probe_auroc_drop_upper", "zero_shot_auroc_drop_upper"),
    "mean": ("probe_auroc_drop", "zero_shot_auroc_drop"),
}
"""The drops a rule bounds: the upper 95% bound over patients and seeds (the rule since issue 22) or the mean
over seeds (rules stored before it, which carry no ``drop_statistic``)."""


def _eligible(p: Mapping[str, Any], rule: Mapping[str, Any]) -> float | None:
    """The point's selection-half cut when it is eligible under ``rule``, else ``None``."""
    if not p.get("private", True) or int(p["n_private"]) != int(rule["n_private"]):
        return None
    if p.get("init", "reinit") not in tuple(rule.get("inits", INITS)):
        return None
    probe_key, zs_key = DROP_STATISTICS[str(rule.get("drop_statistic", "mean"))]
    vals = [math.nan if p.get(k) is None else float(p[k]) for k in ("r1_reduction_select", probe_key, zs_key)]
    if any(math.isnan(v) for v in vals):
        return None
    cut, probe, zs = vals
    ok = probe <= float(rule["max_probe_auroc_drop"]) and zs <= float(rule["max_zero_shot_auroc_drop"])
    return cut if ok else None


def select_point(
    points: Sequence[FrontierPoint | Mapping[str, Any]], rule: SelectionRule | Mapping[str, Any]
) -> int | None:
    """Index of the largest ``r1_reduction_select`` among the eligible points, or ``None``.

    Eligible: a DP point (``private`` not false) at ``rule["n_private"]`` with an init in ``rule["inits"]``
    (default: any) whose two selection-half utility drops are at most ``rule["max_probe_auroc_drop"]`` and
    ``rule["max_zero_shot_auroc_drop"]``: the upper 95% bounds ``*_upper`` when ``rule["drop_statistic"]`` is
    ``"upper95"``, the means over seeds when it is ``"mean"`` (or absent: rules stored before the bounds).
    Points with a NaN in one of these are not eligible. Ties go to the first index. Reads nothing of the
    report half. ``points`` and ``rule``: typed records or their JSON dicts.
    """
    rule = rule.to_json() if isinstance(rule, SelectionRule) else rule
    missing = [k for k in RULE_KEYS if k not in rule]
    if missing:
        raise ValueError(f"selection rule: missing {missing}; expected keys {RULE_KEYS}")
    best, best_val = None, -math.inf
    for i, q in enumerate(points):
        p = q.to_json() if isinstance(q, FrontierPoint) else q
        cut = _eligible(p, rule)
        if cut is not None and cut > best_val:
            best, best_val = i, cut
    return best


def seed_winners(points: Sequence[FrontierPoint], rule: SelectionRule | Mapping[str, Any]) -> list[int | None]:
    """The rule applied to each noise seed alone (its own cut and drops on the selection half, the same bounds and
    inits): one winner index per seed (``None``: no point qualifies for that seed)."""
    r = dict(rule.to_json() if isinstance(rule, SelectionRule) else rule, drop_statistic="mean")
    n = max((len(p.per_seed) for p in points), default=0)
    out: list[int | None] = []
    for k in range(n):
        one = [
            dict(p.to_json(), **(p.per_seed[k].to_json() if k < len(p.per_seed) else {"r1_reduction_select": math.nan}))
            for p in points
        ]
        out.append(select_point(one, r))
    return out


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
        "DP points with fresh (reinit) heads at the private-set size of the run, whose upper 95% bounds of the "
        "probe and zero-shot macro-AUROC drops (selection half, percentage points; patient and seed bootstrap) are "
        "at most the maxima; the probe is fit on the public val split"
    )
    inits: tuple[str, ...] = ("reinit",)
    drop_statistic: str = "upper95"


@dataclass(frozen=True)
class SeedOutcome(JsonRecord):
    """One noise seed of a frontier point (``per_seed``)."""

    seed: int
    r1_reduction_select: float
    r1_reduction: float
    probe_auroc_drop: float
    zero_shot_auroc_drop: float
    drift: float
    retrieval_p10_drop_report: float | None = None

    OPTIONAL: ClassVar[tuple[str, ...]] = ("retrieval_p10_drop_report",)


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
    retrieval_p10_drop_report: float | None = None
    retrieval_p10_drop_report_seed_sd: float | None = None
    probe_auroc_drop_upper: float | None = None
    zero_shot_auroc_drop_upper: float | None = None

    OPTIONAL: ClassVar[tuple[str, ...]] = (
        "retrieval_p10_drop_report",
        "retrieval_p10_drop_report_seed_sd",
        "probe_auroc_drop_upper",
        "zero_shot_auroc_drop_upper",
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
class Protocol(JsonRecord):
    """How the released heads were chosen, and what they carry (``protocols`` of ``mitigation.json``).

    ``public_pilot``: the grid run on public pairs (the val split) with the private run's noise, batch size and
    steps, the rule applied there, then one DP run on the private pairs with the chosen setting: the released heads
    are exactly one (eps, delta)-DP mechanism (``epsilon``). ``private_frontier``: the rule applied to the grid run
    on the private pairs; the release depends on every DP run, so ``epsilon`` is their RDP composition
    (``epsilon_composed``), and ``epsilon_tuning_bound`` is what Papernot & Steinke's Theorem 6 charges a version of
    the study with a Poisson(``tuning_mu``) number of runs.

    ``setting``: the chosen setting (``None``: no point met the rule, ``fallback`` then names the largest
    selection-half cut among fresh heads used instead); ``frontier_index``: the point of ``frontier`` with that
    setting (the private grid's mean over seeds); ``r1_reduction`` and its CI: the released heads' cut on the report
    half (public pilot: the one released run; private frontier: the mean over the chosen point's seeds), with the
    report-half utility drops beside it; ``seed_winners_agree`` of ``n_seeds``: seeds whose own winner (the rule on
    that seed alone) is the chosen setting.
    """

    name: str
    description: str
    setting: Mapping[str, Any] | None
    fallback: bool
    frontier_index: int
    n_pairs_candidates_trained_on: int
    r1_reduction: float
    r1_reduction_ci_low: float
    r1_reduction_ci_high: float
    probe_auroc_drop_report: float
    zero_shot_auroc_drop_report: float
    retrieval_p10_drop_report: float
    epsilon: float
    delta: float
    epsilon_single_run: float
    n_dp_runs_on_private: int
    seed_winners_agree: int
    n_seeds: int
    epsilon_composed: float | None = None
    epsilon_composed_dp_accounting_rdp: float | None = None
    epsilon_tuning_bound: float | None = None
    tuning_mu: float | None = None

    OPTIONAL: ClassVar[tuple[str, ...]] = (
        "epsilon_composed",
        "epsilon_composed_dp_accounting_rdp",
        "epsilon_tuning_bound",
        "tuning_mu",
    )


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
    pilot: tuple[FrontierPoint, ...] = ()
    protocols: tuple[Protocol, ...] = ()
    headline_protocol: str | None = None

    OPTIONAL: ClassVar[tuple[str, ...]] = ("rung", "bank", "headline_protocol")
    NESTED: ClassVar[Mapping[str, Any]] = {
        "frontier": (FrontierPoint,),
        "pilot": (FrontierPoint,),
        "protocols": (Protocol,),
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

    def protocol(self, name: str | None = None) -> Protocol | None:
        """The protocol record ``name`` (default: the headline protocol), or ``None``."""
        name = name or self.headline_protocol
        return next((p for p in self.protocols if p.name == name), None)

    def points(self, study: str | None = "grid") -> list[FrontierPoint]:
        """The points of one study (``grid``, ``scaling``; ``None``: all)."""
        return [p for p in self.frontier if study is None or p.study == study]
