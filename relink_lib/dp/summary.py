"""Tables and results payloads of chapters 6-8 from the cached stage outputs (:mod:`relink_lib.dp.stage`)."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..config import ProfileLike, as_profile
from ..paper import PAPER, PAPER_CITATION
from ..signs import (
    CUT,
    MORE_CUT,
    change_phrase,
    drop_phrase,
    fmt_change,
    fmt_change_ci,
    fmt_cut,
    fmt_cut_ci,
)
from .factorial import Estimate
from .factorial_stage import BASE_ARM as BASE_ARM_NAME
from .factorial_stage import FactorialResult
from .frontier import FrontierPoint, FrontierResult
from .outcomes import recall_reduction
from .stage import VARIANTS, RungMitigation, reduction_at_reference

PAPER_REFERENCE: dict[str, Any] = {**asdict(PAPER), "source": f"{PAPER_CITATION} (the paper's numbers, not ours)"}
"""The paper's figures as the results JSON quotes them (from :data:`relink_lib.paper.PAPER`)."""
RECORD_KEYS = (
    "target_epsilon",
    "epsilon",
    "delta",
    "noise_multiplier",
    "sample_rate",
    "steps",
    "max_grad_norm",
    "accountant",
)


def accounting_table(ms: Sequence[RungMitigation]) -> pd.DataFrame:
    """One row per rung: the DP record and the independent accountants' epsilon beside it."""
    rows = []
    for m in ms:
        r = m.record
        ind = r.get("epsilon_independent", {})
        rows.append(
            {
                "rung": m.rung_index,
                "model": m.rung_name,
                "target_epsilon": r["target_epsilon"],
                "delta": r["delta"],
                "noise_multiplier": r["noise_multiplier"],
                "sample_rate": r["sample_rate"],
                "steps": r["steps"],
                "max_grad_norm": r["max_grad_norm"],
                "epsilon_opacus_rdp": r["epsilon"],
                "epsilon_dp_accounting_rdp": ind.get("dp_accounting_rdp"),
                "epsilon_dp_accounting_pld": ind.get("dp_accounting_pld"),
                "patient_epsilon_group": (r.get("group_privacy") or {}).get("patient_epsilon"),
                "max_pairs_per_patient": (r.get("group_privacy") or {}).get("max_pairs_per_patient"),
            }
        )
    return pd.DataFrame(rows)


def reduction_table(ms: Sequence[RungMitigation], ks: Sequence[int] = (1, 5, 10), pool: str = "random") -> pd.DataFrame:
    """Recall@K before (pretrained) and after each variant at the reference N, and the relative reduction."""
    rows = []
    for m in ms:
        for variant in VARIANTS[1:]:
            for k in ks:
                red = reduction_at_reference(m, variant, k, pool)
                rows.append(
                    {"rung": m.rung_index, "model": m.rung_name, "variant": variant, "k": k, "pool": pool, **red}
                )
    return pd.DataFrame(rows)


def utility_table(ms: Sequence[RungMitigation]) -> pd.DataFrame:
    """Macro linear-probe AUROC, macro zero-shot AUROC and retrieval precision@10 per rung and variant."""
    rows = []
    for m in ms:
        u = m.utility
        for variant in VARIANTS:
            v = u[u["variant"] == variant]

            def get(metric: str, label: str, v: pd.DataFrame = v) -> float:
                s = v[(v["metric"] == metric) & (v["label"] == label)]["value"]
                return float(s.iloc[0]) if len(s) else math.nan

            rows.append(
                {
                    "rung": m.rung_index,
                    "model": m.rung_name,
                    "variant": variant,
                    "probe_macro_auroc": get("linear_probe_auroc", "macro"),
                    "zero_shot_macro_auroc": get("zero_shot_auroc", "macro"),
                    "retrieval_precision@10": get("retrieval_precision@10", "all"),
                    "retrieval_chance@10": get("retrieval_chance@10", "all"),
                }
            )
    return pd.DataFrame(rows)


def per_label_probe(ms: Sequence[RungMitigation], rung: int = -1) -> pd.DataFrame:
    """Per-label linear-probe and zero-shot AUROC of one rung (default the most specialised), variants as columns."""
    m = ms[rung]
    u = m.utility[m.utility["metric"].isin(["linear_probe_auroc", "zero_shot_auroc"])]
    return u.pivot_table(index="label", columns=["metric", "variant"], values="value", sort=False)


