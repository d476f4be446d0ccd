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
# adversary re-link a de-identified radiograph to its own report by cosine similarity. It
# reports Recall@K for K = 1, 5 and 10 at pool sizes N = 10, 100, 1,000, 10,000 and the full
# held-out database, as absolute recall and as lift over chance, with patient-level 95%
# confidence intervals; where the true report lands in the full database; how much more the
# models re-link the pairs they were trained on than unseen pairs; and which properties of a
# study make it re-linkable.
#
# ```{margin} Recall@K
# The share of query images whose own report ranks among the top K of a pool of N reports; see the
# {term}`glossary <Recall@K>`.
# ```
#
# ```{margin} Lift
# Recall@K divided by {term}`chance`, min(K, N)/N, the Recall@K of a ranking that knows nothing;
# see the {term}`glossary <lift>`.
# ```
#
# **The question.** Given one image and a pool of N candidate reports that contains its own,
# how often is the own report among the K most similar, and how many times more often than
# guessing? Is that different for pairs the model saw in training, and for which studies?
#
# **The method.** For query image *i* let *b_i* be the number of other reports that score
# strictly higher than its own report and *t_i* the number that score exactly the same (a
# report repeated word for word, such as a stock "No acute cardiopulmonary process."). A random
# pool holds the true report and N - 1 distractors drawn uniformly without replacement from the
# *D* = M - 1 others; the pool's better and tied distractors (*X*, *Y*) are multivariate
# hypergeometric, and an adversary facing *Y* + 1 equally similar candidates picks one at random,
# so the true report's rank is 1 + *X* + *U* with *U* uniform on 0 ... *Y*. The audit gives the
# **exact** expectation of Recall@K = P(rank <= K) over all random pools and all tie-breaks (no
# sampling noise), for query *i*
#
# $$ \mathbb{E}\left[\mathrm{Recall@}K\right]_i = \sum_{x=0}^{K-1} \sum_{y=0}^{t_i} \frac{\binom{b_i}{x} \binom{t_i}{y} \binom{D - b_i - t_i}{N - 1 - x - y}}{\binom{D}{N - 1}} \cdot \frac{\min(K - x,\ y + 1)}{y + 1} $$ (eq-expected-recall)
#
# where the fraction is P(*X* = *x*, *Y* = *y*) (a binomial coefficient is 0 when its lower index
# is negative or exceeds the upper one) and the last factor is the probability that the random
# tie-break puts the true report within the top K. The audit evaluates {eq}`eq-expected-recall`
# in a closed form of at most K(K + 1)/2 terms per query and averages it over the queries;
# beside it come the two bounds: every tie against the query and every tie for it. A model that
# scores every report the same therefore gets exactly chance, min(K, N)/N, and lift = recall /
# chance. One streamed
# pass over the similarity matrix gives every *b_i* and *t_i* (`relink_lib.audit.relink_audit`;
# the M x M matrix is never held in memory); the tests check all three figures against
# enumerating every pool and every tie order (`docs/audit.md`). The 95% intervals resample
# patients, not images, because studies of one patient share anatomy and chronic findings.

# %% tags=["parameters"]
profile = "default"
overrides = {}

# %% tags=["remove-cell"]
from relink_lib.profiles import get_profile

params = get_profile(profile, overrides)

# %% tags=["remove-cell"]
import time

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import HTML, Markdown, display

from relink_lib.audit.stage import audit_ladder
from relink_lib.calibration import CH4_CALIBRATION, calibration_box, calibration_record
from relink_lib.floats import show_figure
from relink_lib.audit.summary import (audit_findings, audit_overview, audit_payload, audit_tables, compact,
                                      gap_findings, risk_findings, risk_plot_frame)
from relink_lib.plots.audit import (plot_lift_vs_pool, plot_rank_distribution, plot_recall_vs_pool, plot_risk_factors,
                                    plot_seen_unseen)
from relink_lib.plots.common import legend_outside, set_style
from relink_lib.results import write_results
from relink_lib.tables import html_table

# %% tags=["remove-input"]
set_style()
t0 = time.perf_counter()
result = audit_ladder(params)  # the stage's typed result (AuditResult; cached per rung)
write_results(params, "audit", result.to_json(), cohort=result.cohort, model=result.models,
              wall_time_s=time.perf_counter() - t0)
