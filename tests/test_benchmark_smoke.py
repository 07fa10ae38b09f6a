"""The integrator benchmark's smoke mode (CI runs it in seconds; the full benchmark is
`python benchmarks/integrators.py`): every evgen integrator runs through the harness at
an equal, tiny budget on toy integrands with exact integrals and on p p > t t~, and its
estimate agrees with the exact or reference value."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import integrators as harness  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_thread")


def test_smoke_table(tmp_path):
    out = tmp_path / "RESULTS.md"
    argv = ["--smoke", "--only", "camel-2d", "ttbar", "evgen-vegas", "evgen-madnis", "vegas"]
    assert harness.main([*argv, "--out", str(out)]) == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if re.match(r"\| (camel-2d|ttbar) ", line)]
    assert len(rows) == 6, text
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        pull = float(cells[5])
        # a tiny budget, a fixed seed: each estimate within 4 standard deviations
        assert abs(pull) < 4, row
        evaluations = cells[3].replace(",", "").split("+")
        assert sum(int(e) for e in evaluations) == 10_000, row


def test_smoke_multichannel_and_annealed_rows(tmp_path):
    out = tmp_path / "RESULTS.md"
    argv = ["--smoke", "--only", "camel-2d", "ttbar", "evgen-madnis-anneal", "evgen-vegas-mc"]
    assert harness.main([*argv, "--out", str(out)]) == 0
    text = out.read_text()
    rows = [line for line in text.splitlines() if re.match(r"\| (camel-2d|ttbar) ", line)]
    assert len(rows) == 4, text
    by = {(r.split("|")[1].strip(), r.split("|")[3].strip()): r for r in rows}
    # the multi-channel adapter runs on cards only; a toy gets a reason, not a number
    assert "physics problems only" in by[("camel-2d", "evgen VEGAS (multi-channel)")]
    for key in [
        ("camel-2d", "evgen MadNIS (annealed)"),
        ("ttbar", "evgen MadNIS (annealed)"),
        ("ttbar", "evgen VEGAS (multi-channel)"),
    ]:
        cells = [c.strip() for c in by[key].strip("|").split("|")]
        assert abs(float(cells[5])) < 4, by[key]


def test_multichannel_stats_of_known_weights():
    import torch

    a = torch.tensor([1.0, 3.0])  # channel 0: mean 2, max 3 -> I/eff = 3
    b = torch.tensor([0.5, 0.5, 0.5, 0.5])  # channel 1: mean 0.5, max 0.5
    value, error, spread, eff_max, _ = harness.multichannel_stats([a, b])
    assert value == 2.5
    assert error == pytest.approx((2.0 / 2) ** 0.5)  # var(a) = 2 (unbiased), var(b) = 0
    assert spread == pytest.approx(error * 6**0.5 / 2.5)
    assert eff_max == pytest.approx(2.5 / (3.0 + 0.5))


def test_results_sections_are_replaced_in_place(tmp_path):
    from results_file import write_section

    path = tmp_path / "RESULTS.md"
    write_section("a", "## A\nfirst", path)
    write_section("b", "## B\nbee", path)
    write_section("a", "## A\nsecond", path)
    text = path.read_text()
    assert "first" not in text and text.index("second") < text.index("bee")
    assert text.count("<!-- begin a -->") == 1 and text.startswith("# Benchmark results")
