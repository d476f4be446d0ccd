"""Shared file checks for the loaders: required files and columns, CSV parsing, duplicate rows, report
decoding, paths inside the dataset root, exclusion checks and the file manifest of the cache key.

Error messages about text-bearing tables name the file, row and column, never a cell's value."""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import io
import lzma
import os
import warnings
import zlib
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, TextIO

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


_COMPRESSION_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)
_READ_ERRORS = (
    pd.errors.ParserError,
    pd.errors.EmptyDataError,
    UnicodeDecodeError,
    OSError,
    csv.Error,
    *_COMPRESSION_ERRORS,
)
"""What reading a damaged or malformed table raises (re-raised as a ``ValueError`` naming the file)."""
_ARCHIVES = (".zip", ".zst", ".tar")
"""Suffixes pandas reads that the raw-text checks (header, last row) leave to pandas alone."""


def _read_error(path: Path, exc: BaseException) -> ValueError:
    """A ``ValueError`` naming ``path``: a damaged compressed stream, or a malformed CSV."""
    detail = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    if isinstance(exc, _COMPRESSION_ERRORS) or (path.suffix.lower() == ".bz2" and isinstance(exc, OSError)):
        return ValueError(
            f"{path}: damaged or truncated compressed file ({detail}); expected a complete {path.suffix} stream "
            f"(an interrupted copy or download? copy the file again)"
        )
    return ValueError(f"{path}: malformed CSV ({detail})")


def _open_bytes(path: Path) -> io.BufferedIOBase:
    """``path`` opened for reading, decompressed by its suffix (``.gz``, ``.bz2``, ``.xz``)."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".bz2":
        return bz2.open(path, "rb")
    if suffix == ".xz":
        return lzma.open(path, "rb")
    return open(path, "rb")


def _open_text(path: Path) -> TextIO:
    """``path`` opened as UTF-8 text for the ``csv`` module (decompressed by its suffix, a BOM dropped)."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    if suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8-sig", newline="")
    if suffix == ".xz":
        return lzma.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def read_header(path: Path) -> list[str]:
    """The column names of a CSV's first line, as written (before pandas renames duplicates)."""
    try:
        with _open_text(path) as fh:
            return next(csv.reader(fh), [])
    except _READ_ERRORS as exc:
        raise _read_error(path, exc) from exc


def check_header(path: Path, header: Sequence[str]) -> None:
    """Refuse a header naming a column twice (pandas would rename the second ``X.1``, the loader read the first)."""
    seen: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in seen:
            raise ValueError(
                f"{path}: column {name!r} appears more than once in the header (columns {seen[name]} and {i}); "
                f"expected each column once"
            )
        seen[name] = i


def _ends_with_newline(path: Path) -> bool:
    """Whether the (decompressed) file ends with a line break (an empty file counts as ending with one)."""
    if path.suffix.lower() in (".gz", ".bz2", ".xz"):
        last = b"\n"
        with _open_bytes(path) as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                last = block[-1:]
        return last in (b"\n", b"\r")
    size = path.stat().st_size
    if size == 0:
        return True
    with open(path, "rb") as fh:
        fh.seek(size - 1)
        return fh.read(1) in (b"\n", b"\r")


def check_last_row(path: Path, n_columns: int, n_rows: int) -> None:
    """Refuse a cut last row: the file ends mid-line and its last record has fewer fields than the header.

    A file written to the end ends with a line break, or (hand-written) with a complete last row;
    an interrupted copy ends mid-row, which pandas would fill with blanks without a word.
    """
    try:
        if _ends_with_newline(path):
            return
        with _open_text(path) as fh:
            last: list[str] = []
            for record in csv.reader(fh):
                if record:
                    last = record
    except _READ_ERRORS as exc:
        raise _read_error(path, exc) from exc
    if len(last) < n_columns:
        raise ValueError(
            f"{path}: row {n_rows - 1} (the last) has {len(last)} of the header's {n_columns} fields and the file "
            f"ends mid-line: it looks cut off (an interrupted copy?); expected complete rows (copy the file again)"
        )


def read_csv(path: Path, required: Iterable[str], str_columns: Iterable[str] = ()) -> pd.DataFrame:
    """Read a CSV (``.csv`` or ``.csv.gz``; ``.bz2`` and ``.xz`` too), checked for completeness.

    Malformed files, damaged compressed streams, a column named twice in the header, a cut last
    row and missing columns raise ``ValueError`` naming the file (and the column or row).
    """
    raw = Path(path).suffix.lower() not in _ARCHIVES
    header = read_header(path) if raw else []
    check_header(path, header)
    dtype = {c: str for c in str_columns}
    try:
        frame = pd.read_csv(path, dtype=dtype, keep_default_na=True, na_values=[""])
    except _READ_ERRORS as exc:
        raise _read_error(path, exc) from exc
    if raw:
        check_last_row(path, len(header), len(frame))
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
    incomplete: Mapping[str, int] | None = None,
) -> None:
    """Refuse an empty cohort and warn about a large exclusion.

    ``n_kept == 0``: ``ValueError`` naming the largest exclusion reason and ``looked_in`` (where the
    loader looked), e.g. "0 of 30 studies usable ... largest reason no_report (30): looked under
    <root>/mimic-cxr-reports/files/...". More than ``warn_share`` of ``n_listed`` left out: a
    ``UserWarning`` with the counts by reason.

    ``incomplete``: rows kept but missing part of their data, by reason (e.g. ``no_label_row``: a
    study absent from the label table gets blank labels; a truncated table leaves out its tail).
    They count towards the warned share beside the rows left out, and a reason that hits every kept
    row is refused like an empty cohort.
    """
    reasons = {k: int(v) for k, v in excluded.items() if int(v) > 0}
    partial = {k: int(v) for k, v in (incomplete or {}).items() if int(v) > 0}
    if n_kept == 0:
        if reasons:
            top = max(reasons, key=reasons.__getitem__)
            why = f"largest exclusion reason {top!r} ({reasons[top]} of {n_listed}); all reasons {reasons}"
        else:
            why = "nothing was listed"
        raise ValueError(f"{where}: 0 of {n_listed} {unit} usable: {why}; looked in {looked_in}")
    everywhere = [k for k, v in partial.items() if v >= n_kept]
    if everywhere:
        raise ValueError(
            f"{where}: all {n_kept} usable {unit} are incomplete ({everywhere[0]!r}); expected most of them "
            f"complete (a truncated or wrong table?); looked in {looked_in}"
        )
    n_out = n_listed - n_kept
    n_partial = max(partial.values(), default=0)
    if n_listed and (n_out + n_partial) / n_listed > warn_share:
        message = f"{where}: {n_out} of {n_listed} {unit} ({n_out / n_listed:.0%}) left out"
        if partial:
            message += f" and {n_partial} ({n_partial / n_listed:.0%}) kept incomplete"
        message += f", more than {warn_share:.0%}: {reasons}"
        if partial:
            message += f"; kept incomplete: {partial}"
        warnings.warn(f"{message}; looked in {looked_in}", UserWarning, stacklevel=3)


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
