"""|M|^2 of the analytic library against explicit Feynman diagrams in numpy.

The reference here is a second implementation that shares nothing with
``processes/``: Dirac matrices, spinors and polarisation vectors are built
numerically (complex128), every diagram is evaluated as a complex number for each
spin/polarisation state, and |amplitude|^2 is summed over states with colour factors
computed from explicit Gell-Mann matrices. Couplings are rebuilt from
(alpha, G_F, MZ) here, not read from ``SMParameters``' derived properties. The
closed forms in the library (ESW variables, helicity sums) are thus checked against
Feynman rules, to 1e-10 relative (float64 rounding with a margin). Drell-Yan with a Z'
(PDG 32) adds its s-channel diagram with couplings built here from the model's inputs
(SSM: the Z's couplings; or explicit chiral / vector-axial ones).
"""

from __future__ import annotations

import itertools
import math
import zlib

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from evgen.params import SMParameters, ZPrime, ZPrimeCouplings
from processes import load, registered_names

PARAMS = SMParameters()
RTOL = 1e-10

# --- couplings from the inputs (alpha, G_F, MZ), independently of SMParameters ---------
ALPHA = 1.0 / PARAMS.alpha_ew_inv
MZ, GZ, GW, MT = PARAMS.mz, PARAMS.wz, PARAMS.ww, PARAMS.mt
# MW from G_F / sqrt2 = pi alpha / (2 MW^2 sw^2), sw^2 = 1 - MW^2/MZ^2.
MW = MZ * math.sqrt(
    0.5 * (1.0 + math.sqrt(1.0 - 4.0 * math.pi * ALPHA / (math.sqrt(2.0) * PARAMS.gf * MZ**2)))
)
SW2 = 1.0 - (MW / MZ) ** 2
E_EM = math.sqrt(4.0 * math.pi * ALPHA)
G_Z = E_EM / math.sqrt(SW2 * (1.0 - SW2))
G_W = E_EM / math.sqrt(SW2)

# (charge, T3 of the left-handed particle, is_quark) by |PDG id|.
FERMIONS = {
    1: (-1 / 3, -0.5, True),
    2: (2 / 3, 0.5, True),
    3: (-1 / 3, -0.5, True),
    4: (2 / 3, 0.5, True),
    5: (-1 / 3, -0.5, True),
    6: (2 / 3, 0.5, True),
    11: (-1.0, -0.5, False),
    12: (0.0, 0.5, False),
    13: (-1.0, -0.5, False),
    14: (0.0, 0.5, False),
    15: (-1.0, -0.5, False),
    16: (0.0, 0.5, False),
}

# --- Dirac algebra (Dirac representation), metric (+,-,-,-) ----------------------------
SIGMA = [
    np.array([[0, 1], [1, 0]], dtype=complex),
    np.array([[0, -1j], [1j, 0]], dtype=complex),
    np.array([[1, 0], [0, -1]], dtype=complex),
]
I2, Z2 = np.eye(2, dtype=complex), np.zeros((2, 2), dtype=complex)
GAMMA = np.array([np.block([[I2, Z2], [Z2, -I2]])] + [np.block([[Z2, s], [-s, Z2]]) for s in SIGMA])
GAMMA5 = 1j * GAMMA[0] @ GAMMA[1] @ GAMMA[2] @ GAMMA[3]
PL, PR = (np.eye(4) - GAMMA5) / 2, (np.eye(4) + GAMMA5) / 2
METRIC = np.diag([1.0, -1.0, -1.0, -1.0])


def slash(p: np.ndarray) -> np.ndarray:
    """p_mu gamma^mu for a (complex) four-vector p^mu."""
    return np.einsum("m,mab->ab", METRIC @ p, GAMMA)


def mdot(a: np.ndarray, b: np.ndarray) -> complex:
    return a @ METRIC @ b


