"""Errors of the unfolding package, under evgen's one :class:`~evgen.errors.EvgenError`.

Messages name the array, file or branch that is wrong and what is allowed, so that the
command line can print them as one line.
"""

from __future__ import annotations

from evgen.errors import EvgenError

__all__ = ["UnfoldingError"]


class UnfoldingError(EvgenError):
    """Unfolding inputs or settings are invalid, or a method cannot proceed."""
