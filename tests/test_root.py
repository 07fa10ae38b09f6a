"""ROOT TTree writer: a TTree (not an RNTuple), exact round trip, real ROOT reads it."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import uproot

import evgen.io.root as root_module
from evgen.errors import OutputError
from evgen.events import Events, ProcessInfo
from evgen.io import read_root, write_root
from evgen.io.root import EVENT_BRANCHES, PARTICLE_BRANCHES

CARD = "process: g g > t t~\nnevents: 1000\nnote: 'quotes \" and ]]> and <tags>'\n"


def _assert_same(a: Events, b: Events) -> None:
    for name in Events.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        assert torch.equal(x, y), name


def _mixed(ttbar_events) -> tuple[list[Events], tuple[ProcessInfo, ...]]:
    a = ttbar_events(700, seed=1, process_id=1)
    b = ttbar_events(300, seed=2, process_id=2, decay_top=True)
    processes = (
        ProcessInfo(1, "g g > t t~", 400.0, 2.0, 1.3),
        ProcessInfo(2, "g g > t t~, t > b w+", 100.0, 1.0, 0.5),
    )
    return [a, b], processes


def test_writes_a_ttree_with_documented_branches(tmp_path, ttbar_events, run_info):
    path = write_root(tmp_path / "ttbar.root", ttbar_events(1000), run_info(card_text=CARD))
    with uproot.open(path) as f:
        tree = f["events"]
        assert tree.classname == "TTree"
        assert f["run"].classname == "TTree"
        assert f.classname_of("card") == "TObjString"
        expected = {"n_particles"} | {f"particle_{b}" for b in PARTICLE_BRANCHES}
        expected |= set(EVENT_BRANCHES)
        assert set(tree.keys()) == expected
        assert tree.num_entries == 1000
        assert tree["particle_px"].typename == "double[]"
        assert tree["particle_pdg"].typename == "int32_t[]"
        assert tree["weight"].typename == "double"
        assert str(f["card"]) == CARD


def test_round_trip_single_multiplicity(tmp_path, ttbar_events, run_info):
    events = ttbar_events(1000, seed=3)
    run = run_info(card_text=CARD)
    back, meta = read_root(write_root(tmp_path / "ttbar.root", events, run))
    assert isinstance(back, Events)
    _assert_same(events, back)
    assert meta["run_info"] == run
    assert meta["card"] == CARD
    assert meta["n_entries"] == 1000
    assert meta["processes"]["name"] == ["g g > t t~"]
    assert meta["processes"]["cross_section_pb"] == [500.0]


def test_round_trip_mixed_multiplicities(tmp_path, ttbar_events, run_info):
    batches, processes = _mixed(ttbar_events)
    run = run_info(processes=processes)
    path = write_root(tmp_path / "mixed.root", batches, run)
    with uproot.open(path) as f:
        counts = f["events"]["n_particles"].array(library="np")
        np.testing.assert_array_equal(counts, [4] * 700 + [6] * 300)
    back, meta = read_root(path)
    assert isinstance(back, list) and len(back) == 2
    _assert_same(batches[0], back[0])
    _assert_same(batches[1], back[1])
    assert meta["processes"]["process_id"] == [1, 2]
    assert meta["processes"]["name"] == ["g g > t t~", "g g > t t~, t > b w+"]
    assert meta["run_info"].processes == processes
    part, _ = read_root(path, entry_start=650, entry_stop=750)
    _assert_same(part[0], batches[0][650:])
    _assert_same(part[1], batches[1][:50])


def test_many_chunks(tmp_path, ttbar_events, run_info, monkeypatch):
    monkeypatch.setattr(root_module, "CHUNK_EVENTS", 128)
    events = ttbar_events(1000, seed=4)
    back, _ = read_root(write_root(tmp_path / "chunks.root", events, run_info()))
    _assert_same(events, back)


def test_real_root_reads_it(tmp_path, ttbar_events, run_info):
    ROOT = pytest.importorskip("ROOT")
    batches, processes = _mixed(ttbar_events)
    path = write_root(
        tmp_path / "mixed.root", batches, run_info(processes=processes, card_text=CARD)
    )
    weights = torch.cat([b.weights for b in batches])

    f = ROOT.TFile.Open(str(path))
    assert f and not f.IsZombie()
    tree = f.Get("events")
    assert tree.ClassName() == "TTree"
    assert tree.GetEntries() == 1000
    assert tree.Draw("particle_px", "particle_status == 1", "goff") == 700 * 2 + 300 * 3
    assert str(f.Get("card").GetString()) == CARD
    run_tree = f.Get("run")
    assert run_tree.GetEntries() == 2
    xs = []
    for entry in run_tree:
        xs.append(entry.cross_section_pb)
    assert xs == [400.0, 100.0]
    f.Close()

    df = ROOT.RDataFrame("events", str(path))
    assert df.Count().GetValue() == 1000
    assert df.Sum("weight").GetValue() == pytest.approx(float(weights.sum()), rel=1e-12)
    # momentum conservation, computed by ROOT from the jagged branches
    imbalance = (
        df.Define("in_px", "Sum(particle_px[particle_status == -1])")
        .Define("out_px", "Sum(particle_px[particle_status == 1])")
        .Define("in_e", "Sum(particle_e[particle_status == -1])")
        .Define("out_e", "Sum(particle_e[particle_status == 1])")
        .Define("d", "std::max(std::abs(in_px - out_px), std::abs(in_e - out_e)) / in_e")
        .Max("d")
        .GetValue()
    )
    assert imbalance < 1e-12
    top_pt = df.Define("pt", "sqrt(particle_px[2]*particle_px[2] + particle_py[2]*particle_py[2])")
    expected = torch.cat([torch.hypot(b.momenta[:, 2, 1], b.momenta[:, 2, 2]) for b in batches])
    assert top_pt.Sum("pt").GetValue() == pytest.approx(float(expected.sum()), rel=1e-12)


def test_unwritable_path_raises_output_error(tmp_path, ttbar_events, run_info):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = blocker / "events.root"
    with pytest.raises(OutputError, match=re.escape(str(target))):
        write_root(target, ttbar_events(10), run_info())
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_failure_mid_write_leaves_no_file(tmp_path, ttbar_events, run_info, monkeypatch):
    calls = []
    original = root_module._to_arrays

    def fail_on_second_chunk(events: Events):
        calls.append(len(events))
        if len(calls) == 2:
            raise RuntimeError("simulated failure while writing")
        return original(events)

    monkeypatch.setattr(root_module, "CHUNK_EVENTS", 100)
    monkeypatch.setattr(root_module, "_to_arrays", fail_on_second_chunk)
    with pytest.raises(RuntimeError, match="simulated"):
        write_root(tmp_path / "events.root", ttbar_events(500), run_info())
    assert calls == [100, 100]
    assert list(tmp_path.iterdir()) == []


def test_reserved_tree_name(tmp_path, ttbar_events, run_info):
    with pytest.raises(ValueError, match="reserved"):
        write_root(tmp_path / "x.root", ttbar_events(3), run_info(), tree_name="run")
    assert list(tmp_path.iterdir()) == []
