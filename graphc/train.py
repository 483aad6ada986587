"""graphc.train_step: a training step -- loss, gradients and the optimizer's update -- as ONE program.

    step = graphc.train_step(loss, graphc.optim.adam(1e-3))
    state = step.optimizer.init(params)
    for X, y in batches:
        params, state, value = step(params, state, X, y)

`loss(params, *data)` is written with graphc.numpy / graphc.nn as for `graphc.value_and_grad`.
The step traces one function of (params, the optimizer's state slots, the step count, the
learning rate, data): the gradient by a nested `graphc.value_and_grad` (it traces into the same
program) and `Optimizer.apply` on the tracers (the rule the eager `Optimizer.update` runs, so the
two compute the same formula). It is traced and compiled once per signature by `graphc.jit`'s
machinery (`trace.Traced`: one program for every batch size after a second size is met, a bounded
LRU of signatures); the step count and the learning rate are scalar inputs, the schedule evaluated
on the host at the state's count, so neither retraces.

What fuses (the seed's net with Adam on llvm, as `step.describe(params, state, *data)` prints it):
a weight's gradient is finished by the loop after its GEMM (`X.T @ dh`, then + reg*W1), and the
update joins that loop: the first moment's lerp, (1 - b2)*g*g, often the whole update, and the
loss's sum(W1**2) as an epilogue of the same pass. Where it does not all fit, the rest of the update
is a second loop over the weight (second moment, denominator, new weight) or `b2 * v` runs as a
NumPy step before the loop: the schedule's greedy region former starts a region at `b2 * v`, which
reads nothing but an input, and does not merge it into the gradient's loop (schedule/regions.py).
A bias gradient is a sum accumulated in the loop that makes dh, complete only when that loop ends,
so its whole update is one loop over the bias after it. The bias corrections and step size are a
few 0-d steps. What the fused update costs over the loss and gradient alone: benchmarks/train.py.

`donate=False` (the default): the caller's params and state are never written; each step returns
new arrays (the program's outputs). `donate=True` (JAX's donate_argnums): the new params and state
are written into the caller's arrays, which come back in the returned pytrees (the donated inputs
are not to be reused otherwise; pass the returned ones). On the plan-running targets (llvm, cpu,
parallel) the plan writes an output straight into its donated array when every read of that input
comes first, or -- llvm, whose loops are explicit vectors -- when the fused loop that writes it is
the last to read the input, at the same index: for the seed net with Adam that is every parameter
and moment, so a donated step copies nothing. Otherwise (Numba's loops would lose LLVM's vectoriser
writing over their input; an aux that returns a parameter reads it after the program) the output is
written into a buffer the step keeps per signature and copied over after the program ran. Either
way no parameter-sized array is allocated per step (tests/test_train.py measures it with
tracemalloc: a few kB of 0-d and data-sized NumPy steps). The numpy target and programs of scalars
only run the program into new arrays and copy them over.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Sequence
from numbers import Real
from typing import Any

import numpy as np

from .backends.targets import get_target
from .describe import describe
from .errors import ArgumentError, ShapeError
from .optim import Optimizer, OptimizerError
from .trace import Traced, Tracer, TracingError, TreeDef, flatten, unflatten, value_and_grad

OWNED_KEPT = 4  # signatures (argument structure and sizes) whose donation buffers a step keeps


class TrainStep:
    """`step(params, opt_state, *data) -> (params, opt_state, loss[, aux])`: one compiled program
    per signature (see the module docstring). `traced` is the underlying `graphc.jit` object
    (`traced.cache_info()`, `traced.lower(...)`); `traces` counts the times the step was traced."""

    def __init__(self, loss: Callable, optimizer: Optimizer, has_aux: bool = False, donate: bool = False,
                 target: str | None = None):
        if not callable(loss):
            raise ArgumentError(f"graphc.train_step: loss must be a function loss(params, *data), not {describe(loss)}")
        if not isinstance(optimizer, Optimizer):
            raise ArgumentError(f"graphc.train_step: optimizer must be a graphc.optim optimizer (graphc.optim.adam(...) "
                                f"and kin), not {describe(optimizer)}")
        for name, flag in (("has_aux", has_aux), ("donate", donate)):
            if not isinstance(flag, (bool, np.bool_)):
                raise ArgumentError(f"graphc.train_step: {name} must be True or False, not {describe(flag)}")
        t = get_target(target)
        if not t.tensors:
            raise ArgumentError(f"graphc.train_step: target {t.name!r} does not run traced (tensor) programs: "
                                "use one of llvm, cpu, parallel, numpy")
        self.loss, self.optimizer = loss, optimizer
        self.has_aux, self.donate, self.target = bool(has_aux), bool(donate), target
        self.traces = 0
        self.traced = Traced(self._program, "jit", target=target)
        self._dask_vg: Any = None  # value_and_grad of the loss, for data given as Dask arrays
        self._owned: dict[tuple, tuple] = {}  # (signature id, sizes) -> (signature, per donated output a buffer or None)
        self._info: dict[int, list] = {}  # signature id -> what a call needs of it (`_signature`)
        self._lock = threading.Lock()  # the kept buffers belong to one call at a time
        self.__wrapped__ = loss
        self.__name__ = f"train_step({getattr(loss, '__name__', 'loss')})"

    def __repr__(self) -> str:
        return (f"graphc.train_step({getattr(self.loss, '__name__', self.loss)!s}, {self.optimizer!r}, "
                f"has_aux={self.has_aux}, donate={self.donate}, target={self.target!r})")

    def cache_info(self) -> dict[str, int]:
        """The traced program's cache: hits (steps run without tracing), misses (traces), signatures."""
        return self.traced.cache_info()

    # ------------------------------------------------------------ the traced function

    def _checked_loss(self, params: Any, data: tuple) -> Any:
        """The user's loss, refused by name unless it gives a traced scalar (and aux, with has_aux)."""
        out = self.loss(params, *data)
        value = out
        if self.has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TracingError(f"graphc.train_step: has_aux=True, so loss must return (value, aux), not "
                                   f"{describe(out)}")
            value = out[0]
        if not isinstance(value, Tracer):
            raise TracingError(f"graphc.train_step: loss returned {describe(value)}, not a value computed from "
                               "params: the loss must depend on the parameters it trains")
        if value.ndim != 0:
            raise ShapeError(f"graphc.train_step: loss returned a value of shape {tuple(value.shape)}; the loss "
                             "must be a scalar (0-d): reduce it, e.g. with graphc.numpy.mean")
        return out

    def _program(self, params: Any, slots: dict, count: Any, lr: Any, data: tuple) -> tuple:
        """What is traced: loss, gradient and update, the new params, slots and the loss (and aux)."""
        self.traces += 1
        check_state_shapes(params, slots)
        got = value_and_grad(self._checked_loss, has_aux=self.has_aux)(params, data)
        (value, aux), grads = got if self.has_aux else ((got[0], None), got[1])
        new_params, new_state = self.optimizer.apply(grads, {"step": count, **slots}, params, lr=lr)
        out = (new_params, {k: new_state[k] for k in slots}, value)
        return (*out, aux) if self.has_aux else out

    # ------------------------------------------------------------ a step

    def __call__(self, params: Any, opt_state: dict, *data: Any) -> tuple:
        if any(type(leaf).__module__.startswith("dask.") for leaf in flatten(data, "data")[0]):
            return self._over_dask(params, opt_state, data)
        opt = self.optimizer
        count = step_count(opt_state)
        slots = state_slots(opt, opt_state)
        lr = opt.learning_rate(count)
        try:
            sig, leaves, trees, dims = self.traced._entry((params, slots, float(count), lr, data), {})
        except ArgumentError:
            diagnose(params, slots, data)  # names the leaf when it can
            raise
        dt = sig.np_dtype
        arrays = [x if type(x) is np.ndarray else np.asarray(x, dtype=dt if k not in sig.int_slots else None)
                  for k, x in enumerate(leaves)]
        info = self._info.get(id(sig))
        if info is None or info[0] is not sig:
            info = self._signature(sig, trees[0])
        _, order, n_p, _ = info
        n_donated = n_p * (1 + len(opt.slots))
        if self.donate:
            results = self._run_donated(sig, info, arrays, leaves[:n_donated], dims)
        else:
            got = sig.fn.run_tensor(arrays, dims)
            inputs = {id(a) for a in arrays}
            results = [got[j] for j in order]
            results = [r.copy() if id(r) in inputs else r for r in results]  # never hand back the caller's array
        new_params = unflatten(trees[0], results[:n_p])
        state: dict[str, Any] = {"step": count + 1}
        by_name = {name: unflatten(trees[0], results[n_p * (1 + j):n_p * (2 + j)])
                   for j, name in enumerate(sorted(slots, key=str))}  # flatten's order of a dict's keys
        state.update((k, by_name[k]) for k in opt.slots)
        value = float(results[n_donated])
        if not self.has_aux:
            return new_params, state, value
        aux = [r if np.ndim(r) else float(r) for r in results[n_donated + 1:]]
        return new_params, state, value, unflatten(sig.out_tree.children[3], aux)

    def _over_dask(self, params: Any, opt_state: dict, data: tuple) -> tuple:
        """A step over Dask data chunked by rows: the loss's value and gradients computed chunk by
        chunk on the current scheduler (a cluster's workers when a Client is active) by
        graphc.dask, from the one traced and compiled program every step reuses; then the
        optimizer's update on the host (the same rule as the fused step's)."""
        from .dask import value_and_grad_over_chunks

        if self.has_aux:
            raise ArgumentError("graphc.train_step over Dask data: has_aux=True is not offered (an aux value is "
                                "per chunk, not a sum over rows)")
        vg = self._dask_vg
        if vg is None:
            vg = self._dask_vg = value_and_grad(self.loss, target=self.target)
        value, grads = value_and_grad_over_chunks(vg, (params, *data), {})
        new_params, state = self.optimizer.update(grads, opt_state, params, donate=self.donate)
        return new_params, state, float(value)

    def _signature(self, sig: Any, params_tree: TreeDef) -> list:
        """What a call needs of a compiled signature, found once: [signature, the kernel's position of
        each flattened result (out0, out1, ...), the number of params leaves, the donation plan]."""
        names = list(sig.out_names)
        info = [sig, [names.index(f"out{k}") for k in range(len(names))], count_leaves(params_tree), None]
        if len(self._info) >= 4 * OWNED_KEPT:
            self._info.pop(next(iter(self._info)))
        self._info[id(sig)] = info
        return info

    def _run_donated(self, sig: Any, info: list, arrays: list, targets: list, dims: dict) -> list:
        """The program with its new params and state written into `targets` (the caller's arrays)."""
        order = info[1]
        for k, t in enumerate(targets):
            if type(t) is not np.ndarray or not t.flags.writeable or t.dtype != sig.np_dtype:
                what = describe(t) + (" (read-only)" if type(t) is np.ndarray and not t.flags.writeable else "")
                raise ArgumentError(f"graphc.train_step: donate=True, but {donated_name(sig, k)} is {what}: "
                                    "donated params and state must be writeable NumPy arrays of the program's dtype "
                                    f"({sig.np_dtype.name})")
        if len({id(t) for t in targets}) != len(targets):
            raise ArgumentError("graphc.train_step: donate=True, but one array is given for two params or state "
                                "leaves: each donated leaf must be an array of its own")
        from .backends.plan_kernel import PlanKernel

        kernel = sig.fn
        if not isinstance(kernel, PlanKernel):  # the numpy target, a program of scalars: results, then copies
            got = kernel.run_tensor(arrays, dims)
            return self._copy_back([got[j] for j in order], targets)
        with self._lock:
            if info[3] is None:
                info[3] = written_in_place(kernel, len(targets), order)
            direct = info[3]
            key = (id(sig), tuple(dims.items()))
            owned = self._owned.get(key)
            if owned is None or owned[0] is not sig:
                if len(self._owned) >= OWNED_KEPT:
                    self._owned.pop(next(iter(self._owned)))
                owned = self._owned[key] = (sig, [None if d else np.empty_like(t) for d, t in zip(direct, targets)])
            out: list = [None] * len(order)
            for k, t in enumerate(targets):
                out[order[k]] = t if direct[k] else owned[1][k]
            got = kernel.run_tensor(arrays, dims, out)
            return self._copy_back([got[j] for j in order], targets)

    @staticmethod
    def _copy_back(results: list, targets: list) -> list:
        """Results into the donated arrays (those not written there already); any other result that
        is a donated array itself is copied first, so it keeps the value it had."""
        n = len(targets)
        donated = {id(t) for t in targets}
        rest = [r.copy() if id(r) in donated else r for r in results[n:]]
        pending = [(t, r) for t, r in zip(targets, results[:n]) if r is not t]
        if any(id(r) in donated for _, r in pending):  # a new value that is another donated input: read first
            pending = [(t, r.copy() if id(r) in donated else r) for t, r in pending]
        for t, r in pending:
            np.copyto(t, r)
        return [*targets, *rest]

    def describe(self, params: Any, opt_state: dict, *data: Any) -> str:
        """The compiled step's schedule for these arguments (traced and compiled if needed)."""
        count = step_count(opt_state)
        slots = state_slots(self.optimizer, opt_state)
        sig = self.traced._entry((params, slots, float(count), self.optimizer.learning_rate(count), data), {})[0]
        text = getattr(sig.fn, "describe", None)
        return text() if text is not None else sig.program.explain()


