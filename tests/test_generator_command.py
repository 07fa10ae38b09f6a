"""End to end: ``evgen run`` (tiny budget) -> ``evgen train-generator`` -> ``evgen generate``.

The process is p p > e+ e- (several q q~ subprocesses, one network conditioned on them).
Checks: generated events conserve four-momentum and sit on their mass shells to 1e-6;
flavours and colour flows come from the matrix element, so the LHE showers in Pythia 8;
the cross section is the training sample's; the same seed gives the same events after
reloading; reweighting towards held-out truth writes weighted and unweighted events
and a report; bad input gives one clear error and leaves nothing written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import uproot
import yaml
from pythia_tools import shower_lhe

from evgen.cli import main
from evgen.generators import MODEL_VERSION, GeneratorModel
from evgen.generators.command import run_generate
from evgen.io.root import read_root, write_root

torch.set_num_threads(1)
ROOT_DIR = Path(__file__).resolve().parent.parent
TRAIN = [
    "--steps", "200", "--hidden", "32", "--hidden-layers", "2", "--batch-size", "256",
    "--members", "3", "--ode-steps", "6", "-q",
]  # fmt: skip


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, Path]:
    """A tiny Drell-Yan run split into a training and a held-out truth file."""
    tmp = tmp_path_factory.mktemp("dy")
    data = yaml.safe_load((ROOT_DIR / "cards" / "drell_yan.yaml").read_text())
    data["integrator"] = {"iterations": 3, "points_per_iteration": 4000}
    data["run"] = {"nevents": 1200, "seed": 5}
    data["output"] = {"path": str(tmp / "run"), "formats": ["root"]}
    card = tmp / "dy.yaml"
    card.write_text(yaml.safe_dump(data))
    assert main(["run", str(card), "-q"]) == 0
    events, meta = read_root(tmp / "run" / "events.root")
    info = meta["run_info"]
    write_root(tmp / "train.root", events[:800], info)
    write_root(tmp / "truth.root", events[800:], info)
    return {"card": card, "train": tmp / "train.root", "truth": tmp / "truth.root", "tmp": tmp}


@pytest.fixture(scope="module")
def model_file(samples) -> Path:
    path = samples["tmp"] / "model.pt"
    args = ["train-generator", str(samples["card"]), "--events", str(samples["train"])]
    assert main([*args, "-o", str(path), *TRAIN]) == 0
    return path


@pytest.fixture(scope="module")
def generated(samples, model_file) -> Path:
    out = samples["tmp"] / "gen"
    args = ["generate", str(model_file), "-n", "300", "--seed", "3", "-o", str(out)]
    rw = ["--reweight", str(samples["truth"]), "--classifier-epochs", "3"]
    assert main([*args, "--weight-samples", "3", *rw, "-q"]) == 0
    return out


def test_model_file_holds_card_and_cross_section(samples, model_file):
    model = GeneratorModel.load(model_file)
    _, meta = read_root(samples["train"])
    assert model.cross_section_pb == pytest.approx(sum(meta["processes"]["cross_section_pb"]))
    assert model.process_card["process"] == "p p > e+ e-"
    assert model.training["n_events"] == 800
    assert model.preprocessing.n_topologies >= 2  # several q q~ subprocesses, one network


def test_generated_events_are_physical(generated, model_file):
    events, meta = read_root(generated / "events.root")
    assert len(events) == 300
    p = events.momenta
    energy = p[:, :2, 0].sum(1)
    balance = p[:, 2:].sum(1) - p[:, :2].sum(1)
    assert float((balance.abs().amax(1) / energy).max()) < 1e-6  # four-momentum conserved
    m2 = p[..., 0] ** 2 - (p[..., 1:] ** 2).sum(-1)
    shell = (m2 - events.masses**2).abs() / energy[:, None] ** 2
    assert float(shell.max()) < 1e-6  # on the (massless) shells
    # flavours from the card's subprocesses, colour flows on the quarks only
    quarks = events.pdg.abs() <= 6
    assert bool((events.pdg[:, 2:].abs() == 11).all())
    assert bool((events.colours[quarks].sum(-1) > 0).all())
    assert bool((events.colours[~quarks] == 0).all())
    # colour connects the two incoming partons: q's colour is the q~'s anticolour
    assert bool((events.colours[:, 0].amax(-1) == events.colours[:, 1].amax(-1)).all())
    # cross section of the training sample, spread over the subprocesses written
    model = GeneratorModel.load(model_file)
    assert float(events.weights.sum()) == pytest.approx(model.cross_section_pb, rel=1e-12)
    assert sum(meta["processes"]["cross_section_pb"]) == pytest.approx(model.cross_section_pb)
    known = set(meta["processes"]["process_id"])
    assert set(events.process_id.tolist()) <= known
    summary = json.loads((generated / "generate.json").read_text())
    # every draw is an event, a redraw outside the cuts, or one beyond the beam energy
    assert summary["draws"] >= 300 + summary["redrawn_outside_cuts"]


def test_generated_events_pass_the_cards_cuts(samples, model_file):
    """The training events lie inside the card's cuts; a (briefly trained) network leaks
    over their edges and those draws are redrawn, so every event passes the cuts."""
    from evgen.card import load_card
    from evgen.cuts import Cuts

    card, _ = load_card(samples["card"])
    model = GeneratorModel.load(model_file)
    events = model.sample(2000, seed=11)
    stats = model.sampling_stats
    assert stats["outside_cuts"] > 0  # the network does leak; the redraw is exercised
    assert stats["drawn"] == 2000 + stats["outside_cuts"]
    cuts = Cuts(card.cuts, tuple(events.pdg[0, 2:].tolist()), card.model.n_flavours)
    assert bool(cuts(events.momenta[:, 2:]).all())


def test_generated_lhe_showers_in_pythia(generated):
    results, messages = shower_lhe(generated / "events.lhe")
    assert len(results) == 300 and all(results)
    assert not [m for m in messages if "Error" in m], messages


def test_weight_samples_and_reweighting_outputs(generated):
    hist = json.loads((generated / "weight_samples.json").read_text())
    assert hist["weight_samples"] == 3
    pt = hist["observables"]["pT_1"]
    assert np.asarray(pt["samples"]).shape == (3, len(pt["edges"]) - 1)
    assert np.allclose(np.asarray(pt["samples"]).sum(1), 1.0)
    assert (np.asarray(pt["std"]) >= 0).all()
    report = json.loads((generated / "reweighted" / "reweighting.json").read_text())
    for key in ("auc_before", "auc_after", "tail_fraction", "clipped_fraction", "calibration"):
        assert key in report
    weighted, _ = read_root(generated / "reweighted" / "weighted.root")
    plain, _ = read_root(generated / "events.root")
    ratio = weighted.weights / plain.weights
    assert float(ratio.mean()) == pytest.approx(1.0, rel=1e-9)  # weights of mean 1
    assert float(ratio.max()) <= report["weight_max"] * (1 + 1e-12)
    unweighted, _ = read_root(generated / "reweighted" / "events.root")
    assert len(unweighted) == report["n_unweighted"] > 0
    assert float(unweighted.weights.sum()) == pytest.approx(float(plain.weights.sum()))
    plots = sorted(p.name for p in (generated / "plots").iterdir())
    assert "weights.png" in plots and "pT_1.png" in plots
    summary = json.loads((generated / "generate.json").read_text())
    assert summary["n_events"] == 300 and summary["events_per_second"] > 0


def test_same_seed_same_events_after_reload(samples, model_file):
    a = run_generate(model_file, 50, seed=9, output=samples["tmp"] / "a", plots=False)
    b = run_generate(model_file, 50, seed=9, output=samples["tmp"] / "b", plots=False)
    c = run_generate(model_file, 50, seed=10, output=samples["tmp"] / "c", plots=False)
    ea, _ = read_root(a.outputs["root"])
    eb, _ = read_root(b.outputs["root"])
    ec, _ = read_root(c.outputs["root"])
    assert torch.equal(ea.momenta, eb.momenta) and torch.equal(ea.pdg, eb.pdg)
    assert torch.equal(ea.colours, eb.colours)
    assert not torch.equal(ea.momenta, ec.momenta)


def _error(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_bad_number_of_events(model_file, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["generate", str(model_file), "-n", "0", "-o", str(out), "-q"]) == 2
    assert "must be >= 1, got 0" in _error(capsys)
    assert not out.exists()


def test_resonance_options_reach_the_preprocessing(samples, tmp_path, capsys):
    """--resonance A B names the pair; p p > e+ e- has only the pair, whose second
    daughter is the pT-balance particle: refused with the reason, no model written."""
    out = tmp_path / "never.pt"
    args = ["train-generator", str(samples["card"]), "--events", str(samples["train"])]
    args += ["-o", str(out), "--resonance", "0", "1", "--pair-balance", *TRAIN]
    assert main(args) == 2
    assert "pair (0, 1) includes the last stable particle" in _error(capsys)
    assert not out.exists()


def test_resonance_mass_map_window_from_the_card(samples):
    """--resonance-pdg 23: the Z's mass and width from the card's model; the e+ e- pair
    takes the card's mmll window, a non-lepton pair (0, sqrt(s))."""
    from evgen.card import load_card
    from evgen.errors import EvgenError
    from evgen.generators.command import resonance_mass_maps
    from evgen.params import SMParameters

    card, _ = load_card(samples["card"])
    batches, _ = read_root(samples["train"])
    batches = batches if isinstance(batches, list) else [batches]
    ((m, w, low, high),) = resonance_mass_maps(card, ((0, 1),), (23,), batches)
    assert (m, w) == (SMParameters().mz, SMParameters().wz)
    assert low == max(card.cuts.mmll, 0.0) and low > 0
    assert high == (card.cuts.mmllmax if card.cuts.mmllmax >= 0 else 13000.0)
    with pytest.raises(EvgenError, match="needs a particle with a mass and a width"):
        resonance_mass_maps(card, ((0, 1),), (22,), batches)


