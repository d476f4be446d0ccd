"""Typed, frozen, validated configuration: one dataclass per profile section, defaults in one place.

A profile (:mod:`relink_lib.profiles`) is a :class:`Profile`: the run's ``seed`` and name plus one
section each for the numerics, the cohorts, the model ladder, feature extraction, the audit, the
DP mitigation (with chapter 6's frontier), the utility probe, the privacy-budget sweep and the
real-data inputs. Every default lives here, as a field default; a stage reads its section
(``as_profile(params).audit.n_boot``) and never re-defaults a key. :class:`DPConfig`, the
hyper-parameters of one DP head training, lives here too (re-exported by :mod:`relink_lib.dp`),
with the names its fields take (:data:`OPTIMIZERS`, :data:`SAMPLING_MODES`, :data:`ENGINES`).
This module imports nothing from the rest of the package: every other module may import it.

The plain nested dict (:meth:`Profile.to_params`) is the wire format: what papermill injects as
``overrides``, what results JSON and cache keys record. ``Profile`` also reads as that mapping
(``params["audit"]["n_boot"]``), so a chapter may index it like the dict it was built from.
Building from a mapping (:func:`as_profile`) refuses unknown keys with the dotted path and a close
match, fills missing keys with their defaults, turns lists into tuples (papermill turns tuples
into strings, so overrides travel as lists) and checks every value against what the library needs of
it later (integers are integers, not whole floats or bools; a list's bad item is named by its index),
with errors naming the key both ways: ``params['audit']['ks'][2]=10.0: expected a positive integer (key
audit.ks[2])``. :func:`check_book_profile` adds what the chapters need of the profile they run on.
"""

from __future__ import annotations

import copy
import difflib
import math
import numbers
import re
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

COHORT_SOURCES: tuple[str, ...] = ("synthetic", "real")
TEXT_FIELDS: tuple[str, ...] = ("findings+impression", "impression", "findings", "longer")
NUMERICAL_MODES: tuple[str, ...] = ("portable", "native")
"""The modes a profile may name in ``params["numerics"]["mode"]`` (defined in :data:`relink_lib.numerics.MODES`)."""
DEFAULT_POOL_SIZES: tuple[int | None, ...] = (10, 100, 1000, 10000, None)
"""Candidate pool sizes of the audit (``None``: the full database): :class:`AuditConfig`'s and ``relink_audit``'s
default."""
DEFAULT_KS: tuple[int, ...] = (1, 5, 10)
"""The K of Recall@K; :class:`AuditConfig`'s and ``relink_audit``'s default."""
OPTIMIZERS: tuple[str, ...] = ("adam", "sgd")
"""Optimizers of DP head training (:class:`DPConfig`, chapter 6's frontier grid, chapter 9's budget sweep)."""
BUDGET_SWEEP_STARTS: tuple[str, ...] = ("released", "profile")
"""Starts of chapter 9's budget sweep (``dp.budget_sweep.start``): fresh heads at chapter 6's released setting, or
the pretrained heads at the ``dp.budget_sweep`` optimizer, lr and epochs."""
PROFILE_NAMES: tuple[str, ...] = ("smoke", "ci", "default", "paper")
"""The known profiles (``relink_lib.profiles``): a profile's name names its ``cache/`` and ``results/`` folders, so
no other name is accepted."""
MAX_SYNTHETIC_IMAGE_BYTES = 16 * 2**30
"""The largest synthetic cohort the config accepts, as bytes of its in-memory uint8 images (pairs x pixels); it
bounds every synthetic draw: the cohorts, chapter 6's confirmation cohort and scaling pools, chapter 11's top-ups."""
MIN_SYNTHETIC_IMAGE_SIZE = 16
"""The smallest image side (pixels) the synthetic generator renders
(:func:`relink_lib.cohorts.synthetic.generate.make_synthetic_cohort`)."""
LADDER_RUNGS: tuple[str, ...] = ("captions", "impressions", "full-reports")
"""The rungs of the embedded ladder, least specialised first (the names of
:data:`relink_lib.models.ladder.RUNG_SPECS`; a test pins the two together)."""
LADDER_PATCH_SIZE = 16
"""The ViT patch size of every ladder rung unless ``ladder.overrides[rung]["patch_size"]`` changes it
(:class:`relink_lib.models.ladder.RungSpec`'s default; a test pins the two together): the ladder's image size must
be a multiple of it."""
MAX_SEED = 2**63 - 1
"""The largest seed: stages add offsets of a few thousand to it and torch takes seeds below 2**64."""
LABEL_VALUES: tuple[float, ...] = (1.0, 0.0, -1.0)
"""The CheXpert label values a missing or uncertain label is matched as (``audit.nan_as``, ``audit.uncertain_as``)."""
DEVICE_PATTERN = r"cpu|cuda(:\d+)?"
"""Torch devices a section may name (``features.device`` also takes ``mps``, ``audit.device`` also ``auto``)."""
SAMPLING_MODES: tuple[str, ...] = ("pair", "patient")
"""Privacy units of DP head training (:mod:`relink_lib.dp.sampling`): one pair, or one patient with all their pairs."""
ENGINES: tuple[str, ...] = ("auto", "fast", "opacus")
"""Per-sample gradient engines of DP head training (:func:`relink_lib.dp.train_heads`)."""
DEFAULT_TEMPERATURE: float = 0.07
"""Temperature of the contrastive objective (:mod:`relink_lib.dp.objective`)."""


