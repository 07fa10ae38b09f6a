"""Iterative Bayesian unfolding against exact answers on small responses.

The simulated samples here are built event by event with chosen weights, so every
response entry, efficiency and fake fraction is known exactly; the unfolded numbers
are then compared with closed forms (diagonal response: d/eps after one iteration),
with an independent dense implementation of D'Agostini's formula, and with the
matrix-inverse solution that IBU converges to.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from unfolding.data import UnfoldingInputs
from unfolding.errors import UnfoldingError
from unfolding.ibu import Binning, IBUConfig, build_response, ibu, ibu_iterate, unfold_spectrum

torch.set_num_threads(1)
F64 = torch.float64
EDGES = Binning.uniform([(3, 0.0, 3.0)])
CENTRES = torch.tensor([0.5, 1.5, 2.5], dtype=F64)


def make_inputs(
    counts: np.ndarray, misses: np.ndarray, fakes: np.ndarray, data: np.ndarray
) -> UnfoldingInputs:
    """One simulated event per filled (reco r, truth t) pair with weight counts[r, t], one
    miss per truth bin (weight misses[t]), one fake per reco bin (weight fakes[r]); one
    data event per reco bin with weight data[r]. Values sit at the bin centres."""
    truth, reco, w, pt, pr = [], [], [], [], []
    n_r, n_t = counts.shape
    for r in range(n_r):
        for t in range(n_t):
            if counts[r, t] > 0:
                truth.append(CENTRES[t]), reco.append(CENTRES[r]), w.append(counts[r, t])
                pt.append(True), pr.append(True)
    for t in range(n_t):
        if misses[t] > 0:
            truth.append(CENTRES[t]), reco.append(-99.0), w.append(misses[t])
            pt.append(True), pr.append(False)
    for r in range(n_r):
        if fakes[r] > 0:
            truth.append(-99.0), reco.append(CENTRES[r]), w.append(fakes[r])
            pt.append(False), pr.append(True)
    return UnfoldingInputs(
        sim_truth=torch.tensor(truth, dtype=F64)[:, None],
        sim_reco=torch.tensor(reco, dtype=F64)[:, None],
        sim_weights=torch.tensor(w, dtype=F64),
        sim_pass_truth=torch.tensor(pt),
        sim_pass_reco=torch.tensor(pr),
        data_reco=CENTRES[:, None].clone(),
        data_weights=torch.tensor(data, dtype=F64),
        truth_names=("x",),
        reco_names=("x_reco",),
    )


def dagostini_dense(counts, misses, fakes, data, iterations):
    """Independent dense numpy implementation of D'Agostini's update with fakes
    subtracted as fake fraction x data."""
    truth_total = counts.sum(0) + misses
    prob = counts / truth_total[None, :]
    eff = prob.sum(0)
    fake_fraction = fakes / (counts.sum(1) + fakes)
    d = data * (1 - fake_fraction)
    p = truth_total.astype(float)
    for _ in range(iterations):
        bayes = prob * p[None, :] / (prob @ p)[:, None]  # P(t|r), (r, t)
        p = (bayes * d[:, None]).sum(0) / eff
    return p


COUNTS = np.array([[60.0, 12.0, 3.0], [10.0, 50.0, 9.0], [2.0, 8.0, 40.0]])
MISSES = np.array([20.0, 15.0, 30.0])
FAKES = np.array([5.0, 8.0, 2.0])
DATA = np.array([100.0, 95.0, 70.0])


def test_diagonal_response_gives_data_over_efficiency_after_one_iteration() -> None:
    counts = np.diag([40.0, 30.0, 20.0])
    misses = np.array([10.0, 30.0, 0.0])  # efficiencies 0.8, 0.5, 1.0
    data = np.array([120.0, 55.0, 33.0])
    inputs = make_inputs(counts, misses, np.zeros(3), data)
    for iterations in (1, 4):
        s = unfold_spectrum(inputs, EDGES, EDGES, IBUConfig(iterations=iterations, toys=0))
        want = torch.tensor(data / np.array([0.8, 0.5, 1.0]), dtype=F64)
        torch.testing.assert_close(s.values, want, rtol=1e-12, atol=0)


def test_one_iteration_matches_dense_formula_with_fakes_and_inefficiency() -> None:
    inputs = make_inputs(COUNTS, MISSES, FAKES, DATA)
    for iterations in (1, 2, 4, 10):
        s = unfold_spectrum(inputs, EDGES, EDGES, IBUConfig(iterations=iterations, toys=0))
        want = dagostini_dense(COUNTS, MISSES, FAKES, DATA, iterations)
        np.testing.assert_allclose(s.values.numpy(), want, rtol=1e-12)


def test_response_efficiency_and_fake_fraction_are_exact() -> None:
    response = build_response(make_inputs(COUNTS, MISSES, FAKES, DATA), EDGES, EDGES)
    np.testing.assert_allclose(response.to_dense().numpy(), COUNTS, rtol=1e-14)
    truth_total = COUNTS.sum(0) + MISSES
    np.testing.assert_allclose(response.efficiency.numpy(), COUNTS.sum(0) / truth_total)
    np.testing.assert_allclose(
        response.fake_fraction.numpy(), FAKES / (COUNTS.sum(1) + FAKES), rtol=1e-14
    )
    assert response.values.numel() == np.count_nonzero(COUNTS)  # sparse triplets


def test_many_iterations_converge_to_the_matrix_inverse() -> None:
    """For an invertible response and a positive inverse solution, the IBU fixed point
    solves P u = d' exactly (maximum likelihood)."""
    inputs = make_inputs(COUNTS, MISSES, FAKES, DATA)
    truth_total = COUNTS.sum(0) + MISSES
    prob = COUNTS / truth_total
    d = DATA * (1 - FAKES / (COUNTS.sum(1) + FAKES))
    exact = np.linalg.solve(prob, d)
    assert (exact > 0).all()
    s = unfold_spectrum(
        inputs, EDGES, EDGES, IBUConfig(tolerance=1e-20, max_iterations=5000, toys=0)
    )
    assert s.converged and s.iterations < 5000
    np.testing.assert_allclose(s.values.numpy(), exact, rtol=1e-8)
    # the change chi^2 decreases towards the fixed point
    assert s.chi2_changes[-1] < s.chi2_changes[0]


