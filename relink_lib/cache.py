"""Content-addressed, atomic on-disk cache for the pipeline's steps.

A step's output is a directory ``cache/<profile>/<step>/<key>/`` where ``key`` is a
hash of everything the output depends on (parameters, inputs' keys, code version).
It is written to a temporary sibling and renamed into place only when complete, so
a killed run never leaves a half-written entry and simply recomputes that step.

Concurrency and hygiene: two processes building one key each write their own temporary
directory; the first to finish renames it into place and the second discards its own copy
(rename-if-absent: a finished entry is never deleted while someone may be reading it).
Temporary directories are named ``.KEY.tmp-<host>-<pid>-XXXX``; those of dead processes on this
host, other hosts' ones older than :data:`STALE_FOREIGN_S` and unnamed ones older than the running
process are removed on the next write to the same step. Entries and files get the ordinary
permissions of the process umask (``tempfile`` alone would make them 0700 / 0600).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Mapping

import numpy as np

DONE_MARKER = ".complete"
STALE_FOREIGN_S = 24 * 3600.0
"""Another host's temporary directory older than this (seconds) is an orphan."""
_PROCESS_START = time.time()
_HOST = socket.gethostname().replace("-", "_")[:40] or "host"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _apply_umask(path: Path, mode: int) -> None:
    """chmod ``path`` to ``mode`` masked by the process umask (what ``mkdir``/``open`` would give)."""
    os.chmod(path, mode & ~_umask())


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_orphans(parent: str | Path) -> list[Path]:
    """Remove orphan temporary directories/files (``.*.tmp-*``) under ``parent``; returns what was removed.

    Orphans: this host's entries whose writer process is gone, other hosts' entries older than
    :data:`STALE_FOREIGN_S`, and entries without a writer tag older than the running process.
    """
    parent = Path(parent)
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    now = time.time()
    for entry in parent.iterdir():
        if not (entry.name.startswith(".") and ".tmp-" in entry.name):
            continue
        tag = entry.name.split(".tmp-", 1)[1].split("-")
        try:
            mtime = entry.stat().st_mtime
        except FileNotFoundError:
            continue
        if len(tag) >= 3 and tag[1].isdigit():
            host, pid = tag[0], int(tag[1])
            if host == _HOST:
                orphan = pid != os.getpid() and not _pid_alive(pid)
            else:
                orphan = now - mtime > STALE_FOREIGN_S
        else:
            orphan = mtime < _PROCESS_START
        if orphan:
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def _tmp_prefix(name: str) -> str:
    return f".{name}.tmp-{_HOST}-{os.getpid()}-"


def _canonical(obj: Any) -> Any:
    """Turn ``obj`` into JSON-serialisable data with a stable ordering."""
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return {
            "ndarray": hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest(),
            "shape": list(obj.shape),
            "dtype": str(obj.dtype),
        }
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise TypeError(f"cannot hash object of type {type(obj).__name__} for a cache key")


def content_hash(*parts: Any, length: int = 16) -> str:
    """Stable hex digest of JSON-like ``parts`` (dicts, lists, numbers, strings, arrays)."""
    payload = json.dumps(_canonical(list(parts)), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def file_hash(path: str | Path, length: int = 16) -> str:
    """SHA-256 of a file's bytes (or of all files below a directory, in sorted order)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:length]


def code_version(*modules: ModuleType) -> str:
    """Hash of the source files of the given modules (so a code change invalidates the cache)."""
    digest = hashlib.sha256()
    for module in modules:
        source = Path(module.__file__)
        files = sorted(source.parent.rglob("*.py")) if source.name == "__init__.py" else [source]
        for file in files:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that is renamed to ``final`` on success.

    On an exception the temporary directory is removed and ``final`` is untouched. When another
    writer completed ``final`` first, its entry is kept and this one discarded (the key is a content
    hash: both hold the same result); an incomplete leftover at ``final`` is moved aside first.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_orphans(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(final.name), dir=final.parent))
    _apply_umask(tmp, 0o777)
    try:
        yield tmp
        (tmp / DONE_MARKER).write_text("ok\n")
        _rename_if_absent(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _rename_if_absent(tmp: Path, final: Path) -> None:
    for _ in range(3):
        try:
            os.rename(tmp, final)  # fails on a non-empty existing directory: never replaces a finished entry
            return
        except OSError:
            if is_complete(final):
                shutil.rmtree(tmp, ignore_errors=True)
                return
            if final.exists():  # an incomplete leftover (not written by atomic_dir): move it aside, then retry
                aside = final.with_name(f"{_tmp_prefix(final.name)}stale")
                try:
                    os.rename(final, aside)
                except OSError:
                    continue
                shutil.rmtree(aside, ignore_errors=True)
    os.rename(tmp, final)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path.name), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        _apply_umask(Path(tmp), 0o666)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_complete(path: str | Path) -> bool:
    """Whether a cache directory was written to the end."""
    return (Path(path) / DONE_MARKER).exists()


def cached_dir(root: str | Path, step: str, key: Any, build: Callable[[Path], None]) -> Path:
    """Return ``root/step/<hash(key)>``, calling ``build(tmp_dir)`` to fill it on a miss."""
    final = Path(root) / step / content_hash(key)
    if is_complete(final):
        return final
    with atomic_dir(final) as tmp:
        build(tmp)
    return final
