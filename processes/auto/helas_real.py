"""HELAS/ALOHA for the generated code: complex numbers as (re, im) pairs or packed tensors.

The same wave functions, vertices and propagators as :mod:`processes.auto.helas` (MadGraph's
``sm`` ALOHA conventions, see there), written on a small complex-number type :class:`Cx`
that is either a pair of real parts (float64 tensors or Python numbers) or one packed
complex tensor:

- **Pairs (real arithmetic)** are what inductor fuses into vectorised loops (it does not
  fuse complex kernels): the compiled path of :mod:`processes.auto.codegen` runs on them.
- **Packed complex tensors** make eager mode fast: one torch kernel per complex operation
  instead of four to six real ones, and a third of the memory passes.
- **Known zeros and ones are Python numbers** in both forms: a massless polarisation
  vector's time component, a scalar's wave function (1) and the real part of ``i g_s``
  are folded away before they reach torch (MadGraph's generated code gets the same from
  the C++ compiler).
- **Helicities broadcast.** A wave function's tensors have one axis per external leg
  (length 1 where it does not depend on that leg's helicity) before the event axis, so a
  current is computed once per helicity combination of its own legs (MadGraph's helicity
  recycling) by plain broadcasting, without gathers.
- **Scalar factors go where they are cheapest.** A current is linear in each input, so a
  coupling or propagator factor multiplies the input on the smallest helicity grid
  instead of the result.

Layout: every tensor is ``(h_0, ..., h_{n-1}, n_events)`` or broadcastable to it (events
last, so elementwise kernels run over contiguous events); momenta are real tuples
``(E, px, py, pz)`` in GeV of shape ``(n_events,)``.

A :class:`Wave` holds its ALOHA momentum flow P (``eta * p``, see :mod:`.helas`) and its
components: four :class:`Cx` for fermions and vectors, one for scalars. A vertex is
evaluated as the *current* of one leg k, ``J_k = dL/dw_k`` (L is linear in each wave
function), and then either propagated (:func:`offshell`, ALOHA's ``NAME_k``) or contracted
with w_k (:func:`contract`; the amplitude ``NAME_0 = -i COUP J_k . w_k``).

Example:
    >>> import torch
    >>> p = torch.tensor([[500.0, 500.0], [0.0, 0.0], [0.0, 0.0], [500.0, -500.0]],
    ...                  dtype=torch.float64)
    >>> w = vxxxxx(tuple(p), 0.0, torch.tensor([-1.0, 1.0])[:, None], -1)
    >>> w.comps[0].re       # a massless polarisation has no time component: a number
    0.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "Real",
    "Cx",
    "Wave",
    "sum_of_products",
    "pack",
    "ixxxxx",
    "oxxxxx",
    "vxxxxx",
    "sxxxxx",
    "STRUCTURES",
    "current",
    "offshell",
    "propagators",
    "contract",
    "amplitude",
]

#: A real number: a float64 tensor, or a Python float (a constant, folded when 0 or +-1).
Real = Tensor | float

_SQH = math.sqrt(0.5)


# --------------------------------------------------------------------------------------
# Real and complex arithmetic with constant folding
# --------------------------------------------------------------------------------------


def _is(x: Real, value: float) -> bool:
    return isinstance(x, float) and x == value


def _add(a: Real, b: Real) -> Real:
    if isinstance(a, float):
        if a == 0.0:
            return b
        if isinstance(b, float):
            return a + b
    elif _is(b, 0.0):
        return a
    return a + b


def _sub(a: Real, b: Real) -> Real:
    if _is(b, 0.0):
        return a
    if _is(a, 0.0):
        return -b
    return a - b


def _mul(a: Real, b: Real) -> Real:
    if isinstance(a, float):
        if a == 0.0:
            return 0.0
        if a == 1.0:
            return b
        if a == -1.0:
            return -b
    if isinstance(b, float):
        if b == 0.0:
            return 0.0
        if b == 1.0:
            return a
        if b == -1.0:
            return -a
    return a * b


def sum_of_products(terms: Sequence[tuple[float, Real, Real]]) -> Real:
    """``sum_t c_t x_t y_t`` for real numbers or tensors, with zeros and ones folded and the
    tensor work done as one multiply and then fused multiply-adds (``torch.addcmul``).

    Args:
        terms: ``(c, x, y)`` triples; ``c`` a float, ``x`` and ``y`` tensors or floats.

    Returns:
        The sum: a tensor broadcast over the terms' shapes, or a float if all are numbers.
    """
    const = 0.0
    acc: Tensor | None = None
    for c, x, y in terms:
        if c == 0.0 or _is(x, 0.0) or _is(y, 0.0):
            continue
        if isinstance(x, float):
            c, x, y = c * x, y, 1.0
        if isinstance(y, float):
            c = c * y
            if isinstance(x, float):
                const += c * x
            elif acc is None:
                acc = _mul(c, x)  # type: ignore[assignment]
            else:
                acc = torch.add(acc, x, alpha=c)
        elif acc is None:
            acc = _mul(c, x * y)  # type: ignore[assignment]
        else:
            acc = torch.addcmul(acc, x, y, value=c)
    if acc is None:
        return const
    return acc if const == 0.0 else acc + const


class Cx:
    """A complex number: a pair of :data:`Real` parts, or one complex tensor ("packed").

    Pairs are what ``torch.compile`` fuses (it does not fuse complex kernels); packed
    values make eager mode fast (one complex kernel instead of four to six real ones, and a
    third of the memory passes). Arithmetic folds Python-number zeros and ones in both
    forms; an operation with a packed operand gives a packed result (pairs and real
    tensors are converted first, so every kernel runs on one dtype, vectorised).
    ``Cx * Cx`` is the complex product, ``Cx * real`` scales; Python numbers convert with
    :meth:`of`.
    """

    __slots__ = ("_re", "_im", "z")

    def __init__(self, re: Real = 0.0, im: Real = 0.0, z: Tensor | None = None) -> None:
        self._re = re
        self._im = im
        self.z = z

    @property
    def re(self) -> Real:
        return self._re if self.z is None else self.z.real

    @property
    def im(self) -> Real:
        return self._im if self.z is None else self.z.imag

    @staticmethod
    def of(x: Cx | complex | float | Tensor) -> Cx:
        """A Cx from a Cx, a Python number, a real tensor or a complex tensor (packed)."""
        if isinstance(x, Cx):
            return x
        if isinstance(x, Tensor):
            if x.is_complex():
                return Cx(z=x)
            return Cx(x, 0.0)
        z = complex(x)
        return Cx(float(z.real), float(z.imag))

    @property
    def is_constant(self) -> bool:
        """A Python number (no tensor part)."""
        return self.z is None and isinstance(self._re, float) and isinstance(self._im, float)

    @property
    def is_zero(self) -> bool:
        return self.is_constant and self._re == 0.0 and self._im == 0.0

    def constant(self) -> complex:
        return complex(self._re, self._im)  # type: ignore[arg-type]

    def packed(self) -> Cx:
        """The same value packed into one complex tensor (constants stay numbers)."""
        if self.z is not None or self.is_constant:
            return self
        return Cx(z=_complex_tensor(self._re, self._im))

    def __add__(self, other: Cx | complex | float) -> Cx:
        o = Cx.of(other)
        if self.z is not None or o.z is not None:
            return _packed_sum(((1.0, self, _ONE), (1.0, o, _ONE)))
        return Cx(_add(self._re, o._re), _add(self._im, o._im))

    __radd__ = __add__

    def __sub__(self, other: Cx | complex | float) -> Cx:
        o = Cx.of(other)
        if self.z is not None or o.z is not None:
            return _packed_sum(((1.0, self, _ONE), (-1.0, o, _ONE)))
        return Cx(_sub(self._re, o._re), _sub(self._im, o._im))

    def __rsub__(self, other: Cx | complex | float) -> Cx:
        return Cx.of(other) - self

    def __neg__(self) -> Cx:
        if self.z is not None:
            return Cx(z=-self.z)
        return Cx(_mul(-1.0, self._re), _mul(-1.0, self._im))

    def __mul__(self, other: Cx | complex | float | Tensor) -> Cx:
        if isinstance(other, (Cx, complex)):
            o = Cx.of(other)
            if self.z is not None or o.z is not None:
                return _packed_sum(((1.0, self, o),))
            return Cx(
                sum_of_products(((1.0, self._re, o._re), (-1.0, self._im, o._im))),
                sum_of_products(((1.0, self._re, o._im), (1.0, self._im, o._re))),
            )
        return self.scale(other)  # type: ignore[arg-type]

    __rmul__ = __mul__

    def scale(self, r: Real) -> Cx:
        """This number times a real one (a tensor or a float); ``torch.compile`` traces this
        where it cannot trace ``Cx * Tensor``."""
        if self.z is not None:
            return _packed_sum(((1.0, self, Cx(r)),))
        return Cx(_mul(self._re, r), _mul(self._im, r))

    def times_i(self) -> Cx:
        """i times this number (for pairs: a swap and a sign)."""
        if self.z is not None:
            return Cx(z=self.z * 1j)
        return Cx(_mul(-1.0, self._im), self._re)

    def conj(self) -> Cx:
        if self.z is not None:
            return Cx(z=self.z.conj())
        return Cx(self._re, _mul(-1.0, self._im))

    def where(self, condition: Tensor, other: Cx) -> Cx:
        """``torch.where(condition, self, other)``."""
        if self.z is not None or other.z is not None:
            a, b = self.packed(), other.packed()
            za = a.z if a.z is not None else a.constant()
            zb = b.z if b.z is not None else b.constant()
            return Cx(z=torch.where(condition, za, zb))
        return Cx(_where(condition, self._re, other._re), _where(condition, self._im, other._im))

    def to_complex(self, like: Tensor) -> Tensor:
        """The value as a complex tensor, broadcast with the real tensor ``like`` (whose
        dtype and device it takes)."""
        if self.z is not None:
            return self.z.expand(torch.broadcast_shapes(self.z.shape, like.shape))
        re = torch.as_tensor(self._re, dtype=like.dtype, device=like.device)
        im = torch.as_tensor(self._im, dtype=like.dtype, device=like.device)
        re, im, _ = torch.broadcast_tensors(re, im, like)
        return torch.complex(re, im)

    def __repr__(self) -> str:
        def show(x: Real) -> str:
            return repr(x) if isinstance(x, float) else f"tensor{tuple(x.shape)}"

        if self.z is not None:
            return f"Cx(z=tensor{tuple(self.z.shape)})"
        return f"Cx({show(self._re)}, {show(self._im)})"


_ONE = Cx(1.0)


def _complex_tensor(re: Real, im: Real) -> Tensor:
    like = re if isinstance(re, Tensor) else im
    assert isinstance(like, Tensor)
    if isinstance(re, float) or isinstance(im, float) or re.shape != im.shape:
        re, im = torch.broadcast_tensors(
            torch.as_tensor(re, dtype=like.dtype, device=like.device),
            torch.as_tensor(im, dtype=like.dtype, device=like.device),
        )
    return torch.complex(re.contiguous(), im.contiguous())


def _operand(x: Cx) -> tuple[Tensor | complex, complex]:
    """A packed operand ``(value, factor)`` with ``x = factor * value``: a complex tensor,
    a real tensor (a real or purely imaginary pair; torch mixes it with complex tensors in
    one kernel), or a Python number. A pair with two tensor parts is packed once and kept."""
    if x.z is not None:
        return x.z, 1.0
    re, im = x._re, x._im
    if isinstance(re, float) and isinstance(im, float):
        return complex(re, im), 1.0
    if isinstance(im, float) and im == 0.0:
        return re, 1.0
    if isinstance(re, float) and re == 0.0:
        return im, 1j
    x.z = _complex_tensor(re, im)
    return x.z, 1.0


def _packed_sum(terms: Sequence[tuple[complex | float, Cx, Cx]]) -> Cx:
    """``sum_t c_t a_t b_t`` as complex tensor kernels (a product, then fused
    multiply-adds), constants folded; a sum that stays real is returned as a real pair."""
    const = 0j
    acc: Tensor | None = None
    for c, a, b in terms:
        if c == 0 or a.is_zero or b.is_zero:
            continue
        x, fx = _operand(a)
        y, fy = _operand(b)
        c = c * fx * fy
        if not isinstance(x, Tensor):
            x, y = y, x
        if not isinstance(y, Tensor):
            c = c * y
            if not isinstance(x, Tensor):
                const += c * x
            elif acc is None:
                acc = x if c == 1 else x * _number(c)
            else:
                acc = torch.add(_promote(acc, x, c), x, alpha=_number(c))
        elif acc is None:
            acc = x * y if c == 1 else (x * y) * _number(c)
        else:
            acc = torch.addcmul(_promote(acc, x, c, y), x, y, value=_number(c))
    if acc is None:
        return Cx(const.real, const.imag)
    if const != 0:
        acc = acc + _number(const)
    return Cx(z=acc) if acc.is_complex() else Cx(acc, 0.0)


def _number(c: complex) -> complex | float:
    """A Python number as a float when it is real (keeps real tensors real)."""
    c = complex(c)
    return c.real if c.imag == 0 else c


def _promote(acc: Tensor, x: Tensor, c: complex, y: Tensor | None = None) -> Tensor:
    """The accumulator as a complex tensor if the next term is complex."""
    if acc.is_complex():
        return acc
    if complex(c).imag != 0 or x.is_complex() or (y is not None and y.is_complex()):
        return acc.to(torch.complex128 if acc.dtype == torch.float64 else torch.complex64)
    return acc


def _where(condition: Tensor, a: Real, b: Real) -> Real:
    if isinstance(a, float) and isinstance(b, float) and a == b:
        return a
    return torch.where(condition, a, b)


def _cx_sum_of_products(terms: Sequence[tuple[complex | float, Cx, Cx]]) -> Cx:
    """``sum_t c_t a_t b_t`` for complex constants c_t and Cx a_t, b_t."""
    if any(a.z is not None or b.z is not None for _, a, b in terms):
        return _packed_sum(terms)
    re: list[tuple[float, Real, Real]] = []
    im: list[tuple[float, Real, Real]] = []
    for c, a, b in terms:
        cr, ci = float(complex(c).real), float(complex(c).imag)
        # (cr + i ci) (a.re b.re - a.im b.im + i (a.re b.im + a.im b.re))
        re += [(cr, a._re, b._re), (-cr, a._im, b._im), (-ci, a._re, b._im), (-ci, a._im, b._re)]
        im += [(cr, a._re, b._im), (cr, a._im, b._re), (ci, a._re, b._re), (-ci, a._im, b._im)]
    return Cx(sum_of_products(re), sum_of_products(im))


def _real_cx_sum_of_products(terms: Sequence[tuple[float, Real, Cx]]) -> Cx:
    """``sum_t c_t r_t b_t`` for real constants c_t, real r_t and Cx b_t."""
    return _cx_sum_of_products([(c, Cx(r), b) for c, r, b in terms])


_METRIC = (1.0, -1.0, -1.0, -1.0)


def _mdot(a: Sequence[Cx], b: Sequence[Cx]) -> Cx:
    """Minkowski product a^0 b^0 - a.b of complex four-vectors (no conjugation)."""
    return _cx_sum_of_products([(g, x, y) for g, x, y in zip(_METRIC, a, b, strict=True)])


def _mdot_real(p: Sequence[Real], b: Sequence[Cx]) -> Cx:
    """Minkowski product of a real four-vector p and a complex one b."""
    return _real_cx_sum_of_products([(g, x, y) for g, x, y in zip(_METRIC, p, b, strict=True)])


def _mdot_rr(p: Sequence[Real], q: Sequence[Real]) -> Real:
    return sum_of_products([(g, x, y) for g, x, y in zip(_METRIC, p, q, strict=True)])


def _sigma(v: Sequence[Cx]) -> tuple[Cx, Cx, Cx, Cx]:
    """(v^0 + v^3, v^1 - i v^2, v^1 + i v^2, v^0 - v^3): :func:`processes.auto.helas._sigma`."""
    v0, v1, v2, v3 = v
    return (
        _cx_sum_of_products([(1.0, v0, _ONE), (1.0, v3, _ONE)]),
        _cx_sum_of_products([(1.0, v1, _ONE), (-1j, v2, _ONE)]),
        _cx_sum_of_products([(1.0, v1, _ONE), (1j, v2, _ONE)]),
        _cx_sum_of_products([(1.0, v0, _ONE), (-1.0, v3, _ONE)]),
    )


def _sigma_real(q: Sequence[Real]) -> tuple[Cx, Cx, Cx, Cx]:
    q0, q1, q2, q3 = q
    return Cx(_add(q0, q3)), Cx(q1, _mul(-1.0, q2)), Cx(q1, q2), Cx(_sub(q0, q3))


# --------------------------------------------------------------------------------------
# Wave functions
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Wave:
    """A HELAS wave function in real arithmetic.

    Attributes:
        flow: ALOHA's momentum of the leg (E, px, py, pz) x eta in GeV (``eta * p`` flowing
            out of the diagram; an off-shell wave function carries the sum of its inputs'),
            real tensors (n_events,).
        comps: the Dirac spinor or polarisation vector (four :class:`Cx`, vectors
            contravariant in (E, x, y, z) order), or the scalar's one component.
    """

    flow: tuple[Real, Real, Real, Real]
    comps: tuple[Cx, ...]


def pack(w: Wave) -> Wave:
    """The wave function with its components packed into complex tensors (eager mode)."""
    return Wave(w.flow, tuple(c.packed() for c in w.comps))


def _flow(p: Sequence[Real], eta: float) -> tuple[Real, Real, Real, Real]:
    return tuple(_mul(eta, x) for x in p)  # type: ignore[return-value]


def _pick(index: Real, first: Real, second: Real) -> Real:
    """HELAS's ``x[index]`` of a two-entry array, index 0 or 1 as a float tensor."""
    return _add(_mul(index, second), _mul(_sub(1.0, index), first))


