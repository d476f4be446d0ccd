"""Cached, shardable extraction of pre-projection features.

For a (cohort, rung, split) the engine runs the rung's frozen backbones over the split's images
and reports in fixed chunks of rows and stores the pre-projection features:

    cache/<profile>/features/<key>/          image.npy (n, d_img), text.npy (n, d_txt), rows.npy, meta.json
    cache/<profile>/features/<key>.parts/    chunk_00000.npz ... while extraction is under way

``key`` hashes the cohort's content, the model directory's bytes, the preprocessing and
extraction settings and this code's version. Chunk files are written atomically, so a killed
run resumes at the first missing chunk. Shard ``k`` of ``n`` extracts chunks ``k, k + n, ...``;
because chunk boundaries and batches do not depend on the sharding, :func:`merge_shards`
gives arrays identical to a single run. Heads are applied afterwards (:func:`embed_features`),
so the DP chapter can put other heads on the same cached features.

Identical report texts get bit-identical text features: a chunk encodes each distinct text once,
and the merge gives every row the features of the first row of the split with the same text.

What is verified on read: a chunk counts as done only when its file opens and its arrays hold the
chunk's rows (image, text and row arrays of equal length; read from the headers), else it is
extracted again; the merged entry's files must have the sizes recorded when it was written
(:func:`relink_lib.cache.entry_problem`) and arrays of the recorded shapes, else it is recomputed
with a warning naming it. Merges of one key take a lock: a second merger waits and returns the
first one's result.

From the command line, ``python -m relink_lib features`` (:mod:`relink_lib.pipeline.shards`)
runs one shard of every requested rung and split, merges them and prints their status.
"""

from __future__ import annotations

import io
import json
import shutil
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import cache
from .cohorts.base import Cohort
from .config import Profile, ProfileLike, as_profile
from .models.base import DualEncoder, l2_normalize, pick_device, torch_threads
from .models.stage import Rung, cohort_fingerprint
from .numerics import dispatch_token
from .profiles import cache_dir

SPLITS: tuple[str, ...] = ("train", "val", "test", "all")
_MODEL_HASHES: dict[tuple[str, float, int], str] = {}


@dataclass
class Features:
    """Pre-projection features of one (cohort, rung, split).

    image: float32 ``(n, d_img)``; text: float32 ``(n, d_txt)``; rows: int64 ``(n,)``
    positional rows of ``cohort.pairs`` (row i of ``image`` and of ``text`` is pair ``rows[i]``).
    """

    image: np.ndarray
    text: np.ndarray
    rows: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.rows)


# ------------------------------------------------------------------------------ keys
def model_hash(path: str | Path) -> str:
    """Content hash of a checkpoint directory (memoised on path, mtime and size of its files)."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stamp = (
        str(path.resolve()),
        max((p.stat().st_mtime for p in files), default=0.0),
        sum(p.stat().st_size for p in files),
    )
    if stamp not in _MODEL_HASHES:
        _MODEL_HASHES[stamp] = cache.file_hash(path)
    return _MODEL_HASHES[stamp]


def split_rows(cohort: Cohort, split: str) -> np.ndarray:
    """Positional rows of ``cohort.pairs`` in ``split`` (``"all"``: every row), int64."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: expected one of {SPLITS}")
    if split == "all":
        return np.arange(len(cohort.pairs), dtype=np.int64)
    return np.flatnonzero((cohort.pairs["split"] == split).to_numpy()).astype(np.int64)


def _settings(params: ProfileLike) -> dict[str, Any]:
    """The extraction settings of the features section, with the device resolved (part of the cache key)."""
    cfg = as_profile(params).features
    device = pick_device(cfg.device)
    return {
        "batch_size": int(cfg.batch_size),
        "chunk_size": cfg.rows_per_chunk,
        "text_column": cfg.text_column,
        "device": device.type,
        "amp": cfg.amp and device.type == "cuda",
    }


