"""The engine's n-gluon amplitudes against the Parke-Taylor formula (n = 4, 5, 6).

For g g > (n-2) g the engine writes M = sum_sigma Tr(T^a_sigma1 ... T^a_sigman) JAMP_sigma
over the single traces of its colour basis (processes/auto/colour.py, MadGraph's
normalisation Tr(T^a T^b) = delta^ab / 2). The colour-ordered amplitudes of Dixon
(hep-ph/9601359, eqs. 2.6 and 2.26) use generators normalised to Tr = delta^ab, i.e.
sqrt(2) T^a, with the standard g_s:

    M = g^(n-2) sum_sigma Tr(sqrt(2) T ...) A(sigma) = sum_sigma Tr(T ...) 2^(n/2) g^(n-2) A(sigma),

and the MHV amplitude with gluons i, j of negative helicity (all outgoing) is
A(sigma) = i <ij>^4 / (<sigma1 sigma2> ... <sigman sigma1>). Hence, fixed analytically,

    |JAMP_sigma| = 2^(n/2) g^(n-2) |<ij>|^4 / prod_m |<sigma_m sigma_m+1>|,  |<kl>| = |s_kl|^(1/2),

with s_kl = (k_k + k_l)^2 of the all-outgoing momenta (incoming ones negated, their
helicities flipped: an incoming gluon of helicity h is an outgoing one of helicity -h).
Three further checks are free of normalisation and phase conventions: the ratio of two
MHV configurations at the same point, |JAMP^(ij)| / |JAMP^(kl)| = (s_ij / s_kl)^2; the
complex ratio of two colour orderings in one helicity configuration, JAMP_sigma / JAMP_tau
= prod <tau_m tau_m+1> / prod <sigma_m sigma_m+1> (the external states' phases cancel;
spinor products of Dixon's eq. 2.10 for positive energies: each leg appears twice in both
products, so the continuation to negative energies cancels too); and that helicity
configurations with fewer than two negative helicities vanish.

Observed agreement (relative): |JAMP| against Parke-Taylor 4e-15 (n = 4), 8e-14 (n = 5),
2.4e-13 (n = 6, where the smallest JAMPs are gauge cancellations of 220 diagrams); the
configuration ratios <= 1e-12; the complex ratios of orderings <= 3e-12; tolerances below.
"""

from __future__ import annotations

import functools
import math

import pytest
import torch

from processes.auto.colour import Trace, decompose
from processes.auto.plan import scan_momenta
from processes.auto.process import AutoProcess

pytestmark = pytest.mark.usefixtures("single_thread")

ALPHA_S = 0.118
G = math.sqrt(4 * math.pi * ALPHA_S)
N_POINTS = 3


@functools.cache
def _gluons(n: int) -> tuple[AutoProcess, list[tuple[int, ...]]]:
    """g g > (n-2) g and the cyclic orders of its single-trace colour basis (plan order)."""
    proc = AutoProcess.load("g g > " + " ".join(["g"] * (n - 2)))
    ds = proc.diagrams
    dec = decompose([t.colour_factor for d in ds.diagrams for t in d.terms], ds.colour_reps)
    orders = []
    for element in dec.basis:
        assert len(element) == 1 and isinstance(element[0], Trace)
        orders.append(element[0].gluons)
    # the plan uses the same decomposition: same coefficients, same order
    plan_coeff = torch.tensor(proc.plan.colour_coefficients, dtype=torch.float64)
    assert torch.equal(plan_coeff[..., 0], torch.tensor(dec.coefficients.real))
    return proc, orders


def _momenta(proc: AutoProcess, seed: int) -> torch.Tensor:
    """RAMBO points, rotated so that no momentum lies along the z axis (spinor products
    of Dixon's eq. 2.10 divide by E + pz)."""
    p = scan_momenta(proc.masses, 2, N_POINTS, seed).clone()
    a, b = 0.7 + 0.1 * seed, 1.1
    rz = torch.tensor(
        [[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]],
        dtype=torch.float64,
    )
    ry = torch.tensor(
        [[math.cos(b), 0.0, math.sin(b)], [0.0, 1.0, 0.0], [-math.sin(b), 0.0, math.cos(b)]],
        dtype=torch.float64,
    )
    p[..., 1:] = p[..., 1:] @ (rz @ ry).T
    return p


def _jamps(proc: AutoProcess, p: torch.Tensor, negative: tuple[int, ...]) -> torch.Tensor:
    """JAMPs (n_points, n_basis) for the all-outgoing helicities: -1 on ``negative``, +1
    elsewhere (physical helicities of the two incoming gluons flipped)."""
    n = proc.plan.n_external
    outgoing = [-1 if k in negative else 1 for k in range(n)]
    physical = [-h if k < 2 else h for k, h in enumerate(outgoing)]
    ex = proc.executor
    amps = ex.amplitudes(p, ALPHA_S, torch.tensor([physical]))
    return ex.jamps(amps)[:, 0, 0, :]


