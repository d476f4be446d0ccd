"""Chapter 11's attacks on planted cases, the disjointness guard, the result round trip and the rule."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from relink_lib.adaptive.attacks import (
    cca_attack,
    check_disjoint,
    embed_linear,
    embed_text_side,
    embed_with_heads,
    ridge_attack,
    text_side_attack,
    train_heads_attack,
)
from relink_lib.adaptive.stage import (
    AdaptiveResult,
    AttackOutcome,
    MHalf,
    ProtectionRow,
    ReleaseOption,
    Skipped,
    TailRow,
    _m_plan,
    per_patient_recall,
    tail_statistics,
)
from relink_lib.adaptive.summary import headline_sentence, recommend
from relink_lib.audit.engine import per_query_recall, rank_counts
from relink_lib.cohorts.base import Cohort


def _planted(n: int, seed: int = 0, d_img: int = 24, d_txt: int = 16, noise: float = 0.05):
    """Image features and text features with a known linear relation t = x A + noise."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d_img, d_txt))
    x = rng.normal(size=(n, d_img))
    return x, x @ a + noise * rng.normal(size=(n, d_txt)), a


def _r1(emb: tuple[np.ndarray, np.ndarray], n: int) -> float:
    rc = rank_counts(emb[0], emb[1], chunk_size=512, device="cpu")
    return float(np.mean(per_query_recall(rc, n, 1)))


def test_ridge_recovers_planted_map_and_is_chance_without_pairs() -> None:
    x, t, _ = _planted(700)
    fit_x, fit_t, test_x, test_t = x[:500], t[:500], x[500:], t[500:]
    r1 = _r1(embed_linear(ridge_attack(fit_x, fit_t, 1e-3), test_x, test_t), 100)
    assert r1 > 0.95
    none = ridge_attack(fit_x[:0], fit_t[:0])
    assert _r1(embed_linear(none, test_x, test_t), 100) == pytest.approx(0.01)


def test_cca_recovers_planted_map_and_is_chance_without_pairs() -> None:
    x, t, _ = _planted(700, seed=1)
    r1 = _r1(embed_linear(cca_attack(x[:500], t[:500], 16, 1e-3), x[500:], t[500:]), 100)
    assert r1 > 0.9
    assert _r1(embed_linear(cca_attack(x[:0], t[:0]), x[500:], t[500:]), 100) == pytest.approx(0.01)


def test_ridge_needs_enough_pairs() -> None:
    x, t, _ = _planted(700, seed=2)
    few = _r1(embed_linear(ridge_attack(x[:5], t[:5]), x[500:], t[500:]), 100)
    many = _r1(embed_linear(ridge_attack(x[:500], t[:500]), x[500:], t[500:]), 100)
    assert few < many


def test_trained_heads_attack_learns_planted_relation() -> None:
    torch.manual_seed(0)
    x, t, _ = _planted(600, seed=3, d_img=12, d_txt=12, noise=0.01)
    x, t = x.astype(np.float32), t.astype(np.float32)
    start = (nn.Linear(12, 8, bias=False), nn.Linear(12, 8, bias=False))
    before = _r1(embed_with_heads(start, x[400:], t[400:]), 100)
    heads = train_heads_attack(x[:400], t[:400], start, epochs=30, lr=1e-2, batch_size=64, seed=0)
    after = _r1(embed_with_heads(heads, x[400:], t[400:]), 100)
    assert after > max(0.5, before + 0.2)
    assert train_heads_attack(x[:1], t[:1], start, epochs=1, lr=1e-2, batch_size=8) is start


def test_attacks_refuse_test_rows() -> None:
    check_disjoint(["internal:1", "internal:2"], ["internal:3"], "ridge")
    with pytest.raises(ValueError, match="never on the pairs"):
        check_disjoint(["internal:1", "internal:3"], ["internal:3", "internal:4"], "ridge")
    # the same row number at another site is another pair
    check_disjoint(["external:3"], ["internal:3"], "ridge")


def test_m_plan_skips_and_dedupes() -> None:
    ms, skipped = _m_plan((0, 10, 50, None), 30, "val")
    assert ms == [0, 10, 30]
    assert [s.m for s in skipped] == [50]
    ms, skipped = _m_plan((0, 30, None), 30, "val")
    assert ms == [0, 30] and skipped[0].m is None


