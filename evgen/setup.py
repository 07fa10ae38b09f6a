"""From a validated card to a runnable set-up, with every check done before computing.

:func:`prepare` resolves what a card names (process and its partonic subprocesses, beams,
PDF set, alpha_s, scales, cuts, phase space) and checks it against the collider (cuts
and masses against sqrt(s)) and the file system (the output folder), so a bad card fails
in a second with a :class:`~evgen.errors.CardError` naming the key, and nothing is written.
Subprocesses with the same outgoing masses share one integrand (a
:class:`PhaseSpaceGroup`). Energies in GeV.

Channels (``integrator.multichannel``, the default), two outgoing particles: each diagram
channel of the group's processes gets a mapping of tau = s_hat / S. A channel with a
massive s-channel propagator that makes the whole final state, inside the s_hat window,
gets that resonance's mapping (Breit-Wigner + power-law mixture, see LuminosityMapping);
every other channel (photon, gluon, t-channel lines) the power law tau^-nu. Channels whose
mappings are the same are merged into one integrand channel, their prior weights summed:
p p > t t~ has one channel, p p > e+ e- two (photon; Z) or three with a Z'. Lepton
collisions have a fixed s_hat, so all their channels merge into one.

Three or more outgoing particles: with ``integrator.multichannel``, one mapping per distinct
diagram channel of the group's processes (MadGraph's configs:
:func:`~evgen.phasespace.diagram_channels.channel_phase_spaces`, s-channel invariants and
t-channel chains mapped on their propagators), each weighted with the processes' SDE
weights; without it, one RAMBO mapping of the final state (flat) after the tau mapping.

Processes (:func:`processes.resolve`): the card's ``process`` line with its ``definitions``
and ``engine`` (analytic library or automatic helicity amplitudes); subprocesses with the
same matrix element share one evaluation (:class:`processes.FlavourAlias`). MadGraph's
``$ X`` (on-shell exclusion) becomes a cut: no s-channel X line of the diagrams within
``cuts.bwcutoff`` widths of its mass.

Decay chains (``p p > t t~, (t > b l+ vl), (t~ > b~ l- vl~)``; the amplitude engine), in the
narrow-width approximation as MadGraph makes it: one amplitude for production and decays
joined by the resonances' Breit-Wigner propagators (exact spin correlations), each
resonance's invariant mass within ``cuts.bwcutoff`` widths of its mass. That window is a cut
of the integrand (every channel) and is built into the diagram channels' sampling of the
resonances (:attr:`processes.base.Propagator.onshell`), so no point is wasted; a resonance
through the whole final state restricts s_hat instead. The dynamical scale is computed from
the production's momenta (each decay's products summed into its resonance: the top
transverse masses of ``p p > t t~``). A decaying particle needs a width > 0.

Two massless outgoing particles in hadron collisions: every channel's phase space maps the
card's rapidity and pT cuts on them exactly (:class:`MasslessPairCuts`: ptl/etal on
charged leptons, ptj/etaj on jets, as :class:`~evgen.cuts.Cuts` applies them), so that no
point is sampled outside them; the integrand still applies every cut.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

import processes
from evgen.alphas import AlphaS
from evgen.beams import Beam, parse_beam
from evgen.card import CutsCard, RunCard, ScaleCard
from evgen.cuts import Cuts
from evgen.errors import CardError, PDFError, ProcessError
from evgen.integrand import Integrand
from evgen.kinematics import mass2
from evgen.params import SMParameters
from evgen.pdf import PDFSet, load_pdf
from evgen.phasespace import HadronicPhaseSpace, LeptonicPhaseSpace
from evgen.phasespace.collider import MasslessPairCuts
from evgen.phasespace.diagram_channels import (
    BW_CUTOFF,
    ChannelPhaseSpace,
    channel_phase_spaces,
    onshell_window,
)
from evgen.scales import ScaleChoice
from processes.auto.syntax import parse_process
from processes.base import Channel, Process, Propagator
from processes.particles import particle_name

__all__ = [
    "PreparedRun",
    "PhaseSpaceGroup",
    "ChannelInfo",
    "prepare",
    "decay_resonances",
    "DIAGRAM_CHANNELS",
    "BW_CUTOFF",
    "WindowCuts",
]

Resonance = tuple[float, float]  # (mass, width) in GeV
PhaseSpace = HadronicPhaseSpace | LeptonicPhaseSpace | ChannelPhaseSpace

#: 3+ outgoing particles with ``integrator.multichannel``: diagram-channel mappings
#: (:mod:`evgen.phasespace.diagram_channels`) if True, else one RAMBO mapping.
DIAGRAM_CHANNELS = True


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


def _resolve_process(card: RunCard, params: SMParameters, source: str) -> list[Process]:
    """The card's partonic subprocesses (``process``, ``definitions``, ``engine``,
    ``model.n_flavours``); CardError naming the key at fault."""
    n_flavours = card.model.n_flavours
    try:
        table = processes.label_definitions(card.definitions, n_flavours)
    except ProcessError as err:
        raise CardError(f"{source}: definitions: {err}") from None
    if card.engine == "analytic" and table:
        raise CardError(
            f"{source}: engine: the analytic library takes bare process lines without "
            "definitions; use engine: amplitudes (or auto)"
        )
    try:
        defn = parse_process(card.process, table, n_flavours)
    except ProcessError as err:
        raise CardError(f"{source}: process: {err}") from None
    engine = card.engine
    if defn.decays:
        if engine == "analytic":
            raise CardError(
                f"{source}: engine: the analytic library has no decay chains (',' in "
                f"{card.process!r}); use engine: amplitudes (or auto)"
            )
        engine = "amplitudes"
    try:
        subs = processes.resolve(
            card.process, params, engine=engine, definitions=table, n_flavours=n_flavours
        )
    except ProcessError as err:
        hint = ""
        if card.engine == "analytic":
            hint = " (engine: analytic; engine: amplitudes computes any tree-level process)"
        raise CardError(f"{source}: process: {err}{hint}") from None
    for proc in subs:
        for res in decay_resonances(proc):
            if not res.width > 0:
                key = {6: "wt", 23: "wz", 24: "ww", 25: "wh", 32: "wzp"}.get(abs(res.pdg))
                where = f"model.{key}" if key else "the model"
                raise CardError(
                    f"{source}: process: the decaying {_particle(res.pdg)} of {proc.name!r} "
                    f"has width {res.width:g} GeV; a decay chain needs a width > 0 (set it "
                    f"with {where})"
                )
    return subs


def _particle(pdg: int) -> str:
    try:
        return particle_name(pdg)
    except ProcessError:
        return str(pdg)


def decay_resonances(proc: Process) -> tuple[Propagator, ...]:
    """The decay-chain resonances of a process (its channels'
    :attr:`~processes.base.Propagator.onshell` lines, inner decays first); () without
    decays."""
    channels = proc.channels()
    return channels[0].decay_resonances() if channels else ()


Window = tuple[tuple[int, ...], float, float]  # (outgoing indices, mass, half-width) GeV


class WindowCuts(Cuts):
    """The card's cuts and MadGraph's ``bwcutoff`` windows: every decay-chain resonance's
    invariant mass within ``bwcutoff`` widths of its mass (``inside``), no invariant mass
    of a ``$``-excluded s-channel line there (``outside``).

    Args:
        inside, outside: (outgoing indices, mass, half-width) in GeV of each line.
    """

    def __init__(
        self,
        card: CutsCard,
        outgoing: tuple[int, ...],
        n_flavours: int,
        inside: tuple[Window, ...] = (),
        outside: tuple[Window, ...] = (),
    ) -> None:
        super().__init__(card, outgoing, n_flavours)
        self.inside = inside
        self.outside = outside

    @property
    def signature(self) -> tuple:
        return (*super().signature, self.inside, self.outside)

    def __call__(self, p: Tensor) -> Tensor:
        ok = super().__call__(p)
        for windows, keep in ((self.inside, True), (self.outside, False)):
            for legs, mass, half_width in windows:
                m = torch.sqrt(mass2(p[:, list(legs)].sum(dim=1)).clamp(min=0.0))
                ok = ok & (((m - mass).abs() <= half_width) == keep)
        return ok


def _onshell_vetoes(proc: Process) -> frozenset[int]:
    """Signed PDG ids of the process's ``$`` exclusions (engine processes; none else)."""
    vetoes: frozenset[int] = getattr(proc, "onshell_vetoes", frozenset())
    return vetoes


