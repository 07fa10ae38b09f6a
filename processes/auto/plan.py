"""The evaluation plan of one process: HELAS calls, colour and helicities, as data.

MadGraph writes a process as a straight-line list of HELAS calls with a constant colour
matrix and finds once which helicity combinations vanish (``goodhel``). Here the same is
data (:class:`Plan`), built once per process from its diagrams (:mod:`.diagrams`), the
colour decomposition (:mod:`.colour`) and a helicity scan at random phase-space points,
and serialisable (JSON) so a run loads it instead of re-deriving diagrams and colour.
:class:`PlanExecutor` evaluates it batched over events x helicities in torch, on CPU or
CUDA (device and dtype follow the momenta): by default through the plan's generated
straight-line code (:mod:`.codegen`, optionally compiled), or with the generic
interpreter of this module (:func:`evaluate_amplitudes`, ``engine="reference"``).

Per event and helicity combination h, with amplitudes A_{a,h} (one per diagram term,
MadGraph's AMP, fermion sign included) and JAMP_{k,h} = sum_a c_{ak} A_{a,h}:

    |M|^2 = (1 / (initial helicities x colours)) sum_h sum_kl conj(JAMP_kh) C_kl JAMP_lh,

summed over final and averaged over initial helicities and colours; identical final-state
particles are not symmetrised (:attr:`processes.base.Process.symmetry_factor`). With
squared coupling orders (``QED^2<=2``) only the allowed interference terms of the order
groups enter. Channel weights are MadGraph's single-diagram enhancement (Maltoni &
Stelzer, hep-ph/0208156): |M_d|^2 = sum_h sum_{a in d} |A_{a,h}|^2 per diagram, summed per
channel; colour flows are drawn with probability ~ sum_h |JAMP_k|^2 over the leading ones.

Example:
    >>> from processes.auto.diagrams import generate_diagrams
    >>> plan = build_plan(generate_diagrams(None, (-11, 11), (-13, 13)))
    >>> len(plan.helicities), len(plan.amplitudes)   # 4 of 16 survive (massless, V/A)
    (4, 2)
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from evgen.params import SMParameters
from evgen.phasespace.rambo import Rambo
from processes.auto import helas
from processes.auto.codegen import ProcessKernel
from processes.auto.colour import decompose
from processes.auto.diagrams import DiagramSet
from processes.auto.helas_real import Cx
from processes.auto.model import Model
from processes.auto.syntax import Orders
from processes.base import Channel, Propagator

__all__ = [
    "PLAN_VERSION",
    "ExternalLeg",
    "CurrentCall",
    "AmplitudeCall",
    "Plan",
    "build_plan",
    "plan_key",
    "load_or_build_plan",
    "external_wavefunctions",
    "evaluate_amplitudes",
    "helicity_recycling",
    "PlanExecutor",
]

#: Version of the plan format and of the engine that fills it; part of the cache key.
PLAN_VERSION = 1

#: A helicity combination whose share of sum_h |M_h|^2 stays below this at every scan
#: point is dropped (MadGraph: LIMHEL); exact zeros are ~1e-30 of the total.
HELICITY_THRESHOLD = 1e-13
_SCAN_POINTS = 6
_BYTES_BUDGET = 512 * 1024**2  # per executor chunk: wave functions of the live slots


@dataclass(frozen=True)
class ExternalLeg:
    """One external particle.

    Attributes:
        pdg: its PDG id (incoming particles as they come in).
        kind: HELAS routine: ``"i"`` (ixxxxx), ``"o"`` (oxxxxx), ``"v"`` (vxxxxx), ``"s"``.
        sign: its nsf / nsv / nss argument (MadGraph's: fermions sign(pdg); bosons -1
            incoming, +1 outgoing).
        mass: GeV.
        helicities: the helicities it takes (-1, 1; -1, 0, 1 for massive vectors; 0).
    """

    pdg: int
    kind: str
    sign: int
    mass: float
    helicities: tuple[int, ...]


@dataclass(frozen=True)
class CurrentCall:
    """An off-shell wave function: ``sum_terms LORENTZ[l].offshell(k, inputs, coup, M, W)``."""

    slot: int
    terms: tuple[tuple[str, str], ...]  #: (Lorentz name, coupling name)
    offshell: int
    inputs: tuple[int, ...]
    mass: float
    width: float


@dataclass(frozen=True)
class AmplitudeCall:
    """One amplitude (a diagram term): ``sign * sum_terms LORENTZ[l].amplitude(inputs)``."""

    terms: tuple[tuple[str, str], ...]
    inputs: tuple[int, ...]
    sign: int
    diagram: int  #: 0-based diagram index


@dataclass
class Plan:
    """Everything needed to evaluate one process; plain data (JSON-serialisable).

    Attributes:
        name: the process in MadGraph syntax.
        key: cache key (process, constraints, model, parameters, engine version).
        model: model name.
        n_initial: 1 (decay) or 2.
        legs: the external particles, incoming first.
        helicities: the non-vanishing helicity combinations (one value per leg).
        currents: off-shell wave functions, each after its inputs (slots from n_ext).
        amplitudes: one per diagram term.
        couplings: the coupling names the calls use.
        colour_coefficients: (n_amplitudes, n_basis) complex as [re, im] pairs.
        colour_matrix: (n_basis, n_basis) real.
        flows: (n_basis, n_ext, 2) LHE colour tags (incoming legs LHE-swapped).
        leading_flows: (n_basis,) which basis elements are leading-colour flows.
        average: 1 / (helicity states x colours) of the incoming particles.
        diagram_channel: channel of each diagram (-1: none).
        channels: each a list of propagators ``[pdg, mass, width, kind, legs]``.
        order_groups: per amplitude, the index of its coupling-order group.
        interference: (n_groups, n_groups) 1/0: which order pairs enter |M|^2.
        alpha_s_power, alpha_ew_power: of the leading (lowest WEIGHTED) diagram's |M|^2.
        masses: external masses, GeV.
    """

    name: str
    key: str
    model: str
    n_initial: int
    legs: list[ExternalLeg]
    helicities: list[tuple[int, ...]]
    currents: list[CurrentCall]
    amplitudes: list[AmplitudeCall]
    couplings: list[str]
    colour_coefficients: list[list[list[float]]]
    colour_matrix: list[list[float]]
    flows: list[list[list[int]]]
    leading_flows: list[bool]
    average: float
    diagram_channel: list[int]
    channels: list[list[list[Any]]]
    order_groups: list[int]
    interference: list[list[int]]
    alpha_s_power: int
    alpha_ew_power: int
    version: int = PLAN_VERSION
    _device_cache: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_external(self) -> int:
        return len(self.legs)

    @property
    def masses(self) -> tuple[float, ...]:
        return tuple(leg.mass for leg in self.legs)

    def channel_objects(self) -> list[Channel]:
        """The channels as :class:`processes.base.Channel`."""
        return [
            Channel(tuple(Propagator(int(p), m, w, k, tuple(legs)) for p, m, w, k, legs in ch))
            for ch in self.channels
        ]

    # ------------------------------------------------------------------ serialisation
    def to_json(self) -> str:
        data = asdict(replace(self, _device_cache={}))
        data.pop("_device_cache")
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)
        if data.get("version") != PLAN_VERSION:
            raise ValueError(f"plan version {data.get('version')} != {PLAN_VERSION}")
        data["legs"] = [
            ExternalLeg(**{**d, "helicities": tuple(d["helicities"])}) for d in data["legs"]
        ]
        data["helicities"] = [tuple(h) for h in data["helicities"]]
        data["currents"] = [
            CurrentCall(
                c["slot"],
                tuple(tuple(t) for t in c["terms"]),
                c["offshell"],
                tuple(c["inputs"]),
                c["mass"],
                c["width"],
            )
            for c in data["currents"]
        ]
        data["amplitudes"] = [
            AmplitudeCall(
                tuple(tuple(t) for t in a["terms"]), tuple(a["inputs"]), a["sign"], a["diagram"]
            )
            for a in data["amplitudes"]
        ]
        return cls(**data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        return cls.from_json(Path(path).read_text())

    # ------------------------------------------------------------------ tensors
    def tensors(self, device: torch.device) -> dict[str, Tensor]:
        """The plan's constant tensors on ``device`` (cached)."""
        key = str(device)
        if key not in self._device_cache:
            coeff = np.asarray(self.colour_coefficients, dtype=np.float64)
            coeff_c = coeff[..., 0] + 1j * coeff[..., 1] if coeff.size else coeff.reshape(0, 0)
            n_amp = len(self.amplitudes)
            d_index = [a.diagram for a in self.amplitudes]
            n_diag = len(self.diagram_channel)
            n_chan = len(self.channels)
            diag_to_chan = torch.zeros(n_diag, max(n_chan, 1), dtype=torch.float64)
            for d, c in enumerate(self.diagram_channel):
                if c >= 0:
                    diag_to_chan[d, c] = 1.0
            amp_to_diag = torch.zeros(n_amp, n_diag, dtype=torch.float64)
            amp_to_diag[torch.arange(n_amp), torch.tensor(d_index, dtype=torch.int64)] = 1.0
            self._device_cache[key] = {
                "helicities": torch.tensor(self.helicities, dtype=torch.int64, device=device),
                "coefficients": torch.as_tensor(
                    np.asarray(coeff_c, dtype=np.complex128).reshape(n_amp, -1), device=device
                ),
                "matrix": torch.tensor(self.colour_matrix, dtype=torch.float64, device=device),
                "flows": torch.tensor(self.flows, dtype=torch.int64, device=device),
                "leading": torch.tensor(self.leading_flows, dtype=torch.bool, device=device),
                "amp_to_channel": (amp_to_diag @ diag_to_chan).to(device),
                "groups": torch.tensor(self.order_groups, dtype=torch.int64, device=device),
                "interference": torch.tensor(self.interference, dtype=torch.float64, device=device),
            }
        return self._device_cache[key]


