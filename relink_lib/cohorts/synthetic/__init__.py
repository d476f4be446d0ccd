"""The embedded synthetic paired cohort (docs/cohorts.md): anatomy, labels, renderer, reports."""

from .generate import make_synthetic_cohort

__all__ = ["make_synthetic_cohort"]
