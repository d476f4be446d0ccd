"""The typed profile config: one frozen, validated dataclass per section, defaults in one place."""

from __future__ import annotations

import dataclasses
import json

import pytest

from relink_lib.config import (
    DEFAULT_KS,
    DEFAULT_POOL_SIZES,
    OPTIMIZERS,
    SECTIONS,
    AuditConfig,
    BudgetConfig,
    BudgetSweepConfig,
    CohortConfig,
    DPSectionConfig,
    FeaturesConfig,
    FrontierConfig,
    LadderConfig,
    Profile,
    as_profile,
)
from relink_lib.config import DPConfig as ConfigDPConfig
from relink_lib.dp import DPConfig
from relink_lib.dp.config import DPConfig as DPConfigOfDP
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
    assert cfg.dp.budget_sweep_training == DPConfig(seed=0) and cfg.dp.bank_size == DPSectionConfig().bank_size


def test_dp_config_has_one_home_and_the_dp_package_re_exports_it():
    assert DPConfig is ConfigDPConfig is DPConfigOfDP
    assert OPTIMIZERS == ("adam", "sgd") and set(FrontierConfig().optimizers) <= set(OPTIMIZERS)
    assert AuditConfig().pool_sizes == DEFAULT_POOL_SIZES == (10, 100, 1000, 10000, None)
    assert AuditConfig().ks == DEFAULT_KS == (1, 5, 10)


def test_dp_section_shared_keys_are_flat_and_the_budget_sweep_has_its_own_run_knobs():
    cfg = as_profile(
        {
            "seed": 5,
            "dp": {
                "target_epsilon": 8.0,
                "bank_size": 64,
                "budget_sweep": {"lr": 0.01, "optimizer": "sgd"},
                "frontier": {"n_seeds": 2},
            },
        }
    )
    assert cfg.dp.budget_sweep == BudgetSweepConfig(optimizer="sgd", lr=0.01)
    assert cfg.dp.budget_sweep_training == DPConfig(target_epsilon=8.0, lr=0.01, optimizer="sgd", seed=5)
    assert cfg.dp.training_config(optimizer="adam", lr=0.3, epochs=2) == DPConfig(
        target_epsilon=8.0, lr=0.3, optimizer="adam", epochs=2, seed=5
    )
    assert cfg.dp.bank_size == 64 and cfg.dp.frontier.n_seeds == 2
    flat = cfg["dp"]
    assert flat["target_epsilon"] == 8.0 and flat["budget_sweep"]["lr"] == 0.01 and flat["frontier"]["n_seeds"] == 2
    assert "seed" not in flat and not {"lr", "optimizer", "epochs"} & set(flat)
    with pytest.raises(ValueError, match=r"unknown key 'dp.seed'"):
        as_profile({"dp": {"seed": 3}})
    with pytest.raises(ValueError, match=r"unknown key 'dp.lr' \(moved to 'dp.budget_sweep.lr'"):
        as_profile({"dp": {"lr": 0.01}})  # the per-run knobs live in the studies' sub-sections
    with pytest.raises(ValueError, match=r"unknown key 'dp.budget_sweep.learning_rate'"):
        as_profile({"dp": {"budget_sweep": {"learning_rate": 0.01}}})
    with pytest.raises(ValueError, match=r"unknown key 'dp.budget_sweep.epoch' \(did you mean 'epochs'\?\)"):
        as_profile({"dp": {"budget_sweep": {"epoch": 2}}})


def test_the_section_defaults_are_dp_configs_defaults():
    """No number changes: the shared keys and the budget sweep's knobs default to DPConfig's values."""
    section, default = DPSectionConfig(), DPConfig()
    assert section.budget_sweep_training == default
    assert (default.optimizer, default.lr, default.epochs) == ("adam", 1e-3, 5)
    assert {p: get_profile(p).dp.budget_sweep.epochs for p in PROFILE_NAMES} == {
        "smoke": 1,
        "ci": 3,
        "default": 5,
        "paper": 5,
    }


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
        ({"dp": {"delta": 2.0}}, r"params\['dp'\]\['delta'\]=2.0: expected a value in \(0, 1\)"),
        ({"dp": {"engine": "gpu"}}, r"params\['dp'\]\['engine'\]='gpu': expected one of"),
        (
            {"dp": {"budget_sweep": {"lr": 0}}},
            r"params\['dp'\]\['budget_sweep'\]\['lr'\]=0: expected a finite value > 0",
        ),
        (
            {"dp": {"budget_sweep": {"optimizer": "rmsprop"}}},
            r"params\['dp'\]\['budget_sweep'\]\['optimizer'\]='rmsprop': expected one of \('adam', 'sgd'\)",
        ),
        (
            {"dp": {"frontier": {"optimizers": ("sgd", "lbfgs")}}},
            r"params\['dp'\]\['frontier'\]\['optimizers'\].*names from \('adam', 'sgd'\)",
        ),
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
    assert other.seed == 9 and other.dp.budget_sweep_training.seed == 9 and other.cohort.n_pairs == 100
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
