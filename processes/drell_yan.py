"""f f~ > l+ l- through the s-channel photon, Z and (if the model has one) Z' (Drell-Yan,
e+ e- > mu+ mu-).

Example:
    >>> from processes import load
    >>> load("u~ u > e+ e-").incoming
    (-2, 2)
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from evgen.kinematics import dot
from evgen.params import SMParameters
from processes.base import Channel, Propagator
from processes.particles import charge, is_quark
from processes.registry import AnalyticProcess, register

__all__ = ["DrellYan"]

_INITIAL = (1, 2, 3, 4, 5, 11, 13, 15)  # d u s c b e mu ta
_LEPTONS = (11, 13, 15)  # e mu ta (massless, as in SMParameters)


@register
class DrellYan(AnalyticProcess):
    """f f~ > l+ l- via s-channel photon, Z and Z' (PDG 32, when the model has one),
    massless fermions, f != l.

    With f the incoming fermion, l- the outgoing one, s = (p_f + p_f~)^2,
    t = (p_f - p_l-)^2 and u = (p_f - p_l+)^2 (all masses zero), the helicity
    amplitudes of chiralities i (f line) and j (l line) are, up to a phase,

        A_ij = sum_V c_i^f(V) c_j^l(V) P_V(s),
        P_photon = 1/s,   P_V = 1 / (s - M_V^2 + i M_V Gamma_V)   (V = Z, Z'),

    with vertices -i gamma^mu (c_L P_L + c_R P_R): c(photon) = e Q for both
    chiralities, c_L(Z) = g_Z (T3 - Q sw2), c_R(Z) = -g_Z Q sw2 (g_Z = e/(sw cw)), and
    the Z' couplings of :meth:`SMParameters.zprime_couplings` (SSM: the Z's). The
    spin- and colour-averaged |M|^2 is

        |M|^2 = (1/N_f) [ (|A_LL|^2 + |A_RR|^2) u^2 + (|A_LR|^2 + |A_RL|^2) t^2 ],

    with N_f = 3 for quarks (colour average) and 1 for leptons. sw2 is on shell,
    1 - MW^2/MZ^2, and e = sqrt(4 pi alpha) as in MadGraph's ``sm``; the Z and Z' have
    fixed widths in the s-channel as in MadGraph (their p^mu p^nu / M^2 terms vanish
    for massless fermions). Source: the helicity form of e+e- -> mu+mu- with the Z,
    e.g. Ellis, Stirling & Webber, *QCD and Collider Physics* (CUP 1996), Sec. 3.1, and
    Peskin & Schroeder, *An Introduction to QFT*, Sec. 5.2 (QED helicity amplitudes).
    Its angular integral reproduces ESW's
    d sigma / d Omega = alpha^2/(4s) [A0 (1 + cos^2 theta) + A1 cos theta] (tested).

    Channels: one per diagram (photon, Z, Z'), and the SDE weights are the squares of
    the single diagrams, |M_V|^2 (each s-channel diagram alone is gauge invariant
    here), see :meth:`diagram_squares`.

    Args:
        incoming: (f, f~) or (f~, f) PDG ids, f in d u s c b e- mu- ta-.
        outgoing: (l+, l-) or (l-, l+) PDG ids, l in e mu ta, l != f.
        params: Standard Model parameters (with an optional Z').
    """

    alpha_ew_power = 2
    coverage = "f f~ > l+ l- (photon + Z (+ Z'), f = d u s c b e mu ta, l = e mu ta, l != f)"

    @classmethod
    def partonic_processes(cls) -> Iterator[tuple[tuple[int, int], tuple[int, ...]]]:
        for f in _INITIAL:
            for lep in _LEPTONS:
                if lep == f:
                    continue  # same flavour: t-channel diagrams too (Bhabha)
                for incoming in ((f, -f), (-f, f)):
                    for outgoing in ((-lep, lep), (lep, -lep)):
                        yield incoming, outgoing

    def __init__(
        self,
        incoming: tuple[int, int],
        outgoing: tuple[int, ...],
        params: SMParameters | None = None,
    ) -> None:
        super().__init__(incoming, outgoing, params)
        f = max(self.incoming)
        lep = max(self.outgoing)
        self._i_f, self._i_fbar = self.index_of(f), self.index_of(-f)
        self._i_lm, self._i_lp = self.index_of(lep), self.index_of(-lep)
        p = self.params
        # One row per boson: (pdg, mass, width, (left, right) on the f line, on the l line).
        e = p.ee
        self._bosons = [
            (22, 0.0, 0.0, (e * charge(f),) * 2, (e * charge(lep),) * 2),
            (23, p.mz, p.wz, p.z_couplings(f), p.z_couplings(lep)),
        ]
        if p.zprime is not None:
            zp = (32, p.zprime.mass, p.wzp, p.zprime_couplings(f), p.zprime_couplings(lep))
            self._bosons.append(zp)
        # Helicity couplings per boson, columns LL, RR, LR, RL (f line, l line).
        self._couplings = [
            (cf[0] * cl[0], cf[1] * cl[1], cf[0] * cl[1], cf[1] * cl[0])
            for _, _, _, cf, cl in self._bosons
        ]
        self._quarks = is_quark(f)
        self._colour_average = 1.0 / 3.0 if self._quarks else 1.0

    def _parts(self, momenta: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Propagators (re, im), (n, n_bosons); couplings (n_bosons, 4); kinematic
        factors (u^2, u^2, t^2, t^2), (n, 4)."""
        pf = momenta[:, self._i_f]
        s = 2.0 * dot(pf, momenta[:, self._i_fbar])
        t = -2.0 * dot(pf, momenta[:, self._i_lm])
        u = -2.0 * dot(pf, momenta[:, self._i_lp])
        re, im = [], []
        for _, mass, width, _, _ in self._bosons:
            if mass == 0.0:
                re.append(1.0 / s)
                im.append(torch.zeros_like(s))
                continue
            m2, mg = mass * mass, mass * width
            denom = (s - m2) ** 2 + mg * mg
            re.append((s - m2) / denom)  # 1 / (s - M^2 + i M G)
            im.append(-mg / denom)
        kin = torch.stack([u * u, u * u, t * t, t * t], dim=-1)
        couplings = torch.tensor(self._couplings, dtype=momenta.dtype, device=momenta.device)
        return torch.stack(re, dim=-1), torch.stack(im, dim=-1), couplings, kin

    def matrix_element(self, momenta: Tensor, alpha_s: Tensor | float | None = None) -> Tensor:
        """|M|^2, (n,) dimensionless; ``alpha_s`` is ignored. momenta (n, 4, 4) GeV."""
        re, im, couplings, kin = self._parts(momenta)
        amp2 = (re @ couplings) ** 2 + (im @ couplings) ** 2  # |A_h|^2, (n, 4)
        return self._colour_average * (amp2 * kin).sum(dim=-1)

    def diagram_squares(self, momenta: Tensor) -> Tensor:
        """|M_V|^2 of each diagram alone (photon, Z, Z'), (n, n_diagrams), averaged as
        :meth:`matrix_element`; their sum differs from it by the interference."""
        re, im, couplings, kin = self._parts(momenta)
        return self._colour_average * (re * re + im * im) * (kin @ (couplings**2).T)

    def channel_weights(self, momenta: Tensor) -> Tensor:
        """SDE weights |M_V|^2 / sum_W |M_W|^2, (n, n_diagrams), photon, Z, Z' order."""
        squares = self.diagram_squares(momenta)
        total = squares.sum(dim=-1, keepdim=True)
        uniform = torch.full_like(squares, 1.0 / squares.shape[-1])
        return torch.where(total > 0, squares / torch.where(total > 0, total, 1.0), uniform)

    def channels(self) -> list[Channel]:
        """One channel per diagram: s-channel photon, Z (and Z') into legs 2, 3."""
        return [
            Channel((Propagator(pdg, mass, width, "s", (2, 3)),))
            for pdg, mass, width, _, _ in self._bosons
        ]

    def colour_flow(self, momenta: Tensor, u: Tensor) -> Tensor:
        """q (501, 0) and q~ (0, 501) for quarks; all zero for leptons."""
        tags = {self._i_f: (501, 0), self._i_fbar: (0, 501)} if self._quarks else {}
        return self._colour_table(tags, momenta)
