r"""Classifier reweighting of generated events towards the truth (DCTR, arXiv:1907.08209).

A classifier D is trained between truth events (class 1: held-out events of the kind the
generator was trained on) and generated events (class 0) in the generator's feature
space (the standardised features of :class:`~evgen.generators.preprocessing.
EventPreprocessing`, the one-hot topology, and the pair invariant masses, see
:func:`classifier_features`). With both classes balanced to equal total
weight, :math:`w(x) = D / (1 - D) = p_\text{truth}(x) / p_\text{gen}(x)` reweights the
generated events into the truth (arXiv:2110.13632, arXiv:2305.16774).

Cross-fitting. Both samples are split into two halves; the classifier trained on halves
A weighs the generated events of halves B and vice versa, so no event is weighted by a
classifier that has seen it, and every quality figure below is measured on held-out
events.

What :func:`classifier_reweighting` reports (:class:`ReweightingResult`):

* the weights, clipped to [1/clip, clip] (the number and fraction clipped reported) and
  normalised to mean 1 (the cross section is kept; the raw mean, which is 1 for a
  calibrated classifier, is reported as a check);
* calibration on held-out events: in bins of D, the fraction of truth (class-balanced)
  against the mean predicted D, with its binomial error: the largest pull;
* the weight distribution's tail, the fraction of events with \|log w\| > 1;
* AUC before: of D on held-out events; AUC after: of a fresh classifier trained between
  reweighted generated events and truth, measured on held-out events (0.5: the
  reweighted generator cannot be told from the truth);
* slices by observables: per quantile bin of each observable, the events, mean weight,
  tail fraction and AUC of D, showing where the generator fails.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from evgen.events import Events
from evgen.generators.observables import compute_observables
from evgen.generators.preprocessing import EventPreprocessing, GeneratorError
from evgen.ml.classifier import Classifier, ClassifierConfig, auc

__all__ = [
    "ReweightingConfig",
    "ReweightingResult",
    "classifier_features",
    "classifier_reweighting",
]


def _default_classifier() -> ClassifierConfig:
    """Smaller batches than the shared default: held-out samples are often small, and
    D needs many steps to resolve narrow peaks."""
    return ClassifierConfig(
        batch_size=512, epochs=50, learning_rate=3e-3, patience=8, schedule="cosine"
    )


@dataclass(frozen=True)
class ReweightingConfig:
    """Settings of :func:`classifier_reweighting`.

    Attributes:
        classifier: network and training of D (and of the fresh "after" classifier);
            default: batches of 512, up to 50 epochs, learning rate 3e-3 with a cosine
            schedule, early stopping after 8 epochs without improvement.
        clip: weights are clipped to [1/clip, clip] (> 1).
        calibration_bins: bins of D for the calibration check.
        slice_bins: quantile bins per observable for the slices.
        fresh_classifier: train a fresh classifier on the reweighted sample for the AUC
            after reweighting (else only the held-out weighted AUC of D is given).
    """

    classifier: ClassifierConfig = field(default_factory=lambda: _default_classifier())
    clip: float = 20.0
    calibration_bins: int = 10
    slice_bins: int = 5
    fresh_classifier: bool = True

    def __post_init__(self) -> None:
        if not self.clip > 1:
            raise GeneratorError(f"reweighting: clip must be > 1, got {self.clip}")
        if self.calibration_bins < 2 or self.slice_bins < 1:
            raise GeneratorError("reweighting: need calibration_bins >= 2 and slice_bins >= 1")


@dataclass
class ReweightingResult:
    """Weights of generated events and the diagnostics of the classifier.

    Attributes:
        weights: (n_gen,) float64 w(x), clipped, mean 1 (order of the generated events).
        raw_mean_weight: mean of the clipped weights before normalising (1 if calibrated).
        clip: the clipping bound; weights lie in [1/clip, clip] before normalising.
        n_clipped: events whose weight was clipped; clipped_fraction: their fraction.
        tail_fraction: fraction of events with |log w| > 1.
        auc_before: held-out AUC of D between generated and truth events.
        auc_after: held-out AUC of a fresh classifier between reweighted generated and
            truth events (NaN when not trained).
        auc_after_same: held-out AUC of D with the generated events weighted by w.
        calibration: ``{"predicted": [...], "observed": [...], "error": [...],
            "max_pull": float}`` per bin of D on held-out events.
        slices: observable -> list of per-bin dicts (``lo``, ``hi``, ``n_gen``,
            ``n_truth``, ``mean_weight``, ``tail_fraction``, ``auc``).
        n_truth, n_gen: events used.
    """

    weights: Tensor
    raw_mean_weight: float
    clip: float
    n_clipped: int
    clipped_fraction: float
    tail_fraction: float
    auc_before: float
    auc_after: float
    auc_after_same: float
    calibration: dict[str, Any]
    slices: dict[str, list[dict[str, float]]]
    n_truth: int
    n_gen: int

    def summary(self) -> dict[str, Any]:
        """JSON-compatible report (without the per-event weights)."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if k != "weights"}
        w = self.weights
        q = torch.quantile(w, torch.tensor([0.001, 0.01, 0.5, 0.99, 0.999], dtype=w.dtype))
        data["weight_quantiles"] = {
            "0.1%": float(q[0]),
            "1%": float(q[1]),
            "50%": float(q[2]),
            "99%": float(q[3]),
            "99.9%": float(q[4]),
        }
        data["weight_min"], data["weight_max"] = float(w.min()), float(w.max())
        return data


