# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # 3. The model ladder: dual encoders of rising clinical specialization
#
# The paper audits four public chest X-ray vision-language models that differ in how much
# clinical text they were aligned to, from general-domain CLIP-style models to models trained on
# full radiology reports. Its finding is that re-linkage grows with specialization: the more of a
# report's instance detail (sides, sizes, device positions) a model learns to see in the image,
# the better an adversary holding a de-identified radiograph can pick out its report.
#
# **The question.** What are the models audited in the following chapters, and how were they
# obtained? Where no public checkpoint can be downloaded (as here), can we build a ladder of
# models whose rungs differ in the same way the public models do?
#
# **The method.** Every model enters the pipeline through one adapter,
# `relink_lib.models.load_dual_encoder(path, kind)`, that loads a checkpoint from a local
# directory, offline, and splits it into frozen backbones (image and report to *pre-projection
# features*) and two projection heads (features to the joint embedding space). The audit uses the
# normalised output of the heads; the DP chapter re-trains only the heads. By default the book
# trains its own ladder: tiny HF `CLIPModel`s, randomly initialised and trained with the
# symmetric in-batch InfoNCE loss on the training split of the synthetic internal cohort (a
# simulation), one rung per level of text:
#
# ```{margin} Simulation
# Any number computed on the synthetic cohort: it shows the method, not the risk on real patients; see the {term}`glossary <simulation>`.
# ```
#
# | rung | trained on | stands for |
# |---|---|---|
# | 0 `captions` | label-level captions built from the 14 CheXpert labels ("cardiomegaly, possible pleural effusion") | a model aligned to labels or short captions: it knows *what* is there, not *where* or *how large* |
# | 1 `impressions` | the IMPRESSION section | a model trained on report summaries: some instance detail |
# | 2 `full-reports` | FINDINGS + IMPRESSION, more capacity and more steps | a model specialised on full reports: all instance detail the report carries |
#
# Each rung is saved with `save_pretrained` together with its own tokenizer (built from its
# training text) and a `CLIPImageProcessor`, so it loads through exactly the same adapter as a
# public checkpoint.

# %% tags=["parameters"]
profile = "default"
overrides = {}

# %% tags=["remove-cell"]
import time

import numpy as np
import pandas as pd
from IPython.display import HTML, Markdown, display

from relink_lib.cohorts.stage import cohort_label, get_cohort
from relink_lib.calibration import CH3_CALIBRATION, calibration_box, calibration_record
from relink_lib.display import provenance_banner
from relink_lib.floats import show_figure
from relink_lib.models.catalog import CHECKPOINT_KINDS
from relink_lib.models.stage import get_ladder, ladder_table
from relink_lib.models.summary import ladder_findings, ladder_payload, recall_preview, zero_shot_macro
from relink_lib.plots.common import set_style
from relink_lib.plots.models import plot_ladder_training, plot_zero_shot
from relink_lib.profiles import get_profile
from relink_lib.results import write_results
from relink_lib.tables import html_table
from relink_lib.utility.zero_shot import zero_shot_by_rung

# %% tags=["remove-cell"]
params = get_profile(profile, overrides)
set_style()

# %% tags=["remove-input"]
t0 = time.perf_counter()
simulation = params.cohort.simulation
kind = "simulation" if simulation else "real data"
cohort = get_cohort(params, "internal")
t_ladder = time.perf_counter()
rungs = get_ladder(params)
t_ladder = time.perf_counter() - t_ladder
display(provenance_banner(params, cohort_label(cohort)))
display(HTML(calibration_box(calibration_record(None, params), pending=True, where=CH3_CALIBRATION)))

# %% [markdown]
# ## The rungs
#
# Sizes are transformer widths and depths of the vision tower (a ViT on the radiograph resized to
# `params["ladder"]["image_size"]` pixels) and of the text tower; the joint space is where the
# audit compares images and reports. The top rung is larger and trained longer, as specialised
# public models usually are. {numref}`tab-ladder-rungs` lists the rungs.