def u_spinors(p: np.ndarray, m: float) -> list[np.ndarray]:
    """u(p, s) = (pslash + m) (chi_s, 0) / sqrt(E + m): sum_s u ubar = pslash + m."""
    return [(slash(p) + m * np.eye(4)) @ np.r_[chi, 0, 0] / math.sqrt(p[0] + m) for chi in I2]


def v_spinors(p: np.ndarray, m: float) -> list[np.ndarray]:
    """v(p, s) = (-pslash + m) (0, chi_s) / sqrt(E + m): sum_s v vbar = pslash - m."""
    return [(-slash(p) + m * np.eye(4)) @ np.r_[0, 0, chi] / math.sqrt(p[0] + m) for chi in I2]


def bar(psi: np.ndarray) -> np.ndarray:
    return psi.conj() @ GAMMA[0]


def polarisations(k: np.ndarray) -> list[np.ndarray]:
    """Two real transverse polarisation vectors (0, e) with e . k = 0, |e| = 1."""
    n = k[1:] / np.linalg.norm(k[1:])
    a = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(n, a)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(n, e1)
    return [np.r_[0.0, e1], np.r_[0.0, e2]]


# --- SU(3) generators T^a = lambda^a / 2 -------------------------------------------------
def _gell_mann() -> np.ndarray:
    lam = np.zeros((8, 3, 3), dtype=complex)
    lam[0][0, 1] = lam[0][1, 0] = 1
    lam[1][0, 1], lam[1][1, 0] = -1j, 1j
    lam[2][0, 0], lam[2][1, 1] = 1, -1
    lam[3][0, 2] = lam[3][2, 0] = 1
    lam[4][0, 2], lam[4][2, 0] = -1j, 1j
    lam[5][1, 2] = lam[5][2, 1] = 1
    lam[6][1, 2], lam[6][2, 1] = -1j, 1j
    lam[7] = np.diag([1, 1, -2]) / math.sqrt(3)
    return lam / 2


T = _gell_mann()


# --- kinematics ----------------------------------------------------------------------------
def two_to_two(sqrt_s: float, cos_theta: float, phi: float, y: float, m3: float, m4: float):
    """p1 along +z, p2 along -z (massless), p3 at (theta, phi), p4 opposite; boost by y."""
    e = sqrt_s / 2
    s = sqrt_s**2
    q = math.sqrt((s - (m3 + m4) ** 2) * (s - (m3 - m4) ** 2)) / (2 * sqrt_s)
    sin_theta = math.sqrt(1 - cos_theta**2)
    n = np.array([sin_theta * math.cos(phi), sin_theta * math.sin(phi), cos_theta])
    ps = [
        np.r_[e, 0, 0, e],
        np.r_[e, 0, 0, -e],
        np.r_[math.sqrt(q**2 + m3**2), q * n],
        np.r_[math.sqrt(q**2 + m4**2), -q * n],
    ]
    ch, sh = math.cosh(y), math.sinh(y)
    return [np.array([ch * p[0] + sh * p[3], p[1], p[2], sh * p[0] + ch * p[3]]) for p in ps]


