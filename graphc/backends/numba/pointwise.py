"""Numba CPU backend (targets "cpu" and "parallel"): one fused loop per formula
that reads each input once and writes the value and every gradient once, all
intermediates in registers.

Inputs that broadcast as scalars are read once before the loop; the kernel is
generated per pattern of array/scalar inputs. `@njit(error_model="numpy")`, no
fastmath: NaN and inf stay IEEE. The source is kept (`fn.source`) and cached
on disk, with Numba's machine code beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...ir import DTYPE_NUMPY, Graph, print_graph
from ...schedule import plan
from ...schedule.regions import region_code
from .. import cache, targets
from ..buffers import OverlapMemo, host_outputs
from ..kernel import Kernel, is_tensor_graph
from ..loader import exec_in_memory, first_use, load_module
from ..scalar import Body, indent
from ..targets import Target
from .tensor import TensorKernel


def generate_source(graph: Graph, target: str, mask: Sequence[bool], parallel: bool = False,
                    use_cache: bool = True) -> str:
    """Python source of a module with `kernel` (and `kernel_parallel`), compiled
    by `compiled(name)` for C-contiguous 1-D arrays, and `scalar` over floats: the
    rendering of the formula's one-region plan (`plan.pointwise`), its body and
    reads written by `region_code` as for a tensor program's loop nests.
    mask[k]: input k is a full array (else a 1-element array broadcast to all)."""
    step = plan.pointwise(graph, mask)
    code = region_code(step.region, "cpu", [t is not None for t in step.scalars], boxed=True)
    dt = DTYPE_NUMPY[graph.dtype]
    arr = [f"a{k}" for k in range(len(step.ins))]
    outs = [o for o, _ in code.stores]
    sig = ", ".join(["n0", *arr, *outs])
    ir_comment = ["# " + ln for ln in print_graph(graph).splitlines()]
    opts = f'error_model="numpy", cache={use_cache}'
    src = [
        f"# graphc kernel: target {target}, {dt}, inputs {', '.join(graph.input_names)}",
        f"# outputs: {', '.join(graph.output_names)}",
        "# generated from this IR:",
        *ir_comment,
        "import math",
        "",
        "import numpy as np",
        "from numba import njit, prange, types",
        "",
        f"F = np.{dt}",
        f'IN = types.Array(types.{dt}, 1, "C", readonly=True)  # inputs: any C-contiguous 1-D array',
        f'OUT = types.Array(types.{dt}, 1, "C")',
        f"SIGNATURE = (types.int64, {'IN, ' * len(arr)}{'OUT, ' * len(outs)})",
        "",
    ]

    def loop(name: str, parallel: bool) -> list[str]:
        rng = "prange" if parallel else "range"
        lines = [f"def {name}({sig}):"]
        # one branch-free test: a branch per array would give Numba a block per
        # array, and its compile time grows with blocks x live arrays
        conds = [f"({a}.shape[0] != n0)" if full else f"({a}.shape[0] < 1)" for a, full in zip(arr, mask)]
        conds += [f"({o}.shape[0] != n0)" for o in outs]
        # in lines of 32 terms: one expression of thousands would exceed Python's own
        # compiler's recursion limit (a formula of 1,500 inputs did)
        for k in range(0, len(conds), 32):
            lines.append(("    bad = " if k == 0 else "    bad = bad | ") + " | ".join(conds[k:k + 32]))
        lines.append('    if bad:\n        raise ValueError("graphc: an input or output array has the wrong size")')
        lines += indent(code.consts + code.scalar_loads, 4)
        lines.append(f"    for i0 in {rng}(n0):")
        lines += indent(code.loads + code.lines + [f"{o}[i0] = {v}" for o, v in code.stores], 8)
        return lines + ["", ""]

    src += loop("kernel", parallel=False)
    if parallel:
        src += loop("kernel_parallel", parallel=True)
    src += [
        "def compiled(name):",
        '    """A loop above compiled by Numba for SIGNATURE (machine code cached beside this file)."""',
        f'    return njit(SIGNATURE, {opts}, nogil=True, parallel=name == "kernel_parallel")(globals()[name])',
        "",
        "",
    ]
    body = Body(graph, backend="cpu")  # the same body over Python floats
    names = body.input_vars()
    src += [f"@njit({opts})", f"def scalar({', '.join(names)}):"]
    src += indent([f"{v} = F({v})" for v in names] + body.consts + body.lines, 4)
    src += [f"    return ({', '.join(body.outputs)},)", ""]
    return "\n".join(src)


class NumbaKernel(Kernel):
    """Runs a graph through generated Numba kernels; `source` is the all-array variant."""

    def __init__(self, graph: Graph, target: str, parallel: bool):
        super().__init__(graph)
        self.target = target
        self.parallel = parallel
        self.ir_text = print_graph(graph)
        self.n_in = len(graph.inputs)
        self._full = (True,) * self.n_in
        self._variants: dict[tuple[bool, ...], tuple[str, str]] = {}
        self._dispatchers: dict[tuple, object] = {}
        self._fast_serial = None  # compiled all-array kernels, once they have run
        self._fast_parallel = None
        self._overlap = OverlapMemo(self.output_names, graph.input_names)
        self.source = generate_source(graph, target, self._full, parallel)

    def module(self, mask: tuple[bool, ...]):
        """(cache key, loaded module) of the kernel variant for this array/scalar mask."""
        hit = self._variants.get(mask)
        if hit is None:
            src = self.source if all(mask) else generate_source(self.graph, self.target, mask, self.parallel)
            variant = "".join("a" if m else "s" for m in mask)
            hit = (cache.cache_key(self.ir_text, self.target, self.graph.dtype, variant, src), src)
            self._variants[mask] = hit
        key, src = hit
        return key, load_module(key, src)  # the module already loaded, or (re)loaded

    def dispatcher(self, mask: tuple[bool, ...], name: str):
        """The compiled loop `name` of a variant (compiled, or loaded from cache, once)."""
        d = self._dispatchers.get((mask, name))
        if d is None:
            key, mod = self.module(mask)
            d = first_use(key, mod, lambda m: m.compiled(name))
            self._dispatchers[(mask, name)] = d
            if mask == self._full:
                if name == "kernel":
                    self._fast_serial = d
                else:
                    self._fast_parallel = d
        return d

    # ------------------------------------------------------------- scalars
    def run_scalar(self, *args: float) -> tuple:
        key, mod = self.module(self._full)
        res = first_use(key, mod, lambda m: m.scalar(*args))
        self.fast_scalar = self.module(self._full)[1].scalar  # Numba's dispatcher, compiled now
        return tuple(float(r) for r in res)

    # ---------------------------------------------------------------- arrays
    def run_contiguous(self, arrays: Sequence[np.ndarray], out=None):
        """Fast path: 1-D arrays of one length; Numba's own type check and the
        kernel's size check decide. None sends the call down the general path."""
        n = arrays[0].shape[0] if arrays[0].ndim == 1 else 0
        if n < 2:
            return None
        kern = self._fast_parallel if self.parallel and n >= targets.parallel_min() else self._fast_serial
        if kern is None:
            return None
        if out is None:
            outs = list(np.empty((self.n_out, n), dtype=self.np_dtype))
        elif type(out) in (list, tuple) and len(out) == self.n_out:
            outs = out
            self._overlap.check(outs, arrays)
        else:
            return None
        try:
            kern(n, *arrays, *outs)
        except (TypeError, ValueError):
            return None  # wrong types or sizes: the general path converts or explains
        return list(outs)

    def run(self, arrays: Sequence[np.ndarray], shape: tuple, out=None, **options) -> list[np.ndarray]:
        n = int(np.prod(shape)) if shape else 1
        flat = []
        mask = []
        for a in arrays:
            if a.size == 1 and n != 1:
                flat.append(np.ascontiguousarray(a, dtype=self.np_dtype).reshape(1))
                mask.append(False)
            else:
                if a.shape != shape:
                    a = np.broadcast_to(a, shape)
                flat.append(np.ascontiguousarray(a, dtype=self.np_dtype).reshape(-1))
                mask.append(True)
        outs = host_outputs(out, self.output_names, shape, self.np_dtype, arrays, self.graph.input_names)
        if n == 0:
            return outs
        name = "kernel_parallel" if self.parallel and n >= targets.parallel_min() else "kernel"
        self.dispatcher(tuple(mask), name)(n, *flat, *(o.reshape(-1) for o in outs))
        return outs  # the caller's out= buffers themselves, or fresh arrays of `shape`

    def llvm(self) -> str:
        """LLVM IR Numba made for the all-array serial kernel. Compiled afresh
        in memory: Numba keeps no LLVM IR for machine code loaded from its cache."""
        key, src = self._variants.get(self._full) or (cache.cache_key(self.ir_text, "llvm"), self.source)
        mod = exec_in_memory(f"{key}_llvm", src.replace("cache=True", "cache=False"))
        return "\n".join(mod.compiled("kernel").inspect_llvm().values())


