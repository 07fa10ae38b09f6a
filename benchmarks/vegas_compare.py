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

Columns: integral +- error; pull = (value - exact) / error; weight spread = std/mean of
f * jac over 100k i.i.d. points of the trained map alone (no stratification: the
weights an unweighting step sees); chi^2/dof of the reported iterations; wall time of
warm-up plus reported iterations, the fastest of ``--repeats`` identical runs (same
seed, same numbers), with torch on ``--threads`` threads (default 1: both integrators
then run on one core, which keeps the timing fair and robust on a shared machine);
ratios evgen / vegas of the error per evaluation (error * sqrt(evaluations): vegas's
neval is approximate, it uses a few % fewer) and of the time.

Integrands (known integrals over the unit cube):
    camel-4d, camel-8d: two Gaussians on the diagonal at 1/3 and 2/3, width a = 0.1,
        f = (exp(-|x - 1/3|^2 / a^2) + exp(-|x - 2/3|^2 / a^2)) / (2 (a sqrt(pi))^d)
        (the i-flow benchmark, arXiv:2001.05486); I = E^d, E = erf(2/(3a)) / 2 + erf(1/(3a)) / 2.
    bw-product-4d: prod_i (g/pi) / ((x_i - c_i)^2 + g^2), g = 0.01, separable.
    bw-sum-4d: a Breit-Wigner in an "invariant" s = sum_i x_i, (g/pi) / ((s - s0)^2 + g^2),
        s0 = 1.6, g = 0.02: not separable; I = int p(s) BW(s) ds with p the Irwin-Hall
        density (quadrature).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import integrate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evgen.integrators.vegas import Vegas  # noqa: E402

F64 = torch.float64
TorchIntegrand = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Problem:
    name: str
    dim: int
    f: TorchIntegrand
    exact: float
    neval: int


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
    chi2_dof: float
    seconds: float


def run_vegas_package(p: Problem, n_iter: int, seed: int, repeats: int) -> tuple[Row, int]:
    import vegas

    @vegas.lbatchintegrand
    def fnp(x: np.ndarray) -> np.ndarray:
        return p.f(torch.from_numpy(np.ascontiguousarray(x))).numpy()

    seconds = math.inf
    for _ in range(repeats):
        rng = np.random.default_rng(seed)
        integ = vegas.Integrator(p.dim * [[0.0, 1.0]], ran_array_generator=rng.random)
        t0 = time.perf_counter()
        warm = integ(fnp, nitn=n_iter, neval=p.neval)
        res = integ(fnp, nitn=n_iter, neval=p.neval)
        seconds = min(seconds, time.perf_counter() - t0)
    n_eval = int(warm.sum_neval + res.sum_neval)
    ninc = int(np.asarray(integ.map.ninc)[0])
    # i.i.d. weights of the map alone
    y = rng.random((100_000, p.dim))
    x = np.empty_like(y)
    jac = np.empty(y.shape[0])
    integ.map.map(y, x, jac)
    w = p.f(torch.from_numpy(x)).numpy() * jac
    value, error = float(res.mean), float(res.sdev)
    row = Row(
        p.name,
        f"vegas {vegas.__version__}",
        ninc,
        n_eval,
        value,
        error,
        (value - p.exact) / error,
        float(w.std() / w.mean()),
        float(res.chi2 / res.dof) if res.dof > 0 else math.nan,
        seconds,
    )
    return row, ninc


def run_evgen(p: Problem, n_iter: int, seed: int, n_bins: int, repeats: int) -> Row:
    seconds = math.inf
    for _ in range(repeats):
        v = Vegas(p.dim, n_bins=n_bins, seed=seed)
        t0 = time.perf_counter()
        v.train(p.f, n_iter, p.neval, discard=n_iter - 1)  # warm-up
        est = v.train(p.f, n_iter, p.neval, discard=0)
        seconds = min(seconds, time.perf_counter() - t0)
    r, jac = v.sample(100_000)
    w = p.f(r) * jac
    return Row(
        p.name,
        "evgen Vegas",
        n_bins,
        2 * n_iter * p.neval,
        est.value,
        est.error,
        (est.value - p.exact) / est.error,
        float(w.std() / w.mean()),
        est.chi2_dof,
        seconds,
    )


def machine() -> str:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import vegas

    return (
        f"- machine: {platform.machine()}, `nproc` = {os.cpu_count()}, CPU: {model}\n"
        f"- torch {torch.__version__} (threads: {torch.get_num_threads()}), "
        f"vegas {vegas.__version__}, numpy {np.__version__}, Python {platform.python_version()}"
    )


def table(rows: list[Row], exact: dict[str, float]) -> str:
    head = (
        "| integrand | exact | integrator | bins/axis | evaluations | integral ± error | "
        "pull | weight spread | chi2/dof | time [s] | error ratio | time ratio |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    ref: dict[str, Row] = {r.problem: r for r in rows if r.integrator.startswith("vegas")}
    lines = []
    for r in rows:
        base = ref[r.problem]
        norm = math.sqrt(r.n_eval / base.n_eval)  # vegas's neval is approximate
        er = "—" if r is base else f"{r.error * norm / base.error:.2f}"
        tr = "—" if r is base else f"{r.seconds / base.seconds:.2f}"
        lines.append(
            f"| {r.problem} | {exact[r.problem]:.6g} | {r.integrator} | {r.bins} | "
            f"{r.n_eval:,} | {r.value:.6f} ± {r.error:.2g} | {r.pull:+.2f} | {r.spread:.3g} | "
            f"{r.chi2_dof:.2f} | {r.seconds:.2f} | {er} | {tr} |"
        )
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-iter", type=int, default=10, help="iterations per phase")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs, fastest kept")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--out", default=str(Path(__file__).with_name("VEGAS_RESULTS.md")))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    problems = [camel(4, 100_000), camel(8, 1_000_000), bw_product(100_000), bw_sum(100_000)]
    rows: list[Row] = []
    for p in problems:
        ref, ninc = run_vegas_package(p, args.n_iter, args.seed, args.repeats)
        rows.append(ref)
        rows.append(run_evgen(p, args.n_iter, args.seed, 128, args.repeats))
        if ninc != 128:
            rows.append(run_evgen(p, args.n_iter, args.seed, ninc, args.repeats))
        print(f"done {p.name}", file=sys.stderr)
    exact = {p.name: p.exact for p in problems}
    command = "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])])
    text = (
        "# VEGAS: evgen vs Lepage's `vegas` package\n\n"
        f"Generated by `benchmarks/vegas_compare.py` (see its docstring for the protocol).\n\n"
        f"- command: `{command}`\n{machine()}\n"
        f"- per problem: {args.n_iter} warm-up + {args.n_iter} reported iterations, "
        f"neval per iteration 100,000 (4D) / 1,000,000 (8D), seed {args.seed}, "
        f"time: fastest of {args.repeats} runs\n\n"
        + table(rows, exact)
        + "\nerror ratio: evgen / vegas of error * sqrt(evaluations) (vegas's neval is "
        "approximate); time ratio: evgen / vegas; both for the same integrand. "
        "weight spread: std/mean of f * jac over 100k i.i.d. points of the trained map.\n"
    )
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
