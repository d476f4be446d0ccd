# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # 5. Hard negatives: pathology-matched pools
#
# **Overview.** With random distractors, a model that merely recognises the findings (an
# effusion, a pacemaker, a normal chest) already beats chance, because most distractors
# describe other findings. That is recognising a disease, not a person. This chapter repeats
# the audit of chapter 4 with distractors drawn only from reports with the **same CheXpert
# label vector** as the true report, and then asks what carries the signal that remains.
#
# **The question.** When every candidate report has the same 14 findings, how much of the
# re-linkage survives, and is it carried by the instance detail that both the image and the
# report describe (devices, measurements, laterality, chronic findings)?
#
# **The method.** Two reports match when their 14 labels are equal after a stated rule: a
# missing label (not mentioned) counts as negative (0), and an uncertain label (-1) stays a
# value of its own. A query's pool is its true report plus N - 1 distractors drawn uniformly
# from its matched reports; a query with fewer than N - 1 matches gets its whole matched pool,
# so its chance is 1 / (matches + 1), not 1/N. The tables therefore give the **effective
# chance** (averaged over the pools the queries actually get), the number of queries whose pool
# is complete, and lift = recall / effective chance. Queries whose label vector no other
# held-out report shares have no hard negative at all and are left out (counted). As a
# sensitivity analysis, a looser match asks only for the same set of positive findings.
# Recall is again the exact expectation over random pools (a hypergeometric tail per query,
# `relink_lib.audit`), with patient-level bootstrap 95% intervals.

# %% tags=["parameters"]
profile = "default"
overrides = {}

# %% tags=["hide-input"]
from relink_lib.profiles import get_profile

params = get_profile(profile, overrides)

# %%
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from relink_lib.audit.hard_negatives import describe_match
from relink_lib.audit.stage import audit_ladder, hard_negative_breakdown
from relink_lib.plots.audit import plot_detail_split, plot_random_vs_matched
from relink_lib.plots.common import set_style
from relink_lib.results import read_results

set_style()
table = audit_ladder(params, write=False)
breakdown = hard_negative_breakdown(params)
saved = read_results(params["profile"], "hard_negatives")
simulation = saved["provenance"]["simulation"]
cohort_name = saved["provenance"]["cohort"]
rule = describe_match("exact", params["audit"]["nan_as"], params["audit"]["uncertain_as"])
matched = table[table["pool"] == "matched"]
n_db = int(table.loc[table["full_database"], "pool_size"].max())
display(Markdown(
    f"Profile `{params['profile']}`, cohort `{cohort_name}` "
    f"({'a **simulation** on the synthetic cohort' if simulation else 'real data'}); held-out database of "
    f"{n_db:,} pairs. Matching rule: {rule}. Queries without any matched report: "
    f"{int(matched['n_excluded'].iloc[0]):,} of {n_db:,}."))

# %% [markdown]
# ## Random against pathology-matched pools
#
# Recall@1 per model for both pool types, with the effective chance of the matched pools and
# how many queries got a complete pool of N candidates.

# %% tags=["nbval-check-output"]
k1 = table[(table["k"] == 1) & table["pool"].isin(["random", "matched"])].copy()
k1["N"] = np.where(k1["full_database"], "full", k1["pool_size"].map(lambda n: f"{n:,}"))
side = k1.pivot_table(index=["rung", "model", "N"], columns="pool", values=["recall", "chance", "lift"], sort=False)
side.columns = [f"{v} ({p})" for v, p in side.columns]
side = side[["recall (random)", "lift (random)", "recall (matched)", "chance (matched)", "lift (matched)"]]
full_pools = k1[k1["pool"] == "matched"].set_index(["rung", "model", "N"])[["n_full_pools", "n_queries"]]
print(side.join(full_pools).round({"recall (random)": 3, "lift (random)": 1, "recall (matched)": 3,
                                  "chance (matched)": 4, "lift (matched)": 1}).to_string())

# %% [markdown]
# Left: random pools (chapter 4); right: matched pools, on the same axes. The dashed line on the
# right is the effective chance of the matched pools, which sits above 1/N wherever queries have
# fewer matches than N - 1.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.0))
plot_random_vs_matched(axes, table, k=1, simulation=simulation)
axes[0].legend(loc="lower left", fontsize=8)
fig.suptitle(f"Recall@1, random and pathology-matched pools ({params['profile']} profile, {cohort_name})")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Sensitivity: a looser match
#
# Matching only the set of positive findings (ignoring negative and uncertain labels) gives
# larger matched groups, so more queries get complete pools. If the lift barely moves between
# the two rules, the result does not hinge on how uncertain and missing labels are treated.

