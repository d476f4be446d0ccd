"""Chapter 6's confirmation cohort: fresh held-out patients on which the paper's estimand is measured.

The internal held-out split is what the frontier selects on (selection half) and reports on
(report half); a claim about the selected setting at N = 10,000 needs pairs the ladder, the DP
training and the selection never saw. For a synthetic cohort they are cheap: the profile's own
generator and cohort settings with another seed (``params["seed"] + CONFIRMATION_SEED_OFFSET``),
``dp.confirmation.n_pairs`` pairs, all in one split, no export round trip (as the scaling study's
supplementary private pool, :func:`relink_lib.dp.frontier_stage.pool_params`, with its own
offset), featurised with the top rung's frozen encoders (:func:`relink_lib.features.get_features`,
cached there). Real-data profiles have no confirmation cohort: :func:`get_confirmation` returns
``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from ..cohorts.stage import get_cohort
from ..config import Profile, ProfileLike, as_profile
from ..features import feature_dir, get_features
from ..labels import CHEXPERT_LABELS
from ..models.stage import Rung, get_ladder

CONFIRMATION_SEED_OFFSET = 9001
"""The confirmation cohort is generated with ``params["seed"] + CONFIRMATION_SEED_OFFSET`` (the scaling pool uses
``+ 7001``, the internal cohort ``+ 0``: three disjoint draws of the same generator)."""
CONFIRMATION_SPLIT = "train"
"""The one split every confirmation pair is in (split fractions (1, 0, 0)); the name is the cohort's, not a role:
no confirmation pair trains anything."""


def confirmation_params(params: ProfileLike) -> Profile:
    """Parameters of the confirmation cohort: the profile's cohort settings, seed + :data:`CONFIRMATION_SEED_OFFSET`,
    ``dp.confirmation.n_pairs`` pairs, all in one split, no export round trip."""
    cfg = as_profile(params)
    return cfg.replace_sections(
        seed=cfg.seed + CONFIRMATION_SEED_OFFSET,
        cohort={
            "n_pairs": int(cfg.dp.confirmation.n_pairs),
            "split_fractions": (1.0, 0.0, 0.0),
            "roundtrip": False,
        },
    )


@dataclass(frozen=True)
class ConfirmationInfo:
    """What the confirmation cohort is (``confirmation`` in ``mitigation.json``, without the curve):
    ``n_pairs``, ``n_patients``, ``seed`` (the generator's), ``seed_offset``, ``features`` (the feature cache
    entry) and ``source`` in words."""

    n_pairs: int
    n_patients: int
    seed: int
    seed_offset: int
    features: str
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "n_pairs": self.n_pairs,
            "n_patients": self.n_patients,
            "seed": self.seed,
            "seed_offset": self.seed_offset,
            "features": self.features,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ConfirmationInfo:
        return cls(
            n_pairs=int(d["n_pairs"]),
            n_patients=int(d["n_patients"]),
            seed=int(d["seed"]),
            seed_offset=int(d["seed_offset"]),
            features=str(d["features"]),
            source=str(d["source"]),
        )


@dataclass(frozen=True, eq=False)
class ConfirmationSet:
    """The confirmation cohort on the top rung: pre-projection ``image`` / ``text`` features ``(n, D)``, CheXpert
    ``labels`` ``(n, 14)`` (1 / 0 / -1 / NaN), ``patients`` ``(n,)`` and its :class:`ConfirmationInfo`.

    ``to_json()`` / ``from_json()`` carry the description only (the features live in the feature cache);
    ``from_json(d, arrays)`` rebuilds the set from the description and the four arrays."""

    info: ConfirmationInfo
    image: np.ndarray
    text: np.ndarray
    labels: np.ndarray
    patients: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.image)
        if not (len(self.text) == len(self.labels) == len(self.patients) == n):
            raise ValueError("ConfirmationSet: image, text, labels and patients need the same number of rows")

    def __len__(self) -> int:
        return len(self.image)

    def to_json(self) -> dict[str, Any]:
        return self.info.to_json()

    @classmethod
    def from_json(cls, d: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> ConfirmationSet:
        return cls(
            ConfirmationInfo.from_json(d),
            np.asarray(arrays["image"]),
            np.asarray(arrays["text"]),
            np.asarray(arrays["labels"], dtype=float),
            np.asarray(arrays["patients"]).astype(str),
        )


def confirmation_set(params: ProfileLike, rung: Rung, *, progress: bool = False) -> ConfirmationSet:
    """The confirmation cohort of a synthetic profile featurised by ``rung`` (generation and features cached)."""
    cfg = as_profile(params)
    if not cfg.cohort.simulation:
        raise ValueError("a confirmation cohort exists only for synthetic cohorts (cohort.simulation)")
    p = confirmation_params(cfg)
    cohort = get_cohort(p, site="internal")
    feats = get_features(p, cohort, rung, CONFIRMATION_SPLIT, progress=progress)
    pairs = cohort.pairs.iloc[np.asarray(feats.rows)].reset_index(drop=True)
    patients = pairs["patient_id"].astype(str).to_numpy()
    info = ConfirmationInfo(
        n_pairs=len(feats),
        n_patients=int(len(np.unique(patients))),
        seed=int(p.seed),
        seed_offset=CONFIRMATION_SEED_OFFSET,
        features=feature_dir(p, cohort, rung, CONFIRMATION_SPLIT).name,
        source="fresh synthetic patients: the profile's generator and cohort settings with seed + "
        f"{CONFIRMATION_SEED_OFFSET}, no export round trip; never seen by the ladder, the DP training or the selection",
    )
    return ConfirmationSet(
        info, feats.image, feats.text, pairs[list(CHEXPERT_LABELS)].to_numpy(float), np.asarray(patients)
    )


def get_confirmation(params: ProfileLike, *, progress: bool = False) -> ConfirmationSet | None:
    """The confirmation cohort on the most specialised rung, or ``None`` for a real-data profile (no generator).

    Cached through the cohort and feature caches (the stage itself only reads them).
    """
    cfg = as_profile(params)
    if not cfg.cohort.simulation:
        return None
    rung = get_ladder(cfg, progress=progress)[-1]
    return confirmation_set(cfg, rung, progress=progress)
