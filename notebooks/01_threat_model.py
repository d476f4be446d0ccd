# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # 1. Threat model
#
# **Overview.** A chest radiograph and its radiology report are often kept apart on purpose:
# a hospital shares de-identified images for research while the reports, which carry free text
# about the patient, stay behind access control. A vision-language model (VLM) trained on
# image-report pairs learns one embedding space for both. This chapter states who holds what,
# what the adversary can do with such a model, and what "re-linked at 15 times chance" means,
# so that every later number has a yardstick.
#
# **The question.** Given a de-identified image and a pool of candidate reports, how often
# does ranking the reports by cosine similarity to the image put the image's own report at the
# top, compared with guessing?

# %% tags=["parameters"]
profile = "default"
overrides = {}

# %% tags=["remove-cell"]
import time

from IPython.display import Markdown, display

from relink_lib.floats import show_figure
from relink_lib.plots.common import set_style
from relink_lib.plots.threat import plot_chance_vs_pool
from relink_lib.profiles import get_profile
from relink_lib.results import write_results
from relink_lib.tables import html_table
from relink_lib.threat_model import chance_table, threat_model_payload, threat_model_table

params = get_profile(profile, overrides)
started = time.perf_counter()
set_style()

# %% [markdown]
# ## Who holds what
#
# ```{margin} Recall@K
# The share of images whose own report ranks among the top *K* of a pool of *N*; see the {term}`glossary <Recall@K>`.
# ```
#
# | party | holds | does not hold |
# |---|---|---|
# | the image custodian (e.g. an open imaging archive) | de-identified radiographs | the reports |
# | the report custodian (e.g. a hospital's report system) | radiology reports, behind access control | the link between a shared image and its report |
# | the model publisher | a VLM trained on image-report pairs, with its weights | |
# | **the adversary** | the VLM's weights, one de-identified image, a pool of *N* candidate reports | which report belongs to the image |
#
# The adversary's pool can be a leaked or purchased set of reports, a second institution's
# archive, or reports obtained through a narrower access grant. The true report is in the pool
# together with *N* - 1 distractors. The adversary embeds the image and every report with the
# VLM and ranks the reports by cosine similarity to the image. Re-linkage succeeds at depth *K*
# when the true report is among the top *K*: that rate, over many images, is **Recall@K**.
# Linking a report to an image exposes everything the report says (history, findings, often
# dates and devices) about the person in the image; linking several images of one patient
# also links their studies.
#
# ## Chance, and "x chance"
#
# A ranking that knows nothing puts the true report at a uniformly random position among the
# *N* candidates, so it lands in the top *K* with probability
#
# $$ \text{chance}(K, N) = \frac{\min(K, N)}{N}. $$ (eq-chance)
#
# ```{margin} Lift
# Recall@K divided by chance; see the {term}`glossary <lift>`.
# ```
#
# We report re-linkage as **lift over chance**, Recall@K divided by chance(K, N) of {eq}`eq-chance`: "50x chance"
# at N = 10,000 and K = 1 means a Recall@1 of 50/10,000 = 0.5%. Lift makes pools of different
# sizes comparable; the absolute recall says how many patients an adversary actually re-links.
#
# A lift **below 1** means the model ranks the true report lower than a blind guess would, on
# average. It happens when the model's cue is shared by the distractors (a model that only
# recognises the pathology, facing distractors with the same pathology) while the detail that
# would separate them is missing, and, on a small held-out split, by sampling noise around 1: read
# a lift with its interval. For pathology-matched pools (chapter 5) the yardstick is the
# **effective chance** over the pool a query actually gets, which is far smaller than *N*.
#
# The audit of chapter 4 does not draw one pool per image and count hits: it computes each image's
# Recall@K exactly as an expectation over all uniformly random pools of *N* (the true report plus
# *N* - 1 distractors drawn without replacement) and over random tie-breaks, so a model that
# scores every report the same gets exactly chance(K, N).
#
# {numref}`tab-threat-chance` gives chance for the pool sizes used throughout the book.

# %%
table = chance_table(ks=(1, 5, 10), pool_sizes=(10, 100, 1000, 10000))
display(html_table(table, {c: "sig" for c in table.columns}, index=True, label="tab-threat-chance",
                   caption="Chance Recall@K, min(K, N)/N, for K = 1, 5, 10 and pool sizes N from 10 to 10,000"))

# %% tags=["nbval-check-output", "remove-cell"]
print(table.map(lambda v: f"{v:.4f}").to_string())

