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

:class:`ProcessKernel` runs the generated function over chunks of events (to stay in
cache) on the device and dtype of the momenta:

- eager (default): complex values packed into complex tensors, one torch kernel per
  complex operation, JAMPs accumulated in place;
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

import logging
import math
import os
import time
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
]

#: Version of the generated code; bump when its layout changes.
CODEGEN_VERSION = 1

_log = logging.getLogger(__name__)

#: Elements (events x helicity rows) per chunk: eager keeps a full-grid tensor near 256 kB
#: (L2-resident); compiled code runs a larger fixed chunk (padding the last one).
_EAGER_ELEMENTS = 1 << 15
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


_RUNTIME: dict[str, Any] = {
    "_tables": _tables,
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


def generate_source(plan: Plan, *, inplace: bool = True) -> str:
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
    """
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

    # last use of every slot, to free wave functions
    uses: dict[int, int] = {}
    for i, call in enumerate(plan.currents):
        for s in call.inputs:
            uses[s] = i
    end = len(plan.currents)
    for j, a in enumerate(plan.amplitudes):
        for s in a.inputs:
            uses[s] = end + j

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
    body.append(
        f"F, P, PROP = _tables(p, {flows!r}, {[c.mass for c in plan.currents]!r}, "
        f"{[c.width for c in plan.currents]!r}, {vector!r}, {inplace})"
    )
    for i, call in enumerate(plan.currents):
        args = ", ".join(f"w{s}" for s in call.inputs)
        calls = [
            f"_off({lor!r}, {call.offshell}, ({args},), {cp}, {_number(call.mass)}, "
            f"{_number(call.width)}, flow=F[{i}], momentum=P[{i}], propagator=PROP[{i}])"
            for lor, cp in call.terms
        ]
        value = calls[0] if len(calls) == 1 else f"_sum_waves(({', '.join(calls)},))"
        body.append(f"w{call.slot} = {value}")
        free(i, call.inputs)

    body.append("# amplitudes: the current of one leg contracted with that leg's wave function")
    # choose the contracted leg and share currents between amplitudes
    plans: list[tuple[int, tuple[int, ...], str]] = []
    for a in plan.amplitudes:
        grids = [grid[s] for s in a.inputs]
        k = max(range(len(a.inputs)), key=lambda i: (grids[i], i))
        others = tuple(s for i, s in enumerate(a.inputs) if i != k)
        plans.append((k, others, repr(a.terms)))
    key_last: dict[tuple, int] = {}
    for j, (k, others, terms) in enumerate(plans):
        key_last[(k, others, terms)] = j
    names: dict[tuple, str] = {}
    for j, a in enumerate(plan.amplitudes):
        k, others, terms = plans[j]
        key = (k, others, terms)
        if key not in names:
            names[key] = f"j{len(names)}"
            args = ", ".join(f"w{s}" for s in others)
            parts = [f"_cur({lor!r}, {k}, ({args},), f_{cp})" for lor, cp in a.terms]
            value = parts[0] if len(parts) == 1 else f"_sum_currents(({', '.join(parts)},))"
            body.append(f"{names[key]} = {value}")
        lor0 = a.terms[0][0]
        body.append(
            f"a = _rows(_dot({lor0!r}, {k}, {names[key]}, w{a.inputs[k]}), SHAPE, rows)"
            f"  # diagram {a.diagram + 1}"
        )
        body.append(f"_keep(amps, a, {a.sign})")
        terms = []
        for col in range(coeff.shape[1]):
            cr, ci = coeff[j, col] * a.sign + 0.0  # + 0.0: no negative zeros
            if cr != 0.0 or ci != 0.0:
                terms.append((plan.order_groups[j], col, float(cr), float(ci)))
        if terms:
            acc = "_acc_(jamps, a" if inplace else "_acc(jamps, a"
            body.append(f"{acc}, {tuple(terms)!r})")
        dead_current = [names.pop(key)] if key_last[key] == j else []
        free(end + j, a.inputs, dead_current)
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
        chunk: events per chunk (default: ~2^15 helicity rows x events eager, 2^16
            compiled, 2^22 on CUDA).

    The helicity rows are the plan's non-vanishing combinations unless a call asks for
    others (any subset of the product of the legs' helicities).

    Attributes:
        source: the generated eager code (packed complex, JAMPs accumulated in place).
    """

    def __init__(self, plan: Plan, *, compile: bool | None = None, chunk: int | None = None):
        self.plan = plan
        self.shape = tuple(len(leg.helicities) for leg in plan.legs)
        self.n_full = math.prod(self.shape)
        self.source = generate_source(plan, inplace=True)
        self._eager = _load(self.source, plan.name)
        self._functional_fn: Callable[..., None] | None = None
        self.compile = compile_enabled() if compile is None else bool(compile)
        self._chunk = chunk
        self._compiled: dict[tuple, Callable] = {}
        self._failed = False
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
        self, p: Tensor, couplings: Mapping[str, Cx], hel, index, want_amps: bool
    ) -> tuple[Tensor, Tensor | None]:
        n = p.shape[-1]
        rows = self.n_full if index is None else index.shape[0]
        cdtype = torch.complex128 if p.dtype == torch.float64 else torch.complex64
        jamps = torch.zeros(self.n_groups, self.n_basis, rows, n, dtype=cdtype, device=p.device)
        amps: list | None = [] if want_amps else None
        self._eager(p, hel, couplings, index, jamps, amps)
        amplitudes = None
        if amps is not None:
            like = p.new_zeros(rows, n)
            amplitudes = torch.stack([a.to_complex(like) for a in amps], 0)
        return jamps, amplitudes

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
        outs = []
        for start in range(0, max(n, 1), chunk):
            stop = min(n, start + chunk)
            p = p_all[..., start:stop].contiguous()
            c = {name: _slice(v, start, stop) for name, v in couplings.items()}
            out = self._run_compiled(p, c, hel, index, chunk) if compiled else None
            if out is None:
                jamps, amplitudes = self._chunk_eager(p, c, hel, index, want_amplitudes)
                out = self.colour_sum(jamps) if reduce is None else reduce(jamps, amplitudes)
            outs.append(out)
        return torch.cat(outs, -1) if len(outs) > 1 else outs[0]

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
