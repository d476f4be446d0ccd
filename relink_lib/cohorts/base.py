"""The one cohort type: paired images and reports, labels, patient-level splits."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from ..cache import DamagedEntry, load_npy
from ..labels import CHEXPERT_LABELS, LABEL_VALUES
from .images import read_image, to_uint8
from .splits import assert_patient_disjoint, validate_split_values

REQUIRED_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "study_id",
    "image_path",
    "text",
    "findings",
    "impression",
    "split",
    "view",
    "site",
)
"""Columns every ``Cohort.pairs`` carries besides the 14 label columns."""

TEXT_COLUMNS: tuple[str, ...] = ("text", "findings", "impression")
"""Columns holding report text (never displayed for a private cohort)."""


def validate_labels(frame: pd.DataFrame, where: str, row_offset: int = 0) -> pd.DataFrame:
    """Coerce the 14 label columns to float and check values are in {1, 0, -1, NaN}.

    The error names ``where`` (a file or cohort), the row (``row_offset`` + position) and the
    column; the offending value only when it is a number (a misaligned row can put report text in
    a label column, and that text must not reach a log).
    """
    missing = [c for c in CHEXPERT_LABELS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{where}: missing label column(s) {missing}; expected the 14 CheXpert labels {list(CHEXPERT_LABELS)}"
        )
    out = frame.copy()
    allowed = np.array(sorted(LABEL_VALUES))
    for col in CHEXPERT_LABELS:
        raw = out[col]
        values = pd.to_numeric(raw, errors="coerce")
        bad_parse = values.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
        bad_value = values.notna() & ~values.isin(allowed)
        bad = (bad_parse | bad_value).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            shown = f"value {float(values.iloc[i])!r}" if bad_value.to_numpy()[i] else "a non-numeric value (not shown)"
            raise ValueError(f"{where}: row {i + row_offset} column {col!r} has {shown}; expected 1, 0, -1 or blank")
        out[col] = values.astype(np.float64)
    return out


class Cohort:
    """Image-report pairs of one cohort.

    Attributes
    ----------
    pairs : pandas.DataFrame
        One row per image-report pair with ``REQUIRED_COLUMNS`` and the 14 label columns
        (float: 1 positive, 0 negative, -1 uncertain, NaN not mentioned). Positional row ``i``
        is what ``load_image(i)`` returns.
    root : Path or None
        Directory that ``image_path`` is relative to (None when images live in memory).
    public : bool
        Whether report text may be displayed (False for credentialed cohorts).
    name : str
        Short name used in provenance (e.g. ``"synthetic-internal"``, ``"mimic-cxr-jpg"``).
    summary : dict
        Load summary with counted exclusions (``summary["excluded"]``: reason -> count).
    image_size : int or None
        Square side in pixels that images are resized to; None keeps the files' size.
    """

    _relink_fingerprint: str | None = None
    """Memo of :func:`relink_lib.models.stage.cohort_fingerprint` (set on first use)."""

    def __init__(
        self,
        pairs: pd.DataFrame,
        *,
        root: str | Path | None = None,
        public: bool = False,
        name: str = "cohort",
        summary: Mapping[str, Any] | None = None,
        image_size: int | None = None,
        images: np.ndarray | None = None,
        image_index: np.ndarray | None = None,
    ) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in pairs.columns]
        if missing:
            raise ValueError(
                f"cohort {name!r}: pairs lack column(s) {missing}; expected at least {list(REQUIRED_COLUMNS)} "
                f"and the 14 labels"
            )
        pairs = validate_labels(pairs, f"cohort {name!r}").reset_index(drop=True)
        for col in ("patient_id", "study_id", "image_path", "view", "site", "split"):
            pairs[col] = pairs[col].astype(str)
        for col in TEXT_COLUMNS:
            pairs[col] = pairs[col].fillna("").astype(str)
        validate_split_values(pairs["split"], f"cohort {name!r}")
        empty = (pairs["text"].str.strip() == "").to_numpy()
        if empty.any():
            raise ValueError(
                f"cohort {name!r}: row {int(np.flatnonzero(empty)[0])} has empty report text; "
                f"loaders exclude and count such rows"
            )
        dup = pairs.duplicated(["study_id", "image_path"]).to_numpy()
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            raise ValueError(f"cohort {name!r}: row {i} duplicates an earlier row's study_id and image_path")
        assert_patient_disjoint(pairs, f"cohort {name!r}")
        if images is not None:
            if images.ndim != 3 or images.dtype != np.uint8:
                raise ValueError(f"images: expected a uint8 array (n, H, W), got {images.dtype} {images.shape}")
            if image_index is None:
                image_index = np.arange(len(pairs))
            image_index = np.asarray(image_index, dtype=np.int64)
            if image_index.shape != (len(pairs),) or (
                len(image_index) and (image_index.min() < 0 or image_index.max() >= len(images))
            ):
                raise ValueError(f"image_index: expected {len(pairs)} indices into {len(images)} images")
        self.pairs = pairs
        self.root = Path(root) if root is not None else None
        self.public = bool(public)
        self.name = str(name)
        self.summary = dict(summary or {})
        self.image_size = image_size if images is None else int(images.shape[1])
        self._images = images
        self._image_index = image_index

    # ----------------------------------------------------------------- basics
    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:  # never shows report text
        counts = self.pairs["split"].value_counts().to_dict() if len(self) else {}
        return (
            f"Cohort(name={self.name!r}, n_pairs={len(self)}, n_patients={self.pairs['patient_id'].nunique()}, "
            f"public={self.public}, splits={counts})"
        )

    @property
    def in_memory(self) -> bool:
        """Whether images are held in memory (synthetic or cached cohorts) rather than read from files."""
        return self._images is not None

    def label_matrix(self) -> np.ndarray:
        """The 14 labels as a float array ``(n, 14)`` in ``CHEXPERT_LABELS`` order (NaN = not mentioned)."""
        return self.pairs[list(CHEXPERT_LABELS)].to_numpy(dtype=np.float64, copy=True)

    # ----------------------------------------------------------------- images
    def _check_row(self, i: int) -> int:
        n = len(self)
        if not isinstance(i, (int, np.integer)) or not -n <= int(i) < n:
            raise IndexError(f"row {i!r}: expected a positional row in [0, {n})")
        return int(i) % n

    def load_image(self, i: int) -> np.ndarray:
        """Image of positional row ``i`` as float32 ``(H, W)`` in ``[0, 1]``."""
        i = self._check_row(i)
        if self._images is not None:
            assert self._image_index is not None  # set with the images in __init__
            return self._images[self._image_index[i]].astype(np.float32) / 255.0
        if self.root is None:
            raise ValueError(f"cohort {self.name!r}: no root directory and no in-memory images to load row {i} from")
        return read_image(self.root / self.pairs["image_path"].iloc[i], self.image_size)

    def load_images(self, rows: Iterable[int] | None = None) -> np.ndarray:
        """Images of positional ``rows`` (all rows by default) as float32 ``(n, H, W)`` in ``[0, 1]``."""
        rows = (
            np.arange(len(self))
            if rows is None
            else np.asarray(list(rows) if not isinstance(rows, np.ndarray) else rows)
        )
        if rows.dtype == bool:
            raise TypeError("rows: expected positional integer rows, got a boolean mask")
        rows = rows.astype(np.int64)
        if len(rows) and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise IndexError(f"rows: expected positional rows in [0, {len(self)})")
        rows = rows % max(len(self), 1)
        if self._images is not None:
            assert self._image_index is not None  # set with the images in __init__
            return self._images[self._image_index[rows]].astype(np.float32) / 255.0
        images = [self.load_image(int(i)) for i in rows]
        if not images:
            size = self.image_size or 0
            return np.zeros((0, size, size), dtype=np.float32)
        shapes = {im.shape for im in images}
        if len(shapes) > 1:
            raise ValueError(
                f"cohort {self.name!r}: images differ in size {sorted(shapes)[:3]}; load the cohort with image_size="
            )
        return np.stack(images)

    # ----------------------------------------------------------------- subsets
    def subset(self, rows: Iterable[int] | np.ndarray, name: str | None = None) -> "Cohort":
        """A cohort of the given positional rows (re-indexed from 0), sharing in-memory images."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64)
        image_index = None
        if self._images is not None:
            assert self._image_index is not None  # set with the images in __init__
            image_index = self._image_index[rows]
        return Cohort(
            self.pairs.iloc[rows].reset_index(drop=True),
            root=self.root,
            public=self.public,
            name=name or self.name,
            summary=self.summary,
            image_size=self.image_size,
            images=self._images,
            image_index=image_index,
        )

    def split(self, name: str) -> "Cohort":
        """The rows of split ``name`` (``train``, ``val`` or ``test``) as a cohort, positional rows re-indexed."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"split={name!r}: expected 'train', 'val' or 'test'")
        return self.subset(np.flatnonzero((self.pairs["split"] == name).to_numpy()))

    # ----------------------------------------------------------------- cache format
    def save(self, directory: str | Path, images: bool = True, batch: int = 512) -> Path:
        """Write a fast cache: ``pairs.pkl``, ``meta.json`` and (``images=True``) ``images.npy`` uint8 ``(n, H, W)``.

        Images read from files are materialised (all must share one size; set ``image_size``).
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.pairs.to_pickle(directory / "pairs.pkl")
        meta: dict[str, Any] = {
            "root": None if self.root is None else str(self.root),
            "public": self.public,
            "name": self.name,
            "summary": self.summary,
            "image_size": self.image_size,
            "images": bool(images),
            "n_pairs": len(self.pairs),
        }
        if images:
            if self._images is not None:
                arr = np.ascontiguousarray(self._images[self._image_index])
            else:
                parts = [
                    to_uint8(self.load_images(np.arange(s, min(s + batch, len(self)))))
                    for s in range(0, len(self), batch)
                ]
                arr = (
                    np.concatenate(parts)
                    if parts
                    else np.zeros((0, self.image_size or 0, self.image_size or 0), np.uint8)
                )
            np.save(directory / "images.npy", arr)
            meta["image_size"] = int(arr.shape[1]) if arr.ndim == 3 and len(arr) else self.image_size
            meta["images_shape"] = [int(d) for d in arr.shape]
        (directory / "meta.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = True) -> "Cohort":
        """Read a cohort written by :meth:`save` (images memory-mapped when ``mmap``).

        Each file is checked against what :meth:`save` wrote (the pairs table and its length, the
        images' dtype and shape, one image per pair): a damaged file raises
        :class:`~relink_lib.cache.DamagedEntry` naming it and what was expected.
        """
        directory = Path(directory)
        for name in ("pairs.pkl", "meta.json"):
            if not (directory / name).is_file():
                raise FileNotFoundError(f"{directory / name}: not found; not a cohort written by Cohort.save")
        meta = _read_meta(directory / "meta.json")
        pairs = _read_pairs(directory / "pairs.pkl", meta.get("n_pairs"))
        images = None
        if meta.get("images"):
            path = directory / "images.npy"
            if not path.is_file():
                raise FileNotFoundError(f"{path}: not found (meta.json says images were saved)")
            images = load_npy(path, mmap_mode="r" if mmap else None)
            _check_images(path, images, len(pairs), meta.get("images_shape"))
        return cls(
            pairs,
            root=meta.get("root"),
            public=meta["public"],
            name=meta["name"],
            summary=meta.get("summary"),
            image_size=meta.get("image_size"),
            images=images,
        )


_SAVED_BY = "delete the folder to rebuild it"


def _read_meta(path: Path) -> dict[str, Any]:
    """``meta.json`` of a saved cohort; unreadable or without its keys: :class:`DamagedEntry` naming it."""
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DamagedEntry(
            f"{path}: not valid JSON ({exc}); expected the meta.json Cohort.save wrote ({_SAVED_BY})"
        ) from exc
    if not isinstance(meta, dict) or not {"public", "name"} <= set(meta):
        raise DamagedEntry(f"{path}: lacks 'public' / 'name'; expected the meta.json Cohort.save wrote ({_SAVED_BY})")
    return meta


_UNPICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError)


