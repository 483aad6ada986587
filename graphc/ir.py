"""The graph IR: immutable hash-consed nodes, graphs, printer/parser, verifier, exports.

Nodes are hash-consed: building the same node twice returns the same object,
so equality is identity and common subexpressions are shared for free. Every
traversal here is iterative, so a chain 100,000 deep is fine.
"""

from __future__ import annotations

import json
import math
import re
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import IRError, LimitError
from .registry import REGISTRY

DTYPES = ("f64", "f32")  # float dtypes: what formulas compute in
INT_DTYPES = ("i64", "bool")  # labels and indices; masks (comparisons): never differentiated
DTYPE_NUMPY = {"f64": "float64", "f32": "float32", "i64": "int64", "bool": "bool"}
DTYPE_ALIASES = {
    "f64": "f64", "float64": "f64", "double": "f64",
    "f32": "f32", "float32": "f32", "float": "f32", "single": "f32",
}
ANY_DTYPE_ALIASES = {**DTYPE_ALIASES, "i64": "i64", "int64": "i64", "int": "i64", "bool": "bool"}
MAX_NODES = 2_000_000  # a graph larger than this is refused with a LimitError

Dim = int | str  # a concrete size, or a named symbolic dimension ("N") bound on each call


def _lookup(dtype: object, table: dict[str, str], allowed: str) -> str:
    name = getattr(dtype, "__name__", None) or str(dtype)
    try:
        return table[name]
    except KeyError:
        raise IRError(f"unsupported dtype {dtype!r}: use {allowed}") from None


def canonical_dtype(dtype: object) -> str:
    """Map 'float64', np.float32, 'f32', ... to the IR's float dtype names."""
    return _lookup(dtype, DTYPE_ALIASES, "float64 or float32")


def canonical_any_dtype(dtype: object) -> str:
    """Like canonical_dtype, and also int64 (labels) and bool (masks)."""
    return _lookup(dtype, ANY_DTYPE_ALIASES, "float64, float32 or int64")


_DIM_RE = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*\Z")


def canonical_shape(shape: object) -> tuple[Dim, ...]:
    """(N, 3), ["N", 3], "N,3", 3, () -> a tuple of ints >= 0 and dimension names."""
    if isinstance(shape, str):
        shape = tuple(s.strip() for s in shape.split(",") if s.strip())
    elif isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        items = tuple(shape)  # type: ignore[arg-type]
    except TypeError:
        raise IRError(f"a shape is a tuple of sizes and names like ('N', 3), got {shape!r}") from None
    out: list[Dim] = []
    for d in items:
        if isinstance(d, str) and d.strip().isdigit():
            d = int(d.strip())
        if isinstance(d, bool) or not isinstance(d, (int, str)):
            raise IRError(f"bad dimension {d!r} in shape {shape!r}: use an int or a name like 'N'")
        if isinstance(d, int):
            d = int(d)
            if d < 0:
                raise IRError(f"negative dimension {d} in shape {shape!r}")
        elif not _DIM_RE.match(d):
            raise IRError(f"bad dimension name {d!r} in shape {shape!r}: use an identifier like N")
        out.append(d)
    return tuple(out)


@dataclass(frozen=True)
class Type:
    """A value's type: dtype and shape. Shape () is a scalar -- the only shape
    in pointwise mode; entries are ints or symbolic dimension names."""

    dtype: str = "f64"
    shape: tuple[Dim, ...] = ()

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def is_float(self) -> bool:
        return self.dtype in DTYPES

    def __str__(self) -> str:
        return self.dtype if not self.shape else f"{self.dtype}[{','.join(map(str, self.shape))}]"


_TYPES: dict[str, Type] = {d: Type(d) for d in DTYPES + INT_DTYPES}
_TYPE_RE = re.compile(r"^(?P<dtype>[a-z0-9]+)(\[(?P<shape>[A-Za-z_0-9, ]*)\])?\Z")


def scalar_type(dtype: str) -> Type:
    return _TYPES[canonical_dtype(dtype)]


