"""Processes: the :class:`Process` contract, the analytic process library, and the
resolution of any MadGraph process line (:func:`resolve`: the library or the automatic
helicity-amplitude engine of :mod:`processes.auto`).

Example:
    >>> from processes import load, expand, resolve
    >>> load("g g > t t~").name
    'g g > t t~'
    >>> len(expand("p p > t t~", n_flavours=5))
    11
    >>> len(resolve("p p > e+ e- j", engine="amplitudes"))   # AutoProcess / FlavourAlias
    24
"""

from processes.base import Channel, Process, Propagator
from processes.drell_yan import DrellYan
from processes.parse import ProcessSpec, parse, process_name
from processes.particles import (
    MULTIPARTICLE_LABELS,
    PARTICLES,
    Particle,
    charge,
    colour,
    multiparticles,
    particle,
    particle_name,
    pdg_id,
    weak_isospin,
)
from processes.registry import (
    ENGINES,
    AnalyticProcess,
    FlavourAlias,
    ProcessGroup,
    engine_subprocesses,
    expand,
    label_definitions,
    load,
    lookup,
    matrix_element_owner,
    register,
    registered_names,
    resolve,
)
from processes.ttbar import GGToTTbar, QQbarToTTbar
from processes.w_lnu import WToLeptonNeutrino

__all__ = [
    "Process",
    "Channel",
    "Propagator",
    "ProcessGroup",
    "AnalyticProcess",
    "load",
    "expand",
    "resolve",
    "engine_subprocesses",
    "label_definitions",
    "matrix_element_owner",
    "FlavourAlias",
    "ENGINES",
    "lookup",
    "register",
    "registered_names",
    "ProcessSpec",
    "parse",
    "process_name",
    "Particle",
    "PARTICLES",
    "MULTIPARTICLE_LABELS",
    "particle",
    "pdg_id",
    "particle_name",
    "charge",
    "weak_isospin",
    "colour",
    "multiparticles",
    "DrellYan",
    "WToLeptonNeutrino",
    "QQbarToTTbar",
    "GGToTTbar",
]
