"""`evgen run` for any process: engine choice and card errors, MadGraph-style grouping of
subprocesses with one matrix element, the automatic engine against the analytic library in
a run, and end-to-end runs of 2 -> 3 processes whose LHE files pylhe reads, whose colour
flows follow the LHE rules and which Pythia 8 showers."""

from __future__ import annotations

import math
from pathlib import Path

import pylhe
import pytest
import torch
import yaml
from pythia_tools import shower_lhe

from evgen.card import parse_card
from evgen.cli import main
from evgen.errors import CardError
from evgen.phasespace.diagram_channels import ChannelPhaseSpace
from evgen.phasespace.rambo import Rambo
from evgen.run import run_card
from evgen.setup import prepare
from processes import (
    AnalyticProcess,
    FlavourAlias,
    matrix_element_owner,
    resolve,
)
from processes.auto.process import AutoProcess

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parent.parent


def collision(masses, n: int, e_cm: float, seed: int) -> torch.Tensor:
    """n RAMBO points (n, n_ext, 4) GeV in the centre-of-mass frame, massless incoming
    partons along +-z."""
    rambo = Rambo(list(masses[2:]))
    g = torch.Generator().manual_seed(seed)
    final, _ = rambo.map(torch.rand(n, rambo.n_dim, generator=g, dtype=torch.float64), e_cm)
    initial = torch.tensor(
        [[e_cm / 2, 0, 0, e_cm / 2], [e_cm / 2, 0, 0, -e_cm / 2]], dtype=torch.float64
    )
    return torch.cat([initial.expand(n, 2, 4), final], 1)


def card_data(tmp_path: Path, **changes) -> dict:
    """A small 13 TeV pp card; ``section__key=value`` or ``key=value`` changes."""
    data: dict = {
        "process": "p p > t t~",
        "integrator": {"iterations": 3, "points_per_iteration": 4000, "batch_size": 4000},
        "run": {"nevents": 20, "seed": 7},
        "output": {"path": str(tmp_path / "out"), "formats": ["lhe"]},
    }
    for key, value in changes.items():
        section, _, sub = key.partition("__")
        if sub:
            data.setdefault(section, {})[sub] = value
        else:
            data[section] = value
    return data


# ------------------------------------------------------------------ engine choice


def test_engine_auto_takes_the_library_when_it_covers_the_process(tmp_path) -> None:
    """auto: the analytic classes for p p > t t~ (the library has every subprocess with a
    diagram), the engine for p p > t t~ j and for lines with restrictions."""
    run = prepare(parse_card(card_data(tmp_path)))
    assert all(isinstance(p, AnalyticProcess) for p in run.subprocesses)
    assert len(run.subprocesses) == 9  # g g, and q q~ / q~ q for u c d s
    run = prepare(parse_card(card_data(tmp_path, engine="amplitudes")))
    assert [p.name for p in run.subprocesses][:2] == ["g g > t t~", "u u~ > t t~"]
    assert all(isinstance(matrix_element_owner(p), AutoProcess) for p in run.subprocesses)
    for line in ("p p > t t~ j", "p p > t t~ / z", "p p > t t~ QED=0"):
        subs = resolve(line)
        assert not any(isinstance(p, AnalyticProcess) for p in subs), line


def test_user_definitions_and_restrictions_reach_the_run(tmp_path) -> None:
    """definitions (define lines or a mapping) and '/' restrictions: the subprocesses and
    their names are the engine's, in MadGraph syntax."""
    lines = card_data(
        tmp_path,
        process="qq qq~ > e+ e- / z",
        definitions=["define qq = u c", "define qq~ = u~ c~"],
    )
    names = [p.name for p in prepare(parse_card(lines)).subprocesses]
    assert names == ["u u~ > e+ e- / z", "c c~ > e+ e- / z"]
    mapping = card_data(tmp_path, process="up up~ > e+ e- / z", definitions={"up": "u c"})
    mapping["definitions"]["up~"] = ["u~", "c~"]
    assert [p.name for p in prepare(parse_card(mapping)).subprocesses] == names


