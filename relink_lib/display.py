"""Display helpers for the chapter notebooks: the banner saying which run produced a page's numbers."""

from __future__ import annotations

import html
import re

from IPython.display import HTML

from .config import ProfileLike, as_profile
from .profiles import get_profile


def _inline_html(text: str) -> str:
    """``text`` escaped, with its Markdown ``code`` spans and **bold** as HTML."""
    out = html.escape(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def provenance_banner(params: ProfileLike, cohort: str | None = None) -> HTML:
    """The page's one compact admonition: simulation or real data, profile, seed, cohort, how to re-run.

    An HTML admonition in the theme's classes (``relink-simulation`` or ``relink-real-data``; styled compact
    by ``book/_static/relink.css``), shown once at the top of each chapter."""
    cfg = as_profile(params)
    simulation = cfg.cohort.simulation
    cohort = cohort or (
        "embedded synthetic paired cohort" if simulation else "real cohorts (MIMIC-CXR-JPG, CheXpert Plus)"
    )
    title, kind = (
        (
            "Simulation",
            "The numbers on this page come from a synthetic cohort: they show the method, "
            "not the size of the risk on real patients.",
        )
        if simulation
        else ("Real data", "The numbers on this page come from credentialed cohorts; no report text is shown.")
    )
    body = (
        f"{kind} Profile `{cfg.name}`, seed {cfg.seed}, cohort: {cohort}. "
        f"{run_size_note(cfg)}Re-run with `python -m relink_lib book --profile {cfg.name}`."
    )
    css = "relink-simulation" if simulation else "relink-real-data"
    return HTML(
        f'<div class="admonition {"caution" if simulation else "note"} {css}">'
        f'<p class="admonition-title">{title}</p><p>{_inline_html(body)}</p></div>'
    )


def run_size_note(params: ProfileLike) -> str:
    """For a synthetic profile other than ``default``: a sentence saying it is a smaller run than ``default``.

    Returns "" for ``default`` and real-data profiles."""
    cfg = as_profile(params)
    if not cfg.cohort.simulation or cfg.name in ("default", "paper"):
        return ""
    default = get_profile("default")
    n, n_default = cfg.cohort.n_pairs, default.cohort.n_pairs
    differences = [f"{n:,} against {n_default:,} synthetic pairs"]
    noise, noise_default = cfg.cohort.image_noise, default.cohort.image_noise
    if noise != noise_default:
        easier = " (easier to link)" if noise < noise_default else ""
        differences.append(f"image noise x{noise:g}{easier} against x{noise_default:g}")
    scale, scale_default = cfg.ladder.epochs_scale, default.ladder.epochs_scale
    if scale != scale_default:
        differences.append(f"ladder schedules x{scale:g} against x{scale_default:g}")
    changed = sorted(cfg.ladder.overrides)
    if changed:
        differences.append("per-rung training changed for " + ", ".join(f"`{name}`" for name in changed))
    return (
        f"`{cfg.name}` is a smaller run than the main `default` profile ({'; '.join(differences)}): "
        f"its effects are weaker and its intervals wider. "
    )
