r"""Train a Bayesian (or ensemble) flow-matching generator on events; sample new events.

:func:`train_generator` turns unweighted events into standardised features
(:class:`~evgen.generators.preprocessing.EventPreprocessing`) and trains one
conditional flow-matching velocity field (arXiv:2210.02747) on all of them, the
topology (subprocess / multiplicity) entering as a one-hot context. Topologies with
fewer features than the largest are zero-padded; the padded coordinates are masked
out of the base sample, the velocity and the loss, so the network sees exact zeros
there in training and in sampling.

:meth:`GeneratorModel.sample` draws the topology of each event from the training
sample's rates (multinomially), a standard-normal base point, integrates the ODE
dx/dt = v(x, t, c) from t = 0 to 1 (fixed-step RK4 by default, batched), maps the
features back to four-momenta in float64 (the one place where the network's dtype is
converted) and draws the azimuthal orientation uniformly. Events beyond the beam
energy (x1 or x2 > 1, when the beam energies are known) or non-finite are redrawn, so
every returned event is physical; the redrawn fraction is logged.

Network-weight samples. ``weight_sample=k`` generates the whole sample with one
network: the Bayesian network's k-th weight draw (seeded by the model's seed and k, so
reproducible, any k >= 0) or the ensemble's member k (0 <= k < n_members).
``weight_sample=None`` samples the predictive distribution: the events are split
equally between the first ``n_members`` weight samples and shuffled. Histograms of the
samples k = 0..K-1 give the network's error band.

What generated events carry: momenta (GeV, float64), PDG ids, statuses, mothers and
masses of their topology; weights sigma / n (pb) so that they sum to the training
sample's cross section, as unweighted ``evgen run`` events; the topology's most
frequent process id; ``alpha_s``, ``alpha_qed`` the training sample's means; ``scale``
the training sample's value when it was fixed, else half the sum of the final-state
transverse masses (MadGraph's ``dynamical_scale_choice`` 3). Colours are zero: the
process's matrix element assigns colour flows (and, with ``merge_partons``,
flavours) afterwards.

Example:
    >>> model = train_generator(events, GeneratorConfig(steps=2000),
    ...                         cross_section_pb=812.0)            # doctest: +SKIP
    >>> new = model.sample(100_000, seed=1)                        # Events
    >>> band = [model.sample(100_000, seed=1, weight_sample=k) for k in range(10)]
    >>> model.save("zjets.generator")
    >>> again = GeneratorModel.load("zjets.generator")
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import torch
from torch import Tensor, nn

from evgen.events import Events
from evgen.generators.bayesian import (
    BayesianVelocityNet,
    VelocityEnsemble,
    bayesian_flow_matching_loss,
    sample_weights,
    set_weight_mode,
)
from evgen.generators.preprocessing import (
    EventPreprocessing,
    GeneratorError,
    PreprocessingConfig,
    Topology,
)
from evgen.io.atomic import atomic_output
from evgen.ml.cfm import flow_matching_loss
from evgen.ml.ode import ODEOptions, odeint
from evgen.ml.training import ProgressCallback, Trainer, TrainingConfig, seed_everything

__all__ = [
    "MODEL_FORMAT",
    "MODEL_VERSION",
    "GeneratorConfig",
    "GeneratorModel",
    "train_generator",
]

logger = logging.getLogger(__name__)

#: the ``format`` entry of a model file
MODEL_FORMAT = "evgen-generator"
#: the model-file layout version; files of another version are refused
MODEL_VERSION = 1
#: rounds of redrawing events beyond the beam energy before giving up
_MAX_REDRAW_ROUNDS = 50

NetworkKind = Literal["bayesian", "ensemble"]


@dataclass(frozen=True)
class GeneratorConfig:
    """How to build, train and sample a generator.

    Attributes:
        network: ``"bayesian"`` (variational Bayesian layers) or ``"ensemble"``.
        hidden: width of the hidden layers.
        hidden_layers: number of hidden layers.
        time_frequencies: Fourier frequencies of the time embedding.
        n_members: ensemble members; for the Bayesian network the number of weight
            samples mixed by ``sample(weight_sample=None)``.
        prior_std: standard deviation of the Bayesian weights' Gaussian prior.
        kl_scale: weight c of the KL term, c KL / n_train (1: the ELBO normalisation).
        steps: optimiser steps.
        batch_size: events per step (per member for an ensemble).
        learning_rate: peak AdamW learning rate (cosine schedule).
        weight_decay: AdamW decoupled weight decay.
        ode_method: ``"rk4"`` (fixed steps; default) or ``"dopri5"`` (adaptive).
        ode_steps: RK4 steps from t = 0 to 1 (4 network evaluations each).
        ode_rtol, ode_atol: dopri5 tolerances.
        seed: seeds initialisation, batches and the Bayesian weight draws.
        device: where to train and sample (``"cpu"``, ``"cuda"``, ...).
        dtype: the network's dtype (``"float32"`` or ``"float64"``); momenta are float64.
        sample_batch_size: events per ODE solve in :meth:`GeneratorModel.sample`.
        preprocessing: the feature options.
    """

    network: NetworkKind = "bayesian"
    hidden: int = 128
    hidden_layers: int = 3
    time_frequencies: int = 4
    n_members: int = 10
    prior_std: float = 1.0
    kl_scale: float = 1.0
    steps: int = 20_000
    batch_size: int = 1024
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    ode_method: Literal["rk4", "dopri5"] = "rk4"
    ode_steps: int = 20
    ode_rtol: float = 1e-5
    ode_atol: float = 1e-6
    seed: int = 0
    device: str = "cpu"
    dtype: Literal["float32", "float64"] = "float32"
    sample_batch_size: int = 10_000
    preprocessing: PreprocessingConfig = field(default_factory=PreprocessingConfig)

    def __post_init__(self) -> None:
        problems = []
        if self.network not in ("bayesian", "ensemble"):
            problems.append(f"network must be 'bayesian' or 'ensemble', got {self.network!r}")
        for name in ("hidden", "n_members", "steps", "batch_size", "ode_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.sample_batch_size < 1:
            problems.append(f"sample_batch_size must be >= 1, got {self.sample_batch_size}")
        if self.hidden_layers < 0 or self.time_frequencies < 0:
            problems.append("hidden_layers and time_frequencies must be >= 0")
        if not self.prior_std > 0 or self.kl_scale < 0:
            problems.append(
                f"need prior_std > 0 and kl_scale >= 0, got {self.prior_std}, {self.kl_scale}"
            )
        if not self.learning_rate > 0 or self.weight_decay < 0:
            problems.append("need learning_rate > 0 and weight_decay >= 0")
        if self.ode_method not in ("rk4", "dopri5"):
            problems.append(f"ode_method must be 'rk4' or 'dopri5', got {self.ode_method!r}")
        if self.dtype not in ("float32", "float64"):
            problems.append(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.seed < 0:
            problems.append(f"seed must be >= 0, got {self.seed}")
        if problems:
            raise GeneratorError("generator config: " + "; ".join(problems))

    @property
    def torch_dtype(self) -> torch.dtype:
        """The network's torch dtype."""
        return torch.float32 if self.dtype == "float32" else torch.float64

    @property
    def ode_options(self) -> ODEOptions:
        """Solver options of sampling."""
        return ODEOptions(
            method=self.ode_method, steps=self.ode_steps, rtol=self.ode_rtol, atol=self.ode_atol
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a model file."""
        data = asdict(self)
        data["preprocessing"] = {
            "resonances": [list(p) for p in self.preprocessing.resonances],
            "merge_partons": self.preprocessing.merge_partons,
            "pair_balance": self.preprocessing.pair_balance,
            "mass_maps": [list(m) for m in self.preprocessing.mass_maps],
        }
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        """Inverse of :meth:`to_dict`; unknown keys are refused."""
        data = dict(data)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise GeneratorError(f"generator config: unknown keys {unknown}")
        pre = data.pop("preprocessing", None) or {}
        preprocessing = PreprocessingConfig(
            resonances=tuple((int(a), int(b)) for a, b in pre.get("resonances", ())),
            merge_partons=bool(pre.get("merge_partons", False)),
            pair_balance=bool(pre.get("pair_balance", False)),
            mass_maps=tuple(tuple(float(v) for v in m) for m in pre.get("mass_maps", ())),
        )
        return cls(**data, preprocessing=preprocessing)


class _MaskedField(nn.Module):
    """The velocity with padded features masked: v(x, t, c) * (c @ mask_table)."""

    def __init__(self, velocity: nn.Module, mask_table: Tensor) -> None:
        super().__init__()
        self.velocity = velocity
        self.register_buffer("mask_table", mask_table)

    def forward(self, x: Tensor, t: float | Tensor, context: Tensor) -> Tensor:
        return self.velocity(x, t, context) * (context @ self.mask_table)


def _build_field(config: GeneratorConfig, prep: EventPreprocessing) -> _MaskedField:
    options = {
        "context_dim": prep.n_topologies,
        "hidden": config.hidden,
        "hidden_layers": config.hidden_layers,
        "time_frequencies": config.time_frequencies,
        "dtype": config.torch_dtype,
    }
    velocity: nn.Module
    if config.network == "bayesian":
        velocity = BayesianVelocityNet(prep.dim, prior_std=config.prior_std, **options)  # type: ignore[arg-type]
    else:
        velocity = VelocityEnsemble(config.n_members, prep.dim, **options)  # type: ignore[arg-type]
    return _MaskedField(velocity, prep.mask.to(config.torch_dtype))


def _weight_seed(seed: int, k: int) -> int:
    """Seed of the Bayesian network's k-th weight draw."""
    return (seed * 1_000_003 + 7_919 * (k + 1)) % (2**63 - 1)


def _transverse_mass_sum(p: Tensor) -> Tensor:
    mt2 = (p[..., 0] + p[..., 3]) * (p[..., 0] - p[..., 3])
    return torch.sqrt(mt2.clamp(min=0)).sum(dim=-1)


class GeneratorModel:
    """A trained generator: preprocessing, network, configuration, cross section.

    Build it with :func:`train_generator` or :meth:`load`.

    Attributes:
        preprocessing: the :class:`EventPreprocessing` (topologies, rates, scaling).
        network: the masked velocity field (a module on ``config.device``).
        config: the :class:`GeneratorConfig` it was trained with.
        cross_section_pb: the training sample's cross section in pb.
        process_card: the card it was trained for (a JSON-compatible dict) or None.
        beam_energy_gev: the beam energies (GeV) that bound x1, x2 <= 1, or None.
        event_defaults: ``alpha_s``, ``alpha_qed`` and ``fixed_scale`` (GeV or None)
            written on generated events.
        training: ``n_events``, ``steps``, ``elapsed_s``, ``final_loss`` of training.
    """

    def __init__(
        self,
        preprocessing: EventPreprocessing,
        network: nn.Module,
        config: GeneratorConfig,
        *,
        cross_section_pb: float,
        process_card: dict[str, Any] | None = None,
        beam_energy_gev: tuple[float, float] | None = None,
        event_defaults: dict[str, Any] | None = None,
        training: dict[str, Any] | None = None,
    ) -> None:
        self.preprocessing = preprocessing
        self.network = network
        self.config = config
        self.cross_section_pb = float(cross_section_pb)
        self.process_card = process_card
        self.beam_energy_gev = beam_energy_gev
        self.event_defaults = event_defaults or {
            "alpha_s": 0.118,
            "alpha_qed": 1 / 132.507,
            "fixed_scale": None,
        }
        self.training = training or {}
        self.sampling_stats = {"drawn": 0, "outside_cuts": 0}
        self._acceptances: dict[int, Callable[[Tensor], Tensor] | None] = {}

    @property
    def device(self) -> torch.device:
        """Where the network lives."""
        return next(self.network.parameters()).device

    @property
    def n_members(self) -> int:
        """Ensemble members, or Bayesian weight samples mixed by ``weight_sample=None``."""
        return self.config.n_members

    # ------------------------------------------------------------------ sampling

    def _use_weight_sample(self, k: int) -> None:
        velocity = self.network.velocity
        if isinstance(velocity, VelocityEnsemble):
            velocity.select(k)
        else:
            generator = torch.Generator().manual_seed(_weight_seed(self.config.seed, k))
            sample_weights(self.network, generator)

    def _integrate(self, x0: Tensor, context: Tensor) -> Tensor:
        """ODE from the base (t = 0) to the data (t = 1), in chunks."""
        options = self.config.ode_options
        out = []
        size = self.config.sample_batch_size
        for start in range(0, x0.shape[0], size):
            xs, cs = x0[start : start + size], context[start : start + size]

            def rhs(t: float, x: Tensor, cs: Tensor = cs) -> Tensor:
                return self.network(x, t, cs)

            with torch.no_grad():
                out.append(odeint(rhs, xs, 0.0, 1.0, options).y)
        return torch.cat(out) if out else x0

    def _acceptance(self, t: int) -> Callable[[Tensor], Tensor] | None:
        """The card's generation cuts for topology ``t``, a function of its momenta
        (n, n_particles, 4) in GeV returning a boolean mask (n,), or None without a card.

        The training events all pass the cuts of the card that made them (``evgen run``
        generates inside them), so the target distribution is zero outside; a network's
        density leaks over the edges (a pT threshold, the m_ll window) and those events
        are drawn again, which keeps every generated event inside the same fiducial
        space as the training sample and the cross section meaningful. Cuts are applied
        to the stable outgoing particles (jets merged as gluons are jets), as
        :class:`~evgen.cuts.Cuts` does in ``evgen run``, with each decay-chain
        resonance's mass inside MadGraph's ``bwcutoff`` window.
        """
        if t in self._acceptances:
            return self._acceptances[t]
        accept = None
        if isinstance(self.process_card, dict) and "cuts" in self.process_card:
            accept = _card_acceptance(self.process_card, self.preprocessing.topologies[t])
        self._acceptances[t] = accept
        return accept

    def _draw(self, topology: Tensor, generator: torch.Generator) -> tuple[list[Tensor], int]:
        """Physical momenta for events of the given topologies (n,), per topology."""
        prep = self.preprocessing
        dtype, device = self.config.torch_dtype, self.device
        n = topology.shape[0]
        result = [
            torch.empty(
                int((topology == t).sum()), prep.topologies[t].n_particles, 4, dtype=torch.float64
            )
            for t in range(prep.n_topologies)
        ]
        # Position of each event within its topology's block.
        slot = torch.empty(n, dtype=torch.int64)
        for t in range(prep.n_topologies):
            sel = topology == t
            slot[sel] = torch.arange(int(sel.sum()))
        pending = torch.arange(n)
        redrawn = 0
        for _round in range(_MAX_REDRAW_ROUNDS):
            if pending.numel() == 0:
                break
            topo = topology[pending]
            mask = prep.mask[topo]
            x0 = torch.randn(pending.numel(), prep.dim, generator=generator, dtype=torch.float64)
            angle = (
                2 * math.pi * torch.rand(pending.numel(), generator=generator, dtype=torch.float64)
            )
            context = nn.functional.one_hot(topo, prep.n_topologies).to(torch.float64)
            x1 = self._integrate(
                (x0 * mask).to(device=device, dtype=dtype), context.to(device=device, dtype=dtype)
            ).cpu()
            failed = []
            for t in torch.unique(topo).tolist():
                sel = topo == t
                p = prep.momenta(x1[sel], t, angle[sel])
                ok = torch.isfinite(p).all(dim=(1, 2))
                if self.beam_energy_gev is not None:
                    ok &= (p[:, 0, 0] <= self.beam_energy_gev[0]) & (
                        p[:, 1, 0] <= self.beam_energy_gev[1]
                    )
                accept = self._acceptance(t)
                if accept is not None:
                    inside = accept(p)
                    self.sampling_stats["outside_cuts"] += int((ok & ~inside).sum())
                    ok &= inside
                self.sampling_stats["drawn"] += int(sel.sum())
                rows = pending[sel]
                result[t][slot[rows[ok]]] = p[ok]
                failed.append(rows[~ok])
            pending = torch.cat(failed) if failed else pending[:0]
            redrawn += pending.numel()
        if pending.numel():
            raise GeneratorError(
                f"sampling: {pending.numel()} events still outside the card's cuts, beyond "
                f"the beam energy or non-finite after {_MAX_REDRAW_ROUNDS} rounds of "
                "redrawing; the generator is badly trained"
            )
        return result, redrawn

    def sample(
        self, n: int, seed: int = 0, weight_sample: int | None = None
    ) -> Events | list[Events]:
        """Generate ``n`` events.

        Args:
            n: number of events (>= 1).
            seed: seeds the topologies, base points and azimuthal angles (on the CPU,
                so a seed gives the same events on every device up to the network's
                rounding).
            weight_sample: None: the predictive distribution (events split equally
                between weight samples 0..n_members-1); k: the whole sample from the
                k-th network-weight sample (Bayesian: any k >= 0; ensemble: member k).

        Returns:
            One :class:`~evgen.events.Events` when all topologies have the same number
            of particles, else a list with one per multiplicity in the order of the
            topologies (as :func:`~evgen.io.read_root` returns them; the writers take
            either). Weights are cross_section_pb / n each. Every event passes the
            card's cuts (:meth:`_acceptance`; ``sampling_stats`` counts the draws and
            those redrawn for falling outside).

        Raises:
            GeneratorError: n < 1, a bad ``weight_sample``, or events that stay beyond
                the beam energy after redrawing.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise GeneratorError(f"sample: the number of events must be >= 1, got {n!r}")
        is_ensemble = isinstance(self.network.velocity, VelocityEnsemble)
        if weight_sample is not None and (
            weight_sample < 0 or (is_ensemble and weight_sample >= self.n_members)
        ):
            allowed = f"0..{self.n_members - 1}" if is_ensemble else ">= 0"
            raise GeneratorError(f"sample: weight_sample must be {allowed}, got {weight_sample}")
        prep = self.preprocessing
        self.sampling_stats = {"drawn": 0, "outside_cuts": 0}
        generator = torch.Generator().manual_seed(seed)
        k_all = self.n_members
        plan = (
            [(weight_sample, n)]
            if weight_sample is not None
            else [(k, n // k_all + (k < n % k_all)) for k in range(k_all)]
        )
        per_topology: list[list[Tensor]] = [[] for _ in prep.topologies]
        redrawn = 0
        try:
            for k, n_k in plan:
                if n_k == 0:
                    continue
                self._use_weight_sample(k)
                topology = torch.multinomial(prep.rates, n_k, replacement=True, generator=generator)
                momenta, r = self._draw(topology, generator)
                redrawn += r
                for t, p in enumerate(momenta):
                    per_topology[t].append(p)
        finally:
            if not is_ensemble:
                set_weight_mode(self.network, "local")
        if redrawn:
            logger.info(
                "sampling: redrew %d of %d events (outside the card's cuts: %d; beyond the "
                "beam energy or non-finite: the rest)",
                redrawn,
                n,
                self.sampling_stats["outside_cuts"],
            )
        return self._to_events(per_topology, n, generator)

    def _to_events(
        self, per_topology: list[list[Tensor]], n_total: int, generator: torch.Generator
    ) -> Events | list[Events]:
        prep = self.preprocessing
        by_size: dict[int, list[Events]] = {}
        for t, parts in enumerate(per_topology):
            topo = prep.topologies[t]
            by_size.setdefault(topo.n_particles, [])
            p = (
                torch.cat(parts)
                if parts
                else torch.empty(0, topo.n_particles, 4, dtype=torch.float64)
            )
            by_size[topo.n_particles].append(self._events_of(t, p, n_total))
        out = []
        for batches in by_size.values():
            events = Events.concatenate(batches)
            order = torch.randperm(len(events), generator=generator)
            out.append(events[order].to(self.device))
        return out[0] if len(out) == 1 else out

    def _events_of(self, t: int, p: Tensor, n_total: int) -> Events:
        topo = self.preprocessing.topologies[t]
        n, k = p.shape[0], topo.n_particles
        f64, i64 = torch.float64, torch.int64
        masses = torch.tensor(topo.masses, dtype=f64).expand(n, k).clone()
        for r in topo.resonances:
            m2 = p[:, r, 0] ** 2 - (p[:, r, 1:] ** 2).sum(-1)
            masses[:, r] = torch.sqrt(m2.clamp(min=0))
        fixed_scale = self.event_defaults.get("fixed_scale")
        stable = list(topo.stable)
        scale = (
            torch.full((n,), float(fixed_scale), dtype=f64)
            if fixed_scale is not None
            else 0.5 * _transverse_mass_sum(p[:, stable])
        )
        return Events(
            momenta=p,
            pdg=torch.tensor(topo.pdg, dtype=i64).expand(n, k).clone(),
            status=torch.tensor(topo.status, dtype=i64).expand(n, k).clone(),
            mothers=torch.tensor(topo.mothers, dtype=i64).reshape(k, 2).expand(n, k, 2).clone(),
            colours=torch.zeros(n, k, 2, dtype=i64),
            masses=masses,
            spins=torch.full((n, k), 9.0, dtype=f64),
            weights=torch.full((n,), self.cross_section_pb / n_total, dtype=f64),
            process_id=torch.full((n,), topo.process_id, dtype=i64),
            scale=scale,
            alpha_s=torch.full((n,), float(self.event_defaults["alpha_s"]), dtype=f64),
            alpha_qed=torch.full((n,), float(self.event_defaults["alpha_qed"]), dtype=f64),
            channel=torch.zeros(n, dtype=i64),
        )

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model file atomically (it appears complete or not at all).

        The file is a ``torch.save`` dictionary (read back with ``weights_only=True``):
        ``format`` (:data:`MODEL_FORMAT`), ``version`` (:data:`MODEL_VERSION`),
        ``config``, ``preprocessing``, ``network`` (state dict), ``cross_section_pb``,
        ``process_card_json``, ``beam_energy_gev``, ``event_defaults``, ``training``.

        Raises:
            OutputError: the file cannot be written (the message names it).
        """
        payload = {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "config": self.config.to_dict(),
            "preprocessing": self.preprocessing.to_dict(),
            "network": {k: v.detach().cpu() for k, v in self.network.state_dict().items()},
            "cross_section_pb": self.cross_section_pb,
            "process_card_json": json.dumps(self.process_card),
            "beam_energy_gev": list(self.beam_energy_gev) if self.beam_energy_gev else None,
            "event_defaults": dict(self.event_defaults),
            "training": dict(self.training),
        }
        with atomic_output(path) as tmp:
            torch.save(payload, tmp)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, device: str | torch.device | None = None
    ) -> GeneratorModel:
        """Read a file written by :meth:`save`.

        Args:
            path: the model file.
            device: where to put the network (default: the saved ``config.device``,
                or the CPU when that is not available).

        Raises:
            GeneratorError: the file is missing or unreadable, not an evgen generator,
                of another format version, or inconsistent; the message names the file.
        """
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError as error:
            raise GeneratorError(f"generator model file {path} does not exist") from error
        except Exception as error:  # pickle, zip and OS errors
            raise GeneratorError(
                f"cannot read generator model file {path}: not a torch file ({error})"
            ) from error
        if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
            raise GeneratorError(f"{path} is not an evgen generator model file")
        if payload.get("version") != MODEL_VERSION:
            raise GeneratorError(
                f"{path} is a generator model file of format version {payload.get('version')}; "
                f"this evgen reads version {MODEL_VERSION}: retrain the generator"
            )
        try:
            config = GeneratorConfig.from_dict(payload["config"])
            if device is not None:
                config = GeneratorConfig.from_dict({**config.to_dict(), "device": str(device)})
            elif config.device.startswith("cuda") and not torch.cuda.is_available():
                config = GeneratorConfig.from_dict({**config.to_dict(), "device": "cpu"})
            prep = EventPreprocessing.from_dict(payload["preprocessing"])
            network = _build_field(config, prep)
            network.load_state_dict(payload["network"])
            beams = payload["beam_energy_gev"]
            model = cls(
                prep,
                network.to(config.device),
                config,
                cross_section_pb=float(payload["cross_section_pb"]),
                process_card=json.loads(payload["process_card_json"]),
                beam_energy_gev=(float(beams[0]), float(beams[1])) if beams else None,
                event_defaults=dict(payload["event_defaults"]),
                training=dict(payload["training"]),
            )
        except GeneratorError as error:
            raise GeneratorError(f"generator model file {path}: {error}") from error
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise GeneratorError(
                f"generator model file {path} is inconsistent ({type(error).__name__}: {error})"
            ) from error
        return model


