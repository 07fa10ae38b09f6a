"""Batched HELAS/ALOHA wave functions and vertices for MadGraph's ``sm`` model, in torch.

The conventions are exactly those of the MG5_aMC ALOHA output (Fortran ``aloha`` and
madgraph4gpu's ``HelAmps_sm.h``), so that the couplings of MadGraph's ``sm`` model
(``GC_3 = -ee*complex(0,1)``, ``GC_10 = -G``, ``GC_11 = complex(0,1)*G``, ...) plug in
unchanged and a process is a straight-line list of calls, as in MadGraph's output.

Wave functions are complex tensors of shape (..., 6), any leading batch dimensions (e.g.
(n_events, n_helicities)); complex128 for float64 momenta:

- ``w[..., 0:2]``: the momentum flow, ``w[0] = (E + i pz) * eta``, ``w[1] = (px + i py) *
  eta``, where ``eta * p`` is the momentum flowing *out of the diagram* through the leg
  (``eta = nsf`` for :func:`oxxxxx`, ``nsv`` / ``nss`` for :func:`vxxxxx` / :func:`sxxxxx`,
  and ``eta = -nsf`` for :func:`ixxxxx`, as in MG5 2.x/3.x ALOHA). The flows of all
  external legs of a diagram sum to zero; an off-shell wave function carries the sum of
  the flows of the legs it was built from.
- ``w[..., 2:6]``: the Dirac spinor in the HELAS chiral representation (gamma^0 =
  [[0, 1], [1, 0]], gamma^k = [[0, sigma^k], [-sigma^k, 0]], gamma_5 = diag(-1, -1, 1,
  1), so ProjM = diag(1, 1, 0, 0)), or the polarisation vector (contravariant, (E, x, y,
  z) order); a scalar uses ``w[..., 2]`` only (the rest is zero).

Vertices. A Lorentz structure L of the UFO model (a polynomial in the wave functions of
its legs, linear in each) gives the ALOHA routines

- ``NAME_0(w1, ..., wn, COUP)``: the amplitude ``-i COUP L``, shape (...);
- ``NAME_k(w1, ..(without wk).., wn, COUP, Mk, Wk)``: the off-shell wave function of leg
  k, ``Prop_k(P) * COUP * dL/dw_k`` with the Feynman propagators (D = P^2 - M^2 + i M W)
  fermion ``i (qslash + M) / D``, scalar ``i / D``, massive vector in unitary gauge
  ``-i (g - P P / M^2) / D``, massless vector ``-i g / D`` (Feynman gauge).

Momenta inside a vertex are ALOHA's: each leg's P is its flow ``(Re w0, Re w1, Im w1, Im
w0)``, the off-shell leg's P is minus the sum of the other flows (so P_1 + ... + P_n = 0:
every P flows out of the vertex through its leg). For a fermion line, leg 1 (``F1``) is the
ket (an :func:`ixxxxx`-type spinor, fermion flow into the vertex) and leg 2 (``F2``) the bra
(:func:`oxxxxx`-type, already barred); the amplitude is ``F2 Gamma F1``. ``NAME_1`` therefore
returns a bra (used as ``F2`` at the next vertex, with q = -P1 along the fermion flow) and
``NAME_2`` a ket (used as ``F1``, q = P2). Vectors have index order (E, x, y, z).

Example:
    >>> import torch
    >>> p = torch.tensor([[500.0, 0.0, 0.0, 500.0], [500.0, 0.0, 0.0, -500.0]],
    ...                  dtype=torch.float64)
    >>> ee = (4 * torch.pi / 132.507) ** 0.5
    >>> e_minus = ixxxxx(p[0], 0.0, -1, +1)      # incoming e-, helicity -1
    >>> e_plus = oxxxxx(p[1], 0.0, +1, -1)       # incoming e+, helicity +1
    >>> photon = FFV1_3(e_minus, e_plus, -1j * ee, 0.0, 0.0)   # FFV1P0_3 in MadGraph
    >>> photon.shape, photon.dtype
    (torch.Size([6]), torch.complex128)

References: H. Murayama, I. Watanabe, K. Hagiwara, HELAS, KEK-91-11 (1992); P. de Aquino,
W. Link, F. Maltoni, O. Mattelaer, T. Stelzer, ALOHA, Comput. Phys. Commun. 183 (2012)
2254, arXiv:1108.2041; the UFO Lorentz structures of MG5's ``models/sm/lorentz.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = [
    "ixxxxx",
    "oxxxxx",
    "vxxxxx",
    "sxxxxx",
    "sum_currents",
    "LorentzStructure",
    "LORENTZ",
    *(
        f"{name}_{k}"
        for name, n in (
            ("FFS1", 3),
            ("FFS2", 3),
            ("FFS3", 3),
            ("FFS4", 3),
            ("FFV1", 3),
            ("FFV2", 3),
            ("FFV3", 3),
            ("FFV4", 3),
            ("FFV5", 3),
            ("VSS1", 3),
            ("VVS1", 3),
            ("SSS1", 3),
            ("VVV1", 3),
            ("SSSS1", 4),
            ("VVSS1", 4),
            ("VVVV1", 4),
            ("VVVV2", 4),
            ("VVVV3", 4),
            ("VVVV4", 4),
            ("VVVV5", 4),
        )
        for k in range(n + 1)
    ),
]

#: A coupling: a number, or a tensor per event (see :meth:`LorentzStructure.amplitude`).
Coupling = complex | float | Tensor

_SQH = math.sqrt(0.5)


# --------------------------------------------------------------------------------------
# External wave functions
# --------------------------------------------------------------------------------------


def _inputs(p: Tensor, *numbers: int | Tensor) -> list[Tensor]:
    """(E, px, py, pz) and the helicity/sign arguments as real tensors of p's dtype and
    device, broadcast to one batch shape."""
    extra = [torch.as_tensor(x, dtype=p.dtype, device=p.device) for x in numbers]
    return list(torch.broadcast_tensors(*p.unbind(-1), *extra))


def _cplx(re: Tensor, im: Tensor | None = None) -> Tensor:
    return torch.complex(re, torch.zeros_like(re) if im is None else im)


def _flow(p0: Tensor, p1: Tensor, p2: Tensor, p3: Tensor, eta: Tensor) -> tuple[Tensor, Tensor]:
    return _cplx(p0 * eta, p3 * eta), _cplx(p1 * eta, p2 * eta)


def _pick(index: Tensor, first: Tensor | float, second: Tensor | float) -> Tensor:
    """HELAS's two-entry arrays ``x[index]`` with index 0 or 1 (as a float tensor)."""
    return index * second + (1.0 - index) * first


