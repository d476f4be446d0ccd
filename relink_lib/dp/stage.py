"""Pipeline stage of chapters 6-8: DP heads, controls, outcomes, and transfer to the external site.

For every rung of the ladder (:func:`mitigate_rung`, cached per rung):

- data: cached pre-projection features (encoders frozen, never re-run here) of the internal
  cohort's ``train`` split (the PRIVATE pairs the heads are fine-tuned on), ``val`` split (declared
  PUBLIC: the fixed bank of reports and images the objective contrasts against, and the public
  evaluation loss) and ``test`` split (held out: every outcome);
- variants: ``pretrained`` heads; ``dp`` (DP-SGD at the profile's (eps, delta) with chapter 6's
  selected setting: init, optimizer, learning rate, epochs); ``nonprivate`` (same objective, data,
  start, sampling and steps, no clipping/noise); ``reinit`` (data-independent random heads,
  untrained: the DP start when the setting's init is ``reinit``); ``output_perturbation`` (Gaussian noise on the pretrained weights, scale tuned so
  Recall@1 at the reference N falls as far as under DP);
- outcomes on the held-out split, per variant: Recall@1/5/10 at every N over random and
  pathology-matched pools with patient-bootstrap CIs; the image-side linear probe (train split ->
  test split), zero-shot label AUROC and label-level retrieval precision@10.

:func:`transfer_rung` applies the same heads, unchanged, to the external cohort (second site,
exported to the CheXpert Plus layout and read back by ``load_chexpert_plus``). Report text is
never read here: only features, labels and patient ids.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import cache
from ..labels import CHEXPERT_LABELS
from ..profiles import cache_dir
from .config import DPConfig
from .controls import nonprivate_config, tune_output_perturbation
from .heads import clone_head, fresh_heads
from .train import train_heads

VARIANTS: tuple[str, ...] = ("pretrained", "dp", "nonprivate", "reinit", "output_perturbation")
POOLS: tuple[tuple[str, bool], ...] = (("random", False), ("matched", True))


@dataclass
class RungMitigation:
    """Everything chapters 6-9 need about one rung (see the module docstring)."""

    rung_index: int
    rung_name: str
    record: dict[str, Any]
    nonprivate_record: dict[str, Any]
    history: pd.DataFrame
    nonprivate_history: pd.DataFrame
    perturbation: dict[str, Any]
    recall: pd.DataFrame
    utility: pd.DataFrame
    reference_pool_size: int
    heads: dict[str, tuple[nn.Module, nn.Module]]
    path: Path | None = None
    setting: dict[str, Any] | None = None


def dp_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """The profile's DP, utility and audit settings that the stage depends on."""
    dp = dict(params["dp"])
    audit = params.get("audit", {})
    return {"dp": dp, "utility": dict(params.get("utility", {})),
            "audit": {"pool_sizes": tuple(audit.get("pool_sizes", (10, 100, 1000, 10000, None))),
                      "ks": tuple(audit.get("ks", (1, 5, 10))), "n_boot": int(audit.get("n_boot", 200)),
                      "chunk_size": int(audit.get("chunk_size", 4096))},
            "seed": int(params.get("seed", 0))}


def reference_pool_size(n_queries: int, preferred: int = 10_000) -> int:
    """N at which the relative Recall@1 reduction is reported: 10,000, or the whole held-out split if smaller."""
    return int(min(preferred, n_queries))


def _code_version() -> str:
    from .. import dp, utility
    return cache.code_version(dp, utility)


def _rows_of(cohort: Any, feats: Any) -> pd.DataFrame:
    return cohort.pairs.iloc[np.asarray(feats.rows)].reset_index(drop=True)


def _embed(feats: Any, heads: tuple[nn.Module, nn.Module]) -> tuple[np.ndarray, np.ndarray]:
    from ..features import embed_features
    return embed_features(feats, heads[0], heads[1])


def _recall_at(image_emb: np.ndarray, report_emb: np.ndarray, pool_size: int, chunk: int) -> float:
    from ..audit import relink_audit
    n = len(image_emb)
    t = relink_audit(image_emb, report_emb, pool_sizes=(None if pool_size >= n else pool_size,), ks=(1,), chunk_size=chunk)
    return float(t["recall"].iloc[0])


