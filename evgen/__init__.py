"""evgen: a MadGraph-style LHC event generator and unfolding application on PyTorch."""

__version__ = "0.1.0"
