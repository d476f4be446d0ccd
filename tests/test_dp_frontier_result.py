"""The frontier's typed results: ``FrontierResult`` and ``FrontierPoint`` round-trip through ``frontier.json``."""

from __future__ import annotations

import dataclasses
import json

import pytest
from test_dp_frontier import TINY_SPEC, tiny_frontier

from relink_lib.dp.frontier import FrontierPoint, FrontierResult, SelectionRule, select_point
from relink_lib.dp.frontier_stage import _json_default, reference_setting
from relink_lib.dp.summary import FRONTIER_KEYS, frontier_payload


def _text(d: dict) -> str:
    """The JSON text of a payload (NaN and inf spelt as ``json`` writes them), keys sorted."""
    return json.dumps(d, sort_keys=True, default=_json_default)


@pytest.fixture(scope="module")
def built() -> FrontierResult:
    """A real small build (one seed, no scaling study, to stay quick), with rung and bank as get_frontier adds."""
    spec = dataclasses.replace(TINY_SPEC, n_seeds=1, scaling_sizes=(), lrs={"sgd": (0.5,), "adam": (1e-2,)})
    result, _ = tiny_frontier(spec)
    return result


def test_records_round_trip_through_their_json(built: FrontierResult) -> None:
    assert FrontierResult.from_json(built.to_json()) == built
    for p in built.frontier:
        assert FrontierPoint.from_json(p.to_json()) == p
    assert SelectionRule.from_json(built.selection_rule.to_json()) == built.selection_rule
    # through the file: the JSON text written and read back gives the same payload and the same text again
    payload = json.loads(json.dumps(built.to_json(), default=_json_default))
    again = FrontierResult.from_json(payload)
    assert _text(again.to_json()) == _text(payload)
    assert again.frontier[again.reference].setting == built.reference_point.setting == reference_setting(again)


def test_to_json_keeps_the_field_names_of_frontier_json(built: FrontierResult) -> None:
    d = built.to_json()
    assert set(d) == set(FRONTIER_KEYS) - {"rung", "bank"}  # get_frontier adds those two
    ref = d["frontier"][d["reference"]]
    assert {"r1_reduction_ci_low", "output_perturbation_zero_shot_auroc_drop_report_at_same_cut"} <= set(ref)
    others = [p for i, p in enumerate(d["frontier"]) if i != d["reference"]]
    assert all("r1_reduction_ci_low" not in p for p in others)  # the optional fields only where they were set
    assert isinstance(d["seeds"], list) and isinstance(d["frontier"][0]["per_seed"][0], dict)
    assert d["selected"] == select_point(d["frontier"], d["selection_rule"]) == built.selected
    assert set(frontier_payload(built)) == set(d) | {"paper_claim"}


def test_a_stored_payload_reads_back_to_the_same_dict(built: FrontierResult) -> None:
    """A frontier.json as get_frontier writes it (with rung and bank) comes back field for field."""
    stored = json.loads(
        json.dumps(
            {
                **built.to_json(),
                "rung": {"index": 3, "name": "full-reports"},
                "bank": {"source": "internal cohort, val split (declared public)", "size": 16},
            },
            default=_json_default,
        )
    )
    fr = FrontierResult.from_json(stored)
    assert fr.rung is not None and fr.rung.name == "full-reports" and fr.bank is not None and fr.bank.size == 16
    assert fr.to_json() == stored and _text(fr.to_json()) == _text(stored)
    assert FrontierResult.from_json(fr.to_json()) == fr
    with pytest.raises(ValueError, match="unknown fields"):
        FrontierResult.from_json({**stored, "frontir": []})


def test_protocol_findings_and_table_from_hand_made_protocols(built: FrontierResult) -> None:
    import dataclasses

    from relink_lib.dp.frontier import Protocol
    from relink_lib.dp.summary import protocol_findings, protocol_table

    common = dict(
        description="",
        r1_reduction_ci_low=0.3,
        r1_reduction_ci_high=0.5,
        probe_auroc_drop_report=0.2,
        zero_shot_auroc_drop_report=0.4,
        retrieval_p10_drop_report=0.1,
        delta=6e-6,
        n_seeds=3,
    )
    pilot = Protocol(
        name="public_pilot",
        setting={"init": "reinit"},
        fallback=False,
        frontier_index=1,
        n_pairs_candidates_trained_on=500,
        r1_reduction=0.4,
        epsilon=0.339,
        epsilon_single_run=0.339,
        n_dp_runs_on_private=1,
        seed_winners_agree=2,
        **common,
    )
    private = Protocol(
        name="private_frontier",
        setting=None,
        fallback=True,
        frontier_index=3,
        n_pairs_candidates_trained_on=8000,
        r1_reduction=0.6,
        epsilon=2.26,
        epsilon_single_run=0.339,
        n_dp_runs_on_private=36,
        seed_winners_agree=1,
        epsilon_composed=2.26,
        epsilon_tuning_bound=4.65,
        tuning_mu=36.0,
        **common,
    )
    fr = dataclasses.replace(built, protocols=(pilot, private), headline_protocol="public_pilot")
    text = protocol_findings(fr, simulation=True)
    assert len(text) == 3
    assert "Public pilot: on 500 public pairs the rule selects" in text[0]
    assert "epsilon = 0.339 at delta = 6e-06" in text[0] and "2 of 3 noise seeds" in text[0]
    assert "among the 36 DP runs" in text[1] and "no setting meets the rule" in text[1]
    assert "epsilon = 2.26" in text[1] and "Poisson(36)" in text[1] and "<= 4.65" in text[1]
    assert "headline of this simulation uses the public pilot" in text[2]
    t = protocol_table(fr)
    assert list(t["protocol"]) == ["public pilot (headline)", "private frontier"]
    assert list(t["dp_runs_on_private"]) == [1, 36] and t["seed_winners_agree"].tolist() == ["2/3", "1/3"]
    assert "fallback" in t["setting"].iloc[1]
    assert protocol_findings(dataclasses.replace(fr, protocols=()))[0].startswith("This frontier was built without")