def _freeze(value: Any) -> Any:
    """Lists become tuples and mappings plain dicts, at every depth."""
    if isinstance(value, Mapping):
        return {k: _freeze(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    """Deep copy of a config value as plain dicts and tuples."""
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_thaw(v) for v in value)
    return value


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: Any) -> bool:
    """An integer, not a bool and not a float that happens to be whole (``range``, numpy shapes and the
    library's own checks refuse ``5.0``)."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _is_pos_int(x: Any) -> bool:
    return _is_int(x) and x >= 1


def _is_seed(x: Any) -> bool:
    return _is_int(x) and 0 <= x <= MAX_SEED


_DP_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "target_epsilon": (lambda v: v is None or (_is_real(v) and v > 0), "a finite value > 0 or None (non-private)"),
    "delta": (
        lambda v: _is_real(v) and 0 < v < 1,
        "a value in (0, 1), below 1/n_private (checked against the data by train_heads)",
    ),
    "epochs": (lambda v: _is_real(v) and v > 0, "a finite value > 0"),
    "batch_size": (lambda v: _is_int(v) and v >= 1, "a positive integer"),
    "max_grad_norm": (lambda v: _is_real(v) and v > 0, "a finite value > 0"),
    "lr": (lambda v: _is_real(v) and v > 0, "a finite value > 0"),
    "sampling": (lambda v: v in SAMPLING_MODES, f"one of {SAMPLING_MODES}"),
    "temperature": (lambda v: _is_real(v) and v > 0, "a finite value > 0"),
    "optimizer": (lambda v: v in OPTIMIZERS, f"one of {OPTIMIZERS}"),
    "engine": (lambda v: v in ENGINES, f"one of {ENGINES}"),
    "noise_multiplier": (lambda v: v is None or (_is_real(v) and v >= 0), "a finite value >= 0 or None (calibrate)"),
    "bank_grad": (lambda v: isinstance(v, bool), "True or False"),
    "seed": (lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool), "an integer"),
}
"""What each field of :class:`DPConfig` accepts: (check, what is expected); the ``dp`` section's keys use the same."""


@dataclass(frozen=True)
class DPConfig:
    """Hyper-parameters of (DP) head training.

    - ``target_epsilon``: the (eps, delta) target; ``None`` trains non-privately (no clipping, no noise).
    - ``delta``: target delta (per privacy unit).
    - ``epochs``: passes in expectation; steps = round(epochs / sample_rate).
    - ``batch_size``: EXPECTED pairs per step under Poisson sampling (sample_rate = batch_size / n_pairs).
    - ``max_grad_norm``: per-unit clipping bound C (Frobenius norm over both heads together).
    - ``lr``, ``optimizer`` (one of :data:`OPTIMIZERS`), ``seed``.
    - ``sampling``: ``"pair"`` (unit = one image-report pair) or ``"patient"`` (unit = one patient).
    - ``temperature``: of the contrastive objective.
    - ``engine``: ``"fast"`` (closed-form per-sample gradients, bias-free linear heads),
      ``"opacus"`` (Opacus PrivacyEngine with grad-sample hooks) or ``"auto"``.
    - ``noise_multiplier``: fixes sigma instead of calibrating it (tests, benchmarks).
    - ``bank_grad``: whether gradients flow through the public bank's embeddings. ``False``
      (default): the bank's embeddings are constants within a step (as MoCo's keys), each
      pair's gradient is rank one per head and DP steps cost about a non-private step;
      ``True``: the full gradient, exact too but O(m^2 d) per step for a bank of m.

    A profile builds it from its ``dp`` section (:class:`DPSectionConfig`): the shared keys, the
    per-run ``optimizer``, ``lr`` and ``epochs`` of chapter 6's grid point (chapter 9 trains at the released
    one) or of ``dp.budget_sweep``, and the profile's seed.
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
        for f in fields(self):
            ok, expected = _DP_CHECKS[f.name]
            value = getattr(self, f.name)
            if not ok(value):
                raise ValueError(f"DPConfig.{f.name}: expected {expected}, got {value!r}")

    @property
    def private(self) -> bool:
        return self.target_epsilon is not None or self.noise_multiplier is not None

    def replace(self, **changes: Any) -> "DPConfig":
        """A copy with some fields changed."""
        return replace(self, **changes)


class _Section:
    """Shared behaviour of a section: built from a mapping, checked, written back as a dict."""

    SECTION: ClassVar[str] = ""

    def _bad(self, name: str, expected: str, at: tuple[Any, ...] = ()) -> ValueError:
        """The error for key ``name`` (or its item at the subscripts ``at``): both the ``params[...]`` path and the
        dotted key an override names (``audit.ks[2]``), the value found and what is expected."""
        where = "".join(f"[{part!r}]" for part in self.SECTION.split("."))
        value = getattr(self, name)
        for i in at:
            value = value[i]
        sub = "".join(f"[{i!r}]" for i in at)
        return ValueError(
            f"params{where}[{name!r}]{sub}={value!r}: expected {expected} (key {self.SECTION}.{name}{sub})"
        )

    def _need(self, ok: bool, name: str, expected: str) -> None:
        if not ok:
            raise self._bad(name, expected)

    def _need_items(self, name: str, ok: Callable[[Any], bool], expected: str, item: str, *, at_least: int = 1) -> None:
        """Key ``name`` must be a list (a tuple once frozen) of at least ``at_least`` items, each passing ``ok``;
        a bad item is named by its index (``expected``: the list, ``item``: one item)."""
        values = getattr(self, name)
        self._need(isinstance(values, tuple) and len(values) >= at_least, name, expected)
        for i, value in enumerate(values):
            if not ok(value):
                raise self._bad(name, item, (i,))

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))  # type: ignore[arg-type]

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> Any:
        """The section from ``raw`` (missing keys take their defaults; unknown keys are refused)."""
        values = _check_keys(cls.SECTION, raw, cls.keys())
        return cls(**{k: _freeze(v) for k, v in values.items()})

    def to_dict(self) -> dict[str, Any]:
        return {name: _thaw(getattr(self, name)) for name in self.keys()}


MOVED_KEYS: dict[str, str] = {
    f"dp.{key}": f"'dp.budget_sweep.{key}' (chapter 9; chapter 6's frontier sets it per grid point)"
    for key in ("optimizer", "lr", "epochs")
}
"""Dotted keys that moved, and where they live now (named by the error an old override gets)."""


def unknown_key_hint(path: str, key: str, allowed: Sequence[str]) -> str:
    """The hint after "unknown key '<path>'": where a moved key lives now, else the closest of ``allowed``."""
    if path in MOVED_KEYS:
        return f" (moved to {MOVED_KEYS[path]})"
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_keys(section: str, raw: Mapping[str, Any] | None, allowed: tuple[str, ...]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{section!r} is a section; expected a mapping of its keys, got {type(raw).__name__}")
    unknown = [str(k) for k in raw if k not in allowed]
    if unknown:
        path = f"{section}.{unknown[0]}"
        hint = unknown_key_hint(path, unknown[0], allowed)
        raise ValueError(f"unknown key '{path}'{hint}; section {section!r} has keys {sorted(allowed)}")
    return dict(raw)


def _fractions(value: Any) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 3
        and all(_is_real(v) and v >= 0 for v in value)
        and abs(sum(value) - 1.0) < 1e-9
    )


@dataclass(frozen=True)
class NumericsConfig(_Section):
    """How CPU arithmetic is dispatched (:mod:`relink_lib.numerics`): ``"portable"`` is bit-identical
    on every x86-64 CPU (the baselined profiles), ``"native"`` uses the machine's fastest kernels."""

    SECTION: ClassVar[str] = "numerics"
    mode: str = "native"

    def __post_init__(self) -> None:
        self._need(self.mode in NUMERICAL_MODES, "mode", f"one of {sorted(NUMERICAL_MODES)}")


