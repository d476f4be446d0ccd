"""Chapter 11's stage (relink_lib.adaptive.stage.get_adaptive) end to end on the smoke profile, one rung.

Invariants that could fail: every planned (variant, attack, source, m) is measured; the head-free attacks give
one outcome for every released variant; the passive pretrained lift is the audit maths on the same held-out
features recomputed here; a topped-up source holds ``public_pool_min`` pairs, its own first; the cached result
reads back as built.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from relink_lib.adaptive.attacks import embed_with_heads
from relink_lib.adaptive.stage import ATTACKS, HEAD_FREE_ATTACKS, VARIANTS, get_adaptive, topup
from relink_lib.audit.engine import per_query_recall, rank_counts
from relink_lib.cohorts.stage import get_cohort
from relink_lib.config import as_profile
from relink_lib.features import get_features
from relink_lib.models.stage import get_ladder
from relink_lib.profiles import get_profile

OVERRIDES = {"ladder": {"rungs": ("full-reports",)}, "dp": {"frontier": {"scaling_factors": ()}}}


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    base = tmp_path_factory.mktemp("adaptive-stage")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RELINK_CACHE", str(base / "cache"))
        mp.setenv("RELINK_RESULTS", str(base / "results"))
        probe = as_profile(get_profile("smoke", OVERRIDES))
        cohort = get_cohort(probe, site="internal")
        n_val = int((cohort.pairs["split"] == "val").sum())
        pool_min = n_val + 40  # the val source is topped up, the external one is not
        cfg = as_profile(get_profile("smoke", {**OVERRIDES, "adaptive": {"public_pool_min": pool_min}}))
        res = get_adaptive(cfg)
        again = get_adaptive(cfg)
        rung = get_ladder(cfg, progress=False)[-1]
        test = get_features(cfg, cohort, rung, "test", progress=False)
        extra = topup(cfg, "val", n_val, rung)
        encoder = rung.load(device="cpu")
    return SimpleNamespace(
        cfg=cfg,
        res=res,
        again=again,
        test=test,
        cohort=cohort,
        n_val=n_val,
        pool_min=pool_min,
        extra=extra,
        template=(encoder.image_head, encoder.text_head),
    )


def test_every_planned_outcome_is_measured(stage: SimpleNamespace) -> None:
    frame = stage.res.outcome_frame()
    skipped = {(s.source, s.m) for s in stage.res.skipped}
    for source, n in stage.res.sources.items():
        ms = sorted({n if m is None else int(m) for m in stage.cfg.adaptive.m_values if m != 0})
        for m in ms:
            if m > n or (source, m) in skipped:
                continue
            for attack in ATTACKS[1:]:
                got = frame[(frame["source"] == source) & (frame["m"] == m) & (frame["attack"] == attack)]
                assert set(got["variant"]) == set(VARIANTS), (source, m, attack)
    for attack in HEAD_FREE_ATTACKS:  # never read the released heads: one outcome for all variants
        sub = frame[frame["attack"] == attack].groupby(["source", "m"])["lift_ref"].nunique()
        assert (sub == 1).all(), attack
    assert {(r.variant, r.source) for r in stage.res.m_half} == {
        (v, s) for v in VARIANTS if v != "pretrained" for s in stage.res.sources
    }


def test_passive_pretrained_lift_is_the_audit_of_the_held_out_features(stage: SimpleNamespace) -> None:
    emb = embed_with_heads(stage.template, stage.test.image, stage.test.text)
    rc = rank_counts(emb[0], emb[1], chunk_size=64, device="cpu")
    n = stage.res.pool_small
    expected = float(np.mean(np.nan_to_num(per_query_recall(rc, n, 1), nan=0.0))) * n
    row = next(o for o in stage.res.outcomes if o.variant == "pretrained" and o.attack == "passive")
    assert row.lift_small == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert row.lift_small_ci[0] <= row.lift_small <= row.lift_small_ci[1]


def test_val_source_is_topped_up_with_fresh_patients(stage: SimpleNamespace) -> None:
    assert stage.res.sources["val"] == stage.pool_min
    assert stage.res.topped_up["val"] == stage.pool_min - stage.n_val
    assert stage.res.topped_up["external"] == 0
    assert stage.extra is not None and len(stage.extra.features) == stage.pool_min - stage.n_val
    # another seed of the generator: other images than the cohort's own
    assert not np.array_equal(
        stage.extra.features.image[: min(5, len(stage.extra.features))],
        stage.test.image[: min(5, len(stage.extra.features))],
    )


def test_cached_result_reads_back_as_built(stage: SimpleNamespace) -> None:
    assert stage.again.to_json() == stage.res.to_json()
