"""OpenAI-CLIP (CheXzero) state dicts: an independent re-implementation of OpenAI's CLIP
(written here in the layout of openai/CLIP's model.py) must give the same embeddings as the
adapter, which maps the state dict onto HF CLIPModel."""

from __future__ import annotations

import gzip
import json
from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from relink_lib.models import detect_kind, load_dual_encoder
from relink_lib.models.openai_clip import PRESETS, architecture, bpe_to_hf_files, write_preprocessor_config


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResBlock(nn.Module):
    def __init__(self, d, heads, mask=None):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads)
        self.ln_1 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(
            OrderedDict([("c_fc", nn.Linear(d, 4 * d)), ("gelu", QuickGELU()), ("c_proj", nn.Linear(4 * d, d))])
        )
        self.ln_2 = nn.LayerNorm(d)
        self.mask = mask

    def forward(self, x):
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False, attn_mask=self.mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads, mask=None):
        super().__init__()
        self.resblocks = nn.Sequential(*[ResBlock(width, heads, mask) for _ in range(layers)])

    def forward(self, x):
        return self.resblocks(x)


class Visual(nn.Module):
    def __init__(self, res, patch, width, layers, heads, out):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(width) * width**-0.5)
        self.positional_embedding = nn.Parameter(torch.randn((res // patch) ** 2 + 1, width) * width**-0.5)
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.randn(width, out) * width**-0.5)

    def forward(self, x):
        x = self.conv1(x).flatten(2).permute(0, 2, 1)
        x = torch.cat([self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1]), x], dim=1)
        x = self.ln_pre(x + self.positional_embedding)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class OpenAICLIP(nn.Module):
    def __init__(self, embed=16, res=32, patch=8, vw=64, vl=2, ctx=12, vocab=50, tw=64, tl=2):
        super().__init__()
        self.visual = Visual(res, patch, vw, vl, vw // 64, embed)
        mask = torch.full((ctx, ctx), float("-inf")).triu_(1)
        self.transformer = Transformer(tw, tl, tw // 64, mask)
        self.token_embedding = nn.Embedding(vocab, tw)
        self.positional_embedding = nn.Parameter(torch.randn(ctx, tw) * 0.01)
        self.ln_final = nn.LayerNorm(tw)
        self.text_projection = nn.Parameter(torch.randn(tw, embed) * tw**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(np.log(1 / 0.07), dtype=torch.float32))
        for p in self.parameters():  # non-trivial LayerNorm / bias values
            if p.ndim == 1 and p is not self.logit_scale:
                nn.init.normal_(p, 0.0 if p.shape[0] != tw else 1.0, 0.1)

    def encode_image(self, x):
        return self.visual(x)

    def encode_text(self, text):
        x = self.token_embedding(text) + self.positional_embedding
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), text.argmax(dim=-1)] @ self.text_projection


@pytest.fixture(scope="module")
def chexzero_dir(tmp_path_factory):
    torch.manual_seed(0)
    ref = OpenAICLIP().eval()
    d = tmp_path_factory.mktemp("chexzero")
    torch.save({"module." + k: v for k, v in ref.state_dict().items()}, d / "best_64_5e-05_original_22000_0.864.pt")
    (d / "vocab.json").write_text(json.dumps({f"t{i}": i for i in range(50)}))
    (d / "merges.txt").write_text("#version: 0.2\n")
    return d, ref


def test_architecture_inferred_from_state_dict(chexzero_dir):
    d, ref = chexzero_dir
    sd = ref.state_dict()
    arch = architecture(sd)
    assert arch == {
        "embed_dim": 16,
        "vision_width": 64,
        "patch_size": 8,
        "image_size": 32,
        "vision_layers": 2,
        "vision_heads": 1,
        "context_length": 12,
        "vocab_size": 50,
        "text_width": 64,
        "text_layers": 2,
        "text_heads": 1,
    }
    assert detect_kind(d) == "openai-clip"


def test_embeddings_match_reference_implementation(chexzero_dir):
    d, ref = chexzero_dir
    enc = load_dual_encoder(d, device="cpu")
    assert enc.kind == "openai-clip"
    torch.manual_seed(1)
    pixels = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want_img = F.normalize(ref.encode_image(pixels), dim=-1)
    feats = enc.image_features_from_pixels(pixels)
    torch.testing.assert_close(enc.project_images(feats), want_img, rtol=0, atol=2e-5)
    # tokens as OpenAI pads them: SOT ... EOT (= vocab - 1, the largest id), then zeros
    ids = torch.tensor([[48, 5, 7, 9, 49, 0, 0, 0, 0, 0, 0, 0], [48, 3, 49, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        want_txt = F.normalize(ref.encode_text(ids), dim=-1)
        got = enc.model.text_model(input_ids=ids, attention_mask=(ids > 0) | (torch.arange(12) == 0)).pooler_output
    torch.testing.assert_close(enc.project_reports(got), want_txt, rtol=0, atol=2e-5)
    # the heads are the transposed projection parameters
    torch.testing.assert_close(enc.image_head.weight, ref.visual.proj.detach().T)
    torch.testing.assert_close(enc.text_head.weight, ref.text_projection.detach().T)


def test_preprocessing_presets(chexzero_dir, tmp_path):
    d, _ = chexzero_dir
    enc = load_dual_encoder(d, device="cpu")
    assert enc.preprocess.crop == (32, 32)  # the checkpoint's own resolution with OpenAI's mean / std
    assert enc.preprocess.mean == PRESETS["openai"]["mean"]
    write_preprocessor_config(d, "chexzero")
    enc = load_dual_encoder(d, device="cpu")
    assert enc.preprocess.crop == (224, 224)
    assert enc.preprocess.mean == pytest.approx((101.48761 / 255,) * 3)
    (d / "preprocessor_config.json").unlink()


def test_bpe_file_to_hf_tokenizer(tmp_path):
    from transformers import CLIPTokenizer

    gz = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(gz, "wt") as fh:
        fh.write("#version: 0.2\nc a\nca t</w>\n")
    vocab_file, merges_file = bpe_to_hf_files(gz, tmp_path / "hf")
    vocab = json.loads(vocab_file.read_text())
    assert len(vocab) == 512 + 2 + 2 and vocab["cat</w>"] == 513 and vocab["<|endoftext|>"] == 515
    tok = CLIPTokenizer(str(vocab_file), str(merges_file))
    assert tok("cat")["input_ids"] == [514, 513, 515]


def test_bad_files(tmp_path):
    torch.save({"foo": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not an OpenAI-CLIP state dict"):
        load_dual_encoder(tmp_path)
