"""MadGraph's ``sm`` model as data: particles, vertices, couplings (a UFO-like structure).

The content is that of MG5_aMC's ``models/sm`` (the FeynRules SM of MG5 2.x/3.x) in its
``restrict_default`` form, in unitary gauge (no Goldstone bosons, no ghosts) with a unit CKM
matrix: vertices keep MadGraph's names (``V_89``), particle order (UFO: all particles
incoming), Lorentz structures (``FFV1`` ...) and colour strings (``T(3,2,1)``); couplings
keep their names (``GC_11``), expressions and orders. Vertices whose couplings vanish in
``restrict_default`` (CKM off-diagonal, the e, mu and c Yukawas) are left out, as MadGraph's
restriction does. A UFO reader could fill the same :class:`Model`.

Parameters come from :class:`evgen.params.SMParameters` (MadGraph's G_mu scheme: aEWM1, Gf,
MZ; MW, sw, ee, vev derived as in the UFO's ``parameters.py``). Choices, as MadGraph's sm:

- b quark massive, MB = ``params.mb`` with Yukawa mass ymb = MB (``sm``), or massless with
  no h b b~ vertex (``sm-no_b_mass``, ``b_mass=False``);
- t quark: MT = ``params.mt``, ymt = MT; widths WT, WZ, WW, WH from ``params``;
- tau lepton: **massive**, MTA = ymtau = 1.777 GeV (MadGraph's param_card), with the h ta+ ta-
  vertex; ``SMParameters`` has no tau mass (its ``mass(15)`` is 0), so an engine process
  built from this model takes its external masses from :meth:`Model.mass`;
- e, mu, u, d, s, c massless, no Yukawa couplings; neutrinos massless.

An optional Z' (PDG 32, when ``params.zprime`` is set; not in MadGraph's sm) couples to
fermions as ``params.zprime_couplings`` with the Z's sign convention (vertex
+i gamma^mu (g_L P_L + g_R P_R), MadGraph's sign for the Z), order QED 1.

Example:
    >>> from evgen.params import SMParameters
    >>> model = sm_model()
    >>> v = model.vertex_named("V_135")
    >>> v.particles, v.colour, v.lorentz, v.couplings
    ((-2, 2, 21), ('T(3,2,1)',), ('FFV1',), {(0, 0): 'GC_11'})
    >>> abs(model.coupling_values(SMParameters(), alpha_s=0.118)["GC_11"].imag)  # g_s
    1.2177...
"""

from __future__ import annotations

import cmath
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from evgen.errors import ProcessError
from evgen.params import SMParameters

__all__ = [
    "ModelParticle",
    "Vertex",
    "Coupling",
    "Model",
    "sm_model",
    "model_for",
    "couplings",
    "MTA",
]

#: The tau mass (and Yukawa mass) of MadGraph's sm param_card, GeV.
MTA = 1.777

_ALPHA_S_NAMES = re.compile(r"\b(G|aS)\b")


@dataclass(frozen=True)
class ModelParticle:
    """One particle of the model (its antiparticle is implied, UFO-style).

    Attributes:
        name: MadGraph name, e.g. ``"t"``.
        antiname: name of the antiparticle (the same for self-conjugate particles).
        pdg: PDG id of the particle (> 0).
        spin: 2s + 1 (1 scalar, 2 fermion, 3 vector).
        colour: SU(3) representation of the particle: 1, 3 or 8 (antiparticle: -3 for 3).
        mass: name of its mass parameter (``"MT"``), ``"ZERO"`` if massless.
        width: name of its width parameter (``"WT"``), ``"ZERO"`` if stable.
        charge: electric charge in units of e.
    """

    name: str
    antiname: str
    pdg: int
    spin: int
    colour: int
    mass: str
    width: str
    charge: float

    @property
    def self_conjugate(self) -> bool:
        return self.name == self.antiname


@dataclass(frozen=True)
class Vertex:
    """One interaction, as in a UFO ``vertices.py``.

    Attributes:
        name: MadGraph's name (``"V_135"``).
        particles: PDG ids in UFO order (all particles incoming; MadGraph matches the legs
            of a diagram, all outgoing, to this list as it is).
        colour: UFO colour strings; positions count from 1, negative indices are summed.
        lorentz: UFO Lorentz structure names (``"FFV1"``).
        couplings: ``{(colour index, lorentz index): coupling name}``.
    """

    name: str
    particles: tuple[int, ...]
    colour: tuple[str, ...]
    lorentz: tuple[str, ...]
    couplings: dict[tuple[int, int], str] = field(hash=False, compare=False)

    def terms(self, colour_index: int) -> tuple[tuple[str, str], ...]:
        """``(lorentz name, coupling name)`` pairs of one colour structure (MadGraph splits
        a vertex into one interaction per colour structure and sums its Lorentz terms)."""
        return tuple(
            (self.lorentz[j], self.couplings[(i, j)])
            for (i, j) in sorted(self.couplings)
            if i == colour_index
        )


