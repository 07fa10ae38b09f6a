"""Typed settings of :class:`~evgen.integrators.madnis.MadNIS` (one frozen dataclass)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["MadNISConfig"]

FlowMode = Literal["auto", "per_channel", "conditional"]


@dataclass(frozen=True)
class MadNISConfig:
    """Everything about MadNIS that is not the problem (dimension, channels, seed, loss).

    Flows (one :class:`~evgen.ml.UnitHypercubeFlow` per channel, or one conditional flow):
        flow_mode: ``"per_channel"``, ``"conditional"`` (one flow with a one-hot channel
            context) or ``"auto"`` (per-channel flows for at most ``max_channel_flows``
            channels, one conditional flow beyond).
        max_channel_flows: the ``"auto"`` threshold.
        flow_layers: coupling layers per flow (None: the flow's default).
        flow_bins: spline bins per layer and dimension.
        flow_hidden, flow_hidden_layers: conditioner network width and depth.

    Channel weights alpha_c(x) = softmax_c(log prior_c(x) + NN_c(features(x))):
        learn_channel_weights: train the correction network (False: alpha = prior).
        cw_hidden, cw_hidden_layers: its width and depth.

    Training (online rounds, each followed by buffered steps):
        learning_rate: Adam's step size for flows and channel-weight network together
            (the peak of the schedule).
        lr_schedule: ``"cosine"``: every :meth:`~MadNIS.train` call decays the step size
            from ``learning_rate`` to ``final_lr_fraction`` of it over its planned steps
            (rounds x (1 + buffered_steps)), so the flows settle instead of jittering at
            the end (fewer rare large weights); ``"constant"``: no decay.
        final_lr_fraction: the cosine schedule's last step size over the peak.
        buffered_steps: optimisation steps per round on minibatches drawn from the
            replay buffer, after the one step on the round's fresh points (0: purely
            online training).
        buffer_rounds: how many rounds of points the buffer keeps (first in, first out).
        batch_size: minibatch size of the buffered steps (None: the round's size).
        grad_clip: clip the gradient norm to this value (None: no clipping).
        discard: rounds at the start of ``train`` left out of its estimate
            (None: half of them, as in :meth:`Vegas.train`).

    Annealing (exploration of several modes; off by default):
        anneal_rounds: the first this many training rounds train on the tempered target
            |g|^beta (sign kept) with beta rising geometrically from ``anneal_start`` to
            1; later rounds on g itself. A flat tempered target lets the flows see every
            peak before they sharpen (a multi-peaked integrand in many dimensions, where
            plain training locks onto the first peak it finds). Only the loss is
            tempered: every estimate uses g, so the integral stays unbiased.
        anneal_start: beta of the first round, in (0, 1].

    Stratified allocation of points to channels (Neyman, n_c proportional to sigma_c):
        min_channel_fraction: every active channel gets at least this fraction of an
            equal share ``n / C_active`` (and never fewer than 2 points).
        drop_threshold: a channel whose share of sum_c |I_c| falls below this is dropped
            (0: never drop) ...
        drop_after: ... once this many training rounds have been done in total.
    """

    flow_mode: FlowMode = "auto"
    max_channel_flows: int = 8
    flow_layers: int | None = None
    flow_bins: int = 10
    flow_hidden: int = 32
    flow_hidden_layers: int = 2
    learn_channel_weights: bool = True
    cw_hidden: int = 32
    cw_hidden_layers: int = 2
    learning_rate: float = 1e-3
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    final_lr_fraction: float = 0.01
    buffered_steps: int = 3
    buffer_rounds: int = 5
    batch_size: int | None = None
    grad_clip: float | None = 10.0
    discard: int | None = None
    anneal_rounds: int = 0
    anneal_start: float = 0.01
    min_channel_fraction: float = 0.1
    drop_threshold: float = 1e-4
    drop_after: int = 5

    def __post_init__(self) -> None:
        problems = []
        if self.flow_mode not in ("auto", "per_channel", "conditional"):
            problems.append(
                f"flow_mode must be auto, per_channel or conditional, got {self.flow_mode!r}"
            )
        if self.max_channel_flows < 1:
            problems.append(f"max_channel_flows must be >= 1, got {self.max_channel_flows}")
        if self.flow_bins < 2:
            problems.append(f"flow_bins must be >= 2, got {self.flow_bins}")
        if self.learning_rate <= 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.lr_schedule not in ("cosine", "constant"):
            problems.append(f"lr_schedule must be cosine or constant, got {self.lr_schedule!r}")
        if not 0.0 < self.final_lr_fraction <= 1.0:
            problems.append(f"final_lr_fraction must be in (0, 1], got {self.final_lr_fraction}")
        if self.buffered_steps < 0:
            problems.append(f"buffered_steps must be >= 0, got {self.buffered_steps}")
        if self.buffer_rounds < 1:
            problems.append(f"buffer_rounds must be >= 1, got {self.buffer_rounds}")
        if self.batch_size is not None and self.batch_size < 2:
            problems.append(f"batch_size must be >= 2, got {self.batch_size}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            problems.append(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.discard is not None and self.discard < 0:
            problems.append(f"discard must be >= 0, got {self.discard}")
        if self.anneal_rounds < 0:
            problems.append(f"anneal_rounds must be >= 0, got {self.anneal_rounds}")
        if not 0.0 < self.anneal_start <= 1.0:
            problems.append(f"anneal_start must be in (0, 1], got {self.anneal_start}")
        if not 0.0 <= self.min_channel_fraction <= 1.0:
            problems.append(
                f"min_channel_fraction must be in [0, 1], got {self.min_channel_fraction}"
            )
        if not 0.0 <= self.drop_threshold < 1.0:
            problems.append(f"drop_threshold must be in [0, 1), got {self.drop_threshold}")
        if self.drop_after < 0:
            problems.append(f"drop_after must be >= 0, got {self.drop_after}")
        if problems:
            raise ValueError("MadNISConfig: " + "; ".join(problems))
