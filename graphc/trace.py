"""Tracing: Python functions over arrays in, graphs out.

`value_and_grad(f)`, `grad(f)` and `jit(f)` call `f` once per signature
(argument structure, shapes, dtypes, static values) with `Tracer` objects that
record IR nodes; the graph then goes through the same pipeline as a formula and
is compiled for the chosen target. The functions of `graphc.numpy` and
`graphc.nn` work on tracers and, eagerly, on NumPy arrays, so the same model
code runs both ways. Arguments are pytrees (dicts, lists, tuples of arrays and
Python floats), and gradients come back in the argument's structure, as in JAX.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .describe import describe
from .errors import ArgumentError, GraphcError
from .ir import DTYPE_NUMPY, Graph, Node, const, input_node, make
from .registry import REGISTRY


class TracingError(GraphcError):
    """Python code that cannot be traced: control flow on a traced value, mutation,
    a NumPy function graphc has no counterpart for."""


# ------------------------------------------------------------------ tracers


class SymbolicDim(str):
    """A dimension traced by name (`Tracer.shape` while one program is traced for
    every size of it): it may be passed on as a shape entry, or used as a number in
    traced arithmetic (the size, read at run time); anything that would decide on
    its value while tracing -- comparing it with a number, arithmetic in Python,
    int() -- raises TracingError, and the function is then traced per size."""

    __slots__ = ()

    def _refuse(self, *_: Any) -> Any:
        raise TracingError(f"the size of dimension {str(self)} is not known while tracing (one program serves "
                           "every size)")

    def __eq__(self, o: object) -> bool:
        return str.__eq__(self, o) if isinstance(o, str) else self._refuse()

    def __ne__(self, o: object) -> bool:
        return str.__ne__(self, o) if isinstance(o, str) else self._refuse()

    __hash__ = str.__hash__
    __lt__ = __le__ = __gt__ = __ge__ = __bool__ = __int__ = __float__ = __index__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _refuse
    __floordiv__ = __rfloordiv__ = __mod__ = __rmod__ = __pow__ = __rpow__ = __neg__ = _refuse


def _plain(v: Any) -> Any:
    """An op attribute with symbolic dimensions as the IR's plain names."""
    if type(v) is SymbolicDim:
        return str.__str__(v)
    if type(v) is tuple:
        return tuple(_plain(x) for x in v)
    return v