calibration = calibration_record(result.to_json(), params)  # results/<profile>/calibration.json
write_results(params, "calibration", calibration, cohort=result.cohort, model=result.models, wall_time_s=0.0)
payload = audit_payload(params, result)
tables = audit_tables(payload)
ks = payload["ks"]
simulation, cohort_name = payload["simulation"], payload["cohort"]
display(Markdown(audit_overview(payload)))
display(HTML(calibration_box(calibration, where=CH4_CALIBRATION)))

# %% [markdown]
# ## Recall@K against the pool size
#
# {numref}`tab-audit-recall` gives the expected Recall@K over random pools (ties broken at
# random, {eq}`eq-expected-recall`) and {numref}`tab-audit-lift` its lift over chance, per model
# (rung 0 is the least specialised) and pool size; "full" is the whole held-out database.
# {numref}`tab-audit-recall-ci` adds the patient-level 95% intervals of Recall@1 and its lift.

# %% tags=["remove-input"]
display(html_table(tables["recall"], {c: "sig" for c in tables["recall"].columns if c.startswith("R@")},
                   caption="Expected Recall@K over random pools (ties broken at random) per model and pool size "
                           "N, held-out split.", label="tab-audit-recall"))

# %% tags=["remove-input"]
display(html_table(tables["lift"], {c: "lift" for c in tables["lift"].columns if c.startswith("lift@")},
                   caption="Lift of expected Recall@K over chance (Recall@K / chance) per model and pool size N.",
                   label="tab-audit-lift"))

# %% tags=["remove-input"]
display(html_table(tables["ci"], {c: "sig" for c in ("recall", "ci_low", "ci_high")}
                   | {c: "lift" for c in ("lift", "lift_ci_low", "lift_ci_high")},
                   caption="Recall@1 and its lift with patient-level bootstrap 95% intervals, per model and pool "
                           "size N.", label="tab-audit-recall-ci"))

# %% tags=["nbval-check-output", "remove-cell"]
print(tables["recall"].set_index(["rung", "N"]).drop(columns="model").pipe(compact).to_string())
print(tables["lift"].set_index(["rung", "N"]).drop(columns="model").pipe(compact).to_string())

# %% [markdown]
# In {numref}`fig-audit-recall` each panel is one K; the lines are the models, the shaded bands
# the patient-level 95% intervals (drawn down to the lower edge of the plot where they reach
# zero), the dashed line chance. Where ties make the bounds differ, a short vertical bar spans them. Both axes are
# logarithmic: chance falls as 1/N, and a model that re-links stays above it.

# %%
fig, axes = plt.subplots(1, len(ks), figsize=(4.2 * len(ks), 3.8))
for ax, k in zip(np.atleast_1d(axes), ks):
    plot_recall_vs_pool(payload["table"], k, ax=ax, simulation=simulation)
legend_outside(np.atleast_1d(axes)[0], "below")
fig.suptitle(f"Expected Recall@K over random pools ({params['profile']} profile, {cohort_name})")
fig.tight_layout()
show_figure(fig, "fig-audit-recall", "Expected Recall@K against the pool size N per model, with patient-level "
            "95% bands and chance (dashed), one panel per K.")

# %% [markdown]
# ## Lift over chance, and the paper's headline
#
# Lift puts all pool sizes on one scale ({numref}`fig-audit-lift`). The red stars are **the
# paper's** figures for its strongest model (Tayebi Arasteh et al., arXiv 2606.02276): Recall@1 at 15x chance for
# N = 100 and 50x for N = 10,000. They are reference marks from real MIMIC-CXR data and real
# VLMs, not results of this book. A lift below 1 means the true report ranks below a random
# distractor more often than chance; with ties broken at random that cannot come from the tie
# convention, and the summary says where it happens and whether its interval excludes 1.

# %%
fig, ax = plt.subplots(figsize=(6.4, 4.2))
plot_lift_vs_pool(payload["table"], k=1, ax=ax, simulation=simulation)
legend_outside(ax)
show_figure(fig, "fig-audit-lift", "Lift of expected Recall@1 over chance against the pool size N per model, "
            "with the paper's headline figures as red stars.")

# %% [markdown]
# ## Ties
#
# Where a model gives a distractor exactly the score of the true report, the fair figure lies
# between two bounds. The table below lists the rows where the bounds differ (Recall@1).

