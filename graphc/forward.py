"""Forward mode and Jacobians for traced functions: JAX's `jvp`, `linearize`, `jacfwd`, `jacrev`.

graphc's ops carry vector-Jacobian rules only, so forward mode is built from reverse mode as a
graph transform (the "double VJP" or transpose trick): the VJP u -> J^T u of f at x is linear in
u, so J v = d/du <J^T u, v>. `jvp` traces f once, applies reverse mode to f with stand-in
cotangents u (J^T u, as IR), then again to <J^T u, v> with respect to u. The result does not
depend on u's value, and in practice not on u at all: each rule uses its adjoint linearly, so
the second sweep's results are the rules' local derivatives applied to v, and nothing of J^T u
reaches the program (should a rule mention u otherwise, u is replaced by zeros). The optimiser
(simplify, CSE, DCE) then runs as for any program. What is left is ordinary IR -- printed by
`jvp_graph`, checked against SymPy by `check_jvp`, and `jvp_transform` applies the same pass to
any Graph -- computing f and J v in a small multiple of f's cost; no Jacobian is formed (a
matmul's JVP is two products, an elementwise op's a product by its derivative).

Each program is a `graphc.jit` of the construction, so it is compiled once per argument
signature (one program for every batch size after a second size, as jit does) and cached per
function. Inside a function being traced, `jvp` adds its nodes to that program instead, so it
composes with `graphc.grad` both ways (`jvp(grad(f), ...)` is forward over reverse; `grad` of a
function that calls `jvp` is reverse over forward).

Arrays a traced function needs besides the ones differentiated (data, integer labels) are its
other arguments: `jacfwd(f, argnums=0)(W, X, y)`, or `jvp(functools.partial(f, X=X, y=y), (W,),
(V,))` -- the partial's arrays become inputs of the program (graphc traces no captured arrays).
"""

from __future__ import annotations

import functools
import itertools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .describe import describe
from .errors import ArgumentError
from .ir import Graph, Node, const, input_node, make, rebuild, topo_order
from .passes.autodiff import gradients
from .trace import Traced, Tracer, TracingError, TreeDef, flatten, jit, substitute, unflatten

__all__ = ["jvp", "linearize", "jacfwd", "jacrev", "jvp_graph", "jvp_transform", "jvp_nodes", "vjp_nodes", "check_jvp",
           "JvpCheck"]

_FRESH = itertools.count()  # stand-in inputs (primals, cotangents): unique names, replaced before a graph exists


def _fresh(node: Node) -> Node:
    return input_node(f"fwd_standin{next(_FRESH)}", node.dtype, node.shape)


# ------------------------------------------------------------------ pytrees with readable paths


def _paths(tree: Any, prefix: str) -> list[str]:
    """Each leaf's path as Python would index it (`primals[0]['W']`), in `trace.flatten`'s order."""
    if isinstance(tree, dict):
        return [p for k in sorted(tree, key=str) for p in _paths(tree[k], f"{prefix}[{k!r}]")]
    if isinstance(tree, (list, tuple)):
        return [p for i, v in enumerate(tree) for p in _paths(v, f"{prefix}[{i}]")]
    return [] if tree is None else [prefix]


def _structure(td: TreeDef) -> str:
    """A pytree's structure in words, for messages."""
    if td.kind == "leaf":
        return "an array"
    if td.kind == "none":
        return "None"
    if td.kind == "dict":
        return f"a dict with keys {list(td.keys)}"
    return f"a {td.kind} of {len(td.children)}"


def _is_float_leaf(x: Any) -> bool:
    if isinstance(x, Tracer):
        return x.node.type.is_float
    if isinstance(x, (bool, np.bool_)):
        return False
    if isinstance(x, (float, int, np.floating, np.integer)):  # a number, as graphc.grad takes it
        return True
    return isinstance(x, np.ndarray) and x.dtype.kind == "f"


def _shape(x: Any) -> tuple:
    return tuple(x.shape) if isinstance(x, (Tracer, np.ndarray)) else ()