def mitigation_payload(
    params: ProfileLike,
    ms: Sequence[RungMitigation],
    fr: FrontierResult | None = None,
    factorial: FactorialResult | None = None,
    *,
    with_factorial: bool = False,
    risk_refit: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """results/<profile>/mitigation.json: DP records, independent epsilons, controls, outcomes per rung,
    and (with ``fr``, :func:`relink_lib.dp.frontier_stage.get_frontier`) the frontier; with ``with_factorial``
    the factorial and the confirmation cohort (:func:`factorial_payload`; ``factorial=None``: not available);
    with ``risk_refit`` (:meth:`relink_lib.audit.stage.RiskRefit.to_json`) the per-study model of chapter 4
    refit under the DP heads, as ``risk_refit``."""
    rungs = []
    for m in ms:
        rungs.append(
            {
                "rung": m.rung_index,
                "model": m.rung_name,
                "dp_record": {
                    **{k: m.record[k] for k in RECORD_KEYS},
                    **{k: v for k, v in m.record.items() if k not in RECORD_KEYS},
                },
                "nonprivate_record": m.nonprivate_record,
                "output_perturbation": m.perturbation,
                "reference_pool_size": m.reference_pool_size,
                "reduction": reduction_table([m]).to_dict(orient="records"),
                "reduction_matched": reduction_table([m], pool="matched").to_dict(orient="records"),
                "recall": m.recall.to_dict(orient="records"),
                "history_dp": m.history.to_dict(orient="records"),
            }
        )
    dp = as_profile(params).dp
    return {
        "target": {"epsilon": dp.target_epsilon, "delta": dp.delta},
        "neighbouring_relation": "add/remove one image-report pair of the private training split (pair sampling); "
        "patients with several pairs: group privacy (see group_privacy in each record)",
        "bank": "fixed bank of the internal cohort's val split (declared public), never the private training pairs",
        "paper_reference": PAPER_REFERENCE,
        "rungs": rungs,
        "setting": ms[-1].setting if ms else None,
        **(frontier_payload(fr) if fr is not None else {}),
        **(factorial_payload(factorial) if with_factorial else {}),
        **({"risk_refit": dict(risk_refit)} if risk_refit is not None else {}),
    }


def confirmation_utility(factorial: FactorialResult | None) -> dict[str, Any] | None:
    """Chapter 7's headline on the confirmation cohort (chapter 6's factorial): the selected DP arm's macro zero-shot
    AUROC drop against the pretrained heads with its paired CI (patients and seeds), and label-level retrieval
    P@10 of both (means over seeds); ``None`` without a factorial (real-data profiles)."""
    if factorial is None:
        return None
    base, dp = factorial.arm(BASE_ARM_NAME), factorial.selected_dp_arm
    c = factorial.confirmation
    return {
        "cohort": "confirmation",
        "n_pairs": c.n_pairs,
        "n_patients": c.n_patients,
        "dp_arm": dp.name,
        "n_seeds": dp.n_seeds,
        "zero_shot_auroc_pretrained": base.zero_shot_auroc,
        "zero_shot_auroc_dp": dp.zero_shot_auroc,
        "zero_shot_drop": factorial.zero_shot_drop.to_json(),
        "retrieval_p10_pretrained": base.retrieval_precision_at_10,
        "retrieval_p10_dp": dp.retrieval_precision_at_10,
    }


def confirmation_utility_sentence(cu: Mapping[str, Any], simulation: bool = True) -> str:
    """The headline sentence of :func:`confirmation_utility` (says when the interval cannot tell)."""
    d = cu["zero_shot_drop"]
    what = "simulation" if simulation else "run"
    tell = (
        f"this {what} cannot tell the drop from zero"
        if Estimate.from_json(d).includes_zero
        else ("the DP heads cost zero-shot accuracy" if d["ci_low"] > 0 else "the DP heads gain zero-shot accuracy")
    )
    return (
        f"On the confirmation cohort ({cu['n_pairs']:,} fresh pairs of {cu['n_patients']:,} patients, never seen by "
        f"the selection; {cu['n_seeds']} noise seeds), the released DP heads ({cu['dp_arm']}) move macro zero-shot "
        f"AUROC {cu['zero_shot_auroc_pretrained']:.3f} -> {cu['zero_shot_auroc_dp']:.3f}, "
        f"{drop_phrase(d['value'], d['ci_low'], d['ci_high'], note='paired over patients and seeds')}: {tell}. "
        "Label-level retrieval precision@10 goes "
        f"{cu['retrieval_p10_pretrained']:.3f} -> {cu['retrieval_p10_dp']:.3f} (mean over seeds)."
    )


def utility_payload(ms: Sequence[RungMitigation], factorial: FactorialResult | None = None) -> dict[str, Any]:
    """results/<profile>/utility.json (``confirmation``: the headline on the confirmation cohort, when there is
    one)."""
    return {
        "confirmation": confirmation_utility(factorial),
        "protocol": {
            "linear_probe": "logistic regression (C from the profile) on standardised L2-normalised image "
            "embeddings; train split -> test split (patient-level); NaN -> negative, "
            "uncertain (-1) left out (U-Ignore)",
            "zero_shot": "cos(image, positive prompt) - cos(image, negative prompt); uncertain and missing left out",
            "retrieval": "image -> report top-10 among the other held-out reports; relevant = same positive-label set",
        },
        "paper_reference": PAPER_REFERENCE,
        "setting": ms[-1].setting if ms else None,
        "table": utility_table(ms).to_dict(orient="records"),
        "per_label": [m.utility.assign(rung=m.rung_index, model=m.rung_name).to_dict(orient="records") for m in ms],
    }


def transfer_payload(
    results: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]], internal: Sequence[RungMitigation]
) -> dict[str, Any]:
    """results/<profile>/transfer.json: external recall and utility per rung and variant."""
    out = []
    for m in internal:
        recall, util = results[m.rung_name]
        rand = recall[(recall["pool"] == "random") & (recall["k"] == 1)]
        out.append(
            {
                "rung": m.rung_index,
                "model": m.rung_name,
                "recall": recall.to_dict(orient="records"),
                "utility": util.to_dict(orient="records"),
                "r1_by_variant": rand[["variant", "pool_size", "recall", "lift"]].to_dict(orient="records"),
            }
        )
    return {"setting": internal[-1].setting if internal else None, "rungs": out}


# ------------------------------------------------------------------------------------------ frontier (chapter 6)
PAPER_CLAIM = {"min_r1_reduction": 0.5, "max_probe_auroc_drop": 0.5}
"""The paper's claim in the terms the book checks: a cut of R@1 of at least 50% with a linear-probe
macro AUROC drop of at most 0.5 points (the paper's own figures: :data:`relink_lib.paper.PAPER`)."""

