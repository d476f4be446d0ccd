"""What makes a study re-linkable: report properties, a per-query model of re-linkage, and its validation.

:func:`report_properties` derives the same properties from any report text, real or synthetic
(it never reads a cohort's generator columns): whether the report names a device, uses a
laterality word, gives a measurement, compares with a prior study, its length in words, and,
from the study's labels and view, the number of positive CheXpert findings and whether the view
is AP.

:func:`fit_risk_factors` models each query's expected Recall@1 at a reference pool size, a
bounded outcome with many zeros, by a **fractional-response logit** (Papke & Wooldridge 1996:
a binomial GLM with logit link on the fraction, statsmodels; quasi-likelihood, so the outcome
need not be 0/1) with standard errors that are cluster-robust by patient. Two forms:

- *marginal*: one property at a time (its whole association with re-linkage);
- *adjusted*: all properties together **except report length**. Length is not a confounder of
  the text properties but a mediator: naming a device, a side or a measurement makes a report
  longer, so holding length fixed compares a report that names a device with one of the same
  length that spends those words on something else, which can flip a sign. Length gets its own
  (marginal) row.

Effects are odds ratios (``exp`` of the coefficient: the factor on the odds of the expected
Recall@1 per unit) and average marginal effects (the mean change of the expected Recall@1,
delta-method intervals). :func:`validate_properties` scores the text properties against a
synthetic cohort's ground-truth flags (precision and recall per property). Only the derived
properties and the fitted effects leave this module, never text.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.special import expit
from scipy.stats import norm

from ..labels import CHEXPERT_LABELS

__all__ = [
    "PROPERTY_PATTERNS",
    "PROPERTY_LABELS",
    "report_properties",
    "study_properties",
    "fit_fractional_logit",
    "LogitFit",
    "fit_risk_factors",
    "validate_properties",
    "GROUND_TRUTH",
    "EXPECTED_POSITIVE",
    "FEATURES",
    "ADJUSTED_FEATURES",
    "LENGTH_FEATURE",
    "RISK_COLUMNS",
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

ADJUSTED_FEATURES: tuple[str, ...] = (
    "device",
    "laterality",
    "measurement",
    "prior_comparison",
    "n_positive",
    "view_ap",
)
"""The properties of the adjusted model (report length is left out: it mediates the text properties)."""

LENGTH_FEATURE = "length_10_words"
"""Report length per 10 words: its own row, marginal only."""

FEATURES: tuple[str, ...] = (*ADJUSTED_FEATURES, LENGTH_FEATURE)
"""Every property of the per-study model, in table order."""

GROUND_TRUTH: dict[str, str] = {
    "device": "mentions_device",
    "laterality": "mentions_laterality",
    "measurement": "mentions_measurement",
}
"""The synthetic generator's flag for each text property that has one (it records no prior-comparison flag)."""

EXPECTED_POSITIVE: tuple[str, ...] = tuple(GROUND_TRUTH)
"""Properties the synthetic generator makes more specific: it writes the detail (the device, the side, the
measurement) into the report only when the study carries it, and the image shows it too, so a report that
names it has fewer look-alikes. The model must find their effect positive (the validation of the model
against the generator, :func:`fit_risk_factors`'s ``truth``)."""

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


RISK_COLUMNS: tuple[str, ...] = (
    "feature",
    "label",
    "mean",
    "or_marginal",
    "or_marginal_ci_low",
    "or_marginal_ci_high",
    "ame_marginal",
    "ame_marginal_ci_low",
    "ame_marginal_ci_high",
    "or_adjusted",
    "or_adjusted_ci_low",
    "or_adjusted_ci_high",
    "ame_adjusted",
    "ame_adjusted_ci_low",
    "ame_adjusted_ci_high",
    "expected_sign",
    "truth_column",
    "or_truth",
    "or_truth_ci_low",
    "or_truth_ci_high",
    "n",
    "n_patients",
    "mean_outcome",
)
"""Columns of :func:`fit_risk_factors` (one row per feature of :data:`FEATURES`)."""


