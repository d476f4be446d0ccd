"""``python -m relink_lib features``: feature extraction by shard, merge and status, for job arrays.

One process extracts shard ``K`` of ``N`` of every requested rung and split (the chunks of all
of them are dealt out round-robin, :func:`deal_chunks`) with
:func:`relink_lib.features.extract_features`; any number of such processes may run at
the same time on one cache (a Slurm job array, ``torchrun`` ranks, or plain background jobs).
``--merge`` assembles every split whose chunks are all there and names the missing chunks of the
others; ``--status`` prints what is done. Everything is written under ``cache_dir(profile)``.

K and N come from ``--shard K/N``, else from ``SLURM_ARRAY_TASK_ID`` (minus
``SLURM_ARRAY_TASK_MIN``) and ``SLURM_ARRAY_TASK_COUNT``, else from ``RANK`` and ``WORLD_SIZE``
(torchrun), else ``0/1`` (every chunk). The cohort and the ladder, which every shard needs, are
built by whichever process comes first while the others wait on a lock file in the cache, so
N processes started on an empty cache build them once.

The command line imports this module to build its parser for every command, so the modules that
load the models (:mod:`relink_lib.features`, :mod:`relink_lib.models.stage`: transformers' model
code, seconds) are imported inside the functions that run a ``features`` command.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Sequence, TextIO

import pandas as pd
import torch

from ..cohorts.base import Cohort
from ..cohorts.stage import get_cohort
from ..config import ProfileLike, as_profile
from ..profiles import cache_dir

if TYPE_CHECKING:  # imported lazily at run time (see the module docstring)
    from ..models.base import DualEncoder
    from ..models.stage import Rung

SITES: tuple[str, ...] = ("internal", "external")
SPLITS: tuple[str, ...] = (
    "train",
    "val",
    "test",
    "all",
)  # relink_lib.features.SPLITS (not imported: it loads the models)
LOCK_NAME = ".features.lock"


@dataclass(frozen=True)
class Target:
    """One (cohort site, split) whose features the book reads."""

    site: str
    split: str

    def __str__(self) -> str:
        return f"{self.site}:{self.split}"


DEFAULT_TARGETS: tuple[Target, ...] = (
    Target("internal", "train"),
    Target("internal", "val"),
    Target("internal", "test"),
    Target("external", "all"),
)
"""What the chapters read: the internal train/val/test splits (audit, DP, utility, risk) and all
external pairs (transfer, chapter 8)."""


# ------------------------------------------------------------------------------ arguments
def parse_shard(text: str, what: str = "--shard") -> tuple[int, int]:
    """``"K/N"`` -> ``(K, N)`` with ``N >= 1`` and ``0 <= K < N``; ``ValueError`` naming ``what`` otherwise."""
    parts = str(text).strip().split("/")
    try:
        k, n = (int(p) for p in parts)
    except ValueError:
        raise ValueError(f"{what}={text!r}: expected K/N with integers, e.g. 0/8 (shard 0 of 8)") from None
    if n < 1 or not 0 <= k < n:
        raise ValueError(f"{what}={text!r}: expected 0 <= K < N and N >= 1 (shards are numbered 0 to N-1)")
    return k, n


def shard_from_env(env: Mapping[str, str] | None = None) -> tuple[tuple[int, int], str]:
    """``((K, N), source)``: from a Slurm job array, else torchrun's ``RANK``/``WORLD_SIZE``, else
    ``((0, 1), "default")``.

    Slurm: ``K = SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN`` (so ``--array=1-8`` works too) and
    ``N = SLURM_ARRAY_TASK_COUNT``; an array with a step (``0-15:2``) is refused, its IDs are not 0..N-1.
    """
    env = os.environ if env is None else env
    if env.get("SLURM_ARRAY_TASK_ID"):
        if not env.get("SLURM_ARRAY_TASK_COUNT"):
            raise ValueError(
                "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not; pass --shard K/N explicitly"
            )
        try:
            task, count = int(env["SLURM_ARRAY_TASK_ID"]), int(env["SLURM_ARRAY_TASK_COUNT"])
            low = int(env.get("SLURM_ARRAY_TASK_MIN") or 0)
        except ValueError:
            raise ValueError(
                f"SLURM_ARRAY_TASK_ID={env['SLURM_ARRAY_TASK_ID']!r} / SLURM_ARRAY_TASK_COUNT="
                f"{env['SLURM_ARRAY_TASK_COUNT']!r}: expected integers"
            ) from None
        text = f"{task - low}/{count}"
        try:
            return parse_shard(text, "SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN / SLURM_ARRAY_TASK_COUNT"), "slurm"
        except ValueError as err:
            raise ValueError(f"{err}; use a contiguous array such as --array=0-{count - 1}") from None
    if env.get("RANK") or env.get("WORLD_SIZE"):
        if not (env.get("RANK") and env.get("WORLD_SIZE")):
            raise ValueError("only one of RANK and WORLD_SIZE is set; set both (torchrun does) or pass --shard K/N")
        return parse_shard(f"{env['RANK']}/{env['WORLD_SIZE']}", "RANK/WORLD_SIZE"), "torchrun"
    return (0, 1), "default"


def parse_targets(items: Sequence[str] | None) -> list[Target]:
    """``["train", "external:all", "val,test"]`` -> targets (site ``internal`` when not given);
    ``None``: :data:`DEFAULT_TARGETS`."""
    if not items:
        return list(DEFAULT_TARGETS)
    out: list[Target] = []
    for item in (t for raw in items for t in str(raw).split(",") if t.strip()):
        site, _, split = item.strip().rpartition(":")
        site = site or "internal"
        if site not in SITES:
            raise ValueError(f"--splits {item!r}: site {site!r} unknown; expected one of {SITES} (e.g. external:all)")
        if split not in SPLITS:
            raise ValueError(f"--splits {item!r}: split {split!r} unknown; expected one of {SPLITS}")
        if Target(site, split) not in out:
            out.append(Target(site, split))
    if not out:
        raise ValueError(f"--splits {items!r}: no split named")
    return out


def select_rungs(rungs: Sequence[Rung], wanted: Sequence[str] | None) -> list[Rung]:
    """The rungs named by index or name (``["0", "full-reports"]``, commas allowed); ``None``: every rung."""
    if not wanted:
        return list(rungs)
    by_name = {r.name: r for r in rungs}
    by_index = {str(r.index): r for r in rungs}
    out = []
    for item in (t.strip() for raw in wanted for t in str(raw).split(",") if t.strip()):
        rung = by_index.get(item) or by_name.get(item)
        if rung is None:
            choices = ", ".join(f"{r.index} ({r.name})" for r in rungs)
            raise ValueError(f"--rungs {item!r}: no such rung; expected an index or name among {choices}")
        if rung not in out:
            out.append(rung)
    return out


def deal_chunks(counts: Sequence[int], shard: tuple[int, int]) -> list[list[int]]:
    """The chunk indices of each unit (rung, split) that ``shard`` (K, N) extracts.

    The chunks of all units, numbered one after the other (unit 0's chunks, then unit 1's, ...),
    are dealt round-robin: shard K gets numbers K, K + N, ... So shards differ by at most one
    chunk in all, however small each split is (a split of one chunk does not always go to shard 0).
    """
    k, n = shard
    out, base = [], 0
    for count in counts:
        out.append([i for i in range(int(count)) if (base + i) % n == k])
        base += int(count)
    return out


# ------------------------------------------------------------------------------ locking
@contextlib.contextmanager
def cache_lock(profile: str, log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``cache_dir(profile)/.features.lock`` (waits for other processes).

    Where the file system refuses ``flock`` (some parallel file systems without the ``flock``
    mount option) the block runs unlocked, with a warning: the cache's atomic renames still keep
    every entry whole, but concurrent jobs may then build the cohort and ladder more than once.
    """
    import fcntl  # lazily: POSIX only, and the CLI imports this module for every command

    path = cache_dir(profile) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        locked = True
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if log:
                log(f"waiting for {path} (another process is building the cohort / ladder or merging)")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX)
            except OSError as err:
                locked = _no_lock(path, err, log)
        except OSError as err:
            locked = _no_lock(path, err, log)
        try:
            yield
        finally:
            if locked:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _no_lock(path: Path, err: OSError, log: Callable[[str], None] | None) -> bool:
    if log:
        log(f"warning: {path}: flock not supported here ({err}); continuing without the lock")
    return False


