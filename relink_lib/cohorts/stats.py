"""Descriptive statistics of a cohort for chapter 2: prevalence, co-occurrence, studies per patient, splits."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..labels import CHEXPERT_LABELS
from .base import Cohort


def label_prevalence(cohort: Cohort) -> pd.DataFrame:
    """Fraction of pairs per label value: columns ``positive, uncertain, negative, blank`` (rows: the 14 labels)."""
    m = cohort.label_matrix()
    n = max(len(cohort), 1)
    return pd.DataFrame(
        {
            "positive": (m == 1).sum(0) / n,
            "uncertain": (m == -1).sum(0) / n,
            "negative": (m == 0).sum(0) / n,
            "blank": np.isnan(m).sum(0) / n,
        },
        index=list(CHEXPERT_LABELS),
    )


def cooccurrence(cohort: Cohort, include_uncertain: bool = False) -> pd.DataFrame:
    """``P(column label positive | row label positive)`` as a 14 x 14 frame (NaN where the row label never occurs).

    With ``include_uncertain`` an uncertain (-1) label counts as present.
    """
    m = cohort.label_matrix()
    present = (m == 1) | ((m == -1) if include_uncertain else False)
    x = present.astype(np.float64)
    joint = x.T @ x
    counts = np.diag(joint).copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        cond = joint / counts[:, None]
    cond[counts == 0] = np.nan
    return pd.DataFrame(cond, index=list(CHEXPERT_LABELS), columns=list(CHEXPERT_LABELS))


def studies_per_patient(cohort: Cohort) -> pd.Series:
    """Number of patients by how many studies (pairs) they hold, indexed 1..max."""
    per = cohort.pairs.groupby("patient_id").size()
    counts = per.value_counts().sort_index()
    return counts.reindex(range(1, int(per.max()) + 1), fill_value=0).rename("patients") if len(per) else counts


STUDIES_PER_PATIENT_STATS: tuple[str, ...] = (
    "patients",
    "studies",
    "mean",
    "median",
    "share_one",
    "share_over_6",
    "p90",
    "p99",
    "max",
)
"""What :func:`studies_per_patient_summary` reports (``share_over_6``: beyond the old generator's cap of 6)."""


def studies_per_patient_summary(per_patient: Cohort | pd.Series | np.ndarray) -> dict[str, float]:
    """Patients, studies, mean, median, share with one study, share with more than six, 90th and 99th
    percentiles and maximum of the studies (pairs) each patient holds.

    ``per_patient``: a cohort (pairs counted by ``patient_id``), or the studies of each patient. Percentiles
    are the smallest count that many of the patients do not exceed (``inverted_cdf``), so they are counts.
    NaN everywhere for no patients.
    """
    if isinstance(per_patient, Cohort):
        k = per_patient.pairs.groupby("patient_id").size().to_numpy()
    else:
        k = np.asarray(per_patient, dtype=np.int64)
    if k.size == 0:
        return {name: float("nan") for name in STUDIES_PER_PATIENT_STATS}
    if k.min() < 1:
        raise ValueError(f"per_patient: every patient holds at least one study, got {int(k.min())}")
    p90, p99 = np.quantile(k, [0.9, 0.99], method="inverted_cdf")
    return {
        "patients": float(k.size),
        "studies": float(k.sum()),
        "mean": float(k.mean()),
        "median": float(np.quantile(k, 0.5, method="inverted_cdf")),
        "share_one": float(np.mean(k == 1)),
        "share_over_6": float(np.mean(k > 6)),
        "p90": float(p90),
        "p99": float(p99),
        "max": float(k.max()),
    }


def split_sizes(cohort: Cohort) -> pd.DataFrame:
    """Pairs and patients per split (train, val, test), with totals."""
    p = cohort.pairs
    out = pd.DataFrame({"pairs": p.groupby("split").size(), "patients": p.groupby("split")["patient_id"].nunique()})
    out = out.reindex(["train", "val", "test"], fill_value=0)
    out.loc["total"] = [len(p), p["patient_id"].nunique()]
    return out.astype(int)
