"""Pipeline stage of chapter 11: the adaptive attacker, who is protected, and the custodian's release options.

:func:`get_adaptive` (cached) runs on the most specialised rung:

- *released variants*: ``pretrained`` heads; ``dp`` heads (chapter 6's released setting, :func:`mitigate_rung`);
  ``fresh`` untrained heads (:func:`fresh_heads`); ``public_only`` heads (fresh heads trained non-privately on
  the whole public val split);
- *public sources* of the attacker's ``m`` pairs: the internal ``val`` split (declared public) and the
  ``external`` site's cohort, featurised by the same frozen encoders. A synthetic source with fewer than
  ``adaptive.public_pool_min`` pairs is topped up with fresh patients of the same generator (another seed, as the
  scaling pool and the confirmation cohort are drawn); a source that still has fewer pairs than ``m`` skips that
  ``m`` (recorded in ``skipped``). The ``m`` pairs are the first ``m`` of a seeded order (nested) that puts the
  source's own pairs first and its top-up after them;
- *attacks* (:mod:`.attacks`): ``passive`` (m = 0: the released heads as they are), ``ridge``, ``cca``,
  ``new_heads`` (fresh heads trained on the public pairs), ``finetune`` (the released heads trained on them) and
  ``text_side`` (TF-IDF of the report text mapped into the released image space: the attacker of an image-only
  release). ``ridge``, ``cca`` and ``new_heads`` use the frozen encoders alone, so their outcome is the same for
  every released variant (computed once);
- *outcome* on the held-out test split: tie-fair expected Recall@1 over random pools of N = 100 and N = 10,000
  (each capped at the test set size minus one), lift over chance 1/N with a patient-bootstrap 95% CI.

It also measures the protection table (per group of patients), the release options and the per-patient tail.
Attacks are fit on public rows only: every fit is checked disjoint from the evaluated rows.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import pandas as pd
from torch import nn

from .. import cache
from ..audit.bootstrap import patient_bootstrap, percentile_interval
from ..audit.engine import per_query_recall, rank_counts
from ..cohorts.base import Cohort
from ..cohorts.stage import get_cohort
from ..config import Profile, ProfileLike, as_profile
from ..dp.accounting import group_privacy
from ..dp.frontier import JsonRecord
from ..dp.frontier_stage import get_frontier, reference_setting
from ..dp.outcomes import prompt_features_of, utility_outcomes
from ..dp.stage import mitigate_rung
from ..features import Features, feature_dir, get_features
from ..models.stage import Rung, get_ladder
from ..numerics import cache_token
from ..profiles import cache_dir
from .attacks import (
    LinearAttack,
    TextSideAttack,
    cca_attack,
    check_disjoint,
    embed_image,
    embed_linear,
    embed_text_side,
    embed_with_heads,
    ridge_attack,
    text_side_attack,
    train_heads_attacks,
)

VARIANTS: tuple[str, ...] = ("pretrained", "dp", "fresh", "public_only")
ATTACKS: tuple[str, ...] = ("passive", "ridge", "cca", "new_heads", "finetune", "text_side")
HEAD_FREE_ATTACKS: tuple[str, ...] = ("ridge", "cca", "new_heads")
"""Attacks that never read the released heads (the frozen encoders and the public pairs only)."""
RELEASED_HEAD_ATTACKS: tuple[str, ...] = ("finetune", "text_side")
"""Attacks fit per released variant: fine-tuning reads both released heads; the text-side attack maps its own
report features into the released image space (image tower and image head), so it needs no text tower."""
EXTENSION_SEED_OFFSETS: Mapping[str, int] = {"val": 11001, "external": 12001}
"""A public source with fewer than ``adaptive.public_pool_min`` pairs is topped up with fresh patients of the same
generator (synthetic cohorts), seeded ``params["seed"]`` + this offset: disjoint from every other draw."""
SOURCES: tuple[str, ...] = ("val", "external")
OPTIONS: tuple[str, ...] = ("full_model", "dp_heads", "public_only_heads", "image_tower_only", "restricted_pools")
TAIL_CONDITIONS: tuple[str, ...] = ("full model, passive", "DP heads, passive", "DP heads, adaptive")
TAIL_MULTIPLE = 10.0
"""A patient is in the tail when their expected Recall@1 at N = 100 exceeds ``TAIL_MULTIPLE`` x chance."""
TAIL_TOP_FRACTION = 0.01
ADAPTIVE_FORMAT = 1

Heads = tuple[nn.Module, nn.Module]
CI = tuple[float, float]


@dataclass(frozen=True)
class AttackOutcome(JsonRecord):
    """One (released variant, attack, source, m): expected Recall@1 and lift over chance at N = ``pool_small``
    (100) and N = ``pool_ref`` (10,000), capped at the test split minus one, with patient-bootstrap CIs."""

    variant: str
    attack: str
    source: str
    m: int
    recall_small: float
    lift_small: float
    lift_small_ci: CI
    recall_ref: float
    lift_ref: float
    lift_ref_ci: CI


@dataclass(frozen=True)
class Skipped(JsonRecord):
    """An ``m`` a source could not supply (``n_available`` public pairs), or that repeats a smaller entry."""

    source: str
    m: int | None
    n_available: int
    reason: str


@dataclass(frozen=True)
class MHalf(JsonRecord):
    """Per released variant and source: the passive cut against the pretrained heads at N = pool_ref (lift
    points), the smallest m whose best attack recovers half of it (``None``: none does) and all of it."""

    variant: str
    source: str
    lift_pretrained: float
    lift_passive: float
    cut: float
    m_half: int | None
    m_all: int | None


@dataclass(frozen=True)
class ProtectionRow(JsonRecord):
    """One group of patients: what saw their data, the guarantee, and lift at N = ``pool_size`` (100, capped)
    before (pretrained heads) and after (DP heads) the mitigation, passive and adaptive (``adaptive_source``)."""

    group: str
    n_pairs: int
    pool_size: int
    saw: str
    guarantee: str
    passive_before: float
    passive_before_ci: CI
    passive_after: float
    passive_after_ci: CI
    adaptive_before: float
    adaptive_before_ci: CI
    adaptive_after: float
    adaptive_after_ci: CI
    adaptive_source: str
    adaptive_m: int


@dataclass(frozen=True)
class ReleaseOption(JsonRecord):
    """One release option of the custodian: passive and adaptive lift, utility (``None``: not applicable).

    ``risk_pool_size``: the largest pool the option lets an attacker form (N = pool_ref, or ``n_max``);
    ``risk_lift`` / ``risk_lift_ci``: the adaptive lift there, which the recommendation reads."""

    option: str
    passive_lift_small: float | None
    passive_lift_small_ci: CI | None
    passive_lift_ref: float | None
    passive_lift_ref_ci: CI | None
    adaptive_lift_ref: float | None
    adaptive_lift_ref_ci: CI | None
    adaptive_attack: str
    risk_pool_size: int
    risk_lift: float
    risk_lift_ci: CI
    zero_shot_auroc: float | None
    probe_auroc: float | None
    retrieval_p10: float | None
    note: str


@dataclass(frozen=True)
class TailRow(JsonRecord):
    """Per-patient expected Recall@1 at N = pool_small under one condition: the fraction of patients above
    10 x chance and the mean of the top 1% of patients, with patient-bootstrap CIs."""

    condition: str
    n_patients: int
    fraction_above: float
    fraction_above_ci: CI
    top_mean: float
    top_mean_ci: CI


@dataclass(frozen=True)
class AdaptiveResult(JsonRecord):
    """Result of :func:`get_adaptive` (see the module docstring). ``sources``: public pairs per source, of which
    ``topped_up`` are fresh patients drawn for the attacker. ``per_patient``: condition -> per-patient
    expected R@1 at N = pool_small (for the tail figure; kept out of the chapter's payload)."""

    rung: str
    n_test: int
    pool_small: int
    pool_ref: int
    n_max: int
    m_reference: int
    sources: Mapping[str, int]
    topped_up: Mapping[str, int]
    epsilon: float | None
    delta: float | None
    setting: Mapping[str, Any]
    outcomes: tuple[AttackOutcome, ...]
    skipped: tuple[Skipped, ...]
    m_half: tuple[MHalf, ...]
    adaptive_m: Mapping[str, int]
    protection: tuple[ProtectionRow, ...]
    options: tuple[ReleaseOption, ...]
    tail: tuple[TailRow, ...]
    per_patient: Mapping[str, tuple[float, ...]]
    group_sizes: Mapping[str, int]
    build_time_s: float

    NESTED: ClassVar[Mapping[str, Any]] = {
        "outcomes": (AttackOutcome,),
        "skipped": (Skipped,),
        "m_half": (MHalf,),
        "protection": (ProtectionRow,),
        "options": (ReleaseOption,),
        "tail": (TailRow,),
    }

    def outcome_frame(self) -> pd.DataFrame:
        """``outcomes`` as a DataFrame (one row per record)."""
        return pd.DataFrame([o.to_json() for o in self.outcomes])


# ------------------------------------------------------------------------------------------ measurement
@dataclass
class _Scored:
    per_query: dict[int, np.ndarray]
    patients: np.ndarray


def _score(emb: tuple[np.ndarray, np.ndarray], pools: tuple[int, ...], patients: np.ndarray, chunk: int) -> _Scored:
    rc = rank_counts(emb[0], emb[1], chunk_size=chunk, device="cpu")
    return _Scored({n: per_query_recall(rc, n, 1) for n in sorted(set(pools))}, patients)


def _lift(s: _Scored, n: int, n_boot: int, seed: int) -> tuple[float, float, CI]:
    """(recall, lift, lift CI) at pool ``n``."""
    q = np.nan_to_num(s.per_query[n], nan=0.0)
    rep = patient_bootstrap({"r": q}, s.patients, n_boot=n_boot, seed=seed)["r"]
    lo, hi = percentile_interval(rep)
    r = float(np.mean(q))
    return r, r * n, (float(lo) * n, float(hi) * n)


def per_patient_recall(per_query: np.ndarray, patients: np.ndarray) -> np.ndarray:
    """Each patient's mean expected Recall@1 over their queries (patients in sorted id order)."""
    _, inv = np.unique(patients.astype(str), return_inverse=True)
    q = np.nan_to_num(np.asarray(per_query, float), nan=0.0)
    return np.bincount(inv, weights=q) / np.bincount(inv)


def tail_statistics(per_patient: np.ndarray, chance: float, n_boot: int, seed: int) -> TailRow:
    """Fraction of patients above ``TAIL_MULTIPLE`` x ``chance`` and the mean of the top ``TAIL_TOP_FRACTION`` of
    patients, each with a patient-bootstrap 95% CI (condition left empty)."""
    v = np.asarray(per_patient, float)
    k = max(1, int(np.ceil(TAIL_TOP_FRACTION * v.size)))

    def stats(x: np.ndarray) -> tuple[float, float]:
        return float(np.mean(x > TAIL_MULTIPLE * chance)), float(np.mean(np.sort(x)[-k:]))

    rng = np.random.default_rng(seed)
    reps = np.array([stats(v[rng.integers(0, v.size, v.size)]) for _ in range(n_boot)])
    lo, hi = np.quantile(reps, [0.025, 0.975], axis=0)
    f, t = stats(v)
    return TailRow("", int(v.size), f, (float(lo[0]), float(hi[0])), t, (float(lo[1]), float(hi[1])))


# ------------------------------------------------------------------------------------------ the stage
def _macro(util: pd.DataFrame, metric: str) -> float | None:
    t = util[(util["metric"] == metric) & (util["label"].isin(["macro", "all"]))]
    return None if t.empty else float(t["value"].iloc[0])


@dataclass
class _Source:
    """A public source: features, report ``texts``, row ``ids`` and the attacker's ``order`` (its first m rows are
    the m pairs); ``n_own`` pairs of the source itself, ``n_extra`` fresh patients topped up after them."""

    name: str
    image: np.ndarray
    text: np.ndarray
    texts: np.ndarray
    ids: np.ndarray
    order: np.ndarray
    n_own: int
    n_extra: int = 0


def _texts(cohort: Cohort, feats: Features) -> np.ndarray:
    return cohort.pairs.iloc[np.asarray(feats.rows)]["text"].astype(str).to_numpy()


def _source(name: str, feats: Features, cohort: Cohort, prefix: str, seed: int, extra: TopUp | None = None) -> _Source:
    """The source ``name`` from its features, with the ``extra`` fresh patients after them."""
    rng = np.random.default_rng(seed)
    ids = [f"{prefix}:{int(r)}" for r in feats.rows]
    order = rng.permutation(len(feats))
    image, text, texts = feats.image, feats.text, _texts(cohort, feats)
    n_extra = 0
    if extra is not None:
        ef, ec = extra.features, extra.cohort
        n_extra = len(ef)
        ids += [f"{prefix}-topup:{int(r)}" for r in ef.rows]
        order = np.concatenate([order, len(feats) + rng.permutation(n_extra)])
        image, text = np.concatenate([image, ef.image]), np.concatenate([text, ef.text])
        texts = np.concatenate([texts, _texts(ec, ef)])
    return _Source(name, image, text, texts, np.array(ids), order, len(feats), n_extra)


def topup_params(params: ProfileLike, source: str, n_pairs: int) -> Profile:
    """Parameters of the top-up draw of public ``source`` (``val``: the internal generator, ``external``: the
    external site's): the profile's cohort settings, seed + :data:`EXTENSION_SEED_OFFSETS`, ``n_pairs`` pairs (all
    rows, whatever split), no export round trip."""
    cfg = as_profile(params)
    size = {"n_pairs": int(n_pairs)} if source == "val" else {"n_pairs_external": int(n_pairs)}
    return cfg.replace_sections(seed=cfg.seed + EXTENSION_SEED_OFFSETS[source], cohort={**size, "roundtrip": False})


@dataclass(frozen=True, eq=False)
class TopUp:
    """Fresh public patients of one source: their ``features`` (``all`` rows), ``cohort`` and the feature cache
    entry's name ``features_entry`` (part of the stage's cache key)."""

    features: Features
    cohort: Cohort
    features_entry: str


def topup(params: ProfileLike, source: str, n_have: int, rung: Rung, *, progress: bool = False) -> TopUp | None:
    """Fresh public patients for ``source`` up to ``adaptive.public_pool_min`` pairs (cached through the cohort and
    feature caches), or ``None`` when the source has enough or the cohort is not synthetic."""
    cfg = as_profile(params)
    need = int(cfg.adaptive.public_pool_min) - int(n_have)
    if need <= 0 or not cfg.cohort.simulation:
        return None
    p = topup_params(cfg, source, max(need, 4))
    site = "internal" if source == "val" else "external"
    coh = get_cohort(p, site=site)
    feats = get_features(p, coh, rung, "all", progress=progress)
    return TopUp(feats, coh, feature_dir(p, coh, rung, "all").name)


def _m_plan(values: tuple[int | None, ...], n: int, source: str) -> tuple[list[int], list[Skipped]]:
    ms: list[int] = []
    skipped = []
    for m in values:
        eff = n if m is None else int(m)
        if eff > n:
            skipped.append(Skipped(source, m, n, f"the source has {n:,} public pairs"))
        elif eff in ms:
            skipped.append(Skipped(source, m, n, f"same pairs as m = {eff:,}"))
        else:
            ms.append(eff)
    return sorted(ms), skipped


def get_adaptive(params: ProfileLike, *, progress: bool = False) -> AdaptiveResult:
    """The adaptive-attacker study of chapter 11 on the most specialised rung (cached)."""
    cfg = as_profile(params)
    cohort = get_cohort(cfg, site="internal")
    external = get_cohort(cfg, site="external")
    rung = max(get_ladder(cfg, progress=progress), key=lambda r: r.index)
    setting = reference_setting(get_frontier(cfg, progress=progress))
    mit = mitigate_rung(cfg, cohort, rung, setting=setting, progress=progress)
    feats = {s: get_features(cfg, cohort, rung, s, progress=progress) for s in ("train", "val", "test")}
    feats["external"] = get_features(cfg, external, rung, "all", progress=progress)
    topups = {s: topup(cfg, s, len(feats[s]), rung, progress=progress) for s in ("val", "external")}
    key = {
        "step": "adaptive",
        "features": {
            s: feature_dir(cfg, external if s == "external" else cohort, rung, "all" if s == "external" else s).name
            for s in feats
        },
        "topups": {s: None if t is None else t.features_entry for s, t in topups.items()},
        "mitigation": None if mit.path is None else mit.path.name,
        "adaptive": cfg.adaptive.to_dict(),
        "audit": {"n_boot": cfg.audit.n_boot, "chunk_size": cfg.audit.chunk_size},
        "dp": cfg.dp.to_dict(),
        "utility": cfg.utility.to_dict(),
        "seed": cfg.seed,
        "format": ADAPTIVE_FORMAT,
        "code": cache.stage_code_version(__name__),
        "numerics": cache_token(),  # the dispatch and the audit's BLAS
    }
    encoder = rung.load(device="cpu")

    def build(tmp: Path) -> None:
        t0 = time.perf_counter()
        result = _compute(
            cfg,
            cohort,
            external,
            feats,
            topups,
            mit.heads,
            (encoder.image_head, encoder.text_head),
            prompt_features_of(encoder),
            mit.record,
            setting.as_dict(),
            rung.name,
        )
        result = AdaptiveResult.from_json({**result.to_json(), "build_time_s": time.perf_counter() - t0})
        (tmp / "adaptive.json").write_text(json.dumps(result.to_json(), indent=1))

    path = cache.cached_dir(cache_dir(cfg.name), "adaptive", key, build)
    return AdaptiveResult.from_json(json.loads((path / "adaptive.json").read_text()))


class _Study:
    """The attacks of one run: fits on a source's first m pairs, scores on an evaluation set."""

    def __init__(self, cfg: Profile, template: Heads) -> None:
        self.cfg, self.template = cfg, template
        self.a = cfg.adaptive
        self.n_boot = cfg.audit.n_boot if cfg.adaptive.n_boot is None else cfg.adaptive.n_boot
        self._fits: dict[tuple[str, str, int, str], Any] = {}

    def fit(
        self,
        attack: str,
        src: _Source,
        m: int,
        eval_ids: np.ndarray,
        released: Heads | None = None,
        released_name: str = "",
    ) -> LinearAttack | TextSideAttack | Heads:
        rows = src.order[:m]
        check_disjoint(src.ids[rows], eval_ids, f"{attack} attack on {src.name}")
        k = (attack, src.name, m, released_name if attack in RELEASED_HEAD_ATTACKS else "")
        if k in self._fits:
            return self._fits[k]
        x, t = src.image[rows], src.text[rows]
        a = self.a
        fit: LinearAttack | TextSideAttack | Heads
        if attack == "text_side":
            assert released is not None
            fit = text_side_attack(embed_image(released[0], x), src.texts[rows], a.ridge_alpha)
        elif attack == "ridge":
            fit = ridge_attack(x, t, a.ridge_alpha)
        elif attack == "cca":
            fit = cca_attack(x, t, a.cca_components, a.cca_reg)
        else:
            start = self.fresh_start() if attack == "new_heads" else released
            assert start is not None
            fit = self.train_from(x, t, [start])[0]
        self._fits[k] = fit
        return fit

    def fresh_start(self) -> Heads:
        """The new-heads attack's start: fresh heads drawn from the profile's seed + 101."""
        from ..dp.heads import fresh_heads

        return fresh_heads(*self.template, seed=self.cfg.seed + 101)

    def train_from(self, x: np.ndarray, t: np.ndarray, starts: list[Heads]) -> list[Heads]:
        """The trained attacks' schedule (``adaptive.attack_*``) from each of ``starts`` on the pairs ``(x, t)``,
        stacked into one computation."""
        a = self.a
        return train_heads_attacks(
            x,
            t,
            starts,
            epochs=a.attack_epochs,
            lr=a.attack_lr,
            batch_size=a.attack_batch_size,
            seed=self.cfg.seed,
            temperature=self.cfg.dp.temperature,
        )

    def prefit_trained(self, src: _Source, m: int, eval_ids: np.ndarray, released: Mapping[str, Heads]) -> None:
        """The trained attacks of one (source, m): new heads and every released variant fine-tuned, stacked into one
        computation (same pairs, batches and schedule); :meth:`fit` then returns them."""
        rows = src.order[:m]
        check_disjoint(src.ids[rows], eval_ids, f"trained attacks on {src.name}")
        keys = [("new_heads", src.name, m, "")] + [("finetune", src.name, m, v) for v in released]
        starts = [self.fresh_start()] + list(released.values())
        todo = [(k, h) for k, h in zip(keys, starts, strict=True) if k not in self._fits]
        if not todo:
            return
        fits = self.train_from(src.image[rows], src.text[rows], [h for _, h in todo])
        for (k, _), fit in zip(todo, fits, strict=True):
            self._fits[k] = fit

    @staticmethod
    def embed(
        fit: LinearAttack | TextSideAttack | Heads, x_img: np.ndarray, x_txt: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        assert not isinstance(fit, TextSideAttack), "a text-side attack embeds report text: use embed_text"
        return embed_linear(fit, x_img, x_txt) if isinstance(fit, LinearAttack) else embed_with_heads(fit, x_img, x_txt)

    @staticmethod
    def embed_text(
        fit: LinearAttack | TextSideAttack | Heads, released: Heads, x_img: np.ndarray, texts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Released image embeddings of ``x_img`` and the text-side attack's embeddings of report ``texts``."""
        assert isinstance(fit, TextSideAttack)
        return embed_text_side(fit, embed_image(released[0], x_img), texts)


def _compute(
    cfg: Profile,
    cohort: Cohort,
    external: Cohort,
    feats: Mapping[str, Features],
    topups: Mapping[str, TopUp | None],
    mit_heads: Mapping[str, Heads],
    template: Heads,
    prompts: Any,
    record: Mapping[str, Any],
    setting: Mapping[str, Any],
    rung_name: str,
) -> AdaptiveResult:
    a, chunk, seed = cfg.adaptive, cfg.audit.chunk_size, cfg.seed
    study = _Study(cfg, template)
    train, val, test, ext = feats["train"], feats["val"], feats["test"], feats["external"]
    n_test = len(test)
    n_small, n_ref, n_max = min(100, n_test - 1), min(10_000, n_test - 1), min(a.n_max, n_test - 1)
    pools = (n_small, n_ref, n_max)
    test_pairs = cohort.pairs.iloc[np.asarray(test.rows)].reset_index(drop=True)
    train_pairs = cohort.pairs.iloc[np.asarray(train.rows)].reset_index(drop=True)
    test_pat = test_pairs["patient_id"].astype(str).to_numpy()
    test_ids = np.array([f"internal:{int(r)}" for r in test.rows])
    sources = {
        "val": _source("val", val, cohort, "internal", seed, topups.get("val")),
        "external": _source("external", ext, external, "external", seed, topups.get("external")),
    }
    test_texts = _texts(cohort, test)
    public_only = study.fit("new_heads", sources["val"], len(val), test_ids)  # the val split's own pairs first
    assert isinstance(public_only, tuple)
    released: dict[str, Heads] = {
        "pretrained": template,
        "dp": mit_heads["dp"],
        "fresh": mit_heads["reinit"],
        "public_only": public_only,
    }
    scored: dict[tuple[str, str, str, int], _Scored] = {}
    outcomes: list[AttackOutcome] = []

    def add(variant: str, attack: str, source: str, m: int, s: _Scored) -> None:
        scored[(variant, attack, source, m)] = s
        r1, l1, c1 = _lift(s, n_small, study.n_boot, seed)
        r2, l2, c2 = _lift(s, n_ref, study.n_boot, seed)
        outcomes.append(AttackOutcome(variant, attack, source, m, r1, l1, c1, r2, l2, c2))

    for v, heads in released.items():
        add(v, "passive", "none", 0, _score(embed_with_heads(heads, test.image, test.text), pools, test_pat, chunk))
    skipped: list[Skipped] = []
    plans: dict[str, list[int]] = {}
    for name, src in sources.items():
        ms, sk = _m_plan(a.m_values, len(src.ids), name)
        plans[name] = [m for m in ms if m > 0]
        skipped += sk
        for m in plans[name]:
            study.prefit_trained(src, m, test_ids, released)
            for attack in HEAD_FREE_ATTACKS:
                s = _score(
                    study.embed(study.fit(attack, src, m, test_ids), test.image, test.text), pools, test_pat, chunk
                )
                for v in released:
                    add(v, attack, name, m, s)
            for v, heads in released.items():
                fit = study.fit("finetune", src, m, test_ids, heads, v)
                add(v, "finetune", name, m, _score(study.embed(fit, test.image, test.text), pools, test_pat, chunk))
                ts = study.fit("text_side", src, m, test_ids, heads, v)
                emb = study.embed_text(ts, heads, test.image, test_texts)
                add(v, "text_side", name, m, _score(emb, pools, test_pat, chunk))
    frame = pd.DataFrame([o.to_json() for o in outcomes])
    best = frame.sort_values("lift_ref", ascending=False).drop_duplicates(["variant", "source", "m"])
    passive = frame[frame["attack"] == "passive"].set_index("variant")["lift_ref"]
    m_half = []
    for v in VARIANTS:
        if v == "pretrained":
            continue
        cut = float(passive["pretrained"] - passive[v])
        for name in sources:
            b = best[(best["variant"] == v) & (best["source"].isin([name, "none"]))].sort_values("m")
            half = b[b["lift_ref"] >= passive[v] + 0.5 * cut]["m"]
            full = b[b["lift_ref"] >= passive["pretrained"]]["m"]
            m_half.append(
                MHalf(
                    v,
                    name,
                    float(passive["pretrained"]),
                    float(passive[v]),
                    cut,
                    None if half.empty else int(half.iloc[0]),
                    None if full.empty else int(full.iloc[0]),
                )
            )
    adaptive_m = {
        name: max([m for m in plans[name] if m <= a.m_reference] or plans[name][:1] or [0]) for name in sources
    }
    protection, group_sizes = _protection(
        cfg, study, released, sources, adaptive_m, feats, cohort, external, record, chunk
    )
    options = _options(
        cfg, study, released, scored, frame, adaptive_m, pools, test, test_pairs, train, train_pairs, prompts
    )
    # tail: per-patient R@1 at N = n_small, before / after / adaptive (best attack on the DP release at m_ref)
    dp_best = _best_adaptive(frame, "dp", adaptive_m, ATTACKS[1:])
    conds = {
        TAIL_CONDITIONS[0]: scored[("pretrained", "passive", "none", 0)],
        TAIL_CONDITIONS[1]: scored[("dp", "passive", "none", 0)],
        TAIL_CONDITIONS[2]: scored[("dp", dp_best["attack"], dp_best["source"], int(dp_best["m"]))],
    }
    per_patient = {c: per_patient_recall(s.per_query[n_small], s.patients) for c, s in conds.items()}
    tail = []
    for c, pp in per_patient.items():
        row = tail_statistics(pp, 1.0 / n_small, study.n_boot, seed)
        tail.append(
            TailRow(c, row.n_patients, row.fraction_above, row.fraction_above_ci, row.top_mean, row.top_mean_ci)
        )
    return AdaptiveResult(
        rung=rung_name,
        n_test=n_test,
        pool_small=n_small,
        pool_ref=n_ref,
        n_max=n_max,
        m_reference=a.m_reference,
        sources={k: len(s.ids) for k, s in sources.items()},
        topped_up={k: s.n_extra for k, s in sources.items()},
        epsilon=record.get("epsilon"),
        delta=record.get("delta"),
        setting=dict(setting),
        outcomes=tuple(outcomes),
        skipped=tuple(skipped),
        m_half=tuple(m_half),
        adaptive_m=adaptive_m,
        protection=tuple(protection),
        options=tuple(options),
        tail=tuple(tail),
        per_patient={c: tuple(float(x) for x in pp) for c, pp in per_patient.items()},
        group_sizes=group_sizes,
        build_time_s=0.0,
    )


def _best_adaptive(
    frame: pd.DataFrame, variant: str, adaptive_m: Mapping[str, int], attacks: tuple[str, ...]
) -> pd.Series:
    """The row with the largest lift at N = pool_ref among ``attacks`` on ``variant`` at each source's m_ref."""
    mask = (frame["variant"] == variant) & frame["attack"].isin(attacks)
    mask &= frame.apply(lambda r: r["source"] in adaptive_m and r["m"] == adaptive_m[r["source"]], axis=1)
    sub = frame[mask]
    if sub.empty:
        sub = frame[(frame["variant"] == variant) & (frame["attack"] == "passive")]
    return sub.sort_values("lift_ref", ascending=False).iloc[0]


def _options(
    cfg: Profile,
    study: _Study,
    released: Mapping[str, Heads],
    scored: Mapping[tuple[str, str, str, int], _Scored],
    frame: pd.DataFrame,
    adaptive_m: Mapping[str, int],
    pools: tuple[int, int, int],
    test: Features,
    test_pairs: pd.DataFrame,
    train: Features,
    train_pairs: pd.DataFrame,
    prompts: Any,
) -> list[ReleaseOption]:
    n_small, n_ref, n_max = pools
    seed, nb = cfg.seed, study.n_boot
    util = {
        v: utility_outcomes(test, test_pairs, train, train_pairs, released[v], cfg.utility.probe_C, prompts)
        for v in ("pretrained", "dp", "public_only")
    }
    out = []
    for option, v in (("full_model", "pretrained"), ("dp_heads", "dp"), ("public_only_heads", "public_only")):
        p = frame[(frame["variant"] == v) & (frame["attack"] == "passive")].iloc[0]
        b = _best_adaptive(frame, v, adaptive_m, ATTACKS)
        u = util[v]
        out.append(
            ReleaseOption(
                option,
                float(p["lift_small"]),
                tuple(p["lift_small_ci"]),
                float(p["lift_ref"]),
                tuple(p["lift_ref_ci"]),
                float(b["lift_ref"]),
                tuple(b["lift_ref_ci"]),
                f"{b['attack']} ({b['source']}, m = {int(b['m']):,})",
                n_ref,
                float(b["lift_ref"]),
                tuple(b["lift_ref_ci"]),
                _macro(u, "zero_shot_auroc"),
                _macro(u, "linear_probe_auroc"),
                _macro(u, "retrieval_precision@10"),
                "",
            )
        )
    b = _best_adaptive(frame, "pretrained", adaptive_m, ("text_side",))
    out.append(
        ReleaseOption(
            "image_tower_only",
            None,
            None,
            None,
            None,
            float(b["lift_ref"]),
            tuple(b["lift_ref_ci"]),
            f"{b['attack']} ({b['source']}, m = {int(b['m']):,})",
            n_ref,
            float(b["lift_ref"]),
            tuple(b["lift_ref_ci"]),
            None,
            _macro(util["pretrained"], "linear_probe_auroc"),
            None,
            "passive re-linkage not applicable (no text tower); the adaptive attacker brings report features of "
            "its own (TF-IDF of the report text) mapped into the released image space; zero-shot and retrieval "
            "need the text tower",
        )
    )
    p = frame[(frame["variant"] == "pretrained") & (frame["attack"] == "passive")].iloc[0]
    b = _best_adaptive(frame, "pretrained", adaptive_m, ATTACKS)
    s = scored[("pretrained", str(b["attack"]), str(b["source"]), int(b["m"]))]
    _, lift_max, ci_max = _lift(s, n_max, nb, seed)
    small = n_small <= n_max
    u = util["pretrained"]
    out.append(
        ReleaseOption(
            "restricted_pools",
            float(p["lift_small"]) if small else None,
            tuple(p["lift_small_ci"]) if small else None,
            None,
            None,
            None,
            None,
            f"{b['attack']} ({b['source']}, m = {int(b['m']):,})",
            n_max,
            lift_max,
            ci_max,
            _macro(u, "zero_shot_auroc"),
            _macro(u, "linear_probe_auroc"),
            _macro(u, "retrieval_precision@10"),
            f"report access limited to pools of at most {n_max:,}"
            + (f": N = {n_ref:,} is out of reach" if n_ref > n_max else "")
            + f"; the risk is the adaptive lift at N = {n_max:,}",
        )
    )
    return out


def _group_eval(
    study: _Study,
    feats: Features,
    ids: np.ndarray,
    patients: np.ndarray,
    heads: Mapping[str, Heads],
    src: _Source,
    m: int,
    n: int,
    chunk: int,
    nb: int,
    seed: int,
) -> dict[str, tuple[float, CI]]:
    out: dict[str, tuple[float, CI]] = {}
    for when, v in (("before", "pretrained"), ("after", "dp")):
        s = _score(embed_with_heads(heads[v], feats.image, feats.text), (n,), patients, chunk)
        _, lift, ci = _lift(s, n, nb, seed)
        out[f"passive_{when}"] = (lift, ci)
        best: tuple[float, CI] | None = None
        for attack in ("ridge", "finetune"):
            fit = study.fit(attack, src, m, ids, heads[v], f"{v}@group")
            s = _score(study.embed(fit, feats.image, feats.text), (n,), patients, chunk)
            _, lift, ci = _lift(s, n, nb, seed)
            best = (lift, ci) if best is None or lift > best[0] else best
        assert best is not None
        out[f"adaptive_{when}"] = best
    return out


def _protection(
    cfg: Profile,
    study: _Study,
    released: Mapping[str, Heads],
    sources: Mapping[str, _Source],
    adaptive_m: Mapping[str, int],
    feats: Mapping[str, Features],
    cohort: Cohort,
    external: Cohort,
    record: Mapping[str, Any],
    chunk: int,
) -> tuple[list[ProtectionRow], dict[str, int]]:
    seed, nb = cfg.seed, study.n_boot
    train, test = feats["train"], feats["test"]
    rng = np.random.default_rng(seed + 11)
    sample = np.sort(rng.choice(len(train), size=min(len(train), len(test)), replace=False))
    train_s = Features(train.image[sample], train.text[sample], train.rows[sample])
    groups = {
        "train": (train_s, cohort, "internal"),
        "val": (feats["val"], cohort, "internal"),
        "test": (test, cohort, "internal"),
        "external": (feats["external"], external, "external"),
    }
    measured = {}
    for g, (f, coh, prefix) in groups.items():
        pat = coh.pairs.iloc[np.asarray(f.rows)]["patient_id"].astype(str).to_numpy()
        ids = np.array([f"{prefix}:{int(r)}" for r in f.rows])
        src = sources["external" if g == "val" else "val"]
        n = min(100, len(f) - 1)
        measured[g] = (
            n,
            src.name,
            adaptive_m[src.name],
            _group_eval(study, f, ids, pat, released, src, adaptive_m[src.name], n, chunk, nb, seed),
        )
    eps, delta = record.get("epsilon"), float(record.get("delta") or 0.0)
    per_patient = cohort.pairs[cohort.pairs["split"] == "train"].groupby("patient_id").size()
    ks = {
        "median": int(np.median(per_patient)),
        "p95": int(np.ceil(np.quantile(per_patient, 0.95))),
        "max": int(per_patient.max()),
    }
    if eps is None:
        dp_text = "none (the released heads were trained non-privately)"
    else:
        groups_text = "; ".join(
            f"{name} {k} pair{'s' if k > 1 else ''}: ({group_privacy(eps, delta, k)[0]:.3g}, "
            f"{group_privacy(eps, delta, k)[1]:.2g})"
            for name, k in ks.items()
        )
        dp_text = (
            f"heads: ({eps:.3g}, {delta:.2g}) per pair; per patient {groups_text}; void in effect: "
            "the encoders, released without DP, were trained on the same pairs"
        )
    spec = [
        (
            "encoder-train",
            "train",
            "encoders (released, non-private) and the pretrained heads",
            "none: the encoders were trained non-privately (in this project on the same train split as the heads)",
        ),
        ("head-train (private set)", "train", "encoders, pretrained heads, DP heads (fine-tuning)", dp_text),
        (
            "public bank",
            "val",
            "DP heads' objective (bank), public-only heads; declared public",
            "none (declared public)",
        ),
        ("held-out", "test", "no released part", "not in any training set: no guarantee needed or given"),
        (
            "external site",
            "external",
            "no released part (another site)",
            "not in any training set: no guarantee needed or given",
        ),
    ]
    rows = []
    for label, g, saw, guarantee in spec:
        n, src_name, m, r = measured[g]
        rows.append(
            ProtectionRow(
                label,
                len(groups[g][0]),
                n,
                saw,
                guarantee,
                r["passive_before"][0],
                r["passive_before"][1],
                r["passive_after"][0],
                r["passive_after"][1],
                r["adaptive_before"][0],
                r["adaptive_before"][1],
                r["adaptive_after"][0],
                r["adaptive_after"][1],
                src_name,
                m,
            )
        )
    return rows, {f"studies_per_patient_{k}": v for k, v in ks.items()}
