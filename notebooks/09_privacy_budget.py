# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # 9. Privacy budget: from eps = 0.34 to 1e15, and no DP
#
# **Overview.** Chapter 6 trained the projection heads with DP-SGD at the paper's budget
# (eps, delta) = (0.34, 6e-6). That is a very strict budget. Ziller et al. (2024, "Reconciling
# privacy and accuracy in AI for medical imaging") argue the opposite end: budgets as high as
# eps = 1e6 to 1e12 already stop *realistic* reconstruction attacks, at almost no cost in accuracy,
# because a realistic adversary is far weaker than the one the eps guarantee is written for.
# This chapter measures both views on the same model and data.
#
# **The question.** As the budget grows from eps = 0.34 to 1e15 (and on to no DP at all), how much
# re-linkage does DP training of the heads let back, what does it cost in utility, and how fast does
# the risk that a training pair is reconstructed grow, under three threat models: the worst case the
# eps guarantee is written for, a relaxed one, and a gradient-access reconstruction?
#
# **The method.** Every run starts from **fresh heads**: data-independent weights drawn from the run's
# seed (`relink_lib.dp.heads.fresh_heads`), with nothing kept of the pretrained heads, trained by the
# mitigation's trainer (`relink_lib.dp.train_heads`) at **chapter 6's released setting** (its
# optimizer, learning rate and epochs, `reference_setting(get_frontier(params))`). Fine-tuning the
# pretrained heads instead would start from the full re-linkage and, at these schedules, cut almost
# nothing at any budget; from fresh heads the relative cut of Recall@1 against the pretrained heads,
# cut(eps), is a dose-response: how much re-linkage training at eps puts back. Every budget has the
# same data, steps, objective and seeds (`budget.n_seeds` of them); only the noise multiplier sigma
# changes, calibrated by the RDP accountant (finite even at eps = 1e15, where sigma is about 1e-7).
# Each trained model is then measured three ways:
#
# - **re-linkage**: Recall@K over random and pathology-matched pools of held-out pairs (chapters 4-5),
#   and the cut with a CI over held-out patients (bootstrap) and seeds;
# - **utility**: the image-side linear probe and the zero-shot (cross-modal) macro AUROC (chapter 7);
# - **reconstruction risk** under the three threat models of {numref}`tab-budget-threats`
#   (`relink_lib.risk`, [the method note](../docs/risk.md)).
#
# ```{margin} ReRo
# Reconstruction robustness: an upper bound on the probability that any adversary reconstructs a training pair, given its prior kappa; see the {term}`glossary <ReRo>`.
# ```
#
# ```{margin} kappa
# The worst-case adversary's prior, the chance of guessing the target without the model: 1/n_train here; see the {term}`glossary <kappa>`.
# ```
#
# The worst-case risk is the reconstruction-robustness (ReRo) bound
#
# $$\gamma = 1 - \mathrm{T}(P, Q)(\kappa), \qquad P = \mathcal{N}(0, \sigma^2)^{\otimes T}, \qquad Q = \big((1 - q)\, \mathcal{N}(0, \sigma^2) + q\, \mathcal{N}(1, \sigma^2)\big)^{\otimes T}$$ (eq-rero)
#
# the power of the best test between "trained without the target" (P) and "with it" (Q) at
# type-I error kappa. P and Q are the T steps of DP-SGD in units of the clipping norm C: each step
# adds N(0, sigma^2) noise (sigma the noise multiplier), and the target's clipped gradient, of norm
# at most C (1 after scaling, the worst case), enters a step with the sample rate q.
# T(P, Q)(alpha) is their trade-off curve, the smallest type-II error of any test at type-I error
# alpha, computed from the privacy loss distribution (PLD) of the composed Poisson-subsampled
# Gaussian. The sweep evaluates equation {eq}`eq-rero` at every DP budget; non-private training has
# no bound and is placed at risk 1. The tests check it against the exact Gaussian-DP answer (full
# batches), the CLT approximation and Monte Carlo.
#
# **What the bounds cover.** Only the heads are trained here, and every bound below (eps itself, the
# ReRo and relaxed bounds) covers that head training only. The image and text encoders, which
# compute the features the heads map, are frozen and were trained **without DP on the same
# patients**; nothing in this chapter bounds what they leak. The box below, "What the guarantee
# covers", states whom the guarantee of chapter 6's released heads covers at the profile's budget;
# every run of this sweep trains fresh heads on the same private pairs, so its eps is a guarantee of
# the same kind at its own budget.

# %% tags=["parameters"]
profile = "default"
overrides = {}

# %% tags=["remove-cell"]
from relink_lib.profiles import get_profile

params = get_profile(profile, overrides)

