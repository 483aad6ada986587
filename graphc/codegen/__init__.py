"""Backends: numpy (reference evaluator), cpu and parallel (Numba)."""
