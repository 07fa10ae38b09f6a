"""Generation cuts on outgoing particles, as MadGraph's run_card applies them.

Particle classes: jets are gluons and quarks d u s c (and b with 5 flavours); charged
leptons are e and mu (MadGraph's ``l``); neutrinos make the missing transverse energy.
Top quarks, W, Z and taus are not cut. Momenta in GeV.
"""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from evgen.card import CutsCard
from evgen.kinematics import delta_r, mass2, pseudorapidity, pt

__all__ = ["Cuts", "jet_ids", "LEPTON_IDS", "NEUTRINO_IDS"]

LEPTON_IDS = frozenset({11, 13})
NEUTRINO_IDS = frozenset({12, 14, 16})


def jet_ids(n_flavours: int) -> frozenset[int]:
    """|PDG| ids counted as jets: gluon and the light quarks (b too with 5 flavours)."""
    return frozenset({21, 1, 2, 3, 4} | ({5} if n_flavours == 5 else set()))


class Cuts:
    """The card's cuts for one ordering of outgoing PDG ids.

    Call with outgoing momenta (n, n_out, 4) in GeV; returns a boolean mask (n,).
    """

    def __init__(self, card: CutsCard, outgoing: tuple[int, ...], n_flavours: int = 4) -> None:
        self.card = card
        self.outgoing = tuple(outgoing)
        jets = jet_ids(n_flavours)
        self.jets = [i for i, pid in enumerate(outgoing) if abs(pid) in jets]
        self.leptons = [i for i, pid in enumerate(outgoing) if abs(pid) in LEPTON_IDS]
        self.neutrinos = [i for i, pid in enumerate(outgoing) if abs(pid) in NEUTRINO_IDS]
        self.sfos_pairs = [
            (i, j)
            for i, j in itertools.combinations(self.leptons, 2)
            if outgoing[i] == -outgoing[j]
        ]

    @property
    def signature(self) -> tuple:
        """Equal signatures mean equal cuts (used to share the evaluation)."""
        return (
            tuple(self.jets),
            tuple(self.leptons),
            tuple(self.neutrinos),
            tuple(self.sfos_pairs),
        )

    def mll_window(self) -> tuple[float, float]:
        """(min, max) of the invariant mass of the only lepton pair, GeV; (0, inf) if none.

        When the whole final state is one same-flavour opposite-sign lepton pair, the
        mmll cut bounds s_hat and the phase space can be restricted to it.
        """
        lo = max(self.card.mmll, 0.0)
        hi = self.card.mmllmax if self.card.mmllmax >= 0 else math.inf
        return lo, hi

    def __call__(self, p: Tensor) -> Tensor:
        c = self.card
        ok = torch.ones(p.shape[0], dtype=torch.bool, device=p.device)

        def window(values: Tensor, lo: float, hi: float) -> Tensor:
            m = values >= lo
            if hi >= 0:
                m = m & (values <= hi)
            return m

        for idx, ptmin, ptmax, etamax in (
            (self.jets, c.ptj, c.ptjmax, c.etaj),
            (self.leptons, c.ptl, c.ptlmax, c.etal),
        ):
            if not idx:
                continue
            q = p[:, idx]
            ok &= window(pt(q), ptmin, ptmax).all(dim=1)
            if etamax >= 0:
                ok &= (pseudorapidity(q).abs() <= etamax).all(dim=1)
        for group_a, group_b, drmin, drmax in (
            (self.jets, self.jets, c.drjj, -1.0),
            (self.leptons, self.leptons, c.drll, c.drllmax),
            (self.jets, self.leptons, c.drjl, -1.0),
        ):
            pairs = (
                list(itertools.combinations(group_a, 2))
                if group_a is group_b
                else list(itertools.product(group_a, group_b))
            )
            if pairs and (drmin > 0 or drmax >= 0):
                i, j = zip(*pairs, strict=True)
                ok &= window(delta_r(p[:, list(i)], p[:, list(j)]), drmin, drmax).all(dim=1)
        if len(self.jets) >= 2 and (c.mmjj > 0 or c.mmjjmax >= 0):
            i, j = zip(*itertools.combinations(self.jets, 2), strict=True)
            mjj = torch.sqrt(mass2(p[:, list(i)] + p[:, list(j)]).clamp(min=0))
            ok &= window(mjj, c.mmjj, c.mmjjmax).all(dim=1)
        if self.sfos_pairs and (c.mmll > 0 or c.mmllmax >= 0):
            i, j = zip(*self.sfos_pairs, strict=True)
            mll = torch.sqrt(mass2(p[:, list(i)] + p[:, list(j)]).clamp(min=0))
            ok &= window(mll, c.mmll, c.mmllmax).all(dim=1)
        if self.neutrinos and (c.misset > 0 or c.missetmax >= 0):
            met = pt(p[:, self.neutrinos].sum(dim=1))
            ok &= window(met, c.misset, c.missetmax)
        return ok
