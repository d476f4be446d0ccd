"""Seeds of one DP-SGD run stacked into one computation against the same runs one by one, in the same process.

The default profile's shapes (8,000 private pairs, expected batch 256, bank 2,048, top rung widths 96 / 64 -> 96),
DP at eps = 0.34 from fresh heads with Adam, 2 epochs, ``S`` seeds: sequential ``train_heads`` per seed against
``train_heads_seeds`` stacking them (``relink_lib.dp.batched``), with one thread and with two. The
two must agree (weights compared); the ratio is what a factorial arm (10 seeds) and a frontier setting (3 seeds)
save. Writes ``benchmarks/results/bench_dp_batched.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from relink_lib.dp.batched import train_heads_seeds
from relink_lib.dp.config import DPConfig
from relink_lib.dp.heads import fresh_heads
from relink_lib.dp.outcomes import few_threads

N, BANK, D_IMG, D_TXT, D = 8000, 2048, 96, 64, 96
OUT = Path(__file__).resolve().parent / "results" / "bench_dp_batched.json"


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D_IMG)).astype(np.float32)
    t = (x[:, :D_TXT] + 0.5 * rng.normal(size=(N, D_TXT))).astype(np.float32)
    bank_t = rng.normal(size=(BANK, D_TXT)).astype(np.float32)
    bank_i = rng.normal(size=(BANK, D_IMG)).astype(np.float32)
    template = (nn.Linear(D_IMG, D, bias=False), nn.Linear(D_TXT, D, bias=False))
    cfg = DPConfig(target_epsilon=0.34, delta=6e-6, epochs=2, batch_size=256, lr=1e-2, optimizer="adam")
    rows = []
    for threads, n_seeds in ((1, 3), (1, 10), (2, 3), (2, 10)):
        seeds = list(range(n_seeds))
        out = {}
        for batched in (False, True):
            starts = [fresh_heads(*template, seed=s) for s in seeds]
            t0 = time.perf_counter()
            with few_threads(threads):
                res = train_heads_seeds(
                    x,
                    t,
                    starts,
                    config=cfg,
                    seeds=seeds,
                    bank_text_feats=bank_t,
                    bank_image_feats=bank_i,
                    batched=batched,
                )
            out[batched] = (time.perf_counter() - t0, res)
        diff = max(
            float((a.image_head.weight - b.image_head.weight).abs().max())
            for a, b in zip(out[False][1], out[True][1], strict=True)
        )
        steps = out[True][1][0].record["steps"]
        rows.append(
            {
                "threads": threads,
                "n_seeds": n_seeds,
                "steps_per_run": steps,
                "sequential_s": round(out[False][0], 3),
                "batched_s": round(out[True][0], 3),
                "speedup": round(out[False][0] / out[True][0], 2),
                "max_abs_weight_difference": diff,
            }
        )
        print(rows[-1], flush=True)
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "shapes": {"n": N, "bank": BANK, "d_img": D_IMG, "d_txt": D_TXT, "d": D},
                "torch": torch.__version__,
                "rows": rows,
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