def _check_primal(x: Any, path: str, fn: str) -> None:
    if not _is_float_leaf(x):
        raise ArgumentError(f"graphc.{fn}: {path} is {describe(x)}: only float arrays and numbers are differentiated "
                            "(pass integer data as another argument, or through functools.partial)")


def _pairs(fn: str, primals: Any, tangents: Any) -> tuple[list, list]:
    """primals and tangents as lists, checked leaf by leaf: the same structure, shapes and dtypes."""
    for name, v in (("primals", primals), ("tangents", tangents)):
        if not isinstance(v, (tuple, list)):
            raise ArgumentError(f"graphc.{fn}: {name} is {describe(v)}: give a tuple (or list) of the "
                                "function's arguments, as jax.jvp")
    if len(primals) != len(tangents):
        raise ArgumentError(f"graphc.{fn}: {len(primals)} primal(s) but {len(tangents)} tangent(s): give one "
                            "tangent per argument")
    for k, (p, t) in enumerate(zip(primals, tangents)):
        pl, _, ptd = flatten(p)
        tl, _, ttd = flatten(t)
        if ptd != ttd:
            raise ArgumentError(f"graphc.{fn}: tangents[{k}] is {_structure(ttd)} but primals[{k}] is "
                                f"{_structure(ptd)}: a tangent has its primal's structure")
        for x, v, pp, tp in zip(pl, tl, _paths(p, f"primals[{k}]"), _paths(t, f"tangents[{k}]")):
            _check_primal(x, pp, fn)
            if not _is_float_leaf(v):
                raise ArgumentError(f"graphc.{fn}: {tp} is {describe(v)}: a tangent is a float array or number")
            if _shape(v) != _shape(x):
                raise ArgumentError(f"graphc.{fn}: {tp} has shape {_shape(v)} but its primal {pp} has shape "
                                    f"{_shape(x)}")
            if isinstance(x, (np.ndarray, Tracer)) and isinstance(v, (np.ndarray, Tracer)) and x.dtype != v.dtype:
                raise ArgumentError(f"graphc.{fn}: {tp} is {v.dtype} but its primal {pp} is {x.dtype}: give the "
                                    "tangent its primal's dtype")
    return list(primals), list(tangents)


def _tracers(*trees: Any) -> list[Tracer]:
    return [x for t in trees for x in flatten(t)[0] if isinstance(x, Tracer)]


# ------------------------------------------------------------------ how a program calls f


@dataclass(frozen=True)
class _Layout:
    """How a program calls the user's function: per positional argument ("d", k) -- the k-th
    differentiated value --, ("r", k) -- the k-th other traced value (data, labels) -- or
    ("s", type, value), a value fixed at trace time; keywords likewise. Hashable: programs are
    cached by it."""

    func: Callable
    slots: tuple
    keywords: tuple

    def call(self, diff: Sequence[Any], rest: Sequence[Any]) -> Any:
        pick = lambda s: diff[s[1]] if s[0] == "d" else rest[s[1]] if s[0] == "r" else s[2]  # noqa: E731
        return self.func(*[pick(s) for s in self.slots], **{name: pick(s) for name, s in self.keywords})


def _is_data(v: Any) -> bool:
    """A value to pass as traced input: a non-empty pytree of numeric arrays and floats."""
    leaves = flatten(v)[0]
    return bool(leaves) and all(
        (isinstance(x, np.ndarray) and x.dtype.kind in "fiu") or (isinstance(x, (float, np.floating))
                                                                   and not isinstance(x, np.ndarray))
        for x in leaves)


def _layout(f: Callable, args: Sequence[Any], kwargs: dict, diff: Sequence[int]) -> tuple[_Layout, list, list]:
    """(layout, differentiated values, other traced values) for calling f(*args, **kwargs) with
    args[diff] differentiated; a functools.partial's arrays become traced values too."""
    prefix: tuple = ()
    fixed_kw: dict = {}
    func = f
    if isinstance(f, functools.partial):
        func, prefix, fixed_kw = f.func, tuple(f.args), dict(f.keywords)
    rest: list = []

    def other(v: Any) -> tuple:
        if _is_data(v):
            rest.append(v)
            return ("r", len(rest) - 1)
        return ("s", type(v), v)

    slots = [other(v) for v in prefix]
    where = {k: j for j, k in enumerate(diff)}
    slots += [("d", where[k]) if k in where else other(v) for k, v in enumerate(args)]
    kw = {**fixed_kw, **kwargs}
    keywords = tuple((name, other(kw[name])) for name in sorted(kw))
    return _Layout(func, tuple(slots), keywords), [args[k] for k in diff], rest


