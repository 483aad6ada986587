"""The pipeline object: a formula on its way to code.

`Program(source, ...)` parses formula text, a SymPy expression or a Graph into
the forward graph, runs the pass pipeline, and keeps what every stage made:
the forward graph, the optimised value+gradient graph, each pass's record,
the options, and the input and output names. It compiles nothing: the API's
`CompiledFunction` hands `program.graph` to a backend, and the CLI prints
from it, both through these public attributes only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import GraphcError
from .frontend import parse
from .ir import DTYPE_NUMPY, Graph, canonical_dtype, print_graph
from .passes.autodiff import resolve_wrt
from .passes.manager import (
    FORWARD_PIPELINE,
    PassContext,
    PassRecord,
    format_print_after_all,
    format_stats,
    normalize_pipeline,
    run_pipeline,
)


class Program:
    """formula -> forward Graph -> optimised Graph, with pass records.

    wrt: names to differentiate by (default: every input). dtype: float64 or
    float32. passes: the pipeline (default simplify, fuse, autodiff, simplify,
    cse, dce; `()` runs autodiff alone). order: 1 (gradient) or 2 (adds the
    Hessian). inputs: explicit input order. unsafe: also apply rewrites that
    change results for inf/NaN. grad=False: the optimised forward graph only.
    shapes / dtypes: declared shapes ({"X": ("N", 3), "b": ()}) and integer
    inputs ({"y": "int64"}) make the formula a tensor program.
    """

    def __init__(self, source: Any, *, wrt: Sequence[str] | str | None = None, dtype: Any = "float64",
                 passes: Sequence[str] | str | None = None, order: int = 1,
                 inputs: Sequence[str] | None = None, unsafe: bool = False, grad: bool = True,
                 shapes: dict | None = None, dtypes: dict | None = None):
        if order not in (1, 2):
            raise GraphcError(f"order={order!r}: graphc offers order 1 (gradient) and 2 (Hessian)")
        dt = canonical_dtype(dtype)
        self.forward: Graph = parse(source, dtype=dt, inputs=tuple(inputs) if inputs is not None else None,
                                    shapes=shapes, dtypes=dtypes)
        #: a tensor program (declared shapes, reductions, matmul...): gradients have their input's shape
        self.tensor: bool = shapes is not None or bool(dtypes) or self.forward.is_tensor
        if self.tensor and order == 2 and grad:
            raise GraphcError("order=2 (Hessian) is not offered for tensor programs yet")
        if self.forward.dtype != dt:
            raise GraphcError(f"the graph is {self.forward.dtype} but dtype={dtype!r} was asked for")
        self.source = source
        self.dtype: str = DTYPE_NUMPY[dt]
        self.order = order if grad else 0
        self.unsafe = unsafe
        self.wrt: tuple[str, ...] = tuple(n.attr for n in resolve_wrt(self.forward, wrt)) if grad else ()
        self.passes: tuple[str, ...] = normalize_pipeline(passes, grad=grad)
        ctx = PassContext(wrt=self.wrt, order=max(order, 1), unsafe=unsafe)
        self.graph, self.records = run_pipeline(self.forward, self.passes, ctx, keep_ir=True)
        self._optimised_forward: Graph | None = None if grad else self.graph

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.forward.input_names

    @property
    def outputs(self) -> tuple[str, ...]:
        return self.graph.output_names

    @property
    def ir(self) -> str:
        """The optimised graph as IR text."""
        return print_graph(self.graph)

    def optimised_forward(self) -> Graph:
        """The forward graph through the same pipeline without autodiff (for
        value-only kernels and the cheap-gradient ratio)."""
        if self._optimised_forward is None:
            fwd_passes = [p for p in self.passes if p != "autodiff"] or list(FORWARD_PIPELINE)
            self._optimised_forward, _ = run_pipeline(self.forward, fwd_passes, PassContext(unsafe=self.unsafe))
        return self._optimised_forward

    def stats(self) -> str:
        """The per-pass table: ops in and out, time, rules fired."""
        forward_ops = self.optimised_forward().op_count() if self.order else None
        return format_stats(self.records, forward_ops=forward_ops)

    def print_after_all(self) -> str:
        """The IR before any pass and after every pass (LLVM's -print-after-all)."""
        return format_print_after_all(self.records, self.forward)

    def explain(self) -> str:
        """The IR before and after every pass, then the per-pass table."""
        return self.print_after_all() + "\n\n" + self.stats()

    def dot(self, at: dict | None = None, optimised: bool = False) -> str:
        """Graphviz DOT of the forward graph (or the optimised one); with `at`
        (input -> value), every node shows its value and every wire the value it
        carries and the gradient flowing back (the seed's pictures)."""
        from .ir import to_dot
        from .picture import annotated_dot

        graph = self.graph if optimised else self.forward
        return to_dot(graph) if at is None else annotated_dot(self.forward, at)

    def _repr_svg_(self) -> str | None:  # Jupyter: the forward graph as a picture, when Graphviz is installed
        from .picture import svg_or_none

        return svg_or_none(self.dot())

    # ------------------------------------------------------------- pickling
    def _options(self) -> dict[str, Any]:
        return dict(wrt=list(self.wrt), dtype=self.dtype, passes=list(self.passes), order=max(self.order, 1),
                    unsafe=self.unsafe, grad=bool(self.order), shapes={} if self.tensor else None)

    def __reduce__(self):
        """Pickled as data: the forward graph's IR text and the options. Loading
        parses and verifies the text and reruns the passes (a tampered payload is
        an IR error, never code); kernels then come from the disk cache."""
        return (_load_program, (print_graph(self.forward), self._options()))

    def __dask_tokenize__(self) -> str:
        return token(print_graph(self.forward), self._options())

    def __repr__(self) -> str:
        return (f"<graphc.Program inputs={self.inputs} wrt={self.wrt} dtype={self.dtype} "
                f"passes={','.join(self.passes)} ops={self.graph.op_count()}>")


__all__ = ["Program", "PassRecord"]


def token(text: str, options: dict[str, Any], *extra: str) -> str:
    """A content hash of IR text and options (Dask's task keys, load memos)."""
    import hashlib
    import json

    blob = json.dumps([text, options, *extra], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


_LOADED: dict[str, Program] = {}  # a worker loading one function for many tasks parses it once; newest last
PROGRAMS_KEPT = 64  # bounded: a long-lived worker that meets many programs keeps the last few


def _names(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)


#: each pickled option: (is it well formed?, what it should be) -- a tampered payload names the bad field
_OPTION_CHECKS: dict[str, tuple[Any, str]] = {
    "wrt": (lambda v: v is None or _names(v), "a list of input names"),
    "dtype": (lambda v: isinstance(v, str), "a dtype name such as 'float64'"),
    "passes": (lambda v: v is None or _names(v), "a list of pass names"),
    "order": (lambda v: type(v) is int, "the integer 1 or 2"),
    "unsafe": (lambda v: isinstance(v, bool), "True or False"),
    "grad": (lambda v: isinstance(v, bool), "True or False"),
    "shapes": (lambda v: v is None or (isinstance(v, dict) and not v), "None, or {} for a tensor program"),
}


def _check_payload(text: Any, options: Any) -> None:
    """A pickled Program's (text, options) as __reduce__ writes them, or a
    GraphcError naming the field that is not."""
    import reprlib

    if not isinstance(text, str):
        raise GraphcError(f"a pickled graphc Program holds IR text, got {type(text).__name__}")
    if not isinstance(options, dict):
        raise GraphcError(f"a pickled graphc Program holds an options dict, got {type(options).__name__}")
    for key, value in options.items():
        if key not in _OPTION_CHECKS:
            raise GraphcError(f"a pickled graphc Program has an unknown option {reprlib.repr(key)} "
                              f"(options: {', '.join(_OPTION_CHECKS)})")
        ok, what = _OPTION_CHECKS[key]
        if not ok(value):
            raise GraphcError(f"a pickled graphc Program has a bad option {key!r}: expected {what}, "
                              f"got {reprlib.repr(value)}")


def _load_program(text: str, options: dict[str, Any]) -> Program:
    from .ir import parse_graph, verify

    _check_payload(text, options)
    key = token(text, options)
    prog = _LOADED.pop(key, None)
    if prog is None:
        graph = parse_graph(text)
        verify(graph)
        prog = Program(graph, **options)
    _LOADED[key] = prog
    while len(_LOADED) > PROGRAMS_KEPT:
        _LOADED.pop(next(iter(_LOADED)))
    return prog
