"""Stage profile of the main job: seconds per chapter and per cached step of one `make book` run.

Reads what a run leaves behind, so it times the real job, not a replica:

- ``_build/executed/<profile>/runs.json``: wall seconds per chapter notebook (``relink_lib.pipeline.execute``);
- ``cache/<profile>/<step>/<entry>/.build.json``: wall seconds of every cached step built in that run
  (``relink_lib.cache.BUILD_RECORD``; a build includes any cached step it built inside, so nested steps
  are counted twice in the sum and the table says which are nested);
- the chapters' own cost records where they keep one (``cost`` of the frontier and the factorial).

Writes ``benchmarks/results/stage_profile_<profile>.json`` with the CPU, its core count and the BLAS each
library uses, and prints a Markdown table. Usage, after ``make book`` from an empty cache::

    python benchmarks/stage_profile.py --profile default
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch

from relink_lib.audit.blas import cpu_model
from relink_lib.cache import BUILD_RECORD, build_record

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def blas_info() -> dict[str, str]:
    """Which BLAS numpy and torch call (names only; the audit's GEMM speed is in ``bench_audit.py``)."""
    import numpy as np
    import torch

    out = {"torch": f"{torch.__version__}, MKL {torch.backends.mkl.is_available()}"}
    try:
        cfg = np.show_config(mode="dicts")  # numpy >= 1.25
        blas = (cfg or {}).get("Build Dependencies", {}).get("blas", {})
        out["numpy"] = f"{np.__version__}, {blas.get('name', '?')} {blas.get('version', '')}".strip()
    except TypeError:
        out["numpy"] = np.__version__
    return out


def step_records(cache: Path) -> list[dict[str, Any]]:
    """Every cached step built with a timing record (``relink_lib.cache.build_record``), oldest first."""
    out = []
    for entry in sorted(p.parent for p in cache.glob(f"*/*/{BUILD_RECORD}")):
        rec = build_record(entry)
        if rec is not None:
            out.append({**rec, "entry": entry.name})
    return sorted(out, key=lambda r: r["finished"])


def nested(records: list[dict[str, Any]]) -> None:
    """Mark records built inside another (their interval lies inside an earlier-started, later-finished build)."""
    spans = [(r["finished"] - r["build_s"], r["finished"]) for r in records]
    for i, r in enumerate(records):
        s, f = spans[i]
        r["inside"] = next(
            (
                records[j]["step"]
                for j, (s2, f2) in enumerate(spans)
                if j != i and s2 <= s and f <= f2 and (s2, f2) != (s, f)
            ),
            None,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--note", default="", help="what the run was (e.g. 'clean clone, idle')")
    args = ap.parse_args()
    runs_path = ROOT / "_build" / "executed" / args.profile / "runs.json"
    chapters = json.loads(runs_path.read_text()) if runs_path.exists() else {}
    records = step_records(ROOT / "cache" / args.profile)
    nested(records)
    by_step: dict[str, dict[str, Any]] = {}
    for r in records:
        s = by_step.setdefault(r["step"], {"step": r["step"], "seconds": 0.0, "builds": 0, "inside": r["inside"]})
        s["seconds"] += r["build_s"]
        s["builds"] += 1
    costs: dict[str, Any] = {}
    results = ROOT / "results" / args.profile
    mit = results / "mitigation.json"
    if mit.exists():
        m = json.loads(mit.read_text())
        costs["frontier"] = m.get("cost")
        costs["factorial"] = m.get("factorial_cost")
    total = sum(float(c.get("wall_s", 0)) for c in chapters.values())
    out = {
        "profile": args.profile,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": blas_info(),
        "note": args.note,
        "chapters_s": {k: v.get("wall_s") for k, v in chapters.items()},
        "chapters_total_s": round(total, 1),
        "steps": list(by_step.values()),
        "chapter_costs": costs,
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"stage_profile_{args.profile}.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"{out['cpu']}, {out['cores']} cores; numpy {out['blas'].get('numpy')}; torch {out['blas']['torch']}")
    print("\n| chapter | seconds |\n|---|---|")
    for k, v in out["chapters_s"].items():
        print(f"| {k} | {v:,.1f} |")
    print(f"| **all chapters** | **{total:,.1f}** |")
    print("\n| cached step | builds | seconds | built inside |\n|---|---|---|---|")
    for s in sorted(out["steps"], key=lambda s: -s["seconds"]):
        print(f"| {s['step']} | {s['builds']} | {s['seconds']:,.1f} | {s['inside'] or ''} |")
    print(f"\nwritten {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
