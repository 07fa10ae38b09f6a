"""The automatic engine against independent results: the analytic processes of processes/,
textbook closed forms (QCD 2 -> 2, Moller, decay widths), Lorentz invariance, Bose
symmetry, the Ward identity, SDE weights, colour flows and the plan cache."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from mg4gpu_data import load_reference, params_from_card  # noqa: E402

from evgen.kinematics import boost, dot
from evgen.params import SMParameters, ZPrime
from processes import load
from processes.auto.diagrams import Constraints, DecayGroup
from processes.auto.plan import (
    Plan,
    evaluate_amplitudes,
    external_wavefunctions,
    scan_momenta,
)
from processes.auto.process import AutoProcess

P = SMParameters()
ALPHA_S = 0.118
G4 = (4 * math.pi * ALPHA_S) ** 2
TOL = 1e-10  # deterministic: agreement to rounding (observed ~1e-15)


@pytest.fixture(autouse=True, scope="module")
def _one_thread(single_thread):
    yield


def collision(masses, n: int = 8, e_cm: float = 700.0, seed: int = 3) -> torch.Tensor:
    """n RAMBO points in the centre-of-mass frame at sqrt(s) = e_cm, incoming along
    +-z, (n, n_ext, 4) GeV (the engine's own :func:`~processes.auto.plan.scan_momenta`)."""
    return scan_momenta(masses, 2, n, seed, e_cm)


def mandelstam(p: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return 2 * dot(p[:, 0], p[:, 1]), -2 * dot(p[:, 0], p[:, 2]), -2 * dot(p[:, 0], p[:, 3])


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a / b - 1).abs().max())


# ------------------------------------------------------------------ analytic processes


@pytest.mark.parametrize(
    "name, params",
    [
        ("e+ e- > mu+ mu-", P),
        ("u u~ > e+ e-", P),
        ("d~ d > mu- mu+", P),
        ("u u~ > e+ e-", P.with_overrides(zprime=ZPrime(1500.0))),
        ("u d~ > e+ ve", P),
        ("d u~ > mu- vm~", P),
        ("g g > t t~", P),
        ("u u~ > t t~", P),
        ("s~ s > t~ t", P),
    ],
)
def test_against_analytic_library(name: str, params: SMParameters) -> None:
    """Every analytic process of processes/ agrees with the engine to 1e-10 relative at
    RAMBO points (photon/Z/Z', W, QCD with massive tops)."""
    analytic = load(name, params)
    auto = AutoProcess.load(name, params)
    assert auto.masses == analytic.masses
    momenta = collision(auto.masses, e_cm=900.0)
    a_s = torch.full((momenta.shape[0],), ALPHA_S, dtype=torch.float64)
    assert rel_diff(auto.matrix_element(momenta, a_s), analytic.matrix_element(momenta, a_s)) < TOL
    assert auto.alpha_s_power == analytic.alpha_s_power
    assert auto.alpha_ew_power == analytic.alpha_ew_power


def test_drell_yan_sde_weights_and_channels() -> None:
    """s-channel photon and Z: the SDE weights equal the analytic |M_V|^2 ratios."""
    analytic = load("e+ e- > mu+ mu-")
    auto = AutoProcess.load("e+ e- > mu+ mu-")
    pdgs = [c.propagators[0].pdg for c in auto.channels()]
    assert sorted(pdgs) == [22, 23]
    momenta = collision(auto.masses, e_cm=120.0)
    order = [pdgs.index(22), pdgs.index(23)]
    weights = auto.channel_weights(momenta)[:, order]
    assert torch.allclose(weights, analytic.channel_weights(momenta), rtol=1e-10, atol=1e-14)


MG4GPU = Path(__file__).resolve().parent / "data" / "mg4gpu"


