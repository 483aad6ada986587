"""graphc side by side with its peers on the seed's sigmoid neuron
f = 1/(1+exp(-(w0*x0 + w1*x1 + w2))), value + 5 gradients, float64.

    python -m benchmarks.peers                 # full run, writes benchmarks/RESULTS.md
    python -m benchmarks.peers --quick         # a smoke run (small sizes, few rounds)

Each peer runs in its own child process (thread pools of JAX, PyTorch and Numba
would interfere), and in that process the baseline -- a hand-written serial
Numba loop writing into preallocated outputs (at N = 1 its scalar body) -- runs
alternately with the peer, round after round; the reported ratio is the median
over rounds of peer/baseline.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

FORMULA = "1/(1+exp(-(w0*x0 + w1*x1 + w2)))"
POINT = (2.0, -1.0, -3.0, -2.0, -3.0)
SIZES = [1, 1_000, 100_000, 10_000_000]
BASELINE = "numba_serial_out"
BYTES_PER_ELEMENT = 88  # 5 inputs read + 6 outputs written, float64

PEERS = {
    "numba_serial_out": "hand-written Numba loop, serial, preallocated outputs (baseline)",
    "numba_serial": "hand-written Numba loop, serial, allocates its 6 outputs",
    "numba_parallel_out": "hand-written Numba prange loop, preallocated outputs",
    "graphc_cpu": "graphc target=cpu",
    "graphc_cpu_out": "graphc target=cpu, out= buffers",
    "graphc_parallel": "graphc target=parallel",
    "graphc_parallel_out": "graphc target=parallel, out= buffers",
    "graphc_llvm": "graphc target=llvm (llvmlite, libmvec vector math)",
    "graphc_llvm_out": "graphc target=llvm, out= buffers",
    "numpy": "hand-written NumPy (stable sigmoid, reused s*(1-s))",
    "sympy": "SymPy diff + lambdify(cse=True), NumPy backend",
    "jax": "JAX jit(vmap(value_and_grad)), x64",
    "torch": "PyTorch eager autograd",
    "torch_compile": "torch.compile (forward compiled, backward by AOTAutograd)",
    "floor": "bandwidth floor: parallel 5-in/6-out copy kernel, preallocated",
}


# --------------------------------------------------------------------- peers


def _numba_kernels():
    import numba
    from numba import njit, prange

    @njit(error_model="numpy", nogil=True)
    def body(w0, x0, w1, x1, w2):
        z = w0 * x0 + w1 * x1 + w2
        e = math.exp(-abs(z))
        s = 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)
        d = e / ((1.0 + e) * (1.0 + e))
        return s, x0 * d, w0 * d, x1 * d, w1 * d, d

    @njit(error_model="numpy", nogil=True)
    def serial_out(w0, x0, w1, x1, w2, f, g0, g1, g2, g3, g4):
        for i in range(w0.size):
            f[i], g0[i], g1[i], g2[i], g3[i], g4[i] = body(w0[i], x0[i], w1[i], x1[i], w2[i])

    @njit(error_model="numpy", nogil=True)
    def serial(w0, x0, w1, x1, w2):
        n = w0.size
        f, g0, g1, g2, g3, g4 = (np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n))
        serial_out(w0, x0, w1, x1, w2, f, g0, g1, g2, g3, g4)
        return f, g0, g1, g2, g3, g4

    @njit(error_model="numpy", nogil=True, parallel=True)
    def parallel_out(w0, x0, w1, x1, w2, f, g0, g1, g2, g3, g4):
        for i in prange(w0.size):
            f[i], g0[i], g1[i], g2[i], g3[i], g4[i] = body(w0[i], x0[i], w1[i], x1[i], w2[i])

    @njit(nogil=True, parallel=True)
    def copy(a, b, c, d, e, o0, o1, o2, o3, o4, o5):
        for i in prange(a.size):
            o0[i] = a[i]
            o1[i] = b[i]
            o2[i] = c[i]
            o3[i] = d[i]
            o4[i] = e[i]
            o5[i] = a[i]

    del numba
    return body, serial, serial_out, parallel_out, copy


def make_peer(name: str, n: int):
    """A zero-argument callable computing value + 5 gradients for n points."""
    rng = np.random.default_rng(0)
    if n == 1:
        args = POINT
    else:
        args = tuple(rng.standard_normal(n) for _ in range(5))
    outs = [np.empty(n) for _ in range(6)]
    body, serial, serial_out, parallel_out, copy = _numba_kernels()

    if name == "numba_serial":
        if n == 1:
            return lambda: body(*args)
        return lambda: serial(*args)
    if name == "numba_serial_out":
        if n == 1:
            return lambda: body(*args)  # the baseline's scalar form
        return lambda: serial_out(*args, *outs)
    if name == "numba_parallel_out":
        if n == 1:
            return None
        return lambda: parallel_out(*args, *outs)
    if name == "floor":
        if n == 1:
            return None
        return lambda: copy(*args, *outs)
    if name.startswith("graphc"):
        import graphc

        target = "parallel" if "parallel" in name else "llvm" if "llvm" in name else "cpu"
        fn = graphc.compile(FORMULA, target=target)
        if name.endswith("_out"):
            if n == 1:
                return None
            return lambda: fn(*args, out=outs)
        return lambda: fn(*args)
    if name == "numpy":
        def np_peer(w0, x0, w1, x1, w2):
            z = w0 * x0 + w1 * x1 + w2
            e = np.exp(-np.abs(z))
            s = np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
            d = s * (1.0 - s)
            return s, x0 * d, w0 * d, x1 * d, w1 * d, d

        a = args if n > 1 else tuple(np.float64(x) for x in args)
        return lambda: np_peer(*a)
    if name == "sympy":
        import sympy as sp

        syms = sp.symbols("w0 x0 w1 x1 w2")
        w0, x0, w1, x1, w2 = syms
        f = 1 / (1 + sp.exp(-(w0 * x0 + w1 * x1 + w2)))
        exprs = [f] + [sp.diff(f, s) for s in syms]
        lam = sp.lambdify(syms, exprs, modules="numpy", cse=True)
        return lambda: lam(*args)
    if name == "jax":
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)

        def f(w0, x0, w1, x1, w2):
            return 1 / (1 + jnp.exp(-(w0 * x0 + w1 * x1 + w2)))

        vg = jax.value_and_grad(f, argnums=(0, 1, 2, 3, 4))
        if n == 1:
            jf = jax.jit(vg)
            a = tuple(jnp.float64(x) for x in args)
        else:
            jf = jax.jit(jax.vmap(vg))
            a = tuple(jnp.asarray(x) for x in args)

        def run():
            v, g = jf(*a)
            v.block_until_ready()
            for x in g:
                x.block_until_ready()
            return v, g

        return run
    if name in ("torch", "torch_compile"):
        import torch

        def neuron(w0, x0, w1, x1, w2):
            return 1 / (1 + torch.exp(-(w0 * x0 + w1 * x1 + w2)))

        fwd = torch.compile(neuron) if name == "torch_compile" else neuron

        def run():
            ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in args] if n == 1 else \
                [torch.from_numpy(x).requires_grad_(True) for x in args]
            f = fwd(*ts)
            f.backward(torch.ones_like(f))
            return f.detach(), [t.grad for t in ts]

        return run
    raise ValueError(name)


def _time_calls(fn, budget: float) -> float:
    """Seconds per call, from a batch of calls lasting about `budget` seconds."""
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    reps = max(1, min(100_000, int(budget / max(one, 1e-7))))
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def child(peer: str, n: int, rounds: int, budget: float) -> dict:
    try:
        fn = make_peer(peer, n)
    except ImportError as exc:
        return {"peer": peer, "n": n, "skipped": f"not installed ({exc.name})"}
    if fn is None:
        return {"peer": peer, "n": n, "skipped": "n/a"}
    base = make_peer(BASELINE, n)
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0  # compile included (torch.compile, graphc's cache, JAX's jit)
    base()  # compile / warm up
    fn()
    base()
    tp, tb, ratios = [], [], []
    for _ in range(rounds):
        b = _time_calls(base, budget)
        p = _time_calls(fn, budget)
        tb.append(b)
        tp.append(p)
        ratios.append(p / b)
    return {"peer": peer, "n": n, "seconds": statistics.median(tp), "baseline": statistics.median(tb),
            "ratio": statistics.median(ratios), "first": first}


# ------------------------------------------------------------ compile latency

LATENCY = """
import json, time
t0 = time.perf_counter()
import graphc
if TARGET != "llvm":
    import numba
