"""Target densities with exact normalisation and exact samplers, shared by the ML tests."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["truncated_gaussian"]

F64 = torch.float64


def truncated_gaussian(
    mu: torch.Tensor, sigma: torch.Tensor
) -> tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[int, torch.Generator], torch.Tensor]]:
    """A product of Gaussians (means ``mu``, widths ``sigma``, shape (d,)) truncated to the
    unit cube: (log_p(x) exactly normalised on the cube, draw(n, generator) by inversion)."""
    d = mu.shape[0]

    def cdf(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (1 + torch.erf((x - mu) / (sigma * math.sqrt(2))))

    lo, hi = cdf(torch.zeros(d, dtype=F64)), cdf(torch.ones(d, dtype=F64))
    log_norm = torch.log(hi - lo).sum()

    def log_p(x: torch.Tensor) -> torch.Tensor:
        z = (x - mu) / sigma
        return (-0.5 * z**2 - torch.log(sigma * math.sqrt(2 * math.pi))).sum(1) - log_norm

    def draw(n: int, g: torch.Generator) -> torch.Tensor:
        u = lo + (hi - lo) * torch.rand(n, d, generator=g, dtype=F64)
        return mu + sigma * math.sqrt(2) * torch.erfinv(2 * u - 1)

    return log_p, draw
