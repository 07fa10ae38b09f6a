"""One ``evgen run``: card -> integration -> unweighted events -> LHE/ROOT files + summary.

:func:`prepare` resolves and checks everything a card names (process, PDF set, cuts
against the collider energy, the output folder) before any computing starts, so a bad
card fails in a second and leaves nothing behind. :func:`execute` integrates each
channel of each phase-space group with its own VEGAS grid (the channel's contribution
alpha_c f; MadGraph's multi-channel), generates weighted events with the frozen grids,
unweights them per channel (:mod:`evgen.generation`) and writes the files. The total cross
section is the sum over channels, errors in quadrature. Cross sections are in pb,
energies in GeV, times in seconds.
"""

from __future__ import annotations

import functools
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
from evgen.generation import (
    ChannelUnit,
    Sampler,
    WeightedSample,
    channel_event_counts,
    generate_channel,
)
from evgen.integrand import IntegrandValues
from evgen.integrators import Estimate, combine_estimates
from evgen.integrators.cfm import CFMConfig, CFMIntegrator
from evgen.integrators.madnis import MadNIS, MadNISConfig
from evgen.integrators.vegas import Vegas
from evgen.io.atomic import write_all_or_nothing
from evgen.io.lhe import write_lhe
from evgen.io.root import write_root
from evgen.setup import PreparedRun, prepare
from evgen.summary import write_summary

__all__ = [
    "ChannelResult",
    "Reporter",
    "RunResult",
    "SubprocessResult",
    "prepare",
    "execute",
    "run_card",
]

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


@dataclass(frozen=True)
class ChannelResult:
    """Cross section in pb of one integration channel (its contribution alpha_c f).

    Attributes:
        group: 0-based phase-space group (subprocesses with one final state).
        channel: 0-based channel of that group (``Events.channel``).
        label: the diagrams' propagators merged into it, e.g. ``"z"``.
        n_eval: integrand evaluations in its generation stage.
    """

    group: int
    channel: int
    label: str
    cross_section_pb: float
    error_pb: float
    n_events: int
    n_eval: int


@dataclass
class RunResult:
    """What a run produced: the figures of the summary table and the output files."""

    process: str
    cross_section_pb: float
    error_pb: float
    chi2_dof: float  #: the largest chi^2/dof of the channels' integrations
    integration: list[Estimate]
    subprocesses: list[SubprocessResult]
    channels: list[ChannelResult]
    n_weighted: int
    n_events: int
    unweighting_efficiency: float  #: unweighted events per integrand evaluation (<|w|>/w_max)
    max_weight_pb: float
    n_overweight: int
    overweight_fraction: float
    timings: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    integrator: str = "vegas"  #: the card's integrator.type that generated the events


class Reporter:
    """Progress hooks; the library calls them, the CLI draws them. Default: silent."""

    def stage(self, name: str) -> None:  # noqa: D102
        pass

    def iteration(  # noqa: D102
        self, group: int, i: int, n: int, estimate: Estimate, channel: str = ""
    ) -> None:
        pass

    def generation(self, group: int, n_unweighted: float, n_target: int, n_eval: int) -> None:  # noqa: D102
        pass


def _units(run: PreparedRun) -> list[ChannelUnit]:
    """Every (group, channel) pair, groups first."""
    return [
        ChannelUnit(gi, ci)
        for gi, group in enumerate(run.groups)
        for ci in range(group.integrand.n_channels)
    ]


