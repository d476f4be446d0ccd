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
from .risk_factors import LENGTH_FEATURE
from .stage import AuditResult, HardNegativeResult, RiskRefit, audit_ladder, hard_negative_breakdown

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
    "gap_findings",
    "risk_findings",
    "risk_table",
    "risk_check_table",
    "risk_plot_frame",
    "risk_refit_table",
    "risk_refit_findings",
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
        gap = p["gap"]
        n_split = int(gap["n_train_split"].max()) if "n_train_split" in gap.columns and len(gap) else n_train
        text += (
            f" and on all {n_split:,} pairs it was trained on"
            if n_split <= n_train
            else f" and on a patient-level sample of {n_train:,} of the {n_split:,} pairs it was trained on"
        )
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
        g = gap.assign(N=_gap_n_label(gap), verdict=[_gap_verdict(r) for _, r in gap.iterrows()])
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
                "verdict",
                "n_train",
                "n_test",
            ]
        ].reset_index(drop=True)
    else:
        out["gap"] = pd.DataFrame()
    out["risk"] = risk_table(p["risk"])
    out["risk_check"] = risk_check_table(p["risk"])
    out["validation"] = p["validation"]
    return out


def _gap_n_label(gap: pd.DataFrame) -> pd.Series:
    """N labels of the gap table: the largest common N is ``full (m)`` when neither split was cut, else
    ``largest common (m)`` (the whole of the smaller split against subsamples of the larger one)."""
    sub = gap["subsampled"].fillna("").astype(str) if "subsampled" in gap.columns else pd.Series("", gap.index)
    return pd.Series(
        [
            (f"largest common ({int(n):,})" if s else pool_label(n, True)) if bool(f) else pool_label(n, False)
            for n, f, s in zip(gap["pool_size"], gap["full_database"], sub)
        ],
        index=gap.index,
    )


def _excludes(lo: Any, hi: Any, null: float = 0.0) -> bool:
    return bool(np.isfinite(lo) and np.isfinite(hi) and (lo > null or hi < null))


def _too_few_hits(row: Any) -> bool:
    """Fewer than :data:`MIN_EXPECTED_HITS` queries re-linked on both sides together: a bootstrap interval
    built from so few hits collapses (a side with none has a zero-width interval) and cannot be read."""
    hits = float(row["n_train"]) * float(row["recall_train"]) + float(row["n_test"]) * float(row["recall_test"])
    return hits < MIN_EXPECTED_HITS


def _gap_verdict(row: Any) -> str:
    if _too_few_hits(row) or not _excludes(row["gap_ci_low"], row["gap_ci_high"]):
        return "cannot tell"
    return "seen higher" if row["gap"] > 0 else "seen lower"


def _ci_cols(frame: pd.DataFrame, prefix: str, name: str) -> dict[str, pd.Series]:
    return {
        name: frame[prefix],
        f"{name} low": frame[f"{prefix}_ci_low"],
        f"{name} high": frame[f"{prefix}_ci_high"],
    }


def risk_table(risk: pd.DataFrame) -> pd.DataFrame:
    """The most specialised rung's per-study model: per property its mean (share of studies for a yes/no
    property), the marginal odds ratio and the adjusted one (without report length; NaN for length),
    each with its 95% CI (empty frame when there is no model)."""
    if risk.empty:
        return pd.DataFrame()
    top = _strongest(risk).reset_index(drop=True)
    return pd.DataFrame(
        {
            "property": top["label"],
            "mean or share": top["mean"],
            **_ci_cols(top, "or_marginal", "OR alone"),
            **_ci_cols(top, "or_adjusted", "OR adjusted"),
        }
    )


