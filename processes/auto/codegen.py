"""Straight-line per-process code from a plan, as MadGraph writes ``matrix.f``.

:func:`generate_source` turns a :class:`~processes.auto.plan.Plan` into one Python function
with every HELAS call of the process unrolled (:mod:`processes.auto.helas_real`): external
wave functions; the flows, momenta and propagator denominators of all off-shell currents
at once (one matrix product over the external momenta); the shared currents in
dependency order; each amplitude as a current contracted with one wave function; and the
JAMP sums with the exact colour coefficients written in. Helicities are a batch axis:
every wave function has one axis per external leg before the event axis (length 1 where
it does not depend on that leg), so a current is evaluated once per helicity combination
of its own legs (MadGraph's helicity recycling, by broadcasting) and amplitudes on the
full grid; the plan's non-vanishing combinations are the rows kept. A wave function is
dropped (``del``) after its last use. Print :attr:`ProcessKernel.source` to read it.

The default (eager, "grouped") code does three things MadGraph's generated code does not
need but batched torch does, each to cut torch kernels or memory passes:

- currents of one kind (Lorentz terms, couplings, off-shell leg, propagator, input
  shapes, depth in the tree) are stacked on a new axis and evaluated together, each
  member's helicity axes relabelled so that its legs line up with the first member's
  (g g > t t~ g g: 133 currents in 41 evaluations);
- amplitudes with the same colour row up to a phase are summed as they are closed (each
  closing is ``addcmul_`` into one reused, cache-resident accumulator), and each row sum
  enters its JAMPs once (g g > t t~ g g: 159 amplitudes, 105 rows, 336 JAMP updates
  instead of 672);
- JAMPs are written, not zeroed and added to, in a buffer kept between chunks.

The amplitude-keeping code (:attr:`ProcessKernel.amplitude_source`: one call per
current, one contraction per amplitude) serves the SDE channel weights.

:class:`ProcessKernel` runs the generated function over chunks of events (to stay in
cache) on the device and dtype of the momenta:

- eager (default): complex values packed into complex tensors, one torch kernel per
  complex operation; for the colour-summed squares of a batch of at least half a chunk
  the chunk runs as a graph recorded once with ``torch.jit.trace`` (the same kernels,
  without the Python between them: g g > t t~ g g spends ~30 ms of Python per chunk of
  512 events op by op, ~8 ms recorded);
- compiled (``compile=True`` or ``EVGEN_COMPILE=1``): the same code in real arithmetic,
  traced once per chunk size into an FX graph of aten operations (``make_fx``, at Python
  speed) and compiled by inductor (fused, vectorised C++ loops on CPU, Triton on CUDA),
  with the colour sum in the graph; inductor's on-disk cache keeps the build for the next
  process. Building takes minutes for large processes (g g > t t~ g g: ~20k graph nodes,
  ~11 CPU-minutes); if it fails, the kernel warns once and runs eager.

The amplitude of a vertex with legs w_1..w_n is computed as ``-i COUP J_k . w_k`` with the
current J_k of the leg whose helicity grid is largest (so J_k lives on the smallest grid),
and J_k is shared by all amplitudes with the same other legs (e.g. the two incoming gluons
of every s-channel diagram): MadGraph's ``VVV1_0(w0, w1, w8)`` becomes a contraction of
the current of (w0, w1) with w8. Values equal MadGraph's to rounding (float64, ~1e-14).

Example:
    >>> from processes.auto.process import AutoProcess
    >>> src = generate_source(AutoProcess.load("e+ e- > mu+ mu-").plan)
    >>> "def evaluate(" in src and "FFV1" in src
    True
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from processes.auto import helas_real
from processes.auto.helas_real import Cx, Wave

if TYPE_CHECKING:
    from processes.auto.plan import Plan

__all__ = [
    "CODEGEN_VERSION",
    "Reducer",
    "generate_source",
    "ProcessKernel",
    "compile_enabled",
    "keep_freed_memory",
]

#: Version of the generated code; bump when its layout changes.
CODEGEN_VERSION = 2

_log = logging.getLogger(__name__)

#: Elements (events x helicity rows) per chunk, eager and compiled alike (the compiled code
#: and the recorded eager graph pad the last chunk). Measured, eager recorded, 1 thread, per
#: CPU second: g g > t t~ g g 1.00e4 / 1.05e4 / 1.03e4 at 2^15 / 2^16 / 2^17, g g > t t~ g
#: 0.98e5 / 1.08e5 / 1.25e5 (run op by op, without the recorded graph and the allocator
#: setting of :func:`keep_freed_memory`, 2^15 was best).
_EAGER_ELEMENTS = 1 << 16
_COMPILED_ELEMENTS = 1 << 16
_CUDA_ELEMENTS = 1 << 22


#: Inductor settings for the generated graphs: fuse long chains of elementwise work into
#: one loop (the default caps a fused kernel at 64 nodes; g g > t t~ g g runs 1.4x faster
#: with 4096), and let the C++ compiler contract a * b + c into FMA instructions
#: (madgraph4gpu's builds do; it changes results at the 1e-16 level).
_INDUCTOR_OPTIONS: dict[str, Any] = {
    "max_fusion_size": 4096,
    "aggressive_fusion": True,
    "cpp.enable_floating_point_contract_flag": "on",
}


#: glibc's mallopt parameters (malloc.h): M_TRIM_THRESHOLD, M_MMAP_THRESHOLD.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_ALLOCATOR_TUNED = False


def keep_freed_memory() -> bool:
    """Ask the C allocator (glibc) to keep freed memory for reuse instead of returning it
    to the system: blocks up to 32 MB come from the heap, and the heap is not trimmed.

    A chunk of a large process allocates and frees hundreds of MB of tensors; by default
    glibc returns the top of the heap to the system when more than twice its (adaptive)
    mmap threshold is free, so the next chunk faults every page in again (g g > t t~ g g:
    ~12 page faults per event, 15% of its CPU time). This is what ``MALLOC_TRIM_THRESHOLD_``
    and ``MALLOC_MMAP_THRESHOLD_`` (or PyTorch's advice to preload jemalloc/tcmalloc) do
    for a whole process; the cost is that the process keeps its peak heap size. Done once
    per process, on Linux with glibc only; returns whether it was applied. Set the
    environment variable ``EVGEN_KEEP_FREED_MEMORY=0`` to leave the allocator alone.
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED:
        return True
    if os.environ.get("EVGEN_KEEP_FREED_MEMORY", "").strip().lower() in ("0", "false", "no"):
        return False
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024**2) and libc.mallopt(
            _M_TRIM_THRESHOLD, 2**31 - 1
        )
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = bool(ok)
    return _ALLOCATOR_TUNED


def compile_enabled() -> bool:
    """Whether ``torch.compile`` is on by default: environment variable ``EVGEN_COMPILE``
    set to 1/true/yes (off otherwise)."""
    return os.environ.get("EVGEN_COMPILE", "").strip().lower() in ("1", "true", "yes", "on")


# ----------------------------------------------------------------------------- runtime


