"""Tree-level diagram generation: counts against MadGraph's and an independent counting
formula, coupling orders, exclusions, s-channel conditions, decay chains, fermion signs,
shared currents, colour factors and channels."""

from __future__ import annotations

import math
from collections import Counter
from functools import lru_cache

import pytest

from evgen.errors import ProcessError
from processes.auto.diagrams import Constraints, DecayGroup, generate_diagrams
from processes.auto.model import sm_model
from processes.auto.syntax import Orders

SM = sm_model()
SM5 = sm_model(b_mass=False)

# (initial, final, MadGraph's number of diagrams under its default orders)
MADGRAPH_COUNTS = [
    ((-11, 11), (-13, 13), 2),  # a, z
    ((21, 21), (6, -6), 3),
    ((2, -2), (1, -1), 1),  # default orders: QCD only (the g s-channel)
    ((21, 21), (21, 21), 4),
    ((21, 21), (6, -6, 21), 16),
    ((21, 21), (21, 21, 21), 25),
    ((21, 21), (6, -6, 21, 21), 123),
    ((2, -2), (-11, 11, 21), 4),
    ((-11, 11), (24, -24), 3),  # a, z s-channel, ve t-channel (massless e: no h)
    ((2, -2), (24, -24), 3),
    ((1, -1), (24, -24), 3),
    ((2, -2), (21, 21, 21), 16),
    ((2, -1), (-11, 12), 1),
    ((21, 21), (25,), 0),  # no tree-level g g h
]


@pytest.mark.parametrize("initial, final, expected", MADGRAPH_COUNTS)
def test_counts_against_madgraph(initial, final, expected) -> None:
    if expected == 0:
        with pytest.raises(ProcessError, match="no tree-level diagram"):
            generate_diagrams(SM, initial, final)
        return
    assert len(generate_diagrams(SM, initial, final).diagrams) == expected


def test_massive_b_adds_the_higgs() -> None:
    """b b~ > w+ w-: a, z, t t-channel, and h (Yukawa) in the sm; no h in sm-no_b_mass."""
    lines = {
        frozenset(pdg for _, pdg in d.lines)
        for d in generate_diagrams(SM, (5, -5), (24, -24)).diagrams
    }
    assert lines == {frozenset({22}), frozenset({23}), frozenset({25}), frozenset({6})}
    assert len(generate_diagrams(SM5, (5, -5), (24, -24)).diagrams) == 3


@lru_cache
def _trees(m: int) -> int:
    """Trees with m labelled leaves below a root, every internal node with 2 or 3
    children, by sizes (an independent count of gluon diagrams: ggg and gggg vertices)."""
    if m == 1:
        return 1
    two = sum(math.comb(m, k) * _trees(k) * _trees(m - k) for k in range(1, m)) // 2
    three = 0
    for a in range(1, m):
        for b in range(1, m - a):
            c = m - a - b
            three += (
                math.factorial(m)
                // (math.factorial(a) * math.factorial(b) * math.factorial(c))
                * (_trees(a) * _trees(b) * _trees(c))
            )
    return two + three // 6


def _double_factorial(k: int) -> int:
    return math.prod(range(k, 0, -2)) if k > 0 else 1


@pytest.mark.parametrize("n_gluons", [4, 5, 6])
def test_gluon_counts_against_tree_counting(n_gluons: int) -> None:
    """g g > (n-2) g: as many diagrams as trees with n leaves and vertices of degree 3 or
    4 (4, 25, 220), and (2n-5)!! of them with 3-point vertices only (the channels)."""
    ds = generate_diagrams(SM, (21, 21), (21,) * (n_gluons - 2))
    assert len(ds.diagrams) == _trees(n_gluons - 1)
    assert len(ds.channels) == _double_factorial(2 * n_gluons - 5)
    assert sum(c >= 0 for c in ds.diagram_channel) == len(ds.channels)


def test_no_duplicates_and_shared_currents() -> None:
    """g g > t t~ g g: every diagram distinct (its lines), every current computed once and
    after its inputs, and shared: fewer currents than current uses over the diagrams."""
    ds = generate_diagrams(SM, (21, 21), (6, -6, 21, 21))
    keys = {frozenset(d.lines) for d in ds.diagrams}
    assert len(keys) == len(ds.diagrams) == 123
    n = ds.n_external
    for w in ds.wavefunctions:
        assert all(s < w.slot for s in w.inputs)
    distinct = {(w.vertex, w.colour, w.offshell, w.inputs) for w in ds.wavefunctions}
    assert len(distinct) == len(ds.wavefunctions)
    uses = sum(len(t.wavefunctions) for d in ds.diagrams for t in d.terms)
    assert len(ds.wavefunctions) < uses / 3
    used = {s for d in ds.diagrams for t in d.terms for s in t.wavefunctions}
    assert used == set(range(n, n + len(ds.wavefunctions)))
    # Every current's legs: the union of its inputs' legs (momentum conservation).
    legs = {k: frozenset({k}) for k in range(n)}
    for w in ds.wavefunctions:
        union = frozenset().union(*(legs[s] for s in w.inputs))
        assert union == w.legs
        legs[w.slot] = w.legs


