r"""Normalizing flows that are exact bijections of the unit hypercube [0, 1]^d onto itself.

A :class:`UnitHypercubeFlow` maps a uniform latent point ``z`` to ``x`` through a
stack of rational-quadratic spline coupling layers (Durkan et al., arXiv:1906.04032;
coupling layers: Dinh et al., arXiv:1605.08803). With ``z ~ U[0, 1]^d`` the density of
``x`` is

.. math::
    q(x) = \left|\det \frac{\partial z}{\partial x}\right|
         = \prod_{l} \prod_{i \in T_l} \frac{\partial z^{(l-1)}_i}{\partial z^{(l)}_i},

the product over layers ``l`` of the spline derivatives of the dimensions ``T_l`` that
layer transforms (a coupling layer's Jacobian is triangular). This is the sampler of
neural importance sampling: ``x, log_q = flow.sample(n)`` and ``f(x) / exp(log_q)``
estimates the integral of ``f`` (MadNIS, arXiv:2212.06172).

Masks. Layer pairs split the dimensions by the bits of their index (Gao et al.,
arXiv:2001.05486, as in MadNIS): in pair ``j`` the dimensions with bit ``j % n_bits``
set are transformed conditioned on the others, then the roles swap. Every dimension is
transformed, and every pair of dimensions sits on opposite sides of some layer, after
``2 * ceil(log2 d)`` layers. For d = 1 there is nothing to condition on: the layer is a
plain spline whose parameters are learned directly (or computed from the context).

Context. With ``context_dim > 0`` every layer's spline parameters are functions of
the context vector as well (a conditional flow q(x | c)): a one-hot channel index for
multi-channel integration, detector-level features for unfolding.

Initialisation. The last layer of every conditioner network starts at zero, which
makes every spline the identity: an untrained flow is exactly the uniform density.

dtype. The networks and the spline arithmetic run in the flow's ``dtype`` (float64 by
default, for exact importance weights). Inputs (``z``, ``x``, ``context``) are converted
to it in one place, :meth:`UnitHypercubeFlow._prepare`; outputs come back in it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from evgen.ml.nn import MLP, prepare_inputs
from evgen.ml.transforms import rational_quadratic_spline

__all__ = ["UnitHypercubeFlow", "coupling_masks"]


def coupling_masks(dim: int, n_layers: int) -> list[Tensor]:
    """Boolean masks of the dimensions each coupling layer transforms.

    Layer ``l`` transforms the dimensions ``i`` whose bit ``(l // 2) % n_bits`` is 1
    (``l`` even) or 0 (``l`` odd), ``n_bits = ceil(log2 dim)``. Every mask is neither
    empty nor full; for ``dim == 1`` every layer transforms the one dimension.

    Args:
        dim: dimension d >= 1.
        n_layers: number of layers; for d >= 2 at least 2, so every dimension is
            transformed at least once.

    Returns:
        ``n_layers`` bool tensors of shape (dim,).

    Example:
        >>> [m.int().tolist() for m in coupling_masks(3, 4)]
        [[0, 1, 0], [1, 0, 1], [0, 0, 1], [1, 1, 0]]
    """
    if dim < 1:
        raise ValueError(f"flow dimension must be >= 1, got {dim}")
    if n_layers < 1 or (dim >= 2 and n_layers < 2):
        raise ValueError(
            f"flow n_layers must be >= {1 if dim == 1 else 2} for dimension {dim} "
            f"(so that every dimension is transformed), got {n_layers}"
        )
    if dim == 1:
        return [torch.ones(1, dtype=torch.bool) for _ in range(n_layers)]
    n_bits = math.ceil(math.log2(dim))
    index = torch.arange(dim)
    masks = []
    for layer in range(n_layers):
        bit = (layer // 2) % n_bits
        mask = ((index >> bit) & 1).bool()
        masks.append(mask if layer % 2 == 0 else ~mask)
    return masks


class _SplineCoupling(nn.Module):
    """One RQS coupling layer: x_T -> spline(x_T; theta(x_C, context)), x_C unchanged.

    With no conditioning dimensions and no context (d = 1, unconditional) the spline
    parameters are a learned tensor instead of a network output.
    """

    transformed: Tensor  # indices of the transformed dimensions (buffer)
    conditioning: Tensor  # indices of the conditioning dimensions (buffer)

    def __init__(
        self,
        mask: Tensor,
        *,
        context_dim: int,
        bins: int,
        hidden: int,
        hidden_layers: int,
        dtype: torch.dtype,
    ) -> None:
        super().__init__()
        self.register_buffer("transformed", torch.nonzero(mask).flatten(), persistent=False)
        self.register_buffer("conditioning", torch.nonzero(~mask).flatten(), persistent=False)
        self.bins = bins
        n_t, n_c = int(mask.sum()), int((~mask).sum())
        self.n_params = 3 * bins + 1
        n_in = n_c + context_dim
        self.net: nn.Module | None
        if n_in == 0:
            self.net = None
            self.params = nn.Parameter(torch.zeros(n_t, self.n_params, dtype=dtype))
        else:
            self.net = MLP(
                n_in,
                n_t * self.n_params,
                hidden=hidden,
                hidden_layers=hidden_layers,
                zero_init_last=True,
                dtype=dtype,
            )

    def forward(self, x: Tensor, context: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        n = x.shape[0]
        n_t = self.transformed.numel()
        if self.net is None:
            params = self.params.expand(n, n_t, self.n_params)
        else:
            # Conditioning coordinates centred on 0 (2x - 1 in [-1, 1]) for the network.
            features = [2 * x[:, self.conditioning] - 1]
            if context is not None:
                features.append(context)
            params = self.net(torch.cat(features, dim=1)).view(n, n_t, self.n_params)
        widths, heights, derivatives = params.split([self.bins, self.bins, self.bins + 1], -1)
        out_t, ladj = rational_quadratic_spline(
            x[:, self.transformed], widths, heights, derivatives, inverse=inverse
        )
        return x.index_copy(1, self.transformed, out_t), ladj.sum(dim=1)


class UnitHypercubeFlow(nn.Module):
    r"""Spline-coupling normalizing flow, an exact bijection of [0, 1]^d onto itself.

    ``forward_map`` sends the uniform latent ``z`` to ``x``; ``log_prob(x)`` is the
    density of ``x`` when ``z ~ U[0, 1]^d``, :math:`\log q(x) = \log|\det dz/dx|`.

    Args:
        dim: dimension d >= 1 of the hypercube.
        context_dim: length of the context vector (0: unconditional flow).
        n_layers: coupling layers; default 1 for d = 1 and
            ``max(4, 2 * ceil(log2 d))`` otherwise (each dimension transformed at least
            twice and every pair of dimensions separated at least once).
        bins: spline bins K per layer and dimension (>= 2).
        hidden: width of the conditioner networks' hidden layers.
        hidden_layers: depth of the conditioner networks.
        dtype: dtype of parameters and arithmetic (float64 by default).

    Shapes: ``z``, ``x``: (n, d); ``context``: (n, context_dim), or (context_dim,) for
    one context shared by the batch; log-Jacobians and log-densities: (n,).

    Example:
        >>> flow = UnitHypercubeFlow(2, context_dim=3)
        >>> c = torch.nn.functional.one_hot(torch.tensor(1), 3).double()
        >>> x, log_q = flow.sample(1000, c)         # untrained: uniform, log_q = 0
        >>> torch.allclose(flow.log_prob(x, c), log_q)
        True
    """

    def __init__(
        self,
        dim: int,
        *,
        context_dim: int = 0,
        n_layers: int | None = None,
        bins: int = 10,
        hidden: int = 32,
        hidden_layers: int = 2,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        if context_dim < 0:
            raise ValueError(f"flow context_dim must be >= 0, got {context_dim}")
        if bins < 2:
            raise ValueError(f"flow bins must be >= 2, got {bins}")
        if n_layers is None:
            n_layers = 1 if dim == 1 else max(4, 2 * math.ceil(math.log2(dim)))
        self.dim = dim
        self.context_dim = context_dim
        self.dtype = dtype
        self.layers = nn.ModuleList(
            _SplineCoupling(
                mask,
                context_dim=context_dim,
                bins=bins,
                hidden=hidden,
                hidden_layers=hidden_layers,
                dtype=dtype,
            )
            for mask in coupling_masks(dim, n_layers)
        )

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return next(self.parameters()).device

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

    def forward_map(self, z: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Latent to data: ``z`` (n, d) in [0, 1]^d -> (``x`` (n, d), log|det dx/dz| (n,))."""
        x, context = self._prepare(z, context, "z")
        total = torch.zeros(x.shape[0], dtype=self.dtype, device=x.device)
        for layer in self.layers:
            x, ladj = layer(x, context, inverse=False)
            total = total + ladj
        return x, total

    def inverse_map(self, x: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Data to latent: ``x`` (n, d) in [0, 1]^d -> (``z`` (n, d), log|det dz/dx| (n,))."""
        z, context = self._prepare(x, context, "x")
        total = torch.zeros(z.shape[0], dtype=self.dtype, device=z.device)
        for layer in reversed(self.layers):
            z, ladj = layer(z, context, inverse=True)
            total = total + ladj
        return z, total

    def log_prob(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """log q(x) (n,) of ``x`` (n, d) for a uniform latent: log|det dz/dx|."""
        return self.inverse_map(x, context)[1]

    def sample(
        self,
        n: int,
        context: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Draw ``n`` points: (x (n, d) in [0, 1]^d, log q(x) (n,)).

        ``z`` is drawn with ``torch.rand`` (on the flow's device, from ``generator`` if
        given) and mapped forward; log q(x) = -log|det dx/dz|. Differentiable with
        respect to the parameters (reparameterisation), e.g. for a reverse-KL loss.
        """
        z = torch.rand(n, self.dim, generator=generator, dtype=self.dtype, device=self.device)
        x, ladj = self.forward_map(z, context)
        return x, -ladj
