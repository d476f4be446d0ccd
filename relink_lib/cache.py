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

Durability and verification: every file of an entry (and its directories) is fsync'ed before the
entry is renamed into place and the parent directory after, so a crash never leaves a renamed entry
with unwritten files. The ``.complete`` marker records the size of every file of the entry; an
entry is used only when each file still has its recorded size (:func:`entry_problem`). A damaged
entry (a truncated file, a file gone) is recomputed with a warning naming it (:func:`check_entry`).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Literal, Mapping

import numpy as np
from filelock import FileLock

DONE_MARKER = ".complete"
BUILD_RECORD = ".build.json"
"""Written into every entry :func:`cached_dir` builds: ``step``, ``build_s`` (wall seconds of the build, including
any cached step it built inside) and ``finished`` (Unix time); read by ``benchmarks/stage_profile.py``."""
MANIFEST_FORMAT = 1
"""Version of the manifest the :data:`DONE_MARKER` holds (``{"format": 1, "files": {relative path: bytes}}``)."""
LOCKS_DIR = ".locks"
"""Folder of the entries' lock files (:func:`entry_lock`): ``<root>/.locks/<step>.<key>.<purpose>.lock``."""
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
    """SHA-256 of a file's bytes (or of all files below a directory, in sorted order; a cache entry's
    :data:`BUILD_RECORD`, which holds times, is left out)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != BUILD_RECORD) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        with open(file, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:length]


CODE_ROOT: Path = Path(__file__).resolve().parent.parent
"""The directory holding the ``relink_lib`` package whose sources stage code versions hash."""
_PARSED: dict[Path, tuple[tuple[int, int], bytes, tuple[tuple[int, str | None, tuple[str, ...]], ...]]] = {}


def _module_file(root: Path, name: str) -> Path | None:
    """The source file of dotted module ``name`` below ``root`` (the directory holding the root package)."""
    base = root.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    source = base.with_suffix(".py")
    return source if source.is_file() else None


def _imports_of(source: Path) -> tuple[bytes, tuple[tuple[int, str | None, tuple[str, ...]], ...]]:
    """``(bytes, imports)`` of a source file; every import statement anywhere in it, as ``(level, module, names)``."""
    stat = source.stat()
    stamp = (stat.st_mtime_ns, stat.st_size)
    hit = _PARSED.get(source)
    if hit is not None and hit[0] == stamp:
        return hit[1], hit[2]
    data = source.read_bytes()
    found: list[tuple[int, str | None, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(data, filename=str(source))):
        if isinstance(node, ast.Import):
            found.extend((0, alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module, tuple(alias.name for alias in node.names)))
    _PARSED[source] = (stamp, data, tuple(found))
    return data, tuple(found)


def module_closure(module: str, root: str | Path | None = None) -> dict[str, Path]:
    """Modules of ``module``'s own package that importing ``module`` can execute: ``{dotted name: file}``.

    Follows every import statement in each file, at module level or inside a function (a lazy
    import is a dependency too), relative or absolute, and adds the ``__init__`` of every package
    on the way (importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``). Imports outside the
    root package (``relink_lib`` for ``relink_lib.audit.stage``) are not followed. ``root`` is the
    directory that holds the root package (default :data:`CODE_ROOT`).
    """
    top = module.split(".")[0]
    base = Path(root) if root is not None else CODE_ROOT
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or name.split(".")[0] != top:
            continue
        source = _module_file(base, name)
        if source is None:
            continue
        seen[name] = source
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # the packages' __init__ on the way
        package = parts if source.name == "__init__.py" else parts[:-1]
        for level, target, names in _imports_of(source)[1]:
            if level:
                anchor = package[: len(package) - level + 1]
                target = ".".join(anchor + ([target] if target else []))
            if target is None:
                continue
            todo.append(target)
            todo.extend(f"{target}.{n}" for n in names if n != "*")  # `from pkg import submodule`
    return seen


def stage_code_version(module: str, root: str | Path | None = None) -> str:
    """Hash of the source of ``module`` and of its import closure within its package (:func:`module_closure`).

    A stage puts ``stage_code_version(__name__)`` in its cache key: a change in any module the stage
    can run, however indirect, recomputes it; a change elsewhere in the package does not.
    """
    digest = hashlib.sha256()
    for name, source in sorted(module_closure(module, root).items()):
        digest.update(name.encode() + b"\0")
        digest.update(_imports_of(source)[0])
    return digest.hexdigest()[:16]


def code_version(*modules: ModuleType) -> str:
    """Hash of the source files of the given modules (so a code change invalidates the cache)."""
    digest = hashlib.sha256()
    for module in modules:
        if module.__file__ is None:
            raise TypeError(f"module {module.__name__!r} has no source file (__file__ is None) to hash")
        source = Path(module.__file__)
        files = sorted(source.parent.rglob("*.py")) if source.name == "__init__.py" else [source]
        for file in files:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


class DamagedEntry(ValueError):
    """A cache file that is not what was written (truncated, unreadable, wrong shape); the message names it."""


def _fsync(path: Path) -> None:
    """fsync a file or a directory (directories: where the platform allows opening them)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (IsADirectoryError, PermissionError):
        if path.is_dir():  # platforms that cannot open a directory cannot fsync one either
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():  # some file systems refuse fsync on a directory; a file's must succeed
            raise
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file below ``root``, then every directory (``root`` too), so renaming ``root`` publishes
    written data. Files are synced from a few threads: the journal commits them together."""
    files: list[Path] = []
    dirs: list[Path] = [root]
    for path in root.rglob("*"):
        if path.is_symlink():
            continue
        (dirs if path.is_dir() else files).append(path)
    if len(files) > 4:
        with ThreadPoolExecutor(max_workers=min(16, len(files))) as pool:
            list(pool.map(_fsync, files))
    else:
        for f in files:
            _fsync(f)
    for d in dirs:
        _fsync(d)


def _manifest(directory: Path) -> dict[str, int]:
    """``{relative path: size in bytes}`` of every file of an entry (its marker and build record left out)."""
    return {
        p.relative_to(directory).as_posix(): p.stat().st_size
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.relative_to(directory).as_posix() not in (DONE_MARKER, BUILD_RECORD)
    }


def entry_problem(path: str | Path) -> str | None:
    """Why the cache entry ``path`` cannot be used (``None``: complete, and every file has its recorded size).

    The answer names the file and what was expected. An entry whose marker predates manifests
    (``ok``) is taken as complete.
    """
    path = Path(path)
    marker = path / DONE_MARKER
    try:
        text = marker.read_text()
    except FileNotFoundError:
        return f"{marker}: not found (the entry was not written to the end)"
    except (OSError, UnicodeDecodeError) as exc:
        return f"{marker}: unreadable ({type(exc).__name__})"
    if text.strip() == "ok":
        return None
    try:
        files = json.loads(text)["files"]
        sizes = {str(rel): int(size) for rel, size in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"{marker}: not a manifest; expected {{'format': {MANIFEST_FORMAT}, 'files': {{path: bytes}}}}"
    for rel, size in sizes.items():
        try:
            got = (path / rel).stat().st_size
        except FileNotFoundError:
            return f"{path / rel}: missing; the entry's manifest lists it with {size} bytes"
        if got != size:
            return f"{path / rel}: {got} bytes, expected {size} (recorded when the entry was written): truncated"
    return None


def is_complete(path: str | Path) -> bool:
    """Whether a cache directory was written to the end and is intact (:func:`entry_problem` finds nothing)."""
    return entry_problem(path) is None


def check_entry(path: str | Path) -> bool:
    """Whether the entry ``path`` can be used; a damaged one (written to the end, then truncated or altered)
    is warned about, naming the file, and discarded so that the caller recomputes it."""
    path = Path(path)
    problem = entry_problem(path)
    if problem is None:
        return True
    if (path / DONE_MARKER).exists():
        warnings.warn(f"{path}: damaged cache entry ({problem}); recomputing it", UserWarning, stacklevel=2)
        discard_entry(path)
    return False


def entry_lock(final: str | Path, purpose: str = "entry") -> FileLock:
    """An inter-process lock of the entry ``final`` (a file under ``<root>/.locks/``, kept for reuse)."""
    final = Path(final)
    locks = final.parent.parent / LOCKS_DIR
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(locks / f"{final.parent.name}.{final.name}.{purpose}.lock")


def discard_entry(final: str | Path, problem_of: Callable[[Path], str | None] = entry_problem) -> bool:
    """Move a damaged entry aside and delete it; returns whether it did.

    Under the entry's lock and only while ``problem_of(final)`` still finds a problem, so an entry
    another process has just rebuilt is never removed.
    """
    final = Path(final)
    with entry_lock(final):
        if not final.exists() or problem_of(final) is None:
            return False
        aside = final.with_name(f"{_tmp_prefix(final.name)}damaged-{uuid.uuid4().hex[:8]}")
        os.rename(final, aside)
        shutil.rmtree(aside, ignore_errors=True)
    return True


def _npy_problem(path: Path) -> str | None:
    """What is wrong with a ``.npy`` file's length, read from its header (``None``: the length it promises)."""
    with open(path, "rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            return None
        header = fh.tell()
    if dtype.hasobject:
        return None
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = path.stat().st_size
    if size == expected:
        return None
    return f"{size} bytes, expected {expected} for a {dtype} array of shape {tuple(shape)} (its header)"


def load_npy(path: str | Path, mmap_mode: Literal["r+", "r", "w+", "c"] | None = None) -> np.ndarray:
    """``np.load`` of a ``.npy`` file, checked first against its header: a truncated or unreadable file
    raises :class:`DamagedEntry` naming it (numpy's own errors name no file)."""
    path = Path(path)
    try:
        problem = _npy_problem(path)
        if problem is None:
            array: np.ndarray = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
            return array
    except FileNotFoundError:
        raise
    except (ValueError, EOFError, OSError) as exc:
        problem = f"unreadable ({type(exc).__name__}: {exc})"
    raise DamagedEntry(f"{path}: {problem}; expected the complete array numpy.save wrote (truncated or altered)")


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary directory that is renamed to ``final`` on success.

    On an exception the temporary directory is removed and ``final`` is untouched. When another
    writer completed ``final`` first, its entry is kept and this one discarded (the key is a content
    hash: both hold the same result); an incomplete or damaged leftover at ``final`` is moved aside
    first. The marker records every file's size; files and directories are fsync'ed before the
    rename, and the parent directory after it.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_orphans(final.parent)
    tmp = Path(tempfile.mkdtemp(prefix=_tmp_prefix(final.name), dir=final.parent))
    _apply_umask(tmp, 0o777)
    try:
        yield tmp
        marker = {"format": MANIFEST_FORMAT, "files": _manifest(tmp)}
        (tmp / DONE_MARKER).write_text(json.dumps(marker, separators=(",", ":")) + "\n")
        fsync_tree(tmp)
        _rename_if_absent(tmp, final)
        _fsync(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _rename_if_absent(tmp: Path, final: Path) -> None:
    try:
        os.rename(tmp, final)  # fails on a non-empty existing directory: never replaces a finished entry
        return
    except OSError:
        pass
    with entry_lock(final):  # one process at a time decides about a leftover, so a fresh entry is never removed
        for _ in range(3):
            if is_complete(final):
                shutil.rmtree(tmp, ignore_errors=True)
                return
            if final.exists():  # an incomplete or damaged leftover: move it aside, then retry
                aside = final.with_name(f"{_tmp_prefix(final.name)}stale-{uuid.uuid4().hex[:8]}")
                try:
                    os.rename(final, aside)
                except OSError:
                    continue
                shutil.rmtree(aside, ignore_errors=True)
            try:
                os.rename(tmp, final)
                return
            except OSError:
                continue
        os.rename(tmp, final)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file (fsync'ed) and an atomic rename (the directory fsync'ed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path.name), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _apply_umask(Path(tmp), 0o666)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync(path.parent)


def cached_dir(root: str | Path, step: str, key: Any, build: Callable[[Path], None]) -> Path:
    """Return ``root/step/<hash(key)>``, calling ``build(tmp_dir)`` to fill it on a miss.

    An entry found damaged (:func:`check_entry`) is warned about and built again.
    """
    final = Path(root) / step / content_hash(key)
    if check_entry(final):
        return final
    t0 = time.perf_counter()
    with atomic_dir(final) as tmp:
        build(tmp)
        record = {"step": step, "build_s": round(time.perf_counter() - t0, 3), "finished": round(time.time(), 3)}
        (tmp / BUILD_RECORD).write_text(json.dumps(record) + "\n")
    return final


def build_record(path: str | Path) -> dict[str, Any] | None:
    """The :data:`BUILD_RECORD` of a cache entry (``None`` for an entry built before records were kept)."""
    f = Path(path) / BUILD_RECORD
    if not f.is_file():
        return None
    try:
        out = json.loads(f.read_text())
    except (OSError, ValueError):
        return None
    return out if isinstance(out, dict) else None
