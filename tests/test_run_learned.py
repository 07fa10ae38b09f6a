"""`evgen run` with a learned integrator (``integrator.type: madnis | cfm``): VEGAS warm-up,
training, weighted events from fresh points of the frozen networks, unweighting, files.

Budgets are tiny (small networks, few rounds, a few thousand points) and seeds fixed, so
each run takes a second or two; Monte Carlo numbers are compared within 3 standard
deviations of their errors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pylhe
import pytest
import torch
import yaml
from test_cross_sections import sigma_ee_mumu_pb

from evgen.card import parse_card
from evgen.cli import main
from evgen.errors import CardError
from evgen.params import SMParameters
from evgen.run import run_card
from evgen.setup import prepare

pytestmark = pytest.mark.usefixtures("single_thread")


TINY = {"hidden": 8, "hidden_layers": 1}

EE_MUMU = {
    "process": "e+ e- > mu+ mu-",
    "beams": {"particles": ["e+", "e-"], "energies": [45.594, 45.594]},
    "cuts": {"ptl": 0.0, "etal": -1, "drll": 0.0},
    "run": {"nevents": 500, "seed": 3},
}

ZPRIME = {
    "process": "p p > e+ e-",
    "model": {"mzp": 1500.0},
    "cuts": {"ptl": 10.0, "etal": 2.5, "drll": 0.4, "mmll": 50.0, "mmllmax": 3000.0},
    "run": {"nevents": 300, "seed": 5},
}


def _card(base: dict, out: Path, **integrator) -> dict:
    return {**base, "integrator": integrator, "output": {"path": str(out)}}


def _run_cli(tmp_path: Path, data: dict, name: str = "card.yaml") -> dict:
    card = tmp_path / name
    card.write_text(yaml.safe_dump(data))
    assert main(["run", str(card), "-q"]) == 0
    return json.loads((Path(data["output"]["path"]) / "summary.json").read_text())


def _madnis_ee(out: Path, **learned) -> dict:
    return _card(
        EE_MUMU,
        out,
        type="madnis",
        iterations=3,
        points_per_iteration=2000,
        batch_size=4000,
        learned={"rounds": 4, "points_per_round": 1000, "learning_rate": 0.01, **TINY, **learned},
    )


def _lhe_events(path: Path) -> list:
    return list(pylhe.LHEFile.fromfile(path).events)


def test_madnis_ee_mumu_matches_the_analytic_cross_section(tmp_path):
    out = tmp_path / "out"
    summary = _run_cli(tmp_path, _madnis_ee(out))
    exact = sigma_ee_mumu_pb(91.188, SMParameters())
    xs, err = summary["cross_section_pb"], summary["error_pb"]
    assert 0 < err < 0.01 * xs
    assert abs(xs - exact) < 3 * err, (xs, err, exact)
    assert summary["integrator"] == "madnis"
    assert summary["timings_s"]["training"] > 0
    assert summary["events"] == 500
    # the training rounds follow the VEGAS iterations in the record
    assert len(summary["integration_iterations"]) == 3 + 4
    assert Path(summary["outputs"]["integrator_state"]) == out / "integrator_state.pt"
    assert (out / "integrator_state.pt").is_file()

    events = _lhe_events(out / "events.lhe")
    assert len(events) == 500
    total = 0.0
    for ev in events:
        mom = np.array([[p.e, p.px, p.py, p.pz] for p in ev.particles])
        status = np.array([p.status for p in ev.particles])
        balance = mom[status == 1].sum(axis=0) - mom[status == -1].sum(axis=0)
        assert np.all(np.abs(balance) <= 1e-6 * 91.188)
        assert sorted(int(p.id) for p in ev.particles) == [-13, -11, 11, 13]
        total += ev.eventinfo.weight
    assert total == pytest.approx(xs, rel=1e-6)


def test_reloaded_state_skips_training_and_draws_the_same_events(tmp_path):
    first = tmp_path / "first"
    trained = run_card(parse_card(_madnis_ee(first)))
    state = first / "integrator_state.pt"
    second = tmp_path / "second"
    loaded = run_card(parse_card(_madnis_ee(second, state=str(state))))
    assert "training" not in loaded.timings and "integration" not in loaded.timings
    assert loaded.integration == [] and math.isnan(loaded.chi2_dof)
    # same networks, same seed: the same weighted and unweighted events
    assert loaded.cross_section_pb == trained.cross_section_pb
    assert loaded.error_pb == trained.error_pb
    assert loaded.n_weighted == trained.n_weighted

    def body(path: Path) -> str:
        text = path.read_text()
        return text[text.index("<init>") :]

    assert body(second / "events.lhe") == body(first / "events.lhe")
    # another seed: fresh points of the same networks, consistent within errors
    third = tmp_path / "third"
    data = _madnis_ee(third, state=str(state))
    data["run"] = {**data["run"], "seed": 11}
    other = run_card(parse_card(data))
    diff = other.cross_section_pb - trained.cross_section_pb
    assert other.cross_section_pb != trained.cross_section_pb
    assert abs(diff) < 3 * math.hypot(other.error_pb, trained.error_pb)


def test_madnis_multichannel_zprime_agrees_with_vegas(tmp_path):
    vegas = run_card(
        parse_card(
            _card(
                ZPRIME,
                tmp_path / "vegas",
                iterations=5,
                points_per_iteration=20000,
                batch_size=40000,
            )
        )
    )
    madnis = run_card(
        parse_card(
            _card(
                ZPRIME,
                tmp_path / "madnis",
                type="madnis",
                iterations=4,
                points_per_iteration=6000,
                batch_size=6000,
                learned={
                    "rounds": 4,
                    "points_per_round": 3000,
                    "learning_rate": 0.005,
                    "loss": "kl",
                    **TINY,
                },
            )
        )
    )
    assert madnis.integrator == "madnis" and vegas.integrator == "vegas"
    assert [c.label for c in madnis.channels] == ["a", "z", "zp"]
    diff = madnis.cross_section_pb - vegas.cross_section_pb
    assert abs(diff) < 3 * math.hypot(madnis.error_pb, vegas.error_pb), (madnis, vegas)
    for m, v in zip(madnis.channels, vegas.channels, strict=True):
        assert abs(m.cross_section_pb - v.cross_section_pb) < 3 * math.hypot(
            m.error_pb, v.error_pb
        ), (m, v)
    assert sum(c.n_events for c in madnis.channels) == madnis.n_events == 300
    assert all(c.n_eval > 0 for c in madnis.channels)


def test_cfm_ee_mumu_matches_the_analytic_cross_section(tmp_path):
    out = tmp_path / "out"
    data = _card(
        EE_MUMU,
        out,
        type="cfm",
        iterations=3,
        points_per_iteration=2000,
        batch_size=4000,
        learned={
            "rounds": 4,
            "points_per_round": 1000,
            "learning_rate": 0.003,
            "pretrain_steps": 100,
            "steps_per_round": 20,
            **TINY,
        },
    )
    summary = _run_cli(tmp_path, data)
    exact = sigma_ee_mumu_pb(91.188, SMParameters())
    xs, err = summary["cross_section_pb"], summary["error_pb"]
    assert 0 < err < 0.02 * xs
    assert abs(xs - exact) < 3 * err, (xs, err, exact)
    assert summary["integrator"] == "cfm"
    assert len(_lhe_events(out / "events.lhe")) == 500
    state = torch.load(out / "integrator_state.pt", weights_only=True)
    assert state["type"] == "cfm" and len(state["groups"]) == 1


def test_vegas_summary_names_its_integrator(tmp_path):
    data = _card(EE_MUMU, tmp_path / "out", iterations=2, points_per_iteration=1000)
    data["run"] = {**data["run"], "nevents": 50}
    summary = _run_cli(tmp_path, data)
    assert summary["integrator"] == "vegas"
    assert "training" not in summary["timings_s"]
    assert not (tmp_path / "out" / "integrator_state.pt").exists()


@pytest.mark.parametrize(
    ("integrator", "message"),
    [
        ({"type": "nis"}, r"integrator\.type: Input should be 'vegas', 'madnis' or 'cfm'"),
        ({"type": "madnis", "learned": {"round": 3}}, r"integrator\.learned\.round: unknown key"),
        (
            {"type": "madnis", "learned": {"rounds": 0}},
            r"integrator\.learned\.rounds: .*greater than or equal to 1",
        ),
        ({"type": "madnis", "learned": {"loss": "l2"}}, r"integrator\.learned\.loss: "),
        ({"learned": {"rounds": 3}}, r"integrator: learned settings given but type is vegas"),
        ({"type": "cfm", "learned": {"loss": "kl"}}, r"integrator: learned\.loss applies to"),
    ],
)
def test_bad_integrator_keys_are_one_line_errors(tmp_path, capsys, integrator, message):
    with pytest.raises(CardError, match=message):
        parse_card({**EE_MUMU, "integrator": integrator})
    card = tmp_path / "bad.yaml"
    card.write_text(yaml.safe_dump({**EE_MUMU, "integrator": integrator}))
    assert main(["run", str(card), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("evgen: error: ") and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_cfm_needs_one_channel_and_state_must_exist(tmp_path):
    with pytest.raises(CardError, match=r"integrator\.type: cfm samples one phase-space channel"):
        prepare(parse_card(_card(ZPRIME, tmp_path / "out", type="cfm")))
    # with one channel (multichannel: false) it is accepted
    prepare(parse_card(_card(ZPRIME, tmp_path / "out", type="cfm", multichannel=False)))
    missing = str(tmp_path / "nothing.pt")
    with pytest.raises(CardError, match=r"integrator\.learned\.state: .* is not a file"):
        prepare(
            parse_card(_card(EE_MUMU, tmp_path / "out", type="madnis", learned={"state": missing}))
        )


def test_state_of_another_integrator_is_refused(tmp_path):
    first = tmp_path / "first"
    saved = tmp_path / "states" / "ee" / "madnis.pt"  # save_state: folders created
    result = run_card(parse_card(_madnis_ee(first, rounds=1, save_state=str(saved))))
    assert result.outputs["integrator_state"] == str(saved) and saved.is_file()
    assert not (first / "integrator_state.pt").exists()
    data = _card(EE_MUMU, tmp_path / "second", type="cfm", learned={"state": str(saved)})
    card = tmp_path / "card.yaml"
    card.write_text(yaml.safe_dump(data))
    assert main(["run", str(card), "-q"]) == 2
    assert not (tmp_path / "second").exists()
