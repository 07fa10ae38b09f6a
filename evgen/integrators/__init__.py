"""Integrators on the unit hypercube: VEGAS now, learned samplers later."""

from evgen.integrators.base import Estimate, Integrand, Integrator, combine_estimates
from evgen.integrators.vegas import Vegas

__all__ = ["Estimate", "Integrand", "Integrator", "Vegas", "combine_estimates"]
