"""The physics integrand: phase space x parton luminosity x |M|^2 x cuts, in picobarn.

For a list of partonic subprocesses that share one phase space (same outgoing masses),

    w_i(r) = GEV2_TO_PB * J_c(r) * f_a(x1, muF1) f_b(x2, muF2)
             * S_i |M_i|^2(p; alpha_s(muR)) / (2 s_hat)

where J_c = dx1 dx2 dPhi_n per unit hypercube volume of channel c's mapping
(phase-space module), f = xf/x the parton densities (1 for lepton beams), S_i the
identical-particle factor and 1/(2 s_hat) the flux of massless partons. ``w = sum_i w_i``
integrates to the total cross section in pb; each ``w_i`` to that subprocess's.
Subprocesses with one matrix element (:class:`~processes.registry.FlavourAlias`) share its
evaluation.

Multi-channel (MadGraph's single-diagram-enhanced integration, Maltoni & Stelzer,
hep-ph/0208156): channel c has its own mapping r -> x and a prior weight alpha_c(x) >= 0
with sum_c alpha_c = 1 (:meth:`Process.channel_weights`), so

    sigma = sum_c int dr alpha_c(x_c(r)) w(x_c(r))

and each channel is integrated on its own. With several subprocesses the prior at a
point is their weight-averaged prior, alpha_c = sum_i w_i alpha_ic / sum_i w_i.
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
from evgen.phasespace.diagram_channels import ChannelPhaseSpace
from evgen.scales import ScaleChoice
from processes.base import Process
from processes.registry import matrix_element_owner

__all__ = ["Integrand", "IntegrandValues"]

PhaseSpace = HadronicPhaseSpace | LeptonicPhaseSpace | ChannelPhaseSpace
_MAPPINGS = (HadronicPhaseSpace, LeptonicPhaseSpace, ChannelPhaseSpace)


@dataclass
class IntegrandValues:
    """Everything one evaluation produces, per point (first axis).

    Attributes:
        weights: (n,) total weight in pb (0 outside cuts), f(x) J_c(r) of the channel the
            points were mapped with, no channel prior applied.
        sub_weights: (n, n_sub) weight of each subprocess in pb, likewise.
        channel_prior: (n, n_channels) the prior alpha_c(x) of every channel at the mapped
            points (rows sum to 1; merged channels summed).
        momenta: (n, n_ext, 4) lab-frame momenta in GeV.
        mu_r: (n,) renormalisation scale in GeV.
        mu_f: (n,) factorisation scale of beam 1 in GeV (LHE SCALUP).
        alpha_s: (n,) strong coupling at mu_r.
    """

    weights: Tensor
    sub_weights: Tensor
    channel_prior: Tensor
    momenta: Tensor
    mu_r: Tensor
    mu_f: Tensor
    alpha_s: Tensor


class Integrand:
    """f(r, channel) -> weights in pb for subprocesses sharing one final state.

    Args:
        subprocesses: partonic processes; incoming[0] comes from beam 1.
        phase_space: the mapping of the unit hypercube to momenta (and x1, x2), or one
            mapping per channel (all of the same dimension).
        beams: the two beams.
        pdf: the PDF set for hadron beams (``None`` for two lepton beams).
        alpha_s: running coupling alpha_s(mu_r^2).
        scale: the scale choice.
        cuts: cuts per subprocess (same order as ``subprocesses``).
        channel_of: for each subprocess, the integrand channel of each of its
            :meth:`Process.channels` (several may share one: merged channels, whose
            priors add up); default: all in channel 0, which needs one mapping.

    Attributes:
        n_dim: dimension of the unit hypercube.
        n_channels: number of channels (mappings).
    """

    def __init__(
        self,
        subprocesses: Sequence[Process],
        phase_space: PhaseSpace | Sequence[PhaseSpace],
        beams: tuple[Beam, Beam],
        pdf: PDFSet | None,
        alpha_s: AlphaS,
        scale: ScaleChoice,
        cuts: Sequence[Cuts],
        channel_of: Sequence[Sequence[int]] | None = None,
    ) -> None:
        if not subprocesses:
            raise ValueError("an integrand needs at least one subprocess")
        if any(b.is_hadron for b in beams) and pdf is None:
            raise ValueError("hadron beams need a PDF set")
        self.subprocesses = list(subprocesses)
        spaces = [phase_space] if isinstance(phase_space, _MAPPINGS) else list(phase_space)
        if not spaces or len({ps.n_dim for ps in spaces}) != 1:
            raise ValueError("an integrand needs >= 1 phase-space mappings of one dimension")
        self.phase_spaces = spaces
        self.phase_space = spaces[0]
        self.n_channels = len(spaces)
        if channel_of is None:
            channel_of = [[0] * len(p.channels()) for p in self.subprocesses]
        if len(channel_of) != len(self.subprocesses) or any(
            len(idx) != len(p.channels()) or not all(0 <= c < self.n_channels for c in idx)
            for idx, p in zip(channel_of, self.subprocesses, strict=True)
        ):
            raise ValueError("channel_of: one channel index in range per process channel")
        self.channel_of = [torch.tensor(idx, dtype=torch.int64) for idx in channel_of]
        self.beams = beams
        self.pdf = pdf
        self.alpha_s = alpha_s
        self.scale = scale
        self.n_dim = spaces[0].n_dim
        self.columns = [
            [beam.pdf_column(proc.incoming[k]) for proc in self.subprocesses]
            for k, beam in enumerate(beams)
        ]
        # Subprocesses with identical cuts share one evaluation of them.
        self._cut_groups: dict[tuple, tuple[Cuts, list[int]]] = {}
        for i, c in enumerate(cuts):
            self._cut_groups.setdefault(c.signature, (c, []))[1].append(i)
        self.symmetry = torch.tensor([p.symmetry_factor for p in self.subprocesses])
        # Subprocesses sharing one matrix element (flavour aliases: c c~ > t t~ g uses
        # u u~ > t t~ g's plan) are evaluated once per point: owner index per subprocess.
        owners: list[Process] = []
        self._owner_of: list[int] = []
        for proc in self.subprocesses:
            owner = matrix_element_owner(proc)
            if not any(owner is o for o in owners):
                owners.append(owner)
            self._owner_of.append(next(k for k, o in enumerate(owners) if o is owner))
        self._owners = owners

    def _densities(self, k: int, x: Tensor, mu_f: Tensor) -> Tensor:
        beam = self.beams[k]
        n_sub = len(self.subprocesses)
        if not beam.is_hadron:
            return torch.ones(x.shape[0], n_sub, dtype=x.dtype, device=x.device)
        assert self.pdf is not None
        xfx = self.pdf.xfx_all(x, mu_f**2)
        return xfx[:, self.columns[k]] / x.unsqueeze(1)

    def _owner_values(self, p: Tensor, alpha_s: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """|M|^2 (m,) and, with several channels, the SDE weights (m, n_channels_i) of
        every distinct matrix element at momenta p (m, n_ext, 4); one evaluation of the
        amplitudes for both where the process offers it
        (``matrix_element_and_channel_weights``: its weights at the running alpha_s)."""
        me, cw = [], []
        for owner in self._owners:
            fused = getattr(owner, "matrix_element_and_channel_weights", None)
            if self.n_channels > 1 and fused is not None:
                m2, weights = fused(p, alpha_s)
                me.append(m2)
                cw.append(weights)
                continue
            me.append(owner.matrix_element(p, alpha_s))
            if self.n_channels > 1:
                cw.append(owner.channel_weights(p))
        return me, cw

    def _prior(self, p: Tensor, w: Tensor, owner_weights: list[Tensor] | None = None) -> Tensor:
        """alpha_c at momenta p (m, n_ext, 4) given subprocess weights w (m, n_sub) and,
        optionally, the channel weights of each distinct matrix element."""
        m = p.shape[0]
        if self.n_channels == 1:
            return torch.ones(m, 1, dtype=p.dtype, device=p.device)
        n_sub = len(self.subprocesses)
        per_sub = torch.zeros(m, n_sub, self.n_channels, dtype=p.dtype, device=p.device)
        if owner_weights is None:
            owner_weights = [owner.channel_weights(p) for owner in self._owners]
        for i in range(n_sub):
            idx = self.channel_of[i].to(p.device)
            per_sub[:, i].index_add_(1, idx, owner_weights[self._owner_of[i]])
        a = w.abs()
        total = a.sum(dim=1, keepdim=True)
        weighted = (a.unsqueeze(2) * per_sub).sum(dim=1) / torch.where(total > 0, total, 1.0)
        return torch.where(total > 0, weighted, per_sub.mean(dim=1))

    def evaluate(self, r: Tensor, channel: int = 0) -> IntegrandValues:
        """Evaluate at points ``r`` (n, n_dim) in [0, 1) mapped with ``channel``'s mapping."""
        if not 0 <= channel < self.n_channels:
            raise ValueError(f"channel must be in [0, {self.n_channels}), got {channel}")
        point = self.phase_spaces[channel].map(r)
        p = point.momenta
        n = p.shape[0]
        pass_cuts = torch.zeros(n, len(self.subprocesses), dtype=torch.bool, device=p.device)
        for cut, indices in self._cut_groups.values():
            pass_cuts[:, indices] = cut(p[:, 2:]).unsqueeze(1)
        alive = (point.jacobian > 0) & pass_cuts.any(dim=1)

        scales = self.scale(p)
        alpha_s = self.alpha_s(scales.mu_r**2)
        sub_weights = torch.zeros(n, len(self.subprocesses), dtype=p.dtype, device=p.device)
        uniform = 1.0 / self.n_channels
        prior = torch.full((n, self.n_channels), uniform, dtype=p.dtype, device=p.device)
        if bool(alive.any()):
            pa = p[alive]
            lum = self._densities(0, point.x1[alive], scales.mu_f1[alive]) * self._densities(
                1, point.x2[alive], scales.mu_f2[alive]
            )
            s_hat = dot(pa[:, 0] + pa[:, 1], pa[:, 0] + pa[:, 1])
            common = GEV2_TO_PB * point.jacobian[alive] / (2.0 * s_hat)
            owner_me, owner_cw = self._owner_values(pa, alpha_s[alive])
            me = torch.stack([owner_me[k] for k in self._owner_of], dim=1)
            w = common.unsqueeze(1) * lum * me * self.symmetry.to(pa)
            w = torch.where(pass_cuts[alive], w, torch.zeros_like(w))
            sub_weights[alive] = w
            prior[alive] = self._prior(pa, w, owner_cw)
        return IntegrandValues(
            weights=sub_weights.sum(dim=1),
            sub_weights=sub_weights,
            channel_prior=prior,
            momenta=p,
            mu_r=scales.mu_r,
            mu_f=scales.mu_f1,
            alpha_s=alpha_s,
        )

    def __call__(self, r: Tensor, channel: int = 0) -> Tensor:
        """Channel ``channel``'s contribution alpha_c(x) * f(x) * J_c(r) in pb, shape (n,):
        the integrals over the channels add up to the cross section."""
        values = self.evaluate(r, channel)
        if self.n_channels == 1:
            return values.weights
        return values.channel_prior[:, channel] * values.weights