def _rows(a: Cx, shape: tuple[int, ...], rows: Tensor | None) -> Cx:
    """An amplitude on the helicity grid ``shape`` (+ events) as (H, n) rows: flattened and,
    if ``rows`` is given, only those rows (packed values stay packed)."""
    n_full = math.prod(shape)

    def flat(x: Tensor) -> Tensor:
        x = x.expand(*shape, x.shape[-1]).reshape(n_full, x.shape[-1])
        return x if rows is None else x.index_select(0, rows)

    if a.z is not None:
        return Cx(z=flat(a.z))
    like = a.re if isinstance(a.re, Tensor) else a.im
    if not isinstance(like, Tensor):
        raise ValueError("an amplitude without any tensor part")
    re = a.re if isinstance(a.re, Tensor) else torch.full_like(like, a.re)
    im = a.im if isinstance(a.im, Tensor) else torch.full_like(like, a.im)
    return Cx(flat(re), flat(im))


def _accumulate_inplace(jamps: Tensor, a: Cx, terms: Sequence[tuple]) -> None:
    """jamps[g, k] += c a for each (g, k, c_re, c_im) in terms, in place (jamps complex
    (n_groups, n_basis, H, n); eager)."""
    z = a.packed().z
    for g, k, cr, ci in terms:
        jamps[g, k].add_(z, alpha=complex(cr, ci) if ci else cr)


def _accumulate(jamps: dict, a: Cx, terms: Sequence[tuple]) -> None:
    """The same without mutation (for compiled code): ``jamps[(g, k)]`` is a Cx."""
    for g, k, cr, ci in terms:
        term = a * complex(cr, ci)
        jamps[g, k] = term if (g, k) not in jamps else jamps[g, k] + term


def _close(
    name: str, k: int, j: Sequence[Cx], w: Wave, coef: complex, dest: Tensor, first: bool
) -> None:
    """dest (=, or += when not ``first``) coef * (J_k . w_k): an amplitude (times a colour
    coefficient) written straight into a full-grid complex tensor ``dest`` (a JAMP or a
    colour-row accumulator, shape SHAPE + (n,)), one torch kernel per Lorentz index
    (``addcmul_`` in place) instead of a new tensor per term and a separate add."""
    spin = helas_real.STRUCTURES[name].spins[k]
    metric = (1.0, -1.0, -1.0, -1.0) if spin == 3 else (1.0,) * len(j)
    written = not first
    for g, a, b in zip(metric, j, w.comps, strict=True):
        if a.is_zero or b.is_zero:
            continue
        x, fx = helas_real._operand(a)
        y, fy = helas_real._operand(b)
        c = helas_real._number(g * coef * fx * fy)
        if not isinstance(x, Tensor):
            x, y = y, x
        if not isinstance(x, Tensor):  # both numbers
            if written:
                dest.add_(c * x * y)
            else:
                dest.fill_(c * x * y)
        elif not isinstance(y, Tensor):
            c = helas_real._number(c * y)
            if written:
                dest.add_(x, alpha=c)
            else:
                torch.mul(x.expand_as(dest), c, out=dest)
        elif written:
            dest.addcmul_(x, y, value=c)
        else:
            if c != 1:  # the factor goes on the smaller operand
                if x.numel() <= y.numel():
                    x = x * c
                else:
                    y = y * c
            if torch.broadcast_shapes(x.shape, y.shape) == dest.shape:
                torch.mul(x, y, out=dest)
            else:
                dest.copy_(x * y)
        written = True
    if not written:
        dest.zero_()


def _scatter(src: Tensor, targets: Sequence[tuple], jamps: Tensor) -> None:
    """jamps[g, k] (=, or += when not first) c * src for each (g, k, c, first)."""
    for g, k, c, first in targets:
        if first:
            torch.mul(src, c, out=jamps[g, k])
        else:
            jamps[g, k].add_(src, alpha=c)


def _keep(amps: list | None, a: Cx, sign: int) -> None:
    """Collect an amplitude (fermion sign applied) when the caller asked for them."""
    if amps is not None:
        amps.append(a if sign > 0 else -a)


def _sum_waves(waves: Sequence[Wave]) -> Wave:
    """Off-shell wave functions of one leg from several terms of a vertex (same flow and
    propagator): the components add (:func:`processes.auto.helas.sum_currents`)."""
    comps = waves[0].comps
    for w in waves[1:]:
        comps = tuple(a + b for a, b in zip(comps, w.comps, strict=True))
    return Wave(waves[0].flow, comps)


def _sum_currents(currents: Sequence[Sequence[Cx]]) -> tuple[Cx, ...]:
    out = tuple(currents[0])
    for c in currents[1:]:
        out = tuple(a + b for a, b in zip(out, c, strict=True))
    return out


def _tables(p: Tensor, flows: list, masses: list, widths: list, vector: list, packed: bool):
    """Per-event quantities of every current at once: flows (sums of the external flows,
    as one matrix product), momenta P = -flow and propagator factors (+-i / D), each as a
    list of per-current values for the straight-line code."""
    n_ext, _, n = p.shape
    if not flows:
        return [], [], []
    matrix = torch.tensor(flows, dtype=p.dtype, device=p.device)
    f = (matrix @ p.reshape(n_ext, 4 * n)).reshape(len(flows), 4, n)
    re, im = helas_real.propagators(f, masses, widths, vector)
    flow_rows = [tuple(x.unbind(0)) for x in f.unbind(0)]
    momentum_rows = [tuple(x.unbind(0)) for x in (-f).unbind(0)]
    if packed:
        props = [Cx(z=z) for z in torch.complex(re, im).unbind(0)]
    else:
        props = [Cx(a, b) for a, b in zip(re.unbind(0), im.unbind(0), strict=True)]
    return flow_rows, momentum_rows, props


def _slot_table(p: Tensor, eta: Sequence[int], flows: Tensor) -> Tensor:
    """The flows of every slot, (n_ext + n_currents, 4, n): the external legs' eta * p,
    then the currents' (from :func:`_tables`)."""
    sign = torch.tensor(eta, dtype=p.dtype, device=p.device)[:, None, None]
    return torch.cat([p * sign, flows])


_INDEX_CACHE: dict[tuple, Tensor] = {}


def _index(rows: tuple[int, ...], device: torch.device) -> Tensor:
    key = (rows, str(device))
    if key not in _INDEX_CACHE:
        _INDEX_CACHE[key] = torch.tensor(rows, dtype=torch.int64, device=device)
    return _INDEX_CACHE[key]


def _hel_view(x: Tensor, perm: tuple[int, ...]) -> Tensor:
    """A wave function tensor with its helicity axes relabelled by ``perm`` (a view):
    axis a of the result is axis perm[a] of x; per-event tensors (n,) get the helicity
    axes (all of length 1)."""
    if x.ndim <= 1:
        return x.reshape(*(1,) * len(perm), x.numel() if x.ndim else 1)
    if x.ndim < len(perm) + 1:  # leading helicity axes of length 1 left out
        x = x.reshape(*(1,) * (len(perm) + 1 - x.ndim), *x.shape)
    return x.permute(*perm, len(perm))


