"""Two-body decay of a four-momentum: the angles (cos theta, phi) <-> two daughters.

Phase-space convention (used throughout evgen):

    dPhi_n = (2 pi)^4 delta^4(P - sum p_i) prod_i d^3p_i / ((2 pi)^3 2 E_i)

so that dPhi_2 = |p*| / (16 pi^2 sqrt(s)) dOmega and the massless Phi_2 = 1 / (8 pi).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from evgen.kinematics import mass2

__all__ = ["kallen", "two_body_momentum", "boost_from_rest", "boost_to_rest", "TwoBodyDecay"]


def kallen(a: Tensor, b: Tensor | float, c: Tensor | float) -> Tensor:
    """Kallen function lambda(a, b, c) = a^2 + b^2 + c^2 - 2ab - 2ac - 2bc."""
    return a * a + b * b + c * c - 2.0 * (a * b + a * c + b * c)


def two_body_momentum(s: Tensor, m1: float, m2: float) -> Tensor:
    """Daughter momentum |p*| (GeV) in the rest frame of a parent of mass^2 s (GeV^2).

    Uses lambda(s, m1^2, m2^2) = (s - (m1+m2)^2)(s - (m1-m2)^2) for precision near
    threshold; 0 at or below threshold (and for s <= 0).
    """
    lam = (s - (m1 + m2) ** 2) * (s - (m1 - m2) ** 2)
    ok = (s > 0) & (s > (m1 + m2) ** 2)
    safe_s = torch.where(ok, s, torch.ones_like(s))
    return torch.where(ok, torch.sqrt(lam.clamp_min(0.0) / (4.0 * safe_s)), torch.zeros_like(s))


def boost_from_rest(p: Tensor, parent: Tensor, mass: Tensor) -> Tensor:
    """Boost p (..., 4), given in the rest frame of ``parent``, to the frame of ``parent``.

    ``parent`` (..., 4) and its mass (...) broadcast against p. Written with the mass
    instead of beta = |P| / E, so that no 1 - beta^2 is formed: precise for large boosts.
        E' = (P0 E + P.p) / M,   p' = p + P (E + E') / (P0 + M)
    """
    m = mass[..., None]
    e = (parent[..., :1] * p[..., :1] + (parent[..., 1:] * p[..., 1:]).sum(-1, keepdim=True)) / m
    vec = p[..., 1:] + parent[..., 1:] * (p[..., :1] + e) / (parent[..., :1] + m)
    return torch.cat([e, vec], dim=-1)


def boost_to_rest(p: Tensor, parent: Tensor, mass: Tensor) -> Tensor:
    """The inverse of :func:`boost_from_rest`: p (..., 4) into the rest frame of ``parent``."""
    m = mass[..., None]
    e = (parent[..., :1] * p[..., :1] - (parent[..., 1:] * p[..., 1:]).sum(-1, keepdim=True)) / m
    vec = p[..., 1:] - parent[..., 1:] * (p[..., :1] + e) / (parent[..., :1] + m)
    return torch.cat([e, vec], dim=-1)


class TwoBodyDecay:
    """P -> p1 + p2 with masses m1, m2, flat in the decay angles.

    r (n, 2) in [0, 1)^2 gives cos(theta) = 2 r0 - 1 and phi = 2 pi r1 in the parent
    rest frame reached from the frame of ``parent`` by a pure boost (theta measured
    from that frame's z axis); the daughters are boosted back to the input frame.

    The Jacobian is the two-body phase-space measure per unit square,

        jac = 4 pi |p*| / (16 pi^2 sqrt(s)) = beta / (8 pi),
        beta = sqrt(lambda(s, m1^2, m2^2)) / s,

    dimensionless; 0 below threshold, where the daughters are returned at rest in the
    parent frame (finite, no NaNs).

    Example:
        >>> dec = TwoBodyDecay(173.0, 173.0)
        >>> daughters, jac = dec.map(r, p_parent)        # (n, 2, 4), (n,)
        >>> r_back, jac_back = dec.map_inverse(daughters)
    """

    n_dim = 2

    def __init__(self, m1: float = 0.0, m2: float = 0.0) -> None:
        if m1 < 0 or m2 < 0:
            raise ValueError(f"TwoBodyDecay: masses must be >= 0 GeV, got {m1}, {m2}")
        self.m1, self.m2 = float(m1), float(m2)

    def jacobian(self, s: Tensor) -> Tensor:
        """beta / (8 pi) for a parent of mass^2 s (n,), 0 below threshold."""
        ok = s > 0
        safe_s = torch.where(ok, s, torch.ones_like(s))
        pstar = two_body_momentum(s, self.m1, self.m2)
        return torch.where(ok, pstar / (4.0 * math.pi * torch.sqrt(safe_s)), torch.zeros_like(s))

    def _safe_parent(self, parent: Tensor) -> tuple[Tensor, Tensor]:
        """(parent with unphysical entries replaced by one at rest above threshold, mask)."""
        s = mass2(parent)
        ok = (s > (self.m1 + self.m2) ** 2) & (parent[:, 0] > 0) & (s > 0)
        rest = torch.zeros_like(parent)
        rest[:, 0] = max(self.m1 + self.m2, 1.0)
        return torch.where(ok[:, None], parent, rest), ok

    def map(self, r: Tensor, parent: Tensor) -> tuple[Tensor, Tensor]:
        """r (n, 2), parent (n, 4) GeV -> (daughters (n, 2, 4) GeV, jac (n,))."""
        r = r.to(torch.float64)
        parent = parent.to(torch.float64)
        safe, ok = self._safe_parent(parent)
        s = mass2(safe)
        sqrt_s = torch.sqrt(s)
        pstar = two_body_momentum(s, self.m1, self.m2)
        e1 = (s + self.m1**2 - self.m2**2) / (2.0 * sqrt_s)
        e2 = (s + self.m2**2 - self.m1**2) / (2.0 * sqrt_s)
        cos_t = (2.0 * r[:, 0] - 1.0).clamp(-1.0, 1.0)
        sin_t = torch.sqrt((1.0 - cos_t) * (1.0 + cos_t))
        ph = 2.0 * math.pi * r[:, 1]
        direction = torch.stack([sin_t * torch.cos(ph), sin_t * torch.sin(ph), cos_t], dim=-1)
        vec = pstar[:, None] * direction
        p1 = torch.cat([e1[:, None], vec], dim=-1)
        p2 = torch.cat([e2[:, None], -vec], dim=-1)
        daughters = boost_from_rest(torch.stack([p1, p2], dim=1), safe[:, None, :], sqrt_s[:, None])
        jac = torch.where(ok, self.jacobian(s), torch.zeros_like(s))
        return daughters, jac

    def map_inverse(self, daughters: Tensor) -> tuple[Tensor, Tensor]:
        """daughters (n, 2, 4) GeV, in any frame -> (r (n, 2), jac (n,))."""
        daughters = daughters.to(torch.float64)
        parent = daughters[:, 0] + daughters[:, 1]
        safe, ok = self._safe_parent(parent)
        p1 = boost_to_rest(daughters[:, 0], safe, torch.sqrt(mass2(safe)))
        pabs = torch.linalg.vector_norm(p1[:, 1:], dim=-1)
        cos_t = torch.where(pabs > 0, p1[:, 3] / torch.where(pabs > 0, pabs, 1.0), 1.0)
        ph = torch.remainder(torch.atan2(p1[:, 2], p1[:, 1]), 2.0 * math.pi)
        r = torch.stack([(1.0 + cos_t.clamp(-1.0, 1.0)) / 2.0, ph / (2.0 * math.pi)], dim=-1)
        s = mass2(safe)
        jac = torch.where(ok, self.jacobian(s), torch.zeros_like(s))
        return r, jac
