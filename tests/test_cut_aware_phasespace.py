"""Cut-aware two-body phase space: lepton/jet rapidity and pT cuts mapped exactly.

The mapping (HadronicPhaseSpace with MasslessPairCuts) samples only the accepted region of
two massless outgoing particles. It is checked here against things that do not use it:

* the inverse map and a finite-difference Jacobian |det d(x1, x2, cos theta*, phi) / dr|
  read off the momenta (dPhi_2 = dcos dphi / (32 pi^2) for massless particles);
* the cut function of evgen.cuts on the mapped momenta (no mapped point may fail);
* a deterministic quadrature of the accepted volume and of cross sections (same PDFs and
  |M|^2) whose cos theta* limits are found by scanning and bisecting the cut function
  itself on momenta built here, not by the mapping's formulas;
* the full pipeline with the mapping switched off (fixed seeds, equal budgets).

Monte Carlo numbers must agree within 3 standard deviations of their own error.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import roots_legendre

import evgen.setup
import processes
from evgen.alphas import AlphaS
from evgen.card import CutsCard, parse_card
from evgen.cuts import Cuts
from evgen.errors import CardError
from evgen.kinematics import pseudorapidity, pt
from evgen.params import GEV2_TO_PB, SMParameters
from evgen.pdf import load_pdf
from evgen.phasespace import HadronicPhaseSpace
from evgen.phasespace.collider import MasslessPairCuts
from evgen.run import execute, prepare

F64 = torch.float64
SQRT_S = 13000.0
DY_CUTS = {"ptl": 10.0, "etal": 2.5, "drll": 0.4, "mmll": 60.0, "mmllmax": 120.0}


def _rand(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _mc(values: torch.Tensor) -> tuple[float, float]:
    return float(values.mean()), float(values.std()) / math.sqrt(values.numel())


# --- an independent acceptance: the cut function, scanned and bisected in cos theta* ----


def _lab_pair(shat: torch.Tensor, y: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Two massless particles (n, 2, 4) in the lab: pair mass^2 shat, rapidity y, particle
    1 at polar angle acos(cos) from +z in the pair rest frame (azimuth 0.3)."""
    e = 0.5 * torch.sqrt(shat)
    sin = torch.sqrt((1 - cos) * (1 + cos))
    px, py, pz = e * sin * math.cos(0.3), e * sin * math.sin(0.3), e * cos
    ch, sh = torch.cosh(y), torch.sinh(y)
    p1 = torch.stack([e * ch + pz * sh, px, py, pz * ch + e * sh], -1)
    p2 = torch.stack([e * ch - pz * sh, -px, -py, -pz * ch + e * sh], -1)
    return torch.stack([p1, p2], 1)


