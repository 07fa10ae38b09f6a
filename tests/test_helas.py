"""Tests of the batched HELAS/ALOHA routines in processes/auto/helas.py.

Every check compares with something computed independently of helas.py's own algebra:
Dirac matrices built here from the Pauli matrices (HELAS chiral representation), the UFO
Lorentz strings of MadGraph's ``sm`` evaluated here by a small interpreter, the
Feynman propagators applied to the vertex derivative, the analytic matrix elements of the
process library (``processes.load``), ESW's g g > g g, MadGraph's own |M|^2 values
(madgraph4gpu, tests/data/mg4gpu, skipped where absent), Lorentz-invariant trace formulae
and gauge invariance (Ward identities). Couplings are MadGraph ``sm``'s (``couplings.py``):
GC_1 = -ee i/3, GC_2 = 2 ee i/3, GC_3 = -ee i, GC_10 = -G, GC_11 = i G, GC_12 = i G^2,
GC_50 = -cw ee i/(2 sw), GC_51 = cw ee i/(2 sw), GC_58 = -ee i sw/(6 cw),
GC_59 = ee i sw/(2 cw), and the photon-W couplings i ee (VVV1) and i ee^2 (VVVV2).
Deterministic quantities agree to 1e-12 relative (float64 rounding over a few hundred
operations), gauge cancellations to 1e-10 of the individual diagrams.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from torch import Tensor

from evgen.params import SMParameters
from processes import load
from processes.auto import helas
from processes.auto.helas import (
    FFV1_0,
    FFV1_1,
    FFV1_2,
    FFV1_3,
    LORENTZ,
    VVV1_0,
    VVV1_1,
    VVV1_2,
    VVV1_3,
    VVVV1_0,
    VVVV2_0,
    VVVV3_0,
    VVVV4_0,
    ixxxxx,
    oxxxxx,
    sum_currents,
    sxxxxx,
    vxxxxx,
)

F64, C128 = torch.float64, torch.complex128
MT = 173.0

pytestmark = pytest.mark.usefixtures("single_thread")


# --------------------------------------------------------------------------------------
# Independent Dirac algebra: HELAS's chiral representation from the Pauli matrices
# --------------------------------------------------------------------------------------


def _gammas() -> tuple[Tensor, Tensor]:
    one = torch.eye(2, dtype=C128)
    zero = torch.zeros(2, 2, dtype=C128)
    pauli = [
        torch.tensor([[0, 1], [1, 0]], dtype=C128),
        torch.tensor([[0, -1j], [1j, 0]], dtype=C128),
        torch.tensor([[1, 0], [0, -1]], dtype=C128),
    ]
    g0 = torch.cat([torch.cat([zero, one], 1), torch.cat([one, zero], 1)], 0)
    gk = [torch.cat([torch.cat([zero, s], 1), torch.cat([-s, zero], 1)], 0) for s in pauli]
    gamma = torch.stack([g0, *gk])
    gamma5 = 1j * gamma[0] @ gamma[1] @ gamma[2] @ gamma[3]
    return gamma, gamma5


GAMMA, GAMMA5 = _gammas()
IDENTITY4 = torch.eye(4, dtype=C128)
PROJ_M = (IDENTITY4 - GAMMA5) / 2
PROJ_P = (IDENTITY4 + GAMMA5) / 2
METRIC = torch.diag(torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=F64))
SIGMA_SPIN = 0.5 * torch.stack(
    [
        torch.block_diag(s, s)
        for s in (
            torch.tensor([[0, 1], [1, 0]], dtype=C128),
            torch.tensor([[0, -1j], [1j, 0]], dtype=C128),
            torch.tensor([[1, 0], [0, -1]], dtype=C128),
        )
    ]
)  # spin operators S^k = Sigma^k / 2 on Dirac spinors


def slash(p: Tensor) -> Tensor:
    """gamma^mu p_mu, (..., 4) -> (..., 4, 4)."""
    lowered = p.to(C128) * METRIC.diagonal().to(C128)
    return torch.einsum("...m,mij->...ij", lowered, GAMMA)


def mdot(a: Tensor, b: Tensor) -> Tensor:
    return a[..., 0] * b[..., 0] - (a[..., 1:] * b[..., 1:]).sum(-1)


def aloha_momentum(w: Tensor) -> Tensor:
    """ALOHA's P from the flow entries (the documented convention)."""
    return torch.stack((w[..., 0].real, w[..., 1].real, w[..., 1].imag, w[..., 0].imag), -1)


def test_dirac_matrices_of_this_test_obey_the_clifford_algebra():
    """The reference matrices themselves: {g^mu, g^nu} = 2 g^{mu nu}, gamma5 = diag(-1,-1,1,1)
    (so ProjM keeps the upper, left-handed components, as in HELAS)."""
    for mu, nu in itertools.product(range(4), repeat=2):
        anti = GAMMA[mu] @ GAMMA[nu] + GAMMA[nu] @ GAMMA[mu]
        assert torch.allclose(anti, 2 * METRIC[mu, nu] * IDENTITY4)
    assert torch.allclose(GAMMA5, torch.diag(torch.tensor([-1, -1, 1, 1], dtype=C128)))


# --------------------------------------------------------------------------------------
# Kinematics helpers
# --------------------------------------------------------------------------------------


def on_shell(vec: Tensor, mass: float) -> Tensor:
    """(..., 3) three-momenta -> (..., 4) on-shell four-momenta."""
    energy = torch.sqrt((vec * vec).sum(-1) + mass * mass)
    return torch.cat([energy[..., None], vec], -1)


def random_momenta(n: int, mass: float, seed: int, scale: float = 300.0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return on_shell(scale * torch.randn(n, 3, generator=g, dtype=F64), mass)


def special_momenta(mass: float) -> Tensor:
    """HELAS's special cases: along +z, along -z, pT = 0 both ways, at rest (massive), and
    generic directions."""
    vecs = [[0.0, 0.0, 250.0], [0.0, 0.0, -250.0], [0.0, 0.0, -3.0], [30.0, -40.0, 120.0]]
    vecs += [[-80.0, 15.0, -200.0], [1e-3, 0.0, -500.0]]
    if mass > 0:
        vecs.append([0.0, 0.0, 0.0])
    return on_shell(torch.tensor(vecs, dtype=F64), mass)


def random_rotation(seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=F64))
    q = q * torch.sign(torch.diagonal(r))
    return q if torch.det(q) > 0 else -q


