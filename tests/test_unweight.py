"""Hit-or-miss unweighting: acceptance, normalisation, shapes, overweights, the maximum.

Monte Carlo checks are conditional on the weighted input: given the weights, event i is
kept with probability p_i = min(1, |w_i|/w_max) independently, so the number kept has
mean sum p_i and variance sum p_i (1 - p_i) exactly; comparisons allow 3 standard
deviations (or the 99.9% chi2 quantile for histograms).
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from evgen.kinematics import pt
from evgen.unweight import UnweightingResult, find_max_weight, unweight

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _excess(w: torch.Tensor, t: float) -> float:
    """Cross section above t: sum of (|w| - t)+."""
    return float(torch.clamp(w.abs() - t, min=0.0).sum())


def test_accepted_fraction_is_mean_weight_over_max(ttbar_events):
    n = 200_000
    u = torch.rand(n, generator=_gen(1), dtype=F64)
    w = 2.0 * u**2  # <w> = 2/3, w_max = 2: expected efficiency 1/3
    result = unweight(ttbar_events(n, weights=w), max_weight=2.0, generator=_gen(2))
    assert isinstance(result, UnweightingResult)
    p = w / 2.0
    expected, sigma = float(p.sum()), math.sqrt(float((p * (1 - p)).sum()))
    assert result.n_in == n and result.n_overweight == 0
    assert result.efficiency == pytest.approx(float(w.mean()) / 2.0, rel=1e-12)
    assert abs(result.n_accepted - expected) < 3 * sigma
    assert result.accepted_fraction == result.n_accepted / n == len(result.events) / n
    # and the sample's efficiency is the analytic 1/3 within its own MC error
    assert abs(result.efficiency - 1 / 3) < 3 * float(w.std()) / 2.0 / math.sqrt(n)


def test_sum_of_unweighted_weights_estimates_weighted_sum(ttbar_events):
    n = 100_000
    w = -torch.log(torch.rand(n, generator=_gen(30), dtype=F64)) * 500.0 / n  # sum ~ 500 pb
    events = ttbar_events(n, weights=w)
    result = unweight(events, generator=_gen(3))
    w_max = result.max_weight
    assert torch.all(result.events.weights[result.events.weights != w_max] > w_max)
    p = torch.clamp(w / w_max, max=1.0)
    # kept weight is w_max (own w for overweights): Var = sum w_max^2 p (1 - p)
    sigma = w_max * math.sqrt(float((p * (1 - p)).sum()))
    assert abs(float(result.events.weights.sum()) - float(w.sum())) < 3 * sigma
    # the check is tight: ~12k events kept, 3 sigma is ~2% of the sum
    assert 3 * sigma / float(w.sum()) < 0.025
    # the reduced maximum loses at most max_loss of the cross section above it
    assert result.overweight_fraction_xs == pytest.approx(1e-3, rel=1e-9)
    assert result.n_overweight >= 1


def test_kept_events_are_the_input_events(ttbar_events):
    events = ttbar_events(5000, weights=torch.rand(5000, generator=_gen(4), dtype=F64))
    result = unweight(events, generator=_gen(5))
    kept = result.events
    # identify kept events by their (unique) momenta; order is preserved
    mask = torch.isin(events.momenta[:, 2, 1], kept.momenta[:, 2, 1])
    assert int(mask.sum()) == len(kept)
    for name in ("momenta", "pdg", "colours", "process_id", "channel", "scale"):
        assert torch.equal(getattr(events, name)[mask], getattr(kept, name))


def test_reproducible_with_seeded_generator(ttbar_events):
    events = ttbar_events(2000, weights=torch.rand(2000, generator=_gen(6), dtype=F64))
    a = unweight(events, generator=_gen(7))
    b = unweight(events, generator=_gen(7))
    assert torch.equal(a.events.momenta, b.events.momenta)


def test_unweighted_distribution_matches_weighted(ttbar_events):
    """Top-pT spectrum of the kept events vs the weighted spectrum (chi2 per bin)."""
    n = 100_000
    events = ttbar_events(n, seed=11)
    top_pt = pt(events.momenta[:, 2])
    # a steeply falling weight in pT, as for a real matrix element times flux
    events.weights = (
        1.0
        / (1.0 + (top_pt / 150.0) ** 3)
        * (1.0 + 0.3 * torch.rand(n, generator=_gen(8), dtype=F64))
    )
    result = unweight(events, generator=_gen(9), max_loss=1e-3)
    edges = torch.tensor([0.0, 25, 50, 75, 100, 150, 200, 300, 400, 750], dtype=F64)
    w_max = result.max_weight
    p = torch.clamp(events.weights / w_max, max=1.0)
    bins = torch.bucketize(top_pt, edges[1:-1])
    kept_bins = torch.bucketize(pt(result.events.momenta[:, 2]), edges[1:-1])
    n_bins = len(edges) - 1
    observed = torch.bincount(kept_bins, minlength=n_bins).to(F64)
    expected = torch.bincount(bins, weights=p, minlength=n_bins)
    variance = torch.bincount(bins, weights=p * (1 - p), minlength=n_bins)
    chi2 = float(((observed - expected) ** 2 / variance).sum())
    assert chi2 < stats.chi2.ppf(0.999, n_bins), chi2
    # the weighted and unweighted spectra agree in shape: this test can fail, e.g.
    # for an acceptance that ignored the weights the chi2 is in the thousands
    flat = torch.bincount(bins, minlength=n_bins).to(F64) * len(result.events) / n
    assert float(((flat - expected) ** 2 / variance).sum()) > 100 * stats.chi2.ppf(0.999, n_bins)


def test_overweight_counting_exact(ttbar_events):
    w = torch.arange(1.0, 11.0, dtype=F64)  # 1..10, total 55
    events = ttbar_events(10, weights=w)
    keep = unweight(events, max_weight=7.5, generator=_gen(10), overweight="keep")
    assert keep.n_overweight == 3
    assert keep.overweight_fraction_xs == pytest.approx(4.5 / 55, rel=1e-14)
    assert keep.efficiency == pytest.approx(5.5 / 7.5, rel=1e-14)
    # overweights are always kept, with their own weights under "keep"
    assert torch.equal(keep.events.weights[-3:], torch.tensor([8.0, 9.0, 10.0], dtype=F64))
    assert torch.all(keep.events.weights[:-3] == 7.5)
    truncate = unweight(events, max_weight=7.5, generator=_gen(10), overweight="truncate")
    assert truncate.n_overweight == 3
    assert torch.all(truncate.events.weights == 7.5)
    assert torch.equal(truncate.events.momenta, keep.events.momenta)  # same random numbers


def test_reduced_maximum_obeys_max_loss_exactly():
    w = torch.exp(1.5 * torch.randn(50_000, generator=_gen(31), dtype=F64))
    total = float(w.sum())
    for max_loss in (1e-2, 1e-3, 1e-4):
        t = find_max_weight(w, method="reduced", max_loss=max_loss)
        assert 0 < t < float(w.max())
        assert _excess(w, t) == pytest.approx(max_loss * total, rel=1e-9)
        # minimal: any smaller maximum loses more (the excess is strictly decreasing)
        assert _excess(w, t * (1 - 1e-9)) > max_loss * total
        # independent computation: bisection on the excess
        lo, hi = 0.0, float(w.max())
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if _excess(w, mid) <= max_loss * total else (mid, hi)
        assert t == pytest.approx(hi, rel=1e-9)
    assert find_max_weight(w, method="reduced", max_loss=0.0) == float(w.max())
    assert find_max_weight(w, method="max") == float(w.max())
    # the reduced maximum is far below the maximum of a heavy-tailed sample
    assert find_max_weight(w, max_loss=1e-2) < 0.5 * float(w.max())


def test_reduced_maximum_with_ties_and_small_samples():
    w = torch.tensor([3.0, 3.0, 3.0, 1.0], dtype=F64)  # total 10
    # excess over t in [1, 3] is 3 (3 - t): max_loss 0.3 -> t = 2
    assert find_max_weight(w, max_loss=0.3) == pytest.approx(2.0, rel=1e-15)
    # excess over t < 1 is 10 - 4t: max_loss 0.8 -> t = 0.5
    assert find_max_weight(w, max_loss=0.8) == pytest.approx(0.5, rel=1e-15)
    assert find_max_weight(torch.zeros(5, dtype=F64)) == 0.0
    assert find_max_weight(torch.empty(0, dtype=F64)) == 0.0
    with pytest.raises(ValueError, match="max_loss"):
        find_max_weight(w, max_loss=1.0)
    with pytest.raises(ValueError, match="not finite"):
        find_max_weight(torch.tensor([1.0, math.nan], dtype=F64))


def test_quantile_maximum_with_ties():
    w = torch.tensor([1.0, 3.0, 5.0, 3.0, 3.0], dtype=F64)  # total 15
    assert find_max_weight(w, method="quantile", max_loss=0.4) == 3.0  # 5 above 3 <= 6
    assert find_max_weight(w, method="quantile", max_loss=0.2) == 5.0  # 5 above 3 > 3
    assert find_max_weight(w, method="quantile", max_loss=0.0) == 5.0


def test_quantile_maximum_is_a_cross_section_quantile():
    w = torch.exp(1.5 * torch.randn(20_000, generator=_gen(32), dtype=F64))
    total, max_loss = float(w.sum()), 1e-2
    t = find_max_weight(w, method="quantile", max_loss=max_loss)
    assert bool((w == t).any())  # a sample value
    assert float(w[w > t].sum()) <= max_loss * total
    below = float(w[w < t].max())  # the next smaller sample value is not allowed
    assert float(w[w > below].sum()) > max_loss * total


def test_negative_weights_keep_their_sign(ttbar_events):
    n = 100_000
    g = _gen(12)
    magnitude = torch.rand(n, generator=g, dtype=F64)
    sign = torch.where(torch.rand(n, generator=g, dtype=F64) < 0.2, -1.0, 1.0)
    w = sign * magnitude
    events = ttbar_events(n, weights=w)
    result = unweight(events, max_weight=1.0, generator=_gen(13))
    kept = result.events
    assert set(kept.weights.tolist()) == {-1.0, 1.0}
    kept_sign = torch.isin(events.momenta[:, 2, 1], kept.momenta[:, 2, 1])
    assert torch.equal(kept.weights, sign[kept_sign])
    # |w| drives the acceptance: <|w|>/w_max = 1/2 of each sign kept
    p = magnitude
    assert result.efficiency == pytest.approx(float(p.mean()), rel=1e-12)
    sigma = math.sqrt(float((p * (1 - p)).sum()))
    assert abs(result.n_accepted - float(p.sum())) < 3 * sigma
    # and the signed sum is preserved: Var = sum p (1 - p) with w_max = 1
    assert abs(float(kept.weights.sum()) - float(w.sum())) < 3 * sigma
    n_negative = int((kept.weights < 0).sum())
    p_neg = p[sign < 0]
    assert abs(n_negative - float(p_neg.sum())) < 3 * math.sqrt(float((p_neg * (1 - p_neg)).sum()))


def test_zero_weights_and_bad_input(ttbar_events):
    events = ttbar_events(100, weights=torch.zeros(100, dtype=F64))
    result = unweight(events, generator=_gen(14))
    assert len(result.events) == 0 and result.efficiency == 0.0
    events.weights[3] = math.inf
    with pytest.raises(ValueError, match="not finite"):
        unweight(events)
    with pytest.raises(ValueError, match="max_weight"):
        unweight(ttbar_events(10), max_weight=-1.0)
    with pytest.raises(ValueError, match="overweight"):
        unweight(ttbar_events(10), overweight="drop")  # type: ignore[arg-type]
