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
# from its matched reports. Many label vectors are rare, so a query with fewer than N - 1
# matches gets its whole matched pool: its **effective pool** is smaller than the nominal N and
# its chance is 1 / (its pool size), not 1/N. The tables therefore give the effective pool (mean
# candidates a query gets), the **effective chance** (averaged over the pools the queries
# actually get), the number of queries whose pool is complete, and lift = recall / effective
# chance. Queries whose label vector no other held-out report shares have no hard negative at
# all and are left out (counted). Matched reports often repeat the same wording, so ties are
# common here; as in chapter 4 they are broken at random, with both bounds shown where they
# differ. As a sensitivity analysis, a looser match asks only for the same set of positive
# findings. Recall is the exact expectation over random pools and tie-breaks
# (`relink_lib.audit`), with patient-level bootstrap 95% intervals.
#
# ```{margin} Effective pool
# The mean number of candidates a query really gets in a matched pool, true report included, often
# far below the nominal N; see the {term}`glossary <effective pool>`.
# ```
#
# ```{margin} Effective chance
# Chance over the pools the queries actually get, min(K, pool)/pool averaged over queries, the
# baseline of matched-pool recall; see the {term}`glossary <effective chance>`.
# ```

# %% tags=["parameters"]
profile = "default"
overrides = {}

# %% tags=["remove-cell"]
from relink_lib.profiles import get_profile

params = get_profile(profile, overrides)

# %% tags=["remove-cell"]
import time

import matplotlib.pyplot as plt
from IPython.display import Markdown, display

from relink_lib.audit.stage import audit_ladder, hard_negative_breakdown
from relink_lib.audit.summary import compact, hard_negative_findings, hard_negative_payload, hard_negative_tables
from relink_lib.floats import show_figure
from relink_lib.plots.audit import plot_detail_split, plot_random_vs_matched
from relink_lib.plots.common import legend_outside, set_style
from relink_lib.results import write_results
from relink_lib.tables import html_table

# %% tags=["remove-input"]
set_style()
t0 = time.perf_counter()
audit, hard = audit_ladder(params), hard_negative_breakdown(params)  # typed stage results (cached)
write_results(params, "hard_negatives", hard.to_json(), cohort=audit.cohort, model=audit.models,
              wall_time_s=time.perf_counter() - t0)
payload = hard_negative_payload(params, audit, hard)
tables = hard_negative_tables(payload)
simulation, cohort_name = payload["simulation"], payload["cohort"]
display(Markdown(
    f"Profile `{payload['profile']}`, cohort `{cohort_name}` "
    f"({'a **simulation** on the synthetic cohort' if simulation else 'real data'}); held-out database of "
    f"{payload['n_database']:,} pairs. Matching rule: {payload['rule']}. Queries without any matched report: "
    f"{payload['n_excluded']:,} of {payload['n_database']:,}."))

# %% [markdown]
# ## Random against pathology-matched pools
#
# {numref}`tab-hardneg-side` gives Recall@1 per model for both pool types, with the effective
# pool and effective chance of the matched pools and how many queries got a complete pool of N
# candidates.

# %% tags=["remove-input"]
display(html_table(tables["side"], {"R@1 random": "sig", "R@1 matched": "sig", "effective chance": "sig",
                                    "effective pool": "sig", "lift random": "lift", "lift matched": "lift"},
                   caption="Recall@1 and its lift in random and pathology-matched pools per model and pool size N, "
                           "with the matched pools' effective pool and effective chance.", label="tab-hardneg-side"))

# %% tags=["nbval-check-output", "remove-cell"]
print(tables["side"].drop(columns="model").set_index(["rung", "N"]).pipe(compact).to_string())

# %% [markdown]
# {numref}`fig-hardneg-random-matched`, left: random pools (chapter 4); right: matched pools, on
# the same axes. The dashed line on the right is the effective chance of the matched pools, which
# sits above 1/N wherever queries have fewer matches than N - 1.