def two_to_two(
    n: int, seed: int, masses_out: tuple[float, float], sqrt_s: tuple[float, float]
) -> Tensor:
    """(n, 4, 4) momenta of massless a b > c d: random sqrt(s) and angles, incoming along
    +-z, then the whole event rotated to a random orientation."""
    g = torch.Generator().manual_seed(seed)
    rs = sqrt_s[0] + (sqrt_s[1] - sqrt_s[0]) * torch.rand(n, generator=g, dtype=F64)
    m3, m4 = masses_out
    s = rs * rs
    pabs = torch.sqrt((s - (m3 + m4) ** 2) * (s - (m3 - m4) ** 2)) / (2 * rs)
    cos_t = 2 * torch.rand(n, generator=g, dtype=F64) - 1
    phi = 2 * math.pi * torch.rand(n, generator=g, dtype=F64)
    sin_t = torch.sqrt(1 - cos_t**2)
    direction = torch.stack([sin_t * torch.cos(phi), sin_t * torch.sin(phi), cos_t], -1)
    zero = torch.zeros(n, dtype=F64)
    beam = torch.stack([zero, zero, rs / 2], -1)
    vecs = torch.stack([beam, -beam, pabs[:, None] * direction, -pabs[:, None] * direction], 1)
    vecs = vecs @ random_rotation(seed + 1).T
    energies = torch.stack(
        [rs / 2, rs / 2, torch.sqrt(pabs**2 + m3**2), torch.sqrt(pabs**2 + m4**2)], 1
    )
    return torch.cat([energies[..., None], vecs], -1)


def helicities(*choices: tuple[int, ...]) -> Tensor:
    """(n_combinations, n_legs) int64 helicity table, MadGraph's order."""
    return torch.tensor(list(itertools.product(*choices)), dtype=torch.int64)


def assert_close(actual: Tensor, expected: Tensor, rtol: float = 1e-12, scale=None) -> None:
    """|actual - expected| <= rtol * scale elementwise; scale: a number or a tensor
    broadcastable against the values (default: max |expected|)."""
    ref = expected.abs().max() if scale is None else torch.as_tensor(scale)
    ratio = ((actual - expected).abs() / ref).max()
    assert ratio <= rtol, f"max deviation {float(ratio):.3e} (relative to scale) > {rtol:.0e}"


# --------------------------------------------------------------------------------------
# External wave functions
# --------------------------------------------------------------------------------------

FERMION_CASES = [(0.0, "random"), (0.0, "special"), (MT, "random"), (MT, "special")]


def fermion_momenta(mass: float, kind: str) -> Tensor:
    return random_momenta(64, mass, seed=11) if kind == "random" else special_momenta(mass)


@pytest.mark.parametrize(("mass", "kind"), FERMION_CASES)
def test_spinors_solve_the_dirac_equation(mass, kind):
    """(pslash - m) u = 0, ubar (pslash - m) = 0, (pslash + m) v = 0, vbar (pslash + m) = 0."""
    p = fermion_momenta(mass, kind)
    ps = slash(p)
    m = mass * IDENTITY4
    scale = p[:, 0].max() ** 1.5  # |pslash u| ~ E^(3/2)
    for hel in (-1, 1):
        u = ixxxxx(p, mass, hel, +1)[..., 2:]
        v = ixxxxx(p, mass, hel, -1)[..., 2:]
        ubar = oxxxxx(p, mass, hel, +1)[..., 2:]
        vbar = oxxxxx(p, mass, hel, -1)[..., 2:]
        zero = torch.zeros_like(u)
        assert_close(((ps - m) @ u[..., None])[..., 0], zero, scale=scale)
        assert_close(((ps + m) @ v[..., None])[..., 0], zero, scale=scale)
        assert_close((ubar[..., None, :] @ (ps - m))[..., 0, :], zero, scale=scale)
        assert_close((vbar[..., None, :] @ (ps + m))[..., 0, :], zero, scale=scale)
        # the barred spinors are the Dirac adjoints of the unbarred ones
        root_e = p[:, 0].max() ** 0.5
        assert_close(ubar, (u.conj()[..., None, :] @ GAMMA[0])[..., 0, :], scale=root_e)
        assert_close(vbar, (v.conj()[..., None, :] @ GAMMA[0])[..., 0, :], scale=root_e)


@pytest.mark.parametrize(("mass", "kind"), FERMION_CASES)
def test_spinor_completeness(mass, kind):
    """sum_h u ubar = pslash + m and sum_h v vbar = pslash - m with the routines' own
    u (ixxxxx, nsf=+1), ubar (oxxxxx, +1), v (ixxxxx, -1), vbar (oxxxxx, -1)."""
    p = fermion_momenta(mass, kind)
    hel = torch.tensor([-1, 1])
    pp = p[:, None, :]
    u, ubar = ixxxxx(pp, mass, hel, +1)[..., 2:], oxxxxx(pp, mass, hel, +1)[..., 2:]
    v, vbar = ixxxxx(pp, mass, hel, -1)[..., 2:], oxxxxx(pp, mass, hel, -1)[..., 2:]
    uu = torch.einsum("nhi,nhj->nij", u, ubar)
    vv = torch.einsum("nhi,nhj->nij", v, vbar)
    scale = p[:, 0].max()
    assert_close(uu, slash(p) + mass * IDENTITY4, scale=scale)
    assert_close(vv, slash(p) - mass * IDENTITY4, scale=scale)


@pytest.mark.parametrize("mass", [0.0, MT])
def test_spinors_are_helicity_eigenstates(mass):
    """(S . p_hat) u(p, h) = (h/2) u and (S . p_hat) v(p, h) = -(h/2) v: nhel is the
    helicity of the physical particle or antiparticle (generic momenta; at rest it is not
    defined)."""
    p = random_momenta(32, mass, seed=5)
    p_hat = p[:, 1:] / p[:, 1:].norm(dim=-1, keepdim=True)
    helicity_op = torch.einsum("nk,kij->nij", p_hat.to(C128), SIGMA_SPIN)
    for hel in (-1, 1):
        u = ixxxxx(p, mass, hel, +1)[..., 2:]
        v = ixxxxx(p, mass, hel, -1)[..., 2:]
        scale = u.abs().max()
        assert_close((helicity_op @ u[..., None])[..., 0], 0.5 * hel * u, scale=scale)
        assert_close((helicity_op @ v[..., None])[..., 0], -0.5 * hel * v, scale=scale)


def test_massless_chirality_and_flows():
    """Massless u of helicity -1 is left-handed (ProjM u = u); the flows carry the momentum
    out of the diagram: -p for ixxxxx(nsf=+1), +p for oxxxxx(+1), p*nsv for vxxxxx."""
    p = random_momenta(16, 0.0, seed=3)
    u_left = ixxxxx(p, 0.0, -1, +1)[..., 2:]
    u_right = ixxxxx(p, 0.0, +1, +1)[..., 2:]
    assert_close((PROJ_M @ u_left[..., None])[..., 0], u_left)
    assert_close((PROJ_P @ u_right[..., None])[..., 0], u_right)
    flow = torch.complex(p[:, 0], p[:, 3]), torch.complex(p[:, 1], p[:, 2])
    for w, sign in (
        (ixxxxx(p, 0.0, 1, +1), -1),
        (ixxxxx(p, 0.0, 1, -1), +1),
        (oxxxxx(p, 0.0, 1, +1), +1),
        (oxxxxx(p, 0.0, 1, -1), -1),
        (vxxxxx(p, 0.0, 1, -1), -1),
        (vxxxxx(p, 91.0, 1, +1), +1),
        (sxxxxx(p, -1), -1),
    ):
        assert torch.equal(w[..., 0], sign * flow[0]) and torch.equal(w[..., 1], sign * flow[1])
    s = sxxxxx(p, +1)
    assert torch.equal(s[..., 2], torch.ones(16, dtype=C128))
    assert torch.equal(s[..., 3:], torch.zeros(16, 3, dtype=C128))


