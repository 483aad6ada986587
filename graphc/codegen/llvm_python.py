"""Python-callable entry points for llvm kernels, with no ctypes per call.

A ctypes call costs ~1 µs plus ~0.3 µs per argument, and finding an array's
data pointer from Python another ~1 µs each: most of a small call. So graphc
compiles, once per dtype (cached like any kernel), two C functions with
CPython's METH_FASTCALL signature, `PyObject *f(PyObject *self, PyObject
*const *args, Py_ssize_t n)`, and makes a builtin function of them per kernel
(`PyCFunction_NewEx`) whose `self` is `(info, names)`: an int64 array holding
the kernel's address, its numbers of inputs and outputs and the threading
limit, and the gradient names. No code is compiled per kernel.

- `pyscalar(x0, x1, ...)`: exact Python floats in (read from the float
  objects), the kernel run on one point, `(value, {name: gradient})` out;
- `pyarrays(a0, a1, ...)`: NumPy arrays in, read through the array object's own
  fields (data, nd, dimensions, strides, descr, flags); new output arrays
  (NumPy's PyArray_New), `(value, {name: gradient})` out; `pyarrays(a0, ...,
  o0, o1, ...)` writes into given outputs instead and returns 0 (the caller
  allocates outputs past ALLOC_MAX bytes). The GIL is released from GIL_MIN
  elements.

Each returns the int 1, having done nothing, for arguments it does not take:
not all exact floats; an array that is not a 1-D aligned ndarray of the
kernel's exact dtype (its canonical descr) with unit stride, all of one length
n below the threading limit; an output that is not C-contiguous and writable;
more than MAX_ARGS arguments. The caller then takes its general path.

The layout of PyObject, PyFloatObject, PyTupleObject and PyArrayObject is
checked against the running interpreter once (`abi()`); where it differs, or
a symbol is missing, no entry is made and calls take the ctypes path.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from .llvm_ir import count_loop

OB_TYPE = object.__basicsize__ - 8  # PyObject's ob_type: the header's last field
ARRAY = object.__basicsize__  # PyArrayObject: data, nd, dimensions, strides, base, descr, flags after the header
DATA, ND, DIMS, STRIDES, DESCR, FLAGS = (ARRAY + k for k in (0, 8, 16, 24, 40, 48))
C_CONTIGUOUS, ALIGNED, WRITEABLE = 0x1, 0x100, 0x400
GIL_MIN = 4096  # elements from which an array call releases the GIL (other threads run meanwhile)
MAX_ARGS = 2048  # inputs + outputs; a kernel with more takes the ctypes path (pointer arrays on the stack)
# bytes per output up to which pyarrays allocates its outputs itself (below glibc's mmap threshold):
# past it, six fresh mmapped outputs fault in every page each call (N = 100,000: 4.3 ms against
# 0.7 ms into one reused block), so the caller allocates one block and passes its rows
ALLOC_MAX = 126976  # 124 KiB per output, below glibc's default 128 KiB mmap threshold
SYMBOLS = ("PyFloat_FromDouble", "PyTuple_New", "PyTuple_SetItem", "PyDict_New", "PyDict_SetItem",
           "PyLong_FromLong", "PyEval_SaveThread", "PyEval_RestoreThread", "Py_DecRef")
FLOAT_VALUE = object.__basicsize__  # PyFloatObject's double
TUPLE_ITEMS = tuple.__basicsize__  # PyTupleObject's first item
VAR_SIZE = object.__basicsize__  # PyVarObject's ob_size
NEW_ARRAY = 93  # PyArray_New's slot in NumPy's C API table (fixed by NumPy's ABI)
METH_FASTCALL = 0x80


def abi(llvm) -> bool:
    """Whether the object layouts are as this module reads them (checked on a live
    array), and the C API symbols are there; registers them with LLVM's linker."""
    import sys

    if sys.implementation.name != "cpython":
        return False
    a, x, pair = np.zeros((2, 3)), float(np.pi), ("df/da", "df/db")

    def at(off: int, typ) -> Any:
        return typ.from_address(id(a) + off).value

    try:
        dims = ctypes.cast(at(DIMS, ctypes.c_void_p), ctypes.POINTER(ctypes.c_int64))
        steps = ctypes.cast(at(STRIDES, ctypes.c_void_p), ctypes.POINTER(ctypes.c_int64))
        ok = (at(OB_TYPE, ctypes.c_void_p) == id(np.ndarray) and at(DATA, ctypes.c_void_p) == a.ctypes.data
              and at(ND, ctypes.c_int) == 2 and (dims[0], dims[1]) == (2, 3) and (steps[0], steps[1]) == (24, 8)
              and at(DESCR, ctypes.c_void_p) == id(a.dtype)
              and at(FLAGS, ctypes.c_int) & (C_CONTIGUOUS | ALIGNED | WRITEABLE) == C_CONTIGUOUS | ALIGNED | WRITEABLE
              and not ctypes.c_int.from_address(id(a.T) + FLAGS).value & C_CONTIGUOUS
              and ctypes.c_double.from_address(id(x) + FLOAT_VALUE).value == x
              and ctypes.c_void_p.from_address(id(pair) + TUPLE_ITEMS + 8).value == id(pair[1])
              and ctypes.c_ssize_t.from_address(id(pair) + VAR_SIZE).value == 2
              and ctypes.c_void_p.from_address(id(x) + OB_TYPE).value == id(float))
        for name in SYMBOLS:
            llvm.add_symbol(name, ctypes.cast(getattr(ctypes.pythonapi, name), ctypes.c_void_p).value)
        new = _numpy_new()
        made = new(id(np.ndarray), 1, (ctypes.c_int64 * 1)(5), 11, None, None, 0, 0, None)
        ok = ok and type(made) is np.ndarray and made.shape == (5,) and made.dtype == np.float32 \
            and made.flags.c_contiguous and made.flags.writeable
        llvm.add_symbol("graphc_PyArray_New", ctypes.cast(new, ctypes.c_void_p).value)
    except (AttributeError, ValueError, OSError, TypeError):
        return False
    return bool(ok)


