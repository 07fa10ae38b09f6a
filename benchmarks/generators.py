"""Bayesian flow-matching generators with classifier reweighting on Z + jets (issue 8).

Not a test. Run from the repository root (CPU, one thread):

    OMP_NUM_THREADS=1 python benchmarks/generators.py            # writes the "generators"
                                                                 # section of RESULTS.md
    python benchmarks/generators.py --jets 1 --train 20000 --truth 20000 --steps 3000
    python benchmarks/generators.py --smoke                      # a minute: tiny everything

What it does, in order (every step timed; events are cached in
``output/generators_benchmark/`` and reused):

1. Reference rate. ``evgen run cards/zjets_{k}j.yaml`` (``p p > mu+ mu- j``, ``j j``,
   ``j j j``; MadGraph's default cuts and a 60-120 GeV Z window) for each jet
   multiplicity k in ``--jets``, in a subprocess on one thread. Its unweighted-event
   rate is events / wall time of the whole run (setup, VEGAS integration, generation,
   output) and, the rate a long run approaches, events / generation-stage time.
2. Samples. Each multiplicity's events are split at random into training events and
   held-out truth. The training sample mixes the multiplicities in the proportions of
   their cross sections (the larger samples are subsampled), as one inclusive
   unweighted sample with sigma = sum_k sigma_k: the generator takes the jet rates
   from it. The held-out truth is mixed the same way and split in two halves: one
   trains the reweighting classifier, the other ("test truth") is what every pull,
   the band coverage and the amplification are measured against.
3. One Bayesian CFM generator over all multiplicities (one-hot conditioned, partons
   merged; the muon pair balances the jets' pT and is described by its mass (through
   the Z's Breit-Wigner inside the 60-120 GeV window), rapidity and decay angles, so
   every jet pT is learned directly), ``--steps`` optimiser steps.
4. Sampling ``--generate`` events; events/s of the network alone and with the flavours
   and colour flows ``evgen generate`` draws from the matrix element.
5. Classifier reweighting (:func:`evgen.generators.reweighting.classifier_reweighting`,
   cross-fitted): AUC before, AUC of a fresh classifier after, fraction |log w| > 1.
6. Per observable (20 bins; pT from the minimum to the 99 % quantile of the test
   truth, other observables 0.5 % to 99.5 %), histograms normalised to the test-truth
   event count (all multiplicities together, so the jet rates count): pulls
   (g - t) / sqrt(var_g + t) over the bins with >= 100 test-truth events, before and
   after reweighting: the largest |pull| and the rms.
7. Bayesian band: ``--weight-samples`` K samples of the network weights, ``--band-events``
   events each; the band is the spread (std) of the K histograms. Coverage: the fraction
   of bins (>= 100 truth events) where |g - t| <= band, and <= sqrt(band^2 + var_g + t).
8. Amplification. For normalised histograms f (fractions), D = mean over bins and
   observables of (f - f_R)^2 / (f_R (1 - f_R)) against a reference truth R (half of
   the test truth, N_R events). For an independent truth sample of n events
   E[D] = a (1/n + 1/N_R) with a = 1 for uncorrelated bins; a is measured on disjoint
   truth subsamples of known sizes (the other half of the test truth: n = N/4, N/8, ...)
   by least squares. The generated sample's D then gives the truth-equivalent size
   N_eq = 1 / (D_gen / a - 1/N_R); amplification = N_eq / N_train. When D_gen / a -
   1/N_R is below twice its noise the result is a lower bound.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine_info import cpu_model  # noqa: E402
from results_file import write_section  # noqa: E402

from evgen.card import load_card  # noqa: E402
from evgen.events import Events  # noqa: E402
from evgen.generators import GeneratorConfig, PreprocessingConfig, train_generator  # noqa: E402
from evgen.generators.colour import assign_flavours_and_colours  # noqa: E402
from evgen.generators.command import read_events, resonance_mass_maps  # noqa: E402
from evgen.generators.reweighting import ReweightingConfig, classifier_reweighting  # noqa: E402
from evgen.ml.classifier import ClassifierConfig  # noqa: E402
from evgen.setup import prepare  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "output" / "generators_benchmark"
BINS = 20
MIN_TRUTH = 100


# ---------------------------------------------------------------------------- events


@dataclass
class RunSample:
    """One ``evgen run`` of one multiplicity."""

    jets: int
    path: Path
    n: int
    cross_section_pb: float
    wall_s: float
    generation_s: float
    timings: dict[str, float]

    @property
    def rate_total(self) -> float:
        """Unweighted events per second of the whole run."""
        return self.n / self.wall_s

    @property
    def rate_generation(self) -> float:
        """Unweighted events per second of the generation stage."""
        return self.n / self.generation_s


def card_of(jets: int) -> Path:
    return ROOT / "cards" / f"zjets_{jets}j.yaml"


def ensure_events(jets: int, n: int, seed: int) -> RunSample:
    """``evgen run`` of Z + ``jets`` jets (cached); its events, cross section and timing."""
    folder = CACHE / f"zjets_{jets}j_n{n}_seed{seed}"
    events = folder / "events.root"
    timing = folder / "wall.json"
    if not (events.is_file() and timing.is_file()):
        folder.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-c", "import sys; from evgen.cli import main; sys.exit(main())"]
        command += ["run", str(card_of(jets)), "-n", str(n), "--seed", str(seed)]
        command += ["-o", str(folder), "-q"]
        print(f"evgen run: Z + {jets} jets, {n:,} events ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        with open(folder / "run.log", "w") as log:
            subprocess.run(
                command, check=True, stdout=log, stderr=subprocess.STDOUT,
                env=dict(os.environ, OMP_NUM_THREADS="1"),
            )  # fmt: skip
        wall = time.perf_counter() - start
        timing.write_text(json.dumps({"wall_s": wall}))
        print(f"  {wall:.0f} s", file=sys.stderr, flush=True)
    summary = json.loads((folder / "summary.json").read_text())
    return RunSample(
        jets=jets,
        path=events,
        n=int(summary["events"]),
        cross_section_pb=float(summary["cross_section_pb"]),
        wall_s=float(json.loads(timing.read_text())["wall_s"]),
        generation_s=float(summary["timings_s"]["generation"]),
        timings={k: float(v) for k, v in summary["timings_s"].items()},
    )


def _with_weight(events: Events, weight: float) -> Events:
    return replace(events, weights=torch.full((len(events),), weight, dtype=torch.float64))


def split_samples(
    runs: list[RunSample], n_train: int, n_truth: int, seed: int
) -> tuple[list[Events], list[Events], list[Events], dict[int, int]]:
    """Training, classifier-truth and test-truth batches (one per multiplicity), mixed
    in the proportions of the cross sections; all unweighted with sigma_total / n."""
    sigma = sum(r.cross_section_pb for r in runs)
    generator = torch.Generator().manual_seed(seed)
    wanted = {r.jets: r.cross_section_pb / sigma for r in runs}
    # the largest total the scarcest multiplicity allows
    scale = min(r.n / wanted[r.jets] for r in runs) / (n_train + n_truth)
    scale = min(scale, 1.0)
    train, truth_a, truth_b, counts = [], [], [], {}
    for r in runs:
        batches, _ = read_events(r.path)
        events = Events.concatenate(batches) if len(batches) > 1 else batches[0]
        order = torch.randperm(len(events), generator=generator)
        k_train = int(round(scale * n_train * wanted[r.jets]))
        k_truth = int(round(scale * n_truth * wanted[r.jets]))
        tr = events[order[:k_train]]
        tt = events[order[k_train : k_train + k_truth]]
        half = len(tt) // 2
        train.append(tr)
        truth_a.append(tt[:half])
        truth_b.append(tt[half:])
        counts[r.jets] = k_train
    n_tr = sum(len(b) for b in train)
    train = [_with_weight(b, sigma / n_tr) for b in train]
    for group in (truth_a, truth_b):
        n_g = sum(len(b) for b in group)
        group[:] = [_with_weight(b, sigma / n_g) for b in group]
    return train, truth_a, truth_b, counts


# ---------------------------------------------------------------------------- observables


def _pt(p: torch.Tensor) -> torch.Tensor:
    return torch.hypot(p[..., 1], p[..., 2])


def _y(p: torch.Tensor) -> torch.Tensor:
    return 0.5 * torch.log((p[..., 0] + p[..., 3]) / (p[..., 0] - p[..., 3]))


def _m(p: torch.Tensor) -> torch.Tensor:
    return torch.sqrt((p[..., 0] ** 2 - (p[..., 1:] ** 2).sum(-1)).clamp(min=0))


def _dr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    dphi = torch.remainder(torch.atan2(a[..., 2], a[..., 1]) - torch.atan2(b[..., 2], b[..., 1])
                           + math.pi, 2 * math.pi) - math.pi  # fmt: skip
    return torch.sqrt((_y(a) - _y(b)) ** 2 + dphi**2)


OBSERVABLES = {
    "pT(mu+)": "pT", "pT(mu-)": "pT", "y(mu+)": "y", "y(mu-)": "y", "m(mumu)": "m",
    "pT(mumu)": "pT", "pT(j1)": "pT", "pT(j2)": "pT", "pT(j3)": "pT", "y(j1)": "y",
    "y(j2)": "y", "y(j3)": "y", "DR(j1,j2)": "dr", "DR(j1,j3)": "dr", "DR(j2,j3)": "dr",
    "m(j1j2)": "m",
}  # fmt: skip


def observables(batches: list[Events]) -> dict[str, torch.Tensor]:
    """Muon and pT-ordered jet observables (GeV), NaN where a jet is missing; batch order."""
    columns: dict[str, list[torch.Tensor]] = {k: [] for k in OBSERVABLES}
    columns["n_jets"] = []
    for b in batches:
        p = b.momenta.detach().cpu().to(torch.float64)
        status = b.status[0].cpu()
        pdg = b.pdg[0].cpu()
        out = (status == 1).nonzero().flatten().tolist()
        mu_p = next(i for i in out if int(pdg[i]) == -13)
        mu_m = next(i for i in out if int(pdg[i]) == 13)
        jet_idx = [i for i in out if abs(int(pdg[i])) != 13]
        jets = p[:, jet_idx]
        order = torch.argsort(_pt(jets), dim=1, descending=True)
        jets = torch.gather(jets, 1, order[..., None].expand_as(jets))
        n, nan = p.shape[0], torch.full((p.shape[0],), math.nan, dtype=torch.float64)
        a, c = p[:, mu_p], p[:, mu_m]
        j = [jets[:, i] if i < jets.shape[1] else None for i in range(3)]
        values = {
            "pT(mu+)": _pt(a), "pT(mu-)": _pt(c), "y(mu+)": _y(a), "y(mu-)": _y(c),
            "m(mumu)": _m(a + c), "pT(mumu)": _pt(a + c),
        }  # fmt: skip
        for i in range(3):
            values[f"pT(j{i + 1})"] = _pt(j[i]) if j[i] is not None else nan
            values[f"y(j{i + 1})"] = _y(j[i]) if j[i] is not None else nan
        for x, z in ((0, 1), (0, 2), (1, 2)):
            ok = j[x] is not None and j[z] is not None
            values[f"DR(j{x + 1},j{z + 1})"] = _dr(j[x], j[z]) if ok else nan
        values["m(j1j2)"] = _m(j[0] + j[1]) if j[1] is not None else nan
        for k, v in values.items():
            columns[k].append(v)
        columns["n_jets"].append(torch.full((n,), float(len(jet_idx)), dtype=torch.float64))
    return {k: torch.cat(v) for k, v in columns.items()}


def edges_of(name: str, values: torch.Tensor) -> torch.Tensor:
    """20 equal bins: pT from the minimum to the 99 % quantile, else 0.5 % to 99.5 %."""
    v = values[torch.isfinite(values)]
    q = (0.0, 0.99) if OBSERVABLES[name] in ("pT", "m") and name != "m(mumu)" else (0.005, 0.995)
    lo, hi = (float(torch.quantile(v, x)) for x in q)
    return torch.linspace(lo, hi, BINS + 1, dtype=torch.float64)


def hist(values: torch.Tensor, edges: torch.Tensor, weights: torch.Tensor | None = None):
    """(sum w, sum w^2) per bin; NaN and out-of-range values skipped."""
    w = torch.ones_like(values) if weights is None else weights.to(torch.float64)
    ok = torch.isfinite(values) & (values >= edges[0]) & (values < edges[-1])
    idx = torch.bucketize(values[ok], edges[1:-1], right=True)
    s = torch.zeros(len(edges) - 1, dtype=torch.float64).index_add_(0, idx, w[ok])
    s2 = torch.zeros(len(edges) - 1, dtype=torch.float64).index_add_(0, idx, w[ok] ** 2)
    return s, s2


# ---------------------------------------------------------------------------- metrics


@dataclass
class ObservableRow:
    name: str
    bins: int
    max_pull: float
    rms_pull: float
    max_pull_rw: float
    rms_pull_rw: float
    covered_band: float = math.nan
    covered_total: float = math.nan


def pulls(
    gen: torch.Tensor, truth: torch.Tensor, edges: torch.Tensor, weights: torch.Tensor | None,
    n_gen_total: float, n_truth_total: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    """(pulls, g, var_g, t, ok): generated histogram scaled to the truth's event count."""
    s, s2 = hist(gen, edges, weights)
    t, _ = hist(truth, edges)
    scale = n_truth_total / n_gen_total
    g, var_g = s * scale, s2 * scale**2
    ok = t >= MIN_TRUTH
    return (g - t) / torch.sqrt(var_g + t), g, var_g, t, ok


