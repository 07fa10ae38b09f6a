"""Elementwise bijections with exact log-Jacobians: the algebra the flows are built from.

* :func:`rational_quadratic_spline`: a monotonic rational-quadratic spline (RQS) that
  maps [0, 1] onto [0, 1] exactly, with ``K`` bins and ``K + 1`` learned knot
  derivatives (Durkan, Bekasov, Murray, Papamakarios, "Neural Spline Flows",
  arXiv:1906.04032; Gregory & Delbourgo 1982 for the interpolant).
* :func:`sigmoid_transform` / :func:`logit_transform`: the fixed bijection between
  the real line and (0, 1), used to put unbounded models (flow matching) on the cube.

Every function returns ``(output, log|d output / d input|)`` elementwise, so a caller
sums the log-Jacobian over the dimensions it transforms.

Why our own spline rather than ``zuko.transforms.MonotonicRQSTransform``: zuko's spline
lives on [-B, B] with identity tails and pins the derivative at both ends of the
interval to 1. On the unit hypercube there are no tails, and a pinned end slope forces
the density of every layer to equal its input density at the faces of the cube, which is
wrong for integrands that vanish or peak there (PDFs at x -> 0, collinear limits).
Here all ``K + 1`` derivatives are learned (as in the bounded splines of MadNIS,
arXiv:2212.06172), the knots 0 and 1 are exact, and inputs and outputs are clamped to
[0, 1] without any epsilon; the tests cross-check the interpolant against zuko's where
both apply (end slopes 1).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "MIN_BIN_HEIGHT",
    "MIN_BIN_WIDTH",
    "MIN_DERIVATIVE",
    "logit_transform",
    "rational_quadratic_spline",
    "sigmoid_transform",
    "spline_knots",
]

MIN_BIN_WIDTH = 1e-3
"""Smallest bin width of a spline, as a fraction of [0, 1] (bounds the slope from above
by 1 / MIN_BIN_WIDTH and keeps the knots strictly increasing)."""
MIN_BIN_HEIGHT = 1e-3
"""Smallest bin height (bounds the slope from below by MIN_BIN_HEIGHT)."""
MIN_DERIVATIVE = 1e-3
"""Smallest knot derivative: the spline is strictly increasing, its log-Jacobian finite
everywhere on [0, 1], the boundaries included."""

# softplus(0 + _DERIVATIVE_SHIFT) + MIN_DERIVATIVE = 1: raw parameters 0 give slope 1.
_DERIVATIVE_SHIFT = math.log(math.expm1(1.0 - MIN_DERIVATIVE))


def _knots(raw: Tensor, min_size: float) -> tuple[Tensor, Tensor]:
    """Bin sizes (..., K) summing to 1 and knot positions (..., K + 1) from 0 to 1."""
    k = raw.shape[-1]
    if min_size * k >= 1.0:
        raise ValueError(f"spline: {k} bins cannot have a minimum size {min_size}")
    sizes = min_size + (1.0 - min_size * k) * torch.softmax(raw, dim=-1)
    inner = torch.cumsum(sizes, dim=-1)[..., :-1]
    # The end knots are exactly 0 and 1 (not a cumulative sum that may round to 1 - ulp),
    # so the spline maps [0, 1] onto [0, 1] exactly.
    knots = F.pad(F.pad(inner, (1, 0), value=0.0), (0, 1), value=1.0)
    return knots[..., 1:] - knots[..., :-1], knots


def spline_knots(
    widths: Tensor, heights: Tensor, derivatives: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Knots of the spline from unconstrained parameters.

    .. math::
        w = w_{min} + (1 - K w_{min})\,\mathrm{softmax}(\tilde w),\qquad
        x_k = \sum_{j<k} w_j,\qquad
        \delta_k = \delta_{min} + \mathrm{softplus}(\tilde\delta_k + c),

    and the same for the heights; ``c`` makes :math:`\tilde\delta = 0` give slope 1, so
    all-zero parameters are the identity.

    Args:
        widths: (..., K) unconstrained bin widths.
        heights: (..., K) unconstrained bin heights.
        derivatives: (..., K + 1) unconstrained knot derivatives.

    Returns:
        x knots (..., K + 1), y knots (..., K + 1), derivatives (..., K + 1); the knots
        run from exactly 0 to exactly 1.
    """
    k = widths.shape[-1]
    if heights.shape[-1] != k or derivatives.shape[-1] != k + 1:
        raise ValueError(
            "spline: need widths (..., K), heights (..., K), derivatives (..., K + 1), "
            f"got {tuple(widths.shape)}, {tuple(heights.shape)}, {tuple(derivatives.shape)}"
        )
    _, xk = _knots(widths, MIN_BIN_WIDTH)
    _, yk = _knots(heights, MIN_BIN_HEIGHT)
    dk = MIN_DERIVATIVE + F.softplus(derivatives + _DERIVATIVE_SHIFT)
    return xk, yk, dk


