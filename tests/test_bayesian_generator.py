"""Bayesian layers, the Bayesian/ensemble flow-matching generator, sampling and files.

The toy process: 2 -> 2 massless events (u u~ > mu+ mu-) with log m_ll normal (mean
log 200 GeV, width 0.5), the pair's rapidity normal (width 0.5) and cos(theta*)
distributed as 3/8 (1 + cos^2), built directly as tensors. A tiny network trained for a
few seconds is good to a few per cent, so the marginals are compared with the analytic
ones on 2500 generated events, a sample that resolves ~6 % per bin; the pull's
variance counts both the generated and the training sample (a generator reproduces its
training sample's fluctuations). A negative control (flat cos(theta*)) must fail the
same test.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from evgen.errors import OutputError
from evgen.events import Events
from evgen.generators import (
    MODEL_FORMAT,
    BayesianLinear,
    BayesianMLP,
    BayesianVelocityNet,
    GeneratorConfig,
    GeneratorError,
    GeneratorModel,
    VelocityEnsemble,
    bayesian_flow_matching_loss,
    bayesian_kl,
    sample_weights,
    set_weight_mode,
    train_generator,
)
from evgen.kinematics import boost_z
from evgen.ml import Trainer, TrainingConfig, flow_matching_loss, seed_everything

F64 = torch.float64
E_BEAM = 6500.0
LOG_M, WIDTH_M, WIDTH_Y = math.log(200.0), 0.5, 0.5
N_TRAIN, N_GEN = 20_000, 2_500

pytestmark = pytest.mark.usefixtures("single_thread")


# ---------------------------------------------------------------------- Bayesian layers


def test_kl_against_closed_form_and_monte_carlo() -> None:
    """KL[N(mu, sigma^2) || N(0, s^2)] summed over weights: torch's closed form, and a
    Monte Carlo estimate E_q[log q - log p] within 4 of its standard errors."""
    torch.manual_seed(0)
    layer = BayesianLinear(3, 2, prior_std=0.7)
    with torch.no_grad():
        layer.weight_mean.normal_(0, 0.5)
        layer.weight_log_var.uniform_(-3, 0)
    q = Normal(layer.weight_mean.detach(), (0.5 * layer.weight_log_var.detach()).exp())
    p = Normal(torch.zeros_like(q.loc), torch.full_like(q.loc, 0.7))
    closed = kl_divergence(q, p).sum()
    assert abs(float(layer.kl().detach()) - float(closed)) < 1e-12 * float(closed)
    w = q.sample((200_000,))
    per_draw = (q.log_prob(w) - p.log_prob(w)).sum(dim=(1, 2))
    error = float(per_draw.std()) / math.sqrt(len(per_draw))
    assert abs(float(per_draw.mean()) - float(closed)) < 4 * error
    net = BayesianMLP(3, 2, hidden=4, hidden_layers=1)
    assert torch.allclose(bayesian_kl(net), net[0].kl() + net[2].kl())


def test_local_reparametrisation_has_the_weight_posterior_moments() -> None:
    """In 'local' mode each row's output is Gaussian with mean x mu^T + b and variance
    x^2 sigma^2^T: the sample mean and variance over 40000 identical rows agree within
    4 standard errors."""
    torch.manual_seed(1)
    layer = BayesianLinear(4, 3)
    with torch.no_grad():
        layer.weight_log_var.uniform_(-4, -1)
    x = torch.tensor([[0.5, -1.0, 2.0, 0.3]], dtype=F64).expand(40_000, 4)
    with torch.no_grad():
        out = layer(x)
    mean = x[0] @ layer.weight_mean.detach().T + layer.bias.detach()
    var = (x[0] ** 2) @ layer.weight_log_var.detach().exp().T
    n = x.shape[0]
    assert bool(((out.mean(0) - mean).abs() < 4 * torch.sqrt(var / n)).all())
    assert bool(((out.var(0) - var).abs() < 4 * var * math.sqrt(2 / (n - 1))).all())


def test_fixed_weights_repeat_and_different_draws_differ() -> None:
    net = BayesianVelocityNet(3, context_dim=2, hidden=16, hidden_layers=2, init_log_var=-4.0)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(50, 3, generator=g, dtype=F64)
    c = torch.nn.functional.one_hot(torch.randint(2, (50,), generator=g), 2).to(F64)
    with torch.no_grad():
        sample_weights(net, torch.Generator().manual_seed(1))
        first = net(x, 0.3, c)
        assert torch.equal(first, net(x, 0.3, c))  # one weight sample, every call
        assert torch.allclose(first[:5], net(x[:5], 0.3, c[:5]), rtol=0, atol=1e-14)  # rows
        sample_weights(net, torch.Generator().manual_seed(2))
        second = net(x, 0.3, c)
        assert float((second - first).abs().max()) > 1e-3
        sample_weights(net, torch.Generator().manual_seed(1))
        assert torch.equal(net(x, 0.3, c), first)  # a seed is a weight sample
        set_weight_mode(net, "local")  # training mode: a fresh draw per call
        assert not torch.equal(net(x, 0.3, c), net(x, 0.3, c))
        set_weight_mode(net, "mean")
        assert torch.equal(net(x, 0.3, c), net(x, 0.3, c))
    assert net(x, torch.full((50,), 0.3, dtype=F64), c).shape == (50, 3)


def test_elbo_loss_is_mse_plus_kl_over_n_train() -> None:
    net = BayesianVelocityNet(2, hidden=8, hidden_layers=1)
    set_weight_mode(net, "mean")  # deterministic, to compare the two terms exactly
    x = torch.randn(64, 2, dtype=F64)
    loss = bayesian_flow_matching_loss(
        net, x, n_train=500, kl_scale=2.0, generator=torch.Generator().manual_seed(3)
    )
    mse = flow_matching_loss(net, x, generator=torch.Generator().manual_seed(3))
    assert abs(float((loss - mse - 2.0 * net.kl() / 500).detach())) < 1e-12


def test_ensemble_members_are_independent_networks() -> None:
    ensemble = VelocityEnsemble(3, 2, context_dim=1, hidden=8, hidden_layers=1)
    x, c = torch.randn(10, 2, dtype=F64), torch.ones(10, 1, dtype=F64)
    outputs = []
    for k in range(3):
        ensemble.select(k)
        outputs.append(ensemble(x, 0.5, c))
    assert not torch.equal(outputs[0], outputs[1]) and not torch.equal(outputs[1], outputs[2])
    with pytest.raises(ValueError, match="member"):
        ensemble.select(3)


def test_predictive_spread_shrinks_where_data_are_plentiful() -> None:
    """A Bayesian regression y = sin 3x + noise with 500 points in [-1, 0] and 5 in
    [0.6, 1]: the spread of the prediction over weight samples is several times smaller
    where the data are dense, and the dense region's prediction is right."""
    g = seed_everything(3)
    x = torch.cat(
        [
            -torch.rand(500, 1, generator=g, dtype=F64),
            0.6 + 0.4 * torch.rand(5, 1, generator=g, dtype=F64),
        ]
    )
    noise = 0.1
    y = torch.sin(3 * x) + noise * torch.randn(x.shape, generator=g, dtype=F64)
    net = BayesianMLP(1, 1, hidden=32, hidden_layers=2)
    n = len(x)
    Trainer(net, TrainingConfig(steps=800, learning_rate=1e-2)).fit(
        lambda: ((net(x) - y) ** 2).mean() / (2 * noise**2) + bayesian_kl(net) / n
    )
    grid = torch.tensor([[-0.5], [0.7], [0.9]], dtype=F64)
    draws = []
    with torch.no_grad():
        for k in range(100):
            sample_weights(net, torch.Generator().manual_seed(k))
            draws.append(net(grid)[:, 0])
    predictions = torch.stack(draws)
    spread = predictions.std(0)
    assert float(spread[0]) * 3 < float(spread[1:].min())
    assert abs(float(predictions[:, 0].mean()) - math.sin(-1.5)) < 3 * float(spread[0]) + 0.02


