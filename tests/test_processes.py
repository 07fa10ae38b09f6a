"""The process library's bookkeeping: particles, parsing, expansion, channels, colour flows."""

from __future__ import annotations

import math

import pytest
import torch

from evgen.errors import ProcessError
from evgen.params import SMParameters
from processes import (
    DrellYan,
    GGToTTbar,
    Process,
    ProcessGroup,
    QQbarToTTbar,
    WToLeptonNeutrino,
    charge,
    colour,
    expand,
    load,
    lookup,
    multiparticles,
    parse,
    particle_name,
    pdg_id,
    registered_names,
    weak_isospin,
)

PARAMS = SMParameters()


# --- particles ------------------------------------------------------------------------------
def test_names_and_pdg_ids_round_trip() -> None:
    expected = {"d": 1, "u~": -2, "b": 5, "t~": -6, "e-": 11, "e+": -11, "mu+": -13,
                "ta-": 15, "ve": 12, "vm~": -14, "vt": 16, "g": 21, "a": 22, "z": 23,
                "w+": 24, "w-": -24, "h": 25}  # fmt: skip
    for name, pdg in expected.items():
        assert pdg_id(name) == pdg
        assert particle_name(pdg) == name


def test_quantum_numbers() -> None:
    assert charge(2) == pytest.approx(2 / 3) and charge(-1) == pytest.approx(1 / 3)
    assert charge(11) == -1 and charge(-11) == 1 and charge(12) == 0 and charge(-24) == -1
    assert weak_isospin(2) == 0.5 and weak_isospin(11) == -0.5 and weak_isospin(-11) == 0.5
    assert weak_isospin(12) == 0.5 and weak_isospin(24) == 1
    assert (colour(1), colour(-1), colour(21), colour(11), colour(6)) == (3, -3, 8, 1, 3)
    # Q = T3 + Y/2 with Y = 1/3 (quark doublet) and -1 (lepton doublet), left-handed.
    for pdg, hypercharge in [(1, 1 / 3), (2, 1 / 3), (11, -1), (12, -1)]:
        assert charge(pdg) == pytest.approx(weak_isospin(pdg) + hypercharge / 2)


def test_multiparticles_four_and_five_flavours() -> None:
    four, five = multiparticles(4), multiparticles(5)
    assert set(four["p"]) == set("g u c d s u~ c~ d~ s~".split())
    assert set(five["p"]) == set(four["p"]) | {"b", "b~"}
    assert four["j"] == four["p"]
    assert four["l+"] == ("e+", "mu+") and four["l-"] == ("e-", "mu-")
    assert set(four["vl"]) >= {"ve", "vm"} and set(four["vl~"]) >= {"ve~", "vm~"}
    with pytest.raises(ProcessError, match="n_flavours"):
        multiparticles(3)


# --- parsing --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "incoming", "outgoing"),
    [
        ("p p > t t~", ("p", "p"), ("t", "t~")),
        ("e+ e- > mu+ mu-", ("e+", "e-"), ("mu+", "mu-")),
        ("u u~ > e+ e-", ("u", "u~"), ("e+", "e-")),
        ("p p > e+ ve", ("p", "p"), ("e+", "ve")),
        ("  p p>l+   l- ", ("p", "p"), ("l+", "l-")),
    ],
)
def test_parse(text: str, incoming: tuple, outgoing: tuple) -> None:
    spec = parse(text)
    assert (spec.incoming, spec.outgoing) == (incoming, outgoing)


def test_unknown_particle_names_token_and_lists_valid_names() -> None:
    with pytest.raises(ProcessError) as err:
        parse("p p > t tbar")
    message = str(err.value)
    assert "'tbar'" in message and "t~" in message and "mu+" in message and "l+" in message


@pytest.mark.parametrize(
    "text",
    [
        "p p > t t~, t > w+ b",
        "p p > e+ e- $ z",
        "p p > e+ e- / z",
        "p p > t t~ QED=0",
        "p p > t t~ QCD^2==4",
        "p p > t t~ @1",
        "p p > z > e+ e-",
        "p p > t t~ [QCD]",
        "p p > (t > w+ b) t~",
    ],
)
def test_unsupported_syntax(text: str) -> None:
    with pytest.raises(ProcessError, match="not supported yet"):
        parse(text)


@pytest.mark.parametrize("text", ["", "p p t t~", "p > t t~", "p p p > t t~", "p p >"])
def test_malformed_process(text: str) -> None:
    with pytest.raises(ProcessError):
        parse(text)


# --- loading and expansion ------------------------------------------------------------------
def _names(procs: list[Process]) -> set[str]:
    return {p.name for p in procs}


