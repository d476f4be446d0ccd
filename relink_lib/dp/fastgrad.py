"""Exact per-sample gradients of the bank objective for bias-free linear heads, in factored form.

For a head ``W`` (d, D) the gradient of pair i's loss (:mod:`relink_lib.dp.objective`) is

    G_i = e_i x_i^T + f_i r_i^T - sum_j omega_ij k_j z_j^T

- ``e_i x_i^T``: through the pair's own projection ``W x_i`` (``x_i`` its raw feature);
- ``f_i r_i^T - sum_j omega_ij k_j z_j^T``: through the public bank's projections ``W z_j``
  (``k_j`` their normalised embeddings), with ``f_i`` the other modality's embedding of pair i,
  ``r_i = (w/tau) sum_j (p_ij / |W z_j|) z_j`` and ``omega_ij = (w/tau) p_ij (k_j . f_i/w) / |W z_j|``.

Because the bank is shared, the Frobenius norm of every ``G_i`` (or of a patient's sum of
them) follows from small Gram matrices (the "ghost norm" idea, using the bank's structure):
``M = (K K^T) * (Z Z^T)`` (m, m) once per step, then O(n m (d + D) + n m^2) per step, never the
(n, d, D) per-sample tensor. The clipped sum is three matrix products. Everything is exact
for the objective; the tests compare it with ``torch.func`` and with Opacus' hooks.

With ``bank_grad=False`` (the training default, see :class:`relink_lib.dp.DPConfig`) the bank's
embeddings are constants within a step and ``G_i = e_i x_i^T``: norm ``|e_i| |x_i|``, the plain
ghost-norm of a linear layer, O(n (d + D)) on top of the forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .objective import DEFAULT_TEMPERATURE, l2_normalize


@dataclass
class HeadGradFactors:
    """Factored per-sample gradients of one linear head (see the module docstring).

    Shapes: ``own_coef`` E (n, d), ``own_feat`` X (n, D); with a bank for this head
    ``cross_coef`` F (n, d), ``cross_feat`` R (n, D), ``bank_coef`` Omega (n, m),
    ``bank_emb`` K (m, d), ``bank_feat`` Z (m, D); otherwise those are ``None``.
    """

    own_coef: Tensor
    own_feat: Tensor
    cross_coef: Tensor | None = None
    cross_feat: Tensor | None = None
    bank_coef: Tensor | None = None
    bank_emb: Tensor | None = None
    bank_feat: Tensor | None = None

    @property
    def has_bank(self) -> bool:
        return self.bank_coef is not None

    def _bank(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """``(F, R, Omega, K, Z)`` of a head with a bank (:attr:`has_bank`): all set together."""
        F, R, om, K, Z = self.cross_coef, self.cross_feat, self.bank_coef, self.bank_emb, self.bank_feat
        assert F is not None and R is not None and om is not None and K is not None and Z is not None
        return F, R, om, K, Z

    def materialize(self) -> Tensor:
        """The per-sample gradients as a dense (n, d, D) tensor (memory n*d*D; for checks and attacks)."""
        g = torch.einsum("nd,nD->ndD", self.own_coef, self.own_feat)
        if self.has_bank:
            Fc, R, om, K, Z = self._bank()
            g = g + torch.einsum("nd,nD->ndD", Fc, R)
            g = g - torch.einsum("nm,md,mD->ndD", om, K, Z)
        return g

    def _own_gram(self) -> Tensor:
        """(n, n) inner products <A_i, A_i'> of the per-sample non-bank parts A_i = e x^T + f r^T."""
        E, X = self.own_coef, self.own_feat
        gram = (E @ E.T) * (X @ X.T)
        if self.has_bank:
            Fc, R = self._bank()[:2]
            gram = gram + (Fc @ Fc.T) * (R @ R.T) + (E @ Fc.T) * (X @ R.T) + (Fc @ E.T) * (R @ X.T)
        return gram

    def _own_sq(self) -> Tensor:
        """Diagonal of :meth:`_own_gram` without forming it, (n,)."""
        E, X = self.own_coef, self.own_feat
        sq = (E * E).sum(1) * (X * X).sum(1)
        if self.has_bank:
            Fc, R = self._bank()[:2]
            sq = sq + (Fc * Fc).sum(1) * (R * R).sum(1) + 2 * (E * Fc).sum(1) * (X * R).sum(1)
        return sq

    def _bank_cross(self) -> Tensor:
        """(n, m) inner products <A_i, k_j z_j^T>."""
        Fc, R, _, K, Z = self._bank()
        return (self.own_coef @ K.T) * (self.own_feat @ Z.T) + (Fc @ K.T) * (R @ Z.T)

    def bank_gram(self) -> Tensor:
        """(m, m) matrix M = (K K^T) * (Z Z^T) of inner products of the bank's rank-one terms."""
        K, Z = self._bank()[3:]
        return (K @ K.T) * (Z @ Z.T)

    def sq_norms(self, groups: Tensor | None = None, n_groups: int | None = None) -> Tensor:
        """Squared Frobenius norms of the per-sample (or per-group summed) gradients.

        ``groups`` (n,) int64 in [0, n_groups): rows with the same id are summed before the
        norm (per-patient clipping). Returns (n,) or (n_groups,).
        """
        n = self.own_coef.shape[0]
        if groups is None:
            sq = self._own_sq()
            if self.has_bank:
                om = self._bank()[2]
                sq = sq + ((om @ self.bank_gram()) * om).sum(1) - 2 * (om * self._bank_cross()).sum(1)
            return sq.clamp_min(0)
        if groups.shape != (n,):
            raise ValueError(f"groups: expected shape ({n},), got {tuple(groups.shape)}")
        n_groups = int(groups.max().item()) + 1 if n_groups is None else n_groups
        onehot = torch.zeros(n_groups, n, dtype=self.own_coef.dtype, device=self.own_coef.device)
        onehot[groups, torch.arange(n, device=groups.device)] = 1.0
        sq = ((onehot @ self._own_gram()) * onehot).sum(1)
        if self.has_bank:
            om_g = onehot @ self._bank()[2]
            sq = sq + ((om_g @ self.bank_gram()) * om_g).sum(1) - 2 * (om_g * (onehot @ self._bank_cross())).sum(1)
        return sq.clamp_min(0)

    def weighted_sum(self, weights: Tensor) -> Tensor:
        """``sum_i weights_i G_i`` as a (d, D) matrix (e.g. the clipped sum)."""
        w = weights[:, None]
        out = (self.own_coef * w).T @ self.own_feat
        if self.has_bank:
            Fc, R, om, K, Z = self._bank()
            out = out + (Fc * w).T @ R
            out = out - K.T @ ((weights @ om)[:, None] * Z)
        return out


