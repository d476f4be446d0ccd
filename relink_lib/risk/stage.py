"""Pipeline stage of chapter 9: the privacy-budget sweep on the profile's strongest rung.

Inputs (all cached upstream): the internal cohort, the ladder's most specialised rung, its
pre-projection features of the ``train`` split (the private training pairs), the ``test`` split
(held-out evaluation) and a fixed public bank. The bank is the first ``dp.bank_size`` report
and image features of the ``val`` split, which the simulation treats as public; the mitigation's
objective contrasts each private pair only against it (both directions, as in chapter 6;
docs/dp.md), so the sweep's eps = 0.34 point is the mitigation's own training.

For each eps of ``params["budget"]["epsilons"]`` (None = non-private) the heads are fine-tuned by
:func:`relink_lib.dp.train_heads` with the profile's ``dp`` settings (same data, steps, objective and
seed at every eps), then evaluated on the test split: Recall@K over random and pathology-matched
pools (:func:`relink_lib.audit.relink_audit`), cross-modal utility (zero-shot macro AUROC) and the
image-side linear probe (:func:`relink_lib.utility.probe.linear_probe_auroc`), and the three risks
(:mod:`relink_lib.risk.sweep`). The sweep table is cached under ``cache_dir(profile)/budget/<hash>/``;
:func:`write_budget_results` writes ``results/<profile>/privacy_budget.json``. Report text is never
read: prompts are fixed label sentences.
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd
from torch import nn

from .. import cache
from ..labels import CHEXPERT_LABELS
from ..profiles import cache_dir
from .sweep import AttackSettings, budget_sweep

__all__ = ["BudgetInputs", "budget_inputs", "make_evaluator", "run_budget_sweep", "write_budget_results",
           "THREAT_MODELS", "budget_label"]

#: The three threat models of chapter 9 (Ziller et al. 2024), as rows of the chapter's table.
THREAT_MODELS: tuple[dict[str, str], ...] = (
    {"threat model": "worst case", "adversary knows": "every training pair but the target, the code, every update",
     "adversary must": "match the target among n_train candidates (prior kappa = 1/n_train)",
     "risk": "ReRo bound 1 - T(P,Q)(kappa) of the composed subsampled Gaussian (PLD)"},
    {"threat model": "relaxed", "adversary knows": "the same, but not the target's gradient",
     "adversary must": "reconstruct the target, not match it",
     "risk": "power of the generalised likelihood-ratio test on the squared updates at level kappa"},
    {"threat model": "gradient access (this book's \"realistic\" attack)",
     "adversary knows": "one pair's isolated noisy update of the image head (gradient access), N candidate images",
     "adversary must": "reconstruct the image feature from the update and pick the image",
     "risk": "re-identification rate of a rank-one gradient-inversion attack (chance 1/N); a stronger adversary "
             "than the re-linker (released weights only) and than Ziller et al.'s realistic setting"},
)


def budget_label(eps: float | None) -> str:
    """Axis/table label of a budget: ``"no DP"`` or ``"eps=1e+06"`` style."""
    return "no DP" if eps is None or (isinstance(eps, float) and math.isnan(eps)) else f"{eps:g}"


@dataclass
class BudgetInputs:
    """What the sweep trains and evaluates on (see the module docstring)."""

    cohort: Any
    rung: Any
    encoder: Any
    train: Any
    test: Any
    bank_text: np.ndarray
    bank_image: np.ndarray
    train_patients: np.ndarray
    train_labels: pd.DataFrame
    test_pairs: pd.DataFrame


def budget_inputs(params: Mapping[str, Any], *, progress: bool = True) -> BudgetInputs:
    """Load (building on a miss) the cohort, the strongest rung, its features and the public bank."""
    from ..cohorts.stage import get_cohort
    from ..features import get_features
    from ..models.stage import get_ladder

    cohort = get_cohort(params, site="internal")
    ladder = get_ladder(params, progress=progress)
    if not ladder:
        raise ValueError("get_ladder: the profile has no model rung to fine-tune")
    rung = max(ladder, key=lambda r: r.index)
    train = get_features(params, cohort, rung, "train", progress=progress)
    test = get_features(params, cohort, rung, "test", progress=progress)
    val = get_features(params, cohort, rung, "val", progress=progress)
    bank_size = int(params["dp"].get("bank_size", 2048))
    if len(val) < 1:
        raise ValueError("cohort: the val split is empty; the public report bank is drawn from it")
    bank = np.asarray(val.text[:bank_size], dtype=np.float32)
    bank_image = np.asarray(val.image[:bank_size], dtype=np.float32)  # the mitigation's objective uses both banks
    pairs = cohort.pairs
    keep = ["patient_id", *CHEXPERT_LABELS]
    test_pairs = pairs.iloc[test.rows][keep].reset_index(drop=True)
    return BudgetInputs(cohort=cohort, rung=rung, encoder=rung.load(device="cpu"), train=train, test=test,
                        bank_text=bank, bank_image=bank_image, train_patients=pairs.iloc[train.rows]["patient_id"].astype(str).to_numpy(),
                        train_labels=pairs.iloc[train.rows][list(CHEXPERT_LABELS)].reset_index(drop=True),
                        test_pairs=test_pairs)


def _macro(table: Any) -> float:
    """Macro AUROC from a utility table (a DataFrame with a ``macro`` row, a dict, or a number)."""
    if isinstance(table, pd.DataFrame) and "label" in table.columns and "auroc" in table.columns:
        row = table.loc[table["label"] == "macro", "auroc"]
        return float(row.iloc[0]) if len(row) else float("nan")
    if isinstance(table, Mapping):
        for key in ("macro_auroc", "macro"):
            if key in table:
                return float(table[key])
    if hasattr(table, "macro_auroc"):
        return float(table.macro_auroc)
    return float(table)


def make_evaluator(inputs: BudgetInputs, params: Mapping[str, Any]) -> Callable[[nn.Module, nn.Module], dict[str, float]]:
    """``evaluate(image_head, text_head)``: flat re-linkage and utility numbers on the test split.

    Keys: ``recall_{random|hard}_k{K}_n{N|full}``, ``lift_{random|hard}_k{K}_n{N|full}``,
    ``zero_shot_macro_auroc`` (cross-modal utility: label prompts through the text head) and
    ``probe_macro_auroc`` (image-side linear probe: trained on the train split's embeddings,
    tested on the test split's, disjoint patients; the protocol of :mod:`relink_lib.utility.probe`,
    Newton-Cholesky solver).
    """
    from ..audit import relink_audit
    from ..features import embed_features
    from ..utility.probe import linear_probe_auroc
    from ..utility.zero_shot import default_prompts, zero_shot_auroc

    audit = params["audit"]
    pool_sizes, ks = tuple(audit["pool_sizes"]), tuple(audit["ks"])
    chunk = int(audit.get("chunk_size", 4096))
    labels = inputs.test_pairs[list(CHEXPERT_LABELS)]
    prompts = default_prompts()
    prompt_feats = {}
    for label, (pos, neg) in prompts.items():
        pos_l, neg_l = ([pos] if isinstance(pos, str) else list(pos)), ([neg] if isinstance(neg, str) else list(neg))
        tf = inputs.encoder.text_features(pos_l + neg_l).numpy()
        prompt_feats[label] = (tf[:len(pos_l)], tf[len(pos_l):])
    probe_c = float(params.get("utility", {}).get("probe_C", 1.0))

    def evaluate(image_head: nn.Module, text_head: nn.Module) -> dict[str, float]:
        img, rep = embed_features(inputs.test, image_head, text_head)
        out: dict[str, float] = {}
        for pool, hard in (("random", False), ("hard", True)):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*exceed the database size.*")
                table = relink_audit(img, rep, pool_sizes=pool_sizes, ks=ks, labels=labels if hard else None,
                                     hard_negatives=hard, chunk_size=chunk)
            for _, r in table.iterrows():
                n = "full" if bool(r.get("full_database", False)) else str(int(r["pool_size"]))
                out[f"recall_{pool}_k{int(r['k'])}_n{n}"] = float(r["recall"])
                out[f"lift_{pool}_k{int(r['k'])}_n{n}"] = float(r["lift"])
        zs = zero_shot_auroc(None, inputs.test.image, labels, image_head=image_head, text_head=text_head,
                             prompt_features=prompt_feats)
        out["zero_shot_macro_auroc"] = _macro(zs)
        train_img, _ = embed_features(inputs.train, image_head, text_head)
        # Newton-Cholesky converges to the optimum to machine precision, so the probe does not drift with the
        # BLAS kernel of the CPU (L-BFGS stopped at its tolerance did: docs/stack.md)
        out["probe_macro_auroc"] = _macro(linear_probe_auroc(train_img, inputs.train_labels, img, labels, C=probe_c,
                                                             solver="newton-cholesky"))
        return out

    return evaluate


def _code_version() -> str:
    from .. import audit, dp, features, risk, utility

    return cache.code_version(risk, dp, audit, utility, features)


def run_budget_sweep(params: Mapping[str, Any], *, progress: bool = True,
                     inputs: BudgetInputs | None = None) -> tuple[pd.DataFrame, BudgetInputs]:
    """The sweep table of the profile (cached), and the inputs it ran on."""
    from ..dp import DPConfig

    inputs = budget_inputs(params, progress=progress) if inputs is None else inputs
    budget = params["budget"]
    epsilons = list(budget["epsilons"])
    config = DPConfig.from_params(params)
    attack = AttackSettings.from_params(params)
    key = {"step": "privacy-budget", "train": str(inputs.train.path), "test": str(inputs.test.path),
           "bank": inputs.bank_text, "bank_image": inputs.bank_image, "rung": str(inputs.rung.path), "dp": dict(params["dp"]),
           "budget": dict(budget), "audit": dict(params["audit"]), "seed": params["seed"], "code": _code_version()}

    def build(tmp: Path) -> None:
        log = (lambda msg: print(msg, flush=True)) if progress else None
        table = budget_sweep(inputs.train.image, inputs.train.text, inputs.encoder.image_head, inputs.encoder.text_head,
                             bank_text_feats=inputs.bank_text, bank_image_feats=inputs.bank_image,
                             epsilons=epsilons, config=config,
                             evaluate=make_evaluator(inputs, params), attack=attack,
                             patient_ids=inputs.train_patients, dof=int(budget.get("relaxed_dof", 1)),
                             discretization=float(budget.get("pld_discretization", 1e-3)), progress=log)
        rows = json.loads(table.to_json(orient="records"))
        (tmp / "sweep.json").write_text(json.dumps(rows, indent=1) + "\n")

    path = cache.cached_dir(cache_dir(params["profile"]), "budget", key, build)
    table = pd.DataFrame(json.loads((path / "sweep.json").read_text()))
    table["target_epsilon"] = table["target_epsilon"].astype(object).where(table["target_epsilon"].notna(), None)
    return table, inputs


def write_budget_results(params: Mapping[str, Any], table: pd.DataFrame, inputs: BudgetInputs, *,
                         wall_time_s: float) -> Path:
    """``results/<profile>/privacy_budget.json``: the sweep rows, the threat models and the settings."""
    from ..cohorts.stage import cohort_label
    from ..results import write_results

    payload = {
        "sweep": table,
        "threat_models": list(THREAT_MODELS),
        "settings": {"epsilons": list(params["budget"]["epsilons"]), "budget": dict(params["budget"]),
                     "dp": dict(params["dp"]), "n_train_pairs": int(len(inputs.train)), "n_test_pairs": int(len(inputs.test)),
                     "bank_size": int(len(inputs.bank_text)), "rung": inputs.rung.name,
                     "kappa_rule": "1 / number of privacy units in the training split"},
    }
    return write_results(params, "privacy_budget", payload, cohort=cohort_label(inputs.cohort), model=inputs.rung.name,
                         wall_time_s=wall_time_s)