def _pairs(quarks: str, final: str) -> set[str]:
    return {f"{a} {b} > {final}" for q in quarks.split() for a, b in [(q, q + "~"), (q + "~", q)]}


def test_expand_pp_ttbar() -> None:
    four = expand("p p > t t~")
    assert _names(four) == {"g g > t t~"} | _pairs("u c d s", "t t~")
    assert len(four) == 9
    five = expand("p p > t t~", n_flavours=5)
    assert _names(five) == {"g g > t t~"} | _pairs("u c d s b", "t t~")
    assert isinstance(five[0], GGToTTbar) and all(isinstance(p, QQbarToTTbar) for p in five[1:])


def test_expand_pp_w_and_drell_yan() -> None:
    assert _names(expand("p p > e+ ve")) == {
        "u d~ > e+ ve", "d~ u > e+ ve", "c s~ > e+ ve", "s~ c > e+ ve"}  # fmt: skip
    assert _names(expand("p p > e- ve~")) == {
        "d u~ > e- ve~", "u~ d > e- ve~", "s c~ > e- ve~", "c~ s > e- ve~"}  # fmt: skip
    assert _names(expand("p p > e+ e-")) == _pairs("u c d s", "e+ e-")
    assert _names(expand("p p > e+ e-", n_flavours=5)) == _pairs("u c d s b", "e+ e-")
    both = expand("p p > l+ l-")
    assert _names(both) == _pairs("u c d s", "e+ e-") | _pairs("u c d s", "mu+ mu-")
    assert len(both) == 16
    assert all(isinstance(p, DrellYan) for p in both)
    assert _names(expand("p p > l+ vl")) == _names(expand("p p > e+ ve")) | _names(
        expand("p p > mu+ vm")
    )
    assert all(isinstance(p, WToLeptonNeutrino) for p in expand("p p > l- vl~"))


def test_load_returns_process_or_group() -> None:
    single = load("g g > t t~")
    assert isinstance(single, GGToTTbar) and single.name == "g g > t t~"
    group = load("p p > t t~", n_flavours=5)
    assert isinstance(group, ProcessGroup) and group.name == "p p > t t~"
    assert len(group) == 11 and group.names == [p.name for p in group.subprocesses]
    assert lookup("u u~ > e+ e-") is DrellYan and lookup("g u > t t~") is None


def test_incoming_order_is_the_names_order() -> None:
    proc = load("e+ e- > mu+ mu-")
    assert proc.incoming == (-11, 11) and proc.outgoing == (-13, 13)
    assert load("u~ u > e+ e-").incoming == (-2, 2)
    assert load("d~ u > e+ ve").pdg_ids == (-1, 2, -11, 12)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("e+ e- > e+ e-", "not in the analytic library yet"),
        ("u u~ > t t~ g", "not in the analytic library yet"),
        ("p p > z h", "'p p > z h'"),
        ("p p > z h", "analytic library covers"),
        ("g g > e+ e-", "not in the analytic library yet"),
        ("b b~ > t t~", "n_flavours=5"),
    ],
)
def test_unsupported_process(text: str, fragment: str) -> None:
    with pytest.raises(ProcessError, match=None) as err:
        load(text)
    assert fragment in str(err.value)


def test_b_initiated_needs_five_flavours_and_is_massless() -> None:
    proc = load("b b~ > t t~", n_flavours=5)
    assert proc.masses == (0.0, 0.0, PARAMS.mt, PARAMS.mt)
    assert load("g g > t t~").masses == (0.0, 0.0, PARAMS.mt, PARAMS.mt)


def test_every_registered_name_loads_with_its_name() -> None:
    names = registered_names()
    assert len(names) == len(set(names))
    for name in names:
        proc = load(name, n_flavours=5)
        assert proc.name == name
        assert sum(charge(i) for i in proc.incoming) == pytest.approx(
            sum(charge(i) for i in proc.outgoing)
        )


def test_couplings_orders_and_symmetry_factor() -> None:
    assert (load("g g > t t~").alpha_s_power, load("g g > t t~").alpha_ew_power) == (2, 0)
    assert (load("u u~ > t t~").alpha_s_power, load("u u~ > t t~").alpha_ew_power) == (2, 0)
    assert (load("u u~ > e+ e-").alpha_s_power, load("u u~ > e+ e-").alpha_ew_power) == (0, 2)
    assert load("u d~ > e+ ve").alpha_ew_power == 2
    for name in registered_names():
        assert load(name, n_flavours=5).symmetry_factor == 1.0

    class TwoGluons(GGToTTbar):  # the mechanism: identical outgoing particles share 1/n!
        pass

    proc = TwoGluons((21, 21), (6, -6))
    proc.outgoing = (21, 21)
    assert proc.symmetry_factor == 0.5
    proc.outgoing = (21, 21, 21, 1)
    assert proc.symmetry_factor == pytest.approx(1 / 6)


