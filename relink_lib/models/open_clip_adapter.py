"""Adapter for open_clip checkpoints such as BiomedCLIP (optional extra ``relink[openclip]``).

A local directory in the Hugging Face hub layout of open_clip models::

    open_clip_config.json          {"model_cfg": {...}, "preprocess_cfg": {"mean", "std", "size", "interpolation"}}
    open_clip_pytorch_model.bin    (or open_clip_model.safetensors / another *.bin, *.pt, *.safetensors)
    text/                          optional: the HF text tower's config.json + tokenizer files (BiomedCLIP's
                                   BiomedBERT), so that nothing is fetched from the hub

``open_clip`` (and ``timm`` / ``torchvision``) are imported lazily; they are not in the core
environment. Heads: a timm vision tower's ``visual.head`` (BiomedCLIP: ``visual.head.proj``
Linear 768 -> 512) or a native ViT's ``visual.proj``; an HF text tower's ``text.proj``
(BiomedCLIP: MLP 768 -> 640 -> 512) or a native ``text_projection``. The adapter moves each head
out of the model (replacing it by the identity) so the model returns pre-projection features,
and ``embed = normalize(head(features))`` is what ``encode_image`` / ``encode_text`` computed.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from types import ModuleType
from typing import Iterator, Sequence, cast

import torch
from torch import nn
from transformers import AutoTokenizer

from .base import DualEncoder, linear_from_proj, pick_device
from .preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ImagePreprocess

EXTRA_HINT = "pip install relink[openclip]"
WEIGHT_NAMES: tuple[str, ...] = ("open_clip_pytorch_model.bin", "open_clip_model.safetensors")


def import_open_clip() -> ModuleType:
    """Import ``open_clip`` or raise an ``ImportError`` naming the extra to install."""
    try:
        import open_clip  # lazily: optional extra relink[openclip]
    except ImportError as err:
        raise ImportError(
            f"open_clip checkpoints (e.g. BiomedCLIP) need the optional extra: `{EXTRA_HINT}` "
            f"(open_clip_torch, timm, torchvision; install them in a separate environment if torchvision "
            f"does not match this torch). Underlying error: {err}"
        ) from err
    return open_clip


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    old = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _weights_file(path: Path) -> Path:
    for name in WEIGHT_NAMES:
        if (path / name).is_file():
            return path / name
    found = sorted(p for p in path.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".safetensors") and p.is_file())
    if not found:
        raise FileNotFoundError(f"{path}: no open_clip weights ({' or '.join(WEIGHT_NAMES)})")
    return found[0]


def _take_head(tower: nn.Module, *places: tuple[str, type[nn.Module] | type[torch.Tensor]] | None) -> nn.Module | None:
    """Move the first head found at ``places`` (attribute, expected type) out of ``tower``.

    A module head is replaced by the identity; a projection matrix becomes an equal bias-free
    Linear head and the attribute is set to ``None`` (so the tower returns pre-projection features).
    ``None`` places are skipped; returns ``None`` when no place holds a head of its type.
    """
    for place in places:
        if place is None:
            continue
        attr, kind = place
        head = getattr(tower, attr, None)
        if not isinstance(head, kind):
            continue
        if isinstance(head, torch.Tensor):
            setattr(tower, attr, None)
            return linear_from_proj(head)
        setattr(tower, attr, nn.Identity())
        return head
    return None


class OpenClipDualEncoder(DualEncoder):
    """An open_clip model (kind ``open-clip``) from a local directory, offline."""

    kind = "open-clip"

    def __init__(
        self, path: str | Path, device: str | torch.device | None = None, amp: bool = True, batch_size: int = 64
    ) -> None:
        self.path = Path(path)
        cfg_file = self.path / "open_clip_config.json"
        if not cfg_file.is_file():
            raise FileNotFoundError(f"{cfg_file}: not found; expected an open_clip checkpoint directory")
        try:
            cfg = json.loads(cfg_file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{cfg_file}: not valid JSON ({err})") from err
        open_clip = import_open_clip()
        if "model_cfg" not in cfg:
            raise ValueError(f"{cfg_file}: no 'model_cfg' entry (expected the hub layout of open_clip models)")
        model_cfg = json.loads(json.dumps(cfg["model_cfg"]))
        text_dir = self.path / "text"
        text_cfg = model_cfg.get("text_cfg", {})
        if text_dir.is_dir():
            for key in ("hf_model_name", "hf_tokenizer_name"):
                if key in text_cfg:
                    text_cfg[key] = str(text_dir)
        name = f"relink-local-{abs(hash(str(self.path.resolve())))}"
        open_clip.factory._MODEL_CONFIGS[name] = model_cfg  # register the local config under a private name
        with _offline():
            model = open_clip.create_model(name, pretrained=str(_weights_file(self.path)), device="cpu")
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.image_head, self.text_head = self._detach_heads(self.model)
        pre = cfg.get("preprocess_cfg", {})
        size = pre.get("size", model_cfg.get("vision_cfg", {}).get("image_size", 224))
        size = int(size[0] if isinstance(size, (list, tuple)) else size)
        interp = str(pre.get("interpolation", "bicubic"))
        self.preprocess = ImagePreprocess(
            resize=("shortest_edge", size),
            crop=(size, size),
            resample=interp if interp in ("bilinear", "bicubic", "nearest") else "bicubic",
            mean=tuple(pre.get("mean", OPENAI_CLIP_MEAN)),
            std=tuple(pre.get("std", OPENAI_CLIP_STD)),
        )
        self.context_length = int(text_cfg.get("context_length", 77))
        self._hf_tokenizer = None
        for tok_dir in (self.path, text_dir):
            if tok_dir.is_dir() and any(
                (tok_dir / f).exists() for f in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")
            ):
                self._hf_tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
                break
        if self._hf_tokenizer is None:
            with _offline():
                self._oc_tokenizer = open_clip.get_tokenizer(name)
        self.amp = amp
        self.batch_size = batch_size
        self.to(pick_device(device))

    @staticmethod
    def _detach_heads(model: nn.Module) -> tuple[nn.Module, nn.Module]:
        visual = cast(nn.Module, model.visual)  # an open_clip model's vision tower
        image_head = _take_head(
            visual, ("head", nn.Module) if hasattr(visual, "trunk") else None, ("proj", torch.Tensor)
        )
        if image_head is None:
            raise ValueError(
                "open_clip vision tower: no projection head found "
                "(expected a timm tower with .head or a ViT with .proj)"
            )
        text = getattr(model, "text", model)
        text_head = _take_head(
            text, ("proj", nn.Module), ("text_projection", nn.Linear), ("text_projection", torch.Tensor)
        )
        if text_head is None:
            raise ValueError("open_clip text tower: no projection head found (expected .proj or .text_projection)")
        return image_head, text_head

    @property
    def modules(self) -> list[nn.Module]:
        return [self.model, self.image_head, self.text_head]

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        if self._hf_tokenizer is not None:
            enc = self._hf_tokenizer(
                list(texts), padding="max_length", truncation=True, max_length=self.context_length, return_tensors="pt"
            )
            return {"text": enc["input_ids"]}
        return {"text": self._oc_tokenizer(list(texts))}

    def _image_backbone(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixel_values, normalize=False)

    def _text_backbone(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.encode_text(tokens["text"], normalize=False)