# %%
table = ladder_table(rungs)
display(html_table(table.drop(columns=["kind"]), {"final train loss": "sig3"}, label="tab-ladder-rungs",
                   caption=f"The ladder (profile {profile}, trained on {cohort_label(cohort)}, {kind})"))

# %% tags=["nbval-check-output", "remove-cell"]
print(f"model ladder (profile {profile}, {kind}):")
print(table.drop(columns=["kind"]).to_string(index=False))

# %% [markdown]
# ## Training curves
#
# {numref}`fig-ladder-training` shows each rung's training loss, the in-batch InfoNCE loss (the
# cross-entropy of finding the right report among the batch's reports and the right image among
# its images; its chance level is ln(batch size)). The dashed lines are the same loss on a held-out validation sample at the end
# of every epoch. Rung 0's task is easier in one sense (captions repeat, so many pairs in a batch
# share a caption), which is exactly why it can not learn instance detail: a caption does not
# say which of two effusions is larger.

# %%
ax = plot_ladder_training({f"{r.index}: {r.name}": r.history for r in rungs}, simulation=simulation)
ax.set_title(f"ladder training, profile {profile} ({kind})", fontsize=9)
show_figure(ax.figure, "fig-ladder-training",
            "InfoNCE loss of each rung during training (solid, moving average) and on a validation sample after every epoch (dashed).")

# %% [markdown]
# ## Zero-shot label AUROC per rung
#
# Does a rung see the labels at all? For each CheXpert label, the test images are scored by
# the cosine similarity of their embedding to a positive prompt ("pleural effusion") minus that
# to a negative prompt ("no pleural effusion"), and the AUROC of that score against the label is
# computed over the images labelled 1 or 0 (uncertain and unmentioned labels are left out; labels
# with no positive or no negative test image are n/a and not in the macro mean). The prompts are
# in the words of the reports, so rung 0, which was trained on exactly such phrases, is not at a
# disadvantage here: label recognition is not what separates the rungs, instance detail is.
# {numref}`fig-ladder-zero-shot` shows the AUROC per label and rung.

# %%
zs = zero_shot_by_rung(params, cohort, rungs, split="test")
ax = plot_zero_shot(zs[["rung", "label", "auroc"]], rung_order=[r.name for r in rungs], simulation=simulation)
show_figure(ax.figure, "fig-ladder-zero-shot",
            "Zero-shot AUROC of each CheXpert label per rung on the internal test split, with the macro mean in the last row.")

# %% tags=["nbval-check-output", "remove-cell"]
macro = zero_shot_macro(zs)
print(f"zero-shot macro AUROC over labels, internal test split (profile {profile}, {kind}):")
for r in rungs:
    print(f"  rung {r.index} {r.name:<13} {macro[r.name]:.2f}")

# %% [markdown]
# ## A first look at re-linkage
#
# ```{margin} Recall@K
# The share of images whose own report ranks among the top *K* of a pool of *N*; see the {term}`glossary <Recall@K>`.
# ```
#
# Chapter 4 audits every rung properly (Recall@K over pool sizes, with confidence intervals).
# As a preview, the share of test images whose own report is the most similar of all test
# reports (Recall@1 over the whole test split, {numref}`tab-ladder-preview`) should rise with the
# rung, since each rung's training text carries more of the detail that tells two similar studies
# apart.

# %%
preview = recall_preview(params, cohort, rungs)  # ties broken at random
display(html_table(preview, {"recall@1": "sig3", "chance": "sig2", "lift": "lift", "n_test": "count"}, label="tab-ladder-preview",
                   caption=f"Recall@1 over the whole internal test split (profile {profile}, {kind})"))

# %% tags=["nbval-check-output", "remove-cell"]
print(f"Recall@1 over the whole internal test split (profile {profile}, {kind}):")
print(preview.round({"recall@1": 3, "chance": 4, "lift": 1}).to_string(index=False))

