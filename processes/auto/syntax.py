"""MadGraph 5 process syntax for the automatic engine: one ``generate`` line, parsed.

Understood, with MadGraph's meaning (``help generate`` of MG5_aMC, ``extract_process``):

``p p > t t~``
    production: one incoming label (a decay) or two (a scattering), ``>``, the outgoing
    labels. A label is a particle name of the ``sm`` model (:data:`PARTICLES`) or a
    multiparticle label: MadGraph's defaults (:func:`multiparticles`: ``p j l+ l- vl vl~``)
    and the user's ``define`` labels. Names are case-insensitive (MadGraph lowercases them).
``p p > z > e+ e-``
    required s-channel propagators: a diagram is kept only if it has *every* listed
    particle as an s-channel line. ``|`` separates alternatives exactly as in MadGraph
    (``extract_particle_ids``): the lists between ``|`` are or-ed, so ``p p > z|a > e+ e-``
    needs a Z or a photon in the s-channel and ``a b > w+ z | h > ...`` means
    (W+ and Z) or H. :attr:`ProcessDefinition.required_s_channels` holds the same
    condition as a conjunction of alternatives: every entry must be met by one of its
    particles.
``/ h z``
    excluded particles: no internal line (s- or t-channel) of these particles. A particle
    and its antiparticle are one line (MadGraph compares |PDG id|).
``$ z``
    excluded *on-shell* s-channels (MadGraph >= 2.0): the diagrams stay, but the phase-space
    region where the s-channel Z is within ``bwcutoff`` widths of its mass is vetoed.
``$$ z``
    excluded s-channels: every diagram with a Z in an s-channel is removed, on- or
    off-shell (MadGraph's strict form; in general not gauge invariant).
    s-channel particles are signed: ``w+`` is a W+ flowing from the initial to the final
    state; write ``w+ w-`` for both.
``QCD=2 QED<=2 QCD==2 QED>0 QCD^2==4 QED^2<=2``
    coupling orders of the amplitude (``QCD=2`` means at most 2, as in MadGraph) and of the
    squared amplitude (an interference term A_i A_j* has order o_i + o_j); also
    ``WEIGHTED`` and the aliases ``EW aS aEW``; see :class:`Orders` for the exact set.
    Without any, MadGraph's choice applies.
``@1``
    process tag, at the end of the line.
``p p > t t~, t > b l+ vl, t~ > b~ j j``
    decay chains: each decay, after a comma, has one incoming label that must be in the
    final state of its parent (the production, or the first process of its parenthesised
    group: ``p p > t t~, (t > b w+, w+ > l+ vl), (t~ > b~ j j)``); it decays every
    occurrence of that particle. Decays take their own ``/ $ $$`` and amplitude orders.

Rejected with a message: loop requests (``[QCD]``: the engine is tree level), polarised
particles (``w+{0}``), negative (relative) order values, the order operators ``<``, ``>=``,
``!=``, ``===`` (MadGraph rejects them too), squared orders in decays, orders after ``@N``
in a decay chain (MadGraph's "overall orders"), a decay of a particle that is not in its
parent's final state (MadGraph drops it with a warning), two decays of one particle.

Example:
    >>> d = parse_process("p p > t t~ QED=0, (t > b w+, w+ > l+ vl), t~ > b~ j j @1")
    >>> d.final, d.orders.amplitude, d.tag
    (('t', 't~'), (('QED', '<=', 0),), 1)
    >>> [decay.name() for decay in d.decays]
    ['t > b w+, w+ > l+ vl', 't~ > b~ j j']
    >>> d.name()
    'p p > t t~ QED<=0, (t > b w+, w+ > l+ vl), t~ > b~ j j @1'
    >>> len(list(expand_labels(parse_process("p p > t t~"), n_flavours=5)))
    27
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from evgen.errors import ProcessError
from processes.particles import PARTICLES, multiparticles

__all__ = [
    "ORDER_HIERARCHY",
    "Orders",
    "ProcessDefinition",
    "Subprocess",
    "parse_process",
    "parse_definitions",
    "expand_labels",
    "expand_subprocesses",
]

#: The coupling orders of MadGraph's ``sm`` and their hierarchy: the ``WEIGHTED`` order of
#: a diagram is sum(hierarchy * order) = QCD + 2 QED; MadGraph's default process orders
#: are those of the diagrams of lowest WEIGHTED order.
ORDER_HIERARCHY: dict[str, int] = {"QCD": 1, "QED": 2}

_COUPLINGS = (*ORDER_HIERARCHY, "WEIGHTED")
_OPERATORS = ("<=", "==", ">")
# MadGraph's coupling aliases for the sm: EW is QED; aS^n is QCD^2 == 2n, aEW^n QED^2 == 2n.
_ALIASES = {"EW": ("QED", 1), "aS": ("QCD^2", 2), "aEW": ("QED^2", 2)}
_RANK = {name: i for i, name in enumerate(PARTICLES)}
_THIRDS = {name: round(3 * p.charge) for name, p in PARTICLES.items()}
_NAME_OF = {p.pdg: name for name, p in PARTICLES.items()}


# ----------------------------------------------------------------------------- orders


def _allows(operator: str, bound: int, value: int) -> bool:
    if operator == "<=":
        return value <= bound
    if operator == "==":
        return value == bound
    return value > bound


def _normalised(constraints: Iterable[tuple[str, str, int]], what: str) -> tuple:
    out = []
    for item in constraints:
        coupling, operator, value = item
        if coupling not in _COUPLINGS:
            raise ProcessError(
                f"{what} order {coupling!r}: unknown coupling; the sm has {', '.join(_COUPLINGS)}"
            )
        if operator not in _OPERATORS:
            raise ProcessError(
                f"{what} order {coupling}{operator}{value}: operator must be one of "
                f"{', '.join(_OPERATORS)}"
            )
        if not isinstance(value, int) or value < 0:
            raise ProcessError(
                f"{what} order {coupling}{operator}{value}: value must be an integer >= 0"
            )
        out.append((coupling, operator, value))
    couplings = [c for c, _, _ in out]
    if len(set(couplings)) != len(couplings):
        raise ProcessError(f"{what} orders {out}: one constraint per coupling")
    return tuple(sorted(out))


@dataclass(frozen=True)
class Orders:
    """Coupling-order constraints of one process, as MadGraph reads them.

    Attributes:
        amplitude: ``(coupling, operator, value)`` per constrained coupling, sorted by
            coupling: a diagram (amplitude) is kept if its order satisfies every one.
        squared: the same for the squared amplitude: the interference term of diagrams i
            and j has order o_i + o_j per coupling, and is kept if the sum satisfies every
            squared constraint (MadGraph's ``NAME^2`` orders, e.g. ``QCD^2==4`` selects
            the terms of order alpha_s^2 in |M|^2).

    Couplings are ``QCD``, ``QED`` and ``WEIGHTED`` (= QCD + 2 QED, :data:`ORDER_HIERARCHY`);
    operators are ``<=`` (at most; MadGraph's ``=``), ``==`` (exactly) and ``>`` (more
    than). The parser also takes MadGraph's sm aliases ``EW`` (= QED), ``aS`` and ``aEW``
    (``aS==n`` is ``QCD^2==2n``). A coupling without a constraint is unbounded (MadGraph:
    "infinity"; so ``p p > t t~ QCD=2`` keeps the photon and Z diagrams). With no
    constraint at all (:attr:`is_default`), MadGraph's own choice applies, which the engine
    makes: the diagrams of lowest WEIGHTED order (QED as low as possible) for scattering
    processes and decay chains (MadGraph keeps every order for a plain 1 -> n decay).
    MadGraph derives the squared constraint ``2n`` from an
    amplitude ``==n`` or ``>n``; it is implied here (every kept amplitude meets it) and not
    stored.
    """

    amplitude: tuple[tuple[str, str, int], ...] = ()
    squared: tuple[tuple[str, str, int], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "amplitude", _normalised(self.amplitude, "amplitude"))
        object.__setattr__(self, "squared", _normalised(self.squared, "squared"))

    @property
    def is_default(self) -> bool:
        """True when no order was given: the engine applies MadGraph's choice."""
        return not self.amplitude and not self.squared

    def amplitude_constraint(self, coupling: str) -> tuple[str, int] | None:
        """``(operator, value)`` constraining ``coupling`` in each amplitude, or ``None``."""
        return next(((op, v) for c, op, v in self.amplitude if c == coupling), None)

    def squared_constraint(self, coupling: str) -> tuple[str, int] | None:
        """``(operator, value)`` constraining ``coupling`` in |M|^2 terms, or ``None``."""
        return next(((op, v) for c, op, v in self.squared if c == coupling), None)

    @staticmethod
    def _order(orders: Mapping[str, int], coupling: str) -> int:
        if coupling == "WEIGHTED" and "WEIGHTED" not in orders:
            return sum(h * orders.get(c, 0) for c, h in ORDER_HIERARCHY.items())
        return orders.get(coupling, 0)

    def allows_amplitude(self, orders: Mapping[str, int]) -> bool:
        """Whether a diagram of coupling orders ``orders`` (e.g. ``{"QCD": 2}``, missing
        couplings 0) passes every amplitude constraint."""
        return all(_allows(op, v, self._order(orders, c)) for c, op, v in self.amplitude)

    def allows_interference(self, orders_1: Mapping[str, int], orders_2: Mapping[str, int]) -> bool:
        """Whether the |M|^2 term of two diagrams (their order dicts) passes every squared
        constraint; for the square of one diagram pass its dict twice."""
        return all(
            _allows(op, v, self._order(orders_1, c) + self._order(orders_2, c))
            for c, op, v in self.squared
        )

    def max_order(self, coupling: str) -> int | None:
        """An upper bound on ``coupling``'s order in any kept diagram, or ``None``.

        From ``<=``/``==`` amplitude constraints on it or on WEIGHTED (divided by its
        hierarchy) and from ``<=``/``==`` squared ones (orders are >= 0, so one amplitude
        cannot exceed the squared bound); for pruning diagram generation early.
        """
        bounds = []
        for constraints in (self.amplitude, self.squared):
            for c, op, v in constraints:
                if op == ">":
                    continue
                if c == coupling:
                    bounds.append(v)
                elif c == "WEIGHTED" and coupling in ORDER_HIERARCHY:
                    bounds.append(v // ORDER_HIERARCHY[coupling])
        return min(bounds) if bounds else None

    def __str__(self) -> str:
        """MadGraph syntax: ``"QCD<=2 QED^2==4"`` (empty for the default)."""
        amp = [f"{c}{op}{v}" for c, op, v in self.amplitude]
        sq = [f"{c}^2{op}{v}" for c, op, v in self.squared]
        return " ".join(amp + sq)


# ---------------------------------------------------------------- process definition


def _sorted_names(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(names), key=lambda n: _RANK.get(n, len(_RANK))))


