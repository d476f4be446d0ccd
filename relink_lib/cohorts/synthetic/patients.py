"""How many studies a synthetic patient holds: a long-tailed law fitted to MIMIC-CXR's published counts.

MIMIC-CXR's published figures (:data:`MIMIC_CXR_COUNTS`) are what the real data say; the law
(:data:`STUDIES_PER_PATIENT`) is what the generator draws from. Only the total counts are
published, so only the mean is fitted; the shape is an assumption, stated in docs/cohorts.md
and chapter 2. ``K = 1 + X`` with ``X`` negative binomial (a gamma mixture of Poisson visit
counts: patients differ in how often they are imaged), truncated at a safety cap far above the
tail only to bound memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy import optimize, stats

__all__ = [
    "PublishedCounts",
    "MIMIC_CXR_COUNTS",
    "StudiesPerPatientLaw",
    "fit_studies_per_patient",
    "STUDIES_PER_PATIENT",
    "DEFAULT_SHAPE",
    "SAFETY_CAP",
    "sample_study_counts",
]


@dataclass(frozen=True)
class PublishedCounts:
    """A dataset's published totals (and, where published, its official splits' totals).

    ``splits``: ``(split name, studies, patients)`` per official split.
    """

    name: str
    images: int
    studies: int
    patients: int
    source: str
    url: str
    splits: tuple[tuple[str, int, int], ...] = ()
    splits_source: str = ""
    notes: tuple[str, ...] = ()

    @property
    def mean_studies_per_patient(self) -> float:
        """Studies per patient on average: ``studies / patients``."""
        return self.studies / self.patients

    def split_means(self) -> dict[str, float]:
        """Studies per patient within each published split."""
        return {name: s / p for name, s, p in self.splits}

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready record of the figures and their sources."""
        return {
            "name": self.name,
            "images": self.images,
            "studies": self.studies,
            "patients": self.patients,
            "mean_studies_per_patient": self.mean_studies_per_patient,
            "source": self.source,
            "url": self.url,
            "splits": {k: {"studies": s, "patients": p} for k, s, p in self.splits},
            "splits_source": self.splits_source,
            "notes": list(self.notes),
        }


MIMIC_CXR_COUNTS = PublishedCounts(
    name="MIMIC-CXR v2.0.0",
    images=377_110,
    studies=227_835,
    patients=65_379,
    source=(
        "Johnson et al., MIMIC-CXR, a de-identified publicly available database of chest radiographs "
        "with free-text reports, Scientific Data 6, 317 (2019)"
    ),
    url="https://doi.org/10.1038/s41597-019-0322-0",
    splits=(("train", 222_758, 64_586), ("validate", 1_808, 500), ("test", 3_269, 293)),
    splits_source=(
        "Johnson et al., MIMIC-CXR-JPG, a large publicly available database of labeled chest radiographs, "
        "arXiv 1901.07042"
    ),
    notes=(
        "The official split's studies and patients sum to the totals.",
        "The official test split holds every study of the patients with a report in the manual label "
        "review: a selected group (11.2 studies per patient), not a random sample, so it is quoted, not fitted.",
        "No per-patient distribution (median, share with one study, quantiles, maximum) is published; "
        "only the mean is fitted.",
    ),
)
"""MIMIC-CXR's published counts (quoted, never computed here)."""

DEFAULT_SHAPE = 0.5
"""Negative-binomial shape r of ``K - 1`` (an assumption: the coefficient of variation of the patients'
imaging rates is ``1 / sqrt(r)`` = 1.41). Smaller r: more single-study patients and a longer tail."""

SAFETY_CAP = 200
"""Largest number of studies a patient may hold; bounds memory only (the fitted law puts about 1e-17 of its
mass above it, so the cap never binds at MIMIC-CXR's 65,379 patients)."""