VECTOR_CASES = [(0.0, "random"), (0.0, "special"), (91.188, "random"), (91.188, "special")]


@pytest.mark.parametrize(("mass", "kind"), VECTOR_CASES)
def test_polarisation_vectors(mass, kind):
    """Transverse (p.eps = 0), normalised (eps.eps* = -1), orthogonal, helicity
    eigenstates (S.p_hat eps = h eps, generic momenta), eps(nsv=+1) = eps(nsv=-1)*, and the
    polarisation sum -g + p p / M^2 (massive, 3 helicities) or the transverse projector
    delta_ij - p_i p_j / |p|^2 (massless, 2 helicities; nhel = 0 gives zero)."""
    p = fermion_momenta(mass, kind)
    hels = (-1, 0, 1) if mass > 0 else (-1, 1)
    eps = {h: vxxxxx(p, mass, h, -1)[..., 2:] for h in hels}
    for h in hels:
        assert_close(vxxxxx(p, mass, h, +1)[..., 2:], eps[h].conj(), scale=1.0)
        assert_close(mdot(p.to(C128), eps[h]), torch.zeros(len(p), dtype=C128), scale=p.max())
        for h2 in hels:
            expected = -1.0 if h == h2 else 0.0
            norm = mdot(eps[h], eps[h2].conj())
            assert_close(norm, torch.full_like(norm, expected), scale=1.0)
    total = sum(torch.einsum("ni,nj->nij", eps[h], eps[h].conj()) for h in hels)
    if mass > 0:
        expected = -METRIC + torch.einsum("ni,nj->nij", p, p) / mass**2
        assert_close(total, expected.to(C128), scale=(p[:, 0].max() / mass) ** 2)
    else:
        p_hat = p[:, 1:] / p[:, 1:].norm(dim=-1, keepdim=True)
        expected = torch.zeros(len(p), 4, 4, dtype=F64)
        expected[:, 1:, 1:] = torch.eye(3, dtype=F64) - torch.einsum("ni,nj->nij", p_hat, p_hat)
        assert_close(total, expected.to(C128), scale=1.0)
        assert torch.equal(vxxxxx(p, 0.0, 0, -1)[..., 2:], torch.zeros_like(eps[1]))
    if kind == "random":  # helicity: (S_k)_ij = -i eps_kij on the spatial components
        levi = torch.zeros(3, 3, 3, dtype=C128)
        for (i, j, k), sign in (((0, 1, 2), 1), ((1, 2, 0), 1), ((2, 0, 1), 1)):
            levi[i, j, k] = levi[j, k, i] = levi[k, i, j] = sign
            levi[j, i, k] = levi[i, k, j] = levi[k, j, i] = -sign
        p_hat = (p[:, 1:] / p[:, 1:].norm(dim=-1, keepdim=True)).to(C128)
        helicity_op = -1j * torch.einsum("nk,kij->nij", p_hat, levi)
        for h in hels:
            spatial = eps[h][:, 1:]
            assert_close((helicity_op @ spatial[..., None])[..., 0], h * spatial, scale=1.0)


# --------------------------------------------------------------------------------------
# Every Lorentz structure against its UFO string, and the off-shell currents
# --------------------------------------------------------------------------------------

#: MadGraph's sm lorentz.py (FeynRules 2 version), verbatim.
UFO_SM = {
    "FFS1": "ProjM(2,1)",
    "FFS2": "ProjM(2,1) - ProjP(2,1)",
    "FFS3": "ProjP(2,1)",
    "FFS4": "ProjM(2,1) + ProjP(2,1)",
    "FFV1": "Gamma(3,2,1)",
    "FFV2": "Gamma(3,2,-1)*ProjM(-1,1)",
    "FFV3": "Gamma(3,2,-1)*ProjM(-1,1) - 2*Gamma(3,2,-1)*ProjP(-1,1)",
    "FFV4": "Gamma(3,2,-1)*ProjM(-1,1) + 2*Gamma(3,2,-1)*ProjP(-1,1)",
    "FFV5": "Gamma(3,2,-1)*ProjM(-1,1) + 4*Gamma(3,2,-1)*ProjP(-1,1)",
    "VSS1": "P(1,2) - P(1,3)",
    "VVS1": "Metric(1,2)",
    "SSS1": "1",
    "VVV1": "P(3,1)*Metric(1,2) - P(3,2)*Metric(1,2) - P(2,1)*Metric(1,3)"
    " + P(2,3)*Metric(1,3) + P(1,2)*Metric(2,3) - P(1,3)*Metric(2,3)",
    "SSSS1": "1",
    "VVSS1": "Metric(1,2)",
    "VVVV1": "Metric(1,4)*Metric(2,3) - Metric(1,3)*Metric(2,4)",
    "VVVV2": "Metric(1,4)*Metric(2,3) + Metric(1,3)*Metric(2,4) - 2*Metric(1,2)*Metric(3,4)",
    "VVVV3": "Metric(1,4)*Metric(2,3) - Metric(1,2)*Metric(3,4)",
    "VVVV4": "Metric(1,3)*Metric(2,4) - Metric(1,2)*Metric(3,4)",
    "VVVV5": "Metric(1,4)*Metric(2,3) - (Metric(1,3)*Metric(2,4))/2."
    " - (Metric(1,2)*Metric(3,4))/2.",
}
SPINS = {
    "FF": (2, 2),
    "VSS": (3, 1, 1),
    "VVS": (3, 3, 1),
    "SSS": (1, 1, 1),
    "VVV": (3, 3, 3),
    "SSSS": (1, 1, 1, 1),
    "VVSS": (3, 3, 1, 1),
    "VVVV": (3, 3, 3, 3),
}


def ufo_spins(name: str) -> tuple[int, ...]:
    letters = name.rstrip("0123456789")
    if letters.startswith("FF"):
        return (2, 2, 3 if letters[2] == "V" else 1)
    return SPINS[letters]


class SpinorMatrix:
    """A Dirac matrix with its two UFO spinor indices, for evaluating UFO strings."""

    def __init__(self, matrix: Tensor, row: int, col: int) -> None:
        self.matrix, self.row, self.col = matrix, row, col

    def __mul__(self, other):
        if isinstance(other, SpinorMatrix):
            assert self.col == other.row
            return SpinorMatrix(self.matrix @ other.matrix, self.row, other.col)
        return SpinorMatrix(self.matrix * other, self.row, self.col)

    __rmul__ = __mul__

    def __add__(self, other):
        assert (self.row, self.col) == (other.row, other.col)
        return SpinorMatrix(self.matrix + other.matrix, self.row, self.col)

    def __sub__(self, other):
        return self + other * (-1)


