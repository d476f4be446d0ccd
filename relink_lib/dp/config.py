"""Configuration and result types of DP head training."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
from torch import nn

from .objective import DEFAULT_TEMPERATURE
from .sampling import SAMPLING_MODES

ENGINES = ("auto", "fast", "opacus")


def _real(x: Any) -> bool:
    """A real number (bool excluded): strings and None fail here with a clear message, not a TypeError."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_delta(delta: float, n_units: int, unit: str = "pair") -> None:
    """Refuse ``delta >= 1 / n_units``.

    A mechanism that releases one random unit's data outright is (0, 1/n)-DP: with delta at or
    above 1/n the (eps, delta) guarantee allows exactly that, so it protects no one. Raises
    ``ValueError`` naming delta, n and the bound.
    """
    if n_units >= 1 and delta >= 1.0 / n_units:
        raise ValueError(
            f"DPConfig.delta={delta!r}: expected delta < 1/n_private = 1/{n_units} = {1.0 / n_units:.3g} "
            f"(n_private = {n_units} private {unit}s); with delta >= 1/n a mechanism that publishes one "
            f"random {unit} in the clear satisfies the guarantee, so it protects nobody"
        )


OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class DPConfig:
    """Hyper-parameters of (DP) head training.

    - ``target_epsilon``: the (eps, delta) target; ``None`` trains non-privately (no clipping, no noise).
    - ``delta``: target delta (per privacy unit).
    - ``epochs``: passes in expectation; steps = round(epochs / sample_rate).
    - ``batch_size``: EXPECTED pairs per step under Poisson sampling (sample_rate = batch_size / n_pairs).
    - ``max_grad_norm``: per-unit clipping bound C (Frobenius norm over both heads together).
    - ``lr``, ``optimizer`` (``"adam"`` or ``"sgd"``), ``seed``.
    - ``sampling``: ``"pair"`` (unit = one image-report pair) or ``"patient"`` (unit = one patient).
    - ``temperature``: of the contrastive objective.
    - ``engine``: ``"fast"`` (closed-form per-sample gradients, bias-free linear heads),
      ``"opacus"`` (Opacus PrivacyEngine with grad-sample hooks) or ``"auto"``.
    - ``noise_multiplier``: fixes sigma instead of calibrating it (tests, benchmarks).
    - ``bank_grad``: whether gradients flow through the public bank's embeddings. ``False``
      (default): the bank's embeddings are constants within a step (as MoCo's keys), each
      pair's gradient is rank one per head and DP steps cost about a non-private step;
      ``True``: the full gradient, exact too but O(m^2 d) per step for a bank of m.
    """

    target_epsilon: float | None = 0.34
    delta: float = 6e-6
    epochs: float = 5
    batch_size: int = 256
    max_grad_norm: float = 1.0
    lr: float = 1e-3
    seed: int = 0
    sampling: str = "pair"
    temperature: float = DEFAULT_TEMPERATURE
    optimizer: str = "adam"
    engine: str = "auto"
    noise_multiplier: float | None = None
    bank_grad: bool = False

    def __post_init__(self) -> None:
        def bad(name: str, expected: str) -> ValueError:
            return ValueError(f"DPConfig.{name}: expected {expected}, got {getattr(self, name)!r}")

        te = self.target_epsilon
        if te is not None and not (isinstance(te, (int, float)) and math.isfinite(te) and te > 0):
            raise bad("target_epsilon", "a finite value > 0 or None (non-private)")
        if not (_real(self.delta) and 0 < self.delta < 1):
            raise bad("delta", "a value in (0, 1), below 1/n_private (checked against the data by train_heads)")
        if not (_real(self.epochs) and math.isfinite(self.epochs) and self.epochs > 0):
            raise bad("epochs", "a finite value > 0")
        if (
            not (_real(self.batch_size) and math.isfinite(self.batch_size))
            or int(self.batch_size) != self.batch_size
            or self.batch_size < 1
        ):
            raise bad("batch_size", "a positive integer")
        if not (_real(self.max_grad_norm) and math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise bad("max_grad_norm", "a finite value > 0")
        if not (_real(self.lr) and math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr", "a finite value > 0")
        if self.sampling not in SAMPLING_MODES:
            raise bad("sampling", f"one of {SAMPLING_MODES}")
        if not (_real(self.temperature) and math.isfinite(self.temperature) and self.temperature > 0):
            raise bad("temperature", "a finite value > 0")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"one of {OPTIMIZERS}")
        if self.engine not in ENGINES:
            raise bad("engine", f"one of {ENGINES}")
        if self.noise_multiplier is not None and not (
            _real(self.noise_multiplier) and math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0
        ):
            raise bad("noise_multiplier", "a finite value >= 0 or None (calibrate)")

    @property
    def private(self) -> bool:
        return self.target_epsilon is not None or self.noise_multiplier is not None

    def replace(self, **changes: Any) -> "DPConfig":
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass
class HeadTrainingResult:
    """Trained head copies, the privacy record and the training history.

    ``record``: target_epsilon, epsilon, delta, noise_multiplier, sample_rate, steps,
    max_grad_norm, accountant, and the unit, neighbouring relation, engine, ...
    ``history``: one row per epoch end (step, epoch, epsilon spent, public eval loss, ...).
    """

    image_head: nn.Module
    text_head: nn.Module
    record: dict[str, Any]
    history: pd.DataFrame
