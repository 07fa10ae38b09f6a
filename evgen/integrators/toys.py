"""Toy integrands on the unit hypercube [0, 1]^d with accurately known integrals.

For benchmarking and testing integrators (``benchmarks/integrators.py``,
``tests/test_toys.py``). Each toy is a plain callable ``f(x)``: ``x`` a (n, d) tensor in
[0, 1]^d (computed in float64, on ``x``'s device), the result (n,) float64. Every toy is
normalised so that its integral over the cube is close to 1, and carries its exact
integral ``exact`` and, in ``method``, how that was computed.

- ``camel(d, alpha)``: the Gaussian "camel" of i-flow (C. Gao, J. Isaacson, C. Krause,
  arXiv:2001.05486, eq. (12)), two Gaussians on the main diagonal at 1/3 and 2/3,

      f(x) = [exp(-|x - 1/3|^2 / alpha^2) + exp(-|x - 2/3|^2 / alpha^2)] / (2 (alpha sqrt(pi))^d),

  an equal mixture of two normal densities of standard deviation alpha / sqrt(2) per
  axis. Default alpha = 0.1 (standard deviation 0.1 / sqrt(2) = 0.0707), the width of
  the Gaussian in the ``vegas`` package's tutorial (exp(-100 |x - 1/2|^2)) and of
  ``benchmarks/vegas_compare.py``; i-flow's example script defaults to alpha = 0.2.
  Exact: I = E^d, E = [erf(1 / (3 alpha)) + erf(2 / (3 alpha))] / 2 (the mixture
  integrates to 1 over R^d; truncation to [0, 1] factorises per axis).
- ``ring(r0, width)``: a thin Gaussian ring in 2-d around the centre of the square,
  f(x) = N0 exp(-(rho - r0)^2 / (2 width^2)), rho = |x - (1/2, 1/2)|, N0 normalising it
  over the plane: the "ring" of the MadNIS toy (T. Heimel et al., arXiv:2212.06172;
  madgraph-ml/madnis-tf experiments/toy/ring: P_ring with the same N0), a smooth thin
  version of i-flow's ring. Default r0 = 0.3, width = 0.01. Exact: closed form (erf) on
  the disc rho < 1/2; the corners of the square are bounded below 1e-21, see :func:`ring`.
- ``annulus(r_in, r_out)``: i-flow's ring as its example code defines it (1 for
  r_in <= rho <= r_out, else 0; radii 0.2 and 0.45), divided by the area, so I = 1
  exactly (the annulus lies inside the square). Discontinuous; not in the default suite.
- ``ridge(d, sigma)``: a narrow Gaussian in the distance from the main diagonal,
  f(x) = exp(-D^2 / (2 sigma^2)) / (sqrt(d) (2 pi sigma^2)^((d - 1) / 2)),
  D^2 = sum_i (x_i - mean(x))^2 (in 2-d the MadNIS toy's Gaussian "line" along the
  diagonal, unbounded along it). Its projection on every axis is flat, so a separable
  VEGAS grid cannot adapt to it: the correlated case that motivates flow-based samplers
  (i-flow, MadNIS). Default sigma = 0.02. Exact, see :func:`ridge_exact`:
  I = int dc P(c + sigma Z in [0, 1])^d, a one-dimensional integral of erf's
  (Hubbard-Stratonovich on the rank-one part of D^2) by adaptive quadrature, ~1e-13.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["SUITE", "Toy", "annulus", "camel", "make", "ridge", "ridge_exact", "ring", "suite"]


@dataclass(frozen=True)
class Toy:
    """A test integrand on [0, 1]^n_dim with its exact integral.

    Attributes:
        name: short name, e.g. ``camel-4d`` (what :func:`make` parses).
        n_dim: dimension.
        exact: the integral over [0, 1]^n_dim.
        fn: the integrand, (n, n_dim) -> (n,).
        definition: the formula, one line.
        method: how ``exact`` was computed.
        params: the parameters (alpha, sigma, ...).
    """

    name: str
    n_dim: int
    exact: float
    fn: Callable[[Tensor], Tensor] = field(repr=False)
    definition: str = ""
    method: str = ""
    params: dict[str, float] = field(default_factory=dict)

    def __call__(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.n_dim:
            raise ValueError(
                f"{self.name}: expected x of shape (n, {self.n_dim}), got {tuple(x.shape)}"
            )
        return self.fn(x)


def _f64(x: Tensor) -> Tensor:
    return x if x.dtype == torch.float64 else x.to(torch.float64)


# --- camel -----------------------------------------------------------------------------


def camel(n_dim: int, alpha: float = 0.1) -> Toy:
    """i-flow's camel (arXiv:2001.05486, eq. 12): Gaussians at 1/3 and 2/3, width alpha."""
    if n_dim < 1 or alpha <= 0:
        raise ValueError(f"camel: need n_dim >= 1 and alpha > 0, got {n_dim}, {alpha}")
    log_norm = math.log(2.0) + n_dim * math.log(alpha * math.sqrt(math.pi))

    def f(x: Tensor) -> Tensor:
        x = _f64(x)
        e1 = -((x - 1.0 / 3.0) ** 2).sum(1) / alpha**2
        e2 = -((x - 2.0 / 3.0) ** 2).sum(1) / alpha**2
        return torch.exp(e1 - log_norm) + torch.exp(e2 - log_norm)

    one_axis = 0.5 * (math.erf(1.0 / (3.0 * alpha)) + math.erf(2.0 / (3.0 * alpha)))
    return Toy(
        f"camel-{n_dim}d",
        n_dim,
        one_axis**n_dim,
        f,
        definition=(
            f"[exp(-|x-1/3|^2/a^2) + exp(-|x-2/3|^2/a^2)] / (2 (a sqrt(pi))^d), a = {alpha:g}"
        ),
        method="closed form: ([erf(1/(3a)) + erf(2/(3a))]/2)^d",
        params={"alpha": alpha},
    )


