"""DP-SGD on the projection heads only: Poisson sampling, per-unit clipping, Gaussian noise.

The encoders are frozen and never run here: training reads cached pre-projection features.
Each step (both engines):

1. Poisson-sample privacy units (pairs, or patients with all their pairs) with rate q;
2. per unit, the gradient of the decomposable objective (:mod:`relink_lib.dp.objective`) over
   BOTH heads, clipped jointly to Frobenius norm ``max_grad_norm`` = C;
3. sum, add N(0, sigma^2 C^2) to every coordinate, divide by the expected batch size
   ``int(q * n_units)`` (Opacus' convention), and take an optimiser step.

Engines: ``"fast"`` computes the per-unit norms and the clipped sum in closed form for
bias-free linear heads (:mod:`relink_lib.dp.fastgrad`); ``"opacus"`` runs Opacus'
``PrivacyEngine.make_private`` (grad-sample hooks, its DPOptimizer and Poisson DPDataLoader) on
:class:`~relink_lib.dp.objective.ExpandedBankLoss` and works for any head Opacus supports (pair
sampling only). sigma is calibrated by :func:`relink_lib.dp.calibrate.calibrate_noise` for the
same (q, steps) either way, so the record's epsilon holds for both.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from .accounting import group_privacy, independent_epsilons
from .calibrate import ACCOUNTANT_NAME, calibrate_noise, rdp_epsilon
from .config import DPConfig, HeadTrainingResult, check_delta
from .fastgrad import head_grad_factors
from .heads import clone_head, head_params, linear_weight
from .objective import DEFAULT_TEMPERATURE, ExpandedBankLoss, batch_infonce, l2_normalize
from .sampling import PrivacyUnits, poisson_batches, privacy_units

EVAL_MAX_ROWS = 1024
"""Rows of the public evaluation features whose loss is logged per epoch."""
NOISE_SEED_OFFSET = 7919
"""The noise generator's seed is ``config.seed + NOISE_SEED_OFFSET`` (both engines): a stream apart from the
sampler's (seeded ``config.seed``), so the same seed never draws the batches and the noise from one stream."""


def as_feature_tensor(x: Any, name: str, dtype: torch.dtype, ncols: int | None = None) -> Tensor:
    """``x`` as a finite 2-D tensor of ``dtype``; errors name the argument ``name`` and what was expected."""
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x).detach().to(dtype)
    if t.dim() != 2:
        raise ValueError(f"{name}: expected a 2-D array (rows, features), got shape {tuple(t.shape)}")
    if ncols is not None and t.shape[1] != ncols:
        raise ValueError(f"{name}: expected {ncols} feature columns (the head's in_features), got {t.shape[1]}")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: contains NaN or inf")
    return t


def _in_features(head: nn.Module, name: str) -> int | None:
    w = linear_weight(head)
    if w is not None:
        return w.shape[1]
    first = next((m for m in head.modules() if isinstance(m, nn.Linear)), None)
    if first is None:
        raise ValueError(f"{name}: expected a module containing an nn.Linear projection")
    return first.in_features


def sampling_plan(n_rows: int, config: DPConfig) -> tuple[float, int, int]:
    """``(sample_rate, steps, steps_per_epoch)`` as Opacus derives them from a DataLoader.

    ``steps_per_epoch = ceil(n_rows / batch_size)``, ``sample_rate = 1 / steps_per_epoch``,
    ``steps = max(1, round(epochs * steps_per_epoch))``.
    """
    per_epoch = max(1, math.ceil(n_rows / config.batch_size))
    return 1.0 / per_epoch, max(1, int(round(config.epochs * per_epoch))), per_epoch


@dataclass(frozen=True)
class RunPlan:
    """What one training run does before its first step: its privacy ``units``, sample rate ``q``, ``steps``,
    ``per_epoch`` steps and the noise multiplier ``sigma`` (0 for a non-private run)."""

    units: PrivacyUnits
    q: float
    steps: int
    per_epoch: int
    sigma: float