# %% tags=["remove-cell"]
import time

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import HTML, Markdown, display

from relink_lib.cohorts.stage import cohort_label
from relink_lib.display import provenance_banner
from relink_lib.floats import show_figure
from relink_lib.guarantee import guarantee_box
from relink_lib.plots.common import set_style
from relink_lib.plots.risk import (plot_budget_utility, plot_cut, plot_relinkage, plot_rero_priors, plot_risks,
                                   plot_tradeoff_curves)
from relink_lib.results import write_results
from relink_lib.risk.stage import run_budget_sweep
from relink_lib.risk.summary import (budget_cut_view, budget_doors, budget_findings, budget_pool, budget_rero_view,
                                     budget_tradeoff_curves, budget_view, pool_size_label)
from relink_lib.tables import html_table

# %% tags=["remove-input"]
set_style()
t0 = time.perf_counter()
sweep, inputs = run_budget_sweep(params, progress=False)  # the stage's typed result (SweepResult; cached)
cohort_name = cohort_label(inputs.cohort)
write_results(params, "privacy_budget", sweep.to_json(), cohort=cohort_name, model=inputs.rung.name,
              wall_time_s=time.perf_counter() - t0)
table, recall, rero = sweep.table, sweep.recall, sweep.rero  # per budget; per (budget, pool, k, N); per (budget, prior)
simulation = params.cohort.simulation
what = "a **simulation** on the synthetic cohort" if simulation else "real data"
n_train, n_test = len(inputs.train), len(inputs.test)
display(provenance_banner(params, cohort_name))
display(HTML(guarantee_box(params)))
display(Markdown(
    f"Profile `{params['profile']}`, cohort `{cohort_name}` ({what}), model `{inputs.rung.name}` (the most "
    f"specialised rung): fresh heads trained on {n_train:,} private training pairs at {len(table)} budgets "
    f"({sweep.start['optimizer']}, lr {sweep.start['lr']:g}, {sweep.start['epochs']:g} epochs, init "
    f"`{sweep.start['init']}`; {len(sweep.start['seeds'])} seed(s) each), evaluated on {n_test:,} held-out pairs. "
    "Every number below comes from this run."))

# %% [markdown]
# ## Three threat models
#
# ```{margin} GLRT
# The generalised likelihood-ratio test of an adversary who does not know the target's gradient; its power at level kappa is the relaxed bound; see the {term}`glossary <GLRT>`.
# ```
#
# {numref}`tab-budget-threats` summarises the three. The worst case is what DP's eps is written for:
# an adversary who knows every training pair but one and only has to say *which* of the n_train
# candidates was used, so a blind guess succeeds with probability kappa = 1/n_train. The relaxed
# adversary must *reconstruct* the pair instead: not knowing the target's gradient, it cannot run
# the likelihood-ratio test and falls back to the generalised likelihood-ratio test (GLRT) on the
# squared updates, whose power at level kappa is the relaxed bound.
#
# The worst-case bound is also read at the **re-linkage prior**: the re-linker of chapters 4-8
# picks the target's report among a pool of N, so its blind guess succeeds with kappa = 1/N (N = 10,
# 100, ... the audit's pool sizes), a far larger prior than 1/n_train. The bound is the same
# trade-off curve read at a larger type-I error.
#
# The third adversary is a **gradient-access reconstruction**, and it is **not** a weak one. It sees
# *one pair's individual clipped, noisy per-sample update* of the image head (a client training on
# one pair, or an adversary who can subtract the rest of the batch): that is **gradient access**
# during training. It takes the top singular vector of that update as the reconstructed
# pre-projection image feature (a linear head's per-sample gradient is rank one, outer(dL/dz, x))
# and must pick the right image among N candidates. This adversary is stronger than the re-linker of
# chapters 4-8, who holds only the released weights, and stronger than the "realistic" adversary of
# Ziller et al., who attacks the trained model. Its success says how much one update leaks; it does
# not measure re-linkage.

# %% tags=["hide-input"]
display(html_table(pd.DataFrame(list(sweep.threat_models)), label="tab-budget-threats",
                   caption="The three threat models of this chapter."))

# %% [markdown]
# ## The sweep: accounting and outcomes
#
# One row per budget: {numref}`tab-budget-accounting` gives the privacy accounting and the
# reconstruction risks, {numref}`tab-budget-outcomes` re-linkage and utility. `eps` is the RDP
# accountant's value for the reached sigma (at most the target, within 1%); sigma, the sampling rate
# q and the number of steps T are what any other accountant needs to recompute it (the results JSON
# holds them in full). Risks are probabilities; recall is Recall@1 over random pools at the largest
# pool size the held-out split allows; AUROCs are macro means over the 14 labels. Recall@K at every
# pool size and K, for random and matched pools, is in the sweep's long table (`sweep.recall`, one
# row per budget, pool, K and N; `recall` in the results JSON).

