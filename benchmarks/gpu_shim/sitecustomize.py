# The lent GPU image pairs numba-cuda with NumPy 2.5, which dropped np.row_stack that
# numba-cuda's array module still names at import: give it the alias (benchmarks only).
import numpy

if not hasattr(numpy, "row_stack"):
    numpy.row_stack = numpy.vstack
