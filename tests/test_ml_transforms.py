"""Elementwise bijections of evgen.ml.transforms: the spline on [0, 1] and the logit map.

Each check computes a quantity two ways: the closed-form inverse against the forward
map, the analytic log-derivative against autograd's derivative of the map itself, and
the spline against zuko's independent implementation where both define the same map.
Deterministic float64 quantities are compared to ~1e-12 (rounding).
"""

from __future__ import annotations

import math

import pytest
import torch

from evgen.ml.transforms import (
    logit_transform,
    rational_quadratic_spline,
    sigmoid_transform,
    spline_knots,
)

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64


K = 8


def _random_spline(n: int, scale: float, seed: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    p = scale * torch.randn(n, 3 * K + 1, generator=g, dtype=F64)
    return p.split([K, K, K + 1], dim=-1)


@pytest.mark.parametrize("scale", [0.5, 3.0])
def test_spline_inverse_and_derivative(scale: float) -> None:
    g = torch.Generator().manual_seed(1)
    n = 2000
    w, h, d = _random_spline(n, scale, seed=2)
    x = torch.rand(n, generator=g, dtype=F64)
    x[:4] = torch.tensor([0.0, 1.0, 1e-300, 1 - 1e-16], dtype=F64)
    x.requires_grad_(True)
    y, ladj = rational_quadratic_spline(x, w, h, d)
    assert bool(((y >= 0) & (y <= 1)).all())
    assert y[0] == 0.0 and y[1] == 1.0  # the end knots are exact
    # d y / d x by autograd through the forward formula: each y_i depends on x_i only.
    (dydx,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(ladj, torch.log(dydx), rtol=1e-12, atol=1e-12)
    x2, ladj_inv = rational_quadratic_spline(y.detach(), w, h, d, inverse=True)
    # The inverse amplifies the rounding of y by dx/dy (up to 1/MIN_DERIVATIVE); in
    # y-space the round trip is exact to rounding.
    error = (x2 - x.detach()).abs()
    assert float(error.max()) < 1e-9
    assert float((error * ladj.detach().exp()).max()) < 1e-14
    # log|dx/dy| is minus the forward log-derivative, up to the same amplified rounding
    # (in steep bins d log(dy/dx)/dx * dx/dy reaches ~1e7: 1e-9 is the conditioning).
    torch.testing.assert_close(ladj_inv, -ladj.detach(), rtol=0, atol=1e-8)


def test_spline_zero_parameters_are_identity() -> None:
    x = torch.linspace(0, 1, 101, dtype=F64)
    zeros = torch.zeros(101, K, dtype=F64)
    y, ladj = rational_quadratic_spline(x, zeros, zeros, torch.zeros(101, K + 1, dtype=F64))
    torch.testing.assert_close(y, x, rtol=0, atol=1e-15)
    torch.testing.assert_close(ladj, torch.zeros_like(x), rtol=0, atol=1e-14)


def test_spline_knots_are_monotone_and_pinned() -> None:
    w, h, d = _random_spline(50, 5.0, seed=3)
    xk, yk, dk = spline_knots(w, h, d)
    for knots in (xk, yk):
        assert bool((knots[:, 0] == 0).all()) and bool((knots[:, -1] == 1).all())
        assert float(knots.diff(dim=-1).min()) >= 1e-3 * (1 - 1e-9)
    assert float(dk.min()) >= 1e-3


def test_spline_boundary_slopes_are_learned() -> None:
    """Unlike zuko's tails-pinned spline, the end derivatives follow the parameters."""
    zeros = torch.zeros(2, K, dtype=F64)
    d = torch.zeros(2, K + 1, dtype=F64)
    d[:, 0], d[:, -1] = -5.0, 3.0
    _, ladj = rational_quadratic_spline(torch.tensor([0.0, 1.0], dtype=F64), zeros, zeros, d)
    _, _, dk = spline_knots(zeros, zeros, d)
    torch.testing.assert_close(ladj, torch.log(torch.stack([dk[0, 0], dk[1, -1]])))
    assert float(ladj[0]) < -4 and float(ladj[1]) > 1


def test_spline_matches_zuko_with_unit_end_slopes() -> None:
    """Same knots, derivatives and end slopes 1: zuko's RQS on [-B, B] is the same map."""
    zuko = pytest.importorskip("zuko")
    g = torch.Generator().manual_seed(4)
    n, bound = 500, 0.5
    w, h, d = _random_spline(n, 1.0, seed=5)
    d = d.clone()
    d[:, 0] = d[:, -1] = 0.0  # raw 0 -> slope exactly 1 at both ends here
    xk, yk, dk = spline_knots(w, h, d)
    assert torch.allclose(dk[:, 0], torch.ones(n, dtype=F64))
    t = zuko.transforms.MonotonicRQSTransform(
        torch.zeros(n, K, dtype=F64),
        torch.zeros(n, K, dtype=F64),
        torch.zeros(n, K - 1, dtype=F64),
        bound=bound,
    )
    # Overwrite zuko's knots with ours, shifted from [0, 1] to [-B, B].
    t.horizontal = 2 * bound * xk - bound
    t.vertical = 2 * bound * yk - bound
    t.derivatives = dk
    x = torch.rand(n, generator=g, dtype=F64)
    y, ladj = rational_quadratic_spline(x, w, h, d)
    y_zuko, ladj_zuko = t.call_and_ladj(2 * bound * x - bound)
    torch.testing.assert_close((y_zuko + bound) / (2 * bound), y, rtol=0, atol=1e-13)
    torch.testing.assert_close(ladj_zuko, ladj, rtol=0, atol=1e-11)


def test_spline_float32_round_trip() -> None:
    w, h, d = (p.float() for p in _random_spline(1000, 1.0, seed=6))
    x = torch.rand(1000, generator=torch.Generator().manual_seed(7))
    y, ladj = rational_quadratic_spline(x, w, h, d)
    x2, ladj_inv = rational_quadratic_spline(y, w, h, d, inverse=True)
    assert y.dtype == torch.float32
    # Rounding of y (~6e-8) is amplified by dx/dy (up to 1/MIN_DERIVATIVE) in x: compare
    # the inverse's error mapped back to y-space, |x2 - x| dy/dx.
    assert float(((x2 - x).abs() * ladj.exp()).max()) < 1e-6
    assert float((ladj + ladj_inv).abs().max()) < 1e-3


def test_spline_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="K \\+ 1"):
        rational_quadratic_spline(
            torch.rand(3), torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, 4)
        )