def _cuts(card: RunCard, proc: Process) -> Cuts:
    """The card's cuts for one subprocess, with the ``bwcutoff`` windows of its decay-chain
    resonances and the on-shell vetoes of its ``$`` exclusions (every s-channel line of an
    excluded particle in its channels)."""
    bw = card.cuts.bwcutoff
    vetoes = _onshell_vetoes(proc)
    outside = sorted(
        {
            (tuple(leg - 2 for leg in prop.legs), prop.mass, bw * prop.width)
            for ch in proc.channels()
            for prop in ch.propagators
            if prop.kind == "s" and prop.pdg in vetoes and prop.width > 0
        }
    )
    inside = sorted(
        {
            (tuple(leg - 2 for leg in res.legs), res.mass, bw * res.width)
            for res in decay_resonances(proc)
        }
    )
    if not (inside or outside):
        return Cuts(card.cuts, proc.outgoing, card.model.n_flavours)
    return WindowCuts(
        card.cuts, proc.outgoing, card.model.n_flavours, tuple(inside), tuple(outside)
    )


class _ProductionScale(ScaleChoice):
    """The card's scale choice evaluated on the production of a decay chain: each
    top-level decay's products summed into its resonance (``p p > t t~, (t > b l+ vl),
    ...``: the choice for ``p p > t t~``), as MadGraph's clustering finds it.

    Args:
        blocks: per production particle, its outgoing legs (0-based, outgoing only), in the
            production's order.
    """

    def __init__(
        self, card: ScaleCard, blocks: list[list[int]], *, s_channel_core: bool = False
    ) -> None:
        super().__init__(card, s_channel_core=s_channel_core)
        self.blocks = blocks

    def dynamic(self, p: Tensor) -> Tensor:
        out = torch.stack([p[:, [2 + k for k in legs]].sum(dim=1) for legs in self.blocks], 1)
        mu = super().dynamic(torch.cat([p[:, :2], out], dim=1))
        # points outside the phase space (jacobian 0) may have unphysical momenta
        return torch.where(mu > 0, mu, torch.ones_like(mu))


