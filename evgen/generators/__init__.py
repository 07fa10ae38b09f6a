"""Generators: networks trained on events that sample new events fast (issue 8).

* :mod:`evgen.generators.preprocessing`: the bijective physics parametrisation
  (:class:`EventPreprocessing`, :class:`Topology`, :class:`PreprocessingConfig`):
  events <-> standardised (log pT, y, phi) features with momentum conservation and
  mass shells exact, several topologies in one one-hot-conditioned network;
* :mod:`evgen.generators.bayesian`: variational Bayesian layers
  (:class:`BayesianLinear`, :class:`BayesianVelocityNet`, the ELBO loss
  :func:`bayesian_flow_matching_loss`) and the ensemble alternative
  (:class:`VelocityEnsemble`);
* :mod:`evgen.generators.model`: :func:`train_generator`, :class:`GeneratorModel`
  (``sample``, ``save``, ``load``) and :class:`GeneratorConfig`.

Errors are :class:`GeneratorError` (an :class:`~evgen.errors.EvgenError`).
"""

from evgen.generators.bayesian import (
    BayesianLinear,
    BayesianMLP,
    BayesianVelocityNet,
    VelocityEnsemble,
    WeightMode,
    bayesian_flow_matching_loss,
    bayesian_kl,
    bayesian_layers,
    sample_weights,
    set_weight_mode,
)
from evgen.generators.model import (
    MODEL_FORMAT,
    MODEL_VERSION,
    GeneratorConfig,
    GeneratorModel,
    train_generator,
)
from evgen.generators.preprocessing import (
    EncodedEvents,
    EventPreprocessing,
    GeneratorError,
    PreprocessingConfig,
    Topology,
    find_topologies,
    wrap_angle,
)

__all__ = [
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "BayesianLinear",
    "BayesianMLP",
    "BayesianVelocityNet",
    "EncodedEvents",
    "EventPreprocessing",
    "GeneratorConfig",
    "GeneratorError",
    "GeneratorModel",
    "PreprocessingConfig",
    "Topology",
    "VelocityEnsemble",
    "WeightMode",
    "bayesian_flow_matching_loss",
    "bayesian_kl",
    "bayesian_layers",
    "find_topologies",
    "sample_weights",
    "set_weight_mode",
    "train_generator",
    "wrap_angle",
]
