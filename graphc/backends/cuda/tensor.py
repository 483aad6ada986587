"""Tensor programs on the GPU (target "cuda"): the CPU schedule's steps as
numba-cuda kernels.

The plan is the CPU backends' (`plan.py`: same fused regions, same
one-pass-per-row cross_entropy, same GEMM list); each step becomes:
- a fused region: a grid-stride kernel over the region's elements (the flat
  index unravelled into the loop indices, inputs broadcast by indexing), its
  sums accumulated with `cuda.atomic.add` (so their order, and the last bits,
  vary from run to run);
- cross_entropy: one thread per row;
- a GEMM: CuPy's matmul (cuBLAS) where CuPy is installed, else a tiled
  shared-memory kernel; a transpose feeding a GEMM is a flag of the kernel (or
  a CuPy view), never a copy;
- any other op (softmax alone, pick, reshape, reductions that are not a
  region's epilogue, ...): its NumPy form on the host, with the copies both
  ways -- correct, slow, and named as such in `graphc emit`.
Arguments are host arrays, results come back as host arrays; 0-d values
(losses, scale factors) stay on the host between steps.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...ir import DTYPE_NUMPY, Graph, print_graph
from ...schedule.plan import XENT_ROW, GemmStep, HostStep, LoopStep, Plan, RowStep, ScanStep, lower
from ...schedule.regions import Region, Xent, describe_schedule, region_code, regions
from ...shapes import bound
from .. import cache
from ..buffers import is_device
from ..kernel import Kernel, fill_out
from ..numpy_ref import run_op
from ..scalar import indent, module_header, xent_function
from .pointwise import kernel_namespace, require_gpu, simulator

TILE = 16  # the shared-memory GEMM's tile edge

XENT_CUDA = """import math

import numpy as np
from numba import cuda

F = np.{dtype}


""" + xent_function(XENT_ROW, "@cuda.jit", gpu=True).replace("{", "{{").replace("}", "}}")

GEMM_CUDA = """import numpy as np
from numba import cuda

F = np.{dtype}
T = {tile}


