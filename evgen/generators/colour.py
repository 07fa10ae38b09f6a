"""Flavours and colour flows of generated events from the process's matrix element.

A generator learns kinematics; what a parton shower also needs, the flavours (when the
network merged light partons, ``merge_partons``) and a leading-colour flow, comes from
the card's process at each sampled point, exactly as ``evgen run`` assigns them
(:func:`evgen.generation.build_events`):

* the subprocess of an event is drawn among those whose external particles agree with
  the event's (PDG ids up to the merged partons, masses) with probability proportional
  to its weight f1(x1, mu) f2(x2, mu) |M|^2 S (PDFs at x1,2 = E_in,1,2 / E_beam,1,2 and
  mu the event's scale; S the identical-particle factor); one candidate is taken as is;
* its colour flow is :meth:`processes.base.Process.colour_flow` at the event's momenta;
* decay-chain resonances (status 2) carry the colour lines their decay products take
  out of them, and the event's ``process_id`` becomes the subprocess's LHE IDPRUP (its
  1-based position in the card's list, as in ``evgen run``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from evgen.events import Events
from evgen.generation import _open_colours, _record_resonances
from evgen.generators.preprocessing import _PARTONS, GeneratorError
from evgen.setup import PreparedRun
from processes.base import Process

__all__ = ["assign_flavours_and_colours", "subprocess_table"]


def subprocess_table(run: PreparedRun) -> list[tuple[int, Process]]:
    """(IDPRUP, subprocess) of every subprocess of a prepared run, in card order."""
    return [
        (pid, proc)
        for group in run.groups
        for pid, proc in zip(group.process_ids, group.subprocesses, strict=True)
    ]


def _record_pdg(proc: Process) -> tuple[int, ...]:
    return (*proc.pdg_ids, *(r.pdg for r in _record_resonances(proc)))


def _merged(pdg: Sequence[int]) -> tuple[int, ...]:
    return tuple(21 if p in _PARTONS else p for p in pdg)


def _subprocess_weights(
    run: PreparedRun, procs: Sequence[Process], p: Tensor, scale: Tensor, alpha_s: Tensor
) -> Tensor:
    """(n, len(procs)) non-negative weights f1 f2 |M|^2 S of each candidate at momenta p."""
    columns = []
    for proc in procs:
        me = proc.matrix_element(p, alpha_s) * proc.symmetry_factor
        lum = torch.ones_like(me)
        for k, beam in enumerate(run.beams):
            if beam.is_hadron and run.pdf is not None:
                x = (p[:, k, 0] / beam.energy).clamp(max=1.0)
                xfx = run.pdf.xfx_all(x.to(run.device), (scale**2).to(run.device)).to(p)
                lum = lum * xfx[:, beam.pdf_column(proc.incoming[k])] / x
        columns.append((me * lum).clamp(min=0.0))
    return torch.stack(columns, dim=1)


def assign_flavours_and_colours(
    events: Events, run: PreparedRun, generator: torch.Generator
) -> Events:
    """Events with subprocess flavours, IDPRUP and a colour flow per event.

    Args:
        events: generated events of one multiplicity (colours zero; with merged partons
            PDG 21 stands for any massless parton).
        run: the card's prepared run (:func:`evgen.setup.prepare`): subprocesses, beams,
            PDFs.
        generator: CPU random generator for the subprocess and colour-flow draws.

    Returns:
        A new :class:`Events` (on the CPU, float64 momenta unchanged).

    Raises:
        GeneratorError: an event's particle content fits no subprocess of the card, or
            every candidate's weight vanishes at some event.
    """
    ev = events.to("cpu")
    n = len(ev)
    if n == 0:
        return ev
    table = subprocess_table(run)
    pdg = ev.pdg.clone()
    colours = torch.zeros_like(ev.colours)
    process_id = ev.process_id.clone()
    rows, inverse = torch.unique(ev.pdg, dim=0, return_inverse=True)
    for r in range(rows.shape[0]):
        sel = inverse == r
        row = tuple(int(v) for v in rows[r].tolist())
        candidates = [(pid, proc) for pid, proc in table if _record_pdg(proc) == row]
        if not candidates:
            candidates = [
                (pid, proc)
                for pid, proc in table
                if len(_record_pdg(proc)) == len(row) and _merged(_record_pdg(proc)) == _merged(row)
            ]
        if not candidates:
            known = sorted({proc.name for _, proc in table})
            raise GeneratorError(
                f"generated events with particles {list(row)} fit no subprocess of the card's "
                f"process {run.card.process!r} (its subprocesses: {known}); the model was "
                "trained on events of another process"
            )
        p_all = ev.momenta[sel]
        n_ext = len(candidates[0][1].pdg_ids)
        p = p_all[:, :n_ext]
        if len(candidates) == 1:
            choice = torch.zeros(p.shape[0], dtype=torch.int64)
        else:
            w = _subprocess_weights(
                run, [c[1] for c in candidates], p, ev.scale[sel], ev.alpha_s[sel]
            )
            total = w.sum(dim=1)
            if not bool((total > 0).all()):
                raise GeneratorError(
                    f"{int((total <= 0).sum())} generated events have zero weight in every "
                    f"subprocess of {run.card.process!r} matching particles {list(row)}"
                )
            choice = torch.multinomial(w / total[:, None], 1, generator=generator).squeeze(1)
        u = torch.rand(p.shape[0], generator=generator, dtype=torch.float64)
        block_pdg = pdg[sel]
        block_col = torch.zeros(p.shape[0], len(row), 2, dtype=torch.int64)
        block_pid = process_id[sel]
        for k, (pid, proc) in enumerate(candidates):
            mine = choice == k
            if not bool(mine.any()):
                continue
            block_pdg[mine] = torch.tensor(_record_pdg(proc), dtype=torch.int64)
            block_col[mine, :n_ext] = proc.colour_flow(p[mine], u[mine]).to(torch.int64).cpu()
            block_pid[mine] = pid
            for j, res in enumerate(_record_resonances(proc)):
                block_col[mine, n_ext + j] = _open_colours(block_col[mine][:, list(res.legs)])
        pdg[sel], colours[sel], process_id[sel] = block_pdg, block_col, block_pid
    return Events(
        momenta=ev.momenta,
        pdg=pdg,
        status=ev.status,
        mothers=ev.mothers,
        colours=colours,
        masses=ev.masses,
        spins=ev.spins,
        weights=ev.weights,
        process_id=process_id,
        scale=ev.scale,
        alpha_s=ev.alpha_s,
        alpha_qed=ev.alpha_qed,
        channel=ev.channel,
    )
