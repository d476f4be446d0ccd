"""Adaptive re-linkage attacks on pre-projection features (chapter 11): pure functions, fit on public pairs only.

The encoders are frozen and released, so an attacker who holds them and ``m`` public image-report pairs can
replace the released projection heads. Every attack here is fit on the public pairs it is given and returns a
map from pre-projection (image, text) features to a joint space where the cosine scores a candidate pair:

- :func:`ridge_attack`: the closed-form linear map image -> text features, ridge regression on centred features
  with penalty ``lambda = alpha * trace(Xc^T Xc) / d_img`` (``alpha`` relative, stated in the profile; one
  solve, in the primal or the dual, whichever is smaller);
- :func:`cca_attack`: regularised CCA (each covariance plus ``reg * trace / d`` times the identity), the first
  ``k = min(n_components, m - 1, d_img, d_txt)`` canonical pairs, each weighted by the square root of its
  canonical correlation;
- :func:`train_heads_attack`: projection heads trained by the project's own contrastive objective
  (:func:`relink_lib.dp.train.train_heads`), non-privately, with the public pairs as both training set and bank;
  from fresh heads (new heads) or from the released heads (fine-tuning);
- :func:`text_side_attack`: for an image-only release (no text tower): the attacker's own report features, TF-IDF
  of the report text with a vocabulary built from the public reports alone, mapped by ridge regression into the
  released image embedding space; a candidate report scores the cosine of its mapped TF-IDF vector with the
  image's released embedding.

With no public pair (``m = 0``) the closed-form attacks score every candidate alike: chance. Nothing here reads
a test pair; :func:`check_disjoint` refuses fit rows that overlap the evaluated rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..config import DPConfig
from ..dp.batched import train_heads_seeds

__all__ = [
    "LinearAttack",
    "check_disjoint",
    "ridge_attack",
    "cca_attack",
    "train_heads_attack",
    "train_heads_attacks",
    "TextSideAttack",
    "text_side_attack",
    "embed_text_side",
    "embed_image",
    "embed_linear",
    "embed_with_heads",
]


@dataclass(frozen=True, eq=False)
class LinearAttack:
    """A fitted closed-form attack: ``embed(x, t) = (normalise((x - image_mean) @ image_map),
    normalise((t - text_mean) @ text_map))``; ``name`` (``ridge`` / ``cca``), ``m`` public pairs it was fit on,
    ``penalty``: the absolute ridge / CCA regularisation used."""

    name: str
    m: int
    image_mean: np.ndarray
    text_mean: np.ndarray
    image_map: np.ndarray
    text_map: np.ndarray
    penalty: float


def check_disjoint(fit_ids: Sequence[Any] | np.ndarray, eval_ids: Sequence[Any] | np.ndarray, what: str) -> None:
    """Raise ``ValueError`` when a row id the attack is fit on is also an evaluated (test) row id."""
    common = set(np.asarray(fit_ids).tolist()) & set(np.asarray(eval_ids).tolist())
    if common:
        raise ValueError(
            f"{what}: {len(common)} fit row(s) are also evaluated rows (e.g. {sorted(common)[:3]}); "
            "an attack is fit on public pairs only, never on the pairs it is scored on"
        )


def _as2d(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n, d), got shape {a.shape}")
    return a


def _check_pairs(x_img: np.ndarray, x_txt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, t = _as2d(x_img, "x_img"), _as2d(x_txt, "x_txt")
    if x.shape[0] != t.shape[0]:
        raise ValueError(f"x_img/x_txt: expected the same number of pairs, got {x.shape[0]} and {t.shape[0]}")
    return x, t


def _chance_attack(name: str, d_img: int, d_txt: int, m: int) -> LinearAttack:
    """Scores every candidate 0: with random tie-breaking, chance."""
    return LinearAttack(name, m, np.zeros(d_img), np.zeros(d_txt), np.zeros((d_img, 1)), np.zeros((d_txt, 1)), 0.0)


def _relative_penalty(xc: np.ndarray, rel: float) -> float:
    scale = float(np.sum(xc * xc)) / max(xc.shape[1], 1)
    return float(rel) * scale if scale > 0 else float(rel)


def ridge_attack(x_img: np.ndarray, x_txt: np.ndarray, alpha: float = 1e-2) -> LinearAttack:
    """Ridge map image -> text features fit on ``m`` public pairs (rows of ``x_img`` / ``x_txt``).

    ``W = argmin ||Xc W - Tc||^2 + lambda ||W||^2`` with ``lambda = alpha * trace(Xc^T Xc) / d_img``; the score
    is ``cos((x - mean_x) W, t - mean_t)``. Fewer than 2 pairs: chance.
    """
    x, t = _check_pairs(x_img, x_txt)
    m, d_img, d_txt = x.shape[0], x.shape[1], t.shape[1]
    if m < 2:
        return _chance_attack("ridge", d_img, d_txt, m)
    mx, mt = x.mean(0), t.mean(0)
    xc, tc = x - mx, t - mt
    lam = _relative_penalty(xc, alpha)
    if m < d_img:  # dual: W = Xc^T (Xc Xc^T + lam I)^-1 Tc
        w = xc.T @ np.linalg.solve(xc @ xc.T + lam * np.eye(m), tc)
    else:
        w = np.linalg.solve(xc.T @ xc + lam * np.eye(d_img), xc.T @ tc)
    return LinearAttack("ridge", m, mx, mt, w, np.eye(d_txt), lam)


def _inv_sqrt(c: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eigh(c)
    return (vecs / np.sqrt(np.clip(vals, 1e-12, None))) @ vecs.T


def cca_attack(x_img: np.ndarray, x_txt: np.ndarray, n_components: int = 64, reg: float = 1e-2) -> LinearAttack:
    """Regularised CCA fit on ``m`` public pairs: the first ``min(n_components, m - 1, d_img, d_txt)`` canonical
    directions, weighted by sqrt(canonical correlation); covariances regularised by ``reg * trace / d``. Fewer
    than 3 pairs: chance."""
    x, t = _check_pairs(x_img, x_txt)
    m, d_img, d_txt = x.shape[0], x.shape[1], t.shape[1]
    k = int(min(n_components, m - 1, d_img, d_txt))
    if m < 3 or k < 1:
        return _chance_attack("cca", d_img, d_txt, m)
    mx, mt = x.mean(0), t.mean(0)
    xc, tc = x - mx, t - mt
    lx, lt = _relative_penalty(xc, reg), _relative_penalty(tc, reg)
    cxx = xc.T @ xc + lx * np.eye(d_img)
    ctt = tc.T @ tc + lt * np.eye(d_txt)
    wx, wt = _inv_sqrt(cxx), _inv_sqrt(ctt)
    u, s, vt = np.linalg.svd(wx @ (xc.T @ tc) @ wt)
    weight = np.sqrt(np.clip(s[:k], 0.0, None))
    return LinearAttack("cca", m, mx, mt, (wx @ u[:, :k]) * weight, (wt @ vt.T[:, :k]) * weight, lx)


def _normalise(a: np.ndarray) -> np.ndarray:
    """Unit rows; an all-zero row (an attack with nothing to go on) becomes the first basis vector, so every
    candidate scores alike (chance under random tie-breaking)."""
    n = np.linalg.norm(a, axis=1, keepdims=True)
    out = a / np.clip(n, 1e-300, None)
    zero = n[:, 0] == 0
    if zero.any():
        out[zero] = 0.0
        out[zero, 0] = 1.0
    return out.astype(np.float32)


def embed_linear(attack: LinearAttack, x_img: np.ndarray, x_txt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised ``(image, report)`` embeddings of features under a closed-form attack (float32)."""
    x, t = _as2d(x_img, "x_img"), _as2d(x_txt, "x_txt")
    return _normalise((x - attack.image_mean) @ attack.image_map), _normalise((t - attack.text_mean) @ attack.text_map)