def _integrate(
    run: PreparedRun, units: list[ChannelUnit], rep: Reporter
) -> tuple[list[Vegas], list[Estimate], list[Estimate]]:
    """Adapt one VEGAS grid per channel to its contribution alpha_c f; the first
    iterations are warm-up.

    MadGraph's survey and refine in miniature: the first iteration shares a group's
    ``points_per_iteration`` equally among its channels, later ones in proportion to each
    channel's latest estimate, at least a tenth each (one channel: all of them, always).
    """
    ic = run.card.integrator
    grids, functions, labels = [], [], []
    for unit in units:
        group = run.groups[unit.group]
        grids.append(
            Vegas(
                group.integrand.n_dim,
                n_bins=ic.bins,
                alpha=ic.alpha,
                seed=run.card.run.seed + 1000 * unit.group + 37 * unit.channel,
                device=run.device,
            )
        )
        functions.append(functools.partial(group.integrand, channel=unit.channel))
        multi = group.integrand.n_channels > 1
        labels.append(group.channels[unit.channel].label if multi else "")
    ppi = ic.points_per_iteration
    n_points = [ppi // run.groups[u.group].integrand.n_channels for u in units]
    history: list[list[Estimate]] = [[] for _ in units]
    for it in range(ic.iterations):
        for k, unit in enumerate(units):
            est = grids[k].train(functions[k], 1, n_points[k])
            history[k].append(est)
            rep.iteration(unit.group, it + 1, ic.iterations, est, labels[k])
        shares = _group_shares(units, [h[-1] for h in history])
        n_points = [max(round(ppi * share), ppi // 10) for share in shares]
    skip = int(ic.iterations * _WARMUP_FRACTION)
    estimates = [combine_estimates(h[skip:]) for h in history]
    return grids, estimates, [e for h in history for e in h]


def _group_shares(units: list[ChannelUnit], estimates: list[Estimate]) -> list[float]:
    """Each channel's share of its group's cross section (1 for a group's only channel;
    equal shares where no estimate of the group is positive)."""
    values = [max(e.value, 0.0) for e in estimates]
    shares = []
    for unit, value in zip(units, values, strict=True):
        group = [v for u, v in zip(units, values, strict=True) if u.group == unit.group]
        shares.append(value / sum(group) if sum(group) > 0 else 1.0 / len(group))
    return shares


def _shuffled_groups(
    run: PreparedRun, units: list[ChannelUnit], events: list[Events], gen: torch.Generator
) -> list[Events]:
    """Each group's events, its channels' samples joined in random order (so that any
    leading part of a file is an unbiased sample too); a single channel is kept as is."""
    out = []
    for gi in range(len(run.groups)):
        parts = [e for u, e in zip(units, events, strict=True) if u.group == gi]
        if len(parts) == 1:
            out.append(parts[0])
            continue
        joined = Events.concatenate(parts)
        order = torch.randperm(len(joined), generator=gen).to(joined.momenta.device)
        out.append(joined[order])
    return out


Learned = MadNIS | CFMIntegrator

#: Offset of a learned integrator's seeds from ``run.seed`` (networks; then generation).
_LEARNED_SEED = 5000
_STATE_NAME = "integrator_state.pt"


def _train_learned(
    run: PreparedRun, units: list[ChannelUnit], grids: list[Vegas], rep: Reporter
) -> tuple[list[Learned], list[Estimate]]:
    """One learned integrator per phase-space group, warm-started on the group's trained
    VEGAS grids (MadNIS: one per channel; CFM: the group's one grid) and trained on its
    integrand; returns them and each one's training estimate."""
    ic = run.card.integrator
    ls = ic.learned_settings
    out: list[Learned] = []
    estimates: list[Estimate] = []
    for gi, group in enumerate(run.groups):
        f = group.integrand
        group_grids = [g for u, g in zip(units, grids, strict=True) if u.group == gi]
        seed = run.card.run.seed + _LEARNED_SEED + 101 * gi
        m: Learned
        if ic.type == "madnis":
            config = MadNISConfig(
                flow_hidden=ls.hidden,
                flow_hidden_layers=ls.hidden_layers,
                cw_hidden=ls.hidden,
                cw_hidden_layers=ls.hidden_layers,
                learning_rate=ls.learning_rate,
                lr_schedule=ls.lr_schedule,
                anneal_rounds=ls.anneal_rounds,
                anneal_start=ls.anneal_start,
                **({} if ls.steps_per_round is None else {"buffered_steps": ls.steps_per_round}),
            )
            m = MadNIS(
                f.n_dim,
                f.n_channels,
                seed=seed,
                device=run.device,
                vegas=group_grids,
                loss=ls.loss,
                config=config,
            )

            def progress(i: int, est: Estimate, gi: int = gi) -> None:
                rep.iteration(gi, i + 1, ls.rounds, est)

            est = m.train(f, ls.rounds, ls.points_per_round, progress=progress)
        else:
            config = CFMConfig(
                hidden=ls.hidden,
                hidden_layers=ls.hidden_layers,
                learning_rate=ls.learning_rate,
                pretrain_steps=ls.pretrain_steps,
                **({} if ls.steps_per_round is None else {"steps_per_round": ls.steps_per_round}),
            )
            m = CFMIntegrator(f.n_dim, config, vegas=group_grids[0], seed=seed, device=run.device)
            est = m.train(f, ls.rounds, ls.points_per_round)
            for i, e in enumerate(m.history):
                rep.iteration(gi, i + 1, ls.rounds, e)
        out.append(m)
        estimates.append(est)
    return out, estimates


def _state_payload(run: PreparedRun, learned: list[Learned]) -> dict:
    return {
        "version": 1,
        "type": run.card.integrator.type,
        "process": run.card.process,
        "groups": [
            {
                "n_dim": g.integrand.n_dim,
                "n_channels": g.integrand.n_channels,
                "state": m.state_dict(),
            }
            for g, m in zip(run.groups, learned, strict=True)
        ],
    }


def _state_path(run: PreparedRun) -> Path:
    """Where the trained state goes: ``learned.save_state`` or next to the events."""
    target = run.card.integrator.learned_settings.save_state
    return Path(target) if target is not None else run.output_dir / _STATE_NAME


def _save_state(path: Path, payload: dict) -> Path:
    torch.save(payload, path)
    return path


def _load_learned(run: PreparedRun, path: Path) -> list[Learned]:
    """Rebuild the integrators of a saved state (their own settings, from the file);
    EvgenError naming ``integrator.learned.state`` if it does not fit this card."""
    where = f"{run.source}: integrator.learned.state: {str(path)!r}"
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        kind, groups = payload["type"], payload["groups"]
    except Exception as err:  # unreadable, not a state file
        raise EvgenError(f"{where}: not an evgen integrator state ({err})") from None
    ic = run.card.integrator
    if kind != ic.type or len(groups) != len(run.groups):
        raise EvgenError(
            f"{where}: saved for type {kind} with {len(groups)} phase-space group(s) "
            f"(process {payload.get('process')!r}); this card has type {ic.type} with "
            f"{len(run.groups)}"
        )
    out: list[Learned] = []
    for gi, (group, saved) in enumerate(zip(run.groups, groups, strict=True)):
        f = group.integrand
        if (saved["n_dim"], saved["n_channels"]) != (f.n_dim, f.n_channels):
            raise EvgenError(
                f"{where}: group {gi + 1} was saved with {saved['n_dim']} dimensions and "
                f"{saved['n_channels']} channels, this card's has {f.n_dim} and "
                f"{f.n_channels} (process {payload.get('process')!r})"
            )
        seed = run.card.run.seed + _LEARNED_SEED + 101 * gi
        state = saved["state"]
        m: Learned
        try:
            if kind == "madnis":
                m = MadNIS(
                    f.n_dim,
                    f.n_channels,
                    seed=seed,
                    device=run.device,
                    loss=state["loss"],
                    config=MadNISConfig(**state["config"]),
                )
            else:
                m = CFMIntegrator(
                    f.n_dim, CFMConfig.from_dict(state["config"]), seed=seed, device=run.device
                )
            m.load_state_dict(state)
        except (KeyError, TypeError, ValueError) as err:
            raise EvgenError(f"{where}: does not fit this card: {err}") from None
        out.append(m)
    return out


class _ChannelSampler:
    """Channel ``channel`` of a learned integrator as a frozen :class:`Sampler`."""

    def __init__(self, m: Learned, channel: int) -> None:
        self.m, self.channel = m, channel

    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        if isinstance(self.m, MadNIS):
            return self.m.sample_channel(self.channel, n)
        return self.m.sample(n)


def _learned_samplers(
    run: PreparedRun, units: list[ChannelUnit], learned: list[Learned]
) -> tuple[list[Sampler], list[Callable[[IntegrandValues], Tensor] | None]]:
    """Per unit: the learned sampler of its channel and, for MadNIS with several
    channels, its learned channel weight alpha_c from the computed integrand values.
    The integrators' generators are reseeded here, so a trained and a loaded state draw
    the same points."""
    for gi, m in enumerate(learned):
        m.manual_seed(run.card.run.seed + _LEARNED_SEED + 101 * gi + 1)
    samplers: list[Sampler] = []
    weights: list[Callable[[IntegrandValues], Tensor] | None] = []
    for unit in units:
        m = learned[unit.group]
        samplers.append(_ChannelSampler(m, unit.channel))
        f = run.groups[unit.group].integrand
        if isinstance(m, MadNIS) and m.n_channels > 1:

            def alpha(values: IntegrandValues, m: MadNIS = m, f=f, c: int = unit.channel):
                return m.values_channel_weights(f, values)[:, c]

            weights.append(alpha)
        else:
            weights.append(None)
    return samplers, weights


def _pilot_estimates(
    run: PreparedRun,
    units: list[ChannelUnit],
    samplers: list[Sampler],
    weighting: list[Callable[[IntegrandValues], Tensor] | None],
) -> list[Estimate]:
    """Each unit's cross section from one batch of fresh points of its frozen sampler
    (the shares that set the channels' event counts; not used for the cross sections)."""
    ls = run.card.integrator.learned_settings
    out = []
    for unit, sampler, cw in zip(units, samplers, weighting, strict=True):
        group = run.groups[unit.group]
        n = max(ls.points_per_round // group.integrand.n_channels, 100)
        r, jac = sampler.sample(n)
        values = group.integrand.evaluate(r, unit.channel)
        sample = WeightedSample()
        sample.add(values, unit.channel, jac, None if cw is None else cw(values))
        value, error, _ = sample.estimate()
        out.append(Estimate(value, error, n))
    if sum(e.value for e in out) <= 0:
        raise EvgenError(
            f"{run.source}: the cross section is zero within the cuts: no point of the "
            "learned integrator passed them; loosen the cuts"
        )
    return out


def _write_outputs(
    run: PreparedRun, events: list[Events], info: RunInfo, state: dict | None = None
) -> dict[str, Path]:
    """Write the requested files all-or-nothing: each goes to a temporary file and all are
    renamed only when every one was written; on an error none is left, nor a folder that
    this run created. ``state``: a learned integrator's state, written with them
    (:func:`_state_path`)."""
    out = run.output_dir
    card = run.card
    targets: dict[str, tuple[Path, Callable[[Path], Path]]] = {}
    if "lhe" in card.output.formats:
        name = "events.lhe.gz" if card.output.gzip else "events.lhe"
        targets["lhe"] = (out / name, lambda p: write_lhe(p, events, info, gzip=card.output.gzip))
    if "root" in card.output.formats:
        targets["root"] = (out / "events.root", lambda p: write_root(p, events, info))
    if state is not None:
        path = _state_path(run)
        targets["integrator_state"] = (path, lambda p: _save_state(p, state))
    write_all_or_nothing(targets.values(), folders=[out])
    return {kind: path for kind, (path, _) in targets.items()}


def execute(run: PreparedRun, reporter: Reporter | None = None) -> RunResult:
    """Integrate, generate, unweight and write; return the figures of the run."""
    rep = reporter or Reporter()
    card = run.card
    timings: dict[str, float] = {"setup": run.setup_seconds}
    torch.manual_seed(card.run.seed)

    ic = card.integrator
    units = _units(run)
    learned: list[Learned] = []
    state = ic.learned_settings.state if ic.type != "vegas" else None
    if state is not None:  # a trained state: no VEGAS warm-up, no training
        iterations: list[Estimate] = []
        learned = _load_learned(run, Path(state))
        chi2 = math.nan
    else:
        rep.stage("integration")
        t0 = time.perf_counter()
        grids, unit_estimates, iterations = _integrate(run, units, rep)
        timings["integration"] = time.perf_counter() - t0
        if sum(e.value for e in unit_estimates) <= 0:
            raise EvgenError(
                f"{run.source}: the cross section is zero within the cuts: no phase-space "
                "point passed them in the integration; loosen the cuts"
            )
        chi2 = max(e.chi2_dof for e in unit_estimates)
        if ic.type != "vegas":
            rep.stage("training")
            t0 = time.perf_counter()
            learned, trained = _train_learned(run, units, grids, rep)
            timings["training"] = time.perf_counter() - t0
            iterations = iterations + [e for m in learned for e in m.history]
            chi2 = max(e.chi2_dof for e in trained)

    rep.stage("generation")
    t0 = time.perf_counter()
    gen = torch.Generator(device="cpu").manual_seed(card.run.seed + 7)
    weighting: list[Callable[[IntegrandValues], Tensor] | None] = [None] * len(units)
    if learned:
        samplers, weighting = _learned_samplers(run, units, learned)
        if len(units) > 1:  # the channels' shares, from fresh points of the frozen samplers
            unit_estimates = _pilot_estimates(run, units, samplers, weighting)
        else:
            unit_estimates = [Estimate(1.0, 0.0, 0)]
    else:
        samplers = list(grids)
    targets = channel_event_counts(card.run.nevents, unit_estimates, gen)
    samples, unit_events, efficiencies, unweightings = [], [], [], []
    for unit, vegas, cw, target, share in zip(
        units, samplers, weighting, targets, _group_shares(units, unit_estimates), strict=True
    ):
        sample, events, eff, res = generate_channel(
            run.groups[unit.group],
            unit,
            vegas,
            target,
            channel_weight=cw,
            # batches in proportion to the channel's share of its group (at least 1%)
            batch_size=max(round(ic.batch_size * share), ic.batch_size // 100, 2),
            max_weight_loss=ic.max_weight_loss,
            alpha_qed=run.params.alpha_ew,
            generator=gen,
            progress=functools.partial(rep.generation, unit.group),
        )
        samples.append(sample)
        unit_events.append(events)
        efficiencies.append(eff)
        if res is not None:
            unweightings.append(res)
    timings["generation"] = time.perf_counter() - t0

    # Cross sections from the generation samples: frozen grids, so unbiased. A group's
    # subprocess cross section is the sum over its channels, errors in quadrature.
    channel_results: list[ChannelResult] = []
    sub_sums: dict[int, list[float]] = {}  # process id -> [value, variance]
    for unit, sample, events in zip(units, samples, unit_events, strict=True):
        group = run.groups[unit.group]
        total, err, per = sample.estimate()
        label = group.channels[unit.channel].label
        channel_results.append(
            ChannelResult(unit.group, unit.channel, label, total, err, len(events), sample.n_eval)
        )
        for pid, (v, e) in zip(group.process_ids, per, strict=True):
            acc = sub_sums.setdefault(pid, [0.0, 0.0])
            acc[0] += v
            acc[1] += e**2
    xs = sum(c.cross_section_pb for c in channel_results)
    var = sum(c.error_pb**2 for c in channel_results)
    group_events = _shuffled_groups(run, units, unit_events, gen)
    sub_results: list[SubprocessResult] = []
    for group, events in zip(run.groups, group_events, strict=True):
        for pid, proc in zip(group.process_ids, group.subprocesses, strict=True):
            v, v2 = sub_sums[pid]
            n_ev = int((events.process_id == pid).sum())
            sub_results.append(SubprocessResult(pid, proc.name, v, math.sqrt(v2), n_ev))
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
    state = _state_payload(run, learned) if learned else None
    paths = _write_outputs(run, [e.to("cpu") for e in group_events], info, state)
    timings["output"] = time.perf_counter() - t0

    result = RunResult(
        process=card.process,
        cross_section_pb=xs,
        error_pb=math.sqrt(var),
        chi2_dof=chi2,
        integration=iterations,
        subprocesses=sub_results,
        channels=channel_results,
        n_weighted=n_weighted,
        n_events=n_events,
        unweighting_efficiency=sum(e * s.n_eval for e, s in zip(efficiencies, samples, strict=True))
        / n_weighted,
        max_weight_pb=max((r.max_weight for r in unweightings), default=0.0),
        n_overweight=sum(r.n_overweight for r in unweightings),
        overweight_fraction=max((r.overweight_fraction_xs for r in unweightings), default=0.0),
        timings=timings,
        outputs={k: str(p) for k, p in paths.items()},
        integrator=ic.type,
    )
    result.outputs["summary"] = str(run.output_dir / "summary.json")
    write_summary(run.output_dir / "summary.json", result)
    return result


def run_card(
    card: RunCard, card_text: str = "", source: str = "<card>", reporter: Reporter | None = None
) -> RunResult:
    """prepare + execute; convenience for tests and scripts."""
    return execute(prepare(card, card_text, source), reporter)
