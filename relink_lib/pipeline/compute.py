"""What a paper-scale run costs, from the benchmarks measured on this project's machines.

The benchmark JSON files under ``benchmarks/results/`` are measured; the paper-scale figures
are those measurements scaled by the work counts of the paper's cohorts (stated in
:data:`PAPER_SCALE`), never invented. Missing benchmarks are reported as missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import DPSectionConfig
from ..profiles import project_root

PAPER_SCALE: dict[str, int] = {
    "mimic_test_pairs": 43_793,  # the paper's held-out MIMIC-CXR pairs (the audit pool)
    "chexpert_plus_pairs": 29_296,  # the paper's external CheXpert Plus pairs
    "all_pairs": 406_241,  # all paired examples in the paper, both cohorts
}
"""Counts quoted from the paper (Tayebi Arasteh et al., arXiv 2606.02276)."""


def _read(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def compute_table(
    bench_dir: Path | None = None, dp_epochs: float | None = None, dp_batch: int | None = None
) -> pd.DataFrame:
    """Measured kernel costs and their paper-scale projection, one row per step.

    ``dp_epochs`` / ``dp_batch``: the DP schedule assumed for the projection (``None``: the dp
    section's defaults, :class:`relink_lib.config.DPSectionConfig`).
    """
    training = DPSectionConfig().budget_sweep_training
    dp_epochs = training.epochs if dp_epochs is None else dp_epochs
    dp_batch = training.batch_size if dp_batch is None else dp_batch
    bench_dir = bench_dir or project_root() / "benchmarks" / "results"
    rows = []
    audit = _read(bench_dir / "audit_cpu.json")
    if audit:
        secs = audit["methods"]["audit"].get("seconds")
        rows.append(
            {
                "step": "full-database audit (all N, K)",
                "measured on": f"CPU, {audit.get('threads', '?')} threads",
                "measured at": f"M = {audit['m']:,}, d = {audit['d']}",
                "measured": f"{secs:.1f} s" if secs else "n/a",
                "paper scale": f"M = {PAPER_SCALE['mimic_test_pairs']:,}: same size, {secs:.1f} s" if secs else "n/a",
            }
        )
    dp = _read(bench_dir / "bench_dp.json")
    if dp:
        best = max(dp["results"], key=lambda r: r.get("d_img", 0))
        rate = best["steps_per_s"]["dp_fast"]
        n_train = PAPER_SCALE["all_pairs"] - PAPER_SCALE["mimic_test_pairs"] - PAPER_SCALE["chexpert_plus_pairs"]
        steps = dp_epochs * n_train // dp_batch
        rows.append(
            {
                "step": "DP head training (per step)",
                "measured on": f"CPU, {dp.get('threads', '?')} thread(s)",
                "measured at": f"B = {best['B']}, d_img = {best['d_img']}, d = {best['d']}",
                "measured": f"{rate:.1f} steps/s",
                "paper scale": f"~{steps:,} steps ({dp_epochs} epochs of <= {n_train:,} pairs, B = {dp_batch}): "
                f"~{steps / rate / 60:.0f} min at that rate",
            }
        )
    feats = _read(bench_dir / "bench_features.json")
    if feats:
        for r in feats.get("rows", [])[-1:]:  # the adapter row (the first is its floor)
            rows.append(
                {
                    "step": "feature extraction",
                    "measured on": r["device"],
                    "measured at": r["what"],
                    "measured": f"{r['images_per_s']} images/s",
                    "paper scale": "a ViT-B/16 at 224 px costs far more per image than the ladder's tiny encoders: "
                    "measure it on the GPU",
                }
            )
    if not rows:
        rows.append(
            {
                "step": "(no benchmark results found)",
                "measured on": "",
                "measured at": "",
                "measured": "",
                "paper scale": "run `make bench`",
            }
        )
    return pd.DataFrame(rows)