@dataclass(frozen=True)
class CohortConfig(_Section):
    """The cohorts (docs/cohorts.md). Synthetic: ``n_pairs`` internal and ``n_pairs_external`` external
    pairs of ``image_size`` px, patient-level ``split_fractions`` (train, val, test); ``report_detail``
    scales the probability that a report keeps each instance detail, ``image_noise`` the image noise;
    ``roundtrip``: synthetic cohorts go through the export and the real loaders. Real: the roots in
    :class:`DataConfig`; ``image_size`` is the size images are loaded at (``None``: as stored)."""

    SECTION: ClassVar[str] = "cohort"
    source: str = "synthetic"
    n_pairs: int = 20000
    n_pairs_external: int = 4000
    image_size: int | None = 128
    report_detail: float = 1.0
    image_noise: float = 1.0
    text: str = "findings+impression"
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    # the external synthetic cohort mimics CheXpert Plus: train and valid only
    external_split_fractions: tuple[float, float, float] = (0.85, 0.15, 0.0)
    roundtrip: bool = True

    def __post_init__(self) -> None:
        self._need(self.source in COHORT_SOURCES, "source", f"one of {list(COHORT_SOURCES)}")
        for name in ("n_pairs", "n_pairs_external"):
            self._need(_is_int(getattr(self, name)) and getattr(self, name) >= 1, name, "a positive integer")
        if self.source == "synthetic":
            self._need(
                self.image_size is not None
                and _is_int(self.image_size)
                and self.image_size >= MIN_SYNTHETIC_IMAGE_SIZE,
                "image_size",
                f"an integer >= {MIN_SYNTHETIC_IMAGE_SIZE} (pixels; the smallest the synthetic generator renders)",
            )
        else:
            self._need(
                self.image_size is None or (_is_int(self.image_size) and self.image_size >= 8),
                "image_size",
                "an integer >= 8 (pixels) or None",
            )
        self._need(_is_real(self.report_detail) and 0 <= self.report_detail <= 1, "report_detail", "a value in [0, 1]")
        self._need(_is_real(self.image_noise) and self.image_noise >= 0, "image_noise", "a finite value >= 0")
        self._need(self.text in TEXT_FIELDS, "text", f"one of {list(TEXT_FIELDS)}")
        for name in ("n_pairs", "n_pairs_external"):
            self.need_synthetic_fits(self, name)
        for name in ("split_fractions", "external_split_fractions"):
            self._need(_fractions(getattr(self, name)), name, "three fractions >= 0 (train, val, test) summing to 1")
        self._need(isinstance(self.roundtrip, bool), "roundtrip", "True or False")

    @property
    def simulation(self) -> bool:
        """Whether the cohorts are the embedded simulation (synthetic), not real data."""
        return self.source == "synthetic"

    @property
    def max_synthetic_pairs(self) -> int | None:
        """The most pairs one synthetic draw may hold at ``image_size`` (:data:`MAX_SYNTHETIC_IMAGE_BYTES`);
        ``None`` for real cohorts."""
        if not self.simulation or self.image_size is None:
            return None
        return MAX_SYNTHETIC_IMAGE_BYTES // int(self.image_size) ** 2

    def need_synthetic_fits(self, section: "_Section", name: str, at: tuple[Any, ...] = ()) -> None:
        """Refuse key ``name`` of ``section`` (or its item at the subscripts ``at``), a number of synthetic pairs to
        draw at this cohort's image size, when their in-memory images would exceed
        :data:`MAX_SYNTHETIC_IMAGE_BYTES`."""
        most = self.max_synthetic_pairs
        n = getattr(section, name)
        for i in at:
            n = n[i]
        if most is not None and n > most:
            raise section._bad(
                name,
                f"at most {most:,} pairs at {self.image_size} px (the synthetic images live in memory as uint8, "
                f"{MAX_SYNTHETIC_IMAGE_BYTES / 2**30:g} GiB at most)",
                at,
            )


@dataclass(frozen=True)
class LadderConfig(_Section):
    """The model ladder (docs/models.md): the ``rungs`` trained on the synthetic cohort, least
    specialised first, at ``image_size`` px; ``epochs_scale`` multiplies every rung's epochs;
    ``overrides[rung]`` changes fields of one rung's spec (e.g. ``{"full-reports": {"epochs": 24}}``);
    ``threads``: CPU threads while training (``None``: torch's default; 1 avoids oversubscription)."""

    SECTION: ClassVar[str] = "ladder"
    rungs: tuple[str, ...] = ("captions", "impressions", "full-reports")
    image_size: int = 64
    epochs_scale: float = 1.0
    threads: int | None = 1
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._need(
            isinstance(self.rungs, tuple) and len(self.rungs) >= 1 and all(isinstance(r, str) for r in self.rungs),
            "rungs",
            "at least one rung name",
        )
        for i, rung in enumerate(self.rungs):
            if rung not in LADDER_RUNGS:
                raise ValueError(
                    f"params['ladder']['rungs']: unknown rung {rung!r}; expected names from {sorted(LADDER_RUNGS)} "
                    f"(key ladder.rungs[{i}])"
                )
        self._need(len(set(self.rungs)) == len(self.rungs), "rungs", "distinct rung names")
        self._need(_is_real(self.epochs_scale) and self.epochs_scale > 0, "epochs_scale", "a finite value > 0")
        self._need(
            self.threads is None or (_is_int(self.threads) and self.threads >= 1),
            "threads",
            "a positive integer or None",
        )
        self._need(
            isinstance(self.overrides, Mapping) and all(isinstance(v, Mapping) for v in self.overrides.values()),
            "overrides",
            "a mapping of rung name to a mapping of spec fields",
        )
        for rung, changes in self.overrides.items():
            if rung not in LADDER_RUNGS:
                raise ValueError(
                    f"params['ladder']['overrides']: unknown rung {rung!r}; expected names from "
                    f"{sorted(LADDER_RUNGS)} (key ladder.overrides)"
                )
            if "patch_size" in changes and not _is_pos_int(changes["patch_size"]):
                raise self._bad("overrides", "a positive integer (pixels)", (rung, "patch_size"))
        self._need(_is_int(self.image_size) and self.image_size >= 8, "image_size", "an integer >= 8 (pixels)")
        for rung in self.rungs:
            patch = self.patch_size(rung)
            self._need(
                self.image_size % patch == 0,
                "image_size",
                f"a multiple of rung {rung!r}'s ViT patch_size={patch} (pixels)",
            )

    def patch_size(self, rung: str) -> int:
        """The ViT patch size of ``rung``: its override's ``patch_size``, else :data:`LADDER_PATCH_SIZE`."""
        return int(self.overrides.get(rung, {}).get("patch_size", LADDER_PATCH_SIZE))


