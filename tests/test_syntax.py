"""MadGraph process syntax (processes.auto.syntax): every element, its errors, expansions.

Expected numbers are derived by hand in the comments (charges in units of e/3) or by a
brute-force enumeration written here from the particle table, independently of the
module's expansion code.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

from evgen.errors import ProcessError
from processes.auto.syntax import (
    Orders,
    ProcessDefinition,
    expand_labels,
    expand_subprocesses,
    parse_definitions,
    parse_process,
)
from processes.particles import PARTICLES, multiparticles, pdg_id


def ids(*names: str) -> tuple[int, ...]:
    return tuple(pdg_id(n) for n in names)


# ------------------------------------------------------------------ core syntax


def test_bare_process_keeps_labels_as_written() -> None:
    d = parse_process("p p > t t~")
    assert d.initial == ("p", "p") and d.final == ("t", "t~")
    assert d.required_s_channels == () and d.excluded == frozenset()
    assert d.orders.is_default and d.decays == () and d.tag is None
    assert not d.is_decay


def test_case_whitespace_and_command_prefixes_are_madgraph_s() -> None:
    # MadGraph lowercases particle names; 'generate' and 'add process' prefix a card line.
    for text in ("P P  >  T T~", "generate p p > t t~", "add process p p>t t~"):
        d = parse_process(text)
        assert (d.initial, d.final) == (("p", "p"), ("t", "t~"))


def test_decay_process_has_one_incoming_particle() -> None:
    d = parse_process("t > b e+ ve")
    assert d.is_decay and d.initial == ("t",)
    assert list(expand_labels(d)) == [(ids("t"), ids("b", "e+", "ve"))]


# ------------------------------------------------------- multiparticle expansion


def brute_force(initial: list[str], final: list[str], table: dict) -> set:
    """Charge-conserving assignments, final states as multisets (MadGraph's rule)."""
    opts = [table.get(lab, (lab,)) for lab in (*initial, *final)]
    out = set()
    for names in itertools.product(*opts):
        q = [Fraction(PARTICLES[n].charge).limit_denominator(3) for n in names]
        if sum(q[: len(initial)]) == sum(q[len(initial) :]):
            ini = tuple(pdg_id(n) for n in names[: len(initial)])
            out.add((ini, tuple(sorted(pdg_id(n) for n in names[len(initial) :]))))
    return out


@pytest.mark.parametrize(
    ("text", "n_flavours", "expected"),
    [
        # g g, plus ordered same-charge q q~ pairs: 4F: up (u c)x(u~ c~) 4 + down 4, two beam
        # orders: 1 + 16 = 17; 5F: 1 + 2 (4 + 9) = 27. (u c~ conserves charge; flavour
        # is the diagram generator's business.)
        ("p p > t t~", 4, 17),
        ("p p > t t~", 5, 27),
        # Ordered triples of partons with charges {0 x1, +2 x2, -1 x2, -2 x2, +1 x2} summing
        # to 0: (0,0,0) 1; (0,+2,-2) 3! * 4 = 24; (0,+1,-1) 24; (+2,-1,-1) 3 * 8 = 24;
        # (-2,+1,+1) 24: 97.
        ("p p > e+ e- j", 4, 97),
        # Final states are multisets: {g g} + 4 {up, up~} + 4 {down, down~} = 9 (17 ordered).
        ("u u~ > j j", 4, 9),
    ],
)
def test_expansion_counts_hand_derived(text: str, n_flavours: int, expected: int) -> None:
    found = list(expand_labels(parse_process(text, n_flavours=n_flavours), n_flavours=n_flavours))
    assert len(found) == expected
    assert len(set(found)) == len(found)


@pytest.mark.parametrize("text", ["p p > e+ e- j j", "p p > l+ vl j", "p p > w+ j j"])
@pytest.mark.parametrize("n_flavours", [4, 5])
def test_expansion_matches_brute_force(text: str, n_flavours: int) -> None:
    d = parse_process(text, n_flavours=n_flavours)
    found = list(expand_labels(d, n_flavours=n_flavours))
    reference = brute_force(list(d.initial), list(d.final), multiparticles(n_flavours))
    assert {(i, tuple(sorted(f))) for i, f in found} == reference
    assert len(found) == len(reference)  # one ordering per final-state multiset


def test_expansion_keeps_label_order_and_both_beam_orders() -> None:
    found = list(expand_labels(parse_process("p p > t t~")))
    assert found[0] == (ids("g", "g"), ids("t", "t~"))
    assert (ids("u", "u~"), ids("t", "t~")) in found
    assert (ids("u~", "u"), ids("t", "t~")) in found
    assert all(f == ids("t", "t~") for _, f in found)


def test_charge_violation_is_reported() -> None:
    with pytest.raises(ProcessError, match=r"'u u > t t~'.*conserves electric charge.*4/3"):
        list(expand_labels(parse_process("u u > t t~")))


# ----------------------------------------------------------- user definitions


def test_define_lines_expand_at_once_like_madgraph() -> None:
    table = parse_definitions(
        [
            "define lep = e+ e- mu+ mu-",
            "# a comment",
            "",
            "define p = p b b~   # 5-flavour proton from the 4-flavour one",
            "define q=p / g",
            "define ll l+ l-",
        ]
    )
    assert table["lep"] == ("e+", "e-", "mu+", "mu-")
    assert table["p"] == multiparticles(4)["p"] + ("b", "b~")
    assert set(table["q"]) == set(multiparticles(5)["p"]) - {"g"}
    assert table["ll"] == ("e+", "mu+", "e-", "mu-")
    # The redefined p gives the 5-flavour count of p p > t t~ with n_flavours=4.
    d = parse_process("p p > t t~", table)
    assert len(list(expand_labels(d, table))) == 27


def test_definitions_dict_may_use_other_labels_in_any_order() -> None:
    defs = {"lepton": ["lep", "vl"], "lep": "l+ l-", "p": ("p", "b", "b~")}
    d = parse_process("p p > lepton lepton", defs)
    subs = {(i, tuple(sorted(f))) for i, f in expand_labels(d, defs)}
    table = dict(multiparticles(4))
    table.update(lepton=("e+", "mu+", "e-", "mu-", "ve", "vm", "vt"), p=table["p"] + ("b", "b~"))
    assert subs == brute_force(["p", "p"], ["lepton", "lepton"], table)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (["define e+ = e+ mu+"], r"'e\+' is a particle of the sm model and cannot be redefined"),
        (["define lep = e+ muon"], r"unknown particle or label 'muon'"),
        (["define lep ="], r"contains no particle"),
        (["generate p p > t t~"], r"expected 'define LABEL = PARTICLES"),
        (["define q = p / p"], r"contains no particle"),
    ],
)
def test_bad_define_lines(lines: list[str], message: str) -> None:
    with pytest.raises(ProcessError, match=message):
        parse_definitions(lines)