t1 = time.perf_counter()
fn = graphc.compile(FORMULA, target=TARGET)
v = fn(2.0, -1.0, -3.0, -2.0, -3.0)
t2 = time.perf_counter()
x = __import__("numpy").ones(1000)
fn(x, x, x, x, x)
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "scalar": t2 - t1, "array": t3 - t2}))
"""


def user_env(**extra: str) -> dict:
    """The environment a user's process has: bytecode caching on (this machine sets
    PYTHONDONTWRITEBYTECODE, which makes every new process recompile graphc's own
    modules: ~40 ms of llvm_cpu.py alone), graphc's .pyc files written first."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(__file__).parent.parent / "graphc")],
                   env=env, check=True)
    return {**env, **extra}


def compile_latency(target: str, repeats: int) -> dict:
    code = LATENCY.replace("FORMULA", repr(FORMULA)).replace("TARGET", repr(target))
    cold, warm = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as d:
            env = user_env(GRAPHC_CACHE_DIR=d)
            for bucket in (cold, warm):
                r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
                bucket.append(json.loads(r.stdout))
    med = lambda xs, k: statistics.median(x[k] for x in xs)  # noqa: E731
    return {k: {"cold": med(cold, k), "cached": med(warm, k)} for k in ("import", "scalar", "array")}


