r"""Conditional flow matching: a velocity field trained by regression, sampled by an ODE.

Model. A velocity field :math:`v_\theta(x, t[, c])` on :math:`\mathbb{R}^d` defines
the flow :math:`\dot x = v_\theta(x, t)` from a fixed base density :math:`p_0`
(standard normal, or standard logistic) at t = 0 to the model density :math:`p_1` at
t = 1 (a continuous normalizing flow, Chen et al. arXiv:1806.07366). Along a trajectory
the log-density obeys the instantaneous change of variables

.. math::
    \frac{d}{dt}\log p_t(x(t)) = -\nabla\cdot v_\theta(x(t), t),

so :math:`\log p_1(x_1) = \log p_0(x_0) - \int_0^1 \nabla\cdot v\,dt`, integrated
together with the sample by :func:`~evgen.ml.ode.odeint`.

Training (Lipman et al. arXiv:2210.02747; Tong et al. arXiv:2302.00482, I-CFM with
independent coupling). With :math:`x_0 \sim p_0`, :math:`x_1 \sim` data,
:math:`t \sim U[0, 1]` and the straight (optimal-transport) path

.. math::
    x_t = (1 - (1 - \sigma_{min})\,t)\,x_0 + t\,x_1, \qquad
    u_t = x_1 - (1 - \sigma_{min})\,x_0,

the loss :math:`E\,\|v_\theta(x_t, t) - u_t\|^2` has the marginal velocity that
transports :math:`p_0` to the data as its minimiser; no ODE is solved in training.

Divergence. :func:`divergence` is exact (one backward pass per dimension; fine for the
d <= 16 of phase space): the density, hence every importance weight, is exact up to the
ODE tolerance. :func:`hutchinson_divergence` is the one-probe estimate
:math:`\epsilon^T (\partial v/\partial x)\,\epsilon` with Rademacher :math:`\epsilon`:
unbiased for the divergence and for log p, but exp of it is a biased, noisy density,
so it is NOT suitable for importance weights; it serves large-d diagnostics only.

On the unit hypercube (:class:`UnitHypercubeCFM`) the model lives in the unbounded
space :math:`y \in \mathbb{R}^d` and :math:`x = \sigma(y)` (the logistic function,
:func:`~evgen.ml.transforms.sigmoid_transform`) maps it onto (0, 1)^d, with
:math:`\log q(x) = \log p_1(y) - \sum_i \log \sigma'(y_i)`. The base matters for
importance sampling: a target that stays positive on a face of the cube has
exponential tails exp(-|y|) in y; the logistic base (the uniform density pulled back by
the logit) has the same tails, while the normal base's Gaussian tails make p/q grow
without bound towards the faces (measured: weight variance 12..300 against 0.05 for a
truncated Gaussian bump; see ``tests/test_ml_cfm.py``).

Accuracy. With the default :class:`~evgen.ml.ode.ODEOptions` (dopri5, rtol = 1e-7,
atol = 1e-9) the tests measure, for fields with an analytic flow and for a trained
network, sample and log-density errors below 1e-6 and a forward-then-reverse round
trip below 1e-6 (see ``tests/test_ml_cfm.py``); measured: 7e-9 (linear field),
7e-8..9e-8 (cubic field), 2e-9..4e-9 (trained network against rtol = 1e-11).
rtol = 1e-5 gives ~1e-6 at about half the cost; fixed-step RK4 with 50 steps ~1e-6 on
the trained network. A round trip through a strongly contracting flow is amplified by
the inverse contraction (the cubic test needs rtol = 1e-9 for 1e-6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from evgen.ml.nn import MLP, prepare_inputs
from evgen.ml.ode import ODEOptions, odeint
from evgen.ml.transforms import logit_transform, sigmoid_transform

__all__ = [
    "ContinuousFlow",
    "Transport",
    "UnitHypercubeCFM",
    "VelocityNet",
    "divergence",
    "flow_matching_loss",
    "hutchinson_divergence",
    "time_features",
]

TraceMethod = Literal["exact", "hutchinson"]
BaseDistribution = Literal["normal", "logistic"]


def time_features(t: Tensor, frequencies: int) -> Tensor:
    r"""Embedding of the time :math:`t \in [0, 1]`: :math:`(t, \sin 2\pi k t, \cos 2\pi k t)`.

    Args:
        t: (n,) times.
        frequencies: number F of Fourier frequencies k = 1..F.

    Returns:
        (n, 1 + 2F) features.
    """
    k = torch.arange(1, frequencies + 1, dtype=t.dtype, device=t.device)
    phase = 2 * math.pi * t[:, None] * k
    return torch.cat([t[:, None], torch.sin(phase), torch.cos(phase)], dim=1)


class VelocityNet(nn.Module):
    """Velocity field v(x, t[, context]): an MLP on (x, time features, context).

    Args:
        dim: dimension d of x.
        context_dim: length of the context vector (0: none).
        hidden: width of the hidden layers.
        hidden_layers: number of hidden layers.
        time_frequencies: Fourier frequencies of the time embedding.
        dtype: dtype of the parameters.

    Shapes: ``x`` (n, d); ``t`` a float or a tensor of shape () or (n,); ``context``
    (n, context_dim); result (n, d).

    Example:
        >>> v = VelocityNet(2)
        >>> v(torch.zeros(5, 2, dtype=torch.float64), 0.5).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        dim: int,
        *,
        context_dim: int = 0,
        hidden: int = 64,
        hidden_layers: int = 3,
        time_frequencies: int = 4,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if dim < 1 or context_dim < 0 or time_frequencies < 0:
            raise ValueError(
                "VelocityNet: need dim >= 1, context_dim >= 0, time_frequencies >= 0, "
                f"got {dim}, {context_dim}, {time_frequencies}"
            )
        self.dim = dim
        self.context_dim = context_dim
        self.time_frequencies = time_frequencies
        n_in = dim + 1 + 2 * time_frequencies + context_dim
        self.net = MLP(n_in, dim, hidden=hidden, hidden_layers=hidden_layers, dtype=dtype)

    def forward(self, x: Tensor, t: float | Tensor, context: Tensor | None = None) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        features = [x, time_features(t, self.time_frequencies)]
        if context is not None:
            features.append(context)
        return self.net(torch.cat(features, dim=1))