def _pick_cx(index: Real, first: Cx, second: Cx) -> Cx:
    return Cx(_pick(index, first._re, second._re), _pick(index, first._im, second._im))


def _plus_component(pp: Tensor, p1: Tensor, p2: Tensor, p3: Tensor) -> Tensor:
    """max(pp + pz, 0), as pT^2 / (pp - pz) for pz < 0 (no cancellation near -z)."""
    backward = p3 < 0
    den = torch.where(backward, pp - p3, torch.ones_like(pp))
    return torch.where(backward, (p1 * p1 + p2 * p2) / den, torch.clamp(pp + p3, min=0.0))


def _massless_spinor(
    p: Sequence[Tensor], hel: Tensor, nsf: float, outgoing: bool
) -> tuple[Cx, Cx, Cx, Cx]:
    p0, p1, p2, p3 = p
    nh = hel * nsf
    along_minus_z = (p1 == 0) & (p2 == 0) & (p3 < 0)
    sqp0p3 = torch.where(
        along_minus_z, torch.zeros_like(p0), torch.sqrt(_plus_component(p0, p1, p2, p3)) * nsf
    )
    degenerate = sqp0p3 == 0
    safe = torch.where(degenerate, torch.ones_like(sqp0p3), sqp0p3)
    sign_p2 = -1.0 if outgoing else 1.0
    chi0 = Cx(sqp0p3)
    chi1 = Cx(-hel * torch.sqrt(2.0 * p0)).where(
        degenerate, Cx(nh * p1 / safe, sign_p2 * p2 / safe)
    )
    right = (nh > 0).to(p0.dtype)
    left = 1.0 - right
    if outgoing:
        return chi0.scale(right), chi1.scale(right), chi1.scale(left), chi0.scale(left)
    return chi1.scale(left), chi0.scale(left), chi0.scale(right), chi1.scale(right)


