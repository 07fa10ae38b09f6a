"""From a validated card to a runnable set-up, with every check done before computing.

:func:`prepare` resolves what a card names (process and its partonic subprocesses, beams,
PDF set, alpha_s, scales, cuts, phase space) and checks it against the collider (cuts
and masses against sqrt(s)) and the file system (the output folder), so a bad card fails
in a second with a :class:`~evgen.errors.CardError` naming the key, and nothing is written.
Subprocesses with the same outgoing masses share one phase-space mapping and one
integrator (a :class:`PhaseSpaceGroup`). Energies in GeV.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
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
from processes.base import Process

__all__ = ["PreparedRun", "PhaseSpaceGroup", "prepare"]


@dataclass
class PhaseSpaceGroup:
    """Subprocesses that share one phase-space mapping and one integrator."""

    subprocesses: list[Process]
    process_ids: list[int]
    integrand: Integrand


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
        params = SMParameters().with_overrides(**card.model.overrides())
        _ = params.mw
    except ValueError as err:
        raise CardError(f"{source}: {err}") from None

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
        if all(b.is_hadron for b in beams):
            ps: HadronicPhaseSpace | LeptonicPhaseSpace = HadronicPhaseSpace(
                beams[0].energy,
                beams[1].energy,
                masses,
                s_hat_min=s_min,
                s_hat_max=None if math.isinf(s_max) else min(s_max, s_collider),
                resonance=_resonance(procs, n_out),
            )
        elif not any(b.is_hadron for b in beams):
            ps = LeptonicPhaseSpace(beams[0].energy, beams[1].energy, masses)
        else:
            raise CardError(
                f"{source}: beams.particles: lepton-hadron collisions are not supported yet"
            )
        scale = ScaleChoice(card.scale, s_channel_core=_has_s_channel_core(procs[0]))
        integrand = Integrand(procs, ps, beams, pdf, alpha_s, scale, cuts)
        groups.append(PhaseSpaceGroup(procs, [i for i, _ in members], integrand))

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