def make_type(dtype: str, shape: object = ()) -> Type:
    return Type(canonical_any_dtype(dtype), canonical_shape(shape))


def parse_type(text: str) -> Type:
    """'f64', 'f32[N,3]', 'i64[N]' -> Type."""
    m = _TYPE_RE.match(text.strip())
    if not m:
        raise IRError(f"bad type {text!r}: expected like f64 or f64[N,3]")
    return make_type(m.group("dtype"), m.group("shape") or ())


def _round(value: float, dtype: str) -> float:
    if dtype == "f32":
        import numpy as np

        with np.errstate(over="ignore"):
            return float(np.float32(value))
    return float(value)


class Node:
    """One SSA value: an op applied to argument nodes, an input, or a constant.

    Never construct directly: use `make`, `const` or `input_node`, which
    hash-cons. Identity is equality. `attr` is the input's name, the
    constant's value, or an op's attributes as sorted (key, value) pairs
    (`sum`'s axis and keepdims); None for ops without attributes.
    """

    __slots__ = ("op", "args", "attr", "type", "__weakref__")

    op: str
    args: tuple[Node, ...]
    attr: object
    type: Type

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("graphc nodes are immutable")

    @property
    def dtype(self) -> str:
        return self.type.dtype

    @property
    def shape(self) -> tuple[Dim, ...]:
        return self.type.shape

    @property
    def attrs(self) -> dict[str, object]:
        """An op node's attributes as a dict ({} when it has none)."""
        if self.op in ("input", "const") or self.attr is None:
            return {}
        return dict(self.attr)  # type: ignore[call-overload]

    @property
    def is_const(self) -> bool:
        return self.op == "const"

    @property
    def is_input(self) -> bool:
        return self.op == "input"

    @property
    def value(self) -> float:
        if self.op != "const":
            raise IRError(f"node {self!r} is not a constant")
        return self.attr  # type: ignore[return-value]

    def __repr__(self) -> str:
        if self.op == "const":
            return f"const({_fmt_float(self.attr)}: {self.type})"
        if self.op == "input":
            return f"input({self.attr}: {self.type})"
        return f"<{self.op}/{len(self.args)}: {self.type}>"

    def __reduce__(self):
        raise TypeError("nodes are not picklable; print the graph to text instead")


_CACHE: weakref.WeakValueDictionary[tuple, Node] = weakref.WeakValueDictionary()


def _intern(op: str, args: tuple[Node, ...], attr: object, typ: Type) -> Node:
    key_attr = attr.hex() if isinstance(attr, float) else attr
    key = (op, args, key_attr, typ)
    node = _CACHE.get(key)
    if node is None:
        node = object.__new__(Node)
        object.__setattr__(node, "op", op)
        object.__setattr__(node, "args", args)
        object.__setattr__(node, "attr", attr)
        object.__setattr__(node, "type", typ)
        _CACHE[key] = node
    return node


def const(value: float, dtype: str = "f64") -> Node:
    """A scalar constant, rounded to the dtype it lives in."""
    typ = scalar_type(dtype)
    return _intern("const", (), _round(float(value), typ.dtype), typ)


def input_node(name: str, dtype: str = "f64", shape: object = ()) -> Node:
    typ = _TYPES[canonical_any_dtype(dtype)] if shape == () else make_type(dtype, shape)
    return _intern("input", (), name, typ)


def make(op: str, *args: Node, **attrs: object) -> Node:
    """Apply a registered op. The op's `infer` facet checks the arguments
    (arity, dtypes, shapes: a ShapeError names both shapes) and gives the
    result type; ops without one are elementwise with NumPy broadcasting."""
    spec = REGISTRY.get(op)
    if spec is None:
        raise IRError(f"unknown op {op!r}")
    if len(args) != spec.arity and not variadic(spec):
        raise IRError(f"op {op!r} takes {spec.arity} argument(s), got {len(args)}")
    if spec.infer is None:
        if attrs:
            raise IRError(f"op {op!r} takes no attributes, got {', '.join(attrs)}")
        typ = args[0].type
        for a in args[1:]:
            if a.type != typ:
                typ = elementwise_type(op, args)
                break
        if not typ.is_float:
            typ = elementwise_type(op, args)
        return _intern(op, tuple(args), None, typ)
    attr, typ = spec.infer(op, tuple(args), dict(attrs))
    return _intern(op, tuple(args), tuple(sorted(attr.items())) if attr else None, typ)