@dataclass(frozen=True)
class Coupling:
    """A coupling constant: a Python expression in the model parameters (UFO syntax:
    ``complex(0,1)``, ``cmath.sqrt``, ``complexconjugate``) and its coupling orders."""

    name: str
    value: str
    order: dict[str, int] = field(hash=False, compare=False)

    @property
    def depends_on_alpha_s(self) -> bool:
        """True if the value involves G (or aS): recomputed per event with running alpha_s."""
        return bool(_ALPHA_S_NAMES.search(self.value))


def _cc(x: Any) -> Any:
    if isinstance(x, Tensor):
        return x.conj()
    return x.conjugate() if isinstance(x, complex) else x


@dataclass(frozen=True, eq=False)
class Model:
    """A model as data: particles, vertices, couplings and fixed parameters.

    Attributes:
        name: ``"sm"``, ``"sm-no_b_mass"``, or with ``"+zp"`` for the Z'.
        particles: one entry per particle/antiparticle pair.
        vertices: the interactions.
        couplings: by name.
        order_hierarchy: MadGraph's coupling-order hierarchy: WEIGHTED = sum(h * order).
        fixed: parameters the model (its restriction) fixes, overriding ``SMParameters``
            (e.g. ``MB = 0`` in ``sm-no_b_mass``, ``MTA``).
    """

    name: str
    particles: tuple[ModelParticle, ...]
    vertices: tuple[Vertex, ...]
    couplings: Mapping[str, Coupling]
    order_hierarchy: Mapping[str, int]
    fixed: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        by_pdg: dict[int, tuple[ModelParticle, int]] = {}
        for p in self.particles:
            by_pdg[p.pdg] = (p, 1)
            if not p.self_conjugate:
                by_pdg[-p.pdg] = (p, -1)
        object.__setattr__(self, "_by_pdg", by_pdg)
        object.__setattr__(self, "_by_name", {v.name: v for v in self.vertices})

    # ---------------------------------------------------------------- particles
    def has(self, pdg: int) -> bool:
        """True if the model has the particle with PDG id ``pdg`` (signed)."""
        return pdg in self._by_pdg  # type: ignore[attr-defined]

    def particle(self, pdg: int) -> ModelParticle:
        """The particle entry of ``pdg`` (the same entry for particle and antiparticle).

        Raises:
            ProcessError: for a PDG id the model does not have.
        """
        try:
            return self._by_pdg[pdg][0]  # type: ignore[attr-defined]
        except KeyError:
            raise ProcessError(
                f"model {self.name}: no particle with PDG id {pdg}; it has "
                + " ".join(p.name for p in self.particles)
            ) from None

    def anti(self, pdg: int) -> int:
        """PDG id of the antiparticle (``pdg`` itself for self-conjugate particles)."""
        return pdg if self.particle(pdg).self_conjugate else -pdg

    def name_of(self, pdg: int) -> str:
        """MadGraph name of ``pdg`` (``-6`` -> ``"t~"``)."""
        p = self.particle(pdg)
        return p.name if pdg > 0 else p.antiname

    def spin(self, pdg: int) -> int:
        """2s + 1."""
        return self.particle(pdg).spin

    def colour(self, pdg: int) -> int:
        """SU(3) representation of ``pdg`` as a particle: 1, 3, -3 or 8."""
        c = self.particle(pdg).colour
        return -c if (pdg < 0 and c == 3) else c

    def charge(self, pdg: int) -> float:
        p = self.particle(pdg)
        return p.charge if pdg > 0 else -p.charge

    def is_fermion(self, pdg: int) -> bool:
        return self.particle(pdg).spin % 2 == 0

    def vertex_named(self, name: str) -> Vertex:
        return self._by_name[name]  # type: ignore[attr-defined]

    # ---------------------------------------------------------------- parameters
    def parameters(self, params: SMParameters) -> dict[str, float]:
        """Every real parameter of the model (GeV), as the UFO's ``parameters.py`` derives
        them from the external ones; ``G``/``aS`` are not included (see
        :meth:`coupling_values`)."""
        p: dict[str, Any] = {
            "ZERO": 0.0,
            "aEWM1": params.alpha_ew_inv,
            "Gf": params.gf,
            "MZ": params.mz,
            "MT": params.mt,
            "MB": params.mb,
            "MH": params.mh,
            "MTA": MTA,
            "WZ": params.wz,
            "WW": params.ww,
            "WT": params.wt,
            "WH": params.wh,
            "CKM1x1": 1.0,
            "CKM2x2": 1.0,
            "CKM3x3": 1.0,
        }
        p.update(self.fixed)
        p.setdefault("ymb", p["MB"])
        p.setdefault("ymt", p["MT"])
        p.setdefault("ymtau", p["MTA"])
        aew = 1.0 / p["aEWM1"]
        mz2 = p["MZ"] ** 2
        p["aEW"] = aew
        p["MW"] = math.sqrt(
            mz2 / 2.0 + math.sqrt(mz2**2 / 4.0 - aew * math.pi * mz2 / (p["Gf"] * math.sqrt(2.0)))
        )
        p["ee"] = 2.0 * math.sqrt(aew) * math.sqrt(math.pi)
        p["sw2"] = 1.0 - p["MW"] ** 2 / mz2
        p["cw"] = math.sqrt(1.0 - p["sw2"])
        p["sw"] = math.sqrt(p["sw2"])
        p["g1"] = p["ee"] / p["cw"]
        p["gw"] = p["ee"] / p["sw"]
        p["vev"] = 2.0 * p["MW"] * p["sw"] / p["ee"]
        p["lam"] = p["MH"] ** 2 / (2.0 * p["vev"] ** 2)
        p["yb"] = p["ymb"] * math.sqrt(2.0) / p["vev"]
        p["yt"] = p["ymt"] * math.sqrt(2.0) / p["vev"]
        p["ytau"] = p["ymtau"] * math.sqrt(2.0) / p["vev"]
        p["muH"] = math.sqrt(p["lam"] * p["vev"] ** 2)
        if params.zprime is not None:
            p["MZp"] = params.zprime.mass
            p["WZp"] = params.wzp
            for kind, f in (("u", 2), ("d", 1), ("l", 11), ("v", 12)):
                left, right = params.zprime_couplings(f)
                p[f"gLzp{kind}"] = left
                p[f"gRzp{kind}"] = right
        return p

    def mass(self, pdg: int, params: SMParameters) -> float:
        """Mass of ``pdg`` in GeV (the model's: the tau is massive, see the module doc)."""
        name = self.particle(pdg).mass
        return 0.0 if name == "ZERO" else float(self.parameters(params)[name])

    def width(self, pdg: int, params: SMParameters) -> float:
        """Total width of ``pdg`` in GeV."""
        name = self.particle(pdg).width
        return 0.0 if name == "ZERO" else float(self.parameters(params)[name])

    def coupling_values(
        self,
        params: SMParameters,
        alpha_s: Tensor | float | None = None,
        names: Any = None,
    ) -> dict[str, complex | Tensor]:
        """Evaluate the couplings (dimensionless, or GeV for the 3-scalar/3-boson-scalar ones).

        Args:
            params: the Standard Model parameters.
            alpha_s: strong coupling: a number or a per-event tensor (n,); ``None`` uses
                ``params.alpha_s``. Couplings with G (QCD) are then tensors (n,) complex128
                on alpha_s's device; all others are Python complex numbers.
            names: evaluate only these couplings (default: all).

        Returns:
            ``{name: value}``.
        """
        ns: dict[str, Any] = dict(self.parameters(params))
        a_s = params.alpha_s if alpha_s is None else alpha_s
        if isinstance(a_s, Tensor):
            ns["aS"] = a_s.to(torch.float64) if not a_s.is_floating_point() else a_s
            ns["G"] = 2.0 * torch.sqrt(ns["aS"]) * math.sqrt(math.pi)
        else:
            ns["aS"] = float(a_s)
            ns["G"] = 2.0 * math.sqrt(float(a_s)) * math.sqrt(math.pi)
        env = {"__builtins__": {}, "complex": complex, "cmath": cmath, "complexconjugate": _cc}
        env.update(ns)
        out: dict[str, complex | Tensor] = {}
        for name in self.couplings if names is None else names:
            value = eval(self.couplings[name].value, env)  # noqa: S307 (model data)
            if isinstance(value, Tensor):
                out[name] = value.to(torch.complex128)
            else:
                out[name] = complex(value)
        return out