FRONTIER_KEYS = (
    "frontier",
    "selection_rule",
    "selected",
    "reference",
    "reference_is_selected",
    "r1_reduction_ci_low",
    "r1_reduction_ci_high",
    "controls",
    "output_perturbation_curve",
    "seen",
    "heldout",
    "private_pool",
    "n_seeds",
    "seeds",
    "rung",
    "bank",
    "cost",
    "pilot",
    "protocols",
    "headline_protocol",
)


def frontier_payload(fr: FrontierResult) -> dict[str, Any]:
    """The frontier's part of ``results/<profile>/mitigation.json`` (``frontier``, ``selection_rule``,
    ``selected``, ...: :meth:`FrontierResult.to_json`'s fields) and the paper's claim checked against it."""
    data = fr.to_json()
    out = {k: data[k] for k in FRONTIER_KEYS if k in data}
    out["paper_claim"] = dict(PAPER_CLAIM, check=paper_claim_check(fr))
    return out


def setting_label(p: FrontierPoint | Mapping[str, Any]) -> str:
    """``reinit heads, SGD lr 0.1, 10 epochs`` for a frontier point (or a setting's dict)."""
    if isinstance(p, FrontierPoint):
        p = p.setting.as_dict()
    return f"{p['init']} heads, {'SGD' if p['optimizer'] == 'sgd' else 'Adam'} lr {p['lr']:g}, {p['epochs']:g} epochs"


FRONTIER_HEADERS: dict[str, str] = {
    "optimizer": "opt.",
    "cut_select": "cut (selection)",
    "cut_report": "cut (report)",
    "cut_seed_sd": "seed SD",
    "probe_drop": "probe drop",
    "zero_shot_drop": "zero-shot drop",
}
"""Display headers of :func:`frontier_table`'s columns on the page (the table keeps its column names)."""


def frontier_table(fr: FrontierResult, study: str | None = "grid") -> pd.DataFrame:
    """One row per frontier point (``study`` = ``grid``, ``scaling`` or ``None`` for all): settings, privacy,
    outcomes."""
    rows = []
    for i, p in enumerate(fr.frontier):
        if study is not None and p.study != study:
            continue
        rows.append(
            {
                "index": i,
                "init": p.init,
                "optimizer": p.optimizer,
                "lr": p.lr,
                "epochs": p.epochs,
                "n_private": p.n_private,
                "sigma": p.noise_multiplier,
                "steps": p.steps,
                "epsilon": p.epsilon,
                "cut_select": p.r1_reduction_select,
                "cut_report": p.r1_reduction,
                "cut_seed_sd": p.r1_reduction_seed_sd,
                "probe_drop": p.probe_auroc_drop,
                "zero_shot_drop": p.zero_shot_auroc_drop,
                "drift": p.drift,
                "selected": i == fr.selected,
            }
        )
    return pd.DataFrame(rows)


def controls_table(fr: FrontierResult) -> pd.DataFrame:
    """The reference DP point and the controls on the same axes (report half), with output perturbation's
    utility at the same cut (interpolated on its scale curve)."""
    ref = fr.reference_point.to_json()
    rows = [{"variant": "DP (" + ("selected" if fr.reference_is_selected else "reference") + ")", **_axes(ref)}]
    names = {
        "nonprivate": "non-private fine-tuning",
        "reinit_untrained": "re-initialised, untrained",
        "output_perturbation_matched": "output perturbation (matched R@1)",
    }
    for c in fr.controls:
        rows.append({"variant": names.get(c["control"], c["control"]), **_axes(c)})
    return pd.DataFrame(rows)


def _axes(p: Mapping[str, Any]) -> dict[str, float]:
    return {
        "cut_report": p.get("r1_reduction", math.nan),
        "probe_drop_report": p.get("probe_auroc_drop_report", math.nan),
        "zero_shot_drop_report": p.get("zero_shot_auroc_drop_report", math.nan),
        "drift": p.get("drift", math.nan),
        "op_zero_shot_drop_at_same_cut": p.get("output_perturbation_zero_shot_auroc_drop_report_at_same_cut", math.nan),
    }


def paper_claim_check(fr: FrontierResult) -> dict[str, Any]:
    """Whether the simulation reaches the paper's claim (:data:`PAPER_CLAIM`) on the report half.

    ``selected``: the selected point's cut, CI and probe drop (report half) and whether they meet
    the claim (``reached``; ``ci_above``: the whole CI is at least 50%); ``any_point``: the frontier
    and scaling points (means over seeds, report half) that meet it.
    """

    def meets(p: FrontierPoint) -> bool:
        cut, probe = p.r1_reduction, p.probe_auroc_drop_report
        return bool(cut >= PAPER_CLAIM["min_r1_reduction"] and probe <= PAPER_CLAIM["max_probe_auroc_drop"])

    sel = fr.selected
    out: dict[str, Any] = {"selected": None, "any_point": [i for i, p in enumerate(fr.frontier) if meets(p)]}
    if sel is not None:
        p = fr.frontier[sel]
        out["selected"] = {
            "index": sel,
            "cut": p.r1_reduction,
            "ci_low": fr.r1_reduction_ci_low,
            "ci_high": fr.r1_reduction_ci_high,
            "probe_drop": p.probe_auroc_drop_report,
            "reached": meets(p),
            "ci_above": bool(fr.r1_reduction_ci_low >= PAPER_CLAIM["min_r1_reduction"]),
        }
    return out


def _pct(x: float) -> str:
    """A size that is not a change (a seed SD): ``0.08 -> "8%"``."""
    return "n/a" if x is None or not math.isfinite(x) else f"{100 * x:.0f}%"


def _cut(x: float) -> str:
    """A cut as a value (relink_lib.signs): ``0.42 -> "42% cut"``, ``-0.1 -> "10% rise"``."""
    return fmt_cut(x, 0)