def test_channels() -> None:
    (photon,), (z,) = (c.propagators for c in load("e+ e- > mu+ mu-").channels())
    assert (photon.pdg, photon.mass, photon.kind, photon.legs) == (22, 0.0, "s", (2, 3))
    assert (z.pdg, z.mass, z.width, z.kind, z.legs) == (23, PARAMS.mz, PARAMS.wz, "s", (2, 3))
    (w,) = load("u d~ > e+ ve").channels()[0].propagators
    assert (w.pdg, w.mass, w.width, w.legs) == (24, PARAMS.mw, PARAMS.ww, (2, 3))
    assert load("d u~ > e- ve~").channels()[0].propagators[0].pdg == -24
    assert load("u d~ > e+ ve").channels()[0].s_resonances() == (w,)
    (g,) = load("u~ u > t t~").channels()[0].propagators
    assert (g.pdg, g.kind, g.legs) == (21, "s", (2, 3))
    s, t, u = (c.propagators[0] for c in load("g g > t t~").channels())
    assert (s.pdg, s.kind, s.legs) == (21, "s", (2, 3))
    assert (t.pdg, t.mass, t.kind, t.legs) == (6, PARAMS.mt, "t", (2,))
    assert (u.kind, u.legs) == ("t", (3,))
    assert [c.propagators[0].legs for c in load("g g > t~ t").channels()[1:]] == [(3,), (2,)]


# --- colour flows ---------------------------------------------------------------------------
def _random_momenta(proc: Process, n: int, gen: torch.Generator) -> torch.Tensor:
    """Random 2 -> 2 momenta: sqrt(s) above threshold, isotropic, boosted along z."""
    m3, m4 = proc.masses[2], proc.masses[3]
    root_s = m3 + m4 + 1.0 + 1000.0 * torch.rand(n, generator=gen, dtype=torch.float64)
    s = root_s**2
    q = torch.sqrt((s - (m3 + m4) ** 2) * (s - (m3 - m4) ** 2)) / (2 * root_s)
    cos = 2 * torch.rand(n, generator=gen, dtype=torch.float64) - 1
    sin = torch.sqrt(1 - cos**2)
    phi = 2 * math.pi * torch.rand(n, generator=gen, dtype=torch.float64)
    n3 = torch.stack([sin * torch.cos(phi), sin * torch.sin(phi), cos], -1)
    half = root_s / 2
    zero = torch.zeros_like(half)
    p1 = torch.stack([half, zero, zero, half], -1)
    p2 = torch.stack([half, zero, zero, -half], -1)
    p3 = torch.cat([torch.sqrt(q**2 + m3**2)[:, None], q[:, None] * n3], -1)
    p4 = torch.cat([torch.sqrt(q**2 + m4**2)[:, None], -q[:, None] * n3], -1)
    y = 2 * torch.rand(n, generator=gen, dtype=torch.float64) - 1
    moms = torch.stack([p1, p2, p3, p4], 1)
    ch, sh = torch.cosh(y)[:, None], torch.sinh(y)[:, None]
    e, z = moms[..., 0], moms[..., 3]
    return torch.stack([ch * e + sh * z, moms[..., 1], moms[..., 2], sh * e + ch * z], -1)


def assert_lhe_colour_rules(pdg_ids: tuple[int, ...], colours: torch.Tensor) -> None:
    """Every tag twice; colour-colour / anticolour-anticolour across the incoming-outgoing
    boundary, colour-anticolour on one side; tags >= 501; slots match the representation."""
    assert colours.dtype == torch.int64 and colours.shape[1:] == (len(pdg_ids), 2)
    for pos, pdg in enumerate(pdg_ids):
        rep = colour(pdg)
        has = (colours[:, pos] != 0).tolist()
        # an incoming antiquark carries an anticolour, like an outgoing one
        expected = {1: [False, False], 3: [True, False], -3: [False, True], 8: [True, True]}[rep]
        assert all(h == expected for h in has), (pdg, rep)
    for event in colours.tolist():
        seen: dict[int, list[tuple[bool, int]]] = {}
        for pos, tags in enumerate(event):
            for slot, tag in enumerate(tags):
                if tag:
                    assert tag >= 501
                    seen.setdefault(tag, []).append((pos < 2, slot))
        for tag, ends in seen.items():
            assert len(ends) == 2, (tag, event)
            (in_a, slot_a), (in_b, slot_b) = ends
            assert (slot_a == slot_b) == (in_a != in_b), (tag, event)


