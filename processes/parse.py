"""Parse a MadGraph process string such as ``"p p > t t~"`` into particle labels.

Only the core syntax is understood: ``a b > c d ...`` with particle names and the
multiparticle labels of :func:`processes.particles.multiparticles`. Decay chains (``,``
and parentheses), required or excluded s-channels (``a > b > c``, ``$``, ``$$``),
excluded particles (``/``), coupling orders (``QED=2``), process tags (``@1``),
polarisations (``{0}``) and loop requests (``[QCD]``) raise :class:`ProcessError`.

Example:
    >>> spec = parse("p p > t t~")
    >>> spec.incoming, spec.outgoing
    (('p', 'p'), ('t', 't~'))
    >>> len(list(spec.combinations(n_flavours=4)))
    81
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from evgen.errors import ProcessError
from processes.particles import MULTIPARTICLE_LABELS, PARTICLES, multiparticles

__all__ = ["ProcessSpec", "parse", "process_name"]

# Syntax this library does not handle yet, with what MadGraph means by it.
_UNSUPPORTED = (
    (",", "decay chains (',')"),
    ("(", "decay chains in parentheses"),
    (")", "decay chains in parentheses"),
    ("$", "s-channel exclusions ('$', '$$')"),
    ("/", "particle exclusions ('/')"),
    ("=", "coupling-order constraints (e.g. 'QED=2')"),
    ("^", "squared coupling orders (e.g. 'QCD^2==4')"),
    ("@", "process tags ('@N')"),
    ("[", "loop / NLO requests ('[QCD]')"),
    ("{", "polarised particles ('w+{0}')"),
    ("|", "alternative s-channels ('|')"),
)


@dataclass(frozen=True)
class ProcessSpec:
    """A parsed process: labels (particle names or multiparticle labels) in order.

    Attributes:
        incoming: the two incoming labels, e.g. ``("p", "p")``.
        outgoing: the outgoing labels, e.g. ``("t", "t~")``.
    """

    incoming: tuple[str, ...]
    outgoing: tuple[str, ...]

    @property
    def name(self) -> str:
        """The normalised process string, single-spaced: ``"p p > t t~"``."""
        return process_name(self.incoming, self.outgoing)

    @property
    def has_multiparticles(self) -> bool:
        """True if any label is a multiparticle label (``p``, ``j``, ``l+`` ...)."""
        return any(lab in MULTIPARTICLE_LABELS for lab in (*self.incoming, *self.outgoing))

    def combinations(
        self, n_flavours: int = 4
    ) -> Iterator[tuple[tuple[str, ...], tuple[str, ...]]]:
        """Every assignment of particle names to the labels, in label order.

        Yields (incoming names, outgoing names); combinations are not filtered for
        conservation laws or duplicates.
        """
        labels = multiparticles(n_flavours)
        options = [labels.get(lab, (lab,)) for lab in (*self.incoming, *self.outgoing)]
        n_in = len(self.incoming)
        for names in itertools.product(*options):
            yield tuple(names[:n_in]), tuple(names[n_in:])


def process_name(
    incoming: tuple[str, ...] | list[str], outgoing: tuple[str, ...] | list[str]
) -> str:
    """Join labels into MadGraph syntax: ``("u", "u~"), ("e+", "e-")`` -> ``"u u~ > e+ e-"``."""
    return f"{' '.join(incoming)} > {' '.join(outgoing)}"


def parse(name: str) -> ProcessSpec:
    """Parse ``"a b > c d ..."`` into a :class:`ProcessSpec`.

    Raises:
        ProcessError: for unsupported syntax (naming it), a missing or repeated ``>``,
            a number of incoming particles other than two, no outgoing particle, or an
            unknown particle name (naming the token and listing the valid names).
    """
    if not isinstance(name, str) or not name.strip():
        raise ProcessError(f"process: expected a string such as 'p p > t t~', got {name!r}")
    for char, what in _UNSUPPORTED:
        if char in name:
            raise ProcessError(
                f"process {name!r}: {what} are not supported yet; "
                "write the bare process, e.g. 'p p > t t~'"
            )
    sides = name.split(">")
    if len(sides) == 1:
        raise ProcessError(f"process {name!r}: no '>' between incoming and outgoing particles")
    if len(sides) > 2:
        raise ProcessError(
            f"process {name!r}: required s-channel propagators ('a b > x > c d') "
            "are not supported yet; write 'a b > c d'"
        )
    incoming, outgoing = (tuple(side.split()) for side in sides)
    if len(incoming) != 2:
        raise ProcessError(
            f"process {name!r}: expected two incoming particles, got {len(incoming)}"
        )
    if not outgoing:
        raise ProcessError(f"process {name!r}: no outgoing particles after '>'")
    for token in (*incoming, *outgoing):
        if token not in PARTICLES and token not in MULTIPARTICLE_LABELS:
            raise ProcessError(
                f"process {name!r}: unknown particle {token!r}; valid names: "
                f"{' '.join(PARTICLES)}; multiparticle labels: {' '.join(MULTIPARTICLE_LABELS)}"
            )
    return ProcessSpec(incoming, outgoing)
