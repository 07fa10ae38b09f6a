"""Multi-channel plumbing: single-diagram-enhanced (SDE) prior weights of every process,
the channels a run builds (one mapping per resonance, identical mappings merged), and the
multi-channel integrand f(r, channel) = alpha_c(x) f(x) J_c(r)."""

from __future__ import annotations

import math

import pytest
import torch

from evgen.card import parse_card
from evgen.params import SMParameters, ZPrime
from evgen.phasespace import BreitWignerMapping, MixtureMapping, PowerLawMapping
from evgen.setup import prepare
from processes import load, registered_names

ZP = SMParameters(zprime=ZPrime(1500.0))


def two_to_two(sqrt_s, cos_theta, phi: float = 0.4, m3: float = 0.0, m4: float = 0.0):
    """(n, 4, 4) CM-frame momenta: p1 along +z, p2 along -z, p3 at (theta, phi)."""
    rs = torch.as_tensor(sqrt_s, dtype=torch.float64)
    c = torch.as_tensor(cos_theta, dtype=torch.float64)
    rs, c = torch.broadcast_tensors(rs, c)
    s = rs * rs
    q = torch.sqrt((s - (m3 + m4) ** 2) * (s - (m3 - m4) ** 2)) / (2 * rs)
    sn = torch.sqrt(1 - c * c)
    n = torch.stack([sn * math.cos(phi), sn * math.sin(phi), c], -1) * q[:, None]
    zero = torch.zeros_like(rs)
    p1 = torch.stack([rs / 2, zero, zero, rs / 2], -1)
    p2 = torch.stack([rs / 2, zero, zero, -rs / 2], -1)
    p3 = torch.cat([torch.sqrt(q * q + m3 * m3)[:, None], n], -1)
    p4 = torch.cat([torch.sqrt(q * q + m4 * m4)[:, None], -n], -1)
    return torch.stack([p1, p2, p3, p4], 1)


# --- SDE weights -------------------------------------------------------------------------


@pytest.mark.parametrize("params", [SMParameters(), ZP], ids=["sm", "zprime"])
@pytest.mark.parametrize("name", registered_names())
def test_channel_weights_are_a_distribution(name: str, params: SMParameters) -> None:
    """Every process: (n, n_channels), non-negative, rows summing to 1."""
    proc = load(name, params, n_flavours=5)
    gen = torch.Generator().manual_seed(len(name))
    threshold = proc.masses[2] + proc.masses[3]
    roots = threshold + 1.0 + 3000.0 * torch.rand(64, generator=gen, dtype=torch.float64)
    cos = 2 * torch.rand(64, generator=gen, dtype=torch.float64) - 1
    p = two_to_two(roots, cos, m3=proc.masses[2], m4=proc.masses[3])
    alpha = proc.channel_weights(p)
    assert alpha.shape == (64, len(proc.channels()))
    assert bool((alpha >= 0).all())
    torch.testing.assert_close(
        alpha.sum(dim=1), torch.ones(64, dtype=torch.float64), rtol=0, atol=1e-14
    )


def test_drell_yan_dominant_channel_is_the_resonance_at_its_peak() -> None:
    """u u~ > e+ e- with a 1.5 TeV SSM Z': photon at low mass, Z at MZ, Z' at MZ'."""
    proc = load("u u~ > e+ e-", ZP)
    assert [c.propagators[0].pdg for c in proc.channels()] == [22, 23, 32]
    p = two_to_two([20.0, ZP.mz, 1500.0, 1500.0], [0.3, -0.5, 0.2, 0.9])
    alpha = proc.channel_weights(p)
    assert alpha.argmax(dim=1).tolist() == [0, 1, 2, 2]
    assert float(alpha[1, 1]) > 0.99 and float(alpha[2, 2]) > 0.99
    # SM: two channels, the Z' column is absent
    assert load("u u~ > e+ e-").channel_weights(p).shape == (4, 2)


def test_gg_ttbar_channel_weights_from_propagators() -> None:
    """s, t, u ~ (1, 1/tau1^2, 1/tau2^2): (1, 4, 4)/9 at 90 degrees; the t-channel (top
    along gluon 1) and u-channel (top along gluon 2) dominate in the forward regions."""
    proc = load("g g > t t~")
    mt = proc.params.mt
    alpha = proc.channel_weights(two_to_two([800.0] * 3, [0.0, 0.99, -0.99], m3=mt, m4=mt))
    torch.testing.assert_close(
        alpha[0], torch.tensor([1 / 9, 4 / 9, 4 / 9], dtype=torch.float64), rtol=1e-14, atol=0
    )
    assert alpha[1].argmax() == 1 and alpha[2].argmax() == 2
    mirrored = load("g g > t~ t").channel_weights(
        two_to_two([800.0], [0.99], m3=mt, m4=mt)[:, [0, 1, 3, 2]]
    )
    torch.testing.assert_close(mirrored, alpha[1:2], rtol=1e-13, atol=0)


