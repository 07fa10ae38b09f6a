"""Standard Model parameters as in MadGraph's default ``sm`` model (``restrict_default``).

Inputs are alpha_EW^-1(MZ), G_F and MZ (the G_mu scheme of MadGraph's ``sm``); MW,
sin^2(theta_W) and the couplings are derived from them exactly as the UFO model does.
Masses and widths are in GeV, G_F in GeV^-2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

__all__ = ["SMParameters", "GEV2_TO_PB"]

#: hbar^2 c^2 in GeV^2 pb: a cross section in GeV^-2 times this is in picobarn.
GEV2_TO_PB = 0.3893793721e9


@dataclass(frozen=True)
class SMParameters:
    """Independent inputs (GeV, GeV^-2) and derived electroweak quantities.

    Example:
        >>> p = SMParameters()
        >>> round(p.mw, 3)
        80.419
    """

    alpha_ew_inv: float = 132.507  #: 1/alpha_EW(MZ)
    gf: float = 1.16639e-5  #: Fermi constant, GeV^-2
    mz: float = 91.188  #: Z mass, GeV
    wz: float = 2.441404  #: Z width, GeV
    ww: float = 2.0476  #: W width, GeV
    mt: float = 173.0  #: top mass, GeV
    wt: float = 1.4915  #: top width, GeV
    mb: float = 4.7  #: bottom mass, GeV (massless in the 5-flavour scheme)
    mh: float = 125.0  #: Higgs mass, GeV
    wh: float = 6.38339e-3  #: Higgs width, GeV
    #: alpha_s used where no running value is supplied (param_card aS); a run takes
    #: alpha_s(mu) from the PDF set instead.
    alpha_s: float = 0.118
    #: Massive leptons and light quarks are not in MadGraph's default model; all are massless.
    extra: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    @property
    def alpha_ew(self) -> float:
        """alpha_EW(MZ)."""
        return 1.0 / self.alpha_ew_inv

    @property
    def mw(self) -> float:
        """W mass in GeV derived from (alpha_EW, G_F, MZ) as in MadGraph's ``sm``."""
        mz2 = self.mz**2
        disc = mz2**2 / 4.0 - self.alpha_ew * math.pi * mz2 / (self.gf * math.sqrt(2.0))
        if disc <= 0:
            raise ValueError(
                "model: alpha_ew_inv, gf and mz give no real W mass "
                f"(MZ^4/4 - pi alpha MZ^2/(sqrt2 GF) = {disc:.4g} GeV^4 <= 0)"
            )
        return math.sqrt(mz2 / 2.0 + math.sqrt(disc))

    @property
    def sw2(self) -> float:
        """sin^2(theta_W) = 1 - MW^2/MZ^2 (on-shell definition, as MadGraph)."""
        return 1.0 - self.mw**2 / self.mz**2

    @property
    def cw2(self) -> float:
        """cos^2(theta_W)."""
        return 1.0 - self.sw2

    @property
    def ee(self) -> float:
        """Electric charge e = sqrt(4 pi alpha_EW)."""
        return math.sqrt(4.0 * math.pi * self.alpha_ew)

    @property
    def gw(self) -> float:
        """SU(2) coupling g = e / sin(theta_W)."""
        return self.ee / math.sqrt(self.sw2)

    def mass(self, pdg: int) -> float:
        """Pole mass in GeV of the particle with PDG id ``pdg`` (0 for massless ones)."""
        a = abs(pdg)
        return {6: self.mt, 5: self.mb, 23: self.mz, 24: self.mw, 25: self.mh}.get(a, 0.0)

    def width(self, pdg: int) -> float:
        """Total width in GeV of the particle with PDG id ``pdg`` (0 for stable ones)."""
        a = abs(pdg)
        return {6: self.wt, 23: self.wz, 24: self.ww, 25: self.wh}.get(a, 0.0)

    def with_overrides(self, **values: float) -> SMParameters:
        """A copy with some inputs replaced; unknown names raise ``KeyError``."""
        known = {f.name for f in fields(self) if f.name != "extra"}
        bad = sorted(set(values) - known)
        if bad:
            raise KeyError(f"unknown model parameter(s) {bad}; allowed: {sorted(known)}")
        return replace(self, **values)
