"""Pipeline stage of chapters 6-8: DP heads, controls, outcomes, and transfer to the external site.

For every rung of the ladder (:func:`mitigate_rung`, cached per rung):

- data: cached pre-projection features (encoders frozen, never re-run here) of the internal
  cohort's ``train`` split (the PRIVATE pairs the heads are fine-tuned on), ``val`` split (declared
  PUBLIC: the fixed bank of reports and images the objective contrasts against, and the public
  evaluation loss) and ``test`` split (held out: every outcome);
- variants: ``pretrained`` heads; ``dp`` (DP-SGD at the profile's (eps, delta) with chapter 6's
  selected setting: init, optimizer, learning rate, epochs); ``nonprivate`` (same objective, data,
  start, sampling and steps, no clipping/noise); ``reinit`` (data-independent random heads,
  untrained: the DP start when the setting's init is ``reinit``); ``output_perturbation`` (Gaussian
  noise on the pretrained weights, scale tuned so Recall@1 at the reference N,
  ``dp.frontier.reference_pool_size``, falls as far as under DP);
- outcomes on the held-out split, per variant: Recall@1/5/10 at every N over random and
  pathology-matched pools with patient-bootstrap CIs; the image-side linear probe (train split ->
  test split), zero-shot label AUROC and label-level retrieval precision@10.

:func:`transfer_rung` applies the same heads, unchanged, to the external cohort (second site,
exported to the CheXpert Plus layout and read back by ``load_chexpert_plus``). Report text is
never read here: only features, labels and patient ids.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import cache
from ..cohorts.base import Cohort
from ..cohorts.stage import get_cohort
from ..config import Profile, ProfileLike, as_profile
from ..features import Features, embed_features, feature_dir, get_features
from ..models.base import DualEncoder
from ..models.stage import Rung, get_ladder
from ..numerics import cache_token
from ..profiles import cache_dir
from ..utility.probe import patient_split
from .controls import nonprivate_config, tune_output_perturbation
from .frontier import Setting, heldout_reference_pool_size
from .frontier_stage import get_frontier, reference_setting
from .heads import clone_head, fresh_heads
from .outcomes import (
    POOLS,
    prompt_features_of,
    recall_at_1,
    recall_reduction,
    relink_outcomes,
    utility_outcomes,
)
from .train import train_heads

VARIANTS: tuple[str, ...] = ("pretrained", "dp", "nonprivate", "reinit", "output_perturbation")
__all__ = [
    "VARIANTS",
    "POOLS",
    "RungMitigation",
    "mitigate_rung",
    "load_mitigation",
    "mitigation_ladder",
    "reduction_at_reference",
    "transfer_rung",
    "mitigation_encoder",
]

MITIGATION_FORMAT = 2
"""Version of a cached mitigation directory's layout (part of its cache key): 2 = ``mitigation.json``
(:meth:`RungMitigation.to_json`), ``heads.pt`` and ``build.json``; 1 was ``meta.json`` and CSV tables."""
OP_MATCH_ABS_TOL = 0.002
"""Output perturbation is tuned until its Recall@1 at the reference N is within
``max(OP_MATCH_ABS_TOL, OP_MATCH_REL_TOL * dp_recall)`` of the DP heads'."""
OP_MATCH_REL_TOL = 0.02
EXTERNAL_PROBE_TEST_FRACTION = 0.3
"""Fraction of the external cohort's patients the probe is scored on when its ``split`` column has no
``train`` rows or only ``train`` rows (otherwise the external ``train`` split is the probe's train side)."""

_TABLES = ("history", "nonprivate_history", "recall", "utility")


