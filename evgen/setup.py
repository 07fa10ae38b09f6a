"""From a validated card to a runnable set-up, with every check done before computing.

:func:`prepare` resolves what a card names (process and its partonic subprocesses, beams,
PDF set, alpha_s, scales, cuts, phase space) and checks it against the collider (cuts
and masses against sqrt(s)) and the file system (the output folder), so a bad card fails
in a second with a :class:`~evgen.errors.CardError` naming the key, and nothing is written.
Subprocesses with the same outgoing masses share one integrand (a
:class:`PhaseSpaceGroup`). Energies in GeV.

Channels (``integrator.multichannel``, the default): each diagram channel of the group's
processes gets a mapping of tau = s_hat / S. A channel with a massive s-channel
propagator that makes the whole final state, inside the s_hat window, gets that
resonance's mapping (Breit-Wigner + power-law mixture, see LuminosityMapping); every other
channel (photon, gluon, t-channel lines) the power law tau^-nu. Channels whose mappings
are the same are merged into one integrand channel, their prior weights summed: p p > t t~
has one channel, p p > e+ e- two (photon; Z) or three with a Z'. Lepton collisions have
a fixed s_hat, so all their channels merge into one.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

import processes
from evgen.alphas import AlphaS
from evgen.beams import Beam, parse_beam
from evgen.card import RunCard
from evgen.cuts import Cuts
from evgen.errors import CardError, PDFError, ProcessError
from evgen.integrand import Integrand
from evgen.params import SMParameters
from evgen.pdf import PDFSet, load_pdf
from evgen.phasespace import HadronicPhaseSpace, LeptonicPhaseSpace
from evgen.scales import ScaleChoice
from processes.base import Channel, Process
from processes.particles import particle_name

__all__ = ["PreparedRun", "PhaseSpaceGroup", "ChannelInfo", "prepare"]

Resonance = tuple[float, float]  # (mass, width) in GeV


@dataclass(frozen=True)
class ChannelInfo:
    """One integrand channel: what its tau mapping peaks on and which diagrams it holds.

    Attributes:
        label: the diagrams merged into it by their propagators, e.g. ``"a"``, ``"z"``,
            ``"g/t(t-ch)"`` (several propagators of one diagram are joined by ``+``).
        resonance: (mass, width) in GeV of the Breit-Wigner of its mapping, or ``None``
            for the power law alone.
    """

    label: str
    resonance: Resonance | None


@dataclass
class PhaseSpaceGroup:
    """Subprocesses that share one integrand (one final state), with its channels."""

    subprocesses: list[Process]
    process_ids: list[int]
    integrand: Integrand
    channels: list[ChannelInfo] = field(default_factory=list)


@dataclass
class PreparedRun:
    """A validated card with every object the run needs."""

    card: RunCard
    card_text: str
    source: str
    params: SMParameters
    beams: tuple[Beam, Beam]
    pdf: PDFSet | None
    alpha_s: AlphaS
    groups: list[PhaseSpaceGroup]
    device: torch.device
    output_dir: Path
    setup_seconds: float = 0.0  #: time :func:`prepare` took (PDF loading, checks)

    @property
    def subprocesses(self) -> list[Process]:
        return [p for g in self.groups for p in g.subprocesses]


def _check_output_dir(path: Path, source: str) -> None:
    """Fail early (CardError) if nothing can be written under ``path``; create nothing."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise CardError(
            f"{source}: output.path: cannot create {str(path)!r}: {str(probe)!r} is not a folder"
        )
    try:
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".evgen-probe-"):
            pass
    except OSError as err:
        raise CardError(
            f"{source}: output.path: cannot write in {str(probe)!r} ({err.strerror})"
        ) from None


def _channel_resonance(
    channel: Channel, n_out: int, s_min: float, s_max: float
) -> Resonance | None:
    """The heaviest massive s-channel propagator of ``channel`` that makes the whole final
    state with its mass inside [s_min, s_max] (GeV^2), or None (power-law mapping)."""
    best: Resonance | None = None
    for prop in channel.s_resonances():
        if len(prop.legs) == n_out and prop.width > 0 and s_min <= prop.mass**2 <= s_max:
            if best is None or prop.mass > best[0]:
                best = (prop.mass, prop.width)
    return best


