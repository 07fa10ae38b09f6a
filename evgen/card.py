"""Run cards: YAML files validated by a pydantic schema.

Keys follow MadGraph's run_card where one exists (``ptj``, ``etal``, ``drll``, ``mmll``,
``dynamical_scale_choice``, ``nevents``), with MadGraph's defaults. A value of -1 for a
cut means "no cut", as in MadGraph. Energies, masses, widths and cuts are in GeV.

Every error is a :class:`~evgen.errors.CardError` whose message names the file and the
key (``cards/ttbar.yaml: cuts.ptl: ...``) and says what was expected.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from evgen.errors import CardError
from evgen.params import SMParameters, ZPrime, ZPrimeCouplings

__all__ = [
    "RunCard",
    "BeamsCard",
    "PDFCard",
    "ModelCard",
    "FermionCouplingCard",
    "ZPrimeCouplingsCard",
    "ScaleCard",
    "CutsCard",
    "IntegratorCard",
    "LearnedCard",
    "RunSettings",
    "OutputCard",
    "Engine",
    "load_card",
    "parse_card",
]

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Cut = Annotated[float, Field(allow_inf_nan=False)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BeamsCard(_Strict):
    """Colliding beams: particle names (``p``, ``p~``, ``e+``, ``e-``) and energies in GeV.

    The first beam travels along +z.
    """

    particles: tuple[str, str] = ("p", "p")
    energies: tuple[PositiveFloat, PositiveFloat] = (6500.0, 6500.0)


class PDFCard(_Strict):
    """Parton densities: an LHAPDF6 set name (found on ``LHAPDF_DATA_PATH``) or a path."""

    set: str = "NNPDF23_lo_as_0130_qed"
    member: Annotated[int, Field(ge=0)] = 0


class FermionCouplingCard(_Strict):
    """Z' couplings of one fermion type, in units of g_Z = e / (sw cw): either chiral
    (``left``, ``right``: vertex -i g_Z gamma^mu (left P_L + right P_R)) or ``vector``,
    ``axial`` (PDG convention -i (g_Z / 2) gamma^mu (g_V - g_A gamma5)); a missing value
    of the chosen pair is 0. The Z itself has left = T3 - Q sw2, right = -Q sw2."""

    left: Annotated[float, Field(allow_inf_nan=False)] | None = None
    right: Annotated[float, Field(allow_inf_nan=False)] | None = None
    vector: Annotated[float, Field(allow_inf_nan=False)] | None = None
    axial: Annotated[float, Field(allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _one_convention(self) -> FermionCouplingCard:
        chiral = self.left is not None or self.right is not None
        va = self.vector is not None or self.axial is not None
        if chiral and va:
            raise ValueError(
                "give either left/right or vector/axial couplings, not both, "
                f"got {self.model_dump(exclude_none=True)}"
            )
        return self

    def chiral(self) -> tuple[float, float]:
        """(left, right) in units of g_Z."""
        if self.vector is not None or self.axial is not None:
            return ZPrimeCouplings.chiral_from_vector_axial(self.vector or 0.0, self.axial or 0.0)
        return (self.left or 0.0, self.right or 0.0)


class ZPrimeCouplingsCard(_Strict):
    """Explicit Z' couplings per fermion type (generation-universal): up-type quarks
    ``u``, down-type quarks ``d``, charged leptons ``l``; neutrinos ``nu`` (optional,
    default 0) only enter the computed width."""

    u: FermionCouplingCard
    d: FermionCouplingCard
    l: FermionCouplingCard  # noqa: E741 (the card's name for charged leptons)
    nu: FermionCouplingCard = Field(default_factory=FermionCouplingCard)


class ModelCard(_Strict):
    """Overrides of MadGraph's ``sm`` default parameters (GeV, GeV^-2); ``None`` keeps them.

    A Z' (PDG 32) is added by setting ``mzp``: its width ``wzp`` defaults to the
    leading-order width from its couplings (fermions only), its couplings ``zp_couplings``
    to ``ssm`` (the Sequential Standard Model: the Z's couplings), all multiplied by
    ``zp_strength``.
    """

    alpha_ew_inv: PositiveFloat | None = None
    gf: PositiveFloat | None = None
    mz: PositiveFloat | None = None
    wz: PositiveFloat | None = None
    ww: PositiveFloat | None = None
    mt: PositiveFloat | None = None
    wt: PositiveFloat | None = None
    mb: PositiveFloat | None = None
    mh: PositiveFloat | None = None
    wh: PositiveFloat | None = None
    #: 4: proton and jets of g u d s c (MadGraph's default ``sm``); 5: b b~ added, massless.
    n_flavours: Literal[4, 5] = 4
    mzp: PositiveFloat | None = None  #: Z' mass, GeV; no Z' unless set
    wzp: PositiveFloat | None = None  #: Z' total width, GeV; default: LO from its couplings
    #: ``ssm`` or explicit couplings per fermion type (:class:`ZPrimeCouplingsCard`)
    zp_couplings: ZPrimeCouplingsCard | Literal["ssm"] = "ssm"
    zp_strength: PositiveFloat = 1.0  #: overall factor on the Z' couplings

    @field_validator("zp_couplings", mode="before")
    @classmethod
    def _ssm_or_mapping(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "ssm":
            raise ValueError(
                f"expected 'ssm' or a mapping of u, d, l (and nu) to left/right or "
                f"vector/axial couplings, got {value!r}"
            )
        return value

    @model_validator(mode="after")
    def _zprime_needs_mass(self) -> ModelCard:
        if self.mzp is None:
            defaults = {"wzp": None, "zp_couplings": "ssm", "zp_strength": 1.0}
            given = [k for k, v in defaults.items() if getattr(self, k) != v]
            if given:
                raise ValueError(
                    f"{', '.join(given)} given but no Z' mass: set mzp (GeV) to add a Z'"
                )
        return self

    def overrides(self) -> dict[str, float]:
        """The SM parameters set in the card, as keyword arguments for SMParameters."""
        skip = {"n_flavours", "mzp", "wzp", "zp_couplings", "zp_strength"}
        return {k: v for k, v in self.model_dump().items() if k not in skip and v is not None}

    def parameters(self) -> SMParameters:
        """The Standard Model parameters of the card (masses and widths in GeV).

        Raises:
            ValueError: parameters that do not make a consistent model.
        """
        return SMParameters().with_overrides(**self.overrides(), zprime=self.zprime())

    def zprime(self) -> ZPrime | None:
        """The Z' the card defines, or ``None``."""
        if self.mzp is None:
            return None
        couplings = None
        if isinstance(self.zp_couplings, ZPrimeCouplingsCard):
            c = self.zp_couplings
            couplings = ZPrimeCouplings(c.u.chiral(), c.d.chiral(), c.l.chiral(), c.nu.chiral())
        return ZPrime(self.mzp, self.wzp, couplings, self.zp_strength)


class ScaleCard(_Strict):
    """Renormalisation and factorisation scales, as MadGraph's run_card.

    ``dynamical_scale_choice``: -1 MadGraph's default (transverse mass of the 2 -> 2 core;
    for a single s-channel resonance, its invariant mass), 1 total transverse energy,
    2 sum of transverse masses, 3 half of it, 4 partonic sqrt(s_hat).
    With ``fixed_ren_scale`` / ``fixed_fac_scale`` the fixed values (GeV) are used instead.
    """

    dynamical_scale_choice: Literal[-1, 1, 2, 3, 4] = -1
    fixed_ren_scale: bool = False
    fixed_fac_scale: bool = False
    scale: PositiveFloat = 91.188  #: fixed renormalisation scale, GeV
    dsqrt_q2fact1: PositiveFloat = 91.188  #: fixed factorisation scale of beam 1, GeV
    dsqrt_q2fact2: PositiveFloat = 91.188  #: fixed factorisation scale of beam 2, GeV
    scalefact: PositiveFloat = 1.0  #: multiplies the dynamical scale
    alpha_s_loops: Literal[1, 2] = 2  #: running of alpha_s from the PDF set's alpha_s(MZ)


class CutsCard(_Strict):
    """Generation cuts, MadGraph names and defaults; -1 means no cut. GeV.

    Jets (j) are gluons and light quarks (b too with 5 flavours); leptons (l) are charged
    electrons and muons; cuts on pairs apply to every pair of that kind.
    """

    ptj: Cut = 20.0
    ptjmax: Cut = -1.0
    etaj: Cut = 5.0
    ptl: Cut = 10.0
    ptlmax: Cut = -1.0
    etal: Cut = 2.5
    drjj: Cut = 0.4
    drll: Cut = 0.4
    drllmax: Cut = -1.0
    drjl: Cut = 0.4
    mmjj: Cut = 0.0
    mmjjmax: Cut = -1.0
    mmll: Cut = 0.0  #: minimum invariant mass of same-flavour opposite-sign lepton pairs
    mmllmax: Cut = -1.0
    misset: Cut = 0.0  #: minimum missing transverse energy (neutrinos)
    missetmax: Cut = -1.0
    #: MadGraph's ``bwcutoff``: a decay-chain resonance's invariant mass lies within this
    #: many widths of its mass (and a ``$``-excluded one is vetoed there)
    bwcutoff: PositiveFloat = 15.0

    @model_validator(mode="after")
    def _consistent(self) -> CutsCard:
        for lo, hi in [
            ("ptj", "ptjmax"),
            ("ptl", "ptlmax"),
            ("drll", "drllmax"),
            ("mmjj", "mmjjmax"),
            ("mmll", "mmllmax"),
            ("misset", "missetmax"),
        ]:
            vlo, vhi = getattr(self, lo), getattr(self, hi)
            if vhi >= 0 and vlo > vhi:
                raise ValueError(
                    f"{lo} = {vlo} is above {hi} = {vhi}: no event can pass; "
                    f"expected {lo} <= {hi} (or {hi} = -1 for no upper cut)"
                )
        for key in ("etaj", "etal"):
            v = getattr(self, key)
            if v == 0 or v < -1:
                raise ValueError(
                    f"{key} = {v} accepts no particle; expected a positive |eta| limit "
                    "or -1 for no cut"
                )
        return self


class LearnedCard(_Strict):
    """Settings of a learned integrator (``integrator.type: madnis`` or ``cfm``), trained
    after the VEGAS warm-up on ``rounds`` of ``points_per_round`` fresh points.

    ``state``: a file saved by an earlier run (``save_state``, default
    ``<output.path>/integrator_state.pt``) to load instead of training (VEGAS warm-up
    and training are skipped).
    """

    rounds: Annotated[int, Field(ge=1)] = 100
    points_per_round: Annotated[int, Field(ge=100)] = 2000
    learning_rate: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 3e-3
    #: MadNIS's training loss (stratified variance or KL divergence); madnis only
    loss: Literal["variance", "kl"] = "variance"
    hidden: Annotated[int, Field(ge=1)] = 32  #: width of the networks' hidden layers
    hidden_layers: Annotated[int, Field(ge=1)] = 2
    #: optimiser steps per round (MadNIS: buffered steps, default 3; CFM: default 100)
    steps_per_round: Annotated[int, Field(ge=0)] | None = None
    #: MadNIS: learning-rate schedule over the rounds (cosine decay to 1 %, or constant)
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    #: MadNIS: train the first this many rounds on the tempered target |f|^beta, beta
    #: rising from anneal_start to 1, so the flows find every peak (0: off)
    anneal_rounds: Annotated[int, Field(ge=0)] = 0
    anneal_start: Annotated[float, Field(gt=0, le=1)] = 0.01
    #: CFM's optimiser steps on the unweighted VEGAS sample before the rounds (cfm only)
    pretrain_steps: Annotated[int, Field(ge=0)] = 1000
    state: str | None = None  #: load this trained state and skip training
    save_state: str | None = None  #: where to save it; default <output.path>/integrator_state.pt


class IntegratorCard(_Strict):
    """Integrator settings. ``vegas``: adaptive grid (Lepage), trained for ``iterations``
    of ``points_per_iteration`` points before events are generated with the frozen grid;
    with ``multichannel`` one grid per phase-space channel, each with these settings.

    ``madnis`` (multi-channel neural importance sampling, normalizing flows on the VEGAS
    grids and learned channel weights) and ``cfm`` (a flow-matching sampler, one channel:
    needs ``multichannel: false`` or a one-channel process) start from the trained VEGAS
    grids, are trained with the ``learned`` settings and generate the events.
    """

    type: Literal["vegas", "madnis", "cfm"] = "vegas"
    #: one VEGAS grid per phase-space channel (MadGraph's single-diagram-enhanced
    #: multi-channel); false: one grid on one mapping (peaked on the heaviest resonance)
    multichannel: bool = True
    bins: Annotated[int, Field(ge=2)] = 64
    iterations: Annotated[int, Field(ge=1)] = 8
    points_per_iteration: Annotated[int, Field(ge=100)] = 20000
    alpha: Annotated[float, Field(ge=0)] = 1.5
    batch_size: Annotated[int, Field(ge=100)] = 100000
    #: unweighting maximum: the cross section above it is at most this fraction
    max_weight_loss: Annotated[float, Field(ge=0, lt=1)] = 1e-3
    #: learned-integrator settings (type madnis or cfm only)
    learned: LearnedCard | None = None

    @model_validator(mode="after")
    def _learned_settings(self) -> IntegratorCard:
        if self.type == "vegas" and self.learned is not None:
            raise ValueError(
                "learned settings given but type is vegas; set type: madnis or cfm, "
                "or remove learned"
            )
        if self.type == "cfm" and self.learned is not None and self.learned.loss != "variance":
            raise ValueError(
                "learned.loss applies to type madnis only (cfm trains by flow matching)"
            )
        if self.type == "cfm" and self.learned is not None and self.learned.anneal_rounds:
            raise ValueError(
                "learned.anneal_rounds applies to type madnis only (cfm trains by flow matching)"
            )
        return self

    @property
    def learned_settings(self) -> LearnedCard:
        """The learned-integrator settings (defaults when not given)."""
        return self.learned if self.learned is not None else LearnedCard()


class RunSettings(_Strict):
    """Event count, seed and device."""

    nevents: Annotated[int, Field(ge=1)] = 10000
    seed: Annotated[int, Field(ge=0)] = 42
    device: str = "cpu"


OutputFormat = Literal["lhe", "root"]
_ALL_FORMATS: tuple[OutputFormat, ...] = ("lhe", "root")


class OutputCard(_Strict):
    """Where and what to write: ``<path>/events.lhe[.gz]``, ``<path>/events.root``,
    ``<path>/summary.json``."""

    path: str = "output/run"
    formats: list[OutputFormat] = Field(default_factory=lambda: list(_ALL_FORMATS))
    gzip: bool = False


Engine = Literal["auto", "analytic", "amplitudes"]


class RunCard(_Strict):
    """A whole run card.

    ``process`` is one MadGraph ``generate`` line (multiparticle labels, coupling orders,
    ``/``, ``$``, ``$$``, required s-channels); ``definitions`` adds multiparticle labels,
    as MadGraph's ``define`` lines (``["define q = u c d s"]``) or a mapping
    (``{q: [u, c, d, s]}``); ``engine`` chooses the matrix elements: ``analytic`` the
    hand-written library, ``amplitudes`` the automatic helicity-amplitude engine, ``auto``
    the library when it has every subprocess of the process, else the engine.
    """

    process: str
    definitions: list[str] | dict[str, list[str] | str] | None = None
    engine: Engine = "auto"
    beams: BeamsCard = Field(default_factory=BeamsCard)
    pdf: PDFCard = Field(default_factory=PDFCard)
    model: ModelCard = Field(default_factory=ModelCard)
    scale: ScaleCard = Field(default_factory=ScaleCard)
    cuts: CutsCard = Field(default_factory=CutsCard)
    integrator: IntegratorCard = Field(default_factory=IntegratorCard)
    run: RunSettings = Field(default_factory=RunSettings)
    output: OutputCard = Field(default_factory=OutputCard)

    @field_validator("definitions", mode="before")
    @classmethod
    def _definitions_shape(cls, value: Any) -> Any:
        def names(v: Any) -> bool:
            return isinstance(v, str) or isinstance(v, list) and all(isinstance(x, str) for x in v)

        if value is None or isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        if isinstance(value, dict) and all(
            isinstance(k, str) and names(v) for k, v in value.items()
        ):
            return value
        raise ValueError(
            "expected a list of 'define LABEL = PARTICLES' lines or a mapping of labels to "
            f"particle names (a list or a space-separated string), got {value!r}"
        )

    @property
    def sqrt_s(self) -> float:
        """Collider centre-of-mass energy in GeV (massless beams)."""
        e1, e2 = self.beams.energies
        return 2.0 * math.sqrt(e1 * e2)


def _format_validation_error(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    # Union members appear in the location by type name ("ZPrimeCouplingsCard",
    # "literal['ssm']"); card keys are lower case, so those are dropped.
    loc = [p for p in first["loc"] if not (isinstance(p, str) and p[:1].isupper() or "[" in str(p))]
    key = ".".join(str(p) for p in loc) or "(top level)"
    kind = first["type"]
    if kind == "extra_forbidden":
        msg = "unknown key; check the spelling (allowed keys are listed in the README)"
    elif kind == "missing":
        msg = "required key is missing"
    else:
        msg = first["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if "input" in first and kind not in ("value_error",):
            msg = f"{msg}, got {first['input']!r}"
    more = f" (and {len(err.errors()) - 1} more problem(s))" if len(err.errors()) > 1 else ""
    return f"{source}: {key}: {msg}{more}"


_Model = TypeVar("_Model", bound=BaseModel)


def validate_card(model: type[_Model], data: Any, source: str) -> _Model:
    """Validate a card given as a mapping against the pydantic ``model`` (the run card,
    the unfolding card); CardError naming ``source`` and the key at fault."""
    if not isinstance(data, dict):
        raise CardError(f"{source}: expected a YAML mapping of keys, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise CardError(_format_validation_error(source, err)) from None


def read_yaml_card(path: str | Path) -> tuple[Any, str]:
    """A card file's parsed YAML and its text; CardError for a missing or unreadable file
    or invalid YAML, naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CardError(f"{path}: card file not found") from None
    except OSError as err:
        raise CardError(f"{path}: cannot read card ({err.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise CardError(f"{path}: not valid YAML: {err}".replace("\n", " ")) from None
    return data, text


def parse_card(data: Any, source: str = "<card>") -> RunCard:
    """Validate a card given as a mapping; ``source`` names it in error messages."""
    return validate_card(RunCard, data, source)


def load_card(path: str | Path) -> tuple[RunCard, str]:
    """Read and validate a YAML run card; return the card and its text."""
    data, text = read_yaml_card(path)
    return parse_card(data, str(path)), text
