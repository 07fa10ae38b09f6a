"""SU(3) colour decomposition (processes.auto.colour) checked against independent numbers.

Two methods meet in every check: the module's exact symbolic colour algebra (Fierz
identity, trace basis) and brute-force contraction of explicit Gell-Mann matrices
(:func:`colour_tensor`, numpy einsum). Reference numbers: the Casimirs C_F = 4/3,
C_A = 3, d^acd d^bcd = (N^2 - 4)/N delta^ab; MadGraph's colour matrices (g g > t t~:
[[16, -2], [-2, 16]] / 3; g g > g g: rows [19, -2, -2, -2, -2, 4] / 6); the g g > g g
cross section (9/2) g^4 (3 - tu/s^2 - su/t^2 - st/u^2) (ESW Table 7.1, PDG "Cross-section
formulae") rebuilt from Parke-Taylor partial amplitudes and the colour matrix.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from evgen.errors import ProcessError
from processes.auto.colour import (
    FIRST_TAG,
    Chain,
    Trace,
    basis_element_factor,
    colour_tensor,
    decompose,
    su3_d,
    su3_f,
    su3_generators,
)

N = 3
CF = Fraction(N * N - 1, 2 * N)
CA = Fraction(N)
G = (8, None)


# --------------------------------------------------------------------------------------
# Helpers: QCD tree diagrams (colour only) and brute-force colour sums.


def qcd_colour_factors(legs: list[tuple[int, str | None]]) -> list[tuple]:
    """Colour factors of all QCD tree diagrams of all-outgoing legs ``(rep, flavour)``.

    Berends-Giele-like enumeration of currents over subsets of the legs but the last, with
    the q q~ g (T), g g g (f) and g g g g vertices (the last split into its three f f
    colour structures, one factor each, as MadGraph splits them); the last leg closes
    each current. Orientation signs are irrelevant here (amplitudes are random).
    """
    n = len(legs)
    fresh = itertools.count(-1, -1)
    currents: dict[frozenset, list] = {frozenset([k]): [(*legs[k], k, ())] for k in range(n - 1)}

    def join(c1, c2):
        (r1, f1, l1, x1), (r2, f2, l2, x2) = c1, c2
        base = x1 + x2
        if r1 == r2 == 8:
            e = next(fresh)
            return [(8, None, e, base + (("f", (l1, l2, e)),))]
        if r1 == 8:
            (r1, f1, l1), (r2, f2, l2) = (r2, f2, l2), (r1, f1, l1)
        if r2 == 8:  # quark-type current l1 emits gluon l2
            z = next(fresh)
            t = ("T", (l2, l1, z)) if r1 == 3 else ("T", (l2, z, l1))
            return [(r1, f1, z, base + (t,))]
        if {r1, r2} == {3, -3} and f1 == f2:
            x, y = (l1, l2) if r1 == 3 else (l2, l1)
            e = next(fresh)
            return [(8, None, e, base + (("T", (e, x, y)),))]
        return []

    def splits(s: frozenset, parts: int):
        first, rest = min(s), sorted(s - {min(s)})
        for r in range(len(rest) + 1):
            for extra in itertools.combinations(rest, r):
                s1 = frozenset((first, *extra))
                if s1 == s:
                    continue
                if parts == 2:
                    yield (s1, s - s1)
                else:
                    for s2, s3 in splits(s - s1, 2) if len(s - s1) > 1 else ():
                        yield (s1, s2, s3)

    for size in range(2, n):
        for s in map(frozenset, itertools.combinations(range(n - 1), size)):
            out = []
            for s1, s2 in splits(s, 2):
                for c1 in currents.get(s1, []):
                    for c2 in currents.get(s2, []):
                        out += join(c1, c2)
            for s1, s2, s3 in splits(s, 3):
                for c1, c2, c3 in itertools.product(
                    currents.get(s1, []), currents.get(s2, []), currents.get(s3, [])
                ):
                    if c1[0] == c2[0] == c3[0] == 8:
                        a, b, c, e = c1[2], c2[2], c3[2], next(fresh)
                        for p, q, r, t in ((a, b, c, e), (a, c, b, e), (a, e, b, c)):
                            x = next(fresh)
                            fac = c1[3] + c2[3] + c3[3] + (("f", (p, q, x)), ("f", (r, t, x)))
                            out.append((8, None, e, fac))
            if out:
                currents[s] = out
    root_rep, root_flavour = legs[-1]
    factors = []
    for rep, flavour, label, fac in currents[frozenset(range(n - 1))]:
        if (rep == root_rep == 8) or (rep == -root_rep and flavour == root_flavour):
            factors.append(
                tuple((s, tuple(n - 1 if i == label else i for i in ix)) for s, ix in fac)
            )
    return factors


def reps_of(legs) -> tuple[int, ...]:
    return tuple(rep for rep, _ in legs)


def basis_tensors(dec) -> np.ndarray:
    """(n_basis, flattened colours) explicit tensors of the basis elements."""
    return np.stack([colour_tensor(basis_element_factor(b), dec.reps).ravel() for b in dec.basis])


def check_flows(dec) -> None:
    """Every flow: one colour and one anticolour per tag (all outgoing), tags 501...,
    slots as the representations require; in LHE form, colour conserved with crossing."""
    for flow in dec.flows:
        for rep, (c, a) in zip(dec.reps, flow, strict=True):
            assert (c > 0, a > 0) == {
                1: (False, False),
                3: (True, False),
                -3: (False, True),
                8: (True, True),
            }[rep]
            if rep == 8:
                assert c != a
        colours = sorted(t for t in flow[:, 0] if t)
        anticolours = sorted(t for t in flow[:, 1] if t)
        assert colours == anticolours == list(range(FIRST_TAG, FIRST_TAG + len(colours)))
    for flow in dec.lhe_flows(2):
        for tag in set(flow.ravel()) - {0}:
            # incoming colour or outgoing anticolour closes the line of a tag
            opens = (flow[:2, 0] == tag).sum() + (flow[2:, 1] == tag).sum()
            closes = (flow[:2, 1] == tag).sum() + (flow[2:, 0] == tag).sum()
            assert opens == closes == 1


# --------------------------------------------------------------------------------------
# The explicit matrices against the Gell-Mann tables.


def test_generators_and_structure_constants_match_tables():
    t, f, d = su3_generators(), su3_f(), su3_d()
    assert np.allclose(t, t.conj().transpose(0, 2, 1), atol=1e-15)
    assert np.allclose(np.einsum("aii->a", t), 0, atol=1e-15)
    assert np.allclose(np.einsum("aij,bji->ab", t, t), np.eye(8) / 2, atol=1e-15)
    # Tabulated values (Gell-Mann; e.g. PDG "SU(3) isoscalar factors", 1-based indices).
    f_tab = np.zeros((8, 8, 8))
    s3 = math.sqrt(3) / 2
    for (a, b, c), v in {(1, 2, 3): 1, (1, 4, 7): 0.5, (1, 5, 6): -0.5, (2, 4, 6): 0.5,
                         (2, 5, 7): 0.5, (3, 4, 5): 0.5, (3, 6, 7): -0.5, (4, 5, 8): s3,
                         (6, 7, 8): s3}.items():  # fmt: skip
        for p, sign in zip(itertools.permutations((a - 1, b - 1, c - 1)),
                           (1, -1, -1, 1, 1, -1), strict=True):  # fmt: skip
            f_tab[p] = sign * v
    d_tab = np.zeros((8, 8, 8))
    r3 = 1 / math.sqrt(3)
    for (a, b, c), v in {(1, 1, 8): r3, (2, 2, 8): r3, (3, 3, 8): r3, (8, 8, 8): -r3,
                         (4, 4, 8): -r3 / 2, (5, 5, 8): -r3 / 2, (6, 6, 8): -r3 / 2,
                         (7, 7, 8): -r3 / 2, (1, 4, 6): 0.5, (1, 5, 7): 0.5, (2, 5, 6): 0.5,
                         (3, 4, 4): 0.5, (3, 5, 5): 0.5, (2, 4, 7): -0.5, (3, 6, 6): -0.5,
                         (3, 7, 7): -0.5}.items():  # fmt: skip
        for p in itertools.permutations((a - 1, b - 1, c - 1)):
            d_tab[p] = v
    assert np.allclose(f, f_tab, atol=1e-14)
    assert np.allclose(d, d_tab, atol=1e-14)
    comm = np.einsum("aij,bjk->abik", t, t) - np.einsum("bij,ajk->abik", t, t)
    assert np.allclose(comm, 1j * np.einsum("abc,cik->abik", f_tab, t), atol=1e-14)


# --------------------------------------------------------------------------------------
# Casimirs and identities through the symbolic algebra and the explicit contraction.


def one_coefficient(factor, reps):
    dec = decompose([factor], reps)
    assert dec.n_basis == 1
    return dec.basis[0], dec.coefficients_exact[0][0]


def test_casimirs_and_symbol_normalisations():
    # T^a T^a = C_F 1
    factor = [("T", (-1, 0, -2)), ("T", (-1, -2, 1))]
    element, c = one_coefficient(factor, (3, -3))
    assert element == (Chain(0, (), 1),) and c == (CF, 0)
    assert np.allclose(colour_tensor(factor, (3, -3)), float(CF) * np.eye(3), atol=1e-14)
    # f^acd f^bcd = C_A delta^ab = C_A * 2 Tr(T^a T^b)
    factor = [("f", (0, -1, -2)), ("f", (1, -1, -2))]
    element, c = one_coefficient(factor, (8, 8))
    assert element == (Trace((0, 1)),) and c == (2 * CA, 0)
    assert np.allclose(colour_tensor(factor, (8, 8)), 3 * np.eye(8), atol=1e-14)
    # d^acd d^bcd = (N^2 - 4)/N delta^ab
    factor = [("d", (0, -1, -2)), ("d", (1, -1, -2))]
    element, c = one_coefficient(factor, (8, 8))
    assert element == (Trace((0, 1)),) and c == (2 * Fraction(N * N - 4, N), 0)
    assert np.allclose(colour_tensor(factor, (8, 8)), 5 / 3 * np.eye(8), atol=1e-14)
    # Full contractions: Tr(T^a T^a) = N C_F, f f = N (N^2-1), d d = (N^2-4)(N^2-1)/N,
    # f^abc d^abc = 0 would vanish entirely (an error), d^aab = 0 numerically.
    for factor, value in [
        ([("T", (-1, -2, -3)), ("T", (-1, -3, -2))], N * CF),
        ([("f", (-1, -2, -3)), ("f", (-1, -2, -3))], Fraction(N * (N * N - 1))),
        ([("d", (-1, -2, -3)), ("d", (-1, -2, -3))], Fraction((N * N - 4) * (N * N - 1), N)),
    ]:
        element, c = one_coefficient(factor, ())
        assert element == () and c == (value, 0)
        assert colour_tensor(factor, ()).item() == pytest.approx(float(value), abs=1e-13)
    assert np.allclose(colour_tensor([("d", (-1, -1, 0))], (8,)), 0, atol=1e-14)
    with pytest.raises(ProcessError, match="vanishes"):
        decompose([[("f", (-1, -2, -3)), ("d", (-1, -2, -3))]], ())


def test_fierz_identity():
    # T^a_ij T^a_kl = 1/2 delta_il delta_kj - 1/(2N) delta_ij delta_kl  (legs i j k l)
    factor = [("T", (-1, 0, 1)), ("T", (-1, 2, 3))]
    reps = (3, -3, 3, -3)
    dec = decompose([factor], reps)
    got = dict(zip(dec.basis, dec.coefficients_exact[0], strict=True))
    assert got == {
        (Chain(0, (), 3), Chain(2, (), 1)): (Fraction(1, 2), 0),
        (Chain(0, (), 1), Chain(2, (), 3)): (Fraction(-1, 2 * N), 0),
    }
    eye = np.eye(3)
    expected = 0.5 * np.einsum("il,kj->ijkl", eye, eye) - np.einsum("ij,kl->ijkl", eye, eye) / 6
    assert np.allclose(colour_tensor(factor, reps), expected, atol=1e-15)
    # Leading colour is the N^0 term (MadGraph's max_Nc), not the -1/(2N) one.
    assert dec.leading_flows.tolist() == [False, True]


def test_structure_constants_in_traces_commutator_and_jacobi():
    dec = decompose([[("f", (0, 1, 2))], [("d", (0, 1, 2))]], (8, 8, 8))
    assert dec.basis == ((Trace((0, 1, 2)),), (Trace((0, 2, 1)),))
    assert dec.coefficients_exact == ((( 0, -2), (0, 2)), ((2, 0), (2, 0)))  # fmt: skip
    # [T^a, T^b] = i f^abc T^c: (T^a T^b) - (T^b T^a) - i f^abe T^e = 0
    dec = decompose(
        [[("T", (0, 2, -1)), ("T", (1, -1, 3))], [("T", (1, 2, -1)), ("T", (0, -1, 3))],
         [("f", (0, 1, -1)), ("T", (-1, 2, 3))]], (8, 8, 3, -3))  # fmt: skip
    c = dec.coefficients
    assert np.allclose(c[0] - c[1] - 1j * c[2], 0, atol=1e-15)
    # Jacobi: f^abe f^cde + f^ace f^dbe + f^ade f^bce = 0
    ff = [[("f", (a, b, -1)), ("f", (c, d, -1))] for a, b, c, d in
          ((0, 1, 2, 3), (0, 2, 3, 1), (0, 3, 1, 2))]  # fmt: skip
    dec = decompose(ff, (8, 8, 8, 8))
    assert all(sum(col, Fraction(0)) == 0 for col in zip(*[[x.real for x in row]
               for row in dec.coefficients_exact], strict=True))  # fmt: skip
    assert np.allclose(dec.coefficients.sum(0), 0, atol=1e-15)


# --------------------------------------------------------------------------------------
# Colour matrices.


@pytest.mark.parametrize(
    "legs",
    [
        [G, G, (3, "t"), (-3, "t")],  # g g > t t~
        [(-3, "u"), (3, "u"), G, G],  # u u~ > g g (incoming quark: -3 all outgoing)
    ],
)
def test_two_gluon_quark_pair_matrix(legs):
    dec = decompose(qcd_colour_factors(legs), reps_of(legs))
    assert dec.n_basis == 2 and dec.n_diagrams == 3
    # By hand: sum |(T^a T^b)_ij|^2 = N C_F^2, sum (T^a T^b)_ij conj((T^b T^a)_ij)
    # = Tr(T^a T^b T^a T^b) = N C_F (C_F - C_A / 2).
    diag, off = N * CF**2, N * CF * (CF - CA / 2)
    assert (diag, off) == (Fraction(16, 3), Fraction(-2, 3))
    assert dec.matrix_exact == ((diag, off), (off, diag))
    cf, denom = dec.integer_matrix()
    assert cf.tolist() == [[16, -2], [-2, 16]] and denom.tolist() == [3, 3]  # MadGraph
    b = basis_tensors(dec)
    assert np.allclose(b.conj() @ b.T, dec.matrix, atol=1e-13)


def test_q_qbar_to_g_g_flows():
    legs = [(-3, "u"), (3, "u"), G, G]
    dec = decompose(qcd_colour_factors(legs), reps_of(legs))
    assert dec.basis == ((Chain(1, (2, 3), 0),), (Chain(1, (3, 2), 0),))
    check_flows(dec)
    # LHE: the incoming quark's colour goes to one gluon, the antiquark's anticolour to
    # the other, and the gluons share the third tag.
    lhe = dec.lhe_flows()
    assert lhe[0].tolist() == [[503, 0], [0, 501], [502, 501], [503, 502]]
    assert lhe[1].tolist() == [[503, 0], [0, 501], [503, 502], [502, 501]]
    assert dec.leading_flows.all()


def test_g_g_to_g_g_matrix_is_madgraphs():
    dec = decompose(qcd_colour_factors([G] * 4), (8, 8, 8, 8))
    assert dec.n_basis == 6 and all(len(b) == 1 and isinstance(b[0], Trace) for b in dec.basis)
    # (N^2-1)(N^4-3N^2+3)/(16 N^2) on the diagonal; MadGraph's rows [19,-2,-2,-2,-2,4]/6
    # with the 4 between a trace and its reverse.
    assert Fraction((N * N - 1) * (N**4 - 3 * N * N + 3), 16 * N * N) == Fraction(19, 6)
    for k, row in enumerate(dec.matrix_exact):
        assert sorted(row) == sorted(Fraction(x, 6) for x in (19, -2, -2, -2, -2, 4))
        g = dec.basis[k][0].gluons
        reverse = (g[0], *g[:0:-1])
        assert row[dec.basis.index((Trace(reverse),))] == Fraction(2, 3)
    b = basis_tensors(dec)
    assert np.allclose(b.conj() @ b.T, dec.matrix, atol=1e-13)


def _spinors(p: np.ndarray) -> np.ndarray:
    """Two-component spinors lambda(p) of massless momenta (n, 4); for E < 0,
    lambda(p) = i lambda(-p) (crossing)."""
    sign = np.sign(p[:, 0])
    q = p * sign[:, None]
    plus = q[:, 0] + q[:, 3]
    lam = np.stack([np.sqrt(plus), (q[:, 1] + 1j * q[:, 2]) / np.sqrt(plus)], -1)
    return np.where(sign[:, None] < 0, 1j * lam, lam)


def test_g_g_to_g_g_from_parke_taylor_and_colour_matrix():
    """sum_{hel,col} |M|^2 = 16 g^4 sum_hel sum_kl conj(A_k) C_kl A_l, with the trace
    basis of T = lambda/2 (M = g^2 sum Tr(Tt..Tt) A, Tt = sqrt(2) T) and Parke-Taylor
    A(1..4) = <jk>^4 / (<12><23><34><41>); averaged over 4 x 64 it must equal
    (9/2) g^4 (3 - tu/s^2 - su/t^2 - st/u^2) (g = 1)."""
    dec = decompose(qcd_colour_factors([G] * 4), (8, 8, 8, 8))
    rng = np.random.default_rng(7)
    for _ in range(5):
        e = rng.uniform(10.0, 500.0)
        cos, phi = rng.uniform(-1, 1), rng.uniform(0, 2 * np.pi)
        sin = math.sqrt(1 - cos * cos)
        k3 = e * np.array([1.0, sin * math.cos(phi), sin * math.sin(phi), cos])
        k4 = k3 * np.array([1.0, -1.0, -1.0, -1.0])
        p1, p2 = e * np.array([1.0, 0, 0, 1]), e * np.array([1.0, 0, 0, -1])
        p = np.stack([-p1, -p2, k3, k4])  # all outgoing
        # A random rotation keeps every light-cone component p^0 + p^3 away from zero.
        rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        p[:, 1:] = p[:, 1:] @ rot.T
        lam = _spinors(p)
        ang = lam[:, None, 0] * lam[None, :, 1] - lam[:, None, 1] * lam[None, :, 0]
        total = 0.0
        for minus in itertools.combinations(range(4), 2):
            jamps = []
            for (trace,) in dec.basis:
                order = trace.gluons
                den = np.prod([ang[order[i], order[(i + 1) % 4]] for i in range(4)])
                jamps.append(4 * ang[minus] ** 4 / den)
            total += dec.colour_sum(torch.tensor(jamps)).item()
        s = 4 * e * e
        t = -2 * (p1[0] * k3[0] - p1[1:] @ k3[1:])  # (p1 - k3)^2
        u = -s - t
        expected = 4.5 * (3 - t * u / s**2 - s * u / t**2 - s * t / u**2)
        assert total / 256 == pytest.approx(expected, rel=1e-12)


# --------------------------------------------------------------------------------------
# Brute force: explicit tensors of every diagram against the decomposition.

BRUTE_FORCE = {
    "u u~ > g g g": [(-3, "u"), (3, "u"), G, G, G],
    "g g > g g g": [G] * 5,
    "u u~ > d d~ g": [(-3, "u"), (3, "u"), (3, "d"), (-3, "d"), G],
    "u u~ > u u~ g": [(-3, "u"), (3, "u"), (3, "u"), (-3, "u"), G],
    "g g > t t~ g": [G, G, (3, "t"), (-3, "t"), G],
}


@pytest.mark.parametrize("name", list(BRUTE_FORCE))
def test_brute_force_colour_sums(name):
    legs = BRUTE_FORCE[name]
    factors = qcd_colour_factors(legs)
    dec = decompose(factors, reps_of(legs))
    check_flows(dec)
    diagrams = np.stack([colour_tensor(f, dec.reps).ravel() for f in factors])
    b = basis_tensors(dec)
    # Each diagram's tensor is its expansion; the basis is linearly independent, so the
    # coefficients are unique; the colour matrix is the Gram matrix of the basis.
    assert np.allclose(dec.coefficients @ b, diagrams, atol=1e-13)
    assert np.linalg.matrix_rank(b) == dec.n_basis
    assert np.allclose(b.conj() @ b.T, dec.matrix, atol=1e-12)
    rng = np.random.default_rng(3)
    amps = rng.normal(size=(4, len(factors))) + 1j * rng.normal(size=(4, len(factors)))
    brute = (np.abs(amps @ diagrams) ** 2).sum(-1)
    jamps = dec.jamps(torch.tensor(amps))
    assert np.allclose(dec.colour_sum(jamps).numpy(), brute, rtol=1e-12)


def test_counts_match_madgraph():
    """Numbers of colour-ordered amplitudes MadGraph generates (NCOLOR)."""
    for legs, n_basis in [
        ([G] * 4, 6),
        ([G] * 5, 24),
        ([(-3, "u"), (3, "u"), G, G, G], 6),
        ([(-3, "u"), (3, "u"), (3, "u"), (-3, "u")], 2),
    ]:
        assert decompose(qcd_colour_factors(legs), reps_of(legs)).n_basis == n_basis


def test_six_gluons_and_quark_pair_with_five_gluons():
    """The largest sizes asked for (g g > g g g g: 510 colour factors, u u~ > 5 g: 1890,
    four-gluon vertices split): 120 single traces / 120 strings, as MadGraph's NCOLOR, in
    seconds, and colour sums agreeing with explicit 8^6 and 9 x 8^5 tensors for random
    amplitudes of 30 random diagrams (the explicit tensors are the slow part)."""
    for legs in ([G] * 6, [(-3, "u"), (3, "u")] + [G] * 5):
        factors = qcd_colour_factors(legs)
        dec = decompose(factors, reps_of(legs))
        assert dec.n_basis == 120 and dec.leading_flows.all()
        assert not dec.dependent_elements
        rng = np.random.default_rng(11)
        amps = np.zeros(len(factors), dtype=complex)
        total = np.zeros(np.prod([max(1, abs(r)) for r in dec.reps]), dtype=complex)
        for d in rng.choice(len(factors), size=30, replace=False):
            amps[d] = complex(*rng.normal(size=2))
            total += amps[d] * colour_tensor(factors[d], dec.reps).ravel()
        jamps = dec.jamps(torch.tensor(amps)[None])
        assert dec.colour_sum(jamps).item() == pytest.approx(np.sum(np.abs(total) ** 2), rel=1e-11)
        for k, l in [(0, 0), (0, 7), (5, 93)]:
            bk, bl = (colour_tensor(basis_element_factor(dec.basis[i]), dec.reps) for i in (k, l))
            assert dec.matrix[k, l] == pytest.approx(np.vdot(bk, bl).real, rel=1e-12, abs=1e-12)
        check_flows(dec)


# --------------------------------------------------------------------------------------
# Linear dependence: reduced to an independent basis with exact re-expansion.


def test_dependent_trace_products_are_reduced():
    # d d and f f in the three channels of four adjoint legs give the 6 single and 3 double
    # traces, which span only 8 dimensions for SU(3) (a Cayley-Hamilton relation).
    channels = ((0, 1, 2, 3), (0, 2, 1, 3), (0, 3, 1, 2))
    factors = [[(s, (a, b, -1)), (s, (c, d, -1))] for s in ("f", "d") for a, b, c, d in channels]
    dec = decompose(factors, (8, 8, 8, 8))
    assert dec.n_basis == 8 and len(dec.dependent_elements) == 1
    b = basis_tensors(dec)
    assert np.linalg.matrix_rank(b) == 8
    diagrams = np.stack([colour_tensor(f, dec.reps).ravel() for f in factors])
    assert np.allclose(dec.coefficients @ b, diagrams, atol=1e-13)
    assert np.allclose(b.conj() @ b.T, dec.matrix, atol=1e-13)
    dropped, expansion = dec.dependent_elements[0]
    rebuilt = sum(float(x) * colour_tensor(basis_element_factor(e), dec.reps).ravel()
                  for e, x in expansion)  # fmt: skip
    assert np.allclose(rebuilt, colour_tensor(basis_element_factor(dropped), dec.reps).ravel())


def test_three_quark_lines_and_a_gluon_are_reduced():
    # u u~ > d d~ s s~ g: 18 delta/string products (3! pairings x 3 places for the gluon)
    # in the 17-dimensional space of invariants of (3 x 3bar)^3 x 8: one relation at N = 3
    # (antisymmetrising four triplet indices vanishes).
    legs = [(-3, "u"), (3, "u"), (3, "d"), (-3, "d"), (3, "s"), (-3, "s"), G]
    factors = qcd_colour_factors(legs)
    dec = decompose(factors, reps_of(legs))
    assert dec.n_basis == 17 and len(dec.dependent_elements) == 1
    b = basis_tensors(dec)
    assert np.linalg.matrix_rank(b) == 17
    diagrams = np.stack([colour_tensor(f, dec.reps).ravel() for f in factors])
    assert np.allclose(dec.coefficients @ b, diagrams, atol=1e-13)
    check_flows(dec)


# --------------------------------------------------------------------------------------
# Flows, weights and the batched colour sum.


def test_leading_flows_per_diagram():
    # u u~ > d d~ with a gluon and a photon in the s-channel.
    reps = (-3, 3, 3, -3)
    gluon = [("T", (-1, 1, 0)), ("T", (-1, 2, 3))]
    photon = [("Identity", (1, 0)), ("Identity", (2, 3))]
    dec = decompose([gluon, photon], reps)
    assert dec.basis == ((Chain(1, (), 0), Chain(2, (), 3)), (Chain(1, (), 3), Chain(2, (), 0)))
    assert dec.coefficients_exact == (
        ((Fraction(-1, 6), 0), (Fraction(1, 2), 0)),
        ((Fraction(1), 0), (Fraction(0), 0)),
    )
    assert dec.leading.tolist() == [[False, True], [True, False]]
    check_flows(dec)
    jamps = torch.tensor([[1.0 + 1j, 2.0], [0.0, 1j], [0.0, 0.0]], dtype=torch.complex128)
    w = dec.leading_flow_weights(jamps)
    assert torch.allclose(w, torch.tensor([[1 / 3, 2 / 3], [0.0, 1.0], [0.5, 0.5]], dtype=w.dtype))
    w = dec.leading_flow_weights(jamps, diagram=torch.tensor([0, 1, 0]))
    assert torch.equal(w, torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=w.dtype))
    # The gluon's flow (LHE): u's colour to d, u~'s anticolour to d~.
    tags = dec.select_flow(jamps, torch.tensor([0.3, 0.3, 0.3]), diagram=0)
    assert tags[0].tolist() == [[502, 0], [0, 501], [502, 0], [0, 501]]


def test_only_leading_flows_get_weight():
    legs = [(-3, "u"), (3, "u"), (3, "d"), (-3, "d"), G]
    dec = decompose(qcd_colour_factors(legs), reps_of(legs))
    assert 0 < dec.leading_flows.sum() < dec.n_basis  # 1/N-suppressed flows exist
    rng = np.random.default_rng(5)
    jamps = torch.tensor(
        rng.normal(size=(50, 3, dec.n_basis)) + 1j * rng.normal(size=(50, 3, dec.n_basis))
    )
    w = dec.leading_flow_weights(jamps)
    assert torch.allclose(w.sum(-1), torch.ones(50, dtype=torch.float64), atol=1e-15)
    assert (w[:, ~torch.tensor(dec.leading_flows)] == 0).all()
    jamp2 = (jamps.abs() ** 2).sum(1)[:, torch.tensor(dec.leading_flows)]
    assert torch.allclose(
        w[:, torch.tensor(dec.leading_flows)], jamp2 / jamp2.sum(-1, keepdim=True)
    )
    u = torch.rand(50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    tags = dec.select_flow(jamps, u)
    k = torch.searchsorted(torch.cumsum(w, -1), u[:, None], right=True).squeeze(-1)
    assert torch.equal(tags, torch.tensor(dec.lhe_flows())[k])


def test_colour_sum_matches_numpy_double_sum():
    legs = [(-3, "u"), (3, "u"), G, G, G]
    dec = decompose(qcd_colour_factors(legs), reps_of(legs))
    rng = np.random.default_rng(2)
    j = rng.normal(size=(7, 2, dec.n_basis)) + 1j * rng.normal(size=(7, 2, dec.n_basis))
    expected = np.einsum("...k,kl,...l->...", j.conj(), dec.matrix, j)
    assert np.allclose(expected.imag, 0, atol=1e-12)
    got = dec.colour_sum(torch.tensor(j))
    assert got.shape == (7, 2) and got.dtype == torch.float64
    assert np.allclose(got.numpy(), expected.real, rtol=1e-13)
    got32 = dec.colour_sum(torch.tensor(j, dtype=torch.complex64))
    assert got32.dtype == torch.float32 and np.allclose(got32.numpy(), expected.real, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_helpers_on_cuda_match_cpu():
    legs = [(-3, "u"), (3, "u"), (3, "d"), (-3, "d"), G]
    factors = qcd_colour_factors(legs)
    dec = decompose(factors, reps_of(legs))
    gen = torch.Generator().manual_seed(4)
    amps = torch.randn(20, len(factors), dtype=torch.complex128, generator=gen)
    u = torch.rand(20, dtype=torch.float64, generator=gen)
    channel = torch.randint(0, len(factors), (20,), generator=gen)
    for fn in (
        lambda a, u, c: dec.colour_sum(dec.jamps(a)),
        lambda a, u, c: dec.leading_flow_weights(dec.jamps(a), c),
        lambda a, u, c: dec.select_flow(dec.jamps(a), u, c),
    ):
        cpu = fn(amps, u, channel)
        gpu = fn(amps.cuda(), u.cuda(), channel.cuda())
        assert gpu.device.type == "cuda"
        assert torch.allclose(gpu.cpu(), cpu, rtol=1e-12, atol=0)


def test_colour_singlets():
    dec = decompose([[], []], (1, 1, 1, 1))
    assert dec.basis == ((),) and dec.matrix_exact == ((1,),) and dec.flows.sum() == 0
    assert dec.coefficients.tolist() == [[1], [1]]


def test_bad_input_is_reported():
    with pytest.raises(ProcessError, match="Epsilon"):
        decompose([[("Epsilon", (0, 1, 2))]], (3, 3, 3))
    with pytest.raises(ProcessError, match="representation 6"):
        decompose([[("T", (0, 1, 2))]], (8, 3, 6))
    with pytest.raises(ProcessError, match="leg 2 .* exactly once"):
        decompose([[("T", (0, 1, 2))]], (8, 3, 3))  # a 3 in the j slot
    with pytest.raises(ProcessError, match="internal index"):
        decompose([[("T", (0, 1, -1)), ("T", (-2, -1, 2))]], (8, 3, -3))
    with pytest.raises(ProcessError, match="closed Identity loop"):
        decompose([[("Identity", (-1, -2)), ("Identity", (-2, -1))]], ())
    with pytest.raises(ProcessError, match="colour singlet"):
        decompose([[("T", (0, 1, 2))]], (1, 3, -3))
