r"""Network-weight uncertainty: variational Bayesian layers and deterministic ensembles.

Bayesian layers (Bayesian INN, Bellagente et al. arXiv:2104.04543; Bayesian CFM,
Butter et al. arXiv:2305.10475). Every weight of a :class:`BayesianLinear` is an
independent Gaussian :math:`q(w) = N(\mu, \sigma^2)` with learned mean and
log-variance; the prior is :math:`p(w) = N(0, s^2)`. Training maximises the evidence
lower bound, i.e. minimises

.. math::
    L = \Big\langle \frac{1}{n}\sum_{i=1}^{n} \ell(x_i; w) \Big\rangle_{w \sim q}
        + \frac{c}{N_\mathrm{train}} \mathrm{KL}[q(w) \,\|\, p(w)],\qquad
    \mathrm{KL} = \sum_w \Big[\log\frac{s}{\sigma} + \frac{\sigma^2 + \mu^2}{2 s^2}
        - \frac12\Big],

the mean loss per event plus the KL divergence divided by the number of training
events: the ELBO of the whole training set divided by :math:`N_\mathrm{train}`.
For a likelihood loss (the INN's :math:`\ell = -\log p`) this is exact with c = 1.
The flow-matching MSE is not a log-likelihood (it is one up to the scale of a Gaussian
of unit variance), so arXiv:2305.10475 treats the KL weight of the Bayesian CFM as a
hyperparameter around the same 1/N normalisation; here it is ``kl_scale`` = c, default
1 (:func:`bayesian_flow_matching_loss`). The sampled weights' scale therefore measures
the loss landscape of the MSE, and the spread it gives should be calibrated (e.g.
against the deviation from truth, as the issue's benchmark does).

Weight modes of a layer (:func:`set_weight_mode`):

* ``"local"`` (training; the default): the local reparametrisation trick (Kingma,
  Salimans & Welling arXiv:1506.02557): each row's pre-activations are drawn from the
  Gaussian they have under :math:`q`, mean :math:`x\mu^T + b`, variance
  :math:`x^2 \sigma^{2T}`: an independent weight sample per event at the cost of two
  matrix products, with lower-variance gradients than one shared sample.
* ``"fixed"``: one weight sample drawn by :func:`sample_weights` is used for every row
  and every call, so one network-weight sample generates a whole event sample (and stays
  the same along an ODE trajectory).
* ``"mean"``: the mean weights :math:`\mu`.

Biases are deterministic (as in the Bayesian INN): the uncertainty lives in the weights.

Ensembles (:class:`VelocityEnsemble`): K independently initialised networks trained on
independently drawn batches (Lakshminarayanan et al. arXiv:1612.01474); member k plays
the role of weight sample k.

Example:
    >>> net = BayesianVelocityNet(3, context_dim=2, hidden=16, hidden_layers=2)
    >>> x = torch.zeros(5, 3, dtype=torch.float64)
    >>> c = torch.zeros(5, 2, dtype=torch.float64)
    >>> loss = bayesian_flow_matching_loss(net, x, c, n_train=1000)   # train on this
    >>> sample_weights(net, torch.Generator().manual_seed(1))         # fixed mode
    >>> bool((net(x, 0.5, c) == net(x, 0.5, c)).all())
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from evgen.ml.cfm import VelocityNet, flow_matching_loss, time_features

__all__ = [
    "BayesianLinear",
    "BayesianMLP",
    "BayesianVelocityNet",
    "VelocityEnsemble",
    "WeightMode",
    "bayesian_flow_matching_loss",
    "bayesian_kl",
    "bayesian_layers",
    "sample_weights",
    "set_weight_mode",
]

WeightMode = Literal["local", "fixed", "mean"]


class BayesianLinear(nn.Module):
    r"""Affine layer with Gaussian weights :math:`N(\mu, \sigma^2)` and a Gaussian prior.

    Args:
        in_features, out_features: widths.
        prior_std: standard deviation s of the prior N(0, s^2) of every weight.
        init_log_var: initial :math:`\log\sigma^2` of every weight (the Bayesian INN
            starts near-deterministic, -9, and lets the KL term widen the weights).
        dtype: dtype of the parameters.

    Attributes:
        weight_mean: (out, in) :math:`\mu`.
        weight_log_var: (out, in) :math:`\log\sigma^2`.
        bias: (out,) deterministic bias.
        mode: the :data:`WeightMode`.

    Shapes: input (n, in) -> output (n, out).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        prior_std: float = 1.0,
        init_log_var: float = -9.0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1 or not prior_std > 0:
            raise ValueError(
                "BayesianLinear: need in_features, out_features >= 1 and prior_std > 0, "
                f"got {in_features}, {out_features}, {prior_std}"
            )
        self.in_features, self.out_features = in_features, out_features
        self.prior_std = float(prior_std)
        reference = nn.Linear(in_features, out_features, dtype=dtype)  # torch's init
        self.weight_mean = nn.Parameter(reference.weight.detach().clone())
        self.bias = nn.Parameter(reference.bias.detach().clone())
        self.weight_log_var = nn.Parameter(
            torch.full((out_features, in_features), float(init_log_var), dtype=dtype)
        )
        self.mode: WeightMode = "local"
        self._fixed: Tensor | None = None

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"prior_std={self.prior_std}, mode={self.mode}"
        )

    def kl(self) -> Tensor:
        r"""KL[q || p] summed over the weights, in closed form (a scalar)."""
        s2 = self.prior_std**2
        var = self.weight_log_var.exp()
        terms = 0.5 * ((var + self.weight_mean**2) / s2 - 1.0 - self.weight_log_var + math.log(s2))
        return terms.sum()

    def sample_weights(self, generator: torch.Generator | None = None) -> None:
        """Draw one weight sample and switch to ``"fixed"`` mode.

        The standard normals are drawn on the CPU in float64 (``generator`` must be a
        CPU generator), so a seed gives the same weights on every device.
        """
        eps = torch.randn(self.weight_mean.shape, generator=generator, dtype=torch.float64).to(
            self.weight_mean
        )
        with torch.no_grad():
            self._fixed = self.weight_mean + (0.5 * self.weight_log_var).exp() * eps
        self.mode = "fixed"

    def forward(self, x: Tensor) -> Tensor:
        if self.mode == "mean":
            return F.linear(x, self.weight_mean, self.bias)
        if self.mode == "fixed":
            if self._fixed is None:
                raise RuntimeError("BayesianLinear: fixed mode before sample_weights()")
            return F.linear(x, self._fixed.to(x), self.bias)
        mean = F.linear(x, self.weight_mean, self.bias)
        var = F.linear(x * x, self.weight_log_var.exp())
        # The floor keeps the gradient of the square root finite for an all-zero row.
        return mean + torch.sqrt(var + 1e-30) * torch.randn_like(mean)


