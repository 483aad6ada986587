"""Where threads start paying for a pointwise kernel, and how close the serial
kernel comes to the copy floor (issue 24: one threading threshold).

For the neuron of `peers.py` (5 inputs, value + 5 gradients: 11 streams) with
`out=`, at each size: the llvm kernel on one thread and split over every core,
Numba's `cpu` loop and its `parallel` (prange) loop, and a Numba copy loop of
the same 11 streams on one thread and on every core. Alternating, medians.
Writes benchmarks/RESULTS-threads.md.

    python benchmarks/threads.py [--quick]
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
import time
from pathlib import Path

# Numba's OpenMP workers spin after each prange loop (GNU OpenMP's default); spinning, they
# hold the second core while the next cell runs, so every cell here lets them sleep
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import graphc  # noqa: E402
from graphc.backends import targets  # noqa: E402

FORMULA = "1/(1+exp(-(w0*x0 + w1*x1 + w2)))"


def copies():
    from numba import njit, prange

    def make(parallel: bool):
        rng = prange if parallel else range

        @njit(nogil=True, parallel=parallel)
        def copy(a, b, c, d, e, o0, o1, o2, o3, o4, o5):
            for i in rng(a.size):
                o0[i] = a[i]
                o1[i] = b[i]
                o2[i] = c[i]
                o3[i] = d[i]
                o4[i] = e[i]
                o5[i] = a[i] + b[i]
        return copy
    return make(False), make(True)


def timed(fn, reps: int) -> float:
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def measure(sizes: list[int], rounds: int) -> list[dict]:
    llvm = graphc.compile(FORMULA, target="llvm")
    cpu = graphc.compile(FORMULA, target="cpu")
    par = graphc.compile(FORMULA, target="parallel")
    copy1, copyn = copies()
    rows = []
    for n in sizes:
        rng = np.random.default_rng(0)
        args = [rng.standard_normal(n) for _ in range(5)]
        outs = [np.empty(n) for _ in range(6)]

        def with_min(fn, m):
            def run():
                old = targets.set_parallel_min(m)
                try:
                    fn(*args, out=outs)
                finally:
                    targets.set_parallel_min(old)
            return run
        cells = {
            "llvm, 1 thread": with_min(llvm, 1 << 62),
            "llvm, all cores": with_min(llvm, 2),
            "cpu (Numba)": lambda: cpu(*args, out=outs),
            "parallel (Numba prange)": with_min(par, 2),
            "copy, 1 thread": lambda: copy1(*args, *outs),
            "copy, all cores": lambda: copyn(*args, *outs),
        }
        for f in cells.values():
            f()
        reps = max(3, int(2e7 // (n * 11)))
        got: dict[str, list[float]] = {k: [] for k in cells}
        for _ in range(rounds):
            for k, f in cells.items():
                got[k].append(timed(f, reps))
        rows.append({"n": n, **{k: float(np.median(v)) for k, v in got.items()}})
        print(n, {k: f"{np.median(v) * 1e6:.1f}" for k, v in got.items()}, file=sys.stderr)
    return rows


def report(rows: list[dict]) -> str:
    keys = [k for k in rows[0] if k != "n"]
    out = [
        "# Threads for pointwise kernels: where they start paying",
        "",
        f"{datetime.date.today()} · {platform.processor() or platform.machine()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()} · NumPy {np.__version__} · graphc {graphc.__version__}",
        "",
        f"`python benchmarks/threads.py`: the neuron `{FORMULA}` (5 inputs, value + 5 gradients: 11 streams "
        "of float64) with `out=`, microseconds per call, median of alternating rounds. The copy loops move "
        "the same 11 streams (Numba, one thread / prange). `OMP_WAIT_POLICY=PASSIVE`: Numba's OpenMP "
        "workers sleep between cells instead of spinning on the second core.",
        "",
        "| N | " + " | ".join(keys) + " | llvm best / copy best |",
        "|---|" + "---|" * (len(keys) + 1),
    ]
    for r in rows:
        best = min(r["llvm, 1 thread"], r["llvm, all cores"])
        floor = min(r["copy, 1 thread"], r["copy, all cores"])
        out.append(f"| {r['n']:,} | " + " | ".join(f"{r[k] * 1e6:.1f}" for k in keys) + f" | {best / floor:.2f}x |")
    return "\n".join(out) + "\n"


def main() -> int:
    quick = "--quick" in sys.argv
    sizes = [4_096, 16_384, 32_768, 65_536, 100_000, 131_072, 262_144, 1_000_000]
    rows = measure(sizes[:3] if quick else sizes, 3 if quick else 9)
    text = report(rows)
    print(text)
    if not quick:
        (Path(__file__).parent / "RESULTS-threads.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
