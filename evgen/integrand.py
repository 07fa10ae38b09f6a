"""The physics integrand: phase space x parton luminosity x |M|^2 x cuts, in picobarn.

For a list of partonic subprocesses that share one phase space (same outgoing masses),

    w_i(r) = GEV2_TO_PB * J(r) * f_a(x1, muF1) f_b(x2, muF2)
             * S_i |M_i|^2(p; alpha_s(muR)) / (2 s_hat)

where J = dx1 dx2 dPhi_n per unit hypercube volume (phase-space module), f = xf/x the
parton densities (1 for lepton beams), S_i the identical-particle factor and
1/(2 s_hat) the flux of massless partons. ``w = sum_i w_i`` integrates to the total
cross section in pb; each ``w_i`` to that subprocess's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from evgen.alphas import AlphaS
from evgen.beams import Beam
from evgen.cuts import Cuts
from evgen.kinematics import dot
from evgen.params import GEV2_TO_PB
from evgen.pdf import PDFSet
from evgen.phasespace import HadronicPhaseSpace, LeptonicPhaseSpace
from evgen.scales import ScaleChoice
from processes.base import Process

__all__ = ["Integrand", "IntegrandValues"]


@dataclass
class IntegrandValues:
    """Everything one evaluation produces, per point (first axis).

    Attributes:
        weights: (n,) total weight in pb (0 outside cuts).
        sub_weights: (n, n_sub) weight of each subprocess in pb.
        momenta: (n, n_ext, 4) lab-frame momenta in GeV.
        mu_r: (n,) renormalisation scale in GeV.
        mu_f: (n,) factorisation scale of beam 1 in GeV (LHE SCALUP).
        alpha_s: (n,) strong coupling at mu_r.
    """

    weights: Tensor
    sub_weights: Tensor
    momenta: Tensor
    mu_r: Tensor
    mu_f: Tensor
    alpha_s: Tensor


class Integrand:
    """f(r) -> weights in pb for subprocesses sharing one phase-space mapping.

    Args:
        subprocesses: partonic processes; incoming[0] comes from beam 1.
        phase_space: the mapping of the unit hypercube to momenta (and x1, x2).
        beams: the two beams.
        pdf: the PDF set for hadron beams (``None`` for two lepton beams).
        alpha_s: running coupling alpha_s(mu_r^2).
        scale: the scale choice.
        cuts: cuts per subprocess (same order as ``subprocesses``).
    """

    def __init__(
        self,
        subprocesses: Sequence[Process],
        phase_space: HadronicPhaseSpace | LeptonicPhaseSpace,
        beams: tuple[Beam, Beam],
        pdf: PDFSet | None,
        alpha_s: AlphaS,
        scale: ScaleChoice,
        cuts: Sequence[Cuts],
    ) -> None:
        if not subprocesses:
            raise ValueError("an integrand needs at least one subprocess")
        if any(b.is_hadron for b in beams) and pdf is None:
            raise ValueError("hadron beams need a PDF set")
        self.subprocesses = list(subprocesses)
        self.phase_space = phase_space
        self.beams = beams
        self.pdf = pdf
        self.alpha_s = alpha_s
        self.scale = scale
        self.n_dim = phase_space.n_dim
        self.columns = [
            [beam.pdf_column(proc.incoming[k]) for proc in self.subprocesses]
            for k, beam in enumerate(beams)
        ]
        # Subprocesses with identical cuts share one evaluation of them.
        self._cut_groups: dict[tuple, tuple[Cuts, list[int]]] = {}
        for i, c in enumerate(cuts):
            self._cut_groups.setdefault(c.signature, (c, []))[1].append(i)
        self.symmetry = torch.tensor([p.symmetry_factor for p in self.subprocesses])

    def _densities(self, k: int, x: Tensor, mu_f: Tensor) -> Tensor:
        beam = self.beams[k]
        n_sub = len(self.subprocesses)
        if not beam.is_hadron:
            return torch.ones(x.shape[0], n_sub, dtype=x.dtype, device=x.device)
        assert self.pdf is not None
        xfx = self.pdf.xfx_all(x, mu_f**2)
        return xfx[:, self.columns[k]] / x.unsqueeze(1)

    def evaluate(self, r: Tensor) -> IntegrandValues:
        """Evaluate the integrand at points ``r`` of shape (n, n_dim) in [0, 1)."""
        point = self.phase_space.map(r)
        p = point.momenta
        n = p.shape[0]
        pass_cuts = torch.zeros(n, len(self.subprocesses), dtype=torch.bool, device=p.device)
        for cut, indices in self._cut_groups.values():
            pass_cuts[:, indices] = cut(p[:, 2:]).unsqueeze(1)
        alive = (point.jacobian > 0) & pass_cuts.any(dim=1)

        scales = self.scale(p)
        alpha_s = self.alpha_s(scales.mu_r**2)
        sub_weights = torch.zeros(n, len(self.subprocesses), dtype=p.dtype, device=p.device)
        if bool(alive.any()):
            pa = p[alive]
            lum = self._densities(0, point.x1[alive], scales.mu_f1[alive]) * self._densities(
                1, point.x2[alive], scales.mu_f2[alive]
            )
            s_hat = dot(pa[:, 0] + pa[:, 1], pa[:, 0] + pa[:, 1])
            common = GEV2_TO_PB * point.jacobian[alive] / (2.0 * s_hat)
            me = torch.stack(
                [proc.matrix_element(pa, alpha_s[alive]) for proc in self.subprocesses], dim=1
            )
            w = common.unsqueeze(1) * lum * me * self.symmetry.to(pa)
            sub_weights[alive] = torch.where(pass_cuts[alive], w, torch.zeros_like(w))
        return IntegrandValues(
            weights=sub_weights.sum(dim=1),
            sub_weights=sub_weights,
            momenta=p,
            mu_r=scales.mu_r,
            mu_f=scales.mu_f1,
            alpha_s=alpha_s,
        )

    def __call__(self, r: Tensor) -> Tensor:
        """Total weight in pb, shape (n,)."""
        return self.evaluate(r).weights
