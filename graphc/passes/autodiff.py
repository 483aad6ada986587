"""Reverse-mode differentiation as a graph-to-graph transform.

One generic engine: walk the topological order backwards, ask each op's
registry rule for its arguments' contributions (which are IR nodes), and
accumulate fan-out with `add`. The result is ordinary IR, so it can be
optimised, printed, checked and differentiated again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import ArgumentError, ShapeError
from ..ir import Graph, Node, const, fmt_shape, make, topo_order
from ..registry import REGISTRY
from ..tensor_ops import sum_to

# Ops whose node has several results, each read by a node of a picking op (`{index: k}`), as
# graphc.loops' scan and scan_out: the pick's adjoint goes to the node, whose rule then takes
# every result's adjoint at once -- rule(node, {index: adjoint}, [argument k depends on wrt])
# -> one contribution per argument -- so a loop runs backwards once, not once per result.
SEVERAL: dict[str, Callable[..., tuple[Node | None, ...]]] = {}  # op -> its rule
PICKS: set[str] = set()  # the ops that pick one result


def gradients(root: Node, wrt: Sequence[Node], cotangent: Node | None = None) -> list[Node]:
    """d root / d w for each w in wrt, as IR nodes of w's shape (zeros where root
    ignores w). A tensor root needs a `cotangent` of its shape (a vector-Jacobian
    product); a scalar root's is 1."""
    adjoint, _ = adjoints(root, wrt, cotangent)
    return [adjoint.get(id(w)) or _zeros(w, root) for w in wrt]


def adjoints(root: Node, wrt: Sequence[Node], cotangent: Node | None = None,
             edges: dict[tuple[int, int], Node] | None = None) -> tuple[dict[int, Node], dict]:
    """The reverse sweep: id(node) -> its adjoint (an IR node) for every node
    between root and wrt; `edges` (if given) gets (id(node), k) -> the
    contribution that flowed back along node's k-th argument (for pictures)."""
    seed = cotangent if cotangent is not None else const(1.0, root.dtype)
    return _sweep([(root, seed)], wrt, edges), edges if edges is not None else {}


def vjp(roots: Sequence[Node], cotangents: Sequence[Node | None], wrt: Sequence[Node]) -> list[Node | None]:
    """sum_k cotangent_k . d roots[k] / d w for each w in wrt (None where nothing flows back),
    in one reverse sweep: several outputs at once (a loop body's backward step)."""
    adjoint = _sweep([(r, c) for r, c in zip(roots, cotangents) if c is not None], wrt, None)
    return [adjoint.get(id(w)) for w in wrt]


def _sweep(seeds: Sequence[tuple[Node, Node]], wrt: Sequence[Node],
           edges: dict[tuple[int, int], Node] | None) -> dict[int, Node]:
    order = topo_order([r for r, _ in seeds])
    wanted = {id(w) for w in wrt}
    live: set[int] = set()  # float nodes that depend on some wrt node
    for n in order:
        if n.type.is_float and (id(n) in wanted or any(id(a) in live for a in n.args)):
            live.add(id(n))
    adjoint: dict[int, Node] = {}
    for r, c in seeds:
        if id(r) in live:
            adjoint[id(r)] = c if id(r) not in adjoint else _accumulate(adjoint[id(r)], c)
    several: dict[int, dict[int, Node]] = {}  # a node with several results: index -> that result's adjoint
    for n in reversed(order):
        if n.op in SEVERAL:
            cts = several.pop(id(n), None)
            if not cts:
                continue
            contributions = SEVERAL[n.op](n, cts, [id(a) in live for a in n.args])
        else:
            g = adjoint.get(id(n))
            if g is None or not n.args:
                continue
            if n.op in PICKS:  # handed to the node it picks from (which comes earlier in the order)
                got = several.setdefault(id(n.args[0]), {})
                k = n.attrs["index"]
                got[k] = g if k not in got else _accumulate(got[k], g)
                continue
            contributions = _contributions(n, g)
        for k, (a, c) in enumerate(zip(n.args, contributions)):
            if c is None or id(a) not in live:
                continue
            c = sum_to(c, a.shape)
            if edges is not None:
                edges[id(n), k] = c
            prev = adjoint.get(id(a))
            adjoint[id(a)] = c if prev is None else _accumulate(prev, c)
    return adjoint


