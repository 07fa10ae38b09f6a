r"""Iterative Bayesian unfolding (D'Agostini, NIM A 362 (1995) 487; arXiv:1010.0632).

Binned, in any dimension: a :class:`Binning` (one edge array per observable) maps
events to one flat bin index, so a 2-d or 3-d binning is unfolded as one long vector.
The response is kept sparse (:class:`Response`: index/value triplets of the filled
(reco bin, truth bin) pairs), never a dense (bins x bins) matrix, so 1,000+ bins per
axis work.

With the response probability :math:`P(r|t) = R_{rt} / T_t` (:math:`R_{rt}`: weighted
simulated events with truth in bin t and reco in bin r; :math:`T_t`: all simulated
events passing the truth selection in bin t, misses included), the efficiency
:math:`\epsilon_t = \sum_r P(r|t)`, and the fake-subtracted data
:math:`d'_r = d_r (1 - f_r)` (:math:`f_r`: the simulation's fake fraction in reco bin r,
as RooUnfold subtracts fakes), one iteration updates the prior :math:`p_t` (start: the
simulation's truth spectrum :math:`T_t`) to

.. math::

    u_t = \frac{1}{\epsilon_t} \sum_r
          \frac{P(r|t)\, p_t}{\sum_{t'} P(r|t') p_{t'}}\, d'_r .

Units: counts of data events (the sum of the data weights); :math:`\sum_t u_t` is the
unfolded number of fiducial events.

Under/overflow, explicitly: with ``Binning(overflow=False)`` an event outside a
binning's range is outside the unfolding: a simulated event passing the truth selection
with truth outside the truth range but reco inside the reco range counts as a fake
(subtracted), one with reco outside the reco range counts as a miss (inefficiency); data
outside the reco range are ignored. With ``overflow=True`` every axis gets an underflow
and an overflow bin that take part in the unfolding (RooUnfold's ``UseOverflow``).

Stopping rule: a fixed number of iterations (default 4, RooUnfold's default), or, with
``IBUConfig.tolerance``, stop at the first iteration k where the change
:math:`\chi^2_k / n = \frac{1}{n} \sum_t (u^k_t - u^{k-1}_t)^2 / V_t` falls below the
tolerance (:math:`V_t`: the data-statistical variance of :math:`u_t`, first-order
propagation of the data variances with the prior held fixed; n: bins with V > 0).

Uncertainties by toys (:class:`IBUConfig`): each toy draws a Poisson(1) weight for every
measured event (data bootstrap) and/or every simulated event (response bootstrap,
refilling response, efficiencies and fake fractions), and unfolds with the nominal
number of iterations. The covariance is the sample covariance of the toys.
All toys run at once (batched over the toy axis); no loop over events or toys.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from unfolding.data import UnfoldedResult, UnfoldingInputs
from unfolding.errors import UnfoldingError

__all__ = [
    "Binning",
    "IBUConfig",
    "IBUSpectrum",
    "Response",
    "build_response",
    "ibu",
    "ibu_iterate",
    "unfold_spectrum",
]


@dataclass(frozen=True)
class Binning:
    """A (possibly multi-dimensional) binning: one increasing edge array per observable.

    Bins are flattened in C order (the last observable fastest). With ``overflow`` every
    axis has an underflow bin (index 0) and an overflow bin (last index) besides its
    ``len(edges) - 1`` regular bins.

    Args:
        edges: per observable, a 1-d float64 tensor of >= 2 strictly increasing edges
            (observable units). Lower edges are inclusive, upper exclusive, except the
            last upper edge, which is inclusive.
        overflow: add under- and overflow bins per axis.
    """

    edges: tuple[Tensor, ...]
    overflow: bool = False

    def __post_init__(self) -> None:
        if len(self.edges) == 0:
            raise UnfoldingError("binning: at least one observable needed")
        fixed = []
        for i, e in enumerate(self.edges):
            e = torch.as_tensor(e, dtype=torch.float64)
            if e.ndim != 1 or e.numel() < 2:
                raise UnfoldingError(f"binning: edges[{i}] must be 1-d with >= 2 edges")
            if not bool(torch.isfinite(e).all()) or not bool((e[1:] > e[:-1]).all()):
                raise UnfoldingError(f"binning: edges[{i}] must be finite and increasing")
            fixed.append(e)
        object.__setattr__(self, "edges", tuple(fixed))

    @classmethod
    def uniform(cls, spec: Sequence[tuple[int, float, float]], overflow: bool = False) -> Binning:
        """Equal-width bins: ``spec`` = [(n_bins, low, high), ...] per observable."""
        return cls(
            tuple(torch.linspace(lo, hi, n + 1, dtype=torch.float64) for n, lo, hi in spec),
            overflow,
        )

    @property
    def shape(self) -> tuple[int, ...]:
        """Bins per axis (flow bins included)."""
        extra = 2 if self.overflow else 0
        return tuple(e.numel() - 1 + extra for e in self.edges)

    @property
    def n_bins(self) -> int:
        """Total number of flat bins."""
        return math.prod(self.shape)

    @property
    def dim(self) -> int:
        """Number of observables."""
        return len(self.edges)

    def index(self, x: Tensor) -> Tensor:
        """Flat bin index of each event, (n,) int64; -1 outside the range (only without
        overflow).

        Args:
            x: (n, dim) observables (float64; device of the result follows x).
        """
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise UnfoldingError(
                f"binning: events must have shape (n, {self.dim}), got {tuple(x.shape)}"
            )
        flat = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        inside = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
        for axis, (edges, size) in enumerate(zip(self.edges, self.shape, strict=True)):
            e = edges.to(x.device)
            v = x[:, axis].to(torch.float64).contiguous()
            # bucketize(right=True): e[i-1] <= v < e[i] -> i; regular bins 1..n_edges-1
            b = torch.bucketize(v, e, right=True)
            b = torch.where(v == e[-1], torch.full_like(b, e.numel() - 1), b)  # last edge in
            if self.overflow:
                idx = b  # 0 = underflow, n_edges = overflow
            else:
                inside &= (b >= 1) & (b <= e.numel() - 1)
                idx = (b - 1).clamp(0, size - 1)
            flat = flat * size + idx
        return torch.where(inside, flat, torch.full_like(flat, -1))

    def centres(self, axis: int = 0) -> Tensor:
        """Centres of the regular bins of one axis (observable units)."""
        e = self.edges[axis]
        return 0.5 * (e[1:] + e[:-1])


@dataclass(frozen=True)
class IBUConfig:
    """Settings of iterative Bayesian unfolding.

    Attributes:
        iterations: number of iterations when ``tolerance`` is None (default 4).
        tolerance: if set, stop at the first iteration whose change chi^2 per bin
            (see the module docstring) is below it, at most ``max_iterations``.
        max_iterations: the cap of the tolerance rule.
        toys: number of toys for the covariance and the replicas (0: none).
        toy_data: toys resample the data (Poisson(1) weight per measured event).
        toy_response: toys resample the simulation (Poisson(1) weight per simulated event).
        seed: seed of the toys.
    """

    iterations: int = 4
    tolerance: float | None = None
    max_iterations: int = 100
    toys: int = 100
    toy_data: bool = True
    toy_response: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise UnfoldingError(f"ibu.iterations: must be >= 1, got {self.iterations}")
        if self.tolerance is not None and not self.tolerance > 0:
            raise UnfoldingError(f"ibu.tolerance: must be > 0 or None, got {self.tolerance}")
        if self.max_iterations < 1:
            raise UnfoldingError(f"ibu.max_iterations: must be >= 1, got {self.max_iterations}")
        if self.toys < 0:
            raise UnfoldingError(f"ibu.toys: must be >= 0, got {self.toys}")


@dataclass(frozen=True)
class Response:
    """A sparse response: weighted counts of the filled (reco bin, truth bin) pairs.

    All counts are sums of simulated event weights. A trailing batch axis of toys is
    allowed on the count arrays: ``values`` (..., nnz), ``truth_total`` (..., n_truth),
    ``reco_total`` and ``fakes`` (..., n_reco); the indices are shared.

    Attributes:
        reco_index, truth_index: (nnz,) int64 flat bins of each filled pair.
        values: (nnz,) weighted count of events in that pair (pass both selections).
        truth_total: (n_truth,) weighted count of events passing the truth selection per
            truth bin (misses included): the prior.
        reco_total: (n_reco,) weighted count of events passing the reco selection per
            reco bin (fakes included).
        fakes: (n_reco,) the part of ``reco_total`` without a truth bin (fakes and, without
            overflow, events with truth outside the truth range).
        n_truth, n_reco: numbers of flat bins.
    """

    reco_index: Tensor
    truth_index: Tensor
    values: Tensor
    truth_total: Tensor
    reco_total: Tensor
    fakes: Tensor
    n_truth: int
    n_reco: int

    @property
    def efficiency(self) -> Tensor:
        """(..., n_truth) sum_r R_rt / T_t (0 where T_t = 0)."""
        filled = torch.zeros_like(self.truth_total).index_add_(-1, self.truth_index, self.values)
        return _safe_divide(filled, self.truth_total)

    @property
    def fake_fraction(self) -> Tensor:
        """(..., n_reco) F_r / M_r (0 where M_r = 0)."""
        return _safe_divide(self.fakes, self.reco_total)

    @property
    def probability(self) -> Tensor:
        """(..., nnz) P(r|t) = R_rt / T_t of each filled pair."""
        return _safe_divide(self.values, self.truth_total[..., self.truth_index])

    def to_dense(self) -> Tensor:
        """The dense (n_reco, n_truth) matrix of counts (for small problems and tests)."""
        dense = torch.zeros(
            self.n_reco, self.n_truth, dtype=self.values.dtype, device=self.values.device
        )
        dense.index_put_((self.reco_index, self.truth_index), self.values, accumulate=True)
        return dense


_TOY_ELEMENTS = 20_000_000
"""Toys are drawn in chunks of at most this many Poisson weights (memory bound)."""


def _safe_divide(a: Tensor, b: Tensor) -> Tensor:
    ok = b != 0
    return torch.where(ok, a / torch.where(ok, b, torch.ones_like(b)), torch.zeros_like(a))


def _check_binning(inputs: UnfoldingInputs, truth: Binning, reco: Binning) -> None:
    if truth.dim != inputs.sim_truth.shape[1]:
        raise UnfoldingError(
            f"ibu: the truth binning has {truth.dim} observables, the simulation "
            f"{inputs.sim_truth.shape[1]} ({', '.join(inputs.truth_names)})"
        )
    if reco.dim != inputs.sim_reco.shape[1]:
        raise UnfoldingError(
            f"ibu: the reco binning has {reco.dim} observables, the simulation "
            f"{inputs.sim_reco.shape[1]} ({', '.join(inputs.reco_names)})"
        )


@dataclass(frozen=True)
class _SimBins:
    """Per simulated event: where it goes in the response (computed once)."""

    truth_bin: Tensor  # (n_sim,) truth bin or -1 (fails truth selection or out of range)
    reco_bin: Tensor  # (n_sim,) reco bin or -1
    pair: Tensor  # (n_sim,) index into the triplets, -1 if not a filled pair
    reco_index: Tensor
    truth_index: Tensor


def _sim_bins(inputs: UnfoldingInputs, truth: Binning, reco: Binning) -> _SimBins:
    t = truth.index(inputs.sim_truth)
    r = reco.index(inputs.sim_reco)
    t = torch.where(inputs.sim_pass_truth, t, torch.full_like(t, -1))
    r = torch.where(inputs.sim_pass_reco, r, torch.full_like(r, -1))
    both = (t >= 0) & (r >= 0)
    key = r * truth.n_bins + t
    unique, inverse = torch.unique(key[both], return_inverse=True)
    pair = torch.full_like(t, -1)
    pair[both] = inverse
    return _SimBins(t, r, pair, unique // truth.n_bins, unique % truth.n_bins)


def _fill(bins: _SimBins, weights: Tensor, n_truth: int, n_reco: int) -> Response:
    """Fill the response with ``weights`` (..., n_sim) (a leading toy axis allowed)."""
    batch = weights.shape[:-1]
    dev, dt = weights.device, weights.dtype

    def add(index: Tensor, size: int, select: Tensor) -> Tensor:
        out = torch.zeros(*batch, size, dtype=dt, device=dev)
        w = torch.where(select, weights, torch.zeros_like(weights))
        return out.index_add_(-1, index.clamp(min=0), w)

    nnz = bins.reco_index.numel()
    values = add(bins.pair, nnz, bins.pair >= 0)
    truth_total = add(bins.truth_bin, n_truth, bins.truth_bin >= 0)
    reco_total = add(bins.reco_bin, n_reco, bins.reco_bin >= 0)
    fakes = add(bins.reco_bin, n_reco, (bins.reco_bin >= 0) & (bins.truth_bin < 0))
    return Response(
        bins.reco_index, bins.truth_index, values, truth_total, reco_total, fakes, n_truth, n_reco
    )


def build_response(inputs: UnfoldingInputs, truth: Binning, reco: Binning) -> Response:
    """The sparse response of the simulation in ``inputs`` (weighted counts)."""
    _check_binning(inputs, truth, reco)
    bins = _sim_bins(inputs, truth, reco)
    return _fill(bins, inputs.sim_weights, truth.n_bins, reco.n_bins)


def _data_histogram(
    inputs: UnfoldingInputs, reco: Binning, weights: Tensor
) -> tuple[Tensor, Tensor]:
    """(counts, variances) of the data per reco bin; ``weights`` (..., n_data)."""
    r = reco.index(inputs.data_reco)
    inside = r >= 0
    w = torch.where(inside, weights, torch.zeros_like(weights))
    shape = (*weights.shape[:-1], reco.n_bins)
    counts = torch.zeros(shape, dtype=torch.float64, device=w.device).index_add_(
        -1, r.clamp(min=0), w
    )
    var = torch.zeros(shape, dtype=torch.float64, device=w.device).index_add_(
        -1, r.clamp(min=0), w**2
    )
    return counts, var


def ibu_iterate(
    response: Response,
    data: Tensor,
    *,
    iterations: int = 4,
    tolerance: float | None = None,
    max_iterations: int = 100,
    data_variance: Tensor | None = None,
    prior: Tensor | None = None,
) -> tuple[Tensor, int, tuple[float, ...], bool]:
    """Run D'Agostini iterations on binned data (batched over a leading toy axis).

    Args:
        response: :class:`Response` (its count arrays may carry a toy axis).
        data: (..., n_reco) measured counts per reco bin (fakes not yet subtracted).
        iterations: iterations when ``tolerance`` is None.
        tolerance: stop when the change chi^2 per bin is below it (needs a single,
            unbatched problem), at most ``max_iterations``.
        data_variance: (n_reco,) variance of ``data`` (default: ``data``, Poisson).
        prior: (..., n_truth) starting prior (default: the response's ``truth_total``).

    Returns:
        (unfolded (..., n_truth), iterations done, change chi^2 per bin of each
        iteration, whether the tolerance was reached (False for a fixed count)).
    """
    prob = response.probability  # (..., nnz)
    eff = response.efficiency  # (..., n_truth)
    data_sub = data * (1 - response.fake_fraction)
    r_idx, t_idx = response.reco_index, response.truth_index
    p = (response.truth_total if prior is None else prior).clone()
    p = p.expand(*torch.broadcast_shapes(p.shape[:-1], data.shape[:-1], prob.shape[:-1]), -1)
    if tolerance is not None:
        var_d = (data if data_variance is None else data_variance) * (
            1 - response.fake_fraction
        ) ** 2
    n_max = max_iterations if tolerance is not None else iterations
    chi2s: list[float] = []
    converged = False
    done = 0
    for _ in range(n_max):
        joint = prob * p[..., t_idx]  # (..., nnz) P(r|t) p_t
        folded = torch.zeros(
            *joint.shape[:-1], response.n_reco, dtype=joint.dtype, device=joint.device
        )
        folded.index_add_(-1, r_idx, joint)
        ratio = _safe_divide(data_sub, folded)  # d'_r / nu_r
        unfolded = p.new_zeros(p.shape).index_add_(-1, t_idx, joint * ratio[..., r_idx])
        unfolded = _safe_divide(unfolded, eff)
        done += 1
        if tolerance is not None:
            # first-order data variance of u_t with the prior fixed: M_tr = joint/(nu eff)
            m = _safe_divide(joint, folded[..., r_idx] * eff[..., t_idx])
            var_u = p.new_zeros(p.shape).index_add_(-1, t_idx, m**2 * var_d[..., r_idx])
            ok = var_u > 0
            chi2 = float(((unfolded - p) ** 2 / torch.where(ok, var_u, 1.0))[ok].sum())
            chi2s.append(chi2 / max(1, int(ok.sum())))
            p = unfolded
            if chi2s[-1] < tolerance:
                converged = True
                break
        else:
            p = unfolded
    return p, done, tuple(chi2s), converged


@dataclass(frozen=True)
class IBUSpectrum:
    """The binned result of :func:`unfold_spectrum`.

    Attributes:
        values: (n_truth,) unfolded counts per flat truth bin (data units).
        prior: (n_truth,) the simulation's truth spectrum (weighted counts, simulation
            units).
        toys: (R, n_truth) unfolded toy spectra, or None without toys.
        iterations: iterations done.
        converged: the tolerance rule stopped the iterations (False for a fixed count).
        chi2_changes: change chi^2 per bin of each iteration (tolerance rule only).
        binning: the truth binning.
    """

    values: Tensor
    prior: Tensor
    toys: Tensor | None
    iterations: int
    converged: bool
    chi2_changes: tuple[float, ...]
    binning: Binning

    @property
    def covariance(self) -> Tensor:
        """(n_truth, n_truth) sample covariance of the toys (float64, dense: build it only
        for binnings of a few thousand bins).

        Raises:
            UnfoldingError: fewer than 2 toys.
        """
        if self.toys is None or self.toys.shape[0] < 2:
            raise UnfoldingError("ibu: a covariance needs toys >= 2 (IBUConfig.toys)")
        return torch.cov(self.toys.T)

    @property
    def errors(self) -> Tensor:
        """(n_truth,) standard deviations of the toys (no dense matrix)."""
        if self.toys is None or self.toys.shape[0] < 2:
            raise UnfoldingError("ibu: errors need toys >= 2 (IBUConfig.toys)")
        return self.toys.std(dim=0)


def _unfold(
    inputs: UnfoldingInputs, truth: Binning, reco: Binning, config: IBUConfig
) -> tuple[IBUSpectrum, _SimBins]:
    inputs.validate()
    _check_binning(inputs, truth, reco)
    bins = _sim_bins(inputs, truth, reco)
    response = _fill(bins, inputs.sim_weights, truth.n_bins, reco.n_bins)
    data, data_var = _data_histogram(inputs, reco, inputs.data_weights)
    values, done, chi2s, converged = ibu_iterate(
        response,
        data,
        iterations=config.iterations,
        tolerance=config.tolerance,
        max_iterations=config.max_iterations,
        data_variance=data_var,
    )
    toys = None
    if config.toys > 0 and (config.toy_data or config.toy_response):
        dev = inputs.device
        gen = torch.Generator(device=dev).manual_seed(config.seed)
        # toys in chunks, so the Poisson weights never exceed ~2e7 numbers at once
        chunk = max(1, _TOY_ELEMENTS // max(inputs.n_sim, inputs.n_data))
        parts = []
        for first in range(0, config.toys, chunk):  # a loop over chunks of toys
            size = min(chunk, config.toys - first)
            if config.toy_data:
                ones = torch.ones(size, inputs.n_data, dtype=torch.float64, device=dev)
                pw = torch.poisson(ones, generator=gen)
                data_t, _ = _data_histogram(inputs, reco, inputs.data_weights * pw)
            else:
                data_t = data.expand(size, -1)
            if config.toy_response:
                ones = torch.ones(size, inputs.n_sim, dtype=torch.float64, device=dev)
                pw = torch.poisson(ones, generator=gen)
                response_t = _fill(bins, inputs.sim_weights * pw, truth.n_bins, reco.n_bins)
            else:
                response_t = response
            parts.append(ibu_iterate(response_t, data_t, iterations=done)[0])
        toys = torch.cat(parts)
    spectrum = IBUSpectrum(values, response.truth_total, toys, done, converged, chi2s, truth)
    return spectrum, bins


def unfold_spectrum(
    inputs: UnfoldingInputs, truth: Binning, reco: Binning, config: IBUConfig | None = None
) -> IBUSpectrum:
    """Unfold the data in ``inputs`` to a binned truth spectrum with toy uncertainties.

    Args:
        inputs: simulation and data (:class:`~unfolding.data.UnfoldingInputs`).
        truth: binning of the truth observables (all columns of ``sim_truth``).
        reco: binning of the reco observables (all columns of ``sim_reco``).
        config: :class:`IBUConfig` (defaults: 4 iterations, 100 toys of data and response).

    Returns:
        :class:`IBUSpectrum` (counts per flat truth bin, data units).
    """
    return _unfold(inputs, truth, reco, config or IBUConfig())[0]


def ibu(
    inputs: UnfoldingInputs, truth: Binning, reco: Binning, config: IBUConfig | None = None
) -> UnfoldedResult:
    """IBU as an :class:`~unfolding.data.UnfoldedResult`: the simulation's truth events
    (those passing the truth selection inside the truth binning) weighted by
    w_i u_t / T_t of their truth bin t, so that their weighted histogram in ``truth`` is
    the unfolded spectrum; replicas from the toys (w_i u^toy_t / T_t).

    ``info``: iterations, converged, chi2_changes, stopping ("fixed" | "tolerance" |
    "max_iterations"), toys, seconds.
    """
    config = config or IBUConfig()
    start = time.perf_counter()
    spectrum, bins = _unfold(inputs, truth, reco, config)
    keep = bins.truth_bin >= 0
    t = bins.truth_bin[keep]
    scale = _safe_divide(spectrum.values, spectrum.prior)
    w = inputs.sim_weights[keep]
    replica = None
    if spectrum.toys is not None:
        replica = w * _safe_divide(spectrum.toys, spectrum.prior)[:, t]
    if config.tolerance is None:
        stopping = "fixed"
    else:
        stopping = "tolerance" if spectrum.converged else "max_iterations"
    info: dict[str, object] = {
        "iterations": spectrum.iterations,
        "converged": spectrum.converged,
        "chi2_changes": spectrum.chi2_changes,
        "stopping": stopping,
        "toys": 0 if spectrum.toys is None else int(spectrum.toys.shape[0]),
        "truth_bins": truth.n_bins,
        "reco_bins": reco.n_bins,
        "seconds": time.perf_counter() - start,
    }
    return UnfoldedResult("ibu", inputs.sim_truth[keep], w * scale[t], replica, None, info)
