"""Flat n-body phase space: RAMBO with 3n - 4 random numbers, massless and massive.

Massless momenta come from "RAMBO on diet" (S. Platzer, arXiv:1308.2922): a chain of
two-body decays Q_1 = P -> p_1 + Q_2, Q_2 -> p_2 + Q_3, ..., Q_{n-1} -> p_{n-1} + p_n
whose intermediate masses M_{i+1}^2 = v_i M_i^2 are drawn from the exact density of
massless phase space, (1 - v) v^(K-1) with K = n - i - 1, by inverting its cumulative
distribution F(v) = (K+1) v^K - K v^(K+1). The weight is then the constant massless
volume (Kleiss, Stirling, Ellis, Comput. Phys. Commun. 40 (1986) 359)

    Phi_n(s) = (2 pi)^(4 - 3n) (pi/2)^(n-1) s^(n-2) / ((n-1)! (n-2)!)

in the convention dPhi_n = (2 pi)^4 delta^4(P - sum p) prod d^3p / ((2 pi)^3 2E).
Unlike the original RAMBO (4n numbers) it uses exactly 3n - 4 numbers and is
invertible.

Massive momenta follow Kleiss-Stirling-Ellis: the massless momenta q_i (in the centre-
of-mass frame) are rescaled, k_i = (sqrt(m_i^2 + xi^2 |q_i|^2), xi q_i), with xi solving
sum_i E_i = sqrt(s) (Newton), and the weight becomes

    w = Phi_n(s) (sum |k_i| / sqrt(s))^(2n-3) prod (|k_i| / E_i) sqrt(s) / sum (|k_i|^2 / E_i).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from evgen.kinematics import mass2
from evgen.phasespace.two_body import boost_from_rest, boost_to_rest

__all__ = ["Rambo", "massless_volume"]

_BISECTIONS = 64
_NEWTON_MAX = 60


def massless_volume(n: int, s: Tensor | float) -> Tensor | float:
    """Phi_n(s) of n massless particles, GeV^(2n - 4)."""
    if n < 2:
        raise ValueError(f"massless_volume: need n >= 2 particles, got {n}")
    c = (
        (2.0 * math.pi) ** (4 - 3 * n)
        * (math.pi / 2.0) ** (n - 1)
        / (math.factorial(n - 1) * math.factorial(n - 2))
    )
    return c * s ** (n - 2)


def _mass_cdf(v: Tensor, k: int) -> Tensor:
    """F(v) = (K+1) v^K - K v^(K+1), the CDF of (1 - v) v^(K-1) on [0, 1]."""
    return v**k * ((k + 1) - k * v)


def _solve_mass_cdf(r: Tensor, k: int) -> Tensor:
    """v in [0, 1] with F(v) = r, by bisection (F is monotone)."""
    lo, hi = torch.zeros_like(r), torch.ones_like(r)
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        below = _mass_cdf(mid, k) < r
        lo = torch.where(below, mid, lo)
        hi = torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


def _direction(cos_t: Tensor, ph: Tensor) -> Tensor:
    sin_t = torch.sqrt(((1.0 - cos_t) * (1.0 + cos_t)).clamp_min(0.0))
    return torch.stack([sin_t * torch.cos(ph), sin_t * torch.sin(ph), cos_t], dim=-1)


class Rambo:
    """Flat n-body phase space in the centre-of-mass frame, n >= 2.

    Args:
        masses: the n final-state masses in GeV (any mix of zero and non-zero).

    ``map(r, e_cm)`` takes r (n_ev, 3n - 4) in [0, 1) and the centre-of-mass energy
    sqrt(s) (a number or (n_ev,) GeV) and returns momenta (n_ev, n, 4) in GeV whose
    three-momenta sum to zero, and the Jacobian dPhi_n per unit hypercube volume
    (GeV^(2n-4)): constant for massless particles, the KSE weight otherwise, 0 where
    sqrt(s) <= sum of masses (momenta then finite but meaningless).

    Random-number layout: r[:, :n-2] the intermediate masses, then (cos theta, phi)
    pairs of the n - 1 decays.

    Example:
        >>> rambo = Rambo([0.0, 0.0, 0.0])
        >>> p, jac = rambo.map(torch.rand(1000, 5, dtype=torch.float64), 500.0)
    """

    def __init__(self, masses: Sequence[float]) -> None:
        if len(masses) < 2:
            raise ValueError(f"Rambo: need >= 2 final-state particles, got {len(masses)}")
        if any(m < 0 for m in masses):
            raise ValueError(f"Rambo: masses must be >= 0 GeV, got {list(masses)}")
        self.masses = [float(m) for m in masses]
        self.n = len(masses)
        self.n_dim = 3 * self.n - 4
        self.massive = any(m > 0 for m in self.masses)
        self.mass_sum = sum(self.masses)

    # --- massless core -------------------------------------------------------------
    def _massless(self, r: Tensor, e_cm: Tensor) -> Tensor:
        n, k = r.shape[0], self.n
        r_mass = r[:, : k - 2]
        r_ang = r[:, k - 2 :].reshape(n, k - 1, 2)
        m_cur = e_cm
        q_cur = torch.zeros(n, 4, dtype=r.dtype, device=r.device)
        q_cur[:, 0] = e_cm
        out = []
        for i in range(k - 1):
            if i < k - 2:
                v = _solve_mass_cdf(r_mass[:, i], k - i - 2)
                m_next = m_cur * torch.sqrt(v)
            else:
                m_next = torch.zeros_like(m_cur)
            q = (m_cur - m_next) * (m_cur + m_next) / (2.0 * m_cur)
            vec = q[:, None] * _direction(
                2.0 * r_ang[:, i, 0] - 1.0, 2.0 * math.pi * r_ang[:, i, 1]
            )
            p_rest = torch.cat([q[:, None], vec], dim=-1)
            rest_next = torch.cat([torch.sqrt(q * q + m_next * m_next)[:, None], -vec], dim=-1)
            both = boost_from_rest(
                torch.stack([p_rest, rest_next], dim=1), q_cur[:, None, :], m_cur[:, None]
            )
            out.append(both[:, 0])
            q_cur, m_cur = both[:, 1], m_next
        out.append(q_cur)
        return torch.stack(out, dim=1)

    def _massless_inverse(self, q: Tensor) -> Tensor:
        n, k = q.shape[0], self.n
        # suffix sums Q_i = sum_{j >= i} q_j
        suffix = torch.flip(torch.cumsum(torch.flip(q, dims=[1]), dim=1), dims=[1])
        m2 = mass2(suffix).clamp_min(0.0)
        r_mass = []
        r_ang = []
        for i in range(k - 1):
            if i < k - 2:
                v = (m2[:, i + 1] / m2[:, i]).clamp(0.0, 1.0)
                r_mass.append(_mass_cdf(v, k - i - 2))
            p = boost_to_rest(q[:, i], suffix[:, i], torch.sqrt(m2[:, i]).clamp_min(1e-300))
            pabs = torch.linalg.vector_norm(p[:, 1:], dim=-1)
            cos_t = torch.where(pabs > 0, p[:, 3] / torch.where(pabs > 0, pabs, 1.0), 1.0)
            ph = torch.remainder(torch.atan2(p[:, 2], p[:, 1]), 2.0 * math.pi)
            r_ang.append(torch.stack([(1.0 + cos_t.clamp(-1, 1)) / 2.0, ph / (2.0 * math.pi)], -1))
        ang = torch.stack(r_ang, dim=1).reshape(n, 2 * (k - 1))
        if not r_mass:
            return ang
        return torch.cat([torch.stack(r_mass, dim=-1), ang], dim=-1)

    # --- massive rescaling ---------------------------------------------------------
    def _masses_tensor(self, like: Tensor) -> Tensor:
        return torch.tensor(self.masses, dtype=like.dtype, device=like.device)

    def _rescale(self, q: Tensor, e_cm: Tensor) -> Tensor:
        """Massive momenta k_i = (sqrt(m^2 + xi^2 |q|^2), xi q) with sum E = e_cm."""
        m = self._masses_tensor(q)
        qabs2 = (q[..., 1:] ** 2).sum(-1)
        xi = torch.sqrt((1.0 - (self.mass_sum / e_cm) ** 2).clamp_min(0.0))[:, None]
        for _ in range(_NEWTON_MAX):
            e = torch.sqrt(m * m + xi * xi * qabs2)
            g = e.sum(-1, keepdim=True) - e_cm[:, None]
            dg = (xi * qabs2 / torch.where(e > 0, e, 1.0)).sum(-1, keepdim=True)
            step = torch.where(dg > 0, g / torch.where(dg > 0, dg, 1.0), torch.zeros_like(g))
            xi = (xi - step).clamp_min(0.0)
            if bool((step.abs() <= 1e-13 * xi).all()):  # quadratic: error now ~1e-26
                break
        e = torch.sqrt(m * m + xi * xi * qabs2)
        return torch.cat([e[..., None], xi[..., None] * q[..., 1:]], dim=-1)

    def _weight(self, p: Tensor, e_cm: Tensor) -> Tensor:
        base = torch.as_tensor(massless_volume(self.n, e_cm * e_cm))
        if not self.massive:
            return base
        kabs = torch.linalg.vector_norm(p[..., 1:], dim=-1)
        e = p[..., 0]
        ratio = torch.where(e > 0, kabs / torch.where(e > 0, e, 1.0), torch.zeros_like(e))
        sum_k2_e = (kabs * ratio).sum(-1)
        safe = torch.where(sum_k2_e > 0, sum_k2_e, torch.ones_like(sum_k2_e))
        w = (kabs.sum(-1) / e_cm) ** (2 * self.n - 3) * ratio.prod(-1) * e_cm / safe
        return base * torch.where(sum_k2_e > 0, w, torch.zeros_like(w))

    # --- public --------------------------------------------------------------------
    def map(self, r: Tensor, e_cm: Tensor | float) -> tuple[Tensor, Tensor]:
        """r (n_ev, 3n-4), sqrt(s) (number or (n_ev,)) GeV -> (momenta (n_ev, n, 4), jac)."""
        r = r.to(torch.float64)
        e_cm = torch.as_tensor(e_cm, dtype=torch.float64, device=r.device).expand(r.shape[0])
        ok = e_cm > self.mass_sum
        safe = torch.where(ok, e_cm, torch.full_like(e_cm, self.mass_sum + 1.0))
        p = self._massless(r, safe)
        if self.massive:
            p = self._rescale(p, safe)
        jac = torch.where(ok, self._weight(p, safe), torch.zeros_like(safe))
        return p, jac

    def map_inverse(self, momenta: Tensor) -> tuple[Tensor, Tensor]:
        """momenta (n_ev, n, 4) GeV in any frame -> (r (n_ev, 3n-4), jac (n_ev,))."""
        p = momenta.to(torch.float64)
        total = p.sum(dim=1)
        p = boost_to_rest(p, total[:, None, :], torch.sqrt(mass2(total))[:, None])
        e_cm = p[..., 0].sum(-1)
        if self.massive:
            kabs = torch.linalg.vector_norm(p[..., 1:], dim=-1)
            xi = kabs.sum(-1) / e_cm
            vec = p[..., 1:] / xi[:, None, None]
            q = torch.cat([torch.linalg.vector_norm(vec, dim=-1)[..., None], vec], dim=-1)
        else:
            q = p
        r = self._massless_inverse(q)
        ok = e_cm > self.mass_sum
        jac = torch.where(ok, self._weight(p, e_cm), torch.zeros_like(e_cm))
        return r, jac