def _minimal(sets: Iterable[frozenset[str]]) -> tuple[tuple[str, ...], ...]:
    """The inclusion-minimal sets (absorption), each sorted, in a canonical order."""
    unique = set(sets)
    kept = [s for s in unique if not any(t < s for t in unique)]
    ordered = [_sorted_names(s) for s in kept]
    return tuple(sorted(ordered, key=lambda s: (len(s), [_RANK.get(n, 0) for n in s])))


def _distribute(terms: Sequence[Sequence[frozenset[str]]]) -> tuple[tuple[str, ...], ...]:
    """Turn an or (and) of ands (ors) of sets into the minimal and (or) of ors (ands)."""
    return _minimal(frozenset().union(*choice) for choice in itertools.product(*terms))


@dataclass(frozen=True)
class ProcessDefinition:
    """One parsed process line: labels, s-channel conditions, exclusions, orders, decays.

    Attributes:
        initial: incoming labels as written (lowercased): two for a scattering, one for
            a decay.
        final: outgoing labels as written.
        required_s_channels: every entry must be met by one of its particle names being an
            s-channel line of the diagram (``p p > z|a > e+ e-``: ``(("a", "z"),)``;
            ``p p > w+ z > ...``: ``(("z",), ("w+",))``). Empty: no requirement.
        excluded: particle names (labels expanded) that may not be internal lines (``/``).
        excluded_s_channels: particle names that may not be *on-shell* s-channels (``$``):
            diagrams kept, the resonance region vetoed in phase space.
        strictly_excluded_s_channels: particle names whose s-channel diagrams are removed
            entirely (``$$``).
        orders: coupling-order constraints.
        decays: the decay chains of final-state particles, each a 1 -> n definition with
            its own decays (nested chains).
        tag: MadGraph's process number ``@N``, or ``None``.
    """

    initial: tuple[str, ...]
    final: tuple[str, ...]
    required_s_channels: tuple[tuple[str, ...], ...] = ()
    excluded: frozenset[str] = frozenset()
    excluded_s_channels: frozenset[str] = frozenset()
    strictly_excluded_s_channels: frozenset[str] = frozenset()
    orders: Orders = Orders()
    decays: tuple[ProcessDefinition, ...] = ()
    tag: int | None = None

    @property
    def is_decay(self) -> bool:
        """True for a 1 -> n process (a decay, or a link of a decay chain)."""
        return len(self.initial) == 1

    @property
    def excluded_pdgs(self) -> frozenset[int]:
        """|PDG ids| of the excluded internal lines (``/``): a line is excluded whatever
        its direction."""
        return frozenset(abs(PARTICLES[n].pdg) for n in self.excluded)

    @property
    def excluded_s_channel_pdgs(self) -> frozenset[int]:
        """Signed PDG ids that may not be on-shell s-channels (``$``)."""
        return frozenset(PARTICLES[n].pdg for n in self.excluded_s_channels)

    @property
    def strictly_excluded_s_channel_pdgs(self) -> frozenset[int]:
        """Signed PDG ids that may not be s-channels at all (``$$``)."""
        return frozenset(PARTICLES[n].pdg for n in self.strictly_excluded_s_channels)

    @property
    def required_s_channel_pdgs(self) -> tuple[frozenset[int], ...]:
        """:attr:`required_s_channels` as signed PDG ids: each set needs one member."""
        return tuple(frozenset(PARTICLES[n].pdg for n in alt) for alt in self.required_s_channels)

    def name(self) -> str:
        """The normalised MadGraph string; :func:`parse_process` reads it back to an equal
        definition (with the same label definitions). ``=`` orders print as ``<=``,
        particle sets in the model's order, decays with sub-decays in parentheses."""
        parts = [" ".join(self.initial), ">"]
        if self.required_s_channels:
            singles = [[frozenset([n]) for n in alt] for alt in self.required_s_channels]
            branches = _distribute(singles)
            joiner = "|" if all(len(b) == 1 for b in branches) else " | "
            parts += [joiner.join(" ".join(b) for b in branches), ">"]
        parts.append(" ".join(self.final))
        for mark, names in (
            ("/", self.excluded),
            ("$", self.excluded_s_channels),
            ("$$", self.strictly_excluded_s_channels),
        ):
            if names:
                parts += [mark, *_sorted_names(names)]
        if not self.orders.is_default:
            parts.append(str(self.orders))
        text = " ".join(parts)
        for decay in self.decays:
            text += f", ({decay.name()})" if decay.decays else f", {decay.name()}"
        if self.tag is not None:
            text += f" @{self.tag}"
        return text

    def __str__(self) -> str:
        return self.name()


