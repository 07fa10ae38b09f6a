"""MadNIS (evgen.integrators.madnis): unbiased estimates, VEGAS warm start, multi-channel.

Budgets are tiny (small flows, a few thousand points) so every test runs in seconds on
a CPU; fixed seeds make them deterministic. Monte Carlo numbers are compared within
3 times their own error, deterministic ones to 1e-10.
"""

from __future__ import annotations

import dataclasses
import io
import math
from types import SimpleNamespace

import pytest
import torch

from evgen.integrators import Vegas
from evgen.integrators.madnis import MadNIS, MadNISConfig
from evgen.ml import CheckpointError

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = MadNISConfig(
    flow_layers=2,
    flow_bins=8,
    flow_hidden=16,
    flow_hidden_layers=1,
    cw_hidden=8,
    cw_hidden_layers=1,
    learning_rate=1e-2,
    buffered_steps=3,
)


def _gauss_1d(m: float, s: float) -> float:
    """int_0^1 exp(-(x - m)^2 / (2 s^2)) dx."""
    c = s * math.sqrt(2.0)
    return s * math.sqrt(math.pi / 2.0) * (math.erf((1.0 - m) / c) + math.erf(m / c))


class GaussPeak:
    """exp(-|r - mu|^2 / (2 s^2)) on [0, 1]^2, integral known in closed form."""

    def __init__(self, mu: tuple[float, float] = (0.4, 0.65), s: float = 0.05) -> None:
        self.mu, self.s = torch.tensor(mu, dtype=torch.float64), s
        self.integral = _gauss_1d(mu[0], s) * _gauss_1d(mu[1], s)

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        return torch.exp(-((r - self.mu) ** 2).sum(1) / (2 * self.s**2))


class TwoPeaks:
    """A toy multi-channel integrand: f(x) = sum_k A_k exp(-|x - m_k|^2 / (2 s_k^2)).

    Channel k < 2 maps r to x with a Breit-Wigner-like map per axis centred on peak k,
    x = m + g tan(a + r (b - a)) (g = s_k), the textbook physics mapping of a resonance;
    its Jacobian is (b - a)(g^2 + (x - m)^2) / g. Priors are the peak shapes,
    prior_k = A_k g_k(x) / sum_j A_j g_j(x). With ``useless=True`` a third channel
    (identity map) has prior ~1e-7 everywhere: MadNIS should drop it.
    """

    def __init__(
        self,
        centres=((0.25, 0.3), (0.7, 0.75)),
        widths=(0.05, 0.05),
        amps=(3.0, 1.0),
        useless: bool = False,
    ) -> None:
        self.centres = torch.tensor(centres, dtype=torch.float64)
        self.widths, self.amps = widths, amps
        self.useless = useless
        self.n_channels = 3 if useless else 2
        self.n_dim = 2
        self.integral = sum(
            a * _gauss_1d(float(m[0]), s) * _gauss_1d(float(m[1]), s)
            for a, m, s in zip(amps, self.centres, widths, strict=True)
        )

    def peaks(self, x: torch.Tensor) -> torch.Tensor:
        """(n, 2) A_k g_k(x)."""
        return torch.stack(
            [
                a * torch.exp(-((x - m) ** 2).sum(1) / (2 * s**2))
                for a, m, s in zip(self.amps, self.centres, self.widths, strict=True)
            ],
            dim=1,
        )

    def mapping(self, r: torch.Tensor, channel: int) -> tuple[torch.Tensor, torch.Tensor]:
        if channel == 2:
            return r, torch.ones(r.shape[0], dtype=torch.float64)
        m, g = self.centres[channel], self.widths[channel]
        a, b = torch.atan(-m / g), torch.atan((1 - m) / g)
        t = a + r * (b - a)
        x = (m + g * torch.tan(t)).clamp(0.0, 1.0)
        jac = ((b - a) * (g * g + (x - m) ** 2) / g).prod(dim=1)
        return x, jac

    def evaluate(self, r: torch.Tensor, channel: int = 0) -> SimpleNamespace:
        x, jac = self.mapping(r, channel)
        peaks = self.peaks(x)
        prior = peaks / peaks.sum(1, keepdim=True).clamp_min(1e-300)
        if self.useless:
            prior = torch.cat([prior * (1 - 1e-7), torch.full_like(prior[:, :1], 1e-7)], 1)
        return SimpleNamespace(weights=peaks.sum(1) * jac, channel_prior=prior, features=x)

    def __call__(self, r: torch.Tensor, channel: int = 0) -> torch.Tensor:
        v = self.evaluate(r, channel)
        return v.channel_prior[:, channel] * v.weights


def _rel_std(w: torch.Tensor) -> float:
    return float(w.std() / w.mean())


