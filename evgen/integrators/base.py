"""The integrator interface shared by VEGAS and the learned samplers.

An integrand is any callable ``f(r) -> weights`` on the unit hypercube: ``r`` has shape
(n, n_dim), the result shape (n,). Integrators know nothing of physics.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

__all__ = ["Estimate", "Integrand", "Integrator", "combine_estimates"]

Integrand = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Estimate:
    """A Monte Carlo estimate of an integral.

    Attributes:
        value: the integral (in the integrand's units, pb for physics integrands).
        error: its one-standard-deviation Monte Carlo error.
        n_eval: integrand evaluations that went into it.
        chi2_dof: chi^2 per degree of freedom of the iterations combined (nan for one).
    """

    value: float
    error: float
    n_eval: int
    chi2_dof: float = math.nan

    @property
    def relative_error(self) -> float:
        """error / |value| (inf for a zero value)."""
        return self.error / abs(self.value) if self.value != 0 else math.inf


def combine_estimates(estimates: Sequence[Estimate]) -> Estimate:
    """Inverse-variance weighted average of independent estimates, with chi^2/dof.

    Iterations with zero error (an integrand that vanished everywhere sampled) get the
    smallest non-zero variance present, so they cannot dominate by accident; if every
    error is zero, the plain mean is returned with zero error.
    """
    if not estimates:
        raise ValueError("no estimates to combine")
    if len(estimates) == 1:
        return estimates[0]
    positive = [e.error**2 for e in estimates if e.error > 0]
    if not positive:
        values = [e.value for e in estimates]
        mean = sum(values) / len(values)
        chi2 = 0.0 if all(v == mean for v in values) else math.inf
        return Estimate(mean, 0.0, sum(e.n_eval for e in estimates), chi2)
    floor = min(positive)
    var = [max(e.error**2, floor) for e in estimates]
    wsum = sum(1.0 / v for v in var)
    mean = sum(e.value / v for e, v in zip(estimates, var, strict=True)) / wsum
    chi2 = sum((e.value - mean) ** 2 / v for e, v in zip(estimates, var, strict=True))
    return Estimate(
        value=mean,
        error=math.sqrt(1.0 / wsum),
        n_eval=sum(e.n_eval for e in estimates),
        chi2_dof=chi2 / (len(estimates) - 1),
    )


class Integrator(ABC):
    """Adaptive Monte Carlo integrator on the unit hypercube [0, 1)^n_dim.

    Contract: ``sample(n)`` returns points ``r`` and Jacobians ``jac`` such that
    ``mean(f(r) * jac)`` is an unbiased estimate of the integral of ``f``.
    """

    n_dim: int

    @abstractmethod
    def train(self, f: Integrand, n_iter: int, n_per_iter: int) -> Estimate:
        """Adapt to ``f`` over ``n_iter`` iterations; return the combined estimate."""

    @abstractmethod
    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        """Draw ``n`` points: (r of shape (n, n_dim), jacobian of shape (n,))."""

    def integrate(self, f: Integrand, n_iter: int, n_per_iter: int) -> Estimate:
        """Estimate the integral with fresh samples and no adaptation."""
        estimates = []
        for _ in range(n_iter):
            r, jac = self.sample(n_per_iter)
            w = f(r) * jac
            mean = float(w.mean())
            err = float(w.std() / math.sqrt(len(w))) if len(w) > 1 else math.inf
            estimates.append(Estimate(mean, err, len(w)))
        return combine_estimates(estimates)

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the trained sampler."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict`."""
