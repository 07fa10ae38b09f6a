"""ODE solvers of evgen.ml.ode against ODEs with closed-form solutions."""

from __future__ import annotations

import math

import pytest
import torch

from evgen.ml import ODEError, ODEOptions, odeint

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64


def _oscillator(t: float, y: torch.Tensor) -> torch.Tensor:
    """y = (q, p) with dq/dt = p, dp/dt = -omega^2 q; omega differs per row."""
    omega = torch.linspace(0.5, 3.0, y.shape[0], dtype=y.dtype)
    return torch.stack([y[:, 1], -(omega**2) * y[:, 0]], dim=1)


def _oscillator_exact(y0: torch.Tensor, t: float) -> torch.Tensor:
    omega = torch.linspace(0.5, 3.0, y0.shape[0], dtype=y0.dtype)
    q0, p0 = y0[:, 0], y0[:, 1]
    c, s = torch.cos(omega * t), torch.sin(omega * t)
    return torch.stack([q0 * c + p0 / omega * s, -q0 * omega * s + p0 * c], dim=1)


@pytest.mark.parametrize("rtol", [1e-5, 1e-7, 1e-9])
def test_dopri5_meets_its_tolerance(rtol: float) -> None:
    y0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=F64)
    options = ODEOptions(rtol=rtol, atol=rtol * 1e-2)
    sol = odeint(_oscillator, y0, 0.0, 2.0, options)
    error = float((sol.y - _oscillator_exact(y0, 2.0)).abs().max())
    # Global error within a small multiple of the per-step tolerance times |y| ~ 3.
    assert error < 30 * rtol, (error, sol.n_steps)
    assert sol.n_evals == 2 + 6 * (sol.n_steps + sol.n_rejected)


def test_dopri5_backwards_and_round_trip() -> None:
    y0 = torch.randn(16, 2, generator=torch.Generator().manual_seed(2), dtype=F64)
    forward = odeint(_oscillator, y0, 0.0, 1.5)
    backward = odeint(_oscillator, forward.y, 1.5, 0.0)
    torch.testing.assert_close(backward.y, y0, rtol=0, atol=1e-7)
    # Backwards from t = 0 to t = -1 is the exact solution at negative time.
    sol = odeint(_oscillator, y0, 0.0, -1.0)
    torch.testing.assert_close(sol.y, _oscillator_exact(y0, -1.0), rtol=0, atol=1e-7)


def test_rk4_is_fourth_order() -> None:
    y0 = torch.tensor([[1.0, 0.0]], dtype=F64)
    errors = []
    for steps in (10, 20, 40):
        sol = odeint(_oscillator, y0, 0.0, 2.0, ODEOptions(method="rk4", steps=steps))
        errors.append(float((sol.y - _oscillator_exact(y0, 2.0)).abs().max()))
        assert sol.n_evals == 4 * steps
    for coarse, fine in zip(errors, errors[1:], strict=False):
        assert 12 < coarse / fine < 20  # 2^4 = 16 for a fourth-order method


def test_time_dependent_field() -> None:
    """dy/dt = 2 t y: y(t) = y0 exp(t^2), exercises the stage times c_i."""
    y0 = torch.ones(3, 1, dtype=F64)
    sol = odeint(lambda t, y: 2 * t * y, y0, 0.0, 1.0)
    torch.testing.assert_close(sol.y, y0 * math.e, rtol=1e-7, atol=0)


def test_failures_raise_ode_error() -> None:
    y0 = torch.ones(2, 1, dtype=F64)
    with pytest.raises(ODEError, match="max_steps"):
        odeint(lambda t, y: -50 * y, y0, 0.0, 10.0, ODEOptions(max_steps=5))
    with pytest.raises(ODEError, match="not finite at t=0"):
        odeint(lambda t, y: y * float("nan"), y0, 0.0, 1.0)
    # A field that blows up after t = 0.5: the step size collapses.
    with pytest.raises(ODEError, match="underflow"):
        odeint(lambda t, y: y * (float("inf") if t > 0.5 else 1.0), y0, 0.0, 1.0)
    with pytest.raises(ValueError, match="method"):
        ODEOptions(method="euler")  # type: ignore[arg-type]


def test_trivial_intervals() -> None:
    y0 = torch.ones(2, 3, dtype=F64)
    sol = odeint(lambda t, y: y, y0, 0.5, 0.5)
    assert torch.equal(sol.y, y0) and sol.n_evals == 0