@pytest.mark.parametrize(
    "key",
    [
        "ee_mumu",
        "gg_tt",
        "gg_ttg",
        "gg_ttgg",
        pytest.param("gg_ttggg", marks=pytest.mark.slow),  # 1240 diagrams, ~3 s to plan
    ],
)
def test_against_madgraph_reference_values(key: str) -> None:
    """MadGraph's own |M|^2 (madgraph4gpu's generated code, tests/data/mg4gpu: its shipped
    dump with off-shell tops and on-shell RAMBO points) to 1e-12 relative, with its
    param_card, fixed g_s and t-channel top widths (zero_width_t_channel=False); MadGraph
    includes the identical-particle factor, evgen's symmetry_factor."""
    path = MG4GPU / f"{key}.json"
    if not path.exists():
        pytest.skip(f"{path} not present")
    data = load_reference(key)
    params = params_from_card(data["param_card"])
    pdg = data["pdg"]
    proc = AutoProcess(pdg[:2], pdg[2:], params, zero_width_t_channel=False)
    for name, ref in data["sets"].items():
        momenta = torch.tensor(ref["momenta"], dtype=torch.float64)
        me = proc.matrix_element(momenta, data["alpha_s"]) * proc.symmetry_factor
        expected = torch.tensor(ref["me"], dtype=torch.float64)
        assert rel_diff(me, expected) < 1e-12, name


# -------------------------------------------------------------- closed forms, QCD/QED

QCD_2_TO_2 = {
    # ESW Table 7.1 (and Combridge et al.): spin/colour averaged, / g_s^4
    "g g > g g": lambda s, t, u: 4.5 * (3 - t * u / s**2 - u * s / t**2 - s * t / u**2),
    "u u > u u": lambda s, t, u: (
        4 / 9 * ((s * s + u * u) / t**2 + (s * s + t * t) / u**2) - 8 / 27 * s * s / (u * t)
    ),
    "u u~ > u u~": lambda s, t, u: (
        4 / 9 * ((s * s + u * u) / t**2 + (u * u + t * t) / s**2) - 8 / 27 * u * u / (s * t)
    ),
    "u u~ > d d~": lambda s, t, u: 4 / 9 * (t * t + u * u) / s**2,
    "u g > u g": lambda s, t, u: -4 / 9 * (s * s + u * u) / (s * u) + (u * u + s * s) / t**2,
    "u u~ > g g": lambda s, t, u: (
        32 / 27 * (t * t + u * u) / (t * u) - 8 / 3 * (t * t + u * u) / s**2
    ),
    "g g > u u~": lambda s, t, u: (t * t + u * u) / (6 * t * u) - 3 / 8 * (t * t + u * u) / s**2,
}


@pytest.mark.parametrize("name", list(QCD_2_TO_2))
def test_qcd_two_to_two(name: str) -> None:
    """Massless QCD 2 -> 2 (identical quarks: the fermion sign of u u > u u matters)."""
    proc = AutoProcess.load(name)
    momenta = collision([0.0] * 4)
    s, t, u = mandelstam(momenta)
    assert rel_diff(proc.matrix_element(momenta, ALPHA_S), G4 * QCD_2_TO_2[name](s, t, u)) < TOL


def test_moller() -> None:
    """e- e- > e- e- through photons: 2 e^4 [(s^2+u^2)/t^2 + (s^2+t^2)/u^2 + 2 s^2/(t u)]
    (Peskin & Schroeder Problem 5.2); the t/u relative sign is MadGraph's fermion sign."""
    proc = AutoProcess.load("e- e- > e- e- / z h")
    momenta = collision([0.0] * 4)
    s, t, u = mandelstam(momenta)
    expected = 2 * P.ee**4 * ((s * s + u * u) / t**2 + (s * s + t * t) / u**2 + 2 * s * s / (t * u))
    assert rel_diff(proc.matrix_element(momenta), expected) < TOL


def test_decay_widths() -> None:
    """1 -> 2 decays: |M|^2 = 8 pi M^2 Gamma / |p| with the LO widths
    Gamma(t > b W) = G_F mt^3/(8 pi sqrt2) (1 - x)^2 (1 + 2x), x = MW^2/mt^2 (massless b),
    Gamma(h > b b~) = 3 G_F MH mb^2 beta^3 / (4 sqrt2 pi) (PDG review, top and Higgs)."""
    p5 = P.with_overrides(mb=0.0)
    top = AutoProcess((6,), (5, 24), p5)
    mt, x = P.mt, P.mw**2 / P.mt**2
    gamma_t = P.gf * mt**3 / (8 * math.pi * math.sqrt(2)) * (1 - x) ** 2 * (1 + 2 * x)
    momenta = scan_momenta(top.masses, 1, 4, seed=1)
    expected = 8 * math.pi * mt**2 * gamma_t / ((mt**2 - P.mw**2) / (2 * mt))
    expected_t = torch.full((4,), expected, dtype=torch.float64)
    assert rel_diff(top.matrix_element(momenta), expected_t) < TOL
    higgs = AutoProcess((25,), (5, -5))
    beta = math.sqrt(1 - 4 * P.mb**2 / P.mh**2)
    gamma_h = 3 * P.gf * P.mh * P.mb**2 * beta**3 / (4 * math.sqrt(2) * math.pi)
    expected = 8 * math.pi * P.mh**2 * gamma_h / (P.mh * beta / 2)
    momenta = scan_momenta(higgs.masses, 1, 4, seed=2)
    expected_h = torch.full((4,), expected, dtype=torch.float64)
    assert rel_diff(higgs.matrix_element(momenta), expected_h) < TOL