def warm_compile_in_process(repeats: int) -> dict:
    """Compile time with Numba already initialised in the process (fresh cache)."""
    code = f"""
import json, time, tempfile, os
os.environ["GRAPHC_CACHE_DIR"] = tempfile.mkdtemp()
import graphc
graphc.compile("a*b", target="cpu")(1.0, 2.0)   # initialise Numba
t = time.perf_counter()
fn = graphc.compile({FORMULA!r}, target="cpu")
fn(2.0, -1.0, -3.0, -2.0, -3.0)
t1 = time.perf_counter()
print(json.dumps({{"scalar_compile": t1 - t}}))
"""
    vals = []
    env = user_env()
    for _ in range(repeats):
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
        vals.append(json.loads(r.stdout)["scalar_compile"])
    return {"scalar_compile": statistics.median(vals)}


def pipeline_times(repeats: int) -> dict:
    import sympy as sp

    import graphc

    terms = [f"1/(1+exp(-(w{i}a*x0 + w{i}b*x1 + b{i})))" for i in range(256)]
    text = " + ".join(terms)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn = graphc.compile(text, target="numpy")
        ts.append(time.perf_counter() - t)
    fwd = fn.optimised_forward().op_count()
    expr = sp.sympify(text.replace("exp", "exp"))
    syms = sorted(expr.free_symbols, key=lambda s: s.name)
    t = time.perf_counter()
    derivs = [sp.diff(expr, s) for s in syms]
    sp.cse([expr] + derivs)
    t_sympy = time.perf_counter() - t
    return {"graphc": statistics.median(ts), "sympy_diff_cse": t_sympy,
            "ops_forward": fwd, "ops_grad": fn.graph.op_count()}


# -------------------------------------------------------------------- report


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {"python": platform.python_version()}
    for mod in ("numpy", "numba", "llvmlite", "sympy", "jax", "torch"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = "not installed"
    import graphc

    versions["graphc"] = graphc.__version__
    return {"cpu": cpu, "cores": os.cpu_count(), "versions": versions}


def _has(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.2f} µs"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def llvm_compile_sizes() -> dict:
    """Compile time (formula -> first result, fresh cache, llvmlite initialised) on
    the llvm target for formulas that take Numba minutes (RESULTS above, issue 14)."""
    code = """
import json, os, sys, tempfile, time
os.environ["GRAPHC_CACHE_DIR"] = tempfile.mkdtemp()
import numpy as np, graphc
from graphc.backends.llvm import pointwise as llvm_cpu
llvm_cpu.host()
out = {}
t = time.perf_counter()
graphc.compile("a*b", target="llvm")(np.ones(3), np.ones(3))  # the cache's first kernel: the Python-call entries too
out["a*b, the cache's first kernel (with graphc's two Python-call functions, compiled once per cache)"] = [
    time.perf_counter() - t, 1, 0.0]
neurons = lambda k: " + ".join(f"sigmoid(a{i}*x{i} + b{i}*y{i} + c{i})" for i in range(k))
chain = "x"
for _ in range(1000):
    chain = f"tanh({chain})"
big = [("sum of 1,500 inputs, target cpu", " + ".join(f"x{i}" for i in range(1500))),
       ("sum of 20,000 inputs, target cpu", " + ".join(f"x{i}" for i in range(20000))),
       ("20,000 terms k*sin(k*x), target cpu", " + ".join(f"{k}*sin({k}*x)" for k in range(1, 20001)))]
for name, f in [("neuron", FORMULA), ("64 neurons (320 inputs)", neurons(64)), ("1,000-deep tanh chain", chain)] + big:
    t = time.perf_counter()
    prog = graphc.Program(f)
    t1 = time.perf_counter()
    fn = graphc.compile(prog, target="cpu" if "target cpu" in name else "llvm")
    fn(*[np.ones(1000) for _ in fn.inputs])
    out[name] = [time.perf_counter() - t1, prog.graph.op_count(), t1 - t]
print(json.dumps(out))
""".replace("FORMULA", repr(FORMULA))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=user_env())
    return json.loads(r.stdout)


