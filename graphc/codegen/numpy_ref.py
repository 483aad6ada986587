"""The NumPy reference evaluator (target "numpy"): any Graph, scalars or
broadcasting arrays, float64 or float32, IEEE semantics with no warnings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..ir import DTYPE_NUMPY, Graph
from ..ops import REGISTRY


def evaluate(graph: Graph, args: Sequence[np.ndarray], outputs: Sequence[str] | None = None) -> list[np.ndarray]:
    """Evaluate `graph` at `args` (one array per input, in order); returns the
    requested outputs (default: all) as arrays of the graph's dtype."""
    dt = np.dtype(DTYPE_NUMPY[graph.dtype])
    env: dict[int, np.ndarray] = {}
    for node, a in zip(graph.inputs, args):
        env[id(node)] = np.asarray(a, dtype=dt)
    want = graph.outputs if outputs is None else [(n, graph.output(n)) for n in outputs]
    need = _needed(graph, [v for _, v in want])
    with np.errstate(all="ignore"):
        for n in graph.body:
            if id(n) not in need:
                continue
            if n.op == "const":
                env[id(n)] = dt.type(n.value)
            else:
                val = REGISTRY[n.op].numpy(*(env[id(a)] for a in n.args))
                env[id(n)] = np.asarray(val, dtype=dt) if np.ndim(val) else dt.type(val)
    return [np.asarray(env[id(v)], dtype=dt) for _, v in want]


def _needed(graph: Graph, roots) -> set[int]:
    from ..ir import topo_order

    return {id(n) for n in topo_order(roots)}


class NumpyKernel:
    """Backend object: called with the bound input arrays, returns all outputs."""

    target = "numpy"

    def __init__(self, graph: Graph):
        self.graph = graph
        self.source = None

    def __call__(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return evaluate(self.graph, arrays)
