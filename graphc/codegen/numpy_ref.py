"""The NumPy reference evaluator (target "numpy"): any Graph, scalars or
broadcasting arrays, float64 or float32, IEEE semantics with no warnings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import GraphcError
from ..ir import DTYPE_NUMPY, Graph, Node, topo_order
from ..registry import REGISTRY
from ..tensor_ops import resolve_attrs
from .buffers import host_outputs
from .kernel import Kernel
from .targets import Target


def evaluate(graph: Graph, args: Sequence[np.ndarray], outputs: Sequence[str] | None = None,
             dims: dict[str, int] | None = None) -> list[np.ndarray]:
    """Evaluate `graph` at `args` (one array per input, in order); returns the
    requested outputs (default: all) as arrays of their dtypes. `dims` binds
    symbolic dimensions (default: read off the arguments)."""
    want = graph.outputs if outputs is None else [(n, graph.output(n)) for n in outputs]
    env = node_values(graph, args, [v for _, v in want], dims)
    return [np.asarray(env[id(v)], dtype=DTYPE_NUMPY[v.dtype]) for _, v in want]


def node_values(graph: Graph, args: Sequence[np.ndarray], roots: Sequence[Node] | None = None,
                dims: dict[str, int] | None = None) -> dict[int, np.ndarray]:
    """id(node) -> value for every node that `roots` (default: all outputs) need."""
    env: dict[int, np.ndarray] = {}
    for node, a in zip(graph.inputs, args):
        env[id(node)] = np.asarray(a, dtype=DTYPE_NUMPY[node.dtype])
    if dims is None:
        dims = {}
        for node, a in zip(graph.inputs, args):
            if node.shape and np.ndim(a) == len(node.shape):
                dims.update((d, s) for d, s in zip(node.shape, np.shape(a)) if isinstance(d, str))
    need = {id(n) for n in topo_order(roots if roots is not None else [v for _, v in graph.outputs])}
    with np.errstate(all="ignore"):
        for n in graph.body:
            if id(n) not in need:
                continue
            dt = np.dtype(DTYPE_NUMPY[n.dtype])
            if n.op == "const":
                env[id(n)] = dt.type(n.value)
                continue
            spec = REGISTRY[n.op]
            vals = (env[id(a)] for a in n.args)
            val = spec.numpy(*vals, **resolve_attrs(n.attrs, dims)) if n.attr is not None else spec.numpy(*vals)
            env[id(n)] = np.asarray(val, dtype=dt) if np.ndim(val) else dt.type(val)
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


    def run_tensor(self, arrays: Sequence[np.ndarray], dims: dict[str, int]) -> list[np.ndarray]:
        return evaluate(self.graph, arrays, dims=dims)


def build(graph: Graph, target: Target) -> NumpyKernel:
    return NumpyKernel(graph)


def emit(graph: Graph, kind: str, target: Target, **opts) -> str:
    raise GraphcError("the numpy target generates no code")  # its table row lists nothing to emit
