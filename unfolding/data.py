"""The data contracts shared by every unfolding method.

* :class:`UnfoldingInputs`: paired simulation (parton and detector level, with the
  selection flags that mark inefficiency and fakes) and measured data, as float64
  tensors with events on the first axis. Readers (ROOT, toys) fill it; methods read it.
* :class:`UnfoldedResult`: what every method returns: parton-level events with nominal
  weights in data units, plus replicas for the uncertainties.

Vocabulary (RooUnfold's): a simulated event with ``pass_truth & pass_reco`` fills the
response; ``pass_truth & ~pass_reco`` is a *miss* (inefficiency); ``pass_reco &
~pass_truth`` is a *fake* (background in the data). Rows with neither flag are dropped
by the reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from unfolding.errors import UnfoldingError

__all__ = ["UnfoldedResult", "UnfoldingInputs"]


def _check_matrix(name: str, x: object, n: int | None, d: int | None) -> Tensor:
    if not isinstance(x, Tensor):
        raise UnfoldingError(f"{name}: must be a torch tensor, got {type(x).__name__}")
    if x.dtype != torch.float64:
        raise UnfoldingError(f"{name}: must be float64, got {x.dtype}")
    if x.ndim != 2:
        raise UnfoldingError(f"{name}: must have shape (n, d), got {tuple(x.shape)}")
    if n is not None and x.shape[0] != n:
        raise UnfoldingError(f"{name}: expected {n} rows (events), got {x.shape[0]}")
    if d is not None and x.shape[1] != d:
        raise UnfoldingError(f"{name}: expected {d} columns (observables), got {x.shape[1]}")
    return x


def _check_vector(name: str, x: object, n: int, dtype: torch.dtype) -> Tensor:
    if not isinstance(x, Tensor):
        raise UnfoldingError(f"{name}: must be a torch tensor, got {type(x).__name__}")
    if x.dtype != dtype:
        raise UnfoldingError(f"{name}: must be {dtype}, got {x.dtype}")
    if x.shape != (n,):
        raise UnfoldingError(f"{name}: must have shape ({n},), got {tuple(x.shape)}")
    return x


def _check_finite(name: str, x: Tensor, rows: Tensor | None = None) -> None:
    bad = ~torch.isfinite(x)
    if bad.ndim == 2:
        bad = bad.any(dim=1)
    if rows is not None:
        bad = bad & rows
    if bool(bad.any()):
        first = int(torch.nonzero(bad)[0, 0])
        raise UnfoldingError(
            f"{name}: {int(bad.sum())} events with non-finite values (first: event {first})"
        )


@dataclass
class UnfoldingInputs:
    """Paired simulation and measured data as arrays (float64 tensors, events first).

    Attributes:
        sim_truth: (n_sim, d_truth) parton-level observables (NaN-free; rows failing the
            truth selection hold finite placeholder values).
        sim_reco: (n_sim, d_reco) detector-level observables (same rule).
        sim_weights: (n_sim,) event weights, negative allowed.
        sim_pass_truth: (n_sim,) bool: passed the parton-level (fiducial) selection.
        sim_pass_reco: (n_sim,) bool: passed the detector-level selection.
        data_reco: (n_data, d_reco) measured observables.
        data_weights: (n_data,) data weights, usually ones.
        truth_names: names of the d_truth parton-level observables.
        reco_names: names of the d_reco detector-level observables.
    """

    sim_truth: Tensor
    sim_reco: Tensor
    sim_weights: Tensor
    sim_pass_truth: Tensor
    sim_pass_reco: Tensor
    data_reco: Tensor
    data_weights: Tensor
    truth_names: tuple[str, ...]
    reco_names: tuple[str, ...]

    def validate(self) -> None:
        """Check shapes, dtypes, finiteness (all rows: the placeholders must be finite
        too) and non-empty selections.

        Raises:
            UnfoldingError: naming the first array that is wrong.
        """
        truth = _check_matrix("sim_truth", self.sim_truth, None, len(self.truth_names))
        n_sim = truth.shape[0]
        if n_sim == 0:
            raise UnfoldingError("sim_truth: the simulation has no events")
        _check_matrix("sim_reco", self.sim_reco, n_sim, len(self.reco_names))
        _check_vector("sim_weights", self.sim_weights, n_sim, torch.float64)
        _check_vector("sim_pass_truth", self.sim_pass_truth, n_sim, torch.bool)
        _check_vector("sim_pass_reco", self.sim_pass_reco, n_sim, torch.bool)
        data = _check_matrix("data_reco", self.data_reco, None, len(self.reco_names))
        if data.shape[0] == 0:
            raise UnfoldingError("data_reco: the measured data have no events")
        _check_vector("data_weights", self.data_weights, data.shape[0], torch.float64)
        if len(set(self.truth_names)) != len(self.truth_names):
            raise UnfoldingError(f"truth_names: duplicate names in {self.truth_names}")
        if len(set(self.reco_names)) != len(self.reco_names):
            raise UnfoldingError(f"reco_names: duplicate names in {self.reco_names}")
        devices = {
            t.device
            for t in (
                self.sim_truth,
                self.sim_reco,
                self.sim_weights,
                self.sim_pass_truth,
                self.sim_pass_reco,
                self.data_reco,
                self.data_weights,
            )
        }
        if len(devices) != 1:
            raise UnfoldingError(f"inputs: all arrays must be on one device, got {devices}")
        _check_finite("sim_truth", self.sim_truth)
        _check_finite("sim_reco", self.sim_reco)
        _check_finite("sim_weights", self.sim_weights)
        _check_finite("data_reco", self.data_reco)
        _check_finite("data_weights", self.data_weights)
        if not bool(self.sim_pass_truth.any()):
            raise UnfoldingError("sim_pass_truth: no simulated event passes the truth selection")
        if not bool(self.sim_pass_reco.any()):
            raise UnfoldingError("sim_pass_reco: no simulated event passes the reco selection")
        if not bool((self.sim_pass_truth & self.sim_pass_reco).any()):
            raise UnfoldingError(
                "sim_pass_truth & sim_pass_reco: no simulated event passes both selections, "
                "so there is no response"
            )

    @property
    def n_sim(self) -> int:
        """Number of simulated events (all rows)."""
        return int(self.sim_truth.shape[0])

    @property
    def n_data(self) -> int:
        """Number of measured events."""
        return int(self.data_reco.shape[0])

    @property
    def device(self) -> torch.device:
        """Device of the arrays."""
        return self.sim_truth.device


@dataclass
class UnfoldedResult:
    """Parton-level result of one method.

    Attributes:
        method: ``"ibu"``, ``"omnifold"`` or ``"generative"``.
        truth: (n, d_truth) parton-level events (the simulation's truth events for the
            reweighting methods; sampled events for the generative one).
        weights: (n,) nominal weights, normalised so that their sum is the unfolded
            number of fiducial events (data units).
        replica_weights: (R, n) weights of the statistical/ensemble replicas, or None.
        replica_truth: (R, n, d_truth) when the replicas are different events
            (generative), else None (replicas share ``truth``).
        info: iterations done, stopping-rule values, timings, ...
    """

    method: str
    truth: Tensor
    weights: Tensor
    replica_weights: Tensor | None = None
    replica_truth: Tensor | None = None
    info: dict[str, object] = field(default_factory=dict)

    @property
    def n_replicas(self) -> int:
        """Number of replicas (0 without)."""
        return 0 if self.replica_weights is None else int(self.replica_weights.shape[0])