_PROGRAMS: OrderedDict[Any, Traced] = OrderedDict()
MAX_PROGRAMS = 64  # traced programs kept (each keeps its compiled signatures), the most recently used


def _program(kind: str, layout: _Layout, has_aux: bool, target: str | None) -> Traced:
    """The jit-traced program of `kind` ("jvp" or "rows") for a layout, cached."""
    key = (kind, layout, has_aux, target)
    try:
        got = _PROGRAMS.get(key)
    except TypeError:  # a fixed argument that is not hashable: traced afresh each call
        key, got = None, None
    if got is not None:
        _PROGRAMS.move_to_end(key)
        return got
    body = _jvp_body(layout, has_aux) if kind == "jvp" else _rows_body(layout, has_aux)
    prog = jit(body, target=target)
    if key is not None:
        _PROGRAMS[key] = prog
        while len(_PROGRAMS) > MAX_PROGRAMS:
            _PROGRAMS.popitem(last=False)
    return prog


# ------------------------------------------------------------------ the construction


def _node(x: Any, dtype: str, what: str) -> Node:
    if isinstance(x, Tracer):
        return x.node
    if isinstance(x, (float, int, np.floating, np.integer)) and not isinstance(x, (bool, np.bool_)):
        return const(float(x), dtype)
    if isinstance(x, np.ndarray) and x.ndim == 0:
        return const(float(x), dtype)
    raise TracingError(f"{what} is {describe(x)}: inside a traced function, pass traced values or numbers")


def _scalar_sum(terms: Sequence[tuple[Node, Node]]) -> Node:
    """sum(a * b) over the pairs, added: <a, b> as one scalar node."""
    total = None
    for a, b in terms:
        p = make("mul", a, b)
        t = make("sum", p) if p.shape else p
        total = t if total is None else make("add", total, t)
    assert total is not None
    return total


def _tidy(roots: Sequence[Node]) -> list[Node]:
    """`roots` without the products by ones that the scalar root <a, b> leaves in a reverse
    sweep (its adjoint of a is b * broadcast_to(1)); a rewrite that keeps every type."""

    def one(n: Node) -> bool:
        return (n.is_const and n.value == 1.0) or (n.op == "broadcast_to" and n.args[0].is_const
                                                   and n.args[0].value == 1.0)

    memo: dict[int, Node] = {}
    for n in topo_order(roots):
        if not n.args:
            memo[id(n)] = n
            continue
        args = [memo[id(a)] for a in n.args]
        if n.op == "mul":
            a, b = args
            if one(b) and a.type == n.type:
                memo[id(n)] = a
                continue
            if one(a) and b.type == n.type:
                memo[id(n)] = b
                continue
        memo[id(n)] = rebuild(n, args)
    return [memo[id(r)] for r in roots]


def _zeros(n: Node) -> Node:
    z = const(0.0, n.dtype)
    return make("broadcast_to", z, shape=n.shape) if n.shape else z


def _outputs(out: Any, dtype: str, fn: str) -> tuple[list[Node], TreeDef]:
    leaves, _, td = flatten(out)
    nodes = []
    for x, path in zip(leaves, _paths(out, "output")):
        n = _node(x, dtype, f"graphc.{fn}: {path}")
        if not n.type.is_float:
            raise TracingError(f"graphc.{fn}: {path} is {n.type}, not a float value: only float outputs have "
                               "derivatives (return masks and integers as aux, with has_aux=True)")
        nodes.append(n)
    return nodes, td


def _trace_of(fn: str, *trees: Any) -> Any:
    found = _tracers(*trees)
    if not found:
        raise TracingError(f"graphc.{fn} inside a traced function needs a traced primal or tangent")
    return found[0].trace


