"""What makes a study re-linkable: report properties, a per-query model of re-linkage, and a validation.

:func:`report_properties` derives the same properties from any report text, real or synthetic
(it never reads a cohort's generator columns): whether the report names a device, uses a
laterality word, gives a measurement, compares with a prior study, its length in words, and,
from the study's labels and view, the number of positive CheXpert findings and whether the view
is AP. :func:`fit_risk_factors` regresses each query's expected Recall@1 at a reference pool size
on them (scikit-learn ``LinearRegression``; booleans as 0/1, length per 10 words), with
patient-bootstrap percentile intervals of every coefficient. :func:`validate_properties` scores
the text properties against a synthetic cohort's ground-truth flags (precision and recall per
property). Only the derived properties and the fitted effects leave this module, never text.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

from ..labels import CHEXPERT_LABELS

__all__ = [
    "PROPERTY_PATTERNS",
    "PROPERTY_LABELS",
    "report_properties",
    "study_properties",
    "fit_risk_factors",
    "validate_properties",
    "GROUND_TRUTH",
    "FEATURES",
]

PROPERTY_PATTERNS: dict[str, str] = {
    "device": r"\b(?:tubes?|catheters?|lines?|picc|pacemakers?|pacers?|ports?|leads?|wires?|drains?|stents?|"
    r"sternotomy|clips?|icd|defibrillator|valve|support devices?|monitoring devices?)\b",
    "laterality": r"\b(?:left|right|bilateral)\b",
    "measurement": r"\b\d+(?:\.\d+)?\s*(?:cm|mm)\b",
    "prior_comparison": r"\b(?:prior|previous|compared|comparison|interval|since|unchanged|stable|new)\b",
}
"""Case-insensitive regular expressions of the four text properties (documented in ``docs/audit.md``)."""

PROPERTY_LABELS: dict[str, str] = {
    "device": "names a device",
    "laterality": "laterality word",
    "measurement": "gives a measurement (cm/mm)",
    "prior_comparison": "compares with a prior",
    "n_positive": "positive findings (per label)",
    "length_10_words": "report length (per 10 words)",
    "view_ap": "AP view",
}
"""Readable names of the model's features, for tables and figures."""

FEATURES: tuple[str, ...] = (
    "device",
    "laterality",
    "measurement",
    "prior_comparison",
    "n_positive",
    "length_10_words",
    "view_ap",
)

GROUND_TRUTH: dict[str, str] = {
    "device": "mentions_device",
    "laterality": "mentions_laterality",
    "measurement": "mentions_measurement",
}
"""The synthetic generator's flag for each text property that has one (it records no prior-comparison flag)."""

_COMPILED = {name: re.compile(p, re.IGNORECASE) for name, p in PROPERTY_PATTERNS.items()}


def report_properties(texts: Sequence[str] | pd.Series) -> pd.DataFrame:
    """Text properties of each report: the four booleans of :data:`PROPERTY_PATTERNS` and ``n_words``.

    ``texts``: one report per row (missing text counts as empty). Returns one row per report,
    in order, with a fresh ``RangeIndex``.
    """
    values = list(texts.tolist() if isinstance(texts, pd.Series) else texts)
    out: dict[str, list] = {name: [] for name in _COMPILED}
    out["n_words"] = []
    for i, t in enumerate(values):
        if t is None or (isinstance(t, float) and np.isnan(t)):
            t = ""
        if not isinstance(t, str):
            raise TypeError(f"texts: row {i} is {type(t).__name__}, expected a report string")
        for name, rx in _COMPILED.items():
            out[name].append(rx.search(t) is not None)
        out["n_words"].append(len(t.split()))
    return pd.DataFrame(out)


def study_properties(pairs: pd.DataFrame, text_column: str = "text") -> pd.DataFrame:
    """The model's features per study: text properties plus ``n_positive`` (labels equal to 1) and ``view_ap``.

    ``pairs`` needs ``text_column``, the 14 label columns and ``view``. Returns :data:`FEATURES`
    plus ``n_words`` (``length_10_words = n_words / 10``), one row per study.
    """
    missing = [c for c in (text_column, "view", *CHEXPERT_LABELS) if c not in pairs.columns]
    if missing:
        raise ValueError(f"pairs: missing column(s) {missing} (needed for the study properties)")
    props = report_properties(pairs[text_column])
    labels = pairs[list(CHEXPERT_LABELS)].to_numpy(dtype=np.float64)
    props["n_positive"] = (labels == 1.0).sum(axis=1)
    props["length_10_words"] = props["n_words"] / 10.0
    props["view_ap"] = pairs["view"].astype(str).str.upper().str.startswith("AP").to_numpy()
    return props


def _design(props: pd.DataFrame) -> np.ndarray:
    missing = [c for c in FEATURES if c not in props.columns]
    if missing:
        raise ValueError(f"props: missing feature column(s) {missing}")
    return props[list(FEATURES)].to_numpy(dtype=np.float64)


