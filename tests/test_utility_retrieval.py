"""Label-level retrieval precision@K against a brute-force loop and known answers."""

from __future__ import annotations

import numpy as np
import pytest

from relink_lib.utility.retrieval import label_retrieval_precision


def _brute(img, rep, y, k, relevance, exclude_self):
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    rep = rep / np.linalg.norm(rep, axis=1, keepdims=True)
    pos = y == 1
    prec, chance = [], []
    for i in range(len(img)):
        cands = [j for j in range(len(img)) if not (exclude_self and j == i)]
        sims = [(-(img[i] @ rep[j]), j) for j in cands]
        top = [j for _, j in sorted(sims)[:k]]
        rel = (
            (lambda j, i=i: bool((pos[i] == pos[j]).all()))
            if relevance == "exact"
            else (lambda j, i=i: bool((pos[i] & pos[j]).any()))
        )
        prec.append(np.mean([rel(j) for j in top]))
        chance.append(np.mean([rel(j) for j in cands]))
    return np.mean(prec), np.mean(chance)


@pytest.mark.parametrize("relevance", ["exact", "any"])
@pytest.mark.parametrize("exclude_self", [True, False])
def test_matches_brute_force(relevance, exclude_self):
    rng = np.random.default_rng(0)
    n, d = 40, 5
    y = rng.choice([1.0, 0.0, -1.0, np.nan], size=(n, 3), p=[0.3, 0.4, 0.1, 0.2])
    img, rep = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    df = label_retrieval_precision(img, rep, y, k=5, relevance=relevance, exclude_self=exclude_self, chunk_size=7)
    p, c = _brute(img, rep, y, 5, relevance, exclude_self)
    assert df["precision"].iloc[0] == pytest.approx(p)
    assert df["chance"].iloc[0] == pytest.approx(c)


def test_known_answer_label_clusters():
    # two label groups, embeddings clustered by group: every retrieved report is relevant
    y = np.array([[1, 0]] * 6 + [[0, 1]] * 6, dtype=float)
    centers = np.array([[1.0, 0.0], [0.0, 1.0]])
    emb = centers[(y[:, 1] == 1).astype(int)] + 0.01 * np.random.default_rng(0).normal(size=(12, 2))
    df = label_retrieval_precision(emb, emb, y, k=5)
    assert df["precision"].iloc[0] == 1.0
    assert df["chance"].iloc[0] == pytest.approx(5 / 11)
    with pytest.raises(ValueError, match="k: expected an integer in"):
        label_retrieval_precision(emb, emb, y, k=12)


@pytest.mark.parametrize("exclude_self", [True, False])
def test_ties_at_the_kth_place_go_to_the_lower_rows_as_a_stable_sort_does(exclude_self):
    # reports in four exact copies each: every query's scores tie in groups of four, so the k-th place cuts a tie
    rng = np.random.default_rng(3)
    n = 24
    base = rng.normal(size=(n // 4, 4))
    rep = np.repeat(base, 4, axis=0)
    img = rng.normal(size=(n, 4))
    y = rng.choice([1.0, 0.0], size=(n, 3), p=[0.5, 0.5])
    for k in (1, 3, 5, 6):
        df = label_retrieval_precision(img, rep, y, k=k, exclude_self=exclude_self, chunk_size=5)
        p, c = _brute(img, rep, y, k, "exact", exclude_self)
        assert df["precision"].iloc[0] == pytest.approx(p), k
        assert df["chance"].iloc[0] == pytest.approx(c)