def _split_aux(out: Any, has_aux: bool, fn: str) -> tuple[Any, Any]:
    if not has_aux:
        return out, None
    if not (isinstance(out, tuple) and len(out) == 2):
        raise TracingError(f"graphc.{fn}(has_aux=True): the function must return (value, aux)")
    return out


def vjp_nodes(outputs: Sequence[Node], wrt: Sequence[Node], cotangents: Sequence[Node]) -> list[Node]:
    """J^T u as IR: the gradient of <outputs, cotangents> by each node of `wrt` (inputs or
    stand-ins), one reverse sweep (a single output's cotangent seeds it; several are summed
    into one scalar root, so shared work is swept once)."""
    if len(outputs) == 1 and outputs[0].shape:
        return gradients(outputs[0], wrt, cotangent=cotangents[0])
    if outputs:
        return gradients(_scalar_sum(list(zip(outputs, cotangents))), wrt)
    return [_zeros(w) for w in wrt]


def jvp_nodes(outputs: Sequence[Node], wrt: Sequence[Node], tangents: Sequence[Node]) -> list[Node]:
    """J·v as IR, J = d outputs / d wrt, v = `tangents` (one per wrt node, its type): the
    transpose construction. With stand-in cotangents u, J^T u = vjp_nodes(outputs, wrt, u) is
    linear in u, and J v = d/du <J^T u, v> (a second reverse sweep, by u). Its value does not
    depend on u; should a rule still mention u, u is replaced by zeros."""
    us = [_fresh(y) for y in outputs]
    jtu = vjp_nodes(outputs, wrt, us)
    jv = vjp_nodes(jtu, us, tangents) if wrt else [_zeros(y) for y in outputs]
    left = {id(n) for n in topo_order(jv)}
    return _tidy(substitute(jv, {id(u): _zeros(u) for u in us if id(u) in left}))


def jvp_transform(graph: Graph, wrt: Sequence[str] | str | None = None) -> Graph:
    """Forward mode as a Graph -> Graph pass (the counterpart of `graphc.autodiff`): the graph
    with a tangent input `x_dot` (x's type) after the inputs for each x in wrt (default: every
    float input), and an output `f_dot` = J·(x_dot, ...) after the outputs for each output f."""
    from .passes.autodiff import resolve_wrt

    nodes = resolve_wrt(graph, wrt)
    taken = set(graph.input_names)
    dots = []
    for w in nodes:
        name = f"{w.attr}_dot"
        if name in taken:
            raise ArgumentError(f"jvp_transform: the tangent input {name!r} would repeat an input's name")
        dots.append(input_node(name, w.dtype, w.shape))
    for name, y in graph.outputs:
        if not y.type.is_float:
            raise ArgumentError(f"jvp_transform: the output {name} is {y.type}, not a float value: it has no "
                                "tangent")
    jv = jvp_nodes([y for _, y in graph.outputs], nodes, dots)
    return Graph([*graph.inputs, *dots], [*graph.outputs, *((f"{n}_dot", t) for (n, _), t in zip(graph.outputs, jv))])


def _trace_standins(call: Callable, primals: Sequence[Any], trace: Any, has_aux: bool, fn: str):
    """f traced on fresh stand-in inputs for the primal leaves (so the derivatives are by them,
    whatever node of an enclosing program a primal is): (stand-ins, the primals' nodes, f's
    float output nodes and their structure, aux)."""
    p_nodes = [_node(x, trace.dtype, f"graphc.{fn}: {p}")
               for x, p in zip(flatten(list(primals))[0], _paths(list(primals), "primals"))]
    stands = [_fresh(n) for n in p_nodes]
    it = iter(Tracer(s, trace) for s in stands)
    args = [unflatten(flatten(p)[2], [next(it) for _ in flatten(p)[0]]) for p in primals]
    out, aux = _split_aux(call(*args), has_aux, fn)
    y_nodes, y_td = _outputs(out, trace.dtype, fn)
    return stands, p_nodes, y_nodes, y_td, aux