def _read_pairs(path: Path, n_pairs: int | None) -> pd.DataFrame:
    """``pairs.pkl`` of a saved cohort, checked to be a table of ``n_pairs`` rows (when recorded)."""
    try:
        pairs = pd.read_pickle(path)
    except _UNPICKLE_ERRORS as exc:
        raise DamagedEntry(
            f"{path}: unreadable ({type(exc).__name__}: {exc}); expected the pairs table Cohort.save pickled "
            f"(truncated or altered; {_SAVED_BY})"
        ) from exc
    if not isinstance(pairs, pd.DataFrame) or (n_pairs is not None and len(pairs) != int(n_pairs)):
        got = f"{len(pairs)} rows" if isinstance(pairs, pd.DataFrame) else type(pairs).__name__
        raise DamagedEntry(f"{path}: holds {got}; expected a table of {n_pairs} pairs (meta.json; {_SAVED_BY})")
    return pairs


def _check_images(path: Path, images: np.ndarray, n_pairs: int, shape: list[int] | None) -> None:
    """One uint8 ``(H, W)`` image per pair, of the recorded shape; else :class:`DamagedEntry` naming ``path``."""
    expected = tuple(shape) if shape is not None else (n_pairs, "H", "W")
    ok = images.dtype == np.uint8 and images.ndim == 3 and len(images) == n_pairs
    if not ok or (shape is not None and tuple(images.shape) != tuple(shape)):
        raise DamagedEntry(
            f"{path}: holds {images.dtype} {tuple(images.shape)}; expected uint8 {expected}, one image per row of "
            f"pairs.pkl ({_SAVED_BY})"
        )
