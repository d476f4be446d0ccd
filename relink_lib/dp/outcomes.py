"""What a pair of projection heads does on cached features: re-linkage, utility, and the relative cut.

Shared by the mitigation (chapters 6-8, :mod:`.stage`), the frontier (:mod:`.frontier_stage`) and
the privacy-budget sweep: the encoders never run here, only the heads on pre-projection features.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Iterator, Mapping

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits
from torch import nn

from ..audit import audit_table, per_query_recall, rank_counts
from ..config import AuditConfig
from ..features import Features, embed_features
from ..labels import CHEXPERT_LABELS
from ..models.base import DualEncoder
from ..utility.probe import linear_probe_auroc
from ..utility.retrieval import label_retrieval_precision
from ..utility.zero_shot import default_prompts, zero_shot_auroc

POOLS: tuple[tuple[str, bool], ...] = (("random", False), ("matched", True))
"""Pool types of the mitigation's re-linkage tables: name, hard negatives."""

RETRIEVAL_K = 10
"""Label-level retrieval is scored over each query's top ``RETRIEVAL_K`` reports (metric ``retrieval_precision@10``)."""

PromptFeatures = Mapping[str, tuple[np.ndarray, np.ndarray]]
"""Label -> (positive, negative) pre-projection text features of the zero-shot prompts."""


def relative_reduction(before: float, after: float) -> float:
    """The relative cut ``(before - after) / before`` (positive = less re-linkage); NaN when ``before`` is 0."""
    return (before - after) / before if before > 0 else math.nan


def recall_reduction(
    recall: pd.DataFrame,
    variant: str = "dp",
    *,
    k: int = 1,
    pool: str = "random",
    pool_size: int | None = None,
    baseline: str = "pretrained",
) -> dict[str, float]:
    """Recall@``k`` of ``variant`` against ``baseline`` at one N of a long recall table, and the relative cut.

    ``recall``: rows ``variant, pool, k, pool_size, recall`` (as :func:`relink_outcomes` with a
    ``variant`` column). ``pool_size``: the N to read (``None``, or an N the table lacks: the
    largest N in it, the full database). Returns ``pool_size, recall_before, recall_after,
    relative_reduction``.
    """
    t = recall[(recall["pool"] == pool) & (recall["k"] == k)]
    if t.empty:
        raise ValueError(f"recall: no rows with pool={pool!r} and k={k}")
    n = int(pool_size) if pool_size is not None and int(pool_size) in set(t["pool_size"]) else int(t["pool_size"].max())
    at_n = t[t["pool_size"] == n].set_index("variant")["recall"]
    for name in (baseline, variant):
        if name not in at_n.index:
            raise ValueError(f"recall: no row for variant {name!r} at N = {n}; variants: {sorted(at_n.index)}")
    before, after = float(at_n[baseline]), float(at_n[variant])
    return {
        "pool_size": n,
        "recall_before": before,
        "recall_after": after,
        "relative_reduction": relative_reduction(before, after),
    }


def recall_at_1(image_emb: np.ndarray, report_emb: np.ndarray, pool_size: int, chunk_size: int) -> float:
    """Mean expected Recall@1 over random pools of ``pool_size`` (the whole set if it is smaller), ties broken
    uniformly at random (:func:`relink_lib.audit.engine.per_query_recall`, as the frontier's per-query R@1)."""
    rc = rank_counts(image_emb, report_emb, chunk_size=chunk_size, device="cpu")
    return float(np.mean(per_query_recall(rc, int(pool_size), 1)))


def relink_outcomes(
    feats: Features, pairs: pd.DataFrame, heads: tuple[nn.Module, nn.Module], audit: AuditConfig, seed: int = 0
) -> pd.DataFrame:
    """Re-linkage of one pair of heads on ``feats``: random and matched pools, patient-bootstrap CIs.

    Rows of :func:`relink_lib.audit.audit_table` at ``audit.pool_sizes`` x ``audit.ks`` with a
    ``pool`` column (``random`` / ``matched``); ``seed``: of the bootstrap.
    """
    img, rep = embed_features(feats, heads[0], heads[1])
    labels = pairs[list(CHEXPERT_LABELS)]
    patients = pairs["patient_id"].astype(str).to_numpy()
    tables = []
    for name, hard in POOLS:
        rc = rank_counts(
            img, rep, labels=labels if hard else None, hard_negatives=hard, chunk_size=audit.chunk_size, device="cpu"
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = audit_table(rc, audit.pool_sizes, audit.ks, patient_ids=patients, n_boot=audit.n_boot, seed=seed)
        t.insert(0, "pool", name)
        tables.append(t)
    return pd.concat(tables, ignore_index=True)


def utility_outcomes(
    test_feats: Features,
    test_pairs: pd.DataFrame,
    train_feats: Features,
    train_pairs: pd.DataFrame,
    heads: tuple[nn.Module, nn.Module],
    probe_C: float,
    prompt_features: PromptFeatures | None,
) -> pd.DataFrame:
    """Utility of one pair of heads: rows ``metric, label, value``.

    Metrics: ``linear_probe_auroc`` (probe with inverse L2 strength ``probe_C`` fit on
    ``train_feats``' image embeddings, scored on ``test_feats``; per label and ``macro``),
    ``zero_shot_auroc`` (when prompt features are given), ``retrieval_precision@10`` and its
    ``retrieval_chance@10``.
    """
    img, rep = embed_features(test_feats, heads[0], heads[1])
    labels = test_pairs[list(CHEXPERT_LABELS)]
    tr_img, _ = embed_features(train_feats, heads[0], heads[1])
    probe = linear_probe_auroc(
        tr_img,
        train_pairs[list(CHEXPERT_LABELS)].to_numpy(float),
        img,
        labels.to_numpy(float),
        C=float(probe_C),
        solver="newton-cholesky",
    )
    util = [{"metric": "linear_probe_auroc", "label": r.label, "value": r.auroc} for r in probe.itertuples()]
    if prompt_features is not None:
        zs = zero_shot_auroc(
            None, test_feats.image, labels, image_head=heads[0], text_head=heads[1], prompt_features=prompt_features
        )
        util += [{"metric": "zero_shot_auroc", "label": r.label, "value": r.auroc} for r in zs.itertuples()]
    ret = label_retrieval_precision(img, rep, labels.to_numpy(float), k=min(RETRIEVAL_K, len(img) - 1))
    util += [
        {"metric": f"retrieval_precision@{RETRIEVAL_K}", "label": "all", "value": float(ret["precision"].iloc[0])},
        {"metric": f"retrieval_chance@{RETRIEVAL_K}", "label": "all", "value": float(ret["chance"].iloc[0])},
    ]
    return pd.DataFrame(util)


def prompt_features_of(encoder: DualEncoder) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """Pre-projection text features of the default zero-shot prompts (text tower run once)."""
    if not hasattr(encoder, "text_features"):
        return None
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with torch.no_grad():
        for label, (pos, neg) in default_prompts().items():
            raw = encoder.text_features(list(pos) + list(neg))
            tf = raw.detach().cpu().numpy() if isinstance(raw, torch.Tensor) else np.asarray(raw)
            out[label] = (tf[: len(pos)], tf[len(pos) :])
    return out


@contextmanager
def few_threads(n: int = 1) -> Iterator[None]:
    """Run small dense work single-threaded (torch and BLAS): on shared CPUs threads only contend."""
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(old)
