"""Tables and results payloads of chapters 6-8 from the cached stage outputs (:mod:`relink_lib.dp.stage`)."""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from .stage import VARIANTS, RungMitigation, recall_reduction

PAPER = {"dp_r1_reduction_at_10000": 0.618, "probe_macro_auroc_before": 0.7963, "probe_macro_auroc_after": 0.7943,
         "source": "Tayebi Arasteh et al., arXiv 2606.02276 (the paper's numbers, not ours)"}
RECORD_KEYS = ("target_epsilon", "epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "max_grad_norm", "accountant")


def accounting_table(ms: Sequence[RungMitigation]) -> pd.DataFrame:
    """One row per rung: the DP record and the independent accountants' epsilon beside it."""
    rows = []
    for m in ms:
        r = m.record
        ind = r.get("epsilon_independent", {})
        rows.append({"rung": m.rung_index, "model": m.rung_name, "target_epsilon": r["target_epsilon"], "delta": r["delta"],
                     "noise_multiplier": r["noise_multiplier"], "sample_rate": r["sample_rate"], "steps": r["steps"],
                     "max_grad_norm": r["max_grad_norm"], "epsilon_opacus_rdp": r["epsilon"],
                     "epsilon_dp_accounting_rdp": ind.get("dp_accounting_rdp"),
                     "epsilon_dp_accounting_pld": ind.get("dp_accounting_pld"),
                     "patient_epsilon_group": (r.get("group_privacy") or {}).get("patient_epsilon"),
                     "max_pairs_per_patient": (r.get("group_privacy") or {}).get("max_pairs_per_patient")})
    return pd.DataFrame(rows)


def reduction_table(ms: Sequence[RungMitigation], ks: Sequence[int] = (1, 5, 10), pool: str = "random") -> pd.DataFrame:
    """Recall@K before (pretrained) and after each variant at the reference N, and the relative reduction."""
    rows = []
    for m in ms:
        for variant in VARIANTS[1:]:
            for k in ks:
                red = recall_reduction(m, variant, k, pool)
                rows.append({"rung": m.rung_index, "model": m.rung_name, "variant": variant, "k": k, "pool": pool, **red})
    return pd.DataFrame(rows)


def utility_table(ms: Sequence[RungMitigation]) -> pd.DataFrame:
    """Macro linear-probe AUROC, macro zero-shot AUROC and retrieval precision@10 per rung and variant."""
    rows = []
    for m in ms:
        u = m.utility
        for variant in VARIANTS:
            v = u[u["variant"] == variant]

            def get(metric: str, label: str) -> float:
                s = v[(v["metric"] == metric) & (v["label"] == label)]["value"]
                return float(s.iloc[0]) if len(s) else math.nan
            rows.append({"rung": m.rung_index, "model": m.rung_name, "variant": variant,
                         "probe_macro_auroc": get("linear_probe_auroc", "macro"),
                         "zero_shot_macro_auroc": get("zero_shot_auroc", "macro"),
                         "retrieval_precision@10": get("retrieval_precision@10", "all"),
                         "retrieval_chance@10": get("retrieval_chance@10", "all")})
    return pd.DataFrame(rows)


def per_label_probe(ms: Sequence[RungMitigation], rung: int = -1) -> pd.DataFrame:
    """Per-label linear-probe and zero-shot AUROC of one rung (default the most specialised), variants as columns."""
    m = ms[rung]
    u = m.utility[m.utility["metric"].isin(["linear_probe_auroc", "zero_shot_auroc"])]
    return u.pivot_table(index="label", columns=["metric", "variant"], values="value", sort=False)


def mitigation_payload(params: Mapping[str, Any], ms: Sequence[RungMitigation]) -> dict[str, Any]:
    """results/<profile>/mitigation.json: DP records, independent epsilons, controls, outcomes per rung."""
    rungs = []
    for m in ms:
        rungs.append({
            "rung": m.rung_index, "model": m.rung_name,
            "dp_record": {**{k: m.record[k] for k in RECORD_KEYS}, **{k: v for k, v in m.record.items() if k not in RECORD_KEYS}},
            "nonprivate_record": m.nonprivate_record,
            "output_perturbation": m.perturbation,
            "reference_pool_size": m.reference_pool_size,
            "reduction": reduction_table([m]).to_dict(orient="records"),
            "reduction_matched": reduction_table([m], pool="matched").to_dict(orient="records"),
            "recall": m.recall.to_dict(orient="records"),
            "history_dp": m.history.to_dict(orient="records"),
        })
    return {"target": {"epsilon": params["dp"]["target_epsilon"], "delta": params["dp"]["delta"]},
            "neighbouring_relation": "add/remove one image-report pair of the private training split (pair sampling); "
                                     "patients with several pairs: group privacy (see group_privacy in each record)",
            "bank": "fixed bank of the internal cohort's val split (declared public), never the private training pairs",
            "paper_reference": PAPER, "rungs": rungs}


def utility_payload(ms: Sequence[RungMitigation]) -> dict[str, Any]:
    """results/<profile>/utility.json."""
    return {"protocol": {"linear_probe": "logistic regression (C from the profile) on standardised L2-normalised image "
                                         "embeddings; train split -> test split (patient-level); NaN -> negative, "
                                         "uncertain (-1) left out (U-Ignore)",
                         "zero_shot": "cos(image, positive prompt) - cos(image, negative prompt); uncertain and missing "
                                      "left out",
                         "retrieval": "image -> report top-10 among the other held-out reports; relevant = same "
                                      "positive-label set"},
            "paper_reference": PAPER, "table": utility_table(ms).to_dict(orient="records"),
            "per_label": [m.utility.assign(rung=m.rung_index, model=m.rung_name).to_dict(orient="records") for m in ms]}


def transfer_payload(results: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]], internal: Sequence[RungMitigation]) -> dict[str, Any]:
    """results/<profile>/transfer.json: external recall and utility per rung and variant."""
    out = []
    for m in internal:
        recall, util = results[m.rung_name]
        rand = recall[(recall["pool"] == "random") & (recall["k"] == 1)]
        out.append({"rung": m.rung_index, "model": m.rung_name, "recall": recall.to_dict(orient="records"),
                    "utility": util.to_dict(orient="records"),
                    "r1_by_variant": rand[["variant", "pool_size", "recall", "lift"]].to_dict(orient="records")})
    return {"rungs": out}