def _stack_cx(values: Sequence[Cx], perms: Sequence[tuple[int, ...]]) -> Cx:
    """Cx values of the members of a group stacked on a new first axis, each with its
    helicity axes relabelled to the group's; numbers shared by all members stay numbers."""
    first = values[0]
    if all(v.is_constant for v in values) and len({v.constant() for v in values}) == 1:
        return first
    if all(v.z is not None for v in values):
        parts = [_hel_view(v.z, q) for v, q in zip(values, perms, strict=True)]
        return Cx(z=torch.stack(torch.broadcast_tensors(*parts)))
    if all(v.z is None for v in values):
        out = []
        for attr in ("_re", "_im"):
            xs = [getattr(v, attr) for v in values]
            if all(isinstance(x, float) for x in xs) and len(set(xs)) == 1:
                out.append(xs[0])
            elif all(isinstance(x, Tensor) for x in xs):
                parts = [_hel_view(x, q) for x, q in zip(xs, perms, strict=True)]
                out.append(torch.stack(torch.broadcast_tensors(*parts)))
            else:
                break
        else:
            return Cx(out[0], out[1])
    # mixed forms: pack every member (numbers broadcast to the others' shapes)
    like = next(x for v in values for x in (v.z, v._re, v._im) if isinstance(x, Tensor))
    real = like.real.dtype if like.is_complex() else like.dtype
    zs = []
    for v, q in zip(values, perms, strict=True):
        if v.z is not None:
            zs.append(_hel_view(v.z, q))
        else:
            re, im = (
                x if isinstance(x, Tensor) else torch.tensor(x, dtype=real, device=like.device)
                for x in (v._re, v._im)
            )
            re, im = torch.broadcast_tensors(re, im)
            zs.append(_hel_view(torch.complex(re.contiguous(), im.contiguous()), q))
    return Cx(z=torch.stack(torch.broadcast_tensors(*zs)))


def _unstack(x: helas_real.Real, s: int, inverse: tuple[int, ...], n_hel: int) -> helas_real.Real:
    if not isinstance(x, Tensor):
        return x
    if x.ndim == n_hel + 2:
        x = x[s]
    return x.permute(*inverse, n_hel) if x.ndim == n_hel + 1 else x


def _off_group(
    terms: Sequence[tuple[str, Cx]],
    k: int,
    inputs: Sequence[Sequence[Wave]],
    perms: Sequence[tuple[int, ...]],
    mass: float,
    width: float,
    rows: tuple[int, ...],
    slots: Sequence[tuple[int, ...]],
    table: tuple[Tensor, Tensor],
    flows: Sequence[tuple],
) -> list[Wave]:
    """Several off-shell currents of one kind (the same Lorentz terms, couplings, leg k,
    propagator and input shapes) in one set of torch kernels: the members' inputs are
    stacked on a new first axis, each with its helicity axes relabelled (``perms``) so
    that their legs line up with the first member's, evaluated by :func:`helas_real.
    offshell`, and handed back as views with their own axes. ``rows``: the members'
    current indices (rows of the propagator table), ``slots``: per input position the
    members' slots (rows of the flow table), ``flows``: the members' own flows."""
    slot_flows, props = table
    n = slot_flows.shape[-1]
    n_hel = len(perms[0])
    ones = (1,) * n_hel
    device = slot_flows.device

    def stacked_flow(index: tuple[int, ...]) -> tuple[Tensor, ...]:
        f = slot_flows.index_select(0, _index(index, device))
        return tuple(f.view(len(index), 4, *ones, n).unbind(1))

    n_ext = len(slot_flows) - len(props)
    flow = stacked_flow(tuple(n_ext + r for r in rows))
    prop = props.index_select(0, _index(rows, device)).view(len(rows), *ones, n)
    momentum_dependent = helas_real.STRUCTURES[terms[0][0]].momentum_dependent
    waves = []
    for position, members in enumerate(zip(*inputs, strict=True)):
        comps = tuple(
            _stack_cx([w.comps[c] for w in members], perms) for c in range(len(members[0].comps))
        )
        wave_flow = stacked_flow(slots[position]) if momentum_dependent else flow
        waves.append(Wave(wave_flow, comps))  # type: ignore[arg-type]
    momentum = tuple(-x for x in flow)
    propagator = Cx(z=prop)
    outs = [
        helas_real.offshell(
            lor,
            k,
            waves,
            cp,
            mass,
            width,
            flow=flow,
            momentum=momentum,
            propagator=propagator,
        )
        for lor, cp in terms
    ]
    out = outs[0] if len(outs) == 1 else _sum_waves(outs)
    result = []
    for s, perm in enumerate(perms):
        inverse = tuple(sorted(range(n_hel), key=lambda a: perm[a]))
        comps = tuple(
            Cx(z=_unstack(c.z, s, inverse, n_hel))
            if c.z is not None
            else Cx(_unstack(c._re, s, inverse, n_hel), _unstack(c._im, s, inverse, n_hel))
            for c in out.comps
        )
        result.append(Wave(flows[s], comps))
    return result


def _tables_grouped(
    p: Tensor, flows: list, masses: list, widths: list, vector: list, eta: list
) -> tuple:
    """:func:`_tables` (packed) and the tables themselves for :func:`_off_group`: the
    flows of every slot (:func:`_slot_table`) and the propagators (n_currents, n)."""
    n_ext, _, n = p.shape
    if not flows:
        return [], [], [], None
    matrix = torch.tensor(flows, dtype=p.dtype, device=p.device)
    f = (matrix @ p.reshape(n_ext, 4 * n)).reshape(len(flows), 4, n)
    re, im = helas_real.propagators(f, masses, widths, vector)
    z = torch.complex(re, im)
    flow_rows = [tuple(x.unbind(0)) for x in f.unbind(0)]
    momentum_rows = [tuple(x.unbind(0)) for x in (-f).unbind(0)]
    props = [Cx(z=row) for row in z.unbind(0)]
    return flow_rows, momentum_rows, props, (_slot_table(p, eta, f), z)


_RUNTIME: dict[str, Any] = {
    "_tables": _tables,
    "_tables_grouped": _tables_grouped,
    "_pack": helas_real.pack,
    "_i": helas_real.ixxxxx,
    "_o": helas_real.oxxxxx,
    "_v": helas_real.vxxxxx,
    "_s": helas_real.sxxxxx,
    "_off": helas_real.offshell,
    "_cur": helas_real.current,
    "_dot": helas_real.contract,
    "_sum_waves": _sum_waves,
    "_keep": _keep,
    "_sum_currents": _sum_currents,
    "_rows": _rows,
    "_acc_": _accumulate_inplace,
    "_acc": _accumulate,
    "_close": _close,
    "_off_group": _off_group,
    "_slot_table": _slot_table,
    "_scatter": _scatter,
    "_empty": torch.empty_like,
    "Cx": Cx,
}


# ----------------------------------------------------------------------------- codegen


