"""What a pair of heads does on cached features (relink_lib.dp.outcomes), on small arrays with known answers.

Identity heads on features whose image and report halves are equal re-link every pair (Recall 1 at every
N and K); independent random features re-link at chance; the relative cut is (before - after) / before of
the table's own numbers; the Recall@1 used to tune output perturbation is the table's number.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from relink_lib.config import AuditConfig
from relink_lib.dp.outcomes import (
    POOLS,
    RETRIEVAL_K,
    few_threads,
    recall_at_1,
    recall_reduction,
    relative_reduction,
    relink_outcomes,
    utility_outcomes,
)
from relink_lib.features import Features, embed_features
from relink_lib.labels import CHEXPERT_LABELS

AUDIT = AuditConfig(pool_sizes=(10, 50, None), ks=(1, 5), n_boot=20, chunk_size=64, device="cpu")


def _identity_heads(d: int) -> tuple[nn.Linear, nn.Linear]:
    heads = []
    for _ in range(2):
        h = nn.Linear(d, d, bias=False)
        with torch.no_grad():
            h.weight.copy_(torch.eye(d))
        heads.append(h)
    return heads[0], heads[1]


def _pairs(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = np.zeros((n, len(CHEXPERT_LABELS)))
    labels[:, 0] = rng.integers(0, 2, n)
    labels[:, 1] = rng.integers(0, 2, n)
    frame = pd.DataFrame(labels, columns=list(CHEXPERT_LABELS))
    frame.insert(0, "patient_id", [f"p{i // 2}" for i in range(n)])
    return frame


def _features(n: int, d: int, *, linked: bool, seed: int = 0) -> Features:
    rng = np.random.default_rng(seed)
    img = rng.normal(size=(n, d)).astype(np.float32)
    txt = img.copy() if linked else rng.normal(size=(n, d)).astype(np.float32)
    return Features(image=img, text=txt, rows=np.arange(n))


def test_equal_image_and_report_features_relink_every_pair():
    n, d = 120, 8
    t = relink_outcomes(_features(n, d, linked=True), _pairs(n), _identity_heads(d), AUDIT, seed=0)
    assert set(t["pool"]) == {name for name, _ in POOLS}
    assert set(t["pool_size"]) == {10, 50, n} and set(t["k"]) == {1, 5}
    np.testing.assert_allclose(t["recall"], 1.0)
    np.testing.assert_allclose(t["ci_low"], 1.0)
    # lift = 1 / chance: N / K in full random pools
    rnd = t[(t["pool"] == "random") & (t["pool_size"] == 50)].set_index("k")
    assert rnd.loc[1, "lift"] == pytest.approx(50) and rnd.loc[5, "lift"] == pytest.approx(10)


def test_independent_random_features_relink_at_chance():
    n, d = 600, 16
    t = relink_outcomes(_features(n, d, linked=False, seed=3), _pairs(n), _identity_heads(d), AUDIT, seed=0)
    rnd = t[t["pool"] == "random"]
    for row in rnd.itertuples():
        chance = min(row.k, row.pool_size) / row.pool_size
        assert row.chance == pytest.approx(chance)
        # the true report's rank is uniform: the mean expected recall is chance up to sampling (SE < 0.013 here)
        assert abs(row.recall - chance) < 0.04, (row.pool_size, row.k, row.recall)
    matched = t[t["pool"] == "matched"]
    assert len(matched) == len(rnd)
    np.testing.assert_allclose(matched["recall"], matched["chance"], atol=0.05)


def test_recall_at_1_is_the_tables_random_pool_number():
    n, d = 80, 6
    feats = _features(n, d, linked=False, seed=1)
    feats = Features(image=feats.image + 0.5 * feats.text, text=feats.text, rows=feats.rows)  # partly linked
    heads = _identity_heads(d)
    t = relink_outcomes(feats, _pairs(n), heads, AUDIT, seed=0)
    img, rep = embed_features(feats, *heads)
    for n_pool in (10, 50, n):
        row = t[(t["pool"] == "random") & (t["k"] == 1) & (t["pool_size"] == n_pool)]
        assert recall_at_1(img, rep, n_pool, chunk_size=32) == pytest.approx(float(row["recall"].iloc[0]), abs=1e-9)
    assert recall_at_1(img, rep, 10 * n, chunk_size=32) == pytest.approx(recall_at_1(img, rep, n, chunk_size=32))


def test_recall_reduction_of_two_heads_is_the_hand_computed_cut():
    n, d = 100, 8
    feats, pairs = _features(n, d, linked=True), _pairs(n)
    good = _identity_heads(d)
    g = torch.Generator().manual_seed(0)
    bad = tuple(nn.Linear(d, d, bias=False) for _ in range(2))
    with torch.no_grad():
        for h in bad:
            h.weight.copy_(torch.randn(d, d, generator=g))
    tables = []
    for name, heads in (("pretrained", good), ("dp", bad)):
        tables.append(relink_outcomes(feats, pairs, heads, AUDIT, seed=0).assign(variant=name))
    recall = pd.concat(tables, ignore_index=True)
    at = recall[(recall["pool"] == "random") & (recall["k"] == 1) & (recall["pool_size"] == 50)].set_index("variant")
    before, after = float(at.loc["pretrained", "recall"]), float(at.loc["dp", "recall"])
    assert before == pytest.approx(1.0) and after < 1.0
    red = recall_reduction(recall, "dp", k=1, pool="random", pool_size=50)
    assert red == {
        "pool_size": 50,
        "recall_before": before,
        "recall_after": after,
        "relative_reduction": pytest.approx((before - after) / before),
    }
    assert red["relative_reduction"] == pytest.approx(relative_reduction(before, after))
    # an N the table lacks (the reference N above the held-out split): the largest N, the full database
    assert recall_reduction(recall, "dp", pool_size=10_000)["pool_size"] == n
    assert recall_reduction(recall, "pretrained")["relative_reduction"] == 0.0


def test_utility_outcomes_rows_and_retrieval_of_perfect_heads():
    n, d = 60, 8
    feats, pairs = _features(n, d, linked=True, seed=2), _pairs(n, seed=2)
    u = utility_outcomes(feats, pairs, feats, pairs, _identity_heads(d), probe_C=1.0, prompt_features=None)
    assert set(u["metric"]) == {
        "linear_probe_auroc",
        f"retrieval_precision@{RETRIEVAL_K}",
        f"retrieval_chance@{RETRIEVAL_K}",
    }
    assert RETRIEVAL_K == 10  # the metric names summaries read: retrieval_precision@10, retrieval_chance@10
    chance = float(u[u["metric"] == "retrieval_chance@10"]["value"].iloc[0])
    assert 0.0 < chance < 1.0
    assert "macro" in set(u[u["metric"] == "linear_probe_auroc"]["label"])


def test_few_threads_restores_the_thread_count():
    before = torch.get_num_threads()
    with few_threads():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