# %% tags=["nbval-check-output"]
sens = table[(table["k"] == 1) & table["pool"].isin(["matched", "matched-positive"])].copy()
sens["N"] = np.where(sens["full_database"], "full", sens["pool_size"].map(lambda n: f"{n:,}"))
loose = sens.pivot_table(index=["rung", "model", "N"], columns="pool", values=["lift", "n_full_pools"], sort=False)
loose.columns = [f"{v} ({p})" for v, p in loose.columns]
counts = [c for c in loose.columns if c.startswith("n_full_pools")]
loose[counts] = loose[counts].astype(int)
print(loose.round(1).to_string())

# %% [markdown]
# ## What carries the remaining signal
#
# The synthetic reports record which instance detail they mention. Splitting the held-out
# images by that flag (the distractors stay the same) shows where re-linkage comes from:
# if the matched-pool lift is much higher for reports that mention a device or a measurement,
# those details are what identify the study once the findings are equal. The comparison uses
# lift over each subset's own effective chance, because the subsets can sit in matched groups
# of different sizes (a report that mentions a device tends to carry the Support Devices label,
# which changes its group).

# %%
if breakdown.empty:
    display(Markdown("This cohort has no instance-detail flags (real cohorts do not), so there is no split."))
else:
    top = breakdown.loc[breakdown["rung"] == breakdown["rung"].max(), "model"].iloc[0]
    sizes = sorted(breakdown.loc[~breakdown["full_database"].astype(bool), "pool_size"].unique())
    n_show = 100 if 100 in sizes else (sizes[-1] if sizes else n_db)
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    plot_detail_split(ax, breakdown, model=top, pool_size=int(n_show), k=1, simulation=simulation)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncols=3)
    fig.tight_layout()
    plt.show()

# %% tags=["nbval-check-output"]
if not breakdown.empty:
    b = breakdown[(breakdown["k"] == 1) & (breakdown["pool_size"] == n_show)]
    split = b.pivot_table(index=["rung", "model", "detail"], columns=["pool", "mentioned"], values="lift", sort=False)
    order = [(p, m) for p in ("random", "matched") for m in (True, False) if (p, m) in split.columns]
    split = split[order]
    split.columns = [f"{p}, {'mentioned' if m else 'not mentioned'}" for p, m in split.columns]
    print(f"Lift of Recall@1 over chance at N = {n_show}")
    print(split.round(2).to_string())

# %% [markdown]
# ## Summary

# %%
top_rung = table["rung"].max()
pick = table[(table["k"] == 1) & (table["rung"] == top_rung) & ~table["full_database"]]
n_sum = 100 if 100 in set(pick["pool_size"]) else int(pick["pool_size"].max())
r = pick[(pick["pool"] == "random") & (pick["pool_size"] == n_sum)].iloc[0]
m = pick[(pick["pool"] == "matched") & (pick["pool_size"] == n_sum)].iloc[0]
lines = [f"- Profile `{params['profile']}`, cohort `{cohort_name}`"
         + (" (simulation: synthetic cohort and tiny models)." if simulation else "."),
         f"- Most specialised model ({r['model']}), N = {n_sum:,}, Recall@1: random pools {r['recall']:.3f} "
         f"({r['lift']:.1f}x chance), pathology-matched pools {m['recall']:.3f} ({m['lift']:.1f}x the effective chance "
         f"{m['chance']:.4f}; {int(m['n_full_pools']):,} of {int(m['n_queries']):,} queries had a complete pool).",
         f"- Matching rule: {rule}; the looser positive-set match is the sensitivity analysis above."]
if not breakdown.empty:
    bm = breakdown[(breakdown["pool"] == "matched") & (breakdown["k"] == 1) & (breakdown["pool_size"] == n_show)
                   & (breakdown["rung"] == top_rung)]
    gaps = {d: g.set_index("mentioned")["lift"] for d, g in bm.groupby("detail")}
    gap_txt = ", ".join(f"{d} {v.get(True, np.nan):.2f}x vs {v.get(False, np.nan):.2f}x" for d, v in gaps.items())
    lines.append(f"- Matched-pool lift of Recall@1 at N = {n_show} when the report mentions / does not mention a "
                 f"detail: {gap_txt}.")
display(Markdown("\n".join(lines)))
