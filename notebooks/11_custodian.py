# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # 11. Does head-only DP protect anyone? The adaptive attacker and the custodian's decision
#
# **Overview.** Chapter 1 gives the attacker the released weights. Chapter 6 measures only a
# *passive* attacker, who uses the released projection heads as they are. But the encoders are
# frozen and released without any guarantee: an attacker who holds them and m public image-report
# pairs can fit new heads, or a closed-form map between the two feature spaces, and never touch
# the DP heads at all.
#
# **The question.** How much of the DP cut does such an attacker recover, and from how few public
# pairs? Which patients does the (eps, delta) guarantee actually cover? Which release should a data
# custodian choose under stated risk tolerances?
#
# ```{margin} Recall@K
# The fraction of queries whose own report ranks among the top K of a pool of N candidates; see the {term}`glossary <Recall@K>`.
# ```
#
# ```{margin} Lift
# Recall@K divided by chance, min(K, N)/N: "15x chance" is fifteen times the blind-guess rate; see the {term}`glossary <lift>`.
# ```
#
# **The method.** On the most specialised rung, every attack is fit on the m public pairs only
# (the internal `val` split, declared public, or the external site's cohort) and scored on the
# held-out `test` split; the fit rows are checked disjoint from the scored rows.
#
# - *Closed form*: ridge regression from image to text features (penalty 1e-2 x trace / d of the
#   centred public image features) and regularised CCA; score = cosine in the mapped space.
# - *Trained heads*: fresh heads trained by the project's own contrastive objective, non-privately,
#   on the public pairs (also the bank); and the released heads fine-tuned the same way.
# - *Text side*, the attacker of an image-only release: TF-IDF of the report text (vocabulary from
#   the public reports only) mapped by ridge regression into the released image embedding space.
# - m = 0 is the passive attacker. Outcome: tie-fair expected Recall@1 lift over chance at N = 100
#   and N = 10,000 (each capped at the held-out split minus one), patient-bootstrap 95% CIs.
#
# A synthetic source with fewer public pairs than `adaptive.public_pool_min` is topped up with fresh
# patients of the same generator, after its own pairs: m up to the source's size uses its own pairs.

# %% tags=["parameters"]
profile = "default"
overrides = {}

# %% tags=["remove-cell"]
from relink_lib.profiles import get_profile

params = get_profile(profile, overrides)

# %% tags=["remove-cell"]
import time

from IPython.display import Markdown, display

from relink_lib.adaptive.stage import get_adaptive
from relink_lib.adaptive.summary import (adaptive_findings, adaptive_payload, headline, m_half_table,
                                         options_table, protection_table, recommend, tail_table)
from relink_lib.cohorts.stage import cohort_label, get_cohort
from relink_lib.display import provenance_banner
from relink_lib.floats import show_figure
from relink_lib.plots.adaptive import plot_lift_vs_m, plot_tail
from relink_lib.results import write_results
from relink_lib.tables import html_table

# %% tags=["remove-input"]
t0 = time.perf_counter()
res = get_adaptive(params)
cohort = get_cohort(params, site="internal")
simulation = params.cohort.simulation
display(provenance_banner(params, cohort_label(cohort)))
path = write_results(params, "adaptive", adaptive_payload(params, res), cohort=cohort_label(cohort),
                     model=res.rung, wall_time_s=res.build_time_s + time.perf_counter() - t0)
what = "a **simulation** on the synthetic cohort" if simulation else "real data"
display(Markdown(
    f"Profile `{params['profile']}`, cohort `{cohort_label(cohort)}` ({what}); rung `{res.rung}`; "
    f"held-out pairs {res.n_test:,}; public sources (with their top-up of fresh patients): "
    + ", ".join(f"{k} ({v:,} pairs, {res.topped_up[k]:,} of them fresh)" for k, v in res.sources.items())
    + f"; DP heads at eps = {res.epsilon:.3g}, delta = {res.delta:.2g}."))

# %% [markdown]
# ## The headline
#
# The numbers behind these sentences are in {numref}`tab-custodian-options` (the full model's and
# the DP heads' rows) and {numref}`fig-custodian-lift-vs-m`.

# %% tags=["remove-input"]
display(Markdown("\n\n".join(adaptive_findings(params, res))))

# %% tags=["nbval-check-output", "remove-cell"]
h = headline(res)
print(f"profile {params['profile']}, simulation={simulation}, N={h['n']}, m={h['m']}")
print({k: round(h[k], 2) for k in ("full_passive", "dp_passive", "dp_adaptive")}, h["verdict"])