# ----------------------------------------------------------------------------- building


def plan_key(model: Model, params: SMParameters, spec: Mapping[str, Any]) -> str:
    """Cache key of a process's plan (a SHA-256 prefix) from its description ``spec``
    (particles, decays, constraints: anything with a deterministic ``repr``), the model's
    name and every one of its parameters, and the engine version :data:`PLAN_VERSION`."""
    content = {
        "version": PLAN_VERSION,
        "model": model.name,
        "parameters": sorted(model.parameters(params).items()),
        "spec": sorted((k, repr(v)) for k, v in spec.items()),
    }
    return hashlib.sha256(repr(content).encode()).hexdigest()[:24]


def _external_leg(model: Model, pdg: int, incoming: bool, params: SMParameters) -> ExternalLeg:
    spin = model.spin(pdg)
    mass = model.mass(pdg, params)
    o = model.anti(pdg) if incoming else pdg
    if spin == 2:
        return ExternalLeg(pdg, "i" if o < 0 else "o", 1 if pdg > 0 else -1, mass, (-1, 1))
    sign = -1 if incoming else 1
    if spin == 3:
        helicities = (-1, 0, 1) if mass > 0 else (-1, 1)
        return ExternalLeg(pdg, "v", sign, mass, helicities)
    if spin == 1:
        return ExternalLeg(pdg, "s", sign, mass, (0,))
    raise ValueError(f"particle {pdg}: spin 2s+1 = {spin} not supported")


