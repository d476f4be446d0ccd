"""Benchmark of the re-linkage audit at MIMIC-CXR test scale (M = 43,793 pairs, d = 512).

Every method runs in its own subprocess (so its peak resident memory is its own) on the same
synthetic embeddings, generated from a seed inside each worker:

- ``floor``: a bare chunked matrix product of the same shape (the ``M x M`` similarities,
  streamed in blocks of ``chunk`` rows and thrown away) in torch's BLAS (MKL): no audit can beat it;
- ``floor_numpy``: the same chunked product in numpy's BLAS (OpenBLAS); the fastest of the two floors is the
  machine's fastest GEMM, which the audit is judged against (the audit itself uses the BLAS that
  ``relink_lib.audit.blas.gemm_choice`` picks, recorded as ``audit_gemm``);
- ``audit``: ``relink_audit`` for all N in (10, 100, 1000, 10000, full) and K in (1, 5, 10),
  ties broken at random with both bounds (the kernel counts strictly-better and tied
  distractors in one fused read of each block, ``relink_lib.audit.fused``); ``audit_torch_passes``: the same
  with the fused pass switched off (two comparisons and two reductions per block in torch);
  floor and audit alternate in one worker (floor, audit, floor, audit) so that both see the
  same load on a shared machine; the ratio is min(audit) / min(floor);
- ``faiss``: faiss-cpu exact inner-product search (``IndexFlatIP``, top 10), which gives
  Recall@K at the full database only (a kNN index cannot answer random-pool questions);
- ``montecarlo``: the Monte Carlo pool sampler, 100 pools per query, on a subsample of queries,
  extrapolated linearly to all M queries, and compared (z-scores) with the exact expectation
  for the same queries.

Writes ``benchmarks/results/audit_<device>.json`` and prints a markdown table (for
``docs/audit.md``). Run: ``.venv/bin/python benchmarks/bench_audit.py`` (``--quick`` for a
small smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
POOL_SIZES = (10, 100, 1000, 10000, None)
KS = (1, 5, 10)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _data(m: int, d: int, seed: int, noise: float):
    import torch

    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(m, d, generator=gen)
    img = z + noise * torch.randn(m, d, generator=gen)
    rep = z + noise * torch.randn(m, d, generator=gen)
    del z
    img = torch.nn.functional.normalize(img, dim=1)
    rep = torch.nn.functional.normalize(rep, dim=1)
    return img, rep


def _worker(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    img, rep = _data(args.m, args.d, args.seed, args.noise)
    device = torch.device(args.device)
    base_rss = _rss_mb()
    out: dict = {"method": args.worker}
    times = []
    if args.worker == "pair":
        # floor and audit alternate in one process (floor, audit, floor, audit, ...) so both see the
        # same machine load; peak RSS after the first floor run is the floor's, at the end the audit's
        from relink_lib.audit import relink_audit

        @torch.no_grad()
        def floor():
            i, r = img.to(device), rep.to(device).T
            block = torch.empty((min(args.chunk, args.m), args.m), device=device)
            for s in range(0, args.m, args.chunk):
                e = min(s + args.chunk, args.m)
                torch.mm(i[s:e], r, out=block[: e - s])
            if device.type == "cuda":
                torch.cuda.synchronize()

        def floor_numpy():
            import numpy as np

            i, r = img.numpy(), rep.numpy().T
            block = np.empty((min(args.chunk, args.m), args.m), dtype=np.float32)
            for s in range(0, args.m, args.chunk):
                e = min(s + args.chunk, args.m)
                np.matmul(i[s:e], r, out=block[: e - s])

        from relink_lib.audit import fused
        from relink_lib.audit.blas import gemm_choice

        out["audit_gemm"] = gemm_choice().to_json()
        out["audit_counter"] = fused.status()
        floor_times, numpy_times, unfused_times, floor_peak, table = [], [], [], None, None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            floor()
            floor_times.append(time.perf_counter() - t0)
            if device.type == "cpu":
                t0 = time.perf_counter()
                floor_numpy()
                numpy_times.append(time.perf_counter() - t0)
            if floor_peak is None:
                floor_peak = _peak_mb() - base_rss
                if device.type == "cuda":
                    out["floor_cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
                    torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            table = relink_audit(img, rep, pool_sizes=POOL_SIZES, ks=KS, chunk_size=args.chunk, device=device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            if device.type == "cpu":  # the same audit with the torch passes instead of the fused count
                os.environ[fused.FUSED_ENV] = "0"
                fused._library.cache_clear()
                t0 = time.perf_counter()
                relink_audit(img, rep, pool_sizes=POOL_SIZES, ks=KS, chunk_size=args.chunk, device=device)
                unfused_times.append(time.perf_counter() - t0)
                os.environ.pop(fused.FUSED_ENV)
                fused._library.cache_clear()
        out["floor"] = {"seconds": min(floor_times), "seconds_all": floor_times, "extra_peak_mb": floor_peak}
        if numpy_times:
            out["floor_numpy"] = {"seconds": min(numpy_times), "seconds_all": numpy_times}
        if unfused_times:
            out["audit_torch_passes"] = {"seconds": min(unfused_times), "seconds_all": unfused_times}
        out["table"] = table[
            [
                "pool_size",
                "k",
                "recall",
                "recall_ties_against",
                "recall_ties_for",
                "chance",
                "lift",
                "mrr",
                "median_rank",
                "n_queries_with_ties",
            ]
        ].to_dict(orient="records")
    elif args.worker == "faiss":
        try:
            import faiss
        except ImportError:
            return {
                "method": "faiss",
                "skipped": "faiss-cpu is not installed (pip install faiss-cpu, the [bench] extra)",
            }
        faiss.omp_set_num_threads(args.threads)
        xi, xr = img.numpy(), rep.numpy()
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            index = faiss.IndexFlatIP(args.d)
            index.add(xr)
            _, top = index.search(xi, max(KS))
            times.append(time.perf_counter() - t0)
        import numpy as np

        hit = top == np.arange(args.m)[:, None]
        out["recall_full"] = {str(k): float(hit[:, :k].any(axis=1).mean()) for k in KS}
    elif args.worker == "montecarlo":
        import numpy as np

        from relink_lib.audit import monte_carlo_recall

        queries = np.random.default_rng(args.seed).choice(args.m, size=min(args.mc_queries, args.m), replace=False)
        t0 = time.perf_counter()
        sizes = [n for n in POOL_SIZES if n is None or n <= args.m]
        mc = monte_carlo_recall(img.numpy(), rep.numpy(), sizes, KS, n_pools=100, seed=args.seed, queries=queries)
        elapsed = time.perf_counter() - t0
        times.append(elapsed * args.m / len(queries))
        out["measured_s"] = elapsed
        out["n_queries_measured"] = int(len(queries))
        # the exact expectation for the same queries (their counts computed directly), to compare within SE
        from relink_lib.audit import expected_recall

        with torch.no_grad():
            q = torch.from_numpy(queries)
            sims = img[q] @ rep.T
            own = sims[torch.arange(len(q)), q].unsqueeze(1)
            counts = ((sims >= own).sum(dim=1) - 1).numpy()
        rows = []
        for n in sizes:
            draws = args.m - 1 if n is None else n - 1
            exact = expected_recall(counts, args.m - 1, draws, KS).mean(axis=0)
            for j, k in enumerate(KS):
                rows.append(
                    {"pool_size": args.m if n is None else n, "k": k, "exact_recall_same_queries": float(exact[j])}
                )
        merged = mc.merge(__import__("pandas").DataFrame(rows), on=["pool_size", "k"])
        merged["z"] = (merged["recall"] - merged["exact_recall_same_queries"]) / merged["recall_se"].where(
            merged["recall_se"] > 0
        )
        out["table"] = merged.to_dict(orient="records")
        out["max_abs_z"] = float(merged["z"].abs().max())
    else:
        raise SystemExit(f"--worker {args.worker!r}: expected pair, faiss or montecarlo")
    out["seconds"] = min(times)
    out["seconds_all"] = times
    out["peak_rss_mb"] = _peak_mb()
    out["extra_peak_mb"] = _peak_mb() - base_rss
    if device.type == "cuda":
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def _spawn(method: str, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        method,
        "--m",
        str(args.m),
        "--d",
        str(args.d),
        "--chunk",
        str(args.chunk),
        "--device",
        args.device,
        "--seed",
        str(args.seed),
        "--noise",
        str(args.noise),
        "--repeats",
        str(args.repeats),
        "--mc-queries",
        str(args.mc_queries),
        "--threads",
        str(args.threads),
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"worker {method} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _markdown(result: dict) -> str:
    floor = result.get("fastest_gemm_seconds", result["methods"]["floor"]["seconds"])
    lines = [
        "| method | what it answers | time (s) | ratio to the fastest floor | extra peak memory (MB) |",
        "|---|---|---:|---:|---:|",
    ]
    what = {
        "floor": "nothing (bare chunked matmul, same shape; torch's BLAS)",
        "floor_numpy": "nothing (the same in numpy's BLAS)",
        "audit": "R@1/5/10 at all 5 N, MRR, median rank (fused compare-and-count)",
        "audit_torch_passes": "the same audit with the counts in four torch passes (no C compiler)",
        "faiss": "R@1/5/10 at the full database only",
        "montecarlo": "R@1/5/10 at all 5 N, with sampling noise",
    }
    for name, r in result["methods"].items():
        if "skipped" in r:
            lines.append(f"| {name} | {what[name]} | skipped: {r['skipped']} | | |")
            continue
        note = f" (extrapolated from {r['n_queries_measured']} queries)" if name == "montecarlo" else ""
        peak = f"{r['extra_peak_mb']:.0f}" if "extra_peak_mb" in r else "-"
        lines.append(f"| {name}{note} | {what[name]} | {r['seconds']:.2f} | {r['seconds'] / floor:.2f} | {peak} |")
    return "\n".join(lines)


def _cpu_model() -> str:
    from relink_lib.audit.blas import cpu_model  # lazily, as the workers import the library

    return cpu_model()


def keep_earlier_peers(result: dict, out: Path) -> None:
    """Peers (faiss, Monte Carlo) not re-run this time are kept from the file being replaced, under
    ``earlier_run_methods`` with that run's own audit, so a ``--methods pair`` run does not drop them."""
    if not out.exists():
        return
    try:
        before = json.loads(out.read_text())
    except (OSError, ValueError):
        return
    earlier = dict(before.get("earlier_run_methods", {}))
    for name in ("faiss", "montecarlo"):
        if name in before.get("methods", {}):
            earlier[name] = before["methods"][name]
            earlier["audit"] = before["methods"].get("audit", earlier.get("audit"))
    missing = [n for n in ("faiss", "montecarlo") if n in earlier and n not in result["methods"]]
    if missing:
        result["earlier_run_methods"] = {n: earlier[n] for n in [*missing, "audit"] if n in earlier}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--m", type=int, default=43793)
    p.add_argument("--d", type=int, default=512)
    p.add_argument("--chunk", type=int, default=2048)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--noise", type=float, default=2.5, help="embedding noise: sets how hard re-linkage is")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--mc-queries", type=int, default=40)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--methods", default="pair,faiss,montecarlo", help="pair = floor and audit, interleaved")
    p.add_argument("--quick", action="store_true", help="small smoke run (M = 3000, d = 128)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args)))
        return
    if args.quick:
        args.m, args.d, args.mc_queries, args.repeats = 3000, 128, 10, 1
    result = {
        "m": args.m,
        "d": args.d,
        "chunk": args.chunk,
        "device": args.device,
        "threads": args.threads,
        "pool_sizes": [n if n is not None else "full" for n in POOL_SIZES],
        "ks": list(KS),
        "machine": {
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(),
            "load_avg_at_start": os.getloadavg(),
        },
        "methods": {},
    }
    for method in args.methods.split(","):
        print(f"running {method} ...", file=sys.stderr, flush=True)
        res = _spawn(method, args)
        if method == "pair":
            result["methods"]["floor"] = dict(res.pop("floor"), method="floor")
            if "floor_numpy" in res:
                result["methods"]["floor_numpy"] = dict(res.pop("floor_numpy"), method="floor_numpy")
            if "audit_torch_passes" in res:
                result["methods"]["audit_torch_passes"] = dict(
                    res.pop("audit_torch_passes"), method="audit_torch_passes"
                )
            res["method"] = "audit"
            method = "audit"
        result["methods"][method] = res
    result["machine"]["load_avg_at_end"] = os.getloadavg()
    audit, floor = result["methods"].get("audit"), result["methods"].get("floor")
    if audit and floor:
        result["ratio_audit_to_floor"] = audit["seconds"] / floor["seconds"]
        fastest = min(floor["seconds"], result["methods"].get("floor_numpy", {}).get("seconds", float("inf")))
        result["fastest_gemm_seconds"] = fastest
        result["ratio_audit_to_fastest_gemm"] = audit["seconds"] / fastest
        result["ratio_per_pair"] = [a / f for a, f in zip(audit["seconds_all"], floor["seconds_all"])]
        unfused = result["methods"].get("audit_torch_passes")
        if unfused:
            result["ratio_torch_passes_to_fastest_gemm"] = unfused["seconds"] / fastest
    fa = result["methods"].get("faiss", {})
    if audit and "recall_full" in fa:
        full = {str(r["k"]): r["recall"] for r in audit["table"] if r["pool_size"] == args.m}
        result["faiss_vs_audit_full_max_abs_diff"] = max(abs(fa["recall_full"][k] - full[k]) for k in full)
    out = (
        Path(args.out)
        if args.out
        else ROOT / "benchmarks" / "results" / f"audit_{args.device.split(':')[0]}{'_quick' if args.quick else ''}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    keep_earlier_peers(result, out)
    out.write_text(json.dumps(result, indent=1) + "\n")
    if floor:
        print(_markdown(result))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
