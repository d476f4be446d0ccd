"""Dual encoders: offline adapters with separable projection heads, and the embedded ladder.

``load_dual_encoder(path, kind=None)`` loads a local checkpoint directory; ``kind`` is detected
from the files when not given:

==================  ==========================================================================
kind                files in the directory
==================  ==========================================================================
``hf-clip``         ``config.json`` with ``model_type: clip`` (HF ``CLIPModel``)
``hf-dual-encoder`` ``config.json`` with ``model_type: vision-text-dual-encoder``
``open-clip``       ``open_clip_config.json`` + weights (BiomedCLIP layout); extra ``relink[openclip]``
``openai-clip``     one ``*.pt`` / ``*.pth`` / ``*.ckpt`` OpenAI-CLIP state dict (CheXzero)
==================  ==========================================================================
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .base import DualEncoder, l2_normalize, pick_device
from .hf import HF_MODEL_TYPES, HFDualEncoder
from .open_clip_adapter import OpenClipDualEncoder
from .openai_clip import OpenAIClipDualEncoder
from .preprocess import ImagePreprocess

KINDS: tuple[str, ...] = ("hf-clip", "hf-dual-encoder", "openai-clip", "open-clip")
OPENAI_SUFFIXES: tuple[str, ...] = (".pt", ".pth", ".ckpt")

__all__ = ["KINDS", "DualEncoder", "ImagePreprocess", "detect_kind", "l2_normalize", "load_dual_encoder", "pick_device"]


def detect_kind(path: str | Path) -> str:
    """The adapter kind of a checkpoint directory (see the module docstring); clear errors otherwise."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint directory does not exist")
    if path.is_file():
        if path.suffix in OPENAI_SUFFIXES:
            return "openai-clip"
        raise ValueError(
            f"{path}: expected a checkpoint directory (or an OpenAI-CLIP *.pt file), "
            f"got a {path.suffix or 'plain'} file"
        )
    if (path / "open_clip_config.json").exists():
        return "open-clip"
    if (path / "config.json").exists():
        try:
            model_type = json.loads((path / "config.json").read_text()).get("model_type")
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}/config.json: not valid JSON ({err})") from err
        if model_type in HF_MODEL_TYPES:
            return HF_MODEL_TYPES[model_type]
        raise ValueError(
            f"{path}/config.json: model_type={model_type!r} is not a supported dual encoder; "
            f"expected one of {sorted(HF_MODEL_TYPES)} (or pass kind= one of {KINDS})"
        )
    if any(p.suffix in OPENAI_SUFFIXES for p in path.iterdir() if p.is_file()):
        return "openai-clip"
    raise ValueError(
        f"{path}: cannot tell the checkpoint kind: expected config.json (HF), open_clip_config.json "
        f"(open_clip) or a *.pt state dict (OpenAI CLIP / CheXzero)"
    )


def load_dual_encoder(
    path: str | Path,
    kind: str | None = None,
    *,
    device: str | torch.device | None = None,
    amp: bool = True,
    batch_size: int = 64,
    **options: Any,
) -> DualEncoder:
    """Load a dual encoder from a local directory, offline.

    path: checkpoint directory (or an OpenAI-CLIP ``.pt`` file). kind: one of :data:`KINDS`,
    detected from the files when ``None``. device: default CUDA when available, else CPU.
    amp: autocast the backbones on CUDA. batch_size: images / reports per forward pass.
    options: passed to the adapter (e.g. ``preprocess=`` for ``openai-clip``).
    """
    detected = detect_kind(path)
    if kind is None:
        kind = detected
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {KINDS}")
    if kind in ("hf-clip", "hf-dual-encoder"):
        return HFDualEncoder(path, kind=kind, device=device, amp=amp, batch_size=batch_size, **options)
    if kind == "openai-clip":
        return OpenAIClipDualEncoder(path, device=device, amp=amp, batch_size=batch_size, **options)
    return OpenClipDualEncoder(path, device=device, amp=amp, batch_size=batch_size, **options)
