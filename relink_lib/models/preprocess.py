"""Image preprocessing that mirrors a checkpoint's own image processor, in torch.

Cohorts hand images over as ``np.ndarray`` float32 ``(n, H, W)`` grayscale in ``[0, 1]``.
Running them through an HF image processor one PIL image at a time is slow and quantises
to 8 bits, so :class:`ImagePreprocess` reads the processor's configuration (resize rule,
resampling filter, centre crop, mean and std) and applies the same steps to a whole batch in
torch. PIL inputs still go through the checkpoint's own processor (see the adapters).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, cast

import numpy as np
import torch
import torch.nn.functional as F

OPENAI_CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)

# PIL resampling codes used in HF image-processor configs -> torch interpolate modes.
_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}

Resize = tuple[Literal["shortest_edge"], int] | tuple[Literal["exact"], tuple[int, int]]
"""An :attr:`ImagePreprocess.resize` rule: ``("shortest_edge", s)`` or ``("exact", (h, w))``."""


@dataclass(frozen=True)
class ImagePreprocess:
    """The preprocessing of one checkpoint.

    ``resize``: ``("shortest_edge", s)`` scales the short side to ``s`` pixels keeping the
    aspect ratio, ``("exact", (h, w))`` resizes to ``h x w``, ``None`` keeps the size.
    ``crop``: centre crop ``(h, w)`` or ``None``. ``mean`` / ``std`` are per output channel,
    in the units of ``[0, 1]`` intensities. ``channels`` is what the vision tower expects
    (grayscale input is repeated to 3 channels, as ``do_convert_rgb`` does).
    """

    resize: Resize | None = ("shortest_edge", 224)
    crop: tuple[int, int] | None = (224, 224)
    resample: str = "bicubic"
    mean: tuple[float, ...] = OPENAI_CLIP_MEAN
    std: tuple[float, ...] = OPENAI_CLIP_STD
    channels: int = 3
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.resample not in _RESAMPLE.values():
            raise ValueError(f"resample={self.resample!r}: expected one of {sorted(_RESAMPLE.values())}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"mean/std: expected {self.channels} values each, got {len(self.mean)} and {len(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std={self.std}: expected positive values")

    @property
    def output_size(self) -> tuple[int, int] | None:
        """``(h, w)`` of the model input when it does not depend on the input size."""
        if self.crop is not None:
            return self.crop
        if self.resize is not None and self.resize[0] == "exact":
            return cast("tuple[int, int]", tuple(self.resize[1]))
        return None

    def describe(self) -> dict[str, Any]:
        """JSON-able description (part of the feature cache key)."""
        out = asdict(self)
        out.pop("extra")
        return out

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any], channels: int = 3) -> "ImagePreprocess":
        """Build from an HF ``preprocessor_config.json`` dictionary (CLIP, ViT, SigLIP style)."""
        resize: Resize | None = None
        if config.get("do_resize", True) and config.get("size") is not None:
            size = config["size"]
            if isinstance(size, (int, float)):
                resize = ("shortest_edge", int(size))
            elif "shortest_edge" in size:
                resize = ("shortest_edge", int(size["shortest_edge"]))
            elif "height" in size and "width" in size:
                resize = ("exact", (int(size["height"]), int(size["width"])))
            else:
                raise ValueError(
                    f"preprocessor config: size={size!r} is not understood; expected shortest_edge or height/width"
                )
        crop = None
        if config.get("do_center_crop", False) and config.get("crop_size") is not None:
            cs = config["crop_size"]
            crop = (int(cs), int(cs)) if isinstance(cs, (int, float)) else (int(cs["height"]), int(cs["width"]))
        resample_code = config.get("resample", 3)
        resample = _RESAMPLE.get(int(resample_code) if not isinstance(resample_code, str) else -1, "bicubic")
        if config.get("do_normalize", True):
            mean = tuple(float(v) for v in _per_channel(config.get("image_mean", OPENAI_CLIP_MEAN), channels))
            std = tuple(float(v) for v in _per_channel(config.get("image_std", OPENAI_CLIP_STD), channels))
        else:
            mean, std = (0.0,) * channels, (1.0,) * channels
        return cls(resize=resize, crop=crop, resample=resample, mean=mean, std=std, channels=channels)

    @classmethod
    def from_pretrained_dir(cls, path: str | Path, channels: int = 3) -> "ImagePreprocess | None":
        """Read ``path/preprocessor_config.json``; ``None`` when the file is absent."""
        file = Path(path) / "preprocessor_config.json"
        if not file.exists():
            return None
        try:
            config = json.loads(file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{file}: not valid JSON ({err})") from err
        return cls.from_hf_config(config, channels=channels)

    def __call__(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Preprocess a batch of grayscale images.

        images: float array ``(n, H, W)`` (or ``(n, C, H, W)``) with intensities in ``[0, 1]``.
        Returns float32 ``(n, channels, h, w)`` on the CPU, normalised with ``mean`` / ``std``.
        """
        x = torch.as_tensor(np.asarray(images, dtype=np.float32) if not isinstance(images, torch.Tensor) else images)
        x = x.to(torch.float32)
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4:
            raise ValueError(f"images: expected shape (n, H, W) or (n, C, H, W), got {tuple(x.shape)}")
        if x.shape[1] not in (1, self.channels):
            raise ValueError(f"images: expected 1 or {self.channels} channels, got {x.shape[1]}")
        h, w = x.shape[-2:]
        if self.resize is not None:
            if self.resize[0] == "shortest_edge":
                s = int(self.resize[1])
                scale = s / min(h, w)
                target: tuple[int, ...] = (
                    (s, max(1, int(round(w * scale)))) if h <= w else (max(1, int(round(h * scale))), s)
                )
            else:
                target = tuple(int(v) for v in self.resize[1])
            if target != (h, w):
                kwargs = {"antialias": True} if self.resample in ("bilinear", "bicubic") else {}
                align = {"align_corners": False} if self.resample in ("bilinear", "bicubic") else {}
                x = F.interpolate(x, size=target, mode=self.resample, **kwargs, **align)
            if self.resample == "bicubic":
                x = x.clamp(0.0, 1.0)  # PIL clips the bicubic overshoot when it writes 8-bit pixels
        if self.crop is not None:
            ch, cw = self.crop
            h, w = x.shape[-2:]
            if ch > h or cw > w:
                x = F.pad(
                    x,
                    (
                        max(0, (cw - w) // 2),
                        max(0, cw - w - (cw - w) // 2),
                        max(0, (ch - h) // 2),
                        max(0, ch - h - (ch - h) // 2),
                    ),
                )
                h, w = x.shape[-2:]
            top, left = int(round((h - ch) / 2.0)), int(round((w - cw) / 2.0))
            x = x[..., top : top + ch, left : left + cw]
        if x.shape[1] == 1 and self.channels != 1:
            x = x.expand(-1, self.channels, -1, -1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        return ((x - mean) / std).contiguous()


def _per_channel(values: float | Sequence[float], channels: int) -> Sequence[float]:
    values = [values] if isinstance(values, (int, float)) else list(values)
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError(f"preprocessor config: expected {channels} mean/std values, got {len(values)}")
    return values


def to_gray_array(images: np.ndarray | torch.Tensor | Sequence[Any]) -> np.ndarray:
    """Validate a batch of images and return float32 ``(n, H, W)`` (or ``(n, C, H, W)``) in [0, 1].

    Accepts a numpy array or torch tensor ``(n, H, W)`` / ``(n, C, H, W)``; values must be in [0, 1].
    """
    arr = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.ndim not in (3, 4):
        raise ValueError(f"images: expected an array (n, H, W) with values in [0, 1], got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(
            f"images: expected float intensities in [0, 1], got dtype {arr.dtype} (divide 8-bit images by 255)"
        )
    arr = arr.astype(np.float32, copy=False)
    if arr.size and (not np.isfinite(arr).all() or arr.min() < -1e-6 or arr.max() > 1 + 1e-6):
        raise ValueError(
            f"images: expected finite values in [0, 1], got range [{np.nanmin(arr):.3g}, {np.nanmax(arr):.3g}]"
        )
    return arr
