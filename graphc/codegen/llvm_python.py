"""Python-callable entry points for llvm kernels, with no ctypes per call.

A ctypes call costs ~1 µs plus ~0.3 µs per argument, and finding an array's
data pointer from Python another ~1 µs each: most of a small call. So each
pointwise module also defines two C functions with CPython's METH_FASTCALL
signature, `PyObject *f(PyObject *self, PyObject *const *args, Py_ssize_t n)`,
turned into builtin functions once per process (`PyCFunction_NewEx`):

- `<sym>_pyscalar(x0, x1, ...)`: exact Python floats in (read from the float
  objects), the kernel run on one point, `(value, {name: gradient})` out, the
  names being the function's `self` (a tuple);
- `<sym>_pyarrays(a0, a1, ...)`: NumPy arrays in, read through the array
  object's own fields (data, nd, dimensions, strides, descr, flags); new output
  arrays (NumPy's PyArray_New), `(value, {name: gradient})` out;
  `<sym>_pyarrays(a0, ..., o0, o1, ...)` writes into given outputs instead and
  returns 0. The GIL is released from GIL_MIN elements.

Each returns the int 1, having done nothing, for arguments it does not take:
not all exact floats; an array that is not a 1-D aligned ndarray of the
kernel's exact dtype (its canonical descr) with unit stride, all of one length
n below the caller's threading limit; an output that is not C-contiguous and
writable. The caller then takes its general path.

The layout of PyObject and PyArrayObject is checked against the running
interpreter once (`abi()`); where it differs, or a C API symbol is missing,
no such entry is built and calls take the ctypes path.
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

OB_TYPE = object.__basicsize__ - 8  # PyObject's ob_type: the header's last field
ARRAY = object.__basicsize__  # PyArrayObject: data, nd, dimensions, strides, base, descr, flags after the header
DATA, ND, DIMS, STRIDES, DESCR, FLAGS = (ARRAY + k for k in (0, 8, 16, 24, 40, 48))
C_CONTIGUOUS, ALIGNED, WRITEABLE = 0x1, 0x100, 0x400
GIL_MIN = 4096  # elements from which an array call releases the GIL (other threads run meanwhile)
SCALAR_MAX = 1024  # inputs; a formula with more takes the ctypes path for Python floats (stack slots)
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


def entries(t, kernel, sym: str, n_in: int, n_out: int, limit: int) -> None:
    """Add `<sym>_pyscalar` (up to SCALAR_MAX inputs) and `<sym>_pyarrays` to the
    kernel's module; `t` is its `_Types`; `limit`: the array length from which the
    caller splits the work over threads (pyarrays refuses it)."""
    import llvmlite.ir as ir

    mod = kernel.module
    i64, i32, ptr, f = t.i64, t.i32, t.ptr, t.f
    dbl = ir.DoubleType()
    one, null = ir.Constant(i64, 1), ir.Constant(ptr, None)

    def decl(name: str, ret, args: list):
        return mod.globals.get(name) or ir.Function(mod, ir.FunctionType(ret, args), name=name)

    def glob(name: str):
        g = ir.GlobalVariable(mod, ptr, name=f"{sym}_{name}")
        g.initializer = null  # set when loaded (`function`); null: every call is refused
        return g

    from_double = decl("PyFloat_FromDouble", ptr, [dbl])
    from_long = decl("PyLong_FromLong", ptr, [i64])
    decref = decl("Py_DecRef", ir.VoidType(), [ptr])  # accepts NULL
    g_ndarray, g_descr, g_float = glob("ndarray_type"), glob("descr"), glob("float_type")
    fty = ir.FunctionType(ptr, [ptr, ptr, i64])

    def arg(b, args, k: int):
        return b.load(b.gep(args, [ir.Constant(i64, k)], source_etype=ptr), typ=ptr)

    def field(bb, o, off: int, typ):
        return bb.load(bb.gep(o, [ir.Constant(i64, off)], source_etype=ir.IntType(8)), typ=typ)

    def slots(b, typ, count: int, values) -> Any:
        arr = b.alloca(typ, size=ir.Constant(i64, max(1, count)))
        for k, v in enumerate(values):
            b.store(v, b.gep(arr, [ir.Constant(i64, k)], source_etype=typ))
        return arr

    def named(b, names, values) -> Any:
        """(values[0], {names[j]: values[j + 1]}): new references, `values` consumed."""
        d = b.call(decl("PyDict_New", ptr, []), [])
        set_item = decl("PyDict_SetItem", i32, [ptr, ptr, ptr])
        for j, v in enumerate(values[1:]):
            b.call(set_item, [d, field(b, names, TUPLE_ITEMS + 8 * j, ptr), v])
            b.call(decref, [v])
        pair = b.call(decl("PyTuple_New", ptr, [i64]), [ir.Constant(i64, 2)])
        put = decl("PyTuple_SetItem", i32, [ptr, i64, ptr])
        b.call(put, [pair, ir.Constant(i64, 0), values[0]])  # steals the references
        b.call(put, [pair, ir.Constant(i64, 1), d])
        return pair

    def has_names(b, names):
        """`self` holds a name per gradient (it is always a tuple: `function` makes it)."""
        size = field(b, names, VAR_SIZE, i64)
        return b.icmp_signed("==", size, ir.Constant(i64, n_out - 1))

    if n_in <= SCALAR_MAX:
        # (x0, x1, ...) exact Python floats -> (value, {name: gradient}); 1 for anything else
        fn = ir.Function(mod, fty, name=f"{sym}_pyscalar")
        names, args, nargs = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        check, compute, refuse = (fn.append_basic_block(x) for x in ("check", "compute", "refuse"))
        _ret_long(refuse, from_long, 1)
        b.cbranch(b.and_(b.icmp_signed("==", nargs, ir.Constant(i64, n_in)), has_names(b, names)), check, refuse)
        b = ir.IRBuilder(check)
        objs = [arg(b, args, k) for k in range(n_in)]
        ftype = b.load(g_float, typ=ptr)
        ok = b.icmp_unsigned("!=", ftype, null)
        for o in objs:
            ok = b.and_(ok, b.icmp_unsigned("==", field(b, o, OB_TYPE, ptr), ftype))
        b.cbranch(ok, compute, refuse)
        b = ir.IRBuilder(compute)
        vals = b.alloca(f, size=ir.Constant(i64, max(1, n_in)))
        outv = b.alloca(f, size=ir.Constant(i64, max(1, n_out)))
        for k, o in enumerate(objs):
            x = field(b, o, FLOAT_VALUE, dbl)
            b.store(x if f == dbl else b.fptrunc(x, f), b.gep(vals, [ir.Constant(i64, k)], source_etype=f))
        ins = slots(b, ptr, n_in, [b.gep(vals, [ir.Constant(i64, k)], source_etype=f) for k in range(n_in)])
        zeros = slots(b, i64, n_in, [ir.Constant(i64, 0)] * n_in)
        outs = slots(b, ptr, n_out, [b.gep(outv, [ir.Constant(i64, j)], source_etype=f) for j in range(n_out)])
        b.call(kernel, [one, ins, zeros, outs])
        results = []
        for j in range(n_out):
            v = b.load(b.gep(outv, [ir.Constant(i64, j)], source_etype=f), typ=f)
            results.append(b.call(from_double, [v if f == dbl else b.fpext(v, dbl)]))
        b.ret(named(b, names, results))

    item = ir.Constant(i64, t.size)

    def dim(bb, o, q: int):
        return bb.load(bb.gep(field(bb, o, DIMS, ptr), [ir.Constant(i64, q)], source_etype=i64), typ=i64)

    def vectors(fn, b, objs: list, n, want: int, refuse):
        """Checks that every object is a 1-D array of the dtype, flags `want`, unit
        stride and length n (None: the first one's); returns (builder, n)."""
        typ = b.load(g_ndarray, typ=ptr)
        ok = b.icmp_unsigned("!=", typ, null)
        for o in objs:  # the type first: only then are the array's fields there to read
            ok = b.and_(ok, b.icmp_unsigned("==", field(b, o, OB_TYPE, ptr), typ))
        nd, layout = fn.append_basic_block("nd"), fn.append_basic_block("layout")
        b.cbranch(ok, nd, refuse)
        b = ir.IRBuilder(nd)
        ok = ir.Constant(t.i1, 1)
        for o in objs:
            ok = b.and_(ok, b.icmp_signed("==", field(b, o, ND, i32), ir.Constant(i32, 1)))
        b.cbranch(ok, layout, refuse)
        b = ir.IRBuilder(layout)
        descr = b.load(g_descr, typ=ptr)
        n = dim(b, objs[0], 0) if n is None else n
        ok = b.icmp_signed("<", n, ir.Constant(i64, limit))
        for o in objs:
            flags = b.and_(field(b, o, FLAGS, i32), ir.Constant(i32, want))
            step = b.load(field(b, o, STRIDES, ptr), typ=i64)
            ok = b.and_(ok, b.icmp_signed("==", flags, ir.Constant(i32, want)))
            ok = b.and_(ok, b.icmp_unsigned("==", field(b, o, DESCR, ptr), descr))
            ok = b.and_(ok, b.icmp_signed("==", dim(b, o, 0), n))
            ok = b.and_(ok, b.or_(b.icmp_signed("==", step, item), b.icmp_signed("<=", n, one)))
        good = fn.append_basic_block("checked")
        b.cbranch(ok, good, refuse)
        return ir.IRBuilder(good), n

    def run(fn, b, n, ins, outs, after):
        """The kernel over n elements, without the GIL from GIL_MIN elements."""
        big, small = fn.append_basic_block("release"), fn.append_basic_block("hold")
        steps = slots(b, i64, n_in, [one] * n_in)
        b.cbranch(b.icmp_signed(">=", n, ir.Constant(i64, GIL_MIN)), big, small)
        bb = ir.IRBuilder(big)
        state = bb.call(decl("PyEval_SaveThread", ptr, []), [])
        bb.call(kernel, [n, ins, steps, outs])
        bb.call(decl("PyEval_RestoreThread", ir.VoidType(), [ptr]), [state])
        bb.branch(after)
        sb = ir.IRBuilder(small)
        sb.call(kernel, [n, ins, steps, outs])
        sb.branch(after)

    fn = ir.Function(mod, fty, name=f"{sym}_pyarrays")
    names, args, nargs = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    alloc, given, refuse = (fn.append_basic_block(x) for x in ("allocate", "given", "refuse"))
    _ret_long(refuse, from_long, 1)
    named_alloc = fn.append_basic_block("named")
    mode = b.switch(nargs, refuse)
    mode.add_case(ir.Constant(i64, n_in), named_alloc)
    nb = ir.IRBuilder(named_alloc)
    nb.cbranch(has_names(nb, names), alloc, refuse)
    mode.add_case(ir.Constant(i64, n_in + n_out), given)
    # (inputs..., outputs...): written in place, returns 0
    b = ir.IRBuilder(given)
    ins_objs = [arg(b, args, k) for k in range(n_in)]
    out_objs = [arg(b, args, n_in + j) for j in range(n_out)]
    b, n = vectors(fn, b, ins_objs, None, ALIGNED, refuse)
    b, _ = vectors(fn, b, out_objs, n, C_CONTIGUOUS | ALIGNED | WRITEABLE, refuse)
    ins = slots(b, ptr, n_in, [field(b, o, DATA, ptr) for o in ins_objs])
    outs = slots(b, ptr, n_out, [field(b, o, DATA, ptr) for o in out_objs])
    done = fn.append_basic_block("done")
    run(fn, b, n, ins, outs, done)
    _ret_long(done, from_long, 0)
    # (inputs...): new output arrays (PyArray_New) -> (value, {name: gradient})
    b = ir.IRBuilder(alloc)
    ins_objs = [arg(b, args, k) for k in range(n_in)]
    b, n = vectors(fn, b, ins_objs, None, ALIGNED, refuse)
    new = decl("graphc_PyArray_New", ptr, [ptr, i32, ptr, i32, ptr, ptr, i32, i32, ptr])
    shape = slots(b, i64, 1, [n])
    typ = b.load(g_ndarray, typ=ptr)
    num = ir.Constant(i32, 12 if t.size == 8 else 11)  # NPY_DOUBLE, NPY_FLOAT
    made = [b.call(new, [typ, ir.Constant(i32, 1), shape, num, null, null, ir.Constant(i32, 0),
                         ir.Constant(i32, 0), null]) for _ in range(n_out)]
    fail = ir.Constant(t.i1, 0)
    for a in made:
        fail = b.or_(fail, b.icmp_unsigned("==", a, null))
    nomem, fine = fn.append_basic_block("no_memory"), fn.append_basic_block("allocated")
    b.cbranch(fail, nomem, fine)
    eb = ir.IRBuilder(nomem)
    for a in made:
        eb.call(decref, [a])
    eb.ret(null)  # NumPy's MemoryError propagates
    b = ir.IRBuilder(fine)
    ins = slots(b, ptr, n_in, [field(b, o, DATA, ptr) for o in ins_objs])
    outs = slots(b, ptr, n_out, [field(b, a, DATA, ptr) for a in made])
    pack = fn.append_basic_block("pack")
    run(fn, b, n, ins, outs, pack)
    b = ir.IRBuilder(pack)
    b.ret(named(b, names, made))


def _ret_long(block, from_long, value: int):
    import llvmlite.ir as ir

    b = ir.IRBuilder(block)
    return b.ret(b.call(from_long, [ir.Constant(ir.IntType(64), value)]))


class _MethodDef(ctypes.Structure):
    _fields_ = [("ml_name", ctypes.c_char_p), ("ml_meth", ctypes.c_void_p), ("ml_flags", ctypes.c_int),
                ("ml_doc", ctypes.c_char_p)]


_DEFS: list[_MethodDef] = []  # CPython keeps a pointer to each definition: they live as long as the process


def function(h, sym: str, name: str, dtype: str, names: tuple[str, ...]):
    """The builtin function for `<sym>_<name>` (loaded already), its `self` the
    gradient names its results are keyed by; None when the module has no such
    entry. Sets the module's type and dtype globals."""
    addr = h.engine.get_function_address(f"{sym}_{name}")
    if not addr:
        return None
    for g, value in (("ndarray_type", id(np.ndarray)), ("float_type", id(float)),
                     ("descr", id(np.dtype("float64" if dtype == "f64" else "float32")))):
        at = h.engine.get_global_value_address(f"{sym}_{g}")
        if at:
            ctypes.c_void_p.from_address(at).value = value
    d = _MethodDef(f"graphc_{name}".encode(), addr, METH_FASTCALL, None)
    _DEFS.append(d)
    new = ctypes.pythonapi.PyCFunction_NewEx
    new.restype, new.argtypes = ctypes.py_object, [ctypes.POINTER(_MethodDef), ctypes.py_object, ctypes.py_object]
    return new(ctypes.byref(d), tuple(names), None)
