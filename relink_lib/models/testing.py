"""Tiny random checkpoints written to a directory, for tests and demos (no download needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from transformers import (
    BertConfig,
    CLIPConfig,
    CLIPModel,
    VisionTextDualEncoderConfig,
    VisionTextDualEncoderModel,
    ViTConfig,
)

from ..cohorts.base import Cohort
from ..labels import CHEXPERT_LABELS
from .ladder import image_processor_config
from .tokenizer import build_tokenizer

DEMO_CORPUS: tuple[str, ...] = (
    "no acute cardiopulmonary process",
    "small left pleural effusion",
    "moderate cardiomegaly with pulmonary edema",
    "right lower lobe consolidation concerning for pneumonia",
    "no pneumothorax",
    "stable sternotomy wires",
    "right internal jugular catheter tip in the svc",
    "no focal consolidation pleural effusion or pneumothorax",
)


def write_tiny_clip(
    path: str | Path,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    width: int = 32,
    layers: int = 1,
    heads: int = 2,
    projection_dim: int = 16,
    max_length: int = 32,
    corpus: Sequence[str] = DEMO_CORPUS,
    seed: int = 0,
    mean: float = 0.5,
    std: float = 0.25,
) -> Path:
    """Write a random HF ``CLIPModel`` with its tokenizer and image processor to ``path``."""
    # lazily: without torchvision (an optional extra) resolving this name logs a fallback warning on every import
    from transformers import CLIPImageProcessor

    path = Path(path)
    tok = build_tokenizer(list(corpus) * 2, vocab_size=256, max_length=max_length)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": width,
            "intermediate_size": 2 * width,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "max_position_embeddings": max_length,
            "eos_token_id": tok.eos_token_id,
            "bos_token_id": tok.bos_token_id,
            "pad_token_id": tok.pad_token_id,
        },
        vision_config={
            "hidden_size": width,
            "intermediate_size": 2 * width,
            "num_hidden_layers": layers,
            "num_attention_heads": heads,
            "image_size": image_size,
            "patch_size": patch_size,
        },
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    CLIPImageProcessor(**image_processor_config(image_size, mean, std)).save_pretrained(str(path))
    return path


def write_tiny_dual_encoder(
    path: str | Path,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    width: int = 32,
    projection_dim: int = 16,
    corpus: Sequence[str] = DEMO_CORPUS,
    seed: int = 0,
) -> Path:
    """Write a random HF ``VisionTextDualEncoderModel`` (ViT + BERT towers) with tokenizer and ViT processor."""
    # lazily: without torchvision (an optional extra) resolving this name logs a fallback warning on every import
    from transformers import ViTImageProcessor

    path = Path(path)
    tok = build_tokenizer(list(corpus) * 2, vocab_size=256, max_length=40)
    vit = ViTConfig(
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
    )
    bert = BertConfig(
        vocab_size=len(tok),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=64,
        pad_token_id=tok.pad_token_id,
    )
    config = VisionTextDualEncoderConfig.from_vision_text_configs(vit, bert, projection_dim=projection_dim)
    torch.manual_seed(seed)
    model = VisionTextDualEncoderModel(config=config).eval()
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    ViTImageProcessor(
        size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3, resample=2
    ).save_pretrained(str(path))
    return path


def tiny_cohort(n: int = 48, image_size: int = 16, seed: int = 0, n_val: int = 8, n_test: int = 8) -> Cohort:
    """A small public :class:`~relink_lib.cohorts.base.Cohort` whose reports describe its images.

    Each image is noise plus a bright square at one of 4 positions with one of 3 sizes; the report
    names the position and size, and the labels follow the position. Splits by patient: the last
    ``n_val + n_test`` patients are val and test. Images live in memory (uint8).
    """
    rng = np.random.default_rng(seed)
    places = [("upper left", 0, 0), ("upper right", 0, 1), ("lower left", 1, 0), ("lower right", 1, 1)]
    sizes = [("small", 3), ("moderate", 5), ("large", 7)]
    half = image_size // 2
    images = (rng.random((n, image_size, image_size)) * 60).astype(np.uint8)
    records = []
    for i in range(n):
        p, s = int(rng.integers(4)), int(rng.integers(3))
        (place, r, c), (size_word, size) = places[p], sizes[s]
        top, left = r * half + (half - size) // 2, c * half + (half - size) // 2
        images[i, top : top + size, left : left + size] = 230
        split = "train" if i < n - n_val - n_test else ("val" if i < n - n_test else "test")
        labels = {lab: 0.0 for lab in CHEXPERT_LABELS}
        labels[CHEXPERT_LABELS[p]] = 1.0
        labels[CHEXPERT_LABELS[4 + s]] = -1.0 if s == 1 else 1.0
        labels["Fracture"] = float("nan")
        findings = f"FINDINGS: {size_word} opacity in the {place} zone."
        impression = f"IMPRESSION: {size_word} {place} opacity."
        records.append(
            {
                "patient_id": f"p{i}",
                "study_id": f"s{i}",
                "image_path": f"img/{i}.png",
                "view": "PA",
                "site": "tiny",
                "split": split,
                "findings": findings,
                "impression": impression,
                "text": findings + " " + impression,
                **labels,
            }
        )
    return Cohort(pd.DataFrame.from_records(records), public=True, name="tiny", images=images)