def test_bad_definition_dicts() -> None:
    with pytest.raises(ProcessError, match=r"'t' is a particle"):
        parse_process("p p > x", {"t": ["b"]})
    with pytest.raises(ProcessError, match=r"refer to each other \(x1 -> x2 -> x1\)"):
        parse_process("p p > x1", {"x1": ["x2"], "x2": ["x1"]})
    with pytest.raises(ProcessError, match=r"invalid label 'a>b'"):
        parse_process("p p > t t~", {"a>b": ["b"]})


# ----------------------------------------------------- s-channels and exclusions


def test_required_s_channel() -> None:
    d = parse_process("p p > z > e+ e-")
    assert d.final == ("e+", "e-") and d.required_s_channels == (("z",),)
    assert d.required_s_channel_pdgs == (frozenset({23}),)


def test_required_s_channel_alternatives() -> None:
    for text in ("p p > z|a > e+ e-", "p p > a | z > e+ e-"):
        assert parse_process(text).required_s_channels == (("a", "z"),)


def test_required_s_channels_all_of_a_list_or_of_lists_as_madgraph() -> None:
    # MadGraph or-s the lists between '|': (w+ and z) or h  ==  (z or h) and (w+ or h).
    d = parse_process("p p > w+ z | h > e+ e- e+ e-")
    assert set(d.required_s_channels) == {("z", "h"), ("w+", "h")}
    # A label is one alternative per particle: l+ = e+ or mu+.
    assert parse_process("e+ e- > l+ > e+ ve").required_s_channels == (("e+", "mu+"),)
    # Signed: the W- is a different s-channel from the W+.
    assert parse_process("p p > w- > e- ve~").required_s_channel_pdgs == (frozenset({-24}),)