def _order_groups(diagrams: DiagramSet, orders: Orders | None) -> tuple[list[int], list[list[int]]]:
    """Group amplitudes by their production orders; which group pairs interfere."""
    keys: list[tuple] = []
    per_diagram = []
    for d in diagrams.diagrams:
        key = tuple(sorted(d.part_orders[0].items()))
        if key not in keys:
            keys.append(key)
        per_diagram.append(keys.index(key))
    groups = [per_diagram[d] for d, diagram in enumerate(diagrams.diagrams) for _ in diagram.terms]
    if orders is None or not orders.squared:
        matrix = [[1] * len(keys) for _ in keys]
    else:
        matrix = [[int(orders.allows_interference(dict(a), dict(b))) for b in keys] for a in keys]
    return groups, matrix


def _average(model: Model, legs: Sequence[ExternalLeg], n_initial: int) -> float:
    """1 / (helicity states x colour states) of the incoming particles."""
    states = 1
    for leg in legs[:n_initial]:
        states *= len(leg.helicities) * abs(model.colour(leg.pdg))
    return 1.0 / states


def build_plan(
    diagrams: DiagramSet,
    params: SMParameters | None = None,
    *,
    name: str | None = None,
    orders: Orders | None = None,
    key: str | None = None,
    scan_seed: int = 20240917,
) -> Plan:
    """Build the evaluation plan of a process from its diagrams.

    Args:
        diagrams: the process's :class:`DiagramSet`.
        params: model parameters (masses, widths; couplings for the helicity scan).
        name: the process in MadGraph syntax (default: from the particles).
        orders: the production's orders, for squared-order (interference) selection.
        key: cache key (default: :func:`plan_key` of the particles and decays).
        scan_seed: seed of the random points of the helicity scan.

    Returns:
        The :class:`Plan`, with vanishing helicity combinations removed.
    """
    params = params if params is not None else SMParameters()
    model = diagrams.model
    n_initial = len(diagrams.initial)
    pdgs = (*diagrams.initial, *diagrams.final)
    legs = [_external_leg(model, p, k < n_initial, params) for k, p in enumerate(pdgs)]
    currents = []
    for w in diagrams.wavefunctions:
        terms = model.vertices[w.vertex].terms(w.colour)
        currents.append(CurrentCall(w.slot, terms, w.offshell, w.inputs, w.mass, w.width))
    amplitudes, factors = [], []
    for index, d in enumerate(diagrams.diagrams):
        for t in d.terms:
            terms = model.vertices[t.amplitude.vertex].terms(t.amplitude.colour)
            amplitudes.append(AmplitudeCall(terms, t.amplitude.inputs, d.fermion_sign, index))
            factors.append(t.colour_factor)
    colour = decompose(factors, diagrams.colour_reps)
    coeff = np.asarray(colour.coefficients, dtype=np.complex128)
    couplings = sorted(
        {c for call in (*currents, *amplitudes) for _, c in call.terms}, key=_coupling_order
    )
    groups, interference = _order_groups(diagrams, orders)
    leading = min(diagrams.diagrams, key=lambda d: _weighted(model, d.orders))
    process_name = name or (
        " ".join(model.name_of(p) for p in diagrams.initial)
        + " > "
        + " ".join(model.name_of(p) for p in diagrams.final)
    )
    plan = Plan(
        name=process_name,
        key=key
        or plan_key(
            model,
            params,
            {"initial": diagrams.initial, "final": diagrams.final, "decays": diagrams.decays},
        ),
        model=model.name,
        n_initial=n_initial,
        legs=legs,
        helicities=[tuple(h) for h in itertools.product(*(leg.helicities for leg in legs))],
        currents=currents,
        amplitudes=amplitudes,
        couplings=couplings,
        colour_coefficients=np.stack([coeff.real, coeff.imag], -1).tolist(),
        colour_matrix=np.asarray(colour.matrix, dtype=np.float64).tolist(),
        flows=np.asarray(colour.lhe_flows(n_initial), dtype=np.int64).tolist(),
        leading_flows=[bool(x) for x in colour.leading_flows],
        average=_average(model, legs, n_initial),
        diagram_channel=list(diagrams.diagram_channel),
        channels=[
            [[p.pdg, p.mass, p.width, p.kind, list(p.legs)] for p in c.propagators]
            for c in diagrams.channels
        ],
        order_groups=groups,
        interference=interference,
        alpha_s_power=leading.orders.get("QCD", 0),
        alpha_ew_power=leading.orders.get("QED", 0),
    )
    plan.helicities = _good_helicities(plan, model, params, scan_seed)
    plan._device_cache.clear()
    return plan


