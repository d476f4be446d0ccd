"""Shared file checks for the loaders: required files and columns, CSV parsing, duplicate rows."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd


def require_dir(path: str | Path | None, what: str) -> Path:
    """Return ``path`` as a directory or raise ``FileNotFoundError`` naming it and ``what`` it should hold."""
    if path is None or str(path) == "":
        raise FileNotFoundError(f"{what}: no directory given (set the root, e.g. params['data'][...] or an environment variable)")
    path = Path(path).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: directory not found ({what})")
    return path


def find_file(root: Path, names: Sequence[str], what: str) -> Path:
    """The first of ``names`` (relative to ``root``) that exists, else ``FileNotFoundError`` naming them all."""
    for name in names:
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{root / names[0]}: not found ({what}; also looked for {', '.join(names[1:]) or 'nothing else'})")


def read_csv(path: Path, required: Iterable[str], str_columns: Iterable[str] = ()) -> pd.DataFrame:
    """Read a CSV (``.csv`` or ``.csv.gz``); malformed files and missing columns raise ``ValueError`` naming the file."""
    dtype = {c: str for c in str_columns}
    try:
        frame = pd.read_csv(path, dtype=dtype, keep_default_na=True, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, EOFError, OSError) as exc:
        raise ValueError(f"{path}: malformed CSV ({type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''})") from exc
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(frame.columns)[:20]}")
    return frame


def drop_duplicates(frame: pd.DataFrame, key: Sequence[str], where: str | Path) -> tuple[pd.DataFrame, int]:
    """Drop exact duplicate rows (returning how many); rows sharing ``key`` but differing elsewhere raise ``ValueError``."""
    exact = frame.duplicated(keep="first")
    n_exact = int(exact.sum())
    frame = frame.loc[~exact]
    clash = frame.duplicated(list(key), keep=False).to_numpy()
    if clash.any():
        i = int(np.flatnonzero(clash)[0])
        vals = {k: frame[k].iloc[i] for k in key}
        raise ValueError(f"{where}: conflicting duplicate rows for {vals} (same key, different values)")
    return frame.reset_index(drop=True), n_exact
