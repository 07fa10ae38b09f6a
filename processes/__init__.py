"""Processes: the :class:`Process` contract and the analytic process library.

Example:
    >>> from processes import load, expand
    >>> load("g g > t t~").name
    'g g > t t~'
    >>> len(expand("p p > t t~", n_flavours=5))
    11
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
    AnalyticProcess,
    ProcessGroup,
    expand,
    load,
    lookup,
    register,
    registered_names,
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
