"""Reverse-mode differentiation as a graph-to-graph transform.

One generic engine: walk the topological order backwards, ask each op's
registry rule for its arguments' contributions (which are IR nodes), and
accumulate fan-out with `add`. The result is ordinary IR, so it can be
optimised, printed, checked and differentiated again.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ArgumentError
from ..ir import Graph, Node, const, make, topo_order
from ..registry import REGISTRY


def gradients(root: Node, wrt: Sequence[Node]) -> list[Node]:
    """d root / d w for each w in wrt, as IR nodes (const 0 where root ignores w)."""
    order = topo_order([root])
    wanted = {id(w) for w in wrt}
    live: set[int] = set()  # nodes that depend on some wrt node
    for n in order:
        if id(n) in wanted or any(id(a) in live for a in n.args):
            live.add(id(n))
    adjoint: dict[int, Node] = {}
    if id(root) in live:
        adjoint[id(root)] = const(1.0, root.dtype)
    for n in reversed(order):
        g = adjoint.get(id(n))
        if g is None or not n.args:
            continue
        contributions = REGISTRY[n.op].grad(n, g)
        for a, c in zip(n.args, contributions):
            if c is None or id(a) not in live:
                continue
            prev = adjoint.get(id(a))
            adjoint[id(a)] = c if prev is None else make("add", prev, c)
    return [adjoint.get(id(w), const(0.0, root.dtype)) for w in wrt]


def grad_name(of: str, var: str) -> str:
    """Output names: 'df/dx' for f, 'd2f/dxdy' for df/dx differentiated by y."""
    if of.startswith("d") and "/d" in of:
        num, den = of.split("/", 1)
        k = num[1:].split("f", 1)[0]
        order = int(k) + 1 if k else 2
        return f"d{order}f/{den}d{var}"
    return f"d{of}/d{var}"


def resolve_wrt(graph: Graph, wrt: Sequence[str] | str | None) -> list[Node]:
    if wrt is None:
        return list(graph.inputs)
    if isinstance(wrt, str):
        wrt = [w.strip() for w in wrt.split(",") if w.strip()]
    by_name = {n.attr: n for n in graph.inputs}
    nodes: list[Node] = []
    seen: set[str] = set()
    for w in wrt:
        if w not in by_name:
            raise ArgumentError(
                f"wrt names {w!r}, which is not an input of the formula (inputs: {', '.join(graph.input_names)})"
            )
        if w in seen:
            raise ArgumentError(f"wrt names {w!r} twice")
        seen.add(w)
        nodes.append(by_name[w])
    return nodes


def autodiff(graph: Graph, wrt: Sequence[str] | str | None = None, output: str | None = None) -> Graph:
    """Graph -> Graph with outputs: the original ones, then d(output)/d(v) for v in wrt.

    `output` defaults to the first output.
    """
    name, root = graph.outputs[0] if output is None else (output, graph.output(output))
    nodes = resolve_wrt(graph, wrt)
    grads = gradients(root, nodes)
    outs = list(graph.outputs) + [(grad_name(name, w.attr), g) for w, g in zip(nodes, grads)]
    return Graph(graph.inputs, outs)


def hessian_graph(graph: Graph, wrt: Sequence[str] | str | None = None) -> Graph:
    """Value, gradient and every second derivative d2f/dxdy (x, y in wrt), by
    applying reverse mode to each gradient output."""
    name, root = graph.outputs[0]
    nodes = resolve_wrt(graph, wrt)
    first = gradients(root, nodes)
    outs = [(name, root)] + [(grad_name(name, w.attr), g) for w, g in zip(nodes, first)]
    for w, g in zip(nodes, first):
        gname = grad_name(name, w.attr)
        for v, h in zip(nodes, gradients(g, nodes)):
            outs.append((grad_name(gname, v.attr), h))
    return Graph(graph.inputs, outs)
