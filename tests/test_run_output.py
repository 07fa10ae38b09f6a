"""End to end: `evgen run` on the shipped cards' processes writes LHE and ROOT files that
are physically valid, read back identically, and shower in Pythia 8 without errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pylhe
import pytest
import uproot
import yaml
from pythia_tools import shower_lhe

from evgen.cli import main

ROOT_DIR = Path(__file__).resolve().parent.parent


def run_shipped_card(tmp_path: Path, name: str, nevents: int, **integrator) -> Path:
    """Run a shipped card with fewer events; return the output folder."""
    data = yaml.safe_load((ROOT_DIR / "cards" / name).read_text())
    data["integrator"] = {**data.get("integrator", {}), **integrator}
    data["run"] = {**data.get("run", {}), "nevents": nevents}
    data["output"] = {"path": str(tmp_path / "out"), "formats": ["lhe", "root"]}
    card = tmp_path / name
    card.write_text(yaml.safe_dump(data))
    assert main(["run", str(card), "-q"]) == 0
    return tmp_path / "out"


@pytest.fixture(scope="module")
def ttbar_run(tmp_path_factory) -> Path:
    return run_shipped_card(
        tmp_path_factory.mktemp("ttbar"),
        "ttbar.yaml",
        400,
        iterations=4,
        points_per_iteration=10000,
    )


def lhe_events(path: Path):
    return list(pylhe.LHEFile.fromfile(path).events)


def colour_flow_errors(event) -> list[str]:
    """LHE rule: each tag twice; colour<->colour or anticolour<->anticolour across the
    incoming/outgoing boundary, colour<->anticolour on the same side."""
    places: dict[int, list[tuple[bool, int]]] = {}
    for p in event.particles:
        incoming = p.status == -1
        for slot, tag in ((0, int(p.color1)), (1, int(p.color2))):
            if tag:
                places.setdefault(tag, []).append((incoming, slot))
    errors = []
    for tag, where in places.items():
        if len(where) != 2:
            errors.append(f"tag {tag} appears {len(where)} times")
            continue
        (in_a, slot_a), (in_b, slot_b) = where
        same_side = in_a == in_b
        if same_side and slot_a == slot_b or not same_side and slot_a != slot_b:
            errors.append(f"tag {tag} connects {where}")
    return errors


def check_lhe_physics(path: Path, expected_masses: dict[int, float]) -> list:
    events = lhe_events(path)
    for ev in events:
        mom = np.array([[p.e, p.px, p.py, p.pz] for p in ev.particles])
        status = np.array([p.status for p in ev.particles])
        scale = mom[status == -1, 0].sum()
        balance = mom[status == 1].sum(axis=0) - mom[status == -1].sum(axis=0)
        assert np.all(np.abs(balance) <= 1e-6 * scale), balance
        for p, m4 in zip(ev.particles, mom, strict=True):
            mass = expected_masses.get(abs(int(p.id)), 0.0)
            assert p.m == pytest.approx(mass, abs=1e-6)
            inv = m4[0] ** 2 - (m4[1:] ** 2).sum()
            assert abs(inv - mass**2) <= 1e-6 * m4[0] ** 2
        assert colour_flow_errors(ev) == []
    return events


def test_ttbar_lhe_is_valid_and_matches_summary(ttbar_run):
    events = check_lhe_physics(ttbar_run / "events.lhe", {6: 173.0})
    assert len(events) == 400
    summary = json.loads((ttbar_run / "summary.json").read_text())
    lhe = pylhe.LHEFile.fromfile(ttbar_run / "events.lhe")
    init = lhe.init
    assert init.initInfo.beamA == 2212 and init.initInfo.energyA == 6500.0
    assert init.initInfo.PDFsetA == 247000 and init.initInfo.weightingStrategy == 3
    xs_init = sum(p.xSection for p in init.procInfo)
    assert xs_init == pytest.approx(summary["cross_section_pb"], rel=1e-9)
    for proc, sub in zip(init.procInfo, summary["subprocesses"], strict=True):
        assert proc.xSection == pytest.approx(sub["cross_section_pb"], rel=1e-9)
        assert proc.error == pytest.approx(sub["error_pb"], rel=1e-9)
    weights = np.array([ev.eventinfo.weight for ev in events])
    assert weights.sum() == pytest.approx(summary["cross_section_pb"], rel=1e-9)
    # every subprocess appears about in proportion to its cross section
    counts = Counter(int(ev.eventinfo.pid) for ev in events)
    for sub in summary["subprocesses"]:
        expected = 400 * sub["cross_section_pb"] / summary["cross_section_pb"]
        assert abs(counts[sub["process_id"]] - expected) < 4 * np.sqrt(expected) + 1
    assert "p p > t t~" in lhe.header if isinstance(lhe.header, str) else True


def test_ttbar_root_matches_lhe(ttbar_run):
    events = lhe_events(ttbar_run / "events.lhe")
    with uproot.open(ttbar_run / "events.root") as f:
        tree = f["events"]
        assert tree.classname == "TTree"
        arrays = tree.arrays(library="np")
    assert len(arrays["weight"]) == len(events)
    lhe_px = np.concatenate([[p.px for p in ev.particles] for ev in events])
    lhe_id = np.concatenate([[p.id for p in ev.particles] for ev in events])
    px_key = next(k for k in arrays if k.endswith("px"))
    id_key = next(k for k in arrays if k.endswith("pdg") or k.endswith("pid"))
    np.testing.assert_allclose(np.concatenate(arrays[px_key]), lhe_px, rtol=1e-9, atol=1e-7)
    np.testing.assert_array_equal(np.concatenate(arrays[id_key]), lhe_id)
    np.testing.assert_allclose(arrays["weight"], [ev.eventinfo.weight for ev in events], rtol=1e-9)


def test_ttbar_root_reads_in_real_root(ttbar_run):
    ROOT = pytest.importorskip("ROOT")
    f = ROOT.TFile.Open(str(ttbar_run / "events.root"))
    tree = f.Get("events")
    assert tree.GetEntries() == 400
    df = ROOT.RDataFrame(tree)
    summary = json.loads((ttbar_run / "summary.json").read_text())
    assert df.Sum("weight").GetValue() == pytest.approx(summary["cross_section_pb"], rel=1e-9)
    f.Close()


def test_ttbar_lhe_showers_in_pythia(ttbar_run):
    """Pythia 8 showers and hadronises every event of evgen's ttbar file (tops decayed
    by Pythia) with no error, in particular no colour or momentum error."""
    results, messages = shower_lhe(ttbar_run / "events.lhe")
    assert len(results) == 400
    assert all(results), f"{results.count(False)} events failed: {messages}"
    problems = [m for m in messages if m.startswith(("Error", "Abort"))]
    problems = [m for m in problems if "end of Les Houches Events File" not in m]
    assert problems == [], problems
    assert not any("momentum" in m or "colour" in m for m in messages), messages


@pytest.mark.parametrize(
    ("card", "masses"),
    [("drell_yan.yaml", {}), ("w_lnu.yaml", {}), ("ee_mumu.yaml", {})],
)
def test_other_cards_write_valid_lhe(tmp_path, card, masses):
    out = run_shipped_card(tmp_path, card, 200, iterations=3, points_per_iteration=5000)
    events = check_lhe_physics(out / "events.lhe", masses)
    assert len(events) == 200


def test_zprime_card_writes_valid_events_with_channels(tmp_path, capsys):
    """The Z' card (three channels) end to end: valid LHE; the channels' cross sections
    add up to the total; every event carries its channel, as counted in the summary and
    printed in the channel table."""
    out = run_shipped_card(
        tmp_path,
        "drell_yan_zprime.yaml",
        300,
        iterations=3,
        points_per_iteration=5000,
        batch_size=20000,
    )
    printed = capsys.readouterr().out
    assert "channels (one VEGAS grid each)" in printed and "│ zp " in printed
    events = check_lhe_physics(out / "events.lhe", {})
    assert len(events) == 300
    summary = json.loads((out / "summary.json").read_text())
    channels = summary["channels"]
    assert [c["label"] for c in channels] == ["a", "z", "zp"]
    assert sum(c["cross_section_pb"] for c in channels) == pytest.approx(
        summary["cross_section_pb"], rel=1e-12
    )
    assert sum(c["events"] for c in channels) == 300
    with uproot.open(out / "events.root") as f:
        written = Counter(f["events"]["channel"].array(library="np").tolist())
    assert written == Counter({c["channel"]: c["events"] for c in channels if c["events"]})
    for c in channels:  # n_c ~ Multinomial(N, sigma_c / sigma)
        expected = 300 * c["cross_section_pb"] / summary["cross_section_pb"]
        assert abs(c["events"] - expected) < 4 * np.sqrt(expected) + 1


def test_failed_write_leaves_no_output(tmp_path, monkeypatch, capsys):
    """The LHE file is complete when the ROOT writer fails: neither file, nor the folder
    the run created, may remain."""
    import evgen.run
    from evgen.errors import OutputError

    def broken(path, events, info):
        Path(path).write_text("partial")
        raise OutputError(f"{path}: simulated disk failure")

    monkeypatch.setattr(evgen.run, "write_root", broken)
    data = yaml.safe_load((ROOT_DIR / "cards" / "ee_mumu.yaml").read_text())
    data["run"]["nevents"] = 50
    data["output"] = {"path": str(tmp_path / "deep" / "out"), "formats": ["lhe", "root"]}
    card = tmp_path / "card.yaml"
    card.write_text(yaml.safe_dump(data))
    assert main(["run", str(card), "-q"]) == 2
    assert "simulated disk failure" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["card.yaml"]


def test_command_line_overrides(tmp_path, capsys):
    """-n, --seed and -o override the card; the summary table names the files written."""
    out = tmp_path / "elsewhere"
    card = ROOT_DIR / "cards" / "ee_mumu.yaml"
    assert main(["run", str(card), "-n", "37", "--seed", "5", "-o", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "e+ e- > mu+ mu-" in printed and str(out / "events.lhe") in printed
    assert len(lhe_events(out / "events.lhe")) == 37
    summary = json.loads((out / "summary.json").read_text())
    assert summary["events"] == 37
    assert set(summary["timings_s"]) == {"setup", "integration", "generation", "output"}
