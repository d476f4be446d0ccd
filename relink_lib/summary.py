"""The book's headline table, read from the results of one profile (``results/<profile>/``).

Per rung: Recall@1 and its lift over chance at N = 100 and at N = 10,000 (or the largest pool the
held-out split allows), Recall@1 in pathology-matched pools, Recall@1 after DP and its relative
reduction, linear-probe and cross-modal utility before and after, and transfer to the external
cohort. Every figure comes from the chapter results JSON; nothing is typed in.
"""
from __future__ import annotations

from typing import Any, Mapping

import pandas as pd

from .results import read_results

PAPER_HEADLINE: dict[str, Any] = {
    "source": "Tayebi Arasteh et al., arXiv 2606.02276 (the paper's figures, strongest model, MIMIC-CXR)",
    "R@1 lift, N = 100": 15.0,
    "R@1 lift, N = 10,000": 50.0,
    "R@1 reduction by DP, N = 10,000": 0.618,
    "linear-probe macro AUROC before": 0.7963,
    "linear-probe macro AUROC after": 0.7943,
}
"""The seed paper's headline numbers, quoted as the paper's."""


def _recall(rows: pd.DataFrame, variant: str, pool: str, n: int, k: int = 1) -> pd.Series | None:
    hit = rows[(rows["variant"] == variant) & (rows["pool"] == pool) & (rows["k"] == k) & (rows["pool_size"] == n)]
    return hit.iloc[0] if len(hit) else None


def _largest_pool(rows: pd.DataFrame, cap: int = 10_000) -> int:
    sizes = rows["pool_size"].dropna().astype(int)
    sizes = sizes[sizes <= cap]
    return int(sizes.max())


def headline_table(profile: str) -> pd.DataFrame:
    """One row per rung with the headline numbers of ``profile`` (raises if a chapter has not run)."""
    mitigation = read_results(profile, "mitigation")
    utility = pd.DataFrame(read_results(profile, "utility")["table"])
    transfer = {r["rung"]: r for r in read_results(profile, "transfer")["rungs"]}
    out = []
    for rung in mitigation["rungs"]:
        rows = pd.DataFrame(rung["recall"])
        rows["pool_size"] = pd.to_numeric(rows["pool_size"], errors="coerce")
        n_big = _largest_pool(rows)
        row: dict[str, Any] = {"rung": rung["rung"], "model": rung["model"]}
        for n, label in ((100, "N = 100"), (n_big, f"N = {n_big:,}" if n_big != 10_000 else "N = 10,000")):
            hit = _recall(rows, "pretrained", "random", n)
            row[f"R@1, {label}"] = None if hit is None else hit["recall"]
            row[f"lift, {label}"] = None if hit is None else hit["lift"]
        big = f"N = {n_big:,}"
        hard = _recall(rows, "pretrained", "matched", n_big)
        row[f"R@1 matched pools, {big}"] = None if hard is None else hard["recall"]
        dp = _recall(rows, "dp", "random", n_big)
        before = row.get(f"R@1, {big}", row.get("R@1, N = 10,000"))
        row[f"R@1 after DP, {big}"] = None if dp is None else dp["recall"]
        row["DP reduction of R@1"] = (None if dp is None or not before else 1.0 - dp["recall"] / before)
        for variant, tag in (("pretrained", "before"), ("dp", "after DP")):
            u = utility[(utility["rung"] == rung["rung"]) & (utility["variant"] == variant)]
            row[f"probe AUROC {tag}"] = u["probe_macro_auroc"].iloc[0] if len(u) else None
            row[f"zero-shot AUROC {tag}"] = u["zero_shot_macro_auroc"].iloc[0] if len(u) else None
        ext = transfer.get(rung["rung"])
        if ext is not None:
            erows = pd.DataFrame(ext["recall"])
            erows["pool_size"] = pd.to_numeric(erows["pool_size"], errors="coerce")
            n_ext = _largest_pool(erows)
            e_before, e_after = _recall(erows, "pretrained", "random", n_ext), _recall(erows, "dp", "random", n_ext)
            row["external R@1 before"] = None if e_before is None else e_before["recall"]
            row["external R@1 after DP"] = None if e_after is None else e_after["recall"]
            row["external pool N"] = n_ext
        out.append(row)
    return pd.DataFrame(out)


def dp_record(profile: str, rung: int | None = None) -> Mapping[str, Any]:
    """The DP accounting record of the mitigation (the most specialised rung by default)."""
    rungs = read_results(profile, "mitigation")["rungs"]
    chosen = rungs[-1] if rung is None else next(r for r in rungs if r["rung"] == rung)
    return chosen["dp_record"]