class BayesianMLP(nn.Sequential):
    """An :class:`~evgen.ml.MLP` whose affine layers are :class:`BayesianLinear`.

    Args:
        in_features, out_features, hidden, hidden_layers: as :class:`~evgen.ml.MLP`.
        activation: module class of the non-linearity (default SiLU).
        prior_std, init_log_var: of every :class:`BayesianLinear`.
        dtype: dtype of the parameters.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hidden: int = 32,
        hidden_layers: int = 2,
        activation: type[nn.Module] = nn.SiLU,
        prior_std: float = 1.0,
        init_log_var: float = -9.0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if hidden < 1 or hidden_layers < 0:
            raise ValueError(
                f"BayesianMLP: need hidden >= 1, hidden_layers >= 0, got {hidden}, {hidden_layers}"
            )
        layers: list[nn.Module] = []
        width = in_features
        options = {"prior_std": prior_std, "init_log_var": init_log_var, "dtype": dtype}
        for _ in range(hidden_layers):
            layers += [BayesianLinear(width, hidden, **options), activation()]  # type: ignore[arg-type]
            width = hidden
        layers.append(BayesianLinear(width, out_features, **options))  # type: ignore[arg-type]
        super().__init__(*layers)


class BayesianVelocityNet(nn.Module):
    """Bayesian velocity field v(x, t[, context]): :class:`~evgen.ml.VelocityNet`'s
    interface and inputs (x, Fourier time features, context) on a :class:`BayesianMLP`.

    Args:
        dim, context_dim, hidden, hidden_layers, time_frequencies, dtype: as
            :class:`~evgen.ml.VelocityNet`.
        prior_std, init_log_var: of every Bayesian layer.

    Shapes: ``x`` (n, d); ``t`` a float or a tensor of shape () or (n,); ``context``
    (n, context_dim); result (n, d).
    """

    def __init__(
        self,
        dim: int,
        *,
        context_dim: int = 0,
        hidden: int = 64,
        hidden_layers: int = 3,
        time_frequencies: int = 4,
        prior_std: float = 1.0,
        init_log_var: float = -9.0,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if dim < 1 or context_dim < 0 or time_frequencies < 0:
            raise ValueError(
                "BayesianVelocityNet: need dim >= 1, context_dim >= 0, time_frequencies "
                f">= 0, got {dim}, {context_dim}, {time_frequencies}"
            )
        self.dim, self.context_dim, self.time_frequencies = dim, context_dim, time_frequencies
        n_in = dim + 1 + 2 * time_frequencies + context_dim
        self.net = BayesianMLP(
            n_in,
            dim,
            hidden=hidden,
            hidden_layers=hidden_layers,
            prior_std=prior_std,
            init_log_var=init_log_var,
            dtype=dtype,
        )

    def forward(self, x: Tensor, t: float | Tensor, context: Tensor | None = None) -> Tensor:
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        features = [x, time_features(t, self.time_frequencies)]
        if context is not None:
            features.append(context)
        return self.net(torch.cat(features, dim=1))

    def kl(self) -> Tensor:
        """KL[q || p] of all weights (a scalar)."""
        return bayesian_kl(self)


class VelocityEnsemble(nn.Module):
    """K independently initialised :class:`~evgen.ml.VelocityNet` members.

    ``forward`` evaluates the member chosen by :meth:`select` (member 0 at first); train
    each member on its own batches (see :func:`evgen.generators.model.train_generator`).

    Args:
        n_members: K >= 1.
        dim, context_dim, hidden, hidden_layers, time_frequencies, dtype: of each member.
    """

    def __init__(
        self,
        n_members: int,
        dim: int,
        *,
        context_dim: int = 0,
        hidden: int = 64,
        hidden_layers: int = 3,
        time_frequencies: int = 4,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if n_members < 1:
            raise ValueError(f"VelocityEnsemble: n_members must be >= 1, got {n_members}")
        self.dim, self.context_dim = dim, context_dim
        self.members = nn.ModuleList(
            VelocityNet(
                dim,
                context_dim=context_dim,
                hidden=hidden,
                hidden_layers=hidden_layers,
                time_frequencies=time_frequencies,
                dtype=dtype,
            )
            for _ in range(n_members)
        )
        self.active = 0

    @property
    def n_members(self) -> int:
        """K."""
        return len(self.members)

    def select(self, member: int) -> None:
        """Evaluate member ``member`` (0 <= member < K) from now on."""
        if not 0 <= member < self.n_members:
            raise ValueError(
                f"VelocityEnsemble: member must be in [0, {self.n_members}), got {member}"
            )
        self.active = member

    def forward(self, x: Tensor, t: float | Tensor, context: Tensor | None = None) -> Tensor:
        return self.members[self.active](x, t, context)


def bayesian_layers(module: nn.Module) -> Iterator[BayesianLinear]:
    """The :class:`BayesianLinear` layers inside ``module``."""
    return (m for m in module.modules() if isinstance(m, BayesianLinear))


def bayesian_kl(module: nn.Module) -> Tensor:
    """KL[q || p] summed over every Bayesian layer of ``module`` (0 if it has none)."""
    total: Tensor | None = None
    for layer in bayesian_layers(module):
        total = layer.kl() if total is None else total + layer.kl()
    if total is None:
        return torch.zeros((), dtype=torch.float64)
    return total


def set_weight_mode(module: nn.Module, mode: WeightMode) -> None:
    """Put every Bayesian layer of ``module`` into ``mode`` (``"fixed"`` needs
    :func:`sample_weights` first, which sets it itself)."""
    if mode not in ("local", "fixed", "mean"):
        raise ValueError(f"weight mode must be 'local', 'fixed' or 'mean', got {mode!r}")
    for layer in bayesian_layers(module):
        if mode == "fixed" and layer._fixed is None:
            raise RuntimeError("set_weight_mode: 'fixed' before sample_weights()")
        layer.mode = mode


def sample_weights(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """Draw one weight sample for every Bayesian layer (in module order, from one CPU
    ``generator``) and put them into ``"fixed"`` mode."""
    for layer in bayesian_layers(module):
        layer.sample_weights(generator)


def bayesian_flow_matching_loss(
    velocity: nn.Module,
    x1: Tensor,
    context: Tensor | None = None,
    *,
    n_train: int,
    kl_scale: float = 1.0,
    x0: Tensor | None = None,
    sigma_min: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Bayesian flow-matching loss: :func:`~evgen.ml.flow_matching_loss` + c KL / N.

    Args:
        velocity: a field with Bayesian layers (in ``"local"`` mode for training).
        x1, context, x0, sigma_min, generator: as :func:`~evgen.ml.flow_matching_loss`.
        n_train: number of training events N (the KL term is divided by it).
        kl_scale: c, the weight of the KL term relative to the ELBO normalisation.

    Returns:
        The scalar loss.
    """
    if n_train < 1 or kl_scale < 0:
        raise ValueError(
            f"bayesian loss: need n_train >= 1 and kl_scale >= 0, got {n_train}, {kl_scale}"
        )
    mse = flow_matching_loss(velocity, x1, context, x0=x0, sigma_min=sigma_min, generator=generator)
    return mse + (kl_scale / n_train) * bayesian_kl(velocity).to(mse)
