"""SU(3) colour for tree diagrams: trace basis, JAMP coefficients, colour matrix, flows.

Every tree diagram's colour factor is a product of UFO colour structures. This module
rewrites such factors, exactly, in MadGraph's *trace basis* and builds what MadGraph's
generated code uses (``color_amp.py`` of MG5_aMC):

- the **basis**: products of open quark strings ``(T^a T^b ...)_{i jbar}`` (:class:`Chain`)
  and closed gluon traces ``Tr(T^a T^b ...)`` (:class:`Trace`) over external legs;
- the **JAMP coefficients**: ``JAMP_k = sum_d c_dk A_d`` for the diagram amplitudes A_d
  with their colour stripped;
- the **colour matrix** ``C_kl = sum over all external colours of conj(b_k) b_l``, so that
  the colour-summed ``|M|^2 = sum_kl conj(JAMP_k) C_kl JAMP_l`` exactly;
- per basis element its **leading-colour flow** as LHE colour tags, and which flows are
  leading in 1/N (MadGraph's ``ICOLAMP``/``jamp2``) for choosing a flow per event.

Conventions (UFO and MadGraph):

- A colour factor is a sequence of ``(structure, indices)``: ``("T", (a, i, j))`` is
  ``(T^a)_{ij}`` with ``a`` adjoint, ``i`` the index of a triplet-type leg (an outgoing
  quark), ``j`` of an antitriplet-type leg; ``("f", (a, b, c))`` and ``("d", (a, b, c))``
  are the SU(3) structure constants and symmetric symbol; ``("Identity", (x, y))`` is a
  Kronecker delta of two indices of one representation. ``Epsilon``/``EpsilonBar`` (baryon
  number violating) and sextets are rejected.
- Indices: ``k >= 0`` is the colour index of external leg ``k``; a negative index is
  internal and summed over; it must appear exactly twice in one diagram's factor (so a
  caller renames the internal indices of different vertices apart).
- Legs are all outgoing: ``reps[k]`` is 1, 3, -3 or 8 for the crossed leg (an incoming
  quark is a -3, an incoming antiquark a 3).
- Normalisation ``Tr(T^a T^b) = delta^ab / 2``, ``[T^a, T^b] = i f^abc T^c``,
  ``{T^a, T^b} = delta^ab / N + d^abc T^c``, N = 3. Then ``f^abc = -2i Tr(T^a [T^b, T^c])``
  and ``d^abc = 2 Tr(T^a {T^b, T^c})``, and the colour matrix is the plain colour sum, as
  in MadGraph's ``CF(i,j)/DENOM(i)``: g g > t t~ gives ``[[16/3, -2/3], [-2/3, 16/3]]``
  and g g > g g ``19/6`` on the diagonal.

Method. Each factor is expanded symbolically (MadGraph's colour algebra): ``f`` and ``d``
become traces, internal triplet indices join strings, and every internal gluon is removed
with the Fierz identity ``T^e_{xy} T^e_{zw} = 1/2 (delta_xw delta_zy - 1/N delta_xy
delta_zw)``, ``Tr() = N``, ``Tr(T^a) = 0``. Coefficients are exact rationals times 1 or i
and keep their power of N, which decides the leading-colour flows (those with the largest
power of N, as MadGraph's ``max_Nc``); U(1) pieces cancel exactly. The colour matrix is
computed the same way with all external indices summed. The basis is the set of trace
products that occur with a nonzero coefficient (MadGraph's basis: single traces for
gluons, strings for a quark line, ...). Where their tensors are linearly dependent at
N = 3 (e.g. u u~ > d d~ s s~ g: 18 products in the 17-dimensional space of invariants;
up to g g > 4 g and u u~ > 5 g, gluons and one quark line stay independent) a maximal
independent subset is kept (leading flows first, then basis order) and the dependent
elements are re-expressed in it exactly, so the coefficients are unique.
:func:`colour_tensor` evaluates any factor numerically with explicit Gell-Mann matrices,
an independent second method used by the tests.

Example:
    >>> g_g_tt = [
    ...     [("f", (0, 1, -1)), ("T", (-1, 2, 3))],  # s-channel gluon
    ...     [("T", (0, 2, -1)), ("T", (1, -1, 3))],  # t-channel top
    ...     [("T", (1, 2, -1)), ("T", (0, -1, 3))],  # u-channel top
    ... ]
    >>> dec = decompose(g_g_tt, reps=(8, 8, 3, -3))
    >>> dec.labels
    ['(T^0 T^1)_{2,3}', '(T^1 T^0)_{2,3}']
    >>> dec.matrix_exact
    ((Fraction(16, 3), Fraction(-2, 3)), (Fraction(-2, 3), Fraction(16, 3)))
    >>> dec.coefficients
    array([[0.-1.j, 0.+1.j],
           [1.+0.j, 0.+0.j],
           [0.+0.j, 1.+0.j]])
    >>> dec.lhe_flows()[0].tolist()  # gluon 0's colour goes to the top
    [[501, 502], [502, 503], [501, 0], [0, 503]]
"""

from __future__ import annotations

import itertools
import math
import string
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from evgen.errors import ProcessError

__all__ = [
    "N_COLOURS",
    "Chain",
    "Trace",
    "BasisElement",
    "ColourFactor",
    "ExactComplex",
    "ColourDecomposition",
    "decompose",
    "colour_tensor",
    "basis_element_factor",
    "format_element",
    "su3_generators",
    "su3_f",
    "su3_d",
    "FIRST_TAG",
]

#: The number of colours N of SU(N).
N_COLOURS = 3
#: The first LHE colour tag (as MadGraph and Pythia write them).
FIRST_TAG = 501

ColourFactor = Sequence[tuple[str, tuple[int, ...]]]
"""One diagram's colour factor: a product of UFO colour structures ``(name, indices)``."""

_REPS = (1, 3, -3, 8)
_ARITY = {"T": 3, "f": 3, "d": 3, "Identity": 2}