def _bank_terms(
    query: Tensor, bank_feat: Tensor, bank_proj: Tensor, p_bank: Tensor, scale: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(F, R, Omega, K)`` of the head whose bank is ``bank_feat``, for the direction queried by ``query``.

    ``query`` (n, d) unit embeddings, ``bank_proj`` (m, d) the bank's projections, ``p_bank`` (n, m)
    the softmax probabilities of the bank entries, ``scale`` = direction weight / temperature.
    """
    norms = bank_proj.norm(dim=1).clamp_min(1e-12)
    K = bank_proj / norms[:, None]
    weighted = p_bank / norms[None, :] * scale  # (n, m)
    return query, weighted @ bank_feat, weighted * (query @ K.T), K


def head_grad_factors(
    w_img: Tensor,
    w_txt: Tensor,
    image_feats: Tensor,
    text_feats: Tensor,
    bank_text_feats: Tensor,
    bank_image_feats: Tensor | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    bank_grad: bool = True,
) -> tuple[HeadGradFactors, HeadGradFactors, Tensor]:
    """Factored per-sample gradients of both heads and the per-example losses.

    ``w_img`` (d, D_img), ``w_txt`` (d, D_txt): head weights (no bias). Features as in
    :func:`relink_lib.dp.objective.per_example_loss`. Returns ``(image_factors, text_factors, loss)``
    with ``loss`` (n,). Nothing here touches autograd state of the weights. ``bank_grad=False``:
    no gradient through the bank's embeddings, so each head's per-sample gradient is ``e_i x_i^T``.
    """
    w_img, w_txt = w_img.detach(), w_txt.detach()
    symmetric = bank_image_feats is not None
    wgt = 0.5 if symmetric else 1.0
    tau = float(temperature)
    with torch.enable_grad():
        a = (image_feats @ w_img.T).requires_grad_(True)
        c = (text_feats @ w_txt.T).requires_grad_(True)
        u, v = l2_normalize(a), l2_normalize(c)
        bank_t = bank_text_feats @ w_txt.T
        k_t = l2_normalize(bank_t)
        logits = torch.cat([(u * v).sum(1, keepdim=True), u @ k_t.T], 1) / tau
        logp = torch.log_softmax(logits, 1)
        loss = -logp[:, 0]
        if bank_image_feats is not None:
            bank_i = bank_image_feats @ w_img.T
            k_i = l2_normalize(bank_i)
            logits2 = torch.cat([(u * v).sum(1, keepdim=True), v @ k_i.T], 1) / tau
            logp2 = torch.log_softmax(logits2, 1)
            loss = wgt * (loss - logp2[:, 0])
        e_img, e_txt = torch.autograd.grad(loss.sum(), [a, c])
    u, v, loss = u.detach(), v.detach(), loss.detach()
    if not bank_grad:
        return HeadGradFactors(e_img, image_feats), HeadGradFactors(e_txt, text_feats), loss
    scale = wgt / tau
    # report bank -> text head, queried by the image embedding u
    p_t = logp.detach().exp()[:, 1:]
    txt = HeadGradFactors(
        e_txt, text_feats, *_bank_terms(u, bank_text_feats, bank_t.detach(), p_t, scale), bank_feat=bank_text_feats
    )
    if bank_image_feats is not None:
        p_i = logp2.detach().exp()[:, 1:]
        img = HeadGradFactors(
            e_img,
            image_feats,
            *_bank_terms(v, bank_image_feats, bank_i.detach(), p_i, scale),
            bank_feat=bank_image_feats,
        )
    else:
        img = HeadGradFactors(e_img, image_feats)
    return img, txt, loss


def per_sample_head_grads(
    w_img: Tensor,
    w_txt: Tensor,
    image_feats: Tensor,
    text_feats: Tensor,
    bank_text_feats: Tensor,
    bank_image_feats: Tensor | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    bank_grad: bool = True,
) -> tuple[Tensor, Tensor]:
    """Dense per-sample gradients of the decomposable objective: (n, d, D_img) and (n, d, D_txt).

    The same gradients DP-SGD clips (before clipping), for reuse by gradient-based attacks.
    """
    img, txt, _ = head_grad_factors(
        w_img, w_txt, image_feats, text_feats, bank_text_feats, bank_image_feats, temperature, bank_grad
    )
    return img.materialize(), txt.materialize()