def accepted_cos(
    cuts: Cuts, shat: torch.Tensor, y: torch.Tensor, n_grid: int = 101, n_bisect: int = 52
) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, hi) of the cos theta* interval accepted by ``cuts`` at each (shat, y) (m,):
    a grid scan finds accepted points, bisection of the cut function refines the edges.
    lo = hi where no grid point passes (an interval narrower than the grid spacing)."""
    m = shat.numel()
    grid = torch.linspace(-1.0, 1.0, n_grid, dtype=F64)

    def passes(c: torch.Tensor) -> torch.Tensor:  # c (m, k) -> (m, k) bool
        k = c.shape[1]
        p = _lab_pair(shat.repeat_interleave(k), y.repeat_interleave(k), c.reshape(-1))
        return cuts(p).reshape(m, k)

    ok = passes(grid.expand(m, n_grid))
    any_ok = ok.any(1)
    idx = torch.arange(n_grid).expand(m, n_grid)
    first = torch.where(ok, idx, n_grid).amin(1).clamp(max=n_grid - 1)
    last = torch.where(ok, idx, -1).amax(1).clamp(min=0)
    between = (idx >= first[:, None]) & (idx <= last[:, None])
    assert bool((ok == (between & any_ok[:, None])).all()), "acceptance is not an interval"

    def edge(inside: torch.Tensor, outside: torch.Tensor) -> torch.Tensor:
        for _ in range(n_bisect):
            mid = 0.5 * (inside + outside)
            good = passes(mid[:, None])[:, 0]
            inside, outside = torch.where(good, mid, inside), torch.where(good, outside, mid)
        return 0.5 * (inside + outside)

    lo = torch.where(first > 0, edge(grid[first], grid[(first - 1).clamp(min=0)]), -1.0)
    hi = torch.where(
        last < n_grid - 1, edge(grid[last], grid[(last + 1).clamp(max=n_grid - 1)]), 1.0
    )
    lo = torch.where(any_ok, lo, 0.0)
    return lo, torch.where(any_ok, hi, 0.0)


def _y_nodes(
    shat: torch.Tensor, s_collider: float, eta: tuple[float, float], ptmin: float, n: int = 16
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Legendre nodes and weights (len(shat), k) in the pair rapidity over the
    kinematic range, in panels whose ends sit at the kinks of the accepted width
    (|y| = (E1 + E2)/2, E_i -+ a): only breakpoints, so the result does not hinge on them."""
    y_max = -0.5 * torch.log(shat / s_collider)
    a = torch.acosh((torch.sqrt(shat) / (2 * ptmin)).clamp(min=1.0)) if ptmin > 0 else None
    cands = [y_max, -y_max]
    for e in {*eta, 0.5 * sum(eta)}:
        if math.isfinite(e):
            cands += [torch.full_like(y_max, e), torch.full_like(y_max, -e)]
            if a is not None:
                cands += [s * (e + t * a) for s in (1, -1) for t in (1, -1)]
    br = torch.stack(cands, 1)
    br = torch.minimum(torch.maximum(br, -y_max[:, None]), y_max[:, None]).sort(1).values
    x, w = roots_legendre(n)
    x, w = torch.tensor(x), torch.tensor(w)
    lo, hi = br[:, :-1, None], br[:, 1:, None]
    nodes = 0.5 * (lo + hi) + 0.5 * (hi - lo) * x
    weights = 0.5 * (hi - lo) * w
    return nodes.reshape(len(shat), -1), weights.reshape(len(shat), -1)


def _s_nodes(pieces: list[tuple[float, float, tuple[float, float] | None]], n: int = 96):
    """Gauss-Legendre nodes and weights in s_hat (GeV^2): a Breit-Wigner substitution
    s = M^2 + M G tan(t) on pieces with (M, G), ln s on the others."""
    x, w = roots_legendre(n)
    nodes, weights = [], []
    for lo, hi, res in pieces:
        if res is None:
            u0, u1 = math.log(lo), math.log(hi)
            u = 0.5 * (u0 + u1) + 0.5 * (u1 - u0) * x
            nodes.append(np.exp(u))
            weights.append(0.5 * (u1 - u0) * w * np.exp(u))
        else:
            m, g = res
            t0, t1 = math.atan((lo - m * m) / (m * g)), math.atan((hi - m * m) / (m * g))
            t = 0.5 * (t0 + t1) + 0.5 * (t1 - t0) * x
            s = m * m + m * g * np.tan(t)
            nodes.append(s)
            weights.append(0.5 * (t1 - t0) * w * ((s - m * m) ** 2 + (m * g) ** 2) / (m * g))
    return torch.tensor(np.concatenate(nodes)), torch.tensor(np.concatenate(weights))


