"""MadGraph's own generated C++ (madgraph4gpu ``epochX/cudacpp/*.sa``): build, measure,
and extract reference matrix elements.

The standalone directories of madgraph4gpu hold the code MadGraph5_aMC@NLO's cudacpp
plugin generates for a process (HELAS/ALOHA calls, colour matrix, SIMD vectorisation)
and a ``check_cpp.exe`` that times |M|^2 on RAMBO phase-space points. This script never
downloads anything: point ``--source`` at a checkout you fetched yourself
(``git clone https://github.com/madgraph5/madgraph4gpu``). It copies each chosen ``.sa``
directory into ``--build-dir`` (the checkout is not modified) and builds it there with
the makefile's own variables (``BACKEND``, ``FPTYPE``, ``USEOPENMP``) and g++.

Two commands::

    # throughput table -> benchmarks/MG4GPU_RESULTS.md (minutes to an hour; not a test)
    python benchmarks/madgraph4gpu.py bench --source ~/madgraph4gpu
    # reference |M|^2 -> tests/data/mg4gpu/<process>.json
    python benchmarks/madgraph4gpu.py refs --source ~/madgraph4gpu

``bench`` measures ``EvtsPerSec[MECalcOnly]`` (events per second in the matrix-element
kernel alone, helicity and colour sums included) for each process, SIMD backend, thread
count and batch size (events per iteration), repeating each point and keeping the best.
One thread runs the makefile's default build (no OpenMP) pinned to core 0; two threads
run a ``USEOPENMP=1`` build pinned to cores 0-1 (see ``_OPENMP_PATCH`` for a fix the
current ``.sa`` sources need to compile with OpenMP).

``refs`` copies the first events of each process's shipped test dump
(``test/ref/dump_CPUTest.Sigma_sm_<proc>.txt``: momenta and |M|^2 at sqrt(s) = 1500 GeV,
from *massless* RAMBO, so top quarks there are off their mass shell) and adds events on
the mass shell (massive RAMBO, this script) whose |M|^2 the madgraph4gpu code built here
evaluates (``BACKEND=cppnone FPTYPE=d``, through its ``Bridge`` interface), once with the
param_card as shipped and once with the top width set to zero.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from machine_info import cpu_model

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

__all__ = [
    "MGProcess",
    "PROCESSES",
    "Measurement",
    "find_cudacpp",
    "prepare_tree",
    "build_check",
    "run_check",
    "measure",
    "BenchReport",
    "write_results",
    "massive_rambo",
    "main",
]

REPOSITORY = "https://github.com/madgraph5/madgraph4gpu"
#: sqrt(s) of madgraph4gpu's check_sa.cc and runTest.cc, GeV.
SQRT_S = 1500.0
#: g_s = sqrt(4 pi 0.118) that check_sa.cc, runTest.cc and fcheck_sa.f hard-code.
FIXED_G = 1.2177157847767195
BACKENDS = ("cppnone", "cppsse4", "cppavx2", "cpp512y", "cpp512z")
_BACKEND_FLAG = {  # the /proc/cpuinfo flag each SIMD backend needs
    "cppnone": None,
    "cppsse4": "sse4_2",
    "cppavx2": "avx2",
    "cpp512y": "avx512vl",
    "cpp512z": "avx512vl",
}
_DEFAULT_BATCHES = (128, 1024, 16384, 131072, 1048576)


@dataclass(frozen=True)
class MGProcess:
    """One madgraph4gpu standalone process.

    Attributes:
        name: MadGraph syntax, e.g. ``"g g > t t~"``.
        key: file stem for this repository (``tests/data/mg4gpu/<key>.json``).
        sa: the standalone directory under ``epochX/cudacpp``.
        dump: the stem of its test dump, ``test/ref/dump_CPUTest.<dump>.txt``.
        pdg: PDG ids of the external particles, incoming first (MadGraph's order).
        max_batch: largest default batch (events per iteration) for ``bench``.
    """

    name: str
    key: str
    sa: str
    dump: str
    pdg: tuple[int, ...]
    max_batch: int = 1048576


PROCESSES: dict[str, MGProcess] = {
    p.key: p
    for p in (
        MGProcess(
            "e+ e- > mu+ mu-", "ee_mumu", "ee_mumu.sa", "Sigma_sm_epem_mupmum", (-11, 11, -13, 13)
        ),
        MGProcess("g g > t t~", "gg_tt", "gg_tt.sa", "Sigma_sm_gg_ttx", (21, 21, 6, -6)),
        MGProcess("g g > t t~ g", "gg_ttg", "gg_ttg.sa", "Sigma_sm_gg_ttxg", (21, 21, 6, -6, 21)),
        MGProcess(
            "g g > t t~ g g", "gg_ttgg", "gg_ttgg.sa", "Sigma_sm_gg_ttxgg", (21, 21, 6, -6, 21, 21)
        ),
        MGProcess(
            "g g > t t~ g g g",
            "gg_ttggg",
            "gg_ttggg.sa",
            "Sigma_sm_gg_ttxggg",
            (21, 21, 6, -6, 21, 21, 21),
            max_batch=16384,
        ),
    )
}

#: The OpenMP build of the current ``.sa`` sources fails with g++ ("'allrndcol' has not
#: been declared"): sigmaKin's ``omp parallel for ... shared(...)`` list names the colour
#: selection arrays, which only the multichannel (``.mad``) code declares. The fix moves
#: them to the multichannel-only list; nothing else changes.
_OPENMP_ERROR = "CPPProcess.cc: error: 'allrndcol' has not been declared (and 'allselcol')"
_OPENMP_PATCH = (
    "allmomenta, allrndcol, allrndhel, allselcol, allselhel,",
    "allmomenta, allrndhel, allselhel,",
    "#define _OMPLIST1 , allDenominators,",
    "#define _OMPLIST1 , allrndcol, allselcol, allDenominators,",
)


# --------------------------------------------------------------------------- source tree


def find_cudacpp(source: Path) -> Path:
    """The ``epochX/cudacpp`` directory of a madgraph4gpu checkout (or the directory itself)."""
    for candidate in (source / "epochX" / "cudacpp", source):
        if (candidate / "gg_tt.sa").is_dir() or any(candidate.glob("*.sa")):
            return candidate
    raise SystemExit(f"--source {source}: no epochX/cudacpp/*.sa directories there")


def source_commit(source: Path, override: str | None) -> str:
    """The checkout's commit (``git rev-parse HEAD``), ``override`` if given, else unknown."""
    if override:
        return override
    try:
        out = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def subprocess_dir(tree: Path) -> Path:
    """The single ``SubProcesses/P1_*`` directory of a standalone process tree."""
    found = sorted(p for p in (tree / "SubProcesses").glob("P1_*") if p.is_dir())
    if len(found) != 1:
        raise SystemExit(f"{tree}: expected one SubProcesses/P1_* directory, found {found}")
    return found[0]


def library_name(p1: Path) -> str:
    """The process library the makefile builds, ``mg5amc_<last two name parts>_cpp``."""
    return "mg5amc_" + "_".join(p1.name.split("_")[-2:]) + "_cpp"


def prepare_tree(cudacpp: Path, build_root: Path, proc: MGProcess, variant: str) -> list[str]:
    """Copy ``<proc>.sa`` to ``build_root/<variant>/`` once; patch it for OpenMP if needed.

    Args:
        cudacpp: the checkout's ``epochX/cudacpp``.
        build_root: where builds live (created).
        variant: ``"st"`` (as shipped) or ``"omp"`` (for ``USEOPENMP=1``).

    Returns:
        Descriptions of the patches applied (empty for ``"st"`` or already-fixed sources).
    """
    tree = build_root / variant / proc.sa
    if not tree.exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(cudacpp / proc.sa, tree, symlinks=True)
    patches: list[str] = []
    if variant == "omp":
        cpp = subprocess_dir(tree) / "CPPProcess.cc"
        text = cpp.read_text()
        old0, new0, old1, new1 = _OPENMP_PATCH
        if old0 in text:
            text = text.replace(old0, new0).replace(old1, new1)
            cpp.write_text(text)
        if new0 in text:
            patches.append(
                f"{proc.sa}/{cpp.parent.name}/CPPProcess.cc: allrndcol, allselcol moved from "
                "_OMPLIST0 to the multichannel-only _OMPLIST1 (they are undeclared in .sa code)"
            )
    return patches


# --------------------------------------------------------------------------- build


def build_tag(backend: str, fptype: str) -> str:
    """The makefile's build directory tag, e.g. ``512y_d_inl0_hrd0``."""
    return f"{backend.removeprefix('cpp')}_{fptype}_inl0_hrd0"


def _make_args(backend: str, fptype: str, openmp: bool, jobs: int, cxx: str) -> list[str]:
    args = ["make", "-f", "cudacpp.mk", f"-j{jobs}", f"CXX={cxx}", f"BACKEND={backend}"]
    args += [f"FPTYPE={fptype}", "USEBUILDDIR=1", "USEGTEST=0"]
    args += ["HASCURAND=hasNoCurand", "HASHIPRAND=hasNoHiprand", "HASBLAS=hasNoBlas"]
    if openmp:
        args.append("USEOPENMP=1")
    return args


@dataclass
class Build:
    """A built ``check_cpp.exe`` and the g++ command line that compiled CPPProcess.cc."""

    exe: Path
    compile_line: str
    seconds: float


def build_check(
    tree: Path, backend: str, fptype: str, openmp: bool, jobs: int, cxx: str, log: Path
) -> Build:
    """Build ``check_cpp.exe`` of one standalone tree with madgraph4gpu's makefile.

    Only the check executable is built (the Fortran ``fcheck`` needs gfortran, the
    tests need googletest from the network). Raises ``RuntimeError`` with the make
    output's last lines if the build fails.
    """
    p1 = subprocess_dir(tree)
    tag = build_tag(backend, fptype)
    exe = p1 / f"build.{tag}" / "check_cpp.exe"
    t0 = time.perf_counter()
    cmd = [*_make_args(backend, fptype, openmp, jobs, cxx), f"build.{tag}/check_cpp.exe"]
    res = subprocess.run(cmd, cwd=p1, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a") as f:
        f.write(f"\n### {p1} $ {' '.join(cmd)}\n{res.stdout}\n{res.stderr}\n")
    if res.returncode != 0 or not exe.exists():
        tail = "\n".join((res.stdout + res.stderr).splitlines()[-15:])
        raise RuntimeError(f"build failed in {p1}: {' '.join(cmd)}\n{tail}")
    compile_line = next(
        (ln for ln in res.stdout.splitlines() if "-c CPPProcess.cc" in ln),
        "(up to date: see an earlier log)",
    )
    return Build(exe, compile_line.strip(), seconds)


# --------------------------------------------------------------------------- run


_RATE_RE = re.compile(r"EvtsPerSec\[(MECalcOnly|MatrixElems)\] \((?:3a|3)\) = \( *([0-9.eE+-]+)")
_MEAN_RE = re.compile(r"MeanMatrixElemValue\s+= \( *([0-9.eE+-]+|nan|-?inf)", re.IGNORECASE)
_SIMD_RE = re.compile(r"Internal loops fptype_sv\s+= (.*)")
_TIME_ME_RE = re.compile(r"^TOTAL  \(3a\) :\s+([0-9.eE+-]+) sec", re.MULTILINE)
_TIME_ALL_RE = re.compile(r"^TOTAL       :\s+([0-9.eE+-]+) sec", re.MULTILINE)


@dataclass
class Run:
    """One run of ``check_cpp.exe -p BLOCKS THREADS NITER``."""

    me_per_s: float  #: EvtsPerSec[MECalcOnly]
    me_per_s_total: float  #: EvtsPerSec[MatrixElems]
    events: int
    wall_s: float
    simd: str
    #: events per CPU second in the ME kernel: events / (process CPU time x the ME share of
    #: its wall time); insensitive to time lost to other jobs (meaningful for 1 thread)
    me_per_cpu_s: float = float("nan")


def run_check(exe: Path, batch: int, niter: int, threads: int, pin: bool = True) -> Run:
    """Run ``check_cpp.exe -p`` with ``batch`` events per iteration on ``threads`` cores.

    ``OMP_NUM_THREADS`` is set to ``threads``; with ``pin`` the process is bound to the
    first ``threads`` cores with ``taskset``. The working directory is the executable's
    P1 directory (it reads ``../../Cards/param_card.dat``).
    """
    gputhreads = min(batch, 256)
    if batch % gputhreads:
        raise ValueError(f"batch {batch}: must be a multiple of {gputhreads}")
    cmd = [str(exe), "-p", str(batch // gputhreads), str(gputhreads), str(niter)]
    if pin and shutil.which("taskset"):
        cmd = ["taskset", "-c", ",".join(str(i) for i in range(threads)), *cmd]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = subprocess.run(cmd, cwd=exe.parent.parent, capture_output=True, text=True, env=env)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter() - t0
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}")
    rates = dict((k, float(v)) for k, v in _RATE_RE.findall(res.stdout))
    mean = _MEAN_RE.search(res.stdout)
    if "MECalcOnly" not in rates or mean is None or not math.isfinite(float(mean.group(1))):
        raise RuntimeError(f"{' '.join(cmd)}: no finite throughput/ME in\n{res.stdout[-2000:]}")
    simd = _SIMD_RE.search(res.stdout)
    t_me, t_all = _TIME_ME_RE.search(res.stdout), _TIME_ALL_RE.search(res.stdout)
    per_cpu = float("nan")
    if t_me and t_all and cpu > 0:
        per_cpu = batch * niter / (cpu * float(t_me.group(1)) / float(t_all.group(1)))
    return Run(
        rates["MECalcOnly"],
        rates.get("MatrixElems", rates["MECalcOnly"]),
        batch * niter,
        wall,
        simd.group(1).strip() if simd else "?",
        per_cpu,
    )


def _cpu_times(cores: range) -> list[tuple[int, int]]:
    """(idle, total) jiffies of each core in ``cores`` from /proc/stat."""
    rows = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            v = [int(x) for x in values]
            rows[int(name[3:])] = (v[3] + v[4], sum(v[:8]))
    return [rows[c] for c in cores]


def wait_for_idle(cores: range, min_idle: float, max_wait_s: float, dt_s: float = 0.5) -> float:
    """Wait until every core in ``cores`` was idle for at least ``min_idle`` of ``dt_s``.

    Returns the smallest idle fraction of the last sample (1.0 if /proc/stat is
    unreadable); gives up after ``max_wait_s`` seconds.
    """
    t0 = time.perf_counter()
    while True:
        try:
            a = _cpu_times(cores)
            time.sleep(dt_s)
            b = _cpu_times(cores)
        except (OSError, KeyError):
            return 1.0
        idle = min((bi - ai) / max(1, bt - at) for (ai, at), (bi, bt) in zip(a, b, strict=True))
        if idle >= min_idle or time.perf_counter() - t0 > max_wait_s:
            return idle


@dataclass
class Measurement:
    """Best-of-``repeats`` throughput at one (process, backend, threads, batch) point."""

    process: str
    backend: str
    threads: int
    batch: int
    niter: int
    rates: list[float] = field(default_factory=list)  #: ME/s of each repeat
    cpu_rates: list[float] = field(default_factory=list)  #: ME per CPU second of each repeat
    simd: str = ""
    load: tuple[float, float] = (0.0, 0.0)  #: 1-min load average before, after
    idle: list[float] = field(default_factory=list)  #: idle fraction of its cores before each
    skipped: str = ""

    @property
    def best(self) -> float:
        return max(self.rates) if self.rates else float("nan")

    @property
    def best_cpu(self) -> float:
        """Best events per CPU second in the ME kernel (1 thread only, else NaN)."""
        ok = [r for r in self.cpu_rates if math.isfinite(r)]
        return max(ok) if ok and self.threads == 1 else float("nan")


def measure(
    exe: Path,
    proc: MGProcess,
    backend: str,
    threads: int,
    batch: int,
    *,
    repeats: int,
    target_s: float,
    max_s: float,
    rate_hint: float | None,
    min_idle: float = 0.0,
    max_wait_s: float = 0.0,
) -> Measurement:
    """Measure one point: calibrate the number of iterations, then ``repeats`` runs.

    A first one-iteration run (also a warm-up) fixes ``niter`` so that a run lasts about
    ``target_s`` seconds in the ME kernel. A point whose single iteration would take more
    than ``max_s`` (estimated from ``rate_hint``, the rate at a smaller batch) is skipped.
    Before each run it waits (up to ``max_wait_s``) until the cores it uses are at least
    ``min_idle`` idle, so that runs land in quiet moments of a shared machine.
    """
    m = Measurement(proc.name, backend, threads, batch, 1)
    if rate_hint and batch / rate_hint > max_s:
        m.skipped = f"skipped: one iteration ~{batch / rate_hint:.0f} s > {max_s:.0f} s"
        return m
    load0 = os.getloadavg()[0]
    first = run_check(exe, batch, 1, threads)
    m.niter = max(1, min(10000, math.ceil(target_s * first.me_per_s / batch)))
    for _ in range(repeats):
        m.idle.append(wait_for_idle(range(threads), min_idle, max_wait_s))
        run = run_check(exe, batch, m.niter, threads)
        m.rates.append(run.me_per_s)
        m.cpu_rates.append(run.me_per_cpu_s)
        m.simd = run.simd
    m.load = (load0, os.getloadavg()[0])
    return m


# --------------------------------------------------------------------------- report


def _fmt(x: float) -> str:
    return "—" if not math.isfinite(x) else f"{x:.3g}"


def _machine_lines(cxx: str) -> list[str]:
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                simd = ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512vl", "avx512dq"]
                flags = " ".join(f for f in simd if f in have)
                break
    except OSError:
        pass
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
        compiler = version.splitlines()[0]
    except (OSError, IndexError):
        compiler = cxx
    return [
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores; SIMD flags: {flags or '?'}",
        f"- OS: {platform.platform()}",
        f"- Compiler: {compiler}",
    ]


@dataclass
class BenchReport:
    """Everything the markdown report shows; saved as JSON next to the builds so that
    ``bench --report-only`` can rewrite the report without measuring again."""

    commit: str
    started: str
    argv: list[str]
    settings: dict  #: fptype, repeats, target_seconds, max_seconds, min_idle, max_wait, cxx
    batches: list[int]
    seconds: float = 0.0
    patches: list[str] = field(default_factory=list)
    compile_lines: list[str] = field(default_factory=list)  #: g++ lines of CPPProcess.cc
    measurements: list[Measurement] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> BenchReport:
        data = json.loads(path.read_text())
        data["measurements"] = [
            Measurement(**{**m, "load": tuple(m["load"])}) for m in data["measurements"]
        ]
        return cls(**data)


def write_results(path: Path, report: BenchReport) -> None:
    """Write the markdown report (machine, command, flags, tables)."""
    measurements, opt = report.measurements, report.settings
    batches = report.batches
    lines = [
        "# madgraph4gpu standalone C++: |M|^2 throughput on this machine",
        "",
        f"MadGraph's own generated code ({REPOSITORY} at `{report.commit}`, "
        "`epochX/cudacpp/*.sa`),",
        "built here with its makefile and g++ and timed with its `check_cpp.exe -p BLOCKS "
        "THREADS NITER`.",
        "Numbers are `EvtsPerSec[MECalcOnly]`: events per second in the matrix-element "
        "kernel alone",
        "(|M|^2 summed over helicities and colours; RAMBO and random numbers excluded), "
        f"FPTYPE={opt['fptype']}",
        f"(double precision everywhere), the best of {opt['repeats']} run(s) of "
        f"~{opt['target_seconds']:g} s each. 'batch' is events per iteration.",
        "",
        "## Machine and command",
        "",
        *_machine_lines(opt["cxx"]),
        f"- Started {report.started}, took {report.seconds / 60:.1f} min. Load average "
        "(1 min) during the runs: "
        + (
            f"{min(m.load[0] for m in measurements if m.rates):.2f} to "
            f"{max(max(m.load) for m in measurements if m.rates):.2f}"
            if any(m.rates for m in measurements)
            else "n/a"
        )
        + " (other jobs share this machine; 2-thread numbers suffer most).",
        "- Command: `python benchmarks/madgraph4gpu.py " + " ".join(report.argv) + "`",
        "- Make: `make -f cudacpp.mk BACKEND=<backend> FPTYPE="
        f"{opt['fptype']} USEBUILDDIR=1 USEGTEST=0 HASCURAND=hasNoCurand "
        "HASHIPRAND=hasNoHiprand HASBLAS=hasNoBlas [USEOPENMP=1] build.<tag>/check_cpp.exe`",
        "- 1 thread: default build (no OpenMP), `OMP_NUM_THREADS=1 taskset -c 0`; "
        "2 threads: `USEOPENMP=1` build, `OMP_NUM_THREADS=2 taskset -c 0,1`.",
        f"- Before each run: wait (at most {opt['max_wait']:g} s) until the cores it uses are "
        f"{opt['min_idle']:.0%} idle over 0.5 s (the idle fractions are in the last table).",
    ]
    if report.patches:
        lines.append(
            "- Patch applied to the OpenMP copies only; without it g++ stops with "
            f"`{_OPENMP_ERROR}`:"
        )
        lines += [f"  - {p}" for p in sorted(set(report.patches))]
    lines += ["", "Compile lines of CPPProcess.cc (the same for every process):", ""]
    lines += [f"- `{c}`" for c in report.compile_lines]
    opt_max_seconds = opt["max_seconds"]

    table: dict[tuple[str, str, int], dict[int, Measurement]] = {}
    for m in measurements:
        table.setdefault((m.process, m.backend, m.threads), {})[m.batch] = m
    for title, value, only_one in (
        ("Events per second in the ME kernel (wall clock, best of the repeats)", "best", False),
        (
            "Events per CPU second in the ME kernel, 1 thread (robust to time lost to other "
            "jobs; see the notes)",
            "best_cpu",
            True,
        ),
    ):
        lines += ["", f"## {title}", ""]
        header = "| process | backend | SIMD | threads | " + " | ".join(f"{b:,}" for b in batches)
        lines += [header + " |", "|" + "---|" * (4 + len(batches))]
        for (name, backend, threads), row in table.items():
            if only_one and threads != 1:
                continue
            simd = next((m.simd for m in row.values() if m.simd), "")
            simd = simd.split("[cxtype")[0].strip()
            cells = [
                _fmt(getattr(row[b], value)) if b in row and row[b].rates else "" for b in batches
            ]
            lines.append(f"| {name} | {backend} | {simd} | {threads} | " + " | ".join(cells) + " |")

    lines += [
        "",
        "## Best per process and the evgen target of issue 6",
        "",
        "Issue 6 asks evgen's g g > t t~ g g |M|^2 to reach at least one third of this code's "
        "single-core SIMD throughput per core. The target column is one third of the larger "
        "of the two single-thread SIMD figures (wall clock, per CPU second); the best backend "
        "and the SIMD gain are judged per CPU second (the wall clock where that is missing).",
        "",
        "| process | best SIMD backend | ME/s, 1 thread (wall) | ME per CPU-s, 1 thread | "
        "no SIMD (cppnone), ME per CPU-s | SIMD gain | ME/s, 2 threads (wall) | "
        "2 threads / 1 thread (wall) | evgen target, ME/s per core |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for proc in PROCESSES.values():
        ms = [m for m in measurements if m.process == proc.name and m.rates]
        one = [m for m in ms if m.threads == 1]
        if not any(m.backend != "cppnone" for m in one):
            continue

        def score(m: Measurement) -> float:
            return m.best_cpu if math.isfinite(m.best_cpu) else m.best

        top = max((m for m in one if m.backend != "cppnone"), key=score)
        wall1 = max(m.best for m in one if m.backend == top.backend)
        none = max((score(m) for m in one if m.backend == "cppnone"), default=float("nan"))
        two = max(
            (m.best for m in ms if m.threads == 2 and m.backend == top.backend),
            default=float("nan"),
        )
        lines.append(
            f"| {proc.name} | {top.backend} | {_fmt(wall1)} | {_fmt(top.best_cpu)} "
            f"(batch {top.batch:,}) | {_fmt(none)} | {_fmt(score(top) / none)} | "
            f"{_fmt(two)} | {_fmt(two / wall1)} | {_fmt(max(wall1, score(top)) / 3)} |"
        )

    lines += [
        "",
        "## Every measurement",
        "",
        "| process | backend | threads | batch | iterations | ME/s per repeat | "
        "ME per CPU-s per repeat | idle cores before each | load before/after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in measurements:
        rates = ", ".join(_fmt(r) for r in m.rates) if m.rates else m.skipped
        cpu = ", ".join(_fmt(r) for r in m.cpu_rates) if m.threads == 1 else ""
        idle = ", ".join(f"{x:.2f}" for x in m.idle)
        lines.append(
            f"| {m.process} | {m.backend} | {m.threads} | {m.batch:,} | {m.niter} | {rates} | "
            f"{cpu} | {idle} | {m.load[0]:.2f}/{m.load[1]:.2f} |"
        )
    lines += [
        "",
        "## Notes",
        "",
        "- Code: the `.sa` (standalone) output of MadGraph5_aMC@NLO's cudacpp plugin with "
        "the makefile defaults HELINL=0 (HELAS calls not inlined) and HRDCOD=0 (parameters "
        "read from the param_card); FPTYPE=d here, whereas madgraph4gpu's default is m "
        "(double, with the colour sum in single precision), because evgen computes in "
        "float64.",
        "- 'ME per CPU second' = events / (the process's CPU time x the ME kernel's share of "
        "its wall time, from check_cpp.exe's own timers). On a machine shared with other "
        "jobs the wall-clock rate loses the time the core was given to others; this one "
        "does not (caches shared with other jobs still cost something). It is given for 1 "
        "thread only.",
        "- The C++ code computes events in SIMD pages (4 or 8 doubles) with the helicity "
        "and colour sums inside each page; the batch size only amortises per-iteration "
        "overhead (and, for 2 threads, OpenMP's fork/join over pages).",
        "- A batch whose single iteration would take longer than "
        f"{opt_max_seconds:g} s (estimated from the rate at the previous batch) is "
        "skipped; g g > t t~ g g g stops at 16,384 events per iteration by default.",
        "- 2 threads: OpenMP over SIMD pages of one process; with other jobs on this "
        "2-core machine the second core is rarely free, so these are lower bounds.",
        "",
    ]
    path.write_text("\n".join(lines))


# --------------------------------------------------------------------------- bench


def available_backends() -> list[str]:
    """The C++ backends this CPU can run (from the /proc/cpuinfo flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        have = set(next(ln for ln in text.splitlines() if ln.startswith("flags")).split())
    except (OSError, StopIteration):
        return ["cppnone"]
    return [b for b in BACKENDS if _BACKEND_FLAG[b] is None or _BACKEND_FLAG[b] in have]


def _compile_lines(log: Path) -> list[str]:
    """The distinct g++ command lines that compiled CPPProcess.cc, from the build log."""
    if not log.exists():
        return []
    found = [ln.strip() for ln in log.read_text().splitlines() if "-c CPPProcess.cc" in ln]
    return sorted(set(found))


def bench(args: argparse.Namespace) -> int:
    """Build and time the chosen processes; write the markdown table."""
    raw = args.build_dir / "bench_measurements.json"
    if args.report_only:
        write_results(args.output, BenchReport.load(raw))
        print(f"wrote {args.output} from {raw}")
        return 0
    cudacpp = find_cudacpp(args.source)
    build_root = args.build_dir
    log = build_root / "build.log"
    backends = args.backends or available_backends()
    bad = sorted(set(backends) - set(available_backends()))
    if bad:
        raise SystemExit(
            f"--backends: this CPU cannot run {bad}; it can run {available_backends()}"
        )
    settings = {k: getattr(args, k) for k in ("fptype", "repeats", "target_seconds")}
    settings |= {k: getattr(args, k) for k in ("max_seconds", "min_idle", "max_wait", "cxx")}
    report = BenchReport(
        commit=source_commit(args.source, args.commit),
        started=dt.datetime.now().isoformat(timespec="seconds"),
        argv=sys.argv[1:],
        settings=settings,
        batches=list(args.batches),
    )
    t_start = time.perf_counter()
    for key in args.processes:
        proc = PROCESSES[key]
        batches = [b for b in args.batches if b <= (args.max_batch or proc.max_batch)]
        for variant, threads_list in (
            ("st", [t for t in args.threads if t == 1]),
            ("omp", [t for t in args.threads if t > 1]),
        ):
            if not threads_list:
                continue
            report.patches += prepare_tree(cudacpp, build_root, proc, variant)
            for backend in backends:
                scan = not args.scan_backends or backend in args.scan_backends
                if variant == "omp" and not scan:
                    continue
                tree = build_root / variant / proc.sa
                b = build_check(
                    tree, backend, args.fptype, variant == "omp", args.jobs, args.cxx, log
                )
                print(f"built {tree.name} {backend} ({variant}) in {b.seconds:.0f} s", flush=True)
                report.compile_lines = _compile_lines(log)
                for threads in threads_list:
                    hint = None
                    for batch in batches if scan else [args.survey_batch]:
                        m = measure(
                            b.exe,
                            proc,
                            backend,
                            threads,
                            batch,
                            repeats=args.repeats,
                            target_s=args.target_seconds,
                            max_s=args.max_seconds,
                            rate_hint=hint,
                            min_idle=args.min_idle,
                            max_wait_s=args.max_wait,
                        )
                        if m.rates:
                            hint = m.best
                        report.measurements.append(m)
                        report.seconds = time.perf_counter() - t_start
                        report.save(raw)  # after every point, so a long run can be followed
                        write_results(args.output, report)
                        print(
                            f"{proc.name:18s} {backend:8s} {threads}t batch {batch:>8,}: "
                            f"{_fmt(m.best):>8s} ME/s {m.skipped}",
                            flush=True,
                        )
    print(f"wrote {args.output} and {raw}")
    return 0


# --------------------------------------------------------------------------- references

_DRIVER = r"""// Written by evgen's benchmarks/madgraph4gpu.py: |M|^2 of a madgraph4gpu standalone
// process at given momenta, through its Bridge (the interface MadEvent's Fortran uses).
// stdin: nevt, then nevt*npar*4 numbers (E px py pz per particle, GeV). stdout: |M|^2.
// The param card is ../Cards/param_card.dat (or up to two directories higher).
#include "mgOnGpuConfig.h"
#include "Bridge.h"
#include <cstdio>
#include <iostream>
#include <vector>
using namespace mg5amcCpu;
int main()
{
  unsigned int nevt = 0;
  if( !( std::cin >> nevt ) || nevt == 0 ) return 2;
  constexpr int npar = CPPProcess::npar;
  constexpr int np4 = CPPProcess::np4;
  const unsigned int npad = ( ( nevt + 31 ) / 32 ) * 32; // a multiple of any SIMD page
  std::vector<double> p( (size_t)npad * npar * np4 );
  for( size_t i = 0; i < (size_t)nevt * npar * np4; ++i )
    if( !( std::cin >> p[i] ) ) return 3;
  for( unsigned int ievt = nevt; ievt < npad; ++ievt )
    for( int k = 0; k < npar * np4; ++k ) p[(size_t)ievt * npar * np4 + k] = p[k];
  const double fixedG = 1.2177157847767195; // as check_sa.cc and runTest.cc
  std::vector<double> gs( npad, fixedG ), rndhel( npad, 0.5 ), rndcol( npad, 0.5 );
  std::vector<double> mes( npad, 0. );
  std::vector<int> selhel( npad, 0 ), selcol( npad, 0 );
  Bridge<double> bridge( npad, npar, np4 );
  bridge.cpu_sequence( p.data(), gs.data(), rndhel.data(), rndcol.data(), nullptr, nullptr,
                       mes.data(), selhel.data(), selcol.data() );
  for( unsigned int ievt = 0; ievt < nevt; ++ievt ) std::printf( "%.17e\n", mes[ievt] );
  return 0;
}
"""


def parse_dump(path: Path, n: int) -> list[dict]:
    """The first ``n`` events of a madgraph4gpu test dump: momenta (GeV) and ME."""
    events: list[dict] = []
    for line in path.read_text().splitlines():
        s = line.split()
        if not s:
            continue
        if s[0] == "Event":
            if len(events) == n:
                break
            events.append({"event": int(s[1]), "batch": int(s[3]), "p": []})
        elif s[0] == "ME":
            events[-1]["me"] = float(s[1])
        elif s[0] in ("ChanId", "SelHel", "SelCol"):
            continue
        else:
            assert int(s[0]) == len(events[-1]["p"]), line
            events[-1]["p"].append([float(x) for x in s[1:5]])
    return events


def read_param_card(path: Path) -> dict[str, float]:
    """Masses, widths and SM inputs of a param_card.dat, by their MadGraph names.

    ``MW_card`` is the W mass the card prints for information (MadGraph derives MW from
    aEWM1, Gf and MZ; the card shows it to 7 digits).
    """
    names = {
        ("mass", 5): "MB",
        ("mass", 6): "MT",
        ("mass", 15): "MTA",
        ("mass", 23): "MZ",
        ("mass", 25): "MH",
        ("mass", 24): "MW_card",
        ("sminputs", 1): "aEWM1",
        ("sminputs", 2): "Gf",
        ("sminputs", 3): "aS",
        ("yukawa", 5): "ymb",
        ("yukawa", 6): "ymt",
        ("yukawa", 15): "ymtau",
        ("decay", 6): "WT",
        ("decay", 23): "WZ",
        ("decay", 24): "WW",
        ("decay", 25): "WH",
    }
    out: dict[str, float] = {}
    block = ""
    for line in path.read_text().splitlines():
        s = line.split("#")[0].split()
        if not s:
            continue
        if s[0].lower() == "block":
            block = s[1].lower()
        elif s[0].lower() == "decay":
            block = "decay"
            if (block, int(s[1])) in names:
                out[names[(block, int(s[1]))]] = float(s[2])
        elif block and len(s) >= 2 and (block, int(s[0])) in names:
            out[names[(block, int(s[0]))]] = float(s[1])
    return out


def derived_parameters(card: dict[str, float]) -> dict[str, float]:
    """MW, sin^2(theta_W), e and g_s as Parameters_sm.cc derives them (G_mu scheme)."""
    a_ew = 1.0 / card["aEWM1"]
    mz2 = card["MZ"] ** 2
    mw = math.sqrt(
        mz2 / 2 + math.sqrt(mz2**2 / 4 - a_ew * math.pi * mz2 / (card["Gf"] * math.sqrt(2)))
    )
    return {
        "MW": mw,
        "sw2": 1 - mw**2 / mz2,
        "ee": 2 * math.sqrt(a_ew) * math.sqrt(math.pi),
        "G": FIXED_G,
        "alpha_s_of_G": FIXED_G**2 / (4 * math.pi),
    }


def massive_rambo(sqrt_s: float, masses: Sequence[float], rng: random.Random) -> list[list[float]]:
    """One phase-space point of n outgoing particles with the given masses (GeV).

    RAMBO: Kleiss, Stirling & Ellis, Comput. Phys. Commun. 40 (1986) 359: n massless
    isotropic momenta, boosted and scaled to (sqrt_s, 0, 0, 0), then three-momenta scaled
    by xi (found by Newton's method) so that sum_i sqrt(m_i^2 + xi^2 |p_i|^2) = sqrt_s.
    Energies are then sqrt(m^2 + |p|^2), so every particle is exactly on its shell.

    Returns:
        n lists (E, px, py, pz) in GeV.
    """
    n = len(masses)
    q = []
    for _ in range(n):
        c = 2 * rng.random() - 1
        phi = 2 * math.pi * rng.random()
        e = -math.log(rng.random() * rng.random())
        st = math.sqrt(1 - c * c)
        q.append([e, e * st * math.cos(phi), e * st * math.sin(phi), e * c])
    big = [sum(v[k] for v in q) for k in range(4)]
    mass = math.sqrt(big[0] ** 2 - big[1] ** 2 - big[2] ** 2 - big[3] ** 2)
    b = [-big[k] / mass for k in (1, 2, 3)]
    gamma, x = big[0] / mass, sqrt_s / mass
    a = 1 / (1 + gamma)
    p = []
    for v in q:
        bq = b[0] * v[1] + b[1] * v[2] + b[2] * v[3]
        p.append(
            [x * (gamma * v[0] + bq)]
            + [x * (v[k + 1] + b[k] * v[0] + a * bq * b[k]) for k in range(3)]
        )
    xi = math.sqrt(max(0.0, 1 - (sum(masses) / sqrt_s) ** 2))
    for _ in range(100):
        es = [math.sqrt(m * m + xi * xi * v[0] ** 2) for m, v in zip(masses, p, strict=True)]
        f = sum(es) - sqrt_s
        df = sum(xi * v[0] ** 2 / e for v, e in zip(p, es, strict=True))
        step = f / df
        xi -= step
        if abs(step) < 1e-16 * xi:
            break
    out = []
    for m, v in zip(masses, p, strict=True):
        three = [xi * v[k] for k in (1, 2, 3)]
        out.append([math.sqrt(m * m + sum(t * t for t in three)), *three])
    return out


def _evaluate(driver: Path, cards: Path, momenta: list[list[list[float]]]) -> list[float]:
    """|M|^2 from the driver with the param card in ``cards/Cards/param_card.dat``."""
    run_dir = cards / "SubProcesses"
    run_dir.mkdir(parents=True, exist_ok=True)
    text = f"{len(momenta)}\n" + "\n".join(
        " ".join(repr(x) for leg in ev for x in leg) for ev in momenta
    )
    res = subprocess.run(
        [str(driver)], input=text, capture_output=True, text=True, cwd=run_dir, check=True
    )
    values = [float(x) for x in res.stdout.split()]
    if len(values) != len(momenta):
        raise RuntimeError(f"{driver}: expected {len(momenta)} values, got {res.stdout!r}")
    return values


_NAMES = {21: "g", 6: "t", -6: "t~", 11: "e-", -11: "e+", 13: "mu-", -13: "mu+"}
_INITIAL_DOF = {21: (2, 8), 11: (2, 1), -11: (2, 1)}  # (helicities, colours) of initial legs


def normalisation(cpp: Path, pdg: Sequence[int]) -> dict:
    """How CPPProcess.cc normalises |M|^2: its ``helcolDenominators`` split into the
    initial-state helicity and colour average and the identical-particle factor."""
    match = re.search(r"helcolDenominators\[1\] = \{ (\d+) \}", cpp.read_text())
    if not match:
        raise RuntimeError(f"{cpp}: no helcolDenominators")
    denom = int(match.group(1))
    hel = math.prod(_INITIAL_DOF[i][0] for i in pdg[:2])
    col = math.prod(_INITIAL_DOF[i][1] for i in pdg[:2])
    counts: dict[int, int] = {}
    for i in pdg[2:]:
        counts[i] = counts.get(i, 0) + 1
    iden = math.prod(math.factorial(c) for c in counts.values())
    if denom != hel * col * iden:
        raise RuntimeError(f"{cpp}: helcolDenominators {denom} != {hel} x {col} x {iden}")
    return {
        "helcol_denominator": denom,
        "initial_helicity_average": hel,
        "initial_colour_average": col,
        "identical_final_state_factor": iden,
        "summed_over_final_helicities_and_colours": True,
        "averaged_over_initial_helicities_and_colours": True,
        "identical_particle_factor_included": iden > 1,
        "note": (
            f"CPPProcess.cc divides the helicity- and colour-summed |M|^2 by "
            f"helcolDenominators = {denom} = {hel} (initial helicities) x {col} (initial "
            f"colours) x {iden} (identical final-state particles, n!); MadGraph's |M|^2 "
            f"therefore includes the symmetry factor 1/{iden}, which evgen's "
            "Process.matrix_element leaves out (Process.symmetry_factor)"
            if iden > 1
            else f"CPPProcess.cc divides the helicity- and colour-summed |M|^2 by "
            f"helcolDenominators = {denom} = {hel} (initial helicities) x {col} (initial "
            "colours); no identical final-state particles"
        ),
    }


def _depth(obj: object) -> int:
    """Nesting depth of a list of numbers (0 for a number, -1 for anything else)."""
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return 0
    if isinstance(obj, list) and obj:
        depths = {_depth(x) for x in obj}
        return 1 + depths.pop() if len(depths) == 1 and -1 not in depths else -1
    return -1


def to_json(obj: object, level: int = 0) -> str:
    """JSON with one line per event: lists of numbers up to depth 2 stay on one line."""
    pad, inner = " " * level, " " * (level + 1)
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(k)}: {to_json(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, list) and not 0 < _depth(obj) <= 2:
        return "[\n" + ",\n".join(inner + to_json(v, level + 1) for v in obj) + f"\n{pad}]"
    return json.dumps(obj)


def refs(args: argparse.Namespace) -> int:
    """Write ``tests/data/mg4gpu/<process>.json`` from the shipped dumps and this build."""
    cudacpp = find_cudacpp(args.source)
    commit = source_commit(args.source, args.commit)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    log = args.build_dir / "build.log"
    compiler = subprocess.run([args.cxx, "--version"], capture_output=True, text=True)
    compiler_name = compiler.stdout.splitlines()[0] if compiler.stdout else args.cxx
    for key in args.processes:
        proc = PROCESSES[key]
        prepare_tree(cudacpp, args.build_dir, proc, "st")
        tree = args.build_dir / "st" / proc.sa
        p1 = subprocess_dir(tree)
        lib = library_name(p1)
        tag = build_tag("cppnone", "d")
        cmd = [
            *_make_args("cppnone", "d", False, args.jobs, args.cxx),
            f"../../lib/build.{tag}/lib{lib}.so",
        ]
        res = subprocess.run(cmd, cwd=p1, capture_output=True, text=True)
        with log.open("a") as f:
            f.write(f"\n### {p1} $ {' '.join(cmd)}\n{res.stdout}\n{res.stderr}\n")
        if res.returncode:
            raise RuntimeError(f"library build failed in {p1}:\n{res.stderr[-2000:]}")
        libdir = (tree / "lib" / f"build.{tag}").resolve()
        src = p1 / "mg4gpu_me_driver.cc"
        src.write_text(_DRIVER)
        driver = p1 / f"build.{tag}" / "mg4gpu_me_driver.exe"
        flags = [
            "-O3",
            "-std=c++17",
            "-ffast-math",
            "-march=x86-64",
            "-DMGONGPU_FPTYPE_DOUBLE",
            "-DMGONGPU_FPTYPE2_DOUBLE",
            "-DMGONGPU_HAS_NO_BLAS",
            "-DMGONGPU_HAS_NO_CURAND",
            "-DMGONGPU_HAS_NO_HIPRAND",
            "-I.",
            "-I../../src",
        ]
        link = [f"-L{libdir}", f"-l{lib}", "-lmg5amc_common_cpp", f"-Wl,-rpath,{libdir}"]
        subprocess.run([args.cxx, *flags, src.name, "-o", str(driver), *link], cwd=p1, check=True)

        card_path = tree / "Cards" / "param_card.dat"
        card = read_param_card(card_path)
        if abs(math.sqrt(4 * math.pi * card["aS"]) - FIXED_G) > 1e-14:
            raise RuntimeError(
                f"{card_path}: aS = {card['aS']} but check_sa.cc fixes g_s "
                f"= {FIXED_G} (alpha_s 0.118); the references would mix them"
            )
        variants = {"param_card": card_path.read_text()}
        if 6 in proc.pdg:
            variants["top_width_zero"] = re.sub(
                r"(?m)^(DECAY\s+6\s+)\S+", r"\g<1>0.000000e+00", card_path.read_text()
            )
        cards_dirs = {}
        for name, text in variants.items():
            d = args.build_dir / "refs" / key / name
            (d / "Cards").mkdir(parents=True, exist_ok=True)
            (d / "Cards" / "param_card.dat").write_text(text)
            cards_dirs[name] = d

        masses = [card["MT"] if abs(i) == 6 else 0.0 for i in proc.pdg]  # e, mu, g massless
        dump_rel = f"{proc.sa}/test/ref/dump_CPUTest.{proc.dump}.txt"
        dump = parse_dump(cudacpp / dump_rel, args.events)
        shipped_p = [ev["p"] for ev in dump]
        shipped_me = [ev["me"] for ev in dump]
        recomputed = _evaluate(driver, cards_dirs["param_card"], shipped_p)
        rel = max(abs(a - b) / abs(b) for a, b in zip(recomputed, shipped_me, strict=True))
        print(f"{proc.name}: shipped dump vs recomputed here: max rel diff {rel:.2e}")
        dump_masses = [0.0] * len(proc.pdg)  # madgraph4gpu's RAMBO is massless

        rng = random.Random(args.seed)
        half = SQRT_S / 2
        on_shell = [
            [
                [half, 0.0, 0.0, half],
                [half, 0.0, 0.0, -half],
                *massive_rambo(SQRT_S, masses[2:], rng),
            ]
            for _ in range(args.events)
        ]
        on_shell_me = {name: _evaluate(driver, d, on_shell) for name, d in cards_dirs.items()}

        cpp = p1 / "CPPProcess.cc"
        n_ext = len(proc.pdg)
        data = {
            "process": proc.name,
            "pdg": list(proc.pdg),
            "particles": [_NAMES[i] for i in proc.pdg],
            "units": f"momenta (E, px, py, pz) in GeV; |M|^2 in GeV^{4 - 2 * n_ext}",
            "provenance": {
                "repository": REPOSITORY,
                "commit": commit,
                "directory": f"epochX/cudacpp/{proc.sa}",
                "cpp_process": f"epochX/cudacpp/{proc.sa}/SubProcesses/{p1.name}/CPPProcess.cc",
                "param_card": f"epochX/cudacpp/{proc.sa}/Cards/param_card.dat",
                "dump": f"epochX/cudacpp/{dump_rel}",
                "extracted_by": "benchmarks/madgraph4gpu.py refs "
                f"(--events {args.events} --seed {args.seed})",
                "evaluated_with": f"{compiler_name}; madgraph4gpu makefile BACKEND=cppnone "
                f"FPTYPE=d (lib{lib}.so) called through its Bridge<double>::cpu_sequence",
                "date": dt.date.today().isoformat(),
            },
            "param_card": card,
            "derived": derived_parameters(card),
            "alpha_s": card["aS"],
            "alpha_s_note": "check_sa.cc and runTest.cc fix g_s = 1.2177157847767195 = "
            "sqrt(4 pi 0.118) for every event (the param_card aS is 0.118 too); so does the "
            "driver that evaluated the recomputed values",
            "top_width_in_t_channel_propagators": 6 in proc.pdg,
            "normalisation": normalisation(cpp, proc.pdg),
            "sets": {
                "shipped_dump": {
                    "description": (
                        f"the first {len(dump)} events of madgraph4gpu's own test reference "
                        f"(batch 0 of {dump_rel}): RAMBO at sqrt(s) = {SQRT_S:g} GeV with "
                        "MASSLESS final-state momenta (madgraph4gpu's rambo.h is massless)"
                        + (
                            ", so the top quarks are off their mass shell while the HELAS "
                            "wave functions use MT"
                            if 6 in proc.pdg
                            else ""
                        )
                        + "; 'me' as printed in the dump (FPTYPE=d, 16 digits), "
                        "'me_recomputed' by the code built here"
                    ),
                    "sqrt_s": SQRT_S,
                    "momentum_masses": dump_masses,
                    "on_shell": all(a == b for a, b in zip(dump_masses, masses, strict=True)),
                    "momenta": shipped_p,
                    "me": shipped_me,
                    "me_recomputed": recomputed,
                },
                "on_shell": {
                    "description": (
                        f"{args.events} points on the mass shell at sqrt(s) = {SQRT_S:g} GeV "
                        "(massive RAMBO of benchmarks/madgraph4gpu.py, Python random.Random("
                        f"{args.seed})); |M|^2 from the madgraph4gpu code built here: 'me' "
                        "with the shipped param_card"
                        + (
                            ", 'me_top_width_zero' with DECAY 6 set to 0 (every top "
                            "propagator then has zero width; the shipped card gives all of "
                            "them, t-channel ones included, the width WT)"
                            if 6 in proc.pdg
                            else ""
                        )
                    ),
                    "sqrt_s": SQRT_S,
                    "momentum_masses": masses,
                    "on_shell": True,
                    "momenta": on_shell,
                    "me": on_shell_me["param_card"],
                    **(
                        {"me_top_width_zero": on_shell_me["top_width_zero"]}
                        if "top_width_zero" in on_shell_me
                        else {}
                    ),
                },
            },
        }
        out = args.out_dir / f"{key}.json"
        out.write_text(to_json(data) + "\n")
        print(f"wrote {out} ({out.stat().st_size / 1024:.1f} kB)")
    return 0


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``bench`` (throughput table) or ``refs`` (reference JSON files)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--source", type=Path, help="a madgraph4gpu checkout (or its epochX/cudacpp); required"
    )
    common.add_argument("--commit", help="the checkout's commit, if it is not a git work tree")
    common.add_argument(
        "--build-dir",
        type=Path,
        default=Path("/tmp/mg4gpu-build"),
        help="where the .sa copies are built (default /tmp/mg4gpu-build)",
    )
    common.add_argument("--processes", nargs="+", choices=list(PROCESSES), default=list(PROCESSES))
    common.add_argument("--cxx", default="g++")
    common.add_argument("--jobs", type=int, default=2, help="make -j")

    b = sub.add_parser("bench", parents=[common], help="build and time check_cpp.exe")
    b.add_argument(
        "--backends", nargs="+", choices=BACKENDS, help="default: every backend this CPU supports"
    )
    b.add_argument(
        "--scan-backends",
        nargs="+",
        choices=BACKENDS,
        help="backends to scan over all batches (the others run --survey-batch "
        "with 1 thread only); default: all",
    )
    b.add_argument("--survey-batch", type=int, default=16384)
    b.add_argument("--fptype", choices=["d", "f", "m"], default="d")
    b.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    b.add_argument("--batches", type=int, nargs="+", default=list(_DEFAULT_BATCHES))
    b.add_argument("--max-batch", type=int, help="cap on the batch (default: per process)")
    b.add_argument("--repeats", type=int, default=3)
    b.add_argument(
        "--target-seconds",
        type=float,
        default=1.0,
        help="ME time per run; sets the number of iterations",
    )
    b.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="skip a batch whose single iteration would take longer",
    )
    b.add_argument(
        "--min-idle",
        type=float,
        default=0.9,
        help="wait before each run until its cores are this idle (0: never wait)",
    )
    b.add_argument("--max-wait", type=float, default=30.0, help="longest wait for idle cores (s)")
    b.add_argument("--output", type=Path, default=HERE / "MG4GPU_RESULTS.md")
    b.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite --output from <build-dir>/bench_measurements.json without measuring",
    )

    r = sub.add_parser("refs", parents=[common], help="reference |M|^2 JSON files")
    r.add_argument("--events", type=int, default=8)
    r.add_argument("--seed", type=int, default=20240607)
    r.add_argument("--out-dir", type=Path, default=ROOT / "tests" / "data" / "mg4gpu")

    args = parser.parse_args(argv)
    if args.source is None and not getattr(args, "report_only", False):
        parser.error("--source: a madgraph4gpu checkout is required (nothing is downloaded)")
    if args.source is not None:
        args.source = args.source.expanduser().resolve()
    args.build_dir = args.build_dir.expanduser().resolve()
    if args.command == "bench":
        if args.scan_backends is None:
            args.scan_backends = []
        return bench(args)
    return refs(args)


if __name__ == "__main__":
    sys.exit(main())