# ------------------------------------------------------------------------ tokenising

_SPECIAL = ",()/$@[]{}|>"
_ORDER_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*(?:\^2)?)\s*(===|==|<=|>=|!=|=|<|>)\s*(-?\d+)")
_ORDER_END = set(" \t,()/$@[{|")


@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "order", "$$", "[", "{", or the special character itself
    text: str
    start: int


def _fail(text: str, token: _Token | None, message: str) -> ProcessError:
    where = f", at {token.text!r} (character {token.start + 1})" if token is not None else ""
    return ProcessError(f"process {text!r}{where}: {message}")


def _closing(text: str, start: int, close: str) -> int:
    end = text.find(close, start)
    return len(text) if end < 0 else end + 1


def _tokenise(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        match = _ORDER_RE.match(text, i)
        if match and (match.end() == len(text) or text[match.end()] in _ORDER_END):
            tokens.append(_Token("order", match.group(0), i))
            i = match.end()
            continue
        if ch == "$":
            j = i + 1
            while j < len(text) and text[j].isspace():
                j += 1
            if j < len(text) and text[j] == "$":
                tokens.append(_Token("$$", text[i : j + 1], i))
                i = j + 1
                continue
        if ch in "[{":
            end = _closing(text, i, "]" if ch == "[" else "}")
            tokens.append(_Token(ch, text[i:end], i))
            i = end
            continue
        if ch in _SPECIAL:
            tokens.append(_Token(ch, ch, i))
            i += 1
            continue
        j = i
        while j < len(text) and not text[j].isspace() and text[j] not in _SPECIAL:
            j += 1
        tokens.append(_Token("name", text[i:j], i))
        i = j
    return tokens


# ------------------------------------------------------------------------- labels


def _check_label_name(label: str, context: str) -> None:
    if label in PARTICLES:
        raise ProcessError(
            f"{context}: {label!r} is a particle of the sm model and cannot be redefined; "
            "choose another label"
        )
    if not label or any(c.isspace() or c in _SPECIAL or c in "=<^" for c in label):
        raise ProcessError(
            f"{context}: invalid label {label!r}; a label is one word without spaces or "
            f"any of {_SPECIAL}=<^"
        )


def _expand_tokens(
    label: str,
    tokens: Sequence[str],
    lookup: Callable[[str], tuple[str, ...] | None],
    context: str,
) -> tuple[str, ...]:
    """Particle names of a definition: tokens are names or labels; after ``/`` they are
    removed (MadGraph's ``define q = p / g``)."""
    names: list[str] = []
    removing = False
    for raw in tokens:
        token = raw.lower()
        if token == "/":
            removing = True
            continue
        expansion = (token,) if token in PARTICLES else lookup(token)
        if expansion is None:
            raise ProcessError(
                f"{context}: unknown particle or label {raw!r}{_suggestion(token, {})}"
            )
        if removing:
            names = [n for n in names if n not in expansion]
        else:
            names += [n for n in expansion if n not in names]
    if not names:
        raise ProcessError(f"{context}: the label {label!r} contains no particle")
    return tuple(names)


def _label_table(
    definitions: Mapping[str, Sequence[str] | str] | None, n_flavours: int
) -> dict[str, tuple[str, ...]]:
    """MadGraph's default labels overridden by the user's, all expanded to particle names.

    A definition may use other labels (in any order; a cycle is an error) and its own
    label, which then means the default (``{"p": ["p", "b", "b~"]}``).
    """
    defaults = multiparticles(n_flavours)
    if not definitions:
        return dict(defaults)
    user: dict[str, list[str]] = {}
    for label, value in definitions.items():
        key = str(label).lower()
        _check_label_name(key, f"definition of {label!r}")
        user[key] = value.split() if isinstance(value, str) else [str(v) for v in value]
    resolved: dict[str, tuple[str, ...]] = {}

    def resolve(label: str, stack: tuple[str, ...]) -> tuple[str, ...]:
        if label in resolved:
            return resolved[label]
        if label in stack:
            chain = " -> ".join((*stack, label))
            raise ProcessError(f"definition of {label!r}: labels refer to each other ({chain})")

        def lookup(token: str) -> tuple[str, ...] | None:
            if token == label or token not in user:
                return defaults.get(token)
            return resolve(token, (*stack, label))

        resolved[label] = _expand_tokens(label, user[label], lookup, f"definition of {label!r}")
        return resolved[label]

    table = dict(defaults)
    for label in user:
        table[label] = resolve(label, ())
    return table


def _suggestion(token: str, table: Mapping[str, tuple[str, ...]]) -> str:
    if token == "p~":
        return "; 'p' already holds quarks and antiquarks (no 'p~' in MadGraph)"
    if token.startswith("--"):
        return "; command options ('--...') are not part of a process"
    candidates = [*PARTICLES, *table]
    close = difflib.get_close_matches(token, candidates, n=3, cutoff=0.5)
    close += [c for c in candidates if c.rstrip("+-~") == token and c not in close]
    hint = f"; did you mean {' or '.join(repr(c) for c in close[:3])}?" if close else ""
    return (
        f"{hint} valid particles: {' '.join(PARTICLES)}; labels: {' '.join(table) or '-'}"
        if table
        else hint
    )


# ------------------------------------------------------------------------ parsing


@dataclass
class _Segment:
    """The tokens of one process (no decays), sorted into their roles."""

    initial: list[_Token] = field(default_factory=list)
    schannels: list[list[_Token]] | None = None  # or-ed branches
    final: list[_Token] = field(default_factory=list)
    restrictions: dict[str, tuple[_Token, list[_Token]]] = field(default_factory=dict)
    orders: list[_Token] = field(default_factory=list)


_STOP = {",", ")", "@"}


class _Parser:
    def __init__(self, text: str, table: dict[str, tuple[str, ...]]) -> None:
        self.text = text
        self.table = table
        self.tokens = _tokenise(text)
        self.pos = 0

    # --- helpers
    def fail(self, token: _Token | None, message: str) -> ProcessError:
        return _fail(self.text, token, message)

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def names(self, token: _Token) -> tuple[str, ...]:
        label = token.text.lower()
        if label in self.table:
            return self.table[label]
        if label in PARTICLES:
            return (label,)
        raise self.fail(token, f"unknown particle or label{_suggestion(label, self.table)}")

    # --- grammar
    def parse(self) -> ProcessDefinition:
        toks = self.tokens
        if toks and toks[0].kind == "name" and toks[0].text.lower() == "generate":
            self.pos = 1
        elif len(toks) > 1 and [t.text.lower() for t in toks[:2]] == ["add", "process"]:
            self.pos = 2
        if self.peek() is None:
            raise self.fail(None, "empty process; expected e.g. 'p p > t t~'")
        defn = self.chain(link=False)
        token = self.peek()
        if token is not None and token.kind == ")":
            raise self.fail(token, "')' without a matching '('")
        if token is not None and token.kind == "@":
            defn = self.tag(defn, token)
        return defn

    def tag(self, defn: ProcessDefinition, at: _Token) -> ProcessDefinition:
        self.pos += 1
        number = self.peek()
        if number is None or number.kind != "name" or not number.text.isdigit():
            raise self.fail(number or at, "expected a process number after '@', e.g. '@1'")
        self.pos += 1
        rest = self.tokens[self.pos :]
        for token in rest:
            if token.kind == ",":
                raise self.fail(token, "'@N' goes at the end of the whole line, after the decays")
            if token.kind != "order":
                raise self.fail(
                    token, "nothing but coupling orders may follow '@N'; '@N' ends the line"
                )
        if rest and defn.decays:
            raise self.fail(
                rest[0],
                "coupling orders after '@N' (MadGraph's overall orders of a decay chain) "
                "are not supported; give the orders of each process before its ',' or '@'",
            )
        orders = defn.orders
        if rest:
            seg_orders = self.orders(rest, link=False)
            both = {c for c, _, _ in orders.amplitude} & {c for c, _, _ in seg_orders.amplitude}
            both |= {c for c, _, _ in orders.squared} & {c for c, _, _ in seg_orders.squared}
            if both:
                raise self.fail(rest[0], f"coupling order {sorted(both)[0]} given twice")
            orders = Orders(
                orders.amplitude + seg_orders.amplitude, orders.squared + seg_orders.squared
            )
        return replace(defn, orders=orders, tag=int(number.text))

    def chain(self, link: bool) -> ProcessDefinition:
        """A process and its comma-separated decays (flat or parenthesised groups);
        ``link``: the process is itself a decay."""
        parent, segment = self.process(link)
        decays: list[ProcessDefinition] = []
        heads: list[tuple[_Token, frozenset[str], ProcessDefinition]] = []
        while (token := self.peek()) is not None and token.kind == ",":
            self.pos += 1
            start = self.peek()
            if start is None or start.kind in _STOP:
                raise self.fail(start or token, "expected a decay after ',', e.g. 't > b w+'")
            if start.kind == "(":
                self.pos += 1
                decay = self.chain(link=True)
                close = self.peek()
                if close is not None and close.kind == "@":
                    raise self.fail(close, "'@N' goes at the end of the whole line")
                if close is None or close.kind != ")":
                    raise self.fail(close or start, "'(' is not closed by ')'")
                self.pos += 1
            else:
                decay = self.process(link=True)[0]
            head = self._decay_head(start)
            if len(decay.initial) != 1:
                raise self.fail(
                    head, f"a decay has one incoming particle, got {len(decay.initial)}"
                )
            heads.append(self.check_decay(parent, segment, decay, head, heads))
            decays.append(decay)
        return replace(parent, decays=tuple(decays)) if decays else parent

    def _decay_head(self, start: _Token) -> _Token:
        i = self.tokens.index(start)
        while self.tokens[i].kind == "(":
            i += 1
        return self.tokens[i]

    def check_decay(
        self,
        parent: ProcessDefinition,
        segment: _Segment,
        decay: ProcessDefinition,
        head: _Token,
        siblings: list[tuple[_Token, frozenset[str], ProcessDefinition]],
    ) -> tuple[_Token, frozenset[str], ProcessDefinition]:
        names = frozenset(self.names(head))
        available = {n for t in segment.final for n in self.names(t)}
        if not names & available:
            nested = " for a decay of a decay product, put it in parentheses with its parent: "
            raise self.fail(
                head,
                f"{head.text!r} is not in the final state of {parent.name()!r} (it has "
                f"{' '.join(parent.final)}); a decay must decay a particle of its parent's "
                f"final state;{nested}'p p > t t~, (t > b w+, w+ > l+ vl)'",
            )
        for other, other_names, other_decay in siblings:
            if names & other_names & available:
                both = " ".join(_sorted_names(names & other_names & available))
                raise self.fail(
                    head,
                    f"{both} already decays in {other_decay.name()!r} (character "
                    f"{other.start + 1}); one decay per particle",
                )
        if head.text.lower() in decay.final:
            raise self.fail(head, f"{head.text!r} cannot decay into itself")
        return head, names, decay

    def process(self, link: bool) -> tuple[ProcessDefinition, _Segment]:
        """One process without decays, up to ',' ')' '@' or the end; ``link``: a decay."""
        seg = _Segment()
        section = "initial"  # initial -> final (-> final after a second '>') -> restrictions
        arrows: list[_Token] = []
        bars: list[_Token] = []
        current: list[_Token] | None = None
        first = self.peek()
        while (token := self.peek()) is not None and token.kind not in _STOP:
            kind = token.kind
            if kind == "(":
                raise self.fail(
                    token,
                    "unexpected '('; parentheses group a decay with its own decays after a "
                    "comma: 'p p > t t~, (t > b w+, w+ > l+ vl)'",
                )
            if kind == "[":
                raise self.fail(
                    token,
                    "loop / NLO requests are not supported: evgen's automatic engine is tree "
                    "level; remove the brackets for the leading-order process",
                )
            if kind == "{":
                raise self.fail(
                    token,
                    "polarised particles (MadGraph's 'w+{0}', 'z{T}') are not supported yet; "
                    "remove the braces",
                )
            if kind == "]" or kind == "}":
                raise self.fail(token, f"{kind!r} without its opening bracket")
            if kind == ">":
                if section == "restrictions":
                    raise self.fail(
                        token,
                        "'>' after '/', '$' or a coupling order; these follow the final state",
                    )
                if section == "initial":
                    if not seg.initial:
                        raise self.fail(token, "no incoming particle before '>'")
                    section = "final"
                elif seg.schannels is None:
                    if not seg.final:
                        raise self.fail(
                            token, "expected required s-channel particles between the two '>'"
                        )
                    branches: list[list[_Token]] = [[]]
                    for t in seg.final:
                        if t.kind == "|":
                            branches.append([])
                        else:
                            branches[-1].append(t)
                    if any(not b for b in branches):
                        raise self.fail(bars[0], "'|' needs particles on both sides, e.g. 'z|a'")
                    seg.schannels, seg.final, bars = branches, [], []
                else:
                    raise self.fail(
                        token,
                        "a third '>': write 'a b > x > c d' (x: required s-channel particles)",
                    )
                arrows.append(token)
            elif kind in ("/", "$", "$$"):
                if section == "initial":
                    raise self.fail(token, f"{kind!r} before '>'; it follows the final state")
                if kind in seg.restrictions:
                    raise self.fail(token, f"{kind!r} given twice; list all its particles once")
                section = "restrictions"
                current = []
                seg.restrictions[kind] = (token, current)
            elif kind == "order":
                if section == "initial":
                    raise self.fail(token, "coupling order before '>'; it follows the final state")
                section = "restrictions"
                current = None
                seg.orders.append(token)
            elif kind == "|":
                if section != "final":
                    raise self.fail(
                        token,
                        "'|' separates alternative required s-channels only: 'p p > z|a > e+ e-'",
                    )
                bars.append(token)
                seg.final.append(token)
            else:  # a name
                if any(c in token.text for c in "=<^") or token.text in (*_COUPLINGS, *_ALIASES):
                    raise self.fail(
                        token,
                        "malformed coupling order; expected NAME OPERATOR INTEGER, e.g. "
                        "'QCD<=2' or 'QED^2==4'",
                    )
                if section == "initial":
                    seg.initial.append(token)
                elif section == "final":
                    seg.final.append(token)
                elif current is None:
                    raise self.fail(
                        token,
                        "particle after a coupling order; '/ $ $$' lists and orders follow "
                        "the final state",
                    )
                else:
                    current.append(token)
            self.pos += 1
        end = self.peek()
        if first is None or first is end:
            raise self.fail(end, "expected a process, e.g. 'p p > t t~'")
        if section == "initial":
            raise self.fail(
                first, "no '>' between the incoming and outgoing particles, e.g. 'p p > t t~'"
            )
        if bars:
            raise self.fail(
                bars[0], "'|' separates alternative required s-channels: 'p p > z|a > e+ e-'"
            )
        if not seg.final:
            raise self.fail(arrows[-1], "no outgoing particles after '>'")
        if len(seg.initial) > 2:
            raise self.fail(
                seg.initial[2],
                f"expected one (decay) or two (scattering) incoming particles, got "
                f"{len(seg.initial)}",
            )
        for mark, (token, names) in seg.restrictions.items():
            if not names:
                raise self.fail(token, f"expected particle names after {mark!r}, e.g. '{mark} h'")
        return self.build(seg, link), seg

    def build(self, seg: _Segment, link: bool) -> ProcessDefinition:
        for token in (*seg.initial, *seg.final):
            self.names(token)  # unknown labels fail here

        def expanded(mark: str) -> frozenset[str]:
            if mark not in seg.restrictions:
                return frozenset()
            return frozenset(n for t in seg.restrictions[mark][1] for n in self.names(t))

        required: tuple[tuple[str, ...], ...] = ()
        if seg.schannels is not None:
            required = _distribute(
                [[frozenset(self.names(t)) for t in branch] for branch in seg.schannels]
            )
        return ProcessDefinition(
            initial=tuple(t.text.lower() for t in seg.initial),
            final=tuple(t.text.lower() for t in seg.final),
            required_s_channels=required,
            excluded=expanded("/"),
            excluded_s_channels=expanded("$"),
            strictly_excluded_s_channels=expanded("$$"),
            orders=self.orders(seg.orders, link=link),
        )

    def orders(self, tokens: Sequence[_Token], link: bool) -> Orders:
        amplitude: dict[str, tuple[str, int]] = {}
        squared: dict[str, tuple[str, int]] = {}
        for token in tokens:
            match = _ORDER_RE.fullmatch(token.text)
            assert match is not None  # the tokeniser made it from this pattern
            name, operator, value = match.group(1), match.group(2), int(match.group(3))
            if operator in ("<", ">=", "!=", "==="):
                better = {
                    "<": f" (for 'fewer than {value}' write <={value - 1})",
                    ">=": f" (for 'at least {value}' write >{value - 1})",
                }.get(operator, "")
                raise self.fail(
                    token,
                    f"operator {operator!r} is not accepted (MadGraph neither): use '<=' or "
                    f"'=' (at most), '==' (exactly) or '>' (more than){better}",
                )
            if value < 0:
                raise self.fail(
                    token,
                    "negative (relative to leading order) order values are not supported; "
                    "give the absolute order, e.g. 'QED^2<=4'",
                )
            factor = 1
            if name in _ALIASES:
                name, factor = _ALIASES[name]
            is_squared = name.endswith("^2")
            base = name[:-2] if is_squared else name
            if base not in _COUPLINGS:
                upper = [c for c in (*_COUPLINGS, *_ALIASES) if c.lower() == base.lower()]
                hint = f" (orders are case-sensitive: {upper[0]!r})" if upper else ""
                raise self.fail(
                    token,
                    f"unknown coupling order {base!r}{hint}; the sm has "
                    f"{', '.join(_COUPLINGS)} (and the aliases EW = QED, aS = QCD^2/2, "
                    "aEW = QED^2/2)",
                )
            target = squared if is_squared else amplitude
            if base in target:
                raise self.fail(token, f"{base}{'^2' if is_squared else ''} given twice")
            if is_squared and link:
                raise self.fail(
                    token,
                    "decays in a chain cannot have squared-order constraints (MadGraph "
                    "rejects them too); use amplitude orders such as 'QED<=2'",
                )
            target[base] = ("<=" if operator == "=" else operator, value * factor)
        return Orders(
            tuple((c, op, v) for c, (op, v) in amplitude.items()),
            tuple((c, op, v) for c, (op, v) in squared.items()),
        )


def parse_process(
    text: str,
    definitions: Mapping[str, Sequence[str]] | None = None,
    n_flavours: int = 4,
) -> ProcessDefinition:
    """Parse one MadGraph process line (optionally preceded by ``generate`` or
    ``add process``) into a :class:`ProcessDefinition`.

    Args:
        text: e.g. ``"p p > t t~ QED=0, (t > b w+, w+ > l+ vl), t~ > b~ j j @1"``.
        definitions: user multiparticle labels, label -> particle names or labels (as
            :func:`parse_definitions` returns, or written by hand: ``{"lep": ["l+", "l-"]}``);
            they override MadGraph's defaults of the same name.
        n_flavours: 4 or 5, the content of ``p`` and ``j`` (:func:`multiparticles`).

    Raises:
        ProcessError: quoting the line and the offending token with its position, and
            saying what is expected there (see the module docstring for the rules).
    """
    if not isinstance(text, str) or not text.strip():
        raise ProcessError(f"process: expected a string such as 'p p > t t~', got {text!r}")
    table = _label_table(definitions, n_flavours)
    return _Parser(text, table).parse()


def parse_definitions(lines: Iterable[str], n_flavours: int = 4) -> dict[str, tuple[str, ...]]:
    """Read MadGraph ``define`` lines into labels -> particle names.

    ``define lep = e+ e- mu+ mu-`` (the ``=`` is optional); a definition may use particle
    names, MadGraph's default labels and labels defined on earlier lines, which are
    expanded at once as in MadGraph (``define p = p b b~`` adds the b quarks to the
    current ``p``); ``/`` removes what follows (``define q = p / g``). Blank lines and
    ``#`` comments are skipped.

    Returns:
        Only the labels defined here, each as a tuple of particle names in order.

    Raises:
        ProcessError: for a line that is not a definition, a label that is a particle name,
            an unknown particle or an empty definition, quoting the line.
    """
    table = dict(multiparticles(n_flavours))
    out: dict[str, tuple[str, ...]] = {}
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        context = f"define line {raw.strip()!r}"
        if words[0].lower() != "define" or len(words) < 2:
            raise ProcessError(f"{context}: expected 'define LABEL = PARTICLES ...'")
        if "=" in words[1] and words[1] != "=":
            label, _, first = words[1].partition("=")
            rest = ([first] if first else []) + words[2:]
        else:
            label, rest = words[1], words[2:]
            if rest and rest[0] == "=":
                rest = rest[1:]
            elif rest and rest[0].startswith("="):
                rest = [rest[0][1:], *rest[1:]]
        label = label.lower()
        _check_label_name(label, context)
        out[label] = table[label] = _expand_tokens(label, rest, table.get, context)
    return out


# ---------------------------------------------------------------------- expansion


@dataclass(frozen=True)
class Subprocess:
    """One flavour assignment of a :class:`ProcessDefinition`, with its decays.

    Attributes:
        initial: PDG ids of the incoming particles (the decaying one for a decay).
        final: PDG ids of the outgoing particles, in the order of the labels.
        decays: per outgoing particle, its decay (a 1 -> n :class:`Subprocess`) or
            ``None`` if it does not decay.
    """

    initial: tuple[int, ...]
    final: tuple[int, ...]
    decays: tuple[Subprocess | None, ...]

    def external_final(self) -> tuple[int, ...]:
        """The outgoing particles after all decays: each decaying particle replaced in
        place by its (recursively decayed) products."""
        out: list[int] = []
        for pdg, decay in zip(self.final, self.decays, strict=True):
            out.extend(decay.external_final() if decay is not None else (pdg,))
        return tuple(out)

    def name(self) -> str:
        """MadGraph string of this flavour assignment, e.g. ``"u u~ > t t~, t > b e+ ve"``."""
        text = " ".join(_NAME_OF[i] for i in self.initial) + " > "
        text += " ".join(_NAME_OF[i] for i in self.final)
        seen = []
        for decay in self.decays:
            if decay is not None and decay not in seen:
                seen.append(decay)
                text += f", ({decay.name()})" if any(decay.decays) else f", {decay.name()}"
        return text


def _charge(pdgs: Iterable[int]) -> int:
    """Electric charge in units of e/3."""
    return sum(_THIRDS[_NAME_OF[i]] for i in pdgs)


def _expand(
    defn: ProcessDefinition, table: Mapping[str, tuple[str, ...]], parent: int | None
) -> list[Subprocess]:
    def pdgs(label: str) -> tuple[int, ...]:
        names = table.get(label, (label,))
        for n in names:
            if n not in PARTICLES:
                raise ProcessError(
                    f"process {defn.name()!r}: unknown particle or label {label!r}; pass the "
                    "definitions the process was parsed with"
                )
        return tuple(PARTICLES[n].pdg for n in names)

    initial = [(parent,)] if parent is not None else [pdgs(lab) for lab in defn.initial]
    final = [pdgs(lab) for lab in defn.final]
    decay_of: dict[int, ProcessDefinition] = {}
    for decay in defn.decays:
        for pdg in pdgs(decay.initial[0]):
            decay_of.setdefault(pdg, decay)
    modes: dict[int, list[Subprocess]] = {}  # decay modes per decaying particle
    ranks: dict[int, dict[Subprocess, int]] = {}
    out: dict[Subprocess, None] = {}
    seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
    for ini in itertools.product(*initial):
        charge_in = _charge(ini)
        for fin in itertools.product(*final):
            key = (ini, tuple(sorted(fin)))
            if key in seen or _charge(fin) != charge_in:
                continue
            seen.add(key)
            options: list[Sequence[Subprocess | None]] = []
            for pdg in fin:
                if pdg not in decay_of:
                    options.append((None,))
                    continue
                if pdg not in modes:
                    modes[pdg] = _expand(decay_of[pdg], table, pdg)
                    ranks[pdg] = {sub: i for i, sub in enumerate(modes[pdg])}
                options.append(modes[pdg])
            for choice in itertools.product(*options):
                # Identical decaying particles: one order of their decays (a set, not a list).
                decays = list(choice)
                for pdg in set(fin) & set(modes):
                    slots = [k for k, p in enumerate(fin) if p == pdg]
                    chosen = [s for k in slots if (s := decays[k]) is not None]
                    ordered = sorted(chosen, key=ranks[pdg].__getitem__)
                    for k, sub in zip(slots, ordered, strict=True):
                        decays[k] = sub
                out.setdefault(Subprocess(ini, fin, tuple(decays)), None)
    for decay in defn.decays:
        asked = [pdg for pdg in modes if decay_of[pdg] is decay]
        if asked and not any(modes[pdg] for pdg in asked):
            raise ProcessError(
                f"decay {decay.name()!r}: no assignment of its labels conserves electric "
                f"charge for {' '.join(_NAME_OF[p] for p in asked)}"
            )
    return list(out)


def expand_subprocesses(
    defn: ProcessDefinition,
    definitions: Mapping[str, Sequence[str]] | None = None,
    n_flavours: int = 4,
) -> Iterator[Subprocess]:
    """Every flavour assignment of ``defn`` that conserves electric charge, with decays.

    Labels are expanded with MadGraph's defaults for ``n_flavours`` and ``definitions``
    (pass those the process was parsed with). As in MadGraph, assignments whose final
    states differ only by order are one subprocess (the first in label order is kept),
    while ``u u~`` and ``u~ u`` are two; a decay applies to every occurrence of its
    particle, each occurrence decaying independently (identical particles with swapped
    decays count once). Only charge is checked here; other conservation laws are the
    diagram generator's (no diagram, no subprocess).

    Raises:
        ProcessError: if no assignment conserves charge (naming the decay at fault).
    """
    table = _label_table(definitions, n_flavours)
    subprocesses = _expand(defn, table, None)
    if not subprocesses:
        detail = ""
        if all(lab in PARTICLES and lab not in table for lab in (*defn.initial, *defn.final)):
            q_in = sum(_THIRDS[lab] for lab in defn.initial)
            q_out = sum(_THIRDS[lab] for lab in defn.final)
            detail = f" (charge in: {q_in}/3 e, out: {q_out}/3 e)"
        raise ProcessError(
            f"process {defn.name()!r}: no assignment of particles to its labels conserves "
            f"electric charge{detail}"
        )
    yield from subprocesses


def expand_labels(
    defn: ProcessDefinition,
    definitions: Mapping[str, Sequence[str]] | None = None,
    n_flavours: int = 4,
) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
    """PDG ids ``(initial, final)`` of every charge-conserving flavour assignment.

    ``final`` is the final state after the decays (:meth:`Subprocess.external_final`:
    decay products in place of their parent), so ``p p > t t~, t > b l+ vl`` gives
    ``((21, 21), (5, -11, 12, -6))`` among others. De-duplicated; see
    :func:`expand_subprocesses` for the rules.
    """
    seen: set[tuple[tuple[int, ...], tuple[int, ...]]] = set()
    for sub in expand_subprocesses(defn, definitions, n_flavours):
        key = (sub.initial, sub.external_final())
        if key not in seen:
            seen.add(key)
            yield key