def _planted_reports(n: int, seed: int = 0, vocab: int = 40, d: int = 16) -> tuple[list[str], np.ndarray]:
    """Reports as bags of words (each word present with probability 0.3) and image embeddings linear in the bag."""
    rng = np.random.default_rng(seed)
    bags = rng.random((n, vocab)) < 0.3
    words = np.array([f"w{j}" for j in range(vocab)])
    texts = [" ".join(words[b]) or "none" for b in bags]
    emb = bags.astype(float) @ rng.normal(size=(vocab, d)) + 0.05 * rng.normal(size=(n, d))
    return texts, emb


def test_text_side_recovers_planted_map_and_is_chance_without_pairs() -> None:
    texts, emb = _planted_reports(900, seed=4)
    fit = text_side_attack(emb[:600], texts[:600], 1e-3)
    assert fit.vectorizer is not None and fit.m == 600
    r1 = _r1(embed_text_side(fit, emb[600:], texts[600:]), 100)
    assert r1 > 0.8
    few = _r1(embed_text_side(text_side_attack(emb[:8], texts[:8], 1e-3), emb[600:], texts[600:]), 100)
    assert few < r1
    none = text_side_attack(emb[:1], texts[:1])
    assert none.vectorizer is None
    assert _r1(embed_text_side(none, emb[600:], texts[600:]), 100) == pytest.approx(0.01)


def test_text_side_vocabulary_comes_from_public_reports_only() -> None:
    texts, emb = _planted_reports(300, seed=5)
    fit = text_side_attack(emb[:200], texts[:200], 1e-3)
    vocab = set(fit.vectorizer.vocabulary_)
    assert "secretword" not in vocab
    # a word only the evaluated reports contain changes nothing
    a = embed_text_side(fit, emb[200:], texts[200:])[1]
    b = embed_text_side(fit, emb[200:], [t + " secretword" for t in texts[200:]])[1]
    np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="one report per image"):
        text_side_attack(emb[:10], texts[:9])


def _cohort_of(texts: list[str]) -> Cohort:
    return cast(Cohort, SimpleNamespace(pairs=pd.DataFrame({"text": texts})))


def test_stage_fit_rows_are_disjoint_from_test_rows() -> None:
    from relink_lib.adaptive.stage import _source
    from relink_lib.features import Features

    val = Features(np.zeros((5, 2), np.float32), np.zeros((5, 2), np.float32), np.arange(10, 15))
    src = _source("val", val, _cohort_of([f"r{i}" for i in range(15)]), "internal", 0)
    test_ids = np.array([f"internal:{r}" for r in range(20, 30)])
    check_disjoint(src.ids, test_ids, "val source")
    with pytest.raises(ValueError):
        check_disjoint(src.ids, np.array(["internal:12"]), "val source")
    assert list(src.texts) == [f"r{i}" for i in range(10, 15)]


def test_topped_up_source_puts_its_own_pairs_first() -> None:
    from relink_lib.adaptive.stage import TopUp, _source
    from relink_lib.features import Features

    val = Features(np.zeros((4, 2), np.float32), np.zeros((4, 2), np.float32), np.arange(20, 24))
    extra = Features(np.ones((6, 2), np.float32), np.ones((6, 2), np.float32), np.arange(0, 6))
    top = TopUp(extra, _cohort_of([f"x{i}" for i in range(6)]), "entry")
    src = _source("val", val, _cohort_of([f"r{i}" for i in range(24)]), "internal", 1, top)
    assert (src.n_own, src.n_extra, len(src.ids)) == (4, 6, 10)
    assert sorted(src.order[:4]) == [0, 1, 2, 3] and sorted(src.order) == list(range(10))
    # the top-up's row 3 is another patient than the internal cohort's row 3, and the test split's
    assert "internal-topup:3" in set(src.ids) and "internal:3" not in set(src.ids)
    check_disjoint(src.ids, np.array([f"internal:{r}" for r in range(0, 20)]), "topped-up val source")
    assert src.image[src.order[4:]].min() == 1.0 and list(src.texts[4:]) == [f"x{i}" for i in range(6)]


def _option(name: str, risk: float, hi: float, zs: float | None) -> ReleaseOption:
    return ReleaseOption(
        name,
        1.0,
        (0.5, 1.5),
        1.0,
        (0.5, 1.5),
        risk,
        (0.0, hi),
        "ridge (val, m = 10)",
        100,
        risk,
        (0.0, hi),
        zs,
        0.7,
        0.3,
        "",
    )


