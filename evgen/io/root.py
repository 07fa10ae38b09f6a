"""ROOT output with uproot: a TTree of events, a TTree of processes, the card.

File contents:

``events`` (TTree, one entry per event; name set by ``tree_name``)
    Per-particle branches, jagged, counted by the shared ``n_particles`` (int32)
    branch, in LHE particle order (the two incoming partons first):

    ================== ======= =============================================
    ``particle_pdg``    int32   PDG id
    ``particle_status`` int32   LHE status (-1 incoming, 1 outgoing, 2 resonance)
    ``particle_mother1`` int32  LHE mother index, 1-based, 0 for none
    ``particle_mother2`` int32  second mother index
    ``particle_colour1`` int32  LHE colour tag, 0 for none
    ``particle_colour2`` int32  LHE anticolour tag
    ``particle_px``     float64 GeV
    ``particle_py``     float64 GeV
    ``particle_pz``     float64 GeV
    ``particle_e``      float64 energy, GeV
    ``particle_m``      float64 generated mass, GeV
    ``particle_spin``   float64 cosine of the helicity angle, 9 = unknown
    ================== ======= =============================================

    Per-event branches: ``weight`` (float64, pb; the weights of all entries sum to
    the cross section), ``process_id`` (int32, LHE IDPRUP), ``scale`` (float64, GeV),
    ``alpha_s``, ``alpha_qed`` (float64), ``channel`` (int32), ``n_particles`` (int32).
    Batches of different multiplicities are entries of the same tree.
    In ROOT: ``tree->Draw("particle_pt...")``, ``RDataFrame(...).Sum("weight")``.

``run`` (TTree, one entry per process)
    ``process_id`` (int32), ``name`` (string, ``char*`` leaf), ``cross_section_pb``,
    ``error_pb``, ``max_weight_pb`` (float64).

``card`` (TObjString)
    The run card verbatim (``TFile::Get<TObjString>("card")->GetString()``).

``run_info`` (TObjString)
    JSON of the whole :class:`~evgen.events.RunInfo` (beams, PDFs, IDWTUP, seed,
    generator, extra, processes) so :func:`read_root` rebuilds it exactly.

The TTrees are written with ``mktree`` + ``extend`` in chunks of :data:`CHUNK_EVENTS`
events (uproot >= 5.7 would write an RNTuple for ``file[name] = {...}``), atomically
(see :mod:`evgen.io.atomic`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import torch
import uproot

from evgen.events import Events, ProcessInfo, RunInfo
from evgen.io.atomic import atomic_output

__all__ = ["write_root", "read_root", "CHUNK_EVENTS", "PARTICLE_BRANCHES", "EVENT_BRANCHES"]

#: events per ``TTree.extend`` call (one basket per branch each).
CHUNK_EVENTS = 100_000

#: per-particle quantities: name (branch ``particle_<name>``) -> dtype.
PARTICLE_BRANCHES: dict[str, str] = {
    "pdg": "int32",
    "status": "int32",
    "mother1": "int32",
    "mother2": "int32",
    "colour1": "int32",
    "colour2": "int32",
    "px": "float64",
    "py": "float64",
    "pz": "float64",
    "e": "float64",
    "m": "float64",
    "spin": "float64",
}

#: per-event branches -> dtype (plus the counter ``n_particles``).
EVENT_BRANCHES: dict[str, str] = {
    "weight": "float64",
    "process_id": "int32",
    "scale": "float64",
    "alpha_s": "float64",
    "alpha_qed": "float64",
    "channel": "int32",
}

_COUNTER = "n_particles"
_PARTICLE = "particle"


def write_root(
    path: str | Path,
    events: Events | Sequence[Events],
    run: RunInfo,
    *,
    tree_name: str = "events",
) -> Path:
    """Write events and run metadata to a ROOT file (TTrees), atomically.

    Args:
        path: output ``.root`` file.
        events: one batch or batches of possibly different multiplicities (in order).
        run: run metadata for the ``run`` tree, ``card`` and ``run_info``.
        tree_name: name of the event TTree (not ``run``, ``card`` or ``run_info``).

    Returns:
        The path written.

    Raises:
        OutputError: the file cannot be written (names the path); nothing is left behind.
    """
    if tree_name in ("run", "card", "run_info"):
        raise ValueError(f"tree_name: {tree_name!r} is reserved for run metadata")
    target = Path(path)
    batches = [events] if isinstance(events, Events) else list(events)
    with atomic_output(target) as tmp, uproot.recreate(tmp) as file:
        tree = file.mktree(
            tree_name,
            _branch_types(),
            title="evgen events",
            counter_name=lambda counted: _COUNTER,
            field_name=lambda outer, inner: inner if outer == "" else f"{outer}_{inner}",
        )
        for batch in batches:
            for start in range(0, len(batch), CHUNK_EVENTS):
                chunk = batch[start : start + CHUNK_EVENTS]
                if len(chunk):
                    tree.extend(_to_arrays(chunk))
        file.mktree(
            "run",
            {
                "process_id": np.array([p.process_id for p in run.processes], dtype=np.int32),
                "name": np.array([p.name for p in run.processes], dtype=str),
                "cross_section_pb": np.array([p.cross_section_pb for p in run.processes]),
                "error_pb": np.array([p.error_pb for p in run.processes]),
                "max_weight_pb": np.array([p.max_weight_pb for p in run.processes]),
            },
            title="evgen processes",
        )
        file["card"] = run.card_text
        file["run_info"] = json.dumps(asdict(run))
    return target


def read_root(
    path: str | Path,
    *,
    tree_name: str = "events",
    entry_start: int | None = None,
    entry_stop: int | None = None,
) -> tuple[Events | list[Events], dict[str, Any]]:
    """Read a file written by :func:`write_root` back into :class:`Events`.

    Args:
        path: the ROOT file.
        tree_name: the event TTree.
        entry_start, entry_stop: read only this range of entries (chunked reading).

    Returns:
        ``(events, metadata)``. ``events`` is one :class:`Events` when all entries
        read have the same multiplicity, else a list with one :class:`Events` per
        multiplicity in order of first appearance (entries keep their relative order
        within each). ``metadata``: ``run_info`` (:class:`RunInfo`), ``card`` (str),
        ``processes`` (dict of ``run``-tree columns as lists), ``n_entries`` (int,
        entries in the whole tree).
    """
    with uproot.open(path) as file:
        tree = file[tree_name]
        arrays = tree.arrays(entry_start=entry_start, entry_stop=entry_stop, library="ak")
        n_entries = int(tree.num_entries)
        card = str(file["card"]) if "card" in file else ""
        run_tree = file["run"].arrays(library="ak") if "run" in file else None
        info_json = str(file["run_info"]) if "run_info" in file else None

    counts = np.asarray(arrays[_COUNTER], dtype=np.int64)
    groups: list[Events] = []
    for k in dict.fromkeys(counts.tolist()):  # distinct multiplicities, first-seen order
        groups.append(_from_arrays(arrays[counts == k], int(k)))
    if not groups:
        groups.append(_from_arrays(arrays, 0))

    processes = (
        {f: ak.to_list(run_tree[f]) for f in run_tree.fields} if run_tree is not None else {}
    )
    run_info = _run_info_from_json(info_json) if info_json is not None else None
    metadata = {"run_info": run_info, "card": card, "processes": processes, "n_entries": n_entries}
    return (groups[0] if len(groups) == 1 else groups), metadata


def _branch_types() -> dict[str, Any]:
    record = ", ".join(f"{name}: {dtype}" for name, dtype in PARTICLE_BRANCHES.items())
    types: dict[str, Any] = {
        _PARTICLE: ak.types.from_datashape(f"var * {{{record}}}", highlevel=False)
    }
    types.update({name: np.dtype(dtype) for name, dtype in EVENT_BRANCHES.items()})
    return types


def _to_arrays(events: Events) -> dict[str, Any]:
    """Branch arrays of one batch: a jagged record ``particle`` plus flat columns."""
    ev = events.to("cpu")
    n, k = len(ev), ev.n_particles

    def flat(t: torch.Tensor, dtype: str) -> np.ndarray:
        return t.numpy().astype(dtype).reshape(n * k)

    mom = ev.momenta.numpy()
    columns = {
        "pdg": flat(ev.pdg, "int32"),
        "status": flat(ev.status, "int32"),
        "mother1": flat(ev.mothers[..., 0], "int32"),
        "mother2": flat(ev.mothers[..., 1], "int32"),
        "colour1": flat(ev.colours[..., 0], "int32"),
        "colour2": flat(ev.colours[..., 1], "int32"),
        "px": mom[..., 1].astype("float64").reshape(n * k),
        "py": mom[..., 2].astype("float64").reshape(n * k),
        "pz": mom[..., 3].astype("float64").reshape(n * k),
        "e": mom[..., 0].astype("float64").reshape(n * k),
        "m": flat(ev.masses, "float64"),
        "spin": flat(ev.spins, "float64"),
    }
    offsets = np.arange(0, n * k + 1, k, dtype=np.int64) if k else np.zeros(n + 1, np.int64)
    content = ak.contents.RecordArray(
        [ak.contents.NumpyArray(np.ascontiguousarray(columns[f])) for f in PARTICLE_BRANCHES],
        list(PARTICLE_BRANCHES),
    )
    particle = ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), content))
    data: dict[str, Any] = {_PARTICLE: particle}
    data["weight"] = ev.weights.numpy().astype("float64")
    data["process_id"] = ev.process_id.numpy().astype("int32")
    data["scale"] = ev.scale.numpy().astype("float64")
    data["alpha_s"] = ev.alpha_s.numpy().astype("float64")
    data["alpha_qed"] = ev.alpha_qed.numpy().astype("float64")
    data["channel"] = ev.channel.numpy().astype("int32")
    return data


def _from_arrays(arrays: ak.Array, k: int) -> Events:
    """One multiplicity's entries (regular jagged lists of length ``k``) as Events."""
    n = len(arrays)

    def part(name: str, dtype: Any) -> torch.Tensor:
        values = ak.to_numpy(ak.flatten(arrays[f"{_PARTICLE}_{name}"], axis=1))
        return torch.from_numpy(np.asarray(values, dtype=dtype).reshape(n, k))

    def event(name: str, dtype: Any) -> torch.Tensor:
        return torch.from_numpy(np.asarray(ak.to_numpy(arrays[name]), dtype=dtype))

    i64, f64 = np.int64, np.float64
    momenta = torch.stack([part("e", f64), part("px", f64), part("py", f64), part("pz", f64)], -1)
    return Events(
        momenta=momenta,
        pdg=part("pdg", i64),
        status=part("status", i64),
        mothers=torch.stack([part("mother1", i64), part("mother2", i64)], -1),
        colours=torch.stack([part("colour1", i64), part("colour2", i64)], -1),
        masses=part("m", f64),
        spins=part("spin", f64),
        weights=event("weight", f64),
        process_id=event("process_id", i64),
        scale=event("scale", f64),
        alpha_s=event("alpha_s", f64),
        alpha_qed=event("alpha_qed", f64),
        channel=event("channel", i64),
    )


def _run_info_from_json(text: str) -> RunInfo:
    d = json.loads(text)
    return RunInfo(
        beam_pdg=tuple(d["beam_pdg"]),
        beam_energy=tuple(d["beam_energy"]),
        pdf_group=tuple(d["pdf_group"]),
        pdf_id=tuple(d["pdf_id"]),
        weighting=int(d["weighting"]),
        processes=tuple(ProcessInfo(**p) for p in d["processes"]),
        card_text=d["card_text"],
        generator=tuple(d["generator"]),
        seed=int(d["seed"]),
        extra=dict(d["extra"]),
    )