def _cutp(x: float) -> str:
    """A cut as a noun phrase: ``"a cut of 42%"``, ``"a rise of 10%"``."""
    return change_phrase(x, conv=CUT, decimals=0)


def _dropp(x: float) -> str:
    """A utility change in AUROC points as a noun phrase: ``"a drop of 0.20 points"``, ``"a gain of 4.91 points"``."""
    return drop_phrase(x)


def frontier_findings(fr: FrontierResult, simulation: bool = True) -> list[str]:
    """Chapter 6's conclusions, generated from the frontier so they cannot contradict its tables."""
    what = "this simulation" if simulation else "this run"
    rule, pts = fr.selection_rule, fr.frontier
    grid = fr.points("grid")
    n = rule.reference_pool_size
    eps_max = max(float(p.epsilon) for p in pts if p.epsilon is not None)
    out = [
        f"The frontier holds {len(grid)} settings at the own private-set size ({rule.n_private:,} pairs), each "
        f"with {fr.n_seeds} noise seeds, all at epsilon <= {eps_max:.3f} "
        f"(delta = {pts[0].delta:g}); cuts are in Recall@1 at N = {n:,}, within each held-out half."
    ]
    sel = fr.selected
    ref = fr.reference_point
    ci = f"95% patient-bootstrap CI {fmt_cut_ci(fr.r1_reduction_ci_low, fr.r1_reduction_ci_high, 0)}"
    if sel is not None:
        out.append(
            f"The declared rule (probe drop <= {rule.max_probe_auroc_drop:g} points and zero-shot drop <= "
            f"{rule.max_zero_shot_auroc_drop:g} points on the selection half) selects {setting_label(ref)}: "
            f"{_cutp(ref.r1_reduction_select)} on the selection half and {_cutp(ref.r1_reduction)} "
            f"on the report half ({ci}; seed SD {_pct(ref.r1_reduction_seed_sd)}), with "
            f"{_dropp(ref.probe_auroc_drop_report)} in linear-probe AUROC and "
            f"{_dropp(ref.zero_shot_auroc_drop_report)} in zero-shot AUROC."
        )
    else:
        out.append(
            f"No setting meets the declared rule (probe drop <= {rule.max_probe_auroc_drop:g} and zero-shot "
            f"drop <= {rule.max_zero_shot_auroc_drop:g} points on the selection half). The largest cut on the "
            f"selection half, {setting_label(ref)} ({_cut(ref.r1_reduction_select)}; report half "
            f"{_cut(ref.r1_reduction)}, {ci}), is used as the reference for the controls and chapters 7-8."
        )
    chk = paper_claim_check(fr)
    s = chk["selected"]
    claim = "the paper's claim (a cut of at least 50% with a probe drop of at most 0.5 points)"
    if s is not None and s["reached"]:
        out.append(
            f"So {what} reaches {claim} at the selected setting"
            + (", and the whole CI lies above 50%." if s["ci_above"] else ", but the CI reaches below 50%.")
        )
    else:
        others = [i for i in chk["any_point"]]
        tail = ""
        if others:
            tail = (
                " Points that do meet it on the report half (not selectable under the rule, or outside the own size): "
                + "; ".join(
                    f"{setting_label(pts[i])} at {pts[i].n_private:,} pairs ({_cut(pts[i].r1_reduction)})"
                    for i in others[:4]
                )
                + "."
            )
        reason = (
            f"the selected setting has {_cutp(s['cut'])} with {_dropp(s['probe_drop'])} in linear-probe AUROC on "
            "the report half"
            if s is not None
            else "no setting meets the rule"
        )
        out.append(f"So {what} does not reach {claim}: {reason}.{tail}")
    scal = sorted(fr.points("scaling"), key=lambda p: p.n_private)
    if scal:
        out.append(
            "At larger private sets the same setting gives "
            + ", ".join(
                f"{_cutp(p.r1_reduction)} at {p.n_private:,} pairs (sigma {p.noise_multiplier:.2f})" for p in scal
            )
            + f", against {_cutp(ref.r1_reduction)} at {ref.n_private:,} (sigma {ref.noise_multiplier:.2f})."
        )
    return out


PROTOCOL_NAMES: dict[str, str] = {"public_pilot": "public pilot", "private_frontier": "private frontier"}


def protocol_table(fr: FrontierResult) -> pd.DataFrame:
    """One row per selection protocol: the setting it releases, the released heads' cut on the report half with its
    CI and utility drops, the DP runs on the private pairs the release depends on and the epsilon it carries."""
    rows = []
    for p in fr.protocols:
        pt = fr.frontier[p.frontier_index]
        rows.append(
            {
                "protocol": PROTOCOL_NAMES.get(p.name, p.name)
                + (" (headline)" if p.name == fr.headline_protocol else ""),
                "setting": setting_label(pt) + (" (fallback: no point met the rule)" if p.fallback else ""),
                "cut_report": p.r1_reduction,
                "ci_low": p.r1_reduction_ci_low,
                "ci_high": p.r1_reduction_ci_high,
                "probe_drop_report": p.probe_auroc_drop_report,
                "zero_shot_drop_report": p.zero_shot_auroc_drop_report,
                "p10_drop_report": p.retrieval_p10_drop_report,
                "dp_runs_on_private": p.n_dp_runs_on_private,
                "epsilon": p.epsilon,
                "epsilon_tuning_bound": math.nan if p.epsilon_tuning_bound is None else p.epsilon_tuning_bound,
                "seed_winners_agree": f"{p.seed_winners_agree}/{p.n_seeds}",
            }
        )
    return pd.DataFrame(rows)


