"""Custom reverse-mode rules and rematerialisation: `custom_vjp` (jax.custom_vjp) and
`checkpoint` (jax.checkpoint, torch.utils.checkpoint), both one node of the IR.

In a traced function, calling a `custom_vjp` function records fn's own ops inline (its value fuses
and compiles like any other ops) and, beside them, one `custom_vjp` node that holds the backward
rule: bwd traced once, at the call, into a graph of its own (attribute `bwd`; inputs: the residuals
that are traced values, the float outputs' cotangents, then any value bwd closes over; outputs
`d<k>`, the cotangent of argument node k, absent where bwd gives None). Its arguments come in runs:

    %c = custom_vjp <arguments> <outputs> <residuals> <free> <lifted> {bwd=graph, nx, nout, nres, nfree, name}
    %y = custom_vjp_out %c {index=k}         # output k: what model code goes on with

`free` are values fn reads besides its arguments (closed over, or nondiff_argnums arguments): the
rule gives them no gradient, so differentiating with respect to one is refused, as JAX refuses it.

Reverse mode reaches a pick first and hands its adjoint to the node (`autodiff.SEVERAL`, as for a
scan), whose rule inlines bwd's graph on the residual nodes and every output's adjoint at once
(zeros where an output has none) and gives its results to the argument nodes; the outputs get
nothing, so fn's own ops are never differentiated. The inlined rule is ordinary IR: optimised, fused
and compiled with the rest, and differentiated again for a gradient of a gradient (reverse over
reverse differentiates bwd as written, as in JAX). Once no autodiff follows, CSE replaces each pick
by its output (`cse.FORWARD`) and the node is dead: compiled programs hold ordinary ops only.

`checkpoint(block)` is the same node with a rule graphc writes itself: its residuals are the block's
inputs (its arguments and every value it closes over), and bwd recomputes the block from them, then
runs reverse mode over the copy. The copy starts at `remat_barrier(x, t)`, x itself, where t is a
scalar read from the incoming cotangents: so the copy is not the forward's nodes (hash-consing
cannot merge it back, nor CSE), and the schedule, which runs a step once its inputs exist, cannot
run it before the backward pass reaches the block. The forward pass's intermediates then die as
soon as the block's outputs are made, and the backward pass holds one block's intermediates at a
time: the memory plan of the compiled program is smaller, for the price of the block's forward once
more.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .describe import describe
from .errors import ArgumentError, GraphcError, IRError, ShapeError
from .ir import Graph, Node, Type, const, input_node, make, rebuild, verify
from .passes import autodiff, cse
from .registry import OpSpec, register_op
from .several import register_pick, whole_rule
from .trace import Trace, Tracer, TracingError, TreeDef, active_trace, apply, flatten, substitute, unflatten

CALL, RESULT, BARRIER = "custom_vjp", "custom_vjp_out", "remat_barrier"
_IDS = itertools.count()  # stand-in inputs while fwd, bwd or a block is traced: unique names
_COUNTS = ("nx", "nout", "nres", "nfree")


# ------------------------------------------------------------------ the ops


def _count(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise IRError(f"custom_vjp: attribute {name} must be an int >= 0, got {v!r}")
    return int(v)


def sections(node: Node) -> tuple[tuple[Node, ...], ...]:
    """A custom_vjp node's arguments in their runs: (arguments, outputs, residuals, free, lifted)."""
    a, args = node.attrs, node.args
    cuts = list(itertools.accumulate(a[k] for k in _COUNTS))
    return args[:cuts[0]], args[cuts[0]:cuts[1]], args[cuts[1]:cuts[2]], args[cuts[2]:cuts[3]], args[cuts[3]:]