class Chain(NamedTuple):
    """An open quark string ``(T^{g1} ... T^{gn})_{i j}`` over external legs.

    ``triplet`` is the leg ``i`` (all-outgoing rep 3: an outgoing quark or an incoming
    antiquark), ``antitriplet`` the leg ``j`` (rep -3), ``gluons`` the adjoint legs in
    matrix order; no gluons is ``delta_{ij}``.
    """

    triplet: int
    gluons: tuple[int, ...]
    antitriplet: int

    def __str__(self) -> str:
        if not self.gluons:
            return f"delta_{{{self.triplet},{self.antitriplet}}}"
        inner = " ".join(f"T^{g}" for g in self.gluons)
        return f"({inner})_{{{self.triplet},{self.antitriplet}}}"


class Trace(NamedTuple):
    """A closed gluon trace ``Tr(T^{g1} ... T^{gn})`` (n >= 2), rotated to start at its
    smallest leg."""

    gluons: tuple[int, ...]

    def __str__(self) -> str:
        return "Tr(" + " ".join(f"T^{g}" for g in self.gluons) + ")"


BasisElement = tuple[Chain | Trace, ...]
"""A product of chains (sorted by triplet leg) then traces (sorted); ``()`` is 1."""


class ExactComplex(NamedTuple):
    """An exact complex rational ``real + i imag``."""

    real: Fraction
    imag: Fraction

    def __complex__(self) -> complex:
        return complex(float(self.real), float(self.imag))

    def __str__(self) -> str:
        if self.imag == 0:
            return str(self.real)
        if self.real == 0:
            return f"{self.imag}i"
        return f"({self.real}{'+' if self.imag > 0 else '-'}{abs(self.imag)}i)"


def format_element(element: BasisElement) -> str:
    """MadGraph-like text of a basis element, e.g. ``'(T^2 T^3)_{0,1} Tr(T^4 T^5)'``."""
    return " ".join(str(x) for x in element) if element else "1"


# --------------------------------------------------------------------------------------
# Explicit SU(3) matrices (the numeric method).


@lru_cache(maxsize=1)
def su3_generators() -> np.ndarray:
    """The generators ``T^a = lambda^a / 2`` (Gell-Mann matrices), shape (8, 3, 3),
    complex128, ``Tr(T^a T^b) = delta^ab / 2``. Read-only."""
    lam = np.zeros((8, 3, 3), dtype=np.complex128)
    lam[0, 0, 1] = lam[0, 1, 0] = 1
    lam[1, 0, 1], lam[1, 1, 0] = -1j, 1j
    lam[2, 0, 0], lam[2, 1, 1] = 1, -1
    lam[3, 0, 2] = lam[3, 2, 0] = 1
    lam[4, 0, 2], lam[4, 2, 0] = -1j, 1j
    lam[5, 1, 2] = lam[5, 2, 1] = 1
    lam[6, 1, 2], lam[6, 2, 1] = -1j, 1j
    lam[7] = np.diag([1.0, 1.0, -2.0]) / np.sqrt(3.0)
    t = lam / 2
    t.setflags(write=False)
    return t


@lru_cache(maxsize=1)
def su3_f() -> np.ndarray:
    """Structure constants ``f^abc = -2i Tr(T^a [T^b, T^c])``, shape (8, 8, 8), float64."""
    t = su3_generators()
    tr = np.einsum("aij,bjk,cki->abc", t, t, t)
    f = (-2j * (tr - tr.transpose(0, 2, 1))).real.copy()
    f.setflags(write=False)
    return f


@lru_cache(maxsize=1)
def su3_d() -> np.ndarray:
    """Symmetric symbol ``d^abc = 2 Tr(T^a {T^b, T^c})``, shape (8, 8, 8), float64."""
    t = su3_generators()
    tr = np.einsum("aij,bjk,cki->abc", t, t, t)
    d = (2 * (tr + tr.transpose(0, 2, 1))).real.copy()
    d.setflags(write=False)
    return d


def _dim(rep: int) -> int:
    return {1: 1, 3: 3, -3: 3, 8: 8}[rep]


def colour_tensor(factor: ColourFactor, reps: Sequence[int]) -> np.ndarray:
    """A colour factor as an explicit tensor over the external colour indices.

    Contracts explicit SU(3) matrices (:func:`su3_generators`, :func:`su3_f`,
    :func:`su3_d`, unit matrices for ``Identity``) over the internal indices with numpy's
    einsum; independent of the symbolic algebra of :func:`decompose`.

    Args:
        factor: the colour structures (see the module docstring).
        reps: all-outgoing representation per leg (1, 3, -3, 8).

    Returns:
        complex128 array with one axis per leg, of length 3 (triplets), 8 (gluons) or 1
        (colour singlets), in leg order.
    """
    reps = tuple(int(r) for r in reps)
    _check_reps(reps)
    letters = iter(string.ascii_letters)
    name: dict[int, str] = {}

    def sym(x: int) -> str:
        if x not in name:
            try:
                name[x] = next(letters)
            except StopIteration:
                raise ProcessError("colour factor: too many indices for einsum") from None
        return name[x]

    operands, subs = [], []
    t, f, d = su3_generators(), su3_f(), su3_d()
    for structure, indices in factor:
        _check_structure(structure, indices, where="colour factor")
        if structure == "T":
            operands.append(t)
        elif structure == "f":
            operands.append(f)
        elif structure == "d":
            operands.append(d)
        else:
            x, y = indices
            rep = _identity_rep(factor, x, y, reps)
            operands.append(np.eye(_dim(rep)))
        subs.append("".join(sym(int(i)) for i in indices))
    out_legs = [k for k, r in enumerate(reps) if r != 1]
    out = "".join(sym(k) for k in out_legs)
    if operands:
        spec = ",".join(subs) + "->" + out
        result = np.einsum(spec, *operands, optimize="greedy").astype(np.complex128)
    else:
        result = np.ones((), dtype=np.complex128)
    return result.reshape(tuple(_dim(r) for r in reps))


