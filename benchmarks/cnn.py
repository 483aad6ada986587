"""A CNN's training step (issue 27): loss and gradients of every weight through
`graphc.value_and_grad` on the default target, against PyTorch eager,
`torch.compile` and JAX `jit(value_and_grad)` on the CPU, float32.

    python -m benchmarks.cnn            # writes benchmarks/RESULTS-cnn.md (about 3 minutes on 2 cores)
    python -m benchmarks.cnn --quick    # few rounds, no torch.compile, no file

Two rows, each a mean cross-entropy loss and its gradient with respect to every weight and bias:

- digits CNN (examples/cnn_digits.py): scikit-learn's 8x8 digits, batch 256,
  conv(1->8, 3x3, pad 1) - relu - max_pool 2 - conv(8->16, 3x3, pad 1) - relu - max_pool 2 - linear(64->10)
- LeNet-5: 32x32x3 inputs (synthetic normal data, labels 0..9), batch 128,
  conv(3->6, 5x5) - relu - max_pool 2 - conv(6->16, 5x5) - relu - max_pool 2 - linear(400->120) - relu -
  linear(120->84) - relu - linear(84->10)

Every contender's loss and gradients are checked against PyTorch's in float64 first. The first
call of each (trace + compile + run) is timed alone: graphc's from an empty graphc cache (its
compiled host kernels, Numba's, as cached on disk by earlier runs; a cold start with both caches
empty is timed in a new process), torch.compile's from an empty inductor cache. Then the contenders run
alternately, round after round, in one process (the order rotates each round); a round times a block
of about 0.1 s of calls per contender; cells are medians over rounds, and ratios the medians of the
per-round ratios. PyTorch runs with torch.set_num_threads(cores); JAX on the CPU with its default
threads; graphc with its defaults (OpenBLAS's threads for the GEMMs). Two more rows show what the
threads do on a shared machine: graphc with OpenBLAS limited to one thread (threadpoolctl) and PyTorch
eager with one thread, each set around its own blocks only. The memory one warm step adds is measured
in a process of its own (`--memory ROW`) with glibc returning every block of 64 KB or more on free.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import date
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

import graphc  # noqa: E402
import graphc.nn as gnn  # noqa: E402
import graphc.numpy as gnp  # noqa: E402

ROWS = ["digits CNN", "LeNet-5"]
BATCH = {"digits CNN": 256, "LeNet-5": 128}
PEERS = ["graphc", "PyTorch eager", "torch.compile", "JAX"]
ONE_THREAD = ["graphc, BLAS 1 thread", "PyTorch eager, 1 thread"]  # shown beside them, not in the targets
COMPILE_LIMIT_S = 60.0  # torch.compile: skipped (with a note) past this or on an error


# ---------------------------------------------------------------- data and weights (PyTorch's layouts: OIHW, (in, out))

def data(row: str, seed: int = 0) -> tuple[dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)

    def he(shape, fan_in):
        return (rng.normal(size=shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    if row == "digits CNN":
        from sklearn.datasets import load_digits

        d = load_digits()
        pick = rng.permutation(len(d.target))[:BATCH[row]]
        X = (d.images[pick] / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
        y = d.target[pick].astype(np.int64)
        params = {"c1": he((8, 1, 3, 3), 9), "b1": np.zeros(8, np.float32), "c2": he((16, 8, 3, 3), 72),
                  "b2": np.zeros(16, np.float32), "W": he((64, 10), 64), "b": np.zeros(10, np.float32)}
        return params, X, y
    X = rng.normal(size=(BATCH[row], 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, BATCH[row]).astype(np.int64)
    params = {"c1": he((6, 3, 5, 5), 75), "b1": np.zeros(6, np.float32), "c2": he((16, 6, 5, 5), 150),
              "b2": np.zeros(16, np.float32), "W1": he((400, 120), 400), "d1": np.zeros(120, np.float32),
              "W2": he((120, 84), 120), "d2": np.zeros(84, np.float32), "W3": he((84, 10), 84),
              "d3": np.zeros(10, np.float32)}
    return params, X, y


# ---------------------------------------------------------------- the loss: graphc.nn, torch.nn.functional, jax.lax

def graphc_loss(row: str):
    def digits(p, X, y):
        h = gnn.max_pool2d(gnn.relu(gnn.conv2d(X, p["c1"], p["b1"], padding=1)), 2)
        h = gnn.max_pool2d(gnn.relu(gnn.conv2d(h, p["c2"], p["b2"], padding=1)), 2)
        return gnn.cross_entropy(gnp.reshape(h, (h.shape[0], 64)) @ p["W"] + p["b"], y)

    def lenet(p, X, y):
        h = gnn.max_pool2d(gnn.relu(gnn.conv2d(X, p["c1"], p["b1"])), 2)
        h = gnn.max_pool2d(gnn.relu(gnn.conv2d(h, p["c2"], p["b2"])), 2)
        h = gnn.relu(gnp.reshape(h, (h.shape[0], 400)) @ p["W1"] + p["d1"])
        h = gnn.relu(h @ p["W2"] + p["d2"])
        return gnn.cross_entropy(h @ p["W3"] + p["d3"], y)

    return digits if row == "digits CNN" else lenet


def torch_loss(row: str):
    import torch

    F = torch.nn.functional

    def digits(p, X, y):
        h = F.max_pool2d(F.relu(F.conv2d(X, p["c1"], p["b1"], padding=1)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, p["c2"], p["b2"], padding=1)), 2)
        return F.cross_entropy(h.reshape(h.shape[0], 64) @ p["W"] + p["b"], y)

    def lenet(p, X, y):
        h = F.max_pool2d(F.relu(F.conv2d(X, p["c1"], p["b1"])), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, p["c2"], p["b2"])), 2)
        h = F.relu(h.reshape(h.shape[0], 400) @ p["W1"] + p["d1"])
        h = F.relu(h @ p["W2"] + p["d2"])
        return F.cross_entropy(h @ p["W3"] + p["d3"], y)

    return digits if row == "digits CNN" else lenet


def jax_loss(row: str):
    import jax
    import jax.numpy as jnp
    from jax import lax

    def conv(x, w, b, pad):
        y = lax.conv_general_dilated(x, w, (1, 1), [(pad, pad), (pad, pad)],
                                     dimension_numbers=("NCHW", "OIHW", "NCHW"))
        return y + b[None, :, None, None]

    def pool(x):
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def xent(s, y):
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(s), y[:, None], axis=1))

    def digits(p, X, y):
        h = pool(jax.nn.relu(conv(X, p["c1"], p["b1"], 1)))
        h = pool(jax.nn.relu(conv(h, p["c2"], p["b2"], 1)))
        return xent(h.reshape(h.shape[0], 64) @ p["W"] + p["b"], y)

    def lenet(p, X, y):
        h = pool(jax.nn.relu(conv(X, p["c1"], p["b1"], 0)))
        h = pool(jax.nn.relu(conv(h, p["c2"], p["b2"], 0)))
        h = jax.nn.relu(h.reshape(h.shape[0], 400) @ p["W1"] + p["d1"])
        h = jax.nn.relu(h @ p["W2"] + p["d2"])
        return xent(h @ p["W3"] + p["d3"], y)

    return digits if row == "digits CNN" else lenet


# ---------------------------------------------------------------- contenders: step(params, X, y) -> (loss, grads)

def graphc_step(row: str, blas_threads: int | None = None):
    """graphc's step; with blas_threads, OpenBLAS limited to that many threads around each block of calls."""
    import contextlib

    vg = graphc.value_and_grad(graphc_loss(row))
    step = lambda p, X, y: vg(p, X, y)  # noqa: E731
    step.traced = vg
    if blas_threads is not None:
        from threadpoolctl import threadpool_limits

        step.context = lambda: threadpool_limits(blas_threads, user_api="blas")
    else:
        step.context = contextlib.nullcontext
    return step