def _slot_legs(plan: Plan) -> dict[int, frozenset[int]]:
    legs = {k: frozenset((k,)) for k in range(plan.n_external)}
    for c in plan.currents:
        legs[c.slot] = frozenset().union(*(legs[i] for i in c.inputs))
    return legs


def _grid(legs: frozenset[int], plan: Plan) -> int:
    return math.prod(len(plan.legs[k].helicities) for k in legs)


def _number(x: float) -> str:
    return repr(float(x))


def _colour_terms(plan: Plan, coeff: np.ndarray, j: int, sign: int) -> list[tuple]:
    """(group, basis element, re, im) of amplitude j's non-zero colour coefficients (fermion
    sign in)."""
    terms = []
    for col in range(coeff.shape[1]):
        cr, ci = coeff[j, col] * sign + 0.0  # + 0.0: no negative zeros
        if cr != 0.0 or ci != 0.0:
            terms.append((plan.order_groups[j], col, float(cr), float(ci)))
    return terms


def _colour_rows(plan: Plan, coeff: np.ndarray) -> list[tuple[list[tuple[int, complex]], list]]:
    """The amplitudes grouped by their colour row up to a phase: [(members, targets)] with
    members (amplitude, phase) and targets (group, basis element, coefficient), so that
    JAMP[g, k] += coefficient * sum_members phase * A. Amplitudes with no colour
    coefficient are left out; groups in the order of their first member."""
    rows: dict[tuple, tuple[list, list]] = {}
    for j, a in enumerate(plan.amplitudes):
        terms = _colour_terms(plan, coeff, j, a.sign)
        if not terms:
            continue
        phase = complex(terms[0][2], terms[0][3])
        targets = [(g, col, complex(cr, ci) / phase) for g, col, cr, ci in terms]
        key = tuple((g, col, round(c.real, 12), round(c.imag, 12)) for g, col, c in targets)
        if key not in rows:
            rows[key] = ([], targets)
        rows[key][0].append((j, phase))
    return list(rows.values())


def _current_units(plan: Plan, legs: dict[int, frozenset[int]]) -> list[list[int]]:
    """The currents grouped for stacked evaluation (:func:`_off_group`): same depth in the
    tree (so that all inputs exist), Lorentz terms and couplings, off-shell leg,
    propagator, and inputs with the same numbers of legs and helicities and of the same
    kind (external leg type, or current); in order of depth, then first member."""
    n_ext = plan.n_external
    depth = {s: 0 for s in range(n_ext)}

    def kind(s: int) -> tuple:
        if s < n_ext:
            leg = plan.legs[s]
            return ("external", leg.kind, leg.mass == 0.0, leg.helicities)
        return ("current",)

    groups: dict[tuple, list[int]] = {}
    for i, c in enumerate(plan.currents):
        depth[c.slot] = 1 + max(depth[s] for s in c.inputs)
        rest = frozenset(range(n_ext)).difference(*(legs[s] for s in c.inputs))
        key = (
            depth[c.slot],
            c.terms,
            c.offshell,
            c.mass,
            c.width,
            tuple(
                (kind(s), tuple(len(plan.legs[q].helicities) for q in sorted(legs[s])))
                for s in c.inputs
            ),
            tuple(len(plan.legs[q].helicities) for q in sorted(rest)),
        )
        groups.setdefault(key, []).append(i)
    return sorted(groups.values(), key=lambda unit: (depth[plan.currents[unit[0]].slot], unit[0]))


def _axis_map(
    reference: Sequence[int], inputs: Sequence[int], legs: dict[int, frozenset[int]], n: int
) -> tuple[int, ...]:
    """perm with perm[a] = the helicity axis of a group member whose role is that of axis
    a of the group's first member (its inputs' legs in order, then the other legs)."""
    ref = [q for s in reference for q in sorted(legs[s])]
    mine = [q for s in inputs for q in sorted(legs[s])]
    ref += sorted(set(range(n)) - set(ref))
    mine += sorted(set(range(n)) - set(mine))
    perm = [0] * n
    for a, b in zip(ref, mine, strict=True):
        perm[a] = b
    return tuple(perm)


def _complex_literal(c: complex) -> str:
    c = complex(c)
    return repr(c.real + 0.0) if c.imag == 0 else repr(complex(c.real + 0.0, c.imag + 0.0))