def _identity_rep(factor: ColourFactor, x: int, y: int, reps: tuple[int, ...]) -> int:
    """Representation of the indices of an ``Identity`` (8 or 3), from where they occur."""
    for z in (x, y):
        if z >= 0:
            if z >= len(reps):
                raise ProcessError(f"colour factor: leg index {z} >= number of legs {len(reps)}")
            return 8 if reps[z] == 8 else 3
    seen: set[int] = set()
    todo = [x, y]
    while todo:
        z = todo.pop()
        if z in seen:
            continue
        seen.add(z)
        for structure, indices in factor:
            if z not in indices:
                continue
            if structure in ("f", "d") or (structure == "T" and indices[0] == z):
                return 8
            if structure == "T":
                return 3
            todo.extend(int(i) for i in indices)
            for i in indices:
                if 0 <= i < len(reps):
                    return 8 if reps[i] == 8 else 3
    raise ProcessError(f"colour factor: cannot tell the representation of Identity{(x, y)}")


def basis_element_factor(element: BasisElement) -> list[tuple[str, tuple[int, ...]]]:
    """A basis element as a UFO colour factor (``T`` chains with internal indices), e.g.
    for :func:`colour_tensor`."""
    out: list[tuple[str, tuple[int, ...]]] = []
    fresh = itertools.count(-1, -1)
    for obj in element:
        if isinstance(obj, Chain):
            if not obj.gluons:
                out.append(("Identity", (obj.triplet, obj.antitriplet)))
                continue
            left = obj.triplet
            for n, g in enumerate(obj.gluons):
                right = obj.antitriplet if n == len(obj.gluons) - 1 else next(fresh)
                out.append(("T", (g, left, right)))
                left = right
        else:
            first = left = next(fresh)
            for n, g in enumerate(obj.gluons):
                right = first if n == len(obj.gluons) - 1 else next(fresh)
                out.append(("T", (g, left, right)))
                left = right
    return out


# --------------------------------------------------------------------------------------
# Symbolic colour algebra.
#
# A monomial is (strings, traces): strings are (row, gluons, col) with triplet labels
# row/col (external legs >= 0 or internal < 0) and traces are tuples of gluon labels.
# A term is keyed by (monomial, power of N, power of i in {0, 1}) with an integer value;
# every term of one contraction shares a common factor 2^k (Fierz: 1/2, f and d: 2), so
# the arithmetic is on Python ints and exact.
# A piece (one factor of a product) is (k, terms): 2^k times a sum of terms
# (integer, power of N, power of i, strings, traces).

_Seg = tuple[int, tuple[int, ...], int]
_Mono = tuple[tuple[_Seg, ...], tuple[tuple[int, ...], ...]]
_Key = tuple[_Mono, int, int]
_PieceTerm = tuple[int, int, int, tuple[_Seg, ...], tuple[tuple[int, ...], ...]]
_Piece = tuple[int, list[_PieceTerm]]
_EMPTY: _Mono = ((), ())


def _rotate(tr: tuple[int, ...]) -> tuple[int, ...]:
    i = tr.index(min(tr))
    return tr[i:] + tr[:i]


def _canon(strings: Sequence[_Seg], traces: Sequence[tuple[int, ...]]) -> tuple[int, _Mono] | None:
    """Canonical monomial: empty traces -> N, one-generator traces -> 0 (None)."""
    npow = 0
    kept = []
    for tr in traces:
        if len(tr) == 0:
            npow += 1
        elif len(tr) == 1:
            return None
        else:
            kept.append(_rotate(tr))
    return npow, (tuple(sorted(strings)), tuple(sorted(kept)))


def _join(mono: _Mono, x: int) -> tuple[int, _Mono] | None:
    """Contract the internal triplet label ``x`` (a column of one string, a row of one)."""
    strings = list(mono[0])
    i_end = next(i for i, s in enumerate(strings) if s[2] == x)
    i_start = next(i for i, s in enumerate(strings) if s[0] == x)
    traces = list(mono[1])
    if i_end == i_start:
        traces.append(strings.pop(i_end)[1])
    else:
        a, b = strings[i_end], strings[i_start]
        strings = [s for i, s in enumerate(strings) if i not in (i_end, i_start)]
        strings.append((a[0], a[1] + b[1], b[2]))
    return _canon(strings, traces)


def _fierz(mono: _Mono, e: int) -> list[tuple[int, int, _Mono]]:
    """Remove the internal gluon ``e`` (two occurrences) with the Fierz identity.

    Returns ``(coefficient, power of N, monomial)`` for the 1/2 and -1/(2N) terms, with
    the common factor 1/2 left to the caller (coefficients +1 and -1).
    """
    strings, traces = list(mono[0]), list(mono[1])
    occ = [("s", i, p) for i, s in enumerate(strings) for p, g in enumerate(s[1]) if g == e]
    occ += [("t", i, p) for i, t in enumerate(traces) for p, g in enumerate(t) if g == e]
    if len(occ) != 2:
        raise AssertionError(f"internal gluon {e} occurs {len(occ)} times")
    (k1, i1, p1), (k2, i2, p2) = occ
    used = {(k1, i1), (k2, i2)}
    rest_s = [s for i, s in enumerate(strings) if ("s", i) not in used]
    rest_t = [t for i, t in enumerate(traces) if ("t", i) not in used]
    one: tuple[list[_Seg], list[tuple[int, ...]]]
    two: tuple[list[_Seg], list[tuple[int, ...]]]
    if k1 == k2 == "s" and i1 == i2:  # (A e B e C)_{rc}
        r, g, c = strings[i1]
        a, b, cc = g[:p1], g[p1 + 1 : p2], g[p2 + 1 :]
        one = ([(r, a + cc, c)], [b])
        two = ([(r, a + b + cc, c)], [])
    elif k1 == k2 == "t" and i1 == i2:  # Tr(e B e C)
        t = traces[i1]
        t = t[p1:] + t[:p1]
        q = p2 - p1
        b, cc = t[1:q], t[q + 1 :]
        one = ([], [b, cc])
        two = ([], [b + cc])
    elif k1 == k2 == "s":  # (A e B)_{r1 c1} (C e D)_{r2 c2}
        r1, g1, c1 = strings[i1]
        r2, g2, c2 = strings[i2]
        a, b, cc, d = g1[:p1], g1[p1 + 1 :], g2[:p2], g2[p2 + 1 :]
        one = ([(r1, a + d, c2), (r2, cc + b, c1)], [])
        two = ([(r1, a + b, c1), (r2, cc + d, c2)], [])
    elif k1 == k2 == "t":  # Tr(e B) Tr(e D)
        t1, t2 = traces[i1], traces[i2]
        b = t1[p1 + 1 :] + t1[:p1]
        d = t2[p2 + 1 :] + t2[:p2]
        one = ([], [b + d])
        two = ([], [b, d])
    else:  # (A e B)_{rc} Tr(e D)
        si, sp, ti, tp = (i1, p1, i2, p2) if k1 == "s" else (i2, p2, i1, p1)
        r, g, c = strings[si]
        t = traces[ti]
        a, b = g[:sp], g[sp + 1 :]
        d = t[tp + 1 :] + t[:tp]
        one = ([(r, a + d + b, c)], [])
        two = ([(r, a + b, c)], [d])
    out = []
    for coef, dpow, (new_s, new_t) in ((1, 0, one), (-1, -1, two)):
        res = _canon(rest_s + new_s, rest_t + new_t)
        if res is not None:
            out.append((coef, dpow + res[0], res[1]))
    return out


