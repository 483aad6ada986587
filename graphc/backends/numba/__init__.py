"""Targets cpu and parallel: Numba Python source."""
