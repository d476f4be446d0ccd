"""Chapter 9's tables and generated sentences, from the privacy-budget sweep table.

- :func:`budget_view`: the sweep as a display table (one row per budget);
- :func:`budget_findings`: the chapter's summary sentences; a claim such as "re-linkage comes
  back without DP" is made only when the numbers show it beyond the held-out sampling noise
  (two binomial standard errors of Recall@1 over the ``n_test`` queries);
- :data:`THREAT_MODEL_ROWS` (in :mod:`.stage`) is rendered with :func:`relink_lib.tables.html_table`.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from ..plots.risk import eps_tick_label as budget_label  # short labels: 0.34, 1e6, no DP

__all__ = ["budget_pool", "budget_view", "budget_findings", "sampling_se", "HIGH_BUDGET"]

HIGH_BUDGET = (1e6, 1e12)


def budget_pool(table: pd.DataFrame, k: int = 1) -> str:
    """The largest finite pool-size suffix of the sweep's ``recall_random_k{k}_n{N}`` columns (``"full"`` if none)."""
    sizes = sorted({c.split("_n")[-1] for c in table.columns if c.startswith(f"recall_random_k{k}_n")} - {"full"}, key=int)
    return sizes[-1] if sizes else "full"


def _eps(table: pd.DataFrame) -> pd.Series:
    return pd.to_numeric(table["target_epsilon"], errors="coerce")


def sampling_se(recall: float, n: int) -> float:
    """Binomial standard error of a recall measured on ``n`` queries: sqrt(p (1 - p) / n)."""
    if n <= 0:
        raise ValueError(f"n={n}: expected a positive number of queries")
    p = min(max(float(recall), 0.0), 1.0)
    return math.sqrt(p * (1 - p) / n)


def budget_view(table: pd.DataFrame, pool: str | None = None) -> pd.DataFrame:
    """One row per budget: eps reached, sigma, q, T, the three risks, R@1 (random and matched pools), AUROCs.

    The matched-pool column is shown with the effective chance of those pools (recall / lift), since
    a matched pool is much smaller than N.
    """
    pool = pool or budget_pool(table)
    rec, hard = f"recall_random_k1_n{pool}", f"recall_hard_k1_n{pool}"
    hard_lift = f"lift_hard_k1_n{pool}"
    eps_reached = pd.to_numeric(table["epsilon"], errors="coerce")
    target = pd.to_numeric(table["target_epsilon"], errors="coerce")
    view = pd.DataFrame({
        "target eps": [budget_label(None if np.isnan(e) else float(e)) for e in target],
        "eps reached": eps_reached.where(np.isfinite(eps_reached)),
        "sigma": pd.to_numeric(table["noise_multiplier"], errors="coerce"),
        "q": pd.to_numeric(table["sample_rate"], errors="coerce"),
        "T": pd.to_numeric(table["steps"], errors="coerce").astype("Int64"),
        "worst-case risk": table["worst_case_risk"].astype(float),
        "relaxed risk": table["relaxed_risk"].astype(float),
        "attack success": table["realistic_risk"].astype(float),
        f"R@1, N = {pool}": table[rec].astype(float) if rec in table.columns else np.nan,
        f"R@1 matched, N = {pool}": table[hard].astype(float) if hard in table.columns else np.nan,
        "matched effective chance": (table[hard].astype(float) / table[hard_lift].astype(float)
                                     if hard in table.columns and hard_lift in table.columns else np.nan),
        "probe AUROC": table["probe_macro_auroc"].astype(float),
        "zero-shot AUROC": table["zero_shot_macro_auroc"].astype(float),
    })
    return view


def _fmt(v: Any) -> str:
    from ..tables import fmt_sig

    return fmt_sig(v)


def _range(frame: pd.DataFrame, col: str) -> str:
    lo, hi = _fmt(float(frame[col].min())), _fmt(float(frame[col].max()))
    return lo if lo == hi else f"{lo} to {hi}"


def _compare(strict: float, other: float, se: float, what: str) -> str:
    """'higher' / 'lower' / 'not distinguishable' for two values with a common standard error."""
    diff = other - strict
    if abs(diff) <= 2 * se:
        return f"{what} are within two sampling standard errors ({_fmt(2 * se)}) of each other: no difference this split can resolve"
    return f"{what}: the second is {'higher' if diff > 0 else 'lower'} by {_fmt(abs(diff))}, beyond two sampling standard errors ({_fmt(2 * se)})"


