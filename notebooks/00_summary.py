# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Summary: the headline numbers
#
# This page collects the book's main results from the results files of one run
# (`results/<profile>/*.json`), beside the seed paper's reported figures. It is executed after
# every other chapter. Read the chapters for the methods, the intervals and the caveats.

# %% tags=["parameters"]
profile = "default"
overrides = {}

# %% tags=["hide-input"]
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from relink_lib.display import provenance_banner
from relink_lib.plots.common import label_simulation, set_style
from relink_lib.profiles import get_profile
from relink_lib.results import read_results
from relink_lib.summary import PAPER_HEADLINE, dp_record, headline_table

params = get_profile(profile, overrides)
set_style()
display(provenance_banner(params))

# %% [markdown]
# ## Re-linkage, mitigation and utility per rung
#
# Rungs are ordered from the least to the most clinically specialised model. "R@1" is the exact
# expected Recall@1 over random pools of N candidate reports on the held-out split; "lift" is R@1
# divided by chance (1/N); "matched pools" draws the distractors from reports with the same 14
# labels; "after DP" uses projection heads fine-tuned with DP-SGD at the target budget; the
# probe is the image-side linear probe, and zero-shot AUROC is the cross-modal utility.

# %%
table = headline_table(params["profile"])
display(table.set_index(["rung", "model"]).T.style.format(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else (f"{v:,.3f}" if isinstance(v, float) else str(v))))

# %% tags=["nbval-check-output"]
for _, row in table.iterrows():
    values = {k: v for k, v in row.items() if k not in ("rung", "model")}
    shown = ", ".join(f"{k}: {v:.3f}" if isinstance(v, float) and not np.isnan(v) else f"{k}: {v}" for k, v in values.items())
    print(f"rung {row['rung']} ({row['model']}): {shown}")

# %%
lift_cols = [c for c in table.columns if c.startswith("lift, ")]
fig, ax = plt.subplots()
x = np.arange(len(table))
width = 0.8 / max(len(lift_cols), 1)
for i, col in enumerate(lift_cols):
    ax.bar(x + i * width, table[col].astype(float), width, label=col.replace("lift, ", "R@1 lift, "))
ax.axhline(1.0, color="0.3", lw=1, ls="--", label="chance")
ax.set_xticks(x + width * (len(lift_cols) - 1) / 2)
ax.set_xticklabels([f"{r}: {m}" for r, m in zip(table["rung"], table["model"])])
ax.set_xlabel("rung (rising clinical specialization)")
ax.set_ylabel("Recall@1 / chance")
ax.set_title("Re-linkage lift over chance per rung")
ax.legend()
if params["cohort"]["source"] == "synthetic":
    label_simulation(ax)
plt.show()

# %% [markdown]
# ## The DP guarantee behind "after DP"

# %% tags=["nbval-check-output"]
record = dp_record(params["profile"])
for key in ("target_epsilon", "epsilon", "delta", "noise_multiplier", "sample_rate", "steps", "max_grad_norm"):
    value = record[key]
    print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
print(f"accountant: {record['accountant']}")

# %% [markdown]
# ## The paper's figures, for comparison
#
# These are **the seed paper's** reported numbers on MIMIC-CXR with its strongest public model,
# not results of this book. On the synthetic cohort the absolute numbers differ by design. Compare
# the shape instead: does re-linkage sit far above chance and rise with specialization, how much
# does head-only DP fine-tuning cut it, and what does that cost the image-side probe and the
# cross-modal utility? The table above answers these for this run; where DP did not cut
# re-linkage here, chapter 6 and `docs/dp.md` discuss why.

# %%
display(pd.Series(PAPER_HEADLINE, name="the paper's figures").to_frame())
prov = read_results(params["profile"], "mitigation")["provenance"]
display(Markdown(f"Produced by profile `{prov['profile']}`, seed {prov['seed']}, cohort *{prov['cohort']}*, "
                 f"commit `{prov['git_commit'][:12]}`."))
