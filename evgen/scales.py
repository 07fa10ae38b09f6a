"""Renormalisation and factorisation scales per event, MadGraph's choices (GeV).

``dynamical_scale_choice`` (MadGraph's run_card codes, ``setscales.f``):

* -1, the default: MadGraph clusters the event back to a 2 -> 2 core and takes its
  transverse mass. For the processes evgen has (2 -> 2 at leading order, no QCD
  radiation to cluster) this is: for a final state produced through one colourless
  s-channel resonance (Drell-Yan, W), which MadGraph clusters to 2 -> 1, the
  invariant mass sqrt(s_hat); otherwise the geometric mean of the two final-state
  transverse masses sqrt(mT_3 mT_4), which for a pair of equal masses (t t~) is the
  transverse mass of either. With more final-state particles the sum of transverse
  masses over two (choice 3) is used: MadGraph's clustering is not reproduced there.
* 1: total transverse energy sum E_T, with E_T = E pT / |p|.
* 2: sum of transverse masses, mT = sqrt(E^2 - pz^2).
* 3: half of choice 2.
* 4: partonic centre-of-mass energy sqrt(s_hat).

All dynamic choices are multiplied by ``scalefact``. Fixed scales come from ``scale``
(renormalisation) and ``dsqrt_q2fact1/2`` (factorisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from evgen.card import ScaleCard
from evgen.kinematics import dot, pt

__all__ = ["ScaleChoice", "Scales"]


@dataclass(frozen=True)
class Scales:
    """Per-event scales in GeV, shape (n,) each."""

    mu_r: Tensor
    mu_f1: Tensor
    mu_f2: Tensor


def _transverse_mass(p: Tensor) -> Tensor:
    return torch.sqrt(((p[..., 0] + p[..., 3]) * (p[..., 0] - p[..., 3])).clamp(min=0))


class ScaleChoice:
    """Compute scales from lab-frame momenta (n, n_ext, 4), incoming partons first.

    Args:
        card: the card's ``scale`` section.
        s_channel_core: the whole final state comes from one colourless s-channel
            resonance (used by choice -1).
    """

    def __init__(self, card: ScaleCard, *, s_channel_core: bool = False) -> None:
        self.card = card
        self.s_channel_core = s_channel_core

    def dynamic(self, p: Tensor) -> Tensor:
        """The dynamical scale in GeV before ``scalefact``."""
        out = p[:, 2:]
        choice = self.card.dynamical_scale_choice
        if choice == -1:
            if self.s_channel_core:
                choice = 4
            elif out.shape[1] == 2:
                return torch.sqrt(_transverse_mass(out[:, 0]) * _transverse_mass(out[:, 1]))
            else:
                choice = 3
        if choice == 1:
            pabs = torch.linalg.vector_norm(out[..., 1:], dim=-1)
            et = torch.where(pabs > 0, out[..., 0] * pt(out) / pabs.clamp(min=1e-300), 0.0)
            return et.sum(dim=1)
        if choice == 2:
            return _transverse_mass(out).sum(dim=1)
        if choice == 3:
            return 0.5 * _transverse_mass(out).sum(dim=1)
        if choice == 4:
            return torch.sqrt(dot(p[:, 0] + p[:, 1], p[:, 0] + p[:, 1]).clamp(min=0))
        raise ValueError(f"scale.dynamical_scale_choice = {choice} is not supported")

    def __call__(self, p: Tensor) -> Scales:
        c = self.card
        need_dynamic = not (c.fixed_ren_scale and c.fixed_fac_scale)
        dyn = self.dynamic(p) * c.scalefact if need_dynamic else None

        def fixed(value: float) -> Tensor:
            return torch.full((p.shape[0],), value, dtype=p.dtype, device=p.device)

        mu_r = fixed(c.scale) if c.fixed_ren_scale else dyn
        mu_f1 = fixed(c.dsqrt_q2fact1) if c.fixed_fac_scale else dyn
        mu_f2 = fixed(c.dsqrt_q2fact2) if c.fixed_fac_scale else dyn
        assert mu_r is not None and mu_f1 is not None and mu_f2 is not None
        return Scales(mu_r, mu_f1, mu_f2)
