r"""Multi-channel integrands and learned channel weights.

Multi-channel decomposition (MadGraph's single-diagram enhancement, MadNIS
arXiv:2212.06172 sec. 2): with channel weights alpha_c(x) >= 0 and
:math:`\sum_c \alpha_c(x) = 1` at every physical point x,

.. math::
    I = \int f(x)\,dx = \sum_c \int_{[0,1]^d} \alpha_c(x_c(r))\, f(x_c(r))\, J_c(r)\, dr,

where x_c(r) is channel c's phase-space mapping with Jacobian J_c. The integrand
supplies w_c(r) = f(x_c(r)) J_c(r) (``IntegrandValues.weights``) and MadGraph's prior
weights prior_c(x) (``IntegrandValues.channel_prior``); MadNIS learns a correction

.. math::
    \alpha_c(x) = \mathrm{softmax}_c\bigl(\log \mathrm{prior}_c(x) + \mathrm{NN}_c(\phi(x))\bigr)

over the active channels, with features phi(x) of the physical point. The network's
last layer starts at zero, so alpha = prior before training. Any network output keeps
sum_c alpha_c = 1 exactly, hence the integral unbiased.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from evgen.ml.nn import MLP

__all__ = [
    "ChannelEvaluation",
    "ChannelWeightNetwork",
    "evaluate_channel",
    "evaluation_from_values",
]

LOG_PRIOR_FLOOR = -700.0
"""log prior_c is floored here (exp(-700) ~ 1e-304): a point where every active channel
has prior 0 gets equal weights instead of NaN."""


@dataclass
class ChannelEvaluation:
    """One integrand evaluation for points of one channel.

    Attributes:
        weights: (n,) f(x_c(r)) J_c(r), without channel weight (pb for physics).
        log_prior: (n, C) log prior_c(x), floored at ``LOG_PRIOR_FLOOR``.
        features: (n, F) features of the physical point for the channel-weight network,
            or None where the integrand offers none.
        values: what the integrand returned (``IntegrandValues`` or the weight tensor).
    """

    weights: Tensor
    log_prior: Tensor
    features: Tensor | None
    values: Any


def _feature_scale(f: Any) -> float:
    """Energy scale (GeV) that makes momenta features O(1): sqrt(s) of the beams."""
    scale = getattr(f, "feature_scale", None)
    if scale is not None:
        return float(scale)
    beams = getattr(f, "beams", None)
    if beams is not None:
        return 2.0 * math.sqrt(float(beams[0].energy) * float(beams[1].energy))
    return 1.0


def evaluate_channel(
    f: Callable[..., Any], r: Tensor, channel: int, n_channels: int
) -> ChannelEvaluation:
    """Evaluate integrand ``f`` at ``r`` (n, d) for ``channel``.

    Accepted integrands:

    * ``n_channels == 1``: any callable ``f(r) -> (n,)`` (evgen's single-channel
      :class:`~evgen.integrand.Integrand` included); prior 1, no features.
    * ``n_channels > 1``: an object with ``n_channels`` and
      ``evaluate(r, channel) -> values`` where ``values.weights`` (n,) is f J_c without
      channel weight and ``values.channel_prior`` (n, C) the prior weights (rows sum to
      1; absent: uniform 1/C). Features: ``values.features`` (n, F) if present, else the
      outgoing momenta ``values.momenta[:, 2:]`` flattened and divided by
      ``f.feature_scale`` or sqrt(s) of ``f.beams``; absent both: none.
    """
    n = r.shape[0]
    if n_channels == 1:
        w = torch.as_tensor(f(r)).to(dtype=torch.float64, device=r.device).reshape(-1)
        log_prior = torch.zeros(n, 1, dtype=torch.float64, device=r.device)
        return ChannelEvaluation(_checked(w, n), log_prior, None, w)
    evaluate = getattr(f, "evaluate", None)
    if evaluate is None or int(getattr(f, "n_channels", 1)) != n_channels:
        raise ValueError(
            f"MadNIS: a {n_channels}-channel integrator needs an integrand with "
            f"n_channels = {n_channels} and evaluate(r, channel); got "
            f"{type(f).__name__} with n_channels = {getattr(f, 'n_channels', None)}"
        )
    return evaluation_from_values(f, evaluate(r, channel), n_channels, r.device)


def evaluation_from_values(
    f: Any, values: Any, n_channels: int, device: torch.device | None = None
) -> ChannelEvaluation:
    """A :class:`ChannelEvaluation` from values ``f.evaluate(r, channel)`` already
    returned (``n_channels > 1``; see :func:`evaluate_channel`), without evaluating again."""
    w = torch.as_tensor(values.weights).to(torch.float64).reshape(-1)
    n = w.shape[0]
    w = _checked(w.to(device) if device is not None else w, n)
    prior = getattr(values, "channel_prior", None)
    if prior is None:
        log_prior = torch.full((n, n_channels), -math.log(n_channels), dtype=torch.float64)
    else:
        prior = torch.as_tensor(prior).to(torch.float64)
        if prior.shape != (n, n_channels):
            raise ValueError(
                f"MadNIS: channel_prior must have shape ({n}, {n_channels}), "
                f"got {tuple(prior.shape)}"
            )
        log_prior = torch.log(prior.clamp_min(0.0)).clamp_min(LOG_PRIOR_FLOOR)
    features = getattr(values, "features", None)
    if features is None and getattr(values, "momenta", None) is not None:
        p = torch.as_tensor(values.momenta).to(torch.float64)
        features = p[:, 2:].reshape(n, -1) / _feature_scale(f)
    if features is not None:
        features = torch.as_tensor(features).to(torch.float64).reshape(n, -1)
        features = torch.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0)
    return ChannelEvaluation(w, log_prior.to(w.device), features, values)


def _checked(w: Tensor, n: int) -> Tensor:
    if w.shape[0] != n:
        raise ValueError(f"MadNIS: the integrand returned {w.shape[0]} values for {n} points")
    if not bool(torch.isfinite(w).all()):
        raise ValueError("MadNIS: the integrand returned NaN or inf")
    return w


class ChannelWeightNetwork(nn.Module):
    r"""alpha_c(x) = softmax_c(log prior_c + NN_c(features)) over the active channels.

    Args:
        n_features: length F of the feature vector.
        n_channels: number of channels C (>= 2).
        hidden, hidden_layers: the MLP's width and depth.

    The MLP's last layer is zero at initialisation (alpha = prior). Dropped channels
    (``active`` False) get alpha = 0 and their share goes to the active ones.

    Shapes: features (n, F), log_prior (n, C), active (C,) bool -> alpha (n, C),
    rows summing to 1.
    """

    def __init__(self, n_features: int, n_channels: int, *, hidden: int, hidden_layers: int):
        super().__init__()
        self.n_features = n_features
        self.n_channels = n_channels
        self.net = MLP(
            n_features,
            n_channels,
            hidden=hidden,
            hidden_layers=hidden_layers,
            zero_init_last=True,
            dtype=torch.float64,
        )

    def forward(self, features: Tensor | None, log_prior: Tensor, active: Tensor) -> Tensor:
        return channel_weights(log_prior, active, None if features is None else self.net(features))


def channel_weights(log_prior: Tensor, active: Tensor, correction: Tensor | None) -> Tensor:
    """softmax over active channels of log_prior (+ correction): (n, C), rows sum to 1."""
    logits = log_prior if correction is None else log_prior + correction
    logits = logits.masked_fill(~active.to(logits.device), -math.inf)
    return torch.softmax(logits, dim=1)
