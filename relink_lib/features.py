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

From the command line, ``python -m relink_lib features`` (:mod:`relink_lib.pipeline.shards`)
runs one shard of every requested rung and split, merges them and prints their status.
"""

from __future__ import annotations

import io
import json
import shutil
import time
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
from .numerics import cache_token
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
        "numerics": cache_token(),
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
    meta = json.loads((path / "meta.json").read_text())
    return Features(
        image=np.load(path / "image.npy"),
        text=np.load(path / "text.npy"),
        rows=np.load(path / "rows.npy"),
        meta=meta,
        path=path,
    )


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
    atomically, and chunk boundaries do not depend on the sharding.
    """
    k, n_shards = (0, 1) if shard is None else (int(shard[0]), int(shard[1]))
    shard_chunks(0, (k, n_shards))  # validates the shard
    profile = as_profile(params)
    key = feature_key(profile, cohort, rung, split)
    final = _final_dir(profile, key)
    if cache.is_complete(final):
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
    todo = [i for i in wanted if not _chunk_file(parts, i).exists()]
    if not todo:
        return parts
    if encoder is None:
        encoder = rung.load(device=settings["device"], amp=settings["amp"], batch_size=settings["batch_size"])
    with torch_threads(profile.features.threads):
        _extract_chunks(
            cohort, rung, split, rows, todo, chunk, settings, encoder, parts, (k, n_shards), progress, on_chunk
        )
    return parts


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
        sel = rows[i * chunk : (i + 1) * chunk]
        image = (
            encoder.image_features(cohort.load_images(sel), batch_size=settings["batch_size"])
            .numpy()
            .astype(np.float32)
        )
        text = (
            encoder.text_features([str(t) for t in texts_all.iloc[sel].tolist()], batch_size=settings["batch_size"])
            .numpy()
            .astype(np.float32)
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
    done = [i for i in range(n_chunks) if _chunk_file(parts, i).exists()]
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


def merge_shards(params: ProfileLike, cohort: Cohort, rung: Rung, split: str) -> Features:
    """Assemble the extracted chunks into the final cache entry (atomically) and return it.

    Raises ``RuntimeError`` naming the missing chunks when some shard has not finished.
    """
    profile = as_profile(params)
    key = feature_key(profile, cohort, rung, split)
    final = _final_dir(profile, key)
    if cache.is_complete(final):
        return _load(final)
    rows = split_rows(cohort, split)
    parts = _parts_dir(final)
    n_chunks = _n_chunks(len(rows), key["settings"]["chunk_size"])
    missing = [i for i in range(n_chunks) if not _chunk_file(parts, i).exists()]
    if missing:
        raise RuntimeError(
            f"features {rung.name}/{split}: {len(missing)} of {n_chunks} chunks missing "
            f"(chunks {format_chunks(missing)}); extract them first (re-run the shard jobs that own "
            f"them, or extract_features without a shard)"
        )
    images, texts, got = [], [], []
    for i in range(n_chunks):
        with np.load(_chunk_file(parts, i)) as z:
            images.append(z["image"])
            texts.append(z["text"])
            got.append(z["rows"])
    got_rows = np.concatenate(got) if got else np.zeros(0, np.int64)
    if not np.array_equal(got_rows, rows):
        raise RuntimeError(f"{parts}: chunk rows do not match split {split!r}; delete the directory and extract again")
    encoder_dims = (images[0].shape[1], texts[0].shape[1]) if images else (0, 0)
    image = np.concatenate(images) if images else np.zeros((0, 0), np.float32)
    text = np.concatenate(texts) if texts else np.zeros((0, 0), np.float32)
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
    return _load(final)


def get_features(params: ProfileLike, cohort: Cohort, rung: Rung, split: str, *, progress: bool = True) -> Features:
    """Pre-projection features of ``split`` for ``rung`` (extracted and cached on a miss)."""
    profile = as_profile(params)
    final = feature_dir(profile, cohort, rung, split)
    if cache.is_complete(final):
        return _load(final)
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