def _s(p: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """|s_ij| = |2 k_i . k_j| of massless momenta (the same for the all-outgoing ones)."""
    k = p[:, i] + p[:, j] if (i < 2) == (j < 2) else p[:, i] - p[:, j]
    return (k[:, 0] ** 2 - (k[:, 1:] ** 2).sum(-1)).abs()


def _angle(p: torch.Tensor, i: int, j: int) -> torch.Tensor:
    """Dixon's <ij> (hep-ph/9601359 eq. 2.10) of the positive-energy momenta p_i, p_j."""
    kp_i, kp_j = p[:, i, 0] + p[:, i, 3], p[:, j, 0] + p[:, j, 3]
    ci = torch.complex(p[:, i, 1], p[:, i, 2])
    cj = torch.complex(p[:, j, 1], p[:, j, 2])
    return ci * torch.sqrt(kp_j / kp_i) - cj * torch.sqrt(kp_i / kp_j)


def _parke_taylor(p: torch.Tensor, orders: list[tuple[int, ...]], i: int, j: int) -> torch.Tensor:
    """|A(sigma)| = |<ij>|^4 / prod_m |<sigma_m sigma_m+1>| (GeV^(4-n)) for every cyclic
    order sigma: (n_points, n_orders)."""
    n = len(orders[0])
    s = torch.stack([torch.stack([_s(p, a, b) for b in range(n)], -1) for a in range(n)], -2)
    sigma = torch.tensor(orders)  # (n_orders, n)
    nxt = torch.roll(sigma, -1, dims=1)
    den = s[:, sigma, nxt].sqrt().prod(-1)  # (n_points, n_orders)
    return _s(p, i, j)[:, None] ** 2 / den


#: negative-helicity pairs (all-outgoing legs): adjacent, non-adjacent, both incoming,
#: one incoming and one outgoing, across the trace's wrap-around
CONFIGS = {
    4: [(0, 1), (0, 2), (2, 3), (1, 3)],
    5: [(0, 1), (0, 2), (1, 3), (2, 4), (3, 4)],
    6: [(0, 1), (0, 3), (1, 4), (2, 5), (4, 5)],
}
#: relative tolerance: rounding over the diagrams' gauge cancellations (n = 6: 220
#: diagrams, JAMPs down to ~1e-4 of the largest; observed <= 3e-12)
TOL = {4: 1e-12, 5: 1e-10, 6: 1e-9}


@pytest.mark.parametrize("n", [4, 5, 6])
def test_mhv_jamps_equal_parke_taylor(n: int) -> None:
    """|JAMP_sigma| = 2^(n/2) g^(n-2) |A_PT(sigma)| for every single trace sigma, every MHV
    configuration listed and random momenta."""
    proc, orders = _gluons(n)
    assert len(orders) == math.factorial(n - 1)
    for seed in (1, 2):
        p = _momenta(proc, seed)
        for i, j in CONFIGS[n]:
            jamps = _jamps(proc, p, (i, j))
            expected = 2 ** (n / 2) * G ** (n - 2) * _parke_taylor(p, orders, i, j)
            rel = (jamps.abs() / expected - 1).abs().max().item()
            assert rel < TOL[n], (n, (i, j), rel)


@pytest.mark.parametrize("n", [4, 5, 6])
def test_ratio_of_mhv_configurations_is_convention_free(n: int) -> None:
    """|JAMP^(ij)_sigma / JAMP^(kl)_sigma| = (s_ij / s_kl)^2: no normalisation, no phase."""
    proc, orders = _gluons(n)
    p = _momenta(proc, 3)
    (i, j), (k, m) = CONFIGS[n][0], CONFIGS[n][-1]
    a = _jamps(proc, p, (i, j))
    b = _jamps(proc, p, (k, m))
    expected = (_s(p, i, j) / _s(p, k, m)) ** 2
    ratio = (a.abs() / b.abs()) / expected[:, None]
    assert (ratio - 1).abs().max().item() < TOL[n]


@pytest.mark.parametrize("n", [4, 5, 6])
def test_colour_ordered_phases(n: int) -> None:
    """JAMP_sigma / JAMP_first = prod <first> / prod <sigma> as complex numbers: the
    Parke-Taylor denominators, phases included (for n = 5, 6 their complex conjugates
    differ by O(1), so this also fixes which spinor product is the holomorphic one)."""
    proc, orders = _gluons(n)
    p = _momenta(proc, 4)
    for negative in (CONFIGS[n][0], CONFIGS[n][2]):
        jamps = _jamps(proc, p, negative)
        cyclic = []
        for order in orders:
            d = torch.ones(p.shape[0], dtype=torch.complex128)
            for m in range(n):
                d = d * _angle(p, order[m], order[(m + 1) % n])
            cyclic.append(1 / d)
        pt = torch.stack(cyclic, -1)
        got = jamps / jamps[:, :1]
        want = pt / pt[:, :1]
        scale = want.abs().max()
        assert ((got - want).abs().max() / scale).item() < TOL[n]


@pytest.mark.parametrize("n", [4, 5])
def test_fewer_than_two_negative_helicities_vanish(n: int) -> None:
    """All-plus and one-minus tree amplitudes vanish (to rounding against the MHV scale)."""
    proc, _ = _gluons(n)
    p = _momenta(proc, 5)
    scale = _jamps(proc, p, (0, 1)).abs().max()
    for negative in ((), (2,)):
        assert (_jamps(proc, p, negative).abs().max() / scale).item() < 1e-12