def train_step(loss: Callable, optimizer: Optimizer, has_aux: bool = False, donate: bool = False,
               target: str | None = None) -> TrainStep:
    """`step(params, opt_state, *data) -> (params, opt_state, loss[, aux])`: `loss(params, *data)`'s
    value and gradient and `optimizer`'s update as one compiled program (traced once per signature;
    the learning rate schedule evaluated per step on the host and passed in). `opt_state` is
    `optimizer.init(params)`'s, then each step's. `has_aux`: loss returns (value, aux), and aux comes
    back last. `donate=True` writes the new params and state into the given arrays (JAX's
    donate_argnums); by default they are left as they were. See graphc.train."""
    return TrainStep(loss, optimizer, has_aux, donate, target)


# ------------------------------------------------------------------ checks and the donation plan


def step_count(opt_state: Any) -> int:
    """The state's count of updates taken: an int >= 0 (or a whole float)."""
    if not isinstance(opt_state, dict) or "step" not in opt_state:
        raise OptimizerError(f"graphc.train_step: opt_state must be the dict optimizer.init(params) (or a step) "
                             f"returned, with 'step', not {describe(opt_state)}")
    c = opt_state["step"]
    ok = not isinstance(c, (bool, np.bool_)) and isinstance(c, (Real, np.ndarray)) and np.ndim(c) == 0 and \
        float(c) >= 0 and float(c).is_integer()
    if not ok:
        raise OptimizerError(f"graphc.train_step: opt_state['step'] must be a whole number >= 0 (the count of "
                             f"updates taken), not {describe(c)} ({c!r})")
    return int(c)


