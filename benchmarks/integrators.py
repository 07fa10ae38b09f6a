"""Integrators side by side at an equal budget of integrand evaluations.

Not a test. Run from the repository root (CPU; the full mode takes several minutes):

    python benchmarks/integrators.py                      # writes benchmarks/RESULTS.md
    python benchmarks/integrators.py --smoke              # seconds: tiny budgets, for CI
    python benchmarks/integrators.py --only camel-4d ring vegas evgen-vegas

``--only`` takes problem names and integrator names (one list; either kind left out means
all of that kind). ``--smoke``: budgets of 10,000 evaluations on camel-2d, ridge-4d and
ttbar (``--only`` picks others), every integrator. The full mode gives every problem
500,000 evaluations (``--budget``) and writes benchmarks/RESULTS.md; a partial run
(``--only``, ``--budget``, ``--smoke``) prints its table and writes a file only with
``--out``.

Problems (every toy on [0, 1]^d with an exact integral, see evgen/integrators/toys.py):
    camel-2d, camel-4d, camel-8d, camel-16d: i-flow's camel, alpha = 0.1.
    ring: a thin Gaussian ring (r0 = 0.3, width 0.01) in 2-d.
    ridge-2d, ridge-4d: a narrow Gaussian (sigma = 0.02) around the main diagonal.
    (also by name: annulus, camel-<d>d, ridge-<d>d.)
    ttbar: p p > t t~ at 13 TeV from cards/ttbar.yaml (pb), built as ``evgen run`` builds it.
    drell-yan-zprime: cards/drell_yan_zprime.yaml, when that card exists.
    Physics integrals are not known in closed form: the reference is evgen's Vegas at
    ``--ref-factor`` (default 10) times the budget, its error entering the pull.

Integrators (the registry ``INTEGRATORS``; a row says why one cannot run, never a number):
    vegas         Lepage's ``vegas`` package (batch integrand through zero-copy numpy views).
    evgen-vegas   evgen.integrators.vegas.Vegas.
    madnis        the ``madnis`` package from PyPI (its Integrator, single channel: one
                  normalizing flow on the unit hypercube, KL loss), if importable.
    evgen-madnis  evgen.integrators.madnis (its Integrator subclass), when it exists.
    evgen-madnis-anneal  evgen MadNIS from the uniform start, annealed training (the
                  first 40 % of the rounds on |f|^beta, beta 0.01 -> 1): finds every peak.
    evgen-cfm     evgen.integrators.cfm (its Integrator subclass), when it exists.
    evgen-vegas-mc, evgen-madnis-mc  the cards' multi-channel integrands, one sampler per
                  channel (physics problems; see :class:`Multichannel`).
    Any evgen ``Integrator`` subclass plugs in with an :class:`EvgenPlugin` entry: built as
    ``cls(n_dim, seed=seed)``, trained with ``train(f, n_iter, n_per_iter)``, sampled with
    ``sample(n) -> (r, jac)``.

Protocol, the same for every integrator. Each (problem, integrator) gets the same total
budget B of integrand evaluations, counted by a wrapper around the integrand (every call,
every point, whatever the integrator does internally). Training may use up to
(1 - ``--final-fraction``) B = 0.75 B by default; the rest, B minus what training really
used, is the final sample: fresh i.i.d. points ``r, jac = sample(n)`` from the frozen
sampler, weights w = f(r) jac. On these weights only:
    integral = mean(w), error = std(w) / sqrt(n)  (no stratification, no reuse of training
        points: the estimate ``evgen run`` makes from its weighted events);
    pull = (integral - exact) / sqrt(error^2 + reference error^2);
    weight spread = std(w) / mean(w)  (error * sqrt(n) / integral);
    unweighting efficiency <|w|> / max|w|, and <|w|> / w_max with evgen's robust
        maximum ``find_max_weight(w, max_loss=1e-3)`` (what ``evgen run`` unweights with);
    time: wall time of training + final sampling and evaluation, torch on ``--threads``
        (default 1) threads; "of which f": the part spent inside the integrand.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import inspect
import math
import os
import platform
import shlex
import sys
import tempfile
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from machine_info import cpu_model
from results_file import write_section
from torch import Tensor

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evgen.integrators import toys  # noqa: E402
from evgen.integrators.base import Integrator  # noqa: E402
from evgen.integrators.vegas import Vegas  # noqa: E402
from evgen.unweight import find_max_weight  # noqa: E402

FULL_BUDGET = 500_000  #: evaluations per (problem, integrator)
SMOKE_BUDGET = 10_000
SMOKE_PROBLEMS = ("camel-2d", "ridge-4d", "ttbar")  #: --smoke's problems (unless --only)
F64 = torch.float64
CHUNK = 2**16  # points per call in the final sample
ONE_BELOW = 1.0 - 2.0**-53  # largest float64 below 1


# --- problems ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    name: str
    n_dim: int
    f: Callable[[Tensor], Tensor]
    exact: float
    budget: int  #: total integrand evaluations per integrator
    exact_error: float = 0.0  #: error of a computed reference (0: exact)
    unit: str = ""
    reference: str = ""  #: how ``exact`` was obtained


@dataclass(frozen=True)
class Unavailable:
    """A problem that cannot be built now (e.g. a card not written yet)."""

    name: str
    reason: str


def toy_problem(name: str, budget: int) -> Problem:
    t = toys.make(name)
    return Problem(
        name, t.n_dim, t, t.exact, budget, reference=f"{t.definition}; exact: {t.method}"
    )


def physics_problem(name: str, card_path: str, budget: int) -> Problem | Unavailable:
    """The integrand of a card as ``evgen run`` builds it (several groups: their sum)."""
    if not (ROOT / card_path).exists():
        return Unavailable(name, f"{card_path} does not exist yet")
    import yaml

    from evgen.card import load_card, parse_card
    from evgen.setup import prepare

    _, text = load_card(ROOT / card_path)  # validates the card as `evgen run` does
    data = yaml.safe_load(text)  # the card's own keys (as `evgen run -o DIR`)
    data.setdefault("output", {})["path"] = tempfile.mkdtemp(prefix="evgen-bench-integrators-")
    # One phase-space mapping for every integrator: a multi-channel integrand's __call__
    # is one channel's share only. (evgen's own multi-channel VEGAS is `evgen run`'s.)
    data.setdefault("integrator", {})["multichannel"] = False
    run = prepare(parse_card(data, source=card_path), text, source=card_path)
    fs = [g.integrand for g in run.groups]
    dims = {f.n_dim for f in fs}
    if len(dims) != 1:
        return Unavailable(name, f"{card_path}: groups of different dimensions {sorted(dims)}")
    n_dim = dims.pop()
    if len(fs) == 1:
        f = fs[0]
        note = f"{card_path}, its phase-space group's integrand (single channel)"
    else:

        def f(r: Tensor) -> Tensor:
            return sum(g(r) for g in fs)

        note = f"{card_path}, the sum of its {len(fs)} phase-space groups' integrands"
    return Problem(name, n_dim, f, math.nan, budget, unit="pb", reference=note)


def with_reference(p: Problem, factor: int, seed: int) -> Problem:
    """p with an evgen Vegas value at ``factor`` x its budget as the reference."""
    n_iter = 10
    n = max(2, factor * p.budget // (2 * n_iter))
    t0 = time.perf_counter()
    v = Vegas(p.n_dim, seed=seed)
    v.train(p.f, n_iter, n)
    est = v.integrate(p.f, n_iter, n)
    note = (
        f"{p.reference}; reference {est.value:.6g} ± {est.error:.2g} {p.unit} from evgen Vegas "
        f"(seed {seed}): train {n_iter} x {n:,} + integrate (frozen grid, stratified) "
        f"{n_iter} x {n:,} = {2 * n_iter * n:,} evaluations, chi2/dof {est.chi2_dof:.2f}, "
        f"{time.perf_counter() - t0:.1f} s"
    )
    return replace(p, exact=est.value, exact_error=est.error, reference=note)


# --- budget accounting -------------------------------------------------------------------


class Counted:
    """Wraps an integrand; counts every point it is called on and the time spent in it."""

    def __init__(self, f: Callable[[Tensor], Tensor]) -> None:
        self.f = f
        self.n = 0
        self.calls = 0
        self.seconds = 0.0

    def __call__(self, r: Tensor) -> Tensor:
        t0 = time.perf_counter()
        out = self.f(r)
        self.seconds += time.perf_counter() - t0
        self.n += int(r.shape[0])
        self.calls += 1
        return out


# --- integrator adapters -----------------------------------------------------------------

Sampler = Callable[[int], tuple[Tensor, Tensor]]


class Adapter(ABC):
    """How the harness trains one kind of integrator and samples from the result."""

    key: str  #: name on the command line
    label: str  #: name in the table

    def unavailable(self) -> str | None:
        """Why this integrator cannot run here (None: it can)."""
        return None

    def settings(self) -> str:
        """The settings used, one line for RESULTS.md."""
        return ""

    @abstractmethod
    def train(self, f: Counted, n_dim: int, budget: int, seed: int) -> Sampler:
        """Train on f with at most ``budget`` evaluations; return ``sample(n) -> (r, jac)``."""


class VegasPackage(Adapter):
    """Lepage's ``vegas``: ``n_iter`` adapting iterations (vegas+), then its map's samples."""

    key = "vegas"

    def __init__(self, n_iter: int = 10) -> None:
        self.n_iter = n_iter

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"vegas {_version('vegas')}"

    def unavailable(self) -> str | None:
        return _import_error("vegas")

    def settings(self) -> str:
        return (
            f"`vegas.Integrator` defaults (alpha 0.5, beta 0.75, grid min(neval/10, 1000) "
            f"increments), {self.n_iter} adapting iterations of budget/{self.n_iter} (vegas "
            "uses a few % fewer), then i.i.d. points of its map (`integ.map.map`)"
        )

    def train(self, f: Counted, n_dim: int, budget: int, seed: int) -> Sampler:
        import vegas

        @vegas.lbatchintegrand
        def fnp(x: np.ndarray) -> np.ndarray:
            return f(torch.from_numpy(np.ascontiguousarray(x))).numpy()

        rng = np.random.default_rng(seed)
        integ = vegas.Integrator(n_dim * [[0.0, 1.0]], ran_array_generator=rng.random)
        integ(fnp, nitn=self.n_iter, neval=max(2, budget // self.n_iter))

        def sample(n: int) -> tuple[Tensor, Tensor]:
            y = rng.random((n, n_dim))
            x = np.empty_like(y)
            jac = np.empty(n)
            integ.map.map(y, x, jac)
            return torch.from_numpy(x), torch.from_numpy(jac)

        return sample


@dataclass
class EvgenPlugin(Adapter):
    """Any evgen ``Integrator`` subclass, found in ``module``; trained in rounds.

    Built as ``cls(n_dim, seed=seed, **kwargs)`` (``seed`` left out if the constructor
    has no such parameter; torch's global generator is seeded then), trained with
    ``train(f, n_iter, budget // n_iter)``, sampled with ``sample(n)``. ``class_name``
    None: the module's one Integrator subclass (or its ``__all__``'s first). With
    ``warm_start`` > 0, that fraction of the training budget first trains an evgen Vegas
    (5 iterations), passed to the constructor as ``vegas=warm_start_arg(v)``.
    """

    key: str
    label: str
    module: str
    class_name: str | None = None
    n_iter: int = 10
    #: points per training round; when set, the number of rounds is budget // round_size
    round_size: int | None = None
    kwargs: dict = field(default_factory=dict)
    warm_start: float = 0.0
    warm_start_arg: Callable[[Vegas], object] = lambda v: v
    #: > 0: MadNIS's annealing over this fraction of the training rounds
    #: (``config.anneal_rounds``, set once the number of rounds is known)
    anneal_fraction: float = 0.0
    #: run on these problems only (None: all); the others get a row saying why
    problems: tuple[str, ...] | None = None
    skip_reason: str = ""

    def _class(self) -> type[Integrator]:
        mod = importlib.import_module(self.module)
        if self.class_name is not None:
            return getattr(mod, self.class_name)
        found = [
            obj
            for name in getattr(mod, "__all__", dir(mod))
            if isinstance(obj := getattr(mod, name, None), type)
            and issubclass(obj, Integrator)
            and obj is not Integrator
            and not inspect.isabstract(obj)
        ]
        if not found:
            raise LookupError(f"{self.module} defines no concrete evgen Integrator subclass")
        return found[0]

    def unavailable(self) -> str | None:
        try:
            cls = self._class()
        except ModuleNotFoundError as err:
            if err.name is not None and self.module.startswith(err.name):
                return f"not available yet ({self.module} does not exist)"
            return f"import of {self.module} failed: {type(err).__name__}: {err}"
        except Exception as err:  # a module being written may fail in any way
            return f"import of {self.module} failed: {type(err).__name__}: {err}"
        self._resolved = f"{cls.__module__}.{cls.__qualname__}"
        return None

    def settings(self) -> str:
        name = getattr(self, "_resolved", self.module)
        warm = (
            f"; warm start: evgen Vegas on {self.warm_start:.0%} of the training budget"
            if self.warm_start > 0
            else ""
        )
        kw = f", {self.kwargs}" if self.kwargs else ""
        if self.anneal_fraction > 0:
            kw += (
                f"; annealing: anneal_rounds = {self.anneal_fraction:.0%} of the rounds "
                "(tempered target |f|^beta, beta 0.01 -> 1), no VEGAS warm start"
            )
        rounds = (
            f"training budget // {self.round_size} rounds of about {self.round_size} points"
            if self.round_size is not None
            else f"{self.n_iter} rounds"
        )
        return (
            f"`{name}(n_dim, seed=seed{kw})`, `train(f, ...)` in {rounds}, then `sample(n)`{warm}"
        )

    def train(self, f: Counted, n_dim: int, budget: int, seed: int) -> Sampler:
        cls = self._class()
        kwargs = dict(self.kwargs)
        if self.warm_start > 0:
            n_warm = int(self.warm_start * budget)
            v = Vegas(n_dim, seed=seed + 1)
            v.train(f, 5, max(2, n_warm // 5))
            kwargs["vegas"] = self.warm_start_arg(v)
            budget -= f.n
        if "seed" in inspect.signature(cls).parameters:
            kwargs["seed"] = seed
        else:
            torch.manual_seed(seed)
        if self.round_size is not None:
            n_iter = max(1, budget // self.round_size)
        else:
            n_iter = self.n_iter
        if self.anneal_fraction > 0:
            kwargs["config"] = replace(
                kwargs["config"], anneal_rounds=int(self.anneal_fraction * n_iter)
            )
        integ = cls(n_dim, **kwargs)
        integ.train(f, n_iter, max(2, budget // n_iter))
        return integ.sample


class MadnisPackage(Adapter):
    """The ``madnis`` package (PyPI): its Integrator with one channel (one flow), KL loss.

    Flow: madnis defaults (rational-quadratic spline coupling blocks on the unit
    hypercube, uniform latent space, 10 bins, subnets of 3 layers x 32 units, "log"
    permutations: 2 ceil(log2 d) blocks), float64. Training: online steps of ``batch``
    fresh points, each followed by ``buffered_steps`` steps on points drawn from a replay
    buffer of the last ``buffer_batches`` batches (madnis's buffered training, "The MadNIS
    reloaded", arXiv:2311.01548: more optimiser steps per integrand evaluation), Adam at
    ``lr`` with cosine decay over the planned steps, until the next online step would
    exceed the budget. Samples: ``flow.sample`` with its log density, jac = exp(-log q).

    On camel-4d and ridge-4d at 500k evaluations (seed 1), lr 3e-3 gave weight spreads
    0.45 and 10.7 online, 0.33 and 1.3 with 3 buffered steps (lr 1e-3 online: 1.2, 17).
    """

    key = "madnis"

    def __init__(
        self, batch: int = 1024, lr: float = 3e-3, buffered_steps: int = 3, buffer_batches: int = 20
    ) -> None:
        self.batch = batch
        self.lr = lr
        self.buffered_steps = buffered_steps
        self.buffer_batches = buffer_batches

    @property
    def label(self) -> str:  # type: ignore[override]
        return f"madnis {_version('madnis')}"

    def unavailable(self) -> str | None:
        err = _import_error("madnis.integrator")
        if err is not None:
            return f"madnis package not importable: {err}"
        return None

    def settings(self) -> str:
        return (
            f"`madnis.integrator.Integrator(f, dims=d, batch_size={self.batch}, "
            f"learning_rate={self.lr:g}, scheduler=cosine, buffer_capacity="
            f"{self.buffer_batches * self.batch}, buffered_steps={self.buffered_steps}, "
            "dtype=float64)` (flow and loss: package defaults, single channel), `train_step()` "
            "while the next online step fits the training budget, then "
            "`flow.sample(n, return_log_prob=True)`"
        )

    def train(self, f: Counted, n_dim: int, budget: int, seed: int) -> Sampler:
        from madnis.integrator import Integrator as MadnisIntegrator

        torch.manual_seed(seed)
        online = max(1, budget // self.batch)
        steps = online * (1 + self.buffered_steps)
        buffered = {}
        if self.buffered_steps > 0:
            buffered = {
                "buffer_capacity": self.buffer_batches * self.batch,
                "buffered_steps": self.buffered_steps,
            }
        integ = MadnisIntegrator(
            f,
            dims=n_dim,
            batch_size=self.batch,
            learning_rate=self.lr,
            scheduler=lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps),
            dtype=F64,
            **buffered,
        )
        for _ in range(steps):
            # online steps draw fresh points (madnis draws again while fewer than half of
            # a batch are non-zero); buffered steps evaluate nothing
            if integ.step_type_count == 0 and f.n + self.batch > budget:
                break
            integ.train_step()

        @torch.no_grad()
        def sample(n: int) -> tuple[Tensor, Tensor]:
            x, log_q = integ.flow.sample(n, return_log_prob=True, dtype=F64)
            return x, torch.exp(-log_q)

        return sample


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def _import_error(module: str) -> str | None:
    try:
        importlib.import_module(module)
    except Exception as err:
        return f"{type(err).__name__}: {err}"
    return None


class Multichannel(Adapter):
    """Base of the multi-channel rows (physics problems only): the card's MULTI-channel
    integrand (``integrator.multichannel: true``, one phase-space mapping per diagram
    channel, MadGraph's single-diagram-enhanced prior alpha_c), each channel sampled by
    its own sampler. Every point evaluated in any channel counts against the budget.

    Final sample: points allocated over the channels by the sampler's own rule, channel
    c's weights w_c = alpha_c(x) f(x) J_c(r) / q_c(r) (mean: channel c's share I_c).
    Integral sum_c mean(w_c), error^2 = sum_c var(w_c) / n_c (stratified). Unweighting
    efficiency as ``evgen run`` unweights a multi-channel run (MadGraph's way): each
    channel against its own maximum, events per channel proportional to I_c; the
    evaluations needed per unweighted event are then minimal with n_c proportional to
    I_c / eff_c, which gives eff = sum_c I_c / sum_c (I_c / eff_c) with
    eff_c = mean(w_c) / max(w_c) (max) or / find_max_weight(w_c, 1e-3) (robust). Weight
    spread: the relative error times sqrt(n), the single-channel std/mean's equivalent."""

    cards = {"ttbar": "cards/ttbar.yaml", "drell-yan-zprime": "cards/drell_yan_zprime.yaml"}

    def train(self, f: Counted, n_dim: int, budget: int, seed: int) -> Sampler:
        raise NotImplementedError("multi-channel: see run()")

    def _integrand(self, p: Problem) -> tuple[Any, Counted]:
        """The card's multi-channel integrand, with a counter of points and time."""
        import yaml

        from evgen.card import parse_card
        from evgen.setup import prepare

        card_path = self.cards[p.name]
        text = (ROOT / card_path).read_text()
        data = yaml.safe_load(text)
        data.setdefault("output", {})["path"] = tempfile.mkdtemp(prefix="evgen-bench-mc-")
        data.setdefault("integrator", {})["multichannel"] = True
        run = prepare(parse_card(data, source=card_path), text, source=card_path)
        if len(run.groups) != 1:
            raise ValueError(f"{card_path}: {len(run.groups)} phase-space groups, expected 1")
        g = run.groups[0].integrand
        counted = Counted(lambda r: r)  # counts points and time of the evaluations below

        class CountedIntegrand:
            n_dim = g.n_dim
            n_channels = g.n_channels
            beams = g.beams

            def evaluate(self, r: Tensor, channel: int = 0) -> Any:
                t0 = time.perf_counter()
                out = g.evaluate(r, channel)
                counted.seconds += time.perf_counter() - t0
                counted.n += int(r.shape[0])
                counted.calls += 1
                return out

            def __call__(self, r: Tensor, channel: int = 0) -> Tensor:
                v = self.evaluate(r, channel)
                return v.channel_prior[:, channel] * v.weights

        return CountedIntegrand(), counted

    @abstractmethod
    def fit(self, f: Any, budget: int, seed: int) -> Callable[[int], list[tuple[int, Tensor]]]:
        """Train on ``f`` within ``budget`` evaluations; return final(n) -> per channel
        (c, weights w_c) of n fresh points in all (evaluated through ``f``)."""

    def run(self, p: Problem, seed: int, final_fraction: float) -> Row:
        row = Row(p, self.label)
        if p.name not in self.cards:
            row.status = "multi-channel physics problems only"
            return row
        train_budget = int(round((1.0 - final_fraction) * p.budget))
        try:
            f, counted = self._integrand(p)
            t0 = time.perf_counter()
            final = self.fit(f, train_budget, seed)
            row.n_train = counted.n
            n_final = p.budget - counted.n
            if n_final < 2 * f.n_channels:
                row.status = f"training used {counted.n:,} evaluations, the whole budget"
                return row
            parts = final(n_final)
        except Exception as err:
            traceback.print_exc()
            row.status = f"failed: {type(err).__name__}: {err}"
            return row
        row.seconds = time.perf_counter() - t0
        row.f_seconds = counted.seconds
        row.n_final = counted.n - row.n_train
        stats = multichannel_stats([w for _, w in parts])
        row.value, row.error, row.spread, row.eff_max, row.eff_robust = stats
        shares = ", ".join(
            f"{c}: {w.numel():,} pts, {float(w.mean()) / row.value:.3g} of I" for c, w in parts
        )
        row.notes.append(f"{f.n_channels} channels ({shares})")
        return row


def multichannel_stats(ws: list[Tensor]) -> tuple[float, float, float, float, float]:
    """(integral, error, spread, eff (max), eff (robust)) of per-channel weights (see
    :class:`Multichannel`)."""
    means = [float(w.mean()) for w in ws]
    value = sum(means)
    error = math.sqrt(sum(float(w.var()) / w.numel() for w in ws))
    n = sum(w.numel() for w in ws)
    spread = error * math.sqrt(n) / value

    def eff(max_of: Callable[[Tensor], float]) -> float:
        cost = 0.0
        for m, w in zip(means, ws, strict=True):
            if m > 0:
                cost += max_of(w)  # I_c / eff_c = max_c
        return value / cost

    return (
        value,
        error,
        spread,
        eff(lambda w: float(w.abs().max())),
        eff(lambda w: find_max_weight(w, max_loss=1e-3)),
    )


def _allocate(weight: Tensor, n: int, floor_fraction: float = 0.1) -> list[int]:
    """n points over channels proportional to ``weight`` (C,), each at least
    floor_fraction * n / C (and 2)."""
    c = weight.numel()
    floor = max(2, int(floor_fraction * n / c))
    share = (n - floor * c) * weight / weight.sum()
    counts = share.floor().long() + floor
    counts[int(torch.argmax(share - share.floor()))] += n - int(counts.sum())
    return [int(k) for k in counts]


class EvgenVegasMultichannel(Multichannel):
    """evgen VEGAS, one grid per channel, as ``evgen run`` integrates a multi-channel card."""

    key = "evgen-vegas-mc"
    label = "evgen VEGAS (multi-channel)"

    def unavailable(self) -> str | None:
        return None

    def settings(self) -> str:
        return (
            "one `Vegas(n_dim)` per channel of the card's multi-channel integrand, trained on "
            "alpha_c f in 10 rounds of budget/(10 C); final points over the channels in "
            "proportion to each channel's last-round standard deviation (Neyman), floor 10 %"
            "/C; physics problems only"
        )

    def fit(self, f: Any, budget: int, seed: int) -> Callable[[int], list[tuple[int, Tensor]]]:
        n_ch = f.n_channels
        grids, sigma = [], []
        for c in range(n_ch):
            v = Vegas(f.n_dim, seed=seed + 1 + c)
            est = v.train(lambda r, c=c: f(r, c), 10, max(2, budget // (10 * n_ch)))
            grids.append(v)
            n_last = max(2, budget // (10 * n_ch))
            sigma.append(est.error * math.sqrt(n_last) if est.error > 0 else 0.0)

        def final(n: int) -> list[tuple[int, Tensor]]:
            weight = torch.tensor(sigma, dtype=F64)
            if not float(weight.sum()) > 0:
                weight = torch.ones(n_ch, dtype=F64)
            out = []
            for c, nc in enumerate(_allocate(weight, n)):
                r, jac = grids[c].sample(nc)
                out.append((c, f(r, c) * jac))
            return out

        return final


class EvgenMadnisMultichannel(Multichannel):
    """evgen MadNIS on the card's multi-channel integrand: one flow per phase-space
    channel on that channel's VEGAS grid (warm start on 10 % of the training budget),
    learned channel weights from the single-diagram-enhanced prior; the same training
    regime as ``evgen-madnis``. Final points stratified by MadNIS's own allocation."""

    key = "evgen-madnis-mc"
    label = "evgen MadNIS (multi-channel)"

    def unavailable(self) -> str | None:
        try:
            importlib.import_module("evgen.integrators.madnis")
        except Exception as err:
            return f"import of evgen.integrators.madnis failed: {type(err).__name__}: {err}"
        return None

    def settings(self) -> str:
        return (
            "`MadNIS(n_dim, n_channels, vegas=[per-channel evgen Vegas], config=...)` on the "
            "card's multi-channel integrand, VEGAS warm start (5 rounds) on 10 % of the "
            "training budget, then rounds of 1024 points, 3 buffered steps, learning rate "
            "3e-3; final points allocated by `MadNIS.allocation`; physics problems only"
        )

    def fit(self, f: Any, budget: int, seed: int) -> Callable[[int], list[tuple[int, Tensor]]]:
        from evgen.integrators.madnis import MadNIS

        n_ch = f.n_channels
        vegas = []
        n_warm = int(0.1 * budget) // n_ch
        for c in range(n_ch):
            v = Vegas(f.n_dim, seed=seed + 1 + c)
            v.train(lambda r, c=c: f(r, c), 5, max(2, n_warm // 5))
            vegas.append(v)
        m = MadNIS(f.n_dim, n_ch, seed=seed, vegas=vegas, config=_madnis_config())
        left = budget - int(0.1 * budget) // n_ch * n_ch
        n_iter = max(1, left // 1024)
        m.train(f, n_iter, max(2, left // n_iter))

        def final(n: int) -> list[tuple[int, Tensor]]:
            out = []
            for c, nc in enumerate(m.allocation(n).tolist()):
                if nc == 0:
                    continue
                r, jac = m.sample_channel(c, nc)
                values = f.evaluate(r, c)
                alpha = m.values_channel_weights(f, values)[:, c]
                out.append((c, alpha * values.weights * jac))
            return out

        return final


def _cfm_config() -> object:
    try:
        from evgen.integrators.cfm import CFMConfig
        from evgen.ml.ode import ODEOptions
    except ImportError:  # reported as unavailable by EvgenPlugin
        return None
    return CFMConfig(ode=ODEOptions(method="rk4", steps=16))


def _madnis_config() -> object:
    try:
        from evgen.integrators.madnis import MadNISConfig
    except ImportError:  # reported as unavailable by EvgenPlugin
        return None
    return MadNISConfig(learning_rate=3e-3, buffered_steps=3, discard=0)


INTEGRATORS: dict[str, Adapter] = {
    a.key: a
    for a in [
        VegasPackage(),
        EvgenPlugin("evgen-vegas", "evgen VEGAS", "evgen.integrators.vegas", "Vegas"),
        MadnisPackage(),
        EvgenPlugin(
            "evgen-madnis",
            "evgen MadNIS",
            "evgen.integrators.madnis",
            "MadNIS",
            # the same training regime as the madnis package's adapter below: online
            # batches of 1024 fresh points, 3 buffered steps each, learning rate 3e-3;
            # plus MadNIS's VEGAS warm start on 10 % of the training budget
            round_size=1024,
            kwargs={"config": _madnis_config()},
            warm_start=0.1,
            warm_start_arg=lambda v: [v],
        ),
        EvgenPlugin(
            "evgen-madnis-anneal",
            "evgen MadNIS (annealed)",
            "evgen.integrators.madnis",
            "MadNIS",
            # the same regime from the uniform start (a VEGAS grid trained on f locks
            # onto the peaks it found), the first 40 % of the rounds annealed
            round_size=1024,
            kwargs={"config": _madnis_config()},
            anneal_fraction=0.4,
        ),
        EvgenPlugin(
            "evgen-cfm",
            "evgen CFM",
            "evgen.integrators.cfm",
            # the exact density is an ODE solve with d backward passes per step for every
            # point, training and final: fixed-step RK4 (16 steps) keeps a full-budget row
            # to minutes on the low-dimensional problems (dopri5 at rtol 1e-7, the card
            # default, costs ~7x more: 275 points/s in 4-d on one thread)
            kwargs={"config": _cfm_config()},
            problems=("camel-2d", "camel-4d", "ring", "ridge-2d", "ttbar"),
            skip_reason="not run: its exact density (an ODE solve with one backward pass "
            "per dimension per step, for all 500,000 points) takes too long on 2 cores",
        ),
        EvgenVegasMultichannel(),
        EvgenMadnisMultichannel(),
    ]
}


# --- one run -----------------------------------------------------------------------------


@dataclass
class Row:
    problem: Problem
    integrator: str
    status: str = ""  #: non-empty: the reason there are no numbers
    n_train: int = 0
    n_final: int = 0
    value: float = math.nan
    error: float = math.nan
    spread: float = math.nan
    eff_max: float = math.nan
    eff_robust: float = math.nan
    seconds: float = math.nan
    f_seconds: float = math.nan
    notes: list[str] = field(default_factory=list)

    @property
    def pull(self) -> float:
        p = self.problem
        return (self.value - p.exact) / math.hypot(self.error, p.exact_error)


def weight_stats(w: Tensor) -> tuple[float, float, float]:
    """(std/mean, <|w|>/max|w|, <|w|>/find_max_weight(w, max_loss=1e-3))."""
    a = w.abs()
    mean = float(a.mean())
    return (
        float(w.std() / w.mean()),
        mean / float(a.max()),
        mean / find_max_weight(w, max_loss=1e-3),
    )


def run_one(p: Problem, adapter: Adapter, seed: int, final_fraction: float) -> Row:
    row = Row(p, adapter.label)
    f = Counted(p.f)
    train_budget = int(round((1.0 - final_fraction) * p.budget))
    t0 = time.perf_counter()
    try:
        sample = adapter.train(f, p.n_dim, train_budget, seed)
        row.n_train = f.n
        n_final = p.budget - f.n
        if n_final < 2:
            row.status = f"training used {f.n:,} evaluations, the whole budget {p.budget:,}"
            return row
        ws, outside = [], 0
        for start in range(0, n_final, CHUNK):
            r, jac = sample(min(CHUNK, n_final - start))
            r = r.detach().to(F64)
            jac = jac.detach().to(F64).reshape(-1)
            bad = (r < 0) | (r >= 1)
            if bool(bad.any()):  # keep the point, on the cube (counted in the notes)
                outside += int(bad.any(1).sum())
                r = r.clamp(0.0, ONE_BELOW)
            ws.append(torch.as_tensor(f(r), dtype=F64).reshape(-1) * jac)
        w = torch.cat(ws)
    except Exception as err:
        traceback.print_exc()
        row.status = f"failed: {type(err).__name__}: {err}"
        return row
    row.seconds = time.perf_counter() - t0
    row.f_seconds = f.seconds
    row.n_final = f.n - row.n_train
    if not bool(torch.isfinite(w).all()):
        row.status = f"non-finite weights ({int((~torch.isfinite(w)).sum())} of {w.numel()})"
        return row
    row.value = float(w.mean())
    row.error = float(w.std()) / math.sqrt(w.numel())
    row.spread, row.eff_max, row.eff_robust = weight_stats(w)
    if outside:
        row.notes.append(f"{outside} final points outside [0, 1) clamped onto the cube")
    if row.n_train > train_budget:
        row.notes.append(
            f"training used {row.n_train:,} > {train_budget:,} planned; final sample shrunk"
        )
    return row


# --- output ------------------------------------------------------------------------------


def pm(value: float, error: float) -> str:
    """value ± error, the value to one digit beyond the error's two significant ones."""
    if not (math.isfinite(error) and error > 0):
        return f"{value:.6g} ± {error:.2g}"
    digits = max(0, 2 - math.floor(math.log10(error)))
    if digits > 6 or abs(value) >= 1e7:
        return f"{value:.3e} ± {error:.2g}"
    return f"{value:.{digits}f} ± {error:.2g}"


def table(rows: list[Row]) -> str:
    head = (
        "| problem | exact / reference | integrator | evaluations (train + final) | "
        "integral ± error | pull | rel. error | weight spread | unw. eff. (max) | "
        "unw. eff. (robust) | time [s] | of which f [s] |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        p = r.problem
        if math.isnan(p.exact):
            ref = "—"
        elif p.exact_error > 0:
            ref = pm(p.exact, p.exact_error)
        else:
            ref = f"{p.exact:.10g}"
        if r.status:
            lines.append(
                f"| {p.name} | {ref} | {r.integrator} | — | {r.status} | — | — | — | — | — "
                "| — | — |"
            )
            continue
        lines.append(
            f"| {p.name} | {ref} | {r.integrator} | {r.n_train:,} + {r.n_final:,} | "
            f"{pm(r.value, r.error)} | {r.pull:+.2f} | {r.error / abs(r.value):.2e} | "
            f"{r.spread:.3g} | {r.eff_max:.3g} | {r.eff_robust:.3g} | {r.seconds:.2f} | "
            f"{r.f_seconds:.2f} |"
        )
    return head + "\n".join(lines) + "\n"


def machine(threads: int) -> str:
    model = cpu_model()
    venv = sys.prefix != sys.base_prefix
    return (
        f"- machine: {platform.machine()}, `nproc` = {os.cpu_count()}, CPU: {model}; shared "
        "with other work, so times are indicative\n"
        f"- Python {platform.python_version()} ({sys.executable}"
        f"{', a virtual environment' if venv else ''}), torch {torch.__version__} "
        f"({threads} thread{'s' if threads != 1 else ''}), numpy {np.__version__}, "
        f"vegas {_version('vegas')}, madnis {_version('madnis')}"
    )


MADNIS_NOTE = """\
The `madnis` package (PyPI) declares `numpy`, `torch` (no version bound) and
`torchtestcase` as requirements (`pip download madnis --no-deps`, then its METADATA);
`vegas` is an optional extra. It installs next to torch 2.13.0 without touching it, in a
virtual environment that sees the system packages, with torch pinned:

    python3 -m venv --system-site-packages /tmp/madnis-venv
    /tmp/madnis-venv/bin/python -m pip install -c constraints.txt madnis   # pins torch==2.13.0
    /tmp/madnis-venv/bin/python benchmarks/integrators.py

(pip reports torch 2.13.0 as already satisfied; it puts madnis 1.0.0 and torchtestcase
2018.2, built from its sdist, into the virtual environment, and upgrades that
environment's own setuptools; the system site-packages are not touched). Without it, the
madnis rows say why the package cannot be imported.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny budgets (seconds), for CI")
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", help="problems and/or integrators to run"
    )
    parser.add_argument("--budget", type=int, help="evaluations per integrator, all problems")
    parser.add_argument("--final-fraction", type=float, default=0.25)
    parser.add_argument("--ref-factor", type=int, default=10, help="physics reference budget")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--progress", help="append each finished row to this file")
    parser.add_argument("--out", help="markdown output (default: benchmarks/RESULTS.md)")
    args = parser.parse_args(argv)
    if not 0.0 < args.final_fraction < 1.0:
        parser.error("--final-fraction must be in (0, 1)")
    torch.set_num_threads(args.threads)

    toy_budget = phys_budget = SMOKE_BUDGET if args.smoke else FULL_BUDGET
    if args.budget:
        toy_budget = phys_budget = args.budget
    makers: dict[str, Callable[[], Problem | Unavailable]] = {
        name: (lambda name=name: toy_problem(name, toy_budget)) for name in toys.SUITE
    }
    makers["ttbar"] = lambda: physics_problem("ttbar", "cards/ttbar.yaml", phys_budget)
    makers["drell-yan-zprime"] = lambda: physics_problem(
        "drell-yan-zprime", "cards/drell_yan_zprime.yaml", phys_budget
    )
    chosen_p = list(SMOKE_PROBLEMS if args.smoke else makers)
    chosen_i = list(INTEGRATORS)
    if args.only:
        extra = [n for n in args.only if n not in makers and n not in INTEGRATORS]
        for name in extra:  # other toys by name: annulus, camel-<d>d, ridge-<d>d
            try:
                toys.make(name)
            except ValueError:
                parser.error(
                    f"--only: unknown {name!r}; problems {list(makers)} (or annulus, "
                    f"camel-<d>d, ridge-<d>d), integrators {list(INTEGRATORS)}"
                )
            makers[name] = lambda name=name: toy_problem(name, toy_budget)
        ps = [n for n in makers if n in args.only]  # the canonical order
        its = [n for n in INTEGRATORS if n in args.only]
        chosen_p, chosen_i = ps or chosen_p, its or chosen_i

    status = {key: INTEGRATORS[key].unavailable() for key in INTEGRATORS}
    rows: list[Row] = []
    for name in chosen_p:
        made = makers[name]()
        if isinstance(made, Unavailable):
            print(f"{name}: {made.reason}", file=sys.stderr)
            dummy = Problem(name, 0, lambda r: r, math.nan, 0, reference=made.reason)
            rows.append(Row(dummy, "—", status=f"not run: {made.reason}"))
            continue
        p = made
        if math.isnan(p.exact):
            p = with_reference(p, args.ref_factor, args.seed + 1000)
            print(p.reference, file=sys.stderr)
        for key in chosen_i:
            adapter = INTEGRATORS[key]
            if status[key] is not None:
                rows.append(Row(p, adapter.label, status=status[key]))
                continue
            only = getattr(adapter, "problems", None)
            if only is not None and p.name not in only:
                rows.append(Row(p, adapter.label, status=adapter.skip_reason or "not run"))
                continue
            if isinstance(adapter, Multichannel):
                row = adapter.run(p, args.seed, args.final_fraction)
            else:
                row = run_one(p, adapter, args.seed, args.final_fraction)
            rows.append(row)
            if args.progress:
                with open(args.progress, "a") as fh:
                    fh.write(table([row]).splitlines()[-1] + "\n")
            print(
                f"{p.name:>16} {adapter.label:>14}: "
                + (
                    row.status
                    or f"{pm(row.value, row.error)} pull {row.pull:+.2f} "
                    f"spread {row.spread:.3g} {row.seconds:.1f} s"
                ),
                file=sys.stderr,
            )

    python = sys.executable if sys.prefix != sys.base_prefix else "python"  # a venv: its path
    command = " ".join(shlex.quote(a) for a in [python, *sys.argv[:1], *(argv or sys.argv[1:])])
    problems = {r.problem.name: r.problem for r in rows}
    refs = "".join(
        f"- {p.name} ({p.n_dim}-d, budget {p.budget:,}): {p.reference}\n"
        if p.n_dim
        else f"- {p.name}: {p.reference}\n"
        for p in problems.values()
    )
    notes = "".join(f"- {r.problem.name}, {r.integrator}: {n}\n" for r in rows for n in r.notes)
    integrators = "".join(
        f"- `{key}` ({a.label}): "
        + (f"**{status[key]}**" if status[key] else a.settings())
        + ("" if key in chosen_i else " (not run in this invocation)")
        + "\n"
        for key, a in INTEGRATORS.items()
    )
    text = (
        "## Integrators at an equal budget of integrand evaluations\n\n"
        "Generated by `benchmarks/integrators.py` (its docstring has the protocol).\n\n"
        f"- command: `{command}`{' (smoke mode)' if args.smoke else ''}\n"
        f"{machine(args.threads)}\n"
        f"- seed {args.seed}; final sample: {args.final_fraction:.0%} of the budget (plus "
        "whatever training left unused); physics references at "
        f"{args.ref_factor}x the budget\n\n"
        + table(rows)
        + "\nintegral ± error, pull, spread and efficiencies from the final sample of "
        "fresh i.i.d. weights w = f(r) jac of the trained sampler: error = std(w)/sqrt(n), "
        "pull = (integral - reference)/sqrt(error^2 + reference error^2), weight spread = "
        "std(w)/mean(w), unw. eff. = <|w|>/max|w| (max) or <|w|>/find_max_weight(w, "
        "max_loss=1e-3) (robust, as `evgen run`). time: training + final sample; of which "
        "f: inside the integrand.\n\n"
        "### Problems\n\n"
        + refs
        + "\n### Integrators\n\n"
        + integrators
        + ("\n### Notes\n\n" + notes if notes else "")
        + "\n### The madnis package\n\n"
        + MADNIS_NOTE
    )
    print(text)
    # RESULTS.md holds the full table: a partial (--only) or smoke run writes only to --out
    full = not (args.smoke or args.only or args.budget)
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    elif full:
        print(f"wrote {write_section('integrators', text)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