def relink_outcomes(feats: Any, pairs: pd.DataFrame, heads: tuple[nn.Module, nn.Module],
                    settings: Mapping[str, Any]) -> pd.DataFrame:
    """Re-linkage of one pair of heads on ``feats``: random and matched pools, patient-bootstrap CIs.

    Rows of :func:`relink_lib.audit.audit_table` with a ``pool`` column (``random`` / ``matched``).
    """
    import warnings

    from ..audit import audit_table, rank_counts

    a = settings["audit"]
    img, rep = _embed(feats, heads)
    labels = pairs[list(CHEXPERT_LABELS)]
    patients = pairs["patient_id"].astype(str).to_numpy()
    tables = []
    for name, hard in POOLS:
        rc = rank_counts(img, rep, labels=labels if hard else None, hard_negatives=hard, chunk_size=a["chunk_size"], device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = audit_table(rc, a["pool_sizes"], a["ks"], patient_ids=patients, n_boot=a["n_boot"], seed=settings["seed"])
        t.insert(0, "pool", name)
        tables.append(t)
    return pd.concat(tables, ignore_index=True)


def utility_outcomes(test_feats: Any, test_pairs: pd.DataFrame, train_feats: Any, train_pairs: pd.DataFrame,
                     heads: tuple[nn.Module, nn.Module], settings: Mapping[str, Any],
                     prompt_features: Mapping[str, Any] | None) -> pd.DataFrame:
    """Utility of one pair of heads: rows ``metric, label, value``.

    Metrics: ``linear_probe_auroc`` (probe fit on ``train_feats``' image embeddings, scored on
    ``test_feats``; per label and ``macro``), ``zero_shot_auroc`` (when prompt features are
    given), ``retrieval_precision@10`` and its ``retrieval_chance@10``.
    """
    from ..utility.probe import linear_probe_auroc
    from ..utility.retrieval import label_retrieval_precision
    from ..utility.zero_shot import zero_shot_auroc

    img, rep = _embed(test_feats, heads)
    labels = test_pairs[list(CHEXPERT_LABELS)]
    tr_img, _ = _embed(train_feats, heads)
    probe = linear_probe_auroc(tr_img, train_pairs[list(CHEXPERT_LABELS)].to_numpy(float), img, labels.to_numpy(float),
                               C=float(settings["utility"].get("probe_C", 1.0)), solver="newton-cholesky")
    util = [{"metric": "linear_probe_auroc", "label": r.label, "value": r.auroc} for r in probe.itertuples()]
    if prompt_features is not None:
        zs = zero_shot_auroc(None, test_feats.image, labels, image_head=heads[0], text_head=heads[1],
                             prompt_features=prompt_features)
        util += [{"metric": "zero_shot_auroc", "label": r.label, "value": r.auroc} for r in zs.itertuples()]
    ret = label_retrieval_precision(img, rep, labels.to_numpy(float), k=min(10, len(img) - 1))
    util += [{"metric": "retrieval_precision@10", "label": "all", "value": float(ret["precision"].iloc[0])},
             {"metric": "retrieval_chance@10", "label": "all", "value": float(ret["chance"].iloc[0])}]
    return pd.DataFrame(util)


def prompt_features_of(encoder: Any) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """Pre-projection text features of the default zero-shot prompts (text tower run once)."""
    from ..utility.zero_shot import default_prompts
    if not hasattr(encoder, "text_features"):
        return None
    out = {}
    with torch.no_grad():
        for label, (pos, neg) in default_prompts().items():
            tf = encoder.text_features(list(pos) + list(neg))
            tf = tf.detach().cpu().numpy() if isinstance(tf, torch.Tensor) else np.asarray(tf)
            out[label] = (tf[:len(pos)], tf[len(pos):])
    return out


def _save_heads(path: Path, heads: Mapping[str, tuple[nn.Module, nn.Module]]) -> None:
    torch.save({k: (v[0].state_dict(), v[1].state_dict()) for k, v in heads.items()}, path)


def _load_heads(path: Path, template: tuple[nn.Module, nn.Module]) -> dict[str, tuple[nn.Module, nn.Module]]:
    states = torch.load(path, weights_only=True)
    out = {}
    for k, (si, st) in states.items():
        ih, th = clone_head(template[0]), clone_head(template[1])
        ih.load_state_dict(si)
        th.load_state_dict(st)
        for p in list(ih.parameters()) + list(th.parameters()):
            p.requires_grad_(False)
        out[k] = (ih, th)
    return out


def mitigate_rung(params: Mapping[str, Any], cohort: Any, rung: Any, *, setting: Any = None,
                  progress: bool = False) -> RungMitigation:
    """Train the DP heads and the controls for ``rung`` and evaluate every variant (cached).

    ``setting``: a :class:`relink_lib.dp.frontier.Setting` (init, optimizer, lr, epochs; chapter 6
    selects it on the frontier); ``None`` uses the profile's ``dp`` section from the pretrained heads.
    """
    from .frontier import Setting

    if setting is None:
        dp = params["dp"]
        setting = Setting("pretrained", str(dp.get("optimizer", "adam")), float(dp.get("lr", 1e-3)), float(dp.get("epochs", 5)))
    from ..features import feature_dir, get_features

    settings = dp_settings(params)
    splits = {s: get_features(params, cohort, rung, s, progress=progress) for s in ("train", "val", "test")}
    for s in ("train", "val", "test"):
        if len(splits[s]) < 2:
            raise ValueError(f"cohort split {s!r}: needs at least 2 pairs for the mitigation stage, has {len(splits[s])}")
    key = {"step": "dp-mitigation", "features": {s: feature_dir(params, cohort, rung, s).name for s in splits},
           "settings": settings, "setting": setting.as_dict(), "code": _code_version()}
    encoder = rung.load(device="cpu")
    template = (encoder.image_head, encoder.text_head)

    def build(tmp: Path) -> None:
        with _few_threads():
            _build_mitigation(tmp, params, cohort, splits, settings, encoder, template, setting)

    path = cache.cached_dir(cache_dir(params["profile"]), "dp-mitigation", key, build)
    out = load_mitigation(path, rung, template)
    out.setting = setting.as_dict()
    return out


@contextmanager
def _few_threads(n: int = 1) -> Iterator[None]:
    """Run small dense work single-threaded (torch and BLAS): on shared CPUs threads only contend."""
    from threadpoolctl import threadpool_limits
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(old)


def _build_mitigation(tmp: Path, params: Mapping[str, Any], cohort: Any, splits: Mapping[str, Any],
                      settings: Mapping[str, Any], encoder: Any, template: tuple[nn.Module, nn.Module], setting: Any) -> None:
    t0 = time.perf_counter()
    train, val, test = splits["train"], splits["val"], splits["test"]
    train_pairs, test_pairs = _rows_of(cohort, train), _rows_of(cohort, test)
    bank = min(int(settings["dp"].get("bank_size", 2048)), len(val))
    config = DPConfig.from_params(params, optimizer=setting.optimizer, lr=setting.lr, epochs=setting.epochs)
    common = dict(bank_text_feats=val.text[:bank], bank_image_feats=val.image[:bank],
                  patient_ids=train_pairs["patient_id"].astype(str).to_numpy(), eval_feats=(val.image, val.text))
    fresh = fresh_heads(template[0], template[1], seed=config.seed)
    start = fresh if setting.init == "reinit" else template
    dp = train_heads(train.image, train.text, start[0], start[1], config=config, **common)
    npv = train_heads(train.image, train.text, start[0], start[1], config=nonprivate_config(config), **common)
    heads = {"pretrained": (clone_head(template[0]), clone_head(template[1])),
             "dp": (dp.image_head, dp.text_head), "nonprivate": (npv.image_head, npv.text_head),
             "reinit": fresh}
    n_ref = reference_pool_size(len(test))
    chunk = settings["audit"]["chunk_size"]
    dp_r1 = _recall_at(*_embed(test, heads["dp"]), n_ref, chunk)
    fit = tune_output_perturbation(template[0], template[1], lambda i, t: _recall_at(*_embed(test, (i, t)), n_ref, chunk),
                                   dp_r1, seed=settings["seed"], abs_tol=max(0.002, 0.02 * dp_r1))
    heads["output_perturbation"] = (fit.image_head, fit.text_head)
    prompts = prompt_features_of(encoder)
    recalls, utils = [], []
    for name in VARIANTS:
        r = relink_outcomes(test, test_pairs, heads[name], settings)
        u = utility_outcomes(test, test_pairs, train, train_pairs, heads[name], settings, prompts)
        r.insert(0, "variant", name)
        u.insert(0, "variant", name)
        recalls.append(r)
        utils.append(u)
    _save_heads(tmp / "heads.pt", heads)
    pd.concat(recalls, ignore_index=True).to_csv(tmp / "recall.csv", index=False)
    pd.concat(utils, ignore_index=True).to_csv(tmp / "utility.csv", index=False)
    dp.history.to_csv(tmp / "history_dp.csv", index=False)
    npv.history.to_csv(tmp / "history_nonprivate.csv", index=False)
    meta = {"record": dp.record, "nonprivate_record": npv.record, "reference_pool_size": n_ref,
            "perturbation": {"relative_scale": fit.scale, "recall_at_1": fit.score, "target_recall_at_1": dp_r1,
                             "pretrained_recall_at_1": fit.baseline_score, "evaluations": fit.evaluations,
                             "seed": settings["seed"]},
            "bank": {"source": "internal cohort, val split (declared public)", "size": bank},
            "build_time_s": time.perf_counter() - t0}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=_json_default))


