"""Image-side linear probe: per-label logistic regression on image embeddings, AUROC on held-out patients.

Protocol (stated in chapter 7):

- inputs: L2-normalised image embeddings (the heads' output), standardised per dimension on the
  probe's training rows, then one scikit-learn ``LogisticRegression`` (L2, ``C``; solver lbfgs, or
  newton-cholesky for the same objective where many probes are fit: chapters 6-8) per label;
- labels: 1 = positive, 0 = negative; **missing (NaN, not mentioned) counts as negative** and
  **uncertain (-1) is left out** of that label's training and test rows (``uncertain="ignore"``,
  the U-Ignore policy; ``"positive"`` / ``"negative"`` map it instead);
- train and test rows come from disjoint patients (the cohort's patient-level splits, or
  :func:`patient_split`); a label without both classes in train or test gets AUROC NaN and is left
  out of the macro mean (the table says how many labels it averages).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ..labels import CHEXPERT_LABELS

UNCERTAIN_POLICIES = ("ignore", "positive", "negative")
PROBE_SOLVERS = ("lbfgs", "newton-cholesky")


def binarize_labels(
    label_matrix: ArrayLike, uncertain: str = "ignore", n_labels: int = len(CHEXPERT_LABELS)
) -> np.ndarray:
    """Map 1 / 0 / -1 / NaN labels to 1 / 0 / NaN (NaN = left out) following the protocol above.

    Returns float ``(n, n_labels)``. Raises ``ValueError`` naming the first bad cell.
    """
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain: expected one of {UNCERTAIN_POLICIES}, got {uncertain!r}")
    y = np.asarray(label_matrix, dtype=np.float64)
    if y.ndim != 2 or y.shape[1] != n_labels:
        raise ValueError(f"label_matrix: expected shape (n, {n_labels}), got {y.shape}")
    bad = ~np.isnan(y) & ~np.isin(y, (1.0, 0.0, -1.0))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"label_matrix: row {r} column {c} has value {y[r, c]!r}; expected 1, 0, -1 or NaN")
    out = np.where(np.isnan(y), 0.0, y)
    out[y == -1] = {"ignore": np.nan, "positive": 1.0, "negative": 0.0}[uncertain]
    return out


def patient_split(patient_ids: ArrayLike, test_fraction: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (train, test) masks over rows with no patient on both sides."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction: expected a value in (0, 1), got {test_fraction}")
    ids = np.asarray(patient_ids)
    uniq = np.unique(ids)
    if len(uniq) < 2:
        raise ValueError("patient_ids: need at least 2 distinct patients for a patient-level split")
    rng = np.random.default_rng(seed)
    n_test = min(len(uniq) - 1, max(1, int(round(test_fraction * len(uniq)))))
    test_patients = rng.choice(uniq, size=n_test, replace=False)
    test = np.isin(ids, test_patients)
    return ~test, test


def linear_probe_auroc(
    train_emb: ArrayLike,
    train_labels: ArrayLike,
    test_emb: ArrayLike,
    test_labels: ArrayLike,
    *,
    C: float = 1.0,
    uncertain: str = "ignore",
    labels: Sequence[str] = CHEXPERT_LABELS,
    max_iter: int = 2000,
    solver: str = "lbfgs",
) -> pd.DataFrame:
    """Per-label and macro AUROC of logistic-regression probes on image embeddings.

    ``train_emb`` (n_tr, d), ``test_emb`` (n_te, d); labels ``(n, len(labels))`` with 1 / 0 / -1 / NaN.
    Returns one row per label (``label, auroc, n_train_pos, n_train_neg, n_test_pos, n_test_neg``)
    and a final ``label == "macro"`` row (mean over labels with a defined AUROC; ``n_labels``).
    ``solver``: see :func:`linear_probe_aurocs`.
    """
    n_tr, n_te = len(np.asarray(train_emb)), len(np.asarray(test_emb))
    n_ytr, n_yte = len(np.asarray(train_labels)), len(np.asarray(test_labels))
    if (n_ytr, n_yte) != (n_tr, n_te):
        raise ValueError(
            f"train_labels/test_labels: expected {n_tr} and {n_te} rows (one per embedding), got {n_ytr} and {n_yte}"
        )
    return linear_probe_aurocs(
        train_emb,
        train_labels,
        {"test": (test_emb, test_labels)},
        C=C,
        uncertain=uncertain,
        labels=labels,
        max_iter=max_iter,
        solver=solver,
    )["test"]


def linear_probe_aurocs(
    train_emb: ArrayLike,
    train_labels: ArrayLike,
    test_sets: Mapping[str, tuple[ArrayLike, ArrayLike]],
    *,
    C: float = 1.0,
    uncertain: str = "ignore",
    labels: Sequence[str] = CHEXPERT_LABELS,
    max_iter: int = 2000,
    solver: str = "lbfgs",
) -> dict[str, pd.DataFrame]:
    """:func:`linear_probe_auroc` for several test sets: one fit per label, scored on each ``(emb, labels)``.

    Returns ``name -> table`` as :func:`linear_probe_auroc` (the same probes score every test set).
    ``solver``: scikit-learn's, ``"lbfgs"`` or ``"newton-cholesky"`` (the same convex objective;
    Newton is faster on the ill-conditioned standardised embeddings, the frontier uses it).
    """
    if solver not in PROBE_SOLVERS:
        raise ValueError(f"solver: expected one of {PROBE_SOLVERS}, got {solver!r}")
    labels = list(labels)
    if not test_sets:
        raise ValueError("test_sets: expected at least one (test_emb, test_labels) pair")
    xtr = np.asarray(train_emb, dtype=np.float64)
    if xtr.ndim != 2 or not np.isfinite(xtr).all():
        raise ValueError(f"train_emb: expected a finite 2-D array (n, d), got shape {xtr.shape}")
    if not C > 0:
        raise ValueError(f"C: expected a value > 0, got {C}")
    ytr = binarize_labels(train_labels, uncertain, len(labels))
    if len(ytr) != len(xtr):
        raise ValueError(f"train_labels: expected {len(xtr)} rows (one per embedding), got {len(ytr)}")
    tests = {}
    for name, (emb, lab) in test_sets.items():
        xte = np.asarray(emb, dtype=np.float64)
        where = "test_emb" if name == "test" else f"test_sets[{name!r}] embeddings"
        if xte.ndim != 2 or not np.isfinite(xte).all():
            raise ValueError(f"{where}: expected a finite 2-D array (n, d), got shape {xte.shape}")
        if xte.shape[1] != xtr.shape[1]:
            raise ValueError(f"{where}: expected {xtr.shape[1]} columns like train_emb, got {xte.shape[1]}")
        yte = binarize_labels(lab, uncertain, len(labels))
        if len(yte) != len(xte):
            raise ValueError(f"test_labels: expected {len(xte)} rows (one per embedding), got {len(yte)}")
        tests[name] = (xte, yte)
    scaler = StandardScaler().fit(xtr)
    ztr = scaler.transform(xtr)
    zte = {name: scaler.transform(x) for name, (x, _) in tests.items()}
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in tests}
    with threadpool_limits(limits=1):  # small dense problems: BLAS threads would only contend
        for j, label in enumerate(labels):
            for name, row in _fit_label(
                ztr, ytr[:, j], {n: (zte[n], tests[n][1][:, j]) for n in tests}, label, C, max_iter, solver
            ).items():
                rows[name].append(row)
    out = {}
    for name, r in rows.items():
        df = pd.DataFrame(r)
        defined = df["auroc"].dropna()
        macro = {
            "label": "macro",
            "auroc": float(defined.mean()) if len(defined) else np.nan,
            "n_train_pos": int(df["n_train_pos"].sum()),
            "n_train_neg": int(df["n_train_neg"].sum()),
            "n_test_pos": int(df["n_test_pos"].sum()),
            "n_test_neg": int(df["n_test_neg"].sum()),
        }
        df = pd.concat([df, pd.DataFrame([macro])], ignore_index=True)
        df["n_labels"] = len(defined)
        out[name] = df
    return out


def _fit_label(
    ztr: np.ndarray,
    ytr: np.ndarray,
    tests: Mapping[str, tuple[np.ndarray, np.ndarray]],
    label: str,
    C: float,
    max_iter: int,
    solver: str = "lbfgs",
) -> dict[str, dict[str, Any]]:
    """One label's probe: fit on rows with a defined label, AUROC on each test set's rows with one."""
    mtr = ~np.isnan(ytr)
    a = ytr[mtr]
    n_pos, n_neg = int(a.sum()), int((a == 0).sum())
    clf = None
    out = {}
    for name, (zte, yte) in tests.items():
        mte = ~np.isnan(yte)
        b = yte[mte]
        row: dict[str, Any] = {
            "label": label,
            "auroc": np.nan,
            "n_train_pos": n_pos,
            "n_train_neg": n_neg,
            "n_test_pos": int(b.sum()),
            "n_test_neg": int((b == 0).sum()),
        }
        if min(n_pos, n_neg, row["n_test_pos"], row["n_test_neg"]) > 0:
            if clf is None:
                clf = LogisticRegression(C=C, max_iter=max_iter, solver=solver).fit(ztr[mtr], a)
            row["auroc"] = float(roc_auc_score(b, clf.decision_function(zte[mte])))
        out[name] = row
    return out