def _plus_component(pp: Tensor, p1: Tensor, p2: Tensor, p3: Tensor) -> Tensor:
    """max(pp + pz, 0) for pp = |p| (pp = E for a massless momentum), computed for pz < 0
    as pT^2 / (pp - pz), which equals it but does not cancel for momenta near -z."""
    backward = p3 < 0
    den = torch.where(backward, pp - p3, torch.ones_like(pp))
    return torch.where(backward, (p1 * p1 + p2 * p2) / den, torch.clamp(pp + p3, min=0.0))


def _massive_spinor(
    p0: Tensor,
    p1: Tensor,
    p2: Tensor,
    p3: Tensor,
    fmass: float,
    hel: Tensor,
    nsf: Tensor,
    outgoing: bool,
) -> list[Tensor]:
    """The spinor part of HELAS ixxxxx (``outgoing=False``) or oxxxxx for a massive fermion,
    with its at-rest special case, branch-free."""
    nh = hel * nsf
    pp = torch.minimum(p0, torch.sqrt(p1 * p1 + p2 * p2 + p3 * p3))
    at_rest = pp == 0
    pp_safe = torch.where(at_rest, torch.ones_like(pp), pp)
    ip = (1.0 + nh) / 2.0  # 0 or 1
    im = (1.0 - nh) / 2.0
    # In flight.
    sf0 = (1.0 + nsf + (1.0 - nsf) * nh) / 2.0
    sf1 = (1.0 + nsf - (1.0 - nsf) * nh) / 2.0
    omega0 = torch.sqrt(p0 + pp)
    omega1 = fmass / omega0
    sfomega0 = sf0 * _pick(ip, omega0, omega1)
    sfomega1 = sf1 * _pick(im, omega0, omega1)
    pp3 = _plus_component(pp, p1, p2, p3)
    along_minus_z = pp3 == 0
    pp3_safe = torch.where(along_minus_z, torch.ones_like(pp3), pp3)
    chi0 = _cplx(torch.sqrt(pp3 * 0.5 / pp_safe))
    sign_p2 = -1.0 if outgoing else 1.0
    chi1 = torch.where(
        along_minus_z,
        _cplx(-nh),
        _cplx(nh * p1, sign_p2 * p2) / torch.sqrt(2.0 * pp_safe * pp3_safe),
    )
    chi_ip = _pick(ip, chi0, chi1)
    chi_im = _pick(im, chi0, chi1)
    # At rest: sqm = (sqrt|m|, sign(m) sqrt|m|).
    sqm0 = math.sqrt(abs(fmass))
    sqm1 = math.copysign(sqm0, fmass)
    if outgoing:
        moving = [sfomega1 * chi_im, sfomega1 * chi_ip, sfomega0 * chi_im, sfomega0 * chi_ip]
        ipo = -im * hel  # HELAS: ip = -((1 - nh) / 2) * nhel, im = ((1 + nh) / 2) * nhel
        imo = ip * hel
        sq_ip = _pick(ipo.abs(), sqm0, sqm1)
        sq_im = _pick(imo.abs(), sqm0, sqm1)
        rest = [imo * sq_ip, ipo * nsf * sq_ip, imo * nsf * sq_im, ipo * sq_im]
    else:
        moving = [sfomega0 * chi_im, sfomega0 * chi_ip, sfomega1 * chi_im, sfomega1 * chi_ip]
        sq_ip = _pick(ip, sqm0, sqm1)
        sq_im = _pick(im, sqm0, sqm1)
        rest = [ip * sq_ip, im * nsf * sq_ip, ip * nsf * sq_im, im * sq_im]
    return [torch.where(at_rest, _cplx(r), m) for r, m in zip(rest, moving, strict=True)]


def _massless_spinor(
    p0: Tensor, p1: Tensor, p2: Tensor, p3: Tensor, hel: Tensor, nsf: Tensor, outgoing: bool
) -> list[Tensor]:
    """The spinor part of HELAS ixxxxx / oxxxxx for a massless fermion, including the
    momentum along -z, branch-free."""
    nh = hel * nsf
    along_minus_z = (p1 == 0) & (p2 == 0) & (p3 < 0)
    sqp0p3 = torch.where(
        along_minus_z, torch.zeros_like(p0), torch.sqrt(_plus_component(p0, p1, p2, p3)) * nsf
    )
    degenerate = sqp0p3 == 0
    safe = torch.where(degenerate, torch.ones_like(sqp0p3), sqp0p3)
    sign_p2 = -1.0 if outgoing else 1.0
    chi0 = _cplx(sqp0p3)
    chi1 = torch.where(
        degenerate, _cplx(-hel * torch.sqrt(2.0 * p0)), _cplx(nh * p1, sign_p2 * p2) / safe
    )
    right = (nh > 0).to(p0.dtype)  # nh = +1: the lower (right-handed) components
    left = 1.0 - right
    if outgoing:
        return [right * chi0, right * chi1, left * chi1, left * chi0]
    return [left * chi1, left * chi0, right * chi0, right * chi1]


