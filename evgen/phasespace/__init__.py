"""Phase-space mappings: bijections from the unit hypercube to momenta, with Jacobians.

Every mapping has ``map(r) -> (x, jac)`` and, where it exists, ``map_inverse(x) ->
(r, jac)``; ``jac`` is always the forward Jacobian dx/dr ("measure per unit hypercube
volume"), so ``f(x) * jac`` is the integrand on the cube either way. Tensors are float64
with events on the first axis, on the input's device.

Modules, one concept each:
    invariants   s -> Breit-Wigner, power-law, flat and mixture mappings of one invariant
    two_body     TwoBodyDecay: (cos theta, phi) <-> two daughters of a four-momentum
    rambo        Rambo: flat n-body phase space with 3n - 4 numbers, massless and massive
    luminosity   LuminosityMapping: (tau, y) -> (x1, x2) with dx1 dx2 = dtau dy
    collider     PhaseSpacePoint, HadronicPhaseSpace, LeptonicPhaseSpace
"""

from evgen.phasespace.collider import HadronicPhaseSpace, LeptonicPhaseSpace, PhaseSpacePoint
from evgen.phasespace.invariants import (
    BreitWignerMapping,
    FlatMapping,
    InvariantMapping,
    MixtureMapping,
    PowerLawMapping,
    propagator_mapping,
)
from evgen.phasespace.luminosity import LuminosityMapping
from evgen.phasespace.rambo import Rambo, massless_volume
from evgen.phasespace.two_body import TwoBodyDecay, kallen, two_body_momentum

__all__ = [
    "BreitWignerMapping",
    "FlatMapping",
    "HadronicPhaseSpace",
    "InvariantMapping",
    "LeptonicPhaseSpace",
    "LuminosityMapping",
    "MixtureMapping",
    "PhaseSpacePoint",
    "PowerLawMapping",
    "Rambo",
    "TwoBodyDecay",
    "kallen",
    "massless_volume",
    "propagator_mapping",
    "two_body_momentum",
]
