"""The analytic process library: its common base class, the registry, loading.

Each family of closed-form matrix elements is one :class:`AnalyticProcess` subclass,
parameterised by the PDG ids of its external particles and registered (with
:func:`register`) under every partonic MadGraph name it describes: ``u u~ > e+ e-`` and
``u~ u > e+ e-`` are two names of the one Drell-Yan class. :func:`load` and
:func:`expand` turn a process string with multiparticle labels into those subprocesses.

Example:
    >>> group = load("p p > t t~")
    >>> [p.name for p in group][:3]
    ['g g > t t~', 'u u~ > t t~', 'c c~ > t t~']
    >>> load("g g > t t~")
    GGToTTbar('g g > t t~')
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from evgen.errors import ProcessError
from evgen.params import SMParameters
from processes.base import Process
from processes.parse import ProcessSpec, parse, process_name
from processes.particles import PARTICLES, particle_name, pdg_id

__all__ = [
    "AnalyticProcess",
    "ProcessGroup",
    "alpha_s_tensor",
    "register",
    "registered_names",
    "lookup",
    "load",
    "expand",
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
