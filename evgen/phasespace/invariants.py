"""One-dimensional mappings of an invariant (a squared mass s, or tau = s_hat / S).

Each mapping is a monotone bijection of [0, 1] onto [s_min, s_max]:

    map(r)          -> (s, jac)      r, s, jac of shape (n,)
    map_inverse(s)  -> (r, jac)

``jac = ds/dr`` (the measure per unit hypercube length) in *both* directions, so
``1 / jac`` is the normalised sampling density of ``s`` and ``mean(f(s) * jac)`` over
uniform ``r`` estimates ``int f(s) ds``. Bounds are numbers in the invariant's units
(GeV^2 for s); tensors are float64 on the input's device.

Example:
    >>> m = BreitWignerMapping(91.188, 2.4414, 60.0**2, 120.0**2)
    >>> s, jac = m.map(torch.rand(1000, dtype=torch.float64))
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "InvariantMapping",
    "FlatMapping",
    "PowerLawMapping",
    "BreitWignerMapping",
    "MixtureMapping",
    "propagator_mapping",
]


def _check_range(name: str, s_min: float, s_max: float) -> None:
    if not (math.isfinite(s_min) and math.isfinite(s_max)) or not 0.0 <= s_min < s_max:
        raise ValueError(f"{name}: need 0 <= s_min < s_max (finite), got [{s_min}, {s_max}]")


class InvariantMapping(ABC):
    """A monotone bijection r in [0, 1] -> s in [s_min, s_max] with jac = ds/dr."""

    s_min: float
    s_max: float

    @abstractmethod
    def _forward(self, r: Tensor) -> Tensor:
        """s(r) for r in [0, 1], float64."""

    @abstractmethod
    def _backward(self, s: Tensor) -> Tensor:
        """r(s) for s in [s_min, s_max], float64."""

    @abstractmethod
    def jacobian(self, s: Tensor) -> Tensor:
        """ds/dr at s: the inverse of the normalised density of s."""

    def density(self, s: Tensor) -> Tensor:
        """The normalised sampling density of s (1 / jac), zero outside [s_min, s_max]."""
        s = s.to(torch.float64)
        inside = (s >= self.s_min) & (s <= self.s_max)
        sc = s.clamp(self.s_min, self.s_max)
        return torch.where(inside, 1.0 / self.jacobian(sc), torch.zeros_like(s))

    def map(self, r: Tensor) -> tuple[Tensor, Tensor]:
        """r (n,) in [0, 1] -> (s (n,), jac = ds/dr (n,))."""
        s = self._forward(r.to(torch.float64).clamp(0.0, 1.0)).clamp(self.s_min, self.s_max)
        return s, self.jacobian(s)

    def map_inverse(self, s: Tensor) -> tuple[Tensor, Tensor]:
        """s (n,) in [s_min, s_max] -> (r (n,), jac = ds/dr (n,)); s is clamped into range."""
        s = s.to(torch.float64).clamp(self.s_min, self.s_max)
        return self._backward(s).clamp(0.0, 1.0), self.jacobian(s)


class FlatMapping(InvariantMapping):
    """Uniform s on [s_min, s_max]: s = s_min + r (s_max - s_min), jac = s_max - s_min."""

    def __init__(self, s_min: float, s_max: float) -> None:
        _check_range("FlatMapping", s_min, s_max)
        self.s_min, self.s_max = float(s_min), float(s_max)

    def _forward(self, r: Tensor) -> Tensor:
        return self.s_min + r * (self.s_max - self.s_min)

    def _backward(self, s: Tensor) -> Tensor:
        return (s - self.s_min) / (self.s_max - self.s_min)

    def jacobian(self, s: Tensor) -> Tensor:
        return torch.full_like(s, self.s_max - self.s_min)


class PowerLawMapping(InvariantMapping):
    """Density proportional to s^-nu on [s_min, s_max] (nu = 1: uniform in ln s).

    With a = 1 - nu and L = ln(s_max / s_min):

        s = s_min (1 + r expm1(a L))^(1/a),   jac = s expm1(a L) / (a (s/s_min)^a)
        nu = 1:  s = s_min exp(r L),           jac = s L

    ``s_min = 0`` is allowed for nu < 1 (then s = s_max r^(1/a)). Written with
    expm1/log1p so that nu close to 1 loses no precision.
    """

    def __init__(self, s_min: float, s_max: float, nu: float = 1.0) -> None:
        _check_range("PowerLawMapping", s_min, s_max)
        if s_min == 0.0 and nu >= 1.0:
            raise ValueError(
                f"PowerLawMapping: s^-nu with nu = {nu} >= 1 is not integrable at s_min = 0; "
                "give s_min > 0 or nu < 1"
            )
        self.s_min, self.s_max, self.nu = float(s_min), float(s_max), float(nu)
        self._a = 1.0 - self.nu
        if self.s_min > 0:
            self._log_ratio = math.log(self.s_max / self.s_min)
            self._em = math.expm1(self._a * self._log_ratio)

    def _forward(self, r: Tensor) -> Tensor:
        a = self._a
        if self.s_min == 0.0:
            return self.s_max * r ** (1.0 / a)
        if a == 0.0:
            return self.s_min * torch.exp(r * self._log_ratio)
        return self.s_min * torch.exp(torch.log1p(r * self._em) / a)

    def _backward(self, s: Tensor) -> Tensor:
        a = self._a
        if self.s_min == 0.0:
            return (s / self.s_max) ** a
        if a == 0.0:
            return torch.log(s / self.s_min) / self._log_ratio
        return torch.expm1(a * torch.log(s / self.s_min)) / self._em

    def jacobian(self, s: Tensor) -> Tensor:
        a = self._a
        if self.s_min == 0.0:
            # jac = s_max^a s^(1-a) / a, written so that s = 0 gives 0 for nu < 1
            return self.s_max**a * s**self.nu / a
        if a == 0.0:
            return s * self._log_ratio
        return s * (self._em / a) * torch.exp(-a * torch.log(s / self.s_min))


class BreitWignerMapping(InvariantMapping):
    """Density proportional to 1 / ((s - M^2)^2 + M^2 G^2) on [s_min, s_max].

    With theta(s) = atan((s - M^2) / (M G)):

        s = M^2 + M G tan(theta_min + r (theta_max - theta_min))
        jac = (theta_max - theta_min) ((s - M^2)^2 + M^2 G^2) / (M G)
    """

    def __init__(self, mass: float, width: float, s_min: float, s_max: float) -> None:
        _check_range("BreitWignerMapping", s_min, s_max)
        if not (mass > 0 and width > 0):
            raise ValueError(
                f"BreitWignerMapping: need mass > 0 and width > 0 GeV, got {mass}, {width}"
            )
        self.mass, self.width = float(mass), float(width)
        self.s_min, self.s_max = float(s_min), float(s_max)
        self._m2 = self.mass**2
        self._mg = self.mass * self.width
        self._t_min = math.atan((self.s_min - self._m2) / self._mg)
        self._t_max = math.atan((self.s_max - self._m2) / self._mg)

    def _forward(self, r: Tensor) -> Tensor:
        t = self._t_min + r * (self._t_max - self._t_min)
        return self._m2 + self._mg * torch.tan(t)

    def _backward(self, s: Tensor) -> Tensor:
        t = torch.atan((s - self._m2) / self._mg)
        return (t - self._t_min) / (self._t_max - self._t_min)

    def jacobian(self, s: Tensor) -> Tensor:
        return (self._t_max - self._t_min) * ((s - self._m2) ** 2 + self._mg**2) / self._mg


class MixtureMapping(InvariantMapping):
    """A monotone bijection whose density is a weighted sum of other mappings' densities.

    The cumulative distribution is F(s) = sum_k w_k r_k(s), with r_k the components'
    inverse maps; ``map_inverse`` evaluates it in closed form and ``map`` solves
    F(s) = r by Newton's method in the first component's coordinate, safeguarded by
    bisection (converged to float64 precision there). ``jac = 1 / sum_k w_k / jac_k(s)``.
    All components share [s_min, s_max].

    Args:
        components: mappings on the same [s_min, s_max]; the first should have the
            broadest support (it carries the bisection).
        weights: non-negative fractions, normalised here.
    """

    _MAX_STEPS = 200

    def __init__(self, components: Sequence[InvariantMapping], weights: Sequence[float]) -> None:
        if len(components) == 0 or len(components) != len(weights):
            raise ValueError("MixtureMapping: need as many weights as components (>= 1)")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"MixtureMapping: weights must be >= 0, not all 0, got {weights}")
        lo, hi = components[0].s_min, components[0].s_max
        for c in components:
            if not (
                math.isclose(c.s_min, lo, rel_tol=1e-12, abs_tol=1e-300)
                and math.isclose(c.s_max, hi, rel_tol=1e-12)
            ):
                raise ValueError("MixtureMapping: components must share [s_min, s_max]")
        self.components = list(components)
        total = float(sum(weights))
        self.weights = [float(w) / total for w in weights]
        self.s_min, self.s_max = float(lo), float(hi)

    def _cdf(self, s: Tensor) -> Tensor:
        out = torch.zeros_like(s)
        for c, w in zip(self.components, self.weights, strict=True):
            if w > 0:
                out = out + w * c.map_inverse(s)[0]
        return out

    def _forward(self, r: Tensor) -> Tensor:
        # Newton in the first component's coordinate u, safeguarded as in Numerical
        # Recipes' rtsafe: bisect the bracket [lo, hi] (which always holds the root)
        # when the Newton step leaves it or shrinks slower than bisection would.
        base = self.components[0]
        lo, hi = torch.zeros_like(r), torch.ones_like(r)
        u = r.clone()
        step_old = torch.ones_like(r)
        for _ in range(self._MAX_STEPS):
            s, jac_base = base.map(u)
            g = self._cdf(s) - r
            lo = torch.where(g < 0, u, lo)
            hi = torch.where(g > 0, u, hi)
            step = g * self.jacobian(s) / jac_base
            newton = u - step
            ok = (newton > lo) & (newton < hi) & torch.isfinite(newton)
            ok &= step.abs() <= 0.5 * step_old.abs()
            u_new = torch.where(ok, newton, 0.5 * (lo + hi))
            u_new = torch.where(g == 0, u, u_new)
            step_old = u_new - u
            u = u_new
            if bool((step_old.abs() <= 4.5e-16 * u.abs()).all()):
                break
        return base.map(u)[0]

    def _backward(self, s: Tensor) -> Tensor:
        return self._cdf(s)

    def jacobian(self, s: Tensor) -> Tensor:
        dens = torch.zeros_like(s)
        for c, w in zip(self.components, self.weights, strict=True):
            if w > 0:
                dens = dens + w / c.jacobian(s)
        return 1.0 / dens


def propagator_mapping(
    s_min: float, s_max: float, mass: float = 0.0, width: float = 0.0, nu: float = 1.0
) -> InvariantMapping:
    """The usual choice for an s-channel propagator's invariant.

    A Breit-Wigner for a massive line with a width; s^-nu for a massless line when
    s_min > 0; flat otherwise (massive without width, or massless from s = 0).
    """
    if mass > 0 and width > 0:
        return BreitWignerMapping(mass, width, s_min, s_max)
    if mass == 0 and s_min > 0:
        return PowerLawMapping(s_min, s_max, nu)
    return FlatMapping(s_min, s_max)
