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

Compiled functions travel to workers by pickle (IR text and options, rebuilt
there from the disk cache). `pip install 'graphc[dask]'` installs Dask and
dask.distributed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

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

    def __init__(self, fn: Any, batch: tuple[str, ...]):
        from .program import Program
        from .separable import split

        prog = fn.program
        bad = [w for w in prog.wrt if w in batch]
        if bad:
            raise ArgumentError(f"gradients with respect to chunked data ({', '.join(bad)}) are not offered over "
                                "Dask: differentiate by the parameters (wrt=...)")
        parts = split(prog.forward, batch)
        opts = dict(wrt=list(prog.wrt), dtype=prog.dtype, passes=prog.passes, unsafe=prog.unsafe, shapes={})
        compiled = type(fn)  # CompiledFunction, without importing the API (which imports this module)
        self.separable = compiled(Program(parts.separable, **opts), fn.target)
        self.free = compiled(Program(parts.free, **opts), fn.target) if parts.free is not None else None
        self.inv_n = parts.inv_n
        self.batch = batch


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
        parts = cache[batch] = BatchSplit(fn, batch)
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
