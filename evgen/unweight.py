"""Hit-or-miss unweighting of weighted events, with a robust maximum weight.

Weighted events with weights ``w_i`` (pb) become unweighted events by keeping
event ``i`` with probability ``min(1, |w_i| / w_max)``. Every kept event gets the
common weight ``sign(w_i) * w_max``, so each input event contributes
``P(keep) * w_max = |w_i|`` in expectation and

    E[ sum of unweighted weights ] = sum of weighted weights

(exactly so when no event is over ``w_max``). The unweighted sample therefore keeps
the normalisation of its input. Our convention, used by the writers: the weights of an
``Events`` sample **sum** to its cross-section estimate, so an integrator's
``w = f(r) * jacobian`` is divided by the number of points sampled before unweighting.
Then the unweighted events carry ``w_max ~ sigma / N_unweighted`` each, which is
MadGraph's ``event_norm = sum`` (LHE ``IDWTUP = -3`` / ``3``, ``XWGTUP = sigma / N``).
(MadGraph's run-card default ``event_norm = average`` instead gives every event
``XWGTUP = sigma``, ``IDWTUP = -4``; multiply by ``N`` to get that.)

Negative weights are unweighted on ``|w|``; a kept event carries ``-w_max``.

The maximum: the largest weight of a finite sample is a poor, fluctuating choice of
``w_max`` (one rare event can collapse the efficiency). :func:`find_max_weight`
gives MadGraph's/Sherpa's *reduced maximum* instead: the smallest ``w_max`` such
that the cross section above it, ``sum_i max(|w_i| - w_max, 0)``, is at most
``max_loss`` times ``sum_i |w_i|``. Events above it ("overweights") are counted and
either kept with their own weight (``overweight="keep"``, unbiased, a few weights
differ from the common one: Sherpa's choice) or truncated to ``w_max``
(``overweight="truncate"``, equal weights, the cross section loses at most
``max_loss``: MadGraph's choice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import Tensor

from evgen.events import Events

__all__ = ["UnweightingResult", "find_max_weight", "unweight"]

MaxWeightMethod = Literal["reduced", "quantile", "max"]
OverweightPolicy = Literal["keep", "truncate"]


@dataclass(frozen=True)
class UnweightingResult:
    """Unweighted events and the bookkeeping of how they were made.

    Attributes:
        events: accepted events; weights ``sign(w) * max_weight`` in pb (overweights
            keep their own ``w`` under ``overweight="keep"``).
        efficiency: unweighting efficiency ``<|w|> / max_weight`` over the input, the
            usual figure of merit (expected accepted fraction without overweights).
        accepted_fraction: ``n_accepted / n_in``, what this draw actually kept.
        max_weight: the ``w_max`` used, pb.
        n_in: number of weighted input events.
        n_accepted: number of events kept.
        n_overweight: input events with ``|w| > max_weight``.
        overweight_fraction_xs: ``sum max(|w| - w_max, 0) / sum |w|``, the fraction of
            the (absolute) cross section carried by the weight excess above ``w_max``;
            lost under ``overweight="truncate"``.
    """

    events: Events
    efficiency: float
    accepted_fraction: float
    max_weight: float
    n_in: int
    n_accepted: int
    n_overweight: int
    overweight_fraction_xs: float


def find_max_weight(
    weights: Tensor, *, method: MaxWeightMethod = "reduced", max_loss: float = 1e-3
) -> float:
    """A robust maximum of ``|weights|`` for hit-or-miss unweighting, in pb.

    Methods (``a_i = |w_i|``, ``S = sum_i a_i``):

    - ``"reduced"``: the smallest ``t >= 0`` with ``sum_i max(a_i - t, 0) <= max_loss * S``;
      the weight excess over ``t`` is exactly ``max_loss * S`` unless the bound is
      reached at ``t = 0``. With ``max_loss = 0`` this is ``max(a)``.
    - ``"quantile"``: the smallest sample weight ``t = a_k`` such that the events with
      ``a_i > t`` carry at most ``max_loss * S`` (a cross-section quantile).
    - ``"max"``: ``max(a)``.

    Args:
        weights: (n,) event weights (any sign, pb).
        method: see above.
        max_loss: fraction of the absolute cross section allowed above the result,
            in [0, 1).

    Returns:
        ``w_max`` in pb; 0.0 for an empty sample or all-zero weights.
    """
    if not 0.0 <= max_loss < 1.0:
        raise ValueError(f"max_loss: must be in [0, 1), got {max_loss}")
    a = weights.detach().reshape(-1).abs().to(torch.float64)
    if not bool(torch.isfinite(a).all()):
        raise ValueError(f"weights: {int((~torch.isfinite(a)).sum())} are not finite")
    if a.numel() == 0 or not bool((a > 0).any()):
        return 0.0
    if method == "max":
        return float(a.max())
    a = torch.sort(a, descending=True).values
    total = a.sum()
    budget = max_loss * total
    cum = torch.cumsum(a, 0)
    k = torch.arange(1, a.numel() + 1, dtype=a.dtype, device=a.device)
    if method == "reduced":
        # Excess over t = a_k is g(a_k) = cum_k - k a_k, non-decreasing in k. On
        # [a_{k+1}, a_k] g(t) = cum_k - k t: take the last k with g(a_k) <= budget and
        # solve g(t) = budget on its segment.
        excess = cum - k * a
        last = int(torch.searchsorted(excess, budget, right=True)) - 1
        last = max(last, 0)
        t = (cum[last] - budget) / (last + 1)
        return min(max(float(t), 0.0), float(a[0]))
    if method == "quantile":
        # Events before index k carry cum_{k-1}: those are the ones strictly above a_k
        # at the first of a run of equal values, and only more elsewhere, so the last
        # index with cum_{k-1} <= budget holds the smallest allowed value.
        above = torch.cat([torch.zeros(1, dtype=a.dtype, device=a.device), cum[:-1]])
        idx = int(torch.searchsorted(above, budget, right=True)) - 1
        return float(a[idx])
    raise ValueError(f"method: must be 'reduced', 'quantile' or 'max', got {method!r}")


def unweight(
    events: Events,
    *,
    max_weight: float | None = None,
    generator: torch.Generator | None = None,
    max_loss: float = 1e-3,
    method: MaxWeightMethod = "reduced",
    overweight: OverweightPolicy = "keep",
) -> UnweightingResult:
    """Hit-or-miss unweighting: keep event ``i`` with probability ``min(1, |w_i|/w_max)``.

    Args:
        events: weighted events; ``events.weights`` (n,) in pb, any sign, normalised so
            that their sum estimates the cross section (see the module docstring).
        max_weight: ``w_max`` in pb; by default :func:`find_max_weight` of the weights
            with ``method`` and ``max_loss``.
        generator: torch random generator (fixed seeds for reproducible output), on
            any device: the numbers are drawn there and moved to the weights' device;
            the default generator of the weights' device if None.
        max_loss: see :func:`find_max_weight`.
        method: see :func:`find_max_weight`.
        overweight: ``"keep"`` keeps events with ``|w| > w_max`` with their own weight
            ``w`` (unbiased); ``"truncate"`` gives them ``sign(w) * w_max`` like the rest.

    Returns:
        :class:`UnweightingResult`; kept events appear in their input order.
    """
    if overweight not in ("keep", "truncate"):
        raise ValueError(f"overweight: must be 'keep' or 'truncate', got {overweight!r}")
    w = events.weights
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"weights: {int((~torch.isfinite(w)).sum())} are not finite")
    if max_weight is None:
        w_max = find_max_weight(w, method=method, max_loss=max_loss)
    else:
        if not (math.isfinite(max_weight) and max_weight > 0):
            raise ValueError(f"max_weight: must be finite and > 0, got {max_weight}")
        w_max = float(max_weight)

    n_in = len(events)
    a = w.abs()
    total = float(a.sum())
    if w_max <= 0.0 or n_in == 0:  # nothing to keep: empty sample or all-zero weights
        keep = torch.zeros(n_in, dtype=torch.bool, device=w.device)
        kept = events[keep]
        return UnweightingResult(kept, 0.0, 0.0, w_max, n_in, 0, 0, 0.0)

    # Random numbers come from the generator's device (same stream on CPU and GPU).
    device = generator.device if generator is not None else w.device
    r = torch.rand(n_in, generator=generator, dtype=w.dtype, device=device).to(w.device)
    keep = r * w_max < a  # P = min(1, |w|/w_max); zero weights never kept
    over = a > w_max
    new_w = torch.sign(w) * w_max
    if overweight == "keep":
        new_w = torch.where(over, w, new_w)
    kept = replace(events[keep], weights=new_w[keep])

    n_acc = int(keep.sum())
    excess = float(torch.clamp(a - w_max, min=0.0).sum())
    return UnweightingResult(
        events=kept,
        efficiency=total / n_in / w_max,
        accepted_fraction=n_acc / n_in,
        max_weight=w_max,
        n_in=n_in,
        n_accepted=n_acc,
        n_overweight=int(over.sum()),
        overweight_fraction_xs=excess / total if total > 0 else 0.0,
    )
