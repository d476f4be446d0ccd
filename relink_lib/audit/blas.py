"""Which BLAS computes the audit's similarity blocks on the CPU: torch's (MKL) or numpy's (OpenBLAS).

The audit's cost is one ``(chunk, d) x (d, M)`` single-precision GEMM per block. torch ships MKL and numpy ships
OpenBLAS; which one is faster depends on the CPU (on an AVX2 AMD EPYC OpenBLAS ran the audit's shape 1.8x faster
than MKL; on an AVX-512 Intel Xeon MKL is usually ahead). :func:`gemm_choice` decides once per process:

- the portable numerical mode always uses torch (its MKL runs under conditional numerical reproducibility, which
  makes results bit-identical across CPUs; OpenBLAS picks kernels by CPU and does not);
- ``RELINK_GEMM=torch`` or ``numpy`` in the environment forces a backend;
- otherwise a micro-benchmark at the audit's block shape (``2048 x 512`` times ``512 x 8192``, best of three each,
  the process's thread settings) picks numpy when it is at least :data:`MARGIN` times faster, else torch. The
  result is stored once per machine (``<cache root>/machine/gemm_choice.json``, keyed by CPU model, thread count
  and the two libraries' versions), so every process of a run, and every later run, uses the same BLAS (a choice
  that flipped between notebooks would split the native cache).

The choice is part of :func:`relink_lib.numerics.record` (the provenance every results file carries) and of the
native cache token, so results computed with different BLAS never share a cache entry. Either backend feeds the
same comparisons: the counts stay exact for the scores the chosen BLAS computed, and ties are judged within one
block computed by one backend.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

GEMM_ENV = "RELINK_GEMM"
GEMM_BACKENDS: tuple[str, ...] = ("torch", "numpy")
MARGIN = 1.1
"""numpy's BLAS is chosen only when it is at least this many times faster than torch's at the audit's shape."""
SHAPE: tuple[int, int, int] = (2048, 512, 8192)
"""``(rows, d, columns)`` of the micro-benchmark: one audit block at d = 512."""


@dataclass(frozen=True)
class GemmChoice:
    """The backend and why: ``reason`` (``portable mode``, ``environment`` or ``benchmark``) and, when measured, the
    GFLOPS of each backend at :data:`SHAPE`."""

    backend: str
    reason: str
    torch_gflops: float | None = None
    numpy_gflops: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _best_seconds(fn: Any, repeats: int = 3) -> float:
    fn()  # warm-up: thread pools, page faults
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure_gflops(shape: tuple[int, int, int] = SHAPE, seed: int = 0) -> dict[str, float]:
    """GFLOPS of torch's and numpy's float32 GEMM at ``shape`` = ``(rows, d, columns)`` (best of three)."""
    rows, d, cols = shape
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rows, d), dtype=np.float32)
    b = np.ascontiguousarray(rng.standard_normal((cols, d), dtype=np.float32)).T  # (d, cols) transposed view
    out = np.empty((rows, cols), dtype=np.float32)
    ta, tb, tout = torch.from_numpy(a), torch.from_numpy(np.ascontiguousarray(b.T)).T, torch.from_numpy(out)
    flops = 2.0 * rows * d * cols
    t_torch = _best_seconds(lambda: torch.mm(ta, tb, out=tout))
    t_numpy = _best_seconds(lambda: np.matmul(a, b, out=out))
    return {"torch": flops / t_torch / 1e9, "numpy": flops / t_numpy / 1e9}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or the platform's processor string, or ``unknown``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _machine_key() -> dict[str, Any]:
    return {"cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__, "numpy": np.__version__}


def choice_file() -> Path:
    """Where the machine's choice is kept: ``$RELINK_CACHE/machine/`` or the repository's ``cache/machine/``."""
    parent = os.environ.get("RELINK_CACHE")
    root = Path(parent) if parent else Path(__file__).resolve().parents[2] / "cache"
    return root / "machine" / "gemm_choice.json"


@functools.lru_cache(maxsize=1)
def gemm_choice() -> GemmChoice:
    """The backend of the audit's CPU GEMMs (see the module docstring: per process, then per machine)."""
    if os.environ.get("RELINK_NUMERICS") == "portable":  # relink_lib.numerics.MODE_ENV (not imported: no cycle)
        return GemmChoice("torch", "portable mode")
    forced = os.environ.get(GEMM_ENV)
    if forced:
        if forced not in GEMM_BACKENDS:
            raise ValueError(f"{GEMM_ENV}={forced!r}: expected one of {', '.join(GEMM_BACKENDS)}")
        return GemmChoice(forced, "environment")
    key, path = _machine_key(), choice_file()
    try:
        stored = json.loads(path.read_text())
        if stored.get("machine") == key and stored.get("backend") in GEMM_BACKENDS:
            return GemmChoice(
                stored["backend"], "benchmark (stored)", stored.get("torch_gflops"), stored.get("numpy_gflops")
            )
    except (OSError, ValueError, AttributeError):
        pass
    g = measure_gflops()
    backend = "numpy" if g["numpy"] >= MARGIN * g["torch"] else "torch"
    choice = GemmChoice(backend, "benchmark", round(g["torch"], 1), round(g["numpy"], 1))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps({**choice.to_json(), "machine": key}, indent=1) + "\n")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache: the choice holds for this process
    return choice
