"""Unfolding card and ROOT reader: values, pairing, chunking, and every input error.

Toy files are written in the test with uproot: truth ~ N(0, 1), reco = truth + N(0, 0.5),
selection flags from known efficiencies. The reader's arrays are compared with the
arrays written (exactly) and the three pairings with each other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import uproot

from evgen.errors import CardError
from unfolding.card import load_unfold_card, parse_unfold_card
from unfolding.errors import UnfoldingError
from unfolding.reader import read_data_truth, read_inputs, read_simulation

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]


def toy_arrays(n: int, seed: int, mean: float = 0.0, width: float = 1.0) -> dict[str, np.ndarray]:
    """Gaussian toy in two observables x (smeared 0.5) and y (smeared 0.3): efficiency
    0.7 + 0.2 tanh(x), 10 % fakes (pass reco only), weights with a few negative."""
    rng = np.random.default_rng(seed)
    xt = rng.normal(mean, width, n)
    yt = rng.normal(1.0, 0.5, n)
    xr = xt + rng.normal(0, 0.5, n)
    yr = yt + rng.normal(0, 0.3, n)
    pass_reco = rng.random(n) < 0.7 + 0.2 * np.tanh(xt)
    fake = rng.random(n) < 0.1
    pass_truth = ~fake
    pass_reco = pass_reco | fake
    weight = np.where(rng.random(n) < 0.05, -1.0, 1.0)
    return {
        "event_number": np.arange(n, dtype=np.int64) * 3 + 7,
        "x_truth": xt,
        "y_truth": yt,
        "x_reco": xr,
        "y_reco": yr,
        "pass_truth": pass_truth,
        "pass_reco": pass_reco,
        "weight": weight,
    }


def write_tree(path: Path, trees: dict[str, dict[str, np.ndarray]]) -> Path:
    with uproot.recreate(path) as f:
        for name, arrays in trees.items():
            f.mktree(name, {k: v.dtype for k, v in arrays.items()})
            if len(next(iter(arrays.values()))):
                f[name].extend(arrays)
    return path


def base_card(sim: str | list[str], data: str | None = None, **extra) -> dict:
    card = {
        "simulation": {
            "files": sim,
            "weight": "weight",
            "pass_truth": "pass_truth",
            "pass_reco": "pass_reco",
        },
        "data": {"file": data, "pass_reco": "pass_reco"},
        "observables": [
            {"name": "x", "bins": 12, "range": [-3, 3]},
            {"name": "y", "edges": [-1, 0, 0.5, 1, 1.5, 2, 3]},
        ],
        "method": "ibu",
    }
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(card.get(key), dict):
            card[key] = {**card[key], **value}
        else:
            card[key] = value
    return card


@pytest.fixture()
def toy(tmp_path):
    sim = toy_arrays(4000, 1)
    data = toy_arrays(2000, 2, 0.2, 0.8)
    write_tree(tmp_path / "sim.root", {"events": sim})
    write_tree(tmp_path / "data.root", {"events": data})
    return tmp_path, sim, data


# ----------------------------------------------------------------------------- card


def test_shipped_unfolding_cards_load():
    for path in sorted((ROOT / "cards").glob("unfold_*.yaml")):
        card, text = load_unfold_card(path)
        assert card.observables and text


@pytest.mark.parametrize(
    "change, message",
    [
        ({"observables": [{"name": "x", "bins": 3}]}, "observables.0: binning"),
        ({"observables": [{"name": "x y", "bins": 3, "range": [0, 1]}]}, "observables.0.name"),
        (
            {
                "simulation": {
                    "files": "a",
                    "pairing": "event_number",
                    "truth_tree": "t",
                    "reco_tree": "r",
                }
            },
            "needs the event_number branch",
        ),  # fmt: skip
        ({"method": "svd"}, "method: Input should be"),
        ({"sim": 1}, "sim: unknown key"),
        (
            {"observables": [{"name": "x", "bins": 3, "range": [0, 1]}] * 2},
            "duplicated names ['x']",
        ),
    ],
)
def test_card_errors_name_the_key(change, message):
    data = base_card("sim.root")
    data.update(change)
    with pytest.raises(CardError) as err:
        parse_unfold_card(data, "cards/u.yaml")
    assert str(err.value).startswith("cards/u.yaml: ") and message in str(err.value)


# ----------------------------------------------------------------------------- values


def test_tree_pairing_reads_the_written_values(toy):
    tmp, sim, data = toy
    card = parse_unfold_card(base_card(str(tmp / "sim.root"), str(tmp / "data.root")))
    inputs = read_inputs(card)
    keep = sim["pass_truth"] | sim["pass_reco"]
    assert inputs.n_sim == keep.sum()
    assert torch.equal(inputs.sim_pass_truth, torch.from_numpy(sim["pass_truth"][keep]))
    assert torch.equal(inputs.sim_pass_reco, torch.from_numpy(sim["pass_reco"][keep]))
    pt = inputs.sim_pass_truth.numpy()
    np.testing.assert_array_equal(inputs.sim_truth[pt, 0].numpy(), sim["x_truth"][keep][pt])
    np.testing.assert_array_equal(inputs.sim_truth[pt, 1].numpy(), sim["y_truth"][keep][pt])
    pr = inputs.sim_pass_reco.numpy()
    np.testing.assert_array_equal(inputs.sim_reco[pr, 0].numpy(), sim["x_reco"][keep][pr])
    np.testing.assert_array_equal(inputs.sim_weights.numpy(), sim["weight"][keep])
    assert (inputs.sim_weights < 0).any()
    # placeholders: the passing rows' mean
    np.testing.assert_allclose(
        inputs.sim_truth[~pt, 0].numpy(), sim["x_truth"][keep][pt].mean(), rtol=1e-12
    )
    np.testing.assert_array_equal(inputs.data_reco[:, 0].numpy(), data["x_reco"][data["pass_reco"]])
    assert inputs.data_weights.dtype == torch.float64 and inputs.truth_names == ("x", "y")
    known = read_data_truth(card)
    assert known is not None
    np.testing.assert_array_equal(known.truth[:, 1].numpy(), data["y_truth"][data["pass_truth"]])


def test_chunked_reading_and_several_files_give_the_same_arrays(toy):
    tmp, sim, _ = toy
    one = read_simulation(parse_unfold_card(base_card(str(tmp / "sim.root"))))
    small = read_simulation(parse_unfold_card(base_card(str(tmp / "sim.root"), step_size=37)))
    for key in one:
        np.testing.assert_array_equal(one[key], small[key])
    half = {k: v[:1500] for k, v in sim.items()}
    rest = {k: v[1500:] for k, v in sim.items()}
    write_tree(tmp / "a.root", {"events": half})
    write_tree(tmp / "b.root", {"events": rest})
    two = read_simulation(parse_unfold_card(base_card([str(tmp / "a.root"), str(tmp / "b.root")])))
    for key in ("weights", "pass_truth", "pass_reco"):
        np.testing.assert_array_equal(one[key], two[key])
    passing = one["pass_truth"]
    np.testing.assert_array_equal(one["truth"][passing], two["truth"][passing])


def split_trees(sim: dict[str, np.ndarray], seed: int) -> tuple[dict, dict]:
    """Two trees as an analysis writes them: the truth tree has the events passing the
    parton-level selection, the reco tree those passing the detector level, shuffled."""
    rng = np.random.default_rng(seed)
    t_keys = ("event_number", "x_truth", "y_truth", "weight")
    r_keys = ("event_number", "x_reco", "y_reco", "weight")
    t_rows = rng.permutation(np.nonzero(sim["pass_truth"])[0])
    r_rows = rng.permutation(np.nonzero(sim["pass_reco"])[0])
    return {k: sim[k][t_rows] for k in t_keys}, {k: sim[k][r_rows] for k in r_keys}


def test_event_number_join_equals_the_one_tree_pairing(toy):
    tmp, sim, _ = toy
    truth, reco = split_trees(sim, 3)
    write_tree(tmp / "two.root", {"truth": truth, "reco": reco})
    two = base_card(str(tmp / "two.root"))
    two["simulation"] = {"files": str(tmp / "two.root"), "pairing": "event_number",
                         "truth_tree": "truth", "reco_tree": "reco",
                         "event_number": "event_number", "weight": "weight"}  # fmt: skip
    joined = read_simulation(parse_unfold_card(two))
    one = read_simulation(parse_unfold_card(base_card(str(tmp / "sim.root"))))
    # the join is sorted by event number, the one tree is already in that order
    for key in one:
        np.testing.assert_array_equal(joined[key], one[key], err_msg=key)
    # duplicated event numbers are refused
    truth["event_number"][5] = truth["event_number"][9]
    write_tree(tmp / "dup.root", {"truth": truth, "reco": reco})
    two["simulation"]["files"] = str(tmp / "dup.root")
    with pytest.raises(UnfoldingError, match=r"dup.root: branch 'event_number' of tree 'truth'"):
        read_simulation(parse_unfold_card(two))


def test_index_pairing_and_trees_of_different_lengths(toy):
    tmp, sim, _ = toy
    t = {k: sim[k] for k in ("x_truth", "y_truth", "weight", "pass_truth")}
    r = {k: sim[k] for k in ("x_reco", "y_reco", "pass_reco")}
    write_tree(tmp / "friends.root", {"truth": t, "reco": r})
    card = base_card(str(tmp / "friends.root"))
    card["simulation"].update(pairing="index", truth_tree="truth", reco_tree="reco")
    friends = read_simulation(parse_unfold_card(card))
    one = read_simulation(parse_unfold_card(base_card(str(tmp / "sim.root"))))
    for key in one:
        np.testing.assert_array_equal(friends[key], one[key])
    write_tree(tmp / "short.root", {"truth": t, "reco": {k: v[:-3] for k, v in r.items()}})
    card["simulation"]["files"] = str(tmp / "short.root")
    with pytest.raises(UnfoldingError, match="different lengths"):
        read_simulation(parse_unfold_card(card))


# ----------------------------------------------------------------------------- errors


def error_of(card: dict) -> str:
    with pytest.raises(UnfoldingError) as err:
        read_inputs(parse_unfold_card(card))
    return str(err.value)


def test_missing_file_tree_branch(toy):
    tmp, sim, data = toy
    msg = error_of(base_card(str(tmp / "nope.root"), str(tmp / "data.root")))
    assert "nope.root: simulation file not found" in msg
    msg = error_of(base_card(str(tmp / "sim.root"), str(tmp / "data.root"),
                             simulation={"tree": "Events"}))  # fmt: skip
    assert "sim.root: no tree 'Events'" in msg and "['events']" in msg
    msg = error_of(base_card(str(tmp / "sim.root"), str(tmp / "data.root"),
                             simulation={"weight": "mcWeight"}))  # fmt: skip
    assert "sim.root: tree 'events' has no branch 'mcWeight' (event weight" in msg
    (tmp / "text.root").write_text("not ROOT")
    msg = error_of(base_card(str(tmp / "sim.root"), str(tmp / "text.root")))
    assert "text.root: cannot open data file as ROOT" in msg


def test_jagged_branch_is_refused(toy):
    tmp, sim, data = toy
    import awkward as ak

    with uproot.recreate(tmp / "jagged.root") as f:
        arrays = {k: v for k, v in sim.items() if k != "x_reco"}
        counts = np.full(len(sim["x_reco"]), 2)
        arrays["x_reco"] = ak.unflatten(np.repeat(sim["x_reco"], 2), counts)
        types = {k: (v.dtype if k != "x_reco" else "var * float64") for k, v in arrays.items()}
        f.mktree("events", types, counter_name=lambda name: "n_x")
        f["events"].extend({**arrays, "n_x": np.full(len(sim["x_reco"]), 2, np.int32)})
    msg = error_of(base_card(str(tmp / "jagged.root"), str(tmp / "data.root")))
    assert "jagged.root: branch 'x_reco' of tree 'events'" in msg and "different lengths" in msg


def test_nan_in_passing_events_only_is_refused(toy):
    tmp, sim, data = toy
    bad = {k: v.copy() for k, v in sim.items()}
    fail_reco = np.nonzero(~bad["pass_reco"])[0]
    bad["x_reco"][fail_reco[:10]] = np.nan  # allowed: they fail the reco selection
    write_tree(tmp / "nan_ok.root", {"events": bad})
    inputs = read_inputs(parse_unfold_card(base_card(str(tmp / "nan_ok.root"),
                                                     str(tmp / "data.root"))))  # fmt: skip
    assert torch.isfinite(inputs.sim_reco).all()
    first = int(np.nonzero(bad["pass_reco"])[0][3])
    bad["x_reco"][first] = np.nan
    write_tree(tmp / "nan.root", {"events": bad})
    msg = error_of(base_card(str(tmp / "nan.root"), str(tmp / "data.root")))
    assert "nan.root: tree 'events': branch 'x_reco': 1 NaN" in msg
    assert f"entry {first}" in msg and "detector-level" in msg
    dbad = {k: v.copy() for k, v in data.items()}
    dbad["y_reco"][np.nonzero(dbad["pass_reco"])[0][0]] = np.inf
    write_tree(tmp / "dnan.root", {"events": dbad})
    msg = error_of(base_card(str(tmp / "sim.root"), str(tmp / "dnan.root")))
    assert "dnan.root: tree 'events': branch 'y_reco'" in msg


def test_empty_selections(toy):
    tmp, sim, data = toy
    none = {**sim, "pass_reco": np.zeros_like(sim["pass_reco"])}
    write_tree(tmp / "noreco.root", {"events": none})
    msg = error_of(base_card(str(tmp / "noreco.root"), str(tmp / "data.root")))
    assert "noreco.root: no simulated event passes the detector-level selection" in msg
    assert "'pass_reco'" in msg
    dnone = {**data, "pass_reco": np.zeros_like(data["pass_reco"])}
    write_tree(tmp / "dnone.root", {"events": dnone})
    msg = error_of(base_card(str(tmp / "sim.root"), str(tmp / "dnone.root")))
    assert "dnone.root: tree 'events': no measured event passes the selection" in msg
    write_tree(tmp / "empty.root", {"events": {k: v[:0] for k, v in data.items()}})
    msg = error_of(base_card(str(tmp / "sim.root"), str(tmp / "empty.root")))
    assert "empty.root: tree 'events': no measured event passes" in msg


def test_observables_that_differ_between_simulation_and_data(toy):
    tmp, sim, data = toy
    renamed = {("xreco" if k == "x_reco" else k): v for k, v in data.items()}
    write_tree(tmp / "renamed.root", {"events": renamed})
    msg = error_of(base_card(str(tmp / "sim.root"), str(tmp / "renamed.root")))
    assert "renamed.root: tree 'events' has no branch 'x_reco' (observable x" in msg
    mev = {**data, "y_reco": data["y_reco"] * 1000.0}  # MeV instead of GeV
    write_tree(tmp / "mev.root", {"events": mev})
    msg = error_of(base_card(str(tmp / "sim.root"), str(tmp / "mev.root")))
    assert "mev.root: branch 'y_reco' (observable y)" in msg and "outside" in msg