@pytest.mark.parametrize(
    "name",
    ["g g > t t~", "g g > t~ t", "u u~ > t t~", "s~ s > t~ t", "u u~ > e+ e-", "d~ d > mu- mu+",
     "u d~ > e+ ve", "s~ c > ve e+", "d u~ > e- ve~", "e+ e- > mu+ mu-"],
)  # fmt: skip
def test_colour_flows_obey_lhe_rules(name: str) -> None:
    gen = torch.Generator().manual_seed(11)
    proc = load(name)
    moms = _random_momenta(proc, 300, gen)
    colours = proc.colour_flow(moms, torch.rand(300, generator=gen, dtype=torch.float64))
    assert_lhe_colour_rules(proc.pdg_ids, colours)


def test_explicit_colour_tags() -> None:
    gen = torch.Generator().manual_seed(1)
    moms = _random_momenta(load("u u~ > e+ e-"), 2, gen)
    u = torch.rand(2, dtype=torch.float64, generator=gen)
    tags = load("u u~ > e+ e-").colour_flow(moms, u)[0].tolist()
    assert tags == [[501, 0], [0, 501], [0, 0], [0, 0]]
    assert load("u~ u > e+ e-").colour_flow(moms, u)[0].tolist()[:2] == [[0, 501], [501, 0]]
    assert load("e+ e- > mu+ mu-").colour_flow(moms, u).abs().sum() == 0
    tt = load("u u~ > t t~").colour_flow(moms, u)[0].tolist()
    assert tt == [[501, 0], [0, 502], [501, 0], [0, 502]]
    flows = load("g g > t t~").colour_flow(moms, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert flows[0].tolist() == [[501, 502], [502, 503], [501, 0], [0, 503]]
    assert flows[1].tolist() == [[502, 503], [501, 502], [501, 0], [0, 503]]


def test_gg_ttbar_flow_frequencies_match_probabilities() -> None:
    """Count of flow 1 (gluon 1's colour on the top) ~ Binomial-like sum of p_i, 4 sigma."""
    gen = torch.Generator().manual_seed(2024)
    proc = load("g g > t t~")
    n = 40000
    moms = _random_momenta(proc, n, gen)
    prob = proc.flow_probabilities(moms)[:, 0]
    assert torch.all((prob > 0) & (prob < 1))
    assert torch.allclose(proc.flow_probabilities(moms).sum(-1), torch.ones(1, dtype=torch.float64))
    first = (
        proc.colour_flow(moms, torch.rand(n, generator=gen, dtype=torch.float64))[:, 0, 0] == 501
    )
    mean, var = prob.sum(), (prob * (1 - prob)).sum()
    assert abs(first.sum() - mean) < 4 * torch.sqrt(var)
    # At one fixed point the frequency estimates that point's probability.
    one = moms[:1].expand(n, -1, -1)
    first = proc.colour_flow(one, torch.rand(n, generator=gen, dtype=torch.float64))[:, 0, 0] == 501
    p = prob[0]
    assert abs(first.sum() - n * p) < 4 * torch.sqrt(n * p * (1 - p))


def test_flow_favours_top_along_gluon_one() -> None:
    """A top emitted close to gluon 1 (small m^2 - t) takes gluon 1's colour."""
    gen = torch.Generator().manual_seed(5)
    proc = load("g g > t t~")
    moms = _random_momenta(proc, 2000, gen)
    prob = proc.flow_probabilities(moms)[:, 0]
    forward = (moms[:, 2, 3] * moms[:, 0, 3] > 0) & (
        torch.linalg.vector_norm(moms[:, 2, 1:3], dim=-1) < 0.2 * moms[:, 2, 3].abs()
    )
    assert prob[forward].mean() > 0.5


def test_batched_dtype_and_device_follow_input() -> None:
    gen = torch.Generator().manual_seed(9)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        for name in ["g g > t t~", "u~ u > t t~", "u d~ > e+ ve", "e+ e- > mu+ mu-"]:
            proc = load(name)
            moms = _random_momenta(proc, 50, gen)
            got = proc.matrix_element(
                moms.to(device), torch.full((50,), 0.11, dtype=torch.float64, device=device)
            )
            assert got.device.type == device and got.dtype == torch.float64 and got.shape == (50,)
            assert torch.allclose(got.cpu(), proc.matrix_element(moms, 0.11), rtol=1e-12, atol=0)
            flows = proc.colour_flow(
                moms.to(device), torch.rand(50, generator=gen, dtype=torch.float64).to(device)
            )
            assert flows.device.type == device and flows.shape == (50, 4, 2)
