"""q q~' > W+- > l nu through the s-channel W (charged-current Drell-Yan), CKM = 1.

Example:
    >>> from processes import load
    >>> [p.name for p in load("p p > e+ ve")]
    ['u d~ > e+ ve', 'c s~ > e+ ve', 'd~ u > e+ ve', 's~ c > e+ ve']
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor

from evgen.kinematics import dot
from evgen.params import SMParameters
from processes.base import Channel, Propagator
from processes.registry import AnalyticProcess, register

__all__ = ["WToLeptonNeutrino"]

_DOUBLETS = ((2, 1), (4, 3))  # (up, down) with CKM = 1: u d, c s
_LEPTONS = (11, 13, 15)  # charged lepton; its neutrino is pdg + 1


@register
class WToLeptonNeutrino(AnalyticProcess):
    """u d~ > l+ vl and d u~ > l- vl~ (and c s~, either beam order) via an s-channel W.

    Only left-handed currents couple (vertex -i g/sqrt2 gamma^mu P_L, g = e/sw), so
    one helicity amplitude survives. With f the incoming fermion (u for W+, d for
    W-), F~ the outgoing antifermion (l+ for W+, vl~ for W-) and t = (p_f - p_F~)^2,

        |M|^2 = (1/4)(1/3) 4 (g^2/2)^2 t^2 / |s - MW^2 + i MW GW|^2
              = g^4 t^2 / (12 [(s - MW^2)^2 + MW^2 GW^2]),

    i.e. the (1 - cos theta)^2 distribution of the lepton from the V-A current
    product 16 (p_f . p_F~)(p_f~ . p_F); massless fermions, CKM = 1, fixed-width W
    propagator as in MadGraph (the p^mu p^nu / MW^2 term vanishes for massless
    fermions). Source: e.g. Ellis, Stirling & Webber, *QCD and Collider Physics*,
    Ch. 9 (W production), Halzen & Martin, *Quarks and Leptons*, Ch. 12.

    Args:
        incoming: (q, q'~) or (q'~, q) PDG ids of a CKM-diagonal doublet (u d, c s).
        outgoing: (l+, vl) / (l-, vl~) in either order, l in e mu ta.
        params: Standard Model parameters.
    """

    alpha_ew_power = 2
    coverage = "q q~' > l+ vl / l- vl~ (s-channel W, CKM = 1, l = e mu ta)"

    @classmethod
    def partonic_processes(cls) -> Iterator[tuple[tuple[int, int], tuple[int, ...]]]:
        for up, down in _DOUBLETS:
            for lep in _LEPTONS:
                nu = lep + 1
                for quarks, leptons in (((up, -down), (-lep, nu)), ((down, -up), (lep, -nu))):
                    for incoming in (quarks, quarks[::-1]):
                        for outgoing in (leptons, leptons[::-1]):
                            yield incoming, outgoing

    def __init__(
        self,
        incoming: tuple[int, int],
        outgoing: tuple[int, ...],
        params: SMParameters | None = None,
    ) -> None:
        super().__init__(incoming, outgoing, params)
        self._i_f = self.index_of(max(self.incoming))
        self._i_fbar = self.index_of(min(self.incoming))
        self._i_fbar_out = self.index_of(min(self.outgoing))
        # Charge of the W: +1 if the incoming fermion is up-type.
        self._w_sign = 1 if max(self.incoming) in (2, 4) else -1

    def matrix_element(self, momenta: Tensor, alpha_s: Tensor | float | None = None) -> Tensor:
        """|M|^2, (n,) dimensionless; ``alpha_s`` is ignored. momenta (n, 4, 4) GeV."""
        p = self.params
        pf = momenta[:, self._i_f]
        s = 2.0 * dot(pf, momenta[:, self._i_fbar])
        t = -2.0 * dot(pf, momenta[:, self._i_fbar_out])
        mw2 = p.mw**2
        denom = (s - mw2) ** 2 + (p.mw * p.ww) ** 2
        return p.gw**4 / 12.0 * t**2 / denom

    def channels(self) -> list[Channel]:
        """The s-channel W+ (PDG 24) or W- (-24) into legs 2, 3."""
        p = self.params
        return [Channel((Propagator(24 * self._w_sign, p.mw, p.ww, "s", (2, 3)),))]

    def colour_flow(self, momenta: Tensor, u: Tensor) -> Tensor:
        """q (501, 0) and q~ (0, 501); leptons colourless."""
        return self._colour_table({self._i_f: (501, 0), self._i_fbar: (0, 501)}, momenta)