def test_orders_select_diagrams() -> None:
    """u u~ > d d~: QCD only by default (lowest QCD + 2 QED); QED<=2 adds a, z and the W
    t-channel; QCD==0 keeps the three electroweak ones; QED>0 the same three."""
    default = generate_diagrams(SM, (2, -2), (1, -1))
    assert [d.orders for d in default.diagrams] == [{"QCD": 2}]
    qed = generate_diagrams(SM, (2, -2), (1, -1), Constraints(orders={"QED": 2}))
    assert sorted(pdg for d in qed.diagrams for _, pdg in d.lines) == [21, 22, 23, 24]
    ew = generate_diagrams(SM, (2, -2), (1, -1), Constraints(Orders((("QCD", "==", 0),))))
    assert sorted(pdg for d in ew.diagrams for _, pdg in d.lines) == [22, 23, 24]
    more = generate_diagrams(SM, (2, -2), (1, -1), Constraints(Orders((("QED", ">", 0),))))
    assert len(more.diagrams) == 3
    # u u~ > e+ e- g: QCD=1 QED=2 in every diagram; QCD<=0 leaves none.
    ds = generate_diagrams(SM, (2, -2), (-11, 11, 21))
    assert all(d.orders == {"QCD": 1, "QED": 2} for d in ds.diagrams)
    with pytest.raises(ProcessError, match="no diagram"):
        generate_diagrams(SM, (2, -2), (-11, 11, 21), Constraints(orders={"QCD": 0}))
    # The WEIGHTED default of g g > t t~ g g prunes every electroweak current.
    assert all(
        d.orders == {"QCD": 4} for d in generate_diagrams(SM, (21, 21), (6, -6, 21, 21)).diagrams
    )


def test_exclusions_and_s_channels() -> None:
    """e+ e- > mu+ mu- / z: the photon alone; > z >: the Z alone; $$ a: the Z alone; and
    e+ e- > e+ e- (Bhabha) $$ a z keeps the two t-channel diagrams."""

    def lines(constraints, initial=(-11, 11), final=(-13, 13)):
        ds = generate_diagrams(SM, initial, final, constraints)
        return sorted(sorted(pdg for _, pdg in d.lines) for d in ds.diagrams)

    assert lines(Constraints(excluded={23})) == [[22]]
    assert lines(Constraints(required_s_channels=[{23}])) == [[23]]
    assert lines(Constraints(required_s_channels=[{22, 23}])) == [[22], [23]]
    assert lines(Constraints(excluded_s_channels={22})) == [[23]]
    bhabha = generate_diagrams(SM, (-11, 11), (-11, 11), Constraints(excluded_s_channels={22, 23}))
    assert len(bhabha.diagrams) == 2
    assert all(p.kind == "t" for d in bhabha.diagrams for p in d.propagators)
    # Excluding the W leaves u d~ > e+ ve without diagrams.
    with pytest.raises(ProcessError):
        generate_diagrams(SM, (2, -1), (-11, 12), Constraints(excluded={24}))
    # Signed s-channels: the W+ of u d~ > e+ ve flows into the final state.
    assert (
        len(
            generate_diagrams(
                SM, (2, -1), (-11, 12), Constraints(required_s_channels=[{24}])
            ).diagrams
        )
        == 1
    )
    with pytest.raises(ProcessError):
        generate_diagrams(SM, (2, -1), (-11, 12), Constraints(required_s_channels=[{-24}]))


