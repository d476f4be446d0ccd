"""Issue 27, fault classes 4 and 6.

4. A chapter is skipped as cached only while its input data are unchanged: the chapter-skip key
   (``pipeline.execute.notebook_hash``) holds the cohort cache's own fingerprint of the data roots
   (sizes and modification times of every file, by ``stat``), and is stable for the synthetic cohort.
6. Every bound the library enforces later is enforced first by the config, and the error names the key
   (``params['audit']['ks'][2]`` and the dotted ``audit.ks[2]``) and what is expected.
"""

from __future__ import annotations

import ast
import builtins
import io
import os
import re
import textwrap
from pathlib import Path

import pytest

import relink_lib.pipeline.execute as execute
from relink_lib.cohorts.chexpert_plus import CSV_NAME, LABEL_DIR
from relink_lib.cohorts.mimic import LABEL_CSV, META_CSV, REPORTS_DIR, SPLIT_CSV
from relink_lib.config import (
    LADDER_PATCH_SIZE,
    LADDER_RUNGS,
    MAX_SEED,
    MIN_SYNTHETIC_IMAGE_SIZE,
    PROFILE_NAMES,
    Profile,
)
from relink_lib.profiles import get_profile, validate_overrides

DATA_ENV = ("MIMIC_CXR_ROOT", "CHEXPERT_PLUS_ROOT", "MODELS")


# ---------------------------------------------------------------- class 4: the chapter-skip key covers the data
@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The data roots come from the overrides only, whatever the shell running the tests holds."""
    for var in DATA_ENV:
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def library(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fixed library version (the real one hashes relink_lib's source, which other work may be editing)."""
    monkeypatch.setattr(execute, "library_version", lambda: "v1")


def mimic_tree(root: Path) -> Path:
    """A tiny MIMIC-CXR-JPG layout: the three tables, one report and two images (only names and sizes matter)."""
    for name in (SPLIT_CSV, LABEL_CSV, META_CSV):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("dicom_id,study_id,subject_id\n")
    report = root / REPORTS_DIR / "files" / "p10" / "p10000001" / "s50000001.txt"
    report.parent.mkdir(parents=True)
    report.write_text("FINDINGS: clear.\n")
    study = root / "files" / "p10" / "p10000001" / "s50000001"
    study.mkdir(parents=True)
    (study / "a.jpg").write_bytes(b"\xff\xd8" + b"a" * 64)
    (study / "b.jpg").write_bytes(b"\xff\xd8" + b"b" * 64)
    return root


def chexpert_tree(root: Path) -> Path:
    (root / LABEL_DIR).mkdir(parents=True)
    (root / CSV_NAME).write_text("path_to_image,report\n")
    (root / LABEL_DIR / "report_fixed.json").write_text("{}\n")
    (root / "train" / "patient00001" / "study1").mkdir(parents=True)
    (root / "train" / "patient00001" / "study1" / "view1_frontal.jpg").write_bytes(b"\xff\xd8" + b"c" * 64)
    return root


def real_overrides(mimic: Path, chexpert: Path | None = None) -> dict:
    return {
        "cohort": {"source": "real", "image_size": 32},
        "data": {"mimic_cxr_root": str(mimic), "chexpert_plus_root": None if chexpert is None else str(chexpert)},
    }


def chapter_key(source: Path, profile: str, overrides: dict) -> str:
    return execute.notebook_hash(source, {"profile": profile, "overrides": overrides})


@pytest.fixture
def chapter(tmp_path: Path) -> Path:
    source = tmp_path / "ch.py"
    source.write_text('# %% tags=["parameters"]\nprofile = "default"\noverrides = {}\n\n# %%\nprint(profile)\n')
    return source


