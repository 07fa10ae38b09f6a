"""Standard observables of generated and truth events, for histograms, slices and plots.

For events of one or several multiplicities, the stable outgoing particles (status 1)
are numbered 1, 2, ... in record order and give

* ``pT_j`` (GeV) and ``y_j`` (rapidity) of each stable particle j,
* ``m_jk`` (GeV) and ``dR_jk`` (sqrt(dy^2 + dphi^2)) of each pair j < k,
* ``m_all`` (GeV) and ``y_all``: invariant mass and rapidity of the whole final state.

Events without particle j (a lower multiplicity) hold NaN there; histograms skip them.
Labels name the particles by the PDG ids of the first batch (``pT(mu+)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from evgen.events import Events

__all__ = ["Observables", "compute_observables", "histogram_edges"]

_NAMES = {
    1: "d", 2: "u", 3: "s", 4: "c", 5: "b", 6: "t", 11: "e-", 12: "ve", 13: "mu-",
    14: "vm", 15: "ta-", 16: "vt", 21: "g", 22: "a", 23: "z", 24: "w+", 25: "h",
}  # fmt: skip


def _particle_name(pdg: int) -> str:
    base = _NAMES.get(abs(pdg), str(abs(pdg)))
    if pdg > 0:
        return base
    if base.endswith("-"):
        return base[:-1] + "+"
    if base.endswith("+"):
        return base[:-1] + "-"
    return base + "~" if abs(pdg) not in (21, 22, 23, 25) else base


@dataclass(frozen=True)
class Observables:
    """Observable values of a set of events.

    Attributes:
        values: name -> (n,) float64 tensor (NaN where undefined), on the CPU.
        labels: name -> axis label with units.
    """

    values: dict[str, Tensor]
    labels: dict[str, str]

    @property
    def names(self) -> tuple[str, ...]:
        """Observable names in a fixed order."""
        return tuple(self.values)

    def matrix(self) -> Tensor:
        """(n, n_observables) float64, columns in :attr:`names` order."""
        return torch.stack([self.values[k] for k in self.names], dim=1)


def _rapidity(p: Tensor) -> Tensor:
    e, pz = p[..., 0], p[..., 3]
    return 0.5 * torch.log((e + pz).clamp(min=1e-300) / (e - pz).clamp(min=1e-300))


def _pt(p: Tensor) -> Tensor:
    return torch.sqrt(p[..., 1] ** 2 + p[..., 2] ** 2)


def _mass(p: Tensor) -> Tensor:
    return torch.sqrt((p[..., 0] ** 2 - (p[..., 1:] ** 2).sum(-1)).clamp(min=0.0))


def compute_observables(events: Events | Sequence[Events]) -> Observables:
    """Observables of ``events`` (one batch or batches of different multiplicities).

    Events are concatenated in batch order; each batch's stable outgoing particles are
    taken in record order (the first event of the batch fixes which columns they are).
    """
    batches = [events] if isinstance(events, Events) else list(events)
    stable_per_batch = []
    for b in batches:
        status = b.status[0].cpu() if len(b) else b.status.new_zeros(b.n_particles).cpu()
        stable_per_batch.append([i for i, s in enumerate(status.tolist()) if s == 1])
    k_max = max(len(s) for s in stable_per_batch)
    first = next((b for b in batches if len(b)), batches[0])
    first_stable = stable_per_batch[batches.index(first)]
    names = [
        _particle_name(int(first.pdg[0, i])) if len(first) else str(j + 1)
        for j, i in enumerate(first_stable)
    ]
    names += [str(j + 1) for j in range(len(names), k_max)]
    columns: dict[str, list[Tensor]] = {}
    for b, stable in zip(batches, stable_per_batch, strict=True):
        p = b.momenta.detach().cpu().to(torch.float64)
        n = p.shape[0]
        nan = torch.full((n,), float("nan"), dtype=torch.float64)
        ps = p[:, stable]
        pt, y = _pt(ps), _rapidity(ps)
        phi = torch.atan2(ps[..., 2], ps[..., 1])
        for j in range(k_max):
            here = j < len(stable)
            columns.setdefault(f"pT_{j + 1}", []).append(pt[:, j] if here else nan)
            columns.setdefault(f"y_{j + 1}", []).append(y[:, j] if here else nan)
        for j in range(k_max):
            for k in range(j + 1, k_max):
                here = k < len(stable)
                if here:
                    m = _mass(ps[:, j] + ps[:, k])
                    dphi = torch.remainder(phi[:, j] - phi[:, k] + torch.pi, 2 * torch.pi)
                    dr = torch.sqrt((y[:, j] - y[:, k]) ** 2 + (dphi - torch.pi) ** 2)
                columns.setdefault(f"m_{j + 1}{k + 1}", []).append(m if here else nan)
                columns.setdefault(f"dR_{j + 1}{k + 1}", []).append(dr if here else nan)
        total = ps.sum(dim=1)
        columns.setdefault("m_all", []).append(_mass(total))
        columns.setdefault("y_all", []).append(_rapidity(total))
    values = {k: torch.cat(v) for k, v in columns.items()}
    labels: dict[str, str] = {}
    for key in values:
        kind, _, idx = key.partition("_")
        if idx == "all":
            labels[key] = "m(final state) [GeV]" if kind == "m" else "y(final state)"
        elif kind in ("pT", "y"):
            who = names[int(idx) - 1]
            labels[key] = f"pT({who}) [GeV]" if kind == "pT" else f"y({who})"
        else:
            a, b = names[int(idx[0]) - 1], names[int(idx[1:]) - 1]
            labels[key] = f"m({a}, {b}) [GeV]" if kind == "m" else f"Delta R({a}, {b})"
    return Observables(values, labels)


def histogram_edges(values: Tensor, bins: int = 20, quantile: float = 0.01) -> Tensor:
    """(bins + 1,) float64 equal-width edges from the ``quantile`` to the 1 - ``quantile``
    quantile of the finite ``values`` (a unit interval around them when degenerate)."""
    v = values[torch.isfinite(values)].to(torch.float64)
    if v.numel() == 0:
        return torch.linspace(0.0, 1.0, bins + 1, dtype=torch.float64)
    lo, hi = torch.quantile(v, quantile).item(), torch.quantile(v, 1 - quantile).item()
    if not hi > lo:
        lo, hi = lo - 0.5, hi + 0.5
    return torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