# --- the reference |M|^2 ---------------------------------------------------------------
def four_fermion(pdgs, moms, bosons, colour_factor: float, mass: dict[int, float]) -> float:
    """f f~ > F F~ through s-channel vector bosons, spin-summed |M|^2 times a colour factor.

    ``bosons``: list of (M, Gamma, (cL, cR) on the initial line, (cL, cR) on the final
    line) with vertices -i gamma^mu (cL PL + cR PR); massive bosons take the unitary-gauge
    propagator -i (g - q q / M^2) / (q^2 - M^2 + i M Gamma), the photon -i g / q^2.
    """
    i_f = next(i for i in (0, 1) if pdgs[i] > 0)
    i_fb = 1 - i_f
    o_f = next(i for i in (2, 3) if pdgs[i] > 0)
    o_fb = 5 - o_f
    q = moms[0] + moms[1]
    q2 = mdot(q, q)
    m_in, m_out = mass.get(abs(pdgs[i_f]), 0.0), mass.get(abs(pdgs[o_f]), 0.0)
    total = 0.0
    for uf, vfb, uF, vFb in itertools.product(
        u_spinors(moms[i_f], m_in),
        v_spinors(moms[i_fb], m_in),
        u_spinors(moms[o_f], m_out),
        v_spinors(moms[o_fb], m_out),
    ):
        amp = 0.0j
        for m_v, w_v, c_in, c_out in bosons:
            j_in = np.array([bar(vfb) @ g @ (c_in[0] * PL + c_in[1] * PR) @ uf for g in GAMMA])
            j_out = np.array([bar(uF) @ g @ (c_out[0] * PL + c_out[1] * PR) @ vFb for g in GAMMA])
            numerator = mdot(j_in, j_out)
            if m_v > 0:
                numerator -= mdot(j_in, q) * mdot(q, j_out) / m_v**2
            amp += numerator / (q2 - m_v**2 + 1j * m_v * w_v)
        total += abs(amp) ** 2
    return total * colour_factor


def z_couplings(pdg: int) -> tuple[float, float]:
    charge, t3, _ = FERMIONS[abs(pdg)]
    return (G_Z * (t3 - charge * SW2), -G_Z * charge * SW2)


#: Z' models for the tests: (name, SMParameters Z', reference (mass, width, couplings)).
#: Reference couplings are (left, right) in units of G_Z by fermion kind.
def _zp_width_reference(mass: float, couplings: dict[str, tuple[float, float]]) -> float:
    """Gamma(Z') = sum_f N_c M beta / (12 pi) [v^2 (1 + 2x) + a^2 beta^2], v = (L + R)/2,
    a = (L - R)/2, x = m^2/M^2 (the vector/axial form; t and b massive, the rest massless)."""
    total = 0.0
    for pdg, (_, _, quark) in FERMIONS.items():
        left, right = (G_Z * c for c in couplings[_kind(pdg)])
        x = (MT / mass) ** 2 if pdg == 6 else (PARAMS.mb / mass) ** 2 if pdg == 5 else 0.0
        if 4 * x >= 1:
            continue  # below threshold
        beta = math.sqrt(1 - 4 * x)
        v, a = (left + right) / 2, (left - right) / 2
        total += (
            (3 if quark else 1)
            * mass
            * beta
            / (12 * math.pi)
            * (v * v * (1 + 2 * x) + a * a * beta * beta)
        )
    return total


def _kind(pdg: int) -> str:
    return {1: "d", 2: "u", 11: "l", 12: "nu"}[
        {3: 1, 5: 1, 4: 2, 6: 2, 13: 11, 15: 11, 14: 12, 16: 12}.get(abs(pdg), abs(pdg))
    ]


def _ssm_couplings(strength: float = 1.0) -> dict[str, tuple[float, float]]:
    out = {}
    for kind, pdg in (("u", 2), ("d", 1), ("l", 11), ("nu", 12)):
        charge, t3, _ = FERMIONS[pdg]
        out[kind] = (strength * (t3 - charge * SW2), -strength * charge * SW2)
    return out


ZPRIME_MODELS = {
    # SSM at 1.5 TeV, width from its couplings
    "ssm": (ZPrime(1500.0), 1500.0, None, _ssm_couplings()),
    # explicit chiral couplings, an overall strength and a given width
    "chiral": (
        ZPrime(2000.0, 80.0, ZPrimeCouplings((0.4, -0.2), (-0.5, 0.1), (-0.3, 0.25)), 0.7),
        2000.0,
        80.0,
        {"u": (0.28, -0.14), "d": (-0.35, 0.07), "l": (-0.21, 0.175), "nu": (0.0, 0.0)},
    ),
    # vector/axial given: v = 1, a = 0.5 for quarks -> L = 0.75, R = 0.25; leptons pure axial
    "vector_axial": (
        ZPrime(
            3000.0,
            None,
            ZPrimeCouplings(
                ZPrimeCouplings.chiral_from_vector_axial(1.0, 0.5),
                ZPrimeCouplings.chiral_from_vector_axial(1.0, 0.5),
                ZPrimeCouplings.chiral_from_vector_axial(0.0, 1.0),
            ),
        ),
        3000.0,
        None,
        {"u": (0.75, 0.25), "d": (0.75, 0.25), "l": (0.5, -0.5), "nu": (0.0, 0.0)},
    ),
}


