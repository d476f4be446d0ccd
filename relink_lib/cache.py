"""Content-addressed, atomic on-disk cache for the pipeline's steps.

A step's output is a directory ``cache/<profile>/<step>/<key>/`` where ``key`` is a
hash of everything the output depends on (parameters, inputs' keys, code version).
It is written to a temporary sibling and renamed into place only when complete, so
a killed run never leaves a half-written entry and simply recomputes that step.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

DONE_MARKER = ".complete"


def _canonical(obj: Any) -> Any:
    """Turn ``obj`` into JSON-serialisable data with a stable ordering."""
    if isinstance(obj, dict):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.ndarray):
        return {"ndarray": hashlib.sha256(np.ascontiguousarray(obj).tobytes()).hexdigest(), "shape": list(obj.shape), "dtype": str(obj.dtype)}
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


def code_version(*modules: Any) -> str:
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

    On an exception the temporary directory is removed and ``final`` is untouched.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        (tmp / DONE_MARKER).write_text("ok\n")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
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