# %% [markdown]
# ## Lift against the attacker's public pairs
#
# In {numref}`fig-custodian-lift-vs-m` each panel is one public source. Lines: the five attacks on
# the DP release; dashed, the full model's passive lift; dotted, the DP heads' passive lift.
# Fine-tuning and the text-side attack read the DP heads; ridge, CCA and new heads would give the
# same curve for any released heads. {numref}`tab-custodian-m-half` gives, per source, the smallest
# m that recovers half and all of the cut.

# %% tags=["hide-input"]
fig = plot_lift_vs_m(res, "dp", simulation=simulation)
show_figure(fig, "fig-custodian-lift-vs-m", f"Recall@1 lift over chance at N = {res.pool_ref:,} of the attacks on "
            "the DP release against the number m of public pairs the attacker holds, one panel per public source, "
            "with the full model's (dashed) and the DP heads' (dotted) passive lift.")

# %% tags=["hide-input"]
display(html_table(m_half_table(res), label="tab-custodian-m-half",
                   caption="Smallest m recovering half (m_half) and all (m_all) of each cut."))

# %% tags=["hide-input"]
if res.skipped:
    display(Markdown("Skipped: " + "; ".join(f"{s.source} m = {s.m} ({s.reason})" for s in res.skipped) + "."))

# %% [markdown]
# ## Who is protected
#
# {numref}`tab-custodian-protection` gives the lift at N = 100 (capped by the group's size) before
# (pretrained heads) and after (DP heads) the mitigation, for the passive attacker and the adaptive
# one (the better of ridge and fine-tuning, fit on public pairs other than the group's own). The
# head-train row is measured on a sample of the private pairs of the same size as the held-out
# split.

# %% tags=["hide-input"]
display(html_table(protection_table(res), label="tab-custodian-protection", caption="Who is protected, and by what."))

# %% [markdown]
# ## The custodian's decision
#
# Five release options ({numref}`tab-custodian-options`). The rule
# (`relink_lib.adaptive.summary.recommend`, unit-tested): the upper 95% bound of the adaptive lift
# at the largest pool the option allows must be at most `adaptive.max_adaptive_lift_n10000` x
# chance, and macro zero-shot AUROC must stay within `adaptive.max_zero_shot_drop` points of the
# full model's.

# %% tags=["hide-input"]
display(html_table(options_table(res), label="tab-custodian-options",
                   caption="Release options: re-linkage and utility."))

# %% tags=["hide-input"]
rec = recommend(res.options, params.adaptive.max_adaptive_lift_n10000, params.adaptive.max_zero_shot_drop)
display(Markdown(rec["sentence"] + "\n\n" + "\n".join(f"- {k}: {v}" for k, v in rec["reasons"].items())))

# %% tags=["nbval-check-output", "remove-cell"]
print("recommended:", rec["recommended"])
print({o.option: round(o.risk_lift, 2) for o in res.options})

# %% [markdown]
# ## The tail: patients who stay re-linkable
#
# Per-patient expected Recall@1 at N = 100 on the held-out split ({numref}`fig-custodian-tail`,
# {numref}`tab-custodian-tail`): the fraction of patients above
# 10x chance and the mean of the top 1% of patients, before and after the mitigation and under the
# adaptive attacker (patient-bootstrap CIs).

# %% tags=["hide-input"]
fig = plot_tail(res, simulation=simulation)
show_figure(fig, "fig-custodian-tail", f"Per-patient expected Recall@1 at N = {res.pool_small:,} on the held-out "
            "split, patients sorted from the most re-linkable, before and after the mitigation and under the adaptive "
            "attacker, with 10x chance dashed.")

# %% tags=["hide-input"]
display(html_table(tail_table(res), label="tab-custodian-tail", caption="Per-patient tail at N = 100."))

# %% tags=["nbval-check-output", "remove-cell"]
print({t.condition: (round(t.fraction_above, 3), round(t.top_mean, 3)) for t in res.tail})

# %% [markdown]
# ## Summary
#
# The sentences at the top of the chapter are generated from these numbers
# (`relink_lib.adaptive.summary.adaptive_findings`). Because the encoders are released without any
# guarantee, a DP guarantee on the projection heads bounds only what the heads add; an attacker who
# replaces the heads is outside it. Where the numbers show the adaptive attacker recovering the cut,
# head-only DP does not protect the patients whose pairs trained the encoders.
