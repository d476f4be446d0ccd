"""The dual-encoder interface every adapter implements.

A dual encoder is split into frozen backbones, which map an image or a report to a
pre-projection feature vector, and two projection heads (torch modules) that map those
features to the joint embedding space::

    embed_images(x)  == normalize(image_head(image_features(x)))
    embed_reports(t) == normalize(text_head(text_features(t)))

The DP chapter re-trains only the heads on cached features, so this split is the contract.
"""

from __future__ import annotations

import abc
import contextlib
from pathlib import Path
from typing import Any, Iterator, Sequence, SupportsInt, Union, cast

import numpy as np
import torch
from PIL import Image
from torch import nn

from .preprocess import ImagePreprocess, to_gray_array

ImageBatch = Union[np.ndarray, torch.Tensor, Sequence[Image.Image]]
"""Images an encoder takes: float ``(n, H, W)`` grayscale in [0, 1] (``Cohort.load_images``), or PIL images."""


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` intra-op CPU threads (``None``: leave torch's setting).

    On a shared machine one thread per process avoids OpenMP oversubscription, which made a
    training step of the ladder an order of magnitude slower in our measurements.
    """
    if n is None:
        yield
        return
    if int(n) < 1:
        raise ValueError(f"threads={n}: expected a positive integer or None")
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def l2_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Rows divided by their L2 norm (as HF CLIP does: ``x / ||x||``)."""
    return x / x.norm(p=2, dim=-1, keepdim=True).clamp_min(eps)


class DualEncoder(abc.ABC):
    """A vision-language dual encoder with separable projection heads.

    Subclasses set ``kind``, ``path``, ``image_head``, ``text_head``, ``preprocess`` and
    implement :meth:`_image_backbone`, :meth:`_text_backbone` and :meth:`tokenize`.
    All public methods run in inference mode and return float32 CPU tensors.

    ``amp``: on CUDA, run the backbones under autocast (bfloat16 when supported, else
    float16); the heads and the normalisation always run in float32.
    """

    kind: str = "abstract"
    path: Path
    image_head: nn.Module
    text_head: nn.Module
    preprocess: ImagePreprocess
    device: torch.device
    amp: bool = True
    batch_size: int = 64

    # --- to implement -------------------------------------------------------------------
    @abc.abstractmethod
    def _image_backbone(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pre-projection image features ``(n, d_img)`` from preprocessed pixels on ``device``."""

    @abc.abstractmethod
    def _text_backbone(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pre-projection text features ``(n, d_txt)`` from tokenizer output on ``device``."""

    @abc.abstractmethod
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenize with the checkpoint's own tokenizer (padding, truncation to its context)."""

    def _preprocess_pil(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """PIL images -> pixel tensor; the default converts to grayscale and uses :attr:`preprocess`."""
        arr = np.stack([np.asarray(im.convert("L"), dtype=np.float32) / 255.0 for im in images])
        return self.preprocess(arr)

    # --- shared -------------------------------------------------------------------------
    @property
    def modules(self) -> list[nn.Module]:
        """The torch modules that make up the model (for ``.to(device)`` / ``.eval()``)."""
        return [self.image_head, self.text_head]

    def to(self, device: str | torch.device) -> "DualEncoder":
        """Move the model (backbones and heads) to ``device``."""
        self.device = torch.device(device)
        for module in self.modules:
            module.to(self.device)
        return self

    @property
    def image_dim(self) -> int:
        """Width of the pre-projection image features."""
        return int(_linear_in(self.image_head))

    @property
    def text_dim(self) -> int:
        """Width of the pre-projection text features."""
        return int(_linear_in(self.text_head))

    def preprocess_images(self, images: ImageBatch) -> torch.Tensor:
        """Images -> pixel tensor ``(n, C, h, w)`` float32 on the CPU.

        images: ``np.ndarray`` float32 ``(n, H, W)`` grayscale in [0, 1] (as ``Cohort.load_images``
        returns) or a list of PIL images (these go through the checkpoint's own processor).
        """
        if isinstance(images, (list, tuple)) and images and hasattr(images[0], "convert"):
            return self._preprocess_pil(images)
        return self.preprocess(to_gray_array(images))

    @contextlib.contextmanager
    def _autocast(self) -> Iterator[None]:
        if self.amp and self.device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            with torch.autocast("cuda", dtype=dtype):
                yield
        else:
            yield

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            return x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device)

    def _batches(self, n: int, batch_size: int | None) -> Iterator[slice]:
        bs = int(batch_size or self.batch_size)
        if bs < 1:
            raise ValueError(f"batch_size={batch_size}: expected a positive integer")
        for start in range(0, n, bs):
            yield slice(start, min(n, start + bs))

    @torch.inference_mode()
    def image_features_from_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pre-projection features ``(n, d_img)`` float32 (CPU) for preprocessed pixels."""
        with self._autocast():
            out = self._image_backbone(self._to_device(pixel_values))
        return out.float().cpu()

    @torch.inference_mode()
    def image_features(self, images: ImageBatch, batch_size: int | None = None) -> torch.Tensor:
        """Pre-projection image features ``(n, d_img)`` float32 on the CPU."""
        pixels = self.preprocess_images(images)
        if len(pixels) == 0:
            return torch.zeros(0, self.image_dim)
        return torch.cat([self.image_features_from_pixels(pixels[s]) for s in self._batches(len(pixels), batch_size)])

    @torch.inference_mode()
    def text_features(self, texts: Sequence[str], batch_size: int | None = None) -> torch.Tensor:
        """Pre-projection report features ``(n, d_txt)`` float32 on the CPU."""
        texts = _check_texts(texts)
        if not texts:
            return torch.zeros(0, self.text_dim)
        out = []
        for s in self._batches(len(texts), batch_size):
            tokens = {k: self._to_device(v) for k, v in self.tokenize(texts[s]).items()}
            with self._autocast():
                out.append(self._text_backbone(tokens).float().cpu())
        return torch.cat(out)

    @torch.inference_mode()
    def project_images(self, features: torch.Tensor) -> torch.Tensor:
        """``normalize(image_head(features))`` in float32 on the CPU."""
        return _project(self.image_head, features, self.device)

    @torch.inference_mode()
    def project_reports(self, features: torch.Tensor) -> torch.Tensor:
        """``normalize(text_head(features))`` in float32 on the CPU."""
        return _project(self.text_head, features, self.device)

    def embed_images(self, images: ImageBatch, batch_size: int | None = None) -> torch.Tensor:
        """L2-normalised image embeddings ``(n, d)``, equal to the model's own image features."""
        return self.project_images(self.image_features(images, batch_size))

    def embed_reports(self, texts: Sequence[str], batch_size: int | None = None) -> torch.Tensor:
        """L2-normalised report embeddings ``(n, d)``, equal to the model's own text features."""
        return self.project_reports(self.text_features(texts, batch_size))

    def describe(self) -> dict[str, Any]:
        """What identifies this model's features: kind, preprocessing, dims."""
        return {
            "kind": self.kind,
            "preprocess": self.preprocess.describe(),
            "image_dim": self.image_dim,
            "text_dim": self.text_dim,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kind={self.kind!r}, path={str(getattr(self, 'path', ''))!r}, "
            f"image_dim={self.image_dim}, text_dim={self.text_dim})"
        )


def _project(head: nn.Module, features: torch.Tensor, device: torch.device) -> torch.Tensor:
    features = torch.as_tensor(features, dtype=torch.float32)
    param = next(iter(head.parameters()), None)
    dev = param.device if param is not None else device
    return l2_normalize(head(features.to(dev)).float()).cpu()


def _linear_in(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.in_features
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            return sub.in_features
    if hasattr(module, "in_features"):
        return int(cast("SupportsInt", module.in_features))
    raise TypeError(f"cannot infer the input width of head {type(module).__name__}")


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("texts: expected a sequence of strings, got a single string (wrap it in a list)")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}]: expected str, got {type(t).__name__}")
    return out


def linear_from_proj(proj: torch.Tensor) -> nn.Linear:
    """A bias-free ``nn.Linear`` equal to ``x @ proj`` for an ``(in, out)`` matrix (OpenAI / open_clip layout)."""
    proj = torch.as_tensor(proj).detach()
    if proj.ndim != 2:
        raise ValueError(f"proj: expected a 2-D (in, out) matrix, got shape {tuple(proj.shape)}")
    linear = nn.Linear(
        proj.shape[0], proj.shape[1], bias=False, dtype=proj.dtype if proj.is_floating_point() else torch.float32
    )
    with torch.no_grad():
        linear.weight.copy_(proj.T)
    return linear
