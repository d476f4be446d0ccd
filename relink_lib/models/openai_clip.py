"""Adapter for OpenAI-CLIP-format checkpoints (CheXzero), mapped onto HF ``CLIPModel``.

CheXzero ships ``torch.save(model.state_dict())`` of OpenAI's CLIP (ViT-B/32). The architecture is
reconstructed from the state dict's shapes exactly as OpenAI's ``build_model`` does (widths,
layers, patch size, context length; heads = width / 64 unless ``openai_clip_config.json`` in the
directory says ``{"vision_heads": h, "text_heads": h}``), the weights are renamed onto an HF
``CLIPModel`` (QuickGELU, LayerNorm eps 1e-5, EOT pooling) and the projection parameters
``visual.proj`` ``(width, d)`` and ``text_projection`` ``(width, d)`` become the bias-free
``visual_projection`` / ``text_projection`` Linear heads (transposed).

Tokenizer: OpenAI's BPE, read from the directory: HF tokenizer files (``tokenizer.json`` or
``vocab.json`` + ``merges.txt``) or OpenAI's ``bpe_simple_vocab_16e6.txt.gz``; context 77.
Preprocessing: ``preprocessor_config.json`` when present, else :data:`PRESETS` ``["openai"]``;
CheXzero's own (mean 101.48761 / 255, std 83.43944 / 255, bicubic resize to 224) is
``preset="chexzero"`` (see :func:`write_preprocessor_config`).
"""

from __future__ import annotations

import gzip
import json
import re
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from transformers import AutoTokenizer, CLIPConfig, CLIPModel, CLIPTokenizer, PreTrainedTokenizerBase

from .base import DualEncoder, pick_device
from .preprocess import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ImagePreprocess

PRESETS: dict[str, dict[str, Any]] = {
    "openai": {"size": 224, "mean": OPENAI_CLIP_MEAN, "std": OPENAI_CLIP_STD, "resample": "bicubic"},
    # CheXzero: transforms.Normalize((101.48761,) * 3, (83.43944,) * 3) on 0-255 pixels, Resize(224, BICUBIC)
    "chexzero": {"size": 224, "mean": (101.48761 / 255,) * 3, "std": (83.43944 / 255,) * 3, "resample": "bicubic"},
}


