"""Cost of chapter 6's DP frontier at the default profile's sizes, on random features (no ladder needed).

Runs :func:`relink_lib.dp.frontier_stage.build_frontier` on Gaussian features with the default
profile's shapes (8,086 private pairs, a public bank of 2,048, 10,861 held-out pairs, top-rung
widths 96 / 64 -> 96, batch 256) for a reduced grid (one setting per epoch count, the profile's
seeds, two output-perturbation scales), then extrapolates to the default profile's full spec from
the measured seconds per optimiser step, per run (accounting) and per evaluation. Writes
``benchmarks/results/bench_dp_frontier.json``. Usage: ``python benchmarks/bench_dp_frontier.py``.
The supplementary private pool's generation and featurisation are not in this figure (see
docs/benchmarks.md for the cohort and feature benchmarks).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from relink_lib.dp.frontier import frontier_grid
from relink_lib.dp.frontier_stage import FrontierInputs, build_frontier
from relink_lib.dp.train import sampling_plan
from relink_lib.labels import CHEXPERT_LABELS
from relink_lib.profiles import get_profile

OUT = Path(__file__).resolve().parent / "results" / "bench_dp_frontier.json"
N_TRAIN, N_BANK, N_TEST, D_IMG, D_TXT, D = 8086, 2048, 10861, 96, 64, 96


def _inputs(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    n = N_TRAIN + N_TEST
    latent = rng.normal(size=(n, D)).astype(np.float32)
    x_img = (latent @ rng.normal(size=(D, D_IMG)) + rng.normal(size=(n, D_IMG))).astype(np.float32)
    x_txt = (latent @ rng.normal(size=(D, D_TXT)) + rng.normal(size=(n, D_TXT))).astype(np.float32)
    labels = rng.choice([0.0, 1.0], p=[0.8, 0.2], size=(n, len(CHEXPERT_LABELS)))
    torch.manual_seed(seed)
    heads = (nn.Linear(D_IMG, D, bias=False), nn.Linear(D_TXT, D, bias=False))
    prompts = {k: (rng.normal(size=(2, D_TXT)), rng.normal(size=(2, D_TXT))) for k in CHEXPERT_LABELS}
    tr, te = slice(0, N_TRAIN), slice(N_TRAIN, None)
    return {
        "template": heads,
        "train_img": x_img[tr],
        "train_txt": x_txt[tr],
        "train_labels": labels[tr],
        "train_patients": np.arange(N_TRAIN) // 2,
        "test_img": x_img[te],
        "test_txt": x_txt[te],
        "test_labels": labels[te],
        "test_patients": np.arange(N_TEST) // 2,
        "prompt_features": prompts,
        "bank": {
            "text": rng.normal(size=(N_BANK, D_TXT)).astype(np.float32),
            "image": rng.normal(size=(N_BANK, D_IMG)).astype(np.float32),
        },
        "probe_C": 1.0,
        "chunk_size": 4096,
    }


def main() -> None:
    torch.set_num_threads(1)
    params = get_profile("default")
    full = params.dp.frontier
    spec = dataclasses.replace(
        full,
        lrs={"sgd": (full.lrs["sgd"][1],)},
        optimizers=("sgd",),
        inits=("pretrained",),
        scaling_sizes=(),
        scaling_factors=(),
        op_scales=(0.1, 1.0),
    )
    base = params.dp.training_config(optimizer="sgd", lr=spec.lrs["sgd"][0], epochs=spec.epochs[0])  # set per run
    t0 = time.perf_counter()
    raw = _inputs()
    bank = raw.pop("bank")
    result, _ = build_frontier(FrontierInputs(**raw, bank_text=bank["text"], bank_image=bank["image"]), spec, base)
    payload = result.to_json()
    wall = time.perf_counter() - t0
    cost = payload["cost"]
    log = np.array(cost["runs_steps_seconds"], float)  # (runs, 2): steps, seconds
    # seconds per run = a * steps + b (b: calibration lookup, accounting by two libraries, set-up)
    a, b = np.linalg.lstsq(np.c_[log[:, 0], np.ones(len(log))], log[:, 1], rcond=None)[0]
    a, b = max(float(a), 0.0), max(float(b), 0.0)
    n_runs, steps, n_evals = len(log), int(log[:, 0].sum()), int(cost["n_evaluations"])
    per_eval = cost["eval_s"] / n_evals
    total_train = cost["train_s"]
    pts = payload["frontier"]
    # the full default spec
    grid = frontier_grid(full)
    per_epoch = sampling_plan(N_TRAIN, base)[2]
    full_steps = sum(round(s.epochs * per_epoch) for s in grid) * full.n_seeds
    full_runs = len(grid) * full.n_seeds
    best_epochs = max(full.epochs)  # upper bound: the selected setting is not known before the run
    for n in full.scaling_sizes_above(N_TRAIN):
        full_steps += round(best_epochs * sampling_plan(n, base)[2]) * full.n_seeds
        full_runs += full.n_seeds
    full_steps += round(best_epochs * per_epoch) * full.n_seeds  # non-private control
    full_runs += full.n_seeds
    full_evals = full_runs + full.n_seeds + len(full.op_scales) + 1
    est = a * full_steps + b * full_runs + per_eval * full_evals
    row = {
        "measured": {
            "settings": len(pts),
            "seeds": payload["n_seeds"],
            "runs": n_runs,
            "steps": steps,
            "evaluations": n_evals,
            "train_s": round(total_train, 1),
            "eval_s": round(cost["eval_s"], 1),
            "wall_s": round(wall, 1),
        },
        "per_step_ms": round(1e3 * a, 2),
        "per_run_overhead_s": round(b, 2),
        "per_evaluation_s": round(per_eval, 2),
        "default_full_spec": {
            "settings": len(grid),
            "runs": full_runs,
            "steps": int(full_steps),
            "evaluations": full_evals,
            "estimated_s": round(est, 0),
            "scaling_sizes": full.scaling_sizes_above(N_TRAIN),
        },
    }
    payload_out = {
        "benchmark": "dp frontier (chapter 6) at default sizes, random features",
        "threads": 1,
        "machine": platform.machine(),
        "torch": torch.__version__,
        "results": row,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(payload_out, indent=1) + "\n")
    print(json.dumps(payload_out, indent=1))


if __name__ == "__main__":
    main()
