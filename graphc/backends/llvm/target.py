"""The "llvm" target's entry: per-element formulas go to `llvm_cpu` (one vector
loop), tensor programs to `llvm_tensor` (the CPU schedule with llvmlite loops).
Kept apart so neither backend module imports the other's."""

from __future__ import annotations

from ...ir import Graph
from ..kernel import Kernel, is_tensor_graph
from ..targets import Target


def build(graph: Graph, target: Target) -> Kernel:
    if is_tensor_graph(graph):
        from .tensor import LlvmTensorKernel

        return LlvmTensorKernel(graph, target.name, False)
    from .pointwise import LlvmKernel

    return LlvmKernel(graph, target.name, True)


def emit(graph: Graph, kind: str, target: Target, **opts) -> str:
    """"source": the LLVM IR as generated (graphc's own output); "llvm": after
    LLVM's O3 pipeline (what is compiled); "asm": the host assembly. A tensor
    program: its schedule, then each fused step's LLVM IR (every kind)."""
    kernel = build(graph, target)
    if is_tensor_graph(graph):
        return kernel.source or ""
    if kind == "asm":
        return kernel.assembly()
    if kind == "llvm":
        return kernel.optimised_ir()
    return kernel.ir
