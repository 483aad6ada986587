"""The whole training step as one LLVM function (target "llvm").

`PlanKernel` runs a plan's steps from Python: a call per fused loop, per GEMM
and per small op, a few µs each -- most of a step at the seed's small size (300
points). When every step of a plan has a form here, the llvm target runs the
plan as ONE compiled function, `<sym>_body`, over data pointers:

- each fused loop is llvm_tensor's region loop nest in its raw variant (data
  pointers and element strides as arguments instead of array objects), the
  cross_entropy rows its row function's, or for fewer classes than vector lanes
  `xent_cols` here (W rows at a time, the same values bit for bit); the labels
  are checked in range first; the loop and row modules are linked into this one;
- each GEMM calls BLAS's dgemm/sgemm through the function pointer in SciPy's
  `scipy.linalg.cython_blas` capsule (Fortran: every argument by pointer,
  column-major, so row-major C = A @ B is C^T = B^T A^T); a transposed left
  operand is passed as 'T', a transposed right one copied (OpenBLAS's 'N','N'
  small-matrix kernel is faster than its 'T' path); a product with a 1-D
  operand is a GEMM with a side of 1;
- the host steps in between are inline: 0-d elementwise ops (the registry's
  templates over scalars), counts, a shaped elementwise op of its own (a loop
  nest like a fused region's), full sums and means, and views -- transposes,
  reshapes, broadcasts -- as a data pointer and strides (copied where a loop
  must read vectors);
- a cross_entropy's mean or sum and a full sum are NumPy's pairwise summation
  (the bits of `np.sum`).

Two METH_FASTCALL C functions (no ctypes per call) check the arguments -- each an
ndarray of its dtype's descr, aligned, C-contiguous, of its bound shape -- and
call it with the GIL released: `<sym>_call(info, inputs...)` makes the outputs
(0-d ones as 0-d arrays) and the call's scratch block with NumPy's PyArray_New
and returns the outputs' tuple; `<sym>_entry(info, scratch, inputs...,
outputs...)` writes into given outputs (out=). `info` is an int64 array per
signature: the ?gemm address, ndarray's type, the inputs' descrs, the
dimensions, the pooled buffers' addresses (the memory plan's arena) and the
scratch buffers' offsets (values no pool or output holds). Where they are not
returned they give 1, having done nothing, for arguments they do not take (the
caller retries with contiguous copies, then runs the plan step-wise), 2 for a
label out of range (the step-wise plan then raises the ArgumentError).

A plan with a step outside these forms (a softmax on its own, a reduction over
some axes, a batched matmul, ...) runs step-wise; so does a signature with a
GEMM past WHOLE_MNK (OpenBLAS would start its threads: the step-wise plan calls
NumPy's matmul), and every call where `cpython_abi.abi()` refused the
interpreter or SciPy is missing. `WHOLE_STEP = False` turns it off for kernels
built afterwards.
"""

from __future__ import annotations

import ctypes
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...errors import GraphcError
from ...ir import DTYPE_NUMPY, Graph, input_node, make, print_graph
from ...registry import REGISTRY
from ...schedule.plan import XENT_ROW, GemmStep, HostStep, LoopStep, RowStep
from ...schedule.regions import Region
from ...shapes import bound
from .. import cpython_abi as abi
from ..scalar import Body
from .ir import count_loop, splat
from .pointwise import Compiled, Lower, machine_code, split_line

WHOLE_STEP = True  # run a plan as one LLVM function where every step has a form here
WHOLE_MNK = 4 * 65536  # OpenBLAS runs a GEMM of at most this m*n*k on one thread
FITS_KEPT = 64  # signatures whose fit is remembered
PREPARED_KEPT = 4  # signatures whose `info` is kept (dropped with any of the memory plan's arenas)
_DTYPE = {np.dtype(v): k for k, v in DTYPE_NUMPY.items()}  # numpy dtype -> graphc's dtype name
_HOST_OPS = ("count", "transpose", "reshape", "broadcast_to", "sum", "mean", "matmul")  # and elementwise ops


def _mnk(n, dims: dict[str, int]) -> int:
    """m*n*k of a matrix product (a vector operand a side of 1)."""
    a, b = n.args
    return math.prod(bound(a.shape, dims)) * (bound(b.shape, dims)[-1] if b.type.ndim == 2 else 1)


def _source(a):
    """What a loop reads for a broadcast argument: its source (as `schedule.region_graph`)."""
    while a.op == "broadcast_to":
        a = a.args[0]
    return a


class Refused(Exception):
    """A step the whole step has no form for: the plan runs step-wise."""


@functools.cache
def gemm_address(dtype: str) -> int:
    """The address of BLAS's dgemm (f64) or sgemm (f32) from SciPy's cython_blas
    capsule (LP64: `int *` sizes); 0 where SciPy is missing. Imports SciPy (0.2 s):
    asked on a plan's first whole-step call, not when it is compiled."""
    try:
        from scipy.linalg import cython_blas
    except ImportError:
        return 0
    cap = cython_blas.__pyx_capi__.get("dgemm" if dtype == "f64" else "sgemm")
    if cap is None:
        return 0
    return abi.capsule_pointer(cap)


def whole_step(kernel) -> WholeStep | None:
    """The whole-step runner of an llvm tensor kernel, or None where it cannot run
    here (turned off, the object layout unchecked, or a host step with no form)."""
    from .pointwise import host

    if not WHOLE_STEP or not abi.abi() or not host().pyapi:
        return None
    for s in kernel.plan.steps:
        if s.kind not in ("loop", "row", "gemm", "host"):  # a kind this renderer does not spell
            return None
        if isinstance(s, HostStep) and not (REGISTRY[s.node.op].per_element or s.node.op in _HOST_OPS):
            return None
    if any(np.ndim(c) for _, c in kernel.plan.consts):
        return None
    return WholeStep(kernel)


# ------------------------------------------------------------------ values while the function is built


@dataclass
class _Arr:
    """A shaped value: its data pointer and element strides (LLVM values)."""

    dtype: str
    shape: tuple  # symbolic, as the plan has it
    ptr: Any
    strides: list
    contig: bool = True  # the row-major strides of its shape
    unit_last: bool = True  # unit stride along the last axis: read as vectors
    trans: bool = False  # 2-D, the transpose of a contiguous value: a GEMM's 'T' operand


@dataclass
class _Num:
    """A 0-d value (double/float, i64, or i8 for bool)."""

    dtype: str
    value: Any


@dataclass
class _Meta:
    """What the Python side needs of a built step: the `info` slots by what they
    hold, the scratch buffers, the number of outputs."""

    index: dict
    scratch: list  # (info index, shape, dtype)
    n_out: int