@cuda.jit
def gemm(a, b, c, ta, tb, m, n, k):
    # c = op(a) @ op(b), op = transpose when the flag is set: tiles of T x T in shared memory
    sa = cuda.shared.array(({tile}, {tile}), F)
    sb = cuda.shared.array(({tile}, {tile}), F)
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    row = cuda.blockIdx.y * T + ty
    col = cuda.blockIdx.x * T + tx
    acc = F(0.0)
    for t in range((k + T - 1) // T):
        kk = t * T + tx
        if row < m and kk < k:
            sa[ty, tx] = a[kk, row] if ta else a[row, kk]
        else:
            sa[ty, tx] = F(0.0)
        kk = t * T + ty
        if col < n and kk < k:
            sb[ty, tx] = b[col, kk] if tb else b[kk, col]
        else:
            sb[ty, tx] = F(0.0)
        cuda.syncthreads()
        for j in range(T):
            acc += sa[ty, j] * sb[j, tx]
        cuda.syncthreads()
    if row < m and col < n:
        c[row, col] = acc
"""


def region_cuda_source(r: Region, dtype: str) -> str:
    """`region`: a grid-stride kernel over the region's elements; the flat index
    is unravelled (last axis fastest) and sums are atomic adds."""
    c = region_code(r, "cuda")
    nd = len(r.shape)
    lines = module_header("from numba import cuda", DTYPE_NUMPY[dtype]) + [
        "@cuda.jit",
        f"def region({', '.join(['total', *c.params])}):",
    ]
    lines += indent(c.consts + c.scalar_loads + ["start = cuda.grid(1)", "stride = cuda.gridsize(1)",
                                                  "for t in range(start, total, stride):"], 4)
    unravel = []
    rest = "t"
    for k in reversed(range(nd)):
        if k:
            unravel += [f"i{k} = {rest} % n{k}", f"q{k} = {rest} // n{k}"]
            rest = f"q{k}"
        else:
            unravel.append(f"i0 = {rest}")
    here = ", ".join(f"i{k}" for k in range(nd)) or "0"
    stores = [f"{o}[{here}] = {v}" for o, v in c.stores]
    # a 1-d accumulator takes a bare index (real CUDA lowering refuses a 1-tuple there)
    stores += [f"cuda.atomic.add({a}, {at if ',' not in at else f'({at})'}, {v})" for a, at, v in c.sums]
    lines += indent(unravel + c.loads + c.lines + stores, 8)
    return "\n".join(lines) + "\n"


def _folded(plan: Plan) -> dict[int, int]:
    """Transposes whose every reader is a GEMM (and that are no output): their slot
    -> their argument's slot, which the GEMM reads with a flag."""
    readers: dict[int, list] = {}
    for s in plan.steps:
        for k in s.reads:
            readers.setdefault(k, []).append(s)
    return {s.out: s.ins[0] for s in plan.steps if isinstance(s, HostStep) and s.node.op == "transpose"
            and s.node.type.ndim == 2 and s.out not in plan.out_slots
            and all(isinstance(u, GemmStep) for u in readers.get(s.out, []))}


def _cupy():
    if simulator():
        return None
    try:
        import cupy
    except Exception:  # not installed, or no usable CUDA for it
        return None
    return cupy


class TensorCudaKernel(Kernel):
    """Runs a tensor program's schedule as CUDA kernels (see the module docstring)."""

    def __init__(self, graph: Graph, device: bool = True):
        self.cuda = require_gpu() if device else None  # device=False: the schedule's text only (emit)
        super().__init__(graph)
        steps = regions(graph)
        self.plan = lower(graph, steps)
        self.folded = _folded(self.plan)
        hidden = {id(s.node) for s in self.plan.steps if isinstance(s, HostStep) and s.out in self.folded}
        self.steps = [s for s in steps if id(s) not in hidden]  # the schedule as `describe_schedule` lists it
        dt = DTYPE_NUMPY[graph.dtype]
        ir_text = print_graph(graph)
        for s in self.steps:
            if isinstance(s, Region):
                s.source = region_cuda_source(s, graph.dtype)
                s.key = cache.cache_key(ir_text, "cuda", "region", s.source)
            elif isinstance(s, Xent):
                s.source = XENT_CUDA.format(dtype=dt)
                s.key = cache.cache_key("cuda", "xent", s.source)
        self.cupy = _cupy() if device else None
        self._gemm_source = GEMM_CUDA.format(dtype=dt, tile=TILE)
        gemm = "gemm (CuPy, cuBLAS)" if self.cupy is not None else f"gemm (tiled {TILE}x{TILE} shared-memory kernel)"
        self.source = describe_schedule(graph, self.steps, "cuda", gemm=gemm, other="host (NumPy, copied both ways)")
        if self.cupy is None:
            self.source += "\n\n# ---- gemm\n" + self._gemm_source
        self._compiled: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _fn(self, key: str, source: str, name: str):
        fn = self._compiled.get(key)
        if fn is None:
            fn = self._compiled[key] = kernel_namespace(source, f"graphc_cuda_{name}")[name]
        return fn

    def _launch(self, n: int) -> tuple[int, int]:
        if simulator():
            return 1, max(1, min(32, n))  # the simulator runs each thread in Python
        block = 256
        sms = self.cuda.get_current_device().MULTIPROCESSOR_COUNT
        return max(1, min(sms * 8, math.ceil(n / block))), block

    def _host(self, v: Any) -> Any:
        return v.copy_to_host() if hasattr(v, "copy_to_host") else v

    def _device(self, v: Any) -> Any:
        if hasattr(v, "copy_to_host") or np.ndim(v) == 0:
            return v
        if hasattr(v, "__cuda_array_interface__"):  # CuPy, PyTorch: a view, no copy
            return self.cuda.as_cuda_array(v)
        return self.cuda.to_device(np.ascontiguousarray(v))

    def run_tensor(self, arrays: Sequence[np.ndarray], dims: dict[str, int], out: list | None = None) -> list:
        with self._lock:
            return fill_out(self._run(arrays, dims), out)

    def _run(self, arrays: Sequence[np.ndarray], dims: dict[str, int]) -> list:
        plan = self.plan
        env: list = [None] * plan.nslots
        for v, a in zip(plan.inputs, arrays):
            env[v.slot] = self._device(a) if np.ndim(a) else v.dtype.type(a)
        for k, c in plan.consts:
            env[k] = c
        for s in plan.steps:
            getattr(self, "run_" + s.kind)(s, env, dims)
        if any(is_device(a) for a in arrays):  # GPU data in: results stay there
            return [env[v.slot] if v.shape else np.asarray(self._host(env[v.slot]), dtype=v.dtype)
                    for v in plan.outputs]
        return [np.asarray(self._host(env[v.slot]), dtype=v.dtype) for v in plan.outputs]

    # ------------------------------------------------ one function per step kind

    def run_host(self, s: HostStep, env: list, dims: dict[str, int]) -> None:
        if s.out in self.folded:
            return  # read by its GEMMs through a flag
        val = run_op(s.fn, [self._host(env[j]) for j in s.ins], s.attrs, s.symbolic, dims, s.dtype)
        env[s.out] = self._device(val)

    def run_gemm(self, s: GemmStep, env: list, dims: dict[str, int]) -> None:
        env[s.out] = self._gemm(s, env)

    def run_loop(self, s: LoopStep, env: list, dims: dict[str, int]) -> None:
        cuda = self.cuda
        shape = bound(s.region.shape, dims)
        total = int(np.prod(shape, dtype=np.int64))
        args = [env[k] if t is None else t(env[k]) for k, t in zip(s.ins, s.scalars)]
        outs = [cuda.device_array(shape, dtype=o.dtype) for o in s.outs]
        sums = [cuda.to_device(np.zeros(bound(o.shape, dims) or (1,), dtype=o.dtype)) for o in s.sums]
        if total:
            blocks, threads = self._launch(total)
            self._fn(s.region.key, s.region.source, "region")[blocks, threads](total, *shape, *args, *outs, *sums)
        for o, v in zip(s.outs, outs):
            env[o.slot] = v
        for o, v in zip(s.sums, sums):
            env[o.slot] = v if o.shape else o.dtype.type(v.copy_to_host()[0])

    def _operand(self, k: int, env: list) -> tuple[Any, bool]:
        if k in self.folded:
            return env[self.folded[k]], True
        return env[k], False

    def _gemm(self, s: GemmStep, env: list) -> Any:
        (a, ta), (b, tb) = self._operand(s.a, env), self._operand(s.b, env)
        m = a.shape[1] if ta else a.shape[0]
        k = a.shape[0] if ta else a.shape[1]
        n = b.shape[0] if tb else b.shape[1]
        c = self.cuda.device_array((m, n), dtype=s.dtype)
        if self.cupy is not None:
            cp = self.cupy
            x, y = cp.asarray(a), cp.asarray(b)
            cp.matmul(x.T if ta else x, y.T if tb else y, out=cp.asarray(c))
            return c
        if m and n:
            grid = (math.ceil(n / TILE), math.ceil(m / TILE))
            if k:
                self._fn("gemm", self._gemm_source, "gemm")[grid, (TILE, TILE)](a, b, c, ta, tb, m, n, k)
            else:
                c = self.cuda.to_device(np.zeros((m, n), dtype=s.dtype))
        return c

    def run_row(self, s: RowStep, env: list, dims: dict[str, int]) -> None:
        from ...tensor_ops import check_labels

        scores, labels = env[s.scores], env[s.labels]
        n, c = scores.shape
        check_labels(self._host(labels), c)
        dt = s.dtype
        p = self.cuda.device_array((n, c), dtype=dt)
        d = self.cuda.device_array((n, c) if s.diff is not None else (1, 1), dtype=dt)
        losses = self.cuda.device_array(max(n, 1), dtype=dt)
        if n and c:
            blocks, threads = self._launch(n)
            self._fn(s.xent.key, s.xent.source, "xent")[blocks, threads](scores, labels, p, d, losses,
                                                                           s.diff is not None)
        per_row = losses.copy_to_host()[:n]
        red = s.reduction
        env[s.loss] = self._device(per_row) if red == "none" else \
            dt.type(np.sum(per_row) if red == "sum" else np.mean(per_row))
        env[s.softmax] = p
        if s.diff is not None:
            env[s.diff] = d

    def run_scan(self, s: ScanStep, env: list, dims: dict[str, int]) -> None:
        """A loop: its body compiled once as a CUDA program of its own, called once per step
        from a host loop (`loops.run_loop`), the carry staying on the device between steps;
        the stacked results written into device buffers (0-d values stay on the host)."""
        from ...loops import run_loop
        from ..targets import build

        key = f"scan:{id(s)}"
        body = self._compiled.get(key)
        if body is None:
            body = self._compiled[key] = build(s.body, "cuda")

        def alloc(i: int, shape: tuple, dt: np.dtype) -> Any:
            return self.cuda.device_array(shape, dtype=dt) if shape else np.empty((), dtype=dt)

        def put(buf: Any, t: int | None, v: Any) -> None:
            if t is None and hasattr(buf, "copy_to_device"):
                buf.copy_to_device(v if hasattr(v, "copy_to_host") else np.ascontiguousarray(v))
            else:
                buf[... if t is None else t] = v

        want = [i for i, v in enumerate(s.outs) if v is not None]
        got = run_loop(s.node.attrs, [env[k] for k in s.ins], body.run_tensor, want, dims, alloc=alloc, put=put,
                       item=lambda x, t: x[t])
        for i in want:
            v = got[i]
            env[s.outs[i].slot] = v if hasattr(v, "copy_to_host") else s.outs[i].dtype.type(v)  # type: ignore[union-attr]

    def run(self, arrays, shape, out=None, **options):
        from ...errors import UnsupportedError

        raise UnsupportedError("a tensor program is called through CompiledFunction (shapes are bound there)")


def ptx(graph: Graph, cc: tuple[int, int] = (9, 0)) -> str:
    """PTX of every kernel of a tensor program's plan, compiled without a GPU."""
    from numba import cuda, types

    plan = lower(graph, regions(graph))
    dt = DTYPE_NUMPY[graph.dtype]
    f = getattr(types, dt)
    texts = []
    for s in plan.steps:
        match s:
            case LoopStep(region=r):
                src, name = region_cuda_source(r, graph.dtype), "region"
                arr = [types.Array(getattr(types, DTYPE_NUMPY[a.dtype]), len(a.shape), "A") if a.shape
                       else getattr(types, DTYPE_NUMPY[a.dtype]) for a in r.inputs]
                sig = (types.int64, *(types.int64 for _ in r.shape), *arr,
                       *(types.Array(f, len(r.shape), "C") for _ in r.outputs),
                       *(types.Array(f, max(len(n.shape), 1), "C") for n in r.reductions))
            case RowStep():
                src, name = XENT_CUDA.format(dtype=dt), "xent"
                a2 = types.Array(f, 2, "A")
                sig = (a2, types.Array(types.int64, 1, "A"), a2, a2, types.Array(f, 1, "C"), types.boolean)
            case _:
                continue
        kern = kernel_namespace(src.replace("@cuda.jit\n", ""), f"graphc_cuda_ptx_{name}")[name]
        texts.append(cuda.compile_ptx(kern, sig, cc=cc)[0])
    if any(isinstance(s, GemmStep) for s in plan.steps):
        kern = kernel_namespace(GEMM_CUDA.format(dtype=dt, tile=TILE).replace("@cuda.jit\n", ""), "graphc_cuda_ptx_gemm")
        a2 = types.Array(f, 2, "A")
        sig = (a2, a2, types.Array(f, 2, "C"), types.boolean, types.boolean, types.int64, types.int64, types.int64)
        texts.append(cuda.compile_ptx(kern["gemm"], sig, cc=cc)[0])
    return "\n".join(texts)
