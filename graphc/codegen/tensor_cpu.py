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
The schedule itself is `schedule.py` (shared with the CUDA backend);
`TensorKernel.describe()` (`graphc emit F --shape ...`) lists the steps and each
kernel's source.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import numpy as np

from ..ir import DTYPE_NUMPY, Graph, Node, print_graph
from ..shapes import bound
from . import cache
from .kernel import Kernel
from .loader import _first_use, _load
from .numpy_ref import op_step, run_op
from .scalar import indent
from .schedule import Region, Xent, _regions, describe_schedule, region_code, xent_function

# A loop writing over its own input stops LLVM's vectoriser (its overlap check fails, the scalar loop
# runs): on the medium step's ReLU loop 2.0 ms instead of 0.15 ms. Off: speed over 2 MB of memory.
IN_PLACE = False
WHOLE_MNK = 4 * 65536  # OpenBLAS runs a GEMM of at most this m*n*k on one thread
WHOLE_STEP = True  # run the schedule as one Numba function where every step has a Numba form (tensor_step)
POOLS_KEPT = 4  # arenas kept per kernel (one per signature), the most recently used
POOL_SLACK = 1 << 20  # ... and beyond the newest one, at most its size again plus this many bytes


XENT_SOURCE = """import math

import numpy as np
from numba import njit

F = np.{dtype}


""" + xent_function('@njit(error_model="numpy", cache=True, nogil=True)').replace("{", "{{").replace("}", "}}")