def reference_drell_yan(
    pdgs, moms, zprime: tuple | None = None, diagram: int | None = None
) -> float:
    """``zprime``: (mass, width or None for the reference width, couplings by kind);
    ``diagram``: 0, 1, 2 for the photon, Z or Z' diagram alone (its |M_i|^2)."""
    f, lep = max(pdgs[:2]), max(pdgs[2:])
    qf, _, quark = FERMIONS[f]
    ql = FERMIONS[lep][0]
    bosons = [
        (0.0, 0.0, (E_EM * qf, E_EM * qf), (E_EM * ql, E_EM * ql)),
        (MZ, GZ, z_couplings(f), z_couplings(lep)),
    ]
    if zprime is not None:
        mass, width, couplings = zprime
        width = _zp_width_reference(mass, couplings) if width is None else width
        c_f = tuple(G_Z * c for c in couplings[_kind(f)])
        c_l = tuple(G_Z * c for c in couplings[_kind(lep)])
        bosons.append((mass, width, c_f, c_l))
    if diagram is not None:
        bosons = bosons[diagram : diagram + 1]
    # colour: sum_ij |delta_ij|^2 / 9 for quarks
    colour = np.trace(np.eye(3)).real / 9 if quark else 1.0
    return four_fermion(pdgs, moms, bosons, colour, {}) / 4


def reference_w(pdgs, moms) -> float:
    bosons = [(MW, GW, (G_W / math.sqrt(2), 0.0), (G_W / math.sqrt(2), 0.0))]
    return four_fermion(pdgs, moms, bosons, 3 / 9, {}) / 4


def reference_qqbar_ttbar(pdgs, moms, alpha_s: float) -> float:
    gs = math.sqrt(4 * math.pi * alpha_s)
    # colour: sum over all indices of |sum_a T^a_(q~ q) T^a_(t t~)|^2
    colour = np.sum(np.abs(np.einsum("aji,akl->ijkl", T, T)) ** 2)
    bosons = [(0.0, 0.0, (gs, gs), (gs, gs))]
    return four_fermion(pdgs, moms, bosons, colour, {6: MT}) / (4 * 9)


def gg_ttbar_partials(moms, i_t: int, i_tb: int, eps1=None):
    """(A1, A2) per helicity state: M = g^2 [(T^a T^b) A1 + (T^b T^a) A2] (g^2 stripped).

    Feynman rules of Peskin & Schroeder (quark-gluon vertex i g gamma^mu T^a, three-gluon
    vertex g f^abc [...], Feynman-gauge gluon propagator); f^abc T^c = -i [T^a, T^b]
    moves the s-channel diagram into the two orderings. ``eps1`` replaces gluon 1's
    polarisations (for the Ward identity).
    """
    k1, k2, p3, p4 = moms[0], moms[1], moms[i_t], moms[i_tb]
    s = mdot(k1 + k2, k1 + k2)
    t, u = mdot(k1 - p3, k1 - p3), mdot(k2 - p3, k2 - p3)
    one = np.eye(4)
    out = []
    for e1, e2, ut, vtb in itertools.product(
        polarisations(k1) if eps1 is None else [eps1],
        polarisations(k2),
        u_spinors(p3, MT),
        v_spinors(p4, MT),
    ):
        ub = bar(ut)
        a_t = -1j * ub @ slash(e1) @ (slash(p3 - k1) + MT * one) @ slash(e2) @ vtb / (t - MT**2)
        a_u = -1j * ub @ slash(e2) @ (slash(p3 - k2) + MT * one) @ slash(e1) @ vtb / (u - MT**2)
        # three-gluon vertex contracted with e1, e2 (all momenta incoming, q = -(k1 + k2))
        x = mdot(e1, e2) * (k1 - k2) + 2 * mdot(k2, e1) * e2 - 2 * mdot(k1, e2) * e1
        current = np.array([ub @ g @ vtb for g in GAMMA])
        a_s = -1j * mdot(current, x) / s
        out.append((a_t + a_s, a_u - a_s))
    return np.array(out)


