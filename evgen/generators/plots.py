"""Plots of generated events (PNG, mplhep style): per observable truth vs generated vs
reweighted with ratio panels and the Bayesian band, and the weight distribution.

Histograms are normalised to unit area (shapes); the band around the generated
histogram is the standard deviation over network-weight samples (already normalised the
same way), the error bars the statistical errors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["ObservableHistograms", "plot_observable", "plot_weights", "weighted_histogram"]


def weighted_histogram(
    values: Tensor, edges: Tensor, weights: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Sum of weights and sum of squared weights per bin, (bins,) float64 each; events
    outside the edges or with NaN values are dropped."""
    v = values.to(torch.float64)
    w = torch.ones_like(v) if weights is None else weights.to(torch.float64)
    edges = edges.to(torch.float64)
    inside = torch.isfinite(v) & (v >= edges[0]) & (v <= edges[-1])
    index = (torch.bucketize(v[inside], edges, right=True) - 1).clamp(0, len(edges) - 2)
    bins = len(edges) - 1
    sums = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, w[inside])
    squares = torch.zeros(bins, dtype=torch.float64).index_add_(0, index, w[inside] ** 2)
    return sums, squares


@dataclass
class ObservableHistograms:
    """One observable's histograms for :func:`plot_observable` (normalised or not).

    Attributes:
        name, label: observable key and axis label.
        edges: (bins + 1,) bin edges.
        generated, generated_err: generated events' histogram and statistical errors.
        truth, truth_err: truth (or None).
        reweighted, reweighted_err: reweighted generated events (or None).
        band: (bins,) spread over network-weight samples around ``generated`` (or None).
    """

    name: str
    label: str
    edges: Tensor
    generated: Tensor
    generated_err: Tensor
    truth: Tensor | None = None
    truth_err: Tensor | None = None
    reweighted: Tensor | None = None
    reweighted_err: Tensor | None = None
    band: Tensor | None = None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mplhep

    plt.style.use(mplhep.style.ROOT)
    return plt, mplhep


def plot_observable(h: ObservableHistograms, path: str | os.PathLike[str]) -> None:
    """Write one observable's plot (histograms and ratio panel to truth) as PNG."""
    plt, mplhep = _pyplot()
    edges = h.edges.numpy()
    fig, (ax, rax) = plt.subplots(
        2, 1, figsize=(8, 8), gridspec_kw={"height_ratios": (3, 1)}, sharex=True
    )
    reference = h.truth if h.truth is not None else h.generated
    if h.truth is not None:
        mplhep.histplot(
            h.truth.numpy(), edges, yerr=h.truth_err.numpy(), ax=ax, label="truth",
            color="black", histtype="errorbar",
        )  # fmt: skip
    mplhep.histplot(
        h.generated.numpy(), edges, yerr=h.generated_err.numpy(), ax=ax, label="generated",
        color="tab:blue",
    )  # fmt: skip
    if h.band is not None:
        lo, hi = (h.generated - h.band).numpy(), (h.generated + h.band).numpy()
        ax.stairs(hi, edges, baseline=lo, fill=True, alpha=0.3, color="tab:blue",
                  label="network-weight band")  # fmt: skip
    if h.reweighted is not None:
        mplhep.histplot(
            h.reweighted.numpy(), edges, yerr=h.reweighted_err.numpy(), ax=ax,
            label="reweighted", color="tab:red",
        )  # fmt: skip
    ax.set_ylabel("normalised events / bin")
    ax.legend(fontsize="small")
    safe = torch.where(reference > 0, reference, torch.ones_like(reference))
    for values, err, colour in (
        (h.generated, h.generated_err, "tab:blue"),
        (h.reweighted, h.reweighted_err, "tab:red"),
    ):
        if values is None or h.truth is None:
            continue
        mplhep.histplot((values / safe).numpy(), edges, yerr=(err / safe).numpy(), ax=rax,
                        color=colour)  # fmt: skip
    if h.band is not None:
        rax.stairs(((h.generated + h.band) / safe).numpy(), edges,
                   baseline=((h.generated - h.band) / safe).numpy(), fill=True, alpha=0.3,
                   color="tab:blue")  # fmt: skip
    rax.axhline(1.0, color="black", lw=1)
    spread = 0.0
    if h.truth is not None:
        for values in (h.generated, h.reweighted):
            if values is not None:
                dev = (values / safe - 1).abs()[reference > 0]
                spread = max(spread, float(dev.max()) if dev.numel() else 0.0)
    r = 0.2 if spread <= 0.2 else 0.5 if spread <= 0.5 else 1.0
    rax.set_ylim(1 - r, 1 + r)
    rax.set_ylabel("ratio to truth" if h.truth is not None else "ratio")
    rax.set_xlabel(h.label)
    fig.savefig(path, format="png", dpi=80)
    plt.close(fig)


def plot_weights(weights: Tensor, path: str | os.PathLike[str], clip: float | None = None) -> None:
    """Write the distribution of log10 w (PNG), the clipping bounds marked."""
    plt, mplhep = _pyplot()
    lw = torch.log10(weights.to(torch.float64).clamp(min=1e-300))
    lo, hi = float(lw.min()), float(lw.max())
    if clip is not None:
        import math

        lo, hi = min(lo, -math.log10(clip)), max(hi, math.log10(clip))
    edges = torch.linspace(lo - 0.05, hi + 0.05, 51, dtype=torch.float64)
    counts, _ = weighted_histogram(lw, edges)
    fig, ax = plt.subplots(figsize=(8, 6))
    mplhep.histplot(counts.numpy(), edges.numpy(), ax=ax, color="tab:red")
    if clip is not None:
        import math

        for x in (-math.log10(clip), math.log10(clip)):
            ax.axvline(x, color="gray", ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("log10 w")
    ax.set_ylabel("events")
    fig.savefig(path, format="png", dpi=80)
    plt.close(fig)
