"""The "what the guarantee covers" admonition of chapters 6-9, generated from the profile's DP settings.

One statement of whom the (eps, delta) guarantee of the released DP heads protects, from what, and
what it leaves out, so chapters 6-9 say the same thing (docs/dp.md, "What is protected").
"""

from __future__ import annotations

import html

from .config import ProfileLike, as_profile
from .dp.accounting import group_privacy

GROUP_SIZES = (2, 5)
"""Pairs per patient for which the box prints the group guarantee (a patient with k studies)."""


def guarantee_items(params: ProfileLike) -> tuple[str, list[str], list[str]]:
    """(headline, what it covers, what it does not) for the profile's DP settings, as plain sentences."""
    dp = as_profile(params).dp
    if dp.target_epsilon is None:
        return ("This profile trains the heads without DP: no guarantee is made.", [], [])
    eps, delta = float(dp.target_epsilon), float(dp.delta)
    unit = "one patient (all of a patient's pairs)" if dp.sampling == "patient" else "one image-report pair"
    covers = [
        f"Unit of privacy: {unit} of the private training set (the internal cohort's train split), added or removed.",
        "What is released: the two projection heads trained from fresh weights (the selected setting), "
        "given the frozen encoders and the public bank (the val split).",
        "Tuning: the headline setting is chosen on public pairs (chapter 6's public pilot), so the choice "
        "spends no privacy; choosing among runs on private data costs more (chapter 6 says how much).",
    ]
    if dp.sampling != "patient":
        groups = ", ".join(
            f"k = {k}: ({e:.2g}, {d:.1g})" for k, (e, d) in ((k, group_privacy(eps, delta, k)) for k in GROUP_SIZES)
        )
        covers.append(f"A patient with k pairs gets the group guarantee (k eps, k e^((k-1) eps) delta): {groups}.")
    leaves_out = [
        "The encoders: they were trained without DP on the same pairs; an attacker with the released encoders "
        "is measured, not bounded (chapters 1, 11).",
        "Patients of the public bank and of any other cohort (external, confirmation): their pairs are not in "
        "the private set, so the guarantee says nothing about them.",
        "Heads fine-tuned from the pretrained heads: DP then covers only the update, not the heads.",
    ]
    headline = f"The released heads are ({eps:g}, {delta:g})-differentially private with respect to {unit}."
    return headline, covers, leaves_out


def guarantee_box(params: ProfileLike) -> str:
    """The admonition (HTML, the theme's classes) stating whom the DP guarantee covers."""
    headline, covers, leaves_out = guarantee_items(params)

    def items(title: str, lines: list[str]) -> str:
        if not lines:
            return ""
        body = "".join(f"<li>{html.escape(s)}</li>" for s in lines)
        return f"<p><strong>{title}</strong></p><ul>{body}</ul>"

    return (
        '<div class="admonition important relink-guarantee"><p class="admonition-title">'
        "What the guarantee covers</p>"
        f"<p>{html.escape(headline)}</p>{items('Covers', covers)}{items('Does not cover', leaves_out)}</div>"
    )
