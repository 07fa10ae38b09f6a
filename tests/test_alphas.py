"""alpha_s running as MadGraph's alfas_functions.f: reference value, RGE solutions, thresholds.

The references are independent of evgen.alphas: the one-loop solution written out, and the
two- and three-loop renormalisation group equations integrated numerically with scipy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from evgen.alphas import MADGRAPH_MZ, MADGRAPH_QUARK_MASSES, AlphaS, alphas_from_pdf

F64 = torch.float64
MZ, MC, MB = 91.188, 1.42, 4.7


def beta(nf: int) -> tuple[float, float, float]:
    """da/dln(Q^2) = -b0 a^2 (1 + c1 a + c2 a^2) in the MSbar scheme."""
    b0 = (33 - 2 * nf) / (12 * math.pi)
    c1 = (153 - 19 * nf) / (2 * math.pi * (33 - 2 * nf))
    c2 = 3 * (2857 / 2 - 5033 * nf / 18 + 325 * nf**2 / 54) / (16 * math.pi**2 * (33 - 2 * nf))
    return b0, c1, c2


def rge(a0: float, q0: float, q1: float, nf: int, loops: int) -> float:
    """alpha_s at q1 from a0 at q0 by integrating the RGE (fixed nf) to 1e-13."""
    b0, c1, c2 = beta(nf)
    c1, c2 = (c1 if loops >= 2 else 0.0), (c2 if loops >= 3 else 0.0)
    sol = solve_ivp(
        lambda t, a: -b0 * a**2 * (1 + c1 * a + c2 * a**2),
        (2 * math.log(q0), 2 * math.log(q1)),
        [a0],
        method="DOP853",
        rtol=1e-13,
        atol=1e-16,
    )
    return float(sol.y[0, -1])


def rge_with_thresholds(a_mz: float, q: float, loops: int) -> float:
    """Run from MZ with nf = 5 down to m_b, 4 down to m_c, 3 below; continuous matching."""
    if q >= MB:
        return rge(a_mz, MZ, q, 5, loops)
    a_b = rge(a_mz, MZ, MB, 5, loops)
    if q >= MC:
        return rge(a_b, MB, q, 4, loops)
    return rge(rge(a_b, MB, MC, 4, loops), MC, q, 3, loops)


SCALES = [1.0, 1.3, 1.42, 2.0, 3.0, 4.7, 6.0, 20.0, 91.188, 173.0, 500.0, 2000.0, 1e4]


def test_alpha_s_at_mz_is_the_input():
    """At Q = MZ (MadGraph's 91.188 GeV) the running starts from t = 0: the input itself."""
    for loops in (1, 2, 3):
        for a_mz in (0.118, 0.130):
            got = float(AlphaS(a_mz, n_loops=loops)(torch.tensor(MZ**2, dtype=F64)))
            assert got == pytest.approx(a_mz, abs=1e-12)
    assert MADGRAPH_MZ == MZ and dict(MADGRAPH_QUARK_MASSES) == {4: MC, 5: MB}


def test_one_loop_is_the_analytic_solution():
    """One loop: a(Q) = a_ref / (1 + b0 a_ref ln(Q^2/Q_ref^2)) per nf region, exactly."""
    a = AlphaS(0.130, n_loops=1)
    q = torch.tensor(SCALES, dtype=F64)
    got = a(q**2).numpy()

    def one_loop(a0, q0, q1, nf):
        return a0 / (1 + beta(nf)[0] * a0 * math.log(q1**2 / q0**2))

    a_b = one_loop(0.130, MZ, MB, 5)
    a_c = one_loop(a_b, MB, MC, 4)
    for g, s in zip(got, SCALES, strict=True):
        if s >= MB:
            want = one_loop(0.130, MZ, s, 5)
        elif s >= MC:
            want = one_loop(a_b, MB, s, 4)
        else:
            want = one_loop(a_c, MC, s, 3)
        assert g == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("a_mz", [0.118, 0.130])
def test_two_loop_agrees_with_the_rge(a_mz):
    """Two loops: MadGraph solves the exact implicit two-loop solution by Newton steps,
    stopping after the first step below 5e-4 relative. Newton's error after a step is of
    the order of the square of that step, at most ~2.5e-7 relative: hence 1e-6."""
    a = AlphaS(a_mz, n_loops=2)
    got = a(torch.tensor(SCALES, dtype=F64) ** 2).numpy()
    want = np.array([rge_with_thresholds(a_mz, s, 2) for s in SCALES])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # and it is really two-loop: one-loop running differs by percents at low scales
    one = AlphaS(a_mz, n_loops=1)(torch.tensor(SCALES, dtype=F64) ** 2).numpy()
    assert np.max(np.abs(one / want - 1)) > 0.05


def test_three_loop_agrees_with_the_rge():
    a = AlphaS(0.118, n_loops=3)
    got = a(torch.tensor(SCALES, dtype=F64) ** 2).numpy()
    want = np.array([rge_with_thresholds(0.118, s, 3) for s in SCALES])
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("loops", [1, 2])
def test_continuous_across_thresholds(loops):
    """alpha_s is continuous at m_b and m_c (nf changes, the value does not), and the nf
    switch happens at Q = m (MadGraph: Q < BMASS runs with nf = 4)."""
    a = AlphaS(0.130, n_loops=loops)
    for m, nf_below in ((MB, 4), (MC, 3)):
        q = torch.tensor([m * (1 - 1e-12), m, m * (1 + 1e-12)], dtype=F64)
        values = a(q**2)
        assert a.n_flavours(q**2).tolist() == [nf_below, nf_below + 1, nf_below + 1]
        assert torch.allclose(values, values[1], rtol=1e-10, atol=0)
    # Slopes jump across the threshold: d alpha/d ln Q^2 = -b0(nf) alpha^2 (1 + c1(nf) alpha).
    eps = 1e-4
    q = torch.tensor([MB * (1 - 2 * eps), MB * (1 - eps), MB * (1 + eps), MB * (1 + 2 * eps)])
    v = a(q.to(F64) ** 2)
    slope_below, slope_above = float(v[1] - v[0]), float(v[3] - v[2])
    a_b = float(a(torch.tensor(MB**2, dtype=F64)))
    (b4, c4, _), (b5, c5, _) = beta(4), beta(5)
    c4, c5 = (c4, c5) if loops == 2 else (0.0, 0.0)
    ratio = b4 * (1 + c4 * a_b) / (b5 * (1 + c5 * a_b))
    assert slope_below / slope_above == pytest.approx(ratio, rel=1e-3)


def test_stored_threshold_values():
    a = AlphaS(0.130)
    at = a.alpha_s_at_thresholds
    assert at[5] == pytest.approx(rge(0.130, MZ, MB, 5, 2), rel=1e-6)
    assert at[4] == pytest.approx(rge(at[5], MB, MC, 4, 2), rel=1e-6)
    assert float(a(torch.tensor(MB**2, dtype=F64))) == pytest.approx(at[5], rel=1e-14)


def test_top_threshold_option():
    """With max_flavours = 6 and a top threshold, nf = 6 above it (slower running)."""
    five = AlphaS(0.118)
    six = AlphaS(0.118, quark_masses={4: MC, 5: MB, 6: 173.0}, max_flavours=6)
    q2 = torch.tensor([100.0, 172.0, 1000.0, 1e4], dtype=F64) ** 2
    a5, a6 = five(q2), six(q2)
    assert torch.allclose(a5[:2], a6[:2], rtol=1e-14, atol=0)
    assert torch.all(a6[2:] > a5[2:])
    assert float(a6[3]) == pytest.approx(
        rge(rge(0.118, MZ, 173.0, 5, 2), 173.0, 1e4, 6, 2), rel=1e-6
    )


def test_batched_shapes_and_input_checks():
    a = AlphaS(0.118)
    q2 = torch.tensor([[100.0, 1e4], [1e6, 25.0]], dtype=F64)
    out = a(q2)
    assert out.shape == (2, 2) and out.dtype == F64
    for i in range(2):
        for j in range(2):
            assert float(out[i, j]) == float(a(q2[i, j]))
    assert float(a(1e4)) == float(out[0, 1])
    # Below the one-loop Landau pole MadGraph's two-loop NEWTON1 returns 9d98.
    low = AlphaS(0.130)(torch.tensor([0.2**2, 1.0**2], dtype=F64))
    assert float(low[0]) == 9e98 and 0.5 < float(low[1]) < 1.0
    with pytest.raises(ValueError, match="Q\\^2 must be > 0"):
        a(torch.tensor([100.0, 0.0], dtype=F64))
    with pytest.raises(ValueError, match="n_loops"):
        AlphaS(0.118, n_loops=4)
    with pytest.raises(ValueError, match="threshold of PDG id 6"):
        AlphaS(0.118, max_flavours=6)
    with pytest.raises(ValueError, match="alpha_s\\(MZ\\) must be > 0"):
        AlphaS(-0.1)


def test_alphas_from_pdf_uses_madgraph_settings():
    """MadGraph takes only alpha_s(MZ) from the set; MZ and thresholds are its own."""

    class FakeSet:
        name = "FAKE"
        alpha_s_mz = 0.130
        mz = 91.1876
        quark_masses = {4: 1.414213562, 5: 4.75}

    a = alphas_from_pdf(FakeSet())
    assert (a.alpha_s_mz, a.mz, a.n_loops, a.thresholds) == (0.130, MZ, 2, {4: MC, 5: MB})
    own = alphas_from_pdf(FakeSet(), mz=FakeSet.mz, quark_masses=FakeSet.quark_masses)
    q2 = torch.tensor([91.1876**2], dtype=F64)
    assert float(own(q2)) == pytest.approx(0.130, abs=1e-12)
    # MZ = 91.188 vs 91.1876 moves alpha_s(91.1876 GeV) by -b0 a^2 (1 + c1 a) d ln Q^2
    # = +9.5e-8 (7e-7 relative)
    b0, c1, _ = beta(5)
    shift = b0 * 0.130**2 * (1 + c1 * 0.130) * 2 * math.log(MZ / 91.1876)
    assert float(a(q2)) - 0.130 == pytest.approx(shift, rel=1e-3)
