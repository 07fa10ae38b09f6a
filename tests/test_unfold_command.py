"""``evgen unfold`` and ``evgen detector`` end to end, in-process through evgen.cli.main.

Every input error stops with exit status 2 and one line naming the file and branch,
and leaves no output folder. The end-to-end run unfolds a Gaussian toy (efficiency and
fakes, data truth N(0.2, 0.8) against a N(0, 1) prior) with IBU and checks the written
histogram against the data's known truth: chi^2 with the quoted covariance.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
import torch
import uproot
import yaml
from scipy.stats import chi2 as chi2_dist
from test_unfold_inputs import base_card, toy_arrays, write_tree

from evgen.cli import main
from unfolding import command

torch.set_num_threads(1)


def write_card(tmp, data: dict, name: str = "card.yaml"):
    path = tmp / name
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture()
def toy(tmp_path):
    sim = toy_arrays(6000, 11)
    data = toy_arrays(3000, 12, 0.2, 0.8)
    write_tree(tmp_path / "sim.root", {"events": sim})
    write_tree(tmp_path / "data.root", {"events": data})
    card = base_card(str(tmp_path / "sim.root"), None, output={"path": str(tmp_path / "out")})
    card["ibu"] = {"toys": 10}
    return tmp_path, sim, data, card


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out = capsys.readouterr()
    return status, out.out, out.err


def assert_error(capsys, tmp, argv, *fragments):
    status, out, err = run_cli(capsys, *argv)
    assert status == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("evgen: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not (tmp / "out").exists()
    assert not [p for p in tmp.iterdir() if p.name.startswith(".out.")]  # no temporary left


def test_missing_file_tree_and_branch(toy, capsys):
    tmp, sim, data, card = toy
    path = write_card(tmp, card)
    assert_error(capsys, tmp, ["unfold", path, "--data", tmp / "missing.root"],
                 "missing.root: data file not found")  # fmt: skip
    card2 = {**card, "data": {**card["data"], "tree": "measured"}}
    assert_error(capsys, tmp, ["unfold", write_card(tmp, card2), "--data", tmp / "data.root"],
                 "data.root: no tree 'measured' in the data file")  # fmt: skip
    card3 = {**card, "simulation": {**card["simulation"], "pass_reco": "passReco"}}
    assert_error(capsys, tmp, ["unfold", write_card(tmp, card3), "--data", tmp / "data.root"],
                 "sim.root: tree 'events' has no branch 'passReco'")  # fmt: skip
    assert_error(capsys, tmp, ["unfold", tmp / "nocard.yaml"], "nocard.yaml: card file not found")


def test_branches_of_different_lengths(toy, capsys):
    tmp, sim, data, card = toy
    t = {k: sim[k] for k in ("x_truth", "y_truth", "weight", "pass_truth")}
    r = {k: sim[k][:-1] for k in ("x_reco", "y_reco", "pass_reco")}
    write_tree(tmp / "friends.root", {"truth": t, "reco": r})
    card["simulation"].update(files=str(tmp / "friends.root"), pairing="index",
                              truth_tree="truth", reco_tree="reco")  # fmt: skip
    assert_error(capsys, tmp, ["unfold", write_card(tmp, card), "--data", tmp / "data.root"],
                 "friends.root: trees 'truth' (6000 entries) and 'reco' (5999 entries)",
                 "different lengths")  # fmt: skip


def test_empty_selection(toy, capsys):
    tmp, sim, data, card = toy
    write_tree(tmp / "d0.root", {"events": {**data, "pass_reco": np.zeros(3000, bool)}})
    assert_error(capsys, tmp, ["unfold", write_card(tmp, card), "--data", tmp / "d0.root"],
                 "d0.root: tree 'events': no measured event passes the selection",
                 "'pass_reco'")  # fmt: skip


def test_nan_values(toy, capsys):
    tmp, sim, data, card = toy
    bad = {k: v.copy() for k, v in sim.items()}
    bad["y_truth"][np.nonzero(bad["pass_truth"])[0][0]] = np.nan
    write_tree(tmp / "nan.root", {"events": bad})
    card["simulation"]["files"] = str(tmp / "nan.root")
    assert_error(capsys, tmp, ["unfold", write_card(tmp, card), "--data", tmp / "data.root"],
                 "nan.root: tree 'events': branch 'y_truth': 1 NaN",
                 "parton-level selection")  # fmt: skip


def test_observable_mismatch(toy, capsys):
    tmp, sim, data, card = toy
    write_tree(tmp / "mev.root", {"events": {**data, "x_reco": data["x_reco"] * 1e3}})
    assert_error(capsys, tmp, ["unfold", write_card(tmp, card), "--data", tmp / "mev.root"],
                 "mev.root: branch 'x_reco' (observable x)", "differs between simulation "
                 "and data")  # fmt: skip
    write_tree(tmp / "other.root", {"events": {("z_reco" if k == "y_reco" else k): v
                                               for k, v in data.items()}})  # fmt: skip
    assert_error(capsys, tmp, ["unfold", write_card(tmp, card), "--data", tmp / "other.root"],
                 "other.root: tree 'events' has no branch 'y_reco' (observable y")  # fmt: skip


def test_card_and_method_errors(toy, capsys, monkeypatch):
    tmp, sim, data, card = toy
    card["ibu"] = {"iteration": 3}
    assert_error(capsys, tmp, ["unfold", write_card(tmp, card), "--data", tmp / "data.root"],
                 "card.yaml: ibu.iteration: unknown key; allowed: iterations")  # fmt: skip
    card["ibu"] = {"iterations": 0}
    assert_error(capsys, tmp, ["unfold", write_card(tmp, card), "--data", tmp / "data.root"],
                 "card.yaml: ibu.iterations: must be >= 1")  # fmt: skip
    card["ibu"] = {}
    monkeypatch.setitem(
        command.METHODS, "ibu", command.MethodEntry("unfolding.no_such_ibu", "f", "C")
    )
    assert_error(
        capsys,
        tmp,
        ["unfold", write_card(tmp, card), "--data", tmp / "data.root"],
        "method 'ibu' is not available: module unfolding.no_such_ibu is missing",
    )


def test_failure_while_writing_leaves_nothing(toy, capsys, monkeypatch):
    tmp, sim, data, card = toy
    (tmp / "out").mkdir()
    (tmp / "out" / "old.txt").write_text("an earlier run")

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("unfolding.output._write_tables", broken)
    status, out, err = run_cli(capsys, "unfold", write_card(tmp, card), "--data", tmp / "data.root")
    assert status == 2 and "cannot write output folder" in err and "No space left" in err
    assert [p.name for p in (tmp / "out").iterdir()] == ["old.txt"]  # untouched
    assert not [p for p in tmp.iterdir() if p.name.startswith(".out.")]


def test_ibu_end_to_end_matches_the_known_truth(toy, capsys):
    tmp, sim, data, card = toy
    card["ibu"] = {"iterations": 8, "toys": 60}
    card["observables"] = [{"name": "x", "bins": 12, "range": [-3, 3], "label": "$x$"}]
    path = write_card(tmp, card)
    status, out, err = run_cli(capsys, "unfold", path, "--data", tmp / "data.root", "--seed", 3)
    assert status == 0, err
    assert "evgen unfold: ibu" in out and "chi2/ndf vs truth" in out
    folder = tmp / "out"
    for name in ("unfolded.root", "histograms.json", "histograms.csv", "summary.json",
                 "card.yaml", "plots/x.png"):  # fmt: skip
        assert (folder / name).is_file(), name
    h = json.loads((folder / "histograms.json").read_text())["x"]
    values, truth = np.array(h["values"]), np.array(h["truth"])
    cov = np.array(h["covariance"]) + np.diag(np.array(h["truth_errors"]) ** 2)
    # the independent check: the data's own truth (pass_truth events; the card gives the
    # data no weight branch, so each counts 1) histogrammed here
    fid = data["pass_truth"]
    expected, _ = np.histogram(data["x_truth"][fid], np.linspace(-3, 3, 13))
    inside = (np.abs(data["x_truth"][fid]) <= 3).sum()
    np.testing.assert_allclose(truth, expected, atol=1e-9)
    assert abs(truth.sum()) <= inside
    # unfolded within the quoted errors: chi2 below its 99.9 % quantile, and the total
    chi2 = float((values - truth) @ np.linalg.solve(cov, values - truth))
    assert chi2 < chi2_dist.ppf(0.999, len(values)), chi2
    assert abs(values.sum() - truth.sum()) < 3 * math.sqrt(cov.sum())
    # the prior is the simulation's N(0, 1) shape: far from the data truth N(0.2, 0.8)
    prior = np.array(h["prior"])
    assert float((prior - truth) @ np.linalg.solve(cov, prior - truth)) > 3 * chi2
    # the ROOT file holds the same histogram and the events with their replicas
    with uproot.open(folder / "unfolded.root") as f:
        np.testing.assert_allclose(f["unfolded_x"].values(), values, rtol=1e-12)
        np.testing.assert_allclose(f["unfolded_x"].errors(), np.array(h["errors"]), rtol=1e-12)
        np.testing.assert_allclose(f["covariance_x"].values(), np.array(h["covariance"]))
        tree = f["unfolded"].arrays(library="np")
        assert tree["replica_weights"].shape == (len(tree["weight"]), 60)
        assert "card" in f
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["seed"] == 3 and summary["method"] == "ibu"
    assert math.isclose(summary["unfolded_fiducial_events"], tree["weight"].sum(), rel_tol=1e-9)


def test_detector_command_writes_a_file_the_unfold_card_reads(tmp_path, capsys):
    from test_detector import make_events, w_decays

    from evgen.events import ProcessInfo, RunInfo
    from evgen.io.root import write_root

    w, e, nu = w_decays(2000, 4)
    run = RunInfo((2212, 2212), (6500.0, 6500.0), (0, 0), (0, 0), 3,
                  (ProcessInfo(1, "p p > w+ > e+ ve", 1.0, 0.1, 0.01),))  # fmt: skip
    write_root(tmp_path / "events.root", make_events([(24, 2, 0, w), (-11, 1, 3, e),
                                                      (12, 1, 3, nu)]), run)  # fmt: skip
    card = {
        "simulation": {"files": str(tmp_path / "sim.root"), "pass_truth": "pass_truth",
                       "pass_reco": "pass_reco", "weight": "weight"},
        "observables": [{"name": "ept", "bins": 10, "range": [0, 100],
                         "definition": {"quantity": "pt", "objects": "e"}}],
        "detector": {"objects": {"e": {"pdg": -11}}},
    }  # fmt: skip
    path = write_card(tmp_path, card)
    status, out, err = run_cli(capsys, "detector", path, "--events", tmp_path / "events.root",
                               "--output", tmp_path / "sim.root")  # fmt: skip
    assert status == 0, err
    assert "evgen detector" in out and "pass_reco fraction" in out
    with uproot.open(tmp_path / "sim.root") as f:
        assert f["events"].num_entries == 2000
    status, out, err = run_cli(capsys, "detector", path, "--events", tmp_path / "none.root",
                               "--output", tmp_path / "sim2.root")  # fmt: skip
    assert status == 2 and "none.root: events file not found" in err
    assert not (tmp_path / "sim2.root").exists()


# ------------------------------------------------------------------ V1: the methods end to end

TINY_CLASSIFIER = {"hidden": 16, "layers": 1, "epochs": 2, "batch_size": 1024, "patience": 1}
TINY_GENERATIVE = {
    "hidden": 16,
    "hidden_layers": 1,
    "steps": 60,
    "finetune_steps": 10,
    "batch_size": 512,
    "max_iterations": 0,
    "min_iterations": 0,
    "ensemble": 2,
    "bootstrap_per_member": 2,
    "ode_steps": 4,
    "classifier": TINY_CLASSIFIER,
}


def strict_json(path):
    """The file as JSON, refusing NaN and infinities (not JSON)."""

    def refuse(constant):
        raise ValueError(f"{path.name}: {constant} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def assert_outputs(folder, names, replicas, per_observable_weights=False):
    """The files of an unfold run exist and hold what they promise."""
    for name in ("unfolded.root", "histograms.json", "histograms.csv", "summary.json",
                 "card.yaml", *(f"plots/{n}.png" for n in names)):  # fmt: skip
        assert (folder / name).is_file(), name
    blob = strict_json(folder / "histograms.json")
    summary = strict_json(folder / "summary.json")
    with uproot.open(folder / "unfolded.root") as f:
        tree = f["unfolded"].arrays(library="np")
        for n in names:
            h = blob[n]
            cov = np.array(h["covariance"])
            assert cov.shape == (len(h["values"]),) * 2
            np.testing.assert_allclose(np.diag(cov), np.array(h["errors"]) ** 2, rtol=1e-9)
            np.testing.assert_allclose(f[f"covariance_{n}"].values(), cov, rtol=1e-12)
            np.testing.assert_allclose(f[f"unfolded_{n}"].values(), h["values"], rtol=1e-12)
            suffix = f"_{n}" if per_observable_weights else ""
            # the histogram is the events' weighted histogram
            edges = np.array(h["edges"])
            counts, _ = np.histogram(tree[n], edges, weights=tree[f"weight{suffix}"])
            last = tree[n] == edges[-1]  # numpy and evgen both close the last bin
            np.testing.assert_allclose(counts, h["values"], rtol=1e-9, atol=1e-9 * last.sum())
            assert tree[f"replica_weights{suffix}"].shape == (len(tree[n]), replicas)
    assert "info" in summary and "model" not in summary["info"]
    return blob, summary, tree


def test_ibu_separate_1d_by_default_and_joint_on_request(toy, capsys):
    """Two observables: by default each is unfolded alone in its 1-d binning, which is
    checked bin by bin against unfold_spectrum called directly on that observable (same
    response, data and toy seed: the same numbers to 1e-10); with ibu.joint the two are
    one flattened 12 x 6 binning, whose projections must still describe the data truth
    (chi2 below its 99.9 % quantile)."""
    from unfolding.ibu import Binning, IBUConfig, unfold_spectrum
    from unfolding.reader import read_inputs

    tmp, sim, data, card = toy
    card["ibu"] = {"iterations": 4, "toys": 40}
    path = write_card(tmp, card)
    status, out, err = run_cli(capsys, "unfold", path, "--data", tmp / "data.root", "--seed", 5)
    assert status == 0, err
    assert "unfolded fiducial events (x)" in out and "unfolded fiducial events (y)" in out
    blob, summary, tree = assert_outputs(tmp / "out", ["x", "y"], 40, per_observable_weights=True)
    assert "weight" not in tree
    units = summary["unfoldings"]
    assert [u["observables"] for u in units] == [["x"], ["y"]]
    assert [u["info"]["truth_bins"] for u in units] == [12, 6]
    parsed, _ = command._load(str(path), None)
    inputs = read_inputs(parsed, tmp / "data.root")
    for j, name in enumerate(("x", "y")):
        edges = torch.as_tensor(parsed.observables[j].bin_edges)
        one = dataclasses.replace(
            inputs, sim_truth=inputs.sim_truth[:, [j]], sim_reco=inputs.sim_reco[:, [j]],
            data_reco=inputs.data_reco[:, [j]], truth_names=(name,), reco_names=(name,),
        )  # fmt: skip
        binning = Binning((edges,))
        spectrum = unfold_spectrum(one, binning, binning, IBUConfig(iterations=4, toys=40, seed=5))
        np.testing.assert_allclose(blob[name]["values"], spectrum.values.numpy(), rtol=1e-10)
        np.testing.assert_allclose(blob[name]["covariance"], spectrum.covariance.numpy(),
                                   rtol=1e-8, atol=1e-10)  # fmt: skip
        assert math.isclose(units[j]["unfolded_fiducial_events"], float(spectrum.values.sum()))
    # jointly: one unfolding of 72 bins, one weight per event
    card["ibu"] = {"iterations": 4, "toys": 40, "joint": [["y", "x"]]}
    status, out, err = run_cli(capsys, "unfold", write_card(tmp, card), "--data",
                               tmp / "data.root", "--seed", 5)  # fmt: skip
    assert status == 0, err
    blob2, summary2, tree2 = assert_outputs(tmp / "out", ["x", "y"], 40)
    assert [u["observables"] for u in summary2["unfoldings"]] == [["x", "y"]]
    assert summary2["info"]["truth_bins"] == 72
    for name in ("x", "y"):
        h = blob2[name]
        values, truth = np.array(h["values"]), np.array(h["truth"])
        cov = np.array(h["covariance"]) + np.diag(np.array(h["truth_errors"]) ** 2)
        chi2 = float((values - truth) @ np.linalg.solve(cov, values - truth))
        assert chi2 < chi2_dist.ppf(0.999, len(values)), (name, chi2)
    # a group naming an observable the card does not have
    shutil.rmtree(tmp / "out")
    card["ibu"] = {"joint": [["x", "z"]]}
    assert_error(capsys, tmp, ["unfold", write_card(tmp, card), "--data", tmp / "data.root"],
                 "card.yaml: ibu: joint: unknown observable(s) ['z']")  # fmt: skip


def test_unknown_keys_of_every_method_block_are_named(toy, capsys):
    tmp, sim, data, card = toy
    cases = [
        ("ibu", {"iteration": 3}, "ibu.iteration: unknown key; allowed: iterations,", "joint"),
        ("omnifold", {"iteration": 3}, "omnifold.iteration: unknown key; allowed: iterations,",
         "classifier"),
        ("omnifold", {"classifier": {"hiden": 8}},
         "omnifold.classifier.hiden: unknown key; allowed: hidden,", "epochs"),
        ("omnifold", {"classifier": {"dtype": "float16"}}, "omnifold.classifier.dtype",
         "float32 or float64"),
        ("generative", {"stepz": 3}, "generative: unknown setting(s) ['stepz']; allowed:",
         "'steps'"),
        ("generative", {"steps": 0}, "generative.steps: must be >= 1, got 0", "card.yaml"),
    ]  # fmt: skip
    for method, block, *fragments in cases:
        bad = {**card, "method": method, method: block}
        assert_error(capsys, tmp, ["unfold", write_card(tmp, bad), "--data", tmp / "data.root"],
                     "card.yaml: ", *fragments)  # fmt: skip


def test_omnifold_end_to_end(toy, capsys):
    """Tiny classifiers, one iteration, four bootstrap replicas: every output is there,
    the events are the simulation's fiducial events, and the total is in data units:
    within 5 sigma (sigma from the replicas and the data's Poisson error) of the data's
    fiducial events."""
    tmp, sim, data, card = toy
    card.update(method="omnifold", omnifold={"iterations": 1, "replicas": 4,
                                             "classifier": TINY_CLASSIFIER})  # fmt: skip
    status, out, err = run_cli(capsys, "unfold", write_card(tmp, card), "--data",
                               tmp / "data.root", "--seed", 2)  # fmt: skip
    assert status == 0, err
    assert "evgen unfold: omnifold" in out
    blob, summary, tree = assert_outputs(tmp / "out", ["x", "y"], 4)
    assert not (tmp / "out" / "model.pt").exists()
    fid = sim["pass_truth"]
    np.testing.assert_array_equal(tree["x"], sim["x_truth"][fid])
    truth_total = float(data["pass_truth"].sum())
    sigma = math.hypot(summary["unfolded_fiducial_error"], math.sqrt(truth_total))
    assert abs(summary["unfolded_fiducial_events"] - truth_total) < 5 * sigma
    assert summary["replicas"] == 4 and summary["info"]["iterations"] == 1


def test_generative_end_to_end_and_model_reuse(toy, capsys):
    """A tiny generative run writes its events with replica events, histograms, plots
    and model.pt; --model applies that model without training and, with the same seed
    and data, reproduces the run's events exactly; on new data it unfolds those; a model
    of other observables, another method with --model and a missing file are refused."""
    tmp, sim, data, card = toy
    card.update(method="generative", generative=TINY_GENERATIVE)
    path = write_card(tmp, card)
    status, out, err = run_cli(capsys, "unfold", path, "--data", tmp / "data.root", "--seed", 3)
    assert status == 0, err
    assert "evgen unfold: generative" in out
    first = tmp / "first"
    (tmp / "out").rename(first)
    blob, summary, tree = assert_outputs(first, ["x", "y"], 4)
    assert (first / "model.pt").is_file()
    assert tree["x_replicas"].shape == (len(data["x_reco"][data["pass_reco"]]), 4)
    assert summary["info"]["ensemble"] == 2 and summary["model"] is None
    # the saved model on the same data and seed: the same events, no training
    status, out, err = run_cli(capsys, "unfold", path, "--data", tmp / "data.root", "--seed", 3,
                               "--model", first / "model.pt")  # fmt: skip
    assert status == 0, err
    assert "(applied, not trained)" in out
    blob2, summary2, tree2 = assert_outputs(tmp / "out", ["x", "y"], 4)
    for key in ("x", "y", "weight", "replica_weights", "x_replicas"):
        np.testing.assert_array_equal(tree2[key], tree[key], err_msg=key)
    for name in ("x", "y"):
        np.testing.assert_array_equal(blob2[name]["values"], blob[name]["values"])
        np.testing.assert_array_equal(blob2[name]["covariance"], blob[name]["covariance"])
    assert summary2["info"]["trained"] is False and "final_loss" not in summary2["info"]
    assert summary2["model"] == str(first / "model.pt")
    assert (tmp / "out" / "model.pt").is_file()
    # new data: its own events (as many as it has measured events)
    new = toy_arrays(2000, 99, -0.3, 1.2)
    write_tree(tmp / "new.root", {"events": new})
    status, out, err = run_cli(capsys, "unfold", path, "--data", tmp / "new.root",
                               "--model", first / "model.pt")  # fmt: skip
    assert status == 0, err
    with uproot.open(tmp / "out" / "unfolded.root") as f:
        assert f["unfolded"].num_entries == int(new["pass_reco"].sum())
    # refusals: other observables, another method, no such file
    other = {**card, "observables": [{"name": "x", "bins": 12, "range": [-3, 3]}]}
    (tmp / "out").rename(tmp / "new_out")
    assert_error(capsys, tmp, ["unfold", write_card(tmp, other), "--data", tmp / "data.root",
                               "--model", first / "model.pt"],
                 "model.pt: the model was trained on the observables (x, y), the card has "
                 "(x)")  # fmt: skip
    assert_error(capsys, tmp, ["unfold", path, "--data", tmp / "data.root", "--method", "ibu",
                               "--model", first / "model.pt"],
                 "--model applies a saved generative-unfolding model")  # fmt: skip
    assert_error(capsys, tmp, ["unfold", path, "--data", tmp / "data.root", "--model",
                               tmp / "nomodel.pt"], "nomodel.pt: model file not found")  # fmt: skip


def test_package_reexports_every_public_name():
    """``unfolding.<name>`` is the module's own object for every public name of every
    module, minus the documented exceptions."""
    import importlib

    import unfolding

    skipped = {"ibu", "omnifold", "METHODS", "main", "add_parsers"}
    modules = ["card", "data", "errors", "reader", "detector", "ibu", "omnifold",
               "generative", "metrics", "output", "command"]  # fmt: skip
    for name in modules:
        module = importlib.import_module(f"unfolding.{name}")
        for public in module.__all__:
            if public in skipped:
                continue
            assert public in unfolding.__all__, (name, public)
            assert getattr(unfolding, public) is getattr(module, public), (name, public)
    with pytest.raises(AttributeError):
        unfolding.no_such_name  # noqa: B018
