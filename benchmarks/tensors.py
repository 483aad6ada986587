"""Tensor programs: compile time and a 2-layer net's training step.

    python -m benchmarks.tensors            # writes benchmarks/RESULTS-tensors.md
    python -m benchmarks.tensors --quick    # a smoke run (few rounds)

1. Text -> optimised value+gradient IR for the seed's 2-layer net
   `sum(W2 @ relu(W1 @ x + b1) + b2)` (parse, simplify, fuse, autodiff, cse, dce).
2. One training step (loss and the four parameter gradients) of the net
   `cross_entropy(relu(X @ W1 + b1) @ W2 + b2, y)` at N=1024, D=784, H=256,
   C=10, float32 and float64: graphc's numpy target against a hand-written
   NumPy forward+backward (the CS231n way), alternating in one process; the
   reported ratio is the median over rounds of graphc/hand-written.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np

import graphc

from .mlp import SIZES, data, numpy_step

NET = "cross_entropy(relu(X @ W1 + b1) @ W2 + b2, y)"
SHAPES = {"X": ("N", "D"), "W1": ("D", "H"), "b1": ("H",), "W2": ("H", "C"), "b2": ("C",), "y": ("N",)}
SEED_NET = "sum(W2 @ relu(W1 @ x + b1) + b2)"
SEED_SHAPES = {"W2": (1, 2), "W1": (2, 2), "x": (2,), "b1": (2,), "b2": (1,)}
N, D, H, C = SIZES["medium"]


def hand_written(X, y, W1, b1, W2, b2):
    """Forward and backward by hand, the CS231n way (stable softmax, mean loss, no L2)."""
    return numpy_step(X, y, W1, b1, W2, b2, reg=0.0)


def compile_time(rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        graphc.Program(SEED_NET, shapes=SEED_SHAPES)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def training_step(dtype: str, rounds: int) -> dict[str, float]:
    a = data("medium", dtype)
    X, y, W1, b1, W2, b2 = (a[k] for k in ("X", "y", "W1", "b1", "W2", "b2"))
    fn = graphc.compile(NET, shapes=SHAPES, dtypes={"y": "int64"}, dtype=dtype, wrt=["W1", "b1", "W2", "b2"],
                        target="numpy")
    v, g = fn(X=X, y=y, W1=W1, b1=b1, W2=W2, b2=b2)
    ref = hand_written(X, y, W1, b1, W2, b2)
    tol = 1e-10 if dtype == "float64" else 2e-4
    assert abs(v - ref[0]) <= tol * abs(ref[0]), (v, ref[0])
    for k, r in zip(["W1", "b1", "W2", "b2"], ref[1:]):
        assert np.allclose(g[k], r, rtol=tol * 10, atol=tol * 1e-2), k
    ours, theirs, ratios = [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        fn(X=X, y=y, W1=W1, b1=b1, W2=W2, b2=b2)
        a = time.perf_counter() - t
        t = time.perf_counter()
        hand_written(X, y, W1, b1, W2, b2)
        b = time.perf_counter() - t
        ours.append(a)
        theirs.append(b)
        ratios.append(a / b)
    return {"graphc": statistics.median(ours), "numpy": statistics.median(theirs), "ratio": statistics.median(ratios)}


def spiral_loss(params, X, y, reg=1e-3):
    import graphc.nn as nn
    import graphc.numpy as gnp

    hidden = nn.relu(X @ params["W1"] + params["b1"])
    scores = hidden @ params["W2"] + params["b2"]
    return nn.cross_entropy(scores, y) + 0.5 * reg * (gnp.sum(params["W1"] ** 2) + gnp.sum(params["W2"] ** 2))


def tracing(rounds: int) -> dict[str, float]:
    """First call with a new signature (trace + pipeline, no codegen on the numpy target) and the
    Python overhead of a later call beyond the kernel (argument flattening, signature lookup,
    result unflattening), for the spiral model."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(300, 2)), rng.integers(0, 3, 300)
    params = {"W1": rng.normal(size=(2, 100)), "b1": np.zeros(100), "W2": rng.normal(size=(100, 3)),
              "b2": np.zeros(3)}
    firsts = []
    for _ in range(rounds):
        vg = graphc.value_and_grad(spiral_loss, target="numpy")
        t = time.perf_counter()
        vg.lower(params, X, y)
        firsts.append(time.perf_counter() - t)
    sig, leaves, _ = vg._entry((params, X, y), {})
    arrays = [np.asarray(x) for x in leaves]
    calls, kernels = [], []
    for _ in range(rounds * 20):
        t = time.perf_counter()
        vg(params, X, y)
        calls.append(time.perf_counter() - t)
        t = time.perf_counter()
        sig.fn.run_tensor(arrays, {})
        kernels.append(time.perf_counter() - t)
    # the overhead alone: the same call with the kernel replaced by its stored results
    # (the difference of two ~1 ms timings is mostly noise)
    stored = sig.fn.run_tensor(arrays, {})
    real = sig.fn.run_tensor
    sig.fn.run_tensor = lambda a, d: stored
    try:
        over = []
        for _ in range(rounds * 20):
            t = time.perf_counter()
            vg(params, X, y)
            over.append(time.perf_counter() - t)
    finally:
        sig.fn.run_tensor = real
    return {"first": statistics.median(firsts), "call": statistics.median(calls),
            "kernel": statistics.median(kernels), "overhead": statistics.median(over)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    rounds = 5 if args.quick else 41
    ct = compile_time(rounds * 2)
    rows = {dt: training_step(dt, rounds) for dt in ("float32", "float64")}
    tr = tracing(rounds)
    import numba
    import sympy

    lines = [
        "# graphc benchmark results: tensor programs",
        "",
        f"Date: {date.today()}. Machine: {platform.processor() or platform.machine()}, "
        f"{__import__('os').cpu_count()} cores. python {platform.python_version()}, numpy {np.__version__}, "
        f"sympy {sympy.__version__}, numba {numba.__version__}, graphc {graphc.__version__}. "
        f"Command: `python -m benchmarks.tensors`. Medians over {rounds} rounds, alternating in one process.",
        "",
        "## Text to optimised value+gradient IR (the seed's 2-layer net)",
        "",
        f"`{SEED_NET}`: **{ct * 1e3:.2f} ms** (target <= 10 ms).",
        "",
        f"## Training step: `{NET}`",
        "",
        f"N={N}, D={D}, H={H}, C={C}; loss and the gradients of W1, b1, W2, b2. graphc target=numpy against",
        "a hand-written NumPy forward+backward (stable softmax, in-place backward), checked equal first.",
        "",
        "| dtype | graphc (numpy target) | hand-written NumPy | ratio (target <= 1.3x) |",
        "|---|---|---|---|",
    ]
    for dt, r in rows.items():
        lines.append(f"| {dt} | {r['graphc'] * 1e3:.2f} ms | {r['numpy'] * 1e3:.2f} ms | {r['ratio']:.2f}x |")
    lines += [
        "",
        "## Tracing (`graphc.value_and_grad`, the spiral model: N=300, D=2, H=100, C=3)",
        "",
        f"- First call with a new signature, trace + pipeline (no codegen: numpy target): "
        f"**{tr['first'] * 1e3:.2f} ms** (target <= 20 ms).",
        f"- A later call: {tr['call'] * 1e6:.0f} us, of which the kernel (the numpy evaluator) "
        f"{tr['kernel'] * 1e6:.0f} us; Python overhead beyond the kernel (the call with the kernel replaced by "
        f"its stored results): **{tr['overhead'] * 1e6:.1f} us** (target <= 10 us).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.quick:
        Path(__file__).with_name("RESULTS-tensors.md").write_text(text)


if __name__ == "__main__":
    main()
