"""Event generation for one integration channel: weighted events from a frozen sampler,
their cross-section estimate, and hit-or-miss unweighting.

A run integrates every (phase-space group, channel) pair on its own, MadGraph's way; here
each pair (a :class:`ChannelUnit`) draws weighted events ``w = alpha_c f J_c J_vegas`` from
its frozen grid, estimates its cross section sigma_c from them (unbiased) and unweights
them against its own maximum weight. The unweighted events of channel c follow
alpha_c f / sigma_c, so a sample with n_c ~ Multinomial(N, sigma_c / sigma) events from each
channel (:func:`channel_event_counts`), shuffled, is N independent events distributed as
f / sigma: the mixture sum_c (sigma_c / sigma) (alpha_c f / sigma_c) = f / sigma. Cross
sections in pb.

Decay chains: :func:`build_events` writes each decay-chain resonance as MadGraph does, after
the outgoing particles (:class:`~evgen.events.Events`): status 2, its momentum the sum of
its decay products', its invariant mass in the mass column, mothers 1 2 when made in the
hard process and the enclosing resonance when made in a decay (``t > b w+, w+ > e+ ve``);
each decay product points to its resonance. A coloured resonance carries the colour lines
that its decay products take out of it (the top the b's colour, the t~ the b~'s
anticolour): the tags among its products that do not close inside the decay.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import Tensor

from evgen.errors import EvgenError
from evgen.events import Events
from evgen.integrand import IntegrandValues
from evgen.integrators import Estimate, Vegas
from evgen.kinematics import mass2
from evgen.setup import PhaseSpaceGroup, decay_resonances
from evgen.unweight import UnweightingResult, find_max_weight, unweight
from processes.base import Process, Propagator

__all__ = [
    "ChannelUnit",
    "Sampler",
    "WeightedSample",
    "build_events",
    "channel_event_counts",
    "generate_channel",
]


@dataclass(frozen=True)
class ChannelUnit:
    """One integration unit: channel ``channel`` of phase-space group ``group``."""

    group: int
    channel: int


@dataclass
class WeightedSample:
    """Weighted events of one channel kept for unweighting (non-zero weights only), and
    running sums over every evaluated point for the cross-section estimate."""

    momenta: list[Tensor] = field(default_factory=list)
    sub_weights: list[Tensor] = field(default_factory=list)
    mu_f: list[Tensor] = field(default_factory=list)
    alpha_s: list[Tensor] = field(default_factory=list)
    n_eval: int = 0
    sum_w: Tensor | None = None  # per subprocess
    sum_w2: Tensor | None = None  # per subprocess
    sum_wtot2: float = 0.0

    def add(
        self,
        values: IntegrandValues,
        channel: int,
        jac: Tensor,
        channel_weight: Tensor | None = None,
    ) -> None:
        """Add points of ``channel``: weights alpha_c * sub_weights * jac (pb), alpha_c the
        prior or, if given, ``channel_weight`` (n,) (e.g. MadNIS's learned weights)."""
        if channel_weight is not None:
            factor = jac * channel_weight.to(jac)
        elif values.channel_prior.shape[1] == 1:
            factor = jac
        else:
            factor = jac * values.channel_prior[:, channel]
        sub = values.sub_weights * factor.unsqueeze(1)
        w = sub.sum(dim=1)
        self.n_eval += w.shape[0]
        s1, s2 = sub.sum(dim=0), (sub**2).sum(dim=0)
        self.sum_w = s1 if self.sum_w is None else self.sum_w + s1
        self.sum_w2 = s2 if self.sum_w2 is None else self.sum_w2 + s2
        self.sum_wtot2 += float((w**2).sum())
        keep = w != 0
        self.momenta.append(values.momenta[keep])
        self.sub_weights.append(sub[keep])
        self.mu_f.append(values.mu_f[keep])
        self.alpha_s.append(values.alpha_s[keep])

    def weights(self) -> Tensor:
        return torch.cat(self.sub_weights).sum(dim=1)

    def empty(self) -> WeightedSample:
        """A sample with no events, of the same tensor shapes."""
        return WeightedSample(
            momenta=[torch.cat(self.momenta)[:0]],
            sub_weights=[torch.cat(self.sub_weights)[:0]],
            mu_f=[torch.cat(self.mu_f)[:0]],
            alpha_s=[torch.cat(self.alpha_s)[:0]],
        )

    def estimate(self) -> tuple[float, float, list[tuple[float, float]]]:
        """Total and per-subprocess (mean, error) in pb."""
        assert self.sum_w is not None and self.sum_w2 is not None
        n = self.n_eval
        total = float(self.sum_w.sum()) / n
        var = max(self.sum_wtot2 / n - total**2, 0.0) / max(n - 1, 1)
        per = [
            (
                float(s1) / n,
                math.sqrt(max(float(s2) / n - (float(s1) / n) ** 2, 0.0) / max(n - 1, 1)),
            )
            for s1, s2 in zip(self.sum_w, self.sum_w2, strict=True)
        ]
        return total, math.sqrt(var), per


def _record_resonances(proc: Process) -> list[Propagator]:
    """A process's decay-chain resonances in the order of the event record: outermost
    first (the production's resonances before those made in their decays)."""
    return sorted(decay_resonances(proc), key=lambda r: (-len(r.legs), r.legs))


def _resonance_layout(legs: list[tuple[int, ...]], n_ext: int) -> tuple[list[int], list[int]]:
    """LHE mothers of a decay chain's record (external particles, then the resonances
    ``legs`` in that order): per particle, the 1-based position of its mother resonance, 0
    for the hard process (mothers 1 2)."""
    sets = [frozenset(s) for s in legs]

    def parent(members: frozenset[int], exclude: int | None) -> int:
        best = 0
        for j, s in enumerate(sets):
            if j != exclude and members < s and (best == 0 or len(s) < len(sets[best - 1])):
                best = j + 1
        return n_ext + best if best else 0

    ext = [parent(frozenset({k}), None) if k >= 2 else 0 for k in range(n_ext)]
    res = [parent(s, j) for j, s in enumerate(sets)]
    return ext, res


def _open_colours(colours: Tensor) -> Tensor:
    """(colour, anticolour) (n, 2) a set of particles' tags (n, m, 2) leave open: the tags
    that do not close among them (the colour of the resonance they come from)."""
    col, acol = colours[..., 0], colours[..., 1]
    closed = (col[:, :, None] == acol[:, None, :]) & (col[:, :, None] > 0)
    open_col = torch.where(~closed.any(2) & (col > 0), col, 0).amax(1)
    open_acol = torch.where(~closed.any(1) & (acol > 0), acol, 0).amax(1)
    return torch.stack([open_col, open_acol], dim=-1)


def build_events(
    group: PhaseSpaceGroup,
    sample: WeightedSample,
    channel: int,
    alpha_qed: float,
    generator: torch.Generator,
) -> Events:
    """Weighted Events with a subprocess and a colour flow drawn per event; decay-chain
    resonances after the outgoing particles (see the module docstring)."""
    p = torch.cat(sample.momenta)
    sub = torch.cat(sample.sub_weights)
    n, n_ext = p.shape[0], p.shape[1]
    dev = p.device
    resonances = _record_resonances(group.subprocesses[0])  # one structure per group
    res_legs = [r.legs for r in resonances]
    n_part = n_ext + len(resonances)
    probs = sub.abs() / sub.abs().sum(dim=1, keepdim=True)
    choice = torch.multinomial(probs, 1, generator=generator).squeeze(1)
    pdg = torch.zeros(n, n_part, dtype=torch.int64, device=dev)
    colours = torch.zeros(n, n_part, 2, dtype=torch.int64, device=dev)
    masses = torch.zeros(n, n_part, dtype=p.dtype, device=dev)
    u = torch.rand(n, generator=generator, dtype=p.dtype, device=generator.device).to(dev)
    for k, proc in enumerate(group.subprocesses):
        sel = choice == k
        if not bool(sel.any()):
            continue
        ids = [*proc.pdg_ids, *(r.pdg for r in _record_resonances(proc))]
        pdg[sel] = torch.tensor(ids, dtype=torch.int64, device=dev)
        masses[sel, :n_ext] = torch.tensor(proc.masses, dtype=p.dtype, device=dev)
        colours[sel, :n_ext] = proc.colour_flow(p[sel], u[sel]).to(dev)
    status = torch.ones(n, n_part, dtype=torch.int64, device=dev)
    status[:, :2] = -1
    mothers = torch.zeros(n, n_part, 2, dtype=torch.int64, device=dev)
    mothers[:, 2:, 0] = 1
    mothers[:, 2:, 1] = 2
    momenta = p
    if resonances:
        ext_mother, res_mother = _resonance_layout(res_legs, n_ext)
        for pos, mother in enumerate([*ext_mother, *res_mother]):
            if mother:
                mothers[:, pos] = mother
        res_p = torch.stack([p[:, list(legs)].sum(dim=1) for legs in res_legs], dim=1)
        momenta = torch.cat([p, res_p], dim=1)
        status[:, n_ext:] = 2
        masses[:, n_ext:] = torch.sqrt(mass2(res_p).clamp(min=0.0))
        for j, legs in enumerate(res_legs):
            colours[:, n_ext + j] = _open_colours(colours[:, list(legs)])
    ids = torch.tensor(group.process_ids, dtype=torch.int64, device=dev)
    return Events(
        momenta=momenta,
        pdg=pdg,
        status=status,
        mothers=mothers,
        colours=colours,
        masses=masses,
        spins=torch.full((n, n_part), 9.0, dtype=p.dtype, device=dev),
        weights=sub.sum(dim=1),
        process_id=ids[choice],
        scale=torch.cat(sample.mu_f),
        alpha_s=torch.cat(sample.alpha_s),
        alpha_qed=torch.full((n,), alpha_qed, dtype=p.dtype, device=dev),
        channel=torch.full((n,), channel, dtype=torch.int64, device=dev),
    )


def channel_event_counts(
    n_total: int, estimates: list[Estimate], generator: torch.Generator
) -> list[int]:
    """Unweighted events per channel: n ~ Multinomial(n_total, sigma_c / sigma).

    A single channel gets all ``n_total``; channels with a non-positive estimate none.
    """
    shares = torch.tensor([max(e.value, 0.0) for e in estimates], dtype=torch.float64)
    if len(estimates) == 1:
        return [n_total]
    draws = torch.multinomial(shares, n_total, replacement=True, generator=generator)
    return [int(c) for c in torch.bincount(draws, minlength=len(estimates))]


class Sampler(Protocol):
    """A frozen sampler of one channel: ``sample(n) -> (r (n, d), jac (n,) = 1 / q(r))``
    (a :class:`Vegas` grid, a learned integrator's channel)."""

    def sample(self, n: int) -> tuple[Tensor, Tensor]: ...  # noqa: D102


def generate_channel(
    group: PhaseSpaceGroup,
    unit: ChannelUnit,
    vegas: Vegas | Sampler,
    target: int,
    *,
    batch_size: int,
    max_weight_loss: float,
    alpha_qed: float,
    generator: torch.Generator,
    progress: Callable[[float, int, int], None] | None = None,
    max_batches: int = 400,
    channel_weight: Callable[[IntegrandValues], Tensor] | None = None,
) -> tuple[WeightedSample, Events, float, UnweightingResult | None]:
    """Weighted events of one channel from its frozen grid until ``target`` unweighted
    ones are drawn (at least one batch, for the cross section, even for ``target`` 0).

    ``vegas`` is any frozen sampler (:class:`Sampler`); ``channel_weight(values)`` (n,)
    replaces the prior alpha_c of the channel (a learned channel weight) when given.

    Returns the weighted sample (for the cross section), the unweighted events, the
    unweighting efficiency (expected unweighted events per evaluation,
    sum|w| / (w_max N)) and the unweighting's bookkeeping (None when nothing was drawn).
    ``progress(n_unweighted, target, n_eval)`` is called after every batch.
    """
    sample = WeightedSample()
    for _ in range(max_batches):
        r, jac = vegas.sample(batch_size)
        values = group.integrand.evaluate(r, unit.channel)
        cw = None if channel_weight is None else channel_weight(values)
        sample.add(values, unit.channel, jac, cw)
        w = sample.weights().abs()
        wmax = find_max_weight(w, max_loss=max_weight_loss) if w.numel() else 0.0
        expected = float(w.sum()) / wmax if wmax > 0 else 0.0
        if progress is not None:
            progress(min(expected, target), target, sample.n_eval)
        if target == 0:
            events = build_events(group, sample.empty(), unit.channel, alpha_qed, generator)
            return sample, events, expected / sample.n_eval, None
        if expected >= 1.05 * target + 5:
            events = build_events(group, sample, unit.channel, alpha_qed, generator)
            res = unweight(events, max_weight=wmax, generator=generator)
            if len(res.events) >= target:
                return sample, res.events[:target], expected / sample.n_eval, res
    raise EvgenError(
        f"could not generate {target} unweighted events for {group.subprocesses[0].name} "
        f"(channel {unit.channel + 1}: {group.channels[unit.channel].label}) in "
        f"{sample.n_eval} evaluations (unweighting efficiency too low); "
        "raise integrator.iterations or integrator.points_per_iteration"
    )
