"""Patients (stable anatomy, chronic findings) and per-study states with instance detail.

Everything is drawn with vectorised numpy from one ``Generator``; the result is a dict of
arrays, one entry per study (``n``), that both the renderer and the report writer read, so the
image and the report carry the same instance detail.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

from .patients import STUDIES_PER_PATIENT, StudiesPerPatientLaw, sample_study_counts
from .prevalence import (
    CHRONIC_DEVICE_RATES,
    FACTORS,
    HEALTHY_PERSISTENCE,
    PATHOLOGIES,
    POSITIVE,
    UNCERTAIN,
    assign_states,
    calibrate,
    latent_liabilities,
)

STUDY_WINDOW_DAYS = 1826
"""MIMIC-CXR's studies span 2011-2016 (five years): a patient's studies spread over about this many days at most."""

LOBES: tuple[str, ...] = (
    "right upper lobe",
    "right middle lobe",
    "right lower lobe",
    "left upper lobe",
    "lingula",
    "left lower lobe",
)
# lobe centres in image coordinates (u: -1 image left = patient right .. 1; v: -1 top .. 1 bottom)
LOBE_U = np.array([-0.40, -0.38, -0.42, 0.40, 0.36, 0.42])
LOBE_V = np.array([-0.42, 0.02, 0.28, -0.42, 0.05, 0.30])
SIDES: tuple[str, ...] = ("right", "left", "bilateral")
SIZES: tuple[str, ...] = ("small", "moderate", "large")
SEVERITY: tuple[str, ...] = ("mild", "moderate", "severe")
ACUTE_DEVICES: tuple[str, ...] = ("et_tube", "ng_tube", "cvc", "picc", "chest_tube")


def _cat(rng: np.random.Generator, p: np.ndarray | list[float], size: int) -> np.ndarray:
    """Vectorised categorical draw: indices into ``p`` (which sums to 1)."""
    return np.searchsorted(np.cumsum(p), rng.random(size) * np.sum(p), side="right").clip(0, len(p) - 1)


def study_days(counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Days from each patient's first study to each study (0 for the first), one entry per study.

    Gaps are 1 + an exponential number of days with mean ``min(365, STUDY_WINDOW_DAYS / k)`` for a
    patient with ``k`` studies: about a study a year for a few studies, and a patient with dozens packs
    them into MIMIC-CXR's five-year window (as inpatient stays do). Dates strictly increase within a patient.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    mean_gap = np.minimum(365.0, STUDY_WINDOW_DAYS / counts)
    gaps = 1.0 + np.floor(rng.exponential(1.0, n) * np.repeat(mean_gap, counts))
    first = np.cumsum(counts) - counts
    gaps[first] = 0.0  # the first study of each patient starts the clock
    days = np.cumsum(gaps)
    return (days - np.repeat(days[first], counts)).astype(np.int64)


def sample_patients(
    n_pairs: int, rng: np.random.Generator, law: StudiesPerPatientLaw = STUDIES_PER_PATIENT
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Draw patients from ``law`` (docs/cohorts.md) until they hold ``n_pairs`` studies.

    Returns ``(patients, patient_of_study, order_of_study)``: patient attributes ``(n_patients,)``
    (``n_studies`` among them), the patient index of each study and its 0-based order within the
    patient.
    """
    counts = sample_study_counts(n_pairs, rng, law)
    n_pat = len(counts)
    patient = np.repeat(np.arange(n_pat), counts)
    order = np.arange(n_pairs) - np.repeat(np.cumsum(counts) - counts, counts)
    m = n_pat
    pats: dict[str, np.ndarray] = {
        "n_studies": counts,
        "age": np.clip(rng.normal(63, 16, m), 18, 95).round(),
        "male": rng.random(m) < 0.52,
        "ctr": np.clip(rng.normal(0.45, 0.035, m), 0.36, 0.56),  # baseline cardiothoracic ratio
        "lung_w": np.clip(rng.normal(1.0, 0.05, m), 0.85, 1.15),
        "lung_h": np.clip(rng.normal(1.0, 0.06, m), 0.82, 1.18),
        "med_w": np.clip(rng.normal(0.11, 0.012, m), 0.08, 0.15),
        "rot_habit": rng.normal(0.0, 2.0, m),  # degrees
        "rib_phase": rng.random(m),
        "rib_spacing": np.clip(rng.normal(0.20, 0.012, m), 0.17, 0.23),
        "dome": np.clip(rng.normal(0.05, 0.015, m), 0.0, 0.1),  # right hemidiaphragm higher by this much
        "scoliosis": np.where(rng.random(m) < 0.05, rng.choice([-1, 1], m) * rng.uniform(8, 25, m), 0.0),  # degrees
        "sternotomy": rng.random(m) < CHRONIC_DEVICE_RATES["sternotomy"],
        "n_wires": rng.integers(5, 8, m),
        "pacemaker": rng.random(m) < CHRONIC_DEVICE_RATES["pacemaker"],
        "pacer_side": np.where(rng.random(m) < 0.85, 1, -1),  # 1 = patient left (image right)
        "port": rng.random(m) < CHRONIC_DEVICE_RATES["port"],
        "port_side": np.where(rng.random(m) < 0.7, -1, 1),  # -1 = patient right (image left)
        "nodule_lobe": rng.integers(0, 6, m),
        "nodule_du": rng.normal(0, 0.06, m),
        "nodule_dv": rng.normal(0, 0.06, m),
        "nodule_mm": np.clip(rng.lognormal(np.log(14), 0.45, m), 5, 48),
        "fracture_side": rng.choice([-1, 1], m),
        "fracture_rib": rng.integers(4, 10, m),
        "pleural_side": rng.choice([-1, 1], m),
        "texture": rng.standard_normal((m, 8, 8)).astype(np.float32),
        "f": rng.standard_normal((m, len(FACTORS))),
        "e": rng.standard_normal((m, 13)),
        "h": rng.standard_normal(m),
    }
    pats["pacemaker"] &= ~pats["port"] | (rng.random(m) < 0.2)
    return pats, patient, order