def torch_step(row: str, compiled: bool = False, threads: int | None = None):
    import torch

    loss = torch_loss(row)
    fn = torch.compile(loss) if compiled else loss
    cache: dict = {}

    def step(p, X, y):
        key = id(p)
        if key not in cache:  # the arrays as tensors once (as a training loop holds them); weights need grads
            cache.clear()
            cache[key] = ({k: torch.from_numpy(v).requires_grad_() for k, v in p.items()}, torch.from_numpy(X),
                          torch.from_numpy(y))
        tp, tX, ty = cache[key]
        value = fn(tp, tX, ty)
        grads = torch.autograd.grad(value, list(tp.values()))
        return value.detach(), dict(zip(tp, grads))

    class _Threads:  # torch.set_num_threads(threads) around a block of calls, then back
        def __enter__(self):
            self.old = torch.get_num_threads()
            torch.set_num_threads(threads or self.old)

        def __exit__(self, *exc):
            torch.set_num_threads(self.old)

    step.context = _Threads
    return step


def jax_step(row: str):
    import contextlib

    import jax

    vg = jax.jit(jax.value_and_grad(jax_loss(row)))
    cache: dict = {}

    def step(p, X, y):
        key = id(p)
        if key not in cache:  # on the device (the CPU) once, as a training loop keeps them
            cache.clear()
            cache[key] = jax.device_put((p, X, y))
        return jax.block_until_ready(vg(*cache[key]))

    step.vg = vg
    step.context = contextlib.nullcontext
    return step