def ixxxxx(p: Tensor, fmass: float, nhel: int | Tensor, nsf: int | Tensor) -> Tensor:
    """HELAS ``ixxxxx``: the wave function of a fermion flowing *into* the diagram.

    ``nsf = +1``: an incoming particle, u(p); ``nsf = -1``: an outgoing antiparticle, v(p).

    Args:
        p: (..., 4) four-momentum (E, px, py, pz) in GeV, float64.
        fmass: the fermion mass in GeV (0 selects HELAS's massless formulae).
        nhel: helicity +1 or -1 of the physical (anti)particle; an int or an integer
            tensor broadcastable against ``p[..., 0]``.
        nsf: +1 (particle) or -1 (antiparticle), int or tensor.

    Returns:
        (..., 6) complex: flow ``-(E + i pz, px + i py) * nsf`` and the spinor.
    """
    p0, p1, p2, p3, hel, sign = _inputs(p, nhel, nsf)
    flow = _flow(p0, p1, p2, p3, -sign)
    if fmass != 0.0:
        spinor = _massive_spinor(p0, p1, p2, p3, fmass, hel, sign, outgoing=False)
    else:
        spinor = _massless_spinor(p0, p1, p2, p3, hel, sign, outgoing=False)
    return torch.stack([*flow, *spinor], dim=-1)


def oxxxxx(p: Tensor, fmass: float, nhel: int | Tensor, nsf: int | Tensor) -> Tensor:
    """HELAS ``oxxxxx``: the (barred) wave function of a fermion flowing *out of* the diagram.

    ``nsf = +1``: an outgoing particle, ubar(p); ``nsf = -1``: an incoming antiparticle,
    vbar(p).

    Args:
        p: (..., 4) four-momentum (E, px, py, pz) in GeV, float64.
        fmass: the fermion mass in GeV (0 selects HELAS's massless formulae).
        nhel: helicity +1 or -1, int or integer tensor broadcastable against ``p[..., 0]``.
        nsf: +1 (particle) or -1 (antiparticle), int or tensor.

    Returns:
        (..., 6) complex: flow ``(E + i pz, px + i py) * nsf`` and the barred spinor.
    """
    p0, p1, p2, p3, hel, sign = _inputs(p, nhel, nsf)
    flow = _flow(p0, p1, p2, p3, sign)
    if fmass != 0.0:
        spinor = _massive_spinor(p0, p1, p2, p3, fmass, hel, sign, outgoing=True)
    else:
        spinor = _massless_spinor(p0, p1, p2, p3, hel, sign, outgoing=True)
    return torch.stack([*flow, *spinor], dim=-1)


def vxxxxx(p: Tensor, vmass: float, nhel: int | Tensor, nsv: int | Tensor) -> Tensor:
    """HELAS ``vxxxxx``: a vector boson's polarisation vector (HELAS helicity basis).

    ``nsv = -1`` (incoming) gives epsilon(p, nhel), ``nsv = +1`` (outgoing) its complex
    conjugate. A massless vector with ``nhel = 0`` gives a zero vector (HELAS itself
    returns a meaningless one; MadGraph never asks for it).

    Args:
        p: (..., 4) four-momentum (E, px, py, pz) in GeV, float64.
        vmass: the boson mass in GeV (0: massless, transverse helicities only).
        nhel: helicity -1, 0 or +1, int or integer tensor broadcastable against p[..., 0].
        nsv: +1 (final state) or -1 (initial state), int or tensor.

    Returns:
        (..., 6) complex: flow ``(E + i pz, px + i py) * nsv`` and epsilon^mu (E, x, y, z).
    """
    p0, p1, p2, p3, hel, nsv_t = _inputs(p, nhel, nsv)
    flow = _flow(p0, p1, p2, p3, nsv_t)
    pt2 = p1 * p1 + p2 * p2
    one = torch.ones_like(p3)
    sign_z = torch.where(p3 < 0, -one, one) * _SQH  # HELAS: sign(sqh, pz), + for pz = 0
    if vmass != 0.0:
        nsvahl = nsv_t * hel.abs()
        hel0 = 1.0 - hel.abs()
        pp = torch.minimum(p0, torch.sqrt(pt2 + p3 * p3))
        pt = torch.minimum(pp, torch.sqrt(pt2))
        at_rest = pp == 0
        pp_safe = torch.where(at_rest, torch.ones_like(pp), pp)
        has_pt = pt != 0
        pt_safe = torch.where(has_pt, pt, torch.ones_like(pt))
        emp = p0 / (vmass * pp_safe)
        pzpt = p3 / (pp_safe * pt_safe) * _SQH * hel
        e0 = _cplx(hel0 * pp / vmass)
        e3 = _cplx(hel0 * p3 * emp + hel * pt / pp_safe * _SQH)
        e1 = torch.where(
            has_pt,
            _cplx(hel0 * p1 * emp - p1 * pzpt, -nsvahl * p2 / pt_safe * _SQH),
            _cplx(-hel * _SQH),
        )
        e2 = torch.where(
            has_pt,
            _cplx(hel0 * p2 * emp - p2 * pzpt, nsvahl * p1 / pt_safe * _SQH),
            _cplx(torch.zeros_like(p0), nsvahl * sign_z),
        )
        zero = torch.zeros_like(p0)
        rest = (_cplx(zero), _cplx(-hel * _SQH), _cplx(zero, nsvahl * _SQH), _cplx(hel0))
        eps = [torch.where(at_rest, r, m) for r, m in zip(rest, (e0, e1, e2, e3), strict=True)]
    else:
        pt = torch.sqrt(pt2)
        has_pt = pt != 0
        pt_safe = torch.where(has_pt, pt, torch.ones_like(pt))
        pzpt = p3 / (p0 * pt_safe) * _SQH * hel
        e1 = torch.where(
            has_pt, _cplx(-p1 * pzpt, -nsv_t * p2 / pt_safe * _SQH), _cplx(-hel * _SQH)
        )
        e2 = torch.where(
            has_pt,
            _cplx(-p2 * pzpt, nsv_t * p1 / pt_safe * _SQH),
            _cplx(torch.zeros_like(p0), nsv_t * sign_z),
        )
        e3 = _cplx(hel * pt / p0 * _SQH)
        transverse = hel.abs()  # 0 for nhel = 0
        eps = [_cplx(torch.zeros_like(p0)), transverse * e1, transverse * e2, e3]
    return torch.stack([*flow, *eps], dim=-1)


