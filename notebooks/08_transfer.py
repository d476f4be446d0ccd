# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # 8. Transfer to an external cohort
#
# **Overview.** The DP heads of chapter 6 were fine-tuned on the internal cohort. A hospital that
# adopts them would apply them, unchanged, to its own images and reports. This chapter applies
# every variant's heads to the external cohort, a second site with another image style, report
# style and label prevalence, exported to the CheXpert Plus layout and read back through the
# CheXpert Plus loader, and measures re-linkage and utility there.
#
# **The question.** Does the reduction in re-linkage carry over to a site the heads never saw,
# and at what cost in utility there? The DP heads are chapter 6's selected setting (or its
# reference point when no setting meets the rule), one noise seed per model; their cost on the
# internal cohort is chapter 7's {numref}`tab-utility-variants`.
#
# **The method.** The same frozen encoders give pre-projection features of every external pair;
# each variant's heads embed them. Re-linkage is measured over all external pairs (none was used
# in training), Recall@K at every N with patient-bootstrap intervals. The linear probe is fit on
# the external train split and scored on its other patients; zero-shot AUROC and retrieval
# precision use those held-out external pairs.
#
# ```{margin} Recall@K
# The share of query images whose own report ranks among the top K of a pool of N reports; see the
# {term}`glossary <Recall@K>`.
# ```
#
# **Whom the guarantee covers.** The DP heads are (eps, delta)-differentially private with respect
# to the private training set, the internal cohort's train split (the box at the top of the page
# states the unit and what is left out). The external site's patients were never in that set, so
# the guarantee says nothing about them. DP bounds what the released heads reveal about their
# training pairs; re-linking an external image to its external report uses the heads as a tool on
# data they never saw, which no guarantee on the training set limits. Whatever cut in re-linkage
# this chapter measures on the external site is therefore an empirical effect of the noisier heads,
# not a bound.
#
# ```{margin} eps
# The privacy budget of (eps, delta)-differential privacy: how much one unit of the private
# training set can change the distribution of the released heads; see the {term}`glossary <eps>`.
# ```

# %% tags=["parameters"]
profile = "default"
overrides = {}

# %% tags=["remove-cell"]
from relink_lib.profiles import get_profile

params = get_profile(profile, overrides)

# %% tags=["remove-cell"]
import matplotlib.pyplot as plt
from IPython.display import HTML, Markdown, display

from relink_lib.chapters import mitigation_chapter
from relink_lib.cohorts.stage import cohort_label, get_cohort
from relink_lib.dp.stage import transfer_rung
from relink_lib.dp.summary import setting_label, transfer_findings, transfer_payload, transfer_tables
from relink_lib.plots.dp import plot_recall_variants
from relink_lib.display import provenance_banner
from relink_lib.floats import show_figure
from relink_lib.guarantee import guarantee_box
from relink_lib.results import write_results
from relink_lib.tables import html_table

# %% tags=["remove-input"]
chapter = mitigation_chapter(params)
cohort, rungs, ms, simulation = chapter.cohort, chapter.rungs, chapter.mitigations, chapter.simulation
external = get_cohort(params, site="external")
results = {m.rung_name: transfer_rung(params, external, r, m) for r, m in zip(rungs, ms)}
display(provenance_banner(params, f"{cohort_label(cohort)}; external {cohort_label(external)}"))
display(HTML(guarantee_box(params)))
what = "a **simulation** on the synthetic external site" if simulation else "real data"
write_results(params, "transfer", transfer_payload(results, ms), cohort=cohort_label(external),
              model=[r.name for r in rungs], wall_time_s=chapter.wall_time_s())
tables = transfer_tables(results, ms)
display(Markdown(f"Profile `{params['profile']}`, external cohort `{cohort_label(external)}` ({what}), "
                 f"layout: {external.summary.get('roundtrip', 'as loaded')}; DP heads: {setting_label(ms[-1].setting)}."))

# %% [markdown]
# ## Re-linkage on the external site
#
# {numref}`fig-transfer-recall` shows Recall@1 against N for the most specialised model's heads on
# the external cohort.

# %%
m = ms[-1]
recall, util = results[m.rung_name]
fig, ax = plt.subplots(figsize=(7, 4))
plot_recall_variants(recall, k=1, ax=ax, pool="random", simulation=simulation)
ax.set_title(f"{m.rung_name} heads on the external cohort")
plt.tight_layout()
show_figure(fig, "fig-transfer-recall", "Expected Recall@1 against the pool size N on the external cohort for each "
            "variant of the most specialised model's heads, with 95% intervals and chance.")

# %% [markdown]
# {numref}`tab-transfer-recall` gives Recall@1 at the largest pool the external cohort allows,
# and the relative reduction of each variant against the pretrained heads, per model.

# %% tags=["remove-input"]
display(html_table(tables["recall"], {"N": "count", "recall@1": "sig3", "relative_reduction": "cut"},
                   caption="Recall@1 on the external cohort at its largest pool N per model and variant of the "
                           "heads, and the relative cut against the pretrained heads.", label="tab-transfer-recall"))

# %% tags=["nbval-check-output", "remove-cell"]
tables = transfer_tables(results, ms)
print(f"profile {params['profile']}, simulation={simulation}, external site")
print(tables["recall"].round(4).to_string(index=False))

# %% [markdown]
# ## Utility on the external site
#
# {numref}`tab-transfer-utility` gives the utility of each variant's heads on the held-out
# external patients: the linear probe's and zero-shot classification's macro AUROC and
# label-level retrieval precision@10 with its chance level.

# %% tags=["remove-input"]
display(html_table(tables["utility"], {c: "sig3" for c in tables["utility"].columns if c not in ("variant", "model")},
                   caption="Utility on the external cohort's held-out patients per model and variant of the heads: "
                           "macro AUROCs and retrieval precision@10 with its chance level.",
                   label="tab-transfer-utility"))

# %% tags=["nbval-check-output", "remove-cell"]
print(f"profile {params['profile']}, simulation={simulation}, external site")
print(tables["utility"].round(3).to_string(index=False))

# %% [markdown]
# ## Summary
#
# The heads travel unchanged: whatever DP removed from their image-report alignment on the
# internal site is removed on the external one too. The sentences below are generated from
# {numref}`tab-transfer-recall` and {numref}`tab-transfer-utility` (this profile's numbers; a
# simulation when the cohorts are synthetic). Results: `results/<profile>/transfer.json`.

# %% tags=["remove-input"]
display(Markdown("\n\n".join(f"- {s}" for s in transfer_findings(results, ms, simulation))))
