"""Run cards: every shipped card validates, and each kind of bad card exits with status 2,
one line naming the key or file and what was expected, and leaves no output behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evgen.card import load_card, parse_card
from evgen.cli import main
from evgen.errors import CardError

ROOT = Path(__file__).resolve().parent.parent
#: run cards (unfold_*.yaml are unfolding cards: tests/test_unfold_inputs.py)
CARDS = sorted(p for p in (ROOT / "cards").glob("*.yaml") if not p.name.startswith("unfold_"))


@pytest.mark.parametrize("path", CARDS, ids=[p.name for p in CARDS])
def test_shipped_cards_validate(path: Path) -> None:
    card, text = load_card(path)
    assert card.process
    assert text == path.read_text()


def test_expected_cards_are_shipped() -> None:
    names = {p.name for p in CARDS}
    expected = {"ttbar.yaml", "drell_yan.yaml", "drell_yan_zprime.yaml", "ee_mumu.yaml"}
    assert expected | {"w_lnu.yaml"} <= names


def test_defaults_are_madgraphs() -> None:
    card = parse_card({"process": "p p > t t~"})
    assert card.sqrt_s == 13000.0
    assert card.pdf.set == "NNPDF23_lo_as_0130_qed"
    assert card.scale.dynamical_scale_choice == -1
    assert (card.cuts.ptj, card.cuts.etaj, card.cuts.ptl, card.cuts.etal) == (20, 5, 10, 2.5)
    assert (card.cuts.drll, card.cuts.drjj) == (0.4, 0.4)
    assert card.run.nevents == 10000


def _write_card(tmp_path: Path, **changes) -> Path:
    data = {
        "process": "e+ e- > mu+ mu-",
        "beams": {"particles": ["e+", "e-"], "energies": [45.594, 45.594]},
        "integrator": {"iterations": 2, "points_per_iteration": 1000},
        "run": {"nevents": 10},
        "output": {"path": str(tmp_path / "out")},
    }
    for key, value in changes.items():
        section, _, sub = key.partition("__")
        if sub:
            data.setdefault(section, {})[sub] = value
        else:
            data[section] = value
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


BAD_CARDS = {
    "unknown key": ({"cuts__ptx": 3.0}, "cuts.ptx: unknown key"),
    "wrong type": ({"cuts__ptl": "ten"}, "cuts.ptl: Input should be a valid number"),
    "negative events": ({"run__nevents": -5}, "run.nevents: Input should be greater than"),
    "unknown particle": ({"process": "e+ e- > mu+ muon"}, "process:"),
    "process not in library": ({"process": "e+ e- > z h"}, "process:"),
    "impossible cuts": ({"cuts__ptl": 50.0, "cuts__ptlmax": 20.0}, "ptl = 50.0 is above ptlmax"),
    "cut beyond energy": (
        {"cuts__mmll": 500.0, "cuts__ptl": 0, "cuts__etal": -1, "cuts__drll": 0},
        "cuts.mmll = 500.0 GeV exceed(s) the collider energy",
    ),
    "unknown beam": ({"beams__particles": ["e+", "x"]}, "beams.particles: unknown beam"),
    "beams without subprocess": (
        {"process": "p p > t t~"},
        "process: 'p p > t t~' has no partonic subprocess for beams e+ e-",
    ),
    "missing pdf set": (
        {
            "process": "p p > e+ e-",
            "beams__particles": ["p", "p"],
            "beams__energies": [6500, 6500],
            "pdf": {"set": "NoSuchPDF_lo"},
        },
        "pdf.set:",
    ),
    "bad device": ({"run__device": "tpu"}, "run.device"),
}


@pytest.mark.parametrize("case", sorted(BAD_CARDS))
def test_bad_card_exits_2_with_one_line_and_no_output(case, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LHAPDF_DATA_PATH", str(tmp_path / "nopdfs"))
    changes, expected = BAD_CARDS[case]
    card = _write_card(tmp_path, **changes)
    status = main(["run", str(card), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert status == 2
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"evgen: error: {card}: "), err
    assert expected in err, err
    assert not (tmp_path / "out").exists()


def test_missing_pdf_message_names_the_set(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LHAPDF_DATA_PATH", str(tmp_path / "nopdfs"))
    card = _write_card(
        tmp_path,
        process="p p > e+ e-",
        beams={"particles": ["p", "p"], "energies": [6500, 6500]},
        pdf={"set": "NoSuchPDF_lo"},
    )
    assert main(["run", str(card), "-q"]) == 2
    err = capsys.readouterr().err
    assert "NoSuchPDF_lo" in err and "LHAPDF_DATA_PATH" in err


def test_unwritable_output(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    card = _write_card(tmp_path, output={"path": str(blocker / "out")})
    assert main(["run", str(card), "-q"]) == 2
    err = capsys.readouterr().err
    assert "output.path" in err and "is not a folder" in err
    assert blocker.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "card.yaml"]


def test_missing_card_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml")]) == 2
    assert "card file not found" in capsys.readouterr().err


def test_invalid_yaml(tmp_path, capsys):
    path = tmp_path / "card.yaml"
    path.write_text("process: [unclosed\n")
    assert main(["run", str(path)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_card_error_type():
    with pytest.raises(CardError, match="process: required key is missing"):
        parse_card({}, "x.yaml")
