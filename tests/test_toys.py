"""The toy integrands of evgen.integrators.toys against independent evaluations.

Each exact integral is checked in a way that does not use its own formula: composite
Gauss-Legendre quadrature of the callable itself in 2-d, one-dimensional scipy quadrature
of the per-axis factors, a closed form for the 2-d ridge, and exact sampling (draw from a
density proportional to the integrand on a larger domain, count what lands in the cube)
in higher dimensions. Monte Carlo checks use fixed seeds and a 4 sigma tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from evgen.integrators import toys

F64 = torch.float64


def gauss_legendre_2d(f, panels: int, order: int = 16) -> float:
    """Composite Gauss-Legendre product rule of f over [0, 1]^2 (panels per axis)."""
    t, w = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(0.0, 1.0, panels + 1)
    h = np.diff(edges)[:, None]
    nodes = (edges[:-1, None] + 0.5 * h * (t + 1.0)).ravel()
    weights = (0.5 * h * w).ravel()
    x = torch.as_tensor(nodes, dtype=F64)
    wt = torch.as_tensor(weights, dtype=F64)
    total = 0.0
    for i in range(0, x.numel(), 256):  # rows in chunks
        xi = x[i : i + 256]
        pts = torch.stack(torch.meshgrid(xi, x, indexing="ij"), -1).reshape(-1, 2)
        vals = f(pts).reshape(xi.numel(), x.numel())
        total += float((wt[i : i + 256, None] * vals * wt[None, :]).sum())
    return total


def within(estimate: float, error: float, exact: float, n_sigma: float = 4.0) -> bool:
    return abs(estimate - exact) <= n_sigma * error


# --- interface -------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*toys.SUITE, "annulus", "ridge-3d", "camel-1d"])
def test_shapes_dtype_and_positivity(name: str) -> None:
    toy = toys.make(name)
    assert toy.name == name
    x = torch.rand(1000, toy.n_dim, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    y = toy(x)
    assert y.shape == (1000,) and y.dtype == F64
    assert bool(torch.isfinite(y).all()) and bool((y >= 0).all())
    assert 0.9 < toy.exact <= 1.0 + 1e-12
    with pytest.raises(ValueError):
        toy(torch.rand(10, toy.n_dim + 1, dtype=F64))


def test_make_rejects_unknown_names() -> None:
    for bad in ("camel", "camel-0d", "gauss-2d", "ridge-1d"):
        with pytest.raises(ValueError):
            toys.make(bad)
    with pytest.raises(ValueError):
        toys.ring(r0=0.45, width=0.01)  # the ring would reach the corners


# --- camel -----------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.1, 0.2])
def test_camel_exact_is_product_of_1d_quadratures(alpha: float) -> None:
    s = alpha / math.sqrt(2.0)

    def axis(mu: float) -> float:
        val, _ = integrate.quad(
            lambda t: stats.norm.pdf(t, mu, s), 0.0, 1.0, epsabs=0, epsrel=1e-13
        )
        return val

    for d in (1, 2, 4, 8, 16):
        expected = 0.5 * (axis(1 / 3) ** d + axis(2 / 3) ** d)
        assert toys.camel(d, alpha).exact == pytest.approx(expected, rel=1e-12, abs=0)


def test_camel_2d_callable_by_quadrature() -> None:
    toy = toys.camel(2)
    assert gauss_legendre_2d(toy, panels=40) == pytest.approx(toy.exact, rel=1e-11)


@pytest.mark.parametrize("d", [4, 8, 16])
def test_camel_by_exact_sampling(d: int) -> None:
    """Draw from the untruncated mixture; sum f / q over the points inside the cube."""
    toy = toys.camel(d)
    s = 0.1 / math.sqrt(2.0)
    rng = np.random.default_rng(d)
    n = 200_000
    centre = np.where(rng.random(n) < 0.5, 1 / 3, 2 / 3)[:, None]
    x = centre + s * rng.standard_normal((n, d))
    q = 0.5 * (
        stats.multivariate_normal(np.full(d, 1 / 3), s * s).pdf(x)
        + stats.multivariate_normal(np.full(d, 2 / 3), s * s).pdf(x)
    )
    inside = ((x >= 0) & (x <= 1)).all(1)
    ratio = np.where(inside, toy(torch.from_numpy(x)).numpy() / q, 0.0)
    assert ratio[inside] == pytest.approx(1.0, rel=1e-9)  # f is the mixture density
    # a Bernoulli mean: its error from the exact p (few points fall outside)
    est, err = ratio.mean(), math.sqrt(toy.exact * (1 - toy.exact) / n)
    assert within(est, err, toy.exact)


# --- ring and annulus ------------------------------------------------------------------


def test_ring_callable_by_quadrature() -> None:
    toy = toys.ring()
    assert gauss_legendre_2d(toy, panels=80) == pytest.approx(toy.exact, rel=1e-9)


def test_ring_by_polar_quadrature_over_the_whole_square() -> None:
    """int dtheta int_0^rho_max(theta) rho g(rho): the corners included, no closed form."""
    r0, w = 0.2, 0.02  # a wider ring closer to the centre: another parameter point
    toy = toys.ring(r0, w)
    norm = float(toy(torch.tensor([[0.5 + r0, 0.5]], dtype=F64)))  # f on the ring = N0

    def radial(theta: float) -> float:
        rho_max = 0.5 / max(abs(math.cos(theta)), abs(math.sin(theta)))
        val, _ = integrate.quad(
            lambda r: r * math.exp(-((r - r0) ** 2) / (2 * w * w)),
            0.0,
            rho_max,
            points=[r0 - 5 * w, r0, r0 + 5 * w],
            epsabs=0,
            epsrel=1e-12,
            limit=200,
        )
        return val

    # radial(theta) has period pi/2 and is symmetric about pi/4
    quarter, _ = integrate.quad(radial, 0.0, math.pi / 4, epsabs=0, epsrel=1e-12)
    assert 8 * norm * quarter == pytest.approx(toy.exact, rel=1e-10)


def test_ring_by_exact_sampling() -> None:
    r0, w = 0.3, 0.01
    toy = toys.ring(r0, w)
    rng = np.random.default_rng(7)
    n = 400_000
    rho = r0 + w * rng.standard_normal(n)
    theta = 2 * math.pi * rng.random(n)
    x = 0.5 + np.stack([rho * np.cos(theta), rho * np.sin(theta)], 1)
    q = stats.norm.pdf(rho, r0, w) / (2 * math.pi * rho)  # density of x (rho > 0 a.s. here)
    inside = ((x >= 0) & (x <= 1)).all(1)
    ratio = np.where(inside, toy(torch.from_numpy(x)).numpy() / q, 0.0)
    est, err = ratio.mean(), ratio.std() / math.sqrt(n)
    assert within(est, err, toy.exact)


def test_annulus_by_hit_counting() -> None:
    toy = toys.annulus()
    n = 2_000_000
    x = torch.rand(n, 2, dtype=F64, generator=torch.Generator().manual_seed(3))
    w = toy(x)
    est, err = float(w.mean()), float(w.std()) / math.sqrt(n)
    assert toy.exact == 1.0 and within(est, err, 1.0)


# --- ridge -----------------------------------------------------------------------------


@pytest.mark.parametrize("sigma", [0.005, 0.02, 0.1, 0.5])
def test_ridge_2d_closed_form(sigma: float) -> None:
    """d = 2: D^2 = (x1 - x2)^2 / 2 and u = x1 - x2 has the triangular density 1 - |u|."""
    s = math.sqrt(2.0) * sigma  # standard deviation of u under the ridge
    closed = math.erf(1 / (math.sqrt(2) * s)) - 2 * s / math.sqrt(2 * math.pi) * (
        1 - math.exp(-1 / (2 * s * s))
    )
    assert toys.ridge_exact(2, sigma) == pytest.approx(closed, rel=1e-12)
    assert toys.ridge_exact(1, sigma) == pytest.approx(1.0, rel=1e-12)


def test_ridge_2d_callable_by_quadrature() -> None:
    toy = toys.ridge(2)
    assert gauss_legendre_2d(toy, panels=100) == pytest.approx(toy.exact, rel=1e-9)


@pytest.mark.parametrize("d", [3, 4, 6])
def test_ridge_by_exact_sampling(d: int) -> None:
    """x = c (1, ..., 1) + y, c ~ U(0, 1), y ~ N(0, sigma^2) on the plane orthogonal to the
    diagonal: its density is q = N_perp(y) / sqrt(d), and f / q = 1, so the integral is
    the fraction of points inside the cube (every such point has c = mean(x) in [0, 1])."""
    sigma = 0.02
    toy = toys.ridge(d, sigma)
    rng = np.random.default_rng(10 + d)
    n = 300_000
    z = rng.standard_normal((n, d))
    y = sigma * (z - z.mean(1, keepdims=True))
    x = rng.random((n, 1)) + y
    y2 = (y * y).sum(1)
    q = np.exp(-y2 / (2 * sigma**2)) / (2 * math.pi * sigma**2) ** ((d - 1) / 2) / math.sqrt(d)
    inside = ((x >= 0) & (x <= 1)).all(1)
    ratio = np.where(inside, toy(torch.from_numpy(x)).numpy() / q, 0.0)
    assert ratio[inside] == pytest.approx(1.0, rel=1e-9)
    est, err = ratio.mean(), ratio.std() / math.sqrt(n)
    assert within(est, err, toy.exact)
