"""The sm model as data: couplings against the Standard Model's Feynman rules written from
SMParameters' own quantities (e, g_w, g_Z, MW, MZ), and the structure of the vertices."""

from __future__ import annotations

import cmath
import math
import re

import pytest
import torch

from evgen.params import SMParameters, ZPrime, ZPrimeCouplings
from processes.auto.model import MTA, model_for, sm_model
from processes.particles import charge

P = SMParameters()


@pytest.fixture(scope="module")
def gc() -> dict[str, complex]:
    return sm_model().coupling_values(P)


def _close(a: complex, b: complex, rel: float = 1e-12) -> bool:
    return abs(a - b) <= rel * max(abs(a), abs(b))


def test_derived_parameters_follow_smparameters() -> None:
    """MW, sw, e of the model equal SMParameters' (same G_mu scheme formulas)."""
    par = sm_model().parameters(P)
    assert par["MW"] == pytest.approx(P.mw, rel=1e-14)
    assert par["sw"] ** 2 == pytest.approx(P.sw2, rel=1e-14)
    assert par["ee"] == pytest.approx(P.ee, rel=1e-14)
    # vev from G_F: v = (sqrt(2) G_F)^(-1/2) holds in this scheme (tree level).
    assert par["vev"] == pytest.approx((math.sqrt(2.0) * P.gf) ** -0.5, rel=1e-12)


def test_gauge_couplings(gc: dict[str, complex]) -> None:
    """Photon i e Q, W i g_w/sqrt2, Z chiral couplings i g_Z (T3 - Q sw2), -i g_Z Q sw2
    (MadGraph's sign: the covariant derivative D = d - i e Q A), triple and quartic gauge."""
    e, gw, gz = P.ee, P.gw, P.gz
    cw = math.sqrt(P.cw2)
    assert _close(gc["GC_1"], 1j * e * charge(1))
    assert _close(gc["GC_2"], 1j * e * charge(2))
    assert _close(gc["GC_3"], 1j * e * charge(11))
    for name in ("GC_40", "GC_41", "GC_45", "GC_49", "GC_100", "GC_104", "GC_108"):
        assert _close(gc[name], 1j * gw / math.sqrt(2.0))
    # (left, right) from FFV2 = g P_L, FFV3 = g P_L - 2 g P_R, FFV4 = ... + 2 g P_R,
    # FFV5 = ... + 4 g P_R: down (GC_50, GC_58), up (GC_51, GC_58), lepton (GC_50, GC_59).
    chiral = {
        1: (gc["GC_50"] + gc["GC_58"], -2 * gc["GC_58"]),
        2: (gc["GC_51"] + gc["GC_58"], 4 * gc["GC_58"]),
        11: (gc["GC_50"] + gc["GC_59"], 2 * gc["GC_59"]),
        12: (gc["GC_62"], 0.0),
    }
    for f, (left, right) in chiral.items():
        zl, zr = P.z_couplings(f)
        assert _close(left, 1j * zl), f
        assert abs(right - 1j * zr) <= 1e-12 * gz, f
    assert _close(gc["GC_4"], 1j * e)  # a W W
    assert _close(gc["GC_53"], 1j * gw * cw)  # W W Z
    assert _close(gc["GC_5"], 1j * e * e)  # a a W W
    assert _close(gc["GC_35"], -1j * gw * gw)  # W W W W
    assert _close(gc["GC_36"], 1j * gw * gw * cw * cw)  # W W Z Z
    assert _close(gc["GC_57"], -2j * e * gw * cw)  # a W W Z


def test_higgs_couplings(gc: dict[str, complex]) -> None:
    """h V V: i g_w MW and i g_Z MZ; h V V h: i g^2/2; h f f: -i m_f / v; h^3: -3i MH^2/v;
    h^4: -3i MH^2/v^2, with v = 2 MW / g_w."""
    v = 2.0 * P.mw / P.gw
    assert _close(gc["GC_72"], 1j * P.gw * P.mw)
    assert _close(gc["GC_81"], 1j * P.gz * P.mz)
    assert _close(gc["GC_34"], 0.5j * P.gw**2)
    assert _close(gc["GC_65"], 0.5j * P.gz**2)
    assert _close(gc["GC_94"], -1j * P.mt / v)
    assert _close(gc["GC_83"], -1j * P.mb / v)
    assert _close(gc["GC_99"], -1j * MTA / v)
    assert _close(gc["GC_69"], -3j * P.mh**2 / v)
    assert _close(gc["GC_33"], -3j * P.mh**2 / v**2)


def test_strong_couplings_take_alpha_s_per_event() -> None:
    """GC_10 = -g_s (ggg), GC_11 = i g_s (qqg), GC_12 = i g_s^2 (gggg), g_s = sqrt(4 pi a_s),
    per event from an alpha_s tensor; only these depend on alpha_s."""
    model = sm_model()
    a_s = torch.tensor([0.118, 0.09, 0.2], dtype=torch.float64)
    values = model.coupling_values(P, alpha_s=a_s)
    gs = torch.sqrt(4 * math.pi * a_s)
    assert torch.allclose(values["GC_10"], (-gs).to(torch.complex128), rtol=1e-14, atol=0)
    assert torch.allclose(values["GC_11"], 1j * gs.to(torch.complex128), rtol=1e-14, atol=0)
    assert torch.allclose(values["GC_12"], 1j * (gs**2).to(torch.complex128), rtol=1e-14, atol=0)
    dependent = {n for n, c in model.couplings.items() if c.depends_on_alpha_s}
    assert dependent == {"GC_10", "GC_11", "GC_12"}
    assert all(isinstance(values[n], complex) for n in model.couplings if n not in dependent)
    # A number gives numbers; None means params.alpha_s.
    assert model.coupling_values(P)["GC_11"] == pytest.approx(1j * math.sqrt(4 * math.pi * 0.118))