# ------------------------------------------------------------------------------ the work
def prepare(
    params: ProfileLike, targets: Sequence[Target], *, log: Callable[[str], None] | None = None, progress: bool = False
) -> tuple[dict[str, Cohort], list[Rung]]:
    """``({site: cohort}, rungs)``: the cohorts the targets need and the ladder, built once under :func:`cache_lock`."""
    from ..models.stage import get_ladder  # lazily: loads the models (see the module docstring)

    profile = as_profile(params)
    with cache_lock(profile.name, log):
        start = time.perf_counter()
        cohorts = {
            site: get_cohort(profile, site=site) for site in dict.fromkeys(["internal", *(t.site for t in targets)])
        }
        rungs = get_ladder(profile, progress=progress, cohort=cohorts["internal"])
        if log:
            log(
                f"cohort and ladder ready in {time.perf_counter() - start:.1f} s: "
                + ", ".join(f"{s} {len(c)} pairs" for s, c in cohorts.items())
                + f"; {len(rungs)} rungs"
            )
    return cohorts, rungs


def status_table(
    params: ProfileLike, cohorts: Mapping[str, Cohort], rungs: Sequence[Rung], targets: Sequence[Target]
) -> pd.DataFrame:
    """One row per (rung, target): ``rung, name, site, split, rows, chunks, done, missing, state, missing chunks``."""
    from .. import features as fe  # lazily: loads the models (see the module docstring)

    profile = as_profile(params)
    rows = []
    for rung in rungs:
        for t in targets:
            st = fe.chunk_status(profile, cohorts[t.site], rung, t.split)
            rows.append(
                {
                    "rung": rung.index,
                    "name": rung.name,
                    "site": t.site,
                    "split": t.split,
                    "rows": st.n_rows,
                    "chunks": st.n_chunks,
                    "done": len(st.done),
                    "missing": len(st.missing),
                    "state": st.state,
                    "missing chunks": fe.format_chunks(st.missing, limit=6) if st.missing else "",
                }
            )
    return pd.DataFrame(rows)


