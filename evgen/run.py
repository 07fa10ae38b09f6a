"""One ``evgen run``: card -> integration -> unweighted events -> LHE/ROOT files + summary.

:func:`prepare` resolves and checks everything a card names (process, PDF set, cuts
against the collider energy, the output folder) before any computing starts, so a bad
card fails in a second and leaves nothing behind. :func:`execute` integrates each
phase-space group with VEGAS, generates weighted events with the frozen grid, unweights
them and writes the files. Cross sections are in pb, energies in GeV, times in seconds.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from evgen.card import RunCard
from evgen.errors import EvgenError
from evgen.events import Events, ProcessInfo, RunInfo
from evgen.integrators import Estimate, combine_estimates
from evgen.integrators.vegas import Vegas
from evgen.io.atomic import atomic_output
from evgen.io.lhe import write_lhe
from evgen.io.root import write_root
from evgen.setup import PhaseSpaceGroup, PreparedRun, prepare
from evgen.summary import write_summary
from evgen.unweight import UnweightingResult, find_max_weight, unweight

__all__ = ["Reporter", "RunResult", "SubprocessResult", "prepare", "execute", "run_card"]

#: Integration iterations whose estimates are dropped as grid warm-up (VEGAS practice).
_WARMUP_FRACTION = 1 / 3


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
    chi2_dof: float  #: the largest chi^2/dof of the groups' integrations
    integration: list[Estimate]
    subprocesses: list[SubprocessResult]
    n_weighted: int
    n_events: int
    unweighting_efficiency: float  #: unweighted events per integrand evaluation (<|w|>/w_max)
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


def _integrate(run: PreparedRun, rep: Reporter) -> tuple[list[Vegas], list[Estimate], list]:
    """Adapt one VEGAS grid per phase-space group; the first iterations are warm-up."""
    ic = run.card.integrator
    integrators, estimates, iterations = [], [], []
    for gi, group in enumerate(run.groups):
        vegas = Vegas(
            group.integrand.n_dim,
            n_bins=ic.bins,
            alpha=ic.alpha,
            seed=run.card.run.seed + 1000 * gi,
            device=run.device,
        )
        iters = []
        for it in range(ic.iterations):
            est = vegas.train(group.integrand, 1, ic.points_per_iteration)
            iters.append(est)
            rep.iteration(gi, it + 1, ic.iterations, est)
        estimates.append(combine_estimates(iters[int(len(iters) * _WARMUP_FRACTION) :]))
        iterations.extend(iters)
        integrators.append(vegas)
    return integrators, estimates, iterations


def _event_targets(n_total: int, estimates: list[Estimate]) -> list[int]:
    """Unweighted events per group, in proportion to the groups' cross sections."""
    total = sum(max(e.value, 0.0) for e in estimates)
    shares = [max(e.value, 0.0) / total for e in estimates]
    targets = [round(n_total * s) for s in shares]
    targets[max(range(len(targets)), key=lambda i: shares[i])] += n_total - sum(targets)
    return targets


def _generate(
    run: PreparedRun,
    group: PhaseSpaceGroup,
    gi: int,
    vegas: Vegas,
    target: int,
    gen: torch.Generator,
    rep: Reporter,
) -> tuple[_Sample, Events, float, UnweightingResult]:
    """Weighted events from the frozen grid until ``target`` unweighted ones are drawn.

    Returns the weighted sample (for the cross section), the unweighted events, and the
    unweighting efficiency: expected unweighted events per evaluation, sum|w| / (w_max N).
    """
    ic = run.card.integrator
    sample = _Sample()
    max_batches = 400
    for _ in range(max_batches):
        r, jac = vegas.sample(ic.batch_size)
        sample.add(group.integrand.evaluate(r), jac)
        w = sample.weights().abs()
        wmax = find_max_weight(w, max_loss=ic.max_weight_loss) if w.numel() else 0.0
        expected = float(w.sum()) / wmax if wmax > 0 else 0.0
        rep.generation(gi, min(expected, target), target, sample.n_eval)
        if target == 0 or expected >= 1.05 * target + 5:
            events = _build_events(group, sample, run.params.alpha_ew, gen)
            res = unweight(events, max_weight=wmax, generator=gen)
            if len(res.events) >= target:
                return sample, res.events[:target], expected / sample.n_eval, res
    raise EvgenError(
        f"could not generate {target} unweighted events for {group.subprocesses[0].name} "
        f"in {sample.n_eval} evaluations (unweighting efficiency too low); "
        "raise integrator.iterations or integrator.points_per_iteration"
    )