@dataclass(frozen=True, eq=False)
class RungMitigation:
    """Result of :func:`mitigate_rung`: everything chapters 6-9 need about one rung (see the module docstring).

    ``record`` / ``nonprivate_record``: the DP and non-private training records
    (:func:`relink_lib.dp.train.train_heads`); ``history`` / ``nonprivate_history``: their per-epoch logs;
    ``perturbation``: the output-perturbation fit; ``recall``: :func:`relink_outcomes` rows with a ``variant``
    column; ``utility``: :func:`utility_outcomes` rows with a ``variant`` column; ``reference_pool_size``: N of
    the cuts (:func:`reduction_at_reference`); ``setting``: chapter 6's setting the DP heads were trained at
    (``Setting.as_dict()``); ``heads``: variant -> (image head, text head), not part of the JSON (saved as
    ``heads.pt``); ``path``: the cache directory it was read from (``None`` when built in memory).
    Frozen; compared by identity (its tables are DataFrames).
    """

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

    def to_json(self) -> dict[str, Any]:
        """The JSON part: every field but ``heads`` and ``path``, tables as lists of row records.

        Plain Python types only (numpy scalars converted); NaN and inf stay floats (Python's ``json``
        writes them as ``NaN`` / ``Infinity``). :meth:`from_json` inverts it.
        """
        out = {
            "rung_index": self.rung_index,
            "rung_name": self.rung_name,
            "record": self.record,
            "nonprivate_record": self.nonprivate_record,
            "perturbation": self.perturbation,
            "reference_pool_size": self.reference_pool_size,
            "setting": self.setting,
            **{name: getattr(self, name).to_dict(orient="records") for name in _TABLES},
        }
        return json.loads(json.dumps(out, default=_json_default))

    @classmethod
    def from_json(
        cls,
        data: Mapping[str, Any],
        *,
        heads: Mapping[str, tuple[nn.Module, nn.Module]] | None = None,
        path: Path | None = None,
    ) -> RungMitigation:
        """The result whose :meth:`to_json` is ``data``, with ``heads`` (default none) and ``path``."""
        tables = {name: pd.DataFrame.from_records(data[name]) for name in _TABLES}
        if "pool_size" in tables["recall"]:
            tables["recall"]["pool_size"] = tables["recall"]["pool_size"].astype(int)
        return cls(
            rung_index=int(data["rung_index"]),
            rung_name=str(data["rung_name"]),
            record=dict(data["record"]),
            nonprivate_record=dict(data["nonprivate_record"]),
            perturbation=dict(data["perturbation"]),
            reference_pool_size=int(data["reference_pool_size"]),
            setting=None if data["setting"] is None else dict(data["setting"]),
            heads=dict(heads or {}),
            path=path,
            **tables,
        )


def _outcome_key(cfg: Profile) -> dict[str, Any]:
    """The settings the mitigation's outcomes depend on (part of its cache keys)."""
    audit = cfg.audit
    return {
        "dp": cfg.dp.to_dict(),
        "utility": cfg.utility.to_dict(),
        "audit": {
            "pool_sizes": audit.pool_sizes,
            "ks": audit.ks,
            "n_boot": audit.n_boot,
            "chunk_size": audit.chunk_size,
        },
        "seed": cfg.seed,
    }


def _rows_of(cohort: Cohort, feats: Features) -> pd.DataFrame:
    return cohort.pairs.iloc[np.asarray(feats.rows)].reset_index(drop=True)


def _embed(feats: Features, heads: tuple[nn.Module, nn.Module]) -> tuple[np.ndarray, np.ndarray]:
    return embed_features(feats, heads[0], heads[1])


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


def mitigate_rung(
    params: ProfileLike, cohort: Cohort, rung: Rung, *, setting: Setting | None = None, progress: bool = False
) -> RungMitigation:
    """Train the DP heads and the controls for ``rung`` and evaluate every variant (cached).

    ``setting``: a :class:`relink_lib.dp.frontier.Setting` (init, optimizer, lr, epochs; chapter 6
    selects it on the frontier); ``None``: the pretrained heads at the ``dp.budget_sweep`` optimizer, lr and epochs.
    """
    cfg = as_profile(params)
    if setting is None:
        t = cfg.dp.budget_sweep
        setting = Setting("pretrained", t.optimizer, float(t.lr), float(t.epochs))
    splits = {s: get_features(cfg, cohort, rung, s, progress=progress) for s in ("train", "val", "test")}
    for s in ("train", "val", "test"):
        if len(splits[s]) < 2:
            raise ValueError(
                f"cohort split {s!r}: needs at least 2 pairs for the mitigation stage, has {len(splits[s])}"
            )
    key = {
        "step": "dp-mitigation",
        "features": {s: feature_dir(cfg, cohort, rung, s).name for s in splits},
        "settings": _outcome_key(cfg),
        "setting": setting.as_dict(),
        "format": MITIGATION_FORMAT,
        "code": cache.stage_code_version(__name__),
        "numerics": cache_token(),  # the dispatch and the audit's BLAS
    }
    encoder = rung.load(device="cpu")
    template = (encoder.image_head, encoder.text_head)

    def build(tmp: Path) -> None:
        t0 = time.perf_counter()
        result, bank = _compute_mitigation(cfg, cohort, rung, splits, encoder, template, setting)
        _save_heads(tmp / "heads.pt", result.heads)
        (tmp / "mitigation.json").write_text(json.dumps(result.to_json(), indent=1))
        build_info = {"bank": bank, "build_time_s": time.perf_counter() - t0}
        (tmp / "build.json").write_text(json.dumps(build_info, indent=1))

    path = cache.cached_dir(cache_dir(cfg.name), "dp-mitigation", key, build)
    return load_mitigation(path, rung, template)


