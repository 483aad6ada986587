"""Compiled tensor programs on the CPU (targets "cpu" and "parallel").

The parallel target runs the same serial loops: BLAS already uses every core
for the matrix products, and a prange loop between two GEMMs measured about
2x slower on the medium MLP step (Numba's and OpenBLAS's threads contend).

A schedule per graph: maximal **fused regions** of elementwise ops over one
shape become one Numba loop nest each (inputs broadcast by index arithmetic,
intermediates in registers, only values needed outside written to memory);
matrix products are NumPy's `matmul` on the host (BLAS; a transpose is a view,
folded into the GEMM call, never copied); the remaining tensor ops (softmax,
cross_entropy, reductions, reshapes) run as their NumPy forms between kernels.
The schedule itself is `schedule.py` (shared with the CUDA backend), lowered to
`plan.py`'s steps and run by `plan_kernel.PlanKernel` (shared with the llvm
backend) in `memory.py`'s buffers; `TensorKernel.describe()` (`graphc emit F --shape ...`) lists the steps and each
kernel's source.
"""

from __future__ import annotations

import numpy as np

from ...ir import DTYPE_NUMPY, Graph, print_graph
from ...schedule.plan import XENT_ROW, GemmStep, LoopStep, RowStep
from ...schedule.regions import Region, Xent, describe_schedule, region_code
from ...shapes import bound
from .. import cache
from ..loader import first_use, load_module
from ..plan_kernel import PlanKernel
from ..scalar import indent, module_header, xent_function

# A loop writing over its own input stops LLVM's vectoriser (its overlap check fails, the scalar loop
# runs): on the medium step's ReLU loop 2.0 ms instead of 0.15 ms. Off: speed over 2 MB of memory.
IN_PLACE = False
WHOLE_MNK = 4 * 65536  # OpenBLAS runs a GEMM of at most this m*n*k on one thread
WHOLE_STEP = True  # run the schedule as one Numba function where every step has a Numba form (tensor_step)


XENT_SOURCE = """import math

import numpy as np
from numba import njit

F = np.{dtype}


""" + xent_function(XENT_ROW, '@njit(error_model="numpy", cache=True, nogil=True)').replace("{", "{{").replace("}", "}}")


def region_source(r: Region, dtype: str) -> str:
    """`region`: a Numba loop nest over the region's shape, inputs broadcast by
    indexing, sums accumulated in the loop."""
    c = region_code(r, "cpu")
    nd = len(r.shape)
    lines = module_header("from numba import njit", DTYPE_NUMPY[dtype]) + [
        '@njit(error_model="numpy", cache=True, nogil=True)',
        f"def region({', '.join(c.params)}):",
    ]
    lines += indent(c.consts + c.scalar_loads, 4)
    pad = 4
    for k in range(nd):
        lines.append(" " * pad + f"for i{k} in range(n{k}):")
        pad += 4
    here = ", ".join(f"i{k}" for k in range(nd))
    stores = [f"{o}[{here}] = {v}" for o, v in c.stores] + [f"{a}[{at}] += {v}" for a, at, v in c.sums]
    lines += indent(c.loads + c.lines + stores, pad)
    return "\n".join(lines) + "\n"