def ufo_lorentz(name: str, wfs: list[Tensor]) -> Tensor:
    """L of a UFO Lorentz string for wave functions in vertex order: Metric(i,j) = V_i.V_j,
    P(i,j) = P_j.V_i (ALOHA's P_j from leg j's flow), Gamma(3,i,j) = (V3slash)_ij,
    ProjM/ProjP; spinor index 2 is the bra F2 and index 1 the ket F1; scalars multiply."""
    spins = ufo_spins(name)
    comps = [w[..., 2:] for w in wfs]
    momenta = [aloha_momentum(w) for w in wfs]
    namespace = {
        "Metric": lambda i, j: mdot(comps[i - 1], comps[j - 1]),
        "P": lambda i, j: mdot(momenta[j - 1].to(C128), comps[i - 1]),
        "Gamma": lambda mu, i, j: SpinorMatrix(slash(comps[mu - 1]), i, j),
        "ProjM": lambda i, j: SpinorMatrix(PROJ_M, i, j),
        "ProjP": lambda i, j: SpinorMatrix(PROJ_P, i, j),
    }
    value = eval(UFO_SM[name], namespace)  # noqa: S307 - the fixed strings above
    if isinstance(value, SpinorMatrix):
        assert (value.row, value.col) == (2, 1)
        value = torch.einsum("...i,...ij,...j->...", comps[1], value.matrix, comps[0])
    for i, spin in enumerate(spins):
        if spin == 1:
            value = value * comps[i][..., 0]
    return value


def random_wave_functions(spins: tuple[int, ...], n: int, seed: int) -> list[Tensor]:
    """Random complex wave functions (flows of GeV size); scalars zero beyond [2]."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for spin in spins:
        w = torch.complex(
            torch.randn(n, 6, generator=g, dtype=F64), torch.randn(n, 6, generator=g, dtype=F64)
        )
        w[:, :2] *= 100.0
        if spin == 1:
            w[:, 3:] = 0
        out.append(w)
    return out


def test_lorentz_table_is_madgraph_sm():
    assert set(LORENTZ) == set(UFO_SM)
    for name, structure in LORENTZ.items():
        assert structure.name == name
        assert structure.spins == ufo_spins(name)
        assert structure.structure.replace(" ", "") == UFO_SM[name].replace(" ", "")
        assert structure.momentum_dependent == ("P(" in UFO_SM[name])


@pytest.mark.parametrize("name", sorted(UFO_SM))
def test_amplitude_matches_ufo_string(name):
    """NAME_0 = -i COUP L with L the UFO string evaluated with explicit Dirac matrices, at
    random complex wave functions; the ALOHA-named function is the table's routine."""
    structure = LORENTZ[name]
    wfs = random_wave_functions(structure.spins, 50, seed=sum(map(ord, name)))
    coup = 0.3 - 0.7j
    expected = -1j * coup * ufo_lorentz(name, wfs)
    assert_close(structure.amplitude(wfs, coup), expected)
    assert_close(getattr(helas, f"{name}_0")(*wfs, coup), expected)


def propagate(spin: int, k: int, grad: Tensor, p: Tensor, mass: float, width: float) -> Tensor:
    """i * (Feynman propagator of leg k) applied to dA/dw_k: what ALOHA's off-shell routine
    returns. grad: (..., 4) derivatives dA/dw_k[2+j] (for a vector: lower index)."""
    den = (mdot(p, p) - mass**2 + 1j * mass * width)[..., None]
    if spin == 1:
        out = torch.zeros_like(grad)
        out[..., 0] = -grad[..., 0]
        return out / den
    if spin == 3:  # i * (-i)(g - p p / M^2) / D
        raised = grad @ METRIC.to(C128)
        if mass > 0:
            raised = raised - p.to(C128) * (mdot(p.to(C128), raised) / mass**2)[..., None]
        return raised / den
    if k == 0:  # bra, q = -P along the fermion flow: i * i (qslash + m) / D from the right
        return -(grad[..., None, :] @ (slash(-p) + mass * IDENTITY4))[..., 0, :] / den
    return -((slash(p) + mass * IDENTITY4) @ grad[..., None])[..., 0] / den


@pytest.mark.parametrize("name", sorted(UFO_SM))
@pytest.mark.parametrize(("mass", "width"), [(0.0, 0.0), (80.4, 2.05)])
def test_offshell_currents_are_propagated_vertex_derivatives(name, mass, width):
    """For every leg k: NAME_{k+1} carries the summed flow and equals i * Prop_k * dA/dw_k,
    where dA/dw_k comes from the amplitude routine on basis vectors with leg k's flow set
    by momentum conservation; so contracting the amputated current with any w_k gives
    NAME_0 (e.g. FFV1_0(F1, F2, V3) = V3 . FFV1_3(F1, F2) after removing the propagator)."""
    structure = LORENTZ[name]
    n = len(structure.spins)
    wfs = random_wave_functions(structure.spins, 40, seed=7 + len(name))
    coup = -0.4 + 1.1j
    for k in range(n):
        others = [w for i, w in enumerate(wfs) if i != k]
        off = structure.offshell(k, others, coup, mass, width)
        flow = sum(w[..., :2] for w in others)
        assert_close(off[..., :2], flow)
        assert_close(getattr(helas, f"{name}_{k + 1}")(*others, coup, mass, width), off)
        spin = structure.spins[k]
        grads = []
        for j in range(1 if spin == 1 else 4):
            basis = torch.zeros_like(wfs[k])
            basis[..., :2] = -flow
            basis[..., 2 + j] = 1.0
            legs = [basis if i == k else w for i, w in enumerate(wfs)]
            grads.append(structure.amplitude(legs, coup))
        grad = torch.stack(grads, -1)
        if spin == 1:
            grad = torch.nn.functional.pad(grad, (0, 3))
        p_k = aloha_momentum(basis)
        expected = propagate(spin, k, grad, p_k, mass, width)
        assert_close(off[..., 2:], expected)


def test_arguments_are_checked():
    wfs = random_wave_functions((2, 2, 3), 2, seed=1)
    with pytest.raises(ValueError, match="0-based"):
        LORENTZ["FFV1"].offshell(3, wfs[:2], 1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="expected 2 wave functions"):
        LORENTZ["FFV1"].offshell(2, wfs, 1.0, 0.0, 0.0)
    with pytest.raises(TypeError):
        FFV1_0(*wfs)


# --------------------------------------------------------------------------------------
# Processes assembled from the routines against the analytic library
# --------------------------------------------------------------------------------------

PARAMS = SMParameters()
EE = PARAMS.ee
SW, CW = math.sqrt(PARAMS.sw2), math.sqrt(PARAMS.cw2)
GC_1, GC_2, GC_3 = -EE * 1j / 3, 2 * EE * 1j / 3, -EE * 1j
GC_50, GC_51 = -CW * EE * 1j / (2 * SW), CW * EE * 1j / (2 * SW)
GC_58, GC_59 = -EE * 1j * SW / (6 * CW), EE * 1j * SW / (2 * CW)