def couplings(
    params: SMParameters, alpha_s: Tensor | float | None = None, model: Model | None = None
) -> dict[str, complex | Tensor]:
    """The couplings of ``model`` (default: the ``sm``) at ``params`` and ``alpha_s``; see
    :meth:`Model.coupling_values`."""
    return (model if model is not None else sm_model()).coupling_values(params, alpha_s)


# ------------------------------------------------------------------------ the sm data

_ZERO, _I = "ZERO", "Identity(1,2)"

#: (name, antiname, pdg, 2s+1, colour, mass, width, charge), MG5 sm particles.py.
_PARTICLES = (
    ("d", "d~", 1, 2, 3, "ZERO", "ZERO", -1 / 3),
    ("u", "u~", 2, 2, 3, "ZERO", "ZERO", 2 / 3),
    ("s", "s~", 3, 2, 3, "ZERO", "ZERO", -1 / 3),
    ("c", "c~", 4, 2, 3, "ZERO", "ZERO", 2 / 3),
    ("b", "b~", 5, 2, 3, "MB", "ZERO", -1 / 3),
    ("t", "t~", 6, 2, 3, "MT", "WT", 2 / 3),
    ("e-", "e+", 11, 2, 1, "ZERO", "ZERO", -1.0),
    ("ve", "ve~", 12, 2, 1, "ZERO", "ZERO", 0.0),
    ("mu-", "mu+", 13, 2, 1, "ZERO", "ZERO", -1.0),
    ("vm", "vm~", 14, 2, 1, "ZERO", "ZERO", 0.0),
    ("ta-", "ta+", 15, 2, 1, "MTA", "ZERO", -1.0),
    ("vt", "vt~", 16, 2, 1, "ZERO", "ZERO", 0.0),
    ("g", "g", 21, 3, 8, "ZERO", "ZERO", 0.0),
    ("a", "a", 22, 3, 1, "ZERO", "ZERO", 0.0),
    ("z", "z", 23, 3, 1, "MZ", "WZ", 0.0),
    ("w+", "w-", 24, 3, 1, "MW", "WW", 1.0),
    ("h", "h", 25, 1, 1, "MH", "WH", 0.0),
)

