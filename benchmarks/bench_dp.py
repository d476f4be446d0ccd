"""Speed of DP head training steps: closed-form per-sample gradients vs non-private vs Opacus hooks.

One optimiser step on a fixed batch of B pairs (Poisson sampling is not timed), for:

- ``nonprivate``: autograd of the mean bank loss, no clipping or noise (the floor), same objective
  (``bank_grad`` as in the row);
- ``dp_fast``: :func:`relink_lib.dp.train.clipped_grad_sum` + Gaussian noise (the library's engine);
- ``dp_opacus_hooks``: Opacus ``GradSampleModule`` on :class:`ExpandedBankLoss` + ``DPOptimizer``;
- ``dp_torch_func``: per-sample gradients materialised by ``torch.func.vmap(grad)`` + clip + noise.

Writes ``benchmarks/results/bench_dp.json`` and prints a markdown table (copied to docs/dp.md).
Usage: ``python benchmarks/bench_dp.py [--quick]``. Timings on a shared CPU are noisy: the
ratios (same process, interleaved repeats, median) are what to read.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from relink_lib.dp.objective import ExpandedBankLoss, per_example_loss, per_example_loss_weights
from relink_lib.dp.train import clipped_grad_sum

OUT = Path(__file__).resolve().parent / "results" / "bench_dp.json"


def _setup(B, d_img, d_txt, d, m, symmetric, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_img, x_txt = torch.randn(B, d_img, generator=g), torch.randn(B, d_txt, generator=g)
    bank_t = torch.randn(m, d_txt, generator=g)
    bank_i = torch.randn(m, d_img, generator=g) if symmetric else None
    torch.manual_seed(seed)
    return x_img, x_txt, bank_t, bank_i, nn.Linear(d_img, d, bias=False), nn.Linear(d_txt, d, bias=False)


def make_steps(B, d_img, d_txt, d, m, symmetric, bank_grad=False, sigma=1.0, C=1.0):
    x_img, x_txt, bank_t, bank_i, ih, th = _setup(B, d_img, d_txt, d, m, symmetric)
    params = [ih.weight, th.weight]
    opt = torch.optim.Adam(params, lr=1e-3)
    gen = torch.Generator().manual_seed(1)

    def nonprivate():
        opt.zero_grad(set_to_none=True)
        per_example_loss(ih, th, x_img, x_txt, bank_t, bank_i, bank_grad=bank_grad).mean().backward()
        opt.step()

    def dp_fast():
        s_img, s_txt, *_ = clipped_grad_sum(
            ih.weight.detach(), th.weight.detach(), x_img, x_txt, bank_t, bank_i, max_grad_norm=C, bank_grad=bank_grad
        )
        ih.weight.grad = (s_img + sigma * C * torch.randn(s_img.shape, generator=gen)) / B
        th.weight.grad = (s_txt + sigma * C * torch.randn(s_txt.shape, generator=gen)) / B
        opt.step()

    from torch.func import grad, vmap

    def f(wi, wt, x, t):
        return per_example_loss_weights(wi, wt, x[None], t[None], bank_t, bank_i, bank_grad=bank_grad)[0]

    psg = vmap(grad(f, argnums=(0, 1)), in_dims=(None, None, 0, 0))

    def dp_torch_func():
        gi, gt = psg(ih.weight.detach(), th.weight.detach(), x_img, x_txt)
        norms = (gi.pow(2).sum((1, 2)) + gt.pow(2).sum((1, 2))).sqrt()
        coef = (C / (norms + 1e-6)).clamp(max=1.0)
        ih.weight.grad = (
            torch.einsum("n,nij->ij", coef, gi) + sigma * C * torch.randn(gi.shape[1:], generator=gen)
        ) / B
        th.weight.grad = (
            torch.einsum("n,nij->ij", coef, gt) + sigma * C * torch.randn(gt.shape[1:], generator=gen)
        ) / B
        opt.step()

    from opacus import GradSampleModule
    from opacus.optimizers import DPOptimizer

    ih2, th2 = nn.Linear(d_img, d, bias=False), nn.Linear(d_txt, d, bias=False)
    gsm = GradSampleModule(ExpandedBankLoss(ih2, th2, bank_t, bank_i, bank_grad=bank_grad))
    dpo = DPOptimizer(
        torch.optim.Adam([ih2.weight, th2.weight], lr=1e-3),
        noise_multiplier=sigma,
        max_grad_norm=C,
        expected_batch_size=B,
    )

    def dp_opacus_hooks():
        dpo.zero_grad(set_to_none=True)
        gsm(x_img, x_txt).mean().backward()
        dpo.step()

    return {
        "nonprivate": nonprivate,
        "dp_fast": dp_fast,
        "dp_opacus_hooks": dp_opacus_hooks,
        "dp_torch_func": dp_torch_func,
    }


def time_steps(steps, reps, inner):
    for fn in steps.values():  # warm-up
        fn()
    times = {k: [] for k in steps}
    for _ in range(reps):  # interleave so drifting load hits all methods alike
        for k, fn in steps.items():
            t = time.perf_counter()
            for _ in range(inner):
                fn()
            times[k].append((time.perf_counter() - t) / inner)
    return {k: 1.0 / statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    configs = [
        {
            "name": "ci-like",
            "B": 128,
            "d_img": 128,
            "d_txt": 128,
            "d": 64,
            "m": 256,
            "symmetric": True,
            "bank_grad": False,
        },
        {
            "name": "default-like",
            "B": 256,
            "d_img": 256,
            "d_txt": 256,
            "d": 128,
            "m": 2048,
            "symmetric": True,
            "bank_grad": False,
        },
        {
            "name": "ci-like, gradient through bank",
            "B": 128,
            "d_img": 128,
            "d_txt": 128,
            "d": 64,
            "m": 256,
            "symmetric": True,
            "bank_grad": True,
        },
    ]
    if args.quick:
        configs = configs[:1]
    rows = []
    for cfg in configs:
        steps = make_steps(**{k: v for k, v in cfg.items() if k != "name"})
        big = cfg["m"] >= 1024  # Opacus hooks repeat the bank per example: ~25 s per step here
        sps = time_steps(steps, reps=3 if (args.quick or big) else 5, inner=1 if big else (2 if args.quick else 3))
        row = dict(cfg, steps_per_s={k: round(v, 2) for k, v in sps.items()})
        row["ratio_dp_fast_vs_nonprivate"] = round(sps["dp_fast"] / sps["nonprivate"], 3)
        row["speedup_dp_fast_vs_opacus_hooks"] = round(sps["dp_fast"] / sps["dp_opacus_hooks"], 2)
        row["speedup_dp_fast_vs_torch_func"] = round(sps["dp_fast"] / sps["dp_torch_func"], 2)
        rows.append(row)
        print(json.dumps(row))
    payload = {
        "benchmark": "dp head training step",
        "threads": args.threads,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "target_ratio_dp_vs_nonprivate": 0.5,
        "results": rows,
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(payload, indent=1) + "\n")
    print(
        "\n| config | B | m | non-private steps/s | DP fast steps/s | DP Opacus hooks steps/s | DP torch.func steps/s "
        "| DP/non-private | fast/Opacus |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        s = r["steps_per_s"]
        print(
            f"| {r['name']} | {r['B']} | {r['m']} | {s['nonprivate']} | {s['dp_fast']} | {s['dp_opacus_hooks']} | "
            f"{s['dp_torch_func']} | {r['ratio_dp_fast_vs_nonprivate']} | {r['speedup_dp_fast_vs_opacus_hooks']}x |"
        )


if __name__ == "__main__":
    main()
