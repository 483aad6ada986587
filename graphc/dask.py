"""Compiled functions over Dask arrays, on one machine or a Dask cluster.

Called with Dask arrays, a CompiledFunction returns lazy Dask results; nothing
runs until `.compute()` (or `dask.compute(value, grads)`, which shares the work):

- **pointwise formulas**: arguments broadcast and their chunks aligned by
  Dask's rules; each chunk is one kernel call writing every output (value and
  gradients) into one block, of which each result is a view.
- **tensor programs** whose loss is separable over the batch (see
  `graphc.separable`): the data inputs given as Dask arrays are chunked by rows
  (the other inputs, the parameters, are NumPy arrays or scalars); each row
  chunk's loss and parameter gradients come from one call of the compiled
  separable part (means over the batch become sums times 1/N, N the whole
  batch), the chunks' results are added in a tree, and the data-free terms
  (L2 regularisation) are added once.

Traced functions (`graphc.value_and_grad(loss)(params, X, y)`, `graphc.grad`)
take data as Dask arrays chunked by rows: the function is traced once with the
row count as a symbolic dimension, the same proof splits its loss, and each row
chunk's value and parameter gradients run as one Dask task; the results are
NumPy (`value_and_grad_over_chunks` is the entry a training step reuses).

Compiled functions travel to workers by pickle (IR text and options, rebuilt
there from the disk cache). `pip install 'graphc[dask]'` installs Dask and
dask.distributed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .describe import describe
from .errors import ArgumentError, GraphcError


def is_dask(x: Any) -> bool:
    """A Dask collection (checked by module: Dask need not be imported)."""
    return type(x).__module__.startswith("dask.")


def _dask():
    try:
        import dask
        import dask.array as da
    except ImportError:
        raise GraphcError("Dask arrays need Dask: pip install 'graphc[dask]'") from None
    return dask, da


def call(fn: Any, values: Mapping[str, Any], out: Any, options: Mapping[str, Any]) -> Any:
    """`fn(**values)` with some values Dask arrays: lazy results."""
    if out is not None:
        raise ArgumentError("out= is not offered with Dask arrays: each chunk's results are new blocks")
    if options:
        raise ArgumentError(f"option(s) {', '.join(options)} are not offered with Dask arrays")
    if fn.tensor:
        return _batch(fn, values)
    return _pointwise(fn, values)


def _block(*blocks: np.ndarray, fn: Any, names: tuple[str, ...], scalars: dict, n_out: int) -> np.ndarray:
    """One chunk: one kernel call, every output written into one block."""
    vals = dict(zip(names, blocks))
    vals.update(scalars)
    shape = np.broadcast_shapes(*(b.shape for b in blocks))
    res = np.empty((n_out, *shape), dtype=fn.dtype)
    fn.call(vals, out=list(res))
    return res


def _pointwise(fn: Any, values: Mapping[str, Any]) -> Any:
    _, da = _dask()
    from dask.array.core import unify_chunks

    dtype = np.dtype(fn.dtype)
    names, arrays, scalars = [], [], {}
    for name in fn.inputs:
        v = values[name]
        if is_dask(v) or np.ndim(v):
            names.append(name)
            arrays.append(da.asarray(v).astype(dtype, copy=False))
        else:
            scalars[name] = float(v)
    arrays = da.broadcast_arrays(*arrays)
    idx = tuple(range(arrays[0].ndim))
    pairs = [x for a in arrays for x in (a, idx)]
    _, arrays = unify_chunks(*pairs)
    n_out = len(fn.kernel.output_names)
    stacked = da.map_blocks(_block, *arrays, fn=fn, names=tuple(names), scalars=scalars, n_out=n_out,
                            new_axis=0, chunks=((n_out,), *arrays[0].chunks), dtype=dtype,
                            meta=np.empty((0,) * (arrays[0].ndim + 1), dtype))  # no trial call on empty blocks
    return fn._pack([stacked[j] for j in range(n_out)])


class BatchSplit:
    """A tensor program's loss split for row chunks: the separable part and the
    data-free part, each compiled for the function's target (kept per set of
    chunked inputs, so a training loop compiles once)."""

    def __init__(self, forward: Any, wrt: Sequence[str], batch: tuple[str, ...], target: str | None, *,
                 dtype: str, passes: Any = None, unsafe: bool = False):
        from .api import CompiledFunction
        from .program import Program
        from .separable import split

        parts = split(forward, batch)
        opts = dict(wrt=list(wrt), dtype=dtype, passes=passes, unsafe=unsafe, shapes={})
        self.separable = CompiledFunction(Program(parts.separable, **opts), target)
        self.free = CompiledFunction(Program(parts.free, **opts), target) if parts.free is not None else None
        self.inv_n = parts.inv_n
        self.batch = batch

    @classmethod
    def of_function(cls, fn: Any, batch: tuple[str, ...]) -> BatchSplit:
        """The split of a compiled tensor program's loss."""
        prog = fn.program
        bad = [w for w in prog.wrt if w in batch]
        if bad:
            raise ArgumentError(f"gradients with respect to chunked data ({', '.join(bad)}) are not offered over "
                                "Dask: differentiate by the parameters (wrt=...)")
        return cls(prog.forward, prog.wrt, batch, fn.target, dtype=prog.dtype, passes=prog.passes,
                   unsafe=prog.unsafe)