def _card_acceptance(card: dict[str, Any], topology: Topology) -> Callable[[Tensor], Tensor]:
    """The cut function of :meth:`GeneratorModel._acceptance` for one topology: the
    cuts ``evgen run`` applies (:class:`~evgen.setup.WindowCuts`), on its stable
    outgoing particles, each resonance a window on the sum of its stable descendants."""
    from evgen.card import parse_card
    from evgen.setup import WindowCuts

    run_card = parse_card(card, "the generator's card")
    stable = list(topology.stable)
    params = run_card.model.parameters()
    windows = []
    for r in topology.resonances:
        width = params.width(abs(topology.pdg[r]))
        if width > 0:
            legs = tuple(stable.index(i) for i in topology.descendants(r))
            mass = params.mass(abs(topology.pdg[r]))
            windows.append((legs, mass, run_card.cuts.bwcutoff * width))
    cuts = WindowCuts(
        run_card.cuts,
        tuple(topology.pdg[i] for i in stable),
        run_card.model.n_flavours,
        inside=tuple(windows),
    )
    return lambda p: cuts(p[:, stable])


def _check_training_events(batches: list[Events]) -> tuple[int, dict[str, Any]]:
    n = sum(len(b) for b in batches)
    if n == 0:
        raise GeneratorError("train_generator: no events to learn from")
    weights = torch.cat([b.weights.detach().cpu().to(torch.float64) for b in batches])
    w_max, w_min = float(weights.max()), float(weights.min())
    if not (w_min > 0 and w_max - w_min <= 1e-6 * w_max):
        raise GeneratorError(
            "train_generator: the events must be unweighted (equal positive weights), got "
            f"weights from {w_min:.6g} to {w_max:.6g} pb; unweight them first"
        )
    scale = torch.cat([b.scale.detach().cpu().to(torch.float64) for b in batches])
    fixed = float(scale.max() - scale.min()) <= 1e-9 * float(scale.abs().max())
    defaults = {
        "alpha_s": float(torch.cat([b.alpha_s.detach().cpu() for b in batches]).double().mean()),
        "alpha_qed": float(
            torch.cat([b.alpha_qed.detach().cpu() for b in batches]).double().mean()
        ),
        "fixed_scale": float(scale[0]) if fixed else None,
    }
    return n, defaults


