"""Pipeline stage of the DP frontier (chapter 6): train every setting with several noise seeds, select, scale.

On the most specialised rung (cached pre-projection features; the encoders never run here):

1. every setting of :func:`relink_lib.dp.frontier.frontier_grid` at the profile's own private-set
   size, each with ``n_seeds`` noise seeds, at the profile's (eps, delta): sigma is calibrated once
   per (sample rate, steps) by :func:`relink_lib.dp.calibrate.calibrate_noise` and every record is
   re-accounted by dp-accounting;
2. the declared rule (:func:`relink_lib.dp.frontier.select_point`) on the selection half;
3. controls on the same axes: non-private fine-tuning and untrained re-initialised heads at the
   selected setting, output perturbation over a range of scales and matched on R@1;
4. the selected setting at larger private sets: the internal train split plus pairs of a
   supplementary synthetic private pool (same generator and settings, another seed; only
   generated and featurised, never audited) -- a scaling study beside the selection;
5. the selected heads' effect on the pairs they were fine-tuned on (seen) and on held-out pairs.

Writes ``frontier.json`` (what ``results/<profile>/mitigation.json`` stores under ``frontier``,
``selection_rule``, ``selected`` ...) and ``report_per_query.npz``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
from torch import nn

from .. import cache
from ..cohorts.stage import get_cohort
from ..config import FrontierConfig, Profile, ProfileLike, as_profile
from ..features import feature_dir, get_features
from ..labels import CHEXPERT_LABELS
from ..models.stage import Rung, get_ladder
from ..profiles import cache_dir
from .calibrate import calibrate_noise
from .config import DPConfig
from .controls import nonprivate_config, tune_output_perturbation
from .frontier import (
    HeldoutEvaluator,
    Setting,
    aggregate_seeds,
    embed_heads,
    frontier_grid,
    interpolate_at_cut,
    per_query_recall_at_1,
    reduction_interval,
    select_point,
)
from .heads import clone_head, fresh_heads, perturb_heads, relative_drift
from .outcomes import few_threads, prompt_features_of, relative_reduction
from .train import sampling_plan, train_heads

POOL_SEED_OFFSET = 7001
"""The supplementary private pool is generated with ``params["seed"] + POOL_SEED_OFFSET``."""
PRIVACY_FIELDS = (
    "target_epsilon",
    "epsilon",
    "delta",
    "noise_multiplier",
    "sample_rate",
    "steps",
    "max_grad_norm",
    "accountant",
)


def _code_version() -> str:
    from .. import audit, dp, utility  # lazily: the dp package is still initialising while this module loads

    return cache.code_version(dp, utility, audit)


def pool_params(params: ProfileLike, n_pairs: int) -> Profile:
    """Parameters of the supplementary synthetic private pool: the profile's cohort, another seed, all ``train``."""
    cfg = as_profile(params)
    return cfg.replace_sections(
        seed=cfg.seed + POOL_SEED_OFFSET,
        cohort={"n_pairs": int(n_pairs), "split_fractions": (1.0, 0.0, 0.0), "roundtrip": False},
    )


def private_pool(params: ProfileLike, rung: Rung, n_pairs: int, *, progress: bool = False) -> dict[str, Any]:
    """Features (``image``, ``text``) and patient ids of ``n_pairs`` supplementary private pairs (cached)."""
    if not as_profile(params).cohort.simulation:
        raise ValueError(
            "dp.frontier.scaling_sizes: a supplementary private pool exists only for synthetic cohorts; "
            "set scaling_sizes = () for real data"
        )
    p = pool_params(params, n_pairs)
    cohort = get_cohort(p, site="internal")
    feats = get_features(p, cohort, rung, "train", progress=progress)
    pats = cohort.pairs.iloc[np.asarray(feats.rows)]["patient_id"].astype(str).to_numpy()
    return {
        "image": feats.image,
        "text": feats.text,
        "patients": np.char.add("pool:", pats.astype(str)),
        "features": feature_dir(p, cohort, rung, "train").name,
        "n_pairs": len(feats),
    }


