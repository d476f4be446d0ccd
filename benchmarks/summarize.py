"""Collect the benchmark JSON files under benchmarks/results/ into one table: docs/benchmarks.md.

Every row is a ratio against a floor or a peer measured in the same run on the same machine;
absolute seconds are shown for scale only. Usage: ``python benchmarks/summarize.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "docs" / "benchmarks.md"


def _load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else None


def rows() -> list[tuple[str, str, str, str, str]]:
    """(kernel, measured, against, ratio, target) rows from whatever benchmark files exist."""
    out = []
    audit = _load("audit_cpu.json")
    if audit:
        m = audit["methods"]
        earlier = audit.get("earlier_run_methods", {})
        floors = [f"torch (MKL) {m['floor']['seconds']:.1f} s"]
        if "floor_numpy" in m:
            floors.append(f"numpy (OpenBLAS) {m['floor_numpy']['seconds']:.1f} s")
        fastest = audit.get("fastest_gemm_seconds", m["floor"]["seconds"])
        gemm = m["audit"].get("audit_gemm", {}).get("backend", "torch")
        out.append(
            (
                f"audit with fair ties, all N and K (M = {audit['m']:,}, d = {audit['d']}, CPU; its GEMM in {gemm}, "
                f"counts {'fused' if m['audit'].get('audit_counter', '').startswith('on') else 'in torch passes'})",
                f"{m['audit']['seconds']:.1f} s, +{m['audit']['extra_peak_mb']:.0f} MB",
                "the fastest bare chunked matmul of: " + ", ".join(floors),
                f"{m['audit']['seconds'] / fastest:.2f}x",
                "<= 1.2x, <= 2 GB",
            )
        )
        if "audit_torch_passes" in m:
            out.append(
                (
                    "the same audit with its counts in four torch passes (no C compiler: the fallback)",
                    f"{m['audit_torch_passes']['seconds']:.1f} s",
                    "the same fastest floor",
                    f"{m['audit_torch_passes']['seconds'] / fastest:.2f}x",
                    "fallback",
                )
            )
        for name, label, fmt in (
            ("faiss", "audit vs faiss-cpu exact search (full database{})", "faiss {:.1f} s"),
            ("montecarlo", "audit vs Monte Carlo (100 pools per query, extrapolated{})", "{:,.0f} s"),
        ):
            run, note = (m[name], "") if name in m else (earlier.get(name), "; earlier run, before the tie change")
            if run:
                # a peer from an earlier run is compared with that run's audit, not with today's
                audit_s = m["audit"]["seconds"] if name in m else earlier.get("audit", m["audit"])["seconds"]
                out.append(
                    (
                        label.format(note),
                        f"{audit_s:.1f} s",
                        fmt.format(run["seconds"]),
                        f"{audit_s / run['seconds']:.{2 if name == 'faiss' else 4}f}x",
                        "peer",
                    )
                )
    gen = _load("cohort_generation.json")
    if gen:
        s = gen["seconds"]
        out.append(
            (
                f"synthetic cohort, {gen['n_pairs']:,} pairs at {gen['image_size']} px",
                f"{s['end_to_end_2_threads']:.1f} s wall, {gen['cpu_seconds']['end_to_end_2_threads']:.1f} s CPU",
                f"random uint8 images {s['floor_random_uint8']:.1f} s",
                f"{gen['ratio_to_floor_2_threads']:.1f}x",
                f"< {gen['target_seconds']:.0f} s",
            )
        )
    feats = _load("bench_features.json")
    if feats and len(feats["rows"]) >= 2:
        floor, adapter = feats["rows"][0], feats["rows"][-1]
        out.append(
            (
                "feature extraction (adapter on raw arrays, CPU)",
                f"{adapter['images_per_s']} images/s",
                f"{floor['what']}: {floor['images_per_s']} images/s",
                f"{adapter['ratio_to_floor']:.2f}x time",
                "close to 1x",
            )
        )
    dp = _load("bench_dp.json")
    if dp:
        for r in dp["results"]:
            out.append(
                (
                    f"DP head step, {r['name']} (B = {r['B']}, d_img = {r['d_img']})",
                    f"{r['steps_per_s']['dp_fast']} steps/s",
                    f"non-private {r['steps_per_s']['nonprivate']} steps/s; "
                    f"Opacus hooks {r['steps_per_s']['dp_opacus_hooks']}",
                    f"{r['ratio_dp_fast_vs_nonprivate']:.2f}x of non-private; "
                    f"{r['speedup_dp_fast_vs_opacus_hooks']:.0f}x Opacus hooks",
                    ">= 0.5x of non-private",
                )
            )
    frontier = _load("bench_dp_frontier.json")
    if frontier:
        r = frontier["results"]
        m, full = r["measured"], r["default_full_spec"]
        out.append(
            (
                f"DP frontier, default sizes, {m['settings']} settings x {m['seeds']} seeds + controls "
                "(random features, `bench_dp_frontier.py`)",
                f"{m['wall_s']:.1f} s: {r['per_step_ms']:.1f} ms per DP step (B = 256, bank 2,048), "
                f"{r['per_run_overhead_s']:.2f} s per run, "
                f"{r['per_evaluation_s']:.2f} s per evaluation",
                f"extrapolated to the default spec ({full['settings']} settings x {m['seeds']} seeds, "
                f"{', '.join(f'{n:,}' for n in full['scaling_sizes'])} pairs, controls): {full['estimated_s']:.0f} s",
                f"{full['steps']:,} steps, {full['evaluations']} evaluations",
                "default `make book` <= 30 min",
            )
        )
    batched = _load("bench_dp_batched.json")
    if batched:
        for r in batched["rows"]:
            threads = r.get("threads", 1)
            out.append(
                (
                    f"DP head training, {r['n_seeds']} seeds of one mechanism stacked (`dp.batched`, default shapes, "
                    f"{r['steps_per_run']} steps per run, {threads} thread{'s' if threads > 1 else ''})",
                    f"{r['batched_s']:.1f} s",
                    f"the same runs one by one {r['sequential_s']:.1f} s (max weight difference "
                    f"{r['max_abs_weight_difference']:.1e})",
                    f"{r['batched_s'] / r['sequential_s']:.2f}x",
                    "peer (same run; docs/dp.md)",
                )
            )
    stages = _load("stage_profile_default.json")
    if stages:
        out.append(
            (
                f"main job: `make book` (default), every chapter ({stages['cpu']}"
                + (f", {stages['cpu_capability']}" if stages.get("cpu_capability") else "")
                + f", {stages['cores']} cores)",
                f"{stages['chapters_total_s'] / 60:.1f} min of chapters",
                "the budget: 30 min (a margin for slower CPUs)",
                f"{stages['chapters_total_s'] / 1800:.2f}x",
                "<= 1x",
            )
        )
    risk = _load("risk_cpu.json")
    if risk:
        slowest = max(risk["rows"], key=lambda r: r["t_pld_s"])
        out.append(
            (
                "worst-case ReRo bound from the PLD (slowest eps)",
                f"{slowest['t_pld_s']:.2f} s at eps = {slowest['target_epsilon']:g}",
                f"Monte Carlo {slowest['t_mc_s']:.1f} s",
                f"{slowest['t_pld_s'] / slowest['t_mc_s']:.2f}x",
                "peer",
            )
        )
    return out


def main() -> None:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python benchmarks/summarize.py` from `benchmarks/results/*.json`; "
        "run `make bench` to re-measure.",
        "All were measured on a 2-core CPU machine like CI's, without a GPU; most while other jobs shared the machine",
        "(load average 7-10); idle: the cohort generation and the stacked seeds (2026-12-02, Intel Xeon with "
        "AVX-512), the audit (2026-12-02, AMD EPYC with AVX2) and the main job (2026-12-03, AMD EPYC with AVX-512; "
        "each JSON names its machine). "
        "Absolute times under load are pessimistic; the ratios (floor and peer timed in the same run) are what "
        "to read.",
        "Each benchmark's own page in `docs/` gives its method and details.",
        "",
        "| kernel | measured | against (same run) | ratio | target |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(r)} |" for r in rows()]
    # hand-written sections (from the first "## " heading on: GPU status, frontier cost, ...) are kept as they are
    old = OUT.read_text() if OUT.exists() else ""
    kept = old[old.index("\n## ") + 1 :] if "\n## " in old else ""
    OUT.write_text("\n".join(lines) + "\n" + ("\n" + kept if kept else ""))
    print(OUT.read_text())


if __name__ == "__main__":
    main()