def test_single_channel_processes_have_weight_one() -> None:
    p = two_to_two([500.0, 900.0], [0.1, -0.7], m3=173.0, m4=173.0)
    for name in ("u u~ > t t~", "d~ d > t t~"):
        assert torch.equal(load(name).channel_weights(p), torch.ones(2, 1, dtype=torch.float64))
    w = load("u d~ > e+ ve").channel_weights(two_to_two([80.0], [0.2]))
    assert torch.equal(w, torch.ones(1, 1, dtype=torch.float64))


# --- the channels of a run -------------------------------------------------------------


def _prepare(tmp_path, process: str, **sections):
    card = {"process": process, "output": {"path": str(tmp_path / "out")}, **sections}
    return prepare(parse_card(card))


WIDE = {"cuts": {"mmll": 50.0, "mmllmax": 3000.0}}


@pytest.mark.parametrize(
    ("process", "sections", "labels"),
    [
        ("p p > t t~", {}, ["g/t(t-ch)"]),  # s-channel gluon and t/u tops: one power law
        ("p p > e+ ve", {}, ["w+"]),
        ("p p > e+ e-", WIDE, ["a", "z"]),
        ("p p > e+ e-", {**WIDE, "model": {"mzp": 1500.0}}, ["a", "z", "zp"]),
        # Z' outside the window: its mapping would be the power law, merged with the photon
        (
            "p p > e+ e-",
            {"cuts": {"mmll": 60, "mmllmax": 120}, "model": {"mzp": 1500}},
            ["a/zp", "z"],
        ),
        (
            "e+ e- > mu+ mu-",
            {"beams": {"particles": ["e+", "e-"], "energies": [500, 500]}, "model": {"mzp": 1500}},
            ["a/z/zp"],  # fixed s_hat: every channel has the same mapping
        ),
        (
            "p p > e+ e-",
            {**WIDE, "model": {"mzp": 1500.0}, "integrator": {"multichannel": False}},
            ["a/z/zp"],
        ),
    ],
)
def test_channels_are_merged_by_mapping(tmp_path, process, sections, labels) -> None:
    run = _prepare(tmp_path, process, **sections)
    (group,) = run.groups
    assert [c.label for c in group.channels] == labels
    assert group.integrand.n_channels == len(labels)


def test_each_channel_maps_its_resonance(tmp_path) -> None:
    """Photon: the power law; Z and Z': pure Breit-Wigners (the photon channel holds the
    continuum); a lone resonance channel (W, or single-channel) keeps the mixture."""
    run = _prepare(tmp_path, "p p > e+ e-", **WIDE, model={"mzp": 1500.0})
    maps = [ps.luminosity.tau_mapping for ps in run.groups[0].integrand.phase_spaces]
    assert isinstance(maps[0], PowerLawMapping)
    assert isinstance(maps[1], BreitWignerMapping) and maps[1].mass * 13000 == pytest.approx(ZP.mz)
    assert isinstance(maps[2], BreitWignerMapping) and maps[2].mass * 13000 == pytest.approx(1500)
    assert maps[2].width * 13000 == pytest.approx(ZP.wzp)
    single = _prepare(
        tmp_path, "p p > e+ e-", **WIDE, model={"mzp": 1500.0}, integrator={"multichannel": False}
    )
    (ps,) = single.groups[0].integrand.phase_spaces
    assert isinstance(ps.luminosity.tau_mapping, MixtureMapping)
    assert ps.luminosity.resonance == (1500.0, pytest.approx(ZP.wzp))
    w = _prepare(tmp_path, "p p > e+ ve")
    assert isinstance(w.groups[0].integrand.phase_space.luminosity.tau_mapping, MixtureMapping)