# %% tags=["hide-input"]
pool = budget_pool(recall)
display(Markdown(f"Training-set prior of the worst case kappa = 1/{round(1 / table['kappa'].iloc[0]):,}; the gradient-access reconstruction picks among "
                 f"{int(table['attack_candidates'].iloc[0])} candidate images (chance 1/{int(table['attack_candidates'].iloc[0])})."))
view = budget_view(table, recall, pool)
accounting = ["target eps", "eps reached", "sigma", "q", "T", "worst-case risk", "relaxed risk", "gradient-access success"]

# %% tags=["hide-input"]
display(html_table(view[accounting], {"q": "sig", "T": "count", "eps reached": "sig"}, label="tab-budget-accounting",
                   caption="Accounting and reconstruction risk per budget."))

# %% tags=["hide-input"]
display(html_table(view[["target eps"] + [c for c in view.columns if c not in accounting]], label="tab-budget-outcomes",
                   caption="Re-linkage (held-out pairs) and utility per budget."))

# %% tags=["nbval-check-output", "remove-cell"]
with pd.option_context("display.float_format", lambda v: f"{v:.3g}", "display.width", 200):
    print(f"kappa = 1/{round(1 / table['kappa'].iloc[0])}, attack chance = 1/{int(table['attack_candidates'].iloc[0])}")
    print(budget_view(table, recall, pool).set_index("target eps").round(3).to_string())

# %% [markdown]
# ## The dose-response: how much re-linkage training at eps puts back
#
# The cut ({numref}`tab-budget-cuts`, {numref}`fig-budget-cut`) is 1 - (Recall@1 of the trained
# heads) / (Recall@1 of the pretrained heads) on the held-out pairs, at the pool size of
# {numref}`tab-budget-outcomes`, averaged over the seeds: 1 would mean that no query is re-linked at
# all, heads at chance reach 1 - chance / (Recall@1 of the pretrained heads), 0 means they re-link
# as well as the pretrained heads, below 0 better. The CI resamples held-out patients and, in each
# replicate, the seeds, so it holds both the held-out sampling noise and the seed-to-seed spread.
# Where it includes zero, the run cannot tell the cut from no cut at all.

# %% tags=["hide-input"]
cuts = budget_cut_view(table)
display(html_table(cuts, {"cut": "cut", "CI low": "cut", "CI high": "cut",
                          "seed SD": "sig2", "seeds": "count"},
                   label="tab-budget-cuts",
                   caption=f"Relative cut of Recall@1 at N = {pool_size_label(pool)} per budget (held-out pairs)."))

# %% tags=["nbval-check-output", "remove-cell"]
print(cuts.set_index("target eps").drop(columns="seed SD").round(2).to_string())

# %%
fig, ax = plt.subplots(figsize=(7.2, 4.0))
plot_cut(table, ax=ax, simulation=simulation, pool_size=pool)
ax.set_title("Dose-response: cut of re-linkage by the budget" + (" (simulation)" if simulation else ""))
show_figure(fig, "fig-budget-cut", "The dose-response: the relative cut of Recall@1 of fresh heads trained at each "
            "budget, against the pretrained heads, with its 95% CI over held-out patients and seeds.")

# %% [markdown]
# ## Reconstruction risk against the budget
#
# {numref}`fig-budget-risks` shows the three risks on a log axis, one step per budget; the dotted
# lines are what an adversary gets without the model (kappa for the bounds, 1/N for the attack). The
# shaded band is Ziller et al.'s "high-budget DP". With Poisson sampling a pair can be left out of
# every step, so even without noise the bounds stop short of 1, at 1 - (1 - q)^T (1 - kappa); only
# non-private training (shuffled full passes, no guarantee at all) is placed at 1.

# %%
fig, ax = plt.subplots(figsize=(7.2, 4.4))
plot_risks(table, ax=ax, simulation=simulation)
ax.set_title("Reconstruction risk under three threat models" + (" (simulation)" if simulation else ""))
show_figure(fig, "fig-budget-risks", "Reconstruction risk against the budget under the three threat models: the "
            "worst-case ReRo and the relaxed (GLRT) bounds at the training-set prior, and the gradient-access "
            "reconstruction's success.")

# %% [markdown]
# ## The worst-case bound at the re-linkage prior
#
# The same bound read at kappa = 1/N for the audit's pool sizes, beside the training-set prior
# 1/n_train ({numref}`tab-budget-rero`, {numref}`fig-budget-rero-priors`): what DP on the heads
# guarantees against an adversary who, like the re-linker, has to pick one report out of N. A bound
# close to its prior certifies that the heads taught the adversary almost nothing; a bound near 1
# certifies nothing. Dotted lines are the priors.

