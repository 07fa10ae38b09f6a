"""Read an unfolding card's ROOT inputs into :class:`~unfolding.data.UnfoldingInputs`.

Trees are read with uproot in steps (``TTree.iterate`` with the card's ``step_size``),
so files of any size are read with memory for the selected columns only. Simulated
events pair in one tree, entry by entry in two trees, or by an event-number join in two
trees (per file: a vectorised sorted merge); see :mod:`unfolding.card`.

Rows that pass neither selection are dropped. Values in rows that fail a level's
selection are meaningless; they are replaced by the mean of that column over the
passing rows (a finite placeholder, neutral for standardisation).

Every problem with the input is one :class:`~unfolding.errors.UnfoldingError` that names
the file, the tree and the branch: a missing file, tree or branch; a branch that does not
hold one number per entry or whose length differs; trees of different lengths paired by
index; duplicated event numbers; an empty selection; NaN or infinite values in events
that pass a selection; measured values mostly outside the simulation's range (a
different definition or unit).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import uproot
from torch import Tensor

from unfolding.card import UnfoldCard
from unfolding.data import UnfoldingInputs
from unfolding.errors import UnfoldingError

__all__ = ["read_inputs", "read_simulation", "read_data", "read_data_truth", "KnownTruth"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KnownTruth:
    """The parton level of pseudo-data: the events that pass the parton-level selection.

    Attributes:
        truth: (n, d_truth) float64 observables, card order.
        weights: (n,) float64 weights (the data's weights).
        source: ``file:tree`` it was read from.
    """

    truth: Tensor
    weights: Tensor
    source: str


@dataclass(frozen=True)
class _Simulation:
    truth: np.ndarray
    reco: np.ndarray
    weights: np.ndarray
    pass_truth: np.ndarray
    pass_reco: np.ndarray


# ------------------------------------------------------------------------ low level


def _open_tree(path: str | Path, tree_name: str, role: str) -> Any:
    """Open ``path`` and return its TTree ``tree_name`` (file kept open by uproot)."""
    path = Path(path)
    if not path.is_file():
        raise UnfoldingError(f"{path}: {role} file not found")
    try:
        file = uproot.open(path)
    except Exception as err:  # uproot raises several types for non-ROOT files
        raise UnfoldingError(f"{path}: cannot open {role} file as ROOT ({err})") from None
    if tree_name not in file:
        trees = sorted({k.split(";")[0] for k, c in file.classnames().items() if c == "TTree"})
        raise UnfoldingError(
            f"{path}: no tree {tree_name!r} in the {role} file (trees there: {trees or 'none'})"
        )
    tree = file[tree_name]
    if not isinstance(tree, uproot.TTree):
        raise UnfoldingError(f"{path}: {tree_name!r} is a {type(tree).__name__}, not a TTree")
    return tree


def _check_branches(path: str | Path, tree: Any, branches: dict[str, str], role: str) -> None:
    """Every branch exists and holds one number per entry, as many as the tree has.

    ``branches`` maps a branch name to what it is for (named in the error).
    """
    have = set(tree.keys())
    for name, purpose in branches.items():
        if name not in have:
            listing = sorted(have)
            more = f", ... ({len(listing)} in all)" if len(listing) > 20 else ""
            raise UnfoldingError(
                f"{path}: tree {tree.name!r} has no branch {name!r} ({purpose}, {role}); "
                f"branches there: {listing[:20]}{more}"
            )
        branch = tree[name]
        interp = branch.interpretation
        if not isinstance(interp, uproot.AsDtype) or interp.inner_shape != ():
            raise UnfoldingError(
                f"{path}: branch {name!r} of tree {tree.name!r} ({purpose}) does not hold one "
                f"number per entry (its type is {branch.typename}); branches of different "
                "lengths cannot be paired: expected a flat numeric branch"
            )
        if branch.num_entries != tree.num_entries:
            raise UnfoldingError(
                f"{path}: branch {name!r} of tree {tree.name!r} ({purpose}) has "
                f"{branch.num_entries} entries, the tree {tree.num_entries}: branches of "
                "different lengths"
            )


def _read_columns(
    path: str | Path,
    tree_name: str,
    branches: dict[str, str],
    role: str,
    step_size: int | str,
) -> dict[str, np.ndarray]:
    """Read flat branches of one tree in steps; ``branches``: name -> purpose."""
    tree = _open_tree(path, tree_name, role)
    _check_branches(path, tree, branches, role)
    names = list(branches)
    if not names:
        return {}
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for arrays in tree.iterate(names, step_size=step_size, library="np"):
        for n in names:
            chunks[n].append(np.asarray(arrays[n]))
    out = {}
    for n in names:
        parts = chunks[n]
        out[n] = np.concatenate(parts) if parts else np.zeros(0)
    log.debug("%s:%s: read %d entries, %d branches", path, tree_name, tree.num_entries, len(names))
    return out


def _flag(values: np.ndarray | None, n: int) -> np.ndarray:
    return np.ones(n, dtype=bool) if values is None else np.asarray(values) != 0


def _matrix(columns: dict[str, np.ndarray], names: Sequence[str], n: int) -> np.ndarray:
    if not names:
        return np.zeros((n, 0))
    return np.stack([np.asarray(columns[b], dtype=np.float64) for b in names], axis=1)


def _check_finite(
    values: np.ndarray,
    rows: np.ndarray,
    branches: Sequence[str],
    where: str,
    level: str,
    flag: str | None,
) -> None:
    """NaN or inf in the passing rows: one error naming the branch and first entry."""
    bad = ~np.isfinite(values) & rows[:, None]
    if not bad.any():
        return
    col = int(np.nonzero(bad.any(axis=0))[0][0])
    entry = int(np.nonzero(bad[:, col])[0][0])
    fix = f"or set the {flag!r} flag false there" if flag else "or add a selection flag"
    raise UnfoldingError(
        f"{where}: branch {branches[col]!r}: {int(bad[:, col].sum())} NaN or infinite values "
        f"in events that pass the {level} selection (first at entry {entry}); fix the values "
        f"{fix}"
    )


# ------------------------------------------------------------------------ simulation


def _sim_branches(card: UnfoldCard) -> tuple[list[str], list[str]]:
    return (
        [o.truth_branch for o in card.observables],
        [o.reco_branch for o in card.observables],
    )


def _purposes(card: UnfoldCard, level: str) -> dict[str, str]:
    if level == "truth":
        return {o.truth_branch: f"observable {o.name}, parton level" for o in card.observables}
    return {o.reco_branch: f"observable {o.name}, detector level" for o in card.observables}


def _read_sim_file(card: UnfoldCard, path: str) -> _Simulation:
    sim = card.simulation
    step = card.step_size
    truth_b, reco_b = _sim_branches(card)
    role = "simulation"
    if sim.pairing == "tree":
        wanted = {**_purposes(card, "truth"), **_purposes(card, "reco")}
        for key, purpose in (
            (sim.weight, "event weight"),
            (sim.pass_truth, "parton-level selection flag"),
            (sim.pass_reco, "detector-level selection flag"),
        ):
            if key is not None:
                wanted.setdefault(key, purpose)
        cols = _read_columns(path, sim.tree, wanted, role, step)
        n = len(next(iter(cols.values())))
        where = f"{path}: tree {sim.tree!r}"
        truth, reco = _matrix(cols, truth_b, n), _matrix(cols, reco_b, n)
        weights = np.asarray(cols[sim.weight], np.float64) if sim.weight else np.ones(n, np.float64)
        pass_truth = _flag(cols.get(sim.pass_truth) if sim.pass_truth else None, n)
        pass_reco = _flag(cols.get(sim.pass_reco) if sim.pass_reco else None, n)
        where_t = where_r = where
    else:
        assert sim.truth_tree is not None and sim.reco_tree is not None
        t_want = dict(_purposes(card, "truth"))
        r_want = dict(_purposes(card, "reco"))
        for want, flag, purpose in (
            (t_want, sim.pass_truth, "parton-level selection flag"),
            (r_want, sim.pass_reco, "detector-level selection flag"),
        ):
            if sim.weight is not None and (want is t_want or sim.pairing == "event_number"):
                want.setdefault(sim.weight, "event weight")
            if flag is not None:
                want.setdefault(flag, purpose)
            if sim.event_number is not None:
                want.setdefault(sim.event_number, "event number (join key)")
        tcols = _read_columns(path, sim.truth_tree, t_want, role, step)
        rcols = _read_columns(path, sim.reco_tree, r_want, role, step)
        where_t = f"{path}: tree {sim.truth_tree!r}"
        where_r = f"{path}: tree {sim.reco_tree!r}"
        n_t = len(next(iter(tcols.values())))
        n_r = len(next(iter(rcols.values())))
        t_truth, r_reco = _matrix(tcols, truth_b, n_t), _matrix(rcols, reco_b, n_r)
        t_flag = _flag(tcols.get(sim.pass_truth) if sim.pass_truth else None, n_t)
        r_flag = _flag(rcols.get(sim.pass_reco) if sim.pass_reco else None, n_r)
        t_w = np.asarray(tcols[sim.weight], np.float64) if sim.weight else np.ones(n_t)
        r_w = np.asarray(rcols[sim.weight], np.float64) if sim.weight in rcols else np.ones(n_r)
        if sim.pairing == "index":
            if n_t != n_r:
                raise UnfoldingError(
                    f"{path}: trees {sim.truth_tree!r} ({n_t} entries) and {sim.reco_tree!r} "
                    f"({n_r} entries) have different lengths, but pairing 'index' pairs them "
                    "entry by entry; use pairing: event_number"
                )
            truth, reco, weights = t_truth, r_reco, t_w
            pass_truth, pass_reco = t_flag, r_flag
        else:
            assert sim.event_number is not None
            truth, reco, weights, pass_truth, pass_reco = _join(
                path,
                sim.event_number,
                (sim.truth_tree, tcols[sim.event_number], t_truth, t_w, t_flag),
                (sim.reco_tree, rcols[sim.event_number], r_reco, r_w, r_flag),
            )
    keep = pass_truth | pass_reco
    truth, reco, weights = truth[keep], reco[keep], weights[keep]
    pass_truth, pass_reco = pass_truth[keep], pass_reco[keep]
    _check_finite(truth, pass_truth, truth_b, where_t, "parton-level", sim.pass_truth)
    _check_finite(reco, pass_reco, reco_b, where_r, "detector-level", sim.pass_reco)
    everywhere = np.ones(len(weights), bool)
    level = "parton- or detector-level"
    _check_finite(weights[:, None], everywhere, [sim.weight or "-"], where_t, level, None)
    return _Simulation(truth, reco, weights, pass_truth, pass_reco)


def _join(
    path: str,
    key: str,
    truth_side: tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    reco_side: tuple[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Outer join of the truth and reco trees on the event number (sorted merge)."""
    t_tree, t_ev, t_x, t_w, t_flag = truth_side
    r_tree, r_ev, r_x, r_w, r_flag = reco_side
    for tree, ev in ((t_tree, t_ev), (r_tree, r_ev)):
        if not np.issubdtype(ev.dtype, np.integer):
            raise UnfoldingError(
                f"{path}: branch {key!r} of tree {tree!r} (event number) must be an integer "
                f"branch, got {ev.dtype}"
            )
        uniq, counts = np.unique(ev, return_counts=True)
        if len(uniq) != len(ev):
            dup = uniq[counts > 1]
            raise UnfoldingError(
                f"{path}: branch {key!r} of tree {tree!r}: {len(dup)} duplicated event numbers "
                f"(first: {int(dup[0])}); the join needs each event number once per tree"
            )
    events = np.union1d(t_ev, r_ev)
    n = len(events)
    it = np.searchsorted(events, t_ev)
    ir = np.searchsorted(events, r_ev)
    in_t = np.zeros(n, bool)
    in_r = np.zeros(n, bool)
    in_t[it] = True
    in_r[ir] = True
    truth = np.zeros((n, t_x.shape[1]))
    reco = np.zeros((n, r_x.shape[1]))
    truth[it] = t_x
    reco[ir] = r_x
    pass_truth = np.zeros(n, bool)
    pass_reco = np.zeros(n, bool)
    pass_truth[it] = t_flag
    pass_reco[ir] = r_flag
    weights = np.zeros(n)
    weights[ir] = r_w
    weights[it] = t_w  # the truth tree's weight where the event is there
    return truth, reco, weights, pass_truth & in_t, pass_reco & in_r


def _placeholders(values: np.ndarray, passing: np.ndarray) -> np.ndarray:
    """Replace the values of failing rows by the column mean over passing rows."""
    out = values.copy()
    if passing.any():
        mean = values[passing].mean(axis=0)
    else:
        mean = np.zeros(values.shape[1])
    out[~passing] = mean
    return out


def read_simulation(card: UnfoldCard) -> dict[str, np.ndarray]:
    """Read the card's simulation file(s) (in order) into arrays.

    Returns:
        ``truth`` (n, d) and ``reco`` (n, d) float64 (placeholders in failing rows),
        ``weights`` (n,) float64, ``pass_truth``, ``pass_reco`` (n,) bool; rows failing
        both selections are dropped.

    Raises:
        UnfoldingError: see the module docstring.
    """
    parts = [_read_sim_file(card, f) for f in card.simulation.files]
    truth = np.concatenate([p.truth for p in parts])
    reco = np.concatenate([p.reco for p in parts])
    weights = np.concatenate([p.weights for p in parts])
    pass_truth = np.concatenate([p.pass_truth for p in parts])
    pass_reco = np.concatenate([p.pass_reco for p in parts])
    files = ", ".join(card.simulation.files)
    flags = {"truth": card.simulation.pass_truth, "reco": card.simulation.pass_reco}
    for level, mask in (("parton-level", pass_truth), ("detector-level", pass_reco)):
        if not mask.any():
            flag = flags["truth" if level == "parton-level" else "reco"]
            raise UnfoldingError(
                f"{files}: no simulated event passes the {level} selection"
                + (f" (branch {flag!r})" if flag else " (the trees are empty)")
            )
    if not (pass_truth & pass_reco).any():
        raise UnfoldingError(
            f"{files}: no simulated event passes both the parton-level and the "
            "detector-level selection, so there is no response to unfold with"
        )
    return {
        "truth": _placeholders(truth, pass_truth),
        "reco": _placeholders(reco, pass_reco),
        "weights": weights,
        "pass_truth": pass_truth,
        "pass_reco": pass_reco,
    }


# ------------------------------------------------------------------------ data


def _data_path(card: UnfoldCard, data_path: str | Path | None) -> str:
    path = data_path if data_path is not None else card.data.file
    if path is None:
        raise UnfoldingError("no measured data: give --data FILE.root or set data.file in the card")
    return str(path)


def read_data(card: UnfoldCard, data_path: str | Path | None = None) -> dict[str, np.ndarray]:
    """Read the measured detector-level observables.

    Returns:
        ``reco`` (n, d) float64 of the entries passing ``data.pass_reco`` and their
        ``weights`` (n,) float64 (ones without ``data.weight``).
    """
    path = _data_path(card, data_path)
    d = card.data
    wanted = {
        o.reco_branch: f"observable {o.name}, detector level, as in the simulation"
        for o in card.observables
    }
    if d.weight is not None:
        wanted.setdefault(d.weight, "event weight")
    if d.pass_reco is not None:
        wanted.setdefault(d.pass_reco, "detector-level selection flag")
    cols = _read_columns(path, d.tree, wanted, "data", card.step_size)
    reco_b = [o.reco_branch for o in card.observables]
    n = len(cols[reco_b[0]])
    where = f"{path}: tree {d.tree!r}"
    passing = _flag(cols.get(d.pass_reco) if d.pass_reco else None, n)
    if not passing.any():
        raise UnfoldingError(
            f"{where}: no measured event"
            + (f" passes the selection (branch {d.pass_reco!r})" if d.pass_reco else " (empty)")
        )
    reco = _matrix(cols, reco_b, n)
    weights = np.asarray(cols[d.weight], np.float64) if d.weight else np.ones(n)
    _check_finite(reco, passing, reco_b, where, "detector-level", d.pass_reco)
    _check_finite(weights[:, None], passing, [d.weight or "-"], where, "detector-level", None)
    return {"reco": reco[passing], "weights": weights[passing]}


def _check_same_observables(
    card: UnfoldCard, path: str, sim_reco: np.ndarray, sim_pass: np.ndarray, data: np.ndarray
) -> None:
    """Measured values mostly outside the simulation's detector-level range: the two do
    not describe the same observable (definition, unit)."""
    lo = sim_reco[sim_pass].min(axis=0)
    hi = sim_reco[sim_pass].max(axis=0)
    outside = ((data < lo) | (data > hi)).mean(axis=0)
    limit = card.data.max_outside_fraction
    for j, obs in enumerate(card.observables):
        if outside[j] > limit:
            raise UnfoldingError(
                f"{path}: branch {obs.reco_branch!r} (observable {obs.name}): "
                f"{outside[j]:.0%} of the measured values lie outside the simulation's range "
                f"[{lo[j]:.6g}, {hi[j]:.6g}] (data.max_outside_fraction {limit}); the "
                "observable differs between simulation and data (definition or unit?)"
            )


def read_inputs(
    card: UnfoldCard,
    data_path: str | Path | None = None,
    *,
    device: torch.device | str = "cpu",
) -> UnfoldingInputs:
    """Read simulation and measured data as the card describes them.

    Args:
        card: the validated unfolding card.
        data_path: the measured file (``evgen unfold --data``); default ``data.file``.
        device: where the tensors go.

    Returns:
        Validated :class:`UnfoldingInputs` (float64; names are the observables' names).

    Raises:
        UnfoldingError: one message naming the file, tree and branch at fault.
    """
    sim = read_simulation(card)
    data = read_data(card, data_path)
    path = _data_path(card, data_path)
    _check_same_observables(card, path, sim["reco"], sim["pass_reco"], data["reco"])
    names = tuple(o.name for o in card.observables)

    def t(x: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(device)

    inputs = UnfoldingInputs(
        sim_truth=t(sim["truth"]),
        sim_reco=t(sim["reco"]),
        sim_weights=t(sim["weights"]),
        sim_pass_truth=t(sim["pass_truth"]),
        sim_pass_reco=t(sim["pass_reco"]),
        data_reco=t(data["reco"]),
        data_weights=t(data["weights"]),
        truth_names=names,
        reco_names=names,
    )
    inputs.validate()
    return inputs


def read_data_truth(
    card: UnfoldCard, data_path: str | Path | None = None, *, device: torch.device | str = "cpu"
) -> KnownTruth | None:
    """The parton level of pseudo-data, when its tree has it (see ``data.truth``).

    The data tree must hold every observable's parton-level branch and, when the card
    names one, the simulation's ``pass_truth`` flag; the events passing it are returned
    with the data's weights. ``None`` when ``data.truth`` is false, or unset and a branch
    is missing.
    """
    if card.data.truth is False:
        return None
    path = _data_path(card, data_path)
    d = card.data
    wanted = {o.truth_branch: f"observable {o.name}, parton level" for o in card.observables}
    flag = card.simulation.pass_truth
    if flag is not None:
        wanted.setdefault(flag, "parton-level selection flag")
    if d.weight is not None:
        wanted.setdefault(d.weight, "event weight")
    if d.truth is None:
        tree = _open_tree(path, d.tree, "data")
        if not set(wanted) <= set(tree.keys()):
            return None
    cols = _read_columns(path, d.tree, wanted, "data (known truth)", card.step_size)
    truth_b = [o.truth_branch for o in card.observables]
    n = len(cols[truth_b[0]])
    passing = _flag(cols.get(flag) if flag else None, n)
    truth = _matrix(cols, truth_b, n)
    weights = np.asarray(cols[d.weight], np.float64) if d.weight else np.ones(n)
    _check_finite(truth, passing, truth_b, f"{path}: tree {d.tree!r}", "parton-level", flag)
    return KnownTruth(
        truth=torch.from_numpy(np.ascontiguousarray(truth[passing])).to(device),
        weights=torch.from_numpy(np.ascontiguousarray(weights[passing])).to(device),
        source=f"{path}:{d.tree}",
    )
