"""CPython's and NumPy's object layouts as graphc's generated code reads them:
the one place that knows them, behind the one gate `abi()`.

The llvm target's compiled code reads Python objects directly: the METH_FASTCALL
entries (`llvm_python.py`) read float objects, tuples and 1-D arrays and build
arrays, tuples and dicts; the tensor loops (`llvm_tensor.py`) read each array
operand's data pointer, dimensions and strides. Every byte offset they use is
here, computed from the running interpreter where it can be (`__basicsize__`)
and otherwise from the documented struct layout, then checked once per process
against live objects (`abi()`: read with ctypes, compared with what Python and
NumPy say). Where the check fails -- another implementation, a debug or
free-threaded build, a NumPy with another PyArrayObject, a missing C API
symbol -- no generated code reads an object: the pointwise entries are not
made and the tensor steps run their NumPy forms.
"""

from __future__ import annotations

import ctypes
import functools
import sys

PTR = ctypes.sizeof(ctypes.c_void_p)  # a pointer, a Py_ssize_t, an npy_intp
HEAD = object.__basicsize__  # PyObject: ob_refcnt, ob_type
OB_TYPE = HEAD - PTR  # PyObject's ob_type: the header's last field
VAR_SIZE = HEAD  # PyVarObject's ob_size
FLOAT_VALUE = HEAD  # PyFloatObject's ob_fval
TUPLE_ITEMS = tuple.__basicsize__  # PyTupleObject's ob_item[0]; item k at TUPLE_ITEMS + k * PTR
# PyArrayObject after the header: data, nd (an int, padded), dimensions, strides, base, descr, flags
ARRAY_DATA, ARRAY_ND, ARRAY_DIMS, ARRAY_STRIDES, ARRAY_BASE, ARRAY_DESCR, ARRAY_FLAGS = (HEAD + k * PTR
                                                                                         for k in range(7))
C_CONTIGUOUS, ALIGNED, WRITEABLE = 0x1, 0x100, 0x400  # NPY_ARRAY_* flag bits
TYPE_NUM = {"f64": 12, "f32": 11}  # NPY_DOUBLE, NPY_FLOAT
NEW_ARRAY = 93  # PyArray_New's slot in NumPy's C API table (fixed by NumPy's ABI)
METH_FASTCALL = 0x80
# the C API the generated code calls (registered with LLVM's linker by name; PyArray_New as graphc_PyArray_New)
SYMBOLS = ("PyFloat_FromDouble", "PyTuple_New", "PyDict_New", "PyDict_SetItem", "PyLong_FromLong",
           "PyEval_SaveThread", "PyEval_RestoreThread", "Py_DecRef")


class MethodDef(ctypes.Structure):
    """CPython's PyMethodDef."""

    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p), ("ml_flags", ctypes.c_int),
                ("ml_doc", ctypes.c_char_p)]


def layout_key() -> str:
    """Every offset above, for cache keys of code that reads objects."""
    return repr((PTR, OB_TYPE, VAR_SIZE, FLOAT_VALUE, TUPLE_ITEMS, ARRAY_DATA, ARRAY_ND, ARRAY_DIMS,
                 ARRAY_STRIDES, ARRAY_DESCR, ARRAY_FLAGS, C_CONTIGUOUS, ALIGNED, WRITEABLE, TYPE_NUM, NEW_ARRAY))


def load(b, obj, offset, typ):
    """LLVM IR: the field of type `typ` at byte `offset` (an int or an i64 value) of
    the object at pointer `obj`."""
    import llvmlite.ir as ir

    off = ir.Constant(ir.IntType(64), offset) if isinstance(offset, int) else offset
    return b.load(b.gep(obj, [off], source_etype=ir.IntType(8)), typ=typ)


def array_fields(b, obj):
    """LLVM IR: an array object's data pointer, and pointers to its dimensions and strides."""
    import llvmlite.ir as ir

    ptr = ir.PointerType()
    return load(b, obj, ARRAY_DATA, ptr), load(b, obj, ARRAY_DIMS, ptr), load(b, obj, ARRAY_STRIDES, ptr)


