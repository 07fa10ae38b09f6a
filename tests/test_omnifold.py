"""OmniFold closes on tiny 1-d Gaussian toys.

Simulation truth N(0, 1), data truth N(0.4, 0.8), Gaussian smearing 0.4; 6,000 events each,
small networks. The unfolded weighted truth histogram must match the data's true truth
histogram within pulls, the statistical error of each bin combining the data truth's
Poisson error and the unfolded bin's (data statistics propagated, ~ the same size, plus
the simulation's sum of w^2): sigma^2 = N_true + N_unfolded + sum w^2. The binning is
coarse (8 bins on [-2, 2], width 1.25 smearing widths), so with 4 iterations the
regularisation bias stays below the statistical error.
"""

from __future__ import annotations

import pytest
import torch

from evgen.ml.classifier import ClassifierConfig
from unfolding.data import UnfoldingInputs
from unfolding.errors import UnfoldingError
from unfolding.metrics import histogram, weighted_histogram
from unfolding.omnifold import OmniFoldConfig, fake_probability, omnifold

torch.set_num_threads(1)
F64 = torch.float64
N = 6000
EDGES = torch.linspace(-2, 2, 9, dtype=F64)
SMALL = ClassifierConfig(hidden=16, layers=2, epochs=15, batch_size=512, learning_rate=3e-3)


def toy(
    seed: int, efficiency: bool = False, fakes: float = 0.0, same: bool = False
) -> tuple[UnfoldingInputs, torch.Tensor]:
    """Returns the inputs and the data's truth values (those passing the truth selection)."""
    gen = torch.Generator().manual_seed(seed)
    st = torch.randn(N, 1, generator=gen, dtype=F64)
    sr = st + 0.4 * torch.randn(N, 1, generator=gen, dtype=F64)
    dt = 0.4 + 0.8 * torch.randn(N, 1, generator=gen, dtype=F64)
    dr = dt + 0.4 * torch.randn(N, 1, generator=gen, dtype=F64)
    ones = torch.ones(N, dtype=torch.bool)
    sim_pr, data_pr = ones.clone(), ones.clone()
    if efficiency:
        sim_pr = torch.rand(N, generator=gen, dtype=F64) < 0.7 + 0.2 * torch.tanh(st[:, 0])
        data_pr = torch.rand(N, generator=gen, dtype=F64) < 0.7 + 0.2 * torch.tanh(dt[:, 0])
    sim_pt = ones.clone()
    data_reco = dr[data_pr]
    if fakes > 0:  # fakes N(0.5, 1.2) at reco level, a fraction `fakes` of the total
        n_f = int(fakes * N / (1 - fakes))
        fake_sim = 0.5 + 1.2 * torch.randn(n_f, 1, generator=gen, dtype=F64)
        fake_data = 0.5 + 1.2 * torch.randn(n_f, 1, generator=gen, dtype=F64)
        st = torch.cat([st, torch.zeros(n_f, 1, dtype=F64)])
        sr = torch.cat([sr, fake_sim])
        sim_pt = torch.cat([sim_pt, torch.zeros(n_f, dtype=torch.bool)])
        sim_pr = torch.cat([sim_pr, torch.ones(n_f, dtype=torch.bool)])
        data_reco = torch.cat([data_reco, fake_data])
    if same:
        data_reco = sr[sim_pr].clone()
    n_sim = st.shape[0]
    inputs = UnfoldingInputs(
        st, sr, torch.ones(n_sim, dtype=F64), sim_pt, sim_pr, data_reco,
        torch.ones(data_reco.shape[0], dtype=F64), ("x",), ("x_reco",),
    )  # fmt: skip
    return inputs, dt[:, 0]