#: (name, value, orders), MG5 sm couplings.py (2.x numbering) for the vertices kept here.
_COUPLINGS = (
    ("GC_1", "-(ee*complex(0,1))/3.", {"QED": 1}),
    ("GC_2", "(2*ee*complex(0,1))/3.", {"QED": 1}),
    ("GC_3", "-(ee*complex(0,1))", {"QED": 1}),
    ("GC_4", "ee*complex(0,1)", {"QED": 1}),
    ("GC_5", "ee**2*complex(0,1)", {"QED": 2}),
    ("GC_10", "-G", {"QCD": 1}),
    ("GC_11", "complex(0,1)*G", {"QCD": 1}),
    ("GC_12", "complex(0,1)*G**2", {"QCD": 2}),
    ("GC_33", "-6*complex(0,1)*lam", {"QED": 2}),
    ("GC_34", "(ee**2*complex(0,1))/(2.*sw**2)", {"QED": 2}),
    ("GC_35", "-((ee**2*complex(0,1))/sw**2)", {"QED": 2}),
    ("GC_36", "(cw**2*ee**2*complex(0,1))/sw**2", {"QED": 2}),
    ("GC_40", "(ee*complex(0,1))/(sw*cmath.sqrt(2))", {"QED": 1}),
    ("GC_41", "(CKM1x1*ee*complex(0,1))/(sw*cmath.sqrt(2))", {"QED": 1}),
    ("GC_45", "(CKM2x2*ee*complex(0,1))/(sw*cmath.sqrt(2))", {"QED": 1}),
    ("GC_49", "(CKM3x3*ee*complex(0,1))/(sw*cmath.sqrt(2))", {"QED": 1}),
    ("GC_50", "-(cw*ee*complex(0,1))/(2.*sw)", {"QED": 1}),
    ("GC_51", "(cw*ee*complex(0,1))/(2.*sw)", {"QED": 1}),
    ("GC_53", "(cw*ee*complex(0,1))/sw", {"QED": 1}),
    ("GC_57", "(-2*cw*ee**2*complex(0,1))/sw", {"QED": 2}),
    ("GC_58", "-(ee*complex(0,1)*sw)/(6.*cw)", {"QED": 1}),
    ("GC_59", "(ee*complex(0,1)*sw)/(2.*cw)", {"QED": 1}),
    ("GC_62", "(cw*ee*complex(0,1))/(2.*sw) + (ee*complex(0,1)*sw)/(2.*cw)", {"QED": 1}),
    (
        "GC_65",
        "ee**2*complex(0,1) + (cw**2*ee**2*complex(0,1))/(2.*sw**2)"
        " + (ee**2*complex(0,1)*sw**2)/(2.*cw**2)",
        {"QED": 2},
    ),
    ("GC_69", "-6*complex(0,1)*lam*vev", {"QED": 1}),
    ("GC_72", "(ee**2*complex(0,1)*vev)/(2.*sw**2)", {"QED": 1}),
    (
        "GC_81",
        "ee**2*complex(0,1)*vev + (cw**2*ee**2*complex(0,1)*vev)/(2.*sw**2)"
        " + (ee**2*complex(0,1)*sw**2*vev)/(2.*cw**2)",
        {"QED": 1},
    ),
    ("GC_83", "-((complex(0,1)*yb)/cmath.sqrt(2))", {"QED": 1}),
    ("GC_94", "-((complex(0,1)*yt)/cmath.sqrt(2))", {"QED": 1}),
    ("GC_99", "-((complex(0,1)*ytau)/cmath.sqrt(2))", {"QED": 1}),
    ("GC_100", "(ee*complex(0,1)*complexconjugate(CKM1x1))/(sw*cmath.sqrt(2))", {"QED": 1}),
    ("GC_104", "(ee*complex(0,1)*complexconjugate(CKM2x2))/(sw*cmath.sqrt(2))", {"QED": 1}),
    ("GC_108", "(ee*complex(0,1)*complexconjugate(CKM3x3))/(sw*cmath.sqrt(2))", {"QED": 1}),
)

