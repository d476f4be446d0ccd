"""Pipeline stage of chapter 9: the privacy-budget sweep on the profile's strongest rung.

Inputs (all cached upstream): the internal cohort, the ladder's most specialised rung, its
pre-projection features of the ``train`` split (the private training pairs), the ``test`` split
(held-out evaluation) and a fixed public bank. The bank is the first ``dp.bank_size`` report
and image features of the ``val`` split, which the simulation treats as public; the mitigation's
objective contrasts each private pair only against it (both directions, as in chapter 6;
docs/dp.md).

**The start.** By default (``dp.budget_sweep.start = "released"``) every run trains from fresh,
data-independent heads (:func:`relink_lib.dp.heads.fresh_heads`, drawn from the run's seed) with
chapter 6's released setting: the optimizer, learning rate and epochs of
:func:`relink_lib.dp.frontier_stage.reference_setting` of :func:`relink_lib.dp.frontier_stage.get_frontier`.
Nothing of the pretrained heads is kept, so the relative cut of Recall@1 against the pretrained heads,
cut(eps), is a dose-response: how much re-linkage the training at eps puts back. ``start = "profile"``
is the explicit override: the pretrained heads with the ``dp.budget_sweep`` optimizer, lr and epochs.
Only the heads are trained here: the encoders were trained non-privately on the same patients, and no
bound of this chapter covers them.

For each eps of the profile's ``budget.epsilons`` (None = non-private) and each of ``budget.n_seeds``
seeds (``seed``, ``seed + 1``, ...) the heads are trained by :func:`relink_lib.dp.train_heads` with the
profile's shared ``dp`` keys (same data, steps, objective at every eps), then evaluated on the test
split: Recall@K over random and pathology-matched pools (:func:`relink_lib.audit.relink_audit`),
per-query Recall@1 at the chapter's pool size (the cut and its patient-and-seed bootstrap CI),
cross-modal utility (zero-shot macro AUROC), the image-side linear probe
(:func:`relink_lib.utility.probe.linear_probe_auroc`), and the risks (:mod:`relink_lib.risk.sweep`):
the ReRo bounds at the training-set prior and at the re-linkage priors 1/N (finite ``audit.pool_sizes``),
and the gradient-access reconstruction.

The result is a :class:`relink_lib.risk.sweep.SweepResult`:

- ``table``, one row per eps: the DP record, the risks, the attack, the cut
  (:func:`relink_lib.risk.sweep.budget_sweep`), ``zero_shot_macro_auroc`` and ``probe_macro_auroc``;
- ``recall``, one row per (eps, pool, K, N): :data:`RECALL_COLUMNS` = ``target_epsilon``, ``pool``
  (``"random"`` or ``"matched"``), ``k``, ``N`` (pool size; the database size on a full-database row),
  ``full_database``, ``recall`` (expected Recall@K, mean over seeds) and ``lift`` (recall / chance);
- ``rero``, one row per (eps, prior); ``runs``, one row per (eps, seed).

The tables are cached as ``{"sweep", "recall", "rero", "runs"}`` in ``cache_dir(profile)/budget/<hash>/sweep.json``;
:func:`run_budget_sweep` adds the :data:`THREAT_MODELS`, the settings (:func:`budget_settings`) and the start
(:func:`budget_start`), and the chapter's notebook writes the result's ``to_json()`` to
``results/<profile>/privacy_budget.json`` (:func:`relink_lib.results.write_results`).
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
from ..audit.engine import per_query_recall, rank_counts
from ..cohorts.base import Cohort
from ..cohorts.stage import get_cohort
from ..config import ProfileLike, as_profile
from ..dp import DPConfig
from ..dp.frontier_stage import get_frontier, reference_setting
from ..dp.heads import clone_head, fresh_heads
from ..dp.outcomes import POOLS, prompt_features_of
from ..features import Features, embed_features, get_features
from ..labels import CHEXPERT_LABELS
from ..models.base import DualEncoder
from ..models.stage import Rung, get_ladder
from ..numerics import cache_token
from ..profiles import cache_dir
from ..utility.probe import linear_probe_auroc
from ..utility.zero_shot import zero_shot_auroc
from .sweep import AttackSettings, CutBaseline, Evaluation, SweepResult, budget_sweep

__all__ = [
    "BudgetInputs",
    "budget_inputs",
    "make_evaluator",
    "run_budget_sweep",
    "budget_settings",
    "budget_start",
    "budget_seeds",
    "cut_pool_size",
    "relinkage_pool_sizes",
    "THREAT_MODELS",
    "RECALL_COLUMNS",
]

#: Columns of the sweep's long re-linkage table, one row per (eps, pool, k, N).
RECALL_COLUMNS: tuple[str, ...] = ("target_epsilon", "pool", "k", "N", "full_database", "recall", "lift")

#: The three threat models of chapter 9 (after Ziller et al. 2024), as rows of the chapter's table.
THREAT_MODELS: tuple[dict[str, str], ...] = (
    {
        "threat model": "worst case",
        "adversary knows": "every training pair but the target, the code, every update",
        "adversary must": "match the target among n_train candidates (prior kappa = 1/n_train), or among a "
        "re-linkage pool of N (kappa = 1/N)",
        "risk": "ReRo bound 1 - T(P,Q)(kappa) of the composed subsampled Gaussian (PLD), head training only",
    },
    {
        "threat model": "relaxed",
        "adversary knows": "the same, but not the target's gradient",
        "adversary must": "reconstruct the target, not match it",
        "risk": "power of the generalised likelihood-ratio test on the squared updates at level kappa",
    },
    {
        "threat model": "gradient-access reconstruction",
        "adversary knows": "one pair's individual clipped noisy per-sample update of the image head (gradient "
        "access during training), N candidate images",
        "adversary must": "reconstruct the image feature from the update and pick the image",
        "risk": "re-identification rate of a rank-one gradient inversion (chance 1/N); a stronger adversary "
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


def cut_pool_size(params: ProfileLike, n_test: int) -> int | None:
    """N of the cut: the largest finite ``audit.pool_sizes`` below the test split's size (the pool the chapter
    quotes Recall@1 at, :func:`relink_lib.risk.summary.budget_pool`); ``None`` (the full database) if none is."""
    sizes = [int(n) for n in as_profile(params).audit.pool_sizes if n is not None and 1 < int(n) < int(n_test)]
    return max(sizes) if sizes else None


def relinkage_pool_sizes(params: ProfileLike) -> tuple[int, ...]:
    """The re-linkage priors' N (kappa = 1/N): the finite ``audit.pool_sizes``, sorted."""
    return tuple(sorted({int(n) for n in as_profile(params).audit.pool_sizes if n is not None and int(n) >= 2}))