def protocol_findings(fr: FrontierResult, simulation: bool = True) -> list[str]:
    """Chapter 6's sentences on the two selection protocols: which one the headline uses and why, and the privacy
    each release carries (generated from :attr:`FrontierResult.protocols`)."""
    if not fr.protocols:
        return ["This frontier was built without a public pilot: the selection reads the private runs."]
    what = "this simulation" if simulation else "this run"
    out = []
    for p in fr.protocols:
        pt = fr.frontier[p.frontier_index]
        chosen = (
            f"the rule selects {setting_label(pt)}"
            if not p.fallback
            else f"no setting meets the rule, so the largest selection-half cut is used ({setting_label(pt)})"
        )
        cut = (
            f"{_cutp(p.r1_reduction)} on the report half (95% CI "
            f"{fmt_cut_ci(p.r1_reduction_ci_low, p.r1_reduction_ci_high, 0)}), {_dropp(p.probe_auroc_drop_report)} "
            f"in linear-probe AUROC, {_dropp(p.zero_shot_auroc_drop_report)} in zero-shot AUROC and "
            f"{_dropp(p.retrieval_p10_drop_report)} in retrieval P@10"
        )
        agree = f"{p.seed_winners_agree} of {p.n_seeds} noise seeds, taken alone, pick the same setting"
        if p.name == "public_pilot":
            out.append(
                f"Public pilot: on {p.n_pairs_candidates_trained_on:,} public pairs {chosen}; one DP run on the "
                f"private pairs with it gives {cut}. The released heads are that single run: epsilon = "
                f"{p.epsilon:.3f} at delta = {p.delta:g} per pair, with nothing spent on the choice ({agree})."
            )
        else:
            bound = (
                ""
                if p.epsilon_tuning_bound is None
                else (
                    f"; a version of the study with a Poisson({p.tuning_mu:g}) number of runs would pay epsilon "
                    f"<= {p.epsilon_tuning_bound:.2f} for releasing only the best run (Papernot & Steinke 2022, "
                    "Theorem 6; the fixed count here is not what that theorem assumes)"
                )
            )
            out.append(
                f"Private frontier (sensitivity analysis): among the {p.n_dp_runs_on_private} DP runs on the "
                f"private pairs {chosen}, with {cut} (mean over its seeds; {agree}). Choosing by these outputs "
                f"depends on every run: their RDP composition is epsilon = {p.epsilon:.2f} at delta = {p.delta:g}"
                f", not the single run's {p.epsilon_single_run:.3f}{bound}."
            )
    head = fr.protocol()
    if head is not None:
        why = (
            "its release is exactly one DP mechanism at the target budget; the private frontier shows what "
            "choosing on the private runs would add and what it would cost"
            if head.name == "public_pilot"
            else "no public pilot was run"
        )
        out.append(
            f"The headline of {what} uses the {PROTOCOL_NAMES.get(head.name, head.name)} ({why}); chapters 7-8 use "
            "its setting."
        )
    return out


def mechanism_paragraph(fr: FrontierResult) -> str:
    """One paragraph on what explains the cut, from the frontier's numbers (drift, init, controls, seen vs held-out)."""
    pts = fr.points("grid")
    ref = fr.reference_point
    pre = [p for p in pts if p.init == "pretrained"]
    rei = [p for p in pts if p.init == "reinit"]
    rho = spearmanr([p.drift for p in pre], [p.r1_reduction for p in pre]).statistic if len(pre) > 2 else math.nan
    op, re0 = fr.control("output_perturbation_matched"), fr.control("reinit_untrained")
    npv = fr.control("nonprivate")
    mean = lambda xs: float(np.mean(xs)) if xs else math.nan  # noqa: E731
    if not math.isfinite(rho):
        trend = "The pretrained-init points are too few (or too uniform) to relate drift and cut"
    else:
        how = "rises with" if rho >= 0.4 else "falls with" if rho <= -0.4 else "is not tied to"
        trend = (
            f"Among the DP fine-tunings of the pretrained heads the cut {how} how far the heads move "
            f"(Spearman rho {rho:+.2f} between drift and cut over {len(pre)} settings)"
        )
    parts = [trend]
    parts.append(
        f"; starting from fresh heads gives {_cutp(mean([p.r1_reduction for p in rei]))} on average against "
        f"{_cutp(mean([p.r1_reduction for p in pre]))} from the pretrained ones, while untrained fresh heads give "
        f"{_cutp(re0['r1_reduction'])} with {_dropp(re0['zero_shot_auroc_drop_report'])} in zero-shot AUROC"
        if re0
        else ""
    )
    parts.append(". ")
    if op is not None and op["scale"] == 0:
        parts.append(
            "The reference point does not lower Recall@1 on the selection half, so output perturbation matched "
            "to it is the pretrained heads themselves (scale 0). "
        )
    elif op is not None:
        parts.append(
            f"Plain Gaussian noise on the pretrained weights matched to the "
            f"{'selected' if fr.reference_is_selected else 'reference'} "
            f"point's Recall@1 needs a relative scale of {op['scale']:.2f} (drift {op['drift']:.2f}, against the DP "
            f"heads' {ref.drift:.2f}) and comes with {_dropp(op['zero_shot_auroc_drop_report'])} in zero-shot "
            f"AUROC, against {_dropp(ref.zero_shot_auroc_drop_report)} for the DP heads: "
        )
        better = op["zero_shot_auroc_drop_report"] - ref.zero_shot_auroc_drop_report
        parts.append(
            "what DP training adds over noise of the same effect is that it keeps the label-level alignment "
            "while it breaks the instance-level one. "
            if better > 0.5
            else "at this cut DP training keeps no more cross-modal utility than plain noise. "
        )
    if npv is not None and re0 is not None and ref.init == "reinit":
        relearn = (
            ref.r1_reduction > npv["r1_reduction"] + 0.1
            and ref.zero_shot_auroc_drop_report < re0["zero_shot_auroc_drop_report"] - 1
        )
        parts.append(
            f"From fresh heads (untrained: {_cutp(re0['r1_reduction'])}, "
            f"{_dropp(re0['zero_shot_auroc_drop_report'])} in zero-shot AUROC), non-private training with the same "
            f"setting re-learns the alignment ({_cutp(npv['r1_reduction'])}, "
            f"{_dropp(npv['zero_shot_auroc_drop_report'])}), while DP training reaches "
            f"{_dropp(ref.zero_shot_auroc_drop_report)} in zero-shot AUROC at {_cutp(ref.r1_reduction)}"
            + (
                ": the cut is the instance-level detail the noise keeps the heads from re-learning, while the "
                "coarser label-level alignment comes back. "
                if relearn
                else ". "
            )
        )
    elif npv is not None:
        parts.append(
            f"Non-private fine-tuning with the same setting gives {_cutp(npv['r1_reduction'])}, so "
            + (
                "most of the cut comes from the noise and clipping, not from the objective. "
                if npv["r1_reduction"] < 0.5 * ref.r1_reduction
                else "much of the cut comes from re-fitting the heads to the public-bank objective itself. "
            )
        )
    seen = fr.seen
    close = abs(seen.seen_r1_reduction - seen.heldout_r1_reduction) < 0.1
    parts.append(
        f"On the pairs the DP heads were fine-tuned on, Recall@1 at N = {seen.pool_size:,} goes "
        f"{seen.seen_r1_before:.4f} -> {seen.seen_r1_after:.4f} ({_cutp(seen.seen_r1_reduction)}), "
        f"on held-out pairs {seen.heldout_r1_before:.4f} -> {seen.heldout_r1_after:.4f} "
        f"({_cut(seen.heldout_r1_reduction)})"
        + (
            ": about the same, so the cut is a property of the heads' alignment, not of which pairs they saw."
            if close
            else ": the cut differs between pairs the heads saw and pairs they did not "
            "(the pretrained encoders and heads were trained on the seen pairs)."
        )
    )
    return "".join(parts)


