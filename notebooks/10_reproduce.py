# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # 10. Reproduce on real data
#
# **Overview.** Every chapter of this book runs unchanged on MIMIC-CXR-JPG 2.0.0
# {cite}`johnson2019mimiccxr` (the audit pool and the private training data) and CheXpert Plus
# {cite}`chambon2024chexpertplus` (the external cohort), with public checkpoints loaded from
# local folders. This chapter says where the files go, which command runs the study, how each
# kind of checkpoint loads, what the run costs, and how the book keeps credentialed report text
# off every page.
#
# **The question.** What does a reviewer with PhysioNet and Stanford AIMI access and a GPU need
# to do to reproduce the study, and what will it cost?
#
# Unlike the other chapters, this one shows its code: the cells are the how-to.

# %% tags=["parameters"]
profile = "default"
overrides = {}

# %% tags=["remove-cell"]
import json

import pandas as pd
from IPython.display import Markdown, display

from relink_lib.models.catalog import CHECKPOINT_KINDS
from relink_lib.pipeline.compute import PAPER_SCALE, compute_table
from relink_lib.pipeline.dryrun import DRY_RUN_OVERRIDES
from relink_lib.models import KINDS as MODEL_KINDS
from relink_lib.pipeline.preflight import CHEXPERT_PLUS_FILES, CHEXPERT_PLUS_LABEL_FILES, MIMIC_DIRS, MIMIC_FILES
from relink_lib.profiles import get_profile
from relink_lib.results import write_results
from relink_lib.tables import html_table

params = get_profile(profile, overrides)

# %% [markdown]
# ## Where the files go
#
# Both datasets are credentialed: download them yourself from PhysioNet (MIMIC-CXR-JPG 2.0.0,
# and the MIMIC-CXR 2.0.0 reports) and from Stanford AIMI (CheXpert Plus), and keep them where
# your data use agreement allows. The loaders read the official layouts as distributed:
#
# ```text
# $MIMIC_CXR_ROOT/
#   mimic-cxr-2.0.0-split.csv(.gz)       dicom_id, study_id, subject_id, split (train/validate/test)
#   mimic-cxr-2.0.0-chexpert.csv(.gz)    subject_id, study_id, the 14 labels (1.0, 0.0, -1.0, blank)
#   mimic-cxr-2.0.0-metadata.csv(.gz)    dicom_id, subject_id, study_id, ViewPosition, Rows, Columns, ...
#   files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg
#   mimic-cxr-reports/files/pXX/pSUBJECT/sSTUDY.txt
# $CHEXPERT_PLUS_ROOT/
#   df_chexpert_plus_240401.csv          path_to_image, frontal_lateral, ap_pa, deid_patient_id, report, ..., split
#   chexbert_labels/{impression,findings,report}_fixed.json
#   <path_to_image> (the images, relative to the root)
# ```
#
# What the preflight checks before any long step (every problem is listed at once, with its path):

# %% tags=["nbval-check-output", "show-code"]
print("MIMIC-CXR-JPG:", *(MIMIC_FILES + MIMIC_DIRS), sep="\n  ")
print("CheXpert Plus:", *(CHEXPERT_PLUS_FILES + CHEXPERT_PLUS_LABEL_FILES), sep="\n  ")
print("checkpoint kinds:", ", ".join(MODEL_KINDS))

# %% [markdown]
# ## The checkpoints
#
# The paper compares public VLMs of increasing clinical specialization. Any dual encoder whose
# projection heads are separable runs here; list them, least specialised first, in a JSON or YAML file:
#
# ```json
# [
#   {"name": "general",    "kind": "hf-clip",         "path": "/models/clip-vit-base-patch16"},
#   {"name": "biomedical", "kind": "open-clip",       "path": "/models/biomedclip"},
#   {"name": "chest-xray", "kind": "openai-clip",     "path": "/models/chexzero"},
#   {"name": "custom",     "kind": "hf-dual-encoder", "path": "/models/my-vision-text-dual-encoder"}
# ]
# ```
#
# (a JSON or YAML file: the preflight and chapter 3 read it with one parser,
# `relink_lib.models.catalog.read_model_list`). {numref}`tab-reproduce-checkpoint-kinds` lists the
# kinds, and where each keeps the projection heads that DP fine-tunes (the same table as chapter 3's,
# from `relink_lib.models.catalog`):

# %% tags=["remove-input"]
kinds = pd.DataFrame(CHECKPOINT_KINDS).replace("`", "", regex=True)  # code marks: the table is HTML
display(html_table(kinds, label="tab-reproduce-checkpoint-kinds",
                   caption="The checkpoint kinds: what each directory holds, where its projection heads sit, and "
                           "how its inputs are preprocessed."))