class Tracer:
    """A traced array: operators and `graphc.numpy` functions record IR nodes."""

    __slots__ = ("node", "trace")
    __array_priority__ = 1000  # NumPy defers binary operators to us
    graphc_tracer = True  # how graphc.describe names it without importing this module

    def __init__(self, node: Node, trace: Trace):
        self.node = node
        self.trace = trace

    # --- what an array shows
    shape = property(lambda self: tuple(d if type(d) is int else SymbolicDim(d) for d in self.node.shape))
    ndim = property(lambda self: len(self.node.shape))
    dtype = property(lambda self: np.dtype(DTYPE_NUMPY[self.node.dtype]))
    size = property(lambda self: int(np.prod(self.node.shape, dtype=np.int64)))
    T = property(lambda self: apply("transpose", self))

    def __len__(self) -> int:
        if not self.node.shape:
            raise TypeError("len() of a traced scalar")
        d = self.node.shape[0]
        return d if type(d) is int else SymbolicDim(d)._refuse()

    def __repr__(self) -> str:
        return f"Tracer({self.node.type})"

    # --- arithmetic
    def __add__(self, o): return apply("add", self, o)
    def __radd__(self, o): return apply("add", o, self)
    def __sub__(self, o): return apply("sub", self, o)
    def __rsub__(self, o): return apply("sub", o, self)
    def __mul__(self, o): return apply("mul", self, o)
    def __rmul__(self, o): return apply("mul", o, self)
    def __truediv__(self, o): return apply("div", self, o)
    def __rtruediv__(self, o): return apply("div", o, self)
    def __pow__(self, o): return apply("pow", self, o)
    def __rpow__(self, o): return apply("pow", o, self)
    def __matmul__(self, o): return apply("matmul", self, o)
    def __rmatmul__(self, o): return apply("matmul", o, self)
    def dot(self, o): return NUMPY_FUNCTIONS["dot"](self, o)  # numpy.dot's rule, not @'s
    def __neg__(self): return apply("neg", self)
    def __pos__(self): return self
    def __abs__(self): return apply("abs", self)
    def __lt__(self, o): return apply("lt", self, o)
    def __le__(self, o): return apply("le", self, o)
    def __gt__(self, o): return apply("gt", self, o)
    def __ge__(self, o): return apply("ge", self, o)
    def __eq__(self, o): return apply("eq", self, o)  # type: ignore[override]
    def __ne__(self, o): return apply("ne", self, o)  # type: ignore[override]
    __hash__ = object.__hash__

    # --- array methods, as NumPy's
    # (ndarray's methods take numpy's function's parameters after `a`, in the same order)
    def sum(self, *args, **kwargs): return NUMPY_FUNCTIONS["sum"](self, *args, **kwargs)
    def mean(self, *args, **kwargs): return NUMPY_FUNCTIONS["mean"](self, *args, **kwargs)
    def max(self, *args, **kwargs): return NUMPY_FUNCTIONS["max"](self, *args, **kwargs)
    def min(self, *args, **kwargs): return NUMPY_FUNCTIONS["min"](self, *args, **kwargs)
    def prod(self, *args, **kwargs): return NUMPY_FUNCTIONS["prod"](self, *args, **kwargs)
    def var(self, *args, **kwargs): return NUMPY_FUNCTIONS["var"](self, *args, **kwargs)
    def std(self, *args, **kwargs): return NUMPY_FUNCTIONS["std"](self, *args, **kwargs)
    def cumsum(self, *args, **kwargs): return NUMPY_FUNCTIONS["cumsum"](self, *args, **kwargs)
    def cumprod(self, *args, **kwargs): return NUMPY_FUNCTIONS["cumprod"](self, *args, **kwargs)
    def argmax(self, *args, **kwargs): return NUMPY_FUNCTIONS["argmax"](self, *args, **kwargs)
    def argmin(self, *args, **kwargs): return NUMPY_FUNCTIONS["argmin"](self, *args, **kwargs)
    def argsort(self, *args, **kwargs): return NUMPY_FUNCTIONS["argsort"](self, *args, **kwargs)
    def diagonal(self, *args, **kwargs): return NUMPY_FUNCTIONS["diagonal"](self, *args, **kwargs)
    def clip(self, *args, **kwargs): return NUMPY_FUNCTIONS["clip"](self, *args, **kwargs)
    def ravel(self, order="C"): return NUMPY_FUNCTIONS["ravel"](self, order)  # the shape engineer's
    def flatten(self, order="C"): return NUMPY_FUNCTIONS["ravel"](self, order)  # a copy: values are immutable
    def squeeze(self, axis=None): return NUMPY_FUNCTIONS["squeeze"](self, axis)
    def __mod__(self, o): return NUMPY_FUNCTIONS["mod"](self, o)
    def __rmod__(self, o): return NUMPY_FUNCTIONS["mod"](o, self)
    def __floordiv__(self, o): return NUMPY_FUNCTIONS["floor_divide"](self, o)
    def __rfloordiv__(self, o): return NUMPY_FUNCTIONS["floor_divide"](o, self)

    def sort(self, axis=-1, kind=None, order=None):
        raise TracingError("x.sort() sorts in place, which a traced value cannot: use y = graphc.numpy.sort(x, "
                           "axis)")

    def astype(self, dtype, order="K", casting="unsafe", subok=True, copy=True):
        """ndarray.astype: a mask or integers to numbers (True -> 1.0) in the traced program's float
        dtype (graphc computes in one float dtype: float32 or float64 both give it; an integer dtype
        too, since integers are counted in floats); a float value to bool or int is refused."""
        kind = np.dtype(dtype).kind
        if kind == "f" or (kind in "iu" and self.node.dtype in ("bool", "i64")):
            if self.node.dtype in ("bool", "i64"):  # as apply does for masks and integers used as numbers
                return Tracer(make("to_float", self.node, dtype=self.trace.dtype), self.trace)
            return self
        if kind == "b" and self.node.dtype == "bool":
            return self
        raise TracingError(f"astype({np.dtype(dtype).name}) of a traced {self.dtype.name} value is not supported: "
                           "graphc computes in floats (compare, e.g. x > 0, for a mask)")

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return apply("reshape", self, shape=fill_reshape(self.shape, shape))

    def transpose(self, *axes):
        return apply("transpose", self, axes=tuple(axes[0]) if len(axes) == 1 else (tuple(axes) or None))

    # --- what cannot be traced
    def __bool__(self):
        raise TracingError("a traced value has no truth value while tracing (Python if/while/and/or/bool on it): "
                           "use graphc.numpy.where(mask, a, b) to choose between values")

    def __index__(self):
        raise TracingError("a traced value cannot be used as an index or a size")

    def __float__(self):
        raise TracingError("float() of a traced value: its value is not known while tracing")

    def __iter__(self):
        raise TracingError("iterating over a traced array is not supported: use whole-array operations")

    def __getitem__(self, key):
        """x[key] with NumPy's indexing rules (numpy.ndarray.__getitem__): ints (negative
        too), slices with steps, None, ..., NumPy integer arrays and boolean masks, checked
        while tracing; traced int64 indices are data and clamp into range (JAX's rule).
        `for i in range(n): x[i]` unrolls. See graphc.numpy_shape."""
        return INDEXING["getitem"](self, key)

    @property
    def at(self) -> IndexUpdateHelper:
        """JAX's functional updates (jax.numpy.ndarray.at): x.at[idx].set(v), .add(v),
        .multiply(v), .max(v), .min(v) return a new value; .get() is x[idx]."""
        return IndexUpdateHelper(self)

    def __setitem__(self, key, value):
        raise TracingError("in-place mutation of a traced array (x[...] = v): build a new value instead, "
                           "x.at[idx].set(v) as in JAX, or graphc.numpy.where(mask, v, x)")

    # --- NumPy's own functions applied to a tracer are routed to graphc.numpy
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        fn = NUMPY_FUNCTIONS.get(_UFUNCS.get(ufunc.__name__, ""))
        if method != "__call__" or fn is None:
            raise TracingError(f"numpy.{ufunc.__name__} ({method}) is not traced by graphc: use graphc.numpy "
                               f"(functions: {', '.join(NUMPY_FUNCTIONS)})")
        return fn(*inputs, **kwargs)  # NumPy's keywords (out=, where=, dtype=, ...): checked by graphc.numpy

    def __array_function__(self, func, types, args, kwargs):
        fn = NUMPY_FUNCTIONS.get(func.__name__)
        if fn is None:
            raise TracingError(f"numpy.{func.__name__} is not traced by graphc: use graphc.numpy "
                               f"(functions: {', '.join(NUMPY_FUNCTIONS)})")
        return fn(*args, **kwargs)

    def __array__(self, *a, **k):
        raise TracingError("a traced value was converted to a NumPy array (np.asarray): use graphc.numpy "
                           "functions on traced values")