def drell_yan_amplitudes(momenta: Tensor, quark: int, with_z: bool) -> Tensor:
    """(n, 16) helicity amplitudes of f f~ > mu+ mu- (f = e-, u or d; momenta ordered
    f~, f, mu+, mu-), as MadGraph writes them: FFV1P0_3 + FFV1_0 for the photon, FFV2_X_3 +
    FFV2_X_0 for the Z (X = 4 leptons, 5 up quarks, 3 down quarks)."""
    photon, z_left, z_right, right_name = {
        11: (GC_3, GC_50, GC_59, "FFV4"),
        2: (GC_2, GC_51, GC_58, "FFV5"),
        1: (GC_1, GC_50, GC_58, "FFV3"),
    }[quark]
    hel = helicities((-1, 1), (-1, 1), (-1, 1), (-1, 1))
    p = momenta[:, None]
    w0 = oxxxxx(p[..., 0, :], 0.0, hel[:, 0], -1)  # incoming antifermion: vbar
    w1 = ixxxxx(p[..., 1, :], 0.0, hel[:, 1], +1)  # incoming fermion: u
    w2 = ixxxxx(p[..., 2, :], 0.0, hel[:, 2], -1)  # outgoing mu+: v
    w3 = oxxxxx(p[..., 3, :], 0.0, hel[:, 3], +1)  # outgoing mu-: ubar
    amp = FFV1_0(w2, w3, FFV1_3(w1, w0, photon, 0.0, 0.0), GC_3)
    if with_z:
        right = LORENTZ[right_name]
        z = sum_currents(
            [
                helas.FFV2_3(w1, w0, z_left, PARAMS.mz, PARAMS.wz),
                right.offshell(2, [w1, w0], z_right, PARAMS.mz, PARAMS.wz),
            ]
        )
        amp = amp + helas.FFV2_0(w2, w3, z, GC_50) + helas.FFV4_0(w2, w3, z, GC_59)
    return amp


def test_ee_to_mumu_photon_only_is_qed():
    """Photon exchange alone: sum_h |M|^2 / 4 = 2 e^4 (t^2 + u^2) / s^2 (Peskin &
    Schroeder eq. 5.70 rewritten in invariants), and the photon built from either fermion
    line gives the same diagram."""
    momenta = two_to_two(200, seed=21, masses_out=(0.0, 0.0), sqrt_s=(10.0, 500.0))
    amp = drell_yan_amplitudes(momenta, 11, with_z=False)
    me = (amp.abs() ** 2).sum(-1) / 4
    s = 2 * mdot(momenta[:, 0], momenta[:, 1])
    t = -2 * mdot(momenta[:, 1], momenta[:, 3])
    u = -2 * mdot(momenta[:, 1], momenta[:, 2])
    assert_close(me, 2 * EE**4 * (t * t + u * u) / (s * s), scale=me.abs())
    hel = helicities((-1, 1), (-1, 1), (-1, 1), (-1, 1))
    p = momenta[:, None]
    w = [
        oxxxxx(p[..., 0, :], 0.0, hel[:, 0], -1),
        ixxxxx(p[..., 1, :], 0.0, hel[:, 1], +1),
        ixxxxx(p[..., 2, :], 0.0, hel[:, 2], -1),
        oxxxxx(p[..., 3, :], 0.0, hel[:, 3], +1),
    ]
    other_end = FFV1_0(w[1], w[0], FFV1_3(w[2], w[3], GC_3, 0.0, 0.0), GC_3)
    assert_close(other_end, amp)


@pytest.mark.parametrize(
    ("name", "quark", "colour_average"),
    [("e+ e- > mu+ mu-", 11, 1.0), ("u~ u > mu+ mu-", 2, 1 / 3), ("d~ d > mu+ mu-", 1, 1 / 3)],
)
def test_drell_yan_with_z_matches_analytic_library(name, quark, colour_average):
    """Photon + Z with MadGraph's sm couplings (FFV2 + FFV4 / FFV5 / FFV3 for e / u / d)
    summed over helicities, averaged over spins (and quark colours), equals the analytic
    |M|^2 of processes.load at random points across the Z peak, to 1e-12."""
    spread = two_to_two(300, seed=22, masses_out=(0.0, 0.0), sqrt_s=(40.0, 400.0))
    rs = torch.linspace(PARAMS.mz - 3, PARAMS.mz + 3, 20, dtype=F64)  # across the peak
    peak = two_to_two(20, seed=23, masses_out=(0.0, 0.0), sqrt_s=(1.0, 1.0)) * rs[:, None, None]
    momenta = torch.cat([spread, peak])
    amp = drell_yan_amplitudes(momenta, quark, with_z=True)
    me = colour_average * (amp.abs() ** 2).sum(-1) / 4
    expected = load(name).matrix_element(momenta)
    assert_close(me, expected, scale=expected.abs())


def su3() -> tuple[Tensor, Tensor]:
    """Generators T^a = lambda^a / 2 (3, 3, 8 ordered a, i, j) and f^{abc} = -2i
    Tr([T^a, T^b] T^c), computed here from the Gell-Mann matrices."""
    lam = torch.zeros(8, 3, 3, dtype=C128)
    lam[0, 0, 1] = lam[0, 1, 0] = 1
    lam[1, 0, 1], lam[1, 1, 0] = -1j, 1j
    lam[2, 0, 0], lam[2, 1, 1] = 1, -1
    lam[3, 0, 2] = lam[3, 2, 0] = 1
    lam[4, 0, 2], lam[4, 2, 0] = -1j, 1j
    lam[5, 1, 2] = lam[5, 2, 1] = 1
    lam[6, 1, 2], lam[6, 2, 1] = -1j, 1j
    lam[7] = torch.diag(torch.tensor([1, 1, -2], dtype=C128)) / math.sqrt(3)
    t = lam / 2
    comm = torch.einsum("aij,bjk->abik", t, t) - torch.einsum("bij,ajk->abik", t, t)
    f = -2j * torch.einsum("abik,cki->abc", comm, t)
    assert f.imag.abs().max() < 1e-14
    return t, f.real.to(C128)


