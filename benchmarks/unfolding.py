"""Unfolding methods side by side on the Gaussian toy of issue 7.

Not a test. Run from the repository root (CPU, one thread; the full mode takes a while,
most of it OmniFold's replicas):

    python benchmarks/unfolding.py                      # writes the "unfolding" section
                                                        # of benchmarks/RESULTS.md
    python benchmarks/unfolding.py --smoke              # seconds: 5,000 events, tiny nets
    python benchmarks/unfolding.py --only plain ibu-4   # variants and/or methods
    python benchmarks/unfolding.py --problem ttbar      # top pairs from evgen: writes the
                                                        # "unfolding top pairs" section
    python benchmarks/unfolding.py --problem ttbar --smoke   # minutes: small samples

``--only`` takes variant names and method names (either kind left out: all of that
kind); a partial run prints its table and writes a file only with ``--out``. With
``--problem ttbar`` it takes data sets and methods (see TTBAR_DOC below).

The toy. Simulation truth N(0, 1), data truth N(0.2, 0.8), detector smearing N(0, 0.5),
``--events`` (1e5) events each; 30 bins on [-3, 3] at truth and at reco level (IBU uses
them; OmniFold is unbinned and is only histogrammed in them). Variants:
    plain       every event passes both selections.
    efficiency  an event is reconstructed with probability eps(x) = 0.7 + 0.2 tanh(x) of
                its truth x (simulation and data alike); the truth (fiducial) sample keeps
                all events.
    fakes       10 % of the reco-level events (simulation and data) are fakes: reco drawn
                from N(0.5, 1.2), no truth.

Rows. ``floor``: a second, independent data-truth sample compared with the truth sample:
the statistical floor; its deviation is the mean over ``--floor-samples`` (20) such
samples (one sample scatters by ~+-30 % at 1e5 events), and "ratio" divides every
method's deviation by it. Methods: the registry ``METHODS``, callables
``(inputs, config, seed) -> UnfoldedResult``; a new method is one entry.

Columns, each method against the true data-truth histogram t of the same pseudo-data:
    dev: mean of |u - t| / t over the bins with t >= 100 events (24 of the 30 at 1e5
        events; the far tails hold a handful of events, and their relative deviations,
        pure noise, would dominate); dev all: the same over all 30 bins;
    ratio: dev / the floor's dev;
    Delta: the triangular discriminator 1/2 sum (p - q)^2 / (p + q) of the normalised
        histograms, x 1e3;
    W1: 1-d Wasserstein distance between the unfolded weighted events and the truth
        events (unbinned);
    chi2/ndf: (u - t)^T C^-1 (u - t) / ndf with C the method's own covariance (IBU:
        100 toys resampling data and simulation; OmniFold: ``--replicas`` bootstrap
        replicas with new classifier seeds); the floor row uses diag(t + t2). Where C is
        singular (fewer replicas than bins) only its diagonal is used ("diag": the sum of
        squared pulls over the bins), since the pseudo-inverse of a rank-9 sample
        covariance weights its worst-estimated directions most;
    pull rms: of (u - t) / sqrt(C_ii);
    coverage: fraction of bins whose +-1 sigma interval covers the expected truth
        n P(bin), over ``--coverage-toys`` independent pseudo-experiments (IBU and the
        generative method by default, ``--coverage-methods``; for the floor, Poisson
        intervals of the second sample);
    time: wall seconds of the method with its uncertainty toys/replicas (OmniFold at 4
        iterations: the time of the 10-iteration run up to iteration 4, one run gives
        both rows).
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy
import scipy.stats
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from machine_info import cpu_model  # noqa: E402
from results_file import write_section  # noqa: E402

from evgen.ml.classifier import Classifier, ClassifierConfig, auc  # noqa: E402
from unfolding.card import UnfoldCard  # noqa: E402
from unfolding.data import UnfoldedResult, UnfoldingInputs  # noqa: E402
from unfolding.generative import GenerativeConfig, unfold_generative  # noqa: E402
from unfolding.ibu import Binning, IBUConfig, ibu  # noqa: E402
from unfolding.metrics import (  # noqa: E402
    chi2_ndf,
    coverage,
    histogram,
    mean_relative_deviation,
    pulls,
    triangular_discriminator,
    wasserstein,
    weighted_histogram,
)
from unfolding.omnifold import OmniFoldConfig, omnifold  # noqa: E402

F64 = torch.float64
VARIANTS = ("plain", "efficiency", "fakes")
SIM_MEAN, SIM_SIGMA = 0.0, 1.0
DATA_MEAN, DATA_SIGMA = 0.2, 0.8
SMEARING = 0.5
FAKE_FRACTION = 0.1
FAKE_MEAN, FAKE_SIGMA = 0.5, 1.2


@dataclass(frozen=True)
class ToyConfig:
    """Settings of one benchmark run (every method reads what it needs).

    Attributes:
        events: events in the simulation and in the data (before fakes are added).
        bins, low, high: the histogram binning (truth and reco).
        ibu_toys: toys of IBU's covariance (data and response resampled together).
        omnifold: OmniFold's settings (iterations: the most any row needs).
        replicas: OmniFold's bootstrap replicas (its covariance).
        generative: the generative method's settings (its replicas: ensemble x
            bootstrap_per_member).
    """

    events: int = 100_000
    bins: int = 30
    low: float = -3.0
    high: float = 3.0
    ibu_toys: int = 100
    omnifold: OmniFoldConfig = field(
        default_factory=lambda: OmniFoldConfig(
            iterations=10,
            classifier=ClassifierConfig(
                hidden=32, layers=2, epochs=30, batch_size=8192, learning_rate=2e-3
            ),
        )
    )
    replicas: int = 10
    generative: GenerativeConfig = field(default_factory=GenerativeConfig)

    @property
    def edges(self) -> torch.Tensor:
        """(bins + 1,) float64 bin edges."""
        return torch.linspace(self.low, self.high, self.bins + 1, dtype=F64)

    @property
    def binning(self) -> Binning:
        """The 1-d :class:`~unfolding.ibu.Binning` of the edges."""
        return Binning((self.edges,))


@dataclass(frozen=True)
class Toy:
    """One pseudo-experiment: the unfolding inputs and the data's truth (fiducial) sample."""

    inputs: UnfoldingInputs
    data_truth: torch.Tensor  # (n,) the data's truth values, all fiducial


