# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # 4. Re-linkage audit
#
# **Overview.** This chapter measures how far each model of the ladder (chapter 3) lets an
# adversary re-link a de-identified radiograph to its own report by cosine similarity, on
# pairs the models never saw in training. It reports Recall@K for K = 1, 5 and 10 at pool
# sizes N = 10, 100, 1,000, 10,000 and the full held-out database, as absolute recall and as
# lift over chance, with patient-level 95% confidence intervals, and where the true report
# lands in the full database.
#
# **The question.** Given one held-out image and a pool of N candidate reports that contains
# its own, how often is the own report among the K most similar, and how many times more often
# than guessing?
#
# **The method.** For query image *i* let *c_i* be the number of other reports that score at
# least as high as its own report (ties count against the query). Its rank in the full
# database is 1 + *c_i*. A random pool holds the true report and N - 1 distractors drawn
# uniformly without replacement from the *D* = M - 1 others, so the number *X* of pool
# distractors at or above the truth is hypergeometric, and
#
# $$ \mathbb{E}[\text{Recall@}K] = P(X \le K - 1), \qquad X \sim \text{Hypergeometric}(D, c_i, N - 1), $$
#
# averaged over queries: the **exact** expectation over all random pools, with no sampling
# noise. One streamed pass over the similarity matrix gives every *c_i*
# (`relink_lib.audit.relink_audit`; the M x M matrix is never held in memory), and the tests
# check the formula against enumerating every pool and against Monte Carlo sampling
# (`docs/audit.md`). Chance is min(K, N)/N and lift = recall / chance. The 95% intervals
# resample patients, not images, because studies of one patient share anatomy and chronic
# findings. Pool sizes larger than the held-out database cannot be drawn and are left out
# (stated below the first table).

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

from relink_lib.audit.stage import audit_ladder
from relink_lib.plots.audit import PAPER_R1_LIFT, plot_lift_vs_pool, plot_rank_distribution, plot_recall_vs_pool
from relink_lib.plots.common import set_style
from relink_lib.results import read_results

set_style()
table = audit_ladder(params)
saved = read_results(params["profile"], "audit")
simulation = saved["provenance"]["simulation"]
cohort_name = saved["provenance"]["cohort"]
what = "a **simulation** on the synthetic cohort" if simulation else "real data"
random = table[table["pool"] == "random"]
n_db = int(random["pool_size"][random["full_database"]].max())
dropped = saved["dropped_pool_sizes"]
display(Markdown(
    f"Profile `{params['profile']}`, cohort `{cohort_name}` ({what}): {len(saved['n_database'])} models, each audited "
    f"on the held-out test split of {n_db:,} image-report pairs (the full database). "
    + (f"Pool size{'s' if len(dropped) > 1 else ''} {', '.join(f'{n:,}' for n in dropped)} "
       f"exceed{'' if len(dropped) > 1 else 's'} that database and {'are' if len(dropped) > 1 else 'is'} not reported."
       if dropped else "Every requested pool size fits in the database.")))

# %% [markdown]
# ## Recall@K against the pool size
#
# The table gives the expected Recall@K over random pools and its lift over chance, per model
# (rung 0 is the least specialised) and pool size ("full" rows are the whole held-out database).

# %% tags=["nbval-check-output"]
view = random.assign(N=np.where(random["full_database"], "full", random["pool_size"].map(lambda n: f"{n:,}")))
wide = view.pivot_table(index=["rung", "model", "N"], columns="k", values=["recall", "lift"], sort=False)
wide.columns = [f"{name}@{k}" for name, k in wide.columns]
print(wide[[f"recall@{k}" for k in params["audit"]["ks"]]].round(3).to_string())
print()
print(wide[[f"lift@{k}" for k in params["audit"]["ks"]]].round(1).to_string())

# %% [markdown]
# Each panel is one K; the lines are the models, the shaded bands the patient-level 95%
# intervals, and the dashed line chance. Both axes are logarithmic: chance falls as 1/N, and
# a model that re-links stays above it by a roughly constant factor or more.

# %%
ks = list(params["audit"]["ks"])
fig, axes = plt.subplots(1, len(ks), figsize=(4.2 * len(ks), 3.8), sharey=True)
for ax, k in zip(np.atleast_1d(axes), ks):
    plot_recall_vs_pool(ax, table, k, simulation=simulation)
np.atleast_1d(axes)[0].legend(loc="lower left", fontsize=8)
fig.suptitle(f"Expected Recall@K over random pools ({params['profile']} profile, {cohort_name})")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Lift over chance, and the paper's headline
#
# Lift puts all pool sizes on one scale. The red stars are **the paper's** figures for its
# strongest model (Tayebi Arasteh et al., arXiv 2606.02276): Recall@1 at 15x chance for
# N = 100 and 50x for N = 10,000. They are reference marks from real MIMIC-CXR data and real
# VLMs, not results of this book.

# %%
fig, ax = plt.subplots(figsize=(6.4, 4.2))
plot_lift_vs_pool(ax, table, k=1, simulation=simulation)
ax.legend(loc="upper left", fontsize=8)
plt.show()

# %% [markdown]
# ## Where the true report lands
#
# Recall@K looks at the top of the ranking only. The full-database rank of the true report
# shows the whole distribution: the curve is the share of held-out images whose own report is
# within the top r of all reports. Without any signal it would follow the dashed diagonal.

# %%
fig, ax = plt.subplots(figsize=(6.4, 4.0))
plot_rank_distribution(ax, saved["rank_histograms"], simulation=simulation)
ax.legend(loc="upper left", fontsize=8)
plt.show()

# %% tags=["nbval-check-output"]
full = random[random["full_database"] & (random["k"] == min(ks))]
summary = full[["rung", "model", "pool_size", "mrr", "chance_mrr", "median_rank"]].rename(
    columns={"pool_size": "database", "chance_mrr": "chance MRR", "median_rank": "median rank"})
print(summary.set_index(["rung", "model"]).round(4).to_string())

# %% [markdown]
# ## Summary

# %%
best = random[(random["k"] == 1) & (random["rung"] == random["rung"].max()) & ~random["full_database"]].set_index("pool_size")
lines = [f"- Profile `{params['profile']}`, cohort `{cohort_name}`"
         + (" (simulation: synthetic cohort, tiny models; the mechanism, not the size of the real risk)." if simulation else ".")]
for n in (100, 10_000):
    if n in best.index:
        row = best.loc[n]
        lines.append(f"- Most specialised model ({row['model']}), N = {n:,}: Recall@1 = {row['recall']:.3f} "
                     f"(95% CI {row['ci_low']:.3f}-{row['ci_high']:.3f}), {row['lift']:.1f}x chance; "
                     f"the paper reports {PAPER_R1_LIFT[n]:g}x for its strongest model.")
    else:
        lines.append(f"- N = {n:,} is larger than this profile's held-out database ({n_db:,} pairs): no row; "
                     f"the paper reports {PAPER_R1_LIFT[n]:g}x chance there.")
by_rung = random[(random["k"] == 1) & random["full_database"]].sort_values("rung")
lines.append("- Full-database Recall@1 by rung (least to most specialised): "
             + ", ".join(f"{r.model} {r.recall:.3f}" for r in by_rung.itertuples()) + ".")
lines.append("- Recall is an exact expectation over random pools; intervals are patient-level bootstrap 95% CIs. "
             "Chapter 5 asks how much of this survives when every distractor has the same findings.")
display(Markdown("\n".join(lines)))