def _coupling_order(name: str) -> tuple:
    head, _, tail = name.partition("_")
    return (head, int(tail) if tail.isdigit() else 10**9, tail)


def _weighted(model: Model, orders: Mapping[str, int]) -> int:
    return sum(model.order_hierarchy.get(c, 0) * v for c, v in orders.items())


def scan_momenta(
    masses: Sequence[float], n_initial: int, n_points: int, seed: int, e_cm: float | None = None
) -> Tensor:
    """Random physical momenta (n_points, n_ext, 4) GeV for a process with these masses:
    a collision at sqrt(s) in its centre-of-mass frame (incoming along +-z), or a decay
    at rest; final states from RAMBO."""
    m_in, m_out = list(masses[:n_initial]), list(masses[n_initial:])
    g = torch.Generator().manual_seed(seed)
    if n_initial == 1:
        e_cm = m_in[0]
    elif e_cm is None:
        e_cm = 2.0 * max(sum(m_out), sum(m_in)) + 500.0
    if len(m_out) == 1:
        if n_initial == 2:
            e_cm = m_out[0]
        final = torch.zeros(n_points, 1, 4, dtype=torch.float64)
        final[:, 0, 0] = e_cm
    else:
        rambo = Rambo(m_out)
        r = torch.rand(n_points, rambo.n_dim, generator=g, dtype=torch.float64)
        final, _ = rambo.map(r, e_cm)
    if n_initial == 1:
        initial = torch.zeros(n_points, 1, 4, dtype=torch.float64)
        initial[:, 0, 0] = e_cm
    else:
        s = e_cm**2
        lam = (s - (m_in[0] + m_in[1]) ** 2) * (s - (m_in[0] - m_in[1]) ** 2)
        pz = math.sqrt(max(lam, 0.0)) / (2.0 * e_cm)
        e1 = math.sqrt(pz**2 + m_in[0] ** 2)
        e2 = math.sqrt(pz**2 + m_in[1] ** 2)
        initial = torch.tensor([[e1, 0.0, 0.0, pz], [e2, 0.0, 0.0, -pz]], dtype=torch.float64)
        initial = initial.expand(n_points, 2, 4)
    return torch.cat([initial, final], dim=1)


