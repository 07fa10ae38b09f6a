"""Benchmark metrics against hand-computed small cases and scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch

from unfolding.data import UnfoldedResult
from unfolding.errors import UnfoldingError
from unfolding.metrics import (
    chi2_ndf,
    coverage,
    histogram,
    mean_relative_deviation,
    pulls,
    triangular_discriminator,
    wasserstein,
    weighted_histogram,
)

F64 = torch.float64


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=F64)


def test_weighted_histogram_matches_numpy() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1000, generator=gen, dtype=F64)
    w = torch.rand(1000, generator=gen, dtype=F64) - 0.2
    edges = t([-2.0, -0.5, 0.0, 1.0, 2.5])
    want, _ = np.histogram(x.numpy(), edges.numpy(), weights=w.numpy())
    np.testing.assert_allclose(weighted_histogram(x, edges, w).numpy(), want, rtol=1e-12)
    # the last upper edge is inclusive, as in numpy
    assert weighted_histogram(t([2.5, 3.0]), edges, t([1.0, 1.0])).tolist() == [0, 0, 0, 1]


def test_histogram_covariance_from_replicas() -> None:
    """Three events, two bins, three replicas: covariance by hand."""
    truth = t([[0.2], [0.7], [0.8]])
    reps = t([[1.0, 2.0, 0.0], [2.0, 1.0, 1.0], [3.0, 0.0, 2.0]])  # bins: (1, 2), (2, 2), (3, 2)
    result = UnfoldedResult("ibu", truth, t([1.0, 1.0, 1.0]), reps, None, {})
    values, cov = histogram(result, 0, t([0.0, 0.5, 1.0]))
    assert values.tolist() == [1.0, 2.0]
    # bin 0 replicas 1, 2, 3: variance 1; bin 1 replicas 2, 2, 2: variance 0
    torch.testing.assert_close(cov, t([[1.0, 0.0], [0.0, 0.0]]))
    # without replicas: diag(sum w^2)
    plain = UnfoldedResult("ibu", truth, t([1.0, 2.0, 3.0]))
    _, cov = histogram(plain, 0, t([0.0, 0.5, 1.0]))
    torch.testing.assert_close(cov, torch.diag(t([1.0, 13.0])))


def test_histogram_with_replica_events() -> None:
    """Generative replicas are different events: each replica is binned on its own."""
    truth = t([[0.2], [0.7]])
    rep_truth = t([[[0.2], [0.7]], [[0.7], [0.7]], [[0.2], [0.2]]])
    result = UnfoldedResult(
        "generative", truth, t([1.0, 1.0]), torch.ones(3, 2, dtype=F64), rep_truth
    )
    _, cov = histogram(result, 0, t([0.0, 0.5, 1.0]))
    torch.testing.assert_close(cov, t([[1.0, -1.0], [-1.0, 1.0]]))  # (1, 0, 2) / (1, 2, 0)
    # replica events without replica weights: the nominal weights
    result = UnfoldedResult("generative", truth, t([1.0, 3.0]), None, rep_truth)
    _, cov = histogram(result, 0, t([0.0, 0.5, 1.0]))
    # bin 0: (1, 0, 4), bin 1 = 4 - bin 0: variance 13/3, fully anti-correlated
    torch.testing.assert_close(cov, t([[13 / 3, -13 / 3], [-13 / 3, 13 / 3]]))


def test_mean_relative_deviation_and_triangular_discriminator() -> None:
    assert mean_relative_deviation(t([110.0, 90.0, 5.0]), t([100.0, 100.0, 0.0])) == pytest.approx(
        0.1
    )
    # p = (0.5, 0.5), q = (0.25, 0.75): 1/2 [0.0625/0.75 + 0.0625/1.25] = 1/15
    assert triangular_discriminator(t([2.0, 2.0]), t([1.0, 3.0])) == pytest.approx(1 / 15)
    assert triangular_discriminator(t([1.0, 0.0]), t([0.0, 5.0])) == pytest.approx(1.0)
    assert triangular_discriminator(t([3.0, 1.0]), t([6.0, 2.0])) == 0.0


def test_wasserstein_against_scipy_and_a_shift() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2000, generator=gen, dtype=F64)
    y = torch.randn(3000, generator=gen, dtype=F64)
    wx = torch.rand(2000, generator=gen, dtype=F64)
    want = scipy.stats.wasserstein_distance(x.numpy(), y.numpy(), wx.numpy(), None)
    assert wasserstein(x, y, wx) == pytest.approx(want, rel=1e-12)
    assert wasserstein(x, x + 0.3) == pytest.approx(0.3, rel=1e-12)  # a pure shift
    with pytest.raises(UnfoldingError, match="negative"):
        wasserstein(x, y, -wx)


def test_chi2_regular_and_singular() -> None:
    cov = t([[4.0, 1.0], [1.0, 2.0]])
    d = t([1.0, -1.0])
    want = float(d @ torch.linalg.solve(cov, d))  # = 8/7
    c = chi2_ndf(d, torch.zeros(2, dtype=F64), cov)
    assert c.chi2 == pytest.approx(want) and c.ndf == 2 and not c.singular
    assert c.per_ndf == pytest.approx(want / 2)
    # singular: perfectly correlated bins; d along the allowed direction (1, 1)/sqrt2 with
    # variance 2 * 2 = 4: chi2 = |d|^2 / 4
    sing = t([[2.0, 2.0], [2.0, 2.0]])
    c = chi2_ndf(t([1.0, 1.0]), torch.zeros(2, dtype=F64), sing)
    assert c.singular and c.ndf == 1 and c.chi2 == pytest.approx(0.5)


def test_chi2_distribution_of_gaussian_toys() -> None:
    """chi^2 of 4,000 Gaussian toys with a known correlated covariance: mean ndf = 5
    within 3 sigma (sigma = sqrt(2 ndf / 4000))."""
    gen = torch.Generator().manual_seed(2)
    a = torch.randn(5, 5, generator=gen, dtype=F64)
    cov = a @ a.T + 0.5 * torch.eye(5, dtype=F64)
    chol = torch.linalg.cholesky(cov)
    toys = (chol @ torch.randn(5, 4000, generator=gen, dtype=F64)).T
    chi2 = torch.tensor([chi2_ndf(v, torch.zeros(5, dtype=F64), cov).chi2 for v in toys])
    assert abs(float(chi2.mean()) - 5) < 3 * (10 / 4000) ** 0.5


def test_pulls_and_coverage() -> None:
    p, rms = pulls(
        t([1.0, 2.0, 3.0]), t([0.0, 2.0, 1.0]), t([[1.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0]])
    )
    assert p.tolist() == [1.0, 0.0, 1.0] and rms == pytest.approx((2 / 3) ** 0.5)
    p, rms = pulls(t([1.0, 5.0]), t([0.0, 0.0]), t([4.0, 0.0]))  # zero variance: left out
    assert p[0] == 0.5 and torch.isnan(p[1]) and rms == 0.5
    values = t([[1.0, 2.0], [0.0, 3.5]])
    assert coverage(values, t([[0.5, 1.0], [1.0, 1.0]]), t([0.0, 2.5])) == 0.75  # 3 of 4
    # Gaussian toys with the right errors cover 68.27 % (4,000 x 10 values: +-0.7 % at 3 sigma)
    gen = torch.Generator().manual_seed(3)
    toys = torch.randn(4000, 10, generator=gen, dtype=F64)
    cov = coverage(toys, torch.ones_like(toys), torch.zeros(10, dtype=F64))
    assert cov == pytest.approx(0.6827, abs=3 * (0.68 * 0.32 / 40000) ** 0.5)