def _production_blocks(proc: Process) -> list[list[int]] | None:
    """The outgoing legs (0-based) of each particle of a decay chain's production (a
    top-level decay's products, or one undecayed leg), in the production's order; None
    without decays."""
    resonances = decay_resonances(proc)
    if not resonances:
        return None
    legs = [set(r.legs) for r in resonances]
    top = [s for s in legs if not any(s < o for o in legs)]
    covered = set().union(*top)
    blocks = top + [{k} for k in range(2, 2 + len(proc.outgoing)) if k not in covered]
    return [sorted(k - 2 for k in b) for b in sorted(blocks, key=min)]


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
    channel: Channel,
    n_out: int,
    s_min: float,
    s_max: float,
    vetoes: frozenset[int] = frozenset(),
) -> Resonance | None:
    """The heaviest massive s-channel propagator of ``channel`` that makes the whole final
    state with its mass inside [s_min, s_max] (GeV^2), or None (power-law mapping)."""
    best: Resonance | None = None
    for prop in channel.s_resonances():
        if prop.pdg in vetoes:  # '$': its resonance region is vetoed, not mapped
            continue
        if len(prop.legs) == n_out and prop.width > 0 and s_min <= prop.mass**2 <= s_max:
            if best is None or prop.mass > best[0]:
                best = (prop.mass, prop.width)
    return best


