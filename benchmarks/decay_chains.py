"""Decay chains in the narrow-width approximation: the physics checks of issue 6.

(a) sigma(p p > t t~, (t > b l+ vl), (t~ > b~ l- vl~)) against sigma(p p > t t~) BR^2 f_BW^2,
    13 TeV, NNPDF2.3 LO: both cross sections from ``evgen run`` of the shipped cards
    (cards/ttbar_dilepton.yaml, cards/ttbar.yaml) with more points; BR = Gamma(t > b l+ vl)
    / WT with the partial width from the engine's |M|^2 (processes.auto.widths, Monte
    Carlo) and in closed form (W Breit-Wigner integrated); f_BW the top Breit-Wigner's
    fraction within bwcutoff = 15 widths. Expected: agreement to O(WT/mt) ~ 1 %.
(b) Spin correlations at 13 TeV: D of 1/sigma dsigma/dcos(phi) = (1 - D cos(phi)) / 2 (phi
    between l+ in the t and l- in the t~ rest frames, reached from the t t~ rest frame;
    Bernreuther & Si, arXiv:1003.3926) from the decay chain p p > t t~, (t > b e+ ve),
    (t~ > b~ mu- vm~) against the full p p > b e+ ve b~ mu- vm~ (all its diagrams;
    integrated with its own doubly-resonant diagram channels, SDE weights renormalised
    among them, no window in the mapping, no VEGAS) cut to both tops within 15 widths; and against
    the chain with the tops decayed isotropically (each top's decay products rotated by a
    uniform random rotation in its rest frame: production |M|^2 times spin-averaged
    decays, D = 0). Histograms compared by chi^2.

Run (about 10 minutes on one thread)::

    python benchmarks/decay_chains.py          # writes the "decay chains" section of RESULTS.md
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine_info import cpu_model  # noqa: E402
from results_file import write_section  # noqa: E402

from evgen.alphas import AlphaS  # noqa: E402
from evgen.beams import parse_beam  # noqa: E402
from evgen.card import CutsCard, ScaleCard, parse_card  # noqa: E402
from evgen.cuts import Cuts  # noqa: E402
from evgen.integrand import Integrand  # noqa: E402
from evgen.integrators.vegas import Vegas  # noqa: E402
from evgen.kinematics import boost, mass2  # noqa: E402
from evgen.params import SMParameters  # noqa: E402
from evgen.pdf import load_pdf  # noqa: E402
from evgen.phasespace.diagram_channels import channel_phase_spaces, onshell_window  # noqa: E402
from evgen.run import run_card  # noqa: E402
from evgen.setup import _ProductionScale  # noqa: E402
from processes import FlavourAlias, resolve  # noqa: E402
from processes.auto.widths import (  # noqa: E402
    breit_wigner_fraction,
    partial_width,
    width_t_to_blnu,
)
from processes.base import Channel, Process  # noqa: E402

T_LEGS, TBAR_LEGS = (2, 3, 4), (5, 6, 7)
BW = 15.0


# --------------------------------------------------------------------------- (a)


def run_cross_section(card: str, iterations: int, points: int, out: Path) -> tuple[float, float]:
    data = yaml.safe_load((ROOT / "cards" / card).read_text())
    data["integrator"] = {"iterations": iterations, "points_per_iteration": points}
    data["run"] = {"nevents": 100, "seed": 11}
    data["output"] = {"path": str(out / card.removesuffix(".yaml")), "formats": ["lhe"]}
    result = run_card(parse_card(data, card), yaml.safe_dump(data))
    return result.cross_section_pb, result.error_pb


# --------------------------------------------------------------------------- (b)


class DoublyResonant(Process):
    """A 2 -> 6 process restricted to its channels with both top s-channel lines (its
    SDE weights renormalised among them): |M|^2 is the full one."""

    def __init__(self, proc: Process, keep: list[int]) -> None:
        super().__init__(proc.params)
        self.proc, self.keep = proc, keep
        self.name, self.incoming, self.outgoing = proc.name, proc.incoming, proc.outgoing
        self.alpha_s_power, self.alpha_ew_power = proc.alpha_s_power, proc.alpha_ew_power

    @property
    def masses(self) -> tuple[float, ...]:
        return self.proc.masses

    def matrix_element(self, momenta, alpha_s=None):
        return self.proc.matrix_element(momenta, alpha_s)

    def matrix_element_and_channel_weights(self, momenta, alpha_s=None):
        me, cw = self.proc.matrix_element_and_channel_weights(momenta, alpha_s)
        cw = cw[:, self.keep]
        total = cw.sum(1, keepdim=True)
        return me, torch.where(total > 0, cw / total.clamp_min(1e-300), 1.0 / len(self.keep))

    def channel_weights(self, momenta):
        return self.matrix_element_and_channel_weights(momenta)[1]

    def channels(self) -> list[Channel]:
        channels = self.proc.channels()
        return [channels[i] for i in self.keep]

    def colour_flow(self, momenta, u):
        return self.proc.colour_flow(momenta, u)


def doubly_resonant(subs: list[Process]) -> list[Process]:
    out: list[Process] = []
    wrapped: dict[int, Process] = {}
    for p in subs:
        owner = p.representative if isinstance(p, FlavourAlias) else p
        if id(owner) not in wrapped:
            keep = [
                i
                for i, ch in enumerate(owner.channels())
                if {(q.pdg, q.legs) for q in ch.propagators if q.kind == "s"}
                >= {(6, T_LEGS), (-6, TBAR_LEGS)}
            ]
            wrapped[id(owner)] = DoublyResonant(owner, keep)
        rep = wrapped[id(owner)]
        if isinstance(p, FlavourAlias):
            out.append(FlavourAlias(rep, p.incoming, p.outgoing, p.flavour_map, name=p.name))
        else:
            out.append(rep)
    return out


class TopWindows(Cuts):
    """No generation cut but both tops (b e+ ve, b~ mu- vm~) within BW widths."""

    def __init__(self, outgoing: tuple[int, ...], mt: float, wt: float) -> None:
        super().__init__(CutsCard(ptl=-1, etal=-1, drll=-1, ptj=-1, etaj=-1), outgoing)
        self.mt, self.half = mt, BW * wt

    @property
    def signature(self) -> tuple:
        return (*super().signature, self.mt, self.half)

    def __call__(self, p):
        ok = super().__call__(p)
        for legs in ((0, 1, 2), (3, 4, 5)):
            m = torch.sqrt(mass2(p[:, list(legs)].sum(1)).clamp_min(0))
            ok = ok & ((m - self.mt).abs() <= self.half)
        return ok


def weighted_events(
    subs: list[Process], n_train: int, n_iter: int, n_sample: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Weighted events (momenta, weights in pb summing to sigma) of subprocesses sharing one
    final state at 13 TeV, one VEGAS grid per diagram channel (trained, then frozen; with
    ``n_iter`` 0 the channel mappings alone)."""
    params = subs[0].params
    beams = (parse_beam("p", 6500.0, "beams"), parse_beam("p", 6500.0, "beams"))
    pdf = load_pdf("NNPDF23_lo_as_0130_qed")
    alpha_s = AlphaS(pdf.alpha_s_mz, n_loops=2)
    m_lo = onshell_window(params.mt, params.wt, BW)[0]
    chans = channel_phase_spaces(
        subs, 6500.0, 6500.0, s_hat_min=(2 * m_lo) ** 2, hadronic=True, bw_cutoff=BW
    )
    scale = _ProductionScale(ScaleCard(), [[0, 1, 2], [3, 4, 5]])
    cuts = [TopWindows(p.outgoing, params.mt, params.wt) for p in subs]
    f = Integrand(subs, chans.phase_spaces, beams, pdf, alpha_s, scale, cuts, chans.channel_of)
    momenta, weights = [], []
    total, var = 0.0, 0.0
    for c in range(f.n_channels):
        if n_iter > 0:
            vegas = Vegas(f.n_dim, n_bins=64, alpha=1.5, seed=seed + c)
            vegas.train(lambda r, c=c: f(r, c), n_iter, n_train)
            r, jac = vegas.sample(n_sample)
        else:  # the channel mappings alone
            g = torch.Generator().manual_seed(seed + c)
            r = torch.rand(n_sample, f.n_dim, generator=g, dtype=torch.float64)
            jac = torch.ones(n_sample, dtype=torch.float64)
        values = f.evaluate(r, c)
        w = values.weights * values.channel_prior[:, c] * jac
        total += float(w.mean())
        var += float(w.var()) / len(w)
        keep = w != 0
        momenta.append(values.momenta[keep])
        weights.append(w[keep] / len(w))
    return torch.cat(momenta), torch.cat(weights), total, math.sqrt(var)