def _compute_mitigation(
    cfg: Profile,
    cohort: Cohort,
    rung: Rung,
    splits: Mapping[str, Features],
    encoder: DualEncoder,
    template: tuple[nn.Module, nn.Module],
    setting: Setting,
) -> tuple[RungMitigation, dict[str, Any]]:
    """The mitigation of one rung (heads included, ``path`` None) and a description of the public bank."""
    train, val, test = splits["train"], splits["val"], splits["test"]
    train_pairs, test_pairs = _rows_of(cohort, train), _rows_of(cohort, test)
    bank = min(cfg.dp.bank_size, len(val))
    config = cfg.dp.training_config(optimizer=setting.optimizer, lr=setting.lr, epochs=setting.epochs)
    common = dict(
        bank_text_feats=val.text[:bank],
        bank_image_feats=val.image[:bank],
        patient_ids=train_pairs["patient_id"].astype(str).to_numpy(),
        eval_feats=(val.image, val.text),
    )
    fresh = fresh_heads(template[0], template[1], seed=config.seed)
    start = fresh if setting.init == "reinit" else template
    dp = train_heads(train.image, train.text, start[0], start[1], config=config, **common)
    npv = train_heads(train.image, train.text, start[0], start[1], config=nonprivate_config(config), **common)
    heads = {
        "pretrained": (clone_head(template[0]), clone_head(template[1])),
        "dp": (dp.image_head, dp.text_head),
        "nonprivate": (npv.image_head, npv.text_head),
        "reinit": fresh,
    }
    # the profile's reference N, or the whole held-out split if smaller
    n_ref = heldout_reference_pool_size(len(test), len(test), cfg.dp.frontier.reference_pool_size)
    chunk = cfg.audit.chunk_size
    dp_r1 = recall_at_1(*_embed(test, heads["dp"]), n_ref, chunk)
    fit = tune_output_perturbation(
        template[0],
        template[1],
        lambda i, t: recall_at_1(*_embed(test, (i, t)), n_ref, chunk),
        dp_r1,
        seed=cfg.seed,
        abs_tol=max(OP_MATCH_ABS_TOL, OP_MATCH_REL_TOL * dp_r1),
    )
    heads["output_perturbation"] = (fit.image_head, fit.text_head)
    prompts = prompt_features_of(encoder)
    recalls, utils = [], []
    for name in VARIANTS:
        r = relink_outcomes(test, test_pairs, heads[name], cfg.audit, cfg.seed)
        u = utility_outcomes(test, test_pairs, train, train_pairs, heads[name], cfg.utility.probe_C, prompts)
        r.insert(0, "variant", name)
        u.insert(0, "variant", name)
        recalls.append(r)
        utils.append(u)
    result = RungMitigation(
        rung_index=rung.index,
        rung_name=rung.name,
        record=dp.record,
        nonprivate_record=npv.record,
        history=dp.history,
        nonprivate_history=npv.history,
        perturbation={
            "relative_scale": fit.scale,
            "recall_at_1": fit.score,
            "target_recall_at_1": dp_r1,
            "pretrained_recall_at_1": fit.baseline_score,
            "evaluations": fit.evaluations,
            "seed": cfg.seed,
        },
        recall=pd.concat(recalls, ignore_index=True),
        utility=pd.concat(utils, ignore_index=True),
        reference_pool_size=n_ref,
        heads=heads,
        setting=setting.as_dict(),
    )
    return result, {"source": "internal cohort, val split (declared public)", "size": bank}


def load_mitigation(path: Path, rung: Rung, template: tuple[nn.Module, nn.Module]) -> RungMitigation:
    """Read one rung's cached mitigation directory (format :data:`MITIGATION_FORMAT`) as built for ``rung``.

    ``template``: the rung's (image head, text head), the modules the saved weights are loaded into.
    """
    data = json.loads((path / "mitigation.json").read_text())
    data = {**data, "rung_index": rung.index, "rung_name": rung.name}
    return RungMitigation.from_json(data, heads=_load_heads(path / "heads.pt", template), path=path)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.generic,)):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def mitigation_ladder(
    params: ProfileLike, *, progress: bool = False
) -> tuple[Cohort, list[Rung], list[RungMitigation]]:
    """``(cohort, rungs, mitigations)`` for every rung of the profile's ladder, at chapter 6's selected setting.

    The setting is the frontier's selected point (:func:`relink_lib.dp.frontier_stage.get_frontier`;
    its reference point when none meets the rule), applied to every rung.
    """
    cfg = as_profile(params)
    cohort = get_cohort(cfg, site="internal")
    rungs = get_ladder(cfg, progress=progress)
    setting = reference_setting(get_frontier(cfg, progress=progress))
    return cohort, rungs, [mitigate_rung(cfg, cohort, r, setting=setting, progress=progress) for r in rungs]


