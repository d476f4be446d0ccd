"""Pipeline stage: the internal and external cohorts of a profile, cached under ``cache/<profile>/cohort/``.

Synthetic source: the generator's cohort is exported to the site's official layout
(internal -> MIMIC-CXR-JPG, external -> CheXpert Plus) and loaded back through the real loader,
so every run exercises the loaders; generator-only columns (``mentions_*``, ``sex``, ``age``) are
joined back by ``study_id``. The loaded cohort is materialised (uint8 images ``.npy``) for speed.
Real source: MIMIC-CXR-JPG (internal) and CheXpert Plus (external) from the profile's ``data``
section; the roots and their files are checked before anything long runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..cache import cached_dir, content_hash, stage_code_version
from ..config import Profile, ProfileLike, as_profile
from ..profiles import cache_dir
from .base import TEXT_COLUMNS, Cohort
from .chexpert_plus import CSV_NAME, LABEL_DIR, load_chexpert_plus
from .export import export
from .io import find_file, require_dir, tree_manifest
from .mimic import LABEL_CSV, META_CSV, REPORTS_DIR, SPLIT_CSV, load_mimic_cxr
from .synthetic.generate import GENERATOR_COLUMNS, make_synthetic_cohort

SITES: tuple[str, ...] = ("internal", "external")
LAYOUT_OF_SITE = {"internal": "mimic-cxr-jpg", "external": "chexpert-plus"}


def _site_params(params: ProfileLike, site: str) -> dict[str, Any]:
    """What the cohort of ``site`` is built from (the cohort section's values for that site, and the seed)."""
    if site not in SITES:
        raise ValueError(f"site={site!r}: expected one of {list(SITES)}")
    cfg = as_profile(params)
    cohort = cfg.cohort
    out: dict[str, Any] = {"source": cohort.source, "site": site, "image_size": cohort.image_size, "text": cohort.text}
    if cohort.simulation:
        internal = site == "internal"
        out.update(
            n_pairs=int(cohort.n_pairs if internal else cohort.n_pairs_external),
            report_detail=float(cohort.report_detail),
            image_noise=float(cohort.image_noise),
            split_fractions=tuple(cohort.split_fractions if internal else cohort.external_split_fractions),
            roundtrip=bool(cohort.roundtrip),
            seed=int(cfg.seed),
        )
    return out


def check_real_data(params: ProfileLike, site: str = "internal") -> Path:
    """Check that the real cohort's root and official files exist.

    Raises ``FileNotFoundError`` naming what is missing.
    """
    data = as_profile(params).data
    if site == "internal":
        root = require_dir(
            data.mimic_cxr_root, "params['data']['mimic_cxr_root'] / MIMIC_CXR_ROOT (MIMIC-CXR-JPG 2.0.0)"
        )
        for name in (SPLIT_CSV, LABEL_CSV, META_CSV):
            find_file(root, (name, name + ".gz"), "MIMIC-CXR-JPG")
        require_dir(root / REPORTS_DIR, "MIMIC-CXR reports (unzip mimic-cxr-reports.zip into the root)")
        require_dir(root / "files", "MIMIC-CXR-JPG images")
    else:
        root = require_dir(
            data.chexpert_plus_root, "params['data']['chexpert_plus_root'] / CHEXPERT_PLUS_ROOT (CheXpert Plus)"
        )
        find_file(root, (CSV_NAME,), "CheXpert Plus")
        find_file(root, (f"{LABEL_DIR}/report_fixed.json",), "CheXpert Plus CheXbert labels")
    return root


def cohort_key(params: ProfileLike, site: str = "internal") -> dict[str, Any]:
    """What the cached cohort depends on: the site's cohort parameters, the seed and the cohorts code version.

    Real cohorts add the tables (name, size, mtime) and a manifest of every report and image file
    (relative path, size, mtime in ns; :func:`relink_lib.cohorts.io.tree_manifest`): adding,
    removing or editing any file invalidates the cached cohort.
    """
    key: dict[str, Any] = {"cohort": _site_params(params, site), "code": stage_code_version(__name__)}
    if key["cohort"]["source"] == "real":
        root = check_real_data(params, site)
        files = [p for p in sorted(root.glob("*.csv*")) + sorted((root / LABEL_DIR).glob("*.json")) if p.is_file()]
        key["root"] = str(root)
        key["files"] = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        trees = (
            (root / REPORTS_DIR, root / "files")
            if site == "internal"
            else tuple(sorted(p for p in root.iterdir() if p.is_dir() and p.name != LABEL_DIR))
        )
        key["manifest"] = tree_manifest(*trees)
    return key


def get_cohort(params: ProfileLike, site: str = "internal") -> Cohort:
    """The profile's cohort for ``site`` (``"internal"`` or ``"external"``), built once and cached.

    ``cohort.summary["cache_key"]`` is the content hash of the cohort's key, for downstream caches.
    """
    profile = as_profile(params)
    cfg = _site_params(profile, site)
    if cfg["source"] == "real":
        check_real_data(profile, site)  # fail fast, before anything long
    key = cohort_key(profile, site)
    key_hash = content_hash(key)

    def build(tmp: Path) -> None:
        cohort = _build(profile, cfg, tmp)
        cohort.summary["cache_key"] = key_hash
        cohort.save(tmp / "cohort", images=cfg["source"] == "synthetic")

    final = cached_dir(cache_dir(profile.name), "cohort", key, build)
    cohort = Cohort.load(final / "cohort")
    if (final / "export").is_dir():
        cohort.root = final / "export"
    return cohort


def _build(profile: Profile, cfg: dict[str, Any], tmp: Path) -> Cohort:
    site = cfg["site"]
    if cfg["source"] == "real":
        data = profile.data
        if site == "internal":
            return load_mimic_cxr(data.mimic_cxr_root, text=cfg["text"], image_size=cfg["image_size"], site=site)
        return load_chexpert_plus(data.chexpert_plus_root, text=cfg["text"], image_size=cfg["image_size"], site=site)
    gen = make_synthetic_cohort(
        cfg["n_pairs"],
        image_size=cfg["image_size"],
        seed=cfg["seed"],
        site=site,
        report_detail=cfg["report_detail"],
        image_noise=cfg["image_noise"],
        split_fractions=cfg["split_fractions"],
        text=cfg["text"],
    )
    if not cfg["roundtrip"]:
        return gen
    layout = LAYOUT_OF_SITE[site]
    export(gen, tmp / "export", layout=layout)
    loader = load_mimic_cxr if layout == "mimic-cxr-jpg" else load_chexpert_plus
    back = loader(tmp / "export", text=cfg["text"], site=site, public=True, name=gen.name)
    if len(back) != len(gen) or not (back.pairs["study_id"].to_numpy() == gen.pairs["study_id"].to_numpy()).all():
        raise RuntimeError(f"round trip through {layout} changed the {site} cohort's rows ({len(gen)} -> {len(back)})")
    extra = gen.pairs[["study_id", *GENERATOR_COLUMNS]]
    pairs = back.pairs.merge(extra, on="study_id", how="left", validate="one_to_one")
    summary = dict(gen.summary, roundtrip=layout, loader_summary={k: v for k, v in back.summary.items() if k != "root"})
    # images stay on disk here; get_cohort's save() materialises them as the loader reads them (JPEG-decoded)
    return Cohort(pairs, root=tmp / "export", public=True, name=gen.name, summary=summary)


def cohort_label(cohort: Cohort) -> str:
    """Short provenance string, e.g. ``synthetic-internal (simulation, n=2000)``."""
    kind = "simulation" if cohort.summary.get("source") == "synthetic" else "real"
    return f"{cohort.name} ({kind}, n={len(cohort)})"


def pairs_without_text(cohort: Cohort) -> pd.DataFrame:
    """``cohort.pairs`` without report text columns (safe to show for any cohort)."""
    return cohort.pairs.drop(columns=[c for c in TEXT_COLUMNS if c in cohort.pairs.columns])