# ------------------------------------------------------------------------------------------ chapters 7 and 8
def utility_findings(
    ms: Sequence[RungMitigation], simulation: bool = True, factorial: FactorialResult | None = None
) -> list[str]:
    """Chapter 7's conclusions: the headline on the confirmation cohort (when chapter 6 has a factorial), then the
    utility table of the most specialised model (whole held-out split, one seed)."""
    cu = confirmation_utility(factorial)
    head = [confirmation_utility_sentence(cu, simulation)] if cu is not None else []
    t = utility_table(ms)
    m = ms[-1]
    row = {v: t[(t["rung"] == m.rung_index) & (t["variant"] == v)].iloc[0] for v in VARIANTS}
    pre, dp = row["pretrained"], row["dp"]
    what = "simulation" if simulation else "run"

    def move(col: str, v: str) -> str:
        a, b = pre[col], row[v][col]
        return f"{a:.3f} -> {b:.3f} ({drop_phrase(100 * (a - b))})"

    label = setting_label(m.setting) if m.setting else "the profile's setting"
    out = [
        f"At chapter 6's setting ({label}; one noise seed, whole held-out split) the DP heads of {m.rung_name} move "
        f"the linear probe's macro AUROC {move('probe_macro_auroc', 'dp')} and zero-shot macro AUROC "
        f"{move('zero_shot_macro_auroc', 'dp')}; label-level retrieval precision@10 goes "
        f"{pre['retrieval_precision@10']:.3f} -> {dp['retrieval_precision@10']:.3f} "
        f"(chance {pre['retrieval_chance@10']:.3f})."
    ]
    drop = 100 * (pre["probe_macro_auroc"] - dp["probe_macro_auroc"])
    out.append(
        f"The probe drop of {drop:.2f} points is "
        f"{'within' if drop <= PAPER_CLAIM['max_probe_auroc_drop'] else 'beyond'} "
        f"the {PAPER_CLAIM['max_probe_auroc_drop']:g} points the paper's claim allows (the paper reports "
        f"{100 * PAPER.probe_macro_auroc_before:.2f}% -> {100 * PAPER.probe_macro_auroc_after:.2f}%, the paper's "
        f"figures)."
    )
    re_p = 100 * (row["reinit"]["probe_macro_auroc"] - pre["probe_macro_auroc"])
    re_z = 100 * (row["reinit"]["zero_shot_macro_auroc"] - pre["zero_shot_macro_auroc"])
    blind = abs(re_p) < 2 and re_z < -5
    out.append(
        f"Untrained fresh heads give {drop_phrase(-re_p)} in the probe's AUROC and {drop_phrase(-re_z)} in "
        "zero-shot AUROC"
        + (
            ": the probe cannot tell heads that align images with text from random ones, zero-shot AUROC can."
            if blind
            else "."
        )
    )
    op_z = 100 * (row["output_perturbation"]["zero_shot_macro_auroc"] - pre["zero_shot_macro_auroc"])
    dp_z = 100 * (dp["zero_shot_macro_auroc"] - pre["zero_shot_macro_auroc"])
    out.append(
        f"Output perturbation matched to the DP heads' Recall@1 gives {drop_phrase(-op_z)} in zero-shot AUROC, "
        f"against {drop_phrase(-dp_z)} for the DP heads. All numbers are this {what}'s."
    )
    return head + out