def _piece_labels(piece: _Piece) -> tuple[set[int], set[int]]:
    """Internal (negative) triplet and gluon labels of a piece."""
    trip: set[int] = set()
    glu: set[int] = set()
    for _, _, _, segs, trs in piece[1]:
        for r, g, c in segs:
            trip.update(x for x in (r, c) if x < 0)
            glu.update(x for x in g if x < 0)
        for tr in trs:
            glu.update(x for x in tr if x < 0)
    return trip, glu


def _order(labels: list[set[int]]) -> list[int]:
    """Greedy order of pieces: next the one sharing most labels with those taken."""
    n = len(labels)
    if n == 0:
        return []
    taken = [0]
    seen = set(labels[0])
    left = set(range(1, n))
    while left:
        nxt = max(sorted(left), key=lambda i: len(labels[i] & seen))
        taken.append(nxt)
        seen |= labels[nxt]
        left.remove(nxt)
    return taken


def _contract(pieces: list[_Piece]) -> tuple[dict[_Key, int], int]:
    """Multiply the pieces and contract every internal (negative) label.

    Labels are contracted as soon as the last piece holding them is multiplied in, and
    like terms are collected after every step, so U(1) pieces cancel early.

    Returns:
        the terms with integer values and the power k of their common factor 2^k.
    """
    labs = [_piece_labels(p) for p in pieces]
    triplets = set().union(*(t for t, _ in labs)) if labs else set()
    order = _order([t | g for t, g in labs])
    last: dict[int, int] = {}
    for step, ip in enumerate(order):
        for x in labs[ip][0] | labs[ip][1]:
            last[x] = step
    exp2 = sum(p[0] for p in pieces) - len(set(last) - triplets)  # 1/2 per Fierz
    terms: dict[_Key, int] = {(_EMPTY, 0, 0): 1}
    for step, ip in enumerate(order):
        new: dict[_Key, int] = defaultdict(int)
        for (mono, npow, im), c in terms.items():
            for c2, p2, im2, segs, trs in pieces[ip][1]:
                coef = c * c2
                imag = im + im2
                if imag == 2:
                    coef, imag = -coef, 0
                res = _canon(mono[0] + segs, mono[1] + trs)
                if res is not None:
                    new[(res[1], npow + p2 + res[0], imag)] += coef
        terms = {k: v for k, v in new.items() if v != 0}
        done = [x for x, s in last.items() if s == step]
        for x in sorted(x for x in done if x in triplets):
            joined: dict[_Key, int] = defaultdict(int)
            for (mono, npow, im), c in terms.items():
                res = _join(mono, x)
                if res is not None:
                    joined[(res[1], npow + res[0], im)] += c
            terms = {k: v for k, v in joined.items() if v != 0}
        for e in sorted(x for x in done if x not in triplets):
            fz: dict[_Key, int] = defaultdict(int)
            for (mono, npow, im), c in terms.items():
                for c2, p2, mono2 in _fierz(mono, e):
                    fz[(mono2, npow + p2, im)] += c * c2
            terms = {k: v for k, v in fz.items() if v != 0}
    return terms, exp2


# --------------------------------------------------------------------------------------
# Input checks and conversion of UFO factors to pieces.


def _check_reps(reps: tuple[int, ...]) -> None:
    for k, r in enumerate(reps):
        if r not in _REPS:
            raise ProcessError(
                f"colour: leg {k} has representation {r}; allowed are 1, 3, -3, 8 "
                "(sextets and other representations are not supported)"
            )


def _check_structure(structure: str, indices: tuple[int, ...], where: str) -> None:
    if structure in ("Epsilon", "EpsilonBar"):
        raise ProcessError(
            f"{where}: colour structure {structure!r} (baryon-number violating epsilon "
            "tensor) is not supported; allowed are T, f, d, Identity"
        )
    if structure not in _ARITY:
        raise ProcessError(
            f"{where}: unknown colour structure {structure!r}; allowed are T, f, d, Identity"
        )
    if len(indices) != _ARITY[structure]:
        raise ProcessError(
            f"{where}: {structure}{tuple(indices)} needs {_ARITY[structure]} indices"
        )