# %% tags=["remove-input"]
ties = tables["ties"][tables["ties"]["k"] == 1]
if ties.empty:
    display(Markdown("No held-out query has a distractor with exactly its own report's score: the fair recall "
                     "equals both bounds everywhere."))
else:
    display(html_table(ties, {c: "sig" for c in ("ties against", "fair (random tie-break)", "ties for")},
                       caption="Recall@1 where ties make the bounds differ: every tie against the true report, "
                               "the fair random tie-break, every tie for it.", label="tab-audit-ties"))

# %% [markdown]
# ## Where the true report lands
#
# Recall@K looks at the top of the ranking only. The full-database rank of the true report
# (its expected rank under random tie-breaking) shows the whole distribution: the curve is the
# share of held-out images whose own report is within the top r of all reports
# ({numref}`fig-audit-rank`). Without any signal it would follow the dashed diagonal.
# {numref}`tab-audit-ranks` summarises the same ranks per model.
#
# ```{margin} MRR
# Mean reciprocal rank, the mean of 1/rank of the true report over the queries; see the
# {term}`glossary <MRR>`.
# ```

# %%
fig, ax = plt.subplots(figsize=(6.4, 4.0))
plot_rank_distribution(payload["rank_histograms"], ax=ax, simulation=simulation)
legend_outside(ax)
show_figure(fig, "fig-audit-rank", "Share of held-out images whose own report ranks within the top r of the "
            "full database, per model, against the diagonal of a ranking without signal.")

# %% tags=["remove-input"]
display(html_table(tables["ranks"], {"mrr": "sig", "chance MRR": "sig"},
                   caption="Full-database ranks of the true report per model: MRR against chance and the median "
                           "rank with its two tie bounds.", label="tab-audit-ranks"))

# %% tags=["nbval-check-output", "remove-cell"]
print(tables["ranks"].set_index("rung").drop(columns="model").pipe(compact).to_string())

# %% [markdown]
# ## Seen against unseen pairs
#
# The pairs above were never seen in training: they measure how well a model's image-report
# correspondence generalises. Differential privacy, however, protects the pairs a model was
# trained on. Here *seen* means seen in training by both the encoders and the projection heads:
# every model of the ladder is trained end to end on the training split. (The DP heads of
# chapter 6 retrain the heads only; what the frozen encoders learned from these pairs stays
# outside their guarantee.)
#
# A gap between the two is only memorisation if both sides are measured alike. Recall@K at pool
# size N depends on the database the N - 1 distractors come from, so comparing the training
# split's "full database" (on `default`, 8,086 pairs) with the held-out one's (10,861) would credit
# the smaller split with its smaller pool. The comparison is therefore made at **equal N and equal
# database size**: the larger split is cut by patient (whole patients, so a query keeps its own
# patient's other studies among its distractors, as in the smaller split) to the smaller one's size,
# ten times with different seeds; each cut is audited as a database of its own with the exact
# expected recall, and the smaller split is audited whole. The gap is seen minus unseen Recall@1 at
# N = 100, at N = 1,000 and at the largest common N (the whole of the smaller split). Its 95%
# interval is a patient bootstrap of both splits, with the ten cuts pooled (a resampled patient
# brings its queries of every cut). Where the interval includes zero the data cannot tell seen
# from unseen pairs.
#
# The figure shows each split's own audit against N (the training split audited whole, or cut to
# the held-out size when it is larger); the table below it is the equal-size comparison.

# %%
if payload["train"].empty:
    display(Markdown("This profile does not audit a training sample (`audit.seen` is off)."))
else:
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    plot_seen_unseen(payload["table"], k=1, ax=ax, simulation=simulation)
    legend_outside(ax, "below", fontsize=7, ncol=3)
    show_figure(fig, "fig-audit-seen-unseen", "Expected Recall@1 against the pool size N for training (seen) and "
                "held-out (unseen) pairs, per model.")

# %% tags=["remove-input"]
if not tables["gap"].empty:
    gap = tables["gap"][tables["gap"]["k"] == 1]
    display(html_table(gap, {c: "sig" for c in ("recall_train", "recall_test", "gap", "gap_ci_low", "gap_ci_high")},
                       caption="Seen minus unseen Recall@1 at equal N and equal database size "
                               "(patient-bootstrap 95% CI; n_train, n_test: pairs per database).",
                       label="tab-audit-gap"))