def generate_source(plan: Plan, *, inplace: bool = True, grouped: bool | None = None) -> str:
    """The Python source of ``evaluate(p, hel, c, rows, jamps, amps)`` for ``plan``.

    The function takes the external momenta ``p`` ((n_ext, 4, n): per leg (E, px, py, pz),
    events last, GeV), the helicity values ``hel`` per leg (float tensors shaped for the
    leg's axis), the couplings ``c`` (name -> :class:`Cx`), the kept helicity rows
    ``rows`` (int64 indices into the full grid, or None for all), the JAMP accumulator
    ``jamps`` and a list ``amps`` to which each amplitude is appended (fermion sign in) or
    None. With ``inplace`` (eager) the external wave functions are packed into complex
    tensors and the JAMPs are one complex tensor (n_groups, n_basis, H, n) added to in
    place; otherwise (``torch.compile``) everything stays in real pairs and the JAMPs are a
    dict {(group, k): Cx} built without mutation.

    ``grouped`` (default: ``inplace``; eager only) is the fast JAMP-only code: amplitudes
    with the same colour row up to a phase are summed as they are closed (each closing
    ``addcmul_`` goes straight into a JAMP or the row's accumulator), and each sum enters
    its JAMPs once. ``jamps`` is then an uninitialised complex tensor (n_groups, n_basis,
    *SHAPE, n) on the full helicity grid that the code fills completely; ``rows`` and
    ``amps`` are not used (the caller selects rows from the JAMPs).
    """
    grouped = inplace if grouped is None else grouped
    if grouped and not inplace:
        raise ValueError("grouped code is eager (inplace) only")
    legs = _slot_legs(plan)
    grid = {slot: _grid(ls, plan) for slot, ls in legs.items()}
    shape = tuple(len(leg.helicities) for leg in plan.legs)
    coeff = np.asarray(plan.colour_coefficients, dtype=np.float64).reshape(
        len(plan.amplitudes), -1, 2
    )
    lines = [
        f"# Generated by processes.auto.codegen (version {CODEGEN_VERSION}) for {plan.name!r}",
        f"# plan {plan.key}: {len(plan.currents)} currents, {len(plan.amplitudes)} amplitudes,"
        f" {coeff.shape[1]} colour basis elements, {len(plan.helicities)} of {math.prod(shape)}"
        " helicity combinations",
        f"SHAPE = {shape!r}",
        "",
        "",
        "def evaluate(p, hel, c, rows, jamps, amps):",
    ]
    body: list[str] = ["pk = [tuple(x.unbind(0)) for x in p.unbind(0)]"]
    wrap = ("_pack(", ")") if inplace else ("", "")
    for k, leg in enumerate(plan.legs):
        if leg.kind == "s":
            call = f"_s(pk[{k}], {leg.sign})"
        elif leg.kind == "v":
            transverse = all(abs(h) == 1 for h in leg.helicities)
            call = f"_v(pk[{k}], {_number(leg.mass)}, hel[{k}], {leg.sign}, {transverse})"
        else:
            call = f"_{leg.kind}(pk[{k}], {_number(leg.mass)}, hel[{k}], {leg.sign})"
        body.append(f"w{k} = {wrap[0]}{call}{wrap[1]}  # {leg.pdg}")
    for name in plan.couplings:
        body.append(f"{name} = c[{name!r}]")
    # -i COUP of every coupling an amplitude uses
    amp_couplings = sorted({cp for a in plan.amplitudes for _, cp in a.terms})
    for name in amp_couplings:
        body.append(f"f_{name} = -{name}.times_i()")

    # the order in which amplitudes are closed: grouped by colour row, or the plan's
    rows_of_colour = _colour_rows(plan, coeff) if grouped else []
    if grouped:
        order = [j for members, _ in rows_of_colour for j, _ in members]
    else:
        order = list(range(len(plan.amplitudes)))

    # the currents in units evaluated together: alone, or (grouped) stacked with others of
    # the same kind whose inputs are ready (same depth in the diagram tree)
    units = _current_units(plan, legs) if grouped else [[i] for i in range(len(plan.currents))]

    # last use of every slot, to free wave functions
    uses: dict[int, int] = {}
    for u, unit in enumerate(units):
        for i in unit:
            for s in plan.currents[i].inputs:
                uses[s] = u
    end = len(units)
    for position, j in enumerate(order):
        for s in plan.amplitudes[j].inputs:
            uses[s] = end + position

    def free(after: int, inputs: Sequence[int], extra: Sequence[str] = ()) -> None:
        dead = [f"w{s}" for s in dict.fromkeys(inputs) if uses.get(s) == after]
        dead += list(extra)
        if dead:
            body.append(f"del {', '.join(dead)}")

    body.append("# off-shell currents: flows, momenta and propagators of all of them first")
    eta = []
    for leg in plan.legs:
        eta.append(-leg.sign if leg.kind == "i" else leg.sign)
    flows = [
        [eta[k] if k in legs[c.slot] else 0 for k in range(plan.n_external)] for c in plan.currents
    ]
    spins = {name: helas_real.STRUCTURES[name].spins for c in plan.currents for name, _ in c.terms}
    vector = [spins[c.terms[0][0]][c.offshell] == 3 for c in plan.currents]
    tables = (
        f"{[c.mass for c in plan.currents]!r}, {[c.width for c in plan.currents]!r}, {vector!r}"
    )
    if grouped:
        body.append(f"F, P, PROP, TAB = _tables_grouped(p, {flows!r}, {tables}, {eta!r})")
    else:
        body.append(f"F, P, PROP = _tables(p, {flows!r}, {tables}, {inplace})")
    for u, unit in enumerate(units):
        call = plan.currents[unit[0]]
        if len(unit) == 1:
            i = unit[0]
            args = ", ".join(f"w{s}" for s in call.inputs)
            calls = [
                f"_off({lor!r}, {call.offshell}, ({args},), {cp}, {_number(call.mass)}, "
                f"{_number(call.width)}, flow=F[{i}], momentum=P[{i}], propagator=PROP[{i}])"
                for lor, cp in call.terms
            ]
            value = calls[0] if len(calls) == 1 else f"_sum_waves(({', '.join(calls)},))"
            body.append(f"w{call.slot} = {value}")
        else:
            members = [plan.currents[i] for i in unit]
            terms = "(" + "".join(f"({lor!r}, {cp}), " for lor, cp in call.terms) + ")"
            inputs = "(" + "".join(f"({', '.join(f'w{s}' for s in m.inputs)},), " for m in members)
            perms = tuple(_axis_map(call.inputs, m.inputs, legs, plan.n_external) for m in members)
            slots = tuple(tuple(m.inputs[q] for m in members) for q in range(len(call.inputs)))
            outs = ", ".join(f"w{m.slot}" for m in members)
            body.append(
                f"{outs} = _off_group({terms}, {call.offshell}, {inputs}), {perms!r}, "
                f"{_number(call.mass)}, {_number(call.width)}, {tuple(unit)!r}, {slots!r}, TAB, "
                f"({''.join(f'F[{i}], ' for i in unit)}))"
            )
        free(u, [s for i in unit for s in plan.currents[i].inputs])

    body.append("# amplitudes: the current of one leg contracted with that leg's wave function")
    # choose the contracted leg and share currents between amplitudes
    plans: dict[int, tuple[int, tuple[int, ...], str]] = {}
    for j, a in enumerate(plan.amplitudes):
        grids = [grid[s] for s in a.inputs]
        k = max(range(len(a.inputs)), key=lambda i: (grids[i], i))
        others = tuple(s for i, s in enumerate(a.inputs) if i != k)
        plans[j] = (k, others, repr(a.terms))
    key_last: dict[tuple, int] = {}
    for position, j in enumerate(order):
        key_last[plans[j]] = position
    names: dict[tuple, str] = {}
    counter = itertools.count()

    def current_of(j: int) -> tuple[str, int]:
        """Emit (once) the current that amplitude j contracts; its name and leg."""
        a = plan.amplitudes[j]
        k, others, _ = key = plans[j]
        if key not in names:
            names[key] = f"j{next(counter)}"
            args = ", ".join(f"w{s}" for s in others)
            parts = [f"_cur({lor!r}, {k}, ({args},), f_{cp})" for lor, cp in a.terms]
            value = parts[0] if len(parts) == 1 else f"_sum_currents(({', '.join(parts)},))"
            body.append(f"{names[key]} = {value}")
        return names[key], k

    def release(position: int, j: int) -> None:
        key = plans[j]
        dead_current = [names.pop(key)] if key_last[key] == position else []
        free(end + position, plan.amplitudes[j].inputs, dead_current)

    if not grouped:
        for position, j in enumerate(order):
            a = plan.amplitudes[j]
            name, k = current_of(j)
            lor0 = a.terms[0][0]
            body.append(
                f"a = _rows(_dot({lor0!r}, {k}, {name}, w{a.inputs[k]}), SHAPE, rows)"
                f"  # diagram {a.diagram + 1}"
            )
            body.append(f"_keep(amps, a, {a.sign})")
            terms = _colour_terms(plan, coeff, j, a.sign)
            if terms:
                acc = "_acc_(jamps, a" if inplace else "_acc(jamps, a"
                body.append(f"{acc}, {tuple(terms)!r})")
            release(position, j)
    else:
        written: set[tuple[int, int]] = set()
        position = 0
        # one accumulator for every colour row, reused so that it stays in cache; the
        # JAMPs (n_basis of them, larger than the cache) are touched once per row
        body.append("acc = _empty(jamps[0, 0])")
        for members, targets in rows_of_colour:
            first = True
            for j, phase in members:
                a = plan.amplitudes[j]
                name, k = current_of(j)
                body.append(
                    f"_close({a.terms[0][0]!r}, {k}, {name}, w{a.inputs[k]}, "
                    f"{_complex_literal(phase)}, acc, {first})"
                    f"  # diagram {a.diagram + 1}"
                )
                first = False
                release(position, j)
                position += 1
            spec = ", ".join(
                f"({g}, {col}, {_complex_literal(c)}, {(g, col) not in written})"
                for g, col, c in targets
            )
            body.append(f"_scatter(acc, ({spec},), jamps)")
            written.update((g, col) for g, col, _ in targets)
        for g in range(len(plan.interference)):
            for col in range(coeff.shape[1]):
                if (g, col) not in written:
                    body.append(f"jamps[{g}, {col}].zero_()")
    body.append("return None")
    lines += ["    " + line for line in body]
    return "\n".join(lines) + "\n"