def transfer_tables(
    results: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]], ms: Sequence[RungMitigation]
) -> dict[str, pd.DataFrame]:
    """Chapter 8's tables from :func:`relink_lib.dp.stage.transfer_rung`'s ``(recall, utility)`` per model.

    ``recall``: ``model, N, variant, recall@1, relative_reduction`` (random pools, the largest N of
    the external cohort, the cut against the pretrained heads); ``utility``: ``variant, model`` and
    one column per metric (macro AUROCs, retrieval precision@10 and its chance).
    """
    rows, urows = [], []
    for m in ms:
        recall, util = results[m.rung_name]
        variants = [v for v in VARIANTS if v in set(recall["variant"])]
        for v in variants:
            red = recall_reduction(recall, v, k=1, pool="random")
            rows.append(
                {
                    "model": m.rung_name,
                    "N": red["pool_size"],
                    "variant": v,
                    "recall@1": red["recall_after"],
                    "relative_reduction": red["relative_reduction"],
                }
            )
        u = util[util["label"].isin(["macro", "all"])].pivot(index="variant", columns="metric", values="value")
        u.insert(0, "model", m.rung_name)
        urows.append(u.reset_index())
    return {"recall": pd.DataFrame(rows), "utility": pd.concat(urows, ignore_index=True) if urows else pd.DataFrame()}


def transfer_findings(
    results: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]], ms: Sequence[RungMitigation], simulation: bool = True
) -> list[str]:
    """Chapter 8's conclusions: the selected DP heads' cut and utility on the external site (most specialised model)."""
    m = ms[-1]
    recall, util = results[m.rung_name]
    t = transfer_tables(results, [m])["recall"].set_index("variant")
    n, r1, cut = int(t["N"].iloc[0]), t["recall@1"], t["relative_reduction"]
    inside = reduction_at_reference(m, "dp")
    s = util[util["label"].isin(["macro"])].pivot(index="variant", columns="metric", values="value")
    label = setting_label(m.setting) if m.setting else "the profile's setting"
    out = [
        f"On the external site ({'simulation' if simulation else 'real data'}), Recall@1 at N = {n:,} goes "
        f"{r1['pretrained']:.4f} -> {r1['dp']:.4f} with the DP heads of {m.rung_name} ({label}): "
        f"{_cutp(cut['dp'])}, against {_cutp(inside['relative_reduction'])} on the internal held-out split at "
        f"N = {inside['pool_size']:,}."
    ]
    out.append(
        f"Controls there: non-private fine-tuning {_cut(cut['nonprivate'])}, fresh untrained heads "
        f"{_cut(cut['reinit'])}, output perturbation {_cut(cut['output_perturbation'])}."
    )
    if "zero_shot_auroc" in s.columns:
        out.append(
            f"Utility there: linear-probe macro AUROC {s.loc['pretrained', 'linear_probe_auroc']:.3f} -> "
            f"{s.loc['dp', 'linear_probe_auroc']:.3f}, zero-shot macro AUROC "
            f"{s.loc['pretrained', 'zero_shot_auroc']:.3f} -> {s.loc['dp', 'zero_shot_auroc']:.3f}."
        )
    return out