def _massive_spinor(
    p: Sequence[Tensor], fmass: float, hel: Tensor, nsf: float, outgoing: bool
) -> tuple[Cx, ...]:
    p0, p1, p2, p3 = p
    nh = hel * nsf
    pp = torch.minimum(p0, torch.sqrt(p1 * p1 + p2 * p2 + p3 * p3))
    at_rest = pp == 0
    pp_safe = torch.where(at_rest, torch.ones_like(pp), pp)
    ip = (1.0 + nh) / 2.0
    im = (1.0 - nh) / 2.0
    sf0 = (1.0 + nsf + (1.0 - nsf) * nh) / 2.0
    sf1 = (1.0 + nsf - (1.0 - nsf) * nh) / 2.0
    omega0 = torch.sqrt(p0 + pp)
    omega1 = fmass / omega0
    sfomega0 = sf0 * _pick(ip, omega0, omega1)
    sfomega1 = sf1 * _pick(im, omega0, omega1)
    pp3 = _plus_component(pp, p1, p2, p3)
    along_minus_z = pp3 == 0
    pp3_safe = torch.where(along_minus_z, torch.ones_like(pp3), pp3)
    chi0 = Cx(torch.sqrt(pp3 * 0.5 / pp_safe))
    sign_p2 = -1.0 if outgoing else 1.0
    norm = torch.sqrt(2.0 * pp_safe * pp3_safe)
    chi1 = Cx(-nh).where(along_minus_z, Cx(nh * p1 / norm, sign_p2 * p2 / norm))
    chi_ip = _pick_cx(ip, chi0, chi1)
    chi_im = _pick_cx(im, chi0, chi1)
    sqm0 = math.sqrt(abs(fmass))
    sqm1 = math.copysign(sqm0, fmass)
    if outgoing:
        moving = (
            chi_im.scale(sfomega1),
            chi_ip.scale(sfomega1),
            chi_im.scale(sfomega0),
            chi_ip.scale(sfomega0),
        )
        ipo = -im * hel
        imo = ip * hel
        sq_ip = _pick(ipo.abs(), sqm0, sqm1)
        sq_im = _pick(imo.abs(), sqm0, sqm1)
        rest = (imo * sq_ip, ipo * nsf * sq_ip, imo * nsf * sq_im, ipo * sq_im)
    else:
        moving = (
            chi_im.scale(sfomega0),
            chi_ip.scale(sfomega0),
            chi_im.scale(sfomega1),
            chi_ip.scale(sfomega1),
        )
        sq_ip = _pick(ip, sqm0, sqm1)
        sq_im = _pick(im, sqm0, sqm1)
        rest = (ip * sq_ip, im * nsf * sq_ip, ip * nsf * sq_im, im * sq_im)
    return tuple(Cx(r).where(at_rest, m) for r, m in zip(rest, moving, strict=True))