def _infer_call(op: str, args: tuple, attrs: dict) -> tuple[dict, Type]:
    extra = set(attrs) - {"bwd", "name", *_COUNTS}
    if extra:
        raise IRError(f"custom_vjp: unknown attribute(s) {', '.join(sorted(extra))}")
    bwd, name = attrs.get("bwd"), attrs.get("name", "f")
    if not isinstance(bwd, Graph):
        raise IRError(f"custom_vjp: attribute bwd must be a graph, got {describe(bwd)}")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z_0-9]*", name):
        raise IRError(f"custom_vjp: attribute name must be an identifier, got {name!r}")
    nx, nout, nres, nfree = (_count(k, attrs.get(k)) for k in _COUNTS)
    if nx + nout + nres + nfree > len(args):
        raise IRError(f"custom_vjp: {len(args)} argument(s) for {nx} arguments, {nout} outputs, {nres} residuals "
                      f"and {nfree} free values")
    xs, outs = args[:nx], args[nx:nx + nout]
    res, lifted = args[nx + nout:nx + nout + nres], args[nx + nout + nres + nfree:]
    takes = [r.type for r in res] + [o.type for o in outs if o.type.is_float] + [p.type for p in lifted]
    if [i.type for i in bwd.inputs] != takes:
        raise IRError(f"custom_vjp: the bwd graph takes ({', '.join(str(i.type) for i in bwd.inputs)}) but the node "
                      f"gives it ({', '.join(map(str, takes))}): the residuals, the float outputs' cotangents, "
                      "the values bwd closes over")
    for out, v in bwd.outputs:
        m = re.fullmatch(r"d(\d+)", out)
        if m is None or int(m.group(1)) >= nx:
            raise IRError(f"custom_vjp: the bwd graph's output {out!r} names no argument (d0 ... d{nx - 1})")
        x = xs[int(m.group(1))]
        if v.type != x.type or not x.type.is_float:
            raise ShapeError(f"custom_vjp: the bwd graph's {out} is {v.type}; argument {m.group(1)} is {x.type}")
    dtype = next((a.dtype for a in args if a.type.is_float), "f64")
    out_attrs = {"bwd": bwd, "name": name, "nx": nx, "nout": nout, "nres": nres, "nfree": nfree}
    return out_attrs, Type(dtype)  # the node itself only holds its rule: custom_vjp_out picks the outputs


def _output_types(node: Node) -> list[Type]:
    """The types of a custom_vjp node's outputs: its output arguments'."""
    a = node.attrs
    return [x.type for x in node.args[a["nx"]:a["nx"] + a["nout"]]]


def _infer_barrier(op: str, args: tuple, attrs: dict) -> tuple[dict, Type]:
    x, t = args
    if attrs:
        raise IRError(f"remat_barrier: takes no attributes, got {', '.join(attrs)}")
    if not x.type.is_float or t.type != Type(x.dtype):
        raise IRError(f"remat_barrier: takes a float value and a scalar of its dtype, got {x.type} and {t.type}")
    return {}, x.type


def _outputs(*args: Any, bwd: Graph, name: str, nx: int, nout: int, nres: int, nfree: int) -> tuple:
    """Every output (NumPy or SymPy arrays alike): the node's output arguments."""
    return tuple(args[nx:nx + nout])


register_op(OpSpec(
    CALL, 1, _outputs, whole_rule("the custom_vjp node"), None, "",
    "a function with a custom VJP: its outputs (computed by its own ops, its arguments) and its bwd rule as a graph",
    infer=_infer_call, symbolic=_outputs, internal=True))
register_pick(RESULT, CALL, _output_types, "one output of a custom_vjp node", "the custom_vjp node")
register_op(OpSpec(
    BARRIER, 2, lambda x, t: np.array(x, copy=True), lambda n, g: (g, None), None, "({0})",
    "x itself; t, read from the cotangents, holds a checkpointed block's recomputation until the backward pass",
    infer=_infer_barrier, symbolic=lambda x, t: x, internal=True))
_infer_call.variadic = True  # type: ignore[attr-defined]  # arguments, outputs, residuals, free, lifted: any number


# ------------------------------------------------------------------ reverse mode


def _zeros(t: Type) -> Node:
    z = const(0.0, t.dtype)
    return make("broadcast_to", z, shape=t.shape) if t.shape else z


