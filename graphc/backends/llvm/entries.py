"""Python-callable entry points for llvm kernels, with no ctypes per call.

A ctypes call costs ~1 µs plus ~0.3 µs per argument, and finding an array's
data pointer from Python another ~1 µs each: most of a small call. So graphc
compiles, once per dtype (cached like any kernel), two C functions with
CPython's METH_FASTCALL signature, `PyObject *f(PyObject *self, PyObject
*const *args, Py_ssize_t n)`, and makes a builtin function of them per kernel
(`PyCFunction_NewEx`) whose `self` is `(info, names)`: an int64 array holding
the kernel's address, its numbers of inputs and outputs and the address of the
threading threshold's cell (`targets.PARALLEL_MIN`, read per call), and the
gradient names. No code is compiled per kernel.

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

Every object-layout offset they use comes from `cpython_abi.py`, whose
`abi()` checks it against the running interpreter and NumPy once; where it
differs, or a symbol is missing, no entry is made and calls take the ctypes
path. Every C API call that can fail is checked: what was made is released
and NULL returned, with the exception CPython set (MemoryError). The
PyMethodDef of a builtin is shared by every kernel of its C function (`self`
tells them apart), so making entries allocates nothing that outlives them.
"""

from __future__ import annotations

import ctypes
import threading

from .. import cpython_abi as abi
from .ir import count_loop

GIL_MIN = 4096  # elements from which an array call releases the GIL (other threads run meanwhile)
MAX_ARGS = 2048  # inputs + outputs; a kernel with more takes the ctypes path (pointer arrays on the stack)
# bytes per output up to which pyarrays allocates its outputs itself (below glibc's mmap threshold):
# past it, six fresh mmapped outputs fault in every page each call (N = 100,000: 4.3 ms against
# 0.7 ms into one reused block), so the caller allocates one block and passes its rows
ALLOC_MAX = 126976  # 124 KiB per output, below glibc's default 128 KiB mmap threshold


def link(llvm) -> bool:
    """Whether the entries can be made here (`cpython_abi.abi()`); registers the C API
    they call with LLVM's linker."""
    if not abi.abi():
        return False
    for name, addr in abi.symbols().items():
        llvm.add_symbol(name, addr)
    return True


