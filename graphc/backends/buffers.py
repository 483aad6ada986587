"""Output buffers: one validator for every target's `out=`, host or device.

`out=` is a list in output order or a dict keyed by output name; each buffer
must be a writable C-contiguous array of the call's broadcast shape and the
kernel's dtype. Host targets accept NumPy arrays; the CUDA target accepts
device arrays (`__cuda_array_interface__`) or NumPy arrays. Backends call
`check_out`, never their own copy of these rules.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..describe import describe
from ..errors import ArgumentError


def as_buffer_list(out: Any, names: Sequence[str]) -> list[Any]:
    """`out=` as a list in output order (from a list, tuple or dict)."""
    n_out = len(names)
    if isinstance(out, Mapping):
        unknown = [k for k in out if k not in names]
        if unknown:
            raise ArgumentError(f"out= names {', '.join(map(repr, unknown))}, which are not outputs "
                                f"(outputs: {', '.join(names)})")
        missing = [k for k in names if k not in out]
        if missing:
            raise ArgumentError(f"out= lacks buffers for {', '.join(missing)}")
        return [out[k] for k in names]
    if not isinstance(out, (list, tuple)):
        raise ArgumentError(f"out= must be a list or dict of {n_out} arrays ({', '.join(names)}), "
                            f"got {describe(out)}")
    if len(out) != n_out:
        raise ArgumentError(f"out= needs {n_out} buffers ({', '.join(names)}), got {len(out)}")
    return list(out)


def _layout(o: Any) -> tuple[tuple, np.dtype, bool, bool] | None:
    """(shape, dtype, C-contiguous, writable) of a host or device array, else None."""
    if type(o) is np.ndarray:
        return o.shape, o.dtype, bool(o.flags.c_contiguous), bool(o.flags.writeable)
    cai = getattr(o, "__cuda_array_interface__", None)
    if cai is not None:
        shape, dtype = tuple(cai["shape"]), np.dtype(cai["typestr"])
        strides = cai.get("strides")
        contiguous = strides is None or tuple(strides) == _c_strides(shape, dtype.itemsize)
        return shape, dtype, contiguous, not cai["data"][1]
    if is_device(o):  # Numba's CUDA simulator array
        return tuple(o.shape), np.dtype(o.dtype), bool(o.is_c_contiguous()), True
    return None


def _c_strides(shape: tuple, itemsize: int) -> tuple:
    strides, step = [], itemsize
    for dim in reversed(shape):
        strides.append(step)
        step *= max(dim, 1)
    return tuple(reversed(strides))


def is_device(o: Any) -> bool:
    """A GPU array: anything with __cuda_array_interface__ (Numba, CuPy, PyTorch),
    or the CUDA simulator's stand-in."""
    return hasattr(o, "__cuda_array_interface__") or type(o).__name__ == "FakeCUDAArray"


def _extent(o: Any) -> tuple[int, int] | None:
    """[first byte, last byte) of a device array, from its interface."""
    cai = getattr(o, "__cuda_array_interface__", None)
    if cai is None:
        return None
    shape, itemsize = tuple(cai["shape"]), np.dtype(cai["typestr"]).itemsize
    if 0 in shape:
        return None
    strides = cai.get("strides") or _c_strides(shape, itemsize)
    ptr = cai["data"][0]
    lo = ptr + sum(s * (d - 1) for s, d in zip(strides, shape) if s < 0)
    hi = ptr + sum(s * (d - 1) for s, d in zip(strides, shape) if s > 0) + itemsize
    return lo, hi


def _overlap(a: Any, b: Any, extents: dict[int, Any]) -> bool:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return bool(np.may_share_memory(a, b))
    ea, eb = (extents[id(x)] if id(x) in extents else extents.setdefault(id(x), _extent(x)) for x in (a, b))
    return ea is not None and eb is not None and ea[0] < eb[1] and eb[0] < ea[1]


def refuse_overlap(bufs: Sequence[Any], names: Sequence[str], inputs: Sequence[Any] = (),
                   input_names: Sequence[str] = ()) -> None:
    """out= buffers may not overlap one another or any input: a kernel writes
    element i while it or another output may still read or write memory there,
    so the results would depend on the order of the loop. A device array's
    extent is read once (its interface is slow to build: 11 arrays, 45 pairs)."""
    extents: dict[int, Any] = {}
    for i, (name, b) in enumerate(zip(names, bufs)):
        for other, o in zip(names[:i], bufs[:i]):
            if o is b:
                raise ArgumentError(f"out= gives one buffer for both {other} and {name}")
            if _overlap(b, o, extents):
                raise ArgumentError(f"out= buffers for {other} and {name} overlap in memory")
        for arg, a in zip(input_names, inputs):
            if _overlap(b, a, extents):
                raise ArgumentError(f"out= buffer for {name} overlaps argument {arg!r}: outputs may not share "
                                    "memory with inputs (pass a separate buffer, or none)")


def check_out(out: Any, names: Sequence[str], shape: tuple | list[tuple], dtype: np.dtype, device: bool = False,
              inputs: Sequence[Any] = (), input_names: Sequence[str] = ()) -> list[Any]:
    """The caller's buffers as a list in output order, each validated (host
    NumPy arrays, or with device=True device arrays), none overlapping another
    or any of `inputs`. `shape` is every output's, or a list of one per output
    (a tensor program's)."""
    bufs = as_buffer_list(out, names)
    each = [tuple(s) for s in shape] if isinstance(shape, list) else [tuple(shape)] * len(names)
    kind = "device" if device else "NumPy"
    for name, o, shape in zip(names, bufs, each):
        lay = _layout(o)
        if lay is not None and is_device(o) != device:
            lay = None
        if lay is None or lay[0] != shape or lay[1] != dtype or not lay[2] or not lay[3]:
            got = f"{type(o).__name__}{getattr(o, 'shape', '')} {getattr(o, 'dtype', '')}".strip()
            raise ArgumentError(f"out= buffer for {name} must be a writable C-contiguous {dtype} array "
                                f"of shape {shape} ({kind}), got {got}")
    refuse_overlap(bufs, names, inputs, input_names)
    return bufs


def host_outputs(out: Any, names: Sequence[str], shape: tuple, dtype: np.dtype,
                 inputs: Sequence[Any] = (), input_names: Sequence[str] = ()) -> list[np.ndarray]:
    """Fresh output arrays in one allocation (each a contiguous row), or the
    caller's validated `out=` buffers."""
    if out is None:
        if not shape:
            return [np.empty((), dtype=dtype) for _ in names]
        return list(np.empty((len(names), *shape), dtype=dtype))
    return check_out(out, names, shape, dtype, inputs=inputs, input_names=input_names)


class OverlapMemo:
    """refuse_overlap, skipped when the very same arrays passed last time
    (buffers reused call after call; 45 may_share_memory calls cost ~35 us at
    N = 1,000). Weak references: a new array is never mistaken for a freed one."""

    def __init__(self, names: Sequence[str], input_names: Sequence[str]):
        self.names, self.input_names = names, input_names
        self._seen: tuple | None = None

    def check(self, outs: Sequence[np.ndarray], arrays: Sequence[np.ndarray]) -> None:
        seen = self._seen
        if seen is not None and len(seen) == len(outs) + len(arrays) and \
                all(r() is a for r, a in zip(seen, (*outs, *arrays))):
            return
        refuse_overlap(outs, self.names, arrays, self.input_names)
        try:
            self._seen = tuple(weakref.ref(a) for a in (*outs, *arrays))
        except TypeError:  # not weak-referenceable: check every time
            self._seen = None
