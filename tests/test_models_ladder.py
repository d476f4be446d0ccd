"""Ladder: captions, tokenizer, training that learns, saved rungs that load like checkpoints,
caching and determinism, external checkpoint lists."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from relink_lib.labels import CHEXPERT_LABELS
from relink_lib.models import load_dual_encoder
from relink_lib.models.ladder import (
    RUNG_SPECS,
    augment_batch,
    caption_from_labels,
    prepare_pixels,
    rung_specs,
    train_rung,
    training_texts,
)
from relink_lib.models.stage import external_rungs, get_ladder
from relink_lib.models.testing import tiny_cohort, write_tiny_clip
from relink_lib.models.tokenizer import build_tokenizer
from relink_lib.profiles import get_profile

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TINY = dict(
    vision_width=32,
    text_width=32,
    vision_layers=1,
    text_layers=1,
    vision_heads=2,
    text_heads=2,
    projection_dim=16,
    patch_size=4,
    batch_size=16,
    max_length=32,
    vocab_size=128,
)


def tiny_params(epochs: float = 0.5, rungs=("captions", "impressions", "full-reports")):
    return get_profile(
        "smoke",
        {
            "ladder": {
                "image_size": 16,
                "epochs_scale": 1.0,
                "rungs": rungs,
                "overrides": {n: {**TINY, "epochs": epochs} for n in rungs},
            }
        },
    )


def test_caption_from_labels():
    row = {label: 0.0 for label in CHEXPERT_LABELS}
    row.update({"Cardiomegaly": 1.0, "Pleural Effusion": -1.0, "Fracture": float("nan")})
    assert caption_from_labels(row) == "cardiomegaly, possible pleural effusion"
    assert caption_from_labels({label: 0.0 for label in CHEXPERT_LABELS}) == "no finding"
    pairs = pd.DataFrame([row])
    assert training_texts(pairs, "captions") == ["cardiomegaly, possible pleural effusion"]
    with pytest.raises(ValueError, match="missing column 'impression'"):
        training_texts(pairs, "impression")


def test_tokenizer_roundtrip_and_truncation(tmp_path):
    from transformers import AutoTokenizer

    tok = build_tokenizer(["left pleural effusion", "right pleural effusion", "no effusion"] * 2, max_length=5)
    ids = tok(["left pleural effusion unseenword"], truncation=True)["input_ids"][0]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and len(ids) == 5
    assert tok.convert_ids_to_tokens(ids[1:4]) == ["left", "pleural", "effusion"]
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert again(["left pleural effusion unseenword"], truncation=True)["input_ids"][0] == ids
    with pytest.raises(ValueError, match="max_length"):
        build_tokenizer(["a"], max_length=2)


def test_rung_specs_from_params():
    specs = rung_specs(get_profile("default"))
    assert [s.name for s in specs] == ["captions", "impressions", "full-reports"]
    assert [s.text for s in specs] == ["captions", "impression", "text"]
    # the top rung has more capacity and more steps
    assert specs[2].vision_width > specs[0].vision_width and specs[2].epochs > specs[0].epochs
    with pytest.raises(ValueError, match="unknown rung 'gpt'"):
        rung_specs({"ladder": {"rungs": ("gpt",)}})
    with pytest.raises(ValueError, match="not divisible"):
        type(RUNG_SPECS["captions"])(name="x", description="", text="text", vision_width=30, vision_heads=4)


def test_augment_batch_translates_and_jitters():
    x = torch.rand(5, 1, 20, 20, generator=torch.Generator().manual_seed(0))
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(augment_batch(x, 0.0, 0.0, gen()), x)
    shifted = augment_batch(x, 0.1, 0.0, gen())  # 2 px on a 20 px side
    assert shifted.shape == x.shape and torch.equal(shifted, augment_batch(x, 0.1, 0.0, gen()))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate")
    for i in range(len(x)):  # brute force: every output is one of the 25 edge-replicated crops
        crops = [padded[i, :, dy : dy + 20, dx : dx + 20] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(shifted[i], c) for c in crops), i
    assert not torch.equal(shifted, x)
    jittered = augment_batch(x, 0.0, 0.2, gen())
    for i in range(len(x)):  # an affine map of the intensities: gain in [0.8, 1.2], offset in [-0.1, 0.1]
        gain, offset = np.polyfit(x[i].flatten().numpy(), jittered[i].flatten().numpy(), 1)
        assert 0.8 <= gain <= 1.2 and -0.1 <= offset <= 0.1, (gain, offset)
    with pytest.raises(ValueError, match="augment_shift"):
        type(RUNG_SPECS["captions"])(name="x", description="", text="text", augment_shift=0.6)


def test_training_learns_and_saves_a_loadable_checkpoint(tmp_path):
    cohort = tiny_cohort(n=48, image_size=16, n_val=8, n_test=8)
    train = np.flatnonzero(cohort.pairs["split"] == "train")
    pixels = prepare_pixels(cohort.load_images, train, 16, progress=False)
    assert pixels.shape == (32, 1, 16, 16) and pixels.dtype == torch.float16
    spec = type(RUNG_SPECS["full-reports"])(
        **{**RUNG_SPECS["full-reports"].__dict__, **TINY, "epochs": 30.0, "lr": 3e-3}
    )
    texts = training_texts(cohort.pairs.iloc[train], "text")
    hist = train_rung(spec, pixels, texts, tmp_path, seed=0, progress=False)
    assert list(hist.columns[:5]) == ["step", "epoch", "loss", "lr", "logit_scale"] and len(hist) == 60
    first, last = hist["loss"].iloc[:5].mean(), hist["loss"].iloc[-5:].mean()
    assert last < 0.7 * first, (first, last)
    enc = load_dual_encoder(tmp_path, device="cpu")
    assert enc.kind == "hf-clip" and enc.preprocess.crop == (16, 16)
    img = enc.embed_images(cohort.load_images(train))
    txt = enc.embed_reports(texts)
    top1 = (img @ txt.T).argmax(1).numpy()
    # reports come in 12 distinct texts: retrieving a report with the image's own text beats chance
    texts = np.array(texts)
    same_text = texts[top1] == texts
    chance = np.mean([(texts == t).mean() for t in texts])  # expected share for a random pick
    assert same_text.mean() > 2.5 * chance, (same_text.mean(), chance)


def test_get_ladder_caches_and_is_deterministic(tmp_path, monkeypatch):
    cohort = tiny_cohort(n=40, image_size=16, n_val=8, n_test=8)
    params = tiny_params(epochs=0.4, rungs=("captions", "full-reports"))
    rungs = get_ladder(params, cohort=cohort, progress=False)
    assert [(r.index, r.name, r.kind) for r in rungs] == [(0, "captions", "hf-clip"), (1, "full-reports", "hf-clip")]
    for r in rungs:
        assert (r.path / "config.json").exists() and (r.path / "tokenizer.json").exists()
        assert (r.path / "preprocessor_config.json").exists() and len(r.history) >= 2
    w0 = load_dual_encoder(rungs[1].path, device="cpu").model.visual_projection.weight.clone()
    # hit: no training is called again
    import relink_lib.models.stage as stage_mod

    monkeypatch.setattr(stage_mod, "train_rung", lambda *a, **k: pytest.fail("retrained on a cache hit"))
    again = get_ladder(params, cohort=cohort, progress=False)
    assert [r.path for r in again] == [r.path for r in rungs]
    monkeypatch.undo()
    # same seed in a fresh cache: identical weights; another seed: another cache entry
    monkeypatch.setenv("RELINK_CACHE", str(tmp_path / "fresh"))
    fresh = get_ladder(params, cohort=cohort, progress=False)
    torch.testing.assert_close(
        load_dual_encoder(fresh[1].path, device="cpu").model.visual_projection.weight, w0, rtol=0, atol=0
    )
    other = get_ladder({**params, "seed": 1}, cohort=cohort, progress=False)
    assert other[0].path != fresh[0].path


def test_external_rungs(tmp_path):
    a = write_tiny_clip(tmp_path / "a")
    listing = [{"name": "general", "kind": "hf-clip", "path": str(a)}, {"name": "auto", "path": str(a)}]
    rungs = external_rungs(listing)
    assert [(r.index, r.name, r.kind) for r in rungs] == [(0, "general", "hf-clip"), (1, "auto", "hf-clip")]
    file = tmp_path / "models.json"
    file.write_text(json.dumps(listing))
    params = get_profile("paper", {"data": {"models": str(file)}})
    assert [r.name for r in get_ladder(params)] == ["general", "auto"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        external_rungs([{"name": "x", "path": str(tmp_path / "missing")}])
    with pytest.raises(ValueError, match="look like 'hf-clip'"):
        external_rungs([{"name": "x", "kind": "open-clip", "path": str(a)}])
    with pytest.raises(ValueError, match="missing path"):
        external_rungs([{"name": "x"}])
    with pytest.raises(ValueError, match="MODELS"):
        external_rungs(None)


def test_rungs_trained_side_by_side_are_the_rungs_trained_one_after_another(tmp_path, monkeypatch):
    """The parallel path (one spawned process per rung) caches the very same weights as the sequential one."""
    import relink_lib.models.stage as stage_mod

    cohort = tiny_cohort(n=40, image_size=16, n_val=8, n_test=8)
    params = tiny_params(epochs=0.4, rungs=("captions", "impressions", "full-reports"))
    assert stage_mod.parallel_rung_workers(3, 1) == min(3, len(__import__("os").sched_getaffinity(0)))
    assert stage_mod.parallel_rung_workers(3, None) == 1 and stage_mod.parallel_rung_workers(1, 1) == 1
    assert stage_mod.parallel_rung_workers(3, 1, n_train=32) == 1  # a tiny split trains in this process
    monkeypatch.setenv("RELINK_CACHE", str(tmp_path / "parallel"))
    monkeypatch.setattr(stage_mod, "parallel_rung_workers", lambda n, threads, n_train: 2)
    side_by_side = get_ladder(params, cohort=cohort, progress=False)
    monkeypatch.setenv("RELINK_CACHE", str(tmp_path / "sequential"))
    monkeypatch.setattr(stage_mod, "parallel_rung_workers", lambda n, threads, n_train: 1)
    one_by_one = get_ladder(params, cohort=cohort, progress=False)
    for a, b in zip(side_by_side, one_by_one):
        assert a.path != b.path
        wa = load_dual_encoder(a.path, device="cpu").model.state_dict()
        wb = load_dual_encoder(b.path, device="cpu").model.state_dict()
        assert wa.keys() == wb.keys()
        for name in wa:
            torch.testing.assert_close(wa[name], wb[name], rtol=0, atol=0, msg=f"{a.name}: {name}")
        pd.testing.assert_frame_equal(a.history, b.history)
