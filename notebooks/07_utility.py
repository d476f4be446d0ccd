# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # 7. Utility of the mitigated heads
#
# **Overview.** A mitigation is only useful if the model still does its job. This chapter
# measures the utility of the pretrained heads, the DP heads of chapter 6 and the three
# controls on the internal cohort's held-out split, two ways: the image-side linear probe the
# paper reports, and cross-modal utility (zero-shot label AUROC from text prompts through both
# heads, and label-level image-to-report retrieval).
#
# **The question.** What does DP fine-tuning of the heads cost in utility, and which measure of
# utility can tell? The DP heads here are chapter 6's selected setting (or its reference point when
# no setting meets the rule), applied to every model with one noise seed; chapter 6's frontier
# ({numref}`fig-dp-frontier`) gives the spread over seeds.
#
# **Whom the guarantee covers.** The DP heads are (eps, delta)-differentially private with respect
# to the private training set, the internal cohort's train split; the box at the top of the page
# states the unit of privacy for this profile and what the guarantee leaves out (the frozen
# encoders, and every patient outside that split). The held-out patients on whom this chapter
# measures utility are not in the private set: their numbers make no privacy claim, they measure
# what the guarantee costs.
#
# ```{margin} eps
# The privacy budget of (eps, delta)-differential privacy: how much one unit of the private
# training set can change the distribution of the released heads; see the {term}`glossary <eps>`.
# ```
#
# **The method.**
#
# - *Linear probe.* One logistic regression per CheXpert label on the standardised, L2-normalised
#   image embeddings; fit on the train split, scored on the held-out test split (patients never
#   cross splits). Missing labels (NaN, not mentioned) count as negative; uncertain (-1) labels
#   are left out of that label's rows (U-Ignore). A label without both classes on either side is
#   left out of the macro mean.
# - *Zero-shot.* For each label, cos(image, "finding") - cos(image, "no finding") through both
#   heads, AUROC over the images labelled 1 or 0.
# - *Retrieval.* For each held-out image the 10 most similar reports among the other held-out
#   reports (its own report removed, so this is label semantics, not re-linkage); relevant when
#   the positive-label sets are equal.
#
# **Why the linear probe cannot see the damage.** The probe reads the image embedding
# normalize(W x). Perturbing the head W (by DP noise or otherwise) changes the embedding by
# roughly an invertible linear map of what the frozen encoder computed, and a linear probe fits
# its own weights on top: it re-learns around the perturbation (exactly so for an invertible
# linear map without the normalisation; `tests/test_utility_probe.py` checks this). A linear
# probe on a linear head's output is therefore nearly invariant to perturbing that head, even to
# re-initialising it. What the heads are for is aligning images with text; that is what the
# perturbation breaks, and what re-linkage exploits. Cross-modal utility is the utility at stake.

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
from relink_lib.cohorts.stage import cohort_label
from relink_lib.dp.factorial_stage import get_factorial
from relink_lib.dp.summary import per_label_probe, setting_label, utility_findings, utility_payload, utility_table
from relink_lib.plots.dp import plot_utility_by_variant
from relink_lib.display import provenance_banner
from relink_lib.floats import show_figure
from relink_lib.guarantee import guarantee_box
from relink_lib.results import write_results
from relink_lib.tables import html_table

# %% tags=["remove-input"]
chapter = mitigation_chapter(params)
cohort, rungs, ms, simulation = chapter.cohort, chapter.rungs, chapter.mitigations, chapter.simulation
display(provenance_banner(params, cohort_label(cohort)))
display(HTML(guarantee_box(params)))
what = "a **simulation** on the synthetic cohort" if simulation else "real data"
table = utility_table(ms)
factorial = get_factorial(params)  # chapter 6's, cached: the confirmation cohort's utility
write_results(params, "utility", utility_payload(ms, factorial), cohort=cohort_label(cohort),
              model=[r.name for r in rungs], wall_time_s=chapter.wall_time_s())