def _good_helicities(
    plan: Plan, model: Model, params: SMParameters, seed: int
) -> list[tuple[int, ...]]:
    """MadGraph's goodhel: keep the helicity combinations whose |M_h|^2 is a non-negligible
    share of the total at one or more random points."""
    momenta = scan_momenta(plan.masses, plan.n_initial, _SCAN_POINTS, seed)
    executor = PlanExecutor(plan, model, params)
    per_hel = executor.helicity_squares(momenta)  # (n, H)
    total = per_hel.sum(-1, keepdim=True)
    share = per_hel / torch.where(total > 0, total, torch.ones_like(total))
    good = (share > HELICITY_THRESHOLD).any(0)
    if not bool(good.any()):
        return plan.helicities
    return [h for h, keep in zip(plan.helicities, good.tolist(), strict=True) if keep]


def load_or_build_plan(
    diagrams_factory,
    params: SMParameters,
    key: str,
    cache_dir: str | Path | None,
    **build_kwargs: Any,
) -> Plan:
    """The plan under ``key`` from ``cache_dir`` if there, else built (``diagrams_factory()``
    gives the :class:`DiagramSet`) and saved there. ``cache_dir=None``: no cache."""
    path = Path(cache_dir) / f"plan-{key}.json" if cache_dir is not None else None
    if path is not None and path.exists():
        try:
            plan = Plan.load(path)
            if plan.key == key:
                return plan
        except (ValueError, KeyError, TypeError, json.JSONDecodeError):
            pass  # stale or foreign file: rebuild
    plan = build_plan(diagrams_factory(), params, key=key, **build_kwargs)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        plan.save(tmp)
        tmp.replace(path)
    return plan


# ----------------------------------------------------------------------------- executing


def external_wavefunctions(plan: Plan, momenta: Tensor, helicities: Tensor) -> list[Tensor]:
    """HELAS wave functions of the external legs, (n, H, 6) each.

    Args:
        plan: the plan.
        momenta: (n, n_ext, 4) GeV, float64.
        helicities: (H, n_ext) int64 helicity combinations.
    """
    out = []
    for k, leg in enumerate(plan.legs):
        p = momenta[:, k, None, :]
        hel = helicities[:, k].to(momenta.dtype)
        if leg.kind == "i":
            out.append(helas.ixxxxx(p, leg.mass, hel, leg.sign))
        elif leg.kind == "o":
            out.append(helas.oxxxxx(p, leg.mass, hel, leg.sign))
        elif leg.kind == "v":
            out.append(helas.vxxxxx(p, leg.mass, hel, leg.sign))
        else:
            out.append(helas.sxxxxx(p, leg.sign).expand(-1, helicities.shape[0], -1))
    return out


def helicity_recycling(plan: Plan, helicities: Tensor) -> dict[int, tuple[Tensor, Tensor]]:
    """MadGraph's helicity recycling: a wave function depends only on the helicities of
    its own external legs, so it is computed once per distinct combination of those.

    Returns, per slot s, ``(rep, inv)``: ``rep`` the rows of ``helicities`` that represent
    the distinct combinations of s's legs, ``inv`` (H,) the position of each row's
    combination among them (both int64 on the helicities' device).
    """
    hel = helicities.detach().cpu().numpy()
    legs: dict[int, tuple[int, ...]] = {k: (k,) for k in range(plan.n_external)}
    for c in plan.currents:
        legs[c.slot] = tuple(sorted(set().union(*(legs[i] for i in c.inputs))))
    out = {}
    for slot, ks in legs.items():
        _, rep, inv = np.unique(hel[:, list(ks)], axis=0, return_index=True, return_inverse=True)
        out[slot] = (
            torch.as_tensor(rep, dtype=torch.int64, device=helicities.device),
            torch.as_tensor(inv.reshape(-1), dtype=torch.int64, device=helicities.device),
        )
    return out