def variadic(spec: object) -> bool:
    """An op whose `infer` is marked `variadic = True` takes any number of arguments
    (graphc.loops' scan: its carries, xs and the values its body closes over); its
    `infer` checks them."""
    return bool(getattr(getattr(spec, "infer", None), "variadic", False))


def rebuild(node: Node, args: Sequence[Node]) -> Node:
    """`node`'s op and attributes over new arguments (what every pass uses)."""
    if tuple(args) == node.args:
        return node
    return make(node.op, *args, **node.attrs)


def broadcast_shapes(op: str, shapes: Sequence[tuple[Dim, ...]], names: str = "") -> tuple[Dim, ...]:
    """NumPy broadcasting over ints and names; a ShapeError names the shapes."""
    from .errors import ShapeError

    ndim = max(len(s) for s in shapes)
    out: list[Dim] = []
    for k in range(ndim):
        dim: Dim = 1
        for s in shapes:
            j = k - (ndim - len(s))
            if j < 0:
                continue
            d = s[j]
            if d == 1 or d == dim:
                continue
            if dim == 1:
                dim = d
                continue
            shown = " and ".join(fmt_shape(s) for s in shapes)
            raise ShapeError(f"{op}: shapes {shown} do not broadcast (dimension {d} against {dim})"
                             + (f" [{names}]" if names else ""))
        out.append(dim)
    return tuple(out)


def fmt_shape(shape: Sequence[Dim]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def elementwise_type(op: str, args: Sequence[Node]) -> Type:
    """Float arguments of one dtype, shapes broadcast."""
    dtypes = {a.dtype for a in args}
    for a in args:
        if not a.type.is_float:
            what = "a mask (a comparison)" if a.dtype == "bool" else "integer"
            raise IRError(f"{op}: argument is {what} ({a.type}); {op} takes floats"
                          + (" (use where(mask, a, b))" if a.dtype == "bool" else ""))
    if len(dtypes) > 1:
        raise IRError(f"op {op!r}: mixed types {' and '.join(sorted(dtypes))}")
    shape = args[0].shape if all(a.shape == args[0].shape for a in args) else broadcast_shapes(
        op, [a.shape for a in args], ", ".join(f"{a.attr} is {fmt_shape(a.shape)}" for a in args if a.op == "input"))
    return Type(args[0].dtype, shape) if shape else _TYPES[args[0].dtype]


def topo_order(roots: Iterable[Node]) -> list[Node]:
    """All nodes reachable from roots, each after its arguments (iterative DFS)."""
    order: list[Node] = []
    seen: set[int] = set()
    for root in roots:
        if id(root) in seen:
            continue
        stack: list[tuple[Node, int]] = [(root, 0)]
        seen.add(id(root))
        while stack:
            node, i = stack[-1]
            if i < len(node.args):
                stack[-1] = (node, i + 1)
                child = node.args[i]
                if id(child) not in seen:
                    seen.add(id(child))
                    stack.append((child, 0))
            else:
                stack.pop()
                order.append(node)
                if len(order) > MAX_NODES:
                    raise LimitError(f"graph has more than {MAX_NODES:,} nodes (graphc's limit)")
    return order


class Graph:
    """A function: named inputs (in order), a body of nodes, named outputs.

    `body` lists every node in a valid order (arguments first). Passes build
    new graphs; a graph itself never changes.
    """

    __slots__ = ("inputs", "outputs", "body", "__weakref__")

    def __init__(
        self,
        inputs: Sequence[Node],
        outputs: Sequence[tuple[str, Node]],
        body: Sequence[Node] | None = None,
    ):
        self.inputs: tuple[Node, ...] = tuple(inputs)
        self.outputs: tuple[tuple[str, Node], ...] = tuple((str(n), v) for n, v in outputs)
        if body is None:
            body = [n for n in topo_order(v for _, v in self.outputs) if n.op != "input"]
        self.body: tuple[Node, ...] = tuple(n for n in body if n.op != "input")

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(n.attr for n in self.inputs)  # type: ignore[misc]

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.outputs)

    @property
    def dtype(self) -> str:
        """The float dtype the graph computes in (integer label inputs aside)."""
        for n in self.inputs:
            if n.type.is_float:
                return n.dtype
        for _, n in self.outputs:
            if n.type.is_float:
                return n.dtype
        return "f64"

    @property
    def is_tensor(self) -> bool:
        """True for a tensor program (some value has a shape or is not a float):
        backends that compile per-element kernels do not take these."""
        return any(n.shape for n in self.inputs) or any(n.shape or n.attrs for n in self.body)

    def output(self, name: str) -> Node:
        for n, v in self.outputs:
            if n == name:
                return v
        raise KeyError(name)

    def op_count(self) -> int:
        """Number of operations (inputs and constants not counted)."""
        return sum(1 for n in self.body if n.op != "const")

    def __str__(self) -> str:
        return print_graph(self)

    def __repr__(self) -> str:
        return f"<Graph inputs={self.input_names} outputs={self.output_names} ops={self.op_count()}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Graph):
            return NotImplemented
        # nodes are hash-consed, so equal outputs mean equal computations;
        # the body is compared as a set (constants may sit anywhere before use)
        return (
            self.inputs == other.inputs
            and self.outputs == other.outputs
            and len(self.body) == len(other.body)
            and set(map(id, self.body)) == set(map(id, other.body))
        )

    def __hash__(self) -> int:
        return hash((self.inputs, self.outputs))