def amplification(
    obs_gen: dict[str, torch.Tensor], obs_ref: dict[str, torch.Tensor],
    subsamples: list[dict[str, torch.Tensor]], edges: dict[str, torch.Tensor],
    n_train: int,
) -> dict[str, float]:  # fmt: skip
    """Truth-equivalent size of the generated sample (see the module docstring, item 8)."""

    def d_of(obs: dict[str, torch.Tensor]) -> float:
        terms = []
        n_obs = len(next(iter(obs.values())))
        for name, e in edges.items():
            r, _ = hist(obs_ref[name], e)
            s, _ = hist(obs[name], e)
            ok = r >= MIN_TRUTH
            f_r, f_s = r / n_ref, s / n_obs
            terms.append(((f_s - f_r) ** 2 / (f_r * (1 - f_r)))[ok])
        return float(torch.cat(terms).mean())

    n_ref = len(next(iter(obs_ref.values())))
    sizes = [len(next(iter(s.values()))) for s in subsamples]
    ds = [d_of(s) for s in subsamples]
    x = torch.tensor([1 / n + 1 / n_ref for n in sizes], dtype=torch.float64)
    y = torch.tensor(ds, dtype=torch.float64)
    a = float((x * y).sum() / (x * x).sum())
    n_bins = sum(int((hist(obs_ref[k], e)[0] >= MIN_TRUTH).sum()) for k, e in edges.items())
    d_gen = d_of(obs_gen)
    excess = d_gen / a - 1 / n_ref
    noise = math.sqrt(2 / n_bins) * d_gen / a  # chi^2-like spread of the mean of n_bins terms
    bound = excess < 2 * noise
    n_eq = 1 / max(excess + (2 * noise if bound else 0.0), 1e-300)
    return {
        "a": a,
        "subsample_sizes": sizes,
        "subsample_d_over_expected": [d / a / float(xi) for d, xi in zip(ds, x, strict=True)],
        "subsample_d_ratio_a1": [d / float(xi) for d, xi in zip(ds, x, strict=True)],
        "d_gen": d_gen,
        "n_ref": n_ref,
        "n_eq": n_eq,
        "lower_bound": bound,
        "amplification": n_eq / n_train,
    }


