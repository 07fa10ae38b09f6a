"""OmniFold: unbinned unfolding by iterated classifier reweighting.

Andreassen, Komiske, Metodiev, Nachman, Thaler, Phys. Rev. Lett. 124 (2020) 182001,
arXiv:1911.09107; efficiency and acceptance as in the H1 measurement (arXiv:2108.12376)
and the ``omnifold`` package (step "1b").

Each simulated event i has a truth t_i and (if it passes the reco selection) a reco x_i
and a weight w_i. The *push* weights nu(t) start at 1. One iteration:

1. **Pull** (detector level): a classifier between the simulation passing both
   selections, weighted w nu, and the fake-subtracted data learns r(x) =
   p_data(x) / p_sim(x); the pulled weight of those events is omega = nu r(x), normalised
   so that their sum is the fake-subtracted data count.
   **1b, inefficiency**: events that pass the truth but not the reco selection have no x.
   They take their pulled weight from a truth-level function only
   (``miss_weights="truth_average"``, default): a classifier between the reco-passing
   events weighted w omega and w nu learns g(t) = E[r | t] (the mean pull of events with
   this truth), and a miss gets omega = nu g(t) (the factor by which IBU updates a truth
   bin). With ``miss_weights="push"`` a miss keeps omega = nu times the global change of
   the normalisation (the plain paper algorithm; it converges more slowly at low
   efficiency).
2. **Push** (parton level): a classifier between all truth-passing events weighted
   w omega and weighted w nu learns h(t); the new push weights are nu h(t), normalised to
   the sum of w omega (the unfolded number of fiducial events).

**Fakes** (events passing reco but not truth), two explicit treatments:

* ``fakes="simulation"`` (default): the simulation's fakes enter step 1 beside its real
  events, weighted w c with c = sum(w nu) / sum(w) over the real reco-passing events, so
  the overall fake fraction among reco-passing events stays the simulation's while the
  real events' shape follows the push weights; the data enter unsubtracted. The fake
  probability at reco level, F(x) / (F(x) + R_nu(x)), is thereby updated each iteration
  with the prior, and r(x) pulls only the real events.
* ``fakes="classifier"``: a classifier on the simulation's reco-passing events estimates
  f(x) = P(fake | x) once, before the iterations, and every data event enters step 1
  with weight w_data (1 - f(x)) (RooUnfold's "fake fraction times data", made
  unbinned). Like RooUnfold's, this fraction depends on the simulation's prior: where the
  data's real spectrum falls below the simulation's, too few fakes are subtracted.

Event weights may be negative in the simulation (the classifier's weighted loss takes
them as they are). The result is the simulation's truth-passing events with weights
w nu (data units); replicas rerun everything on a Poisson(1) bootstrap of the data
events with different classifier seeds (statistical + ensemble spread).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from torch import Tensor

from evgen.ml.classifier import Classifier, ClassifierConfig
from unfolding.data import UnfoldedResult, UnfoldingInputs
from unfolding.errors import UnfoldingError

__all__ = [
    "OmniFoldConfig",
    "fake_probability",
    "omnifold",
    "omnifold_weights",
    "unfold_omnifold",
]


@dataclass(frozen=True)
class OmniFoldConfig:
    """Settings of :func:`omnifold`.

    Attributes:
        iterations: number of (step 1, step 2) iterations.
        classifier: network and training settings of every classifier (its ``seed`` is
            the base seed; each classifier gets its own seed derived from it).
        miss_weights: how events failing the reco selection get their pulled weight:
            ``"truth_average"`` (step 1b classifier) or ``"push"``.
        fakes: ``"simulation"`` (fakes in step 1, see the module docstring),
            ``"classifier"`` (subtract a fixed P(fake|x) from the data weights) or
            ``"none"`` (the simulation has no fakes; fails if it has).
        clip: likelihood ratios are clipped to [1/clip, clip] (None: no clipping).
        replicas: number of bootstrap replicas (0: none).
        bootstrap_data: replicas resample the data (Poisson(1) weight per event); else
            they differ only by the classifier seeds (ensemble spread only).
        bootstrap_simulation: replicas also resample the simulation (Poisson(1) factor on
            each simulated event's weight), so the quoted errors include the finite
            simulation (response) statistics, as IBU's response toys do.
        seed: seed of the bootstrap weights.
        record_iterations: keep the weights after every iteration in
            ``info["weights_by_iteration"]`` (I, n) (and ``info["replica_weights_by_iteration"]``
            (I, R, n)), so one run gives the results after 1..I iterations.
    """

    iterations: int = 4
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    miss_weights: Literal["truth_average", "push"] = "truth_average"
    fakes: Literal["simulation", "classifier", "none"] = "simulation"
    clip: float | None = 1e3
    replicas: int = 0
    bootstrap_data: bool = True
    bootstrap_simulation: bool = True
    seed: int = 0
    record_iterations: bool = False

    def __post_init__(self) -> None:
        if self.iterations < 1:
            raise UnfoldingError(f"omnifold.iterations: must be >= 1, got {self.iterations}")
        if self.miss_weights not in ("truth_average", "push"):
            raise UnfoldingError(
                f"omnifold.miss_weights: must be 'truth_average' or 'push', got "
                f"{self.miss_weights!r}"
            )
        if self.fakes not in ("simulation", "classifier", "none"):
            raise UnfoldingError(
                f"omnifold.fakes: must be 'simulation', 'classifier' or 'none', got {self.fakes!r}"
            )
        if self.clip is not None and not self.clip > 1:
            raise UnfoldingError(f"omnifold.clip: must be > 1 or None, got {self.clip}")
        if self.replicas < 0:
            raise UnfoldingError(f"omnifold.replicas: must be >= 0, got {self.replicas}")


def _classifier(n: int, config: OmniFoldConfig, seed: int) -> Classifier:
    return Classifier(n, replace(config.classifier, seed=seed))


def _normalise(weights: Tensor, base: Tensor, total: Tensor) -> Tensor:
    """Scale ``weights`` so that sum(base * weights) = total."""
    s = (base * weights).sum()
    if not float(s) > 0:
        raise UnfoldingError(
            f"omnifold: the weighted sum became {float(s):.6g}; the simulation's weights "
            "cannot describe the data (check the selections and weights)"
        )
    return weights * (total / s)


def fake_probability(inputs: UnfoldingInputs, config: OmniFoldConfig, x: Tensor) -> Tensor:
    """P(fake | reco x) learned on the simulation's reco-passing events, (n,) float64.

    A classifier between non-fakes (class 0) and fakes (class 1) learns the ratio of the
    normalised densities, so P(fake | x) = F r / (F r + N), with F and N the total
    weights of fakes and non-fakes.
    """
    reco = inputs.sim_pass_reco
    fake = reco & ~inputs.sim_pass_truth
    real = reco & inputs.sim_pass_truth
    w = inputs.sim_weights
    clf = _classifier(inputs.sim_reco.shape[1], config, config.classifier.seed + 7919)
    clf.fit(inputs.sim_reco[real], inputs.sim_reco[fake], w[real], w[fake])
    ratio = clf.likelihood_ratio(x, clip=config.clip).to(x.device)
    n_fake, n_real = w[fake].sum(), w[real].sum()
    return n_fake * ratio / (n_fake * ratio + n_real)


def omnifold_weights(
    inputs: UnfoldingInputs,
    config: OmniFoldConfig,
    data_weights: Tensor | None = None,
    seed: int | None = None,
    fake_prob: Tensor | None = None,
) -> tuple[Tensor, dict[str, object]]:
    """Run the OmniFold iterations once; returns the push weights' product w nu on the
    simulation's truth-passing events, (n_truth_pass,) float64, data units, and info.

    Args:
        inputs: validated inputs.
        config: :class:`OmniFoldConfig`.
        data_weights: (n_data,) data weights to use (default ``inputs.data_weights``;
            the replicas pass bootstrapped ones).
        seed: base seed of the classifiers (default ``config.classifier.seed``).
        fake_prob: (n_data,) P(fake | x) of the data events (computed if None and the
            simulation has fakes).
    """
    start = time.perf_counter()
    seed = config.classifier.seed if seed is None else seed
    dw = inputs.data_weights if data_weights is None else data_weights
    pt, pr, w = inputs.sim_pass_truth, inputs.sim_pass_reco, inputs.sim_weights
    has_fakes = bool((pr & ~pt).any())
    if has_fakes:
        if config.fakes == "none":
            raise UnfoldingError(
                "omnifold: the simulation has fakes (pass_reco & ~pass_truth) but "
                "omnifold.fakes is 'none'"
            )
        if config.fakes == "classifier":
            if fake_prob is None:
                fake_prob = fake_probability(inputs, config, inputs.data_reco)
            dw = dw * (1 - fake_prob)
    data_total = dw.sum()
    sim_fakes = has_fakes and config.fakes == "simulation"
    fake_reco = inputs.sim_reco[pr & ~pt]
    fake_w = w[pr & ~pt]

    truth = inputs.sim_truth[pt]
    w_t = w[pt]
    passed = pr[pt]  # among truth-passing events: also passes reco
    reco = inputs.sim_reco[pt][passed]
    nu = torch.ones_like(w_t)
    d_reco, d_truth = inputs.sim_reco.shape[1], inputs.sim_truth.shape[1]
    epochs: list[tuple[int, ...]] = []
    history: list[Tensor] = []
    elapsed: list[float] = []
    for it in range(config.iterations):
        s = seed + 101 * (it + 1)
        # step 1: pull at detector level
        clf = _classifier(d_reco, config, s)
        omega = nu.clone()
        if sim_fakes:
            c = (w_t * nu).sum() / w_t.sum()  # fakes per fiducial event: the simulation's
            x0 = torch.cat([reco, fake_reco])
            clf.fit(x0, inputs.data_reco, torch.cat([w_t[passed] * nu[passed], fake_w * c]), dw)
            r_all = clf.likelihood_ratio(x0, clip=config.clip).to(w.device)
            k = data_total / (torch.cat([w_t[passed] * nu[passed], fake_w * c]) * r_all).sum()
            omega[passed] = nu[passed] * r_all[: reco.shape[0]] * k
        else:
            clf.fit(reco, inputs.data_reco, w_t[passed] * nu[passed], dw)
            r = clf.likelihood_ratio(reco, clip=config.clip).to(w.device)
            omega[passed] = _normalise(nu[passed] * r, w_t[passed], data_total)
        run_epochs = [len(clf.history)]
        miss = ~passed
        if bool(miss.any()):
            if config.miss_weights == "truth_average":
                # step 1b: g(t) = E[r | t] from the reco-passing events, applied to misses
                clf_b = _classifier(d_truth, config, s + 1)
                clf_b.fit(
                    truth[passed],
                    truth[passed],
                    w_t[passed] * nu[passed],
                    w_t[passed] * omega[passed],
                )
                g = clf_b.likelihood_ratio(truth[miss], clip=config.clip).to(w.device)
                scale = (w_t[passed] * omega[passed]).sum() / (w_t[passed] * nu[passed]).sum()
                omega[miss] = nu[miss] * g * scale
                run_epochs.append(len(clf_b.history))
            else:
                scale = (w_t[passed] * omega[passed]).sum() / (w_t[passed] * nu[passed]).sum()
                omega[miss] = nu[miss] * scale
        # step 2: push at parton level
        clf2 = _classifier(d_truth, config, s + 2)
        clf2.fit(truth, truth, w_t * nu, w_t * omega)
        h = clf2.likelihood_ratio(truth, clip=config.clip).to(w.device)
        nu = _normalise(nu * h, w_t, (w_t * omega).sum())
        run_epochs.append(len(clf2.history))
        epochs.append(tuple(run_epochs))
        elapsed.append(time.perf_counter() - start)
        if config.record_iterations:
            history.append(w_t * nu)
    info: dict[str, object] = {
        "iterations": config.iterations,
        "classifier_epochs": epochs,
        "seconds_by_iteration": tuple(elapsed),
        "seconds": time.perf_counter() - start,
    }
    if config.record_iterations:
        info["weights_by_iteration"] = torch.stack(history)
    return w_t * nu, info


def omnifold(inputs: UnfoldingInputs, config: OmniFoldConfig | None = None) -> UnfoldedResult:
    """Unfold with OmniFold; replicas by data and simulation bootstrap and classifier seeds.

    Args:
        inputs: simulation and data (validated here).
        config: :class:`OmniFoldConfig` (default: 4 iterations, no replicas).

    Returns:
        :class:`~unfolding.data.UnfoldedResult` with the simulation's truth-passing events,
        weights w nu (sum: the unfolded number of fiducial events, data units), and
        ``replica_weights`` (R, n) when ``config.replicas > 0``. ``info``: iterations,
        classifier_epochs (per iteration: epochs of step 1, [1b,] 2), seconds (all),
        nominal_seconds (without the replicas), replicas, has_fakes, fakes, miss_weights.
    """
    config = config or OmniFoldConfig()
    inputs.validate()
    start = time.perf_counter()
    fake_prob = None
    has_fakes = bool((inputs.sim_pass_reco & ~inputs.sim_pass_truth).any())
    if has_fakes and config.fakes == "classifier":
        fake_prob = fake_probability(inputs, config, inputs.data_reco)
    weights, info = omnifold_weights(inputs, config, fake_prob=fake_prob)
    nominal_seconds = time.perf_counter() - start
    replicas = None
    if config.replicas > 0:
        gen = torch.Generator(device=inputs.device).manual_seed(config.seed)
        rows = []
        rows_by_iteration = []
        for k in range(config.replicas):  # a loop over replicas, not events
            dw = inputs.data_weights
            if config.bootstrap_data:
                ones = torch.ones_like(dw)
                dw = dw * torch.poisson(ones, generator=gen)
            rep_inputs = inputs
            if config.bootstrap_simulation:
                sw = inputs.sim_weights
                sw = sw * torch.poisson(torch.ones_like(sw), generator=gen)
                rep_inputs = replace(inputs, sim_weights=sw)
            seed = config.classifier.seed + 100_003 * (k + 1)
            rep, rep_info = omnifold_weights(rep_inputs, config, dw, seed, fake_prob)
            rows.append(rep)
            if config.record_iterations:
                rows_by_iteration.append(rep_info["weights_by_iteration"])
        replicas = torch.stack(rows)
        if config.record_iterations:
            info["replica_weights_by_iteration"] = torch.stack(rows_by_iteration, dim=1)
    info = {
        **info,
        "seconds": time.perf_counter() - start,
        "nominal_seconds": nominal_seconds,
        "replicas": config.replicas,
        "has_fakes": has_fakes,
        "fakes": config.fakes,
        "miss_weights": config.miss_weights,
    }
    truth = inputs.sim_truth[inputs.sim_pass_truth]
    return UnfoldedResult("omnifold", truth, weights, replicas, None, info)


def unfold_omnifold(inputs: UnfoldingInputs, config: OmniFoldConfig, seed: int) -> UnfoldedResult:
    """:func:`omnifold` with every seed taken from ``seed`` (the classifiers' base seed
    and the bootstrap's): the ``(inputs, config, seed)`` entry point of the command line
    and the benchmark."""
    seeded = replace(config, seed=seed, classifier=replace(config.classifier, seed=seed))
    return omnifold(inputs, seeded)