def _factor_pieces(
    factor: tuple[tuple[str, tuple[int, ...]], ...], reps: tuple[int, ...], where: str
) -> list[_Piece]:
    """Check a diagram's factor and turn it into pieces (sums of strings and traces)."""
    n_legs = len(reps)
    for structure, indices in factor:
        _check_structure(structure, indices, where)
        for x in indices:
            if x >= n_legs:
                raise ProcessError(
                    f"{where}: {structure}{indices} names leg {x}, but there are {n_legs} legs"
                )
    # Slots: "8" adjoint, "3" the i slot of T (triplet legs), "-3" the j slot.
    others = [(s, idx) for s, idx in factor if s != "Identity"]
    occ: dict[int, list[str]] = defaultdict(list)
    for s, idx in others:
        kinds = ("8", "3", "-3") if s == "T" else ("8", "8", "8")
        for x, kind in zip(idx, kinds, strict=True):
            occ[x].append(kind)

    # Identities: union of labels; each class is a chain of deltas with two ends.
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for _, (x, y) in (f for f in factor if f[0] == "Identity"):
        parent[find(x)] = find(y)
    classes: dict[int, list[int]] = defaultdict(list)
    for x in list(parent):
        classes[find(x)].append(x)
    subst: dict[int, int] = {}
    pieces: list[_Piece] = []
    for members in classes.values():
        ext = [x for x in members if x >= 0]
        ends = ext + [x for x in members if x < 0 for _ in occ.get(x, [])]
        kinds = {("8" if reps[x] == 8 else "3") for x in ext}
        kinds |= {("8" if k == "8" else "3") for x in members for k in occ.get(x, [])}
        if len(kinds) > 1:
            raise ProcessError(f"{where}: Identity joins adjoint and triplet indices {members}")
        adjoint = kinds == {"8"}
        if not kinds:
            raise ProcessError(
                f"{where}: cannot tell the representation of the closed Identity loop "
                f"through indices {sorted(members)}"
            )
        if len(ends) == 0:  # a closed delta loop
            if adjoint:
                pieces.append((0, [(1, 2, 0, (), ()), (-1, 0, 0, (), ())]))  # N^2 - 1
            else:
                pieces.append((0, [(1, 1, 0, (), ())]))
            continue
        if len(ends) != 2 or len(ext) > 2:
            raise ProcessError(
                f"{where}: the Identity chain through indices {sorted(members)} has "
                f"{len(ends)} ends; a delta connects exactly two"
            )
        if len(ext) == 2:
            a, b = ext
            if adjoint:  # delta^ab = 2 Tr(T^a T^b)
                pieces.append((1, [(1, 0, 0, (), ((a, b),))]))
            else:
                if {reps[a], reps[b]} != {3, -3}:
                    raise ProcessError(
                        f"{where}: Identity between legs {a} and {b} of representations "
                        f"{reps[a]} and {reps[b]}; a triplet delta needs a 3 and a -3"
                    )
                row, col = (a, b) if reps[a] == 3 else (b, a)
                pieces.append((0, [(1, 0, 0, ((row, (), col),), ())]))
            continue
        target = ext[0] if ext else min(members)
        for x in members:
            subst[x] = target

    # Substitute and validate every index of the remaining structures.
    others = [(s, tuple(subst.get(x, x) for x in idx)) for s, idx in others]
    occ = defaultdict(list)
    for s, idx in others:
        kinds = ("8", "3", "-3") if s == "T" else ("8", "8", "8")
        for x, kind in zip(idx, kinds, strict=True):
            occ[x].append(kind)
    for piece in pieces:  # explicit deltas between two external legs
        for _, _, _, segs, trs in piece[1]:
            for r, _, c in segs:
                occ[r].append("3")
                occ[c].append("-3")
            for tr in trs:
                for x in tr:
                    occ[x].append("8")
    for k, rep in enumerate(reps):
        if rep == 1:
            if k in occ:
                raise ProcessError(f"{where}: leg {k} is a colour singlet but has an index")
            continue
        want = {3: "3", -3: "-3", 8: "8"}[rep]
        if occ.get(k) != [want]:
            raise ProcessError(
                f"{where}: leg {k} (representation {rep}) must appear exactly once, in a "
                f"{'adjoint' if rep == 8 else 'T(a, i, j) ' + ('i' if rep == 3 else 'j')} "
                f"slot; found slots {occ.get(k, [])}"
            )
    for x, kinds in occ.items():
        if x < 0 and sorted(kinds) not in (["8", "8"], ["-3", "3"]):
            raise ProcessError(
                f"{where}: internal index {x} must appear twice, as two adjoint indices or "
                f"as the i and the j index of T; found slots {kinds}"
            )

    for s, idx in others:
        if s == "T":
            a, i, j = idx
            pieces.append((0, [(1, 0, 0, ((i, (a,), j),), ())]))
        elif s == "f":  # -2i Tr(a b c) + 2i Tr(a c b)
            a, b, c = idx
            pieces.append((1, [(-1, 0, 1, (), ((a, b, c),)), (1, 0, 1, (), ((a, c, b),))]))
        else:  # d: 2 Tr(a b c) + 2 Tr(a c b)
            a, b, c = idx
            pieces.append((1, [(1, 0, 0, (), ((a, b, c),)), (1, 0, 0, (), ((a, c, b),))]))
    return pieces


# Exact expansion of one diagram: monomial -> {power of N: (real, imag)}.
_Expansion = dict[_Mono, dict[int, tuple[Fraction, Fraction]]]


@lru_cache(maxsize=4096)
def _expand(factor: tuple[tuple[str, tuple[int, ...]], ...], reps: tuple[int, ...]) -> _Expansion:
    """Exact expansion of one factor: monomial -> {power of N: (real, imag)}."""
    where = f"{[(s, list(i)) for s, i in factor]}"
    terms, exp2 = _contract(_factor_pieces(factor, reps, where))
    scale = Fraction(2) ** exp2
    out: dict[_Mono, dict[int, list[Fraction]]] = defaultdict(
        lambda: defaultdict(lambda: [Fraction(0), Fraction(0)])
    )
    for (mono, npow, im), c in terms.items():
        if any(x < 0 for s in mono[0] for x in (s[0], s[2], *s[1])) or any(
            x < 0 for t in mono[1] for x in t
        ):
            raise AssertionError(f"{where}: internal index left after contraction: {mono}")
        out[mono][npow][im] += c * scale
    return {m: {p: (v[0], v[1]) for p, v in d.items()} for m, d in out.items()}


def _to_element(mono: _Mono) -> BasisElement:
    return tuple(Chain(r, g, c) for r, g, c in mono[0]) + tuple(Trace(t) for t in mono[1])


def _sort_key(mono: _Mono) -> tuple:
    return (len(mono[0]) + len(mono[1]), mono)


# --------------------------------------------------------------------------------------
# Colour matrix.


def _relabel(mono: _Mono, perm: dict[int, int]) -> _Mono:
    res = _canon(
        [(r, tuple(perm[g] for g in gl), c) for r, gl, c in mono[0]],
        [tuple(perm[g] for g in t) for t in mono[1]],
    )
    assert res is not None and res[0] == 0
    return res[1]


_GLUON_RELABEL = 1 << 20


