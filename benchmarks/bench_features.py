"""Feature-extraction throughput of the adapter against its floor.

Floor: the bare HF vision tower on already-preprocessed pixel tensors (what any extraction must
pay). Peer measurements: ``DualEncoder.image_features`` on raw (n, H, W) arrays (adds the batched
torch preprocessing), and the cached engine ``extract_features`` end to end (adds image loading,
text features and chunk writes). Reports images/s and the ratio to the floor, on CPU (and CUDA
when present). Writes ``benchmarks/results/bench_features.json`` and ``docs/bench_features.md``.

Usage: ``python benchmarks/bench_features.py [--n 512] [--repeats 3]``. Timings on a shared
machine are noisy: the median of ``--repeats`` runs is reported.

``--shards N --profile P`` instead times the command-line workflow of ``book/cluster.md`` on an
empty cache: N concurrent ``python -m relink_lib features --shard K/N`` processes (each builds or
waits for the cohort and ladder, then extracts its chunks of every rung and split), then
``--merge`` and ``--status``. Writes ``benchmarks/results/features_shards_<P>.json``; both tables
of ``docs/bench_features.md`` are regenerated from the JSON files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
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
    path = write_tiny_clip(
        tmp / "model", image_size=image_size, patch_size=8, width=96, layers=2, heads=3, projection_dim=96
    )
    enc = load_dual_encoder(path, device=device, batch_size=256)
    rng = np.random.default_rng(0)
    raw = rng.random((n, raw_size, raw_size)).astype(np.float32)
    pixels = enc.preprocess_images(raw)
    model = enc.model

    def floor() -> None:
        with torch.inference_mode():
            for s in range(0, n, 256):
                model.vision_model(pixel_values=pixels[s : s + 256].to(enc.device)).pooler_output.cpu()

    def adapter() -> None:
        enc.image_features(raw)

    rows = []
    t_floor = _median_time(floor, repeats)
    for name, fn in (
        ("floor: HF vision tower on preprocessed tensors", floor),
        ("DualEncoder.image_features on raw arrays", adapter),
    ):
        t = t_floor if fn is floor else _median_time(fn, repeats)
        rows.append(
            {
                "device": device,
                "what": name,
                "n_images": n,
                "seconds": round(t, 4),
                "images_per_s": round(n / t, 1),
                "ratio_to_floor": round(t / t_floor, 3),
            }
        )
    return rows


def run_shards(profile: str, n_shards: int, cache: Path) -> dict:
    """Time N concurrent shard processes, then ``--merge`` and ``--status``, on an empty cache (wall seconds)."""
    shutil.rmtree(cache, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in ("RANK", "WORLD_SIZE")}
    env.update(
        RELINK_CACHE=str(cache),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    cmd = [sys.executable, "-m", "relink_lib", "features", "--profile", profile]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            cmd + ["--shard", f"{k}/{n_shards}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for k in range(n_shards)
    ]
    shards = []
    for k, proc in enumerate(procs):
        _, err = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"shard {k}/{n_shards} failed ({proc.returncode}): {err[-2000:]}")
        ready = re.search(r"cohort and ladder ready in ([\d.]+) s", err)
        done = re.search(r"done, (\d+) chunks extracted in ([\d.]+) s", err)
        shards.append(
            {
                "shard": f"{k}/{n_shards}",
                "wall_s": round(time.perf_counter() - start, 1),
                "prepare_s": float(ready.group(1)) if ready else None,
                "waited_for_lock": "waiting for" in err,
                "chunks": int(done.group(1)) if done else 0,
                "extract_s": float(done.group(2)) if done else None,
            }
        )
    array_s = time.perf_counter() - start
    steps = {}
    for step in ("--merge", "--status"):
        t = time.perf_counter()
        proc = subprocess.run(cmd + [step], env=env, capture_output=True, text=True)
        if proc.returncode:
            raise RuntimeError(f"{step} failed ({proc.returncode}): {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        steps[step] = round(time.perf_counter() - t, 1)
        if step == "--merge":
            n_merged = sum(line.startswith("merged ") for line in proc.stdout.splitlines())
    shutil.rmtree(cache, ignore_errors=True)
    return {
        "profile": profile,
        "n_shards": n_shards,
        "array_wall_s": round(array_s, 1),
        "shards": shards,
        "merge_s": steps["--merge"],
        "status_s": steps["--status"],
        "n_merged": n_merged,
    }


def _shard_lines(res: dict) -> list[str]:
    lines = [
        "",
        f"## Sharded extraction from the command line (profile `{res['profile']}`)",
        "",
        f"<!-- shards-{res['profile']} (book/cluster.md includes from here) -->",
        "",
        f"`python benchmarks/bench_features.py --shards {res['n_shards']} --profile {res['profile']}` "
        f"({res.get('measured_at', '')}): {res['n_shards']} concurrent `python -m relink_lib features --shard "
        f"K/{res['n_shards']}` processes on an empty cache, one CPU thread each; {res.get('note', '')}. "
        "Wall times include starting Python and loading the cached cohort and each rung's encoder.",
        "",
        "| step | wall time (s) | what it did |",
        "|---|---|---|",
    ]
    for r in res["shards"]:
        what = (
            "waited for the cohort and ladder, then loaded them"
            if r["waited_for_lock"]
            else "built the cohort and ladder"
        )
        lines.append(
            f"| shard {r['shard']} | {r['wall_s']} | {what} ({r['prepare_s']} s), "
            f"extracted {r['chunks']} chunks ({r['extract_s']} s) |"
        )
    lines += [
        f"| all shards (concurrent) | {res['array_wall_s']} | from the first start to the last exit |",
        f"| `--merge` | {res['merge_s']} | {res['n_merged']} (rung, split) entries assembled |",
        f"| `--status` | {res['status_s']} | the table of chunks |",
    ]
    return lines


def write_docs(rows: list[dict], meta: dict, shard_runs: list[dict]) -> str:
    """Write ``docs/bench_features.md`` from the throughput rows and any sharded runs; return its text."""
    lines = [
        "# Feature extraction throughput",
        "",
        f"`python benchmarks/bench_features.py` ({meta['note']}; "
        f"torch {meta['torch']}, {meta['threads']} threads; GPU: {meta['gpu'] or 'none available'}).",
        "",
        "| device | what | images | images/s | time / floor |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['device']} | {r['what']} | {r['n_images']} | {r['images_per_s']} | {r['ratio_to_floor']} |" for r in rows
    ]
    for res in shard_runs:
        lines += _shard_lines(res)
    text = "\n".join(lines) + "\n"
    (ROOT / "docs" / "bench_features.md").write_text(text)
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--threads", type=int, default=1, help="CPU intra-op threads (1 avoids oversubscription on shared machines)"
    )
    ap.add_argument("--shards", type=int, default=0, help="time N concurrent shard processes of the CLI instead")
    ap.add_argument("--profile", default="ci", help="with --shards: the profile (default ci)")
    ap.add_argument(
        "--note", default="a 2-core CPU machine shared with other jobs, no GPU", help="with --shards: the machine"
    )
    args = ap.parse_args()
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    if args.shards:
        res = run_shards(args.profile, args.shards, Path(tempfile.mkdtemp(prefix="bench-shards-")) / "cache")
        res.update(
            note=args.note,
            cpu_count=os.cpu_count(),
            platform=platform.platform(),
            load_average_after=os.getloadavg()[0],
            measured_at=time.strftime("%Y-%m-%d", time.gmtime()),
        )
        (results / f"features_shards_{args.profile}.json").write_text(json.dumps(res, indent=1) + "\n")
        saved = json.loads((results / "bench_features.json").read_text())
        shard_runs = [json.loads(p.read_text()) for p in sorted(results.glob("features_shards_*.json"))]
        print(write_docs(saved["rows"], saved["meta"], shard_runs))
        return
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = [r for d in devices for r in run(args.n, args.repeats, d)]
    meta = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "note": "shared machine; median of repeats; model: CLIP ViT width 96, 2 layers, 64 px input, 128 px raw images",
    }
    (results / "bench_features.json").write_text(json.dumps({"rows": rows, "meta": meta}, indent=1) + "\n")
    shard_runs = [json.loads(p.read_text()) for p in sorted(results.glob("features_shards_*.json"))]
    print(write_docs(rows, meta, shard_runs))


if __name__ == "__main__":
    main()
