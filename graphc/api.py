"""The Python API: compile a formula into a function returning value and gradients.

`CompiledFunction` is a thin front: it binds arguments by name, asks the
target's kernel (see `codegen/kernel.py`) to run, and packs the outputs into
(value, grads[, hessian]). The pipeline lives in `Program`, the targets in
`codegen/targets.py`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import shapes
from .backends.buffers import check_out
from .backends.kernel import Kernel
from .backends.targets import TARGETS, build, emit, get_target
from .errors import ArgumentError, GraphcError, UnsupportedError
from .ir import Graph
from .passes.autodiff import grad_name
from .passes.manager import PassRecord
from .program import Program

_NO_OPTIONS: dict[str, Any] = {}


class CompiledFunction:
    """A formula compiled to a function of its inputs.

    `fn(*args, **kwargs)` returns `(value, grads)` with `grads` a dict
    name -> d value / d name (and, for order=2, a third item: the Hessian as
    a dict of dicts). Scalars in -> Python floats out; arrays broadcast.
    """

    def __init__(self, program: Program, target: str | None = None):
        if not program.order:
            raise GraphcError("this Program was built with grad=False; compile needs the value+gradient graph")
        self.program = program
        row = get_target(target)
        self.target = row.name
        self._call_options = row.call_options
        self.kernel: Kernel = build(program.graph, self.target)
        self._fwd_kernel: Kernel | None = None
        self._np_dtype = np.dtype(program.dtype)
        self._n_in = len(program.inputs)
        self._wrt, self._order1 = program.wrt, program.order == 1  # read on every call: plain attributes
        self.tensor: bool = program.tensor  # a tensor program: arguments have declared shapes
        self._fast_arrays = self.kernel.run_contiguous if self.order == 1 and not self.tensor else None
        self._py_scalar, self._py_arrays = self.kernel.python_entries(self._wrt) if self._fast_arrays else (None,
                                                                                                          None)

    # ----------------------------------------------------------- inspection
    inputs = property(lambda self: self.program.inputs, doc="input names, in call order")
    wrt = property(lambda self: self.program.wrt, doc="names differentiated by")
    dtype = property(lambda self: self.program.dtype)
    order = property(lambda self: self.program.order)
    graph = property(lambda self: self.program.graph, doc="the optimised value+gradient Graph")
    forward_graph = property(lambda self: self.program.forward, doc="the forward Graph as parsed")
    records = property(lambda self: self.program.records, doc="one PassRecord per pass")
    pipeline = property(lambda self: self.program.passes, doc="the pass names that ran")

    @property
    def ir(self) -> str:
        """The optimised value+gradient IR as text."""
        return self.program.ir

    @property
    def source(self) -> str | None:
        """Generated kernel source (None for the numpy reference target)."""
        return self.kernel.source

    def emit(self, kind: str = "source", **opts: Any) -> str:
        """A lower form of this function's kernel: "source", "llvm" (cpu,
        parallel) or "ptx" (cuda, with cc="9.0")."""
        return emit(self.program.graph, self.target, kind, **opts)

    def optimised_forward(self) -> Graph:
        return self.program.optimised_forward()

    def stats(self) -> str:
        return self.program.stats()

    def explain(self) -> str:
        """The IR after every pass, and the per-pass table."""
        return self.program.explain()

    def dot(self, at: dict | None = None) -> str:
        """The forward graph as Graphviz DOT; with `at`, annotated with values and gradients."""
        return self.program.dot(at)

    def _repr_svg_(self) -> str | None:
        return self.program._repr_svg_()

    def output_names(self) -> list[str]:
        return list(self.program.outputs)

    def __repr__(self) -> str:
        return (f"<graphc.CompiledFunction inputs={self.inputs} wrt={self.wrt} target={self.target!r} "
                f"dtype={self.dtype} ops={self.graph.op_count()}>")

    # ------------------------------------------------------------- pickling
    def __reduce__(self):
        """Pickled as its Program (IR text and options) and target: rebuilt on
        loading, kernels from the disk cache; no code object travels."""
        return (_load_function, (self.program, self.target))

    def __dask_tokenize__(self) -> str:
        return self.program.__dask_tokenize__() + ":" + self.target

    # ---------------------------------------------------------------- calls
    def _values(self, args: tuple, kwargs: Mapping[str, Any]) -> dict[str, Any]:
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
        return values

    def _bind(self, kernel: Kernel, args: tuple, kwargs: Mapping[str, Any]) -> tuple[list, bool, tuple]:
        names = self.inputs
        values = self._values(args, kwargs)
        try:
            arrays = [kernel.convert(n, values[n]) for n in names]
        except ArgumentError:
            from .shapes import refuse_traced

            refuse_traced(values)
            raise
        try:
            shape = np.broadcast_shapes(*(tuple(a.shape) for a in arrays))
        except ValueError:
            shapes = ", ".join(f"{n}{tuple(a.shape)}" for n, a in zip(names, arrays))
            raise ArgumentError(f"argument shapes do not broadcast together: {shapes}") from None
        return arrays, not shape and all(not a.shape for a in arrays), shape

    def __call__(self, /, *args: Any, **kwargs: Any):
        """(value, grads) -- or (value, grads, hessian) for order=2.

        out: optional preallocated output buffers (a list in output order, or a
        dict keyed by output name: 'f', 'df/dx', ...), C-contiguous, of the
        broadcast shape and the compiled dtype, overlapping no input and no
        other buffer; they are filled and returned. Targets may accept more
        options (cuda: stream=). A formula variable named like an option
        (`out`, `stream`) is that variable here: give buffers with `call`."""
        if not kwargs:  # the common call: nothing to sort out
            if args and len(args) == self._n_in:
                a0 = args[0]
                if type(a0) is float:
                    if self._py_scalar is not None:  # compiled: checks the floats, returns (value, grads)
                        res = self._py_scalar(*args)
                        if type(res) is tuple:
                            return res
                    fast = self.kernel.fast_scalar  # Python floats straight to the compiled scalar body
                    if fast is not None and self._order1:
                        for a in args:
                            if type(a) is not float:
                                break
                        else:
                            res = fast(*args)
                            return res[0], dict(zip(self._wrt, res[1:]))
                elif type(a0) is np.ndarray and self._fast_arrays is not None:
                    if self._py_arrays is not None:  # compiled: checks the arrays, returns (value, grads)
                        res = self._py_arrays(*args)
                        if type(res) is tuple:
                            return res
                    outs = self._fast_arrays(args, None)  # 1-D arrays of one length; None if not
                    if outs is not None:
                        return outs[0], dict(zip(self._wrt, outs[1:]))
            return self._run(args, kwargs, None, _NO_OPTIONS)
        out = kwargs.pop("out") if "out" in kwargs and "out" not in self.inputs else None
        options = {k: kwargs.pop(k) for k in self._call_options if k in kwargs and k not in self.inputs}
        return self._run(args, kwargs, out, options)

    def call(self, /, values: Mapping[str, Any] | Sequence[Any], *, out: Any = None, **options: Any):
        """Like calling the function, with the variables in one mapping (or a
        sequence in input order), so no variable name can meet an option name."""
        unknown = [k for k in options if k not in self._call_options]
        if unknown:
            raise ArgumentError(f"unknown option(s) {', '.join(unknown)} for target {self.target!r}")
        if isinstance(values, Mapping):
            return self._run((), dict(values), out, options)
        return self._run(tuple(values), {}, out, options)

    def _run(self, args: tuple, kwargs: dict[str, Any], out: Any, options: dict[str, Any]):
        for k in [k for k in kwargs if k not in self.inputs]:
            owners = [t.name for t in TARGETS.values() if k in t.call_options]
            if owners:
                raise ArgumentError(f"{k}= is for target {' or '.join(map(repr, owners))} only")
        if self.tensor:
            if _any_dask(args, kwargs):
                return _over_dask(self, args, kwargs, out, options)
            return self._run_tensor(self.kernel, args, kwargs, out)
        if not kwargs and not options and len(args) == self._n_in:
            # fast paths: Python floats, or same-shape contiguous arrays of our dtype
            a0 = args[0] if args else None
            fast = self.kernel.fast_scalar
            if type(a0) is float and out is None and fast is not None and self.order == 1:
                if all(type(a) is float for a in args):
                    res = fast(*args)
                    return res[0], dict(zip(self.wrt, res[1:]))
            elif type(a0) is np.ndarray and self._fast_arrays is not None:
                outs = self._fast_arrays(args, out)  # 1-D arrays of one length; None if not
                if outs is not None:
                    return self._pack(outs)
        if _any_dask(args, kwargs):
            return _over_dask(self, args, kwargs, out, options)
        arrays, scalar, shape = self._bind(self.kernel, args, kwargs)
        if scalar and out is None and not options:
            outs = list(self.kernel.run_scalar(*(float(a) for a in arrays)))
        else:
            outs = self.kernel.run(arrays, shape, out, **options)
        return self._pack(outs)

    def _run_tensor(self, kernel: Kernel, args: tuple, kwargs: Mapping[str, Any], out: Any) -> Any:
        """A tensor program: arguments checked against their declared shapes,
        symbolic dimensions bound; 0-d results come back as Python floats."""
        arrays, dims = shapes.bind(self.program.forward.inputs, self._values(args, kwargs), self._np_dtype,
                                   device=self.target == "cuda")
        if out is not None:
            out = check_out(out, kernel.output_names, [shapes.bound(v.shape, dims) for _, v in kernel.graph.outputs],
                            self._np_dtype, inputs=arrays, input_names=self.inputs)
        outs = [float(o) if np.ndim(o) == 0 else o for o in kernel.run_tensor(arrays, dims, out)]
        if kernel is not self.kernel:
            return outs
        return self._pack(outs)

    def planned_memory(self, /, *args: Any, **kwargs: Any) -> dict[str, int]:
        """The compiled schedule's memory plan for arguments like these (bytes):
        `pool` (intermediates, buffers shared by lifetime and kept between calls),
        `outputs`, `temporaries` (NumPy-step results alive at once) and `peak`.
        Give the arguments (any subset), the sizes of the symbolic dimensions by name
        (`fn.planned_memory(N=10**9, D=784, ...)`), or both: the plan is computed, never
        allocated, so any size may be asked about."""
        plan = getattr(self.kernel, "planned_memory", None)
        if not self.tensor or plan is None:
            raise UnsupportedError(f"target {self.target!r} plans no memory: a tensor program on target='llvm' "
                                   "(the default), 'cpu' or 'parallel' does")
        inputs, names = self.program.forward.inputs, self.inputs
        declared = list(dict.fromkeys(d for n in inputs for d in n.shape if isinstance(d, str)))
        if len(args) > len(names):
            self._values(args, {})  # the error naming the inputs
        values: dict[str, Any] = dict(zip(names, args))
        sizes: dict[str, int] = {}
        for k, v in kwargs.items():
            if k in names:
                if k in values:
                    raise ArgumentError(f"argument {k!r} given twice (positionally and by keyword)")
                values[k] = v
            elif k in declared:
                if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 0:
                    raise ArgumentError(f"dimension {k} must be a size (an int >= 0), got {v!r}")
                sizes[k] = int(v)
            else:
                raise ArgumentError(f"unknown argument {k!r}: planned_memory takes the inputs ({', '.join(names)})"
                                    f" or the sizes of the dimensions ({', '.join(declared) or 'none'})")
        _, dims = shapes.bind([n for n in inputs if n.attr in values], values, self._np_dtype)
        for d, size in sizes.items():
            if dims.setdefault(d, size) != size:
                raise ArgumentError(f"dimension {d} is {dims[d]} in the arguments but {d}={size} was given")
        missing = [d for d in declared if d not in dims]
        if missing:
            raise ArgumentError(f"planned_memory needs the size of dimension(s) {', '.join(missing)}: pass "
                                f"{', '.join(f'{d}=...' for d in missing)} or arguments that have them")
        return plan(dims)

    def _pack(self, outs: Sequence[Any]):
        k = len(self.wrt)
        value = outs[0]
        grads = dict(zip(self.wrt, outs[1:1 + k]))
        if self.order == 1:
            return value, grads
        hess = {w: dict(zip(self.wrt, outs[1 + k + i * k: 1 + k + (i + 1) * k])) for i, w in enumerate(self.wrt)}
        return value, grads, hess

    def forward(self, /, *args: Any, **kwargs: Any):
        """The value only (a forward-only kernel: no gradient work)."""
        if self._fwd_kernel is None:
            self._fwd_kernel = build(self.optimised_forward(), self.target)
        if self.tensor:
            return self._run_tensor(self._fwd_kernel, args, kwargs, None)[0]
        arrays, scalar, shape = self._bind(self._fwd_kernel, args, kwargs)
        (value,) = self._fwd_kernel.run(arrays, shape)[:1]
        return float(value) if scalar else value


def compile(
    formula: Any,
    wrt: Sequence[str] | str | None = None,
    target: str | None = None,
    dtype: Any = "float64",
    passes: Sequence[str] | str | None = None,
    order: int = 1,
    inputs: Sequence[str] | None = None,
    unsafe: bool = False,
    shapes: Mapping[str, Any] | None = None,
    dtypes: Mapping[str, Any] | None = None,
) -> CompiledFunction:
    """Compile formula text, a SymPy expression, a Graph or a Program into a CompiledFunction.

    wrt: names to differentiate by (default: every input, in input order).
    target: a name from the target table (`graphc.targets()`): "llvm"
    (llvmlite, vector math, threads; the default), "cpu" (Numba, serial),
    "parallel" (Numba, all cores), "numpy" (the reference evaluator), "cuda"
    (numba-cuda). dtype: float64 or float32.
    passes: pipeline (default simplify, fuse, autodiff, simplify, cse, dce);
    `()` runs autodiff alone. order: 1 (gradient) or 2 (adds the Hessian).
    inputs: explicit input order (default: order of first appearance).
    unsafe: also apply rewrites that change results for inf/NaN (x*0 -> 0, ...).
    shapes: declared shapes, e.g. {"X": ("N", 3), "w": (3,), "b": ()}: the
    formula is then a tensor program (a schedule of fused loops and BLAS
    calls); gradients of its scalar value have their input's shape. dtypes:
    {"y": "int64"} for integer labels.
    A Program brings its own options: only `target` applies to it.
    """
    get_target(target)  # a bad target name fails before any work
    if isinstance(formula, Program):
        return CompiledFunction(formula, target)
    program = Program(formula, wrt=wrt, dtype=dtype, passes=passes, order=order, inputs=inputs, unsafe=unsafe,
                      shapes=dict(shapes) if shapes is not None else None, dtypes=dict(dtypes) if dtypes else None)
    return CompiledFunction(program, target)


def _any_dask(args: tuple, kwargs: Mapping[str, Any]) -> bool:
    return any(type(a).__module__.startswith("dask.") for a in (*args, *kwargs.values()))


# graphc.dask's entry points (`call`: a compiled function over Dask arrays), filled in when graphc.dask
# is imported (graphc's __init__ does): graphc.dask builds on the API and on tracing, so the API
# does not import it
DASK: dict[str, Any] = {}


def _over_dask(fn: CompiledFunction, args: tuple, kwargs: Mapping[str, Any], out: Any, options: Mapping[str, Any]):
    # lazy results: chunk by chunk, or row chunks of a separable loss
    return DASK["call"](fn, fn._values(args, kwargs), out, options)


_FUNCTIONS: dict[str, CompiledFunction] = {}  # loaded functions, the most recently loaded last
FUNCTIONS_KEPT = 16  # each holds its kernels and their pools: a worker keeps the last few, not every one


def _load_function(program: Program, target: str) -> CompiledFunction:
    if not isinstance(program, Program):
        raise GraphcError(f"a pickled graphc CompiledFunction holds a Program, got {type(program).__name__}")
    if not isinstance(target, str):
        raise GraphcError(f"a pickled graphc CompiledFunction has a bad target: expected a target name such as "
                          f"'llvm', got {type(target).__name__}")
    key = program.__dask_tokenize__() + ":" + target
    fn = _FUNCTIONS.pop(key, None)
    if fn is None:
        fn = CompiledFunction(program, target)
    _FUNCTIONS[key] = fn
    while len(_FUNCTIONS) > FUNCTIONS_KEPT:
        _FUNCTIONS.pop(next(iter(_FUNCTIONS)))
    return fn


def hessian(formula: Any, wrt: Sequence[str] | str | None = None, **kw: Any) -> Any:
    """compile(..., order=2): calls return (value, grads, hessian[x][y]). A Python
    function (traced, of one array) gets `trace.hessian_of`: calls return its full
    Hessian, as `jax.hessian`."""
    if callable(formula) and not isinstance(formula, (str, Graph, Program)) and not hasattr(formula, "free_symbols"):
        from .trace import hessian_of

        if wrt is not None or set(kw) - {"target"}:
            raise ArgumentError("graphc.hessian(f) of a Python function takes only target=")
        return hessian_of(formula, kw.get("target"))
    return compile(formula, wrt=wrt, order=2, **kw)


def targets() -> dict[str, str]:
    """Every compile target and its one-line summary (the target table)."""
    return {name: t.summary for name, t in TARGETS.items()}


__all__ = ["compile", "hessian", "targets", "CompiledFunction", "Program", "PassRecord", "grad_name"]