def state_slots(opt: Optimizer, opt_state: dict) -> dict:
    """The state's slots (all but 'step'), refused unless they are the optimizer's."""
    if set(opt_state) != {"step", *opt.slots}:
        have = sorted(set(opt_state) - {"step"}, key=str)
        raise OptimizerError(f"graphc.train_step: opt_state has slots {have}, but {opt!r} keeps {list(opt.slots)}: "
                             "pass the state optimizer.init(params) made")
    return {k: opt_state[k] for k in opt.slots}


def count_leaves(td: TreeDef) -> int:
    return 1 if td.kind == "leaf" else sum(count_leaves(c) for c in td.children)


def _leaf_names(paths: Sequence[str], head: str) -> list[str]:
    return [p.removeprefix(head).removeprefix("_") or "at the top" for p in paths]


def check_state_shapes(params: Any, slots: dict) -> None:
    """Each state slot has the structure of params and each leaf its parameter's shape (at trace time,
    on tracers: once per signature)."""
    p_leaves, p_paths, p_tree = flatten(params, "params")
    names = _leaf_names(p_paths, "params")
    for slot, tree in slots.items():
        leaves, paths, s_tree = flatten(tree, slot)
        if s_tree != p_tree:
            raise OptimizerError(f"graphc.train_step: opt_state[{slot!r}] does not have the structure of params "
                                 f"(params has leaves {names}, opt_state[{slot!r}] {_leaf_names(paths, slot)}): "
                                 "pass the state optimizer.init(params) made")
        for p, x, name in zip(p_leaves, leaves, names):
            ps, xs = tuple(map(str, np.shape(p))), tuple(map(str, np.shape(x)))
            if ps != xs:
                raise ShapeError(f"graphc.train_step: opt_state[{slot!r}] leaf {name} has shape "
                                 f"({', '.join(xs)}{',' if len(xs) == 1 else ''}), its parameter "
                                 f"({', '.join(ps)}{',' if len(ps) == 1 else ''}): pass the state "
                                 "optimizer.init(params) made")