def reference_gg_ttbar(pdgs, moms, alpha_s: float) -> float:
    gs2 = 4 * math.pi * alpha_s
    tab, tba = np.einsum("aij,bjk->abik", T, T), np.einsum("bij,ajk->abik", T, T)
    c11 = np.sum(np.abs(tab) ** 2)
    c12 = np.sum(tab * tba.conj())
    parts = gg_ttbar_partials(moms, pdgs.index(6), pdgs.index(-6))
    a1, a2 = parts[:, 0], parts[:, 1]
    total = c11 * (np.abs(a1) ** 2 + np.abs(a2) ** 2) + 2 * np.real(c12 * a1 * a2.conj())
    return gs2**2 * float(np.sum(total).real) / (4 * 64)


def reference(pdgs, moms, alpha_s: float) -> float:
    kinds = {abs(i) for i in pdgs}
    if 21 in kinds:
        return reference_gg_ttbar(pdgs, moms, alpha_s)
    if 6 in kinds:
        return reference_qqbar_ttbar(pdgs, moms, alpha_s)
    if kinds & {12, 14, 16}:
        return reference_w(pdgs, moms)
    return reference_drell_yan(pdgs, moms)


# --- tests ------------------------------------------------------------------------------
def _points(proc, rng, n: int = 4) -> list[list[np.ndarray]]:
    m3, m4 = proc.masses[2], proc.masses[3]
    threshold = m3 + m4
    specials = [MZ, MW] if threshold == 0 else [threshold + 1.0]
    roots = [*specials, *(threshold + 10.0 + rng.uniform(0, 1000, n))]
    return [
        two_to_two(
            r, rng.uniform(-0.99, 0.99), rng.uniform(0, 2 * math.pi), rng.uniform(-1, 1), m3, m4
        )
        for r in roots
    ]


@pytest.mark.parametrize("name", registered_names())
def test_matrix_element_matches_feynman_diagrams(name: str) -> None:
    """Every registered subprocess, both beam orders: library |M|^2 == explicit diagrams."""
    proc = load(name, n_flavours=5)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    points = _points(proc, rng)
    alpha_s = rng.uniform(0.08, 0.2, len(points))
    moms = torch.tensor(np.array(points), dtype=torch.float64)
    got = proc.matrix_element(moms, torch.tensor(alpha_s)).numpy()
    want = np.array(
        [reference(list(proc.pdg_ids), p, a) for p, a in zip(points, alpha_s, strict=True)]
    )
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)


DY_ZPRIME_NAMES = [
    "u u~ > e+ e-",
    "d~ d > mu- mu+",
    "c c~ > ta+ ta-",
    "s~ s > e+ e-",
    "e+ e- > mu+ mu-",
    "mu- mu+ > ta- ta+",
]


