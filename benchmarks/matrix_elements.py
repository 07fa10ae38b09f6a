"""|M|^2 evaluations per second of evgen's automatic engine, next to madgraph4gpu's C++.

    python benchmarks/matrix_elements.py                      # the default scan
    python benchmarks/matrix_elements.py --processes "g g > t t~ g g" --batches 1000 10000 \
        --threads 1 --modes eager compiled --repeat 3

For each process (default: e+ e- > mu+ mu-, g g > t t~, g g > t t~ g, g g > t t~ g g; add
"g g > t t~ g g g" by name) and batch size (1e2 to 1e6 events; a batch whose estimated
time exceeds --max-seconds is skipped and marked), it times ``AutoProcess.matrix_element``
(|M|^2 summed over helicities and colours, RAMBO momenta and alpha_s fixed, nothing else)
with 1 and 2 torch threads, in eager mode and compiled (inductor; the one-off compilation
time is reported separately), and on CUDA when present. Each point is the best of
--repeat runs; the machine is shared with other jobs, so both the wall-clock rate and the
rate per CPU second of this process (robust to time lost to other jobs) are written, with
the load average. The pre-existing plan interpreter (``engine="reference"``) is timed
once per process for the speed-up.

madgraph4gpu's numbers are read from benchmarks/MG4GPU_RESULTS.md (written by
benchmarks/madgraph4gpu.py) when present: its best single-thread SIMD rate per CPU second
and the issue's target (a third of it per core).

Writes benchmarks/MATRIX_ELEMENTS.md (machine, command, tables). Not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from machine_info import cpu_model
from results_file import write_section

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from processes.auto import codegen  # noqa: E402
from processes.auto.plan import PlanExecutor, scan_momenta  # noqa: E402
from processes.auto.process import AutoProcess  # noqa: E402

DEFAULT_PROCESSES = ["e+ e- > mu+ mu-", "g g > t t~", "g g > t t~ g", "g g > t t~ g g"]
DEFAULT_BATCHES = [100, 1_000, 10_000, 100_000, 1_000_000]
ALPHA_S = 0.118


@dataclass
class Point:
    """One measurement: best wall-clock and CPU-time rates over the repeats."""

    process: str
    device: str
    mode: str
    threads: int
    batch: int
    wall_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    skipped: str = ""

    @property
    def rate(self) -> float:
        return self.batch / min(self.wall_s) if self.wall_s else math.nan

    @property
    def cpu_rate(self) -> float:
        """Events per CPU second of this process (all its threads)."""
        return self.batch / min(self.cpu_s) if self.cpu_s else math.nan


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _cpu_time() -> float:
    return time.process_time()


def time_call(fn, momenta, device: str, repeat: int) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(repeat):
        _sync(device)
        c0, t0 = _cpu_time(), time.perf_counter()
        fn(momenta, ALPHA_S)
        _sync(device)
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu_time() - c0)
    return walls, cpus


def _fmt(x: float) -> str:
    return "—" if x != x else f"{x:.3g}"


# --------------------------------------------------------------------------- MG4GPU


def read_mg4gpu(path: Path) -> dict[str, dict[str, str]]:
    """The 'Best per process' table of MG4GPU_RESULTS.md: process -> {column: text}."""
    if not path.exists():
        return {}
    lines = path.read_text().splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("## Best per process"))
    except StopIteration:
        return {}
    table = []
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            table.append(line)
        elif table:  # the first table after the heading ends at its first other line
            break
    if len(table) < 3:
        return {}
    header = [c.strip() for c in table[0].strip("|").split("|")]
    out = {}
    for line in table[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) != len(header):
            break
        out[cells[0]] = dict(zip(header, cells, strict=True))
    return out


def _column(row: dict[str, str], *words: str, exclude: tuple[str, ...] = ()) -> str | None:
    """The cell of the first column whose header has all ``words`` and none of ``exclude``
    (case-insensitive; the other script's headers may be reworded)."""
    for header, cell in row.items():
        h = header.lower()
        if all(w.lower() in h for w in words) and not any(x.lower() in h for x in exclude):
            return cell
    return None


def _number(text: str | None) -> float:
    if not text:
        return math.nan
    m = re.match(r"\s*([0-9.]+(?:e[+-]?[0-9]+)?)", text)
    return float(m.group(1)) if m else math.nan


# --------------------------------------------------------------------------- where the time goes


def breakdown(proc: AutoProcess, n: int, repeat: int) -> dict[str, float]:
    """CPU seconds per event of the eager generated code's stages, run op by op (not
    recorded): external wave functions, off-shell currents, amplitudes with their JAMP
    sums, colour sum (one thread)."""
    ex = proc.executor
    kernel = ex.kernel
    src = kernel.source
    cut_currents = src.index("    # off-shell currents")
    cut_amplitudes = src.index("    # amplitudes")
    stages = {
        "external": codegen._load(src[:cut_currents] + "    return None\n", "externals"),
        "currents": codegen._load(src[:cut_amplitudes] + "    return None\n", "currents"),
        "amplitudes": codegen._load(src, "all"),
    }
    p = scan_momenta(proc.masses, proc.plan.n_initial, n, seed=3)
    couplings = ex._real_couplings(ALPHA_S, p)
    hel, index = kernel._constants(p.device, p.dtype, tuple(kernel.rows_of(proc.plan.helicities)))
    momenta = p.permute(1, 2, 0).contiguous()
    # the generated code fills JAMPs on the full helicity grid (kernel.run picks the rows)
    jamps = kernel._workspace(p.device, torch.complex128, n)
    cumulative = {}
    for name, fn in stages.items():
        best = math.inf
        for _ in range(repeat):
            t0 = time.thread_time()
            fn(momenta, hel, couplings, None, jamps, None)
            best = min(best, time.thread_time() - t0)
        cumulative[name] = best
    full = jamps.reshape(kernel.n_groups, kernel.n_basis, kernel.n_full, n)
    if index is not None:
        full = full.index_select(2, index)
    best = math.inf
    for _ in range(repeat):
        t0 = time.thread_time()
        kernel.colour_sum(full).sum(0)
        best = min(best, time.thread_time() - t0)
    out = {
        "external wave functions": cumulative["external"],
        "off-shell currents": cumulative["currents"] - cumulative["external"],
        "amplitudes + JAMP sums": cumulative["amplitudes"] - cumulative["currents"],
        "colour sum (matrix product)": best,
    }
    return {k: v / n for k, v in out.items()}


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--processes", nargs="+", default=DEFAULT_PROCESSES)
    parser.add_argument("--batches", type=int, nargs="+", default=DEFAULT_BATCHES)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--modes", nargs="+", default=["eager", "compiled"], choices=["eager", "compiled"]
    )
    parser.add_argument(
        "--devices", nargs="+", default=None, help="default: cpu, and cuda when available"
    )
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="skip a batch whose estimated time (one call) exceeds this",
    )
    parser.add_argument(
        "--max-compile-seconds",
        type=float,
        default=1800.0,
        help="skip compiled mode for a process whose compiled graph is "
        "estimated to take longer than this to build",
    )
    parser.add_argument("--mg4gpu", type=Path, default=HERE / "MG4GPU_RESULTS.md")
    parser.add_argument("--output", type=Path, default=HERE / "MATRIX_ELEMENTS.md")
    parser.add_argument("--no-breakdown", action="store_true")
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite --output from the raw measurements of the last run (--output with "
        ".json) without measuring",
    )
    args = parser.parse_args(argv)
    raw_path = args.output.with_suffix(".json")
    if args.render_only:
        raw = json.loads(raw_path.read_text())
        args.batches, args.repeat = raw["batches"], raw["repeat"]
        text = render(
            args,
            raw["argv"],
            dt.datetime.fromisoformat(raw["started"]),
            raw["loads"],
            [Point(**p) for p in raw["points"]],
            raw["setup"],
            {tuple(k.split(" | ")): v for k, v in raw["compile_s"].items()},
            raw["reference"],
            raw["breakdowns"],
            read_mg4gpu(args.mg4gpu),
            raw["notes"],
            minutes=raw["minutes"],
        )
        _write(args.output, text)
        return 0

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    started = dt.datetime.now()
    loads = [os.getloadavg()[0]]
    points: list[Point] = []
    notes: list[str] = []
    setup: dict[str, float] = {}
    compile_s: dict[tuple[str, str], float] = {}
    reference: dict[str, float] = {}
    breakdowns: dict[str, dict[str, float]] = {}
    for name in args.processes:
        t0 = time.perf_counter()
        proc = AutoProcess.load(name)
        proc.executor.kernel  # noqa: B018 (generate the code now, inside the set-up time)
        setup[name] = time.perf_counter() - t0
        plan = proc.plan
        largest = max(args.batches)
        momenta_cpu = scan_momenta(plan.masses, plan.n_initial, largest, seed=1)
        print(f"{name}: plan and code in {setup[name]:.2f} s", flush=True)
        # the plan interpreter (previous engine), once, 1 thread
        torch.set_num_threads(1)
        ref = PlanExecutor(plan, proc.model, proc.params, engine="reference")
        _, cpus = time_call(ref.matrix_element, momenta_cpu[:16], "cpu", 1)
        n_ref = int(min(largest, 2000, max(16, 10.0 * 16 / max(min(cpus), 1e-9))))  # ~10 s
        _, cpus = time_call(ref.matrix_element, momenta_cpu[:n_ref], "cpu", 1)
        reference[name] = n_ref / min(cpus)
        if not args.no_breakdown:
            breakdowns[name] = breakdown(proc, min(largest, 512), args.repeat)
        for device in devices:
            momenta = momenta_cpu.to(device)
            for mode in args.modes:
                ex = PlanExecutor(plan, proc.model, proc.params, compile=mode == "compiled")
                if mode == "compiled":
                    estimate = _compile_estimate(plan)
                    if estimate > args.max_compile_seconds:
                        notes.append(
                            f"{name}, compiled ({device}): skipped, the graph would "
                            f"take ~{estimate / 60:.0f} min to compile "
                            f"(--max-compile-seconds {args.max_compile_seconds:.0f})"
                        )
                        continue
                    torch.set_num_threads(1)
                    chunk = ex.kernel.chunk_size(momenta.device, len(plan.helicities), True)
                    c0 = time.perf_counter()
                    ex.matrix_element(momenta[:chunk], ALPHA_S)  # builds the compiled chunk
                    compile_s[(name, device)] = time.perf_counter() - c0
                    if ex.kernel._failed:
                        notes.append(f"{name}, compiled ({device}): compilation failed")
                        continue
                thread_counts = args.threads if device == "cpu" else [1]
                if mode == "compiled" and _compile_estimate(plan) > args.max_compile_seconds / 6:
                    # each thread count is its own inductor build: one is enough here
                    thread_counts = thread_counts[:1]
                    notes.append(
                        f"{name}, compiled: {thread_counts[0]} thread(s) only (each "
                        "thread count is a separate build of minutes)"
                    )
                for threads in thread_counts:
                    torch.set_num_threads(threads)
                    c0 = time.perf_counter()
                    # compiled: a build per thread count; eager: the recorded graph of a
                    # chunk (any thread count)
                    warm = ex.kernel.chunk_size(
                        momenta.device, len(plan.helicities), mode == "compiled"
                    )
                    ex.matrix_element(momenta[:warm], ALPHA_S)
                    if mode == "eager" and threads == thread_counts[0] and ex.kernel._traced:
                        notes.append(
                            f"{name}, eager ({device}): recording the chunk of {warm} events "
                            f"took {time.perf_counter() - c0:.1f} s (once per chunk size)"
                        )
                    if mode == "compiled" and threads != 1:
                        compile_s[(name, f"{device}, {threads} threads")] = time.perf_counter() - c0
                    rate = math.nan
                    for batch in sorted(args.batches):
                        pt = Point(name, device, mode, threads, batch)
                        if rate == rate and batch / rate > args.max_seconds:
                            pt.skipped = f"> {args.max_seconds:.0f} s"
                        else:
                            pt.wall_s, pt.cpu_s = time_call(
                                ex.matrix_element, momenta[:batch], device, args.repeat
                            )
                            rate = pt.rate
                        points.append(pt)
                        print(
                            f"  {device} {mode} {threads}t batch {batch}: "
                            f"{_fmt(pt.rate)} /s wall, {_fmt(pt.cpu_rate)} /CPU-s "
                            f"{pt.skipped}",
                            flush=True,
                        )
                loads.append(os.getloadavg()[0])
    loads.append(os.getloadavg()[0])
    minutes = (dt.datetime.now() - started).total_seconds() / 60
    raw_path.write_text(
        json.dumps(
            {
                "argv": argv if argv is not None else sys.argv[1:],
                "started": started.isoformat(),
                "minutes": minutes,
                "batches": args.batches,
                "repeat": args.repeat,
                "loads": loads,
                "points": [asdict(p) for p in points],
                "setup": setup,
                "compile_s": {" | ".join(k): v for k, v in compile_s.items()},
                "reference": reference,
                "breakdowns": breakdowns,
                "notes": notes,
            },
            indent=1,
        )
    )
    text = render(
        args,
        argv if argv is not None else sys.argv[1:],
        started,
        loads,
        points,
        setup,
        compile_s,
        reference,
        breakdowns,
        read_mg4gpu(args.mg4gpu),
        notes,
        minutes=minutes,
    )
    _write(args.output, text)
    return 0