class IndexUpdateHelper:
    """`x.at`: indexed by any index x[...] takes, gives an IndexUpdateRef (JAX's _IndexUpdateHelper)."""

    __slots__ = ("x",)

    def __init__(self, x: Tracer):
        self.x = x

    def __getitem__(self, key: Any) -> IndexUpdateRef:
        return IndexUpdateRef(self.x, key)

    def __repr__(self) -> str:
        return f"IndexUpdateHelper({self.x!r})"


class IndexUpdateRef:
    """`x.at[idx]`: JAX's functional updates (jax.numpy.ndarray.at). Duplicate indices:
    add/multiply/max/min combine every update (numpy.add.at); set keeps the last.
    Traced int64 indices out of range drop their update (JAX's rule); static ones raise."""

    __slots__ = ("x", "key")

    def __init__(self, x: Tracer, key: Any):
        self.x, self.key = x, key

    def _update(self, v: Any, mode: str) -> Tracer:
        return INDEXING["index_update"](self.x, self.key, v, mode)

    def get(self) -> Tracer:
        return self.x[self.key]

    def set(self, values: Any) -> Tracer:
        return self._update(values, "set")

    def add(self, values: Any) -> Tracer:
        return self._update(values, "add")

    def multiply(self, values: Any) -> Tracer:
        return self._update(values, "multiply")

    mul = multiply

    def max(self, values: Any) -> Tracer:
        return self._update(values, "max")

    def min(self, values: Any) -> Tracer:
        return self._update(values, "min")


# x[key] and x.at[key].<mode>(v) on tracers: graphc.numpy_shape's getitem and index_update,
# filled in when it is imported (as NUMPY_FUNCTIONS below, so trace imports neither)
INDEXING: dict[str, Callable[..., Any]] = {}

# graphc.dask's traced_call (a traced function called with Dask data), filled in when graphc.dask
# is imported (graphc's __init__ does), so trace imports neither graphc.dask nor what it imports
DASK_CALL: dict[str, Callable[..., Any]] = {}

# graphc.numpy's functions by name, filled in by graphc.numpy when it is imported (graphc's
# __init__ does): NumPy's own functions applied to a tracer are routed to these
NUMPY_FUNCTIONS: dict[str, Callable[..., Any]] = {}

_UFUNCS = {
    "add": "add", "subtract": "subtract", "multiply": "multiply", "divide": "divide", "true_divide": "divide",
    "power": "power", "negative": "negative", "matmul": "matmul", "exp": "exp", "log": "log", "sqrt": "sqrt",
    "sin": "sin", "cos": "cos", "tan": "tan", "tanh": "tanh", "sinh": "sinh", "cosh": "cosh", "arctan": "arctan",
    "arcsin": "arcsin", "arccos": "arccos", "arctan2": "arctan2", "arcsinh": "arcsinh", "arccosh": "arccosh",
    "arctanh": "arctanh", "absolute": "abs", "maximum": "maximum", "minimum": "minimum", "log1p": "log1p",
    "expm1": "expm1", "logaddexp": "logaddexp", "hypot": "hypot", "floor": "floor", "ceil": "ceil",
    "sign": "sign", "exp2": "exp2", "log2": "log2", "log10": "log10", "greater": "greater", "less": "less",
    "greater_equal": "greater_equal", "less_equal": "less_equal", "equal": "equal", "not_equal": "not_equal",
    "square": "square", "fabs": "fabs", "conjugate": "conjugate", "fmax": "fmax", "fmin": "fmin",
    "logaddexp2": "logaddexp2", "reciprocal": "reciprocal", "deg2rad": "deg2rad", "rad2deg": "rad2deg", "radians": "deg2rad", "degrees": "rad2deg", "remainder": "mod",
    "floor_divide": "floor_divide",
}


