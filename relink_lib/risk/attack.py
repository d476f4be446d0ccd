"""The gradient-access reconstruction: reconstruct a training pair's feature from its own head update.

The attacker has gradient access: it sees one pair's individual clipped, noisy per-sample update
(not the released weights, not a batch sum). Chapter 9 names it for that and never calls it
"realistic", which is what Ziller et al. (2024) call an attacker of the trained model.

A linear head z = W x (W of shape (d_out, d_in)) has the per-sample gradient
dL/dW = outer(dL/dz, x): rank one, its right singular vector is the pre-projection feature
x up to sign and scale. DP-SGD clips it to Frobenius norm C and releases it with Gaussian noise
of standard deviation sigma C per entry. The adversary here intercepts the update that carries the
target's contribution (a client that trains on one pair per step, or an adversary who can subtract
the rest of the batch) and

1. takes the top right singular vector of the noisy update as the reconstruction x_hat;
2. counts a success when x_hat re-identifies the target's image among ``n_candidates``
   pre-projection image features (the target and N - 1 other training images drawn at random;
   largest |cosine|, ties against the target, chance 1 / N), and separately when
   |cos(x_hat, x)| >= ``cos_threshold``.

With ``n_updates`` > 1 the adversary sums that many releases of the same contribution (noise
std grows as sqrt(n), the signal as n). Nothing here needs the loss: any per-sample gradient of a
head's first linear layer works, rank one or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:  # annotations only: the attack runs on numpy (tensors are converted on entry)
    import torch

__all__ = ["AttackResult", "clip_per_sample", "release_updates", "reconstruct_features", "gradient_inversion_attack"]

DEFAULT_COS_THRESHOLD = 0.5


def _to_numpy(x: np.ndarray | torch.Tensor, name: str, ndim: int) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected a {ndim}-d array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


def clip_per_sample(
    grads: np.ndarray | torch.Tensor, max_grad_norm: float | None, norms: np.ndarray | torch.Tensor | None = None
) -> np.ndarray:
    """Scale each ``grads[i]`` by min(1, C / norms[i]) (None: no clipping).

    ``norms`` (n,): the norm the trainer clips (e.g. over both heads together); default the
    Frobenius norm of ``grads[i]`` itself.
    """
    g = _to_numpy(grads, "grads", 3)
    if max_grad_norm is None:
        return g
    if not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm={max_grad_norm!r}: expected > 0 or None")
    if norms is None:
        norms = np.sqrt(np.einsum("nij,nij->n", g, g))
    else:
        norms = _to_numpy(norms, "norms", 1)
        if norms.shape[0] != g.shape[0]:
            raise ValueError(f"norms: expected {g.shape[0]} values (one per gradient), got {norms.shape[0]}")
    scale = np.minimum(1.0, max_grad_norm / np.maximum(norms, 1e-30))
    return g * scale[:, None, None]


def release_updates(
    clipped: np.ndarray,
    *,
    noise_multiplier: float,
    max_grad_norm: float | None,
    rng: np.random.Generator,
    n_updates: int = 1,
) -> np.ndarray:
    """What the adversary sees: ``n_updates`` x contribution + N(0, n_updates sigma^2 C^2) per entry.

    ``clipped``: ``(n, d_out, d_in)``. Noise needs a clip norm (``max_grad_norm=None`` and
    ``noise_multiplier=0`` is non-private training: the update is released as is).
    """
    if noise_multiplier < 0 or math.isnan(noise_multiplier):
        raise ValueError(f"noise_multiplier={noise_multiplier!r}: expected >= 0")
    if n_updates < 1:
        raise ValueError(f"n_updates={n_updates!r}: expected >= 1")
    if noise_multiplier > 0 and max_grad_norm is None:
        raise ValueError("max_grad_norm=None with noise_multiplier > 0: noise is calibrated to the clip norm")
    out = n_updates * clipped.astype(np.float64, copy=True)
    if noise_multiplier > 0:
        assert max_grad_norm is not None  # refused above
        if math.isinf(noise_multiplier):
            return rng.standard_normal(
                out.shape
            )  # signal is nothing against infinite noise: only the direction matters
        out += rng.standard_normal(out.shape) * (noise_multiplier * max_grad_norm * math.sqrt(n_updates))
    return out


#: Above this smaller side, the top singular vector comes from block subspace iteration.
_EXACT_MAX_SIDE = 256


def _top_right_exact(u: np.ndarray) -> np.ndarray:
    if u.shape[1] <= u.shape[2]:
        # the top eigenvector of the small Gram U U^T is the left vector; map it through U^T
        _, vecs = np.linalg.eigh(np.einsum("nij,nkj->nik", u, u))
        return np.einsum("nij,ni->nj", u, vecs[:, :, -1])
    _, vecs = np.linalg.eigh(np.einsum("nji,njk->nik", u, u))
    return vecs[:, :, -1]


def _top_right_subspace(u: np.ndarray, block: int = 8, n_iter: int = 12, seed: int = 0) -> np.ndarray:
    """Block power iteration on U^T U with a Rayleigh-Ritz step (for large heads, e.g. 512 x 768)."""
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((u.shape[0], u.shape[2], block))
    for _ in range(n_iter):
        v, _ = np.linalg.qr(np.einsum("nji,njk->nik", u, np.einsum("nij,njk->nik", u, v)))
    uv = np.einsum("nij,njk->nik", u, v)  # (n, d_out, block)
    _, vecs = np.linalg.eigh(np.einsum("nji,njk->nik", uv, uv))
    return np.einsum("nij,nj->ni", v, vecs[:, :, -1])


def reconstruct_features(updates: np.ndarray) -> np.ndarray:
    """Unit reconstructions ``(n, d_in)``: the top right singular vector of each ``updates[i]``.

    Exact (Gram eigen-decomposition of the smaller side) up to a smaller side of 256; above,
    block subspace iteration, which converges to the same vector whenever it is well separated.
    """
    u = _to_numpy(updates, "updates", 3).astype(np.float64, copy=False)
    # many small LAPACK calls: one BLAS thread each is far faster than a contended pool
    with threadpool_limits(limits=1, user_api="blas"):
        if min(u.shape[1], u.shape[2]) <= _EXACT_MAX_SIDE:
            return _unit(_top_right_exact(u))
        return _unit(_top_right_subspace(u))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-30)


@dataclass(frozen=True)
class AttackResult:
    """Success rates over the attacked targets (fractions in [0, 1]; as a dict: ``dataclasses.asdict``)."""

    n_targets: int
    n_candidates: int
    chance: float
    reidentification_rate: float
    cosine_rate: float
    cos_threshold: float
    mean_abs_cos: float
    noise_multiplier: float


def gradient_inversion_attack(
    per_sample_grads: np.ndarray | torch.Tensor,
    features: np.ndarray | torch.Tensor,
    target_index: np.ndarray,
    *,
    noise_multiplier: float,
    max_grad_norm: float | None,
    n_candidates: int,
    cos_threshold: float = DEFAULT_COS_THRESHOLD,
    n_updates: int = 1,
    clip_norms: np.ndarray | torch.Tensor | None = None,
    seed: int = 0,
) -> AttackResult:
    """Run the attack on ``len(target_index)`` targets.

    ``per_sample_grads``: ``(n_targets, d_out, d_in)``, row j the gradient of the head's linear
    layer for the pair ``features[target_index[j]]``; ``features``: ``(n, d_in)`` pre-projection
    image features of the training images (the candidate pool, n >= n_candidates).
    ``clip_norms`` (n_targets,): the per-sample norms the trainer clips by when it clips several
    heads together (default: the norm of ``per_sample_grads[j]``).
    """
    grads = _to_numpy(per_sample_grads, "per_sample_grads", 3)
    feats = _to_numpy(features, "features", 2)
    idx = np.asarray(target_index)
    if idx.ndim != 1 or idx.shape[0] != grads.shape[0] or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(
            f"target_index: expected {grads.shape[0]} integer row indices (one per gradient), got shape {idx.shape}"
        )
    if np.any(idx < 0) or np.any(idx >= feats.shape[0]):
        raise ValueError(f"target_index: indices must lie in [0, {feats.shape[0]})")
    if grads.shape[2] != feats.shape[1]:
        raise ValueError(f"per_sample_grads has d_in={grads.shape[2]} but features have {feats.shape[1]} columns")
    if not 2 <= n_candidates <= feats.shape[0]:
        raise ValueError(f"n_candidates={n_candidates!r}: expected 2 <= N <= {feats.shape[0]} (rows of features)")
    if not 0.0 < cos_threshold <= 1.0:
        raise ValueError(f"cos_threshold={cos_threshold!r}: expected in (0, 1]")
    rng = np.random.default_rng(seed)
    released = release_updates(
        clip_per_sample(grads, max_grad_norm, clip_norms),
        noise_multiplier=noise_multiplier,
        max_grad_norm=max_grad_norm,
        rng=rng,
        n_updates=n_updates,
    )
    x_hat = reconstruct_features(released)
    unit_feats = _unit(feats.astype(np.float64))
    hits = np.zeros(len(idx), dtype=bool)
    cos_true = np.zeros(len(idx))
    for j, t in enumerate(idx):
        others = rng.choice(feats.shape[0] - 1, size=n_candidates - 1, replace=False)
        others = others + (others >= t)  # skip the target itself
        true_cos = abs(float(unit_feats[t] @ x_hat[j]))
        other_cos = np.abs(unit_feats[others] @ x_hat[j])
        hits[j] = bool(np.all(other_cos < true_cos))  # ties count against the target
        cos_true[j] = true_cos
    return AttackResult(
        n_targets=int(len(idx)),
        n_candidates=int(n_candidates),
        chance=1.0 / n_candidates,
        reidentification_rate=float(hits.mean()),
        cosine_rate=float(np.mean(cos_true >= cos_threshold)),
        cos_threshold=float(cos_threshold),
        mean_abs_cos=float(cos_true.mean()),
        noise_multiplier=float(noise_multiplier),
    )
