"""Histograms with covariance from an :class:`~unfolding.data.UnfoldedResult`, and the
benchmark metrics that compare an unfolded distribution with the truth.

* :func:`histogram`: nominal weighted histogram of one observable and its covariance over
  the result's replicas.
* :func:`mean_relative_deviation`: mean over bins of |unfolded - truth| / truth.
* :func:`triangular_discriminator`: Delta = 1/2 sum_i (p_i - q_i)^2 / (p_i + q_i) of the
  unit-normalised histograms (benchmarks quote 1e3 Delta).
* :func:`wasserstein`: 1-d Wasserstein (earth mover's) distance between weighted samples
  (scipy.stats.wasserstein_distance), in the observable's units.
* :func:`chi2_ndf`: chi^2 of a difference with a covariance (pseudo-inverse when
  singular) and its number of degrees of freedom.
* :func:`pulls`: per-bin pulls and their rms.
* :func:`coverage`: fraction of toys whose quoted 68 % interval covers the truth.

All in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.stats
import torch
from torch import Tensor

from unfolding.data import UnfoldedResult
from unfolding.errors import UnfoldingError

__all__ = [
    "Chi2",
    "chi2_ndf",
    "coverage",
    "histogram",
    "mean_relative_deviation",
    "pulls",
    "triangular_discriminator",
    "wasserstein",
    "weighted_histogram",
]


def weighted_histogram(x: Tensor, edges: Tensor, weights: Tensor) -> Tensor:
    """Weighted counts of the 1-d values ``x`` in the bins of ``edges`` (B+1,).

    Args:
        x: (n,) values, or (..., n) with the leading axes of ``weights`` (replicas that
            are different events).
        edges: (B+1,) increasing bin edges, in the units of x. Lower edges inclusive,
            the last upper edge inclusive; values outside are dropped.
        weights: (..., n) weights; leading replica axes allowed.

    Returns:
        (..., B) float64 sums of weights.
    """
    edges = torch.as_tensor(edges, dtype=torch.float64, device=x.device)
    if edges.ndim != 1 or edges.numel() < 2 or not bool((edges[1:] > edges[:-1]).all()):
        raise UnfoldingError("histogram: edges must be 1-d, increasing, with >= 2 entries")
    n_bins = edges.numel() - 1
    x = x.to(torch.float64).contiguous()
    b = torch.bucketize(x, edges, right=True) - 1
    b = torch.where(x == edges[-1], torch.full_like(b, n_bins - 1), b)
    inside = (b >= 0) & (b < n_bins)
    w = weights.to(torch.float64)
    w = torch.where(inside, w, torch.zeros_like(w))
    shape = torch.broadcast_shapes(b.shape, w.shape)
    out = torch.zeros(*shape[:-1], n_bins, dtype=torch.float64, device=x.device)
    if b.ndim == 1:
        return out.index_add_(-1, b.clamp(0, n_bins - 1), w.expand(shape))
    return out.scatter_add_(-1, b.clamp(0, n_bins - 1).expand(shape), w.expand(shape))


def histogram(
    result: UnfoldedResult, observable_index: int, edges: Tensor
) -> tuple[Tensor, Tensor]:
    """Histogram of one truth observable of ``result`` with its covariance.

    Args:
        result: an unfolded result.
        observable_index: column of ``result.truth``.
        edges: (B+1,) bin edges (observable units).

    Returns:
        (values (B,), covariance (B, B)): the nominal histogram of ``result.weights``
        (data units), and the sample covariance of the replica histograms (each replica's
        own events when ``replica_truth`` is given, weighted by ``replica_weights`` or,
        if those are None, by ``weights``). Without replicas (or with one), the
        covariance is diag(sum of w^2) per bin: the weighted-count variance of the events
        alone, which ignores the uncertainty of the unfolding itself.
    """
    d = result.truth.shape[1]
    if not -d <= observable_index < d:
        raise UnfoldingError(
            f"histogram: observable_index {observable_index} out of range 0..{d - 1}"
        )
    values = weighted_histogram(result.truth[:, observable_index], edges, result.weights)
    rw = result.replica_weights
    if rw is None and result.replica_truth is not None:  # replica events, nominal weights
        rw = result.weights.expand(result.replica_truth.shape[0], -1)
    if rw is None or rw.shape[0] < 2:
        sumw2 = weighted_histogram(result.truth[:, observable_index], edges, result.weights**2)
        return values, torch.diag(sumw2)
    if result.replica_truth is not None:
        x = result.replica_truth[..., observable_index]  # (R, n): each replica its events
        reps = weighted_histogram(x, edges, rw)
    else:
        reps = weighted_histogram(result.truth[:, observable_index], edges, rw)
    return values, torch.cov(reps.T).reshape(values.numel(), values.numel())


def mean_relative_deviation(values: Tensor, truth: Tensor) -> float:
    """Mean over bins of |values - truth| / truth (bins with truth > 0; a fraction)."""
    values, truth = values.to(torch.float64), truth.to(torch.float64)
    ok = truth > 0
    if not bool(ok.any()):
        raise UnfoldingError("metrics: the truth histogram is empty")
    return float(((values - truth).abs() / truth)[ok].mean())


def triangular_discriminator(p: Tensor, q: Tensor) -> float:
    """Delta = 1/2 sum_i (p_i - q_i)^2 / (p_i + q_i) of the histograms normalised to unit
    sum (bins with p_i + q_i = 0 skipped). 0 for equal shapes, 1 for disjoint ones."""
    p = p.to(torch.float64) / p.sum()
    q = q.to(torch.float64) / q.sum()
    s = p + q
    ok = s != 0
    return float(0.5 * ((p - q) ** 2 / torch.where(ok, s, 1.0))[ok].sum())


def wasserstein(x: Tensor, y: Tensor, wx: Tensor | None = None, wy: Tensor | None = None) -> float:
    """1-d Wasserstein distance between the weighted samples (x, wx) and (y, wy), in the
    units of x (scipy.stats.wasserstein_distance; weights are normalised by scipy).

    Raises:
        UnfoldingError: negative weights (the distance needs densities >= 0).
    """

    def arr(t: Tensor | None) -> np.ndarray | None:
        return None if t is None else t.detach().to("cpu", torch.float64).numpy()

    for name, w in (("wx", wx), ("wy", wy)):
        if w is not None and bool((w < 0).any()):
            raise UnfoldingError(f"wasserstein: {name} has negative weights")
    return float(scipy.stats.wasserstein_distance(arr(x), arr(y), arr(wx), arr(wy)))


@dataclass(frozen=True)
class Chi2:
    """chi^2 of a comparison with a covariance.

    Attributes:
        chi2: d^T C^+ d.
        ndf: degrees of freedom: the rank of C (the number of bins when C is regular).
        singular: the pseudo-inverse was used because C is singular (rank < bins).
    """

    chi2: float
    ndf: int
    singular: bool

    @property
    def per_ndf(self) -> float:
        """chi^2 / ndf."""
        return self.chi2 / self.ndf if self.ndf > 0 else float("nan")


def chi2_ndf(values: Tensor, reference: Tensor, covariance: Tensor, rcond: float = 1e-10) -> Chi2:
    """chi^2 = d^T C^+ d of d = values - reference with covariance C (B, B).

    Where C is singular (rank < B, e.g. fewer replicas than bins, or empty bins), the
    Moore-Penrose pseudo-inverse is used (eigenvalues below ``rcond`` times the largest
    dropped) and ndf is the rank; ``Chi2.singular`` says so.
    """
    d = (values - reference).to(torch.float64)
    c = covariance.to(torch.float64)
    if c.shape != (d.numel(), d.numel()):
        raise UnfoldingError(
            f"chi2: covariance must be ({d.numel()}, {d.numel()}), got {tuple(c.shape)}"
        )
    c = 0.5 * (c + c.T)
    evals, evecs = torch.linalg.eigh(c)
    keep = evals > rcond * float(evals.abs().max()) if float(evals.abs().max()) > 0 else evals > 0
    proj = evecs[:, keep].T @ d
    chi2 = float((proj**2 / evals[keep]).sum())
    rank = int(keep.sum())
    return Chi2(chi2, rank, rank < d.numel())


def pulls(
    values: Tensor, reference: Tensor, covariance_or_variance: Tensor
) -> tuple[Tensor, float]:
    """Per-bin pulls (values - reference) / sigma and their root mean square.

    Args:
        covariance_or_variance: (B, B) covariance (its diagonal is used) or (B,) variances.

    Bins with zero variance are left out (NaN pull, not in the rms).
    """
    var = covariance_or_variance
    if var.ndim == 2:
        var = var.diagonal()
    var = var.to(torch.float64)
    ok = var > 0
    p = torch.where(ok, (values - reference) / var.clamp(min=1e-300).sqrt(), torch.nan)
    rms = float(p[ok].pow(2).mean().sqrt()) if bool(ok.any()) else float("nan")
    return p, rms


def coverage(values: Tensor, errors: Tensor, truth: Tensor) -> float:
    """Fraction of (toy, bin) pairs with |values - truth| <= errors: the coverage of the
    quoted +-1 sigma (68 %) intervals over repeated toys.

    Args:
        values: (T, B) unfolded values of T toys; errors: (T, B) their quoted 1-sigma
            errors; truth: (B,) or (T, B) the true values.
    """
    if values.shape != errors.shape:
        raise UnfoldingError(
            f"coverage: values {tuple(values.shape)} and errors {tuple(errors.shape)} differ"
        )
    covered = (values - truth).abs() <= errors
    return float(covered.to(torch.float64).mean())