def _pair_value(bk: _Mono, bl: _Mono) -> Fraction:
    """``sum over colours of conj(b_k) b_l`` at N = 3 (exact)."""
    # The sum is invariant under relabelling the (summed) gluon legs of both: relabel by
    # first appearance in b_k so that equivalent pairs share one cache entry.
    perm: dict[int, int] = {}
    for g in itertools.chain(*(s[1] for s in bk[0]), *bk[1]):
        perm.setdefault(g, _GLUON_RELABEL + len(perm))  # apart from the triplet legs
    gl = {g for s in bl[0] for g in s[1]} | {g for t in bl[1] for g in t}
    if gl != set(perm):
        raise AssertionError("basis elements with different gluon legs")
    return _pair_value_cached(_relabel(bk, perm), _relabel(bl, perm))


@lru_cache(maxsize=65536)
def _pair_value_cached(bk: _Mono, bl: _Mono) -> Fraction:
    def internal(x: int) -> int:
        return -(x + 1)

    pieces: list[_Piece] = []
    for r, g, c in bk[0]:  # conj((T^a..T^z)_{rc}) = (T^z..T^a)_{cr}
        seg = (internal(c), tuple(internal(x) for x in reversed(g)), internal(r))
        pieces.append((0, [(1, 0, 0, (seg,), ())]))
    for t in bk[1]:
        pieces.append((0, [(1, 0, 0, (), (tuple(internal(x) for x in reversed(t)),))]))
    for r, g, c in bl[0]:
        seg = (internal(r), tuple(internal(x) for x in g), internal(c))
        pieces.append((0, [(1, 0, 0, (seg,), ())]))
    for t in bl[1]:
        pieces.append((0, [(1, 0, 0, (), (tuple(internal(x) for x in t),))]))
    terms, exp2 = _contract(pieces)
    total = Fraction(0)
    for (mono, npow, im), c in terms.items():
        if mono != _EMPTY or im != 0:
            raise AssertionError(f"colour sum left {mono}, imaginary power {im}")
        total += c * Fraction(N_COLOURS) ** npow
    return total * Fraction(2) ** exp2


# --------------------------------------------------------------------------------------
# Linear independence (exact).


def _independent(
    gram: list[list[Fraction]], order: list[int]
) -> tuple[list[int], dict[int, dict[int, Fraction]]]:
    """Greedy maximal independent subset (in ``order``) of vectors with this Gram matrix.

    Returns the kept indices and, for each dropped index j, its exact expansion
    ``b_j = sum_k x_jk b_k`` over the kept ones (Gram-Schmidt in the Gram metric).
    """
    kept: list[int] = []
    ortho: list[tuple[dict[int, Fraction], Fraction]] = []  # (u as combination, <u,u>)
    dropped: dict[int, dict[int, Fraction]] = {}
    for j in order:
        proj: dict[int, Fraction] = defaultdict(Fraction)  # projection of b_j
        for u, nu in ortho:
            overlap = sum((cu * gram[i][j] for i, cu in u.items()), Fraction(0))
            if overlap:
                for i, cu in u.items():
                    proj[i] += overlap / nu * cu
        norm = gram[j][j] - sum(
            (proj[i] * gram[i][j] for i in proj), Fraction(0)
        )  # <b_j - P b_j, b_j>
        if norm == 0:
            dropped[j] = {i: v for i, v in proj.items() if v != 0}
        else:
            u = {i: -v for i, v in proj.items() if v != 0}
            u[j] = Fraction(1)
            ortho.append((u, norm))
            kept.append(j)
    return kept, dropped


# --------------------------------------------------------------------------------------
# The result.


