"""Decay chains in runs (narrow-width approximation, MadGraph's way): resolution and flavour
grouping, the bwcutoff window in the phase space and the cuts, partial widths against
closed forms, sigma(chain) = sigma(production) x BR^2 x f_BW^2, spin correlations against
the threshold spin state and the full 2 -> 6 matrix element, and the LHE record showered by
Pythia 8."""

from __future__ import annotations

import math
from pathlib import Path

import pylhe
import pytest
import torch
import yaml
from pythia_tools import shower_lhe

from evgen.card import parse_card
from evgen.errors import CardError
from evgen.kinematics import boost, mass2
from evgen.params import SMParameters
from evgen.phasespace.diagram_channels import (
    ChannelPhaseSpace,
    onshell_window,
)
from evgen.run import run_card
from evgen.setup import prepare
from processes import FlavourAlias, matrix_element_owner, resolve
from processes.auto.process import AutoProcess
from processes.auto.widths import (
    breit_wigner_fraction,
    partial_width,
    width_t_to_blnu,
    width_t_to_bw,
    width_w_to_lnu,
)

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parent.parent
CHAIN = "{a} {b} > t t~, (t > b e+ ve), (t~ > b~ {l}- {v}~)"
T_LEGS, TBAR_LEGS = (2, 3, 4), (5, 6, 7)  # external indices of b e+ ve, b~ l- vl~


# --------------------------------------------------------------------------- helpers


