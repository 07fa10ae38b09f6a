"""Side by side: Lepage's ``vegas`` package vs evgen's Vegas at equal integrand evaluations.

Not a test. Run from the repository root (CPU, a few minutes):

    python benchmarks/vegas_compare.py            # writes benchmarks/VEGAS_RESULTS.md

Protocol, identical for both (the usual ``vegas`` recipe): a warm-up of ``n_iter``
adapting iterations whose results are discarded, then ``n_iter`` more adapting
iterations whose inverse-variance weighted average, error and chi^2/dof are reported.
Both use their defaults alpha = 0.5, beta = 0.75, neval_frac = 0.75 (adaptive stratified
sampling on); ``vegas`` sizes its grid as min(neval / 10, 1000) increments per axis,
evgen uses its default 128 and, in a second row, vegas's number. The integrand is the
same batched torch function for both (vegas gets it through zero-copy numpy views).

Columns: integral +- error; pull = (value - reference) / sqrt(error^2 + reference
error^2); weight spread = std/mean of f * jac over 100k i.i.d. points of the trained map
alone (no stratification: the weights an unweighting step sees); unweighting efficiency
<|w|> / max|w| over the same 100k weights, with the plain maximum and with evgen's
robust maximum ``find_max_weight(w, max_loss=1e-3)`` (what ``evgen run`` unweights with:
at most 0.1 % of the cross section lies above it); chi^2/dof of the reported
iterations; wall time of warm-up plus reported iterations, the fastest of ``--repeats``
identical runs (same seed, same numbers), with torch on ``--threads`` threads (default
1: both integrators then run on one core, which keeps the timing fair and robust on a
shared machine); ratios evgen / vegas of the error per evaluation (error *
sqrt(evaluations): vegas's neval is approximate, it uses a few % fewer) and of the time;
the same for the process CPU time (fastest of the runs; with one thread it is the wall
time of an idle machine, and much less sensitive to other load on a shared one).

Integrands (known integrals over the unit cube):
    camel-4d, camel-8d: two Gaussians on the diagonal at 1/3 and 2/3, width a = 0.1,
        f = (exp(-|x - 1/3|^2 / a^2) + exp(-|x - 2/3|^2 / a^2)) / (2 (a sqrt(pi))^d)
        (the i-flow benchmark, arXiv:2001.05486); I = E^d, E = erf(2/(3a)) / 2 + erf(1/(3a)) / 2.
    bw-product-4d: prod_i (g/pi) / ((x_i - c_i)^2 + g^2), g = 0.01, separable.
    bw-sum-4d: a Breit-Wigner in an "invariant" s = sum_i x_i, (g/pi) / ((s - s0)^2 + g^2),
        s0 = 1.6, g = 0.02: not separable; I = int p(s) BW(s) ds with p the Irwin-Hall
        density (quadrature).

Physics integrands (cross sections in pb, 4-dimensional unit hypercube), built exactly
as ``evgen run`` builds them from the shipped cards (``load_card`` -> ``parse_card`` ->
``prepare``, the first and only phase-space group's ``Integrand``), 20,000 points per
iteration (the cards' ``points_per_iteration``):
    ttbar: cards/ttbar.yaml, p p > t t~ at 13 TeV, NNPDF2.3 LO, mT scale, no cuts.
    drell-yan: cards/drell_yan.yaml, p p > e+ e- (photon + Z), 60 < m_ee < 120 GeV,
        pT_l > 10 GeV, |eta_l| < 2.5, dR_ll > 0.4 (about 60 % of a uniform cube is cut).
    Their integrals are not known in closed form: the reference is computed here, once,
    with evgen's Vegas (128 bins, its own seed) at 10x the compared budget: ``train``
    for n_iter iterations of 10 x neval points, then ``integrate`` (frozen grid, plain
    mean, no adaptation bias) for n_iter more. Its error enters the pull. A third evgen
    row uses the card's integrator settings (``bins``, ``alpha``: what ``evgen run``
    adapts with).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from machine_info import cpu_model
from scipy import integrate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evgen.card import load_card, parse_card  # noqa: E402
from evgen.integrators.vegas import Vegas  # noqa: E402
from evgen.setup import prepare  # noqa: E402
from evgen.unweight import find_max_weight  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
REF_FACTOR = 10  # the physics reference uses this many times the compared budget

F64 = torch.float64
TorchIntegrand = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Problem:
    name: str
    dim: int
    f: TorchIntegrand
    exact: float
    neval: int
    exact_error: float = 0.0  #: Monte Carlo error of a computed reference (0: exact)
    card: tuple[int, float] | None = None  #: the card's (bins, alpha), physics only
    reference: str = "exact"  #: how ``exact`` was obtained


def camel(dim: int, neval: int) -> Problem:
    a = 0.1

    def f(x: torch.Tensor) -> torch.Tensor:
        norm = 2.0 * (a * math.sqrt(math.pi)) ** dim
        g1 = torch.exp(-((x - 1.0 / 3.0) ** 2).sum(1) / a**2)
        g2 = torch.exp(-((x - 2.0 / 3.0) ** 2).sum(1) / a**2)
        return (g1 + g2) / norm

    e = 0.5 * (math.erf(2.0 / (3.0 * a)) + math.erf(1.0 / (3.0 * a)))
    return Problem(f"camel-{dim}d", dim, f, e**dim, neval)


def bw_product(neval: int) -> Problem:
    g = 0.01
    centres = [0.3, 0.45, 0.6, 0.75]
    c = torch.tensor(centres, dtype=F64)

    def f(x: torch.Tensor) -> torch.Tensor:
        return ((g / math.pi) / ((x - c) ** 2 + g * g)).prod(1)

    exact = math.prod((math.atan((1 - ci) / g) + math.atan(ci / g)) / math.pi for ci in centres)
    return Problem("bw-product-4d", 4, f, exact, neval)


def bw_sum(neval: int) -> Problem:
    g, s0, dim = 0.02, 1.6, 4

    def f(x: torch.Tensor) -> torch.Tensor:
        s = x.sum(1)
        return (g / math.pi) / ((s - s0) ** 2 + g * g)

    def irwin_hall(s: float) -> float:
        return sum(
            (-1) ** k * math.comb(dim, k) * (s - k) ** (dim - 1) for k in range(int(s) + 1)
        ) / math.factorial(dim - 1)

    exact, _ = integrate.quad(
        lambda s: irwin_hall(s) * (g / math.pi) / ((s - s0) ** 2 + g * g),
        0.0,
        float(dim),
        points=[1.0, s0, 2.0, 3.0],
        epsabs=0,
        epsrel=1e-12,
        limit=500,
    )
    return Problem("bw-sum-4d", dim, f, exact, neval)


def physics(name: str, card_path: str, neval: int) -> Problem:
    """The integrand of a shipped card, built as ``evgen run`` builds it (exact: unknown)."""
    card, text = load_card(ROOT / card_path)
    # The card's own keys (not model_dump()'s every default: validators may depend on
    # which keys a card sets), re-validated with the output folder moved to a scratch one.
    data = card.model_dump(exclude_unset=True)
    data.setdefault("output", {})["path"] = tempfile.mkdtemp(prefix="evgen-vegas-compare-")
    run = prepare(parse_card(data), text, source=card_path)
    if len(run.groups) != 1:
        raise RuntimeError(f"{card_path}: expected one phase-space group, got {len(run.groups)}")
    f = run.groups[0].integrand
    bins_alpha = (run.card.integrator.bins, run.card.integrator.alpha)
    return Problem(name, f.n_dim, f, math.nan, neval, card=bins_alpha, reference=card_path)


def with_reference(p: Problem, n_iter: int, seed: int) -> tuple[Problem, str]:
    """p with a high-statistics evgen Vegas value (REF_FACTOR x the budget) as reference."""
    n = REF_FACTOR * p.neval
    t0 = time.perf_counter()
    v = Vegas(p.dim, seed=seed)
    v.train(p.f, n_iter, n)
    est = v.integrate(p.f, n_iter, n)
    seconds = time.perf_counter() - t0
    note = (
        f"{p.name} ({p.reference}): reference {est.value:.6g} ± {est.error:.2g} pb from evgen "
        f"Vegas (128 bins, seed {seed}): train {n_iter} x {n:,} + integrate (frozen grid) "
        f"{n_iter} x {n:,} = {2 * n_iter * n:,} evaluations ({REF_FACTOR}x the compared "
        f"budget), chi2/dof {est.chi2_dof:.2f}, {seconds:.1f} s"
    )
    return replace(p, exact=est.value, exact_error=est.error), note


@dataclass
class Row:
    problem: str
    integrator: str
    bins: int
    n_eval: int
    value: float
    error: float
    pull: float
    spread: float
    eff_max: float
    eff_robust: float
    chi2_dof: float
    seconds: float
    cpu_seconds: float  #: process CPU time of the fastest-CPU run (robust to other load)


def weight_stats(w: torch.Tensor) -> tuple[float, float, float]:
    """(std/mean, <|w|>/max|w|, <|w|>/find_max_weight(w, max_loss=1e-3)) of weights w."""
    a = w.abs()
    mean = float(a.mean())
    spread = float(w.std(unbiased=False) / w.mean())
    return spread, mean / float(a.max()), mean / find_max_weight(w, max_loss=1e-3)


def pull(value: float, error: float, p: Problem) -> float:
    return (value - p.exact) / math.hypot(error, p.exact_error)


def run_vegas_package(p: Problem, n_iter: int, seed: int, repeats: int) -> tuple[Row, int]:
    import vegas

    @vegas.lbatchintegrand
    def fnp(x: np.ndarray) -> np.ndarray:
        return p.f(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    seconds = cpu = math.inf
    for _ in range(repeats):
        rng = np.random.default_rng(seed)
        integ = vegas.Integrator(p.dim * [[0.0, 1.0]], ran_array_generator=rng.random)
        t0, c0 = time.perf_counter(), time.process_time()
        warm = integ(fnp, nitn=n_iter, neval=p.neval)
        res = integ(fnp, nitn=n_iter, neval=p.neval)
        seconds = min(seconds, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    n_eval = int(warm.sum_neval + res.sum_neval)
    ninc = int(np.asarray(integ.map.ninc)[0])
    # i.i.d. weights of the map alone
    y = rng.random((100_000, p.dim))
    x = np.empty_like(y)
    jac = np.empty(y.shape[0])
    integ.map.map(y, x, jac)
    w = p.f(torch.from_numpy(x)) * torch.from_numpy(jac)
    value, error = float(res.mean), float(res.sdev)
    row = Row(
        p.name,
        f"vegas {vegas.__version__}",
        ninc,
        n_eval,
        value,
        error,
        pull(value, error, p),
        *weight_stats(w),
        float(res.chi2 / res.dof) if res.dof > 0 else math.nan,
        seconds,
        cpu,
    )
    return row, ninc


def run_evgen(
    p: Problem,
    n_iter: int,
    seed: int,
    n_bins: int,
    repeats: int,
    alpha: float = 0.5,
    label: str = "evgen Vegas",
) -> Row:
    seconds = cpu = math.inf
    for _ in range(repeats):
        v = Vegas(p.dim, n_bins=n_bins, alpha=alpha, seed=seed)
        t0, c0 = time.perf_counter(), time.process_time()
        v.train(p.f, n_iter, p.neval, discard=n_iter - 1)  # warm-up
        est = v.train(p.f, n_iter, p.neval, discard=0)
        seconds = min(seconds, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    r, jac = v.sample(100_000)
    w = p.f(r) * jac
    return Row(
        p.name,
        label,
        n_bins,
        2 * n_iter * p.neval,
        est.value,
        est.error,
        pull(est.value, est.error, p),
        *weight_stats(w),
        est.chi2_dof,
        seconds,
        cpu,
    )


def provenance() -> str:
    """The evgen source measured: git commit, and whether the code differs from it."""
    git = ["git", "--no-optional-locks", "-C", str(ROOT)]
    try:
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--", "evgen", "processes", "cards"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "- evgen: not a git checkout (commit unknown)"
    state = "with uncommitted changes" if dirty else "as committed"
    return f"- evgen: commit {commit}, evgen/ processes/ cards/ {state}"


def machine() -> str:
    model = cpu_model()
    import vegas

    return (
        f"- machine: {platform.machine()}, `nproc` = {os.cpu_count()}, CPU: {model}\n"
        f"- torch {torch.__version__} (threads: {torch.get_num_threads()}), "
        f"vegas {vegas.__version__}, numpy {np.__version__}, Python {platform.python_version()}"
    )


def pm(value: float, error: float) -> str:
    """value ± error, the value to one digit beyond the error's two significant ones."""
    digits = max(0, 2 - math.floor(math.log10(error))) if error > 0 else 6
    return f"{value:.{digits}f} ± {error:.2g}"


