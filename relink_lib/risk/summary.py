"""Chapter 9's tables and generated sentences, from the privacy-budget sweep's two tables.

``table`` is the per-eps table and ``recall`` the long re-linkage table (one row per eps, pool,
k, N: :data:`relink_lib.risk.stage.RECALL_COLUMNS`) of :class:`relink_lib.risk.sweep.SweepResult`;
a pool size is an int N, or ``None`` for the full database.

- :func:`budget_pool`: the largest finite random-pool size of the sweep;
- :func:`budget_view`: the sweep as a display table (one row per budget);
- :func:`budget_doors`: where each budget lands between eps = 0.34 and no DP;
- :func:`budget_cut_view`: the dose-response, the relative cut of Recall@1 per budget with its CI;
- :func:`budget_rero_view`: the ReRo bounds at the training-set prior and at the re-linkage priors 1/N;
- :func:`budget_tradeoff_curves`: the composed trade-off curves of a few budgets;
- :func:`budget_findings`: the chapter's summary sentences; a claim such as "re-linkage comes
  back without DP" is made only when the numbers show it beyond the held-out sampling noise
  (two binomial standard errors of Recall@1 over the ``n_test`` queries), and a cut whose CI
  includes zero is reported as one the simulation cannot tell from no cut (:func:`cut_findings`);
- :data:`THREAT_MODEL_ROWS` (in :mod:`.stage`) is rendered with :func:`relink_lib.tables.html_table`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..signs import cut_phrase
from ..tables import fmt_sig
from .sweep import door_position
from .tradeoff import Mechanism, tradeoff_curve

__all__ = [
    "eps_values",
    "eps_tick_label",
    "pool_size_label",
    "select_recall",
    "recall_at",
    "budget_pool",
    "budget_view",
    "budget_doors",
    "budget_cut_view",
    "budget_rero_view",
    "cut_findings",
    "rero_findings",
    "COVERAGE_SENTENCE",
    "budget_tradeoff_curves",
    "budget_findings",
    "sampling_se",
    "HIGH_BUDGET",
]

HIGH_BUDGET = (1e6, 1e12)
"""The "high-budget DP" range of Ziller et al. (2024), eps from 1e6 to 1e12."""


def eps_values(table: pd.DataFrame) -> list[float | None]:
    """Each row's ``target_epsilon`` as a float, ``None`` for the non-private budget."""
    out = []
    for v in table["target_epsilon"]:
        out.append(None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
    return out


def eps_tick_label(eps: float | None) -> str:
    """Short tick label of a budget: ``0.34``, ``32``, ``1e3``, ``1e15``, ``no DP``."""
    if eps is None:
        return "no DP"
    if eps >= 1000:
        power = math.log10(eps)
        return (
            f"1e{round(power)}"
            if abs(power - round(power)) < 1e-9
            else f"{eps:.0e}".replace("e+0", "e").replace("e+", "e")
        )
    return f"{eps:g}"


def pool_size_label(pool_size: int | None) -> str:
    """Label of a pool size: ``"100"``, or ``"full"`` for the full database (``None``)."""
    return "full" if pool_size is None else str(int(pool_size))


def select_recall(recall: pd.DataFrame, pool: str, k: int, pool_size: int | None) -> pd.DataFrame:
    """The rows of the long ``recall`` table at one (pool, k, N), one per eps, in table order.

    ``pool``: ``"random"`` or ``"matched"``; ``pool_size``: N, or ``None`` for the full database.
    """
    if "pool" not in recall.columns:  # an evaluation without re-linkage rows
        return recall.iloc[0:0]
    keep = (recall["pool"] == pool) & (recall["k"] == int(k))
    if pool_size is None:
        keep &= recall["full_database"].astype(bool)
    else:
        keep &= ~recall["full_database"].astype(bool) & (recall["N"] == int(pool_size))
    return recall[keep]


def recall_at(
    table: pd.DataFrame, recall: pd.DataFrame, pool: str, k: int, pool_size: int | None, column: str = "recall"
) -> pd.Series:
    """``column`` (``"recall"`` or ``"lift"``) of :func:`select_recall` aligned to the per-eps ``table``'s
    rows (by ``target_epsilon``; NaN where the long table has no row)."""
    rows = select_recall(recall, pool, k, pool_size)
    by_eps = dict(zip(eps_values(rows), rows[column].astype(float)))
    return pd.Series([by_eps.get(e, np.nan) for e in eps_values(table)], index=table.index, dtype=float, name=column)


#: Per-eps column that :func:`budget_findings` and :func:`budget_doors` add for Recall@1 over random pools.
_R1 = "recall_at_1"


def budget_pool(recall: pd.DataFrame, k: int = 1) -> int | None:
    """The largest finite pool size N of the random-pool Recall@``k`` rows (``None``: only the full database)."""
    if "pool" not in recall.columns:  # an evaluation without re-linkage rows
        return None
    rows = recall[(recall["pool"] == "random") & (recall["k"] == int(k)) & ~recall["full_database"].astype(bool)]
    return int(rows["N"].max()) if len(rows) else None


def _eps(table: pd.DataFrame) -> pd.Series:
    return pd.to_numeric(table["target_epsilon"], errors="coerce")


def _eps_labels(table: pd.DataFrame) -> list[str]:
    """Short label of each row's budget (``None`` or NaN: ``"no DP"``)."""
    return [eps_tick_label(None if np.isnan(e) else float(e)) for e in _eps(table)]


def sampling_se(recall: float, n: int) -> float:
    """Binomial standard error of a recall measured on ``n`` queries: sqrt(p (1 - p) / n)."""
    if n <= 0:
        raise ValueError(f"n={n}: expected a positive number of queries")
    p = min(max(float(recall), 0.0), 1.0)
    return math.sqrt(p * (1 - p) / n)


def budget_view(table: pd.DataFrame, recall: pd.DataFrame, pool: int | None) -> pd.DataFrame:
    """One row per budget: eps reached, sigma, q, T, the three risks, R@1 (random and matched pools of
    size ``pool``), AUROCs.

    The matched-pool column is shown with the effective chance of those pools (recall / lift), since
    a matched pool is much smaller than N.
    """
    label = pool_size_label(pool)
    hard = recall_at(table, recall, "matched", 1, pool)
    hard_lift = recall_at(table, recall, "matched", 1, pool, column="lift")
    eps_reached = pd.to_numeric(table["epsilon"], errors="coerce")
    view = pd.DataFrame(
        {
            "target eps": _eps_labels(table),
            "eps reached": eps_reached.where(np.isfinite(eps_reached)),
            "sigma": pd.to_numeric(table["noise_multiplier"], errors="coerce"),
            "q": pd.to_numeric(table["sample_rate"], errors="coerce"),
            "T": pd.to_numeric(table["steps"], errors="coerce").astype("Int64"),
            "worst-case risk": table["worst_case_risk"].astype(float),
            "relaxed risk": table["relaxed_risk"].astype(float),
            "gradient-access success": table["gradient_access_risk"].astype(float),
            f"R@1, N = {label}": recall_at(table, recall, "random", 1, pool),
            f"R@1 matched, N = {label}": hard,
            "matched effective chance": hard / hard_lift,
            "probe AUROC": table["probe_macro_auroc"].astype(float),
            "zero-shot AUROC": table["zero_shot_macro_auroc"].astype(float),
        }
    )
    return view


def budget_doors(table: pd.DataFrame, recall: pd.DataFrame, pool: int | None) -> pd.DataFrame:
    """:func:`relink_lib.risk.sweep.door_position` of R@1 (random pools of size ``pool``), the AUROCs and
    the risks: one row per budget, an ``eps`` label column first."""
    frame = table.assign(**{_R1: recall_at(table, recall, "random", 1, pool)})
    cols = {
        _R1: "R@1",
        "probe_macro_auroc": "probe AUROC",
        "zero_shot_macro_auroc": "zero-shot AUROC",
        "worst_case_risk": "worst-case risk",
        "relaxed_risk": "relaxed risk",
        "gradient_access_risk": "gradient-access success",
    }
    doors = pd.DataFrame({name: door_position(frame, col) for col, name in cols.items()})
    doors.insert(0, "eps", _eps_labels(table))
    return doors


def budget_tradeoff_curves(
    table: pd.DataFrame, budgets: Sequence[float], alpha: np.ndarray | None = None
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(label, alpha, beta)`` of the composed mechanism of each private row whose eps is in ``budgets``.

    ``alpha``: type-I errors (default 60 log-spaced from 1e-6 to 10^-0.01); rows without noise are skipped.
    """
    alpha = np.logspace(-6, -0.01, 60) if alpha is None else np.asarray(alpha, dtype=float)
    wanted = {float(b) for b in budgets}
    curves = []
    for _, row in table.iterrows():
        e, sigma = row["target_epsilon"], float(row["noise_multiplier"])
        if e is None or not np.isfinite(sigma) or sigma <= 0 or float(e) not in wanted:
            continue
        mech = Mechanism(sigma, float(row["sample_rate"]), int(row["steps"]))
        curves.append((f"eps = {eps_tick_label(float(e))}", alpha, tradeoff_curve(alpha, mech)))
    return curves


def _fmt(v: float) -> str:
    return fmt_sig(v)


def _range(frame: pd.DataFrame, col: str) -> str:
    lo, hi = _fmt(float(frame[col].min())), _fmt(float(frame[col].max()))
    return lo if lo == hi else f"{lo} to {hi}"


def _compare(strict: float, other: float, se: float, what: str) -> str:
    """'higher' / 'lower' / 'not distinguishable' for two values with a common standard error."""
    diff = other - strict
    if abs(diff) <= 2 * se:
        return (
            f"{what} are within two sampling standard errors ({_fmt(2 * se)}) of each other: no difference this "
            "split can resolve"
        )
    return (
        f"{what}: the second is {'higher' if diff > 0 else 'lower'} by {_fmt(abs(diff))}, beyond two sampling "
        f"standard errors ({_fmt(2 * se)})"
    )


COVERAGE_SENTENCE = (
    "**What the bounds cover.** Every bound of this chapter (the ReRo bounds, the relaxed bound and the eps "
    "itself) covers the training of the projection heads only. The image and text encoders that compute the "
    "features the heads map were trained without DP on the same patients, and nothing here bounds what they leak."
)
"""The chapter's statement of scope, also its last summary bullet."""


def _cut_text(table: pd.DataFrame, i: Any) -> str:
    """Row ``i``'s cut of Recall@1 with its CI, in the book's sign convention: "a cut of 40.0% (95% CI: ...)"."""
    return cut_phrase(
        float(table.loc[i, "r1_cut"]), float(table.loc[i, "r1_cut_ci_low"]), float(table.loc[i, "r1_cut_ci_high"])
    )


def _ci_has_zero(lo: float, hi: float) -> bool:
    return not (math.isfinite(lo) and math.isfinite(hi)) or lo <= 0.0 <= hi


def budget_cut_view(table: pd.DataFrame) -> pd.DataFrame:
    """The dose-response, one row per budget: Recall@1 of the pretrained heads and of the trained heads (mean
    over seeds) at the cut's N, the relative cut, its CI (patient bootstrap with the seeds resampled) and the
    seeds' SD of the cut."""
    return pd.DataFrame(
        {
            "target eps": _eps_labels(table),
            "R@1 pretrained": table["r1_before"].astype(float),
            "R@1 trained": table["r1_after"].astype(float),
            "cut": table["r1_cut"].astype(float),
            "CI low": table["r1_cut_ci_low"].astype(float),
            "CI high": table["r1_cut_ci_high"].astype(float),
            "seed SD": table["r1_cut_seed_sd"].astype(float),
            "seeds": pd.to_numeric(table["n_seeds"], errors="coerce").astype("Int64"),
        }
    )


def _prior_label(prior: str, n: int) -> str:
    return f"1/{int(n):,} ({'training set' if prior == 'training set' else 're-linkage'})"


def budget_rero_view(rero: pd.DataFrame, column: str = "worst_case_risk") -> pd.DataFrame:
    """``column`` of the long ReRo table as one row per budget and one column per prior, the training-set prior
    first, then the re-linkage priors 1/N by increasing N (columns named ``1/N (training set)`` and
    ``1/N (re-linkage)``)."""
    frame = rero.assign(
        _eps=[eps_tick_label(e) for e in eps_values(rero)],
        _col=[_prior_label(p, n) for p, n in zip(rero["prior"], rero["N"])],
        _order=[(0 if p == "training set" else 1, int(n)) for p, n in zip(rero["prior"], rero["N"])],
    )
    cols = [c for _, c in sorted(set(zip(frame["_order"], frame["_col"])))]
    eps_order = list(dict.fromkeys(frame["_eps"]))
    wide = frame.pivot_table(index="_eps", columns="_col", values=column, aggfunc="first")
    wide = wide.reindex(index=eps_order, columns=cols)
    wide.index.name, wide.columns.name = "target eps", None
    return wide.reset_index()


def _budgets_text(labels: Sequence[str], n_all: int) -> str:
    """``At eps = 0.34, 8 and without DP`` / ``Without DP`` / ``At every budget`` for a list of budget labels."""
    if len(labels) == n_all and n_all > 1:
        return "At every budget (and without DP)" if "no DP" in labels else "At every budget"
    finite = [e for e in labels if e != "no DP"]
    parts = ([f"eps = {', '.join(finite)}"] if finite else []) + (["without DP"] if "no DP" in labels else [])
    text = " and ".join(parts)
    return f"At {text}" if finite else text[0].upper() + text[1:]


def cut_findings(table: pd.DataFrame, *, pool: int | None, simulation: bool = True) -> list[str]:
    """Sentences on the dose-response cut(eps): the cut with its CI at the strictest budget, at every budget
    whose CI includes zero ("cannot tell"), without DP, and whether the two ends differ beyond their CIs."""
    what = "the simulation" if simulation else "this run"
    eps = _eps(table)
    if not eps.isna().any() or eps.isna().all():
        raise ValueError("table: needs a non-private row (target_epsilon None) and at least one DP row")
    labels = _eps_labels(table)
    strict_i, no_dp_i = int(eps.idxmin()), int(table.index[eps.isna()][0])
    n_seeds = int(pd.to_numeric(table["n_seeds"], errors="coerce").max())
    before = float(table.loc[strict_i, "r1_before"])
    head = (
        f"**Dose-response.** Relative to the pretrained heads (Recall@1 {_fmt(before)} "
        f"at N = {pool_size_label(pool)}), heads trained from fresh at eps = {labels[table.index.get_loc(strict_i)]} "
        f"give {_cut_text(table, strict_i)} in Recall@1, "
        f"and trained without DP {_cut_text(table, no_dp_i)}; "
        f"CIs over held-out patients and {n_seeds} seed{'s' if n_seeds != 1 else ''}, {what}."
    )
    out = [head]
    unclear = [
        labels[table.index.get_loc(i)]
        for i in table.index
        if _ci_has_zero(float(table.loc[i, "r1_cut_ci_low"]), float(table.loc[i, "r1_cut_ci_high"]))
    ]
    if unclear:
        out.append(
            f"{_budgets_text(unclear, len(labels))} the CI of the cut includes zero: {what} cannot tell whether "
            "training there cuts re-linkage at all."
        )
    s_lo, s_hi = float(table.loc[strict_i, "r1_cut_ci_low"]), float(table.loc[strict_i, "r1_cut_ci_high"])
    n_lo, n_hi = float(table.loc[no_dp_i, "r1_cut_ci_low"]), float(table.loc[no_dp_i, "r1_cut_ci_high"])
    if all(math.isfinite(v) for v in (s_lo, s_hi, n_lo, n_hi)):
        if s_lo > n_hi or n_lo > s_hi:
            out.append(
                "The two ends' CIs do not overlap: the budget changes how much re-linkage the training puts back."
            )
        else:
            out.append(
                f"The two ends' CIs overlap: {what} cannot tell the cut at the strictest budget from the cut without "
                "DP, so it shows no dose-response between them."
            )
    return out


def rero_findings(rero: pd.DataFrame) -> list[str]:
    """Sentences on the worst-case bound at the re-linkage priors 1/N beside the training-set prior."""
    if rero is None or len(rero) == 0 or not (rero["prior"] == "re-linkage").any():
        return []
    eps = pd.to_numeric(rero["target_epsilon"], errors="coerce")
    private = rero[eps.notna()].assign(_eps=eps[eps.notna()])
    strict = private[private["_eps"] == private["_eps"].min()]
    parts = [
        f"{_fmt(float(r['worst_case_risk']))} at kappa = {_prior_label(str(r['prior']), int(r['N']))}"
        for _, r in strict.sort_values(["prior", "N"], ascending=[False, True]).iterrows()
    ]
    text = (
        f"**At the re-linkage prior.** A re-linker must pick the target's report among N candidates, so its blind "
        f"guess succeeds with kappa = 1/N, a far larger prior than 1/n_train. At eps = "
        f"{eps_tick_label(float(private['_eps'].min()))} the worst-case bound is " + "; ".join(parts) + "."
    )
    relink = private[private["prior"] == "re-linkage"]
    smallest = int(relink["N"].min())
    rows = relink[relink["N"] == smallest].sort_values("_eps")
    half = rows[rows["worst_case_risk"] >= 0.5]["_eps"]
    text += (
        f" At N = {smallest} the bound reaches 1/2 (the adversary is more likely right than wrong) from eps = "
        f"{eps_tick_label(float(half.min()))} on."
        if len(half)
        else f" At N = {smallest} it stays below 1/2 at every DP budget of the sweep."
    )
    return [text]


def budget_findings(
    table: pd.DataFrame,
    recall: pd.DataFrame,
    n_test: int,
    *,
    pool: int | None,
    simulation: bool = True,
    rero: pd.DataFrame | None = None,
    start: Mapping[str, Any] | None = None,
) -> list[str]:
    """The chapter's summary bullets (Markdown), generated from the sweep's tables.

    ``n_test``: held-out queries behind each Recall@1 (for the sampling error); ``pool``: N of the
    Recall@1 quoted (``None``: the full database); ``rero``: the long ReRo table (the re-linkage priors'
    sentence); ``start``: the sweep's ``start`` block (the first sentence says what it trained from).
    The dose-response sentences (:func:`cut_findings`) come when ``table`` has the cut's columns.
    """
    rc = _R1
    table = table.assign(**{rc: recall_at(table, recall, "random", 1, pool)})
    eps = _eps(table)
    if not eps.isna().any() or eps.isna().all():
        raise ValueError("table: needs a non-private row (target_epsilon None) and at least one DP row")
    strict = table.loc[eps.idxmin()]
    no_dp = table[eps.isna()].iloc[0]
    high = table[(eps >= HIGH_BUDGET[0]) & (eps <= HIGH_BUDGET[1])]
    what = "this simulation" if simulation else "this run"
    se = sampling_se(max(float(strict[rc]), float(no_dp[rc])), n_test)
    sigmas = pd.to_numeric(table.loc[eps.notna(), "noise_multiplier"], errors="coerce")
    schedule = (
        f"({start.get('optimizer')}, lr {_fmt(float(start.get('lr', math.nan)))}, "
        f"{_fmt(float(start.get('epochs', math.nan)))} epochs)"
        if start
        else ""
    )
    if start and start.get("init") == "reinit":
        origin = f"fresh, data-independent heads at chapter 6's released setting {schedule}"
    elif start:
        origin = f"the pretrained heads at the profile's own schedule {schedule} (dp.budget_sweep.start = profile)"
    else:
        origin = "the heads with one schedule"
    n_seeds = int(pd.to_numeric(table["n_seeds"], errors="coerce").max()) if "n_seeds" in table.columns else 1
    out = [
        f"The sweep trained {origin} at {int(eps.notna().sum())} budgets and without DP, "
        f"{n_seeds} seed{'s' if n_seeds != 1 else ''} each, with the same data, steps and objective; sigma runs "
        f"from {_fmt(sigmas.max())} (eps = {eps_tick_label(float(eps.min()))}) to "
        f"{_fmt(sigmas.min())} (eps = {eps_tick_label(float(eps.max()))})."
    ]
    out.append(
        f"**Re-linkage.** Recall@1 at N = {pool_size_label(pool)} is {_fmt(strict[rc])} at "
        f"eps = {eps_tick_label(float(eps.min()))} "
        f"and {_fmt(no_dp[rc])} without DP"
        + (f", {_range(high, rc)} for eps from 1e6 to 1e12" if len(high) else "")
        + f" (on {n_test:,} held-out queries, {what}). "
        + _compare(float(strict[rc]), float(no_dp[rc]), se, "The strictest budget and no DP")
        + "."
    )
    if {"r1_cut", "r1_cut_ci_low", "r1_cut_ci_high", "r1_before"} <= set(table.columns):
        out += cut_findings(table, pool=pool, simulation=simulation)
    pr = "probe_macro_auroc"
    out.append(
        f"**Utility.** Linear-probe macro AUROC {_fmt(strict[pr])} at the strictest budget, {_fmt(no_dp[pr])} "
        f"without DP" + (f", {_range(high, pr)} at high budgets" if len(high) else "") + "; zero-shot "
        f"{_fmt(strict['zero_shot_macro_auroc'])} and {_fmt(no_dp['zero_shot_macro_auroc'])}."
    )
    dp_rows = table[eps.notna()].assign(eps=eps[eps.notna()])
    kappa = float(strict["kappa"])
    first_bound = dp_rows[dp_rows["worst_case_risk"] > 10 * dp_rows["kappa"]]["eps"].min()
    out.append(
        f"**Formal bounds.** At eps = {eps_tick_label(float(eps.min()))} the worst-case (ReRo) bound is "
        f"{_fmt(strict['worst_case_risk'])} against the training-set prior kappa = {_fmt(kappa)}: almost nothing is "
        "learnt about one pair even by the strongest adversary. "
        + (
            f"The bound first exceeds ten times the prior at eps = {eps_tick_label(float(first_bound))}"
            + (
                f" and is {_range(high, 'worst_case_risk')} at high budgets, where it certifies nothing."
                if len(high)
                else "."
            )
            if np.isfinite(first_bound)
            else "It stays within ten times the prior at every DP budget of the sweep."
        )
    )
    if rero is not None:
        out += rero_findings(rero)
    chance = float(strict["gradient_access_chance"])
    ga = "gradient_access_risk"
    first_attack = dp_rows[dp_rows[ga] > 2 * chance]["eps"].min()
    out.append(
        f"**The gradient-access reconstruction.** It re-identifies {_fmt(strict[ga])} of its targets at "
        f"eps = {eps_tick_label(float(eps.min()))} and {_fmt(no_dp[ga])} without DP (chance "
        f"{_fmt(chance)}). "
        + (
            "It never beats twice chance at any DP budget here."
            if not np.isfinite(first_attack)
            else f"It first beats twice chance at eps = {eps_tick_label(float(first_attack))}"
            + (
                f"; at high budgets it succeeds on {_range(high, ga)} of its targets, so high-budget "
                "DP does not stop this adversary here, unlike the image-space attacks Ziller et al. studied."
                if len(high) and float(high[ga].min()) > 2 * chance
                else "."
            )
        )
    )
    out.append(
        "**Whom this protects against.** The reconstruction sees one pair's individual clipped, noisy per-sample "
        "update of the image head: that is gradient access during training, a stronger adversary than the re-linker "
        "(who holds only the released weights) and than Ziller et al.'s realistic setting (an attacker of the trained "
        "model). Its success at a budget does not mean the re-linker succeeds there, and its failure holds only for "
        "the attack that was tried."
    )
    out.append(COVERAGE_SENTENCE)
    return out
