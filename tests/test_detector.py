"""The parametric detector simulation against its configured values.

Each test builds parton-level events in the test (fixed momenta, so the expected
resolution is one number), runs :func:`unfolding.detector.simulate`, and compares the
measured resolution (sample standard deviation, error sigma / sqrt(2 (n - 1))) or
efficiency (binomial error) with the card's value as a pull: |pull| < 3.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import uproot

from evgen.events import Events, ProcessInfo, RunInfo
from evgen.io.root import write_root
from evgen.kinematics import boost, mass2
from unfolding.card import ObservableCard, parse_unfold_card
from unfolding.detector import simulate, simulate_file
from unfolding.reader import read_simulation

torch.set_num_threads(1)
F64 = torch.float64


def vec(e_or_pt: float, eta: float, phi: float, n: int, mass: float = 0.0) -> torch.Tensor:
    """(n, 4) copies of a four-momentum with pT, eta, phi (and mass), GeV."""
    pt = e_or_pt
    px, py, pz = pt * math.cos(phi), pt * math.sin(phi), pt * math.sinh(eta)
    e = math.sqrt(px**2 + py**2 + pz**2 + mass**2)
    return torch.tensor([e, px, py, pz], dtype=F64).expand(n, 4).clone()


def make_events(particles: list[tuple[int, int, int, torch.Tensor]]) -> Events:
    """Events from (pdg, status, mother (1-based, 0 none), momenta (n, 4)) per particle;
    two incoming gluons are put first."""
    n = particles[0][3].shape[0]
    beam = torch.zeros(n, 4, dtype=F64)
    beam[:, 0] = beam[:, 3] = 1000.0
    beam2 = beam * torch.tensor([1, 1, 1, -1], dtype=F64)
    rows = [(21, -1, 0, beam), (21, -1, 0, beam2)] + particles
    k = len(rows)
    momenta = torch.stack([r[3] for r in rows], 1)
    return Events(
        momenta=momenta,
        pdg=torch.tensor([r[0] for r in rows]).expand(n, k).clone(),
        status=torch.tensor([r[1] for r in rows]).expand(n, k).clone(),
        mothers=torch.tensor(
            [[r[2] or (1 if r[1] != -1 else 0), 2 if r[2] == 0 and r[1] != -1 else 0] for r in rows]
        )
        .expand(n, k, 2)
        .clone(),  # fmt: skip
        colours=torch.zeros(n, k, 2, dtype=torch.int64),
        masses=torch.sqrt(mass2(momenta).clamp(min=0)),
        spins=torch.full((n, k), 9.0, dtype=F64),
        weights=torch.full((n,), 1.0, dtype=F64),
        process_id=torch.ones(n, dtype=torch.int64),
        scale=torch.full((n,), 100.0, dtype=F64),
        alpha_s=torch.full((n,), 0.118, dtype=F64),
        alpha_qed=torch.full((n,), 1 / 132.5, dtype=F64),
        channel=torch.zeros(n, dtype=torch.int64),
    )


def card(detector: dict, observables: list[dict]) -> object:
    data = {
        "simulation": {"files": "sim.root", "pass_truth": "pass_truth", "pass_reco": "pass_reco"},
        "observables": [{"bins": 10, "range": [0, 1], **o} for o in observables],
        "detector": detector,
    }
    return parse_unfold_card(data, "test")


def obs(name: str, quantity: str, objects: list[str], other: list[str] | None = None) -> dict:
    d = {"quantity": quantity, "objects": objects}
    if other:
        d["other"] = other
    return {"name": name, "definition": d}


def pull_std(x: np.ndarray, expected: float) -> float:
    s = x.std(ddof=1)
    return (s - expected) / (expected / math.sqrt(2 * (len(x) - 1)))


def pull_fraction(k: int, n: int, p: float) -> float:
    return (k / n - p) / math.sqrt(p * (1 - p) / n)


N = 20000


def test_jet_energy_resolution_a_over_sqrt_e_plus_b():
    """sigma_E / E = a / sqrt(E) (+) b per |eta| region, at 3 energies and 2 regions."""
    regions = [
        {"eta_max": 2.5, "stochastic": 0.5, "constant": 0.05},
        {"eta_max": 5.0, "stochastic": 1.0, "constant": 0.10},
    ]
    det = {
        "jets": {"pt_min": 0.0, "eta_max": 5.0, "resolution": regions},
        "objects": {"j": {"pdg": [21]}},
    }
    c = card(det, [obs("e", "energy", ["j"])])
    gen = torch.Generator().manual_seed(1)
    for pt_gev, eta, region in [(25.0, 0.3, 0), (100.0, 1.0, 0), (400.0, 0.0, 0), (30.0, 3.0, 1)]:
        ev = make_events([(21, 1, 0, vec(pt_gev, eta, 0.4, N))])
        out = simulate(ev, c.detector, c.observables, gen)
        assert bool(out["pass_reco"].all()) and bool(out["pass_truth"].all())
        e_true = out["e_truth"].numpy()
        ratio = out["e_reco"].numpy() / e_true - 1
        a, b = regions[region]["stochastic"], regions[region]["constant"]
        expected = math.sqrt(a**2 / e_true[0] + b**2)
        assert abs(pull_std(ratio, expected)) < 3, (pt_gev, eta, ratio.std(), expected)
        assert abs(ratio.mean()) < 3 * expected / math.sqrt(N)  # unbiased


def test_lepton_pt_resolution_constant_plus_pt_term():
    regions = [
        {"eta_max": 1.5, "constant": 0.01, "pt_term": 1e-4},
        {"eta_max": 2.5, "constant": 0.02, "pt_term": 3e-4},
    ]
    det = {
        "leptons": {"pt_min": 0.0, "efficiency": 1.0, "resolution": regions},
        "objects": {"l": {"pdg": [11, -11, 13, -13]}},
    }
    c = card(det, [obs("lpt", "pt", ["l"]), obs("leta", "eta", ["l"])])
    gen = torch.Generator().manual_seed(2)
    for pt_gev, eta, pdg, region in [
        (50.0, 0.5, 11, 0),
        (500.0, -1.0, -13, 0),
        (200.0, 2.0, 13, 1),
    ]:
        ev = make_events([(pdg, 1, 0, vec(pt_gev, eta, -2.0, N))])
        out = simulate(ev, c.detector, c.observables, gen)
        ratio = out["lpt_reco"].numpy() / pt_gev - 1
        r = regions[region]
        expected = math.hypot(r["constant"], r["pt_term"] * pt_gev)
        assert abs(pull_std(ratio, expected)) < 3, (pt_gev, eta, ratio.std(), expected)
        # the direction is not smeared
        np.testing.assert_allclose(out["leta_reco"].numpy(), eta, atol=1e-12)


def test_reconstruction_efficiencies_and_acceptance():
    det = {
        "jets": {"pt_min": 30.0, "eta_max": 2.5, "efficiency": 0.9},
        "leptons": {"pt_min": 20.0, "eta_max": 2.4, "efficiency": 0.8},
        "objects": {"j": {"pdg": [1, 2, 21]}, "l": {"pdg": [11, 13]}},
    }
    c = card(det, [obs("jpt", "pt", ["j"]), obs("lpt", "pt", ["l"])])
    gen = torch.Generator().manual_seed(3)
    # well inside the acceptance: the pass fractions are the efficiencies
    ev = make_events([(2, 1, 0, vec(200.0, 0.0, 0.1, N)), (13, 1, 0, vec(200.0, 1.0, 2.0, N))])
    out = simulate(ev, c.detector, c.observables, gen)
    jet_found = np.isfinite(out["jpt_reco"].numpy()) | ~out["pass_reco"].numpy()
    assert abs(pull_fraction(int(out["pass_reco"].sum()), N, 0.9 * 0.8)) < 3
    # jets alone: a card with only the jet observable
    cj = card(det, [obs("jpt", "pt", ["j"])])
    out_j = simulate(ev, cj.detector, cj.observables, gen)
    assert abs(pull_fraction(int(out_j["pass_reco"].sum()), N, 0.9)) < 3
    cl = card(det, [obs("lpt", "pt", ["l"])])
    out_l = simulate(ev, cl.detector, cl.observables, gen)
    assert abs(pull_fraction(int(out_l["pass_reco"].sum()), N, 0.8)) < 3
    assert jet_found.all()
    # outside the acceptance (|eta| beyond, pT far below the threshold): never measured,
    # while the parton level still passes (no fiducial cuts)
    for particle in [(21, 1, 0, vec(200.0, 2.7, 0.0, 2000)), (1, 1, 0, vec(5.0, 0.0, 0.0, 2000))]:
        out = simulate(make_events([particle]), cj.detector, cj.observables, gen)
        assert not out["pass_reco"].any() and out["pass_truth"].all()
        assert torch.isnan(out["jpt_reco"]).all() and torch.isfinite(out["jpt_truth"]).all()


def test_btag_efficiency_and_mistag_rates():
    det = {
        "jets": {"pt_min": 0.0, "btag_efficiency": 0.7, "mistag_c": 0.15, "mistag_light": 0.02},
        "objects": {"b": {"pdg": [5, -5, 4, 1, 21], "btag": True}},
    }
    c = card(det, [obs("bpt", "pt", ["b"])])
    gen = torch.Generator().manual_seed(4)
    for pdg, rate in [(5, 0.7), (-5, 0.7), (4, 0.15), (1, 0.02), (21, 0.02)]:
        out = simulate(make_events([(pdg, 1, 0, vec(100.0, 0.5, 1.0, N))]), c.detector,
                       c.observables, gen)  # fmt: skip
        assert abs(pull_fraction(int(out["pass_reco"].sum()), N, rate)) < 3, pdg


def w_decays(n: int, seed: int, w_mass: float = 80.379) -> tuple[torch.Tensor, ...]:
    """On-shell W+ -> e+ nu_e: W with pT 60 GeV along x and rapidity 0.5, isotropic
    decay in its rest frame. Returns (W, e+, nu) momenta (n, 4)."""
    g = torch.Generator().manual_seed(seed)
    cos_t = 2 * torch.rand(n, generator=g, dtype=F64) - 1
    ph = 2 * math.pi * torch.rand(n, generator=g, dtype=F64)
    sin_t = torch.sqrt(1 - cos_t**2)
    half = w_mass / 2
    e_rest = torch.stack(
        [torch.full_like(cos_t, half), half * sin_t * torch.cos(ph), half * sin_t * torch.sin(ph),
         half * cos_t], -1)  # fmt: skip
    w = vec(60.0, 0.5, 0.0, n, mass=w_mass)
    beta = w[:, 1:] / w[:, :1]
    e = boost(e_rest, beta)
    return w, e, w - e


def test_missing_transverse_momentum_resolution_and_neutrino_pz():
    w, e, nu = w_decays(N, 5)
    det = {
        "leptons": {"pt_min": 0.0, "eta_max": 10.0, "efficiency": 1.0,
                    "resolution": [{"eta_max": 10.0, "constant": 0.0, "pt_term": 0.0}]},
        "met": {"constant": 8.0, "stochastic": 0.6},
        "objects": {"nu": {"pdg": [12]}, "e": {"pdg": [-11]}, "W": {"pdg": [24]}},
    }  # fmt: skip
    c = card(det, [obs("nupx", "px", ["nu"]), obs("wmass", "mass", ["W"])])
    ev = make_events([(24, 2, 0, w), (-11, 1, 3, e), (12, 1, 3, nu)])
    out = simulate(ev, c.detector, c.observables, torch.Generator().manual_seed(6))
    # sigma = 8 (+) 0.6 sqrt(sum ET), sum ET = the electron's pT (the only visible parton)
    sigma = torch.sqrt(8.0**2 + 0.6**2 * torch.hypot(e[:, 1], e[:, 2])).numpy()
    resid = (out["nupx_reco"] - out["nupx_truth"]).numpy() / sigma
    assert abs(pull_std(resid, 1.0)) < 3 and abs(resid.mean()) < 3 / math.sqrt(N)
    # without MET smearing the W-mass constraint gives back m_W exactly when it has a
    # real solution (the true neutrino is one)
    det["met"] = {"constant": 0.0, "stochastic": 0.0}
    c0 = card(det, [obs("wmass", "mass", ["W"]), obs("nupz", "pz", ["nu"])])
    out0 = simulate(ev, c0.detector, c0.observables, torch.Generator().manual_seed(7))
    np.testing.assert_allclose(out0["wmass_reco"].numpy(), 80.379, rtol=1e-9)
    np.testing.assert_allclose(out0["wmass_truth"].numpy(), 80.379, rtol=1e-9)
    # one of the two roots is the true pz; the smaller-|pz| choice is right most often
    right = np.isclose(out0["nupz_reco"].numpy(), nu[:, 3].numpy(), rtol=1e-7, atol=1e-7)
    assert right.mean() > 0.5


def test_resonance_is_sum_of_measured_decay_products_and_fiducial_cut():
    """A W -> q q~' decay: the detector-level W is the sum of its two measured jets; with
    zero resolution it equals the parton-level W; fiducial cuts act on the partons."""
    w, q1, q2 = w_decays(5000, 8)
    det = {
        "jets": {"pt_min": 0.0, "eta_max": 5.0,
                 "resolution": [{"eta_max": 5.0, "stochastic": 0.0, "constant": 0.0}]},
        "objects": {"W": {"pdg": [24]}, "q": {"pdg": [2]}},
        "fiducial": {"jet_pt_min": 20.0},
    }  # fmt: skip
    c = card(det, [obs("wm", "mass", ["W"]), obs("wpt", "pt", ["W"]), obs("dr", "delta_r",
                   ["q"], ["W"])])  # fmt: skip
    ev = make_events([(24, 2, 0, w), (2, 1, 3, q1), (-1, 1, 3, q2)])
    out = simulate(ev, c.detector, c.observables, torch.Generator().manual_seed(9))
    pt1 = torch.hypot(q1[:, 1], q1[:, 2])
    pt2 = torch.hypot(q2[:, 1], q2[:, 2])
    in_eta = (q1[:, 3] / pt1).asinh().abs().lt(5) & (q2[:, 3] / pt2).asinh().abs().lt(5)
    assert torch.equal(out["pass_truth"], (pt1 > 20) & (pt2 > 20))
    assert torch.equal(out["pass_reco"], in_eta)
    ok = out["pass_reco"] & out["pass_truth"]
    for name in ("wm", "wpt", "dr"):
        np.testing.assert_allclose(
            out[f"{name}_reco"][ok].numpy(), out[f"{name}_truth"][ok].numpy(), rtol=1e-9
        )


def test_simulate_file_writes_paired_tree_the_reader_reads(tmp_path):
    """evgen ROOT events -> detector tree (chunked) -> reader: flags and event numbers."""
    n = 3000
    w, e, nu = w_decays(n, 10)
    ev = make_events([(24, 2, 0, w), (-11, 1, 3, e), (12, 1, 3, nu)])
    run = RunInfo((2212, 2212), (6500.0, 6500.0), (0, 0), (0, 0), 3,
                  (ProcessInfo(1, "p p > w+ > e+ ve", 1.0, 0.1, 0.01),))  # fmt: skip
    events_file = write_root(tmp_path / "events.root", ev, run)
    data = {
        "simulation": {"files": str(tmp_path / "sim.root"), "pass_truth": "pass_truth",
                       "pass_reco": "pass_reco", "weight": "weight"},
        "observables": [
            {"name": "ept", "bins": 10, "range": [0, 100],
             "definition": {"quantity": "pt", "objects": "e"}},
            {"name": "wmt", "bins": 10, "range": [0, 200],
             "definition": {"quantity": "mass", "objects": ["e", "nu"]}},
        ],
        "detector": {"objects": {"e": {"pdg": -11}, "nu": {"pdg": 12}}, "chunk_size": 700,
                     "leptons": {"pt_min": 25.0, "efficiency": 0.9},
                     "fiducial": {"lepton_pt_min": 25.0, "lepton_eta_max": 2.5}},
    }  # fmt: skip
    c = parse_unfold_card(data, "test")
    stats = simulate_file(c.detector, c.observables, events_file, tmp_path / "sim.root", seed=3)
    assert stats["events"] == n
    with uproot.open(tmp_path / "sim.root") as f:
        t = f["events"].arrays(library="np")
    np.testing.assert_array_equal(np.sort(t["event_number"]), np.arange(n))
    assert int(t["pass_truth"].sum()) == stats["pass_truth"]
    assert stats["fakes"] > 0 and stats["misses"] > 0  # smearing across the 25 GeV cut
    # NaN exactly where a level fails
    assert np.array_equal(np.isnan(t["ept_reco"]), ~t["pass_reco"])
    assert np.array_equal(np.isnan(t["ept_truth"]), ~t["pass_truth"])
    sim = read_simulation(c)
    assert len(sim["weights"]) == int((t["pass_truth"] | t["pass_reco"]).sum())
    assert np.isfinite(sim["truth"]).all() and np.isfinite(sim["reco"]).all()
    # the efficiency inside the acceptance (lepton well above threshold)
    far = t["ept_truth"] > 40
    assert abs(pull_fraction(int(t["pass_reco"][far].sum()), int(far.sum()), 0.9)) < 3


def test_observable_needs_definition_for_the_detector():
    with pytest.raises(Exception, match="definition"):
        card({"objects": {"j": {"pdg": [21]}}}, [{"name": "x"}])
    assert isinstance(ObservableCard(name="x", bins=2, range=(0, 1)).bin_edges, np.ndarray)
