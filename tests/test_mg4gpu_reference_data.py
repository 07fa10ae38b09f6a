"""MadGraph's own |M|^2 (madgraph4gpu's generated C++) as reference data, and evgen's
analytic library against it.

``tests/data/mg4gpu/<process>.json`` come from ``benchmarks/madgraph4gpu.py refs`` (see
their ``provenance``): per process a ``shipped_dump`` set (the first events of
madgraph4gpu's own test dump, massless RAMBO momenta, so tops are off shell there) and an
``on_shell`` set (massive RAMBO points whose |M|^2 the madgraph4gpu code built from its
public sources evaluated, with the shipped param_card and, for top processes, with the
top width set to zero). Here:

- the files are well formed and self-consistent: shapes, provenance, the param_card,
  the normalisation (helicity and colour averages, identical-particle factor) recomputed
  from the PDG ids;
- momenta conserve four-momentum and sit on the mass shells they were generated on, to
  1e-8 relative;
- the dump values re-evaluated by the built code agree with the shipped ones (1e-12:
  the dump prints 16 digits and the build differs only in rounding);
- evgen's analytic e+ e- > mu+ mu- and g g > t t~ agree with MadGraph to 1e-8 relative
  (double-precision rounding with a wide margin), g g > t t~ with the top width zero: the
  shipped card gives the t-channel top propagators the width WT, which the analytic
  formula (MadGraph's ``zerowidth_tchannel`` convention) leaves out; that difference is
  checked separately to be the second-order width effect it must be.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from mg4gpu_data import load_reference, params_from_card  # noqa: E402

from processes import load

DATA = Path(__file__).resolve().parent / "data" / "mg4gpu"
KEYS = ["ee_mumu", "gg_tt", "gg_ttg", "gg_ttgg", "gg_ttggg"]
SETS = ["shipped_dump", "on_shell"]
NAMES = {
    "ee_mumu": "e+ e- > mu+ mu-",
    "gg_tt": "g g > t t~",
    "gg_ttg": "g g > t t~ g",
    "gg_ttgg": "g g > t t~ g g",
    "gg_ttggg": "g g > t t~ g g g",
}
#: (helicities, colours) of each incoming particle type: gluon, e+-.
INITIAL_DOF = {21: (2, 8), 11: (2, 1), -11: (2, 1)}
#: Kinematics are exact up to float64 rounding; 1e-8 relative leaves a wide margin.
KINEMATICS_RTOL = 1e-8
#: evgen's closed forms against MadGraph's HELAS code: both float64 (observed ~1e-15).
ME_RTOL = 1e-8


def _physical_mass(card: dict, pdg: int) -> float:
    """Pole mass (GeV) of an external particle of these processes in MadGraph's ``sm``."""
    return {6: card["MT"], 21: 0.0, 11: 0.0, 13: 0.0}[abs(pdg)]


def _tensor(values: list) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _mass2(p: torch.Tensor) -> torch.Tensor:
    return p[..., 0] ** 2 - (p[..., 1:] ** 2).sum(-1)


# --------------------------------------------------------------------------- well formed


def test_every_process_has_a_file():
    assert sorted(p.stem for p in DATA.glob("*.json")) == sorted(KEYS)


@pytest.mark.parametrize("key", KEYS)
def test_well_formed(key):
    data = load_reference(key)
    assert data["process"] == NAMES[key]
    pdg = data["pdg"]
    n_ext = len(pdg)
    assert n_ext == len(NAMES[key].replace(">", "").split())
    prov = data["provenance"]
    assert prov["repository"] == "https://github.com/madgraph5/madgraph4gpu"
    assert re.fullmatch(r"[0-9a-f]{40}", prov["commit"]), prov["commit"]
    for field in ("directory", "cpp_process", "param_card", "dump"):
        assert prov[field].startswith("epochX/cudacpp/"), prov[field]
    card = data["param_card"]
    for name in ("MT", "WT", "MZ", "WZ", "WW", "MH", "WH", "MB", "aEWM1", "Gf", "aS"):
        assert math.isfinite(card[name]) and card[name] > 0, name
    # alpha_s: the fixed g_s of madgraph4gpu's check_sa.cc / runTest.cc is sqrt(4 pi aS)
    assert math.sqrt(4 * math.pi * data["alpha_s"]) == pytest.approx(1.2177157847767195, 1e-15)
    assert data["alpha_s"] == card["aS"]
    assert set(data["sets"]) == set(SETS)
    for name, s in data["sets"].items():
        p = _tensor(s["momenta"])
        n_ev = p.shape[0]
        assert n_ev >= 4 and p.shape == (n_ev, n_ext, 4), name
        assert len(s["momentum_masses"]) == n_ext
        me_fields = [f for f in s if f.startswith("me")]
        assert "me" in me_fields
        for f in me_fields:
            me = _tensor(s[f])
            assert me.shape == (n_ev,) and torch.isfinite(me).all() and (me > 0).all(), f
    if 6 in pdg:
        assert "me_top_width_zero" in data["sets"]["on_shell"]


@pytest.mark.parametrize("key", KEYS)
def test_normalisation_matches_the_particles(key):
    """helcolDenominators = initial helicities x initial colours x prod(n_i!) over groups of
    identical final-state particles, each recomputed here from the PDG ids: MadGraph's
    |M|^2 includes the 1/n! that evgen's Process.matrix_element leaves out."""
    data = load_reference(key)
    norm, pdg = data["normalisation"], data["pdg"]
    hel = math.prod(INITIAL_DOF[i][0] for i in pdg[:2])
    col = math.prod(INITIAL_DOF[i][1] for i in pdg[:2])
    iden = math.prod(math.factorial(pdg[2:].count(i)) for i in set(pdg[2:]))
    assert norm["initial_helicity_average"] == hel
    assert norm["initial_colour_average"] == col
    assert norm["identical_final_state_factor"] == iden
    assert norm["helcol_denominator"] == hel * col * iden
    assert norm["identical_particle_factor_included"] == (iden > 1)
    assert norm["averaged_over_initial_helicities_and_colours"] is True
    expected_iden = {"gg_ttgg": 2, "gg_ttggg": 6}.get(key, 1)
    assert iden == expected_iden