def gg_ttbar_diagrams(momenta: Tensor, g_s: float) -> tuple[Tensor, Tensor, Tensor, list]:
    """(n, 16) amplitudes of g g > t t~: s-channel gluon (VVV1_1, FFV1_0), t-channel top
    attached to gluon 1 (FFV1_1), u-channel top attached to gluon 2 (FFV1_2), MadGraph's
    calls with GC_10 = -G, GC_11 = i G; also returns the external wave functions."""
    gc_10, gc_11 = -g_s, 1j * g_s
    hel = helicities((-1, 1), (-1, 1), (-1, 1), (-1, 1))
    p = momenta[:, None]
    w = [
        vxxxxx(p[..., 0, :], 0.0, hel[:, 0], -1),
        vxxxxx(p[..., 1, :], 0.0, hel[:, 1], -1),
        oxxxxx(p[..., 2, :], MT, hel[:, 2], +1),
        ixxxxx(p[..., 3, :], MT, hel[:, 3], -1),
    ]
    amp_s = FFV1_0(w[3], w[2], VVV1_1(w[0], w[1], gc_10, 0.0, 0.0), gc_11)
    amp_t = FFV1_0(w[3], FFV1_1(w[2], w[0], gc_11, MT, 0.0), w[1], gc_11)
    amp_u = FFV1_0(FFV1_2(w[3], w[0], gc_11, MT, 0.0), w[2], w[1], gc_11)
    return amp_s, amp_t, amp_u, w


def test_gg_to_ttbar_matches_analytic_library():
    """The three diagrams with colour factors f^{abc} T^c_ij (s), (T^a T^b)_ij (t) and
    (T^b T^a)_ij (u), |sum|^2 summed explicitly over the 8*8*3*3 colours and 16
    helicities, / 256, equals processes.load("g g > t t~") to 1e-12; the t-channel top
    built from the antitop end gives the same diagram."""
    momenta = two_to_two(200, seed=31, masses_out=(MT, MT), sqrt_s=(2 * MT + 5.0, 3000.0))
    alpha_s = 0.118
    g_s = math.sqrt(4 * math.pi * alpha_s)
    amp_s, amp_t, amp_u, w = gg_ttbar_diagrams(momenta, g_s)
    t, f = su3()
    colour = torch.stack(
        [
            torch.einsum("abc,cij->abij", f, t),
            torch.einsum("aik,bkj->abij", t, t),
            torch.einsum("bik,akj->abij", t, t),
        ]
    ).reshape(3, -1)  # (diagram, colour assignment)
    colour_matrix = colour @ colour.conj().T  # sum over a, b, i, j
    amps = torch.stack([amp_s, amp_t, amp_u], -1)  # (n, hel, diagram)
    me = torch.einsum("nhd,de,nhe->n", amps, colour_matrix, amps.conj()).real / 256
    expected = load("g g > t t~").matrix_element(momenta, alpha_s=alpha_s)
    assert_close(me, expected, scale=expected.abs())
    from_antitop = FFV1_0(FFV1_2(w[3], w[1], 1j * g_s, MT, 0.0), w[2], w[0], 1j * g_s)
    assert_close(from_antitop, amp_t)


def test_gg_to_gg_matches_esw():
    """g g > g g from VVV1 (s, t, u) and the contact vertex VVVV1/VVVV3/VVVV4 with MG sm's
    colour pairing f^{abe}f^{cde} <-> VVVV1, f^{ace}f^{bde} <-> VVVV3, f^{ade}f^{bce} <->
    VVVV4 and GC_12 = i G^2: sum |M|^2 / 256 = g^4 (9/2)(3 - tu/s^2 - su/t^2 - st/u^2)
    (Ellis, Stirling & Webber, QCD and Collider Physics, Table 7.1)."""
    momenta = two_to_two(100, seed=41, masses_out=(0.0, 0.0), sqrt_s=(50.0, 2000.0))
    g_s = math.sqrt(4 * math.pi * 0.118)
    gc_10, gc_12 = -g_s, 1j * g_s**2
    hel = helicities((-1, 1), (-1, 1), (-1, 1), (-1, 1))
    p = momenta[:, None]
    w = [vxxxxx(p[..., i, :], 0.0, hel[:, i], -1 if i < 2 else +1) for i in range(4)]

    def exchange(i: int, j: int, k: int) -> Tensor:  # gluon 1 with gluon i, then j and k
        return VVV1_0(VVV1_1(w[0], w[i], gc_10, 0.0, 0.0), w[j], w[k], gc_10)

    amps = torch.stack(
        [
            exchange(1, 2, 3) + VVVV1_0(*w, gc_12),
            exchange(2, 1, 3) + VVVV3_0(*w, gc_12),
            exchange(3, 1, 2) + VVVV4_0(*w, gc_12),
        ],
        -1,
    )
    _, f = su3()
    colour = torch.stack(
        [
            torch.einsum("eab,ecd->abcd", f, f),
            torch.einsum("eac,ebd->abcd", f, f),
            torch.einsum("ead,ebc->abcd", f, f),
        ]
    ).reshape(3, -1)
    me = torch.einsum("nhd,de,nhe->n", amps, colour @ colour.conj().T, amps.conj()).real / 256
    s = 2 * mdot(momenta[:, 0], momenta[:, 1])
    t = -2 * mdot(momenta[:, 0], momenta[:, 2])
    u = -2 * mdot(momenta[:, 0], momenta[:, 3])
    expected = g_s**4 * 4.5 * (3 - t * u / s**2 - s * u / t**2 - s * t / u**2)
    assert_close(me, expected, scale=expected.abs())


MG4GPU_DATA = Path(__file__).parent / "data" / "mg4gpu"


@pytest.mark.parametrize("process", ["ee_mumu", "gg_tt"])
def test_madgraph_reference_values(process):
    """MadGraph's own numbers (madgraph4gpu's cudacpp standalone output, tests/data/mg4gpu):
    the same HELAS calls, colour matrix ((16, -2), (-2, 16)) / 3 for the JAMPs i A_s - A_t
    and -i A_s - A_u, and the top width in the t-channel propagators as MadGraph has it,
    reproduce |M|^2 to 1e-12, also at its shipped points with off-shell (massless) top
    momenta, where only the exact HELAS formulae agree."""
    path = MG4GPU_DATA / f"{process}.json"
    if not path.exists():
        pytest.skip(f"no reference data {path}")
    data = json.loads(path.read_text())
    assert PARAMS.mz == data["param_card"]["MZ"] and PARAMS.wz == data["param_card"]["WZ"]
    for points in data["sets"].values():
        momenta = torch.tensor(points["momenta"], dtype=F64)
        expected = torch.tensor(points["me"], dtype=F64)
        if process == "ee_mumu":
            me = (drell_yan_amplitudes(momenta, 11, with_z=True).abs() ** 2).sum(-1) / 4
        else:
            g_s, width = data["derived"]["G"], data["param_card"]["WT"]
            amp_s, _, _, w = gg_ttbar_diagrams(momenta, g_s)
            amp_t = FFV1_0(w[3], FFV1_1(w[2], w[0], 1j * g_s, MT, width), w[1], 1j * g_s)
            amp_u = FFV1_0(FFV1_2(w[3], w[0], 1j * g_s, MT, width), w[2], w[1], 1j * g_s)
            jamp = torch.stack([1j * amp_s - amp_t, -1j * amp_s - amp_u], -1)
            colour = torch.tensor([[16.0, -2.0], [-2.0, 16.0]], dtype=C128) / 3
            me = torch.einsum("nhi,ij,nhj->n", jamp.conj(), colour, jamp).real / 256
        assert_close(me, expected, scale=expected)


