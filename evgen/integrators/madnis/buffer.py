"""Replay buffer of evaluated points for buffered training (MadNIS Reloaded, arXiv:2311.01548).

Each entry is one point drawn in an online round: its flow-space coordinates ``y``, its
channel, the integrand there (without channel weight, on the flow's cube: f J_c J_vegas),
log prior weights, features, and log q_sample(y), the density it was drawn from. A later
step reuses it with the importance weight q_theta(y) / q_sample(y).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Batch", "ReplayBuffer"]


@dataclass
class Batch:
    """Points with everything a loss needs (first axis: points).

    Attributes:
        y: (n, d) flow-space points.
        channel: (n,) int64 channel index.
        weights: (n,) integrand on the flow's cube without channel weight.
        log_prior: (n, C) log prior channel weights.
        features: (n, F) channel-network features, or None.
        log_q_sample: (n,) log density the points were drawn from.
    """

    y: Tensor
    channel: Tensor
    weights: Tensor
    log_prior: Tensor
    features: Tensor | None
    log_q_sample: Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def select(self, index: Tensor) -> Batch:
        """The points ``index`` (a bool mask or integer indices)."""
        return Batch(
            self.y[index],
            self.channel[index],
            self.weights[index],
            self.log_prior[index],
            None if self.features is None else self.features[index],
            self.log_q_sample[index],
        )

    @staticmethod
    def cat(batches: list[Batch]) -> Batch:
        """All points of ``batches`` in order (features kept only if all have them)."""
        feats = [b.features for b in batches]
        return Batch(
            torch.cat([b.y for b in batches]),
            torch.cat([b.channel for b in batches]),
            torch.cat([b.weights for b in batches]),
            torch.cat([b.log_prior for b in batches]),
            None if any(f is None for f in feats) else torch.cat(feats),  # type: ignore[arg-type]
            torch.cat([b.log_q_sample for b in batches]),
        )


class ReplayBuffer:
    """First-in-first-out store of the last ``capacity`` rounds of points."""

    def __init__(self, capacity_rounds: int) -> None:
        self.capacity_rounds = int(capacity_rounds)
        self._rounds: list[Batch] = []

    def add(self, batch: Batch) -> None:
        self._rounds.append(batch)
        del self._rounds[: -self.capacity_rounds]

    def clear(self) -> None:
        self._rounds.clear()

    def __len__(self) -> int:
        return sum(len(b) for b in self._rounds)

    def sample(self, n: int, generator: torch.Generator) -> Batch:
        """A minibatch of ``min(n, len(self))`` distinct points, uniformly at random."""
        data = Batch.cat(self._rounds)
        size = len(data)
        perm = torch.randperm(size, generator=generator, device=generator.device)
        return data.select(perm[: min(n, size)].to(data.y.device))