@dataclass
class ShardReport:
    """What one shard process did: chunks it owns, found done, and extracted, and its wall time (s)."""

    shard: tuple[int, int]
    owned: int = 0
    already_done: int = 0
    extracted: int = 0
    wall_s: float = 0.0


def run_shard(
    params: ProfileLike,
    cohorts: Mapping[str, Cohort],
    rungs: Sequence[Rung],
    targets: Sequence[Target],
    shard: tuple[int, int],
    *,
    log: Callable[[str], None] | None = None,
) -> ShardReport:
    """Extract the missing chunks of ``shard`` for every (rung, target), one rung's encoder loaded at a time."""
    from .. import features as fe  # lazily: loads the models (see the module docstring)

    profile = as_profile(params)
    k, n = shard
    report = ShardReport(shard=shard)
    start = time.perf_counter()
    units = [(rung, t, fe.chunk_status(profile, cohorts[t.site], rung, t.split)) for rung in rungs for t in targets]
    plan = []
    for (rung, t, st), mine in zip(units, deal_chunks([st.n_chunks for _, _, st in units], shard)):
        todo = [] if st.merged else sorted(set(mine) & set(st.missing))
        report.owned += len(mine)
        report.already_done += len(mine) - len(todo)
        plan.append((rung, t, st, todo))
    total = sum(len(p[3]) for p in plan)
    spent: list[float] = []
    if log:
        log(f"shard {k}/{n}: {report.owned} chunks owned, {report.already_done} already done, {total} to extract")
    encoders: dict[int, DualEncoder] = {}
    for rung, t, st, todo in plan:
        if not todo:
            continue
        if rung.index not in encoders:
            encoders.clear()  # one rung's encoder in memory at a time
            encoders[rung.index] = rung.load(**_load_kwargs(profile))
        encoder = encoders[rung.index]
        label = f"rung {rung.index} {rung.name}, {t}"

        def on_chunk(i: int, n_rows: int, seconds: float, label: str = label, chunk: int = st.chunk_size) -> None:
            report.extracted += 1
            spent.append(seconds)
            elapsed = time.perf_counter() - start
            eta = sum(spent) / len(spent) * (total - report.extracted)  # encoder loading excluded
            if log:
                log(
                    f"shard {k}/{n}: {label}: chunk {i} (rows {i * chunk}-{i * chunk + n_rows - 1}) "
                    f"in {seconds:.2f} s; "
                    f"{report.extracted}/{total} chunks, {elapsed:.0f} s elapsed, about {eta:.0f} s left"
                )

        fe.extract_features(
            profile, cohorts[t.site], rung, t.split, chunks=todo, encoder=encoder, progress=False, on_chunk=on_chunk
        )
    report.wall_s = time.perf_counter() - start
    if log:
        log(f"shard {k}/{n}: done, {report.extracted} chunks extracted in {report.wall_s:.1f} s")
    return report


def _load_kwargs(params: ProfileLike) -> dict[str, str | bool | int]:
    from .. import features as fe  # lazily: loads the models (see the module docstring)

    settings = fe._settings(params)
    return {"device": settings["device"], "amp": settings["amp"], "batch_size": settings["batch_size"]}