def test_exclusions_and_their_pdg_views() -> None:
    d = parse_process("p p > e+ e- mu+ mu- / h w- $ z $$ a l+")
    assert d.excluded == {"h", "w-"}
    assert d.excluded_pdgs == {25, 24}  # a line of W, whichever direction
    assert d.excluded_s_channels == {"z"}
    assert d.strictly_excluded_s_channels == {"a", "e+", "mu+"}
    assert d.strictly_excluded_s_channel_pdgs == {22, -11, -13}
    spaced = parse_process("p p > e+ e- $ $ a")
    assert spaced.strictly_excluded_s_channels == {"a"} and not spaced.excluded_s_channels
    # Order of the lists does not matter; orders may sit between them.
    assert parse_process("p p > e+ e- $ z QED=2 / h") == parse_process("p p > e+ e- / h $ z QED=2")


# ------------------------------------------------------------------ coupling orders


def test_amplitude_orders_with_madgraph_meaning() -> None:
    d = parse_process("p p > t t~ QCD=2 QED<=1 WEIGHTED==2")
    assert d.orders.amplitude == (("QCD", "<=", 2), ("QED", "<=", 1), ("WEIGHTED", "==", 2))
    assert d.orders.amplitude_constraint("QCD") == ("<=", 2)
    assert parse_process("p p > t t~ QCD==2").orders.amplitude == (("QCD", "==", 2),)
    assert parse_process("p p > t t~ QED > 0").orders.amplitude == (("QED", ">", 0),)


def test_squared_orders_and_aliases() -> None:
    o = parse_process("p p > j j QCD^2==4 QED^2<=2").orders
    assert o.squared == (("QCD", "==", 4), ("QED", "<=", 2)) and o.amplitude == ()
    assert parse_process("p p > j j QED^2=2").orders.squared == (("QED", "<=", 2),)
    assert parse_process("p p > j j QED^2>2").orders.squared == (("QED", ">", 2),)
    # MadGraph's sm aliases: EW is QED; aS^n is QCD^2 with 2n, aEW^n is QED^2 with 2n.
    o = parse_process("p p > j j EW=0 aS==2 aEW<=1").orders
    assert o.amplitude == (("QED", "<=", 0),)
    assert o.squared == (("QCD", "==", 4), ("QED", "<=", 2))


# u u~ > d d~ at tree level: a gluon diagram (QCD 2) and photon/Z diagrams (QED 2).
GLUON = {"QCD": 2}
ELECTROWEAK = {"QED": 2}


def test_amplitude_order_filter() -> None:
    def kept(text: str) -> list[bool]:
        orders = parse_process(f"u u~ > d d~ {text}").orders
        return [orders.allows_amplitude(GLUON), orders.allows_amplitude(ELECTROWEAK)]

    assert kept("") == [True, True]  # default: the engine applies MadGraph's choice
    assert kept("QED=0") == [True, False]
    assert kept("QCD=0") == [False, True]
    assert kept("QED>0") == [False, True]
    assert kept("QCD==2") == [True, False]
    # WEIGHTED = QCD + 2 QED: gluon 2, electroweak 4; MadGraph's default is WEIGHTED<=2.
    assert kept("WEIGHTED<=2") == [True, False]
    assert kept("WEIGHTED<=4") == [True, True]


def test_squared_order_filter_selects_interference_terms() -> None:
    # |M|^2 terms: gluon x gluon (QCD^2 4), gluon x EW (QCD^2 2, QED^2 2), EW x EW (QED^2 4).
    pairs = [(GLUON, GLUON), (GLUON, ELECTROWEAK), (ELECTROWEAK, ELECTROWEAK)]

    def kept(text: str) -> list[bool]:
        orders = parse_process(f"u u~ > d d~ {text}").orders
        return [orders.allows_interference(a, b) for a, b in pairs]

    assert kept("QCD^2==4") == [True, False, False]
    assert kept("QCD^2==2") == [False, True, False]  # the QCD-EW interference alone
    assert kept("QED^2<=2") == [True, True, False]
    assert kept("QED^2>2") == [False, False, True]
    assert kept("aS==1") == [False, True, False]
    assert kept("") == [True, True, True]