@dataclass(frozen=True, eq=False)
class ColourDecomposition:
    """A process's colour: trace basis, JAMP coefficients, colour matrix and flows.

    Attributes:
        reps: all-outgoing representation per leg (1, 3, -3, 8).
        basis: the basis elements (products of :class:`Chain` and :class:`Trace`).
        coefficients: (n_diagrams, n_basis) complex128, ``JAMP_k = sum_d c_dk A_d``.
        coefficients_exact: the same as exact complex rationals (:class:`ExactComplex`).
        matrix: (n_basis, n_basis) float64, ``C_kl = sum_colours conj(b_k) b_l``; real
            and symmetric.
        matrix_exact: the same as Fractions.
        flows: (n_basis, n_legs, 2) int64 (colour, anticolour) tags of each element's
            colour flow in the all-outgoing convention, tags from 501, 0 where none. A
            string ``(T^{g1}..T^{gn})_{ij}`` connects the colour of leg i to the
            anticolour of g1, the colour of g1 to the anticolour of g2, ..., the colour of
            gn to the anticolour of j; a trace closes the same cycle. For the LHE
            convention (an incoming quark carries a colour) swap the two tags of every
            incoming leg: :meth:`lhe_flows`.
        leading: (n_diagrams, n_basis) bool, diagram d contributes to element k at the
            leading power of N (MadGraph's ``ICOLAMP``).
        leading_flows: (n_basis,) bool, the elements with a leading-colour contribution.
        dependent_elements: the trace products that were linearly dependent on the basis at
            N = 3 and were removed, each with its exact expansion ``((element, x), ...)``
            over the basis (their coefficients were moved onto the basis; usually empty).
            :attr:`leading` keeps the flags of the kept elements only.
    """

    reps: tuple[int, ...]
    basis: tuple[BasisElement, ...]
    coefficients: np.ndarray
    coefficients_exact: tuple[tuple[ExactComplex, ...], ...]
    matrix: np.ndarray
    matrix_exact: tuple[tuple[Fraction, ...], ...]
    flows: np.ndarray
    leading: np.ndarray
    leading_flows: np.ndarray
    dependent_elements: tuple[
        tuple[BasisElement, tuple[tuple[BasisElement, Fraction], ...]], ...
    ] = ()
    _torch: dict = field(default_factory=dict, repr=False)

    @property
    def n_basis(self) -> int:
        """Number of basis elements (JAMPs)."""
        return len(self.basis)

    @property
    def n_diagrams(self) -> int:
        """Number of diagrams (rows of :attr:`coefficients`)."""
        return int(self.coefficients.shape[0])

    @property
    def labels(self) -> list[str]:
        """Readable basis elements, e.g. ``'(T^0 T^1)_{2,3}'``."""
        return [format_element(b) for b in self.basis]

    def integer_matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """MadGraph's ``CF(j, i)`` integers and ``DENOM(i)`` per row: C = CF / DENOM."""
        cf = np.zeros((self.n_basis, self.n_basis), dtype=np.int64)
        denom = np.ones(self.n_basis, dtype=np.int64)
        for i, row in enumerate(self.matrix_exact):
            lcm = 1
            for x in row:
                lcm = math.lcm(lcm, x.denominator)
            denom[i] = lcm
            cf[i] = [int(x * lcm) for x in row]
        return cf, denom

    def lhe_flows(self, n_incoming: int = 2) -> np.ndarray:
        """:attr:`flows` in the LHE convention: colour and anticolour of the first
        ``n_incoming`` legs swapped (an incoming quark then carries a colour)."""
        out = self.flows.copy()
        out[:, :n_incoming] = out[:, :n_incoming, ::-1]
        return out

    def _tensors(self, like: Tensor) -> dict[str, Tensor]:
        real = like.real.dtype
        key = (like.device, real)
        if key not in self._torch:
            cplx = torch.complex128 if real == torch.float64 else torch.complex64
            mask = self.leading.copy()
            empty = ~mask.any(axis=1)
            mask[empty] = self.leading_flows  # diagrams without a leading flow: all of them
            self._torch[key] = {
                "matrix": torch.tensor(self.matrix.copy(), dtype=real, device=like.device),
                "coefficients": torch.tensor(
                    self.coefficients.copy(), dtype=cplx, device=like.device
                ),
                "leading": torch.tensor(self.leading_flows.copy(), device=like.device),
                "diagram_leading": torch.tensor(mask, device=like.device),
                "lhe": {},
            }
        return self._torch[key]

    def jamps(self, amplitudes: Tensor) -> Tensor:
        """Colour-ordered amplitudes from colour-stripped diagram amplitudes.

        Args:
            amplitudes: complex (..., n_diagrams), the diagrams' amplitudes without their
                colour factors (same units as |M|).

        Returns:
            complex (..., n_basis): ``JAMP_k = sum_d c_dk A_d``.
        """
        c = self._tensors(amplitudes)["coefficients"].to(amplitudes.dtype)
        return amplitudes @ c

    def colour_sum(self, jamps: Tensor) -> Tensor:
        """The colour-summed ``|M|^2 = sum_kl conj(J_k) C_kl J_l``, batched.

        Args:
            jamps: complex (..., n_basis).

        Returns:
            real (...), the colour-summed squared amplitude (C is real symmetric, so this
            is ``Re J^T C Re J + Im J^T C Im J``).
        """
        c = self._tensors(jamps)["matrix"]
        re, im = jamps.real, jamps.imag
        return ((re @ c) * re).sum(-1) + ((im @ c) * im).sum(-1)

    def leading_flow_weights(self, jamps: Tensor, diagram: Tensor | int | None = None) -> Tensor:
        """Probabilities of the colour flows per event, as MadGraph's ``jamp2``.

        ``w_k ~ |JAMP_k|^2`` over the leading-colour flows (:attr:`leading_flows`), or, with
        ``diagram``, over the flows that diagram contributes to at leading colour (MadGraph
        restricts to the current channel's ``ICOLAMP``); zero elsewhere. Where every allowed
        ``|JAMP_k|^2`` vanishes the allowed flows get equal weights.

        Args:
            jamps: complex (n, n_basis), or (n, n_hel, n_basis) summed over helicities.
            diagram: per-event diagram (channel) index, (n,) int64, or one int.

        Returns:
            (n, n_basis) real, rows summing to 1.
        """
        tens = self._tensors(jamps)
        jamp2 = jamps.real**2 + jamps.imag**2
        if jamp2.dim() == 3:
            jamp2 = jamp2.sum(1)
        if diagram is None:
            mask = tens["leading"].expand_as(jamp2)
        else:
            idx = torch.as_tensor(diagram, device=jamps.device, dtype=torch.int64)
            mask = tens["diagram_leading"][idx].expand_as(jamp2)
        w = torch.where(mask, jamp2, torch.zeros_like(jamp2))
        total = w.sum(-1, keepdim=True)
        uniform = mask.to(w.dtype) / mask.sum(-1, keepdim=True).to(w.dtype)
        return torch.where(total > 0, w / torch.where(total > 0, total, 1.0), uniform)

    def select_flow(
        self,
        jamps: Tensor,
        u: Tensor,
        diagram: Tensor | int | None = None,
        n_incoming: int = 2,
    ) -> Tensor:
        """One leading-colour flow per event in the LHE convention.

        Args:
            jamps: complex (n, n_basis) or (n, n_hel, n_basis).
            u: (n,) uniform numbers in [0, 1) choosing a flow with the probabilities of
                :meth:`leading_flow_weights`.
            diagram: as in :meth:`leading_flow_weights`.
            n_incoming: number of incoming legs (their tags are swapped, as in LHE).

        Returns:
            (n, n_legs, 2) int64 (colour, anticolour) tags.
        """
        w = self.leading_flow_weights(jamps, diagram)
        cdf = torch.cumsum(w, -1)
        target = u.to(cdf.dtype)[:, None] * cdf[:, -1:]
        k = torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp(max=self.n_basis - 1)
        # Never pick a flow of weight zero through rounding at the cdf's plateaus.
        k = torch.where(w.gather(1, k[:, None]).squeeze(1) > 0, k, w.argmax(-1))
        lhe = self._tensors(jamps)["lhe"]
        if n_incoming not in lhe:
            lhe[n_incoming] = torch.tensor(self.lhe_flows(n_incoming), device=jamps.device)
        return lhe[n_incoming][k]


def _flows(basis: Sequence[BasisElement], n_legs: int) -> np.ndarray:
    flows = np.zeros((len(basis), n_legs, 2), dtype=np.int64)
    for k, element in enumerate(basis):
        tag = FIRST_TAG
        for obj in element:
            if isinstance(obj, Chain):
                flows[k, obj.triplet, 0] = tag
                for g in obj.gluons:
                    flows[k, g, 1] = tag
                    tag += 1
                    flows[k, g, 0] = tag
                flows[k, obj.antitriplet, 1] = tag
                tag += 1
            else:
                first = tag
                for n, g in enumerate(obj.gluons):
                    flows[k, g, 1] = tag
                    tag += 1
                    flows[k, g, 0] = first if n == len(obj.gluons) - 1 else tag
    return flows


