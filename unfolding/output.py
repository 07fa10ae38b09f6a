"""Outputs of ``evgen unfold``: events, histograms with covariance, plots, all atomic.

The output folder holds:

================== ===========================================================
``unfolded.root``  TTree ``unfolded``: one entry per unfolded parton-level event, a
                   branch per observable (float64, card units), ``weight`` (nominal,
                   data units: the weights sum to the unfolded number of fiducial
                   events) and ``replica_weights`` (float64[R], the replicas' weights);
                   for the generative method, whose replicas are different events,
                   also ``<observable>_replicas`` (float64[R]). When IBU unfolded the
                   observables separately (several :class:`Unfolding`), every fiducial
                   simulated event is one entry and each observable has its own
                   ``weight_<observable>`` and ``replica_weights_<observable>`` (those
                   of the unfolding it was part of; zero for events outside that
                   unfolding's binning) instead of ``weight``. Per observable: TH1D
                   ``unfolded_<name>`` (errors: the square root of the covariance's
                   diagonal), TH2D ``covariance_<name>``, TH1D ``prior_<name>`` (the
                   simulation's parton level, normalised to the unfolded total) and,
                   for pseudo-data, TH1D ``truth_<name>``. TObjString ``card``.
``histograms.json`` per observable: edges, values, errors, covariance, prior, truth,
                   truth_errors, chi2 and ndf against the truth (when known).
``histograms.csv`` the same per bin, one row per (observable, bin).
``plots/<name>.png`` unfolded vs prior vs truth, ratio panel, uncertainty band.
``summary.json``   method, counts, timings, per-observable chi2, per unfolding its
                   total and the JSON-representable part of the method's ``info``.
``model.pt``       the trained generative-unfolding model (``result.info["model"]``,
                   :class:`~unfolding.generative.GenerativeModel`), for
                   ``evgen unfold --model``; only for the generative method.
================== ===========================================================

JSON files are strict JSON: NaN and infinities are written as ``null``.

The folder is written as a hidden temporary folder next to the target and renamed
when complete (:func:`atomic_directory`); a failed run leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import secrets
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from evgen.errors import OutputError
from unfolding.card import ObservableCard, UnfoldCard
from unfolding.data import UnfoldedResult, UnfoldingInputs
from unfolding.metrics import chi2_ndf, histogram, weighted_histogram
from unfolding.reader import KnownTruth

__all__ = [
    "CHUNK_EVENTS",
    "MODEL_FILE",
    "ObservableHistogram",
    "Unfolding",
    "atomic_directory",
    "histogram_observables",
    "json_clean",
    "write_outputs",
]

#: entries per ``TTree.extend`` call.
CHUNK_EVENTS = 100_000
#: file name of the saved generative model in the output folder.
MODEL_FILE = "model.pt"


@dataclass(frozen=True)
class Unfolding:
    """One unfolding of a run: the card observables it determines and its result.

    A run has one unfolding (generative, OmniFold, IBU of one joint binning) or, for IBU
    with observables unfolded separately, one per group (:meth:`UnfoldCard.ibu_groups`).
    Every result's ``truth`` has one column per card observable (card order), and the
    results of one run share the same events (``truth``).

    Attributes:
        observables: indices into the card's observables.
        result: the method's :class:`~unfolding.data.UnfoldedResult`.
    """

    observables: tuple[int, ...]
    result: UnfoldedResult

    def names(self, card: UnfoldCard) -> list[str]:
        """The names of its observables."""
        return [card.observables[j].name for j in self.observables]


def _as_unfoldings(
    card: UnfoldCard, result: UnfoldedResult | Sequence[Unfolding]
) -> list[Unfolding]:
    if isinstance(result, UnfoldedResult):
        return [Unfolding(tuple(range(len(card.observables))), result)]
    return list(result)


@dataclass(frozen=True)
class ObservableHistogram:
    """Unfolded histogram of one observable with its covariance, prior and truth.

    All arrays float64 numpy, counts in data units (sums of weights).

    Attributes:
        observable: the card's observable.
        edges: (n_bins + 1,) bin edges.
        values: (n_bins,) unfolded counts.
        covariance: (n_bins, n_bins) over the replicas (:func:`unfolding.metrics.histogram`;
            without replicas diag(sum of w^2)).
        prior: (n_bins,) the simulation's parton level, scaled to the unfolded total.
        truth: (n_bins,) the pseudo-data's truth, or None.
        truth_variance: (n_bins,) sum of squared truth weights per bin, or None.
        chi2: (u - t)^T (C + diag(var_t))^+ (u - t) (:func:`unfolding.metrics.chi2_ndf`,
            pseudo-inverse where singular), or None.
        ndf: its degrees of freedom (the rank of the covariance).
    """

    observable: ObservableCard
    edges: np.ndarray
    values: np.ndarray
    covariance: np.ndarray
    prior: np.ndarray
    truth: np.ndarray | None
    truth_variance: np.ndarray | None
    chi2: float | None
    ndf: int

    @property
    def errors(self) -> np.ndarray:
        """Per-bin standard deviation (square root of the covariance's diagonal)."""
        return np.sqrt(np.clip(np.diag(self.covariance), 0.0, None))


# ------------------------------------------------------------------------- histograms


def _hist(x: Tensor, w: Tensor, edges: np.ndarray) -> np.ndarray:
    """Weighted counts of ``x`` (n,) in ``edges`` (numpy, float64)."""
    return _np(weighted_histogram(x, torch.as_tensor(edges, dtype=torch.float64), w))


def _np(x: Any) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def histogram_observables(
    card: UnfoldCard,
    result: UnfoldedResult | Sequence[Unfolding],
    inputs: UnfoldingInputs,
    truth: KnownTruth | None = None,
) -> list[ObservableHistogram]:
    """Histograms of every card observable: unfolded (with covariance over the
    replicas), the simulation's prior scaled to the unfolded total, and the truth of
    pseudo-data with a chi^2 against it.

    Args:
        result: one result for all observables, or the run's unfoldings (each
            observable is histogrammed from the unfolding that determines it).
    """
    unfoldings = _as_unfoldings(card, result)
    owner = {j: u.result for u in unfoldings for j in u.observables}
    out = []
    for j, obs in enumerate(card.observables):
        edges = obs.bin_edges
        edges_t = torch.as_tensor(edges, dtype=torch.float64)
        values_t, cov_t = histogram(owner[j], j, edges_t)
        values, cov = _np(values_t), _np(cov_t)
        sel = inputs.sim_pass_truth
        prior = _hist(inputs.sim_truth[sel, j], inputs.sim_weights[sel], edges)
        total_prior = prior.sum()
        prior = prior * (values.sum() / total_prior) if total_prior != 0 else prior
        t = tv = None
        chi2, ndf = None, 0
        if truth is not None:
            t = _hist(truth.truth[:, j], truth.weights, edges)
            tv = _hist(truth.truth[:, j], truth.weights**2, edges)
            total = torch.from_numpy(cov + np.diag(tv))
            c2 = chi2_ndf(torch.from_numpy(values), torch.from_numpy(t), total)
            chi2, ndf = c2.chi2, c2.ndf
        out.append(ObservableHistogram(obs, edges, values, cov, prior, t, tv, chi2, ndf))
    return out


# ------------------------------------------------------------------------- atomic folder


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``path`` (a folder).

    The temporary folder ``.<name>.<random>.tmp`` is created next to ``path``
    (parents created as needed, and removed again on failure when they were empty). An
    existing folder at ``path`` is replaced only when the block succeeded.

    Raises:
        OutputError: the folder cannot be created or renamed (names ``path``).
    """
    target = Path(path)
    created: list[Path] = []
    parent = target.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    tmp = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
    try:
        if target.exists() and not target.is_dir():
            raise NotADirectoryError(f"{target} exists and is not a folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
    except OSError as error:
        _cleanup(None, created)
        raise OutputError(f"cannot write output folder {target}: {error}") from error
    try:
        yield tmp
        old = None
        if target.exists():
            old = target.parent / f".{target.name}.{secrets.token_hex(6)}.old"
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as error:
        _cleanup(tmp, created)
        raise OutputError(f"cannot write output folder {target}: {error}") from error
    except BaseException:
        _cleanup(tmp, created)
        raise


def _cleanup(tmp: Path | None, created: Sequence[Path]) -> None:
    if tmp is not None:
        shutil.rmtree(tmp, ignore_errors=True)
    for folder in created:  # innermost first
        with contextlib.suppress(OSError):
            folder.rmdir()


# ------------------------------------------------------------------------- writers


def _weight_columns(
    card: UnfoldCard, unfoldings: Sequence[Unfolding]
) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Weight branch name -> (nominal (n,), replicas (n, R) or None)."""

    def arrays(r: UnfoldedResult) -> tuple[np.ndarray, np.ndarray | None]:
        rep = None if r.replica_weights is None else _np(r.replica_weights).T
        return _np(r.weights), rep

    if len(unfoldings) == 1:
        return {"": arrays(unfoldings[0].result)}
    n = unfoldings[0].result.truth.shape[0]
    if any(u.result.truth.shape[0] != n for u in unfoldings):
        raise ValueError("unfoldings of one run must share their events")
    out = {}
    for u in unfoldings:
        columns = arrays(u.result)
        for name in u.names(card):
            out[f"_{name}"] = columns
    return out


def _write_root(
    path: Path,
    card: UnfoldCard,
    card_text: str,
    unfoldings: Sequence[Unfolding],
    hists: Sequence[ObservableHistogram],
) -> None:
    import hist
    import uproot

    result = unfoldings[0].result
    names = [o.name for o in card.observables]
    truth = _np(result.truth)
    weights = _weight_columns(card, unfoldings)
    rep_x = _np(result.replica_truth) if result.replica_truth is not None else None
    types: dict[str, Any] = {n: np.float64 for n in names}
    for suffix, (_, rep_w) in weights.items():
        types[f"weight{suffix}"] = np.float64
        if rep_w is not None:
            types[f"replica_weights{suffix}"] = (np.float64, (rep_w.shape[1],))
    if rep_x is not None:
        for n in names:
            types[f"{n}_replicas"] = (np.float64, (rep_x.shape[0],))
    with uproot.recreate(path) as file:
        tree = file.mktree("unfolded", types, title=f"evgen unfold ({result.method})")
        for start in range(0, truth.shape[0], CHUNK_EVENTS):
            sl = slice(start, start + CHUNK_EVENTS)
            chunk: dict[str, np.ndarray] = {n: truth[sl, j] for j, n in enumerate(names)}
            for suffix, (w, rep_w) in weights.items():
                chunk[f"weight{suffix}"] = w[sl]
                if rep_w is not None:
                    chunk[f"replica_weights{suffix}"] = np.ascontiguousarray(rep_w[sl])
            if rep_x is not None:
                for j, n in enumerate(names):
                    chunk[f"{n}_replicas"] = np.ascontiguousarray(rep_x[:, sl, j].T)
            tree.extend(chunk)
        for h in hists:
            axis = hist.axis.Variable(
                h.edges, name=h.observable.name, label=h.observable.axis_label
            )

            def th1(values: np.ndarray, variance: np.ndarray, axis: Any = axis) -> Any:
                out = hist.Hist(axis, storage=hist.storage.Weight())
                out.view().value = values
                out.view().variance = variance
                return out

            name = h.observable.name
            file[f"unfolded_{name}"] = th1(h.values, np.clip(np.diag(h.covariance), 0, None))
            axis2 = hist.axis.Variable(h.edges, name=f"{name}_2", label=h.observable.axis_label)
            cov = hist.Hist(axis, axis2, storage=hist.storage.Double())
            cov.view()[...] = h.covariance
            file[f"covariance_{name}"] = cov
            file[f"prior_{name}"] = th1(h.prior, np.zeros_like(h.prior))
            if h.truth is not None and h.truth_variance is not None:
                file[f"truth_{name}"] = th1(h.truth, h.truth_variance)
        file["card"] = card_text


class _Drop:
    """Marks a value that JSON cannot represent."""


_DROP = _Drop()


def json_clean(value: Any) -> Any:
    """``value`` as strict JSON data: mappings with string keys, lists, strings, numbers
    (NaN and infinities become None; numpy scalars and arrays, tuples become lists),
    booleans and None. Entries of other types (tensors, networks, ...) are left out of
    mappings and lists; a top-level value of another type gives None."""
    out = _clean(value)
    return None if out is _DROP else out


def _clean(x: Any) -> Any:
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.ndarray) and x.dtype.kind in "biuf":
        return _clean(x.tolist())
    if isinstance(x, (list, tuple)):
        return [c for c in (_clean(v) for v in x) if c is not _DROP]
    if isinstance(x, dict):
        items = ((k, _clean(v)) for k, v in x.items() if isinstance(k, str))
        return {k: c for k, c in items if c is not _DROP}
    return _DROP