def classifier_features(
    prep: EventPreprocessing, events: Events | Sequence[Events]
) -> tuple[Tensor, Tensor]:
    """(n, d + n_masses + n_topologies) float64 classifier inputs and the (n,) topology
    index, in batch order.

    The inputs are the preprocessing's standardised features, the standard observables
    of :func:`~evgen.generators.observables.compute_observables` (the logarithms of
    every stable particle's pT and of the invariant masses of every pair and of the
    whole final state, in GeV; the rapidities and Delta R; 0 where a lower multiplicity
    lacks the particle or pair), and the one-hot topology. The observables are functions
    of the features, but a narrow resonance is a thin curved ridge in the features, and a
    rapidity cut an edge in a derived quantity, that a small classifier misses; given as
    inputs, it sees them.

    Raises:
        GeneratorError: particle contents the preprocessing does not know, or
            unphysical events.
    """
    encoded = prep.encode(events)
    onehot = torch.nn.functional.one_hot(encoded.topology.cpu(), prep.n_topologies)
    obs = compute_observables(events)
    columns = [
        (torch.log(v.clamp(min=1e-3)) if k.startswith(("m_", "pT_")) else v).nan_to_num(0.0)
        for k, v in obs.values.items()
    ]
    x = torch.cat(
        [encoded.features.cpu(), torch.stack(columns, dim=1), onehot.to(torch.float64)], dim=1
    )
    return x, encoded.topology.cpu()