def fill_reshape(shape: tuple, new: tuple) -> tuple:
    """reshape's -1: the one size that keeps the number of entries."""
    new = tuple(int(d) for d in new)
    if new.count(-1) == 1:
        known = int(np.prod([d for d in new if d != -1], dtype=np.int64))
        total = int(np.prod(shape, dtype=np.int64))
        new = tuple(total // known if d == -1 else d for d in new)
    return new


@dataclass
class Trace:
    """One tracing run: its float dtype, and where each symbolic dimension is (a
    float input and its axis: the size as a traced number is a count over it)."""

    dtype: str
    dims: dict[str, tuple[Node, int]] = field(default_factory=dict)


def _lift(x: Any, trace: Trace) -> Node:
    if isinstance(x, Tracer):
        return x.node
    if type(x) is SymbolicDim:  # a symbolic size used as a number: counted at run time
        if x not in trace.dims:
            x._refuse()
        node, axis = trace.dims[x]
        return make("count", node, axis=(axis,))
    if isinstance(x, (bool, np.bool_)):
        raise TracingError("a Python bool in a traced computation: use 1.0/0.0 or a comparison mask")
    if isinstance(x, (int, float, np.integer, np.floating)) or (isinstance(x, np.ndarray) and x.ndim == 0):
        return const(float(x), trace.dtype)
    if isinstance(x, np.ndarray):  # a constant of the program (JAX's captured constants)
        from .math_ops import captured_array

        return captured_array(x, trace.dtype)
    raise TracingError(f"cannot use {describe(x)} in a traced computation")


def apply(op: str, *args: Any, **attrs: Any) -> Any:
    """An op on tracers (records a node) or on arrays (evaluated now, eagerly)."""
    tracers = [a for a in args if isinstance(a, Tracer)]
    if tracers:
        trace = tracers[0].trace
        if attrs:
            attrs = {k: _plain(v) for k, v in attrs.items()}
        nodes = [_lift(a, trace) for a in args]
        if REGISTRY[op].per_element:  # masks and integers used as numbers: 1.0/0.0 and exact floats (NumPy's casts)
            nodes = [make("to_float", n, dtype=trace.dtype) if n.dtype in ("bool", "i64") and not
                     (op == "where" and k == 0) else n for k, n in enumerate(nodes)]
        return Tracer(make(op, *nodes, **attrs), trace)
    return _eager(op, args, attrs)


def _eager(op: str, args: Sequence[Any], attrs: dict[str, Any]) -> Any:
    """The same op on NumPy values: a one-node graph on the numpy target."""
    from .backends.numpy_ref import evaluate

    arrays = [np.asarray(a) for a in args]
    floats = [a.dtype for a in arrays if a.dtype.kind == "f"]
    dt = np.result_type(*floats) if floats else np.dtype("float64")
    fdt = "f32" if dt == np.float32 else "f64"
    nodes, values = [], []
    for k, (raw, a) in enumerate(zip(args, arrays)):
        if a.dtype.kind in "iu" and a.ndim and op in ("pick", "one_hot", "cross_entropy"):
            nodes.append(input_node(f"e{k}", "i64", a.shape))
            values.append(a.astype(np.int64))
        elif a.dtype.kind == "b":
            raise TracingError("boolean arrays: use a comparison inside graphc.numpy.where")
        elif a.ndim == 0 and not isinstance(raw, np.ndarray):
            nodes.append(const(float(a), fdt))
        else:
            nodes.append(input_node(f"e{k}", fdt, a.shape))
            values.append(a.astype(dt))
    node = make(op, *nodes, **attrs)
    if node.op == "const":
        return node.value
    graph = Graph([n for n in nodes if n.op == "input"], [("f", node)])
    (out,) = evaluate(graph, values)
    return out if out.ndim else out[()]


# ------------------------------------------------------------------ pytrees


class TreeDef(NamedTuple):
    """The structure of a pytree: a leaf, or a dict/list/tuple of subtrees (a
    tuple underneath, so hashing a signature is C-fast)."""

    kind: str  # "leaf", "dict", "list", "tuple", "none"
    keys: tuple = ()
    children: tuple = ()


def flatten(tree: Any, path: str = "", python: bool = False) -> tuple[list[Any], list[str], TreeDef]:
    """(leaves, their paths, structure). Paths are `params_W` (names for inputs), or with
    python=True as Python writes them, `params['W']` (for messages)."""
    if isinstance(tree, dict):
        keys = tuple(sorted(tree, key=str))
        parts = [flatten(tree[k], f"{path}[{k!r}]" if python else f"{path}_{k}", python) for k in keys]
        return ([x for p in parts for x in p[0]], [x for p in parts for x in p[1]],
                TreeDef("dict", keys, tuple(p[2] for p in parts)))
    if isinstance(tree, (list, tuple)):
        parts = [flatten(v, f"{path}[{i}]" if python else f"{path}_{i}", python) for i, v in enumerate(tree)]
        return ([x for p in parts for x in p[0]], [x for p in parts for x in p[1]],
                TreeDef("list" if isinstance(tree, list) else "tuple", (), tuple(p[2] for p in parts)))
    if tree is None:
        return [], [], TreeDef("none")
    return [tree], [path], TreeDef("leaf")


_LEAF = TreeDef("leaf")


def _flatten_into(tree: Any, leaves: list) -> TreeDef:
    """flatten without paths (the per-call path): leaves appended, structure returned."""
    if isinstance(tree, dict):
        keys = tuple(sorted(tree, key=str))
        return TreeDef("dict", keys, tuple(_flatten_into(tree[k], leaves) for k in keys))
    if isinstance(tree, (list, tuple)):
        return TreeDef("list" if isinstance(tree, list) else "tuple", (),
                       tuple(_flatten_into(v, leaves) for v in tree))
    if tree is None:
        return TreeDef("none")
    leaves.append(tree)
    return _LEAF


def unflatten(tdef: TreeDef, leaves: Sequence[Any]) -> Any:
    return _build(tdef, iter(leaves))


def _build(t: TreeDef, it: Any) -> Any:
    # a module function, not a closure that calls itself: such a closure is a reference cycle,
    # which kept the leaves (a step's results) alive until the garbage collector ran
    if t.kind == "leaf":
        return next(it)
    if t.kind == "none":
        return None
    kids = [_build(c, it) for c in t.children]
    if t.kind == "dict":
        return dict(zip(t.keys, kids))
    return kids if t.kind == "list" else tuple(kids)


_NAME_BAD = re.compile(r"[^A-Za-z0-9_]")


def _names(paths: Sequence[str]) -> list[str]:
    """Unique identifiers from pytree paths (params_W1, x, ...)."""
    out, seen = [], set()
    for p in paths:
        n = _NAME_BAD.sub("_", p.strip("_")) or "arg"
        if n[0].isdigit():
            n = "a" + n
        base, k = n, 1
        while n in seen:
            n, k = f"{base}_{k}", k + 1
        seen.add(n)
        out.append(n)
    return out


_F64, _F32 = np.dtype("float64"), np.dtype("float32")


class _TracedArgument(ArgumentError):
    """A traced value given where an array is expected: a jit-ed function called
    inside a traced one is traced inline instead (`Traced.__call__`)."""

    def __init__(self, where: str):
        self.where = where
        super().__init__(f"argument {where} is a traced value (a graphc Tracer): a function wrapped by "
                         "graphc.value_and_grad/grad/jit was called inside another traced function")


class _DaskArgument(ArgumentError):
    """A Dask array among the arguments: `Traced.__call__` hands the call to graphc.dask
    (a separable loss split over row chunks)."""


def leaf_type(leaf: Any, where: str) -> tuple[tuple, str]:
    """(shape, 'float64' | 'float32' | 'int64' | 'float') of one argument leaf."""
    if type(leaf) is np.ndarray:
        dt = leaf.dtype
        if dt is _F64 or dt == _F64:
            return leaf.shape, "float64"
        if dt == _F32:
            return leaf.shape, "float32"
        if dt.kind in "iu":
            return leaf.shape, "int64"
        raise ArgumentError(f"argument {where} is {describe(leaf)}: graphc takes float or integer arrays")
    if type(leaf) is float:
        return (), "float"
    if isinstance(leaf, (bool, np.bool_)):
        raise ArgumentError(f"argument {where} is a bool: pass numbers or arrays")
    if isinstance(leaf, (int, float, np.integer, np.floating)):
        return (), "float"
    if isinstance(leaf, np.ndarray):
        return leaf_type(np.asarray(leaf), where)
    if isinstance(leaf, list):
        raise ArgumentError(f"argument {where} is a list")
    if isinstance(leaf, Tracer):
        raise _TracedArgument(where)
    if type(leaf).__module__.startswith("dask."):
        raise _DaskArgument(f"argument {where} is {describe(leaf)}: graphc.value_and_grad and graphc.grad take "
                            "Dask arrays of data chunked by rows; other uses take NumPy arrays")
    raise ArgumentError(f"argument {where} is {describe(leaf)}: pass arrays, floats, or dicts, lists "
                        "and tuples of them (mark other arguments static_argnames=)")


# ------------------------------------------------------------------ the traced function


@dataclass
class Signature:
    """What one tracing made: the program, its kernel, and what a call needs."""

    program: Any
    fn: Any
    names: list[str]
    out_tree: TreeDef | None = None
    aux_tree: TreeDef | None = None
    aux_names: list[str] = field(default_factory=list)
    grad_names: list[tuple[int, list[str]]] = field(default_factory=list)  # (argnum, its leaves' output names)
    int_slots: frozenset = frozenset()
    key: Any = None  # the argument signature it was traced for
    base: Any = None  # that signature with sizes left out (structure, ranks, dtypes, static values)
    pattern: tuple | None = None  # per leaf (shape, kind) with dimension names: one program for every size
    used: int = 0  # when a call last ran it (Traced's clock)

    def __post_init__(self) -> None:
        self.out_names = self.program.graph.output_names
        self.np_dtype = np.dtype(self.program.dtype)

    def match(self, key: Any, base: Any) -> dict[str, int] | None:
        """The sizes of its symbolic dimensions for arguments of signature `key`
        ({} for a program traced with every size fixed), or None if it does not serve them."""
        if self.pattern is None:
            return {} if key == self.key else None
        if base != self.base:
            return None
        dims: dict[str, int] = {}
        for (shape, _), (pat, _) in zip(key[1], self.pattern):
            for size, p in zip(shape, pat):
                if type(p) is int:
                    if size != p:
                        return None
                elif dims.setdefault(p, size) != size:
                    return None
        return dims


MAX_SIGNATURES = 8  # compiled signatures kept per traced function, the most recently used
MAX_KEYS = 256  # argument signatures remembered (many sizes may share one symbolic program)


def _generalise(prev: tuple, types: tuple) -> tuple | None:
    """`prev`'s leaf types with every axis whose size differs in `types` (or was
    already a name) named: axes that have equal sizes in both get one name."""
    names: dict[tuple, str] = {}
    out = []
    for (pshape, kind), (shape, _) in zip(prev, types):
        row: list = []
        for a, b in zip(pshape, shape):
            if a == b and type(a) is int:
                row.append(a)
            else:
                row.append(names.setdefault((a, b), "N" if not names else f"N{len(names)}"))
        out.append((tuple(row), kind))
    return tuple(out) if names else None


class Traced:
    """`value_and_grad(f)`, `grad(f)` or `jit(f)`: traces per signature, then calls the compiled function."""

    def __init__(self, f: Callable, mode: str, argnums: int | Sequence[int] = 0, has_aux: bool = False,
                 static_argnames: Sequence[str] | str = (), target: str | None = None):
        if not callable(f):
            raise ArgumentError(f"expected a Python function, got {describe(f)}")
        self.f = f
        self.mode = mode
        self.argnums = argnums
        self.has_aux = has_aux
        self.static = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
        self.target = target
        self._signature = inspect.signature(f)
        self.params = list(self._signature.parameters)
        # the common call -- positional arguments, nothing static -- skips inspect's bind; defaults fill the rest
        ps = list(self._signature.parameters.values())
        self._plain = not self.static and all(p.kind == inspect.Parameter.POSITIONAL_OR_KEYWORD for p in ps)
        self._required = sum(1 for p in ps if p.default is inspect.Parameter.empty)
        self._defaults = [p.default for p in ps]
        # argument signature -> [Signature, sizes of its symbolic dimensions]; the Signatures themselves
        # (at most MAX_SIGNATURES, each a kernel and its pools) in _sigs
        self._cache: dict[Any, list] = {}
        self._sigs: list[Signature] = []
        self._last: dict[Any, tuple] = {}  # base -> leaf types (or pattern) of the latest trace
        self._concrete: dict[Any, bool] = {}  # bases whose function would not trace with symbolic sizes
        self._clock = 0
        self.hits = self.misses = 0
        self.__wrapped__ = f
        self.__name__ = getattr(f, "__name__", "traced")

    def __reduce__(self):
        """Pickled as the function (by reference, as pickle does; cloudpickle by value)
        and the options: traces are redone per signature where it is loaded."""
        return (Traced, (self.f, self.mode, self.argnums, self.has_aux, self.static, self.target))

    def _split(self, args: tuple, kwargs: dict) -> tuple[list, dict, dict]:
        if self._plain and not kwargs and self._required <= len(args) <= len(self.params):
            return list(zip(self.params, (*args, *self._defaults[len(args):]))), {}, {}
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        dyn, static = [], {}
        for name, value in bound.arguments.items():
            if name in self.static:
                static[name] = value
            else:
                dyn.append((name, value))
        return dyn, static, bound.arguments

    def _argnums(self, n: int) -> tuple[int, ...]:
        nums = (self.argnums,) if isinstance(self.argnums, int) else tuple(self.argnums)
        for k in nums:
            if not 0 <= k < n:
                raise ArgumentError(f"argnums={self.argnums!r}: the function has {n} traced argument(s)")
        return nums

    def _key(self, dyn: list, static: dict):
        leaves: list = []
        trees = []
        for _, value in dyn:
            if type(value) is np.ndarray:  # the common leaf, without flatten's bookkeeping
                leaves.append(value)
                trees.append(_LEAF)
            else:
                trees.append(_flatten_into(value, leaves))
        try:
            types = tuple(leaf_type(x, "") for x in leaves)
        except ArgumentError:  # again, with the argument's path in the message
            paths = [p for name, value in dyn for p in flatten(value, name)[1]]
            types = tuple(leaf_type(x, p) for x, p in zip(leaves, paths))
        return (tuple(trees), types, static_key(static)), leaves, trees

    def lower(self, *args: Any, **kwargs: Any):
        """The pipeline object (Program) for this signature: `.ir`, `.explain()`."""
        return self._entry(args, kwargs)[0].program

    def cache_info(self) -> dict[str, int]:
        """hits: calls run without tracing; misses: traces; signatures: compiled programs kept."""
        return {"hits": self.hits, "misses": self.misses, "signatures": len(self._sigs)}

    def _entry(self, args: tuple, kwargs: dict):
        dyn, static, _ = self._split(args, kwargs)
        key, leaves, trees = self._key(dyn, static)
        self._clock += 1
        got = self._cache.get(key)
        if got is not None:
            self.hits += 1
            got[0].used = self._clock
            return got[0], leaves, trees, got[1]
        sig, dims = self._miss(key, dyn, static, leaves, trees)
        sig.used = self._clock
        for other in self._sigs:  # a new signature met: the others' pools go (remade if they run again)
            release = getattr(other.fn, "release_pools", None) if other is not sig else None
            if release is not None:
                release()
        if len(self._cache) >= MAX_KEYS:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = [sig, dims]
        return sig, leaves, trees, dims

    def _miss(self, key: Any, dyn: list, static: dict, leaves: list, trees: list) -> tuple[Signature, dict]:
        """The compiled signature for a new argument signature: a kept one that serves it
        (a program with symbolic sizes), else a new trace. On a second set of sizes
        for the same structure, the axes whose sizes differ are traced as named
        dimensions, so one program serves every size; a function that reads a size
        as a value it decides on (SymbolicDim) is traced per size instead."""
        types = key[1]
        base = (key[0], tuple((len(s), t) for s, t in types), key[2])
        for sig in self._sigs:
            dims = sig.match(key, base)
            if dims is not None:
                self.hits += 1
                return sig, dims
        self.misses += 1
        paths = [p for name, value in dyn for p in flatten(value, name)[1]]
        prev = self._last.get(base)
        pattern = _generalise(prev, types) if prev is not None and base not in self._concrete else None
        sig = None
        if pattern is not None:
            try:
                sig = self._trace(dyn, static, leaves, paths, trees, pattern)
            except Exception:  # a size read as a value, or a step with no symbolic form: per size
                self._concrete[base] = True
        if sig is None:
            pattern = None
            sig = self._trace(dyn, static, leaves, paths, trees, types)
        sig.key, sig.base, sig.pattern = key, base, pattern
        self._last.pop(base, None)
        self._last[base] = pattern or types
        for d in (self._last, self._concrete):
            while len(d) > MAX_KEYS:
                d.pop(next(iter(d)))
        sig.used = self._clock
        self._sigs.append(sig)
        if len(self._sigs) > MAX_SIGNATURES:  # the least recently used goes, with the keys it served
            old = min(self._sigs, key=lambda s: s.used)
            self._sigs.remove(old)
            self._cache = {k: v for k, v in self._cache.items() if v[0] is not old}
        dims = sig.match(key, base)
        assert dims is not None
        return sig, dims

    def _trace(self, dyn, static, leaves, paths, trees, types) -> Signature:
        from .backends.targets import build, get_target
        from .program import Program

        floats = {t for _, t in types if t not in ("float", "int64")}
        if len(floats) > 1:
            raise ArgumentError(f"arguments mix float dtypes {sorted(floats)}: use one")
        dtype = "f32" if floats == {"float32"} else "f64"
        trace = Trace(dtype)
        names = _names(paths)
        nodes = [input_node(n, "i64" if t == "int64" else dtype, s) for n, (s, t) in zip(names, types)]
        for node, (s, t) in zip(nodes, types):
            for axis, d in enumerate(s):
                if type(d) is not int and t != "int64":
                    trace.dims.setdefault(d, (node, axis))
        tracers = [Tracer(n, trace) for n in nodes]
        it = iter(tracers)
        traced_args = [unflatten(td, [next(it) for _ in range(leaf_count(td))]) for td in trees]
        call_kwargs = dict(static)
        positional = []
        for (name, _), value in zip(dyn, traced_args):
            kind = self._signature.parameters[name].kind
            if kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD) and \
                    not call_kwargs:
                positional.append(value)
            elif kind == inspect.Parameter.VAR_POSITIONAL:
                positional.extend(value)
            else:
                call_kwargs[name] = value
        _ACTIVE.append(trace)  # graphc.grad/jit called inside f trace into this program
        try:
            out = self.f(*positional, **call_kwargs)
        finally:
            _ACTIVE.pop()
        aux = None
        if self.has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TracingError("has_aux=True: the function must return (value, aux)")
            out, aux = out
        outs: list[tuple[str, Node]] = []
        out_tree = None
        if self.mode == "jit":
            leaves_out, _, out_tree = flatten(out, "out")
            outs = [(f"out{k}", _lift(x, trace)) for k, x in enumerate(leaves_out)]
        else:
            if not isinstance(out, Tracer):
                raise TracingError(f"the function returned {describe(out)}, not a traced value: the "
                                   "value to differentiate must depend on the arguments")
            outs = [("f", out.node)]
        aux_tree, aux_names = None, []
        if aux is not None:
            aux_leaves, _, aux_tree = flatten(aux, "aux")
            aux_names = [f"aux{k}" for k in range(len(aux_leaves))]
            outs += [(n, _lift(x, trace)) for n, x in zip(aux_names, aux_leaves)]
        graph = Graph(nodes, outs)
        if self.mode == "jit":
            program = Program(graph, grad=False, dtype=DTYPE_NUMPY[dtype])
        else:
            nums = self._argnums(len(dyn))
            starts = np.cumsum([0] + [leaf_count(td) for td in trees])
            wrt = [names[i] for k in nums for i in range(starts[k], starts[k + 1]) if types[i][1] != "int64"]
            program = Program(graph, wrt=wrt, dtype=DTYPE_NUMPY[dtype])
        target = get_target(self.target)  # None: the default (llvm)
        if not target.tensors:
            raise ArgumentError(f"target {target.name!r} does not run traced (tensor) programs: use target='numpy'")
        grad_names = []
        if self.mode != "jit":
            starts = np.cumsum([0] + [leaf_count(td) for td in trees])
            grad_names = [(k, [f"df/d{n}" for n in names[starts[k]:starts[k + 1]]]) for k in nums]
        ints = frozenset(k for k, (_, t) in enumerate(types) if t == "int64")
        return Signature(program, build(program.graph, target), names, out_tree, aux_tree, aux_names, grad_names, ints)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if _ACTIVE:  # inside a function being traced: into the outer program, as JAX
            return self.f(*args, **kwargs) if self.mode == "jit" else self._nested(args, kwargs)
        try:
            sig, leaves, trees, dims = self._entry(args, kwargs)
        except _TracedArgument as exc:  # no trace is recording: a traced value kept from an ended one
            raise TracingError(f"argument {exc.where} is a traced value of a trace that has ended (kept from "
                               "inside a traced function): pass arrays") from None
        except _DaskArgument:  # data as Dask arrays: a separable loss over row chunks (graphc.dask)
            return DASK_CALL["traced_call"](self, args, kwargs)
        # the signature fixed every shape and dtype: leaves go straight to the kernel
        dt = sig.np_dtype
        arrays = [x if type(x) is np.ndarray else np.asarray(x, dtype=dt if k not in sig.int_slots else None)
                  for k, x in enumerate(leaves)]
        outs = dict(zip(sig.out_names, (o if o.ndim else float(o) for o in sig.fn.run_tensor(arrays, dims))))
        if self.mode == "jit":
            n = len(outs) - len(sig.aux_names)
            return unflatten(sig.out_tree, [outs[f"out{k}"] for k in range(n)])  # type: ignore[arg-type]
        per_arg = [unflatten(trees[k], [outs.get(n) for n in names]) for k, names in sig.grad_names]
        g = per_arg[0] if isinstance(self.argnums, int) else tuple(per_arg)
        value = outs["f"]
        if self.has_aux:
            aux = unflatten(sig.aux_tree, [outs[n] for n in sig.aux_names])  # type: ignore[arg-type]
            return (g, aux) if self.mode == "grad" else ((value, aux), g)
        return g if self.mode == "grad" else (value, g)


    def _nested(self, args: tuple, kwargs: dict) -> Any:
        """grad/value_and_grad called on traced values (JAX's grad of grad): `f` is
        traced into the outer program with fresh stand-ins for the differentiated
        arguments, differentiated there (reverse mode over IR, as for any program),
        and the stand-ins replaced by the arguments. Values `f` closes over are
        constants of this derivative, as in JAX (no perturbation confusion)."""
        from .passes.autodiff import gradients

        dyn, static, _ = self._split(args, kwargs)
        nums = self._argnums(len(dyn))
        trace = _ACTIVE[-1]
        stand_ins: list[Node] = []
        actual: list[Node] = []
        call: dict[str, Any] = dict(static)
        trees = {}
        for k, (name, value) in enumerate(dyn):
            if k not in nums:
                call[name] = value
                continue
            leaves, paths, td = flatten(value, name)
            trees[k] = td
            fresh = []
            for x, path in zip(leaves, paths):
                node = x.node if isinstance(x, Tracer) else _lift(x, trace)
                if not node.type.is_float:
                    raise ArgumentError(f"graphc.{self.mode}: argument {path} is {describe(x)}; only float "
                                        "values have gradients")
                _NESTED[0] += 1
                stand = input_node(f"nested{_NESTED[0]}", node.dtype, node.shape)
                stand_ins.append(stand)
                actual.append(node)
                fresh.append(Tracer(stand, trace))
            call[name] = unflatten(td, fresh)
        positional = [call.pop(name) for name, _ in dyn if
                      self._signature.parameters[name].kind == inspect.Parameter.POSITIONAL_ONLY]
        out = self.f(*positional, **call)
        aux = None
        if self.has_aux:
            if not (isinstance(out, tuple) and len(out) == 2):
                raise TracingError("has_aux=True: the function must return (value, aux)")
            out, aux = out
        if not isinstance(out, Tracer) or out.node.shape:
            raise TracingError(f"graphc.{self.mode}: the function returned {describe(out)}, not a traced "
                               "0-d value: the value to differentiate must be a scalar that depends on the arguments")
        roots = [out.node, *gradients(out.node, stand_ins)]
        aux_leaves, _, aux_tree = flatten(aux, "aux") if aux is not None else ([], [], None)
        aux_nodes = [_lift(x, trace) for x in aux_leaves]
        done = substitute(roots + aux_nodes, dict(zip(map(id, stand_ins), actual)))
        value, grads, aux_done = done[0], done[1:len(roots)], done[len(roots):]
        it = iter(Tracer(g, trace) for g in grads)
        per_arg = [unflatten(trees[k], [next(it) for _ in range(leaf_count(trees[k]))]) for k in nums]
        g = per_arg[0] if isinstance(self.argnums, int) else tuple(per_arg)
        v = Tracer(value, trace)
        if self.has_aux:
            aux = unflatten(aux_tree, [Tracer(a, trace) for a in aux_done])  # type: ignore[arg-type]
            return (g, aux) if self.mode == "grad" else ((v, aux), g)
        return g if self.mode == "grad" else (v, g)