def fixed_energy_sample(
    proc, sqrt_s: float, n: int, seed: int, keep: list[int] | None = None, **kw
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted points of a 2 -> n process at fixed sqrt(s_hat) (GeV) from its diagram
    channels with SDE weights: (momenta (N, n_ext, 4), weights (N,) in GeV^-2 whose mean is
    sigma_hat = 1 / (2 s) int |M|^2 dPhi_n). ``keep``: use only these channels of the
    process, their SDE weights renormalised among them (a valid multi-channel set when
    together they cover the phase space)."""
    channels = proc.channels()
    keep = list(range(len(channels))) if keep is None else keep
    g = torch.Generator().manual_seed(seed)
    momenta, weights = [], []
    for c in keep:
        ps = ChannelPhaseSpace(
            sqrt_s / 2, sqrt_s / 2, proc.masses[2:], channels[c], hadronic=False, **kw
        )
        point = ps.map(torch.rand(n // len(keep), ps.n_dim, generator=g, dtype=torch.float64))
        ok = point.jacobian > 0
        me, cw = proc.matrix_element_and_channel_weights(point.momenta[ok])
        cw = cw[:, keep]
        alpha = cw[:, keep.index(c)] / cw.sum(1)
        w = torch.zeros(len(ok), dtype=torch.float64)
        w[ok] = me * alpha * point.jacobian[ok] / (2 * sqrt_s**2) * len(keep)
        momenta.append(point.momenta)
        weights.append(w)
    return torch.cat(momenta), torch.cat(weights)


def in_window(p: torch.Tensor, legs, mass: float, width: float, bw: float = 15.0):
    m = torch.sqrt(mass2(p[:, list(legs)].sum(1)).clamp_min(0))
    return (m - mass).abs() <= bw * width


def cos_phi(p: torch.Tensor, lp: int = 3, lm: int = 6) -> torch.Tensor:
    """cos of the angle between l+ in the top's and l- in the t~'s rest frame, both reached
    from the t t~ rest frame by rotation-free boosts (Bernreuther & Si, arXiv:1003.3926)."""
    top, tbar = p[:, list(T_LEGS)].sum(1), p[:, list(TBAR_LEGS)].sum(1)
    pair = top + tbar
    v = -pair[:, 1:] / pair[:, :1]
    top_c, tbar_c = boost(top, v), boost(tbar, v)
    lplus = boost(boost(p[:, lp], v), -top_c[:, 1:] / top_c[:, :1])[:, 1:]
    lminus = boost(boost(p[:, lm], v), -tbar_c[:, 1:] / tbar_c[:, :1])[:, 1:]
    return (lplus * lminus).sum(-1) / (lplus.norm(dim=-1) * lminus.norm(dim=-1))


def fit_d(c: torch.Tensor, w: torch.Tensor) -> tuple[float, float]:
    """D of 1/sigma dsigma/dcos(phi) = (1 - D cos(phi)) / 2 from weighted events: D =
    -3 <cos phi>, with its error (delta method)."""
    mean = (w * c).sum() / w.sum()
    err = 3 * torch.sqrt((w**2 * (c - mean) ** 2).sum()) / w.sum()
    return float(-3 * mean), float(err)


def random_rotations(n: int, g: torch.Generator) -> torch.Tensor:
    """n uniformly distributed rotation matrices (n, 3, 3) (normalised Gaussian
    quaternions)."""
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    a, b, c, d = (q / q.norm(dim=1, keepdim=True)).unbind(1)
    rows = [
        [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
        [2 * (b * c + a * d), a * a - b * b + c * c - d * d, 2 * (c * d - a * b)],
        [2 * (b * d - a * c), 2 * (c * d + a * b), a * a - b * b - c * c + d * d],
    ]
    return torch.stack([torch.stack(row, 1) for row in rows], 1)


def isotropic_decays(p: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The tops decayed isotropically: each top's decay products rotated by an independent
    uniform random rotation in the top's rest frame. Averaged over the rotations the chain's
    |M|^2 becomes production |M|^2 times spin-averaged decays (the spin-dependent terms are
    linear in the decay directions), so its D is 0."""
    out = p.clone()
    for legs in (T_LEGS, TBAR_LEGS):
        top = p[:, list(legs)].sum(1)
        v = top[:, 1:] / top[:, :1]
        rest = boost(p[:, list(legs)], -v[:, None])
        rot = random_rotations(p.shape[0], g)
        rest = torch.cat([rest[..., :1], torch.einsum("nij,nkj->nki", rot, rest[..., 1:])], -1)
        out[:, list(legs)] = boost(rest, v[:, None])
    return out


def sigma_gg_tt(s: float, mt: float, alpha_s: float) -> float:
    """sigma(g g > t t~) in GeV^-2 at leading order (Combridge, Nucl. Phys. B151 (1979) 429):
    pi alpha_s^2 / (3 s) [(1 + rho + rho^2 / 16) ln((1 + beta) / (1 - beta)) - beta (7/4 +
    31 rho / 16)], rho = 4 mt^2 / s."""
    rho = 4 * mt**2 / s
    beta = math.sqrt(1 - rho)
    log = math.log((1 + beta) / (1 - beta))
    return (
        math.pi
        * alpha_s**2
        / (3 * s)
        * ((1 + rho + rho**2 / 16) * log - beta * (1.75 + 31 * rho / 16))
    )


def card_data(tmp_path: Path, **changes) -> dict:
    data = yaml.safe_load((ROOT / "cards" / "ttbar_dilepton.yaml").read_text())
    data["output"] = {"path": str(tmp_path / "out"), "formats": ["lhe"]}
    data.update(changes)
    return data


# --------------------------------------------------------------------------- resolution


def test_lepton_flavours_of_a_decay_chain_share_matrix_elements() -> None:
    """p p > t t~, (t > b l+ vl), (t~ > b~ l- vl~): 9 initial states x 4 lepton-flavour
    combinations = 36 subprocesses, grouped as MadGraph does (e and mu are the same massless
    lepton to the sm): 10 matrix elements. An alias's |M|^2 equals that of the same
    subprocess built on its own, and every channel marks the two tops as decay resonances."""
    subs = resolve("p p > t t~, (t > b l+ vl), (t~ > b~ l- vl~)")
    assert len(subs) == 36
    assert len({id(matrix_element_owner(p)) for p in subs}) == 10
    alias = next(p for p in subs if p.name == "c c~ > t t~, t > b mu+ vm, t~ > b~ e- ve~")
    assert isinstance(alias, FlavourAlias)
    direct = AutoProcess.load(CHAIN.format(a="c", b="c~", l="e", v="ve").replace("e+ ve", "mu+ vm"))
    assert direct.outgoing == alias.outgoing == (5, -13, 14, -5, 11, -12)
    p, _ = fixed_energy_sample(direct, 600.0, 40, seed=3)
    p = p[torch.isfinite(p).all(-1).all(-1) & (p[:, 2:, 0] > 0).all(1)]
    assert torch.allclose(alias.matrix_element(p), direct.matrix_element(p), rtol=1e-12, atol=0)
    for proc in subs:
        for ch in proc.channels():
            tops = [(q.pdg, q.legs) for q in ch.decay_resonances()]
            assert tops == [(6, T_LEGS), (-6, TBAR_LEGS)]


def test_card_key_bwcutoff_and_engine_errors(tmp_path) -> None:
    assert parse_card({"process": "p p > t t~"}).cuts.bwcutoff == 15.0
    with pytest.raises(CardError, match=r"cuts\.bwcutoff"):
        parse_card({"process": "p p > t t~", "cuts": {"bwcutoff": 0}})
    card = parse_card(card_data(tmp_path, engine="analytic"))
    with pytest.raises(CardError, match="engine: the analytic library has no decay chains"):
        prepare(card)
    with pytest.raises(CardError, match=r"model\.wt"):  # a decaying top needs a width
        parse_card(card_data(tmp_path, model={"wt": 0.0}))


# --------------------------------------------------------------------------- phase space


def test_phase_space_samples_the_window_and_agrees_with_cutting() -> None:
    """u u~ > t t~ with decays at sqrt(s) = 500 GeV. The channel with the tops sampled
    inside |m - mt| <= bwcutoff WT (the window built into the Breit-Wigner) puts every point
    there, and its integral equals that of an unrestricted mapping (bwcutoff 1e6) with the
    window applied as a cut: two phase spaces, one integral. A narrower window (bwcutoff 5)
    gives a smaller integral, in the ratio of the Breit-Wigner fractions."""
    proc = AutoProcess.load(CHAIN.format(a="u", b="u~", l="e", v="ve"))
    mt, wt = proc.params.mt, proc.params.wt
    p, w = fixed_energy_sample(proc, 500.0, 40000, seed=1)
    assert bool((w > 0).all())  # no point wasted
    assert bool((in_window(p, T_LEGS, mt, wt) & in_window(p, TBAR_LEGS, mt, wt)).all())
    p2, w2 = fixed_energy_sample(proc, 500.0, 40000, seed=2, bw_cutoff=1e6)
    w2 = w2 * (in_window(p2, T_LEGS, mt, wt) & in_window(p2, TBAR_LEGS, mt, wt))
    a, da = float(w.mean()), float(w.std() / len(w) ** 0.5)
    b, db = float(w2.mean()), float(w2.std() / len(w2) ** 0.5)
    assert abs(a - b) < 3 * math.hypot(da, db), (a, da, b, db)
    assert float((w2 == 0).double().mean()) > 0.02  # the unrestricted one wastes points
    p5, w5 = fixed_energy_sample(proc, 500.0, 40000, seed=3, bw_cutoff=5.0)
    assert bool((in_window(p5, T_LEGS, mt, wt, 5.0) & in_window(p5, TBAR_LEGS, mt, wt, 5.0)).all())
    f15 = breit_wigner_fraction(mt, wt, *onshell_window(mt, wt, 15.0))
    f5 = breit_wigner_fraction(mt, wt, *onshell_window(mt, wt, 5.0))
    c, dc = float(w5.mean()), float(w5.std() / len(w5) ** 0.5)
    expected = a * (f5 / f15) ** 2  # to O(WT/mt) over the wider window
    assert abs(c / expected - 1) < 0.01 + 3 * math.hypot(dc / c, da / a), (c, expected)
    assert abs(c / a - 1) > 0.05  # the window matters: (f5/f15)^2 = 0.89


# --------------------------------------------------------------------------- widths


def test_partial_widths_against_closed_forms() -> None:
    """Two-body widths are exact (constant spin-summed |M|^2): W -> e nu against G_F MW^3 /
    (6 pi sqrt2) and t -> b W (massive b) against its closed form, to 1e-10. t -> b e+ ve
    (off-shell W) against the Breit-Wigner integral done analytically (width_t_to_blnu),
    within 3 sigma of a 0.1 % Monte Carlo error; it differs from the narrow-width product
    Gamma(t -> b W) BR(W -> e nu) by O(GW/MW) (-1.5 %), which the Monte Carlo resolves; the
    l+ vl label sums e and mu."""
    params = SMParameters()
    w_lnu = partial_width("w+ > e+ ve", n_points=2000)
    assert w_lnu.value_gev == pytest.approx(width_w_to_lnu(params), rel=1e-10)
    t_bw = partial_width("t > b w+", n_points=2000)
    assert t_bw.value_gev == pytest.approx(width_t_to_bw(params), rel=1e-10)
    assert width_t_to_bw(params) == pytest.approx(params.wt, rel=1e-4)  # sm's WT is LO
    exact = width_t_to_blnu(params)
    assert exact == pytest.approx(width_t_to_blnu(params, n_nodes=100), rel=1e-12)
    mc = partial_width("t > b e+ ve", n_points=200_000, seed=4)
    assert mc.error_gev < 2e-3 * exact
    assert abs(mc.value_gev - exact) < 3 * mc.error_gev, (mc, exact)
    nwa = width_t_to_bw(params) * width_w_to_lnu(params) / params.ww
    assert exact / nwa - 1 == pytest.approx(-0.0152, abs=0.001)
    assert abs(mc.value_gev - nwa) > 8 * mc.error_gev
    both = partial_width("t > b l+ vl", n_points=100_000, seed=5)  # e and mu
    assert abs(both.value_gev - 2 * exact) < 3 * both.error_gev, (both, exact)


# --------------------------------------------------------------------------- NWA identity


def test_chain_cross_section_is_production_times_br_squared_times_f_bw_squared() -> None:
    """g g > t t~ at sqrt(s) = 500 GeV, both tops decayed to b e nu: sigma_chain =
    sigma(g g > t t~) BR^2 f_BW^2 with sigma from Combridge's closed form, BR = Gamma(t > b e+
    ve) / WT and f_BW the Breit-Wigner's fraction within 15 widths (0.9787). With a top width
    a tenth of the sm's (WT = 0.15 GeV, so the O(WT/mt) residual is 1e-3; BR = Gamma/WT then
    exceeds 1, the identity holds regardless), agreement within 0.5 % + 3 sigma, while
    f_BW^2 alone is a 4.2 % effect."""
    params = SMParameters().with_overrides(wt=0.15)
    proc = AutoProcess.load(CHAIN.format(a="g", b="g", l="e", v="ve"), params)
    _, w = fixed_energy_sample(proc, 500.0, 60000, seed=5)
    sigma, err = float(w.mean()), float(w.std() / len(w) ** 0.5)
    br = width_t_to_blnu(params) / params.wt
    f_bw = breit_wigner_fraction(params.mt, params.wt, *onshell_window(params.mt, params.wt))
    expected = sigma_gg_tt(500.0**2, params.mt, params.alpha_s) * br**2 * f_bw**2
    assert err < 0.005 * sigma
    assert abs(sigma / expected - 1) < 0.005 + 3 * err / sigma, (sigma, err, expected)
    assert abs(sigma / (expected / f_bw**2) - 1) > 0.03


# --------------------------------------------------------------------------- spin


def test_spin_correlation_qqbar_is_the_triplet_value_and_isotropic_decays_give_zero() -> None:
    """q q~ > g* > t t~ makes the pair in a spin triplet (J^PC = 1--), so with the charged
    leptons' analysing power 1 the opening-angle distribution has D = 1/3 at every energy:
    u u~ at sqrt(s) = 500 GeV agrees within 3 sigma (sigma ~ 0.01). The same events with the
    tops decayed isotropically give D = 0 within 3 sigma, many sigma from the chain's."""
    proc = AutoProcess.load(CHAIN.format(a="u", b="u~", l="e", v="ve"))
    p, w = fixed_energy_sample(proc, 500.0, 60000, seed=6)
    d, err = fit_d(cos_phi(p), w)
    assert err < 0.015
    assert abs(d - 1 / 3) < 3 * err, (d, err)
    iso = isotropic_decays(p, torch.Generator().manual_seed(7))
    assert torch.allclose(mass2(iso[:, list(T_LEGS)].sum(1)), mass2(p[:, list(T_LEGS)].sum(1)))
    d_iso, err_iso = fit_d(cos_phi(iso), w)
    assert abs(d_iso) < 3 * err_iso, (d_iso, err_iso)
    assert (d - d_iso) / math.hypot(err, err_iso) > 10


@pytest.mark.slow
def test_spin_correlation_gg_chain_agrees_with_full_two_to_six() -> None:
    """g g at sqrt(s) = 500 GeV: D from the decay chain g g > t t~, (t > b e+ ve), (t~ > b~
    mu- vm~) against the full g g > b e+ ve b~ mu- vm~ (87 diagrams' channels; here its three
    doubly-resonant channels, SDE weights renormalised among them, no bwcutoff in the
    mapping) restricted by a cut to both tops within 15 widths: D agrees within 3 sigma,
    the normalised cos(phi) histograms have chi^2/dof < 2, and D (~ -0.25) is many sigma
    from the isotropic decays' 0."""
    chain = AutoProcess.load(CHAIN.format(a="g", b="g", l="mu", v="vm"))
    full = AutoProcess.load("g g > b e+ ve b~ mu- vm~")
    mt, wt = full.params.mt, full.params.wt
    keep = [
        i
        for i, ch in enumerate(full.channels())
        if {(q.pdg, q.legs) for q in ch.propagators if q.kind == "s"}
        >= {(6, T_LEGS), (-6, TBAR_LEGS)}
    ]
    assert len(keep) == 3
    p1, w1 = fixed_energy_sample(chain, 500.0, 60000, seed=8)
    p2, w2 = fixed_energy_sample(full, 500.0, 15000, seed=9, keep=keep)
    w2 = w2 * (in_window(p2, T_LEGS, mt, wt) & in_window(p2, TBAR_LEGS, mt, wt))
    c1, c2 = cos_phi(p1), cos_phi(p2)
    d1, e1 = fit_d(c1, w1)
    d2, e2 = fit_d(c2, w2)
    assert abs(d1 - d2) < 3 * math.hypot(e1, e2), (d1, e1, d2, e2)
    assert d1 < -0.15 and -d1 / e1 > 10
    edges = torch.linspace(-1, 1, 11, dtype=torch.float64)
    chi2 = 0.0
    for k in range(10):
        hist = []
        for c, w in ((c1, w1), (c2, w2)):
            sel = (c >= edges[k]) & (c < edges[k + 1])
            hist.append(
                (float(w[sel].sum() / w.sum()), float((w[sel] ** 2).sum().sqrt() / w.sum()))
            )
        chi2 += (hist[0][0] - hist[1][0]) ** 2 / (hist[0][1] ** 2 + hist[1][1] ** 2)
    assert chi2 / 10 < 2.0, chi2


# --------------------------------------------------------------------------- runs


def test_run_scale_is_the_production_scale(tmp_path) -> None:
    """With decays, dynamical_scale_choice -1 is that of p p > t t~: sqrt(mT(t) mT(t~)) of
    the summed decay products."""
    run = prepare(
        parse_card(card_data(tmp_path, process=CHAIN.format(a="g", b="g", l="e", v="ve")))
    )
    integrand = run.groups[0].integrand
    point = integrand.phase_spaces[0].map(
        torch.rand(
            200, integrand.n_dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64
        )
    )
    p = point.momenta[point.jacobian > 0]
    mt2 = [
        (lambda q: q[:, 0] ** 2 - q[:, 3] ** 2)(p[:, list(legs)].sum(1))
        for legs in (T_LEGS, TBAR_LEGS)
    ]
    expected = (mt2[0] * mt2[1]) ** 0.25
    assert torch.allclose(integrand.scale(p).mu_r, expected, rtol=1e-12)


def test_dilepton_run_writes_resonances_that_pythia_showers(tmp_path) -> None:
    """The shipped card (small settings): every LHE event holds the ten particles, the tops
    with status 2 after the outgoing ones, momenta the sums of their products, masses in the
    mass column and within 15 widths, mothers 1 2, the decay products pointing to them, the
    top carrying the b's colour (the t~ the b~'s anticolour); Pythia 8 showers and hadronises
    every event without errors."""
    data = card_data(
        tmp_path,
        integrator={"iterations": 3, "points_per_iteration": 6000, "batch_size": 6000},
        run={"nevents": 40, "seed": 5},
    )
    data["output"]["formats"] = ["lhe", "root"]
    result = run_card(parse_card(data), yaml.safe_dump(data))
    assert len(result.subprocesses) == 36 and result.n_events == 40
    assert 15.0 < result.cross_section_pb < 35.0  # ~ 23 pb (see benchmarks/RESULTS.md)
    path = tmp_path / "out" / "events.lhe"
    events = list(pylhe.LHEFile.fromfile(path).events)
    assert len(events) == 40
    mt, wt = 173.0, 1.4915
    for ev in events:
        parts = ev.particles
        assert len(parts) == 10
        assert [int(q.status) for q in parts] == [-1, -1, 1, 1, 1, 1, 1, 1, 2, 2]
        assert [int(parts[k].id) for k in (8, 9)] == [6, -6]
        assert abs(int(parts[2].id)) == 5 and int(parts[2].id) == 5
        for top, daughters in ((8, (2, 3, 4)), (9, (5, 6, 7))):
            t = parts[top]
            assert [int(t.mother1), int(t.mother2)] == [1, 2]
            for k in daughters:
                assert [int(parts[k].mother1), int(parts[k].mother2)] == [top + 1, top + 1]
            total = [sum(getattr(parts[k], c) for k in daughters) for c in ("e", "px", "py", "pz")]
            assert total == pytest.approx([t.e, t.px, t.py, t.pz], rel=1e-9, abs=1e-7)
            m = math.sqrt(max(t.e**2 - t.px**2 - t.py**2 - t.pz**2, 0.0))
            assert t.m == pytest.approx(m, rel=1e-6, abs=1e-6)
            assert abs(t.m - mt) <= 15 * wt + 1e-6
        assert int(parts[8].color1) == int(parts[2].color1) > 0 and int(parts[8].color2) == 0
        assert int(parts[9].color2) == int(parts[5].color2) > 0 and int(parts[9].color1) == 0
    results, messages = shower_lhe(path)
    assert len(results) == 40 and all(results), messages
    problems = [m for m in messages if m.startswith(("Error", "Abort"))]
    problems = [m for m in problems if "end of Les Houches Events File" not in m]
    assert problems == [], problems
    assert (tmp_path / "out" / "events.root").is_file()
