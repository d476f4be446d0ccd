"""The embedded model ladder: tiny CLIP dual encoders of rising clinical specialization.

Each rung is an HF ``CLIPModel`` built from a config (random init), trained with the
symmetric in-batch InfoNCE loss on the synthetic cohort's training split, and written with
``save_pretrained`` together with its tokenizer and a ``CLIPImageProcessor`` so that
:func:`relink_lib.models.load_dual_encoder` loads it like any public checkpoint.

The rungs differ the way public models differ in how much clinical text they were trained on:

- ``captions``: label-level captions only ("cardiomegaly, pleural effusion"), like a model
  aligned to classification labels (a general or weakly specialised VLM);
- ``impressions``: the IMPRESSION section, like models trained on report summaries;
- ``full-reports``: FINDINGS + IMPRESSION with more capacity and more steps, like a model
  specialised on full radiology reports.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import CLIPConfig, CLIPModel

from ..config import ProfileLike, as_profile
from ..labels import CHEXPERT_LABELS
from .base import torch_threads
from .preprocess import ImagePreprocess
from .tokenizer import build_tokenizer

TEXT_SOURCES: tuple[str, ...] = ("captions", "impression", "text")


@dataclass(frozen=True)
class RungSpec:
    """Architecture and training recipe of one rung.

    text: which text the rung is trained on: ``captions`` (built from the 14 labels),
    ``impression`` or ``text`` (findings + impression). epochs: passes over the training split
    at ``epochs_scale = 1`` (fractional passes allowed). Widths are transformer hidden sizes;
    heads must divide them. patch_size must divide the ladder's image size (16 on 64 px: 16
    image tokens). augment_shift: random translation of training images, as a fraction of the
    side (edge-replicated); augment_jitter: random intensity gain in ``1 +- jitter`` and offset in
    ``+- jitter / 2`` (0 disables either). Without augmentation the tiny ViT memorises the
    training images within a few epochs (validation loss rises while training loss falls).
    """

    name: str
    description: str
    text: str
    vision_width: int = 64
    vision_layers: int = 2
    vision_heads: int = 2
    text_width: int = 64
    text_layers: int = 2
    text_heads: int = 2
    projection_dim: int = 64
    patch_size: int = 16
    max_length: int = 64
    vocab_size: int = 2048
    epochs: float = 2.0
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.1
    warmup_frac: float = 0.1
    augment_shift: float = 0.05
    augment_jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.text not in TEXT_SOURCES:
            raise ValueError(f"RungSpec(name={self.name!r}).text={self.text!r}: expected one of {TEXT_SOURCES}")
        for width, heads, what in (
            (self.vision_width, self.vision_heads, "vision"),
            (self.text_width, self.text_heads, "text"),
        ):
            if width % heads:
                raise ValueError(
                    f"RungSpec(name={self.name!r}): {what}_width={width} is not divisible by {what}_heads={heads}"
                )
        if not (0.0 <= self.augment_shift < 0.5 and 0.0 <= self.augment_jitter < 1.0):
            raise ValueError(
                f"RungSpec(name={self.name!r}): expected 0 <= augment_shift < 0.5 and 0 <= augment_jitter < 1, "
                f"got {self.augment_shift}, {self.augment_jitter}"
            )
        if self.epochs <= 0 or self.batch_size < 2 or self.lr <= 0:
            raise ValueError(f"RungSpec(name={self.name!r}): expected epochs > 0, batch_size >= 2, lr > 0")


RUNG_SPECS: dict[str, RungSpec] = {
    "captions": RungSpec(
        name="captions",
        description="label-level captions only (e.g. 'cardiomegaly, pleural effusion'): aligned to the 14 labels, "
        "blind to instance detail, like a weakly specialised model",
        text="captions",
        epochs=4.0,
    ),
    "impressions": RungSpec(
        name="impressions",
        description="the IMPRESSION section: the radiologist's summary, some instance detail",
        text="impression",
        epochs=6.0,
    ),
    "full-reports": RungSpec(
        name="full-reports",
        description="FINDINGS + IMPRESSION with more capacity and more steps: the most specialised rung",
        text="text",
        vision_width=96,
        vision_heads=3,
        projection_dim=96,
        vocab_size=4096,
        epochs=16.0,
    ),
}
"""The default rungs (ViT patch 16, i.e. 16 image tokens on the 64 px ladder images). Lengths were
chosen so that the default profile's three rungs train within about 10 minutes on one CPU core and
the ci profile's within about 2 minutes (see docs/models.md); ``epochs`` are passes at
``epochs_scale = 1``."""


def rung_specs(params: ProfileLike) -> list[RungSpec]:
    """The rung specs named in the ladder section's ``rungs`` (in order), each with the fields of
    its ``overrides[name]`` changed."""
    ladder = as_profile(params).ladder
    stray = sorted(set(ladder.overrides) - set(RUNG_SPECS))
    if stray:
        raise ValueError(
            f"params['ladder']['overrides']: unknown rung {stray[0]!r}; expected names from {sorted(RUNG_SPECS)}"
        )
    fields = set(RungSpec.__dataclass_fields__)
    for name, changes in ladder.overrides.items():
        bad = sorted(set(changes) - fields)
        if bad:
            raise ValueError(
                f"params['ladder']['overrides'][{name!r}]: unknown field {bad[0]!r}; "
                f"expected fields of {sorted(fields)}"
            )
    out = []
    for name in ladder.rungs:
        if name not in RUNG_SPECS:
            raise ValueError(
                f"params['ladder']['rungs']: unknown rung {name!r}; expected names from {sorted(RUNG_SPECS)}"
            )
        out.append(replace(RUNG_SPECS[name], **dict(ladder.overrides.get(name, {}))))
    return out


def caption_from_labels(row: Mapping[str, Any]) -> str:
    """A label-level caption: positive labels by name, uncertain ones as 'possible <label>'.

    Example: ``{"Cardiomegaly": 1, "Pleural Effusion": -1, ...}`` -> ``"cardiomegaly, possible pleural effusion"``.
    Rows with no positive or uncertain label read ``"no finding"``.
    """
    parts = []
    for label in CHEXPERT_LABELS:
        value = row.get(label)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if value == 1:
            parts.append(label.lower())
        elif value == -1:
            parts.append(f"possible {label.lower()}")
    return ", ".join(parts) if parts else "no finding"


def training_texts(pairs: pd.DataFrame, source: str) -> list[str]:
    """The texts a rung trains on, one per row of ``pairs`` (``source`` as :attr:`RungSpec.text`)."""
    if source == "captions":
        missing = [c for c in CHEXPERT_LABELS if c not in pairs.columns]
        if missing:
            raise ValueError(f"pairs: missing label columns {missing} needed for captions")
        return [caption_from_labels(r) for r in pairs[list(CHEXPERT_LABELS)].to_dict(orient="records")]
    if source not in pairs.columns:
        raise ValueError(f"pairs: missing column {source!r}; expected one of {list(pairs.columns)}")
    return [t if isinstance(t, str) and t.strip() else "" for t in pairs[source].tolist()]


def image_processor_config(image_size: int, mean: float, std: float) -> dict[str, Any]:
    """A ``CLIPImageProcessor`` configuration for grayscale images repeated to RGB."""
    return {
        "size": {"shortest_edge": int(image_size)},
        "crop_size": {"height": int(image_size), "width": int(image_size)},
        "do_resize": True,
        "do_center_crop": True,
        "resample": 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [float(mean)] * 3,
        "image_std": [float(std)] * 3,
        "do_convert_rgb": True,
    }


def build_clip(
    spec: RungSpec, vocab_size: int, image_size: int, eos_token_id: int, bos_token_id: int, pad_token_id: int, seed: int
) -> CLIPModel:
    """A randomly initialised HF ``CLIPModel`` for ``spec`` (deterministic from ``seed``)."""
    if image_size % spec.patch_size:
        raise ValueError(
            f"ladder image_size={image_size} is not divisible by rung {spec.name!r} patch_size={spec.patch_size}"
        )
    text_config = {
        "vocab_size": int(vocab_size),
        "hidden_size": spec.text_width,
        "intermediate_size": 4 * spec.text_width,
        "num_hidden_layers": spec.text_layers,
        "num_attention_heads": spec.text_heads,
        "max_position_embeddings": spec.max_length,
        "eos_token_id": int(eos_token_id),
        "bos_token_id": int(bos_token_id),
        "pad_token_id": int(pad_token_id),
        "projection_dim": spec.projection_dim,
    }
    vision_config = {
        "hidden_size": spec.vision_width,
        "intermediate_size": 4 * spec.vision_width,
        "num_hidden_layers": spec.vision_layers,
        "num_attention_heads": spec.vision_heads,
        "image_size": int(image_size),
        "patch_size": spec.patch_size,
        "num_channels": 3,
        "projection_dim": spec.projection_dim,
    }
    config = CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=spec.projection_dim)
    torch.manual_seed(seed)
    return CLIPModel(config)


def prepare_pixels(
    load_images: Callable[[np.ndarray], np.ndarray],
    rows: np.ndarray,
    image_size: int,
    chunk: int = 512,
    progress: bool = True,
    desc: str = "images",
) -> torch.Tensor:
    """Load ``rows`` in chunks and resize to ``image_size`` (bicubic, as the saved processor does).

    Returns float16 ``(n, 1, image_size, image_size)`` intensities in [0, 1] (normalisation and
    the repeat to 3 channels happen per batch, to keep memory at a third).
    """
    resize = ImagePreprocess(
        resize=("shortest_edge", image_size), crop=(image_size, image_size), mean=(0.0,), std=(1.0,), channels=1
    )
    out = torch.empty((len(rows), 1, image_size, image_size), dtype=torch.float16)
    for start in tqdm(range(0, len(rows), chunk), desc=desc, disable=not progress, leave=False):
        stop = min(len(rows), start + chunk)
        out[start:stop] = resize(load_images(rows[start:stop])).to(torch.float16)
    return out


def augment_batch(x: torch.Tensor, shift: float, jitter: float, gen: torch.Generator) -> torch.Tensor:
    """Random translation (up to ``shift`` of the side, edge-replicated) and intensity gain/offset (up to
    ``jitter``) of a float batch ``(b, 1, S, S)`` in [0, 1]; draws from ``gen`` (deterministic)."""
    b, _, h, w = x.shape
    s = int(round(shift * h))
    if s > 0:
        padded = F.pad(x, (s, s, s, s), mode="replicate")
        off = torch.randint(0, 2 * s + 1, (b, 2), generator=gen).tolist()
        x = torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(off)])
    if jitter > 0:
        gain = 1 + jitter * (2 * torch.rand(b, 1, 1, 1, generator=gen) - 1)
        bias = 0.5 * jitter * (2 * torch.rand(b, 1, 1, 1, generator=gen) - 1)
        x = x * gain + bias
    return x


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric in-batch InfoNCE over L2-normalised embeddings ``(b, d)``; row i pairs with row i."""
    logits = logit_scale.exp().clamp(max=100.0) * image_emb @ text_emb.T
    target = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def train_rung(
    spec: RungSpec,
    pixels: torch.Tensor,
    texts: Sequence[str],
    out_dir: str | Path,
    *,
    seed: int = 0,
    epochs_scale: float = 1.0,
    val: tuple[torch.Tensor, Sequence[str]] | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
    threads: int | None = None,
) -> pd.DataFrame:
    """Train one rung and save it as an HF directory in ``out_dir``.

    pixels: float16/32 ``(n, 1, S, S)`` intensities in [0, 1] from :func:`prepare_pixels`;
    texts: ``n`` training texts. val: optional (pixels, texts) for a per-epoch validation loss
    (never augmented). Training batches are augmented as ``spec.augment_shift`` /
    ``spec.augment_jitter`` say (:func:`augment_batch`, generator seeded from ``seed``).
    Returns the history: one row per step with ``step, epoch, loss, lr, logit_scale`` and
    ``val_loss`` on the last step of each epoch (NaN elsewhere). Deterministic from ``seed``.
    threads: CPU intra-op threads while training (``None``: torch's default).
    """
    with torch_threads(threads):
        return _train_rung(
            spec,
            pixels,
            texts,
            out_dir,
            seed=seed,
            epochs_scale=epochs_scale,
            val=val,
            progress=progress,
            device=device,
        )


