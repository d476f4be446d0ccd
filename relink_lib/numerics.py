"""The numerical mode a run computes under, so baselined numbers are the same on every x86-64 CPU.

On a CPU, torch picks its kernels by instruction set (AVX-512, AVX2 or none), MKL by processor
and oneDNN and NNPACK by their own dispatch; each changes the order of floating-point sums, and
a few hundred steps of ladder training turn those last-bit differences into different weights.
Two modes (see ``docs/stack.md`` for the measurements):

- ``portable`` (profiles ``smoke`` and ``ci``, whose numbers nbval checks): torch's scalar
  ``default`` kernels (``ATEN_CPU_CAPABILITY=default``), MKL's conditional numerical
  reproducibility (``MKL_CBWR=COMPATIBLE``), one thread everywhere, oneDNN and NNPACK off (so a
  convolution is im2col + MKL GEMM), and deterministic algorithms. Bit-identical results on any
  x86-64 CPU, at a cost in speed.
- ``native`` (``default`` and ``paper``): whatever the machine and torch choose; fastest.

Environment variables must be set before torch dispatches its first operation, so the pipeline
starts every notebook kernel (and the nbval run) with :func:`kernel_env`, which overrides the
user's shell; the kernel then applies the in-process switches when it imports
:mod:`relink_lib` (``RELINK_NUMERICS`` in the environment). :func:`record` says what a process
actually ran under; every results file carries it in its provenance.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from threadpoolctl import threadpool_limits

from .audit.blas import gemm_choice
from .audit.fused import status as fused_status
from .config import NUMERICAL_MODES, ProfileLike, as_profile

MODE_ENV = "RELINK_NUMERICS"


@dataclass(frozen=True)
class NumericalMode:
    """A named numerical mode: environment variables for a child process and in-process switches.

    env: variables a process must start with (they are read once, at torch's first dispatch and
    at MKL's initialisation). threads: intra-op threads for torch and BLAS (``None``: leave them).
    """

    name: str
    env: Mapping[str, str] = field(default_factory=dict)
    threads: int | None = None
    disable_mkldnn: bool = False
    disable_nnpack: bool = False
    deterministic: bool = False

    @property
    def expected_capability(self) -> str | None:
        """The torch CPU capability this mode requires (upper case, as torch reports it), or ``None``."""
        cap = self.env.get("ATEN_CPU_CAPABILITY")
        return cap.upper() if cap else None


MODES: dict[str, NumericalMode] = {
    "portable": NumericalMode(
        name="portable",
        env={
            "ATEN_CPU_CAPABILITY": "default",
            "MKL_CBWR": "COMPATIBLE",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            MODE_ENV: "portable",
        },
        threads=1,
        disable_mkldnn=True,
        disable_nnpack=True,
        deterministic=True,
    ),
    "native": NumericalMode(name="native", env={MODE_ENV: "native"}),
}
"""The modes a profile may name in ``params["numerics"]["mode"]`` (:data:`relink_lib.config.NUMERICAL_MODES`)."""
if tuple(MODES) != NUMERICAL_MODES:  # the config validates mode names without importing torch: keep the two in step
    raise ImportError(f"numerics.MODES {tuple(MODES)} and config.NUMERICAL_MODES {NUMERICAL_MODES} differ")

# Variables the portable mode overrides even when the user's shell sets them. Others that steer
# dispatch (MKL_ENABLE_INSTRUCTIONS, ONEDNN_MAX_CPU_ISA) are left alone on purpose: under
# MKL_CBWR=COMPATIBLE and with oneDNN off they must not matter, and the dispatch test varies them.
_CONTROLLED = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def get_mode(name: str) -> NumericalMode:
    """The mode called ``name``; a clear error names the choices."""
    if name not in MODES:
        raise ValueError(f"numerics mode={name!r}: expected one of {sorted(MODES)}")
    return MODES[name]


def mode_of(params: ProfileLike) -> NumericalMode:
    """The mode a profile asks for: its ``numerics.mode`` (default: :class:`relink_lib.config.NumericsConfig`'s)."""
    return get_mode(as_profile(params).numerics.mode)


def kernel_env(mode: NumericalMode, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a child process (notebook kernel, pytest) starts with under ``mode``.

    ``base`` (default ``os.environ``) is copied; for ``portable`` every variable that steers CPU
    dispatch is overridden or removed, so the user's shell cannot change the numbers.
    """
    env = dict(os.environ if base is None else base)
    if mode.name == "portable":
        for key in _CONTROLLED:
            env.pop(key, None)
    env.update(mode.env)
    return env


def apply_in_process(mode: NumericalMode) -> None:
    """Apply the in-process switches of ``mode`` (threads, oneDNN, NNPACK, deterministic algorithms).

    The environment part cannot be changed once torch has dispatched an operation: a process
    that did not start with :func:`kernel_env` gets a warning, and :func:`record` shows the
    capability it really used.
    """
    for key, value in mode.env.items():  # effective only before torch's first dispatch / MKL's first call
        os.environ[key] = value
    if mode.threads is not None:
        torch.set_num_threads(mode.threads)
        threadpool_limits(mode.threads)
    if mode.disable_mkldnn:
        torch.backends.mkldnn.enabled = False  # type: ignore[assignment]  # a ContextProp in the stubs
    if mode.disable_nnpack:
        torch.backends.nnpack.set_flags(False)
    if mode.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    expected = mode.expected_capability
    actual = torch.backends.cpu.get_cpu_capability()
    if expected and actual != expected:
        warnings.warn(
            f"numerical mode {mode.name!r} needs torch CPU capability {expected}, but this process runs {actual}: "
            f"start it through `python -m relink_lib` (or with {MODE_ENV}={mode.name} and "
            f"ATEN_CPU_CAPABILITY={mode.env['ATEN_CPU_CAPABILITY']}) to get the baselined numbers",
            stacklevel=2,
        )


def apply_from_env() -> None:
    """Apply the mode named by ``RELINK_NUMERICS`` in this process's environment, if any (called on import)."""
    name = os.environ.get(MODE_ENV)
    if name:
        apply_in_process(get_mode(name))


def record() -> dict[str, Any]:
    """What this process computes under: mode, torch CPU capability, threads, MKL and oneDNN/NNPACK switches."""
    return {
        "numerical_mode": os.environ.get(MODE_ENV, "native"),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "mkl_cbwr": os.environ.get("MKL_CBWR", "unset"),
        "mkldnn_enabled": bool(torch.backends.mkldnn.enabled),
        "nnpack_enabled": bool(torch._C._get_nnpack_enabled()),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "audit_gemm": gemm_choice().to_json(),
        "audit_counter": fused_status(),  # exact integer counts either way: provenance, not a cache key
    }


def dispatch_token() -> str:
    """The CPU dispatch this process really computes under, for the keys of steps that never run the audit's GEMM
    (ladder training, feature extraction): ``portable`` only when the portable switches are all in force
    (capability ``DEFAULT``, one thread, oneDNN and NNPACK off); otherwise ``native-<capability>``.

    It leaves out the audit's BLAS (:func:`relink_lib.audit.blas.gemm_choice`), which these steps do not use: that
    choice is benchmarked per thread count, so a feature shard started with one thread and a ``--status`` or
    ``--merge`` from a many-thread shell must still name the same cache entry.
    """
    portable = MODES["portable"]
    in_force = (
        torch.backends.cpu.get_cpu_capability() == portable.expected_capability
        and os.environ.get("MKL_CBWR") == portable.env["MKL_CBWR"]
        and torch.get_num_threads() == portable.threads
        and not torch.backends.mkldnn.enabled
        and not torch._C._get_nnpack_enabled()
    )
    return "portable" if in_force else f"native-{torch.backends.cpu.get_cpu_capability()}"


def cache_token() -> str:
    """What the cache key of a step whose numbers pass through the audit's similarity GEMM must include:
    :func:`dispatch_token` and, in the native mode, the audit's BLAS (``-numpy`` when it is numpy's), so results
    computed under different dispatch or BLAS never share a cache entry."""
    token = dispatch_token()
    if token == "portable":
        return token
    gemm = gemm_choice().backend
    return token + ("" if gemm == "torch" else f"-{gemm}")
