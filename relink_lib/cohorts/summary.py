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
from .stats import (
    STUDIES_PER_PATIENT_STATS,
    cooccurrence,
    label_prevalence,
    split_sizes,
    studies_per_patient,
    studies_per_patient_summary,
)
from .synthetic.generate import GENERATOR_COLUMNS
from .synthetic.patients import MIMIC_CXR_COUNTS, STUDIES_PER_PATIENT, PublishedCounts, StudiesPerPatientLaw
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


STUDIES_PER_PATIENT_COLUMNS: dict[str, str] = {
    "patients": "patients",
    "studies": "studies",
    "mean": "mean",
    "median": "median",
    "share_one": "1 study",
    "share_over_6": "more than 6",
    "p90": "90th pct",
    "p99": "99th pct",
    "max": "max",
}
"""Column names of :func:`studies_per_patient_table` for :data:`~.stats.STUDIES_PER_PATIENT_STATS`."""

STUDIES_PER_PATIENT_FORMATS: dict[str, str] = {
    "patients": "count",
    "studies": "count",
    "median": "count",
    "1 study": "percent",
    "more than 6": "percent",
    "90th pct": "count",
    "99th pct": "count",
}
"""``relink_lib.tables.html_table`` formats of :func:`studies_per_patient_table`'s columns (the others: default)."""


def reference_studies_per_patient(law: StudiesPerPatientLaw = STUDIES_PER_PATIENT) -> dict[str, dict[str, float]]:
    """MIMIC-CXR's published summary (patients, studies, mean; the rest is not published: NaN) and the generator's
    law (mean, median, shares and percentiles of the law itself; ``max``: its expected maximum over MIMIC-CXR's
    patient count), keyed like :func:`~.stats.studies_per_patient_summary`."""
    nan = float("nan")
    published = {name: nan for name in STUDIES_PER_PATIENT_STATS}
    published.update(
        patients=float(MIMIC_CXR_COUNTS.patients),
        studies=float(MIMIC_CXR_COUNTS.studies),
        mean=MIMIC_CXR_COUNTS.mean_studies_per_patient,
    )
    ls = law.summary(MIMIC_CXR_COUNTS.patients)
    fitted = {name: nan for name in STUDIES_PER_PATIENT_STATS}
    fitted.update({k: v for k, v in ls.items() if k in fitted})
    fitted["max"] = ls["expected_max"]
    return {"MIMIC-CXR (published)": published, "fitted law": fitted}


def studies_per_patient_notes(
    law: StudiesPerPatientLaw = STUDIES_PER_PATIENT, counts: PublishedCounts = MIMIC_CXR_COUNTS
) -> list[str]:
    """Chapter 2's sentences on where the studies-per-patient law comes from: the published counts, what was
    fitted, what is assumed, and the safety cap, generated from ``law`` and ``counts``."""
    split_means = counts.split_means()
    test = next(((s, p) for name, s, p in counts.splits if name == "test"), None)
    out = [
        f"{counts.name} holds {counts.studies:,} studies of {counts.patients:,} patients "
        f"({counts.source}): {counts.mean_studies_per_patient:.2f} studies per patient on average.",
        "No per-patient distribution (median, share with one study, percentiles, maximum) is published, so only the "
        "mean is fitted: the generator draws 1 + a negative binomial count "
        f"(shape r = {law.shape:g}, p = {law.p:.4f}), whose mean is {law.mean:.3f}. The shape is an assumption, "
        "not a fit: it sets the share of patients with one study"
        f" ({law.summary()['share_one']:.0%}) and how long the tail is (99th percentile "
        f"{law.quantile(0.99)}; expected largest patient among {counts.patients:,}: "
        f"{law.expected_max(counts.patients):.0f} studies).",
        f"A safety cap of {law.cap} studies per patient bounds memory only: the law puts {law.truncated_mass:.0e} "
        "of its mass above it, so it never binds below MIMIC-CXR's tail.",
    ]
    if test is not None:
        out.append(
            f"The official test split is a selected group, not a sample: {test[0]:,} studies of {test[1]:,} patients "
            f"({split_means['test']:.1f} per patient), quoted and not fitted ({counts.splits_source})."
        )
    return out


def studies_per_patient_table(
    cohorts: Mapping[str, Cohort], law: StudiesPerPatientLaw = STUDIES_PER_PATIENT, reference: bool = True
) -> pd.DataFrame:
    """One row per source: MIMIC-CXR's published counts and the fitted law (with ``reference``), then each
    cohort of ``cohorts`` (name -> cohort); columns :data:`STUDIES_PER_PATIENT_COLUMNS` (shares as fractions;
    NaN where a figure is not published)."""
    rows = dict(reference_studies_per_patient(law)) if reference else {}
    rows.update({name: studies_per_patient_summary(c) for name, c in cohorts.items()})
    table = pd.DataFrame.from_dict(rows, orient="index")[list(STUDIES_PER_PATIENT_STATS)]
    table.index.name = "source"
    return table.rename(columns=STUDIES_PER_PATIENT_COLUMNS)


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
        "studies_per_patient_summary": studies_per_patient_summary(cohort),
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
        "reference_studies_per_patient": {
            "MIMIC-CXR": MIMIC_CXR_COUNTS.as_dict(),
            "law": STUDIES_PER_PATIENT.as_dict(),
            "law_summary": STUDIES_PER_PATIENT.summary(MIMIC_CXR_COUNTS.patients),
        },
        "main_table": table.reset_index(names="label").round(4).to_dict(orient="records"),
        "largest_gap_internal_vs_mimic": {"label": str(gap.idxmax()), "abs_gap": float(gap.max())},
        "largest_gap_external_vs_chexpert": {"label": str(gap_ext.idxmax()), "abs_gap": float(gap_ext.max())},
        "mean_abs_gap_internal_vs_mimic": float(gap.mean()),
    }


def _studies_sentence(site: Mapping[str, Any], reference: Mapping[str, Any] | None, simulation: bool) -> str:
    sm = site.get("studies_per_patient_summary") or {}
    text = f"Patients hold {site['mean_studies_per_patient']:.2f} studies on average internally"
    if sm:
        text += (
            f" (median {sm['median']:g}, {sm['share_one']:.0%} with one, {sm['share_over_6']:.0%} with more than six, "
            f"up to {sm['max']:g})"
        )
    else:
        text += f" (1 to {max(site['studies_per_patient'])})"
    if reference:
        ref, law = reference["MIMIC-CXR"], reference["law"]
        text += (
            f", against {ref['mean_studies_per_patient']:.2f} in {ref['name']} ({ref['studies']:,} studies of "
            f"{ref['patients']:,} patients, published)"
        )
        if simulation:
            text += (
                f", the mean the generator's law is fitted to (1 + negative binomial, shape {law['shape']:g} "
                "assumed: only the totals are published)"
            )
    return text + "; a patient's other studies are distractors of every re-linkage query."


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
        _studies_sentence(i, payload.get("reference_studies_per_patient"), simulation),
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