def _json_value(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return json_clean(x)
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _dump(value: Any) -> str:
    return json.dumps(json_clean(value), indent=1, allow_nan=False)


def _write_tables(folder: Path, hists: Sequence[ObservableHistogram]) -> None:
    blob = {}
    for h in hists:
        blob[h.observable.name] = {
            "label": h.observable.label,
            "unit": h.observable.unit,
            "edges": h.edges.tolist(),
            "values": h.values.tolist(),
            "errors": h.errors.tolist(),
            "covariance": h.covariance.tolist(),
            "prior": h.prior.tolist(),
            "truth": _json_value(h.truth),
            "truth_errors": _json_value(
                None if h.truth_variance is None else np.sqrt(h.truth_variance)
            ),
            "chi2": h.chi2,
            "ndf": h.ndf,
        }
    (folder / "histograms.json").write_text(_dump(blob))
    with open(folder / "histograms.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["observable", "bin_low", "bin_high", "value", "error", "prior", "truth", "truth_error"]
        )
        for h in hists:
            for i in range(len(h.values)):
                truth = "" if h.truth is None else repr(float(h.truth[i]))
                terr = "" if h.truth_variance is None else repr(float(np.sqrt(h.truth_variance[i])))
                writer.writerow(
                    [
                        h.observable.name,
                        repr(float(h.edges[i])),
                        repr(float(h.edges[i + 1])),
                        repr(float(h.values[i])),
                        repr(float(h.errors[i])),
                        repr(float(h.prior[i])),
                        truth,
                        terr,
                    ]
                )


def _plot(path: Path, h: ObservableHistogram, method: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    edges, values, err = h.edges, h.values, h.errors
    reference = h.truth if h.truth is not None else h.prior
    ref_name = "truth" if h.truth is not None else "prior"
    with plt.style.context(mplhep.style.ROOT):
        fig, (top, bottom) = plt.subplots(
            2, 1, sharex=True, figsize=(8, 7), gridspec_kw={"height_ratios": [3, 1], "hspace": 0}
        )
        try:
            top.stairs(values + err, edges, baseline=values - err, fill=True, alpha=0.3,
                       color="C0", label="uncertainty")  # fmt: skip
            mplhep.histplot(values, edges, ax=top, color="C0", label=f"unfolded ({method})")
            mplhep.histplot(h.prior, edges, ax=top, color="C1", ls="--", label="simulation prior")
            if h.truth is not None and h.truth_variance is not None:
                mplhep.histplot(h.truth, edges, yerr=np.sqrt(h.truth_variance), ax=top,
                                histtype="errorbar", color="k", label="truth")  # fmt: skip
            top.set_ylabel("events per bin")
            peak = max(float(np.max(values + err)), float(np.max(h.prior)), 1e-300)
            top.set_ylim(0.0, 1.45 * peak) if float(np.min(values)) >= 0 else None
            top.legend(fontsize="small", loc="upper right")
            with np.errstate(divide="ignore", invalid="ignore"):
                scale = np.where(reference != 0, 1.0 / reference, np.nan)
            bottom.stairs((values + err) * scale, edges, baseline=(values - err) * scale,
                          fill=True, alpha=0.3, color="C0")  # fmt: skip
            mplhep.histplot(values * scale, edges, ax=bottom, color="C0")
            if h.truth is not None:
                mplhep.histplot(h.prior * scale, edges, ax=bottom, color="C1", ls="--")
            bottom.axhline(1.0, color="k", lw=0.8)
            bottom.set_ylim(0.51, 1.49)
            bottom.set_ylabel(f"/ {ref_name}")
            bottom.set_xlabel(h.observable.axis_label)
            fig.savefig(path, dpi=100, bbox_inches="tight")
        finally:
            plt.close(fig)


def write_outputs(
    folder: str | Path,
    card: UnfoldCard,
    card_text: str,
    result: UnfoldedResult | Sequence[Unfolding],
    hists: Sequence[ObservableHistogram],
    summary: dict[str, Any],
    *,
    plots: bool = True,
) -> dict[str, Path]:
    """Write every output into ``folder`` atomically (see the module docstring).

    Args:
        result: one result for all observables, or the run's unfoldings.
        summary: written as ``summary.json`` through :func:`json_clean` (values JSON
            cannot hold are left out).

    Returns:
        The files written: kind -> final path.
    """
    unfoldings = _as_unfoldings(card, result)
    method = unfoldings[0].result.method
    model = unfoldings[0].result.info.get("model")
    target = Path(folder)
    names = {"root": "unfolded.root", "json": "histograms.json", "csv": "histograms.csv"}
    names["summary"] = "summary.json"
    if model is not None and callable(getattr(model, "save", None)):
        names["model"] = MODEL_FILE
    with atomic_directory(target) as tmp:
        _write_root(tmp / names["root"], card, card_text, unfoldings, hists)
        _write_tables(tmp, hists)
        (tmp / "card.yaml").write_text(card_text)
        if plots:
            (tmp / "plots").mkdir()
            for h in hists:
                _plot(tmp / "plots" / f"{h.observable.name}.png", h, method)
        if "model" in names:
            model.save(tmp / names["model"])  # type: ignore[union-attr]
        (tmp / names["summary"]).write_text(_dump(summary))
    files = {kind: target / name for kind, name in names.items()}
    files["card"] = target / "card.yaml"
    if plots:
        files["plots"] = target / "plots"
    return files
