"""Adapters for HF ``CLIPModel`` and ``VisionTextDualEncoderModel`` checkpoints (offline).

Both keep their projection heads as bias-free ``nn.Linear`` modules ``visual_projection`` and
``text_projection`` applied to the towers' ``pooler_output``, which is what
``get_image_features`` / ``get_text_features`` compute. The adapter calls the towers for the
pre-projection features and exposes the two projections as ``image_head`` / ``text_head``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import torch
from PIL import Image
from torch import nn
from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel, VisionTextDualEncoderModel
from transformers.utils import logging as hf_logging

from .base import DualEncoder, pick_device
from .preprocess import ImagePreprocess

if TYPE_CHECKING:
    from transformers import BaseImageProcessor

HF_MODEL_TYPES: dict[str, str] = {"clip": "hf-clip", "vision-text-dual-encoder": "hf-dual-encoder"}


def read_hf_config(path: str | Path) -> dict[str, Any]:
    """``path/config.json`` as a dictionary, with a clear error when missing or invalid."""
    file = Path(path) / "config.json"
    if not file.exists():
        raise FileNotFoundError(
            f"{file}: no config.json; expected an HF checkpoint directory written by save_pretrained"
        )
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{file}: not valid JSON ({err})") from err


class HFDualEncoder(DualEncoder):
    """An HF ``CLIPModel`` (kind ``hf-clip``) or ``VisionTextDualEncoderModel`` (``hf-dual-encoder``).

    Loaded with ``local_files_only=True``; the checkpoint's tokenizer (``AutoTokenizer``) and
    ``preprocessor_config.json`` are used. The text is truncated to the shorter of the
    tokenizer's ``model_max_length`` and the text tower's ``max_position_embeddings``.
    """

    def __init__(
        self,
        path: str | Path,
        kind: str | None = None,
        device: str | torch.device | None = None,
        amp: bool = True,
        batch_size: int = 64,
    ) -> None:
        self.path = Path(path)
        config = read_hf_config(self.path)
        model_type = config.get("model_type")
        detected = HF_MODEL_TYPES.get(str(model_type))
        if detected is None:
            raise ValueError(
                f"{self.path}/config.json: model_type={model_type!r}; expected one of {sorted(HF_MODEL_TYPES)}"
            )
        if kind is not None and kind != detected:
            raise ValueError(
                f"kind={kind!r} but {self.path}/config.json says model_type={model_type!r} (kind {detected!r})"
            )
        self.kind = detected
        cls = CLIPModel if detected == "hf-clip" else VisionTextDualEncoderModel
        hf_logging.disable_progress_bar()  # a per-load "Loading weights" bar adds nothing to a log or a page
        self.model = cls.from_pretrained(str(self.path), local_files_only=True).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        except (OSError, ValueError) as err:
            raise FileNotFoundError(
                f"{self.path}: no usable tokenizer files (tokenizer.json / vocab files): {err}"
            ) from err
        vision_cfg = self.model.config.vision_config
        text_cfg = self.model.config.text_config
        channels = int(getattr(vision_cfg, "num_channels", 3))
        pre = ImagePreprocess.from_pretrained_dir(self.path, channels=channels)
        if pre is None:
            size = int(getattr(vision_cfg, "image_size", 224))
            warnings.warn(
                f"{self.path}: no preprocessor_config.json; using OpenAI CLIP preprocessing at {size} px", stacklevel=2
            )
            pre = ImagePreprocess(resize=("shortest_edge", size), crop=(size, size), channels=channels)
        self.preprocess = pre
        self.max_length = int(
            min(
                getattr(self.tokenizer, "model_max_length", 10**6) or 10**6,
                getattr(text_cfg, "max_position_embeddings", 512),
            )
        )
        self.image_head: nn.Module = self.model.visual_projection
        self.text_head: nn.Module = self.model.text_projection
        self.amp = amp
        self.batch_size = batch_size
        self._processor: BaseImageProcessor | None = None
        self.to(pick_device(device))

    @property
    def modules(self) -> list[nn.Module]:
        return [self.model]

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        keep = (
            ("input_ids", "attention_mask")
            if self.kind == "hf-clip"
            else ("input_ids", "attention_mask", "token_type_ids")
        )
        return {k: v for k, v in enc.items() if k in keep}

    def _image_backbone(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.vision_model(pixel_values=pixel_values.to(self.model.dtype), return_dict=True).pooler_output

    def _text_backbone(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.text_model(**tokens, return_dict=True).pooler_output

    def _preprocess_pil(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images go through the checkpoint's own HF image processor."""
        if self._processor is None:
            if (self.path / "preprocessor_config.json").exists():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._processor = AutoImageProcessor.from_pretrained(str(self.path), local_files_only=True)
            else:
                return super()._preprocess_pil(images)
        channels = self.preprocess.channels
        imgs = [im.convert("RGB" if channels == 3 else "L") for im in images]
        return self._processor(images=imgs, return_tensors="pt")["pixel_values"].float()

    def hf_image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The model's own ``get_image_features`` (projected, not normalised), for checks."""
        with torch.inference_mode():
            out = self.model.get_image_features(pixel_values=pixel_values.to(self.device))
        return (out.pooler_output if hasattr(out, "pooler_output") else out).float().cpu()

    def hf_text_embeds(self, texts: Sequence[str]) -> torch.Tensor:
        """The model's own ``get_text_features`` (projected, not normalised), for checks."""
        tokens = {k: v.to(self.device) for k, v in self.tokenize(texts).items()}
        with torch.inference_mode():
            out = self.model.get_text_features(**tokens)
        return (out.pooler_output if hasattr(out, "pooler_output") else out).float().cpu()
