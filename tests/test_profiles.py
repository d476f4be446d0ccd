import re

import pytest

from relink_lib.profiles import PROFILE_NAMES, cache_dir, get_profile, results_dir


def test_every_profile_resolves_with_all_sections():
    sections = set(get_profile("default"))
    for name in PROFILE_NAMES:
        params = get_profile(name)
        assert params["profile"] == name
        assert set(params) == sections


def test_smaller_profiles_are_smaller():
    sizes = [get_profile(n)["cohort"]["n_pairs"] for n in ("smoke", "ci", "default")]
    assert sizes == sorted(sizes) and len(set(sizes)) == 3


def test_overrides_deep_merge_and_do_not_leak():
    params = get_profile("ci", {"audit": {"n_boot": 7}})
    assert params["audit"]["n_boot"] == 7
    assert params["audit"]["ks"] == get_profile("ci")["audit"]["ks"]
    assert get_profile("ci")["audit"]["n_boot"] != 7


def test_unknown_profile_and_section_are_named():
    with pytest.raises(ValueError, match="profile='nope'"):
        get_profile("nope")
    with pytest.raises(ValueError, match="unknown section"):
        get_profile("ci", {"audt": {}})


def test_paper_roots_from_environment(monkeypatch):
    monkeypatch.setenv("MIMIC_CXR_ROOT", "/data/mimic")
    assert get_profile("paper")["data"]["mimic_cxr_root"] == "/data/mimic"
    assert get_profile("paper")["cohort"]["source"] == "real"


def test_output_dirs_follow_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RELINK_RESULTS", str(tmp_path / "r"))
    monkeypatch.setenv("RELINK_CACHE", str(tmp_path / "c"))
    assert results_dir("ci") == tmp_path / "r" / "ci"
    assert cache_dir("ci") == tmp_path / "c" / "ci"


def test_overrides_are_validated_at_every_depth():
    from relink_lib.profiles import validate_overrides

    validate_overrides(
        "ci",
        {
            "audit": {"n_boot": 7},
            "dp": {"engine": "fast", "target_epsilon": 8.0},
            "features": {"device": "cpu"},
            "ladder": {"overrides": {"captions": {"epochs": 1}}},
        },
    )
    with pytest.raises(ValueError, match=r"unknown key 'dp.target_eps' \(did you mean 'target_epsilon'\?\)"):
        validate_overrides("ci", {"dp": {"target_eps": 8}})
    with pytest.raises(ValueError, match="unknown key 'audt'"):
        validate_overrides("ci", {"audt": {}})
    with pytest.raises(ValueError, match="'cohort' is a section"):
        validate_overrides("ci", {"cohort": 5})
    with pytest.raises(ValueError, match="'seed' holds a int"):
        validate_overrides("ci", {"seed": {"x": 1}})


def test_budget_sweep_overrides_are_validated_and_old_flat_keys_say_where_they_moved():
    from relink_lib.profiles import validate_overrides

    validate_overrides("ci", {"dp": {"budget_sweep": {"lr": 0.01, "optimizer": "sgd", "epochs": 2}}})
    assert get_profile("ci", {"dp": {"budget_sweep": {"lr": 0.01}}}).dp.budget_sweep_training.lr == 0.01
    with pytest.raises(ValueError, match=r"unknown key 'dp.epochs' \(moved to 'dp.budget_sweep.epochs'"):
        validate_overrides("ci", {"dp": {"epochs": 2}})
    with pytest.raises(ValueError, match=r"unknown key 'dp.budget_sweep.lrs' \(did you mean 'lr'\?\)"):
        validate_overrides("ci", {"dp": {"budget_sweep": {"lrs": 0.01}}})
    with pytest.raises(ValueError, match=r"overrides: params\['dp'\]\['budget_sweep'\]\['epochs'\]=0: expected"):
        validate_overrides("ci", {"dp": {"budget_sweep": {"epochs": 0}}})


def test_cli_refuses_a_bad_override_before_any_kernel_starts(tmp_path, monkeypatch):
    import relink_lib.pipeline.execute as execute
    from relink_lib.cli import main

    def no_kernel(*args, **kwargs):
        raise AssertionError("a kernel was started")

    monkeypatch.setattr(execute, "execute_notebook", no_kernel)
    monkeypatch.setattr(execute, "execute_book", no_kernel)
    with pytest.raises(SystemExit, match=r"--overrides: unknown key 'dp.target_eps'"):
        main(["run", "notebooks/06_mitigation.py", "--profile", "smoke", "--overrides", '{"dp": {"target_eps": 8}}'])
    with pytest.raises(SystemExit, match=r"--overrides: unknown key 'audit.nboot'"):
        main(["book", "--profile", "ci", "--overrides", '{"audit": {"nboot": 8}}'])


def test_banner_says_when_a_synthetic_run_is_smaller_than_default():
    from relink_lib.display import provenance_banner, run_size_note

    ci, default = get_profile("ci"), get_profile("default")
    note = run_size_note(ci)
    assert f"{ci['cohort']['n_pairs']:,} against {default['cohort']['n_pairs']:,} synthetic pairs" in note
    banner = provenance_banner(ci).data
    assert 'class="admonition-title">Simulation</p>' in banner and "relink-simulation" in banner
    assert re.sub(r"`([^`]+)`", r"<code>\1</code>", note) in banner  # Markdown code spans as HTML
    assert run_size_note(default) == "" and run_size_note(get_profile("paper")) == ""


def test_paper_profile_asks_for_no_synthetic_scaling_pool():
    frontier = get_profile("paper")["dp"]["frontier"]
    assert frontier["scaling_sizes"] == () and frontier["scaling_factors"] == ()


def test_the_paper_dry_run_overrides_are_valid_overrides():
    from relink_lib.pipeline.dryrun import DRY_RUN_OVERRIDES
    from relink_lib.profiles import validate_overrides

    validate_overrides("paper", DRY_RUN_OVERRIDES)
