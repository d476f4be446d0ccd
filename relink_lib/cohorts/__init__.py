"""Cohorts: one ``Cohort`` type, the synthetic generator, real-layout loaders, export, splits, PHI guard.

Public API::

    from relink_lib.cohorts import Cohort, make_synthetic_cohort, export
    from relink_lib.cohorts import load_mimic_cxr, load_chexpert_plus, load_folder

Pipeline stage: ``relink_lib.cohorts.stage.get_cohort(params, site)``.
"""

from .base import Cohort
from .chexpert_plus import load_chexpert_plus
from .export import export
from .folder import load_folder
from .mimic import load_mimic_cxr
from .synthetic import make_synthetic_cohort

__all__ = ["Cohort", "make_synthetic_cohort", "load_mimic_cxr", "load_chexpert_plus", "load_folder", "export"]