def _propagator_label(channel: Channel, legs: bool = False) -> str:
    """``"z"``, ``"g+t(t-ch)"``; with ``legs`` each line names its outgoing particles,
    numbered from 1 with the incoming ones as MadGraph does (s-channel: the particles it
    makes, ``"g(3,4,5)+t~(4,5)"``; t-channel: those on the side of incoming particle 1,
    ``"g(3,4)+g(t-ch 5)"``)."""
    names = []
    for prop in channel.propagators:
        try:
            name = particle_name(prop.pdg)
        except ProcessError:
            name = str(prop.pdg)
        numbers = ",".join(str(leg + 1) for leg in prop.legs)
        if prop.kind != "s":
            name = f"{name}(t-ch {numbers})" if legs else f"{name}(t-ch)"
        elif legs:
            name = f"{name}({numbers})"
        names.append(name)
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
            vetoes = _onshell_vetoes(proc)
            key = _channel_resonance(channel, n_out, s_min, s_max, vetoes) if hadronic else None
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
        vetoes = _onshell_vetoes(proc)
        for channel in proc.channels():
            for prop in channel.s_resonances():
                if len(prop.legs) == n_out and prop.width > 0 and prop.pdg not in vetoes:
                    if best is None or prop.mass > best[0]:
                        best = (prop.mass, prop.width)
    return best


def _massless_pair_cuts(cuts: list[Cuts], masses: tuple[float, ...]) -> MasslessPairCuts | None:
    """The rapidity and pT-minimum cuts on two massless outgoing particles that the phase
    space can map exactly, loosest over the subprocesses sharing it (so it contains each
    one's accepted region), or None (other final states, or no such cut).

    Mirrors :class:`~evgen.cuts.Cuts`: its ``leptons`` get ptl/etal, its ``jets``
    ptj/etaj, other particles (neutrinos, taus, ...) none. Maximum cuts (ptlmax, ptjmax)
    and pair cuts (mmll, drll, ...) are left to the cut function.
    """
    if len(masses) != 2 or any(m != 0 for m in masses):
        return None
    eta: list[float | None] = [0.0, 0.0]
    pt_min = math.inf
    for cut in cuts:
        c = cut.card
        pts = [0.0, 0.0]
        for slot in (0, 1):
            if slot in cut.leptons:
                limit, pts[slot] = c.etal, c.ptl
            elif slot in cut.jets:
                limit, pts[slot] = c.etaj, c.ptj
            else:
                limit = -1.0
            old = eta[slot]
            eta[slot] = None if old is None or limit < 0 else max(old, limit)
        pt_min = min(pt_min, max(pts))  # pT is common to both particles
    pt_min = max(pt_min, 0.0) if math.isfinite(pt_min) else 0.0
    if eta == [None, None] and pt_min == 0.0:
        return None
    return MasslessPairCuts(eta_max=(eta[0], eta[1]), pt_min=pt_min)


