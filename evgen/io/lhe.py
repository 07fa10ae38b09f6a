"""Les Houches Event File writer, version 3.0 (arXiv:hep-ph/0609017, arXiv:1405.1067).

File layout::

    <LesHouchesEvents version="3.0">
    <header>
    <evgen_card><![CDATA[...the run card, verbatim...]]></evgen_card>
    <evgen_run_info>
    key = value lines: generator, version, seed, events, weight convention,
    total cross section and error (pb), then ``RunInfo.extra``
    </evgen_run_info>
    </header>
    <init>
    IDBMUP(1) IDBMUP(2) EBMUP(1) EBMUP(2) PDFGUP(1) PDFGUP(2) PDFSUP(1) PDFSUP(2) IDWTUP NPRUP
    XSECUP XERRUP XMAXUP LPRUP          (one line per process, pb)
    <generator name="evgen" version="...">seed=...</generator>
    </init>
    <event>
    NUP IDPRUP XWGTUP SCALUP AQEDUP AQCDUP
    IDUP ISTUP MOTHUP(1) MOTHUP(2) ICOLUP(1) ICOLUP(2) PUP(1..5) VTIMUP SPINUP   (per particle)
    </event>
    ...
    </LesHouchesEvents>

The card sits in a CDATA section of our own ``<evgen_card>`` tag (not MadGraph's
``<MGRunCard>``, whose ``key = value`` syntax tools such as MadMiner parse): the text
between ``<![CDATA[`` and ``]]>`` is the card exactly; a ``]]>`` inside the card is
split over two CDATA sections, so an XML parser still returns the card verbatim.
(Pythia's reader is line based: a card line containing ``</header>`` or ``<init``
would confuse it; YAML cards have none.)

Numbers: weights and cross sections ``%+.16e`` (17 significant digits, float64
round-trips exactly); momenta, masses, scale and couplings ``%.11e`` (12 significant
digits, MadGraph writes 11); VTIMUP and SPINUP ``%.4e``. VTIMUP is written as 0.

XWGTUP is ``Events.weights`` as given, in pb: in evgen's convention the weights sum
to the cross section (MadGraph's ``event_norm = sum``); IDWTUP is ``RunInfo.weighting``
(3 for unweighted events, where Pythia takes the cross section from XSECUP).

Speed: each batch is formatted with one ``%`` operation over a flat array of its
fields (no per-field Python work), in chunks of :data:`CHUNK_EVENTS` events.
The file is written atomically (see :mod:`evgen.io.atomic`).
"""

from __future__ import annotations

import gzip as _gzip
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol
from xml.sax.saxutils import escape, quoteattr

import numpy as np
import torch

from evgen.events import Events, RunInfo
from evgen.io.atomic import atomic_output

__all__ = ["write_lhe", "CHUNK_EVENTS"]

log = logging.getLogger(__name__)

#: events formatted per ``%`` operation (bounds the memory of the text being built).
CHUNK_EVENTS = 20_000

_EVENT_LINE = "<event>\n%d %d %+.16e %.11e %.11e %.11e\n"
_PARTICLE_LINE = "%9d %2d %4d %4d %4d %4d %+.11e %+.11e %+.11e %.11e %.11e %.4e %.4e\n"
_EVENT_END = "</event>\n"
# Columns of a particle line that are integers (IDUP, ISTUP, MOTHUP, ICOLUP).
_N_EVENT_FIELDS, _N_PARTICLE_FIELDS, _N_INT_PARTICLE_FIELDS = 6, 13, 6


def write_lhe(
    path: str | Path,
    events: Events | Sequence[Events],
    run: RunInfo,
    *,
    gzip: bool | None = None,
) -> Path:
    """Write events to a Les Houches Event File (v3.0), atomically.

    Args:
        path: output file; a temporary file in the same folder is renamed to it at the end.
        events: one batch, or batches of possibly different multiplicities, written
            in order.
        run: run metadata for ``<header>`` and ``<init>``.
        gzip: gzip-compress; by default when ``path`` ends in ``.gz``.

    Returns:
        The path written.

    Raises:
        OutputError: the file cannot be written (names the path); nothing is left behind.
        ValueError: inconsistent input (unknown process id, non-finite numbers, ...).
    """
    target = Path(path)
    batches = [events] if isinstance(events, Events) else list(events)
    known = {p.process_id for p in run.processes}
    if not known:
        raise ValueError("run.processes: at least one process is needed for <init>")
    for batch in batches:
        _check_batch(batch, known)
    n_total = sum(len(b) for b in batches)
    if run.weighting > 0 and any(bool((b.weights < 0).any()) for b in batches):
        log.warning("negative event weights written with IDWTUP=%d > 0", run.weighting)
    compress = target.name.endswith(".gz") if gzip is None else gzip

    with atomic_output(target) as tmp, open(tmp, "wb") as raw:
        if compress:
            with _gzip.GzipFile(
                filename=target.name, mode="wb", fileobj=raw, compresslevel=6, mtime=0
            ) as stream:
                _write_body(stream, run, batches, n_total)
        else:
            _write_body(raw, run, batches, n_total)
    return target


