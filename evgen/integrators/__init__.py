"""Integrators on the unit hypercube: VEGAS now, learned samplers later."""

from evgen.integrators.base import Estimate, Integrand, Integrator, combine_estimates

__all__ = ["Estimate", "Integrand", "Integrator", "combine_estimates"]