def _gather(t: Tensor, index: Tensor) -> Tensor:
    return torch.gather(t, -1, index).squeeze(-1)


def rational_quadratic_spline(
    inputs: Tensor,
    widths: Tensor,
    heights: Tensor,
    derivatives: Tensor,
    *,
    inverse: bool = False,
) -> tuple[Tensor, Tensor]:
    r"""Monotonic rational-quadratic spline of [0, 1] onto [0, 1] (arXiv:1906.04032).

    In bin :math:`k` with knots :math:`(x_k, y_k)`, widths :math:`w_k`, heights
    :math:`h_k`, slope :math:`s_k = h_k / w_k` and knot derivatives
    :math:`\delta_k, \delta_{k+1}`, with :math:`\theta = (x - x_k) / w_k \in [0, 1]`:

    .. math::
        y = y_k + \frac{h_k\,[s_k\theta^2 + \delta_k\theta(1-\theta)]}
                       {s_k + (\delta_{k+1} + \delta_k - 2 s_k)\,\theta(1-\theta)},
        \qquad
        \frac{dy}{dx} = \frac{s_k^2\,[\delta_{k+1}\theta^2 + 2 s_k\theta(1-\theta)
                        + \delta_k (1-\theta)^2]}
                       {[s_k + (\delta_{k+1} + \delta_k - 2 s_k)\,\theta(1-\theta)]^2}.

    The inverse solves the quadratic for :math:`\theta` in the stable form
    :math:`\theta = 2c / (-b - \sqrt{b^2 - 4ac})`, then takes one Newton step on the
    forward formula (the discriminant loses digits in steep bins).

    Boundaries: inputs are clamped to [0, 1] (a no-op for valid inputs; it only absorbs
    rounding from an earlier layer), the bin index is found among the K - 1 inner knots
    so that 0 and 1 fall in the first and last bin, and outputs are clamped to [0, 1].
    No epsilon is involved: the derivative at every point, the ends included, is
    bounded away from 0 (by the minimum derivative, bin width and bin height), so the
    log-Jacobian is finite.

    Args:
        inputs: points (...,) in [0, 1]: x for the forward map, y for the inverse.
        widths: (..., K) unconstrained bin widths (see :func:`spline_knots`).
        heights: (..., K) unconstrained bin heights.
        derivatives: (..., K + 1) unconstrained knot derivatives.
        inverse: evaluate :math:`x(y)` instead of :math:`y(x)`.

    Returns:
        (outputs (...,) in [0, 1], log|d outputs / d inputs| (...,)).

    Example:
        >>> x = torch.rand(100, dtype=torch.float64)
        >>> p = torch.randn(100, 3 * 8 + 1, dtype=torch.float64)
        >>> w, h, d = p.split([8, 8, 9], dim=-1)
        >>> y, ladj = rational_quadratic_spline(x, w, h, d)
        >>> x2, ladj_inv = rational_quadratic_spline(y, w, h, d, inverse=True)
        >>> bool(torch.allclose(x, x2)) and bool(torch.allclose(ladj, -ladj_inv))
        True
    """
    xk, yk, dk = spline_knots(widths, heights, derivatives)
    v = inputs.clamp(0.0, 1.0)
    search = yk if inverse else xk
    index = torch.searchsorted(search[..., 1:-1].contiguous(), v[..., None].contiguous())
    x0, x1 = _gather(xk, index), _gather(xk, index + 1)
    y0, y1 = _gather(yk, index), _gather(yk, index + 1)
    d0, d1 = _gather(dk, index), _gather(dk, index + 1)
    w, h = x1 - x0, y1 - y0
    s = h / w
    if inverse:
        dy = v - y0
        slack = d0 + d1 - 2 * s
        a = h * (s - d0) + dy * slack
        b = h * d0 - dy * slack
        c = -s * dy
        disc = (b * b - 4 * a * c).clamp_min(0.0)
        theta = (2 * c / (-b - torch.sqrt(disc))).clamp(0.0, 1.0)
        # One Newton step on y(theta) = v: the discriminant cancels when s >> delta
        # (steep bins), leaving |y(x) - v| ~ 1e-13; after the step it is at rounding
        # (backward stable). Its parameter gradient is the exact implicit one.
        y_theta, dy_dx = _rqs(theta, y0, h, s, d0, d1)
        theta = (theta - (y_theta - v) / (w * dy_dx)).clamp(0.0, 1.0)
        out = (x0 + theta * w).clamp(0.0, 1.0)
    else:
        theta = ((v - x0) / w).clamp(0.0, 1.0)
        out = _rqs(theta, y0, h, s, d0, d1)[0].clamp(0.0, 1.0)
    log_dy_dx = torch.log(_rqs(theta, y0, h, s, d0, d1)[1])
    return out, (-log_dy_dx if inverse else log_dy_dx)