# --------------------------------------------------------------------------------------
# Gauge invariance: a photon's or gluon's polarisation replaced by its momentum
# --------------------------------------------------------------------------------------


def with_momentum_polarisation(w: Tensor, p: Tensor) -> Tensor:
    out = w.clone()
    out[..., 2:] = p.to(C128).expand_as(out[..., 2:])
    return out


@pytest.mark.parametrize("mass", [0.0, MT])
def test_ward_identity_fermion_pair_to_photons(mass):
    """f f~ > a a (e+ e- > a a, and t t~ > a a with the top mass): the t- and u-channel
    diagrams (FFV1_2 then FFV1_0) cancel when one photon's polarisation is its momentum,
    for every helicity of the others, to 1e-10 of the single diagrams; the diagram from
    the other end of the fermion line (FFV1_1) is the same."""
    momenta = two_to_two(50, seed=51, masses_out=(0.0, 0.0), sqrt_s=(2 * mass + 10, 1000.0))
    if mass > 0:  # massive incoming fermions: rebuild the initial state on shell
        rs = 2 * momenta[:, 0, 0]
        pz = torch.sqrt(rs**2 / 4 - mass**2)
        momenta[:, 0] = torch.stack([rs / 2, 0 * rs, 0 * rs, pz], -1)
        momenta[:, 1] = torch.stack([rs / 2, 0 * rs, 0 * rs, -pz], -1)
    hel = helicities((-1, 1), (-1, 1), (-1, 1), (-1, 1))
    p = momenta[:, None]
    w0 = oxxxxx(p[..., 0, :], mass, hel[:, 0], -1)
    w1 = ixxxxx(p[..., 1, :], mass, hel[:, 1], +1)
    w2 = vxxxxx(p[..., 2, :], 0.0, hel[:, 2], +1)
    w3 = vxxxxx(p[..., 3, :], 0.0, hel[:, 3], +1)

    def diagrams(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        first = FFV1_0(FFV1_2(w1, a, GC_3, mass, 0.0), w0, b, GC_3)
        second = FFV1_0(FFV1_2(w1, b, GC_3, mass, 0.0), w0, a, GC_3)
        return first, second

    first, second = diagrams(w2, w3)
    assert_close(FFV1_0(w1, FFV1_1(w0, w3, GC_3, mass, 0.0), w2, GC_3), first)
    first, second = diagrams(with_momentum_polarisation(w2, momenta[:, None, 2]), w3)
    scale = torch.maximum(first.abs(), second.abs()).max()
    assert scale > 0
    assert_close(first + second, torch.zeros_like(first), rtol=1e-10, scale=scale)


def test_ward_identity_gg_to_ttbar_colour_ordered():
    """Non-abelian: with gluon 1's polarisation replaced by its momentum, each colour-ordered
    amplitude of g g > t t~ (coefficients of (T^a T^b)_ij and (T^b T^a)_ij: -i A_s + A_t
    and i A_s + A_u) vanishes; this fixes the sign of VVV1 against FFV1."""
    momenta = two_to_two(50, seed=61, masses_out=(MT, MT), sqrt_s=(2 * MT + 5.0, 2000.0))
    g_s = 1.2
    _, _, _, w = gg_ttbar_diagrams(momenta, g_s)
    w0 = with_momentum_polarisation(w[0], momenta[:, None, 0])
    w1 = w[1]
    amp_s = FFV1_0(w[3], w[2], VVV1_1(w0, w1, -g_s, 0.0, 0.0), 1j * g_s)
    amp_t = FFV1_0(w[3], FFV1_1(w[2], w0, 1j * g_s, MT, 0.0), w1, 1j * g_s)
    amp_u = FFV1_0(FFV1_2(w[3], w0, 1j * g_s, MT, 0.0), w[2], w1, 1j * g_s)
    scale = torch.stack([amp_s.abs(), amp_t.abs(), amp_u.abs()]).max()
    assert scale > 0
    for ordered in (-1j * amp_s + amp_t, 1j * amp_s + amp_u):
        assert_close(ordered, torch.zeros_like(ordered), rtol=1e-10, scale=scale)


def test_ward_identity_photons_to_w_pair():
    """a a > w+ w- in unitary gauge as MadGraph writes it (VVV1_2 and VVV1_3 with the massive
    W propagator, VVVV2_0 contact term; couplings i ee and i ee^2): with one photon's
    polarisation replaced by its momentum the sum vanishes for all W helicities; this
    fixes the massive vector propagator and VVVV2 against VVV1."""
    mw = PARAMS.mw
    momenta = two_to_two(50, seed=71, masses_out=(mw, mw), sqrt_s=(2 * mw + 5.0, 2000.0))
    hel = helicities((-1, 1), (-1, 1), (-1, 0, 1), (-1, 0, 1))
    p = momenta[:, None]
    w0 = vxxxxx(p[..., 0, :], 0.0, hel[:, 0], -1)
    w1 = vxxxxx(p[..., 1, :], 0.0, hel[:, 1], -1)
    w2 = vxxxxx(p[..., 2, :], mw, hel[:, 2], +1)
    w3 = vxxxxx(p[..., 3, :], mw, hel[:, 3], +1)
    c3, c4 = 1j * EE, 1j * EE**2
    photon = with_momentum_polarisation(w0, momenta[:, None, 0])
    amps = (
        VVVV2_0(photon, w1, w3, w2, c4),
        VVV1_0(w1, w3, VVV1_2(photon, w2, c3, mw, 0.0), c3),
        VVV1_0(w1, VVV1_3(photon, w3, c3, mw, 0.0), w2, c3),
    )
    scale = torch.stack([a.abs() for a in amps]).max()
    assert scale > 0
    total = amps[0] + amps[1] + amps[2]
    assert_close(total, torch.zeros_like(total), rtol=1e-10, scale=scale)


# --------------------------------------------------------------------------------------
# Scalars: Lorentz-invariant spin sums
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cl", "cr"), [("FFS1", 1, 0), ("FFS2", 1, -1), ("FFS3", 0, 1), ("FFS4", 1, 1)]
)
def test_scalar_to_fermion_pair_spin_sum(name, cl, cr):
    """h > t t~ through FFS: sum_h |-i C ubar(p1) (cl PL + cr PR) v(p2)|^2 =
    |C|^2 [2 p1.p2 (cl^2 + cr^2) - 4 m^2 cl cr] (trace of (p1slash + m) Gamma (p2slash - m)
    Gamma-bar); FFS4 is the Yukawa 2 (M_H^2 - 4 m^2) for p1 + p2 = M_H."""
    p1, p2 = random_momenta(30, MT, seed=81), random_momenta(30, MT, seed=82)
    hel = helicities((-1, 1), (-1, 1))
    ubar = oxxxxx(p1[:, None], MT, hel[:, 0], +1)
    v = ixxxxx(p2[:, None], MT, hel[:, 1], -1)
    h = sxxxxx((p1 + p2)[:, None], -1)
    coup = -0.7j
    amp = getattr(helas, f"{name}_0")(v, ubar, h, coup)
    total = (amp.abs() ** 2).sum(-1)
    expected = abs(coup) ** 2 * (2 * mdot(p1, p2) * (cl * cl + cr * cr) - 4 * MT**2 * cl * cr)
    assert_close(total, expected, scale=expected.abs().max())