def _finish(trace: Any, stands: list[Node], p_nodes: list[Node], groups: Sequence[list[Node]], aux: Any) -> list:
    """Each group of result nodes (and aux's leaves, last) with the stand-ins replaced by the
    primals, as tracers."""
    aux_leaves, _, aux_td = flatten(aux)
    aux_nodes = [_node(x, trace.dtype, "aux") for x in aux_leaves]
    done = iter(substitute([n for g in groups for n in g] + aux_nodes, {id(s): n for s, n in zip(stands, p_nodes)}))
    out = [[Tracer(next(done), trace) for _ in g] for g in groups]
    return out + [unflatten(aux_td, [Tracer(n, trace) for n in done])]


def build_jvp(call: Callable, primals: Sequence[Any], tangents: Sequence[Any], has_aux: bool = False,
              fn: str = "jvp") -> tuple[Any, Any, Any]:
    """(f(*primals), J·tangents, aux) as traced values of the trace the primals or tangents
    belong to: f traced on stand-ins for the primals, `jvp_nodes`, then the stand-ins replaced
    by the primals. `call(*args)` calls f."""
    trace = _trace_of(fn, primals, tangents)
    t_nodes = [_node(x, trace.dtype, f"graphc.{fn}: {p}")
               for x, p in zip(flatten(list(tangents))[0], _paths(list(tangents), "tangents"))]
    stands, p_nodes, y_nodes, y_td, aux = _trace_standins(call, primals, trace, has_aux, fn)
    y, jv, aux = _finish(trace, stands, p_nodes, [y_nodes, jvp_nodes(y_nodes, stands, t_nodes)], aux)
    return unflatten(y_td, y), unflatten(y_td, jv), aux if has_aux else None


def _jvp_body(layout: _Layout, has_aux: bool) -> Callable:
    def jvp_program(primals: tuple, tangents: tuple, rest: tuple) -> Any:
        out, jv, aux = build_jvp(lambda *d: layout.call(d, rest), primals, tangents, has_aux)
        return (out, jv, aux) if has_aux else (out, jv)

    return jvp_program


def _rows_body(layout: _Layout, has_aux: bool) -> Callable:
    """The program of one row of the Jacobian: f's value and the gradient of <f(x), e_k> by
    every primal, e_k the k-th basis cotangent (outputs flattened in order) made in the
    program from the index k, a float input (so one program serves every row)."""

    def row_program(primals: tuple, k: Any, rest: tuple) -> Any:
        trace = _trace_of("jacrev", primals, k)
        dt = trace.dtype
        stands, p_nodes, y_nodes, y_td, aux = _trace_standins(lambda *d: layout.call(d, rest), primals, trace,
                                                              has_aux, "jacrev")
        basis, offset = [], 0
        for y in y_nodes:
            if any(not isinstance(d, int) for d in y.shape):
                raise TracingError("graphc.jacrev: an output of symbolic size")  # jit then traces per size
            size = int(np.prod(y.shape, dtype=np.int64))
            if size == 0:
                basis.append(_zeros(y))
                continue
            hit = make("eq", make("iota", const(0.0, dt), n=size), make("sub", k.node, const(float(offset), dt)))
            e = make("where", hit, const(1.0, dt), const(0.0, dt))
            basis.append(make("reshape", e, shape=y.shape) if y.shape != (size,) else e)
            offset += size
        y, g, aux = _finish(trace, stands, p_nodes, [y_nodes, _tidy(vjp_nodes(y_nodes, stands, basis))], aux)
        it = iter(g)
        grads = tuple(unflatten(flatten(p)[2], [next(it) for _ in flatten(p)[0]]) for p in primals)
        return (unflatten(y_td, y), grads, aux) if has_aux else (unflatten(y_td, y), grads)

    return row_program


# ------------------------------------------------------------------ the API