def _cm_momenta(shat: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """(m, 4, 4) partonic CM momenta, p1 along +z, particle 3 at polar angle acos(cos)."""
    rs = torch.sqrt(shat)
    z = torch.zeros_like(rs)
    sin = torch.sqrt((1 - cos) * (1 + cos))
    p1 = torch.stack([rs / 2, z, z, rs / 2], -1)
    p2 = torch.stack([rs / 2, z, z, -rs / 2], -1)
    p3 = torch.stack([rs / 2, rs / 2 * sin, z, rs / 2 * cos], -1)
    p4 = torch.stack([rs / 2, -rs / 2 * sin, z, -rs / 2 * cos], -1)
    return torch.stack([p1, p2, p3, p4], 1)


def sigma_quadrature_pb(
    subs, pdf, cuts: Cuts, pieces, eta: tuple[float, float], ptmin: float, n_cos: int = 8
) -> float:
    """sigma = int ds/S int dy sum_i f_a(x1) f_b(x2) / (32 pi s) int_acc dcos |M_i|^2 in pb,
    mu_F = mu_R = sqrt(s_hat) (MadGraph's -1 for an s-channel core), the accepted cos
    theta* interval from :func:`accepted_cos`; massless outgoing particles."""
    s_coll = SQRT_S**2
    alpha_s = AlphaS(pdf.alpha_s_mz, n_loops=2)
    shat, ws = _s_nodes(pieces)
    y, wy = _y_nodes(shat, s_coll, eta, ptmin)
    k = y.shape[1]
    s_rows, y_rows = shat.repeat_interleave(k), y.reshape(-1)
    w_rows = (ws[:, None] * wy).reshape(-1) / s_coll
    lo, hi = accepted_cos(cuts, s_rows, y_rows)
    xc, wc = (torch.tensor(v) for v in roots_legendre(n_cos))
    cos = 0.5 * (lo + hi)[:, None] + 0.5 * (hi - lo)[:, None] * xc
    mom = _cm_momenta(s_rows.repeat_interleave(n_cos), cos.reshape(-1))
    a_s = alpha_s(s_rows).repeat_interleave(n_cos)
    tau = s_rows / s_coll
    x1 = (torch.sqrt(tau) * torch.exp(y_rows)).clamp(max=1.0)  # 1 + eps on empty panels
    x2 = (torch.sqrt(tau) * torch.exp(-y_rows)).clamp(max=1.0)
    f1 = pdf.xfx_all(x1, s_rows) / x1[:, None]
    f2 = pdf.xfx_all(x2, s_rows) / x2[:, None]
    total = torch.zeros_like(s_rows)
    for proc in subs:
        a, b = ((0 if q == 21 else q) + 6 for q in proc.incoming)
        me = proc.matrix_element(mom, a_s).reshape(-1, n_cos)
        sigma_hat = 0.5 * (hi - lo) * (me * wc).sum(1) / (32 * math.pi * s_rows)
        total += f1[:, a] * f2[:, b] * sigma_hat
    return float((w_rows * total).sum()) * GEV2_TO_PB


# --- the mapping on its own -------------------------------------------------------------

MAPPING_CASES = [
    # e1, e2, s_min, s_max, resonance, pair cuts
    (6500.0, 6500.0, 60.0**2, 120.0**2, (91.188, 2.4414), MasslessPairCuts((2.5, 2.5), 10.0)),
    (7000.0, 4000.0, 0.0, None, (80.419, 2.0476), MasslessPairCuts((2.5, None), 20.0)),
    (6500.0, 6500.0, 100.0**2, None, None, MasslessPairCuts((None, 1.0), 0.0)),
    (6500.0, 2000.0, 0.0, 1000.0**2, None, MasslessPairCuts((None, None), 30.0)),
    (6500.0, 6500.0, 0.0, None, None, MasslessPairCuts((4.5, 0.5), 25.0)),
]


def _angles(point, e1: float, e2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos theta*, phi) of particle 1 in the pair rest frame, read off the lab momenta."""
    p = point.momenta[:, 2]
    eta_lab = torch.asinh(p[:, 3] / torch.hypot(p[:, 1], p[:, 2]))  # precise when forward
    y_pair = 0.5 * torch.log(point.x1 * e1 / (point.x2 * e2))
    return torch.tanh(eta_lab - y_pair), torch.remainder(torch.atan2(p[:, 2], p[:, 1]), 2 * math.pi)


@pytest.mark.parametrize("e1,e2,s_min,s_max,res,pair", MAPPING_CASES)
def test_inverse_and_jacobian_against_finite_differences(e1, e2, s_min, s_max, res, pair):
    """map_inverse(map(r)) = r where the Jacobian is non-zero, the same Jacobian both
    ways, and jac = |det d(x1, x2, cos theta*, phi) / dr| / (32 pi^2) by central finite
    differences of the momenta (step 1e-6: truncation and rounding ~1e-9 relative)."""
    ps = HadronicPhaseSpace(
        e1, e2, [0.0, 0.0], s_hat_min=s_min, s_hat_max=s_max, resonance=res, pair_cuts=pair
    )
    r = _rand(40_000, 4, 1)
    r[:, 0] *= 0.99  # away from tau = 1, where y has no room (as in test_phasespace.py)
    point = ps.map(r)
    assert bool(torch.isfinite(point.momenta).all()) and bool((point.jacobian >= 0).all())
    live = point.jacobian > 0
    assert float(live.double().mean()) > 0.98  # zeros only where tau's window is empty
    p = point.momenta
    assert torch.allclose(p[:, :2].sum(1), p[:, 2:].sum(1), rtol=0, atol=1e-9 * SQRT_S)
    m2 = p[:, 2:, 0] ** 2 - (p[:, 2:, 1:] ** 2).sum(-1)
    assert float((m2.abs() / p[:, 2:, 0] ** 2).max()) < 1e-10
    r_back, jac_back = ps.map_inverse(p)
    assert torch.allclose(r_back[live], r[live], rtol=0, atol=1e-9)
    assert torch.allclose(jac_back, point.jacobian, rtol=1e-9, atol=0)

    r0 = 0.01 + 0.98 * r[:300]  # finite differences stay inside the cube
    r0 = r0[ps.map(r0).jacobian > 0]
    h = 1e-6
    cols = []
    for k in range(4):
        step = torch.zeros(4, dtype=F64)
        step[k] = h
        plus, minus = ps.map(r0 + step), ps.map(r0 - step)
        (cp, fp), (cm, fm) = _angles(plus, e1, e2), _angles(minus, e1, e2)
        x_plus = torch.stack([plus.x1, plus.x2, cp, fp], -1)
        x_minus = torch.stack([minus.x1, minus.x2, cm, fm], -1)
        cols.append((x_plus - x_minus) / (2 * h))
    det = torch.linalg.det(torch.stack(cols, -1)).abs() / (32 * math.pi**2)
    assert torch.allclose(det, ps.map(r0).jacobian, rtol=1e-5, atol=0)


def _dy_cuts(**changes: float) -> Cuts:
    return Cuts(CutsCard(**{**DY_CUTS, **changes}), (-11, 11))


def test_no_mapped_point_fails_the_cuts_and_inverse_rejects_failing_points():
    """p p > e+ e- cuts: every mapped point passes the lepton cuts (up to rounding at the
    edges), while uniform points of the full phase space often fail; the cut-aware inverse
    gives 0 for points outside and reproduces the inside ones."""
    cuts = _dy_cuts(mmll=60.0, mmllmax=120.0)
    kw = {"s_hat_min": 60.0**2, "s_hat_max": 120.0**2, "resonance": (91.188, 2.4414)}
    mapped = HadronicPhaseSpace(
        6500.0, 6500.0, [0.0, 0.0], **kw, pair_cuts=MasslessPairCuts((2.5, 2.5), 10.0)
    )
    full = HadronicPhaseSpace(6500.0, 6500.0, [0.0, 0.0], **kw)
    r = _rand(40_000, 4, 2)
    point = mapped.map(r)
    live = point.jacobian > 0
    assert bool(live.all())
    out = point.momenta[:, 2:]
    fail = ~cuts(out)
    eta, p_t = pseudorapidity(out).abs().amax(1), pt(out[:, 0])
    assert int(fail.sum()) <= 4  # rounding at the edges only
    assert float(eta.max()) < 2.5 + 1e-9 and float(p_t.min()) > 10.0 - 1e-9

    plain = full.map(r)
    passed = cuts(plain.momenta[:, 2:])
    assert 1 - float(passed.double().mean()) > 0.3  # uniform in y: more than VEGAS's ~19 %
    r_in, jac_in = mapped.map_inverse(plain.momenta)
    clear = passed & (pseudorapidity(plain.momenta[:, 2:]).abs().amax(1) < 2.5 - 1e-6)
    assert bool((jac_in[clear] > 0).all())
    outside = pseudorapidity(plain.momenta[:, 2:]).abs().amax(1) > 2.5 + 1e-6
    assert int(outside.sum()) > 2_000 and bool((jac_in[outside] == 0).all())
    again = mapped.map(r_in[clear])
    assert torch.allclose(again.momenta, plain.momenta[clear], rtol=1e-9, atol=1e-7)


@pytest.mark.parametrize(
    "eta,ptmin,outgoing",
    [((2.5, 2.5), 10.0, (-11, 11)), ((2.5, None), 20.0, (-11, 12)), ((None, 1.0), 0.0, (12, 11))],
)
def test_accepted_volume_against_quadrature(eta, ptmin, outgoing):
    """int dx1 dx2 Phi_2 over the accepted region, 100 < sqrt(s_hat) < 400 GeV: the mean
    Jacobian of the cut-aware mapping and the mean of jacobian x cuts of the full mapping
    agree with a quadrature whose cos theta* limits come from the cut function."""
    card = CutsCard(ptl=ptmin, etal=eta[0] if eta[0] is not None else eta[1], mmll=0.0, drll=0.0)
    cuts = Cuts(card, outgoing)
    s_lo, s_hi = 100.0**2, 400.0**2
    shat, ws = _s_nodes([(s_lo, s_hi, None)], n=48)
    y, wy = _y_nodes(shat, SQRT_S**2, tuple(math.inf if e is None else e for e in eta), ptmin)
    lo, hi = accepted_cos(cuts, shat.repeat_interleave(y.shape[1]), y.reshape(-1))
    width = (hi - lo).reshape(y.shape)
    # dx1 dx2 = ds dy / S and Phi_2 = width / (16 pi) at fixed (s, y)
    exact = float((ws[:, None] * wy * width).sum()) / SQRT_S**2 / (16 * math.pi)

    kw = {"s_hat_min": s_lo, "s_hat_max": s_hi}
    mapped = HadronicPhaseSpace(
        6500.0, 6500.0, [0.0, 0.0], **kw, pair_cuts=MasslessPairCuts(eta, ptmin)
    )
    full = HadronicPhaseSpace(6500.0, 6500.0, [0.0, 0.0], **kw)
    r = _rand(60_000, 4, 3)
    jac_mapped = mapped.map(r).jacobian
    plain = full.map(r)
    jac_full = plain.jacobian * cuts(plain.momenta[:, 2:])
    for what, jac in (("cut-aware", jac_mapped), ("full x cuts", jac_full)):
        mean, err = _mc(jac)
        assert abs(mean - exact) < 3 * err, (what, mean, err, exact)
    # the same integral with a smaller spread: no zeros, no corner spikes
    assert float(jac_mapped.std()) < 0.9 * float(jac_full.std())


def test_pair_cuts_reject_bad_input():
    with pytest.raises(ValueError, match="eta_max must be two limits > 0"):
        MasslessPairCuts((0.0, 2.5))
    with pytest.raises(ValueError, match="pt_min must be finite and >= 0"):
        MasslessPairCuts((2.5, 2.5), -1.0)
    with pytest.raises(ValueError, match="two massless outgoing particles only"):
        HadronicPhaseSpace(6500.0, 6500.0, [173.0, 173.0], pair_cuts=MasslessPairCuts())
    with pytest.raises(ValueError, match="two massless outgoing particles only"):
        HadronicPhaseSpace(6500.0, 6500.0, [0.0] * 3, pair_cuts=MasslessPairCuts())


def test_empty_rapidity_window_gives_zero_and_finite_momenta():
    """A 6500 x 10 GeV collider boosts pairs by ln(650)/2 = 3.24: both leptons within
    |eta| < 0.5 needs |Y| < 0.5, i.e. y = ln(x1/x2)/2 < -2.74, which exists only for
    -ln(tau)/2 > 2.74. Elsewhere the Jacobian is 0 and the momenta finite."""
    ps = HadronicPhaseSpace(
        6500.0, 10.0, [0.0, 0.0], s_hat_min=1.0, pair_cuts=MasslessPairCuts((0.5, 0.5), 0.5)
    )
    point = ps.map(_rand(20_000, 4, 5))
    assert bool(torch.isfinite(point.momenta).all()) and bool((point.jacobian >= 0).all())
    room = -0.5 * torch.log(point.x1 * point.x2) - (0.5 * math.log(650.0) - 0.5)
    assert bool((point.jacobian[room < -1e-9] == 0).all())
    assert bool((point.jacobian[room > 1e-9] > 0).all())
    assert 0.1 < float((room > 0).double().mean()) < 0.9
    boxed = HadronicPhaseSpace(
        6500.0, 10.0, [0.0, 0.0], s_hat_min=50.0**2, pair_cuts=MasslessPairCuts((0.5, 0.5), 0.5)
    )
    point = boxed.map(_rand(1000, 4, 6))  # -ln(tau)/2 <= 2.32 everywhere: nothing passes
    assert bool((point.jacobian == 0).all()) and bool(torch.isfinite(point.momenta).all())


# --- what the run sets up ----------------------------------------------------------------


def _prepare(tmp_path, **card):
    card.setdefault("output", {"path": str(tmp_path / "out"), "formats": []})
    return prepare(parse_card(card))


def test_setup_passes_lepton_and_jet_cuts(tmp_path):
    """Charged leptons get ptl/etal, neutrinos nothing, every channel the same cuts; massive
    final states none; jets ptj/etaj; the loosest over subprocesses that share a space."""
    wide = {**DY_CUTS, "mmll": 50.0, "mmllmax": 3000.0}
    dy = _prepare(tmp_path, process="p p > e+ e-", cuts=wide, model={"mzp": 1500.0})
    spaces = dy.groups[0].integrand.phase_spaces
    assert len(spaces) == 3  # photon, Z, Z'
    assert all(ps.pair_cuts == MasslessPairCuts((2.5, 2.5), 10.0) for ps in spaces)
    w = _prepare(tmp_path, process="p p > e+ ve", cuts={"ptl": 15.0, "etal": 2.0})
    assert w.groups[0].integrand.phase_space.pair_cuts == MasslessPairCuts((2.0, None), 15.0)
    tt = _prepare(tmp_path, process="p p > t t~")
    assert tt.groups[0].integrand.phase_space.pair_cuts is None
    taus = _prepare(tmp_path, process="p p > ta+ ta-")  # taus are not cut
    assert taus.groups[0].integrand.phase_space.pair_cuts is None

    card = CutsCard(ptj=20.0, etaj=4.0, ptl=10.0, etal=2.5)
    helper = evgen.setup._massless_pair_cuts
    assert helper([Cuts(card, (21, 2))], (0.0, 0.0)) == MasslessPairCuts((4.0, 4.0), 20.0)
    assert helper([Cuts(card, (11, 21))], (0.0, 0.0)) == MasslessPairCuts((2.5, 4.0), 20.0)
    both = [Cuts(card, (21, 21)), Cuts(card, (11, -11))]
    assert helper(both, (0.0, 0.0)) == MasslessPairCuts((4.0, 4.0), 10.0)
    assert helper([Cuts(card, (12, -12))], (0.0, 0.0)) is None
    assert helper([Cuts(card, (11, -11))], (0.0, 0.0, 0.0)) is None


def test_setup_rejects_pt_cut_above_the_mass_window(tmp_path):
    with pytest.raises(CardError, match=r"cuts: pT > 40 GeV .* no event is possible"):
        _prepare(tmp_path, process="p p > e+ e-", cuts={**DY_CUTS, "ptl": 40.0, "mmllmax": 70.0})


def _prepare_plain(tmp_path, monkeypatch, **card):
    """The same set-up with the cut-aware mapping switched off."""
    with monkeypatch.context() as m:
        m.setattr(evgen.setup, "_massless_pair_cuts", lambda cuts, masses: None)
        return _prepare(tmp_path, **card)


def test_zero_weights_drop_on_the_drell_yan_card(tmp_path, monkeypatch):
    """Uniform points in every channel of the cards' Drell-Yan: many zero weights without
    the mapping (uniform in y, so more than the ~19 % of an adapted VEGAS grid), none with
    it, and a smaller weight spread."""
    mapped = _prepare(tmp_path, process="p p > e+ e-", cuts=DY_CUTS).groups[0].integrand
    plain = _prepare_plain(tmp_path, monkeypatch, process="p p > e+ e-", cuts=DY_CUTS)
    plain = plain.groups[0].integrand
    assert plain.phase_space.pair_cuts is None and mapped.n_channels == plain.n_channels == 2
    r = _rand(20_000, 4, 4)
    for channel in range(mapped.n_channels):
        w_map, w_plain = mapped(r, channel), plain(r, channel)
        zero_map = float((w_map == 0).double().mean())
        zero_plain = float((w_plain == 0).double().mean())
        assert zero_map < 1e-4 and zero_plain > 0.15, (channel, zero_map, zero_plain)
        assert float(w_map.std()) < float(w_plain.std())


# --- cross sections: with against without the mapping, and against quadrature ----------


@pytest.fixture(scope="module")
def nnpdf():
    return load_pdf("NNPDF23_lo_as_0130_qed")


def _run_both(tmp_path, monkeypatch, **card):
    card.setdefault("integrator", {"iterations": 5, "points_per_iteration": 20000})
    card.setdefault("run", {"nevents": 1000, "seed": 7})
    mapped = execute(_prepare(tmp_path / "mapped", **card))
    plain = execute(_prepare_plain(tmp_path / "plain", monkeypatch, **card))
    return mapped, plain


def _assert_agree(a, b, reference: float):
    for res in (a, b):
        pull = (res.cross_section_pb - reference) / res.error_pb
        assert abs(pull) < 3, (res.cross_section_pb, res.error_pb, reference)
    diff = a.cross_section_pb - b.cross_section_pb
    assert abs(diff) < 3 * math.hypot(a.error_pb, b.error_pb), (a, b)


def test_drell_yan_with_lepton_cuts(tmp_path, monkeypatch, nnpdf):
    """p p > e+ e-, the cards' cuts (ptl 10, |etal| < 2.5, 60 < m_ee < 120 GeV)."""
    mapped, plain = _run_both(tmp_path, monkeypatch, process="p p > e+ e-", cuts=DY_CUTS)
    params = SMParameters()
    subs = processes.expand("p p > e+ e-", params)
    pieces = [(60.0**2, 120.0**2, (params.mz, params.wz))]
    reference = sigma_quadrature_pb(subs, nnpdf, _dy_cuts(), pieces, (2.5, 2.5), 10.0)
    _assert_agree(mapped, plain, reference)
    # same budget, a smaller error and a higher unweighting efficiency
    assert mapped.error_pb < 0.5 * plain.error_pb
    assert mapped.unweighting_efficiency > plain.unweighting_efficiency


def test_w_with_one_constrained_lepton(tmp_path, monkeypatch, nnpdf):
    """p p > e+ ve: only the positron is cut (asymmetric eta* interval), pT > 10 GeV."""
    cuts = {"ptl": 10.0, "etal": 2.5}
    mapped, plain = _run_both(tmp_path, monkeypatch, process="p p > e+ ve", cuts=cuts)
    params = SMParameters()
    subs = processes.expand("p p > e+ ve", params)
    m, g = params.mw, params.ww
    pieces = [(20.0**2, (m + 30 * g) ** 2, (m, g)), ((m + 30 * g) ** 2, SQRT_S**2, None)]
    lepton_cuts = Cuts(CutsCard(**cuts), subs[0].outgoing)
    reference = sigma_quadrature_pb(subs, nnpdf, lepton_cuts, pieces, (2.5, math.inf), 10.0)
    _assert_agree(mapped, plain, reference)
    assert mapped.error_pb < plain.error_pb


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    ps = HadronicPhaseSpace(
        7000.0,
        4000.0,
        [0.0, 0.0],
        resonance=(80.419, 2.0476),
        pair_cuts=MasslessPairCuts((2.5, None), 20.0),
    )
    r = _rand(10_000, 4, 7)
    cpu, gpu = ps.map(r), ps.map(r.cuda())
    assert gpu.momenta.device.type == "cuda" and gpu.jacobian.device.type == "cuda"
    assert torch.allclose(gpu.momenta.cpu(), cpu.momenta, rtol=1e-10, atol=1e-9)
    assert torch.allclose(gpu.jacobian.cpu(), cpu.jacobian, rtol=1e-10)
    r_back, jac_back = ps.map_inverse(gpu.momenta)
    assert torch.allclose(r_back.cpu(), ps.map_inverse(cpu.momenta)[0], rtol=0, atol=1e-9)
    assert torch.allclose(jac_back.cpu(), cpu.jacobian, rtol=1e-9)