def test_chapter_key_changes_when_a_data_file_is_added_removed_or_rewritten(tmp_path, chapter, library):
    root = mimic_tree(tmp_path / "mimic")
    over = real_overrides(root)
    first = chapter_key(chapter, "smoke", over)
    assert chapter_key(chapter, "smoke", over) == first  # an unchanged tree gives the same key

    image = root / "files" / "p10" / "p10000001" / "s50000001" / "c.jpg"
    image.write_bytes(b"\xff\xd8new")
    added = chapter_key(chapter, "smoke", over)
    assert added != first
    image.unlink()
    assert chapter_key(chapter, "smoke", over) == first  # the same files as before: the same key again

    (root / "files" / "p10" / "p10000001" / "s50000001" / "b.jpg").unlink()
    removed = chapter_key(chapter, "smoke", over)
    assert removed not in (first, added)

    # repaired in place: new bytes of the same size, written later (a touch with new content)
    repaired = root / "files" / "p10" / "p10000001" / "s50000001" / "a.jpg"
    before = repaired.stat()
    repaired.write_bytes(b"\xff\xd8" + b"z" * 64)
    os.utime(repaired, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert repaired.stat().st_size == before.st_size
    touched = chapter_key(chapter, "smoke", over)
    assert touched not in (first, added, removed)

    (root / REPORTS_DIR / "files" / "p10" / "p10000001" / "s50000001.txt").write_text("FINDINGS: a new effusion.\n")
    report_edit = chapter_key(chapter, "smoke", over)
    assert report_edit != touched
    (root / LABEL_CSV).write_text("dicom_id,study_id,subject_id\n1,2,3\n")  # a table repaired
    assert chapter_key(chapter, "smoke", over) != report_edit


def test_a_missing_root_is_part_of_the_key_and_its_arrival_changes_it(tmp_path, chapter, library):
    mimic = mimic_tree(tmp_path / "mimic")
    chexpert = tmp_path / "chexpert"
    over = real_overrides(mimic, chexpert)
    data = execute.data_fingerprint(get_profile("smoke", over))
    assert data["external"].startswith("missing:") and not data["internal"].startswith("missing:")
    absent = chapter_key(chapter, "smoke", over)
    assert chapter_key(chapter, "smoke", over) == absent
    chexpert_tree(chexpert)
    present = chapter_key(chapter, "smoke", over)
    assert present != absent
    (chexpert / "train" / "patient00001" / "study1" / "view2_lateral.jpg").write_bytes(b"\xff\xd8")
    assert chapter_key(chapter, "smoke", over) != present


def test_synthetic_key_is_stable_and_ignores_files(tmp_path, chapter, library):
    first = execute.data_fingerprint(get_profile("smoke"))
    assert first == execute.data_fingerprint(get_profile("smoke"))
    assert not any(v.startswith("missing:") for v in first.values())
    key = chapter_key(chapter, "smoke", {})
    assert chapter_key(chapter, "smoke", {}) == key
    # a synthetic run reads no data root: files under one named in the profile do not move its key
    root = mimic_tree(tmp_path / "mimic")
    named = {"data": {"mimic_cxr_root": str(root)}}
    before = chapter_key(chapter, "smoke", named)
    (root / "files" / "extra.jpg").write_bytes(b"\xff\xd8")
    assert chapter_key(chapter, "smoke", named) == before
    # the cohort's own parameters do
    assert execute.data_fingerprint(get_profile("smoke", {"cohort": {"n_pairs": 301}})) != first


def test_fingerprint_stats_files_and_reads_none(tmp_path, monkeypatch):
    root = mimic_tree(tmp_path / "mimic")
    profile = get_profile("smoke", real_overrides(root))
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file).resolve().is_relative_to(root.resolve()):
            raise AssertionError(f"the fingerprint read {file}")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    data = execute.data_fingerprint(profile)
    assert not data["internal"].startswith("missing:")


