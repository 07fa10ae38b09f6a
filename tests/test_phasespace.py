"""Phase-space mappings checked against analytic volumes and exact kinematics.

Monte Carlo volumes: the mean of the Jacobian over uniform points estimates the volume;
its error is std(jac) / sqrt(N), and estimates must agree with the exact value within
3 such errors. Deterministic properties (inverse maps, conservation, on-shell masses,
constant RAMBO weights) are compared at rounding-error tolerances.

Conventions: dPhi_n = (2 pi)^4 delta^4(P - sum p) prod d^3p / ((2 pi)^3 2E); massless
Phi_2 = 1 / (8 pi); massless
Phi_n = (2 pi)^(4-3n) (pi/2)^(n-1) s^(n-2) / ((n-1)! (n-2)!);
Dalitz: dPhi_3 = dm12^2 dm23^2 / (128 pi^3 s).
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate

from evgen.phasespace import (
    BreitWignerMapping,
    FlatMapping,
    HadronicPhaseSpace,
    LeptonicPhaseSpace,
    LuminosityMapping,
    MixtureMapping,
    PhaseSpacePoint,
    PowerLawMapping,
    Rambo,
    TwoBodyDecay,
)

F64 = torch.float64


def _rand(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _assert_mc(values: torch.Tensor, exact: float, what: str) -> None:
    """mean(values) agrees with exact within 3 standard errors of the mean."""
    mean = float(values.mean())
    err = float(values.std()) / math.sqrt(values.numel())
    assert err > 0, f"{what}: zero spread, use an exact comparison"
    assert abs(mean - exact) < 3 * err, f"{what}: {mean} +- {err} vs exact {exact}"


def _massless_volume(n: int, s: float) -> float:
    """Independent copy of the massless n-body volume (KSE 1986)."""
    return (
        (2 * math.pi) ** (4 - 3 * n)
        * (math.pi / 2) ** (n - 1)
        * s ** (n - 2)
        / (math.factorial(n - 1) * math.factorial(n - 2))
    )


def _beta(s: float, m1: float, m2: float) -> float:
    lam = (s - (m1 + m2) ** 2) * (s - (m1 - m2) ** 2)
    return math.sqrt(max(lam, 0.0)) / s


def _dalitz(s: float, m1: float, m2: float, m3: float, power: int = 0) -> float:
    """int (m12^2)^power dPhi_3 by quadrature over the Dalitz plot."""

    def width(m12s: float) -> float:  # m23^2 range at fixed m12^2: 4 |p2*| |p3*|
        m12 = math.sqrt(m12s)
        e2 = (m12s - m1**2 + m2**2) / (2 * m12)
        e3 = (s - m12s - m3**2) / (2 * m12)
        p2 = math.sqrt(max(e2**2 - m2**2, 0.0))
        p3 = math.sqrt(max(e3**2 - m3**2, 0.0))
        return m12s**power * 4 * p2 * p3

    lo, hi = (m1 + m2) ** 2, (math.sqrt(s) - m3) ** 2
    val, _ = integrate.quad(width, lo, hi, epsabs=0, epsrel=1e-11, limit=200)
    return val / (128 * math.pi**3 * s)


def _check_momenta(p: torch.Tensor, masses: list[float], beams: bool = True) -> None:
    """Momentum conservation (1e-10 relative) and on-shell outgoing masses (1e-8).

    p: (n, 2 + n_out, 4), the two incoming first (massless beams if ``beams``; else
    slot 0 holds the decaying parent and slot 1 zeros).
    """
    scale = p[:, :2, 0].sum(1)
    diff = p[:, :2].sum(1) - p[:, 2:].sum(1)
    assert bool(torch.isfinite(p).all())
    assert float((diff.abs().amax(1) / scale).max()) < 1e-10
    m2 = p[..., 0] ** 2 - (p[..., 1:] ** 2).sum(-1)
    if beams:
        assert float((m2[:, :2].abs() / p[:, :2, 0] ** 2).max()) < 1e-12
    for i, m in enumerate(masses):
        e2 = p[:, 2 + i, 0] ** 2
        if m > 0:
            rel = (torch.sqrt(m2[:, 2 + i].clamp_min(0)) - m).abs() / m
            assert float(rel.max()) < 1e-8, f"particle {i}: mass off by {float(rel.max())}"
        else:
            assert float((m2[:, 2 + i].abs() / e2).max()) < 1e-8, f"particle {i} not massless"


# --- one-dimensional invariant mappings -------------------------------------------


def _density_norm(fn, lo: float, hi: float, peak: float | None = None) -> float:
    pts = [peak] if peak is not None and lo < peak < hi else None
    val, _ = integrate.quad(fn, lo, hi, points=pts, epsabs=0, epsrel=1e-12, limit=400)
    return val


BW_CASES = [
    (91.188, 2.4414, 60.0**2, 120.0**2),  # window around the Z peak
    (91.188, 2.4414, 100.0**2, 400.0**2),  # above the peak only
    (173.0, 1.49, 0.0, 1000.0**2),  # from zero, wide
    (125.0, 0.00407, 120.0**2, 130.0**2),  # very narrow (Higgs)
]


@pytest.mark.parametrize("mass,width,s_min,s_max", BW_CASES)
def test_breit_wigner_volume_inverse_and_density(mass, width, s_min, s_max):
    bw = BreitWignerMapping(mass, width, s_min, s_max)
    r = _rand(200_000, 1, 1)[:, 0]
    s, jac = bw.map(r)
    assert bool((s >= s_min).all() and (s <= s_max).all())
    _assert_mc(jac, s_max - s_min, "integral of ds")
    r_back, jac_back = bw.map_inverse(s)
    # Inverse: float64 rounding of s near the peak limits r to ~ eps * M / Gamma.
    tol = 1e-12 if width / mass > 1e-3 else 1e-10
    assert torch.allclose(r_back, r, rtol=0, atol=tol)
    assert torch.allclose(jac_back, jac, rtol=1e-12, atol=0)
    m2, mg = mass**2, mass * width
    norm = _density_norm(lambda x: 1 / ((x - m2) ** 2 + mg**2), s_min, s_max, peak=m2)
    expected_jac = norm * ((s - m2) ** 2 + mg**2)  # 1 / normalised density
    assert torch.allclose(jac, expected_jac, rtol=1e-9, atol=0)


POWER_CASES = [
    (10.0, 1e4, 1.0),
    (10.0, 1e4, 0.0),
    (10.0, 1e4, 0.5),
    (10.0, 1e4, 2.0),
    (10.0, 1e4, 1.0 - 1e-9),  # the nu -> 1 limit without loss of precision
    (0.0, 1e4, 0.5),  # from s = 0
    (1e-6, 1.0, 1.3),  # tau-like range
]


@pytest.mark.parametrize("s_min,s_max,nu", POWER_CASES)
def test_power_law_volume_inverse_and_density(s_min, s_max, nu):
    pl = PowerLawMapping(s_min, s_max, nu)
    r = _rand(200_000, 1, 2)[:, 0]
    s, jac = pl.map(r)
    assert bool((s >= s_min).all() and (s <= s_max).all())
    _assert_mc(jac, s_max - s_min, "integral of ds")
    r_back, jac_back = pl.map_inverse(s)
    assert torch.allclose(r_back, r, rtol=0, atol=1e-12)
    assert torch.allclose(jac_back, jac, rtol=1e-12, atol=0)
    norm = _density_norm(lambda x: x**-nu if x > 0 else 0.0, s_min, s_max)
    keep = s > 0
    assert torch.allclose(jac[keep], norm * s[keep] ** nu, rtol=1e-9, atol=0)


def test_power_law_rejects_non_integrable_density():
    with pytest.raises(ValueError, match="not integrable"):
        PowerLawMapping(0.0, 1.0, 1.0)


def test_flat_mapping():
    flat = FlatMapping(4.0, 10.0)
    r = _rand(1000, 1, 3)[:, 0]
    s, jac = flat.map(r)
    assert torch.allclose(s, 4.0 + 6.0 * r, rtol=1e-15)
    assert bool((jac == 6.0).all())
    assert torch.allclose(flat.map_inverse(s)[0], r, atol=1e-15)


def test_mixture_of_power_law_and_breit_wigner():
    s_min, s_max = 50.0**2, 500.0**2
    pl = PowerLawMapping(s_min, s_max, 1.0)
    bw = BreitWignerMapping(91.188, 2.4414, s_min, s_max)
    mix = MixtureMapping([pl, bw], [0.3, 0.7])
    r = _rand(200_000, 1, 4)[:, 0]
    s, jac = mix.map(r)
    _assert_mc(jac, s_max - s_min, "integral of ds")
    assert torch.allclose(mix.map_inverse(s)[0], r, rtol=0, atol=1e-12)
    dens = 0.3 / pl.jacobian(s) + 0.7 / bw.jacobian(s)
    assert torch.allclose(jac * dens, torch.ones_like(s), rtol=1e-12)


# --- two-body decay ----------------------------------------------------------------


def test_two_body_massless_volume_is_one_over_eight_pi():
    n = 10_000
    parent = torch.tensor([[500.0, 0.0, 0.0, 0.0]], dtype=F64).expand(n, 4)
    daughters, jac = TwoBodyDecay().map(_rand(n, 2, 5), parent)
    assert torch.allclose(jac, torch.full_like(jac, 1 / (8 * math.pi)), rtol=1e-14)
    assert torch.allclose(daughters.sum(1), parent, rtol=0, atol=1e-12)


@pytest.mark.parametrize("m1,m2", [(173.0, 173.0), (80.4, 4.7), (0.0, 91.188)])
def test_two_body_massive_volume_boost_and_inverse(m1, m2):
    n = 20_000
    # Parents of mass 400 GeV moving in random directions with |p| up to 3 TeV.
    u = _rand(n, 3, 6)
    pabs = 3000.0 * u[:, 0]
    cos_t, phi = 2 * u[:, 1] - 1, 2 * math.pi * u[:, 2]
    sin_t = torch.sqrt(1 - cos_t**2)
    vec = pabs[:, None] * torch.stack([sin_t * phi.cos(), sin_t * phi.sin(), cos_t], -1)
    parent = torch.cat([torch.sqrt(400.0**2 + pabs**2)[:, None], vec], -1)
    dec = TwoBodyDecay(m1, m2)
    r = _rand(n, 2, 7)
    daughters, jac = dec.map(r, parent)
    s = 400.0**2
    assert torch.allclose(jac, torch.full_like(jac, _beta(s, m1, m2) / (8 * math.pi)), rtol=1e-12)
    incoming = torch.zeros(n, 2, 4, dtype=F64)
    incoming[:, 0] = parent
    _check_momenta(torch.cat([incoming, daughters], 1), [m1, m2], beams=False)
    r_back, jac_back = dec.map_inverse(daughters)
    assert torch.allclose(r_back, r, rtol=0, atol=1e-12)
    assert torch.allclose(jac_back, jac, rtol=1e-10)


def test_two_body_below_threshold_gives_zero_and_finite_momenta():
    parent = torch.tensor([[100.0, 0, 0, 0], [50.0, 0, 0, 80.0], [0.0, 0, 0, 0]], dtype=F64)
    daughters, jac = TwoBodyDecay(60.0, 60.0).map(_rand(3, 2, 8), parent)
    assert bool((jac == 0).all())
    assert bool(torch.isfinite(daughters).all())


# --- RAMBO -------------------------------------------------------------------------


@pytest.mark.parametrize("n_out", [2, 3, 4, 5])
def test_rambo_massless_weight_is_the_analytic_volume(n_out):
    rambo = Rambo([0.0] * n_out)
    e_cm = 700.0
    r = _rand(20_000, rambo.n_dim, 10 + n_out)
    p, jac = rambo.map(r, e_cm)
    expected = _massless_volume(n_out, e_cm**2)
    assert torch.allclose(jac, torch.full_like(jac, expected), rtol=1e-12, atol=0)
    total = p.sum(1)
    assert torch.allclose(
        total, torch.tensor([e_cm, 0, 0, 0], dtype=F64).expand_as(total), rtol=0, atol=1e-10 * e_cm
    )


def _classic_rambo(n_ev: int, n_out: int, e_cm: float, seed: int) -> torch.Tensor:
    """The original RAMBO (4n random numbers), written out here as an independent check."""
    r = torch.rand(n_ev, n_out, 4, generator=torch.Generator().manual_seed(seed), dtype=F64)
    c, ph = 2 * r[..., 0] - 1, 2 * math.pi * r[..., 1]
    q0 = -torch.log(r[..., 2] * r[..., 3])
    s = torch.sqrt(1 - c**2)
    q = q0[..., None] * torch.stack([torch.ones_like(c), s * ph.cos(), s * ph.sin(), c], -1)
    big_q = q.sum(1)
    mass = torch.sqrt(big_q[:, 0] ** 2 - (big_q[:, 1:] ** 2).sum(-1))
    b = -big_q[:, 1:] / mass[:, None]
    x = e_cm / mass
    gamma = big_q[:, 0] / mass
    a = 1 / (1 + gamma)
    bq = (b[:, None, :] * q[..., 1:]).sum(-1)
    e = x[:, None] * (gamma[:, None] * q[..., 0] + bq)
    vec = x[:, None, None] * (
        q[..., 1:] + b[:, None, :] * q[..., :1] + (a[:, None] * bq)[..., None] * b[:, None, :]
    )
    return torch.cat([e[..., None], vec], -1)


@pytest.mark.parametrize("n_out", [3, 4, 5])
def test_rambo_massless_distribution_matches_classic_rambo(n_out):
    """Same flat distribution as the original algorithm: compare moments of observables
    that single out the first and last particles (treated differently by the chain)."""
    e_cm, n = 1000.0, 100_000
    p_new, _ = Rambo([0.0] * n_out).map(_rand(n, 3 * n_out - 4, 20 + n_out), e_cm)
    p_old = _classic_rambo(n, n_out, e_cm, 30 + n_out)

    def observables(p: torch.Tensor) -> list[torch.Tensor]:
        pair = p[:, 0] + p[:, -1]
        m2 = (pair[:, 0] ** 2 - (pair[:, 1:] ** 2).sum(-1)) / e_cm**2
        return [(p[:, 0, 0] / e_cm) ** 2, (p[:, -1, 0] / e_cm) ** 2, m2**2, p[:, -1, 3] / e_cm]

    for a, b in zip(observables(p_new), observables(p_old), strict=True):
        err = math.sqrt(float(a.var()) / n + float(b.var()) / n)
        assert abs(float(a.mean()) - float(b.mean())) < 3 * err


@pytest.mark.parametrize(
    "masses,e_cm", [([173.0, 173.0, 10.0], 600.0), ([80.4, 0.0, 4.7], 200.0), ([0.0] * 3, 300.0)]
)
def test_rambo_three_body_volume_against_dalitz(masses, e_cm):
    rambo = Rambo(masses)
    p, jac = rambo.map(_rand(400_000, rambo.n_dim, 40), e_cm)
    s = e_cm**2
    pair = p[:, 0] + p[:, 1]
    m12s = pair[:, 0] ** 2 - (pair[:, 1:] ** 2).sum(-1)
    if any(m > 0 for m in masses):
        _assert_mc(jac, _dalitz(s, *masses), "Phi_3")
    else:
        assert torch.allclose(jac, torch.full_like(jac, _dalitz(s, *masses)), rtol=1e-9)
    # The distribution as well as the volume: int m12^2 dPhi_3.
    _assert_mc(jac * m12s, _dalitz(s, *masses, power=1), "int m12^2 dPhi_3")


@pytest.mark.parametrize("m1,m2", [(173.0, 173.0), (0.0, 91.188)])
def test_massive_rambo_two_body_weight_is_beta_over_eight_pi(m1, m2):
    """The KSE massive weight reduces to beta / (8 pi) for two bodies."""
    e_cm = 500.0
    _, jac = Rambo([m1, m2]).map(_rand(1000, 2, 50), e_cm)
    expected = _beta(e_cm**2, m1, m2) / (8 * math.pi)
    assert torch.allclose(jac, torch.full_like(jac, expected), rtol=1e-12)


@pytest.mark.parametrize("masses", [[0.0] * 3, [0.0] * 5, [173.0, 173.0, 0.0, 4.7]])
def test_rambo_inverse_and_kinematics(masses):
    rambo = Rambo(masses)
    e_cm = 900.0
    r = _rand(20_000, rambo.n_dim, 60)
    p, jac = rambo.map(r, e_cm)
    incoming = torch.zeros(len(r), 2, 4, dtype=F64)
    incoming[:, 0, 0] = e_cm
    _check_momenta(torch.cat([incoming, p], 1), masses, beams=False)
    r_back, jac_back = rambo.map_inverse(p)
    # The intermediate masses are rebuilt from sums of momenta: ~1e-11 rounding.
    assert torch.allclose(r_back, r, rtol=0, atol=1e-8)
    assert torch.allclose(jac_back, jac, rtol=1e-8)


def test_rambo_below_threshold_gives_zero_and_finite_momenta():
    rambo = Rambo([100.0, 100.0, 100.0])
    e_cm = torch.tensor([250.0, 299.0, 0.0, 400.0], dtype=F64)
    p, jac = rambo.map(_rand(4, rambo.n_dim, 61), e_cm)
    assert bool((jac[:3] == 0).all()) and float(jac[3]) > 0
    assert bool(torch.isfinite(p).all())


# --- parton luminosity -------------------------------------------------------------


def _lum_volume(tau_min: float, tau_max: float) -> float:
    """int dx1 dx2 over tau_min < x1 x2 < tau_max = int dtau (-ln tau)."""

    def prim(t: float) -> float:
        return t - t * math.log(t) if t > 0 else 0.0

    return prim(tau_max) - prim(tau_min)


LUM_CASES = [
    (6500.0, 6500.0, 10.0**2, None, None),
    (6500.0, 6500.0, 0.0, None, None),  # no lower cut: tau^-1/2 density
    (6500.0, 6500.0, 60.0**2, 120.0**2, (91.188, 2.4414)),
    (7000.0, 4000.0, 20.0**2, None, (91.188, 2.4414)),  # asymmetric, wide window
    (6500.0, 6500.0, 200.0**2, 3000.0**2, (91.188, 2.4414)),  # resonance outside: power law
    (6500.0, 6500.0, 120.0**2, 130.0**2, (125.0, 0.00407)),  # narrow Higgs
]


@pytest.mark.parametrize("e1,e2,s_min,s_max,res", LUM_CASES)
def test_luminosity_volume_and_inverse(e1, e2, s_min, s_max, res):
    lum = LuminosityMapping(e1, e2, s_min, s_max, res)
    s = 4 * e1 * e2
    tau_min, tau_max = s_min / s, (s if s_max is None else s_max) / s
    r = _rand(200_000, 2, 70)
    x, jac = lum.map(r)
    tau = x[:, 0] * x[:, 1]
    assert bool((x > 0).all() and (x <= 1).all())
    assert bool((tau >= tau_min * (1 - 1e-12)).all() and (tau <= tau_max * (1 + 1e-12)).all())
    _assert_mc(jac, _lum_volume(tau_min, tau_max), "int dx1 dx2")
    # Inverse, away from tau -> 1 where y is squeezed to nothing (r1 ill-conditioned)
    # and with the narrow-resonance rounding limit eps * M / Gamma.
    keep = r[:, 0] < 0.99
    r_back, jac_back = lum.map_inverse(x)
    tol = 1e-12 if res is None or res[1] / res[0] > 1e-3 else 1e-9
    assert torch.allclose(r_back[keep], r[keep], rtol=0, atol=tol)
    assert torch.allclose(jac_back[keep], jac[keep], rtol=1e-10)


def test_luminosity_uses_breit_wigner_only_for_resonance_in_window():
    assert LuminosityMapping(6500, 6500, 60.0**2, 120.0**2, (91.188, 2.44)).resonance is not None
    assert LuminosityMapping(6500, 6500, 200.0**2, None, (91.188, 2.44)).resonance is None


# --- collider phase space ----------------------------------------------------------


HADRONIC_CASES = [
    (6500.0, 6500.0, [0.0, 0.0], 60.0**2, 120.0**2, (91.188, 2.4414)),
    (6500.0, 6500.0, [173.0, 173.0], 0.0, None, None),
    (7000.0, 3500.0, [173.0, 173.0], 0.0, None, (400.0, 40.0)),
    (6500.0, 2000.0, [0.0, 0.0, 0.0], 50.0**2, None, None),
    (6500.0, 6500.0, [173.0, 173.0, 0.0, 4.7], 0.0, None, None),
]


@pytest.mark.parametrize("e1,e2,masses,s_min,s_max,res", HADRONIC_CASES)
def test_hadronic_momenta_conserved_and_on_shell(e1, e2, masses, s_min, s_max, res):
    ps = HadronicPhaseSpace(e1, e2, masses, s_hat_min=s_min, s_hat_max=s_max, resonance=res)
    assert ps.n_dim == 2 + 3 * len(masses) - 4
    point = ps.map(_rand(20_000, ps.n_dim, 80))
    assert isinstance(point, PhaseSpacePoint)
    p = point.momenta
    assert p.shape == (20_000, 2 + len(masses), 4) and p.dtype == F64
    _check_momenta(p, masses)
    # incoming partons: x1 P1 along +z and x2 P2 along -z
    assert torch.allclose(p[:, 0, 0], point.x1 * e1, rtol=1e-15)
    assert torch.allclose(p[:, 0, 3], point.x1 * e1, rtol=1e-15)
    assert torch.allclose(p[:, 1, 3], -point.x2 * e2, rtol=1e-15)
    assert bool((point.jacobian > 0).all())
    s_hat = point.x1 * point.x2 * 4 * e1 * e2
    assert bool((s_hat >= max(s_min, sum(masses) ** 2) * (1 - 1e-12)).all())


def test_hadronic_two_body_volume_against_quadrature():
    """int dx1 dx2 Phi_2(x1 x2 S) for a massive pair, asymmetric beams."""
    e1, e2, m = 4000.0, 1000.0, 173.0
    s = 4 * e1 * e2
    ps = HadronicPhaseSpace(e1, e2, [m, m])
    jac = ps.map(_rand(400_000, ps.n_dim, 81)).jacobian
    tau_min = 4 * m * m / s

    def integrand(tau: float) -> float:
        return -math.log(tau) * _beta(tau * s, m, m) / (8 * math.pi)

    exact, _ = integrate.quad(integrand, tau_min, 1.0, epsabs=0, epsrel=1e-11, limit=200)
    _assert_mc(jac, exact, "int dx1 dx2 Phi_2")


def test_hadronic_three_body_massless_volume():
    """int dx1 dx2 Phi_3(tau S) = c S int tau (-ln tau) dtau with Phi_3 = c s."""
    e1, e2, s_min = 6500.0, 6500.0, 500.0**2
    s = 4 * e1 * e2
    ps = HadronicPhaseSpace(e1, e2, [0.0, 0.0, 0.0], s_hat_min=s_min)
    jac = ps.map(_rand(400_000, ps.n_dim, 82)).jacobian
    t0 = s_min / s
    # int_{t0}^1 tau (-ln tau) dtau = 1/4 - t0^2/4 + t0^2 ln(t0) / 2
    exact = _massless_volume(3, 1.0) * s * (0.25 - t0**2 / 4 + t0**2 * math.log(t0) / 2)
    _assert_mc(jac, exact, "int dx1 dx2 Phi_3")


@pytest.mark.parametrize(
    "e1,e2,masses,s_min,s_max,res",
    [
        (6500.0, 6500.0, [0.0, 0.0], 60.0**2, 120.0**2, (91.188, 2.4414)),
        (7000.0, 3500.0, [173.0, 173.0], 0.0, None, None),
        (6500.0, 2000.0, [80.4, 0.0], 0.0, None, (80.4, 2.05)),
    ],
)
def test_hadronic_map_inverse_round_trip(e1, e2, masses, s_min, s_max, res):
    ps = HadronicPhaseSpace(e1, e2, masses, s_hat_min=s_min, s_hat_max=s_max, resonance=res)
    r = _rand(50_000, ps.n_dim, 83)
    r[:, 0] *= 0.99  # away from tau = 1, where y has no room (see the luminosity test)
    point = ps.map(r)
    r_back, jac_back = ps.map_inverse(point.momenta)
    assert torch.allclose(r_back, r, rtol=0, atol=1e-12)
    assert torch.allclose(jac_back, point.jacobian, rtol=1e-12)


def test_hadronic_boundary_points_are_finite():
    ps = HadronicPhaseSpace(6500.0, 6500.0, [0.0, 0.0])  # no cut at all: tau can reach 0
    r = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.5, 0.5]], dtype=F64)
    point = ps.map(r)
    assert bool(torch.isfinite(point.momenta).all()) and bool(torch.isfinite(point.jacobian).all())
    assert bool((point.jacobian >= 0).all())


@pytest.mark.parametrize("e1,e2", [(250.0, 250.0), (50.0, 7.0)])
def test_leptonic_two_and_three_body(e1, e2):
    s = 4 * e1 * e2
    ps2 = LeptonicPhaseSpace(e1, e2, [0.0, 0.0])
    r = _rand(10_000, ps2.n_dim, 90)
    point = ps2.map(r)
    assert ps2.n_dim == 2
    assert torch.allclose(
        point.jacobian, torch.full((10_000,), 1 / (8 * math.pi), dtype=F64), rtol=1e-14
    )
    assert bool((point.x1 == 1).all() and (point.x2 == 1).all())
    _check_momenta(point.momenta, [0.0, 0.0])
    r_back, jac_back = ps2.map_inverse(point.momenta)
    assert torch.allclose(r_back, r, rtol=0, atol=1e-12)
    assert torch.allclose(jac_back, point.jacobian, rtol=1e-12)

    masses = [0.3 * math.sqrt(s), 0.0, 0.1 * math.sqrt(s)]
    ps3 = LeptonicPhaseSpace(e1, e2, masses)
    point = ps3.map(_rand(400_000, ps3.n_dim, 91))
    _check_momenta(point.momenta, masses)
    _assert_mc(point.jacobian, _dalitz(s, *masses), "Phi_3 at fixed s")


def test_leptonic_rejects_energy_below_threshold():
    with pytest.raises(ValueError, match="not above"):
        LeptonicPhaseSpace(100.0, 100.0, [173.0, 173.0])


def test_fewer_than_two_final_state_particles_rejected():
    with pytest.raises(ValueError, match=">= 2 final-state"):
        HadronicPhaseSpace(6500.0, 6500.0, [125.0])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    ps = HadronicPhaseSpace(6500.0, 4000.0, [173.0, 173.0, 0.0], resonance=(400.0, 40.0))
    r = _rand(10_000, ps.n_dim, 92)
    cpu = ps.map(r)
    gpu = ps.map(r.cuda())
    assert gpu.momenta.device.type == "cuda" and gpu.jacobian.device.type == "cuda"
    assert torch.allclose(gpu.momenta.cpu(), cpu.momenta, rtol=1e-10, atol=1e-9)
    assert torch.allclose(gpu.jacobian.cpu(), cpu.jacobian, rtol=1e-10)
