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

import torch
from torch import Tensor

__all__ = [
    "Estimate",
    "Integrand",
    "Integrator",
    "average_estimates",
    "combine_estimates",
    "seeded_generator",
]

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


def seeded_generator(
    seed: int | None, device: torch.device | str = "cpu", generator: torch.Generator | None = None
) -> torch.Generator:
    """The random generator an integrator draws from: ``generator`` if given (re-seeded
    with ``seed`` when one is given), else a new one on ``device`` seeded with ``seed``
    (from fresh entropy when ``seed`` is None)."""
    if generator is None:
        generator = torch.Generator(device=torch.device(device))
        if seed is None:
            generator.seed()
    if seed is not None:
        generator.manual_seed(int(seed))
    return generator


def average_estimates(estimates: Sequence[Estimate]) -> Estimate:
    """Plain mean of independent, identically distributed estimates (a frozen sampler):
    error sqrt(sum sigma_i^2) / n. Unlike the inverse-variance average it has no bias from
    the correlation of each estimate with its error; chi^2/dof measures consistency."""
    if not estimates:
        raise ValueError("no estimates to average")
    n = len(estimates)
    if n == 1:
        return estimates[0]
    mean = sum(e.value for e in estimates) / n
    error = math.sqrt(sum(e.error**2 for e in estimates)) / n
    chi2 = sum((e.value - mean) ** 2 / e.error**2 for e in estimates if e.error > 0)
    return Estimate(mean, error, sum(e.n_eval for e in estimates), chi2 / (n - 1))


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
        """Estimate the integral with fresh samples and no adaptation (plain mean of the
        ``n_iter`` independent iterations, :func:`average_estimates`)."""
        if n_iter < 1 or n_per_iter < 2:
            raise ValueError(
                f"{type(self).__name__}.integrate: need n_iter >= 1 and n_per_iter >= 2, "
                f"got {n_iter}, {n_per_iter}"
            )
        estimates = []
        for _ in range(n_iter):
            r, jac = self.sample(n_per_iter)
            w = f(r).to(jac.dtype) * jac
            estimates.append(Estimate(float(w.mean()), float(w.std() / math.sqrt(len(w))), len(w)))
        return average_estimates(estimates)

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the trained sampler."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict`."""