def ixxxxx(p: Sequence[Tensor], fmass: float, hel: Tensor, nsf: int) -> Wave:
    """HELAS ``ixxxxx`` (a fermion flowing into the diagram: u(p) for nsf = +1, v(p) for
    nsf = -1): see :func:`processes.auto.helas.ixxxxx`.

    Args:
        p: (E, px, py, pz) in GeV, real tensors (n_events,).
        fmass: the mass in GeV.
        hel: helicities +-1 as a float tensor broadcastable against the events, e.g.
            (h, 1) or with one axis per external leg (``(1, 2, 1, ..., 1)``).
        nsf: +1 or -1.
    """
    spinor = (
        _massive_spinor(p, fmass, hel, float(nsf), outgoing=False)
        if fmass != 0.0
        else _massless_spinor(p, hel, float(nsf), outgoing=False)
    )
    return Wave(_flow(p, -float(nsf)), spinor)


def oxxxxx(p: Sequence[Tensor], fmass: float, hel: Tensor, nsf: int) -> Wave:
    """HELAS ``oxxxxx`` (a barred fermion flowing out of the diagram: ubar(p) for nsf =
    +1, vbar(p) for nsf = -1); arguments as :func:`ixxxxx`."""
    spinor = (
        _massive_spinor(p, fmass, hel, float(nsf), outgoing=True)
        if fmass != 0.0
        else _massless_spinor(p, hel, float(nsf), outgoing=True)
    )
    return Wave(_flow(p, float(nsf)), spinor)