def risk_plot_frame(risk: pd.DataFrame) -> pd.DataFrame:
    """Rows for :func:`relink_lib.plots.audit.plot_risk_factors`: ``effect`` is the average marginal effect
    on the expected Recall@1 of the adjusted model (report length: of its own model), with its 95% CI."""
    out = risk.copy()
    if out.empty:
        return out.assign(effect=pd.Series(dtype=float), ci_low=pd.Series(dtype=float), ci_high=pd.Series(dtype=float))
    alone = out["feature"] == LENGTH_FEATURE  # length is not in the adjusted model: its own row
    for dst, suffix in (("effect", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high")):
        out[dst] = out[f"ame_adjusted{suffix}"].where(~alone, out[f"ame_marginal{suffix}"])
    return out


def _check_verdict(o: float, lo: float, hi: float) -> str:
    if not np.isfinite(o):
        return "not estimable"
    if not _excludes(lo, hi, 1.0):
        return "cannot tell"
    return "positive, as the generator implies" if o > 1 else "negative: contradicts the generator"


def risk_check_table(risk: pd.DataFrame) -> pd.DataFrame:
    """The model against the generator (most specialised rung): for each property the synthetic generator
    makes more specific (``expected_sign == "+"``) and records, the marginal odds ratio of the extracted
    property and of the generator's own flag, with 95% CIs and a verdict (empty for real cohorts)."""
    if risk.empty or "or_truth" not in risk.columns:
        return pd.DataFrame()
    top = _strongest(risk)
    top = top[(top["expected_sign"] == "+") & (top["truth_column"].fillna("").astype(str) != "")]
    top = top.reset_index(drop=True)
    if top.empty:
        return pd.DataFrame()
    return pd.DataFrame(
        {
            "property": top["label"],
            "generator flag": top["truth_column"],
            **_ci_cols(top, "or_marginal", "OR (extracted)"),
            **_ci_cols(top, "or_truth", "OR (generator)"),
            "verdict": [
                _check_verdict(o, lo, hi)
                for o, lo, hi in zip(top["or_truth"], top["or_truth_ci_low"], top["or_truth_ci_high"])
            ],
        }
    )


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
    lines += gap_findings(p)
    lines += risk_findings(p)
    lines.append(
        "Recall is an exact expectation over random pools and random tie-breaking; intervals are "
        "patient-level bootstrap 95% CIs. Chapter 5 asks how much survives when every distractor has the "
        "same findings."
    )
    return lines


GAP_REPORT_SIZES: tuple[int, ...] = (100, 1000)
"""Pool sizes the seen/unseen sentences report, beside the largest common N."""


def gap_findings(p: Mapping[str, Any]) -> list[str]:
    """The seen/unseen sentence of chapter 4: the gap at N = 100, 1,000 and the largest common N of the most
    specialised model, each with its interval and "cannot tell" where it includes zero; what *seen* means."""
    gap = p["gap"]
    if gap.empty:
        return ["No training sample was audited (the profile turns it off), so there is no seen/unseen gap."]
    g = _strongest(gap[gap["k"] == 1]).copy()
    g["full_database"] = g["full_database"].astype(bool)
    first = g.iloc[0]
    m, sub = int(first["n_train"]), str(first["subsampled"]) if "subsampled" in g.columns else ""
    sub = "" if sub == "nan" else sub
    if sub:
        cut = "held-out" if sub == "test" else "training"
        other = "training" if sub == "test" else "held-out"
        n_cut = int(first["n_test_split" if sub == "test" else "n_train_split"])
        how = (
            f"the {cut} split ({n_cut:,} pairs) cut by patient to the {other} split's {m:,}, "
            f"{int(first['n_draws'])} draws pooled in the bootstrap"
        )
    else:
        how = f"both splits hold {m:,} pairs, so neither is cut"
    parts = []
    for n in GAP_REPORT_SIZES:
        rows = g[~g["full_database"] & (g["pool_size"] == n)]
        if len(rows):
            parts.append(_gap_part(f"N = {n:,}", rows.iloc[0]))
    common = g[g["full_database"]]
    if len(common):
        parts.append(_gap_part(f"the largest common N, {m:,}", common.iloc[0]))
    missing = [f"{n:,}" for n in GAP_REPORT_SIZES if n >= m]
    tail = f" (N = {' and '.join(missing)} exceed{'s' if len(missing) == 1 else ''} the common size)" if missing else ""
    return [
        f"Seen vs unseen ({first['model']}; equal N and equal database size: {how}), Recall@1 on trained-on "
        "against held-out pairs: " + "; ".join(parts) + tail + ". Here *seen* means seen in training by both "
        "the encoders and the projection heads (every model of the ladder is trained end to end on the "
        "training split); the DP heads of chapter 6 retrain the heads only, so their guarantee does not "
        "reach what the encoders learned from these pairs."
    ]


def _gap_part(where: str, row: Any) -> str:
    ci = _ci_text(row["gap_ci_low"], row["gap_ci_high"], "+.3g")
    if _too_few_hits(row):
        verdict = f"fewer than {MIN_EXPECTED_HITS:g} queries re-linked on both sides together: cannot tell"
    elif _excludes(row["gap_ci_low"], row["gap_ci_high"]):
        verdict = f"{'higher' if row['gap'] > 0 else 'lower'} on the trained-on pairs beyond sampling noise"
    else:
        verdict = "the interval includes zero: cannot tell"
    return (
        f"at {where}, {row['recall_train']:.3g} vs {row['recall_test']:.3g}, a gap of {row['gap']:+.3g}{ci}, {verdict}"
    )


def _or_text(label: str, o: float, lo: float, hi: float) -> str:
    return f"{label} {o:.2f}{_ci_text(lo, hi, '.2f')}"


def _resolved_ors(top: pd.DataFrame, prefix: str) -> tuple[list[str], list[str]]:
    """``(resolved, unresolved)``: OR texts whose interval excludes 1, largest effect first, and the labels
    of the estimated properties whose interval includes 1 (length is left out of the adjusted form)."""
    est = top.dropna(subset=[prefix])
    hit = est[[_excludes(lo, hi, 1.0) for lo, hi in zip(est[f"{prefix}_ci_low"], est[f"{prefix}_ci_high"])]]
    order = hit.reindex(np.log(hit[prefix]).abs().sort_values(ascending=False).index)
    texts = [
        _or_text(x.label, getattr(x, prefix), getattr(x, f"{prefix}_ci_low"), getattr(x, f"{prefix}_ci_high"))
        for x in order.itertuples()
    ]
    return texts, [str(v) for v in est.loc[~est.index.isin(hit.index), "label"]]


def risk_findings(p: Mapping[str, Any]) -> list[str]:
    """The per-study sentences of chapter 4: the odds ratios whose interval excludes 1, one property at a
    time and adjusted (without report length), "cannot tell" for the others, and the check against the
    generator (synthetic cohorts)."""
    risk = p["risk"]
    if risk.empty:
        return []
    top = _strongest(risk)
    n_ref = p["risk_pool_size"]
    where = f"N = {n_ref:,}" if n_ref else "the full database"
    model, mean = top["model"].iloc[0], top["mean_outcome"].iloc[0]
    lines = []
    for prefix, intro in (
        (
            "or_marginal",
            f"Per-study risk ({model}, expected Recall@1 at {where}, mean {mean:.3g}; fractional logit, odds "
            "ratios with 95% CIs cluster-robust by patient), one property at a time: ",
        ),
        ("or_adjusted", "Adjusted for each other, but not for report length (it mediates them): "),
    ):
        hit, unresolved = _resolved_ors(top, prefix)
        text = intro + ("; ".join(hit) if hit else "no odds ratio whose interval excludes 1")
        if unresolved:
            text += f"; cannot tell for {', '.join(unresolved)} (the interval includes 1)"
        candidates = top if prefix == "or_marginal" else top[top["feature"] != LENGTH_FEATURE]
        missing = [str(v) for v in candidates.loc[candidates[prefix].isna(), "label"]]
        if missing:
            text += f"; not estimable for {', '.join(missing)} (constant, or one level never or always re-linked)"
        lines.append(text + ".")
    check = risk_check_table(risk)
    if len(check):
        parts = [
            f"{r['property']} "
            + (
                _or_text("OR", r["OR (generator)"], r["OR (generator) low"], r["OR (generator) high"])
                + f" ({r['verdict']})"
                if np.isfinite(r["OR (generator)"])
                else "not estimable"
            )
            for _, r in check.iterrows()
        ]
        verdicts = set(check["verdict"])
        if verdicts == {"positive, as the generator implies"}:
            outcome = "The model passes this check."
        elif "negative: contradicts the generator" in verdicts:
            outcome = "The model fails this check on this profile."
        else:
            outcome = (
                "The check is inconclusive on this profile (an interval includes 1, or an odds ratio is not estimable)."
            )
        lines.append(
            "Against the generator: it writes a device, a side or a measurement into a report only when the "
            "study has one, so those reports have fewer look-alikes and the model must find them positive. With "
            "the generator's own flags, one at a time: " + "; ".join(parts) + ". " + outcome
        )
    return lines


def risk_refit_table(refit: RiskRefit, form: str = "adjusted") -> pd.DataFrame:
    """Chapter 6's table: per property, the odds ratio before (``pretrained`` heads) and after (``dp`` heads)
    with 95% CIs, from :class:`.stage.RiskRefit` (``form``: ``adjusted``, report length on its own, or ``marginal``)."""
    if form not in ("adjusted", "marginal"):
        raise ValueError(f"form={form!r}: expected 'adjusted' or 'marginal'")
    e = refit.effects
    cols = {}
    for variant, name in (("pretrained", "OR before"), ("dp", "OR after")):
        v = e[e["variant"] == variant].reset_index(drop=True)
        prefix = f"or_{form}"
        o, lo, hi = (v[prefix], v[f"{prefix}_ci_low"], v[f"{prefix}_ci_high"])
        if form == "adjusted":  # report length: its own (marginal) model
            alone = v["feature"] == LENGTH_FEATURE
            o, lo, hi = (
                o.where(~alone, v["or_marginal"]),
                lo.where(~alone, v["or_marginal_ci_low"]),
                hi.where(~alone, v["or_marginal_ci_high"]),
            )
        cols["property"] = v["label"]
        cols |= {name: o, f"{name} low": lo, f"{name} high": hi}
    return pd.DataFrame(cols)


def risk_refit_findings(refit: RiskRefit, simulation: bool = True) -> list[str]:
    """The sentences under chapter 6's refit table: which properties still predict re-linkage under the DP heads."""
    e = refit.effects
    where = f"N = {refit.pool_size:,}" if refit.pool_size else f"the full held-out database ({refit.n_database:,})"
    mean = {v: float(g["mean_outcome"].iloc[0]) for v, g in e.groupby("variant")}
    t = risk_refit_table(refit)
    still = [
        _or_text(r["property"], r["OR after"], r["OR after low"], r["OR after high"])
        for _, r in t.iterrows()
        if _excludes(r["OR after low"], r["OR after high"], 1.0)
    ]
    lost = [
        str(r["property"])
        for _, r in t.iterrows()
        if _excludes(r["OR before low"], r["OR before high"], 1.0)
        and not _excludes(r["OR after low"], r["OR after high"], 1.0)
    ]
    sim = " (a simulation)" if simulation else ""
    lines = [
        f"The per-study model of chapter 4 refit under the released DP heads{sim}: expected Recall@1 at {where} "
        f"averages {mean.get('pretrained', float('nan')):.3g} before and {mean.get('dp', float('nan')):.3g} after; "
        "odds ratios from the adjusted model (report length from its own), 95% CIs cluster-robust by patient."
    ]
    lines.append(
        "Still predicting re-linkage under the DP heads (interval excludes 1): " + "; ".join(still) + "."
        if still
        else "Under the DP heads no property's odds ratio has an interval that excludes 1: cannot tell which "
        "properties still predict re-linkage."
    )
    if lost:
        lines.append(f"Resolved before but cannot tell after: {', '.join(lost)}.")
    return lines


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
