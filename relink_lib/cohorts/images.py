"""Reading image files: grayscale float32 in [0, 1], optional square resize; errors name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError


class ImageReadError(OSError):
    """An image file is missing, unreadable or corrupt; the message names the file."""


def read_image(path: str | Path, image_size: int | None = None) -> np.ndarray:
    """Read ``path`` as a grayscale float32 array ``(H, W)`` in ``[0, 1]``.

    With ``image_size`` the image is centre-cropped to a square and resized (bilinear) to
    ``(image_size, image_size)`` pixels. 16-bit images are scaled by 65535, 8-bit by 255.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: image file not found")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.float32) / 65535.0
                img_f = Image.fromarray(arr)
            else:
                img_f = img.convert("L")
                arr = None
            if image_size is not None:
                w, h = img_f.size
                s = min(w, h)
                left, top = (w - s) // 2, (h - s) // 2
                img_f = img_f.crop((left, top, left + s, top + s)).resize(
                    (image_size, image_size), Image.Resampling.BILINEAR
                )
                arr = None
            if arr is None:
                arr = np.asarray(img_f, dtype=np.float32)
                if img_f.mode == "L":
                    arr = arr / 255.0
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from exc
    if arr.ndim != 2:
        raise ImageReadError(f"{path}: expected a 2-D grayscale image, got shape {arr.shape}")
    return np.clip(arr, 0.0, 1.0).astype(np.float32, copy=False)


def write_jpeg(path: str | Path, image: np.ndarray, quality: int = 95) -> None:
    """Write a float image in ``[0, 1]`` (or uint8) as an 8-bit grayscale JPEG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = image if image.dtype == np.uint8 else to_uint8(image)
    Image.fromarray(arr).save(path, format="JPEG", quality=quality)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float ``[0, 1]`` -> uint8 ``[0, 255]`` (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