def entry_module(dtype: str, triple: str) -> str:
    """The LLVM IR of `graphc_pyscalar_<dtype>` and `graphc_pyarrays_<dtype>`."""
    import llvmlite.ir as ir

    load, tuple_item = abi.load, abi.tuple_item
    mod = ir.Module(name=f"graphc_entries_{dtype}")
    mod.triple = triple
    i64, i32, ptr = ir.IntType(64), ir.IntType(32), ir.PointerType()
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

    def guard(fn, b, ok, refuse, name: str):
        """Go on where `ok`, else to `refuse`; `b` continues in a new block."""
        cont = fn.append_basic_block(name)
        b.cbranch(ok, cont, refuse)
        b.position_at_end(cont)

    def made_it(fn, b, obj, fail, name: str):
        """Go on where the C API call's result `obj` is not NULL, else to `fail`."""
        guard(fn, b, b.icmp_unsigned("!=", obj, null), fail, name)

    def start(name: str):
        """A function's entry: its refusal block, self's (info, names) read, `made`
        (n_out object slots, NULL) and `fail`: where a failed C API call goes to
        release every object in `made` and the dict and return NULL, CPython's
        exception (MemoryError) set."""
        fn = ir.Function(mod, fty, name=f"graphc_{name}_{dtype}")
        me, args, nargs = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        refuse = fn.append_basic_block("refuse")
        _ret_long(refuse, from_long, 1)  # a NULL from PyLong_FromLong is returned as it is: its exception set
        dslot = b.alloca(ptr)
        b.store(null, dslot)
        info = load(b, b.load(tuple_item(b, me, 0), typ=ptr), abi.ARRAY_DATA, ptr)
        names = b.load(tuple_item(b, me, 1), typ=ptr)
        kernel, n_in, n_out, cell = (b.load(at(b, info, k, i64), typ=t) for k, t in
                                     ((0, kernel_t), (1, i64), (2, i64), (3, i64)))
        limit = b.load(b.inttoptr(cell, ptr), typ=i64)  # the one threading threshold, read per call
        guard(fn, b, b.icmp_signed("<=", b.add(n_in, n_out), c64(MAX_ARGS)), refuse, "small")
        made = b.alloca(ptr, size=n_out)
        b = count_loop(fn, b, n_out, "clear", lambda lb, j: lb.store(null, at(lb, made, j)))
        fail = fn.append_basic_block("fail")
        fb = count_loop(fn, ir.IRBuilder(fail), n_out, "release",
                        lambda lb, j: lb.call(decref, [lb.load(at(lb, made, j), typ=ptr)]))
        fb.call(decref, [fb.load(dslot, typ=ptr)])
        fb.ret(null)
        return fn, b, refuse, args, nargs, names, kernel, n_in, n_out, limit, made, dslot, fail

    def named(fn, b, names, made, n_out, dslot, fail) -> None:
        """Return (made[0], {names[j]: made[j + 1]}), consuming the objects in `made`."""
        d = b.call(decl("PyDict_New", ptr, []), [])
        b.store(d, dslot)
        made_it(fn, b, d, fail, "dict_made")
        set_item = decl("PyDict_SetItem", i32, [ptr, ptr, ptr])

        def put(lb, j):
            slot = at(lb, made, lb.add(j, one))
            v = lb.load(slot, typ=ptr)
            r = lb.call(set_item, [d, lb.load(tuple_item(lb, names, j), typ=ptr), v])
            guard(fn, lb, lb.icmp_signed(">=", r, ir.Constant(i32, 0)), fail, "item_set")
            lb.call(decref, [v])  # the dict holds it
            lb.store(null, slot)
        b = count_loop(fn, b, b.sub(n_out, one), "named", put)
        pair = b.call(decl("PyTuple_New", ptr, [i64]), [c64(2)])
        made_it(fn, b, pair, fail, "pair_made")
        b.store(b.load(made, typ=ptr), tuple_item(b, pair, 0))  # PyTuple_SET_ITEM: the references move in
        b.store(d, tuple_item(b, pair, 1))
        b.ret(pair)

    # (x0, x1, ...) exact Python floats -> (value, {name: gradient}); 1 for anything else
    fn, b, refuse, args, nargs, names, kernel, n_in, n_out, _, made, dslot, fail = start("pyscalar")
    guard(fn, b, b.icmp_signed("==", nargs, n_in), refuse, "count")
    ftype = b.load(g_float, typ=ptr)
    guard(fn, b, b.icmp_unsigned("!=", ftype, null), refuse, "typed")
    vals, ins, zeros = b.alloca(f, size=n_in), b.alloca(ptr, size=n_in), b.alloca(i64, size=n_in)
    outv, outs = b.alloca(f, size=n_out), b.alloca(ptr, size=n_out)

    def read(lb, k):
        o = lb.load(at(lb, args, k), typ=ptr)
        guard(fn, lb, lb.icmp_unsigned("==", load(lb, o, abi.OB_TYPE, ptr), ftype), refuse, "is_float")
        x = load(lb, o, abi.FLOAT_VALUE, dbl)
        slot = at(lb, vals, k, f)
        lb.store(x if f == dbl else lb.fptrunc(x, f), slot)
        lb.store(slot, at(lb, ins, k))
        lb.store(zero, at(lb, zeros, k, i64))
    b = count_loop(fn, b, n_in, "read", read)
    b = count_loop(fn, b, n_out, "point", lambda lb, j: lb.store(at(lb, outv, j, f), at(lb, outs, j)))
    b.call(kernel, [one, ins, zeros, outs])

    def box(lb, j):
        v = lb.load(at(lb, outv, j, f), typ=f)
        o = lb.call(from_double, [v if f == dbl else lb.fpext(v, dbl)])
        lb.store(o, at(lb, made, j))
        made_it(fn, lb, o, fail, "boxed")
    b = count_loop(fn, b, n_out, "box", box)
    named(fn, b, names, made, n_out, dslot, fail)

    # (inputs...) -> new outputs, (value, {name: gradient}); (inputs..., outputs...) -> 0
    fn, b, refuse, args, nargs, names, kernel, n_in, n_out, limit, made, dslot, fail = start("pyarrays")
    given = b.icmp_signed("==", nargs, b.add(n_in, n_out))
    guard(fn, b, b.or_(given, b.icmp_signed("==", nargs, n_in)), refuse, "count")
    typ, descr = b.load(g_ndarray, typ=ptr), b.load(g_descr, typ=ptr)
    guard(fn, b, b.icmp_unsigned("!=", typ, null), refuse, "typed")
    guard(fn, b, b.icmp_signed(">", nargs, zero), refuse, "some")
    ins, steps = b.alloca(ptr, size=n_in), b.alloca(i64, size=n_in)
    outs, shape = b.alloca(ptr, size=n_out), b.alloca(i64)
    first = b.load(args, typ=ptr)
    guard(fn, b, b.icmp_unsigned("==", load(b, first, abi.OB_TYPE, ptr), typ), refuse, "first_array")
    guard(fn, b, b.icmp_signed("==", load(b, first, abi.ARRAY_ND, i32), ir.Constant(i32, 1)), refuse, "first_1d")
    n = b.load(load(b, first, abi.ARRAY_DIMS, ptr), typ=i64)
    guard(fn, b, b.icmp_signed("<", n, limit), refuse, "below_limit")
    small = b.icmp_signed("<=", b.mul(n, c64(size)), c64(ALLOC_MAX))
    guard(fn, b, b.or_(given, small), refuse, "allocatable")

    def check(lb, k):
        """Argument k: an aligned 1-D array of the dtype, length n, unit stride (an
        output also C-contiguous and writable); its data pointer noted."""
        o = lb.load(at(lb, args, k), typ=ptr)
        guard(fn, lb, lb.icmp_unsigned("==", load(lb, o, abi.OB_TYPE, ptr), typ), refuse, "array")
        guard(fn, lb, lb.icmp_signed("==", load(lb, o, abi.ARRAY_ND, i32), ir.Constant(i32, 1)), refuse, "one_d")
        out = lb.icmp_signed(">=", k, n_in)
        want = lb.select(out, ir.Constant(i32, abi.C_CONTIGUOUS | abi.ALIGNED | abi.WRITEABLE),
                         ir.Constant(i32, abi.ALIGNED))
        step = lb.load(load(lb, o, abi.ARRAY_STRIDES, ptr), typ=i64)
        ok = lb.icmp_signed("==", lb.and_(load(lb, o, abi.ARRAY_FLAGS, i32), want), want)
        ok = lb.and_(ok, lb.icmp_unsigned("==", load(lb, o, abi.ARRAY_DESCR, ptr), descr))
        ok = lb.and_(ok, lb.icmp_signed("==", lb.load(load(lb, o, abi.ARRAY_DIMS, ptr), typ=i64), n))
        ok = lb.and_(ok, lb.or_(lb.icmp_signed("==", step, c64(size)), lb.icmp_signed("<=", n, one)))
        guard(fn, lb, ok, refuse, "layout")
        data = load(lb, o, abi.ARRAY_DATA, ptr)
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
        num = ir.Constant(i32, abi.TYPE_NUM[dtype])

        def allocate(lb, j):
            a = lb.call(new, [typ, ir.Constant(i32, 1), shape, num, null, null, ir.Constant(i32, 0),
                              ir.Constant(i32, 0), null])
            lb.store(a, at(lb, made, j))
            made_it(fn, lb, a, fail, "allocated")  # NumPy's MemoryError propagates
            lb.store(load(lb, a, abi.ARRAY_DATA, ptr), at(lb, outs, j))
        ab = count_loop(fn, b, n_out, "allocate", allocate)
        b.position_at_end(ab.block)
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
    named(fn, ir.IRBuilder(pack), names, made, n_out, dslot, fail)
    return str(mod)


def _ret_long(block, from_long, value: int):
    import llvmlite.ir as ir

    b = ir.IRBuilder(block)
    return b.ret(b.call(from_long, [ir.Constant(ir.IntType(64), value)]))


# CPython keeps a pointer to a builtin's definition for the builtin's life: one per C function
# (a dtype's pyscalar or pyarrays), shared by every kernel's builtin, kept for the process
_DEFS: dict[tuple[str, int], abi.MethodDef] = {}
_DEFS_LOCK = threading.Lock()


def builtin(name: str, addr: int, me: tuple):
    """A builtin function calling the METH_FASTCALL C function at `addr` with `self` = me."""
    with _DEFS_LOCK:
        d = _DEFS.get((name, addr))
        if d is None:
            d = _DEFS[name, addr] = abi.MethodDef(name.encode(), addr, abi.METH_FASTCALL, None)
    return _new_function(ctypes.byref(d), me, None)


_new_function = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.POINTER(abi.MethodDef), ctypes.py_object,
                                  ctypes.py_object)(("PyCFunction_NewEx", ctypes.pythonapi))