def _mapped_phase_spaces(
    procs: list[Process],
    cuts: list[Cuts],
    beams: tuple[Beam, Beam],
    s_min: float,
    s_max: float,
    s_hi: float,
    hadronic: bool,
    card: RunCard,
    source: str,
) -> tuple[list[PhaseSpace], list[ChannelInfo], list[list[int]]]:
    """The tau-mapped phase spaces of a group (see the module docstring): per channel a
    HadronicPhaseSpace (two-body angles, or RAMBO for 3+ outgoing particles) or a
    LeptonicPhaseSpace; with the channels and each process's channel index map."""
    masses = procs[0].masses[2:]
    n_out = len(masses)
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
    pair_cuts = _massless_pair_cuts(cuts, masses) if hadronic else None
    if pair_cuts is not None and pair_cuts.s_hat_min >= s_hi:
        raise CardError(
            f"{source}: cuts: pT > {pair_cuts.pt_min:.6g} GeV on both outgoing particles "
            f"needs sqrt(s_hat) > {2 * pair_cuts.pt_min:.6g} GeV, above the largest "
            f"allowed {math.sqrt(s_hi):.6g} GeV (cuts.mmllmax or beams.energies): "
            "no event is possible"
        )
    spaces: list[PhaseSpace] = []
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
                    pair_cuts=pair_cuts,
                )
            )
        else:
            spaces.append(LeptonicPhaseSpace(beams[0].energy, beams[1].energy, masses))
    return spaces, channels, channel_of


def _diagram_channel_spaces(
    procs: list[Process],
    beams: tuple[Beam, Beam],
    s_min: float,
    s_hi: float,
    hadronic: bool,
    bw_cutoff: float = BW_CUTOFF,
) -> tuple[list[PhaseSpace], list[ChannelInfo], list[list[int]]]:
    """3+ outgoing particles, multi-channel: one diagram-channel mapping per distinct
    propagator structure of the group's processes (:func:`channel_phase_spaces`, decay-chain
    resonances sampled within ``bw_cutoff`` widths), its channel's SDE weight as prior."""
    chans = channel_phase_spaces(
        procs,
        beams[0].energy,
        beams[1].energy,
        s_hat_min=s_min,
        s_hat_max=s_hi,
        hadronic=hadronic,
        bw_cutoff=bw_cutoff,
    )
    # Labels as the two-body channels': propagator names (the first merged diagram's,
    # "+N" for N more distinct ones, e.g. the same topology in other flavours).
    names: list[list[str]] = [[] for _ in chans.phase_spaces]
    for proc, indices in zip(procs, chans.channel_of, strict=True):
        for channel, k in zip(proc.channels(), indices, strict=True):
            label = _propagator_label(channel, legs=True)
            if label not in names[k]:
                names[k].append(label)
    infos = []
    for merged, ps in zip(names, chans.phase_spaces, strict=True):
        root = ps.topology.root_propagator
        resonant = hadronic and root is not None and root[0] > 0 and root[1] > 0
        label = merged[0] + (f" +{len(merged) - 1}" if len(merged) > 1 else "")
        infos.append(ChannelInfo(label, root if resonant else None))
    return list(chans.phase_spaces), infos, chans.channel_of


