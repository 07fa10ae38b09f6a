"""``evgen unfold`` and ``evgen detector``: the command-line side of unfolding.

``evgen unfold CARD --data FILE.root [--method generative|omnifold|ibu] [--model
MODEL.pt] [--output DIR] [--seed S] [--device D]`` reads the card's simulation and the
measured file (:mod:`unfolding.reader`), runs the method, writes the outputs
(:mod:`unfolding.output`) and prints a summary table. Every input problem stops the run
with one line naming the file and branch (exit status 2) before anything is written.

``--model OUT/model.pt`` applies a generative-unfolding model saved by an earlier run
(every generative run writes ``model.pt`` into its output folder) to the measured data,
without training: the model's own settings (samples per event, ensemble, replicas)
apply, the card's ``generative`` block is only validated, and the same ``--seed`` gives
the same events as the run that trained it did on the same data. The card's simulation
is still read, for the counts, the prior in the plots and the range check of the data.
OmniFold and IBU reweight the simulation for the data at hand and have no reusable
network; ``--model`` refuses them.

``evgen detector CARD --events events.root --output sim.root [--seed S]`` runs the
card's parametric detector simulation (:mod:`unfolding.detector`) on evgen events.

The methods are looked up in a dispatch table (:data:`METHODS`): each is a module with a
function and a config dataclass built from the card's block of that method's name
(``GenerativeConfig.from_settings``; the other configs by keyword, nested dataclasses
such as a classifier's settings from nested mappings), so the methods own their
settings and unknown keys are errors that name them. IBU unfolds every observable alone
(1-d) unless ``ibu.joint`` groups observables into one multi-dimensional binning
(:meth:`~unfolding.card.UnfoldCard.ibu_groups`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evgen.errors import CardError
from unfolding.card import METHODS as METHOD_NAMES
from unfolding.card import UnfoldCard, load_unfold_card, parse_unfold_card
from unfolding.errors import UnfoldingError

__all__ = [
    "METHODS",
    "MethodEntry",
    "UnfoldRun",
    "add_parsers",
    "apply_model",
    "build_method",
    "load_model",
    "main",
    "run_detector",
    "run_unfold",
    "unfold_ibu_groups",
]

#: ``unfold_generative`` draws its final sample with ``seed + 31``; a saved model applied
#: with ``--seed S`` uses the same offset, so it reproduces the training run's events.
SAMPLING_SEED_OFFSET = 31


@dataclass(frozen=True)
class MethodEntry:
    """Where a method lives: ``module.function`` and its config class ``module.config``."""

    module: str
    function: str
    config: str


#: method name -> where it is implemented. The generative and OmniFold functions take
#: ``(inputs, config, seed)``; IBU's is the binned ``ibu(inputs, truth, reco, config)``,
#: called once per observable group by :func:`unfold_ibu_groups`.
METHODS: dict[str, MethodEntry] = {
    "ibu": MethodEntry("unfolding.ibu", "ibu", "IBUConfig"),
    "omnifold": MethodEntry("unfolding.omnifold", "unfold_omnifold", "OmniFoldConfig"),
    "generative": MethodEntry("unfolding.generative", "unfold_generative", "GenerativeConfig"),
}

#: keys of a method's card block that the command itself uses (not config fields).
_COMMAND_KEYS: dict[str, tuple[str, ...]] = {"ibu": ("joint",)}


def unfold_ibu_groups(
    module: Any, card: UnfoldCard, inputs: Any, config: Any, groups: Sequence[tuple[int, ...]]
) -> list[Any]:
    """IBU once per group of observables (1-d per observable by default, see
    :meth:`UnfoldCard.ibu_groups`), each in the card's binning of its observables.

    Every result is put on the same events, all simulated events passing the truth
    selection with all observables as columns; an event outside a group's truth binning
    has weight 0 in that group's result (it is outside that unfolding). The toys of all
    groups use the same seed, hence the same Poisson weights per event: replica r is the
    same bootstrap of data and simulation for every observable.

    Args:
        module: :mod:`unfolding.ibu` (``Binning`` and ``ibu``).
        inputs: :class:`~unfolding.data.UnfoldingInputs`, observables in card order.
        config: ``IBUConfig``.

    Returns:
        One :class:`~unfolding.output.Unfolding` per group, in the order of ``groups``.
    """
    import torch

    from unfolding.data import UnfoldedResult
    from unfolding.output import Unfolding

    fiducial = inputs.sim_pass_truth
    events = inputs.sim_truth[fiducial]
    n = events.shape[0]
    out = []
    for group in groups:  # a loop over observable groups, not events
        cols = list(group)
        sub = dataclasses.replace(
            inputs,
            sim_truth=inputs.sim_truth[:, cols],
            sim_reco=inputs.sim_reco[:, cols],
            data_reco=inputs.data_reco[:, cols],
            truth_names=tuple(inputs.truth_names[j] for j in cols),
            reco_names=tuple(inputs.reco_names[j] for j in cols),
        )
        edges = tuple(
            torch.as_tensor(card.observables[j].bin_edges, dtype=torch.float64) for j in cols
        )
        binning = module.Binning(edges)
        result = module.ibu(sub, binning, binning, config)
        # ibu keeps the truth-passing events inside the truth binning, in input order
        inside = binning.index(events[:, cols]) >= 0
        if int(inside.sum()) != result.truth.shape[0]:
            raise UnfoldingError(
                f"ibu: {result.truth.shape[0]} unfolded events, expected {int(inside.sum())} "
                "(truth-passing events inside the binning)"
            )
        weights = torch.zeros(n, dtype=torch.float64, device=events.device)
        weights[inside] = result.weights
        replicas = None
        if result.replica_weights is not None:
            replicas = weights.new_zeros(result.replica_weights.shape[0], n)
            replicas[:, inside] = result.replica_weights
        info = {**result.info, "observables": [inputs.truth_names[j] for j in cols]}
        out.append(Unfolding(group, UnfoldedResult("ibu", events, weights, replicas, None, info)))
    return out


def _ibu_function(module: Any, card: UnfoldCard) -> Callable[..., Any] | None:
    """``(inputs, config, seed) -> list[Unfolding]``: IBU per observable group."""
    if not hasattr(module, "ibu") or not hasattr(module, "Binning"):
        return None
    groups = card.ibu_groups()

    def run(inputs: Any, config: Any, seed: int) -> list[Any]:
        return unfold_ibu_groups(module, card, inputs, config, groups)

    return run


_DTYPE_NAMES = ("float32", "float64")


def _build_config(
    cls: type, settings: dict[str, Any], key: str, source: str, extra: Sequence[str] = ()
) -> Any:
    """``cls(**settings)``; a mapping given for a field whose default is a dataclass
    (e.g. a classifier's settings) becomes that dataclass, recursively; "float32" and
    "float64" given for a field whose default is a torch dtype become that dtype.
    ``extra``: further keys allowed in the block (the command's own)."""
    import torch

    allowed = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = [k for k in settings if k not in allowed]
    if unknown:
        names = ", ".join([*allowed, *extra])
        raise CardError(f"{source}: {key}.{unknown[0]}: unknown key; allowed: {names}")
    values = dict(settings)
    for name, value in settings.items():
        f = allowed[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if isinstance(value, dict) and dataclasses.is_dataclass(default):
            values[name] = _build_config(type(default), value, f"{key}.{name}", source)
        elif isinstance(default, torch.dtype) and isinstance(value, str):
            if value.removeprefix("torch.") not in _DTYPE_NAMES:
                raise CardError(
                    f"{source}: {key}.{name}: expected float32 or float64, got {value!r}"
                )
            values[name] = getattr(torch, value.removeprefix("torch."))
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        raise CardError(f"{source}: {key}: {err}") from None
    except UnfoldingError as err:  # the config's own checks name the key
        raise CardError(f"{source}: {err}") from None


def _import_method(method: str) -> Any:
    entry = METHODS[method]
    try:
        return importlib.import_module(entry.module)
    except ModuleNotFoundError as err:
        if err.name != entry.module:
            raise
        others = [m for m in METHODS if m != method]
        raise UnfoldingError(
            f"method {method!r} is not available: module {entry.module} is missing from this "
            f"installation; choose another with --method ({', '.join(others)})"
        ) from None


def build_method(card: UnfoldCard, method: str, seed: int, source: str) -> tuple[Callable, Any]:
    """The method's function ``(inputs, config, seed)`` and its config from the card's
    settings block. The function returns an :class:`~unfolding.data.UnfoldedResult`
    for all observables, or (IBU) a list of :class:`~unfolding.output.Unfolding`.

    Raises:
        UnfoldingError: the method's module is not in this installation.
        CardError: a key of the card's method block is not a setting of the method
            (names the key and lists the allowed ones), or a value is invalid.
    """
    entry = METHODS[method]
    module = _import_method(method)
    function = getattr(module, entry.function, None)
    if method == "ibu" and function is not None:
        function = _ibu_function(module, card)
    config_cls = getattr(module, entry.config, None)
    if function is None or config_cls is None:
        missing = entry.function if function is None else entry.config
        raise UnfoldingError(f"method {method!r} is not available: {entry.module} has no {missing}")
    settings = card.method_settings(method)
    from_settings = getattr(config_cls, "from_settings", None)
    try:
        if callable(from_settings):  # the config checks its own keys (generative)
            return function, from_settings(settings)
    except (TypeError, ValueError, UnfoldingError) as err:
        text = str(err)
        text = text if text.startswith(method) else f"{method}: {text}"
        raise CardError(f"{source}: {text}") from None
    if dataclasses.is_dataclass(config_cls):
        if "seed" in {f.name for f in dataclasses.fields(config_cls)}:
            settings.setdefault("seed", seed)
        extra = _COMMAND_KEYS.get(method, ())
        return function, _build_config(config_cls, settings, method, source, extra)
    try:
        return function, config_cls(**settings)
    except (TypeError, ValueError, UnfoldingError) as err:
        raise CardError(f"{source}: {method}: {err}") from None


def apply_model(
    model: str | Path | Any,
    card: UnfoldCard,
    inputs: Any,
    seed: int,
    device: str = "cpu",
    *,
    model_file: str | None = None,
) -> Any:
    """Unfold ``inputs.data_reco`` with a saved generative model (no training).

    Args:
        model: a ``model.pt`` written by a generative run, or the model loaded from it
            by :func:`load_model` (then ``model_file`` names its file in ``info``).
        card: the card; its observables must be those the model was trained on.
        inputs: :class:`~unfolding.data.UnfoldingInputs` (only the data are used).
        seed: as ``--seed``: the same seed as the training run gives the same events.

    Returns:
        :class:`~unfolding.data.UnfoldedResult` (method "generative"); ``info["model"]``
        is the loaded model, ``info["model_file"]`` its path.

    Raises:
        UnfoldingError: the file is missing or the model's observables differ from the
            card's. CheckpointError: the file is not a generative-unfolding model.
    """
    path = model if isinstance(model, (str, Path)) else model_file
    if isinstance(model, (str, Path)):
        model = load_model(model, card, device)
    result = model.unfold(
        inputs.data_reco,
        inputs.data_weights,
        seed=seed + SAMPLING_SEED_OFFSET,
        info={"seed": seed, "model_file": None if path is None else str(path), "trained": False},
    )
    result.info["timings_s"] = {"sampling_s": result.info.pop("sampling_s", float("nan"))}
    result.info["model"] = model
    return result


def load_model(path: str | Path, card: UnfoldCard, device: str = "cpu") -> Any:
    """Load a saved generative model and check it fits the card's observables."""
    _import_method("generative")
    from unfolding.generative import GenerativeModel

    if not Path(path).is_file():
        raise UnfoldingError(f"{path}: model file not found (--model)")
    model = GenerativeModel.load(path, map_location=device)
    names = tuple(o.name for o in card.observables)
    if tuple(model.truth_names) != names or tuple(model.reco_names) != names:
        trained = ", ".join(model.truth_names) or f"{model.d_truth} unnamed observables"
        raise UnfoldingError(
            f"{path}: the model was trained on the observables ({trained}), the card has "
            f"({', '.join(names)}); use the card it was trained with (card.yaml in the "
            "model's output folder) or train a new model"
        )
    return model


@dataclass
class UnfoldRun:
    """Everything a finished ``evgen unfold`` reports.

    ``unfolded_total``, ``unfolded_error`` and ``info`` are those of the first unfolding
    (the only one except for IBU with observables unfolded separately); ``unfoldings``
    has each unfolding's observables, total, error and info.
    """

    card: UnfoldCard
    method: str
    seed: int
    counts: dict[str, float]
    unfolded_total: float
    unfolded_error: float
    histograms: list[Any]
    files: dict[str, Path]
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    truth_source: str | None = None
    unfoldings: list[dict[str, Any]] = field(default_factory=list)


def _counts(inputs: Any) -> dict[str, float]:
    pt, pr, w = inputs.sim_pass_truth, inputs.sim_pass_reco, inputs.sim_weights
    return {
        "simulated events": float(inputs.n_sim),
        "  fiducial (pass truth)": float(pt.sum()),
        "  reconstructed (pass reco)": float(pr.sum()),
        "  response (both)": float((pt & pr).sum()),
        "  misses (truth only)": float((pt & ~pr).sum()),
        "  fakes (reco only)": float((~pt & pr).sum()),
        "  sum of weights": float(w.sum()),
        "measured events": float(inputs.n_data),
        "  sum of weights ": float(inputs.data_weights.sum()),
    }


def _total(result: Any) -> tuple[float, float]:
    """Unfolded number of fiducial events and its spread over the replicas (NaN
    without at least two)."""
    total = float(result.weights.sum())
    error = float("nan")
    if result.replica_weights is not None and result.replica_weights.shape[0] > 1:
        error = float(result.replica_weights.sum(dim=1).std())
    return total, error


def run_unfold(
    card: UnfoldCard,
    card_text: str,
    *,
    source: str = "<card>",
    data_path: str | Path | None = None,
    method: str | None = None,
    output: str | Path | None = None,
    seed: int | None = None,
    device: str = "cpu",
    model: str | Path | None = None,
) -> UnfoldRun:
    """Read, unfold, write. Options override the card (``method``, ``output.path``,
    ``seed``); ``model``: apply a saved generative model instead of training (see the
    module docstring). Nothing is written unless every step succeeds.

    Raises:
        EvgenError (CardError, UnfoldingError, OutputError, CheckpointError): one line
        for the user.
    """
    from evgen.ml import seed_everything
    from unfolding.output import Unfolding, histogram_observables, json_clean, write_outputs
    from unfolding.reader import read_data_truth, read_inputs

    if model is not None:
        if method not in (None, "generative"):
            raise UnfoldingError(
                f"--model applies a saved generative-unfolding model; --method {method} "
                "reweights the simulation and has no saved network (drop --model)"
            )
        method = "generative"
    method = method or card.method
    seed = card.seed if seed is None else seed
    out_dir = Path(output) if output is not None else Path(card.output.path)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    function, config = build_method(card, method, seed, source)  # card errors first
    loaded = None
    if model is not None:  # a wrong model fails before the files are read
        loaded = load_model(model, card, device)
    inputs = read_inputs(card, data_path, device=device)
    truth = read_data_truth(card, data_path, device=device)
    timings["reading"] = time.perf_counter() - start

    start = time.perf_counter()
    seed_everything(seed)
    if loaded is not None:
        outcome = apply_model(loaded, card, inputs, seed, device, model_file=str(model))
    else:
        outcome = function(inputs, config, seed)
    if isinstance(outcome, (list, tuple)):
        unfoldings = list(outcome)
    else:
        unfoldings = [Unfolding(tuple(range(len(card.observables))), outcome)]
    timings["unfolding"] = time.perf_counter() - start

    start = time.perf_counter()
    hists = histogram_observables(card, unfoldings, inputs, truth)
    per_unfolding = []
    for u in unfoldings:
        total, error = _total(u.result)
        per_unfolding.append(
            {
                "observables": u.names(card),
                "unfolded_fiducial_events": total,
                "unfolded_fiducial_error": error,
                "replicas": u.result.n_replicas,
                "info": json_clean(u.result.info),
            }
        )
    first = per_unfolding[0]
    counts = _counts(inputs)
    summary = {
        "method": method,
        "seed": seed,
        "card": source,
        "data": str(data_path if data_path is not None else card.data.file),
        "model": None if model is None else str(model),
        "counts": counts,
        "unfolded_fiducial_events": first["unfolded_fiducial_events"],
        "unfolded_fiducial_error": first["unfolded_fiducial_error"],
        "replicas": first["replicas"],
        "observables": {
            h.observable.name: {"bins": len(h.values), "chi2": h.chi2, "ndf": h.ndf} for h in hists
        },
        "unfoldings": per_unfolding,
        "info": first["info"],
        "timings_s": timings,
    }
    files = write_outputs(
        out_dir, card, card_text, unfoldings, hists, summary, plots=card.output.plots
    )
    timings["output"] = time.perf_counter() - start
    return UnfoldRun(
        card=card,
        method=method,
        seed=seed,
        counts=counts,
        unfolded_total=first["unfolded_fiducial_events"],
        unfolded_error=first["unfolded_fiducial_error"],
        histograms=hists,
        files=files,
        timings=timings,
        info=dict(unfoldings[0].result.info),
        truth_source=None if truth is None else truth.source,
        unfoldings=per_unfolding,
    )


def run_detector(
    card: UnfoldCard,
    *,
    source: str = "<card>",
    events: str | Path | None = None,
    output: str | Path | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Run the card's detector simulation; returns its statistics (see
    :func:`unfolding.detector.simulate_file`)."""
    from unfolding.detector import simulate_file

    if card.detector is None:
        raise CardError(f"{source}: detector: required key is missing (evgen detector)")
    events = events if events is not None else card.detector.events
    output = output if output is not None else card.detector.output
    if events is None:
        raise CardError(f"{source}: detector.events: give --events FILE.root or set the key")
    if output is None:
        raise CardError(f"{source}: detector.output: give --output FILE.root or set the key")
    return simulate_file(
        card.detector,
        card.observables,
        events,
        output,
        seed=card.seed if seed is None else seed,
    )


# ---------------------------------------------------------------------- command line


def add_parsers(sub: Any) -> None:
    """Register ``unfold`` and ``detector`` on evgen's sub-command parser."""
    unfold = sub.add_parser(
        "unfold",
        help="unfold measured detector-level data to parton level",
        description="Unfold the measured ROOT data with the card's simulation; write the "
        "unfolded events, histograms with covariance, plots and a summary.",
    )
    unfold.add_argument("card", help="YAML unfolding card, e.g. cards/unfold_gauss.yaml")
    unfold.add_argument("--data", help="measured ROOT file (default: the card's data.file)")
    unfold.add_argument("--method", choices=METHOD_NAMES, help="override the card's method")
    unfold.add_argument(
        "--model",
        help="apply a saved generative model (OUT/model.pt of an earlier run) to the data "
        "instead of training one",
    )
    unfold.add_argument("-o", "--output", help="override output.path (a folder)")
    unfold.add_argument("--seed", type=int, help="override seed")
    unfold.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    det = sub.add_parser(
        "detector",
        help="parametric detector simulation of evgen events",
        description="Smear evgen events with the card's detector block; write a ROOT tree "
        "with parton- and detector-level observables, flags and a shared event number.",
    )
    det.add_argument("card", help="YAML unfolding card with a detector block")
    det.add_argument("--events", help="evgen ROOT events (default: detector.events)")
    det.add_argument("-o", "--output", help="output ROOT file (default: detector.output)")
    det.add_argument("--seed", type=int, help="override seed")


def _load(path: str, seed: int | None) -> tuple[UnfoldCard, str]:
    card, text = load_unfold_card(path)
    if seed is not None:
        if seed < 0:
            raise CardError(f"--seed: must be >= 0, got {seed}")
        data = card.model_dump()
        data["seed"] = seed
        card = parse_unfold_card(data, f"{path} (with command-line options)")
    return card.resolve_paths(Path(path).parent), text


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{x:.0f}" if x == round(x) and abs(x) < 1e15 else f"{x:.6g}"


def _print_unfold(console: Any, run: UnfoldRun) -> None:
    from rich.table import Table

    table = Table(title=f"evgen unfold: {run.method}", title_justify="left")
    table.add_column("inputs")
    table.add_column("events", justify="right")
    for k, v in run.counts.items():
        table.add_row(k, _fmt(v))
    console.print(table)
    obs = Table(title="unfolded histograms", title_justify="left")
    obs.add_column("observable")
    obs.add_column("bins", justify="right")
    obs.add_column("unfolded", justify="right")
    obs.add_column("rel. error", justify="right")
    obs.add_column("chi2/ndf vs truth", justify="right")
    for h in run.histograms:
        total = float(h.values.sum())
        err = float(math.sqrt(max(h.covariance.sum(), 0.0)))
        rel = f"{err / abs(total):.2%}" if total else "-"
        chi = f"{h.chi2:.1f}/{h.ndf}" if h.chi2 is not None else "n/a (truth unknown)"
        obs.add_row(h.observable.name, str(len(h.values)), _fmt(total), rel, chi)
    console.print(obs)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    err = "" if math.isnan(run.unfolded_error) else f" +- {run.unfolded_error:.4g}"
    if len(run.unfoldings) > 1:
        for u in run.unfoldings:
            e = u["unfolded_fiducial_error"]
            e = "" if e is None or math.isnan(e) else f" +- {e:.4g}"
            names = ", ".join(u["observables"])
            facts.add_row(
                f"unfolded fiducial events ({names})", f"{u['unfolded_fiducial_events']:.6g}{e}"
            )
    else:
        facts.add_row("unfolded fiducial events", f"{run.unfolded_total:.6g}{err}")
    if run.info.get("model_file"):
        facts.add_row("model", f"{run.info['model_file']} (applied, not trained)")
    for key in ("iterations", "stopping", "converged", "toys", "replicas", "ensemble"):
        value = run.info.get(key)
        if isinstance(value, (list, tuple)):
            facts.add_row(key, str(len(value)))
        elif value is not None:
            facts.add_row(key, str(value))
    facts.add_row("seed", str(run.seed))
    if run.truth_source:
        facts.add_row("truth", run.truth_source)
    t = run.timings
    facts.add_row(
        "time",
        ", ".join(f"{k} {v:.1f} s" for k, v in t.items()) + f"; total {sum(t.values()):.1f} s",
    )
    console.print(facts)
    width = max(len(k) for k in run.files) + 2
    for kind, path in run.files.items():
        console.print(f"{kind:<{width}}{path}", soft_wrap=True, highlight=False)


def _print_detector(console: Any, stats: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="evgen detector", title_justify="left")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for k, v in stats.items():
        table.add_row(k, f"{v:.4g}" if isinstance(v, float) else str(v))
    console.print(table)


def main(args: argparse.Namespace, out: Any, err: Any) -> int:
    """Run the parsed ``unfold`` or ``detector`` command; errors propagate as EvgenError."""
    card, text = _load(args.card, args.seed)
    if args.command == "detector":
        stats = run_detector(card, source=args.card, events=args.events, output=args.output)
        _print_detector(out, stats)
        return 0
    run = run_unfold(
        card,
        text,
        source=args.card,
        data_path=args.data,
        method=args.method,
        output=args.output,
        device=args.device,
        model=args.model,
    )
    _print_unfold(out, run)
    return 0
