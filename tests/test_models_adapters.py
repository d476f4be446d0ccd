"""Adapters: tiny random HF checkpoints load offline and reproduce HF's own features."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from relink_lib.models import detect_kind, load_dual_encoder
from relink_lib.models.preprocess import ImagePreprocess
from relink_lib.models.testing import write_tiny_clip, write_tiny_dual_encoder

TEXTS = ["small left pleural effusion", "no pneumothorax", "moderate cardiomegaly with pulmonary edema and more words"]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("clip"), image_size=32)


@pytest.fixture(scope="module")
def dual_dir(tmp_path_factory):
    return write_tiny_dual_encoder(tmp_path_factory.mktemp("dual"), image_size=32)


def smooth_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = [0.5 + 0.4 * np.sin(2 * np.pi * (a * xx + b * yy) + c) for a, b, c in rng.uniform(0.3, 1.5, (n, 3))]
    return np.clip(np.stack(out), 0, 1).astype(np.float32)


@pytest.mark.parametrize("which", ["clip", "dual"])
def test_embeddings_equal_hf_features(which, clip_dir, dual_dir):
    path = clip_dir if which == "clip" else dual_dir
    enc = load_dual_encoder(path, device="cpu")
    assert enc.kind == ("hf-clip" if which == "clip" else "hf-dual-encoder")
    images = smooth_images(5, 40)
    pixels = enc.preprocess_images(images)
    assert pixels.shape == (5, 3, 32, 32)
    own_img = F.normalize(enc.hf_image_embeds(pixels), dim=-1)
    torch.testing.assert_close(enc.embed_images(images), own_img, rtol=0, atol=1e-6)
    own_txt = F.normalize(enc.hf_text_embeds(TEXTS), dim=-1)
    torch.testing.assert_close(enc.embed_reports(TEXTS), own_txt, rtol=0, atol=1e-6)
    # batching does not change the result
    torch.testing.assert_close(enc.embed_reports(TEXTS, batch_size=1), own_txt, rtol=0, atol=1e-5)
    norms = enc.embed_images(images).norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones(5))


def test_heads_are_the_models_projections(clip_dir):
    enc = load_dual_encoder(clip_dir, device="cpu")
    assert enc.image_head is enc.model.visual_projection
    assert enc.text_head is enc.model.text_projection
    assert isinstance(enc.image_head, torch.nn.Linear) and enc.image_head.bias is None
    images = smooth_images(4, 32, seed=1)
    feats = enc.image_features(images)
    assert feats.shape == (4, enc.image_dim) == (4, 32)
    # head(features) is exactly the model's unnormalised get_image_features
    torch.testing.assert_close(
        enc.image_head(feats), enc.hf_image_embeds(enc.preprocess_images(images)), rtol=0, atol=1e-6
    )
    tfeats = enc.text_features(TEXTS)
    torch.testing.assert_close(enc.text_head(tfeats), enc.hf_text_embeds(TEXTS), rtol=0, atol=1e-6)
    # changing the head changes the embedding: the head really is the mapping that is used
    before = enc.embed_images(images)
    with torch.no_grad():
        enc.image_head.weight.mul_(-1)
    torch.testing.assert_close(enc.embed_images(images), -before, rtol=0, atol=1e-6)


def test_pil_input_uses_the_checkpoints_processor(clip_dir):
    from PIL import Image

    enc = load_dual_encoder(clip_dir, device="cpu")
    images = smooth_images(3, 48, seed=2)
    pil = [Image.fromarray((im * 255).round().astype(np.uint8)) for im in images]
    from_pil = enc.preprocess_images(pil)
    from_array = enc.preprocess_images(images)
    assert from_pil.shape == from_array.shape
    # same recipe, different resampling code paths (8-bit PIL vs float torch): close, not equal
    assert (from_pil - from_array).abs().mean() < 0.03
    assert (from_pil - from_array).abs().max() < 0.25


def test_preprocess_matches_config_by_hand():
    pre = ImagePreprocess.from_hf_config(
        {
            "size": {"shortest_edge": 4},
            "crop_size": {"height": 2, "width": 2},
            "do_center_crop": True,
            "resample": 2,
            "image_mean": [0.5] * 3,
            "image_std": [0.25] * 3,
        }
    )
    img = np.zeros((1, 8, 12), np.float32)
    img[0, :, 6:] = 1.0  # right half bright
    out = pre(img)
    assert out.shape == (1, 3, 2, 2)
    # resized to 4 x 6, crop rows 1-2, cols 2-3: left column dark half, right column bright half
    resized = F.interpolate(
        torch.from_numpy(img)[None], size=(4, 6), mode="bilinear", antialias=True, align_corners=False
    )[0, 0]
    torch.testing.assert_close(out[0, 0], (resized[1:3, 2:4] - 0.5) / 0.25)
    torch.testing.assert_close(out[0, 0], out[0, 2])


def test_input_validation(clip_dir, tmp_path):
    enc = load_dual_encoder(clip_dir, device="cpu")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        enc.image_features(np.full((1, 32, 32), 2.0, np.float32))
    with pytest.raises(ValueError, match="dtype uint8"):
        enc.image_features(np.zeros((1, 32, 32), np.uint8))
    with pytest.raises(TypeError, match="single string"):
        enc.text_features("one report")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dual_encoder(tmp_path / "nope")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="model_type='bert'"):
        detect_kind(tmp_path)
    with pytest.raises(ValueError, match="model_type='clip'"):
        load_dual_encoder(clip_dir, kind="hf-dual-encoder")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="cannot tell the checkpoint kind"):
        detect_kind(empty)


def test_detect_kind(clip_dir, dual_dir, tmp_path):
    assert detect_kind(clip_dir) == "hf-clip"
    assert detect_kind(dual_dir) == "hf-dual-encoder"
    (tmp_path / "open_clip_config.json").write_text("{}")
    assert detect_kind(tmp_path) == "open-clip"
    other = tmp_path / "chexzero"
    other.mkdir()
    torch.save({"visual.proj": torch.zeros(2, 2)}, other / "best.pt")
    assert detect_kind(other) == "openai-clip"


def test_open_clip_missing_extra_names_it(tmp_path):
    import importlib.util

    if importlib.util.find_spec("open_clip") is not None:
        pytest.skip("open_clip is installed here")
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {}}))
    with pytest.raises(ImportError, match=r"pip install relink\[openclip\]"):
        load_dual_encoder(tmp_path)


def test_offline_no_network(clip_dir, monkeypatch):
    """Loading never reaches a hub: with HF offline mode forced it still works."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        enc = load_dual_encoder(clip_dir, device="cpu")
    assert enc.embed_reports(["no pneumothorax"]).shape == (1, 16)
