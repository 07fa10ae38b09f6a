"""Collider phase space: unit hypercube -> lab-frame momenta of 2 -> n_out scattering.

Conventions:
    * dPhi_n = (2 pi)^4 delta^4(P - sum p_i) prod_i d^3p_i / ((2 pi)^3 2 E_i).
    * Beams are massless, beam 1 along +z, beam 2 along -z, S = 4 E1 E2 (so
      sqrt(S) = E1 + E2 only for symmetric beams).
    * ``jacobian`` = dx1 dx2 dPhi_n per unit hypercube volume (hadron beams) or dPhi_n
      per unit volume (lepton beams), GeV^(2 n_out - 4); the integrand multiplies it
      by PDFs, flux and |M|^2. It is 0 where the point is outside the physical region
      (momenta there are finite, never NaN).
    * ``map_inverse`` returns the same Jacobian (the forward one, measure per unit
      volume at that point), not its reciprocal.

Final state, in the partonic centre-of-mass frame, then boosted along z to the lab:
    n_out = 2: TwoBodyDecay, r -> (cos theta, phi) of particle 1 (theta from +z, the
               direction of beam 1), exactly flat in the angles;
    n_out >= 3: RAMBO with 3 n_out - 4 numbers (Rambo), massless or massive.

Cut-aware two-body phase space (``HadronicPhaseSpace(..., pair_cuts=MasslessPairCuts(..))``)
for two massless outgoing particles: particle 1 has lab rapidity Y + eta*, particle 2
Y - eta*, with Y the rapidity of the pair and eta* = atanh(cos theta*); their common
transverse momentum is pT = sqrt(s_hat) / (2 cosh eta*). Cuts |eta_1| < E1, |eta_2| < E2
and pT > pT_min therefore make an interval in eta* at each (s_hat, Y),

    max(-E1 - Y, Y - E2, -a) < eta* < min(E1 - Y, E2 + Y, a),
    a = acosh(sqrt(s_hat) / (2 pT_min)),

which is non-empty only for s_hat > 4 pT_min^2 and |Y| < min((E1 + E2) / 2, min(E1, E2) + a).
The mapping samples s_hat and Y inside those limits (LuminosityMapping) and cos theta* flat
in [tanh(lo), tanh(hi)], with the factor (tanh(hi) - tanh(lo)) / 2 in the Jacobian: the
accepted region is covered exactly and no point is spent outside it. The integrand still
applies every cut afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from evgen.kinematics import boost_z
from evgen.phasespace.luminosity import LuminosityMapping
from evgen.phasespace.rambo import Rambo
from evgen.phasespace.two_body import TwoBodyDecay, two_body_momentum

_R_TOLERANCE = 1e-9  # map_inverse: how far outside [0, 1] rounding may put a mapped point

__all__ = ["PhaseSpacePoint", "MasslessPairCuts", "HadronicPhaseSpace", "LeptonicPhaseSpace"]


@dataclass
class PhaseSpacePoint:
    """A batch of phase-space points.

    Attributes:
        momenta: (n, 2 + n_out, 4) lab frame, GeV; incoming first: p1 = x1 P_beam1
            (along +z), p2 = x2 P_beam2 (along -z).
        x1: (n,) momentum fraction of parton 1 (1 for lepton beams).
        x2: (n,) momentum fraction of parton 2.
        jacobian: (n,) dx1 dx2 dPhi_n per unit hypercube volume, GeV^(2 n_out - 4)
            (dPhi_n only for lepton beams); 0 outside the physical region.
    """

    momenta: Tensor
    x1: Tensor
    x2: Tensor
    jacobian: Tensor


@dataclass(frozen=True)
class MasslessPairCuts:
    """Acceptance cuts on two massless outgoing particles that the phase space maps exactly.

    Attributes:
        eta_max: (E1, E2), the |pseudorapidity| limits of outgoing particles 1 and 2 (> 0),
            None for a particle without a rapidity cut.
        pt_min: lower limit on their transverse momentum in GeV (>= 0; both particles have
            the same pT in 2 -> 2, so this is the larger of their two pT cuts).

    Example:
        >>> cuts = MasslessPairCuts(eta_max=(2.5, 2.5), pt_min=10.0)   # p p > e+ e-
        >>> ps = HadronicPhaseSpace(6500.0, 6500.0, [0.0, 0.0], s_hat_min=60.0**2,
        ...                         pair_cuts=cuts)
    """

    eta_max: tuple[float | None, float | None] = (None, None)
    pt_min: float = 0.0

    def __post_init__(self) -> None:
        if len(self.eta_max) != 2 or any(e is not None and not e > 0 for e in self.eta_max):
            raise ValueError(
                f"MasslessPairCuts: eta_max must be two limits > 0 (or None), got {self.eta_max}"
            )
        if not (math.isfinite(self.pt_min) and self.pt_min >= 0):
            raise ValueError(
                f"MasslessPairCuts: pt_min must be finite and >= 0 GeV, got {self.pt_min}"
            )

    @property
    def s_hat_min(self) -> float:
        """Lowest s_hat in GeV^2 at which the pT cut can be passed: 4 pt_min^2."""
        return 4.0 * self.pt_min**2

    def _limits(self) -> tuple[float, float]:
        e1, e2 = (math.inf if e is None else float(e) for e in self.eta_max)
        return e1, e2

    def eta_star_max(self, s_hat: Tensor) -> Tensor:
        """a = acosh(sqrt(s_hat) / (2 pt_min)), the largest |eta*| passing the pT cut
        (s_hat (n,) GeV^2); inf without a pT cut, 0 for s_hat <= 4 pt_min^2."""
        if self.pt_min == 0.0:
            return torch.full_like(s_hat, math.inf)
        ratio = torch.sqrt(s_hat.clamp_min(0.0)) / (2.0 * self.pt_min)
        return torch.acosh(ratio.clamp_min(1.0))

    def rapidity_max(self, s_hat: Tensor) -> Tensor:
        """Bound on |Y|, the lab rapidity of the pair, beyond which no eta* passes the
        cuts: min((E1 + E2) / 2, min(E1, E2) + a(s_hat)); s_hat (n,) in GeV^2."""
        e1, e2 = self._limits()
        return torch.clamp(self.eta_star_max(s_hat) + min(e1, e2), max=0.5 * (e1 + e2))

    def eta_star_range(self, rapidity: Tensor, s_hat: Tensor) -> tuple[Tensor, Tensor]:
        """(lo, hi): the interval of eta* (particle 1's rapidity in the pair rest frame)
        that passes the cuts for a pair of lab rapidity Y and mass^2 s_hat (GeV^2), both
        (n,); empty where lo >= hi."""
        e1, e2 = self._limits()
        a = self.eta_star_max(s_hat)
        lo = torch.maximum(torch.maximum(-e1 - rapidity, rapidity - e2), -a)
        hi = torch.minimum(torch.minimum(e1 - rapidity, e2 + rapidity), a)
        return lo, hi

    def cos_theta_range(self, rapidity: Tensor, s_hat: Tensor) -> tuple[Tensor, Tensor]:
        """(tanh(lo), tanh(hi)): the accepted interval of cos theta* of particle 1, with
        hi < lo where none passes (see :meth:`eta_star_range`)."""
        lo, hi = self.eta_star_range(rapidity, s_hat)
        return torch.tanh(lo), torch.tanh(hi)


class _FinalState:
    """n_out particles in their centre-of-mass frame from 3 n_out - 4 numbers."""

    def __init__(self, masses: Sequence[float]) -> None:
        if len(masses) < 2:
            raise ValueError(
                f"phase space: need >= 2 final-state particles, got {len(masses)} "
                "(2 -> 1 production needs a delta function in s_hat and is not supported)"
            )
        if any(m < 0 or not math.isfinite(m) for m in masses):
            raise ValueError(f"phase space: masses must be finite and >= 0 GeV, got {masses}")
        self.masses = [float(m) for m in masses]
        self.n_dim = 3 * len(masses) - 4
        self._two = TwoBodyDecay(*self.masses) if len(masses) == 2 else None
        self._rambo = Rambo(self.masses) if len(masses) > 2 else None

    def map(self, r: Tensor, e_cm: Tensor) -> tuple[Tensor, Tensor]:
        if self._two is not None:
            parent = torch.zeros(r.shape[0], 4, dtype=torch.float64, device=r.device)
            parent[:, 0] = e_cm
            return self._two.map(r, parent)
        assert self._rambo is not None
        return self._rambo.map(r, e_cm)

    def map_inverse(self, p: Tensor, e_cm: Tensor, rapidity: Tensor) -> tuple[Tensor, Tensor]:
        """Lab-frame final state p (n, n_out, 4) of a system with sqrt(s) = e_cm moving
        with ``rapidity`` along z -> (r, jac)."""
        if self._two is None:
            assert self._rambo is not None
            return self._rambo.map_inverse(boost_z(p, -rapidity[:, None]))
        # Two bodies: read cos(theta) from p_z = cosh(Y) p* cos(theta*) + sinh(Y) E* of the
        # lighter daughter (cos(theta*) = -cos(theta) for daughter 2). Its error is
        # ~ eps (1 + E*/p*): precise for large |Y| (boosting back would cancel E against
        # p_z) and, for a light daughter, near threshold too.
        m1, m2 = self._two.m1, self._two.m2
        s = e_cm * e_cm
        pstar = two_body_momentum(s, m1, m2)
        light, sign, ml, mh = (0, 1.0, m1, m2) if m1 <= m2 else (1, -1.0, m2, m1)
        estar = (s + ml * ml - mh * mh) / (2.0 * e_cm)
        safe = torch.where(pstar > 0, pstar, torch.ones_like(pstar))
        pz = p[:, light, 3]
        cos_t = sign * (pz - torch.sinh(rapidity) * estar) / (torch.cosh(rapidity) * safe)
        cos_t = torch.where(pstar > 0, cos_t.clamp(-1.0, 1.0), torch.ones_like(cos_t))
        ph = torch.remainder(torch.atan2(p[:, 0, 2], p[:, 0, 1]), 2.0 * math.pi)
        r = torch.stack([(1.0 + cos_t) / 2.0, ph / (2.0 * math.pi)], dim=-1)
        return r, self._two.jacobian(s)


def _incoming(x1: Tensor, x2: Tensor, e1: float, e2: float) -> Tensor:
    z = torch.zeros_like(x1)
    a, b = x1 * e1, x2 * e2
    return torch.stack([torch.stack([a, z, z, a], -1), torch.stack([b, z, z, -b], -1)], dim=1)


class HadronicPhaseSpace:
    """Hadron collisions: r (n, 2 + 3 n_out - 4) -> PhaseSpacePoint.

    r[:, :2] -> (x1, x2) by LuminosityMapping (tau resonance-aware, y flat);
    r[:, 2:] -> the final state at sqrt(s_hat) = sqrt(x1 x2 S), boosted along z by the
    rapidity ln(x1 E1 / (x2 E2)) / 2 of the partonic system.

    Args:
        e_beam1, e_beam2: beam energies in GeV (may differ).
        masses_out: final-state masses in GeV, n_out >= 2.
        s_hat_min: lowest s_hat in GeV^2; raised to (sum of masses)^2 if below.
        s_hat_max: highest s_hat in GeV^2; None (or above S) means S.
        resonance: (mass, width) GeV of an s-channel resonance in s_hat, or None.
        nu, bw_fraction: passed to LuminosityMapping.
        pair_cuts: acceptance cuts mapped exactly (see the module docstring); only for two
            massless outgoing particles. s_hat is then restricted to s_hat > 4 pt_min^2,
            the pair rapidity to where some eta* passes and cos theta* to the accepted
            interval; None maps the full phase space.

    Attributes:
        n_dim: 2 + 3 n_out - 4.
        luminosity: the LuminosityMapping used.
        pair_cuts: the MasslessPairCuts mapped, or None.
    """

    def __init__(
        self,
        e_beam1: float,
        e_beam2: float,
        masses_out: Sequence[float],
        *,
        s_hat_min: float = 0.0,
        s_hat_max: float | None = None,
        resonance: tuple[float, float] | None = None,
        nu: float | None = None,
        bw_fraction: float = 0.5,
        pair_cuts: MasslessPairCuts | None = None,
    ) -> None:
        self._final = _FinalState(masses_out)
        self.masses_out = self._final.masses
        self.n_out = len(self.masses_out)
        self.n_dim = 2 + self._final.n_dim
        threshold = sum(self.masses_out) ** 2
        if pair_cuts is not None and (self.n_out != 2 or any(m != 0 for m in self.masses_out)):
            raise ValueError(
                "HadronicPhaseSpace: pair_cuts maps cuts on two massless outgoing particles "
                f"only, got masses {self.masses_out} GeV"
            )
        self.pair_cuts = pair_cuts
        if pair_cuts is not None:
            threshold = max(threshold, pair_cuts.s_hat_min)
        self.luminosity = LuminosityMapping(
            e_beam1,
            e_beam2,
            max(float(s_hat_min), threshold),
            s_hat_max,
            resonance,
            nu=nu,
            bw_fraction=bw_fraction,
            rapidity_max=None if pair_cuts is None else pair_cuts.rapidity_max,
        )
        self.e_beam1, self.e_beam2 = float(e_beam1), float(e_beam2)
        self.s = self.luminosity.s

    def map(self, r: Tensor) -> PhaseSpacePoint:
        """r (n, n_dim) in [0, 1) -> PhaseSpacePoint (lab frame)."""
        r = r.to(torch.float64)
        x, jac_lum = self.luminosity.map(r[:, :2])
        x1, x2 = x[:, 0], x[:, 1]
        a, b = x1 * self.e_beam1, x2 * self.e_beam2
        ok = (a > 0) & (b > 0)
        a_s, b_s = torch.where(ok, a, 1.0), torch.where(ok, b, 1.0)
        e_cm = 2.0 * torch.sqrt(a_s * b_s)
        rapidity = 0.5 * torch.log(a_s / b_s)
        r_fs = r[:, 2:]
        if self.pair_cuts is not None:
            c_lo, c_hi = self.pair_cuts.cos_theta_range(rapidity, 4.0 * a_s * b_s)
            width = (c_hi - c_lo).clamp_min(0.0)
            cos_t = c_lo + r_fs[:, 0] * width
            r_fs = torch.stack([(1.0 + cos_t) / 2.0, r_fs[:, 1]], dim=-1)
            jac_lum = jac_lum * (width / 2.0)
        final, jac_fs = self._final.map(r_fs, e_cm)
        final = boost_z(final, rapidity[:, None])
        momenta = torch.cat([_incoming(x1, x2, self.e_beam1, self.e_beam2), final], dim=1)
        jac = torch.where(ok, jac_lum * jac_fs, torch.zeros_like(jac_lum))
        return PhaseSpacePoint(momenta, x1, x2, jac)

    def map_inverse(self, momenta: Tensor) -> tuple[Tensor, Tensor]:
        """momenta (n, 2 + n_out, 4) lab frame -> (r (n, n_dim), jacobian (n,)).

        x1, x2 are read from the incoming energies; the final state is boosted back to
        the partonic centre-of-mass frame along z. With ``pair_cuts``, the Jacobian is 0
        for momenta outside the mapped (accepted) region.
        """
        p = momenta.to(torch.float64)
        x1 = p[:, 0, 0] / self.e_beam1
        x2 = p[:, 1, 0] / self.e_beam2
        r_lum, jac_lum = self.luminosity.map_inverse(torch.stack([x1, x2], dim=-1))
        a, b = (x1 * self.e_beam1).clamp_min(1e-300), (x2 * self.e_beam2).clamp_min(1e-300)
        e_cm = 2.0 * torch.sqrt(a * b)
        rapidity = 0.5 * torch.log(a / b)
        r_fs, jac_fs = self._final.map_inverse(p[:, 2:], e_cm, rapidity)
        if self.pair_cuts is not None:
            c_lo, c_hi = self.pair_cuts.cos_theta_range(rapidity, 4.0 * a * b)
            width = c_hi - c_lo
            safe = torch.where(width > 0, width, torch.ones_like(width))
            r0 = (2.0 * r_fs[:, 0] - 1.0 - c_lo) / safe
            inside = (width > 0) & (r0 >= -_R_TOLERANCE) & (r0 <= 1.0 + _R_TOLERANCE)
            r_fs = torch.stack([r0.clamp(0.0, 1.0), r_fs[:, 1]], dim=-1)
            jac_fs = torch.where(inside, jac_fs * (width / 2.0), torch.zeros_like(jac_fs))
        return torch.cat([r_lum, r_fs], dim=-1), jac_lum * jac_fs


class LeptonicPhaseSpace:
    """Lepton collisions at fixed s = 4 E1 E2 (head-on, no PDFs): r (n, 3 n_out - 4).

    The final state is generated in the centre-of-mass frame and boosted along z by
    ln(E1 / E2) / 2 (zero for symmetric beams). x1 = x2 = 1, ``jacobian`` = dPhi_n per
    unit volume.
    """

    def __init__(self, e_beam1: float, e_beam2: float, masses_out: Sequence[float]) -> None:
        if not (e_beam1 > 0 and e_beam2 > 0):
            raise ValueError(
                f"LeptonicPhaseSpace: beam energies must be > 0 GeV, got {e_beam1}, {e_beam2}"
            )
        self._final = _FinalState(masses_out)
        self.masses_out = self._final.masses
        self.n_out = len(self.masses_out)
        self.n_dim = self._final.n_dim
        self.e_beam1, self.e_beam2 = float(e_beam1), float(e_beam2)
        self.s = 4.0 * self.e_beam1 * self.e_beam2
        if math.sqrt(self.s) <= sum(self.masses_out):
            raise ValueError(
                f"LeptonicPhaseSpace: sqrt(s) = {math.sqrt(self.s):.6g} GeV is not above the "
                f"sum of final-state masses {sum(self.masses_out):.6g} GeV"
            )
        self._rapidity = 0.5 * math.log(self.e_beam1 / self.e_beam2)

    def map(self, r: Tensor) -> PhaseSpacePoint:
        """r (n, n_dim) in [0, 1) -> PhaseSpacePoint (lab frame)."""
        r = r.to(torch.float64)
        n = r.shape[0]
        e_cm = torch.full((n,), math.sqrt(self.s), dtype=torch.float64, device=r.device)
        final, jac = self._final.map(r, e_cm)
        if self._rapidity != 0.0:
            final = boost_z(final, torch.full_like(final[..., 0], self._rapidity))
        ones = torch.ones_like(e_cm)
        momenta = torch.cat([_incoming(ones, ones, self.e_beam1, self.e_beam2), final], dim=1)
        return PhaseSpacePoint(momenta, ones, ones.clone(), jac)

    def map_inverse(self, momenta: Tensor) -> tuple[Tensor, Tensor]:
        """momenta (n, 2 + n_out, 4) lab frame -> (r (n, n_dim), jacobian (n,))."""
        final = momenta.to(torch.float64)[:, 2:]
        n = final.shape[0]
        e_cm = torch.full((n,), math.sqrt(self.s), dtype=torch.float64, device=final.device)
        return self._final.map_inverse(final, e_cm, torch.full_like(e_cm, self._rapidity))