def test_max_order_bounds() -> None:
    o = parse_process("p p > j j WEIGHTED<=4 QCD^2<=2").orders
    assert o.max_order("QED") == 2 and o.max_order("QCD") == 2
    assert parse_process("p p > j j QED>1").orders.max_order("QED") is None
    assert Orders().max_order("QCD") is None and Orders().is_default


def test_orders_built_by_hand_are_validated_and_sorted() -> None:
    o = Orders(amplitude=(("QED", "<=", 2), ("QCD", "==", 1)))
    assert o.amplitude == (("QCD", "==", 1), ("QED", "<=", 2)) and str(o) == "QCD==1 QED<=2"
    with pytest.raises(ProcessError, match="operator must be one of"):
        Orders(amplitude=(("QCD", "<", 2),))
    with pytest.raises(ProcessError, match="unknown coupling"):
        Orders(squared=(("QQ", "<=", 2),))


# ------------------------------------------------------------ tags and rejections


def test_process_tag() -> None:
    assert parse_process("p p > t t~ @2").tag == 2
    assert parse_process("p p > t t~ @ 7").tag == 7
    d = parse_process("p p > e+ e- @1 QED=2")  # orders after @N belong to the process
    assert d.tag == 1 and d.orders.amplitude == (("QED", "<=", 2),)
    chain = parse_process("p p > t t~, t > b l+ vl @3")
    assert chain.tag == 3 and chain.decays[0].tag is None


# --------------------------------------------------------------- decay chains


def test_flat_decay_chain() -> None:
    d = parse_process("p p > t t~ QED=0, t > b l+ vl, t~ > b~ j j QCD=0")
    assert d.final == ("t", "t~") and d.orders.amplitude == (("QED", "<=", 0),)
    top, antitop = d.decays
    assert (top.initial, top.final) == (("t",), ("b", "l+", "vl"))
    assert (antitop.initial, antitop.final) == (("t~",), ("b~", "j", "j"))
    assert antitop.orders.amplitude == (("QCD", "<=", 0),) and top.orders.is_default


def test_nested_decay_chain() -> None:
    d = parse_process("p p > t t~, (t > b w+, w+ > l+ vl), (t~ > b~ w-, (w- > j j / a))")
    top, antitop = d.decays
    assert top.final == ("b", "w+") and top.decays[0].final == ("l+", "vl")
    assert antitop.decays[0].initial == ("w-",) and antitop.decays[0].excluded == {"a"}
    # Three levels deep.
    deep = parse_process("p p > h z, (z > t t~, (t > b w+, (w+ > l+ vl)))")
    assert deep.decays[0].decays[0].decays[0].final == ("l+", "vl")


def test_decay_chain_expansion_hand_count() -> None:
    # 17 productions x 6 (b l+ vl: 2 x 3) x 4 ({d s} x {u~ c~}: the multisets of charge -1).
    d = parse_process("p p > t t~, t > b l+ vl, t~ > b~ j j")
    found = list(expand_labels(d))
    assert len(found) == 17 * 6 * 4 == len(set(found))
    # Decay products replace their parent in place.
    assert (ids("g", "g"), ids("b", "e+", "ve", "b~", "d", "u~")) in found


def test_nested_chain_products_in_place() -> None:
    d = parse_process("g g > t t~, (t > b w+, w+ > l+ vl)")
    found = list(expand_labels(d))
    assert len(found) == 2 * 3
    assert found[0] == (ids("g", "g"), ids("b", "e+", "ve", "t~"))
    (sub,) = [s for s in expand_subprocesses(d) if s.external_final() == found[0][1]]
    assert sub.name() == "g g > t t~, (t > b w+, w+ > e+ ve)"
    assert sub.decays[1] is None and sub.decays[0].decays[1].final == ids("e+", "ve")


