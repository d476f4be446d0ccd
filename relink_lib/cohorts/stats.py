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


def split_sizes(cohort: Cohort) -> pd.DataFrame:
    """Pairs and patients per split (train, val, test), with totals."""
    p = cohort.pairs
    out = pd.DataFrame({"pairs": p.groupby("split").size(), "patients": p.groupby("split")["patient_id"].nunique()})
    out = out.reindex(["train", "val", "test"], fill_value=0)
    out.loc["total"] = [len(p), p["patient_id"].nunique()]
    return out.astype(int)