@pytest.mark.parametrize("key", KEYS)
def test_param_card_w_mass_matches_evgen(key):
    """MadGraph prints its derived MW (7 digits) in the card; evgen derives it from the
    same (aEWM1, Gf, MZ) inputs in the G_mu scheme."""
    card = load_reference(key)["param_card"]
    assert params_from_card(card).mw == pytest.approx(card["MW_card"], rel=1e-6)


# --------------------------------------------------------------------------- kinematics


@pytest.mark.parametrize("set_name", SETS)
@pytest.mark.parametrize("key", KEYS)
def test_momentum_conservation(key, set_name):
    s = load_reference(key)["sets"][set_name]
    p = _tensor(s["momenta"])
    balance = p[:, :2].sum(1) - p[:, 2:].sum(1)
    assert balance.abs().max().item() <= KINEMATICS_RTOL * s["sqrt_s"]
    assert _mass2(p[:, :2].sum(1)).sqrt() == pytest.approx(s["sqrt_s"], rel=KINEMATICS_RTOL)


@pytest.mark.parametrize("set_name", SETS)
@pytest.mark.parametrize("key", KEYS)
def test_mass_shell(key, set_name):
    """Each particle on the shell of the mass it was generated with; a set says it is
    'on_shell' exactly when those are the param_card's physical masses."""
    data = load_reference(key)
    s = data["sets"][set_name]
    p = _tensor(s["momenta"])
    m = _tensor(s["momentum_masses"])
    off = (_mass2(p) - m**2).abs() / p[..., 0] ** 2
    assert off.max().item() <= KINEMATICS_RTOL
    physical = [_physical_mass(data["param_card"], i) for i in data["pdg"]]
    assert s["on_shell"] == (s["momentum_masses"] == physical)
    if set_name == "on_shell":
        assert s["on_shell"]


def test_shipped_top_momenta_are_massless():
    """madgraph4gpu's RAMBO is massless: its own reference tops have p^2 = 0, not MT^2,
    so evgen (on-shell kinematics) can be compared only on the 'on_shell' sets."""
    data = load_reference("gg_tt")
    s = data["sets"]["shipped_dump"]
    assert s["on_shell"] is False
    p = _tensor(s["momenta"])
    assert (_mass2(p[:, 2:]).abs() < 1e-6).all()


@pytest.mark.parametrize("key", KEYS)
def test_recomputed_dump_matches_shipped(key):
    """The code built from the sources reproduces the repository's own dump values."""
    s = load_reference(key)["sets"]["shipped_dump"]
    shipped, recomputed = _tensor(s["me"]), _tensor(s["me_recomputed"])
    assert ((recomputed - shipped) / shipped).abs().max().item() < 1e-12


# --------------------------------------------------------------------------- vs evgen


@pytest.mark.parametrize("set_name", SETS)
def test_ee_mumu_matches_analytic(set_name, single_thread):
    """Photon + Z (fixed width) s-channel helicity amplitudes vs MadGraph's HELAS."""
    data = load_reference("ee_mumu")
    s = data["sets"][set_name]
    process = load("e+ e- > mu+ mu-", params_from_card(data["param_card"]))
    me = process.matrix_element(_tensor(s["momenta"]))
    ref = _tensor(s["me"])
    assert ((me - ref) / ref).abs().max().item() < ME_RTOL


def test_gg_tt_matches_analytic_at_zero_top_width(single_thread):
    """The closed form (Combridge; ESW Ch. 10) vs MadGraph's three diagrams with the
    t-channel top width off."""
    data = load_reference("gg_tt")
    s = data["sets"]["on_shell"]
    process = load("g g > t t~", params_from_card(data["param_card"]))
    me = process.matrix_element(_tensor(s["momenta"]), alpha_s=data["alpha_s"])
    ref = _tensor(s["me_top_width_zero"])
    assert ((me - ref) / ref).abs().max().item() < ME_RTOL


def test_gg_tt_shipped_card_differs_by_the_t_channel_top_width(single_thread):
    """With the shipped card MadGraph puts i MT WT in the t- and u-channel top propagators.

    With eps_x = MT WT / (MT^2 - x), x = t, u, each propagator product in the helicity sum
    changes by a real factor in [1 - 2 eps^2, 1] (for 2 -> 2 the helicity-summed
    interference numerators are real, so no first-order term survives). The analytic
    formula has no width: it must differ, but only at second order, here within
    4 max(eps_t^2, eps_u^2) per point (the observed ratio is <= 1).
    """
    data = load_reference("gg_tt")
    card = data["param_card"]
    s = data["sets"]["on_shell"]
    p = _tensor(s["momenta"])
    process = load("g g > t t~", params_from_card(card))
    me = process.matrix_element(p, alpha_s=data["alpha_s"])
    ref = _tensor(s["me"])
    rel = ((me - ref) / ref).abs()
    mt2, gamma = card["MT"] ** 2, card["MT"] * card["WT"]
    t = _mass2(p[:, 0] - p[:, 2])
    u = _mass2(p[:, 0] - p[:, 3])
    eps2 = torch.maximum((gamma / (mt2 - t)) ** 2, (gamma / (mt2 - u)) ** 2)
    assert rel.max().item() > ME_RTOL  # the width is visible in these numbers
    assert (rel <= 4 * eps2).all(), (rel / eps2).tolist()