def test_the_book_takes_the_data_fingerprint_once(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(execute, "data_fingerprint", lambda profile: calls.append(profile.name) or {"internal": "x"})
    seen = []

    def fake_run(nb, profile, **kwargs):
        seen.append(kwargs["data"])
        return execute.NotebookRun(nb.stem, "cached", 0.0, tmp_path / f"{nb.stem}.ipynb")

    monkeypatch.setattr(execute, "execute_notebook", fake_run)
    notebooks = [tmp_path / f"{name}.py" for name in ("01_a", "02_b", "00_summary")]
    (tmp_path / "out").mkdir()
    execute.execute_book(notebooks, "smoke", out_dir=tmp_path / "out")
    assert calls == ["smoke"] and seen == [{"internal": "x"}] * 3


NOTEBOOK = textwrap.dedent("""\
    # %% tags=["parameters"]
    profile = "default"
    overrides = {}

    # %%
    print(f"profile={profile}")
    """)


def test_a_data_change_re_executes_a_cached_chapter(tmp_path, library):
    """End to end: papermill runs the chapter, the unchanged tree skips it, a repaired file runs it again."""
    source = tmp_path / "ch.py"
    source.write_text(NOTEBOOK)
    root = mimic_tree(tmp_path / "mimic")
    over = real_overrides(root)
    out = tmp_path / "out"
    assert execute.execute_notebook(source, "smoke", out_dir=out, overrides=over, progress=False).status == "executed"
    assert execute.execute_notebook(source, "smoke", out_dir=out, overrides=over, progress=False).status == "cached"
    (root / "files" / "p10" / "p10000001" / "s50000001" / "c.jpg").write_bytes(b"\xff\xd8new")
    assert execute.execute_notebook(source, "smoke", out_dir=out, overrides=over, progress=False).status == "executed"
    assert execute.execute_notebook(source, "smoke", out_dir=out, overrides=over, progress=False).status == "cached"


# ---------------------------------------------------------------- class 6: the config checks what the code needs
def _dry_run_overrides() -> dict:
    """``pipeline.dryrun.DRY_RUN_OVERRIDES``, read from the source (importing it loads torch and the models)."""
    path = Path(execute.__file__).with_name("dryrun.py")
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") == "DRY_RUN_OVERRIDES":
            assert node.value is not None
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path}: no DRY_RUN_OVERRIDES")


def test_every_known_profile_validates():
    for name in PROFILE_NAMES:
        profile = get_profile(name)
        assert profile.name == name
        assert Profile.from_params(profile.to_params()) == profile  # its wire form validates too
    validate_overrides("paper", _dry_run_overrides())  # the paper dry run's overrides


def test_config_constants_match_the_library():
    """The config cannot import the model code (it sits at the bottom of the import graph), so the facts it
    repeats are pinned here."""
    from relink_lib.cohorts import make_synthetic_cohort
    from relink_lib.models.ladder import RUNG_SPECS

    assert set(LADDER_RUNGS) == set(RUNG_SPECS)
    assert all(spec.patch_size == LADDER_PATCH_SIZE for spec in RUNG_SPECS.values())
    with pytest.raises(ValueError, match="image_size"):
        make_synthetic_cohort(2, image_size=MIN_SYNTHETIC_IMAGE_SIZE - 1)


def _key_pattern(key: str) -> str:
    """Both spellings of a key in the error: ``params['audit']['ks'][2]`` and ``audit.ks[2]``."""
    parts = re.findall(r"[^.\[\]]+|\[[^\]]+\]", key)
    section = [p for p in parts if not p.startswith("[")]
    subs = [p for p in parts if p.startswith("[")]
    nested = "".join(f"[{p!r}]" for p in section) + "".join(subs)
    return re.escape(f"params{nested}") + r"=.*: expected .*" + re.escape(f"(key {key})")