def _chunk(sep: Any, data: dict[str, np.ndarray], params: dict[str, Any], inv_name: str, inv: float) -> tuple:
    v, g = sep.call({**data, **params, inv_name: inv})
    return (float(v), *(np.asarray(x) for x in g.values()))


def _add(*parts: tuple) -> tuple:
    total = list(parts[0])
    for p in parts[1:]:
        for k, x in enumerate(p):
            total[k] = total[k] + x
    return tuple(total)


def _batch(fn: Any, values: Mapping[str, Any]) -> Any:
    dask, da = _dask()
    batch = tuple(n for n in fn.inputs if is_dask(values[n]))
    cache = fn.__dict__.setdefault("_dask_splits", {})
    parts = cache.get(batch)
    if parts is None:
        parts = cache[batch] = BatchSplit.of_function(fn, batch)
    data = {n: da.asarray(values[n]) for n in batch}
    first = data[batch[0]]
    rows = first.chunks[0]
    for n, a in data.items():
        if a.shape[:1] != first.shape[:1]:
            raise ArgumentError(f"chunked inputs disagree on the batch size: {batch[0]!r} has {first.shape[0]} "
                                f"rows, {n!r} has {a.shape[0]}")
        data[n] = a.rechunk({0: rows, **{k: -1 for k in range(1, a.ndim)}})  # row chunks aligned, rows whole
    params = {n: values[n] for n in fn.inputs if n not in data}
    n_total = first.shape[0]
    if not n_total:
        raise ArgumentError("the chunked data has no rows")
    inv = 1.0 / n_total
    sep = dask.delayed(parts.separable, pure=True)  # one key: each worker unpickles it once
    blocks = {n: a.to_delayed().ravel() for n, a in data.items()}
    level = [dask.delayed(_chunk, pure=True)(sep, {n: blocks[n][i] for n in batch}, params, parts.inv_n, inv)
             for i in range(len(rows))]
    while len(level) > 1:  # a tree reduction: pairs, then pairs of pairs
        level = [dask.delayed(_add, pure=True)(*level[i:i + 2]) for i in range(0, len(level), 2)]
    total = level[0]
    if parts.free is not None:
        free = dask.delayed(_free, pure=True)(parts.free, params)
        total = dask.delayed(_add, pure=True)(total, free)
    dt = np.dtype(fn.dtype)
    value = da.from_delayed(total[0], shape=(), dtype=dt)
    grads = {}
    for k, w in enumerate(fn.wrt):
        shape = np.shape(values[w])
        grads[w] = da.from_delayed(total[k + 1], shape=shape, dtype=dt)
    return value, grads


def _free(free: Any, params: dict[str, Any]) -> tuple:
    v, g = free.call({n: params[n] for n in free.inputs})
    return (float(v), *(np.asarray(x) for x in g.values()))


# ------------------------------------------------------------ traced functions