display(Markdown(f"Profile `{params['profile']}`, cohort `{cohort_label(cohort)}` ({what}); held-out test split; "
                 f"DP heads: {setting_label(ms[-1].setting)} (chapter 6's selection)."))

# %% [markdown]
# ## The utility table
#
# {numref}`tab-utility-variants` gives the macro AUROC of the linear probe and of zero-shot
# classification, and label-level retrieval precision@10 (with its chance level), per model and
# variant; {numref}`fig-utility-variants` draws the first three. For reference, the paper reports
# a linear-probe macro AUROC of 79.63% before and 79.43% after DP (the paper's numbers, on
# MIMIC-CXR, not ours).

# %% tags=["remove-input"]
utility = table.drop(columns=["rung"])
display(html_table(utility, {c: "sig3" for c in utility.columns if c not in ("model", "variant")},
                   caption="Macro AUROC of the linear probe and of zero-shot classification, and label-level "
                           "retrieval precision@10 with its chance level, per model and variant (held-out split).",
                   label="tab-utility-variants"))

# %% tags=["nbval-check-output", "remove-cell"]
print(f"profile {params['profile']}, simulation={simulation}")
print(table.drop(columns=["rung"]).round(3).to_string(index=False))

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
plot_utility_by_variant(table, "probe_macro_auroc", "linear-probe macro AUROC", ax=axes[0], simulation=simulation)
plot_utility_by_variant(table, "zero_shot_macro_auroc", "zero-shot macro AUROC", ax=axes[1], simulation=simulation)
plot_utility_by_variant(table, "retrieval_precision@10", "label-level retrieval precision@10", ax=axes[2],
                        simulation=simulation)
for ax in axes:
    ax.set_ylim(0, 1)
plt.tight_layout()
show_figure(fig, "fig-utility-variants", "Linear-probe macro AUROC, zero-shot macro AUROC and label-level retrieval "
            "precision@10 per model and variant of the heads, on the held-out split.")

# %% [markdown]
# ## Per label
#
# {numref}`tab-utility-per-label` gives the linear-probe and zero-shot AUROC per label for the
# most specialised model (n/a: the label has no positive or no negative example on one side of
# the split).

# %% tags=["remove-input"]
pl = per_label_probe(ms)
pl = pl.loc[:, pl.columns.get_level_values("variant").isin(["pretrained", "dp", "output_perturbation"])]
pl = pl.set_axis([" ".join(c) for c in pl.columns], axis=1)
display(html_table(pl, {c: "sig3" for c in pl.columns}, index=True, label="tab-utility-per-label",
                   caption=f"Linear-probe and zero-shot AUROC per label of {ms[-1].rung_name}, pretrained heads, "
                           "DP heads and output perturbation (held-out split)."))

# %% tags=["nbval-check-output", "remove-cell"]
print(f"profile {params['profile']}, simulation={simulation}, model {ms[-1].rung_name}")
per_label = per_label_probe(ms)
print(per_label.loc[:, per_label.columns.get_level_values("variant").isin(["pretrained", "dp", "output_perturbation"])]
      .round(3).to_string())

# %% [markdown]
# ## Summary
#
# The sentences below are generated from this chapter's numbers (this profile's; a simulation when
# the cohort is synthetic). The first, the headline, is measured on chapter 6's confirmation cohort
# (fresh patients, ten noise seeds, a paired interval); the rest read
# {numref}`tab-utility-variants` (the held-out split, one seed per rung). The probe re-learns a
# linear map on top of whatever linear head it is given, so read the cross-modal columns for the
# cost that matters. Results: `results/<profile>/utility.json`.
#
# ```{margin} Simulation
# Any number computed on the embedded synthetic cohort: it shows the method and the mechanisms, not
# the size of the risk on real patients; see the {term}`glossary <simulation>`.
# ```

# %% tags=["remove-input"]
display(Markdown("\n\n".join(f"- {s}" for s in utility_findings(ms, simulation, factorial))))
