"""Momentum fractions (x1, x2) of the two incoming partons from the unit square.

With S = 4 E_beam1 E_beam2 (massless beams), tau = x1 x2 = s_hat / S and
y = ln(x1 / x2) / 2, the measure is dx1 dx2 = dtau dy. The map is

    r0 -> tau in [tau_min, tau_max]     (density p(tau), below)
    r1 -> y uniform in [ln sqrt(tau), -ln sqrt(tau)]  (so x1, x2 <= 1)

and the Jacobian dx1 dx2 per unit square is jac = (-ln tau) / p(tau).

Optionally (``rapidity_max``, e.g. from acceptance cuts on the final state) the lab-frame
rapidity Y = y + ln(E1 / E2) / 2 of the partonic system is bounded, |Y| < Y_max(s_hat):
y is then uniform in the intersection [y_lo, y_hi] of both ranges and jac = (y_hi - y_lo)
/ p(tau), 0 where the intersection is empty.

Choice of p(tau) (documented decision):
    * no resonance, or its mass^2 outside [s_hat_min, s_hat_max]: a power law
      tau^-nu from tau_min, nu = 1 (flat in ln tau) by default; nu = 0.5 when
      tau_min = 0 (massless final state without a cut), where 1/tau is not integrable;
    * a resonance (mass, width) inside the window: the mixture
      p = f p_BW + (1 - f) p_power with f = ``bw_fraction`` (0.5 by default): the
      Breit-Wigner in s_hat = tau S catches the peak, the power law keeps the
      continuum (photon exchange, tails) sampled with bounded weights. The mixture's
      cumulative distribution is inverted numerically (see MixtureMapping), so the
      map stays a monotone bijection with an exact inverse; an adaptive integrator
      on top (VEGAS) re-weights r0 further.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from evgen.phasespace.invariants import (
    BreitWignerMapping,
    InvariantMapping,
    MixtureMapping,
    PowerLawMapping,
)

__all__ = ["LuminosityMapping"]

_TAU_FLOOR = 1e-300
_R_TOLERANCE = 1e-9  # map_inverse: how far outside [0, 1] rounding may put a mapped point


class LuminosityMapping:
    """r (n, 2) -> x = (x1, x2) (n, 2) with jac = dx1 dx2 per unit square.

    Args:
        e_beam1, e_beam2: beam energies in GeV (beam 1 along +z); S = 4 E1 E2.
        s_hat_min: lowest partonic s_hat in GeV^2 (>= 0).
        s_hat_max: highest s_hat in GeV^2; ``None`` or above S means S.
        resonance: (mass, width) in GeV of an s-channel resonance in s_hat, or None.
        nu: power of the continuum density tau^-nu (default 1, or 0.5 if s_hat_min = 0).
        bw_fraction: share of the Breit-Wigner in the mixture (1: pure Breit-Wigner).
        rapidity_max: a function s_hat (n,) GeV^2 -> (n,) bound on |Y|, the lab-frame
            rapidity of the partonic system (``inf`` where unbounded), or None (no bound).

    Example:
        >>> lum = LuminosityMapping(6500.0, 6500.0, 60.0**2, 120.0**2, resonance=(91.19, 2.44))
        >>> x, jac = lum.map(torch.rand(1000, 2, dtype=torch.float64))
    """

    n_dim = 2

    def __init__(
        self,
        e_beam1: float,
        e_beam2: float,
        s_hat_min: float,
        s_hat_max: float | None = None,
        resonance: tuple[float, float] | None = None,
        *,
        nu: float | None = None,
        bw_fraction: float = 0.5,
        rapidity_max: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if not (e_beam1 > 0 and e_beam2 > 0):
            raise ValueError(
                f"LuminosityMapping: beam energies must be > 0 GeV, got {e_beam1}, {e_beam2}"
            )
        if not 0.0 <= bw_fraction <= 1.0:
            raise ValueError(f"LuminosityMapping: bw_fraction must be in [0, 1], got {bw_fraction}")
        self.e_beam1, self.e_beam2 = float(e_beam1), float(e_beam2)
        self.s = 4.0 * self.e_beam1 * self.e_beam2
        self.rapidity_max = rapidity_max
        self._y_lab_offset = 0.5 * math.log(self.e_beam1 / self.e_beam2)  # Y - y
        s_hat_max = self.s if s_hat_max is None else min(float(s_hat_max), self.s)
        if not 0.0 <= s_hat_min < s_hat_max:
            raise ValueError(
                f"LuminosityMapping: need 0 <= s_hat_min < s_hat_max <= S = {self.s:.6g} GeV^2, "
                f"got s_hat_min = {s_hat_min}, s_hat_max = {s_hat_max}"
            )
        self.s_hat_min, self.s_hat_max = float(s_hat_min), s_hat_max
        self.tau_min, self.tau_max = self.s_hat_min / self.s, self.s_hat_max / self.s
        if nu is None:
            nu = 1.0 if self.tau_min > 0 else 0.5
        self.nu = float(nu)
        power = PowerLawMapping(self.tau_min, self.tau_max, self.nu)
        self.resonance: tuple[float, float] | None = None
        self.tau_mapping: InvariantMapping = power
        if resonance is not None and bw_fraction > 0:
            mass, width = float(resonance[0]), float(resonance[1])
            if width > 0 and self.s_hat_min <= mass**2 <= self.s_hat_max:
                root_s = math.sqrt(self.s)
                bw = BreitWignerMapping(mass / root_s, width / root_s, self.tau_min, self.tau_max)
                self.resonance = (mass, width)
                self.tau_mapping = (
                    bw
                    if bw_fraction == 1.0
                    else MixtureMapping([power, bw], [1 - bw_fraction, bw_fraction])
                )

    def _y_range(self, tau: Tensor, log_tau: Tensor) -> tuple[Tensor, Tensor]:
        """(centre, width) of the y interval at tau; width <= 0 where it is empty."""
        half = -0.5 * log_tau
        if self.rapidity_max is None:
            return torch.zeros_like(half), 2.0 * half
        y_cut = self.rapidity_max(tau * self.s)
        lo = torch.maximum(-half, -y_cut - self._y_lab_offset)
        hi = torch.minimum(half, y_cut - self._y_lab_offset)
        return 0.5 * (lo + hi), hi - lo

    def map(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """r (n, 2) in [0, 1) -> (x (n, 2) with 0 < x <= 1, jac (n,))."""
        r = r.to(torch.float64)
        tau, jac_tau = self.tau_mapping.map(r[:, 0])
        log_tau = torch.log(tau.clamp_min(_TAU_FLOOR))
        centre, span = self._y_range(tau, log_tau)
        y = centre + (r[:, 1] - 0.5) * span.clamp_min(0.0)
        x1 = torch.exp(0.5 * log_tau + y).clamp(max=1.0)
        x2 = torch.exp(0.5 * log_tau - y).clamp(max=1.0)
        return torch.stack([x1, x2], dim=-1), jac_tau * span.clamp_min(0.0)

    def map_inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (n, 2) -> (r (n, 2), jac (n,)); jac is dx1 dx2 per unit square at x, 0 outside."""
        x = x.to(torch.float64)
        tau = x[:, 0] * x[:, 1]
        inside = (tau >= self.tau_min) & (tau <= self.tau_max) & (x > 0).all(-1) & (x <= 1).all(-1)
        r0, jac_tau = self.tau_mapping.map_inverse(tau)
        log_tau = torch.log(tau.clamp_min(_TAU_FLOOR))
        y = 0.5 * (
            torch.log(x[:, 0].clamp_min(_TAU_FLOOR)) - torch.log(x[:, 1].clamp_min(_TAU_FLOOR))
        )
        centre, span = self._y_range(tau, log_tau)
        r1 = torch.where(span > 0, (y - centre) / torch.where(span > 0, span, 1.0) + 0.5, 0.5)
        if self.rapidity_max is not None:  # outside the rapidity window (beyond rounding)
            inside = inside & (span > 0) & (r1 >= -_R_TOLERANCE) & (r1 <= 1.0 + _R_TOLERANCE)
        jac = torch.where(inside, jac_tau * span, torch.zeros_like(tau))
        return torch.stack([r0, r1.clamp(0.0, 1.0)], dim=-1), jac