def tuple_item(b, tup, k):
    """LLVM IR: the address of item `k` (an i64 value or an int) of a tuple."""
    import llvmlite.ir as ir

    i64 = ir.IntType(64)
    items = b.gep(tup, [ir.Constant(i64, TUPLE_ITEMS)], source_etype=ir.IntType(8))
    return b.gep(items, [ir.Constant(i64, k) if isinstance(k, int) else k], source_etype=ir.PointerType())


@functools.cache
def abi() -> bool:
    """Whether this process's objects are laid out as the constants above say, and
    the C API the entries call is there: checked once, on live objects."""
    return _check()


def symbols() -> dict[str, int]:
    """The C API's addresses by the names the generated code calls (valid where `abi()`)."""
    return dict(_SYMBOLS)


_SYMBOLS: dict[str, int] = {}


def _check() -> bool:
    if sys.implementation.name != "cpython":
        return False
    import numpy as np

    a, x, pair = np.zeros((2, 3)), float(np.pi), ("df/da", "df/db")

    def at(obj, off: int, typ):
        return typ.from_address(id(obj) + off).value

    try:
        dims = ctypes.cast(at(a, ARRAY_DIMS, ctypes.c_void_p), ctypes.POINTER(ctypes.c_int64))
        steps = ctypes.cast(at(a, ARRAY_STRIDES, ctypes.c_void_p), ctypes.POINTER(ctypes.c_int64))
        view = a[1:]
        all3 = C_CONTIGUOUS | ALIGNED | WRITEABLE
        ok = (PTR == 8 and at(a, OB_TYPE, ctypes.c_void_p) == id(np.ndarray)
              and at(a, ARRAY_DATA, ctypes.c_void_p) == a.ctypes.data
              and at(a, ARRAY_ND, ctypes.c_int) == 2 and (dims[0], dims[1]) == (2, 3)
              and (steps[0], steps[1]) == (24, 8)
              and at(view, ARRAY_BASE, ctypes.c_void_p) == id(a)
              and at(a, ARRAY_DESCR, ctypes.c_void_p) == id(a.dtype)
              and at(a, ARRAY_FLAGS, ctypes.c_int) & all3 == all3
              and not at(a.T, ARRAY_FLAGS, ctypes.c_int) & C_CONTIGUOUS
              and (np.dtype(np.float64).num, np.dtype(np.float32).num) == (TYPE_NUM["f64"], TYPE_NUM["f32"])
              and at(x, FLOAT_VALUE, ctypes.c_double) == x and at(x, OB_TYPE, ctypes.c_void_p) == id(float)
              and at(pair, TUPLE_ITEMS + PTR, ctypes.c_void_p) == id(pair[1])
              and at(pair, VAR_SIZE, ctypes.c_ssize_t) == 2
              and ctypes.sizeof(MethodDef) == 4 * PTR)
        found = {name: ctypes.cast(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value for name in SYMBOLS}
        new = _numpy_new()
        made = new(id(np.ndarray), 1, (ctypes.c_int64 * 1)(5), TYPE_NUM["f32"], None, None, 0, 0, None)
        ok = ok and type(made) is np.ndarray and made.shape == (5,) and made.dtype == np.float32 \
            and made.flags.c_contiguous and made.flags.writeable and made.flags.owndata
        found["graphc_PyArray_New"] = ctypes.cast(new, ctypes.c_void_p).value
    except (AttributeError, ValueError, OSError, TypeError):
        return False
    if ok:
        _SYMBOLS.update(found)
    return bool(ok)


def _numpy_new():
    """PyArray_New from NumPy's C API table (the capsule every C extension imports)."""
    import numpy as np

    try:
        capsule = np._core._multiarray_umath._ARRAY_API
    except AttributeError:  # NumPy 1.x
        capsule = np.core.multiarray._ARRAY_API
    table = capsule_pointer(capsule)
    fp = ctypes.c_void_p.from_address(table + NEW_ARRAY * PTR).value
    return ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int64),
                             ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                             ctypes.c_void_p)(fp)


def capsule_pointer(capsule: object) -> int:
    """The C pointer a PyCapsule holds (NumPy's API table, SciPy's BLAS functions), or 0."""
    name = ctypes.PYFUNCTYPE(ctypes.c_char_p, ctypes.py_object)(("PyCapsule_GetName", ctypes.pythonapi))
    get = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.py_object, ctypes.c_char_p)(
        ("PyCapsule_GetPointer", ctypes.pythonapi))
    return get(capsule, name(capsule)) or 0
