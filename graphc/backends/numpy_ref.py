"""The NumPy reference evaluator (target "numpy"): any Graph, scalars or
broadcasting arrays, float64 or float32, IEEE semantics with no warnings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import GraphcError
from ..ir import DTYPE_NUMPY, Graph, Node, topo_order
from ..registry import REGISTRY
from ..tensor_ops import has_symbolic_dims, resolve_attrs
from .buffers import host_outputs
from .kernel import Kernel, fill_out
from .targets import Target


def evaluate(graph: Graph, args: Sequence[np.ndarray], outputs: Sequence[str] | None = None,
             dims: dict[str, int] | None = None) -> list[np.ndarray]:
    """Evaluate `graph` at `args` (one array per input, in order); returns the
    requested outputs (default: all) as arrays of their dtypes. `dims` binds
    symbolic dimensions (default: read off the arguments)."""
    want = graph.outputs if outputs is None else [(n, graph.output(n)) for n in outputs]
    plan = Plan(graph, [v for _, v in want])
    return _results(plan, plan.run(args, dims), [v for _, v in want])


def _results(plan: Plan, env: list, roots: Sequence[Node]) -> list[np.ndarray]:
    return [np.asarray(env[k], dtype=DTYPE_NUMPY[v.dtype]) for k, v in zip(plan.roots, roots)]


def node_values(graph: Graph, args: Sequence[np.ndarray], roots: Sequence[Node] | None = None,
                dims: dict[str, int] | None = None) -> dict[int, np.ndarray]:
    """id(node) -> value for every node that `roots` (default: all outputs) need."""
    plan = Plan(graph, roots)
    values = plan.run(args, dims)
    return {id(n): v for n, v in zip(plan.nodes, values)}


def op_step(n: Node) -> tuple:
    """(NumPy form, attributes or None, whether they hold symbolic dimensions,
    result dtype) of an op node: what evaluating it needs, resolved once."""
    attrs = n.attrs if n.attr is not None else None
    return REGISTRY[n.op].numpy, attrs, has_symbolic_dims(attrs), np.dtype(DTYPE_NUMPY[n.dtype])


def run_op(fn, vals: list, attrs: dict | None, symbolic: bool, dims: dict[str, int], dt: np.dtype):
    """One op's NumPy form on its argument values, as an array (or scalar) of its dtype."""
    if attrs is None:
        val = fn(*vals)
    else:
        val = fn(*vals, **(resolve_attrs(attrs, dims) if symbolic else attrs))
    if type(val) is np.ndarray and val.dtype == dt or type(val) is tuple:  # a tuple: a loop's several results
        return val
    return np.asarray(val, dtype=dt) if np.ndim(val) else dt.type(val)


class Plan:
    """The evaluation order of a graph, resolved once: per step the op's NumPy
    form, argument slots and attributes, so a call is a loop over a list."""

    def __init__(self, graph: Graph, roots: Sequence[Node] | None = None):
        roots = list(roots) if roots is not None else [v for _, v in graph.outputs]
        need = {id(n) for n in topo_order(roots)}
        self.inputs = list(graph.inputs)
        self.nodes: list[Node] = list(graph.inputs) + [n for n in graph.body if id(n) in need]
        slot = {id(n): k for k, n in enumerate(self.nodes)}
        self.roots = [slot[id(r)] for r in roots]
        self.shaped = [(k, n.shape) for k, n in enumerate(graph.inputs) if any(isinstance(d, str) for d in n.shape)]
        self.steps: list[tuple] = []
        for n in self.nodes[len(self.inputs):]:
            dt = np.dtype(DTYPE_NUMPY[n.dtype])
            if n.op == "const":
                self.steps.append((None, dt.type(n.value), (), None, dt))
                continue
            fn, attrs, symbolic, dt = op_step(n)
            self.steps.append((fn, symbolic, tuple(slot[id(a)] for a in n.args), attrs, dt))

    def run(self, args: Sequence[np.ndarray], dims: dict[str, int] | None = None) -> list:
        env: list = [np.asarray(a, dtype=DTYPE_NUMPY[n.dtype]) for n, a in zip(self.inputs, args)]
        if dims is None:
            dims = {}
            for k, shape in self.shaped:
                if np.ndim(env[k]) == len(shape):
                    dims.update((d, s) for d, s in zip(shape, np.shape(env[k])) if isinstance(d, str))
        with np.errstate(all="ignore"):
            for fn, symbolic, slots, attrs, dt in self.steps:
                if fn is None:
                    env.append(symbolic)  # a constant: its value
                    continue
                env.append(run_op(fn, [env[k] for k in slots], attrs, symbolic, dims, dt))
        return env


class NumpyKernel(Kernel):
    """Backend object: the bound input arrays in, every output (broadcast) out."""

    def run(self, arrays: Sequence[np.ndarray], shape: tuple, out=None, **options) -> list[np.ndarray]:
        res = [np.broadcast_to(r, shape) for r in evaluate(self.graph, arrays)]
        if out is None:
            return [np.array(r, dtype=self.np_dtype) for r in res]
        bufs = host_outputs(out, self.output_names, shape, self.np_dtype, arrays, self.graph.input_names)
        for b, r in zip(bufs, res):
            b[...] = r
        return bufs


    def run_tensor(self, arrays: Sequence[np.ndarray], dims: dict[str, int], out: list | None = None) -> list:
        plan = self.__dict__.get("_plan")
        if plan is None:
            plan = self._plan = Plan(self.graph)
        return fill_out(_results(plan, plan.run(arrays, dims), [v for _, v in self.graph.outputs]), out)


def build(graph: Graph, target: Target) -> NumpyKernel:
    return NumpyKernel(graph)


def emit(graph: Graph, kind: str, target: Target, **opts) -> str:
    raise GraphcError("the numpy target generates no code")  # its table row lists nothing to emit