# ---------------------------------------------------------------------- the generator


def toy_events(n: int, seed: int, *, flat: bool = False) -> Events:
    """u u~ > mu+ mu- at 13 TeV with the module docstring's distribution (flat:
    cos(theta*) uniform instead, the negative control)."""
    g = torch.Generator().manual_seed(seed)
    m = torch.exp(LOG_M + WIDTH_M * torch.randn(n, generator=g, dtype=F64))
    y = WIDTH_Y * torch.randn(n, generator=g, dtype=F64)
    cos = torch.empty(0, dtype=F64)
    while cos.numel() < n:  # accept-reject from 1 + cos^2 <= 2
        u = 2 * torch.rand(4 * n, generator=g, dtype=F64) - 1
        keep = flat | (2 * torch.rand(4 * n, generator=g, dtype=F64) < 1 + u**2)
        cos = torch.cat([cos, u[keep]])
    cos = cos[:n]
    phi = 2 * math.pi * torch.rand(n, generator=g, dtype=F64)
    sin = torch.sqrt(1 - cos**2)
    half = m / 2
    mu = torch.stack(
        [half, half * sin * torch.cos(phi), half * sin * torch.sin(phi), half * cos], -1
    )
    zero = torch.zeros(n, dtype=F64)
    x1, x2 = m / (2 * E_BEAM) * torch.exp(y), m / (2 * E_BEAM) * torch.exp(-y)
    p1 = torch.stack([x1 * E_BEAM, zero, zero, x1 * E_BEAM], -1)
    p2 = torch.stack([x2 * E_BEAM, zero, zero, -x2 * E_BEAM], -1)
    mu_plus = boost_z(mu, y)
    momenta = torch.stack([p1, p2, mu_plus, p1 + p2 - mu_plus], 1)
    k = 4
    return Events(
        momenta=momenta,
        pdg=torch.tensor([2, -2, -13, 13]).expand(n, k).clone(),
        status=torch.tensor([-1, -1, 1, 1]).expand(n, k).clone(),
        mothers=torch.tensor([[0, 0], [0, 0], [1, 2], [1, 2]]).expand(n, k, 2).clone(),
        colours=torch.zeros(n, k, 2, dtype=torch.int64),
        masses=torch.zeros(n, k, dtype=F64),
        spins=torch.full((n, k), 9.0, dtype=F64),
        weights=torch.full((n,), 7.0 / n, dtype=F64),
        process_id=torch.full((n,), 4, dtype=torch.int64),
        scale=torch.full((n,), 91.188, dtype=F64),
        alpha_s=torch.full((n,), 0.118, dtype=F64),
        alpha_qed=torch.full((n,), 1 / 132.507, dtype=F64),
        channel=torch.zeros(n, dtype=torch.int64),
    )


