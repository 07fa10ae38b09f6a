"""Plain fully connected networks: the one network builder of the ML core.

Every learned map in :mod:`evgen.ml` (spline conditioners, velocity fields) is an MLP
``in_features -> hidden x hidden_layers -> out_features``. Networks act row by row on a
batch (no batch normalisation): the Jacobians and divergences of the flows rely on
output row ``i`` depending on input row ``i`` only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["MLP", "prepare_inputs"]


class MLP(nn.Sequential):
    r"""Multi-layer perceptron :math:`\mathbb{R}^{n_{in}} \to \mathbb{R}^{n_{out}}`.

    ``Linear -> activation`` repeated ``hidden_layers`` times, then a final ``Linear``.

    Args:
        in_features: input width (>= 1).
        out_features: output width.
        hidden: width of each hidden layer.
        hidden_layers: number of hidden layers (0: a single affine layer).
        activation: module class of the non-linearity (default SiLU, smooth).
        zero_init_last: set the last layer's weights and bias to zero, so the network
            starts as the constant 0 (flows use this to start at the identity).
        dtype: dtype of the parameters.

    Shapes: input (n, in_features) -> output (n, out_features).

    Example:
        >>> net = MLP(3, 2, hidden=16, hidden_layers=2)
        >>> net(torch.zeros(5, 3, dtype=torch.float64)).shape
        torch.Size([5, 2])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        hidden: int = 32,
        hidden_layers: int = 2,
        activation: type[nn.Module] = nn.SiLU,
        zero_init_last: bool = False,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        if in_features < 1 or out_features < 1 or hidden < 1 or hidden_layers < 0:
            raise ValueError(
                "MLP: need in_features >= 1, out_features >= 1, hidden >= 1 and "
                f"hidden_layers >= 0, got {in_features}, {out_features}, {hidden}, "
                f"{hidden_layers}"
            )
        layers: list[nn.Module] = []
        width = in_features
        for _ in range(hidden_layers):
            layers += [nn.Linear(width, hidden, dtype=dtype), activation()]
            width = hidden
        last = nn.Linear(width, out_features, dtype=dtype)
        if zero_init_last:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        layers.append(last)
        super().__init__(*layers)


def prepare_inputs(
    points: Tensor,
    context: Tensor | None,
    *,
    dim: int,
    context_dim: int,
    dtype: torch.dtype,
    name: str,
) -> tuple[Tensor, Tensor | None]:
    """Check the shapes of a flow's inputs and convert them to its dtype (the one place
    where the ML core converts dtypes).

    Args:
        points: (n, dim) points.
        context: (n, context_dim) or (context_dim,) conditions, or None for an
            unconditional model (``context_dim == 0``).
        name: the argument's name in error messages.

    Returns:
        (points, context) in ``dtype``; a (context_dim,) context is expanded to (n, ...).
    """
    if points.ndim != 2 or points.shape[1] != dim:
        raise ValueError(f"flow: {name} must have shape (n, {dim}), got {tuple(points.shape)}")
    points = points.to(dtype)
    if context_dim == 0:
        if context is not None:
            raise ValueError("flow: context given to an unconditional flow")
        return points, None
    if context is None:
        raise ValueError(f"flow: context of length {context_dim} required")
    context = context.to(dtype)
    if context.ndim == 1:
        context = context.expand(points.shape[0], -1)
    if context.shape != (points.shape[0], context_dim):
        raise ValueError(
            f"flow: context must have shape ({points.shape[0]}, {context_dim}) or "
            f"({context_dim},), got {tuple(context.shape)}"
        )
    return points, context