def reference(row: str, params: dict, X: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
    """PyTorch's loss and gradients in float64 (the float32 inputs widened)."""
    import torch

    tp = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    value = torch_loss(row)(tp, torch.tensor(X, dtype=torch.float64), torch.tensor(y))
    grads = torch.autograd.grad(value, list(tp.values()))
    return float(value.detach()), {k: g.numpy() for k, g in zip(tp, grads)}


def check(name: str, got, ref) -> float:
    """The largest error of the loss and of each gradient, relative to the reference's norm (float32: 1e-4)."""
    (v, g), (rv, rg) = got, ref
    worst = abs(float(v) - rv) / max(abs(rv), 1e-30)
    for k, r in rg.items():
        a = np.asarray(g[k], dtype=np.float64)
        assert a.shape == r.shape, (name, k, a.shape, r.shape)
        worst = max(worst, float(np.linalg.norm(a - r) / max(np.linalg.norm(r), 1e-30)))
    assert worst <= 1e-4, (name, worst)
    return worst


# ---------------------------------------------------------------- memory

def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def step_rss(step, args) -> int | None:
    """Resident memory one warm step adds (VmHWM after a reset to VmRSS; None without /proc's clear_refs)."""
    with step.context():
        step(*args)
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            return None
        base = _status("VmRSS")
        step(*args)
        return _status("VmHWM") - base


def graphc_traced_peak(step, args) -> int:
    """The most NumPy memory (tracemalloc) a warm graphc step holds at once besides its kept pool."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    step(*args)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return peak


def memory(row: str, with_compile: bool) -> dict:
    """`--memory ROW` (a process of its own, MALLOC_MMAP_THRESHOLD_=65536): what one warm step adds."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    params, X, y = data(row)
    args = (params, X, y)
    makers = {"graphc": lambda: graphc_step(row), "PyTorch eager": lambda: torch_step(row),
              "torch.compile": lambda: torch_step(row, compiled=True), "JAX": lambda: jax_step(row)}
    out: dict = {}
    for name, make in makers.items():
        if name == "torch.compile" and not with_compile:
            continue
        fn = make()
        fn(*args)
        out[name] = step_rss(fn, args)
        if name == "graphc":
            out["graphc traced"] = graphc_traced_peak(fn, args)
            out["graphc pool"] = fn.traced._sigs[0].fn.pool_bytes()
        if name == "JAX":
            try:
                out["JAX temporaries"] = int(fn.vg.lower(*args).compile().memory_analysis().temp_size_in_bytes)
            except Exception:  # a jaxlib without memory_analysis
                out["JAX temporaries"] = None
    return out


def memory_in_process(row: str, with_compile: bool) -> dict:
    import json

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    cmd = [sys.executable, "-m", "benchmarks.cnn", "--memory", row] + ([] if with_compile else ["--no-compile"])
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    if out.returncode:
        return {"error": out.stderr.strip().splitlines()[-1][:200] if out.stderr.strip() else f"rc {out.returncode}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- timing

def time_block(fn, args, calls: int) -> float:
    with fn.context():
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(*args)
        return (time.perf_counter() - t0) / calls


def measure(row: str, rounds: int, block_s: float, compile_torch: bool) -> dict:
    params, X, y = data(row)
    args = (params, X, y)
    ref = reference(row, params, X, y)
    makers = {"graphc": lambda: graphc_step(row), "PyTorch eager": lambda: torch_step(row),
              "torch.compile": lambda: torch_step(row, compiled=True), "JAX": lambda: jax_step(row),
              "graphc, BLAS 1 thread": lambda: graphc_step(row, blas_threads=1),
              "PyTorch eager, 1 thread": lambda: torch_step(row, threads=1)}
    fns, first, err, notes = {}, {}, {}, []
    for name in PEERS + ONE_THREAD:
        if name == "torch.compile" and not compile_torch:
            notes.append("torch.compile: not run (--quick)")
            continue
        t0 = time.perf_counter()
        try:
            fn = makers[name]()
            with fn.context():
                got = fn(*args)
        except Exception as e:  # torch.compile may lack a compiler here: a note, not a crash
            if name != "torch.compile":
                raise
            notes.append(f"torch.compile: failed ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
            continue
        first[name] = time.perf_counter() - t0
        if name == "torch.compile" and first[name] > COMPILE_LIMIT_S:
            notes.append(f"torch.compile: its first call took {first[name]:.0f} s (> {COMPILE_LIMIT_S:.0f} s): "
                         "left out of the timing")
            continue
        err[name] = check(f"{row} {name}", got, ref)
        fns[name] = fn
    names = list(fns)
    calls = {}
    for name in names:  # calls per block: about block_s of work each
        time_block(fns[name], args, 1)
        calls[name] = max(1, int(block_s / max(time_block(fns[name], args, 3), 1e-6)))
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            times[name].append(time_block(fns[name], args, calls[name]))
    ms = {n: 1e3 * statistics.median(t) for n, t in times.items()}
    peers = [n for n in PEERS if n in names and n != "graphc"]
    fastest = min(peers, key=lambda n: ms[n])
    ratio = {n: statistics.median(g / o for g, o in zip(times["graphc"], times[n])) for n in names if n != "graphc"}
    ratio1 = statistics.median(g / o for g, o in zip(times["graphc, BLAS 1 thread"], times["PyTorch eager"]))
    schedule = fns["graphc"].traced._sigs[0].fn.describe().split("\n\n# ---- kernel 0")[0]
    return dict(row=row, ms=ms, ratio=ratio, ratio1=ratio1, fastest=fastest, first=first, err=err, notes=notes,
                schedule=schedule.strip(), calls=calls)


COLD = """
import os, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
import numpy as np
from benchmarks.cnn import data, graphc_step
params, X, y = data({row!r})
t1 = time.perf_counter()
graphc_step({row!r})(params, X, y)
print(time.perf_counter() - t1, t1 - t0)
"""


def cold_start(row: str) -> tuple[float, float]:
    """A new process with graphc's and Numba's caches empty: (first call, imports and data) in seconds."""
    with tempfile.TemporaryDirectory(prefix="graphc-cnn-cold-") as tmp:
        env = dict(os.environ, GRAPHC_CACHE_DIR=os.path.join(tmp, "graphc"), NUMBA_CACHE_DIR=os.path.join(tmp, "numba"))
        src = COLD.format(root=str(Path(__file__).resolve().parents[1]), row=row)
        out = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True, env=env, check=True).stdout
        first, before = map(float, out.split())
        return first, before


# ---------------------------------------------------------------- report

def versions() -> str:
    import jax
    import numba
    import torch

    return (f"Python {platform.python_version()}, NumPy {np.__version__}, graphc {graphc.__version__} (default target "
            f"`llvm`), Numba {numba.__version__}, PyTorch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"JAX {jax.__version__} (jaxlib CPU)")


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        info = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        return f"{info['Model name'].strip()}, {info['CPU(s)'].strip()} cores ({platform.machine()}, shared, noisy)"
    except (OSError, subprocess.CalledProcessError, KeyError):
        return f"{platform.machine()}, {os.cpu_count()} cores"


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _mb(b: int | None) -> str:
    return "–" if b is None else f"{b / 1e6:.1f} MB"


def verdict(r: dict) -> str:
    eager = r["ratio"].get("PyTorch eager")
    fast = r["ratio"][r["fastest"]]
    a = "?" if eager is None else f"{'met' if eager <= 1.0 else 'missed'} ({eager:.2f}× ≤ 1.0× eager)"
    b = f"{'met' if fast <= 1.2 else 'missed'} ({fast:.2f}× ≤ 1.2× {r['fastest']})"
    c = f"{'met' if r['first']['graphc'] <= 2.0 else 'missed'} (first call {r['first']['graphc']:.2f} s ≤ 2 s"
    cold = r.get("cold")
    c += f"; {cold[0]:.2f} s with both caches empty)" if cold else ")"
    return f"{a}; {b}; {c}"


ALL = PEERS + ONE_THREAD


def table(results: list[dict]) -> str:
    head = " | ".join(f"{n} ms" for n in ALL)
    lines = [f"| row | {head} | graphc / eager | graphc / torch.compile | graphc / JAX | graphc / eager 1 thread "
             "| graphc (BLAS 1 thread) / eager |", "|---|" + "---|" * (len(ALL) + 5)]
    for r in results:
        ms, ra = r["ms"], r["ratio"]
        cells = " | ".join(f"{ms[n]:.2f}" if n in ms else "–" for n in ALL)
        rats = " | ".join(f"{ra[n]:.2f}×" if n in ra else "–"
                          for n in ("PyTorch eager", "torch.compile", "JAX", "PyTorch eager, 1 thread"))
        lines.append(f"| {r['row']} | {cells} | {rats} | {r['ratio1']:.2f}× |")
    return "\n".join(lines)


def first_table(results: list[dict]) -> str:
    lines = ["| row | graphc | PyTorch eager | torch.compile | JAX | graphc in a new process, both caches empty |",
             "|---|---|---|---|---|---|"]
    for r in results:
        f = r["first"]
        cold = r.get("cold")
        cell = " | ".join(f"{f[n]:.2f} s" if n in f else "–" for n in PEERS)
        lines.append(f"| {r['row']} | {cell} | "
                     + ("–" if cold is None else f"{cold[0]:.2f} s (after {cold[1]:.2f} s of imports and data)")
                     + " |")
    return "\n".join(lines)


def memory_table(results: list[dict]) -> str:
    lines = ["| row | graphc: pool kept | graphc: NumPy peak a step (tracemalloc) | RSS a warm step adds: graphc "
             "| PyTorch eager | torch.compile | JAX | JAX: XLA's temporaries |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        m = r.get("memory") or {}
        if "error" in m:
            lines.append(f"| {r['row']} | not measured: {m['error']} |||||||")
            continue
        cells = [m.get("graphc pool"), m.get("graphc traced"), m.get("graphc"), m.get("PyTorch eager"),
                 m.get("torch.compile"), m.get("JAX"), m.get("JAX temporaries")]
        lines.append(f"| {r['row']} | " + " | ".join(_mb(c) for c in cells) + " |")
    return "\n".join(lines)


def error_table(results: list[dict]) -> str:
    lines = ["| row | " + " | ".join(ALL) + " |", "|---|" + "---|" * len(ALL)]
    for r in results:
        lines.append(f"| {r['row']} | " + " | ".join(f"{r['err'][n]:.1e}" if n in r["err"] else "–" for n in ALL)
                     + " |")
    return "\n".join(lines)


METHOD = """\
The training step is the loss (mean cross-entropy) and its gradient with respect to every weight and bias,
float32. digits CNN: examples/cnn_digits.py's network on 256 of scikit-learn's 8x8 digits (conv 1->8 3x3 pad 1,
relu, max_pool 2, conv 8->16 3x3 pad 1, relu, max_pool 2, linear 64->10). LeNet-5: 128 synthetic 32x32x3 images
(normal entries, labels 0..9; the data do not change the work), conv 3->6 5x5, relu, max_pool 2, conv 6->16 5x5,
relu, max_pool 2, linear 400->120, relu, linear 120->84, relu, linear 84->10. The same network is written with
graphc.nn (`graphc.value_and_grad`, default target), torch.nn.functional (PyTorch eager: forward, then
`torch.autograd.grad`; torch.compile: the forward compiled by inductor, the backward by AOTAutograd) and jax.lax
(`conv_general_dilated`, `reduce_window`; `jax.jit(jax.value_and_grad)`). Weights are He-initialised in PyTorch's
layouts (OIHW; linear weights (in, out), `h @ W + b`). Each contender's loss and gradients are checked against
PyTorch's in float64 first (relative error of each, at most 1e-4). The first call of each is timed alone (graphc
from an empty graphc cache, its Numba host kernels as cached on disk; torch.compile from an empty inductor
cache); the last column is graphc's first call in a new process with graphc's and Numba's caches both empty.
Then the contenders run alternately in one process, the order rotating each round; a round times a block of
about 0.1 s of calls per contender; cells are medians over rounds, ratios the medians of the per-round ratios.
PyTorch eager and torch.compile run with torch.set_num_threads(cores), graphc with OpenBLAS's default threads;
the two "1 thread" columns (graphc with OpenBLAS limited by threadpoolctl, PyTorch with one thread, each set
around its own blocks only) show what threads do on this shared machine and are not in the targets.
Targets (issue 27): graphc ≤ 1.0× PyTorch eager and ≤ 1.2× the fastest peer (eager, torch.compile, JAX);
first call ≤ 2 s."""

MEMORY = """\
Measured in a process of its own per row (`python -m benchmarks.cnn --memory ROW`, glibc told to return every
block of 64 KB or more to the system on free: MALLOC_MMAP_THRESHOLD_=65536, so a step's large temporaries are
resident only while it runs). "RSS a warm step adds" is, for every contender alike, VmHWM after resetting it
to VmRSS (/proc/self/clear_refs) minus VmRSS: the step's outputs and temporaries, not what the process keeps
between calls (PyTorch's and XLA's caches, graphc's pool). graphc's pool is the arena its memory plan keeps
between calls (every intermediate buffer, reused each step); its NumPy peak is the most traced memory
(tracemalloc sees NumPy's arrays, not Numba's or BLAS's scratch) held at once during one warm step besides the
pool. JAX's temporaries are XLA's compiled plan (`memory_analysis().temp_size_in_bytes`)."""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 rounds, no torch.compile, no cold start, print only")
    p.add_argument("--rounds", type=int, default=None)
    p.add_argument("--rows", nargs="*", default=None, help=f"a subset of: {ROWS}")
    p.add_argument("--memory", default=None, help=argparse.SUPPRESS)  # a row: the memory run (its own process)
    p.add_argument("--no-compile", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS-cnn.md"))
    a = p.parse_args()
    if a.memory:
        import json

        print(json.dumps(memory(a.memory, not a.no_compile)))
        return
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    os.environ["GRAPHC_CACHE_DIR"] = tempfile.mkdtemp(prefix="graphc-cnn-")  # first calls compile from nothing
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="inductor-cnn-"))
    graphc.value_and_grad(lambda x: gnp.sum(x * x))(np.ones(3))  # graphc's two Python-call functions, once
    rounds = a.rounds or (3 if a.quick else 15)
    block_s = 0.03 if a.quick else 0.1
    load0 = _load()
    t_start = time.perf_counter()
    results = []
    for row in a.rows or ROWS:
        r = measure(row, rounds, block_s, compile_torch=not a.quick)
        if not a.quick:
            r["cold"] = cold_start(row)
            r["memory"] = memory_in_process(row, "torch.compile" in r["ms"])
        results.append(r)
        print(f"{row}: " + "  ".join(f"{n} {v:.2f} ms" for n, v in r["ms"].items()) + "\n  graphc/" +
              "  graphc/".join(f"{n} {v:.2f}x" for n, v in r["ratio"].items()) +
              f"\n  first {r['first']['graphc']:.2f} s" + (f"  cold {r['cold'][0]:.2f} s" if "cold" in r else ""),
              flush=True)
    print()
    print(table(results))
    print()
    print(first_table(results))
    print()
    print(memory_table(results))
    for r in results:
        print(f"{r['row']}: {verdict(r)}" + "".join(f"\n  {n}" for n in r["notes"]))
    if a.quick:
        return
    schedules = "\n\n".join(f"{r['row']}:\n\n```\n{r['schedule']}\n```" for r in results)
    blas = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    notes = "".join(f"\n- {r['row']}: {n}" for r in results for n in r["notes"])
    text = (f"# graphc CNN training step (issue 27)\n\n"
            f"Date: {date.today().isoformat()}. Machine: {machine()}. {versions()}; OpenBLAS threads: {blas}. "
            f"Command: `python -m benchmarks.cnn` ({rounds} rounds, {time.perf_counter() - t_start:.0f} s). "
            f"Load average before / after: {load0} / {_load()}.\n\n"
            f"## Method\n\n{METHOD}\n\n"
            f"## Loss + gradients, ms per step (median of rounds) and graphc's ratios (median of per-round ratios)"
            f"\n\n{table(results)}\n\n"
            + "".join(f"- {r['row']}: {verdict(r)}\n" for r in results) + notes + "\n\n"
            f"## First call (trace + compile + run)\n\n{first_table(results)}\n\n"
            f"## Memory\n\n{memory_table(results)}\n\n{MEMORY}\n\n"
            f"## Largest relative error against PyTorch in float64 (loss and each gradient)\n\n"
            f"{error_table(results)}\n\n"
            f"## graphc's schedules (`fn._sigs[0].fn.describe()`: `numpy:` lines are host steps, among them the "
            f"compiled unfold, fold, tile_max and tile_max_grad, which write into the plan's buffers)\n\n"
            f"{schedules}\n")
    a.out.write_text(text)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