@dataclass(frozen=True)
class FeaturesConfig(_Section):
    """Feature extraction (docs/features.md): ``batch_size`` images or reports per encoder call,
    ``chunk_size`` rows per cached chunk (``None``: 8 batches; a multiple of ``batch_size``),
    ``device`` (``None``: CUDA when available), ``text_column`` of the cohort's pairs table,
    ``amp`` (mixed precision, CUDA only), ``threads`` (``None``: torch's default)."""

    SECTION: ClassVar[str] = "features"
    batch_size: int = 256
    threads: int | None = 1
    chunk_size: int | None = None
    device: str | None = None
    text_column: str = "text"
    amp: bool = True

    def __post_init__(self) -> None:
        self._need(_is_int(self.batch_size) and self.batch_size >= 1, "batch_size", "a positive integer")
        self._need(
            self.threads is None or (_is_int(self.threads) and self.threads >= 1),
            "threads",
            "a positive integer or None",
        )
        self._need(
            self.chunk_size is None
            or (
                _is_int(self.chunk_size)
                and self.chunk_size >= self.batch_size
                and self.chunk_size % self.batch_size == 0
            ),
            "chunk_size",
            f"None or a multiple of batch_size={self.batch_size}",
        )
        self._need(
            self.device is None
            or (isinstance(self.device, str) and re.fullmatch(f"{DEVICE_PATTERN}|mps", self.device) is not None),
            "device",
            "None (CUDA when available), 'cpu', 'cuda', 'cuda:<index>' or 'mps'",
        )
        self._need(isinstance(self.text_column, str) and bool(self.text_column), "text_column", "a column name")
        self._need(isinstance(self.amp, bool), "amp", "True or False")

    @property
    def rows_per_chunk(self) -> int:
        """Rows per cached chunk: ``chunk_size``, or 8 batches."""
        return int(self.chunk_size) if self.chunk_size is not None else 8 * int(self.batch_size)


@dataclass(frozen=True)
class AuditConfig(_Section):
    """The re-linkage audit (docs/audit.md): Recall@``ks`` at candidate pools of ``pool_sizes``
    (``None``: the full database), ``n_boot`` patient-level bootstrap resamples, ``chunk_size``
    queries per similarity block (memory about 5 x chunk_size x M bytes), ``device`` (``"auto"``:
    CUDA when available). Hard negatives: a missing label matches ``nan_as`` (0: not mentioned =
    absent), an uncertain one ``uncertain_as`` (-1: a value of its own). ``seen``: also audit a
    same-size patient-level sample of the train split. ``risk_pool_size``: pool of the per-study
    risk model (the full database if it does not fit)."""

    SECTION: ClassVar[str] = "audit"
    pool_sizes: tuple[int | None, ...] = DEFAULT_POOL_SIZES
    ks: tuple[int, ...] = DEFAULT_KS
    n_boot: int = 200
    chunk_size: int = 4096
    device: str = "auto"
    nan_as: float = 0.0
    uncertain_as: float = -1.0
    seen: bool = True
    risk_pool_size: int = 100

    def __post_init__(self) -> None:
        self._need_items(
            "pool_sizes",
            lambda n: n is None or (_is_int(n) and n >= 2),
            "a list of pool sizes (integers >= 2, None for the full database)",
            "an integer pool size >= 2 or None (the full database)",
        )
        self._need_items("ks", _is_pos_int, "a list of positive integers (the K of Recall@K)", "a positive integer")
        self._need(_is_int(self.n_boot) and self.n_boot >= 0, "n_boot", "an integer >= 0")
        self._need(_is_int(self.chunk_size) and self.chunk_size >= 1, "chunk_size", "a positive integer")
        self._need(
            isinstance(self.device, str) and re.fullmatch(f"auto|{DEVICE_PATTERN}", self.device) is not None,
            "device",
            "'auto', 'cpu', 'cuda' or 'cuda:<index>'",
        )
        for name in ("nan_as", "uncertain_as"):
            value = getattr(self, name)
            self._need(_is_real(value) and float(value) in LABEL_VALUES, name, "a label value (0, 1 or -1)")
        self._need(isinstance(self.seen, bool), "seen", "True or False")
        self._need(_is_int(self.risk_pool_size) and self.risk_pool_size >= 2, "risk_pool_size", "an integer >= 2")

    @property
    def finite_pool_sizes(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.pool_sizes if n is not None)