def _halves(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    perm = torch.randperm(n, generator=generator)
    return perm[: n // 2], perm[n // 2 :]


def _calibration(d: Tensor, label: Tensor, weight: Tensor, bins: int) -> dict[str, Any]:
    """Observed class-1 fraction vs mean predicted D in equal-population bins of D."""
    edges = torch.quantile(d, torch.linspace(0, 1, bins + 1, dtype=d.dtype))
    index = torch.bucketize(d, edges[1:-1], right=True)
    predicted, observed, error = [], [], []
    max_pull = 0.0
    for b in range(bins):
        sel = index == b
        if int(sel.sum()) < 2:
            continue
        w, y = weight[sel], label[sel]
        frac = float((w * y).sum() / w.sum())
        n_eff = float(w.sum() ** 2 / (w**2).sum())
        err = math.sqrt(max(frac * (1 - frac), 1e-12) / n_eff)
        pred = float((w * d[sel]).sum() / w.sum())
        predicted.append(pred)
        observed.append(frac)
        error.append(err)
        max_pull = max(max_pull, abs(frac - pred) / err)
    return {"predicted": predicted, "observed": observed, "error": error, "max_pull": max_pull}


def _balanced(label: Tensor, weight: Tensor) -> Tensor:
    """Weights with each class rescaled to total 1."""
    out = weight.clone()
    for c in (0, 1):
        sel = label == c
        out[sel] = weight[sel] / weight[sel].sum()
    return out


def classifier_reweighting(
    prep: EventPreprocessing,
    truth: Events | Sequence[Events],
    generated: Events | Sequence[Events],
    config: ReweightingConfig | None = None,
) -> ReweightingResult:
    """Weights w = D/(1-D) of ``generated`` events towards ``truth`` (see module docstring).

    Args:
        prep: the generator's preprocessing (the feature space of D).
        truth: held-out truth events (unweighted), at least 4.
        generated: generated events (unweighted), at least 4; the weights follow their
            order (batch order for several batches).
        config: :class:`ReweightingConfig`.

    Returns:
        :class:`ReweightingResult`.

    Raises:
        GeneratorError: too few events, or particle contents the model does not know.
    """
    config = config or ReweightingConfig()
    x_t, _ = classifier_features(prep, truth)
    x_g, _ = classifier_features(prep, generated)
    n_t, n_g = x_t.shape[0], x_g.shape[0]
    if n_t < 4 or n_g < 4:
        raise GeneratorError(
            f"reweighting: need at least 4 truth and 4 generated events, got {n_t} and {n_g}"
        )
    gen = torch.Generator().manual_seed(config.classifier.seed)
    folds_t, folds_g = _halves(n_t, gen), _halves(n_g, gen)
    log_ratio = torch.empty(n_g, dtype=torch.float64)
    d_held = []  # (D, label) on held-out events of both folds
    for a in (0, 1):
        b = 1 - a
        clf = Classifier(x_t.shape[1], config.classifier)
        clf.fit(x_g[folds_g[a]], x_t[folds_t[a]])
        d_g = clf.probability(x_g[folds_g[b]]).cpu()
        d_t = clf.probability(x_t[folds_t[b]]).cpu()
        log_ratio[folds_g[b]] = torch.log(d_g) - torch.log1p(-d_g)
        d_held.append((d_g, d_t))
    bound = math.log(config.clip)
    clipped = log_ratio.abs() > bound
    w_raw = torch.exp(log_ratio.clamp(-bound, bound))
    raw_mean = float(w_raw.mean())
    weights = w_raw / raw_mean

    d_all = torch.cat([torch.cat([g, t]) for g, t in d_held])
    labels = torch.cat(
        [torch.cat([torch.zeros(len(g)), torch.ones(len(t))]) for g, t in d_held]
    ).to(torch.float64)
    ones = torch.ones_like(d_all)
    auc_before = auc(d_all, labels)
    calibration = _calibration(d_all, labels, _balanced(labels, ones), config.calibration_bins)
    # the generated events of d_held, in fold order, and their weights
    w_held = torch.cat([weights[folds_g[1 - a]] for a in (0, 1)])
    weight_after = torch.cat(
        [torch.cat([w_held[: len(d_held[0][0])], torch.ones(len(d_held[0][1]))]),
         torch.cat([w_held[len(d_held[0][0]) :], torch.ones(len(d_held[1][1]))])]
    )  # fmt: skip
    auc_after_same = auc(d_all, labels, weight_after)

    auc_after = math.nan
    if config.fresh_classifier:
        fresh_config = dataclasses.replace(config.classifier, seed=config.classifier.seed + 1)
        fresh = Classifier(x_t.shape[1], fresh_config)
        fresh.fit(x_g[folds_g[0]], x_t[folds_t[0]], w0=weights[folds_g[0]])
        s = torch.cat([fresh.probability(x_g[folds_g[1]]), fresh.probability(x_t[folds_t[1]])])
        lab = torch.cat([torch.zeros(len(folds_g[1])), torch.ones(len(folds_t[1]))])
        auc_after = auc(s.cpu(), lab, torch.cat([weights[folds_g[1]], torch.ones(len(folds_t[1]))]))

    tail = log_ratio.clamp(-bound, bound) - math.log(raw_mean)
    tail_mask = tail.abs() > 1
    slices = _slices(
        generated, truth, d_held, folds_g, folds_t, weights, tail_mask, config.slice_bins
    )
    return ReweightingResult(
        weights=weights,
        raw_mean_weight=raw_mean,
        clip=config.clip,
        n_clipped=int(clipped.sum()),
        clipped_fraction=float(clipped.double().mean()),
        tail_fraction=float(tail_mask.double().mean()),
        auc_before=auc_before,
        auc_after=auc_after,
        auc_after_same=auc_after_same,
        calibration=calibration,
        slices=slices,
        n_truth=n_t,
        n_gen=n_g,
    )


def _slices(
    generated: Events | Sequence[Events],
    truth: Events | Sequence[Events],
    d_held: list[tuple[Tensor, Tensor]],
    folds_g: tuple[Tensor, Tensor],
    folds_t: tuple[Tensor, Tensor],
    weights: Tensor,
    tail_mask: Tensor,
    bins: int,
) -> dict[str, list[dict[str, float]]]:
    obs_g = compute_observables(generated)
    obs_t = compute_observables(truth)
    # held-out D of every event, in event order
    d_g = torch.empty(len(weights), dtype=torch.float64)
    n_t = len(next(iter(obs_t.values.values())))
    d_t = torch.empty(n_t, dtype=torch.float64)
    for a in (0, 1):
        d_g[folds_g[1 - a]] = d_held[a][0]
        d_t[folds_t[1 - a]] = d_held[a][1]
    out: dict[str, list[dict[str, float]]] = {}
    for name in obs_g.names:
        if name not in obs_t.values:
            continue
        vg, vt = obs_g.values[name], obs_t.values[name]
        finite = vt[torch.isfinite(vt)]
        if finite.numel() < bins:
            continue
        edges = torch.quantile(finite, torch.linspace(0, 1, bins + 1, dtype=torch.float64))
        rows = []
        for b in range(bins):
            lo, hi = float(edges[b]), float(edges[b + 1])
            sg = (vg >= lo) & ((vg < hi) if b < bins - 1 else (vg <= hi))
            st = (vt >= lo) & ((vt < hi) if b < bins - 1 else (vt <= hi))
            ng, nt = int(sg.sum()), int(st.sum())
            row = {"lo": lo, "hi": hi, "n_gen": ng, "n_truth": nt}
            row["mean_weight"] = float(weights[sg].mean()) if ng else math.nan
            row["tail_fraction"] = float(tail_mask[sg].double().mean()) if ng else math.nan
            if ng and nt:
                s = torch.cat([d_g[sg], d_t[st]])
                lab = torch.cat([torch.zeros(ng), torch.ones(nt)])
                row["auc"] = auc(s, lab)
            else:
                row["auc"] = math.nan
            rows.append(row)
        out[name] = rows
    return out