def sig3(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with every float rounded to 3 significant figures (the printed, nbval-checked tables)."""

    def r(x: Any) -> Any:
        if isinstance(x, (float, np.floating)) and math.isfinite(x) and x != 0:
            return float(f"{x:.3g}")
        return x

    return df.apply(lambda col: col.map(r) if col.dtype.kind == "f" else col)


def seed_spread(fr: FrontierResult) -> dict[str, float]:
    """Median over the grid of the seed SD of the cut (fraction) and of the two utility drops (points, selection
    half)."""
    grid = fr.points("grid")

    def med(key: str) -> float:
        vals = [v for v in (getattr(p, key) for p in grid) if v is not None and math.isfinite(v)]
        return float(np.median(vals)) if vals else math.nan

    return {
        "cut": med("r1_reduction_select_seed_sd"),
        "probe_drop": med("probe_auroc_drop_seed_sd"),
        "zero_shot_drop": med("zero_shot_auroc_drop_seed_sd"),
    }


# ------------------------------------------------------------------------------------------ factorial (chapter 6)
NO_CONFIRMATION = (
    "not available: a confirmation cohort exists only for synthetic cohorts (fresh patients from the same "
    "generator); on real data the factorial and the confirmation at N = 10,000 are not run"
)
TRAINING_LABELS: dict[str, str] = {
    "none": "untrained",
    "nonprivate": "non-private",
    "clip_only": "clip only (sigma = 0)",
    "dp": "DP",
    "public_only": "public only (val split)",
}


def factorial_payload(fr: FactorialResult | None) -> dict[str, Any]:
    """The factorial's part of ``mitigation.json``: ``factorial`` (one record per arm), ``noise_share``,
    ``reinit_share``, ``public_vs_dp`` (each ``value, ci_low, ci_high, definition``), ``learning_curve``,
    ``confirmation`` (with the paper's cut quoted) and ``factorial_setting``; ``None``: the reason it is missing."""
    if fr is None:
        return {"confirmation": {"available": False, "note": NO_CONFIRMATION}}
    data = fr.to_json()
    return {
        "factorial": data["arms"],
        "noise_share": data["noise_share"],
        "reinit_share": data["reinit_share"],
        "public_vs_dp": data["public_vs_dp"],
        "learning_curve": data["learning_curve"],
        "confirmation": {"available": True, **data["confirmation"], "paper_source": PAPER_REFERENCE["source"]},
        "factorial_setting": {
            k: data[k]
            for k in ("setting", "selected_init", "target_epsilon", "pool_size", "n_private", "n_public", "seeds")
        },
        "factorial_cost": data["cost"],
    }


def factorial_table(fr: FactorialResult) -> pd.DataFrame:
    """One row per arm: init, training, target epsilon, seeds, mean R@1, the cut with its paired CI, zero-shot
    AUROC and retrieval P@10 (confirmation cohort)."""
    rows = []
    for a in fr.arms:
        rows.append(
            {
                "arm": a.name,
                "init": "fresh" if a.training == "public_only" else a.init,
                "training": TRAINING_LABELS[a.training],
                "epsilon": a.epsilon_target if a.epsilon_target is not None else math.nan,
                "n_seeds": a.n_seeds,
                "r1": a.r1,
                "cut": a.cut,
                "cut_ci_low": a.cut_ci_low,
                "cut_ci_high": a.cut_ci_high,
                "zero_shot_auroc": a.zero_shot_auroc,
                "retrieval_p10": a.retrieval_precision_at_10,
            }
        )
    return pd.DataFrame(rows)


def _pct1(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{100 * x:.1f}%"


def _est(e: Estimate) -> str:
    return f"{_pct1(e.value)} (95% CI {_pct1(e.ci_low)} to {_pct1(e.ci_high)})"


def factorial_findings(fr: FactorialResult | None, simulation: bool = True) -> list[str]:
    """Chapter 6's sentences on the factorial and the confirmation cohort, generated from ``fr``.

    The selected DP heads' cut at the confirmation N with its CI beside the paper's (quoted); the noise share and
    the re-init share with their CIs and definitions; whether public-only heads cut as much as the DP heads (a
    paired difference). A CI that includes zero is said to leave the question open. ``None``: not available.
    """
    if fr is None:
        return [f"The confirmation cohort is {NO_CONFIRMATION}."]
    what = "In this simulation" if simulation else "On this cohort"
    c = fr.confirmation
    dp = fr.selected_dp_arm
    out = [
        f"{what}, on {c.n_pairs:,} fresh confirmation pairs ({c.n_patients:,} patients) that neither the ladder, the "
        f"DP training nor the selection saw, the selected DP heads ({dp.init} start, eps = {fr.target_epsilon:g}, "
        f"{dp.n_seeds} seeds) give "
        f"{change_phrase(c.dp_cut.value, c.dp_cut.ci_low, c.dp_cut.ci_high, CUT)} in Recall@1 at N = {c.pool_size:,}; "
        f"the paper reports a cut of {_pct1(c.paper_cut)} at N = 10,000 (the paper's figure)."
    ]
    if c.dp_cut.includes_zero:
        out.append(
            "That interval includes zero: the simulation cannot tell whether the selected DP heads cut re-linkage."
        )
    for name, e, lead in (
        ("noise share", fr.noise_share, "The noise share"),
        ("re-init share", fr.reinit_share, "The re-init share"),
    ):
        if not math.isfinite(e.value):
            out.append(f"{lead} is undefined here (the cut it divides by is zero); definition: {e.definition}.")
            continue
        verdict = (
            f"its interval includes zero, so the simulation cannot tell whether any of the cut comes from "
            f"{'the noise' if name == 'noise share' else 're-initialising'}"
            if e.includes_zero
            else f"{'most' if e.value > 0.5 else 'some, but less than half,'} of the cut comes from "
            f"{'the noise' if name == 'noise share' else 're-initialising the heads'}"
        )
        out.append(f"{lead}, {e.definition}, is {_est(e)}: {verdict}.")
    pub = fr.public_vs_dp
    public_arm = fr.arm("public_only")
    if pub.includes_zero:
        tail = "the interval includes zero, so the simulation cannot tell them apart"
    elif pub.value > 0:
        tail = "the public-only heads cut more: no private pair is needed for this cut"
    else:
        tail = (
            "the public-only heads cut less than the DP heads (whether that is the private pairs' doing or the "
            "DP heads' short, clipped training from a fresh start, the noise and re-init shares above tell)"
        )
    out.append(
        f"Heads trained from a fresh start on the public val split alone ({public_arm.n_train:,} pairs, no private "
        f"pair, same steps and batch size) give {change_phrase(public_arm.cut, conv=CUT)}; paired with the DP heads' "
        f"cut, theirs is {fmt_change(pub.value, MORE_CUT)} "
        f"(95% CI {fmt_change_ci(pub.ci_low, pub.ci_high, MORE_CUT)}): {tail}."
    )
    untrained = next((a for a in fr.arms if a.init == "reinit" and a.training == "none"), None)
    if untrained is not None and untrained.r1_seed_min is not None and untrained.r1_seed_max is not None:
        n = c.pool_size
        out.append(
            f"Untrained fresh heads, the chance-level control, re-link at {untrained.r1 * n:.2f}x chance at N = {n:,} "
            f"on average over {untrained.n_seeds} init draws, but one draw anywhere from "
            f"{untrained.r1_seed_min * n:.2f}x to {untrained.r1_seed_max * n:.2f}x: a random pair of heads gives the "
            "images' and reports' shared signal a random sign and size, so a single draw sits above or below chance "
            "and only the average over many draws is a chance-level control."
        )
    return out


def confirmation_curve_table(fr: FactorialResult) -> pd.DataFrame:
    """The confirmation curve: one row per variant, N and K with Recall@K, its CI and (DP) the cut with its CI."""
    return pd.DataFrame([p.to_json() for p in fr.confirmation.curve])


def learning_curve_table(fr: FactorialResult) -> pd.DataFrame:
    """The non-private learning curve from fresh heads: epochs, steps, R@1, cut with CI, zero-shot AUROC and drop."""
    return pd.DataFrame([p.to_json() for p in fr.learning_curve])
