"""The CPU runner of a tensor `Plan`, shared by the cpu/parallel (Numba) and
llvm backends.

`PlanKernel` schedules and lowers the graph once, owns its `MemoryPlan`, and
runs the steps in order from Python, each by its kind (`run_<kind>`): host
steps as their NumPy forms, GEMMs as NumPy's matmul (BLAS) into their pooled
buffers, and each `LoopStep` and `RowStep` through the function its backend
compiles for it (`loop_function`, `row_function`, each made once per cache key). The backends' functions share one
calling convention: a loop `f(*dims, *inputs, *outputs, *sums)`, the rows
`f(scores, labels, p, d, losses, with_diff)`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence

import numpy as np

from ..ir import Graph
from ..schedule.memory import MemoryPlan
from ..schedule.plan import GemmStep, HostStep, LoopStep, RowStep, ScanStep, lower
from ..schedule.regions import regions
from ..shapes import bound
from ..tensor_ops import resolve_attrs
from .kernel import Kernel
from .numpy_ref import run_op


def _spare(spares: dict[int, np.ndarray], k: int, shape: tuple, dt: np.dtype) -> np.ndarray:
    """A new output array: the one the last call returned for slot k when nothing else refers to it
    any more (its caller dropped it: no one can see it written again), else a new one."""
    r = spares.pop(k, None)
    if r is not None and r.shape == shape and r.dtype == dt and sys.getrefcount(r) <= 2:  # r and the argument
        return r
    return np.empty(shape, dtype=dt)


class PlanKernel(Kernel):
    """Runs a tensor program's plan; a backend subclass supplies `loop_function`,
    `row_function` and `describe`."""

    def __init__(self, graph: Graph, target: str, parallel: bool, in_place: bool = False):
        super().__init__(graph)
        self.target = target
        self.parallel = parallel
        self.steps = regions(graph)  # the schedule: what `describe` lists
        self.plan = lower(graph, self.steps)
        self.memory = MemoryPlan(self.plan, in_place)
        self._compiled: dict[str, Callable] = {}
        self._lock = threading.Lock()
        self._spares: dict[int, np.ndarray] = {}  # output slot -> the array the last call returned there

    # ------------------------------------------------ what a backend supplies

    def loop_function(self, step: LoopStep) -> Callable:
        """The compiled loop nest of a fused region."""
        raise NotImplementedError

    def row_function(self, step: RowStep) -> Callable:
        """The compiled cross_entropy rows."""
        raise NotImplementedError

    def describe(self) -> str:
        """The schedule and its kernels as text."""
        raise NotImplementedError

    def _run_fast(self, arrays: Sequence, dims: dict[str, int], buffer: Callable, given: dict) -> list | None:
        """A backend's faster form of the whole plan for this call; None = not taken."""
        return None

    # ------------------------------------------------ shared

    @property
    def source(self) -> str:
        """`fn.source`: the schedule and its kernels (`describe`), made when asked for."""
        return self.describe()

    @source.setter
    def source(self, value) -> None:  # the base class's placeholder; the text is derived
        pass

    @property
    def _alias(self) -> dict[int, int]:  # in-place aliases (tests ask)
        return self.memory.alias

    def _function(self, step: LoopStep | RowStep) -> Callable:
        key = step.region.key if isinstance(step, LoopStep) else step.xent.key
        fn = self._compiled.get(key)
        if fn is None:
            fn = self._compiled[key] = self.loop_function(step) if isinstance(step, LoopStep) else \
                self.row_function(step)
        return fn

    def planned_memory(self, dims: dict[str, int]) -> dict[str, int]:
        """Bytes for these dimensions (`MemoryPlan.planned`): computed, never allocated."""
        return self.memory.planned(dims)

    def pool_bytes(self) -> int:
        """Bytes of the pool held between calls (all signatures kept)."""
        return self.memory.pool_bytes()

    def release_pools(self) -> None:
        """Drop every pool (and what holds views of them); the next call makes its own."""
        with self._lock:
            self.memory.clear()
            self._spares.clear()

    def run_tensor(self, arrays: Sequence[np.ndarray], dims: dict[str, int], out: list | None = None) -> list:
        with self._lock:  # the pool's buffers belong to one call at a time
            return self._run_tensor(arrays, dims, out)

    def _run_tensor(self, arrays: Sequence[np.ndarray], dims: dict[str, int], out: list | None) -> list:
        plan = self.plan
        arena, pool, _ = self.memory.arena(dims)
        given = dict(zip((v.slot for v in plan.outputs), out)) if out is not None else {}

        spares, self._spares = self._spares, {}

        def buffer(k: int, shape: tuple, dt: np.dtype) -> np.ndarray:
            b = pool.get(k)
            if b is None:
                b = given.get(k)
                if b is None or b.shape != shape:  # a 0-d output accumulates in a cell, then is copied
                    b = _spare(spares, k, shape, dt)
            return b

        fast = self._run_fast(arrays, dims, buffer, given)
        if fast is not None:
            self._keep_spares(fast, given)
            return fast
        env: list = [None] * plan.nslots
        for v, a in zip(plan.inputs, arrays):
            env[v.slot] = a if type(a) is np.ndarray and a.dtype == v.dtype else np.asarray(a, dtype=v.dtype)
        for k, c in plan.consts:
            env[k] = c
        release = self.memory.release
        with np.errstate(all="ignore"):
            for i, step in enumerate(plan.steps):
                getattr(self, "run_" + step.kind)(step, env, dims, buffer)
                for k in release[i]:
                    env[k] = None
        results = []
        for v in plan.outputs:
            r = env[v.slot]
            b = given.get(v.slot)
            if b is not None:
                if r is not b:
                    np.copyto(b, r)
                r = b
            elif type(r) is not np.ndarray or r.dtype != v.dtype:
                r = np.asarray(r, dtype=v.dtype)
            elif arena.size and r.base is not None and np.may_share_memory(r, arena):
                r = r.copy()  # a view of a pooled buffer (a reshape of an intermediate): the caller keeps it
            results.append(r)
        self._keep_spares(results, given)
        return results

    def _keep_spares(self, results: list, given: dict) -> None:
        """Keep the arrays this call returns, whole arrays graphc made, each returned once: the
        next call writes its result into one of them if its caller has let go of it (`_spare`),
        so a training loop's gradients land in memory already mapped, not in new pages that
        fault in one by one (8 MB: 2-13 ms on the machines measured)."""
        seen: dict[int, int] = {}
        for v, r in zip(self.plan.outputs, results):
            if type(r) is np.ndarray and r.ndim and r.base is None and v.slot not in given:
                seen[id(r)] = seen.get(id(r), 0) + 1
                self._spares[v.slot] = r
        for k, r in list(self._spares.items()):
            if seen.get(id(r), 0) > 1:  # one array returned as two outputs: never handed out twice
                del self._spares[k]

    # ------------------------------------------------ one function per step kind

    def run_host(self, s: HostStep, env: list, dims: dict[str, int], buffer: Callable) -> None:
        vals = [env[j] for j in s.ins]
        if s.into:
            attrs = (resolve_attrs(s.attrs, dims) if s.symbolic else s.attrs) or {}
            env[s.out] = s.fn(*vals, out=buffer(s.out, bound(s.node.shape, dims), s.dtype), **attrs)
        else:
            env[s.out] = run_op(s.fn, vals, s.attrs, s.symbolic, dims, s.dtype)

    def run_gemm(self, s: GemmStep, env: list, dims: dict[str, int], buffer: Callable) -> None:
        x, y = env[s.a], env[s.b]
        env[s.out] = np.matmul(x, y, out=buffer(s.out, (x.shape[0], y.shape[1]), s.dtype))

    def run_loop(self, s: LoopStep, env: list, dims: dict[str, int], buffer: Callable) -> None:
        shape = bound(s.region.shape, dims)
        args = [env[k] if t is None else t(env[k]) for k, t in zip(s.ins, s.scalars)]
        outs = [buffer(o.slot, shape, o.dtype) for o in s.outs]
        acc = [buffer(o.slot, bound(o.shape, dims) or (1,), o.dtype) for o in s.sums]
        for a in acc:
            a.fill(0)
        if 0 not in shape:
            self._function(s)(*shape, *args, *outs, *acc)
        for o, v in zip(s.outs, outs):
            env[o.slot] = v
        for o, v in zip(s.sums, acc):
            env[o.slot] = v if o.shape else v[0]

    def run_row(self, s: RowStep, env: list, dims: dict[str, int], buffer: Callable) -> None:
        from ..tensor_ops import check_labels

        scores, labels = env[s.scores], env[s.labels]
        n, c = scores.shape
        check_labels(labels, c)
        dt = s.dtype
        p = buffer(s.softmax, (n, c), dt)
        d = buffer(s.diff, (n, c), dt) if s.diff is not None else np.empty((0, c), dtype=dt)
        losses = np.empty(n, dtype=dt)
        if n and c:
            self._function(s)(scores, labels, p, d, losses, s.diff is not None)
        red = s.reduction
        env[s.loss] = losses if red == "none" else dt.type(np.sum(losses) if red == "sum" else np.mean(losses))
        env[s.softmax] = p
        if s.diff is not None:
            env[s.diff] = d

    def run_scan(self, s: ScanStep, env: list, dims: dict[str, int], buffer: Callable) -> None:
        """A loop: its body compiled once for this target (a kernel of its own, made on the first
        call), called once per step from a host loop; the stacked results written into the
        plan's buffers (`loops.run_loop`)."""
        from ..loops import run_loop
        from .targets import build

        key = f"scan:{id(s)}"
        body = self._compiled.get(key)
        if body is None:
            body = self._compiled[key] = build(s.body, self.target)  # type: ignore[assignment]
        attrs = s.node.attrs
        want = [i for i, v in enumerate(s.outs) if v is not None]
        got = run_loop(attrs, [env[k] for k in s.ins], body.run_tensor, want, dims,  # type: ignore[attr-defined]
                       alloc=lambda i, shape, dt: buffer(s.outs[i].slot, shape, dt))  # type: ignore[union-attr]
        for i in want:
            env[s.outs[i].slot] = got[i]  # type: ignore[union-attr]

    def run(self, arrays, shape, out=None, **options):
        from ..errors import UnsupportedError

        raise UnsupportedError("a tensor program is called through CompiledFunction (shapes are bound there)")