@pytest.mark.parametrize("model", list(ZPRIME_MODELS))
@pytest.mark.parametrize("name", DY_ZPRIME_NAMES)
def test_drell_yan_with_zprime_matches_feynman_diagrams(name: str, model: str) -> None:
    """Photon + Z + Z' interfering, |M|^2 == explicit diagrams to 1e-10, at sqrt(s) = MZ,
    MZ', MZ' +- its width and random points (both beam orders among the names)."""
    zp, mass, width, couplings = ZPRIME_MODELS[model]
    proc = load(name, SMParameters(zprime=zp))
    gamma = _zp_width_reference(mass, couplings) if width is None else width
    rng = np.random.default_rng(zlib.crc32((name + model).encode()))
    roots = [MZ, mass, mass - gamma, mass + gamma, *rng.uniform(20.0, 2 * mass, 4)]
    points = [
        two_to_two(
            r, rng.uniform(-0.99, 0.99), rng.uniform(0, 2 * math.pi), rng.uniform(-1, 1), 0, 0
        )
        for r in roots
    ]
    got = proc.matrix_element(torch.tensor(np.array(points))).numpy()
    want = [reference_drell_yan(list(proc.pdg_ids), p, (mass, width, couplings)) for p in points]
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)
    # the Z' matters at its peak: without it |M|^2 there is over 10 times smaller
    assert got[1] > 10 * reference_drell_yan(list(proc.pdg_ids), points[1])


@pytest.mark.parametrize("name", ["u u~ > e+ e-", "d~ d > mu+ mu-", "e+ e- > ta+ ta-"])
def test_drell_yan_sde_weights_are_single_diagram_squares(name: str) -> None:
    """channel_weights = |M_i|^2 / sum_j |M_j|^2 with each |M_i|^2 from its diagram alone."""
    zp, mass, width, couplings = ZPRIME_MODELS["ssm"]
    proc = load(name, SMParameters(zprime=zp))
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    roots = [10.0, MZ, 0.5 * (MZ + mass), mass, *rng.uniform(20.0, 3000.0, 3)]
    points = [two_to_two(r, rng.uniform(-0.99, 0.99), 0.7, rng.uniform(-1, 1), 0, 0) for r in roots]
    squares = np.array(
        [
            [
                reference_drell_yan(list(proc.pdg_ids), p, (mass, width, couplings), d)
                for d in range(3)
            ]
            for p in points
        ]
    )
    moms = torch.tensor(np.array(points))
    np.testing.assert_allclose(proc.diagram_squares(moms).numpy(), squares, rtol=RTOL, atol=0)
    want = squares / squares.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(proc.channel_weights(moms).numpy(), want, rtol=RTOL, atol=1e-15)


@pytest.mark.parametrize("model", list(ZPRIME_MODELS))
def test_zprime_width_from_couplings(model: str) -> None:
    """The model's Z' width (given, or the sum of its partial widths) against the
    vector/axial form computed here; the SSM at M = MZ gives the Z's LO width."""
    zp, mass, width, couplings = ZPRIME_MODELS[model]
    want = _zp_width_reference(mass, couplings) if width is None else width
    assert SMParameters(zprime=zp).wzp == pytest.approx(want, rel=1e-12)
    z_like = SMParameters(zprime=ZPrime(MZ)).wzp
    assert z_like == pytest.approx(_zp_width_reference(MZ, _ssm_couplings()), rel=1e-12)
    assert z_like == pytest.approx(GZ, rel=3e-3)  # MadGraph's WZ, LO without QCD corrections
    assert SMParameters(zprime=ZPrime(1500.0)).wzp / 1500.0 == pytest.approx(0.0298, abs=2e-4)