_NESTED = [0]  # stand-in inputs of nested derivatives: unique names
_ACTIVE: list[Trace] = []  # the traces being recorded (a function traced inside another's trace)


def active_trace() -> Trace | None:
    """The trace being recorded (the innermost), or None outside any traced function."""
    return _ACTIVE[-1] if _ACTIVE else None


def substitute(roots: Sequence[Node], mapping: dict[int, Node]) -> list[Node]:
    """`roots` rebuilt with each node whose id is in `mapping` replaced (iteratively)."""
    from .ir import rebuild, topo_order

    memo = dict(mapping)
    for n in topo_order(roots):
        if id(n) not in memo:
            memo[id(n)] = rebuild(n, [memo.get(id(a), a) for a in n.args]) if n.args else n
    return [memo[id(r)] for r in roots]


def static_key(static: dict) -> tuple:
    """The static arguments as part of a cache key (hashable, or an ArgumentError naming them)."""
    if not static:
        return ()
    try:
        key = tuple(sorted(static.items()))
        hash(key)
    except TypeError:
        raise ArgumentError(f"static arguments must be hashable: {', '.join(static)}") from None
    return key


def leaf_count(td: TreeDef) -> int:
    if td.kind == "leaf":
        return 1
    return sum(leaf_count(c) for c in td.children)