def test_recommend_both_branches() -> None:
    opts = [
        _option("full_model", 20.0, 25.0, 0.80),
        _option("dp_heads", 3.0, 4.0, 0.795),
        _option("image_tower_only", 1.0, 2.0, None),
    ]
    rec = recommend(opts, 5.0, 1.0)
    assert rec["recommended"] == "dp_heads"
    assert rec["acceptable"] == ["dp_heads"]
    assert "no zero-shot" in rec["reasons"]["image_tower_only"]
    rec = recommend(opts, 3.5, 1.0)  # the DP heads' upper bound 4.0 now exceeds it
    assert rec["recommended"] is None
    assert rec["sentence"].startswith("No release option meets")


def test_tail_statistics() -> None:
    pp = np.array([0.0] * 98 + [0.5, 1.0])
    row = tail_statistics(pp, 0.01, 200, 0)
    assert row.fraction_above == pytest.approx(0.02)
    assert row.top_mean == pytest.approx(1.0)
    assert row.fraction_above_ci[0] <= 0.02 <= row.fraction_above_ci[1]
    assert per_patient_recall(np.array([1.0, 0.0, 0.5]), np.array(["a", "a", "b"])).tolist() == [0.5, 0.5]


def _result() -> AdaptiveResult:
    out = AttackOutcome("dp", "ridge", "val", 10, 0.1, 10.0, (8.0, 12.0), 0.01, 100.0, (80.0, 120.0))
    prot = ProtectionRow(
        "held-out",
        30,
        29,
        "no released part",
        "none",
        1.0,
        (0.5, 1.5),
        1.0,
        (0.5, 1.5),
        2.0,
        (1.0, 3.0),
        2.0,
        (1.0, 3.0),
        "val",
        10,
    )
    opts = (_option("full_model", 20.0, 25.0, 0.8), _option("dp_heads", 3.0, 4.0, 0.79))
    return AdaptiveResult(
        rung="r",
        n_test=30,
        pool_small=29,
        pool_ref=29,
        n_max=29,
        m_reference=10,
        sources={"val": 30},
        topped_up={"val": 0},
        epsilon=0.34,
        delta=6e-6,
        setting={"init": "reinit"},
        outcomes=(out,),
        skipped=(Skipped("val", None, 30, "x"),),
        m_half=(MHalf("dp", "val", 2.0, 1.0, 1.0, 10, None),),
        adaptive_m={"val": 10},
        protection=(prot,),
        options=opts,
        tail=(TailRow("c", 10, 0.1, (0.0, 0.2), 0.5, (0.4, 0.6)),),
        per_patient={"c": (0.1, 0.2)},
        group_sizes={"studies_per_patient_max": 3},
        build_time_s=1.0,
    )


def test_result_round_trip() -> None:
    import json

    r = _result()
    back = AdaptiveResult.from_json(json.loads(json.dumps(r.to_json())))
    assert back == r
    assert back.to_json() == r.to_json()


def test_headline_sentence_says_not_stopped() -> None:
    h = {
        "n": 10000,
        "m": 1000,
        "dp_adaptive": 40.0,
        "dp_adaptive_ci": [30.0, 50.0],
        "dp_passive": 10.0,
        "full_passive": 45.0,
        "recovered": 30 / 35,
        "verdict": "not_stopped",
    }
    s = headline_sentence(h, True)
    assert "does not stop this attacker" in s and "95% CI 30" in s and "86%" in s


def test_stacked_trained_attacks_match_one_by_one() -> None:
    from relink_lib.adaptive.attacks import train_heads_attacks

    torch.manual_seed(1)
    x, t, _ = _planted(300, seed=6, d_img=12, d_txt=12, noise=0.01)
    x, t = x.astype(np.float32), t.astype(np.float32)
    starts = [(nn.Linear(12, 8, bias=False), nn.Linear(12, 8, bias=False)) for _ in range(3)]
    kw = {"epochs": 3, "lr": 1e-2, "batch_size": 32, "seed": 4}
    stacked = train_heads_attacks(x, t, starts, **kw)
    for start, got in zip(starts, stacked, strict=True):
        one = train_heads_attack(x, t, start, **kw)
        torch.testing.assert_close(got[0].weight, one[0].weight, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got[1].weight, one[1].weight, rtol=1e-4, atol=1e-5)


def test_payload_names_the_lifts_at_n100_and_n10000() -> None:
    from relink_lib.adaptive.summary import outcome_records

    r = _result()
    for o, rec in zip(outcome_records(r), r.outcomes, strict=True):
        assert o["r1_lift_n100"] == rec.lift_small and list(o["r1_lift_n100_ci"]) == list(rec.lift_small_ci)
        assert o["r1_lift_n10000"] == rec.lift_ref and list(o["r1_lift_n10000_ci"]) == list(rec.lift_ref_ci)