def _freeze(factor: ColourFactor) -> tuple[tuple[str, tuple[int, ...]], ...]:
    try:
        return tuple((str(s), tuple(int(i) for i in idx)) for s, idx in factor)
    except (TypeError, ValueError):
        raise ProcessError(
            f"colour factor {factor!r}: expected a sequence of (structure, indices)"
        ) from None


def decompose(factors: Sequence[ColourFactor], reps: Sequence[int]) -> ColourDecomposition:
    """Decompose the diagrams' colour factors in the trace basis (exact).

    Args:
        factors: one colour factor per diagram (or per colour structure of a diagram with a
            four-gluon vertex, as MadGraph splits them), each a sequence of UFO structures
            ``(name, indices)``; legs >= 0, internal indices < 0 (see the module docstring).
            An empty factor is 1 (all legs colour singlets).
        reps: all-outgoing representation of each leg: 1, 3, -3 or 8.

    Returns:
        The :class:`ColourDecomposition`: basis, coefficients, colour matrix, flows.
        Cached per (factors, reps).

    Raises:
        ProcessError: an unsupported structure or representation, or an index that does
            not appear as the legs' representations require.
    """
    frozen = tuple(_freeze(f) for f in factors)
    reps_t = tuple(int(r) for r in reps)
    return _decompose(frozen, reps_t)


@lru_cache(maxsize=256)
def _decompose(
    factors: tuple[tuple[tuple[str, tuple[int, ...]], ...], ...], reps: tuple[int, ...]
) -> ColourDecomposition:
    _check_reps(reps)
    if not factors:
        raise ProcessError("colour: no diagrams to decompose")
    n_diagrams = len(factors)
    expansions = []
    for d, factor in enumerate(factors):
        try:
            expansions.append(_expand(factor, reps))
        except ProcessError as error:
            raise ProcessError(f"colour factor of diagram {d}: {error}") from None
    three = Fraction(N_COLOURS)

    # Exact value at N = 3 and leading power of N of every (diagram, element), sparse.
    values: list[dict[_Mono, tuple[Fraction, Fraction]]] = []
    powers: list[dict[_Mono, int]] = []
    for expansion in expansions:
        val, pw = {}, {}
        for mono, by_power in expansion.items():
            re = sum((v[0] * three**p for p, v in by_power.items()), Fraction(0))
            im = sum((v[1] * three**p for p, v in by_power.items()), Fraction(0))
            if re or im:
                val[mono] = (re, im)
                pw[mono] = max(p for p, v in by_power.items() if v[0] or v[1])
        values.append(val)
        powers.append(pw)
    monos = sorted({m for val in values for m in val}, key=_sort_key)
    if not monos:
        raise ProcessError("colour: every diagram's colour factor vanishes")
    nb = len(monos)
    index = {m: k for k, m in enumerate(monos)}
    max_pow = max(p for pw in powers for p in pw.values())
    lead = np.zeros((n_diagrams, nb), dtype=bool)
    coef: list[dict[int, tuple[Fraction, Fraction]]] = []
    for d in range(n_diagrams):
        coef.append({index[m]: v for m, v in values[d].items()})
        for m, p in powers[d].items():
            lead[d, index[m]] = p == max_pow
    gram = [[Fraction(0)] * nb for _ in range(nb)]
    for k in range(nb):
        for l in range(k, nb):
            gram[k][l] = gram[l][k] = _pair_value(monos[k], monos[l])

    # Linear independence at N = 3 (a cheap float test first).
    eig = np.linalg.eigvalsh(np.array([[float(x) for x in row] for row in gram]))
    dependent_info: tuple = ()
    kept = list(range(nb))
    if eig.min() <= 1e-9 * eig.max():
        leading_any = lead.any(axis=0)
        order = sorted(range(nb), key=lambda k: (not leading_any[k], k))
        kept, dropped = _independent(gram, order)
        kept.sort()
        for row in coef:
            for j, expansion in dropped.items():
                if j not in row:
                    continue
                cre, cim = row.pop(j)
                for i, x in expansion.items():
                    ore, oim = row.get(i, (Fraction(0), Fraction(0)))
                    row[i] = (ore + cre * x, oim + cim * x)
        dependent_info = tuple(
            (
                _to_element(monos[j]),
                tuple((_to_element(monos[i]), x) for i, x in sorted(expansion.items())),
            )
            for j, expansion in sorted(dropped.items())
        )
        monos = [monos[k] for k in kept]
        gram = [[gram[i][j] for j in kept] for i in kept]
        lead = lead[:, kept]
    column = {k: c for c, k in enumerate(kept)}

    basis = tuple(_to_element(m) for m in monos)
    zero = ExactComplex(Fraction(0), Fraction(0))
    coefficients = np.zeros((n_diagrams, len(basis)), dtype=np.complex128)
    exact_rows = []
    for d, row in enumerate(coef):
        exact_row = [zero] * len(basis)
        for k, (re, im) in row.items():
            if re or im:
                exact_row[column[k]] = ExactComplex(re, im)
                coefficients[d, column[k]] = complex(float(re), float(im))
        exact_rows.append(tuple(exact_row))
    matrix_exact = tuple(tuple(row) for row in gram)
    matrix = np.array([[float(x) for x in row] for row in gram], dtype=np.float64)
    leading = np.ascontiguousarray(lead)
    flows = _flows(basis, len(reps))
    leading_flows = leading.any(axis=0)
    for arr in (coefficients, matrix, leading, flows, leading_flows):
        arr.setflags(write=False)
    return ColourDecomposition(
        reps=reps,
        basis=basis,
        coefficients=coefficients,
        coefficients_exact=tuple(exact_rows),
        matrix=matrix,
        matrix_exact=matrix_exact,
        flows=flows,
        leading=leading,
        leading_flows=leading_flows,
        dependent_elements=dependent_info,
    )