ROWS = "rows"  # the symbolic dimension the Dask data's rows are traced as: one program for every chunk size


@dataclass
class _TracedSplit:
    """A traced function's loss split for one argument signature: its compiled parts,
    the input name of each argument leaf, and where the gradients go."""

    parts: BatchSplit
    names: list[str]  # the program's input name of each leaf
    grads: list[tuple[int, list[str]]]  # per differentiated argument: its leaves' input names
    n_rows: str | None  # the input holding the whole row count (the function read the number of rows)


def traced_call(traced: Any, args: tuple, kwargs: dict) -> Any:
    """`traced(*args, **kwargs)` with Dask arrays among the arguments: what
    `graphc.value_and_grad(f)` or `graphc.grad(f)` returns, over row chunks."""
    value, grads = value_and_grad_over_chunks(traced, args, kwargs)
    return grads if traced.mode == "grad" else (value, grads)


def value_and_grad_over_chunks(traced: Any, args: tuple, kwargs: dict, *, compute: bool = True) -> Any:
    """(value, grads) of the traced function `traced` (a `graphc.value_and_grad`
    or `graphc.grad` object) at `args`/`kwargs`, whose data leaves are Dask arrays
    chunked by rows and whose other leaves (parameters, constants) are NumPy
    arrays or floats. The loss must be separable over the rows (`graphc.separable`
    proves it, else NotSeparableError); each row chunk's value and parameter
    gradients are one Dask task on the current scheduler (a distributed Client
    when one is active), added in a tree. `grads` has the structure of
    `args[argnums]`, as the traced call's; floats for 0-d results. With
    compute=False: a dask Delayed of the pair (nothing runs yet)."""
    dask, da = _dask()
    from .trace import flatten, leaf_type, static_key

    where = f"graphc.{traced.mode}"
    if traced.mode not in ("value_and_grad", "grad"):
        raise ArgumentError(f"{where} over Dask arrays is not offered: graphc.value_and_grad and graphc.grad split a "
                            "loss over row chunks; map a function over chunks with dask.array.map_blocks")
    if traced.has_aux:
        raise ArgumentError(f"{where}(has_aux=True) over Dask arrays is not offered: an aux value is per row chunk, "
                            "not a sum over the rows; return the loss alone, and compute aux on NumPy arrays")
    dyn, static, _ = traced._split(args, kwargs)
    nums = traced._argnums(len(dyn))
    leaves: list[Any] = []
    paths: list[str] = []
    trees: list[Any] = []
    owner: list[int] = []  # the argument each leaf belongs to
    for k, (name, value) in enumerate(dyn):
        ls, ps, td = flatten(value, name)
        leaves += ls
        paths += ps
        trees.append(td)
        owner += [k] * len(ls)
    batch = tuple(i for i, x in enumerate(leaves) if is_dask(x))
    data, rows = _row_chunked(leaves, paths, batch, da)
    n = sum(rows)
    types: list[tuple] = []
    for i, (x, path) in enumerate(zip(leaves, paths)):
        if i in data:
            if owner[i] in nums:
                raise ArgumentError(f"{where}: argument {path} is Dask data and argnums={traced.argnums!r} asks for "
                                    "its gradient: over Dask, gradients are taken with respect to the parameters "
                                    "(NumPy arrays), not the chunked data")
            types.append(((ROWS, *x.shape[1:]), _kind(x.dtype, path)))
            continue
        shape, kind = leaf_type(x, path)
        if owner[i] not in nums and shape and shape[0] == n:
            first = paths[batch[0]]
            raise ArgumentError(f"{where}: argument {path} is a NumPy array with the {n} rows of the Dask data "
                                f"({first}): give every data array as a Dask array chunked by rows (dask.array."
                                f"from_array(..., chunks={first}.chunks[0]) for a 1-D one)")
        types.append((shape, kind))
    key = (tuple(trees), tuple(types), static_key(static), batch)
    cache = traced.__dict__.setdefault("_dask_splits", {})
    plan = cache.get(key)
    if plan is None:
        plan = _plan(traced, dyn, static, leaves, paths, trees, types, batch, nums)
        if len(cache) >= 8:  # a training loop meets one signature; keep a few
            cache.pop(next(iter(cache)))
        cache[key] = plan
    params = {plan.names[i]: x for i, x in enumerate(leaves) if i not in data}
    if plan.n_rows is not None:
        params[plan.n_rows] = float(n)
    total = _over_rows(dask, plan.parts, {plan.names[i]: a for i, a in data.items()}, rows, params, 1.0 / n)
    pack = functools.partial(_pack, wrt=plan.parts.separable.wrt, grads=plan.grads, trees=trees,
                             single=isinstance(traced.argnums, int))
    if not compute:
        return dask.delayed(pack, pure=True)(total)
    (got,) = dask.compute(total)
    return pack(got)