def test_decays_apply_to_every_occurrence() -> None:
    # Both tops decay; each independently into 6 modes; identical tops with swapped decays
    # are one subprocess: multisets of 2 out of 6 = 21.
    d = parse_process("u u > t t, t > b l+ vl")
    found = list(expand_labels(d))
    assert len(found) == 21
    assert all(len(f) == 6 and f[0] == 5 and f[3] == 5 for _, f in found)
    # One of the two orders of the tops' different decays, not both.
    one = (ids("u", "u"), ids("b", "e+", "ve", "b", "mu+", "vm"))
    other = (ids("u", "u"), ids("b", "mu+", "vm", "b", "e+", "ve"))
    assert (one in found) != (other in found)


def test_multiparticle_labels_in_decays() -> None:
    defs = {"w": ["w+", "w-"], "lep": ["l+", "l-"], "nu": ["vl", "vl~"]}
    d = parse_process("u u~ > w+ w-, w > lep nu", defs)
    assert d.decays[0].initial == ("w",)
    found = list(expand_labels(d, defs))
    # Charge only: W+ -> l+ (nu or nu~): 2 x 6 = 12 modes, W- likewise: 144.
    assert len(found) == 144
    charge = {p.pdg: p.charge for p in PARTICLES.values()}
    for _, final in found:
        assert charge[final[0]] + charge[final[1]] == 1.0  # the W+ products come first
        assert charge[final[2]] + charge[final[3]] == -1.0


def test_decay_charge_violation_names_the_decay() -> None:
    with pytest.raises(ProcessError, match=r"decay 't > b l- vl'.*conserves electric charge"):
        list(expand_labels(parse_process("p p > t t~, t > b l- vl")))


# ------------------------------------------------------------------ round trips

ROUND_TRIPS = [
    "p p > t t~",
    "t > b e+ ve",
    "p p > z > e+ e-",
    "p p > z|a > e+ e-",
    "p p > w+ z | h > e+ e- e+ e-",
    "e+ e- > mu+ mu- / h z $ a $$ w+ w- QED<=2 QCD^2==0",
    "p p > t t~ QCD==2 QED>0 WEIGHTED<=4 QED^2<=2",
    "p p > t t~, t > b l+ vl, t~ > b~ j j",
    "p p > t t~ QED=0, (t > b w+, w+ > l+ vl / a), (t~ > b~ j j QCD=0) @4",
    "p p > h z, (z > t t~, (t > w+ > b w+, (w+ > l+ vl)))",
    "p p > lep lep / l+ @1",
]
DEFS = {"lep": ["e+", "e-"]}


@pytest.mark.parametrize("text", ROUND_TRIPS)
def test_name_round_trip(text: str) -> None:
    d = parse_process(text, DEFS)
    name = d.name()
    assert parse_process(name, DEFS) == d
    assert parse_process(name, DEFS).name() == name
    assert str(d) == name


def test_normalised_names() -> None:
    assert parse_process("P P>T T~ QED=0 @1").name() == "p p > t t~ QED<=0 @1"
    assert parse_process("p p > e+ e- / l+ h $$ z QCD^2=2").name() == (
        "p p > e+ e- / e+ mu+ h $$ z QCD^2<=2"
    )
    assert parse_process("p p > t t~, (t~ > b~ j j)").name() == "p p > t t~, t~ > b~ j j"
    assert ProcessDefinition(("g", "g"), ("t", "t~")).name() == "g g > t t~"


# ------------------------------------------------------------------ errors