def cos_phi(p: torch.Tensor) -> torch.Tensor:
    top, tbar = p[:, list(T_LEGS)].sum(1), p[:, list(TBAR_LEGS)].sum(1)
    pair = top + tbar
    v = -pair[:, 1:] / pair[:, :1]
    top_c, tbar_c = boost(top, v), boost(tbar, v)
    lp = boost(boost(p[:, 3], v), -top_c[:, 1:] / top_c[:, :1])[:, 1:]
    lm = boost(boost(p[:, 6], v), -tbar_c[:, 1:] / tbar_c[:, :1])[:, 1:]
    return (lp * lm).sum(-1) / (lp.norm(dim=-1) * lm.norm(dim=-1))


def fit_d(c: torch.Tensor, w: torch.Tensor) -> tuple[float, float]:
    mean = (w * c).sum() / w.sum()
    return float(-3 * mean), float(3 * torch.sqrt((w**2 * (c - mean) ** 2).sum()) / w.sum())


def random_rotations(n: int, g: torch.Generator) -> torch.Tensor:
    """n uniform random rotation matrices (n, 3, 3), from normalised Gaussian quaternions."""
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    a, b, c, d = (q / q.norm(dim=1, keepdim=True)).unbind(1)
    rows = [
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
    ]
    return torch.stack([torch.stack(row, 1) for row in rows], 1)