class _Builder:
    """The LLVM module of one plan's whole step (`build` -> _Meta; `module_text`
    links the region and row functions in)."""

    def __init__(self, kernel, sym: str):
        import llvmlite.ir as ir

        self.ir = ir
        self.kernel, self.plan, self.h, self.sym = kernel, kernel.plan, kernel.host, sym
        self.dt = kernel.graph.dtype
        self.mod = ir.Module(name="graphc_step")
        self.mod.triple = self.h.triple
        self.i64, self.i32, self.i8, self.i1 = ir.IntType(64), ir.IntType(32), ir.IntType(8), ir.IntType(1)
        self.ptr = ir.PointerType()
        self.f = ir.DoubleType() if self.dt == "f64" else ir.FloatType()
        self.parts: dict[str, Callable[[], str]] = {}  # function -> the IR of its module
        self.region_fns: dict[str, Any] = {}
        self.index: dict[tuple, int] = {}
        self.loaded: dict[tuple, Any] = {}
        self.scratch: list[tuple[int, tuple, np.dtype]] = []
        self.env: dict[int, _Arr | _Num] = {}
        self.bsource: dict[int, _Arr | _Num] = {}  # a broadcast_to's slot -> the value it broadcasts

    # ------------------------------------------------ small pieces

    def c(self, v: int, t=None):
        return self.ir.Constant(t or self.i64, v)

    def elem(self, d: str):
        return self.f if d in ("f64", "f32") else self.i64 if d == "i64" else self.i8

    def info(self, key: tuple, typ=None):
        """The info slot for `key` (assigned on first use), loaded once at the top."""
        idx = self.index.setdefault(key, len(self.index))
        got = self.loaded.get(key)
        if got is None:
            s = self.top
            got = self.loaded[key] = s.load(s.gep(self.info_ptr, [self.c(idx)], source_etype=self.i64),
                                            typ=typ or self.i64)
        return got

    def dim(self, d):
        return self.c(d) if isinstance(d, int) else self.info(("dim", d))

    def alloca(self, typ):
        return self.entry_b.alloca(typ)

    def c_strides(self, shape: tuple) -> list:
        """Row-major element strides of `shape`."""
        out, run = [], self.c(1)
        for d in reversed(shape):
            out.append(run)
            run = self.b.mul(run, self.dim(d)) if not isinstance(d, int) else \
                (self.c(run.constant * d) if isinstance(run, self.ir.Constant) else self.b.mul(run, self.c(d)))
        return out[::-1]

    def count(self, shape: tuple):
        n = self.c(math.prod(d for d in shape if isinstance(d, int)))
        for d in shape:
            if not isinstance(d, int):
                n = self.b.mul(n, self.dim(d))
        return n

    def guard(self, ok, name: str) -> None:
        """Go on where `ok`, else return 1 (arguments not taken)."""
        go = self.fn.append_basic_block(name)
        self.b.cbranch(ok, go, self.refuse)
        self.b.position_at_end(go)

    def memset0(self, ptr, nbytes) -> None:
        ir = self.ir
        name = "llvm.memset.p0.i64"
        fn = self.mod.globals.get(name) or ir.Function(
            self.mod, ir.FunctionType(ir.VoidType(), [self.ptr, self.i8, self.i64, self.i1]), name=name)
        self.b.call(fn, [ptr, self.c(0, self.i8), nbytes, self.c(0, self.i1)])

    def spill(self, v: _Num) -> Any:
        """A 0-d value in memory (a stack slot), for a view of it."""
        slot = self.alloca(self.elem(v.dtype))
        self.b.store(v.value, slot)
        return slot

    # ------------------------------------------------ the function

    def frame(self, name: str, params: list, ret, go=None):
        """A new function of the module: its `entry` block (allocas, before its
        branch: to `top` where `go(entry builder, fn)` holds, else to `self.refuse`),
        `top` (info loads, which every later block follows) and `self.b` in the block
        after them; returns the function."""
        ir = self.ir
        self.fn = fn = ir.Function(self.mod, ir.FunctionType(ret, params), name=name)
        entry, top, body = (fn.append_basic_block(x) for x in ("entry", "top", "body"))
        self.entry_b, self.top, self.b = ir.IRBuilder(entry), ir.IRBuilder(top), ir.IRBuilder(body)
        if go is None:
            term = self.entry_b.branch(top)
        else:
            self.refuse = fn.append_basic_block("refuse")
            term = self.entry_b.cbranch(go(self.entry_b, fn), top, self.refuse)
        self.entry_b.position_before(term)
        self.top.position_before(self.top.branch(body))
        self.loaded = {}
        return fn

    def build(self) -> _Meta:
        """`<sym>_body(info, scratch, ins, outs) -> code` (the steps, over data pointers:
        `ins` and `outs` arrays of them) and its two METH_FASTCALL entries."""
        ir, plan = self.ir, self.plan
        fn = self.frame(f"{self.sym}_body", [self.ptr] * 4, self.i64)
        fn.linkage = "internal"
        self.info_ptr, self.scratch_base, ins, outs = fn.args
        self.code = self.alloca(self.i64)
        self.exit = fn.append_basic_block("exit")
        self.b.store(self.c(0), self.code)

        def at(base, k: int):
            return self.b.load(self.b.gep(base, [self.c(k)], source_etype=self.ptr), typ=self.ptr)

        for k, v in enumerate(plan.inputs):
            data, d = at(ins, k), _DTYPE[v.dtype]
            self.env[v.slot] = _Arr(d, v.shape, data, self.c_strides(v.shape)) if v.shape else \
                _Num(d, self.b.load(data, typ=self.elem(d)))
        self.out_ptr = {}
        for j, v in enumerate(plan.outputs):
            if _DTYPE[v.dtype] != self.dt:
                raise Refused
            self.out_ptr[j] = at(outs, j)
        self.home = {}  # a value's slot -> the output that holds it
        for j, v in enumerate(plan.outputs):
            if v.shape:
                self.home.setdefault(v.slot, j)
        for k, c in plan.consts:
            d = _DTYPE[np.asarray(c).dtype]
            self.env[k] = _Num(d, self.ir.Constant(self.elem(d), float(c) if d in ("f64", "f32") else int(c)))
        for i, step in enumerate(plan.steps):
            match step:
                case LoopStep():
                    self.loop(step, i)
                case RowStep():
                    self.rows(step)
                case GemmStep():
                    self.gemm(step)
                case HostStep():
                    self.host_step(step, i)
                case _:  # a kind this renderer does not spell: the step-by-step runner takes the plan
                    raise Refused
        for j, v in enumerate(plan.outputs):
            val = self.env[v.slot]
            if not v.shape:
                if not isinstance(val, _Num):
                    raise Refused
                self.b.store(self.as_float(val), self.out_ptr[j])
            elif not (isinstance(val, _Arr) and val.ptr is self.out_ptr[j]):
                self.copy(val, self.out_ptr[j], v.shape)
        self.b.branch(self.exit)
        xb = ir.IRBuilder(self.exit)
        xb.ret(xb.load(self.code, typ=self.i64))
        self.scratch_words = self.index.setdefault(("scratch_words",), len(self.index))
        self.entry(fn, allocate=False)
        self.entry(fn, allocate=True)
        return _Meta(dict(self.index), list(self.scratch), len(plan.outputs))

    def entry(self, body, allocate: bool) -> None:
        """`<sym>_entry(info, scratch, inputs..., outputs...) -> code`, or with
        `allocate` `<sym>_call(info, inputs...) -> (outputs...)` (the outputs and
        the scratch block made here with NumPy's PyArray_New; a code where they are
        not returned: 1 for arguments not taken, before anything is made; 2 for a
        label out of range). Every argument is checked: an ndarray of its dtype's
        descr, aligned, C-contiguous (an output also writable), of its bound shape."""
        ir, plan = self.ir, self.plan
        n_in, n_out = len(plan.inputs), len(plan.outputs)
        first = 1 if allocate else 2
        count = first + n_in + (0 if allocate else n_out)
        fn = self.frame(f"{self.sym}_{'call' if allocate else 'entry'}", [self.ptr, self.ptr, self.i64], self.ptr,
                        lambda eb, f: eb.icmp_signed("==", f.args[2], self.c(count)))
        _, args, _ = fn.args
        decl = self.declare
        from_long = decl("PyLong_FromLong", self.ptr, [self.i64])
        decref = decl("Py_DecRef", ir.VoidType(), [self.ptr])
        rb = ir.IRBuilder(self.refuse)
        rb.ret(rb.call(from_long, [self.c(1)]))
        ins, outs = self.entry_b.alloca(self.ptr, size=max(n_in, 1)), self.entry_b.alloca(self.ptr, size=max(n_out, 1))
        made = self.entry_b.alloca(self.ptr, size=n_out + 1)  # the outputs and the scratch array, NULL until made

        def arg(k: int):
            return self.b.load(self.b.gep(args, [self.c(k)], source_etype=self.ptr), typ=self.ptr)
        self.info_ptr = abi.load(self.top, self.top.load(args, typ=self.ptr), abi.ARRAY_DATA, self.ptr)
        for k, v in enumerate(plan.inputs):
            data = self.check(arg(first + k), v.shape, _DTYPE[v.dtype], abi.C_CONTIGUOUS | abi.ALIGNED, f"in{k}")
            b = self.b
            b.store(data, b.gep(ins, [self.c(k)], source_etype=self.ptr))
        null = ir.Constant(self.ptr, None)
        if not allocate:
            for j, v in enumerate(plan.outputs):
                data = self.check(arg(first + n_in + j), v.shape, self.dt,
                                  abi.C_CONTIGUOUS | abi.ALIGNED | abi.WRITEABLE, f"out{j}")
                b = self.b
                b.store(data, b.gep(outs, [self.c(j)], source_etype=self.ptr))
            block = abi.load(self.b, arg(1), abi.ARRAY_DATA, self.ptr)
        else:  # NumPy's arrays: the outputs, then the scratch block (float64 words); NULL: MemoryError set
            b = self.b
            for j in range(n_out + 1):
                b.store(null, b.gep(made, [self.c(j)], source_etype=self.ptr))
            fail = fn.append_basic_block("fail")
            fb = ir.IRBuilder(fail)
            for j in range(n_out + 1):
                fb.call(decref, [fb.load(fb.gep(made, [self.c(j)], source_etype=self.ptr),
                                         typ=self.ptr)])
            fb.ret(null)
            new = decl("graphc_PyArray_New", self.ptr, [self.ptr, self.i32, self.ptr, self.i32, self.ptr, self.ptr,
                                                         self.i32, self.i32, self.ptr])
            sizes = self.entry_b.alloca(self.i64, size=max([len(v.shape) for v in plan.outputs] + [1]))
            typ = self.info(("ndarray",), self.ptr)
            for j, v in enumerate(plan.outputs + (None,)):
                b = self.b
                shape = v.shape if v is not None else ("*scratch",)
                for q, d in enumerate(shape):
                    size = self.dim(d) if v is not None else self.info(("scratch_words",))
                    b.store(size, b.gep(sizes, [self.c(q)], source_etype=self.i64))
                num = abi.TYPE_NUM[self.dt if v is not None else "f64"]
                a = b.call(new, [typ, self.c(len(shape), self.i32), b.gep(sizes, [self.c(0)], source_etype=self.i64),
                                 self.c(num, self.i32), null, null, self.c(0, self.i32), self.c(0, self.i32), null])
                b.store(a, b.gep(made, [self.c(j)], source_etype=self.ptr))
                go = fn.append_basic_block(f"made{j}")
                b.cbranch(b.icmp_unsigned("!=", a, null), go, fail)
                self.b = b = ir.IRBuilder(go)
                if v is not None:
                    b.store(abi.load(b, a, abi.ARRAY_DATA, self.ptr),
                            b.gep(outs, [self.c(j)], source_etype=self.ptr))
                else:
                    block = abi.load(b, a, abi.ARRAY_DATA, self.ptr)
        b = self.b
        skip = b.and_(b.sub(self.c(0), b.ptrtoint(block, self.i64)), self.c(63))  # the block's first 64-byte boundary
        scratch = b.gep(block, [skip], source_etype=self.i8)
        state = b.call(decl("PyEval_SaveThread", self.ptr, []), [])
        code = b.call(body, [self.info_ptr, scratch, b.gep(ins, [self.c(0)], source_etype=self.ptr),
                             b.gep(outs, [self.c(0)], source_etype=self.ptr)])
        b.call(decl("PyEval_RestoreThread", ir.VoidType(), [self.ptr]), [state])
        if not allocate:
            b.ret(b.call(from_long, [code]))
            return
        scratch_obj = b.gep(made, [self.c(n_out)], source_etype=self.ptr)
        b.call(decref, [b.load(scratch_obj, typ=self.ptr)])
        b.store(null, scratch_obj)
        done, bad = fn.append_basic_block("done"), fn.append_basic_block("bad")
        b.cbranch(b.icmp_signed("==", code, self.c(0)), done, bad)
        bb = ir.IRBuilder(bad)  # nothing returned: the outputs released
        for j in range(n_out):
            bb.call(decref, [bb.load(bb.gep(made, [self.c(j)], source_etype=self.ptr),
                                     typ=self.ptr)])
        bb.ret(bb.call(from_long, [code]))
        b = ir.IRBuilder(done)
        tup = b.call(decl("PyTuple_New", self.ptr, [self.i64]), [self.c(n_out)])
        go = fn.append_basic_block("tuple_made")
        b.cbranch(b.icmp_unsigned("!=", tup, null), go, fail)
        b = ir.IRBuilder(go)
        for j in range(n_out):  # PyTuple_SET_ITEM: the references move in
            a = b.load(b.gep(made, [self.c(j)], source_etype=self.ptr), typ=self.ptr)
            b.store(a, abi.tuple_item(b, tup, j))
        b.ret(tup)

    def declare(self, name: str, ret, params: list):
        return self.mod.globals.get(name) or self.ir.Function(self.mod, self.ir.FunctionType(ret, params), name=name)

    def check(self, obj, shape: tuple, dtype: str, flags: int, name: str):
        """An argument's data pointer, once it is an ndarray of `dtype` (its canonical
        descr), of `shape` bound, with `flags`; returns 1 otherwise."""
        b = self.b
        self.guard(b.icmp_unsigned("==", abi.load(b, obj, abi.OB_TYPE, self.ptr), self.info(("ndarray",), self.ptr)),
                   f"{name}_array")
        ok = b.icmp_unsigned("==", abi.load(b, obj, abi.ARRAY_DESCR, self.ptr), self.info(("descr", dtype), self.ptr))
        ok = b.and_(ok, b.icmp_signed("==", abi.load(b, obj, abi.ARRAY_ND, self.i32), self.c(len(shape), self.i32)))
        fl = abi.load(b, obj, abi.ARRAY_FLAGS, self.i32)
        ok = b.and_(ok, b.icmp_signed("==", b.and_(fl, self.c(flags, self.i32)), self.c(flags, self.i32)))
        self.guard(ok, f"{name}_kind")
        if shape:
            sizes = abi.load(b, obj, abi.ARRAY_DIMS, self.ptr)
            ok = self.c(1, self.i1)
            for q, d in enumerate(shape):
                got = b.load(b.gep(sizes, [self.c(q)], source_etype=self.i64), typ=self.i64)
                ok = b.and_(ok, b.icmp_signed("==", got, self.dim(d)))
            self.guard(ok, f"{name}_shape")
        return abi.load(b, obj, abi.ARRAY_DATA, self.ptr)

    def storage(self, slot: int, shape: tuple, dtype: str):
        """Where a value a step writes lives: its pooled buffer, the output holding
        it, or a scratch buffer of its own."""
        if slot in self.plan.pooled:
            return self.info(("pool", slot), self.ptr)
        if shape and slot in self.home:
            return self.out_ptr[self.home[slot]]
        return self.scratch_buffer(("scratch", slot), shape or (1,), dtype)

    def scratch_buffer(self, key: tuple, shape: tuple, dtype: str):
        """A buffer in the call's scratch block (its byte offset in `info`)."""
        got = self.loaded.get(("at",) + key)
        if got is None:
            self.scratch.append((self.index.setdefault(key, len(self.index)), shape, np.dtype(DTYPE_NUMPY[dtype])))
            got = self.loaded[("at",) + key] = self.top.gep(self.scratch_base, [self.info(key)], source_etype=self.i8)
        return got

    def as_float(self, v: _Num):
        if v.dtype in ("f64", "f32"):
            return v.value
        return self.b.sitofp(v.value, self.f) if v.dtype == "i64" else self.b.uitofp(v.value, self.f)

    # ------------------------------------------------ loops

    def region_fn(self, rp, key: str):
        fn = self.region_fns.get(key)
        if fn is None:
            prefix = f"{self.sym}_r{len(self.region_fns)}"
            rb = self.kernel.raw_region(rp, prefix)
            fn = self.region_fns[key] = self.ir.Function(self.mod, rb.fn.ftype, name=f"{prefix}_region")
            self.parts[fn.name] = lambda: str(rb.build())
        return fn

    def operand_strides(self, shape: tuple, strides: list, axes: list) -> list:
        """A region operand's per-axis strides: 0 on an axis it broadcasts along (not
        there, or of size 1), its own stride otherwise."""
        b, out = self.b, []
        for q in axes:
            if q is None:
                out.append(self.c(0))
            elif isinstance(shape[q], int):
                out.append(self.c(0) if shape[q] == 1 else strides[q])
            else:
                out.append(b.select(b.icmp_signed("==", self.dim(shape[q]), self.c(1)), self.c(0), strides[q]))
        return out

    def run_region(self, rp, key: str, r: Region, ins: list, outs: list, sums: list) -> None:
        """The region's raw loop nest over `r.shape`: inputs (values), outputs (data
        pointers, row-major of the region's shape), sums (zeroed cells first)."""
        b, shape = self.b, r.shape
        args = [self.dim(d) for d in shape]
        for k, v in enumerate(ins):
            if not rp.in_rank[k]:
                if not isinstance(v, _Num):
                    raise Refused
                args.append(v.value)
                continue
            if not isinstance(v, _Arr) or len(v.shape) != rp.in_rank[k]:
                raise Refused
            if rp.in_kind[k] == "vec" and not v.unit_last:  # a transposed view read as vectors: a copy
                v = self.contiguous(v)
                b = self.b
            args += [v.ptr] + self.operand_strides(v.shape, v.strides, rp.axes[k])
        n_in = len(ins)
        full = self.c_strides(shape)
        for j, p in enumerate(outs):
            args += [p] + self.operand_strides(shape, full, rp.axes[n_in + j])
        size = 8 if self.dt == "f64" else 4
        for s, (p, cell) in enumerate(sums):
            self.memset0(p, b.mul(self.count(cell), self.c(size)))
            args += [p] + self.operand_strides(cell, self.c_strides(cell), rp.axes[n_in + len(outs) + s])
        if any(d == 0 for d in shape if isinstance(d, int)):
            return  # nothing to loop over: the sums stay 0
        nonzero = self.c(1, self.i1)
        for d in shape:
            if not isinstance(d, int):
                nonzero = b.and_(nonzero, b.icmp_signed("!=", self.dim(d), self.c(0)))
        fn = self.region_fn(rp, key)
        with b.if_then(nonzero):
            b.call(fn, args)

    def loop(self, s: LoopStep, i: int) -> None:
        r = s.region
        rp = self.kernel.region_plan(r)
        if rp.dtype != self.dt:
            raise Refused
        outs = [self.storage(o.slot, r.shape, _DTYPE[o.dtype]) for o in s.outs]
        cells = [(self.storage(o.slot, o.shape or (1,), _DTYPE[o.dtype]), o.shape or (1,)) for o in s.sums]
        self.run_region(rp, r.key, r, [self.env[k] for k in s.ins], outs, cells)
        for o, p in zip(s.outs, outs):
            self.env[o.slot] = _Arr(_DTYPE[o.dtype], r.shape, p, self.c_strides(r.shape))
        for o, (p, _) in zip(s.sums, cells):
            d = _DTYPE[o.dtype]
            self.env[o.slot] = _Arr(d, o.shape, p, self.c_strides(o.shape)) if o.shape else \
                _Num(d, self.b.load(p, typ=self.elem(d)))

    # ------------------------------------------------ cross_entropy rows

    def rows(self, s: RowStep) -> None:
        ir, b = self.ir, self.b
        scores, labels = self.env[s.scores], self.env[s.labels]
        if not (isinstance(scores, _Arr) and scores.contig and len(scores.shape) == 2 and scores.dtype == self.dt
                and isinstance(labels, _Arr) and labels.contig and labels.dtype == "i64" and len(labels.shape) == 1):
            raise Refused
        name = f"{self.sym}_xent"
        fn = self.mod.globals.get(name)
        if fn is None:
            fn = ir.Function(self.mod, ir.FunctionType(self.i32, [self.ptr] * 5 + [self.i64] * 3), name=name)
            self.parts[name] = lambda: self.kernel.raw_xent(self.sym)
        n_sym, c_sym = scores.shape
        p = self.storage(s.softmax, scores.shape, self.dt)
        d = self.storage(s.diff, scores.shape, self.dt) if s.diff is not None else ir.Constant(self.ptr, None)
        red = s.reduction
        losses = self.storage(s.loss, (n_sym,), self.dt) if red == "none" else \
            self.scratch_buffer(("losses", s.loss), (n_sym,), self.dt)
        n, c = self.dim(n_sym), self.dim(c_sym)
        args = [scores.ptr, labels.ptr, p, d, losses, n, c, self.c(int(s.diff is not None))]
        if not hasattr(self, "code32"):
            self.code32 = self.alloca(self.i32)
        few = b.icmp_signed("<", c, self.c(self.h.width(self.dt)))
        with b.if_else(few) as (cols, per_row):
            with cols:  # fewer classes than lanes: a block of rows at a time, a vector per class
                b.store(b.call(self.xent_cols(), args), self.code32)
            with per_row:
                b.store(b.call(fn, args), self.code32)
        code = b.load(self.code32, typ=self.i32)
        bad = b.icmp_signed("!=", code, self.c(0, self.i32))
        with b.if_then(bad, likely=False):  # a label out of range: 2, the step-wise plan raises
            b.store(b.zext(code, self.i64), self.code)
            b.branch(self.exit)
        strides = self.c_strides(scores.shape)
        self.env[s.softmax] = _Arr(self.dt, scores.shape, p, strides)
        if s.diff is not None:
            self.env[s.diff] = _Arr(self.dt, scores.shape, d, strides)
        if red == "none":
            self.env[s.loss] = _Arr(self.dt, (n_sym,), losses, [self.c(1)])
            return
        total = b.call(self.pairwise(), [losses, n])
        self.env[s.loss] = _Num(self.dt, total if red == "sum" else b.fdiv(total, b.sitofp(n, self.f)))

    def xent_cols(self):
        """`<sym>_xent_cols(s, y, p, d, losses, n, c, with_diff) -> i32`: the row
        function's values bit for bit (the same max, exp, sums in the same order, the
        same scalar log per row) where c is below the vector width W: W rows at a
        time, class j of the block one vector, so a row costs c/W vector exps where the
        row form spends one exp (and W lane stores) per row. Returns 2, doing
        nothing, for a label out of range."""
        ir = self.ir
        name = f"{self.sym}_xent_cols"
        fn = self.mod.globals.get(name)
        if fn is not None:
            return fn
        mod, h, dt = self.mod, self.h, self.dt
        f, i64, i32, W = self.f, self.i64, self.i32, self.h.width(self.dt)
        vec, ivec = ir.VectorType(f, W), ir.VectorType(i64, W)
        fn = ir.Function(mod, ir.FunctionType(i32, [self.ptr] * 5 + [i64] * 3), name=name)
        fn.linkage = "internal"
        s, y, p, d, losses, n, c, with_diff = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        bad, spare = b.alloca(i64), b.alloca(f)
        m_slot, z_slot = b.alloca(vec), b.alloca(vec)
        b.store(self.c(0), bad)

        def check(lb, i):
            label = lb.load(lb.gep(y, [i], source_etype=i64), typ=i64)
            out = lb.or_(lb.icmp_signed("<", label, self.c(0)), lb.icmp_signed(">=", label, c))
            lb.store(lb.add(lb.load(bad, typ=i64), lb.zext(out, i64)), bad)
        b = count_loop(fn, b, n, "labels", check)
        go, refuse = fn.append_basic_block("go"), fn.append_basic_block("refuse")
        b.cbranch(b.icmp_signed("==", b.load(bad, typ=i64), self.c(0)), go, refuse)
        ir.IRBuilder(refuse).ret(ir.Constant(i32, 2))
        b = ir.IRBuilder(go)
        diff = b.icmp_signed("!=", with_diff, self.c(0))
        vzero, vone = ir.Constant(vec, [ir.Constant(f, 0.0)] * W), ir.Constant(vec, [ir.Constant(f, 1.0)] * W)
        vninf = ir.Constant(vec, [ir.Constant(f, float("-inf"))] * W)

        def lane(k):
            return ir.Constant(i32, k)

        def bigger(bb, m, v):  # as the row form: v > m or v is NaN
            return bb.select(bb.or_(bb.fcmp_ordered(">", v, m), bb.fcmp_unordered("uno", v, v)), v, m)

        def block(bb, i0, left):
            """Rows i0 .. i0 + W (lanes from `left` on, where given, repeat row i0 and
            store nowhere)."""
            rows = [bb.add(i0, self.c(k)) for k in range(W)]
            inside = [None] * W
            if left is not None:
                for k in range(1, W):
                    inside[k] = bb.icmp_signed("<", self.c(k), left)
                    rows[k] = bb.select(inside[k], rows[k], i0)
            offs = [bb.mul(r, c) for r in rows]
            labels = [bb.load(bb.gep(y, [r], source_etype=i64), typ=i64) for r in rows]
            vlabel = ir.Constant(ivec, ir.Undefined)
            for k in range(W):
                vlabel = bb.insert_element(vlabel, labels[k], lane(k))

            def column(cb, base, j):
                v = ir.Constant(vec, ir.Undefined)
                for k in range(W):
                    v = cb.insert_element(v, cb.load(cb.gep(base, [cb.add(offs[k], j)], source_etype=f), typ=f), lane(k))
                return v

            def put(cb, base, j, v, also=None):
                for k in range(W):
                    at = cb.gep(base, [cb.add(offs[k], j)], source_etype=f)
                    ok = inside[k] if also is None else (also if inside[k] is None else cb.and_(also, inside[k]))
                    if ok is not None:
                        at = cb.select(ok, at, spare)
                    cb.store(cb.extract_element(v, lane(k)), at)

            r = {}

            def row_max(bb):
                bb.store(vninf, m_slot)
                bb = count_loop(fn, bb, c, "max", lambda cb, j: cb.store(bigger(cb, cb.load(m_slot, typ=vec),
                                                                                  column(cb, s, j)), m_slot))
                m = bb.load(m_slot, typ=vec)
                r["m"] = bb.select(bb.fcmp_ordered("==", bb.fsub(m, m), vzero), m, vzero)  # infinite or NaN: 0
                return bb

            def row_exp_sum(bb):
                bb.store(vzero, z_slot)

                def expo(cb, j):
                    e = Lower(cb, mod, dt, W, h).libm("exp", cb.fsub(column(cb, s, j), r["m"]))
                    cb.store(cb.fadd(cb.load(z_slot, typ=vec), e), z_slot)
                    put(cb, p, j, e)
                bb = count_loop(fn, bb, c, "exp", expo)
                r["z"] = bb.load(z_slot, typ=vec)
                return bb

            def row_normalize(bb):
                def norm(cb, j):
                    q = cb.fdiv(column(cb, p, j), r["z"])
                    put(cb, p, j, q)
                    hot = cb.select(cb.icmp_signed("==", vlabel, splat(cb, j, W)), vone, vzero)
                    put(cb, d, j, cb.fsub(q, hot), diff)
                return count_loop(fn, bb, c, "norm", norm)

            def row_nll(bb):
                picked = logz = ir.Constant(vec, ir.Undefined)
                for k in range(W):
                    x = bb.load(bb.gep(s, [bb.add(offs[k], labels[k])], source_etype=f), typ=f)
                    picked = bb.insert_element(picked, x, lane(k))
                    lz = Lower(bb, mod, dt, None, h).libm("log", bb.extract_element(r["z"], lane(k)))
                    logz = bb.insert_element(logz, lz, lane(k))
                loss = bb.fneg(bb.fsub(picked, bb.fadd(logz, r["m"])))
                for k in range(W):
                    at = bb.gep(losses, [rows[k]], source_etype=f)
                    if inside[k] is not None:
                        at = bb.select(inside[k], at, spare)
                    bb.store(bb.extract_element(loss, lane(k)), at)
                return bb

            passes = {"max": row_max, "exp_sum": row_exp_sum, "normalize": row_normalize, "nll": row_nll}
            for op in XENT_ROW:  # the plan's passes, in its order, on W rows at once
                bb = passes[op.kind](bb)
            return bb

        full = b.sdiv(n, self.c(W))
        b = count_loop(fn, b, full, "block", lambda lb, q: block(lb, lb.mul(q, self.c(W)), None))
        left = b.sub(n, b.mul(full, self.c(W)))
        with b.if_then(b.icmp_signed(">", left, self.c(0))):
            tb = block(b, b.mul(full, self.c(W)), left)
            b.position_at_end(tb.block)
        b.ret(ir.Constant(i32, 0))
        return fn

    def pairwise(self):
        """`<sym>_pairwise(a, n)`: NumPy's pairwise sum of a[0:n] (the order of
        `np.sum` on a contiguous vector: below 8 one by one, up to 128 in 8
        accumulators, beyond that the two halves at a multiple of 8)."""
        ir = self.ir
        name = f"{self.sym}_pairwise"
        fn = self.mod.globals.get(name)
        if fn is not None:
            return fn
        f, i64 = self.f, self.i64
        fn = ir.Function(self.mod, ir.FunctionType(f, [self.ptr, i64]), name=name)
        fn.linkage = "internal"
        a, n = fn.args
        entry, small, mid, big, split = (fn.append_basic_block(x) for x in ("entry", "small", "mid", "big", "split"))
        b = ir.IRBuilder(entry)
        acc = b.alloca(f)
        r = [b.alloca(f) for _ in range(8)]
        b.cbranch(b.icmp_signed("<", n, self.c(8)), small, big)

        def at(bb, k):
            return bb.load(bb.gep(a, [k], source_etype=f), typ=f)

        def add_to(slot):
            return lambda bb, k: bb.store(bb.fadd(bb.load(slot, typ=f), at(bb, k)), slot)

        sb = ir.IRBuilder(small)
        sb.store(ir.Constant(f, 0.0), acc)
        sb = count_loop(fn, sb, n, "one", add_to(acc))
        sb.ret(sb.load(acc, typ=f))
        bb = ir.IRBuilder(big)
        bb.cbranch(bb.icmp_signed("<=", n, self.c(128)), mid, split)
        mb = ir.IRBuilder(mid)
        for j in range(8):
            mb.store(at(mb, self.c(j)), r[j])
        whole = mb.sub(n, mb.srem(n, self.c(8)))

        def eight(lb, q):
            base = lb.mul(q, self.c(8))
            for j in range(8):
                lb.store(lb.fadd(lb.load(r[j], typ=f), at(lb, lb.add(base, self.c(j)))), r[j])
        mb = count_loop(fn, mb, mb.sdiv(whole, self.c(8)), "eight", eight, start=1)
        v = [mb.load(x, typ=f) for x in r]
        mb.store(mb.fadd(mb.fadd(mb.fadd(v[0], v[1]), mb.fadd(v[2], v[3])),
                         mb.fadd(mb.fadd(v[4], v[5]), mb.fadd(v[6], v[7]))), acc)
        mb = count_loop(fn, mb, n, "rest", add_to(acc), start=whole)
        mb.ret(mb.load(acc, typ=f))
        xb = ir.IRBuilder(split)
        half = xb.sdiv(n, self.c(2))
        half = xb.sub(half, xb.srem(half, self.c(8)))
        lo = xb.call(fn, [a, half])
        hi = xb.call(fn, [xb.gep(a, [half], source_etype=f), xb.sub(n, half)])
        xb.ret(xb.fadd(lo, hi))
        return fn

    # ------------------------------------------------ GEMMs

    def contiguous(self, x: _Arr) -> _Arr:
        """A strided view copied into a scratch buffer, row-major."""
        self.copies = getattr(self, "copies", 0) + 1
        at = self.scratch_buffer(("copy", self.copies), x.shape, x.dtype)
        self.copy(x, at, x.shape)
        return _Arr(x.dtype, x.shape, at, self.c_strides(x.shape))

    def gemm(self, s: GemmStep) -> None:
        out = self.storage(s.out, s.node.shape, self.dt)
        self.matmul(self.env[s.a], self.env[s.b], out)
        self.env[s.out] = _Arr(self.dt, s.node.shape, out, self.c_strides(s.node.shape))

    def matmul(self, A: _Arr, B: _Arr, out) -> None:
        """out(m, n) = A(m, k) @ B(k, n) row-major: BLAS computes C^T = B^T A^T, each
        operand 'N' where contiguous (ld: its row length), 'T' where the transpose
        of a contiguous value; any other view is copied first."""
        ir = self.ir
        for x in (A, B):
            if not (isinstance(x, _Arr) and len(x.shape) == 2 and x.dtype == self.dt):
                raise Refused
        if not gemm_address(self.dt):  # no SciPy
            raise Refused
        if not (A.contig or A.trans):
            A = self.contiguous(A)
        if not (B.contig or B.trans):
            B = self.contiguous(B)
        b = self.b
        m, k = (self.dim(d) for d in A.shape)
        n = self.dim(B.shape[1])
        b_ptr, b_ld, b_op = B.ptr, B.strides[1] if B.trans else B.strides[0], self.c(ord("T" if B.trans else "N"),
                                                                                      self.i8)
        if B.trans:  # copied contiguous for 16 rows and more: OpenBLAS's 'N','N' small-matrix kernel is faster
            # than its 'T' path (which clears C, then packs), and the copy is B's size, not the product's
            self.copies = getattr(self, "copies", 0) + 1
            at = self.scratch_buffer(("copy", self.copies), B.shape, self.dt)
            rows = b.icmp_signed(">=", m, self.c(16))
            with b.if_then(rows):
                self.copy(B, at, B.shape)
                b.position_at_end(self.b.block)
            self.b = b
            b_ptr, b_ld = b.select(rows, at, b_ptr), b.select(rows, n, b_ld)
            b_op = b.select(rows, self.c(ord("N"), self.i8), b_op)
        if not hasattr(self, "blas"):
            e = self.entry_b
            self.blas = {name: e.alloca(t) for name, t in (("ta", self.i8), ("tb", self.i8), ("m", self.i32),
                                                           ("n", self.i32), ("k", self.i32), ("lda", self.i32),
                                                           ("ldb", self.i32), ("ldc", self.i32), ("one", self.f),
                                                           ("zero", self.f))}
        slots = self.blas
        empty = b.or_(b.icmp_signed("==", m, self.c(0)), b.icmp_signed("==", n, self.c(0)))
        with b.if_else(empty) as (nothing, work):
            with nothing:
                pass
            with work:
                with b.if_else(b.icmp_signed("==", k, self.c(0))) as (zeros, call):
                    with zeros:  # an empty sum: C = 0 (BLAS is not asked)
                        self.memset0(out, b.mul(b.mul(m, n), self.c(8 if self.dt == "f64" else 4)))
                    with call:
                        def ld(x):
                            return x.strides[1] if x.trans else x.strides[0]

                        def one(v):
                            return b.select(b.icmp_signed("<", v, self.c(1)), self.c(1), v)

                        for name, v in (("m", n), ("n", m), ("k", k), ("lda", one(b_ld)), ("ldb", one(ld(A))),
                                        ("ldc", one(n))):
                            b.store(b.trunc(v, self.i32), slots[name])
                        b.store(b_op, slots["ta"])
                        b.store(self.c(ord("T" if A.trans else "N"), self.i8), slots["tb"])
                        b.store(ir.Constant(self.f, 1.0), slots["one"])
                        b.store(ir.Constant(self.f, 0.0), slots["zero"])
                        ftype = ir.FunctionType(ir.VoidType(), [self.ptr] * 13)
                        fp = self.info(("gemm",), ir.PointerType(ftype))
                        b.call(fp, [slots["ta"], slots["tb"], slots["m"], slots["n"], slots["k"], slots["one"],
                                    b_ptr, slots["lda"], A.ptr, slots["ldb"], slots["zero"], out, slots["ldc"]])

    # ------------------------------------------------ host steps

    def host_step(self, s: HostStep, i: int) -> None:
        n = s.node
        vals = [self.env[k] for k in s.ins]
        d = n.dtype
        if REGISTRY[n.op].per_element:
            if n.attrs:
                raise Refused
            if not n.shape:
                self.env[s.out] = self.scalar_op(n, vals)
                return
            # a loop nest of its own; as in a fused region, a broadcast argument is read through
            # (its source, broadcast by the region's indexing: `schedule.region_graph`)
            r = Region(n.shape, i, i, nodes=[n], outputs=[n])
            src = [_source(a) for a in n.args]
            r.inputs = [a for a in dict.fromkeys(src) if a.op != "const"]
            by_node = {id(a): self.bsource.get(k, v) for a, k, v in zip(src, s.ins, vals)}
            rp = self.kernel.region_plan(r)
            out = self.storage(s.out, n.shape, d)
            self.run_region(rp, "host" + rp.signature, r, [by_node[id(a)] for a in r.inputs], [out], [])
            self.env[s.out] = _Arr(d, n.shape, out, self.c_strides(n.shape))
            return
        if n.op == "matmul":  # with a 1-D operand (2-D by 2-D is a GemmStep): a GEMM with a side of 1
            self.env[s.out] = self.vector_matmul(s, vals)
            return
        (x,) = vals
        if n.op in ("sum", "mean"):  # over every axis: NumPy's pairwise sum of the contiguous values
            if n.shape or not isinstance(x, _Arr) or x.dtype != self.dt or d != self.dt:
                raise Refused
            if not x.contig:
                x = self.contiguous(x)
            size = self.count(x.shape)
            total = self.b.call(self.pairwise(), [x.ptr, size])
            self.env[s.out] = _Num(d, total if n.op == "sum" else self.b.fdiv(total, self.b.sitofp(size, self.f)))
            return
        if n.op == "broadcast_to":  # what a loop reading this view reads instead
            self.bsource[s.out] = self.bsource.get(s.ins[0], x)
        if n.op == "count":
            size = self.count(tuple(n.args[0].shape[a] for a in n.attrs["axis"]))
            if d not in ("f64", "f32", "i64"):
                raise Refused
            self.env[s.out] = _Num(d, self.b.sitofp(size, self.f) if d != "i64" else size)
            return
        if not n.shape:  # a 0-d view of a 0-d value (or of a one-element array)
            self.env[s.out] = x if isinstance(x, _Num) else _Num(d, self.b.load(x.ptr, typ=self.elem(d)))
            return
        if isinstance(x, _Num):
            x = _Arr(x.dtype, (), self.spill(x), [])
        if n.op == "transpose":
            nd = len(x.shape)
            axes = tuple(n.attrs.get("axes") or range(nd)[::-1])
            ident = axes == tuple(range(nd))
            flip = nd == 2 and axes == (1, 0)
            self.env[s.out] = _Arr(d, n.shape, x.ptr, [x.strides[a] for a in axes],
                                   contig=x.contig and ident or (flip and x.trans),
                                   unit_last=x.unit_last and axes[-1] == nd - 1 or (flip and x.trans),
                                   trans=flip and x.contig)
        elif n.op == "reshape":
            if not x.contig:  # as NumPy: a view where the values are contiguous, else a copy
                x = self.contiguous(x)
            self.env[s.out] = _Arr(d, n.shape, x.ptr, self.c_strides(n.shape))
        else:  # broadcast_to: stride 0 along the axes it adds or stretches
            off = len(n.shape) - len(x.shape)
            strides, same = [], off == 0
            for j, t in enumerate(n.shape):
                q = j - off
                if q < 0:
                    strides.append(self.c(0))
                elif x.shape[q] == t:
                    strides.append(x.strides[q])
                elif x.shape[q] == 1:
                    strides.append(self.c(0))
                    same = False
                else:
                    raise Refused
            last_ok = bool(x.shape) and x.shape[-1] == n.shape[-1] and x.unit_last
            self.env[s.out] = _Arr(d, n.shape, x.ptr, strides, contig=same and x.contig, unit_last=last_ok)

    def vector_matmul(self, s: HostStep, vals: list) -> _Arr | _Num:
        """A matrix-vector, vector-matrix or vector-vector product as a GEMM: the vector
        a (1, k) row or a (k, 1) column of its contiguous values."""
        a, b = vals
        if not (isinstance(a, _Arr) and isinstance(b, _Arr) and 1 <= len(a.shape) <= 2 and 1 <= len(b.shape) <= 2):
            raise Refused

        def vector(v: _Arr, as_row: bool) -> _Arr:
            if not v.contig:
                v = self.contiguous(v)
            (k,) = v.shape
            shape = (1, k) if as_row else (k, 1)
            return _Arr(v.dtype, shape, v.ptr, [self.dim(k), self.c(1)] if as_row else [self.c(1), self.c(1)])
        A = vector(a, True) if len(a.shape) == 1 else a
        B = vector(b, False) if len(b.shape) == 1 else b
        node = s.node
        if not node.shape:
            cell = self.scratch_buffer(("dot", s.out), (1,), self.dt)
            self.matmul(A, B, cell)
            return _Num(self.dt, self.b.load(cell, typ=self.f))
        out = self.storage(s.out, node.shape, self.dt)
        self.matmul(A, B, out)
        return _Arr(self.dt, node.shape, out, self.c_strides(node.shape))

    def scalar_op(self, n, vals: list) -> _Num:
        """A 0-d elementwise op: its template over scalars (`Lower` without lanes)."""
        b = self.b
        if any(not isinstance(v, _Num) for v in vals) or n.dtype == "i64":
            raise Refused
        scalars = [input_node(f"x{j}", a.dtype) for j, a in enumerate(n.args)]
        body = Body(Graph(scalars, [("o", make(n.op, *scalars))]), backend="cpu")
        low = Lower(b, self.mod, self.dt, None, self.h)
        for name, rhs in (split_line(c) for c in body.consts):
            low.line(name, rhs)
        for name, v in zip(body.input_vars(), vals):
            if v.dtype == "bool":
                low.env[name] = (b.icmp_unsigned("!=", v.value, self.c(0, self.i8)), "b")
            else:
                low.env[name] = (self.as_float(v), "f")
        for name, rhs in (split_line(ln) for ln in body.lines):
            low.line(name, rhs)
        out = low.env[body.outputs[0]]
        if n.dtype == "bool":
            return _Num("bool", b.zext(low.as_bool(out), self.i8))
        return _Num(n.dtype, low.as_float(out))

    def copy(self, x: _Arr | _Num, dst, shape: tuple) -> None:
        """An output that is a view of another value (or a 0-d value broadcast): its
        elements copied into the output array, row-major."""
        if isinstance(x, _Num):
            x = _Arr(x.dtype, (), self.spill(x), [])
        e = self.elem(x.dtype)
        dims = [self.dim(d) for d in shape]
        src = self.operand_strides(x.shape, x.strides,
                                   [None if j < len(shape) - len(x.shape) else j - (len(shape) - len(x.shape))
                                    for j in range(len(shape))])
        full = self.c_strides(shape)

        def nest(bb, j, so, do):
            if j == len(shape):
                v = bb.load(bb.gep(x.ptr, [so], source_etype=e), typ=e)
                bb.store(v, bb.gep(dst, [do], source_etype=e))
                return bb
            return count_loop(self.fn, bb, dims[j], f"copy{j}",
                              lambda lb, k: nest(lb, j + 1, lb.add(so, lb.mul(k, src[j])),
                                                 lb.add(do, lb.mul(k, full[j]))))
        self.b = nest(self.b, 0, self.c(0), self.c(0))

    # ------------------------------------------------ the module with its parts

    def module_text(self) -> str:
        """The step's IR with the region and row functions linked in (internal)."""
        llvm = self.h.llvm
        main = llvm.parse_assembly(str(self.mod))
        for make_part in self.parts.values():
            main.link_in(llvm.parse_assembly(make_part()))
        for name in self.parts:
            main.get_function(name).linkage = "internal"
        return str(main)