def train_generator(
    events: Events | Sequence[Events],
    config: GeneratorConfig | None = None,
    *,
    cross_section_pb: float,
    process_card: dict[str, Any] | None = None,
    beam_energy_gev: tuple[float, float] | None = None,
    callback: ProgressCallback | None = None,
) -> GeneratorModel:
    """Train a generator on unweighted events.

    Args:
        events: one batch or batches of different multiplicities (as
            :func:`~evgen.io.read_root` returns them), unweighted.
        config: :class:`GeneratorConfig` (default: its defaults).
        cross_section_pb: the training sample's cross section in pb (> 0); generated
            events carry weights summing to it.
        process_card: the card, JSON-compatible, stored in the model file.
        beam_energy_gev: beam energies; generated events with x1 or x2 > 1 are redrawn.
        callback: receives :class:`~evgen.ml.TrainingProgress` every
            ``report_every`` steps; returning True stops training.

    Returns:
        The trained :class:`GeneratorModel`.

    Raises:
        GeneratorError: weighted, empty or unphysical events, a non-positive cross
            section, or a card that is not JSON-compatible.
        TrainingError: the loss became non-finite.
    """
    config = config or GeneratorConfig()
    if not (math.isfinite(cross_section_pb) and cross_section_pb > 0):
        raise GeneratorError(
            f"train_generator: cross_section_pb must be finite and > 0, got {cross_section_pb}"
        )
    if beam_energy_gev is not None and not all(e > 0 for e in beam_energy_gev):
        raise GeneratorError(f"train_generator: beam energies must be > 0, got {beam_energy_gev}")
    try:
        json.dumps(process_card)
    except (TypeError, ValueError) as error:
        raise GeneratorError(
            f"train_generator: process_card must be JSON-compatible ({error})"
        ) from error
    batches = [events] if isinstance(events, Events) else list(events)
    n_train, defaults = _check_training_events(batches)

    prep = EventPreprocessing.fit(batches, config.preprocessing)
    encoded = prep.encode(batches, check=False)  # fit checked every event
    device, dtype = torch.device(config.device), config.torch_dtype
    generator = seed_everything(config.seed, device)
    network = _build_field(config, prep).to(device)
    x_all = encoded.features.to(device=device, dtype=dtype)
    context_all = nn.functional.one_hot(encoded.topology.to(device), prep.n_topologies).to(dtype)
    mask_table = network.mask_table

    def batch() -> tuple[Tensor, Tensor, Tensor]:
        index = torch.randint(n_train, (config.batch_size,), generator=generator, device=device)
        x1, context = x_all[index], context_all[index]
        x0 = torch.randn(x1.shape, generator=generator, dtype=dtype, device=device)
        return x1, context, x0 * (context @ mask_table)

    velocity = network.velocity
    if isinstance(velocity, VelocityEnsemble):
        members = [_MaskedField(m, mask_table) for m in velocity.members]

        def loss_fn() -> Tensor:
            total = torch.zeros((), dtype=dtype, device=device)
            for member in members:
                x1, context, x0 = batch()
                total = total + flow_matching_loss(member, x1, context, x0=x0, generator=generator)
            return total / len(members)

    else:
        set_weight_mode(network, "local")

        def loss_fn() -> Tensor:
            x1, context, x0 = batch()
            return bayesian_flow_matching_loss(
                network,
                x1,
                context,
                n_train=n_train,
                kl_scale=config.kl_scale,
                x0=x0,
                generator=generator,
            )

    trainer = Trainer(
        network,
        TrainingConfig(
            steps=config.steps,
            learning_rate=config.learning_rate,
            weight_decay=config.weight_decay,
            report_every=max(1, min(100, config.steps // 20)),
        ),
    )
    result = trainer.fit(loss_fn, callback=callback)
    tail = result.losses[-min(100, len(result.losses)) :]
    training = {
        "n_events": n_train,
        "steps": result.steps,
        "elapsed_s": result.elapsed_s,
        "final_loss": sum(tail) / len(tail),
    }
    return GeneratorModel(
        prep,
        network,
        config,
        cross_section_pb=cross_section_pb,
        process_card=process_card,
        beam_energy_gev=tuple(beam_energy_gev) if beam_energy_gev else None,  # type: ignore[arg-type]
        event_defaults=defaults,
        training=training,
    )
