"""Pythia 8 as a real client of evgen's LHE files: shower and hadronise every event and
read Pythia's own error statistics (this binding has no accessor for its error counters).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import tempfile
from pathlib import Path

import pytest

__all__ = ["shower_lhe"]


@contextlib.contextmanager
def _capture_fd_stdout():
    """Capture what C++ writes to file descriptor 1; yields a list filled on exit."""
    out: list[str] = []
    libc = ctypes.CDLL(None)
    libc.fflush(None)
    saved = os.dup(1)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        try:
            yield out
        finally:
            libc.fflush(None)
            os.dup2(saved, 1)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode(errors="replace"))


def shower_lhe(path: Path) -> tuple[list[bool], list[str]]:
    """Run Pythia 8 over every event of an LHE file with shower and hadronisation.

    Returns next()'s result per event and the messages of Pythia's error statistics
    (this binding has no Logger accessor, so they are read from ``stat()``'s table).
    """
    pythia8mc = pytest.importorskip("pythia8mc")
    with _capture_fd_stdout() as captured:
        pythia = pythia8mc.Pythia("", False)
        for setting in (
            "Beams:frameType = 4",
            f"Beams:LHEF = {path}",
            "PartonLevel:all = on",
            "HadronLevel:all = on",
            "Next:numberCount = 0",
            "Print:quiet = on",
            "Random:setSeed = on",
            "Random:seed = 20240611",
        ):
            assert pythia.readString(setting), setting
        assert pythia.init()
        results = []
        while True:
            ok = pythia.next()
            if not ok and pythia.infoPython().atEndOfFile():
                break
            results.append(bool(ok))
        # Print:quiet also silences the statistics; ask for the error table only
        assert pythia.readString("Stat:showErrors = on")
        assert pythia.readString("Stat:showProcessLevel = off")
        pythia.stat()
    text = captured[0]
    assert "PYTHIA Error and Warning Messages Statistics" in text, text[-2000:]
    table = text.split("PYTHIA Error and Warning Messages Statistics")[1]
    messages = re.findall(r"^\s*\|\s+\d+\s+(.+?)\s*\|\s*$", table, flags=re.MULTILINE)
    return results, messages