def test_single_channel_gaussian_unbiased_and_better_than_uniform():
    f = GaussPeak()
    m = MadNIS(2, seed=11, config=TINY)
    m.train(f, n_iter=20, n_per_iter=1000)
    est = m.integrate(f, n_iter=4, n_per_iter=5000)
    assert abs(est.value - f.integral) < 3 * est.error, (est, f.integral)
    r, jac = m.sample(20_000)
    trained = _rel_std(f(r) * jac)
    uniform = _rel_std(
        f(torch.rand(20_000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3)))
    )
    # uniform sampling: std/mean ~ 5.5 for this peak; the tiny trained flow gets ~0.4
    assert trained < 0.15 * uniform, (trained, uniform)


def test_vegas_warm_start_density_is_exactly_vegas():
    f = GaussPeak()
    vegas = Vegas(2, n_bins=32, seed=5)
    vegas.train(f, n_iter=4, n_per_iter=2000)
    m = MadNIS(2, seed=2, vegas=[vegas], config=TINY)  # untrained: identity flow
    r = torch.rand(500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    _, vegas_jac = vegas.map_inverse(r)
    # density of the Vegas map at r is 1 / (dr/dy); MadNIS's must equal it
    torch.testing.assert_close(m.log_density(r), -torch.log(vegas_jac), rtol=0, atol=1e-10)
    r_s, jac = m.sample(500)
    torch.testing.assert_close(jac, vegas.map_inverse(r_s)[1], rtol=1e-10, atol=0)
    # and the grid is a copy: training the original further does not move MadNIS's
    vegas.train(f, n_iter=1, n_per_iter=2000)
    assert not torch.equal(vegas.edges, m.vegas[0].edges)


def test_two_channel_toy_unbiased_alpha_normalised_allocation_and_dropping():
    f = TwoPeaks(useless=True)
    config = MadNISConfig(**{**TINY.__dict__, "drop_after": 3})
    m = MadNIS(2, 3, seed=7, config=config)
    m.train(f, n_iter=8, n_per_iter=1500)
    # the useless channel's share (~1e-7) is below the 1e-4 threshold: dropped
    assert m.active.tolist() == [True, True, False]
    est = m.integrate(f, n_iter=3, n_per_iter=3000)
    assert abs(est.value - f.integral) < 3 * est.error, (est, f.integral)
    # the trained channel-weight network is not the prior any more, yet rows sum to 1
    assert m.channel_net is not None
    assert any(float(p.detach().abs().max()) > 0 for p in m.channel_net.net[-1].parameters())
    r = torch.rand(400, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for c in range(2):
        alpha = m.channel_weights(f, r, c)
        torch.testing.assert_close(alpha.sum(1), torch.ones(400, dtype=torch.float64))
        assert bool((alpha[:, 2] == 0).all())
    # peak 0 carries 3/4 of the integral: Neyman allocation gives it more points
    counts = m.allocation(1000).tolist()
    assert counts[0] > 1.5 * counts[1] and counts[2] == 0, counts
    # sample_channels + event_weights: the mean of the event weights is unbiased too
    r, ch, jac = m.sample_channels(6000)
    w = m.event_weights(f, r, ch, jac)
    assert (ch == 0).sum() > (ch == 1).sum()
    err = math.sqrt(
        sum(float(w[ch == c].var()) * (6000 / int((ch == c).sum())) for c in (0, 1)) / 6000
    )
    assert abs(float(w.mean()) - f.integral) < 3 * err


def _bad_state(seed: int, flow_mode: str = "auto", loss: str = "variance") -> MadNIS:
    """A 2-channel MadNIS trained on the wrong integrand, channel weights scrambled."""
    wrong = TwoPeaks(centres=((0.8, 0.2), (0.15, 0.85)), widths=(0.1, 0.03), amps=(1.0, 5.0))
    vegas = Vegas(2, n_bins=16, seed=seed)
    vegas.train(lambda r: wrong.evaluate(r, 0).weights, n_iter=3, n_per_iter=1000)
    config = MadNISConfig(**{**TINY.__dict__, "flow_mode": flow_mode})
    m = MadNIS(2, 2, seed=seed, vegas=[vegas, None], config=config, loss=loss)
    m.train(wrong, n_iter=4, n_per_iter=1000)
    with torch.no_grad():
        last = m.channel_net.net[-1]
        g = torch.Generator().manual_seed(seed)
        last.weight.copy_(3.0 * torch.randn(last.weight.shape, dtype=torch.float64, generator=g))
        last.bias.copy_(torch.tensor([2.0, -2.0], dtype=torch.float64))
    return m


@pytest.mark.parametrize(
    ("flow_mode", "loss"), [("per_channel", "variance"), ("conditional", "kl")]
)
def test_integrate_with_bad_state_is_unbiased(flow_mode, loss):
    # A sampler trained for another integrand with a scrambled alpha network is
    # inefficient but must stay unbiased: sum_c alpha_c = 1 and exact densities.
    m = _bad_state(seed=0, flow_mode=flow_mode, loss=loss)
    assert m.conditional == (flow_mode == "conditional")
    f = TwoPeaks()
    est = m.integrate(f, n_iter=4, n_per_iter=3000)
    assert abs(est.value - f.integral) < 3 * est.error, (est, f.integral)


def test_state_dict_round_trip_gives_identical_samples_and_estimates(tmp_path):
    m = _bad_state(seed=6)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    other = MadNIS(2, 2, seed=123, config=TINY)  # different init, no grids
    other.load_state_dict(torch.load(buf, weights_only=True))
    f = TwoPeaks()
    m.manual_seed(99)
    other.manual_seed(99)
    a, b = m.sample_channels(800), other.sample_channels(800)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x, y)
    assert m.integrate(f, 2, 500) == other.integrate(f, 2, 500)
    # the same through a checkpoint file (the ML core's save_checkpoint/load_checkpoint)
    m.save(tmp_path / "madnis.pt")
    loaded = MadNIS.from_checkpoint(tmp_path / "madnis.pt", seed=99)
    m.manual_seed(99)
    for x, y in zip(m.sample_channels(800), loaded.sample_channels(800), strict=True):
        assert torch.equal(x, y)
    assert loaded.active.tolist() == m.active.tolist()
    assert torch.equal(loaded.vegas[0].edges, m.vegas[0].edges) and loaded.vegas[1] is None


def test_checkpoint_of_another_shape_is_refused(tmp_path):
    MadNIS(2, 2, seed=1, config=TINY).save(tmp_path / "two.pt")
    with pytest.raises(CheckpointError, match="two.pt"):
        MadNIS(3, 2, seed=1, config=TINY).load(tmp_path / "two.pt")


def test_temperature_rises_geometrically_to_one_and_config_is_checked():
    m = MadNIS(2, seed=1, config=MadNISConfig(anneal_rounds=10, anneal_start=0.01))
    betas = []
    for k in range(12):
        m.rounds = k
        betas.append(m.temperature())
    assert betas[0] == pytest.approx(0.01)
    assert betas[5] == pytest.approx(0.01**0.5)  # halfway: sqrt(anneal_start)
    assert betas[10] == betas[11] == 1.0
    assert all(a < b for a, b in zip(betas[:10], betas[1:11], strict=True))
    assert MadNIS(2, seed=1).temperature() == 1.0  # off by default
    with pytest.raises(ValueError, match="anneal_start"):
        MadNISConfig(anneal_start=0.0)
    with pytest.raises(ValueError, match="lr_schedule"):
        MadNISConfig(lr_schedule="linear")  # type: ignore[arg-type]


def test_cosine_schedule_ends_at_the_final_fraction():
    f = GaussPeak()
    cfg = dataclasses.replace(TINY, lr_schedule="cosine", final_lr_fraction=0.05)
    m = MadNIS(2, seed=3, config=cfg)
    m.train(f, n_iter=6, n_per_iter=500)
    lr = m._trainer.optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(0.05 * cfg.learning_rate, rel=1e-9)
    constant = MadNIS(2, seed=3, config=dataclasses.replace(TINY, lr_schedule="constant"))
    constant.train(f, n_iter=6, n_per_iter=500)
    assert constant._trainer.optimizer.param_groups[0]["lr"] == cfg.learning_rate


def test_annealing_finds_both_peaks_of_a_10d_camel():
    """i-flow's camel in 10-d (two Gaussians, sigma 0.07, on the diagonal): plain online
    training from the uniform start locks onto one peak (integral ~1/2); annealed
    training (|f|^beta, beta 0.01 -> 1 over the first half) keeps both."""
    from evgen.integrators import toys

    camel = toys.camel(10)
    cfg = MadNISConfig(
        flow_bins=8, flow_hidden=16, flow_hidden_layers=1, learning_rate=1e-2, buffered_steps=3
    )
    results = {}
    for anneal in (0, 20):
        m = MadNIS(10, seed=1, config=dataclasses.replace(cfg, anneal_rounds=anneal))
        m.train(camel, n_iter=40, n_per_iter=1000)
        results[anneal] = m.integrate(camel, n_iter=2, n_per_iter=5000)
    plain, annealed = results[0], results[20]
    assert abs(annealed.value - camel.exact) < 3 * annealed.error, annealed
    assert plain.value < 0.75 * camel.exact, plain  # one peak only: the test can tell
