# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # 2. Cohorts: paired radiographs and reports
#
# Every later chapter asks how far a radiograph can be re-linked to its own report. That needs
# a cohort of image-report pairs with patients, studies, labels and patient-level splits. The
# credentialed cohorts of the paper (MIMIC-CXR-JPG as the internal site, CheXpert Plus as the
# external one) cannot ship with this book, so every profile except `paper` runs on an
# **embedded synthetic cohort**: a procedurally generated set of chest radiographs and
# radiology reports that is written by `relink_lib` from a seed. This chapter shows what that
# simulation looks like, how close its labels come to the published MIMIC-CXR label
# frequencies, and what it does not capture.
#
# ```{margin} Simulation
# Any number computed on the synthetic cohort: it shows the method, not the risk on real patients; see the {term}`glossary <simulation>`.
# ```
#
# **The question.** Does the simulated cohort have the structure that makes re-linkage possible
# and hard at the same time: realistic label prevalence and co-occurrence (so that many reports
# look alike), patients with several studies, and instance detail (laterality, sizes,
# measurements, devices) that both the image and the report carry?
#
# **The method.** `relink_lib.cohorts.stage.get_cohort` builds each site's cohort once per
# profile and caches it. For the synthetic source it generates the cohort, exports it to the
# official layout of the real dataset it stands in for (MIMIC-CXR-JPG for the internal site,
# CheXpert Plus for the external one) and loads it back through the same loaders that read the
# real data, so the real loaders run on every build. The generator draws patients with stable
# anatomy and chronic findings (sternotomy wires, ports, pacemakers, scoliosis) over a
# long-tailed number of studies fitted to MIMIC-CXR's published counts (below); per study it thresholds a latent factor model (cardiac, infection, intensive care,
# trauma, mass, plus a patient effect) at MIMIC-CXR's published label frequencies; it renders
# a radiograph and writes a report with FINDINGS and IMPRESSION from varied templates, whose
# labels are read off the written sentences (1 positive, -1 hedged, 0 negated, blank not
# mentioned), as a rule-based labeler would. Details are in `docs/cohorts.md`.

# %% tags=["parameters"]
profile = "default"
overrides = {}

# %% tags=["remove-cell"]
import time
import numpy as np
import pandas as pd
from IPython.display import HTML, Markdown, display

from relink_lib.cohorts.phi import display_frame, show_pairs
from relink_lib.cohorts.stage import cohort_label, get_cohort
from relink_lib.cohorts.stats import cooccurrence, label_prevalence, studies_per_patient
from relink_lib.cohorts.summary import (STUDIES_PER_PATIENT_FORMATS, cohorts_findings, cohorts_payload, cooccurrence_pairs,
    mention_rates, prevalence_table, split_table, studies_per_patient_notes, studies_per_patient_table)
from relink_lib.cohorts.synthetic.prevalence import CHEXPERT_PREVALENCE, MIMIC_CXR_PREVALENCE
from relink_lib.calibration import CH2_CALIBRATION, calibration_box, calibration_record
from relink_lib.display import provenance_banner
from relink_lib.floats import show_figure
from relink_lib.labels import CHEXPERT_LABELS
from relink_lib.plots.common import set_style
from relink_lib.plots.cohort import plot_cooccurrence, plot_prevalence_vs_reference, plot_studies_per_patient_vs_mimic
from relink_lib.profiles import get_profile
from relink_lib.results import write_results
from relink_lib.tables import html_table

# %% tags=["remove-cell"]
params = get_profile(profile, overrides)
set_style()

# %% tags=["remove-input"]
t0 = time.perf_counter()
internal = get_cohort(params, "internal")
external = get_cohort(params, "external")
simulation = params.cohort.simulation
kind = "simulation" if simulation else "real data"
payload = cohorts_payload(internal, external, {"internal": cohort_label(internal), "external": cohort_label(external)})
display(provenance_banner(params, f"{cohort_label(internal)}; {cohort_label(external)}"))
display(HTML(calibration_box(calibration_record(None, params), pending=True, where=CH2_CALIBRATION)))

