"""Reconstruction risk of DP head training under three threat models (chapter 9).

- :mod:`.tradeoff`: trade-off curves of the Poisson-subsampled Gaussian composed over T steps
  (PLD, Gaussian-DP approximation, Monte Carlo).
- :mod:`.rero`: worst-case and relaxed reconstruction-robustness bounds.
- :mod:`.attack`: the gradient-access reconstruction, a rank-one gradient inversion of one pair's clipped noisy
  per-sample head update.
- :mod:`.sweep`: the privacy-budget sweep (train at each eps, then risk, re-linkage, utility): a
  per-eps table and a long re-linkage table (:class:`.sweep.SweepResult`).
- :mod:`.stage`: the chapter's pipeline stage (imported lazily: it needs the cohort and model stages).
"""

from .attack import AttackResult, clip_per_sample, gradient_inversion_attack, reconstruct_features, release_updates
from .rero import (
    ReRoBounds,
    kappa_for,
    no_dp_bounds,
    relaxed_risk,
    relaxed_risk_monte_carlo,
    rero_bounds,
    worst_case_risk,
    worst_case_risk_gdp,
    worst_case_risk_lower,
)
from .sweep import (
    RECORD_FIELDS,
    AttackSettings,
    CutBaseline,
    Evaluation,
    SweepResult,
    budget_sweep,
    cut_interval,
    gradient_access_attack,
    prior_risks,
    privacy_risks,
)
from .tradeoff import (
    Mechanism,
    gdp_mu,
    gdp_tradeoff,
    max_test_beta,
    monte_carlo_privacy_loss,
    monte_carlo_profile,
    noiseless_limit_beta,
    privacy_profile,
    tradeoff_curve,
    tradeoff_from_profile,
)

__all__ = [
    "Mechanism",
    "tradeoff_curve",
    "tradeoff_from_profile",
    "privacy_profile",
    "noiseless_limit_beta",
    "max_test_beta",
    "gdp_mu",
    "gdp_tradeoff",
    "monte_carlo_privacy_loss",
    "monte_carlo_profile",
    "ReRoBounds",
    "kappa_for",
    "worst_case_risk",
    "worst_case_risk_lower",
    "worst_case_risk_gdp",
    "relaxed_risk",
    "relaxed_risk_monte_carlo",
    "rero_bounds",
    "no_dp_bounds",
    "AttackResult",
    "clip_per_sample",
    "release_updates",
    "reconstruct_features",
    "gradient_inversion_attack",
    "AttackSettings",
    "Evaluation",
    "SweepResult",
    "privacy_risks",
    "prior_risks",
    "cut_interval",
    "CutBaseline",
    "gradient_access_attack",
    "budget_sweep",
    "RECORD_FIELDS",
]
