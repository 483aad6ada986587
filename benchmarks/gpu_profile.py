"""Where graphc's time goes on a GPU call (needs a GPU): cProfile of the pointwise
neuron at N = 1e4 with out= device buffers, and of one training step of the
seed's net (medium, float32) with GPU data. Prints the top entries by own and by cumulative time.

    python -m benchmarks.gpu_profile
"""

from __future__ import annotations

import cProfile
import pstats
import sys

import numpy as np


def main() -> int:
    from numba import cuda

    import graphc

    from .gpu import FORMULA
    from .gpu_mlp import device_data, graphc_peer
    from .mlp import data

    fn = graphc.compile(FORMULA, target="cuda")
    d_in = [cuda.to_device(np.random.default_rng(0).standard_normal(10_000)) for _ in range(5)]
    d_out = [cuda.device_array(10_000) for _ in range(6)]
    fn(*d_in, out=d_out)
    cuda.synchronize()
    step, _ = graphc_peer("float32", device_data(data("medium", "float32"), set()))
    step()
    for name, work in (("pointwise N=1e4, out=", lambda: fn(*d_in, out=d_out)), ("MLP step, medium", step)):
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(200 if name.startswith("pointwise") else 30):
            work()
        cuda.synchronize()
        prof.disable()
        print(f"==== {name}")
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(20)
        pstats.Stats(prof, stream=sys.stdout).sort_stats("cumulative").print_stats(45)
    return 0


if __name__ == "__main__":
    sys.exit(main())