def _vjp(node: Node, cts: dict[int, Node], wanted: Sequence[bool]) -> tuple[Node | None, ...]:
    """The node's rule: bwd's graph inlined on the residuals, every output's adjoint (zeros where
    none) and the values bwd closes over; its d<k> is argument k's contribution."""
    a = node.attrs
    xs, outs, res, free, lifted = sections(node)
    base = len(xs) + len(outs) + len(res)
    for j, v in enumerate(free):
        if wanted[base + j]:
            raise GraphcError(f"custom_vjp {a['name']}: differentiating with respect to a value it reads but does not "
                              f"take as a differentiable argument (a {v.type} it closes over, or a nondiff_argnums "
                              "argument): its rule gives cotangents for its arguments only; pass the value as an "
                              "argument")
    if not any(wanted[:len(xs)]):
        return (None,) * len(node.args)
    gs = [cts[k] if k in cts else _zeros(o.type) for k, o in enumerate(outs) if o.type.is_float]
    bwd = a["bwd"]
    got = substitute([v for _, v in bwd.outputs], dict(zip(map(id, bwd.inputs), [*res, *gs, *lifted])))
    out: list[Node | None] = [None] * len(node.args)
    for (name, _), v in zip(bwd.outputs, got):
        k = int(name[1:])
        if wanted[k]:
            out[k] = v
    return tuple(out)


def _value(node: Node) -> Node:
    """What a pick computes: its output argument (cse.FORWARD, once no autodiff follows)."""
    src = node.args[0]
    return src.args[src.attrs["nx"] + node.attrs["index"]]


autodiff.SEVERAL[CALL] = _vjp
autodiff.PICKS.add(RESULT)
cse.FORWARD[RESULT] = _value


# ------------------------------------------------------------------ graphs from traced values


def _order(roots: Sequence[Node], stop: set[int]) -> list[Node]:
    """The nodes reachable from roots, each after its arguments, not looking below a node in
    `stop` (a function's arguments: what computed them is not the function's business)."""
    order: list[Node] = []
    seen: set[int] = set()
    for root in roots:
        if id(root) in seen:
            continue
        seen.add(id(root))
        stack = [(root, 0)]
        while stack:
            n, i = stack[-1]
            if i < len(n.args) and id(n) not in stop:
                stack[-1] = (n, i + 1)
                a = n.args[i]
                if id(a) not in seen:
                    seen.add(id(a))
                    stack.append((a, 0))
            else:
                stack.pop()
                order.append(n)
    return order


def _frontier(roots: Sequence[Node], own: set[int]) -> tuple[list[Node], set[int]]:
    """The values roots read besides `own` and constants (what a function closes over: the
    nodes outside that its own nodes take), and the ids of every node reached."""
    order = _order(roots, own)
    dep = set(own)
    for n in order:
        if n.args and any(id(a) in dep for a in n.args):
            dep.add(id(n))
    free: dict[int, Node] = {}
    for n in order:
        if id(n) in dep and n.args and id(n) not in own:
            for a in n.args:
                if id(a) not in dep and not a.is_const:
                    free.setdefault(id(a), a)
    for r in roots:
        if id(r) not in dep and not r.is_const:
            free.setdefault(id(r), r)
    return list(free.values()), {id(n) for n in order}


def _replace(roots: Sequence[Node], mapping: dict[int, Node]) -> list[Node]:
    """roots rebuilt with the nodes in mapping replaced, not looking below them."""
    memo = dict(mapping)
    for n in _order(roots, set(mapping)):
        if id(n) not in memo:
            memo[id(n)] = rebuild(n, [memo.get(id(a), a) for a in n.args]) if n.args else n
    return [memo[id(r)] for r in roots]


