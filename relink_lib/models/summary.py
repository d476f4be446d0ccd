"""Chapter 3's numbers, tables and sentences: the model ladder, from the rungs and their test-split audit.

``ladder_payload`` gathers what the chapter writes to ``results/<profile>/model_ladder.json``;
``ladder_findings`` turns it into the chapter's summary sentences, so the prose cannot contradict
the numbers. The payload holds plain lists of records (JSON-ready).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..audit import relink_audit
from ..cohorts.base import Cohort
from ..config import ProfileLike, as_profile
from ..features import get_embeddings
from ..profiles import get_profile
from .stage import Rung, ladder_table

SEES_LABELS_AUROC = 0.55
"""Macro zero-shot AUROC from which a rung is said to see the labels (0.5 is chance)."""


def recall_preview(params: ProfileLike, cohort: Cohort, rungs: Sequence[Rung], split: str = "test") -> pd.DataFrame:
    """Chapter 3's first look at re-linkage: Recall@1 of each rung over the whole ``split`` (ties broken at random).

    One row per rung: ``rung, name, recall@1, chance, lift, n_test`` (chance = 1 / n_test).
    """
    rows = []
    for r in rungs:
        img, rep, idx = get_embeddings(params, cohort, r, split)
        full = relink_audit(img, rep, pool_sizes=(None,), ks=(1,)).iloc[0]
        rows.append(
            {
                "rung": r.index,
                "name": r.name,
                "recall@1": float(full["recall"]),
                "chance": float(full["chance"]),
                "lift": float(full["lift"]),
                "n_test": len(idx),
            }
        )
    return pd.DataFrame(rows)


def run_size(params: ProfileLike) -> dict[str, Any]:
    """How large a profile's synthetic run is: pairs, split fractions and the ladder's epoch scale."""
    profile = as_profile(params)
    cohort, ladder = profile.cohort, profile.ladder
    return {
        "profile": profile.name,
        "n_pairs": int(cohort.n_pairs),
        "split_fractions": [float(f) for f in cohort.split_fractions],
        "epochs_scale": float(ladder.epochs_scale),
        "image_size": int(ladder.image_size),
    }


def ladder_payload(
    rungs: Sequence[Rung],
    zero_shot: pd.DataFrame,
    preview: pd.DataFrame,
    params: ProfileLike,
    *,
    timings: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """What chapter 3 records: the rung table, zero-shot AUROC per label and rung, the Recall@1 preview, run
    sizes, each rung's image preprocessing, and ``timings`` (wall-clock figures of this machine, seconds or
    images per second: reported, never baselined).

    zero_shot: rows ``rung, label, auroc`` (``label == "macro"`` for the macro mean); preview: one
    row per rung with ``rung, name, recall@1, chance, lift, n_test`` (:func:`recall_preview`).
    """
    profile = as_profile(params)
    sizes = {"this": run_size(profile)}
    if profile.cohort.simulation and profile.name != "default":
        sizes["default"] = run_size(get_profile("default"))
    return {
        "rungs": ladder_table(rungs).to_dict(orient="records"),
        "descriptions": {r.name: r.description for r in rungs},
        "zero_shot": zero_shot.to_dict(orient="records"),
        "recall_at_1_preview": preview.to_dict(orient="records"),
        "run_size": sizes,
        "preprocessing": {r.name: r.load(device="cpu").preprocess.describe() for r in rungs},
        **{k: round(float(v), 1) for k, v in (timings or {}).items()},
    }


def rises_in_order(values: Sequence[float]) -> bool:
    """Whether ``values`` rise strictly from the first to the last."""
    v = [float(x) for x in values]
    return len(v) >= 2 and all(b > a for a, b in zip(v, v[1:]))


def ladder_findings(payload: Mapping[str, Any], simulation: bool = True) -> list[str]:
    """The chapter's summary sentences, generated from ``payload`` (see :func:`ladder_payload`)."""
    kind = "simulation" if simulation else "real data"
    preview = pd.DataFrame(payload["recall_at_1_preview"])
    zs = pd.DataFrame(payload["zero_shot"])
    out = []
    n = len(preview)
    top = preview.iloc[-1]
    lifts = preview["lift"].astype(float).tolist()
    order = "rises with every rung" if rises_in_order(lifts) else "does **not** rise with every rung"
    out.append(
        f"Recall@1 over the whole test split ({int(top['n_test']):,} pairs, chance {float(top['chance']):.2g}) "
        f"{order}: "
        + ", ".join(
            f"rung {int(r['rung'])} `{r['name']}` {float(r['lift']):.1f}x chance"
            for r in preview.to_dict(orient="records")
        )
        + f" ({kind})."
    )
    macro = zs[zs["label"] == "macro"].set_index("rung")["auroc"].astype(float)
    if len(macro):
        span = f"zero-shot macro AUROC {macro.min():.2f} to {macro.max():.2f} over {n} rungs (0.5 is chance)"
        blind = [str(name) for name, auc in macro.items() if auc < SEES_LABELS_AUROC]
        if not blind:
            out.append(
                f"Every rung sees the labels: {span}. Label recognition is not what separates the rungs; "
                "instance detail is."
            )
        else:
            out.append(
                f"Not every rung sees the labels: {span}; below {SEES_LABELS_AUROC:g}: "
                + ", ".join(f"`{b}`" for b in blind)
                + "."
            )
    sizes = payload.get("run_size", {})
    this, default = sizes.get("this"), sizes.get("default")
    if this and default:
        out.append(
            f"This is the `{this['profile']}` profile, a smaller run than `default`: {this['n_pairs']:,} pairs "
            f"({this['split_fractions'][0]:.0%} for training) against {default['n_pairs']:,} "
            f"({default['split_fractions'][0]:.0%}), with the ladder's schedules scaled by {this['epochs_scale']:g} "
            f"(default {default['epochs_scale']:g}); its re-linkage is weaker and its intervals wider."
        )
    return out


def zero_shot_macro(zero_shot: pd.DataFrame) -> pd.Series:
    """Macro zero-shot AUROC per rung name (rows with ``label == "macro"``)."""
    macro = zero_shot[zero_shot["label"] == "macro"].set_index("rung")["auroc"]
    return macro.astype(float).replace({np.inf: np.nan})