def budget_findings(table: pd.DataFrame, n_test: int, *, pool: str | None = None, simulation: bool = True) -> list[str]:
    """The chapter's summary bullets (Markdown), generated from the sweep ``table``.

    ``n_test``: held-out queries behind each Recall@1 (for the sampling error).
    """
    pool = pool or budget_pool(table)
    rc = f"recall_random_k1_n{pool}"
    eps = _eps(table)
    if not eps.isna().any() or eps.isna().all():
        raise ValueError("table: needs a non-private row (target_epsilon None) and at least one DP row")
    strict = table.loc[eps.idxmin()]
    no_dp = table[eps.isna()].iloc[0]
    high = table[(eps >= HIGH_BUDGET[0]) & (eps <= HIGH_BUDGET[1])]
    what = "this simulation" if simulation else "this run"
    se = sampling_se(max(float(strict[rc]), float(no_dp[rc])), n_test)
    sigmas = pd.to_numeric(table.loc[eps.notna(), "noise_multiplier"], errors="coerce")
    out = [f"The sweep trained the heads at {int(eps.notna().sum())} budgets and without DP, with the same data, steps "
           f"and objective; sigma runs from {_fmt(sigmas.max())} (eps = {budget_label(float(eps.min()))}) to "
           f"{_fmt(sigmas.min())} (eps = {budget_label(float(eps.max()))})."]
    out.append(f"**Re-linkage.** Recall@1 at N = {pool} is {_fmt(strict[rc])} at eps = {budget_label(float(eps.min()))} "
               f"and {_fmt(no_dp[rc])} without DP" + (f", {_range(high, rc)} for eps from 1e6 to 1e12" if len(high) else "")
               + f" (on {n_test:,} held-out queries, {what}). "
               + _compare(float(strict[rc]), float(no_dp[rc]), se, "The strictest budget and no DP") + ".")
    pr = "probe_macro_auroc"
    out.append(f"**Utility.** Linear-probe macro AUROC {_fmt(strict[pr])} at the strictest budget, {_fmt(no_dp[pr])} "
               f"without DP" + (f", {_range(high, pr)} at high budgets" if len(high) else "") + "; zero-shot "
               f"{_fmt(strict['zero_shot_macro_auroc'])} and {_fmt(no_dp['zero_shot_macro_auroc'])}.")
    dp_rows = table[eps.notna()].assign(eps=eps[eps.notna()])
    kappa = float(strict["kappa"])
    first_bound = dp_rows[dp_rows["worst_case_risk"] > 10 * dp_rows["kappa"]]["eps"].min()
    out.append(f"**Formal bounds.** At eps = {budget_label(float(eps.min()))} the worst-case (ReRo) bound is "
               f"{_fmt(strict['worst_case_risk'])} against a prior kappa = {_fmt(kappa)}: almost nothing is learnt about one "
               "pair even by the strongest adversary. " + (
                   f"The bound first exceeds ten times the prior at eps = {budget_label(float(first_bound))}"
                   + (f" and is {_range(high, 'worst_case_risk')} at high budgets, where it certifies nothing." if len(high) else ".")
                   if np.isfinite(first_bound) else "It stays within ten times the prior at every DP budget of the sweep."))
    chance = float(strict["realistic_chance"])
    first_attack = dp_rows[dp_rows["realistic_risk"] > 2 * chance]["eps"].min()
    out.append(f"**The gradient-access attack.** It re-identifies {_fmt(strict['realistic_risk'])} of its targets at "
               f"eps = {budget_label(float(eps.min()))} and {_fmt(no_dp['realistic_risk'])} without DP (chance "
               f"{_fmt(chance)}). " + (
                   "It never beats twice chance at any DP budget here." if not np.isfinite(first_attack) else
                   f"It first beats twice chance at eps = {budget_label(float(first_attack))}"
                   + (f"; at high budgets it succeeds on {_range(high, 'realistic_risk')} of its targets, so high-budget "
                      "DP does not stop this adversary here, unlike the image-space attacks Ziller et al. studied." if len(high)
                      and float(high["realistic_risk"].min()) > 2 * chance else ".")))
    out.append("**Whom this protects against.** This attack sees one pair's isolated noisy update of the image head: "
               "that is gradient access, a stronger adversary than the re-linker (who holds only the released weights) "
               "and than Ziller et al.'s realistic setting (an attacker of the trained model). Its success at a budget does "
               "not mean the re-linker succeeds there, and its failure holds only for the attack that was tried.")
    return out
