"""Loops: `scan` and `fori_loop` with `jax.lax`'s semantics, traced once and compiled as one node.

`scan(f, init, xs)` traces `f` once, on stand-ins for one step (the carry's leaves, one slice of
each xs leaf), into a graph of its own: the loop's **body**. Values the body closes over (a
model's parameters, anything computed outside) become extra arguments of the loop, the same at
every step. The loop is one `scan` node holding that graph as its attribute `body`, and nodes of
`scan_out` pick its results: the final carry, the stacked ys, and the carry entering each step
(stacked; only the backward pass reads them). So the IR, the compile time and the trace count
do not grow with the number of steps, and `print_graph` shows the loop as one node with its body
indented under it.

Reverse mode: the backward pass of a scan is another scan, running the other way, whose body is
the body's vector-Jacobian product (graphc's own autodiff over the body's IR). It **stores** the
carry entering each step (one buffer of n times the carry, which the memory plan holds from the
forward loop to the backward one) and **recomputes** the body's intermediates inside each
backward step from it, so the memory is n carries, never n copies of every intermediate. The
gradients of the values the body closes over are summed in the backward loop's carry. Since the
backward loop is a scan too, it differentiates again (grad of grad, Hessian-vector products).

Numerics: each step runs the ops the unrolled loop would, so values are those of the Python loop
unrolled, bit for bit on the numpy target, and so are the gradients when each value gets at most
two contributions per step; otherwise they are summed within the step first, then across steps,
and agree with the unrolled graph's order of summation to about an ulp.

Running: the numpy target evaluates the body with the reference evaluator once per step; the
plan-based targets (llvm, cpu, parallel, cuda) compile the body once for their own target and
call that kernel once per step from a host loop (`run_loop`), writing the stacked results into
buffers of the plan (`schedule.plan.ScanStep`).
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np

from .describe import describe
from .errors import ArgumentError, IRError, ShapeError
from .ir import DTYPE_NUMPY, Graph, Node, Type, const, fmt_shape, input_node, make, topo_order, verify
from .registry import OpSpec, register_op
from .several import register_pick, whole_rule
from .trace import Trace, Tracer, TracingError, TreeDef, active_trace, flatten, substitute, unflatten

LOOP, RESULT = "scan", "scan_out"  # the loop node and the node that picks one of its results
_IDS = itertools.count()  # stand-in inputs while a body is traced or built: unique names


# ------------------------------------------------------------------ the ops


def results(node: Node) -> list[Type]:
    """The types of a scan node's results, by index: the final carry's leaves, the stacked ys,
    the stacked carries (the carry entering each step, in the order of xs)."""
    a = node.attrs
    body, nc, n = a["body"], a["ncarry"], a["n"]
    carries = [body.inputs[k].type for k in range(nc)]
    ys = [v.type for _, v in body.outputs[nc:]]
    return carries + [Type(t.dtype, (n, *t.shape)) for t in ys + carries]


def _int(op: str, name: str, v: Any, lo: int = 0) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise IRError(f"{op}: attribute {name} must be an int >= {lo}, got {v!r}")
    return int(v)


def _infer_scan(op: str, args: tuple, attrs: dict) -> tuple[dict, Type]:
    extra = set(attrs) - {"body", "n", "ncarry", "nxs", "reverse", "counter"}
    if extra:
        raise IRError(f"scan: unknown attribute(s) {', '.join(sorted(extra))}")
    body = attrs.get("body")
    if not isinstance(body, Graph):
        raise IRError(f"scan: attribute body must be a graph, got {describe(body)}")
    nc, nx = _int(op, "ncarry", attrs.get("ncarry")), _int(op, "nxs", attrs.get("nxs"))
    n = attrs.get("n")
    if not isinstance(n, str):
        n = _int(op, "n", n)
    reverse, counter = attrs.get("reverse", False), attrs.get("counter")
    if not isinstance(reverse, bool):
        raise IRError(f"scan: attribute reverse must be True or False, got {reverse!r}")
    if counter is not None:
        counter = _int(op, "counter", counter, lo=-(1 << 62))
    if nc + nx > len(args) or len(body.inputs) != len(args) + (counter is not None):
        raise IRError(f"scan: {len(args)} argument(s) ({nc} carries, {nx} xs) for a body of {len(body.inputs)} "
                      f"input(s){' (and the step counter)' if counter is not None else ''}")
    for k, (a, i) in enumerate(zip(args, body.inputs)):
        if nc <= k < nc + nx:
            if not a.shape or a.shape[0] != n or Type(a.dtype, a.shape[1:]) != i.type:
                raise ShapeError(f"scan: xs argument {k - nc} is {a.type}; the body's input %{i.attr} takes one "
                                 f"of its {n} slices of type {i.type}")
        elif a.type != i.type:
            raise ShapeError(f"scan: argument {k} is {a.type}; the body's input %{i.attr} is {i.type}")
    if counter is not None and body.inputs[-1].type != Type("i64"):
        raise IRError(f"scan: the step counter (the body's last input) must be i64, got {body.inputs[-1].type}")
    if len(body.outputs) < nc:
        raise IRError(f"scan: the body returns {len(body.outputs)} value(s) for {nc} carries")
    for k in range(nc):
        name, v = body.outputs[k]
        if v.type != body.inputs[k].type:
            raise ShapeError(f"scan: the body's carry {name} is {v.type} but enters as {body.inputs[k].type}")
    out = {"body": body, "n": n, "ncarry": nc, "nxs": nx, "reverse": reverse, "counter": counter}
    return out, Type(body.dtype)  # the node itself only holds its results: scan_out picks them


_REFERENCE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # body -> its reference evaluation order


def _np_scan(*args: Any, body: Graph, n: int, ncarry: int, nxs: int, reverse: bool, counter: int | None) -> tuple:
    """Every result, by the NumPy reference evaluator once per step (the numpy target)."""
    from .backends.numpy_ref import Plan

    plan = _REFERENCE.get(body)
    if plan is None:
        plan = _REFERENCE[body] = Plan(body)

    def step(ins: list, dims: dict) -> list:
        env = plan.run(ins, dims)
        return [env[k] for k in plan.roots]

    attrs = {"body": body, "n": n, "ncarry": ncarry, "nxs": nxs, "reverse": reverse, "counter": counter}
    got = run_loop(attrs, args, step, range(ncarry + len(body.outputs)))
    return tuple(got[i] for i in range(len(got)))


def _sym_scan(*args: Any, body: Graph, n: int, ncarry: int, nxs: int, reverse: bool, counter: int | None) -> tuple:
    """Every result over object arrays of SymPy expressions, the body expanded once per step."""
    from .verify.tensor import expand

    def step(ins: list, dims: dict) -> list:
        got = expand(body, {i.attr: v for i, v in zip(body.inputs, ins)}, dims)
        return [_bare(v) for v in got.values()]

    attrs = {"body": body, "n": n, "ncarry": ncarry, "nxs": nxs, "reverse": reverse, "counter": counter}
    got = run_loop(attrs, args, step, range(ncarry + len(body.outputs)),
                   alloc=lambda i, shape, dt: np.empty(shape, object),
                   item=lambda x, t: _bare(np.asarray(x, dtype=object)[t, ...]))
    return tuple(_bare(got[i]) for i in range(len(got)))


def _bare(v: Any) -> Any:
    return v[()] if isinstance(v, np.ndarray) and v.ndim == 0 else v


register_op(OpSpec(
    LOOP, 1, _np_scan, whole_rule("the scan"), None, "",
    "a loop: the body graph applied n times to a carry and one slice of each xs (jax.lax.scan); results by scan_out",
    infer=_infer_scan, symbolic=_sym_scan, internal=True))
register_pick(RESULT, LOOP, results, "one result of a scan: final carry, stacked ys, stacked carries", "the scan")
_infer_scan.variadic = True  # type: ignore[attr-defined]  # carries, xs and closed-over values: any number


# ------------------------------------------------------------------ running a loop


def _put(buf: Any, t: int | None, v: Any) -> None:
    if t is None:
        buf[...] = v
    else:
        buf[t] = v


def run_loop(attrs: dict, args: Sequence[Any], step: Callable[[list, dict], Sequence[Any]], want: Collection[int],
             dims: dict | None = None, alloc: Callable[[int, tuple, np.dtype], Any] | None = None,
             put: Callable[[Any, int | None, Any], None] = _put,
             item: Callable[[Any, int], Any] = lambda x, t: x[t, ...]) -> dict[int, Any]:
    """One scan, step by step: `step(inputs, dims)` runs the body once (its outputs in order),
    from a host loop (a runner's compiled body kernel, or the reference evaluator). Returns
    the wanted results by index, each in a buffer from `alloc(index, shape, dtype)` (the plan's:
    the stacked ones are the big ones; the carry entering step t is stored before the step runs)."""
    alloc = alloc or (lambda i, shape, dt: np.empty(shape, dt))
    body, nc, nx, counter = attrs["body"], attrs["ncarry"], attrs["nxs"], attrs["counter"]
    ny = len(body.outputs) - nc
    carry, xs, inv = list(args[:nc]), list(args[nc:nc + nx]), list(args[nc + nx:])
    sizes = dict(dims or {})  # the body's symbolic dimensions, bound from its inputs
    shapes = [np.shape(c) for c in carry] + [np.shape(x)[1:] for x in xs] + [np.shape(p) for p in inv]
    for node, shape in zip(body.inputs, shapes):
        sizes.update((d, s) for d, s in zip(node.shape, shape) if isinstance(d, str))
    n = int(np.shape(xs[0])[0]) if xs else int(sizes[attrs["n"]] if isinstance(attrs["n"], str) else attrs["n"])
    types = [body.inputs[k].type for k in range(nc)] + [v.type for _, v in body.outputs[nc:]]
    dts = [np.dtype(DTYPE_NUMPY[t.dtype]) for t in types]
    stacked = {i: None for i in want if nc <= i < 2 * nc + ny}  # ys, then stacked carries: made at their first use

    def buffer(i: int, shape: tuple) -> Any:
        b = stacked[i]
        if b is None:
            b = stacked[i] = alloc(i, (n, *shape), dts[i if i < nc + ny else i - nc - ny])
        return b

    keep = [(k, buffer(nc + ny + k, np.shape(carry[k]))) for k in range(nc) if nc + ny + k in stacked]
    ys: list[tuple[int, Any]] | None = None  # (index, buffer) of the stacked ys, made after the first step
    plain = put is _put  # NumPy buffers: plain indexing in the loop
    for t in (range(n - 1, -1, -1) if attrs["reverse"] else range(n)):
        for k, b in keep:
            if plain:
                b[t] = carry[k]
            else:
                put(b, t, carry[k])
        ins = carry + [item(x, t) for x in xs] + inv
        if counter is not None:
            ins.append(np.asarray(counter + t, dtype=np.int64))
        outs = step(ins, sizes)
        carry = list(outs[:nc])
        if ys is None:
            ys = [(nc + j, buffer(nc + j, np.shape(outs[nc + j]))) for j in range(ny) if nc + j in stacked]
        for i, b in ys:
            if plain:
                b[t] = outs[i]
            else:
                put(b, t, outs[i])
    got: dict[int, Any] = {}
    for k in range(nc):
        if k in want:
            got[k] = alloc(k, tuple(np.shape(carry[k])), dts[k])
            put(got[k], None, carry[k])
    for i in stacked:
        if stacked[i] is None:  # no step ran: an empty stack of the result's shape
            t = types[i if i < nc + ny else i - nc - ny]
            buffer(i, tuple(d if isinstance(d, int) else sizes[d] for d in t.shape))
        got[i] = stacked[i]
    return got


# ------------------------------------------------------------------ pytrees, with paths as JAX writes them


def _flatten(tree: Any, path: str) -> tuple[list[Any], list[str], TreeDef]:
    """trace.flatten's leaves and structure, each leaf's path as Python writes it (`params['W']`)."""
    return flatten(tree, path, python=True)


def _shown(td: TreeDef) -> str:
    """A structure in words: (*, {'h': *}) with * for a leaf."""
    if td.kind == "leaf":
        return "*"
    if td.kind == "none":
        return "None"
    kids = [_shown(c) for c in td.children]
    if td.kind == "dict":
        return "{" + ", ".join(f"{k!r}: {v}" for k, v in zip(td.keys, kids)) + "}"
    if td.kind == "list":
        return "[" + ", ".join(kids) + "]"
    return "(" + ", ".join(kids) + ("," if len(kids) == 1 else "") + ")"


# ------------------------------------------------------------------ tracing a body


def _constant(x: Any, trace: Trace) -> Node | None:
    """A leaf that is no traced value as IR: a number, or an array of one value (np.zeros); None
    for an array of several values (graphc's IR holds scalar constants only)."""
    if isinstance(x, (bool, np.bool_)):
        raise TracingError("a Python bool in a scan or fori_loop: use 1.0/0.0 or a comparison mask")
    if isinstance(x, (int, float, np.integer, np.floating)):
        return const(float(x), trace.dtype)
    a = np.asarray(x) if isinstance(x, (np.ndarray, list)) else None
    if a is None or a.dtype.kind not in "biuf":
        raise TracingError(f"cannot use {describe(x)} in a traced scan or fori_loop")
    if a.size and not np.all(a == a.flat[0]):
        return None
    c = const(float(a.flat[0]) if a.size else 0.0, trace.dtype)
    return make("broadcast_to", c, shape=a.shape) if a.ndim else c


def _leaf(x: Any, trace: Trace, path: str) -> Node:
    """A value the body returns, as a node of the trace."""
    if isinstance(x, Tracer):
        return x.node
    node = _constant(x, trace)
    if node is None:
        raise TracingError(f"{path} is a NumPy array of several values ({fmt_shape(np.shape(x))}): a traced loop "
                           "holds scalar constants only; pass it as an argument of the traced function")
    return node


def _trace_of(leaves: Sequence[Any]) -> Trace | None:
    """The trace these values belong to (or the one being recorded), None when nothing is traced."""
    for x in leaves:
        if isinstance(x, Tracer):
            return x.trace
    return active_trace()


def _length(n: Any, what: str) -> int | str:
    """`length=` as the IR holds it: an int >= 0, or a traced dimension's name."""
    if isinstance(n, str):  # a SymbolicDim: the size of a traced axis, bound per call
        return str.__str__(n)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ArgumentError(f"{what}: length must be an int >= 0, got {describe(n)}")
    return int(n)


def _same_size(a: int | str, b: int | str) -> bool:
    if type(a) is not type(b):  # a named (traced) size against a number: decided per size
        raise TracingError(f"the size of dimension {a if isinstance(a, str) else b} is not known while tracing")
    return a == b


def _body(inputs: Sequence[Node], names: Sequence[str], outputs: Sequence[Node], out_names: Sequence[str],
          tail: Sequence[Node] = ()) -> tuple[Graph, list[Node]]:
    """The body as a graph of its own: the nodes between `inputs` (and `tail`) and `outputs`;
    every other node they read (a value the body closes over, computed outside) becomes a
    further input p0, p1, ..., returned as the loop's extra arguments. Inputs: `inputs` named
    `names`, the lifted values, then `tail` (the step counter, named t)."""
    inputs = list(inputs) + list(tail)
    own = {id(n) for n in inputs}
    order = topo_order(outputs)
    dep = set(own)
    for n in order:
        if n.args and any(id(a) in dep for a in n.args):
            dep.add(id(n))
    free: dict[int, Node] = {}
    for n in order:
        if id(n) in dep and n.args:
            for a in n.args:
                if id(a) not in dep and a.op != "const":
                    free.setdefault(id(a), a)
    for o in outputs:
        if id(o) not in dep and o.op != "const":
            free.setdefault(id(o), o)
    lifted = list(free.values())
    head = inputs[:len(inputs) - len(tail)]
    new = [input_node(name, n.dtype, n.shape) for name, n in zip(names, head)]
    new += [input_node(f"p{j}", a.dtype, a.shape) for j, a in enumerate(lifted)]
    new += [input_node("t", n.dtype, n.shape) for n in tail]
    memo: dict[int, Node] = dict(zip([id(n) for n in head + lifted + list(tail)], new))
    for n in order:
        if id(n) in dep and id(n) not in memo:
            memo[id(n)] = make(n.op, *(memo.get(id(a), a) for a in n.args), **n.attrs)
    graph = Graph(new, [(name, memo.get(id(o), o)) for name, o in zip(out_names, outputs)])
    verify(graph)
    return graph, lifted


def _traced_loop(what: str, call: Callable[[Any, Any, Any], tuple[Any, Any]], init: Any, xs: Any,
                 length: Any, reverse: bool, counter: int | None, trace: Trace) -> tuple[Any, Any] | None:
    """The loop as one scan node of `trace`: (final carry, stacked ys) as tracers in the body's
    structures; None where an input cannot be IR (an array of several values: the caller unrolls)."""
    c_leaves, c_paths, c_tree = _flatten(init, "carry")
    x_leaves, x_paths, x_tree = _flatten(xs, "xs")
    c_nodes = [x.node if isinstance(x, Tracer) else _constant(x, trace) for x in c_leaves]
    x_nodes = [x.node if isinstance(x, Tracer) else _constant(x, trace) for x in x_leaves]
    if any(n is None for n in c_nodes + x_nodes):
        return None
    for node, path in zip(x_nodes, x_paths):
        if not node.shape:
            raise ShapeError(f"{what}: {path} is a scalar ({node.type}); scan slices each leaf of xs along its "
                             "leading axis")
    n: int | str | None = _length(length, what) if length is not None else None
    for node in x_nodes:
        if not _same_size(node.shape[0], x_nodes[0].shape[0]):
            shown = ", ".join(f"{p} {fmt_shape(m.shape)}" for p, m in zip(x_paths, x_nodes))
            raise ShapeError(f"{what}: the leaves of xs have different leading lengths: {shown}")
    if x_nodes:
        if n is not None and not _same_size(n, x_nodes[0].shape[0]):
            raise ShapeError(f"{what}: length={n} but the leaves of xs have {x_nodes[0].shape[0]} entries "
                             f"along their leading axis ({x_paths[0]} is {fmt_shape(x_nodes[0].shape)})")
        n = x_nodes[0].shape[0]
    if n is None:
        raise ArgumentError(f"{what}: with xs=None, give the number of steps: length=")
    k = next(_IDS)
    c_in = [input_node(f"scan{k}_c{i}", m.dtype, m.shape) for i, m in enumerate(c_nodes)]
    x_in = [input_node(f"scan{k}_x{i}", m.dtype, m.shape[1:]) for i, m in enumerate(x_nodes)]
    t_in = [input_node(f"scan{k}_t", "i64")] if counter is not None else []
    carry = unflatten(c_tree, [Tracer(m, trace) for m in c_in])
    x = unflatten(x_tree, [Tracer(m, trace) for m in x_in])
    new_carry, y = call(carry, x, Tracer(t_in[0], trace) if t_in else None)
    n_leaves, n_paths, n_tree = _flatten(new_carry, "carry")
    if n_tree != c_tree:
        raise ShapeError(f"{what}: the body returns a carry of structure {_shown(n_tree)}, but the carry enters "
                         f"as {_shown(c_tree)}: the carry keeps its structure, shapes and dtypes across steps")
    outs = []
    for leaf, path, node_in in zip(n_leaves, c_paths, c_in):
        node = _leaf(leaf, trace, f"{what}: the body's carry {path}")
        if node.type != node_in.type:
            raise ShapeError(f"{what}: the body returns carry leaf {path} as {node.type} but it enters the loop as "
                             f"{node_in.type}: the carry keeps its shapes and dtypes across steps")
        outs.append(node)
    y_leaves, y_paths, y_tree = _flatten(y, "y")
    outs += [_leaf(v, trace, f"{what}: the body's output {p}") for v, p in zip(y_leaves, y_paths)]
    names = [f"c{i}" for i in range(len(c_in))] + [f"x{i}" for i in range(len(x_in))]
    body, lifted = _body(c_in + x_in, names, outs,
                         [f"c{i}" for i in range(len(c_in))] + [f"y{j}" for j in range(len(y_leaves))], t_in)
    loop = make(LOOP, *c_nodes, *x_nodes, *lifted, body=body, n=n, ncarry=len(c_nodes), nxs=len(x_nodes),
                reverse=reverse, counter=counter)
    final = unflatten(c_tree, [Tracer(make(RESULT, loop, index=i), trace) for i in range(len(c_nodes))])
    stacked = unflatten(y_tree, [Tracer(make(RESULT, loop, index=len(c_nodes) + j), trace)
                                 for j in range(len(y_leaves))])
    return final, stacked


# ------------------------------------------------------------------ the user API


def _eager_scan(f: Callable, init: Any, xs: Any, length: Any, reverse: bool) -> tuple[Any, Any]:
    """scan on NumPy values (or values the traced program cannot hold): a Python loop."""
    x_leaves, x_paths, x_tree = _flatten(xs, "xs")
    sizes = []
    for leaf, path in zip(x_leaves, x_paths):
        if not np.ndim(leaf):
            raise ShapeError(f"scan: {path} is a scalar; scan slices each leaf of xs along its leading axis")
        sizes.append(np.shape(leaf)[0])
    if len(set(sizes)) > 1:
        shown = ", ".join(f"{p} {fmt_shape(np.shape(v))}" for p, v in zip(x_paths, x_leaves))
        raise ShapeError(f"scan: the leaves of xs have different leading lengths: {shown}")
    n = _length(length, "scan") if length is not None else None
    if sizes and n is not None and n != sizes[0]:
        raise ShapeError(f"scan: length={n} but the leaves of xs have {sizes[0]} entries along their leading axis")
    if sizes:
        n = sizes[0]
    if n is None:
        raise ArgumentError("scan: with xs=None, give the number of steps: length=")
    carry, ys = init, []
    for t in (range(n - 1, -1, -1) if reverse else range(n)):
        out = f(carry, unflatten(x_tree, [leaf[t] for leaf in x_leaves]))
        carry = _same_carry("scan", init, _pair(out, "scan")[0])
        ys.append(out[1])
    if reverse:
        ys.reverse()
    if not ys:  # no step: the ys' structure from the body on zeros of one slice
        probe = unflatten(x_tree, [np.zeros(np.shape(v)[1:], dtype=np.asarray(v).dtype) for v in x_leaves])
        leaves, _, tree = _flatten(_pair(f(init, probe), "scan")[1], "y")
        return carry, unflatten(tree, [np.zeros((0, *np.shape(v))) for v in leaves])
    trees = [_flatten(y, "y") for y in ys]
    per_leaf = list(zip(*[leaves for leaves, _, _ in trees]))
    return carry, unflatten(trees[0][2], [_stack(vals) for vals in per_leaf])


def _same_carry(what: str, init: Any, carry: Any) -> Any:
    """The carry a step of an eager loop returns, checked against the one that entered: the
    same structure, and each NumPy leaf the same shape (traced leaves are checked when traced)."""
    leaves, paths, tree = _flatten(init, "carry")
    new, _, new_tree = _flatten(carry, "carry")
    if new_tree != tree:
        raise ShapeError(f"{what}: the body returns a carry of structure {_shown(new_tree)}, but the carry enters "
                         f"as {_shown(tree)}: the carry keeps its structure, shapes and dtypes across steps")
    for a, b, path in zip(leaves, new, paths):
        if isinstance(a, Tracer) or isinstance(b, Tracer):
            continue
        if (np.asarray(a).dtype.kind == "b") != (np.asarray(b).dtype.kind == "b"):
            raise ShapeError(f"{what}: the body returns carry leaf {path} as {describe(b)} but it enters the loop as "
                             f"{describe(a)}: the carry keeps its dtypes across steps")
        if np.shape(a) != np.shape(b):
            raise ShapeError(f"{what}: the body returns carry leaf {path} of shape {fmt_shape(np.shape(b))} but it "
                             f"enters the loop as {fmt_shape(np.shape(a))}: the carry keeps its shapes across steps")
    return carry


def _stack(vals: Sequence[Any]) -> Any:
    if any(isinstance(v, Tracer) for v in vals):
        from .trace import NUMPY_FUNCTIONS

        return NUMPY_FUNCTIONS["stack"](list(vals))
    return np.stack([np.asarray(v) for v in vals])


def _pair(out: Any, what: str) -> tuple[Any, Any]:
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ArgumentError(f"{what}: the body must return a pair (carry, y), got {describe(out)}")
    return out


def scan(f: Callable[[Any, Any], tuple[Any, Any]], init: Any, xs: Any = None, length: int | None = None,
         reverse: bool = False) -> tuple[Any, Any]:
    """jax.lax.scan: `carry, y = f(carry, x)` for each x, slicing every leaf of the pytree xs
    along its leading axis; returns (final carry, ys stacked on a new leading axis). `xs=None`
    with `length=n` runs n steps with x None; `reverse=True` runs from the last slice to the
    first and stacks ys in the original order. The carry keeps its structure, shapes and dtypes
    (a ShapeError names the leaf that changes).

    In a function graphc traces, `f` is traced once and the loop is one node of the program, so
    its IR and compile time do not depend on the number of steps; its gradient is a loop running
    backwards that stores the carry of each step and recomputes the body's intermediates (module
    docstring). On NumPy arrays it runs now, as a Python loop."""
    if not callable(f):
        raise ArgumentError(f"scan: f must be a function (carry, x) -> (carry, y), got {describe(f)}")
    if not isinstance(reverse, (bool, np.bool_)):
        raise ArgumentError(f"scan: reverse must be True or False, got {describe(reverse)}")
    leaves = _flatten(init, "init")[0] + _flatten(xs, "xs")[0]
    trace = _trace_of(leaves)
    if trace is not None:
        got = _traced_loop("scan", lambda c, x, _: _pair(f(c, x), "scan"), init, xs, length, bool(reverse), None,
                           trace)
        if got is not None:
            return got
    return _eager_scan(f, init, xs, length, bool(reverse))


def fori_loop(lower: int, upper: int, body_fun: Callable[[Any, Any], Any], init_val: Any) -> Any:
    """jax.lax.fori_loop: `val = body_fun(i, val)` for i = lower, ..., upper - 1 (none when
    upper <= lower); the bounds are Python ints (static), as JAX needs them for reverse-mode
    differentiation. Traced, it is a `scan` with no xs (so it differentiates as one), and i is
    a traced int64 scalar: index with it, or use it as a number."""
    for name, v in (("lower", lower), ("upper", upper)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ArgumentError(f"fori_loop: {name} must be a Python int (the bounds are static), got {describe(v)}")
    if not callable(body_fun):
        raise ArgumentError(f"fori_loop: body_fun must be a function (i, val) -> val, got {describe(body_fun)}")
    lower, upper = int(lower), int(upper)
    trace = _trace_of(_flatten(init_val, "carry")[0])
    if trace is not None:
        got = _traced_loop("fori_loop", lambda c, _, i: (body_fun(i, c), None), init_val, None,
                           max(0, upper - lower), False, lower, trace)
        if got is not None:
            return got[0]
    val = init_val
    for i in range(lower, upper):
        val = _same_carry("fori_loop", init_val, body_fun(i, val))
    return val


# ------------------------------------------------------------------ reverse mode


def _zeros(t: Type) -> Node:
    z = const(0.0, t.dtype)
    return make("broadcast_to", z, shape=t.shape) if t.shape else z


def _vjp(node: Node, cts: dict[int, Node], wanted: Sequence[bool]) -> tuple[Node | None, ...]:
    """The scan's vector-Jacobian product, given the adjoints of some of its results: a scan the
    other way round whose carry is the carry's adjoint and the running sums of the closed-over
    values' gradients, and whose xs are the stored carries, the forward xs and the ys' adjoints.
    Its body recomputes the forward step from the stored carry, then runs its VJP (autodiff over
    the body's IR). Only what `wanted` needs is computed."""
    from .passes.autodiff import vjp

    a = node.attrs
    body, nc, nx, counter = a["body"], a["ncarry"], a["nxs"], a["counter"]
    args = node.args
    init, xs, inv = args[:nc], args[nc:nc + nx], args[nc + nx:]
    ny = len(body.outputs) - nc
    fc = [k for k in range(nc) if init[k].type.is_float]  # carries with an adjoint
    gi = [j for j, p in enumerate(inv) if p.type.is_float and wanted[nc + nx + j]]
    gx = [j for j, x in enumerate(xs) if x.type.is_float and wanted[nc + j]]
    cy = [j for j in range(ny) if nc + j in cts]
    cs = [k for k in fc if nc + ny + k in cts]  # the stored carries themselves read downstream (grad of grad)
    if not (gi or gx or any(wanted[k] for k in fc)):
        return (None,) * len(args)
    u = next(_IDS)
    ct = [input_node(f"b{u}_ct{k}", init[k].dtype, init[k].shape) for k in fc]
    acc = [input_node(f"b{u}_acc{j}", inv[j].dtype, inv[j].shape) for j in gi]
    fwd = [input_node(f"b{u}_f{i}", m.dtype, m.shape) for i, m in enumerate(body.inputs)]
    cty = [input_node(f"b{u}_cy{j}", body.outputs[nc + j][1].dtype, body.outputs[nc + j][1].shape) for j in cy]
    cst = [input_node(f"b{u}_cs{k}", init[k].dtype, init[k].shape) for k in cs]
    outs = substitute([v for _, v in body.outputs], dict(zip(map(id, body.inputs), fwd)))  # the step, recomputed
    seeds = [ct[fc.index(k)] if k in fc else None for k in range(nc)] + \
        [cty[cy.index(j)] if j in cy else None for j in range(ny)]
    f_c, f_x, f_p = fwd[:nc], fwd[nc:nc + nx], fwd[nc + nx:nc + nx + len(inv)]
    adj = vjp(outs, seeds, f_c + f_x + f_p)
    adj_c, adj_x, adj_p = adj[:nc], adj[nc:nc + nx], adj[nc + nx:]
    new_ct = []
    for k in fc:
        g = adj_c[k]
        if k in cs:
            s = cst[cs.index(k)]
            g = s if g is None else make("add", g, s)
        new_ct.append(g if g is not None else _zeros(init[k].type))
    new_acc = [acc[i] if adj_p[j] is None else make("add", acc[i], adj_p[j]) for i, j in enumerate(gi)]
    ys = [adj_x[j] if adj_x[j] is not None else _zeros(f_x[j].type) for j in gx]
    carries, sliced, tail = ct + acc, f_c + f_x + cty + cst, fwd[nc + nx + len(inv):]
    inputs = carries + sliced + f_p + tail
    nb = len(carries)
    names = [f"c{i}" for i in range(nb)] + [f"x{i}" for i in range(len(sliced))] + \
        [f"p{j}" for j in range(len(f_p))] + ["t"] * len(tail)
    renamed = [input_node(name, m.dtype, m.shape) for name, m in zip(names, inputs)]
    back_outs = substitute(new_ct + new_acc + ys, dict(zip(map(id, inputs), renamed)))
    back = Graph(renamed, [(f"c{i}", v) for i, v in enumerate(back_outs[:nb])]
                 + [(f"y{j}", v) for j, v in enumerate(back_outs[nb:])])
    verify(back)
    stacks = [make(RESULT, node, index=nc + ny + k) for k in range(nc)]
    start = [cts[k] if k in cts else _zeros(init[k].type) for k in fc] + [_zeros(inv[j].type) for j in gi]
    loop = make(LOOP, *start, *stacks, *xs, *(cts[nc + j] for j in cy), *(cts[nc + ny + k] for k in cs), *inv,
                body=back, n=a["n"], ncarry=nb, nxs=nc + nx + len(cy) + len(cs), reverse=not a["reverse"],
                counter=counter)
    out: list[Node | None] = [None] * len(args)
    for i, k in enumerate(fc):
        if wanted[k]:
            out[k] = make(RESULT, loop, index=i)
    for i, j in enumerate(gi):
        out[nc + nx + j] = make(RESULT, loop, index=len(fc) + i)
    for i, j in enumerate(gx):
        out[nc + j] = make(RESULT, loop, index=nb + i)
    return tuple(out)


def _register_rule() -> None:
    from .passes import autodiff

    autodiff.SEVERAL[LOOP] = _vjp
    autodiff.PICKS.add(RESULT)


_register_rule()

__all__ = ["scan", "fori_loop"]