def test_stopping_rule_is_recorded() -> None:
    inputs = make_inputs(COUNTS, MISSES, FAKES, DATA)
    fixed = ibu(inputs, EDGES, EDGES, IBUConfig(toys=0))
    assert fixed.info["stopping"] == "fixed" and fixed.info["iterations"] == 4
    loose = ibu(inputs, EDGES, EDGES, IBUConfig(tolerance=1e-3, toys=0))
    assert loose.info["stopping"] == "tolerance"
    assert loose.info["chi2_changes"][-1] < 1e-3 <= loose.info["chi2_changes"][-2]
    capped = ibu(inputs, EDGES, EDGES, IBUConfig(tolerance=1e-30, max_iterations=3, toys=0))
    assert capped.info["stopping"] == "max_iterations" and capped.info["iterations"] == 3


def test_conservation_of_the_folded_data() -> None:
    """Every iteration keeps sum_t eps_t u_t = sum_r d'_r (Bayes' theorem)."""
    inputs = make_inputs(COUNTS, MISSES, FAKES, DATA)
    response = build_response(inputs, EDGES, EDGES)
    d = torch.tensor(DATA, dtype=F64)
    u, *_ = ibu_iterate(response, d, iterations=3)
    want = (d * (1 - response.fake_fraction)).sum()
    torch.testing.assert_close((response.efficiency * u).sum(), want, rtol=1e-13, atol=0)


def test_result_weights_reproduce_the_spectrum() -> None:
    inputs = make_inputs(COUNTS, MISSES, FAKES, DATA)
    s = unfold_spectrum(inputs, EDGES, EDGES, IBUConfig(toys=20))
    result = ibu(inputs, EDGES, EDGES, IBUConfig(toys=20))
    bins = EDGES.index(result.truth)
    hist = torch.zeros(3, dtype=F64).index_add_(0, bins, result.weights)
    torch.testing.assert_close(hist, s.values, rtol=1e-12, atol=0)
    rep = torch.zeros(20, 3, dtype=F64).index_add_(1, bins, result.replica_weights)
    torch.testing.assert_close(rep, s.toys, rtol=1e-12, atol=0)
    assert result.method == "ibu" and result.weights.sum() == pytest.approx(float(s.values.sum()))


