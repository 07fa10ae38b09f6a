"""A binary classifier between two weighted samples, and the likelihood ratio it learns.

Trained with the weighted binary cross-entropy, a well-calibrated classifier approaches
:math:`D(x) = p_1(x) / (p_0(x) + p_1(x))` when the two classes carry equal total weight,
so that :math:`D / (1 - D) = p_1(x) / p_0(x)` is the density ratio of the two samples.
That ratio reweights one sample into the other: OmniFold's two steps, the prior
correction of generative unfolding, and the reweighting of generated events.

* :class:`ClassifierConfig`: network size and training settings.
* :class:`Classifier`: :meth:`~Classifier.fit` on (x0, w0) vs (x1, w1), then
  :meth:`~Classifier.probability` and :meth:`~Classifier.likelihood_ratio` (float64).
* :func:`auc`: the (weighted) area under the ROC curve of a score.

Example:
    >>> gen = torch.Generator().manual_seed(0)
    >>> x0 = torch.randn(2000, 1, generator=gen, dtype=torch.float64)
    >>> x1 = torch.randn(2000, 1, generator=gen, dtype=torch.float64) + 1.0
    >>> clf = Classifier(1, ClassifierConfig(epochs=5)).fit(x0, x1)
    >>> clf.likelihood_ratio(torch.zeros(1, 1, dtype=torch.float64)).shape
    torch.Size([1])
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from evgen.ml.nn import MLP
from evgen.ml.training import Trainer, TrainingConfig

__all__ = ["Classifier", "ClassifierConfig", "ClassifierEpoch", "auc"]


@dataclass
class ClassifierConfig:
    """How to build and train a :class:`Classifier`.

    Attributes:
        hidden: width of the hidden layers.
        layers: number of hidden layers.
        epochs: maximal number of passes over the training split.
        batch_size: events per optimiser step.
        learning_rate: AdamW (peak) learning rate.
        weight_decay: AdamW decoupled weight decay.
        validation_fraction: fraction of each class held out for early stopping (0: no
            validation split, train all ``epochs``).
        patience: stop after this many epochs without a lower validation loss; the
            parameters of the best epoch are restored.
        seed: seeds the initialisation, the split and the batch order.
        dtype: dtype of the network (inputs are converted once, in ``_prepare``).
        schedule: learning rate ``"constant"`` or ``"cosine"`` (from ``learning_rate``
            down to 1 % of it over ``epochs``; early stopping may end it sooner).
    """

    hidden: int = 64
    layers: int = 3
    epochs: int = 30
    batch_size: int = 4096
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    validation_fraction: float = 0.2
    patience: int = 5
    seed: int = 0
    dtype: torch.dtype = field(default=torch.float32)
    schedule: Literal["constant", "cosine"] = "constant"

    def __post_init__(self) -> None:
        problems = []
        if self.hidden < 1 or self.layers < 0:
            problems.append(f"need hidden >= 1 and layers >= 0, got {self.hidden}, {self.layers}")
        if self.epochs < 1:
            problems.append(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.learning_rate > 0:
            problems.append(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.weight_decay < 0:
            problems.append(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.validation_fraction < 1:
            problems.append(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        if self.patience < 1:
            problems.append(f"patience must be >= 1, got {self.patience}")
        if self.schedule not in ("constant", "cosine"):
            problems.append(f"schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.seed < 0:
            problems.append(f"seed must be >= 0, got {self.seed}")
        if problems:
            raise ValueError("classifier: " + "; ".join(problems))


@dataclass(frozen=True)
class ClassifierEpoch:
    """What the :meth:`Classifier.fit` callback sees after each epoch.

    Attributes:
        epoch: epochs done (1-based).
        train_loss: weighted BCE averaged over the epoch's batches.
        validation_loss: weighted BCE on the validation split (NaN without one).
        best_epoch: the epoch with the lowest validation loss so far.
    """

    epoch: int
    train_loss: float
    validation_loss: float
    best_epoch: int


def _weights(w: Tensor | None, n: int, name: str, device: torch.device) -> Tensor:
    if w is None:
        return torch.ones(n, dtype=torch.float64, device=device)
    if w.shape != (n,):
        raise ValueError(f"classifier: {name} must have shape ({n},), got {tuple(w.shape)}")
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"classifier: {name} has non-finite weights")
    return w.to(torch.float64)


class Classifier(nn.Module):
    r"""An MLP classifier :math:`D(x) = \sigma(f(x))` between class 0 and class 1.

    Inputs are standardised with the (weighted, pooled) mean and standard deviation of
    the training data, stored as buffers. Training minimises the weighted BCE with
    logits, the class weights rescaled so both classes carry the same total weight (so
    :math:`D/(1-D)` estimates :math:`p_1/p_0` of the *normalised* densities). Negative
    event weights are allowed (the loss is then not bounded below per event, but the
    weighted sum is, as long as each class's density is positive).

    Args:
        n_features: number of input features d.
        config: :class:`ClassifierConfig` (defaults if None).

    Shapes: x (n, d) -> probability, likelihood ratio (n,), float64.
    """

    def __init__(self, n_features: int, config: ClassifierConfig | None = None) -> None:
        super().__init__()
        if n_features < 1:
            raise ValueError(f"classifier: n_features must be >= 1, got {n_features}")
        self.config = config or ClassifierConfig()
        self.n_features = n_features
        cfg = self.config
        with torch.random.fork_rng(devices=[]):  # a reproducible initialisation that
            torch.manual_seed(cfg.seed)  # leaves the global random state alone
            self.net = MLP(
                n_features, 1, hidden=cfg.hidden, hidden_layers=cfg.layers, dtype=cfg.dtype
            )
        self.register_buffer("shift", torch.zeros(n_features, dtype=cfg.dtype))
        self.register_buffer("scale", torch.ones(n_features, dtype=cfg.dtype))
        self.history: list[ClassifierEpoch] = []

    def _prepare(self, x: Tensor) -> Tensor:
        """Check the shape and convert to the network dtype and device, standardised."""
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(
                f"classifier: inputs must have shape (n, {self.n_features}), got {tuple(x.shape)}"
            )
        x = x.to(device=self.shift.device, dtype=self.config.dtype)
        return (x - self.shift) / self.scale

    def logits(self, x: Tensor) -> Tensor:
        """Raw network output f(x), shape (n,), in the network dtype (differentiable)."""
        return self.net(self._prepare(x)).squeeze(-1)

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`logits`."""
        return self.logits(x)

    @torch.no_grad()
    def _logits_batched(self, x: Tensor, batch: int = 65536) -> Tensor:
        self.eval()
        if x.shape[0] == 0:
            return torch.zeros(0, dtype=torch.float64, device=self.shift.device)
        return torch.cat([self.logits(c).double() for c in torch.split(x, batch)])

    def probability(self, x: Tensor) -> Tensor:
        """D(x) = P(class 1 | x), float64, shape (n,), on the classifier's device."""
        return torch.sigmoid(self._logits_batched(x))

    def likelihood_ratio(self, x: Tensor, clip: float | None = None) -> Tensor:
        """D/(1-D) = exp(f(x)), the learned density ratio p_1(x)/p_0(x), float64, (n,).

        Args:
            clip: if given, the ratio is clipped to [1/clip, clip].
        """
        logit = self._logits_batched(x)
        if clip is not None:
            if not clip > 1:
                raise ValueError(f"classifier: clip must be > 1, got {clip}")
            bound = math.log(clip)
            logit = logit.clamp(-bound, bound)
        return torch.exp(logit)

    def fit(
        self,
        x0: Tensor,
        x1: Tensor,
        w0: Tensor | None = None,
        w1: Tensor | None = None,
        callback: Callable[[ClassifierEpoch], bool | None] | None = None,
    ) -> Classifier:
        """Train on class 0 (x0, w0) against class 1 (x1, w1); returns self.

        Args:
            x0: (n0, d) class-0 events; x1: (n1, d) class-1 events (any dtype/device:
                training runs on the classifier's device, moved to x0's device first).
            w0, w1: (n0,), (n1,) event weights (ones if None), negative allowed; each
                class is rescaled to total weight 1 (then both to the mean event count).
            callback: called with a :class:`ClassifierEpoch` after every epoch; True stops.

        Early stopping: with ``validation_fraction > 0``, a random fraction of each class
        is held out; training stops after ``patience`` epochs without improvement of the
        validation loss and the best parameters are restored.
        """
        cfg = self.config
        if x0.ndim != 2 or x1.ndim != 2 or x0.shape[1] != x1.shape[1]:
            raise ValueError(
                f"classifier: x0 and x1 must be (n, d) with the same d, got "
                f"{tuple(x0.shape)} and {tuple(x1.shape)}"
            )
        if x0.shape[1] != self.n_features:
            raise ValueError(f"classifier: built for {self.n_features} features, got {x0.shape[1]}")
        if x0.shape[0] < 2 or x1.shape[0] < 2:
            raise ValueError("classifier: each class needs at least 2 events")
        device = x0.device
        self.to(device)
        w0 = _weights(w0, x0.shape[0], "w0", device)
        w1 = _weights(w1, x1.shape[0], "w1", x1.device).to(device)
        x1 = x1.to(device)
        s0, s1 = float(w0.sum()), float(w1.sum())
        if not (s0 > 0 and s1 > 0):
            raise ValueError(
                f"classifier: each class needs a positive total weight, got {s0:.6g}, {s1:.6g}"
            )
        x = torch.cat([x0, x1]).to(torch.float64)
        y = torch.cat([x0.new_zeros(x0.shape[0]), x1.new_ones(x1.shape[0])]).to(torch.float64)
        n_mean = 0.5 * (x0.shape[0] + x1.shape[0])
        w = torch.cat([w0 / s0, w1 / s1]) * n_mean  # balanced classes, mean |weight| ~ 1

        # standardisation with the pooled, class-balanced weights (|w| keeps it positive)
        wa = w.abs()
        mean = (wa[:, None] * x).sum(0) / wa.sum()
        std = ((wa[:, None] * (x - mean) ** 2).sum(0) / wa.sum()).sqrt()
        std = torch.where(std > 0, std, torch.ones_like(std))
        self.shift.copy_(mean.to(cfg.dtype))
        self.scale.copy_(std.to(cfg.dtype))

        gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
        n = x.shape[0]
        perm = torch.randperm(n, generator=gen).to(device)
        n_val = int(round(cfg.validation_fraction * n)) if cfg.validation_fraction > 0 else 0
        val_idx, train_idx = perm[:n_val], perm[n_val:]
        xt, yt, wt = x[train_idx], y[train_idx].to(cfg.dtype), w[train_idx].to(cfg.dtype)
        xv, yv, wv = x[val_idx], y[val_idx].to(cfg.dtype), w[val_idx].to(cfg.dtype)
        n_train = xt.shape[0]
        batches = max(1, math.ceil(n_train / cfg.batch_size))
        trainer = Trainer(
            self.net,
            TrainingConfig(
                steps=cfg.epochs * batches,
                learning_rate=cfg.learning_rate,
                weight_decay=cfg.weight_decay,
                schedule=cfg.schedule,
                max_grad_norm=None,
            ),
        )
        xt_std = self._prepare(xt)
        xv_std = self._prepare(xv) if n_val else xv

        def bce(logit: Tensor, target: Tensor, weight: Tensor) -> Tensor:
            # the weights average 1 per event, so a plain mean keeps the scale of the loss
            # independent of the batch (and well defined with negative weights)
            loss = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
            return (weight * loss).mean()

        best_loss, best_epoch, best_state = math.inf, 0, None
        self.history = []
        for epoch in range(1, cfg.epochs + 1):
            order = torch.randperm(n_train, generator=gen).to(device)
            total = 0.0
            for idx in torch.split(order, cfg.batch_size):
                xb, yb, wb = xt_std[idx], yt[idx], wt[idx]

                def loss_fn(xb: Tensor = xb, yb: Tensor = yb, wb: Tensor = wb) -> Tensor:
                    return bce(self.net(xb).squeeze(-1), yb, wb)

                loss, _ = trainer.step(loss_fn)
                total += loss
            train_loss = total / batches
            if n_val:
                self.net.eval()
                with torch.no_grad():
                    val_loss = float(bce(self.net(xv_std).squeeze(-1), yv, wv))
            else:
                val_loss = math.nan
            improved = n_val == 0 or val_loss < best_loss
            if improved:
                best_loss, best_epoch = (val_loss if n_val else best_loss), epoch
                if n_val:
                    best_state = copy.deepcopy(self.net.state_dict())
            record = ClassifierEpoch(epoch, train_loss, val_loss, best_epoch)
            self.history.append(record)
            if callback is not None and callback(record):
                break
            if n_val and epoch - best_epoch >= cfg.patience:
                break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self.eval()
        return self


def auc(scores: Tensor, labels: Tensor, weights: Tensor | None = None) -> float:
    """Weighted area under the ROC curve of ``scores`` for ``labels`` (1 = signal).

    AUC = P(score of a class-1 event > score of a class-0 event) with ties counted 1/2,
    each pair weighted by the product of the event weights; computed by sorting (n log n),
    float64.

    Args:
        scores: (n,) scores (higher = more class-1 like).
        labels: (n,) 0/1 or bool labels.
        weights: (n,) event weights (ones if None).

    Returns:
        The AUC in [0, 1] (for positive weights).
    """
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(
            f"auc: scores and labels must be (n,) of one length, got {tuple(scores.shape)} "
            f"and {tuple(labels.shape)}"
        )
    s = scores.to(torch.float64)
    lab = labels.to(torch.bool)
    w = torch.ones_like(s) if weights is None else weights.to(device=s.device, dtype=torch.float64)
    if w.shape != s.shape:
        raise ValueError(f"auc: weights must have shape {tuple(s.shape)}, got {tuple(w.shape)}")
    w1 = torch.where(lab, w, torch.zeros_like(w))
    w0 = torch.where(lab, torch.zeros_like(w), w)
    total1, total0 = w1.sum(), w0.sum()
    if not (float(total1) != 0 and float(total0) != 0):
        raise ValueError("auc: both classes need a non-zero total weight")
    uniq, inverse = torch.unique(s, sorted=True, return_inverse=True)
    m = uniq.shape[0]
    c1 = torch.zeros(m, dtype=torch.float64, device=s.device).index_add_(0, inverse, w1)
    c0 = torch.zeros(m, dtype=torch.float64, device=s.device).index_add_(0, inverse, w0)
    below0 = torch.cumsum(c0, 0) - c0  # class-0 weight strictly below each unique score
    pairs = (c1 * (below0 + 0.5 * c0)).sum()
    return float(pairs / (total1 * total0))
