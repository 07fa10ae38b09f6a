"""VEGAS: adaptive importance sampling on the unit hypercube, with vegas+ stratification.

G. P. Lepage, "A new algorithm for adaptive multidimensional integration",
J. Comput. Phys. 27 (1978) 192; G. P. Lepage, "Adaptive multidimensional integration:
VEGAS enhanced", J. Comput. Phys. 439 (2021) 110386, arXiv:2009.05112.

The map. Each axis d has a grid of ``n_bins`` increments, edges 0 = x_0 < ... < x_N = 1.
A uniform y in [0, 1)^n_dim maps to x by x = x_i + (yN - i) dx_i with i = floor(yN);
the Jacobian is prod_d N dx_{i_d}. After an iteration the grid is refitted so that every
increment holds an equal share of the damped, smoothed projection of (J f)^2
(as in Lepage's ``vegas`` package):

    d_i = sum over points in increment i of (J f)^2 * (y-volume the point stands for)
    smoothing  d_i <- (d_{i-1} + 6 d_i + d_{i+1}) / 8   ((7 d_0 + d_1) / 8 at the ends)
    damping    d_i <- ((1 - d_i) / ln(1 / d_i))^alpha   (d normalised to sum 1)

with alpha = 0.5 by default (the ``vegas`` package's Integrator default; Lepage 1978
suggested 1.5 with the same formula: larger adapts faster, smaller is steadier).
Increments that saw no non-zero value shrink smoothly (never to NaN), so integrands
that vanish on part of the cube (cuts) are handled.

Stratification (vegas+, ``stratify=True``, the default). y-space is divided into
prod(n_strat) hypercubes, n_strat[d] ~ ((1 - neval_frac) n / 2)^(1/n_dim) per axis; each
hypercube gets m >= 2 points plus a share of the rest proportional to
d_h = (V_h sigma_h)^beta, sigma_h the standard deviation of J f in it (Neyman allocation
damped by beta = 0.75; the ``vegas`` package's defaults neval_frac = 0.75, beta = 0.75).
The iteration's estimate is sum_h V_h mean_h(J f) with variance
sum_h V_h^2 s_h^2 / n_h. Counts are fixed before sampling, so the estimate is unbiased.

``sample(n)`` draws i.i.d. points from the adapted map only (r = map(y), y uniform,
jac = the map's Jacobian): unbiased, and with the narrowest weight spread, which is what
unweighting needs; stratification serves the estimates of ``train``/``integrate``.

Determinism: one ``torch.Generator`` (from ``seed`` or given) drives everything; on CPU a
run is reproducible bit for bit. On CUDA the histogram sums use atomics and can differ
in the last bits.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from evgen.integrators.base import (
    Estimate,
    Integrand,
    Integrator,
    average_estimates,
    combine_estimates,
    seeded_generator,
)

__all__ = ["Vegas"]

_TINY = 1e-250  # floor of a normalised increment weight before damping (vegas: TINY)


class Vegas(Integrator):
    """Lepage's VEGAS with vegas+ adaptive stratified sampling.

    Args:
        n_dim: dimension of the unit hypercube.
        n_bins: grid increments per axis.
        alpha: grid damping (0: the grid never changes).
        seed: seed of a fresh generator on ``device``; ignored if ``generator`` is given
            (unless both are given: then the generator is reseeded with ``seed``).
        device: where the grid lives and points are drawn.
        generator: a torch.Generator on ``device`` to use instead of a fresh one.
        beta: damping of the stratified allocation (0: equal counts per hypercube).
        neval_frac: share of an iteration's points allocated adaptively.
        stratify: use vegas+ stratified sampling in train/integrate (False: classic
            VEGAS, plain importance sampling from the map).
        max_batch: most points per integrand call in train/integrate; an iteration is
            evaluated in consecutive batches of this size (default 2^16 on CPU, where
            cache-sized batches are several times faster, 2^20 on other devices).

    Attributes:
        edges: (n_dim, n_bins + 1) grid edges, float64.
        history: the Estimate of every training iteration so far.

    Example:
        >>> v = Vegas(4, seed=1)
        >>> est = v.train(f, n_iter=10, n_per_iter=20_000)
        >>> r, jac = v.sample(100_000)          # mean(f(r) * jac) estimates the integral
    """

    def __init__(
        self,
        n_dim: int,
        n_bins: int = 128,
        alpha: float = 0.5,
        seed: int | None = None,
        device: str | torch.device = "cpu",
        generator: torch.Generator | None = None,
        *,
        beta: float = 0.75,
        neval_frac: float = 0.75,
        stratify: bool = True,
        max_batch: int | None = None,
    ) -> None:
        if n_dim < 1:
            raise ValueError(f"Vegas: n_dim must be >= 1, got {n_dim}")
        if n_bins < 1:
            raise ValueError(f"Vegas: n_bins must be >= 1, got {n_bins}")
        if alpha < 0 or beta < 0:
            raise ValueError(f"Vegas: alpha and beta must be >= 0, got {alpha}, {beta}")
        if not 0.0 <= neval_frac < 1.0:
            raise ValueError(f"Vegas: neval_frac must be in [0, 1), got {neval_frac}")
        self.n_dim = int(n_dim)
        self.n_bins = int(n_bins)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.neval_frac = float(neval_frac)
        self.stratify = bool(stratify)
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"Vegas: max_batch must be >= 1, got {max_batch}")
        self.device = torch.device(device) if generator is None else generator.device
        self.generator = seeded_generator(seed, self.device, generator)
        if max_batch is None:
            max_batch = 2**16 if self.device.type == "cpu" else 2**20
        self.max_batch = int(max_batch)
        self.edges = (
            torch.linspace(0.0, 1.0, self.n_bins + 1, dtype=torch.float64, device=self.device)
            .expand(self.n_dim, -1)
            .contiguous()
        )
        self._n_strat: Tensor | None = None  # (n_dim,) int64, strata per axis
        self._strat_weight: Tensor | None = None  # (n_hcubes,) d_h of the last iteration
        self.history: list[Estimate] = []

    # --- the map -------------------------------------------------------------------
    def map(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """y (n, n_dim) in [0, 1) -> (x (n, n_dim), jac (n,)) through the grid."""
        y = y.to(dtype=torch.float64, device=self.device)
        scaled = y * self.n_bins
        idx = scaled.long().clamp_(0, self.n_bins - 1)  # floor, y >= 0
        frac = scaled - idx
        w, lo = self._lookup(idx)
        return lo + frac * w, (self.n_bins * w).prod(dim=1)

    def _lookup(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """(width, lower edge) of increment idx (n, n_dim) on each axis, via index_select."""
        flat = (idx + torch.arange(self.n_dim, device=self.device) * self.n_bins).reshape(-1)
        widths = self.edges.diff(dim=1).reshape(-1)
        lows = self.edges[:, :-1].reshape(-1)
        shape = idx.shape
        return (
            widths.index_select(0, flat).reshape(shape),
            lows.index_select(0, flat).reshape(shape),
        )

    def map_inverse(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (n, n_dim) in [0, 1] -> (y (n, n_dim), jac (n,)); jac is dx/dy as in ``map``."""
        x = x.to(dtype=torch.float64, device=self.device)
        idx = torch.searchsorted(self.edges, x.T.contiguous(), right=True).T - 1
        idx = idx.clamp(0, self.n_bins - 1)
        w, lo = self._lookup(idx)
        frac = torch.where(w > 0, (x - lo) / torch.where(w > 0, w, 1.0), 0.0)
        y = (idx + frac.clamp(0.0, 1.0)) / self.n_bins
        return y, (self.n_bins * w).prod(dim=1)

    # --- sampling ------------------------------------------------------------------
    def _rand(self, n: int) -> Tensor:
        return torch.rand(
            n, self.n_dim, dtype=torch.float64, device=self.device, generator=self.generator
        )

    def sample(self, n: int) -> tuple[Tensor, Tensor]:
        """n i.i.d. points from the adapted map: (r (n, n_dim), jac (n,))."""
        return self.map(self._rand(n))

    def manual_seed(self, seed: int) -> None:
        """Reseed the generator (e.g. per shard after loading a trained grid)."""
        self.generator.manual_seed(int(seed))

    # --- stratification ------------------------------------------------------------
    def _strata(self, n: int) -> Tensor:
        """Strata per axis for n points per iteration (the ``vegas`` package's rule)."""
        ones = torch.ones(self.n_dim, dtype=torch.int64)
        target = (1.0 - self.neval_frac) * n / 2.0
        if not self.stratify or target < 2.0:
            return ones
        ns = max(1, int(target ** (1.0 / self.n_dim) + 1e-9))
        n_plus = int((math.log(target) - self.n_dim * math.log(ns)) / math.log(1.0 + 1.0 / ns))
        n_plus = min(max(n_plus, 0), self.n_dim)
        strata = ones * ns
        strata[:n_plus] = ns + 1
        if float(strata.prod()) > target:  # rounding guard: keep >= 2 points per hypercube
            strata[:n_plus] = ns
        return strata

    def _allocate(self, n: int, n_strat: Tensor) -> Tensor:
        """Points per hypercube (int64, sums to n): m >= 2 each, the rest by d_h."""
        n_h = int(n_strat.prod())
        if n_h == 1:
            return torch.tensor([n], dtype=torch.int64, device=self.device)
        m = max(2, int((1.0 - self.neval_frac) * n / n_h))
        rest = n - m * n_h
        weight = self._strat_weight
        same = self._n_strat is not None and torch.equal(self._n_strat, n_strat)
        if weight is None or not same or self.beta == 0 or not float(weight.sum()) > 0:
            weight = torch.ones(n_h, dtype=torch.float64, device=self.device)
        share = rest * weight / weight.sum()
        counts = share.floor()
        left = rest - int(counts.sum())
        if left > 0:
            top = torch.topk(share - counts, left).indices
            counts[top] += 1
        return counts.long() + m

    def _iteration(self, f: Integrand, n: int, adapt: bool) -> Estimate:
        """One stratified pass of n points; with ``adapt``, refit grid and allocation."""
        n_strat = self._strata(n)
        counts = self._allocate(n, n_strat)
        n_h = counts.numel()
        n_total = int(counts.sum())
        v = 1.0 / n_h  # y-volume of a hypercube
        cnt = counts.to(torch.float64)
        hcube = torch.repeat_interleave(torch.arange(n_h, device=self.device), counts)
        strides = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.int64), n_strat[:-1]]), 0)
        ns = n_strat.to(self.device)
        cells = (torch.arange(n_h, device=self.device)[:, None] // strides.to(self.device)) % ns
        cells = cells.to(torch.float64)  # (n_h, n_dim) lower corner of each hypercube / ns
        point_volume = v / cnt  # y-volume each point of a hypercube stands for
        train = adapt and self.alpha > 0 and self.n_bins > 1
        hist = torch.zeros(self.n_dim * self.n_bins, dtype=torch.float64, device=self.device)
        w_all = torch.empty(n_total, dtype=torch.float64, device=self.device)
        for start in range(0, n_total, self.max_batch):
            h = hcube[start : start + self.max_batch]
            y = (cells.index_select(0, h) + self._rand(h.shape[0])) / ns
            x, jac = self.map(y)
            fx = torch.as_tensor(f(x)).to(dtype=torch.float64, device=self.device).reshape(-1)
            if fx.shape[0] != y.shape[0]:
                raise ValueError(
                    f"Vegas: the integrand returned {fx.shape[0]} values for {y.shape[0]} points"
                )
            if not bool(torch.isfinite(fx).all()):
                raise ValueError("Vegas: the integrand returned NaN or inf")
            w = fx * jac  # the integrand on the y-cube
            w_all[start : start + h.shape[0]] = w
            if train:
                self._histogram(hist, y, w * w * point_volume.index_select(0, h))
        sums = torch.zeros(n_h, dtype=torch.float64, device=self.device)
        mean_h = sums.index_add(0, hcube, w_all) / cnt
        dev = w_all - mean_h.index_select(0, hcube)
        var_h = torch.zeros_like(mean_h).index_add_(0, hcube, dev * dev) / (cnt - 1.0)
        value = v * float(mean_h.sum())
        error = v * math.sqrt(float((var_h / cnt).sum()))
        if train:
            self._refit(hist.reshape(self.n_dim, self.n_bins))
        if adapt and n_h > 1:
            self._n_strat = n_strat
            self._strat_weight = (v * torch.sqrt(var_h)) ** self.beta
        return Estimate(value, error, n_total)

    # --- grid adaptation -----------------------------------------------------------
    def _histogram(self, hist: Tensor, y: Tensor, weight: Tensor) -> None:
        """Add ``weight`` (n,) to the increment of y on every axis: hist (n_dim * n_bins,)."""
        nb, nd = self.n_bins, self.n_dim
        idx = (y * nb).long().clamp_(0, nb - 1)
        flat = (idx + torch.arange(nd, device=self.device) * nb).reshape(-1)
        hist.index_add_(0, flat, weight[:, None].expand(-1, nd).reshape(-1))

    def _refit(self, acc: Tensor) -> None:
        """Refit the grid to per-axis sums acc (n_dim, n_bins) of (J f)^2 dV."""
        nb, nd = self.n_bins, self.n_dim
        smooth = torch.empty_like(acc)
        smooth[:, 0] = (7.0 * acc[:, 0] + acc[:, 1]) / 8.0
        smooth[:, -1] = (7.0 * acc[:, -1] + acc[:, -2]) / 8.0
        smooth[:, 1:-1] = (acc[:, :-2] + 6.0 * acc[:, 1:-1] + acc[:, 2:]) / 8.0
        total = smooth.sum(dim=1, keepdim=True)
        alive = (total > 0).squeeze(1)  # axes that saw a non-zero integrand
        a = smooth / torch.where(total > 0, total, 1.0) + _TINY
        a = torch.where(a < 1.0 - 1e-8, ((1.0 - a) / -torch.log(a)) ** self.alpha, a**self.alpha)
        cum = torch.cat([torch.zeros(nd, 1, dtype=a.dtype, device=a.device), a.cumsum(1)], 1)
        targets = cum[:, -1:] * torch.arange(1, nb, dtype=a.dtype, device=a.device) / nb
        k = (torch.searchsorted(cum, targets.contiguous()) - 1).clamp(0, nb - 1)
        frac = ((targets - cum.gather(1, k)) / a.gather(1, k)).clamp(0.0, 1.0)
        widths = self.edges.diff(dim=1)
        inner = self.edges.gather(1, k) + frac * widths.gather(1, k)
        new = torch.cat([self.edges[:, :1], inner, self.edges[:, -1:]], dim=1)
        new = torch.cummax(new, dim=1).values
        self.edges = torch.where(alive[:, None], new, self.edges).contiguous()

    # --- the Integrator interface --------------------------------------------------
    def train(
        self, f: Integrand, n_iter: int, n_per_iter: int, *, discard: int | None = None
    ) -> Estimate:
        """Adapt to f for n_iter iterations of n_per_iter points each.

        Returns the inverse-variance weighted average (with chi^2/dof) of the
        iterations after the first ``discard`` ones, whose grids were still far from
        converged (warm-up); default ``n_iter // 2`` (0 for a single iteration). All
        iterations are kept in ``history``.
        """
        if n_iter < 1 or n_per_iter < 2:
            raise ValueError(
                f"Vegas.train: need n_iter >= 1 and n_per_iter >= 2, got {n_iter}, {n_per_iter}"
            )
        skip = n_iter // 2 if discard is None else int(discard)
        if not 0 <= skip < n_iter:
            raise ValueError(f"Vegas.train: discard must be in [0, n_iter), got {discard}")
        estimates = [self._iteration(f, n_per_iter, adapt=True) for _ in range(n_iter)]
        self.history.extend(estimates)
        return combine_estimates(estimates[skip:])

    def integrate(self, f: Integrand, n_iter: int, n_per_iter: int) -> Estimate:
        """Estimate with fresh (stratified) samples and a frozen grid.

        The iterations are independent and identically distributed, so they are
        combined by their plain mean (error sqrt(sum sigma_i^2) / n_iter), which unlike
        an inverse-variance average has no bias from the correlation of the estimates
        with their errors; chi^2/dof measures their consistency.
        """
        if n_iter < 1 or n_per_iter < 2:
            raise ValueError(
                f"Vegas.integrate: need n_iter >= 1 and n_per_iter >= 2, got {n_iter}, {n_per_iter}"
            )
        return average_estimates(
            [self._iteration(f, n_per_iter, adapt=False) for _ in range(n_iter)]
        )

    def state_dict(self) -> dict[str, Any]:
        """Grid and settings as tensors and numbers (round-trips through torch.save).

        The random generator's state is not included: a loaded sampler draws from the
        generator of the instance it is loaded into (seed it per shard).
        """
        return {
            "version": 1,
            "n_dim": self.n_dim,
            "n_bins": self.n_bins,
            "alpha": self.alpha,
            "beta": self.beta,
            "neval_frac": self.neval_frac,
            "stratify": self.stratify,
            "edges": self.edges.detach().cpu().clone(),
            "n_strat": None if self._n_strat is None else self._n_strat.cpu().clone(),
            "strat_weight": None
            if self._strat_weight is None
            else self._strat_weight.detach().cpu().clone(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a state from :meth:`state_dict` (the generator is left as it is)."""
        if int(state["n_dim"]) != self.n_dim:
            raise ValueError(
                f"Vegas.load_state_dict: state has n_dim = {state['n_dim']}, this "
                f"integrator {self.n_dim}"
            )
        edges = torch.as_tensor(state["edges"], dtype=torch.float64)
        if edges.shape != (self.n_dim, int(state["n_bins"]) + 1):
            raise ValueError(f"Vegas.load_state_dict: edges of shape {tuple(edges.shape)}")
        self.n_bins = int(state["n_bins"])
        self.alpha = float(state["alpha"])
        self.beta = float(state["beta"])
        self.neval_frac = float(state["neval_frac"])
        self.stratify = bool(state["stratify"])
        self.edges = edges.to(self.device).contiguous()
        ns, sw = state.get("n_strat"), state.get("strat_weight")
        self._n_strat = None if ns is None else torch.as_tensor(ns, dtype=torch.int64).cpu()
        self._strat_weight = (
            None if sw is None else torch.as_tensor(sw, dtype=torch.float64).to(self.device)
        )