# %% [markdown]
# ## Size and splits
#
# Splits are by patient: no patient has studies in two splits (the `Cohort` type asserts it on
# every load). The internal site has train, validation and test splits; the external site, like
# CheXpert Plus, has train and validation only. Later chapters train on the internal training
# split and evaluate on the internal test split and on the whole external site.
# {numref}`tab-cohorts-splits` counts the pairs and patients in each split.

# %%
sizes = split_table(internal, external)
display(html_table(sizes, index=True, label="tab-cohorts-splits", caption=f"Pairs and patients per split (profile {profile}, {kind})"))

# %% tags=["nbval-check-output", "remove-cell"]
print(f"pairs and patients per split (profile {profile}, {kind}):")
print(sizes.to_string())

# %% [markdown]
# ## Example pairs from both sites
#
# {numref}`fig-cohorts-pairs-internal` and {numref}`fig-cohorts-pairs-external` show six pairs of
# each site. Each panel shows a radiograph with its report (FINDINGS then IMPRESSION) and the labels read
# off the report (`?` marks an uncertain label). The internal site renders and writes like a
# MIMIC-CXR-style site; the external site has another film response, another burned-in marker,
# another report style (numbered impressions, other vocabulary) and another prevalence. For a
# credentialed cohort the library shows images and labels only and withholds the text.

# %%
rng = np.random.default_rng(params.seed)
rows = rng.choice(len(internal), size=min(6, len(internal)), replace=False)
fig = show_pairs(internal, rows, ncols=3)
fig.suptitle(f"internal site, {cohort_label(internal)}, profile {profile}", fontsize=9, y=1.02)
show_figure(fig, "fig-cohorts-pairs-internal",
            "Image-report pairs of the internal site: each radiograph beside its report and the labels read off the report.")

# %%
rows = rng.choice(len(external), size=min(6, len(external)), replace=False)
fig = show_pairs(external, rows, ncols=3)
fig.suptitle(f"external site, {cohort_label(external)}, profile {profile}", fontsize=9, y=1.02)
show_figure(fig, "fig-cohorts-pairs-external",
            "Image-report pairs of the external site, with its own film response, marker, report style and prevalence.")

# %% [markdown]
# ## Label prevalence against MIMIC-CXR's published prevalence
#
# In {numref}`fig-cohorts-prevalence` the bars are the fraction of pairs whose label is positive
# in each simulated site, and the markers the published fractions of MIMIC-CXR-JPG (over all
# 227,827 studies) and of the CheXpert training set, which the internal and external generators
# target; {numref}`tab-cohorts-prevalence` gives the numbers. The label values come from the
# written reports, so an omitted finding is blank even when the image shows it.

# %%
prev = {"internal": label_prevalence(internal), "external": label_prevalence(external)}
ax = plot_prevalence_vs_reference({f"{k} ({kind})": v for k, v in prev.items()},
                                  {"MIMIC-CXR": MIMIC_CXR_PREVALENCE, "CheXpert": CHEXPERT_PREVALENCE}, simulation=simulation)
show_figure(ax.figure, "fig-cohorts-prevalence",
            "Positive fraction of each CheXpert label in both sites beside the published MIMIC-CXR and CheXpert fractions.")

# %%
table = prevalence_table(internal, external)
display(html_table(table, {c: "percent" for c in table.columns}, index=True, label="tab-cohorts-prevalence",
                   caption=f"Label fractions (profile {profile}, {kind}); the MIMIC-CXR and CheXpert columns are the published references"))

# %% tags=["nbval-check-output", "remove-cell"]
print(f"label fractions (profile {profile}, {kind}; published columns are the references):")
print(table.round(3).to_string())