_GGGG = ("f(-1,1,2)*f(3,4,-1)", "f(-1,1,3)*f(2,4,-1)", "f(-1,1,4)*f(2,3,-1)")
_H, _G, _A, _Z, _W = 25, 21, 22, 23, 24

#: (name, particles, colour, lorentz, couplings): MG5 sm vertices.py (2.x), unitary gauge,
#: restrict_default (CKM = 1; ye = ym = yc = 0).
_VERTICES: tuple[tuple[str, tuple[int, ...], tuple[str, ...], tuple[str, ...], dict], ...] = (
    ("V_6", (_H, _H, _H, _H), ("1",), ("SSSS1",), {(0, 0): "GC_33"}),
    ("V_9", (_H, _H, _H), ("1",), ("SSS1",), {(0, 0): "GC_69"}),
    ("V_36", (_G, _G, _G), ("f(1,2,3)",), ("VVV1",), {(0, 0): "GC_10"}),
    (
        "V_37",
        (_G, _G, _G, _G),
        _GGGG,
        ("VVVV1", "VVVV3", "VVVV4"),
        {(1, 1): "GC_12", (0, 0): "GC_12", (2, 2): "GC_12"},
    ),
    ("V_43", (_A, -_W, _W), ("1",), ("VVV1",), {(0, 0): "GC_4"}),
    ("V_51", (-_W, _W, _H, _H), ("1",), ("VVSS1",), {(0, 0): "GC_34"}),
    ("V_52", (-_W, _W, _H), ("1",), ("VVS1",), {(0, 0): "GC_72"}),
    ("V_53", (_A, _A, -_W, _W), ("1",), ("VVVV2",), {(0, 0): "GC_5"}),
    ("V_54", (-_W, _W, _Z), ("1",), ("VVV1",), {(0, 0): "GC_53"}),
    ("V_55", (-_W, -_W, _W, _W), ("1",), ("VVVV2",), {(0, 0): "GC_35"}),
    ("V_65", (_A, -_W, _W, _Z), ("1",), ("VVVV5",), {(0, 0): "GC_57"}),
    ("V_68", (_Z, _Z, _H, _H), ("1",), ("VVSS1",), {(0, 0): "GC_65"}),
    ("V_69", (_Z, _Z, _H), ("1",), ("VVS1",), {(0, 0): "GC_81"}),
    ("V_70", (-_W, _W, _Z, _Z), ("1",), ("VVVV2",), {(0, 0): "GC_36"}),
    ("V_71", (-1, 1, _A), (_I,), ("FFV1",), {(0, 0): "GC_1"}),
    ("V_72", (-3, 3, _A), (_I,), ("FFV1",), {(0, 0): "GC_1"}),
    ("V_73", (-5, 5, _A), (_I,), ("FFV1",), {(0, 0): "GC_1"}),
    ("V_74", (-1, 1, _G), ("T(3,2,1)",), ("FFV1",), {(0, 0): "GC_11"}),
    ("V_75", (-3, 3, _G), ("T(3,2,1)",), ("FFV1",), {(0, 0): "GC_11"}),
    ("V_76", (-5, 5, _G), ("T(3,2,1)",), ("FFV1",), {(0, 0): "GC_11"}),
    ("V_78", (-5, 5, _H), (_I,), ("FFS4",), {(0, 0): "GC_83"}),
    ("V_79", (-1, 1, _Z), (_I,), ("FFV2", "FFV3"), {(0, 0): "GC_50", (0, 1): "GC_58"}),
    ("V_80", (-3, 3, _Z), (_I,), ("FFV2", "FFV3"), {(0, 0): "GC_50", (0, 1): "GC_58"}),
    ("V_81", (-5, 5, _Z), (_I,), ("FFV2", "FFV3"), {(0, 1): "GC_58", (0, 0): "GC_50"}),
    ("V_89", (-2, 1, _W), (_I,), ("FFV2",), {(0, 0): "GC_100"}),
    ("V_93", (-4, 3, _W), (_I,), ("FFV2",), {(0, 0): "GC_104"}),
    ("V_97", (-6, 5, _W), (_I,), ("FFV2",), {(0, 0): "GC_108"}),
    ("V_98", (-11, 11, _A), ("1",), ("FFV1",), {(0, 0): "GC_3"}),
    ("V_99", (-13, 13, _A), ("1",), ("FFV1",), {(0, 0): "GC_3"}),
    ("V_100", (-15, 15, _A), ("1",), ("FFV1",), {(0, 0): "GC_3"}),
    ("V_106", (-15, 15, _H), ("1",), ("FFS4",), {(0, 0): "GC_99"}),
    ("V_107", (-11, 11, _Z), ("1",), ("FFV2", "FFV4"), {(0, 0): "GC_50", (0, 1): "GC_59"}),
    ("V_108", (-13, 13, _Z), ("1",), ("FFV2", "FFV4"), {(0, 0): "GC_50", (0, 1): "GC_59"}),
    ("V_109", (-15, 15, _Z), ("1",), ("FFV2", "FFV4"), {(0, 0): "GC_50", (0, 1): "GC_59"}),
    ("V_113", (-12, 11, _W), ("1",), ("FFV2",), {(0, 0): "GC_40"}),
    ("V_114", (-14, 13, _W), ("1",), ("FFV2",), {(0, 0): "GC_40"}),
    ("V_115", (-16, 15, _W), ("1",), ("FFV2",), {(0, 0): "GC_40"}),
    ("V_123", (-1, 2, -_W), (_I,), ("FFV2",), {(0, 0): "GC_41"}),
    ("V_127", (-3, 4, -_W), (_I,), ("FFV2",), {(0, 0): "GC_45"}),
    ("V_131", (-5, 6, -_W), (_I,), ("FFV2",), {(0, 0): "GC_49"}),
    ("V_132", (-2, 2, _A), (_I,), ("FFV1",), {(0, 0): "GC_2"}),
    ("V_133", (-4, 4, _A), (_I,), ("FFV1",), {(0, 0): "GC_2"}),
    ("V_134", (-6, 6, _A), (_I,), ("FFV1",), {(0, 0): "GC_2"}),
    ("V_135", (-2, 2, _G), ("T(3,2,1)",), ("FFV1",), {(0, 0): "GC_11"}),
    ("V_136", (-4, 4, _G), ("T(3,2,1)",), ("FFV1",), {(0, 0): "GC_11"}),
    ("V_137", (-6, 6, _G), ("T(3,2,1)",), ("FFV1",), {(0, 0): "GC_11"}),
    ("V_141", (-6, 6, _H), (_I,), ("FFS4",), {(0, 0): "GC_94"}),
    ("V_142", (-2, 2, _Z), (_I,), ("FFV2", "FFV5"), {(0, 0): "GC_51", (0, 1): "GC_58"}),
    ("V_143", (-4, 4, _Z), (_I,), ("FFV2", "FFV5"), {(0, 0): "GC_51", (0, 1): "GC_58"}),
    ("V_144", (-6, 6, _Z), (_I,), ("FFV2", "FFV5"), {(0, 0): "GC_51", (0, 1): "GC_58"}),
    ("V_148", (-11, 12, -_W), ("1",), ("FFV2",), {(0, 0): "GC_40"}),
    ("V_149", (-13, 14, -_W), ("1",), ("FFV2",), {(0, 0): "GC_40"}),
    ("V_150", (-15, 16, -_W), ("1",), ("FFV2",), {(0, 0): "GC_40"}),
    ("V_151", (-12, 12, _Z), ("1",), ("FFV2",), {(0, 0): "GC_62"}),
    ("V_152", (-14, 14, _Z), ("1",), ("FFV2",), {(0, 0): "GC_62"}),
    ("V_153", (-16, 16, _Z), ("1",), ("FFV2",), {(0, 0): "GC_62"}),
)

