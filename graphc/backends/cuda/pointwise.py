"""CUDA backend (target "cuda", numba-cuda): the CPU backend's per-element code
(one op-registry template set) inside a grid-stride loop, one launch computing
the value and every gradient.

Inputs: NumPy arrays (copied to the device and results back), or any object
with `__cuda_array_interface__` (Numba device arrays, CuPy arrays, PyTorch CUDA
tensors), used in place; device arrays in give device arrays out. `out=`
device buffers and a `stream=` are accepted. Without a usable GPU, compiling
for this target raises CudaUnavailableError; `ptx()` still compiles PTX (it
needs the NVVM library of the `graphc[cuda]` extra, not a GPU).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ...errors import ArgumentError, BackendUnavailableError, GraphcError
from ...ir import DTYPE_NUMPY, Graph, print_graph
from ...schedule import plan
from ...schedule.regions import region_code
from ..buffers import as_buffer_list, check_out, is_device
from ..kernel import Kernel
from ..scalar import indent
from ..targets import Target

REMEDIES = (
    "install the extra (pip install 'graphc[cuda]') on a machine with an NVIDIA GPU and driver, "
    "use target='cpu' or 'parallel', or run under Numba's CUDA simulator "
    "(NUMBA_ENABLE_CUDASIM=1, set before numba is first imported)"
)


class CudaUnavailableError(BackendUnavailableError):
    """target='cuda' was asked for, but CUDA cannot be used on this machine."""


def _cuda():
    """numba.cuda, or CudaUnavailableError saying why and what to do."""
    try:
        from numba import cuda
    except Exception as exc:  # CudaSupportError is an ImportError; loaders raise RuntimeError
        raise CudaUnavailableError(f"CUDA is not usable here ({type(exc).__name__}: {exc}); {REMEDIES}") from None
    return cuda


def simulator() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


def require_gpu():
    cuda = _cuda()
    try:
        ok = cuda.is_available()
    except Exception as exc:
        raise CudaUnavailableError(f"CUDA is not usable here ({type(exc).__name__}: {exc}); {REMEDIES}") from None
    if not ok:
        raise CudaUnavailableError(f"no usable NVIDIA GPU or driver was found; {REMEDIES}")
    return cuda


def generate_source(graph: Graph, mask: Sequence[bool]) -> str:
    """Module source with `kernel` (grid-stride loop) and SIGNATURE: the rendering
    of the formula's one-region plan (`plan.pointwise`), its body and reads
    written by `region_code` as for a tensor program's kernels."""
    step = plan.pointwise(graph, mask)
    code = region_code(step.region, "cuda", [t is not None for t in step.scalars], boxed=True)
    dt = DTYPE_NUMPY[graph.dtype]
    arr = [f"a{k}" for k in range(len(step.ins))]
    outs = [o for o, _ in code.stores]
    src = [
        f"# graphc CUDA kernel: {dt}, inputs {', '.join(graph.input_names)}",
        f"# outputs: {', '.join(graph.output_names)}",
        "# generated from this IR:",
        *["# " + ln for ln in print_graph(graph).splitlines()],
        "import math",
        "",
        "import numpy as np",
        "from numba import cuda, types",
        "",
        f"F = np.{dt}",
        f'ARR = types.Array(types.{dt}, 1, "C")',
        f"SIGNATURE = (types.int64, {'ARR, ' * (len(arr) + len(outs))})",
        "",
        "",
        f"def kernel({', '.join(['n0', *arr, *outs])}):",
    ]
    lines = code.consts + code.scalar_loads
    lines += ["start = cuda.grid(1)", "stride = cuda.gridsize(1)", "for i0 in range(start, n0, stride):"]
    inner = code.loads + code.lines + [f"{o}[i0] = {v}" for o, v in code.stores]
    src += indent(lines, 4) + indent(inner, 8) + ["", ""]
    src += [
        "def compiled():",
        '    """The kernel compiled for SIGNATURE (no fastmath: NaN and inf stay IEEE)."""',
        "    return cuda.jit(SIGNATURE)(kernel)",
        "",
    ]
    return "\n".join(src)