# --------------------------------------------------------------------- printer

_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*\Z")
_OUT_RE = re.compile(r"^[^\s\"=]+\Z")


def _fmt_float(x: object) -> str:
    v = float(x)  # type: ignore[arg-type]
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(v)


def node_names(graph: Graph) -> dict[Node, str]:
    """Printed names: %name for inputs, %0, %1, ... for ops, literals for constants."""
    names: dict[Node, str] = {}
    for n in graph.inputs:
        names[n] = f"%{n.attr}"
    k = 0
    for n in graph.body:
        if n.op == "const":
            names[n] = _fmt_float(n.attr)
        else:
            names[n] = f"%{k}"
            k += 1
    return names


def print_graph(graph: Graph) -> str:
    """Text form; `parse_graph(print_graph(g)) == g`."""
    names = node_names(graph)
    params = ", ".join(f"%{n.attr}: {n.type}" for n in graph.inputs)
    lines = [f"graph({params}) {{"]
    for n in graph.body:
        if n.op == "const":
            continue
        args = ", ".join(names[a] for a in n.args)
        attrs = n.attrs
        bodies = {k: v for k, v in attrs.items() if isinstance(v, Graph)}  # a loop's body: printed below it
        shown = [f"{k}={v!r}" for k, v in attrs.items() if k not in bodies]
        if shown:
            args += " {" + ", ".join(shown) + "}"
        lines.append(f"  {names[n]} = {n.op} {args} : {n.type}")
        for k, sub in bodies.items():  # its own graph (own names), indented under the node
            text = print_graph(sub).splitlines()
            lines.append(f"    {k} = {text[0]}")
            lines += ["    " + ln for ln in text[1:]]
    outs = ", ".join(f"{name} = {names[v]}" for name, v in graph.outputs)
    lines.append(f"  return {outs}")
    lines.append("}")
    return "\n".join(lines)


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _annotated_dot(graph: Graph, names: dict, node_notes: dict, edge_notes: dict, html) -> str:
    lines = ["digraph graphc {", "  rankdir=LR;", '  node [fontname="monospace"];', '  edge [fontname="monospace"];']
    ids: dict[int, str] = {}
    for i, n in enumerate(list(graph.inputs) + list(graph.body)):
        ids[id(n)] = f"n{i}"
        notes = node_notes.get(id(n), [])
        if n.op == "input":
            lines.append(f"  n{i} [label={html(str(n.attr), notes)}, shape=box, style=rounded];")
        elif n.op == "const":
            lines.append(f"  n{i} [label={html(_fmt_float(n.attr), [])}, shape=plaintext];")
        else:
            lines.append(f"  n{i} [label={html(f'{names[n]} {n.op}', notes)}, shape=ellipse];")
    for n in graph.body:
        for j, a in enumerate(n.args):
            notes = edge_notes.get((id(n), j), [])
            label = f" [label={html('', notes)}]" if notes else ""
            lines.append(f"  {ids[id(a)]} -> {ids[id(n)]}{label};")
    for k, (name, v) in enumerate(graph.outputs):
        lines.append(f'  out{k} [label="{name}", shape=box, style=bold];')
        lines.append(f"  {ids[id(v)]} -> out{k};")
    lines.append("}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- parser

_HEADER_RE = re.compile(r"^graph\((?P<params>.*)\)\s*\{$")
_TYPE_TEXT = r"[a-z0-9]+(?:\[[A-Za-z_0-9, ]*\])?"
_PARAM_RE = re.compile(r"^%(?P<name>[A-Za-z_][A-Za-z_0-9]*)\s*:\s*(?P<type>" + _TYPE_TEXT + r")$")
_PARAMS_SPLIT = re.compile(r",\s*(?=%)")
_LINE_RE = re.compile(r"^%(?P<res>\d+)\s*=\s*(?P<op>[a-z_0-9]+)\s+(?P<args>[^{}]*?)\s*(?:\{(?P<attrs>[^{}]*)\})?"
                      r"\s*:\s*(?P<type>" + _TYPE_TEXT + r")$")
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*([eE][-+]?\d+)?|\.\d+([eE][-+]?\d+)?|inf|nan)$")