@pytest.mark.parametrize("name", ["e+ e- > mu+ mu-", "u u~ > e+ e-", "d~ d > e+ e-"])
def test_ssm_zprime_peak_cross_section_from_partial_widths(name: str) -> None:
    """At sqrt(s) = MZ' the Z' diagram alone gives the Breit-Wigner peak cross section

        sigma_peak = 12 pi Gamma(Z' -> f f~) Gamma(Z' -> l+ l-) / (MZ'^2 Gamma^2 N_c^2)

    (spin 1, averaged over the initial spins and N_c^2 colours; Gamma_ff summed over
    colours), with partial and total widths from the vector/axial formula above.
    Integrated here over cos(theta) with Gauss-Legendre, exact for its quadratic shape."""
    mass = 1500.0
    proc = load(name, SMParameters(zprime=ZPrime(mass)))
    f = max(proc.incoming)
    couplings = _ssm_couplings()

    def partial(kind: str, n_c: int) -> float:
        left, right = (G_Z * c for c in couplings[kind])
        return n_c * mass / (12 * math.pi) * ((left + right) ** 2 + (left - right) ** 2) / 4

    n_c = 3 if FERMIONS[f][2] else 1
    gamma = _zp_width_reference(mass, couplings)
    peak = 12 * math.pi * partial(_kind(f), n_c) * partial("l", 1) / (mass * gamma * n_c) ** 2
    cos, weights = np.polynomial.legendre.leggauss(4)
    moms = []
    for c in cos:
        p = two_to_two(mass, c, 0.3, 0.0, 0.0, 0.0)  # p[0] along +z: put the fermion there
        order = [0, 1] if proc.pdg_ids[0] > 0 else [1, 0]
        lep = [2, 3] if proc.pdg_ids[2] > 0 else [3, 2]
        moms.append([p[order[0]], p[order[1]], p[lep[0]], p[lep[1]]])
    z_prime = proc.diagram_squares(torch.tensor(np.array(moms)))[:, 2].numpy()
    # sigma = int dOmega |M|^2 / (64 pi^2 s) = 2 pi int dcos |M|^2 / (64 pi^2 s)
    sigma = 2 * math.pi * float((weights * z_prime).sum()) / (64 * math.pi**2 * mass**2)
    assert sigma == pytest.approx(peak, rel=1e-10)


def test_reference_engine_is_consistent() -> None:
    """Checks of the reference itself: spinor completeness and the gluon Ward identity."""
    p = two_to_two(500.0, 0.3, 1.1, 0.4, MT, MT)
    assert np.allclose(
        sum(np.outer(u, bar(u)) for u in u_spinors(p[2], MT)), slash(p[2]) + MT * np.eye(4)
    )
    assert np.allclose(
        sum(np.outer(v, bar(v)) for v in v_spinors(p[3], MT)), slash(p[3]) - MT * np.eye(4)
    )
    # Each colour-ordered amplitude vanishes for eps1 -> k1 (fixes the s-channel's sign).
    parts = gg_ttbar_partials(p, 2, 3, eps1=p[0].astype(complex))
    scale = np.abs(gg_ttbar_partials(p, 2, 3)).max()
    assert np.abs(parts).max() < 1e-12 * scale


def test_alpha_s_float_tensor_and_default() -> None:
    proc = load("g g > t t~")
    moms = torch.tensor(np.array([two_to_two(600.0, 0.2, 0.1, 0.0, MT, MT)]))
    default = proc.matrix_element(moms)
    assert torch.allclose(proc.matrix_element(moms, PARAMS.alpha_s), default, rtol=1e-14)
    doubled = proc.matrix_element(moms, torch.tensor([2 * PARAMS.alpha_s], dtype=torch.float64))
    assert torch.allclose(doubled, 4 * default, rtol=1e-14)


def test_crossing_of_beams() -> None:
    """u u~ > t t~ at (p1, p2, p3, p4) equals u~ u > t t~ at (p2, p1, p3, p4)."""
    rng = np.random.default_rng(7)
    for name, mirrored in [
        ("u u~ > t t~", "u~ u > t t~"),
        ("u d~ > e+ ve", "d~ u > e+ ve"),
        ("d d~ > mu+ mu-", "d~ d > mu+ mu-"),
    ]:
        a, b = load(name), load(mirrored)
        pts = torch.tensor(np.array(_points(a, rng)))
        swapped = pts[:, [1, 0, 2, 3]]
        assert torch.allclose(a.matrix_element(pts), b.matrix_element(swapped), rtol=1e-13, atol=0)