def flow_matching_loss(
    velocity: nn.Module,
    x1: Tensor,
    context: Tensor | None = None,
    *,
    x0: Tensor | None = None,
    sigma_min: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Conditional flow-matching loss on straight paths (arXiv:2210.02747, 2302.00482).

    .. math::
        L = \frac{1}{n}\sum_i \|v(x_t^{(i)}, t_i, c_i) - u_t^{(i)}\|^2,\quad
        x_t = (1 - (1 - \sigma_{min}) t) x_0 + t x_1,\quad u_t = x_1 - (1 - \sigma_{min}) x_0.

    Args:
        velocity: the field, called as ``velocity(x, t, context)`` with t of shape (n,).
        x1: data (n, d) (targets at t = 1).
        context: (n, context_dim) or None.
        x0: base samples (n, d); default standard normal from ``generator``.
        sigma_min: width of the conditional path at t = 1 (0: exact straight lines).
        generator: source of t and x0.

    Returns:
        The scalar loss, differentiable with respect to the field's parameters.
    """
    n = x1.shape[0]
    if x0 is None:
        x0 = torch.randn(x1.shape, generator=generator, dtype=x1.dtype, device=x1.device)
    t = torch.rand(n, generator=generator, dtype=x1.dtype, device=x1.device)
    tc = t[:, None]
    xt = (1 - (1 - sigma_min) * tc) * x0 + tc * x1
    target = x1 - (1 - sigma_min) * x0
    v = velocity(xt, t, context) if context is not None else velocity(xt, t)
    return ((v - target) ** 2).sum(dim=1).mean()


def divergence(v: Tensor, x: Tensor, *, create_graph: bool = False) -> Tensor:
    r"""Exact divergence :math:`\nabla\cdot v = \sum_i \partial v_i / \partial x_i`.

    One backward pass per dimension (d passes): ``grad(v[:, i].sum(), x)[:, i]`` is
    :math:`\partial v_i / \partial x_i` row by row because rows are independent.

    Args:
        v: (n, d) computed from ``x`` with autograd recording.
        x: (n, d) with ``requires_grad``.
        create_graph: keep the graph (to differentiate the divergence further).

    Returns:
        (n,) divergences.
    """
    total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    for i in range(x.shape[1]):
        (grad,) = torch.autograd.grad(
            v[:, i].sum(), x, retain_graph=True, create_graph=create_graph
        )
        total = total + grad[:, i]
    return total


def hutchinson_divergence(
    v: Tensor, x: Tensor, noise: Tensor, *, create_graph: bool = False
) -> Tensor:
    r"""Hutchinson's estimate :math:`\epsilon^T (\partial v / \partial x)\,\epsilon`.

    Unbiased for the divergence when :math:`E[\epsilon\epsilon^T] = I` (Rademacher or
    normal noise), with one backward pass whatever d. Not suitable for importance
    weights: the density built from it is exp of a noisy quantity (biased, and the
    noise does not average out within one sample).

    Args:
        v: (n, d) computed from ``x``.
        x: (n, d) with ``requires_grad``.
        noise: (n, d) probe vectors.
        create_graph: keep the graph.

    Returns:
        (n,) estimates.
    """
    (vjp,) = torch.autograd.grad(v, x, grad_outputs=noise, create_graph=create_graph)
    return (vjp * noise).sum(dim=1)


def _module_dtype(module: nn.Module) -> torch.dtype:
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float64


def _module_device(module: nn.Module) -> torch.device:
    for tensor in (*module.parameters(), *module.buffers()):
        return tensor.device
    return torch.device("cpu")


def _base_sample(
    base: BaseDistribution,
    n: int,
    d: int,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device,
) -> Tensor:
    if base == "normal":
        return torch.randn(n, d, generator=generator, dtype=dtype, device=device)
    # Standard logistic: y = logit(u), u uniform. torch.rand gives multiples of eps/2 in
    # [0, 1); shifting by eps/4 keeps u strictly inside (0, 1) and symmetric about 1/2.
    u = torch.rand(n, d, generator=generator, dtype=dtype, device=device)
    return logit_transform(u + torch.finfo(dtype).eps / 4)[0]


def _base_log_prob(base: BaseDistribution, y: Tensor) -> Tensor:
    if base == "normal":
        return -0.5 * (y**2).sum(dim=1) - 0.5 * y.shape[1] * math.log(2 * math.pi)
    return sigmoid_transform(y)[1].sum(dim=1)  # log sigma'(y): the logistic density


@dataclass(frozen=True)
class Transport:
    r"""Points carried along the flow from ``t0`` to ``t1``, with the volume change.

    Attributes:
        x: end points (n, d).
        log_det: :math:`\log|\det \partial x(t_1) / \partial x(t_0)|
            = \int_{t_0}^{t_1} \nabla\cdot v\,dt`, shape (n,); the log-density changes by
            minus this.
        n_steps: accepted ODE steps.
        n_evals: velocity evaluations.
    """

    x: Tensor
    log_det: Tensor
    n_steps: int
    n_evals: int


class ContinuousFlow(nn.Module):
    r"""Continuous normalizing flow on :math:`\mathbb{R}^d` from a fixed base at t = 0.

    Args:
        velocity: the field, a module called as ``velocity(x, t, context)`` (``t`` of
            shape (n,)), acting row by row; ``velocity(x, t)`` when ``context_dim == 0``.
        dim: dimension d.
        context_dim: length of the context vector (0: none).
        ode: solver options (default :class:`~evgen.ml.ode.ODEOptions`); an attribute,
            so it can be changed after training.
        trace: ``"exact"`` (default; for importance weights) or ``"hutchinson"`` (one
            Rademacher probe per sample, fixed along the trajectory; NOT for weights).
        base: the base density at t = 0, ``"normal"`` (standard normal, default) or
            ``"logistic"`` (independent standard logistic, density
            :math:`\sigma(y)(1 - \sigma(y))` per dimension: the image of the uniform
            distribution under the logit). Training must draw its ``x0`` from the same
            base: use :meth:`base_sample`.

    ``sample`` and ``log_prob`` run without gradients with respect to the parameters
    (flow matching trains by regression and never backpropagates through the ODE).
    Inputs are converted to the velocity field's dtype in :meth:`_prepare`.

    Example:
        >>> flow = ContinuousFlow(VelocityNet(2), 2)
        >>> y, log_p = flow.sample(100)
        >>> bool(torch.allclose(flow.log_prob(y), log_p, atol=1e-5))
        True
    """

    def __init__(
        self,
        velocity: nn.Module,
        dim: int,
        *,
        context_dim: int = 0,
        ode: ODEOptions | None = None,
        trace: TraceMethod = "exact",
        base: BaseDistribution = "normal",
    ) -> None:
        super().__init__()
        if trace not in ("exact", "hutchinson"):
            raise ValueError(f"trace must be 'exact' or 'hutchinson', got {trace!r}")
        if base not in ("normal", "logistic"):
            raise ValueError(f"base must be 'normal' or 'logistic', got {base!r}")
        self.base: BaseDistribution = base
        self.velocity = velocity
        self.dim = dim
        self.context_dim = context_dim
        self.ode = ode or ODEOptions()
        self.trace: TraceMethod = trace

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the velocity field (and of all computations)."""
        return _module_dtype(self.velocity)

    @property
    def device(self) -> torch.device:
        """Where the velocity field lives."""
        return _module_device(self.velocity)

    def base_sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` draws (n, d) from the base density (the x0 of training and sampling)."""
        return _base_sample(self.base, n, self.dim, generator, self.dtype, self.device)

    def base_log_prob(self, y: Tensor) -> Tensor:
        """log density (n,) of the base at ``y`` (n, d)."""
        return _base_log_prob(self.base, y)

    def _prepare(
        self, points: Tensor, context: Tensor | None, name: str
    ) -> tuple[Tensor, Tensor | None]:
        """Check shapes and convert to the model's dtype (the one conversion)."""
        return prepare_inputs(
            points,
            context,
            dim=self.dim,
            context_dim=self.context_dim,
            dtype=self.dtype,
            name=name,
        )

    def transport(
        self,
        x: Tensor,
        t0: float,
        t1: float,
        context: Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Transport:
        """Carry ``x`` (n, d) from time ``t0`` to ``t1`` (either direction).

        Solves the augmented system d/dt (x, s) = (v(x, t), div v(x, t)) with
        ``self.ode``; ``generator`` draws the Hutchinson probes (ignored when exact).
        """
        x, context = self._prepare(x, context, "x")
        n, d = x.shape
        noise = None
        if self.trace == "hutchinson":
            bits = torch.randint(0, 2, (n, d), generator=generator, device=x.device)
            noise = (2 * bits - 1).to(x.dtype)

        def rhs(t: float, state: Tensor) -> Tensor:
            with torch.enable_grad():
                xs = state[:, :d].detach().requires_grad_(True)
                tt = torch.full((n,), t, dtype=state.dtype, device=state.device)
                if context is None:
                    v = self.velocity(xs, tt)
                else:
                    v = self.velocity(xs, tt, context)
                if noise is None:
                    div = divergence(v, xs)
                else:
                    div = hutchinson_divergence(v, xs, noise)
            return torch.cat([v.detach(), div.detach()[:, None]], dim=1)

        state = torch.cat([x.detach(), torch.zeros(n, 1, dtype=x.dtype, device=x.device)], 1)
        with torch.no_grad():
            solution = odeint(rhs, state, t0, t1, self.ode)
        return Transport(solution.y[:, :d], solution.y[:, d], solution.n_steps, solution.n_evals)

    def sample(
        self,
        n: int,
        context: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Draw ``n`` points: (y (n, d), log p_1(y) (n,)), by the ODE from t = 0 to 1."""
        y0 = self.base_sample(n, generator)
        out = self.transport(y0, 0.0, 1.0, context, generator=generator)
        return out.x, self.base_log_prob(y0) - out.log_det

    def log_prob(
        self,
        y: Tensor,
        context: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """log p_1(y) (n,) of ``y`` (n, d), by the ODE from t = 1 back to 0."""
        out = self.transport(y, 1.0, 0.0, context, generator=generator)
        # out.log_det = int_1^0 div v dt = -int_0^1 div v dt.
        return self.base_log_prob(out.x) + out.log_det


class UnitHypercubeCFM(nn.Module):
    r"""Flow-matching sampler on the unit hypercube, with exact log-densities.

    A :class:`ContinuousFlow` with a :class:`VelocityNet` in :math:`y \in \mathbb{R}^d`,
    composed with the fixed bijection :math:`x = \sigma(y)` onto (0, 1)^d:

    .. math::
        \log q(x) = \log p_1(y) - \sum_i \log\sigma'(y_i),\qquad y = \mathrm{logit}(x).

    Training data in [0, 1]^d enter by the logit; points exactly on a face are moved
    inside by the documented clamp of :func:`~evgen.ml.transforms.logit_transform`.

    Args:
        dim: dimension d of the cube.
        context_dim: length of the context vector (0: unconditional).
        hidden, hidden_layers, time_frequencies: the velocity network.
        ode: ODE solver options (default dopri5, rtol 1e-7, atol 1e-9).
        trace: ``"exact"`` (default) or ``"hutchinson"`` (not for importance weights).
        base: base density in y-space, ``"normal"`` (default) or ``"logistic"``: the
            latter is the uniform density on the cube pulled back by the logit, so the
            untrained model samples the cube uniformly and the model's tails in y decay
            like exp(-|y|), as does the logit image of any density that stays positive
            on the faces of the cube. With the normal base such targets get importance
            weights p/q that grow without bound towards the faces (heavy-tailed, of
            infinite variance); see ``tests/test_ml_cfm.py``.
        dtype: dtype of the network and of all computations.

    Example:
        >>> model = UnitHypercubeCFM(2)
        >>> loss = model.loss(torch.rand(256, 2, dtype=torch.float64))   # train on this
        >>> x, log_q = model.sample(1000)                # x in (0, 1)^2, log q(x)
        >>> log_q2 = model.log_prob(x)                   # equal to the ODE tolerance
    """

    def __init__(
        self,
        dim: int,
        *,
        context_dim: int = 0,
        hidden: int = 64,
        hidden_layers: int = 3,
        time_frequencies: int = 4,
        ode: ODEOptions | None = None,
        trace: TraceMethod = "exact",
        base: BaseDistribution = "normal",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        velocity = VelocityNet(
            dim,
            context_dim=context_dim,
            hidden=hidden,
            hidden_layers=hidden_layers,
            time_frequencies=time_frequencies,
            dtype=dtype,
        )
        self.flow = ContinuousFlow(
            velocity, dim, context_dim=context_dim, ode=ode, trace=trace, base=base
        )
        self.dim = dim
        self.context_dim = context_dim

    def loss(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        sigma_min: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Flow-matching loss of cube data ``x`` (n, d), mapped by the logit."""
        x, context = self.flow._prepare(x, context, "x")
        y, _ = logit_transform(x)
        x0 = self.flow.base_sample(y.shape[0], generator)
        return flow_matching_loss(
            self.flow.velocity, y, context, x0=x0, sigma_min=sigma_min, generator=generator
        )

    def sample(
        self,
        n: int,
        context: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Draw ``n`` points: (x (n, d) in [0, 1]^d, log q(x) (n,))."""
        y, log_p = self.flow.sample(n, context, generator)
        x, log_dx_dy = sigmoid_transform(y)
        return x, log_p - log_dx_dy.sum(dim=1)

    def log_prob(
        self,
        x: Tensor,
        context: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """log q(x) (n,) of ``x`` (n, d) in [0, 1]^d (reverse ODE)."""
        x, context = self.flow._prepare(x, context, "x")
        y, log_dy_dx = logit_transform(x)
        return self.flow.log_prob(y, context, generator) + log_dy_dx.sum(dim=1)