def parse_graph(text: str) -> Graph:
    """Parse the printer's text form back into a Graph (hash-consed nodes)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.strip().startswith("#")]
    if not lines:
        raise IRError("empty IR text")
    m = _HEADER_RE.match(lines[0])
    if not m:
        raise IRError(f"line 1: expected 'graph(%x: f64, ...) {{', got {lines[0]!r}")
    env: dict[str, Node] = {}
    inputs: list[Node] = []
    params = m.group("params").strip()
    for p in [p.strip() for p in _PARAMS_SPLIT.split(params)] if params else []:
        pm = _PARAM_RE.match(p)
        if not pm:
            raise IRError(f"line 1: bad parameter {p!r}")
        ptype = parse_type(pm.group("type"))
        node = input_node(pm.group("name"), ptype.dtype, ptype.shape)
        if f"%{pm.group('name')}" in env:
            raise IRError(f"line 1: parameter %{pm.group('name')} declared twice")
        env[f"%{pm.group('name')}"] = node
        inputs.append(node)
    if lines[-1] != "}":
        raise IRError("IR text must end with '}'")
    body: list[Node] = []
    outputs: list[tuple[str, Node]] = []
    returned = False  # a graph may return nothing (a custom rule giving no cotangent), but says so
    for lineno, line, subs in _blocks(lines[1:-1]):
        if line.startswith("return"):
            returned = True
            rest = line[len("return"):].strip()
            for item in [s.strip() for s in rest.split(",")] if rest else []:
                if "=" not in item:
                    raise IRError(f"line {lineno}: bad output {item!r}, expected NAME = VALUE")
                name, ref = (s.strip() for s in item.split("=", 1))
                node = _resolve(ref, env, inputs, lineno)
                if node.op == "const":
                    body.append(node)
                outputs.append((name, node))
            continue
        lm = _LINE_RE.match(line)
        if not lm:
            raise IRError(f"line {lineno}: cannot parse {line!r}")
        declared = parse_type(lm.group("type"))
        dtype = declared.dtype if declared.is_float else None
        args = [
            _resolve(a.strip(), env, inputs, lineno, dtype)
            for a in lm.group("args").split(",")
            if a.strip()
        ]
        for a in args:
            if a.op == "const" and a not in body:
                body.append(a)
        try:
            node = make(lm.group("op"), *args, **_parse_attrs(lm.group("attrs") or "", lineno), **subs)
        except IRError as exc:
            raise IRError(f"line {lineno}: {exc}") from None
        if node.type != declared:
            raise IRError(f"line {lineno}: declared type {declared} but the op gives {node.type}")
        res = f"%{lm.group('res')}"
        if res in env:
            raise IRError(f"line {lineno}: {res} defined twice")
        env[res] = node
        body.append(node)
    if not returned:
        raise IRError("IR text has no 'return' line")
    g = Graph(inputs, outputs, body=_dedupe(body))
    verify(g)
    return g


_SUB_RE = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z_0-9]*)\s*=\s*(?P<head>graph\(.*\)\s*\{)$")


def _blocks(lines: list[str], start: int = 2) -> list[tuple[int, str, dict[str, Graph]]]:
    """The lines of a graph's body, each with the graphs printed under it (`key = graph(...) {`
    ... `}`: a loop's body), parsed into attributes."""
    out: list[tuple[int, str, dict[str, Graph]]] = []
    i = 0
    while i < len(lines):
        m = _SUB_RE.match(lines[i])
        if m is None:
            out.append((start + i, lines[i], {}))
            i += 1
            continue
        if not out or out[-1][1].startswith("return"):
            raise IRError(f"line {start + i}: a body graph must follow the node that holds it")
        depth, j = 1, i + 1
        while j < len(lines) and depth:
            depth += 1 if _SUB_RE.match(lines[j]) else -1 if lines[j] == "}" else 0
            j += 1
        if depth:
            raise IRError(f"line {start + i}: the graph {m.group('key')} = graph(...) has no closing '}}'")
        try:
            out[-1][2][m.group("key")] = parse_graph("\n".join([m.group("head"), *lines[i + 1:j]]))
        except IRError as exc:
            raise IRError(f"line {start + i}: in the graph {m.group('key')}: {exc}") from None
        i = j
    return out