def test_gg_ttbar_colour_flow_probability_is_ratio_of_partial_amplitudes() -> None:
    """P(gluon 1 -> top) = sum|A1|^2 / (sum|A1|^2 + sum|A2|^2) from explicit diagrams."""
    rng = np.random.default_rng(3)
    for order in ("g g > t t~", "g g > t~ t"):
        proc = load(order)
        points = _points(proc, rng, n=6)
        probs = proc.flow_probabilities(torch.tensor(np.array(points)))[:, 0].numpy()
        for p, prob in zip(points, probs, strict=True):
            parts = gg_ttbar_partials(p, proc.pdg_ids.index(6), proc.pdg_ids.index(-6))
            a1, a2 = np.sum(np.abs(parts[:, 0]) ** 2), np.sum(np.abs(parts[:, 1]) ** 2)
            assert prob == pytest.approx(a1 / (a1 + a2), rel=1e-10)


# --- normalisation: e+ e- > mu+ mu- against the textbook cross section ---------------------
def _esw_dsigma_domega(s: float, cos_theta: float) -> float:
    """Ellis-Stirling-Webber Ch. 3: alpha^2/(4s) [A0 (1 + c^2) + A1 c], theta = angle(e-, mu-)."""
    kappa = math.sqrt(2) * PARAMS.gf * MZ**2 / (4 * math.pi * ALPHA)
    den = (s - MZ**2) ** 2 + GZ**2 * MZ**2
    chi1 = kappa * s * (s - MZ**2) / den
    chi2 = kappa**2 * s**2 / den
    a, v = -0.5, -0.5 + 2 * SW2  # A_f = T3, V_f = T3 - 2 Q_f sw2 for e and mu (Q_f = -1)
    q_f = -1.0
    a0 = 1 - 2 * q_f * v * v * chi1 + (a**2 + v**2) ** 2 * chi2
    a1 = -4 * q_f * a * a * chi1 + 8 * a * v * a * v * chi2
    return ALPHA**2 / (4 * s) * (a0 * (1 + cos_theta**2) + a1 * cos_theta)


@pytest.mark.parametrize("sqrt_s", [91.188, 500.0])
def test_ee_mumu_angular_integral_matches_textbook_cross_section(sqrt_s: float) -> None:
    """sigma_F, sigma_B = int |M|^2 / (2s) dOmega / (32 pi^2) over each hemisphere.

    Analytically from ESW: sigma_F,B = 2 pi alpha^2/(4s) [A0 4/3 +- A1/2] (A0, A1 from
    _esw_dsigma_domega's coefficients), numerically with scipy quad over cos(theta) of the
    library |M|^2 in the CM frame (e+ is particle 0 along -z, e- along +z).
    """
    proc = load("e+ e- > mu+ mu-")
    s = sqrt_s**2

    def dsigma_dcos(c: float) -> float:
        p = two_to_two(sqrt_s, c, 0.0, 0.0, 0.0, 0.0)
        moms = torch.tensor(np.array([[p[1], p[0], p[3], p[2]]]))  # e+ e- mu+ mu-
        return 2 * math.pi * proc.matrix_element(moms).item() / (2 * s) / (32 * math.pi**2)

    sigma_f = quad(dsigma_dcos, 0, 1, epsabs=0, epsrel=1e-13)[0]
    sigma_b = quad(dsigma_dcos, -1, 0, epsabs=0, epsrel=1e-13)[0]
    a0_plus_a1 = _esw_dsigma_domega(s, 1.0) * 4 * s / ALPHA**2  # 2 A0 + A1
    a0_minus_a1 = _esw_dsigma_domega(s, -1.0) * 4 * s / ALPHA**2  # 2 A0 - A1
    a0, a1 = (a0_plus_a1 + a0_minus_a1) / 4, (a0_plus_a1 - a0_minus_a1) / 2
    pref = 2 * math.pi * ALPHA**2 / (4 * s)
    assert sigma_f == pytest.approx(pref * (4 / 3 * a0 + a1 / 2), rel=1e-8)
    assert sigma_b == pytest.approx(pref * (4 / 3 * a0 - a1 / 2), rel=1e-8)
    assert sigma_f + sigma_b == pytest.approx(4 * math.pi * ALPHA**2 / (3 * s) * a0, rel=1e-8)
