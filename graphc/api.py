"""The Python API: compile a formula into a function returning value and gradients."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import ArgumentError, GraphcError
from .frontend import parse
from .ir import DTYPE_NUMPY, Graph, canonical_dtype, print_graph
from .passes.autodiff import grad_name, resolve_wrt
from .passes.manager import (
    PassContext,
    PassRecord,
    format_print_after_all,
    format_stats,
    normalize_pipeline,
    run_pipeline,
)

TARGETS = ("cpu", "parallel", "numpy", "cuda")
DEFAULT_TARGET = "cpu"


def _kernel_for(graph: Graph, target: str):
    if target == "numpy":
        from .codegen.numpy_ref import NumpyKernel

        return NumpyKernel(graph)
    if target in ("cpu", "parallel"):
        from .codegen.numba_cpu import NumbaKernel

        return NumbaKernel(graph, target)
    if target == "cuda":
        from .codegen.numba_cuda import CudaKernel

        return CudaKernel(graph)
    raise GraphcError(f"unknown target {target!r}; targets: {', '.join(TARGETS)}")


class _DeviceShape:
    """A device array during binding: its shape, without copying it to the host."""

    def __init__(self, array: Any, shape: tuple):
        self.array, self.shape = array, shape


class CompiledFunction:
    """A formula compiled to a function of its inputs.

    `fn(*args, **kwargs)` returns `(value, grads)` with `grads` a dict
    name -> d value / d name (and, for order=2, a third item: the Hessian as
    a dict of dicts). Scalars in -> Python floats out; arrays broadcast.
    """

    def __init__(self, forward: Graph, wrt: Sequence[str] | None, target: str, dtype: str,
                 passes: Sequence[str] | str | None, order: int, unsafe: bool):
        self.forward_graph = forward
        self.target = target
        self.dtype = DTYPE_NUMPY[dtype]
        self.order = order
        self.inputs: tuple[str, ...] = forward.input_names
        self.wrt: tuple[str, ...] = tuple(n.attr for n in resolve_wrt(forward, wrt))  # type: ignore[misc]
        self.pipeline = normalize_pipeline(passes, grad=True)
        ctx = PassContext(wrt=self.wrt, order=order, unsafe=unsafe)
        self._initial = forward
        self.graph, self.records = run_pipeline(forward, self.pipeline, ctx, keep_ir=True)
        self._ctx_unsafe = unsafe
        self._kernel = _kernel_for(self.graph, target)
        self._fwd_kernel = None
        self._np_dtype = np.dtype(self.dtype)
        self._n_in = len(self.inputs)
        self._fast_scalar = None  # set after the first scalar call on a compiled target
        self._fast_arrays = getattr(self._kernel, "run_contiguous", None) if self.order == 1 else None

    # ----------------------------------------------------------- inspection
    @property
    def ir(self) -> str:
        """The optimised value+gradient IR as text."""
        return print_graph(self.graph)

    @property
    def source(self) -> str | None:
        """Generated kernel source (None for the numpy reference target)."""
        return self._kernel.source

    def optimised_forward(self) -> Graph:
        from .passes.manager import FORWARD_PIPELINE

        fwd_passes = [p for p in self.pipeline if p != "autodiff"] or list(FORWARD_PIPELINE)
        g, _ = run_pipeline(self.forward_graph, fwd_passes, PassContext(unsafe=self._ctx_unsafe))
        return g

    def stats(self) -> str:
        return format_stats(self.records, forward_ops=self.optimised_forward().op_count())

    def explain(self) -> str:
        """The IR after every pass, then the per-pass table."""
        return format_print_after_all(self.records, self._initial) + "\n\n" + self.stats()

    def __repr__(self) -> str:
        return (f"<graphc.CompiledFunction inputs={self.inputs} wrt={self.wrt} target={self.target!r} "
                f"dtype={self.dtype} ops={self.graph.op_count()}>")

    # ---------------------------------------------------------------- calls
    def _bind(self, args: tuple, kwargs: Mapping[str, Any]) -> tuple[list[np.ndarray], bool, tuple]:
        names = self.inputs
        if len(args) > len(names):
            raise ArgumentError(
                f"got {len(args)} positional arguments but the formula has {len(names)} inputs: {', '.join(names)}"
            )
        values: dict[str, Any] = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in names:
                close = difflib.get_close_matches(k, names, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; inputs: {', '.join(names)}"
                raise ArgumentError(f"unknown argument {k!r}{hint}")
            if k in values:
                raise ArgumentError(f"argument {k!r} given twice (positionally and by keyword)")
            values[k] = v
        missing = [n for n in names if n not in values]
        if missing:
            raise ArgumentError(f"missing argument(s): {', '.join(missing)}")
        arrays = []
        scalar = True
        for n in names:
            v = values[n]
            if self.target == "cuda":
                from .codegen.numba_cuda import device_shape_dtype, is_device_array

                if is_device_array(v):
                    dshape, ddtype = device_shape_dtype(v)
                    if ddtype != self._np_dtype:
                        raise ArgumentError(f"argument {n!r} is a device array of dtype {ddtype}; "
                                            f"the kernel is {self._np_dtype}")
                    arrays.append(_DeviceShape(v, dshape))
                    scalar = False
                    continue
            try:
                a = np.asarray(v)
            except Exception as exc:  # e.g. ragged nested lists
                raise ArgumentError(f"argument {n!r} is not a numeric array: {exc}") from None
            if a.dtype.kind not in "biuf":
                raise ArgumentError(
                    f"argument {n!r} is not real-valued numeric data (got dtype {a.dtype})"
                )
            if a.ndim:
                scalar = False
            arrays.append(a.astype(self._np_dtype, copy=False))
        try:
            shape = np.broadcast_shapes(*(a.shape for a in arrays))
            arrays = [a.array if isinstance(a, _DeviceShape) else a for a in arrays]
        except ValueError:
            shapes = ", ".join(f"{n}{tuple(a.shape)}" for n, a in zip(names, arrays))
            raise ArgumentError(f"argument shapes do not broadcast together: {shapes}") from None
        return arrays, scalar, shape

    def __call__(self, *args: Any, out: Any = None, stream: Any = None, **kwargs: Any):
        """(value, grads) -- or (value, grads, hessian) for order=2.

        out: optional preallocated output buffers (a list in output order, or a
        dict keyed by output name: 'f', 'df/dx', ...), C-contiguous, of the
        broadcast shape and the compiled dtype; they are filled and returned.
        stream: a CUDA stream (target "cuda" only)."""
        if stream is not None:
            if self.target != "cuda":
                raise ArgumentError("stream= is for target='cuda' only")
            arrays, scalar, shape = self._bind(args, kwargs)
            return self._pack(self._kernel.run(arrays, shape, out, stream=stream))
        if not kwargs and len(args) == self._n_in:
            # fast paths: Python floats, or same-shape contiguous arrays of our dtype
            a0 = args[0] if args else None
            if type(a0) is float and out is None and self._fast_scalar is not None:
                for a in args:
                    if type(a) is not float:
                        break
                else:
                    res = self._fast_scalar(*args)
                    return res[0], dict(zip(self.wrt, res[1:]))
            elif type(a0) is np.ndarray and self._fast_arrays is not None:
                outs = self._fast_arrays(args, out)  # 1-D arrays of one length; None if not
                if outs is not None:
                    return self._pack(outs)
        arrays, scalar, shape = self._bind(args, kwargs)
        if scalar and out is None:
            scalar_fn = self._kernel.scalar
            if scalar_fn is not None:
                outs = [float(r) for r in scalar_fn(*(float(a) for a in arrays))]
                if self.order == 1:  # the fast path returns (value, grads) only
                    self._fast_scalar = getattr(self._kernel, "scalar_dispatcher", None)
            else:
                outs = [float(o) for o in self._kernel.run(arrays, shape)]
        else:
            outs = self._kernel.run(arrays, shape, out)
        return self._pack(outs)

    def _pack(self, outs: Sequence[Any]):
        k = len(self.wrt)
        value = outs[0]
        grads = dict(zip(self.wrt, outs[1:1 + k]))
        if self.order == 1:
            return value, grads
        hess = {w: dict(zip(self.wrt, outs[1 + k + i * k: 1 + k + (i + 1) * k])) for i, w in enumerate(self.wrt)}
        return value, grads, hess

    def forward(self, *args: Any, **kwargs: Any):
        """The value only (a forward-only kernel: no gradient work)."""
        arrays, scalar, shape = self._bind(args, kwargs)
        if self._fwd_kernel is None:
            self._fwd_kernel = _kernel_for(self.optimised_forward(), self.target)
        (value,) = self._fwd_kernel.run(arrays, shape)[:1]
        return float(value) if scalar else value

    def output_names(self) -> list[str]:
        return list(self.graph.output_names)


def compile(
    formula: Any,
    wrt: Sequence[str] | str | None = None,
    target: str | None = None,
    dtype: Any = "float64",
    passes: Sequence[str] | str | None = None,
    order: int = 1,
    inputs: Sequence[str] | None = None,
    unsafe: bool = False,
) -> CompiledFunction:
    """Compile formula text, a SymPy expression or a Graph into a CompiledFunction.

    wrt: names to differentiate by (default: every input, in input order).
    target: "cpu" (Numba, serial; the default), "parallel" (Numba, all cores)
    or "numpy" (the reference evaluator). dtype: float64 or float32.
    passes: pipeline (default simplify, fuse, autodiff, simplify, cse, dce);
    `()` runs autodiff alone. order: 1 (gradient) or 2 (adds the Hessian).
    inputs: explicit input order (default: order of first appearance).
    unsafe: also apply rewrites that change results for inf/NaN (x*0 -> 0, ...).
    """
    target = target or DEFAULT_TARGET
    if target not in TARGETS:
        raise GraphcError(f"unknown target {target!r}; targets: {', '.join(TARGETS)}")
    if order not in (1, 2):
        raise GraphcError(f"order={order!r}: graphc offers order 1 (gradient) and 2 (Hessian)")
    dt = canonical_dtype(dtype)
    forward = parse(formula, dtype=dt, inputs=tuple(inputs) if inputs is not None else None)
    if forward.dtype != dt:
        raise GraphcError(f"the graph is {forward.dtype} but dtype={dtype!r} was asked for")
    return CompiledFunction(forward, wrt, target, dt, passes, order, unsafe)


def hessian(formula: Any, wrt: Sequence[str] | str | None = None, **kw: Any) -> CompiledFunction:
    """compile(..., order=2): calls return (value, grads, hessian[x][y])."""
    return compile(formula, wrt=wrt, order=2, **kw)


__all__ = ["compile", "hessian", "CompiledFunction", "PassRecord", "grad_name"]
