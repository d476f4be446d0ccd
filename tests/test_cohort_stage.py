"""Pipeline stage get_cohort: cached synthetic cohorts via the real loaders, real-data checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import relink_lib.cohorts.stage as stage
from relink_lib.cohorts import export, make_synthetic_cohort
from relink_lib.profiles import get_profile


@pytest.fixture
def params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("RELINK_CACHE", str(tmp_path / "cache"))
    return get_profile("smoke", {"cohort": {"n_pairs": 120, "n_pairs_external": 50, "image_size": 32}})


def test_synthetic_internal_and_external_cached(params: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    internal = stage.get_cohort(params)
    direct = make_synthetic_cohort(120, image_size=32, seed=params["seed"])
    assert len(internal) == 120 and internal.public and internal.summary["roundtrip"] == "mimic-cxr-jpg"
    assert internal.pairs["text"].tolist() == direct.pairs["text"].tolist()
    np.testing.assert_array_equal(internal.label_matrix(), direct.label_matrix())
    assert internal.pairs["mentions_device"].dtype == bool and internal.pairs["mentions_device"].equals(
        direct.pairs["mentions_device"]
    )
    assert np.abs(internal.load_images() - direct.load_images()).mean() < 2.5 / 255
    assert internal.root is not None and (internal.root / internal.pairs["image_path"].iloc[0]).is_file()
    external = stage.get_cohort(params, "external")
    assert (
        len(external) == 50
        and set(external.pairs["site"]) == {"external"}
        and external.summary["roundtrip"] == "chexpert-plus"
    )
    assert set(external.pairs["split"]) <= {"train", "val"}
    # cached: a second call must not generate again
    monkeypatch.setattr(
        stage, "make_synthetic_cohort", lambda *a, **k: (_ for _ in ()).throw(AssertionError("rebuilt"))
    )
    again = stage.get_cohort(params)
    assert again.summary["cache_key"] == internal.summary["cache_key"]
    np.testing.assert_array_equal(again.load_images([0, 1]), internal.load_images([0, 1]))
    # a changed parameter is a different cache entry
    other = dict(params, seed=1)
    assert stage.cohort_key(other) != stage.cohort_key(params)
    with pytest.raises(ValueError, match="site='mars'"):
        stage.get_cohort(params, "mars")


def test_real_source_checks_roots_first(params: dict, tmp_path: Path) -> None:
    real = dict(
        params, cohort=dict(params["cohort"], source="real"), data={"mimic_cxr_root": None, "chexpert_plus_root": None}
    )
    with pytest.raises(FileNotFoundError, match="mimic_cxr_root"):
        stage.get_cohort(real)
    with pytest.raises(FileNotFoundError, match="chexpert_plus_root"):
        stage.get_cohort(real, "external")
    root = export(make_synthetic_cohort(40, image_size=32, seed=2), tmp_path / "mimic")
    real["data"] = {"mimic_cxr_root": str(root), "chexpert_plus_root": str(tmp_path)}
    cohort = stage.get_cohort(real)
    assert not cohort.public and len(cohort) == 40 and cohort.load_images([0]).shape == (1, 32, 32)
    (root / "mimic-cxr-reports").rename(root / "elsewhere")
    with pytest.raises(FileNotFoundError, match="mimic-cxr-reports"):
        stage.get_cohort(real)
    with pytest.raises(FileNotFoundError, match="df_chexpert_plus_240401.csv"):
        stage.get_cohort(real, "external")
