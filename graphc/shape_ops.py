"""Tensor ops that index, join and move entries (issue 26): static slicing, gathers and
scatter-adds, concatenation, padding and the axis movers. Each is a registry entry with
every tensor facet; semantics follow NumPy (and JAX for functional updates)."""
