"""Chapters 4 and 5 from their numbers: payload, tables and the sentences that state them.

``audit_payload(params, result)`` / ``hard_negative_payload(params, audit, hard)`` gather what the
chapter shows from the stage's typed results (:class:`.stage.AuditResult`,
:class:`.stage.HardNegativeResult`; run, from the cache, when not given); ``*_tables(payload)`` give
the displayed tables; ``*_findings(payload)`` write the summary sentences from the same numbers, so
the prose cannot contradict the tables. The payload builders ``build_audit_payload`` /
``build_hard_negative_payload`` are pure functions of those results (tested without the pipeline);
nothing here reads or writes a results file.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..config import ProfileLike, as_profile
from ..paper import PAPER, PAPER_CITATION
from .hard_negatives import describe_match
from .risk_factors import PROPERTY_LABELS
from .stage import AuditResult, HardNegativeResult, audit_ladder, hard_negative_breakdown

__all__ = [
    "audit_payload",
    "build_audit_payload",
    "audit_overview",
    "audit_tables",
    "audit_findings",
    "hard_negative_payload",
    "build_hard_negative_payload",
    "hard_negative_tables",
    "hard_negative_findings",
    "pool_label",
    "compact",
    "TIE_TOLERANCE",
]

TIE_TOLERANCE = 1e-9
"""Bounds closer than this (absolute recall) are reported as equal: no tie moves the result."""

MIN_EXPECTED_HITS = 5.0
"""A lift below 1 is called "beyond sampling noise" only when its bootstrap interval excludes 1 and
chance alone would put at least this many queries' reports first (n_queries x chance): with fewer,
a recall of zero is what chance often gives, and the bootstrap interval collapses to zero."""


def compact(frame: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """``frame`` with every float written with ``digits`` significant figures (``"%.3g"``; for the printed checks).

    Magnitudes below ``1e-6`` print as ``"<1e-06"``: such expectations (a far-ranked report's
    chance of topping a pool) sit at the level of floating-point noise, which differs between CPUs.
    """

    def sig(v: Any) -> Any:
        if not isinstance(v, (float, np.floating)):
            return v
        v = float(v)
        if np.isfinite(v) and 0 < abs(v) < 1e-6:
            return "<1e-06" if v > 0 else "-<1e-06"
        return f"{float(v):.{digits}g}"

    out = frame.copy()
    for col in out.columns:
        if out[col].dtype.kind == "f":
            out[col] = out[col].map(sig)
    return out


def pool_label(n: int, full: bool) -> str:
    """``"100"``, ``"10,000"``, or ``"full (2,000)"`` for the full database."""
    return f"full ({int(n):,})" if full else f"{int(n):,}"


def _n_label(frame: pd.DataFrame) -> pd.Series:
    return pd.Series(
        [pool_label(n, f) for n, f in zip(frame["pool_size"], frame["full_database"].astype(bool))], index=frame.index
    )


def _ci_text(lo: Any, hi: Any, fmt: str = ".3f") -> str:
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return ""
    return f" (95% CI {lo:{fmt}} to {hi:{fmt}})"


def build_audit_payload(
    result: AuditResult, ks: Sequence[int], *, profile: str | None, simulation: bool = True
) -> dict[str, Any]:
    """Chapter 4's payload from the stage's :class:`.stage.AuditResult` (``profile``, ``simulation``: of the run)."""
    table = result.table.copy()
    if "split" not in table.columns:
        table["split"] = "test"
    table["full_database"] = table["full_database"].astype(bool)
    test = table[(table["split"] == "test") & (table["pool"] == "random")].copy()
    n_db = int(test.loc[test["full_database"], "pool_size"].max())
    return {
        "profile": profile,
        "cohort": result.cohort,
        "simulation": bool(simulation),
        "ks": [int(k) for k in ks],
        "n_database": n_db,
        "n_models": int(test["model"].nunique()),
        "dropped": list(result.dropped_pool_sizes),
        "table": table,
        "random": test,
        "train": table[(table["split"] == "train") & (table["pool"] == "random")].copy(),
        "gap": result.gap.copy(),
        "risk": result.risk_factors.copy(),
        "risk_pool_size": result.risk_pool_size,
        "validation": result.extractor_validation.copy(),
        "rank_histograms": dict(result.rank_histograms),
    }


def audit_payload(params: ProfileLike, result: AuditResult | None = None) -> dict[str, Any]:
    """Chapter 4's payload from ``result`` (default: run, or read from the cache, :func:`.stage.audit_ladder`)."""
    cfg = as_profile(params)
    result = audit_ladder(cfg) if result is None else result
    return build_audit_payload(result, cfg.audit.ks, profile=cfg.name, simulation=cfg.cohort.simulation)


