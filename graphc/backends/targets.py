"""The target table: the one place that names graphc's compile targets.

Each row names a backend module (which provides `build` and `emit`, see
`kernel.py`), a one-line summary (shown by `--help`, error messages and the
README), the lower forms `graphc emit` can print, and options passed to the
backend. The API, the CLI and the docs read this table; adding a backend is
one module plus one `register_target` call.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, ModuleType
from typing import Any

import numpy as np

from ..errors import GraphcError
from ..ir import Graph
from .kernel import Kernel


@dataclass(frozen=True)
class Target:
    name: str
    module: str  # import path of the backend module
    summary: str
    emits: tuple[str, ...] = ()  # "source", "llvm", "ptx", "asm": what `graphc emit` can print
    options: Mapping[str, Any] = field(default_factory=dict)  # passed to the backend via the Target
    call_options: tuple[str, ...] = ()  # keyword options of a call besides out= (cuda: stream=)
    tensors: bool = False  # runs tensor programs (shapes, reductions, matmul, masks)
    device: bool = False  # runs on a GPU: host-only tests reach it through a simulator, not directly

    def backend(self) -> ModuleType:
        return importlib.import_module(self.module)


_TARGETS: dict[str, Target] = {}
TARGETS: Mapping[str, Target] = MappingProxyType(_TARGETS)
# Elements per call from which a CPU pointwise kernel splits its loop over threads (llvm's
# thread pool, Numba's prange on "parallel"); below it one thread. Measured in
# benchmarks/RESULTS-threads.md. One cell that every backend reads per call (llvm's C
# entries through its address), set with `set_parallel_min`.
_PARALLEL_MIN = np.array([1 << 17], dtype=np.int64)


def parallel_min() -> int:
    return int(_PARALLEL_MIN[0])


def set_parallel_min(n: int) -> int:
    """Set the threading threshold for every CPU backend; returns the old one."""
    old = int(_PARALLEL_MIN[0])
    _PARALLEL_MIN[0] = max(1, int(n))
    return old


def parallel_min_cell() -> int:
    """The cell's address, for generated code that reads the threshold itself."""
    return _PARALLEL_MIN.ctypes.data

DEFAULT_TARGET = "llvm"  # by measurement: benchmarks/README.md, "Which target is the default, and why"


def register_target(target: Target) -> Target:
    """Add a row (a backend defined elsewhere, e.g. in a test or a plug-in)."""
    if target.name in _TARGETS:
        raise GraphcError(f"target {target.name!r} is already registered")
    _TARGETS[target.name] = target
    return target


def unregister_target(name: str) -> None:
    _TARGETS.pop(name, None)


def get_target(name: str | None) -> Target:
    name = DEFAULT_TARGET if name is None else name
    t = _TARGETS.get(name) if isinstance(name, str) else None
    if t is None:
        raise GraphcError(f"unknown target {name!r}; targets: {', '.join(_TARGETS)}")
    return t


def build(graph: Graph, target: str | Target | None) -> Kernel:
    """Compile `graph` for a target (a name or a Target)."""
    t = target if isinstance(target, Target) else get_target(target)
    _supported(graph, t)
    return t.backend().build(graph, t)


def _supported(graph: Graph, t: Target) -> None:
    """A per-element backend takes pointwise float graphs only: say so, naming the op."""
    if t.tensors:
        return
    from ..errors import UnsupportedError
    from ..registry import REGISTRY

    odd = next((n for n in graph.body if n.op != "const" and (not REGISTRY[n.op].per_element or n.shape)), None)
    odd = odd or next((n for n in graph.inputs if n.shape or not n.type.is_float), None)
    if odd is not None:
        what = f"input {odd.attr} : {odd.type}" if odd.op == "input" else f"{odd.op} : {odd.type}"
        ok = ", ".join(repr(n) for n, r in _TARGETS.items() if r.tensors)
        raise UnsupportedError(f"target {t.name!r} compiles per-element float kernels; this graph is a tensor "
                               f"program ({what}): use target={ok}")


def emit(graph: Graph, target: str | Target | None, kind: str = "source", **opts: Any) -> str:
    """A lower form of the kernel for `graph` as text: "source", "llvm" or "ptx"."""
    t = target if isinstance(target, Target) else get_target(target)
    _supported(graph, t)
    if kind not in t.emits:
        can = [f"{n} ({', '.join(r.emits)})" for n, r in _TARGETS.items() if r.emits]
        what = f"emits {', '.join(t.emits)}" if t.emits else "generates no kernel"
        raise GraphcError(f"target {t.name!r} {what}, not {kind!r}; targets that emit: {'; '.join(can)}")
    return t.backend().emit(graph, kind, t, **opts)


def describe() -> str:
    """The table as text: one line per target (for --help)."""
    return "; ".join(f"{t.name}: {t.summary}" for t in _TARGETS.values())


for _t in (
    Target("cpu", "graphc.backends.numba.pointwise", "one fused Numba loop, serial",
           emits=("source", "llvm"), options={"parallel": False}, tensors=True),
    Target("parallel", "graphc.backends.numba.pointwise", "the same loop with prange over all cores",
           emits=("source", "llvm"), options={"parallel": True}, tensors=True),
    Target("numpy", "graphc.backends.numpy_ref", "the NumPy reference evaluator (also tensor programs)",
           tensors=True),
    Target("llvm", "graphc.backends.llvm.target", "llvmlite, no Numba: vector math (libmvec), compiles in "
           "milliseconds, threads above 131,072 elements (the default for formulas); tensor programs: the cpu "
           "schedule with llvmlite loops", emits=("source", "llvm", "asm"), tensors=True),
    Target("cuda", "graphc.backends.cuda.target", "a numba-cuda grid-stride kernel (pip install 'graphc[cuda]')",
           emits=("source", "ptx"), call_options=("stream",), tensors=True, device=True),
):
    register_target(_t)