def test_zprime_card_errors(tmp_path) -> None:
    from evgen.errors import CardError

    with pytest.raises(CardError, match=r"model: wzp given but no Z' mass: set mzp"):
        parse_card({"process": "p p > e+ e-", "model": {"wzp": 10.0}})
    with pytest.raises(CardError, match=r"model.zp_couplings.u: give either left/right or"):
        parse_card(
            {
                "process": "p p > e+ e-",
                "model": {
                    "mzp": 2e3,
                    "zp_couplings": {"u": {"left": 1, "axial": 1}, "d": {}, "l": {}},
                },
            }
        )
    with pytest.raises(CardError, match=r"model.zp_couplings: expected 'ssm' or a mapping"):
        parse_card({"process": "p p > e+ e-", "model": {"mzp": 2e3, "zp_couplings": "SSM"}})
    zero = {"u": {}, "d": {}, "l": {}}
    with pytest.raises(CardError, match=r"the Z' couples to no fermion"):
        _prepare(tmp_path, "p p > e+ e-", model={"mzp": 2e3, "zp_couplings": zero})
    card = parse_card(
        {
            "process": "p p > e+ e-",
            "model": {
                "mzp": 2e3,
                "wzp": 50.0,
                "zp_strength": 0.5,
                "zp_couplings": {
                    "u": {"vector": 1.0, "axial": 0.5},
                    "d": {"left": 0.2},
                    "l": {"right": -1},
                },
            },
        }
    )
    zp = card.model.zprime()
    assert zp is not None and (zp.mass, zp.width, zp.strength) == (2e3, 50.0, 0.5)
    assert zp.couplings is not None
    assert (zp.couplings.up, zp.couplings.down, zp.couplings.lepton) == (
        (0.75, 0.25),
        (0.2, 0.0),
        (0.0, -1.0),
    )
    assert zp.couplings.neutrino == (0.0, 0.0)


# --- the multi-channel integrand -------------------------------------------------------


def test_integrand_channels(tmp_path) -> None:
    """weights = f J_c without prior, channel_prior rows sum to 1, __call__ = prior_c w;
    each channel's points cluster where its mapping peaks."""
    run = _prepare(tmp_path, "p p > e+ e-", **WIDE, model={"mzp": 1500.0})
    f = run.groups[0].integrand
    r = torch.rand(4000, f.n_dim, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    medians = []
    for c in range(3):
        v = f.evaluate(r, c)
        assert v.channel_prior.shape == (4000, 3)
        torch.testing.assert_close(v.channel_prior.sum(1), torch.ones(4000, dtype=torch.float64))
        torch.testing.assert_close(v.sub_weights.sum(1), v.weights, rtol=0, atol=0)
        assert torch.equal(f(r, c), v.channel_prior[:, c] * v.weights)
        pair = v.momenta[:, 2] + v.momenta[:, 3]
        mll = torch.sqrt(pair[:, 0] ** 2 - (pair[:, 1:] ** 2).sum(1))
        medians.append(float(mll.median()))
    assert medians[1] == pytest.approx(ZP.mz, abs=3.0)  # Z channel: half the points within 3 GeV
    assert medians[2] == pytest.approx(1500.0, abs=50.0)
    # photon: uniform in ln m_ee^2 on [50, 3000] GeV, median sqrt(50 * 3000) GeV
    assert medians[0] == pytest.approx(math.sqrt(50.0 * 3000.0), rel=0.1)
    with pytest.raises(ValueError, match="channel must be in"):
        f.evaluate(r, 3)


def test_single_channel_integrand_is_unchanged(tmp_path) -> None:
    """n_channels = 1: prior 1 and f(r) = f(r, 0) = evaluate(r).weights."""
    f = _prepare(tmp_path, "p p > t t~").groups[0].integrand
    r = torch.rand(500, f.n_dim, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    v = f.evaluate(r)
    assert torch.equal(v.channel_prior, torch.ones(500, 1, dtype=torch.float64))
    assert torch.equal(f(r), v.weights) and torch.equal(f(r, 0), v.weights)


def test_channel_integrals_add_up_to_the_single_channel_integral(tmp_path) -> None:
    """sum_c int alpha_c f J_c dr = int f J dr: plain Monte Carlo (uniform r, no VEGAS) of
    each channel against the single-channel integrand, 20k points each, within 3 sigma."""
    sections = {"cuts": {"ptl": 0.0, "etal": -1, "drll": 0.0, "mmll": 60.0, "mmllmax": 200.0}}
    multi = _prepare(tmp_path, "p p > e+ e-", **sections).groups[0].integrand
    single = _prepare(tmp_path, "p p > e+ e-", **sections, integrator={"multichannel": False})
    single_f = single.groups[0].integrand
    gen = torch.Generator().manual_seed(4)
    n = 20_000

    def mc(f, channel):
        w = f(torch.rand(n, f.n_dim, generator=gen, dtype=torch.float64), channel)
        return float(w.mean()), float(w.std()) / math.sqrt(n)

    parts = [mc(multi, c) for c in range(multi.n_channels)]
    total, err = sum(p[0] for p in parts), math.sqrt(sum(p[1] ** 2 for p in parts))
    ref, ref_err = mc(single_f, 0)
    assert abs(total - ref) < 3 * math.hypot(err, ref_err), (total, err, ref, ref_err)
    assert err < ref_err  # the Z channel's Breit-Wigner beats one power-law+BW mixture
