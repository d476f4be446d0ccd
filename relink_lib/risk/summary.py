"""Chapter 9's tables and generated sentences, from the privacy-budget sweep's two tables.

``table`` is the per-eps table and ``recall`` the long re-linkage table (one row per eps, pool,
k, N: :data:`relink_lib.risk.stage.RECALL_COLUMNS`) of :class:`relink_lib.risk.sweep.SweepResult`;
a pool size is an int N, or ``None`` for the full database.

- :func:`budget_pool`: the largest finite random-pool size of the sweep;
- :func:`budget_view`: the sweep as a display table (one row per budget);
- :func:`budget_doors`: where each budget lands between eps = 0.34 and no DP;
- :func:`budget_tradeoff_curves`: the composed trade-off curves of a few budgets;
- :func:`budget_findings`: the chapter's summary sentences; a claim such as "re-linkage comes
  back without DP" is made only when the numbers show it beyond the held-out sampling noise
  (two binomial standard errors of Recall@1 over the ``n_test`` queries);
- :data:`THREAT_MODEL_ROWS` (in :mod:`.stage`) is rendered with :func:`relink_lib.tables.html_table`.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

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
            "attack success": table["realistic_risk"].astype(float),
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
        "realistic_risk": "attack success",
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


def budget_findings(
    table: pd.DataFrame, recall: pd.DataFrame, n_test: int, *, pool: int | None, simulation: bool = True
) -> list[str]:
    """The chapter's summary bullets (Markdown), generated from the sweep's tables.

    ``n_test``: held-out queries behind each Recall@1 (for the sampling error); ``pool``: N of the
    Recall@1 quoted (``None``: the full database).
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
    out = [
        f"The sweep trained the heads at {int(eps.notna().sum())} budgets and without DP, with the same data, steps "
        f"and objective; sigma runs from {_fmt(sigmas.max())} (eps = {eps_tick_label(float(eps.min()))}) to "
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
        f"{_fmt(strict['worst_case_risk'])} against a prior kappa = {_fmt(kappa)}: almost nothing is learnt about one "
        "pair even by the strongest adversary. "
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
    chance = float(strict["realistic_chance"])
    first_attack = dp_rows[dp_rows["realistic_risk"] > 2 * chance]["eps"].min()
    out.append(
        f"**The gradient-access attack.** It re-identifies {_fmt(strict['realistic_risk'])} of its targets at "
        f"eps = {eps_tick_label(float(eps.min()))} and {_fmt(no_dp['realistic_risk'])} without DP (chance "
        f"{_fmt(chance)}). "
        + (
            "It never beats twice chance at any DP budget here."
            if not np.isfinite(first_attack)
            else f"It first beats twice chance at eps = {eps_tick_label(float(first_attack))}"
            + (
                f"; at high budgets it succeeds on {_range(high, 'realistic_risk')} of its targets, so high-budget "
                "DP does not stop this adversary here, unlike the image-space attacks Ziller et al. studied."
                if len(high) and float(high["realistic_risk"].min()) > 2 * chance
                else "."
            )
        )
    )
    out.append(
        "**Whom this protects against.** This attack sees one pair's isolated noisy update of the image head: "
        "that is gradient access, a stronger adversary than the re-linker (who holds only the released weights) "
        "and than Ziller et al.'s realistic setting (an attacker of the trained model). Its success at a budget does "
        "not mean the re-linker succeeds there, and its failure holds only for the attack that was tried."
    )
    return out
