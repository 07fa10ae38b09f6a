"""Tree-level Feynman diagrams of any process of a :class:`~processes.auto.model.Model`.

MadGraph's algorithm, conceptually (Stelzer & Long, Comput. Phys. Commun. 81 (1994) 357;
MG5: Alwall et al., JHEP 06 (2011) 128): every leg is made outgoing (an incoming particle
becomes its antiparticle); legs are combined recursively through the model's vertices into
off-shell currents ("wave functions"), and each diagram ends in an amplitude vertex. Here
the recursion is over subsets S of the legs other than leg 0 (the first incoming
particle): a current with legs S is one vertex joining 2 or 3 currents whose leg sets
partition S, and a diagram is one vertex joining leg 0 with currents that partition the
other legs. Each tree diagram has exactly one such decomposition, so no diagram is made
twice; a canonical key (its internal lines and vertices) guards against duplicates.

Conventions (MadGraph's): a leg of all-outgoing PDG id ``o`` sits at a vertex position
whose particle is ``o``; a current made at a vertex with its off-shell leg at position j
enters the next vertex as ``o = anti(particles[j])``, the particle that flows into the
legs S with momentum sum_{k in S} p_k (outgoing momenta, incoming ones negated). A vertex
with several colour structures (the 4-gluon one) is split into one interaction per colour
structure (MadGraph's split interactions), so a diagram has one *term* per combination:
each term has its own currents, amplitude and colour factor. Currents are shared between
diagrams and terms (MadGraph's wave-function reuse): :attr:`DiagramSet.wavefunctions` lists
every distinct one once, in an order in which each comes after its inputs.

Selection, as MadGraph's ``generate``: coupling orders (a diagram's order is the sum over
its vertices; by default the lowest ``WEIGHTED = QCD + 2 QED`` of the process),
excluded internal particles (``/``), required and excluded (``$$``) s-channels, and decay
chains (each decay with its own orders and exclusions; the decaying particle is an
s-channel line of the diagram).

The relative sign of diagrams with identical fermions is MadGraph's: the parity of the
permutation that orders the external fermion numbers listed line by line (each line as the
pair of its external ends), see :attr:`Diagram.fermion_sign`.

Example:
    >>> ds = generate_diagrams(sm_model(), (21, 21), (6, -6))
    >>> len(ds.diagrams), [c.propagators[0].kind for c in ds.channels]
    (3, ['s', 't', 't'])
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from evgen.errors import ProcessError
from evgen.params import SMParameters
from processes.auto.model import Model, Vertex, sm_model
from processes.auto.syntax import Orders
from processes.base import Channel, Propagator

__all__ = [
    "Constraints",
    "lowest_production_weighted",
    "DecayGroup",
    "WaveFunction",
    "AmplitudeStep",
    "DiagramTerm",
    "Diagram",
    "DiagramSet",
    "generate_diagrams",
    "parse_colour",
    "decay_groups",
]

ColourFactor = tuple[tuple[str, tuple[int, ...]], ...]


# ----------------------------------------------------------------------- constraints


def _as_orders(orders: Orders | Mapping[str, int] | None) -> Orders:
    if orders is None:
        return Orders()
    if isinstance(orders, Orders):
        return orders
    return Orders(amplitude=tuple((c, "<=", int(v)) for c, v in orders.items()))


@dataclass(frozen=True)
class Constraints:
    """What selects the diagrams of one process (or of one decay of a chain).

    Attributes:
        orders: coupling-order constraints on each diagram (:class:`Orders`; a mapping
            ``{"QED": 2}`` means "at most"); default (no constraint): MadGraph's choice,
            the diagrams of lowest WEIGHTED order.
        excluded: |PDG ids| that may not be internal lines (``/``).
        required_s_channels: each entry (a set of signed PDG ids) must be met by one of its
            particles being an s-channel line (flowing from the initial to the final state).
        excluded_s_channels: signed PDG ids that may not be s-channel lines (``$$``).
    """

    orders: Orders = field(default_factory=Orders)
    excluded: frozenset[int] = frozenset()
    required_s_channels: tuple[frozenset[int], ...] = ()
    excluded_s_channels: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "orders", _as_orders(self.orders))
        object.__setattr__(self, "excluded", frozenset(abs(p) for p in self.excluded))
        object.__setattr__(
            self, "required_s_channels", tuple(frozenset(r) for r in self.required_s_channels)
        )
        object.__setattr__(self, "excluded_s_channels", frozenset(self.excluded_s_channels))

    @classmethod
    def from_definition(cls, definition) -> Constraints:
        """The constraints of a parsed :class:`~processes.auto.syntax.ProcessDefinition`
        (its own ``/``, ``$$``, required s-channels and orders; not those of its decays)."""
        return cls(
            orders=definition.orders,
            excluded=definition.excluded_pdgs,
            required_s_channels=definition.required_s_channel_pdgs,
            excluded_s_channels=definition.strictly_excluded_s_channel_pdgs,
        )


@dataclass(frozen=True)
class DecayGroup:
    """One decay of a decay chain: particle ``pdg`` (signed, as produced) decays to the
    final-state legs ``legs`` (indices into the external particles, incoming first)."""

    pdg: int
    legs: frozenset[int]
    constraints: Constraints = field(default_factory=Constraints)


# ---------------------------------------------------------------------------- output


@dataclass(frozen=True)
class WaveFunction:
    """One off-shell current: a vertex with one leg off-shell (a HELAS ``..._k`` call).

    Attributes:
        slot: its wave-function number; slots ``0 .. n_ext-1`` are the external legs.
        vertex: index into ``model.vertices``.
        colour: the vertex's colour structure (its split interaction): its Lorentz terms
            ``model.vertices[vertex].terms(colour)`` are summed.
        inputs: wave-function slots at the vertex positions other than ``offshell``, in
            position order.
        offshell: 0-based position of the off-shell leg in the vertex's particle list.
        pdg: all-outgoing id of the line: the particle flowing into ``legs``.
        mass: GeV, of the propagator.
        width: GeV, in the propagator (0 for t-channel lines with ``zero_width_t_channel``).
        legs: external legs whose (outgoing) momenta sum to the line's momentum.
        kind: ``"s"`` (time-like: only final-state legs in ``legs``) or ``"t"``.
    """

    slot: int
    vertex: int
    colour: int
    inputs: tuple[int, ...]
    offshell: int
    pdg: int
    mass: float
    width: float
    legs: frozenset[int]
    kind: str


@dataclass(frozen=True)
class AmplitudeStep:
    """The closing vertex of a diagram term: all its positions filled (a HELAS ``..._0``)."""

    vertex: int
    colour: int
    inputs: tuple[int, ...]


@dataclass(frozen=True)
class DiagramTerm:
    """One amplitude of a diagram (MadGraph's AMP): one colour structure per vertex.

    Attributes:
        wavefunctions: the current slots it needs, each after its inputs.
        amplitude: its closing vertex.
        colour_factor: ``(structure, indices)`` products: UFO ``"T"``, ``"f"``,
            ``"Identity"``; index k >= 0 is external leg k, negative indices are summed.
    """

    wavefunctions: tuple[int, ...]
    amplitude: AmplitudeStep
    colour_factor: ColourFactor


@dataclass(frozen=True)
class Diagram:
    """One tree diagram.

    Attributes:
        number: 1-based, in generation order.
        terms: its amplitudes (one unless it has a 4-gluon vertex).
        propagators: its internal lines for the phase space (s-channel lines: the
            outgoing legs they make; t-channel lines: the outgoing legs on the side of the
            first incoming particle).
        orders: coupling orders summed over all vertices (``{"QCD": 2}``).
        part_orders: the orders of the production (first) and of each decay group.
        fermion_sign: +1 or -1, MadGraph's relative sign of diagrams with identical
            fermions.
        lines: ``(legs, pdg)`` of every internal line.
    """

    number: int
    terms: tuple[DiagramTerm, ...]
    propagators: tuple[Propagator, ...]
    orders: dict[str, int] = field(compare=False, hash=False)
    part_orders: tuple[dict[str, int], ...] = field(compare=False, hash=False)
    fermion_sign: int = 1
    lines: tuple[tuple[frozenset[int], int], ...] = ()


@dataclass(frozen=True, eq=False)
class DiagramSet:
    """All diagrams of one process, with their shared currents and phase-space channels.

    Attributes:
        model: the model.
        initial: incoming PDG ids; final: outgoing PDG ids (after decays: the products).
        outgoing_ids: all-outgoing id per external leg (incoming legs crossed).
        colour_reps: SU(3) representation per leg in the all-outgoing convention.
        wavefunctions: every current once, slot ``n_ext + i`` at index i.
        diagrams: the diagrams.
        channels: distinct propagator structures of the diagrams (legs, kinds, masses and
            widths; the particle ids are those of the channel's first diagram).
        diagram_channel: for each diagram, the index of its channel; -1 for a diagram
            with a 4-point vertex (MadGraph makes channels of diagrams with 3-point vertices
            only, unless no diagram has only those).
        decays: the decay groups.
    """

    model: Model
    initial: tuple[int, ...]
    final: tuple[int, ...]
    outgoing_ids: tuple[int, ...]
    colour_reps: tuple[int, ...]
    wavefunctions: tuple[WaveFunction, ...]
    diagrams: tuple[Diagram, ...]
    channels: tuple[Channel, ...]
    diagram_channel: tuple[int, ...]
    decays: tuple[DecayGroup, ...] = ()

    @property
    def n_external(self) -> int:
        return len(self.outgoing_ids)

    def wavefunction(self, slot: int) -> WaveFunction:
        """The current in ``slot`` (>= n_external)."""
        return self.wavefunctions[slot - self.n_external]

    def steps(self, diagram: int, term: int = 0) -> list[WaveFunction | AmplitudeStep]:
        """The vertex steps of one term of diagram ``diagram`` (0-based): its currents in
        evaluation order, then its amplitude step."""
        t = self.diagrams[diagram].terms[term]
        return [self.wavefunction(s) for s in t.wavefunctions] + [t.amplitude]

    def describe(self, diagram: int) -> str:
        """The internal lines of diagram ``diagram`` (0-based) as ``particle[legs]``, e.g.
        ``"t~[1, 3]"`` (``"contact"`` for a single vertex), for reading and debugging."""
        d = self.diagrams[diagram]
        parts = [
            f"{self.model.name_of(pdg)}{sorted(legs)}"
            for legs, pdg in sorted(d.lines, key=lambda x: (len(x[0]), sorted(x[0])))
        ]
        return " ".join(parts) if parts else "contact"


# --------------------------------------------------------------------------- colour

_FACTOR = re.compile(r"^([A-Za-z]+)\(([-\d,\s]*)\)$")


def parse_colour(text: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """A UFO colour string as ``(structure, indices)`` factors: ``"f(-1,1,2)*f(3,4,-1)"`` ->
    ``(("f", (-1, 1, 2)), ("f", (3, 4, -1)))``; ``"1"`` -> ``()``.

    Raises:
        ProcessError: for a term this engine does not read (numbers, sums).
    """
    text = text.replace(" ", "")
    if text == "1":
        return ()
    out = []
    for factor in text.split("*"):
        m = _FACTOR.match(factor)
        if m is None:
            raise ProcessError(f"colour structure {text!r}: cannot read factor {factor!r}")
        out.append((m.group(1), tuple(int(i) for i in m.group(2).split(",") if i)))
    return tuple(out)


# ------------------------------------------------------------------- generation core


@dataclass(eq=False)
class _Node:
    """A sub-diagram: a current with legs ``mask`` (or an external leg)."""

    mask: int
    o: int
    vertex: int = -1  # -1: external leg
    offshell: int = -1
    children: tuple[_Node, ...] = ()
    orders: dict[int, dict[str, int]] = field(default_factory=dict)

    @property
    def leg(self) -> int:
        return self.mask.bit_length() - 1


def _add_orders(
    target: dict[int, dict[str, int]], part: int, orders: Mapping[str, int]
) -> dict[int, dict[str, int]]:
    out = {p: dict(o) for p, o in target.items()}
    dst = out.setdefault(part, {})
    for c, v in orders.items():
        dst[c] = dst.get(c, 0) + v
    return out


def _merge_orders(items: Sequence[dict[int, dict[str, int]]]) -> dict[int, dict[str, int]]:
    out: dict[int, dict[str, int]] = {}
    for item in items:
        for p, o in item.items():
            dst = out.setdefault(p, {})
            for c, v in o.items():
                dst[c] = dst.get(c, 0) + v
    return out


def _bits(mask: int) -> Iterator[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def _partitions(mask: int, m: int) -> Iterator[tuple[int, ...]]:
    """Unordered partitions of ``mask`` into ``m`` non-empty blocks, each block listed
    once, blocks ordered by their lowest bit."""
    if m == 1:
        yield (mask,)
        return
    low = mask & -mask
    rest = mask ^ low
    sub = 0
    while True:
        # block containing the lowest bit: low | sub, sub a submask of rest (small first)
        block = low | sub
        remaining = mask ^ block
        if remaining and bin(remaining).count("1") >= m - 1:
            for tail in _partitions(remaining, m - 1):
                yield (block, *tail)
        if sub == rest:
            break
        sub = (sub - rest) & rest


class _Generator:
    """One generation: the model's lookup tables and the process's constraints."""

    def __init__(
        self,
        model: Model,
        outgoing_ids: Sequence[int],
        n_initial: int,
        core: Constraints,
        decays: Sequence[DecayGroup],
    ) -> None:
        self.model = model
        self.o_ids = tuple(outgoing_ids)
        self.n = len(self.o_ids)
        self.n_initial = n_initial
        self.final_mask = sum(1 << k for k in range(n_initial, self.n))
        self.parts = [core, *(d.constraints for d in decays)]
        self.groups = [sum(1 << k for k in d.legs) for d in decays]
        self.group_pdg = {g: d.pdg for g, d in zip(self.groups, decays, strict=True)}
        self.hierarchy = dict(model.order_hierarchy)
        # Vertex orders (every coupling of a vertex must have the same orders).
        self.v_orders: list[dict[str, int]] = []
        for v in model.vertices:
            orders = [dict(model.couplings[c].order) for c in v.couplings.values()]
            if any(o != orders[0] for o in orders):
                raise ProcessError(f"vertex {v.name}: couplings of different orders {orders}")
            self.v_orders.append(orders[0])
        self.sizes = sorted({len(v.particles) for v in model.vertices})
        # (sorted ids of all but one position) -> [(vertex, offshell, o_new, positions)]
        self.by_inputs: dict[tuple[int, ...], list[tuple[int, int, int, tuple[int, ...]]]] = {}
        # (sorted ids of all positions) -> [(vertex, positions)]
        self.by_all: dict[tuple[int, ...], list[tuple[int, tuple[int, ...]]]] = {}
        for iv, v in enumerate(model.vertices):
            ids = v.particles
            order = sorted(range(len(ids)), key=lambda k: ids[k])
            key_all = tuple(ids[k] for k in order)
            if not any(e[0] == iv for e in self.by_all.get(key_all, [])):
                self.by_all.setdefault(key_all, []).append((iv, tuple(order)))
            for j in range(len(ids)):
                rest = [k for k in order if k != j]
                key = tuple(ids[k] for k in rest)
                o_new = model.anti(ids[j])
                entries = self.by_inputs.setdefault(key, [])
                if not any(e[0] == iv and e[2] == o_new for e in entries):
                    entries.append((iv, j, o_new, tuple(rest)))
        self._part_cache: dict[int, int] = {}

    # ------------------------------------------------------------- structure
    def weighted(self, orders: Mapping[str, int]) -> int:
        if "WEIGHTED" in orders:
            return orders["WEIGHTED"]
        return sum(self.hierarchy.get(c, 0) * v for c, v in orders.items())

    def part_of(self, mask: int) -> int:
        """The part (0 production, k+1 decay k) owning a vertex whose current is ``mask``:
        the innermost decay group containing it."""
        found = self._part_cache.get(mask)
        if found is None:
            found, size = 0, None
            for k, g in enumerate(self.groups):
                if mask & g == mask and (size is None or bin(g).count("1") < size):
                    found, size = k + 1, bin(g).count("1")
            self._part_cache[mask] = found
        return found

    def laminar(self, mask: int) -> bool:
        return all(mask & g in (0, g, mask) for g in self.groups)

    def blocks_ok(self, mask: int, blocks: Sequence[int]) -> bool:
        """Every decay group strictly inside ``mask`` lies in one block."""
        for g in self.groups:
            if g != mask and mask & g == g and not any(b & g == g for b in blocks):
                return False
        return all(self.laminar(b) for b in blocks)

    def is_s_channel(self, mask: int) -> bool:
        return mask & self.final_mask == mask

    def line_allowed(self, mask: int, o: int) -> bool:
        """Exclusions of the internal line (mask, o), |mask| >= 2."""
        if mask in self.group_pdg:
            return o == self.group_pdg[mask]
        part = self.parts[self.part_of(mask)]
        if abs(o) in part.excluded:
            return False
        return not (self.is_s_channel(mask) and o in part.excluded_s_channels)

    # ---------------------------------------------------------------- orders
    def order_bounds(self, part: int, w_default: int | None) -> dict[str, int]:
        orders = self.parts[part].orders
        if orders.is_default:
            return {"WEIGHTED": w_default} if w_default is not None else {}
        bounds = {}
        for c in (*self.hierarchy, "WEIGHTED"):
            b = orders.max_order(c)
            if b is not None:
                bounds[c] = b
        return bounds

    def prune(
        self, node_orders: dict[int, dict[str, int]], bounds: list[dict[str, int]], slack: int
    ) -> bool:
        for p, orders in node_orders.items():
            for c, b in bounds[p].items():
                value = self.weighted(orders) if c == "WEIGHTED" else orders.get(c, 0)
                if value + (slack if c == "WEIGHTED" and p == 0 else 0) > b:
                    return True
        return False

    # ---------------------------------------------------------------- tables
    def combinations(
        self, blocks: Sequence[int], table: dict[int, dict[int, list]]
    ) -> Iterator[tuple[tuple[int, ...], tuple[int, int, int, tuple[int, ...]]]]:
        """For blocks with currents, every (o per block, vertex entry) that joins them."""
        options = [list(table.get(b, {})) for b in blocks]
        for os_ in itertools.product(*options):
            key = tuple(sorted(os_))
            for entry in self.by_inputs.get(key, ()):
                yield os_, entry

    @staticmethod
    def place(os_: Sequence[int], positions: Sequence[int]) -> list[tuple[int, int]]:
        """(position, block index) for blocks with ids ``os_`` on a vertex whose sorted
        slots have ``positions``: identical ids keep their block order."""
        order = sorted(range(len(os_)), key=lambda i: os_[i])
        return sorted(zip(positions, order, strict=True))

    def min_weighted_tables(self) -> dict[int, dict[int, int]]:
        """DP: for each current (mask, o), the least WEIGHTED order of its own part's
        vertices in any sub-diagram (exclusions applied, orders not)."""
        best: dict[int, dict[int, int]] = {}
        root_free = ((1 << self.n) - 1) ^ 1
        for k in range(1, self.n):
            best[1 << k] = {self.o_ids[k]: 0}
        for mask in sorted(_submasks(root_free), key=lambda m: bin(m).count("1")):
            if bin(mask).count("1") < 2 or not self.laminar(mask):
                continue
            found: dict[int, int] = {}
            for size in self.sizes:
                for blocks in _partitions(mask, size - 1):
                    if not self.blocks_ok(mask, blocks) or any(b not in best for b in blocks):
                        continue
                    for os_, (iv, _, o_new, _) in self.combinations(blocks, best):
                        if not self.line_allowed(mask, o_new):
                            continue
                        w = self.weighted(self.v_orders[iv]) + sum(
                            best[b][o]
                            for b, o in zip(blocks, os_, strict=True)
                            if b not in self.group_pdg
                        )
                        if w < found.get(o_new, 10**9):
                            found[o_new] = w
            if found:
                best[mask] = found
        return best

    def minimal_part_weights(self) -> list[int | None]:
        """Least WEIGHTED order of each part (production, decays) or None if no diagram."""
        best = self.min_weighted_tables()
        out: list[int | None] = [None] * len(self.parts)
        for k, g in enumerate(self.groups):
            w = best.get(g, {}).get(self.group_pdg[g])
            out[k + 1] = w
        rest = ((1 << self.n) - 1) ^ 1
        o_root = self.o_ids[0]
        for size in self.sizes:
            for blocks in _partitions(rest, size - 1):
                if not self.blocks_ok(rest | 1, blocks) or any(b not in best for b in blocks):
                    continue
                for os_ in itertools.product(*(list(best[b]) for b in blocks)):
                    key = tuple(sorted((o_root, *os_)))
                    for iv, _ in self.by_all.get(key, ()):
                        w = self.weighted(self.v_orders[iv]) + sum(
                            best[b][o]
                            for b, o in zip(blocks, os_, strict=True)
                            if b not in self.group_pdg
                        )
                        if out[0] is None or w < out[0]:
                            out[0] = w
        return out

    # ------------------------------------------------------------ generation
    def generate(self, w_default: list[int | None]) -> list[tuple[int, tuple[_Node, ...]]]:
        """Every diagram within the order bounds: (root vertex, nodes by position)."""
        bounds = [self.order_bounds(p, w_default[p]) for p in range(len(self.parts))]
        per_leg = self.min_weight_per_leg()
        no_decays = not self.groups
        table: dict[int, dict[int, list[_Node]]] = {}
        for k in range(1, self.n):
            table[1 << k] = {self.o_ids[k]: [_Node(1 << k, self.o_ids[k])]}
        rest = ((1 << self.n) - 1) ^ 1
        for mask in sorted(_submasks(rest), key=lambda m: bin(m).count("1")):
            size_s = bin(mask).count("1")
            if size_s < 2 or not self.laminar(mask):
                continue
            part = self.part_of(mask)
            # Least WEIGHTED the rest of the production diagram still adds (no decays).
            slack = per_leg * (self.n - size_s - 1) if no_decays else 0
            found: dict[int, list[_Node]] = {}
            for size in self.sizes:
                for blocks in _partitions(mask, size - 1):
                    if not self.blocks_ok(mask, blocks) or any(b not in table for b in blocks):
                        continue
                    for os_, (iv, off, o_new, positions) in self.combinations(blocks, table):
                        if not self.line_allowed(mask, o_new):
                            continue
                        placed = self.place(os_, positions)
                        lists = [table[blocks[i]][os_[i]] for _, i in placed]
                        for children in itertools.product(*lists):
                            orders = _add_orders(
                                _merge_orders([c.orders for c in children]),
                                part,
                                self.v_orders[iv],
                            )
                            if self.prune(orders, bounds, slack):
                                continue
                            node = _Node(mask, o_new, iv, off, tuple(children), orders)
                            found.setdefault(o_new, []).append(node)
            if found:
                table[mask] = found
        diagrams: list[tuple[int, tuple[_Node, ...]]] = []
        root = _Node(1, self.o_ids[0])
        for size in self.sizes:
            for blocks in _partitions(rest, size - 1):
                if not self.blocks_ok(rest | 1, blocks) or any(b not in table for b in blocks):
                    continue
                for os_ in itertools.product(*(list(table[b]) for b in blocks)):
                    all_ids = (self.o_ids[0], *os_)
                    key = tuple(sorted(all_ids))
                    for iv, positions in self.by_all.get(key, ()):
                        placed = self.place(all_ids, positions)
                        lists = [
                            [root] if i == 0 else table[blocks[i - 1]][os_[i - 1]]
                            for _, i in placed
                        ]
                        for nodes in itertools.product(*lists):
                            orders = _add_orders(
                                _merge_orders([c.orders for c in nodes]), 0, self.v_orders[iv]
                            )
                            if self.prune(orders, bounds, 0):
                                continue
                            diagrams.append((iv, tuple(nodes)))
        return diagrams

    def min_weight_per_leg(self) -> int:
        """Least WEIGHTED order a vertex adds per external leg it adds (>= 0)."""
        ratios = [
            self.weighted(o) / (len(v.particles) - 2)
            for v, o in zip(self.model.vertices, self.v_orders, strict=True)
            if len(v.particles) > 2
        ]
        return int(min(ratios)) if ratios else 0


def _submasks(mask: int) -> Iterator[int]:
    sub = mask
    while sub:
        yield sub
        sub = (sub - 1) & mask


# ------------------------------------------------------------------- diagram analysis


def _walk(node: _Node) -> Iterator[_Node]:
    """Internal nodes of a subtree, children first."""
    for c in node.children:
        yield from _walk(c)
    if node.vertex >= 0:
        yield node


def _fermion_pairs(
    model: Model, vertex: Vertex, slots: Sequence[_Node | None], ends: Mapping[int, int]
) -> tuple[int | None, list[int]]:
    """At one vertex: the external fermion end continued through the off-shell position
    (``None`` slot) and the fermion-number pairs closed here (ket end, bra end)."""
    fermion_pos = [k for k, p in enumerate(vertex.particles) if model.is_fermion(p)]
    if not fermion_pos:
        return None, []
    if len(fermion_pos) != 2:
        raise ProcessError(f"vertex {vertex.name}: only two-fermion vertices are supported")
    a, b = fermion_pos
    na, nb = slots[a], slots[b]
    if na is None:
        return ends[id(nb)], []
    if nb is None:
        return ends[id(na)], []
    return None, [ends[id(na)], ends[id(nb)]]


def _permutation_sign(seq: Sequence[int]) -> int:
    inversions = sum(1 for i in range(len(seq)) for j in range(i + 1, len(seq)) if seq[i] > seq[j])
    return -1 if inversions % 2 else 1


def _fermion_sign(model: Model, root_vertex: int, nodes: Sequence[_Node]) -> int:
    ends: dict[int, int] = {}
    flat: list[int] = []

    def visit(node: _Node) -> None:
        for c in node.children:
            visit(c)
        if node.vertex < 0:
            if model.is_fermion(node.o):
                ends[id(node)] = node.leg
            return
        slots: list[_Node | None] = list(node.children)
        slots.insert(node.offshell, None)
        open_end, pairs = _fermion_pairs(model, model.vertices[node.vertex], slots, ends)
        flat.extend(pairs)
        if open_end is not None:
            ends[id(node)] = open_end

    for n in nodes:
        visit(n)
    _, pairs = _fermion_pairs(model, model.vertices[root_vertex], list(nodes), ends)
    flat.extend(pairs)
    return _permutation_sign(flat)


def _canonical_key(root_vertex: int, nodes: Sequence[_Node]) -> tuple:
    lines = []
    for n in nodes:
        for node in _walk(n):
            lines.append((node.mask, node.o, node.vertex))
    return (root_vertex, frozenset(lines))


# ------------------------------------------------------------------------ public entry


def generate_diagrams(
    model: Model | None,
    initial: Sequence[int],
    final: Sequence[int],
    constraints: Constraints | None = None,
    decays: Sequence[DecayGroup] = (),
    *,
    params: SMParameters | None = None,
    zero_width_t_channel: bool = True,
    production_weighted: int | None = None,
) -> DiagramSet:
    """All tree diagrams of ``initial > final`` that pass ``constraints`` (and ``decays``).

    Args:
        model: the model (default: MadGraph's ``sm``).
        initial: one (decay) or two incoming PDG ids.
        final: outgoing PDG ids (for decay chains: the final decay products).
        constraints: orders, exclusions and s-channel conditions of the production.
        decays: decay groups (possibly nested) of the chain.
        params: masses and widths of the propagators (default ``SMParameters()``).
        zero_width_t_channel: use zero width in t-channel propagators (MadGraph >= 2.9's
            default ``zerowidth_tchannel``); s-channel lines keep their width.
        production_weighted: with default production orders, the lowest WEIGHTED order of
            the whole multiparticle process (:func:`lowest_production_weighted` minimised
            over its subprocesses): MadGraph applies that one order to every subprocess,
            so a subprocess whose own lowest order is higher (``u c~ > mu+ mu- d s~``, only
            through W exchange, in ``p p > mu+ mu- j j``) has no diagram. None: the
            subprocess's own lowest order.

    Returns:
        A :class:`DiagramSet`.

    Raises:
        ProcessError: unknown particles, or no diagram passes (the message names the
            process).
    """
    model = model if model is not None else sm_model()
    params = params if params is not None else SMParameters()
    constraints = constraints if constraints is not None else Constraints()
    initial, final = tuple(initial), tuple(final)
    if len(initial) not in (1, 2) or not final:
        raise ProcessError(f"process {initial} > {final}: need 1 or 2 incoming, >= 1 outgoing")
    for pdg in (*initial, *final):
        model.particle(pdg)
    outgoing_ids = tuple(model.anti(p) for p in initial) + final
    n = len(outgoing_ids)
    name = " ".join(model.name_of(p) for p in initial) + " > "
    name += " ".join(model.name_of(p) for p in final)
    for d in decays:
        if not d.legs or any(k < len(initial) or k >= n for k in d.legs):
            raise ProcessError(f"process {name}: decay of {d.pdg} has legs {sorted(d.legs)}")
    gen = _Generator(model, outgoing_ids, len(initial), constraints, decays)
    default_parts = [p.orders.is_default for p in gen.parts]
    w_min: list[int | None] = [None] * len(gen.parts)
    if any(default_parts):
        w_min = gen.minimal_part_weights()
        if any(w is None for w, d in zip(w_min, default_parts, strict=True) if d):
            raise ProcessError(f"process {name}: no tree-level diagram in model {model.name}")
    if production_weighted is not None and default_parts[0]:
        if w_min[0] is not None and w_min[0] > production_weighted:
            raise ProcessError(
                f"process {name}: no diagram at the process's lowest order "
                f"WEIGHTED <= {production_weighted} (its own lowest is {w_min[0]})"
            )
        w_min[0] = production_weighted
    # MadGraph raises WEIGHTED until diagrams pass every condition ("Trying coupling order
    # WEIGHTED<=..."); with exclusions in the minimum, one pass usually suffices.
    for extra in range(0, 2 * n + 1):
        bounds = [
            (w + extra if (w is not None and d) else None)
            for w, d in zip(w_min, default_parts, strict=True)
        ]
        raw = gen.generate(bounds)
        kept = _select(gen, raw, bounds)
        if kept or not any(default_parts):
            break
    if not kept:
        raise ProcessError(f"process {name}: no diagram passes the orders and s-channel conditions")
    return _assemble(gen, model, params, initial, final, kept, decays, zero_width_t_channel)


def lowest_production_weighted(
    model: Model | None,
    initial: Sequence[int],
    final: Sequence[int],
    constraints: Constraints | None = None,
    decays: Sequence[DecayGroup] = (),
) -> int | None:
    """The least WEIGHTED (= QCD + 2 QED) order of the production diagrams of
    ``initial > final`` (decays apart), or None when it has no tree diagram. The minimum
    over a multiparticle process's subprocesses is MadGraph's default order of the whole
    process (``production_weighted`` of :func:`generate_diagrams`)."""
    model = model if model is not None else sm_model()
    constraints = constraints if constraints is not None else Constraints()
    initial, final = tuple(initial), tuple(final)
    outgoing_ids = tuple(model.anti(p) for p in initial) + final
    gen = _Generator(model, outgoing_ids, len(initial), constraints, decays)
    return gen.minimal_part_weights()[0]


def _select(
    gen: _Generator, raw: list[tuple[int, tuple[_Node, ...]]], bounds: list[int | None]
) -> list[tuple[int, tuple[_Node, ...], dict[int, dict[str, int]]]]:
    """Order conditions per part (exact operators, default WEIGHTED), s-channel
    requirements and duplicates."""
    out = []
    seen: set[tuple] = set()
    for iv, nodes in raw:
        orders = _add_orders(_merge_orders([c.orders for c in nodes]), 0, gen.v_orders[iv])
        ok = True
        for p, part in enumerate(gen.parts):
            po = orders.get(p, {})
            if part.orders.is_default:
                ok = bounds[p] is None or gen.weighted(po) <= bounds[p]
            else:
                ok = part.orders.allows_amplitude(po)
            if not ok:
                break
        if not ok:
            continue
        # s-channel lines per part
        s_lines: dict[int, set[int]] = {}
        for n in nodes:
            for node in _walk(n):
                if node.mask in gen.group_pdg or not gen.is_s_channel(node.mask):
                    continue
                s_lines.setdefault(gen.part_of(node.mask), set()).add(node.o)
        if any(
            not req & s_lines.get(p, set())
            for p, part in enumerate(gen.parts)
            for req in part.required_s_channels
        ):
            continue
        key = _canonical_key(iv, nodes)
        if key in seen:
            continue
        seen.add(key)
        out.append((iv, nodes, orders))
    return out


def _assemble(
    gen: _Generator,
    model: Model,
    params: SMParameters,
    initial: tuple[int, ...],
    final: tuple[int, ...],
    kept: list[tuple[int, tuple[_Node, ...], dict[int, dict[str, int]]]],
    decays: Sequence[DecayGroup],
    zero_width_t_channel: bool,
) -> DiagramSet:
    n = gen.n
    final_legs = frozenset(range(len(initial), n))
    wavefunctions: list[WaveFunction] = []
    slot_of: dict[tuple, int] = {}

    def legs_of(mask: int) -> frozenset[int]:
        return frozenset(_bits(mask))

    def current(node: _Node, choice: Mapping[int, int]) -> int:
        if node.vertex < 0:
            return node.leg
        inputs = tuple(current(c, choice) for c in node.children)
        colour = choice.get(id(node), 0)
        key = (node.vertex, colour, node.offshell, inputs)
        slot = slot_of.get(key)
        if slot is None:
            vertex = model.vertices[node.vertex]
            line = vertex.particles[node.offshell]
            kind = "s" if gen.is_s_channel(node.mask) else "t"
            width = model.width(line, params)
            if kind == "t" and zero_width_t_channel:
                width = 0.0
            slot = n + len(wavefunctions)
            wavefunctions.append(
                WaveFunction(
                    slot=slot,
                    vertex=node.vertex,
                    colour=colour,
                    inputs=inputs,
                    offshell=node.offshell,
                    pdg=node.o,
                    mass=model.mass(line, params),
                    width=width,
                    legs=legs_of(node.mask),
                    kind=kind,
                )
            )
            slot_of[key] = slot
        return slot

    diagrams: list[Diagram] = []
    propagator_sets: list[tuple[tuple[Propagator, ...], bool]] = []
    for number, (iv, nodes, orders) in enumerate(kept, start=1):
        internal = [node for nd in nodes for node in _walk(nd)]
        multi = [node for node in internal if len(model.vertices[node.vertex].colour) > 1]
        root_colours = range(len(model.vertices[iv].colour))
        terms = []
        for combo in itertools.product(
            *(range(len(model.vertices[node.vertex].colour)) for node in multi), root_colours
        ):
            choice = {id(node): c for node, c in zip(multi, combo[:-1], strict=True)}
            inputs = tuple(current(nd, choice) for nd in nodes)
            needed = _needed_slots(inputs, n, wavefunctions)
            amplitude = AmplitudeStep(iv, combo[-1], inputs)
            colour = _colour_factor(model, iv, combo[-1], nodes, choice)
            terms.append(DiagramTerm(tuple(needed), amplitude, colour))
        props = _propagators(gen, model, params, internal, final_legs)
        three_point = all(
            len(model.vertices[v].particles) == 3 for v in (iv, *(nd.vertex for nd in internal))
        )
        propagator_sets.append((props, three_point))
        total: dict[str, int] = {}
        for po in orders.values():
            for c, v in po.items():
                total[c] = total.get(c, 0) + v
        part_orders = tuple(dict(orders.get(p, {})) for p in range(len(gen.parts)))
        diagrams.append(
            Diagram(
                number=number,
                terms=tuple(terms),
                propagators=props,
                orders={c: v for c, v in sorted(total.items()) if v},
                part_orders=part_orders,
                fermion_sign=_fermion_sign(model, iv, nodes),
                lines=tuple((legs_of(node.mask), node.o) for node in internal),
            )
        )
    # MadGraph's configs: one channel per propagator structure of the diagrams with only
    # 3-point vertices (a 4-point vertex has no phase-space mapping); all if there is none.
    use_all = not any(three for _, three in propagator_sets)
    # Diagrams whose propagators have the same legs, kinds, masses and widths share one
    # channel (MadGraph's identical configs: a photon and a gluon s-channel map alike).
    channels: list[Channel] = []
    keys: list[tuple] = []
    diagram_channel: list[int] = []
    for props, three_point in propagator_sets:
        if not (three_point or use_all):
            diagram_channel.append(-1)
            continue
        key = tuple(sorted((p.kind, p.legs, p.mass, p.width) for p in props))
        if key not in keys:
            keys.append(key)
            channels.append(Channel(props))
        diagram_channel.append(keys.index(key))
    return DiagramSet(
        model=model,
        initial=initial,
        final=final,
        outgoing_ids=gen.o_ids,
        colour_reps=tuple(model.colour(o) for o in gen.o_ids),
        wavefunctions=tuple(wavefunctions),
        diagrams=tuple(diagrams),
        channels=tuple(channels),
        diagram_channel=tuple(diagram_channel),
        decays=tuple(decays),
    )


def _needed_slots(inputs: Sequence[int], n: int, wavefunctions: Sequence[WaveFunction]) -> list:
    """Current slots reachable from ``inputs``, each after its own inputs."""
    out: list[int] = []
    seen: set[int] = set()

    def visit(slot: int) -> None:
        if slot < n or slot in seen:
            return
        seen.add(slot)
        for s in wavefunctions[slot - n].inputs:
            visit(s)
        out.append(slot)

    for s in inputs:
        visit(s)
    return out


def _colour_factor(
    model: Model,
    root_vertex: int,
    root_colour: int,
    nodes: Sequence[_Node],
    choice: Mapping[int, int],
) -> ColourFactor:
    """The colour factor of one term: every vertex's colour string with its positions
    replaced by line indices (external leg k -> k, internal lines and summed indices
    negative)."""
    labels: dict[int, int] = {}
    counter = itertools.count(1)
    factors: list[tuple[str, tuple[int, ...]]] = []

    def label(node: _Node) -> int:
        if node.vertex < 0:
            return node.leg
        if id(node) not in labels:
            labels[id(node)] = -next(counter)
        return labels[id(node)]

    def emit(vertex: Vertex, colour: int, slots: Sequence[int]) -> None:
        local: dict[int, int] = {}
        for structure, indices in parse_colour(vertex.colour[colour]):
            mapped = []
            for i in indices:
                if i > 0:
                    mapped.append(slots[i - 1])
                else:
                    if i not in local:
                        local[i] = -next(counter)
                    mapped.append(local[i])
            factors.append((structure, tuple(mapped)))

    def visit(node: _Node) -> None:
        if node.vertex < 0:
            return
        for c in node.children:
            visit(c)
        slots = [label(c) for c in node.children]
        slots.insert(node.offshell, label(node))
        emit(model.vertices[node.vertex], choice.get(id(node), 0), slots)

    for nd in nodes:
        visit(nd)
    emit(model.vertices[root_vertex], root_colour, [label(nd) for nd in nodes])
    return tuple(factors)


def _propagators(
    gen: _Generator,
    model: Model,
    params: SMParameters,
    internal: Sequence[_Node],
    final_legs: frozenset[int],
) -> tuple[Propagator, ...]:
    s_props, t_props = [], []
    for node in internal:
        legs = frozenset(_bits(node.mask))
        mass, width = model.mass(node.o, params), model.width(node.o, params)
        if gen.is_s_channel(node.mask):
            s_props.append(Propagator(node.o, mass, width, "s", tuple(sorted(legs))))
        else:
            side = tuple(sorted(final_legs - legs))
            t_props.append(Propagator(node.o, mass, width, "t", side))
    s_props.sort(key=lambda p: (-len(p.legs), p.legs, p.pdg))
    t_props.sort(key=lambda p: (len(p.legs), p.legs, p.pdg))
    return (*s_props, *t_props)


# --------------------------------------------------------------- helpers for callers


def decay_groups(
    final: Sequence[int],
    decays: Sequence[object | None],
    n_initial: int,
    constraints_of: Callable[[object], Constraints],
) -> tuple[tuple[int, ...], tuple[DecayGroup, ...]]:
    """External final state and decay groups of a decay chain.

    Args:
        final: the production's final state (PDG ids).
        decays: per final particle, its decay (an object with ``final`` and ``decays``
            like :class:`~processes.auto.syntax.Subprocess`) or ``None``.
        n_initial: number of incoming particles (leg numbers start after them).
        constraints_of: the :class:`Constraints` of one decay object.

    Returns:
        (final decay products in place of their parents, decay groups).
    """
    out: list[int] = []
    groups: list[DecayGroup] = []

    def expand(pdgs: Sequence[int], subs: Sequence[object | None]) -> list[int]:
        legs_all: list[int] = []
        for pdg, sub in zip(pdgs, subs, strict=True):
            if sub is None:
                legs_all.append(n_initial + len(out))
                out.append(pdg)
                continue
            legs = expand(sub.final, sub.decays)  # type: ignore[attr-defined]
            groups.append(DecayGroup(pdg, frozenset(legs), constraints_of(sub)))
            legs_all.extend(legs)
        return legs_all

    expand(final, decays)
    return tuple(out), tuple(groups)
