"""Shared file checks for the loaders: required files and columns, CSV parsing, duplicate rows, report
decoding, paths inside the dataset root, exclusion checks and the file manifest of the cache key.

Error messages about text-bearing tables name the file, row and column, never a cell's value."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd


def require_dir(path: str | Path | None, what: str) -> Path:
    """Return ``path`` as a directory or raise ``FileNotFoundError`` naming it and ``what`` it should hold."""
    if path is None or str(path) == "":
        raise FileNotFoundError(
            f"{what}: no directory given (set the root, e.g. params['data'][...] or an environment variable)"
        )
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: directory not found ({what})")
    return path


def find_file(root: Path, names: Sequence[str], what: str) -> Path:
    """The first of ``names`` (relative to ``root``) that exists, else ``FileNotFoundError`` naming them all."""
    for name in names:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(
        f"{root / names[0]}: not found ({what}; also looked for {', '.join(names[1:]) or 'nothing else'})"
    )


def read_csv(path: Path, required: Iterable[str], str_columns: Iterable[str] = ()) -> pd.DataFrame:
    """Read a CSV (``.csv`` or ``.csv.gz``).

    Malformed files and missing columns raise ``ValueError`` naming the file.
    """
    dtype = {c: str for c in str_columns}
    try:
        frame = pd.read_csv(path, dtype=dtype, keep_default_na=True, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, EOFError, OSError) as exc:
        raise ValueError(
            f"{path}: malformed CSV ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''})"
        ) from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(frame.columns)[:20]}")
    return frame


def drop_duplicates(frame: pd.DataFrame, key: Sequence[str], where: str | Path) -> tuple[pd.DataFrame, int]:
    """Drop exact duplicate rows (returning how many).

    Rows sharing ``key`` but differing elsewhere raise ``ValueError``.
    """
    exact = frame.duplicated(keep="first")
    n_exact = int(exact.sum())
    frame = frame.loc[~exact]
    clash = frame.duplicated(list(key), keep=False).to_numpy()
    if clash.any():
        rows = np.flatnonzero(clash)[:2].tolist()
        # rows and columns only: the table may hold report text, so no cell value is echoed
        raise ValueError(
            f"{where}: conflicting duplicate rows {rows} (after exact duplicates were dropped): same "
            f"{list(key)}, different values elsewhere"
        )
    return frame.reset_index(drop=True), n_exact


EXCLUSION_WARN_SHARE = 0.05
"""Warn (with the counts by reason) when more than this share of the listed rows is left out."""


class UndecodableReport(ValueError):
    """A report file is not valid UTF-8 (counted as the exclusion ``undecodable_report``)."""


def read_report(path: Path) -> str:
    """A report file's text, decoded as UTF-8 (a UTF-8 BOM is allowed).

    Raises ``FileNotFoundError`` when absent and :class:`UndecodableReport` naming the file (never
    its content) when the bytes are not UTF-8 (Latin-1, UTF-16, ...).
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UndecodableReport(f"{path}: not UTF-8 (byte {exc.start}); re-encode the report files as UTF-8") from None


def safe_relative(root: Path, rel: str, where: str | Path, row: int, column: str) -> str:
    """``rel`` if it is a relative path that stays inside ``root``; else ``ValueError`` naming the file, row and column.

    Absolute paths and ``..`` components are refused: every image and report is read from inside
    the dataset root, never from elsewhere on the machine.
    """
    p = Path(str(rel))
    if (
        p.is_absolute()
        or str(rel).startswith(("/", "\\"))
        or ".." in p.parts
        or ".." in Path(str(rel).replace("\\", "/")).parts
    ):
        raise ValueError(
            f"{where}: row {row} column {column!r} is an absolute path or contains '..'; "
            f"expected a path relative to {root} that stays inside it"
        )
    return str(rel)


def check_safe_paths(frame: pd.DataFrame, column: str, root: Path, where: str | Path) -> None:
    """:func:`safe_relative` on every row of ``frame[column]``."""
    for i, rel in enumerate(frame[column].astype(str)):
        safe_relative(root, rel, where, i, column)


def check_exclusions(
    n_listed: int,
    n_kept: int,
    excluded: Mapping[str, int],
    where: str | Path,
    looked_in: str,
    unit: str = "rows",
    warn_share: float = EXCLUSION_WARN_SHARE,
) -> None:
    """Refuse an empty cohort and warn about a large exclusion.

    ``n_kept == 0``: ``ValueError`` naming the largest exclusion reason and ``looked_in`` (where the
    loader looked), e.g. "0 of 30 studies usable ... largest reason no_report (30): looked under
    <root>/mimic-cxr-reports/files/...". More than ``warn_share`` of ``n_listed`` left out: a
    ``UserWarning`` with the counts by reason.
    """
    reasons = {k: int(v) for k, v in excluded.items() if int(v) > 0}
    if n_kept == 0:
        if reasons:
            top = max(reasons, key=reasons.__getitem__)
            why = f"largest exclusion reason {top!r} ({reasons[top]} of {n_listed}); all reasons {reasons}"
        else:
            why = "nothing was listed"
        raise ValueError(f"{where}: 0 of {n_listed} {unit} usable: {why}; looked in {looked_in}")
    n_out = n_listed - n_kept
    if n_listed and n_out / n_listed > warn_share:
        warnings.warn(
            f"{where}: {n_out} of {n_listed} {unit} ({n_out / n_listed:.0%}) left out, more than "
            f"{warn_share:.0%}: {reasons}; looked in {looked_in}",
            UserWarning,
            stacklevel=3,
        )


def tree_manifest(*dirs: Path) -> dict[str, Any]:
    """Number of files and a SHA-256 over (relative path, size, mtime in ns) of every file under ``dirs``.

    What a real cohort is made of beyond its tables (report and image files): any added, removed or
    edited file changes the digest, so the cohort cache is rebuilt.
    """
    digest = hashlib.sha256()
    n = 0
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            digest.update(f"missing:{d.name}\n".encode())
            continue
        stack = [d]
        entries: list[tuple[str, int, int]] = []
        while stack:
            with os.scandir(stack.pop()) as it:
                for e in it:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(Path(e.path))
                    elif e.is_file():
                        st = e.stat()
                        entries.append((os.path.relpath(e.path, d), st.st_size, st.st_mtime_ns))
        entries.sort()
        n += len(entries)
        digest.update(f"dir:{d.name}\n".encode())
        for rel, size, mtime in entries:
            digest.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return {"n_files": n, "sha256": digest.hexdigest()}
