"""A fused compare-and-count pass for the audit kernel: one read of each similarity block instead of four.

The kernel's per-block work after the GEMM is, per query row ``r``, two counts over the block's columns: scores at
least the truth's (minus ``tie_tol``) and scores strictly above it (plus ``tie_tol``). In torch that is four passes
over the block (two comparisons writing a boolean mask, two reductions reading it), which at the small projection
widths of the ladder's heads (d = 64-96) costs several times the GEMM itself. Here a small C function reads each
score once and updates both counts; Python threads split the rows (the call releases the GIL).

The C source below is compiled on first use with the system's C compiler (``cc``, or ``$CC``) into
``<cache root>/machine/fused-<hash>.so`` (the hash covers the source, the flags and the compiler's version), then
loaded with :mod:`ctypes`. GCC's ``target_clones`` builds AVX-512, AVX2 and baseline x86-64 versions and picks
one at load time. Counts are integers from exact float comparisons, so every version, and the torch fallback,
gives the same counts: the choice is recorded in the provenance (:func:`status`) but is not a numerical mode.
With no compiler, or ``RELINK_FUSED=0``, :func:`available` is false and the kernel uses its torch passes.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

FUSED_ENV = "RELINK_FUSED"
"""``0`` switches the fused pass off (the torch passes run instead); anything else, or unset, leaves it on."""

_SOURCE = r"""
#include <stdint.h>
#include <stddef.h>

#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define RELINK_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define RELINK_CLONES
#endif

/* For rows [r0, r1) of a row-major float block s (row stride ld, cols columns): own = s[r, own_col[r]],
   at_least[r] = sum_j w_j [s_rj >= own - tol], above[r] = sum_j w_j [s_rj > own + tol], w_j = 1 when w is NULL.
   The thresholds are rounded to float as torch rounds (own - tol) for a float32 tensor. */
RELINK_CLONES
void relink_count_rows(const float *s, int64_t ld, int64_t cols, int64_t r0, int64_t r1, const int64_t *own_col,
                       float tol, const int64_t *w, int64_t *at_least, int64_t *above) {
    for (int64_t r = r0; r < r1; ++r) {
        const float *row = s + r * ld;
        const float own = row[own_col[r]];
        const float lo = own - tol, hi = own + tol;
        int64_t ge = 0, gt = 0;
        if (w == NULL) {
            for (int64_t j0 = 0; j0 < cols; j0 += 1 << 20) { /* int32 lanes vectorise; flush every 2^20 */
                const int64_t j1 = j0 + (1 << 20) < cols ? j0 + (1 << 20) : cols;
                int32_t ge32 = 0, gt32 = 0;
                for (int64_t j = j0; j < j1; ++j) {
                    ge32 += row[j] >= lo;
                    gt32 += row[j] > hi;
                }
                ge += ge32;
                gt += gt32;
            }
        } else {
            for (int64_t j = 0; j < cols; ++j) {
                ge += (row[j] >= lo) ? w[j] : 0;
                gt += (row[j] > hi) ? w[j] : 0;
            }
        }
        at_least[r] = ge;
        above[r] = gt;
    }
}
"""
_FLAGS = ("-O3", "-fPIC", "-shared", "-fno-fast-math")
_ROWS_PER_TASK = 64


def _compiler() -> str | None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    return cc or None


def _library_path(cc: str) -> Path:
    from .blas import choice_file  # the machine-level cache folder the GEMM choice also uses

    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        version = ""
    digest = hashlib.sha256("\0".join([_SOURCE, *_FLAGS, version]).encode()).hexdigest()[:16]
    return choice_file().parent / f"fused-{digest}.so"


def _compile(cc: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "fused.c"
        src.write_text(_SOURCE)
        out = Path(tmp) / target.name
        subprocess.run([cc, *_FLAGS, str(src), "-o", str(out)], check=True, capture_output=True, timeout=300)
        os.replace(out, target)  # atomic: a concurrent process loads either nothing or a whole library


@functools.lru_cache(maxsize=1)
def _library() -> tuple[Any, str]:
    """The loaded library (or ``None``) and a one-line status for the provenance."""
    if os.environ.get(FUSED_ENV) == "0":
        return None, f"off ({FUSED_ENV}=0)"
    cc = _compiler()
    if cc is None:
        return None, "off (no C compiler found: the torch passes run)"
    try:
        path = _library_path(cc)
        if not path.exists():
            _compile(cc, path)
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.SubprocessError) as exc:
        return None, f"off (compiling with {cc} failed: {type(exc).__name__}; the torch passes run)"
    fn = lib.relink_count_rows
    p = ctypes.c_void_p
    i64 = ctypes.c_int64
    fn.argtypes = [p, i64, i64, i64, i64, p, ctypes.c_float, p, p, p]
    fn.restype = None
    return fn, f"on ({path.name})"


def available() -> bool:
    """Whether the fused pass is compiled and loaded (compiles it on first call)."""
    return _library()[0] is not None


def status() -> str:
    """``on (fused-<hash>.so)`` or ``off (why)``: which counter the audit kernel uses, for the provenance."""
    return _library()[1]


@functools.lru_cache(maxsize=4)
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="relink-count")


def count_rows(
    block: torch.Tensor,
    own_col: torch.Tensor,
    tol: float,
    weights: np.ndarray | None,
    at_least: torch.Tensor,
    above: torch.Tensor,
) -> None:
    """Fill ``at_least`` and ``above`` (``(rows,)`` int64, contiguous, CPU) from a float32 ``(rows, cols)`` block.

    ``own_col``: ``(rows,)`` int64 column of each row's true report; ``weights``: ``(cols,)`` int64 multiplicities
    or ``None``. ``at_least`` includes the true report itself. Requires :func:`available`.
    """
    fn = _library()[0]
    if fn is None:
        raise RuntimeError(f"the fused counter is not available: {status()}")
    if block.dtype != torch.float32 or block.device.type != "cpu" or block.stride(1) != 1:
        raise ValueError("block: expected a float32 CPU tensor with contiguous rows")
    rows, cols = block.shape
    own = own_col.contiguous()
    if own.dtype != torch.int64 or own.shape != (rows,):
        raise ValueError(f"own_col: expected ({rows},) int64, got {tuple(own.shape)} {own.dtype}")
    w = None if weights is None else np.ascontiguousarray(weights, dtype=np.int64)
    if w is not None and w.shape != (cols,):
        raise ValueError(f"weights: expected ({cols},) int64 multiplicities, got shape {w.shape}")
    w_ptr = None if w is None else w.ctypes.data

    def run(r0: int, r1: int) -> None:
        fn(
            block.data_ptr(),
            block.stride(0),
            cols,
            r0,
            r1,
            own.data_ptr(),
            ctypes.c_float(tol),
            w_ptr,
            at_least.data_ptr(),
            above.data_ptr(),
        )

    workers = max(1, min(torch.get_num_threads(), -(-rows // _ROWS_PER_TASK)))
    if workers == 1:
        run(0, rows)
        return
    bounds = np.linspace(0, rows, workers + 1).astype(np.int64)
    futures = [_pool(workers).submit(run, int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]
    for f in futures:
        f.result()