@pytest.mark.parametrize("name", ["VVS1", "VVSS1"])
def test_scalar_to_vector_pair_spin_sum(name):
    """h > z z (VVS1, and VVSS1 with two scalars): sum over polarisations of
    |eps1* . eps2*|^2 = 2 + (p1.p2)^2 / M^4."""
    mz = PARAMS.mz
    p1, p2 = random_momenta(30, mz, seed=91), random_momenta(30, mz, seed=92)
    hel = helicities((-1, 0, 1), (-1, 0, 1))
    v1 = vxxxxx(p1[:, None], mz, hel[:, 0], +1)
    v2 = vxxxxx(p2[:, None], mz, hel[:, 1], +1)
    scalars = [sxxxxx((p1 + p2)[:, None], -1)]
    if name == "VVSS1":
        scalars.append(sxxxxx(p1[:, None], -1))
    amp = getattr(helas, f"{name}_0")(v1, v2, *scalars, 2.0)
    total = (amp.abs() ** 2).sum(-1)
    expected = 4.0 * (2 + mdot(p1, p2) ** 2 / mz**4)
    assert_close(total, expected, scale=expected.max())


def test_vector_to_scalar_pair_spin_sum():
    """VSS1: sum_pol |eps . (P2 - P3)|^2 = -k^2 + (k.p)^2 / M^2 with k = p2 - p3 (ALOHA's P:
    outgoing scalars carry +p) and p the (incoming) vector's momentum."""
    mz = PARAMS.mz
    p, p2, p3 = (random_momenta(30, m, seed=s) for m, s in ((mz, 101), (20.0, 102), (0.0, 103)))
    hel = torch.tensor([-1, 0, 1])
    v = vxxxxx(p[:, None], mz, hel, -1)
    amp = helas.VSS1_0(v, sxxxxx(p2[:, None], +1), sxxxxx(p3[:, None], +1), 1j)
    k = p2 - p3
    expected = -mdot(k, k) + mdot(k, p) ** 2 / mz**2
    assert_close((amp.abs() ** 2).sum(-1), expected, scale=expected.max())


# --------------------------------------------------------------------------------------
# Batching, dtype, devices, compilation
# --------------------------------------------------------------------------------------


def test_shapes_broadcasting_and_per_event_couplings():
    """(n, 1, 4) momenta with (n_hel,) helicities give (n, n_hel, 6); a per-event coupling
    (n,) broadcasts like (n, 1); results equal the one-event-at-a-time evaluation."""
    n = 7
    momenta = two_to_two(n, seed=111, masses_out=(MT, MT), sqrt_s=(400.0, 900.0))
    hel = helicities((-1, 1), (-1, 1), (-1, 1), (-1, 1))
    g_s = torch.linspace(1.0, 1.3, n, dtype=F64)
    p = momenta[:, None]
    w0 = vxxxxx(p[..., 0, :], 0.0, hel[:, 0], -1)
    w2 = oxxxxx(p[..., 2, :], MT, hel[:, 2], +1)
    w3 = ixxxxx(p[..., 3, :], MT, hel[:, 3], -1)
    assert w0.shape == w2.shape == (n, 16, 6) and w2.dtype == C128
    top = FFV1_1(w2, w0, 1j * g_s, MT, 1.5)
    amp = FFV1_0(w3, top, w0, 1j * g_s)
    assert amp.shape == (n, 16) and top.shape == (n, 16, 6)
    for i in range(n):
        for h in (0, 5, 15):
            single = [
                vxxxxx(momenta[i, 0], 0.0, int(hel[h, 0]), -1),
                oxxxxx(momenta[i, 2], MT, int(hel[h, 2]), +1),
                ixxxxx(momenta[i, 3], MT, int(hel[h, 3]), -1),
            ]
            coup = 1j * float(g_s[i])
            top_1 = FFV1_1(single[1], single[0], coup, MT, 1.5)
            amp_1 = FFV1_0(single[2], top_1, single[0], coup)
            assert amp_1.shape == ()
            assert torch.allclose(amp_1, amp[i, h], rtol=1e-13, atol=0)
    # a scalar-valued tensor nhel and nsf work too
    w_t = oxxxxx(momenta[:, 2], MT, torch.tensor(1), torch.tensor(1))
    assert torch.equal(w_t, oxxxxx(momenta[:, 2], MT, 1, 1))


def test_float32_follows_inputs():
    p = random_momenta(5, MT, seed=121).to(torch.float32)
    w = ixxxxx(p, MT, 1, 1)
    v = vxxxxx(p, 80.0, 0, 1)
    assert w.dtype == v.dtype == torch.complex64
    assert helas.FFV1_3(w, oxxxxx(p, MT, -1, 1), 0.5j, 80.0, 2.0).dtype == torch.complex64


def test_graph_capture_without_breaks():
    """No Python branching on tensor values: the whole g g > t t~ amplitude is captured by
    torch.compile as one graph (fullgraph=True; the eager backend keeps the test fast)."""
    momenta = two_to_two(4, seed=131, masses_out=(MT, MT), sqrt_s=(400.0, 900.0))

    def amplitudes(m: Tensor) -> Tensor:
        amp_s, amp_t, amp_u, _ = gg_ttbar_diagrams(m, 1.2)
        return amp_s + amp_t + amp_u

    torch._dynamo.reset()
    compiled = torch.compile(amplitudes, backend="eager", fullgraph=True)
    assert torch.equal(compiled(momenta), amplitudes(momenta))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    """Wave functions and vertices run on CUDA, keep the device, and agree with the CPU."""
    momenta = two_to_two(64, seed=141, masses_out=(MT, MT), sqrt_s=(400.0, 3000.0))
    g_s = torch.full((64,), 1.2, dtype=F64)
    cpu = torch.stack(gg_ttbar_diagrams(momenta, 1.2)[:3])
    gpu = torch.stack(gg_ttbar_diagrams(momenta.cuda(), 1.2)[:3])
    assert gpu.device.type == "cuda"
    assert_close(gpu.cpu(), cpu)
    wfs = random_wave_functions((3, 3, 3, 3), 8, seed=2)
    for name in ("VVVV2", "VVV1"):
        structure = LORENTZ[name]
        n = len(structure.spins)
        on_gpu = structure.offshell(0, [w.cuda() for w in wfs[1:n]], 1j * g_s[:8].cuda(), 80.0, 2.0)
        assert on_gpu.device.type == "cuda"
        assert_close(on_gpu.cpu(), structure.offshell(0, wfs[1:n], 1j * g_s[:8], 80.0, 2.0))
