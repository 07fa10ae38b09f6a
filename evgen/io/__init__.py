"""Event output: Les Houches Event Files and ROOT TTrees, written atomically."""

from evgen.io.atomic import atomic_output
from evgen.io.lhe import write_lhe
from evgen.io.root import read_root, write_root

__all__ = ["atomic_output", "read_root", "write_lhe", "write_root"]