def load_state_dict(file: str | Path) -> dict[str, torch.Tensor]:
    """Read an OpenAI-CLIP state dict from ``file`` (plain ``torch.save`` or a TorchScript archive).

    Unwraps ``{"state_dict": ...}`` / ``{"model": ...}`` and strips ``module.`` prefixes.
    """
    file = Path(file)
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # TorchScript archives (OpenAI's own ViT-B-32.pt) are not pickles
        try:
            obj = torch.jit.load(str(file), map_location="cpu").state_dict()
        except Exception:
            raise ValueError(f"{file}: not a readable state dict ({err})") from err
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise ValueError(
            f"{file}: expected a state dict (a mapping of parameter names to tensors), got {type(obj).__name__}"
        )
    out = {re.sub(r"^module\.", "", k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    missing = [
        k for k in ("visual.proj", "text_projection", "token_embedding.weight", "positional_embedding") if k not in out
    ]
    if missing:
        if "visual.attnpool.c_proj.weight" in out:
            raise ValueError(f"{file}: a ResNet (ModifiedResNet) CLIP; only ViT CLIP checkpoints are supported")
        raise ValueError(f"{file}: not an OpenAI-CLIP state dict; missing {missing}")
    return out


def _count_layers(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({int(m.group(1)) for k in sd for m in [pat.match(k)] if m})


def architecture(sd: Mapping[str, torch.Tensor], overrides: Mapping[str, Any] | None = None) -> dict[str, int]:
    """The CLIP hyper-parameters implied by a state dict (as OpenAI's ``build_model`` infers them)."""
    vision_width = sd["visual.conv1.weight"].shape[0]
    patch = sd["visual.conv1.weight"].shape[-1]
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = sd["ln_final.weight"].shape[0]
    arch = {
        "embed_dim": sd["text_projection"].shape[1],
        "vision_width": vision_width,
        "patch_size": patch,
        "image_size": patch * grid,
        "vision_layers": _count_layers(sd, "visual.transformer.resblocks."),
        "vision_heads": max(1, vision_width // 64),
        "context_length": sd["positional_embedding"].shape[0],
        "vocab_size": sd["token_embedding.weight"].shape[0],
        "text_width": text_width,
        "text_layers": _count_layers(sd, "transformer.resblocks."),
        "text_heads": max(1, text_width // 64),
    }
    arch.update({k: int(v) for k, v in (overrides or {}).items() if k in arch})
    return arch


def to_hf_state_dict(sd: Mapping[str, torch.Tensor], arch: Mapping[str, int]) -> dict[str, torch.Tensor]:
    """Rename (and split / transpose) OpenAI-CLIP parameters to HF ``CLIPModel`` names."""
    out: dict[str, torch.Tensor] = {}

    def block(src: str, dst: str, n: int) -> None:
        for i in range(n):
            s, d = f"{src}{i}.", f"{dst}{i}."
            q, k, v = sd[s + "attn.in_proj_weight"].chunk(3)
            qb, kb, vb = sd[s + "attn.in_proj_bias"].chunk(3)
            out.update(
                {
                    d + "self_attn.q_proj.weight": q,
                    d + "self_attn.k_proj.weight": k,
                    d + "self_attn.v_proj.weight": v,
                    d + "self_attn.q_proj.bias": qb,
                    d + "self_attn.k_proj.bias": kb,
                    d + "self_attn.v_proj.bias": vb,
                    d + "self_attn.out_proj.weight": sd[s + "attn.out_proj.weight"],
                    d + "self_attn.out_proj.bias": sd[s + "attn.out_proj.bias"],
                    d + "layer_norm1.weight": sd[s + "ln_1.weight"],
                    d + "layer_norm1.bias": sd[s + "ln_1.bias"],
                    d + "layer_norm2.weight": sd[s + "ln_2.weight"],
                    d + "layer_norm2.bias": sd[s + "ln_2.bias"],
                    d + "mlp.fc1.weight": sd[s + "mlp.c_fc.weight"],
                    d + "mlp.fc1.bias": sd[s + "mlp.c_fc.bias"],
                    d + "mlp.fc2.weight": sd[s + "mlp.c_proj.weight"],
                    d + "mlp.fc2.bias": sd[s + "mlp.c_proj.bias"],
                }
            )

    block("visual.transformer.resblocks.", "vision_model.encoder.layers.", arch["vision_layers"])
    block("transformer.resblocks.", "text_model.encoder.layers.", arch["text_layers"])
    out.update(
        {
            "vision_model.embeddings.class_embedding": sd["visual.class_embedding"],
            "vision_model.embeddings.patch_embedding.weight": sd["visual.conv1.weight"],
            "vision_model.embeddings.position_embedding.weight": sd["visual.positional_embedding"],
            "vision_model.pre_layrnorm.weight": sd["visual.ln_pre.weight"],
            "vision_model.pre_layrnorm.bias": sd["visual.ln_pre.bias"],
            "vision_model.post_layernorm.weight": sd["visual.ln_post.weight"],
            "vision_model.post_layernorm.bias": sd["visual.ln_post.bias"],
            "visual_projection.weight": sd["visual.proj"].T.contiguous(),
            "text_model.embeddings.token_embedding.weight": sd["token_embedding.weight"],
            "text_model.embeddings.position_embedding.weight": sd["positional_embedding"],
            "text_model.final_layer_norm.weight": sd["ln_final.weight"],
            "text_model.final_layer_norm.bias": sd["ln_final.bias"],
            "text_projection.weight": sd["text_projection"].T.contiguous(),
            "logit_scale": sd.get("logit_scale", torch.tensor(2.6592)).reshape(()),
        }
    )
    return {k: v.float() for k, v in out.items()}


def build_hf_clip(sd: Mapping[str, torch.Tensor], overrides: Mapping[str, Any] | None = None) -> CLIPModel:
    """An HF ``CLIPModel`` holding the weights of an OpenAI-CLIP state dict (strict load)."""
    arch = architecture(sd, overrides)
    config = CLIPConfig(
        text_config={
            "vocab_size": arch["vocab_size"],
            "hidden_size": arch["text_width"],
            "intermediate_size": 4 * arch["text_width"],
            "num_hidden_layers": arch["text_layers"],
            "num_attention_heads": arch["text_heads"],
            "max_position_embeddings": arch["context_length"],
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
            "eos_token_id": arch["vocab_size"] - 1,
            "bos_token_id": arch["vocab_size"] - 2,
            "pad_token_id": 0,
        },
        vision_config={
            "hidden_size": arch["vision_width"],
            "intermediate_size": 4 * arch["vision_width"],
            "num_hidden_layers": arch["vision_layers"],
            "num_attention_heads": arch["vision_heads"],
            "image_size": arch["image_size"],
            "patch_size": arch["patch_size"],
            "hidden_act": "quick_gelu",
            "layer_norm_eps": 1e-5,
        },
        projection_dim=arch["embed_dim"],
    )
    model = CLIPModel(config)
    hf_sd = to_hf_state_dict(sd, arch)
    result = model.load_state_dict(hf_sd, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"OpenAI-CLIP -> HF mapping incomplete: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    return model.eval()


def bpe_to_hf_files(bpe_gz: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Write HF ``vocab.json`` / ``merges.txt`` equal to OpenAI's ``SimpleTokenizer`` from its BPE file."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    byte_chars = [chr(c) for c in cs]
    merges = gzip.open(bpe_gz).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    pairs = [tuple(m.split()) for m in merges if m.strip()]
    vocab = (
        byte_chars
        + [c + "</w>" for c in byte_chars]
        + ["".join(p) for p in pairs]
        + ["<|startoftext|>", "<|endoftext|>"]
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(p) for p in pairs) + "\n")
    return out_dir / "vocab.json", out_dir / "merges.txt"


def write_preprocessor_config(path: str | Path, preset: str = "chexzero") -> Path:
    """Write ``preprocessor_config.json`` for a :data:`PRESETS` entry into a checkpoint directory."""
    if preset not in PRESETS:
        raise ValueError(f"preset={preset!r}: expected one of {sorted(PRESETS)}")
    p = PRESETS[preset]
    cfg = {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": p["size"]},
        "do_center_crop": True,
        "crop_size": {"height": p["size"], "width": p["size"]},
        "resample": 3,
        "do_normalize": True,
        "image_mean": list(p["mean"]),
        "image_std": list(p["std"]),
        "do_convert_rgb": True,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
    }
    file = Path(path) / "preprocessor_config.json"
    file.write_text(json.dumps(cfg, indent=1))
    return file


class OpenAIClipDualEncoder(DualEncoder):
    """An OpenAI-CLIP-format checkpoint (kind ``openai-clip``), e.g. CheXzero, on an HF ``CLIPModel``."""

    kind = "openai-clip"

    def __init__(
        self,
        path: str | Path,
        device: str | torch.device | None = None,
        amp: bool = True,
        batch_size: int = 64,
        preset: str | None = None,
    ) -> None:

        path = Path(path)
        files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.suffix in (".pt", ".pth", ".ckpt"))
        if len(files) != 1:
            raise ValueError(
                f"{path}: expected exactly one *.pt / *.pth / *.ckpt state dict, found {[f.name for f in files]}"
            )
        self.path = path
        directory = path if path.is_dir() else path.parent
        overrides_file = directory / "openai_clip_config.json"
        overrides = json.loads(overrides_file.read_text()) if overrides_file.is_file() else None
        sd = load_state_dict(files[0])
        self.arch = architecture(sd, overrides)
        self.model = build_hf_clip(sd, overrides)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.tokenizer = self._load_tokenizer(directory)
        self.max_length = self.arch["context_length"]
        pre = None if preset is not None else ImagePreprocess.from_pretrained_dir(directory)
        if pre is None:
            spec = PRESETS[preset or "openai"]
            size = self.arch["image_size"] if preset is None else spec["size"]
            pre = ImagePreprocess(
                resize=("shortest_edge", size),
                crop=(size, size),
                resample=spec["resample"],
                mean=tuple(spec["mean"]),
                std=tuple(spec["std"]),
            )
        self.preprocess = pre
        self.image_head = self.model.visual_projection
        self.text_head = self.model.text_projection
        self.amp = amp
        self.batch_size = batch_size
        self.to(pick_device(device))

    @staticmethod
    def _load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
        if (directory / "tokenizer.json").exists() or (directory / "tokenizer_config.json").exists():
            return AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        if (directory / "vocab.json").exists() and (directory / "merges.txt").exists():
            return CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"))
        gz = sorted(directory.glob("bpe_simple_vocab*.txt.gz"))
        if gz:
            tmp = Path(tempfile.mkdtemp(prefix="relink-bpe-"))
            vocab, merges = bpe_to_hf_files(gz[0], tmp)
            return CLIPTokenizer(str(vocab), str(merges))
        raise FileNotFoundError(
            f"{directory}: no tokenizer; put OpenAI's bpe_simple_vocab_16e6.txt.gz (from the CLIP repository) "
            f"or HF CLIP tokenizer files (vocab.json + merges.txt) next to the checkpoint"
        )

    @property
    def modules(self) -> list[nn.Module]:
        return [self.model]

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def _image_backbone(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model.vision_model(pixel_values=pixel_values, return_dict=True).pooler_output

    def _text_backbone(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.text_model(**tokens, return_dict=True).pooler_output