# %% [markdown]
# ## Label co-occurrence
#
# In {numref}`fig-cohorts-cooccurrence` the cell in row A, column B is the share of pairs with B
# positive among the pairs with A positive; {numref}`tab-cohorts-cooccurrence` picks out the main
# pairs beside the base rate of B. The simulation
# carries the co-occurrence of the real data through shared latent factors: pleural effusion
# with atelectasis, edema and cardiomegaly; consolidation with pneumonia and lung opacity;
# support devices with the intensive-care findings. No Finding is exclusive of every positive
# or uncertain finding (support devices excepted, as in the CheXpert labeler).

# %%
cond = cooccurrence(internal)
ax = plot_cooccurrence(cond, title=f"internal site, profile {profile} ({kind})", simulation=simulation)
show_figure(ax.figure, "fig-cohorts-cooccurrence",
            "Label co-occurrence in the internal site: the share of pairs with label B positive among those with label A positive.")

# %%
display(html_table(cooccurrence_pairs(internal), {"conditional": "sig2", "base_rate": "sig2"}, label="tab-cohorts-cooccurrence",
                   caption=f"P(B positive | A positive) for the main label pairs beside the base rate of B, internal site (profile {profile}, {kind})"))

# %% tags=["nbval-check-output", "remove-cell"]
print(f"P(B positive | A positive), internal site (profile {profile}, {kind}):")
for r in cooccurrence_pairs(internal).itertuples():
    print(f"  {r.A} -> {r.B}: {r.conditional:.2f}   (base rate of {r.B}: {r.base_rate:.2f})")

# %% [markdown]
# ## Studies per patient
#
# Real patients are imaged a very unequal number of times: most once or twice, some dozens of
# times. The generator draws each patient's number of studies from a long-tailed law fitted to
# MIMIC-CXR's published counts; where it comes from, what is fitted and what is assumed
# (generated from `relink_lib.cohorts.synthetic.patients`):

# %%
display(Markdown("\n".join(f"- {line}" for line in studies_per_patient_notes())))

# %% [markdown]
# Patient-level splits (cut at the profile's fractions of the pairs), the patient bootstrap of
# the audit and the per-patient figures of later chapters all run on these patients. A
# patient's anatomy (heart size, lung shape, rib pattern, rotation habit) and chronic findings
# (devices, nodule, pleural plaque, scoliosis) stay the same across their studies, and reports
# compare with the prior study: a patient's other reports are the hardest distractors of a
# re-linkage query, and a patient with many studies brings many of them.
#
# {numref}`tab-cohorts-studies` sets each simulated site beside MIMIC-CXR's published summary and
# the fitted law (the law's own mean, median, shares and percentiles; its max is the expected
# largest count among MIMIC-CXR's patients); n/a marks a figure MIMIC-CXR does not publish.
# {numref}`fig-cohorts-studies` shows the share of patients by number of studies on a log scale,
# with the law as a line.

# %%
spp_table = studies_per_patient_table({f"{k} ({kind})": c for k, c in (("internal", internal), ("external", external))})
display(html_table(spp_table, STUDIES_PER_PATIENT_FORMATS, index=True, label="tab-cohorts-studies",
                   caption=f"Studies per patient (profile {profile}, {kind}) beside MIMIC-CXR's published counts and the "
                   "generator's fitted law"))

# %%
spp = {"internal": studies_per_patient(internal), "external": studies_per_patient(external)}
ax = plot_studies_per_patient_vs_mimic({f"{k} ({kind})": v for k, v in spp.items()}, simulation=simulation)
show_figure(ax.figure, "fig-cohorts-studies",
            "Share of patients by number of studies (log scale) in both sites, with the fitted law as a line.")

# %% tags=["nbval-check-output", "remove-cell"]
print(f"studies per patient (profile {profile}, {kind}; the first two rows are the published counts and the fitted law):")
print(spp_table.round(3).to_string(na_rep="n/a"))

# %% [markdown]
# ## Instance detail in the reports
#
# Re-linkage rests on details that an image and its own report share and other reports do not.
# {numref}`tab-cohorts-detail` gives the share of reports that mention each kind of detail
# (chapter 5 breaks re-linkage down by these flags); the profile's `report_detail` knob scales how
# often a detail is kept.