# ------------------------------------------------------------------ the Python side


class WholeStep:
    """A kernel's plan as one LLVM function: built on the first call that fits,
    then one METH_FASTCALL call per step (`run`)."""

    def __init__(self, kernel):
        self.kernel = kernel
        self._key: str | None = None
        self.meta: _Meta | None = None
        self.entry = self.allocating = None  # the METH_FASTCALL entries, once built
        self.refused = False
        self.reason: Exception | None = None  # why the step was refused (tests ask)
        self._fits: dict[tuple, bool] = {}
        self._prepared: dict[tuple, tuple] = {}  # signature -> (info, scratch bytes, outputs, cells, results)
        kernel.memory.on_evict = self._prepared.clear  # they hold addresses in the pools

    @property
    def key(self) -> str:
        """The machine code's cache key (the graph's text: made when first asked)."""
        if self._key is None:
            self._key = self.kernel.cache_key("step", self.kernel.graph.dtype, print_graph(self.kernel.graph))
        return self._key

    @property
    def sym(self) -> str:
        return "graphc_s" + self.key[:20]

    def fits(self, dims: dict[str, int]) -> bool:
        """Whether every GEMM is small enough for one BLAS thread (m*n*k <= WHOLE_MNK)."""
        key = tuple(dims.values())
        fits = self._fits.get(key)
        if fits is None:
            if len(self._fits) >= FITS_KEPT:
                self._fits.clear()
            fits = self._fits[key] = all(_mnk(s.node, dims) <= WHOLE_MNK for s in self.kernel.plan.steps
                                         if isinstance(s, (GemmStep, HostStep)) and s.node.op == "matmul")
        return fits

    def build(self) -> bool:
        """Compile (or load) the step; False where a step has no form here."""
        if self.entry is not None or self.refused:
            return not self.refused
        from . import entries as llvm_python

        h = self.kernel.host
        try:
            b = _Builder(self.kernel, self.sym)
            meta = b.build()
            obj = machine_code(self.key, b.module_text, h, (f"{self.sym}_entry", f"{self.sym}_call"),
                               (f"{self.sym}_",))
        except (Refused, GraphcError, RuntimeError) as exc:  # RuntimeError: LLVM's own (a bug here)
            self.refused, self.reason = True, exc
            return False
        Compiled(obj, h, self.sym, "entry", ctypes.CFUNCTYPE(None))
        self.entry = llvm_python.builtin("graphc_step", h.engine.get_function_address(f"{self.sym}_entry"), None)
        self.allocating = llvm_python.builtin("graphc_step", h.engine.get_function_address(f"{self.sym}_call"), None)
        self.meta = meta
        return True

    def describe(self) -> str:
        """For `fn.source`: whether the steps run as one function, and its IR."""
        try:
            b = _Builder(self.kernel, self.sym)
            b.build()
        except (Refused, GraphcError, RuntimeError):
            return "\n# The steps run one by one: a step has no form in the LLVM whole step (llvm_step.py)."
        return (f"\n# Where every GEMM is small (m*n*k <= {WHOLE_MNK}), all steps run as one LLVM function "
                f"(llvm_step.py): `{self.sym}_entry` below calls the loop nests and rows above (their raw "
                f"variants) and BLAS's ?gemm.\n# ---- whole step\n{b.mod}")

    def _prepare(self, dims: dict[str, int]) -> tuple:
        """This signature's `info` (kept while the memory plan keeps its arena), the
        scratch block's bytes and the outputs' shapes."""
        meta, plan = self.meta, self.kernel.plan
        _, pool, _ = self.kernel.memory.arena(dims)
        info = np.zeros(len(meta.index), dtype=np.int64)
        scratch = 64  # bytes of the call's scratch block: each buffer at a 64-byte boundary past its first one
        for idx, sh, dt in meta.scratch:
            info[idx] = scratch - 64
            scratch += -(-math.prod(bound(sh, dims)) * dt.itemsize // 64) * 64
        for key, idx in meta.index.items():
            match key:
                case ("gemm",):
                    info[idx] = gemm_address(self.kernel.graph.dtype)
                case ("ndarray",):
                    info[idx] = id(np.ndarray)
                case ("descr", d):
                    info[idx] = id(np.dtype(DTYPE_NUMPY[d]))
                case ("dim", d):
                    info[idx] = dims[d]
                case ("pool", k):
                    info[idx] = pool[k].ctypes.data
                case ("scratch_words",):
                    info[idx] = scratch // 8
        outs = [(v.slot, bound(v.shape, dims), v.dtype) for v in plan.outputs]
        if len(self._prepared) >= PREPARED_KEPT:
            self._prepared.pop(next(iter(self._prepared)))
        got = self._prepared[tuple(dims.values())] = (info, scratch, outs)
        return got

    def _ready(self, dims: dict[str, int]) -> tuple | None:
        prep = self._prepared.get(tuple(dims.values()))
        if prep is None:
            if self.refused or not self.fits(dims) or not self.build():
                return None
            prep = self._prepare(dims)
        return prep

    def call(self, arrays, dims: dict[str, int]) -> tuple | None:
        """The step's outputs, made by the compiled entry (0-d ones as 0-d arrays), or
        None: run the plan step-wise (a GEMM too big, a step with no form here,
        arguments not taken, a label out of range)."""
        prep = self._prepared.get(tuple(dims.values())) or self._ready(dims)
        if prep is None:
            return None
        got = self.allocating(prep[0], *arrays)
        if got == 1:  # an argument strided, misaligned, of another descr: contiguous copies, once
            got = self.allocating(prep[0], *_contiguous(arrays))
        return got if type(got) is tuple else None

    def run(self, arrays, dims: dict[str, int], given: dict) -> list | None:
        """`call` with outputs given (out=): written in place and returned."""
        prep = self._ready(dims)
        if prep is None:
            return None
        info, scratch, outs = prep
        made = []
        for k, shape, dt in outs:
            g = given.get(k) if given else None
            made.append(g if g is not None and g.shape == shape else np.empty(shape, dtype=dt))
        block = np.empty(scratch, dtype=np.uint8)  # this call's values no pool or output holds
        code = self.entry(info, block, *arrays, *made)
        if code == 1:
            code = self.entry(info, block, *_contiguous(arrays), *made)
        return None if code else made


def _contiguous(arrays) -> list:
    return [np.array(a, order="C") if type(a) is np.ndarray else np.asarray(a) for a in arrays]
