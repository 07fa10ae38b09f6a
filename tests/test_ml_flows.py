"""UnitHypercubeFlow: an exact bijection of [0, 1]^d with an exact density.

The structural checks run on flows whose parameters were RANDOMISED (every parameter
shifted by N(0, 0.15^2) noise), so they test a non-trivial map (log-Jacobians of order
+-3), not the identity the flow starts as. Deterministic quantities are compared with
tolerances a float64 computation must meet; Monte Carlo ones within 3 standard errors.
"""

from __future__ import annotations

import math

import pytest
import torch
from densities import truncated_gaussian

from evgen.ml import Trainer, TrainingConfig, UnitHypercubeFlow, coupling_masks

pytestmark = pytest.mark.usefixtures("single_thread")

F64 = torch.float64


CASES = [(1, 0), (2, 0), (5, 0), (1, 3), (2, 3), (5, 2)]  # (dim, context_dim)


def _randomised_flow(dim: int, context_dim: int, seed: int = 0) -> UnitHypercubeFlow:
    torch.manual_seed(seed)
    flow = UnitHypercubeFlow(dim, context_dim=context_dim, bins=8, hidden=16)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.15 * torch.randn_like(p))
    return flow


def _context(n: int, context_dim: int, seed: int = 1) -> torch.Tensor | None:
    if context_dim == 0:
        return None
    return torch.randn(n, context_dim, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_masks_transform_every_dimension_and_separate_every_pair() -> None:
    for dim in (2, 3, 5, 8, 16):
        n_layers = 2 * math.ceil(math.log2(dim))
        masks = torch.stack(coupling_masks(dim, n_layers))
        assert bool(masks.any(0).all())  # every dimension transformed
        assert bool((masks.sum(1) > 0).all()) and bool((masks.sum(1) < dim).all())
        for i in range(dim):
            for j in range(i + 1, dim):
                assert bool((masks[:, i] != masks[:, j]).any()), (dim, i, j)
    with pytest.raises(ValueError, match="n_layers"):
        coupling_masks(3, 1)


@pytest.mark.parametrize(("dim", "context_dim"), CASES)
def test_untrained_flow_is_uniform(dim: int, context_dim: int) -> None:
    flow = UnitHypercubeFlow(dim, context_dim=context_dim)
    z = torch.rand(100, dim, dtype=F64)
    x, ladj = flow.forward_map(z, _context(100, context_dim))
    torch.testing.assert_close(x, z, rtol=0, atol=1e-14)
    torch.testing.assert_close(ladj, torch.zeros(100, dtype=F64), rtol=0, atol=1e-13)


@pytest.mark.parametrize(("dim", "context_dim"), CASES)
def test_round_trip_and_range(dim: int, context_dim: int) -> None:
    flow = _randomised_flow(dim, context_dim)
    n = 2000
    z = torch.rand(n, dim, generator=torch.Generator().manual_seed(2), dtype=F64)
    z[0], z[1] = 0.0, 1.0  # corners of the cube
    z[2, 0] = 1e-300
    context = _context(n, context_dim)
    with torch.no_grad():
        x, ladj = flow.forward_map(z, context)
        z2, ladj_inv = flow.inverse_map(x, context)
        log_q = flow.log_prob(x, context)
    assert bool(((x >= 0) & (x <= 1)).all())
    assert bool(torch.isfinite(ladj).all())
    assert float(ladj.abs().max()) > 0.1  # not the identity
    assert bool(((z2 >= 0) & (z2 <= 1)).all())
    # Required 1e-5; in float64 the round trip is exact to rounding (measured 1e-16..1.4e-15).
    assert float((z2 - z).abs().max()) < 1e-12
    assert float((ladj + ladj_inv).abs().max()) < 1e-10
    torch.testing.assert_close(log_q, -ladj, rtol=0, atol=1e-10)


@pytest.mark.parametrize(("dim", "context_dim"), CASES)
def test_log_jacobian_equals_autograd_determinant(dim: int, context_dim: int) -> None:
    flow = _randomised_flow(dim, context_dim, seed=3)
    n = 6
    z = torch.rand(n, dim, generator=torch.Generator().manual_seed(4), dtype=F64)
    context = _context(n, context_dim)
    _, ladj = flow.forward_map(z, context)
    # Rows are independent: the Jacobian of the batch sum holds every row's Jacobian.
    jac = torch.autograd.functional.jacobian(
        lambda zz: flow.forward_map(zz, context)[0].sum(0), z
    )  # (dim, n, dim)
    logdet = torch.stack([torch.linalg.slogdet(jac[:, i, :])[1] for i in range(n)])
    torch.testing.assert_close(ladj, logdet, rtol=0, atol=1e-6)
    # And the same for the inverse map.
    x = flow.forward_map(z, context)[0].detach()
    _, ladj_inv = flow.inverse_map(x, context)
    jac_inv = torch.autograd.functional.jacobian(
        lambda xx: flow.inverse_map(xx, context)[0].sum(0), x
    )
    logdet_inv = torch.stack([torch.linalg.slogdet(jac_inv[:, i, :])[1] for i in range(n)])
    torch.testing.assert_close(ladj_inv, logdet_inv, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("dim", "context_dim"), CASES)
def test_density_integrates_to_one(dim: int, context_dim: int) -> None:
    flow = _randomised_flow(dim, context_dim, seed=5)
    n = 20_000
    x = torch.rand(n, dim, generator=torch.Generator().manual_seed(6), dtype=F64)
    context = None if context_dim == 0 else _context(1, context_dim)[0]  # one shared context
    with torch.no_grad():
        q = flow.log_prob(x, context).exp()
    mean, error = float(q.mean()), float(q.std()) / math.sqrt(n)
    assert float(q.std()) > 0.05  # a non-uniform density
    assert abs(mean - 1) < 3 * error, (mean, error)


def test_context_changes_the_map() -> None:
    flow = _randomised_flow(2, 3, seed=7)
    z = torch.rand(50, 2, dtype=F64)
    x_a, _ = flow.forward_map(z, torch.tensor([1.0, 0.0, 0.0], dtype=F64))
    x_b, _ = flow.forward_map(z, torch.tensor([0.0, 1.0, 0.0], dtype=F64))
    assert float((x_a - x_b).detach().abs().max()) > 1e-3


def test_sample_density_matches_log_prob_and_generator_is_deterministic() -> None:
    flow = _randomised_flow(5, 2, seed=8)
    c = torch.tensor([0.3, -1.0], dtype=F64)
    x, log_q = flow.sample(500, c, generator=torch.Generator().manual_seed(9))
    x2, _ = flow.sample(500, c, generator=torch.Generator().manual_seed(9))
    assert torch.equal(x, x2)
    assert x.shape == (500, 5) and log_q.shape == (500,)
    torch.testing.assert_close(flow.log_prob(x, c), log_q, rtol=0, atol=1e-9)


def test_float32_flow() -> None:
    torch.manual_seed(10)
    flow = UnitHypercubeFlow(3, dtype=torch.float32)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.15 * torch.randn_like(p))
    z = torch.rand(1000, 3, dtype=F64)  # converted to float32 at the flow's entry
    with torch.no_grad():
        x, ladj = flow.forward_map(z)
        z2, ladj_inv = flow.inverse_map(x)
    assert x.dtype == torch.float32
    assert float((z2 - z.float()).abs().max()) < 1e-5
    assert float((ladj + ladj_inv).abs().max()) < 1e-4