def gaussian_toy(variant: str, n: int, seed: int) -> Toy:
    """Simulation and pseudo-data of the Gaussian toy (see the module docstring)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    gen = torch.Generator().manual_seed(seed)

    def normal(mean: float, sigma: float, size: int) -> torch.Tensor:
        return mean + sigma * torch.randn(size, generator=gen, dtype=F64)

    sim_truth = normal(SIM_MEAN, SIM_SIGMA, n)
    sim_reco = sim_truth + normal(0.0, SMEARING, n)
    data_truth = normal(DATA_MEAN, DATA_SIGMA, n)
    data_reco = data_truth + normal(0.0, SMEARING, n)
    sim_pt = torch.ones(n, dtype=torch.bool)
    sim_pr = torch.ones(n, dtype=torch.bool)
    data_pr = torch.ones(n, dtype=torch.bool)
    if variant == "efficiency":
        sim_pr = torch.rand(n, generator=gen, dtype=F64) < 0.7 + 0.2 * torch.tanh(sim_truth)
        data_pr = torch.rand(n, generator=gen, dtype=F64) < 0.7 + 0.2 * torch.tanh(data_truth)
    data_reco = data_reco[data_pr]
    if variant == "fakes":
        n_fake = round(FAKE_FRACTION * n / (1 - FAKE_FRACTION))
        sim_truth = torch.cat([sim_truth, torch.zeros(n_fake, dtype=F64)])  # placeholder
        sim_reco = torch.cat([sim_reco, normal(FAKE_MEAN, FAKE_SIGMA, n_fake)])
        sim_pt = torch.cat([sim_pt, torch.zeros(n_fake, dtype=torch.bool)])
        sim_pr = torch.cat([sim_pr, torch.ones(n_fake, dtype=torch.bool)])
        data_reco = torch.cat([data_reco, normal(FAKE_MEAN, FAKE_SIGMA, n_fake)])
    inputs = UnfoldingInputs(
        sim_truth=sim_truth[:, None],
        sim_reco=sim_reco[:, None],
        sim_weights=torch.ones(sim_truth.shape[0], dtype=F64),
        sim_pass_truth=sim_pt,
        sim_pass_reco=sim_pr,
        data_reco=data_reco[:, None],
        data_weights=torch.ones(data_reco.shape[0], dtype=F64),
        truth_names=("x",),
        reco_names=("x_reco",),
    )
    inputs.validate()
    return Toy(inputs, data_truth)


# ----------------------------------------------------------------------------- methods

Method = Callable[[UnfoldingInputs, ToyConfig, int], UnfoldedResult]


def _ibu(iterations: int) -> Method:
    def run(inputs: UnfoldingInputs, config: ToyConfig, seed: int) -> UnfoldedResult:
        ibu_config = IBUConfig(iterations=iterations, toys=config.ibu_toys, seed=seed)
        start = time.perf_counter()
        result = ibu(inputs, config.binning, config.binning, ibu_config)
        result.info["wall_seconds"] = time.perf_counter() - start
        return result

    return run


_OMNIFOLD_CACHE: dict[tuple[int, int], UnfoldedResult] = {}


def _omnifold(iterations: int) -> Method:
    """OmniFold after ``iterations``: one recorded run of ``config.omnifold.iterations``
    serves every iteration count (cached per inputs and seed)."""

    def run(inputs: UnfoldingInputs, config: ToyConfig, seed: int) -> UnfoldedResult:
        if iterations > config.omnifold.iterations:
            raise ValueError(f"omnifold-{iterations}: config.omnifold.iterations is lower")
        key = (id(inputs), seed)
        if key not in _OMNIFOLD_CACHE:
            _OMNIFOLD_CACHE.clear()
            of = replace(
                config.omnifold,
                replicas=config.replicas,
                record_iterations=True,
                seed=seed,
                classifier=replace(config.omnifold.classifier, seed=seed),
            )
            start = time.perf_counter()
            full = omnifold(inputs, of)
            full.info["wall_seconds"] = time.perf_counter() - start
            _OMNIFOLD_CACHE[key] = full
        full = _OMNIFOLD_CACHE[key]
        k = iterations - 1
        info = dict(full.info)
        nominal_at_k = full.info["seconds_by_iteration"][k]
        nominal_all = full.info["seconds_by_iteration"][-1]
        # replicas cost like the nominal run: scale the measured total to iteration k
        info["wall_seconds"] = full.info["wall_seconds"] * nominal_at_k / nominal_all
        info["iterations"] = iterations
        replicas = None
        if "replica_weights_by_iteration" in full.info:
            replicas = full.info["replica_weights_by_iteration"][k]
        weights = full.info["weights_by_iteration"][k]
        return UnfoldedResult("omnifold", full.truth, weights, replicas, None, info)

    return run


def _generative(inputs: UnfoldingInputs, config: ToyConfig, seed: int) -> UnfoldedResult:
    """Generative unfolding (unfolding/generative.py) with ``config.generative``."""
    start = time.perf_counter()
    result = unfold_generative(inputs, config.generative, seed)
    result.info["wall_seconds"] = time.perf_counter() - start
    return result


#: row name -> method. U2 adds the generative rows here.
METHODS: dict[str, Method] = {
    "ibu-4": _ibu(4),
    "ibu-10": _ibu(10),
    "omnifold-4": _omnifold(4),
    "omnifold-10": _omnifold(10),
    "generative": _generative,
}

#: methods repeated over ``--coverage-toys`` pseudo-experiments by default (OmniFold's
#: 10 iterations take ~100 s a toy; ``--coverage-methods`` adds them).
COVERAGE_METHODS = ("ibu-4", "ibu-10", "generative")


# ----------------------------------------------------------------------------- metrics


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    variant: str
    method: str
    dev_all: float
    dev_100: float
    delta: float
    w1: float
    chi2: float
    ndf: int
    chi2_diagonal: bool
    pull_rms: float
    coverage: float | None
    seconds: float | None


def expected_truth(config: ToyConfig, n: int) -> torch.Tensor:
    """n times the bin probabilities of the data truth N(0.2, 0.8)."""
    cdf = scipy.stats.norm.cdf(config.edges.numpy(), DATA_MEAN, DATA_SIGMA)
    return torch.tensor(n * np.diff(cdf), dtype=F64)


def evaluate(variant: str, name: str, result: UnfoldedResult, toy: Toy, config: ToyConfig) -> Row:
    """The metrics of one result against the toy's truth."""
    edges = config.edges
    truth = weighted_histogram(toy.data_truth, edges, torch.ones_like(toy.data_truth))
    values, cov = histogram(result, 0, edges)
    mask = truth >= 100
    chi = chi2_ndf(values, truth, cov)
    p, rms = pulls(values, truth, cov)
    chi2, ndf, diagonal = chi.chi2, chi.ndf, False
    if chi.singular:  # too few replicas for a full covariance: its diagonal only
        ok = ~torch.isnan(p)
        chi2, ndf, diagonal = float(p[ok].pow(2).sum()), int(ok.sum()), True
    return Row(
        variant,
        name,
        mean_relative_deviation(values, truth),
        mean_relative_deviation(values[mask], truth[mask]),
        1e3 * triangular_discriminator(values, truth),
        wasserstein(result.truth[:, 0], toy.data_truth, result.weights.clamp(min=0)),
        chi2,
        ndf,
        diagonal,
        rms,
        None,
        result.info.get("wall_seconds"),  # type: ignore[arg-type]
    )


def floor_row(variant: str, toy: Toy, config: ToyConfig, samples: int, seed: int) -> Row:
    """Second, independent data-truth samples against the truth sample."""
    edges = config.edges
    n = toy.data_truth.shape[0]
    ones = torch.ones(n, dtype=F64)
    truth = weighted_histogram(toy.data_truth, edges, ones)
    mask = truth >= 100
    expect = expected_truth(config, n)
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(samples):
        second = DATA_MEAN + DATA_SIGMA * torch.randn(n, generator=gen, dtype=F64)
        h = weighted_histogram(second, edges, ones)
        cov = torch.diag(h + truth)
        chi = chi2_ndf(h, truth, cov)
        rows.append(
            (
                mean_relative_deviation(h, truth),
                mean_relative_deviation(h[mask], truth[mask]),
                1e3 * triangular_discriminator(h, truth),
                wasserstein(second, toy.data_truth),
                chi.chi2,
                chi.ndf,
                pulls(h, truth, cov)[1],
                coverage(h[None], h.sqrt()[None], expect),
            )
        )
    m = np.array(rows, dtype=float).mean(axis=0)
    return Row(variant, "floor", m[0], m[1], m[2], m[3], m[4], int(m[5]), False, m[6], m[7], None)


def toy_mean_row(variant: str, name: str, rows: list[Row], floor: float) -> str:
    """A markdown row: mean +- standard deviation over toys of dev / floor, Delta, pull
    rms and time."""

    def ms(values: list[float], fmt: str) -> str:
        a = np.array(values, dtype=float)
        return f"{a.mean():{fmt}} +- {a.std(ddof=1) if a.size > 1 else 0.0:{fmt}}"

    return (
        f"| {variant} | {name} | {ms([r.dev_100 / floor for r in rows], '.2f')} | "
        f"{ms([r.delta for r in rows], '.3f')} | {ms([r.pull_rms for r in rows], '.2f')} | "
        + (
            ms([r.seconds for r in rows if r.seconds is not None], ".1f")
            if all(r.seconds is not None for r in rows)
            else "-"
        )
        + " |"
    )


