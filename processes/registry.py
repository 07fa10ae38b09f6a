"""The analytic process library, its registry, and the resolution of any process line.

Each family of closed-form matrix elements is one :class:`AnalyticProcess` subclass,
parameterised by the PDG ids of its external particles and registered (with
:func:`register`) under every partonic MadGraph name it describes: ``u u~ > e+ e-`` and
``u~ u > e+ e-`` are two names of the one Drell-Yan class. :func:`load` and
:func:`expand` turn a process string with multiparticle labels into those subprocesses.

:func:`resolve` turns any MadGraph process line into partonic subprocesses with one of
two engines: the analytic library or the automatic helicity-amplitude engine
(:class:`~processes.auto.process.AutoProcess`); ``engine="auto"`` takes the library when
it has every subprocess that has a tree diagram, else the engine. The engine's
subprocesses whose matrix elements coincide share one evaluation plan, as MadGraph groups
them: ``c c~ > t t~ g`` is a :class:`FlavourAlias` of ``u u~ > t t~ g``. Flavours that the
model cannot tell apart (massless, no Yukawa coupling, unit CKM matrix: u c; d s, and b
when massless; e mu; the three neutrinos) are relabelled to a canonical order of
appearance, and two subprocesses share a plan only if their diagrams, so relabelled, are
the same (vertices, couplings, propagator masses and widths, colour factors, fermion
signs), which makes their |M|^2 equal at every phase-space point.

Example:
    >>> group = load("p p > t t~")
    >>> [p.name for p in group][:3]
    ['g g > t t~', 'u u~ > t t~', 'c c~ > t t~']
    >>> load("g g > t t~")
    GGToTTbar('g g > t t~')
    >>> subs = resolve("p p > t t~ j", engine="amplitudes")
    >>> len(subs), len({id(p.representative if isinstance(p, FlavourAlias) else p) for p in subs})
    (25, 13)
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import torch
from torch import Tensor

from evgen.errors import ProcessError
from evgen.params import SMParameters
from processes.base import Channel, Process, Propagator
from processes.parse import ProcessSpec, parse, process_name
from processes.particles import PARTICLES, particle_name, pdg_id

__all__ = [
    "AnalyticProcess",
    "ProcessGroup",
    "FlavourAlias",
    "ENGINES",
    "alpha_s_tensor",
    "register",
    "registered_names",
    "lookup",
    "load",
    "expand",
    "label_definitions",
    "resolve",
    "engine_subprocesses",
    "matrix_element_owner",
]

PdgPair = tuple[int, int]


class AnalyticProcess(Process):
    """Base of the hand-written processes: a closed-form |M|^2 for fixed PDG ids.

    A subclass lists the partonic processes it describes in
    :meth:`partonic_processes` and reads the positions of its particles from
    ``self.pdg_ids``, so one class serves every flavour and both beam orders.

    Args:
        incoming: PDG ids of the two incoming particles, e.g. ``(2, -2)``.
        outgoing: PDG ids of the outgoing particles, e.g. ``(-11, 11)``.
        params: Standard Model parameters (default :class:`SMParameters`).

    Raises:
        ProcessError: if the class does not describe these particles.
    """

    #: What the family covers, in one phrase, for error messages.
    coverage: ClassVar[str] = ""

    def __init__(
        self,
        incoming: Iterable[int],
        outgoing: Iterable[int],
        params: SMParameters | None = None,
    ) -> None:
        super().__init__(params)
        inc = tuple(int(i) for i in incoming)
        out = tuple(int(i) for i in outgoing)
        self.name = process_name([particle_name(i) for i in inc], [particle_name(i) for i in out])
        if (inc, out) not in set(type(self).partonic_processes()):
            raise ProcessError(f"{type(self).__name__} does not describe {self.name!r}")
        self.incoming = (inc[0], inc[1])
        self.outgoing = out

    @classmethod
    @abstractmethod
    def partonic_processes(cls) -> Iterator[tuple[PdgPair, tuple[int, ...]]]:
        """Every (incoming, outgoing) PDG-id pair this class describes."""

    @property
    def masses(self) -> tuple[float, ...]:
        """External masses in GeV; the b is massless in this library (5-flavour scheme)."""
        return tuple(0.0 if abs(i) == 5 else self.params.mass(i) for i in self.pdg_ids)

    def index_of(self, pdg: int) -> int:
        """Position (0-based, incoming first) of the particle with PDG id ``pdg``."""
        return self.pdg_ids.index(pdg)

    def _colour_table(self, tags: dict[int, tuple[int, int]], momenta: Tensor) -> Tensor:
        """(n, n_ext, 2) int64 tags from {position: (colour, anticolour)}, 0 elsewhere."""
        rows = [tags.get(pos, (0, 0)) for pos in range(len(self.pdg_ids))]
        table = torch.tensor(rows, dtype=torch.int64, device=momenta.device)
        return table.expand(momenta.shape[0], -1, -1).clone()


def alpha_s_tensor(alpha_s: Tensor | float | None, momenta: Tensor, default: float) -> Tensor:
    """alpha_s per event as a tensor on the device and dtype of ``momenta``."""
    value = default if alpha_s is None else alpha_s
    return torch.as_tensor(value, dtype=momenta.dtype, device=momenta.device)


_REGISTRY: dict[str, tuple[type[AnalyticProcess], PdgPair, tuple[int, ...]]] = {}
_FAMILIES: list[type[AnalyticProcess]] = []


def register(cls: type[AnalyticProcess]) -> type[AnalyticProcess]:
    """Class decorator: register ``cls`` under each of its partonic MadGraph names."""
    for incoming, outgoing in cls.partonic_processes():
        name = process_name(
            [particle_name(i) for i in incoming], [particle_name(i) for i in outgoing]
        )
        if name in _REGISTRY:
            raise RuntimeError(f"{name!r} registered twice ({_REGISTRY[name][0].__name__}, {cls})")
        _REGISTRY[name] = (cls, incoming, outgoing)
    _FAMILIES.append(cls)
    return cls


def _table() -> dict[str, tuple[type[AnalyticProcess], PdgPair, tuple[int, ...]]]:
    # The family modules register themselves on import; importing them here (not at
    # module level) keeps registry <- family imports one-directional.
    import processes.drell_yan  # noqa: F401
    import processes.ttbar  # noqa: F401
    import processes.w_lnu  # noqa: F401

    return _REGISTRY


def registered_names() -> list[str]:
    """Every partonic process name in the library (b-initiated ones need 5 flavours)."""
    return list(_table())


def lookup(name: str) -> type[AnalyticProcess] | None:
    """The class registered under the partonic process ``name``, or ``None``."""
    entry = _table().get(" ".join(name.split()))
    return None if entry is None else entry[0]


def _coverage() -> str:
    _table()
    return "; ".join(cls.coverage for cls in _FAMILIES)


@dataclass
class ProcessGroup:
    """The partonic subprocesses of a process string with multiparticle labels.

    Attributes:
        name: the process string as given (normalised spacing), e.g. ``"p p > t t~"``.
        subprocesses: every contributing partonic process, each with a definite beam
            order (``u u~ > t t~`` and ``u~ u > t t~`` are two entries).
    """

    name: str
    subprocesses: list[Process] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.subprocesses)

    def __iter__(self) -> Iterator[Process]:
        return iter(self.subprocesses)

    def __getitem__(self, index: int) -> Process:
        return self.subprocesses[index]

    @property
    def names(self) -> list[str]:
        """The subprocess names, in order."""
        return [p.name for p in self.subprocesses]


def _expand_spec(spec: ProcessSpec, params: SMParameters | None, n_flavours: int) -> list[Process]:
    table = _table()
    found: dict[str, Process] = {}
    needs_five_flavours = False
    for incoming, outgoing in spec.combinations(n_flavours):
        name = process_name(incoming, outgoing)
        entry = table.get(name)
        if entry is None or name in found:
            continue
        cls, inc, out = entry
        if n_flavours == 4 and any(abs(i) == 5 for i in inc):
            needs_five_flavours = True
            continue
        found[name] = cls(inc, out, params)
    if found:
        return list(found.values())
    if needs_five_flavours:
        raise ProcessError(
            f"process {spec.name!r}: the analytic library has only a massless b; "
            "b-initiated processes need the 5-flavour scheme (n_flavours=5)"
        )
    hint = ""
    pdgs_in = {abs(pdg_id(n)) for n in spec.incoming if n in PARTICLES}
    pdgs_out = {abs(pdg_id(n)) for n in spec.outgoing if n in PARTICLES}
    if pdgs_in & pdgs_out:
        hint = " (same flavours in and out: its t-channel diagrams are not implemented)"
    what = ": none of its subprocesses is" if spec.has_multiparticles else " is"
    raise ProcessError(
        f"process {spec.name!r}{what} not in the analytic library yet{hint}; "
        f"the analytic library covers {_coverage()}"
    )


def expand(name: str, params: SMParameters | None = None, *, n_flavours: int = 4) -> list[Process]:
    """Every partonic subprocess of ``name`` that the library has, in label order.

    Combinations without a diagram in the library (``g u > t t~``) are skipped.

    Args:
        name: MadGraph process string, e.g. ``"p p > e+ ve"``.
        params: Standard Model parameters shared by all subprocesses.
        n_flavours: 4 or 5: whether ``p`` and ``j`` contain ``b b~``.

    Raises:
        ProcessError: for syntax or particle names :func:`parse` rejects, or if no
            subprocess contributes (the message says what the library covers).
    """
    return _expand_spec(parse(name), params, n_flavours)


def load(
    name: str, params: SMParameters | None = None, *, n_flavours: int = 4
) -> Process | ProcessGroup:
    """The :class:`Process` for a partonic name, a :class:`ProcessGroup` otherwise.

    A name with a multiparticle label (``p``, ``j``, ``l+``, ``l-``, ``vl``, ``vl~``)
    gives a group of its subprocesses (see :func:`expand`); a name made only of
    particles (``"g g > t t~"``) gives that one process.
    """
    spec = parse(name)
    subprocesses = _expand_spec(spec, params, n_flavours)
    if spec.has_multiparticles:
        return ProcessGroup(spec.name, subprocesses)
    return subprocesses[0]


# --------------------------------------------------------------------------- any process

Engine = Literal["auto", "analytic", "amplitudes"]
#: The matrix-element engines :func:`resolve` knows (the card's ``engine`` key).
ENGINES: tuple[str, ...] = ("auto", "analytic", "amplitudes")

Definitions = Sequence[str] | Mapping[str, Sequence[str] | str]

# Flavours the sm cannot tell apart when massless (no Yukawa coupling, unit CKM matrix),
# each class in its canonical order: d s b, u c, e mu, the neutrinos.
_FLAVOUR_CLASSES = ((1, 3, 5), (2, 4), (11, 13), (12, 14, 16))


class FlavourAlias(Process):
    """A subprocess whose |M|^2 is that of another one under a relabelling of flavours
    the model cannot tell apart (MadGraph's grouping of subprocesses with identical matrix
    elements): ``c c~ > t t~ g`` evaluated with the plan of ``u u~ > t t~ g``.

    The external particles are in the same order as the representative's and have the
    same masses, spins and colours; |M|^2, the SDE channel weights and the colour flows
    are the representative's at the same momenta. :func:`resolve` makes aliases only
    after checking that the relabelled diagrams coincide.

    Args:
        representative: the process whose plan is evaluated.
        incoming: PDG ids of this subprocess's incoming particles.
        outgoing: PDG ids of its outgoing particles, in the representative's order.
        flavour_map: representative PDG id -> this subprocess's PDG id for the relabelled
            flavours (|PDG| ids, sign kept; others map to themselves), used to name the
            propagators of :meth:`channels`.
        name: MadGraph name of this subprocess (default: from the particles).

    Attributes:
        representative: the process whose matrix element is used.
    """

    def __init__(
        self,
        representative: Process,
        incoming: Sequence[int],
        outgoing: Sequence[int],
        flavour_map: Mapping[int, int],
        name: str | None = None,
    ) -> None:
        super().__init__(representative.params)
        inc, out = tuple(int(i) for i in incoming), tuple(int(i) for i in outgoing)
        if len(inc) != len(representative.incoming) or len(out) != len(representative.outgoing):
            raise ProcessError(
                f"FlavourAlias: {inc} > {out} does not have the external particles of "
                f"{representative.name!r}"
            )
        self.representative = representative
        self.incoming = inc  # type: ignore[assignment]
        self.outgoing = out
        self.flavour_map = {int(k): int(v) for k, v in flavour_map.items()}
        self.name = name or process_name(
            [particle_name(i) for i in inc], [particle_name(i) for i in out]
        )
        self.alpha_s_power = representative.alpha_s_power
        self.alpha_ew_power = representative.alpha_ew_power
        self.onshell_vetoes: frozenset[int] = getattr(representative, "onshell_vetoes", frozenset())

    def _relabel(self, pdg: int) -> int:
        target = self.flavour_map.get(abs(pdg), abs(pdg))
        return target if pdg > 0 else -target

    @property
    def masses(self) -> tuple[float, ...]:
        """External masses in GeV (the representative's: the relabelled flavours have the
        same masses)."""
        return self.representative.masses

    def matrix_element(self, momenta: Tensor, alpha_s: Tensor | float | None = None) -> Tensor:
        """The representative's |M|^2 at ``momenta`` (n, n_ext, 4) GeV; (n,)."""
        return self.representative.matrix_element(momenta, alpha_s)

    def channels(self) -> list[Channel]:
        """The representative's channels, propagators renamed to this flavour assignment."""
        return [
            Channel(
                tuple(
                    Propagator(self._relabel(p.pdg), p.mass, p.width, p.kind, p.legs, p.onshell)
                    for p in ch.propagators
                )
            )
            for ch in self.representative.channels()
        ]

    def channel_weights(self, momenta: Tensor) -> Tensor:
        """The representative's SDE weights (n, n_channels) at ``momenta``."""
        return self.representative.channel_weights(momenta)

    def colour_flow(self, momenta: Tensor, u: Tensor) -> Tensor:
        """The representative's colour flow (same legs, same colour representations)."""
        return self.representative.colour_flow(momenta, u)