ERRORS = [
    # (process, offending token, what the message says)
    ("p p > t t~ [QCD]", "[QCD]", "tree level"),
    ("p p > t t~ [virt=QCD]", "[virt=QCD]", "loop / NLO requests are not supported"),
    ("p p > w+{0} w-", "{0}", "polarised particles"),
    ("p p > z{T} j", "{T}", "not supported yet"),
    ("p p > t t~ QCD<2", "QCD<2", "for 'fewer than 2' write <=1"),
    ("p p > t t~ QED>=1", "QED>=1", "for 'at least 1' write >0"),
    ("p p > t t~ QED!=1", "QED!=1", "is not accepted"),
    ("p p > t t~ QED===1", "QED===1", "is not accepted"),
    ("p p > t t~ QED^2<=-2", "QED^2<=-2", "negative"),
    ("p p > t t~ qcd=2", "qcd=2", "case-sensitive: 'QCD'"),
    ("p p > t t~ GAUGE=2", "GAUGE=2", "unknown coupling order 'GAUGE'"),
    ("p p > t t~ QCD=2 QCD<=1", "QCD<=1", "QCD given twice"),
    ("p p > t t~ QCD ^2==4", "QCD", "malformed coupling order"),
    ("p p > t t~ QED=two", "QED=two", "malformed coupling order"),
    ("p p QED=2 > t t~", "QED=2", "before '>'"),
    ("p p > tt~", "tt~", "unknown particle or label"),
    ("p p > e j", "e", "did you mean"),
    ("p p~ > t t~", "p~", "no 'p~'"),
    ("p p t > t t~", "t", "one (decay) or two (scattering) incoming"),
    ("> t t~", ">", "no incoming particle"),
    ("p p > ", ">", "no outgoing particles"),
    ("p p t t~", "p", "no '>'"),
    ("p p > z > w+ > e+ ve", ">", "a third '>'"),
    ("p p > z| > e+ e-", "|", "particles on both sides"),
    ("p p > e+ e- | z", "|", "alternative required s-channels"),
    ("p p > e+ e- / h | z", "|", "alternative required s-channels only"),
    ("p p > e+ e- /", "/", "expected particle names after '/'"),
    ("p p > e+ e- / h / z", "/", "given twice"),
    ("p p > e+ e- / h > z", ">", "these follow the final state"),
    ("p p > e+ e- QED=2 h", "h", "particle after a coupling order"),
    ("p p > t t~ @", "@", "expected a process number"),
    ("p p > t t~ @x", "x", "expected a process number"),
    ("p p > t t~ @1 / h", "/", "'@N' ends the line"),
    ("p p > t t~ @1, t > b w+", ",", "at the end of the whole line"),
    ("p p > t t~, t > b w+ @1 QED=0", "QED=0", "overall orders"),
    ("p p > t t~, (t > b w+ @1)", "@", "end of the whole line"),
    ("p p > t t~, t > b w+, w+ > l+ vl", "w+", "put it in parentheses with its parent"),
    ("p p > t t~, z > e+ e-", "z", "not in the final state of 'p p > t t~'"),
    ("p p > t t~, (t > b w+, w- > l- vl~)", "w-", "not in the final state of 't > b w+'"),
    ("p p > t t~, t > b w+, t > b j j", "t", "one decay per particle"),
    ("p p > t t~, t > t g", "t", "cannot decay into itself"),
    ("p p > t t~, t t~ > b b~", "t", "a decay has one incoming particle"),
    ("p p > t t~, t > b w+ QED^2<=2", "QED^2<=2", "squared-order"),
    ("p p > t t~,", ",", "expected a decay after ','"),
    ("p p > t t~, (t > b w+", "(", "not closed"),
    ("p p > t t~) ", ")", "without a matching '('"),
    ("p p > (t > b w+) t~", "(", "parentheses group a decay"),
]


@pytest.mark.parametrize(("text", "token", "fragment"), ERRORS)
def test_error_quotes_process_and_points_at_token(text: str, token: str, fragment: str) -> None:
    with pytest.raises(ProcessError) as info:
        parse_process(text)
    message = str(info.value)
    assert message.startswith(f"process {text!r}, at {token!r} (character ")
    assert fragment in message
    assert "\n" not in message
    # The character position points at the token in the line.
    position = int(message.split("(character ")[1].split(")")[0]) - 1
    assert text[position : position + len(token)] == token


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_process(bad: object) -> None:
    with pytest.raises(ProcessError, match="expected a string such as 'p p > t t~'"):
        parse_process(bad)  # type: ignore[arg-type]


def test_error_positions_for_repeated_tokens() -> None:
    # The second '/' (character 17), not the first, is the offending one.
    with pytest.raises(ProcessError, match=r"at '/' \(character 17\)"):
        parse_process("p p > e+ e- / h / z")
    # The second decay of the top, at character 23.
    with pytest.raises(
        ProcessError, match=r"at 't' \(character 23\).*'t > b w\+' \(character 13\)"
    ):
        parse_process("p p > t t~, t > b w+, t > b j j")
