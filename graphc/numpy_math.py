"""graphc.numpy's statistics, scans, sorting, contraction and extra elementwise
functions (NumPy's names and signatures), re-exported by graphc.numpy."""

__all__: list[str] = []