def run_plan(n: int, config: DPConfig, patient_ids: Sequence | np.ndarray | None = None) -> RunPlan:
    """The :class:`RunPlan` of a run on ``n`` pairs: units by ``config.sampling``, delta checked against them for a
    private run, the sampling plan, and sigma (``config.noise_multiplier``, else calibrated to the target epsilon)."""
    units = privacy_units(n, config.sampling, patient_ids)
    if config.private:
        check_delta(config.delta, units.n_units, units.kind)
    q, steps, per_epoch = sampling_plan(n, config)
    if config.noise_multiplier is not None:
        sigma = float(config.noise_multiplier)
    elif config.target_epsilon is not None:
        sigma = calibrate_noise(float(config.target_epsilon), config.delta, q, steps)
    else:
        sigma = 0.0
    return RunPlan(units, q, steps, per_epoch, sigma)


def expected_batch_size(n_units: int, sample_rate: float) -> int:
    """The divisor of the noisy clipped sum: ``max(1, int(sample_rate * n_units))`` units (Opacus' convention)."""
    return max(1, int(n_units * sample_rate))


def resolve_engine(config: DPConfig, image_head: nn.Module, text_head: nn.Module) -> str:
    """The engine that will run: ``auto`` picks ``fast`` when both heads are bias-free ``nn.Linear``."""
    linear = linear_weight(image_head) is not None and linear_weight(text_head) is not None
    if config.engine == "fast" and not linear:
        raise ValueError("DPConfig.engine='fast': needs bias-free nn.Linear heads; use engine='opacus' or 'auto'")
    if config.engine == "opacus" and config.sampling == "patient":
        raise ValueError(
            "DPConfig.sampling='patient': per-patient clipping needs engine='fast' (bias-free linear heads)"
        )
    if config.engine == "auto":
        if linear:
            return "fast"
        if config.sampling == "patient":
            raise ValueError("DPConfig.sampling='patient': needs bias-free nn.Linear heads (engine='fast')")
        return "opacus"
    return config.engine


def _make_optimizer(params: Sequence[Tensor], config: DPConfig) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr)
    return torch.optim.Adam(params, lr=config.lr)


@torch.no_grad()
def _eval_loss(
    image_head: nn.Module, text_head: nn.Module, eval_feats: tuple[Tensor, Tensor] | None, temperature: float
) -> float:
    if eval_feats is None:
        return math.nan
    img, txt = eval_feats
    return float(batch_infonce(l2_normalize(image_head(img)), l2_normalize(text_head(txt)), temperature))