@dataclass(frozen=True)
class FrontierConfig(_Section):
    """Chapter 6's DP frontier (docs/dp.md) on the top rung: the grid ``inits`` x ``optimizers`` x
    ``lrs[optimizer]`` x ``epochs``, each with ``n_seeds`` noise seeds; the selection rule's utility
    limits ``max_probe_auroc_drop`` and ``max_zero_shot_auroc_drop`` (percentage points); the
    scaling study's private-set sizes (``scaling_sizes``, and ``scaling_factors`` times the own
    private set); the output-perturbation control's ``op_scales``; ``n_boot`` bootstrap resamples
    of the reduction; ``probe_max_train`` probe fit rows per evaluation; ``split_seed`` of the
    selection / report split; ``reference_pool_size``: N of the DP chapters' cuts (the paper's
    estimand is N = 10,000; a held-out half with fewer pairs uses all of its pairs)."""

    SECTION: ClassVar[str] = "dp.frontier"
    inits: tuple[str, ...] = ("pretrained", "reinit")
    optimizers: tuple[str, ...] = ("sgd", "adam")  # the order of the grid (OPTIMIZERS names the choices)
    lrs: Mapping[str, tuple[float, ...]] = field(
        default_factory=lambda: {"sgd": (0.03, 0.1, 0.3), "adam": (1e-3, 3e-3, 1e-2)}
    )
    epochs: tuple[float, ...] = (2, 6)
    n_seeds: int = 3
    # private pairs of the scaling study: internal train + a supplementary synthetic pool
    scaling_sizes: tuple[int, ...] = (20000, 50000)
    scaling_factors: tuple[float, ...] = ()
    # percentage points: the paper's claim allows 0.5 (its drop was 0.2); zero-shot's is justified in chapter 6
    max_probe_auroc_drop: float = 0.5
    max_zero_shot_auroc_drop: float = 1.0
    op_scales: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2)
    n_boot: int = 1000
    probe_max_train: int = 1000
    split_seed: int = 0
    reference_pool_size: int = 10_000

    def __post_init__(self) -> None:
        inits = ("pretrained", "reinit")
        self._need_items("inits", lambda x: x in inits, f"names from {inits}", f"one of the names from {inits}")
        self._need_items(
            "optimizers", lambda x: x in OPTIMIZERS, f"names from {OPTIMIZERS}", f"one of the names from {OPTIMIZERS}"
        )
        self._need(
            isinstance(self.lrs, Mapping) and all(opt in self.lrs for opt in self.optimizers),
            "lrs",
            "learning rates > 0 for every optimizer of the grid",
        )
        for opt, lrs in self.lrs.items():
            if opt not in OPTIMIZERS:
                raise self._bad("lrs", f"optimizer names from {OPTIMIZERS} as keys; {opt!r} is none")
            if not (isinstance(lrs, tuple) and len(lrs) >= 1):
                raise self._bad("lrs", "a list of learning rates > 0", (opt,))
            for i, lr in enumerate(lrs):
                if not (_is_real(lr) and lr > 0):
                    raise self._bad("lrs", "a finite learning rate > 0", (opt, i))
        self._need_items("epochs", lambda e: _is_real(e) and e > 0, "a list of values > 0", "a finite value > 0")
        self._need(_is_int(self.n_seeds) and self.n_seeds >= 1, "n_seeds", "a positive integer")
        self._need_items(
            "scaling_sizes", _is_pos_int, "a list of positive integers (pairs)", "a positive integer", at_least=0
        )
        self._need_items(
            "scaling_factors", lambda f: _is_real(f) and f > 0, "a list of values > 0", "a finite value > 0", at_least=0
        )
        for name in ("max_probe_auroc_drop", "max_zero_shot_auroc_drop"):
            self._need(_is_real(getattr(self, name)) and getattr(self, name) >= 0, name, "percentage points >= 0")
        self._need_items(
            "op_scales", lambda x: _is_real(x) and x > 0, "a list of noise scales > 0", "a finite noise scale > 0"
        )
        self._need(_is_int(self.n_boot) and self.n_boot >= 1, "n_boot", "a positive integer")
        self._need(_is_int(self.probe_max_train) and self.probe_max_train >= 2, "probe_max_train", "an integer >= 2")
        self._need(_is_seed(self.split_seed), "split_seed", f"an integer seed in [0, {MAX_SEED}]")
        self._need(
            _is_int(self.reference_pool_size) and self.reference_pool_size >= 2,
            "reference_pool_size",
            "an integer >= 2",
        )

    def scaling_sizes_above(self, n_own: int) -> list[int]:
        """Private-set sizes of the scaling study above ``n_own``: ``scaling_sizes`` and ``scaling_factors`` x
        ``n_own``."""
        sizes = {int(n) for n in self.scaling_sizes} | {int(round(float(f) * n_own)) for f in self.scaling_factors}
        return sorted(n for n in sizes if n > n_own)


@dataclass(frozen=True)
class BudgetSweepConfig(_Section):
    """The profile's own head-training schedule: ``optimizer``, learning rate ``lr`` and ``epochs`` from the
    pretrained heads (the per-rung mitigation without a selected setting, chapter 10's compute table).
    Chapter 9's budget sweep trains from fresh heads at chapter 6's released setting unless ``start`` is
    ``"profile"`` (an explicit override: this schedule from the pretrained heads; docs/risk.md).
    Chapter 6's frontier sets these per grid point instead (:class:`FrontierConfig`)."""

    SECTION: ClassVar[str] = "dp.budget_sweep"
    optimizer: str = DPConfig.optimizer
    lr: float = DPConfig.lr
    epochs: float = DPConfig.epochs
    start: str = "released"

    def __post_init__(self) -> None:
        for name in _DP_RUN_KEYS:
            ok, expected = _DP_CHECKS[name]
            self._need(ok(getattr(self, name)), name, expected)
        self._need(self.start in BUDGET_SWEEP_STARTS, "start", f"one of {BUDGET_SWEEP_STARTS}")


@dataclass(frozen=True)
class ConfirmationConfig(_Section):
    """Chapter 6's confirmation cohort (docs/dp.md): ``n_pairs`` fresh held-out synthetic pairs (same
    generator and cohort settings, another seed; never seen by the ladder, the DP training or the
    selection) on which the factorial and the paper's estimand are measured; the re-linkage curve's
    ``pool_sizes`` and ``ks``. Real-data profiles have no confirmation cohort."""

    SECTION: ClassVar[str] = "dp.confirmation"
    n_pairs: int = 20_000
    pool_sizes: tuple[int, ...] = (10, 100, 1000, 10_000)
    ks: tuple[int, ...] = (1, 5, 10)

    def __post_init__(self) -> None:
        self._need(_is_int(self.n_pairs) and self.n_pairs >= 4, "n_pairs", "an integer >= 4")
        self._need_items(
            "pool_sizes", lambda n: _is_int(n) and n >= 2, "a list of integers >= 2", "an integer pool size >= 2"
        )
        self._need_items("ks", _is_pos_int, "a list of positive integers (the K of Recall@K)", "a positive integer")