def _train_rung(
    spec: RungSpec,
    pixels: torch.Tensor,
    texts: Sequence[str],
    out_dir: str | Path,
    *,
    seed: int,
    epochs_scale: float,
    val: tuple[torch.Tensor, Sequence[str]] | None,
    progress: bool,
    device: str | torch.device,
) -> pd.DataFrame:
    texts = list(texts)
    if len(texts) != len(pixels):
        raise ValueError(f"texts: expected {len(pixels)} texts (one per image), got {len(texts)}")
    if len(texts) < 2:
        raise ValueError(f"training split: expected at least 2 pairs, got {len(texts)}")
    if epochs_scale <= 0:
        raise ValueError(f"epochs_scale={epochs_scale}: expected > 0")
    image_size = int(pixels.shape[-1])
    out_dir = Path(out_dir)
    device = torch.device(device)
    tokenizer = build_tokenizer(texts, vocab_size=spec.vocab_size, max_length=spec.max_length)
    model = build_clip(
        spec, len(tokenizer), image_size, tokenizer.eos_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id, seed
    ).to(device)  # type: ignore[arg-type]  # transformers: PreTrainedModel.to is @wraps(nn.Module.to), typed as unbound
    flat = pixels.float()
    mean, std = float(flat.mean()), float(flat.std().clamp_min(1e-3))
    del flat

    def encode_text(batch: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = tokenizer(list(batch), padding=True, truncation=True, max_length=spec.max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"].to(device), "attention_mask": enc["attention_mask"].to(device)}

    def batch_pixels(idx: torch.Tensor, source: torch.Tensor, augment: bool = False) -> torch.Tensor:
        x = source[idx].float()
        if augment:
            x = augment_batch(x, spec.augment_shift, spec.augment_jitter, aug_gen)
        x = (x - mean) / std
        return x.expand(-1, 3, -1, -1).to(device)

    def step_loss(idx: torch.Tensor, pix: torch.Tensor, txt: Sequence[str], augment: bool = False) -> torch.Tensor:
        img = model.get_image_features(pixel_values=batch_pixels(idx, pix, augment))
        tok = model.get_text_features(**encode_text([txt[i] for i in idx.tolist()]))
        img = img.pooler_output if hasattr(img, "pooler_output") else img
        tok = tok.pooler_output if hasattr(tok, "pooler_output") else tok
        return clip_loss(F.normalize(img, dim=-1), F.normalize(tok, dim=-1), model.logit_scale)

    n = len(texts)
    bs = min(spec.batch_size, n)
    steps_per_epoch = max(1, n // bs)
    total = max(2, int(round(spec.epochs * epochs_scale * steps_per_epoch)))
    warmup = max(1, int(spec.warmup_frac * total))
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": spec.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=spec.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: (
            (s + 1) / warmup if s < warmup else 0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, total - warmup)))
        ),
    )
    gen = torch.Generator().manual_seed(seed)
    aug_gen = torch.Generator().manual_seed(seed + 1)
    records: list[dict[str, Any]] = []
    order = torch.randperm(n, generator=gen)
    pos = 0
    model.train()
    t0 = time.perf_counter()
    bar = tqdm(range(total), desc=f"train {spec.name}", disable=not progress, leave=False)
    for step in bar:
        if pos + bs > n:
            order, pos = torch.randperm(n, generator=gen), 0
        idx = order[pos : pos + bs]
        pos += bs
        loss = step_loss(idx, pixels, texts, augment=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0.0, math.log(100.0))
        epoch = (step + 1) / steps_per_epoch
        rec = {
            "step": step + 1,
            "epoch": epoch,
            "loss": float(loss.detach()),
            "lr": float(sched.get_last_lr()[0]),
            "logit_scale": float(model.logit_scale.detach().exp()),
            "val_loss": float("nan"),
            "batch_size": bs,
        }
        end_of_epoch = (step + 1) % steps_per_epoch == 0 or step + 1 == total
        if val is not None and end_of_epoch and len(val[1]) >= 2:
            rec["val_loss"] = _eval_loss(model, step_loss, val, bs)
            model.train()
        records.append(rec)
        bar.set_postfix(loss=f"{rec['loss']:.3f}")
    wall = time.perf_counter() - t0
    model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    # lazily: without torchvision (an optional extra) resolving this name logs a fallback warning on every import
    from transformers import CLIPImageProcessor

    CLIPImageProcessor(**image_processor_config(image_size, mean, std)).save_pretrained(str(out_dir))
    history = pd.DataFrame.from_records(records)
    history.to_csv(out_dir / "history.csv", index=False)
    (out_dir / "rung.json").write_text(
        json.dumps(
            {
                "spec": asdict(spec),
                "seed": seed,
                "epochs_scale": epochs_scale,
                "n_train": n,
                "steps": total,
                "train_wall_s": round(wall, 3),
            },
            indent=1,
        )
    )
    return history


@torch.no_grad()
def _eval_loss(
    model: torch.nn.Module,
    step_loss: Callable[..., torch.Tensor],
    val: tuple[torch.Tensor, Sequence[str]],
    bs: int,
    max_pairs: int = 2048,
) -> float:
    model.eval()
    pix, txt = val
    n = min(len(txt), max_pairs)
    losses, weights = [], []
    for start in range(0, n - 1, bs):
        idx = torch.arange(start, min(n, start + bs))
        if len(idx) < 2:
            break
        losses.append(float(step_loss(idx, pix, txt)))
        weights.append(len(idx))
    return float(np.average(losses, weights=weights)) if losses else float("nan")
