"""Zero-shot label AUROC from text prompts.

For each of the 14 labels the image embedding is scored against a positive prompt
("pleural effusion") and a negative prompt ("no pleural effusion"): the score is
``cos(image, positive) - cos(image, negative)`` (mode ``"contrast"``, the logit of the
two-way softmax up to the temperature, which AUROC ignores) or ``cos(image, positive)``
(mode ``"positive"``). AUROC is computed per label over the images whose label is 1
(positive) or 0 (negative); **uncertain (-1) and missing (NaN) labels are left out** of that
label's AUROC. A label with no positive or no negative image gets AUROC NaN and is left out
of the macro mean (``n_pos`` / ``n_neg`` say why).

Works through any heads: pass a :class:`~relink_lib.models.base.DualEncoder` (its own heads),
or an encoder plus other ``image_head`` / ``text_head`` (e.g. the DP heads), or precomputed
prompt features.
"""

from __future__ import annotations

from typing import Mapping, Sequence, Union

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from ..cohorts.base import Cohort
from ..config import ProfileLike
from ..features import get_features
from ..labels import CHEXPERT_LABELS
from ..models.base import DualEncoder
from ..models.stage import Rung

MODES: tuple[str, ...] = ("contrast", "positive")

Prompts = Mapping[str, tuple[Union[str, Sequence[str]], Union[str, Sequence[str]]]]
"""``label -> (positive, negative)`` prompts, each a string or a list of strings."""

PromptFeatures = Mapping[str, tuple[np.ndarray, np.ndarray]]
"""``label -> (positive prompt features (p, d_txt), negative prompt features (q, d_txt))``."""


def default_prompts(labels: Sequence[str] = CHEXPERT_LABELS) -> dict[str, tuple[list[str], list[str]]]:
    """``label -> ([positive prompts], [negative prompts])`` in the words of the reports.

    Positive: the label in lower case ("pleural effusion"); negative: "no pleural effusion".
    ``No Finding`` reads "no acute cardiopulmonary process" vs "abnormal findings".
    """
    out: dict[str, tuple[list[str], list[str]]] = {}
    for label in labels:
        name = label.lower()
        if label == "No Finding":
            out[label] = (["no finding", "no acute cardiopulmonary process"], ["abnormal findings"])
        else:
            out[label] = ([name], [f"no {name}"])
    return out


def _as_list(value: str | Sequence[str], where: str) -> list[str]:
    items = [value] if isinstance(value, str) else list(value)
    if not items or not all(isinstance(v, str) and v for v in items):
        raise ValueError(f"prompts[{where!r}]: expected a non-empty string or list of strings")
    return items


