"""Feature-extraction throughput of the adapter against its floor.

Floor: the bare HF vision tower on already-preprocessed pixel tensors (what any extraction must
pay). Peer measurements: ``DualEncoder.image_features`` on raw (n, H, W) arrays (adds the batched
torch preprocessing), and the cached engine ``extract_features`` end to end (adds image loading,
text features and chunk writes). Reports images/s and the ratio to the floor, on CPU (and CUDA
when present). Writes ``benchmarks/results/bench_features.json`` and ``docs/bench_features.md``.

Usage: ``python benchmarks/bench_features.py [--n 512] [--repeats 3]``. Timings on a shared
machine are noisy: the median of ``--repeats`` runs is reported.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from relink_lib.models import load_dual_encoder  # noqa: E402
from relink_lib.models.testing import write_tiny_clip  # noqa: E402


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(n: int, repeats: int, device: str, image_size: int = 64, raw_size: int = 128) -> list[dict]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-features-"))
    path = write_tiny_clip(tmp / "model", image_size=image_size, patch_size=8, width=96, layers=2, heads=3, projection_dim=96)
    enc = load_dual_encoder(path, device=device, batch_size=256)
    rng = np.random.default_rng(0)
    raw = rng.random((n, raw_size, raw_size)).astype(np.float32)
    pixels = enc.preprocess_images(raw)
    model = enc.model

    def floor() -> None:
        with torch.inference_mode():
            for s in range(0, n, 256):
                model.vision_model(pixel_values=pixels[s:s + 256].to(enc.device)).pooler_output.cpu()

    def adapter() -> None:
        enc.image_features(raw)

    rows = []
    t_floor = _median_time(floor, repeats)
    for name, fn in (("floor: HF vision tower on preprocessed tensors", floor),
                     ("DualEncoder.image_features on raw arrays", adapter)):
        t = t_floor if fn is floor else _median_time(fn, repeats)
        rows.append({"device": device, "what": name, "n_images": n, "seconds": round(t, 4),
                     "images_per_s": round(n / t, 1), "ratio_to_floor": round(t / t_floor, 3)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="CPU intra-op threads (1 avoids oversubscription on shared machines)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = [r for d in devices for r in run(args.n, args.repeats, d)]
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "note": "shared machine; median of repeats; model: CLIP ViT width 96, 2 layers, 64 px input, 128 px raw images"}
    out = ROOT / "benchmarks" / "results" / "bench_features.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "meta": meta}, indent=1) + "\n")
    lines = ["# Feature extraction throughput", "", f"`python benchmarks/bench_features.py` ({meta['note']}; "
             f"torch {meta['torch']}, {meta['threads']} threads; GPU: {meta['gpu'] or 'none available'}).", "",
             "| device | what | images | images/s | time / floor |", "|---|---|---|---|---|"]
    lines += [f"| {r['device']} | {r['what']} | {r['n_images']} | {r['images_per_s']} | {r['ratio_to_floor']} |" for r in rows]
    (ROOT / "docs" / "bench_features.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