def evaluate_amplitudes(
    plan: Plan,
    externals: Sequence[Tensor],
    couplings: Mapping[str, complex | Tensor],
    recycling: Mapping[int, tuple[Tensor, Tensor]] | None = None,
) -> Tensor:
    """Run the HELAS calls: amplitudes (n, H, n_amplitudes) complex, fermion signs in.

    Args:
        plan: the plan.
        externals: the external wave functions (n, H, 6) (see
            :func:`external_wavefunctions`; a test may replace one, e.g. a gluon's
            polarisation by its momentum).
        couplings: values of ``plan.couplings``: numbers, or (n,) tensors per event.
        recycling: :func:`helicity_recycling` of the H helicity combinations, to compute
            each current only for the distinct helicities of its legs; ``None``: every
            current for all H.
    """
    n_ext = plan.n_external
    if recycling is None:
        slots: dict[int, Tensor] = dict(enumerate(externals))
    else:
        slots = {k: w[:, recycling[k][0]] for k, w in enumerate(externals)}

    full: dict[int, Tensor] = {}  # slots expanded to all H combinations (amplitudes)

    def inputs_for(call_inputs: Sequence[int], target: int | None) -> list[Tensor]:
        if recycling is None:
            return [slots[s] for s in call_inputs]
        if target is None:  # amplitude: every helicity combination, shared by amplitudes
            for s in call_inputs:
                if s not in full:
                    full[s] = torch.index_select(slots[s], 1, recycling[s][1])
            return [full[s] for s in call_inputs]
        rep = recycling[target][0]
        return [torch.index_select(slots[s], 1, recycling[s][1][rep]) for s in call_inputs]

    last_use: dict[int, int] = {}
    for i, c in enumerate(plan.currents):
        for s in c.inputs:
            last_use[s] = i
    end = len(plan.currents)
    for a in plan.amplitudes:
        for s in a.inputs:
            last_use[s] = end
    for i, call in enumerate(plan.currents):
        wfs = inputs_for(call.inputs, call.slot)
        parts = [
            helas.LORENTZ[lor].offshell(call.offshell, wfs, couplings[cp], call.mass, call.width)
            for lor, cp in call.terms
        ]
        slots[call.slot] = parts[0] if len(parts) == 1 else helas.sum_currents(parts)
        for s in call.inputs:
            if last_use.get(s) == i and s >= n_ext:
                del slots[s]
    last_amp = {s: i for i, a in enumerate(plan.amplitudes) for s in a.inputs}
    amps = []
    for i, a in enumerate(plan.amplitudes):
        wfs = inputs_for(a.inputs, None)
        value = helas.LORENTZ[a.terms[0][0]].amplitude(wfs, couplings[a.terms[0][1]])
        for lor, cp in a.terms[1:]:
            value = value + helas.LORENTZ[lor].amplitude(wfs, couplings[cp])
        amps.append(value if a.sign > 0 else -value)
        for s in a.inputs:
            if last_amp[s] == i:
                full.pop(s, None)
                if s >= n_ext:
                    slots.pop(s, None)
    return torch.stack(amps, dim=-1)


