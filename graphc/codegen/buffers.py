"""Output buffers on the host, shared by the numpy and Numba CPU targets: fresh
ones in one allocation, or the caller's `out=` buffers, validated."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ArgumentError


def host_outputs(out: Any, names: Sequence[str], shape: tuple, dtype: np.dtype) -> list[np.ndarray]:
    n_out = len(names)
    if out is None:  # one allocation; each output is a contiguous row of it
        if not shape:
            return [np.empty((), dtype=dtype) for _ in range(n_out)]
        return list(np.empty((n_out, *shape), dtype=dtype))
    if isinstance(out, dict):
        missing = [k for k in names if k not in out]
        if missing:
            raise ArgumentError(f"out= lacks buffers for {', '.join(missing)}")
        out = [out[k] for k in names]
    out = list(out)
    if len(out) != n_out:
        raise ArgumentError(f"out= needs {n_out} buffers ({', '.join(names)}), got {len(out)}")
    shape = tuple(shape)
    for name, o in zip(names, out):
        if type(o) is not np.ndarray or o.dtype != dtype or o.shape != shape \
                or not (o.flags.c_contiguous and o.flags.writeable):
            got = f"{type(o).__name__}{getattr(o, 'shape', '')} {getattr(o, 'dtype', '')}"
            raise ArgumentError(
                f"out= buffer for {name} must be a writable C-contiguous {dtype} array of shape {shape}, got {got}"
            )
    return out
