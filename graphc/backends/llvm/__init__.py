"""The default target: LLVM IR written with llvmlite, no Numba."""
