"""Display helpers for the chapter notebooks: the banner saying which run produced a page's numbers."""
from __future__ import annotations

from typing import Any, Mapping

from IPython.display import Markdown

from .profiles import get_profile


def provenance_banner(params: Mapping[str, Any], cohort: str | None = None) -> Markdown:
    """A one-paragraph note: profile, seed, cohort, and whether the numbers are a simulation."""
    source = params["cohort"]["source"]
    cohort = cohort or ("embedded synthetic paired cohort" if source == "synthetic" else "real cohorts (MIMIC-CXR-JPG, CheXpert Plus)")
    kind = ("**Simulation.** The numbers on this page come from a synthetic cohort: they show the method, "
            "not the size of the risk on real patients." if source == "synthetic" else
            "**Real data.** The numbers on this page come from credentialed cohorts; no report text is shown.")
    return Markdown(f"> {kind} Profile `{params['profile']}`, seed {params['seed']}, cohort: {cohort}. "
                    f"{run_size_note(params)}Re-run with `python -m relink_lib book --profile {params['profile']}`.")


def run_size_note(params: Mapping[str, Any]) -> str:
    """For a synthetic profile other than ``default``: a sentence saying it is a smaller run than ``default`` (else "")."""
    if params["cohort"]["source"] != "synthetic" or params["profile"] in ("default", "paper"):
        return ""
    default = get_profile("default")
    n, n_default = int(params["cohort"]["n_pairs"]), int(default["cohort"]["n_pairs"])
    differences = [f"{n:,} against {n_default:,} synthetic pairs"]
    noise, noise_default = float(params["cohort"].get("image_noise", 1.0)), float(default["cohort"].get("image_noise", 1.0))
    if noise != noise_default:
        easier = " (easier to link)" if noise < noise_default else ""
        differences.append(f"image noise x{noise:g}{easier} against x{noise_default:g}")
    scale, scale_default = float(params["ladder"]["epochs_scale"]), float(default["ladder"]["epochs_scale"])
    if scale != scale_default:
        differences.append(f"ladder schedules x{scale:g} against x{scale_default:g}")
    changed = sorted((params["ladder"].get("overrides") or {}))
    if changed:
        differences.append("per-rung training changed for " + ", ".join(f"`{name}`" for name in changed))
    return (f"`{params['profile']}` is a smaller run than the main `default` profile ({'; '.join(differences)}): "
            f"its effects are weaker and its intervals wider. ")