# %% [markdown]
# ## Running the paper's kind of public models here
#
# The `paper` profile replaces the embedded ladder by local checkpoints (nothing is downloaded;
# every loader runs with `local_files_only=True`). List them, least specialised first, in a JSON
# or YAML file and point `params["data"]["models"]` (or the `MODELS` environment variable) at it;
# the paper preflight and this chapter read it with the same parser
# (`relink_lib.models.catalog.read_model_list`), which names every malformed entry at once:
#
# ```yaml
# - {name: general-clip, kind: hf-clip,        path: /models/clip-vit-base-patch32}
# - {name: biomedclip,   kind: open-clip,      path: /models/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224}
# - {name: chexzero,     kind: openai-clip,    path: /models/chexzero}
# - {name: cxr-dual,     kind: hf-dual-encoder, path: /models/my-vit-cxrbert}
# ```
#
# The kinds of checkpoint the adapter reads, and where each keeps its projection heads (the same
# table, from `relink_lib.models.catalog.CHECKPOINT_KINDS`, appears in chapter 10):

# %%
display(Markdown(pd.DataFrame(CHECKPOINT_KINDS).to_markdown(index=False)))

# %% [markdown]
# ```python
# params = get_profile("paper", {"data": {"models": "/models/models.yaml"}})
# rungs = get_ladder(params)            # Rung(index, name, path, kind) per checkpoint, validated
# encoder = rungs[2].load()             # CUDA when available, autocast + pinned memory on GPU
# feats = get_features(params, cohort, rungs[2], "test")   # cached, resumable, shardable
# ```
#
# On a cluster, `python -m relink_lib features --profile paper --shard K/N` extracts shard K of N
# of every rung and split as one job of an array (K and N default to Slurm's or torchrun's
# variables); `--merge` afterwards assembles them into the same arrays a single run gives, and
# `--status` lists what is done and missing (see the cluster page of the reference part). Grayscale radiographs are repeated to the three channels RGB models
# expect, as `do_convert_rgb` does.
#
# The preprocessing of the embedded rungs, read back from their saved `preprocessor_config.json`:

# %% tags=["nbval-check-output"]
enc = rungs[-1].load(device="cpu")
pre = enc.preprocess.describe()
print(f"rung {rungs[-1].index} ({rungs[-1].name}, profile {profile}): resize {pre['resize'][0]} {pre['resize'][1]} px, "
      f"centre crop {pre['crop'][0]} x {pre['crop'][1]}, {pre['resample']}, mean {pre['mean'][0]:.3f}, std {pre['std'][0]:.3f}, "
      f"{pre['channels']} channels")

# %% [markdown]
# ## Throughput
#
# Feature extraction for one split and rung is cached on disk under a hash of the cohort's
# content, the model directory's bytes, the preprocessing settings and the code version, so later
# chapters re-use it. Timings below are wall-clock on this machine and vary between runs; no GPU
# was available where this book was built, so GPU throughput is not reported (the same code
# runs on CUDA with autocast and pinned memory).

# %%
t_feat = time.perf_counter()
enc = rungs[-1].load(device="cpu")
sample = cohort.load_images(np.arange(min(256, len(cohort))))
enc.image_features(sample)
t_feat = time.perf_counter() - t_feat
print(f"ladder (cached or trained) in {t_ladder:.1f} s; embedding {len(sample)} images with rung {rungs[-1].index} on the CPU: "
      f"{len(sample) / t_feat:.0f} images/s (including model load)")

# %%
payload = ladder_payload(rungs, zs, preview, params,
                         timings={"ladder_seconds": t_ladder, "cpu_images_per_s": len(sample) / t_feat})
path = write_results(params, "model_ladder", payload, cohort=cohort_label(cohort), model=[r.name for r in rungs],
                     wall_time_s=time.perf_counter() - t0)

# %% [markdown]
# ## Summary
#
# The sentences below are generated from this run's numbers (`relink_lib.models.summary`).
# The book audits a ladder of dual encoders that differ in how much clinical text they were
# aligned to, by default tiny CLIP models trained on the synthetic cohort, with the paper's
# public checkpoints pluggable through the same adapter. Every model is split into frozen
# backbones and projection heads, so the audit, the DP fine-tuning of the heads and the utility
# probes all start from the same cached pre-projection features.

# %%
display(Markdown("\n".join(f"- {line}" for line in ladder_findings(payload, simulation))))