def sample_studies(n_pairs: int, rng: np.random.Generator, site: str) -> dict[str, np.ndarray]:
    """Per-study state (labels' latent states and instance detail) for ``n_pairs`` studies."""
    pats, pid, order = sample_patients(n_pairs, rng)
    days = study_days(pats["n_studies"], rng)
    n = n_pairs
    healthy_rate, q_pos, q_unc = calibrate(site)
    z = latent_liabilities(
        pats["f"][pid], rng.standard_normal((n, len(FACTORS))), pats["e"][pid], rng.standard_normal((n, 13))
    )
    hz = np.sqrt(HEALTHY_PERSISTENCE) * pats["h"][pid] + np.sqrt(1 - HEALTHY_PERSISTENCE) * rng.standard_normal(n)
    healthy = hz > ndtri(1.0 - healthy_rate)
    states = assign_states(z, healthy, q_pos, q_unc)
    excess = np.clip(z - q_unc, 0, None)  # how far past the threshold: drives size/severity
    s: dict[str, np.ndarray] = {"patient": pid, "order": order, "days": days, "healthy": healthy}
    for j, label in enumerate(PATHOLOGIES):
        s["state_" + label] = states[:, j]
    s["state_acute_devices"] = states[:, 12]

    # uncertain findings are visible but subtle on the image in 60% of studies
    def present(label: str) -> np.ndarray:
        st = s["state_" + label]
        return (st == POSITIVE) | ((st == UNCERTAIN) & (rng.random(n) < 0.6))

    def severity(j: int) -> np.ndarray:
        sev = np.digitize(excess[:, j] + rng.normal(0, 0.25, n), [0.6, 1.3])
        return np.where(s["state_" + PATHOLOGIES[j]] == UNCERTAIN, 0, sev)

    idx = {l: j for j, l in enumerate(PATHOLOGIES)}
    # copy patient anatomy onto studies
    for key in (
        "age",
        "male",
        "ctr",
        "lung_w",
        "lung_h",
        "med_w",
        "rib_phase",
        "rib_spacing",
        "dome",
        "scoliosis",
        "sternotomy",
        "n_wires",
        "pacemaker",
        "pacer_side",
        "port",
        "port_side",
        "texture",
    ):
        s[key] = pats[key][pid]
    years = days / 365.25
    s["age"] = s["age"] + np.floor(years)  # the patient ages between studies
    # acquisition: view, rotation, inspiration, exposure
    icu = (states[:, 12] == POSITIVE) | (s["state_Edema"] == POSITIVE) | (s["state_Pneumothorax"] == POSITIVE)
    p_ap = np.where(icu, 0.9, 0.35 if site == "internal" else 0.55)
    s["view"] = np.where(rng.random(n) < p_ap, "AP", "PA")
    s["rotation"] = pats["rot_habit"][pid] + rng.normal(0, 2.5, n)
    s["inspiration"] = np.clip(rng.normal(1.0, 0.05, n) - 0.05 * icu, 0.82, 1.12)  # lung height factor
    s["exposure"] = rng.normal(0.0, 1.0, n)  # <0 under-, >0 over-penetrated
    s["shift_u"] = rng.normal(0, 0.03, n)
    s["shift_v"] = rng.normal(0, 0.03, n)
    # cardiomegaly: heart size from the patient's baseline and the label state
    cm = s["state_Cardiomegaly"]
    cm_sev = severity(idx["Cardiomegaly"])
    ctr = np.where(
        cm == POSITIVE,
        np.maximum(s["ctr"], 0.53 + 0.045 * cm_sev + rng.normal(0, 0.01, n)),
        np.where(cm == UNCERTAIN, np.clip(s["ctr"], 0.49, 0.53), np.minimum(s["ctr"], 0.49)),
    )
    s["ctr"] = ctr + rng.normal(0, 0.006, n)
    s["cardiomegaly_severity"] = cm_sev
    # enlarged cardiomediastinum: widened mediastinum
    s["med_w"] = s["med_w"] + present("Enlarged Cardiomediastinum") * (
        0.04 + 0.03 * severity(idx["Enlarged Cardiomediastinum"])
    )
    # effusion: side and size
    eff = present("Pleural Effusion")
    s["effusion_side"] = np.where(eff, _cat(rng, [0.36, 0.30, 0.34], n), -1)
    s["effusion_size"] = np.where(eff, severity(idx["Pleural Effusion"]), -1)
    # atelectasis: location (right base, left base, bibasilar)
    atel = present("Atelectasis")
    s["atelectasis_side"] = np.where(atel, _cat(rng, [0.3, 0.35, 0.35], n), -1)
    # follow the effusion's side when both are present (compressive atelectasis)
    follow = atel & eff & (rng.random(n) < 0.6)
    s["atelectasis_side"] = np.where(follow, s["effusion_side"], s["atelectasis_side"])
    # focal opacity (consolidation / pneumonia / lung opacity): lobe and size
    focal = present("Consolidation") | present("Pneumonia") | (present("Lung Opacity") & (rng.random(n) < 0.7))
    s["opacity_lobe"] = np.where(focal, rng.integers(0, 6, n), -1)
    s["opacity_radius"] = np.where(focal, rng.uniform(0.08, 0.16, n) * (1 + 0.3 * severity(idx["Lung Opacity"])), 0.0)
    s["opacity_du"] = rng.normal(0, 0.04, n)
    s["opacity_dv"] = rng.normal(0, 0.04, n)
    # edema severity
    s["edema_severity"] = np.where(present("Edema"), severity(idx["Edema"]), -1)
    # lung lesion: the patient's nodule, slowly growing
    les = present("Lung Lesion")
    s["lesion"] = les
    s["lesion_lobe"] = pats["nodule_lobe"][pid]
    s["lesion_u"] = LOBE_U[s["lesion_lobe"]] + pats["nodule_du"][pid]
    s["lesion_v"] = LOBE_V[s["lesion_lobe"]] + pats["nodule_dv"][pid]
    s["lesion_mm"] = np.clip(pats["nodule_mm"][pid] * (1 + 0.04 * years) + rng.normal(0, 0.5, n), 4, 60)
    # fracture: the patient's rib
    s["fracture"] = present("Fracture")
    s["fracture_side"] = pats["fracture_side"][pid]
    s["fracture_rib"] = pats["fracture_rib"][pid]
    s["fracture_healed"] = s["fracture"] & (order > 0) & (rng.random(n) < 0.5)
    # pleural other: thickening / plaque on the patient's side
    s["pleural_other"] = present("Pleural Other")
    s["pleural_side"] = pats["pleural_side"][pid]
    # pneumothorax: side and size
    ptx = present("Pneumothorax")
    s["ptx_side"] = np.where(ptx, rng.choice([-1, 1], n), 0)
    s["ptx_size"] = np.where(ptx, severity(idx["Pneumothorax"]), -1)
    # acute devices
    acute = states[:, 12] == POSITIVE
    et = acute & (rng.random(n) < 0.45)
    ng = acute & (rng.random(n) < np.where(et, 0.75, 0.2))
    cvc = acute & (rng.random(n) < 0.35)
    picc = acute & ~cvc & (rng.random(n) < 0.35)
    chest = acute & (rng.random(n) < np.where(ptx | eff, 0.35, 0.04))
    none = acute & ~(et | ng | cvc | picc | chest)
    pick = _cat(rng, [0.3, 0.15, 0.3, 0.25], n)
    et |= none & (pick == 0)
    ng |= none & (pick == 1)
    cvc |= none & (pick == 2)
    picc |= none & (pick == 3)
    s.update({"et_tube": et, "ng_tube": ng, "cvc": cvc, "picc": picc, "chest_tube": chest})
    s["et_tip_cm"] = np.clip(rng.normal(4.5, 1.3, n), 0.8, 9.0)  # above the carina
    s["cvc_side"] = np.where(rng.random(n) < 0.75, -1, 1)  # internal jugular, -1 = right
    s["picc_side"] = np.where(rng.random(n) < 0.6, -1, 1)
    s["line_tip"] = _cat(rng, [0.55, 0.3, 0.15], n)  # 0 mid SVC, 1 cavoatrial junction, 2 right atrium
    s["chest_tube_side"] = np.where(s["ptx_side"] != 0, s["ptx_side"], np.where(s["effusion_side"] == 1, 1, -1))
    s["support_devices"] = acute | s["sternotomy"] | s["pacemaker"] | s["port"]
    s["sd_uncertain"] = states[:, 12] == UNCERTAIN
    return s