def feature_key(params: ProfileLike, cohort: Cohort, rung: Rung, split: str) -> dict[str, Any]:
    """Everything the features of (cohort, rung, split) depend on."""
    settings = _settings(params)
    if settings["text_column"] not in cohort.pairs.columns:
        raise ValueError(
            f"params['features']['text_column']={settings['text_column']!r}: not a column of cohort "
            f"{getattr(cohort, 'name', '')!r}"
        )
    rows = split_rows(cohort, split)
    return {
        "step": "features",
        "cohort": cohort_fingerprint(cohort),
        "split": split,
        "rows": cache.content_hash(rows),
        "model": model_hash(rung.path),
        "kind": rung.kind,
        "settings": settings,
        "code": cache.stage_code_version(__name__),
        "numerics": dispatch_token(),
    }


def feature_dir(params: ProfileLike, cohort: Cohort, rung: Rung, split: str) -> Path:
    """The final cache directory of (cohort, rung, split) (it may not exist yet)."""
    profile = as_profile(params)
    return _final_dir(profile, feature_key(profile, cohort, rung, split))


def _final_dir(profile: Profile, key: Mapping[str, Any]) -> Path:
    return cache_dir(profile.name) / "features" / cache.content_hash(key)


def _parts_dir(final: Path) -> Path:
    return final.with_name(final.name + ".parts")


def _n_chunks(n: int, chunk: int) -> int:
    return (n + chunk - 1) // chunk


def _chunk_file(parts: Path, i: int) -> Path:
    return parts / f"chunk_{i:05d}.npz"