#: Z' vertices: FFV2 (gamma P_L) and FFV3 (gamma P_L - 2 gamma P_R) combine to
#: +i gamma (g_L P_L + g_R P_R): coefficients i (g_L + g_R/2) and -i g_R/2.
_ZP_KIND = {1: "d", 2: "u", 3: "d", 4: "u", 5: "d", 6: "u"}
_ZP_KIND.update({11: "l", 12: "v", 13: "l", 14: "v", 15: "l", 16: "v"})


def _zprime_data() -> tuple[list[tuple], list[tuple]]:
    couplings, vertices = [], []
    for kind in ("u", "d", "l", "v"):
        couplings.append(
            (f"GC_ZP{kind}L", f"complex(0,1)*(gLzp{kind} + gRzp{kind}/2.)", {"QED": 1})
        )
        couplings.append((f"GC_ZP{kind}R", f"-(complex(0,1)*gRzp{kind})/2.", {"QED": 1}))
    for f, kind in _ZP_KIND.items():
        colour = _I if f < 10 else "1"
        couplings_of = {(0, 0): f"GC_ZP{kind}L", (0, 1): f"GC_ZP{kind}R"}
        vertices.append((f"V_ZP{f}", (-f, f, 32), (colour,), ("FFV2", "FFV3"), couplings_of))
    return couplings, vertices