@dataclass(frozen=True)
class LogitFit:
    """A fractional-response logit: ``names`` (``"const"`` first), coefficients ``params``, their
    cluster-robust covariance ``cov``, the design ``x`` it was fit on (with the constant column), the
    number of observations ``n`` and of clusters ``n_clusters``, and whether IRLS ``converged``."""

    names: tuple[str, ...]
    params: np.ndarray
    cov: np.ndarray
    x: np.ndarray
    n: int
    n_clusters: int
    converged: bool

    def _index(self, name: str) -> int:
        if name not in self.names:
            raise KeyError(f"{name!r}: not a term of this fit (terms: {list(self.names)})")
        return self.names.index(name)

    def odds_ratio(self, name: str, level: float = 0.95) -> tuple[float, float, float]:
        """``(OR, low, high)`` of one term: ``exp`` of its coefficient and of its Wald interval."""
        j = self._index(name)
        b, se = float(self.params[j]), float(np.sqrt(max(self.cov[j, j], 0.0)))
        z = float(norm.ppf(0.5 + level / 2.0))
        return float(np.exp(b)), float(np.exp(b - z * se)), float(np.exp(b + z * se))

    def marginal_effect(self, name: str, level: float = 0.95) -> tuple[float, float, float]:
        """``(AME, low, high)``: the average marginal effect of one term on the expected outcome.

        A 0/1 term: the mean of ``expit(x_i b)`` with the term set to 1 minus with it set to 0; any
        other term: the mean derivative ``b_j mu_i (1 - mu_i)``. Delta-method interval with :attr:`cov`.
        """
        j = self._index(name)
        x, b = self.x, self.params
        col = x[:, j]
        if np.isin(col, (0.0, 1.0)).all():
            x1, x0 = x.copy(), x.copy()
            x1[:, j], x0[:, j] = 1.0, 0.0
            m1, m0 = expit(x1 @ b), expit(x0 @ b)
            ame = float(np.mean(m1 - m0))
            grad = ((m1 * (1 - m1))[:, None] * x1 - (m0 * (1 - m0))[:, None] * x0).mean(axis=0)
        else:
            mu = expit(x @ b)
            w = mu * (1 - mu)
            ame = float(b[j] * w.mean())
            grad = b[j] * ((w * (1 - 2 * mu))[:, None] * x).mean(axis=0)
            grad[j] += w.mean()
        se = float(np.sqrt(max(grad @ self.cov @ grad, 0.0)))
        z = float(norm.ppf(0.5 + level / 2.0))
        return ame, ame - z * se, ame + z * se


def _clusters(patient_ids: Any, n: int) -> np.ndarray:
    if patient_ids is None:
        return np.arange(n)
    ids = np.asarray(patient_ids)
    if ids.shape != (n,):
        raise ValueError(f"patient_ids: expected shape ({n},) (one id per query), got {ids.shape}")
    return np.unique(ids.astype(str), return_inverse=True)[1].ravel()


def fit_fractional_logit(x: np.ndarray, y: np.ndarray, groups: Any = None, names: Sequence[str] = ()) -> LogitFit:
    """Fractional-response logit of ``y`` (values in [0, 1]) on the columns of ``x`` plus a constant.

    statsmodels ``GLM`` with a binomial family and logit link (quasi-likelihood: ``E[y | x] = expit(x b)``
    is all it assumes), covariance cluster-robust by ``groups`` (one cluster id per row; ``None``: every
    row its own cluster, the heteroskedasticity-robust sandwich). ``names``: of the columns (default
    ``x0, x1, ...``). statsmodels is imported here, not at module import (it takes seconds).
    """
    import statsmodels.api as sm  # lazy: a slow import that only the per-study model needs

    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.ndim == 1:
        xa = xa[:, None]
    if xa.ndim != 2 or ya.shape != (xa.shape[0],):
        raise ValueError(f"x, y: expected an (n, p) design and n outcomes, got {xa.shape} and {ya.shape}")
    if not np.isfinite(ya).all() or ya.min() < 0 or ya.max() > 1:
        raise ValueError("y: expected finite fractions in [0, 1] (e.g. expected Recall@1 per query)")
    cols = tuple(names) or tuple(f"x{j}" for j in range(xa.shape[1]))
    if len(cols) != xa.shape[1]:
        raise ValueError(f"names: expected {xa.shape[1]} names (one per column of x), got {len(cols)}")
    design = np.column_stack([np.ones(len(ya)), xa])
    codes = _clusters(groups, len(ya))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence / separation warnings: ``converged`` records them
        res = sm.GLM(ya, design, family=sm.families.Binomial()).fit(
            cov_type="cluster", cov_kwds={"groups": codes}, maxiter=200
        )
    return LogitFit(
        names=("const", *cols),
        params=np.asarray(res.params, dtype=np.float64),
        cov=np.asarray(res.cov_params(), dtype=np.float64),
        x=design,
        n=int(len(ya)),
        n_clusters=int(codes.max()) + 1,
        converged=bool(res.converged),
    )