def jvp(f: Callable, primals: Sequence[Any], tangents: Sequence[Any], has_aux: bool = False,
        target: str | None = None) -> tuple:
    """jax.jvp: `(f(*primals), J·tangents)` (`(..., aux)` with has_aux=True), f written with
    graphc.numpy on pytrees of float arrays; tangents have the primals' structure, shapes and
    dtypes. Forward mode as a graph transform (this module's docstring), compiled once per
    signature; inside a traced function, nodes of that program (so `grad` of it works)."""
    if not callable(f):
        raise ArgumentError(f"graphc.jvp: expected a function, got {describe(f)}")
    primals, tangents = _pairs("jvp", primals, tangents)
    if _tracers(primals, tangents):  # inside a function being traced: into its program
        out, jv, aux = build_jvp(f, primals, tangents, has_aux)
        return (out, jv, aux) if has_aux else (out, jv)
    layout, diff, rest = _layout(f, primals, {}, range(len(primals)))
    return _program("jvp", layout, has_aux, target)(tuple(diff), tuple(tangents), tuple(rest))


def jvp_graph(f: Callable, primals: Sequence[Any], tangents: Sequence[Any], has_aux: bool = False,
              target: str | None = None) -> Graph:
    """The optimised IR of jvp(f, primals, tangents) (print it with graphc.print_graph): inputs
    the primals, tangents and other traced arguments; outputs f's leaves, then J·v's."""
    primals, tangents = _pairs("jvp", primals, tangents)
    layout, diff, rest = _layout(f, primals, {}, range(len(primals)))
    return _program("jvp", layout, has_aux, target).lower(tuple(diff), tuple(tangents), tuple(rest)).graph


def linearize(f: Callable, *primals: Any, has_aux: bool = False, target: str | None = None) -> tuple:
    """jax.linearize: `(f(*primals), f_jvp)` (and aux with has_aux=True), where
    `f_jvp(*tangents)` is J·tangents at these primals. Every call of f_jvp runs the one
    compiled jvp program (traced once), the primals held fixed."""
    if not callable(f):
        raise ArgumentError(f"graphc.linearize: expected a function, got {describe(f)}")
    if _tracers(primals):
        raise TracingError("graphc.linearize inside a traced function: use graphc.jvp there")
    zeros = [unflatten(flatten(p)[2], [np.zeros_like(x) if isinstance(x, np.ndarray) else 0.0
                                       for x in flatten(p)[0]]) for p in primals]
    _pairs("linearize", primals, zeros)
    layout, diff, rest = _layout(f, primals, {}, range(len(primals)))
    prog = _program("jvp", layout, has_aux, target)
    first = prog(tuple(diff), tuple(zeros), tuple(rest))

    def f_jvp(*tangents: Any) -> Any:
        _pairs("linearize", primals, tangents)
        return prog(tuple(diff), tuple(tangents), tuple(rest))[1]

    return (first[0], f_jvp, first[2]) if has_aux else (first[0], f_jvp)


def _argnums(fn: str, argnums: int | Sequence[int], n: int) -> tuple[int, ...]:
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    if not nums or len(set(nums)) != len(nums) or any(not isinstance(k, int) or not -n <= k < n for k in nums):
        raise ArgumentError(f"graphc.{fn}: argnums={argnums!r} for a call with {n} positional argument(s)")
    return tuple(k % n for k in nums)


def _jacobian_inputs(fn: str, argnums: int | Sequence[int], args: tuple, kwargs: dict, f: Callable):
    if _tracers(args, kwargs):
        raise TracingError(f"graphc.{fn} inside a traced function: use graphc.jvp (or graphc.grad) there")
    nums = _argnums(fn, argnums, len(args))
    layout, diff, rest = _layout(f, args, kwargs, nums)
    for k, d in zip(nums, diff):
        for x, path in zip(flatten(d)[0], _paths(d, f"argument {k}")):
            _check_primal(x, path, fn)
    return nums, layout, diff, rest


def _assemble(out: Any, blocks: list[list[np.ndarray]], diff: list, argnums: int | Sequence[int]) -> Any:
    """JAX's layout of a Jacobian: f's output structure, each leaf the argument's structure
    (a tuple of them for a tuple argnums), each entry of shape out.shape + in.shape."""
    _, _, out_td = flatten(out)
    per_out = []
    for row in blocks:
        it = iter(row)
        parts = [unflatten(flatten(d)[2], [next(it) for _ in flatten(d)[0]]) for d in diff]
        per_out.append(parts[0] if isinstance(argnums, int) else tuple(parts))
    return unflatten(out_td, per_out)


