"""One training core for every model of evgen: integrators, generators, unfolding.

* :func:`seed_everything`: seed Python, NumPy and torch (CPU and CUDA) and return a
  ``torch.Generator`` to pass down explicitly.
* :class:`Trainer`: Adam(W) with an optional warm-up + cosine learning-rate schedule and
  gradient-norm clipping, stepping on any loss callable. ``step`` serves online training
  (MadNIS: sample, evaluate the integrand, take a step); ``fit`` runs a loop and
  reports :class:`TrainingProgress` to a callback (the library never prints: the
  command line draws the progress).
* :func:`save_checkpoint` / :func:`load_checkpoint`: module, optimizer and scheduler
  state plus user data, written atomically (:func:`evgen.io.atomic.atomic_output`) and
  read with ``torch.load(weights_only=True)`` (no arbitrary code runs on load).

Example:
    >>> from evgen.ml import UnitHypercubeFlow
    >>> gen = seed_everything(1)
    >>> flow = UnitHypercubeFlow(2)
    >>> data = torch.rand(10_000, 2, dtype=torch.float64, generator=gen)
    >>> def loss():
    ...     batch = data[torch.randint(len(data), (256,), generator=gen)]
    ...     return -flow.log_prob(batch).mean()
    >>> trainer = Trainer(flow, TrainingConfig(steps=20, learning_rate=3e-3))
    >>> result = trainer.fit(loss, callback=lambda p: None)  # a CLI draws p.step, p.loss
    >>> result.steps
    20
    >>> save_checkpoint("flow.pt", flow, trainer.optimizer, {"seed": 1},
    ...                 scheduler=trainer.scheduler)          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from evgen.io.atomic import atomic_output
from evgen.ml.errors import CheckpointError, TrainingError

__all__ = [
    "CHECKPOINT_FORMAT",
    "Trainer",
    "TrainingConfig",
    "TrainingProgress",
    "TrainingResult",
    "load_checkpoint",
    "save_checkpoint",
    "seed_everything",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "evgen-ml-checkpoint-1"
"""Tag stored in every checkpoint; :func:`load_checkpoint` refuses other files."""

LossFunction = Callable[[], Tensor]
ProgressCallback = Callable[["TrainingProgress"], "bool | None"]


def seed_everything(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """Seed Python's ``random``, NumPy's global state and torch (CPU and all CUDA devices).

    Global seeding makes third-party code reproducible; evgen code itself takes the
    returned generator (seeded with ``seed``, on ``device``) as an explicit argument.

    Args:
        seed: a non-negative integer.
        device: device of the returned generator.

    Returns:
        A ``torch.Generator`` on ``device`` seeded with ``seed``.
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (seeding third-party global state)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator(device=device).manual_seed(seed)