def merge_targets(
    params: ProfileLike,
    cohorts: Mapping[str, Cohort],
    rungs: Sequence[Rung],
    targets: Sequence[Target],
    *,
    log: Callable[[str], None] | None = None,
) -> tuple[list[str], list[str]]:
    """Merge every (rung, target) whose chunks are all extracted; ``(merged, incomplete)`` as readable lines."""
    from .. import features as fe  # lazily: loads the models (see the module docstring)

    profile = as_profile(params)
    merged, incomplete = [], []
    with cache_lock(profile.name, log):
        for rung in rungs:
            for t in targets:
                label = f"rung {rung.index} {rung.name}, {t}"
                st = fe.chunk_status(profile, cohorts[t.site], rung, t.split)
                if st.missing:
                    incomplete.append(
                        f"{label}: {len(st.missing)} of {st.n_chunks} chunks missing: {fe.format_chunks(st.missing)}"
                    )
                    continue
                if st.merged:  # not loaded again: at paper scale an entry holds gigabytes
                    merged.append(f"{label}: {st.n_rows} rows (already merged) -> {st.path}")
                    continue
                feats = fe.merge_shards(profile, cohorts[t.site], rung, t.split)
                merged.append(f"{label}: {len(feats)} rows -> {feats.path}")
    return merged, incomplete


# ------------------------------------------------------------------------------ command
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``features`` subcommand's options (besides ``--profile`` / ``--overrides``)."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--shard",
        default=None,
        metavar="K/N",
        help="extract shard K of N (default: SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT, "
        "else RANK/WORLD_SIZE, else 0/1 = everything)",
    )
    mode.add_argument("--merge", action="store_true", help="merge every split whose chunks are all extracted")
    mode.add_argument("--status", action="store_true", help="print done and missing chunks per rung and split")
    parser.add_argument(
        "--rungs",
        nargs="+",
        default=None,
        metavar="RUNG",
        help="rung indices or names (default: every rung of the ladder)",
    )
    parser.add_argument(
        "--splits",
        nargs="+",
        default=None,
        metavar="[SITE:]SPLIT",
        help="e.g. train val test external:all (the default: what the chapters read)",
    )


def run(args: argparse.Namespace, params: ProfileLike, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Execute the parsed ``features`` command; returns the exit status (1: ``--merge`` left splits incomplete)."""
    profile = as_profile(params)
    out = out or sys.stdout
    err = err or sys.stderr

    def log(line: str) -> None:
        print(f"[features {time.strftime('%H:%M:%S')}] {line}", file=err, flush=True)

    try:
        targets = parse_targets(args.splits)
        if args.shard:
            shard, source = parse_shard(args.shard), "--shard"
        elif not (args.merge or args.status):
            shard, source = shard_from_env()
        else:
            shard, source = None, ""
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 2
    cohorts, ladder = prepare(profile, targets, log=log)
    try:
        rungs = select_rungs(ladder, args.rungs)
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 2
    if args.status:
        table = status_table(profile, cohorts, rungs, targets)
        print(f"features of profile {profile.name} under {cache_dir(profile.name) / 'features'}:", file=out)
        print(table.to_string(index=False), file=out)
        return 0
    if args.merge:
        merged, incomplete = merge_targets(profile, cohorts, rungs, targets, log=log)
        for line in merged:
            print(f"merged {line}", file=out)
        for line in incomplete:
            print(f"incomplete {line}", file=out)
        if incomplete:
            print(
                "re-run the shard jobs (the whole array is fine: finished chunks are skipped), then --merge again",
                file=out,
            )
            return 1
        return 0
    assert shard is not None  # set for every command but --status and --merge, which returned above
    if source == "default":
        log("no --shard, SLURM_ARRAY_TASK_ID or RANK/WORLD_SIZE: extracting every chunk (shard 0/1)")
    elif source != "--shard":
        log(f"shard {shard[0]}/{shard[1]} from {source}")
    if source == "torchrun":
        _bind_local_gpu(log)
    report = run_shard(profile, cohorts, rungs, targets, shard, log=log)
    print(
        f"shard {shard[0]}/{shard[1]}: {report.extracted} chunks extracted, {report.already_done} of {report.owned} "
        f"already done ({report.wall_s:.1f} s)",
        file=out,
    )
    return 0


def _bind_local_gpu(log: Callable[[str], None]) -> None:
    """Under torchrun, put this rank on GPU ``LOCAL_RANK`` (``device="cuda"`` then means that GPU)."""
    local = os.environ.get("LOCAL_RANK")
    if local is not None and torch.cuda.is_available():
        torch.cuda.set_device(int(local) % torch.cuda.device_count())
        log(f"LOCAL_RANK={local}: using cuda:{torch.cuda.current_device()}")
