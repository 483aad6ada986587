#!/usr/bin/env bash
# One prepared script for a lent GPU machine (no package registry there: the image's
# numba, numba-cuda, CuPy, PyTorch and JAX are used, graphc from this tree).
# Results land in $OUT (the device tool brings that folder back).
set -uo pipefail
OUT=${OUT:-/tmp/graphc-gpu-out}
mkdir -p "$OUT"
# gpu_shim: numba-cuda on that image names np.row_stack, which its NumPy 2.5 dropped.
# JAX takes 75% of the GPU's memory at start unless told not to (the others then run out).
export PYTHONPATH=$PWD:$PWD/benchmarks/gpu_shim PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
{ nvidia-smi; python3 -c "import numpy, numba, llvmlite, sympy, scipy; print('numpy', numpy.__version__, 'numba', numba.__version__, 'llvmlite', llvmlite.__version__, 'sympy', sympy.__version__)"; python3 -m pip list 2>/dev/null | grep -iE "^(numba|numba-cuda|cupy-cuda13x|torch|jax|jaxlib|hypothesis|pytest) "; } > "$OUT/env.txt" 2>&1
timeout 170 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py -k "real_gpu or no_gpu" 2>&1 | tee "$OUT/cuda-tests.txt" | tail -4
timeout 60 python3 -m benchmarks.gpu_profile > "$OUT/profile.txt" 2>&1
timeout 150 python3 -m benchmarks.gpu --out "$OUT/RESULTS-gpu.md" 2>&1 | tee "$OUT/gpu-log.txt" | tail -30
timeout 190 python3 -m benchmarks.gpu_mlp --out "$OUT/RESULTS-gpu-mlp.md" 2>&1 | tee "$OUT/gpu-mlp-log.txt" | grep "^| graphc\|^## "