BAD: list[tuple[dict, str, str]] = [
    # (overrides of the smoke profile, the key the error must name, words of what is expected)
    ({"audit": {"ks": [1, 5, 10.0]}}, "audit.ks[2]", "a positive integer"),
    ({"audit": {"ks": [1, True]}}, "audit.ks[1]", "a positive integer"),
    ({"audit": {"ks": [0]}}, "audit.ks[0]", "a positive integer"),
    ({"audit": {"ks": 5}}, "audit.ks", "a list of positive integers"),
    ({"audit": {"pool_sizes": [10, 100.0, None]}}, "audit.pool_sizes[1]", "an integer pool size >= 2"),
    ({"audit": {"pool_sizes": [10, 1]}}, "audit.pool_sizes[1]", "an integer pool size >= 2"),
    ({"audit": {"pool_sizes": [False]}}, "audit.pool_sizes[0]", "an integer pool size >= 2"),
    ({"audit": {"n_boot": 20.0}}, "audit.n_boot", "an integer >= 0"),
    ({"audit": {"chunk_size": True}}, "audit.chunk_size", "a positive integer"),
    ({"audit": {"risk_pool_size": 1}}, "audit.risk_pool_size", "an integer >= 2"),
    ({"audit": {"nan_as": 0.5}}, "audit.nan_as", "0, 1 or -1"),
    ({"audit": {"uncertain_as": True}}, "audit.uncertain_as", "0, 1 or -1"),
    ({"audit": {"device": "gpu"}}, "audit.device", "'auto', 'cpu', 'cuda'"),
    ({"cohort": {"image_size": 8}}, "cohort.image_size", f"an integer >= {MIN_SYNTHETIC_IMAGE_SIZE}"),
    ({"cohort": {"image_size": None}}, "cohort.image_size", f"an integer >= {MIN_SYNTHETIC_IMAGE_SIZE}"),
    ({"cohort": {"image_size": 32.0}}, "cohort.image_size", "an integer"),
    ({"cohort": {"n_pairs": 300.0}}, "cohort.n_pairs", "a positive integer"),
    ({"cohort": {"n_pairs": 10**9}}, "cohort.n_pairs", "at most"),
    ({"cohort": {"n_pairs_external": -1}}, "cohort.n_pairs_external", "a positive integer"),
    ({"cohort": {"report_detail": 1.5}}, "cohort.report_detail", "[0, 1]"),
    ({"cohort": {"split_fractions": [0.5, 0.5]}}, "cohort.split_fractions", "three fractions"),
    ({"cohort": {"split_fractions": [1.0, 0.0, 0.0]}}, "cohort.split_fractions[1]", "a val fraction > 0"),
    ({"cohort": {"split_fractions": [0.9, 0.1, 0.0]}}, "cohort.split_fractions[2]", "a test fraction > 0"),
    ({"cohort": {"split_fractions": [0.0, 0.5, 0.5]}}, "cohort.split_fractions[0]", "a train fraction > 0"),
    ({"ladder": {"image_size": 40}}, "ladder.image_size", "a multiple of rung 'captions'"),
    ({"ladder": {"image_size": 8}}, "ladder.image_size", "a multiple of"),
    ({"ladder": {"image_size": 64.0}}, "ladder.image_size", "an integer >= 8"),
    ({"ladder": {"rungs": ["captions", "captions"]}}, "ladder.rungs", "distinct rung names"),
    ({"ladder": {"overrides": {"captions": {"patch_size": 0}}}}, "ladder.overrides['captions']['patch_size']", ""),
    ({"ladder": {"overrides": {"captions": {"patch_size": 12}}}}, "ladder.image_size", "patch_size=12"),
    ({"ladder": {"epochs_scale": 0}}, "ladder.epochs_scale", "> 0"),
    ({"ladder": {"threads": 0}}, "ladder.threads", "a positive integer"),
    ({"features": {"device": "gpu"}}, "features.device", "'cpu', 'cuda'"),
    ({"features": {"device": "auto"}}, "features.device", "'cpu', 'cuda'"),
    ({"features": {"batch_size": 64.0}}, "features.batch_size", "a positive integer"),
    ({"features": {"chunk_size": 100}}, "features.chunk_size", "a multiple of batch_size"),
    ({"dp": {"batch_size": 64.5}}, "dp.batch_size", "a positive integer"),
    ({"dp": {"batch_size": 64.0}}, "dp.batch_size", "a positive integer"),
    ({"dp": {"delta": 1.0}}, "dp.delta", "(0, 1)"),
    ({"dp": {"delta": 0}}, "dp.delta", "(0, 1)"),
    ({"dp": {"target_epsilon": 0}}, "dp.target_epsilon", "> 0"),
    ({"dp": {"target_epsilon": float("inf")}}, "dp.target_epsilon", "finite"),
    ({"dp": {"max_grad_norm": -1}}, "dp.max_grad_norm", "> 0"),
    ({"dp": {"noise_multiplier": -0.5}}, "dp.noise_multiplier", ">= 0"),
    ({"dp": {"bank_size": 0}}, "dp.bank_size", "a positive integer"),
    ({"dp": {"budget_sweep": {"epochs": 0}}}, "dp.budget_sweep.epochs", "> 0"),
    ({"dp": {"frontier": {"lrs": {"sgd": 0.1}}}}, "dp.frontier.lrs['sgd']", "a list of learning rates"),
    ({"dp": {"frontier": {"lrs": {"sgd": [0.1, -1]}}}}, "dp.frontier.lrs['sgd'][1]", "learning rate > 0"),
    ({"dp": {"frontier": {"lrs": {"adamw": [1e-3]}}}}, "dp.frontier.lrs", "optimizer names"),
    ({"dp": {"frontier": {"inits": ["pretrained", "random"]}}}, "dp.frontier.inits[1]", "names from"),
    ({"dp": {"frontier": {"epochs": [1, 0]}}}, "dp.frontier.epochs[1]", "a finite value > 0"),
    ({"dp": {"frontier": {"n_seeds": 1.0}}}, "dp.frontier.n_seeds", "a positive integer"),
    ({"dp": {"frontier": {"scaling_sizes": 5000}}}, "dp.frontier.scaling_sizes", "a list of positive integers"),
    ({"dp": {"frontier": {"scaling_sizes": [1000.0]}}}, "dp.frontier.scaling_sizes[0]", "a positive integer"),
    ({"dp": {"frontier": {"scaling_sizes": [10**9]}}}, "dp.frontier.scaling_sizes[0]", "at most"),
    ({"dp": {"frontier": {"scaling_factors": [2.0, 0]}}}, "dp.frontier.scaling_factors[1]", "> 0"),
    ({"dp": {"frontier": {"op_scales": [0.1, float("nan")]}}}, "dp.frontier.op_scales[1]", "noise scale > 0"),
    ({"dp": {"frontier": {"split_seed": -1}}}, "dp.frontier.split_seed", "an integer seed"),
    ({"dp": {"frontier": {"reference_pool_size": 1}}}, "dp.frontier.reference_pool_size", "an integer >= 2"),
    ({"dp": {"confirmation": {"ks": [1, 2.5]}}}, "dp.confirmation.ks[1]", "a positive integer"),
    ({"dp": {"confirmation": {"pool_sizes": [10, 1]}}}, "dp.confirmation.pool_sizes[1]", "pool size >= 2"),
    ({"dp": {"confirmation": {"n_pairs": 10**9}}}, "dp.confirmation.n_pairs", "at most"),
    ({"dp": {"factorial": {"epsilons": [0.34, -1]}}}, "dp.factorial.epsilons[1]", "epsilon > 0"),
    ({"dp": {"factorial": {"curve_epochs": [0.5, 0]}}}, "dp.factorial.curve_epochs[1]", "> 0"),
    ({"dp": {"factorial": {"retrieval_pairs": 10}}}, "dp.factorial.retrieval_pairs", "an integer >= 11"),
    ({"budget": {"epsilons": [0.34, 0]}}, "budget.epsilons[1]", "epsilon > 0 or None"),
    ({"budget": {"epsilons": []}}, "budget.epsilons", "a list of values > 0"),
    ({"budget": {"attack_cos_threshold": 0}}, "budget.attack_cos_threshold", "(0, 1]"),
    ({"budget": {"attack_candidates": 1}}, "budget.attack_candidates", "an integer >= 2"),
    ({"budget": {"n_seeds": 2.0}}, "budget.n_seeds", "a positive integer"),
    ({"budget": {"pld_discretization": 0}}, "budget.pld_discretization", "> 0"),
    ({"adaptive": {"m_values": [0, 10.5]}}, "adaptive.m_values[1]", "an integer >= 0 or None"),
    ({"adaptive": {"m_values": [0, -1]}}, "adaptive.m_values[1]", "an integer >= 0 or None"),
    ({"adaptive": {"public_pool_min": 10**9}}, "adaptive.public_pool_min", "at most"),
    ({"adaptive": {"attack_batch_size": 0}}, "adaptive.attack_batch_size", "a positive integer"),
    ({"adaptive": {"n_boot": 0}}, "adaptive.n_boot", "a positive integer or None"),
    ({"utility": {"probe_C": 0}}, "utility.probe_C", "> 0"),
]


