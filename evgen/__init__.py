"""evgen: a MadGraph-style LHC event generator and unfolding application on PyTorch.

The public API, re-exported here:

* cards: :class:`RunCard`, :func:`load_card`, :func:`parse_card`;
* a run: :func:`prepare` (card -> checked set-up), :func:`execute` (integrate, generate,
  write), :func:`run_card` (both), :class:`RunResult` (with a :class:`ChannelResult`
  per integration channel);
* physics inputs: :class:`SMParameters` (with an optional :class:`ZPrime` and its
  :class:`ZPrimeCouplings`), :func:`load_pdf`, :class:`PDFSet`, :class:`AlphaS`;
* events and files: :class:`Events`, :class:`RunInfo`, :func:`write_lhe`,
  :func:`write_root`, :func:`read_root`, :func:`unweight`;
* integration: :class:`Vegas`, :class:`Estimate`;
* errors: :class:`EvgenError` and its subclasses.

Matrix elements live in the sibling package ``processes`` (``processes.load``).
"""

__version__ = "0.1.0"

from evgen.alphas import AlphaS
from evgen.card import RunCard, load_card, parse_card
from evgen.errors import CardError, EvgenError, OutputError, PDFError, ProcessError
from evgen.events import Events, ProcessInfo, RunInfo
from evgen.integrators import Estimate, Vegas
from evgen.io import read_root, write_lhe, write_root
from evgen.params import SMParameters, ZPrime, ZPrimeCouplings
from evgen.pdf import PDFSet, load_pdf
from evgen.unweight import unweight

# The run machinery imports the ``processes`` package, which imports evgen's modules:
# loaded on first use so that either package can be imported first.
_LAZY = {
    "ChannelResult": "evgen.run",
    "RunResult": "evgen.run",
    "execute": "evgen.run",
    "run_card": "evgen.run",
    "prepare": "evgen.setup",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'evgen' has no attribute {name!r}")


__all__ = [
    "AlphaS",
    "CardError",
    "ChannelResult",
    "Estimate",
    "Events",
    "EvgenError",
    "OutputError",
    "PDFError",
    "PDFSet",
    "ProcessError",
    "ProcessInfo",
    "RunCard",
    "RunInfo",
    "RunResult",
    "SMParameters",
    "Vegas",
    "ZPrime",
    "ZPrimeCouplings",
    "execute",
    "load_card",
    "load_pdf",
    "parse_card",
    "prepare",
    "read_root",
    "run_card",
    "unweight",
    "write_lhe",
    "write_root",
]