def coverage_of(
    name: str, method: Method, variant: str, config: ToyConfig, toys: int, seed: int
) -> tuple[float, list[Row]]:
    """Coverage of the method's +-1 sigma intervals of the expected truth over ``toys``
    independent pseudo-experiments, and each toy's metrics (against its own truth)."""
    values, errors, rows = [], [], []
    for k in range(toys):
        toy = gaussian_toy(variant, config.events, seed + 1000 * (k + 1))
        result = method(toy.inputs, config, seed + k + 1)
        v, cov = histogram(result, 0, config.edges)
        values.append(v)
        errors.append(cov.diagonal().clamp(min=0).sqrt())
        rows.append(evaluate(variant, name, result, toy, config))
    expect = expected_truth(config, config.events)
    cov_fraction = coverage(torch.stack(values), torch.stack(errors), expect)
    return cov_fraction, rows


# ----------------------------------------------------------------------------- output


def table(rows: list[Row], floors: dict[str, float]) -> str:
    head = (
        "| variant | method | dev | ratio | dev all | Delta x1e3 | W1 | chi2/ndf | "
        "pull rms | coverage | time s |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        cov = "-" if r.coverage is None else f"{100 * r.coverage:.0f} %"
        sec = "-" if r.seconds is None else f"{r.seconds:.2f}"
        ndf = f"{r.ndf} diag" if r.chi2_diagonal else f"{r.ndf}"
        lines.append(
            f"| {r.variant} | {r.method} | {100 * r.dev_100:.1f} % | "
            f"{r.dev_100 / floors[r.variant]:.2f} | {100 * r.dev_all:.1f} % | {r.delta:.3f} | "
            f"{r.w1:.4f} | {r.chi2 / max(r.ndf, 1):.2f} ({ndf}) | {r.pull_rms:.2f} | "
            f"{cov} | {sec} |"
        )
    return head + "\n".join(lines) + "\n"


def machine(threads: int) -> str:
    return (
        f"- machine: {platform.machine()}, `nproc` = {os.cpu_count()}, CPU: {cpu_model()}; "
        "shared with other work, so times are indicative\n"
        f"- Python {platform.python_version()}, torch {torch.__version__} ({threads} "
        f"thread{'s' if threads != 1 else ''}), numpy {np.__version__}, scipy "
        f"{scipy.__version__}"
    )


NOTES = """\
### Notes

- Deviations are relative to the true data-truth histogram of the same pseudo-data.
  "dev" averages the bins with at least 100 true events (the issue's anchors, floor
  3.0 % and IBU 4.1 % after 4 iterations, match this definition, not the all-bin
  mean); "dev all" averages all 30 bins, where the outer bins hold a handful of events,
  so it is several per cent even for the floor and scatters from sample to sample.
- chi2/ndf and pulls use each method's own covariance only; the truth histogram's own
  fluctuation is not added (the unfolded result follows the same data events, so the
  two are correlated). OmniFold's covariance from R = 10 replicas has rank 9 < 30 bins:
  its chi2 is diagonal-only ("diag"). OmniFold's replicas resample the data, the
  simulation and the classifier seeds; IBU's toys resample the data and the response;
  the generative method's replicas are ensemble members x data bootstraps.
- IBU: the response, efficiency and fake fraction from the simulation, fakes subtracted
  as the simulation's fake fraction times the data (RooUnfold); 4 iterations is
  RooUnfold's default. The regularisation bias of few iterations sits in the tails,
  where the simulation's prior N(0, 1) is far above the data's N(0.2, 0.8).
- OmniFold: evgen's torch implementation (unfolding/omnifold.py): misses weighted by the
  step-1b truth-level average, fakes in step 1 with the simulation's fake fraction,
  classifiers 32 x 2 (SiLU), AdamW at 2e-3, batches of 8,192, at most 30 epochs with
  early stopping (patience 5) on a 20 % validation split.
- Coverage is of the expected truth n P(bin) (the pulls are against each toy's own
  truth): a method that estimates the expected spectrum with the right errors covers
  ~68 %, and its pulls against the realised truth exceed 1 by the part of the truth's
  Poisson fluctuation that the measurement does not carry.
- The generative method's chi2 uses a covariance from 32 replicas for 30 bins, which is
  nearly singular (the Hartlap factor (R - B - 2) / (R - 1) is 0): read its pull rms and
  coverage, not its chi2. One pseudo-experiment's dev / floor scatters by +-0.2 from toy
  to toy (see the means table), so the targets are judged on the means over the 20
  coverage pseudo-experiments.
"""


# ----------------------------------------------------------------------------- top pairs
#
# The second benchmark of issue 7: semileptonic top pairs from evgen (cards/
# ttbar_semileptonic.yaml) through evgen's detector simulation (cards/unfold_ttbar.yaml),
# unfolded with IBU, OmniFold and the generative method. See TTBAR_DOC.

TTBAR_DOC = """\
Top pairs (``--problem ttbar``). Events: ``evgen run cards/ttbar_semileptonic.yaml``
(p p > t t~, t > b l+ vl, t~ > b~ j j at 13 TeV, LO), generated once into
``--cache`` (output/unfolding_ttbar/<sample>_mt<mt>_n<events>_seed<seed>/) and reused;
the detector simulation of cards/unfold_ttbar.yaml (its observables and objects) turns
each sample into paired parton/detector-level observables. Samples: simulation
(``--sim-events``, mt = 173 GeV), independent pseudo-data (``--data-events``, mt = 173)
and a pseudo-data sample generated with mt = 175 GeV (top width scaled with the LO
formula). Data sets:
    closure     the mt = 173 pseudo-data.
    pt+20/pt-20 the same events, accepted with probability proportional to
                w = max(0, 1 +- 0.2 (pT(t) - 150 GeV) / 100 GeV) of the parton-level top
                pT (every event, fiducial or not; the acceptance caps at pT = 600 GeV for
                +20 %), so the data's truth has a +-20 % per 100 GeV slope.
    mt175       the mt = 175 GeV sample.
Methods: IBU (each observable unfolded alone in the card's binning at truth and reco
level, 4 iterations, ``--ibu-toys`` toys of data and response), OmniFold (unbinned, all
observables at once, 4 iterations, ``--replicas`` replicas: Poisson bootstraps of data and
simulation with new classifier seeds) and the generative
method (unfolding/generative.py, all observables at once).
Metrics per method, data set and observable, against the data's true fiducial events:
    dev      mean |u - t| / t over the bins with t >= 100 events;
    ratio    dev / floor, floor = mean over those bins of 2 / sqrt(pi t): the expected
             |u - t| / t of two independent Poisson samples of mean t (the statistical
             floor; the closure row "prior" (simulation vs data, both mt = 173) checks it);
    Delta    triangular discriminator of the normalised histograms, x 1e3;
    W1/sigma 1-d Wasserstein distance of the unfolded events to the true events
             (unbinned), in units of the truth's standard deviation;
    chi2/ndf with the method's own covariance (diagonal only where it is singular), its
             inverse scaled by the Hartlap factor (R - B - 2) / (R - 1) when estimated
             from R replicas (B bins), so that E[chi2 / ndf] = 1 for an exact method;
    pull rms of (u - t) / sqrt(C_ii) over all bins;
    AUC      of a classifier (64 x 3) trained to separate the unfolded events (weighted)
             from the true events in the full parton-level space of all observables,
             evaluated on held-out halves: 0.5 = indistinguishable;
    time     wall seconds of the method (with its toys/replicas).
"""

TTBAR_DATASETS = ("closure", "pt+20", "pt-20", "mt175")
TTBAR_METHODS = ("ibu", "omnifold", "generative")
ROOT_DIR = Path(__file__).resolve().parents[1]
TTBAR_EVENT_CARD = ROOT_DIR / "cards" / "ttbar_semileptonic.yaml"
TTBAR_UNFOLD_CARD = ROOT_DIR / "cards" / "unfold_ttbar.yaml"
#: observables of the unfold card left out: p_T(t t~) is zero at leading order (2 -> 2).
TTBAR_SKIP = ("ttbar_pt",)
W_MASS = 80.419  # GeV, evgen's sm


def top_width(mt: float, reference_mt: float = 173.0, reference_width: float = 1.4915) -> float:
    """Top width (GeV) at mass ``mt`` (GeV): ``reference_width`` scaled by the LO
    Gamma(t > b W) ~ mt^3 (1 - x)^2 (1 + 2 x), x = (m_W / mt)^2."""

    def lo(m: float) -> float:
        x = (W_MASS / m) ** 2
        return m**3 * (1 - x) ** 2 * (1 + 2 * x)

    return reference_width * lo(mt) / lo(reference_mt)


@dataclass(frozen=True)
class TtbarConfig:
    """Settings of the top-pair benchmark (see TTBAR_DOC)."""

    sim_events: int = 300_000
    data_events: int = 100_000
    cache: Path = ROOT_DIR / "output" / "unfolding_ttbar"
    sim_seed: int = 101
    data_seed: int = 202
    mass_seed: int = 303
    shifted_mass: float = 175.0
    slope: float = 0.2  # per 100 GeV
    pivot: float = 150.0  # GeV
    ibu_iterations: int = 4
    ibu_toys: int = 100
    omnifold: OmniFoldConfig = field(
        default_factory=lambda: OmniFoldConfig(
            iterations=4,
            classifier=ClassifierConfig(
                hidden=64, layers=3, epochs=20, batch_size=8192, learning_rate=2e-3, patience=3
            ),
        )
    )
    replicas: int = 10
    generative: GenerativeConfig = field(
        default_factory=lambda: GenerativeConfig(
            hidden=128,
            hidden_layers=3,
            steps=8000,
            batch_size=2048,
            finetune_steps=1000,
            ensemble=4,
            bootstrap_per_member=8,
            max_iterations=4,
            min_iterations=1,
            classifier=ClassifierConfig(
                hidden=64, layers=3, epochs=20, batch_size=8192, learning_rate=2e-3, patience=3
            ),
        )
    )
    auc_classifier: ClassifierConfig = field(
        default_factory=lambda: ClassifierConfig(
            hidden=64, layers=3, epochs=20, batch_size=4096, learning_rate=2e-3, patience=3
        )
    )


def ensure_events(config: TtbarConfig, name: str, mt: float, n: int, seed: int) -> Path:
    """The evgen ROOT events of one sample: reused from the cache, else generated with
    ``evgen run`` (one thread). Returns the events.root path."""
    import yaml

    folder = config.cache / f"{name}_mt{mt:g}_n{n}_seed{seed}"
    events = folder / "events.root"
    if events.is_file() and (folder / "summary.json").is_file():
        return events
    folder.mkdir(parents=True, exist_ok=True)
    card_path = TTBAR_EVENT_CARD
    if mt != 173.0:
        card = yaml.safe_load(TTBAR_EVENT_CARD.read_text())
        card["model"]["mt"] = float(mt)
        card["model"]["wt"] = round(top_width(mt), 5)
        card_path = folder / "card.yaml"
        card_path.write_text(yaml.safe_dump(card, sort_keys=False))
    command = [sys.executable, "-c", "import sys; from evgen.cli import main; sys.exit(main())"]
    command += ["run", str(card_path), "-n", str(n), "--seed", str(seed), "-o", str(folder), "-q"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    start = time.perf_counter()
    print(f"evgen run: {name}, mt = {mt:g} GeV, {n:,} events ...", file=sys.stderr)
    with open(folder / "run.log", "w") as log:
        subprocess.run(command, check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
    print(f"  {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return events


def detector_arrays(
    events: Path, card: UnfoldCard, seed: int, with_top_pt: bool = True
) -> dict[str, np.ndarray]:
    """The detector simulation of ``events`` (cached next to them, per seed) as arrays:
    ``truth``, ``reco`` (n, d) float64 (NaN where failing), ``pass_truth``,
    ``pass_reco`` (n,) bool, ``weight`` (n,) pb, ``top_pt`` (n,) the parton-level top
    pT of every event in GeV (only ``with_top_pt``)."""
    import uproot

    from evgen.io.root import read_root
    from unfolding.detector import simulate_file

    assert card.detector is not None
    out = events.with_name(f"detector_seed{seed}.root")
    if not out.is_file():
        simulate_file(card.detector, card.observables, events, out, seed=seed)
    cols = uproot.open(out)[card.detector.tree].arrays(library="np")
    obs = card.observables
    out_arrays = {
        "truth": np.stack([cols[o.truth_branch] for o in obs], 1),
        "reco": np.stack([cols[o.reco_branch] for o in obs], 1),
        "pass_truth": cols["pass_truth"].astype(bool),
        "pass_reco": cols["pass_reco"].astype(bool),
        "weight": cols["weight"],
    }
    if not with_top_pt:
        return out_arrays
    # the parton-level top pT of every event (the stress reweighting needs non-fiducial
    # events too)
    evts, _ = read_root(events)
    parts = evts if isinstance(evts, list) else [evts]
    if len(parts) != 1:
        raise RuntimeError(f"{events}: events of several multiplicities")
    ev = parts[0]
    top = (ev.pdg == 6) & (ev.status == 2)
    idx = top.to(torch.int64).argmax(1)
    p = ev.momenta[torch.arange(len(ev)), idx]
    top_pt = torch.sqrt(p[:, 1] ** 2 + p[:, 2] ** 2).numpy()
    out_arrays["top_pt"] = top_pt[cols["event_number"]]
    return out_arrays


def _placeholder(x: np.ndarray, passing: np.ndarray) -> np.ndarray:
    out = x.copy()
    out[~passing] = x[passing].mean(0)
    return out


@dataclass(frozen=True)
class TtbarData:
    """One pseudo-data set: the measured events and their true fiducial events."""

    name: str
    reco: torch.Tensor  # (n, d) measured observables (pass_reco events)
    truth: torch.Tensor  # (m, d) true parton-level observables (pass_truth events)


def ttbar_data(name: str, arrays: dict[str, np.ndarray], keep: np.ndarray) -> TtbarData:
    """The data set of the rows ``keep`` of a detector-simulated sample."""
    pr = arrays["pass_reco"] & keep
    pt_ = arrays["pass_truth"] & keep
    return TtbarData(
        name, torch.from_numpy(arrays["reco"][pr]), torch.from_numpy(arrays["truth"][pt_])
    )


def stress_keep(top_pt: np.ndarray, slope: float, pivot: float, seed: int) -> np.ndarray:
    """Accept-reject mask giving the top-pT slope ``slope`` per 100 GeV (see TTBAR_DOC)."""
    w = np.clip(1 + slope * (top_pt - pivot) / 100.0, 0.0, None)
    w_max = max(1 + slope * (600.0 - pivot) / 100.0, 1 + slope * (0.0 - pivot) / 100.0)
    rng = np.random.default_rng(seed)
    return rng.random(top_pt.shape[0]) < np.minimum(w / w_max, 1.0)


def ttbar_inputs(
    sim: dict[str, np.ndarray], data: TtbarData, names: tuple[str, ...]
) -> UnfoldingInputs:
    """UnfoldingInputs of the simulation (rows passing either selection, unit weights) and
    one data set."""
    keep = sim["pass_truth"] | sim["pass_reco"]
    pt_, pr = sim["pass_truth"][keep], sim["pass_reco"][keep]
    w = sim["weight"][keep]
    t = torch.from_numpy
    inputs = UnfoldingInputs(
        sim_truth=t(_placeholder(sim["truth"][keep], pt_)),
        sim_reco=t(_placeholder(sim["reco"][keep], pr)),
        sim_weights=t(w / np.abs(w).mean()),
        sim_pass_truth=t(pt_),
        sim_pass_reco=t(pr),
        data_reco=data.reco,
        data_weights=torch.ones(data.reco.shape[0], dtype=F64),
        truth_names=names,
        reco_names=names,
    )
    inputs.validate()
    return inputs


def _ttbar_ibu(
    inputs: UnfoldingInputs, edges: list[torch.Tensor], config: TtbarConfig, seed: int
) -> list[UnfoldedResult]:
    """IBU of every observable alone: one UnfoldedResult per observable (its truth is
    all observables of the events inside that observable's truth binning)."""
    results = []
    for j, e in enumerate(edges):
        one = replace(
            inputs,
            sim_truth=inputs.sim_truth[:, j : j + 1],
            sim_reco=inputs.sim_reco[:, j : j + 1],
            data_reco=inputs.data_reco[:, j : j + 1],
            truth_names=inputs.truth_names[j : j + 1],
            reco_names=inputs.reco_names[j : j + 1],
        )
        cfg = IBUConfig(iterations=config.ibu_iterations, toys=config.ibu_toys, seed=seed + j)
        r = ibu(one, Binning((e,)), Binning((e,)), cfg)
        # the same events with all their observables (for the AUC and other columns)
        inside = (inputs.sim_truth[:, j] >= e[0]) & (inputs.sim_truth[:, j] <= e[-1])
        full = inputs.sim_truth[inputs.sim_pass_truth & inside]
        if full.shape[0] != r.truth.shape[0] or not torch.equal(full[:, j], r.truth[:, 0]):
            raise RuntimeError("ibu: unexpected event selection of the result")
        results.append(replace(r, truth=full))
    return results


def run_ttbar_method(
    method: str, inputs: UnfoldingInputs, edges: list[torch.Tensor], config: TtbarConfig, seed: int
) -> tuple[list[UnfoldedResult], float]:
    """One method on one data set: the result per observable (the same one for the
    unbinned methods) and the wall seconds."""
    start = time.perf_counter()
    if method == "ibu":
        results = _ttbar_ibu(inputs, edges, config, seed)
    elif method == "omnifold":
        of = replace(
            config.omnifold,
            replicas=config.replicas,
            seed=seed,
            classifier=replace(config.omnifold.classifier, seed=seed),
        )
        results = [omnifold(inputs, of)] * len(edges)
    elif method == "generative":
        results = [unfold_generative(inputs, config.generative, seed)] * len(edges)
    else:
        raise ValueError(f"unknown method {method!r}")
    return results, time.perf_counter() - start


@dataclass(frozen=True)
class TtbarRow:
    """Metrics of one method on one data set, per observable (lists) and overall."""

    dataset: str
    method: str
    dev: list[float]
    floor: list[float]
    delta: list[float]
    w1: list[float]  # in units of the truth's standard deviation
    chi2: float
    ndf: int
    chi2_diagonal: bool
    pull_rms: float
    pull_rms_truth: float  # with the truth histogram's Poisson variance added
    auc: float | None
    auc_error: float | None  # standard error of the AUC for indistinguishable samples
    seconds: float | None


def floor_deviation(truth: torch.Tensor) -> float:
    """Expected mean |X - Y| / t of two independent Poisson counts of mean t, over the
    bins with t >= 100: mean of 2 / sqrt(pi t)."""
    t = truth[truth >= 100]
    return float((2.0 / torch.sqrt(math.pi * t)).mean())


def classifier_auc(
    x0: torch.Tensor, w0: torch.Tensor, x1: torch.Tensor, clf: ClassifierConfig, seed: int
) -> tuple[float, float]:
    """AUC of a classifier separating (x0, w0) from the unit-weight x1, trained on one
    random half of each and evaluated on the other half; and the AUC's standard error
    for indistinguishable samples, sqrt((n0 + n1 + 1) / (12 n0 n1)) (Mann-Whitney) with
    n0 the Kish effective size (sum w)^2 / sum w^2 of the weighted held-out half."""
    gen = torch.Generator().manual_seed(seed)
    p0 = torch.randperm(x0.shape[0], generator=gen)
    p1 = torch.randperm(x1.shape[0], generator=gen)
    a0, b0 = p0[: x0.shape[0] // 2], p0[x0.shape[0] // 2 :]
    a1, b1 = p1[: x1.shape[0] // 2], p1[x1.shape[0] // 2 :]
    w0 = w0.clamp(min=0)
    model = Classifier(x0.shape[1], replace(clf, seed=seed))
    model.fit(x0[a0], x1[a1], w0[a0], None)
    s = torch.cat([model.probability(x0[b0]), model.probability(x1[b1])])
    labels = torch.cat([torch.zeros(b0.numel()), torch.ones(b1.numel())])
    w = torch.cat([w0[b0] / w0[b0].sum() * b1.numel(), torch.ones(b1.numel(), dtype=F64)])
    n0 = float(w0[b0].sum() ** 2 / (w0[b0] ** 2).sum())
    n1 = float(b1.numel())
    return auc(s, labels, w), math.sqrt((n0 + n1 + 1) / (12 * n0 * n1))


def _n_replicas(result: UnfoldedResult) -> int | None:
    """Number of replicas behind the result's covariance (None: none, sum of w^2)."""
    if result.replica_weights is not None:
        return int(result.replica_weights.shape[0])
    if result.replica_truth is not None:
        return int(result.replica_truth.shape[0])
    return None


def ttbar_evaluate(
    dataset: str,
    method: str,
    results: list[UnfoldedResult],
    data: TtbarData,
    edges: list[torch.Tensor],
    config: TtbarConfig,
    seconds: float | None,
    seed: int,
    auc_events: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> TtbarRow:
    """The metrics of one method's results (one per observable) against the data truth.
    ``auc_events``: (events, weights) for the AUC (default: the first result's)."""
    dev, floor, delta, w1 = [], [], [], []
    chi2, ndf, diagonal, squares, squares_t = 0.0, 0, False, [], []
    ones = torch.ones(data.truth.shape[0], dtype=F64)
    for j, (r, e) in enumerate(zip(results, edges, strict=True)):
        t = weighted_histogram(data.truth[:, j], e, ones)
        values, cov = histogram(r, j, e)
        mask = t >= 100
        dev.append(mean_relative_deviation(values[mask], t[mask]))
        floor.append(floor_deviation(t))
        delta.append(1e3 * triangular_discriminator(values, t))
        x = r.truth[:, j]
        w1.append(
            wasserstein(x, data.truth[:, j], r.weights.clamp(min=0)) / float(data.truth[:, j].std())
        )
        chi = chi2_ndf(values, t, cov)
        p, _ = pulls(values, t, cov)
        ok = ~torch.isnan(p)
        squares.append(p[ok].pow(2))
        replicas = _n_replicas(r)
        if replicas is not None and not chi.singular:
            # Hartlap factor: (R - B - 2) / (R - 1) C^-1 is the unbiased inverse of a
            # covariance estimated from R replicas (B bins); without it E[chi2 / B] =
            # (R - 1) / (R - B - 2), e.g. 3.1 for R = 32, B = 20
            factor = (replicas - values.numel() - 2) / (replicas - 1)
            if factor > 0:
                chi = replace(chi, chi2=chi.chi2 * factor)
            else:
                chi = replace(chi, singular=True)
        p_t, _ = pulls(values, t, cov.diagonal() + t)
        squares_t.append(p_t[~torch.isnan(p_t)].pow(2))
        if chi.singular:
            chi2, ndf, diagonal = chi2 + float(p[ok].pow(2).sum()), ndf + int(ok.sum()), True
        else:
            chi2, ndf = chi2 + chi.chi2, ndf + chi.ndf
    x0, w0 = auc_events if auc_events is not None else (results[0].truth, results[0].weights)
    a, a_err = classifier_auc(x0, w0, data.truth, config.auc_classifier, seed)
    rms = float(torch.cat(squares).mean().sqrt())
    rms_t = float(torch.cat(squares_t).mean().sqrt())
    return TtbarRow(
        dataset, method, dev, floor, delta, w1, chi2, ndf, diagonal, rms, rms_t, a, a_err, seconds
    )


def prior_row(
    dataset: str,
    inputs: UnfoldingInputs,
    data: TtbarData,
    edges: list[torch.Tensor],
    config: TtbarConfig,
    seed: int,
) -> TtbarRow:
    """The simulation's truth, normalised to the data's fiducial events: no unfolding
    (what the methods have to correct; for the closure set, a second sample)."""
    pt_ = inputs.sim_pass_truth
    x = inputs.sim_truth[pt_]
    w = inputs.sim_weights[pt_]
    w = w * data.truth.shape[0] / w.sum()
    r = UnfoldedResult("prior", x, w, None, None, {})  # covariance: diag(sum w^2)
    row = ttbar_evaluate(dataset, "prior", [r] * len(edges), data, edges, config, None, seed)
    return row


def ttbar_tables(rows: list[TtbarRow], names: list[str]) -> tuple[str, str]:
    """The summary table (averages over observables) and the per-observable table."""
    head = (
        "| data set | method | dev | ratio | Delta x1e3 | W1/sigma | chi2/ndf | pull rms | "
        "pull rms +t | AUC | time s |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        ratio = np.mean(np.array(r.dev) / np.array(r.floor))
        ndf = f"{r.ndf} diag" if r.chi2_diagonal else f"{r.ndf}"
        sec = "-" if r.seconds is None else f"{r.seconds:.1f}"
        a = "-" if r.auc is None else f"{r.auc:.3f} +- {r.auc_error:.3f}"
        lines.append(
            f"| {r.dataset} | {r.method} | {100 * np.mean(r.dev):.1f} % | {ratio:.2f} | "
            f"{np.mean(r.delta):.2f} | {np.mean(r.w1):.3f} | {r.chi2 / max(r.ndf, 1):.2f} "
            f"({ndf}) | {r.pull_rms:.2f} | {r.pull_rms_truth:.2f} | {a} | {sec} |"
        )
    summary = head + "\n".join(lines) + "\n"
    head2 = (
        "| data set | method | " + " | ".join(names) + " |\n|---|---|" + "---|" * len(names) + "\n"
    )
    lines2 = []
    floors: dict[str, list[float]] = {}
    for r in rows:
        floors.setdefault(r.dataset, r.floor)
        cells = [f"{100 * d:.1f} ({d / f:.1f})" for d, f in zip(r.dev, r.floor, strict=True)]
        lines2.append(f"| {r.dataset} | {r.method} | " + " | ".join(cells) + " |")
    for ds, fl in floors.items():
        lines2.append(f"| {ds} | floor | " + " | ".join(f"{100 * f:.1f}" for f in fl) + " |")
    return summary, head2 + "\n".join(lines2) + "\n"


def ttbar_coverage(
    config: TtbarConfig,
    card: UnfoldCard,
    sim: dict[str, np.ndarray],
    names: list[str],
    edges: list[torch.Tensor],
    methods: list[str],
    toys: int,
    seed: int,
) -> dict[str, tuple[float, int, float]]:
    """Coverage of each method's +-1 sigma intervals over ``toys`` independent closure
    pseudo-data sets (new ``evgen run`` samples of the simulation's model, each with its
    own detector seed), in every bin whose expected count is >= 100.

    The expected truth is the simulation's fiducial histogram scaled by data_events /
    sim_events (the same model and cuts); its own Poisson variance (scaled alike, about a
    third of the data's) is added to each interval. Returns method -> (coverage, number
    of bin-toys, pull rms against the expected truth)."""
    w_sim = torch.from_numpy(sim["weight"][sim["pass_truth"]])
    scale = config.data_events / config.sim_events
    sim_truth = torch.from_numpy(sim["truth"][sim["pass_truth"]])
    expected, expected_var = [], []
    for j, e in enumerate(edges):
        h = weighted_histogram(sim_truth[:, j], e, torch.ones_like(w_sim))
        expected.append(h * scale)
        expected_var.append(h * scale**2)
    hits: dict[str, list[torch.Tensor]] = {m: [] for m in methods}
    pull_sq: dict[str, list[torch.Tensor]] = {m: [] for m in methods}
    for k in range(toys):
        path = ensure_events(
            config, "toy", 173.0, config.data_events, config.data_seed + 1000 * (k + 1)
        )
        arrays = detector_arrays(path, card, 60 + k, False)
        data = ttbar_data(f"toy{k}", arrays, np.ones_like(arrays["pass_truth"]))
        inputs = ttbar_inputs(sim, data, tuple(names))
        for m in methods:
            results, seconds = run_ttbar_method(m, inputs, edges, config, seed + 17 * (k + 1))
            for j, e in enumerate(edges):
                values, cov = histogram(results[j], j, e)
                mask = expected[j] >= 100
                sigma = (cov.diagonal().clamp(min=0) + expected_var[j]).sqrt()
                z = (values - expected[j])[mask] / sigma[mask]
                hits[m].append(z.abs() <= 1)
                pull_sq[m].append(z.pow(2))
            print(f"  coverage toy {k}: {m} {seconds:.0f} s", file=sys.stderr, flush=True)
    out = {}
    for m in methods:
        h = torch.cat(hits[m])
        out[m] = (
            float(h.double().mean()),
            int(h.numel()),
            float(torch.cat(pull_sq[m]).mean().sqrt()),
        )
    return out


def ttbar_main(args: argparse.Namespace, argv: list[str] | None) -> int:
    """``--problem ttbar``: the top-pair benchmark (TTBAR_DOC)."""
    from unfolding.card import load_unfold_card

    config = TtbarConfig(cache=args.cache)
    if args.smoke:
        small = ClassifierConfig(hidden=32, layers=2, epochs=8, batch_size=2048, learning_rate=3e-3)
        config = replace(
            config,
            sim_events=30_000,
            data_events=20_000,
            ibu_toys=20,
            replicas=2,
            omnifold=replace(config.omnifold, classifier=small, iterations=2),
            generative=GenerativeConfig(
                steps=300,
                finetune_steps=50,
                ensemble=2,
                bootstrap_per_member=2,
                max_iterations=1,
                min_iterations=0,
                classifier=small,
            ),
            auc_classifier=small,
        )
    if args.sim_events is not None:
        config = replace(config, sim_events=args.sim_events)
    if args.data_events is not None:
        config = replace(config, data_events=args.data_events)
    if args.replicas is not None:
        config = replace(config, replicas=args.replicas)
    datasets = [d for d in TTBAR_DATASETS if d in args.only] or list(TTBAR_DATASETS)
    methods = [m for m in TTBAR_METHODS if m in args.only] or list(TTBAR_METHODS)
    unknown = [x for x in args.only if x not in TTBAR_DATASETS and x not in TTBAR_METHODS]
    if unknown:
        raise SystemExit(
            f"unknown --only names {unknown}; data sets {TTBAR_DATASETS}, methods {TTBAR_METHODS}"
        )

    card, _ = load_unfold_card(TTBAR_UNFOLD_CARD)
    card = card.model_copy(
        update={"observables": [o for o in card.observables if o.name not in TTBAR_SKIP]}
    )
    names = [o.name for o in card.observables]
    edges = [torch.as_tensor(o.bin_edges, dtype=F64) for o in card.observables]
    total_start = time.perf_counter()

    start = time.perf_counter()
    sim = detector_arrays(
        ensure_events(config, "sim", 173.0, config.sim_events, config.sim_seed), card, 11, False
    )
    need_173 = any(d != "mt175" for d in datasets)
    nominal = (
        detector_arrays(
            ensure_events(config, "data", 173.0, config.data_events, config.data_seed), card, 22
        )
        if need_173
        else None
    )
    shifted = (
        detector_arrays(
            ensure_events(
                config, "data", config.shifted_mass, config.data_events, config.mass_seed
            ),
            card,
            33,
        )
        if "mt175" in datasets
        else None
    )
    prepare = time.perf_counter() - start
    sets: dict[str, TtbarData] = {}
    for d in datasets:
        if d == "closure":
            sets[d] = ttbar_data(d, nominal, np.ones_like(nominal["pass_truth"]))
        elif d in ("pt+20", "pt-20"):
            s = config.slope if d == "pt+20" else -config.slope
            keep = stress_keep(nominal["top_pt"], s, config.pivot, 7 if s > 0 else 8)
            sets[d] = ttbar_data(d, nominal, keep)
        else:
            sets[d] = ttbar_data(d, shifted, np.ones_like(shifted["pass_truth"]))
    counts = {
        "simulation": (
            int(sim["pass_truth"].size),
            int(sim["pass_truth"].sum()),
            int(sim["pass_reco"].sum()),
            int((sim["pass_truth"] & sim["pass_reco"]).sum()),
        )
    }

    if args.coverage_toys > 0 and args.ttbar_coverage_only:
        return ttbar_coverage_main(args, argv, config, card, sim, names, edges, methods)
    rows: list[TtbarRow] = []
    for d, data in sets.items():
        inputs = ttbar_inputs(sim, data, tuple(names))
        counts[d] = (data.truth.shape[0], data.reco.shape[0])
        row = prior_row(d, inputs, data, edges, config, args.seed)
        rows.append(row)
        print(ttbar_tables([row], names)[0].splitlines()[-1], file=sys.stderr)
        for m in methods:
            results, seconds = run_ttbar_method(m, inputs, edges, config, args.seed)
            row = ttbar_evaluate(d, m, results, data, edges, config, seconds, args.seed)
            rows.append(row)
            print(ttbar_tables([row], names)[0].splitlines()[-1], file=sys.stderr)
            if m == "generative":
                info = results[0].info
                print(
                    f"  generative: {info.get('n_iterations')} prior updates, "
                    f"converged {info.get('converged')}",
                    file=sys.stderr,
                )
    total = time.perf_counter() - total_start

    command = "python benchmarks/unfolding.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    summary, per_obs = ttbar_tables(rows, names)
    sim_n = counts.pop("simulation")
    data_lines = "\n".join(
        f"  - {d}: {nt:,} fiducial (parton-level) events, {nr:,} measured"
        for d, (nt, nr) in counts.items()
    )
    g = config.generative
    text = (
        "## Unfolding: top pairs (issue 7)\n\n"
        f"Command: `OMP_NUM_THREADS=1 {command}` ({total / 60:.1f} min in all, "
        f"{prepare:.0f} s of it reading/generating events and the detector simulation)\n\n"
        f"{machine(args.threads)}\n"
        f"- events: `evgen run cards/ttbar_semileptonic.yaml` (p p > t t~, t > b l+ vl, "
        f"t~ > b~ j j, 13 TeV, LO), detector and observables of `cards/unfold_ttbar.yaml`; "
        f"simulation {config.sim_events:,} generated events ({sim_n[1]:,} fiducial, "
        f"{sim_n[2]:,} reconstructed, {sim_n[3]:,} both); pseudo-data "
        f"{config.data_events:,} generated events per sample\n"
        f"{data_lines}\n"
        f"- IBU {config.ibu_iterations} iterations, {config.ibu_toys} toys, per observable; "
        f"OmniFold {config.omnifold.iterations} iterations, {config.replicas} replicas, "
        f"classifiers {config.omnifold.classifier.hidden} x {config.omnifold.classifier.layers};"
        f" generative {g.hidden} x {g.hidden_layers}, {g.steps} steps, at most "
        f"{g.max_iterations} prior updates, {g.ensemble} x {g.bootstrap_per_member} replicas\n\n"
        "Averages over the observables (dev, ratio, Delta, W1/sigma; chi2 and pulls over "
        "all their bins):\n\n"
        + summary
        + "\nPer observable: dev in % (ratio to the floor); floor rows: the floor in %.\n\n"
        + per_obs
        + "\n### Notes\n\n"
        + TTBAR_NOTES
    )
    print(text)
    full = not (args.only or args.smoke or args.sim_events or args.data_events or args.replicas)
    if args.out is not None or full:
        path = write_section(
            "unfolding top pairs", text, args.out or Path(__file__).with_name("RESULTS.md")
        )
        print(f"wrote {path}", file=sys.stderr)
    return 0


def ttbar_coverage_main(
    args: argparse.Namespace,
    argv: list[str] | None,
    config: TtbarConfig,
    card: UnfoldCard,
    sim: dict[str, np.ndarray],
    names: list[str],
    edges: list[torch.Tensor],
    methods: list[str],
) -> int:
    """``--problem ttbar --coverage-only``: the coverage section over repeated toys."""
    start = time.perf_counter()
    cov = ttbar_coverage(config, card, sim, names, edges, methods, args.coverage_toys, args.seed)
    total = time.perf_counter() - start
    command = "python benchmarks/unfolding.py " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    lines = [
        "| method | coverage of +-1 sigma | bin-toys | pull rms vs expected |",
        "|---|---|---|---|",
    ]
    for m, (c, n, rms) in cov.items():
        lines.append(f"| {m} | {100 * c:.0f} % | {n} | {rms:.2f} |")
    text = (
        "## Unfolding: top pairs, coverage over repeated toys (issue 7)\n\n"
        f"Command: `OMP_NUM_THREADS=1 {command}` ({total / 60:.1f} min in all)\n\n"
        f"{machine(args.threads)}\n"
        f"- {args.coverage_toys} independent closure pseudo-data sets of "
        f"{config.data_events:,} generated events each (`evgen run` of "
        "cards/ttbar_semileptonic.yaml with new seeds, each through the detector with its "
        "own seed), unfolded with the simulation of the top-pair table; every bin of the "
        f"{len(names)} observables with an expected count >= 100\n"
        "- expected truth: the simulation's fiducial histogram x data_events / sim_events; "
        "its Poisson variance (x the same factor squared) is added to each method's "
        "variance; a method whose intervals are right covers ~68 % (pull rms ~1)\n\n"
        + "\n".join(lines)
        + "\n"
    )
    print(text)
    if args.out is not None or not (args.only or args.smoke):
        path = write_section(
            "unfolding top coverage", text, args.out or Path(__file__).with_name("RESULTS.md")
        )
        print(f"wrote {path}", file=sys.stderr)
    return 0


TTBAR_NOTES = """\
- p_T(t t~) is not unfolded: at leading order it is zero (2 -> 2 plus decays); the
  card's ttbar_pt observable needs t t~ + jet.
- Floor: mean over the bins with t >= 100 of 2 / sqrt(pi t), the expected |X - Y| / t of
  two independent Poisson samples of mean t. "prior" rows: the simulation's fiducial
  truth scaled to the data's fiducial count, no unfolding (covariance: its sum of w^2
  only). For the closure set it is an independent sample of the same model, 3x larger,
  so its ratio should be sqrt((1 + 1/3) / 2) = 0.82 (one sample: +-~0.08): a check of
  the floor formula.
- Stress sets: pt+-20 accept the closure set's events with probability proportional to
  max(0, 1 +- 0.2 (pT(t) - 150 GeV) / 100 GeV) (checked: the accepted/all ratio in
  100 GeV bins of parton-level top pT, relative to 100-200 GeV, is 0.84 1.21 1.41 1.58
  1.84 for +20 % and 1.15 0.80 0.61 0.43 0.16 for -20 %, against 0.8 1.2 1.4 1.6 1.8 and
  1.2 0.8 0.6 0.4 0.2 at the bin centres; the steep spectrum pulls the outer bins' means
  off their centres); mt175 is
  a separate evgen sample with mt = 175 GeV, wt = 1.5525 GeV (LO scaling of 1.4915;
  sigma 65.9 pb against 69.4 pb). At ~31k fiducial events the 2 GeV shift is a weak
  stress (prior ratio ~1, largest in m_tt~), the top-pT slopes a strong one (prior
  ratio 2-3, AUC 0.55).
- Event generation (cached in output/unfolding_ttbar/, reused): `evgen run` on one
  thread takes 206 s for the 300,000 simulated events and 75-88 s per 100,000 (VEGAS
  setup and training ~7 s; 69.44 +- 0.06 pb); the detector simulation takes seconds.
- OmniFold's replicas resample the data and the simulation (Poisson bootstraps) with new
  classifier seeds; the generative method's are 4 ensemble members (simulation
  bootstrap) x 8 data bootstraps; IBU's toys resample data and response.
- Full chi2 (not "diag") uses the inverse covariance scaled by the Hartlap factor
  (R - B - 2) / (R - 1) for a covariance estimated from R replicas/toys and B bins
  (0.79 for IBU's 100 toys at 20 bins; 0.32 for the generative method's 32 replicas),
  so E[chi2/ndf] = 1 for an exact method; the prior rows have no replicas.
- The detector assigns objects perfectly (truth-matched), so migrations come from
  resolution, acceptance, efficiency and b-tagging only; the hadronic top's jets are
  light quarks (including c, which mistag at 10 %).
- IBU's AUC uses the weights of its top-pT unfolding (each observable is unfolded alone,
  so no single IBU result covers the full space).
- Covariances from R replicas are noisy: even for a perfect method the pulls then follow
  Student's t with R - 1 degrees of freedom, pull rms sqrt((R - 1) / (R - 3)) for a
  Gaussian (1.13 for OmniFold's 10 replicas, 1.03 for the generative method's 32; IBU's
  100 toys: 1.01), and with R <= bins the covariance is singular, so chi2 is the sum of
  squared pulls ("diag").
- chi2 and "pull rms" use the method's covariance only, as quoted; "pull rms +t" adds
  the truth histogram's Poisson variance t to each bin's variance. Only ~45 % of the
  fiducial events are measured, so the fluctuations of the unmeasured ones are in the
  true histogram but in no unfolded result: with a covariance that describes only the
  data's (and the response's) fluctuations the first column tends to exceed 1 even for
  an exact method, the second to fall below 1.
- AUC +- its standard error for indistinguishable samples (Mann-Whitney, the weighted
  half's effective size); the prior rows show how far the data's truth is from the
  simulation's in the full space.
"""


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="5,000 events, tiny networks")
    parser.add_argument("--only", nargs="*", default=[], help="variants and/or methods")
    parser.add_argument("--events", type=int, default=None)
    parser.add_argument("--replicas", type=int, default=None)
    parser.add_argument("--coverage-toys", type=int, default=20)
    parser.add_argument(
        "--coverage-only",
        dest="ttbar_coverage_only",
        action="store_true",
        help="ttbar: only the coverage over --coverage-toys closure toys",
    )
    parser.add_argument(
        "--coverage-methods",
        nargs="*",
        default=None,
        help="toy: methods repeated over --coverage-toys (default ibu-4 ibu-10 generative)",
    )
    parser.add_argument("--floor-samples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the section here")
    parser.add_argument(
        "--problem", choices=("gauss", "ttbar"), default="gauss", help="the benchmark problem"
    )
    parser.add_argument("--sim-events", type=int, default=None, help="ttbar: simulation size")
    parser.add_argument("--data-events", type=int, default=None, help="ttbar: pseudo-data size")
    parser.add_argument(
        "--cache",
        type=Path,
        default=TtbarConfig.cache,
        help="ttbar: folder of the generated events (reused)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.problem == "ttbar":
        return ttbar_main(args, argv)

    config = ToyConfig()
    if args.smoke:
        small = ClassifierConfig(hidden=16, layers=2, epochs=15, batch_size=512, learning_rate=3e-3)
        config = replace(
            config,
            events=5000,
            ibu_toys=20,
            replicas=2,
            omnifold=replace(config.omnifold, classifier=small),
            generative=GenerativeConfig(
                steps=300, finetune_steps=100, ensemble=2, bootstrap_per_member=4, classifier=small
            ),
        )
        args.coverage_toys = min(args.coverage_toys, 3)
        args.floor_samples = min(args.floor_samples, 3)
    if args.events is not None:
        config = replace(config, events=args.events)
    if args.replicas is not None:
        config = replace(config, replicas=args.replicas)
    variants = [v for v in VARIANTS if v in args.only] or list(VARIANTS)
    methods = [m for m in METHODS if m in args.only] or list(METHODS)
    unknown = [x for x in args.only if x not in VARIANTS and x not in METHODS]
    if unknown:
        parser.error(
            f"unknown --only names {unknown}; variants {VARIANTS}, methods {list(METHODS)}"
        )

    coverage_methods = (
        COVERAGE_METHODS if args.coverage_methods is None else tuple(args.coverage_methods)
    )
    toy_means: list[str] = []
    rows: list[Row] = []
    floors: dict[str, float] = {}
    start = time.perf_counter()
    for variant in variants:
        toy = gaussian_toy(variant, config.events, args.seed)
        floor = floor_row(variant, toy, config, args.floor_samples, args.seed + 7)
        floors[variant] = floor.dev_100
        rows.append(floor)
        print(table([floor], floors), end="", file=sys.stderr)
        for name in methods:
            result = METHODS[name](toy.inputs, config, args.seed)
            row = evaluate(variant, name, result, toy, config)
            if name in coverage_methods and args.coverage_toys > 0:
                cov, toy_rows = coverage_of(
                    name, METHODS[name], variant, config, args.coverage_toys, 50
                )
                row = replace(row, coverage=cov)
                toy_means.append(toy_mean_row(variant, name, toy_rows, floors[variant]))
            rows.append(row)
            print(table([row], floors).splitlines()[-1], file=sys.stderr)
    total = time.perf_counter() - start

    command = "python benchmarks/unfolding.py" + (
        " " + shlex.join(argv if argv is not None else sys.argv[1:])
        if (argv or sys.argv[1:])
        else ""
    )
    text = (
        "## Unfolding: the Gaussian toy (issue 7)\n\n"
        f"Command: `OMP_NUM_THREADS=1 {command}` ({total / 60:.1f} min in all)\n\n"
        f"{machine(args.threads)}\n"
        f"- {config.events:,} events in simulation and data, {config.bins} bins on "
        f"[{config.low:g}, {config.high:g}]; IBU {config.ibu_toys} toys; OmniFold "
        f"{config.replicas} replicas; coverage over {args.coverage_toys} pseudo-experiments; "
        f"floor: mean of {args.floor_samples} second samples\n\n"
        + table(rows, floors)
        + "\n"
        + (
            f"Means over the {args.coverage_toys} coverage pseudo-experiments (each against "
            "its own truth; +- the standard deviation over toys, the mean's error is that / "
            f"sqrt({args.coverage_toys})):\n\n"
            "| variant | method | dev / floor | Delta x1e3 | pull rms | time s |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(toy_means) + "\n\n"
            if toy_means
            else ""
        )
        + NOTES
    )
    print(text)
    full = not (args.only or args.smoke or args.events or args.replicas)
    if args.out is not None or full:
        path = write_section("unfolding", text, args.out or Path(__file__).with_name("RESULTS.md"))
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
