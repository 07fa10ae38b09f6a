"""Beams and the parton luminosity: which partons a beam holds and their densities.

A hadron beam (proton 2212 or antiproton -2212) gives parton densities f(x, mu_F^2)
from an LHAPDF set; a lepton beam gives its own lepton with x = 1 (no ISR, no beam
spectrum), as MadGraph's ``lpp = 0``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from evgen.errors import CardError

__all__ = ["Beam", "BEAM_PARTICLES", "parse_beam"]

#: Beam names accepted in cards and their PDG ids.
BEAM_PARTICLES = {"p": 2212, "p~": -2212, "e-": 11, "e+": -11, "mu-": 13, "mu+": -13}


@dataclass(frozen=True)
class Beam:
    """One beam: PDG id and energy in GeV."""

    pdg: int
    energy: float

    @property
    def is_hadron(self) -> bool:
        return abs(self.pdg) == 2212

    def holds(self, parton: int) -> bool:
        """Whether a parton of PDG id ``parton`` can come out of this beam."""
        if self.is_hadron:
            return parton == 21 or 1 <= abs(parton) <= 6
        return parton == self.pdg

    def pdf_column(self, parton: int) -> int:
        """Column of :meth:`PDFSet.xfx_all` for ``parton`` (antiproton: conjugate)."""
        pid = 0 if parton == 21 else parton
        if self.pdg < 0:
            pid = -pid
        return pid + 6


def parse_beam(name: str, energy: float, key: str) -> Beam:
    """A Beam from a card name (``p``, ``p~``, ``e+``, ...); ``key`` names it in errors."""
    if name not in BEAM_PARTICLES:
        raise CardError(
            f"{key}: unknown beam particle {name!r}; expected one of {sorted(BEAM_PARTICLES)}"
        )
    return Beam(BEAM_PARTICLES[name], float(energy))


def densities(xfx: Tensor, x: Tensor, columns: list[int]) -> Tensor:
    """Parton densities f = xf / x for the given columns: (n, 13) -> (n, len(columns))."""
    return xfx[:, columns] / x.unsqueeze(1)


def ones_like_density(x: Tensor, n: int) -> Tensor:
    """Lepton beam: unit density for each of ``n`` subprocesses."""
    return torch.ones(x.shape[0], n, dtype=x.dtype, device=x.device)
