"""Standard Model parameters as in MadGraph's default ``sm`` model (``restrict_default``).

Inputs are alpha_EW^-1(MZ), G_F and MZ (the G_mu scheme of MadGraph's ``sm``); MW,
sin^2(theta_W) and the couplings are derived from them exactly as the UFO model does.
Masses and widths are in GeV, G_F in GeV^-2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

__all__ = ["SMParameters", "ZPrime", "ZPrimeCouplings", "GEV2_TO_PB"]

#: hbar^2 c^2 in GeV^2 pb: a cross section in GeV^-2 times this is in picobarn.
GEV2_TO_PB = 0.3893793721e9

#: (charge, T3 of the left-handed fermion, colours) per fermion type.
_FERMION_TYPES = {
    "up": (2.0 / 3.0, 0.5, 3),
    "down": (-1.0 / 3.0, -0.5, 3),
    "lepton": (-1.0, -0.5, 1),
    "neutrino": (0.0, 0.5, 1),
}
_TYPE_OF = {1: "down", 2: "up", 3: "down", 4: "up", 5: "down", 6: "up"}
_TYPE_OF.update({11: "lepton", 12: "neutrino", 13: "lepton", 14: "neutrino"})
_TYPE_OF.update({15: "lepton", 16: "neutrino"})


def _fermion_type(pdg: int) -> str:
    try:
        return _TYPE_OF[abs(pdg)]
    except KeyError:
        raise ValueError(f"PDG id {pdg} is not a fermion (d u s c b t e ve mu vm ta vt)") from None


@dataclass(frozen=True)
class ZPrimeCouplings:
    """Chiral couplings of a Z' to each fermion type, in units of g_Z = e / (sw cw).

    The vertex is -i g_Z gamma^mu (left P_L + right P_R), the Z's convention, for which the
    Z itself has left = T3 - Q sw2, right = -Q sw2. Each attribute is (left, right);
    generations are universal.
    """

    up: tuple[float, float]  #: u c t
    down: tuple[float, float]  #: d s b
    lepton: tuple[float, float]  #: e mu ta
    neutrino: tuple[float, float] = (0.0, 0.0)  #: ve vm vt (only the width sees them)

    @staticmethod
    def chiral_from_vector_axial(vector: float, axial: float) -> tuple[float, float]:
        """(left, right) from the PDG convention -i (g_Z / 2) gamma^mu (g_V - g_A gamma5).

        left = (g_V + g_A) / 2, right = (g_V - g_A) / 2; the Z has g_V = T3 - 2 Q sw2,
        g_A = T3.
        """
        return (0.5 * (vector + axial), 0.5 * (vector - axial))


@dataclass(frozen=True)
class ZPrime:
    """A heavy neutral vector boson Z' (PDG 32) coupling to fermions, no Z-Z' mixing.

    Attributes:
        mass: GeV.
        width: total width in GeV; ``None``: the leading-order width from its couplings
            (:meth:`SMParameters.zprime_width`).
        couplings: chiral couplings per fermion type; ``None``: the Sequential Standard
            Model (SSM), the Z's couplings T3 - Q sw2 and -Q sw2 (neutrinos included).
        strength: overall factor on every coupling (SSM: g_Z' = strength * g_Z).
    """

    mass: float
    width: float | None = None
    couplings: ZPrimeCouplings | None = None
    strength: float = 1.0


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
    wh: float = 6.382339e-3  #: Higgs width, GeV (MadGraph sm param_card)
    #: alpha_s used where no running value is supplied (param_card aS); a run takes
    #: alpha_s(mu) from the PDF set instead.
    alpha_s: float = 0.118
    #: A heavy neutral vector boson (PDG 32); ``None``: the Standard Model alone.
    zprime: ZPrime | None = None
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
        if a == 32:
            return self.zprime.mass if self.zprime is not None else 0.0
        return {6: self.mt, 5: self.mb, 23: self.mz, 24: self.mw, 25: self.mh}.get(a, 0.0)

    def width(self, pdg: int) -> float:
        """Total width in GeV of the particle with PDG id ``pdg`` (0 for stable ones)."""
        a = abs(pdg)
        if a == 32:
            return self.wzp if self.zprime is not None else 0.0
        return {6: self.wt, 23: self.wz, 24: self.ww, 25: self.wh}.get(a, 0.0)

    @property
    def gz(self) -> float:
        """Z coupling g_Z = e / (sw cw)."""
        return self.ee / math.sqrt(self.sw2 * self.cw2)

    def z_couplings(self, pdg: int) -> tuple[float, float]:
        """(left, right) Z couplings of fermion ``pdg``: g_Z (T3 - Q sw2), -g_Z Q sw2."""
        q, t3, _ = _FERMION_TYPES[_fermion_type(pdg)]
        return (self.gz * (t3 - q * self.sw2), -self.gz * q * self.sw2)

    def zprime_couplings(self, pdg: int) -> tuple[float, float]:
        """(left, right) Z' couplings of fermion ``pdg`` (absolute, g_Z and strength in).

        Raises:
            ValueError: if the model has no Z'.
        """
        zp = self.zprime
        if zp is None:
            raise ValueError("the model has no Z' (set model.mzp)")
        if zp.couplings is None:
            left, right = self.z_couplings(pdg)
            return (zp.strength * left, zp.strength * right)
        left, right = getattr(zp.couplings, _fermion_type(pdg))
        return (zp.strength * self.gz * left, zp.strength * self.gz * right)

    def zprime_partial_width(self, pdg: int) -> float:
        """Gamma(Z' -> f f~) in GeV at leading order, summed over colours.

        With couplings (a, b) = (left, right), x = m_f^2 / M^2, beta = sqrt(1 - 4x):
        Gamma = N_c M beta / (24 pi) [(a^2 + b^2)(1 - x) + 6 a b x]; 0 below threshold.
        """
        zp = self.zprime
        if zp is None:
            raise ValueError("the model has no Z' (set model.mzp)")
        a, b = self.zprime_couplings(pdg)
        n_c = _FERMION_TYPES[_fermion_type(pdg)][2]
        x = (self.mass(pdg) / zp.mass) ** 2
        if 4.0 * x >= 1.0:
            return 0.0
        beta = math.sqrt(1.0 - 4.0 * x)
        return n_c * zp.mass * beta / (24.0 * math.pi) * ((a * a + b * b) * (1 - x) + 6 * a * b * x)

    def zprime_width(self) -> float:
        """The Z' total width in GeV at leading order: the sum of its partial widths into
        the three fermion generations (t and b with their masses; no decays to bosons)."""
        return sum(self.zprime_partial_width(f) for f in (*range(1, 7), *range(11, 17)))

    @property
    def wzp(self) -> float:
        """The Z' total width in GeV: as given, or :meth:`zprime_width`."""
        zp = self.zprime
        if zp is None:
            raise ValueError("the model has no Z' (set model.mzp)")
        return zp.width if zp.width is not None else self.zprime_width()

    def with_overrides(self, **values: Any) -> SMParameters:
        """A copy with some inputs replaced; unknown names raise ``KeyError``."""
        known = {f.name for f in fields(self) if f.name != "extra"}
        bad = sorted(set(values) - known)
        if bad:
            raise KeyError(f"unknown model parameter(s) {bad}; allowed: {sorted(known)}")
        return replace(self, **values)
