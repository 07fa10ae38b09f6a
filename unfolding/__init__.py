"""Unfolding of detector-level data to parton level (to come: see the issue tracker)."""
