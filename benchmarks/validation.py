"""Print the physics validation figures of the test suite at higher statistics:
evgen's Monte Carlo cross sections next to the independent references the tests use
(analytic e+e- -> mu+mu-, MadGraph's published p p > t t~, scipy quadrature of the same
PDFs and matrix elements), with pulls.

    python3 benchmarks/validation.py

Not a test; takes about a minute on 2 cores.
"""

from __future__ import annotations

import math
import sys
import tempfile
import time
from pathlib import Path

import torch
from scipy import integrate

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from test_cross_sections import NO_LEPTON_CUTS, dsigma_dshat, sigma_ee_mumu_pb  # noqa: E402

import processes  # noqa: E402
from evgen.alphas import AlphaS  # noqa: E402
from evgen.card import parse_card  # noqa: E402
from evgen.params import SMParameters, ZPrime  # noqa: E402
from evgen.pdf import load_pdf  # noqa: E402
from evgen.run import execute, prepare  # noqa: E402

INTEGRATOR = {"iterations": 8, "points_per_iteration": 50000}


def mc(**card):
    card.setdefault("output", {"path": tempfile.mkdtemp(), "formats": []})
    card.setdefault("integrator", INTEGRATOR)
    card.setdefault("run", {"nevents": 20000, "seed": 1})
    t0 = time.perf_counter()
    result = execute(prepare(parse_card(card)))
    return result, time.perf_counter() - t0


def row(name, result, seconds, reference, ref_err=0.0, ref_name=""):
    pull = (result.cross_section_pb - reference) / math.hypot(result.error_pb, ref_err)
    print(
        f"| {name} | {result.cross_section_pb:.6g} +- {result.error_pb:.2g} "
        f"({result.error_pb / result.cross_section_pb:.2e}) | {reference:.6g}"
        f"{f' +- {ref_err:.2g}' if ref_err else ''} ({ref_name}) | {pull:+.2f} | "
        f"{result.unweighting_efficiency:.1%} | {seconds:.1f} |"
    )


def main() -> None:
    params = SMParameters()
    pdf = load_pdf("NNPDF23_lo_as_0130_qed")
    alpha_s = AlphaS(pdf.alpha_s_mz, n_loops=2)
    print("| check | evgen MC [pb] (rel. error) | reference [pb] | pull | unw. eff. | time [s] |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for rs in (91.188, 500.0):
        res, t = mc(
            process="e+ e- > mu+ mu-",
            beams={"particles": ["e+", "e-"], "energies": [rs / 2, rs / 2]},
            cuts=NO_LEPTON_CUTS,
        )
        row(
            f"e+e- > mu+mu-, sqrt(s) = {rs} GeV",
            res,
            t,
            sigma_ee_mumu_pb(rs, params),
            0,
            "analytic",
        )

    res, t = mc(process="p p > t t~")
    row("p p > t t~, 13 TeV, MadGraph default scale", res, t, 505.6, 1.0, "MadGraph 5 LO")

    mt = params.mt
    subs = processes.expand("p p > t t~", params)
    a_s = float(alpha_s(torch.tensor([mt**2]))[0])
    S = 13000.0**2
    ref, _ = integrate.quad(
        lambda b: (
            8
            * mt**2
            * b
            / (1 - b**2) ** 2
            * dsigma_dshat(subs, pdf, S, 4 * mt**2 / (1 - b**2), mt, a_s)
        ),
        0.0,
        math.sqrt(1 - 4 * mt**2 / S),
        epsrel=1e-7,
        limit=200,
    )
    fixed = {
        "fixed_ren_scale": True,
        "fixed_fac_scale": True,
        "scale": mt,
        "dsqrt_q2fact1": mt,
        "dsqrt_q2fact2": mt,
    }
    res, t = mc(process="p p > t t~", scale=fixed)
    row("p p > t t~, 13 TeV, mu = MT", res, t, ref, 0, "scipy quadrature")

    subs = processes.expand("p p > e+ e-", params)
    ref, _ = integrate.quad(
        lambda s: dsigma_dshat(subs, pdf, S, s, math.sqrt(s), float(alpha_s(torch.tensor([s]))[0])),
        60.0**2,
        120.0**2,
        points=[params.mz**2],
        epsrel=1e-8,
        limit=200,
    )
    res, t = mc(process="p p > e+ e-", cuts={**NO_LEPTON_CUTS, "mmll": 60.0, "mmllmax": 120.0})
    row("p p > e+ e-, 60 < m_ee < 120 GeV", res, t, ref, 0, "scipy quadrature")

    zp_params = SMParameters(zprime=ZPrime(1500.0))
    subs = processes.expand("p p > e+ e-", zp_params)
    ref, _ = integrate.quad(
        lambda s: dsigma_dshat(subs, pdf, S, s, math.sqrt(s), float(alpha_s(torch.tensor([s]))[0])),
        50.0**2,
        3000.0**2,
        points=[params.mz**2, 1500.0**2],
        epsrel=1e-8,
        limit=400,
    )
    zp_cuts = {**NO_LEPTON_CUTS, "mmll": 50.0, "mmllmax": 3000.0}
    for multichannel in (True, False):
        res, t = mc(
            process="p p > e+ e-",
            model={"mzp": 1500.0},
            cuts=zp_cuts,
            integrator={**INTEGRATOR, "multichannel": multichannel},
        )
        kind = "3 channels" if multichannel else "1 channel"
        merit = res.error_pb * math.sqrt(res.n_weighted)
        row(
            f"p p > e+ e- + SSM Z' (1.5 TeV), 50 < m_ee < 3000 GeV, {kind}"
            f" (err sqrt(N_gen) = {merit:.0f} pb)",
            res,
            t,
            ref,
            0,
            "scipy quadrature",
        )


if __name__ == "__main__":
    main()