def check_closure(inputs: UnfoldingInputs, data_truth: torch.Tensor, config: OmniFoldConfig):
    result = omnifold(inputs, config)
    unfolded, _ = histogram(result, 0, EDGES)
    sumw2 = weighted_histogram(result.truth[:, 0], EDGES, result.weights**2)
    truth = weighted_histogram(data_truth, EDGES, torch.ones_like(data_truth))
    sigma = (truth + unfolded + sumw2).sqrt()
    pull = (unfolded - truth) / sigma
    assert float(pull.abs().max()) < 3.5, pull
    assert float(pull.pow(2).mean().sqrt()) < 1.6, pull
    # the prior alone (weights 1) is far off: the test can fail
    prior = weighted_histogram(
        result.truth[:, 0], EDGES, torch.ones(result.truth.shape[0], dtype=F64)
    )
    assert float(((prior - truth) / sigma).abs().max()) > 5
    return result


def test_closure_plain() -> None:
    inputs, data_truth = toy(1)
    result = check_closure(inputs, data_truth, OmniFoldConfig(iterations=4, classifier=SMALL))
    assert result.method == "omnifold" and result.weights.sum() == pytest.approx(N, rel=1e-9)


def test_closure_with_efficiency() -> None:
    """Misses take the step-1b truth-level average; the unfolded total must be the true
    number of fiducial events (N) within its statistical error."""
    inputs, data_truth = toy(2, efficiency=True)
    result = check_closure(inputs, data_truth, OmniFoldConfig(iterations=4, classifier=SMALL))
    assert abs(float(result.weights.sum()) - N) < 3 * (2 * N) ** 0.5


def test_closure_with_fakes_and_efficiency() -> None:
    """Fakes in step 1 (default): the fake fraction follows the reweighted prior."""
    inputs, data_truth = toy(3, efficiency=True, fakes=0.1)
    result = check_closure(inputs, data_truth, OmniFoldConfig(iterations=4, classifier=SMALL))
    assert result.info["fakes"] == "simulation" and result.info["has_fakes"]


def test_fake_probability_matches_the_construction() -> None:
    """Fakes N(0.5, 1.2) with 10 % of the events: P(fake|x) = F q(x) / (F q(x) + R p(x))
    with q the fakes' density and p the N(0, sqrt(1 + 0.16)) density of the real events."""
    inputs, _ = toy(4, fakes=0.1)
    x = torch.linspace(-1.5, 1.5, 7, dtype=F64)[:, None]
    got = fake_probability(inputs, OmniFoldConfig(classifier=SMALL), x)
    s = (1 + 0.16) ** 0.5
    p_real = torch.exp(-0.5 * (x[:, 0] / s) ** 2) / (s * (2 * torch.pi) ** 0.5)
    q_fake = torch.exp(-0.5 * ((x[:, 0] - 0.5) / 1.2) ** 2) / (1.2 * (2 * torch.pi) ** 0.5)
    n_f = float((~inputs.sim_pass_truth).sum())
    want = n_f * q_fake / (n_f * q_fake + N * p_real)
    assert float((got - want).abs().max()) < 0.02, (got, want)  # want ~ 0.06-0.16


def test_weights_stay_near_one_when_data_equal_simulation() -> None:
    inputs, _ = toy(5, efficiency=True, same=True)
    result = omnifold(inputs, OmniFoldConfig(iterations=2, classifier=SMALL))
    w = result.weights
    # normalised to the unfolded fiducial count: N within the misses' statistical error
    assert float(w.mean()) == pytest.approx(1.0, abs=0.02)
    assert float((w - 1).abs().mean()) < 0.05
    # the binned result equals the simulation's truth within its Poisson error (3 sigma;
    # classifier noise on identical samples is well below it)
    unfolded, _ = histogram(result, 0, EDGES)
    prior = weighted_histogram(result.truth[:, 0], EDGES, torch.ones_like(w))
    assert float(((unfolded - prior) / prior.sqrt()).abs().max()) < 3