def table(rows: list[Row], problems: dict[str, Problem]) -> str:
    head = (
        "| integrand | exact / reference | integrator | bins/axis | evaluations | "
        "integral ± error | pull | weight spread | unw. eff. (max) | unw. eff. (robust) | "
        "chi2/dof | time [s] | cpu [s] | error ratio | time ratio | cpu ratio |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    ref: dict[str, Row] = {r.problem: r for r in rows if r.integrator.startswith("vegas")}
    lines = []
    for r in rows:
        base = ref[r.problem]
        norm = math.sqrt(r.n_eval / base.n_eval)  # vegas's neval is approximate
        er = "—" if r is base else f"{r.error * norm / base.error:.2f}"
        tr = "—" if r is base else f"{r.seconds / base.seconds:.2f}"
        cr = "—" if r is base else f"{r.cpu_seconds / base.cpu_seconds:.2f}"
        p = problems[r.problem]
        reference = pm(p.exact, p.exact_error) if p.exact_error > 0 else f"{p.exact:.6g}"
        lines.append(
            f"| {r.problem} | {reference} | {r.integrator} | {r.bins} | "
            f"{r.n_eval:,} | {pm(r.value, r.error)} | {r.pull:+.2f} | {r.spread:.3g} | "
            f"{r.eff_max:.3g} | {r.eff_robust:.3g} | "
            f"{r.chi2_dof:.2f} | {r.seconds:.2f} | {r.cpu_seconds:.2f} | {er} | {tr} | {cr} |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-iter", type=int, default=10, help="iterations per phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, fastest kept")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default=str(Path(__file__).with_name("VEGAS_RESULTS.md")))
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="run only these integrands (names as in table)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    makers: dict[str, Callable[[], Problem]] = {
        "camel-4d": lambda: camel(4, 100_000),
        "camel-8d": lambda: camel(8, 1_000_000),
        "bw-product-4d": lambda: bw_product(100_000),
        "bw-sum-4d": lambda: bw_sum(100_000),
        "ttbar": lambda: physics("ttbar", "cards/ttbar.yaml", 20_000),
        "drell-yan": lambda: physics("drell-yan", "cards/drell_yan.yaml", 20_000),
    }
    names = args.only or list(makers)
    if unknown := sorted(set(names) - set(makers)):
        parser.error(f"--only: unknown {unknown}; choose from {list(makers)}")
    problems: list[Problem] = []
    notes: list[str] = []
    rows: list[Row] = []
    for name in names:
        p = makers[name]()
        if p.card is not None:  # physics: no exact value, compute the reference once
            p, note = with_reference(p, args.n_iter, args.seed + 1000)
            notes.append(note)
            print(note, file=sys.stderr)
        problems.append(p)
        ref, ninc = run_vegas_package(p, args.n_iter, args.seed, args.repeats)
        rows.append(ref)
        rows.append(run_evgen(p, args.n_iter, args.seed, 128, args.repeats))
        if ninc != 128:
            rows.append(run_evgen(p, args.n_iter, args.seed, ninc, args.repeats))
        if p.card is not None:
            bins, alpha = p.card
            label = f"evgen Vegas, alpha {alpha:g} (card)"
            rows.append(
                run_evgen(p, args.n_iter, args.seed, bins, args.repeats, alpha=alpha, label=label)
            )
        print(f"done {p.name}", file=sys.stderr)
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    neval = ", ".join(f"{p.name} {p.neval:,}" for p in problems)
    references = "".join(f"- {n}\n" for n in notes)
    text = (
        "# VEGAS: evgen vs Lepage's `vegas` package\n\n"
        f"Generated by `benchmarks/vegas_compare.py` (see its docstring for the protocol).\n\n"
        f"- command: `{command}`\n{provenance()}\n{machine()}\n"
        f"- per problem: {args.n_iter} warm-up + {args.n_iter} reported iterations "
        f"(all adapting, as in the usual `vegas` recipe), neval per iteration: {neval}; "
        f"seed {args.seed}, time: fastest of {args.repeats} runs\n"
        + references
        + "\n"
        + table(rows, {p.name: p for p in problems})
        + "\nerror ratio: evgen / vegas of error * sqrt(evaluations) (vegas's neval is "
        "approximate); time ratio: evgen / vegas of the wall time; both for the same "
        "integrand. cpu: process CPU time (fastest of the runs), cpu ratio: its evgen / "
        "vegas; with torch on one thread it equals the wall time on an idle machine and "
        "is less sensitive than it to other load on a shared one. "
        "pull: (integral - reference) / sqrt(error^2 + reference error^2). "
        "weight spread: std/mean of f * jac over 100k i.i.d. points of the trained map; "
        "unw. eff.: <|w|> / w_max over the same points, w_max = max|w| (max) or "
        "evgen's find_max_weight(w, max_loss=1e-3) (robust, as `evgen run` unweights). "
        "Physics integrands (ttbar, drell-yan) in pb, built as `evgen run` builds them "
        "from the shipped cards; their third evgen row uses the card's bins and alpha. "
        "Each row is one seed: one trained map and one 100k sample, so its efficiencies "
        "(and pull) fluctuate from seed to seed, by large factors where rare large weights "
        "dominate w_max (drell-yan).\n"
    )
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
