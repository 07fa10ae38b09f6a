"""MadGraph's own matrix elements (madgraph4gpu's generated C++, built here by
benchmarks/madgraph4gpu.py) stored in tests/data/mg4gpu: loading and the parameters.

Each ``<process>.json`` holds the provenance, the param_card values, the fixed alpha_s and
sets of phase-space points with MadGraph's |M|^2 (identical-particle factor included).
"""

from __future__ import annotations

import json
from pathlib import Path

from evgen.params import SMParameters

DATA = Path(__file__).resolve().parent / "data" / "mg4gpu"


def load_reference(key: str) -> dict:
    """The reference file ``tests/data/mg4gpu/<key>.json`` (e.g. ``"gg_ttgg"``)."""
    return json.loads((DATA / f"{key}.json").read_text())


def params_from_card(card: dict) -> SMParameters:
    """evgen's Standard Model parameters set to a reference file's param_card values."""
    return SMParameters(
        alpha_ew_inv=card["aEWM1"],
        gf=card["Gf"],
        mz=card["MZ"],
        wz=card["WZ"],
        ww=card["WW"],
        mt=card["MT"],
        wt=card["WT"],
        mb=card["MB"],
        mh=card["MH"],
        wh=card["WH"],
        alpha_s=card["aS"],
    )