def audit_overview(p: Mapping[str, Any]) -> str:
    """The chapter's first sentence: profile, cohort, models, database size and dropped pool sizes."""
    what = "a **simulation** on the synthetic cohort" if p["simulation"] else "real data"
    text = (
        f"Profile `{p['profile']}`, cohort `{p['cohort']}` ({what}): {p['n_models']} models, each audited on the "
        f"held-out test split of {p['n_database']:,} image-report pairs (the full database)"
    )
    if len(p["train"]):
        n_train = int(p["train"].loc[p["train"]["full_database"].astype(bool), "pool_size"].max())
        text += f" and on a patient-level sample of {n_train:,} of the pairs it was trained on"
    text += ". "
    dropped = p["dropped"]
    if dropped:
        many = len(dropped) > 1
        text += (
            f"Pool size{'s' if many else ''} {', '.join(f'{n:,}' for n in dropped)} exceed{'' if many else 's'} "
            f"that database and {'are' if many else 'is'} not reported."
        )
    else:
        text += "Every requested pool size fits in the database."
    return text


def _wide(frame: pd.DataFrame, value: str, ks: list[int], fmt: str) -> pd.DataFrame:
    f = frame.assign(N=_n_label(frame))
    wide = f.pivot_table(index=["rung", "model", "N"], columns="k", values=value, sort=False)
    wide.columns = [fmt.format(k=k) for k in wide.columns]
    return wide[[fmt.format(k=k) for k in ks if fmt.format(k=k) in wide.columns]].reset_index()


def _tie_rows(random: pd.DataFrame) -> pd.DataFrame:
    spread = (random["recall_ties_for"] - random["recall_ties_against"]).abs()
    rows = random[spread > TIE_TOLERANCE]
    return rows.assign(N=_n_label(rows))[
        [
            "rung",
            "model",
            "N",
            "k",
            "recall_ties_against",
            "recall",
            "recall_ties_for",
            "n_queries_with_ties",
            "n_queries",
        ]
    ].rename(
        columns={
            "recall_ties_against": "ties against",
            "recall": "fair (random tie-break)",
            "recall_ties_for": "ties for",
            "n_queries_with_ties": "queries with ties",
            "n_queries": "queries",
        }
    )