def region_source(r: Region, dtype: str) -> str:
    """`region`: a Numba loop nest over the region's shape, inputs broadcast by
    indexing, sums accumulated in the loop."""
    c = region_code(r, "cpu")
    nd = len(r.shape)
    lines = [
        "import math",
        "",
        "import numpy as np",
        "from numba import njit",
        "",
        f"F = np.{DTYPE_NUMPY[dtype]}",
        "",
        "",
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


VIEW_OPS = ("transpose", "reshape", "broadcast_to")  # NumPy steps whose result may view their argument


def _nbytes(n: Node, dims: dict[str, int]) -> int:
    return math.prod(bound(n.shape, dims)) * np.dtype(DTYPE_NUMPY[n.dtype]).itemsize


class TensorKernel(Kernel):
    """Runs a tensor program's schedule: NumPy steps and compiled fused regions."""

    def __init__(self, graph: Graph, target: str, parallel: bool):
        super().__init__(graph)
        self.target = target
        self.parallel = parallel
        self.steps = _regions(graph)
        self._kernel_sources()
        self._compiled: dict[str, object] = {}
        self._plan = None
        self._arenas: dict[tuple, tuple] = {}  # signature -> (arena, views, bytes), least recently used first
        self._recent: tuple | None = None
        self._fits: dict[tuple, bool] = {}
        self._whole_plans: dict[tuple, tuple] = {}
        self._lock = threading.Lock()
        self._prepare()

    @property
    def source(self) -> str:
        """`fn.source`: the schedule and its kernels (`describe`), made when asked for."""
        return self.describe()

    @source.setter
    def source(self, value) -> None:  # the base class's placeholder; the text is derived
        pass

    def _kernel_sources(self) -> None:
        """Each fused step's source and cache key (the Numba modules)."""
        ir_text = print_graph(self.graph)
        for s in self.steps:
            if isinstance(s, Region):
                s.source = region_source(s, self.graph.dtype)
                s.key = cache.cache_key(ir_text, self.target, "region", s.source)
            elif isinstance(s, Xent):
                s.source = XENT_SOURCE.format(dtype=DTYPE_NUMPY[self.graph.dtype])
                s.key = cache.cache_key(self.target, "xent", s.source)

    def describe(self) -> str:
        """The schedule: each step with its shapes, then each fused kernel's source."""
        text = describe_schedule(self.graph, self.steps, self.target)
        if self._whole is None:
            return text
        head, sep, rest = text.partition("\n\n# ----")
        return (head + "\n\nAll steps run in one Numba function (the GEMMs as np.dot into the planned buffers): "
                "`step` below; the kernels are the functions it calls.\n\n# ---- step\n" + self._whole[1])

    def _run_xent(self, step: tuple, env: list, buffer) -> None:
        from ..tensor_ops import _check_labels

        _, x, si, yi, outs, dt = step
        scores, labels = env[si], env[yi]
        n, c = scores.shape
        _check_labels(labels, c)
        p = buffer(outs[1], (n, c), dt)
        d = buffer(outs[2], (n, c), dt) if x.diff is not None else np.empty((0, c), dtype=dt)
        losses = np.empty(n, dtype=dt)
        if n and c:
            self._region_fn(x, "xent")(scores, labels, p, d, losses, x.diff is not None)
        red = x.ce.attrs["reduction"]
        loss = losses if red == "none" else dt.type(np.sum(losses) if red == "sum" else np.mean(losses))
        env[outs[0]], env[outs[1]] = loss, p
        if x.diff is not None:
            env[outs[2]] = d

    def _region_fn(self, r: Region | Xent, name: str = "region"):
        fn = self._compiled.get(r.key)
        if fn is None:
            mod = _load(r.key, r.source)
            fn = self._compiled[r.key] = _first_use(r.key, mod, lambda m: getattr(m, name))
        return fn

    def _prepare(self) -> None:
        """Slots instead of dicts: each value has an index; steps become tuples.
        Then the memory plan's static half: which values live in the pool, from
        which step to which."""
        slot: dict[int, int] = {}
        for n in self.graph.inputs:
            slot[id(n)] = len(slot)
        self._consts = []
        for n in self.graph.body:
            if n.op == "const":
                self._consts.append((len(slot), np.dtype(DTYPE_NUMPY[n.dtype]).type(n.value)))
                slot[id(n)] = len(slot)
        out_ids = {id(v) for _, v in self.graph.outputs}
        plan, pooled, reads, made = [], {}, [], []  # pooled: slot -> (shape, dtype); reads/made: per step

        self._made: dict[int, tuple] = {}  # slot -> (shape, dtype) of each value a step writes into a buffer

        def keep(n: Node, shape: tuple | None = None) -> int:
            k = slot[id(n)] = len(slot)
            self._made[k] = (shape if shape is not None else n.shape, np.dtype(DTYPE_NUMPY[n.dtype]))
            if id(n) not in out_ids:
                pooled[k] = self._made[k]
            return k

        for s in self.steps:
            if isinstance(s, Xent):
                ins = [slot[id(a)] for a in s.ce.args]
                slot[id(s.ce)] = len(slot)  # the loss itself is a NumPy scalar or vector
                ks = [slot[id(s.ce)]] + [keep(n) for n in s.nodes[1:]]
                plan.append(("xent", s, *ins, ks, np.dtype(DTYPE_NUMPY[s.ce.dtype])))
            elif isinstance(s, Region):
                ins = [slot[id(a)] for a in s.inputs]
                plan.append((True, s, ins,
                             [np.dtype(DTYPE_NUMPY[a.dtype]).type if not a.shape else None for a in s.inputs],
                             [(keep(o), np.dtype(DTYPE_NUMPY[o.dtype])) for o in s.outputs],
                             [(keep(n, n.shape or (1,)), n.shape, np.dtype(DTYPE_NUMPY[n.dtype]))
                              for n in s.reductions]))
            elif s.op == "matmul" and s.type.ndim == 2 and s.args[0].type.ndim == 2 and s.args[1].type.ndim == 2:
                ins = [slot[id(a)] for a in s.args]
                plan.append(("gemm", *ins, keep(s), np.dtype(DTYPE_NUMPY[s.dtype])))
            else:
                ins = [slot[id(a)] for a in s.args]
                slot[id(s)] = len(slot)
                fn, attrs, symbolic, dt = op_step(s)
                plan.append((False, fn, ins, attrs, symbolic, dt, slot[id(s)]))
            reads.append(ins)
            made.append([slot[id(n)] for n in (s.nodes + getattr(s, "reductions", []) if not isinstance(s, Node)
                                               else [s]) if id(n) in slot])
        self._plan = plan
        self._nslots = len(slot)
        self._outs = [(slot[id(v)], DTYPE_NUMPY[v.dtype]) for _, v in self.graph.outputs]
        self._out_slots = {k for k, _ in self._outs}
        # lifetimes: a value lives from the step that makes it to the last step that reads it, or
        # reads a view of it (a transpose or reshape of a pooled buffer is that buffer)
        last: dict[int, int] = {k: len(plan) for k in self._out_slots}  # outputs are read after the last step
        for i in reversed(range(len(plan))):
            s = self.steps[i]
            for k in made[i]:
                last.setdefault(k, i)
            extend = isinstance(s, Node) and s.op in VIEW_OPS
            for k in reads[i]:
                last.setdefault(k, i)
                if extend:
                    last[k] = max(last[k], last.get(made[i][0], i))
        first = {k: i for i in range(len(plan)) for k in made[i]}
        lives = {k: [first[k], last.get(k, first[k])] for k in pooled}
        # in place: a fused loop reads each full-shape input at the index it writes, so an
        # output may take the buffer of an input that dies in that loop (dh = g * mask over g)
        self._alias: dict[int, int] = {}
        for i, (step, s) in enumerate(zip(plan, self.steps)):
            if step[0] is not True or not IN_PLACE:
                continue
            free = [k for k, a in zip(step[2], s.inputs) if k in pooled and a.shape == s.shape
                    and lives[self._alias.get(k, k)][1] == i]
            for k, dt in step[4]:
                take = next((j for j in free if k in pooled and pooled[j][1] == dt), None)
                if take is not None:
                    free.remove(take)
                    root = self._alias.get(take, take)
                    self._alias[k] = root
                    lives[root][1] = max(lives[root][1], lives.pop(k)[1])
        self._lives = {k: tuple(v) for k, v in lives.items()}
        self._pooled = pooled
        self._release: list[list[int]] = [[] for _ in plan]
        for i, ks in enumerate(made):
            for k in ks:
                if k not in pooled and k not in self._out_slots:
                    self._release[min(last.get(k, i), len(plan) - 1)].append(k)  # a NumPy result is dropped after its last reader
        self._whole_step(plan)

    def _whole_step(self, plan: list) -> None:
        """The one-function form of the schedule (tensor_step), where every step has one."""
        from .tensor_step import dims_of, scipy_blas, whole_step_source

        self._whole = None
        if not WHOLE_STEP or not scipy_blas():
            return
        bufs = []  # slots whose values the steps write into buffers, in plan order
        for step in plan:
            if step[0] is True:
                bufs += [k for k, _ in step[4]] + [k for k, _, _ in step[5]]
            elif step[0] == "xent":
                bufs += step[4][1:]
            elif step[0] == "gemm":
                bufs.append(step[3])
        n_in = len(self.graph.inputs)
        src = whole_step_source(self.graph, self.steps, plan, bufs, [k for k, _ in self._outs], n_in, self._consts)
        if src is None:
            return
        self._whole = (cache.cache_key(self.target, "step", src), src, bufs, dims_of(self.graph))

    def _plan_layout(self, dims: dict[str, int]) -> tuple[dict[int, int], int]:
        """The pool's plan for these dimensions, without making it: each pooled value's
        byte offset (one no value alive at the same time uses: the biggest placed first,
        each at the lowest offset free over its lifetime) and the pool's size. Python
        integers throughout, so asking about any size neither allocates nor overflows."""
        placed: list[tuple[int, int, int, int]] = []  # (offset, end, first step, last step)
        offsets: dict[int, int] = {}
        size_of = {k: -(-math.prod(bound(sh, dims)) * dt.itemsize // 64) * 64 for k, (sh, dt) in self._pooled.items()}
        for k in sorted(self._lives, key=lambda k: (-size_of[k], self._lives[k])):  # the biggest first
            nbytes = size_of[k]
            lo, hi = self._lives[k]
            busy = sorted((a, b) for a, b, f, t in placed if f <= hi and lo <= t)
            off = 0
            for a, b in busy:
                if off + nbytes <= a:
                    break
                off = max(off, b)
            offsets[k] = off
            placed.append((off, off + nbytes, lo, hi))
        offsets.update((k, offsets[root]) for k, root in self._alias.items())
        return offsets, max((b for _, b, _, _ in placed), default=0)

    def _layout(self, dims: dict[str, int]) -> tuple[np.ndarray, dict[int, np.ndarray], int]:
        """The pool for these dimensions: one arena laid out by `_plan_layout`, each
        pooled value a view into it. Arenas are kept per signature, the most recently
        used first, at most POOLS_KEPT of them and, beyond the newest, no more than it
        again (plus POOL_SLACK bytes): a kernel that met many sizes (a symbolic batch
        dimension) holds about twice the memory its current size needs, not one pool
        per size it ever saw."""
        key = tuple(sorted(dims.items()))
        got = self._arenas.get(key)
        if got is not None:
            if key != self._recent:  # least recently used first: this one moves to the end
                self._arenas[key] = self._arenas.pop(key)
                self._recent = key
            return got
        offsets, size = self._plan_layout(dims)
        arena = np.empty(size, dtype=np.uint8)
        views = {}
        for k, off in offsets.items():
            shape, dt = self._pooled[k]
            shape = bound(shape, dims)
            views[k] = arena[off:off + math.prod(shape) * dt.itemsize].view(dt).reshape(shape)
        got = self._arenas[key] = (arena, views, size)
        self._recent = key
        total = sum(s for _, _, s in self._arenas.values())
        while len(self._arenas) > 1 and (len(self._arenas) > POOLS_KEPT or total > 2 * size + POOL_SLACK):
            old = next(iter(self._arenas))
            total -= self._arenas.pop(old)[2]
            self._whole_plans.clear()  # they hold views of the pools
        return got

    def release_pools(self) -> None:
        """Drop every pool (and what holds views of them); the next call makes its own."""
        with self._lock:
            self._arenas.clear()
            self._whole_plans.clear()
            self._fits.clear()
            self._recent = None

    def planned_memory(self, dims: dict[str, int]) -> dict[str, int]:
        """Bytes, for these dimensions: `pool` (intermediates, shared by lifetime and
        kept between calls), `outputs` (new arrays per call), `temporaries` (the most
        NumPy-step results alive at once) and `peak` (their sum; the arguments and
        NumPy's own scratch inside one op are not counted). Computed from the plan:
        asking allocates nothing, whatever the sizes."""
        if self._plan is None:
            self._prepare()
        _, pool = self._plan_layout(dims)
        nbytes = {}
        for step, s in zip(self._plan, self.steps):
            if isinstance(s, Node) and step[0] is False and s.op not in VIEW_OPS:  # a view allocates nothing
                nbytes[step[-1]] = _nbytes(s, dims)
        outs = sum(_nbytes(v, dims) for _, v in self.graph.outputs)
        live, most = 0, 0
        for i, step in enumerate(self._plan):
            if step[0] is False and step[-1] not in self._out_slots:
                live += nbytes.get(step[-1], 0)
            most = max(most, live)
            live -= sum(nbytes.get(k, 0) for k in self._release[i])
        return {"pool": pool, "outputs": outs, "temporaries": most, "peak": pool + outs + most}

    def pool_bytes(self) -> int:
        """Bytes of the pool held between calls (all signatures kept)."""
        return sum(a.nbytes for a, _, _ in self._arenas.values())

    def run_tensor(self, arrays: Sequence[np.ndarray], dims: dict[str, int], out: list | None = None) -> list:
        with self._lock:  # the pool's buffers belong to one call at a time
            return self._run_tensor(arrays, dims, out)

    def _run_tensor(self, arrays: Sequence[np.ndarray], dims: dict[str, int], out: list | None) -> list:
        if self._plan is None:
            self._prepare()
        arena, pool, _ = self._layout(dims)
        given = dict(zip((k for k, _ in self._outs), out)) if out is not None else {}

        def buffer(k: int, shape: tuple, dt: np.dtype) -> np.ndarray:
            b = pool.get(k)
            if b is None:
                b = given.get(k)
                if b is None or b.shape != shape:  # a 0-d output accumulates in a cell, then is copied
                    b = np.empty(shape, dtype=dt)
            return b

        if self._whole is not None and self._whole_fits(dims):
            return self._run_whole(arrays, dims, buffer, given)
        env: list = [None] * self._nslots
        for k, (n, a) in enumerate(zip(self.graph.inputs, arrays)):
            env[k] = a if type(a) is np.ndarray and a.dtype == DTYPE_NUMPY[n.dtype] else \
                np.asarray(a, dtype=DTYPE_NUMPY[n.dtype])
        for k, v in self._consts:
            env[k] = v
        with np.errstate(all="ignore"):
            for i, step in enumerate(self._plan):
                kind = step[0]
                if kind is True:
                    _, r, ins, scal, outs, sums = step
                    shape = bound(r.shape, dims)
                    args = [env[k] if t is None else t(env[k]) for k, t in zip(ins, scal)]
                    out_arrays = [buffer(k, shape, dt) for k, dt in outs]
                    acc = [buffer(k, bound(sh, dims) or (1,), dt) for k, sh, dt in sums]
                    for a in acc:
                        a.fill(0)
                    if 0 not in shape:
                        self._region_fn(r)(*shape, *args, *out_arrays, *acc)
                    for (k, _), v in zip(outs, out_arrays):
                        env[k] = v
                    for (k, sh, _), v in zip(sums, acc):
                        env[k] = v if sh else v[0]
                elif kind is False:
                    _, fn, ins, attrs, symbolic, dt, k = step
                    env[k] = run_op(fn, [env[j] for j in ins], attrs, symbolic, dims, dt)
                elif kind == "gemm":
                    _, a, b, k, dt = step
                    x, y = env[a], env[b]
                    env[k] = np.matmul(x, y, out=buffer(k, (x.shape[0], y.shape[1]), dt))
                else:
                    self._run_xent(step, env, buffer)
                for k in self._release[i]:
                    env[k] = None
        results = []
        for k, dt in self._outs:
            v = env[k]
            b = given.get(k)
            if b is not None:
                if v is not b:
                    np.copyto(b, v)
                v = b
            elif type(v) is not np.ndarray or v.dtype != dt:
                v = np.asarray(v, dtype=dt)
            elif arena.size and v.base is not None and np.may_share_memory(v, arena):
                v = v.copy()  # a view of a pooled buffer (a reshape of an intermediate): the caller keeps it
            results.append(v)
        return results

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
                int(np.prod(bound((s.shape[0], s.shape[1], s.args[0].shape[1]), dims), dtype=np.int64)) <= WHOLE_MNK
                for s in self.steps if isinstance(s, Node) and s.op == "matmul")
        return fits

    def _run_whole(self, arrays, dims, buffer, given) -> list:
        key, src, bufs, names = self._whole
        fn = self._compiled.get(key)
        if fn is None:
            mod = _load(key, src)
            fn = self._compiled[key] = _first_use(key, mod, lambda m: m.step)
        plan = self._whole_plans.get(tuple(dims.values()))
        if plan is None:  # per signature: the pooled buffers, and the shapes of the fresh ones
            _, pool, _ = self._layout(dims)
            kinds = [(np.dtype(DTYPE_NUMPY[n.dtype]).type if not n.shape else None, np.dtype(DTYPE_NUMPY[n.dtype]))
                     for n in self.graph.inputs]
            made = [(k, pool.get(k), bound(self._made[k][0], dims), self._made[k][1]) for k in bufs]
            ends = [(k, bool(v.shape), k in self._made and bool(v.shape), bound(v.shape, dims) or (1,), dt)
                    for (k, dt), (_, v) in zip(self._outs, self.graph.outputs)]
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
        for (k, _), (_, v), b in zip(self._outs, self.graph.outputs, ends):
            r = b if v.shape else b[0]
            g = given.get(k)
            if g is not None and r is not g:
                np.copyto(g, r)
                r = g
            results.append(r)
        return results

    def _bad_labels(self, arrays, dims) -> None:
        """The ArgumentError naming the label the whole-step function found out of range."""
        from ..errors import ArgumentError
        from ..tensor_ops import _check_labels

        for step in self._plan:
            if step[0] == "xent" and step[3] < len(arrays):
                _check_labels(np.asarray(arrays[step[3]]), bound(step[1].ce.args[0].shape, dims)[-1])
        raise ArgumentError("a label is out of range for its number of classes")

    def run(self, arrays, shape, out=None, **options):
        from ..errors import UnsupportedError

        raise UnsupportedError("a tensor program is called through CompiledFunction (shapes are bound there)")
