"""Pipeline stage of chapter 9: the privacy-budget sweep on the profile's strongest rung.

Inputs (all cached upstream): the internal cohort, the ladder's most specialised rung, its
pre-projection features of the ``train`` split (the private training pairs), the ``test`` split
(held-out evaluation) and a fixed public bank. The bank is the first ``dp.bank_size`` report
and image features of the ``val`` split, which the simulation treats as public; the mitigation's
objective contrasts each private pair only against it (both directions, as in chapter 6;
docs/dp.md). The sweep trains the profile's own ``dp`` setting (pretrained heads, the
``dp.budget_sweep`` optimizer, learning rate and epochs), not chapter 6's selected setting, so that every budget shares
one schedule that does not depend on a selection made at eps = 0.34.

For each eps of the profile's ``budget.epsilons`` (None = non-private) the heads are fine-tuned by
:func:`relink_lib.dp.train_heads` with the profile's ``dp`` settings (same data, steps, objective and
seed at every eps), then evaluated on the test split: Recall@K over random and pathology-matched
pools (:func:`relink_lib.audit.relink_audit`), cross-modal utility (zero-shot macro AUROC) and the
image-side linear probe (:func:`relink_lib.utility.probe.linear_probe_auroc`), and the three risks
(:mod:`relink_lib.risk.sweep`).

The result is a :class:`relink_lib.risk.sweep.SweepResult` of two tables:

- ``table``, one row per eps: the DP record, the risks, the attack (:func:`relink_lib.risk.sweep.budget_sweep`),
  ``zero_shot_macro_auroc`` and ``probe_macro_auroc``;
- ``recall``, one row per (eps, pool, K, N): :data:`RECALL_COLUMNS` = ``target_epsilon``, ``pool``
  (``"random"`` or ``"matched"``), ``k``, ``N`` (pool size; the database size on a full-database row),
  ``full_database``, ``recall`` (expected Recall@K) and ``lift`` (recall / chance).

Both are cached as ``{"sweep": [...], "recall": [...]}`` in ``cache_dir(profile)/budget/<hash>/sweep.json``;
:func:`run_budget_sweep` adds the :data:`THREAT_MODELS` and the settings (:func:`budget_settings`), and the
chapter's notebook writes the result's ``to_json()`` to ``results/<profile>/privacy_budget.json``
(:func:`relink_lib.results.write_results`).
Report text is never read: prompts are fixed label sentences.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from torch import nn

from .. import cache
from ..audit import relink_audit
from ..cohorts.base import Cohort
from ..cohorts.stage import get_cohort
from ..config import ProfileLike, as_profile
from ..dp.outcomes import POOLS, prompt_features_of
from ..features import Features, embed_features, get_features
from ..labels import CHEXPERT_LABELS
from ..models.base import DualEncoder
from ..models.stage import Rung, get_ladder
from ..profiles import cache_dir
from ..utility.probe import linear_probe_auroc
from ..utility.zero_shot import zero_shot_auroc
from .sweep import AttackSettings, Evaluation, SweepResult, budget_sweep

__all__ = [
    "BudgetInputs",
    "budget_inputs",
    "make_evaluator",
    "run_budget_sweep",
    "budget_settings",
    "THREAT_MODELS",
    "RECALL_COLUMNS",
]

#: Columns of the sweep's long re-linkage table, one row per (eps, pool, k, N).
RECALL_COLUMNS: tuple[str, ...] = ("target_epsilon", "pool", "k", "N", "full_database", "recall", "lift")

#: The three threat models of chapter 9 (Ziller et al. 2024), as rows of the chapter's table.
THREAT_MODELS: tuple[dict[str, str], ...] = (
    {
        "threat model": "worst case",
        "adversary knows": "every training pair but the target, the code, every update",
        "adversary must": "match the target among n_train candidates (prior kappa = 1/n_train)",
        "risk": "ReRo bound 1 - T(P,Q)(kappa) of the composed subsampled Gaussian (PLD)",
    },
    {
        "threat model": "relaxed",
        "adversary knows": "the same, but not the target's gradient",
        "adversary must": "reconstruct the target, not match it",
        "risk": "power of the generalised likelihood-ratio test on the squared updates at level kappa",
    },
    {
        "threat model": 'gradient access (this book\'s "realistic" attack)',
        "adversary knows": "one pair's isolated noisy update of the image head (gradient access), N candidate images",
        "adversary must": "reconstruct the image feature from the update and pick the image",
        "risk": "re-identification rate of a rank-one gradient-inversion attack (chance 1/N); a stronger adversary "
        "than the re-linker (released weights only) and than Ziller et al.'s realistic setting",
    },
)


@dataclass
class BudgetInputs:
    """What the sweep trains and evaluates on (see the module docstring).

    ``bank_text`` (m, d_txt), ``bank_image`` (m, d_img): float32 public bank; ``train_patients``
    (n_train,) patient ids; ``train_labels`` (n_train, 14) and ``test_pairs`` (n_test, patient_id + 14
    labels) in feature row order.
    """

    cohort: Cohort
    rung: Rung
    encoder: DualEncoder
    train: Features
    test: Features
    bank_text: np.ndarray
    bank_image: np.ndarray
    train_patients: np.ndarray
    train_labels: pd.DataFrame
    test_pairs: pd.DataFrame


def budget_inputs(params: ProfileLike, *, progress: bool = True) -> BudgetInputs:
    """Load (building on a miss) the cohort, the strongest rung, its features and the public bank."""
    cfg = as_profile(params)
    cohort = get_cohort(cfg, site="internal")
    ladder = get_ladder(cfg, progress=progress)
    if not ladder:
        raise ValueError("get_ladder: the profile has no model rung to fine-tune")
    rung = max(ladder, key=lambda r: r.index)
    train = get_features(cfg, cohort, rung, "train", progress=progress)
    test = get_features(cfg, cohort, rung, "test", progress=progress)
    val = get_features(cfg, cohort, rung, "val", progress=progress)
    bank_size = int(cfg.dp.bank_size)
    if len(val) < 1:
        raise ValueError("cohort: the val split is empty; the public report bank is drawn from it")
    bank = np.asarray(val.text[:bank_size], dtype=np.float32)
    bank_image = np.asarray(val.image[:bank_size], dtype=np.float32)  # the mitigation's objective uses both banks
    pairs = cohort.pairs
    keep = ["patient_id", *CHEXPERT_LABELS]
    test_pairs = pairs.iloc[test.rows][keep].reset_index(drop=True)
    return BudgetInputs(
        cohort=cohort,
        rung=rung,
        encoder=rung.load(device="cpu"),
        train=train,
        test=test,
        bank_text=bank,
        bank_image=bank_image,
        train_patients=pairs.iloc[train.rows]["patient_id"].astype(str).to_numpy(),
        train_labels=pairs.iloc[train.rows][list(CHEXPERT_LABELS)].reset_index(drop=True),
        test_pairs=test_pairs,
    )


def _macro(table: pd.DataFrame) -> float:
    """Macro AUROC of a utility table (its ``label == "macro"`` row; NaN if it has none)."""
    row = table.loc[table["label"] == "macro", "auroc"]
    return float(row.iloc[0]) if len(row) else float("nan")


def _recall_rows(table: pd.DataFrame, pool: str) -> pd.DataFrame:
    """An audit table (:func:`relink_lib.audit.relink_audit`) as long rows of :data:`RECALL_COLUMNS` (no eps).

    A requested pool size equal to the database size and ``None`` give the same full-database row: kept once.
    """
    rows = pd.DataFrame(
        {
            "pool": pool,
            "k": table["k"].astype(int),
            "N": table["pool_size"].astype(int),
            "full_database": table["full_database"].astype(bool),
            "recall": table["recall"].astype(float),
            "lift": table["lift"].astype(float),
        }
    )
    return rows.drop_duplicates(subset=["k", "N", "full_database"], keep="last")


def make_evaluator(inputs: BudgetInputs, params: ProfileLike) -> Callable[[nn.Module, nn.Module], Evaluation]:
    """``evaluate(image_head, text_head)``: re-linkage and utility of the heads on the test split.

    ``recall``: long rows of :data:`RECALL_COLUMNS` but ``target_epsilon``, for each pool of
    :data:`relink_lib.dp.outcomes.POOLS`, K of ``audit.ks`` and N of ``audit.pool_sizes`` (sizes above the test split
    dropped). ``metrics``: ``zero_shot_macro_auroc`` (cross-modal utility: label prompts through
    the text head) and ``probe_macro_auroc`` (image-side linear probe: trained on the train
    split's embeddings, tested on the test split's, disjoint patients; the protocol of
    :mod:`relink_lib.utility.probe`, Newton-Cholesky solver, ``utility.probe_C``).
    """
    cfg = as_profile(params)
    pool_sizes, ks = tuple(cfg.audit.pool_sizes), tuple(cfg.audit.ks)
    chunk = int(cfg.audit.chunk_size)
    probe_c = float(cfg.utility.probe_C)
    labels = inputs.test_pairs[list(CHEXPERT_LABELS)]
    prompt_feats = prompt_features_of(inputs.encoder)

    def evaluate(image_head: nn.Module, text_head: nn.Module) -> Evaluation:
        img, rep = embed_features(inputs.test, image_head, text_head)
        recall = []
        for pool, hard in POOLS:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*exceed the database size.*")
                table = relink_audit(
                    img,
                    rep,
                    pool_sizes=pool_sizes,
                    ks=ks,
                    labels=labels if hard else None,
                    hard_negatives=hard,
                    chunk_size=chunk,
                )
            recall.append(_recall_rows(table, pool))
        zs = zero_shot_auroc(
            None, inputs.test.image, labels, image_head=image_head, text_head=text_head, prompt_features=prompt_feats
        )
        train_img, _ = embed_features(inputs.train, image_head, text_head)
        # Newton-Cholesky converges to the optimum to machine precision, so the probe does not drift with the
        # BLAS kernel of the CPU (L-BFGS stopped at its tolerance did: docs/stack.md)
        probe = linear_probe_auroc(train_img, inputs.train_labels, img, labels, C=probe_c, solver="newton-cholesky")
        return Evaluation(
            metrics={"zero_shot_macro_auroc": _macro(zs), "probe_macro_auroc": _macro(probe)},
            recall=pd.concat(recall, ignore_index=True),
        )

    return evaluate


def run_budget_sweep(
    params: ProfileLike, *, progress: bool = True, inputs: BudgetInputs | None = None
) -> tuple[SweepResult, BudgetInputs]:
    """The profile's sweep (cached; ``.table`` per eps, ``.recall`` long, with :data:`THREAT_MODELS` and
    :func:`budget_settings`), and the inputs it ran on. Writes no results file."""
    cfg = as_profile(params)
    inputs = budget_inputs(cfg, progress=progress) if inputs is None else inputs
    budget = cfg.budget
    key = {
        "step": "privacy-budget",
        "train": str(inputs.train.path),
        "test": str(inputs.test.path),
        "bank": inputs.bank_text,
        "bank_image": inputs.bank_image,
        "rung": str(inputs.rung.path),
        "dp": cfg.dp.to_dict(),
        "budget": budget.to_dict(),
        "audit": cfg.audit.to_dict(),
        "utility": cfg.utility.to_dict(),
        "seed": cfg.seed,
        "code": cache.stage_code_version(__name__),
    }

    def build(tmp: Path) -> None:
        log = (lambda msg: print(msg, flush=True)) if progress else None
        sweep = budget_sweep(
            inputs.train.image,
            inputs.train.text,
            inputs.encoder.image_head,
            inputs.encoder.text_head,
            bank_text_feats=inputs.bank_text,
            bank_image_feats=inputs.bank_image,
            epsilons=list(budget.epsilons),
            config=cfg.dp.budget_sweep_training,
            evaluate=make_evaluator(inputs, cfg),
            attack=AttackSettings.from_config(budget, cfg.seed),
            patient_ids=inputs.train_patients,
            dof=int(budget.relaxed_dof),
            discretization=float(budget.pld_discretization),
            progress=log,
        )
        tables = {k: v for k, v in sweep.to_json().items() if k in ("sweep", "recall")}
        (tmp / "sweep.json").write_text(json.dumps(tables, indent=1) + "\n")

    path = cache.cached_dir(cache_dir(cfg.name), "budget", key, build)
    sweep = SweepResult.from_json(json.loads((path / "sweep.json").read_text()))
    sweep = dataclasses.replace(sweep, threat_models=THREAT_MODELS, settings=budget_settings(cfg, inputs))
    return sweep, inputs


def budget_settings(params: ProfileLike, inputs: BudgetInputs) -> dict[str, Any]:
    """What the sweep ran with (``settings`` of ``privacy_budget.json``): the budgets, the ``budget`` and
    ``dp`` sections, the split and bank sizes, the rung and the rule of the prior kappa."""
    cfg = as_profile(params)
    return {
        "epsilons": list(cfg.budget.epsilons),
        "budget": cfg.budget.to_dict(),
        "dp": cfg.dp.to_dict(),
        "n_train_pairs": int(len(inputs.train)),
        "n_test_pairs": int(len(inputs.test)),
        "bank_size": int(len(inputs.bank_text)),
        "rung": inputs.rung.name,
        "kappa_rule": "1 / number of privacy units in the training split",
    }