def sxxxxx(p: Tensor, nss: int | Tensor) -> Tensor:
    """HELAS ``sxxxxx``: a scalar's wave function (1 in ``w[..., 2]``).

    Args:
        p: (..., 4) four-momentum (E, px, py, pz) in GeV, float64.
        nss: +1 (final state) or -1 (initial state), int or tensor.

    Returns:
        (..., 6) complex: flow ``(E + i pz, px + i py) * nss``, then 1, 0, 0, 0.
    """
    p0, p1, p2, p3, nss_t = _inputs(p, nss)
    flow = _flow(p0, p1, p2, p3, nss_t)
    one, zero = _cplx(torch.ones_like(p0)), _cplx(torch.zeros_like(p0))
    return torch.stack([*flow, one, zero, zero, zero], dim=-1)


def sum_currents(wfs: Sequence[Tensor]) -> Tensor:
    """The sum of off-shell wave functions of one leg from several Lorentz structures or
    couplings of one vertex (MadGraph's ``FFV2_4_3``: ``FFV2_3 + FFV4_3``).

    The spin parts ``[..., 2:6]`` add; the flow ``[..., 0:2]``, the same in all of them, is
    kept once (adding whole wave functions would double it).

    Args:
        wfs: (..., 6) off-shell wave functions of the same leg with the same propagator.

    Returns:
        (..., 6) their sum, broadcast over the leading dimensions.
    """
    body = wfs[0][..., 2:6]
    for w in wfs[1:]:
        body = body + w[..., 2:6]
    shape = torch.broadcast_shapes(wfs[0].shape[:-1], body.shape[:-1])
    return torch.cat([wfs[0][..., 0:2].expand(*shape, 2), body.expand(*shape, 4)], dim=-1)


# --------------------------------------------------------------------------------------
# Vertex algebra
# --------------------------------------------------------------------------------------


def _momentum(w: Tensor) -> Tensor:
    """ALOHA's momentum of a leg from its flow: (Re w0, Re w1, Im w1, Im w0), real (..., 4)."""
    return torch.stack((w[..., 0].real, w[..., 1].real, w[..., 1].imag, w[..., 0].imag), -1)


def _mdot(a: Tensor, b: Tensor) -> Tensor:
    """Minkowski product a^0 b^0 - a.b over the last axis (no complex conjugation)."""
    return a[..., 0] * b[..., 0] - (a[..., 1:] * b[..., 1:]).sum(-1)


