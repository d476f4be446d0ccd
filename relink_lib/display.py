"""Display helpers for the chapter notebooks: the banner saying which run produced a page's numbers."""
from __future__ import annotations

from typing import Any, Mapping

from IPython.display import Markdown


def provenance_banner(params: Mapping[str, Any], cohort: str | None = None) -> Markdown:
    """A one-paragraph note: profile, seed, cohort, and whether the numbers are a simulation."""
    source = params["cohort"]["source"]
    cohort = cohort or ("embedded synthetic paired cohort" if source == "synthetic" else "real cohorts (MIMIC-CXR-JPG, CheXpert Plus)")
    kind = ("**Simulation.** The numbers on this page come from a synthetic cohort: they show the method, "
            "not the size of the risk on real patients." if source == "synthetic" else
            "**Real data.** The numbers on this page come from credentialed cohorts; no report text is shown.")
    return Markdown(f"> {kind} Profile `{params['profile']}`, seed {params['seed']}, cohort: {cohort}. "
                    f"Re-run with `python -m relink_lib book --profile {params['profile']}`.")
