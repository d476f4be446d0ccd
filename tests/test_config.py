"""The typed profile config: one frozen, validated dataclass per section, defaults in one place."""

from __future__ import annotations

import dataclasses
import json

import pytest

from relink_lib.config import (
    SECTIONS,
    AuditConfig,
    BudgetConfig,
    CohortConfig,
    DPSectionConfig,
    FeaturesConfig,
    FrontierConfig,
    LadderConfig,
    Profile,
    as_profile,
)
from relink_lib.dp import DPConfig
from relink_lib.profiles import PROFILE_NAMES, get_profile


def test_every_profile_round_trips_through_its_dict_form():
    for name in PROFILE_NAMES:
        cfg = get_profile(name)
        assert isinstance(cfg, Profile) and cfg.name == name
        again = as_profile(cfg.to_params())
        assert again == cfg and again.to_params() == cfg.to_params()
        assert as_profile(cfg) is cfg


def test_the_dict_form_is_json_and_every_section_key_is_a_field():
    params = get_profile("ci").to_params()
    json.dumps(params)  # the wire format papermill and the results JSON carry
    for key, kind in SECTIONS.items():
        assert set(params[key]) == set(kind.keys())
    assert set(params) == {"profile", "seed", *SECTIONS}


def test_missing_keys_take_the_dataclass_defaults():
    cfg = as_profile({"audit": {"n_boot": 7}})
    assert cfg.audit.n_boot == 7 and cfg.audit.ks == AuditConfig().ks
    assert cfg.cohort == CohortConfig() and cfg.name == "default" and cfg.seed == 0
    assert cfg.dp.training == DPConfig(seed=0) and cfg.dp.bank_size == DPSectionConfig().bank_size


def test_dp_section_is_flat_and_its_training_config_carries_the_profile_seed():
    cfg = as_profile({"seed": 5, "dp": {"lr": 0.01, "optimizer": "sgd", "bank_size": 64, "frontier": {"n_seeds": 2}}})
    assert cfg.dp.training == DPConfig(lr=0.01, optimizer="sgd", seed=5)
    assert cfg.dp.bank_size == 64 and cfg.dp.frontier.n_seeds == 2
    flat = cfg["dp"]
    assert flat["lr"] == 0.01 and "seed" not in flat and flat["frontier"]["n_seeds"] == 2
    with pytest.raises(ValueError, match=r"unknown key 'dp.seed'"):
        as_profile({"dp": {"seed": 3}})


def test_lists_become_tuples_as_papermill_delivers_them():
    cfg = as_profile(
        {
            "audit": {"pool_sizes": [10, None]},
            "budget": {"epsilons": [1.0, None]},
            "dp": {"frontier": {"lrs": {"sgd": [0.1], "adam": [0.01]}}},
        }
    )
    assert cfg.audit.pool_sizes == (10, None) and cfg.budget.epsilons == (1.0, None)
    assert cfg.dp.frontier.lrs == {"sgd": (0.1,), "adam": (0.01,)}


@pytest.mark.parametrize(
    "params, match",
    [
        ({"audit": {"n_boot": -1}}, r"params\['audit'\]\['n_boot'\]=-1: expected an integer >= 0"),
        ({"audit": {"pool_sizes": (1,)}}, r"params\['audit'\]\['pool_sizes'\]"),
        (
            {"cohort": {"source": "mimic"}},
            r"params\['cohort'\]\['source'\]='mimic': expected one of \['synthetic', 'real'\]",
        ),
        ({"cohort": {"split_fractions": (0.5, 0.5, 0.5)}}, r"params\['cohort'\]\['split_fractions'\].*summing to 1"),
        (
            {"features": {"batch_size": 64, "chunk_size": 100}},
            r"params\['features'\]\['chunk_size'\]=100: expected None or a multiple of batch_size=64",
        ),
        ({"dp": {"frontier": {"lrs": {"sgd": (0.1,)}}}}, r"params\['dp'\]\['frontier'\]\['lrs'\]"),
        ({"dp": {"delta": 2.0}}, r"DPConfig.delta"),
        ({"budget": {"epsilons": (0.0,)}}, r"params\['budget'\]\['epsilons'\]"),
        ({"numerics": {"mode": "fast"}}, r"params\['numerics'\]\['mode'\]='fast'"),
        ({"ladder": {"rungs": ()}}, r"params\['ladder'\]\['rungs'\]"),
        ({"seed": 1.5}, r"params\['seed'\]=1.5: expected an integer"),
    ],
)
def test_bad_values_are_refused_naming_the_key(params, match):
    with pytest.raises(ValueError, match=match):
        as_profile(params)


def test_unknown_keys_are_refused_with_a_close_match():
    with pytest.raises(ValueError, match=r"unknown key 'audit.nboot' \(did you mean 'n_boot'\?\)"):
        as_profile({"audit": {"nboot": 3}})
    with pytest.raises(ValueError, match=r"unknown section 'cohorts' \(did you mean 'cohort'\?\)"):
        as_profile({"cohorts": {}})
    with pytest.raises(ValueError, match=r"'budget' is a section; expected a mapping"):
        as_profile({"budget": 3})


def test_profile_is_frozen_and_reads_as_a_copy():
    cfg = get_profile("smoke")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]
    section = cfg["cohort"]
    section["n_pairs"] = 1
    assert cfg.cohort.n_pairs == cfg["cohort"]["n_pairs"] != 1
    assert cfg["profile"] == "smoke" and dict(cfg)["seed"] == cfg.seed


def test_replace_sections_changes_only_the_named_keys():
    cfg = get_profile("ci")
    other = cfg.replace_sections(seed=9, cohort={"n_pairs": 100})
    assert other.seed == 9 and other.dp.training.seed == 9 and other.cohort.n_pairs == 100
    assert other.cohort.image_noise == cfg.cohort.image_noise and other.audit == cfg.audit
    assert cfg.seed == 0 and cfg.cohort.n_pairs == 4000


def test_section_helpers():
    assert (
        FeaturesConfig(batch_size=32).rows_per_chunk == 256
        and FeaturesConfig(batch_size=32, chunk_size=64).rows_per_chunk == 64
    )
    assert AuditConfig(pool_sizes=(10, None, 100)).finite_pool_sizes == (10, 100)
    spec = FrontierConfig(scaling_sizes=(500, 2000), scaling_factors=(1.5, 3.0))
    assert spec.scaling_sizes_above(1000) == [1500, 2000, 3000]
    assert CohortConfig(source="real").simulation is False and CohortConfig().simulation is True
    assert LadderConfig(overrides={"captions": {"epochs": 1}}).overrides["captions"]["epochs"] == 1
    assert BudgetConfig().epsilons[-1] is None  # the non-private reference point of the sweep
