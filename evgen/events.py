"""The one event container that every writer, reader, generator and unfolder shares.

All per-event quantities are tensors with events on the first axis. Particles are
in LHE order: the two incoming partons first, then the outgoing particles in the
order of the process name, then intermediate resonances, if any (a decay chain's, status
2, outermost first; their decay products point to them through ``mothers``). LHE allows
a resonance after its daughters; Pythia 8 reads them so.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import Tensor

__all__ = ["Events", "RunInfo", "ProcessInfo"]


@dataclass
class Events:
    """A batch of events of one multiplicity.

    Attributes:
        momenta: (n, n_part, 4) float64, (E, px, py, pz) in GeV, lab frame.
        pdg: (n, n_part) int64 PDG ids.
        status: (n, n_part) int64 LHE status (-1 incoming, 1 outgoing, 2 intermediate).
        mothers: (n, n_part, 2) int64 LHE mother indices, 1-based, 0 for none.
        colours: (n, n_part, 2) int64 LHE (colour, anticolour) tags, 0 for none.
        masses: (n, n_part) float64 generated masses in GeV (the LHE mass column).
        spins: (n, n_part) float64 cosine of the helicity angle; 9.0 means unknown.
        weights: (n,) float64 event weights in pb.
        process_id: (n,) int64 LHE IDPRUP of the subprocess group.
        scale: (n,) float64 factorisation/renormalisation scale in GeV (LHE SCALUP).
        alpha_s: (n,) float64 strong coupling used (LHE AQCDUP).
        alpha_qed: (n,) float64 electromagnetic coupling used (LHE AQEDUP).
        channel: (n,) int64 phase-space channel the event was sampled in.
    """

    momenta: Tensor
    pdg: Tensor
    status: Tensor
    mothers: Tensor
    colours: Tensor
    masses: Tensor
    spins: Tensor
    weights: Tensor
    process_id: Tensor
    scale: Tensor
    alpha_s: Tensor
    alpha_qed: Tensor
    channel: Tensor

    def __len__(self) -> int:
        return int(self.momenta.shape[0])

    @property
    def n_particles(self) -> int:
        """Number of particles per event."""
        return int(self.momenta.shape[1])

    def __getitem__(self, index: Tensor | slice) -> Events:
        """Select events (boolean mask, index tensor or slice)."""
        return Events(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    def to(self, device: torch.device | str) -> Events:
        """A copy on another device."""
        return Events(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    @staticmethod
    def concatenate(parts: list[Events]) -> Events:
        """Join batches of equal multiplicity along the event axis."""
        if not parts:
            raise ValueError("no events to concatenate")
        return Events(
            **{f.name: torch.cat([getattr(p, f.name) for p in parts]) for f in fields(Events)}
        )


@dataclass(frozen=True)
class ProcessInfo:
    """One LHE process entry: IDPRUP with its cross section, error and maximum weight (pb)."""

    process_id: int
    name: str
    cross_section_pb: float
    error_pb: float
    max_weight_pb: float


@dataclass(frozen=True)
class RunInfo:
    """Run-level metadata written to the LHE ``<init>`` block and the ROOT file.

    Attributes:
        beam_pdg: PDG ids of the two beams.
        beam_energy: beam energies in GeV.
        pdf_group: LHAPDF group id (PDFGUP), 0 when LHAPDF ids are used directly.
        pdf_id: LHAPDF ids (PDFSUP) per beam, 0 for lepton beams.
        weighting: LHE IDWTUP (3 for unweighted events of equal weight, 1 weighted).
        processes: per-subprocess-group cross sections.
        card_text: the YAML card, written verbatim into the LHE header.
        generator: program name and version.
        seed: the run's random seed.
    """

    beam_pdg: tuple[int, int]
    beam_energy: tuple[float, float]
    pdf_group: tuple[int, int]
    pdf_id: tuple[int, int]
    weighting: int
    processes: tuple[ProcessInfo, ...]
    card_text: str = ""
    generator: tuple[str, str] = ("evgen", "0.1.0")
    seed: int = 0
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def cross_section_pb(self) -> float:
        """Total cross section in pb."""
        return sum(p.cross_section_pb for p in self.processes)

    @property
    def error_pb(self) -> float:
        """Total Monte Carlo error in pb (independent groups, added in quadrature)."""
        return sum(p.error_pb**2 for p in self.processes) ** 0.5