def _attr_value(v: object) -> bool:
    if isinstance(v, tuple):
        return all(isinstance(x, (int, str)) for x in v)
    return v is None or isinstance(v, (int, str, float))


def _parse_attrs(text: str, lineno: int) -> dict[str, object]:
    """`axis=(1,), keepdims=False` -> dict; literals only (ints, tuples, bools, strings)."""
    import ast

    if not text.strip():
        return {}
    try:
        call = ast.parse(f"f({text})", mode="eval").body
        assert isinstance(call, ast.Call) and not call.args
        out = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords if kw.arg}
    except (SyntaxError, ValueError, AssertionError, RecursionError):
        raise IRError(f"line {lineno}: bad attributes {{{text}}}: expected key=literal, ...") from None
    if len(out) != len(call.keywords) or not all(_attr_value(v) for v in out.values()):
        raise IRError(f"line {lineno}: bad attributes {{{text}}}: values are ints, tuples, bools or strings")
    return out


def _dedupe(nodes: Iterable[Node]) -> list[Node]:
    seen: set[int] = set()
    out = []
    for n in nodes:
        if id(n) not in seen:
            seen.add(id(n))
            out.append(n)
    return out


def _resolve(ref: str, env: dict[str, Node], inputs: list[Node], lineno: int, dtype: str | None = None) -> Node:
    if ref in env:
        return env[ref]
    if _FLOAT_RE.match(ref):
        if dtype is None:
            dtype = next((n.dtype for n in inputs if n.type.is_float), "f64")
        return const(float(ref), dtype)
    raise IRError(f"line {lineno}: {ref} is not defined")


# -------------------------------------------------------------------- verifier