@dataclass(frozen=True)
class FactorialConfig(_Section):
    """Chapter 6's factorial decomposition of the selected setting's cut (docs/dp.md): DP arms at each
    of ``epsilons`` (the profile's target is always one of them), ``n_seeds`` seeds per arm, ``n_boot``
    paired bootstrap resamples (patients and seeds); the non-private learning curve from fresh heads at
    ``curve_epochs`` with ``curve_n_seeds`` seeds (one run per seed to the largest epoch count,
    evaluated at checkpoints); label-level retrieval P@10 among the first ``retrieval_pairs`` confirmation
    pairs (its cost grows with the square of the pairs; R@1 uses them all)."""

    SECTION: ClassVar[str] = "dp.factorial"
    epsilons: tuple[float, ...] = (0.34, 1.0, 8.0, 1000.0)
    n_seeds: int = 10
    n_boot: int = 1000
    curve_epochs: tuple[float, ...] = (0.25, 0.5, 1, 2, 4, 8, 16, 32, 50)
    curve_n_seeds: int = 3
    retrieval_pairs: int = 2000

    def __post_init__(self) -> None:
        self._need_items(
            "epsilons",
            lambda e: _is_real(e) and e > 0,
            "a list of finite values > 0",
            "a finite epsilon > 0",
            at_least=0,
        )
        self._need(_is_int(self.n_seeds) and self.n_seeds >= 1, "n_seeds", "a positive integer")
        self._need(_is_int(self.n_boot) and self.n_boot >= 1, "n_boot", "a positive integer")
        self._need_items(
            "curve_epochs", lambda e: _is_real(e) and e > 0, "a list of values > 0", "a finite value > 0", at_least=0
        )
        self._need(_is_int(self.curve_n_seeds) and self.curve_n_seeds >= 1, "curve_n_seeds", "a positive integer")
        self._need(_is_int(self.retrieval_pairs) and self.retrieval_pairs >= 11, "retrieval_pairs", "an integer >= 11")


_DP_SHARED_KEYS: tuple[str, ...] = (
    "target_epsilon",
    "delta",
    "batch_size",
    "max_grad_norm",
    "sampling",
    "temperature",
    "engine",
    "noise_multiplier",
    "bank_grad",
)
"""The :class:`DPConfig` fields every DP training of a profile shares: the ``dp`` section's flat keys."""
_DP_RUN_KEYS: tuple[str, ...] = ("optimizer", "lr", "epochs")
"""The :class:`DPConfig` fields each study sets per run (chapter 6's grid point, chapter 9's ``budget_sweep``)."""
_DP_SUBSECTIONS: tuple[str, ...] = ("frontier", "budget_sweep", "confirmation", "factorial")
"""The ``dp`` section's sub-sections: chapter 6's frontier, chapter 9's sweep, chapter 6's confirmation cohort and
factorial."""


@dataclass(frozen=True)
class DPSectionConfig(_Section):
    """The DP mitigation (docs/dp.md). Flat keys: the :class:`DPConfig` fields every DP training of
    the profile shares (``target_epsilon``, ``delta``, ``batch_size``, ``max_grad_norm``,
    ``sampling``, ``temperature``, ``engine``, ``noise_multiplier``, ``bank_grad``; DPConfig's
    defaults). ``bank_size``: the public bank, at most this many reports and images of the internal
    val split. Sub-sections, one per study, with the per-run ``optimizer``, ``lr`` and ``epochs``:
    ``frontier`` (chapter 6's grid, :class:`FrontierConfig`) and ``budget_sweep`` (chapter 9,
    :class:`BudgetSweepConfig`). ``seed`` is the profile's, not a key of the section."""

    SECTION: ClassVar[str] = "dp"
    target_epsilon: float | None = DPConfig.target_epsilon
    delta: float = DPConfig.delta
    batch_size: int = DPConfig.batch_size
    max_grad_norm: float = DPConfig.max_grad_norm
    sampling: str = DPConfig.sampling
    temperature: float = DPConfig.temperature
    engine: str = DPConfig.engine
    noise_multiplier: float | None = DPConfig.noise_multiplier
    bank_grad: bool = DPConfig.bank_grad
    bank_size: int = 2048
    frontier: FrontierConfig = field(default_factory=FrontierConfig)
    budget_sweep: BudgetSweepConfig = field(default_factory=BudgetSweepConfig)
    confirmation: ConfirmationConfig = field(default_factory=ConfirmationConfig)
    factorial: FactorialConfig = field(default_factory=FactorialConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in _DP_SHARED_KEYS:
            ok, expected = _DP_CHECKS[name]
            self._need(ok(getattr(self, name)), name, expected)
        self._need(_is_int(self.bank_size) and self.bank_size >= 1, "bank_size", "a positive integer")
        self._need(_is_int(self.seed), "seed", "an integer (the profile's seed)")

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return (*_DP_SHARED_KEYS, "bank_size", *_DP_SUBSECTIONS)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None, seed: int = 0) -> "DPSectionConfig":
        values = _check_keys(cls.SECTION, raw, cls.keys())
        flat = {k: _freeze(v) for k, v in values.items() if k not in _DP_SUBSECTIONS}
        return cls(
            **flat,
            frontier=FrontierConfig.from_mapping(values.get("frontier")),
            budget_sweep=BudgetSweepConfig.from_mapping(values.get("budget_sweep")),
            confirmation=ConfirmationConfig.from_mapping(values.get("confirmation")),
            factorial=FactorialConfig.from_mapping(values.get("factorial")),
            seed=int(seed),
        )

    def to_dict(self) -> dict[str, Any]:
        out = {name: _thaw(getattr(self, name)) for name in (*_DP_SHARED_KEYS, "bank_size")}
        return {**out, **{name: getattr(self, name).to_dict() for name in _DP_SUBSECTIONS}}

    def training_config(self, *, optimizer: str, lr: float, epochs: float, seed: int | None = None) -> DPConfig:
        """The :class:`DPConfig` of one training run: the section's shared keys, the run's ``optimizer``,
        ``lr`` and ``epochs``, and ``seed`` (``None``: the profile's)."""
        shared = {name: getattr(self, name) for name in _DP_SHARED_KEYS}
        return DPConfig(
            **shared, optimizer=optimizer, lr=lr, epochs=epochs, seed=self.seed if seed is None else int(seed)
        )

    @property
    def budget_sweep_training(self) -> DPConfig:
        """The :class:`DPConfig` chapter 9's budget sweep trains with (its ``target_epsilon`` is set per budget)."""
        return self.training_config(**{name: getattr(self.budget_sweep, name) for name in _DP_RUN_KEYS})


