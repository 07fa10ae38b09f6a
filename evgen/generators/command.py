"""``evgen train-generator`` and ``evgen generate``: the command-line side of generators.

``evgen train-generator CARD --events events.root [--output model.pt]`` reads the
unweighted events an ``evgen run`` of CARD wrote (:func:`evgen.io.root.read_root`),
trains a Bayesian (or ensemble) flow-matching generator on them
(:func:`~evgen.generators.model.train_generator`) and writes the model file.

Cross section. It is taken from the events file's ``run`` tree (the per-subprocess
cross sections ``evgen run`` wrote next to the events, summed; errors in quadrature):
the number travels with the events it describes, so no second file (the run's
``summary.json``) has to be found or kept in step. The events file's card must name
the same process and beams as CARD.

``evgen generate MODEL -n N [--seed S] [--output DIR] [--weight-samples K]
[--reweight TRUTH.root]`` samples N events and writes them as ``evgen run`` does
(``events.lhe``, ``events.root``; unweighted, weights sigma / N in pb, IDWTUP 3), the
flavours and colour flows drawn from the card's matrix elements
(:mod:`evgen.generators.colour`). ``--weight-samples K`` adds ``weight_samples.json``:
histograms of the standard observables (:mod:`evgen.generators.observables`) for each
of K network-weight samples, their mean and spread (the error band). ``--reweight
TRUTH.root`` trains the classifier between the truth events and the generated ones
(:mod:`evgen.generators.reweighting`) and writes ``reweighted/weighted.root`` (weights
w sigma / N), ``reweighted/events.lhe`` and ``reweighted/events.root`` (unweighted with
:func:`evgen.unweight.unweight`), ``reweighted/reweighting.json`` (weight distribution,
tails, clipping, calibration, AUC before and after, slices) and ``plots/`` (PNG).

Every input is checked before anything is computed or written (N, the model file, the
card, the truth file and its branches, the output folder); all outputs are written
all-or-nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from evgen.card import RunCard, load_card, parse_card
from evgen.errors import CardError
from evgen.events import Events, ProcessInfo, RunInfo
from evgen.generators.colour import assign_flavours_and_colours, subprocess_table
from evgen.generators.model import GeneratorConfig, GeneratorModel, train_generator
from evgen.generators.observables import compute_observables, histogram_edges
from evgen.generators.preprocessing import GeneratorError, PreprocessingConfig
from evgen.generators.reweighting import (
    ReweightingConfig,
    ReweightingResult,
    classifier_reweighting,
)
from evgen.io.atomic import write_all_or_nothing
from evgen.io.lhe import write_lhe
from evgen.io.root import EVENT_BRANCHES, PARTICLE_BRANCHES, read_root, write_root
from evgen.ml.training import TrainingProgress
from evgen.setup import PreparedRun, prepare
from evgen.unweight import find_max_weight, unweight

__all__ = [
    "GenerateResult",
    "TrainResult",
    "add_parsers",
    "main",
    "read_events",
    "run_generate",
    "run_train_generator",
]


# ---------------------------------------------------------------------------- inputs


def read_events(path: str | Path) -> tuple[list[Events], dict[str, Any]]:
    """Events and metadata of an evgen ROOT file, every needed branch checked first.

    Returns:
        (batches, metadata) as :func:`~evgen.io.root.read_root`, batches always a list.

    Raises:
        GeneratorError: missing or unreadable file, no ``events`` tree, missing
            branches (named), or no events.
    """
    import uproot

    path = Path(path)
    if not path.is_file():
        raise GeneratorError(f"events file {path} does not exist")
    try:
        with uproot.open(path) as file:
            if "events" not in file:
                raise GeneratorError(f"events file {path} has no 'events' tree (not evgen events)")
            keys = set(file["events"].keys())
    except GeneratorError:
        raise
    except Exception as error:  # uproot raises many kinds
        raise GeneratorError(f"cannot read events file {path}: not a ROOT file ({error})") from None
    needed = ["n_particles", *(f"particle_{b}" for b in PARTICLE_BRANCHES), *EVENT_BRANCHES]
    missing = [b for b in needed if b not in keys]
    if missing:
        raise GeneratorError(
            f"events file {path}: tree 'events' lacks the branches {missing} "
            "(write events with evgen run)"
        )
    events, metadata = read_root(path)
    batches = [events] if isinstance(events, Events) else list(events)
    if sum(len(b) for b in batches) == 0:
        raise GeneratorError(f"events file {path} holds no events")
    return batches, metadata


def _cross_section(path: Path, metadata: dict[str, Any]) -> tuple[float, float]:
    processes = metadata.get("processes") or {}
    xs = processes.get("cross_section_pb")
    if not xs:
        raise GeneratorError(
            f"events file {path} has no 'run' tree with cross sections (write events with "
            "evgen run)"
        )
    total = float(sum(xs))
    error = math.sqrt(sum(float(e) ** 2 for e in processes.get("error_pb", [0.0])))
    if not (math.isfinite(total) and total > 0):
        raise GeneratorError(f"events file {path}: cross section {total} pb is not positive")
    return total, error


def _check_card_matches(card: RunCard, card_path: str, path: Path, metadata: dict) -> None:
    text = metadata.get("card") or ""
    try:
        data = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        return  # events without a card: nothing to compare
    process = data.get("process")
    if process is not None and str(process).split() != card.process.split():
        raise GeneratorError(
            f"events file {path} holds events of process {process!r}, but the card "
            f"{card_path} is for {card.process!r}"
        )
    beams = data.get("beams") or {}
    energies = beams.get("energies")
    if energies is not None and [float(e) for e in energies] != list(card.beams.energies):
        raise GeneratorError(
            f"events file {path}: beam energies {energies} GeV differ from the card "
            f"{card_path} ({list(card.beams.energies)})"
        )


# ---------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """What ``evgen train-generator`` did."""

    model_path: Path
    n_events: int
    topologies: list[str]
    cross_section_pb: float
    error_pb: float
    steps: int
    elapsed_s: float
    final_loss: float


def run_train_generator(
    card_path: str | Path,
    events_path: str | Path,
    output: str | Path,
    config: GeneratorConfig,
    callback: Callable[[TrainingProgress], bool | None] | None = None,
    resonance_pdgs: Sequence[int] = (),
) -> TrainResult:
    """Train a generator on an ``evgen run``'s events and write the model file.

    ``resonance_pdgs``: the PDG id of each resonance pair's parent, in the order of
    ``config.preprocessing.resonances``; its mass and width (the card's model) and the
    card's window on the pair give the pair's Breit-Wigner mass map
    (:func:`resonance_mass_maps`).

    Raises:
        CardError: a bad card. GeneratorError: bad events, a card that does not match the
            events, or weighted events. OutputError: the model file cannot be written.
    """
    card, _ = load_card(card_path)
    path = Path(events_path)
    batches, metadata = read_events(path)
    _check_card_matches(card, str(card_path), path, metadata)
    xs, err = _cross_section(path, metadata)
    output = Path(output)
    if output.is_dir():
        raise GeneratorError(f"--output {output} is a folder; give a model file name")
    if not output.parent.is_dir():
        raise GeneratorError(f"--output {output}: folder {output.parent} does not exist")
    if resonance_pdgs:
        maps = resonance_mass_maps(card, config.preprocessing.resonances, resonance_pdgs, batches)
        config = replace(config, preprocessing=replace(config.preprocessing, mass_maps=maps))
    model = train_generator(
        batches,
        config,
        cross_section_pb=xs,
        process_card=card.model_dump(mode="json"),
        beam_energy_gev=(float(card.beams.energies[0]), float(card.beams.energies[1])),
        callback=callback,
    )
    model.training["cross_section_error_pb"] = err
    model.training["events_file"] = str(path)
    model.save(output)
    return TrainResult(
        model_path=output,
        n_events=int(model.training["n_events"]),
        topologies=[t.label() for t in model.preprocessing.topologies],
        cross_section_pb=xs,
        error_pb=err,
        steps=int(model.training["steps"]),
        elapsed_s=float(model.training["elapsed_s"]),
        final_loss=float(model.training["final_loss"]),
    )


def resonance_mass_maps(
    card: RunCard,
    pairs: Sequence[tuple[int, int]],
    pdgs: Sequence[int],
    batches: Sequence[Events],
) -> tuple[tuple[float, float, float, float], ...]:
    """(M, Gamma, low, high) in GeV of each resonance pair's mass map
    (:attr:`~evgen.generators.PreprocessingConfig.mass_maps`).

    M and Gamma are the card model's for the parent ``pdgs[i]``; the window is the card's
    ``mmll``/``mmllmax`` when the pair is a same-flavour opposite-sign charged-lepton
    pair in the training events (those cuts apply to it), else (0, sqrt(s)).

    Raises:
        GeneratorError: more PDG ids than pairs, or a parent without mass or width.
    """
    from evgen.cuts import LEPTON_IDS

    if len(pdgs) > len(pairs):
        raise GeneratorError(
            f"--resonance-pdg: {len(pdgs)} PDG ids for {len(pairs)} --resonance pairs"
        )
    params = card.model.parameters()
    sqrt_s = 2.0 * math.sqrt(float(card.beams.energies[0]) * float(card.beams.energies[1]))
    first = batches[0]
    stable = [i for i, st in enumerate(first.status[0].tolist()) if st == 1]
    maps = []
    for (a, b), pdg in zip(pairs, pdgs, strict=False):
        mass, width = params.mass(pdg), params.width(pdg)
        if not (mass > 0 and width > 0):
            raise GeneratorError(
                f"--resonance-pdg {pdg}: needs a particle with a mass and a width in the "
                f"card's model, got M = {mass} GeV, Gamma = {width} GeV"
            )
        low, high = 0.0, sqrt_s
        if max(a, b) < len(stable):
            pa, pb = int(first.pdg[0, stable[a]]), int(first.pdg[0, stable[b]])
            if abs(pa) in LEPTON_IDS and pa == -pb:
                low = max(float(card.cuts.mmll), 0.0)
                high = float(card.cuts.mmllmax) if card.cuts.mmllmax >= 0 else sqrt_s
        maps.append((mass, width, low, high))
    return tuple(maps)


# ---------------------------------------------------------------------------- generating


@dataclass
class GenerateResult:
    """What ``evgen generate`` did; ``outputs`` maps a kind to its file."""

    n_events: int
    cross_section_pb: float
    error_pb: float
    sampling_s: float
    events_per_second: float
    outputs: dict[str, Path] = field(default_factory=dict)
    reweighting: ReweightingResult | None = None
    n_unweighted: int = 0
    unweighting_efficiency: float = math.nan
    band_coverage: float = math.nan
    timings: dict[str, float] = field(default_factory=dict)


def _model_card(model: GeneratorModel, source: str) -> tuple[RunCard, str]:
    if not isinstance(model.process_card, dict):
        raise GeneratorError(f"{source}: the model file holds no card (train it with evgen)")
    try:
        card = parse_card(model.process_card, f"{source} (its card)")
    except CardError as error:
        raise GeneratorError(
            f"{source}: its card is not valid for this evgen ({error}); retrain the generator"
        ) from None
    return card, yaml.safe_dump(model.process_card, sort_keys=False)


def _run_info(
    run: PreparedRun, card_text: str, seed: int, batches: list[Events], xs: float, err: float,
    weighting: int,
) -> RunInfo:  # fmt: skip
    table = subprocess_table(run)
    pid = torch.cat([b.process_id.cpu() for b in batches]) if batches else torch.zeros(0)
    w = torch.cat([b.weights.cpu() for b in batches]) if batches else torch.zeros(0)
    n = max(int(pid.numel()), 1)
    infos = []
    for p, proc in table:
        share = float((pid == p).sum()) / n
        w_max = float(w[pid == p].abs().max()) if bool((pid == p).any()) else xs / n
        infos.append(ProcessInfo(p, proc.name, xs * share, err * share, w_max))
    lhaid = run.pdf.lhapdf_id if run.pdf is not None else 0
    beams = run.beams
    return RunInfo(
        beam_pdg=(beams[0].pdg, beams[1].pdg),
        beam_energy=(beams[0].energy, beams[1].energy),
        pdf_group=(0, 0),
        pdf_id=(lhaid if beams[0].is_hadron else 0, lhaid if beams[1].is_hadron else 0),
        weighting=weighting,
        processes=tuple(infos),
        card_text=card_text,
        seed=seed,
        extra={"generator": "evgen generate (flow-matching generator)"},
    )


def _check_output_dir(path: Path) -> None:
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise GeneratorError(f"--output {path}: {probe} is not a folder")
    if path.exists() and any(path.iterdir()):
        clash = [n for n in ("events.lhe", "events.root") if (path / n).exists()]
        if clash:
            raise GeneratorError(
                f"--output {path} already holds {clash}; choose an empty or new folder"
            )


def _normalised(
    values: torch.Tensor, edges: torch.Tensor, weights: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit-area histogram and its statistical errors, (bins,) float64 each."""
    from evgen.generators.plots import weighted_histogram

    s, s2 = weighted_histogram(values, edges, weights)
    total = float(s.sum()) or 1.0
    return s / total, s2.sqrt() / total


def _weight_sample_histograms(
    model: GeneratorModel, n: int, seed: int, k: int, names: Sequence[str],
    edges: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:  # fmt: skip
    """(K, bins) normalised histograms per observable, one row per network-weight sample."""
    rows: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for j in range(k):
        obs = compute_observables(model.sample(n, seed=seed, weight_sample=j))
        for name in names:
            rows[name].append(_normalised(obs.values[name], edges[name])[0])
    return {name: torch.stack(r) for name, r in rows.items()}


def run_generate(
    model_path: str | Path,
    n: int,
    *,
    seed: int = 0,
    output: str | Path = "generated",
    weight_samples: int = 0,
    reweight: str | Path | None = None,
    reweighting: ReweightingConfig | None = None,
    plots: bool = True,
    device: str | None = None,
    gzip: bool = False,
) -> GenerateResult:
    """Sample ``n`` events from a model file and write them (see the module docstring).

    Raises:
        GeneratorError: n < 1, weight_samples < 0, a bad model file (another format
            version, another process, a card this evgen cannot read), a bad truth file.
        OutputError: an output cannot be written (nothing is left behind).
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise GeneratorError(f"-n: the number of events must be >= 1, got {n!r}")
    if weight_samples < 0:
        raise GeneratorError(f"--weight-samples must be >= 0, got {weight_samples}")
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    out = Path(output)
    _check_output_dir(out)
    model = GeneratorModel.load(model_path, device=device)
    card, card_text = _model_card(model, str(model_path))
    run = prepare(card, card_text, f"{model_path} (its card)")
    truth: list[Events] | None = None
    if reweight is not None:
        truth, truth_meta = read_events(reweight)
        _check_card_matches(card, f"{model_path} (its card)", Path(reweight), truth_meta)
        model.preprocessing.topology_indices(truth)  # the model's particle contents?
        reweighting = reweighting or ReweightingConfig()
    timings["setup"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sampled = model.sample(n, seed=seed)
    draws = dict(model.sampling_stats)
    sampling_s = time.perf_counter() - t0
    timings["sampling"] = sampling_s
    t0 = time.perf_counter()
    colour_gen = torch.Generator().manual_seed(seed + 1)
    batches = [
        assign_flavours_and_colours(b, run, colour_gen)
        for b in ([sampled] if isinstance(sampled, Events) else sampled)
    ]
    timings["colours"] = time.perf_counter() - t0
    xs = model.cross_section_pb
    err = float(model.training.get("cross_section_error_pb", 0.0))
    result = GenerateResult(n, xs, err, sampling_s, n / max(sampling_s, 1e-12), timings=timings)
    targets: dict[str, tuple[Path, Callable[[Path], Any]]] = {}
    info = _run_info(run, card_text, seed, batches, xs, err, weighting=3)
    targets["lhe"] = (
        out / ("events.lhe.gz" if gzip else "events.lhe"),
        lambda p: write_lhe(p, batches, info, gzip=gzip),
    )
    targets["root"] = (out / "events.root", lambda p: write_root(p, batches, info))

    obs_gen = compute_observables(batches)
    edges = {k: histogram_edges(v) for k, v in obs_gen.values.items()}
    band: dict[str, torch.Tensor] = {}
    json_hist: dict[str, Any] = {}
    if weight_samples:
        t0 = time.perf_counter()
        rows = _weight_sample_histograms(model, n, seed, weight_samples, obs_gen.names, edges)
        for name, r in rows.items():
            band[name] = r.std(dim=0) if weight_samples > 1 else torch.zeros(r.shape[1])
            json_hist[name] = {
                "label": obs_gen.labels[name],
                "edges": edges[name].tolist(),
                "nominal": _normalised(obs_gen.values[name], edges[name])[0].tolist(),
                "samples": r.tolist(),
                "mean": r.mean(dim=0).tolist(),
                "std": band[name].tolist(),
            }
        timings["weight_samples"] = time.perf_counter() - t0

    rw: ReweightingResult | None = None
    obs_truth = None
    weights_all = None
    if truth is not None:
        t0 = time.perf_counter()
        assert reweighting is not None
        rw = classifier_reweighting(model.preprocessing, truth, batches, reweighting)
        result.reweighting = rw
        weights_all = rw.weights
        sizes = [len(b) for b in batches]
        weighted = [
            replace(b, weights=b.weights.cpu() * w)
            for b, w in zip(batches, torch.split(weights_all, sizes), strict=True)
        ]
        w_max = find_max_weight(torch.cat([b.weights for b in weighted]))
        unw_gen = torch.Generator().manual_seed(seed + 2)
        unweighted = [unweight(b, max_weight=w_max, generator=unw_gen).events for b in weighted]
        n_unw = sum(len(b) for b in unweighted)
        if n_unw == 0:
            raise GeneratorError("reweighting: unweighting kept no event; raise -n")
        unweighted = [
            replace(b, weights=torch.full_like(b.weights, xs / n_unw)) for b in unweighted
        ]
        result.n_unweighted = n_unw
        result.unweighting_efficiency = n_unw / n
        info_w = _run_info(run, card_text, seed, weighted, xs, err, weighting=1)
        info_u = _run_info(run, card_text, seed, unweighted, xs, err, weighting=3)
        sub = out / "reweighted"
        targets["reweighted_weighted_root"] = (
            sub / "weighted.root",
            lambda p: write_root(p, weighted, info_w),
        )
        targets["reweighted_lhe"] = (
            sub / ("events.lhe.gz" if gzip else "events.lhe"),
            lambda p: write_lhe(p, unweighted, info_u, gzip=gzip),
        )
        targets["reweighted_root"] = (
            sub / "events.root",
            lambda p: write_root(p, unweighted, info_u),
        )
        report = rw.summary()
        report["n_unweighted"] = n_unw
        report["unweighting_max_weight_pb"] = w_max
        text = json.dumps(report, indent=2, allow_nan=True)
        targets["reweighting"] = (sub / "reweighting.json", lambda p: p.write_text(text))
        obs_truth = compute_observables(truth)
        timings["reweighting"] = time.perf_counter() - t0

    if weight_samples and obs_truth is not None:
        covered, total = 0, 0
        for name in obs_gen.names:
            t, t_err = _normalised(obs_truth.values[name], edges[name])
            g, g_err = _normalised(obs_gen.values[name], edges[name])
            from evgen.generators.plots import weighted_histogram

            ok = weighted_histogram(obs_truth.values[name], edges[name])[0] >= 100
            sigma = torch.sqrt(band[name] ** 2 + g_err**2 + t_err**2)
            covered += int(((g - t).abs() <= sigma)[ok].sum())
            total += int(ok.sum())
        result.band_coverage = covered / total if total else math.nan
    if weight_samples:
        hist_text = json.dumps(
            {"weight_samples": weight_samples, "observables": json_hist,
             "band_coverage": result.band_coverage}, indent=1, allow_nan=True,
        )  # fmt: skip
        targets["weight_samples"] = (out / "weight_samples.json", lambda p: p.write_text(hist_text))

    if plots and (weight_samples or truth is not None):
        _add_plot_targets(targets, out / "plots", obs_gen, obs_truth, weights_all, edges, band, rw)

    summary = {
        "model": str(model_path),
        "process": card.process,
        "n_events": n,
        "seed": seed,
        "cross_section_pb": xs,
        "error_pb": err,
        "sampling_s": sampling_s,
        "events_per_second": result.events_per_second,
        "draws": draws["drawn"],
        "redrawn_outside_cuts": draws["outside_cuts"],
        "weight_samples": weight_samples,
        "band_coverage": result.band_coverage,
        "timings": timings,
    }
    if rw is not None:
        summary["reweighting"] = {
            "auc_before": rw.auc_before,
            "auc_after": rw.auc_after,
            "tail_fraction": rw.tail_fraction,
            "clipped_fraction": rw.clipped_fraction,
            "n_unweighted": result.n_unweighted,
        }
    summary_text = json.dumps(summary, indent=2, allow_nan=True)
    targets["summary"] = (out / "generate.json", lambda p: p.write_text(summary_text))
    t0 = time.perf_counter()
    write_all_or_nothing(targets.values(), folders=[out])
    timings["output"] = time.perf_counter() - t0
    result.outputs = {k: p for k, (p, _) in targets.items()}
    return result


def _add_plot_targets(
    targets: dict[str, tuple[Path, Callable[[Path], Any]]],
    folder: Path,
    obs_gen,
    obs_truth,
    weights: torch.Tensor | None,
    edges: dict[str, torch.Tensor],
    band: dict[str, torch.Tensor],
    rw: ReweightingResult | None,
) -> None:
    from evgen.generators.plots import ObservableHistograms, plot_observable, plot_weights

    for name in obs_gen.names:
        g, g_err = _normalised(obs_gen.values[name], edges[name])
        h = ObservableHistograms(name, obs_gen.labels[name], edges[name], g, g_err)
        h.band = band.get(name)
        if obs_truth is not None and name in obs_truth.values:
            h.truth, h.truth_err = _normalised(obs_truth.values[name], edges[name])
        if weights is not None:
            h.reweighted, h.reweighted_err = _normalised(obs_gen.values[name], edges[name], weights)
        targets[f"plot_{name}"] = (
            folder / f"{name}.png",
            lambda p, h=h: plot_observable(h, p),
        )
    if rw is not None:
        targets["plot_weights"] = (
            folder / "weights.png",
            lambda p: plot_weights(rw.weights, p, rw.clip),
        )


# ---------------------------------------------------------------------------- command line


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``train-generator`` and ``generate`` on the ``evgen`` parser."""
    train = sub.add_parser(
        "train-generator",
        help="train a generative network on evgen events",
        description="Train a Bayesian flow-matching generator on an evgen run's events.",
    )
    train.add_argument("card", help="the run card the events came from")
    train.add_argument("--events", required=True, help="events.root written by evgen run")
    train.add_argument("-o", "--output", default="model.pt", help="model file (model.pt)")
    d = GeneratorConfig()
    train.add_argument("--network", choices=("bayesian", "ensemble"), default=d.network)
    train.add_argument("--steps", type=int, default=d.steps, help=f"optimiser steps ({d.steps})")
    train.add_argument("--batch-size", type=int, default=d.batch_size)
    train.add_argument("--hidden", type=int, default=d.hidden)
    train.add_argument("--hidden-layers", type=int, default=d.hidden_layers)
    train.add_argument("--members", type=int, default=d.n_members, help="ensemble members / "
                       "Bayesian weight samples mixed in sampling")  # fmt: skip
    train.add_argument("--learning-rate", type=float, default=d.learning_rate)
    train.add_argument("--ode-steps", type=int, default=d.ode_steps)
    train.add_argument("--merge-partons", action="store_true",
                       help="one network label for all massless partons (flavours from the "
                       "matrix element at generation)")  # fmt: skip
    train.add_argument("--resonance", nargs=2, type=int, action="append", default=[],
                       metavar=("A", "B"),
                       help="stable outgoing positions (0-based) of a resonance's massless "
                       "daughters, e.g. 0 1 for the muons of p p > mu+ mu- j: their mass "
                       "becomes a feature (repeatable)")  # fmt: skip
    train.add_argument("--pair-balance", action="store_true",
                       help="the first --resonance pair balances pT, so every other "
                       "particle's pT (a jet threshold) is learned directly")  # fmt: skip
    train.add_argument("--resonance-pdg", type=int, action="append", default=[],
                       metavar="PDG",
                       help="the parent of each --resonance pair (e.g. 23): its mass is "
                       "learned through its Breit-Wigner inside the card's window")  # fmt: skip
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--device", default="cpu")
    train.add_argument("-q", "--quiet", action="store_true", help="no progress display")

    gen = sub.add_parser(
        "generate",
        help="sample events from a trained generator",
        description="Sample events from a generator model file and write LHE/ROOT files.",
    )
    gen.add_argument("model", help="model file written by evgen train-generator")
    gen.add_argument("-n", "--nevents", type=int, required=True, help="events to generate")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("-o", "--output", default="generated", help="output folder (generated)")
    gen.add_argument("--weight-samples", type=int, default=0,
                     help="K: histograms per network-weight sample (error band)")  # fmt: skip
    gen.add_argument("--reweight", metavar="TRUTH.root",
                     help="reweight towards these held-out truth events (classifier)")  # fmt: skip
    gen.add_argument("--clip", type=float, default=ReweightingConfig().clip,
                     help="clip weights to [1/clip, clip]")  # fmt: skip
    dc = ReweightingConfig().classifier
    gen.add_argument("--classifier-epochs", type=int, default=dc.epochs)
    gen.add_argument("--classifier-hidden", type=int, default=dc.hidden)
    gen.add_argument("--classifier-batch-size", type=int, default=dc.batch_size)
    gen.add_argument("--no-plots", action="store_true", help="write no PNG plots")
    gen.add_argument("--gzip", action="store_true", help="write events.lhe.gz")
    gen.add_argument("--device", help="override the model's device")
    gen.add_argument("-q", "--quiet", action="store_true")


def _train(args: argparse.Namespace, out, err) -> int:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    try:
        config = GeneratorConfig(
            network=args.network,
            hidden=args.hidden,
            hidden_layers=args.hidden_layers,
            n_members=args.members,
            steps=args.steps,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            ode_steps=args.ode_steps,
            seed=args.seed,
            device=args.device,
            preprocessing=PreprocessingConfig(
                merge_partons=args.merge_partons,
                resonances=tuple((int(a), int(b)) for a, b in args.resonance),
                pair_balance=args.pair_balance,
            ),
        )
    except GeneratorError as error:
        raise GeneratorError(f"train-generator: {error}") from None
    progress = None
    task = None
    if not args.quiet:
        progress = Progress(
            TextColumn("[bold]training[/]"),
            BarColumn(),
            TextColumn("{task.completed:.0f}/{task.total:.0f} steps"),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TimeElapsedColumn(),
            console=err,
            transient=True,
        )
        progress.start()
        task = progress.add_task("train", total=config.steps, loss=math.nan)

    def callback(p: TrainingProgress) -> None:
        if progress is not None and task is not None:
            progress.update(task, completed=p.step, loss=p.mean_loss)

    try:
        result = run_train_generator(
            args.card, args.events, args.output, config, callback, args.resonance_pdg
        )
    finally:
        if progress is not None:
            progress.stop()
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("events", f"{result.n_events} ({', '.join(result.topologies)})")
    table.add_row("cross section", f"{result.cross_section_pb:.6g} +- {result.error_pb:.2g} pb")
    table.add_row("network", f"{config.network}, {config.hidden_layers} x {config.hidden}")
    table.add_row(
        "training",
        f"{result.steps} steps in {result.elapsed_s:.1f} s, final loss {result.final_loss:.4f}",
    )
    table.add_row("model file", str(result.model_path))
    out.print(table)
    return 0


def _generate(args: argparse.Namespace, out, err) -> int:
    from rich.table import Table

    try:
        reweighting = ReweightingConfig(
            classifier=replace(
                ReweightingConfig().classifier,
                epochs=args.classifier_epochs,
                hidden=args.classifier_hidden,
                batch_size=args.classifier_batch_size,
                seed=args.seed,
            ),
            clip=args.clip,
        )
    except ValueError as error:
        raise GeneratorError(f"generate: {error}") from None
    result = run_generate(
        args.model,
        args.nevents,
        seed=args.seed,
        output=args.output,
        weight_samples=args.weight_samples,
        reweight=args.reweight,
        reweighting=reweighting,
        plots=not args.no_plots,
        device=args.device,
        gzip=args.gzip,
    )
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    table.add_row("events", str(result.n_events))
    table.add_row("cross section", f"{result.cross_section_pb:.6g} +- {result.error_pb:.2g} pb")
    table.add_row(
        "sampling", f"{result.sampling_s:.2f} s ({result.events_per_second:.4g} events/s)"
    )
    if not math.isnan(result.band_coverage):
        table.add_row("band coverage", f"{result.band_coverage:.0%} of bins")
    rw = result.reweighting
    if rw is not None:
        table.add_row("AUC before", f"{rw.auc_before:.4f} (held out)")
        table.add_row("AUC after", f"{rw.auc_after:.4f} (fresh classifier, held out)")
        table.add_row("|log w| > 1", f"{rw.tail_fraction:.2%} of events")
        table.add_row(
            "clipped", f"{rw.n_clipped} ({rw.clipped_fraction:.2%}) to [1/{rw.clip:g}, {rw.clip:g}]"
        )
        table.add_row("calibration", f"largest pull {rw.calibration['max_pull']:.2f}")
        table.add_row("unweighted", f"{result.n_unweighted} ({result.unweighting_efficiency:.1%})")
    for kind in ("lhe", "root", "reweighted_lhe", "reweighting", "weight_samples", "summary"):
        if kind in result.outputs:
            table.add_row(f"{kind} file", str(result.outputs[kind]))
    n_plots = sum(k.startswith("plot_") for k in result.outputs)
    if n_plots:
        table.add_row("plots", f"{n_plots} PNG in {result.outputs['summary'].parent / 'plots'}")
    out.print(table, soft_wrap=True)
    return 0


def main(args: argparse.Namespace, out, err) -> int:
    """Run ``train-generator`` or ``generate`` from parsed arguments."""
    if args.command == "train-generator":
        return _train(args, out, err)
    return _generate(args, out, err)
