"""Unfolding cards: YAML files validated by a pydantic schema (``evgen unfold CARD``).

One card describes the inputs as an analysis has them (simulation file(s), the measured
file, tree and branch names, how simulated events pair, weights and selection flags),
the observables (branches at parton and detector level, binning, label, unit), the
method and its settings, the output folder and the seed. An optional ``detector`` block
configures the parametric detector simulation (``evgen detector CARD``) that makes
simulation and pseudo-data from evgen's own events; its output follows this card's own
conventions, so the same card unfolds it.

Every error is a :class:`~evgen.errors.CardError` whose message names the file and the
key (``cards/unfold_gauss.yaml: observables.0.bins: ...``) and says what was expected.
Energies and momenta are in GeV.

Pairing of simulated events (``simulation.pairing``):

``tree``
    one tree (``simulation.tree``) holds both levels, one entry per event, with the
    flags ``pass_truth`` and ``pass_reco`` (each optional: a missing flag means every
    entry passes).
``index``
    two trees (``truth_tree``, ``reco_tree``) with the same number of entries, paired
    entry by entry (ROOT friend trees).
``event_number``
    two trees joined on the ``event_number`` branch. An event only in the truth tree
    did not pass the detector-level selection (a miss); an event only in the reco tree
    did not pass the parton-level selection (a fake). Where flags are given they are
    combined with presence. The weight is taken from the truth tree where the event is
    there, else from the reco tree; the weight branch must exist in both trees.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from evgen.card import read_yaml_card, validate_card

__all__ = [
    "UnfoldCard",
    "SimulationCard",
    "DataCard",
    "ObservableCard",
    "DefinitionCard",
    "UnfoldOutputCard",
    "DetectorCard",
    "JetsCard",
    "LeptonsCard",
    "METCard",
    "ObjectCard",
    "FiducialCard",
    "JetResolution",
    "LeptonResolution",
    "METHODS",
    "QUANTITIES",
    "PAIR_QUANTITIES",
    "load_unfold_card",
    "parse_unfold_card",
]

#: the unfolding methods ``method`` may name.
METHODS: tuple[str, ...] = ("generative", "omnifold", "ibu")
#: quantities of one object (or of the sum of several): GeV for momenta, radians for phi.
QUANTITIES: tuple[str, ...] = (
    "pt",
    "eta",
    "rapidity",
    "phi",
    "mass",
    "energy",
    "px",
    "py",
    "pz",
)
#: quantities of a pair (``objects`` against ``other``): differences, and the cosine of
#: the opening angle in the lab frame.
PAIR_QUANTITIES: tuple[str, ...] = (
    "delta_phi",
    "abs_delta_phi",
    "delta_eta",
    "delta_rapidity",
    "delta_r",
    "cos_angle",
)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _one_or_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class SimulationCard(_Strict):
    """Simulated events with both levels: files, trees, branches (see module docstring)."""

    files: list[str] = Field(min_length=1)  #: one file or a list (read in order)
    pairing: Literal["tree", "index", "event_number"] = "tree"
    tree: str = "events"  #: pairing ``tree``: the one tree with both levels
    truth_tree: str | None = None  #: pairing ``index`` / ``event_number``
    reco_tree: str | None = None  #: pairing ``index`` / ``event_number``
    event_number: str | None = None  #: pairing ``event_number``: the join branch
    weight: str | None = None  #: event-weight branch (negative allowed); none: weight 1
    pass_truth: str | None = None  #: parton-level (fiducial) selection flag branch
    pass_reco: str | None = None  #: detector-level selection flag branch

    @field_validator("files", mode="before")
    @classmethod
    def _files(cls, value: Any) -> Any:
        return _one_or_list(value)

    @model_validator(mode="after")
    def _pairing_keys(self) -> SimulationCard:
        two = self.pairing in ("index", "event_number")
        if two and (self.truth_tree is None or self.reco_tree is None):
            raise ValueError(f"pairing {self.pairing!r} needs truth_tree and reco_tree")
        if not two and (self.truth_tree is not None or self.reco_tree is not None):
            raise ValueError(
                "truth_tree/reco_tree given but pairing is 'tree' (one tree, key tree); "
                "set pairing: index or event_number"
            )
        if (self.pairing == "event_number") != (self.event_number is not None):
            raise ValueError(
                "pairing 'event_number' needs the event_number branch, and event_number "
                f"is only used with it (pairing is {self.pairing!r})"
            )
        return self


class DataCard(_Strict):
    """The measured (or pseudo-) data: one tree with the detector-level branches.

    ``file`` is the default for ``evgen unfold --data``. ``pass_reco`` (optional) drops
    entries that fail the detector-level selection. ``truth``: pseudo-data whose tree also
    holds the parton-level branches and the simulation's ``pass_truth`` flag; ``None``
    uses them when all are present, ``true`` requires them, ``false`` ignores them.
    """

    file: str | None = None
    tree: str = "events"
    weight: str | None = None
    pass_reco: str | None = None
    truth: bool | None = None
    #: refuse data whose values lie mostly outside the simulation's range (a unit or
    #: definition mismatch): the largest allowed fraction outside, per observable
    max_outside_fraction: Probability = 0.5


class DefinitionCard(_Strict):
    """How the detector simulation computes an observable from the event record.

    ``quantity`` of the four-momentum sum of ``objects`` (names of ``detector.objects``),
    or a pair quantity of ``objects`` against ``other``.
    """

    quantity: Literal[QUANTITIES + PAIR_QUANTITIES]  # type: ignore[valid-type]
    objects: list[str] = Field(min_length=1)
    other: list[str] | None = None

    @field_validator("objects", "other", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        return _one_or_list(value)

    @model_validator(mode="after")
    def _pair(self) -> DefinitionCard:
        if (self.quantity in PAIR_QUANTITIES) != (self.other is not None):
            raise ValueError(
                f"quantity {self.quantity!r}: the pair quantities {', '.join(PAIR_QUANTITIES)} "
                "need 'other' (the second object), the others must not have it"
            )
        return self


class ObservableCard(_Strict):
    """One observable: branch names at both levels and the binning of its histograms.

    Branches default to ``<name>_truth`` and ``<name>_reco`` (the detector simulation's
    names). Binning: ``edges`` (increasing), or ``bins`` equal bins over ``range``.
    """

    name: str
    truth: str | None = None
    reco: str | None = None
    bins: Annotated[int, Field(ge=1)] | None = None
    range: tuple[Finite, Finite] | None = None
    edges: list[Finite] | None = None
    label: str | None = None  #: axis label (LaTeX allowed: ``$p_T^{t}$``)
    unit: str | None = None  #: ``GeV``, ``rad``, ...
    definition: DefinitionCard | None = None  #: for ``evgen detector``

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"expected a name of letters, digits and underscores (a branch name), got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _binning(self) -> ObservableCard:
        if self.edges is not None:
            if self.bins is not None or self.range is not None:
                raise ValueError("give either edges or bins and range, not both")
            if len(self.edges) < 2 or bool(np.any(np.diff(self.edges) <= 0)):
                raise ValueError(f"edges: expected at least 2 increasing values, got {self.edges}")
        else:
            if self.bins is None or self.range is None:
                raise ValueError("binning: give edges, or bins and range")
            if not self.range[1] > self.range[0]:
                raise ValueError(f"range: expected [low, high] with low < high, got {self.range}")
        return self

    @property
    def truth_branch(self) -> str:
        """Parton-level branch name."""
        return self.truth if self.truth is not None else f"{self.name}_truth"

    @property
    def reco_branch(self) -> str:
        """Detector-level branch name."""
        return self.reco if self.reco is not None else f"{self.name}_reco"

    @property
    def bin_edges(self) -> np.ndarray:
        """Histogram bin edges, float64."""
        if self.edges is not None:
            return np.asarray(self.edges, dtype=np.float64)
        assert self.bins is not None and self.range is not None  # by the validator
        return np.linspace(self.range[0], self.range[1], self.bins + 1)

    @property
    def axis_label(self) -> str:
        """``label [unit]`` for plots."""
        text = self.label or self.name
        return f"{text} [{self.unit}]" if self.unit else text


class UnfoldOutputCard(_Strict):
    """Where to write: a folder, replaced atomically when the run succeeds."""

    path: str = "output/unfold"
    plots: bool = True  #: PNG plots per observable (needs matplotlib and mplhep)


# ---------------------------------------------------------------------------- detector


class JetResolution(_Strict):
    """Jet energy resolution for |eta| <= ``eta_max``: sigma_E / E = stochastic / sqrt(E
    [GeV]) (+) constant, added in quadrature."""

    eta_max: NonNegative
    stochastic: NonNegative  #: GeV^(1/2)
    constant: NonNegative


class LeptonResolution(_Strict):
    """Lepton momentum resolution for |eta| <= ``eta_max``: sigma_pT / pT = constant (+)
    pt_term * pT [GeV], added in quadrature."""

    eta_max: NonNegative
    constant: NonNegative
    pt_term: NonNegative  #: GeV^-1


def _regions_increasing(regions: list[Any]) -> list[Any]:
    etas = [r.eta_max for r in regions]
    if bool(np.any(np.diff(etas) <= 0)):
        raise ValueError(f"resolution regions: eta_max must increase, got {etas}")
    return regions


class JetsCard(_Strict):
    """Jets: one per final-state quark or gluon (no clustering; see detector module)."""

    pt_min: NonNegative = 25.0  #: GeV, after smearing
    eta_max: NonNegative = 2.5  #: |eta| acceptance
    efficiency: Probability = 1.0  #: reconstruction efficiency inside the acceptance
    btag_efficiency: Probability = 0.70  #: b quark jets tagged
    mistag_c: Probability = 0.10  #: c quark jets tagged
    mistag_light: Probability = 0.01  #: u, d, s quark and gluon jets tagged
    resolution: list[JetResolution] = Field(
        default_factory=lambda: [
            JetResolution(eta_max=2.5, stochastic=0.5, constant=0.05),
            JetResolution(eta_max=5.0, stochastic=1.0, constant=0.10),
        ],
        min_length=1,
    )

    @field_validator("resolution")
    @classmethod
    def _regions(cls, value: list[Any]) -> list[Any]:
        return _regions_increasing(value)


class LeptonsCard(_Strict):
    """Charged leptons (electrons and muons; taus are not reconstructed)."""

    pt_min: NonNegative = 25.0  #: GeV, after smearing
    eta_max: NonNegative = 2.5
    efficiency: Probability = 0.95
    resolution: list[LeptonResolution] = Field(
        default_factory=lambda: [
            LeptonResolution(eta_max=1.5, constant=0.01, pt_term=1e-4),
            LeptonResolution(eta_max=2.5, constant=0.02, pt_term=2e-4),
        ],
        min_length=1,
    )

    @field_validator("resolution")
    @classmethod
    def _regions(cls, value: list[Any]) -> list[Any]:
        return _regions_increasing(value)


class METCard(_Strict):
    """Missing transverse momentum: the neutrinos' summed pT plus a Gaussian on each of
    its x and y components with sigma = constant (+) stochastic * sqrt(sum ET) (GeV),
    sum ET the scalar sum of the visible final-state partons' pT."""

    constant: NonNegative = 10.0  #: GeV
    stochastic: NonNegative = 0.5  #: GeV^(1/2)
    w_mass: Annotated[float, Field(gt=0)] = 80.379  #: GeV, for the neutrino pz