@dataclass(frozen=True)
class UtilityConfig(_Section):
    """Utility (docs/utility.md): ``probe_C``, inverse L2 strength of the linear probe."""

    SECTION: ClassVar[str] = "utility"
    probe_C: float = 1.0

    def __post_init__(self) -> None:
        self._need(_is_real(self.probe_C) and self.probe_C > 0, "probe_C", "a finite value > 0")


@dataclass(frozen=True)
class BudgetConfig(_Section):
    """Chapter 9's privacy-budget sweep (docs/risk.md): target ``epsilons`` (``None``: non-private),
    each trained ``n_seeds`` times (seeds ``seed``, ``seed + 1``, ...) from fresh heads with the ``dp``
    section's shared keys and chapter 6's released optimizer, lr and epochs (``dp.budget_sweep.start``).
    The gradient-access attack picks
    from ``attack_candidates`` images (chance 1/N) for ``attack_targets`` training pairs, with
    ``attack_updates`` intercepted updates each, and also counts |cos| >= ``attack_cos_threshold``;
    ``relaxed_dof``: dimension of one observation of the GLRT adversary (1 favours it most);
    ``pld_discretization``: the PLD loss grid (nats; widened for small sigma)."""

    SECTION: ClassVar[str] = "budget"
    epsilons: tuple[float | None, ...] = (0.34, 1.0, 8.0, 32.0, 1e3, 1e6, 1e9, 1e12, 1e15, None)
    n_seeds: int = 3
    attack_candidates: int = 100
    attack_targets: int = 200
    attack_cos_threshold: float = 0.5
    attack_updates: int = 1
    relaxed_dof: int = 1
    pld_discretization: float = 1e-3

    def __post_init__(self) -> None:
        self._need_items(
            "epsilons",
            lambda e: e is None or (_is_real(e) and e > 0),
            "a list of values > 0, None for non-private",
            "a finite epsilon > 0 or None (non-private)",
        )
        self._need(
            _is_int(self.attack_candidates) and self.attack_candidates >= 2, "attack_candidates", "an integer >= 2"
        )
        for name in ("n_seeds", "attack_targets", "attack_updates", "relaxed_dof"):
            self._need(_is_int(getattr(self, name)) and getattr(self, name) >= 1, name, "a positive integer")
        self._need(
            _is_real(self.attack_cos_threshold) and 0 < self.attack_cos_threshold <= 1,
            "attack_cos_threshold",
            "a value in (0, 1]",
        )
        self._need(
            _is_real(self.pld_discretization) and self.pld_discretization > 0,
            "pld_discretization",
            "a value > 0 (nats)",
        )


@dataclass(frozen=True)
class DataConfig(_Section):
    """Real-data inputs (docs/data.md), also read from ``MIMIC_CXR_ROOT``, ``CHEXPERT_PLUS_ROOT`` and
    ``MODELS``: the two dataset roots and the checkpoint list (a JSON or YAML file, or the list)."""

    SECTION: ClassVar[str] = "data"
    mimic_cxr_root: str | None = None
    chexpert_plus_root: str | None = None
    models: Any = None

    def __post_init__(self) -> None:
        for name in ("mimic_cxr_root", "chexpert_plus_root"):
            value = getattr(self, name)
            self._need(value is None or isinstance(value, (str, Path)), name, "a directory path or None")


@dataclass(frozen=True)
class AdaptiveConfig(_Section):
    """Chapter 11's adaptive attacker and the custodian's decision (docs/adaptive.md): the attacker's public
    pairs ``m_values`` (0: the passive attacker, released heads as they are; ``None``: all of a source's public
    pairs); ``public_pool_min``: a synthetic public source with fewer pairs is topped up with fresh patients of the
    same generator to this many; ``m_reference``: the m of the adaptive column of the protection and decision
    tables (the largest available m up to it); ``ridge_alpha``: the ridge penalty relative to
    ``trace(X^T X) / d`` of the centred public features (image features for the ridge map, TF-IDF vectors for the
    text-side attack); ``cca_components`` (at most) and ``cca_reg`` (relative, as ridge); the trained attacks'
    ``attack_epochs``, ``attack_lr`` (Adam) and ``attack_batch_size``; ``n_max``: the largest pool of the
    restricted-access release option; the custodian's risk tolerances ``max_adaptive_lift_n10000`` (x chance)
    and ``max_zero_shot_drop`` (percentage points of macro zero-shot AUROC); ``n_boot`` patient-bootstrap
    resamples (``None``: the audit's)."""

    SECTION: ClassVar[str] = "adaptive"
    m_values: tuple[int | None, ...] = (0, 50, 200, 1000, 5000, None)
    public_pool_min: int = 5000
    m_reference: int = 1000
    ridge_alpha: float = 1e-2
    cca_components: int = 64
    cca_reg: float = 1e-2
    attack_epochs: float = 20
    attack_lr: float = 1e-2
    attack_batch_size: int = 256
    n_max: int = 100
    max_adaptive_lift_n10000: float = 5.0
    max_zero_shot_drop: float = 1.0
    n_boot: int | None = None

    def __post_init__(self) -> None:
        self._need_items(
            "m_values",
            lambda m: m is None or (_is_int(m) and m >= 0),
            "a list of integers >= 0, None for all public pairs",
            "an integer >= 0 or None (all public pairs)",
        )
        self._need(_is_int(self.m_reference) and self.m_reference >= 2, "m_reference", "an integer >= 2")
        self._need(_is_int(self.public_pool_min) and self.public_pool_min >= 0, "public_pool_min", "an integer >= 0")
        for name in ("ridge_alpha", "cca_reg", "attack_epochs", "attack_lr"):
            self._need(_is_real(getattr(self, name)) and getattr(self, name) > 0, name, "a finite value > 0")
        for name in ("cca_components", "attack_batch_size"):
            self._need(_is_int(getattr(self, name)) and getattr(self, name) >= 1, name, "a positive integer")
        self._need(_is_int(self.n_max) and self.n_max >= 2, "n_max", "an integer >= 2")
        for name in ("max_adaptive_lift_n10000", "max_zero_shot_drop"):
            self._need(_is_real(getattr(self, name)) and getattr(self, name) >= 0, name, "a finite value >= 0")
        self._need(
            self.n_boot is None or (_is_int(self.n_boot) and self.n_boot >= 1), "n_boot", "a positive integer or None"
        )


