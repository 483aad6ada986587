"""The backend contract.

A backend is one module with two functions:

    build(graph, target) -> Kernel        compile a value+gradient graph
    emit(graph, kind, target, **opts)     a lower form as text ("source", "llvm", "ptx"),
                                          without needing the device to run it

plus one row in `targets.py`. A `Kernel` converts arguments (`convert`: host
arrays by default; the CUDA kernel keeps device arrays on the device), runs
the graph over the broadcast shape (`run`, with the shared `out=` validator of
`buffers.py`), and may offer faster paths for all-float calls (`run_scalar`,
`fast_scalar`) and same-shape contiguous arrays (`run_contiguous`).
`CompiledFunction` only binds names, calls these, and packs results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import ArgumentError
from ..ir import DTYPE_NUMPY, Graph


class Kernel:
    """A compiled graph for one target. Subclasses implement `run`."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.np_dtype = np.dtype(DTYPE_NUMPY[graph.dtype])
        self.output_names: tuple[str, ...] = graph.output_names
        self.n_out = len(graph.outputs)
        self.source: str | None = None  # generated code shown to users, if any
        #: f(*floats) -> tuple of floats, once a compiled scalar path exists (set by the kernel)
        self.fast_scalar: Callable[..., tuple] | None = None

    def convert(self, name: str, value: Any) -> Any:
        """One argument as an array of the kernel's dtype (anything with .shape)."""
        try:
            a = np.asarray(value)
        except Exception as exc:  # e.g. ragged nested lists
            raise ArgumentError(f"argument {name!r} is not a numeric array: {exc}") from None
        if a.dtype.kind not in "biuf":
            raise ArgumentError(f"argument {name!r} is not real-valued numeric data (got dtype {a.dtype})")
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes +-inf, silently (README)
            return a.astype(self.np_dtype, copy=False)

    def run(self, arrays: Sequence[Any], shape: tuple, out: Any = None, **options: Any) -> list:
        """Every output over the broadcast `shape`, in output order."""
        raise NotImplementedError

    def run_tensor(self, arrays: Sequence[Any], dims: dict[str, int], out: list | None = None) -> list:
        """Every output of a tensor program (arguments already bound and checked;
        `out`, when given, the caller's validated buffers, filled and returned).
        A per-element kernel runs one whose values are all scalars (a traced
        function of floats)."""
        if all(np.ndim(a) == 0 for a in arrays):
            return fill_out([np.asarray(o) for o in self.run([np.asarray(a, dtype=self.np_dtype) for a in arrays], ())],
                            out)
        from ..errors import UnsupportedError

        raise UnsupportedError("this target does not run tensor programs: use target='numpy'")

    def run_scalar(self, *args: float) -> tuple[float, ...]:
        """Every output at one point (Python floats in and out)."""
        return tuple(float(o) for o in self.run([self.np_dtype.type(a) for a in args], ()))

    def python_entries(self, names: Sequence[str]) -> tuple:
        """Compiled callables `(scalar, arrays)` that return `(value, {name: gradient})`
        for all-float and 1-D array arguments, and the int 1 for arguments they do
        not take (the API then takes its general path); None each where a backend
        has none (the llvm backend has them)."""
        return None, None

    def run_contiguous(self, arrays: Sequence[np.ndarray], out: Any = None) -> list | None:
        """Fast path for same-length 1-D arrays of the kernel's dtype; None = not taken."""
        return None


def is_tensor_graph(graph: Graph) -> bool:
    """Whether a graph is a tensor program (shapes, non-elementwise ops or
    non-float inputs) rather than a per-element formula."""
    from ..registry import REGISTRY

    return graph.is_tensor or any(n.op != "const" and not REGISTRY[n.op].per_element for n in graph.body) or \
        any(not n.type.is_float for n in graph.inputs)


def fill_out(results: list, out: list | None) -> list:
    """Results copied into the caller's buffers, when there are any (those returned instead)."""
    if out is None:
        return results
    for r, b in zip(results, out):
        np.copyto(b, r)
    return list(out)