@pytest.mark.parametrize(("overrides", "key", "expected"), BAD, ids=[key for _, key, _ in BAD])
def test_bad_value_is_refused_naming_the_key(overrides, key, expected):
    with pytest.raises(ValueError) as err:
        get_profile("smoke", overrides)
    message = str(err.value)
    assert re.search(_key_pattern(key), message), message
    assert expected in message, message
    with pytest.raises(ValueError, match=r"^overrides: "):  # the CLI's check, before any kernel starts
        validate_overrides("smoke", overrides)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"seed": -1}, r"params\['seed'\]=-1: expected an integer >= 0"),
        ({"seed": MAX_SEED + 1}, rf"params\['seed'\]={MAX_SEED + 1}: expected an integer >= 0 \(at most {MAX_SEED}\)"),
        ({"seed": 3.0}, r"params\['seed'\]=3.0: expected an integer"),
        (
            {"ladder": {"rungs": ["captions", "gpt"]}},
            r"params\['ladder'\]\['rungs'\]: unknown rung 'gpt'.*ladder.rungs\[1\]",
        ),
        (
            {"ladder": {"overrides": {"full-report": {"epochs": 2.0}}}},
            r"params\['ladder'\]\['overrides'\]: unknown rung",
        ),
        (
            {"budget": {"attack_candidates": 301}},
            r"params\['budget'\]\['attack_candidates'\]=301: expected at most cohort.n_pairs=300",
        ),
    ],
)
def test_profile_level_checks_name_the_key(overrides, match):
    with pytest.raises(ValueError, match=match):
        get_profile("smoke", overrides)


