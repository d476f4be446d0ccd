# ---
# jupyter:
#   jupytext:
#     text_representation: {extension: .py, format_name: percent}
#   kernelspec: {display_name: Python 3, language: python, name: python3}
# ---

# %% [markdown]
# # Summary: what this run found
#
# This page states the book's findings for one run, in sentences generated from the chapters'
# results files (`results/<profile>/*.json`) by `relink_lib.summary`, each with its 95% interval
# where the chapter computed one, beside the seed paper's figures. It is executed after every
# other chapter. The chapters hold the methods and the caveats; the glossary defines the terms.

# %% tags=["parameters"]
profile = "default"
overrides = {}

# %% tags=["remove-cell"]
import time

import matplotlib.pyplot as plt
from IPython.display import HTML, Markdown, display

from relink_lib.calibration import calibration_box, calibration_record
from relink_lib.display import provenance_banner
from relink_lib.floats import show_figure
from relink_lib.plots.common import set_style
from relink_lib.plots.summary import plot_lift_summary
from relink_lib.profiles import get_profile
from relink_lib.results import write_results
from relink_lib.paper import PAPER_CITATION
from relink_lib.summary import (lift_points, load_payloads, paper_table, summary_display,
                                summary_findings, summary_payload, summary_table)
from relink_lib.tables import html_table

# %% tags=["remove-input"]
params = get_profile(profile, overrides)
started = time.perf_counter()
set_style()
payloads = load_payloads(params["profile"])
summary = summary_payload(payloads)
display(provenance_banner(params))

# %% [markdown]
# ## Findings

# %% tags=["remove-input"]
display(Markdown("\n\n".join(summary_findings(summary))))

# %% [markdown]
# Where each finding comes from: the DP cut and its decomposition from {doc}`06_mitigation`, the
# privacy budget from {doc}`09_privacy_budget`, the adaptive attacker and the custodian's
# recommendation (release options, tolerances) from {doc}`11_custodian`.

# %% [markdown]
# ## Calibration and prediction
#
# ```{margin} Simulation
# Any number computed on the synthetic cohort: it shows the method, not the risk on real patients; see the {term}`glossary <simulation>`.
# ```
#
# The simulation has knobs. Some were set so that its audit lands in the paper's regime; a number
# that agrees with the paper because of such a knob is a calibration, not a replication.

# %% tags=["remove-input"]
display(HTML(calibration_box(calibration_record(payloads.get("audit"), params))))

# %% [markdown]
# ## The headline numbers beside the paper's
#
# ```{margin} Lift
# Recall@K divided by chance; see the {term}`glossary <lift>`.
# ```
#
# {numref}`fig-summary-lift` shows the Recall@1 lift over chance per rung at N = 100 and at the
# largest pool the held-out split allows, with 95% patient-level bootstrap intervals. The red
# diamonds are **the paper's figures** (its strongest model on MIMIC-CXR), drawn beside this run's
# most specialised rung (chapter 4's {numref}`tab-audit-lift` has every rung, N and K).
# {numref}`tab-summary-findings` lists this run's findings with their
# intervals beside the paper's, and {numref}`tab-summary-paper` quotes the paper's figures.

# %%
points = lift_points(payloads.get("audit"))
if points.empty:
    display(Markdown("Re-linkage lift: not available (the audit, chapter 4, has not run on this profile)."))
else:
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    plot_lift_summary(points, ax=ax, simulation=params.cohort.simulation)
    ax.set_title("Re-linkage lift over chance per rung")
    show_figure(fig, "fig-summary-lift", "Recall@1 lift over chance per rung at N = 100 and at the largest pool, "
                "with 95% patient-level bootstrap intervals, beside the paper's figures (red diamonds).")

# %%
display(html_table(summary_display(summary), label="tab-summary-findings",
                   caption="This run's findings (simulation where the cohort is synthetic) beside the paper's"))

# %%
display(html_table(paper_table(), label="tab-summary-paper", caption=f"The paper's figures, as quoted ({PAPER_CITATION})"))

# %% tags=["nbval-check-output", "remove-cell"]
for line in summary_table(summary).itertuples(index=False):
    print(line.finding, "|", "n/a" if line[1] is None or line[1] != line[1] else f"{line[1]:.3g}")

# %%
path = write_results(params, "summary", {"findings": summary, "table": summary_table(summary)},
                     cohort=params["cohort"]["source"], model="see the chapters", wall_time_s=time.perf_counter() - started)
display(Markdown(f"This page's numbers: `results/{params['profile']}/{path.name}`."))