def sm_model(b_mass: bool = True, zprime: bool = False) -> Model:
    """MadGraph's ``sm`` (``restrict_default``; unitary gauge, CKM = 1) as a :class:`Model`.

    Args:
        b_mass: True: massive b with the h b b~ vertex (``sm``); False: massless b and no
            h b b~ vertex (``sm-no_b_mass``, MadGraph's 5-flavour model).
        zprime: add the Z' (PDG 32) of :class:`evgen.params.ZPrime` (the parameters must
            then have one).
    """
    particles = [ModelParticle(*row) for row in _PARTICLES]
    couplings_rows = list(_COUPLINGS)
    vertex_rows = [row for row in _VERTICES if b_mass or row[0] != "V_78"]
    if zprime:
        particles.append(ModelParticle("zp", "zp", 32, 3, 1, "MZp", "WZp", 0.0))
        zc, zv = _zprime_data()
        couplings_rows += zc
        vertex_rows += zv
    fixed = {"MTA": MTA, "ymtau": MTA}
    if not b_mass:
        fixed.update({"MB": 0.0, "ymb": 0.0})
    name = ("sm" if b_mass else "sm-no_b_mass") + ("+zp" if zprime else "")
    return Model(
        name=name,
        particles=tuple(particles),
        vertices=tuple(Vertex(*row) for row in vertex_rows),
        couplings={n: Coupling(n, v, o) for n, v, o in couplings_rows},
        order_hierarchy={"QCD": 1, "QED": 2},
        fixed=fixed,
    )


def model_for(params: SMParameters, b_mass: bool | None = None) -> Model:
    """The ``sm`` variant for ``params``: massless b (``sm-no_b_mass``) when ``params.mb``
    is 0 (or ``b_mass=False``), with the Z' when ``params.zprime`` is set."""
    if b_mass is None:
        b_mass = params.mb > 0.0
    return sm_model(b_mass=b_mass, zprime=params.zprime is not None)
