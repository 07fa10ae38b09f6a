"""Exception hierarchy: every error a user can act on is an :class:`EvgenError`.

The command line prints ``str(error)`` as one line and exits with status 2.
Messages name the card key or file, the bad value and what is allowed.
"""

from __future__ import annotations

__all__ = ["EvgenError", "CardError", "PDFError", "ProcessError", "OutputError"]


class EvgenError(Exception):
    """Base class of all errors evgen reports to the user."""


class CardError(EvgenError):
    """A run card is invalid: the message names the key (``cuts.ptl``) or the file."""


class PDFError(EvgenError):
    """A PDF set cannot be found or read."""


class ProcessError(EvgenError):
    """A process string cannot be parsed, or the library cannot produce it."""


class OutputError(EvgenError):
    """An output file cannot be written."""