def jacfwd(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
           target: str | None = None) -> Callable:
    """jax.jacfwd: the Jacobian of f by args[argnums], one JVP per input entry (basis
    tangents) through one compiled jvp program. Entries have shape out.shape + in.shape."""
    if not callable(f):
        raise ArgumentError(f"graphc.jacfwd: expected a function, got {describe(f)}")

    def jacobian(*args: Any, **kwargs: Any) -> Any:
        nums, layout, diff, rest = _jacobian_inputs("jacfwd", argnums, args, kwargs, f)
        prog = _program("jvp", layout, has_aux, target)
        leaves = [x for d in diff for x in flatten(d)[0]]
        zeros = [np.zeros_like(x) if isinstance(x, np.ndarray) else 0.0 for x in leaves]

        def run(tangent_leaves: list) -> tuple:
            it = iter(tangent_leaves)
            tangents = tuple(unflatten(flatten(d)[2], [next(it) for _ in flatten(d)[0]]) for d in diff)
            return prog(tuple(diff), tangents, tuple(rest))

        first = None
        columns: list[list[list[np.ndarray]]] = []  # per input leaf, per entry: J·e as output leaves
        for j, x in enumerate(leaves):
            cols = []
            for e in range(int(np.size(x))):
                t = list(zeros)
                if isinstance(x, np.ndarray):
                    basis = np.zeros_like(x)
                    basis.flat[e] = 1
                    t[j] = basis
                else:
                    t[j] = 1.0
                res = run(t)
                first = res if first is None else first
                cols.append([np.asarray(v) for v in flatten(res[1])[0]])
            columns.append(cols)
        if first is None:  # no input entries: the output's shapes still come from one run
            first = run(zeros)
        out_leaves = [np.asarray(v) for v in flatten(first[0])[0]]
        blocks = []
        for i, y in enumerate(out_leaves):
            row = []
            for x, cols in zip(leaves, columns):
                stacked = np.stack([c[i] for c in cols], axis=-1) if cols else np.zeros(y.shape + (0,), y.dtype)
                row.append(stacked.reshape(y.shape + _shape(np.asarray(x))))
            blocks.append(row)
        jac = _assemble(first[0], blocks, diff, argnums)
        return (jac, first[2]) if has_aux else jac

    jacobian.__wrapped__ = f  # type: ignore[attr-defined]
    return jacobian


def jacrev(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
           target: str | None = None) -> Callable:
    """jax.jacrev: the Jacobian of f by args[argnums], one VJP per output entry -- the
    gradient of <f(x), e_k> for the basis cotangent e_k, built in the program from the index
    k, so one compiled program serves every row. Entries have shape out.shape + in.shape."""
    if not callable(f):
        raise ArgumentError(f"graphc.jacrev: expected a function, got {describe(f)}")

    def jacobian(*args: Any, **kwargs: Any) -> Any:
        nums, layout, diff, rest = _jacobian_inputs("jacrev", argnums, args, kwargs, f)
        prog = _program("rows", layout, has_aux, target)
        first = prog(tuple(diff), 0.0, tuple(rest))
        out_leaves = [np.asarray(v) for v in flatten(first[0])[0]]
        in_leaves = [np.asarray(x) for d in diff for x in flatten(d)[0]]
        rows = [[np.asarray(g) for g in flatten(first[1])[0]]] if sum(y.size for y in out_leaves) else []
        for k in range(1, sum(y.size for y in out_leaves)):
            rows.append([np.asarray(g) for g in flatten(prog(tuple(diff), float(k), tuple(rest))[1])[0]])
        blocks, offset = [], 0
        for y in out_leaves:
            mine = rows[offset:offset + y.size]
            offset += y.size
            row = []
            for j, x in enumerate(in_leaves):
                stacked = np.stack([r[j] for r in mine]) if mine else np.zeros((0,) + x.shape, x.dtype)
                row.append(stacked.reshape(y.shape + x.shape).astype(y.dtype, copy=False))
            blocks.append(row)
        jac = _assemble(first[0], blocks, diff, argnums)
        return (jac, first[2]) if has_aux else jac

    jacobian.__wrapped__ = f  # type: ignore[attr-defined]
    return jacobian