def load_mitigation(path: Path, rung: Any, template: tuple[nn.Module, nn.Module]) -> RungMitigation:
    """Read one rung's cached mitigation directory."""
    meta = json.loads((path / "meta.json").read_text())
    recall = pd.read_csv(path / "recall.csv")
    recall["pool_size"] = recall["pool_size"].astype(int)
    return RungMitigation(
        rung_index=rung.index, rung_name=rung.name, record=meta["record"], nonprivate_record=meta["nonprivate_record"],
        history=pd.read_csv(path / "history_dp.csv"), nonprivate_history=pd.read_csv(path / "history_nonprivate.csv"),
        perturbation=meta["perturbation"], recall=recall, utility=pd.read_csv(path / "utility.csv"),
        reference_pool_size=int(meta["reference_pool_size"]), heads=_load_heads(path / "heads.pt", template), path=path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.generic,)):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def mitigation_ladder(params: Mapping[str, Any], *, progress: bool = False) -> tuple[Any, list[Any], list[RungMitigation]]:
    """``(cohort, rungs, mitigations)`` for every rung of the profile's ladder, at chapter 6's selected setting.

    The setting is the frontier's selected point (:func:`relink_lib.dp.frontier_stage.get_frontier`;
    its reference point when none meets the rule), applied to every rung.
    """
    from ..cohorts.stage import get_cohort
    from ..models.stage import get_ladder
    from .frontier_stage import get_frontier, reference_setting

    cohort = get_cohort(params, site="internal")
    rungs = get_ladder(params, progress=progress)
    setting = reference_setting(get_frontier(params, progress=progress))
    return cohort, rungs, [mitigate_rung(params, cohort, r, setting=setting, progress=progress) for r in rungs]