def _kind(dtype: np.dtype, path: str) -> str:
    """The leaf kind `trace.leaf_type` gives an ndarray of this dtype."""
    if dtype == np.float64:
        return "float64"
    if dtype == np.float32:
        return "float32"
    if dtype.kind in "iu":
        return "int64"
    raise ArgumentError(f"argument {path} is a Dask array of {dtype}: graphc takes float or integer arrays")


def _row_chunked(leaves: list, paths: list[str], batch: tuple[int, ...], da: Any) -> tuple[dict[int, Any], tuple]:
    """The Dask leaves, checked (arrays with rows, whole rows per chunk, one row count)
    and their row chunks aligned to the first's; and those row chunk sizes."""
    data: dict[int, Any] = {}
    for i in batch:
        x, path = leaves[i], paths[i]
        if not isinstance(x, da.Array):
            raise ArgumentError(f"argument {path} is {describe(x)}: over Dask, graphc takes dask.array arrays of "
                                "data chunked by rows, and NumPy arrays or floats for the rest")
        if x.ndim == 0:
            raise ArgumentError(f"argument {path} is a 0-d Dask array: data has rows (its first axis), each chunk "
                                "a block of whole rows")
        if any(math.isnan(c) for c in x.chunks[0]):
            raise ArgumentError(f"argument {path} has unknown chunk sizes: call .compute_chunk_sizes() on it first")
        for axis in range(1, x.ndim):
            if len(x.chunks[axis]) > 1:
                raise ArgumentError(f"argument {path} is chunked along axis {axis} as well as along the rows "
                                    f"(chunks {x.chunks[axis]}): the loss is split over rows only, so each chunk "
                                    f"needs whole rows: rechunk it with .rechunk({{{axis}: -1}})")
        data[i] = x
    first = batch[0]
    for i, x in data.items():
        if x.shape[0] != data[first].shape[0]:
            raise ArgumentError(f"the Dask data disagree on the number of rows: {paths[first]} has "
                                f"{data[first].shape[0]}, {paths[i]} has {x.shape[0]}")
    rows = tuple(int(c) for c in data[first].chunks[0])
    if not sum(rows):
        raise ArgumentError(f"the Dask data ({paths[first]}) have no rows")
    for i, x in data.items():
        if x.chunks[0] != rows:
            data[i] = x.rechunk({0: rows})
    return data, rows


def _plan(traced: Any, dyn: list, static: dict, leaves: list, paths: list[str], trees: list, types: list,
          batch: tuple[int, ...], nums: tuple[int, ...]) -> _TracedSplit:
    """Trace once with the rows symbolic, prove the loss separable, compile its parts."""
    from .backends.targets import get_target
    from .separable import NotSeparableError
    from .trace import Traced, TracingError, leaf_count

    target = get_target(traced.target)
    if not target.tensors:
        raise ArgumentError(f"target {target.name!r} does not run traced (tensor) programs: use target='numpy'")
    # the graph only: traced for the numpy target, whose kernel costs nothing; the parts compile for `target`
    tracer = Traced(traced.f, traced.mode, traced.argnums, False, traced.static, "numpy")
    try:
        sig = tracer._trace(dyn, static, leaves, paths, trees, tuple(types))
    except TracingError as exc:
        if "is not known while tracing" not in str(exc):
            raise
        raise TracingError(f"{exc}; over Dask the function is traced once for every number of rows (dimension "
                           f"{ROWS!r}): use the row count only as a number in traced arithmetic, e.g. "
                           "gnp.sum(r) / X.shape[0], or take graphc.numpy.mean") from None
    prog = sig.program
    forward, n_rows = _row_count_input(prog.forward, ROWS)
    data_names = tuple(sig.names[i] for i in batch)
    try:
        parts = BatchSplit(forward, prog.wrt, data_names, target.name, dtype=prog.dtype, passes=prog.passes)
    except NotSeparableError as exc:
        shown = ", ".join(paths[i] for i in batch)
        raise NotSeparableError(f"graphc.{traced.mode} over Dask row chunks (of {shown}): {exc}") from None
    starts = np.cumsum([0] + [leaf_count(td) for td in trees])
    grads = [(k, list(sig.names[starts[k]:starts[k + 1]])) for k in nums]
    return _TracedSplit(parts, list(sig.names), grads, n_rows)


