"""MadNIS: multi-channel neural importance sampling (arXiv:2212.06172, arXiv:2311.01548).

:class:`MadNIS` is the integrator; :class:`MadNISConfig` its settings. Modules: the
integrator (``integrator``), channel weights and integrand adapter (``channels``), the
replay buffer (``buffer``) and the losses (``losses``).
"""

from evgen.integrators.madnis.config import MadNISConfig
from evgen.integrators.madnis.integrator import MadNIS

__all__ = ["MadNIS", "MadNISConfig"]