def _load(path: Path) -> Features:
    """The merged features at ``path``, checked: every array readable, of the rows and widths ``meta.json``
    records; else :class:`~relink_lib.cache.DamagedEntry` naming the file and what was expected."""
    try:
        meta = json.loads((path / "meta.json").read_text())
        n, dims = int(meta["n"]), (int(meta["image_dim"]), int(meta["text_dim"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise cache.DamagedEntry(
            f"{path / 'meta.json'}: unreadable ({type(exc).__name__}: {exc}); expected the meta.json merge_shards "
            f"wrote (n, image_dim, text_dim)"
        ) from exc
    arrays = {name: cache.load_npy(path / f"{name}.npy") for name in ("image", "text", "rows")}
    want = {"image": (n, dims[0]), "text": (n, dims[1]), "rows": (n,)}
    for name, shape in want.items():
        got = arrays[name].shape
        if got != shape and not (n == 0 and got[:1] == (0,)):
            raise cache.DamagedEntry(
                f"{path / f'{name}.npy'}: shape {got}, expected {shape} (meta.json: {n} rows, widths {dims})"
            )
    return Features(image=arrays["image"], text=arrays["text"], rows=arrays["rows"], meta=meta, path=path)


def _load_problem(path: Path) -> str | None:
    """What :func:`_load` finds wrong with the entry at ``path`` (``None``: usable)."""
    problem = cache.entry_problem(path)
    if problem is not None:
        return problem
    try:
        _load(path)
    except cache.DamagedEntry as exc:
        return str(exc)
    return None


def _cached(final: Path) -> Features | None:
    """The merged features at ``final``; ``None`` when absent. A damaged entry (truncated files, arrays of the
    wrong shape) is warned about, naming the file, and discarded, so the caller computes it again."""
    if not cache.check_entry(final):  # warns about and discards an entry whose files lost their recorded sizes
        return None
    try:
        return _load(final)
    except cache.DamagedEntry as exc:
        warnings.warn(f"{final}: damaged features ({exc}); recomputing them", UserWarning, stacklevel=3)
        cache.discard_entry(final, _load_problem)
        return None


# ------------------------------------------------------------------------------ chunks
def _chunk_rows(rows: np.ndarray, chunk: int, i: int) -> np.ndarray:
    """The positional rows chunk ``i`` holds."""
    return rows[i * chunk : (i + 1) * chunk]


def _npz_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Shapes of the arrays of an ``.npz`` chunk, read from the headers (each member's size checked too)."""
    shapes = {}
    with zipfile.ZipFile(path) as z:
        for name in ("image", "text", "rows"):
            info = z.getinfo(f"{name}.npy")
            with z.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)
                header = fh.tell()
            expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            if info.file_size != expected:
                raise ValueError(f"{name}.npy holds {info.file_size} bytes, expected {expected}")
            shapes[name] = tuple(int(d) for d in shape)
    return shapes


def _chunk_problem(path: Path, n_rows: int) -> str | None:
    """What is wrong with a chunk file of ``n_rows`` rows (``None``: usable; ``"missing"``: not written yet)."""
    if not path.exists():
        return "missing"
    try:
        shapes = _npz_shapes(path)
    except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError) as exc:
        return f"unreadable ({type(exc).__name__}: {exc})"
    image, text, rows = shapes["image"], shapes["text"], shapes["rows"]
    if len(image) != 2 or len(text) != 2 or rows != (n_rows,) or image[0] != n_rows or text[0] != n_rows:
        return f"image {image}, text {text}, rows {rows}; expected {n_rows} rows in each (2-D image and text)"
    return None


# ------------------------------------------------------------------------------ extraction
def shard_chunks(n_chunks: int, shard: tuple[int, int] | None = None) -> list[int]:
    """The chunk indices shard ``(k, n)`` owns: ``k, k + n, k + 2n, ... < n_chunks`` (``None``: all)."""
    k, n_shards = (0, 1) if shard is None else (int(shard[0]), int(shard[1]))
    if n_shards < 1 or not 0 <= k < n_shards:
        raise ValueError(f"shard={shard!r}: expected (k, n) with n >= 1 and 0 <= k < n")
    return list(range(k, n_chunks, n_shards))


ChunkCallback = Callable[[int, int, float], None]
"""``on_chunk(chunk_index, n_rows_in_chunk, seconds)``: called after each chunk is written."""


def extract_features(
    params: ProfileLike,
    cohort: Cohort,
    rung: Rung,
    split: str,
    shard: tuple[int, int] | None = None,
    *,
    chunks: Sequence[int] | None = None,
    encoder: DualEncoder | None = None,
    progress: bool = True,
    on_chunk: ChunkCallback | None = None,
) -> Path:
    """Extract the missing chunks of shard ``(k, n)`` (default: all chunks) and return the parts directory.

    ``chunks``: extract these chunk indices instead of the shard's (the command line deals the
    chunks of several rungs and splits out together). Returns the final directory instead when
    the features are already cached. ``encoder``: an already loaded
    :class:`~relink_lib.models.base.DualEncoder` of ``rung`` (loaded on demand).
    ``on_chunk``: called after every chunk written (for line-by-line progress in job logs).
    Report text is read from the features section's ``text_column`` and never logged.
    Safe to run concurrently with other shards on one cache: each chunk is its own file, written
    atomically, and chunk boundaries do not depend on the sharding. A chunk file that is empty,
    unreadable or holds the wrong number of rows is warned about (naming it) and extracted again.
    """
    k, n_shards = (0, 1) if shard is None else (int(shard[0]), int(shard[1]))
    shard_chunks(0, (k, n_shards))  # validates the shard
    profile = as_profile(params)
    key = feature_key(profile, cohort, rung, split)
    final = _final_dir(profile, key)
    if cache.check_entry(final):  # sizes only: at paper scale an entry holds gigabytes
        return final
    settings = key["settings"]
    rows = split_rows(cohort, split)
    parts = _parts_dir(final)
    parts.mkdir(parents=True, exist_ok=True)
    cache.atomic_write_bytes(parts / "key.json", json.dumps(cache._canonical(key), indent=1).encode())
    chunk = settings["chunk_size"]
    n_chunks = _n_chunks(len(rows), chunk)
    if chunks is None:
        wanted = shard_chunks(n_chunks, (k, n_shards))
    else:
        wanted = sorted({int(i) for i in chunks})
        bad = [i for i in wanted if not 0 <= i < n_chunks]
        if bad:
            raise ValueError(f"chunks={bad[:5]}: features {rung.name}/{split} have chunks 0 to {n_chunks - 1}")
    todo = _chunks_to_do(parts, rows, chunk, wanted)
    if not todo:
        return parts
    if encoder is None:
        encoder = rung.load(device=settings["device"], amp=settings["amp"], batch_size=settings["batch_size"])
    with torch_threads(profile.features.threads):
        _extract_chunks(
            cohort, rung, split, rows, todo, chunk, settings, encoder, parts, (k, n_shards), progress, on_chunk
        )
    return parts


def _chunks_to_do(parts: Path, rows: np.ndarray, chunk: int, wanted: Sequence[int]) -> list[int]:
    """The chunks of ``wanted`` without a usable file; a damaged one is warned about, naming it."""
    todo = []
    for i in wanted:
        path = _chunk_file(parts, i)
        problem = _chunk_problem(path, len(_chunk_rows(rows, chunk, i)))
        if problem is None:
            continue
        if problem != "missing":
            warnings.warn(f"{path}: damaged feature chunk ({problem}); extracting it again", UserWarning, stacklevel=3)
        todo.append(i)
    return todo


def text_features_once(encoder: DualEncoder, texts: Sequence[str], batch_size: int) -> np.ndarray:
    """Text features ``(n, d)`` float32 with each distinct text encoded once and copied to its duplicates.

    A text's features depend on the batch it is padded with; encoding it once makes identical
    texts bit-identical (ties in the audit stay ties). Distinct texts keep their first-seen order,
    so a chunk without duplicates is encoded exactly as before.
    """
    first: dict[str, int] = {}
    for t in texts:
        first.setdefault(t, len(first))
    inverse = np.array([first[t] for t in texts], dtype=np.int64)
    distinct = encoder.text_features(list(first), batch_size=batch_size).numpy().astype(np.float32)
    return distinct[inverse] if len(texts) else distinct


def same_text_same_features(text: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """``text`` with each row replaced by the row of the first occurrence of the same report text."""
    first: dict[str, int] = {}
    source = np.array([first.setdefault(t, i) for i, t in enumerate(texts)], dtype=np.int64)
    return text[source] if len(texts) else text


def _extract_chunks(
    cohort: Cohort,
    rung: Rung,
    split: str,
    rows: np.ndarray,
    todo: list[int],
    chunk: int,
    settings: Mapping[str, Any],
    encoder: DualEncoder,
    parts: Path,
    shard: tuple[int, int],
    progress: bool,
    on_chunk: ChunkCallback | None = None,
) -> None:
    k, n_shards = shard
    texts_all = cohort.pairs[settings["text_column"]]
    for i in tqdm(
        todo,
        desc=f"features {rung.name}/{split}" + (f" shard {k}/{n_shards}" if n_shards > 1 else ""),
        disable=not progress,
        leave=False,
    ):
        start = time.perf_counter()
        sel = _chunk_rows(rows, chunk, i)
        image = (
            encoder.image_features(cohort.load_images(sel), batch_size=settings["batch_size"])
            .numpy()
            .astype(np.float32)
        )
        texts = [str(t) for t in texts_all.iloc[sel].tolist()]
        text = text_features_once(encoder, texts, settings["batch_size"])
        if image.shape[0] != len(sel) or text.shape[0] != len(sel):
            raise RuntimeError(
                f"features {rung.name}/{split} chunk {i}: the encoder gave {image.shape[0]} image and "
                f"{text.shape[0]} text rows, expected {len(sel)} each"
            )
        buf = io.BytesIO()
        np.savez(buf, image=image, text=text, rows=sel)
        cache.atomic_write_bytes(_chunk_file(parts, i), buf.getvalue())
        if on_chunk is not None:
            on_chunk(i, len(sel), time.perf_counter() - start)


@dataclass
class ChunkStatus:
    """Where the extraction of one (cohort, rung, split) stands.

    n_rows: pairs in the split; n_chunks: chunks of ``chunk_size`` rows; done / missing: chunk
    indices extracted / not yet (both empty-missing once merged); merged: the final entry exists.
    """

    n_rows: int
    n_chunks: int
    chunk_size: int
    done: list[int]
    missing: list[int]
    merged: bool
    path: Path

    @property
    def state(self) -> str:
        """``merged``, ``complete`` (every chunk, not merged yet), ``partial`` or ``not started``."""
        if self.merged:
            return "merged"
        if not self.missing:
            return "complete"
        return "partial" if self.done else "not started"


def chunk_status(params: ProfileLike, cohort: Cohort, rung: Rung, split: str) -> ChunkStatus:
    """The :class:`ChunkStatus` of (cohort, rung, split), read from the cache (computes nothing)."""
    profile = as_profile(params)
    final = feature_dir(profile, cohort, rung, split)
    n_rows = len(split_rows(cohort, split))
    chunk = profile.features.rows_per_chunk
    n_chunks = _n_chunks(n_rows, chunk)
    if cache.is_complete(final):
        return ChunkStatus(n_rows, n_chunks, chunk, list(range(n_chunks)), [], True, final)
    parts = _parts_dir(final)
    rows = split_rows(cohort, split)
    done = [
        i for i in range(n_chunks) if _chunk_problem(_chunk_file(parts, i), len(_chunk_rows(rows, chunk, i))) is None
    ]
    missing = sorted(set(range(n_chunks)) - set(done))
    return ChunkStatus(n_rows, n_chunks, chunk, done, missing, False, parts)


def missing_chunks(params: ProfileLike, cohort: Cohort, rung: Rung, split: str) -> list[int]:
    """Indices of the chunks not yet extracted (empty when complete or fully extracted)."""
    return chunk_status(params, cohort, rung, split).missing


def format_chunks(indices: list[int], limit: int = 12) -> str:
    """Compact ranges of chunk indices, e.g. ``[0, 1, 2, 5, 7, 8] -> "0-2, 5, 7-8"`` (at most ``limit`` ranges)."""
    ranges: list[tuple[int, int]] = []
    for i in sorted(indices):
        if ranges and i == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], i)
        else:
            ranges.append((i, i))
    text = [f"{a}" if a == b else f"{a}-{b}" for a, b in ranges[:limit]]
    if len(ranges) > limit:
        text.append(f"... ({len(ranges) - limit} more ranges)")
    return ", ".join(text)


class DamagedChunks(RuntimeError):
    """Chunk files whose data could not be read at the merge; they were removed, so extraction redoes them."""


def merge_shards(params: ProfileLike, cohort: Cohort, rung: Rung, split: str) -> Features:
    """Assemble the extracted chunks into the final cache entry (atomically) and return it.

    Raises ``RuntimeError`` naming the missing or damaged chunks when some shard has not finished
    (:class:`DamagedChunks` when a chunk's data is unreadable: it is removed, to be extracted again).
    Merges of one key hold a lock: a second merger waits, then returns the merged entry.
    """
    profile = as_profile(params)
    key = feature_key(profile, cohort, rung, split)
    final = _final_dir(profile, key)
    done = _cached(final)
    if done is not None:
        return done
    with cache.entry_lock(final, "merge"):
        done = _cached(final)  # another merger may have finished while this one waited
        if done is not None:
            return done
        _merge(profile, cohort, rung, split, key, final)
    return _load(final)


def _merge(profile: Profile, cohort: Cohort, rung: Rung, split: str, key: Mapping[str, Any], final: Path) -> None:
    """Check every chunk, concatenate them and write the final entry; the parts folder is removed after."""
    rows = split_rows(cohort, split)
    parts = _parts_dir(final)
    chunk = key["settings"]["chunk_size"]
    n_chunks = _n_chunks(len(rows), chunk)
    problems = {i: _chunk_problem(_chunk_file(parts, i), len(_chunk_rows(rows, chunk, i))) for i in range(n_chunks)}
    missing = [i for i, p in problems.items() if p is not None]
    if missing:
        damaged = [f"{_chunk_file(parts, i)}: {p}" for i, p in problems.items() if p not in (None, "missing")]
        raise RuntimeError(
            f"features {rung.name}/{split}: {len(missing)} of {n_chunks} chunks missing "
            f"(chunks {format_chunks(missing)}); extract them first (re-run the shard jobs that own "
            f"them, or extract_features without a shard)" + (f"; damaged: {'; '.join(damaged[:3])}" if damaged else "")
        )
    images, texts, got = _read_chunks(parts, rung, split, n_chunks)
    got_rows = np.concatenate(got) if got else np.zeros(0, np.int64)
    if not np.array_equal(got_rows, rows):
        raise RuntimeError(f"{parts}: chunk rows do not match split {split!r}; delete the directory and extract again")
    encoder_dims = (images[0].shape[1], texts[0].shape[1]) if images else (0, 0)
    image = np.concatenate(images) if images else np.zeros((0, 0), np.float32)
    text = np.concatenate(texts) if texts else np.zeros((0, 0), np.float32)
    column = cohort.pairs[key["settings"]["text_column"]]
    text = same_text_same_features(text, [str(t) for t in column.iloc[rows].tolist()])
    meta = {
        "rung": rung.name,
        "kind": rung.kind,
        "split": split,
        "n": int(len(rows)),
        "image_dim": int(encoder_dims[0]),
        "text_dim": int(encoder_dims[1]),
        "key": cache._canonical(key),
        "n_chunks": n_chunks,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    with cache.atomic_dir(final) as tmp:
        np.save(tmp / "image.npy", image.astype(np.float32))
        np.save(tmp / "text.npy", text.astype(np.float32))
        np.save(tmp / "rows.npy", rows.astype(np.int64))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(parts, ignore_errors=True)


def _read_chunks(
    parts: Path, rung: Rung, split: str, n_chunks: int
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """The chunks' image, text and row arrays; unreadable chunks are removed and named (:class:`DamagedChunks`),
    chunks of another width than chunk 0's are named (``RuntimeError``)."""
    images, texts, got, damaged = [], [], [], []
    for i in range(n_chunks):
        path = _chunk_file(parts, i)
        try:
            with np.load(path) as z:
                images.append(z["image"])
                texts.append(z["text"])
                got.append(z["rows"])
        except (zipfile.BadZipFile, KeyError, ValueError, EOFError, OSError) as exc:
            damaged.append(f"{path} ({type(exc).__name__}: {exc})")
            path.unlink(missing_ok=True)
    if damaged:
        raise DamagedChunks(
            f"features {rung.name}/{split}: {len(damaged)} chunk file(s) unreadable, removed to be extracted "
            f"again: {'; '.join(damaged[:3])}"
        )
    for i in range(1, n_chunks):
        if images[i].shape[1:] != images[0].shape[1:] or texts[i].shape[1:] != texts[0].shape[1:]:
            raise RuntimeError(
                f"{_chunk_file(parts, i)}: image width {images[i].shape[1:]}, text width {texts[i].shape[1:]}; "
                f"expected those of chunk 0 ({images[0].shape[1:]}, {texts[0].shape[1:]}); delete {parts} and "
                f"extract again"
            )
    return images, texts, got


def get_features(params: ProfileLike, cohort: Cohort, rung: Rung, split: str, *, progress: bool = True) -> Features:
    """Pre-projection features of ``split`` for ``rung`` (extracted and cached on a miss; a damaged entry or
    chunk is warned about and extracted again)."""
    profile = as_profile(params)
    final = feature_dir(profile, cohort, rung, split)
    done = _cached(final)
    if done is not None:
        return done
    extract_features(profile, cohort, rung, split, progress=progress)
    try:
        return merge_shards(profile, cohort, rung, split)
    except DamagedChunks as exc:
        warnings.warn(f"{exc}; extracting them again", UserWarning, stacklevel=2)
        extract_features(profile, cohort, rung, split, progress=progress)
        return merge_shards(profile, cohort, rung, split)


# ------------------------------------------------------------------------------ heads
@torch.no_grad()
def embed_features(
    features: Features, image_head: nn.Module, text_head: nn.Module, batch_size: int = 8192
) -> tuple[np.ndarray, np.ndarray]:
    """Apply heads to cached features: ``(normalize(image_head(image)), normalize(text_head(text)))``.

    Returns float32 numpy ``(n, d)`` each, L2-normalised rows. The heads run in float32 on
    their own device (eval mode, restored afterwards).
    """
    out = []
    for head, x, what in ((image_head, features.image, "image"), (text_head, features.text, "text")):
        if not isinstance(head, nn.Module):
            raise TypeError(f"{what}_head: expected a torch nn.Module, got {type(head).__name__}")
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"features.{what}: expected a 2-D array (n, d), got shape {x.shape}")
        param = next(iter(head.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None else torch.float32
        was_training = head.training
        head.eval()
        try:
            parts = [
                l2_normalize(head(torch.from_numpy(x[s : s + batch_size]).to(device, dtype)).float()).cpu().numpy()
                for s in range(0, len(x), batch_size)
            ]
        finally:
            head.train(was_training)
        out.append(np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 0), np.float32))
    return out[0], out[1]


def get_embeddings(
    params: ProfileLike, cohort: Cohort, rung: Rung, split: str = "test", *, progress: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image_emb, report_emb, rows)`` of ``split`` through the rung's own heads (L2-normalised float32)."""
    feats = get_features(params, cohort, rung, split, progress=progress)
    encoder = rung.load(device="cpu")
    image, text = embed_features(feats, encoder.image_head, encoder.text_head)
    return image, text, feats.rows