def _row_count_input(graph: Any, dim: str) -> tuple[Any, str | None]:
    """`graph` with every count over the rows (the function used X.shape[0] as a number)
    read from a new scalar input holding the whole row count, so each chunk divides by
    N, not by its own rows; and that input's name (None: the graph counts no rows)."""
    from .ir import Graph, const, input_node, make, topo_order
    from .trace import substitute

    roots = [v for _, v in graph.outputs]
    counts = [c for c in topo_order(roots) if c.op == "count" and c.dtype == graph.dtype and
              any(c.args[0].shape[a] == dim for a in c.attrs["axis"])]
    if not counts:
        return graph, None
    taken = set(graph.input_names)
    name = "n_rows"
    while name in taken:
        name = "_" + name
    total = input_node(name, graph.dtype)
    mapping = {}
    for c in counts:
        other = math.prod(int(c.args[0].shape[a]) for a in c.attrs["axis"] if c.args[0].shape[a] != dim)
        mapping[id(c)] = total if other == 1 else make("mul", total, const(float(other), graph.dtype))
    outs = substitute(roots, mapping)
    return Graph([*graph.inputs, total], list(zip(graph.output_names, outs))), name


def _over_rows(dask: Any, parts: BatchSplit, data: dict[str, Any], rows: tuple[int, ...], params: dict[str, Any],
               inv: float) -> Any:
    """One Dask task per nonempty row chunk (the separable part), tree-added, plus the data-free
    part once: a Delayed of (value, *gradients in the order of parts.separable.wrt)."""
    sep = dask.delayed(parts.separable, pure=True)  # one key: each worker unpickles it once
    shared = dask.delayed(params, pure=True, traverse=False)  # likewise the parameters
    blocks = {n: a.to_delayed().ravel() for n, a in data.items()}
    level = [dask.delayed(_chunk, pure=True)(sep, {n: b[i] for n, b in blocks.items()}, shared, parts.inv_n, inv)
             for i, r in enumerate(rows) if r]
    while len(level) > 1:  # a tree reduction: pairs, then pairs of pairs
        level = [dask.delayed(_add, pure=True)(*level[i:i + 2]) for i in range(0, len(level), 2)]
    total = level[0]
    if parts.free is not None:
        total = dask.delayed(_add, pure=True)(total, dask.delayed(_free, pure=True)(parts.free, shared))
    return total


def _pack(total: tuple, wrt: Sequence[str], grads: list[tuple[int, list[str]]], trees: list, single: bool) -> tuple:
    """(value, grads in the differentiated arguments' structure) from the added chunk results."""
    from .trace import unflatten

    got = dict(zip(wrt, total[1:]))

    def out(name: str) -> Any:
        g = got.get(name)  # None: an integer leaf, which has no gradient
        return float(g) if g is not None and np.ndim(g) == 0 else g

    per_arg = [unflatten(trees[k], [out(name) for name in names]) for k, names in grads]
    return float(total[0]), per_arg[0] if single else tuple(per_arg)


def _register() -> None:
    from .api import DASK
    from .trace import DASK_CALL

    DASK["call"] = call
    DASK_CALL["traced_call"] = traced_call


_register()
