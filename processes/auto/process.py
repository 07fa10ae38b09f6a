"""AutoProcess: any tree-level process of the model behind the :class:`Process` contract.

The engine's pipeline for one partonic process: diagrams (:mod:`.diagrams`), then the
evaluation plan (:mod:`.plan`, cached on disk when a folder is given), then batched
HELAS evaluation. Build one from PDG ids or from MadGraph syntax:

    >>> proc = AutoProcess((21, 21), (6, -6))
    >>> proc.name, len(proc.channels()), proc.alpha_s_power
    ('g g > t t~', 3, 2)
    >>> AutoProcess.load("u u~ > e+ e- / z").name
    'u u~ > e+ e- / z'

External masses are the model's (:meth:`Model.mass`: the tau is massive in MadGraph's
sm, unlike ``SMParameters.mass``); :attr:`masses` reports them for the phase space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from evgen.errors import ProcessError
from evgen.kinematics import boost, boost_z
from evgen.params import SMParameters
from processes.auto.diagrams import (
    Constraints,
    DecayGroup,
    DiagramSet,
    decay_groups,
    generate_diagrams,
)
from processes.auto.model import Model, model_for
from processes.auto.plan import Plan, PlanExecutor, load_or_build_plan, plan_key
from processes.auto.syntax import (
    ProcessDefinition,
    expand_subprocesses,
    parse_process,
)
from processes.base import Channel, Process
from processes.particles import PARTICLES, multiparticles

__all__ = ["AutoProcess", "subprocess_decays"]


def _check_momenta(momenta: Tensor, n_ext: int, name: str, n_initial: int = 0) -> Tensor:
    """float64 momenta of the right shape, boosted to the rest frame of the first
    ``n_initial`` (0: not boosted). The plan's helicity scan drops the helicity
    combinations that vanish there (as MadGraph, which evaluates its matrix elements in
    the partonic centre-of-mass frame): for massive fermions helicity is frame-dependent,
    so those combinations do not vanish in a boosted frame."""
    if momenta.ndim != 3 or momenta.shape[1:] != (n_ext, 4):
        raise ProcessError(
            f"process {name!r}: momenta must have shape (n, {n_ext}, 4), got {tuple(momenta.shape)}"
        )
    p = momenta if momenta.dtype == torch.float64 else momenta.to(torch.float64)
    if n_initial == 0 or p.shape[0] == 0:
        return p
    total = p[:, :n_initial].sum(1)
    # along z first (exact for incoming partons along the beam), then what is left
    y = 0.5 * torch.log((total[:, 0] + total[:, 3]) / (total[:, 0] - total[:, 3]))
    p = boost_z(p, -y[:, None])
    total = p[:, :n_initial].sum(1)
    return boost(p, -(total[:, 1:] / total[:, :1])[:, None, :])


class AutoProcess(Process):
    """A tree-level process computed from the model (MadGraph's ``sm`` by default).

    Args:
        initial: incoming PDG ids (two, or one for a decay).
        final: outgoing PDG ids (with decay chains: the final decay products, each
            decay's products in place of their parent).
        params: Standard Model parameters (default ``SMParameters()``).
        constraints: orders, exclusions and s-channel conditions of the production.
        decays: decay groups of a decay chain (see :func:`processes.auto.diagrams.decay_groups`).
        model: the model (default: :func:`model_for` ``params``: massive b unless
            ``params.mb`` is 0, with the Z' if the parameters have one).
        name: the process in MadGraph syntax (default: from the particles).
        cache_dir: folder of cached plans (``None``: no cache); a plan is reused when the
            process, constraints, model parameters and engine version match.
        zero_width_t_channel: zero width in t-channel propagators (MadGraph's default).
        compile: evaluate |M|^2 with the generated code compiled by inductor (see
            :mod:`processes.auto.codegen`; a one-off build, minutes for large processes,
            cached on disk); ``None``: the environment variable ``EVGEN_COMPILE``. Falls
            back to eager, with a warning, if compilation fails.
        production_weighted: the whole multiparticle process's lowest WEIGHTED order,
            applied to this subprocess (MadGraph's default orders; see
            :func:`~processes.auto.diagrams.generate_diagrams`); None: its own.

    Attributes:
        plan: the :class:`Plan`.
        onshell_vetoes: signed PDG ids of MadGraph's ``$`` (excluded on-shell s-channels):
            the diagrams stay; the phase space is to veto their resonance regions.
    """

    onshell_vetoes: frozenset[int] = frozenset()

    def __init__(
        self,
        initial: Sequence[int],
        final: Sequence[int],
        params: SMParameters | None = None,
        *,
        constraints: Constraints | None = None,
        decays: Sequence[DecayGroup] = (),
        model: Model | None = None,
        name: str | None = None,
        cache_dir: str | Path | None = None,
        zero_width_t_channel: bool = True,
        compile: bool | None = None,
        production_weighted: int | None = None,
    ) -> None:
        super().__init__(params)
        self.model = model if model is not None else model_for(self.params)
        self.incoming = tuple(int(p) for p in initial)  # type: ignore[assignment]
        self.outgoing = tuple(int(p) for p in final)
        self.constraints = constraints if constraints is not None else Constraints()
        self.decays = tuple(decays)
        self._zero_width_t = zero_width_t_channel
        self._production_weighted = production_weighted
        self._diagrams: DiagramSet | None = None
        self._channels: list[Channel] | None = None
        base = " ".join(self.model.name_of(p) for p in self.incoming) + " > "
        base += " ".join(self.model.name_of(p) for p in self.outgoing)
        self.name = name or base
        spec = {
            "initial": self.incoming,
            "final": self.outgoing,
            "constraints": _canonical_constraints(self.constraints),
            "decays": [
                (d.pdg, sorted(d.legs), _canonical_constraints(d.constraints)) for d in self.decays
            ],
            "zero_width_t_channel": zero_width_t_channel,
        }
        if production_weighted is not None:
            spec["production_weighted"] = production_weighted
        key = plan_key(self.model, self.params, spec)
        self.plan: Plan = load_or_build_plan(
            lambda: self.diagrams,
            self.params,
            key,
            cache_dir,
            name=self.name,
            orders=self.constraints.orders,
        )
        self._executor = PlanExecutor(self.plan, self.model, self.params, compile=compile)
        self.alpha_s_power = self.plan.alpha_s_power
        self.alpha_ew_power = self.plan.alpha_ew_power

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_process(
        cls,
        process: str | ProcessDefinition,
        params: SMParameters | None = None,
        *,
        definitions: Mapping[str, Sequence[str]] | None = None,
        n_flavours: int = 4,
        cache_dir: str | Path | None = None,
        model: Model | None = None,
        compile: bool | None = None,
    ) -> list[AutoProcess]:
        """Every partonic subprocess of a MadGraph process line that has diagrams.

        Multiparticle labels are expanded (:func:`~processes.auto.syntax.expand_subprocesses`,
        with ``definitions`` and ``n_flavours``); subprocesses without any diagram are
        dropped, as MadGraph does. With ``n_flavours=5`` the default model is
        ``sm-no_b_mass`` (a b in the proton must be massless, as in MadGraph).

        Raises:
            ProcessError: a syntax error, or no subprocess has a diagram.
        """
        defn = (
            parse_process(process, definitions, n_flavours) if isinstance(process, str) else process
        )
        params = params if params is not None else SMParameters()
        if model is None:
            model = model_for(params, b_mass=False if n_flavours == 5 else None)
        out: list[AutoProcess] = []
        errors: list[str] = []
        for sub in expand_subprocesses(defn, definitions, n_flavours):
            final, groups = subprocess_decays(defn, sub, definitions, n_flavours)
            name = _name_with_restrictions(sub.name(), defn)
            try:
                proc = cls(
                    sub.initial,
                    final,
                    params,
                    constraints=Constraints.from_definition(defn),
                    decays=groups,
                    model=model,
                    name=name,
                    cache_dir=cache_dir,
                    compile=compile,
                )
                proc.onshell_vetoes = defn.excluded_s_channel_pdgs
                out.append(proc)
            except ProcessError as err:
                errors.append(str(err))
        if not out:
            detail = errors[0] if errors else "no subprocess"
            raise ProcessError(f"process {defn.name()!r}: no diagrams ({detail})")
        return out

    @classmethod
    def load(cls, process: str, params: SMParameters | None = None, **kwargs: Any) -> AutoProcess:
        """The one partonic process ``process`` names (no multiparticle labels).

        Raises:
            ProcessError: if the line names several subprocesses (use
                :meth:`from_process`) or none with diagrams.
        """
        procs = cls.from_process(process, params, **kwargs)
        if len(procs) != 1:
            raise ProcessError(
                f"process {process!r} has {len(procs)} subprocesses "
                f"({', '.join(p.name for p in procs[:4])}...); use AutoProcess.from_process"
            )
        return procs[0]

    # ------------------------------------------------------------------ data
    @property
    def diagrams(self) -> DiagramSet:
        """The process's diagrams (generated on first use; a cached plan does not need
        them)."""
        if self._diagrams is None:
            self._diagrams = generate_diagrams(
                self.model,
                self.incoming,
                self.outgoing,
                self.constraints,
                self.decays,
                params=self.params,
                zero_width_t_channel=self._zero_width_t,
                production_weighted=self._production_weighted,
            )
        return self._diagrams

    @property
    def masses(self) -> tuple[float, ...]:
        """External masses in GeV, incoming first (the model's)."""
        return self.plan.masses

    @property
    def executor(self) -> PlanExecutor:
        """The plan's evaluator (helicity amplitudes, JAMPs, diagram squares)."""
        return self._executor

    # ------------------------------------------------------------------ the contract
    def matrix_element(self, momenta: Tensor, alpha_s: Tensor | float | None = None) -> Tensor:
        """|M|^2 summed over final and averaged over initial helicities and colours.

        Args:
            momenta: (n, n_ext, 4) GeV (float64; other dtypes are converted).
            alpha_s: (n,) or a number; ``None``: ``params.alpha_s``.

        Returns:
            (n,) float64 on the momenta's device (GeV^(4 - 2 n_ext)); no identical-particle
            factor (see :attr:`symmetry_factor`).
        """
        momenta = _check_momenta(momenta, self.plan.n_external, self.name, self.plan.n_initial)
        return self._executor.matrix_element(momenta, alpha_s)

    def channels(self) -> list[Channel]:
        """One channel per distinct propagator structure of the diagrams with 3-point
        vertices (MadGraph's configs). The resonances of a decay chain (the s-channel line
        of each :attr:`decays` group) are marked :attr:`Propagator.onshell
        <processes.base.Propagator.onshell>`."""
        if self._channels is None:
            onshell = {(abs(d.pdg), tuple(sorted(d.legs))) for d in self.decays}
            self._channels = [
                Channel(
                    tuple(
                        replace(p, onshell=True)
                        if p.kind == "s" and (abs(p.pdg), tuple(sorted(p.legs))) in onshell
                        else p
                        for p in ch.propagators
                    )
                )
                for ch in self.plan.channel_objects()
            ]
        return list(self._channels)

    def channel_weights(self, momenta: Tensor) -> Tensor:
        """SDE weights: sum_h sum_{diagrams d of channel i} |A_d|^2, normalised per event
        (alpha_s at ``params.alpha_s``); uniform where all vanish."""
        momenta = _check_momenta(momenta, self.plan.n_external, self.name, self.plan.n_initial)
        return self._executor.diagram_channel_weights(momenta)

    def matrix_element_and_channel_weights(
        self, momenta: Tensor, alpha_s: Tensor | float | None = None
    ) -> tuple[Tensor, Tensor]:
        """:meth:`matrix_element` (n,) and SDE channel weights (n, n_channels) from one
        evaluation of the helicity amplitudes, the weights at this ``alpha_s`` (a valid
        multi-channel prior too: a function of the phase-space point, rows summing to 1)."""
        momenta = _check_momenta(momenta, self.plan.n_external, self.name, self.plan.n_initial)
        ex = self._executor
        amps = ex.amplitudes(momenta, alpha_s)
        me = ex.colour_sum(ex.jamps(amps)).sum(-1) * self.plan.average
        n_chan = len(self.plan.channels)
        squares = (amps.real**2 + amps.imag**2).sum(1)
        per_channel = (squares @ self.plan.tensors(momenta.device)["amp_to_channel"])[:, :n_chan]
        total = per_channel.sum(-1, keepdim=True)
        uniform = torch.full_like(per_channel, 1.0 / max(n_chan, 1))
        weights = torch.where(total > 0, per_channel / torch.where(total > 0, total, 1.0), uniform)
        return me, weights

    def colour_flow(self, momenta: Tensor, u: Tensor) -> Tensor:
        """A leading-colour flow per event, chosen with probability ~ sum_h |JAMP_k|^2 (as
        MadGraph), in the LHE convention; (n, n_ext, 2) int64."""
        momenta = _check_momenta(momenta, self.plan.n_external, self.name, self.plan.n_initial)
        return self._executor.colour_flow(momenta, u)


# --------------------------------------------------------------------------- helpers


def _canonical_constraints(c: Constraints) -> tuple:
    return (
        str(c.orders),
        repr(c.orders),
        sorted(c.excluded),
        sorted(sorted(r) for r in c.required_s_channels),
        sorted(c.excluded_s_channels),
    )


def subprocess_decays(
    defn: ProcessDefinition,
    sub: Any,
    definitions: Mapping[str, Sequence[str]] | None = None,
    n_flavours: int = 4,
) -> tuple[tuple[int, ...], tuple[DecayGroup, ...]]:
    """The external final state (decay products in place of their parents) and the decay
    groups of one subprocess of ``defn`` (an item of
    :func:`~processes.auto.syntax.expand_subprocesses`); ``(sub.final, ())`` without
    decays."""
    return decay_groups(
        sub.final,
        sub.decays,
        len(sub.initial),
        lambda d: Constraints.from_definition(_decay_definition(defn, d, definitions, n_flavours)),
    )


def _label_pdgs(
    label: str, definitions: Mapping[str, Sequence[str]] | None, n_flavours: int
) -> set[int]:
    if label in PARTICLES:
        return {PARTICLES[label].pdg}
    names = (definitions or {}).get(label) or multiparticles(n_flavours).get(label, ())
    return {PARTICLES[n].pdg for n in names if n in PARTICLES}


def _decay_definition(
    parent: ProcessDefinition,
    sub: Any,
    definitions: Mapping[str, Sequence[str]] | None,
    n_flavours: int,
) -> ProcessDefinition:
    """The decay definition (searched through nested decays, outermost first) whose
    initial label covers the decaying particle of ``sub``."""
    pdg = sub.initial[0]
    stack = list(parent.decays)
    while stack:
        d = stack.pop(0)
        if pdg in _label_pdgs(d.initial[0], definitions, n_flavours):
            return d
        stack.extend(d.decays)
    raise ProcessError(f"decay of {pdg}: no matching decay definition in {parent.name()!r}")


def _name_with_restrictions(name: str, defn: ProcessDefinition) -> str:
    """A subprocess's name (``"u u~ > e+ e-, ..."``) with the line's s-channel conditions,
    restrictions and orders, in MadGraph syntax."""
    first, sep, tail = name.partition(",")
    if defn.required_s_channels:
        left, _, right = first.partition(" > ")
        channels = " ".join("|".join(alt) for alt in defn.required_s_channels)
        first = f"{left} > {channels} > {right}"
    parts = [first]
    for mark, names in (
        ("/", defn.excluded),
        ("$", defn.excluded_s_channels),
        ("$$", defn.strictly_excluded_s_channels),
    ):
        if names:
            parts.append(f"{mark} {' '.join(sorted(names))}")
    if not defn.orders.is_default:
        parts.append(str(defn.orders))
    return " ".join(parts) + sep + tail