SECTIONS: dict[str, type[_Section]] = {
    "numerics": NumericsConfig,
    "cohort": CohortConfig,
    "ladder": LadderConfig,
    "features": FeaturesConfig,
    "audit": AuditConfig,
    "dp": DPSectionConfig,
    "utility": UtilityConfig,
    "budget": BudgetConfig,
    "adaptive": AdaptiveConfig,
    "data": DataConfig,
}
"""Section name -> its config class, in the order of a profile."""


@dataclass(frozen=True)
class Profile(Mapping[str, Any]):
    """A whole run configuration: ``name`` (the profile it came from), ``seed`` and one typed config
    per section. Reads as the nested dict of :meth:`to_params` too (``profile["dp"]["target_epsilon"]``; the
    ``"profile"`` key is the name)."""

    name: str = "default"
    seed: int = 0
    numerics: NumericsConfig = field(default_factory=NumericsConfig)
    cohort: CohortConfig = field(default_factory=CohortConfig)
    ladder: LadderConfig = field(default_factory=LadderConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    dp: DPSectionConfig = field(default_factory=DPSectionConfig)
    utility: UtilityConfig = field(default_factory=UtilityConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        if self.name not in PROFILE_NAMES:
            raise ValueError(f"params['profile']={self.name!r}: expected one of {', '.join(PROFILE_NAMES)}")
        if not _is_seed(self.seed):
            raise ValueError(f"params['seed']={self.seed!r}: expected an integer >= 0 (at most {MAX_SEED})")
        if self.dp.seed != self.seed:
            raise ValueError(f"params['dp'] training seed {self.dp.seed} differs from params['seed']={self.seed}")
        # the other synthetic draws at the cohort's image size: chapter 6's confirmation cohort and scaling pools,
        # chapter 11's top-up of a small public source
        self.cohort.need_synthetic_fits(self.dp.confirmation, "n_pairs")
        for i in range(len(self.dp.frontier.scaling_sizes)):
            self.cohort.need_synthetic_fits(self.dp.frontier, "scaling_sizes", (i,))
        self.cohort.need_synthetic_fits(self.adaptive, "public_pool_min")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "Profile":
        """The profile from its nested-dict form (missing keys take their defaults)."""
        if isinstance(params, Profile):
            return params
        if not isinstance(params, Mapping):
            raise ValueError(f"params: expected a mapping of profile sections, got {type(params).__name__}")
        allowed = ("profile", "seed", *SECTIONS)
        unknown = [str(k) for k in params if k not in allowed]
        if unknown:
            close = difflib.get_close_matches(unknown[0], allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"params: unknown section {unknown[0]!r}{hint}; expected keys of {sorted(allowed)}")
        seed = params.get("seed", 0)
        if not _is_seed(seed):
            raise ValueError(f"params['seed']={seed!r}: expected an integer >= 0 (at most {MAX_SEED})")
        sections: dict[str, Any] = {}
        for key, kind in SECTIONS.items():
            raw = params.get(key)
            sections[key] = (
                DPSectionConfig.from_mapping(raw, seed=int(seed)) if kind is DPSectionConfig else kind.from_mapping(raw)
            )
        return cls(name=str(params.get("profile", "default")), seed=int(seed), **sections)

    def to_params(self) -> dict[str, Any]:
        """The nested-dict form (sections as dicts, sequences as tuples): a fresh copy each call."""
        return copy.deepcopy(self._params)

    @cached_property
    def _params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seed": self.seed}
        for key in SECTIONS:
            out[key] = getattr(self, key).to_dict()
        out["profile"] = self.name
        return out

    def replace_sections(self, *, seed: int | None = None, **sections: Mapping[str, Any]) -> "Profile":
        """A validated copy with ``seed`` and the given sections' keys changed
        (``replace_sections(seed=1, cohort={"n_pairs": 10})``)."""
        params = self.to_params()
        if seed is not None:
            params["seed"] = seed
        for key, update in sections.items():
            if key not in SECTIONS:
                raise ValueError(f"replace_sections: unknown section {key!r}; expected one of {list(SECTIONS)}")
            params[key] = {**params[key], **dict(update)}
        return Profile.from_params(params)

    def __getitem__(self, key: str) -> Any:
        return copy.deepcopy(self._params[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._params)

    def __len__(self) -> int:
        return len(self._params)

    def __hash__(self) -> int:  # a Mapping is unhashable by default; a profile is a value
        return hash((self.name, self.seed))


BOOK_SPLITS: dict[str, str] = {
    "train": "the model ladder and the DP heads train on it",
    "val": "the DP heads' public report bank is drawn from it (dp.bank_size)",
    "test": "the audit's held-out pairs",
}
"""The internal cohort's splits every chapter run needs, and what needs each."""


def check_book_profile(profile: Profile) -> Profile:
    """``profile`` if the chapters can run on it, beyond what every :class:`Profile` satisfies.

    :func:`relink_lib.profiles.get_profile` applies it to every profile it builds; the derived profiles that stages
    build with :meth:`Profile.replace_sections` skip it (chapter 6's confirmation cohort and scaling pool hold
    a single split). The internal synthetic cohort needs a share > 0 in each of :data:`BOOK_SPLITS` (a real
    cohort's splits are its own), and at least ``budget.attack_candidates`` pairs.
    """
    cohort = profile.cohort
    if cohort.simulation:
        for i, (split, why) in enumerate(BOOK_SPLITS.items()):
            share = cohort.split_fractions[i]
            if not share > 0:
                raise ValueError(
                    f"params['cohort']['split_fractions'][{i}]={share!r}: expected a {split} fraction > 0 "
                    f"({why}) (key cohort.split_fractions[{i}])"
                )
        if profile.budget.attack_candidates > cohort.n_pairs:
            raise ValueError(
                f"params['budget']['attack_candidates']={profile.budget.attack_candidates!r}: expected at most "
                f"cohort.n_pairs={cohort.n_pairs} (the attack picks among training images) "
                "(key budget.attack_candidates)"
            )
    return profile


def as_profile(params: "ProfileLike") -> Profile:
    """``params`` as a :class:`Profile` (built and validated from a mapping; a profile as it is)."""
    return Profile.from_params(params)


ProfileLike = Profile | Mapping[str, Any]
"""What a stage accepts: a :class:`Profile`, or its nested-dict form."""