def _propagator_label(channel: Channel) -> str:
    names = []
    for prop in channel.propagators:
        try:
            name = particle_name(prop.pdg)
        except ProcessError:
            name = str(prop.pdg)
        names.append(name if prop.kind == "s" else f"{name}(t-ch)")
    return "+".join(names) or "flat"


def _channel_plan(
    procs: list[Process], n_out: int, s_min: float, s_max: float, hadronic: bool
) -> tuple[list[ChannelInfo], list[list[int]]]:
    """Merge the processes' channels by mapping: the channels (in order of first
    appearance) and, per process, the integrand channel of each of its channels."""
    keys: list[Resonance | None] = []
    labels: list[list[str]] = []
    channel_of: list[list[int]] = []
    for proc in procs:
        indices = []
        for channel in proc.channels():
            key = _channel_resonance(channel, n_out, s_min, s_max) if hadronic else None
            if key not in keys:
                keys.append(key)
                labels.append([])
            k = keys.index(key)
            label = _propagator_label(channel)
            if label not in labels[k]:
                labels[k].append(label)
            indices.append(k)
        channel_of.append(indices)
    infos = [ChannelInfo("/".join(lab), key) for lab, key in zip(labels, keys, strict=True)]
    return infos, channel_of


def _resonance(subprocesses: list[Process], n_out: int) -> tuple[float, float] | None:
    """The heaviest massive s-channel propagator that produces the whole final state."""
    best: tuple[float, float] | None = None
    for proc in subprocesses:
        for channel in proc.channels():
            for prop in channel.s_resonances():
                if len(prop.legs) == n_out and prop.width > 0:
                    if best is None or prop.mass > best[0]:
                        best = (prop.mass, prop.width)
    return best


def _has_s_channel_core(proc: Process) -> bool:
    n_out = len(proc.outgoing)
    return any(
        prop.kind == "s" and len(prop.legs) == n_out and proc.params.mass(prop.pdg) > 0
        for ch in proc.channels()
        for prop in ch.propagators
    )