def report(results: list[dict], lat: dict, warm: dict, pipe: dict, info: dict, sizes: list[int],
           sizes_compile: dict | None = None) -> str:
    by = {(r["peer"], r["n"]): r for r in results}
    lines = [
        "# graphc benchmark results",
        "",
        f"Date: {date.today().isoformat()}. Machine: {info['cpu']}, {info['cores']} cores. "
        + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".",
        "",
        f"Formula: the seed's sigmoid neuron `{FORMULA}`, value + 5 gradients, float64. "
        "Each cell: median time per call, and in parentheses the median ratio to the baseline "
        "(hand-written serial Numba loop writing into preallocated outputs; at N = 1 its scalar body "
        "called with Python floats), measured alternately in the same child process. N = 1 is a scalar "
        "call with Python floats. Command: `python -m benchmarks.peers`.",
        "",
        "| peer | " + " | ".join(f"N = {n:,}" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for peer, desc in PEERS.items():
        cells = []
        for n in sizes:
            r = by.get((peer, n))
            if r is None:
                cells.append("")
            elif "skipped" in r:
                cells.append(r["skipped"])
            else:
                cells.append(f"{fmt_time(r['seconds'])} ({r['ratio']:.2f}×)")
        lines.append(f"| {desc} | " + " | ".join(cells) + " |")
    big = max(sizes)
    lines += ["", "## Against the targets", ""]

    def ratio(a, b, n=big):
        ra, rb = by.get((a, n)), by.get((b, n))
        if not ra or not rb or "ratio" not in ra or "ratio" not in rb:
            return float("nan")
        return ra["ratio"] / rb["ratio"]

    floor = by.get(("floor", big))
    if floor and "seconds" in floor:
        gbs = BYTES_PER_ELEMENT * big / floor["seconds"] / 1e9
        lines.append(f"- Bandwidth floor at N = {big:,}: {fmt_time(floor['seconds'])} = {gbs:.1f} GB/s "
                     f"({BYTES_PER_ELEMENT} bytes per element).")
    lines.append(f"- graphc parallel with out= / floor at N = {big:,}: "
                 f"{ratio('graphc_parallel_out', 'floor'):.2f}× (target <= 1.15×).")
    lines.append(f"- graphc parallel allocating / with out= at N = {big:,}: "
                 f"{ratio('graphc_parallel', 'graphc_parallel_out'):.2f}× (target <= 1.6×).")
    for n in sizes:
        if n > 1:
            lines.append(f"- graphc cpu / hand-written serial Numba at N = {n:,}: allocating "
                         f"{ratio('graphc_cpu', 'numba_serial', n):.2f}×, with out= "
                         f"{ratio('graphc_cpu_out', 'numba_serial_out', n):.2f}× (target <= 1.1×).")
    sc = by.get(("graphc_cpu", 1))
    if sc and "seconds" in sc:
        lines.append(f"- Scalar call with Python floats: {fmt_time(sc['seconds'])} (target <= 2 µs).")
    for n, target in ((100_000, "<= 0.25×"), (1_000, "<= 1.1×")):
        r = ratio("graphc_llvm_out", "numba_serial_out", n)
        lines.append(f"- graphc llvm with out= / hand-written serial Numba at N = {n:,}: {r:.2f}× (target {target}).")
    lines.append(f"- graphc llvm with out= / floor at N = {big:,}: {ratio('graphc_llvm_out', 'floor'):.2f}× "
                 "(target <= 1.15×).")
    sl = by.get(("graphc_llvm", 1))
    if sl and "seconds" in sl:
        lines.append(f"- llvm scalar call with Python floats: {fmt_time(sl['seconds'])} (target <= 1.5 µs).")
    firsts = [r for r in results if r.get("peer") == "torch_compile" and "first" in r]
    if firsts:
        lines.append("- torch.compile's first call (its compile) in a fresh process: " +
                     ", ".join(f"N = {r['n']:,}: {fmt_time(r['first'])}" for r in firsts) + ".")
    scipy = "installed" if _has("scipy") else "not installed"
    lines += [
        "",
        f"## Compile latency (new process each, medians; SciPy {scipy} in this environment)",
        "",
        "| target | import graphc (+numba, not for llvm) | formula -> first scalar result | "
        "then first array result |",
        "|---|---|---|---|",
    ]
    for target, d in lat.items():
        for kind in ("cold", "cached"):
            lines.append(f"| {target}, {kind} cache | {fmt_time(d['import'][kind])} | "
                         f"{fmt_time(d['scalar'][kind])} | {fmt_time(d['array'][kind])} |")
    if warm:
        lines += [
            "",
            f"With Numba already initialised in the process, compiling the neuron to its first scalar result "
            f"takes {fmt_time(warm['scalar_compile'])}: most of a new process's first-call time is Numba's "
            "one-time initialisation (its lazily imported registries, which import SciPy when it is "
            "installed), paid once per process by any Numba user.",
        ]
    if sizes_compile:
        lines += ["", "## Compile time of big formulas (fresh cache, llvmlite initialised)", "",
                  "Kernel: from the optimised Program to the first array result (N = 1,000). The `cpu` rows "
                  "are past Numba's sizes, so the llvm backend compiles them (in parts of 64 lines).", "",
                  "| formula | value+gradient ops | graphc passes (text -> optimised IR) | kernel |",
                  "|---|---|---|---|"]
        for name, (t, ops, passes) in sizes_compile.items():
            lines.append(f"| {name} | {ops:,} | {fmt_time(passes) if passes else '-'} | {fmt_time(t)} |")
    if pipe:
        lines += [
            "",
            "## Pipeline (text -> optimised value+gradient IR)",
            "",
            f"Sum of 256 sigmoid neurons: graphc {fmt_time(pipe['graphc'])} "
            f"({pipe['ops_forward']} forward ops -> {pipe['ops_grad']} value+gradient ops, "
            f"{pipe['ops_grad'] / pipe['ops_forward']:.2f}×); SymPy diff + cse of the same formula "
            f"{fmt_time(pipe['sympy_diff_cse'])}.",
        ]
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes and few rounds (smoke test)")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--sizes", default=None, help="comma-separated N values")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--sections", default="peers,latency,pipeline",
                    help="which parts to run: peers, latency, pipeline")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 7)
    budget = args.budget or (0.02 if args.quick else 0.25)
    if args.child:
        print(json.dumps(child(args.child, args.n, rounds, budget)))
        return 0
    sizes = [int(float(s)) for s in args.sizes.split(",")] if args.sizes else ([1, 1000] if args.quick else SIZES)
    sections = set(args.sections.split(","))
    results = []
    for peer in [p.strip() for p in args.peers.split(",") if p.strip()] if "peers" in sections else []:
        for n in sizes:
            cmd = [sys.executable, "-m", "benchmarks.peers", "--child", peer, "--n", str(n),
                   "--rounds", str(rounds), "--budget", str(budget)]
            r = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).parent.parent)
            if r.returncode != 0:
                res = {"peer": peer, "n": n, "skipped": "failed: " + r.stderr.strip().splitlines()[-1][:80]}
            else:
                res = json.loads(r.stdout.strip().splitlines()[-1])
            results.append(res)
            shown = res.get("skipped") or f"{fmt_time(res['seconds'])} ratio {res['ratio']:.2f}"
            print(f"{peer:>22} N={n:<10,} {shown}", flush=True)
    reps = 1 if args.quick else 5
    lat = {t: compile_latency(t, reps) for t in ("cpu", "parallel", "llvm")} if "latency" in sections else {}
    sizes_compile = llvm_compile_sizes() if "latency" in sections else {}
    warm = warm_compile_in_process(reps) if "latency" in sections else {}
    pipe = pipeline_times(reps) if "pipeline" in sections else {}
    text = report(results, lat, warm, pipe, machine(), sizes, sizes_compile)
    print(text)
    if not args.no_write:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