def _selected(g: Node) -> tuple[Node, Node, int] | None:
    """g = where(m, h, 0) or where(m, 0, h): (m, h, branch) -- an adjoint that a
    `where` selected; None otherwise."""
    if g.op != "where":
        return None
    m, a, b = g.args
    if b.is_const and b.value == 0.0 and a.shape == g.shape:
        return m, a, 1
    if a.is_const and a.value == 0.0 and b.shape == g.shape:
        return m, b, 2
    return None


def _reselect(m: Node, c: Node, branch: int) -> Node:
    zero = const(0.0, c.dtype)
    return make("where", m, c, zero) if branch == 1 else make("where", m, zero, c)


def _contributions(n: Node, g: Node) -> tuple[Node | None, ...]:
    """The op's vector-Jacobian rule. Through an elementwise op, an adjoint that a
    `where` selected stays selected: the rule runs on the selected values and its
    results are selected again, so the local derivative of the branch not taken
    (sqrt'(x) at x < 0, 1/x at 0) is never multiplied into the gradient."""
    spec = REGISTRY[n.op]
    sel = _selected(g) if spec.infer is None else None
    if sel is None:
        return spec.grad(n, g)
    m, h, branch = sel
    return tuple(None if c is None else _reselect(m, c, branch) if c.shape == n.shape else c
                 for c in spec.grad(n, h))


def _accumulate(prev: Node, c: Node) -> Node:
    """prev + c, keeping a selection both share: where(m, a, 0) + where(m, b, 0)
    is where(m, a + b, 0)."""
    sp, sc = _selected(prev), _selected(c)
    if sp is not None and sc is not None and sp[0] is sc[0] and sp[2] == sc[2]:
        return _reselect(sp[0], make("add", sp[1], sc[1]), sp[2])
    return make("add", prev, c)


def _zeros(w: Node, root: Node) -> Node:
    z = const(0.0, w.dtype if w.type.is_float else root.dtype)
    return make("broadcast_to", z, shape=w.shape) if w.shape else z


def grad_name(of: str, var: str) -> str:
    """Output names: 'df/dx' for f, 'd2f/dxdy' for df/dx differentiated by y."""
    if of.startswith("d") and "/d" in of:
        num, den = of.split("/", 1)
        k = num[1:].split("f", 1)[0]
        order = int(k) + 1 if k else 2
        return f"d{order}f/{den}d{var}"
    return f"d{of}/d{var}"


def resolve_wrt(graph: Graph, wrt: Sequence[str] | str | None) -> list[Node]:
    """The inputs to differentiate by: named ones, or every float input."""
    if wrt is None:
        return [n for n in graph.inputs if n.type.is_float]
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
        if not by_name[w].type.is_float:
            raise ArgumentError(f"wrt names {w!r}, which is {by_name[w].type}: integer labels and masks have no "
                                "gradient")
        seen.add(w)
        nodes.append(by_name[w])
    return nodes


def _scalar_root(name: str, root: Node) -> None:
    if root.shape:
        raise ShapeError(f"the output {name} has shape {fmt_shape(root.shape)}: a gradient needs a scalar; "
                         f"reduce it with sum(...) or mean(...) (or compile with grad=False / passes without autodiff)")
    if not root.type.is_float:
        raise ShapeError(f"the output {name} is {root.type}, not a number: a comparison is a mask for "
                         "where(mask, a, b)")


def autodiff(graph: Graph, wrt: Sequence[str] | str | None = None, output: str | None = None) -> Graph:
    """Graph -> Graph with outputs: the original ones, then d(output)/d(v) for v in wrt.

    `output` defaults to the first output.
    """
    name, root = graph.outputs[0] if output is None else (output, graph.output(output))
    _scalar_root(name, root)
    nodes = resolve_wrt(graph, wrt)
    grads = gradients(root, nodes)
    outs = list(graph.outputs) + [(grad_name(name, w.attr), g) for w, g in zip(nodes, grads)]
    return Graph(graph.inputs, outs)


def hessian_graph(graph: Graph, wrt: Sequence[str] | str | None = None) -> Graph:
    """Value, gradient and every second derivative d2f/dxdy (x, y in wrt), by
    applying reverse mode to each gradient output."""
    name, root = graph.outputs[0]
    _scalar_root(name, root)
    nodes = resolve_wrt(graph, wrt)
    first = gradients(root, nodes)
    outs = [(name, root)] + [(grad_name(name, w.attr), g) for w, g in zip(nodes, first)]
    for w, g in zip(nodes, first):
        gname = grad_name(name, w.attr)
        for v, h in zip(nodes, gradients(g, nodes)):
            outs.append((grad_name(gname, v.attr), h))
    return Graph(graph.inputs, outs)