BAD = {
    "unknown engine": ({"engine": "madgraph"}, "engine:"),
    "bad definition line": ({"definitions": ["qq = u c"]}, "definitions:"),
    "unknown particle in definition": ({"definitions": {"qq": ["u", "top"]}}, "definitions:"),
    "analytic with definitions": (
        {"engine": "analytic", "definitions": ["define qq = u c"]},
        "engine: the analytic library takes bare process lines",
    ),
    "analytic without the process": (
        {"engine": "analytic", "process": "p p > t t~ j"},
        "engine: analytic; engine: amplitudes computes any tree-level process",
    ),
    "decay chain, analytic engine": (
        {"engine": "analytic", "process": "p p > t t~, t > b e+ ve"},
        "engine: the analytic library has no decay chains",
    ),
    "syntax error": ({"process": "p p > t t~ QCD="}, "process:"),
    "no diagram": ({"process": "p p > e+ mu-"}, "process:"),
    "no energy": (
        {"beams": {"energies": [150.0, 150.0]}},
        "process: 'g g > t t~': the final-state masses (346 GeV) exceed(s)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_process_cards_exit_2_naming_the_key(case, tmp_path, capsys) -> None:
    """Each error is one line naming the card key; nothing is written."""
    changes, expected = BAD[case]
    data = card_data(tmp_path)
    data.update(changes)
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"evgen: error: {path}: "), err
    assert expected in err, err
    assert not (tmp_path / "out").exists()


def test_decay_chain_with_the_analytic_engine_is_a_card_error_in_prepare(tmp_path) -> None:
    data = card_data(tmp_path, process="p p > t t~, t > b e+ ve", engine="analytic")
    with pytest.raises(CardError, match=r"engine: the analytic library has no decay chains"):
        prepare(parse_card(data))


# ------------------------------------------------------------------ grouping


@pytest.fixture(scope="module")
def ttj() -> list:
    return resolve("p p > t t~ j", engine="amplitudes")


def test_ttj_grouping_counts(ttj) -> None:
    """p p > t t~ j (4 flavours): 25 subprocesses with diagrams (g g, g q, q g, q q~ and
    their beam orders; MadGraph's count) and 13 distinct matrix elements: c is u, s is d."""
    assert len(ttj) == 25
    owners = {id(matrix_element_owner(p)) for p in ttj}
    assert len(owners) == 13
    by_name = {p.name: p for p in ttj}
    cc = by_name["c c~ > t t~ g"]
    assert isinstance(cc, FlavourAlias)
    assert cc.representative is by_name["u u~ > t t~ g"]
    assert by_name["s~ g > t t~ s~"].representative is by_name["d~ g > t t~ d~"]
    # mirrors are distinct matrix elements (momenta differ), as are u-type and d-type
    assert isinstance(by_name["u~ u > t t~ g"], AutoProcess)
    assert isinstance(by_name["d d~ > t t~ g"], AutoProcess)


def test_five_flavour_b_joins_the_down_quarks() -> None:
    """With 5 flavours (massless b, sm-no_b_mass) b b~ > t t~ g shares d d~ > t t~ g's
    plan: 31 subprocesses (25 and the six with a b), still 13 matrix elements."""
    subs = resolve("p p > t t~ j", engine="amplitudes", n_flavours=5)
    assert len(subs) == 31
    assert len({id(matrix_element_owner(p)) for p in subs}) == 13
    bb = next(p for p in subs if p.name == "b b~ > t t~ g")
    assert bb.representative.name == "d d~ > t t~ g"


@pytest.mark.parametrize(
    "line, n_sub, n_owner",
    [("p p > t t~ j", 25, 13), ("p p > w+ w-", 8, 4), ("p p > j j", 117, 51)],
)
def test_aliases_equal_their_own_engine_process(line: str, n_sub: int, n_owner: int) -> None:
    """Second method: every alias's |M|^2, SDE weights and channel count equal those of an
    AutoProcess built for its own flavours, at RAMBO points (observed: bit for bit). W pairs
    share across generations (the W couplings have other names but equal values with unit
    CKM); p p > j j has u c~ > u c~ apart from u u~ > u u~ (s-channel diagrams); its
    default order is QCD 2 for every subprocess (MadGraph's WEIGHTED of the whole
    process), so u d~ > c s~ (W exchange only) is not one of its 117 subprocesses."""
    subs = resolve(line, engine="amplitudes")
    assert (len(subs), len({id(matrix_element_owner(p)) for p in subs})) == (n_sub, n_owner)
    names = {p.name for p in subs}
    if line == "p p > j j":
        by_name = {p.name: p for p in subs}
        assert matrix_element_owner(by_name["u c~ > u c~"]) is not matrix_element_owner(
            by_name["u u~ > u u~"]
        )
        assert "u u~ > c c~" in names and "c c~ > u u~" in names
        assert "u d~ > c s~" not in names and "u s > d c" not in names
    aliases = [p for p in subs if isinstance(p, FlavourAlias)]
    assert len(aliases) == n_sub - n_owner
    for alias in aliases[:: max(1, len(aliases) // 12)]:  # a dozen, spread over the list
        own = AutoProcess(alias.incoming, alias.outgoing)
        p = collision(own.masses, 4, 900.0, seed=11)
        me = alias.matrix_element(p, 0.118)
        assert float((me / own.matrix_element(p, 0.118) - 1).abs().max()) < 1e-12, alias.name
        assert len(alias.channels()) == len(own.channels())
        assert alias.symmetry_factor == own.symmetry_factor  # c c > c c, c c~ > g g: 1/2
        assert torch.allclose(alias.channel_weights(p), own.channel_weights(p), atol=1e-12)


def test_integrand_evaluates_each_matrix_element_once(tmp_path, monkeypatch) -> None:
    """The integrand calls the shared plan once per point set, not once per flavour."""
    run = prepare(parse_card(card_data(tmp_path, process="p p > e+ e- j", engine="amplitudes")))
    (group,) = run.groups
    calls: list[str] = []
    owners = {id(matrix_element_owner(p)): matrix_element_owner(p) for p in group.subprocesses}
    assert len(owners) == 12 and len(group.subprocesses) == 24
    for owner in owners.values():
        fused = owner.matrix_element_and_channel_weights

        def counted(p, a_s, fused=fused, name=owner.name):
            calls.append(name)
            return fused(p, a_s)

        monkeypatch.setattr(owner, "matrix_element_and_channel_weights", counted)
    r = torch.rand(2000, group.integrand.n_dim, generator=torch.Generator().manual_seed(1))
    values = group.integrand.evaluate(r.double(), 0)
    assert bool((values.weights > 0).any())
    assert sorted(calls) == sorted(o.name for o in owners.values())
    assert torch.allclose(values.channel_prior.sum(1), torch.ones(2000, dtype=torch.float64))


# ------------------------------------------------------------------ runs


def test_ttbar_engine_agrees_with_analytic_library(tmp_path) -> None:
    """p p > t t~ (cards/ttbar.yaml physics) through the engine and through the analytic
    library, same seed and budget: within 3 sigma (and, the phase-space points being the
    same and |M|^2 equal to 1e-10, to 1e-6 relative). Observed 505.1 pb both."""
    base = yaml.safe_load((ROOT / "cards" / "ttbar.yaml").read_text())
    results = {}
    for engine in ("analytic", "amplitudes"):
        data = {
            **base,
            "engine": engine,
            "integrator": {"iterations": 3, "points_per_iteration": 6000, "batch_size": 6000},
            "run": {"nevents": 30, "seed": 3},
            "output": {"path": str(tmp_path / engine), "formats": ["lhe"]},
        }
        results[engine] = run_card(parse_card(data))
    a, b = results["analytic"], results["amplitudes"]
    assert abs(a.cross_section_pb - b.cross_section_pb) < 3 * math.hypot(a.error_pb, b.error_pb)
    assert abs(b.cross_section_pb / a.cross_section_pb - 1) < 1e-6
    # per subprocess: c c~ > t t~ (the engine's alias of u u~ > t t~, with its own PDFs)
    # against the library's own c c~ > t t~
    assert [s.name for s in a.subprocesses] == [s.name for s in b.subprocesses]
    for sa, sb in zip(a.subprocesses, b.subprocesses, strict=True):
        assert abs(sb.cross_section_pb / sa.cross_section_pb - 1) < 1e-6, sa.name
    by_name = {s.name: s.cross_section_pb for s in b.subprocesses}
    assert by_name["c c~ > t t~"] < 0.2 * by_name["u u~ > t t~"]  # sea charm vs valence u
    assert a.error_pb < 0.01 * a.cross_section_pb
    # the published LO figure of cards/ttbar.yaml, 504.9 +- 0.6 pb (README), within 3 sigma
    assert abs(b.cross_section_pb - 504.9) < 3 * math.hypot(b.error_pb, 0.6)


def lhe_colour_errors(event) -> list[str]:
    """LHE rule: each tag exactly twice; colour-colour or anticolour-anticolour across the
    incoming/outgoing boundary, colour-anticolour on the same side."""
    places: dict[int, list[tuple[bool, int]]] = {}
    for p in event.particles:
        for slot, tag in ((0, int(p.color1)), (1, int(p.color2))):
            if tag:
                places.setdefault(tag, []).append((p.status == -1, slot))
    errors = []
    for tag, where in places.items():
        if len(where) != 2:
            errors.append(f"tag {tag} appears {len(where)} times")
            continue
        (in_a, slot_a), (in_b, slot_b) = where
        if (in_a == in_b) == (slot_a == slot_b):
            errors.append(f"tag {tag} connects {where}")
    return errors


def colour_representation_errors(event) -> list[str]:
    """Quarks carry a colour only, antiquarks an anticolour only (incoming ones too, as in
    LHE), gluons both, colourless particles none."""
    errors = []
    for p in event.particles:
        pid, c, a = int(p.id), int(p.color1), int(p.color2)
        if pid == 21:
            ok = c > 0 and a > 0
        elif 1 <= abs(pid) <= 6:
            ok = (c > 0 and a == 0) if pid > 0 else (a > 0 and c == 0)
        else:
            ok = c == 0 and a == 0
        if not ok:
            errors.append(f"particle {pid} has colours ({c}, {a})")
    return errors


def eta(p) -> float:
    return math.asinh(p.pz / math.hypot(p.px, p.py))


def phi(p) -> float:
    return math.atan2(p.py, p.px)


def run_cli(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "-q"]) == 0
    return Path(data["output"]["path"])


@pytest.fixture(scope="module")
def ttj_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("ttj")
    data = yaml.safe_load((ROOT / "cards" / "ttbar_jet.yaml").read_text())
    # one RAMBO channel: cheap at a small budget (the diagram channels are run below)
    data["integrator"] = {
        "multichannel": False,
        "iterations": 3,
        "points_per_iteration": 3000,
        "batch_size": 3000,
    }
    data["run"] = {"nevents": 40, "seed": 5}
    data["output"] = {"path": str(tmp / "out"), "formats": ["lhe"]}
    return run_cli(tmp, data)


def test_ttj_lhe_colour_flows_are_valid(ttj_run: Path) -> None:
    """p p > t t~ j with the shipped card's physics: every event's colour tags appear
    exactly twice, connected as LHE requires, with colours matching the particles'
    representations; momenta balance; several subprocesses appear."""
    events = list(pylhe.LHEFile.fromfile(ttj_run / "events.lhe").events)
    assert len(events) == 40
    kinds = set()
    for ev in events:
        assert lhe_colour_errors(ev) == []
        assert colour_representation_errors(ev) == []
        ids = [int(p.id) for p in ev.particles]
        assert ids[2:4] == [6, -6] and len(ids) == 5
        jet = ev.particles[4]  # g or a light quark: the card's ptj and etaj
        assert math.hypot(jet.px, jet.py) >= 20.0 and abs(eta(jet)) <= 5.0
        kinds.add(tuple(ids[:2]))
        incoming = [p for p in ev.particles if p.status == -1]
        outgoing = [p for p in ev.particles if p.status == 1]
        for comp in ("e", "px", "py", "pz"):
            diff = sum(getattr(p, comp) for p in outgoing) - sum(getattr(p, comp) for p in incoming)
            assert abs(diff) < 1e-6 * sum(p.e for p in incoming)
    assert (21, 21) in kinds and len(kinds) > 1


def test_ttj_summary_lists_every_subprocess(ttj_run: Path) -> None:
    import json

    summary = json.loads((ttj_run / "summary.json").read_text())
    subs = summary["subprocesses"]
    assert len(subs) == 25
    total = sum(s["cross_section_pb"] for s in subs)
    assert total == pytest.approx(summary["cross_section_pb"], rel=1e-9)
    gg = next(s for s in subs if s["name"] == "g g > t t~ g")
    assert gg["cross_section_pb"] > 0.5 * total  # gluon fusion dominates at 13 TeV
    aliases = {"c c~ > t t~ g": "u u~ > t t~ g", "s g > t t~ s": "d g > t t~ d"}
    by_name = {s["name"]: s["cross_section_pb"] for s in subs}
    for alias, rep in aliases.items():  # one matrix element, other PDFs: sea below valence
        assert 0 < by_name[alias] < by_name[rep]


def test_drell_yan_jet_end_to_end_showers_in_pythia(tmp_path) -> None:
    """u u~ > e+ e- g in pp collisions (photon and Z, the drell_yan_jet card's cuts), with
    diagram channels: the LHE file reads back with pylhe, its colour flows are valid and
    Pythia 8 showers and hadronises every event without errors."""
    data = yaml.safe_load((ROOT / "cards" / "drell_yan_jet.yaml").read_text())
    data["process"] = "u u~ > e+ e- g"
    data["integrator"] = {"iterations": 6, "points_per_iteration": 10000, "batch_size": 10000}
    data["run"] = {"nevents": 60, "seed": 2}
    data["output"] = {"path": str(tmp_path / "out"), "formats": ["lhe"]}
    out = run_cli(tmp_path, data)
    events = list(pylhe.LHEFile.fromfile(out / "events.lhe").events)
    assert len(events) == 60
    for ev in events:
        assert [int(p.id) for p in ev.particles] == [2, -2, -11, 11, 21]
        assert lhe_colour_errors(ev) == [] and colour_representation_errors(ev) == []
        lep = [p for p in ev.particles if abs(int(p.id)) == 11]
        e = sum(p.e for p in lep)
        p2 = sum(p.px for p in lep) ** 2 + sum(p.py for p in lep) ** 2 + sum(p.pz for p in lep) ** 2
        assert 60.0 <= math.sqrt(e * e - p2) <= 120.0  # the card's mmll window
        jet = ev.particles[4]  # the gluon is a jet: ptj, etaj and drjl apply
        assert math.hypot(jet.px, jet.py) >= 20.0 and abs(eta(jet)) <= 5.0
        for lepton in lep:
            dphi = math.remainder(phi(jet) - phi(lepton), 2 * math.pi)
            assert math.hypot(eta(jet) - eta(lepton), dphi) >= 0.4
    results, messages = shower_lhe(out / "events.lhe")
    assert len(results) == 60
    assert all(results), f"{results.count(False)} events failed: {messages}"
    problems = [m for m in messages if m.startswith(("Error", "Abort"))]
    problems = [m for m in problems if "end of Les Houches Events File" not in m]
    assert problems == [], problems
    assert not any("colour" in m or "momentum" in m for m in messages), messages


def test_three_body_phase_space_switch(tmp_path) -> None:
    """3+ outgoing particles: multichannel true gives one diagram-channel mapping per
    distinct channel, false one RAMBO mapping."""
    multi = prepare(parse_card(card_data(tmp_path, process="u u~ > e+ e- g")))
    (group,) = multi.groups
    assert group.integrand.n_channels > 1
    assert all(isinstance(ps, ChannelPhaseSpace) for ps in group.integrand.phase_spaces)
    assert any("z(3,4)" in c.label for c in group.channels)
    single = prepare(
        parse_card(card_data(tmp_path, process="u u~ > e+ e- g", integrator__multichannel=False))
    )
    assert single.groups[0].integrand.n_channels == 1
    assert not isinstance(single.groups[0].integrand.phase_spaces[0], ChannelPhaseSpace)


def test_onshell_exclusion_vetoes_the_resonance(tmp_path) -> None:
    """'$ z' keeps the Z diagrams but cuts |m_ee - MZ| < 15 WZ (MadGraph's bwcutoff): no
    event of the integrand passes inside the window, events pass outside it."""
    data = card_data(tmp_path, process="u u~ > e+ e- g $ z", cuts={"mmll": 20.0})
    run = prepare(parse_card(data))
    (group,) = run.groups
    f = group.integrand
    r = torch.rand(20000, f.n_dim, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    masses, weights = [], []
    for c in range(f.n_channels):
        v = f.evaluate(r, c)
        p = v.momenta[:, 2] + v.momenta[:, 3]
        masses.append(torch.sqrt((p[:, 0] ** 2 - (p[:, 1:] ** 2).sum(-1)).clamp(min=0)))
        weights.append(v.weights)
    m, w = torch.cat(masses), torch.cat(weights)
    window = (m - run.params.mz).abs() < 15 * run.params.wz
    assert bool(window.any()) and float(w[window].abs().max()) == 0.0
    assert bool((w[~window] > 0).any())
