r"""MadNIS: multi-channel neural importance sampling behind evgen's Integrator interface.

T. Heimel, R. Winterhalder, A. Butter, J. Isaacson, C. Krause, F. Maltoni, O. Mattelaer,
T. Plehn, "MadNIS -- Neural multi-channel importance sampling", arXiv:2212.06172;
T. Heimel, N. Huetsch, F. Maltoni, O. Mattelaer, T. Plehn, R. Winterhalder,
"The MadNIS Reloaded", arXiv:2311.01548.

The algebra. Channel c samples r in [0, 1]^d through a learned flow G_c on top of a
fixed VEGAS grid V_c (the warm start; identity without one):

.. math::
    z \sim U[0,1]^d,\quad y = G_c(z),\quad r = V_c(y),\qquad
    q_c(r) = \frac{q^{\rm flow}_c(y)}{J^{\rm vegas}_c(y)},

and the integral is estimated with stratified sampling over channels,

.. math::
    \hat I = \sum_c \frac{1}{n_c} \sum_{i=1}^{n_c}
        \frac{\alpha_c(x_i)\, w_c(r_i)}{q_c(r_i)}, \qquad
    \hat\sigma^2 = \sum_c \frac{s_c^2}{n_c},

with w_c = f J_c from the integrand and alpha_c the learned channel weights
(:mod:`.channels`); sum_c alpha_c = 1 makes it unbiased whatever the networks are. The
flows start at the identity, so an untrained MadNIS samples exactly like its VEGAS grids
(uniformly without them), and alpha starts at the prior.

Training (``train``): every round
1. allocates n points over the active channels, n_c proportional to the standard deviation
   sigma_c of channel c's weights in the previous round (Neyman), with a floor of
   ``min_channel_fraction * n / C_active`` (>= 2);
2. draws them from the current flows, evaluates the integrand once per channel, and
   records the round's estimate (unbiased: the networks and counts are fixed before
   sampling);
3. stores the points in a replay buffer and takes one optimisation step on them (the ML
   core's :class:`~evgen.ml.Trainer`: Adam, constant learning rate, gradient clipping),
   then ``buffered_steps`` steps on minibatches from the buffer, each point reweighted
   by q_theta / q_sample (MadNIS Reloaded's buffered training). Loss: stratified variance
   (default) or KL divergence (:mod:`.losses`);
4. after ``drop_after`` rounds, drops channels whose share of sum_c |I_c| is below
   ``drop_threshold`` (measured on that round's points): they get no more points and
   alpha_c = 0, the softmax giving their weight to the remaining channels, so the
   estimate stays unbiased (their region is then sampled by the other channels, whose
   flows cover the whole cube); a dropped channel is never revived.

``integrate`` uses fresh points, frozen networks and a frozen allocation.

Two training aids (:class:`MadNISConfig`): a cosine learning-rate decay over each
``train`` call's planned steps (default), which lets the flows settle instead of jittering
into rare large weights; and annealing (``anneal_rounds``), which trains the first rounds
on the tempered target |g|^beta, beta rising geometrically from ``anneal_start`` to 1: a
nearly flat target that every peak of a multi-modal integrand contributes to, sharpened
slowly enough for the flows to keep them all (the 16-dimensional camel, whose two peaks
occupy 1e-12 of the cube: plain training from any start locks onto the first one it
finds). Both change only the loss, never an estimate.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn

from evgen.integrators.base import Estimate, Integrator, combine_estimates, seeded_generator
from evgen.integrators.madnis.buffer import Batch, ReplayBuffer
from evgen.integrators.madnis.channels import (
    ChannelEvaluation,
    ChannelWeightNetwork,
    channel_weights,
    evaluate_channel,
    evaluation_from_values,
)
from evgen.integrators.madnis.config import MadNISConfig
from evgen.integrators.madnis.losses import kl_divergence, stratified_variance
from evgen.integrators.vegas import Vegas
from evgen.ml.errors import CheckpointError
from evgen.ml.flows import UnitHypercubeFlow
from evgen.ml.training import Trainer, TrainingConfig, load_checkpoint, save_checkpoint

__all__ = ["MadNIS"]

log = logging.getLogger(__name__)

LossName = Literal["variance", "kl"]
_LOSSES = {"variance": stratified_variance, "kl": kl_divergence}


class MadNIS(Integrator):
    """Multi-channel neural importance sampling with VEGAS warm start.

    Args:
        n_dim: dimension d of the unit hypercube of every channel.
        n_channels: number of channels C.
        seed: seeds the sampling generator and the network initialisation (None: random).
        device: where networks live and points are drawn.
        vegas: optional pre-trained VEGAS grid per channel (None entries: no grid); copied,
            so training the originals later does not change this integrator.
        loss: ``"variance"`` (stratified variance, default) or ``"kl"``.
        config: the remaining settings (:class:`MadNISConfig`).

    Integrands: for C = 1 any callable ``f(r) -> (n,)``; for C > 1 an object with
    ``n_channels`` and ``evaluate(r, channel)`` returning ``.weights`` (f J_c, no
    channel weight), ``.channel_prior`` (n, C) and ``.momenta`` or ``.features``
    (:func:`~evgen.integrators.madnis.channels.evaluate_channel`).

    Attributes:
        history: the Estimate of every training round so far.
        sigma: (C,) standard deviation of each channel's weights (the allocation).
        active: (C,) bool, channels not dropped.

    Example:
        >>> m = MadNIS(2, seed=1)
        >>> est = m.train(f, n_iter=20, n_per_iter=2000)
        >>> r, jac = m.sample(10_000)            # mean(f(r) * jac) estimates the integral
        >>> m.integrate(f, n_iter=5, n_per_iter=10_000)
    """

    def __init__(
        self,
        n_dim: int,
        n_channels: int = 1,
        *,
        seed: int | None = None,
        device: str | torch.device = "cpu",
        vegas: Sequence[Vegas | None] | None = None,
        loss: LossName = "variance",
        config: MadNISConfig | None = None,
    ) -> None:
        if n_dim < 1:
            raise ValueError(f"MadNIS: n_dim must be >= 1, got {n_dim}")
        if n_channels < 1:
            raise ValueError(f"MadNIS: n_channels must be >= 1, got {n_channels}")
        if loss not in _LOSSES:
            raise ValueError(f"MadNIS: loss must be one of {sorted(_LOSSES)}, got {loss!r}")
        self.n_dim = int(n_dim)
        self.n_channels = int(n_channels)
        self.loss = loss
        self.config = config if config is not None else MadNISConfig()
        self.device = torch.device(device)
        # One generator draws every point; with a seed, its stream is that of
        # manual_seed(seed). Networks are initialised from the seed (or a random one).
        self.generator = seeded_generator(seed, self.device)
        self._init_seed = (
            int(seed)
            if seed is not None
            else int(torch.randint(0, 2**62, (1,), generator=self.generator, device=self.device))
        )
        cfg = self.config
        self.conditional = cfg.flow_mode == "conditional" or (
            cfg.flow_mode == "auto" and self.n_channels > cfg.max_channel_flows
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._init_seed)
            n_flows = 1 if self.conditional else self.n_channels
            context = self.n_channels if self.conditional else 0
            self.flows = nn.ModuleList(
                UnitHypercubeFlow(
                    self.n_dim,
                    context_dim=context,
                    n_layers=cfg.flow_layers,
                    bins=cfg.flow_bins,
                    hidden=cfg.flow_hidden,
                    hidden_layers=cfg.flow_hidden_layers,
                    dtype=torch.float64,
                )
                for _ in range(n_flows)
            ).to(self.device)
        self.channel_net: ChannelWeightNetwork | None = None
        self.vegas: list[Vegas | None] = [None] * self.n_channels
        if vegas is not None:
            if len(vegas) != self.n_channels:
                raise ValueError(
                    f"MadNIS: vegas must hold one grid (or None) per channel, "
                    f"{self.n_channels}, got {len(vegas)}"
                )
            for c, v in enumerate(vegas):
                if v is not None:
                    if v.n_dim != self.n_dim:
                        raise ValueError(
                            f"MadNIS: vegas[{c}] has n_dim = {v.n_dim}, expected {self.n_dim}"
                        )
                    self.vegas[c] = self._copy_vegas(v.state_dict())
        self.sigma = torch.ones(self.n_channels, dtype=torch.float64)
        self.active = torch.ones(self.n_channels, dtype=torch.bool)
        self.rounds = 0
        self.history: list[Estimate] = []
        self.buffer = ReplayBuffer(cfg.buffer_rounds)
        self._trainer: Trainer | None = None
        self._planned_steps = 0  #: optimisation steps the current train call plans
        self._steps_taken = 0  #: ... and has taken

    # --- building blocks -----------------------------------------------------------
    def _copy_vegas(self, state: dict[str, Any]) -> Vegas:
        v = Vegas(self.n_dim, n_bins=int(state["n_bins"]), seed=0, device=self.device)
        v.load_state_dict(state)
        return v

    def _build_channel_net(self, n_features: int) -> None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._init_seed + 1)
            self.channel_net = ChannelWeightNetwork(
                n_features,
                self.n_channels,
                hidden=self.config.cw_hidden,
                hidden_layers=self.config.cw_hidden_layers,
            ).to(self.device)
        self._trainer = None  # rebuilt with the new parameters at the next step

    def _context(self, channel: Tensor) -> Tensor | None:
        if not self.conditional:
            return None
        return nn.functional.one_hot(channel, self.n_channels).to(torch.float64)

    def _flow(self, c: int) -> UnitHypercubeFlow:
        """The flow that samples channel c."""
        return cast(UnitHypercubeFlow, self.flows[0 if self.conditional else c])

    def _flow_sample(self, c: int, n: int) -> tuple[Tensor, Tensor]:
        """n points of channel c in flow space: (y (n, d), log q_flow(y) (n,))."""
        flow = self._flow(c)
        ch = torch.full((n,), c, dtype=torch.int64, device=self.device)
        return flow.sample(n, context=self._context(ch), generator=self.generator)

    def _flow_log_prob(self, y: Tensor, channel: Tensor) -> Tensor:
        """log q_flow(y) (n,) of points y (n, d) of channels ``channel`` (n,)."""
        if self.conditional:
            return self._flow(0).log_prob(y, self._context(channel))
        out = torch.zeros(y.shape[0], dtype=torch.float64, device=y.device)
        for c in torch.unique(channel).tolist():
            m = channel == c
            out[m] = self._flow(c).log_prob(y[m])
        return out

    def _to_r(self, c: int, y: Tensor) -> tuple[Tensor, Tensor]:
        """Flow space -> integrand space through channel c's grid: (r, log J_vegas(y))."""
        v = self.vegas[c]
        if v is None:
            return y, torch.zeros(y.shape[0], dtype=torch.float64, device=y.device)
        r, jac = v.map(y)
        return r, torch.log(jac)

    def _alpha(self, features: Tensor | None, log_prior: Tensor) -> Tensor:
        """Channel weights (n, C) from stored features and log prior (differentiable)."""
        if self.n_channels == 1:
            return torch.ones_like(log_prior)
        if self.channel_net is None or features is None:
            return channel_weights(log_prior, self.active, None)
        return self.channel_net(features, log_prior, self.active)

    def _evaluate(self, f: Callable[..., Any], r: Tensor, c: int) -> ChannelEvaluation:
        ev = evaluate_channel(f, r, c, self.n_channels)
        if (
            self.n_channels > 1
            and self.config.learn_channel_weights
            and ev.features is not None
            and self.channel_net is None
        ):
            self._build_channel_net(ev.features.shape[1])
        return ev

    # --- allocation ----------------------------------------------------------------
    def allocation(self, n: int) -> Tensor:
        """Points per channel (C,) int64 summing to n: Neyman with a floor, 0 if dropped."""
        n_active = int(self.active.sum())
        if n < 2 * n_active:
            raise ValueError(
                f"MadNIS: need at least 2 points per active channel ({2 * n_active}), got {n}"
            )
        floor = max(2, int(self.config.min_channel_fraction * n / n_active))
        floor = min(floor, n // n_active)
        rest = n - floor * n_active
        weight = torch.where(self.active, self.sigma, 0.0)
        if not float(weight.sum()) > 0:
            weight = self.active.to(torch.float64)
        share = rest * weight / weight.sum()
        counts = share.floor()
        left = rest - int(counts.sum())
        if left > 0:
            counts[torch.topk(share - counts, left).indices] += 1
        return counts.long() + floor * self.active.long()

    # --- one pass of fresh points --------------------------------------------------
    @torch.no_grad()
    def _pass(
        self, f: Callable[..., Any], n: int
    ) -> tuple[Estimate, Batch, dict[int, tuple[float, float]]]:
        """Draw n points over the channels, evaluate once: (estimate, batch, per-channel
        (std of the weights, mean |weight|))."""
        counts = self.allocation(n)
        parts, stats = [], {}
        value, variance = 0.0, 0.0
        for c in range(self.n_channels):
            nc = int(counts[c])
            if nc == 0:
                continue
            y, log_q = self._flow_sample(c, nc)
            r, log_jv = self._to_r(c, y)
            ev = self._evaluate(f, r, c)
            g0 = ev.weights * torch.exp(log_jv)  # f J_c on the flow's cube
            alpha = self._alpha(ev.features, ev.log_prior)[:, c]
            w = alpha * g0 * torch.exp(-log_q)
            mean, var = float(w.mean()), float(w.var())
            value += mean
            variance += var / nc
            stats[c] = (math.sqrt(var), float(w.abs().mean()))
            ch = torch.full((nc,), c, dtype=torch.int64, device=self.device)
            parts.append(Batch(y, ch, g0, ev.log_prior, ev.features, log_q))
        return Estimate(value, math.sqrt(variance), n), Batch.cat(parts), stats

    # --- training ------------------------------------------------------------------
    def _step(self, batch: Batch) -> float:
        """One optimisation step on ``batch`` (the ML core's :class:`Trainer`: Adam,
        constant learning rate, gradient clipping); returns the loss, nan if skipped
        (fewer than 2 points of active channels, or an integrand that vanished on all).

        Raises:
            TrainingError: non-finite loss or gradient (the parameters are unchanged).
        """
        keep = self.active.to(self.device)[batch.channel]
        if not bool(keep.all()):
            batch = batch.select(keep)
        if len(batch) < 2 or not float(batch.weights.abs().sum()) > 0:
            return math.nan
        if self._trainer is None:
            modules = nn.ModuleDict({"flows": self.flows})
            if self.channel_net is not None:
                modules["channel_net"] = self.channel_net
            cfg = self.config
            config = TrainingConfig(
                steps=max(1, self._planned_steps),
                learning_rate=cfg.learning_rate,
                max_grad_norm=cfg.grad_clip,
                schedule=cfg.lr_schedule,
                final_lr_fraction=cfg.final_lr_fraction,
            )
            self._trainer = Trainer(modules, config)
            # a trainer rebuilt mid-way (a channel-weight network appearing) resumes the
            # schedule where the previous one was
            for _ in range(self._steps_taken):
                self._trainer.scheduler.step()

        beta = self.temperature()

        def loss_fn() -> Tensor:
            log_q = self._flow_log_prob(batch.y, batch.channel)
            alpha = self._alpha(batch.features, batch.log_prior)
            g = alpha.gather(1, batch.channel[:, None]).squeeze(1) * batch.weights
            if beta < 1.0:  # annealing: the tempered target |g|^beta, sign kept
                g = torch.sign(g) * g.abs().pow(beta)
            return _LOSSES[self.loss](g, log_q, batch.log_q_sample, batch.channel)

        self._steps_taken += 1
        return self._trainer.step(loss_fn)[0]

    def temperature(self) -> float:
        """beta of the training target |g|^beta after ``rounds`` rounds (1: no annealing):
        anneal_start^(1 - rounds / anneal_rounds) during the first anneal_rounds rounds."""
        cfg = self.config
        if self.rounds >= cfg.anneal_rounds:
            return 1.0
        return float(cfg.anneal_start ** (1.0 - self.rounds / cfg.anneal_rounds))

    def _update_allocation(self, stats: dict[int, tuple[float, float]]) -> None:
        for c, (sd, _) in stats.items():
            self.sigma[c] = sd
        cfg = self.config
        if cfg.drop_threshold > 0 and self.rounds >= cfg.drop_after and len(stats) > 1:
            total = sum(a for _, a in stats.values())
            if total > 0:
                best = max(stats, key=lambda c: stats[c][1])
                for c, (_, a) in stats.items():
                    if c != best and a / total < cfg.drop_threshold:
                        self.active[c] = False
                        log.info("MadNIS: channel %d dropped (share %.2e)", c, a / total)

    def train(
        self,
        f: Callable[..., Any],
        n_iter: int,
        n_per_iter: int,
        *,
        progress: Callable[[int, Estimate], None] | None = None,
    ) -> Estimate:
        """Train online for ``n_iter`` rounds of ``n_per_iter`` fresh points each.

        Returns the inverse-variance average (with chi^2/dof) of the rounds' estimates
        after the first ``config.discard`` (default ``n_iter // 2``) warm-up rounds; each
        round's estimate uses the networks as they were before its updates, so is
        unbiased. ``progress(i, estimate)`` is called after every round.
        """
        if n_iter < 1 or n_per_iter < 2:
            raise ValueError(
                f"MadNIS.train: need n_iter >= 1 and n_per_iter >= 2, got {n_iter}, {n_per_iter}"
            )
        skip = n_iter // 2 if self.config.discard is None else self.config.discard
        if not 0 <= skip < n_iter:
            raise ValueError(f"MadNIS.train: discard must be in [0, n_iter), got {skip}")
        batch_size = self.config.batch_size or n_per_iter
        # each train call runs its own learning-rate schedule over its planned steps
        self._planned_steps = n_iter * (1 + self.config.buffered_steps)
        self._steps_taken = 0
        self._trainer = None
        estimates = []
        for i in range(n_iter):
            est, batch, stats = self._pass(f, n_per_iter)
            self.rounds += 1
            estimates.append(est)
            self._update_allocation(stats)
            self.buffer.add(batch)
            loss = self._step(batch)
            for _ in range(self.config.buffered_steps):
                self._step(self.buffer.sample(batch_size, self.generator))
            log.debug(
                "MadNIS round %d: %.6g +- %.3g, loss %.4g", self.rounds, est.value, est.error, loss
            )
            if progress is not None:
                progress(i, est)
        self.history.extend(estimates)
        return combine_estimates(estimates[skip:])

    # --- sampling and integration --------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        """n i.i.d. points (C = 1): (r (n, d), jac (n,) = 1 / q(r)); mean(f(r) jac) -> I."""
        if self.n_channels != 1:
            raise ValueError(
                f"MadNIS.sample: {self.n_channels} channels; use sample_channels(n) and "
                "event_weights(...)"
            )
        y, log_q = self._flow_sample(0, n)
        r, log_jv = self._to_r(0, y)
        return r, torch.exp(log_jv - log_q)

    @torch.no_grad()
    def sample_channels(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """n points stratified over the channels by :meth:`allocation`.

        Returns r (n, d), channel (n,) int64 and jac (n,) = (n / n_c) / q_c(r), so that
        ``mean(alpha_c(x) w_c(r) jac)`` over all n points (:meth:`event_weights`) is an
        unbiased estimate of the integral.
        """
        counts = self.allocation(n)
        rs, chs, jacs = [], [], []
        for c in range(self.n_channels):
            nc = int(counts[c])
            if nc == 0:
                continue
            y, log_q = self._flow_sample(c, nc)
            r, log_jv = self._to_r(c, y)
            rs.append(r)
            chs.append(torch.full((nc,), c, dtype=torch.int64, device=self.device))
            jacs.append(torch.exp(log_jv - log_q) * (n / nc))
        return torch.cat(rs), torch.cat(chs), torch.cat(jacs)

    @torch.no_grad()
    def sample_channel(self, channel: int, n: int) -> tuple[Tensor, Tensor]:
        """n i.i.d. points of one channel: (r (n, d), jac (n,) = 1 / q_c(r)), so that
        ``mean(alpha_c(x) w_c(r) jac)`` estimates channel c's share of the integral
        (event generation per channel; :meth:`values_channel_weights` gives alpha)."""
        if not 0 <= channel < self.n_channels:
            raise ValueError(f"MadNIS.sample_channel: channel must be in [0, {self.n_channels})")
        y, log_q = self._flow_sample(channel, n)
        r, log_jv = self._to_r(channel, y)
        return r, torch.exp(log_jv - log_q)

    @torch.no_grad()
    def values_channel_weights(self, f: Callable[..., Any], values: Any) -> Tensor:
        """alpha (n, C) from integrand values already computed, ``f.evaluate(r, c)``
        (no second evaluation); all ones for a single channel."""
        if self.n_channels == 1:
            n = torch.as_tensor(values.weights).reshape(-1).shape[0]
            return torch.ones(n, 1, dtype=torch.float64, device=self.device)
        ev = evaluation_from_values(f, values, self.n_channels, self.device)
        if (
            self.config.learn_channel_weights
            and ev.features is not None
            and self.channel_net is None
        ):
            self._build_channel_net(ev.features.shape[1])
        return self._alpha(ev.features, ev.log_prior)

    @torch.no_grad()
    def log_density(self, r: Tensor, channel: int = 0) -> Tensor:
        """log q_c(r) (n,) of channel c's sampler at r (n, d): flow over VEGAS grid."""
        r = r.to(dtype=torch.float64, device=self.device)
        v = self.vegas[channel]
        if v is None:
            y, log_jv = r, torch.zeros(r.shape[0], dtype=torch.float64, device=self.device)
        else:
            y, jac = v.map_inverse(r)
            log_jv = torch.log(jac)
        ch = torch.full((r.shape[0],), channel, dtype=torch.int64, device=self.device)
        return self._flow_log_prob(y, ch) - log_jv

    @torch.no_grad()
    def channel_weights(self, f: Callable[..., Any], r: Tensor, channel: int) -> Tensor:
        """alpha (n, C) at the physical points of r (n, d) mapped by ``channel``."""
        ev = self._evaluate(f, r.to(dtype=torch.float64, device=self.device), channel)
        return self._alpha(ev.features, ev.log_prior)

    @torch.no_grad()
    def event_weights(
        self, f: Callable[..., Any], r: Tensor, channel: Tensor, jac: Tensor
    ) -> Tensor:
        """alpha_c(x) w_c(r) jac (n,) for points from :meth:`sample_channels`."""
        out = torch.zeros(r.shape[0], dtype=torch.float64, device=self.device)
        for c in torch.unique(channel).tolist():
            m = channel == c
            ev = self._evaluate(f, r[m], c)
            out[m] = self._alpha(ev.features, ev.log_prior)[:, c] * ev.weights * jac[m]
        return out

    def integrate(self, f: Callable[..., Any], n_iter: int, n_per_iter: int) -> Estimate:
        """Estimate with fresh points, frozen networks and frozen channel allocation.

        Each iteration is a stratified estimate (error^2 = sum_c s_c^2 / n_c); the
        iterations are i.i.d. and combined by their plain mean (no bias from the
        correlation of values and errors), chi^2/dof measuring their consistency.
        """
        if n_iter < 1 or n_per_iter < 2:
            raise ValueError(
                f"MadNIS.integrate: need n_iter >= 1 and n_per_iter >= 2, got {n_iter}, "
                f"{n_per_iter}"
            )
        est = [self._pass(f, n_per_iter)[0] for _ in range(n_iter)]
        if n_iter == 1:
            return est[0]
        mean = sum(e.value for e in est) / n_iter
        error = math.sqrt(sum(e.error**2 for e in est)) / n_iter
        chi2 = sum((e.value - mean) ** 2 / e.error**2 for e in est if e.error > 0)
        return Estimate(mean, error, sum(e.n_eval for e in est), chi2 / (n_iter - 1))

    def manual_seed(self, seed: int) -> None:
        """Reseed the sampling generator (e.g. per shard after loading a trained state)."""
        self.generator.manual_seed(int(seed))

    # --- persistence ---------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Networks, channel allocation and VEGAS grids (tensors on the CPU).

        Not included: the replay buffer, the optimiser's moments (training resumed after
        a load starts Adam afresh) and the random generator's state.
        """

        def cpu(sd: dict[str, Tensor]) -> dict[str, Tensor]:
            return {k: t.detach().cpu().clone() for k, t in sd.items()}

        net = self.channel_net
        return {
            "version": 1,
            "n_dim": self.n_dim,
            "n_channels": self.n_channels,
            "loss": self.loss,
            "config": dataclasses.asdict(self.config),
            "conditional": self.conditional,
            "flows": cpu(self.flows.state_dict()),
            "channel_net": None
            if net is None
            else {"n_features": net.n_features, "state": cpu(net.state_dict())},
            "sigma": self.sigma.clone(),
            "active": self.active.clone(),
            "rounds": self.rounds,
            "vegas": [None if v is None else v.state_dict() for v in self.vegas],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output into an integrator built with the same
        n_dim, n_channels and flow settings; clears the buffer and the optimiser."""
        for key, mine in (
            ("n_dim", self.n_dim),
            ("n_channels", self.n_channels),
            ("conditional", self.conditional),
        ):
            if state[key] != mine:
                raise ValueError(
                    f"MadNIS.load_state_dict: state has {key} = {state[key]}, "
                    f"this integrator {mine}"
                )
        try:
            self.flows.load_state_dict(state["flows"])
        except RuntimeError as err:
            raise ValueError(
                "MadNIS.load_state_dict: the flows do not fit (build the integrator with the "
                f"same MadNISConfig flow settings): {err}"
            ) from None
        net = state["channel_net"]
        if net is None:
            self.channel_net = None
        else:
            if self.channel_net is None or self.channel_net.n_features != net["n_features"]:
                self.channel_net = None
                self._build_channel_net(int(net["n_features"]))
            assert self.channel_net is not None
            self.channel_net.load_state_dict(net["state"])
        self.vegas = [None if s is None else self._copy_vegas(s) for s in state["vegas"]]
        self.sigma = torch.as_tensor(state["sigma"], dtype=torch.float64).clone()
        self.active = torch.as_tensor(state["active"], dtype=torch.bool).clone()
        self.rounds = int(state["rounds"])
        self.buffer.clear()
        self._trainer = None

    def save(self, path: str | Path) -> None:
        """Write the trained state to ``path`` with the ML core's :func:`save_checkpoint`
        (atomic; the flows as the module, everything else of :meth:`state_dict` as extra
        data; no optimiser state)."""
        extra = self.state_dict()
        del extra["flows"]
        save_checkpoint(path, self.flows, extra=extra)

    def load(self, path: str | Path) -> None:
        """Restore a :meth:`save` file into this integrator, built with the same n_dim,
        n_channels and flow settings (:func:`load_checkpoint`; raises CheckpointError)."""
        with torch.no_grad():
            backup = {k: t.clone() for k, t in self.flows.state_dict().items()}
        extra = load_checkpoint(path, self.flows)
        try:
            self.load_state_dict({**extra, "flows": self.flows.state_dict()})
        except (KeyError, ValueError) as err:
            self.flows.load_state_dict(backup)
            raise CheckpointError(f"checkpoint {path} does not fit this MadNIS: {err}") from err

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, *, seed: int | None = None, device: str | torch.device = "cpu"
    ) -> MadNIS:
        """Rebuild an integrator saved by :meth:`save` (settings read from the file)."""
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            extra = payload["extra"]
            config = MadNISConfig(**extra["config"])
            n_dim, n_channels, loss = extra["n_dim"], extra["n_channels"], extra["loss"]
        except Exception as err:  # unreadable file, not a MadNIS checkpoint
            raise CheckpointError(f"cannot read a MadNIS checkpoint from {path}: {err}") from err
        m = cls(n_dim, n_channels, seed=seed, device=device, loss=loss, config=config)
        m.load(path)
        return m