# %% tags=["hide-input"]
rero_view = budget_rero_view(rero)
display(html_table(rero_view, {c: "sig" for c in rero_view.columns if c != "target eps"},
                   label="tab-budget-rero",
                   caption="Worst-case ReRo bound per budget and prior (training-set and re-linkage)."))

# %% tags=["nbval-check-output", "remove-cell"]
print(rero_view.set_index("target eps").round(3).to_string())

# %%
fig, ax = plt.subplots(figsize=(7.2, 4.4))
plot_rero_priors(rero, ax=ax, simulation=simulation)
ax.set_title("Worst-case bound at the training-set and the re-linkage priors" + (" (simulation)" if simulation else ""))
show_figure(fig, "fig-budget-rero-priors", "The worst-case ReRo bound against the budget at the training-set prior "
            "1/n_train and at the re-linkage priors 1/N, with the priors dotted.")

# %% [markdown]
# The worst-case bound is the optimal test's power read off one trade-off curve per budget. The
# curves of {numref}`fig-budget-tradeoff` show that test for a few budgets: at eps = 0.34 the curve
# hugs the diagonal 1 - alpha (no test does better than guessing), at large eps it drops to the
# floor (1 - q)^T set by the chance that the target was never sampled.

# %%
fig, ax = plt.subplots()
plot_tradeoff_curves(budget_tradeoff_curves(table, budgets=(0.34, 8.0, 1e3, 1e6)), ax=ax)
ax.axvline(float(table["kappa"].iloc[0]), color="tab:red", ls=":", lw=1)
ax.set_title("Trade-off curves of the composed mechanism" + (" (simulation)" if simulation else ""))
show_figure(fig, "fig-budget-tradeoff", "Trade-off curves (type-II against type-I error) of the composed DP-SGD "
            "mechanism for a few budgets of the sweep, with the training-set prior kappa as a dotted line.")

# %% [markdown]
# ## Re-linkage and utility against the budget
#
# {numref}`fig-budget-relinkage` shows re-linkage and {numref}`fig-budget-utility` utility, budget by budget.

# %%
fig, ax = plt.subplots(figsize=(7.2, 4.0))
plot_relinkage(recall, pool_size=pool, k=1, ax=ax, simulation=simulation)
ax.set_title(f"Re-linkage (held-out pairs, N = {pool_size_label(pool)})")
show_figure(fig, "fig-budget-relinkage", f"Recall@1 of the held-out pairs at N = {pool_size_label(pool)} over random "
            "and pathology-matched pools against the budget, with the chance lines.")

# %%
fig, ax = plt.subplots(figsize=(7.2, 4.0))
plot_budget_utility(table, ax=ax, simulation=simulation)
ax.set_title("Utility")
show_figure(fig, "fig-budget-utility", "Utility against the budget: the image-side linear probe's and the "
            "zero-shot (cross-modal) macro AUROC over the 14 labels.")

# %% [markdown]
# ## Where high-budget DP lands between the vault door and no door
#
# For each outcome, 0 is its value at the strictest budget (eps = 0.34, the vault door) and 1 its
# value without DP (no door); {numref}`tab-budget-doors` places every budget on that scale. A budget that sits
# near 1 for recall and utility gives back what DP took; whether it also sits near 1 for the
# risks decides whether it still protects anything. Positions below 0 or above 1 mean the outcome
# is not monotone in eps; when the two ends are close (compare them in {numref}`tab-budget-accounting`
# and {numref}`tab-budget-outcomes`), such
# positions are sampling noise of the held-out split, not an effect.

# %% tags=["hide-input"]
doors = budget_doors(table, recall, pool)
display(html_table(doors, {name: "sig2" for name in doors.columns if name != "eps"}, label="tab-budget-doors",
                   caption="Every budget's place between the strictest budget (0, eps = 0.34) and no DP (1), per outcome."))

# %% tags=["nbval-check-output", "remove-cell"]
print(doors.set_index("eps").round(2).to_string())

# %% [markdown]
# ## Summary
#
# Generated from the sweep above (`relink_lib.risk.summary.budget_findings`), so it stays true on
# every profile; a difference is called one only when it exceeds two sampling standard errors of
# the held-out split, and a cut whose CI includes zero is reported as one the run cannot tell apart
# from no cut.

# %% tags=["hide-input"]
findings = budget_findings(table, recall, n_test, pool=pool, simulation=simulation, rero=rero, start=sweep.start)
display(Markdown("\n".join(f"- {line}" for line in findings)))
