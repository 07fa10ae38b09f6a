"""The Process contract: external particles, |M|^2, channels and colour flows.

A :class:`Process` has one fixed ordering of external particles: the two incoming ones,
then the outgoing ones in the order of its MadGraph name. Momenta are tensors of shape
(n, n_ext, 4) holding (E, px, py, pz) in GeV, float64.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import torch
from torch import Tensor

from evgen.params import SMParameters

__all__ = ["Process", "Propagator", "Channel"]


@dataclass(frozen=True)
class Propagator:
    """An internal line of a diagram, as the phase-space mapping needs it.

    Attributes:
        pdg: PDG id of the exchanged particle.
        mass: its mass in GeV.
        width: its width in GeV.
        kind: "s" for a time-like (s-channel) line, "t" for a space-like one.
        legs: indices (0-based, into the external particles) of the outgoing particles
            whose summed momentum flows through an s-channel line; for a t-channel line,
            the outgoing particles on the side of the first incoming one.
        onshell: a resonance of a decay chain (MadGraph's ``p p > t t~, (t > b e+ ve)``):
            an s-channel line whose invariant mass lies within ``bwcutoff`` widths of its
            mass (the run's cut; the phase space samples it only there).
    """

    pdg: int
    mass: float
    width: float
    kind: str
    legs: tuple[int, ...]
    onshell: bool = False


@dataclass(frozen=True)
class Channel:
    """One diagram topology (its propagators) for a phase-space channel."""

    propagators: tuple[Propagator, ...] = field(default_factory=tuple)

    def s_resonances(self) -> tuple[Propagator, ...]:
        """The massive s-channel propagators (Breit-Wigner peaks)."""
        return tuple(p for p in self.propagators if p.kind == "s" and p.mass > 0)

    def decay_resonances(self) -> tuple[Propagator, ...]:
        """The decay-chain resonances (:attr:`Propagator.onshell`), inner decays before the
        decays that contain them (fewer legs first)."""
        return tuple(
            sorted((p for p in self.propagators if p.onshell), key=lambda p: (len(p.legs), p.legs))
        )


class Process(ABC):
    """A partonic process with fixed external particles.

    Subclasses set ``incoming`` and ``outgoing`` (PDG ids) and implement
    :meth:`matrix_element`, :meth:`channels` and :meth:`colour_flow`; a process with
    more than one channel overrides :meth:`channel_weights`.

    Attributes:
        name: MadGraph syntax, e.g. ``"g g > t t~"``.
        incoming: PDG ids of the two incoming particles.
        outgoing: PDG ids of the outgoing particles.
        params: Standard Model parameters.
        alpha_s_power: power of alpha_s in |M|^2.
        alpha_ew_power: power of alpha_EW in |M|^2.

    The identical-particle factor :attr:`symmetry_factor` is *not* part of
    :meth:`matrix_element`; the integrand multiplies the cross section by it.
    """

    name: str
    incoming: tuple[int, int]
    outgoing: tuple[int, ...]
    alpha_s_power: int = 0
    alpha_ew_power: int = 0

    def __init__(self, params: SMParameters | None = None) -> None:
        self.params = params if params is not None else SMParameters()

    @property
    def pdg_ids(self) -> tuple[int, ...]:
        """All external PDG ids, incoming first."""
        return (*self.incoming, *self.outgoing)

    @property
    def masses(self) -> tuple[float, ...]:
        """External masses in GeV, incoming first."""
        return tuple(self.params.mass(i) for i in self.pdg_ids)

    @property
    def symmetry_factor(self) -> float:
        """1 / prod(n_i!) over groups of identical outgoing particles."""
        from math import factorial

        counts: dict[int, int] = {}
        for pid in self.outgoing:
            counts[pid] = counts.get(pid, 0) + 1
        f = 1.0
        for c in counts.values():
            f /= factorial(c)
        return f

    @abstractmethod
    def matrix_element(self, momenta: Tensor, alpha_s: Tensor | float | None = None) -> Tensor:
        """|M|^2 summed over final and averaged over initial helicities and colours.

        Args:
            momenta: (n, n_ext, 4) in GeV, particles in the order of the name.
            alpha_s: strong coupling per event (n,) or a number; ``None`` uses
                ``params.alpha_s``. Ignored by processes without QCD couplings.

        Returns:
            (n,) float64, dimensionless for 2 -> 2 (GeV^(4 - 2 n_ext) in general).
        """

    @abstractmethod
    def channels(self) -> list[Channel]:
        """The diagram topologies whose propagators the phase space should map."""

    def channel_weights(self, momenta: Tensor) -> Tensor:
        """Single-diagram-enhanced (SDE) prior weights of the channels at each point.

        MadGraph's multi-channel weights alpha_i = |M_i|^2 / sum_j |M_j|^2, with M_i the
        amplitude of the diagram of channel i alone (Maltoni & Stelzer, JHEP 02 (2003)
        027, hep-ph/0208156). Every row is non-negative and sums to 1. This default is
        uniform over :meth:`channels`; processes with several channels override it.

        Args:
            momenta: (n, n_ext, 4) in GeV.

        Returns:
            (n, len(channels())) float64, columns in the order of :meth:`channels`.
        """
        n_channels = len(self.channels())
        return torch.full(
            (momenta.shape[0], n_channels),
            1.0 / n_channels,
            dtype=momenta.dtype,
            device=momenta.device,
        )

    @abstractmethod
    def colour_flow(self, momenta: Tensor, u: Tensor) -> Tensor:
        """A leading-colour flow per event for the LHE file.

        Args:
            momenta: (n, n_ext, 4) in GeV.
            u: (n,) uniform random numbers in [0, 1) choosing among the flows with
               probability proportional to their partial squared amplitudes.

        Returns:
            (n, n_ext, 2) int64 (colour, anticolour) tags, 0 where none, tags from 501 up.
            Incoming quarks carry a colour, incoming antiquarks an anticolour, as in LHE.
        """

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