def recall_reduction(m: RungMitigation, variant: str = "dp", k: int = 1, pool: str = "random") -> dict[str, float]:
    """Recall@k of ``variant`` vs pretrained at the reference N, and the relative reduction."""
    t = m.recall[(m.recall["pool"] == pool) & (m.recall["k"] == k)]
    n = m.reference_pool_size
    if n not in set(t["pool_size"]):  # the full database is the largest available N
        n = int(t["pool_size"].max())
    before = float(t[(t["variant"] == "pretrained") & (t["pool_size"] == n)]["recall"].iloc[0])
    after = float(t[(t["variant"] == variant) & (t["pool_size"] == n)]["recall"].iloc[0])
    return {"pool_size": n, "recall_before": before, "recall_after": after,
            "relative_reduction": (before - after) / before if before > 0 else float("nan")}


def transfer_rung(params: Mapping[str, Any], external: Any, rung: Any, mitigation: RungMitigation,
                  *, progress: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the rung's heads (all variants), unchanged, to the external cohort (cached).

    Recall is measured over all external pairs (none was seen in training); the linear probe
    is trained on the external ``train`` split and tested on its other rows (patient-level).
    Returns ``(recall, utility)`` as :func:`relink_outcomes` / :func:`utility_outcomes`, with a ``variant`` column.
    """
    from ..features import feature_dir, get_features

    settings = dp_settings(params)
    allf = get_features(params, external, rung, "all", progress=progress)
    key = {"step": "dp-transfer", "features": feature_dir(params, external, rung, "all").name,
           "mitigation": mitigation.path.name if mitigation.path else None, "settings": settings, "code": _code_version()}

    def build(tmp: Path) -> None:
        with _few_threads():
            _build_transfer(tmp)

    def _build_transfer(tmp: Path) -> None:
        pairs = _rows_of(external, allf)
        is_train = (pairs["split"] == "train").to_numpy()
        if is_train.all() or not is_train.any():
            from ..utility.probe import patient_split
            is_train, _ = patient_split(pairs["patient_id"].astype(str).to_numpy(), 0.3, settings["seed"])

        class _Sub:
            def __init__(self, f: Any, mask: np.ndarray) -> None:
                self.image, self.text, self.rows = f.image[mask], f.text[mask], f.rows[mask]

            def __len__(self) -> int:
                return len(self.rows)
        everything = _Sub(allf, np.ones(len(allf), bool))
        train, test = _Sub(allf, is_train), _Sub(allf, ~is_train)
        prompts = prompt_features_of(mitigation_encoder(rung))
        recalls, utils = [], []
        for name in VARIANTS:
            r = relink_outcomes(everything, pairs, mitigation.heads[name], settings)
            u = utility_outcomes(test, pairs[~is_train].reset_index(drop=True), train,
                                 pairs[is_train].reset_index(drop=True), mitigation.heads[name], settings, prompts)
            r.insert(0, "variant", name)
            u.insert(0, "variant", name)
            recalls.append(r)
            utils.append(u)
        pd.concat(recalls, ignore_index=True).to_csv(tmp / "recall.csv", index=False)
        pd.concat(utils, ignore_index=True).to_csv(tmp / "utility.csv", index=False)

    path = cache.cached_dir(cache_dir(params["profile"]), "dp-transfer", key, build)
    recall = pd.read_csv(path / "recall.csv")
    recall["pool_size"] = recall["pool_size"].astype(int)
    return recall, pd.read_csv(path / "utility.csv")


def mitigation_encoder(rung: Any) -> Any:
    """The rung's encoder on the CPU (for the zero-shot prompts' text features)."""
    return rung.load(device="cpu")
