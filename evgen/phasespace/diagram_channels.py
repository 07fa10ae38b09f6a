"""Diagram-based multi-channel phase space for 2 -> n: one mapping per Feynman-diagram topology.

MadGraph/MadEvent's single-diagram-enhanced channels (Maltoni & Stelzer, hep-ph/0208156;
MadEvent's ``genps.f``: ``gen_mom``/``gentcms``), built from a :class:`processes.base.Channel`
(the diagram's propagators) and batched in torch. Each channel maps the unit hypercube to
momenta so that its diagram's propagators are sampled near their poles; the integrand adds
the channels with the SDE prior weights (:mod:`evgen.integrand`).

Topology. Outgoing legs are numbered 0 .. n_out - 1 here (leg k is external particle k + 2,
incoming first, as in :class:`~processes.base.Propagator`). The s-channel lines are nested
clusters of outgoing legs (decay trees). The t-channel lines carry the outgoing legs on the
side of incoming particle 1; sorted by size they are nested, side_1 < side_2 < ... <
side_(m-1), and their differences C_1 = side_1, C_k = side_k - side_(k-1), C_m = all -
side_(m-1) are the m top-level clusters emitted along the chain from incoming 1 to incoming 2
(Byckling & Kajantie, *Particle Kinematics*, ch. 6.3; MadEvent's ``gen_mom``). Without
t-channel lines the whole final state is one cluster (an s-channel line through s_hat, or
none). Every cluster is a binary tree: a vertex with 3+ daughters (4-point vertices, or a
t-chain vertex emitting two clusters) becomes a chain of two-body splittings through
propagator-less intermediate masses ("sequential flat masses"), and the t-chain becomes
root -> C_1 + R_1, R_1 -> C_2 + R_2, ..., R_(m-2) -> C_(m-1) + C_m with R_k = C_(k+1) + ...
+ C_m.

Algorithm, per batch of points r in [0, 1)^n_dim (layout: [tau, y] for hadron beams, then one
number per intermediate mass, then two per splitting):

1. s_hat: hadron beams use :class:`LuminosityMapping` (tau flat in ln tau / a power law, or
   a Breit-Wigner (mixture) when the whole final state is one massive s-channel resonance;
   y flat); lepton beams have s_hat = 4 E1 E2.
2. The masses of all intermediate nodes, innermost first (children before parents). Node N
   with daughters a, b lies in [m_a + m_b, sqrt(s_hat) - sum of the current masses of the
   other blocks] (the blocks partition the legs into the largest nodes sampled so far, legs
   counting with their own masses): every point is physical and every physical point is
   reached once. Within the limits, s_N is drawn from a Breit-Wigner (massive propagator with
   width), s^-nu_s (massless or zero-width propagator; nu_s < 1 so that s = 0 is allowed) or
   flat in s (no propagator: R_k of the t-chain and 4-point splittings, as MadEvent does).
   A decay-chain resonance (:attr:`~processes.base.Propagator.onshell`) has its Breit-Wigner
   restricted to MadGraph's window |m_N - M| <= bwcutoff * Gamma (intersected with the
   limits; :func:`onshell_window`), so no point falls outside it; one through the whole final
   state restricts s_hat alike (hadron beams).
3. The t-chain, in the partonic centre-of-mass frame: R_(k-1) = q_(k-1) + p_b -> C_k + R_k
   with q_0 = p_a, q_k = q_(k-1) - p(C_k). In the rest frame of R_(k-1) (mass^2 s), with
   q_(k-1)^2 = t_A and massless p_b: E_A = (s + t_A) / (2 sqrt s), |p_A| = (s - t_A) /
   (2 sqrt s); t_k = (q_(k-1) - p(C_k))^2 = t_A + m_1^2 - 2 (E_A E_1 - |p_A| p cos theta) lies
   between exact limits, t_max computed without cancellation. u = M_t^2 - t_k >= 0 (M_t the
   t-channel propagator's mass) is drawn with density (u + c)^-nu_t (c = max(0, -u_min)
   only absorbs rounding), peaked towards the pole (t -> 0 for a massless line); phi flat
   about q's direction in that frame (MadEvent's ``gentcms``; MadEvent samples t flat and
   leaves the peak to VEGAS). dPhi_2 = dt dphi / (16 pi^2 (s - t_A)).
4. Every other splitting is a two-body decay in the parent's rest frame, cos theta and phi
   flat (axes: the frame's, reached by a pure boost), dPhi_2 = |p*| / (16 pi^2 m) dOmega.
5. The Jacobian is the product of all pieces with ds / (2 pi) per intermediate mass
   (dPhi_n(P) = dPhi_j(Q) ds_Q / (2 pi) dPhi_(n-j+1)(P)), in the convention of
   :mod:`evgen.phasespace.two_body`; times dx1 dx2 (hadron beams). The final state is boosted
   along z to the lab. Points outside the limits (e.g. below threshold) get jacobian 0,
   with finite momenta.

Sherpa's AMEGIC++ and Comix build their channels alike (Krauss, Kuhn, Soff, hep-ph/0109036;
Gleisberg & Hoeche, arXiv:0808.3674). Defaults nu_s = 0.8, nu_t = 0.5 (:data:`NU_S`,
:data:`NU_T`) were chosen on u u~ > e+ e- g and e+ e- > u u~ g at 500 GeV with jet cuts
(SDE variance against flat RAMBO); an adaptive integrator on top refines them.

Example:
    >>> proc = AutoProcess.load("u u~ > e+ e- g")
    >>> chans = channel_phase_spaces(proc, 250.0, 250.0, hadronic=False)
    >>> point = chans.phase_spaces[0].map(torch.rand(1000, 5, dtype=torch.float64))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from evgen.kinematics import boost_z
from evgen.phasespace.collider import PhaseSpacePoint
from evgen.phasespace.luminosity import LuminosityMapping
from evgen.phasespace.two_body import boost_from_rest, boost_to_rest
from processes.base import Channel, Process

__all__ = [
    "BW_CUTOFF",
    "ChannelTopology",
    "ChannelPhaseSpace",
    "DiagramChannels",
    "channel_phase_spaces",
    "onshell_window",
]

#: MadGraph's run_card ``bwcutoff`` default: a decay-chain resonance's mass lies within this
#: many widths of its pole mass.
BW_CUTOFF = 15.0
NU_S = 0.8  # default power of s^-nu for massless s-channel propagators
NU_T = 0.5  # default power of (M^2 - t)^-nu for t-channel propagators
_N_IN = 2  # incoming particles come first in the external-leg numbering


# --------------------------------------------------------------------------- topology


@dataclass(frozen=True)
class _Node:
    """A node of the channel's binary tree.

    legs: outgoing legs (0-based) whose momenta add up to the node's.
    children: the two daughter nodes (empty for an external leg).
    mapping: how its mass^2 is sampled: "leg" (fixed mass), "root" (s_hat), "bw", "power"
        (propagator without Breit-Wigner) or "flat" (no propagator).
    mass, width: the s-channel propagator's (0 if none), GeV.
    decay: "angles" (flat two-body decay) or "t" (a step of the t-chain; children (C, R)).
    t_mass: mass of the t-channel propagator of a "t" step, GeV.
    onshell: a decay-chain resonance ("bw" only): its mass is sampled within bw_cutoff
        widths of the pole.
    """

    legs: tuple[int, ...]
    children: tuple[int, ...] = ()
    mapping: str = "leg"
    mass: float = 0.0
    width: float = 0.0
    decay: str = ""
    t_mass: float = 0.0
    onshell: bool = False


class ChannelTopology:
    """The binary tree of a channel: s-channel clusters, the t-chain, splittings.

    Args:
        channel: the diagram's propagators (legs numbered as in
            :class:`~processes.base.Propagator`: external indices, incoming first).
        n_out: number of outgoing particles (>= 2).

    Attributes:
        nodes: the tree's nodes, every node after its children; the root (all legs) last.
        mass_order: indices of the intermediate nodes whose masses are sampled, in order.
        others: per entry of ``mass_order``, the blocks (node indices) outside that node
            when it is sampled.
        caps: per entry of ``mass_order``, the decay-chain resonances containing that node,
            each with the blocks of ``others`` inside it (they bound the node's mass from
            above: the resonance's window top minus their masses).
        root_propagator: (mass, width) GeV of an s-channel line through the whole final
            state, or None.
        root_onshell: that line is a decay-chain resonance
            (:attr:`~processes.base.Propagator.onshell`).
        n_t: number of t-channel steps (m - 1 for m top-level clusters; 0 without).
        key: a hashable description of the tree below s_hat (see :meth:`mapping_key`).

    Raises:
        ValueError: legs out of range, s-channel lines that overlap without nesting,
            t-channel lines that do not form a chain, or both a t-chain and an s-channel
            line through the whole final state.
    """

    def __init__(self, channel: Channel, n_out: int) -> None:
        if n_out < 2:
            raise ValueError(f"ChannelTopology: need >= 2 outgoing particles, got {n_out}")
        self.n_out = n_out
        full = frozenset(range(n_out))
        s_lines: dict[frozenset[int], tuple[float, float, bool]] = {}
        t_lines: dict[frozenset[int], float] = {}
        for prop in channel.propagators:
            legs = frozenset(k - _N_IN for k in prop.legs)
            if not legs or any(k < 0 or k >= n_out for k in legs):
                raise ValueError(
                    f"channel: propagator {prop.pdg} has legs {prop.legs}; outgoing legs are "
                    f"{_N_IN} .. {_N_IN + n_out - 1} (incoming first)"
                )
            if prop.kind == "s":
                if len(legs) >= 2:
                    line = (float(prop.mass), float(prop.width), bool(prop.onshell))
                    if prop.onshell or legs not in s_lines:  # a decay's resonance first
                        s_lines[legs] = line
            elif prop.kind == "t":
                if legs == full:
                    raise ValueError(
                        f"channel: t-channel propagator {prop.pdg} has all outgoing legs on "
                        "one side"
                    )
                t_lines.setdefault(legs, float(prop.mass))
            else:
                raise ValueError(f"channel: propagator kind must be 's' or 't', got {prop.kind!r}")
        sets = list(s_lines)
        for i, a in enumerate(sets):
            for b in sets[i + 1 :]:
                if a & b and not (a <= b or b <= a):
                    raise ValueError(
                        f"channel: s-channel lines {sorted(a)} and {sorted(b)} overlap "
                        "without nesting"
                    )
        root = s_lines.pop(full, None)
        self.root_propagator = None if root is None else (root[0], root[1])
        self.root_onshell = root is not None and root[2]
        if self.root_propagator is not None and t_lines:
            raise ValueError("channel: an s-channel line through s_hat and t-channel lines")
        self._s_lines = s_lines
        self.nodes: list[_Node] = [_Node((k,)) for k in range(n_out)]
        sides = sorted(t_lines, key=len)
        for a, b in zip(sides, sides[1:], strict=False):
            if not a < b:
                raise ValueError(
                    f"channel: t-channel lines with sides {sorted(a)} and {sorted(b)} do not "
                    "form a chain"
                )
        self.n_t = len(sides)
        if sides:
            clusters = [sides[0]]
            clusters += [b - a for a, b in zip(sides, sides[1:], strict=False)]
            clusters.append(full - sides[-1])
            for line in s_lines:
                if not any(line <= c for c in clusters):
                    raise ValueError(
                        f"channel: s-channel line {sorted(line)} straddles the clusters "
                        f"{[sorted(c) for c in clusters]} of the t-channel chain"
                    )
            cur = self._cluster(clusters[-1])
            for k in range(len(sides) - 1, -1, -1):
                c = self._cluster(clusters[k])
                joined = self.nodes[c].legs + self.nodes[cur].legs
                mapping = "root" if k == 0 else "flat"
                cur = self._add(
                    _Node(
                        tuple(sorted(joined)),
                        (c, cur),
                        mapping,
                        decay="t",
                        t_mass=t_lines[sides[k]],
                    )
                )
        else:
            mass, width = self.root_propagator or (0.0, 0.0)
            self._cluster(full, root=True, mass=mass, width=width)
        self.root = len(self.nodes) - 1
        self.mass_order: list[int] = []
        self.others: list[list[int]] = []
        blocks = set(range(n_out))
        for i, node in enumerate(self.nodes):
            if node.children and i != self.root:
                blocks -= set(node.children)
                self.mass_order.append(i)
                self.others.append(sorted(blocks))
                blocks.add(i)
        # per entry of mass_order: the decay-chain resonances above the node, each with the
        # other blocks inside it (the node's mass is at most the window's top minus theirs)
        self.caps: list[list[tuple[int, list[int]]]] = []
        for i, others in zip(self.mass_order, self.others, strict=True):
            legs = set(self.nodes[i].legs)
            self.caps.append(
                [
                    (j, [b for b in others if set(self.nodes[b].legs) <= set(a.legs)])
                    for j, a in enumerate(self.nodes)
                    if a.onshell and legs < set(a.legs)
                ]
            )
        self.key = self._key(self.root)

    def _add(self, node: _Node) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def _cluster(
        self, legs: frozenset[int], root: bool = False, mass: float = 0.0, width: float = 0.0
    ) -> int:
        """Node index of the cluster ``legs`` (built with its sub-clusters)."""
        if len(legs) == 1:
            return next(iter(legs))
        onshell = False
        if not root and legs in self._s_lines:
            mass, width, onshell = self._s_lines[legs]
            mapping = "bw" if mass > 0 and width > 0 else "power"
            onshell = onshell and mapping == "bw"
        else:
            mapping = "root" if root else "flat"
        inner = [s for s in self._s_lines if s < legs]
        maximal = [s for s in inner if not any(s < o for o in inner)]
        covered = frozenset().union(*maximal) if maximal else frozenset()
        parts = sorted(maximal + [frozenset({k}) for k in legs - covered], key=min)
        kids = [self._cluster(p) for p in parts]
        # k > 2 daughters: node -> d_1 + X_1, X_1 -> d_2 + X_2, ..., flat masses for X.
        tail = kids[-1]
        for d in reversed(kids[1:-1]):
            merged = tuple(sorted(self.nodes[d].legs + self.nodes[tail].legs))
            tail = self._add(_Node(merged, (d, tail), "flat", decay="angles"))
        return self._add(
            _Node(
                tuple(sorted(legs)),
                (kids[0], tail),
                mapping,
                mass,
                width,
                decay="angles",
                onshell=onshell,
            )
        )

    def _key(self, i: int) -> tuple:
        n = self.nodes[i]
        if not n.children:
            return n.legs
        kids = tuple(self._key(c) for c in n.children)
        mass = (n.mass, n.width, n.onshell) if n.mapping in ("bw", "power") else ()
        t = (n.t_mass,) if n.decay == "t" else ()
        return (n.mapping, mass, n.decay, t, kids)

    def mapping_key(self, hadronic: bool = True) -> tuple:
        """A hashable description of the mapping; equal keys map identically. The
        s-channel line through s_hat matters only for hadron beams (it shapes tau)."""
        root = (self.root_propagator, self.root_onshell) if hadronic else None
        return (root, self.key)

    def describe(self) -> str:
        """The tree as text, e.g. ``t[M=0]((3), bw[M=91.19](0,1))`` (legs 0-based)."""

        def text(i: int) -> str:
            n = self.nodes[i]
            if not n.children:
                return str(n.legs[0])
            head = f"t[M={n.t_mass:g}]" if n.decay == "t" else n.mapping
            if n.mapping in ("bw", "power") or (n.mapping == "root" and n.mass > 0):
                head += f"[M={n.mass:g}{', on shell' if n.onshell else ''}]"
            return head + "(" + ", ".join(text(c) for c in n.children) + ")"

        return text(self.root)


# --------------------------------------------------------------------------- batched maps


def _breit_wigner(
    r: Tensor, s_lo: Tensor, s_hi: Tensor, mass: float, width: float
) -> tuple[Tensor, Tensor]:
    """s in [s_lo, s_hi] with density ~ 1 / ((s - M^2)^2 + M^2 G^2); (s, ds/dr)."""
    m2, mg = mass * mass, mass * width
    a_lo = torch.atan((s_lo - m2) / mg)
    a_hi = torch.atan((s_hi - m2) / mg)
    s = (m2 + mg * torch.tan(a_lo + r * (a_hi - a_lo))).clamp(min=s_lo, max=s_hi)
    return s, (a_hi - a_lo) * ((s - m2) ** 2 + mg * mg) / mg


def _power(r: Tensor, lo: Tensor, hi: Tensor, nu: float) -> tuple[Tensor, Tensor]:
    """x in [lo, hi] (0 <= lo) with density ~ x^-nu, 0 <= nu < 1; (x, dx/dr)."""
    e = 1.0 - nu
    a, b = lo**e, hi**e
    x = (a + r * (b - a)) ** (1.0 / e)
    x = torch.minimum(torch.maximum(x, lo), hi)
    return x, (b - a) / e * x**nu


def onshell_window(mass: float, width: float, bw_cutoff: float = BW_CUTOFF) -> tuple[float, float]:
    """MadGraph's on-shell window of a decay-chain resonance: (m_lo, m_hi) in GeV with
    m_lo = max(M - bwcutoff Gamma, 0) and m_hi = M + bwcutoff Gamma."""
    return max(mass - bw_cutoff * width, 0.0), mass + bw_cutoff * width


def _momentum(s: Tensor, m1: Tensor, m2: Tensor) -> Tensor:
    """|p*| (GeV) of daughters with masses m1, m2 (n,) in a parent of mass^2 s (n,); 0 at or
    below threshold (as :func:`~evgen.phasespace.two_body.two_body_momentum`, per event)."""
    lam = (s - (m1 + m2) ** 2) * (s - (m1 - m2) ** 2)
    ok = (s > 0) & (s > (m1 + m2) ** 2)
    safe_s = torch.where(ok, s, torch.ones_like(s))
    return torch.where(ok, torch.sqrt(lam.clamp_min(0.0) / (4.0 * safe_s)), torch.zeros_like(s))


def _perpendicular_axes(n: Tensor) -> tuple[Tensor, Tensor]:
    """Two unit vectors (..., 3) that complete the unit vector n to a right-handed frame."""
    sin_t = torch.sqrt(n[..., 0] ** 2 + n[..., 1] ** 2)
    ok = sin_t > 1e-300
    safe = torch.where(ok, sin_t, torch.ones_like(sin_t))
    cos_p = torch.where(ok, n[..., 0] / safe, torch.ones_like(sin_t))
    sin_p = torch.where(ok, n[..., 1] / safe, torch.zeros_like(sin_t))
    cos_t = n[..., 2]
    e1 = torch.stack([cos_t * cos_p, cos_t * sin_p, -sin_t], dim=-1)
    e2 = torch.stack([-sin_p, cos_p, torch.zeros_like(sin_p)], dim=-1)
    return e1, e2


def _pair(e1: Tensor, e2: Tensor, vec: Tensor) -> Tensor:
    """Back-to-back momenta (n, 2, 4) with energies e1, e2 and three-momentum +-vec."""
    p1 = torch.cat([e1[:, None], vec], dim=-1)
    p2 = torch.cat([e2[:, None], -vec], dim=-1)
    return torch.stack([p1, p2], dim=1)


# --------------------------------------------------------------------------- the mapping


class ChannelPhaseSpace:
    """One diagram channel: r (n, n_dim) in [0, 1) -> PhaseSpacePoint (lab frame).

    A drop-in for :class:`~evgen.phasespace.collider.HadronicPhaseSpace` /
    :class:`~evgen.phasespace.collider.LeptonicPhaseSpace` in :class:`evgen.integrand.
    Integrand` (same ``map``, ``n_dim``, ``PhaseSpacePoint``). See the module docstring for
    the algorithm.

    Args:
        e_beam1, e_beam2: beam energies in GeV (beam 1 along +z; S = 4 E1 E2).
        masses_out: the n_out >= 2 outgoing masses in GeV.
        channel: the diagram's propagators (:meth:`Process.channels`).
        s_hat_min: lowest s_hat in GeV^2 (hadron beams); raised to (sum of masses)^2.
        s_hat_max: highest s_hat in GeV^2 (hadron beams); None (or above S) means S.
        hadronic: True for hadron beams (x1, x2 from two extra numbers), False for lepton
            beams at fixed s.
        nu_s: power of the density s^-nu_s of massless s-channel invariants, in [0, 1).
        nu_t: power of the density (M_t^2 - t)^-nu_t of t-channel invariants, in [0, 1).
        nu, bw_fraction: passed to :class:`LuminosityMapping` (hadron beams).
        bw_cutoff: decay-chain resonances (:attr:`Propagator.onshell
            <processes.base.Propagator.onshell>`) are sampled with
            |m - M| <= bw_cutoff * Gamma (MadGraph's ``bwcutoff``), > 0.

    Attributes:
        n_dim: 2 + 3 n_out - 4 (hadron beams) or 3 n_out - 4 (lepton beams).
        topology: the :class:`ChannelTopology`.
        luminosity: the LuminosityMapping (hadron beams) or None.
        s: S = 4 E1 E2 in GeV^2.

    Example:
        >>> ps = ChannelPhaseSpace(6500.0, 6500.0, [0.0, 0.0, 0.0], channel)
        >>> point = ps.map(torch.rand(1000, ps.n_dim, dtype=torch.float64))
    """

    def __init__(
        self,
        e_beam1: float,
        e_beam2: float,
        masses_out: Sequence[float],
        channel: Channel,
        *,
        s_hat_min: float = 0.0,
        s_hat_max: float | None = None,
        hadronic: bool = True,
        nu_s: float = NU_S,
        nu_t: float = NU_T,
        nu: float | None = None,
        bw_fraction: float = 0.5,
        bw_cutoff: float = BW_CUTOFF,
    ) -> None:
        if not (e_beam1 > 0 and e_beam2 > 0):
            raise ValueError(
                f"ChannelPhaseSpace: beam energies must be > 0 GeV, got {e_beam1}, {e_beam2}"
            )
        if any(not (math.isfinite(m) and m >= 0) for m in masses_out):
            raise ValueError(
                f"ChannelPhaseSpace: masses must be finite and >= 0 GeV, got {list(masses_out)}"
            )
        for name, value in (("nu_s", nu_s), ("nu_t", nu_t)):
            if not 0.0 <= value < 1.0:
                raise ValueError(f"ChannelPhaseSpace: {name} must be in [0, 1), got {value}")
        if not (math.isfinite(bw_cutoff) and bw_cutoff > 0):
            raise ValueError(f"ChannelPhaseSpace: bw_cutoff must be > 0, got {bw_cutoff}")
        self.bw_cutoff = float(bw_cutoff)
        self.masses_out = [float(m) for m in masses_out]
        self.n_out = len(self.masses_out)
        self.topology = ChannelTopology(channel, self.n_out)
        self.channel = channel
        self.hadronic = bool(hadronic)
        self.nu_s, self.nu_t = float(nu_s), float(nu_t)
        self.e_beam1, self.e_beam2 = float(e_beam1), float(e_beam2)
        self.s = 4.0 * self.e_beam1 * self.e_beam2
        threshold = sum(self.masses_out) ** 2
        self.luminosity: LuminosityMapping | None = None
        if self.hadronic:
            res = self.topology.root_propagator
            s_lo = max(float(s_hat_min), threshold)
            if res is not None and self.topology.root_onshell:
                m_lo, m_hi = onshell_window(res[0], res[1], self.bw_cutoff)
                s_lo = max(s_lo, m_lo**2)
                s_hat_max = m_hi**2 if s_hat_max is None else min(s_hat_max, m_hi**2)
                if s_hat_max <= s_lo:
                    raise ValueError(
                        f"ChannelPhaseSpace: the decay-chain resonance of mass {res[0]:g} GeV "
                        f"has no room within {self.bw_cutoff:g} widths between the threshold and "
                        "s_hat_max"
                    )
            self.luminosity = LuminosityMapping(
                e_beam1,
                e_beam2,
                s_lo,
                s_hat_max,
                res if res is not None and res[0] > 0 and res[1] > 0 else None,
                nu=nu,
                bw_fraction=bw_fraction,
            )
        elif self.s <= threshold:
            raise ValueError(
                f"ChannelPhaseSpace: sqrt(s) = {math.sqrt(self.s):.6g} GeV is not above the sum "
                f"of final-state masses {math.sqrt(threshold):.6g} GeV"
            )
        self._n_lum = 2 if self.hadronic else 0
        self.n_dim = self._n_lum + 3 * self.n_out - 4
        top = self.topology
        # random-number columns: masses in mass_order, then 2 per splitting (parents first)
        col = self._n_lum
        self._mass_col: dict[int, int] = {}
        for i in top.mass_order:
            self._mass_col[i] = col
            col += 1
        self._decay_order = [i for i in reversed(range(len(top.nodes))) if top.nodes[i].children]
        self._decay_col: dict[int, int] = {}
        for i in self._decay_order:
            self._decay_col[i] = col
            col += 2
        assert col == self.n_dim, "ChannelPhaseSpace: random-number layout"

    # ------------------------------------------------------------------ pieces
    def _s_hat(self, r: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(x1, x2, sqrt(s_hat), lab rapidity of the partonic frame, jacobian)."""
        n = r.shape[0]
        if self.luminosity is None:
            ones = torch.ones(n, dtype=torch.float64, device=r.device)
            y = 0.5 * math.log(self.e_beam1 / self.e_beam2)
            return ones, ones.clone(), ones * math.sqrt(self.s), ones * y, ones.clone()
        x, jac = self.luminosity.map(r[:, :2])
        x1, x2 = x[:, 0], x[:, 1]
        a, b = x1 * self.e_beam1, x2 * self.e_beam2
        ok = (a > 0) & (b > 0)
        a, b = torch.where(ok, a, 1.0), torch.where(ok, b, 1.0)
        jac = torch.where(ok, jac, torch.zeros_like(jac))
        return x1, x2, 2.0 * torch.sqrt(a * b), 0.5 * torch.log(a / b), jac

    def _masses(self, r: Tensor, root_mass: Tensor) -> tuple[dict[int, Tensor], Tensor, Tensor]:
        """Masses (GeV) of all nodes, the jacobian prod ds / (2 pi dr), and a validity mask."""
        top = self.topology
        m: dict[int, Tensor] = {
            k: torch.full_like(root_mass, self.masses_out[k]) for k in range(self.n_out)
        }
        m[top.root] = root_mass
        jac = torch.ones_like(root_mass)
        ok = torch.ones_like(root_mass, dtype=torch.bool)
        for i, others, caps in zip(top.mass_order, top.others, top.caps, strict=True):
            node = top.nodes[i]
            lo = m[node.children[0]] + m[node.children[1]]
            hi = root_mass - sum((m[b] for b in others), torch.zeros_like(root_mass))
            for j, inside in caps:  # inside a decay-chain resonance's window
                m_hi = onshell_window(top.nodes[j].mass, top.nodes[j].width, self.bw_cutoff)[1]
                hi = torch.minimum(hi, m_hi - sum((m[b] for b in inside), torch.zeros_like(hi)))
            ok = ok & (hi > lo)
            hi = torch.maximum(hi, lo)
            if node.onshell:  # MadGraph's bwcutoff window of a decay-chain resonance
                m_lo, m_hi = onshell_window(node.mass, node.width, self.bw_cutoff)
                lo = lo.clamp_min(m_lo)
                hi = hi.clamp_max(m_hi)
                ok = ok & (hi > lo)
                hi = torch.maximum(hi, lo)
            s_lo, s_hi = lo * lo, hi * hi
            u = r[:, self._mass_col[i]]
            if node.mapping == "bw":
                s, ds = _breit_wigner(u, s_lo, s_hi, node.mass, node.width)
            elif node.mapping == "power":
                s, ds = _power(u, s_lo, s_hi, self.nu_s)
            else:
                s = s_lo + u * (s_hi - s_lo)
                ds = s_hi - s_lo
            m[i] = torch.sqrt(s.clamp_min(0.0))
            jac = jac * ds / (2.0 * math.pi)
        return m, jac, ok

    @staticmethod
    def _safe_parent(parent: Tensor, mass: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(parent, mass, ok): unusable parents (mass <= 0) replaced by one at rest."""
        ok = (mass > 0) & (parent[:, 0] > 0)
        rest = torch.zeros_like(parent)
        rest[:, 0] = 1.0
        return (
            torch.where(ok[:, None], parent, rest),
            torch.where(ok, mass, torch.ones_like(mass)),
            ok,
        )

    def _decay(
        self, r: Tensor, parent: Tensor, mass: Tensor, m1: Tensor, m2: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Flat two-body decay: (daughters (n, 2, 4), jacobian p* / (4 pi m), ok)."""
        parent, mass, ok = self._safe_parent(parent, mass)
        s = mass * mass
        pstar = _momentum(s, m1, m2)
        e1 = (s + m1 * m1 - m2 * m2) / (2.0 * mass)
        e2 = (s + m2 * m2 - m1 * m1) / (2.0 * mass)
        cos_t = (2.0 * r[:, 0] - 1.0).clamp(-1.0, 1.0)
        sin_t = torch.sqrt((1.0 - cos_t) * (1.0 + cos_t))
        ph = 2.0 * math.pi * r[:, 1]
        direction = torch.stack([sin_t * torch.cos(ph), sin_t * torch.sin(ph), cos_t], dim=-1)
        both = _pair(e1, e2, pstar[:, None] * direction)
        daughters = boost_from_rest(both, parent[:, None, :], mass[:, None])
        return daughters, pstar / (4.0 * math.pi * mass), ok & (pstar > 0)

    def _t_step(
        self,
        r: Tensor,
        parent: Tensor,
        mass: Tensor,
        q: Tensor,
        t_q: Tensor,
        m1: Tensor,
        m2: Tensor,
        t_mass: float,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """parent = q + p_b -> p1 (mass m1) + p2 (m2), t = (q - p1)^2 sampled.

        q: the spacelike (or incoming massless) momentum from side 1, q^2 = t_q; p_b is
        massless. Returns (daughters (n, 2, 4), t, jacobian dPhi_2 per unit square, ok).
        """
        parent, mass, ok = self._safe_parent(parent, mass)
        s = mass * mass
        p = _momentum(s, m1, m2)
        e1 = (s + m1 * m1 - m2 * m2) / (2.0 * mass)
        e2 = (s + m2 * m2 - m1 * m1) / (2.0 * mass)
        e_a = (s + t_q) / (2.0 * mass)
        p_a = (s - t_q) / (2.0 * mass)
        x_plus = e_a * e1 + p_a * p
        safe_plus = torch.where(x_plus > 0, x_plus, torch.ones_like(x_plus))
        # E_A E1 - |p_A| p, without cancellation where both terms are positive
        x_minus = torch.where(
            (e_a > 0) & (x_plus > 0),
            (e_a * e_a * m1 * m1 + t_q * p * p) / safe_plus,
            e_a * e1 - p_a * p,
        )
        t_max = t_q + m1 * m1 - 2.0 * x_minus
        t_min = t_q + m1 * m1 - 2.0 * x_plus
        m_t2 = t_mass * t_mass
        u_lo, u_hi = m_t2 - t_max, m_t2 - t_min
        shift = (-u_lo).clamp_min(0.0)
        v, du = _power(r[:, 0], u_lo + shift, torch.maximum(u_hi, u_lo) + shift, self.nu_t)
        u = v - shift
        t = m_t2 - u
        # 1 - cos(theta) = (t_max - t) / (2 |p_A| p), theta from q's direction (rest frame)
        denom = 2.0 * p_a * p
        ok = ok & (denom > 0) & (u_hi > u_lo)
        safe_denom = torch.where(ok, denom, torch.ones_like(denom))
        one_minus = ((u - u_lo) / safe_denom).clamp(0.0, 2.0)
        cos_t = 1.0 - one_minus
        sin_t = torch.sqrt((one_minus * (2.0 - one_minus)).clamp_min(0.0))
        ph = 2.0 * math.pi * r[:, 1]
        q_rest = boost_to_rest(q, parent, mass)[:, 1:]
        q_abs = torch.linalg.vector_norm(q_rest, dim=-1)
        axis = torch.where(
            (q_abs > 0)[:, None],
            q_rest / torch.where(q_abs > 0, q_abs, 1.0)[:, None],
            torch.tensor([0.0, 0.0, 1.0], dtype=q.dtype, device=q.device),
        )
        ax1, ax2 = _perpendicular_axes(axis)
        direction = (
            (sin_t * torch.cos(ph))[:, None] * ax1
            + (sin_t * torch.sin(ph))[:, None] * ax2
            + cos_t[:, None] * axis
        )
        both = _pair(e1, e2, p[:, None] * direction)
        daughters = boost_from_rest(both, parent[:, None, :], mass[:, None])
        jac = du / (8.0 * math.pi * (s - t_q))
        return daughters, t, jac, ok

    # ------------------------------------------------------------------ public
    def map(self, r: Tensor) -> PhaseSpacePoint:
        """r (n, n_dim) in [0, 1) -> PhaseSpacePoint: lab-frame momenta (n, 2 + n_out, 4) GeV,
        x1, x2, jacobian dx1 dx2 dPhi_n (hadron beams; dPhi_n for lepton beams) per unit
        volume, GeV^(2 n_out - 4), 0 outside the physical region."""
        r = r.to(torch.float64)
        if r.ndim != 2 or r.shape[1] != self.n_dim:
            raise ValueError(
                f"ChannelPhaseSpace.map: r must have shape (n, {self.n_dim}), got {tuple(r.shape)}"
            )
        top = self.topology
        n = r.shape[0]
        x1, x2, root_mass, rapidity, jac = self._s_hat(r)
        m, jac_m, ok = self._masses(r, root_mass)
        jac = jac * jac_m
        zero = torch.zeros_like(root_mass)
        half = 0.5 * root_mass
        mom: dict[int, Tensor] = {top.root: torch.stack([root_mass, zero, zero, zero], dim=-1)}
        q: dict[int, Tensor] = {top.root: torch.stack([half, zero, zero, half], dim=-1)}
        t_q: dict[int, Tensor] = {top.root: zero}
        for i in self._decay_order:
            node = top.nodes[i]
            c1, c2 = node.children
            cols = r[:, self._decay_col[i] : self._decay_col[i] + 2]
            if node.decay == "t":
                daughters, t, j, good = self._t_step(
                    cols, mom[i], m[i], q[i], t_q[i], m[c1], m[c2], node.t_mass
                )
                q[c2] = q[i] - daughters[:, 0]
                t_q[c2] = t
            else:
                daughters, j, good = self._decay(cols, mom[i], m[i], m[c1], m[c2])
            mom[c1], mom[c2] = daughters[:, 0], daughters[:, 1]
            jac = jac * j
            ok = ok & good
        final = torch.stack([mom[k] for k in range(self.n_out)], dim=1)
        final = boost_z(final, rapidity[:, None])
        a, b = x1 * self.e_beam1, x2 * self.e_beam2
        incoming = torch.stack(
            [torch.stack([a, zero, zero, a], -1), torch.stack([b, zero, zero, -b], -1)], dim=1
        )
        momenta = torch.cat([incoming, final], dim=1)
        finite = torch.isfinite(momenta).reshape(n, -1).all(-1) & torch.isfinite(jac)
        momenta = torch.where(finite[:, None, None], momenta, torch.zeros_like(momenta))
        jac = torch.where(ok & finite & (jac > 0), jac, torch.zeros_like(jac))
        return PhaseSpacePoint(momenta, x1, x2, jac)

    def __repr__(self) -> str:
        beams = "hadronic" if self.hadronic else "leptonic"
        return f"ChannelPhaseSpace({self.topology.describe()}, {beams}, n_dim={self.n_dim})"


# --------------------------------------------------------------------------- per process


@dataclass(frozen=True)
class DiagramChannels:
    """The distinct channel mappings of one or more processes sharing a final state.

    Attributes:
        phase_spaces: one :class:`ChannelPhaseSpace` per distinct mapping.
        channel_of: per process, the index into ``phase_spaces`` of each of its
            :meth:`Process.channels` (the ``channel_of`` of :class:`evgen.integrand.Integrand`).
        labels: per mapping, the propagators of the channels merged into it, e.g.
            ``"s23(2,3) t2(4)"`` (kind, PDG id, external legs).
    """

    phase_spaces: list[ChannelPhaseSpace]
    channel_of: list[list[int]]
    labels: list[str]


def _label(channel: Channel) -> str:
    parts = [f"{p.kind}{p.pdg}({','.join(map(str, p.legs))})" for p in channel.propagators]
    return " ".join(parts) or "flat"


def channel_phase_spaces(
    processes: Process | Sequence[Process],
    e_beam1: float,
    e_beam2: float,
    *,
    s_hat_min: float = 0.0,
    s_hat_max: float | None = None,
    hadronic: bool = True,
    nu_s: float = NU_S,
    nu_t: float = NU_T,
    bw_fraction: float | None = None,
    bw_cutoff: float = BW_CUTOFF,
) -> DiagramChannels:
    """One :class:`ChannelPhaseSpace` per distinct channel of ``processes``.

    Channels whose mappings coincide (same tree, propagator masses and widths; e.g. a
    photon and a gluon s-channel, or the same topology in two subprocesses) share one.

    Args:
        processes: a 2 -> n process, or several with the same outgoing masses (massless
            incoming partons).
        e_beam1, e_beam2: beam energies in GeV.
        s_hat_min, s_hat_max, hadronic, nu_s, nu_t: see :class:`ChannelPhaseSpace`.
        bw_fraction: share of the Breit-Wigner in the s_hat mapping of a channel with an
            s-channel resonance through s_hat (hadron beams); default 1 when there are
            other channels to cover the continuum, 0.5 for a lone channel.
        bw_cutoff: window of decay-chain resonances in widths (see
            :class:`ChannelPhaseSpace`).

    Returns:
        DiagramChannels (mappings, per-process channel index map, labels).

    Raises:
        ValueError: no process, processes with different outgoing masses, massive or
            not exactly two incoming particles.
    """
    procs = [processes] if isinstance(processes, Process) else list(processes)
    if not procs:
        raise ValueError("channel_phase_spaces: need at least one process")
    masses = procs[0].masses[_N_IN:]
    for p in procs:
        if len(p.incoming) != _N_IN or any(m != 0 for m in p.masses[:_N_IN]):
            raise ValueError(
                f"channel_phase_spaces: {p.name!r}: need two massless incoming partons, "
                f"got masses {p.masses[: len(p.incoming)]} GeV"
            )
        if tuple(p.masses[_N_IN:]) != tuple(masses):
            raise ValueError(
                f"channel_phase_spaces: {p.name!r} has outgoing masses {p.masses[_N_IN:]} GeV, "
                f"{procs[0].name!r} has {masses}: one phase space needs equal masses"
            )
    keyed: list[tuple[tuple, Channel]] = []
    channel_of: list[list[int]] = []
    labels: list[list[str]] = []
    keys: list[tuple] = []
    for p in procs:
        idx = []
        for ch in p.channels():
            key = ChannelTopology(ch, len(masses)).mapping_key(hadronic)
            if key not in keys:
                keys.append(key)
                keyed.append((key, ch))
                labels.append([])
            k = keys.index(key)
            if _label(ch) not in labels[k]:
                labels[k].append(_label(ch))
            idx.append(k)
        channel_of.append(idx)
    if bw_fraction is None:
        bw_fraction = 1.0 if len(keyed) > 1 else 0.5
    spaces = [
        ChannelPhaseSpace(
            e_beam1,
            e_beam2,
            masses,
            ch,
            s_hat_min=s_hat_min,
            s_hat_max=s_hat_max,
            hadronic=hadronic,
            nu_s=nu_s,
            nu_t=nu_t,
            bw_fraction=bw_fraction,
            bw_cutoff=bw_cutoff,
        )
        for _, ch in keyed
    ]
    return DiagramChannels(spaces, channel_of, [" / ".join(lab) for lab in labels])