def kernel_namespace(source: str, name: str) -> dict:
    ns: dict[str, Any] = {"__name__": name}
    exec(compile(source, f"<graphc cuda kernel {name}>", "exec"), ns)  # exec of generated source, verified IR
    return ns


def ptx(graph: Graph, cc: tuple[int, int] = (9, 0)) -> str:
    """PTX for the all-array kernel, compiled without a GPU."""
    cuda = _cuda()
    src = generate_source(graph, (True,) * len(graph.inputs))
    ns = kernel_namespace(src, "graphc_cuda_ptx")
    try:
        text, _ = cuda.compile_ptx(ns["kernel"], ns["SIGNATURE"], cc=cc)
    except Exception as exc:
        raise CudaUnavailableError(
            f"cannot compile PTX here ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
            "the graphc[cuda] extra provides NVVM"
        ) from None
    return text


class DeviceArg:
    """A device array during binding: its shape, without copying it to the host."""

    def __init__(self, array: Any, shape: tuple):
        self.array, self.shape = array, shape


def device_shape_dtype(a: Any) -> tuple[tuple, np.dtype]:
    if hasattr(a, "__cuda_array_interface__"):
        cai = a.__cuda_array_interface__
        return tuple(cai["shape"]), np.dtype(cai["typestr"])
    return tuple(a.shape), np.dtype(a.dtype)


def _as_device(cuda, a: Any):
    return a if hasattr(a, "copy_to_host") else cuda.as_cuda_array(a)


