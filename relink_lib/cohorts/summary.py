"""Chapter 2's numbers, tables and sentences: the two sites' cohorts against the published label frequencies.

``cohorts_payload`` gathers what the chapter writes to ``results/<profile>/cohorts.json``;
``prevalence_table`` is its main table and ``cohorts_findings`` its generated summary, so the
prose cannot contradict the numbers.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..labels import CHEXPERT_LABELS
from .base import Cohort
from .stats import cooccurrence, label_prevalence, split_sizes, studies_per_patient
from .synthetic.generate import GENERATOR_COLUMNS
from .synthetic.prevalence import CHEXPERT_PREVALENCE, MIMIC_CXR_PREVALENCE

MENTION_FLAGS: tuple[str, ...] = tuple(c for c in GENERATOR_COLUMNS if c.startswith("mentions_"))
"""The generator's instance-detail flags (synthetic cohorts only)."""


def prevalence_table(internal: Cohort, external: Cohort) -> pd.DataFrame:
    """Fractions per label (rows: the 14 labels): positive, uncertain and negative internally with MIMIC-CXR's
    published positive fraction beside them, and positive externally beside CheXpert's."""
    pi, pe = label_prevalence(internal), label_prevalence(external)
    return pd.DataFrame(
        {
            "internal positive": pi["positive"],
            "MIMIC-CXR positive": [MIMIC_CXR_PREVALENCE[l][0] for l in CHEXPERT_LABELS],
            "internal uncertain": pi["uncertain"],
            "internal negative": pi["negative"],
            "external positive": pe["positive"],
            "CheXpert positive": [CHEXPERT_PREVALENCE[l][0] for l in CHEXPERT_LABELS],
        },
        index=list(CHEXPERT_LABELS),
    )


COOCCURRENCE_PAIRS: tuple[tuple[str, str], ...] = (
    ("Pleural Effusion", "Atelectasis"),
    ("Pleural Effusion", "Edema"),
    ("Pleural Effusion", "Cardiomegaly"),
    ("Consolidation", "Pneumonia"),
    ("No Finding", "Pleural Effusion"),
)
"""Label pairs whose co-occurrence chapter 2 quotes (the real data's strongest links, and an exclusion)."""


def split_table(internal: Cohort, external: Cohort) -> pd.DataFrame:
    """Pairs and patients per split (rows: train, val, test, total) of both sites, columns ``<site> pairs|patients``."""
    sizes = pd.concat({"internal": split_sizes(internal), "external": split_sizes(external)}, axis=1)
    sizes.columns = [f"{site} {what}" for site, what in sizes.columns]
    return sizes


def cooccurrence_pairs(cohort: Cohort, pairs: Sequence[tuple[str, str]] = COOCCURRENCE_PAIRS) -> pd.DataFrame:
    """``A, B, conditional`` (P(B positive | A positive)) and ``base_rate`` (P(B positive)) for each label pair."""
    cond, prev = cooccurrence(cohort), label_prevalence(cohort)
    return pd.DataFrame(
        [
            {"A": a, "B": b, "conditional": float(cond.loc[a, b]), "base_rate": float(prev.loc[b, "positive"])}
            for a, b in pairs
        ]
    )


def mention_rates(cohort: Cohort) -> pd.Series:
    """Share of pairs whose report mentions each kind of instance detail (empty for cohorts without the flags)."""
    flags = [c for c in MENTION_FLAGS if c in cohort.pairs.columns]
    return cohort.pairs[flags].mean() if flags else pd.Series(dtype=float)


def _site(cohort: Cohort, label: str) -> dict[str, Any]:
    rates = mention_rates(cohort)
    spp = studies_per_patient(cohort)
    return {
        "cohort": label,
        "n_pairs": len(cohort),
        "n_patients": int(cohort.pairs["patient_id"].nunique()),
        "split_sizes": split_sizes(cohort).to_dict(),
        "prevalence": label_prevalence(cohort).round(4).to_dict(),
        "studies_per_patient": {int(k): int(v) for k, v in spp.items()},
        "studies_per_patient_share": (spp / spp.sum()).round(3).tolist() if spp.sum() else [],
        "mean_studies_per_patient": float(np.average(spp.index, weights=spp.values)) if spp.sum() else float("nan"),
        "mention_rates": rates.round(4).to_dict(),
        "excluded": dict(cohort.summary.get("loader_summary", cohort.summary).get("excluded", {}) or {}),
    }


def cohorts_payload(internal: Cohort, external: Cohort, labels: Mapping[str, str]) -> dict[str, Any]:
    """What chapter 2 records; ``labels`` maps ``internal`` / ``external`` to a provenance label of each cohort."""
    table = prevalence_table(internal, external)
    gap = (table["internal positive"] - table["MIMIC-CXR positive"]).abs()
    gap_ext = (table["external positive"] - table["CheXpert positive"]).abs()
    return {
        "internal": _site(internal, labels["internal"]),
        "external": _site(external, labels["external"]),
        "reference_prevalence": {"MIMIC-CXR": MIMIC_CXR_PREVALENCE, "CheXpert": CHEXPERT_PREVALENCE},
        "main_table": table.reset_index(names="label").round(4).to_dict(orient="records"),
        "largest_gap_internal_vs_mimic": {"label": str(gap.idxmax()), "abs_gap": float(gap.max())},
        "largest_gap_external_vs_chexpert": {"label": str(gap_ext.idxmax()), "abs_gap": float(gap_ext.max())},
        "mean_abs_gap_internal_vs_mimic": float(gap.mean()),
    }


def cohorts_findings(payload: Mapping[str, Any], simulation: bool = True) -> list[str]:
    """The chapter's summary sentences, generated from :func:`cohorts_payload`'s output."""
    kind = "simulations" if simulation else "real cohorts"
    i, e = payload["internal"], payload["external"]
    gi, ge = payload["largest_gap_internal_vs_mimic"], payload["largest_gap_external_vs_chexpert"]
    out = [
        f"The internal and external cohorts are {kind} of {i['n_pairs']:,} pairs ({i['n_patients']:,} patients) and "
        f"{e['n_pairs']:,} pairs ({e['n_patients']:,} patients), split by patient.",
        f"Positive-label fractions track the published ones: the mean absolute gap to MIMIC-CXR over the 14 labels is "
        f"{payload['mean_abs_gap_internal_vs_mimic']:.3f}, the largest {gi['abs_gap']:.3f} ({gi['label']}); externally "
        f"the largest gap to CheXpert is {ge['abs_gap']:.3f} ({ge['label']}).",
        f"Patients hold {i['mean_studies_per_patient']:.2f} studies on average internally (1 to "
        f"{max(i['studies_per_patient'])}), so a patient's other studies are distractors of every re-linkage query.",
    ]
    rates = i.get("mention_rates") or {}
    if rates:
        out.append(
            "Reports carry instance detail that the images also show: "
            + ", ".join(f"{k.removeprefix('mentions_')} {v:.0%}" for k, v in rates.items())
            + " of internal reports mention it."
        )
    excluded = {k: v for site in (i, e) for k, v in site.get("excluded", {}).items() if v}
    out.append(
        "The loaders excluded no study."
        if not excluded
        else "The loaders excluded " + ", ".join(f"{v:,} ({k})" for k, v in excluded.items()) + "."
    )
    return out
