"""The summary page: findings of one profile, generated from the chapters' results JSON.

Every sentence of the summary comes from :func:`summary_findings` applied to
:func:`summary_payload`, which reads the chapters' payloads defensively: a chapter that has not
run, or a field that a chapter no longer writes, gives "not available" rather than an error.
The paper's figures come from :mod:`relink_lib.paper`; the "what was calibrated" box and the kind of each
headline number (calibration, searched, prediction) from :mod:`relink_lib.calibration`.

Payload of :func:`summary_payload` (all numbers are fractions; ``None`` = not available):

- ``audit``: strongest rung, ``points`` = Recall@1 over random pools at N = 100 and at the largest
  pool up to 10,000 (``n``, ``recall``, ``ci``, ``lift``, ``lift_ci``, ``full_database``);
- ``hard_negatives``: Recall@1 with pathology-matched pools at the largest nominal N, with the
  effective pool (mean candidates a query got) and effective chance;
- ``dp``: the relative cut of Recall@1 by the DP heads against one named baseline, with its CI
  when the mitigation results carry one, and the DP record;
- ``utility``, ``transfer``, ``risk``: linear-probe AUROC before/after, external Recall@1
  before/after, worst-case bound and attack success at the strictest budget.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import pandas as pd

from .calibration import finding_kind
from .paper import PAPER, PAPER_CITATION
from .results import read_results
from .signs import cut_phrase, drop_phrase, fmt_cut, fmt_cut_ci
from .tables import fmt_lift, fmt_sig

CHAPTERS = (
    "threat_model",
    "cohorts",
    "model_ladder",
    "audit",
    "hard_negatives",
    "mitigation",
    "utility",
    "transfer",
    "privacy_budget",
    "adaptive",
)
NA = "not available"

__all__ = [
    "load_payloads",
    "summary_payload",
    "summary_findings",
    "summary_table",
    "summary_display",
    "lift_points",
    "paper_table",
    "NA",
]


def load_payloads(profile: str, chapters: Sequence[str] = CHAPTERS) -> dict[str, Mapping[str, Any] | None]:
    """Each chapter's results payload of ``profile`` (``None`` where the chapter has not run)."""
    out: dict[str, Mapping[str, Any] | None] = {}
    for chapter in chapters:
        try:
            out[chapter] = read_results(profile, chapter)
        except (FileNotFoundError, ValueError):
            out[chapter] = None
    return out


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _count(value: Any) -> int:
    """A pool size read from a results row; a missing or non-finite one raises (the chapter is then not available)."""
    v = _num(value)
    if v is None:
        raise TypeError(f"expected a finite number, got {value!r}")
    return int(v)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _records(value: Any) -> list[Mapping[str, Any]]:
    return [r for r in value if isinstance(r, Mapping)] if isinstance(value, list) else []