# %% [markdown]
# Preprocessing follows each checkpoint: the HF kinds use the checkpoint's own image processor and
# tokenizer, `openai-clip` 224 px with CLIP normalisation and the CLIP BPE tokenizer, `open-clip`
# the model's own transforms and tokenizer.
#
# Everything loads offline (`local_files_only=True`): nothing is fetched from a hub. BioViL /
# CXR-BERT-style projectors contain BatchNorm, which per-sample DP cannot use as is: freeze it
# or replace it before chapter 6.
#
# ## The command
#
# ```bash
# make book PROFILE=paper \
#     MIMIC_CXR_ROOT=/data/mimic-cxr-jpg/2.0.0 \
#     CHEXPERT_PLUS_ROOT=/data/chexpert-plus \
#     MODELS=/data/models.json
# ```
#
# The `paper` profile audits the MIMIC-CXR test split (the paper's 43,793 held-out pairs) at
# pools N = 10 ... 10,000 and the full database, fine-tunes the heads with DP on the training
# split, and applies them unchanged to CheXpert Plus. Its parameters:

# %% tags=["nbval-check-output", "show-code"]
paper = get_profile("paper")
for section in ("cohort", "audit", "dp"):
    print(f"{section}:", *(f"{k} = {json.dumps(v, default=str)}" for k, v in paper[section].items()), sep="\n  ")

# %% [markdown]
# ## The dry run: the real path, checked on every change
#
# ```{margin} Simulation
# The dry run's numbers come from synthetic cohorts: they check the real-data path, not the risk on real patients; see the {term}`glossary <simulation>`.
# ```
#
# No credentialed data can ship with the project, so CI runs the `paper` profile against the
# synthetic cohorts **exported in the two official layouts** (internal site as MIMIC-CXR-JPG,
# external site as CheXpert Plus) with the ci ladder's checkpoints listed as `hf-clip` models:
# `python -m relink_lib paper-dry-run`. The loaders, the preflight, the offline adapters and
# every chapter run exactly as on real data; only the scale is reduced:

# %% tags=["nbval-check-output", "show-code"]
print(json.dumps(DRY_RUN_OVERRIDES, default=str, sort_keys=True, indent=1))

# %% [markdown]
# ## What it costs
#
# {numref}`tab-reproduce-compute` lists what the project's benchmarks measured (on a 2-core CPU, as CI's; see
# `docs/benchmarks.md`) and the same work at the paper's scale. The audit benchmark already runs
# at the paper's size (M = 43,793, d = 512). No GPU was available when these figures were taken;
# a GPU cuts the audit and feature extraction by orders of magnitude.

# %%
compute = compute_table(dp_epochs=params.dp.budget_sweep.epochs, dp_batch=params.dp.batch_size)
display(html_table(compute, label="tab-reproduce-compute",
                   caption="What the study costs: each step as the project's benchmarks measured it (CPU) and the "
                           "same work at the paper's scale."))

# %% tags=["remove-input"]
write_results(params, "reproduce", {"table": compute, "paper_scale": dict(PAPER_SCALE), "dry_run_overrides": DRY_RUN_OVERRIDES},
              cohort="none (instructions)", model="none", wall_time_s=0.0)
display(Markdown(f"Paper-scale counts used (the paper's): {PAPER_SCALE['mimic_test_pairs']:,} held-out MIMIC-CXR pairs, "
                 f"{PAPER_SCALE['chexpert_plus_pairs']:,} CheXpert Plus pairs, {PAPER_SCALE['all_pairs']:,} pairs in all."))

# %% [markdown]
# ## What the PHI guard does
#
# - Cohorts loaded from MIMIC-CXR-JPG and CheXpert Plus are **private**: `cohort.public` is
#   `False`. The display helpers of `relink_lib.cohorts.phi` refuse to show their report text,
#   so chapter 2 shows example pairs only for the synthetic cohort.
# - Results JSON files hold numbers, ids of rungs and settings, never report text; features are
#   cached as arrays.
# - Notebooks executed on the `paper` profile stay in `_build/executed/paper/` (ignored by git);
#   only the ci-profile notebooks, on synthetic data, are committed as test baselines.
# - A test builds an HTML page from a private fixture cohort and checks that none of its report
#   text appears in it.
#
# ## Summary
#
# - Put the two datasets in their official layouts, list the checkpoints in a JSON file, and run
#   `make book PROFILE=paper` with the three paths.
# - The preflight names every missing root, file or checkpoint before any long step.
# - CI exercises the whole real-data path on every change with synthetic data in the official
#   layouts.
# - Report text of real cohorts never reaches a page, a committed notebook or a log.