def verify(graph: Graph) -> None:
    """Check arity, types, order (arguments defined before use), no dangling refs."""
    defined: set[int] = set()
    names: set[str] = set()
    for n in graph.inputs:
        if not isinstance(n, Node) or n.op != "input":
            raise IRError(f"graph input {n!r} is not an input node")
        if not isinstance(n.attr, str) or not _IDENT_RE.match(n.attr):
            raise IRError(f"input name {n.attr!r} is not an identifier (ASCII letters, digits and '_')")
        if n.attr in names:
            raise IRError(f"input %{n.attr} appears twice")
        names.add(n.attr)  # type: ignore[arg-type]
        defined.add(id(n))
    for i, n in enumerate(graph.body):
        if not isinstance(n, Node):
            raise IRError(f"body[{i}] is not a Node")
        if n.op == "input":
            raise IRError(f"body[{i}]: input %{n.attr} inside the body")
        if n.op == "const":
            if n.args or not isinstance(n.attr, float):
                raise IRError(f"body[{i}]: malformed constant")
        else:
            spec = REGISTRY.get(n.op)
            if spec is None:
                raise IRError(f"body[{i}]: unknown op {n.op!r}")
            if len(n.args) != spec.arity and not variadic(spec):
                raise IRError(f"body[{i}]: {n.op} has {len(n.args)} argument(s), expects {spec.arity}")
            for a in n.args:
                if id(a) not in defined:
                    what = f"input %{a.attr} that is not a graph input" if a.op == "input" else f"{a!r} before it is defined"
                    raise IRError(f"body[{i}]: {n.op} uses {what}")
            try:
                same = make(n.op, *n.args, **n.attrs) is n
            except IRError as exc:
                raise IRError(f"body[{i}]: {exc}") from None
            if not same:
                types = ", ".join(str(a.type) for a in n.args)
                raise IRError(f"body[{i}]: {n.op} of type {n.type} has an argument of type {types}")
        if id(n) in defined:
            raise IRError(f"body[{i}]: {n!r} appears twice")
        defined.add(id(n))
    out_names: set[str] = set()
    for name, v in graph.outputs:
        if not _OUT_RE.match(name):
            raise IRError(f"bad output name {name!r}")
        if name in out_names:
            raise IRError(f"output {name!r} appears twice")
        out_names.add(name)
        if id(v) not in defined:
            raise IRError(f"output {name!r} refers to a node that is not in the graph")
    dtypes = {n.dtype for n in graph.inputs if n.type.is_float} | {
        v.dtype for _, v in graph.outputs if v.type.is_float}
    if len(dtypes) > 1:
        raise IRError(f"graph mixes dtypes {sorted(dtypes)}")


# --------------------------------------------------------------------- exports


def to_json(graph: Graph) -> str:
    """JSON: {"inputs": [...], "nodes": [{id, op, args, type, value?}], "outputs": {...}}."""
    ids: dict[int, str] = {}
    nodes = []
    for n in graph.inputs:
        ids[id(n)] = str(n.attr)
        nodes.append({"id": str(n.attr), "op": "input", "args": [], "type": str(n.type)})
    k = 0
    taken = set(graph.input_names)  # a constant's id never names an input (a loop body's %c0)
    for n in graph.body:
        if n.op == "const":
            nid = f"c{k}"
            while nid in taken:
                nid = "_" + nid
        else:
            nid = f"%{k}"
        k += 1
        ids[id(n)] = nid
        item: dict[str, object] = {
            "id": nid,
            "op": n.op,
            "args": [ids[id(a)] for a in n.args],
            "type": str(n.type),
        }
        if n.attrs:  # a graph attribute (a loop's body) as its own JSON object
            item["attrs"] = {k: list(v) if isinstance(v, tuple) else {"graph": json.loads(to_json(v))}
                             if isinstance(v, Graph) else v for k, v in n.attrs.items()}
        if n.op == "const":
            v = float(n.attr)  # type: ignore[arg-type]
            item["value"] = v if math.isfinite(v) else _fmt_float(v)
        nodes.append(item)
    return json.dumps(
        {
            "inputs": list(graph.input_names),
            "nodes": nodes,
            "outputs": {name: ids[id(v)] for name, v in graph.outputs},
            "op_count": graph.op_count(),
        },
        indent=1,
    )