def observables(p: torch.Tensor) -> dict[str, torch.Tensor]:
    """log m_ll, rapidity of the pair, cos(theta*) from the rapidity difference."""
    pair = p[:, 2] + p[:, 3]
    m2 = pair[:, 0] ** 2 - (pair[:, 1:] ** 2).sum(-1)

    def rapidity(q: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.log((q[:, 0] + q[:, 3]) / (q[:, 0] - q[:, 3]))

    return {
        "log_m": 0.5 * torch.log(m2),
        "y": rapidity(pair),
        "cos": torch.tanh((rapidity(p[:, 2]) - rapidity(p[:, 3])) / 2),
    }


def _normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


TRUTH = {  # observable -> (bin edges, analytic cumulative distribution)
    "log_m": (
        [LOG_M + WIDTH_M * (z / 2) for z in range(-5, 6)],
        lambda v: _normal_cdf((v - LOG_M) / WIDTH_M),
    ),
    "y": ([WIDTH_Y * (z / 2) for z in range(-5, 6)], lambda v: _normal_cdf(v / WIDTH_Y)),
    "cos": ([-1 + 0.2 * i for i in range(11)], lambda v: (3 * v + v**3) / 8 + 0.5),
}


def pulls(values: torch.Tensor, name: str) -> torch.Tensor:
    """(observed - expected) / sigma per bin, sigma^2 = N p (1 + N / N_train)."""
    edges, cdf = TRUTH[name]
    n = len(values)
    bins = list(zip(edges[:-1], edges[1:], strict=True))
    counts = torch.tensor([float(((values >= a) & (values < b)).sum()) for a, b in bins])
    expected = n * torch.tensor([cdf(b) - cdf(a) for a, b in bins])
    return (counts - expected) / torch.sqrt(expected * (1 + n / N_TRAIN))


def marginals_agree(p: torch.Tensor) -> tuple[bool, dict[str, list[float]]]:
    """Every bin's pull below 4 and the mean squared pull below 3 for each observable
    (3: the tiny network's few-per-cent imprecision on top of the statistics)."""
    found = {name: pulls(v, name) for name, v in observables(p).items()}
    ok = all(float(q.abs().max()) < 4 and float((q**2).mean()) < 3 for q in found.values())
    return ok, {k: [round(float(x), 1) for x in v] for k, v in found.items()}


SMALL = {
    "hidden": 64,
    "hidden_layers": 2,
    "time_frequencies": 2,
    "batch_size": 512,
    "learning_rate": 3e-3,
    "ode_steps": 10,
    "n_members": 3,
    "seed": 1,
}


@pytest.fixture(scope="module")
def bayesian_model(single_thread) -> GeneratorModel:
    config = GeneratorConfig(network="bayesian", steps=2000, **SMALL)
    return train_generator(
        toy_events(N_TRAIN, seed=1),
        config,
        cross_section_pb=7.0,
        process_card={"process": "u u~ > mu+ mu-"},
        beam_energy_gev=(E_BEAM, E_BEAM),
    )


def test_bayesian_generator_reproduces_the_marginals(bayesian_model: GeneratorModel) -> None:
    events = bayesian_model.sample(N_GEN, seed=2)
    ok, found = marginals_agree(events.momenta)
    assert ok, found
    # the same test rejects a wrong angular distribution (it has the power to fail)
    ok_flat, _ = marginals_agree(toy_events(N_GEN, seed=3, flat=True).momenta)
    assert not ok_flat
    # and the true distribution passes it
    ok_true, found_true = marginals_agree(toy_events(N_GEN, seed=4).momenta)
    assert ok_true, found_true


def assert_physical(events: Events, sigma_pb: float, n_total: int) -> None:
    """Four-momentum conserved, stable particles on shell (1e-6 relative), x <= 1."""
    p = events.momenta
    assert p.dtype == F64 and bool(torch.isfinite(p).all())
    stable = events.status[0] == 1
    energy = p[:, 0, 0] + p[:, 1, 0]
    imbalance = (p[:, stable].sum(1) - p[:, 0] - p[:, 1]).abs().amax(1) / energy
    assert float(imbalance.max()) < 1e-6
    q = p[:, stable]
    shell = (q[..., 0] ** 2 - (q[..., 1:] ** 2).sum(-1) - events.masses[:, stable] ** 2).abs()
    assert float((shell / q[..., 0] ** 2).max()) < 1e-6
    assert bool((p[:, :2, 1:3] == 0).all()) and bool((p[:, :2, 0] <= E_BEAM).all())
    assert torch.allclose(events.weights, torch.full_like(events.weights, sigma_pb / n_total))
    assert bool((events.colours == 0).all())


def test_generated_events_are_physical(bayesian_model: GeneratorModel) -> None:
    events = bayesian_model.sample(3000, seed=5, weight_sample=1)
    assert isinstance(events, Events) and len(events) == 3000
    assert_physical(events, 7.0, 3000)
    assert events.pdg[0].tolist() == [2, -2, -13, 13]
    assert events.status[0].tolist() == [-1, -1, 1, 1]
    assert bool((events.process_id == 4).all())
    assert float(events.scale[0]) == 91.188  # the training sample's fixed scale


def test_weight_samples_differ_and_seeds_reproduce(bayesian_model: GeneratorModel) -> None:
    a = bayesian_model.sample(500, seed=7, weight_sample=0).momenta
    assert torch.equal(a, bayesian_model.sample(500, seed=7, weight_sample=0).momenta)
    assert not torch.equal(a, bayesian_model.sample(500, seed=7, weight_sample=1).momenta)
    assert not torch.equal(a, bayesian_model.sample(500, seed=8, weight_sample=0).momenta)


def test_save_and_load_give_the_same_events(bayesian_model: GeneratorModel, tmp_path) -> None:
    path = tmp_path / "toy.generator"
    bayesian_model.save(path)
    loaded = GeneratorModel.load(path)
    assert loaded.cross_section_pb == 7.0
    assert loaded.process_card == {"process": "u u~ > mu+ mu-"}
    assert loaded.config == bayesian_model.config
    for k in (None, 2):
        a = bayesian_model.sample(400, seed=9, weight_sample=k)
        b = loaded.sample(400, seed=9, weight_sample=k)
        assert torch.equal(a.momenta, b.momenta)
    assert [p.name for p in tmp_path.iterdir()] == ["toy.generator"]  # no temporary left


def test_multiplicities_rates_and_ensemble(tmp_path) -> None:
    """One ensemble network for a 2 -> 2 and a 2 -> 3 topology (padded features): the
    generated rates follow the training fractions (binomial pull < 4), every event is
    physical, and one Events comes back per multiplicity."""
    from test_generator_preprocessing import rambo_events

    two = toy_events(1500, seed=11)
    three = rambo_events(500, (21, 21, -13, 13, 21), seed=12, process_id=5)
    three.weights = torch.full((500,), 7.0 / 1500, dtype=F64)
    config = GeneratorConfig(network="ensemble", steps=150, **SMALL)
    model = train_generator(
        [two, three], config, cross_section_pb=3.0, beam_energy_gev=(E_BEAM, E_BEAM)
    )
    assert model.preprocessing.dim == 6 and model.n_members == 3
    n = 4000
    batches = model.sample(n, seed=13)
    assert isinstance(batches, list) and [b.n_particles for b in batches] == [4, 5]
    n_three = len(batches[1])
    assert abs(n_three - n / 4) < 4 * math.sqrt(n * 0.25 * 0.75)
    for events in batches:
        assert_physical(events, 3.0, n)
    assert bool((batches[1].process_id == 5).all())
    member = model.sample(200, seed=13, weight_sample=2)
    assert sum(len(b) for b in member) == 200
    with pytest.raises(GeneratorError, match="weight_sample"):
        model.sample(10, weight_sample=3)
    path = tmp_path / "mixed.generator"
    model.save(path)
    again = GeneratorModel.load(path).sample(300, seed=14)
    first = model.sample(300, seed=14)
    assert all(torch.equal(a.momenta, b.momenta) for a, b in zip(first, again, strict=True))


def test_bad_inputs_and_files_get_one_clear_error(bayesian_model, tmp_path) -> None:
    with pytest.raises(GeneratorError, match=">= 1"):
        bayesian_model.sample(0)
    events = toy_events(100, seed=15)
    events.weights = torch.linspace(1, 2, 100, dtype=F64)
    with pytest.raises(GeneratorError, match="unweighted"):
        train_generator(events, GeneratorConfig(steps=1), cross_section_pb=1.0)
    with pytest.raises(GeneratorError, match="cross_section_pb"):
        train_generator(toy_events(10, 1), GeneratorConfig(steps=1), cross_section_pb=0.0)
    with pytest.raises(GeneratorError, match="does not exist"):
        GeneratorModel.load(tmp_path / "missing.generator")
    garbage = tmp_path / "garbage.generator"
    garbage.write_bytes(b"not a model")
    with pytest.raises(GeneratorError, match="cannot read"):
        GeneratorModel.load(garbage)
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(GeneratorError, match="not an evgen generator"):
        GeneratorModel.load(other)
    old = tmp_path / "old.generator"
    torch.save({"format": MODEL_FORMAT, "version": 0}, old)
    with pytest.raises(GeneratorError, match="version 0"):
        GeneratorModel.load(old)
    with pytest.raises(OutputError):
        bayesian_model.save(tmp_path / "no" / "such" / "folder.generator")
    assert not (tmp_path / "no").exists()
    with pytest.raises(GeneratorError, match="network"):
        GeneratorConfig(network="gan")  # type: ignore[arg-type]