def test_replicas_and_negative_weights() -> None:
    """Bootstrap replicas: their spread of the total is the data's Poisson error; a
    simulation with 10 % negative-weight events (weights -1, duplicated with +2 so the
    density is unchanged) still closes."""
    inputs, data_truth = toy(6)
    gen = torch.Generator().manual_seed(0)
    neg = torch.rand(N, generator=gen, dtype=F64) < 0.1
    inputs.sim_truth = torch.cat([inputs.sim_truth, inputs.sim_truth[neg]])
    inputs.sim_reco = torch.cat([inputs.sim_reco, inputs.sim_reco[neg]])
    w = torch.ones(N, dtype=F64)
    w[neg] = -1.0
    inputs.sim_weights = torch.cat([w, torch.full((int(neg.sum()),), 2.0, dtype=F64)])
    inputs.sim_pass_truth = torch.ones(inputs.sim_truth.shape[0], dtype=torch.bool)
    inputs.sim_pass_reco = inputs.sim_pass_truth.clone()
    tiny = ClassifierConfig(hidden=16, layers=2, epochs=6, batch_size=1024, learning_rate=3e-3)
    result = check_closure(
        inputs, data_truth, OmniFoldConfig(iterations=3, classifier=tiny, replicas=6)
    )
    assert result.replica_weights.shape == (6, inputs.sim_truth.shape[0])
    totals = result.replica_weights.sum(1)
    # Poisson bootstrap of N data events: the totals scatter with sigma = sqrt(N) = 77
    assert float(totals.std()) == pytest.approx(N**0.5, rel=0.8)
    _, cov = histogram(result, 0, EDGES)
    assert bool((cov.diagonal() > 0).all())


def test_bad_settings() -> None:
    with pytest.raises(UnfoldingError, match="omnifold.iterations"):
        OmniFoldConfig(iterations=0)
    inputs, _ = toy(7, fakes=0.1)
    with pytest.raises(UnfoldingError, match="fakes"):
        omnifold(inputs, OmniFoldConfig(iterations=1, classifier=SMALL, fakes="none"))


def test_simulation_bootstrap_widens_the_replicas_by_the_simulation_statistics() -> None:
    """With a simulation ten times smaller than the data, the simulation's statistics
    dominate the error: replicas that also resample the simulation spread per bin by
    ~sqrt(10) more than replicas resampling the data alone (asserted: > 2x). The
    likelihood ratios are clipped to within 1e-4 of 1 (data and simulation have the same
    density anyway) so that the classifiers' seed-to-seed noise does not hide it."""
    gen = torch.Generator().manual_seed(21)
    n_sim, n_data = 600, 6000
    st = torch.randn(n_sim, 1, generator=gen, dtype=F64)
    dt = torch.randn(n_data, 1, generator=gen, dtype=F64)
    sr = st + 0.4 * torch.randn(n_sim, 1, generator=gen, dtype=F64)
    dr = dt + 0.4 * torch.randn(n_data, 1, generator=gen, dtype=F64)
    ones = torch.ones(n_sim, dtype=torch.bool)
    inputs = UnfoldingInputs(
        st, sr, torch.ones(n_sim, dtype=F64), ones, ones.clone(), dr,
        torch.ones(n_data, dtype=F64), ("x",), ("x_reco",),
    )  # fmt: skip
    tiny = ClassifierConfig(hidden=8, layers=1, epochs=1, batch_size=1024)
    spreads = {}
    for sim_boot in (False, True):
        config = OmniFoldConfig(
            iterations=1, classifier=tiny, replicas=8, bootstrap_simulation=sim_boot, clip=1.0001
        )
        result = omnifold(inputs, config)
        hists = torch.stack(
            [weighted_histogram(result.truth[:, 0], EDGES, rw) for rw in result.replica_weights]
        )
        spreads[sim_boot] = float((hists.std(0) / hists.mean(0)).mean())
    assert spreads[True] > 2.0 * spreads[False], spreads