def from_json(text: str) -> Graph:
    """Parse `to_json`'s output back into a Graph (`from_json(to_json(g)) == g`)."""
    try:
        data = json.loads(text)
        items = data["nodes"]
        outs = data["outputs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise IRError(f"not graphc IR JSON: {exc}") from None
    env: dict[str, Node] = {}
    inputs: list[Node] = []
    body: list[Node] = []
    for k, item in enumerate(items):
        try:
            op, nid, typ = item["op"], item["id"], parse_type(item["type"])
            args = [env[a] for a in item["args"]]
        except (KeyError, TypeError) as exc:
            raise IRError(f"node {k}: malformed ({exc})") from None
        if op == "input":
            node = input_node(nid, typ.dtype, typ.shape)
            inputs.append(node)
        elif op == "const":
            node = const(float(item["value"]), typ.dtype)
            body.append(node)
        else:
            attrs = {a: tuple(v) if isinstance(v, list) else from_json(json.dumps(v["graph"]))
                     if isinstance(v, dict) and "graph" in v else v for a, v in (item.get("attrs") or {}).items()}
            node = make(op, *args, **attrs)
            if node.type != typ:
                raise IRError(f"node {nid}: declared type {typ} but the op gives {node.type}")
            body.append(node)
        env[nid] = node
    try:
        g = Graph(inputs, [(name, env[ref]) for name, ref in outs.items()], body=_dedupe(body))
    except KeyError as exc:
        raise IRError(f"output refers to unknown node {exc}") from None
    verify(g)
    return g


def to_dot(graph: Graph, node_notes: dict[int, list[tuple[str, str]]] | None = None,
           edge_notes: dict[tuple[int, int], list[tuple[str, str]]] | None = None) -> str:
    """Graphviz DOT, data flowing left to right as in the seed's diagrams.
    `node_notes[id(node)]` / `edge_notes[id(node), k]` add coloured lines
    (text, colour) under a node's label / on the wire into its k-th argument:
    the forward value above, the gradient below (see graphc.picture)."""
    names = node_names(graph)
    node_notes, edge_notes = node_notes or {}, edge_notes or {}

    def html(title: str, notes: list[tuple[str, str]]) -> str:
        rows = [_html_escape(title)] if title else []
        rows += [f'<font color="{c}">{_html_escape(t)}</font>' for t, c in notes]
        return "<" + "<br/>".join(rows) + ">"

    if node_notes or edge_notes:
        return _annotated_dot(graph, names, node_notes, edge_notes, html)
    ids: dict[int, str] = {}
    lines = ["digraph graphc {", "  rankdir=LR;", '  node [fontname="monospace"];']
    for i, n in enumerate(list(graph.inputs) + list(graph.body)):
        ids[id(n)] = f"n{i}"
        if n.op == "input":
            shown = f"\\n{n.type}" if n.shape else ""
            lines.append(f'  n{i} [label="{n.attr}{shown}", shape=box, style=rounded];')
        elif n.op == "const":
            lines.append(f'  n{i} [label="{_fmt_float(n.attr)}", shape=plaintext];')
        else:
            shown = f"\\n{n.type}" if n.shape else ""
            lines.append(f'  n{i} [label="{names[n]} {n.op}{shown}", shape=ellipse];')
    for n in graph.body:
        for j, a in enumerate(n.args):
            label = f' [label="{j}"]' if len(n.args) > 1 and n.op in ("sub", "div", "pow") else ""
            lines.append(f"  {ids[id(a)]} -> {ids[id(n)]}{label};")
    for k, (name, v) in enumerate(graph.outputs):
        lines.append(f'  out{k} [label="{name}", shape=box, style=bold];')
        lines.append(f"  {ids[id(v)]} -> out{k};")
    lines.append("}")
    return "\n".join(lines)
