"""`evgen run` on the shipped ``p p > t t~ j`` card with the VEGAS and the MadNIS integrators
alike: both runs go end to end (integration, unweighting, LHE), agree on the cross section
within their errors, and Pythia 8 showers and hadronises every event of both files with
no colour or momentum errors.

The budgets are small (one RAMBO channel, a few thousand points, a tiny network): the
test is about the chain working for an automatic-engine process with 25 subprocesses, not
about precision; the two cross sections are compared within 3 standard deviations.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pylhe
import pytest
import yaml
from pythia_tools import shower_lhe

from evgen.cli import main

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, name: str, integrator: dict) -> tuple[dict, Path]:
    data = yaml.safe_load((ROOT / "cards" / "ttbar_jet.yaml").read_text())
    data["integrator"] = integrator
    data["run"] = {"nevents": 30, "seed": 11}
    out = tmp_path / name
    data["output"] = {"path": str(out), "formats": ["lhe"]}
    card = tmp_path / f"{name}.yaml"
    card.write_text(yaml.safe_dump(data))
    assert main(["run", str(card), "-q"]) == 0
    return json.loads((out / "summary.json").read_text()), out / "events.lhe"


def _check_showers(lhe: Path, n: int) -> None:
    events = list(pylhe.LHEFile.fromfile(lhe).events)
    assert len(events) == n
    for ev in events:
        ids = [int(p.id) for p in ev.particles]
        assert ids[2:4] == [6, -6] and len(ids) == 5
    results, messages = shower_lhe(lhe)
    assert len(results) == n
    assert all(results), f"{results.count(False)} events failed: {messages}"
    problems = [m for m in messages if m.startswith(("Error", "Abort"))]
    problems = [m for m in problems if "end of Les Houches Events File" not in m]
    assert problems == [], problems
    assert not any("colour" in m or "momentum" in m for m in messages), messages


def test_ttj_vegas_and_madnis_agree_and_shower(tmp_path) -> None:
    base = {"multichannel": False, "batch_size": 3000}
    vegas, vegas_lhe = _run(
        tmp_path, "vegas", {**base, "type": "vegas", "iterations": 4, "points_per_iteration": 3000}
    )
    madnis, madnis_lhe = _run(
        tmp_path,
        "madnis",
        {
            **base,
            "type": "madnis",
            "iterations": 3,
            "points_per_iteration": 3000,
            "learned": {
                "rounds": 3,
                "points_per_round": 1000,
                "learning_rate": 0.005,
                "hidden": 8,
                "hidden_layers": 1,
            },
        },
    )
    assert vegas["integrator"] == "vegas" and madnis["integrator"] == "madnis"
    diff = madnis["cross_section_pb"] - vegas["cross_section_pb"]
    sigma = math.hypot(madnis["error_pb"], vegas["error_pb"])
    assert abs(diff) < 3 * sigma, (madnis["cross_section_pb"], vegas["cross_section_pb"], sigma)
    assert len(madnis["subprocesses"]) == len(vegas["subprocesses"]) == 25
    _check_showers(vegas_lhe, 30)
    _check_showers(madnis_lhe, 30)
