r"""A card-driven parametric detector simulation for evgen events (``evgen detector``).

It turns parton-level events (:class:`~evgen.events.Events`, e.g. read from evgen's
ROOT output) into paired parton- and detector-level observables, in the convention of
:mod:`unfolding.card` (pairing ``tree``), to make simulation and pseudo-data.

Objects (final-state particles, LHE status 1):

* **Jets**: every quark (d u s c b, either sign) and gluon becomes exactly one jet, with
  its direction (one-to-one matching, no clustering: two partons closer than a jet
  radius stay two jets; a parton that fails acceptance or efficiency is simply lost).
  The four-momentum is scaled by 1 + sigma N(0, 1) with the energy resolution
  sigma_E / E = a / sqrt(E [GeV]) (+) b of the |eta| region of the parton (the first
  region with |eta| <= ``eta_max``; beyond the last region the jet is not measured).
  b-tagging: a jet from a b quark is tagged with ``btag_efficiency``, from a c quark with
  ``mistag_c``, from a light quark or gluon with ``mistag_light``.
* **Charged leptons** (e, mu): the four-momentum is scaled by 1 + sigma N(0, 1) with
  sigma_pT / pT = c (+) d pT [GeV] of its |eta| region. Taus are not reconstructed.
* Both: accepted when the *measured* pT > ``pt_min`` and |eta| < ``eta_max``, then
  reconstructed with probability ``efficiency``.
* **Missing transverse momentum**: the neutrinos' summed (px, py) plus a Gaussian on each
  component with sigma = c (+) s sqrt(sum ET), sum ET the scalar pT sum of the visible
  final-state partons. At detector level the neutrino of highest parton-level pT is the
  MET neutrino: (px, py) = MET, pz from the W-mass constraint (l + nu)^2 = m_W^2 with the
  leading measured lepton, the smaller-|pz| root (its real part when there is none);
  other neutrinos are part of that MET and contribute nothing themselves.

Named objects (``detector.objects``) pick the ``rank``-th particle, by parton-level pT,
whose signed PDG id is listed; intermediate resonances (status 2, e.g. t, W) qualify
too. An object's detector-level counterpart is its measured self, or for a resonance
the sum of the counterparts of its final-state descendants (followed through the LHE
mother indices): a leptonically decaying top is b jet + lepton + MET neutrino. This is
perfect (truth-matched) assignment of the measured objects, so no combinatorics enter.

Selections: an event passes the detector level (``pass_reco``) when every object that
the observables use is measured (for a resonance: every final-state descendant) and
objects with ``btag`` are b-tagged jets; it passes the parton level (``pass_truth``)
when every such object exists and their final-state descendants pass the ``fiducial``
cuts. Events failing reconstruction are kept with their flag; the observables of a level
that an event fails are written as NaN (the reader puts placeholders there).

Units: GeV, radians.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from evgen.events import Events
from evgen.io.atomic import atomic_output
from evgen.kinematics import mass2, phi, pseudorapidity, pt, rapidity
from unfolding.card import DetectorCard, ObservableCard
from unfolding.errors import UnfoldingError

__all__ = [
    "DetectorLevel",
    "reconstruct",
    "simulate",
    "simulate_file",
    "observable_value",
    "JET_PDG",
    "LEPTON_PDG",
    "NEUTRINO_PDG",
]

#: |PDG id| of partons that become jets.
JET_PDG = (1, 2, 3, 4, 5, 21)
#: |PDG id| of measured charged leptons.
LEPTON_PDG = (11, 13)
#: |PDG id| of neutrinos (missing transverse momentum).
NEUTRINO_PDG = (12, 14, 16)


@dataclass(frozen=True)
class DetectorLevel:
    """Per-particle detector response of one batch of events (n events, k particles).

    Attributes:
        momenta: (n, k, 4) measured four-momenta (E, px, py, pz) in GeV: smeared jets and
            leptons, the MET neutrino at the leading neutrino, zeros elsewhere.
        found: (n, k) bool: measured (jets and leptons: accepted and reconstructed;
            neutrinos: always; everything else: never).
        btag: (n, k) bool: a b-tagged jet.
        is_jet, is_lepton, is_neutrino: (n, k) bool final-state particle types.
        met: (n, 2) measured missing (px, py) in GeV.
        met_truth: (n, 2) the neutrinos' summed (px, py) in GeV.
    """

    momenta: Tensor
    found: Tensor
    btag: Tensor
    is_jet: Tensor
    is_lepton: Tensor
    is_neutrino: Tensor
    met: Tensor
    met_truth: Tensor


def _isin(pdg: Tensor, ids: Sequence[int]) -> Tensor:
    return torch.isin(pdg, torch.tensor(list(ids), dtype=pdg.dtype, device=pdg.device))


def _region_sigma(eta_abs: Tensor, eta_max: Sequence[float]) -> tuple[Tensor, Tensor]:
    """Index of the first |eta| region containing each particle, and inside-coverage."""
    edges = torch.tensor(list(eta_max), dtype=eta_abs.dtype, device=eta_abs.device)
    idx = torch.bucketize(eta_abs.contiguous(), edges, right=False)  # eta <= edge -> idx
    inside = idx < len(eta_max)
    return idx.clamp(max=len(eta_max) - 1), inside


def _neutrino_pz(lepton: Tensor, met: Tensor, w_mass: float) -> Tensor:
    """pz of the neutrino from (l + nu)^2 = m_W^2 with massless l and nu; the smaller |pz|
    root, the real part when the discriminant is negative. lepton (n, 4), met (n, 2)."""
    lx, ly, lz, le = lepton[:, 1], lepton[:, 2], lepton[:, 3], lepton[:, 0]
    lpt2 = (lx**2 + ly**2).clamp(min=1e-12)
    mu = 0.5 * w_mass**2 + lx * met[:, 0] + ly * met[:, 1]
    a = mu * lz / lpt2
    disc = a**2 - (le**2 * (met**2).sum(-1) - mu**2) / lpt2
    root = torch.sqrt(disc.clamp(min=0.0))
    p1, p2 = a + root, a - root
    return torch.where(p1.abs() < p2.abs(), p1, p2)


def reconstruct(events: Events, card: DetectorCard, generator: torch.Generator) -> DetectorLevel:
    """Smear, accept and reconstruct every final-state particle of a batch (see the
    module docstring). Random numbers come from ``generator`` (on the events' device)."""
    p = events.momenta.to(torch.float64)
    n, k = p.shape[:2]
    dev, f64 = p.device, torch.float64
    apdg = events.pdg.abs()
    final = events.status == 1
    is_jet = final & _isin(apdg, JET_PDG)
    is_lep = final & _isin(apdg, LEPTON_PDG)
    is_nu = final & _isin(apdg, NEUTRINO_PDG)

    def normal() -> Tensor:
        return torch.randn((n, k), generator=generator, dtype=f64, device=dev)

    def uniform() -> Tensor:
        return torch.rand((n, k), generator=generator, dtype=f64, device=dev)

    eta_abs = pseudorapidity(p).abs().nan_to_num(nan=math.inf)
    energy = p[..., 0].clamp(min=1e-9)
    ptt = pt(p)

    # jets: sigma_E / E = a / sqrt(E) (+) b
    jc = card.jets
    j_idx, j_inside = _region_sigma(eta_abs, [r.eta_max for r in jc.resolution])
    j_a = torch.tensor([r.stochastic for r in jc.resolution], dtype=f64, device=dev)[j_idx]
    j_b = torch.tensor([r.constant for r in jc.resolution], dtype=f64, device=dev)[j_idx]
    j_sigma = torch.sqrt(j_a**2 / energy + j_b**2)
    # leptons: sigma_pT / pT = c (+) d pT
    lc = card.leptons
    l_idx, l_inside = _region_sigma(eta_abs, [r.eta_max for r in lc.resolution])
    l_c = torch.tensor([r.constant for r in lc.resolution], dtype=f64, device=dev)[l_idx]
    l_d = torch.tensor([r.pt_term for r in lc.resolution], dtype=f64, device=dev)[l_idx]
    l_sigma = torch.sqrt(l_c**2 + (l_d * ptt) ** 2)

    sigma = torch.where(is_jet, j_sigma, torch.where(is_lep, l_sigma, torch.zeros_like(ptt)))
    factor = 1.0 + sigma * normal()
    eff_draw = uniform()
    tag_draw = uniform()
    smeared = p * factor.clamp(min=0.0)[..., None]
    spt = pt(smeared)
    jet_ok = (
        is_jet
        & j_inside
        & (factor > 0)
        & (spt > jc.pt_min)
        & (eta_abs < jc.eta_max)
        & (eff_draw < jc.efficiency)
    )
    lep_ok = (
        is_lep
        & l_inside
        & (factor > 0)
        & (spt > lc.pt_min)
        & (eta_abs < lc.eta_max)
        & (eff_draw < lc.efficiency)
    )
    tag_prob = torch.where(
        apdg == 5,
        torch.tensor(jc.btag_efficiency, dtype=f64, device=dev),
        torch.where(
            apdg == 4,
            torch.tensor(jc.mistag_c, dtype=f64, device=dev),
            torch.tensor(jc.mistag_light, dtype=f64, device=dev),
        ),
    )
    btag = jet_ok & (tag_draw < tag_prob)

    # missing transverse momentum
    met_truth = (p[..., 1:3] * is_nu[..., None]).sum(1)
    sum_et = (ptt * (final & ~is_nu)).sum(1)
    mc = card.met
    met_sigma = torch.sqrt(mc.constant**2 + mc.stochastic**2 * sum_et)
    noise = torch.randn((n, 2), generator=generator, dtype=f64, device=dev)
    met = met_truth + met_sigma[:, None] * noise

    # the MET neutrino, at the leading neutrino
    lep_pt = torch.where(lep_ok, spt, torch.full_like(spt, -1.0))
    lead_lep = smeared.gather(1, lep_pt.argmax(1)[:, None, None].expand(n, 1, 4))[:, 0]
    has_lep = lep_ok.any(1)
    pz = torch.where(has_lep, _neutrino_pz(lead_lep, met, mc.w_mass), torch.zeros_like(met[:, 0]))
    nu_e = torch.sqrt((met**2).sum(-1) + pz**2)
    nu = torch.stack([nu_e, met[:, 0], met[:, 1], pz], -1)
    nu_pt = torch.where(is_nu, ptt, torch.full_like(ptt, -1.0))
    lead_nu = torch.zeros((n, k), dtype=torch.bool, device=dev)
    lead_nu.scatter_(1, nu_pt.argmax(1)[:, None], True)
    lead_nu &= is_nu

    momenta = torch.where((jet_ok | lep_ok)[..., None], smeared, torch.zeros_like(p))
    momenta = torch.where(lead_nu[..., None], nu[:, None, :].expand(n, k, 4), momenta)
    found = jet_ok | lep_ok | is_nu
    return DetectorLevel(momenta, found, btag, is_jet, is_lep, is_nu, met, met_truth)


def _descendants(events: Events) -> Tensor:
    """(n, k, k) bool: [e, i, j] true when particle i descends from particle j (via the
    first mother index, followed to the top of the record)."""
    n, k = events.pdg.shape
    mother = events.mothers[..., 0].to(torch.long) - 1  # -1: none
    valid = (mother >= 0) & (mother < k)
    parent = torch.zeros((n, k, k), dtype=torch.bool, device=events.pdg.device)
    parent.scatter_(2, mother.clamp(0, k - 1)[..., None], valid[..., None])
    anc = parent.clone()
    step = parent.to(torch.float32)
    for _ in range(k):  # path lengths up to k (a loop over particles, not events)
        nxt = anc | ((anc.to(torch.float32) @ step) > 0)
        if torch.equal(nxt, anc):
            break
        anc = nxt
    return anc


@dataclass(frozen=True)
class _Object:
    truth: Tensor  # (n, 4)
    reco: Tensor  # (n, 4)
    exists: Tensor  # (n,) at parton level
    found: Tensor  # (n,) at detector level (btag rule included)
    fiducial: Tensor  # (n,) its final-state constituents pass the fiducial cuts


def _objects(
    events: Events, det: DetectorLevel, card: DetectorCard, names: Sequence[str]
) -> dict[str, _Object]:
    p = events.momenta.to(torch.float64)
    n, k = p.shape[:2]
    status = events.status
    final = status == 1
    anc = _descendants(events)
    ptt = pt(p)
    eta_abs = pseudorapidity(p).abs().nan_to_num(nan=math.inf)
    fid = card.fiducial

    def cut(lo: float, value: Tensor) -> Tensor:
        return value > lo if lo >= 0 else torch.ones_like(value, dtype=torch.bool)

    def cut_max(hi: float, value: Tensor) -> Tensor:
        return value < hi if hi >= 0 else torch.ones_like(value, dtype=torch.bool)

    part_fid = torch.where(
        det.is_jet,
        cut(fid.jet_pt_min, ptt) & cut_max(fid.jet_eta_max, eta_abs),
        torch.where(
            det.is_lepton,
            cut(fid.lepton_pt_min, ptt) & cut_max(fid.lepton_eta_max, eta_abs),
            torch.ones_like(final),
        ),
    )
    measurable = det.is_jet | det.is_lepton | det.is_neutrino
    out = {}
    for name in names:
        spec = card.objects[name]
        match = _isin(events.pdg, spec.pdg) & ((status == 1) | (status == 2))
        key = torch.where(match, ptt, torch.full_like(ptt, -math.inf))
        order = key.argsort(dim=1, descending=True, stable=True)
        idx = order[:, min(spec.rank, k - 1)]
        exists = match.sum(1) > spec.rank
        onehot = torch.zeros((n, k), dtype=torch.bool, device=p.device)
        onehot.scatter_(1, idx[:, None], True)
        # final-state constituents: itself (if final) or its final-state descendants
        constituents = (anc & onehot[:, None, :]).any(2) | onehot
        constituents &= final
        w = constituents[..., None].to(torch.float64)
        reco = (det.momenta * w).sum(1)
        found = (~constituents | (det.found & measurable)).all(1) & constituents.any(1)
        if spec.btag:
            found &= (onehot & det.btag).any(1)
        fiducial = (~constituents | part_fid).all(1)
        truth = p.gather(1, idx[:, None, None].expand(n, 1, 4))[:, 0]
        out[name] = _Object(truth, reco, exists, found & exists, fiducial & exists)
    return out


def _wrap(dphi: Tensor) -> Tensor:
    return torch.remainder(dphi + math.pi, 2 * math.pi) - math.pi


def observable_value(quantity: str, a: Tensor, b: Tensor | None = None) -> Tensor:
    """One quantity of four-momenta a (n, 4) (and b for the pair quantities), float64.

    pt, energy, px, py, pz, mass (GeV; sqrt of max(m^2, 0)), eta, rapidity, phi (rad);
    pairs: delta_phi (wrapped to [-pi, pi)), abs_delta_phi, delta_eta, delta_rapidity,
    delta_r, cos_angle (cosine of the lab-frame opening angle).
    """
    single = {
        "pt": lambda: pt(a),
        "eta": lambda: pseudorapidity(a),
        "rapidity": lambda: rapidity(a),
        "phi": lambda: phi(a),
        "mass": lambda: torch.sqrt(mass2(a).clamp(min=0.0)),
        "energy": lambda: a[:, 0],
        "px": lambda: a[:, 1],
        "py": lambda: a[:, 2],
        "pz": lambda: a[:, 3],
    }
    if quantity in single:
        return single[quantity]()
    if b is None:
        raise UnfoldingError(f"observable quantity {quantity!r} needs a second object")
    if quantity == "delta_phi":
        return _wrap(phi(a) - phi(b))
    if quantity == "abs_delta_phi":
        return _wrap(phi(a) - phi(b)).abs()
    if quantity == "delta_eta":
        return pseudorapidity(a) - pseudorapidity(b)
    if quantity == "delta_rapidity":
        return rapidity(a) - rapidity(b)
    if quantity == "delta_r":
        return torch.sqrt(
            (pseudorapidity(a) - pseudorapidity(b)) ** 2 + _wrap(phi(a) - phi(b)) ** 2
        )
    if quantity == "cos_angle":
        va, vb = a[:, 1:], b[:, 1:]
        norm = (va.norm(dim=1) * vb.norm(dim=1)).clamp(min=1e-300)
        return (va * vb).sum(1) / norm
    raise UnfoldingError(f"unknown observable quantity {quantity!r}")


def simulate(
    events: Events,
    card: DetectorCard,
    observables: Sequence[ObservableCard],
    generator: torch.Generator,
) -> dict[str, Tensor]:
    """Detector simulation of one batch: the output branches as tensors.

    Returns:
        ``weight`` (n,) float64 (the events' weights, pb), ``pass_truth``, ``pass_reco``
        (n,) bool, and per observable ``<truth branch>``, ``<reco branch>`` (n,) float64,
        NaN where the event fails that level's selection.
    """
    used = sorted({o for obs in observables for o in _used_objects(obs)})
    det = reconstruct(events, card, generator)
    objs = _objects(events, det, card, used)
    n = len(events)
    dev = events.momenta.device
    pass_truth = torch.ones(n, dtype=torch.bool, device=dev)
    pass_reco = torch.ones(n, dtype=torch.bool, device=dev)
    for name in used:
        pass_truth &= objs[name].fiducial
        pass_reco &= objs[name].found
    fid = card.fiducial
    if fid.met_min >= 0:
        pass_truth &= det.met_truth.norm(dim=1) > fid.met_min
    out: dict[str, Tensor] = {
        "weight": events.weights.to(torch.float64),
        "pass_truth": pass_truth,
        "pass_reco": pass_reco,
    }
    nan = torch.tensor(math.nan, dtype=torch.float64, device=dev)
    for obs in observables:
        d = obs.definition
        assert d is not None  # by the card's validator
        for level, passing, branch in (
            ("truth", pass_truth, obs.truth_branch),
            ("reco", pass_reco, obs.reco_branch),
        ):
            a = sum(getattr(objs[o], level) for o in d.objects)
            b = sum(getattr(objs[o], level) for o in d.other) if d.other else None
            value = observable_value(d.quantity, a, b)
            out[branch] = torch.where(passing & torch.isfinite(value), value, nan)
    return out


def _used_objects(obs: ObservableCard) -> list[str]:
    if obs.definition is None:
        raise UnfoldingError(f"observable {obs.name}: no definition for the detector simulation")
    return obs.definition.objects + (obs.definition.other or [])


def _batches(path: Path, chunk: int) -> Any:
    """Yield Events from an evgen ROOT file, ``chunk`` entries at a time."""
    import uproot

    from evgen.io.root import read_root

    if not path.is_file():
        raise UnfoldingError(f"{path}: events file not found")
    try:
        with uproot.open(path) as f:
            if "events" not in f:
                raise UnfoldingError(f"{path}: no tree 'events' (not an evgen ROOT event file)")
            total = int(f["events"].num_entries)
    except UnfoldingError:
        raise
    except Exception as err:
        raise UnfoldingError(f"{path}: cannot open events file as ROOT ({err})") from None
    for start in range(0, total, chunk):
        events, _ = read_root(path, entry_start=start, entry_stop=min(start + chunk, total))
        yield from [events] if isinstance(events, Events) else events


def simulate_file(
    card: DetectorCard,
    observables: Sequence[ObservableCard],
    events_path: str | Path,
    output_path: str | Path,
    *,
    seed: int = 0,
    device: str = "cpu",
) -> dict[str, Any]:
    """Run the detector simulation on an evgen ROOT event file; write a ROOT tree.

    The tree ``card.tree`` has ``event_number`` (int64, the entry's position in the
    input), ``weight`` (pb), ``pass_truth``, ``pass_reco`` (bool) and the observables'
    branches; written in chunks of ``card.chunk_size`` with uproot ``mktree`` +
    ``extend``, atomically (nothing is left when it fails).

    Returns:
        Statistics: events, fractions passing each level, fakes, misses, seconds.
    """
    import uproot

    start = time.perf_counter()
    events_path, output_path = Path(events_path), Path(output_path)
    generator = torch.Generator(device=device).manual_seed(seed)
    types: dict[str, Any] = {
        "event_number": np.int64,
        "weight": np.float64,
        "pass_truth": np.bool_,
        "pass_reco": np.bool_,
    }
    for obs in observables:
        types[obs.truth_branch] = np.float64
        types[obs.reco_branch] = np.float64
    counts = {"events": 0, "pass_truth": 0, "pass_reco": 0, "fakes": 0, "misses": 0}
    with atomic_output(output_path) as tmp, uproot.recreate(tmp) as file:
        tree = file.mktree(card.tree, types, title="evgen detector simulation")
        offset = 0
        for batch in _batches(events_path, card.chunk_size):
            out = simulate(batch.to(device), card, observables, generator)
            n = len(batch)
            arrays = {k: v.cpu().numpy() for k, v in out.items()}
            arrays["event_number"] = np.arange(offset, offset + n, dtype=np.int64)
            tree.extend({k: arrays[k] for k in types})
            pt_, pr_ = arrays["pass_truth"], arrays["pass_reco"]
            counts["events"] += n
            counts["pass_truth"] += int(pt_.sum())
            counts["pass_reco"] += int(pr_.sum())
            counts["fakes"] += int((pr_ & ~pt_).sum())
            counts["misses"] += int((pt_ & ~pr_).sum())
            offset += n
    stats: dict[str, Any] = {"output": str(output_path), **counts}
    total = max(counts["events"], 1)
    stats["pass_truth fraction"] = counts["pass_truth"] / total
    stats["pass_reco fraction"] = counts["pass_reco"] / total
    stats["seconds"] = time.perf_counter() - start
    return stats