class CudaKernel(Kernel):
    """Runs a graph as one CUDA launch per call (scalars too: no scalar fast path)."""

    def __init__(self, graph: Graph):
        self.cuda = require_gpu()
        super().__init__(graph)
        self.n_in = len(graph.inputs)
        self._full = (True,) * self.n_in
        self.source = generate_source(graph, self._full)
        self._kernels: dict[tuple[bool, ...], Any] = {}
        self._launch: dict[int, tuple[int, int]] = {}

    def kernel(self, mask: tuple[bool, ...]):
        k = self._kernels.get(mask)
        if k is None:
            src = self.source if all(mask) else generate_source(self.graph, mask)
            k = self._kernels[mask] = kernel_namespace(src, "graphc_cuda")["compiled"]()
        return k

    def launch_config(self, kern, n: int) -> tuple[int, int]:
        """(blocks, threads): an occupancy-aware block size and a grid sized to
        the SM count; the grid-stride loop covers any n."""
        if simulator():
            return 1, min(32, max(1, n))  # the simulator runs each thread in Python
        cfg = self._launch.get(0)
        if cfg is None:
            dev = self.cuda.get_current_device()
            sms = dev.MULTIPROCESSOR_COUNT
            try:
                regs = max(1, int(kern.get_regs_per_thread()))
            except Exception:
                regs = 32
            threads_per_sm = min(2048, 65536 // regs)
            block = 256 if threads_per_sm >= 256 else max(32, threads_per_sm // 32 * 32)
            cfg = self._launch[0] = (sms * max(1, threads_per_sm // block), block)
        max_blocks, block = cfg
        return max(1, min(max_blocks, math.ceil(n / block))), block

    def convert(self, name: str, value: Any) -> Any:
        """Device arrays stay on the device (as a DeviceArg); anything else is a host array."""
        if is_device(value):
            dshape, ddtype = device_shape_dtype(value)
            if ddtype != self.np_dtype:
                raise ArgumentError(f"argument {name!r} is a device array of dtype {ddtype}; "
                                    f"the kernel is {self.np_dtype}")
            return DeviceArg(value, dshape)
        return super().convert(name, value)

    def run(self, arrays: Sequence[Any], shape: tuple, out=None, stream=0, **options) -> list:
        cuda = self.cuda
        arrays = [a.array if isinstance(a, DeviceArg) else a for a in arrays]
        on_device = any(is_device(a) for a in arrays)
        n = int(np.prod(shape)) if shape else 1
        dev_in, mask = [], []
        for a in arrays:
            if is_device(a):
                d = _as_device(cuda, a)
                if d.dtype != self.np_dtype:
                    raise ArgumentError(f"device array of dtype {d.dtype}, but the kernel is {self.np_dtype}")
                if not d.is_c_contiguous():
                    raise ArgumentError("device arrays must be C-contiguous")
                full = d.size != 1 or n == 1
                if full and tuple(d.shape) != tuple(shape):
                    raise ArgumentError(f"device array of shape {tuple(d.shape)} does not match {tuple(shape)} "
                                        "(on the device only equal shapes and size-1 arrays broadcast)")
                dev_in.append(d.reshape(d.size))
            else:
                h = np.asarray(a, dtype=self.np_dtype)
                full = h.size != 1 or n == 1
                h = np.ascontiguousarray(np.broadcast_to(h, shape) if full else h).reshape(-1)
                dev_in.append(cuda.to_device(h, stream=stream))
            mask.append(full)
        dev_out, host_out = self._outputs(out, shape, n, on_device, stream, arrays)
        if n:
            kern = self.kernel(tuple(mask))
            blocks, threads = self.launch_config(kern, n)
            kern[blocks, threads, stream](n, *dev_in, *(o.reshape(o.size) for o in dev_out))
        if host_out is None:
            if out is not None:  # the caller's device buffers themselves
                return as_buffer_list(out, self.output_names)
            return dev_out
        for d, h in zip(dev_out, host_out):
            flat = d.reshape(d.size)
            if h.flags.c_contiguous:
                flat.copy_to_host(h.reshape(-1), stream=stream)
            else:
                h[...] = flat.copy_to_host(stream=stream).reshape(h.shape)
        if stream:
            stream.synchronize()
        return host_out

    def _outputs(self, out, shape, n, on_device, stream, inputs=()):
        cuda = self.cuda
        if out is None:
            dev = [cuda.device_array(shape or (1,), dtype=self.np_dtype, stream=stream)
                   for _ in range(self.n_out)]
            if on_device:
                return dev, None
            return dev, [np.empty(shape, dtype=self.np_dtype) for _ in range(self.n_out)]
        bufs = as_buffer_list(out, self.output_names)
        if all(is_device(o) for o in bufs):
            check_out(bufs, self.output_names, shape, self.np_dtype, True, inputs, self.graph.input_names)
            return [_as_device(cuda, o) for o in bufs], None
        host = check_out(bufs, self.output_names, shape, self.np_dtype, False, inputs, self.graph.input_names)
        return [cuda.device_array(shape or (1,), dtype=self.np_dtype, stream=stream) for _ in host], host


def build(graph: Graph, target: Target) -> Kernel:
    return CudaKernel(graph)


def emit(graph: Graph, kind: str, target: Target, cc: str | tuple[int, int] = (9, 0), **opts) -> str:
    """"source": the kernel module; "ptx": PTX for compute capability `cc`
    ("9.0" or (9, 0)). Neither needs a GPU."""

    if kind == "ptx":
        return ptx(graph, parse_cc(cc))
    return generate_source(graph, (True,) * len(graph.inputs))


def parse_cc(cc: str | tuple[int, int]) -> tuple[int, int]:
    """A compute capability from "9.0" or (9, 0)."""
    if isinstance(cc, str):
        try:
            major, minor = (int(x) for x in cc.split("."))
        except ValueError:
            raise GraphcError(f"compute capability must be MAJOR.MINOR such as 9.0, got {cc!r}") from None
        return major, minor
    return cc
