"""The "cuda" target's entry: per-element formulas go to `numba_cuda` (one
grid-stride kernel), tensor programs to `tensor_cuda` (the CPU schedule's steps
as GPU kernels). Kept apart so neither backend module imports the other's."""

from __future__ import annotations

from ...ir import Graph
from ..kernel import Kernel, is_tensor_graph
from ..targets import Target


def build(graph: Graph, target: Target) -> Kernel:
    if is_tensor_graph(graph):
        from .tensor import TensorCudaKernel

        return TensorCudaKernel(graph)
    from .pointwise import build as pointwise

    return pointwise(graph, target)


def emit(graph: Graph, kind: str, target: Target, cc: str | tuple[int, int] = (9, 0), **opts) -> str:
    """"source": the kernel module (a tensor program: its schedule and kernels);
    "ptx": PTX for compute capability `cc` ("9.0" or (9, 0)). Neither needs a GPU."""
    from . import pointwise as numba_cuda

    if not is_tensor_graph(graph):
        return numba_cuda.emit(graph, kind, target, cc=cc, **opts)
    from . import tensor as tensor_cuda

    if kind == "ptx":
        return tensor_cuda.ptx(graph, numba_cuda.parse_cc(cc))
    return tensor_cuda.TensorCudaKernel(graph, device=False).source