def test_squared_orders_select_the_interference() -> None:
    """u u~ > d d~ QED^2==2 (gluon x electroweak interference) equals the full QED<=2
    result minus the pure QCD and pure electroweak squares, computed separately."""
    full = AutoProcess.load("u u~ > d d~ QED<=2")
    qcd = AutoProcess.load("u u~ > d d~")
    ew = AutoProcess.load("u u~ > d d~ QCD==0")
    interference = AutoProcess.load("u u~ > d d~ QED^2==2")
    assert interference.plan.interference == [[0, 1], [1, 0]]
    momenta = collision(full.masses, n=6, e_cm=200.0)
    total = full.matrix_element(momenta)
    rest = total - qcd.matrix_element(momenta) - ew.matrix_element(momenta)
    assert float(((interference.matrix_element(momenta) - rest) / total).abs().max()) < 1e-12
    assert full.matrix_element(momenta[:0]).shape == (0,)


def test_alpha_s_per_event() -> None:
    """A per-event alpha_s tensor scales g g > t t~ as alpha_s^2 event by event."""
    proc = AutoProcess((21, 21), (6, -6))
    momenta = collision(proc.masses, n=5)
    a_s = torch.tensor([0.1, 0.11, 0.118, 0.13, 0.2], dtype=torch.float64)
    ref = proc.matrix_element(momenta, ALPHA_S)
    assert rel_diff(proc.matrix_element(momenta, a_s), ref * (a_s / ALPHA_S) ** 2) < TOL


# ------------------------------------------------------------------ symmetries


@pytest.fixture(scope="module")
def ggttgg() -> AutoProcess:
    # Zero top width: a fixed width breaks gauge (hence frame) invariance at O(Gamma/M).
    return AutoProcess((21, 21), (6, -6, 21, 21), P.with_overrides(wt=0.0))


def test_lorentz_invariance_and_bose_symmetry(ggttgg: AutoProcess) -> None:
    """g g > t t~ g g (123 diagrams): |M|^2 unchanged by a boost and a rotation, and by
    exchanging the two final gluons or the two initial ones."""
    momenta = collision(ggttgg.masses, n=6, e_cm=1500.0, seed=5)
    me = ggttgg.matrix_element(momenta)
    beta = torch.tensor([0.3, -0.5, 0.6], dtype=torch.float64)
    assert rel_diff(ggttgg.matrix_element(boost(momenta, beta)), me) < 1e-10
    c, s = math.cos(0.7), math.sin(0.7)
    rot = torch.tensor(
        [[1, 0, 0, 0], [0, c, 0, s], [0, 0, 1, 0], [0, -s, 0, c]], dtype=torch.float64
    )
    assert rel_diff(ggttgg.matrix_element(momenta @ rot.T), me) < 1e-10
    assert rel_diff(ggttgg.matrix_element(momenta[:, [0, 1, 2, 3, 5, 4]]), me) < 1e-10
    assert rel_diff(ggttgg.matrix_element(momenta[:, [1, 0, 2, 3, 4, 5]]), me) < 1e-10


def _ward_ratio(proc: AutoProcess, leg: int, momenta: torch.Tensor) -> float:
    """max |JAMP| with gluon ``leg``'s polarisation replaced by p/E, over max |JAMP| with
    its physical polarisations (all helicity combinations)."""
    ex = proc.executor
    hel = proc.plan.tensors(momenta.device)["helicities"]
    externals = external_wavefunctions(proc.plan, momenta, hel)
    couplings = ex.couplings(ALPHA_S, momenta)
    physical = ex.jamps(evaluate_amplitudes(proc.plan, externals, couplings))
    p = momenta[:, leg] / momenta[:, leg, :1]
    w = externals[leg].clone()
    w[..., 2:6] = p[:, None, :].to(w.dtype)
    externals[leg] = w
    longitudinal = ex.jamps(evaluate_amplitudes(proc.plan, externals, couplings))
    return float(longitudinal.abs().amax() / physical.abs().amax())