def value_and_grad(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
                   static_argnames: Sequence[str] | str = (), target: str | None = None) -> Traced:
    """f(*args) -> (f(*args), gradient of f with respect to args[argnums]), as JAX's.
    `f` must return a scalar; gradients have the structure of the arguments."""
    return Traced(f, "value_and_grad", argnums, has_aux, static_argnames, target)


def grad(f: Callable, argnums: int | Sequence[int] = 0, has_aux: bool = False,
         static_argnames: Sequence[str] | str = (), target: str | None = None) -> Traced:
    """The gradient of a scalar-valued f with respect to args[argnums], as JAX's grad."""
    return Traced(f, "grad", argnums, has_aux, static_argnames, target)


def hvp(f: Callable, target: str | None = None) -> Traced:
    """`hvp(f)(x, v, *rest)`: the Hessian of scalar-valued f at x (its first
    argument, an array or a pytree of them) times v (the same structure), without
    forming the Hessian: the gradient of <grad f(x), v>, reverse over reverse,
    compiled as one program (JAX computes it forward over reverse; the values agree)."""

    def along(x: Any, v: Any, *rest: Any) -> Any:
        g, _, _ = flatten(grad(f)(x, *rest), "g")
        w, _, _ = flatten(v, "v")
        if len(g) != len(w):
            raise ArgumentError(f"graphc.hvp: v has {len(w)} array(s), x has {len(g)}: give v x's structure")
        total = None
        for a, b in zip(g, w):
            term = NUMPY_FUNCTIONS["sum"](a * b)
            total = term if total is None else total + term
        return total

    return grad(along, target=target)


def hessian_of(f: Callable, target: str | None = None) -> Callable[..., np.ndarray]:
    """`graphc.hessian(f)(x, *rest)` for a traced scalar function of one array x
    (or a float): the full Hessian, of shape x.shape + x.shape, one Hessian-vector
    product (`hvp`, compiled once) per entry of x. For large x use `hvp`."""
    product = hvp(f, target)

    def hessian(x: Any, *rest: Any) -> np.ndarray:
        if isinstance(x, (float, int)):
            return np.asarray(product(float(x), 1.0, *rest))
        x = np.asarray(x)
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        rows = []
        for i in range(x.size):
            e = np.zeros(x.size, dtype=x.dtype)
            e[i] = 1
            rows.append(np.asarray(product(x, e.reshape(x.shape), *rest)))
        return np.stack(rows).reshape(x.shape + x.shape) if rows else np.zeros(x.shape * 2, dtype=x.dtype)

    hessian.__wrapped__ = f  # type: ignore[attr-defined]
    return hessian


def jit(f: Callable, static_argnames: Sequence[str] | str = (), target: str | None = None) -> Traced:
    """f traced once per signature and run from its optimised graph (no gradient)."""
    return Traced(f, "jit", 0, False, static_argnames, target)
