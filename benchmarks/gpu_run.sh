#!/usr/bin/env bash
# One prepared script for a lent GPU machine: install, CUDA tests, GPU benchmark.
# Results land in $OUT (the device tool brings that folder back).
set -uo pipefail
OUT=${OUT:-/tmp/graphc-gpu-out}
mkdir -p "$OUT"
python3 -m pip install -q -e '.[test,cuda]' > "$OUT/install.log" 2>&1 || { tail -20 "$OUT/install.log"; exit 1; }
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
python3 -m pytest -q tests/test_cuda.py 2>&1 | tee "$OUT/cuda-tests.txt" | tail -5
timeout 240 python3 -m benchmarks.gpu --out "$OUT/RESULTS-gpu.md" 2>&1 | tail -40