def _load(source: str, name: str) -> Callable[..., None]:
    namespace: dict[str, Any] = dict(_RUNTIME)
    code = compile(source, f"<evgen generated: {name}>", "exec")
    exec(code, namespace)  # noqa: S102 (our own generated code)
    return namespace["evaluate"]


# ----------------------------------------------------------------------------- kernel


#: A per-chunk reduction: (JAMPs (n_groups, n_basis, H, n) complex, amplitudes (n_amp, H,
#: n) complex or None) -> a tensor with the chunk's n events on its last axis.
Reducer = Callable[[Tensor, "Tensor | None"], Tensor]


class ProcessKernel:
    """Runs a plan's generated code over batches of events.

    Args:
        plan: the process plan.
        compile: run the per-chunk function compiled by ``torch.compile`` (default:
            :func:`compile_enabled`); falls back to eager, once and for good, if that fails.
        chunk: events per chunk (default: ~2^16 helicity rows x events on CPU, 2^22 on
            CUDA).
        trace: run the eager code, for the colour-summed squares of batches of at least
            half a chunk, as a graph recorded once per chunk size, device, dtype and
            coupling layout with ``torch.jit.trace`` (the same torch kernels in the same
            order, so the same numbers to the last bit, without the Python work between
            them: g g > t t~ g g spends ~30 ms of Python per chunk eager, ~8 ms traced;
            recording takes seconds). Falls back to eager, once and for good, if tracing
            fails. ``torch.jit.trace`` is deprecated in recent torch (it warns; the
            warning is silenced here); nothing else in torch runs a recorded graph
            without Python between the kernels on CPU.

    The helicity rows are the plan's non-vanishing combinations unless a call asks for
    others (any subset of the product of the legs' helicities).

    Attributes:
        source: the generated eager code (packed complex, JAMPs accumulated in place).
    """

    def __init__(
        self,
        plan: Plan,
        *,
        compile: bool | None = None,
        chunk: int | None = None,
        trace: bool = True,
    ):
        self.plan = plan
        self.shape = tuple(len(leg.helicities) for leg in plan.legs)
        self.n_full = math.prod(self.shape)
        self.source = generate_source(plan, inplace=True)
        self._eager = _load(self.source, plan.name)
        self._amplitude_fn: Callable[..., None] | None = None
        self._buffers: dict[tuple, Tensor] = {}
        self._functional_fn: Callable[..., None] | None = None
        self.compile = compile_enabled() if compile is None else bool(compile)
        self._chunk = chunk
        self._compiled: dict[tuple, Callable] = {}
        self._failed = False
        self.trace = bool(trace)
        keep_freed_memory()
        self._traced: dict[tuple, Callable] = {}
        self._trace_failed = False
        self._device_cache: dict[tuple, Any] = {}
        self.n_groups = len(plan.interference)
        self.n_basis = len(plan.colour_matrix)

    # ---------------------------------------------------------------- helpers
    def rows_of(self, helicities: Sequence[Sequence[int]]) -> list[int] | None:
        """Row indices into the full helicity grid (row-major over the legs, as
        ``itertools.product``) of these combinations; None if one is not on the grid."""
        strides = [math.prod(self.shape[k + 1 :]) for k in range(len(self.shape))]
        out = []
        for h in helicities:
            index = 0
            for k, value in enumerate(h):
                allowed = self.plan.legs[k].helicities
                if value not in allowed:
                    return None
                index += allowed.index(value) * strides[k]
            out.append(index)
        return out

    def _constants(self, device: torch.device, dtype: torch.dtype, rows: tuple[int, ...]):
        key = (str(device), dtype, rows)
        if key not in self._device_cache:
            n = len(self.shape)
            hel = []
            for k, leg in enumerate(self.plan.legs):
                view = [1] * (n + 1)
                view[k] = len(leg.helicities)
                hel.append(torch.tensor(leg.helicities, dtype=dtype, device=device).reshape(view))
            index = (
                None
                if rows == tuple(range(self.n_full))
                else torch.tensor(rows, dtype=torch.int64, device=device)
            )
            self._device_cache[key] = (hel, index)
        return self._device_cache[key]

    def chunk_size(self, device: torch.device, n_rows: int, compiled: bool) -> int:
        """Events per chunk for ``n_rows`` helicity rows."""
        if self._chunk is not None:
            return self._chunk
        if device.type == "cuda":
            elements = _CUDA_ELEMENTS
        else:
            elements = _COMPILED_ELEMENTS if compiled else _EAGER_ELEMENTS
        return max(16, elements // max(1, n_rows))

    # ---------------------------------------------------------------- evaluation
    def _chunk_eager(
        self,
        p: Tensor,
        couplings: Mapping[str, Cx],
        hel,
        index,
        want_amps: bool,
        reuse: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """JAMPs (n_groups, n_basis, H, n) and, if asked for, amplitudes of one chunk;
        with ``reuse`` the JAMPs may live in the kernel's workspace (valid until the next
        chunk)."""
        n = p.shape[-1]
        cdtype = torch.complex128 if p.dtype == torch.float64 else torch.complex64
        if not want_amps:
            # the grouped code fills JAMPs on the full helicity grid; rows are picked after
            if reuse:
                jamps = self._workspace(p.device, cdtype, n)
            else:
                shape = (self.n_groups, self.n_basis, *self.shape, n)
                jamps = torch.empty(shape, dtype=cdtype, device=p.device)
            self._eager(p, hel, couplings, None, jamps, None)
            jamps = jamps.reshape(self.n_groups, self.n_basis, self.n_full, n)
            if index is not None:
                jamps = jamps.index_select(2, index)
            return jamps, None
        rows = self.n_full if index is None else index.shape[0]
        jamps = torch.zeros(self.n_groups, self.n_basis, rows, n, dtype=cdtype, device=p.device)
        amps: list = []
        if self._amplitude_fn is None:
            self._amplitude_fn = _load(self.amplitude_source, self.plan.name)
        self._amplitude_fn(p, hel, couplings, index, jamps, amps)
        like = p.new_zeros(rows, n)
        amplitudes = torch.stack([a.to_complex(like) for a in amps], 0)
        return jamps, amplitudes

    def _workspace(self, device: torch.device, dtype: torch.dtype, n: int) -> Tensor:
        """The JAMP buffer of a chunk of n events (n_groups, n_basis, *shape, n), kept
        between chunks and calls: allocating and freeing it (the largest tensor, tens of
        MB) per chunk makes the C allocator hand the memory back to the system and fault
        it in again page by page (measured: 15% of the time of g g > t t~ g g)."""
        key = (str(device), dtype, threading.get_ident())  # one per thread
        buf = self._buffers.get(key)
        size = self.n_groups * self.n_basis * self.n_full * n
        if buf is None or buf.numel() < size:
            buf = torch.empty(size, dtype=dtype, device=device)
            self._buffers[key] = buf
        return buf[:size].view(self.n_groups, self.n_basis, *self.shape, n)

    @property
    def amplitude_source(self) -> str:
        """The generated eager code that keeps every amplitude (for SDE weights)."""
        return generate_source(self.plan, inplace=True, grouped=False)

    @property
    def functional_source(self) -> str:
        """The generated code for ``torch.compile`` (real pairs, no mutation)."""
        return generate_source(self.plan, inplace=False)

    def _chunk_functional(
        self, p: Tensor, couplings: dict, hel, index, matrix: Tensor | None = None
    ) -> Tensor:
        """A pure function of tensors (for compilation): the JAMPs as reals (2, G, K, H, n),
        or with the colour ``matrix`` the colour-summed squares (H, n)."""
        n = p.shape[-1]
        c = {name: Cx(re, im) for name, (re, im) in couplings.items()}
        jamps: dict = {}
        if self._functional_fn is None:
            self._functional_fn = _load(self.functional_source, self.plan.name)
        self._functional_fn(p, hel, c, index, jamps, None)
        rows = self.n_full if index is None else index.shape[0]
        zero = p.new_zeros(rows, n)
        parts = []
        for part in ("re", "im"):
            for g in range(self.n_groups):
                for k in range(self.n_basis):
                    x = getattr(jamps[g, k], part) if (g, k) in jamps else 0.0
                    parts.append(x if isinstance(x, Tensor) else zero + x)
        stacked = torch.stack(parts).reshape(2, self.n_groups, self.n_basis, rows, n)
        if matrix is None:
            return stacked
        # (re, im) as one real (G, K, 2 H n) block: Re(conj(J_g) C J_f) = v_g . C v_f
        views = stacked.permute(1, 2, 0, 3, 4).reshape(self.n_groups, self.n_basis, -1)
        return self._quadratic_form(views, matrix).reshape(2, rows, n).sum(0)

    def _quadratic_form(self, views: Tensor, matrix: Tensor) -> Tensor:
        """sum_{g,f} I_gf sum_kl v_gk C_kl v_fl over the real (G, K, m) ``views``: (m,)."""
        inter = self.plan.interference
        if self.n_groups == 1 or all(all(x == 1 for x in row) for row in inter):
            v = views[0] if self.n_groups == 1 else views.sum(0)
            return (v * (matrix @ v)).sum(0)
        total = None
        for g in range(self.n_groups):
            cv = matrix @ views[g]
            for f in range(self.n_groups):
                if inter[g][f]:
                    term = (views[f] * cv).sum(0)
                    total = term if total is None else total + term
        return total if total is not None else views.new_zeros(views.shape[-1])

    def colour_sum(self, jamps: Tensor) -> Tensor:
        """The colour-summed squares (H, m) of JAMPs (G, K, H, m) complex (one real
        matrix product with the colour matrix on the (re, im) view)."""
        n_groups, n_basis, rows, m = jamps.shape
        matrix = self.plan.tensors(jamps.device)["matrix"].to(jamps.real.dtype)
        views = torch.view_as_real(jamps).reshape(n_groups, n_basis, rows * m * 2)
        return self._quadratic_form(views, matrix).reshape(rows, m, 2).sum(-1)

    def run(
        self,
        momenta: Tensor,
        couplings: Mapping[str, Cx],
        reduce: Reducer | None = None,
        helicities: Sequence[Sequence[int]] | None = None,
        *,
        want_amplitudes: bool = False,
    ) -> Tensor:
        """Evaluate chunk by chunk and reduce each chunk.

        Args:
            momenta: (n, n_ext, 4) GeV, float64.
            couplings: name -> :class:`Cx` (tensor parts (n,) per event, or numbers).
            reduce: maps a chunk's JAMPs (n_groups, n_basis, H, m) complex and amplitudes
                (n_amplitudes, H, m) complex (fermion signs in; None unless
                ``want_amplitudes``) to a tensor whose last axis is the chunk's m events.
                None: the colour-summed squares (H, m) (:meth:`colour_sum`), which the
                compiled code computes inside its graph.
            helicities: the helicity combinations (rows); default the plan's.
            want_amplitudes: pass the amplitudes to ``reduce`` (always eager).

        Returns:
            The chunks' reductions concatenated along the last (event) axis.
        """
        plan = self.plan
        hels = plan.helicities if helicities is None else [tuple(h) for h in helicities]
        rows = self.rows_of(hels)
        if rows is None:
            raise ValueError(f"{plan.name}: a helicity combination is not on the legs' grid")
        hel, index = self._constants(momenta.device, momenta.dtype, tuple(rows))
        n = momenta.shape[0]
        p_all = momenta.permute(1, 2, 0)  # (n_ext, 4, n): events last
        # compiled: the colour-summed squares (the hot path); JAMPs for other reductions
        # (colour flows) and amplitudes (SDE weights) come from the eager code
        compiled = self.compile and reduce is None and not self._failed and n > 0
        chunk = self.chunk_size(momenta.device, len(rows), compiled)
        if compiled and n < chunk // 2:
            # the compiled function has one fixed chunk size: a batch this much smaller
            # would be mostly padding, and the eager code is faster for it
            compiled = False
            chunk = self.chunk_size(momenta.device, len(rows), False)
        traced = (
            not compiled
            and self.trace
            and not self._trace_failed
            and reduce is None
            and not want_amplitudes
            and n >= chunk // 2
        )
        outs = []
        for start in range(0, max(n, 1), chunk):
            stop = min(n, start + chunk)
            p = p_all[..., start:stop].contiguous()
            c = {name: _slice(v, start, stop) for name, v in couplings.items()}
            if compiled:
                out = self._run_compiled(p, c, hel, index, chunk)
            elif traced:
                out = self._run_traced(p, c, hel, index, chunk)
            else:
                out = None
            if out is None:
                jamps, amplitudes = self._chunk_eager(
                    p, c, hel, index, want_amplitudes, reuse=reduce is None
                )
                out = self.colour_sum(jamps) if reduce is None else reduce(jamps, amplitudes)
            outs.append(out)
        return torch.cat(outs, -1) if len(outs) > 1 else outs[0]

    def _inputs(self, p: Tensor, c: dict, chunk: int) -> tuple[list[Tensor], list, list[str]]:
        """A chunk's momenta and coupling tensors padded to ``chunk`` events (one graph
        serves every chunk), the coupling layout (per part: None for a tensor input, or
        its constant value) and the coupling names in input order."""
        n = p.shape[-1]
        pad = chunk - n
        if pad:
            p = torch.cat([p, p[..., :1].expand(*p.shape[:-1], pad)], -1)
        names = sorted(c)
        inputs: list[Tensor] = [p]
        layout: list = []
        for name in names:
            for x in (c[name].re, c[name].im):
                if isinstance(x, Tensor):
                    x = x.expand(n) if x.ndim == 0 else x
                    if pad:
                        x = torch.cat([x, x[:1].expand(pad)])
                    inputs.append(x.contiguous())
                    layout.append(None)
                else:
                    layout.append(float(x))
        return inputs, layout, names

    def _run_traced(self, p: Tensor, c: dict, hel, index, chunk: int) -> Tensor | None:
        """The chunk's colour-summed squares (H, m) through the recorded graph of the
        eager code (padded to ``chunk`` events); None if recording failed."""
        if self._trace_failed:
            return None
        n = p.shape[-1]
        inputs, layout, names = self._inputs(p, c, chunk)
        cdtype = torch.complex128 if p.dtype == torch.float64 else torch.complex64
        buffer = self._workspace(p.device, cdtype, chunk)
        key = (
            str(p.device),
            p.dtype,
            chunk,
            tuple(names),
            tuple(layout),
            None if index is None else tuple(index.tolist()),
        )
        try:
            if key not in self._traced:
                self._traced[key] = self._record(names, layout, hel, index, chunk, inputs, buffer)
            out = self._traced[key](buffer, *inputs)
        except Exception as err:  # noqa: BLE001 (any tracing failure: run eager instead)
            self._trace_failed = True
            _log.warning(
                "%s: tracing failed (%s: %s); running eager",
                self.plan.name,
                type(err).__name__,
                err,
            )
            return None
        return out[..., :n]

    def _record(
        self, names: list[str], layout: list, hel, index, chunk: int, inputs, buffer
    ) -> Callable:
        """Record the eager chunk (JAMPs into ``buffer``, rows, colour sum) as a TorchScript
        graph with ``torch.jit.trace``. Every Python branch in the generated code and in
        :mod:`.helas_real` depends on shapes and on which values are numbers, never on
        tensor values, so one recording holds for every chunk with this key."""
        G, K = self.n_groups, self.n_basis

        def chunk_fn(buf: Tensor, p: Tensor, *parts: Tensor) -> Tensor:
            it, lay = iter(parts), iter(layout)
            couplings = {}
            for name in names:
                re, im = next(lay), next(lay)
                couplings[name] = Cx(next(it) if re is None else re, next(it) if im is None else im)
            jamps = buf.view(G, K, *self.shape, chunk)
            self._eager(p, hel, couplings, None, jamps, None)
            jamps = jamps.reshape(G, K, self.n_full, chunk)
            if index is not None:
                jamps = jamps.index_select(2, index)
            return self.colour_sum(jamps)

        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(chunk_fn, (buffer, *inputs), check_trace=False)
        _log.info(
            "%s: recorded the eager code for %d events in %.1f s",
            self.plan.name,
            chunk,
            time.perf_counter() - started,
        )
        return traced

    def _run_compiled(self, p: Tensor, c: dict, hel, index, chunk: int) -> Tensor | None:
        """The chunk through the compiled function (padded to ``chunk`` events so that one
        compilation serves every chunk): the colour-summed squares (H, m); None if
        compilation failed."""
        if self._failed:
            return None
        n = p.shape[-1]
        pad = chunk - n
        if pad:
            p = torch.cat([p, p[..., :1].expand(*p.shape[:-1], pad)], -1)
        names = sorted(c)
        inputs: list[Tensor] = [p]
        layout = []  # per coupling part: None (a tensor input) or its constant value
        for name in names:
            for x in (c[name].re, c[name].im):
                if isinstance(x, Tensor):
                    x = x.expand(n) if x.ndim == 0 else x
                    if pad:
                        x = torch.cat([x, x[:1].expand(pad)])
                    inputs.append(x.contiguous())
                    layout.append(None)
                else:
                    layout.append(float(x))
        inputs += list(hel)
        if index is not None:
            inputs.append(index)
        inputs.append(self.plan.tensors(p.device)["matrix"].to(p.dtype))
        key = (
            str(p.device),
            p.dtype,
            torch.get_num_threads(),  # inductor's CPU kernels are built for a thread count
            chunk,
            tuple(names),
            tuple(layout),
            len(hel),
            None if index is None else tuple(index.tolist()),
        )
        try:
            if key not in self._compiled:
                self._compiled[key] = self._compile(
                    names, layout, len(hel), index is not None, inputs
                )
            out = self._compiled[key](*inputs)[0]
        except Exception as err:  # noqa: BLE001 (any compiler failure: run eager instead)
            self._failed = True
            _log.warning(
                "%s: compilation failed (%s: %s); running eager",
                self.plan.name,
                type(err).__name__,
                err,
            )
            return None
        return out[..., :n]

    def _compile(
        self,
        names: list[str],
        layout: list,
        n_hel: int,
        has_index: bool,
        inputs: list[Tensor],
    ) -> Callable:
        """Trace the functional chunk into an FX graph of aten operations (``make_fx``:
        plain Python speed, no guards) and compile it with inductor (one C++ function
        with OpenMP/SIMD loops on CPU, Triton kernels on CUDA). ``standalone_compile``
        (torch >= 2.7) keeps the result in inductor's on-disk FX graph cache, so another
        process with the same process and chunk size loads it instead of compiling."""
        from torch.fx.experimental.proxy_tensor import make_fx

        def flat(p: Tensor, *rest: Tensor) -> tuple[Tensor]:
            it = iter(rest)
            couplings = {}
            parts = iter(layout)
            for name in names:
                re, im = next(parts), next(parts)
                couplings[name] = (next(it) if re is None else re, next(it) if im is None else im)
            hel = [next(it) for _ in range(n_hel)]
            index = next(it) if has_index else None
            matrix = next(it)
            return (self._chunk_functional(p, couplings, hel, index, matrix),)

        started = time.perf_counter()
        graph = make_fx(flat)(*inputs)
        standalone = getattr(torch._inductor, "standalone_compile", None)
        from torch._inductor import config as inductor_config

        with inductor_config.patch(_INDUCTOR_OPTIONS):
            if standalone is not None:
                compiled = standalone(graph, inputs, dynamic_shapes="from_example_inputs")
            else:  # older torch: no cache across processes
                compiled = torch._inductor.compile(graph, inputs)
        _log.info(
            "%s: compiled %d graph nodes in %.1f s",
            self.plan.name,
            len(graph.graph.nodes),
            time.perf_counter() - started,
        )
        return compiled


def _slice(v: Cx, start: int, stop: int) -> Cx:
    def part(x: helas_real.Real) -> helas_real.Real:
        if isinstance(x, Tensor) and x.ndim > 0:
            return x[start:stop]
        return x

    return Cx(part(v.re), part(v.im))