def _rqs(
    theta: Tensor, y0: Tensor, h: Tensor, s: Tensor, d0: Tensor, d1: Tensor
) -> tuple[Tensor, Tensor]:
    """The spline in one bin: y(theta) and dy/dx at theta in [0, 1]."""
    tt = theta * (1 - theta)
    denominator = s + (d0 + d1 - 2 * s) * tt
    y = y0 + h * (s * theta**2 + d0 * tt) / denominator
    dy_dx = s**2 * (d1 * theta**2 + 2 * s * tt + d0 * (1 - theta) ** 2) / denominator**2
    return y, dy_dx


def sigmoid_transform(y: Tensor) -> tuple[Tensor, Tensor]:
    r"""The logistic map :math:`x = \sigma(y) = 1 / (1 + e^{-y})` of the real line onto (0, 1).

    .. math::
        \log\frac{dx}{dy} = \log\sigma(y) + \log(1 - \sigma(y))
                          = -\mathrm{softplus}(-y) - \mathrm{softplus}(y),

    computed from ``y`` (not from the rounded ``x``), so it stays exact where ``x``
    rounds to 0 or 1 (|y| > ~36 in float64).

    Args:
        y: any shape.

    Returns:
        (x in [0, 1], log|dx/dy|), both of the shape of ``y``.

    Example:
        >>> x, ladj = sigmoid_transform(torch.zeros(3, dtype=torch.float64))
        >>> x.tolist(), round(float(ladj[0]), 6)
        ([0.5, 0.5, 0.5], -1.386294)
    """
    return torch.sigmoid(y), -F.softplus(-y) - F.softplus(y)


def logit_transform(x: Tensor) -> tuple[Tensor, Tensor]:
    r"""The inverse of :func:`sigmoid_transform`: :math:`y = \log x - \log(1 - x)`.

    .. math::
        \log\frac{dy}{dx} = -\log x - \log(1 - x).

    Boundary: x = 0 and x = 1 have no finite image; x is clamped into
    [tiny, 1 - eps/2] first, with ``tiny`` and ``eps`` of ``torch.finfo(x.dtype)``:
    the smallest normal number and the largest number below 1. Every x strictly inside
    (0, 1) (and not subnormal) is left unchanged; x = 0 becomes logit(tiny) = -708 and
    x = 1 becomes 36.7 in float64 (-87.3 and 16.6 in float32), where any density with
    a normal tail is negligible.

    Args:
        x: any shape, values in [0, 1].

    Returns:
        (y, log|dy/dx|), both of the shape of ``x``.
    """
    finfo = torch.finfo(x.dtype)
    x = x.clamp(finfo.tiny, 1.0 - finfo.eps / 2)
    log_x, log_1mx = torch.log(x), torch.log1p(-x)
    return log_x - log_1mx, -log_x - log_1mx
