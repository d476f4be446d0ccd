"""``make_synthetic_cohort``: the embedded paired cohort, deterministic from a seed."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np
import pandas as pd

from ..base import Cohort
from ..splits import patient_split
from .anatomy import sample_studies
from .render import make_noise_bank, render_batch
from .reports import write_reports

SITE_CODES = {"internal": 1, "external": 2}
DEFAULT_SPLIT_FRACTIONS = {"internal": (0.8, 0.1, 0.1), "external": (0.85, 0.15, 0.0)}
"""Split fractions of the pairs (train, val, test), assigned by patient; the external site mimics CheXpert Plus
(train/valid only)."""

GENERATOR_COLUMNS: tuple[str, ...] = (
    "mentions_device",
    "mentions_measurement",
    "mentions_laterality",
    "mentions_chronic",
    "sex",
    "age",
)
"""Columns only the generator knows (kept in the cache by the stage, not in the official layouts' round trip)."""

_CHUNK = 256


def _dicom_id(seed: int, site: str, i: int) -> str:
    h = hashlib.sha1(f"{seed}:{site}:{i}".encode()).hexdigest()[:40]
    return "-".join(h[k : k + 8] for k in range(0, 40, 8))


def make_synthetic_cohort(
    n_pairs: int,
    image_size: int = 128,
    seed: int = 0,
    site: str = "internal",
    report_detail: float = 1.0,
    image_noise: float = 1.0,
    split_fractions: Sequence[float] | None = None,
    text: str = "findings+impression",
    n_jobs: int | None = None,
) -> Cohort:
    """Generate a public synthetic paired cohort of ``n_pairs`` image-report pairs (one frontal image per study).

    Parameters
    ----------
    n_pairs : number of studies (= pairs); patients hold 1 to 200 studies each, drawn from the long-tailed
        law fitted to MIMIC-CXR's published counts (``patients.STUDIES_PER_PATIENT``, mean 3.48).
    image_size : square image side in pixels (>= 16).
    seed : everything is deterministic from ``(seed, site)``; ``n_jobs`` does not change the result.
    site : ``"internal"`` (MIMIC-CXR-like prevalence, report and rendering style) or ``"external"`` (CheXpert-like).
    report_detail : scales the probability that a report keeps each instance detail (0 = none, 1 = default).
    image_noise : scales the pixel and low-frequency noise of the renderer (0 = noise-free).
    split_fractions : (train, val, test) fractions of the pairs, assigned by patient (``patient_split`` with
        ``balance="pairs"``; every split with a positive fraction gets a patient, and a ``UserWarning`` names
        the splits left empty when there are fewer patients than such splits); default
        ``DEFAULT_SPLIT_FRACTIONS[site]``.
    text : how ``text`` is composed from FINDINGS and IMPRESSION (``relink_lib.cohorts.text.TEXT_MODES``).
    n_jobs : rendering threads (default: up to 2 CPUs).

    Images live in memory (uint8); ``image_path`` is the path the study would have in the site's
    official layout (MIMIC-CXR-JPG for internal, CheXpert Plus for external), used by ``export``.
    """
    if not isinstance(n_pairs, (int, np.integer)) or n_pairs < 1:
        raise ValueError(f"n_pairs={n_pairs!r}: expected a positive integer")
    if not isinstance(image_size, (int, np.integer)) or image_size < 16:
        raise ValueError(f"image_size={image_size!r}: expected an integer >= 16 (pixels)")
    if site not in SITE_CODES:
        raise ValueError(f"site={site!r}: expected 'internal' or 'external'")
    if not np.isfinite(report_detail) or report_detail < 0:
        raise ValueError(f"report_detail={report_detail!r}: expected a number >= 0")
    if not np.isfinite(image_noise) or image_noise < 0:
        raise ValueError(f"image_noise={image_noise!r}: expected a number >= 0")
    n_pairs, image_size = int(n_pairs), int(image_size)
    ss = np.random.SeedSequence([int(seed), SITE_CODES[site]])
    s_state, s_report, s_split, s_noise, s_render = ss.spawn(5)
    s = sample_studies(n_pairs, np.random.default_rng(s_state), site)
    rows = write_reports(s, np.random.default_rng(s_report), site, report_detail, text)
    pairs = pd.DataFrame(rows)

    # identifiers, paths and splits as in the site's official layout
    pid, order = s["patient"], s["order"]
    fractions = DEFAULT_SPLIT_FRACTIONS[site] if split_fractions is None else tuple(split_fractions)
    if site == "internal":
        patient_id = np.char.mod("%d", 10000000 + pid)
        study_id = np.char.mod("%d", 50000000 + np.arange(n_pairs))
    else:
        patient_id = np.char.mod("patient%05d", pid + 1)
        study_id = np.char.add(np.char.add(patient_id, "/study"), np.char.mod("%d", order + 1))
    pairs.insert(0, "patient_id", patient_id.astype(object))
    pairs.insert(1, "study_id", study_id.astype(object))
    pairs["split"] = patient_split(
        pairs["patient_id"],
        fractions,
        seed=int(np.random.default_rng(s_split).integers(2**31)),
        balance="pairs",
        too_few="warn",  # a tiny cohort (e.g. a top-up of a few pairs, used whole) may hold fewer patients than splits
    )
    if site == "internal":
        dicom = [_dicom_id(seed, site, i) for i in range(n_pairs)]
        pairs["dicom_id"] = dicom
        pairs["image_path"] = [
            f"files/p{p[:2]}/p{p}/s{st}/{d}.jpg" for p, st, d in zip(pairs["patient_id"], pairs["study_id"], dicom)
        ]
    else:
        split_dir = np.where(pairs["split"].to_numpy() == "train", "train", "valid")
        pairs["image_path"] = [f"{sd}/{st}/view1_frontal.jpg" for sd, st in zip(split_dir, pairs["study_id"])]
    pairs["view"] = s["view"].astype(object)
    pairs["site"] = site
    pairs["study_order"] = order + 1
    base = pd.Timestamp("2150-01-01") + pd.to_timedelta(
        np.random.default_rng(s_split).integers(0, 3650, pid.max() + 1)[pid], unit="D"
    )
    pairs["study_date"] = (base + pd.to_timedelta(s["days"], unit="D")).strftime("%Y%m%d").astype(str)
    pairs["sex"] = np.where(s["male"], "M", "F")
    pairs["age"] = s["age"].astype(int)

    # images, rendered in chunks; each chunk has its own random stream, so threads do not change the result
    images = np.empty((n_pairs, image_size, image_size), dtype=np.uint8)
    bank = make_noise_bank(image_size, 64, np.random.default_rng(s_noise))
    chunks = [np.arange(a, min(a + _CHUNK, n_pairs)) for a in range(0, n_pairs, _CHUNK)]
    chunk_seeds = s_render.spawn(len(chunks))

    def work(k: int) -> None:
        rows_k = chunks[k]
        images[rows_k] = render_batch(
            s, rows_k, image_size, np.random.default_rng(chunk_seeds[k]), site, image_noise, bank
        )

    n_jobs = n_jobs or min(2, os.cpu_count() or 1)
    if n_jobs > 1 and len(chunks) > 1:
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            list(pool.map(work, range(len(chunks))))
    else:
        for k in range(len(chunks)):
            work(k)
    summary = {
        "source": "synthetic",
        "site": site,
        "seed": int(seed),
        "n_pairs": n_pairs,
        "n_patients": int(pairs["patient_id"].nunique()),
        "image_size": image_size,
        "report_detail": float(report_detail),
        "image_noise": float(image_noise),
        "excluded": {},
    }
    return Cohort(pairs, root=None, public=True, name=f"synthetic-{site}", summary=summary, images=images)