def _head_apply(head: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    param = next(iter(head.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    with torch.no_grad():
        out = head(torch.as_tensor(np.asarray(x, dtype=np.float32)).to(device, dtype)).float().cpu().numpy()
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def zero_shot_auroc(
    encoder: DualEncoder | None,
    image_features: np.ndarray | torch.Tensor,
    label_matrix: np.ndarray | pd.DataFrame,
    prompts: Prompts | None = None,
    *,
    image_head: torch.nn.Module | None = None,
    text_head: torch.nn.Module | None = None,
    prompt_features: PromptFeatures | None = None,
    labels: Sequence[str] = CHEXPERT_LABELS,
    mode: str = "contrast",
) -> pd.DataFrame:
    """Per-label zero-shot AUROC and their macro mean.

    encoder: a DualEncoder (supplies ``text_features`` for the prompts and, unless overridden,
    the heads); may be ``None`` when ``prompt_features`` and both heads are given.
    image_features: pre-projection image features ``(n, d_img)`` (e.g. ``Features.image``).
    label_matrix: ``(n, len(labels))`` with 1 / 0 / -1 / NaN (a DataFrame is read by ``labels``).
    prompts: ``label -> (positive, negative)``, each a string or list of strings (embeddings of a
    list are averaged, then re-normalised); default :func:`default_prompts`.
    prompt_features: ``label -> (pos_features (p, d_txt), neg_features (q, d_txt))`` instead of
    running the text tower. mode: ``"contrast"`` or ``"positive"`` (see the module docstring).

    Returns a DataFrame with one row per label (``label, auroc, n_pos, n_neg, n_excluded``) and a
    final row ``label == "macro"`` whose ``auroc`` is the mean over labels with a defined AUROC.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: expected one of {MODES}")
    labels = list(labels)
    if isinstance(label_matrix, pd.DataFrame):
        missing = [c for c in labels if c not in label_matrix.columns]
        if missing:
            raise ValueError(f"label_matrix: missing label columns {missing}")
        y_all = label_matrix[labels].to_numpy(dtype=np.float64)
    else:
        y_all = np.asarray(label_matrix, dtype=np.float64)
    feats = (
        image_features.detach().cpu().numpy()
        if isinstance(image_features, torch.Tensor)
        else np.asarray(image_features)
    )
    if feats.ndim != 2:
        raise ValueError(f"image_features: expected a 2-D array (n, d_img), got shape {feats.shape}")
    if y_all.shape != (len(feats), len(labels)):
        raise ValueError(
            f"label_matrix: expected shape ({len(feats)}, {len(labels)}) (one row per image, one column per label), "
            f"got {y_all.shape}"
        )
    bad = ~np.isnan(y_all) & ~np.isin(y_all, (1.0, 0.0, -1.0))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(
            f"label_matrix: row {r} column {labels[c]!r} has value {float(y_all[r, c])!r}; expected 1, 0, -1 or NaN"
        )
    image_head = image_head if image_head is not None else getattr(encoder, "image_head", None)
    text_head = text_head if text_head is not None else getattr(encoder, "text_head", None)
    if image_head is None or text_head is None:
        raise ValueError("image_head/text_head: give an encoder or both heads")
    if prompt_features is None:
        if encoder is None or not hasattr(encoder, "text_features"):
            raise ValueError("encoder: needed to embed the prompts when prompt_features is not given")
        prompts = default_prompts(labels) if prompts is None else prompts
        missing = [c for c in labels if c not in prompts]
        if missing:
            raise ValueError(f"prompts: no prompts for labels {missing}")
        embedded: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for label in labels:
            pos, neg = prompts[label]
            pos_l, neg_l = _as_list(pos, label), _as_list(neg, label)
            tf = encoder.text_features(pos_l + neg_l).numpy()
            embedded[label] = (tf[: len(pos_l)], tf[len(pos_l) :])
        prompt_features = embedded
    img = _head_apply(image_head, feats)
    rows = []
    for j, label in enumerate(labels):
        if label not in prompt_features:
            raise ValueError(f"prompt_features: no entry for label {label!r}")
        pos_f, neg_f = (np.atleast_2d(np.asarray(a, dtype=np.float32)) for a in prompt_features[label])
        pos = _head_apply(text_head, pos_f).mean(0)
        pos /= max(np.linalg.norm(pos), 1e-12)
        score = img @ pos
        if mode == "contrast":
            neg = _head_apply(text_head, neg_f).mean(0)
            neg /= max(np.linalg.norm(neg), 1e-12)
            score = score - img @ neg
        y = y_all[:, j]
        keep = (y == 1) | (y == 0)
        n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
        auroc = float(roc_auc_score(y[keep], score[keep])) if n_pos and n_neg else float("nan")
        rows.append({"label": label, "auroc": auroc, "n_pos": n_pos, "n_neg": n_neg, "n_excluded": int((~keep).sum())})
    df = pd.DataFrame(rows)
    defined = df["auroc"].dropna()
    macro = {
        "label": "macro",
        "auroc": float(defined.mean()) if len(defined) else float("nan"),
        "n_pos": int(df["n_pos"].sum()),
        "n_neg": int(df["n_neg"].sum()),
        "n_excluded": int(df["n_excluded"].sum()),
    }
    return pd.concat([df, pd.DataFrame([macro])], ignore_index=True)


def zero_shot_by_rung(
    params: ProfileLike,
    cohort: Cohort,
    rungs: Sequence[Rung],
    split: str = "test",
    prompts: Prompts | None = None,
    mode: str = "contrast",
) -> pd.DataFrame:
    """Zero-shot AUROC of every rung on ``split`` of ``cohort`` from cached features.

    Returns the long table ``rung, rung_index, label, auroc, n_pos, n_neg, n_excluded`` (the
    ``macro`` row included per rung).
    """
    out = []
    for rung in rungs:
        feats = get_features(params, cohort, rung, split)
        encoder = rung.load(device="cpu")
        labels = cohort.pairs.iloc[feats.rows][list(CHEXPERT_LABELS)]
        df = zero_shot_auroc(encoder, feats.image, labels, prompts, mode=mode)
        df.insert(0, "rung_index", rung.index)
        df.insert(0, "rung", rung.name)
        out.append(df)
    return pd.concat(out, ignore_index=True)
