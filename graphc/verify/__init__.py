"""Checking compiled results against SymPy's exact derivatives."""
