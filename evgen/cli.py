"""The ``evgen`` command line.

``evgen run CARD`` integrates the card's process, writes unweighted events (LHE, ROOT)
and prints a summary table. Errors a user can fix are printed as one line naming the
card key or file, with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from evgen import __version__
from evgen.errors import EvgenError

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evgen", description="MadGraph-style LHC event generator on PyTorch."
    )
    parser.add_argument("--version", action="version", version=f"evgen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser(
        "run",
        help="integrate a process and write unweighted events",
        description="Integrate the card's process, unweight events, write LHE/ROOT files.",
    )
    run.add_argument("card", help="YAML run card, e.g. cards/ttbar.yaml")
    run.add_argument("-n", "--nevents", type=int, help="override run.nevents")
    run.add_argument("--seed", type=int, help="override run.seed")
    run.add_argument("-o", "--output", help="override output.path (a folder)")
    run.add_argument("--device", help="override run.device (cpu, cuda, cuda:1, ...)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress display")
    from unfolding.command import add_parsers

    add_parsers(sub)  # evgen unfold, evgen detector
    from evgen.generators.command import add_parsers as add_generator_parsers

    add_generator_parsers(sub)  # evgen train-generator, evgen generate
    return parser


class _RichReporter:
    """Draws progress on stderr while the run goes."""

    def __init__(self, console: Console, quiet: bool) -> None:
        self.console = console
        self.quiet = quiet
        self.progress: Progress | None = None
        self.task = None

    def _close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def stage(self, name: str) -> None:
        self._close()
        if self.quiet:
            return
        if name == "generation":
            self.progress = Progress(
                TextColumn("[bold]generation[/]"),
                BarColumn(),
                TextColumn("{task.completed:.0f}/{task.total:.0f} events"),
                TextColumn("{task.fields[evals]} evaluations"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self.progress.start()
            self.task = self.progress.add_task("gen", total=1, evals=0)
        elif name == "integration":
            self.console.print("[bold]integration[/] (VEGAS)")
        elif name == "training":
            self.console.print("[bold]training[/] (learned integrator, on the VEGAS grids)")

    def iteration(self, group: int, i: int, n: int, estimate, channel: str = "") -> None:
        if self.quiet:
            return
        from evgen.summary import format_xs

        where = f"group {group + 1}" + (f" channel {channel}" if channel else "")
        self.console.print(
            f"  {where} iteration {i:2d}/{n}: "
            f"{format_xs(estimate.value, estimate.error)} pb "
            f"({estimate.relative_error:.2%})"
        )

    def generation(self, group: int, n_unweighted: float, n_target: int, n_eval: int) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.update(self.task, completed=n_unweighted, total=n_target, evals=n_eval)

    def finish(self) -> None:
        self._close()


def _print_channels(console: Console, result) -> None:
    """Cross section per integration channel (multi-channel runs); ``channel`` is the
    value written with each event (LHE/ROOT ``channel``)."""
    from evgen.summary import format_xs

    groups = len({c.group for c in result.channels}) > 1
    title = "channels (one VEGAS grid each)"
    if getattr(result, "integrator", "vegas") == "madnis":
        title = "channels (MadNIS: a flow on each channel's VEGAS grid, learned weights)"
    table = Table(title=title, title_justify="left")
    if groups:
        table.add_column("group", justify="right")
    table.add_column("channel", justify="right")
    table.add_column("diagrams")
    table.add_column("cross section [pb]", justify="right")
    table.add_column("share", justify="right")
    table.add_column("events", justify="right")
    total = result.cross_section_pb if result.cross_section_pb else 1.0
    for c in result.channels:
        row = [str(c.channel), c.label, format_xs(c.cross_section_pb, c.error_pb)]
        share = c.cross_section_pb / total
        row += [f"{share:.1%}" if abs(share) >= 1e-3 else f"{share:.1e}", str(c.n_events)]
        table.add_row(*([str(c.group + 1)] if groups else []), *row)
    console.print(table)


def _print_summary(console: Console, result) -> None:
    from evgen.summary import format_xs

    table = Table(title=f"evgen run: {result.process}", title_justify="left")
    table.add_column("IDPRUP", justify="right")
    table.add_column("subprocess")
    table.add_column("cross section [pb]", justify="right")
    table.add_column("events", justify="right")
    for s in result.subprocesses:
        table.add_row(
            str(s.process_id), s.name, format_xs(s.cross_section_pb, s.error_pb), str(s.n_events)
        )
    table.add_section()
    table.add_row(
        "",
        "[bold]total[/]",
        f"[bold]{format_xs(result.cross_section_pb, result.error_pb)}[/]",
        f"[bold]{result.n_events}[/]",
    )
    console.print(table)
    if len(result.channels) > len({c.group for c in result.channels}):
        _print_channels(console, result)
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    names = {"vegas": "VEGAS", "madnis": "MadNIS", "cfm": "CFM (flow matching)"}
    facts.add_row("integrator", names.get(result.integrator, result.integrator))
    facts.add_row(
        "relative MC error", f"{result.error_pb / max(abs(result.cross_section_pb), 1e-300):.3%}"
    )
    stage = "integration" if result.integrator == "vegas" else "training"
    chi2 = "n/a (loaded state)" if math.isnan(result.chi2_dof) else f"{result.chi2_dof:.2f}"
    facts.add_row(f"chi2/dof ({stage})", chi2)
    facts.add_row(
        "unweighting efficiency",
        f"{result.unweighting_efficiency:.2%} (<|w|>/w_max over {result.n_weighted} weighted "
        f"events; {result.n_events} unweighted written)",
    )
    facts.add_row(
        "overweight events",
        f"{result.n_overweight} ({result.overweight_fraction:.2e} of the cross section "
        f"above w_max = {result.max_weight_pb:.4g} pb)",
    )
    t = result.timings
    facts.add_row(
        "time",
        ", ".join(f"{k} {v:.1f} s" for k, v in t.items()) + f"; total {sum(t.values()):.1f} s",
    )
    console.print(facts)
    width = max(len(k) for k in result.outputs) + 6 if result.outputs else 0
    for kind, path in result.outputs.items():  # whole paths, never wrapped or elided
        console.print(f"{kind + ' file':<{width}}{path}", soft_wrap=True, highlight=False)


def _run(args: argparse.Namespace, out: Console, err: Console) -> int:
    from evgen.card import load_card, parse_card
    from evgen.run import execute, prepare

    card, text = load_card(args.card)
    overrides = {
        "run": {
            k: v
            for k, v in {"nevents": args.nevents, "seed": args.seed, "device": args.device}.items()
            if v is not None
        },
        "output": {"path": args.output} if args.output else {},
    }
    if any(overrides.values()):
        data = card.model_dump()
        for section, values in overrides.items():
            data[section].update(values)
        card = parse_card(data, f"{args.card} (with command-line options)")
    prepared = prepare(card, text, args.card)
    reporter = _RichReporter(err, args.quiet)
    try:
        result = execute(prepared, reporter)
    finally:
        reporter.finish()
    _print_summary(out, result)
    return 0


def _unfolding(args: argparse.Namespace, out: Console, err: Console) -> int:
    """``evgen unfold`` and ``evgen detector`` (see :mod:`unfolding.command`)."""
    from unfolding.command import main as unfolding_main

    return unfolding_main(args, out, err)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: returns the exit status (0 success, 2 user error, 1 internal error)."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    try:
        if args.command == "run":
            return _run(args, out, err)
        if args.command in ("unfold", "detector"):
            return _unfolding(args, out, err)
        if args.command in ("train-generator", "generate"):
            from evgen.generators.command import main as generators_main

            return generators_main(args, out, err)
    except EvgenError as exc:
        print(f"evgen: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evgen: interrupted; no output written", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