class _Runner:
    """Trains settings with several seeds on one private set and evaluates them (shared state of one build)."""

    def __init__(
        self,
        evaluator: HeldoutEvaluator,
        template: tuple[nn.Module, nn.Module],
        base: DPConfig,
        bank: Mapping[str, np.ndarray],
        seeds: list[int],
    ) -> None:
        self.ev, self.template, self.base, self.bank, self.seeds = evaluator, template, base, bank, seeds
        self.sigmas: dict[tuple[float, int], float] = {}
        self.train_s = self.eval_s = 0.0
        self.run_log: list[tuple[int, float]] = []  # (steps, seconds) of every training run

    def init_heads(self, init: str, seed: int) -> tuple[nn.Module, nn.Module]:
        if init == "pretrained":
            return clone_head(self.template[0]), clone_head(self.template[1])
        return fresh_heads(self.template[0], self.template[1], seed=seed)

    def train(
        self,
        setting: Setting,
        seed: int,
        x_img: np.ndarray,
        x_txt: np.ndarray,
        patients: np.ndarray,
        private: bool = True,
    ) -> tuple[tuple[nn.Module, nn.Module], dict[str, Any]]:
        cfg = self.base.replace(optimizer=setting.optimizer, lr=setting.lr, epochs=setting.epochs, seed=seed)
        if private:
            q, steps, _ = sampling_plan(len(x_img), cfg)
            if (q, steps) not in self.sigmas:
                self.sigmas[(q, steps)] = calibrate_noise(float(cfg.target_epsilon), cfg.delta, q, steps)
            cfg = cfg.replace(noise_multiplier=self.sigmas[(q, steps)])
        else:
            cfg = nonprivate_config(cfg)
        start = self.init_heads(setting.init, seed)
        t0 = time.perf_counter()
        res = train_heads(
            x_img,
            x_txt,
            start[0],
            start[1],
            config=cfg,
            patient_ids=patients,
            bank_text_feats=self.bank["text"],
            bank_image_feats=self.bank["image"],
        )
        self.train_s += time.perf_counter() - t0
        self.run_log.append((int(res.record["steps"]), time.perf_counter() - t0))
        return (res.image_head, res.text_head), res.record

    def evaluate(self, heads: tuple[nn.Module, nn.Module]) -> tuple[dict[str, float], np.ndarray]:
        t0 = time.perf_counter()
        m = self.ev.measure(heads)
        rel = self.ev.relative(m)
        rel["drift"] = relative_drift(heads, self.template)
        self.eval_s += time.perf_counter() - t0
        self.n_evals = getattr(self, "n_evals", 0) + 1
        return rel, m["r1_report_per_query"]

    def point(
        self,
        setting: Setting,
        x_img: np.ndarray,
        x_txt: np.ndarray,
        patients: np.ndarray,
        *,
        study: str,
        private: bool = True,
    ) -> tuple[dict[str, Any], np.ndarray, list[tuple[nn.Module, nn.Module]]]:
        """One frontier point: ``len(seeds)`` runs, their mean and spread; with the mean per-query report R@1 and the heads."""
        per_seed, pq, heads_list, record = [], [], [], None
        for seed in self.seeds:
            heads, record = self.train(setting, seed, x_img, x_txt, patients, private)
            rel, q = self.evaluate(heads)
            per_seed.append(dict(rel, seed=seed))
            pq.append(q)
            heads_list.append(heads)
        out: dict[str, Any] = {**setting.as_dict(), "n_private": int(len(x_img)), "study": study, "private": private}
        out.update({k: record.get(k) for k in PRIVACY_FIELDS})
        ind = record.get("epsilon_independent") or {}
        out["epsilon_dp_accounting_rdp"] = ind.get("dp_accounting_rdp")
        out["epsilon_dp_accounting_pld"] = ind.get("dp_accounting_pld")
        out.update(aggregate_seeds(per_seed))
        out["seeds"] = list(self.seeds)
        out["per_seed"] = [
            {
                k: s[k]
                for k in (
                    "seed",
                    "r1_reduction_select",
                    "r1_reduction",
                    "probe_auroc_drop",
                    "zero_shot_auroc_drop",
                    "drift",
                )
            }
            for s in per_seed
        ]
        return out, np.mean(pq, axis=0), heads_list