def _numpy_new():
    """PyArray_New from NumPy's C API table (the capsule every C extension imports)."""
    try:
        capsule = np._core._multiarray_umath._ARRAY_API
    except AttributeError:  # NumPy 1.x
        capsule = np.core.multiarray._ARRAY_API
    name = ctypes.pythonapi.PyCapsule_GetName
    name.restype, name.argtypes = ctypes.c_char_p, [ctypes.py_object]
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]
    table = get(capsule, name(capsule))
    fp = ctypes.c_void_p.from_address(table + NEW_ARRAY * ctypes.sizeof(ctypes.c_void_p)).value
    return ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int64),
                             ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                             ctypes.c_void_p)(fp)


def entry_module(dtype: str, triple: str) -> str:
    """The LLVM IR of `graphc_pyscalar_<dtype>` and `graphc_pyarrays_<dtype>`."""
    import llvmlite.ir as ir

    mod = ir.Module(name=f"graphc_entries_{dtype}")
    mod.triple = triple
    i64, i32, ptr, i8, i1 = ir.IntType(64), ir.IntType(32), ir.PointerType(), ir.IntType(8), ir.IntType(1)
    dbl = ir.DoubleType()
    f = dbl if dtype == "f64" else ir.FloatType()
    size = 8 if dtype == "f64" else 4
    one, zero, null = ir.Constant(i64, 1), ir.Constant(i64, 0), ir.Constant(ptr, None)
    kernel_t = ir.PointerType(ir.FunctionType(ir.VoidType(), [i64, ptr, ptr, ptr]))

    def c64(v: int):
        return ir.Constant(i64, v)

    def decl(name: str, ret, args: list):
        return mod.globals.get(name) or ir.Function(mod, ir.FunctionType(ret, args), name=name)

    def glob(name: str):
        g = ir.GlobalVariable(mod, ptr, name=f"graphc_entries_{dtype}_{name}")
        g.initializer = null  # set when loaded (`_entries`); null: every call is refused
        return g

    from_double = decl("PyFloat_FromDouble", ptr, [dbl])
    from_long = decl("PyLong_FromLong", ptr, [i64])
    decref = decl("Py_DecRef", ir.VoidType(), [ptr])  # accepts NULL
    g_ndarray, g_descr, g_float = glob("ndarray_type"), glob("descr"), glob("float_type")
    fty = ir.FunctionType(ptr, [ptr, ptr, i64])

    def at(b, base, k, typ=ptr):
        return b.gep(base, [k if not isinstance(k, int) else c64(k)], source_etype=typ)

    def field(b, o, off, typ):
        return b.load(b.gep(o, [off if not isinstance(off, int) else c64(off)], source_etype=i8), typ=typ)

    def guard(fn, b, ok, refuse, name: str):
        """Go on where `ok`, else to `refuse`; `b` continues in a new block."""
        cont = fn.append_basic_block(name)
        b.cbranch(ok, cont, refuse)
        b.position_at_end(cont)

    def start(name: str):
        """A function's entry: its refusal block, and self's (info, names) read."""
        fn = ir.Function(mod, fty, name=f"graphc_{name}_{dtype}")
        me, args, nargs = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        refuse = fn.append_basic_block("refuse")
        _ret_long(refuse, from_long, 1)
        info = field(b, field(b, me, TUPLE_ITEMS, ptr), DATA, ptr)
        names = field(b, me, TUPLE_ITEMS + 8, ptr)
        kernel, n_in, n_out, limit = (b.load(at(b, info, k, i64), typ=t) for k, t in
                                      ((0, kernel_t), (1, i64), (2, i64), (3, i64)))
        guard(fn, b, b.icmp_signed("<=", b.add(n_in, n_out), c64(MAX_ARGS)), refuse, "small")
        return fn, b, refuse, args, nargs, names, kernel, n_in, n_out, limit

    def named(fn, b, names, made, n_out) -> None:
        """Return (made[0], {names[j]: made[j + 1]}), consuming the objects in `made`."""
        d = b.call(decl("PyDict_New", ptr, []), [])
        set_item = decl("PyDict_SetItem", i32, [ptr, ptr, ptr])

        def put(lb, j):
            v = lb.load(at(lb, made, lb.add(j, one)), typ=ptr)
            key = field(lb, names, lb.add(c64(TUPLE_ITEMS), lb.mul(j, c64(8))), ptr)
            lb.call(set_item, [d, key, v])
            lb.call(decref, [v])
        b = count_loop(fn, b, b.sub(n_out, one), "named", put)
        pair = b.call(decl("PyTuple_New", ptr, [i64]), [c64(2)])
        tup_set = decl("PyTuple_SetItem", i32, [ptr, i64, ptr])
        b.call(tup_set, [pair, zero, b.load(made, typ=ptr)])  # steals the references
        b.call(tup_set, [pair, one, d])
        b.ret(pair)

    # (x0, x1, ...) exact Python floats -> (value, {name: gradient}); 1 for anything else
    fn, b, refuse, args, nargs, names, kernel, n_in, n_out, _ = start("pyscalar")
    guard(fn, b, b.icmp_signed("==", nargs, n_in), refuse, "count")
    ftype = b.load(g_float, typ=ptr)
    guard(fn, b, b.icmp_unsigned("!=", ftype, null), refuse, "typed")
    vals, ins, zeros = b.alloca(f, size=n_in), b.alloca(ptr, size=n_in), b.alloca(i64, size=n_in)
    outv, outs, made = b.alloca(f, size=n_out), b.alloca(ptr, size=n_out), b.alloca(ptr, size=n_out)

    def read(lb, k):
        o = lb.load(at(lb, args, k), typ=ptr)
        guard(fn, lb, lb.icmp_unsigned("==", field(lb, o, OB_TYPE, ptr), ftype), refuse, "is_float")
        x = field(lb, o, FLOAT_VALUE, dbl)
        slot = at(lb, vals, k, f)
        lb.store(x if f == dbl else lb.fptrunc(x, f), slot)
        lb.store(slot, at(lb, ins, k))
        lb.store(zero, at(lb, zeros, k, i64))
    b = count_loop(fn, b, n_in, "read", read)
    b = count_loop(fn, b, n_out, "point", lambda lb, j: lb.store(at(lb, outv, j, f), at(lb, outs, j)))
    b.call(kernel, [one, ins, zeros, outs])

    def box(lb, j):
        v = lb.load(at(lb, outv, j, f), typ=f)
        lb.store(lb.call(from_double, [v if f == dbl else lb.fpext(v, dbl)]), at(lb, made, j))
    b = count_loop(fn, b, n_out, "box", box)
    named(fn, b, names, made, n_out)

    # (inputs...) -> new outputs, (value, {name: gradient}); (inputs..., outputs...) -> 0
    fn, b, refuse, args, nargs, names, kernel, n_in, n_out, limit = start("pyarrays")
    given = b.icmp_signed("==", nargs, b.add(n_in, n_out))
    guard(fn, b, b.or_(given, b.icmp_signed("==", nargs, n_in)), refuse, "count")
    typ, descr = b.load(g_ndarray, typ=ptr), b.load(g_descr, typ=ptr)
    guard(fn, b, b.icmp_unsigned("!=", typ, null), refuse, "typed")
    guard(fn, b, b.icmp_signed(">", nargs, zero), refuse, "some")
    ins, steps = b.alloca(ptr, size=n_in), b.alloca(i64, size=n_in)
    outs, made, shape = b.alloca(ptr, size=n_out), b.alloca(ptr, size=n_out), b.alloca(i64)
    first = b.load(args, typ=ptr)
    guard(fn, b, b.icmp_unsigned("==", field(b, first, OB_TYPE, ptr), typ), refuse, "first_array")
    guard(fn, b, b.icmp_signed("==", field(b, first, ND, i32), ir.Constant(i32, 1)), refuse, "first_1d")
    n = b.load(field(b, first, DIMS, ptr), typ=i64)
    guard(fn, b, b.icmp_signed("<", n, limit), refuse, "below_limit")
    small = b.icmp_signed("<=", b.mul(n, c64(size)), c64(ALLOC_MAX))
    guard(fn, b, b.or_(given, small), refuse, "allocatable")

    def check(lb, k):
        """Argument k: an aligned 1-D array of the dtype, length n, unit stride (an
        output also C-contiguous and writable); its data pointer noted."""
        o = lb.load(at(lb, args, k), typ=ptr)
        guard(fn, lb, lb.icmp_unsigned("==", field(lb, o, OB_TYPE, ptr), typ), refuse, "array")
        guard(fn, lb, lb.icmp_signed("==", field(lb, o, ND, i32), ir.Constant(i32, 1)), refuse, "one_d")
        out = lb.icmp_signed(">=", k, n_in)
        want = lb.select(out, ir.Constant(i32, C_CONTIGUOUS | ALIGNED | WRITEABLE), ir.Constant(i32, ALIGNED))
        step = lb.load(field(lb, o, STRIDES, ptr), typ=i64)
        ok = lb.icmp_signed("==", lb.and_(field(lb, o, FLAGS, i32), want), want)
        ok = lb.and_(ok, lb.icmp_unsigned("==", field(lb, o, DESCR, ptr), descr))
        ok = lb.and_(ok, lb.icmp_signed("==", lb.load(field(lb, o, DIMS, ptr), typ=i64), n))
        ok = lb.and_(ok, lb.or_(lb.icmp_signed("==", step, c64(size)), lb.icmp_signed("<=", n, one)))
        guard(fn, lb, ok, refuse, "layout")
        data = field(lb, o, DATA, ptr)
        with lb.if_else(out) as (is_out, is_in):
            with is_out:
                lb.store(data, at(lb, outs, lb.sub(k, n_in)))
            with is_in:
                lb.store(data, at(lb, ins, k))
                lb.store(one, at(lb, steps, k, i64))
    b = count_loop(fn, b, nargs, "check", check)
    with b.if_then(b.not_(given)):  # new outputs; on a failed allocation, free those made
        b.store(n, shape)
        new = decl("graphc_PyArray_New", ptr, [ptr, i32, ptr, i32, ptr, ptr, i32, i32, ptr])
        num = ir.Constant(i32, 12 if size == 8 else 11)  # NPY_DOUBLE, NPY_FLOAT
        nomem = fn.append_basic_block("no_memory")
        ab = count_loop(fn, b, n_out, "clear", lambda lb, j: lb.store(null, at(lb, made, j)))

        def allocate(lb, j):
            a = lb.call(new, [typ, ir.Constant(i32, 1), shape, num, null, null, ir.Constant(i32, 0),
                              ir.Constant(i32, 0), null])
            lb.store(a, at(lb, made, j))
            guard(fn, lb, lb.icmp_unsigned("!=", a, null), nomem, "allocated")
            lb.store(field(lb, a, DATA, ptr), at(lb, outs, j))
        ab = count_loop(fn, ab, n_out, "allocate", allocate)
        b.position_at_end(ab.block)
        eb = ir.IRBuilder(nomem)
        eb = count_loop(fn, eb, n_out, "free", lambda lb, j: lb.call(decref, [lb.load(at(lb, made, j), typ=ptr)]))
        eb.ret(null)  # NumPy's MemoryError propagates
    release = b.icmp_signed(">=", n, c64(GIL_MIN))  # other threads run meanwhile
    state = b.alloca(ptr)
    b.store(null, state)
    with b.if_then(release):
        b.store(b.call(decl("PyEval_SaveThread", ptr, []), []), state)
    b.call(kernel, [n, ins, steps, outs])
    with b.if_then(release):
        b.call(decl("PyEval_RestoreThread", ir.VoidType(), [ptr]), [b.load(state, typ=ptr)])
    done, pack = fn.append_basic_block("written"), fn.append_basic_block("pack")
    b.cbranch(given, done, pack)
    _ret_long(done, from_long, 0)
    named(fn, ir.IRBuilder(pack), names, made, n_out)
    del i1
    return str(mod)


def _ret_long(block, from_long, value: int):
    import llvmlite.ir as ir

    b = ir.IRBuilder(block)
    return b.ret(b.call(from_long, [ir.Constant(ir.IntType(64), value)]))


class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p), ("ml_flags", ctypes.c_int),
                ("ml_doc", ctypes.c_char_p)]


_DEFS: list[_MethodDef] = []  # CPython keeps a pointer to each definition: they live as long as the process


def builtin(name: str, addr: int, me: tuple):
    """A builtin function calling the METH_FASTCALL C function at `addr` with `self` = me."""
    d = _MethodDef(name.encode(), addr, METH_FASTCALL, None)
    _DEFS.append(d)
    new = ctypes.pythonapi.PyCFunction_NewEx
    new.restype, new.argtypes = ctypes.py_object, [ctypes.POINTER(_MethodDef), ctypes.py_object, ctypes.py_object]
    return new(ctypes.byref(d), me, None)
