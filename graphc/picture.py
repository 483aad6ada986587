"""Pictures of graphs in the seed's style: every node with its forward value,
every wire with the value it carries and the gradient that flows back along it
(values above in green, gradients below in red), as Graphviz DOT, rendered to
SVG or PNG by Graphviz's `dot` when it is installed."""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import GraphcError
from .ir import Graph, Node, to_dot, topo_order

VALUE, GRADIENT = "darkgreen", "red"


def _fmt(v: Any, node: Node) -> str:
    a = np.asarray(v)
    if a.ndim == 0:
        x = float(a)
        if not math.isfinite(x):
            return str(x)  # inf, -inf, nan
        return f"{x:.4g}" if x != int(x) or abs(x) >= 1e6 else str(int(x))
    finite = a[np.isfinite(a)]
    mean = f"mean {float(np.mean(finite)):.3g}" if finite.size else "no finite entries"
    return f"{node.type} {mean}"


def annotations(graph: Graph, point: Mapping[str, Any]) -> tuple[dict, dict]:
    """(node notes, edge notes) for `to_dot`: forward values and gradients of the
    graph's first output at `point`, computed by graphc's own reverse sweep."""
    from .backends.numpy_ref import Plan
    from .passes.autodiff import adjoints

    root = graph.outputs[0][1]
    wrt = [n for n in graph.inputs if n.type.is_float]
    edges: dict[tuple[int, int], Node] = {}
    adj, _ = adjoints(root, wrt, edges=edges)
    forward = [n for n in topo_order([root])]
    roots = forward + [adj[id(n)] for n in forward if id(n) in adj] + list(edges.values())
    missing = [n.attr for n in graph.inputs if n.attr not in point]
    if missing:
        raise GraphcError(f"--at needs a value for every input; missing: {', '.join(missing)}")
    plan = Plan(Graph(graph.inputs, [(f"o{k}", r) for k, r in enumerate(roots)]), roots)
    env = plan.run([point[n.attr] for n in graph.inputs])
    value = {id(r): env[k] for r, k in zip(roots, plan.roots)}
    node_notes: dict[int, list[tuple[str, str]]] = {}
    for n in forward:
        if n.op == "const":
            continue
        notes = [(_fmt(value[id(n)], n), VALUE)]
        if id(n) in adj:
            notes.append((_fmt(value[id(adj[id(n)])], n), GRADIENT))
        node_notes[id(n)] = notes
    edge_notes: dict[tuple[int, int], list[tuple[str, str]]] = {}
    for n in forward:
        for k, a in enumerate(n.args):
            if a.op == "const":
                continue
            notes = [(_fmt(value[id(a)], a), VALUE)]
            if (id(n), k) in edges:
                notes.append((_fmt(value[id(edges[id(n), k])], a), GRADIENT))
            edge_notes[id(n), k] = notes
    return node_notes, edge_notes


def annotated_dot(graph: Graph, point: Mapping[str, Any]) -> str:
    """DOT of `graph` with its forward values and gradients at `point`."""
    return to_dot(graph, *annotations(graph, point))


def render(dot: str, fmt: str = "svg") -> bytes:
    """DOT -> SVG or PNG bytes through Graphviz's `dot` program."""
    if fmt not in ("svg", "png"):
        raise GraphcError(f"cannot render to {fmt!r}: svg or png")
    exe = shutil.which("dot")
    if exe is None:
        raise GraphcError("rendering needs Graphviz's `dot` program, which is not installed "
                          "(apt install graphviz, brew install graphviz or conda install graphviz); "
                          "--format dot prints the DOT text without it")
    try:
        done = subprocess.run([exe, f"-T{fmt}"], input=dot.encode(), capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GraphcError(f"Graphviz's dot failed: {exc}") from None
    if done.returncode != 0:
        raise GraphcError(f"Graphviz's dot failed: {done.stderr.decode(errors='replace').strip()[:300]}")
    return done.stdout


def svg_or_none(dot: str) -> str | None:
    """For Jupyter's _repr_svg_: the SVG when Graphviz is installed, else None."""
    try:
        return render(dot, "svg").decode()
    except GraphcError:
        return None