def test_bad_inputs_are_rejected() -> None:
    flow = UnitHypercubeFlow(2, context_dim=1)
    with pytest.raises(ValueError, match=r"shape \(n, 2\)"):
        flow.forward_map(torch.rand(4, 3))
    with pytest.raises(ValueError, match="context of length 1 required"):
        flow.log_prob(torch.rand(4, 2))
    with pytest.raises(ValueError, match="unconditional"):
        UnitHypercubeFlow(2).log_prob(torch.rand(4, 2), torch.rand(4, 1))


# --- training: neural importance sampling of a peaked density ----------------------

MU = torch.tensor([0.35, 0.6], dtype=F64)
SIGMA = torch.tensor([0.1, 0.1], dtype=F64)


def _truncated_gaussian() -> tuple:
    """A 2-d Gaussian bump truncated to the unit square: exact density and sampler."""
    return truncated_gaussian(MU, SIGMA)


def test_trained_flow_reduces_importance_weight_variance() -> None:
    """Max-likelihood training on samples of p; then sample q and weigh by p/q.

    The weight variance under uniform sampling is about 7.0 (1 / (4 pi sigma^2) - 1);
    after 150 steps it is about 0.03 (a factor ~200 at these seeds); we assert > 20.
    """
    log_p, draw = _truncated_gaussian()
    g = torch.Generator().manual_seed(11)
    torch.manual_seed(11)
    data = draw(20_000, g)
    flow = UnitHypercubeFlow(2, bins=10, hidden=32)
    trainer = Trainer(flow, TrainingConfig(steps=150, learning_rate=1e-2))

    def loss() -> torch.Tensor:
        batch = data[torch.randint(len(data), (256,), generator=g)]
        return -flow.log_prob(batch).mean()

    result = trainer.fit(loss)
    assert result.losses[-1] < result.losses[0] - 1.0

    n = 20_000
    with torch.no_grad():
        x, log_q = flow.sample(n, generator=g)
        w = torch.exp(log_p(x) - log_q)
        w_uniform = torch.exp(log_p(torch.rand(n, 2, generator=g, dtype=F64)))
    # Unbiased either way: the integral of the normalised p is 1.
    assert abs(float(w.mean()) - 1) < 3 * float(w.std()) / math.sqrt(n)
    factor = float(w_uniform.var() / w.var())
    assert factor > 20, factor
