"""Label prevalence targets and the co-occurrence structure of the synthetic cohort.

``MIMIC_CXR_PREVALENCE`` holds MIMIC-CXR-JPG's published label frequencies (fraction of the
227,827 studies labelled positive / uncertain by the CheXpert labeler; Johnson et al. 2019,
arXiv:1901.07042, rounded to 0.1 %; transcribed for this simulation, check the paper before
quoting them). ``CHEXPERT_PREVALENCE`` is the same for the CheXpert training set (Irvin et al.
2019, fraction of images), used for the external site. The synthetic generator thresholds a
latent Gaussian factor model at these marginals, so the co-occurrence comes from shared factors
(cardiac, infection, intensive care, trauma, mass) and a patient-level random effect.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.special import ndtri

from ...labels import CHEXPERT_LABELS

# (positive, uncertain) as a fraction of studies
MIMIC_CXR_PREVALENCE: dict[str, tuple[float, float]] = {
    "Atelectasis": (0.201, 0.045),
    "Cardiomegaly": (0.197, 0.027),
    "Consolidation": (0.047, 0.019),
    "Edema": (0.119, 0.058),
    "Enlarged Cardiomediastinum": (0.032, 0.041),
    "Fracture": (0.019, 0.002),
    "Lung Lesion": (0.028, 0.005),
    "Lung Opacity": (0.226, 0.017),
    "No Finding": (0.331, 0.0),
    "Pleural Effusion": (0.238, 0.026),
    "Pleural Other": (0.009, 0.003),
    "Pneumonia": (0.073, 0.080),
    "Pneumothorax": (0.045, 0.005),
    "Support Devices": (0.292, 0.001),
}

CHEXPERT_PREVALENCE: dict[str, tuple[float, float]] = {
    "Atelectasis": (0.131, 0.131),
    "Cardiomegaly": (0.103, 0.030),
    "Consolidation": (0.057, 0.107),
    "Edema": (0.219, 0.052),
    "Enlarged Cardiomediastinum": (0.040, 0.045),
    "Fracture": (0.033, 0.002),
    "Lung Lesion": (0.031, 0.005),
    "Lung Opacity": (0.415, 0.019),
    "No Finding": (0.076, 0.0),
    "Pleural Effusion": (0.339, 0.042),
    "Pleural Other": (0.011, 0.008),
    "Pneumonia": (0.020, 0.070),
    "Pneumothorax": (0.077, 0.012),
    "Support Devices": (0.474, 0.004),
}

PATHOLOGIES: tuple[str, ...] = tuple(l for l in CHEXPERT_LABELS if l not in ("No Finding", "Support Devices"))
"""The 12 labels driven by the latent factor model (No Finding is derived, devices separately)."""

FACTORS: tuple[str, ...] = ("cardiac", "infection", "icu", "trauma", "mass")

# loadings of each pathology (and of acute support devices) on the factors
LOADINGS: dict[str, tuple[float, float, float, float, float]] = {
    "Atelectasis": (0.30, 0.30, 0.45, 0.00, 0.00),
    "Cardiomegaly": (0.75, 0.00, 0.10, 0.00, 0.00),
    "Consolidation": (0.00, 0.75, 0.20, 0.00, 0.00),
    "Edema": (0.55, 0.00, 0.45, 0.00, 0.00),
    "Enlarged Cardiomediastinum": (0.60, 0.00, 0.10, 0.10, 0.10),
    "Fracture": (0.00, 0.00, 0.10, 0.70, 0.00),
    "Lung Lesion": (0.00, 0.10, 0.00, 0.00, 0.80),
    "Lung Opacity": (0.20, 0.60, 0.30, 0.00, 0.30),
    "Pleural Effusion": (0.50, 0.20, 0.45, 0.10, 0.10),
    "Pleural Other": (0.00, 0.00, 0.00, 0.40, 0.30),
    "Pneumonia": (0.00, 0.80, 0.15, 0.00, 0.00),
    "Pneumothorax": (0.00, 0.00, 0.45, 0.45, 0.00),
    "Support Devices": (0.20, 0.10, 0.80, 0.10, 0.00),
}

FACTOR_PERSISTENCE: tuple[float, ...] = (0.6, 0.3, 0.4, 0.5, 0.85)
"""Share of each factor's variance that is the patient's (stable across their studies)."""

LABEL_PERSISTENCE: dict[str, float] = {
    "Cardiomegaly": 0.8,
    "Lung Lesion": 0.85,
    "Pleural Other": 0.8,
    "Enlarged Cardiomediastinum": 0.6,
    "Fracture": 0.5,
}
"""Share of each label's idiosyncratic variance that is the patient's (default 0.3)."""

HEALTHY_PERSISTENCE = 0.5

# probability that a report explicitly negates a label the study does not have
NEGATION_RATE: dict[str, float] = {
    "Atelectasis": 0.01,
    "Cardiomegaly": 0.10,
    "Consolidation": 0.16,
    "Edema": 0.14,
    "Enlarged Cardiomediastinum": 0.06,
    "Fracture": 0.02,
    "Lung Lesion": 0.01,
    "Lung Opacity": 0.03,
    "Pleural Effusion": 0.22,
    "Pleural Other": 0.0,
    "Pneumonia": 0.12,
    "Pneumothorax": 0.30,
}

CHRONIC_DEVICE_RATES: dict[str, float] = {"sternotomy": 0.06, "pacemaker": 0.035, "port": 0.035}
"""Fraction of patients with each chronic device (present in all their studies)."""


def site_prevalence(site: str) -> dict[str, tuple[float, float]]:
    """Target (positive, uncertain) fractions of a site: ``internal`` is MIMIC-CXR-like, ``external`` CheXpert-like."""
    if site == "internal":
        return dict(MIMIC_CXR_PREVALENCE)
    if site == "external":
        return dict(CHEXPERT_PREVALENCE)
    raise ValueError(f"site={site!r}: expected 'internal' or 'external'")


def loading_matrix() -> np.ndarray:
    """Loadings ``(13, 5)``: the 12 pathologies then acute support devices, on ``FACTORS``."""
    return np.array([LOADINGS[l] for l in PATHOLOGIES + ("Support Devices",)], dtype=np.float64)


ABSENT, UNCERTAIN, POSITIVE = 0, 1, 2


def assign_states(z: np.ndarray, healthy: np.ndarray, q_pos: np.ndarray, q_unc: np.ndarray) -> np.ndarray:
    """States ``(n, 13)`` (0 absent, 1 uncertain, 2 positive) from liabilities ``z`` ``(n, 13)``.

    Healthy rows have no pathology (acute devices included); a non-healthy row with no
    pathology gets its most likely one (largest ``z - q_pos``) as positive, so that No Finding
    equals the healthy fraction among rows without chronic findings.
    """
    states = np.where(z > q_pos, POSITIVE, np.where(z > q_unc, UNCERTAIN, ABSENT)).astype(np.int8)
    states[healthy] = ABSENT
    sick_none = ~healthy & np.all(states[:, :12] == ABSENT, axis=1)
    forced = np.argmax(z[sick_none, :12] - q_pos[:12], axis=1)
    states[np.flatnonzero(sick_none), forced] = POSITIVE
    return states


@functools.lru_cache(maxsize=8)
def calibrate(site: str) -> tuple[float, np.ndarray, np.ndarray]:
    """Healthy fraction and sick-conditional thresholds that reproduce the site's prevalence.

    The healthy fraction is the site's No Finding rate; the 13 thresholds are adjusted by a
    fixed-point iteration on a fixed Monte Carlo sample (deterministic) until positive and
    uncertain rates after :func:`assign_states` match the targets. Returns ``(h, q_pos, q_unc)``
    for the 12 pathologies and acute support devices.
    """
    prev = site_prevalence(site)
    chronic_sd = float(1.0 - np.prod([1.0 - r for r in CHRONIC_DEVICE_RATES.values()]))
    h = prev["No Finding"][0]
    pos_t = np.array(
        [prev[l][0] for l in PATHOLOGIES] + [max(prev["Support Devices"][0] - chronic_sd, 1e-4) / (1 - chronic_sd)]
    )
    unc_t = np.array([prev[l][1] for l in PATHOLOGIES] + [prev["Support Devices"][1]])
    rng = np.random.default_rng(12345)
    n = 40000
    z = latent_liabilities(
        rng.standard_normal((n, len(FACTORS))),
        rng.standard_normal((n, len(FACTORS))),
        rng.standard_normal((n, 13)),
        rng.standard_normal((n, 13)),
    )
    healthy = rng.random(n) < h
    pos, unc = pos_t / (1 - h), unc_t / (1 - h)
    for _ in range(12):
        pos = np.clip(pos, 1e-5, 0.95)
        unc = np.clip(unc, 0.0, 0.98 - pos)
        q_pos, q_unc = ndtri(1.0 - pos), ndtri(1.0 - pos - unc)
        states = assign_states(z, healthy, q_pos, q_unc)
        got_pos = np.maximum((states == POSITIVE).mean(axis=0), 1e-6)
        got_unc = np.maximum((states == UNCERTAIN).mean(axis=0), 1e-6)
        pos = pos * (pos_t / got_pos) ** 0.8
        unc = unc * (np.maximum(unc_t, 1e-6) / got_unc) ** 0.8
    return float(h), q_pos, q_unc


def latent_liabilities(
    f_patient: np.ndarray, f_study: np.ndarray, e_patient: np.ndarray, e_study: np.ndarray
) -> np.ndarray:
    """Standard-normal liabilities ``(n, 13)`` from patient/study factor draws ``(n, 5)`` and noise ``(n, 13)``."""
    rho_f = np.asarray(FACTOR_PERSISTENCE)
    factors = np.sqrt(rho_f) * f_patient + np.sqrt(1 - rho_f) * f_study
    load = loading_matrix()
    rho_e = np.array([LABEL_PERSISTENCE.get(l, 0.3) for l in PATHOLOGIES] + [0.3])
    noise = np.sqrt(rho_e) * e_patient + np.sqrt(1 - rho_e) * e_study
    resid = np.sqrt(1.0 - (load**2).sum(axis=1))
    return factors @ load.T + resid * noise