def _write(output: Path, text: str) -> None:
    """The full tables to ``output`` and, headings one level down, to the "matrix elements"
    section of benchmarks/RESULTS.md."""
    output.write_text(text)
    demoted = re.sub(r"^(#+) ", r"#\1 ", text, flags=re.MULTILINE)
    write_section("matrix elements", demoted)
    print(f"wrote {output} and the 'matrix elements' section of benchmarks/RESULTS.md")


def _compile_estimate(plan) -> float:
    """Rough CPU seconds inductor needs for a process's graph on this machine, cold: ~75
    graph nodes per HELAS call and ~30 ms per node (measured: g g > t t~ g, 3.2k nodes, 90
    CPU-s; g g > t t~ g g, 20.5k nodes, 650 CPU-s, half of it g++ on the one kernel)."""
    calls = len(plan.currents) + len(plan.amplitudes)
    return 75 * calls * 0.03


def render(
    args,
    argv,
    started,
    loads,
    points,
    setup,
    compile_s,
    reference,
    breakdowns,
    mg4gpu,
    notes,
    minutes: float,
) -> str:
    batches = sorted(args.batches)
    command = "python benchmarks/matrix_elements.py " + " ".join(
        f'"{a}"' if " " in a else a for a in (argv if argv is not None else sys.argv[1:])
    )
    lines = [
        "# evgen's automatic |M|^2: events per second",
        "",
        "Written by `benchmarks/matrix_elements.py`. |M|^2 summed over helicities and colours"
        " (`AutoProcess.matrix_element`, float64) at RAMBO points of a fixed sqrt(s), alpha_s"
        " fixed; nothing else is timed. Eager: the generated straight-line code"
        " (processes/auto/codegen.py) run by torch kernel by kernel; for batches of at least"
        " half a chunk it runs as a graph recorded once per chunk size (`torch.jit.trace`:"
        " the same kernels without the Python between them; the recording, seconds, is"
        " done in the warm-up and not timed); compiled: the same code traced into one graph"
        " and compiled by inductor (C++ with OpenMP/SIMD on CPU); reference: the plan"
        f" interpreter this replaces. Best of {args.repeat} runs per point.",
        "",
        "## Machine and command",
        "",
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores; {platform.platform()}",
        f"- torch {torch.__version__}, Python {platform.python_version()}"
        + (f", CUDA: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""),
        f"- Command: `{command}`",
        f"- Started {started:%Y-%m-%dT%H:%M:%S}, took "
        f"{minutes:.1f} min. Load average (1 min)"
        f" during the runs: {min(loads):.2f} to {max(loads):.2f} on {os.cpu_count()} cores:"
        " this machine is shared with other jobs, so the wall-clock rates are lower bounds;"
        " the rates per CPU second (CPU time of this process, all its threads) are not"
        " affected by time given to other jobs (shared caches still are).",
        "",
        "## Events per second (wall clock)",
        "",
        "| process | device | mode | threads | " + " | ".join(f"{b:,}" for b in batches) + " |",
        "|---|---|---|---|" + "---|" * len(batches),
    ]
    keys = []
    for pt in points:
        key = (pt.process, pt.device, pt.mode, pt.threads)
        if key not in keys:
            keys.append(key)

    def row(key, attr: str) -> str:
        cells = []
        for b in batches:
            pt = next(
                (
                    p
                    for p in points
                    if (p.process, p.device, p.mode, p.threads) == key and p.batch == b
                ),
                None,
            )
            if pt is None:
                cells.append("")
            elif pt.skipped:
                cells.append(f"skipped ({pt.skipped})")
            else:
                cells.append(_fmt(getattr(pt, attr)))
        return "| " + " | ".join(str(k) for k in key) + " | " + " | ".join(cells) + " |"

    lines += [row(k, "rate") for k in keys]
    lines += [
        "",
        "## Events per CPU second (1 thread: per core)",
        "",
        "| process | device | mode | threads | " + " | ".join(f"{b:,}" for b in batches) + " |",
        "|---|---|---|---|" + "---|" * len(batches),
    ]
    lines += [row(k, "cpu_rate") for k in keys if k[1] == "cpu"]
    lines += [
        "",
        "## Next to madgraph4gpu's C++ (1 thread, per CPU second)",
        "",
        "madgraph4gpu: best single-thread SIMD rate per CPU second from"
        " benchmarks/MG4GPU_RESULTS.md; the issue's target is a third of it per core."
        " evgen: best over batch sizes, 1 thread, per CPU second.",
        "",
        "| process | set-up (plan + code), s | reference engine /CPU-s | evgen eager /CPU-s"
        " | speed-up vs reference | evgen compiled /CPU-s | compile time, s | madgraph4gpu SIMD"
        " /CPU-s | evgen best / madgraph4gpu | target (1/3) | meets target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in setup:
        best = {}
        for mode in ("eager", "compiled"):
            rates = [
                p.cpu_rate
                for p in points
                if p.process == name
                and p.device == "cpu"
                and p.mode == mode
                and p.threads == 1
                and not p.skipped
            ]
            best[mode] = max(rates) if rates else math.nan
        mg = mg4gpu.get(name, {})
        mg_rate = _number(_column(mg, "cpu-s", "1 thread", exclude=("no simd", "cppnone")))
        target = _number(_column(mg, "target"))
        top = max((x for x in best.values() if x == x), default=math.nan)
        ratio = top / mg_rate if mg_rate == mg_rate else math.nan
        meets = "—" if target != target else ("yes" if top >= target else "no")
        comp = compile_s.get((name, "cpu"), math.nan)
        lines.append(
            f"| {name} | {setup[name]:.2f} | {_fmt(reference[name])} | {_fmt(best['eager'])}"
            f" | {_fmt(best['eager'] / reference[name])} | {_fmt(best['compiled'])}"
            f" | {_fmt(comp)} | {_fmt(mg_rate)} | {_fmt(ratio)} | {_fmt(target)} | {meets} |"
        )
    if breakdowns:
        lines += [
            "",
            "## Where the time goes (eager, 1 thread, CPU microseconds per event)",
            "",
            "| process | " + " | ".join(next(iter(breakdowns.values()))) + " |",
            "|---|" + "---|" * len(next(iter(breakdowns.values()))),
        ]
        for name, parts in breakdowns.items():
            lines.append(
                f"| {name} | " + " | ".join(f"{v * 1e6:.2f}" for v in parts.values()) + " |"
            )
    if notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
