"""Profiles: named sets of run parameters.

A profile is what papermill injects into every chapter notebook: the notebook's
``parameters`` cell holds ``profile = "default"`` (and optional ``overrides``), and
:func:`get_profile` expands the name into the full parameter set used by the
library. Every notebook runs on every profile.

- ``smoke``: unit tests, seconds.
- ``ci``: the whole book on a CPU in a few minutes (the nbval baselines).
- ``default``: the main job on a laptop CPU.
- ``paper``: real cohorts and checkpoints on a GPU (roots given by the user).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Mapping

from .config import PROFILE_NAMES, Profile, check_book_profile, unknown_key_hint

_PROFILE_OVERRIDES: dict[str, dict[str, Any]] = {
    "smoke": {
        "numerics": {"mode": "portable"},
        "cohort": {"n_pairs": 300, "n_pairs_external": 120, "image_size": 32},
        "ladder": {"image_size": 32, "epochs_scale": 0.05},
        "features": {"batch_size": 64},
        "audit": {"pool_sizes": (10, 100, None), "n_boot": 20, "chunk_size": 128},
        "dp": {
            "batch_size": 64,
            "bank_size": 64,
            "budget_sweep": {"epochs": 1},
            "frontier": {
                "lrs": {"sgd": (0.1,), "adam": (1e-2,)},
                "epochs": (1,),
                "scaling_sizes": (),
                "scaling_factors": (2.0, 3.0),
                "op_scales": (0.1, 0.4, 1.6),
                "n_boot": 100,
            },
            "confirmation": {"n_pairs": 300, "pool_sizes": (10, 100)},
            "factorial": {"n_seeds": 2, "n_boot": 100, "curve_epochs": (0.25, 0.5, 1, 2), "curve_n_seeds": 1},
        },
        "budget": {
            "epsilons": (0.34, 8.0, 1e6, 1e15, None),
            "n_seeds": 1,
            "attack_candidates": 10,
            "attack_targets": 20,
        },
        "adaptive": {
            "m_values": (0, 10, 25, None),
            "public_pool_min": 0,
            "m_reference": 25,
            "attack_epochs": 5,
            "attack_batch_size": 16,
        },
    },
    "ci": {
        "numerics": {"mode": "portable"},
        # A smaller run than default that still shows the effect nbval guards (top rung >= 5x chance at N = 100,
        # rungs in rising order): more held-out pairs (30%) for tighter estimates, half the image noise (an
        # easier-to-link cohort than default's), and a longer top rung; measured in docs/models.md.
        "cohort": {
            "n_pairs": 4000,
            "n_pairs_external": 600,
            "image_size": 64,
            "split_fractions": (0.6, 0.1, 0.3),
            "image_noise": 0.5,
        },
        "ladder": {"image_size": 64, "epochs_scale": 1.0, "overrides": {"full-reports": {"epochs": 24.0}}},
        "features": {"batch_size": 128},
        "audit": {"pool_sizes": (10, 100, 1000, None), "n_boot": 50, "chunk_size": 512},
        "dp": {
            "batch_size": 128,
            "bank_size": 256,
            "budget_sweep": {"epochs": 3},
            "frontier": {
                "epochs": (3,),
                "scaling_sizes": (),
                "scaling_factors": (1.5, 2.0),
                "n_boot": 200,
                "op_scales": (0.1, 0.4, 1.6),
                "probe_max_train": 1000,
            },
            "confirmation": {"n_pairs": 2500, "pool_sizes": (10, 100, 1000)},
            "factorial": {"n_seeds": 3, "n_boot": 200, "curve_epochs": (0.25, 0.5, 1, 2, 4, 8), "curve_n_seeds": 2},
        },
        "budget": {"n_seeds": 2, "attack_candidates": 50, "attack_targets": 100},
        # the val split (400 pairs) is topped up with 200 fresh patients' pairs, so the top-up path runs under nbval
        "adaptive": {"m_values": (0, 50, 200, None), "public_pool_min": 600, "m_reference": 200, "attack_epochs": 10},
    },
    "default": {
        # a held-out split larger than 10,000 pairs, so the audit reaches N = 10,000 as the paper's does
        "cohort": {"split_fractions": (0.4, 0.05, 0.55)},
    },
    "paper": {
        "cohort": {"source": "real", "image_size": 224},
        "features": {"batch_size": 512, "threads": None},  # GPU runs: torch decides CPU threads
        "audit": {"n_boot": 1000, "chunk_size": 8192},
        # no supplementary private pool exists for real cohorts: the scaling study is synthetic-only
        "dp": {"frontier": {"scaling_sizes": (), "scaling_factors": ()}},
    },
}


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def get_profile(name: str, overrides: Mapping[str, Any] | None = None) -> Profile:
    """The :class:`relink_lib.config.Profile` of profile ``name``.

    The section defaults of :mod:`relink_lib.config`, then the profile's own changes, then
    ``overrides`` deep-merged on top (e.g. ``{"audit": {"n_boot": 10}}``); the result is validated
    (:class:`relink_lib.config.Profile`, then :func:`relink_lib.config.check_book_profile`: what the chapters need).
    For the ``paper`` profile the data roots may also come from the environment variables
    ``MIMIC_CXR_ROOT``, ``CHEXPERT_PLUS_ROOT`` and ``MODELS``.
    """
    if name not in _PROFILE_OVERRIDES:
        raise ValueError(f"profile={name!r}: expected one of {', '.join(PROFILE_NAMES)}")
    params = _deep_merge(Profile().to_params(), _PROFILE_OVERRIDES[name])
    params["profile"] = name
    env = {"mimic_cxr_root": "MIMIC_CXR_ROOT", "chexpert_plus_root": "CHEXPERT_PLUS_ROOT", "models": "MODELS"}
    for key, var in env.items():
        if params["data"].get(key) is None and os.environ.get(var):
            params["data"][key] = os.environ[var]
    if overrides and "profile" in overrides:
        raise ValueError(
            f"overrides: 'profile' cannot be overridden (it names the run's cache and results folders); "
            f"run profile {overrides['profile']!r} by name instead, one of {', '.join(PROFILE_NAMES)}"
        )
    if overrides:
        unknown = set(overrides) - set(params)
        if unknown:
            raise ValueError(f"overrides: unknown section(s) {sorted(unknown)}; expected keys of {sorted(params)}")
        params = _deep_merge(params, overrides)
    return check_book_profile(Profile.from_params(params))


OPEN_KEYS: tuple[tuple[str, ...], ...] = (("ladder", "overrides"),)
"""Paths whose value is a free mapping (per-rung overrides of the ladder), not checked further."""


def validate_overrides(name: str, overrides: Mapping[str, Any] | None) -> None:
    """Check ``overrides`` against the keys of profile ``name`` at every depth, then their values.

    Raises ``ValueError`` naming the dotted path of the first unknown key (with the keys
    expected there and a close match when there is one), of a mapping given where the
    profile holds a plain value and vice versa, or of a value its section refuses. The CLI
    calls this before any kernel starts.
    """
    if not overrides:
        return
    if not isinstance(overrides, Mapping):
        raise ValueError(f"overrides: expected a mapping of sections, got {type(overrides).__name__}")
    base = get_profile(name).to_params()

    def walk(path: tuple[str, ...], over: Mapping[str, Any], ref: Mapping[str, Any]) -> None:
        for key, value in over.items():
            here = ".".join(path + (str(key),))
            if key not in ref:
                hint = unknown_key_hint(here, str(key), sorted(map(str, ref)))
                where = f"section {'.'.join(path)!r}" if path else "the profile"
                raise ValueError(f"overrides: unknown key {here!r}{hint}; {where} has keys {sorted(map(str, ref))}")
            if path + (str(key),) in OPEN_KEYS:
                continue
            target = ref.get(key)
            if isinstance(target, Mapping):
                if not isinstance(value, Mapping):
                    raise ValueError(
                        f"overrides: {here!r} is a section; expected a mapping of its keys, got {type(value).__name__}"
                    )
                walk(path + (str(key),), value, target)
            elif isinstance(value, Mapping) and target is not None:
                raise ValueError(
                    f"overrides: {here!r} holds a {type(target).__name__} in profile {name!r}, "
                    f"not a section; got a mapping"
                )

    walk((), overrides, base)
    try:
        get_profile(name, overrides)
    except ValueError as err:
        raise ValueError(f"overrides: {err}") from err


def project_root() -> Path:
    """The repository root (``RELINK_ROOT`` overrides it)."""
    env = os.environ.get("RELINK_ROOT")
    return Path(env).resolve() if env else Path(__file__).resolve().parent.parent


def cache_dir(profile: str) -> Path:
    """Where cached steps of a profile live (``RELINK_CACHE`` overrides the parent)."""
    parent = Path(os.environ["RELINK_CACHE"]) if os.environ.get("RELINK_CACHE") else project_root() / "cache"
    return parent / profile


def results_dir(profile: str) -> Path:
    """Where the results JSON of a profile go: ``results/<profile>/``."""
    parent = Path(os.environ["RELINK_RESULTS"]) if os.environ.get("RELINK_RESULTS") else project_root() / "results"
    return parent / profile