class PlanExecutor:
    """Evaluates a plan: |M|^2, per-helicity squares, diagram squares, JAMPs.

    Two engines give the same numbers (to rounding, ~1e-15 relative):

    - ``"generated"`` (default): the plan's straight-line code from
      :mod:`processes.auto.codegen` (every HELAS call unrolled, helicities as broadcast
      axes, JAMPs summed as the amplitudes come), in eager mode or, with ``compile``,
      through ``torch.compile``;
    - ``"reference"``: the generic interpreter of the plan (:func:`evaluate_amplitudes`,
      complex tensors, helicity recycling by gathers), kept as the independent second
      method the tests compare with.

    Couplings that do not depend on alpha_s are computed once; the QCD ones per call from
    ``alpha_s`` (a number or a per-event tensor).

    Args:
        plan, model, params: the process plan, its model and parameters.
        engine: ``"generated"`` or ``"reference"``.
        compile: compile the generated code (default: environment variable
            ``EVGEN_COMPILE``, see :func:`processes.auto.codegen.compile_enabled`).
    """

    def __init__(
        self,
        plan: Plan,
        model: Model,
        params: SMParameters,
        *,
        engine: str = "generated",
        compile: bool | None = None,
    ) -> None:
        if engine not in ("generated", "reference"):
            raise ValueError(f"engine must be 'generated' or 'reference', got {engine!r}")
        self.plan = plan
        self.model = model
        self.params = params
        self.engine = engine
        self._compile = compile
        self._kernel: ProcessKernel | None = None
        fixed = [c for c in plan.couplings if not model.couplings[c].depends_on_alpha_s]
        self.alpha_s_couplings = [c for c in plan.couplings if c not in fixed]
        self.fixed = model.coupling_values(params, names=fixed)
        # parts of the alpha_s-dependent couplings that vanish for every alpha_s (i g_s)
        probes = [
            model.coupling_values(params, a, names=self.alpha_s_couplings) for a in (0.1, 0.2)
        ]
        self._zero_parts = {
            name: (
                all(complex(v[name]).real == 0.0 for v in probes),
                all(complex(v[name]).imag == 0.0 for v in probes),
            )
            for name in self.alpha_s_couplings
        }

    @property
    def kernel(self) -> ProcessKernel:
        """The generated code's runner (built on first use)."""
        if self._kernel is None:
            self._kernel = ProcessKernel(self.plan, compile=self._compile)
        return self._kernel

    def couplings(self, alpha_s: Tensor | float | None, momenta: Tensor) -> dict:
        out: dict[str, complex | Tensor] = dict(self.fixed)
        if self.alpha_s_couplings:
            a_s = self.params.alpha_s if alpha_s is None else alpha_s
            if isinstance(a_s, Tensor):
                a_s = a_s.to(device=momenta.device, dtype=momenta.dtype)
            out.update(self.model.coupling_values(self.params, a_s, names=self.alpha_s_couplings))
        return out

    def _real_couplings(self, alpha_s: Tensor | float | None, momenta: Tensor) -> dict[str, Cx]:
        """The couplings as :class:`Cx` pairs, per-event ones as (n,) real tensors and the
        parts that vanish identically as the number 0. With compilation or tracing on, the
        alpha_s couplings are always tensors (a compiled or recorded graph is not tied to
        one alpha_s)."""
        out = {}
        n = momenta.shape[0]
        as_tensor = self._kernel is not None and (self._kernel.compile or self._kernel.trace)
        for name, value in self.couplings(alpha_s, momenta).items():
            if name in self._zero_parts and (isinstance(value, Tensor) or as_tensor):
                zero_re, zero_im = self._zero_parts[name]
                if not isinstance(value, Tensor):
                    value = torch.full((n,), complex(value), dtype=torch.complex128)
                value = value.to(momenta.device)
                value = value.expand(n) if value.ndim == 0 else value
                out[name] = Cx(0.0 if zero_re else value.real, 0.0 if zero_im else value.imag)
            else:
                out[name] = Cx.of(value)
        return out

    def _generated(self, helicities: Tensor | None) -> list[tuple[int, ...]] | None:
        """The helicity rows for the generated code, or None to use the reference engine."""
        if self.engine != "generated":
            return None
        if helicities is None:
            return self.plan.helicities
        hels = [tuple(int(x) for x in h) for h in helicities.tolist()]
        return hels if self.kernel.rows_of(hels) is not None else None

    def _run(self, momenta, alpha_s, reduce, helicities=None, want_amplitudes=False) -> Tensor:
        kernel = self.kernel
        couplings = self._real_couplings(alpha_s, momenta)
        return kernel.run(momenta, couplings, reduce, helicities, want_amplitudes=want_amplitudes)

    def _chunks(self, n: int) -> int:
        per_event = (
            96
            * max(1, len(self.plan.helicities))
            * (self.plan.n_external + len(self.plan.currents) + len(self.plan.amplitudes))
        )
        return max(1, min(n, _BYTES_BUDGET // per_event))

    def amplitudes(
        self,
        momenta: Tensor,
        alpha_s: Tensor | float | None = None,
        helicities: Tensor | None = None,
    ) -> Tensor:
        """(n, H, n_amplitudes) complex amplitudes for the plan's helicities."""
        hels = self._generated(helicities)
        if hels is not None:
            out = self._run(momenta, alpha_s, lambda j, a: a, hels, want_amplitudes=True)
            return out.permute(2, 1, 0)
        return self._reference_amplitudes(momenta, alpha_s, helicities)

    def _reference_amplitudes(
        self, momenta: Tensor, alpha_s: Tensor | float | None, helicities: Tensor | None
    ) -> Tensor:
        tens = self.plan.tensors(momenta.device)
        hel = tens["helicities"] if helicities is None else helicities
        recycling = self.recycling(hel)
        n = momenta.shape[0]
        chunk = self._chunks(n)
        outs = []
        for start in range(0, n, chunk):
            p = momenta[start : start + chunk]
            a_s = alpha_s
            if isinstance(alpha_s, Tensor) and alpha_s.ndim > 0:
                a_s = alpha_s[start : start + chunk]
            externals = external_wavefunctions(self.plan, p, hel)
            couplings = self.couplings(a_s, p)
            outs.append(evaluate_amplitudes(self.plan, externals, couplings, recycling))
        if not outs:
            shape = (0, hel.shape[0], len(self.plan.amplitudes))
            return torch.zeros(shape, dtype=torch.complex128, device=momenta.device)
        return torch.cat(outs, 0)

    def recycling(self, helicities: Tensor) -> dict[int, tuple[Tensor, Tensor]]:
        """:func:`helicity_recycling` of ``helicities`` (cached per set and device)."""
        key = (str(helicities.device), helicities.detach().cpu().numpy().tobytes())
        cache = self.__dict__.setdefault("_recycling", {})
        if key not in cache:
            cache[key] = helicity_recycling(self.plan, helicities)
        return cache[key]

    def jamps(self, amplitudes: Tensor) -> Tensor:
        """(n, H, n_groups, n_basis) JAMPs of each coupling-order group."""
        tens = self.plan.tensors(amplitudes.device)
        coeff = tens["coefficients"]
        n_groups = len(self.plan.interference)
        onehot = torch.nn.functional.one_hot(tens["groups"], n_groups).to(coeff.dtype)
        # J[g, k] = sum_a [group(a) = g] c_ak A_a
        return torch.einsum("nha,ag,ak->nhgk", amplitudes, onehot, coeff)

    def helicity_squares(
        self,
        momenta: Tensor,
        alpha_s: Tensor | float | None = None,
        helicities: Tensor | None = None,
    ) -> Tensor:
        """(n, H) colour-summed |M_h|^2 (not averaged) of each helicity combination."""
        hels = self._generated(helicities)
        if hels is not None:
            return self._run(momenta, alpha_s, None, hels).T
        amps = self._reference_amplitudes(momenta, alpha_s, helicities)
        return self.colour_sum(self.jamps(amps))

    def colour_sum(self, jamps: Tensor) -> Tensor:
        """sum_{g,g'} I_gg' Re(conj(J_g) C J_g'), (n, H)."""
        tens = self.plan.tensors(jamps.device)
        c = tens["matrix"]
        inter = tens["interference"]
        re, im = jamps.real, jamps.imag
        # Re(conj(J_g) C J_g') = Re_g C Re_g' + Im_g C Im_g'
        cr, ci = re @ c, im @ c
        pair = torch.einsum("nhgk,nhfk->nhgf", cr, re) + torch.einsum("nhgk,nhfk->nhgf", ci, im)
        return (pair * inter).sum((-1, -2))

    def matrix_element(self, momenta: Tensor, alpha_s: Tensor | float | None = None) -> Tensor:
        """|M|^2 (n,), summed over final and averaged over initial helicities and colours."""
        if self.engine == "generated":
            return self._run(momenta, alpha_s, None).sum(0) * self.plan.average
        return self.helicity_squares(momenta, alpha_s).sum(-1) * self.plan.average

    def diagram_channel_weights(
        self, momenta: Tensor, alpha_s: Tensor | float | None = None
    ) -> Tensor:
        """SDE weights (n, n_channels): sum_h sum_{a in channel} |A_a|^2, normalised."""
        if self.engine == "generated":
            squares = self._run(
                momenta,
                alpha_s,
                lambda j, a: (a.real**2 + a.imag**2).sum(1),
                self.plan.helicities,
                want_amplitudes=True,
            ).T  # (n, n_amp)
        else:
            amps = self.amplitudes(momenta, alpha_s)
            squares = (amps.real**2 + amps.imag**2).sum(1)  # (n, n_amp)
        tens = self.plan.tensors(momenta.device)
        per_channel = squares @ tens["amp_to_channel"]
        n_chan = len(self.plan.channels)
        per_channel = per_channel[:, :n_chan]
        total = per_channel.sum(-1, keepdim=True)
        uniform = torch.full_like(per_channel, 1.0 / max(n_chan, 1))
        return torch.where(total > 0, per_channel / torch.where(total > 0, total, 1.0), uniform)

    def flow_weights(self, momenta: Tensor, alpha_s: Tensor | float | None = None) -> Tensor:
        """(n, n_basis) probabilities of the leading colour flows: sum_h |JAMP_k|^2."""
        if self.engine == "generated":

            def reduce(j: Tensor, a: Tensor | None) -> Tensor:
                total = j.sum(0)  # all groups
                return (total.real**2 + total.imag**2).sum(1)

            jamp2 = self._run(momenta, alpha_s, reduce).T
        else:
            jamps = self.jamps(self.amplitudes(momenta, alpha_s)).sum(2)  # all groups
            jamp2 = (jamps.real**2 + jamps.imag**2).sum(1)
        leading = self.plan.tensors(momenta.device)["leading"].expand_as(jamp2)
        w = torch.where(leading, jamp2, torch.zeros_like(jamp2))
        total = w.sum(-1, keepdim=True)
        uniform = leading.to(w.dtype) / leading.sum(-1, keepdim=True).to(w.dtype)
        return torch.where(total > 0, w / torch.where(total > 0, total, 1.0), uniform)

    def colour_flow(
        self, momenta: Tensor, u: Tensor, alpha_s: Tensor | float | None = None
    ) -> Tensor:
        """(n, n_ext, 2) LHE colour tags of a leading flow drawn with ``u`` (n,)."""
        w = self.flow_weights(momenta, alpha_s)
        cdf = torch.cumsum(w, -1)
        target = u.to(device=cdf.device, dtype=cdf.dtype)[:, None] * cdf[:, -1:]
        k = torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp(max=w.shape[1] - 1)
        k = torch.where(w.gather(1, k[:, None]).squeeze(1) > 0, k, w.argmax(-1))
        return self.plan.tensors(momenta.device)["flows"][k]
