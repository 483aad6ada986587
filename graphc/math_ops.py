"""Tensor ops for statistics, scans, sorting and contractions (issue 26): var/std, prod,
cumsum/cumprod, argmax/argsort/sort, einsum and its kin. Each is a registry entry with every
tensor facet; semantics follow NumPy."""