@pytest.mark.parametrize(
    "initial, final",
    [((21, 21), (21, 21)), ((21, 21), (21, 21, 21)), ((2, -2), (21, 21, 21))],
)
def test_ward_identity(initial, final) -> None:
    """Replacing a gluon's polarisation by its momentum makes every colour-ordered
    helicity amplitude vanish (to 1e-8 of its size), for each gluon in turn."""
    proc = AutoProcess(initial, final)
    momenta = collision(proc.masses, n=4, e_cm=800.0, seed=7)
    for leg, pdg in enumerate((*initial, *final)):
        if pdg == 21:
            assert _ward_ratio(proc, leg, momenta) < 1e-8, leg


def test_ward_identity_with_tops(ggttgg: AutoProcess) -> None:
    """The same for the four gluons of g g > t t~ g g (massive tops, zero width)."""
    momenta = collision(ggttgg.masses, n=3, e_cm=1500.0, seed=9)
    for leg in (0, 1, 4, 5):
        assert _ward_ratio(ggttgg, leg, momenta) < 1e-8, leg


# --------------------------------------------------------------- channels and colour


def test_sde_weights_and_flows_g_g_to_t_t() -> None:
    """g g > t t~: SDE weights are probabilities; the leading colour flows are drawn with
    the analytic probabilities tau2^2/(tau1^2 + tau2^2) of the flow g1 -> t."""
    auto = AutoProcess((21, 21), (6, -6))
    analytic = load("g g > t t~")
    momenta = collision(auto.masses, n=200, e_cm=800.0)
    w = auto.channel_weights(momenta)
    assert w.shape == (200, 3) and bool((w >= 0).all())
    assert torch.allclose(w.sum(-1), torch.ones(200, dtype=torch.float64), atol=1e-12)
    weights = auto.executor.flow_weights(momenta)
    flows = torch.as_tensor(auto.plan.flows)
    g1_to_top = [k for k in range(len(flows)) if flows[k, 0, 0] == flows[k, 2, 0]]
    assert len(g1_to_top) == 1
    expected = analytic.flow_probabilities(momenta)[:, 0]
    assert torch.allclose(weights[:, g1_to_top[0]], expected, rtol=1e-10, atol=1e-14)
    u = torch.rand(200, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    tags = auto.colour_flow(momenta, u)
    picked_first = (tags[:, 0, 0] == tags[:, 2, 0]).to(torch.float64)
    assert torch.equal(picked_first, (u < expected).to(torch.float64))


def _colour_conserved(tags: torch.Tensor, n_in: int) -> bool:
    for row in tags.tolist():
        out = [c for c, _ in row[n_in:]] + [a for _, a in row[:n_in]]
        into = [a for _, a in row[n_in:]] + [c for c, _ in row[:n_in]]
        if sorted(x for x in out if x) != sorted(x for x in into if x):
            return False
    return True


def test_colour_flows_are_valid() -> None:
    """u g > u g g: LHE tags conserve colour, quarks carry colour only, gluons both."""
    proc = AutoProcess((2, 21), (2, 21, 21))
    momenta = collision(proc.masses, n=50, e_cm=600.0)
    u = torch.rand(50, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    tags = proc.colour_flow(momenta, u)
    assert tags.shape == (50, 5, 2) and tags.dtype == torch.int64
    assert _colour_conserved(tags, 2)
    assert bool((tags[:, [0, 2], 0] >= 501).all() and (tags[:, [0, 2], 1] == 0).all())
    assert bool((tags[:, [1, 3, 4]] >= 501).all())


def test_decay_chain_equals_required_s_channels() -> None:
    """g g > t t~, t > b e+ ve equals g g > b e+ ve t~ with the top and W+ required as
    s-channels (the same diagrams reached two ways)."""
    chain = AutoProcess.load("g g > t t~, t > b e+ ve")
    assert chain.outgoing == (5, -11, 12, -6)
    full = AutoProcess(
        (21, 21), (5, -11, 12, -6), constraints=Constraints(required_s_channels=[{6}, {24}])
    )
    assert chain.decays == (DecayGroup(6, frozenset({2, 3, 4})),)
    assert len(chain.diagrams.diagrams) == 3 == len(full.diagrams.diagrams)
    momenta = collision(chain.masses, n=6, e_cm=800.0)
    assert rel_diff(chain.matrix_element(momenta), full.matrix_element(momenta)) < TOL


def test_from_process_expands_labels() -> None:
    """p p > e+ e- / z: every partonic subprocess with a diagram (4-flavour proton), named
    with its restriction."""
    procs = AutoProcess.from_process("p p > e+ e- / z")
    names = {p.name for p in procs}
    assert "u u~ > e+ e- / z" in names and "d~ d > e+ e- / z" in names
    assert len(procs) == 8  # u c d s and their antiquarks, both beam orders
    assert all(len(p.diagrams.diagrams) == 1 for p in procs)
    vetoed = AutoProcess.load("u u~ > e+ e- $ z")
    assert vetoed.onshell_vetoes == frozenset({23}) and len(vetoed.diagrams.diagrams) == 2


def test_plan_cache_roundtrip(tmp_path) -> None:
    """A plan saved to the cache is reused (no diagram generation) and evaluates the same;
    other parameters make another key."""
    first = AutoProcess((21, 21), (6, -6, 21), cache_dir=tmp_path)
    files = list(tmp_path.glob("plan-*.json"))
    assert len(files) == 1
    second = AutoProcess((21, 21), (6, -6, 21), cache_dir=tmp_path)
    assert second._diagrams is None  # loaded, not regenerated
    momenta = collision(first.masses, n=4, e_cm=900.0)
    assert torch.equal(first.matrix_element(momenta), second.matrix_element(momenta))
    reread = Plan.from_json(files[0].read_text())
    assert reread.helicities == first.plan.helicities and reread.key == first.plan.key
    AutoProcess((21, 21), (6, -6, 21), P.with_overrides(mt=172.5), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("plan-*.json"))) == 2


def test_vanishing_helicities_removed() -> None:
    """Massless e+ e- > mu+ mu- keeps the 4 of 16 helicity combinations the vector and
    axial currents allow; g g > g g keeps the 6 of 16 with two negative helicities in the
    all-outgoing convention (incoming ones flipped): the MHV amplitudes."""
    assert len(AutoProcess.load("e+ e- > mu+ mu-").plan.helicities) == 4
    assert len(AutoProcess.load("g g > g g").plan.helicities) == 6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    proc = AutoProcess((21, 21), (6, -6, 21))
    momenta = collision(proc.masses, n=16, e_cm=900.0)
    cpu = proc.matrix_element(momenta)
    gpu = proc.matrix_element(momenta.cuda(), torch.full((16,), 0.118, device="cuda"))
    assert gpu.device.type == "cuda"
    assert rel_diff(gpu.cpu(), cpu) < 1e-12


def test_default_orders_are_those_of_the_whole_process() -> None:
    """MadGraph's default order of a multiparticle process is its lowest WEIGHTED over
    all subprocesses (6 = QCD 2 + QED 2 for p p > mu+ mu- j j): u c~ > mu+ mu- d s~
    (only W exchange, QED 4) is no subprocess, and the default equals QED=2."""
    from evgen.errors import ProcessError
    from processes.auto.diagrams import generate_diagrams, lowest_production_weighted
    from processes.registry import engine_subprocesses

    model = AutoProcess((2, -2), (-13, 13)).model
    assert lowest_production_weighted(model, (2, -4), (-13, 13, 1, -3)) == 8
    assert lowest_production_weighted(model, (2, -2), (-13, 13, 21, 21)) == 6
    assert generate_diagrams(model, (2, -4), (-13, 13, 1, -3)).diagrams  # on its own: W's
    with pytest.raises(ProcessError, match="WEIGHTED <= 6"):
        generate_diagrams(model, (2, -4), (-13, 13, 1, -3), production_weighted=6)
    default = sorted(p.name for p in engine_subprocesses("p p > mu+ mu- j j"))
    qed2 = sorted(
        p.name.replace(" QED<=2", "") for p in engine_subprocesses("p p > mu+ mu- j j QED=2")
    )
    assert default == qed2
    assert "u c~ > mu+ mu- d s~" not in default
