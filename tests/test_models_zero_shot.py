"""Zero-shot label AUROC: known answers, uncertain / NaN handling, and both head routes agree."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from relink_lib.models import load_dual_encoder
from relink_lib.models.testing import write_tiny_clip
from relink_lib.utility.zero_shot import default_prompts, zero_shot_auroc

LABELS = ["Cardiomegaly", "Edema"]


def brute_auroc(score, y):
    pos, neg = score[y == 1], score[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def identity(d):
    head = torch.nn.Linear(d, d, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(d))
    return head


def test_known_answer_and_uncertain_excluded():
    rng = np.random.default_rng(0)
    n = 60
    y = rng.choice([1.0, 0.0, -1.0, np.nan], size=(n, 2), p=[0.3, 0.4, 0.2, 0.1])
    feats = rng.normal(size=(n, 3)).astype(np.float32)
    feats[:, 0] += 3.0 * (y[:, 0] == 1)  # axis 0 carries label 0
    e = np.eye(3, dtype=np.float32)
    prompt_features = {"Cardiomegaly": (e[[0]], e[[1]]), "Edema": (e[[2]], e[[1]])}
    df = zero_shot_auroc(
        None, feats, y, prompt_features=prompt_features, image_head=identity(3), text_head=identity(3), labels=LABELS
    )
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    for j, label in enumerate(LABELS):
        pos_axis = 0 if j == 0 else 2
        score = unit[:, pos_axis] - unit[:, 1]
        keep = (y[:, j] == 0) | (y[:, j] == 1)
        row = df.set_index("label").loc[label]
        assert row["auroc"] == pytest.approx(brute_auroc(score[keep], y[keep, j]))
        assert row["n_pos"] == (y[:, j] == 1).sum() and row["n_excluded"] == (~keep).sum()
    assert df.set_index("label").loc["Cardiomegaly", "auroc"] > 0.75  # the label is visible on axis 0
    assert df["label"].iloc[-1] == "macro"
    assert df["auroc"].iloc[-1] == pytest.approx(df["auroc"].iloc[:2].mean())


def test_positive_mode_and_undefined_labels():
    feats = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], np.float32)
    y = np.array([[1, 1], [1, 1], [0, -1], [0, np.nan]])
    e = np.eye(2, dtype=np.float32)
    df = zero_shot_auroc(
        None,
        feats,
        y,
        prompt_features={"Cardiomegaly": (e[[0]], e[[1]]), "Edema": (e[[0]], e[[1]])},
        image_head=identity(2),
        text_head=identity(2),
        labels=LABELS,
        mode="positive",
    )
    by = df.set_index("label")["auroc"]
    assert by["Cardiomegaly"] == 1.0 and np.isnan(by["Edema"])  # Edema has no negative image
    assert by["macro"] == 1.0


def test_encoder_route_equals_precomputed_prompts(tmp_path):
    enc = load_dual_encoder(write_tiny_clip(tmp_path / "m", image_size=16, patch_size=4), device="cpu")
    rng = np.random.default_rng(1)
    images = rng.random((30, 16, 16)).astype(np.float32)
    feats = enc.image_features(images)
    y = pd.DataFrame(rng.choice([1.0, 0.0], size=(30, 2)), columns=LABELS)
    got = zero_shot_auroc(enc, feats, y, labels=LABELS)
    prompts = default_prompts(LABELS)
    pf = {lab: (enc.text_features(p).numpy(), enc.text_features(q).numpy()) for lab, (p, q) in prompts.items()}
    want = zero_shot_auroc(
        None, feats, y, prompt_features=pf, image_head=enc.image_head, text_head=enc.text_head, labels=LABELS
    )
    pd.testing.assert_frame_equal(got, want)
    # through other heads (e.g. DP heads): a sign flip of the image head mirrors every AUROC
    flipped = torch.nn.Linear(enc.image_dim, 16, bias=False)
    with torch.no_grad():
        flipped.weight.copy_(-enc.image_head.weight)
    other = zero_shot_auroc(enc, feats, y, labels=LABELS, image_head=flipped)
    np.testing.assert_allclose(other["auroc"].iloc[:2], 1 - got["auroc"].iloc[:2], atol=1e-12)


def test_validation():
    e = np.eye(2, dtype=np.float32)
    kw = dict(
        prompt_features={"Cardiomegaly": (e[[0]], e[[1]]), "Edema": (e[[0]], e[[1]])},
        image_head=identity(2),
        text_head=identity(2),
        labels=LABELS,
    )
    with pytest.raises(ValueError, match="expected shape \\(3, 2\\)"):
        zero_shot_auroc(None, np.zeros((3, 2)), np.zeros((2, 2)), **kw)
    with pytest.raises(ValueError, match="value 2.0"):
        zero_shot_auroc(None, np.zeros((1, 2)), np.array([[2.0, 0.0]]), **kw)
    with pytest.raises(ValueError, match="mode="):
        zero_shot_auroc(None, np.zeros((1, 2)), np.zeros((1, 2)), mode="softmax", **kw)