def _bwd_graph(stand: Sequence[Node], names: Sequence[str], outs: Sequence[tuple[str, Node]]) -> tuple[Graph, list]:
    """bwd as a graph of its own: inputs the stand-ins (renamed `names`), then every other value
    its outputs read (lifted: p0, p1, ..., returned as the node's last arguments)."""
    roots = [v for _, v in outs]
    lifted, _ = _frontier(roots, {id(s) for s in stand})
    new = [input_node(name, s.dtype, s.shape) for name, s in zip(names, stand)]
    new += [input_node(f"p{j}", v.dtype, v.shape) for j, v in enumerate(lifted)]
    done = _replace(roots, dict(zip(map(id, [*stand, *lifted]), new)))
    graph = Graph(new, [(name, v) for (name, _), v in zip(outs, done)])
    verify(graph)
    return graph, lifted


def _ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name).lstrip("_0123456789") or "f"


# ------------------------------------------------------------------ pytrees, with paths as Python writes them


def _tree(tree: Any, path: str) -> tuple[list[Any], list[str], TreeDef]:
    """trace.flatten's leaves and structure, each leaf's path as Python writes it (`params['W']`)."""
    return flatten(tree, path, python=True)


def _pairs(arg: Any, ct: Any, path: str, who: str) -> list[tuple[Any, Any, str]]:
    """(argument leaf, its cotangent or None, path) for every leaf of an argument: the cotangent
    has the argument's structure, or is None (no cotangent) for the argument or any subtree."""
    if ct is None:
        leaves, paths, _ = _tree(arg, path)
        return [(x, None, p) for x, p in zip(leaves, paths)]
    if isinstance(arg, dict):
        if not isinstance(ct, dict) or set(ct) != set(arg):
            got = f"keys {sorted(map(str, ct))}" if isinstance(ct, dict) else describe(ct)
            raise ShapeError(f"{who}: bwd's cotangent for {path} is {got}; the argument is a dict with keys "
                             f"{sorted(map(str, arg))}: a cotangent has its argument's structure (or is None)")
        return [t for k in sorted(arg, key=str) for t in _pairs(arg[k], ct[k], f"{path}[{k!r}]", who)]
    if isinstance(arg, (list, tuple)):
        if not isinstance(ct, (list, tuple)) or len(ct) != len(arg):
            got = f"{len(ct)} entries" if isinstance(ct, (list, tuple)) else describe(ct)
            raise ShapeError(f"{who}: bwd's cotangent for {path} has {got}; the argument is a "
                             f"{type(arg).__name__} of {len(arg)}: a cotangent has its argument's structure (or is None)")
        return [t for i, (a, c) in enumerate(zip(arg, ct)) for t in _pairs(a, c, f"{path}[{i}]", who)]
    if arg is None:
        return []
    if isinstance(ct, (dict, list, tuple)):
        raise ShapeError(f"{who}: bwd's cotangent for {path} is {describe(ct)}; the argument is one array")
    return [(arg, ct, path)]


def _node(x: Any, trace: Trace, what: str) -> Node:
    """A traced value, number or NumPy array as a node of the trace."""
    if isinstance(x, Tracer):
        return x.node
    if isinstance(x, (bool, np.bool_)) or x is None:
        raise TracingError(f"{what} is {describe(x)}: use arrays or numbers")
    if isinstance(x, (int, float, np.integer, np.floating)):
        return const(float(x), trace.dtype)
    if not isinstance(x, np.ndarray):
        raise TracingError(f"{what} is {describe(x)}: use arrays or numbers")
    return apply("add", Tracer(const(0.0, trace.dtype), trace), x).node  # a captured constant of the program


def _shape_of(x: Any) -> tuple:
    return tuple(x.node.shape) if isinstance(x, Tracer) else np.shape(x)


def _trace_of(leaves: Sequence[Any]) -> Trace | None:
    for x in leaves:
        if isinstance(x, Tracer):
            return x.trace
    return active_trace()