def _s_hat_from_cuts(cuts: Cuts, masses: tuple[float, ...]) -> float:
    """A lower bound on s_hat in GeV^2 that the cuts imply: with zero total transverse
    momentum, s_hat = sum_ij mT_i mT_j cosh(y_i - y_j) >= (sum_i mT_i)^2, mT_i >=
    sqrt(m_i^2 + pT_min,i^2) (ptj on jets, ptl on charged leptons); a same-flavour
    opposite-sign lepton pair of mass >= mmll counts as one particle of that mass."""
    c = cuts.card
    pt_min = [0.0] * len(masses)
    for i in cuts.jets:
        pt_min[i] = max(c.ptj, 0.0)
    for i in cuts.leptons:
        pt_min[i] = max(c.ptl, 0.0)
    mt = [math.hypot(m, p) for m, p in zip(masses, pt_min, strict=True)]
    best = sum(mt)
    if c.mmll > 0:
        for i, j in cuts.sfos_pairs:
            best = max(best, c.mmll + sum(mt) - mt[i] - mt[j])
    return best**2


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
        params = card.model.parameters()
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
    candidates = _resolve_process(card, params, source)
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
    # one integrand per final state (outgoing masses) and decay structure (resonance legs)
    by_masses: dict[tuple, list[tuple[int, Process]]] = {}
    for i, proc in enumerate(subs):
        structure = tuple(r.legs for r in decay_resonances(proc))
        by_masses.setdefault((proc.masses[2:], structure), []).append((i + 1, proc))
    for (masses, _), members in by_masses.items():
        procs = [p for _, p in members]
        cuts = [_cuts(card, p) for p in procs]
        s_min = sum(masses) ** 2
        s_max = math.inf
        if len(masses) == 2 and all(c.sfos_pairs == [(0, 1)] for c in cuts):
            lo, hi = cuts[0].mll_window()
            s_min, s_max = max(s_min, lo**2), hi**2
        blocks = _production_blocks(procs[0])
        if blocks is not None:  # threshold of the production: resonances in their windows
            lowest = {
                r.legs: onshell_window(r.mass, r.width, card.cuts.bwcutoff)[0]
                for r in decay_resonances(procs[0])
            }
            s_min = max(
                s_min,
                sum(
                    max(lowest.get(tuple(k + 2 for k in b), 0.0), sum(masses[k] for k in b))
                    for b in blocks
                )
                ** 2,
            )
        for res in decay_resonances(procs[0]):
            if len(res.legs) == len(masses):  # the whole final state: s_hat in its window
                m_lo, m_hi = onshell_window(res.mass, res.width, card.cuts.bwcutoff)
                s_min, s_max = max(s_min, m_lo**2), min(s_max, m_hi**2)
                if s_max <= s_min:
                    raise CardError(
                        f"{source}: cuts.bwcutoff: the {_particle(res.pdg)} of "
                        f"{procs[0].name!r} must lie within {card.cuts.bwcutoff:g} widths of "
                        f"its mass ({m_lo:.6g} - {m_hi:.6g} GeV), which the other cuts or the "
                        "final-state masses exclude: no event is possible"
                    )
        if s_min >= s_collider:
            what = (
                f"cuts.mmll = {card.cuts.mmll} GeV"
                if s_min > sum(masses) ** 2
                else f"process: {procs[0].name!r}: the final-state masses ({sum(masses):.6g} GeV)"
            )
            raise CardError(
                f"{source}: {what} exceed(s) the collider energy sqrt(s) = "
                f"{math.sqrt(s_collider):.6g} GeV (beams.energies): no event is possible"
            )
        n_out = len(masses)
        if n_out >= 3:
            s_cut = min(_s_hat_from_cuts(c, masses) for c in cuts)
            if s_cut >= s_collider:
                raise CardError(
                    f"{source}: cuts: the pT and mass cuts on {procs[0].name!r} need "
                    f"sqrt(s_hat) >= {math.sqrt(s_cut):.6g} GeV, not below the collider energy "
                    f"sqrt(s) = {math.sqrt(s_collider):.6g} GeV (beams.energies): no event is "
                    "possible"
                )
            s_min = max(s_min, s_cut)
        hadronic = all(b.is_hadron for b in beams)
        if not hadronic and any(b.is_hadron for b in beams):
            raise CardError(
                f"{source}: beams.particles: lepton-hadron collisions are not supported yet"
            )
        s_hi = min(s_max, s_collider)
        if n_out >= 3 and card.integrator.multichannel and DIAGRAM_CHANNELS:
            spaces, channels, channel_of = _diagram_channel_spaces(
                procs, beams, s_min, s_hi, hadronic, card.cuts.bwcutoff
            )
        else:
            spaces, channels, channel_of = _mapped_phase_spaces(
                procs, cuts, beams, s_min, s_max, s_hi, hadronic, card, source
            )
        scale = (
            ScaleChoice(card.scale, s_channel_core=_has_s_channel_core(procs[0]))
            if blocks is None
            else _ProductionScale(card.scale, blocks, s_channel_core=_has_s_channel_core(procs[0]))
        )
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
