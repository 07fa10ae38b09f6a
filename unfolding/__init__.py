"""Unfolding of measured detector-level data to parton level (``evgen unfold``).

* inputs: :class:`UnfoldCard` (:mod:`unfolding.card`), :func:`read_inputs` (ROOT files,
  chunked, :mod:`unfolding.reader`) into :class:`UnfoldingInputs` (:mod:`unfolding.data`);
* the parametric detector simulation (:mod:`unfolding.detector`, ``evgen detector``);
* methods: generative unfolding (:mod:`unfolding.generative`, :func:`unfold_generative`;
  the trained :class:`GenerativeModel` is saved and reapplied), OmniFold
  (:mod:`unfolding.omnifold`, :func:`unfold_omnifold`) and iterative Bayesian unfolding
  (:mod:`unfolding.ibu`, :func:`unfold_spectrum`, and per observable group
  :func:`unfold_ibu_groups`), each giving an :class:`UnfoldedResult`;
* histograms with covariance and benchmark metrics (:mod:`unfolding.metrics`), outputs
  (:mod:`unfolding.output`) and the command (:mod:`unfolding.command`,
  :func:`run_unfold`).

Every public name of these modules is re-exported here, except the functions ``ibu`` and
``omnifold`` (their names are the submodules'; use ``unfolding.ibu.ibu``), the two
``METHODS`` tables and the command line's ``main``/``add_parsers``. Names are imported
on first use, so ``import unfolding`` stays light and one method's module does not
affect the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES: dict[str, tuple[str, ...]] = {
    "unfolding.card": (
        "DataCard",
        "DefinitionCard",
        "DetectorCard",
        "FiducialCard",
        "JetResolution",
        "JetsCard",
        "LeptonResolution",
        "LeptonsCard",
        "METCard",
        "ObjectCard",
        "ObservableCard",
        "PAIR_QUANTITIES",
        "QUANTITIES",
        "SimulationCard",
        "UnfoldCard",
        "UnfoldOutputCard",
        "load_unfold_card",
        "parse_unfold_card",
    ),
    "unfolding.data": ("UnfoldedResult", "UnfoldingInputs"),
    "unfolding.errors": ("UnfoldingError",),
    "unfolding.reader": (
        "KnownTruth",
        "read_data",
        "read_data_truth",
        "read_inputs",
        "read_simulation",
    ),
    "unfolding.detector": (
        "DetectorLevel",
        "JET_PDG",
        "LEPTON_PDG",
        "NEUTRINO_PDG",
        "observable_value",
        "reconstruct",
        "simulate",
        "simulate_file",
    ),
    "unfolding.ibu": (
        "Binning",
        "IBUConfig",
        "IBUSpectrum",
        "Response",
        "build_response",
        "ibu_iterate",
        "unfold_spectrum",
    ),
    "unfolding.omnifold": (
        "OmniFoldConfig",
        "fake_probability",
        "omnifold_weights",
        "unfold_omnifold",
    ),
    "unfolding.generative": ("GenerativeConfig", "GenerativeModel", "unfold_generative"),
    "unfolding.metrics": (
        "Chi2",
        "chi2_ndf",
        "coverage",
        "histogram",
        "mean_relative_deviation",
        "pulls",
        "triangular_discriminator",
        "wasserstein",
        "weighted_histogram",
    ),
    "unfolding.output": (
        "CHUNK_EVENTS",
        "MODEL_FILE",
        "ObservableHistogram",
        "Unfolding",
        "atomic_directory",
        "histogram_observables",
        "json_clean",
        "write_outputs",
    ),
    "unfolding.command": (
        "MethodEntry",
        "UnfoldRun",
        "apply_model",
        "build_method",
        "load_model",
        "run_detector",
        "run_unfold",
        "unfold_ibu_groups",
    ),
}

_WHERE = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'unfolding' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