def _columns(props: pd.DataFrame, names: Sequence[str]) -> np.ndarray:
    missing = [c for c in names if c not in props.columns]
    if missing:
        raise ValueError(f"props: missing feature column(s) {missing}")
    return props[list(names)].to_numpy(dtype=np.float64)


MAX_LOGIT = 15.0
"""A fitted slope beyond this on the logit scale (an odds ratio beyond 3e6 per unit) is a separated
fit, not an estimate."""


def _try_fit(x: np.ndarray, y: np.ndarray, groups: np.ndarray, names: Sequence[str]) -> LogitFit | None:
    """:func:`fit_fractional_logit`, or ``None`` where the estimate does not exist: IRLS did not converge
    (e.g. a property whose studies all score 0: its odds ratio is 0) or the covariance is singular."""
    try:
        fit = fit_fractional_logit(x, y, groups, names)
    except np.linalg.LinAlgError:
        return None
    ok = fit.converged and np.isfinite(fit.params).all() and np.isfinite(fit.cov).all()
    return fit if ok and np.abs(fit.params[1:]).max() < MAX_LOGIT else None


def _separated(col: np.ndarray, y: np.ndarray) -> bool:
    """A 0/1 property whose studies of one level all score 0 (or all 1): its odds ratio is 0 or infinite."""
    if not np.isin(col, (0.0, 1.0)).all():
        return False
    return any(np.all(y[col == v] == 0) or np.all(y[col == v] == 1) for v in (0.0, 1.0) if (col == v).any())


def _independent(x: np.ndarray, cols: Sequence[int], names: Sequence[str]) -> list[str]:
    """The names of ``cols`` that, taken in order, each add a dimension beside the constant and the ones
    kept before (a property that is a linear combination of others is not identifiable and gets NaN)."""
    kept: list[int] = []
    base = np.ones((x.shape[0], 1))
    for j in cols:
        trial = np.column_stack([base, x[:, kept + [j]]])
        if np.linalg.matrix_rank(trial) == trial.shape[1]:
            kept.append(j)
    return [names[j] for j in kept]


def _nan3() -> tuple[float, float, float]:
    nan = float("nan")
    return nan, nan, nan