# %%
fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.0))
plot_random_vs_matched(payload["table"], k=1, axes=axes, simulation=simulation)
legend_outside(axes[0], "below")
fig.suptitle(f"Recall@1, random and pathology-matched pools ({params['profile']} profile, {cohort_name})")
fig.tight_layout()
show_figure(fig, "fig-hardneg-random-matched", "Expected Recall@1 against the pool size N per model in random "
            "pools (left) and pathology-matched pools (right), with chance and effective chance dashed.")

# %% [markdown]
# Where matched distractors score exactly like the true report, the fair figure lies between
# the two tie bounds:

# %% tags=["remove-input"]
if tables["ties"].empty:
    display(Markdown("No matched-pool query ties with a distractor: the fair recall equals both bounds."))
else:
    display(html_table(tables["ties"], {c: "sig" for c in ("ties against", "fair (random tie-break)", "ties for")},
                       caption="Recall@1 in matched pools where ties make the bounds differ: every tie against the "
                               "true report, the fair random tie-break, every tie for it.", label="tab-hardneg-ties"))

# %% [markdown]
# ## Sensitivity: a looser match
#
# Matching only the set of positive findings (ignoring negative and uncertain labels) gives
# larger matched groups, so more queries get complete pools. If the lift barely moves between
# the two rules ({numref}`tab-hardneg-sensitivity`), the result does not hinge on how uncertain and
# missing labels are treated.

# %% tags=["remove-input"]
display(html_table(tables["sensitivity"], {"lift (exact match)": "lift", "lift (positive set)": "lift"},
                   caption="Lift of Recall@1 over effective chance per model and pool size N under the exact "
                           "label match and the looser positive-set match.", label="tab-hardneg-sensitivity"))

# %% tags=["nbval-check-output", "remove-cell"]
print(tables["sensitivity"].drop(columns="model").set_index(["rung", "N"]).pipe(compact).to_string())

# %% [markdown]
# ## What carries the remaining signal
#
# The synthetic reports record which instance detail they mention. Splitting the held-out
# images by that flag (the distractors stay the same) shows where re-linkage comes from: if the
# matched-pool lift is much higher for reports that mention a device or a measurement, those
# details are what identify the study once the findings are equal. The comparison uses lift
# over each subset's own effective chance, because the subsets can sit in matched groups of
# different sizes. Chapter 4's per-study model asks the same question on real and synthetic
# reports alike, from properties extracted from the text.

# %%
if tables["detail"].empty:
    display(Markdown("This cohort has no instance-detail flags (real cohorts do not), so there is no split."))
else:
    b = payload["breakdown"]
    top = b.loc[b["rung"] == b["rung"].max(), "model"].iloc[0]
    n_show = int(tables["detail_pool_size"]["pool_size"].iloc[0])
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    plot_detail_split(b, ax=ax, model=top, pool_size=n_show, k=1, simulation=simulation)
    legend_outside(ax, "below", fontsize=7, ncol=3)
    fig.tight_layout()
    show_figure(fig, "fig-hardneg-detail", "Lift of Recall@1 over each subset's own chance in random and matched "
                "pools for the most specialised model, by whether the report mentions each instance detail (95% CIs).")

# %% tags=["nbval-check-output", "remove-cell"]
if not tables["detail"].empty:
    print(f"Lift of Recall@1 over chance at N = {n_show}")
    print(tables["detail"].drop(columns="model").set_index(["rung", "detail"]).pipe(compact).to_string())

# %% tags=["remove-input"]
if not tables["detail"].empty:
    display(html_table(tables["detail"], {c: "lift" for c in tables["detail"].columns if "mentioned" in c},
                       caption=f"Lift of Recall@1 over each subset's chance at N = {n_show:,}, by the instance "
                               "detail the report mentions.", label="tab-hardneg-detail"))

# %% [markdown]
# ## Summary

# %% tags=["remove-input"]
display(Markdown("\n".join(f"- {line}" for line in hard_negative_findings(payload))))