def test_model_of_another_version(model_file, tmp_path, capsys):
    payload = torch.load(model_file, weights_only=True)
    payload["version"] = MODEL_VERSION + 1
    bad = tmp_path / "old.pt"
    torch.save(payload, bad)
    out = tmp_path / "never"
    assert main(["generate", str(bad), "-n", "10", "-o", str(out), "-q"]) == 2
    message = _error(capsys)
    assert f"format version {MODEL_VERSION + 1}" in message and "retrain" in message
    assert not out.exists()


def test_model_of_another_process(model_file, tmp_path, capsys):
    payload = torch.load(model_file, weights_only=True)
    card = json.loads(payload["process_card_json"])
    card["process"] = "p p > mu+ mu-"
    payload["process_card_json"] = json.dumps(card)
    bad = tmp_path / "other.pt"
    torch.save(payload, bad)
    out = tmp_path / "never"
    assert main(["generate", str(bad), "-n", "10", "-o", str(out), "-q"]) == 2
    message = _error(capsys)
    assert "fit no subprocess" in message and "p p > mu+ mu-" in message
    assert not out.exists()


def test_events_without_needed_branches(samples, tmp_path, capsys):
    bad = tmp_path / "bad.root"
    with uproot.recreate(bad) as f:
        f["events"] = {"weight": np.ones(3), "process_id": np.ones(3, dtype=np.int32)}
    model = tmp_path / "m.pt"
    args = ["train-generator", str(samples["card"]), "--events", str(bad), "-o", str(model)]
    assert main([*args, *TRAIN]) == 2
    message = _error(capsys)
    assert str(bad) in message and "particle_px" in message
    assert not model.exists() and list(tmp_path.iterdir()) == [bad]


def test_truth_of_another_process(samples, model_file, tmp_path, capsys):
    events, meta = read_root(samples["truth"])
    events.pdg[:, 2] = -13
    events.pdg[:, 3] = 13
    bad = tmp_path / "mumu.root"
    write_root(bad, events, meta["run_info"])
    out = tmp_path / "never"
    args = ["generate", str(model_file), "-n", "10", "-o", str(out), "--reweight", str(bad)]
    assert main([*args, "-q"]) == 2
    assert "not one the model knows" in _error(capsys)
    assert not out.exists()


def test_events_of_another_card(samples, tmp_path, capsys):
    data = yaml.safe_load(samples["card"].read_text())
    data["process"] = "p p > mu+ mu-"
    card = tmp_path / "mumu.yaml"
    card.write_text(yaml.safe_dump(data))
    model = tmp_path / "m.pt"
    args = ["train-generator", str(card), "--events", str(samples["train"]), "-o", str(model)]
    assert main([*args, *TRAIN]) == 2
    assert "holds events of process 'p p > e+ e-'" in _error(capsys)
    assert not model.exists()
