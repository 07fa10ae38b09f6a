"""One ``evgen run``: card -> integration -> unweighted events -> LHE/ROOT files + summary.

:func:`prepare` resolves and checks everything a card names (process, PDF set, cuts
against the collider energy, the output folder) before any computing starts, so a bad
card fails in a second and leaves nothing behind. :func:`execute` integrates each
phase-space group with VEGAS, generates weighted events with the frozen grid, unweights
them and writes the files. Cross sections are in pb, energies in GeV, times in seconds.
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
from evgen.card import RunCard
from evgen.cuts import Cuts
from evgen.errors import CardError, EvgenError, PDFError, ProcessError
from evgen.events import Events, ProcessInfo, RunInfo
from evgen.integrand import Integrand
from evgen.integrators import Estimate, combine_estimates
from evgen.integrators.vegas import Vegas
from evgen.params import SMParameters
from evgen.pdf import PDFSet, load_pdf
from evgen.phasespace import HadronicPhaseSpace, LeptonicPhaseSpace
from evgen.scales import ScaleChoice
from evgen.summary import write_summary
from evgen.unweight import find_max_weight, unweight
from processes.base import Process

__all__ = ["PreparedRun", "PhaseSpaceGroup", "RunResult", "SubprocessResult", "prepare", "execute"]

#: Integration iterations whose estimates are dropped as grid warm-up (VEGAS practice).
_WARMUP_FRACTION = 1 / 3


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

    @property
    def subprocesses(self) -> list[Process]:
        return [p for g in self.groups for p in g.subprocesses]


@dataclass(frozen=True)
class SubprocessResult:
    """Cross section of one subprocess in pb (LHE IDPRUP = process_id)."""

    process_id: int
    name: str
    cross_section_pb: float
    error_pb: float
    n_events: int


@dataclass
class RunResult:
    """What a run produced: the figures of the summary table and the output files."""

    process: str
    cross_section_pb: float
    error_pb: float
    chi2_dof: float
    integration: list[Estimate]
    subprocesses: list[SubprocessResult]
    n_weighted: int
    n_events: int
    unweighting_efficiency: float
    max_weight_pb: float
    n_overweight: int
    overweight_fraction: float
    timings: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)


class Reporter:
    """Progress hooks; the library calls them, the CLI draws them. Default: silent."""

    def stage(self, name: str) -> None:  # noqa: D102
        pass

    def iteration(self, group: int, i: int, n: int, estimate: Estimate) -> None:  # noqa: D102
        pass

    def generation(self, group: int, n_unweighted: float, n_target: int, n_eval: int) -> None:  # noqa: D102
        pass


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
    )


@dataclass
class _Sample:
    """Weighted events of one group kept for unweighting (non-zero weights only)."""

    momenta: list[Tensor] = field(default_factory=list)
    sub_weights: list[Tensor] = field(default_factory=list)
    mu_f: list[Tensor] = field(default_factory=list)
    alpha_s: list[Tensor] = field(default_factory=list)
    n_eval: int = 0
    sum_w: Tensor | None = None  # per subprocess
    sum_w2: Tensor | None = None  # per subprocess
    sum_wtot2: float = 0.0

    def add(self, values, jac: Tensor) -> None:  # values: IntegrandValues
        sub = values.sub_weights * jac.unsqueeze(1)
        w = sub.sum(dim=1)
        self.n_eval += w.shape[0]
        s1, s2 = sub.sum(dim=0), (sub**2).sum(dim=0)
        self.sum_w = s1 if self.sum_w is None else self.sum_w + s1
        self.sum_w2 = s2 if self.sum_w2 is None else self.sum_w2 + s2
        self.sum_wtot2 += float((w**2).sum())
        keep = w != 0
        self.momenta.append(values.momenta[keep])
        self.sub_weights.append(sub[keep])
        self.mu_f.append(values.mu_f[keep])
        self.alpha_s.append(values.alpha_s[keep])

    def weights(self) -> Tensor:
        return torch.cat(self.sub_weights).sum(dim=1)

    def estimate(self) -> tuple[float, float, list[tuple[float, float]]]:
        """Total and per-subprocess (mean, error) in pb."""
        assert self.sum_w is not None and self.sum_w2 is not None
        n = self.n_eval
        total = float(self.sum_w.sum()) / n
        var = max(self.sum_wtot2 / n - total**2, 0.0) / max(n - 1, 1)
        per = [
            (
                float(s1) / n,
                math.sqrt(max(float(s2) / n - (float(s1) / n) ** 2, 0.0) / max(n - 1, 1)),
            )
            for s1, s2 in zip(self.sum_w, self.sum_w2, strict=True)
        ]
        return total, math.sqrt(var), per


def _build_events(
    group: PhaseSpaceGroup, sample: _Sample, alpha_qed: float, generator: torch.Generator
) -> Events:
    """Weighted Events with a subprocess and a colour flow drawn per event."""
    p = torch.cat(sample.momenta)
    sub = torch.cat(sample.sub_weights)
    n, n_ext = p.shape[0], p.shape[1]
    dev = p.device
    probs = sub.abs() / sub.abs().sum(dim=1, keepdim=True)
    choice = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    pdg = torch.zeros(n, n_ext, dtype=torch.int64, device=dev)
    colours = torch.zeros(n, n_ext, 2, dtype=torch.int64, device=dev)
    masses = torch.zeros(n, n_ext, dtype=p.dtype, device=dev)
    u = torch.rand(n, generator=generator, dtype=p.dtype, device=generator.device).to(dev)
    for k, proc in enumerate(group.subprocesses):
        sel = choice == k
        if not bool(sel.any()):
            continue
        pdg[sel] = torch.tensor(proc.pdg_ids, dtype=torch.int64, device=dev)
        masses[sel] = torch.tensor(proc.masses, dtype=p.dtype, device=dev)
        colours[sel] = proc.colour_flow(p[sel], u[sel]).to(dev)
    status = torch.ones(n, n_ext, dtype=torch.int64, device=dev)
    status[:, :2] = -1
    mothers = torch.zeros(n, n_ext, 2, dtype=torch.int64, device=dev)
    mothers[:, 2:, 0] = 1
    mothers[:, 2:, 1] = 2
    ids = torch.tensor(group.process_ids, dtype=torch.int64, device=dev)
    return Events(
        momenta=p,
        pdg=pdg,
        status=status,
        mothers=mothers,
        colours=colours,
        masses=masses,
        spins=torch.full((n, n_ext), 9.0, dtype=p.dtype, device=dev),
        weights=sub.sum(dim=1),
        process_id=ids[choice],
        scale=torch.cat(sample.mu_f),
        alpha_s=torch.cat(sample.alpha_s),
        alpha_qed=torch.full((n,), alpha_qed, dtype=p.dtype, device=dev),
        channel=torch.zeros(n, dtype=torch.int64, device=dev),
    )


def execute(run: PreparedRun, reporter: Reporter | None = None) -> RunResult:
    """Integrate, generate, unweight and write; return the figures of the run."""
    from evgen.io.lhe import write_lhe
    from evgen.io.root import write_root

    rep = reporter or Reporter()
    card = run.card
    ic = card.integrator
    timings: dict[str, float] = {}
    torch.manual_seed(card.run.seed)

    # --- integration: adapt one VEGAS grid per phase-space group
    rep.stage("integration")
    t0 = time.perf_counter()
    integrators: list[Vegas] = []
    group_estimates: list[Estimate] = []
    all_iterations: list[Estimate] = []
    for gi, group in enumerate(run.groups):
        vegas = Vegas(
            group.integrand.n_dim,
            n_bins=ic.bins,
            alpha=ic.alpha,
            seed=card.run.seed + 1000 * gi,
            device=run.device,
        )
        iters = []
        for it in range(ic.iterations):
            est = vegas.train(group.integrand, 1, ic.points_per_iteration)
            iters.append(est)
            rep.iteration(gi, it + 1, ic.iterations, est)
        skip = int(len(iters) * _WARMUP_FRACTION)
        group_estimates.append(combine_estimates(iters[skip:]))
        all_iterations.extend(iters)
        integrators.append(vegas)
    timings["integration"] = time.perf_counter() - t0
    total_train = sum(e.value for e in group_estimates)
    if total_train <= 0:
        raise EvgenError(
            f"{run.source}: the cross section is zero within the cuts: no phase-space point "
            "passed them in the integration; loosen the cuts"
        )

    # --- generation: weighted events with the frozen grid, until the unweighted yield suffices
    rep.stage("generation")
    t0 = time.perf_counter()
    gen = torch.Generator(device="cpu").manual_seed(card.run.seed + 7)
    n_total = card.run.nevents
    shares = [max(e.value, 0.0) / total_train for e in group_estimates]
    targets = [round(n_total * s) for s in shares]
    targets[max(range(len(targets)), key=lambda i: shares[i])] += n_total - sum(targets)
    alpha_qed = run.params.alpha_ew
    samples: list[_Sample] = []
    group_events: list[Events] = []
    unw_stats = []
    max_batches = 400
    for gi, (group, vegas) in enumerate(zip(run.groups, integrators, strict=True)):
        sample = _Sample()
        target = targets[gi]
        batches = 0
        while True:
            r, jac = vegas.sample(ic.batch_size)
            sample.add(group.integrand.evaluate(r), jac)
            batches += 1
            w = sample.weights()
            wmax = find_max_weight(w.abs(), max_loss=ic.max_weight_loss) if w.numel() else 0.0
            expected = float(w.abs().sum()) / wmax if wmax > 0 else 0.0
            rep.generation(gi, min(expected, target), target, sample.n_eval)
            if target == 0 or expected >= 1.05 * target + 5:
                events = _build_events(group, sample, alpha_qed, gen)
                res = unweight(events, generator=gen, max_loss=ic.max_weight_loss)
                if len(res.events) >= target:
                    group_events.append(res.events[:target])
                    unw_stats.append(res)
                    break
            if batches >= max_batches:
                raise EvgenError(
                    f"could not generate {target} unweighted events for "
                    f"{group.subprocesses[0].name} after {sample.n_eval} evaluations "
                    "(unweighting efficiency too low); raise integrator.iterations"
                )
        samples.append(sample)
    timings["generation"] = time.perf_counter() - t0

    # --- cross sections from the generation samples (frozen grids: unbiased)
    sub_results: list[SubprocessResult] = []
    xs, var = 0.0, 0.0
    infos: list[ProcessInfo] = []
    for group, sample, events in zip(run.groups, samples, group_events, strict=True):
        total, err, per = sample.estimate()
        xs += total
        var += err**2
        for pid, proc, (v, e) in zip(group.process_ids, group.subprocesses, per, strict=True):
            n_ev = int((events.process_id == pid).sum())
            sub_results.append(SubprocessResult(pid, proc.name, v, e, n_ev))
    xs_err = math.sqrt(var)
    n_events = sum(len(e) for e in group_events)
    event_weight = xs / n_events
    for events in group_events:
        events.weights = torch.sign(events.weights) * event_weight
    for s in sub_results:
        infos.append(
            ProcessInfo(s.process_id, s.name, s.cross_section_pb, s.error_pb, event_weight)
        )

    # --- output
    rep.stage("output")
    t0 = time.perf_counter()
    beams = run.beams
    lhaid = run.pdf.lhapdf_id if run.pdf is not None else 0
    info = RunInfo(
        beam_pdg=(beams[0].pdg, beams[1].pdg),
        beam_energy=(beams[0].energy, beams[1].energy),
        pdf_group=(0, 0),
        pdf_id=(lhaid if beams[0].is_hadron else 0, lhaid if beams[1].is_hadron else 0),
        weighting=3,
        processes=tuple(infos),
        card_text=run.card_text,
        seed=card.run.seed,
    )
    outputs: dict[str, str] = {}
    cpu_events = [e.to("cpu") for e in group_events]
    out = run.output_dir
    out.mkdir(parents=True, exist_ok=True)
    if "lhe" in card.output.formats:
        name = "events.lhe.gz" if card.output.gzip else "events.lhe"
        outputs["lhe"] = str(write_lhe(out / name, cpu_events, info))
    if "root" in card.output.formats:
        outputs["root"] = str(write_root(out / "events.root", cpu_events, info))
    timings["output"] = time.perf_counter() - t0

    n_weighted = sum(s.n_eval for s in samples)
    result = RunResult(
        process=card.process,
        cross_section_pb=xs,
        error_pb=xs_err,
        chi2_dof=(
            combine_estimates(group_estimates).chi2_dof
            if len(group_estimates) > 1
            else group_estimates[0].chi2_dof
        ),
        integration=all_iterations,
        subprocesses=sub_results,
        n_weighted=n_weighted,
        n_events=n_events,
        unweighting_efficiency=sum(r.efficiency for r in unw_stats) / len(unw_stats),
        max_weight_pb=max(r.max_weight for r in unw_stats),
        n_overweight=sum(r.n_overweight for r in unw_stats),
        overweight_fraction=max(r.overweight_fraction_xs for r in unw_stats),
        timings=timings,
        outputs=outputs,
    )
    if "summary" not in outputs:
        outputs["summary"] = str(write_summary(out / "summary.json", result, timings))
    return result


def run_card(
    card: RunCard, card_text: str = "", source: str = "<card>", reporter: Reporter | None = None
) -> RunResult:
    """prepare + execute; convenience for tests and scripts."""
    return execute(prepare(card, card_text, source), reporter)