def build_frontier(
    inputs: Mapping[str, Any],
    spec: FrontierConfig,
    base: DPConfig,
    *,
    seed: int = 0,
    pool: Callable[[int], Mapping[str, Any]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Run the whole frontier study on in-memory ``inputs`` (see :func:`get_frontier` for the keys).

    ``pool(n)``: supplementary private pairs (``image``, ``text``, ``patients``) for the scaling
    study (``None``: only sizes up to the own set). Returns ``(payload, arrays)``: the JSON payload
    and the per-query report-half R@1 of the pretrained and the selected heads.
    """
    t_start = time.perf_counter()
    say = progress or (lambda s: None)
    template = inputs["template"]
    ev = HeldoutEvaluator(
        template,
        inputs["test_img"],
        inputs["test_txt"],
        inputs["test_labels"],
        inputs["test_patients"],
        inputs["train_img"],
        inputs["train_labels"],
        inputs.get("prompt_features"),
        probe_C=float(inputs["probe_C"]),
        split_seed=spec.split_seed,
        chunk_size=int(inputs["chunk_size"]),
        probe_max_train=spec.probe_max_train,
    )
    seeds = [int(seed) + i for i in range(spec.n_seeds)]
    run = _Runner(ev, template, base, inputs["bank"], seeds)
    x_img, x_txt, pats = inputs["train_img"], inputs["train_txt"], np.asarray(inputs["train_patients"]).astype(str)
    n_own = len(x_img)
    rule = {
        "max_probe_auroc_drop": float(spec.max_probe_auroc_drop),
        "max_zero_shot_auroc_drop": float(spec.max_zero_shot_auroc_drop),
        "reference_pool_size": int(ev.pool_size),
        "n_private": int(n_own),
        "objective": "largest r1_reduction_select (mean over noise seeds, selection half)",
        "among": "DP points at the profile's own private-set size with probe_auroc_drop and zero_shot_auroc_drop "
        "(selection half, percentage points) at most the maxima",
    }
    points, report_pq, heads_of = [], [], []
    grid = frontier_grid(spec)
    for i, setting in enumerate(grid):
        say(f"frontier {i + 1}/{len(grid)}: {setting}")
        pt, pq, hs = run.point(setting, x_img, x_txt, pats, study="grid")
        points.append(pt)
        report_pq.append(pq)
        heads_of.append(hs)
    selected = select_point(points, rule)
    own = [i for i, p in enumerate(points) if p["n_private"] == n_own]
    reference = selected if selected is not None else max(own, key=lambda i: (points[i]["r1_reduction_select"], -i))
    base_pq = ev.baseline["r1_report_per_query"]
    rep_pat = ev.test_patients[ev.report]
    lo, hi = reduction_interval(base_pq, report_pq[reference], rep_pat, n_boot=spec.n_boot, seed=seed)
    points[reference]["r1_reduction_ci_low"], points[reference]["r1_reduction_ci_high"] = lo, hi
    ref = points[reference]
    ref_setting = Setting(ref["init"], ref["optimizer"], ref["lr"], ref["epochs"])

    # seen (the private pairs the heads were fine-tuned on) vs held-out (report half), at the same N
    seen_before = per_query_recall_at_1(*embed_heads(template, x_img, x_txt), ev.pool_size).mean()
    seen_after = float(
        np.mean(
            [per_query_recall_at_1(*embed_heads(h, x_img, x_txt), ev.pool_size).mean() for h in heads_of[reference]]
        )
    )
    seen = {
        "pool_size": int(ev.pool_size),
        "n_seen": int(n_own),
        "n_heldout": int(ev.report.sum()),
        "seen_r1_before": float(seen_before),
        "seen_r1_after": seen_after,
        "seen_r1_reduction": relative_reduction(float(seen_before), seen_after),
        "heldout_r1_before": ev.baseline["r1_report"],
        "heldout_r1_after": ref["r1_report"],
        "heldout_r1_reduction": ref["r1_reduction"],
    }

    # controls on the same axes
    say("frontier controls")
    controls = []
    npv, _, _ = run.point(ref_setting, x_img, x_txt, pats, study="control", private=False)
    controls.append(dict(npv, control="nonprivate"))
    re_rows = []
    for s in seeds:
        rel, _ = run.evaluate(fresh_heads(template[0], template[1], seed=s))
        re_rows.append(rel)
    controls.append(
        {"control": "reinit_untrained", "init": "reinit", "private": False, "n_private": 0, **aggregate_seeds(re_rows)}
    )
    op_curve = []
    for s in spec.op_scales:
        rel, _ = run.evaluate(perturb_heads(template[0], template[1], float(s), seed))
        op_curve.append(dict(rel, scale=float(s)))
    target = ref["r1_select"]
    fit = tune_output_perturbation(
        template[0],
        template[1],
        lambda a, b: ev.measure((a, b), utility=False)["r1_select"],
        target,
        seed=seed,
        abs_tol=max(1e-4, 0.02 * target),
    )
    rel, _ = run.evaluate((fit.image_head, fit.text_head))
    controls.append(
        {
            "control": "output_perturbation_matched",
            "private": False,
            "scale": fit.scale,
            "matched_to": "the reference point's mean R@1 on the selection half",
            **rel,
            "n_seeds": 1,
        }
    )
    op_points = op_curve + [controls[-1]]  # the matched fit is one more point of the same curve
    for c in [ref] + controls:
        for col in ("zero_shot_auroc_drop_report", "probe_auroc_drop_report"):
            c[f"output_perturbation_{col}_at_same_cut"] = interpolate_at_cut(
                op_points, c.get("r1_reduction", math.nan), col
            )

    # the reference setting at larger private sets
    sizes = spec.scaling_sizes_above(n_own)
    pool_info = None
    if sizes and pool is not None:
        say(f"frontier scaling: private pool of {sizes[-1] - n_own} pairs")
        t0 = time.perf_counter()
        extra = pool(sizes[-1] - n_own)
        pool_info = {
            "n_pairs": int(extra["n_pairs"]),
            "features": extra.get("features"),
            "generation_and_features_s": time.perf_counter() - t0,
            "source": "supplementary synthetic private pool: the profile's generator and cohort settings with "
            f"seed + {POOL_SEED_OFFSET}, no export round trip, all pairs private (train)",
        }
        for n in sizes:
            k = n - n_own
            say(f"frontier scaling: n_private = {n}")
            xi = np.concatenate([x_img, extra["image"][:k]])
            xt = np.concatenate([x_txt, extra["text"][:k]])
            pp = np.concatenate([pats, np.asarray(extra["patients"])[:k]])
            pt, _, _ = run.point(ref_setting, xi, xt, pp, study="scaling")
            points.append(pt)
    payload = {
        "frontier": points,
        "selection_rule": rule,
        "selected": selected,
        "reference": reference,
        "reference_is_selected": selected is not None,
        "r1_reduction_ci_low": lo,
        "r1_reduction_ci_high": hi,
        "controls": controls,
        "output_perturbation_curve": op_curve,
        "seen": seen,
        "private_pool": pool_info,
        "heldout": {
            "n_select": int(ev.select.sum()),
            "n_report": int(ev.report.sum()),
            "split_seed": spec.split_seed,
            "reference_pool_size": int(ev.pool_size),
            "baseline": {k: v for k, v in ev.baseline.items() if k != "r1_report_per_query"},
        },
        "n_seeds": len(seeds),
        "seeds": seeds,
        "cost": {
            "train_s": run.train_s,
            "eval_s": run.eval_s,
            "total_s": time.perf_counter() - t_start,
            "n_runs_trained": len(run.run_log),
            "n_evaluations": int(getattr(run, "n_evals", 0)),
            "runs_steps_seconds": [[n, round(t, 4)] for n, t in run.run_log],
        },
    }
    return payload, {"pretrained": base_pq, "reference": report_pq[reference], "report_patients": rep_pat}


def get_frontier(params: ProfileLike, *, progress: bool = False) -> dict[str, Any]:
    """The frontier payload of the profile's most specialised rung (cached; see the module docstring)."""
    cfg = as_profile(params)
    spec = cfg.dp.frontier
    cohort = get_cohort(cfg, site="internal")
    rung = get_ladder(cfg, progress=progress)[-1]
    splits = {s: get_features(cfg, cohort, rung, s, progress=progress) for s in ("train", "val", "test")}
    base = cfg.dp.training
    bank_n = min(cfg.dp.bank_size, len(splits["val"]))
    key = {
        "step": "dp-frontier",
        "features": {s: feature_dir(cfg, cohort, rung, s).name for s in splits},
        "spec": spec.to_dict(),
        "dp": {k: v for k, v in cfg.dp.to_dict().items() if k != "frontier"},
        "probe_C": cfg.utility.probe_C,
        "seed": cfg.seed,
        "chunk": cfg.audit.chunk_size,
        "code": _code_version(),
    }

    def build(tmp: Path) -> None:
        encoder = rung.load(device="cpu")
        pairs = {s: cohort.pairs.iloc[np.asarray(f.rows)].reset_index(drop=True) for s, f in splits.items()}
        inputs = {
            "template": (encoder.image_head, encoder.text_head),
            "train_img": splits["train"].image,
            "train_txt": splits["train"].text,
            "train_labels": pairs["train"][list(CHEXPERT_LABELS)].to_numpy(float),
            "train_patients": pairs["train"]["patient_id"].astype(str).to_numpy(),
            "test_img": splits["test"].image,
            "test_txt": splits["test"].text,
            "test_labels": pairs["test"][list(CHEXPERT_LABELS)].to_numpy(float),
            "test_patients": pairs["test"]["patient_id"].astype(str).to_numpy(),
            "bank": {"text": splits["val"].text[:bank_n], "image": splits["val"].image[:bank_n]},
            "prompt_features": prompt_features_of(encoder),
            "probe_C": cfg.utility.probe_C,
            "chunk_size": cfg.audit.chunk_size,
        }
        with few_threads():
            payload, arrays = build_frontier(
                inputs,
                spec,
                base,
                seed=cfg.seed,
                pool=lambda n: private_pool(cfg, rung, n, progress=progress),
                progress=print if progress else None,
            )
        payload["rung"] = {"index": rung.index, "name": rung.name}
        payload["bank"] = {"source": "internal cohort, val split (declared public)", "size": bank_n}
        (tmp / "frontier.json").write_text(json.dumps(payload, indent=1, default=_json_default))
        np.savez(tmp / "report_per_query.npz", **arrays)

    path = cache.cached_dir(cache_dir(cfg.name), "dp-frontier", key, build)
    return json.loads((path / "frontier.json").read_text())


def reference_setting(frontier: Mapping[str, Any]) -> Setting:
    """The setting chapters 7-8 use: the selected point, or (when no point meets the rule) the reference point."""
    p = frontier["frontier"][int(frontier["reference"])]
    return Setting(p["init"], p["optimizer"], float(p["lr"]), float(p["epochs"]))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
