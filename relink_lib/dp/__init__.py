"""DP-SGD on the projection heads only, with a per-example-decomposable objective.

Public API:

- :func:`train_heads`, :class:`DPConfig`, :class:`HeadTrainingResult` (:mod:`.train`, :mod:`.config`)
- :func:`per_example_loss`, :class:`ExpandedBankLoss` (:mod:`.objective`)
- :func:`per_sample_head_grads`, :func:`head_grad_factors` (:mod:`.fastgrad`)
- :func:`calibrate_noise`, :func:`rdp_epsilon` (:mod:`.calibrate`)
- :func:`independent_epsilons`, :func:`epsilon_dp_accounting`, :func:`group_privacy` (:mod:`.accounting`)
- :func:`reinit_heads`, :func:`perturb_heads` (:mod:`.heads`), :func:`tune_output_perturbation` (:mod:`.controls`)
"""

from .accounting import epsilon_dp_accounting, group_privacy, independent_epsilons
from .calibrate import RDP_ORDERS, calibrate_noise, rdp_epsilon
from .config import DPConfig, HeadTrainingResult
from .controls import tune_output_perturbation
from .fastgrad import HeadGradFactors, head_grad_factors, per_sample_head_grads
from .heads import perturb_heads, reinit_heads
from .objective import ExpandedBankLoss, per_example_loss, per_example_loss_weights
from .sampling import poisson_batches, privacy_units
from .train import sampling_plan, train_heads

__all__ = [
    "DPConfig",
    "HeadTrainingResult",
    "train_heads",
    "sampling_plan",
    "per_example_loss",
    "per_example_loss_weights",
    "ExpandedBankLoss",
    "HeadGradFactors",
    "head_grad_factors",
    "per_sample_head_grads",
    "calibrate_noise",
    "rdp_epsilon",
    "RDP_ORDERS",
    "independent_epsilons",
    "epsilon_dp_accounting",
    "group_privacy",
    "reinit_heads",
    "perturb_heads",
    "tune_output_perturbation",
    "poisson_batches",
    "privacy_units",
]