def test_decay_chain() -> None:
    """g g > t t~, t > b w+, w+ > e+ ve: the 3 g g > t t~ diagrams, each with the top and
    the W as s-channel lines of its decay products; orders per part."""
    decays = (DecayGroup(6, frozenset({2, 3, 4})), DecayGroup(24, frozenset({3, 4})))
    ds = generate_diagrams(SM, (21, 21), (5, -11, 12, -6), decays=decays)
    assert len(ds.diagrams) == 3
    for d in ds.diagrams:
        assert (frozenset({2, 3, 4}), 6) in d.lines and (frozenset({3, 4}), 24) in d.lines
        assert d.part_orders == ({"QCD": 2}, {"QED": 1}, {"QED": 1})
        s_legs = {p.legs for p in d.propagators if p.kind == "s"}
        assert {(2, 3, 4), (3, 4)} <= s_legs
    # The full process has many more diagrams (b and e+ ve not from the top, ...).
    full = generate_diagrams(SM, (21, 21), (5, -11, 12, -6))
    assert len(full.diagrams) > 3


def _relative_signs(initial, final, constraints=None) -> dict[frozenset, int]:
    ds = generate_diagrams(SM, initial, final, constraints)
    return {frozenset(legs for legs, _ in d.lines): d.fermion_sign for d in ds.diagrams}


def test_fermion_signs() -> None:
    """MadGraph's relative signs from Wick's theorem: Moller e- e- > e- e- (t vs u channel)
    and Bhabha (s vs t) have relative sign -1; u u > u u as well; diagrams that differ only
    by the boson (a, z) have the same sign."""
    no_z = Constraints(excluded={23, 25})
    moller = _relative_signs((11, 11), (11, 11), no_z)
    t_chan, u_chan = frozenset({frozenset({1, 3})}), frozenset({frozenset({1, 2})})
    assert moller[t_chan] * moller[u_chan] == -1
    bhabha = _relative_signs((-11, 11), (-11, 11), no_z)
    s_chan, t_b = frozenset({frozenset({2, 3})}), frozenset({frozenset({1, 3})})
    assert bhabha[s_chan] * bhabha[t_b] == -1
    uu = _relative_signs((2, 2), (2, 2))
    assert uu[t_chan] * uu[u_chan] == -1
    ee = generate_diagrams(SM, (-11, 11), (-13, 13))
    assert ee.diagrams[0].fermion_sign == ee.diagrams[1].fermion_sign
    # One fermion line only (g g > t t~): no relative signs.
    assert len({d.fermion_sign for d in generate_diagrams(SM, (21, 21), (6, -6)).diagrams}) == 1


def test_colour_factors() -> None:
    """Colour factors in the all-outgoing convention: g g > t t~ as MadGraph writes them;
    in g g > g g g every coloured leg appears once and every internal index twice per term;
    the 4-gluon vertex gives three terms (one per colour structure)."""
    ds = generate_diagrams(SM, (21, 21), (6, -6))
    assert ds.colour_reps == (8, 8, 3, -3)
    factors = {frozenset(d.lines): d.terms[0].colour_factor for d in ds.diagrams}
    s_channel = factors[frozenset({(frozenset({2, 3}), 21)})]
    assert sorted(s_channel) == [("T", (-1, 2, 3)), ("f", (0, 1, -1))]
    ds = generate_diagrams(SM, (21, 21), (21, 21, 21))
    for d in ds.diagrams:
        four = sum(len(SM.vertices[w.vertex].particles) == 4 for w in ds.steps(d.number - 1))
        assert len(d.terms) == 3**four
        for term in d.terms:
            count = Counter(i for _, idx in term.colour_factor for i in idx)
            assert all(count[k] == 1 for k in range(5))
            assert all(c == 2 for i, c in count.items() if i < 0)


def test_channels() -> None:
    """Channels as processes.base wants them; a 4-point-vertex diagram gets none; diagrams
    with the same propagator legs, masses and widths share one (photon and gluon)."""
    ds = generate_diagrams(SM, (21, 21), (6, -6))
    kinds = sorted((p.kind, p.legs, p.pdg) for c in ds.channels for p in c.propagators)
    assert kinds == [("s", (2, 3), 21), ("t", (2,), -6), ("t", (3,), 6)]
    gg = generate_diagrams(SM, (21, 21), (21, 21))
    assert len(gg.channels) == 3 and sorted(gg.diagram_channel) == [-1, 0, 1, 2]
    qed = generate_diagrams(SM, (2, -2), (1, -1), Constraints(orders={"QED": 2}))
    assert len(qed.diagrams) == 4 and len(qed.channels) == 3
    by_pdg = {d.lines[0][1]: qed.diagram_channel[i] for i, d in enumerate(qed.diagrams)}
    assert by_pdg[22] == by_pdg[21] != by_pdg[23]
    w = next(c for c in qed.channels if c.propagators[0].kind == "t").propagators[0]
    assert w.mass == pytest.approx(80.419, abs=1e-3) and w.legs == (2,)  # d on u's side
