"""Particles of MadGraph's ``sm`` model: names, PDG ids, charges, isospin, colour.

Names are MadGraph's (``u``, ``u~``, ``e-``, ``e+``, ``ve~``, ``g``, ``a``, ``z``, ``w+``,
``h``). Quantum numbers are per particle; an antiparticle has the opposite charge and
third isospin component and the conjugate colour representation.

Example:
    >>> pdg_id("t~"), particle_name(-11), charge(2), colour(-1)
    (-6, 'e+', 0.6666666666666666, -3)
    >>> multiparticles(5)["p"]
    ('g', 'u', 'c', 'd', 's', 'b', 'u~', 'c~', 'd~', 's~', 'b~')
"""

from __future__ import annotations

from dataclasses import dataclass

from evgen.errors import ProcessError

__all__ = [
    "Particle",
    "PARTICLES",
    "particle",
    "pdg_id",
    "particle_name",
    "charge",
    "weak_isospin",
    "colour",
    "is_quark",
    "is_lepton",
    "is_neutrino",
    "multiparticles",
    "MULTIPARTICLE_LABELS",
]


@dataclass(frozen=True)
class Particle:
    """One particle (or antiparticle) of the model.

    Attributes:
        name: MadGraph name, e.g. ``"u~"``.
        pdg: PDG id, negative for antiparticles.
        charge: electric charge in units of the positron charge e.
        t3: third component of weak isospin. Fermions: that of the left-handed
            particle (+1/2 for u, ve; -1/2 for d, e-), negated for antifermions (the
            isospin of the right-handed antiparticle); W+- : +-1; g, a, z: 0;
            h: -1/2 (the neutral component of the Higgs doublet).
        colour: SU(3) representation: 1, 3 (quark), -3 (antiquark) or 8 (gluon).
    """

    name: str
    pdg: int
    charge: float
    t3: float
    colour: int


def _table() -> dict[str, Particle]:
    rows: list[Particle] = []
    # (particle name, antiparticle name, pdg, charge, t3, colour)
    fermions = [
        ("d", "d~", 1, -1 / 3, -0.5, 3),
        ("u", "u~", 2, 2 / 3, 0.5, 3),
        ("s", "s~", 3, -1 / 3, -0.5, 3),
        ("c", "c~", 4, 2 / 3, 0.5, 3),
        ("b", "b~", 5, -1 / 3, -0.5, 3),
        ("t", "t~", 6, 2 / 3, 0.5, 3),
        ("e-", "e+", 11, -1.0, -0.5, 1),
        ("ve", "ve~", 12, 0.0, 0.5, 1),
        ("mu-", "mu+", 13, -1.0, -0.5, 1),
        ("vm", "vm~", 14, 0.0, 0.5, 1),
        ("ta-", "ta+", 15, -1.0, -0.5, 1),
        ("vt", "vt~", 16, 0.0, 0.5, 1),
    ]
    for name, anti, pdg, q, t3, col in fermions:
        rows.append(Particle(name, pdg, q, t3, col))
        rows.append(Particle(anti, -pdg, -q, -t3, -col if col == 3 else col))
    rows += [
        Particle("g", 21, 0.0, 0.0, 8),
        Particle("a", 22, 0.0, 0.0, 1),
        Particle("z", 23, 0.0, 0.0, 1),
        Particle("w+", 24, 1.0, 1.0, 1),
        Particle("w-", -24, -1.0, -1.0, 1),
        Particle("h", 25, 0.0, -0.5, 1),
        Particle("zp", 32, 0.0, 0.0, 1),  # a Z' (model.mzp), as in MadGraph's Z' models
    ]
    return {p.name: p for p in rows}


#: Every particle of the model by MadGraph name.
PARTICLES: dict[str, Particle] = _table()
_BY_PDG: dict[int, Particle] = {p.pdg: p for p in PARTICLES.values()}

#: The multiparticle labels this library defines (see :func:`multiparticles`).
MULTIPARTICLE_LABELS: tuple[str, ...] = ("p", "j", "l+", "l-", "vl", "vl~")


def particle(key: str | int) -> Particle:
    """The :class:`Particle` with MadGraph name or PDG id ``key``.

    Raises:
        ProcessError: for an unknown name or id, listing the valid names.
    """
    found = _BY_PDG.get(key) if isinstance(key, int) else PARTICLES.get(key)
    if found is None:
        what = "PDG id" if isinstance(key, int) else "particle name"
        raise ProcessError(
            f"unknown {what} {key!r}; valid names: {' '.join(PARTICLES)}"
            f" (multiparticle labels: {' '.join(MULTIPARTICLE_LABELS)})"
        )
    return found


def pdg_id(name: str) -> int:
    """PDG id of the particle called ``name`` (``"e+"`` -> -11)."""
    return particle(name).pdg


def particle_name(pdg: int) -> str:
    """MadGraph name of the particle with PDG id ``pdg`` (-11 -> ``"e+"``)."""
    return particle(pdg).name


def charge(pdg: int) -> float:
    """Electric charge in units of e."""
    return particle(pdg).charge


def weak_isospin(pdg: int) -> float:
    """Third component of weak isospin, T3 (see :class:`Particle`)."""
    return particle(pdg).t3


def colour(pdg: int) -> int:
    """SU(3) representation: 1, 3, -3 or 8."""
    return particle(pdg).colour


def is_quark(pdg: int) -> bool:
    """True for quarks and antiquarks (d ... t)."""
    return 1 <= abs(pdg) <= 6


def is_lepton(pdg: int) -> bool:
    """True for charged leptons and neutrinos and their antiparticles."""
    return 11 <= abs(pdg) <= 16


def is_neutrino(pdg: int) -> bool:
    """True for neutrinos and antineutrinos."""
    return abs(pdg) in (12, 14, 16)


def multiparticles(n_flavours: int = 4) -> dict[str, tuple[str, ...]]:
    """MadGraph's default multiparticle labels for a 4- or 5-flavour proton.

    ``p`` and ``j``: ``g u c d s u~ c~ d~ s~``, plus ``b b~`` with ``n_flavours=5`` (MadGraph
    adds them when the model's b is massless). ``l+ = e+ mu+``,
    ``l- = e- mu-``, ``vl = ve vm vt``, ``vl~ = ve~ vm~ vt~`` (MadGraph's
    ``input/multiparticles_default.txt``).

    Raises:
        ProcessError: if ``n_flavours`` is not 4 or 5.
    """
    if n_flavours not in (4, 5):
        raise ProcessError(f"n_flavours: must be 4 or 5, got {n_flavours!r}")
    quarks = ("u", "c", "d", "s") + (("b",) if n_flavours == 5 else ())
    proton = ("g", *quarks, *(q + "~" for q in quarks))
    return {
        "p": proton,
        "j": proton,
        "l+": ("e+", "mu+"),
        "l-": ("e-", "mu-"),
        "vl": ("ve", "vm", "vt"),
        "vl~": ("ve~", "vm~", "vt~"),
    }
