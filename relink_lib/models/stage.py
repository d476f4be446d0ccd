"""Pipeline stage: the model ladder of a profile.

Synthetic profiles train the embedded ladder (:mod:`relink_lib.models.ladder`) on the
internal cohort's training split, one cached HF directory per rung under
``cache_dir(profile)/ladder/<hash>/``. Real-data profiles (cohort source ``"real"``) list
local checkpoints in the data section's ``models``.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import cache
from ..cohorts.base import Cohort
from ..cohorts.stage import get_cohort
from ..config import ProfileLike, as_profile
from ..numerics import dispatch_token
from ..profiles import cache_dir
from . import detect_kind, load_dual_encoder
from .base import DualEncoder
from .catalog import ModelListSpec, read_model_list
from .ladder import RungSpec, prepare_pixels, rung_specs, train_rung, training_texts


@dataclass
class Rung:
    """One model of the ladder.

    index: 0 = least specialised. path: a checkpoint directory :func:`load_dual_encoder`
    reads (``kind`` says which adapter). history: training loss per step (columns ``step,
    epoch, loss, lr, logit_scale, val_loss``); empty for external checkpoints.
    """

    index: int
    name: str
    path: Path
    description: str
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    kind: str = "hf-clip"
    info: dict[str, Any] = field(default_factory=dict)

    def load(self, **kwargs: Any) -> DualEncoder:
        """The rung's :class:`~relink_lib.models.base.DualEncoder` (kwargs go to ``load_dual_encoder``)."""
        return load_dual_encoder(self.path, kind=self.kind, **kwargs)


def cohort_fingerprint(cohort: Cohort) -> str:
    """A content hash identifying a cohort: its pairs table, name, image size and (in-memory) pixels.

    Uses ``cohort.fingerprint`` when the cohort provides one; a pipeline cohort's
    ``summary["cache_key"]`` stands for its pixels (with the image index of a subset), otherwise
    in-memory pixels are hashed. Images read from files are identified by their paths (files are
    assumed immutable). Memoised on the object.
    """
    given = getattr(cohort, "fingerprint", None)
    if isinstance(given, str) and given:
        return given
    memo = getattr(cohort, "_relink_fingerprint", None)
    if isinstance(memo, str):
        return memo
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(cohort.pairs, index=True).to_numpy().tobytes())
    digest.update(json.dumps([str(c) for c in cohort.pairs.columns]).encode())
    digest.update(
        json.dumps(
            {
                "name": getattr(cohort, "name", ""),
                "image_size": getattr(cohort, "image_size", None),
                "root": str(getattr(cohort, "root", None)),
            }
        ).encode()
    )
    images = getattr(cohort, "_images", None)
    summary_key = (getattr(cohort, "summary", None) or {}).get("cache_key")
    if summary_key:  # a cached pipeline cohort: its key stands for the pixels; rows and pairs hashed above
        digest.update(str(summary_key).encode())
        index = getattr(cohort, "_image_index", None)
        if index is not None:
            digest.update(np.asarray(index, dtype=np.int64).tobytes())
    elif images is not None:
        index = getattr(cohort, "_image_index", None)
        digest.update(np.asarray(index if index is not None else np.arange(len(cohort)), dtype=np.int64).tobytes())
        for start in range(0, len(images), 1024):
            digest.update(np.ascontiguousarray(images[start : start + 1024]).tobytes())
    out = digest.hexdigest()[:16]
    try:
        cohort._relink_fingerprint = out
    except AttributeError:
        pass
    return out