@torch.no_grad()
def embed_image(head: nn.Module, x_img: np.ndarray) -> np.ndarray:
    """L2-normalised released image embeddings ``(n, d)`` of pre-projection image features (float32)."""
    dtype = next(head.parameters()).dtype
    return _normalise(head(torch.as_tensor(np.asarray(x_img), dtype=dtype)).double().numpy())


@torch.no_grad()
def embed_with_heads(
    heads: tuple[nn.Module, nn.Module], x_img: np.ndarray, x_txt: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """L2-normalised ``(image, report)`` embeddings of features through a pair of heads (float32)."""
    out = []
    for head, x in zip(heads, (x_img, x_txt)):
        dtype = next(head.parameters()).dtype
        out.append(_normalise(head(torch.as_tensor(np.asarray(x), dtype=dtype)).double().numpy()))
    return out[0], out[1]


def train_heads_attack(
    x_img: np.ndarray,
    x_txt: np.ndarray,
    start: tuple[nn.Module, nn.Module],
    *,
    epochs: float,
    lr: float,
    batch_size: int,
    seed: int = 0,
    temperature: float = DPConfig.temperature,
) -> tuple[nn.Module, nn.Module]:
    """Heads trained non-privately (Adam) from ``start`` on ``m`` public pairs, which are also the bank of the
    objective. Fewer than 2 pairs: ``start`` unchanged (copies are not needed: heads are never modified)."""
    return train_heads_attacks(
        x_img, x_txt, [start], epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, temperature=temperature
    )[0]


def train_heads_attacks(
    x_img: np.ndarray,
    x_txt: np.ndarray,
    starts: Sequence[tuple[nn.Module, nn.Module]],
    *,
    epochs: float,
    lr: float,
    batch_size: int,
    seed: int = 0,
    temperature: float = DPConfig.temperature,
) -> list[tuple[nn.Module, nn.Module]]:
    """:func:`train_heads_attack` from each of ``starts`` on the same pairs with the same batches (one ``seed``),
    stacked into one computation (:func:`relink_lib.dp.batched.train_heads_seeds`)."""
    x, t = _check_pairs(x_img, x_txt)
    m = x.shape[0]
    if m < 2:
        return list(starts)
    config = DPConfig(
        target_epsilon=None,
        epochs=float(epochs),
        batch_size=int(min(batch_size, m)),
        lr=float(lr),
        optimizer="adam",
        seed=int(seed),
        temperature=float(temperature),
        engine="auto",
    )
    res = train_heads_seeds(
        x.astype(np.float32),
        t.astype(np.float32),
        list(starts),
        bank_text_feats=t.astype(np.float32),
        bank_image_feats=x.astype(np.float32),
        config=config,
        seeds=[int(seed)] * len(starts),
    )
    return [(r.image_head, r.text_head) for r in res]


@dataclass(frozen=True, eq=False)
class TextSideAttack:
    """A fitted text-side attack on an image-only release: ``vectorizer`` (TF-IDF fit on the ``m`` public reports;
    ``None`` when there were too few to fit), the ridge ``text_map`` (vocabulary, d) from centred TF-IDF vectors to
    the released image embeddings (mean ``text_mean`` (vocabulary,), target mean ``image_mean`` (d,)), ``penalty``
    the absolute ridge penalty."""

    m: int
    vectorizer: Any
    text_mean: np.ndarray
    image_mean: np.ndarray
    text_map: np.ndarray
    penalty: float

    @property
    def name(self) -> str:
        return "text_side"


def _tfidf() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2, dtype=np.float64)


