"""LHE v3 writer: read back with pylhe, showered by Pythia 8, atomic on failure."""

from __future__ import annotations

import gzip
import re
import warnings
from pathlib import Path

import numpy as np
import pylhe
import pytest
import torch
from pythia_tools import shower_lhe

import evgen.io.lhe as lhe_module
from evgen.errors import OutputError
from evgen.events import Events, ProcessInfo
from evgen.io import write_lhe

CARD = """# evgen run card
process: g g > t t~
beams: {energy: 6500.0, pdf: 247000}
nevents: 3000
note: "x < y && z > w ]]> survives"
"""


def _read_back(path: Path) -> tuple[pylhe.LHEFile, list[np.ndarray], np.ndarray]:
    """pylhe's view of a file: (file, per-event particle tables, event-info table).

    A particle table row: id status mother1 mother2 color1 color2 px py pz e m lifetime spin.
    An event-info row: nparticles pid weight scale aqed aqcd. XML errors become failures.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lhef = pylhe.LHEFile.fromfile(str(path))
        particles, infos = [], []
        for event in lhef.events:
            ei = event.eventinfo
            infos.append([ei.nparticles, ei.pid, ei.weight, ei.scale, ei.aqed, ei.aqcd])
            particles.append(
                np.array(
                    [
                        [p.id, p.status, p.mother1, p.mother2, p.color1, p.color2]
                        + [p.px, p.py, p.pz, p.e, p.m, p.lifetime, p.spin]
                        for p in event.particles
                    ]
                )
            )
    return lhef, particles, np.array(infos)


def _check_same_events(written: Events, particles: list[np.ndarray], infos: np.ndarray) -> None:
    n, k = len(written), written.n_particles
    assert len(particles) == n == len(infos)
    table = np.stack(particles)  # (n, k, 13)
    assert table.shape == (n, k, 13)
    np.testing.assert_array_equal(table[..., 0], written.pdg.numpy())
    np.testing.assert_array_equal(table[..., 1], written.status.numpy())
    np.testing.assert_array_equal(table[..., 2:4], written.mothers.numpy())
    np.testing.assert_array_equal(table[..., 4:6], written.colours.numpy())
    # momenta and masses printed with 12 significant digits: 5e-12 relative
    # rounding, measured against the energy (zero components print as exact zeros)
    mom = written.momenta.numpy()
    scale = np.abs(mom[..., 0])
    for col, comp in ((6, 1), (7, 2), (8, 3), (9, 0)):
        np.testing.assert_array_less(
            np.abs(table[..., col] - mom[..., comp]), 6e-12 * scale + 1e-300
        )
    np.testing.assert_allclose(table[..., 10], written.masses.numpy(), rtol=6e-12, atol=0)
    np.testing.assert_array_equal(table[..., 11], 0.0)
    np.testing.assert_array_equal(table[..., 12], written.spins.numpy())
    np.testing.assert_array_equal(infos[:, 0], k)
    np.testing.assert_array_equal(infos[:, 1], written.process_id.numpy())
    np.testing.assert_array_equal(infos[:, 2], written.weights.numpy())  # 17 digits: exact
    np.testing.assert_allclose(infos[:, 3], written.scale.numpy(), rtol=6e-12)
    np.testing.assert_allclose(infos[:, 4], written.alpha_qed.numpy(), rtol=6e-12)
    np.testing.assert_allclose(infos[:, 5], written.alpha_s.numpy(), rtol=6e-12)
    # momentum conservation after the round trip: incoming = outgoing (final state)
    status = table[..., 1]
    p = table[..., [9, 6, 7, 8]]  # E px py pz
    p_in = (p * (status == -1)[..., None]).sum(1)
    p_out = (p * (status == 1)[..., None]).sum(1)
    rel = np.abs(p_in - p_out).max(-1) / p_in[:, 0]
    assert rel.max() < 1e-6


def test_round_trip_with_pylhe(tmp_path, ttbar_events, run_info):
    events = ttbar_events(3000, seed=3)
    run = run_info(card_text=CARD)
    path = write_lhe(tmp_path / "ttbar.lhe", events, run)
    assert path == tmp_path / "ttbar.lhe"
    lhef, particles, infos = _read_back(path)
    assert lhef.version == "3.0"
    init = lhef.init.initInfo
    assert (init.beamA, init.beamB) == (2212, 2212)
    assert (init.energyA, init.energyB) == (6500.0, 6500.0)
    assert (init.PDFgroupA, init.PDFgroupB, init.PDFsetA, init.PDFsetB) == (0, 0, 247000, 247000)
    assert init.weightingStrategy == 3 and init.numProcesses == 1
    (proc,) = lhef.init.procInfo
    assert (proc.xSection, proc.error, proc.unitWeight, proc.procId) == (500.0, 1.5, 0.05, 1)
    assert lhef.init.generators[0].name == "evgen"
    _check_same_events(events, particles, infos)
    # the weights sum to the cross section (evgen's convention)
    assert infos[:, 2].sum() == pytest.approx(500.0, rel=1e-12)


def test_card_verbatim_in_header(tmp_path, ttbar_events, run_info):
    path = write_lhe(tmp_path / "ttbar.lhe", ttbar_events(10), run_info(card_text=CARD))
    lhef, _, _ = _read_back(path)
    (card,) = [e for e in lhef.header.extra_elements if e.tag == "evgen_card"]
    assert card.text == CARD  # XML view: exact, even with "]]>" and "<" inside
    raw = path.read_text()
    before, after = CARD.split("]]>")
    assert f"<evgen_card><![CDATA[{before}]]]]><![CDATA[>{after}]]></evgen_card>" in raw
    info = [e for e in lhef.header.extra_elements if e.tag == "evgen_run_info"][0].text
    assert "events = 10" in info and "seed = 42" in info


def test_gzip_variant(tmp_path, ttbar_events, run_info):
    events = ttbar_events(500, seed=4)
    run = run_info(card_text=CARD)
    plain = write_lhe(tmp_path / "ttbar.lhe", events, run)
    zipped = write_lhe(tmp_path / "ttbar.lhe.gz", events, run)
    assert zipped.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(zipped.read_bytes()) == plain.read_bytes()
    _, particles, infos = _read_back(zipped)
    _check_same_events(events, particles, infos)
    forced = write_lhe(tmp_path / "forced.lhe", events, run, gzip=True)
    assert forced.read_bytes()[:2] == b"\x1f\x8b"
    unzipped = write_lhe(tmp_path / "plain.lhe.gz", events, run, gzip=False)
    assert unzipped.read_bytes() == plain.read_bytes()


def test_several_batches_and_processes(tmp_path, ttbar_events, run_info):
    a = ttbar_events(300, seed=5, process_id=1)
    b = ttbar_events(200, seed=6, process_id=2, decay_top=True)
    processes = (
        ProcessInfo(1, "g g > t t~", 400.0, 2.0, 1.3),
        ProcessInfo(2, "g g > t t~, t > b w+", 100.0, 1.0, 0.5),
    )
    path = write_lhe(tmp_path / "mixed.lhe", [a, b], run_info(processes=processes))
    lhef, particles, infos = _read_back(path)
    assert [p.procId for p in lhef.init.procInfo] == [1, 2]
    assert [p.xSection for p in lhef.init.procInfo] == [400.0, 100.0]
    _check_same_events(a, particles[:300], infos[:300])
    _check_same_events(b, particles[300:], infos[300:])


def test_rejects_inconsistent_input(tmp_path, ttbar_events, run_info):
    with pytest.raises(ValueError, match="process_id"):
        write_lhe(tmp_path / "x.lhe", ttbar_events(5, process_id=7), run_info())
    events = ttbar_events(5)
    events.momenta[2, 3, 1] = float("nan")
    with pytest.raises(ValueError, match="momenta"):
        write_lhe(tmp_path / "x.lhe", events, run_info())
    assert list(tmp_path.iterdir()) == []


# --- atomicity --------------------------------------------------------------------


def test_unwritable_path_raises_output_error(tmp_path, ttbar_events, run_info):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a regular file")
    target = blocker / "events.lhe"  # a path "under" a file cannot exist, even for root
    with pytest.raises(OutputError, match=re.escape(str(target))):
        write_lhe(target, ttbar_events(10), run_info())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_folder"]
    with pytest.raises(OutputError, match="missing"):
        write_lhe(tmp_path / "missing" / "events.lhe", ttbar_events(10), run_info())
    with pytest.raises(OutputError, match="directory"):
        write_lhe(tmp_path, ttbar_events(10), run_info())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_folder"]


@pytest.mark.parametrize("name", ["events.lhe", "events.lhe.gz"])
def test_failure_mid_write_leaves_no_file(tmp_path, ttbar_events, run_info, monkeypatch, name):
    calls = []
    original = lhe_module._format_events

    def fail_on_second_chunk(events: Events) -> str:
        calls.append(len(events))
        if len(calls) == 2:
            raise RuntimeError("simulated failure while writing")
        return original(events)

    monkeypatch.setattr(lhe_module, "CHUNK_EVENTS", 100)
    monkeypatch.setattr(lhe_module, "_format_events", fail_on_second_chunk)
    with pytest.raises(RuntimeError, match="simulated"):
        write_lhe(tmp_path / name, ttbar_events(500), run_info())
    assert len(calls) == 2  # the first chunk had been written to the temporary file
    assert list(tmp_path.iterdir()) == []
    # an existing file survives a failed rewrite untouched
    monkeypatch.setattr(lhe_module, "_format_events", original)
    good = write_lhe(tmp_path / name, ttbar_events(5), run_info())
    before = good.read_bytes()
    calls.clear()
    monkeypatch.setattr(lhe_module, "_format_events", fail_on_second_chunk)
    with pytest.raises(RuntimeError):
        write_lhe(tmp_path / name, ttbar_events(500), run_info())
    assert good.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_disk_error_mid_write_is_output_error(tmp_path, ttbar_events, run_info, monkeypatch):
    def no_space(events: Events) -> str:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(lhe_module, "_format_events", no_space)
    with pytest.raises(OutputError, match="No space left"):
        write_lhe(tmp_path / "full.lhe", ttbar_events(5), run_info())
    assert list(tmp_path.iterdir()) == []


# --- Pythia 8 ----------------------------------------------------------------------


def test_pythia_showers_and_hadronises_every_event(tmp_path, ttbar_events, run_info):
    plain = ttbar_events(200, seed=7)
    decayed = ttbar_events(50, seed=8, decay_top=True)
    path = write_lhe(tmp_path / "ttbar.lhe", [plain, decayed], run_info())
    results, messages = shower_lhe(path)
    assert len(results) == 250
    assert all(results), f"{results.count(False)} events failed; {messages}"
    problems = [m for m in messages if m.startswith(("Error", "Abort")) or "colour" in m]
    problems = [m for m in problems if "end of Les Houches Events File" not in m]
    assert problems == [], problems
    assert not any("momentum" in m or "colour" in m for m in messages), messages


def test_pythia_rejects_broken_colour_flow(tmp_path, ttbar_events, run_info):
    events = ttbar_events(20, seed=9)
    events.colours[5, 2] = torch.tensor([599, 0])  # tag 599 appears once
    path = write_lhe(tmp_path / "broken.lhe", events, run_info())
    results, messages = shower_lhe(path)
    assert results[5] is False
    assert results[:5] + results[6:] == [True] * 19
    assert any("checkColours" in m for m in messages), messages
