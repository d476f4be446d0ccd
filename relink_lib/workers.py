"""Independent tasks of a stage side by side in spawned one-thread worker processes.

The frontier's grid and public-pilot points are independent: each trains a few small heads and evaluates them.
In one process their Python and numpy work between the GEMMs (probe fits, bootstraps, bookkeeping) runs on one
core while the other waits. :func:`map_in_workers` runs them instead in ``workers`` spawned processes (one per
core), each computing with **one** torch and BLAS thread, and returns the results in task order.

Exactness: every task computes what it would in this process with one thread. The workers inherit the numerical
mode (the environment that sets it) and this process's GEMM backend (:func:`relink_lib.audit.blas.gemm_choice`,
passed as ``RELINK_GEMM``).

- In the portable mode every process computes with one thread anyway: the same bits by construction (the nbval
  baselines of the ``ci`` profile are computed this way).
- In the native mode a worker's single thread is the one difference. torch and the BLAS libraries do not promise
  the same bits on one and on two threads: on the 2-core AMD EPYC measured (docs/benchmarks.md) the ``default``
  frontier came out bit-identical, but the factorial's 20,000-pair evaluations did not (last-digit differences),
  which is why the factorial stays in one process. The native mode's numbers already depend on the machine; on
  one machine the worker count (one per usable core) and hence the numbers are fixed.

``RELINK_WORKERS=1`` in the environment keeps every task in this process; ``RELINK_WORKERS=k`` caps the workers
at ``k``.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable, Sequence, TypeVar

import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .audit.blas import GEMM_ENV, gemm_choice

S = TypeVar("S")
T = TypeVar("T")
R = TypeVar("R")

WORKERS_ENV = "RELINK_WORKERS"
"""Environment variable: the most worker processes a stage may start (``1``: none, every task in this process)."""

MIN_PAIRS = 2000
"""Below this many training pairs a stage keeps its tasks in this process: a spawned worker's start-up (importing
torch, several seconds) would outweigh the work it takes over."""

_state: Any = None


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def worker_count(n_tasks: int, *, n_pairs: int = MIN_PAIRS, min_tasks: int = 2) -> int:
    """How many worker processes to run ``n_tasks`` tasks in: one per usable core, at most one per task, capped
    by ``RELINK_WORKERS``; 1 (this process, no worker) with fewer than ``min_tasks`` tasks, a single core or fewer
    than :data:`MIN_PAIRS` training pairs (``n_pairs``)."""
    raw = os.environ.get(WORKERS_ENV, "").strip()
    cap = usable_cores()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise ValueError(f"{WORKERS_ENV}={raw!r}: expected a positive integer")
        cap = min(cap, int(raw))
    if n_tasks < max(2, int(min_tasks)) or cap < 2 or n_pairs < MIN_PAIRS:
        return 1
    return min(cap, n_tasks)


def _start_worker(state: Any, gemm_backend: str | None) -> None:
    global _state
    if gemm_backend is not None:
        os.environ[GEMM_ENV] = gemm_backend  # the parent's choice, never a fresh benchmark in the worker
    torch.set_num_threads(1)
    threadpool_limits(1)
    _state = state


def _run_task(fn: Callable[[Any, Any], Any], task: Any) -> Any:
    return fn(_state, task)


def map_in_workers(
    fn: Callable[[S, T], R],
    state: S,
    tasks: Sequence[T],
    *,
    workers: int,
    desc: str | None = None,
    progress: bool = False,
) -> list[R]:
    """``[fn(state, t) for t in tasks]``, in ``workers`` spawned processes when ``workers > 1``.

    ``fn`` must be a module-level function (the workers import it by name); ``state`` (the data every task reads:
    features, evaluator, heads) is sent to each worker once, each task and its result once. Results come back in
    task order; a task's exception is raised here.
    """
    if workers <= 1:
        return [fn(state, t) for t in tqdm(tasks, desc=desc, disable=not progress)]
    portable = os.environ.get("RELINK_NUMERICS") == "portable"
    backend = None if portable else gemm_choice().backend
    ctx = multiprocessing.get_context("spawn")  # no fork after torch's thread pools started
    with ProcessPoolExecutor(
        max_workers=int(workers), mp_context=ctx, initializer=_start_worker, initargs=(state, backend)
    ) as pool:
        futures = [pool.submit(_run_task, fn, t) for t in tasks]
        out = []
        for fut in tqdm(futures, desc=desc, disable=not progress):
            out.append(fut.result())
    return out
