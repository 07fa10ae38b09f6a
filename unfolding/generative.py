r"""Generative unfolding: a conditional flow-matching network samples p(truth | reco).

The method (Backes, Butter, Dunford, Malaescu, arXiv:2212.08674, with a conditional
flow-matching network in place of the cINN; Lipman et al. arXiv:2210.02747):

1. **Fakes.** A classifier at detector level on simulated events that pass the
   detector-level selection learns :math:`P(\text{fiducial} \mid x_{reco})`; every
   measured event is weighted by it (the probability that it is not a fake).
2. **Response.** A velocity field :math:`v(x, t \mid x_{reco})`
   (:class:`~evgen.ml.VelocityNet`) is trained by weighted conditional flow matching on
   simulated events that pass both selections (truth and reco standardised, event weights
   in the loss, negative weights allowed). Integrating :math:`\dot x = v` from a normal
   draw at t = 0 to t = 1 (RK4 with fixed steps, or dopri5) samples
   :math:`p(x_{truth} \mid x_{reco})`; each measured event gets ``samples_per_event``
   draws of weight 1/k.
3. **Efficiency.** A classifier at parton level on fiducial simulated events learns
   :math:`\epsilon(x_{truth}) = P(\text{reco pass} \mid x_{truth})`; unfolded events get
   the weight :math:`1/\epsilon` (clipped at ``efficiency_clip``), so the result describes
   the whole fiducial phase space, not only its reconstructed part.
4. **Prior iterations.** The network learns the posterior under the simulation's prior.
   A classifier between the unfolded events and the (reweighted) simulated truth gives
   the ratio :math:`p_{unfolded}/p_{prior}`, which multiplies the prior weights; the
   network is fine-tuned on the reweighted simulation and the data unfolded again.
   Like every EM-type deconvolution this converges geometrically (a width: about a
   factor 2 per update on the Gaussian toy), so the updates are extrapolated
   (``accelerate``: ratio**exponent with the exponent from the measured contraction of
   successive updates, at most ``max_exponent``). Stopping rule: after at least
   ``min_iterations`` updates, the classifier's AUC on a held-out fifth of both samples
   is within ``auc_sigma`` standard errors of 1/2 (the two samples are
   indistinguishable); at most ``max_iterations`` updates.
5. **Uncertainties.** An ensemble of ``ensemble`` networks (each fine-tuned from the
   converged network with its own seed on a Poisson bootstrap of the simulation, or
   trained from scratch) each samples its own events; each member's events carry
   ``bootstrap_per_member`` Poisson(1) bootstraps of the data weights. The R = ensemble x
   bootstrap_per_member replicas hold network, simulation and data statistical
   fluctuations; the nominal result takes measured event i from member i mod ensemble
   (a draw from the ensemble mixture) with the plain data weights.

Units: every weight is in data units (the sum of the nominal weights is the unfolded
number of fiducial events); observables keep the units of the inputs.

Example:
    >>> result = unfold_generative(inputs, GenerativeConfig(), seed=1)  # doctest: +SKIP
    >>> result.info["model"].save("generative.pt")     # a GenerativeModel  # doctest: +SKIP
    >>> again = GenerativeModel.load("generative.pt").unfold(new_reco)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import torch
from torch import Tensor, nn

from evgen.ml import (
    ODEOptions,
    Trainer,
    TrainingConfig,
    VelocityNet,
    load_checkpoint,
    odeint,
    save_checkpoint,
    seed_everything,
)
from evgen.ml.classifier import Classifier, ClassifierConfig, auc
from evgen.ml.errors import CheckpointError
from unfolding.data import UnfoldedResult, UnfoldingInputs
from unfolding.errors import UnfoldingError

__all__ = ["GenerativeConfig", "GenerativeModel", "unfold_generative"]

logger = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _as_dtype(value: torch.dtype | str, name: str) -> torch.dtype:
    if isinstance(value, torch.dtype) and value in _DTYPES.values():
        return value
    if isinstance(value, str) and value.removeprefix("torch.") in _DTYPES:
        return _DTYPES[value.removeprefix("torch.")]
    raise UnfoldingError(f"generative.{name}: must be float32 or float64, got {value!r}")


@dataclass(frozen=True)
class GenerativeConfig:
    """Settings of generative unfolding (the ``generative:`` block of an unfolding card).

    Network:
        hidden: width of the velocity network's hidden layers.
        hidden_layers: number of hidden layers.
        time_frequencies: Fourier frequencies of the time embedding.
        dtype: network dtype, "float32" (default; fast on CPU) or "float64". Samples,
            weights and histograms are float64 whatever this is.

    Training (AdamW, linear warm-up then cosine decay to 1 % of the peak):
        steps: optimiser steps of the first training.
        finetune_steps: steps of each fine-tuning (after a prior update, and per ensemble
            member when ``ensemble_from_scratch`` is False).
        batch_size: simulated events per step.
        learning_rate: peak learning rate of the first training.
        finetune_learning_rate: peak learning rate of the fine-tunings.
        warmup_steps: linear warm-up steps of every training.

    Sampling:
        samples_per_event: k draws per measured event, each with weight 1/k, in the final
            unfolding (k > 1 lowers the sampling noise of histograms by ~1/sqrt(k)).
        iteration_samples_per_event: draws per measured event in the prior iterations
            (whose classifier needs the unfolded distribution, not precise histograms).
        ode_method: "rk4" (fixed ``ode_steps`` steps) or "dopri5" (adaptive,
            ``ode_rtol``/``ode_atol``).
        ode_steps: RK4 steps from t = 0 to 1.
        ode_rtol, ode_atol: dopri5 tolerances (in standardised units).
        sample_batch: rows per ODE solve (memory).

    Prior iterations:
        max_iterations: most prior updates (0: unfold once with the simulation's prior).
        min_iterations: prior updates done before the stopping rule is applied (the
            AUC sees differences of the mean well but differences of a width poorly).
        auc_sigma: stop when the held-out AUC of the unfolded-vs-prior classifier is
            below 1/2 + auc_sigma x its standard error under "no difference".
        prior_clip: each update's ratio is clipped to [1/prior_clip, prior_clip].
        accelerate: extrapolate the prior updates (Aitken): the prior is multiplied by
            ratio**exponent, the exponent (1 at first) set from the measured contraction
            of successive updates; deconvolution of a narrow peak converges like a
            geometric series with ratio ~ 1/2 per iteration without it.
        max_exponent: largest exponent of the accelerated updates.

    Corrections:
        efficiency_clip: largest efficiency weight 1/eps (eps clipped below at its
            inverse); the fraction of clipped events is reported.
        refit_fakes: retrain the fake classifier after each prior update (the fraction
            of fakes at a given reco point depends on the truth prior).
        classifier: :class:`~evgen.ml.classifier.ClassifierConfig` of every classifier
            (fakes, efficiency, prior); a dict of its fields is accepted.

    Uncertainties:
        ensemble: number of networks (>= 1).
        bootstrap_per_member: Poisson bootstraps of the data weights per member; the
            result has ``ensemble * bootstrap_per_member`` replicas.
        simulation_bootstrap: members train on Poisson(1)-reweighted simulation (the
            simulation's statistical uncertainty enters the replicas).
        ensemble_from_scratch: members train from a fresh initialisation for ``steps``
            steps (slower) instead of fine-tuning the converged network.
    """

    hidden: int = 64
    hidden_layers: int = 3
    time_frequencies: int = 2
    dtype: torch.dtype | str = torch.float32
    steps: int = 2000
    finetune_steps: int = 400
    batch_size: int = 1024
    learning_rate: float = 2e-3
    finetune_learning_rate: float = 5e-4
    warmup_steps: int = 20
    samples_per_event: int = 1
    iteration_samples_per_event: int = 1
    ode_method: Literal["rk4", "dopri5"] = "rk4"
    ode_steps: int = 8
    ode_rtol: float = 1e-5
    ode_atol: float = 1e-6
    sample_batch: int = 131072
    max_iterations: int = 6
    min_iterations: int = 4
    auc_sigma: float = 2.0
    prior_clip: float = 10.0
    efficiency_clip: float = 20.0
    accelerate: bool = True
    max_exponent: float = 2.0
    refit_fakes: bool = True
    classifier: ClassifierConfig | dict[str, Any] = field(
        default_factory=lambda: ClassifierConfig(epochs=20, patience=3)
    )
    ensemble: int = 4
    bootstrap_per_member: int = 16
    simulation_bootstrap: bool = True
    ensemble_from_scratch: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", _as_dtype(self.dtype, "dtype"))
        if isinstance(self.classifier, dict):
            settings = dict(self.classifier)
            if "dtype" in settings:
                settings["dtype"] = _as_dtype(settings["dtype"], "classifier.dtype")
            try:
                object.__setattr__(self, "classifier", ClassifierConfig(**settings))
            except (TypeError, ValueError) as error:
                raise UnfoldingError(f"generative.classifier: {error}") from error
        problems = []
        positive = (
            "hidden",
            "steps",
            "finetune_steps",
            "batch_size",
            "samples_per_event",
            "iteration_samples_per_event",
            "ode_steps",
            "sample_batch",
            "ensemble",
            "bootstrap_per_member",
        )
        for name in positive:
            if getattr(self, name) < 1:
                problems.append(f"{name}: must be >= 1, got {getattr(self, name)}")
        non_negative = (
            "hidden_layers",
            "time_frequencies",
            "warmup_steps",
            "max_iterations",
            "min_iterations",
        )
        for name in non_negative:
            if getattr(self, name) < 0:
                problems.append(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("learning_rate", "finetune_learning_rate", "ode_rtol", "auc_sigma"):
            if not getattr(self, name) > 0:
                problems.append(f"{name}: must be > 0, got {getattr(self, name)}")
        for name in ("prior_clip", "efficiency_clip"):
            if not getattr(self, name) > 1:
                problems.append(f"{name}: must be > 1, got {getattr(self, name)}")
        if self.ode_method not in ("rk4", "dopri5"):
            problems.append(f"ode_method: must be 'rk4' or 'dopri5', got {self.ode_method!r}")
        if problems:
            raise UnfoldingError("generative." + "; generative.".join(problems))

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> GenerativeConfig:
        """Build from a card's ``generative:`` block; unknown keys raise
        :class:`~unfolding.errors.UnfoldingError` naming them and the allowed ones."""
        allowed = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - allowed)
        if unknown:
            raise UnfoldingError(
                f"generative: unknown setting(s) {unknown}; allowed: {sorted(allowed)}"
            )
        return cls(**settings)

    @property
    def ode(self) -> ODEOptions:
        """The ODE options of sampling."""
        return ODEOptions(
            method=self.ode_method, steps=self.ode_steps, rtol=self.ode_rtol, atol=self.ode_atol
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values (dtypes as strings) for checkpoints; ``GenerativeConfig(**d)``
        rebuilds it."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["dtype"] = _dtype_name(self.dtype)  # type: ignore[arg-type]
        clf = asdict(self.classifier)  # type: ignore[arg-type]
        clf["dtype"] = _dtype_name(clf["dtype"])
        out["classifier"] = clf
        return out


def _standardisation(x: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation (d,) of x (n, d) with weights |w| (float64)."""
    wa = w.abs()
    mean = (wa[:, None] * x).sum(0) / wa.sum()
    std = ((wa[:, None] * (x - mean) ** 2).sum(0) / wa.sum()).sqrt()
    return mean, torch.where(std > 0, std, torch.ones_like(std))


def _class_probability(classifier: Classifier, x: Tensor, odds: Tensor) -> Tensor:
    """P(class 1 | x) (n,) from a class-balanced classifier and the classes' total-weight
    ratio ``odds`` = W1/W0: r W1 / (r W1 + W0) with r = D/(1-D)."""
    r = classifier.likelihood_ratio(x).to(x.device)
    odds = odds.to(device=x.device, dtype=torch.float64)
    return r * odds / (r * odds + 1.0)


class GenerativeModel(nn.Module):
    """The trained networks of generative unfolding, ready for new measured data.

    Holds the ensemble of velocity fields (``members``), the standardisation of truth and
    reco observables (buffers, float64), and the fake and efficiency classifiers when the
    simulation needs them (with the total-weight ratio each was trained with).

    Args:
        d_truth: number of parton-level observables.
        d_reco: number of detector-level observables.
        config: :class:`GenerativeConfig` (network shape, sampling, replicas).
        fakes: the model has a fake classifier.
        efficiency: the model has an efficiency classifier.
        truth_names, reco_names: observable names (saved with the model).
    """

    truth_mean: Tensor
    truth_std: Tensor
    reco_mean: Tensor
    reco_std: Tensor
    fake_odds: Tensor
    efficiency_odds: Tensor

    def __init__(
        self,
        d_truth: int,
        d_reco: int,
        config: GenerativeConfig | None = None,
        *,
        fakes: bool = False,
        efficiency: bool = False,
        truth_names: tuple[str, ...] = (),
        reco_names: tuple[str, ...] = (),
    ) -> None:
        super().__init__()
        self.config = config or GenerativeConfig()
        self.d_truth, self.d_reco = d_truth, d_reco
        self.truth_names, self.reco_names = tuple(truth_names), tuple(reco_names)
        self.members = nn.ModuleList([self._new_velocity() for _ in range(self.config.ensemble)])
        f64 = torch.float64
        self.register_buffer("truth_mean", torch.zeros(d_truth, dtype=f64))
        self.register_buffer("truth_std", torch.ones(d_truth, dtype=f64))
        self.register_buffer("reco_mean", torch.zeros(d_reco, dtype=f64))
        self.register_buffer("reco_std", torch.ones(d_reco, dtype=f64))
        clf = self.config.classifier
        self.fake_classifier = Classifier(d_reco, clf) if fakes else None  # type: ignore[arg-type]
        self.efficiency_classifier = (
            Classifier(d_truth, clf) if efficiency else None  # type: ignore[arg-type]
        )
        self.register_buffer("fake_odds", torch.ones((), dtype=f64))
        self.register_buffer("efficiency_odds", torch.ones((), dtype=f64))

    def _new_velocity(self) -> VelocityNet:
        cfg = self.config
        return VelocityNet(
            self.d_truth,
            context_dim=self.d_reco,
            hidden=cfg.hidden,
            hidden_layers=cfg.hidden_layers,
            time_frequencies=cfg.time_frequencies,
            dtype=cfg.dtype,  # type: ignore[arg-type]
        )

    @property
    def device(self) -> torch.device:
        """Where the networks live."""
        return self.truth_mean.device

    # -- corrections -------------------------------------------------------------------

    def fiducial_probability(self, reco: Tensor) -> Tensor:
        """P(event passes the parton-level selection | reco) (n,), float64; ones without a
        fake classifier. ``reco``: (n, d_reco) in the inputs' units."""
        if self.fake_classifier is None:
            return torch.ones(reco.shape[0], dtype=torch.float64, device=reco.device)
        return _class_probability(self.fake_classifier, reco, self.fake_odds)

    def efficiency(self, truth: Tensor) -> Tensor:
        """Reconstruction efficiency eps(truth) (n,), float64, unclipped; ones without an
        efficiency classifier. ``truth``: (n, d_truth) in the inputs' units."""
        if self.efficiency_classifier is None:
            return torch.ones(truth.shape[0], dtype=torch.float64, device=truth.device)
        return _class_probability(self.efficiency_classifier, truth, self.efficiency_odds)

    def efficiency_weight(self, truth: Tensor) -> tuple[Tensor, Tensor]:
        """(1/eps clipped at ``config.efficiency_clip``, bool mask of clipped events)."""
        eps = self.efficiency(truth)
        floor = 1.0 / self.config.efficiency_clip
        return 1.0 / eps.clamp(min=floor), eps < floor

    # -- sampling ----------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self,
        reco: Tensor,
        *,
        member: int = 0,
        samples_per_event: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draw truth events from p(truth | reco) with ensemble member ``member``.

        Args:
            reco: (n, d_reco) detector-level observables (inputs' units).
            member: index of the network.
            samples_per_event: k draws per event (default ``config.samples_per_event``).
            generator: source of the base draws (on the model's device).

        Returns:
            (n * k, d_truth) float64 truth events; rows i*k .. i*k + k - 1 belong to event i.
        """
        k = samples_per_event or self.config.samples_per_event
        velocity = self.members[member]
        dtype = next(velocity.parameters()).dtype
        device = self.device
        context = ((reco.to(device, torch.float64) - self.reco_mean) / self.reco_std).to(dtype)
        context = context.repeat_interleave(k, dim=0)
        out = []
        for c in torch.split(context, self.config.sample_batch):
            x0 = torch.randn(
                c.shape[0], self.d_truth, generator=generator, dtype=dtype, device=device
            )

            def rhs(t: float, x: Tensor, c: Tensor = c) -> Tensor:
                return velocity(x, t, c)

            velocity.eval()
            out.append(odeint(rhs, x0, 0.0, 1.0, self.config.ode).y)
        if not out:
            return torch.zeros(0, self.d_truth, dtype=torch.float64, device=device)
        z = torch.cat(out).to(torch.float64)
        return z * self.truth_std + self.truth_mean

    def unfold(
        self,
        data_reco: Tensor,
        data_weights: Tensor | None = None,
        *,
        seed: int = 0,
        info: dict[str, object] | None = None,
    ) -> UnfoldedResult:
        """Unfold measured events with the trained networks (no training).

        Args:
            data_reco: (n_data, d_reco) measured observables.
            data_weights: (n_data,) weights (ones if None).
            seed: seeds the base draws and the Poisson bootstraps.
            info: entries added to the result's ``info``.

        Returns:
            :class:`~unfolding.data.UnfoldedResult` with n = n_data * k events: the
            nominal sample (event i from member i mod ensemble) and ensemble x bootstrap
            replicas (replica_truth (R, n, d_truth), replica_weights (R, n)).
        """
        device = self.device
        data_reco = data_reco.to(device, torch.float64)
        n_data = data_reco.shape[0]
        if data_weights is None:
            data_weights = torch.ones(n_data, dtype=torch.float64, device=device)
        data_weights = data_weights.to(device, torch.float64)
        cfg = self.config
        k, n_members, n_boot = cfg.samples_per_event, len(self.members), cfg.bootstrap_per_member
        gen = torch.Generator(device=device).manual_seed(seed)
        start = time.perf_counter()

        p_fid = self.fiducial_probability(data_reco)
        event_weight = (data_weights * p_fid / k).repeat_interleave(k)  # (n,)
        member_truth, member_weight, clipped = [], [], 0
        for m in range(n_members):
            truth = self.sample(data_reco, member=m, generator=gen)
            inv_eps, clip_mask = self.efficiency_weight(truth)
            clipped += int(clip_mask.sum())
            member_truth.append(truth)
            member_weight.append(event_weight * inv_eps)
        event_member = torch.arange(n_data, device=device).remainder(n_members)
        row_member = event_member.repeat_interleave(k)
        stacked_truth = torch.stack(member_truth)  # (M, n, d)
        stacked_weight = torch.stack(member_weight)  # (M, n)
        rows = torch.arange(row_member.shape[0], device=device)
        truth = stacked_truth[row_member, rows]
        weights = stacked_weight[row_member, rows]
        poisson = torch.poisson(
            torch.ones(n_members, n_boot, n_data, dtype=torch.float64, device=device),
            generator=gen,
        ).repeat_interleave(k, dim=2)
        replica_weights = (stacked_weight[:, None, :] * poisson).reshape(-1, truth.shape[0])
        replica_truth = stacked_truth[:, None].expand(-1, n_boot, -1, -1).reshape(-1, *truth.shape)
        out_info: dict[str, object] = dict(info or {})
        out_info.update(
            samples_per_event=k,
            ensemble=n_members,
            bootstrap_per_member=n_boot,
            replicas=n_members * n_boot,
            efficiency_clipped_fraction=clipped / max(1, n_members * truth.shape[0]),
            mean_fiducial_probability=float((data_weights * p_fid).sum() / data_weights.sum()),
            sampling_s=time.perf_counter() - start,
        )
        return UnfoldedResult(
            method="generative",
            truth=truth,
            weights=weights,
            replica_weights=replica_weights,
            replica_truth=replica_truth,
            info=out_info,
        )

    # -- persistence -------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the networks, standardisation and configuration to ``path`` (atomic)."""
        extra = {
            "kind": "evgen-generative-unfolding-1",
            "config": self.config.to_dict(),
            "d_truth": self.d_truth,
            "d_reco": self.d_reco,
            "fakes": self.fake_classifier is not None,
            "efficiency": self.efficiency_classifier is not None,
            "truth_names": list(self.truth_names),
            "reco_names": list(self.reco_names),
        }
        save_checkpoint(path, self, extra=extra)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], map_location: str | torch.device | None = "cpu"
    ) -> GenerativeModel:
        """Rebuild a model written by :meth:`save` (on ``map_location``).

        Raises:
            CheckpointError: the file is missing, unreadable or not a generative model.
        """
        try:
            payload = torch.load(path, map_location=map_location, weights_only=True)
            extra = payload["extra"]
            if extra.get("kind") != "evgen-generative-unfolding-1":
                raise KeyError("kind")
        except CheckpointError:
            raise
        except Exception as error:
            raise CheckpointError(
                f"{path} is not a generative-unfolding model ({error})"
            ) from error
        model = cls(
            int(extra["d_truth"]),
            int(extra["d_reco"]),
            GenerativeConfig(**extra["config"]),
            fakes=bool(extra["fakes"]),
            efficiency=bool(extra["efficiency"]),
            truth_names=tuple(extra["truth_names"]),
            reco_names=tuple(extra["reco_names"]),
        )
        if map_location is not None:
            model.to(map_location)
        load_checkpoint(path, model, map_location=map_location)
        model.eval()
        return model


# -- training ---------------------------------------------------------------------------


def _weighted_cfm_loss(
    velocity: nn.Module, x1: Tensor, context: Tensor, weights: Tensor, gen: torch.Generator
) -> Tensor:
    r"""Weighted flow-matching loss on straight paths (the form of
    :func:`evgen.ml.flow_matching_loss` with sigma_min = 0): mean of
    :math:`w_i \|v(x_t, t, c) - (x_1 - x_0)\|^2` with weights normalised to mean 1 over
    the whole training set, so that negative weights enter the weighted mean unchanged
    and the loss scale does not depend on the batch."""
    x0 = torch.randn(x1.shape, generator=gen, dtype=x1.dtype, device=x1.device)
    t = torch.rand(x1.shape[0], generator=gen, dtype=x1.dtype, device=x1.device)
    xt = (1 - t[:, None]) * x0 + t[:, None] * x1
    per_event = ((velocity(xt, t, context) - (x1 - x0)) ** 2).sum(dim=1)
    return (weights * per_event).mean()


def _train_velocity(
    velocity: nn.Module,
    truth: Tensor,
    reco: Tensor,
    weights: Tensor,
    *,
    steps: int,
    learning_rate: float,
    config: GenerativeConfig,
    gen: torch.Generator,
) -> list[float]:
    """Train ``velocity`` on standardised (truth, reco) pairs with ``weights`` (float64,
    any sign); minibatches drawn uniformly. Returns the per-step losses."""
    dtype = next(velocity.parameters()).dtype
    total = float(weights.sum())
    if not total > 0:
        raise UnfoldingError(
            f"sim_weights: the response events (passing both selections) need a positive "
            f"total weight, got {total:.6g}"
        )
    w = weights / weights.mean()
    x1_all, c_all, w_all = truth.to(dtype), reco.to(dtype), w.to(dtype)
    n = x1_all.shape[0]
    batch = min(config.batch_size, n)
    trainer = Trainer(
        velocity,
        TrainingConfig(
            steps=steps,
            learning_rate=learning_rate,
            warmup_steps=min(config.warmup_steps, steps - 1),
            schedule="cosine",
            report_every=max(1, steps),
        ),
    )

    def loss_fn() -> Tensor:
        idx = torch.randint(n, (batch,), generator=gen, device=x1_all.device)
        return _weighted_cfm_loss(velocity, x1_all[idx], c_all[idx], w_all[idx], gen)

    return list(trainer.fit(loss_fn).losses)


def _fit_ratio(
    x0: Tensor,
    x1: Tensor,
    w0: Tensor,
    w1: Tensor,
    config: ClassifierConfig,
    seed: int,
) -> Classifier:
    """A classifier of class 1 against class 0 (ratio p1/p0 of normalised densities)."""
    return Classifier(x0.shape[1], _with_seed(config, seed)).fit(x0, x1, w0, w1)


def _with_seed(config: ClassifierConfig, seed: int) -> ClassifierConfig:
    settings = {f.name: getattr(config, f.name) for f in fields(config)}
    settings["seed"] = seed
    return ClassifierConfig(**settings)


def _held_out_auc(
    x0: Tensor, x1: Tensor, w0: Tensor, w1: Tensor, config: ClassifierConfig, seed: int
) -> tuple[Classifier, float, float]:
    """Fit on 4/5 of each sample, return (classifier, AUC on the other fifth, standard
    error of the AUC for indistinguishable samples, from the Kish effective counts)."""
    gen = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[Tensor, Tensor]:
        perm = torch.randperm(n, generator=gen).to(x0.device)
        cut = max(1, n // 5)
        return perm[cut:], perm[:cut]

    tr0, te0 = split(x0.shape[0])
    tr1, te1 = split(x1.shape[0])
    clf = _fit_ratio(x0[tr0], x1[tr1], w0[tr0], w1[tr1], config, seed)
    scores = torch.cat([clf.probability(x0[te0]), clf.probability(x1[te1])])
    labels = torch.cat(
        [torch.zeros(te0.shape[0], dtype=torch.bool), torch.ones(te1.shape[0], dtype=torch.bool)]
    ).to(scores.device)
    wt0, wt1 = w0[te0], w1[te1]
    area = auc(scores, labels, torch.cat([wt0, wt1]).to(scores.device))
    n0 = float(wt0.sum() ** 2 / (wt0**2).sum())
    n1 = float(wt1.sum() ** 2 / (wt1**2).sum())
    error = math.sqrt((n0 + n1 + 1) / (12 * n0 * n1))
    return clf, area, error


def unfold_generative(
    inputs: UnfoldingInputs, config: GenerativeConfig | None = None, seed: int = 0
) -> UnfoldedResult:
    """Generative unfolding of ``inputs.data_reco`` to parton level (see the module doc).

    Args:
        inputs: simulation and measured data (validated here).
        config: :class:`GenerativeConfig` (defaults if None).
        seed: seeds every network, classifier, draw and bootstrap.

    Returns:
        :class:`~unfolding.data.UnfoldedResult` (method "generative") with n = n_data *
        samples_per_event sampled events (float64, inputs' units, on the inputs' device),
        weights in data units, and ensemble x bootstrap replicas. ``info`` holds the
        trained :class:`GenerativeModel` ("model"; ``model.save(path)`` keeps it), the
        prior iterations ("iterations": one dict per classifier test with "auc",
        "auc_error", "z" = (auc - 1/2) / auc_error, "action" ("update" or "stop"), and for
        updates "exponent" and "contraction"), "n_iterations" (prior updates done),
        "converged" (the rule stopped it), "stopping_rule", "fake_correction" and
        "efficiency_correction" (how, or "skipped: ..."), "efficiency_clipped_fraction",
        "mean_fiducial_probability", "final_loss" and "timings_s" (per stage and total).

    Raises:
        UnfoldingError: invalid inputs or configuration.
    """
    config = config or GenerativeConfig()
    inputs.validate()
    start = time.perf_counter()
    timings: dict[str, float] = {}
    device = inputs.device
    gen = seed_everything(seed, device)
    clf_cfg: ClassifierConfig = config.classifier  # type: ignore[assignment]

    pass_t, pass_r = inputs.sim_pass_truth, inputs.sim_pass_reco
    both = pass_t & pass_r
    w_sim = inputs.sim_weights
    has_fakes = bool((pass_r & ~pass_t).any())
    has_misses = bool((pass_t & ~pass_r).any())
    model = GenerativeModel(
        inputs.sim_truth.shape[1],
        inputs.sim_reco.shape[1],
        config,
        fakes=has_fakes,
        efficiency=has_misses,
        truth_names=inputs.truth_names,
        reco_names=inputs.reco_names,
    ).to(device)
    info: dict[str, object] = {"seed": seed}

    # standardisation from the response events
    t_mean, t_std = _standardisation(inputs.sim_truth[both], w_sim[both])
    r_mean, r_std = _standardisation(inputs.sim_reco[both], w_sim[both])
    model.truth_mean.copy_(t_mean)
    model.truth_std.copy_(t_std)
    model.reco_mean.copy_(r_mean)
    model.reco_std.copy_(r_std)
    z_truth = (inputs.sim_truth[both] - t_mean) / t_std
    z_reco = (inputs.sim_reco[both] - r_mean) / r_std

    def fit_fakes(prior: Tensor) -> None:
        """Fake classifier on reco-passing simulation: fiducial (class 1) vs fakes."""
        assert model.fake_classifier is not None
        w_true = w_sim[both] * prior
        w_fake = w_sim[pass_r & ~pass_t]
        x_true, x_fake = inputs.sim_reco[both], inputs.sim_reco[pass_r & ~pass_t]
        clf = _fit_ratio(x_fake, x_true, w_fake, w_true, clf_cfg, seed + 101)
        model.fake_classifier.load_state_dict(clf.state_dict())
        model.fake_odds.fill_(float(w_true.sum() / w_fake.sum()))

    # the prior weights live on the response events (a function of their truth)
    prior = torch.ones(int(both.sum()), dtype=torch.float64, device=device)
    tick = time.perf_counter()
    if has_fakes:
        fit_fakes(prior)
        info["fake_correction"] = "classifier P(fiducial | reco) on reco-passing simulation"
    else:
        info["fake_correction"] = "skipped: no fakes in the simulation"
    if has_misses:
        w_pass, w_miss = w_sim[both], w_sim[pass_t & ~pass_r]
        clf = _fit_ratio(
            inputs.sim_truth[pass_t & ~pass_r], inputs.sim_truth[both], w_miss, w_pass,
            clf_cfg, seed + 202,
        )  # fmt: skip
        assert model.efficiency_classifier is not None
        model.efficiency_classifier.load_state_dict(clf.state_dict())
        model.efficiency_odds.fill_(float(w_pass.sum() / w_miss.sum()))
        info["efficiency_correction"] = "classifier eps(truth) on fiducial simulation, 1/eps"
    else:
        info["efficiency_correction"] = "skipped: full efficiency in the simulation"
    timings["corrections_s"] = time.perf_counter() - tick

    w_both = w_sim[both]
    velocity = model.members[0]
    tick = time.perf_counter()
    losses = _train_velocity(
        velocity, z_truth, z_reco, w_both, steps=config.steps,
        learning_rate=config.learning_rate, config=config, gen=gen,
    )  # fmt: skip
    timings["training_s"] = time.perf_counter() - tick
    info["final_loss"] = sum(losses[-50:]) / len(losses[-50:])

    def unfold_once() -> tuple[Tensor, Tensor]:
        """Nominal-network unfolding of the data: (truth (n, d), weights (n,) without the
        efficiency correction, i.e. describing the reco-passing part of the fiducial
        events)."""
        k = config.iteration_samples_per_event
        truth = model.sample(inputs.data_reco, member=0, samples_per_event=k, generator=gen)
        p_fid = model.fiducial_probability(inputs.data_reco)
        w = (inputs.data_weights * p_fid / k).repeat_interleave(k)
        return truth, w

    iterations: list[dict[str, object]] = []
    converged = config.max_iterations == 0
    tick = time.perf_counter()
    unfolded, unfolded_w = unfold_once()
    # The classifier compares reco-passing truth on both sides (response events with the
    # prior weights; unfolded events without 1/eps): the ratio p_unfolded/p_prior is the
    # same as in the whole fiducial space, without the noise of the efficiency weights.
    sim_truth_both = inputs.sim_truth[both]
    previous_log_ratio: Tensor | None = None
    exponent = 1.0
    for it in range(1, config.max_iterations + 1):
        clf, area, error = _held_out_auc(
            sim_truth_both, unfolded, w_both * prior, unfolded_w, clf_cfg, seed + 1000 + it
        )
        z = (area - 0.5) / error
        record: dict[str, object] = {"iteration": it, "auc": area, "auc_error": error, "z": z}
        iterations.append(record)
        logger.debug("generative prior iteration %d: AUC %.4f +- %.4f", it, area, error)
        if z < config.auc_sigma and it > config.min_iterations:
            converged = True
            record["action"] = "stop"
            break
        log_ratio = clf.likelihood_ratio(sim_truth_both, clip=config.prior_clip).to(device).log()
        weight = w_both * prior
        log_ratio = log_ratio - (weight * log_ratio).sum() / weight.sum()
        if config.accelerate and previous_log_ratio is not None:
            # The iteration is a contraction d -> (1 - exponent (1 - F')) d of the prior's
            # log-distance d to the fixed point; the projection of this step's log-ratio
            # on the last one measures that factor, and exponent / (1 - factor) makes the
            # next step land on the fixed point (Aitken's extrapolation, per direction).
            factor = float(
                (weight * log_ratio * previous_log_ratio).sum()
                / (weight * previous_log_ratio**2).sum()
            )
            exponent = min(config.max_exponent, max(1.0, exponent / max(1e-6, 1.0 - factor)))
            record["contraction"] = factor
        record["exponent"] = exponent
        previous_log_ratio = log_ratio
        prior = prior * torch.exp(exponent * log_ratio).clamp(
            1 / config.prior_clip, config.prior_clip
        )
        prior = prior * (w_both.sum() / (w_both * prior).sum())  # keep the total weight
        record["action"] = "update"
        if has_fakes and config.refit_fakes:
            fit_fakes(prior)
        _train_velocity(
            velocity, z_truth, z_reco, w_both * prior, steps=config.finetune_steps,
            learning_rate=config.finetune_learning_rate, config=config, gen=gen,
        )  # fmt: skip
        unfolded, unfolded_w = unfold_once()
    timings["iterations_s"] = time.perf_counter() - tick
    info["iterations"] = iterations
    info["n_iterations"] = sum(1 for r in iterations if r["action"] != "stop")
    info["converged"] = converged
    info["stopping_rule"] = (
        f"after >= {config.min_iterations} prior updates, held-out AUC(unfolded vs prior) "
        f"< 1/2 + {config.auc_sigma} sigma; at most {config.max_iterations} updates"
    )

    # ensemble
    tick = time.perf_counter()
    trained = copy.deepcopy(velocity.state_dict())
    for m in range(config.ensemble):
        net = model.members[m]
        member_gen = torch.Generator(device=device).manual_seed(seed + 7919 * (m + 1))
        w_member = w_both * prior
        if config.simulation_bootstrap and config.ensemble > 1:
            w_member = w_member * torch.poisson(torch.ones_like(w_member), generator=member_gen)
        if config.ensemble_from_scratch and m > 0:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + m)
                fresh = model._new_velocity().to(device)
            net.load_state_dict(fresh.state_dict())
            steps, lr = config.steps, config.learning_rate
        else:
            net.load_state_dict(trained)
            steps, lr = config.finetune_steps, config.finetune_learning_rate
        if config.ensemble > 1:
            _train_velocity(
                net, z_truth, z_reco, w_member, steps=steps, learning_rate=lr,
                config=config, gen=member_gen,
            )  # fmt: skip
    timings["ensemble_s"] = time.perf_counter() - tick
    model.eval()
    info["timings_s"] = timings
    result = model.unfold(inputs.data_reco, inputs.data_weights, seed=seed + 31, info=info)
    timings["sampling_s"] = float(result.info.pop("sampling_s"))  # type: ignore[arg-type]
    timings["total_s"] = time.perf_counter() - start
    result.info["model"] = model
    return result
