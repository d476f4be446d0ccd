"""Chapter 11's payload, tables and sentences, from :class:`relink_lib.adaptive.stage.AdaptiveResult` only.

:func:`recommend` is the custodian's rule (pure, unit-tested): an option is acceptable when the upper 95% bound
of its adaptive lift at the largest pool it allows (N = 10,000 capped at the test split, or ``n_max`` for the
restricted option) is at most ``max_adaptive_lift_n10000`` and its macro zero-shot AUROC is at most
``max_zero_shot_drop`` percentage points below the full model's (no zero-shot ability fails). Among acceptable
options it recommends the one with the smallest zero-shot drop, then the smallest risk.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from ..config import ProfileLike, as_profile
from ..tables import fmt_sig
from .stage import AdaptiveResult, ReleaseOption

OPTION_LABELS: dict[str, str] = {
    "full_model": "full model",
    "dp_heads": "DP heads",
    "public_only_heads": "public-only heads",
    "image_tower_only": "image tower only",
    "restricted_pools": "full model, pools restricted",
}


def _upper(value: float, ci: Sequence[float] | None) -> float:
    return float(ci[1]) if ci is not None else float(value)


def zero_shot_drop(option: ReleaseOption, full: ReleaseOption) -> float | None:
    """Percentage points of macro zero-shot AUROC lost against the full model (``None``: no zero-shot)."""
    if option.zero_shot_auroc is None or full.zero_shot_auroc is None:
        return None
    return 100.0 * (full.zero_shot_auroc - option.zero_shot_auroc)


def recommend(options: Sequence[ReleaseOption], max_lift: float, max_zero_shot_drop: float) -> dict[str, Any]:
    """The custodian's recommendation under the tolerances (see the module docstring).

    Returns ``acceptable`` (option names), ``recommended`` (a name or ``None``), ``reasons`` (option -> why it
    fails, or "meets both") and ``sentence``.
    """
    by = {o.option: o for o in options}
    full = by.get("full_model", options[0])
    reasons: dict[str, str] = {}
    ok = []
    for o in options:
        risk = _upper(o.risk_lift, o.risk_lift_ci)
        drop = zero_shot_drop(o, full)
        why = []
        if not risk <= max_lift:
            why.append(f"adaptive lift up to {fmt_sig(risk)}x at N = {o.risk_pool_size:,} > {max_lift:g}x")
        if drop is None:
            why.append("no zero-shot ability")
        elif drop > max_zero_shot_drop:
            why.append(f"zero-shot drop {drop:.2f} points > {max_zero_shot_drop:g}")
        reasons[o.option] = "; ".join(why) if why else "meets both"
        if not why:
            ok.append((drop if drop is not None else math.inf, risk, o.option))
    rec = min(ok)[2] if ok else None
    tol = (
        f"(adaptive lift at most {max_lift:g}x chance, upper 95% bound; zero-shot drop at most {max_zero_shot_drop:g} "
    )
    tol += "percentage points)"
    if rec is None:
        sentence = (
            f"No release option meets the profile's risk tolerances {tol}: the custodian cannot release under "
            "them, and should change the tolerances, the data or the model, not the heads."
        )
    else:
        sentence = f"Under the profile's tolerances {tol} the recommended release is **{OPTION_LABELS.get(rec, rec)}**."
    return {"acceptable": [x[2] for x in sorted(ok)], "recommended": rec, "reasons": reasons, "sentence": sentence}


def options_table(result: AdaptiveResult) -> pd.DataFrame:
    """One row per release option: passive and adaptive lift (CIs), utility, the risk the rule reads."""
    full = next(o for o in result.options if o.option == "full_model")

    def ci(c: Sequence[float] | None) -> str:
        return "" if c is None else f"{fmt_sig(c[0])} to {fmt_sig(c[1])}"

    rows = []
    for o in result.options:
        drop = zero_shot_drop(o, full)
        rows.append(
            {
                "option": OPTION_LABELS.get(o.option, o.option),
                f"passive lift N={result.pool_small}": o.passive_lift_small,
                "passive CI": ci(o.passive_lift_small_ci),
                f"passive lift N={result.pool_ref}": o.passive_lift_ref,
                f"adaptive lift N={result.pool_ref}": o.adaptive_lift_ref,
                "adaptive CI": ci(o.adaptive_lift_ref_ci),
                "risk N": o.risk_pool_size,
                "risk lift": o.risk_lift,
                "risk CI": ci(o.risk_lift_ci),
                "best attack": o.adaptive_attack,
                "zero-shot AUROC": o.zero_shot_auroc,
                "zero-shot drop (points)": drop,
                "probe AUROC": o.probe_auroc,
                "P@10": o.retrieval_p10,
                "note": o.note,
            }
        )
    return pd.DataFrame(rows)


def protection_table(result: AdaptiveResult) -> pd.DataFrame:
    """Who is protected: one row per group of patients (lift at N = 100 capped by the group's size)."""
    rows = []
    for r in result.protection:

        def cell(v: float, c: Sequence[float]) -> str:
            return f"{fmt_sig(v)} ({fmt_sig(c[0])} to {fmt_sig(c[1])})"

        rows.append(
            {
                "group": r.group,
                "pairs": r.n_pairs,
                "N": r.pool_size,
                "saw their data": r.saw,
                "guarantee": r.guarantee,
                "passive before": cell(r.passive_before, r.passive_before_ci),
                "passive after": cell(r.passive_after, r.passive_after_ci),
                "adaptive before": cell(r.adaptive_before, r.adaptive_before_ci),
                "adaptive after": cell(r.adaptive_after, r.adaptive_after_ci),
                "attacker's pairs": f"{r.adaptive_source}, m = {r.adaptive_m:,}",
            }
        )
    return pd.DataFrame(rows)


def tail_table(result: AdaptiveResult) -> pd.DataFrame:
    """Per-patient tail at N = pool_small: fraction above 10x chance and top-1% mean, with CIs."""
    return pd.DataFrame(
        [
            {
                "condition": t.condition,
                "patients": t.n_patients,
                "fraction above 10x chance": t.fraction_above,
                "CI": f"{fmt_sig(t.fraction_above_ci[0])} to {fmt_sig(t.fraction_above_ci[1])}",
                "top 1% mean R@1": t.top_mean,
                "CI ": f"{fmt_sig(t.top_mean_ci[0])} to {fmt_sig(t.top_mean_ci[1])}",
            }
            for t in result.tail
        ]
    )


def headline(result: AdaptiveResult) -> dict[str, Any]:
    """The chapter's main numbers: the DP release's passive lift, the adaptive lift on it at m_ref (best attack,
    with CI), the full model's passive lift, the share of the DP cut recovered, and the verdict."""
    dp = next(o for o in result.options if o.option == "dp_heads")
    full = next(o for o in result.options if o.option == "full_model")
    assert dp.passive_lift_ref is not None and full.passive_lift_ref is not None and dp.adaptive_lift_ref is not None
    cut = full.passive_lift_ref - dp.passive_lift_ref
    recovered = (dp.adaptive_lift_ref - dp.passive_lift_ref) / cut if cut > 0 else None
    ci = dp.passive_lift_ref_ci
    if cut <= 0 or (ci is not None and ci[0] <= full.passive_lift_ref <= ci[1]):
        verdict = "no_cut"
    elif recovered is not None and recovered >= 0.5:
        verdict = "not_stopped"
    else:
        verdict = "stopped"
    return {
        "n": result.pool_ref,
        "m": max(result.adaptive_m.values()),
        "attack": dp.adaptive_attack,
        "full_passive": full.passive_lift_ref,
        "dp_passive": dp.passive_lift_ref,
        "dp_adaptive": dp.adaptive_lift_ref,
        "dp_adaptive_ci": list(dp.adaptive_lift_ref_ci) if dp.adaptive_lift_ref_ci else None,
        "recovered": recovered,
        "verdict": verdict,
    }


def headline_sentence(h: Mapping[str, Any], simulation: bool | None = True) -> str:
    """One sentence from :func:`headline` (also used by the summary page)."""
    where = "this simulation" if simulation is not False else "this run"
    ci = h.get("dp_adaptive_ci")
    ci_text = f" (95% CI {fmt_sig(ci[0])} to {fmt_sig(ci[1])})" if ci else ""
    base = (
        f"On {where}, an attacker holding the released frozen encoders and m = {h['m']:,} public image-report "
        f"pairs re-links the DP-head release at {fmt_sig(h['dp_adaptive'])}x chance at N = {h['n']:,}{ci_text}, "
        f"against {fmt_sig(h['dp_passive'])}x for the DP heads used as released and {fmt_sig(h['full_passive'])}x "
        f"for the full model"
    )
    if h["verdict"] == "no_cut":
        return base + (
            ": the DP heads' passive cut is not distinguishable from zero here (the full model's lift lies inside "
            "the DP heads' 95% CI), so there is no cut to recover."
        )
    rec = h.get("recovered")
    share = "an unknown share" if rec is None else "all" if rec >= 1 else f"{100 * rec:.0f}%"
    if h["verdict"] == "not_stopped":
        return base + f"; it recovers {share} of the DP cut: **head-only DP does not stop this attacker.**"
    return base + f"; it recovers {share} of the DP cut, less than half, at the m values tried."


def m_half_table(result: AdaptiveResult) -> pd.DataFrame:
    """Per released variant and source: the passive cut and the smallest m recovering half / all of it."""
    return pd.DataFrame([r.to_json() for r in result.m_half])


def adaptive_findings(params: ProfileLike, result: AdaptiveResult) -> list[str]:
    """The chapter's sentences (Markdown), generated from the result and the profile's tolerances."""
    cfg = as_profile(params)
    h = headline(result)
    out = [headline_sentence(h, cfg.cohort.simulation)]
    dp_rows = [r for r in result.m_half if r.variant == "dp"]
    for r in dp_rows:
        if r.cut <= 0:
            continue
        half = "no m tried" if r.m_half is None else f"m = {r.m_half:,}"
        full = "no m tried" if r.m_all is None else f"m = {r.m_all:,}"
        out.append(
            f"With public pairs from the {r.source} source ({result.sources[r.source]:,} available), half of the DP "
            f"cut at N = {result.pool_ref:,} is recovered from {half}, all of it from {full}."
        )
    tr = next(r for r in result.protection if r.group.startswith("head-train"))
    out.append(
        f"The private head-train patients, the only ones the (eps, delta) guarantee names, are re-linked at "
        f"{fmt_sig(tr.passive_after)}x chance at N = {tr.pool_size:,} through the DP heads and "
        f"{fmt_sig(tr.adaptive_after)}x by the adaptive attacker: the encoders, released without DP, saw the same "
        "pairs, so the guarantee on the heads does not bound what the release reveals about them."
    )
    rec = recommend(result.options, cfg.adaptive.max_adaptive_lift_n10000, cfg.adaptive.max_zero_shot_drop)
    out.append(rec["sentence"])
    return out


def outcome_records(result: AdaptiveResult) -> list[dict[str, Any]]:
    """The outcomes as stored in ``adaptive.json``: each record with ``r1_lift_n100`` / ``r1_lift_n10000`` and their
    CIs beside ``lift_small`` / ``lift_ref`` (the same numbers; N capped at the held-out split minus one)."""
    out = []
    for o in result.outcomes:
        d = o.to_json()
        d.update(
            r1_lift_n100=d["lift_small"],
            r1_lift_n100_ci=d["lift_small_ci"],
            r1_lift_n10000=d["lift_ref"],
            r1_lift_n10000_ci=d["lift_ref_ci"],
        )
        out.append(d)
    return out


def adaptive_payload(params: ProfileLike, result: AdaptiveResult) -> dict[str, Any]:
    """What ``results/<profile>/adaptive.json`` stores (the per-patient arrays stay in the cache)."""
    cfg = as_profile(params)
    data = result.to_json()
    data.pop("per_patient")
    data["outcomes"] = outcome_records(result)
    rec = recommend(result.options, cfg.adaptive.max_adaptive_lift_n10000, cfg.adaptive.max_zero_shot_drop)
    return {
        **data,
        "main_table": "outcomes",
        "headline": headline(result),
        "recommendation": rec,
        "tolerances": {
            "max_adaptive_lift_n10000": cfg.adaptive.max_adaptive_lift_n10000,
            "max_zero_shot_drop": cfg.adaptive.max_zero_shot_drop,
        },
        "findings": adaptive_findings(cfg, result),
    }