# Above these sizes a pointwise kernel is compiled by the llvm backend instead: Numba's
# compile time grows faster than linear in ops (64 sigmoid neurons, 320 inputs: 268 s) and its
# type inference recurses past Python's limit near 1,490 inputs (benchmarks/RESULTS.md)
NUMBA_MAX_OPS, NUMBA_MAX_INPUTS = 600, 200


def build(graph: Graph, target: Target) -> Kernel:
    parallel = bool(target.options.get("parallel"))
    if is_tensor_graph(graph):
        return TensorKernel(graph, target.name, parallel)
    ops = sum(1 for n in graph.body if n.op != "const")
    if ops > NUMBA_MAX_OPS or len(graph.inputs) > NUMBA_MAX_INPUTS:
        from ..llvm.pointwise import LlvmKernel

        return LlvmKernel(graph, target.name, parallel)
    return NumbaKernel(graph, target.name, parallel)


def emit(graph: Graph, kind: str, target: Target, **opts) -> str:
    """"source": the generated module (for a tensor program: its schedule and
    kernels; for a formula past Numba's sizes, the llvm backend's IR); "llvm":
    the LLVM IR that is compiled."""
    kernel = build(graph, target)
    if not isinstance(kernel, (NumbaKernel, TensorKernel)):  # a big formula: the llvm backend's kernel
        return kernel.optimised_ir() if kind == "llvm" else kernel.ir
    if kind == "llvm" and not isinstance(kernel, NumbaKernel):
        from ...errors import GraphcError

        raise GraphcError("--llvm shows a pointwise kernel; a tensor program's schedule is its source")
    return kernel.llvm() if kind == "llvm" else kernel.source or ""