def _sigma(v: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Entries (00, 01, 10, 11) of v^0 + sigma.v (the lower-left block of vslash); the
    upper-right block v^0 - sigma.v is [[s11, -s01], [-s10, s00]]."""
    v0, v1, v2, v3 = v.unbind(-1)
    return v0 + v3, v1 - 1j * v2, v1 + 1j * v2, v0 - v3


def _slash_row(g: Tensor, q: Tensor, mass: float) -> Tensor:
    """The row spinor g (qslash + mass), (..., 4)."""
    s00, s01, s10, s11 = _sigma(q.to(g.dtype))
    g0, g1, g2, g3 = g.unbind(-1)
    return torch.stack(
        (
            g2 * s00 + g3 * s10 + mass * g0,
            g2 * s01 + g3 * s11 + mass * g1,
            g0 * s11 - g1 * s10 + mass * g2,
            -g0 * s01 + g1 * s00 + mass * g3,
        ),
        -1,
    )


def _slash_column(q: Tensor, c: Tensor, mass: float) -> Tensor:
    """The column spinor (qslash + mass) c, (..., 4)."""
    s00, s01, s10, s11 = _sigma(q.to(c.dtype))
    c0, c1, c2, c3 = c.unbind(-1)
    return torch.stack(
        (
            s11 * c2 - s01 * c3 + mass * c0,
            -s10 * c2 + s00 * c3 + mass * c1,
            s00 * c0 + s01 * c1 + mass * c2,
            s10 * c0 + s11 * c1 + mass * c3,
        ),
        -1,
    )


def _coupling(coup: Coupling, batch_ndim: int) -> Coupling:
    """A per-event coupling tensor padded with trailing singleton dimensions, so that a
    tensor (n_events,) multiplies a batch (n_events, n_helicities)."""
    if isinstance(coup, Tensor) and coup.ndim < batch_ndim:
        return coup.reshape(coup.shape + (1,) * (batch_ndim - coup.ndim))
    return coup


# A Lorentz structure is evaluated on the "components" of its legs (w[..., 2:6] for
# fermions and vectors, w[..., 2] for scalars) and ALOHA's momenta of its legs.
Components = list[Tensor]
Lorentz = Callable[[Components, list[Tensor]], Tensor]
Current = Callable[[int, Components, list[Tensor]], Tensor]


@dataclass(frozen=True)
class LorentzStructure:
    """One UFO Lorentz structure and its ALOHA routines.

    Attributes:
        name: UFO/ALOHA name, e.g. ``"FFV1"``.
        spins: 2s+1 per leg in vertex order, e.g. (2, 2, 3).
        structure: the UFO expression, e.g. ``"Gamma(3,2,1)"``.
        momentum_dependent: whether L contains momenta P(mu, i) (VSS1, VVV1).

    Example:
        >>> LORENTZ["VVV1"].spins
        (3, 3, 3)
    """

    name: str
    spins: tuple[int, ...]
    structure: str
    lorentz: Lorentz = field(repr=False)  #: L(components, momenta)
    current: Current = field(repr=False)  #: dL/dw_k(k, components with None at k, momenta)
    momentum_dependent: bool = False

    def amplitude(self, wfs: Sequence[Tensor], coup: Coupling) -> Tensor:
        """ALOHA's ``NAME_0``: the vertex amplitude ``-i COUP L(w_1, ..., w_n)``.

        Args:
            wfs: the n wave functions (..., 6) in vertex order; leading dimensions
                broadcast.
            coup: the coupling, a number or a tensor whose shape matches the leading batch
                dimensions (e.g. (n_events,) or (n_events, 1) for a batch (n_events,
                n_helicities); it is padded with trailing singleton dimensions).

        Returns:
            (...) complex amplitude.
        """
        self._check_legs(len(wfs), len(self.spins), "amplitude")
        comps = [self._component(i, w) for i, w in enumerate(wfs)]
        momenta = [_momentum(w) if self.momentum_dependent else None for w in wfs]
        coup = _coupling(coup, max(w.ndim for w in wfs) - 1)
        return -1j * coup * self.lorentz(comps, momenta)  # type: ignore[arg-type]

    def offshell(
        self, k: int, wfs: Sequence[Tensor], coup: Coupling, mass: float, width: float
    ) -> Tensor:
        """ALOHA's ``NAME_{k+1}``: the off-shell wave function of leg ``k`` (0-based).

        ``offshell(2, [F1, F2], ...)`` is ``FFV1_3(F1, F2, ...)``. The result carries the
        summed flow of the other legs and includes the propagator of leg k (mass, width in
        GeV): fermion ``i (qslash + M) / D``, scalar ``i / D``, vector ``-i (g - P P / M^2)
        / D`` (unitary gauge; ``-i g / D`` when M = 0), D = P^2 - M^2 + i M W. For a fermion
        line, k = 0 returns a bra (an F2 elsewhere), k = 1 a ket (an F1 elsewhere).

        Args:
            k: 0-based position of the off-shell leg in the vertex.
            wfs: the wave functions of the other n - 1 legs, in vertex order.
            coup: the coupling, as in :meth:`amplitude`.
            mass: mass of the off-shell particle in GeV.
            width: its width in GeV.

        Returns:
            (..., 6) complex wave function of leg k.
        """
        n = len(self.spins)
        if not 0 <= k < n:
            raise ValueError(
                f"{self.name}: off-shell leg k = {k} outside 0..{n - 1} (legs are 0-based; "
                f"ALOHA's {self.name}_{k + 1} is k = {k})"
            )
        self._check_legs(len(wfs), n - 1, f"offshell(k={k})")
        flow = wfs[0][..., 0:2]
        for w in wfs[1:]:
            flow = flow + w[..., 0:2]
        legs: list[Tensor | None] = list(wfs)
        legs.insert(k, None)
        comps = [None if w is None else self._component(i, w) for i, w in enumerate(legs)]
        momenta = [None if w is None or not self.momentum_dependent else _momentum(w) for w in legs]
        p_k = -_momentum(flow)
        momenta[k] = p_k
        current = self.current(k, comps, momenta)  # type: ignore[arg-type]
        coup = _coupling(coup, max(w.ndim for w in wfs) - 1)
        factor = coup / (_mdot(p_k, p_k) - mass * (mass - 1j * width))
        spin = self.spins[k]
        if spin == 1:
            zero = torch.zeros_like(current)
            body = torch.stack([1j * factor * current, zero, zero, zero], -1)
        elif spin == 3:
            if mass != 0.0:
                current = current - p_k * (_mdot(p_k, current) / mass**2)[..., None]
            body = -1j * factor[..., None] * current
        elif k == 0:  # bra; momentum along the fermion flow q = -P_k
            body = 1j * factor[..., None] * _slash_row(current, -p_k, mass)
        else:  # ket; q = P_k
            body = 1j * factor[..., None] * _slash_column(p_k, current, mass)
        shape = torch.broadcast_shapes(flow.shape[:-1], body.shape[:-1])
        return torch.cat([flow.expand(*shape, 2), body.expand(*shape, 4)], dim=-1)

    def _component(self, i: int, w: Tensor) -> Tensor:
        return w[..., 2] if self.spins[i] == 1 else w[..., 2:6]

    def _check_legs(self, got: int, expected: int, what: str) -> None:
        if got != expected:
            raise ValueError(f"{self.name}.{what}: expected {expected} wave functions, got {got}")


# --------------------------------------------------------------------------------------
# The structures of MadGraph's sm model
# --------------------------------------------------------------------------------------


def _ffv(cl: float, cr: float) -> tuple[Lorentz, Current]:
    """Gamma(3,2,-1) * (cl ProjM(-1,1) + cr ProjP(-1,1)) between F2 (bra) and F1 (ket)."""

    def lorentz(c: Components, p: list[Tensor]) -> Tensor:
        l0, l1, r0, r1 = c[0].unbind(-1)
        a0, a1, b0, b1 = c[1].unbind(-1)
        s00, s01, s10, s11 = _sigma(c[2])
        left = b0 * (s00 * l0 + s01 * l1) + b1 * (s10 * l0 + s11 * l1)
        right = a0 * (s11 * r0 - s01 * r1) + a1 * (s00 * r1 - s10 * r0)
        return cl * left + cr * right

    def current(k: int, c: Components, p: list[Tensor]) -> Tensor:
        if k == 0:  # row G with L = G . F1
            a0, a1, b0, b1 = c[1].unbind(-1)
            s00, s01, s10, s11 = _sigma(c[2])
            return torch.stack(
                (
                    cl * (b0 * s00 + b1 * s10),
                    cl * (b0 * s01 + b1 * s11),
                    cr * (a0 * s11 - a1 * s10),
                    cr * (a1 * s00 - a0 * s01),
                ),
                -1,
            )
        if k == 1:  # column C with L = F2 . C
            l0, l1, r0, r1 = c[0].unbind(-1)
            s00, s01, s10, s11 = _sigma(c[2])
            return torch.stack(
                (
                    cr * (s11 * r0 - s01 * r1),
                    cr * (s00 * r1 - s10 * r0),
                    cl * (s00 * l0 + s01 * l1),
                    cl * (s10 * l0 + s11 * l1),
                ),
                -1,
            )
        # vector: J^mu with L = J . V
        l0, l1, r0, r1 = c[0].unbind(-1)
        a0, a1, b0, b1 = c[1].unbind(-1)
        k0 = cl * (b0 * l0 + b1 * l1) + cr * (a0 * r0 + a1 * r1)
        k1 = cl * (b0 * l1 + b1 * l0) - cr * (a0 * r1 + a1 * r0)
        k2 = 1j * (cl * (b1 * l0 - b0 * l1) - cr * (a1 * r0 - a0 * r1))
        k3 = cl * (b0 * l0 - b1 * l1) - cr * (a0 * r0 - a1 * r1)
        return torch.stack((k0, -k1, -k2, -k3), -1)

    return lorentz, current


def _ffs(cl: float, cr: float) -> tuple[Lorentz, Current]:
    """(cl ProjM(2,1) + cr ProjP(2,1)) between F2 (bra) and F1 (ket), times S3."""

    def bilinear(c: Components) -> Tensor:
        f1, f2 = c[0], c[1]
        return cl * (f2[..., 0] * f1[..., 0] + f2[..., 1] * f1[..., 1]) + cr * (
            f2[..., 2] * f1[..., 2] + f2[..., 3] * f1[..., 3]
        )

    def lorentz(c: Components, p: list[Tensor]) -> Tensor:
        return bilinear(c) * c[2]

    def current(k: int, c: Components, p: list[Tensor]) -> Tensor:
        if k == 2:
            return bilinear(c)
        o0, o1, o2, o3 = (c[1] if k == 0 else c[0]).unbind(-1)
        return torch.stack((cl * o0, cl * o1, cr * o2, cr * o3), -1) * c[2][..., None]

    return lorentz, current


def _metric_polynomial(
    spins: tuple[int, ...], terms: Sequence[tuple[float, tuple[tuple[int, int], ...]]]
) -> tuple[Lorentz, Current]:
    """L = sum_t c_t prod_{(i, j) in t} (V_i . V_j) * prod_scalars S, for structures built
    from Metric(i,j) only (VVS1, VVSS1, VVVV1-5, SSS1, SSSS1)."""
    scalars = [i for i, s in enumerate(spins) if s == 1]

    def scalar_product(c: Components, skip: int | None) -> Tensor | float:
        result: Tensor | float = 1.0
        for i in scalars:
            if i != skip:
                result = result * c[i]
        return result

    def lorentz(c: Components, p: list[Tensor]) -> Tensor:
        total: Tensor | float = 0.0
        for coef, pairs in terms:
            term: Tensor | float = coef
            for i, j in pairs:
                term = term * _mdot(c[i], c[j])
            total = total + term
        return total * scalar_product(c, None)  # type: ignore[return-value]

    def current(k: int, c: Components, p: list[Tensor]) -> Tensor:
        total: Tensor | float = 0.0
        for coef, pairs in terms:
            term: Tensor | float = coef
            partner: Tensor | None = None
            for i, j in pairs:
                if k in (i, j):
                    partner = c[j] if k == i else c[i]
                else:
                    term = term * _mdot(c[i], c[j])
            if partner is not None:
                term = term[..., None] * partner if isinstance(term, Tensor) else term * partner
            total = total + term
        scalar = scalar_product(c, k)
        if spins[k] == 3 and isinstance(scalar, Tensor):
            scalar = scalar[..., None]
        return total * scalar  # type: ignore[return-value]

    return lorentz, current


def _vss1() -> tuple[Lorentz, Current]:
    """P(1,2) - P(1,3): (P2 - P3) . V1 * S2 * S3."""

    def lorentz(c: Components, p: list[Tensor]) -> Tensor:
        return _mdot(p[1] - p[2], c[0]) * c[1] * c[2]

    def current(k: int, c: Components, p: list[Tensor]) -> Tensor:
        if k == 0:
            return (p[1] - p[2]).to(c[1].dtype) * (c[1] * c[2])[..., None]
        return _mdot(p[1] - p[2], c[0]) * c[3 - k]

    return lorentz, current


def _vvv1() -> tuple[Lorentz, Current]:
    """P(3,1) Metric(1,2) - P(3,2) Metric(1,2) - P(2,1) Metric(1,3) + P(2,3) Metric(1,3)
    + P(1,2) Metric(2,3) - P(1,3) Metric(2,3)."""

    def lorentz(c: Components, p: list[Tensor]) -> Tensor:
        v1, v2, v3 = c
        return (
            _mdot(v1, v2) * _mdot(p[0] - p[1], v3)
            + _mdot(v1, v3) * _mdot(p[2] - p[0], v2)
            + _mdot(v2, v3) * _mdot(p[1] - p[2], v1)
        )

    def current(k: int, c: Components, p: list[Tensor]) -> Tensor:
        v1, v2, v3 = c
        if k == 0:
            terms = (
                v2 * _mdot(p[0] - p[1], v3)[..., None],
                v3 * _mdot(p[2] - p[0], v2)[..., None],
                (p[1] - p[2]) * _mdot(v2, v3)[..., None],
            )
        elif k == 1:
            terms = (
                v1 * _mdot(p[0] - p[1], v3)[..., None],
                (p[2] - p[0]) * _mdot(v1, v3)[..., None],
                v3 * _mdot(p[1] - p[2], v1)[..., None],
            )
        else:
            terms = (
                (p[0] - p[1]) * _mdot(v1, v2)[..., None],
                v1 * _mdot(p[2] - p[0], v2)[..., None],
                v2 * _mdot(p[1] - p[2], v1)[..., None],
            )
        return terms[0] + terms[1] + terms[2]

    return lorentz, current


def _structure(
    name: str, spins: tuple[int, ...], structure: str, impl: tuple[Lorentz, Current]
) -> LorentzStructure:
    return LorentzStructure(name, spins, structure, impl[0], impl[1], "P(" in structure)


_FF = (2, 2)
_M12 = ((0, 1),)
_M12_34, _M13_24, _M14_23 = ((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))
_GAMMA_PM = "Gamma(3,2,-1)*ProjM(-1,1)"
_GAMMA_PP = "Gamma(3,2,-1)*ProjP(-1,1)"

#: Every Lorentz structure of MadGraph's ``sm`` model (UFO ``lorentz.py``, unitary gauge;
#: the ghost structures UUS1 and UUV1 are not needed at tree level) by name.
LORENTZ: dict[str, LorentzStructure] = {
    s.name: s
    for s in (
        _structure("FFS1", (*_FF, 1), "ProjM(2,1)", _ffs(1.0, 0.0)),
        _structure("FFS2", (*_FF, 1), "ProjM(2,1) - ProjP(2,1)", _ffs(1.0, -1.0)),
        _structure("FFS3", (*_FF, 1), "ProjP(2,1)", _ffs(0.0, 1.0)),
        _structure("FFS4", (*_FF, 1), "ProjM(2,1) + ProjP(2,1)", _ffs(1.0, 1.0)),
        _structure("FFV1", (*_FF, 3), "Gamma(3,2,1)", _ffv(1.0, 1.0)),
        _structure("FFV2", (*_FF, 3), _GAMMA_PM, _ffv(1.0, 0.0)),
        _structure("FFV3", (*_FF, 3), f"{_GAMMA_PM} - 2*{_GAMMA_PP}", _ffv(1.0, -2.0)),
        _structure("FFV4", (*_FF, 3), f"{_GAMMA_PM} + 2*{_GAMMA_PP}", _ffv(1.0, 2.0)),
        _structure("FFV5", (*_FF, 3), f"{_GAMMA_PM} + 4*{_GAMMA_PP}", _ffv(1.0, 4.0)),
        _structure("VSS1", (3, 1, 1), "P(1,2) - P(1,3)", _vss1()),
        _structure("VVS1", (3, 3, 1), "Metric(1,2)", _metric_polynomial((3, 3, 1), [(1.0, _M12)])),
        _structure("SSS1", (1, 1, 1), "1", _metric_polynomial((1, 1, 1), [(1.0, ())])),
        _structure(
            "VVV1",
            (3, 3, 3),
            "P(3,1)*Metric(1,2) - P(3,2)*Metric(1,2) - P(2,1)*Metric(1,3)"
            " + P(2,3)*Metric(1,3) + P(1,2)*Metric(2,3) - P(1,3)*Metric(2,3)",
            _vvv1(),
        ),
        _structure("SSSS1", (1, 1, 1, 1), "1", _metric_polynomial((1, 1, 1, 1), [(1.0, ())])),
        _structure(
            "VVSS1", (3, 3, 1, 1), "Metric(1,2)", _metric_polynomial((3, 3, 1, 1), [(1.0, _M12)])
        ),
        _structure(
            "VVVV1",
            (3, 3, 3, 3),
            "Metric(1,4)*Metric(2,3) - Metric(1,3)*Metric(2,4)",
            _metric_polynomial((3, 3, 3, 3), [(1.0, _M14_23), (-1.0, _M13_24)]),
        ),
        _structure(
            "VVVV2",
            (3, 3, 3, 3),
            "Metric(1,4)*Metric(2,3) + Metric(1,3)*Metric(2,4) - 2*Metric(1,2)*Metric(3,4)",
            _metric_polynomial((3, 3, 3, 3), [(1.0, _M14_23), (1.0, _M13_24), (-2.0, _M12_34)]),
        ),
        _structure(
            "VVVV3",
            (3, 3, 3, 3),
            "Metric(1,4)*Metric(2,3) - Metric(1,2)*Metric(3,4)",
            _metric_polynomial((3, 3, 3, 3), [(1.0, _M14_23), (-1.0, _M12_34)]),
        ),
        _structure(
            "VVVV4",
            (3, 3, 3, 3),
            "Metric(1,3)*Metric(2,4) - Metric(1,2)*Metric(3,4)",
            _metric_polynomial((3, 3, 3, 3), [(1.0, _M13_24), (-1.0, _M12_34)]),
        ),
        _structure(
            "VVVV5",
            (3, 3, 3, 3),
            "Metric(1,4)*Metric(2,3) - (Metric(1,3)*Metric(2,4))/2. - (Metric(1,2)*Metric(3,4))/2.",
            _metric_polynomial((3, 3, 3, 3), [(1.0, _M14_23), (-0.5, _M13_24), (-0.5, _M12_34)]),
        ),
    )
}


# --------------------------------------------------------------------------------------
# ALOHA-named routines
# --------------------------------------------------------------------------------------

_LEG_NAMES = {1: "S", 2: "F", 3: "V"}


def _aloha(name: str) -> tuple[Callable[..., Tensor], ...]:
    """``(NAME_0, NAME_1, ..., NAME_n)`` with ALOHA's argument lists."""
    structure = LORENTZ[name]
    n = len(structure.spins)
    legs = [f"{_LEG_NAMES[s]}{i + 1}" for i, s in enumerate(structure.spins)]

    def amplitude(*args: Tensor | Coupling) -> Tensor:
        if len(args) != n + 1:
            raise TypeError(f"{name}_0({', '.join(legs)}, COUP): got {len(args)} arguments")
        *wfs, coup = args
        return structure.amplitude(wfs, coup)  # type: ignore[arg-type]

    amplitude.__name__ = amplitude.__qualname__ = f"{name}_0"
    amplitude.__doc__ = (
        f"ALOHA {name}_0({', '.join(legs)}, COUP): the amplitude -i COUP L of "
        f"{structure.structure!r}, shape (...). See :meth:`LorentzStructure.amplitude`."
    )
    routines: list[Callable[..., Tensor]] = [amplitude]
    for k in range(n):
        others = [leg for i, leg in enumerate(legs) if i != k]

        def offshell(*args: Tensor | Coupling | float, _k: int = k) -> Tensor:
            if len(args) != n + 2:
                raise TypeError(f"{name}_{_k + 1}: expected {n + 2} arguments, got {len(args)}")
            *wfs, coup, mass, width = args
            return structure.offshell(_k, wfs, coup, mass, width)  # type: ignore[arg-type]

        offshell.__name__ = offshell.__qualname__ = f"{name}_{k + 1}"
        offshell.__doc__ = (
            f"ALOHA {name}_{k + 1}({', '.join(others)}, COUP, M{k + 1}, W{k + 1}): the "
            f"off-shell {legs[k]} with its propagator, (..., 6). See "
            ":meth:`LorentzStructure.offshell`."
        )
        routines.append(offshell)
    return tuple(routines)


FFS1_0, FFS1_1, FFS1_2, FFS1_3 = _aloha("FFS1")
FFS2_0, FFS2_1, FFS2_2, FFS2_3 = _aloha("FFS2")
FFS3_0, FFS3_1, FFS3_2, FFS3_3 = _aloha("FFS3")
FFS4_0, FFS4_1, FFS4_2, FFS4_3 = _aloha("FFS4")
FFV1_0, FFV1_1, FFV1_2, FFV1_3 = _aloha("FFV1")
FFV2_0, FFV2_1, FFV2_2, FFV2_3 = _aloha("FFV2")
FFV3_0, FFV3_1, FFV3_2, FFV3_3 = _aloha("FFV3")
FFV4_0, FFV4_1, FFV4_2, FFV4_3 = _aloha("FFV4")
FFV5_0, FFV5_1, FFV5_2, FFV5_3 = _aloha("FFV5")
VSS1_0, VSS1_1, VSS1_2, VSS1_3 = _aloha("VSS1")
VVS1_0, VVS1_1, VVS1_2, VVS1_3 = _aloha("VVS1")
SSS1_0, SSS1_1, SSS1_2, SSS1_3 = _aloha("SSS1")
VVV1_0, VVV1_1, VVV1_2, VVV1_3 = _aloha("VVV1")
SSSS1_0, SSSS1_1, SSSS1_2, SSSS1_3, SSSS1_4 = _aloha("SSSS1")
VVSS1_0, VVSS1_1, VVSS1_2, VVSS1_3, VVSS1_4 = _aloha("VVSS1")
VVVV1_0, VVVV1_1, VVVV1_2, VVVV1_3, VVVV1_4 = _aloha("VVVV1")
VVVV2_0, VVVV2_1, VVVV2_2, VVVV2_3, VVVV2_4 = _aloha("VVVV2")
VVVV3_0, VVVV3_1, VVVV3_2, VVVV3_3, VVVV3_4 = _aloha("VVVV3")
VVVV4_0, VVVV4_1, VVVV4_2, VVVV4_3, VVVV4_4 = _aloha("VVVV4")
VVVV5_0, VVVV5_1, VVVV5_2, VVVV5_3, VVVV5_4 = _aloha("VVVV5")
