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