def text_side_attack(image_emb: np.ndarray, texts: Sequence[str] | np.ndarray, alpha: float = 1e-2) -> TextSideAttack:
    """Ridge map from TF-IDF vectors of ``m`` public reports to their images' released embeddings ``image_emb``
    (m, d). The vocabulary (words and bigrams in at least two public reports) comes from the public reports only;
    the penalty is ``alpha * trace(Tc^T Tc) / vocabulary`` as in :func:`ridge_attack`. Fewer than 2 pairs, or
    no word in two public reports: chance."""
    y = _as2d(image_emb, "image_emb")
    texts = [str(t) for t in texts]
    m, d = y.shape
    if len(texts) != m:
        raise ValueError(f"texts: expected one report per image embedding ({m}), got {len(texts)}")
    empty = TextSideAttack(m, None, np.zeros(1), np.zeros(d), np.zeros((1, d)), 0.0)
    if m < 2:
        return empty
    vec = _tfidf()
    try:
        t = vec.fit_transform(texts).toarray()
    except ValueError:  # no term in two documents
        return empty
    mt, my = t.mean(0), y.mean(0)
    tc, yc = t - mt, y - my
    lam = _relative_penalty(tc, alpha)
    if m < t.shape[1]:  # dual
        w = tc.T @ np.linalg.solve(tc @ tc.T + lam * np.eye(m), yc)
    else:
        w = np.linalg.solve(tc.T @ tc + lam * np.eye(t.shape[1]), tc.T @ yc)
    return TextSideAttack(m, vec, mt, my, w, lam)


def embed_text_side(
    attack: TextSideAttack, image_emb: np.ndarray, texts: Sequence[str] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(image, report)`` unit embeddings under a text-side attack: the released image embeddings centred on the
    public images' mean, each report's centred TF-IDF vector (the attack's vocabulary) through the ridge map
    (float32). An unfitted attack maps every report to the same vector: chance."""
    y = _as2d(image_emb, "image_emb")
    if attack.vectorizer is None:
        return _normalise(y), _normalise(np.zeros((len(texts), y.shape[1])))
    t = attack.vectorizer.transform([str(x) for x in texts]).toarray()
    return _normalise(y - attack.image_mean), _normalise((t - attack.text_mean) @ attack.text_map)