# --- ring and annulus ------------------------------------------------------------------


def _radial_gauss_moment(r0: float, w: float, big_r: float) -> float:
    """int_0^R rho exp(-(rho - r0)^2 / (2 w^2)) d rho in closed form (R may be inf)."""
    s = math.sqrt(2.0) * w
    tail = 0.0 if math.isinf(big_r) else math.exp(-((big_r - r0) ** 2) / (2 * w * w))
    gauss = w * w * (math.exp(-(r0 * r0) / (2 * w * w)) - tail)
    upper = 1.0 if math.isinf(big_r) else math.erf((big_r - r0) / s)
    return gauss + r0 * w * math.sqrt(math.pi / 2.0) * (upper + math.erf(r0 / s))


def ring(r0: float = 0.3, width: float = 0.01) -> Toy:
    """A thin Gaussian ring of radius r0 around (1/2, 1/2) in 2-d.

    f(x) = N0 exp(-(rho - r0)^2 / (2 w^2)), rho = |x - (1/2, 1/2)|, w = width, with
    N0 = 1 / (2 pi M(inf)) normalising it over the plane (as the MadNIS toy's P_ring),

        M(R) = int_0^R rho exp(-(rho - r0)^2 / (2 w^2)) d rho
             = w^2 [e^{-r0^2/(2w^2)} - e^{-(R-r0)^2/(2w^2)}]
               + r0 w sqrt(pi/2) [erf((R - r0)/(sqrt2 w)) + erf(r0/(sqrt2 w))].

    Exact integral over the square: 2 pi N0 M(1/2) (the disc rho < 1/2 lies inside the
    square) plus the four corners (area 1 - pi/4), where f < N0 exp(-z^2/2) with
    z = (1/2 - r0)/w >= 10: less than 1e-21 of the integral, below double precision,
    so 2 pi N0 M(1/2) is the exact value in float64 (1 - O(e^{-z^2/2})).
    """
    z = (0.5 - r0) / width
    if not (0.0 < r0 < 0.5 and width > 0 and z >= 10.0):
        raise ValueError(
            f"ring: need 0 < r0 < 1/2, width > 0 and (1/2 - r0)/width >= 10, got {r0}, {width}"
        )
    norm = 1.0 / (2.0 * math.pi * _radial_gauss_moment(r0, width, math.inf))

    def f(x: Tensor) -> Tensor:
        x = _f64(x)
        rho = torch.sqrt(((x - 0.5) ** 2).sum(1))
        return norm * torch.exp(-((rho - r0) ** 2) / (2.0 * width * width))

    exact = 2.0 * math.pi * norm * _radial_gauss_moment(r0, width, 0.5)
    return Toy(
        "ring",
        2,
        exact,
        f,
        definition=(
            f"N0 exp(-(rho-r0)^2/(2w^2)), rho = |x - (1/2,1/2)|, r0 = {r0:g}, w = {width:g}, "
            "N0: normalised over the plane"
        ),
        method="closed form (erf) on the disc rho < 1/2; corners < 1e-21, neglected",
        params={"r0": r0, "width": width},
    )


def annulus(r_in: float = 0.2, r_out: float = 0.45) -> Toy:
    """i-flow's ring: the indicator of r_in <= |x - (1/2, 1/2)| <= r_out, over its area."""
    if not 0.0 <= r_in < r_out <= 0.5:
        raise ValueError(f"annulus: need 0 <= r_in < r_out <= 1/2, got {r_in}, {r_out}")
    area = math.pi * (r_out**2 - r_in**2)

    def f(x: Tensor) -> Tensor:
        x = _f64(x)
        rho2 = ((x - 0.5) ** 2).sum(1)
        inside = (rho2 >= r_in**2) & (rho2 <= r_out**2)
        return inside.to(torch.float64) / area

    return Toy(
        "annulus",
        2,
        1.0,
        f,
        definition=f"1[{r_in:g} <= |x - (1/2,1/2)| <= {r_out:g}] / (pi (r_out^2 - r_in^2))",
        method="exact: the annulus lies inside the square",
        params={"r_in": r_in, "r_out": r_out},
    )