@dataclass(frozen=True)
class StudiesPerPatientLaw:
    """``K = 1 + X``, ``X ~ NegativeBinomial(shape, p)`` truncated to ``K <= cap`` (renormalised).

    ``p`` is the success probability of numpy's and scipy's parametrisation: ``E[X] = shape (1 - p) / p``
    before truncation. :func:`fit_studies_per_patient` solves ``p`` so that the truncated law's mean is
    the target.
    """

    shape: float
    p: float
    cap: int = SAFETY_CAP
    target_mean: float = float("nan")
    source: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.shape) and self.shape > 0):
            raise ValueError(f"shape={self.shape!r}: expected a positive number")
        if not 0 < self.p < 1:
            raise ValueError(f"p={self.p!r}: expected a probability in (0, 1)")
        if isinstance(self.cap, bool) or not isinstance(self.cap, (int, np.integer)) or self.cap < 1:
            raise ValueError(f"cap={self.cap!r}: expected a positive integer")

    @cached_property
    def _pmf(self) -> np.ndarray:
        raw = stats.nbinom.pmf(np.arange(self.cap), self.shape, self.p)
        return np.asarray(raw / raw.sum(), dtype=np.float64)

    @property
    def support(self) -> np.ndarray:
        """``1 .. cap``."""
        return np.arange(1, self.cap + 1)

    def pmf(self, k: int | np.ndarray) -> np.ndarray:
        """``P(K = k)`` (0 outside ``1 .. cap``)."""
        k = np.asarray(k)
        inside = (k >= 1) & (k <= self.cap)
        out = np.zeros(k.shape, dtype=np.float64)
        out[inside] = self._pmf[k[inside].astype(np.int64) - 1]
        return out

    def pmf_series(self, upto: int | None = None) -> pd.Series:
        """``P(K = k)`` for ``k = 1 .. upto`` (default ``cap``) as a Series indexed by ``k``."""
        k = self.support if upto is None else np.arange(1, min(int(upto), self.cap) + 1)
        return pd.Series(self.pmf(k), index=k, name="probability")

    @property
    def truncated_mass(self) -> float:
        """Mass the untruncated law puts above ``cap`` (removed by the truncation)."""
        return float(stats.nbinom.sf(self.cap - 1, self.shape, self.p))

    @property
    def mean(self) -> float:
        """``E[K]`` of the truncated law (exact)."""
        return float(self.support @ self._pmf)

    @property
    def std(self) -> float:
        """Standard deviation of ``K`` (truncated law)."""
        k = self.support
        return float(math.sqrt(max(float((k**2) @ self._pmf) - self.mean**2, 0.0)))

    def quantile(self, q: float) -> int:
        """The smallest ``k`` with ``P(K <= k) >= q``."""
        if not 0 <= q <= 1:
            raise ValueError(f"q={q!r}: expected a probability in [0, 1]")
        cdf = np.cumsum(self._pmf)
        return min(int(np.searchsorted(cdf, q - 1e-12, side="left")) + 1, int(self.cap))

    def sf(self, k: int) -> float:
        """``P(K > k)``."""
        return float(self._pmf[max(int(k), 0) :].sum()) if k < self.cap else 0.0

    def expected_max(self, n_patients: int) -> float:
        """Expected largest ``K`` among ``n_patients`` independent patients."""
        cdf = np.clip(np.cumsum(self._pmf), 0.0, 1.0)
        return float(1.0 + np.sum(1.0 - cdf[:-1] ** int(n_patients)))

    def sample(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` independent draws of ``K`` (int64); draws above ``cap`` are redrawn (exact truncation)."""
        out = rng.negative_binomial(self.shape, self.p, size).astype(np.int64) + 1
        bad = out > self.cap
        while bad.any():
            out[bad] = rng.negative_binomial(self.shape, self.p, int(bad.sum())).astype(np.int64) + 1
            bad = out > self.cap
        return out

    def summary(self, n_patients: int | None = None) -> dict[str, float]:
        """Mean, median, share with one study, share with more than six, 90th / 99th percentiles and (with
        ``n_patients``) the expected maximum among that many patients."""
        out = {
            "mean": self.mean,
            "median": float(self.quantile(0.5)),
            "share_one": float(self._pmf[0]),
            "share_over_6": self.sf(6),
            "p90": float(self.quantile(0.9)),
            "p99": float(self.quantile(0.99)),
        }
        if n_patients is not None:
            out["expected_max"] = self.expected_max(n_patients)
        return out

    def as_dict(self) -> dict[str, Any]:
        """The law's parameters (JSON-ready)."""
        return {
            "family": "1 + negative binomial, truncated at cap",
            "shape": self.shape,
            "p": self.p,
            "cap": int(self.cap),
            "target_mean": self.target_mean,
            "mean": self.mean,
            "truncated_mass": self.truncated_mass,
            "source": self.source,
        }


def fit_studies_per_patient(
    mean: float = MIMIC_CXR_COUNTS.mean_studies_per_patient,
    shape: float = DEFAULT_SHAPE,
    cap: int = SAFETY_CAP,
    source: str = "",
) -> StudiesPerPatientLaw:
    """The law with the given ``shape`` and ``cap`` whose (truncated) mean is ``mean``.

    Without truncation ``p = shape / (shape + mean - 1)`` exactly; the truncation is accounted for by
    solving the truncated mean for ``p`` (it moves ``p`` by less than 1e-12 at the default cap).
    """
    if not (math.isfinite(mean) and 1 < mean < cap):
        raise ValueError(f"mean={mean!r}: expected a number between 1 and cap={cap}")
    p0 = shape / (shape + mean - 1.0)

    def gap(p: float) -> float:
        return StudiesPerPatientLaw(shape, p, cap).mean - mean

    p = p0
    if abs(gap(p0)) > 1e-12:
        lo, hi = 1e-9, 1 - 1e-9
        p = float(optimize.brentq(gap, lo, hi, xtol=1e-15))
    return StudiesPerPatientLaw(float(shape), float(p), int(cap), float(mean), source)


STUDIES_PER_PATIENT = fit_studies_per_patient(
    source=f"mean fitted to {MIMIC_CXR_COUNTS.name}: {MIMIC_CXR_COUNTS.studies:,} studies / "
    f"{MIMIC_CXR_COUNTS.patients:,} patients ({MIMIC_CXR_COUNTS.source}); shape r = {DEFAULT_SHAPE} assumed"
)
"""The generator's studies-per-patient law (mean 3.485 = 227,835 / 65,379; r = 0.5, p = 0.1675, cap 200)."""


def sample_study_counts(
    n_pairs: int, rng: np.random.Generator, law: StudiesPerPatientLaw = STUDIES_PER_PATIENT
) -> np.ndarray:
    """Studies of each patient, drawn from ``law`` until they hold ``n_pairs`` studies; the last patient is cut
    so that the counts sum to exactly ``n_pairs``.

    Patients are drawn in batches sized from the law's mean (a few more than needed on average), repeated
    until the total is reached, so any tail is handled; the result is deterministic from ``rng``'s state.
    """
    if n_pairs < 1:
        raise ValueError(f"n_pairs={n_pairs!r}: expected a positive integer")
    batch = int(math.ceil(1.1 * n_pairs / law.mean)) + 16
    parts: list[np.ndarray] = []
    total = 0
    while total < n_pairs:
        part = law.sample(rng, batch)
        parts.append(part)
        total += int(part.sum())
    counts = np.concatenate(parts)
    cum = np.cumsum(counts)
    n_pat = int(np.searchsorted(cum, n_pairs) + 1)
    counts = counts[:n_pat].copy()
    counts[-1] -= int(cum[n_pat - 1] - n_pairs)
    return counts