def prepare(card: RunCard, card_text: str = "", source: str = "<card>") -> PreparedRun:
    """Resolve a validated card into a runnable set-up; raise CardError on bad input."""
    t_start = time.perf_counter()
    try:
        device = torch.device(card.run.device)
    except RuntimeError:
        raise CardError(
            f"{source}: run.device: unknown device {card.run.device!r}; expected cpu or cuda"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CardError(
            f"{source}: run.device: {card.run.device!r} requested but CUDA is not available"
        )
    try:
        params = SMParameters().with_overrides(**card.model.overrides(), zprime=card.model.zprime())
        _ = params.mw
    except ValueError as err:
        raise CardError(f"{source}: {err}") from None
    if params.zprime is not None and not params.wzp > 0:
        raise CardError(
            f"{source}: model.zp_couplings: the Z' couples to no fermion (its width is 0); "
            "give non-zero couplings or model.wzp"
        )

    beams = (
        parse_beam(card.beams.particles[0], card.beams.energies[0], f"{source}: beams.particles"),
        parse_beam(card.beams.particles[1], card.beams.energies[1], f"{source}: beams.particles"),
    )
    try:
        candidates = processes.expand(card.process, params, n_flavours=card.model.n_flavours)
    except ProcessError as err:
        raise CardError(f"{source}: process: {err}") from None
    subs = [
        p for p in candidates if beams[0].holds(p.incoming[0]) and beams[1].holds(p.incoming[1])
    ]
    if not subs:
        raise CardError(
            f"{source}: process: {card.process!r} has no partonic subprocess for beams "
            f"{card.beams.particles[0]} {card.beams.particles[1]} (its initial states: "
            f"{sorted({p.name.split('>')[0].strip() for p in candidates})}); "
            "check beams.particles"
        )

    pdf: PDFSet | None = None
    if any(b.is_hadron for b in beams):
        try:
            pdf = load_pdf(card.pdf.set, member=card.pdf.member)
        except PDFError as err:
            raise CardError(f"{source}: pdf.set: {err}") from None
        pdf = pdf.to(device)
        alpha_s = AlphaS(pdf.alpha_s_mz, n_loops=card.scale.alpha_s_loops)
    else:
        alpha_s = AlphaS(params.alpha_s, n_loops=card.scale.alpha_s_loops)

    s_collider = 4.0 * beams[0].energy * beams[1].energy
    groups: list[PhaseSpaceGroup] = []
    by_masses: dict[tuple[float, ...], list[tuple[int, Process]]] = {}
    for i, proc in enumerate(subs):
        by_masses.setdefault(proc.masses[2:], []).append((i + 1, proc))
    for masses, members in by_masses.items():
        procs = [p for _, p in members]
        cuts = [Cuts(card.cuts, p.outgoing, card.model.n_flavours) for p in procs]
        s_min = sum(masses) ** 2
        s_max = math.inf
        if len(masses) == 2 and all(c.sfos_pairs == [(0, 1)] for c in cuts):
            lo, hi = cuts[0].mll_window()
            s_min, s_max = max(s_min, lo**2), hi**2
        if s_min >= s_collider:
            what = (
                f"cuts.mmll = {card.cuts.mmll} GeV"
                if s_min > sum(masses) ** 2
                else f"the final-state masses ({sum(masses):.6g} GeV)"
            )
            raise CardError(
                f"{source}: {what} exceed(s) the collider energy sqrt(s) = "
                f"{math.sqrt(s_collider):.6g} GeV (beams.energies): no event is possible"
            )
        n_out = len(masses)
        hadronic = all(b.is_hadron for b in beams)
        if not hadronic and any(b.is_hadron for b in beams):
            raise CardError(
                f"{source}: beams.particles: lepton-hadron collisions are not supported yet"
            )
        s_hi = min(s_max, s_collider)
        if card.integrator.multichannel:
            channels, channel_of = _channel_plan(procs, n_out, s_min, s_hi, hadronic)
        else:  # one mapping, on the heaviest resonance (if any)
            merged, _ = _channel_plan(procs, n_out, s_min, s_hi, hadronic)
            res = _resonance(procs, n_out) if hadronic else None
            channels = [ChannelInfo("/".join(c.label for c in merged), res)]
            channel_of = [[0] * len(p.channels()) for p in procs]
        # A resonance channel next to a power-law channel leaves the continuum to it and
        # maps a pure Breit-Wigner; a lone resonance channel keeps the mixture.
        bw_fraction = 1.0 if any(c.resonance is None for c in channels) else 0.5
        spaces: list[HadronicPhaseSpace | LeptonicPhaseSpace] = []
        for info in channels:
            if hadronic:
                spaces.append(
                    HadronicPhaseSpace(
                        beams[0].energy,
                        beams[1].energy,
                        masses,
                        s_hat_min=s_min,
                        s_hat_max=None if math.isinf(s_max) else s_hi,
                        resonance=info.resonance,
                        bw_fraction=bw_fraction,
                    )
                )
            else:
                spaces.append(LeptonicPhaseSpace(beams[0].energy, beams[1].energy, masses))
        scale = ScaleChoice(card.scale, s_channel_core=_has_s_channel_core(procs[0]))
        integrand = Integrand(procs, spaces, beams, pdf, alpha_s, scale, cuts, channel_of)
        groups.append(PhaseSpaceGroup(procs, [i for i, _ in members], integrand, channels))

    ic = card.integrator
    if ic.type == "cfm":
        for group in groups:
            if group.integrand.n_channels > 1:
                raise CardError(
                    f"{source}: integrator.type: cfm samples one phase-space channel, but "
                    f"{group.subprocesses[0].name} has {group.integrand.n_channels} "
                    "(" + ", ".join(c.label for c in group.channels) + "); set "
                    "integrator.multichannel: false or use type madnis"
                )
    if ic.type != "vegas" and ic.learned_settings.state is not None:
        state = Path(ic.learned_settings.state)
        if not state.is_file():
            raise CardError(
                f"{source}: integrator.learned.state: {str(state)!r} is not a file "
                "(expected a state saved by an earlier run)"
            )
    output_dir = Path(card.output.path)
    _check_output_dir(output_dir, source)
    return PreparedRun(
        card=card,
        card_text=card_text,
        source=source,
        params=params,
        beams=beams,
        pdf=pdf,
        alpha_s=alpha_s,
        groups=groups,
        device=device,
        output_dir=output_dir,
        setup_seconds=time.perf_counter() - t_start,
    )