def matrix_element_owner(process: Process) -> Process:
    """The process whose |M|^2 ``process`` evaluates: its representative for a
    :class:`FlavourAlias`, itself otherwise (subprocesses with one owner need one
    evaluation per phase-space point)."""
    return process.representative if isinstance(process, FlavourAlias) else process


def label_definitions(
    definitions: Definitions | None, n_flavours: int = 4
) -> dict[str, tuple[str, ...]]:
    """User multiparticle labels: MadGraph ``define`` lines (``["define q = u c d s"]``)
    or a mapping label -> particle names or labels (``{"q": ["u", "c"]}`` or
    ``{"q": "u c"}``), read in order as MadGraph reads ``define`` lines.

    Raises:
        ProcessError: for a line that is not a definition, a label that is a particle name,
            an unknown particle or an empty definition (quoting it).
    """
    from processes.auto.syntax import parse_definitions

    if definitions is None:
        return {}
    if isinstance(definitions, str):
        raise ProcessError(
            f"definitions: expected a list of 'define LABEL = PARTICLES' lines or a mapping "
            f"label -> particles, got the string {definitions!r}"
        )
    if isinstance(definitions, Mapping):
        lines = []
        for label, names in definitions.items():
            words = names.split() if isinstance(names, str) else [str(n) for n in names]
            lines.append(f"define {label} = {' '.join(words)}")
    else:
        lines = [str(line) for line in definitions]
    return parse_definitions(lines, n_flavours)