# %%
rates = pd.DataFrame({f"{name} ({kind})": mention_rates(c) for name, c in (("internal", internal), ("external", external))})
rates = rates.rename_axis("flag")
if len(rates):
    display(html_table(rates, {c: "percent" for c in rates.columns}, index=True, label="tab-cohorts-detail",
                       caption=f"Share of reports that mention each kind of instance detail (profile {profile}, {kind})"))
else:
    display(Markdown(f"Profile {profile}: instance-detail flags exist for synthetic cohorts only."))

# %% tags=["nbval-check-output", "remove-cell"]
if len(mention_rates(internal)):
    for name, cohort in (("internal", internal), ("external", external)):
        print(f"{name} (profile {profile}, {kind}): " + ", ".join(f"{k} {v:.3f}" for k, v in mention_rates(cohort).items()))
else:
    print(f"profile {profile}: instance-detail flags exist for synthetic cohorts only")

# %% [markdown]
# ## What the loaders left out
#
# Loaders keep one frontal image per study (PA over AP), drop header sections (EXAMINATION,
# INDICATION, COMPARISON, TECHNIQUE) from the text and leave out, with a count, studies without
# a report, a frontal image or an image file. For the synthetic cohorts these counts are zero:
# the export writes every file, so the round trip through the official layouts is exact.

# %% tags=["nbval-check-output"]
for name in ("internal", "external"):
    print(f"{name} (profile {profile}): excluded {payload[name]['excluded']}")

# %% [markdown]
# {numref}`tab-cohorts-examples` shows a few pairs through the display helper (text columns are
# dropped for a credentialed cohort).

# %%
few = display_frame(internal, range(3), columns=["patient_id", "study_id", "split", "view", "text", *CHEXPERT_LABELS[:4]])
display(html_table(few, label="tab-cohorts-examples", caption=f"Three pairs of the internal site (profile {profile}, {kind})",
                   key_columns=["patient_id", "study_id"]))

# %% [markdown]
# ## What the simulation captures, and what it does not
#
# **Captured.** Patients with stable anatomy and chronic findings across a long-tailed number
# of studies with MIMIC-CXR's published mean; the 14
# CheXpert labels at MIMIC-CXR's published positive fractions (CheXpert's for the external
# site), with uncertain and negated values and the main co-occurrences; instance detail that
# both modalities carry (laterality and size of effusions, lobe of an opacity, nodule position
# and size in mm, device type and tip position in cm, view, rotation, low lung volumes,
# exposure); reports with paraphrase, negation, hedging, omitted details, measurement noise and
# comparisons to the prior study; a second site with another renderer, report style and
# prevalence; the official file layouts of both real datasets.
#
# **Not captured.** Real anatomy and pathology appearance: the renderer draws smooth analytic
# shapes, so a model trained here learns a much easier visual task than on radiographs; the
# vocabulary of a few hundred templates, far narrower than free-text reports written by many
# radiologists; lateral views, multiple images per study and image-level artefacts beyond noise
# and a burned-in marker; rare findings and their long tail; demographics and their links to
# findings; temporal effects beyond the previous study; the true shape of MIMIC-CXR's
# studies-per-patient distribution (only its mean is published, the tail's shape is assumed). Numbers from this cohort show how the
# audit and the mitigation behave, not how large re-linkage is on real data: every number in
# this book that comes from it is a **simulation**.

# %%
path = write_results(params, "cohorts", payload, cohort=f"{cohort_label(internal)}; {cohort_label(external)}", model="none",
                     wall_time_s=time.perf_counter() - t0)

# %% [markdown]
# ## Summary
#
# Generated from this run's numbers (`relink_lib.cohorts.summary`). The round trip through the
# official MIMIC-CXR-JPG and CheXpert Plus layouts is exact, so the same code path loads the
# real cohorts on the `paper` profile (chapter 10).

# %%
display(Markdown("\n".join(f"- {line}" for line in cohorts_findings(payload, simulation))))