def test_orders(gc: dict[str, complex]) -> None:
    """QCD couplings carry QCD orders, all others QED (1 per power of e, 2 for e^2)."""
    model = sm_model()
    for name, c in model.couplings.items():
        assert set(c.order) <= {"QCD", "QED"}
        if name in ("GC_10", "GC_11"):
            assert c.order == {"QCD": 1}
    assert model.couplings["GC_12"].order == {"QCD": 2}
    assert model.couplings["GC_35"].order == {"QED": 2}
    assert model.couplings["GC_69"].order == {"QED": 1}
    assert model.order_hierarchy == {"QCD": 1, "QED": 2}


_SPIN_OF_LETTER = {"F": 2, "V": 3, "S": 1}


def test_vertex_structure() -> None:
    """Every vertex: Lorentz names match the particles' spins, electric charge and colour
    are conserved, colour strings only index coloured positions, couplings of one vertex
    share their orders, and the conjugate vertex exists (hermiticity)."""
    model = sm_model()
    multisets = {tuple(sorted(v.particles)) for v in model.vertices}
    for v in model.vertices:
        spins = tuple(model.spin(p) for p in v.particles)
        for name in v.lorentz:
            letters = re.match(r"[A-Z]+?(?=\d)", name).group(0)
            assert tuple(_SPIN_OF_LETTER[c] for c in letters) == spins, (v.name, name)
        assert abs(sum(model.charge(p) for p in v.particles)) < 1e-12, v.name
        coloured = {k + 1 for k, p in enumerate(v.particles) if model.colour(p) != 1}
        for text in v.colour:
            groups = re.findall(r"\(([^)]*)\)", text)
            used = {int(x) for group in groups for x in group.split(",") if int(x) > 0}
            assert used == coloured, (v.name, text)
        reps = sorted(model.colour(p) for p in v.particles if model.colour(p) != 1)
        assert reps in ([], [-3, 3], [-3, 3, 8], [8, 8, 8], [8, 8, 8, 8]), (v.name, reps)
        orders = [model.couplings[c].order for c in v.couplings.values()]
        assert all(o == orders[0] for o in orders), v.name
        assert tuple(sorted(model.anti(p) for p in v.particles)) in multisets, v.name
        assert {i for i, _ in v.couplings} == set(range(len(v.colour)))


def test_madgraph_vertex_content() -> None:
    """A few vertices exactly as MG5's sm vertices.py: particle order, colour, Lorentz."""
    model = sm_model()
    v = model.vertex_named("V_37")
    assert v.particles == (21, 21, 21, 21)
    assert v.colour[0] == "f(-1,1,2)*f(3,4,-1)"
    assert v.terms(0) == (("VVVV1", "GC_12"),)
    assert v.terms(1) == (("VVVV3", "GC_12"),)
    assert v.terms(2) == (("VVVV4", "GC_12"),)
    v = model.vertex_named("V_79")
    assert v.particles == (-1, 1, 23) and v.terms(0) == (("FFV2", "GC_50"), ("FFV3", "GC_58"))
    v = model.vertex_named("V_89")
    assert v.particles == (-2, 1, 24) and v.lorentz == ("FFV2",)
    assert model.vertex_named("V_36").colour == ("f(1,2,3)",)
    # Higgs Yukawas: t, b, tau only (restrict_default: ye = ym = yc = 0).
    yukawa = {
        abs(v.particles[1]) for v in model.vertices if 25 in v.particles and len(v.particles) == 3
    }
    assert yukawa == {5, 6, 15, 24, 23, 25}


def test_masses_and_variants() -> None:
    """sm: massive b (params.mb) and tau (1.777); sm-no_b_mass: massless b, no h b b~."""
    sm = sm_model()
    nob = sm_model(b_mass=False)
    assert sm.mass(5, P) == P.mb and sm.mass(-15, P) == MTA and sm.mass(24, P) == P.mw
    assert sm.width(6, P) == P.wt and sm.width(1, P) == 0.0
    assert nob.mass(5, P) == 0.0 and nob.name == "sm-no_b_mass"
    assert "V_78" not in {v.name for v in nob.vertices}
    assert model_for(P.with_overrides(mb=0.0)).name == "sm-no_b_mass"
    assert nob.coupling_values(P)["GC_83"] == 0


def test_zprime_couplings() -> None:
    """With a Z', FFV2/FFV3 terms combine to i (g_L P_L + g_R P_R) of params.zprime_couplings."""
    params = P.with_overrides(
        zprime=ZPrime(2000.0, couplings=ZPrimeCouplings((0.3, -0.1), (0.2, 0.4), (0.5, 0.25)))
    )
    model = model_for(params)
    assert model.mass(32, params) == 2000.0
    values = model.coupling_values(params)
    for f in (1, 2, 11):
        v = next(v for v in model.vertices if v.particles == (-f, f, 32))
        (l1, c1), (l2, c2) = v.terms(0)
        assert (l1, l2) == ("FFV2", "FFV3")
        left, right = values[c1] + values[c2], -2 * values[c2]
        zl, zr = params.zprime_couplings(f)
        assert cmath.isclose(left, 1j * zl, rel_tol=1e-13)
        assert cmath.isclose(right, 1j * zr, rel_tol=1e-13)
