"""Errors of the machine-learning core, under evgen's one :class:`~evgen.errors.EvgenError`.

Each message names the quantity that went wrong and what to change (a learning rate, an
ODE tolerance, a checkpoint path), so the command line can print it as one line.
"""

from __future__ import annotations

from evgen.errors import EvgenError

__all__ = ["CheckpointError", "MLError", "ODEError", "TrainingError"]


class MLError(EvgenError):
    """Base class of the errors raised by :mod:`evgen.ml`."""


class TrainingError(MLError):
    """Training cannot go on: a non-finite loss or gradient."""


class ODEError(MLError):
    """An ODE solve failed: step size underflow or too many steps."""


class CheckpointError(MLError):
    """A checkpoint cannot be read or does not fit the module it is loaded into."""