# ------------------------------------------------------------------ checking the transform against SymPy


@dataclass
class JvpCheck:
    """`check_jvp`'s result: the worst error, relative to each output's largest entry, of the
    JVP program's IR evaluated exactly (`ir`) and of the compiled numbers (`compiled`) against
    SymPy's J·v, J from SymPy's derivatives of f's own expressions."""

    ir: float
    compiled: float
    tolerance: float  # for the compiled numbers (float64: 1e-10, float32: 1e-4)
    exact_tolerance: float  # for the IR, evaluated at `digits` digits

    @property
    def ok(self) -> bool:
        return bool(np.isfinite(self.ir) and np.isfinite(self.compiled) and self.ir <= self.exact_tolerance
                    and self.compiled <= self.tolerance)


def check_jvp(f: Callable, primals: Sequence[Any], tangents: Sequence[Any], target: str | None = None,
              digits: int = 30) -> JvpCheck:
    """Check jvp(f, primals, tangents) against SymPy for small shapes: every input entry of
    the JVP program's IR becomes a symbol, its outputs are expanded with each op's SymPy form,
    and J·v is recomputed from SymPy's exact derivatives of f's outputs by the primal symbols,
    then both are evaluated at the given values to `digits` digits."""
    import sympy as sp

    from .verify.tensor import expand, symbols_for

    primals, tangents = _pairs("check_jvp", primals, tangents)
    graph = jvp_graph(f, primals, tangents, target=target)
    _, diff, rest = _layout(f, primals, {}, range(len(primals)))
    values = [x for tree in (*diff, *tangents, *rest) for x in flatten(tree)[0]]
    labels = {n.attr: np.asarray(v) for n, v in zip(graph.inputs, values) if not n.type.is_float}
    dims = {d: size for n, v in zip(graph.inputs, values) for d, size in zip(n.shape, np.shape(v))
            if not isinstance(d, int)}  # a program traced for every size: these sizes
    syms = symbols_for(graph, dims, labels)
    exprs = expand(graph, syms, dims)
    n_p = sum(len(flatten(p)[0]) for p in diff)
    p_syms = [np.asarray(syms[n.attr], dtype=object) for n in graph.inputs[:n_p]]
    t_syms = [np.asarray(syms[n.attr], dtype=object) for n in graph.inputs[n_p:2 * n_p]]
    subs = {}
    for n, v in zip(graph.inputs, values):
        if n.type.is_float:
            for s, x in zip(np.asarray(syms[n.attr], dtype=object).ravel(), np.asarray(v, dtype=float).ravel()):
                subs[s] = sp.Float(repr(float(x)), digits + 10)
    names = graph.output_names
    k = len(names) // 2
    compiled = jvp(f, primals, tangents, target=target)[1]
    got = [np.asarray(v, dtype=float) for v in flatten(compiled)[0]]
    err_ir = err_num = 0.0
    for i in range(k):
        y = np.asarray(exprs[names[i]], dtype=object)
        jv = np.asarray(exprs[names[k + i]], dtype=object)
        ir_i = num_i = 0.0
        scale = 1e-300
        for idx in np.ndindex(*y.shape):
            ref = sum((sp.diff(y[idx], s) * t for P, T in zip(p_syms, t_syms) for s, t in zip(P.ravel(), T.ravel())),
                      sp.Integer(0))
            exact = sp.N(sp.sympify(ref).subs(subs), digits)
            scale = max(scale, abs(float(exact)))
            ir_i = max(ir_i, abs(float(sp.N(sp.sympify(jv[idx]).subs(subs) - exact, digits))))
            num_i = max(num_i, abs(float(got[i][idx]) - float(exact)))
        err_ir, err_num = max(err_ir, ir_i / scale), max(err_num, num_i / scale)
    dt = np.result_type(*[np.asarray(x).dtype for x in flatten(list(primals))[0]])
    return JvpCheck(err_ir, err_num, 1e-4 if dt == np.float32 else 1e-10, 10.0 ** (-digits // 2))
