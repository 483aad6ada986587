"""Dead-code elimination: keep only the nodes some output needs."""

from __future__ import annotations

from ..ir import Graph, topo_order


def dce(graph: Graph, ctx=None) -> Graph:
    live = topo_order(v for _, v in graph.outputs)
    keep = {id(n) for n in live}
    removed = sum(1 for n in graph.body if id(n) not in keep)
    if ctx is not None and removed:
        ctx.fired["dead node removed"] += removed
    return Graph(graph.inputs, graph.outputs, body=[n for n in graph.body if id(n) in keep])