def audit_tables(p: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """The chapter's tables: ``recall``, ``lift``, ``ci`` (R@1 with its CI), ``ties`` (bounds where they differ),
    ``ranks`` (full database), ``gap`` (seen vs unseen), ``risk`` and ``validation``."""
    r, ks = p["random"], p["ks"]
    k1 = r[r["k"] == min(ks)]
    out = {"recall": _wide(r, "recall", ks, "R@{k}"), "lift": _wide(r, "lift", ks, "lift@{k}")}
    out["ci"] = k1.assign(N=_n_label(k1))[
        ["rung", "model", "N", "recall", "ci_low", "ci_high", "lift", "lift_ci_low", "lift_ci_high"]
    ].reset_index(drop=True)
    out["ties"] = _tie_rows(r).reset_index(drop=True)
    full = k1[k1["full_database"]]
    out["ranks"] = (
        full[
            [
                "rung",
                "model",
                "pool_size",
                "mrr",
                "chance_mrr",
                "median_rank",
                "median_rank_ties_for",
                "median_rank_ties_against",
            ]
        ]
        .rename(
            columns={
                "pool_size": "database",
                "chance_mrr": "chance MRR",
                "median_rank": "median rank",
                "median_rank_ties_for": "median rank (ties for)",
                "median_rank_ties_against": "median rank (ties against)",
            }
        )
        .reset_index(drop=True)
    )
    gap = p["gap"]
    if len(gap):
        g = gap.assign(N=_n_label(gap))
        out["gap"] = g[
            [
                "rung",
                "model",
                "N",
                "k",
                "recall_train",
                "recall_test",
                "gap",
                "gap_ci_low",
                "gap_ci_high",
                "n_train",
                "n_test",
            ]
        ].reset_index(drop=True)
    else:
        out["gap"] = pd.DataFrame()
    risk = p["risk"]
    if len(risk):
        top = risk[risk["rung"] == risk["rung"].max()]
        out["risk"] = (
            top[["label", "effect", "ci_low", "ci_high", "prevalence"]]
            .rename(columns={"label": "property", "prevalence": "share of studies"})
            .reset_index(drop=True)
        )
    else:
        out["risk"] = pd.DataFrame()
    out["validation"] = p["validation"]
    return out


def _strongest(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["rung"] == frame["rung"].max()]


def _lift_below_one(r: pd.DataFrame) -> list[str]:
    low = r[(r["k"] == 1) & (r["lift"] < 1.0)]
    if low.empty:
        return []
    parts = []
    for row in low.sort_values(["rung", "pool_size"]).itertuples():
        expected_hits = row.n_queries * row.chance  # queries chance alone would put first
        below = np.isfinite(row.lift_ci_high) and row.lift_ci_high < 1.0 and expected_hits >= MIN_EXPECTED_HITS
        if below:
            verdict = "below chance beyond sampling noise"
        elif expected_hits < MIN_EXPECTED_HITS:
            verdict = (
                f"chance alone expects only {expected_hits:.2g} of its {row.n_queries:,} queries first, too "
                "few to tell this from chance"
            )
        else:
            verdict = "consistent with chance"
        parts.append(
            f"{row.model} at N = {pool_label(row.pool_size, row.full_database)}: {row.lift:.2f}x"
            f"{_ci_text(row.lift_ci_low, row.lift_ci_high, '.2f')}, {verdict}"
        )
    return [
        "Lift below 1 means the true report ranks below a random distractor more often than chance: "
        + "; ".join(parts)
        + ". With ties broken at random a model without any signal scores exactly 1x, so a "
        "lift reliably below 1 is a property of the model (its similarity favours other reports, e.g. the most "
        "common wording, over the pair's own), not of the tie convention."
    ]


def audit_findings(p: Mapping[str, Any]) -> list[str]:
    """The summary sentences of chapter 4, each generated from the payload's numbers."""
    r = p["random"]
    lines = [
        f"Profile `{p['profile']}`, cohort `{p['cohort']}`"
        + (
            " (simulation: synthetic cohort, tiny models; the mechanism, not the size of the real risk)."
            if p["simulation"]
            else "."
        )
    ]
    best = _strongest(r[(r["k"] == 1) & ~r["full_database"]]).set_index("pool_size")
    for n in PAPER.r1_lift_by_pool:
        if n in best.index:
            row = best.loc[n]
            lines.append(
                f"Most specialised model ({row['model']}), N = {n:,}: Recall@1 = {row['recall']:.3f}"
                f"{_ci_text(row['ci_low'], row['ci_high'])}, {row['lift']:.1f}x chance; the paper "
                f"({PAPER_CITATION}) reports {PAPER.r1_lift_at(n):g}x for its strongest model on real data."
            )
        else:
            lines.append(
                f"N = {n:,} is larger than this profile's held-out database ({p['n_database']:,} pairs): no "
                f"row; the paper reports {PAPER.r1_lift_at(n):g}x chance there."
            )
    by_rung = r[(r["k"] == 1) & r["full_database"]].sort_values("rung")
    lines.append(
        "Full-database Recall@1 by rung (least to most specialised): "
        + ", ".join(f"{x.model} {x.recall:.3g}" for x in by_rung.itertuples())
        + "."
    )
    ties = _tie_rows(r[r["k"] == 1])
    if ties.empty:
        lines.append("No held-out query ties with a distractor, so the fair recall equals both tie bounds.")
    else:
        worst = ties.assign(spread=ties["ties for"] - ties["ties against"]).sort_values("spread").iloc[-1]
        lines.append(
            f"Ties: {', '.join(dict.fromkeys(ties.sort_values('rung')['model']))} score some distractors exactly "
            f"like the true report ({int(worst['queries with ties']):,} of {int(worst['queries']):,} queries of "
            f"{worst['model']}); there, at N = {worst['N']}, Recall@1 is {worst['fair (random tie-break)']:.3g} "
            f"with ties broken at random, between {worst['ties against']:.3g} (every tie against the query) "
            f"and {worst['ties for']:.3g} (every tie for it)."
        )
    lines += _lift_below_one(r)
    lines += _gap_findings(p)
    lines += _risk_findings(p)
    lines.append(
        "Recall is an exact expectation over random pools and random tie-breaking; intervals are "
        "patient-level bootstrap 95% CIs. Chapter 5 asks how much survives when every distractor has the "
        "same findings."
    )
    return lines


def _gap_findings(p: Mapping[str, Any]) -> list[str]:
    gap = p["gap"]
    if gap.empty:
        return ["No training sample was audited (the profile turns it off), so there is no seen/unseen gap."]
    g = _strongest(gap[(gap["k"] == 1)])
    finite = g[~g["full_database"].astype(bool)]
    row = (finite[finite["pool_size"] == 100] if (finite["pool_size"] == 100).any() else g).iloc[0]
    resolved = row["gap_ci_low"] > 0 or row["gap_ci_high"] < 0
    direction = "higher" if row["gap"] > 0 else "lower"
    n_txt = pool_label(row["pool_size"], bool(row["full_database"]))
    verdict = (
        f"{direction} on the pairs it was trained on, beyond sampling noise"
        if resolved
        else "not distinguishable between trained-on and held-out pairs at this sample size"
    )
    return [
        f"Seen vs unseen ({row['model']}, N = {n_txt}): Recall@1 {row['recall_train']:.3g} on "
        f"{int(row['n_train']):,} training pairs against {row['recall_test']:.3g} on {int(row['n_test']):,} "
        f"held-out pairs, a gap of {row['gap']:+.3g}{_ci_text(row['gap_ci_low'], row['gap_ci_high'], '+.3g')}: "
        f"re-linkage is {verdict}. The DP guarantee is about the trained-on pairs."
    ]


def _risk_findings(p: Mapping[str, Any]) -> list[str]:
    risk = p["risk"]
    if risk.empty:
        return []
    top = _strongest(risk).dropna(subset=["effect"])
    n_ref = p["risk_pool_size"]
    where = f"N = {n_ref:,}" if n_ref else "the full database"
    resolved = top[(top["ci_low"] > 0) | (top["ci_high"] < 0)]
    if resolved.empty:
        return [
            f"Per-study risk ({top['model'].iloc[0]}, expected Recall@1 at {where}): no report property has an "
            "effect whose 95% interval excludes zero."
        ]
    ordered = resolved.reindex(resolved["effect"].abs().sort_values(ascending=False).index)
    parts = [
        f"{PROPERTY_LABELS.get(x.feature, x.feature)} {x.effect:+.3g}{_ci_text(x.ci_low, x.ci_high, '+.3g')}"
        for x in ordered.itertuples()
    ]
    return [
        f"Per-study risk ({top['model'].iloc[0]}, expected Recall@1 at {where}, mean "
        f"{top['mean_outcome'].iloc[0]:.3g}): the properties whose effect excludes zero, largest first, are "
        + "; ".join(parts)
        + " (change in expected Recall@1 per unit, the others held fixed)."
    ]


# --- chapter 5 -----------------------------------------------------------------------------------


def build_hard_negative_payload(
    audit: AuditResult, hard: HardNegativeResult, rule: str, *, profile: str | None, simulation: bool = True
) -> dict[str, Any]:
    """Chapter 5's payload from the audit's table (test split) and the stage's :class:`.stage.HardNegativeResult`."""
    table = audit.table.copy()
    if "split" in table.columns:
        table = table[table["split"] == "test"]
    table["full_database"] = table["full_database"].astype(bool)
    matched = table[table["pool"] == "matched"]
    n_db = int(table.loc[table["full_database"] & (table["pool"] == "random"), "pool_size"].max())
    return {
        "profile": profile,
        "cohort": audit.cohort,
        "simulation": bool(simulation),
        "rule": rule,
        "table": table,
        "breakdown": hard.by_detail,
        "n_database": n_db,
        "n_excluded": int(matched["n_excluded"].iloc[0]) if len(matched) else 0,
    }


def hard_negative_payload(
    params: ProfileLike, audit: AuditResult | None = None, hard: HardNegativeResult | None = None
) -> dict[str, Any]:
    """Chapter 5's payload from the stage's results (default: run, or read from the cache,
    :func:`.stage.audit_ladder` and :func:`.stage.hard_negative_breakdown`)."""
    cfg = as_profile(params)
    audit = audit_ladder(cfg) if audit is None else audit
    hard = hard_negative_breakdown(cfg) if hard is None else hard
    rule = describe_match("exact", cfg.audit.nan_as, cfg.audit.uncertain_as)
    return build_hard_negative_payload(audit, hard, rule, profile=cfg.name, simulation=cfg.cohort.simulation)


def _detail_pool_size(breakdown: pd.DataFrame, n_db: int) -> int:
    sizes = sorted(breakdown.loc[~breakdown["full_database"].astype(bool), "pool_size"].unique())
    return 100 if 100 in sizes else (int(sizes[-1]) if sizes else n_db)


def hard_negative_tables(p: Mapping[str, Any]) -> dict[str, pd.DataFrame]:
    """``side`` (random vs matched R@1 with effective pool and chance), ``ties``, ``sensitivity``, ``detail``."""
    t = p["table"]
    k1 = t[t["k"] == 1].assign(N=lambda f: _n_label(f))
    rnd = k1[k1["pool"] == "random"].set_index(["rung", "model", "N"])
    mat = k1[k1["pool"] == "matched"].set_index(["rung", "model", "N"])
    side = pd.DataFrame(
        {
            "R@1 random": rnd["recall"],
            "lift random": rnd["lift"],
            "R@1 matched": mat["recall"],
            "effective pool": mat["mean_pool_size"],
            "effective chance": mat["chance"],
            "lift matched": mat["lift"],
            "complete pools": mat["n_full_pools"],
            "queries": mat["n_queries"],
        }
    ).reset_index()
    out = {"side": side, "ties": _tie_rows(t[(t["pool"] == "matched") & (t["k"] == 1)]).reset_index(drop=True)}
    pos = k1[k1["pool"] == "matched-positive"].set_index(["rung", "model", "N"])
    out["sensitivity"] = pd.DataFrame(
        {
            "lift (exact match)": mat["lift"],
            "complete pools (exact)": mat["n_full_pools"],
            "lift (positive set)": pos["lift"],
            "complete pools (positive set)": pos["n_full_pools"],
        }
    ).reset_index()
    b = p["breakdown"]
    if len(b):
        n_show = _detail_pool_size(b, p["n_database"])
        sel = b[(b["k"] == 1) & (b["pool_size"] == n_show)]
        split = sel.pivot_table(
            index=["rung", "model", "detail"], columns=["pool", "mentioned"], values="lift", sort=False
        )
        order = [(pool, m) for pool in ("random", "matched") for m in (True, False) if (pool, m) in split.columns]
        split = split[order]
        split.columns = [f"{pool}, {'mentioned' if m else 'not mentioned'}" for pool, m in split.columns]
        out["detail"] = split.reset_index()
        out["detail_pool_size"] = pd.DataFrame({"pool_size": [n_show]})
    else:
        out["detail"] = pd.DataFrame()
    return out


def hard_negative_findings(p: Mapping[str, Any]) -> list[str]:
    """The summary sentences of chapter 5, each generated from the payload's numbers."""
    t = p["table"]
    top = _strongest(t[(t["k"] == 1) & ~t["full_database"]])
    n_sum = 100 if (top["pool_size"] == 100).any() else int(top["pool_size"].max())
    r = top[(top["pool"] == "random") & (top["pool_size"] == n_sum)].iloc[0]
    m = top[(top["pool"] == "matched") & (top["pool_size"] == n_sum)].iloc[0]
    lines = [
        f"Profile `{p['profile']}`, cohort `{p['cohort']}`"
        + (" (simulation: synthetic cohort and tiny models)." if p["simulation"] else "."),
        f"Most specialised model ({r['model']}), nominal N = {n_sum:,}, Recall@1: random pools {r['recall']:.3g} "
        f"(chance {r['chance']:.3g}, lift {r['lift']:.1f}x); pathology-matched pools {m['recall']:.3g}"
        f"{_ci_text(m['ci_low'], m['ci_high'], '.3g')}, where a query gets on average {m['mean_pool_size']:.1f} "
        f"candidates (effective pool; {int(m['n_full_pools']):,} of {int(m['n_queries']):,} queries had all "
        f"{n_sum:,}), so the effective chance is {m['chance']:.3g} and the lift {m['lift']:.1f}x"
        f"{_ci_text(m['lift_ci_low'], m['lift_ci_high'], '.2f')}.",
        f"Matching rule: {p['rule']}; {p['n_excluded']:,} of {p['n_database']:,} held-out queries share their label "
        "vector with no other report and are left out; the looser positive-set match is the sensitivity analysis.",
    ]
    if m["lift"] < 1.0:
        lines.append(
            "The matched-pool lift is below 1: among reports with the same findings this model ranks the true "
            "report below a random one more often than chance would; with ties broken at random a model "
            "without signal scores exactly 1x."
        )
    ties = _tie_rows(t[(t["pool"] == "matched") & (t["k"] == 1)])
    if not ties.empty:
        w = ties.assign(s=ties["ties for"] - ties["ties against"]).sort_values("s").iloc[-1]
        lines.append(
            f"Ties inside matched pools ({w['model']}, N = {w['N']}): Recall@1 {w['fair (random tie-break)']:.3g} "
            f"with random tie-breaking, bounds {w['ties against']:.3g} to {w['ties for']:.3g}."
        )
    b = p["breakdown"]
    if len(b):
        n_show = _detail_pool_size(b, p["n_database"])
        bm = b[(b["pool"] == "matched") & (b["k"] == 1) & (b["pool_size"] == n_show) & (b["rung"] == t["rung"].max())]
        gaps = {d: g.set_index("mentioned")["lift"] for d, g in bm.groupby("detail")}
        fmt = lambda v: "n/a" if not np.isfinite(v) else f"{v:.2f}x"  # noqa: E731  a subset without matched pools
        gap_txt = ", ".join(
            f"{d} {fmt(v.get(True, math.nan))} vs {fmt(v.get(False, math.nan))}" for d, v in gaps.items()
        )
        lines.append(
            f"Matched-pool lift of Recall@1 at N = {n_show:,} when the report mentions / does not mention a "
            f"detail: {gap_txt}."
        )
    return lines
