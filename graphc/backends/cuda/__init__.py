"""Target cuda: numba-cuda source for NVIDIA GPUs."""