# %% tags=["remove-input"]
if not tables["gap"].empty:
    display(Markdown("\n".join(f"- {line}" for line in gap_findings(payload))))

# %% tags=["nbval-check-output", "remove-cell"]
if not tables["gap"].empty:
    print(gap.set_index(["rung", "N"])[["recall_train", "recall_test", "gap", "gap_ci_low", "gap_ci_high", "verdict"]]
          .pipe(compact).to_string())

# %% [markdown]
# ## What makes a study re-linkable
#
# One R@1 hides which studies carry the risk. Each held-out query's expected Recall@1 at a
# reference pool size (N = 100 where the database allows, else the full database) is related to
# properties of its study: whether the report names a device, uses a laterality word, gives a
# measurement, compares with a prior study, its length, the number of positive findings and
# whether the view is AP. One extractor derives the text properties from the report text alike
# for real and synthetic reports (it never reads the generator's records); only the derived
# properties and their effects are shown, never text. First, how well the extractor agrees with
# what the synthetic generator recorded:

# %% tags=["remove-input"]
if tables["validation"].empty:
    display(Markdown("This cohort carries no ground truth for the properties (real cohorts do not)."))
else:
    display(html_table(tables["validation"], {c: "sig" for c in ("precision", "recall", "prevalence_true",
                                                                 "prevalence_extracted")},
                       caption="The text-property extractor against the synthetic generator's records: precision, "
                               "recall and prevalence per property.", label="tab-audit-extractor"))

# %% [markdown]
# **The model.** The outcome is bounded (0 to 1) and mostly near zero, so a straight line fits it
# badly and can predict below 0. It is modelled by a *fractional logit* (a binomial GLM with logit
# link on the fraction, statsmodels): an effect is an **odds ratio**, the factor by which the odds
# of the expected Recall@1 change per unit of the property (above 1: more re-linkable). The
# intervals are 95% Wald intervals with standard errors clustered by patient (studies of one
# patient are not independent). It is fitted in two forms:
#
# - **alone**: one property at a time, its whole association with re-linkage;
# - **adjusted**: all properties together **except report length**. Length is not a confounder of
#   the text properties but the way they act: naming a device, a side or a measurement makes a report
#   longer and more specific. Holding length fixed would compare a report that names a device with
#   one of the same length that spends those words on something else, and so can make a device look
#   protective. Length therefore gets its own row, alone.
#
# **A check against the generator.** The synthetic generator writes a device, a side or a
# measurement into a report only when the study carries it (and the image shows it), so those
# reports have fewer look-alikes: with the generator's own records in place of the extracted
# properties, their odds ratios must come out above 1. The figure and {numref}`tab-audit-risk`
# show the fitted effects; the table after it does that check.

# %%
effects = risk_plot_frame(payload["risk"])
if effects["effect"].notna().any():
    fig, ax = plt.subplots(figsize=(7.0, 3.8))
    plot_risk_factors(effects, ax=ax, simulation=simulation,
                      xlabel="average change of expected Recall@1 per unit (adjusted model; length: alone)")
    legend_outside(ax, "below", ncol=2)
    show_figure(fig, "fig-audit-risk", "Average change of expected Recall@1 per unit of each study property, most "
                "specialised model, with patient-clustered 95% intervals.")

# %% tags=["remove-input"]
display(html_table(tables["risk"], {c: "sig" for c in tables["risk"].columns if c != "property"},
                   caption="Odds ratios of expected Recall@1 per study property, most specialised model (95% CIs "
                           "clustered by patient).", label="tab-audit-risk"))

# %% tags=["remove-input"]
if not tables["risk_check"].empty:
    display(html_table(tables["risk_check"], {c: "sig" for c in tables["risk_check"].columns if "OR" in c},
                       caption="The model against the generator: odds ratios alone, extracted properties against "
                               "the generator's records (95% CIs).", label="tab-audit-risk-check"))

# %% tags=["remove-input"]
display(Markdown("\n".join(f"- {line}" for line in risk_findings(payload))))

# %% tags=["nbval-check-output", "remove-cell"]
print(tables["risk"].set_index("property").pipe(compact).to_string())
if not tables["risk_check"].empty:
    print(tables["risk_check"].set_index("property").pipe(compact).to_string())

# %% [markdown]
# ## Summary

# %% tags=["remove-input"]
display(Markdown("\n".join(f"- {line}" for line in audit_findings(payload))))
