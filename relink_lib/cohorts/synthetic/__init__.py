"""The embedded synthetic paired cohort (DESIGN.md section 5): anatomy, labels, renderer, reports."""
from .generate import make_synthetic_cohort

__all__ = ["make_synthetic_cohort"]