def vxxxxx(
    p: Sequence[Tensor], vmass: float, hel: Tensor, nsv: int, transverse: bool | None = None
) -> Wave:
    """HELAS ``vxxxxx``: polarisation vector (nsv = -1 incoming, +1 outgoing: conjugated);
    see :func:`processes.auto.helas.vxxxxx`. ``hel``: -1, 0, +1 as a float tensor;
    ``transverse``: whether all of them are +-1 (None: look; generated code says so, which
    keeps ``torch.compile`` from a data-dependent branch)."""
    p0, p1, p2, p3 = p
    nsv_f = float(nsv)
    pt2 = p1 * p1 + p2 * p2
    one = torch.ones_like(p3)
    sign_z = torch.where(p3 < 0, -one, one) * _SQH
    if vmass != 0.0:
        nsvahl = nsv_f * hel.abs()
        hel0 = 1.0 - hel.abs()
        pp = torch.minimum(p0, torch.sqrt(pt2 + p3 * p3))
        pt = torch.minimum(pp, torch.sqrt(pt2))
        at_rest = pp == 0
        pp_safe = torch.where(at_rest, torch.ones_like(pp), pp)
        has_pt = pt != 0
        pt_safe = torch.where(has_pt, pt, torch.ones_like(pt))
        emp = p0 / (vmass * pp_safe)
        pzpt = p3 / (pp_safe * pt_safe) * _SQH * hel
        e0 = Cx(hel0 * pp / vmass)
        e3 = Cx(hel0 * p3 * emp + hel * pt / pp_safe * _SQH)
        e1 = Cx(hel0 * p1 * emp - p1 * pzpt, -nsvahl * p2 / pt_safe * _SQH).where(
            has_pt, Cx(-hel * _SQH)
        )
        e2 = Cx(hel0 * p2 * emp - p2 * pzpt, nsvahl * p1 / pt_safe * _SQH).where(
            has_pt, Cx(0.0, nsvahl * sign_z)
        )
        rest = (Cx(0.0), Cx(-hel * _SQH), Cx(0.0, nsvahl * _SQH), Cx(hel0))
        eps = tuple(
            Cx(_where(at_rest, r._re, m._re), _where(at_rest, r._im, m._im))
            for r, m in zip(rest, (e0, e1, e2, e3), strict=True)
        )
    else:
        pt = torch.sqrt(pt2)
        has_pt = pt != 0
        pt_safe = torch.where(has_pt, pt, torch.ones_like(pt))
        pzpt = p3 / (p0 * pt_safe) * _SQH * hel
        e1 = Cx(-p1 * pzpt, -nsv_f * p2 / pt_safe * _SQH).where(has_pt, Cx(-hel * _SQH))
        e2 = Cx(-p2 * pzpt, nsv_f * p1 / pt_safe * _SQH).where(has_pt, Cx(0.0, nsv_f * sign_z))
        e3 = Cx(hel * pt / p0 * _SQH)
        if transverse is None:
            transverse = not bool((hel.abs() != 1).any())
        if not transverse:  # nhel = 0 of a massless vector: zero (as helas)
            e1, e2 = e1.scale(hel.abs()), e2.scale(hel.abs())
        eps = (Cx(0.0), e1, e2, e3)
    return Wave(_flow(p, nsv_f), eps)


def sxxxxx(p: Sequence[Tensor], nss: int) -> Wave:
    """HELAS ``sxxxxx``: a scalar, whose one component is the number 1."""
    return Wave(_flow(p, float(nss)), (Cx(1.0),))


# --------------------------------------------------------------------------------------
# Lorentz structures: the current J_k = dL/dw_k of one leg
# --------------------------------------------------------------------------------------

# A current takes (k, comps, momenta): comps[i] the components of leg i (a tuple of Cx,
# None at k), momenta[i] its ALOHA momentum (real four-tuple; at k: minus the others'),
# and returns J_k: four Cx (fermion: row if k = 0, column if k = 1; vector: contravariant
# with L = J . w_k Minkowski) or one Cx (scalar, L = J w_k).