def test_sigmoid_logit_round_trip_and_jacobian() -> None:
    y = torch.linspace(-30, 30, 601, dtype=F64, requires_grad=True)
    x, ladj = sigmoid_transform(y)
    (dxdy,) = torch.autograd.grad(x.sum(), y)
    # autograd's sigma (1 - sigma) loses digits where sigma rounds near 1: compare there
    # with the asymptote log sigma'(y) = -|y| - 2 exp(-|y|) + O(exp(-2|y|)) instead.
    inner = y.detach().abs() <= 5
    torch.testing.assert_close(ladj[inner], torch.log(dxdy[inner]), rtol=1e-12, atol=1e-12)
    far = y.detach().abs()[~inner]
    assert float((ladj.detach()[~inner] + far + 2 * torch.exp(-far)).abs().max()) < 1e-4
    # Round trip where 1 - x keeps enough digits (|y| <= 15: 1 - x >= 3e-7).
    keep = y.detach().abs() <= 15
    y2, ladj_inv = logit_transform(x.detach()[keep])
    torch.testing.assert_close(y2, y.detach()[keep], rtol=0, atol=1e-8)
    torch.testing.assert_close(ladj_inv, -ladj.detach()[keep], rtol=0, atol=1e-8)


def test_logit_boundary_clamp_is_finite_and_documented() -> None:
    y, ladj = logit_transform(torch.tensor([0.0, 1.0, 0.5], dtype=F64))
    assert bool(torch.isfinite(y).all()) and bool(torch.isfinite(ladj).all())
    assert math.isclose(float(y[0]), math.log(torch.finfo(F64).tiny), rel_tol=1e-12)
    assert 36 < float(y[1]) < 38 and float(y[2]) == 0.0