def fit_risk_factors(
    props: pd.DataFrame,
    outcome: np.ndarray,
    patient_ids: Any = None,
    *,
    n_boot: int = 200,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Linear model of a per-query outcome (e.g. expected R@1 at N = 100) on :data:`FEATURES`.

    Returns one row per feature: ``feature``, ``label``, ``effect`` (coefficient: change of the
    outcome per unit, holding the others fixed), ``ci_low``, ``ci_high`` (patient bootstrap of
    the refit, percentile), ``prevalence`` (mean of the feature), ``n`` (queries). A feature
    constant in the data gets NaN (it is not identifiable).
    """
    x = _design(props)
    y = np.asarray(outcome, dtype=np.float64)
    if y.shape != (x.shape[0],):
        raise ValueError(f"outcome: expected shape ({x.shape[0]},) (one value per query), got {y.shape}")
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    if y.size < len(FEATURES) + 2:
        raise ValueError(
            f"outcome: {y.size} finite values, expected at least {len(FEATURES) + 2} to fit {len(FEATURES)} effects"
        )
    varying = x.std(axis=0) > 0
    coef = np.full(len(FEATURES), np.nan)
    model = LinearRegression().fit(x[:, varying], y)
    coef[varying] = model.coef_
    lo = np.full(len(FEATURES), np.nan)
    hi = np.full(len(FEATURES), np.nan)
    if n_boot:
        ids = np.arange(y.size) if patient_ids is None else np.asarray(patient_ids)[keep]
        uniq, inverse = np.unique(ids.astype(str), return_inverse=True)
        members = [np.flatnonzero(inverse.ravel() == g) for g in range(len(uniq))]
        rng = np.random.default_rng(seed)
        reps = np.full((n_boot, len(FEATURES)), np.nan)
        for b in range(n_boot):
            rows = np.concatenate([members[g] for g in rng.integers(0, len(uniq), size=len(uniq))])
            xb = x[rows][:, varying]
            ok = xb.std(axis=0) > 0
            if ok.all():
                reps[b, varying] = LinearRegression().fit(xb, y[rows]).coef_
        alpha = (1.0 - level) / 2.0
        done = np.isfinite(reps[:, varying]).all(axis=1)  # replicates where every varying feature still varied
        if done.any():
            lo[varying], hi[varying] = np.quantile(reps[done][:, varying], [alpha, 1.0 - alpha], axis=0)
    return pd.DataFrame(
        {
            "feature": list(FEATURES),
            "label": [PROPERTY_LABELS[f] for f in FEATURES],
            "effect": coef,
            "ci_low": lo,
            "ci_high": hi,
            "prevalence": x.mean(axis=0),
            "n": int(y.size),
        }
    )


def validate_properties(
    props: pd.DataFrame, truth: pd.DataFrame, mapping: Mapping[str, str] = GROUND_TRUTH
) -> pd.DataFrame:
    """Precision and recall of each text property against ground-truth flags (a synthetic cohort's generator columns).

    ``props`` from :func:`report_properties`; ``truth`` holds the flag columns named by
    ``mapping`` (property -> column), row for row. Returns ``property, truth_column, precision,
    recall, prevalence_true, prevalence_extracted, n``; a property whose column is absent is skipped.
    """
    if len(props) != len(truth):
        raise ValueError(f"truth: expected {len(props)} rows (one per report), got {len(truth)}")
    rows = []
    for prop, col in mapping.items():
        if col not in truth.columns or prop not in props.columns:
            continue
        pred = props[prop].to_numpy(dtype=bool)
        true = truth[col].fillna(False).to_numpy(dtype=bool)
        tp = int((pred & true).sum())
        rows.append(
            {
                "property": prop,
                "truth_column": col,
                "precision": tp / int(pred.sum()) if pred.any() else float("nan"),
                "recall": tp / int(true.sum()) if true.any() else float("nan"),
                "prevalence_true": float(true.mean()),
                "prevalence_extracted": float(pred.mean()),
                "n": int(len(pred)),
            }
        )
    if "prior_comparison" in props.columns and "study_order" in truth.columns:
        # no flag for comparisons, but a first study has no prior to compare with: precision against "a prior exists"
        pred = props["prior_comparison"].to_numpy(dtype=bool)
        has_prior = pd.to_numeric(truth["study_order"], errors="coerce").fillna(0).to_numpy() > 0
        rows.append(
            {
                "property": "prior_comparison",
                "truth_column": "study_order > 0 (a prior exists; precision only)",
                "precision": int((pred & has_prior).sum()) / int(pred.sum()) if pred.any() else float("nan"),
                "recall": float("nan"),
                "prevalence_true": float(has_prior.mean()),
                "prevalence_extracted": float(pred.mean()),
                "n": int(len(pred)),
            }
        )
    return pd.DataFrame(
        rows,
        columns=["property", "truth_column", "precision", "recall", "prevalence_true", "prevalence_extracted", "n"],
    )
