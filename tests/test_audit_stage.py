"""The chapter-4/5 stage: per-rung audit, detail split, caching and results JSON (upstream stages faked)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from relink_lib.audit import relink_audit
from relink_lib.audit import stage as audit_stage
from relink_lib.config import AuditConfig
from relink_lib.labels import CHEXPERT_LABELS
from relink_lib.profiles import get_profile, results_dir


def _fake_pairs(m: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = rng.choice([1.0, 0.0, -1.0, np.nan], p=[0.15, 0.6, 0.05, 0.2], size=(m, 14))
    labels[:, 2:] = 0.0  # few label vectors, so matched pools are populated
    frame = pd.DataFrame(labels, columns=CHEXPERT_LABELS)
    frame.insert(0, "patient_id", [f"p{i // 2}" for i in range(m)])
    frame["mentions_device"] = rng.random(m) < 0.4
    frame["mentions_chronic"] = rng.random(m) < 0.3
    return frame


def _emb(m: int, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(m, d))
    return (z + 0.8 * rng.normal(size=(m, d))).astype(np.float32), (z + 0.8 * rng.normal(size=(m, d))).astype(
        np.float32
    )


SETTINGS = AuditConfig(
    pool_sizes=(10, 50, None), ks=(1, 5), n_boot=30, chunk_size=32, device="cpu", nan_as=0.0, uncertain_as=-1.0
)


def test_audit_rung_tables_agree_with_relink_audit_and_split_is_a_partition():
    m = 120
    img, rep = _emb(m)
    pairs = _fake_pairs(m)
    ra = audit_stage.audit_rung(img, rep, pairs, SETTINGS)
    assert set(ra.table["pool"]) == {"random", "matched", "matched-positive"}
    direct = relink_audit(img, rep, (10, 50, None), (1, 5), labels=pairs[list(CHEXPERT_LABELS)], hard_negatives=True)
    got = ra.table[ra.table.pool == "matched"].reset_index(drop=True)
    np.testing.assert_allclose(got.recall, direct.recall)
    assert {"ci_low", "ci_high", "lift_ci_low", "lift_ci_high"} <= set(ra.table.columns)
    # mentioned / not mentioned partition the queries: their weighted mean is the overall recall
    for (pool, _detail), part in ra.breakdown.groupby(["pool", "detail"]):
        overall = ra.table[ra.table.pool == pool].set_index(["pool_size", "k"])
        for (n, k), rows in part.groupby(["pool_size", "k"]):
            w = rows.n_queries.to_numpy()
            assert w.sum() == overall.loc[(n, k), "n_queries"]
            assert np.average(rows.recall, weights=w) == pytest.approx(overall.loc[(n, k), "recall"], abs=1e-12)
    assert set(ra.breakdown.detail) == {"device", "chronic"}
    assert len(ra.ranks["random"]) == m and ra.dropped_pool_sizes == []


def test_audit_rung_records_dropped_pool_sizes_and_validates():
    img, rep = _emb(30)
    ra = audit_stage.audit_rung(img, rep, _fake_pairs(30), dataclasses.replace(SETTINGS, pool_sizes=(10, 100, None)))
    assert ra.dropped_pool_sizes == [100]
    assert 100 not in set(ra.table.pool_size)
    with pytest.raises(ValueError, match="pairs: expected 30 rows"):
        audit_stage.audit_rung(img, rep, _fake_pairs(29), SETTINGS)
    with pytest.raises(ValueError, match="patient_id"):
        audit_stage.audit_rung(img, rep, _fake_pairs(30).drop(columns="patient_id"), SETTINGS)


def test_train_sample_audit_and_gap_agree_with_the_tables():
    img, rep = _emb(60, seed=1)
    t_img, t_rep = _emb(60, seed=2)
    t_img = t_rep * 3.0 + 0.2 * t_img  # "seen" pairs: images close to their reports
    ra = audit_stage.audit_rung(img, rep, _fake_pairs(60), SETTINGS, train=(t_img, t_rep, _fake_pairs(60, seed=4)))
    assert set(ra.train_table.pool) == {"random", "matched"}
    train = ra.train_table[ra.train_table.pool == "random"].set_index(["pool_size", "k"])
    test = ra.table[ra.table.pool == "random"].set_index(["pool_size", "k"])
    for g in ra.gap.itertuples():
        assert g.recall_train == pytest.approx(train.loc[(g.pool_size, g.k), "recall"], abs=1e-12)
        assert g.recall_test == pytest.approx(test.loc[(g.pool_size, g.k), "recall"], abs=1e-12)
        assert g.gap == pytest.approx(g.recall_train - g.recall_test) and g.gap_ci_low <= g.gap <= g.gap_ci_high
    assert (ra.gap.gap[ra.gap.k == 1] > 0).all()
    assert len(ra.counts["train_better"]) == 60 and len(ra.counts["test_tied"]) == 60


def test_rank_histogram_counts_every_rank():
    ranks = np.array([1, 1, 2, 3, 7, 50, 50, 999])
    h = audit_stage.rank_histogram(ranks)
    assert sum(h["counts"]) == len(ranks)
    assert h["edges"][:2] == [1, 2] and h["counts"][0] == 2
    assert h["edges"][-1] == 1000
    with pytest.raises(ValueError, match="ranks"):
        audit_stage.rank_histogram(np.array([0, 1]))


@dataclass
class _Rung:
    index: int
    name: str


class _Cohort:
    name = "fake-internal"

    def __init__(self, pairs):
        self.pairs = pairs


@pytest.fixture
def fake_upstream(monkeypatch):
    m = 80
    pairs = _fake_pairs(m, seed=3)
    pairs["split"] = np.where(np.arange(m) < 60, "test", "train")
    pairs["view"] = np.where(np.arange(m) % 3 == 0, "AP", "PA")
    words = [
        "Left pleural effusion.",
        "ET tube 4 cm above the carina.",
        "Compared to the prior study, stable.",
        "Clear.",
    ]
    pairs["text"] = [" ".join(words[: 1 + (i * 7) % 4]) for i in range(m)]
    cohort = _Cohort(pairs)
    rungs = [_Rung(0, "captions"), _Rung(1, "full-reports")]
    calls = {"audit": 0}

    def get_embeddings(params, cohort_, rung, split="test", progress=True):
        rows = np.flatnonzero(cohort_.pairs["split"].to_numpy() == split)
        img, rep = _emb(m, seed=rung.index)
        return img[rows], rep[rows], rows

    monkeypatch.setattr(audit_stage, "get_cohort", lambda params, site="internal": cohort)
    monkeypatch.setattr(audit_stage, "get_ladder", lambda params, progress=True: rungs)
    monkeypatch.setattr(audit_stage, "get_embeddings", get_embeddings)
    real = audit_stage.audit_rung

    def counting(*a, **k):
        calls["audit"] += 1
        return real(*a, **k)

    monkeypatch.setattr(audit_stage, "audit_rung", counting)
    return calls


def test_audit_ladder_returns_its_result_caches_and_writes_nothing(fake_upstream):
    params = get_profile("smoke", {"audit": {"n_boot": 10, "pool_sizes": (10, 100, None), "device": "cpu"}})
    written = sorted(results_dir("smoke").glob("*.json"))
    before = {p: p.stat().st_mtime_ns for p in written}
    result = audit_stage.audit_ladder(params)
    assert isinstance(result, audit_stage.AuditResult)
    table = result.table
    assert fake_upstream["audit"] == 2
    assert set(table.model) == {"captions", "full-reports"} and set(table.rung) == {0, 1}
    assert {
        "model",
        "rung",
        "cohort",
        "hard_negatives",
        "ci_low",
        "ci_high",
        "pool_size",
        "k",
        "recall",
        "chance",
        "lift",
        "n_queries",
    } <= set(table.columns)
    assert result.cohort == "fake-internal" and result.models == ["captions", "full-reports"]
    body = result.to_json()
    assert list(body) == [  # the field names of results/<profile>/audit.json
        "rows",
        "gap",
        "risk_factors",
        "risk_pool_size",
        "extractor_validation",
        "rank_histograms",
        "split",
        "splits",
        "n_database",
        "dropped_pool_sizes",
        "notes",
    ]
    assert len(body["rows"]) == len(table)
    assert set(table.split) == {"train", "test"} and {r["split"] for r in body["rows"]} == {"train", "test"}
    assert {"recall", "recall_ties_against", "recall_ties_for"} <= set(body["rows"][0])
    train = table[table.split == "train"]
    assert set(train.pool) == {"random", "matched"} and (train.n_queries[train.pool == "random"] == 20).all()
    assert {g["model"] for g in body["gap"]} == {"captions", "full-reports"}
    assert {e["feature"] for e in body["risk_factors"]} >= {"device", "laterality", "measurement", "view_ap"}
    assert body["risk_pool_size"] is None  # 60 held-out pairs: N = 100 does not fit, the full database is used
    assert body["dropped_pool_sizes"] == [100]  # 60 held-out pairs
    assert sum(body["rank_histograms"]["captions"]["counts"]) == 60
    assert "10 replicates" in body["notes"]
    again = audit_stage.audit_ladder(params)
    assert fake_upstream["audit"] == 2  # served from the cache
    pd.testing.assert_frame_equal(again.table, table, check_dtype=False)
    hard = audit_stage.hard_negative_breakdown(params)
    assert fake_upstream["audit"] == 2
    breakdown = hard.by_detail
    assert set(breakdown.detail) == {"device", "chronic"} and set(breakdown.pool) == {"random", "matched"}
    hn = hard.to_json()
    assert list(hn) == ["matched_pools", "by_detail", "detail_columns", "split"]
    assert hn["detail_columns"] == ["mentions_device", "mentions_chronic"]
    assert all(r["pool"] != "random" for r in hn["matched_pools"])
    assert list(hard.matched_pools.columns) == list(audit_stage.MATCHED_POOL_COLUMNS)
    # the stage writes no results file: the chapter's notebook does (relink_lib.results.write_results)
    assert {p: p.stat().st_mtime_ns for p in sorted(results_dir("smoke").glob("*.json"))} == before


def _json_round_trip(result):
    return type(result).from_json(json.loads(json.dumps(result.to_json(), allow_nan=False)))


def test_audit_result_round_trips_through_json(fake_upstream):
    params = get_profile("smoke", {"audit": {"n_boot": 10, "pool_sizes": (10, 100, None), "device": "cpu"}})
    result = audit_stage.audit_ladder(params)
    back = _json_round_trip(result)
    assert back.to_json() == result.to_json()
    for name in ("table", "gap", "risk_factors", "extractor_validation"):
        pd.testing.assert_frame_equal(getattr(back, name), getattr(result, name), check_dtype=False)
    assert back.rank_histograms == result.rank_histograms and back.n_database == result.n_database
    assert back.risk_pool_size == result.risk_pool_size and back.dropped_pool_sizes == result.dropped_pool_sizes
    assert back.cohort == result.cohort and back.models == result.models and back.notes == result.notes
    # a written audit.json reads back too: its provenance block is not part of the result
    assert audit_stage.AuditResult.from_json({**result.to_json(), "provenance": {"profile": "smoke"}}).to_json() == (
        result.to_json()
    )


def test_hard_negative_result_round_trips_through_json(fake_upstream):
    params = get_profile("smoke", {"audit": {"n_boot": 10, "pool_sizes": (10, 100, None), "device": "cpu"}})
    hard = audit_stage.hard_negative_breakdown(params)
    back = _json_round_trip(hard)
    assert back.to_json() == hard.to_json()
    pd.testing.assert_frame_equal(back.by_detail, hard.by_detail, check_dtype=False)
    pd.testing.assert_frame_equal(back.matched_pools, hard.matched_pools.reset_index(drop=True), check_dtype=False)
    assert back.detail_columns == hard.detail_columns and back.split == "test"
    empty = audit_stage.HardNegativeResult(matched_pools=hard.matched_pools, by_detail=pd.DataFrame())
    assert empty.to_json()["by_detail"] == [] and _json_round_trip(empty).by_detail.empty


def test_risk_factor_pool_size_is_the_configured_n_when_it_fits():
    assert audit_stage.risk_factor_pool_size(dataclasses.replace(SETTINGS, risk_pool_size=100), 120) == 100
    assert audit_stage.risk_factor_pool_size(dataclasses.replace(SETTINGS, risk_pool_size=100), 60) is None