def diagnose(params: Any, slots: dict, data: tuple) -> None:
    """After the tracer refused the arguments: name the leaf whose float dtype differs from the
    params' (a float64 state for float32 params, float64 data ...); nothing if none does."""
    p_leaves, p_paths, _ = flatten(params, "params")
    dtypes = {np.asarray(x).dtype for x in p_leaves if isinstance(x, np.ndarray) and x.dtype.kind == "f"}
    if len(dtypes) > 1:
        raise ArgumentError(f"graphc.train_step: params mix float dtypes {sorted(d.name for d in dtypes)}: use one")
    if not dtypes:
        return
    (want,) = dtypes
    named = [(f"opt_state[{s!r}]", t) for s, t in slots.items()] + [(f"data argument {k}", d) for k, d in enumerate(data)]
    for where, tree in named:
        leaves, paths, _ = flatten(tree, "")
        for x, path in zip(leaves, paths):
            if isinstance(x, np.ndarray) and x.dtype.kind == "f" and x.dtype != want:
                leaf = path.strip("_")
                raise ArgumentError(f"graphc.train_step: {where}{f' leaf {leaf}' if leaf else ''} is {describe(x)}, "
                                    f"the params are {want.name}: a step computes in one float dtype")


def written_in_place(kernel: Any, n: int, order: list[int]) -> list[bool]:
    """Per donated output k (input k's new value), whether the plan may write it straight into input
    k's array: when the step that writes it comes after every read of that input (through views --
    transposes, reshapes -- too; an output that is the input, or views it, is read at the end), or, on
    a kernel whose loops are explicit vectors (`explicit_vectors`), when that step is the fused loop
    that reads the input last, at the index it writes (a full-shape input, not a view nor a
    broadcast): each vector of inputs is loaded before the outputs at its index are stored."""
    from .schedule.memory import VIEW_OPS
    from .schedule.plan import HostStep, LoopStep

    plan = kernel.plan
    steps = plan.steps
    end = len(steps)
    root = {v.slot: v.slot for v in plan.inputs}
    last: dict[int, int] = {}
    written: dict[int, int] = {}
    for i, s in enumerate(steps):
        if isinstance(s, HostStep) and s.node.op in VIEW_OPS and s.ins and s.ins[0] in root:
            root[s.out] = root[s.ins[0]]
        for k in s.reads:
            if k in root:
                last[root[k]] = i
        for k in s.writes:
            written.setdefault(k, i)
    for v in plan.outputs:  # an output that is an input (or views one) is read when the results are packed
        if v.slot in root:
            last[root[v.slot]] = end
    same_index = explicit_vectors(kernel)
    direct = []
    for k in range(n):
        i, o = plan.inputs[k].slot, plan.outputs[order[k]].slot
        w = written.get(o, end)
        ok = o == i or w > last.get(i, -1)
        if not ok and same_index and w == last.get(i) and isinstance(steps[w], LoopStep):
            s = steps[w]
            reads = [(slot, a) for slot, a in zip(s.ins, s.region.inputs) if root.get(slot) == i]
            ok = any(v.slot == o for v in s.outs) and all(slot == i and tuple(a.shape) == tuple(s.region.shape)
                                                          for slot, a in reads)
        direct.append(ok)
    return direct


def explicit_vectors(kernel: Any) -> bool:
    """Whether a kernel's loops are written as explicit vectors (the llvm target's): a loop that writes
    over an input it reads at the same index keeps its speed there. Numba's loops (cpu, parallel) rely
    on LLVM's vectoriser, whose overlap check then sends them to the scalar loop (numba/tensor.py's
    IN_PLACE), so those outputs go through the step's own buffers instead."""
    mod = sys.modules.get("graphc.backends.llvm.tensor")
    return mod is not None and isinstance(kernel, mod.LlvmTensorKernel)


def donated_name(sig: Any, k: int) -> str:
    """Donated leaf k (params leaves, then each state slot's) in words."""
    name = sig.names[k]
    if name.startswith("params"):
        return f"params leaf {name.removeprefix('params').strip('_') or 'at the top'}"
    if name.startswith("slots_"):
        return f"an opt_state leaf ({name.removeprefix('slots_')})"
    return f"argument leaf {name}"


__all__ = ["train_step", "TrainStep"]
