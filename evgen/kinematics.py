"""Batched four-vector helpers on torch tensors.

Four-momenta are tensors ``(..., 4)`` holding (E, px, py, pz) in GeV, metric (+,-,-,-).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "dot",
    "mass2",
    "pt",
    "pt2",
    "rapidity",
    "pseudorapidity",
    "phi",
    "delta_r",
    "boost",
    "boost_z",
]


def dot(a: Tensor, b: Tensor) -> Tensor:
    """Minkowski product a.b in GeV^2, shapes (..., 4) -> (...)."""
    return a[..., 0] * b[..., 0] - (a[..., 1:] * b[..., 1:]).sum(-1)


def mass2(p: Tensor) -> Tensor:
    """Invariant mass squared p^2 in GeV^2."""
    return dot(p, p)


def pt2(p: Tensor) -> Tensor:
    """Transverse momentum squared in GeV^2."""
    return p[..., 1] ** 2 + p[..., 2] ** 2


def pt(p: Tensor) -> Tensor:
    """Transverse momentum in GeV."""
    return torch.sqrt(pt2(p))


def rapidity(p: Tensor) -> Tensor:
    """Rapidity y = 1/2 ln((E+pz)/(E-pz))."""
    return 0.5 * torch.log((p[..., 0] + p[..., 3]) / (p[..., 0] - p[..., 3]))


def pseudorapidity(p: Tensor) -> Tensor:
    """Pseudorapidity eta = asinh(pz/pT); +-inf along the beam."""
    return torch.asinh(p[..., 3] / pt(p))


def phi(p: Tensor) -> Tensor:
    """Azimuthal angle in (-pi, pi]."""
    return torch.atan2(p[..., 2], p[..., 1])


def delta_r(a: Tensor, b: Tensor) -> Tensor:
    """Distance sqrt(d_eta^2 + d_phi^2) in the (pseudorapidity, azimuth) plane."""
    dphi = torch.remainder(phi(a) - phi(b) + torch.pi, 2 * torch.pi) - torch.pi
    return torch.sqrt((pseudorapidity(a) - pseudorapidity(b)) ** 2 + dphi**2)


def boost(p: Tensor, beta: Tensor) -> Tensor:
    """Lorentz boost of p (..., 4) by velocity beta (..., 3), broadcasting.

    A particle at rest in the original frame moves with velocity +beta afterwards.
    """
    b2 = (beta**2).sum(-1, keepdim=True)
    gamma = 1.0 / torch.sqrt(1.0 - b2)
    bp = (beta * p[..., 1:]).sum(-1, keepdim=True)
    safe_b2 = torch.where(b2 > 0, b2, torch.ones_like(b2))
    g2 = torch.where(b2 > 0, (gamma - 1.0) / safe_b2, torch.zeros_like(b2))
    e = gamma * (p[..., :1] + bp)
    vec = p[..., 1:] + g2 * bp * beta + gamma * beta * p[..., :1]
    return torch.cat([e, vec], dim=-1)


def boost_z(p: Tensor, y: Tensor) -> Tensor:
    """Boost along z by rapidity y (shape broadcastable to p[..., 0])."""
    ch, sh = torch.cosh(y), torch.sinh(y)
    e = ch * p[..., 0] + sh * p[..., 3]
    z = sh * p[..., 0] + ch * p[..., 3]
    return torch.stack([e, p[..., 1], p[..., 2], z], dim=-1)