def poisson_inputs(
    n_data_per_bin: float, eff: torch.Tensor, seed: int, n_sim: int = 20_000
) -> UnfoldingInputs:
    """Diagonal response with efficiencies ``eff`` and unit-weight data events."""
    gen = torch.Generator().manual_seed(seed)
    truth = 3 * torch.rand(n_sim, 1, generator=gen, dtype=F64)
    t = truth[:, 0].long().clamp(max=2)
    passed = torch.rand(n_sim, generator=gen, dtype=F64) < eff[t]
    data = 3 * torch.rand(int(3 * n_data_per_bin), 1, generator=gen, dtype=F64)
    return UnfoldingInputs(
        truth, truth.clone(), torch.ones(n_sim, dtype=F64), torch.ones(n_sim, dtype=torch.bool),
        passed, data, torch.ones(data.shape[0], dtype=F64), ("x",), ("x_reco",),
    )  # fmt: skip


def test_data_toys_give_the_poisson_variance() -> None:
    """Diagonal response, data toys only: var(u_t) = d_t / eps_t^2 (Poisson). With 2,000
    toys the sample variance has a relative error sqrt(2/1999) = 3.2 %; allow 4 sigma."""
    eff = torch.tensor([0.9, 0.6, 0.3], dtype=F64)
    inputs = poisson_inputs(1000, eff, seed=5)
    config = IBUConfig(iterations=1, toys=2000, toy_response=False, seed=2)
    s = unfold_spectrum(inputs, EDGES, EDGES, config)
    response = build_response(inputs, EDGES, EDGES)
    data = torch.zeros(3, dtype=F64).index_add_(
        0, EDGES.index(inputs.data_reco), inputs.data_weights
    )
    want = data / response.efficiency**2
    rel = s.covariance.diagonal() / want - 1
    assert float(rel.abs().max()) < 4 * (2 / 1999) ** 0.5, rel
    # off-diagonal correlations vanish for a diagonal response (|rho| < 4 / sqrt(2000))
    corr = s.covariance / torch.outer(s.errors, s.errors)
    assert float((corr - torch.eye(3, dtype=F64)).abs().max()) < 4 / 2000**0.5


def test_response_toys_add_the_efficiency_uncertainty() -> None:
    """Response toys alone: u_t = d_t / eps_t with eps_t = k/n binomial-like; the relative
    variance of 1/eps from Poisson-resampled passing (k) and failing (n - k) counts is
    (1 - eps) / (eps n) to first order. 1,000 toys: 4.5 % relative error; 4 sigma + 2 %
    for the first-order formula."""
    eff = torch.tensor([0.9, 0.6, 0.3], dtype=F64)
    inputs = poisson_inputs(1000, eff, seed=6, n_sim=8000)
    config = IBUConfig(iterations=1, toys=1000, toy_data=False, seed=3)
    s = unfold_spectrum(inputs, EDGES, EDGES, config)
    response = build_response(inputs, EDGES, EDGES)
    e, n = response.efficiency, response.truth_total
    want = s.values**2 * (1 - e) / (e * n)
    rel = s.covariance.diagonal() / want - 1
    assert float(rel.abs().max()) < 4 * (2 / 999) ** 0.5 + 0.02, rel  # + first-order bias


def test_multidimensional_binning_flattens_like_numpy() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5000, 2, generator=gen, dtype=F64) * 1.5
    b = Binning((torch.tensor([-2.0, -1.0, 0.0, 0.5, 2.0]), torch.linspace(-3, 3, 7)))
    idx = b.index(x)
    counts = torch.bincount(idx[idx >= 0], minlength=b.n_bins).double()
    want, _ = np.histogramdd(x.numpy(), bins=[e.numpy() for e in b.edges])
    np.testing.assert_array_equal(counts.numpy(), want.ravel())
    assert int((idx < 0).sum()) == 5000 - int(want.sum())
    flow = Binning(b.edges, overflow=True)
    assert flow.shape == (6, 8)
    fidx = flow.index(x)
    assert int(fidx.min()) >= 0 and int(torch.bincount(fidx, minlength=48).sum()) == 5000
    # an event below both ranges lands in the (underflow, underflow) bin 0; above: last
    corners = torch.tensor([[-9.0, -9.0], [9.0, 9.0], [2.0, 3.0]], dtype=F64)
    assert flow.index(corners).tolist() == [0, 47, 4 * 8 + 6]  # upper edge is inclusive