class _ByteSink(Protocol):
    def write(self, data: bytes, /) -> int: ...


def _write_body(stream: _ByteSink, run: RunInfo, batches: list[Events], n_total: int) -> None:
    stream.write(_preamble(run, n_total).encode())
    for batch in batches:
        for start in range(0, len(batch), CHUNK_EVENTS):
            stream.write(_format_events(batch[start : start + CHUNK_EVENTS]).encode())
    stream.write(b"</LesHouchesEvents>\n")


def _check_batch(events: Events, known: set[int]) -> None:
    n, k = len(events), events.n_particles
    if events.momenta.shape != (n, k, 4):
        raise ValueError(
            f"events.momenta: expected shape ({n}, {k}, 4), got {events.momenta.shape}"
        )
    ids = set(torch.unique(events.process_id).tolist()) if n else set()
    if not ids <= known:
        raise ValueError(
            f"events.process_id: {sorted(ids - known)} not among run.processes {sorted(known)}"
        )
    for name in ("momenta", "masses", "spins", "weights", "scale", "alpha_s", "alpha_qed"):
        value = getattr(events, name)
        if not bool(torch.isfinite(value).all()):
            raise ValueError(f"events.{name}: contains non-finite values")


def _preamble(run: RunInfo, n_events: int) -> str:
    """Everything before the first ``<event>``."""
    gen_name, gen_version = run.generator
    card = run.card_text.replace("]]>", "]]]]><![CDATA[>")
    info = [
        f"generator = {gen_name}",
        f"version = {gen_version}",
        f"seed = {run.seed}",
        f"events = {n_events}",
        "weight_convention = sum (the XWGTUP of all events sum to the cross section, pb)",
        f"cross_section_pb = {run.cross_section_pb:.16e}",
        f"error_pb = {run.error_pb:.16e}",
    ]
    info += [f"{k} = {v}" for k, v in run.extra.items()]
    init = (
        f"{run.beam_pdg[0]:d} {run.beam_pdg[1]:d} "
        f"{run.beam_energy[0]:.11e} {run.beam_energy[1]:.11e} "
        f"{run.pdf_group[0]:d} {run.pdf_group[1]:d} {run.pdf_id[0]:d} {run.pdf_id[1]:d} "
        f"{run.weighting:d} {len(run.processes):d}\n"
    )
    for p in run.processes:
        for name in ("cross_section_pb", "error_pb", "max_weight_pb"):
            if not math.isfinite(getattr(p, name)):
                raise ValueError(f"run.processes[{p.process_id}].{name}: not finite")
        init += (
            f"{p.cross_section_pb:+.16e} {p.error_pb:+.16e} {p.max_weight_pb:+.16e} "
            f"{p.process_id:d}\n"
        )
    return (
        '<LesHouchesEvents version="3.0">\n'
        "<header>\n"
        f"<evgen_card><![CDATA[{card}]]></evgen_card>\n"
        "<evgen_run_info>\n" + escape("\n".join(info)) + "\n</evgen_run_info>\n"
        "</header>\n"
        "<init>\n" + init + f"<generator name={quoteattr(gen_name)} "
        f"version={quoteattr(gen_version)}>seed={run.seed}</generator>\n"
        "</init>\n"
    )


def _format_events(events: Events) -> str:
    """The ``<event>`` blocks of one batch, from one ``%`` over a flat field array."""
    n, k = len(events), events.n_particles
    if n == 0:
        return ""
    ev = events.to("cpu")
    width = _N_EVENT_FIELDS + _N_PARTICLE_FIELDS * k
    fields = np.empty((n, width), dtype=object)
    fields[:, 0] = k
    fields[:, 1] = ev.process_id.numpy().astype(np.int64).tolist()
    head = np.stack(
        [ev.weights.numpy(), ev.scale.numpy(), ev.alpha_qed.numpy(), ev.alpha_s.numpy()], 1
    ).astype(np.float64)
    fields[:, 2:6] = head

    ints = np.concatenate(
        [
            ev.pdg.numpy()[..., None],
            ev.status.numpy()[..., None],
            ev.mothers.numpy(),
            ev.colours.numpy(),
        ],
        axis=-1,
    ).astype(np.int64)  # (n, k, 6)
    mom = ev.momenta.numpy().astype(np.float64)
    floats = np.concatenate(
        [
            mom[..., 1:4],
            mom[..., :1],
            ev.masses.numpy()[..., None],
            np.zeros((n, k, 1)),
            ev.spins.numpy()[..., None],
        ],
        axis=-1,
    ).astype(np.float64)  # (n, k, 7): px py pz E m VTIMUP SPINUP
    particles = np.empty((n, k, _N_PARTICLE_FIELDS), dtype=object)
    particles[..., :_N_INT_PARTICLE_FIELDS] = ints
    particles[..., _N_INT_PARTICLE_FIELDS:] = floats
    fields[:, _N_EVENT_FIELDS:] = particles.reshape(n, -1)

    template = _EVENT_LINE + _PARTICLE_LINE * k + _EVENT_END
    return (template * n) % tuple(fields.ravel().tolist())
