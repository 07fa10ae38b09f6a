"""f f~ > l+ l- through the s-channel photon and Z (Drell-Yan, e+ e- > mu+ mu-).

Example:
    >>> from processes import load
    >>> load("u~ u > e+ e-").incoming
    (-2, 2)
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor

from evgen.kinematics import dot
from evgen.params import SMParameters
from processes.base import Channel, Propagator
from processes.particles import charge, is_quark, weak_isospin
from processes.registry import AnalyticProcess, register

__all__ = ["DrellYan"]

_INITIAL = (1, 2, 3, 4, 5, 11, 13, 15)  # d u s c b e mu ta
_LEPTONS = (11, 13, 15)  # e mu ta (massless, as in SMParameters)


@register
class DrellYan(AnalyticProcess):
    """f f~ > l+ l- via s-channel photon and Z, massless fermions, f != l.

    With f the incoming fermion, l- the outgoing one, s = (p_f + p_f~)^2,
    t = (p_f - p_l-)^2 and u = (p_f - p_l+)^2 (all masses zero), the helicity
    amplitudes of chiralities i (f line) and j (l line) are, up to a phase,

        A_ij = e^2 [ Q_f Q_l / s + g_i^f g_j^l / (sw2 cw2) / (s - MZ^2 + i MZ GZ) ],
        g_L = T3 - Q sw2,  g_R = -Q sw2,

    and the spin- and colour-averaged |M|^2 is

        |M|^2 = (1/N_f) [ (|A_LL|^2 + |A_RR|^2) u^2 + (|A_LR|^2 + |A_RL|^2) t^2 ],

    with N_f = 3 for quarks (colour average) and 1 for leptons. sw2 is on shell,
    1 - MW^2/MZ^2, and e = sqrt(4 pi alpha) as in MadGraph's ``sm``; the Z has a fixed
    width in the s-channel as in MadGraph (its p^mu p^nu / MZ^2 term vanishes for
    massless fermions). Source: the helicity form of e+e- -> mu+mu- with the Z, e.g.
    Ellis, Stirling & Webber, *QCD and Collider Physics* (CUP 1996), Sec. 3.1, and
    Peskin & Schroeder, *An Introduction to QFT*, Sec. 5.2 (QED helicity amplitudes).
    Its angular integral reproduces ESW's
    d sigma / d Omega = alpha^2/(4s) [A0 (1 + cos^2 theta) + A1 cos theta] (tested).

    Args:
        incoming: (f, f~) or (f~, f) PDG ids, f in d u s c b e- mu- ta-.
        outgoing: (l+, l-) or (l-, l+) PDG ids, l in e mu ta, l != f.
        params: Standard Model parameters.
    """

    alpha_ew_power = 2
    coverage = "f f~ > l+ l- (photon + Z, f = d u s c b e mu ta, l = e mu ta, l != f)"

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
        q_f, q_l = charge(f), charge(lep)
        g_f = (weak_isospin(f) - q_f * p.sw2, -q_f * p.sw2)  # (L, R)
        g_l = (weak_isospin(lep) - q_l * p.sw2, -q_l * p.sw2)
        norm = 1.0 / (p.sw2 * p.cw2)
        self._qq = q_f * q_l
        # Z couplings for (LL + RR) and (LR + RL) helicity combinations.
        self._z_same = (norm * g_f[0] * g_l[0], norm * g_f[1] * g_l[1])
        self._z_opposite = (norm * g_f[0] * g_l[1], norm * g_f[1] * g_l[0])
        self._quarks = is_quark(f)
        self._colour_average = 1.0 / 3.0 if self._quarks else 1.0

    def matrix_element(self, momenta: Tensor, alpha_s: Tensor | float | None = None) -> Tensor:
        """|M|^2, (n,) dimensionless; ``alpha_s`` is ignored. momenta (n, 4, 4) GeV."""
        p = self.params
        pf, pfbar = momenta[:, self._i_f], momenta[:, self._i_fbar]
        s = 2.0 * dot(pf, pfbar)
        t = -2.0 * dot(pf, momenta[:, self._i_lm])
        u = -2.0 * dot(pf, momenta[:, self._i_lp])
        mz2, mzwz = p.mz**2, p.mz * p.wz
        denom = (s - mz2) ** 2 + mzwz**2
        z_re, z_im = (s - mz2) / denom, -mzwz / denom  # 1/(s - MZ^2 + i MZ GZ)
        photon = self._qq / s

        def amp2(k: float) -> Tensor:
            return (photon + k * z_re) ** 2 + (k * z_im) ** 2

        same = amp2(self._z_same[0]) + amp2(self._z_same[1])
        opposite = amp2(self._z_opposite[0]) + amp2(self._z_opposite[1])
        e4 = p.ee**4
        return self._colour_average * e4 * (same * u**2 + opposite * t**2)

    def channels(self) -> list[Channel]:
        """One channel per diagram: s-channel photon and s-channel Z (legs 2, 3)."""
        p = self.params
        return [
            Channel((Propagator(22, 0.0, 0.0, "s", (2, 3)),)),
            Channel((Propagator(23, p.mz, p.wz, "s", (2, 3)),)),
        ]

    def colour_flow(self, momenta: Tensor, u: Tensor) -> Tensor:
        """q (501, 0) and q~ (0, 501) for quarks; all zero for leptons."""
        tags = {self._i_f: (501, 0), self._i_fbar: (0, 501)} if self._quarks else {}
        return self._colour_table(tags, momenta)