def test_out_of_range_truth_counts_as_fake_and_out_of_range_reco_as_miss() -> None:
    x_t = torch.tensor([[0.5], [5.0], [1.5]], dtype=F64)  # second: truth out of range
    x_r = torch.tensor([[0.5], [0.5], [7.0]], dtype=F64)  # third: reco out of range
    inputs = UnfoldingInputs(
        x_t, x_r, torch.ones(3, dtype=F64), torch.ones(3, dtype=torch.bool),
        torch.ones(3, dtype=torch.bool), x_r[:1].clone(), torch.ones(1, dtype=F64),
        ("x",), ("x_reco",),
    )  # fmt: skip
    response = build_response(inputs, EDGES, EDGES)
    assert response.fakes.tolist() == [1.0, 0.0, 0.0]
    assert response.efficiency.tolist() == [1.0, 0.0, 0.0]
    assert response.truth_total.tolist() == [1.0, 1.0, 0.0]


def test_1200_bins_run_in_seconds() -> None:
    """1,200 truth x 1,200 reco bins, 2e5 events, 20 toys: sparse, well under 10 s.
    The unfolded total must equal the fake-free data over the (flat) efficiency."""
    gen = torch.Generator().manual_seed(1)
    n = 200_000
    truth = torch.rand(n, 1, generator=gen, dtype=F64) * 12
    reco = truth + 0.02 * torch.randn(n, 1, generator=gen, dtype=F64)
    passed = torch.rand(n, generator=gen, dtype=F64) < 0.8
    data = torch.rand(n, 1, generator=gen, dtype=F64) * 12 + 0.02 * torch.randn(
        n, 1, generator=gen, dtype=F64
    )
    inputs = UnfoldingInputs(
        truth, reco, torch.ones(n, dtype=F64), torch.ones(n, dtype=torch.bool), passed,
        data, torch.ones(n, dtype=F64), ("x",), ("x_reco",),
    )  # fmt: skip
    binning = Binning.uniform([(1200, 0.0, 12.0)])
    start = time.perf_counter()
    result = ibu(inputs, binning, binning, IBUConfig(iterations=4, toys=20))
    seconds = time.perf_counter() - start
    assert seconds < 10, seconds
    response = build_response(inputs, binning, binning)
    assert response.values.numel() < 20 * 1200  # sparse: a band of width ~ +-4 bins
    # sum_t eps_t u_t = sum_r d'_r (no fakes); eps ~ 0.8 flat within binomial noise
    unfolded = torch.zeros(1200, dtype=F64).index_add_(
        0, binning.index(result.truth), result.weights
    )
    data_in = float((binning.index(data) >= 0).sum())
    eps_u = float((response.efficiency * unfolded).sum())
    assert eps_u == pytest.approx(data_in, rel=1e-10)
    assert result.replica_weights.shape == (20, result.truth.shape[0])


def test_bad_settings() -> None:
    with pytest.raises(UnfoldingError, match="ibu.iterations"):
        IBUConfig(iterations=0)
    with pytest.raises(UnfoldingError, match="increasing"):
        Binning((torch.tensor([0.0, 0.0, 1.0]),))
    inputs = make_inputs(COUNTS, MISSES, FAKES, DATA)
    with pytest.raises(UnfoldingError, match="truth binning has 2"):
        ibu(inputs, Binning.uniform([(3, 0, 3), (2, 0, 1)]), EDGES)


def test_toys_in_chunks(monkeypatch) -> None:
    """Toys drawn in several memory-bounded chunks: all toys present, each different, and
    the data-toy variance still Poisson (diagonal response: var = d / eps^2, 600 toys:
    5.8 % relative error, 4 sigma)."""
    import unfolding.ibu as ibu_module

    eff = torch.tensor([0.9, 0.6, 0.3], dtype=F64)
    inputs = poisson_inputs(1000, eff, seed=8, n_sim=3000)
    monkeypatch.setattr(ibu_module, "_TOY_ELEMENTS", 100 * inputs.n_sim)  # 100 toys a chunk
    s = unfold_spectrum(inputs, EDGES, EDGES, IBUConfig(iterations=1, toys=600, toy_response=False))
    assert s.toys.shape == (600, 3)
    assert torch.unique(s.toys[:, 0]).numel() > 100
    response = build_response(inputs, EDGES, EDGES)
    data = torch.zeros(3, dtype=F64).index_add_(
        0, EDGES.index(inputs.data_reco), inputs.data_weights
    )
    rel = s.covariance.diagonal() / (data / response.efficiency**2) - 1
    assert float(rel.abs().max()) < 4 * (2 / 599) ** 0.5, rel