def _ffv(cl: float, cr: float):
    def current(k: int, c: list, p: list) -> tuple[Cx, ...]:
        if k == 0:  # row G, L = sum_i G_i F1_i
            a0, a1, b0, b1 = c[1]
            s00, s01, s10, s11 = _sigma(c[2])
            return (
                _cx_sum_of_products([(cl, b0, s00), (cl, b1, s10)]),
                _cx_sum_of_products([(cl, b0, s01), (cl, b1, s11)]),
                _cx_sum_of_products([(cr, a0, s11), (-cr, a1, s10)]),
                _cx_sum_of_products([(cr, a1, s00), (-cr, a0, s01)]),
            )
        if k == 1:  # column C, L = sum_i F2_i C_i
            l0, l1, r0, r1 = c[0]
            s00, s01, s10, s11 = _sigma(c[2])
            return (
                _cx_sum_of_products([(cr, s11, r0), (-cr, s01, r1)]),
                _cx_sum_of_products([(cr, s00, r1), (-cr, s10, r0)]),
                _cx_sum_of_products([(cl, s00, l0), (cl, s01, l1)]),
                _cx_sum_of_products([(cl, s10, l0), (cl, s11, l1)]),
            )
        l0, l1, r0, r1 = c[0]
        a0, a1, b0, b1 = c[1]
        # (k0, -k1, -k2, -k3) of helas.py, the signs in the coefficients
        k0 = _cx_sum_of_products([(cl, b0, l0), (cl, b1, l1), (cr, a0, r0), (cr, a1, r1)])
        k1 = _cx_sum_of_products([(-cl, b0, l1), (-cl, b1, l0), (cr, a0, r1), (cr, a1, r0)])
        k2 = _cx_sum_of_products(
            [(-1j * cl, b1, l0), (1j * cl, b0, l1), (1j * cr, a1, r0), (-1j * cr, a0, r1)]
        )
        k3 = _cx_sum_of_products([(-cl, b0, l0), (cl, b1, l1), (cr, a0, r0), (-cr, a1, r1)])
        return k0, k1, k2, k3

    return current


def _ffs(cl: float, cr: float):
    def current(k: int, c: list, p: list) -> tuple[Cx, ...]:
        if k == 2:
            f1, f2 = c[0], c[1]
            return (
                _cx_sum_of_products(
                    [(cl, f2[0], f1[0]), (cl, f2[1], f1[1]), (cr, f2[2], f1[2]), (cr, f2[3], f1[3])]
                ),
            )
        o = c[1] if k == 0 else c[0]
        s = c[2][0]
        return tuple(
            _cx_sum_of_products([(f, x, s)]) for f, x in zip((cl, cl, cr, cr), o, strict=True)
        )

    return current


def _metric_polynomial(
    spins: tuple[int, ...], terms: Sequence[tuple[float, tuple[tuple[int, int], ...]]]
):
    """L = sum_t c_t prod_{(i, j) in t} (V_i . V_j) x prod of the scalars."""
    scalars = [i for i, s in enumerate(spins) if s == 1]

    def current(k: int, c: list, p: list) -> tuple[Cx, ...]:
        dots: dict[tuple[int, int], Cx] = {}

        def dot(i: int, j: int) -> Cx:
            if (i, j) not in dots:
                dots[i, j] = _mdot(c[i], c[j])
            return dots[i, j]

        scalar = Cx(1.0)
        for i in scalars:
            if i != k:
                scalar = scalar * c[i][0]
        if spins[k] == 1:
            total = Cx(0.0)
            for coef, pairs in terms:
                term = Cx(coef)
                for i, j in pairs:
                    term = term * dot(i, j)
                total = total + term
            return (total * scalar,)
        # a vector leg: sum over terms of (coef x other dots) x partner vector
        per_partner: dict[int, Cx] = {}
        for coef, pairs in terms:
            term = Cx(coef)
            partner = None
            for i, j in pairs:
                if k in (i, j):
                    partner = j if k == i else i
                else:
                    term = term * dot(i, j)
            per_partner[partner] = per_partner.get(partner, Cx(0.0)) + term  # type: ignore[index]
        out = []
        for mu in range(4):
            out.append(
                _cx_sum_of_products([(1.0, f * scalar, c[q][mu]) for q, f in per_partner.items()])
            )
        return tuple(out)

    return current


def _vss1():
    def current(k: int, c: list, p: list) -> tuple[Cx, ...]:
        dp = [_sub(a, b) for a, b in zip(p[1], p[2], strict=True)]
        if k == 0:
            s = c[1][0] * c[2][0]
            return tuple(s.scale(x) for x in dp)
        return (_mdot_real(dp, c[0]) * c[3 - k][0],)

    return current


def _vvv1():
    def current(k: int, c: list, p: list) -> tuple[Cx, ...]:
        v1, v2, v3 = c
        d01 = [_sub(a, b) for a, b in zip(p[0], p[1], strict=True)]
        d20 = [_sub(a, b) for a, b in zip(p[2], p[0], strict=True)]
        d12 = [_sub(a, b) for a, b in zip(p[1], p[2], strict=True)]
        if k == 0:  # v2 (d01.v3) + v3 (d20.v2) + d12 (v2.v3)
            x, y, z = _mdot_real(d01, v3), _mdot_real(d20, v2), _mdot(v2, v3)
            return tuple(
                _cx_sum_of_products([(1.0, v2[m], x), (1.0, v3[m], y), (1.0, z, Cx(d12[m]))])
                for m in range(4)
            )
        if k == 1:  # v1 (d01.v3) + d20 (v1.v3) + v3 (d12.v1)
            x, y, z = _mdot_real(d01, v3), _mdot(v1, v3), _mdot_real(d12, v1)
            return tuple(
                _cx_sum_of_products([(1.0, v1[m], x), (1.0, v3[m], z), (1.0, y, Cx(d20[m]))])
                for m in range(4)
            )
        # d01 (v1.v2) + v1 (d20.v2) + v2 (d12.v1)
        x, y, z = _mdot(v1, v2), _mdot_real(d20, v2), _mdot_real(d12, v1)
        return tuple(
            _cx_sum_of_products([(1.0, v1[m], y), (1.0, v2[m], z), (1.0, x, Cx(d01[m]))])
            for m in range(4)
        )

    return current


_FF = (2, 2)
_M12 = ((0, 1),)
_M12_34, _M13_24, _M14_23 = ((0, 1), (2, 3)), ((0, 2), (1, 3)), ((0, 3), (1, 2))