def get_ladder(params: ProfileLike, *, progress: bool = True, cohort: Cohort | None = None) -> list[Rung]:
    """The ladder of rungs for ``params`` (trained and cached on first use for synthetic profiles).

    Synthetic: trained on ``get_cohort(params, site="internal")``'s train split (val split
    for the validation loss), deterministic from the profile's seed; a rung is cached under a hash
    of (cohort fingerprint, rung spec, seed, image size, epochs scale, code version) so a stopped
    run resumes at the first missing rung. Real: :func:`external_rungs`. ``cohort``: train on this
    cohort instead of the profile's internal one (tests, experiments).
    """
    profile = as_profile(params)
    if not profile.cohort.simulation:
        return external_rungs(profile.data.models)
    if cohort is None:
        cohort = get_cohort(profile, site="internal")
    specs = rung_specs(profile)
    cfg = profile.ladder
    image_size = int(cfg.image_size)
    scale = float(cfg.epochs_scale)
    seed = int(profile.seed)
    fp = cohort_fingerprint(cohort)
    code = cache.stage_code_version(__name__)
    root = cache_dir(profile.name)
    train_rows = np.flatnonzero((cohort.pairs["split"] == "train").to_numpy())
    val_rows = np.flatnonzero((cohort.pairs["split"] == "val").to_numpy())
    state: dict[str, torch.Tensor] = {}

    def pixels() -> tuple[torch.Tensor, torch.Tensor]:
        if "train" not in state:
            state["train"] = prepare_pixels(
                cohort.load_images, train_rows, image_size, progress=progress, desc="ladder images (train)"
            )
            state["val"] = prepare_pixels(
                cohort.load_images, val_rows[:2048], image_size, progress=progress, desc="ladder images (val)"
            )
        return state["train"], state["val"]

    rungs = []
    train_pairs = cohort.pairs.iloc[train_rows]
    val_pairs = cohort.pairs.iloc[val_rows[:2048]]
    keys = [
        {
            "step": "ladder-rung",
            "cohort": fp,
            "spec": asdict(spec),
            "seed": seed + index,
            "image_size": image_size,
            "epochs_scale": scale,
            "code": code,
            "numerics": dispatch_token(),
        }
        for index, spec in enumerate(specs)
    ]
    missing = [i for i, key in enumerate(keys) if not cache.check_entry(root / "ladder" / cache.content_hash(key))]
    workers = parallel_rung_workers(len(missing), cfg.threads, len(train_rows))
    if workers > 1:
        train_pix, val_pix = pixels()
        jobs = [
            RungJob(
                root=str(root),
                key=keys[i],
                spec=specs[i],
                seed=seed + i,
                epochs_scale=scale,
                threads=cfg.threads,
                texts=training_texts(train_pairs, specs[i].text),
                val_texts=training_texts(val_pairs, specs[i].text),
            )
            for i in missing
        ]
        train_rungs_in_parallel(jobs, train_pix, val_pix, workers, progress=progress)
    for index, spec in enumerate(specs):
        key = keys[index]

        def build(tmp: Path, spec: RungSpec = spec, index: int = index) -> None:
            train_pix, val_pix = pixels()
            train_rung(
                spec,
                train_pix,
                training_texts(train_pairs, spec.text),
                tmp,
                seed=seed + index,
                epochs_scale=scale,
                val=(val_pix, training_texts(val_pairs, spec.text)),
                progress=progress,
                threads=cfg.threads,
            )

        path = cache.cached_dir(root, "ladder", key, build)
        history = pd.read_csv(path / "history.csv")
        info = json.loads((path / "rung.json").read_text())
        rungs.append(
            Rung(
                index=index,
                name=spec.name,
                path=path,
                description=spec.description,
                history=history,
                kind="hf-clip",
                info=info,
            )
        )
    return rungs


@dataclass(frozen=True)
class RungJob:
    """One rung to train into the cache in a worker process (see :func:`train_rungs_in_parallel`)."""

    root: str
    key: dict[str, Any]
    spec: RungSpec
    seed: int
    epochs_scale: float
    threads: int | None
    texts: list[str]
    val_texts: list[str]


PARALLEL_MIN_TRAIN_PAIRS = 2000
"""Below this many training pairs the rungs train in this process: a spawned worker's start-up (importing torch
and transformers, several seconds) would outweigh the training it takes over."""


