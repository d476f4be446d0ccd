"""Configuration and result types of DP head training."""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

import pandas as pd
from torch import nn

from .objective import DEFAULT_TEMPERATURE
from .sampling import SAMPLING_MODES

ENGINES = ("auto", "fast", "opacus")
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
        if not 0 < self.delta < 1:
            raise bad("delta", "a value in (0, 1)")
        if not self.epochs > 0:
            raise bad("epochs", "a value > 0")
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            raise bad("batch_size", "a positive integer")
        if not (math.isfinite(self.max_grad_norm) and self.max_grad_norm > 0):
            raise bad("max_grad_norm", "a finite value > 0")
        if not self.lr > 0:
            raise bad("lr", "a value > 0")
        if self.sampling not in SAMPLING_MODES:
            raise bad("sampling", f"one of {SAMPLING_MODES}")
        if not self.temperature > 0:
            raise bad("temperature", "a value > 0")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", f"one of {OPTIMIZERS}")
        if self.engine not in ENGINES:
            raise bad("engine", f"one of {ENGINES}")
        if self.noise_multiplier is not None and not (math.isfinite(self.noise_multiplier) and self.noise_multiplier >= 0):
            raise bad("noise_multiplier", "a finite value >= 0 or None (calibrate)")

    @property
    def private(self) -> bool:
        return self.target_epsilon is not None or self.noise_multiplier is not None

    def replace(self, **changes: Any) -> "DPConfig":
        """A copy with some fields changed."""
        return replace(self, **changes)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], **changes: Any) -> "DPConfig":
        """The profile's ``dp`` section (keys that are DPConfig fields) plus ``changes``; seed from the profile."""
        names = {f.name for f in fields(cls)}
        section = {k: v for k, v in params.get("dp", {}).items() if k in names}
        section.setdefault("seed", params.get("seed", 0))
        section.update(changes)
        return cls(**section)


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