def _param_names(fun: Callable, n: int) -> list[str]:
    """The names of fun's first n positional parameters (args[k] past them), for messages."""
    try:
        params = [p for p in inspect.signature(fun).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    return [params[k].name if k < len(params) else f"args[{k}]" for k in range(n)]


def _positional(fun: Callable, args: tuple, kwargs: dict, who: str) -> tuple:
    """Keyword arguments resolved into positional ones by fun's signature (defaults filled), as JAX does."""
    if not kwargs:
        return args
    try:
        bound = inspect.signature(fun).bind(*args, **kwargs)
    except TypeError as exc:
        raise ArgumentError(f"{who}: {exc}") from None
    bound.apply_defaults()
    if bound.kwargs:
        raise ArgumentError(f"{who}: keyword-only parameters ({', '.join(bound.kwargs)}) are not supported: pass "
                            "every argument by position or by a positional parameter's name")
    return tuple(bound.args)


# ------------------------------------------------------------------ custom_vjp


class CustomVJP:
    """A function with a custom reverse-mode rule (jax.custom_vjp): made by `custom_vjp(fn)`,
    given its rule by `defvjp(fwd, bwd)`, then called as fn."""

    def __init__(self, fun: Callable, nondiff_argnums: Sequence[int] = ()):
        if not callable(fun):
            raise ArgumentError(f"custom_vjp: expected a Python function, got {describe(fun)}")
        nums = (nondiff_argnums,) if isinstance(nondiff_argnums, int) else tuple(nondiff_argnums)
        for k in nums:
            if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
                raise ArgumentError(f"custom_vjp: nondiff_argnums takes ints >= 0, got {nondiff_argnums!r}")
        self.fun = fun
        self.nondiff_argnums = tuple(sorted({int(k) for k in nums}))
        self.fwd: Callable | None = None
        self.bwd: Callable | None = None
        self._inside = 0  # > 0 while fwd or bwd traces: a call of this function there is fn itself
        functools.update_wrapper(self, fun)
        self.name = getattr(fun, "__name__", "f")

    def defvjp(self, fwd: Callable, bwd: Callable) -> None:
        """The rule: `fwd(*args) -> (output, residuals)` (output as fn's), and `bwd(residuals, g)`
        (g: the output's cotangent, in its structure) -> a tuple with one cotangent per argument
        (in the argument's structure and shapes, None for none); with nondiff_argnums, those
        arguments come first, `bwd(*nondiff, residuals, g)`, and get no cotangent."""
        for name, f in (("fwd", fwd), ("bwd", bwd)):
            if not callable(f):
                raise ArgumentError(f"custom_vjp {self.name}: defvjp's {name} must be a function, got {describe(f)}")
        self.fwd, self.bwd = fwd, bwd

    def __repr__(self) -> str:
        return f"<graphc.custom_vjp {self.name}{'' if self.fwd else ' (no rule yet: defvjp)'}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        who = f"custom_vjp {self.name}"
        if self.fwd is None or self.bwd is None:
            raise GraphcError(f"{who}: no VJP rule yet: call {self.name}.defvjp(fwd, bwd) before calling it")
        args = _positional(self.fun, args, kwargs, who)
        for k in self.nondiff_argnums:
            if k >= len(args):
                raise ArgumentError(f"{who}: nondiff_argnums names argument {k}, but it was called with {len(args)}")
        trace = _trace_of([x for a in args for x in _tree(a, "")[0]])
        if trace is None or self._inside:  # NumPy values (eager), or inside its own fwd or bwd: fn itself
            return self.fun(*args)
        self._inside += 1
        try:
            return self._traced(args, trace, who)
        finally:
            self._inside -= 1

    def _traced(self, args: tuple, trace: Trace, who: str) -> Any:
        names = _param_names(self.fun, len(args))
        diff = [i for i in range(len(args)) if i not in self.nondiff_argnums]
        arg_leaves = [_tree(a, n)[0] for a, n in zip(args, names)]
        own = {id(x.node) for leaves in arg_leaves for x in leaves if isinstance(x, Tracer)}
        # the value: fn's own ops, inline
        o_leaves, o_paths, o_tree = _tree(self.fun(*args), "output")
        outs = [_node(v, trace, f"{who}: fn's {p}") for v, p in zip(o_leaves, o_paths)]
        # the residuals, from fwd (its output checked against fn's)
        pair = self.fwd(*args)  # type: ignore[misc]
        if not (isinstance(pair, tuple) and len(pair) == 2):
            raise ArgumentError(f"{who}: fwd must return a pair (output, residuals), got {describe(pair)}")
        f_leaves, f_paths, f_tree = _tree(pair[0], "output")
        if f_tree != o_tree:
            raise ShapeError(f"{who}: fwd's output has {len(f_leaves)} array(s) in another structure than fn's "
                             f"({len(o_leaves)}): fwd returns (fn's output, residuals)")
        for v, p, node in zip(f_leaves, f_paths, outs):
            got = _node(v, trace, f"{who}: fwd's {p}")
            if got.type != node.type:
                raise ShapeError(f"{who}: fwd's {p} is {got.type} but fn's is {node.type}: fwd returns (fn's output, "
                                 "residuals)")
        r_leaves, _, r_tree = _tree(pair[1], "residuals")
        k = next(_IDS)
        res = [x.node for x in r_leaves if isinstance(x, Tracer)]
        r_stand = [input_node(f"cvjp{k}_r{i}", n.dtype, n.shape) for i, n in enumerate(res)]
        it = iter(r_stand)
        r_vals = [Tracer(next(it), trace) if isinstance(x, Tracer) else x for x in r_leaves]  # others: as they are
        g_stand = [input_node(f"cvjp{k}_g{j}", n.dtype, n.shape) for j, n in enumerate(outs) if n.type.is_float]
        it = iter(g_stand)
        g = unflatten(o_tree, [Tracer(next(it), trace) if n.type.is_float else None for n in outs])
        cts = self.bwd(*(args[i] for i in self.nondiff_argnums), unflatten(r_tree, r_vals), g)  # type: ignore[misc]
        # the cotangents: one per differentiable argument, each in its argument's structure and types
        if not isinstance(cts, (tuple, list)):
            raise ArgumentError(f"{who}: bwd must return a tuple of cotangents, one per argument, got {describe(cts)}")
        if len(cts) != len(diff):
            raise ArgumentError(f"{who}: bwd returned {len(cts)} cotangent(s) for {len(diff)} argument(s) "
                                f"({', '.join(names[i] for i in diff)}): one per argument, None for none"
                                + (" (the nondiff_argnums get none)" if self.nondiff_argnums else ""))
        xs: list[Node] = []
        d_outs: list[tuple[str, Node]] = []
        for i, ct in zip(diff, cts):
            for leaf, c, path in _pairs(args[i], ct, names[i], who):
                self._cotangent(leaf, c, path, trace, who, xs, d_outs)
        # values fn reads besides its arguments: no gradient from the rule (refused if one is needed)
        free = [x.node for i in self.nondiff_argnums for x in arg_leaves[i]
                if isinstance(x, Tracer) and x.node.type.is_float]
        free += _differentiable_closure(outs, own, k)
        bwd, lifted = _bwd_graph(r_stand + g_stand, [f"r{i}" for i in range(len(r_stand))]
                                 + [f"g{j}" for j in range(len(g_stand))], d_outs)
        node = make(CALL, *xs, *outs, *res, *free, *lifted, bwd=bwd, name=_ident(self.name), nx=len(xs),
                    nout=len(outs), nres=len(res), nfree=len(free))
        return unflatten(o_tree, [Tracer(make(RESULT, node, index=j), trace) for j in range(len(outs))])

    @staticmethod
    def _cotangent(leaf: Any, c: Any, path: str, trace: Trace, who: str, xs: list[Node],
                   d_outs: list[tuple[str, Node]]) -> None:
        """One argument leaf and bwd's cotangent for it, checked: a traced float leaf becomes an
        argument of the node (with its cotangent as output d<k>); a constant's is dropped."""
        if not isinstance(leaf, Tracer) or not leaf.node.type.is_float:
            if c is None:
                return
            if isinstance(leaf, Tracer):
                raise ShapeError(f"{who}: bwd gives a cotangent for {path}, which is {leaf.node.type} (integers and "
                                 "masks have no gradient): give None")
            if _shape_of(c) != np.shape(leaf):
                raise ShapeError(f"{who}: bwd's cotangent for {path} has shape {_shape_of(c)} but {path} has shape "
                                 f"{np.shape(leaf)}")
            return  # a constant of the program: nothing to give it to
        xs.append(leaf.node)
        if c is None:
            return
        if not isinstance(c, Tracer) and np.shape(c) != tuple(leaf.node.shape):
            raise ShapeError(f"{who}: bwd's cotangent for {path} has shape {np.shape(c)} but {path} is "
                             f"{leaf.node.type}: a cotangent has its argument's shape")
        node = _node(c, trace, f"{who}: bwd's cotangent for {path}")
        if node.type != leaf.node.type:
            raise ShapeError(f"{who}: bwd's cotangent for {path} is {node.type} but {path} is {leaf.node.type}: a "
                             "cotangent has its argument's shape and dtype")
        d_outs.append((f"d{len(xs) - 1}", node))


def _differentiable_closure(outs: Sequence[Node], own: set[int], k: int) -> list[Node]:
    """The float values fn's outputs read besides its arguments and that reverse mode would reach:
    fn on stand-ins for its arguments and for them, swept once (values with no derivative, such
    as a size counted at run time, need no rule)."""
    closure, reached = _frontier(outs, own)
    floats = [o for o in outs if o.type.is_float]
    if not any(c.type.is_float for c in closure) or not floats:
        return []
    ins = [n for n in _order(outs, own) if id(n) in own and id(n) in reached] + closure
    stand = [input_node(f"cvjp{k}_s{i}", n.dtype, n.shape) for i, n in enumerate(ins)]
    copy = _replace(floats, dict(zip(map(id, ins), stand)))  # closed: every value it reads is a stand-in
    seeds = [input_node(f"cvjp{k}_u{j}", o.dtype, o.shape) for j, o in enumerate(floats)]
    wrt = [(c, s) for c, s in zip(closure, stand[len(ins) - len(closure):]) if c.type.is_float]
    reach = autodiff.vjp(copy, seeds, [s for _, s in wrt])
    return [c for (c, _), r in zip(wrt, reach) if r is not None]


def custom_vjp(fun: Callable, nondiff_argnums: Sequence[int] = ()) -> CustomVJP:
    """jax.custom_vjp: `f = custom_vjp(fn)`, `f.defvjp(fwd, bwd)`, then `f(*args)` is fn(*args)
    whose gradient, in a function graphc differentiates, is bwd's: `fwd(*args) -> (output,
    residuals)`, `bwd(residuals, g) -> (one cotangent per argument, None for none)`. Arguments,
    outputs, residuals and cotangents are pytrees; residuals that are not traced values (Python
    numbers, static settings) reach bwd as they are. `nondiff_argnums`: arguments passed to bwd
    first, `bwd(*those, residuals, g)`, that get no cotangent.

    Traced, fn's ops give the value (fused and compiled like any), and fwd and bwd are traced once
    at the call: bwd's ops become part of the gradient program (module docstring); a gradient of
    the gradient differentiates bwd as written, as JAX does. Differentiating with respect to a
    traced value fn reads without taking it as an argument is refused (the rule cannot give its
    gradient). On NumPy values, f(*args) is fn(*args)."""
    return CustomVJP(fun, nondiff_argnums)


# ------------------------------------------------------------------ checkpoint


def checkpoint(fun: Callable) -> Callable:
    """jax.checkpoint (torch.utils.checkpoint): `checkpoint(block)(*args)` is block(*args), but in a
    function graphc differentiates, the backward pass recomputes block's intermediates from its
    inputs instead of keeping them from the forward pass: the compiled program's memory plan holds
    one checkpointed block's intermediates at a time, for the price of running each block's
    forward once more. Values and gradients are those without checkpoint. Arguments and outputs
    are pytrees; the values block closes over (parameters) are its inputs too and get their
    gradients. On NumPy values it is block(*args)."""
    if not callable(fun):
        raise ArgumentError(f"checkpoint: expected a Python function, got {describe(fun)}")

    @functools.wraps(fun)
    def remat(*args: Any, **kwargs: Any) -> Any:
        leaves = [x for a in (*args, *kwargs.values()) for x in _tree(a, "")[0]]
        trace = _trace_of(leaves)
        if trace is None:
            return fun(*args, **kwargs)
        return _checkpointed(fun, leaves, fun(*args, **kwargs), trace)

    return remat


def _token(values: Sequence[Node]) -> Node:
    """One scalar read from every value (their sums, added): what a remat_barrier waits for."""
    t = None
    for v in values:
        s = make("sum", v) if v.shape else v
        t = s if t is None else make("add", t, s)
    assert t is not None
    return t


def _checkpointed(fun: Callable, leaves: list, out: Any, trace: Trace) -> Any:
    """block's output, with a custom_vjp node whose rule recomputes the block (module docstring)."""
    who = f"checkpoint {getattr(fun, '__name__', 'f')}"
    own: dict[int, Node] = {}
    for x in leaves:
        if isinstance(x, Tracer):
            own.setdefault(id(x.node), x.node)
    o_leaves, o_paths, o_tree = _tree(out, "output")
    outs = [_node(v, trace, f"{who}: the block's {p}") for v, p in zip(o_leaves, o_paths)]
    closure, reached = _frontier(outs, set(own))
    ins = [n for i, n in own.items() if i in reached] + closure  # the block's inputs: arguments, closed-over values
    floats = [j for j, o in enumerate(outs) if o.type.is_float]
    if not floats or not any(n.type.is_float for n in ins):
        return out  # nothing to differentiate
    k = next(_IDS)
    stand = [input_node(f"ckpt{k}_x{i}", n.dtype, n.shape) for i, n in enumerate(ins)]
    body = _replace(outs, dict(zip(map(id, ins), stand)))  # the block on stand-ins for its inputs
    gs = [input_node(f"ckpt{k}_g{j}", outs[j].dtype, outs[j].shape) for j in floats]
    # the copy starts at barriers on the inputs computed in the program (activations), or on every
    # input where all are the program's own (parameters, data): it waits for the cotangents
    wrt = [i for i, n in enumerate(ins) if n.type.is_float]
    made = [i for i in wrt if not ins[i].is_input]
    again = list(stand)
    for i in made or wrt:
        again[i] = make(BARRIER, stand[i], _token(gs))
    copy = _replace([body[j] for j in floats], dict(zip(map(id, stand), again)))  # the block once more
    cts = dict(zip(wrt, autodiff.vjp(copy, gs, [again[i] for i in wrt])))
    rest = [c for i, c in cts.items() if c is not None and i not in made]
    if made and rest:  # the activations' cotangents wait for the parameters': one block's backward at a time
        cts.update((i, make(BARRIER, cts[i], _token(rest))) for i in made if cts[i] is not None)
    d_outs = [(f"d{i}", c) for i, c in cts.items() if c is not None]
    bwd, lifted = _bwd_graph(stand + gs, [f"r{i}" for i in range(len(stand))] + [f"g{j}" for j in range(len(gs))],
                             d_outs)
    node = make(CALL, *ins, *outs, *ins, *lifted, bwd=bwd, name=_ident(getattr(fun, "__name__", "f")), nx=len(ins),
                nout=len(outs), nres=len(ins), nfree=0)
    return unflatten(o_tree, [Tracer(make(RESULT, node, index=j), trace) for j in range(len(outs))])


__all__ = ["custom_vjp", "checkpoint", "CustomVJP"]