def fit_risk_factors(
    props: pd.DataFrame,
    outcome: np.ndarray,
    patient_ids: Any = None,
    *,
    level: float = 0.95,
    adjusted: Sequence[str] = ADJUSTED_FEATURES,
    truth: pd.DataFrame | None = None,
    truth_columns: Mapping[str, str] = GROUND_TRUTH,
    n_boot: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """The per-study model of a per-query outcome in [0, 1] (e.g. expected Recall@1 at N = 100), both forms.

    For each feature of :data:`FEATURES`: the marginal fractional logit (the feature alone) and, for
    the features in ``adjusted`` (default :data:`ADJUSTED_FEATURES`: all but report length), the
    adjusted one (all of ``adjusted`` together); odds ratios and average marginal effects with Wald
    intervals at ``level`` from standard errors cluster-robust by ``patient_ids`` (``None``: by query).

    Not estimable (NaN): a feature constant in the data; a yes/no feature one of whose levels scores
    all 0 (or all 1: its odds ratio is 0 or infinite); in the adjusted fit, a feature that is a linear
    combination of the features before it; any fit whose estimate does not exist (no convergence, a
    singular covariance, a coefficient beyond :data:`MAX_LOGIT`).

    ``truth`` (a synthetic cohort's generator flags, row for row): for every property in
    ``truth_columns`` whose flag column it holds, the marginal odds ratio of the generator's own flag
    (``or_truth``); ``expected_sign`` is ``+`` for :data:`EXPECTED_POSITIVE`. Returns
    :data:`RISK_COLUMNS`. ``n_boot``, ``seed``: unused (the intervals are analytic); accepted from
    callers of the earlier bootstrap version.
    """
    names = list(FEATURES)
    bad = [f for f in adjusted if f not in names]
    if bad:
        raise ValueError(f"adjusted: {bad} are not features of the model (expected a subset of {names})")
    x = _columns(props, names)
    y = np.asarray(outcome, dtype=np.float64)
    if y.shape != (x.shape[0],):
        raise ValueError(f"outcome: expected shape ({x.shape[0]},) (one value per query), got {y.shape}")
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    if y.size < len(names) + 2:
        raise ValueError(
            f"outcome: {y.size} finite values, expected at least {len(names) + 2} to fit {len(names)} effects"
        )
    if y.min() < 0 or y.max() > 1:
        raise ValueError("outcome: expected values in [0, 1] (a per-query expected recall)")
    groups = _clusters(patient_ids, len(keep))[keep]
    varying = (x.std(axis=0) > 0) & np.array([not _separated(x[:, j], y) for j in range(x.shape[1])])
    fittable = y.max() > y.min()  # a constant outcome has no effects to estimate
    marginal: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {}
    for j, name in enumerate(names):
        if not (varying[j] and fittable):
            marginal[name] = (_nan3(), _nan3())
            continue
        fit = _try_fit(x[:, [j]], y, groups, [name])
        marginal[name] = (fit.odds_ratio(name, level), fit.marginal_effect(name, level)) if fit else (_nan3(), _nan3())
    adj_names = _independent(x, [names.index(f) for f in adjusted if varying[names.index(f)]], names)
    adj: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {}
    if adj_names and fittable:
        fit = _try_fit(x[:, [names.index(f) for f in adj_names]], y, groups, adj_names)
        adj = {f: (fit.odds_ratio(f, level), fit.marginal_effect(f, level)) for f in adj_names} if fit else {}
    truth_or: dict[str, tuple[float, float, float]] = {}
    truth_held: set[str] = set()
    if truth is not None:
        if len(truth) != len(keep):
            raise ValueError(f"truth: expected {len(keep)} rows (one per query), got {len(truth)}")
        for prop, col in truth_columns.items():
            if col not in truth.columns:
                continue
            truth_held.add(prop)
            flag = truth[col].fillna(False).to_numpy(dtype=np.float64)[keep]
            if flag.std() > 0 and fittable and not _separated(flag, y):
                tfit = _try_fit(flag, y, groups, [col])
                truth_or[prop] = tfit.odds_ratio(col, level) if tfit else _nan3()
    rows = []
    for j, name in enumerate(names):
        (om, am), (oa, aa) = marginal[name], adj.get(name, (_nan3(), _nan3()))
        ot = truth_or.get(name, _nan3())
        rows.append(
            {
                "feature": name,
                "label": PROPERTY_LABELS[name],
                "mean": float(x[:, j].mean()),
                **dict(zip(("or_marginal", "or_marginal_ci_low", "or_marginal_ci_high"), om)),
                **dict(zip(("ame_marginal", "ame_marginal_ci_low", "ame_marginal_ci_high"), am)),
                **dict(zip(("or_adjusted", "or_adjusted_ci_low", "or_adjusted_ci_high"), oa)),
                **dict(zip(("ame_adjusted", "ame_adjusted_ci_low", "ame_adjusted_ci_high"), aa)),
                "expected_sign": "+" if name in EXPECTED_POSITIVE else "",
                "truth_column": truth_columns[name] if name in truth_held else "",
                **dict(zip(("or_truth", "or_truth_ci_low", "or_truth_ci_high"), ot)),
                "n": int(y.size),
                "n_patients": int(np.unique(groups).size),
                "mean_outcome": float(y.mean()),
            }
        )
    return pd.DataFrame(rows, columns=list(RISK_COLUMNS))


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