@dataclass(frozen=True)
class TrainingConfig:
    """How to train.

    Attributes:
        steps: optimiser steps of :meth:`Trainer.fit`; the schedule spans them (later
            calls of :meth:`Trainer.step` keep the final learning rate).
        learning_rate: peak learning rate of Adam(W).
        weight_decay: decoupled weight decay (AdamW); 0 is plain Adam.
        max_grad_norm: clip the global gradient 2-norm to this (None: no clipping).
        schedule: ``"cosine"`` (from the peak down to ``final_lr_fraction`` of it) or
            ``"constant"``.
        warmup_steps: linear warm-up from 0 to the peak (both schedules).
        final_lr_fraction: the cosine schedule's last learning rate over the peak.
        report_every: call the progress callback every this many steps (and at the last).
    """

    steps: int = 1000
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    max_grad_norm: float | None = 10.0
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = 0
    final_lr_fraction: float = 0.01
    report_every: int = 10

    def __post_init__(self) -> None:
        problems = []
        if self.steps < 1:
            problems.append(f"steps must be >= 1, got {self.steps}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            problems.append(f"max_grad_norm must be > 0 or None, got {self.max_grad_norm}")
        if self.schedule not in ("cosine", "constant"):
            problems.append(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.warmup_steps < 0:
            problems.append(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if not 0 <= self.final_lr_fraction <= 1:
            problems.append(f"final_lr_fraction must be in [0, 1], got {self.final_lr_fraction}")
        if self.report_every < 1:
            problems.append(f"report_every must be >= 1, got {self.report_every}")
        if problems:
            raise ValueError("training: " + "; ".join(problems))

    def lr_factor(self, step: int) -> float:
        """Learning rate over the peak before optimiser step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        if self.schedule == "constant":
            return 1.0
        span = max(1, self.steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        floor = self.final_lr_fraction
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class TrainingProgress:
    """What the progress callback sees.

    Attributes:
        step: optimiser steps done so far (1-based, counted over the trainer's life).
        total_steps: steps this ``fit`` call will reach.
        loss: loss of the last step.
        mean_loss: mean loss since the previous report.
        learning_rate: learning rate of the last step.
        grad_norm: global gradient 2-norm of the last step, before clipping.
        elapsed_s: seconds since this ``fit`` call began.
    """

    step: int
    total_steps: int
    loss: float
    mean_loss: float
    learning_rate: float
    grad_norm: float
    elapsed_s: float


@dataclass(frozen=True)
class TrainingResult:
    """The outcome of :meth:`Trainer.fit`.

    Attributes:
        steps: steps taken in this call.
        losses: the loss of every step, in order.
        stopped_early: the callback asked to stop.
        elapsed_s: wall-clock seconds.
    """

    steps: int
    losses: tuple[float, ...]
    stopped_early: bool
    elapsed_s: float


class Trainer:
    """Adam(W) + schedule + clipping around a module; steps on loss callables.

    Args:
        module: the model; moved to ``device`` if given.
        config: :class:`TrainingConfig`.
        device: where to train (``"cpu"``, ``"cuda"``, ...); None leaves the module where
            it is. Loss callables must produce their batches on :attr:`device`.
        parameters: the parameters to optimise (default: all of the module's).

    Attributes:
        optimizer: the ``torch.optim.AdamW`` instance.
        scheduler: the ``LambdaLR`` scheduler (:meth:`TrainingConfig.lr_factor`).
        step_count: optimiser steps taken.
    """

    def __init__(
        self,
        module: nn.Module,
        config: TrainingConfig | None = None,
        *,
        device: str | torch.device | None = None,
        parameters: Iterable[nn.Parameter] | None = None,
    ) -> None:
        self.config = config or TrainingConfig()
        if device is not None:
            module.to(device)
        self.module = module
        source = module.parameters() if parameters is None else parameters
        params = [p for p in source if p.requires_grad]
        if not params:
            raise ValueError("training: the module has no trainable parameters")
        self._params = params
        self.optimizer = torch.optim.AdamW(
            params, lr=self.config.learning_rate, weight_decay=self.config.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.config.lr_factor)
        self.step_count = 0

    @property
    def device(self) -> torch.device:
        """Device of the (first) trained parameter."""
        return self._params[0].device

    def step(self, loss_fn: LossFunction) -> tuple[float, float]:
        """One optimiser step on ``loss_fn()``; returns (loss, gradient norm before clipping).

        Raises:
            TrainingError: the loss or the gradient is not finite (the parameters are
                left unchanged); the message names the step and the learning rate.
        """
        self.module.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = loss_fn()
        if loss.ndim != 0:
            raise ValueError(f"training: the loss must be a scalar, got shape {tuple(loss.shape)}")
        value = float(loss.detach())
        lr = self.optimizer.param_groups[0]["lr"]
        if not math.isfinite(value):
            raise TrainingError(
                f"training: loss is {value} at step {self.step_count + 1} "
                f"(learning rate {lr:.3g}); lower the learning rate or check the inputs"
            )
        loss.backward()
        max_norm = self.config.max_grad_norm if self.config.max_grad_norm is not None else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self._params, max_norm))
        if not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise TrainingError(
                f"training: gradient norm is {grad_norm} at step {self.step_count + 1} "
                f"(loss {value:.6g}, learning rate {lr:.3g}); lower the learning rate "
                "or check the inputs"
            )
        self.optimizer.step()
        self.scheduler.step()
        self.step_count += 1
        return value, grad_norm

    def fit(
        self,
        loss_fn: LossFunction,
        *,
        steps: int | None = None,
        callback: ProgressCallback | None = None,
    ) -> TrainingResult:
        """Take ``steps`` (default ``config.steps``) optimiser steps on ``loss_fn``.

        Args:
            loss_fn: returns a scalar loss; called once per step (it draws its own
                batch, e.g. from a buffer or from the model).
            steps: number of steps of this call.
            callback: receives a :class:`TrainingProgress` every ``report_every`` steps
                and after the last; returning True stops training after that step.

        Returns:
            :class:`TrainingResult`.
        """
        n = self.config.steps if steps is None else steps
        if n < 1:
            raise ValueError(f"training: steps must be >= 1, got {n}")
        start = time.perf_counter()
        first = self.step_count
        losses: list[float] = []
        since_report: list[float] = []
        stopped = False
        for i in range(n):
            lr = self.optimizer.param_groups[0]["lr"]
            loss, grad_norm = self.step(loss_fn)
            losses.append(loss)
            since_report.append(loss)
            last = i == n - 1
            if (i + 1) % self.config.report_every == 0 or last:
                progress = TrainingProgress(
                    step=self.step_count,
                    total_steps=first + n,
                    loss=loss,
                    mean_loss=sum(since_report) / len(since_report),
                    learning_rate=lr,
                    grad_norm=grad_norm,
                    elapsed_s=time.perf_counter() - start,
                )
                since_report = []
                logger.debug("training step %d: loss %.6g", progress.step, loss)
                if callback is not None and callback(progress) and not last:
                    stopped = True
                    break
        return TrainingResult(len(losses), tuple(losses), stopped, time.perf_counter() - start)

    def state_dict(self) -> dict[str, Any]:
        """Optimiser, scheduler and step count (the module is saved separately)."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step_count": self.step_count,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state produced by :meth:`state_dict`."""
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step_count = int(state["step_count"])


def save_checkpoint(
    path: str | os.PathLike[str],
    module: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    extra: Mapping[str, Any] | None = None,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> None:
    """Write module (and optimiser, scheduler) state and ``extra`` to ``path`` atomically.

    The file is a ``torch.save`` dictionary ``{"format", "module", "optimizer",
    "scheduler", "extra"}``; it appears complete or not at all.

    Args:
        path: target file (its folder must exist).
        module: the model.
        optimizer: its optimiser, to resume training (optional).
        extra: user data: tensors, numbers, strings, bools, None, and lists, tuples and
            dicts of these (what ``torch.load(weights_only=True)`` accepts), e.g. the
            card, a seed, a cross section.
        scheduler: the learning-rate scheduler (optional).

    Raises:
        OutputError: the file cannot be written (the message names it).
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "module": module.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "extra": dict(extra) if extra is not None else {},
    }
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(
    path: str | os.PathLike[str],
    module: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    map_location: str | torch.device | None = "cpu",
) -> dict[str, Any]:
    """Restore a :func:`save_checkpoint` file into ``module`` (and optimiser, scheduler).

    Args:
        path: the checkpoint file.
        module: a module of the same architecture; its parameters are overwritten.
        optimizer: if given, its state is restored (the file must hold one).
        scheduler: if given, its state is restored (the file must hold one).
        map_location: where tensors are loaded (default CPU; ``load_state_dict`` then
            copies them onto the module's device).

    Returns:
        The ``extra`` dictionary that was saved.

    Raises:
        CheckpointError: the file is missing, unreadable, not an evgen checkpoint, or
            does not fit ``module``/``optimizer``; the message names the file.
    """
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # OSError, pickle.UnpicklingError, zip errors, ...
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not an evgen checkpoint ({CHECKPOINT_FORMAT})")
    try:
        module.load_state_dict(payload["module"])
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} does not fit the model: {error}") from error
    for name, target in (("optimizer", optimizer), ("scheduler", scheduler)):
        if target is None:
            continue
        if payload[name] is None:
            raise CheckpointError(f"checkpoint {path} holds no {name} state")
        target.load_state_dict(payload[name])
    return payload["extra"]
