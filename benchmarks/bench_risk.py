"""Benchmark of the reconstruction-risk computations of chapter 9.

For the default profile's DP schedule (n_train = 14,000 pairs, expected batch 256, 5 epochs:
q = 0.0183, T = 273) and the sigma each budget of the sweep calibrates to, time

- ``pld``: the worst-case ReRo bound from the PLD (``worst_case_risk``, a fresh PLD each time);
- ``gdp``: the CLT Gaussian-DP closed form (the floor: a formula, no distribution);
- ``mc``: a Monte Carlo Neyman-Pearson estimate of the same risk from 100,000 simulated privacy
  losses (the peer an implementation without a PLD would use), with its standard error;
- ``relaxed``: the GLRT bound.

and the gradient-access reconstruction step for 100 updates of a 512 x 768 head (subspace
iteration) against numpy's full SVD (timed on a tenth of the updates, scaled linearly). Writes
``benchmarks/results/risk_cpu.json`` and prints a markdown table (for ``docs/risk.md``).
Run: ``.venv/bin/python benchmarks/bench_risk.py`` (``--quick``: fewer budgets and a smaller
head). Timings on a shared machine are noisy: each is the minimum of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np

from relink_lib.dp import calibrate_noise
from relink_lib.risk.attack import reconstruct_features
from relink_lib.risk.rero import relaxed_risk, worst_case_risk, worst_case_risk_gdp
from relink_lib.risk.tradeoff import Mechanism, _composed_pld, _profile_grid, monte_carlo_privacy_loss

ROOT = Path(__file__).resolve().parent.parent


def _best(fn, repeat: int) -> tuple[float, object]:
    best, out = math.inf, None
    for _ in range(repeat):
        _composed_pld.cache_clear()
        _profile_grid.cache_clear()
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _mc_risk(mech: Mechanism, kappa: float, n: int) -> tuple[float, float]:
    """Power of the simulated likelihood-ratio test at level kappa, with a delta-method standard error.

    The threshold is itself estimated (the (1 - kappa) quantile of the loss under P); its error moves
    the power with slope e^tau (d power / d alpha = dQ/dP at the threshold), which dominates in the tail.
    """
    loss_p, loss_q = monte_carlo_privacy_loss(mech, n, seed=0)
    tau = float(np.quantile(loss_p, 1 - kappa))
    p = float(np.mean(loss_q > tau))
    var = max(p * (1 - p), 1.0 / n) / n + math.exp(min(2 * tau, 700)) * kappa * (1 - kappa) / n
    return p, min(math.sqrt(var), 1.0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    n_train, batch, epochs, delta = 14_000, 256, 5, 6e-6
    q = batch / n_train
    steps = round(epochs / q)
    kappa = 1 / n_train
    budgets = (0.34, 8.0, 1e3, 1e15) if args.quick else (0.34, 1.0, 8.0, 32.0, 1e3, 1e6, 1e9, 1e12, 1e15)
    n_mc = 20_000 if args.quick else 100_000
    rows = []
    for eps in budgets:
        sigma = calibrate_noise(eps, delta, q, steps)
        mech = Mechanism(sigma, q, steps)
        t_pld, wc = _best(lambda mech=mech: worst_case_risk(kappa, mech), args.repeat)
        t_gdp, gdp = _best(lambda mech=mech: worst_case_risk_gdp(kappa, mech), args.repeat)
        t_rel, rel = _best(lambda mech=mech: relaxed_risk(kappa, mech), args.repeat)
        t_mc, (mc, se) = _best(lambda mech=mech: _mc_risk(mech, kappa, n_mc), 1)
        rows.append(
            {
                "target_epsilon": eps,
                "noise_multiplier": sigma,
                "worst_case_risk": wc,
                "gdp_risk": gdp,
                "mc_risk": mc,
                "mc_se": se,
                "relaxed_risk": rel,
                "t_pld_s": t_pld,
                "t_gdp_s": t_gdp,
                "t_mc_s": t_mc,
                "t_relaxed_s": t_rel,
                "pld_over_mc": t_pld / t_mc,
            }
        )
        print(
            f"eps={eps:g} sigma={sigma:.3g} pld={wc:.4g} ({t_pld:.2f}s) mc={mc:.4g}+-{se:.2g} ({t_mc:.2f}s) "
            f"gdp={gdp:.4g}",
            flush=True,
        )
    d_out, d_in, n_upd = (64, 96, 100) if args.quick else (512, 768, 100)
    rng = np.random.default_rng(0)
    upd = rng.standard_normal((n_upd, d_out, d_in)).astype(np.float64)
    t_rec, _ = _best(lambda: reconstruct_features(upd), args.repeat)
    n_svd = max(1, n_upd // 10)  # the peer is slow: time a tenth of the updates and scale linearly
    t_svd, _ = _best(lambda: np.linalg.svd(upd[:n_svd], full_matrices=False), 1)
    t_svd *= n_upd / n_svd
    out = {
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu_count": __import__("os").cpu_count(),
        "schedule": {"n_train": n_train, "sample_rate": q, "steps": steps, "delta": delta, "kappa": kappa},
        "rows": rows,
        "attack": {
            "updates": n_upd,
            "shape": [d_out, d_in],
            "reconstruct_s": t_rec,
            "numpy_svd_s": t_svd,
            "svd_over_reconstruct": t_svd / t_rec,
        },
    }
    path = ROOT / "benchmarks" / "results" / ("risk_cpu_quick.json" if args.quick else "risk_cpu.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print()
    print("| target eps | sigma | worst case (PLD) | Monte Carlo +- SE | GDP (CLT) | relaxed | PLD s | MC s | GDP s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['target_epsilon']:g} | {r['noise_multiplier']:.3g} | {r['worst_case_risk']:.4g} | "
            f"{r['mc_risk']:.4g} +- {r['mc_se']:.1g} | {r['gdp_risk']:.4g} | {r['relaxed_risk']:.4g} | "
            f"{r['t_pld_s']:.2f} | {r['t_mc_s']:.2f} | {r['t_gdp_s']:.1e} |"
        )
    print(
        f"\nreconstruction of {n_upd} updates of {d_out} x {d_in}: {t_rec:.2f} s (numpy full SVD {t_svd:.2f} s, "
        f"{t_svd / t_rec:.1f}x)"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