# ---------------------------------------------------------------------------- benchmark


@dataclass
class Settings:
    jets: list[int]
    train: int
    truth: int
    reference_events: dict[int, int]
    steps: int
    hidden: int
    hidden_layers: int
    batch_size: int
    generate: int
    weight_samples: int
    band_events: int
    classifier: ClassifierConfig
    seed: int = 1
    network: str = "bayesian"
    members: int = 10
    kl_scale: float = 1.0
    extra: dict[str, object] = field(default_factory=dict)


def run_benchmark(s: Settings) -> dict[str, object]:
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    runs = [ensure_events(k, s.reference_events[k], s.seed) for k in s.jets]
    sigma = sum(r.cross_section_pb for r in runs)
    train, truth_clf, truth_test, counts = split_samples(runs, s.train, s.truth, s.seed)
    n_train = sum(len(b) for b in train)
    print(f"training on {n_train} events {counts}", file=sys.stderr, flush=True)

    card, _ = load_card(card_of(s.jets[0]))
    # the Z's Breit-Wigner inside the card's 60-120 GeV window maps m_mumu to a
    # near-normal feature (evgen train-generator --resonance 0 1 --resonance-pdg 23)
    mass_maps = resonance_mass_maps(card, ((0, 1),), (23,), train)
    config = GeneratorConfig(
        steps=s.steps, hidden=s.hidden, hidden_layers=s.hidden_layers, batch_size=s.batch_size,
        seed=s.seed, network=s.network, n_members=s.members, kl_scale=s.kl_scale,
        preprocessing=PreprocessingConfig(
            merge_partons=True, resonances=((0, 1),), pair_balance=True, mass_maps=mass_maps
        ),
    )  # fmt: skip
    t0 = time.perf_counter()
    # The card (its cuts, identical over the multiplicities' cards) travels with the model:
    # generated events are kept inside the cuts, as the training events are.
    model = train_generator(
        train, config, cross_section_pb=sigma, beam_energy_gev=(6500.0, 6500.0),
        process_card=card.model_dump(mode="json"),
    )  # fmt: skip
    train_s = time.perf_counter() - t0
    print(f"trained in {train_s:.0f} s", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    sampled = model.sample(s.generate, seed=s.seed + 10)
    sample_s = time.perf_counter() - t0
    outside = model.sampling_stats["outside_cuts"] / max(1, model.sampling_stats["drawn"])
    print(
        f"sampled in {sample_s:.1f} s; {100 * outside:.1f} % of draws outside the cuts (redrawn)",
        file=sys.stderr,
        flush=True,
    )
    gen = [sampled] if isinstance(sampled, Events) else list(sampled)
    prepared = {}
    for k in s.jets:
        card, text = load_card(card_of(k))
        prepared[k + 4] = prepare(card, text, str(card_of(k)))  # n_particles = 2 + 2 + k
    t0 = time.perf_counter()
    colour_gen = torch.Generator().manual_seed(s.seed)
    gen = [assign_flavours_and_colours(b, prepared[b.n_particles], colour_gen) for b in gen]
    colour_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    rw = classifier_reweighting(
        model.preprocessing, truth_clf, gen, ReweightingConfig(classifier=s.classifier)
    )
    rw_s = time.perf_counter() - t0
    print(f"reweighted in {rw_s:.0f} s, AUC {rw.auc_before:.3f} -> {rw.auc_after:.3f}",
          file=sys.stderr, flush=True)  # fmt: skip

    obs_t = observables(truth_test)
    obs_g = observables(gen)
    n_t, n_g = len(obs_t["n_jets"]), len(obs_g["n_jets"])
    edges = {k: edges_of(k, obs_t[k]) for k in OBSERVABLES if torch.isfinite(obs_t[k]).sum() > 0}

    t0 = time.perf_counter()
    band_obs = []
    n_band = s.weight_samples if s.network == "bayesian" else min(s.weight_samples, s.members)
    for k in range(n_band):
        b = model.sample(s.band_events, seed=s.seed + 100 + k, weight_sample=k)
        band_obs.append(observables([b] if isinstance(b, Events) else list(b)))
    band_s = time.perf_counter() - t0

    rows = []
    for name, e in edges.items():
        p, g, var_g, t, ok = pulls(obs_g[name], obs_t[name], e, None, n_g, n_t)
        p_rw = pulls(obs_g[name], obs_t[name], e, rw.weights, float(rw.weights.sum()), n_t)[0]
        if not bool(ok.any()):
            continue
        row = ObservableRow(
            name, int(ok.sum()), float(p[ok].abs().max()), float(p[ok].pow(2).mean().sqrt()),
            float(p_rw[ok].abs().max()), float(p_rw[ok].pow(2).mean().sqrt()),
        )  # fmt: skip
        if band_obs:
            hs = torch.stack([hist(o[name], e)[0] * n_t / s.band_events for o in band_obs])
            band = hs.std(dim=0) if len(band_obs) > 1 else torch.zeros_like(g)
            dev = (g - t).abs()
            row.covered_band = float((dev <= band)[ok].double().mean())
            row.covered_total = float((dev <= torch.sqrt(band**2 + var_g + t))[ok].double().mean())
        rows.append(row)

    # amplification against half of the test truth; the other half gives the subsamples
    n_half = n_t // 2
    perm = torch.randperm(n_t, generator=torch.Generator().manual_seed(s.seed + 7))
    ref = {k: v[perm[:n_half]] for k, v in obs_t.items()}
    rest = perm[n_half:]
    subs, start = [], 0
    for frac in (2, 4, 8, 16):
        size = n_half // frac
        idx = rest[start : start + size]
        start += size
        subs.append({k: v[idx] for k, v in obs_t.items()})
    amp = amplification(obs_g, ref, subs, edges, n_train)

    n_unweighted_equiv = n_g  # generated events are unweighted
    rate_net = n_unweighted_equiv / sample_s
    rate_full = n_unweighted_equiv / (sample_s + colour_s)
    return {
        "settings": s,
        "runs": runs,
        "sigma": sigma,
        "counts": counts,
        "n_train": n_train,
        "n_truth_clf": sum(len(b) for b in truth_clf),
        "n_truth_test": n_t,
        "n_gen": n_g,
        "train_s": train_s,
        "sample_s": sample_s,
        "outside_cuts": outside,
        "colour_s": colour_s,
        "rw_s": rw_s,
        "band_s": band_s,
        "rate_net": rate_net,
        "rate_full": rate_full,
        "rw": rw,
        "rows": rows,
        "amp": amp,
        "jet_rates_gen": {int(j): float((obs_g["n_jets"] == j).double().mean()) for j in s.jets},
        "jet_rates_truth": {int(j): float((obs_t["n_jets"] == j).double().mean()) for j in s.jets},
        "total_s": time.perf_counter() - t_start,
    }


def render(res: dict, command: str) -> str:
    s: Settings = res["settings"]
    rw = res["rw"]
    rows: list[ObservableRow] = res["rows"]
    lines = [
        "## Generators: Bayesian CFM with classifier reweighting (Z + jets)",
        "",
        f"Command: `{command}`",
        "",
        f"- machine: {platform.machine()}, `nproc` = {os.cpu_count()}, CPU: {cpu_model()}; "
        "shared with other work, one thread (`OMP_NUM_THREADS=1`), so times are indicative",
        f"- Python {platform.python_version()}, torch {torch.__version__}",
        "- process: `p p > mu+ mu- "
        + "/".join(" ".join(["j"] * k) for k in s.jets)
        + "` (cards/zjets_{k}j.yaml: MadGraph default cuts, 60 < m_mumu < 120 GeV, 13 TeV); "
        f"sigma = {res['sigma']:.4g} pb in total "
        + ", ".join(f"{r.jets}j: {r.cross_section_pb:.4g} pb" for r in res["runs"]),
        f"- budget: training {res['n_train']:,} events "
        + "("
        + ", ".join(f"{k}j: {v:,}" for k, v in res["counts"].items())
        + "), "
        f"{s.steps} steps ({res['train_s'] / 60:.1f} min); held-out truth "
        f"{res['n_truth_clf']:,} for the classifier + {res['n_truth_test']:,} test events; "
        f"{res['n_gen']:,} generated; network {s.hidden_layers} x {s.hidden} "
        + (
            f"Bayesian (KL scale {s.kl_scale:g})"
            if s.network == "bayesian"
            else f"ensemble of {s.members}"
        )
        + "; "
        f"whole benchmark {res['total_s'] / 60:.1f} min (evgen runs included unless cached)",
        "",
        "### Rates (unweighted events per second, one thread)",
        "",
        "| sample | evgen run: whole run | evgen run: generation stage | events |",
        "|---|---:|---:|---:|",
    ]
    for r in res["runs"]:
        lines.append(
            f"| Z + {r.jets}j | {r.rate_total:.3g} /s ({r.wall_s:.0f} s) | "
            f"{r.rate_generation:.3g} /s ({r.generation_s:.0f} s) | {r.n:,} |"
        )
    slowest = min(res["runs"], key=lambda r: r.rate_generation)
    lines += [
        f"| generator: network | {res['rate_net']:.4g} /s | | {res['n_gen']:,} |",
        f"| generator: + flavours and colours | {res['rate_full']:.4g} /s | | |",
        "",
        f"Speed-up over the generation stage of the slowest multiplicity (Z + {slowest.jets}j):"
        f" {res['rate_full'] / slowest.rate_generation:.0f}x (with flavours and colours), over "
        f"its whole run {res['rate_full'] / slowest.rate_total:.0f}x.",
        "",
        "### Per observable (pulls over bins with >= 100 test-truth events)",
        "",
        "| observable | bins | max pull | rms pull | max pull rw | rms pull rw | band covers "
        "| band+stat covers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.name} | {row.bins} | {row.max_pull:.2f} | {row.rms_pull:.2f} | "
            f"{row.max_pull_rw:.2f} | {row.rms_pull_rw:.2f} | {row.covered_band:.0%} | "
            f"{row.covered_total:.0%} |"
        )
    all_bins = sum(r.bins for r in rows)

    def pooled(attr: str) -> float:
        return sum(getattr(r, attr) * r.bins for r in rows) / all_bins

    worst = max(r.max_pull_rw for r in rows)
    worst_rms = max(r.rms_pull_rw for r in rows)
    amp = res["amp"]
    lines += [
        "",
        "### Summary",
        "",
        "| quantity | value | target |",
        "|---|---:|---|",
        f"| AUC before reweighting (held out) | {rw.auc_before:.4f} | |",
        f"| AUC after (fresh classifier, held out) | {rw.auc_after:.4f} | < 0.52 |",
        f"| fraction |log w| > 1 | {rw.tail_fraction:.2%} | |",
        f"| clipped weights | {rw.clipped_fraction:.2%} (to [1/{rw.clip:g}, {rw.clip:g}]) | |",
        f"| largest |pull| after reweighting | {worst:.2f} | <= 4 |",
        f"| largest per-observable rms pull after | {worst_rms:.2f} | <= 1.2 |",
        f"| largest |pull| before | {max(r.max_pull for r in rows):.2f} | |",
        f"| band coverage (band alone / band+stat) | {pooled('covered_band'):.0%} / "
        f"{pooled('covered_total'):.0%} | >= 68 % |",
        "| jet rates gen / truth | "
        + ", ".join(
            f"{k}j {res['jet_rates_gen'][k]:.3f}/{res['jet_rates_truth'][k]:.3f}" for k in s.jets
        )
        + " | |",
        f"| training time | {res['train_s']:.0f} s | |",
        f"| sampling time | {res['sample_s']:.1f} s + {res['colour_s']:.1f} s colours | |",
        f"| draws outside the card's cuts (redrawn) | {100 * res['outside_cuts']:.1f}% | |",
        f"| amplification N_eq / N_train | {'>= ' if amp['lower_bound'] else ''}"
        f"{amp['amplification']:.2f} (N_eq {amp['n_eq']:.3g}) | > 1 |",
        "",
        f"Amplification calibration: a = {amp['a']:.3f} (1 for independent bins); truth "
        f"subsamples of {amp['subsample_sizes']} events give D / expected = "
        + ", ".join(f"{x:.2f}" for x in amp["subsample_d_over_expected"])
        + f" against a reference of {amp['n_ref']:,} events.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jets", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--train", type=int, default=60_000, help="training events (all k)")
    parser.add_argument("--truth", type=int, default=60_000, help="held-out truth events")
    parser.add_argument("--run-events", type=int, nargs="+", default=None,
                        help="evgen run events per multiplicity (default: train + truth "
                        "times the multiplicity's share, capped for 2j/3j)")  # fmt: skip
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--network", choices=("bayesian", "ensemble"), default="bayesian")
    parser.add_argument(
        "--members",
        type=int,
        default=10,
        help="ensemble members / Bayesian weight samples mixed in sampling",
    )
    parser.add_argument(
        "--kl-scale",
        type=float,
        default=1.0,
        help="weight of the Bayesian layers' KL term (1: the ELBO)",
    )
    parser.add_argument("--hidden-layers", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--generate", type=int, default=300_000)
    parser.add_argument("--weight-samples", type=int, default=10)
    parser.add_argument("--band-events", type=int, default=60_000)
    parser.add_argument("--classifier-epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="tiny: a minute")
    parser.add_argument("--out", action="store_true", help="write RESULTS.md even if partial")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.smoke:
        args.jets, args.train, args.truth, args.steps = [1], 3000, 4000, 200
        args.generate, args.weight_samples, args.band_events = 10_000, 3, 3000
        args.classifier_epochs, args.run_events = 5, [7000]
    run_events = args.run_events or [args.train + args.truth] * len(args.jets)
    settings = Settings(
        jets=args.jets, train=args.train, truth=args.truth,
        reference_events=dict(zip(args.jets, run_events, strict=True)), steps=args.steps,
        hidden=args.hidden, hidden_layers=args.hidden_layers, batch_size=args.batch_size,
        generate=args.generate, weight_samples=args.weight_samples, band_events=args.band_events,
        classifier=ClassifierConfig(batch_size=512, epochs=args.classifier_epochs,
                                    learning_rate=3e-3, patience=5, schedule="cosine",
                                    seed=args.seed),
        seed=args.seed, network=args.network, members=args.members, kl_scale=args.kl_scale,
    )  # fmt: skip
    res = run_benchmark(settings)
    command = "OMP_NUM_THREADS=1 python benchmarks/generators.py " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    text = render(res, command.strip())
    print(text)
    if args.out or not args.smoke:
        write_section("generators", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