def resolve(
    process: str,
    params: SMParameters | None = None,
    *,
    engine: str = "auto",
    definitions: Definitions | None = None,
    n_flavours: int = 4,
    cache_dir: str | Path | None = None,
) -> list[Process]:
    """Every partonic subprocess of a MadGraph process line, from the chosen engine.

    Args:
        process: one ``generate`` line: multiparticle labels, coupling orders, ``/``,
            ``$``, ``$$``, required s-channels, decay chains
            (:mod:`processes.auto.syntax`).
        params: Standard Model parameters shared by all subprocesses.
        engine: ``"analytic"`` (the library, :func:`expand`; bare lines only),
            ``"amplitudes"`` (the automatic engine, :func:`engine_subprocesses`) or
            ``"auto"``: the library when it has every subprocess with a tree diagram
            (the line then has no orders, exclusions, s-channel conditions or
            definitions), else the engine.
        definitions: user multiparticle labels (:func:`label_definitions`).
        n_flavours: 4 or 5: whether ``p`` and ``j`` hold ``b b~`` (massless with 5).
        cache_dir: folder for the engine's evaluation plans (None: built in memory).

    Returns:
        The subprocesses, each with a definite beam order, in label order; subprocesses
        without a tree diagram are left out.

    Raises:
        ProcessError: for an unknown engine, a syntax error, bad definitions, or no
            subprocess with a diagram (the analytic engine: none in the library).
    """
    from processes.auto.syntax import parse_process

    if engine not in ENGINES:
        raise ProcessError(f"engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
    params = params if params is not None else SMParameters()
    table = label_definitions(definitions, n_flavours)
    if engine == "analytic":
        if table:
            raise ProcessError(
                "the analytic library takes bare process lines without user definitions; "
                "use engine amplitudes for processes with definitions"
            )
        return expand(process, params, n_flavours=n_flavours)
    defn = parse_process(process, table, n_flavours)
    if engine == "auto" and not table:
        analytic = _analytic_cover(process, defn, params, n_flavours)
        if analytic is not None:
            return analytic
    return engine_subprocesses(
        defn, params, definitions=table, n_flavours=n_flavours, cache_dir=cache_dir
    )


def _engine_model(params: SMParameters, n_flavours: int):
    """The engine's model: MadGraph's sm, ``sm-no_b_mass`` with 5 flavours."""
    from processes.auto.model import model_for

    return model_for(params, b_mass=False if n_flavours == 5 else None)


def _analytic_cover(
    process: str, defn, params: SMParameters, n_flavours: int
) -> list[Process] | None:
    """The analytic library's subprocesses if they include every subprocess of ``defn``
    that has a tree diagram (same beam order, same final state up to order), else None
    (also for lines the library's parser does not take: orders, exclusions, ...)."""
    from processes.auto.diagrams import Constraints, generate_diagrams
    from processes.auto.syntax import expand_subprocesses

    try:
        analytic = _expand_spec(parse(process), params, n_flavours)
    except ProcessError:
        return None
    have = {(p.incoming, tuple(sorted(p.outgoing))) for p in analytic}
    model = _engine_model(params, n_flavours)
    constraints = Constraints.from_definition(defn)
    subs = [(sub, sub.final, ()) for sub in expand_subprocesses(defn, None, n_flavours)]
    weighted = _process_weighted(model, subs, constraints)
    for sub, _, _ in subs:
        if (sub.initial, tuple(sorted(sub.final))) in have:
            continue
        try:
            generate_diagrams(
                model,
                sub.initial,
                sub.final,
                constraints,
                params=params,
                production_weighted=weighted,
            )
        except ProcessError:
            continue  # no diagram: not a subprocess
        return None
    return analytic


def engine_subprocesses(
    process,
    params: SMParameters | None = None,
    *,
    definitions: Mapping[str, Sequence[str]] | None = None,
    n_flavours: int = 4,
    cache_dir: str | Path | None = None,
    group: bool = True,
) -> list[Process]:
    """The automatic engine's subprocesses of a process line, grouped MadGraph's way.

    Each flavour assignment with a tree diagram (label order, both beam orders) is an
    :class:`~processes.auto.process.AutoProcess`, or, with ``group``, a
    :class:`FlavourAlias` of an earlier one whose diagrams coincide with its own after
    relabelling indistinguishable flavours (see the module docstring). Decay chains are
    grouped alike, their decays part of the comparison (``p p > t t~, (t > b l+ vl),
    (t~ > b~ l- vl~)``: the four lepton-flavour combinations of each initial state share
    one plan); their resonances are the channels' :attr:`~processes.base.Propagator.onshell`
    lines.

    Args:
        process: a MadGraph line or its parsed
            :class:`~processes.auto.syntax.ProcessDefinition`.
        params: Standard Model parameters.
        definitions: user labels (as :func:`label_definitions` returns them).
        n_flavours: 4 or 5 (5: ``sm-no_b_mass``, b in ``p`` and ``j``).
        cache_dir: folder of cached plans, or None.
        group: share plans between subprocesses with identical matrix elements.

    Raises:
        ProcessError: a syntax error, or no subprocess has a diagram.
    """
    from processes.auto.diagrams import Constraints, generate_diagrams
    from processes.auto.process import (
        AutoProcess,
        _name_with_restrictions,
        subprocess_decays,
    )
    from processes.auto.syntax import expand_subprocesses, parse_process

    defn = parse_process(process, definitions, n_flavours) if isinstance(process, str) else process
    params = params if params is not None else SMParameters()
    model = _engine_model(params, n_flavours)
    constraints = Constraints.from_definition(defn)
    classes = _flavour_classes(model, params)
    couplings = _coupling_keys(model, params)
    shared: dict[tuple, tuple[Process, dict[int, int]]] = {}
    out: list[Process] = []
    errors: list[str] = []
    subs = [
        (sub, *subprocess_decays(defn, sub, definitions, n_flavours))
        for sub in expand_subprocesses(defn, definitions, n_flavours)
    ]
    weighted = _process_weighted(model, subs, constraints)
    for sub, final, decays in subs:
        try:
            diagrams = generate_diagrams(
                model,
                sub.initial,
                final,
                constraints,
                decays,
                params=params,
                production_weighted=weighted,
            )
        except ProcessError as err:
            errors.append(str(err))
            continue
        name = _name_with_restrictions(sub.name(), defn)
        canon = _canonical_flavours(diagrams, classes)
        key = None
        if group:
            key = _diagram_signature(diagrams, canon, params, couplings)
            key += (_decay_signature(decays, canon),)
        if key is not None and key in shared:
            rep, rep_canon = shared[key]
            from_canon = {c: f for f, c in canon.items()}
            to_alias = {f: from_canon[c] for f, c in rep_canon.items() if from_canon[c] != f}
            out.append(FlavourAlias(rep, sub.initial, final, to_alias, name=name))
            continue
        proc = AutoProcess(
            sub.initial,
            final,
            params,
            constraints=constraints,
            decays=decays,
            model=model,
            name=name,
            cache_dir=cache_dir,
            production_weighted=weighted,
        )
        proc.onshell_vetoes = defn.excluded_s_channel_pdgs
        if key is not None:
            shared[key] = (proc, canon)
        out.append(proc)
    if not out:
        detail = errors[0] if errors else "no subprocess"
        raise ProcessError(f"process {defn.name()!r}: no diagrams ({detail})")
    return out


def _process_weighted(model, subs, constraints) -> int | None:
    """MadGraph's default order of a multiparticle process: the least WEIGHTED order of
    production over its subprocesses (None when the line gives orders, or none has a
    diagram). Every subprocess is then generated at that order, so one reachable only at a
    higher order (``u c~ > mu+ mu- d s~`` in ``p p > mu+ mu- j j``: W exchange, QED = 4) is
    not part of the process, as in MadGraph."""
    from processes.auto.diagrams import lowest_production_weighted

    if not constraints.orders.is_default:
        return None
    lowest = None
    for sub, final, decays in subs:
        try:
            w = lowest_production_weighted(model, sub.initial, final, constraints, decays)
        except ProcessError:
            continue
        if w is not None and (lowest is None or w < lowest):
            lowest = w
    return lowest


def _flavour_classes(model, params: SMParameters) -> list[tuple[int, ...]]:
    """The classes of :data:`_FLAVOUR_CLASSES` restricted to the model's massless,
    stable flavours (the b only in the massless-b model)."""
    classes = []
    for members in _FLAVOUR_CLASSES:
        kept = tuple(
            f
            for f in members
            if model.has(f) and model.mass(f, params) == 0.0 and model.width(f, params) == 0.0
        )
        if len(kept) > 1:
            classes.append(kept)
    return classes


def _canonical_flavours(diagrams, classes: list[tuple[int, ...]]) -> dict[int, int]:
    """|PDG| -> canonical |PDG| for the class flavours of a process: within each class,
    the flavours in order of first appearance (external legs, then internal lines) take
    the class's members in order (``c c~ > t t~ g`` -> u; ``u c~ > u c~`` -> u, c)."""
    class_of = {f: cls for cls in classes for f in cls}
    order = [abs(p) for p in diagrams.outgoing_ids]
    order += [abs(w.pdg) for w in diagrams.wavefunctions]
    canon: dict[int, int] = {}
    used: dict[tuple[int, ...], int] = {}
    for f in order:
        cls = class_of.get(f)
        if cls is None or f in canon:
            continue
        canon[f] = cls[used.get(cls, 0)]
        used[cls] = used.get(cls, 0) + 1
    return canon


def _decay_signature(decays, canon: Mapping[int, int]) -> tuple:
    """The decay groups of a decay chain with flavours relabelled by ``canon``: decaying
    particle and legs (its constraints are in the diagrams)."""

    def relabel(pdg: int) -> int:
        target = canon.get(abs(pdg), abs(pdg))
        return target if pdg > 0 else -target

    return tuple(sorted((relabel(d.pdg), tuple(sorted(d.legs))) for d in decays))


def _coupling_keys(model, params: SMParameters) -> dict[str, tuple]:
    """Each coupling as its values at two values of alpha_s: couplings with equal keys
    are the same function of alpha_s (``GC_100`` and ``GC_104``, the W couplings to the
    first and second quark generations, with a unit CKM matrix)."""
    low = model.coupling_values(params, 0.1)
    high = model.coupling_values(params, 0.2)
    return {name: (low[name], high[name]) for name in model.couplings}


def _diagram_signature(
    diagrams, canon: Mapping[int, int], params: SMParameters, couplings: Mapping[str, tuple]
) -> tuple:
    """Everything the matrix element depends on, with flavours relabelled by ``canon``:
    external legs (relabelled all-outgoing ids, colours, masses), and per diagram its
    currents as trees (vertex particles, Lorentz structures and coupling values, masses,
    widths, momenta), amplitude vertices, colour factors, fermion sign and orders. Equal
    signatures give equal |M|^2 (diagram order aside)."""
    model = diagrams.model

    def relabel(pdg: int) -> int:
        target = canon.get(abs(pdg), abs(pdg))
        return target if pdg > 0 else -target

    n_ext = diagrams.n_external
    memo: dict[int, str] = {}

    def vertex(index: int, colour: int) -> tuple:
        v = model.vertices[index]
        terms = tuple((lorentz, couplings[name]) for lorentz, name in v.terms(colour))
        return (tuple(relabel(p) for p in v.particles), v.colour[colour], terms)

    def current(slot: int) -> str:
        if slot < n_ext:
            return f"leg{slot}"
        if slot not in memo:
            w = diagrams.wavefunction(slot)
            memo[slot] = repr(
                (
                    vertex(w.vertex, w.colour),
                    w.offshell,
                    relabel(w.pdg),
                    w.mass,
                    w.width,
                    w.kind,
                    tuple(sorted(w.legs)),
                    tuple(current(i) for i in w.inputs),
                )
            )
        return memo[slot]

    externals = tuple(
        (relabel(p), model.mass(p, params), c)
        for p, c in zip(diagrams.outgoing_ids, diagrams.colour_reps, strict=True)
    )
    per_diagram = []
    for d in diagrams.diagrams:
        terms = sorted(
            repr(
                (
                    vertex(t.amplitude.vertex, t.amplitude.colour),
                    tuple(current(i) for i in t.amplitude.inputs),
                    t.colour_factor,
                )
            )
            for t in d.terms
        )
        per_diagram.append(repr((terms, d.fermion_sign, sorted(d.orders.items()))))
    return (externals, tuple(sorted(per_diagram)))