@dataclass(frozen=True)
class _Structure:
    spins: tuple[int, ...]
    current: object
    momentum_dependent: bool = False


#: The Lorentz structures of MadGraph's ``sm`` (as :data:`processes.auto.helas.LORENTZ`):
#: spins per leg and the real-arithmetic current.
STRUCTURES: dict[str, _Structure] = {
    "FFS1": _Structure((*_FF, 1), _ffs(1.0, 0.0)),
    "FFS2": _Structure((*_FF, 1), _ffs(1.0, -1.0)),
    "FFS3": _Structure((*_FF, 1), _ffs(0.0, 1.0)),
    "FFS4": _Structure((*_FF, 1), _ffs(1.0, 1.0)),
    "FFV1": _Structure((*_FF, 3), _ffv(1.0, 1.0)),
    "FFV2": _Structure((*_FF, 3), _ffv(1.0, 0.0)),
    "FFV3": _Structure((*_FF, 3), _ffv(1.0, -2.0)),
    "FFV4": _Structure((*_FF, 3), _ffv(1.0, 2.0)),
    "FFV5": _Structure((*_FF, 3), _ffv(1.0, 4.0)),
    "VSS1": _Structure((3, 1, 1), _vss1(), True),
    "VVS1": _Structure((3, 3, 1), _metric_polynomial((3, 3, 1), [(1.0, _M12)])),
    "SSS1": _Structure((1, 1, 1), _metric_polynomial((1, 1, 1), [(1.0, ())])),
    "VVV1": _Structure((3, 3, 3), _vvv1(), True),
    "SSSS1": _Structure((1, 1, 1, 1), _metric_polynomial((1, 1, 1, 1), [(1.0, ())])),
    "VVSS1": _Structure((3, 3, 1, 1), _metric_polynomial((3, 3, 1, 1), [(1.0, _M12)])),
    "VVVV1": _Structure(
        (3, 3, 3, 3), _metric_polynomial((3, 3, 3, 3), [(1.0, _M14_23), (-1.0, _M13_24)])
    ),
    "VVVV2": _Structure(
        (3, 3, 3, 3),
        _metric_polynomial((3, 3, 3, 3), [(1.0, _M14_23), (1.0, _M13_24), (-2.0, _M12_34)]),
    ),
    "VVVV3": _Structure(
        (3, 3, 3, 3), _metric_polynomial((3, 3, 3, 3), [(1.0, _M14_23), (-1.0, _M12_34)])
    ),
    "VVVV4": _Structure(
        (3, 3, 3, 3), _metric_polynomial((3, 3, 3, 3), [(1.0, _M13_24), (-1.0, _M12_34)])
    ),
    "VVVV5": _Structure(
        (3, 3, 3, 3),
        _metric_polynomial((3, 3, 3, 3), [(1.0, _M14_23), (-0.5, _M13_24), (-0.5, _M12_34)]),
    ),
}


def _sum_flows(wfs: Sequence[Wave]) -> tuple[Real, ...]:
    flow = wfs[0].flow
    for w in wfs[1:]:
        flow = tuple(_add(a, b) for a, b in zip(flow, w.flow, strict=True))
    return flow


def _grid_size(w: Wave) -> int:
    """Elements of a wave function's largest component (0 if all are numbers)."""
    size = 0
    for c in w.comps:
        for x in (c.z, c._re, c._im):
            if isinstance(x, Tensor):
                size = max(size, x.numel())
    return size


def current(
    name: str,
    k: int,
    wfs: Sequence[Wave],
    factor: Cx | None = None,
    p_k: Sequence[Real] | None = None,
) -> tuple[Cx, ...]:
    """The current J_k = dL/dw_k of leg k (0-based) of structure ``name`` from the other
    legs' wave functions (in vertex order), times ``factor`` if given (e.g. ``-i COUP``).

    J_k is linear in each input's components, so ``factor`` multiplies the input on the
    smallest helicity grid (fewest operations) rather than the result. The momentum of
    leg k is minus the sum of the other legs' flows (ALOHA's).

    Returns:
        Four :class:`Cx` (fermion row for k = 0, column for k = 1; a vector's J^mu with
        L = J . w_k) or one (scalar).
    """
    structure = STRUCTURES[name]
    if factor is not None and not (factor.is_constant and factor.constant() == 1):
        smallest = min(range(len(wfs)), key=lambda i: _grid_size(wfs[i]))
        scaled = Wave(wfs[smallest].flow, tuple(c * factor for c in wfs[smallest].comps))
        wfs = [scaled if i == smallest else w for i, w in enumerate(wfs)]
    legs: list[Wave | None] = list(wfs)
    legs.insert(k, None)
    comps = [None if w is None else w.comps for w in legs]
    momenta: list = [None] * len(legs)
    if structure.momentum_dependent:
        momenta = [None if w is None else w.flow for w in legs]
        momenta[k] = tuple(_mul(-1.0, x) for x in _sum_flows(wfs)) if p_k is None else tuple(p_k)
    return structure.current(k, comps, momenta)  # type: ignore[operator]


def contract(name: str, k: int, j: Sequence[Cx], w: Wave) -> Cx:
    """L = J_k . w_k: the vertex value from the current of leg k and its wave function."""
    spin = STRUCTURES[name].spins[k]
    if spin == 3:
        return _mdot(j, w.comps)
    if spin == 1:
        return j[0] * w.comps[0]
    return _cx_sum_of_products([(1.0, a, b) for a, b in zip(j, w.comps, strict=True)])