# --- diagonal ridge --------------------------------------------------------------------


def ridge_exact(n_dim: int, sigma: float) -> float:
    """The integral of :func:`ridge` over [0, 1]^n_dim.

    Write D^2 = |x|^2 - (u.x)^2 with u = (1, ..., 1)/sqrt(d), and linearise the rank-one
    part with exp(a^2/2) = int dz phi(z) e^{a z} (phi the standard normal density):

        exp(-D^2/(2 s^2)) = int dz phi(z) e^{z^2/2} prod_i exp(-(x_i - c)^2 / (2 s^2)),

    c = s z / sqrt(d). The cube integral factorises per axis, and with dz = sqrt(d)/s dc,

        int_cube exp(-D^2/(2 s^2)) dx = sqrt(d) (2 pi s^2)^((d-1)/2) int dc H(c)^d,
        H(c) = P(c + s Z in [0, 1]) = [erf((1 - c)/(sqrt2 s)) + erf(c/(sqrt2 s))] / 2.

    With the ridge's normalisation I = int_R H(c)^d dc = 2 int_{-inf}^{1/2} H^d dc
    (H(c) = H(1 - c)); for d = 1, I = 1. H^d is smooth and below 1e-300 for
    c < -40 s, so the integral over [-40 s, 1/2] by ``scipy.integrate.quad`` (breakpoints
    at 0 and a few widths) is accurate to ~1e-13 relative.
    """
    from scipy import integrate, special

    s2 = math.sqrt(2.0) * sigma

    def h_pow(c: float) -> float:
        return (0.5 * (special.erf((1.0 - c) / s2) + special.erf(c / s2))) ** n_dim

    lo = -40.0 * sigma
    points = [p for p in (-3 * sigma, 0.0, 3 * sigma, 10 * sigma) if lo < p < 0.5]
    half, _ = integrate.quad(h_pow, lo, 0.5, points=points, epsabs=1e-15, epsrel=1e-13, limit=500)
    return 2.0 * half


def ridge(n_dim: int, sigma: float = 0.02) -> Toy:
    """A narrow Gaussian of width sigma in the distance from the main diagonal of [0, 1]^d.

    f(x) = exp(-D^2/(2 sigma^2)) / (sqrt(d) (2 pi sigma^2)^((d-1)/2)),
    D^2 = sum_i (x_i - mean(x))^2: the mass of an infinitely long ridge per unit length
    along the diagonal is 1 / sqrt(d), and the diagonal is sqrt(d) long, so I -> 1 for
    sigma -> 0; the ends, where the cube's cross-section is smaller than the ridge, lose
    O(sigma). Exact integral: :func:`ridge_exact`.
    """
    if n_dim < 2 or not 0 < sigma <= 1:
        raise ValueError(f"ridge: need n_dim >= 2 and 0 < sigma <= 1, got {n_dim}, {sigma}")
    log_norm = 0.5 * math.log(n_dim) + 0.5 * (n_dim - 1) * math.log(2.0 * math.pi * sigma**2)

    def f(x: Tensor) -> Tensor:
        x = _f64(x)
        d2 = ((x - x.mean(1, keepdim=True)) ** 2).sum(1)
        return torch.exp(-d2 / (2.0 * sigma**2) - log_norm)

    return Toy(
        f"ridge-{n_dim}d",
        n_dim,
        ridge_exact(n_dim, sigma),
        f,
        definition=(
            f"exp(-D^2/(2 s^2)) / (sqrt(d) (2 pi s^2)^((d-1)/2)), "
            f"D^2 = sum_i (x_i - mean x)^2, s = {sigma:g}"
        ),
        method="1-d quadrature: int dc ([erf((1-c)/(sqrt2 s)) + erf(c/(sqrt2 s))]/2)^d",
        params={"sigma": sigma},
    )


# --- by name ---------------------------------------------------------------------------

#: the benchmark suite of ``benchmarks/integrators.py``, in order
SUITE = ("camel-2d", "camel-4d", "camel-8d", "camel-16d", "ring", "ridge-2d", "ridge-4d")


def make(name: str) -> Toy:
    """A toy by name: ``camel-<d>d``, ``ridge-<d>d``, ``ring``, ``annulus`` (defaults)."""
    if name == "ring":
        return ring()
    if name == "annulus":
        return annulus()
    m = re.fullmatch(r"(camel|ridge)-(\d+)d", name)
    if m is None:
        raise ValueError(f"unknown toy {name!r}; expected camel-<d>d, ridge-<d>d, ring, annulus")
    return (camel if m.group(1) == "camel" else ridge)(int(m.group(2)))


def suite() -> dict[str, Toy]:
    """The benchmark suite (:data:`SUITE`), name -> Toy."""
    return {name: make(name) for name in SUITE}
