"""Stage code versions come from the stage's import closure: an indirect dependency's change recomputes the
stage, an unrelated module's change does not (issue: cache keys that cannot go stale)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from relink_lib import cache
from relink_lib.cache import module_closure, stage_code_version

PACKAGE = Path(cache.__file__).resolve().parent


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    """A copy of ``relink_lib``'s sources; returns the directory that holds it."""
    shutil.copytree(PACKAGE, tmp_path / "relink_lib", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def _touch(root: Path, module: str) -> None:
    path = root.joinpath(*module.split(".")).with_suffix(".py")
    path.write_bytes(path.read_bytes() + b"\n# one more byte\n")


def test_closure_follows_relative_absolute_lazy_imports_and_parent_packages(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .leaf import x\n")
    (pkg / "sub" / "leaf.py").write_text("x = 1\n")
    (pkg / "stage.py").write_text("import numpy\nfrom .sub import leaf\n\ndef f():\n    from pkg import lazy\n")
    (pkg / "lazy.py").write_text("from . import deep\n")
    (pkg / "deep.py").write_text("")
    (pkg / "unrelated.py").write_text("from .stage import f\n")
    closure = module_closure("pkg.stage", tmp_path)
    assert sorted(closure) == ["pkg", "pkg.deep", "pkg.lazy", "pkg.stage", "pkg.sub", "pkg.sub.leaf"]
    assert closure["pkg.sub"] == pkg / "sub" / "__init__.py"


def test_indirect_dependency_changes_the_mitigation_code_version(package_copy: Path) -> None:
    before = stage_code_version("relink_lib.dp.stage", package_copy)
    assert "relink_lib.audit.expected" in module_closure("relink_lib.dp.stage", package_copy)
    _touch(package_copy, "relink_lib.audit.expected")
    assert stage_code_version("relink_lib.dp.stage", package_copy) != before


def test_unrelated_module_leaves_the_mitigation_code_version(package_copy: Path) -> None:
    before = {s: stage_code_version(s, package_copy) for s in ("relink_lib.dp.stage", "relink_lib.features")}
    _touch(package_copy, "relink_lib.plots.risk")
    _touch(package_copy, "relink_lib.pipeline.browser")
    assert {s: stage_code_version(s, package_copy) for s in before} == before


def test_the_installed_sources_hash_as_their_copy(package_copy: Path) -> None:
    assert stage_code_version("relink_lib.dp.stage") == stage_code_version("relink_lib.dp.stage", package_copy)


@pytest.mark.slow
def test_mitigation_stage_recomputes_after_an_indirect_change_only(package_copy: Path, monkeypatch) -> None:
    """End to end on the smoke profile: ``mitigate_rung`` hits its cache unless a module it runs changed."""
    from relink_lib.cohorts.stage import get_cohort
    from relink_lib.dp.frontier import Setting
    from relink_lib.dp.stage import mitigate_rung
    from relink_lib.models.stage import get_ladder
    from relink_lib.profiles import cache_dir, get_profile

    params = get_profile("smoke", {"ladder": {"rungs": ("captions",)}})
    cohort = get_cohort(params, site="internal")
    rung = get_ladder(params, progress=False)[-1]
    setting = Setting("pretrained", "sgd", 0.1, 1.0)
    entries = Path(cache_dir(params.name)) / "dp-mitigation"

    def n_entries() -> int:
        return sum(1 for p in entries.iterdir() if cache.is_complete(p))

    monkeypatch.setattr(cache, "CODE_ROOT", package_copy)
    first = mitigate_rung(params, cohort, rung, setting=setting)
    assert n_entries() == 1
    _touch(package_copy, "relink_lib.plots.risk")  # not imported by the stage: a cache hit
    again = mitigate_rung(params, cohort, rung, setting=setting)
    assert n_entries() == 1 and again.path == first.path
    _touch(package_copy, "relink_lib.audit.expected")  # imported only through the audit package: recomputed
    third = mitigate_rung(params, cohort, rung, setting=setting)
    assert n_entries() == 2 and third.path != first.path
