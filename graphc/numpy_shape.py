"""graphc.numpy's indexing, joining and axis-moving functions (NumPy's names and
signatures), re-exported by graphc.numpy."""

__all__: list[str] = []