def _pick(rows: Iterable[Mapping[str, Any]], **match: Any) -> list[Mapping[str, Any]]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def _held_out(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Rows of the held-out split (``split == "test"``; rows without a ``split`` are held-out rows of older results)."""
    return [r for r in rows if r.get("split", "test") == "test"]


def _ci(row: Mapping[str, Any], lo: str = "ci_low", hi: str = "ci_high") -> tuple[float, float] | None:
    a, b = _num(row.get(lo)), _num(row.get(hi))
    return (a, b) if a is not None and b is not None else None


def _strongest(rows: Sequence[Mapping[str, Any]]) -> Any:
    rungs: list[float] = [r["rung"] for r in rows if isinstance(r.get("rung"), (int, float))]
    return max(rungs) if rungs else None


def _largest_pool(rows: Sequence[Mapping[str, Any]], cap: int = 10_000) -> Mapping[str, Any] | None:
    """The row of the largest finite pool up to ``cap``; the full database when it is the only one beyond N = 100."""
    sized = [r for r in rows if (n := _num(r.get("pool_size"))) is not None and n <= cap]
    if not sized:
        return None
    return max(sized, key=lambda r: (_count(r["pool_size"]), not bool(r.get("full_database"))))


def audit_headline(audit: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Recall@1 of the strongest rung over random pools at N = 100 and the largest pool (see module doc)."""
    rows = _records((audit or {}).get("rows"))
    rung = _strongest(rows)
    rows = _pick(_held_out(rows), rung=rung, k=1, pool="random")
    if not rows:
        return None
    points = []
    n100 = [r for r in rows if _num(r.get("pool_size")) == 100 and not r.get("full_database")]
    big = _largest_pool([r for r in rows if (_num(r.get("pool_size")) or 0) > 100])
    for row in (n100[0] if n100 else None, big):
        if row is None:
            continue
        points.append(
            {
                "n": _count(row["pool_size"]),
                "recall": _num(row.get("recall")),
                "ci": _ci(row),
                "lift": _num(row.get("lift")),
                "lift_ci": _ci(row, "lift_ci_low", "lift_ci_high"),
                "chance": _num(row.get("chance")),
                "full_database": bool(row.get("full_database")),
                "n_queries": row.get("n_queries"),
            }
        )
    return {"rung": rung, "model": rows[0].get("model"), "points": points}


def hard_negative_headline(hard: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Recall@1 in pathology-matched pools of the strongest rung at the largest nominal N, with the effective pool."""
    rows = _records((hard or {}).get("matched_pools"))
    rung = _strongest(rows)
    rows = _pick(_held_out(rows), rung=rung, k=1, pool="matched")
    row = _largest_pool(rows, cap=10_000)
    if row is None:
        return None
    pool = _num(row.get("mean_pool_size"))
    chance = _num(row.get("chance"))
    recall = _num(row.get("recall"))
    return {
        "rung": rung,
        "model": row.get("model"),
        "n": _count(row["pool_size"]),
        "recall": recall,
        "ci": _ci(row),
        "effective_pool": pool,
        "effective_chance": chance,
        "lift_effective": (recall / chance) if recall is not None and chance else None,
        "n_queries": row.get("n_queries"),
        "n_excluded": row.get("n_excluded"),
    }


def _frontier_headline(mitigation: Mapping[str, Any]) -> dict[str, Any] | None:
    """Chapter 6's headline when its results carry a DP frontier: the reference point's cut with its CI."""
    frontier = _records(mitigation.get("frontier"))
    ref = mitigation.get("reference")
    if not isinstance(ref, int) or not 0 <= ref < len(frontier) or _num(frontier[ref].get("r1_reduction")) is None:
        return None
    point = frontier[ref]
    heldout = _mapping(mitigation.get("heldout"))
    base = _mapping(heldout.get("baseline"))
    n = _num(heldout.get("reference_pool_size")) or _num(
        _mapping(mitigation.get("selection_rule")).get("reference_pool_size")
    )
    setting = ", ".join(f"{k} {point[k]}" for k in ("init", "optimizer", "lr", "epochs") if k in point)
    chosen = (
        "selected by the chapter's rule"
        if mitigation.get("selected") == ref
        else "with the largest cut (no point met the chapter's rule)"
    )
    return {
        "rung": _mapping(mitigation.get("rung")).get("index"),
        "model": _mapping(mitigation.get("rung")).get("name"),
        "epsilon": _num(point.get("epsilon")),
        "delta": _num(point.get("delta")),
        "target_epsilon": _num(point.get("target_epsilon")),
        "n": int(n) if n else None,
        "reduction": _num(point["r1_reduction"]),
        "ci": _ci(mitigation, "r1_reduction_ci_low", "r1_reduction_ci_high"),
        "before": _num(base.get("r1_report")),
        "after": _num(point.get("r1_report")),
        "baseline": "the pretrained heads, on the held-out report half",
        "point": f"{chosen} ({setting})",
    }


def _confirmation_headline(mitigation: Mapping[str, Any]) -> dict[str, Any] | None:
    """Chapter 6's headline on its confirmation cohort (fresh patients never used for training or
    selection): the released DP heads' cut of Recall@1 (K = 1) at the largest N of its curve up to
    10,000, with the curve's patient-bootstrap CI; ``None`` when the results carry no such curve."""
    confirmation = _mapping(mitigation.get("confirmation"))
    if not confirmation.get("available"):
        return None
    rows = _pick(_records(confirmation.get("curve")), k=1)
    dp_rows = [r for r in rows if r.get("variant") == "dp" and _num(r.get("cut")) is not None]
    row = _largest_pool(dp_rows, cap=10_000)
    if row is None:
        return None
    n = _count(row["pool_size"])
    before = next((r for r in rows if r.get("variant") == "pretrained" and _num(r.get("pool_size")) == n), {})
    protocols = [
        p for p in _records(mitigation.get("protocols")) if p.get("name") == mitigation.get("headline_protocol")
    ]
    protocol = protocols[0] if protocols else {}
    # the protocol names its point by index; the setting it released is the factorial's (chapter 6's reference)
    setting = _mapping(protocol.get("setting")) or _mapping(
        _mapping(mitigation.get("factorial_setting")).get("setting")
    )
    described = ", ".join(f"{k} {setting[k]}" for k in ("init", "optimizer", "lr", "epochs") if k in setting)
    name = str(protocol.get("name", "")).replace("_", " ")
    return {
        "rung": _mapping(mitigation.get("rung")).get("index"),
        "model": _mapping(mitigation.get("rung")).get("name"),
        "epsilon": _num(protocol.get("epsilon")),
        "delta": _num(protocol.get("delta")),
        "target_epsilon": _num(_mapping(mitigation.get("target")).get("epsilon")),
        "n": n,
        "reduction": _num(row["cut"]),
        "ci": _ci(row, "cut_ci_low", "cut_ci_high"),
        "before": _num(before.get("recall")),
        "after": _num(row.get("recall")),
        "baseline": (
            f"the pretrained heads, on the confirmation cohort ({_count(confirmation.get('n_pairs')):,} pairs "
            "of fresh patients, never used for training or selection)"
        ),
        "point": f"released by the {name} protocol ({described})" if name else None,
    }


def dp_headline(mitigation: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The relative cut of Recall@1 by the DP heads of the strongest rung, against one named baseline.

    With a confirmation cohort in chapter 6's results, the released heads' cut there (the estimand
    closest to the paper's, N up to 10,000) and its CI; else, with a DP frontier, its reference
    point's cut on the held-out report half and its bootstrap CI; otherwise the per-rung reduction
    rows (random pools, largest N).
    """
    if isinstance(mitigation, Mapping):
        head = _confirmation_headline(mitigation) or _frontier_headline(mitigation)
        if head is not None:
            return head
    rungs = _records((mitigation or {}).get("rungs"))
    if not rungs:
        return None
    rung = max(rungs, key=lambda r: r.get("rung", -1) if isinstance(r.get("rung"), (int, float)) else -1)
    rows = _pick(_records(rung.get("reduction")), variant="dp", k=1, pool="random")
    row = _largest_pool(rows, cap=10_000)
    record = _mapping(rung.get("dp_record"))
    out: dict[str, Any] = {
        "rung": rung.get("rung"),
        "model": rung.get("model"),
        "epsilon": _num(record.get("epsilon")),
        "delta": _num(record.get("delta")),
        "target_epsilon": _num(record.get("target_epsilon")),
    }
    if row is None:
        return {**out, "reduction": None}
    ci = _ci(row, "relative_reduction_ci_low", "relative_reduction_ci_high") or _ci(row)
    baseline = row.get("baseline") or rung.get("baseline") or "the pretrained heads (no fine-tuning)"
    return {
        **out,
        "n": _count(row["pool_size"]),
        "reduction": _num(row.get("relative_reduction")),
        "ci": ci,
        "before": _num(row.get("recall_before")),
        "after": _num(row.get("recall_after")),
        "baseline": str(baseline),
    }


def utility_headline(utility: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Linear-probe and zero-shot macro AUROC of the strongest rung, pretrained and DP heads."""
    rows = _records((utility or {}).get("table"))
    rung = _strongest(rows)
    before, after = _pick(rows, rung=rung, variant="pretrained"), _pick(rows, rung=rung, variant="dp")
    if not before and not after:
        return None
    get = lambda rows, key: _num(rows[0].get(key)) if rows else None  # noqa: E731
    ci = lambda rows: _ci(rows[0], "probe_macro_auroc_ci_low", "probe_macro_auroc_ci_high") if rows else None  # noqa: E731
    return {
        "rung": rung,
        "probe_before": get(before, "probe_macro_auroc"),
        "probe_after": get(after, "probe_macro_auroc"),
        "probe_before_ci": ci(before),
        "probe_after_ci": ci(after),
        "zero_shot_before": get(before, "zero_shot_macro_auroc"),
        "zero_shot_after": get(after, "zero_shot_macro_auroc"),
        "confirmation": _confirmation_utility(_mapping((utility or {}).get("confirmation"))),
    }


def _confirmation_utility(c: Mapping[str, Any]) -> dict[str, Any] | None:
    """The confirmation cohort's zero-shot drop (chapter 7's headline), or ``None``."""
    d = _mapping(c.get("zero_shot_drop"))
    value, lo, hi = _num(d.get("value")), _num(d.get("ci_low")), _num(d.get("ci_high"))
    if value is None:
        return None
    return {"n_pairs": _num(c.get("n_pairs")), "n_seeds": _num(c.get("n_seeds")), "drop": value, "ci": (lo, hi)}


def transfer_headline(transfer: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """External-cohort Recall@1 (random pools, largest N) of the strongest rung, pretrained and DP heads."""
    rungs = _records((transfer or {}).get("rungs"))
    if not rungs:
        return None
    rung = max(rungs, key=lambda r: r.get("rung", -1) if isinstance(r.get("rung"), (int, float)) else -1)
    rows = _records(rung.get("recall"))
    before = _largest_pool(_pick(rows, variant="pretrained", pool="random", k=1), cap=10_000)
    after = _largest_pool(_pick(rows, variant="dp", pool="random", k=1), cap=10_000)
    if before is None and after is None:
        return None
    return {
        "rung": rung.get("rung"),
        "n": _count(_mapping(before or after)["pool_size"]),
        "before": _num((before or {}).get("recall")),
        "before_ci": _ci(before or {}),
        "after": _num((after or {}).get("recall")),
        "after_ci": _ci(after or {}),
    }


def risk_headline(budget: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Worst-case bound and attack success at the strictest budget and without DP (chapter 9)."""
    rows = _records((budget or {}).get("sweep"))
    finite = [r for r in rows if _num(r.get("target_epsilon")) is not None]
    if not finite:
        return None
    strict = min(finite, key=lambda r: float(r["target_epsilon"]))
    no_dp = next((r for r in rows if _num(r.get("target_epsilon")) is None), None)
    return {
        "epsilon": _num(strict.get("target_epsilon")),
        "kappa": _num(strict.get("kappa")),
        "worst_case": _num(strict.get("worst_case_risk")),
        # the gradient-access reconstruction's columns (named realistic_* in results written before issue 22)
        "attack": _num(strict.get("gradient_access_risk", strict.get("realistic_risk"))),
        "attack_chance": _num(strict.get("gradient_access_chance", strict.get("realistic_chance"))),
        "attack_no_dp": _num((no_dp or {}).get("gradient_access_risk", (no_dp or {}).get("realistic_risk"))),
        "start_init": ((budget or {}).get("start") or {}).get("init"),
    }


def adaptive_headline(adaptive: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Chapter 11's headline (``headline`` of its payload: the adaptive lift on the DP release with its CI)."""
    h = _mapping((adaptive or {}).get("headline"))
    if _num(h.get("dp_adaptive")) is None or _num(h.get("dp_passive")) is None:
        return None
    keys = ("n", "m", "attack", "full_passive", "dp_passive", "dp_adaptive", "dp_adaptive_ci", "recovered", "verdict")
    out = {k: h.get(k) for k in keys}
    rec = _mapping((adaptive or {}).get("recommendation"))
    out["recommendation"] = rec.get("sentence") if isinstance(rec.get("sentence"), str) else None
    return out


def summary_payload(payloads: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
    """The summary's numbers from the chapters' payloads (keys of :data:`CHAPTERS`; missing ones allowed)."""

    def safe(
        fn: Callable[[Any], Any], key: str
    ) -> Any:  # a chapter whose results changed shape must not take the summary down
        try:
            return fn(payloads.get(key))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None

    simulation = None
    for p in payloads.values():
        if isinstance(p, Mapping) and isinstance(p.get("provenance"), Mapping) and "simulation" in p["provenance"]:
            simulation = bool(p["provenance"]["simulation"])
            break
    return {
        "simulation": simulation,
        "audit": safe(audit_headline, "audit"),
        "hard_negatives": safe(hard_negative_headline, "hard_negatives"),
        "dp": safe(dp_headline, "mitigation"),
        "utility": safe(utility_headline, "utility"),
        "transfer": safe(transfer_headline, "transfer"),
        "risk": safe(risk_headline, "privacy_budget"),
        "adaptive": safe(adaptive_headline, "adaptive"),
    }


def _f(v: float | None, digits: int = 3) -> str:
    return NA if v is None else fmt_sig(v, digits)


def _ci_text(ci: tuple[float, float] | None, fmt: Callable[[float | None], str] = _f) -> str:
    return "no CI in the results" if ci is None else f"95% CI {fmt(ci[0])} to {fmt(ci[1])}"


def _pct(v: float | None) -> str:
    return NA if v is None else f"{100 * v:.1f}%"


def _pool(point: Mapping[str, Any]) -> str:
    return f"the full held-out database (N = {point['n']:,})" if point.get("full_database") else f"N = {point['n']:,}"


def summary_findings(payload: Mapping[str, Any]) -> list[str]:
    """The summary's sentences (Markdown), each generated from :func:`summary_payload`'s numbers."""
    sim = "this simulation" if payload.get("simulation") is not False else "this run"
    out = []
    audit = payload.get("audit")
    if not audit or not audit.get("points"):
        out.append(f"**Re-linkage.** {NA}: the audit (chapter 4) has not run on this profile.")
    else:
        parts = []
        for p in audit["points"]:
            lift = f"{_f(p['lift'])}x chance" + (f" ({_ci_text(p['lift_ci'])})" if p.get("lift_ci") else "")
            parts.append(f"Recall@1 = {_f(p['recall'])} ({_ci_text(p['ci'])}) at {_pool(p)}, {lift}")
        has_10k = any(p["n"] == 10_000 and not p["full_database"] for p in audit["points"])
        tail = "" if has_10k else " N = 10,000 is not available: the held-out split of this profile is smaller."
        out.append(
            f"**Re-linkage.** On {sim} the most specialised rung (`{audit['model']}`) re-links at "
            + "; ".join(parts)
            + f". The paper reports {PAPER.r1_lift_n100:g}x at N = 100 and "
            f"{PAPER.r1_lift_n10000:g}x at N = 10,000 ({PAPER_CITATION}).{tail}"
        )
    hard = payload.get("hard_negatives")
    if not hard or hard.get("recall") is None:
        out.append(f"**Hard negatives.** {NA}: chapter 5 has not run on this profile.")
    else:
        verdict = (
            "above"
            if hard["ci"] and hard["ci"][0] > (hard["effective_chance"] or 0)
            else "not distinguishable from"
            if hard["ci"]
            else "compared with"
        )
        out.append(
            f"**Hard negatives.** With pathology-matched distractors at nominal N = {hard['n']:,}, a query "
            f"gets on average an effective pool of {_f(hard['effective_pool'])} candidates (effective chance "
            f"{_f(hard['effective_chance'])}), not N: Recall@1 = {_f(hard['recall'])} ({_ci_text(hard['ci'])}) is "
            f"{verdict} that effective chance ({_f(hard['lift_effective'])}x)."
        )
    dp = payload.get("dp")
    if not dp or dp.get("reduction") is None:
        out.append(f"**DP heads.** {NA}: chapter 6 has not run, or its results carry no Recall@1 reduction.")
    else:
        eps = f"{dp['epsilon']:.3g}" if dp.get("epsilon") is not None else NA
        direction = "cut" if dp["reduction"] > 0 else "did not cut" if dp["reduction"] == 0 else "raised"
        change = (
            cut_phrase(dp["reduction"], *dp["ci"], adjective="relative")
            if dp.get("ci")
            else cut_phrase(dp["reduction"], adjective="relative") + " (no CI in the results)"
        )
        where = f"N = {dp['n']:,}" if dp.get("n") else "the chapter's reference pool"
        point = f" {dp['point']}" if dp.get("point") else ""
        out.append(
            f"**DP heads.** At eps = {eps} the DP heads{point} {direction} Recall@1 at {where}: "
            f"{_f(dp['before'])} -> {_f(dp['after'])}, {change} "
            f"against {dp['baseline']}. The paper reports a {_pct(PAPER.dp_r1_reduction_n10000)} cut at "
            f"N = 10,000."
            + (
                " Without an interval, a relative change of so small a recall is not evidence either way."
                if not dp.get("ci")
                else " The interval includes zero: this run cannot tell a cut from none."
                if dp["ci"][0] <= 0 <= dp["ci"][1]
                else ""
            )
        )
    util = payload.get("utility")
    if not util or util.get("probe_before") is None:
        out.append(f"**Utility.** {NA}: chapter 7 has not run on this profile.")
    else:
        cis = [f" ({_ci_text(util[k])})" if util.get(k) else "" for k in ("probe_before_ci", "probe_after_ci")]
        out.append(
            f"**Utility.** Linear-probe macro AUROC {_f(util['probe_before'])}{cis[0]} with the pretrained heads and "
            f"{_f(util['probe_after'])}{cis[1]} with the DP heads; zero-shot (cross-modal) "
            f"{_f(util['zero_shot_before'])} "
            f"-> {_f(util['zero_shot_after'])} (held-out split, one seed). The paper reports "
            f"{_pct(PAPER.probe_macro_auroc_before)} -> {_pct(PAPER.probe_macro_auroc_after)} (probe)."
            + _confirmation_utility_text(util.get("confirmation"))
        )
    tr = payload.get("transfer")
    if not tr or (tr.get("before") is None and tr.get("after") is None):
        out.append(f"**Transfer.** {NA}: chapter 8 has not run on this profile.")
    else:
        out.append(
            f"**Transfer.** On the external cohort (N = {tr['n']:,}) Recall@1 is {_f(tr['before'])} "
            f"({_ci_text(tr['before_ci'])}) with the pretrained heads and {_f(tr['after'])} "
            f"({_ci_text(tr['after_ci'])}) with the DP heads applied unchanged."
        )
    risk = payload.get("risk")
    if not risk or risk.get("worst_case") is None:
        out.append(f"**Reconstruction risk.** {NA}: chapter 9 has not run on this profile.")
    else:
        out.append(
            f"**Reconstruction risk.** At eps = {risk['epsilon']:g} the worst-case (ReRo) bound is "
            f"{_f(risk['worst_case'])} against a prior kappa of {_f(risk['kappa'])}"
            + (
                " for heads trained from fresh at chapter 6's released setting"
                if risk.get("start_init") == "reinit"
                else ""
            )
            + " (a bound on the head training only, not on the encoders); the gradient-access reconstruction "
            f"(which sees one pair's individual clipped noisy update, stronger than the re-linker) re-identifies "
            f"{_f(risk['attack'])} of its targets (chance {_f(risk['attack_chance'])}; without DP "
            f"{_f(risk['attack_no_dp'])})."
        )
    adaptive = payload.get("adaptive")
    if adaptive:  # chapter 11 is optional for the summary: no sentence when it has not run
        from .adaptive.summary import headline_sentence  # the chapter's own sentence, one definition

        rec = adaptive.get("recommendation")
        out.append(
            "**Adaptive attacker.** "
            + headline_sentence(adaptive, payload.get("simulation"))
            + (f" {rec}" if rec else "")
            + " (Release options and tolerances: chapter 11.)"
        )
    return out


def _confirmation_utility_text(c: Mapping[str, Any] | None) -> str:
    if not c:
        return ""
    lo, hi = c["ci"]
    known = lo is not None and hi is not None
    tell = (
        " The interval includes zero: this run cannot tell a zero-shot cost from none."
        if not known or lo <= 0 <= hi
        else ""
    )
    change = drop_phrase(c["drop"], lo, hi, note="paired over patients and seeds") if known else drop_phrase(c["drop"])
    n = f"{int(c['n_pairs']):,} pairs, " if c.get("n_pairs") else ""
    seeds = f"{int(c['n_seeds'])} seeds" if c.get("n_seeds") else "its seeds"
    return f" On the confirmation cohort ({n}{seeds}) the DP heads' macro zero-shot AUROC shows {change}.{tell}"


def summary_table(payload: Mapping[str, Any]) -> pd.DataFrame:
    """One row per headline number: this run's value and CI beside the paper's figure (``None`` = not available), and
    its ``kind`` (``calibration``, ``searched`` or ``prediction``: :func:`relink_lib.calibration.finding_kind`)."""
    rows: list[dict[str, Any]] = []
    audit = payload.get("audit") or {}
    for p in audit.get("points", []):
        paper = PAPER.r1_lift_at(p["n"]) if not p["full_database"] else None
        rows.append(
            {
                "finding": f"R@1 lift over chance, {_pool(p)}",
                "this run": p["lift"],
                "CI low": (p["lift_ci"] or (None, None))[0],
                "CI high": (p["lift_ci"] or (None, None))[1],
                "the paper": paper,
                "kind": finding_kind("lift", pool_size=None if p["full_database"] else int(p["n"])),
            }
        )
    hard = payload.get("hard_negatives") or {}
    if hard:
        rows.append(
            {
                "finding": f"R@1 / effective chance, matched pools (effective pool {_f(hard.get('effective_pool'))})",
                "this run": hard.get("lift_effective"),
                "CI low": None,
                "CI high": None,
                "the paper": None,
                "kind": finding_kind("hard_negatives"),
            }
        )
    dp = payload.get("dp") or {}
    if dp.get("reduction") is not None:
        rows.append(
            {
                "finding": "relative cut of R@1 by DP" + (f", N = {dp['n']:,}" if dp.get("n") else ""),
                "this run": dp["reduction"],
                "CI low": (dp["ci"] or (None, None))[0],
                "CI high": (dp["ci"] or (None, None))[1],
                "the paper": PAPER.dp_r1_reduction_n10000,
                "kind": finding_kind("dp_cut"),
            }
        )
    util = payload.get("utility") or {}
    for key, name, paper, kind in (
        ("probe_before", "linear-probe macro AUROC, pretrained", PAPER.probe_macro_auroc_before, "utility"),
        ("probe_after", "linear-probe macro AUROC, DP heads", PAPER.probe_macro_auroc_after, "dp_utility"),
    ):
        if util.get(key) is not None:
            rows.append(
                {
                    "finding": name,
                    "this run": util[key],
                    "CI low": None,
                    "CI high": None,
                    "the paper": paper,
                    "kind": finding_kind(kind),
                }
            )
    return pd.DataFrame(rows, columns=["finding", "this run", "CI low", "CI high", "the paper", "kind"])


def paper_table() -> pd.DataFrame:
    """The paper's quoted figures (:data:`relink_lib.paper.PAPER`), one row each (``figure``, ``value``)."""
    return pd.DataFrame(PAPER.as_rows())[["figure", "value"]]


def summary_display(payload: Mapping[str, Any]) -> pd.DataFrame:
    """:func:`summary_table` as display strings: each value in its unit with its CI, beside the paper's."""
    rows = []
    for r in summary_table(payload).to_dict(orient="records"):
        name = r["finding"]
        cut = "cut" in name and not ("lift" in name or "effective chance" in name)
        fmt = fmt_lift if ("lift" in name or "effective chance" in name) else fmt_cut if cut else fmt_sig
        value = fmt(r["this run"])
        if _num(r["CI low"]) is not None and _num(r["CI high"]) is not None:
            # a cut's interval names the direction of each end (relink_lib.signs): "2.0% rise to 12.0% cut"
            ci = fmt_cut_ci(r["CI low"], r["CI high"]) if cut else f"{fmt(r['CI low'])} to {fmt(r['CI high'])}"
            value += f" ({ci})"
        rows.append(
            {
                "finding": name,
                "this run (95% CI)": value,
                "the paper": NA if _num(r["the paper"]) is None else fmt(r["the paper"]),
                "kind": r["kind"],
            }
        )
    return pd.DataFrame(rows, columns=["finding", "this run (95% CI)", "the paper", "kind"])


def lift_points(audit: Mapping[str, Any] | None) -> pd.DataFrame:
    """Recall@1 lift with its CI per rung at N = 100 and the largest pool up to 10,000 (random pools).

    Columns ``rung, model, n, full_database, lift, lift_ci_low, lift_ci_high``; empty when the
    audit has not run.
    """
    rows = _records((audit or {}).get("rows"))
    out = []
    for rung in sorted({r["rung"] for r in rows if isinstance(r.get("rung"), (int, float))}):
        mine = _pick(_held_out(rows), rung=rung, k=1, pool="random")
        n100 = [r for r in mine if _num(r.get("pool_size")) == 100 and not r.get("full_database")]
        big = _largest_pool([r for r in mine if (_num(r.get("pool_size")) or 0) > 100])
        for row in (n100[0] if n100 else None, big):
            if row is not None:
                ci = _ci(row, "lift_ci_low", "lift_ci_high") or (None, None)
                out.append(
                    {
                        "rung": rung,
                        "model": row.get("model"),
                        "n": _count(row["pool_size"]),
                        "full_database": bool(row.get("full_database")),
                        "lift": _num(row.get("lift")),
                        "lift_ci_low": ci[0],
                        "lift_ci_high": ci[1],
                    }
                )
    return pd.DataFrame(out, columns=["rung", "model", "n", "full_database", "lift", "lift_ci_low", "lift_ci_high"])