def amplitude(name: str, wfs: Sequence[Wave], coup: Cx | complex, k: int | None = None) -> Cx:
    """ALOHA's ``NAME_0``: ``-i COUP L(w_1, ..., w_n)``, as the current of leg ``k``
    (default: the last) contracted with w_k.

    Args:
        name: the Lorentz structure.
        wfs: the n wave functions in vertex order.
        coup: the coupling.
        k: the leg whose current is contracted last (the result does not depend on it).
    """
    k = len(wfs) - 1 if k is None else k
    others = [w for i, w in enumerate(wfs) if i != k]
    factor = (Cx.of(coup)).times_i()
    j = current(name, k, others, -factor)
    return contract(name, k, j, wfs[k])


def propagators(
    flows: Tensor, masses: Sequence[float], widths: Sequence[float], vector: Sequence[bool]
) -> tuple[Tensor, Tensor]:
    """The propagator factors of many currents at once: ``-i / D`` for vectors, ``i / D``
    otherwise, D = P^2 - M^2 + i M W with P = -flow (GeV^-2).

    Args:
        flows: (n_currents, 4, n) the currents' flows (E, px, py, pz), GeV.
        masses, widths: per current, GeV.
        vector: per current, whether it is a vector.

    Returns:
        Real and imaginary parts, (n_currents, n) each.
    """
    f0, f1, f2, f3 = flows.unbind(1)
    p2 = f0 * f0 - f1 * f1 - f2 * f2 - f3 * f3
    m = torch.tensor(masses, dtype=flows.dtype, device=flows.device)[:, None]
    w = torch.tensor(widths, dtype=flows.dtype, device=flows.device)[:, None]
    d_re = p2 - m * m
    d_im = m * w
    norm = d_re * d_re + d_im * d_im
    inv_re, inv_im = d_re / norm, -d_im / norm  # 1 / D
    sign = torch.tensor(
        [-1.0 if v else 1.0 for v in vector], dtype=flows.dtype, device=flows.device
    )[:, None]
    return -inv_im * sign, inv_re * sign  # (+-i) / D


def offshell(
    name: str,
    k: int,
    wfs: Sequence[Wave],
    coup: Cx | complex,
    mass: float,
    width: float,
    *,
    flow: Sequence[Real] | None = None,
    momentum: Sequence[Real] | None = None,
    propagator: Cx | None = None,
) -> Wave:
    """ALOHA's ``NAME_{k+1}``: the off-shell wave function of leg k (0-based) with its
    propagator: fermion ``i (qslash + M) / D``, scalar ``i / D``, vector ``-i (g - P P /
    M^2) / D`` (``-i g / D`` when M = 0), D = P^2 - M^2 + i M W (mass, width in GeV);
    see :meth:`processes.auto.helas.LorentzStructure.offshell`.

    ``flow`` (the sum of the inputs' flows), ``momentum`` (P = -flow) and ``propagator``
    (``-i / D`` for a vector, ``i / D`` otherwise, from :func:`propagators`) may be given
    precomputed for many currents at once (the generated code does).
    """
    structure = STRUCTURES[name]
    spin = structure.spins[k]
    flow = _sum_flows(wfs) if flow is None else tuple(flow)
    p_k = tuple(_mul(-1.0, x) for x in flow) if momentum is None else tuple(momentum)
    if propagator is None:
        # 1 / D with D = P^2 - M^2 + i M W, per event
        d_re = _sub(_mdot_rr(p_k, p_k), mass * mass)
        d_im = mass * width
        if d_im == 0.0:
            inv = Cx(1.0 / d_re)
        else:
            norm = 1.0 / (d_re * d_re + d_im * d_im)
            inv = Cx(d_re * norm, -d_im * norm)
        propagator = (-inv).times_i() if spin == 3 else inv.times_i()
    # the propagator's numerator is linear in J: its factor goes into J, i.e. into the
    # input on the smallest grid
    j = current(name, k, wfs, Cx.of(coup) * propagator, p_k)
    if spin == 1:
        body: tuple[Cx, ...] = (j[0],)
    elif spin == 3:
        body = tuple(j)
        if mass != 0.0:
            pj = _mdot_real(p_k, j).scale(-1.0 / mass**2)
            body = tuple(x + pj.scale(q) for x, q in zip(j, p_k, strict=True))
    elif k == 0:  # bra; momentum along the fermion flow q = -P_k
        body = _slash_row(j, flow, mass)
    else:  # ket; q = P_k
        body = _slash_column(p_k, j, mass)
    return Wave(flow, body)  # type: ignore[arg-type]


def _slash_row(g: Sequence[Cx], q: Sequence[Real], mass: float) -> tuple[Cx, ...]:
    """The row spinor g (qslash + mass)."""
    s00, s01, s10, s11 = _sigma_real(q)
    g0, g1, g2, g3 = g
    m = Cx(mass)
    return (
        _cx_sum_of_products([(1.0, g2, s00), (1.0, g3, s10), (1.0, g0, m)]),
        _cx_sum_of_products([(1.0, g2, s01), (1.0, g3, s11), (1.0, g1, m)]),
        _cx_sum_of_products([(1.0, g0, s11), (-1.0, g1, s10), (1.0, g2, m)]),
        _cx_sum_of_products([(-1.0, g0, s01), (1.0, g1, s00), (1.0, g3, m)]),
    )


def _slash_column(q: Sequence[Real], c: Sequence[Cx], mass: float) -> tuple[Cx, ...]:
    """The column spinor (qslash + mass) c."""
    s00, s01, s10, s11 = _sigma_real(q)
    c0, c1, c2, c3 = c
    m = Cx(mass)
    return (
        _cx_sum_of_products([(1.0, s11, c2), (-1.0, s01, c3), (1.0, m, c0)]),
        _cx_sum_of_products([(-1.0, s10, c2), (1.0, s00, c3), (1.0, m, c1)]),
        _cx_sum_of_products([(1.0, s00, c0), (1.0, s01, c1), (1.0, m, c2)]),
        _cx_sum_of_products([(1.0, s10, c0), (1.0, s11, c1), (1.0, m, c3)]),
    )