def _write_outputs(run: PreparedRun, events: list[Events], info: RunInfo) -> dict[str, Path]:
    """Write the requested files all-or-nothing: each goes to a temporary file and all are
    renamed only when every one was written; on an error none is left, nor a folder that
    this run created."""
    out = run.output_dir
    card = run.card
    targets: dict[str, tuple[Path, Callable[[Path], Path]]] = {}
    if "lhe" in card.output.formats:
        name = "events.lhe.gz" if card.output.gzip else "events.lhe"
        targets["lhe"] = (out / name, lambda p: write_lhe(p, events, info, gzip=card.output.gzip))
    if "root" in card.output.formats:
        targets["root"] = (out / "events.root", lambda p: write_root(p, events, info))
    created = [d for d in (out, *out.parents) if not d.exists()]
    out.mkdir(parents=True, exist_ok=True)
    try:
        with contextlib.ExitStack() as stack:
            for path, writer in targets.values():
                tmp = stack.enter_context(atomic_output(path))
                writer(tmp)
    except BaseException:
        for d in created:  # innermost first
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    return {kind: path for kind, (path, _) in targets.items()}


def execute(run: PreparedRun, reporter: Reporter | None = None) -> RunResult:
    """Integrate, generate, unweight and write; return the figures of the run."""
    rep = reporter or Reporter()
    card = run.card
    timings: dict[str, float] = {"setup": run.setup_seconds}
    torch.manual_seed(card.run.seed)

    rep.stage("integration")
    t0 = time.perf_counter()
    integrators, group_estimates, iterations = _integrate(run, rep)
    timings["integration"] = time.perf_counter() - t0
    if sum(e.value for e in group_estimates) <= 0:
        raise EvgenError(
            f"{run.source}: the cross section is zero within the cuts: no phase-space point "
            "passed them in the integration; loosen the cuts"
        )

    rep.stage("generation")
    t0 = time.perf_counter()
    gen = torch.Generator(device="cpu").manual_seed(card.run.seed + 7)
    targets = _event_targets(card.run.nevents, group_estimates)
    samples, group_events, efficiencies, unweightings = [], [], [], []
    for gi, (group, vegas) in enumerate(zip(run.groups, integrators, strict=True)):
        sample, events, eff, res = _generate(run, group, gi, vegas, targets[gi], gen, rep)
        samples.append(sample)
        group_events.append(events)
        efficiencies.append(eff)
        unweightings.append(res)
    timings["generation"] = time.perf_counter() - t0

    # Cross sections from the generation samples: frozen grids, so unbiased.
    sub_results: list[SubprocessResult] = []
    xs, var = 0.0, 0.0
    for group, sample, events in zip(run.groups, samples, group_events, strict=True):
        total, err, per = sample.estimate()
        xs += total
        var += err**2
        for pid, proc, (v, e) in zip(group.process_ids, group.subprocesses, per, strict=True):
            n_ev = int((events.process_id == pid).sum())
            sub_results.append(SubprocessResult(pid, proc.name, v, e, n_ev))
    n_events = sum(len(e) for e in group_events)
    # Unweighted events share one weight, sigma/N in pb (LHE IDWTUP = 3): they sum to sigma.
    event_weight = xs / n_events
    for events in group_events:
        events.weights = torch.sign(events.weights) * event_weight
    n_weighted = sum(s.n_eval for s in samples)

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
        processes=tuple(
            ProcessInfo(s.process_id, s.name, s.cross_section_pb, s.error_pb, event_weight)
            for s in sub_results
        ),
        card_text=run.card_text,
        seed=card.run.seed,
    )
    paths = _write_outputs(run, [e.to("cpu") for e in group_events], info)
    timings["output"] = time.perf_counter() - t0

    result = RunResult(
        process=card.process,
        cross_section_pb=xs,
        error_pb=math.sqrt(var),
        chi2_dof=max(e.chi2_dof for e in group_estimates),
        integration=iterations,
        subprocesses=sub_results,
        n_weighted=n_weighted,
        n_events=n_events,
        unweighting_efficiency=sum(e * s.n_eval for e, s in zip(efficiencies, samples, strict=True))
        / n_weighted,
        max_weight_pb=max(r.max_weight for r in unweightings),
        n_overweight=sum(r.n_overweight for r in unweightings),
        overweight_fraction=max(r.overweight_fraction_xs for r in unweightings),
        timings=timings,
        outputs={k: str(p) for k, p in paths.items()},
    )
    result.outputs["summary"] = str(run.output_dir / "summary.json")
    write_summary(run.output_dir / "summary.json", result)
    return result


def run_card(
    card: RunCard, card_text: str = "", source: str = "<card>", reporter: Reporter | None = None
) -> RunResult:
    """prepare + execute; convenience for tests and scripts."""
    return execute(prepare(card, card_text, source), reporter)