# %% [markdown]
# {numref}`fig-threat-chance` draws chance Recall@K against the pool size on log axes, with the re-linkage
# rates that the seed paper reports for its strongest model at K = 1 (15x chance at N = 100,
# 50x chance at N = 10,000; Tayebi Arasteh et al. {cite}`tayebiarasteh2026relink`). These marks are
# **the paper's figures**, not results of this book.

# %%
ax = plot_chance_vs_pool(ks=(1, 5, 10))
ax.set_title("Chance re-linkage falls as 1/N; the paper's model stays far above it")
show_figure(ax.figure, "fig-threat-chance",
            "Chance Recall@K against the pool size N (log axes), with the paper's Recall@1 of its strongest model at N = 100 and N = 10,000.")

# %% [markdown]
# ## How hard is the pool? Random and pathology-matched distractors
#
# With random distractors, a model that only recognises the pathology (say, a left pleural
# effusion) already beats chance, because most distractors describe other findings. That is
# not yet re-identification of a *person*. Chapter 5 therefore also draws distractors only
# from reports with the same 14-label CheXpert vector as the true report: whatever signal
# remains there comes from instance detail (a device and where its tip lies, a measured
# nodule, laterality, old fractures, sternotomy wires) that both the image and the report carry.
#
# ## Three threat models for reconstruction
#
# Chapters 6-9 mitigate re-linkage with differentially private (DP) training of the projection
# heads. How much privacy a budget epsilon buys depends on what the adversary is assumed to
# know. Ziller et al. {cite}`ziller2024reconciling` contrast three threat models for data
# reconstruction from a trained model, and chapter 9 computes the risk under each:
#
# - **worst case**: the adversary knows all training data but the target and only has to
#   *match* the observed training run to one of a set of candidates that contains the target;
#   the risk is bounded by reconstruction robustness (ReRo) from the DP guarantee itself;
# - **relaxed**: the same insight into training, but the adversary must *reconstruct* the
#   target, not pick it from a list;
# - **realistic**: an actual attack with practical knowledge, whose success is measured. The attack
#   of chapter 9 has *gradient access*: it sees one pair's isolated noisy update during training,
#   which makes it stronger than Ziller et al.'s realistic adversary (who attacks the trained model).
#
# The re-linkage adversary of this book needs no insight into training at all: the released
# weights and a pool of reports suffice. It sits outside the three reconstruction models, and
# closest to the worst case in one respect only: it matches against a pool that contains the
# truth. Chapters 4-6 measure it *passive*, using the released heads as they are. Because the
# mitigation releases the encoders unchanged, chapter 11 also measures it *adaptive*: holding a
# few public image-report pairs as well, it re-fits the heads (or a closed-form map between the two
# feature spaces) and never uses the DP heads at all. {numref}`tab-threat-adversaries` sets out
# what each of these adversaries holds.

# %%
display(html_table(threat_model_table(), index=True, label="tab-threat-adversaries",
                   caption="What each adversary holds (Ziller et al.'s three, chapter 9's attack and this book's re-linkers)"))

# %% [markdown]
# ## What this book measures, and what it does not
#
# Re-linkage is measured as retrieval on held-out pairs: a model that re-links unseen patients
# shows that the *shared embedding space* is the channel, not memorisation alone. Every number
# in chapters 2-9 comes from the profile named at the top of its chapter; on the embedded
# synthetic cohort the numbers are a **simulation**: they show the method and the mechanisms,
# not the size of the risk on real data (chapter 10 runs the same code on MIMIC-CXR and
# CheXpert Plus).

# %%
path = write_results(params, "threat_model", threat_model_payload(), cohort="none (analytic)", model="none",
                     wall_time_s=time.perf_counter() - started)
display(Markdown(f"Results of this chapter (profile `{params['profile']}`): `results/{params['profile']}/{path.name}`"))

# %% [markdown]
# ## Summary
#
# - The adversary holds a VLM, one de-identified image and a pool of *N* candidate reports, and
#   ranks the reports by cosine similarity.
# - Chance Recall@K is min(K, N)/N; we report recall and its lift over chance, for N from 10
#   to 10,000 and the full database.
# - Pathology-matched pools separate recognising a disease from recognising a person.
# - DP budgets are judged against three reconstruction threat models (worst case, relaxed,
#   realistic); the re-linker needs less insight than any of them.
# - The re-linker is measured passive (chapters 4-6) and adaptive, with a few public pairs
#   (chapter 11).
