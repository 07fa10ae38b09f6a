"""The machine-learning core of evgen: flows, flow matching, training.

Shared by the learned integrators (MadNIS-style multi-channel importance sampling),
the generators and generative unfolding:

* bijections with exact log-Jacobians (:mod:`evgen.ml.transforms`):
  :func:`rational_quadratic_spline` on [0, 1], :func:`sigmoid_transform`,
  :func:`logit_transform`;
* :class:`UnitHypercubeFlow` (:mod:`evgen.ml.flows`): a spline-coupling normalizing
  flow, an exact bijection of [0, 1]^d, optionally conditional;
* flow matching (:mod:`evgen.ml.cfm`): :class:`VelocityNet`, :func:`flow_matching_loss`,
  :class:`ContinuousFlow` (exact log-density by the instantaneous change of variables),
  :class:`UnitHypercubeCFM`, :func:`divergence`, :func:`hutchinson_divergence`;
* ODE solvers (:mod:`evgen.ml.ode`): :func:`odeint` (dopri5, rk4), :class:`ODEOptions`;
* training (:mod:`evgen.ml.training`): :class:`Trainer`, :class:`TrainingConfig`,
  :func:`seed_everything`, :func:`save_checkpoint`, :func:`load_checkpoint`;
* networks (:mod:`evgen.ml.nn`): :class:`MLP`;
* errors (:mod:`evgen.ml.errors`): :class:`MLError` and its subclasses.

dtype: every model takes a ``dtype`` (float64 by default, since importance weights
need exact densities) and converts its inputs to it in one place (its ``_prepare``).
"""

from evgen.ml.cfm import (
    ContinuousFlow,
    Transport,
    UnitHypercubeCFM,
    VelocityNet,
    divergence,
    flow_matching_loss,
    hutchinson_divergence,
)
from evgen.ml.errors import CheckpointError, MLError, ODEError, TrainingError
from evgen.ml.flows import UnitHypercubeFlow, coupling_masks
from evgen.ml.nn import MLP
from evgen.ml.ode import ODEOptions, ODESolution, odeint
from evgen.ml.training import (
    Trainer,
    TrainingConfig,
    TrainingProgress,
    TrainingResult,
    load_checkpoint,
    save_checkpoint,
    seed_everything,
)
from evgen.ml.transforms import logit_transform, rational_quadratic_spline, sigmoid_transform

__all__ = [
    "MLP",
    "CheckpointError",
    "ContinuousFlow",
    "MLError",
    "ODEError",
    "ODEOptions",
    "ODESolution",
    "Trainer",
    "TrainingConfig",
    "TrainingError",
    "TrainingProgress",
    "TrainingResult",
    "Transport",
    "UnitHypercubeCFM",
    "UnitHypercubeFlow",
    "VelocityNet",
    "coupling_masks",
    "divergence",
    "flow_matching_loss",
    "hutchinson_divergence",
    "load_checkpoint",
    "logit_transform",
    "odeint",
    "rational_quadratic_spline",
    "save_checkpoint",
    "seed_everything",
    "sigmoid_transform",
]