class TensorKernel(PlanKernel):
    """The plan with Numba loop nests and rows; the whole plan as one Numba
    function (tensor_step) where every step has a Numba form."""

    def __init__(self, graph: Graph, target: str, parallel: bool):
        super().__init__(graph, target, parallel, in_place=IN_PLACE)
        ir_text = print_graph(graph)
        for s in self.steps:  # each fused step's source and cache key (the Numba modules)
            if isinstance(s, Region):
                s.source = region_source(s, graph.dtype)
                s.key = cache.cache_key(ir_text, target, "region", s.source)
            elif isinstance(s, Xent):
                s.source = XENT_SOURCE.format(dtype=DTYPE_NUMPY[graph.dtype])
                s.key = cache.cache_key(target, "xent", s.source)
        self._fits: dict[tuple, bool] = {}
        self._whole_plans: dict[tuple, tuple] = {}
        self.memory.on_evict = self._whole_plans.clear  # they hold views of the pools
        self._whole = self._whole_step()

    def describe(self) -> str:
        """The schedule: each step with its shapes, then each fused kernel's source."""
        text = describe_schedule(self.graph, self.steps, self.target)
        if self._whole is None:
            return text
        head, sep, rest = text.partition("\n\n# ----")
        return (head + "\n\nAll steps run in one Numba function (the GEMMs as np.dot into the planned buffers): "
                "`step` below; the kernels are the functions it calls.\n\n# ---- step\n" + self._whole[1])

    def loop_function(self, step: LoopStep):
        r = step.region
        return first_use(r.key, load_module(r.key, r.source), lambda m: m.region)

    def row_function(self, step: RowStep):
        x = step.xent
        return first_use(x.key, load_module(x.key, x.source), lambda m: m.xent)

    def _whole_step(self) -> tuple | None:
        """The one-function form of the plan (tensor_step), where every step has one."""
        from .step import dims_of, scipy_blas, whole_step_source

        if not WHOLE_STEP or not scipy_blas():
            return None
        src = whole_step_source(self.graph, self.plan)
        if src is None:
            return None
        return cache.cache_key(self.target, "step", src), src, dims_of(self.graph)

    def release_pools(self) -> None:
        super().release_pools()
        with self._lock:
            self._fits.clear()

    def _run_fast(self, arrays, dims, buffer, given) -> list | None:
        if self._whole is None or not self._whole_fits(dims):
            return None
        return self._run_whole(arrays, dims, given)

    def _whole_fits(self, dims: dict[str, int]) -> bool:
        """Whether this signature runs as one function: when every GEMM is small enough
        that OpenBLAS runs it on one thread (m*n*k <= 4 * 65536). Numba's np.dot calls
        SciPy's OpenBLAS, NumPy's matmul NumPy's own; above that size both libraries'
        thread pools spin on the same cores (the medium step took twice as long
        alternating with NumPy), so big steps call NumPy's matmul from Python."""
        key = tuple(sorted(dims.items()))
        fits = self._fits.get(key)
        if fits is None:
            if len(self._fits) >= 64:  # one entry per size met: bounded like the pools
                self._fits.clear()
            fits = self._fits[key] = all(
                int(np.prod(bound((s.node.shape[0], s.node.shape[1], s.node.args[0].shape[1]), dims),
                            dtype=np.int64)) <= WHOLE_MNK
                for s in self.plan.steps if isinstance(s, GemmStep))
        return fits

    def _run_whole(self, arrays, dims, given) -> list:
        key, src, names = self._whole
        fn = self._compiled.get(key)
        if fn is None:
            fn = self._compiled[key] = first_use(key, load_module(key, src), lambda m: m.step)
        plan = self._whole_plans.get(tuple(dims.values()))
        if plan is None:  # per signature: the pooled buffers, and the shapes of the fresh ones
            _, pool, _ = self.memory.arena(dims)
            kinds = [(v.dtype.type if not v.shape else None, v.dtype) for v in self.plan.inputs]
            made = [(k, pool.get(k), bound(sh, dims), dt) for k, (sh, dt) in self.plan.buffers.items()]
            ends = [(v.slot, bool(v.shape), v.slot in self.plan.buffers and bool(v.shape), bound(v.shape, dims) or (1,),
                     v.dtype) for v in self.plan.outputs]
            plan = self._whole_plans[tuple(dims.values())] = ([dims[d] for d in names], kinds, made, ends)
        head, kinds, made, ends_plan = plan
        args: list = list(head)
        for (scalar, dt), a in zip(kinds, arrays):
            args.append(scalar(a) if scalar is not None else
                        a if type(a) is np.ndarray and a.dtype == dt and a.flags.c_contiguous else
                        np.ascontiguousarray(a, dtype=dt))
        vals = {}
        for k, view, shape, dt in made:
            vals[k] = view if view is not None else given.get(k) if given.get(k) is not None and \
                given[k].shape == shape else np.empty(shape, dtype=dt)
            args.append(vals[k])
        ends = []
        for k, shaped, written, shape, dt in ends_plan:
            if written:
                ends.append(vals[k])  # written by its step; the end of `step` leaves it alone
            else:
                g = given.get(k) if shaped else None
                ends.append(g if g is not None else np.empty(shape, dtype=dt))
        with np.errstate(all="ignore"):
            ok = fn(*args, *ends)
        if not ok:
            self._bad_labels(arrays, dims)
        results = []
        for v, b in zip(self.plan.outputs, ends):
            r = b if v.shape else b[0]
            g = given.get(v.slot)
            if g is not None and r is not g:
                np.copyto(g, r)
                r = g
            results.append(r)
        return results

    def _bad_labels(self, arrays, dims) -> None:
        """The ArgumentError naming the label the whole-step function found out of range."""
        from ...errors import ArgumentError
        from ...tensor_ops import check_labels

        for s in self.plan.steps:
            if isinstance(s, RowStep) and s.labels < len(arrays):
                check_labels(np.asarray(arrays[s.labels]), bound(s.xent.ce.args[0].shape, dims)[-1])
        raise ArgumentError("a label is out of range for its number of classes")