def isotropic(p: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Each top's decay products rotated by an independent uniform random rotation in its
    rest frame (isotropic decays, D = 0)."""
    out = p.clone()
    for legs in (T_LEGS, TBAR_LEGS):
        top = p[:, list(legs)].sum(1)
        v = top[:, 1:] / top[:, :1]
        rest = boost(p[:, list(legs)], -v[:, None])
        rot = random_rotations(len(p), g)
        rest = torch.cat([rest[..., :1], torch.einsum("nij,nkj->nki", rot, rest[..., 1:])], -1)
        out[:, list(legs)] = boost(rest, v[:, None])
    return out


def histogram(c: torch.Tensor, w: torch.Tensor, bins: int = 10) -> list[tuple[float, float]]:
    """Normalised 1/sigma dsigma/dcos(phi) per bin with errors."""
    edges = torch.linspace(-1, 1, bins + 1, dtype=torch.float64)
    width = 2.0 / bins
    out = []
    for k in range(bins):
        sel = (c >= edges[k]) & (c < edges[k + 1])
        out.append(
            (
                float(w[sel].sum() / w.sum()) / width,
                float((w[sel] ** 2).sum().sqrt() / w.sum()) / width,
            )
        )
    return out


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fraction of the points")
    parser.add_argument("--out", default="/tmp/evgen_decay_chains", help="run folders")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    scale = 0.2 if args.quick else 1.0
    out = Path(args.out)
    params = SMParameters()
    t0 = time.perf_counter()

    # (a) -------------------------------------------------------------------------
    sig_tt, err_tt = run_cross_section("ttbar.yaml", 10, int(100000 * scale), out)
    sig_dl, err_dl = run_cross_section("ttbar_dilepton.yaml", 10, int(80000 * scale), out)
    gamma_mc = partial_width("t > b l+ vl", n_points=int(1_000_000 * scale), seed=3)
    gamma_exact = 2 * width_t_to_blnu(params)
    br_mc, br = gamma_mc.value_gev / params.wt, gamma_exact / params.wt
    f_bw = breit_wigner_fraction(params.mt, params.wt, *onshell_window(params.mt, params.wt, BW))
    predicted = sig_tt * br**2 * f_bw**2
    pred_err = err_tt * br**2 * f_bw**2
    ratio = sig_dl / predicted
    ratio_err = ratio * math.hypot(err_dl / sig_dl, pred_err / predicted)
    t_a = time.perf_counter() - t0

    # (b) -------------------------------------------------------------------------
    t1 = time.perf_counter()
    chain = resolve("p p > t t~, (t > b e+ ve), (t~ > b~ mu- vm~)", params, engine="amplitudes")
    p1, w1, s1, e1 = weighted_events(chain, int(20000 * scale), 4, int(200000 * scale), seed=100)
    t_chain = time.perf_counter() - t1
    t2 = time.perf_counter()
    full = doubly_resonant(resolve("p p > b e+ ve b~ mu- vm~", params, engine="amplitudes"))
    p2, w2, s2, e2 = weighted_events(full, 0, 0, int(40000 * scale), seed=200)
    t_full = time.perf_counter() - t2
    c1, c2 = cos_phi(p1), cos_phi(p2)
    d1, de1 = fit_d(c1, w1)
    d2, de2 = fit_d(c2, w2)
    p_iso = isotropic(p1, torch.Generator().manual_seed(7))
    c0 = cos_phi(p_iso)
    d0, de0 = fit_d(c0, w1)
    h1, h2, h0 = histogram(c1, w1), histogram(c2, w2), histogram(c0, w1)
    pulls = [(a[0] - b[0]) / math.hypot(a[1], b[1]) for a, b in zip(h1, h2, strict=True)]
    pulls0 = [(a[0] - b[0]) / math.hypot(a[1], b[1]) for a, b in zip(h1, h0, strict=True)]
    chi2 = sum(x * x for x in pulls)
    chi2_0 = sum(x * x for x in pulls0)
    neff1 = float(w1.sum() ** 2 / (w1**2).sum())
    neff2 = float(w2.sum() ** 2 / (w2**2).sum())
    total = time.perf_counter() - t0

    lines = [
        "## Decay chains (narrow-width approximation)",
        "",
        f"`python benchmarks/decay_chains.py{' --quick' if args.quick else ''}`; "
        f"{cpu_model()}, one thread, {total / 60:.1f} min. 13 TeV, NNPDF2.3 LO "
        "(alpha_s(MZ) = 0.130), MadGraph's sm (mt = 173, WT = 1.4915 GeV), "
        "bwcutoff = 15, MadGraph's default dynamical scale (mT of the tops).",
        "",
        "### (a) sigma(chain) = sigma(p p > t t~) x BR^2 x f_BW^2",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| sigma(p p > t t~), `cards/ttbar.yaml` | {sig_tt:.3f} +- {err_tt:.3f} pb |",
        f"| Gamma(t > b l+ vl), l = e, mu: engine |M|^2, Monte Carlo | "
        f"{gamma_mc.value_gev:.6f} +- {gamma_mc.error_gev:.6f} GeV |",
        f"| Gamma(t > b l+ vl): closed form, W Breit-Wigner integrated | {gamma_exact:.6f} GeV |",
        f"| BR = Gamma / WT (closed form; Monte Carlo {br_mc:.5f}) | {br:.5f} |",
        f"| f_BW (top Breit-Wigner within 15 widths) | {f_bw:.5f} |",
        f"| prediction sigma(t t~) BR^2 f_BW^2 | {predicted:.4f} +- {pred_err:.4f} pb |",
        f"| sigma(p p > t t~, (t > b l+ vl), (t~ > b~ l- vl~)), `cards/ttbar_dilepton.yaml` | "
        f"{sig_dl:.4f} +- {err_dl:.4f} pb |",
        f"| ratio measured / predicted | {ratio:.4f} +- {ratio_err:.4f} "
        f"({(ratio - 1) / ratio_err:+.1f} sigma from 1) |",
        "",
        f"Expected: 1 to O(WT/mt) = {params.wt / params.mt:.3f} (off-shell production and "
        "decay over the window, non-factorisable terms); without f_BW^2 the prediction would "
        f"be {100 * (1 / f_bw**2 - 1):.1f} % higher. Time: {t_a:.0f} s.",
        "",
        "### (b) Spin correlations: D in (1 - D cos phi) / 2",
        "",
        "| sample | sigma (pb) | D | effective events | time |",
        "|---|---|---|---|---|",
        f"| chain p p > t t~, (t > b e+ ve), (t~ > b~ mu- vm~) | {s1:.4f} +- {e1:.4f} | "
        f"{d1:+.4f} +- {de1:.4f} | {neff1:.0f} | {t_chain:.0f} s |",
        f"| full p p > b e+ ve b~ mu- vm~, both tops within 15 WT | {s2:.4f} +- {e2:.4f} | "
        f"{d2:+.4f} +- {de2:.4f} | {neff2:.0f} | {t_full:.0f} s |",
        f"| chain, tops decayed isotropically | {s1:.4f} +- {e1:.4f} | {d0:+.4f} +- {de0:.4f} "
        "| (same events) | |",
        "",
        f"D(chain) - D(full) = {d1 - d2:+.4f} +- {math.hypot(de1, de2):.4f} "
        f"({(d1 - d2) / math.hypot(de1, de2):+.1f} sigma); D(chain) - D(isotropic) = "
        f"{d1 - d0:+.4f} ({(d1 - d0) / math.hypot(de1, de0):+.1f} sigma). Normalised "
        f"cos(phi) histograms (10 bins): chain vs full chi^2 = {chi2:.1f} / 10, "
        f"chain vs isotropic chi^2 = {chi2_0:.1f} / 10.",
        "",
        "| cos phi bin | chain | full 2 -> 6 | pull | isotropic |",
        "|---|---|---|---|---|",
    ]
    for k in range(10):
        lo = -1 + 0.2 * k
        lines.append(
            f"| [{lo:+.1f}, {lo + 0.2:+.1f}) | {h1[k][0]:.4f} +- {h1[k][1]:.4f} | "
            f"{h2[k][0]:.4f} +- {h2[k][1]:.4f} | {pulls[k]:+.2f} | {h0[k][0]:.4f} |"
        )
    lines += [
        "",
        "Sign convention as Bernreuther & Si (arXiv:1003.3926): D < 0 at the LHC (the gg "
        "initial state near threshold makes spin-singlet pairs, D = -1; q q~ the triplet, "
        "D = +1/3). The full 2 -> 6 includes every diagram (single-top-like and "
        "non-resonant ones too), integrated with its three doubly-resonant channels; the "
        "decay chain keeps only the doubly-resonant diagrams, as MadGraph's decay chains do.",
    ]
    text = "\n".join(lines)
    print(text)
    if not args.quick:
        print(f"wrote {write_section('decay chains', text)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