def reduction_at_reference(
    m: RungMitigation, variant: str = "dp", k: int = 1, pool: str = "random"
) -> dict[str, float]:
    """Recall@k of ``variant`` vs pretrained in ``m.recall`` at the rung's reference N (the full held-out split
    when smaller), and the relative reduction: :func:`relink_lib.dp.outcomes.recall_reduction` at
    ``pool_size=m.reference_pool_size``."""
    return recall_reduction(m.recall, variant, k=k, pool=pool, pool_size=m.reference_pool_size)


def _heads_digest(heads: Mapping[str, tuple[nn.Module, nn.Module]]) -> str:
    """Hash of every variant's head weights: what the transfer reads of a mitigation (part of its cache key)."""
    digest = hashlib.sha256()
    for name in sorted(heads):
        for side, head in zip(("image", "text"), heads[name]):
            for pname, t in sorted(head.state_dict().items()):
                arr = t.detach().cpu().contiguous().numpy()
                digest.update(f"{name}/{side}/{pname}/{arr.dtype}/{arr.shape}".encode())
                digest.update(arr.tobytes())
    return digest.hexdigest()[:16]


def _subset(feats: Features, mask: np.ndarray) -> Features:
    return Features(image=feats.image[mask], text=feats.text[mask], rows=feats.rows[mask])


def transfer_rung(
    params: ProfileLike, external: Cohort, rung: Rung, mitigation: RungMitigation, *, progress: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Apply the rung's heads (all variants), unchanged, to the external cohort (cached).

    Recall is measured over all external pairs (none was seen in training); the linear probe
    is trained on the external ``train`` split and tested on its other rows (patient-level).
    Returns ``(recall, utility)`` as :func:`relink_outcomes` / :func:`utility_outcomes`, with a ``variant`` column.
    """
    cfg = as_profile(params)
    allf = get_features(cfg, external, rung, "all", progress=progress)
    key = {
        "step": "dp-transfer",
        "features": feature_dir(cfg, external, rung, "all").name,
        "heads": _heads_digest(mitigation.heads),
        "settings": _outcome_key(cfg),
        "code": cache.stage_code_version(__name__),
        "numerics": cache_token(),  # the dispatch and the audit's BLAS
    }

    def build(tmp: Path) -> None:
        _build_transfer(tmp)

    def _build_transfer(tmp: Path) -> None:
        pairs = _rows_of(external, allf)
        is_train = (pairs["split"] == "train").to_numpy()
        if is_train.all() or not is_train.any():
            ids = pairs["patient_id"].astype(str).to_numpy()
            is_train, _ = patient_split(ids, EXTERNAL_PROBE_TEST_FRACTION, cfg.seed)
        everything = _subset(allf, np.ones(len(allf), bool))
        train, test = _subset(allf, is_train), _subset(allf, ~is_train)
        prompts = prompt_features_of(mitigation_encoder(rung))
        recalls, utils = [], []
        for name in VARIANTS:
            r = relink_outcomes(everything, pairs, mitigation.heads[name], cfg.audit, cfg.seed)
            u = utility_outcomes(
                test,
                pairs[~is_train].reset_index(drop=True),
                train,
                pairs[is_train].reset_index(drop=True),
                mitigation.heads[name],
                cfg.utility.probe_C,
                prompts,
            )
            r.insert(0, "variant", name)
            u.insert(0, "variant", name)
            recalls.append(r)
            utils.append(u)
        pd.concat(recalls, ignore_index=True).to_csv(tmp / "recall.csv", index=False)
        pd.concat(utils, ignore_index=True).to_csv(tmp / "utility.csv", index=False)

    path = cache.cached_dir(cache_dir(cfg.name), "dp-transfer", key, build)
    recall = pd.read_csv(path / "recall.csv")
    recall["pool_size"] = recall["pool_size"].astype(int)
    return recall, pd.read_csv(path / "utility.csv")


def mitigation_encoder(rung: Rung) -> DualEncoder:
    """The rung's encoder on the CPU (for the zero-shot prompts' text features)."""
    return rung.load(device="cpu")