def clipped_grad_sum(
    w_img: Tensor,
    w_txt: Tensor,
    x_img: Tensor,
    x_txt: Tensor,
    bank_txt: Tensor,
    bank_img: Tensor | None = None,
    *,
    max_grad_norm: float | None,
    temperature: float = DEFAULT_TEMPERATURE,
    groups: Tensor | None = None,
    n_groups: int | None = None,
    bank_grad: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Sum over units of the per-unit gradients of both heads, each clipped jointly to ``max_grad_norm``.

    ``groups`` (n,) maps rows to units (per-patient clipping); ``None`` = one unit per row.
    ``max_grad_norm=None`` sums without clipping. Returns ``(sum_img (d, D_img), sum_txt (d, D_txt),
    unit_norms (units,), clip_coef (units,), loss (n,))``; norms are before clipping.
    """
    f_img, f_txt, loss = head_grad_factors(w_img, w_txt, x_img, x_txt, bank_txt, bank_img, temperature, bank_grad)
    norms = (f_img.sq_norms(groups, n_groups) + f_txt.sq_norms(groups, n_groups)).sqrt()
    if max_grad_norm is None:
        coef = torch.ones_like(norms)
    else:
        coef = (max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
    weights = coef if groups is None else coef[groups]
    return f_img.weighted_sum(weights), f_txt.weighted_sum(weights), norms, coef, loss


def _fast_private_step(
    w_img: Tensor,
    w_txt: Tensor,
    x_img: Tensor,
    x_txt: Tensor,
    groups: Tensor,
    n_groups: int,
    bank_txt: Tensor,
    bank_img: Tensor | None,
    config: DPConfig,
    sigma: float,
    clip: bool,
    expected_batch: float,
    noise_gen: torch.Generator | None,
) -> tuple[Tensor, Tensor, float, float]:
    """Noisy clipped mean gradient of both heads for one batch; returns (g_img, g_txt, mean loss, clip fraction)."""
    g_img = torch.zeros_like(w_img)
    g_txt = torch.zeros_like(w_txt)
    loss_mean, clipped = math.nan, math.nan
    if x_img.shape[0] > 0:
        grp = groups if config.sampling == "patient" else None
        g_img, g_txt, norms, _, loss = clipped_grad_sum(
            w_img,
            w_txt,
            x_img,
            x_txt,
            bank_txt,
            bank_img,
            max_grad_norm=config.max_grad_norm if clip else None,
            temperature=config.temperature,
            groups=grp,
            n_groups=n_groups if grp is not None else None,
            bank_grad=config.bank_grad,
        )
        loss_mean = float(loss.mean())
        clipped = float((norms > config.max_grad_norm).float().mean())
    if clip and sigma > 0:
        std = sigma * config.max_grad_norm
        g_img = g_img + std * torch.randn(g_img.shape, generator=noise_gen, dtype=g_img.dtype)
        g_txt = g_txt + std * torch.randn(g_txt.shape, generator=noise_gen, dtype=g_txt.dtype)
    denom = expected_batch if clip else max(1, x_img.shape[0])
    return g_img / denom, g_txt / denom, loss_mean, clipped


def _train_fast(
    img_head: nn.Module,
    txt_head: nn.Module,
    x_img: Tensor,
    x_txt: Tensor,
    bank_txt: Tensor,
    bank_img: Tensor | None,
    units: PrivacyUnits,
    config: DPConfig,
    sigma: float,
    q: float,
    steps: int,
    per_epoch: int,
    eval_feats: tuple[Tensor, Tensor] | None,
    on_step: StepHook | None = None,
) -> list[dict[str, Any]]:
    if not (isinstance(img_head, nn.Linear) and isinstance(txt_head, nn.Linear)):
        raise TypeError("the fast engine needs bias-free nn.Linear heads (resolve_engine picks it only for those)")
    w_img, w_txt = img_head.weight, txt_head.weight
    opt = _make_optimizer([w_img, w_txt], config)
    sample_gen = torch.Generator().manual_seed(int(config.seed))
    noise_gen = torch.Generator().manual_seed(int(config.seed) + NOISE_SEED_OFFSET)
    expected_batch = expected_batch_size(units.n_units, q)
    private = config.private
    rows_log: list[dict[str, Any]] = []
    batch_losses: list[float] = []
    clip_fracs: list[float] = []
    for step, (rows, groups, n_groups) in enumerate(poisson_batches(units, q, steps, sample_gen), start=1):
        g_img, g_txt, loss_mean, clipped = _fast_private_step(
            w_img.detach(),
            w_txt.detach(),
            x_img[rows],
            x_txt[rows],
            groups,
            n_groups,
            bank_txt,
            bank_img,
            config,
            sigma,
            private,
            expected_batch,
            noise_gen,
        )
        w_img.grad, w_txt.grad = g_img, g_txt
        opt.step()
        opt.zero_grad(set_to_none=True)
        if on_step is not None:
            on_step(step, img_head, txt_head)
        batch_losses.append(loss_mean)
        clip_fracs.append(clipped)
        if step % per_epoch == 0 or step == steps:
            rows_log.append(
                _history_row(
                    step, per_epoch, img_head, txt_head, eval_feats, config, sigma, q, batch_losses, clip_fracs
                )
            )
            batch_losses, clip_fracs = [], []
    return rows_log


def _train_opacus(
    img_head: nn.Module,
    txt_head: nn.Module,
    x_img: Tensor,
    x_txt: Tensor,
    bank_txt: Tensor,
    bank_img: Tensor | None,
    config: DPConfig,
    sigma: float,
    q: float,
    steps: int,
    per_epoch: int,
    eval_feats: tuple[Tensor, Tensor] | None,
) -> tuple[list[dict[str, Any]], float | None]:
    # lazily: Opacus (and its grad-sample hooks) load only for engine="opacus", which few runs use
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    module = ExpandedBankLoss(img_head, txt_head, bank_txt, bank_img, config.temperature, config.bank_grad)
    opt = _make_optimizer(head_params(img_head, txt_head), config)
    loader = DataLoader(TensorDataset(x_img, x_txt), batch_size=config.batch_size)
    rows_log: list[dict[str, Any]] = []
    engine_eps = None
    with torch.random.fork_rng(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Secure RNG turned off")
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        torch.manual_seed(int(config.seed))
        if config.private:
            engine = PrivacyEngine(accountant="rdp")
            gsm, opt, loader = engine.make_private(
                module=module,
                optimizer=opt,
                data_loader=loader,
                noise_multiplier=sigma,
                max_grad_norm=config.max_grad_norm,
                poisson_sampling=True,
                noise_generator=torch.Generator().manual_seed(int(config.seed) + NOISE_SEED_OFFSET),
            )
        else:
            engine, gsm = None, module
        step = 0
        batch_losses: list[float] = []
        while step < steps:
            for xb, tb in loader:
                opt.zero_grad(set_to_none=True)
                per_ex = gsm(xb, tb)
                loss = per_ex.sum() / max(1, per_ex.shape[0])
                loss.backward()
                opt.step()
                step += 1
                batch_losses.append(float(loss.detach()) if per_ex.shape[0] else math.nan)
                if step % per_epoch == 0 or step == steps:
                    rows_log.append(
                        _history_row(
                            step, per_epoch, img_head, txt_head, eval_feats, config, sigma, q, batch_losses, []
                        )
                    )
                    batch_losses = []
                if step >= steps:
                    break
        if engine is not None:
            engine_eps = float(engine.get_epsilon(config.delta))
            gsm.to_standard_module()  # removes the hooks and grad_sample attributes from the heads
    return rows_log, engine_eps


def _history_row(
    step: int,
    per_epoch: int,
    img_head: nn.Module,
    txt_head: nn.Module,
    eval_feats: tuple[Tensor, Tensor] | None,
    config: DPConfig,
    sigma: float,
    q: float,
    batch_losses: list[float],
    clip_fracs: list[float],
) -> dict[str, Any]:
    if step == 0:
        eps = 0.0
    else:
        # the running figure per epoch uses the vectorised twin of the accountant (tested to agree with
        # Opacus); the record's epsilon is Opacus' own (training_record)
        eps = (
            rdp_epsilon(sigma, q, step, config.delta, backend="numpy")[0]
            if (config.private and sigma > 0)
            else math.inf
        )
    # Statistics of private batches are outside the guarantee: kept for non-private runs only.
    priv_loss = float(np.nanmean(batch_losses)) if (not config.private and batch_losses) else math.nan
    return {
        "step": step,
        "epoch": step / per_epoch,
        "epsilon_spent": eps,
        "public_eval_loss": _eval_loss(img_head, txt_head, eval_feats, config.temperature),
        "train_loss_nonprivate": priv_loss,
        "clip_fraction": float(np.nanmean(clip_fracs)) if clip_fracs and config.private else math.nan,
    }


StepHook = Callable[[int, nn.Module, nn.Module], None]
"""Called after every optimiser step of the fast engine with ``(step, image_head, text_head)`` (the heads being
trained: copy them to keep a checkpoint). Training from here is the same run as without the hook."""
FeatureMatrix = np.ndarray | Tensor
"""A float matrix of pre-projection features, ``(n, d)``: a numpy array or a torch tensor."""


def train_heads(
    image_feats: FeatureMatrix,
    text_feats: FeatureMatrix,
    image_head: nn.Module,
    text_head: nn.Module,
    *,
    bank_text_feats: FeatureMatrix,
    config: DPConfig,
    patient_ids: Sequence | np.ndarray | None = None,
    bank_image_feats: FeatureMatrix | None = None,
    eval_feats: tuple[FeatureMatrix, FeatureMatrix] | None = None,
    on_step: StepHook | None = None,
) -> HeadTrainingResult:
    """Fine-tune copies of the projection heads with DP-SGD (or non-privately) on frozen features.

    ``image_feats`` (n, D_img), ``text_feats`` (n, D_txt): pre-projection features of the
    PRIVATE training pairs (row i pairs with row i). ``bank_text_feats`` (m, D_txt) and optional
    ``bank_image_feats`` (m', D_img): PUBLIC features the objective contrasts against (never
    the private pairs). ``patient_ids`` (n,): needed for ``config.sampling="patient"``; with
    pair sampling it adds group-privacy figures to the record. ``eval_feats``: optional PUBLIC
    (image, text) features whose in-batch InfoNCE is logged per epoch. The input heads are
    not modified. ``on_step``: a :data:`StepHook` called after every step (fast engine only; e.g. checkpoints
    of a learning curve: a run of ``k`` steps is the first ``k`` steps of a longer run with the same seed).
    Returns :class:`HeadTrainingResult`.
    """
    if not isinstance(config, DPConfig):
        raise TypeError(f"config: expected a DPConfig, got {type(config).__name__}")
    t0 = time.perf_counter()
    engine_name = resolve_engine(config, image_head, text_head)
    img_head, txt_head = clone_head(image_head), clone_head(text_head)
    dtype = next(img_head.parameters()).dtype
    x_img = as_feature_tensor(image_feats, "image_feats", dtype, _in_features(img_head, "image_head"))
    x_txt = as_feature_tensor(text_feats, "text_feats", dtype, _in_features(txt_head, "text_head"))
    if x_img.shape[0] != x_txt.shape[0]:
        raise ValueError(
            f"image_feats/text_feats: expected the same number of rows (pairs), "
            f"got {x_img.shape[0]} and {x_txt.shape[0]}"
        )
    if x_img.shape[0] < 2:
        raise ValueError(f"image_feats: expected at least 2 training pairs, got {x_img.shape[0]}")
    bank_txt = as_feature_tensor(bank_text_feats, "bank_text_feats", dtype, x_txt.shape[1])
    bank_img = (
        None
        if bank_image_feats is None
        else as_feature_tensor(bank_image_feats, "bank_image_feats", dtype, x_img.shape[1])
    )
    if bank_txt.shape[0] < 1:
        raise ValueError("bank_text_feats: expected at least one public report")
    ev = None
    if eval_feats is not None:
        ev = (
            as_feature_tensor(eval_feats[0], "eval_feats[0]", dtype, x_img.shape[1])[:EVAL_MAX_ROWS],
            as_feature_tensor(eval_feats[1], "eval_feats[1]", dtype, x_txt.shape[1])[:EVAL_MAX_ROWS],
        )
    n = x_img.shape[0]
    plan = run_plan(n, config, patient_ids)
    units, q, steps, per_epoch, sigma = plan.units, plan.q, plan.steps, plan.per_epoch, plan.sigma
    history0 = _history_row(0, per_epoch, img_head, txt_head, ev, config, sigma, q, [], []) if ev is not None else None
    engine_eps = None
    if on_step is not None and engine_name != "fast":
        raise ValueError("train_heads(on_step=...): step hooks need the fast engine (bias-free nn.Linear heads)")
    if engine_name == "fast":
        rows = _train_fast(
            img_head, txt_head, x_img, x_txt, bank_txt, bank_img, units, config, sigma, q, steps, per_epoch, ev, on_step
        )
    else:
        rows, engine_eps = _train_opacus(
            img_head, txt_head, x_img, x_txt, bank_txt, bank_img, config, sigma, q, steps, per_epoch, ev
        )
    if history0 is not None:
        rows = [history0] + rows
    history = pd.DataFrame(rows)
    for name, head in (("image_head", img_head), ("text_head", txt_head)):
        if not all(bool(torch.isfinite(p).all()) for p in head.parameters()):
            raise FloatingPointError(
                f"train_heads: the trained {name} has NaN or inf weights after {steps} steps "
                f"(lr={config.lr}, optimizer={config.optimizer!r}); lower DPConfig.lr"
            )
    for head in (img_head, txt_head):
        head.zero_grad(set_to_none=True)
        for p in head.parameters():
            p.requires_grad_(False)
    record = training_record(
        config, engine_name, sigma, q, steps, units, n, bank_txt, bank_img, patient_ids, engine_eps
    )
    record["train_time_s"] = time.perf_counter() - t0
    return HeadTrainingResult(img_head, txt_head, record, history)


@functools.lru_cache(maxsize=512)
def _accounted(sigma: float, q: float, steps: int, delta: float) -> tuple[float, tuple[tuple[str, float | None], ...]]:
    """(recorded RDP epsilon, independent epsilons) of one mechanism, memoised: a pure function of
    (sigma, q, steps, delta), shared by the frontier's runs with the same schedule."""
    eps = rdp_epsilon(sigma, q, steps, delta)[0]
    ind = independent_epsilons({"noise_multiplier": sigma, "sample_rate": q, "steps": steps, "delta": delta})
    return eps, tuple(ind.items())


def training_record(
    config: DPConfig,
    engine: str,
    sigma: float,
    q: float,
    steps: int,
    units: PrivacyUnits,
    n: int,
    bank_txt: Tensor,
    bank_img: Tensor | None,
    patient_ids: Any,
    engine_eps: float | None,
) -> dict[str, Any]:
    """The privacy record of one run (see :class:`relink_lib.dp.config.HeadTrainingResult`): the mechanism
    (sigma, q, steps, C, unit, sampling), its RDP epsilon and the independent accountants' figures, group
    privacy per patient where patient ids are known."""
    unit = "one image-report pair" if units.kind == "pair" else "one patient (all of their image-report pairs)"
    rec: dict[str, Any] = {
        "target_epsilon": config.target_epsilon,
        "epsilon": math.inf,
        "delta": config.delta,
        "noise_multiplier": sigma,
        "sample_rate": q,
        "steps": steps,
        "max_grad_norm": config.max_grad_norm if config.private else None,
        "accountant": ACCOUNTANT_NAME if config.private else "none (non-private training)",
        "private": config.private,
        "unit": unit,
        "neighbouring": f"add/remove {unit}",
        "sampling": f"Poisson over {units.kind}s",
        "n_pairs": n,
        "n_units": units.n_units,
        "expected_batch_size": expected_batch_size(units.n_units, q),
        "epochs": config.epochs,
        "lr": config.lr,
        "optimizer": config.optimizer,
        "temperature": config.temperature,
        "engine": engine,
        "bank_text_size": int(bank_txt.shape[0]),
        "bank_image_size": None if bank_img is None else int(bank_img.shape[0]),
        "seed": config.seed,
        "objective": "per-pair contrastive loss against a fixed bank of public features (decomposable)",
        "bank_grad": config.bank_grad,
    }
    if config.private and sigma > 0:
        rec["epsilon"], independent = _accounted(float(sigma), float(q), int(steps), float(config.delta))
        rec["epsilon_independent"] = dict(independent)
        if engine_eps is not None:
            rec["epsilon_independent"]["opacus_privacy_engine"] = engine_eps
    if patient_ids is not None and units.kind == "pair" and config.private:
        counts = np.unique(np.asarray(patient_ids), return_counts=True)[1]
        k = int(counts.max())
        g_eps, g_delta = group_privacy(rec["epsilon"], config.delta, k)
        rec["group_privacy"] = {
            "max_pairs_per_patient": k,
            "mean_pairs_per_patient": float(counts.mean()),
            "patient_epsilon": g_eps,
            "patient_delta": g_delta,
        }
    return rec