def budget_seeds(params: ProfileLike) -> tuple[int, ...]:
    """The sweep's training seeds: ``seed``, ``seed + 1``, ... (``budget.n_seeds`` of them)."""
    cfg = as_profile(params)
    return tuple(int(cfg.seed) + i for i in range(int(cfg.budget.n_seeds)))


def _per_query_r1(img: np.ndarray, rep: np.ndarray, pool_size: int | None, chunk: int) -> np.ndarray:
    """Each held-out query's expected Recall@1 at ``pool_size`` (ties at random; the audit's engine)."""
    return per_query_recall(rank_counts(img, rep, chunk_size=chunk, device="cpu"), pool_size, 1)


def make_evaluator(inputs: BudgetInputs, params: ProfileLike) -> Callable[[nn.Module, nn.Module], Evaluation]:
    """``evaluate(image_head, text_head)``: re-linkage and utility of the heads on the test split.

    ``recall``: long rows of :data:`RECALL_COLUMNS` but ``target_epsilon``, for each pool of
    :data:`relink_lib.dp.outcomes.POOLS`, K of ``audit.ks`` and N of ``audit.pool_sizes`` (sizes above the test split
    dropped). ``per_query``: each query's Recall@1 at :func:`cut_pool_size`. ``metrics``: ``zero_shot_macro_auroc``
    (cross-modal utility: label prompts through
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
    n_cut = cut_pool_size(cfg, len(inputs.test))

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
            per_query=_per_query_r1(img, rep, n_cut, chunk),
        )

    return evaluate


def budget_start(
    params: ProfileLike, inputs: BudgetInputs
) -> tuple[Callable[[int], tuple[nn.Module, nn.Module]], DPConfig, dict[str, Any]]:
    """What every run of the sweep trains from: ``(start(seed), config, description)``.

    ``dp.budget_sweep.start = "released"`` (default): fresh heads drawn from the run's seed
    (:func:`relink_lib.dp.heads.fresh_heads`) at chapter 6's released optimizer, lr and epochs
    (:func:`relink_lib.dp.frontier_stage.reference_setting`, computed by :func:`get_frontier` on a miss);
    ``"profile"``: the pretrained heads at the ``dp.budget_sweep`` optimizer, lr and epochs. ``description``
    is the ``start`` block of ``privacy_budget.json`` (``init`` is ``"reinit"`` for fresh heads).
    """
    cfg = as_profile(params)
    template = (inputs.encoder.image_head, inputs.encoder.text_head)
    seeds = list(budget_seeds(cfg))
    if cfg.dp.budget_sweep.start == "profile":
        t = cfg.dp.budget_sweep
        config = cfg.dp.budget_sweep_training

        def pretrained(seed: int) -> tuple[nn.Module, nn.Module]:
            return clone_head(template[0]), clone_head(template[1])

        info = {"init": "pretrained", "optimizer": t.optimizer, "lr": float(t.lr), "epochs": float(t.epochs)}
        return pretrained, config, {**info, "source": "profile (dp.budget_sweep)", "seeds": seeds}
    frontier = get_frontier(cfg)
    setting = reference_setting(frontier)
    config = cfg.dp.training_config(optimizer=setting.optimizer, lr=setting.lr, epochs=setting.epochs)

    def fresh(seed: int) -> tuple[nn.Module, nn.Module]:
        return fresh_heads(template[0], template[1], seed=seed)

    info = {
        "init": "reinit",
        "heads": "fresh, data-independent (relink_lib.dp.heads.fresh_heads, drawn from the run's seed)",
        "optimizer": setting.optimizer,
        "lr": float(setting.lr),
        "epochs": float(setting.epochs),
        "source": "chapter 6's released setting (reference_setting(get_frontier(params)))",
        "released_init": setting.init,
        "released_is_selected": bool(frontier.reference_is_selected),
        "seeds": seeds,
        "trained": "projection heads only; the encoders are frozen and were trained without DP on the same patients",
    }
    return fresh, config, info


def run_budget_sweep(
    params: ProfileLike, *, progress: bool = True, inputs: BudgetInputs | None = None
) -> tuple[SweepResult, BudgetInputs]:
    """The profile's sweep (cached; ``.table`` per eps, ``.recall`` long, ``.rero`` per prior, ``.runs`` per seed,
    with :data:`THREAT_MODELS`, :func:`budget_settings` and :func:`budget_start`), and the inputs it ran on.
    Writes no results file."""
    cfg = as_profile(params)
    inputs = budget_inputs(cfg, progress=progress) if inputs is None else inputs
    budget = cfg.budget
    start, config, start_info = budget_start(cfg, inputs)
    seeds = budget_seeds(cfg)
    n_cut = cut_pool_size(cfg, len(inputs.test))
    key = {
        "step": "privacy-budget",
        "train": str(inputs.train.path),
        "test": str(inputs.test.path),
        "bank": inputs.bank_text,
        "bank_image": inputs.bank_image,
        "rung": str(inputs.rung.path),
        "dp": {k: v for k, v in cfg.dp.to_dict().items() if k not in ("frontier", "budget_sweep")},
        "start": start_info,
        "config": dataclasses.asdict(config),
        "budget": budget.to_dict(),
        "audit": cfg.audit.to_dict(),
        "utility": cfg.utility.to_dict(),
        "seed": cfg.seed,
        "code": cache.stage_code_version(__name__),
        "numerics": cache_token(),  # the dispatch and the audit's BLAS
    }

    def build(tmp: Path) -> None:
        log = (lambda msg: print(msg, flush=True)) if progress else None
        chunk = int(cfg.audit.chunk_size)
        before = _per_query_r1(
            *embed_features(inputs.test, inputs.encoder.image_head, inputs.encoder.text_head), n_cut, chunk
        )
        sweep = budget_sweep(
            inputs.train.image,
            inputs.train.text,
            start,
            bank_text_feats=inputs.bank_text,
            bank_image_feats=inputs.bank_image,
            epsilons=list(budget.epsilons),
            config=config,
            seeds=seeds,
            evaluate=make_evaluator(inputs, cfg),
            attack=AttackSettings.from_config(budget, cfg.seed),
            patient_ids=inputs.train_patients,
            dof=int(budget.relaxed_dof),
            discretization=float(budget.pld_discretization),
            cut=CutBaseline(
                per_query=before,
                patient_ids=inputs.test_pairs["patient_id"].astype(str).to_numpy(),
                pool_size=n_cut,
                n_boot=max(int(cfg.audit.n_boot), 1),
                seed=int(cfg.seed),
            ),
            relinkage_pool_sizes=relinkage_pool_sizes(cfg),
            progress=log,
        )
        tables = {k: v for k, v in sweep.to_json().items() if k in ("sweep", "recall", "rero", "runs")}
        (tmp / "sweep.json").write_text(json.dumps(tables, indent=1) + "\n")

    path = cache.cached_dir(cache_dir(cfg.name), "budget", key, build)
    sweep = SweepResult.from_json(json.loads((path / "sweep.json").read_text()))
    sweep = dataclasses.replace(
        sweep, threat_models=THREAT_MODELS, settings=budget_settings(cfg, inputs), start=start_info
    )
    return sweep, inputs


def budget_settings(params: ProfileLike, inputs: BudgetInputs) -> dict[str, Any]:
    """What the sweep ran with (``settings`` of ``privacy_budget.json``): the budgets, the seeds, the ``budget`` and
    ``dp`` sections, the split and bank sizes, the rung, the rules of the priors kappa and the cut's pool size."""
    cfg = as_profile(params)
    return {
        "epsilons": list(cfg.budget.epsilons),
        "seeds": list(budget_seeds(cfg)),
        "budget": cfg.budget.to_dict(),
        "dp": cfg.dp.to_dict(),
        "n_train_pairs": int(len(inputs.train)),
        "n_test_pairs": int(len(inputs.test)),
        "bank_size": int(len(inputs.bank_text)),
        "rung": inputs.rung.name,
        "kappa_rule": "1 / number of privacy units in the training split",
        "relinkage_priors": [f"1/{n}" for n in relinkage_pool_sizes(cfg)],
        "cut_pool_size": cut_pool_size(cfg, len(inputs.test)),
        "cut": "1 - mean Recall@1 of the trained heads / that of the pretrained heads, held-out queries; CI: "
        "patient bootstrap (audit.n_boot replicates) with the seeds resampled in each replicate",
        "covers": "the projection-head training only; the encoders were trained non-privately on the same patients",
    }