def test_good_values_near_the_bounds_are_kept():
    """The checks refuse what fails later, not what works: every value below runs."""
    p = get_profile(
        "smoke",
        {
            "seed": MAX_SEED,
            "cohort": {"image_size": MIN_SYNTHETIC_IMAGE_SIZE},
            "ladder": {"image_size": 16, "overrides": {"captions": {"patch_size": 4}}},
            "audit": {"ks": [1], "pool_sizes": [2, None], "nan_as": -1, "uncertain_as": 1.0},
            "features": {"device": "cuda:0"},
            "budget": {"attack_cos_threshold": 1.0, "attack_candidates": 300},
            "dp": {"frontier": {"scaling_sizes": [], "lrs": {"sgd": [0.1]}}, "factorial": {"epsilons": []}},
        },
    )
    assert p.cohort.image_size == MIN_SYNTHETIC_IMAGE_SIZE and p.ladder.patch_size("captions") == 4
    assert get_profile("smoke", {"features": {"device": None}}).features.device is None
    # a real cohort is loaded at any size >= 8 (or as stored) and keeps its own splits
    real = get_profile("smoke", {"cohort": {"source": "real", "image_size": None, "split_fractions": [1.0, 0, 0]}})
    assert real.cohort.image_size is None
    # the stages' own single-split draws (chapter 6's confirmation cohort, the scaling pool) stay valid
    single = get_profile("smoke").replace_sections(cohort={"split_fractions": (1.0, 0.0, 0.0), "roundtrip": False})
    assert single.cohort.split_fractions == (1.0, 0.0, 0.0)