def parallel_rung_workers(n_missing: int, threads: int | None, n_train: int = PARALLEL_MIN_TRAIN_PAIRS) -> int:
    """How many rungs to train at once: one process per ``threads`` cores this process may use, at most one per
    missing rung; 1 (train in this process) when the rungs run with torch's default threads (``threads=None``) or
    on fewer than :data:`PARALLEL_MIN_TRAIN_PAIRS` training pairs."""
    if threads is None or n_missing < 2 or n_train < PARALLEL_MIN_TRAIN_PAIRS:
        return 1
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(n_missing, cores // int(threads)))


def _train_rung_job(job: RungJob, train_pix: torch.Tensor, val_pix: torch.Tensor) -> str:
    def build(tmp: Path) -> None:
        train_rung(
            job.spec,
            train_pix,
            job.texts,
            tmp,
            seed=job.seed,
            epochs_scale=job.epochs_scale,
            val=(val_pix, job.val_texts),
            progress=False,
            threads=job.threads,
        )

    return str(cache.cached_dir(job.root, "ladder", job.key, build))


def train_rungs_in_parallel(
    jobs: Sequence[RungJob], train_pix: torch.Tensor, val_pix: torch.Tensor, workers: int, *, progress: bool = True
) -> list[str]:
    """Train ``jobs`` into the cache in ``workers`` fresh (spawned) processes, the longest rung first.

    Each rung trains exactly as it would in this process: same seed, same thread count (``job.threads``), same
    numerical mode (the children inherit the environment that sets it), so the cached weights are the same bytes;
    only the wall time changes (the rungs of a 2-core machine run side by side). Returns the entries' paths.
    """
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].spec.epochs * jobs[i].spec.vision_width)
    paths: list[str] = [""] * len(jobs)
    ctx = multiprocessing.get_context("spawn")  # no fork after torch's thread pools started
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = {pool.submit(_train_rung_job, jobs[i], train_pix, val_pix): i for i in order}
        bar = tqdm(total=len(jobs), desc=f"train {len(jobs)} rungs ({workers} at once)", disable=not progress)
        for fut in as_completed(futures):
            paths[futures[fut]] = fut.result()
            bar.update(1)
        bar.close()
    return paths


def external_rungs(models: ModelListSpec) -> list[Rung]:
    """Rungs for local checkpoints, in the order given (least specialised first).

    models: a MODELS list (:func:`relink_lib.models.catalog.read_model_list`: inline, or a JSON /
    YAML file); ``kind`` is detected from the files when missing and must agree with them when given.
    """
    out = []
    for i, entry in enumerate(read_model_list(models)):
        if not entry.path.exists():
            raise FileNotFoundError(f"models[{i}] ({entry.name!r}): path {str(entry.path)!r} does not exist")
        detected = detect_kind(entry.path)
        kind = entry.kind or detected
        if detected != kind:
            raise ValueError(
                f"models[{i}] ({entry.name!r}): kind={kind!r} "
                f"but the files at {str(entry.path)!r} look like {detected!r}"
            )
        out.append(
            Rung(
                index=i,
                name=entry.name,
                path=entry.path,
                description=entry.description,
                kind=kind,
                info={"external": True},
            )
        )
    return out


def ladder_table(rungs: Sequence[Rung]) -> pd.DataFrame:
    """One row per rung: what it was trained on, its size and training length (no timings)."""
    rows = []
    for r in rungs:
        spec = r.info.get("spec", {})
        rows.append(
            {
                "rung": r.index,
                "name": r.name,
                "kind": r.kind,
                "trained on": spec.get("text", "external"),
                "vision (width x layers)": f"{spec['vision_width']} x {spec['vision_layers']}" if spec else "",
                "text (width x layers)": f"{spec['text_width']} x {spec['text_layers']}" if spec else "",
                "joint dim": spec.get("projection_dim", ""),
                "train pairs": r.info.get("n_train", ""),
                "steps": r.info.get("steps", ""),
                "final train loss": round(float(r.history["loss"].tail(10).mean()), 3)
                if len(r.history)
                else float("nan"),
            }
        )
    return pd.DataFrame(rows)