class ObjectCard(_Strict):
    """A named physics object of the event record: the ``rank``-th (by parton-level pT,
    0 = hardest) particle with a PDG id in ``pdg`` (signed ids; final-state particles and
    intermediate resonances). ``btag``: at detector level it must be a b-tagged jet."""

    pdg: list[int] = Field(min_length=1)
    rank: Annotated[int, Field(ge=0)] = 0
    btag: bool = False

    @field_validator("pdg", mode="before")
    @classmethod
    def _one_or_list_int(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value


class FiducialCard(_Strict):
    """Parton-level (fiducial) selection applied to the final-state partons that the
    observables use: minimum pT (GeV) and maximum |eta| of quarks/gluons and of charged
    leptons, minimum summed neutrino pT. Missing objects always fail it; -1 means no cut."""

    jet_pt_min: Finite = -1.0
    jet_eta_max: Finite = -1.0
    lepton_pt_min: Finite = -1.0
    lepton_eta_max: Finite = -1.0
    met_min: Finite = -1.0


class DetectorCard(_Strict):
    """The parametric detector simulation (``evgen detector``): resolution, acceptance and
    efficiencies per object type, the named objects the observables are made of, and the
    parton-level selection. The output tree has the branches ``event_number``,
    ``weight`` (pb, from the events), ``pass_truth``, ``pass_reco`` and the observables'
    ``truth``/``reco`` branches (pairing ``tree``)."""

    jets: JetsCard = Field(default_factory=JetsCard)
    leptons: LeptonsCard = Field(default_factory=LeptonsCard)
    met: METCard = Field(default_factory=METCard)
    objects: dict[str, ObjectCard] = Field(min_length=1)
    fiducial: FiducialCard = Field(default_factory=FiducialCard)
    tree: str = "events"
    events: str | None = None  #: default input for ``evgen detector --events``
    output: str | None = None  #: default output for ``evgen detector --output``
    chunk_size: Annotated[int, Field(ge=1)] = 100_000  #: events per read/smear/write step

    @field_validator("objects")
    @classmethod
    def _object_names(cls, value: dict[str, ObjectCard]) -> dict[str, ObjectCard]:
        for name in value:
            if not _NAME.match(name):
                raise ValueError(f"object name {name!r}: expected letters, digits and underscores")
        return value


class UnfoldCard(_Strict):
    """A whole unfolding card.

    ``ibu``, ``omnifold``, ``generative``: settings of each method, passed by keyword to
    that method's configuration (``IBUConfig``, ``OmniFoldConfig``,
    ``GenerativeConfig.from_settings``); their keys are checked there. One key of the
    ``ibu`` block is the command's own: ``joint``, the observables IBU unfolds together
    in one flattened multi-dimensional binning (see :meth:`ibu_groups`).
    """

    simulation: SimulationCard
    data: DataCard = Field(default_factory=DataCard)
    observables: list[ObservableCard] = Field(min_length=1)
    method: Literal["generative", "omnifold", "ibu"] = "generative"
    ibu: dict[str, Any] = Field(default_factory=dict)
    omnifold: dict[str, Any] = Field(default_factory=dict)
    generative: dict[str, Any] = Field(default_factory=dict)
    output: UnfoldOutputCard = Field(default_factory=UnfoldOutputCard)
    seed: Annotated[int, Field(ge=0)] = 0
    #: events (int) or memory ("100 MB") per uproot.iterate step
    step_size: Annotated[int, Field(ge=1)] | str = "100 MB"
    detector: DetectorCard | None = None

    @field_validator("ibu")
    @classmethod
    def _ibu_joint(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        observables = info.data.get("observables")  # absent when they failed validation
        if "joint" in value and observables is not None:
            _check_joint(value["joint"], [o.name for o in observables])
        return value

    @model_validator(mode="after")
    def _consistent(self) -> UnfoldCard:
        names = [o.name for o in self.observables]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"observables: duplicated names {dup}")
        if self.detector is not None:
            for i, obs in enumerate(self.observables):
                if obs.definition is None:
                    raise ValueError(
                        f"observables.{i} ({obs.name}): the detector simulation needs its "
                        "definition (quantity and objects)"
                    )
                used = obs.definition.objects + (obs.definition.other or [])
                unknown = [u for u in used if u not in self.detector.objects]
                if unknown:
                    raise ValueError(
                        f"observables.{i}.definition: unknown object(s) {unknown}; "
                        f"defined in detector.objects: {sorted(self.detector.objects)}"
                    )
        return self

    def method_settings(self, method: str) -> dict[str, Any]:
        """The settings block of ``method`` (keyword arguments of its config), without
        the command's own keys (``ibu.joint``)."""
        settings = dict(getattr(self, method))
        if method == "ibu":
            settings.pop("joint", None)
        return settings

    def ibu_groups(self) -> list[tuple[int, ...]]:
        """The observables (indices into ``observables``) of each IBU unfolding.

        By default every observable is unfolded alone in its own 1-d binning, as analyses
        do; ``ibu.joint`` lists groups of observable names unfolded together in one
        flattened multi-dimensional binning (bins multiply: ``bins_1 x bins_2 x ...``),
        or is ``all`` for one joint unfolding of every observable. Groups come in the
        order of their first observable; observables within a group in card order.
        """
        names = [o.name for o in self.observables]
        joint = self.ibu.get("joint")
        if joint == "all":
            return [tuple(range(len(names)))]
        group_of = {name: i for i, group in enumerate(joint or []) for name in group}
        groups: list[tuple[int, ...]] = []
        seen: set[int] = set()
        for j, name in enumerate(names):
            if name not in group_of:
                groups.append((j,))
            elif group_of[name] not in seen:
                seen.add(group_of[name])
                members = set(joint[group_of[name]])  # type: ignore[index]
                groups.append(tuple(k for k, n in enumerate(names) if n in members))
        return groups

    def resolve_paths(self, base: Path) -> UnfoldCard:
        """A copy with relative file paths taken relative to ``base`` (the card's folder)
        when they exist there and not relative to the working folder."""

        def fix(p: str | None) -> str | None:
            if p is None or Path(p).is_absolute() or Path(p).exists():
                return p
            candidate = base / p
            return str(candidate) if candidate.exists() else p

        sim = self.simulation.model_copy(update={"files": [fix(f) for f in self.simulation.files]})
        data = self.data.model_copy(update={"file": fix(self.data.file)})
        return self.model_copy(update={"simulation": sim, "data": data})


def _check_joint(joint: Any, names: list[str]) -> None:
    """``ibu.joint``: ``all``, or a list of groups (lists of observable names), each name
    a card observable and in at most one group."""
    shape = "expected 'all' or a list of groups of observable names, e.g. [[top_pt, top_y]]"
    if joint == "all":
        return
    if not isinstance(joint, list) or not all(
        isinstance(g, list) and g and all(isinstance(n, str) for n in g) for g in joint
    ):
        raise ValueError(f"joint: {shape}, got {joint!r}")
    used: list[str] = [n for g in joint for n in g]
    unknown = [n for n in used if n not in names]
    if unknown:
        raise ValueError(f"joint: unknown observable(s) {unknown}; the card has {names}")
    twice = sorted({n for n in used if used.count(n) > 1})
    if twice:
        raise ValueError(f"joint: observable(s) {twice} in more than one group")


def parse_unfold_card(data: Any, source: str = "<card>") -> UnfoldCard:
    """Validate an unfolding card given as a mapping; ``source`` names it in errors."""
    return validate_card(UnfoldCard, data, source)


def load_unfold_card(path: str | Path) -> tuple[UnfoldCard, str]:
    """Read and validate a YAML unfolding card; return the card and its text."""
    data, text = read_yaml_card(path)
    return parse_unfold_card(data, str(path)), text
