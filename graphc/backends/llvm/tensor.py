"""Tensor programs on the llvm target: the CPU schedule (`schedule.py`) with its
fused steps compiled by llvmlite instead of Numba.

The steps are the cpu target's: GEMMs are NumPy's matmul (BLAS) into the pooled
buffers, the remaining tensor ops their NumPy forms. Each fused region becomes
one LLVM function, a loop nest over the region's shape whose innermost axis
runs in vectors of the host's width (the masked last vector, the lines lowered
by `llvm_cpu.Lower`, libmvec's vector math), every operand addressed through
its own per-axis strides (a broadcast axis has stride 0, so a bias row or a
column is read in place, never materialised). Sums of region values are its
epilogues: a sum over the innermost axis accumulates in a vector register and
is added once per row; a sum over outer axes adds whole vectors into its row.
`cross_entropy` with its softmax is one LLVM function with a pass per row.
Machine code is cached like the pointwise kernels' (object code beside the
LLVM IR, no Numba on the path).
"""

from __future__ import annotations

import ctypes
from typing import Any

import numpy as np

from ...errors import GraphcError
from ...ir import DTYPE_NUMPY, Graph, print_graph
from ...schedule.plan import XENT_ROW, LoopStep, RowStep
from ...schedule.regions import Region, Xent, describe_schedule, region_graph
from .. import cpython_abi as abi
from ..numpy_ref import evaluate
from ..plan_kernel import PlanKernel
from ..scalar import Body
from .ir import count_loop, splat
from .pointwise import Compiled, Host, LlvmTypes, Lower, host, machine_code, machine_key, split_line

_ELEM = {"bool": 8, "i64": 64}  # integer element widths by dtype


def _key(h: Host, *parts: str) -> str:
    return machine_key(h, *parts, abi.layout_key())  # graphc's source is in every key: no version to bump


# ------------------------------------------------------------------ a fused region


class RegionPlan:
    """What a region's function needs to know statically: per input, whether the
    innermost axis is read as a vector ("vec") or as one value per row ("row": a
    0-d input or an input broadcast along it); per sum, whether it reduces the
    innermost axis ("hsum": a register per row) or keeps it ("vec")."""

    def __init__(self, r: Region, dtype: str):
        self.region, self.dtype, self.nd = r, dtype, len(r.shape)
        inner = r.shape[-1]
        self.in_kind = ["row" if not a.shape or (a.shape[-1] == 1 and inner != 1) else "vec" for a in r.inputs]
        self.in_dtype = [a.dtype for a in r.inputs]
        self.out_dtype = [o.dtype for o in r.outputs]
        self.in_rank = [len(a.shape) for a in r.inputs]
        self.sum_kind = ["hsum" if self.nd - 1 in n.attrs["axis"] else "vec" for n in r.reductions]
        # per operand, the array axis each region axis reads (None: it broadcasts, stride 0)
        self.axes = [[None if j < self.nd - k else j - (self.nd - k) for j in range(self.nd)] for k in self.in_rank]
        self.axes += [list(range(self.nd)) for _ in r.outputs]
        for n in r.reductions:  # a sum's cell: reduced axes stay at index 0 (a 0-d sum is one cell)
            ax, keep, q, row = n.attrs["axis"], n.attrs["keepdims"], 0, []
            for j in range(self.nd):
                row.append(None if j in ax else q)
                q += 1 if keep or j not in ax else 0
            self.axes.append(row)
        self.graph = region_graph(r)
        self.signature = "\n".join([dtype, repr(self.in_kind), repr(self.in_dtype), repr(self.out_dtype),
                                    repr(self.sum_kind), repr(self.axes), str(self.nd), print_graph(self.graph)])

    @property
    def operands(self) -> int:
        return len(self.in_kind) + len(self.out_dtype) + len(self.sum_kind)


def scalar_type(dtype: str):
    """The LLVM type of a 0-d value passed by value (as ctypes passes it)."""
    import llvmlite.ir as ir

    return {"f64": ir.DoubleType(), "f32": ir.FloatType(), "i64": ir.IntType(64), "bool": ir.IntType(8)}[dtype]


class _RegionBuilder:
    """The pieces of one region's LLVM function (`region_module`): the module,
    types and function, the element's lines, and per operand its dtype, base
    pointer and per-axis element strides once `operands` has read them."""

    def __init__(self, p: RegionPlan, h: Host, sym: str, raw: bool = False):
        import llvmlite.ir as ir

        self.p, self.h, self.dt, self.nd, self.raw = p, h, p.dtype, p.nd, raw
        self.body = Body(p.graph, backend="cpu")
        self.consts = [split_line(c) for c in self.body.consts]
        self.lines = [split_line(ln) for ln in self.body.lines]
        self.names = self.body.input_vars()
        self.n_in, self.n_out, self.n_sum = len(p.in_kind), len(p.out_dtype), len(p.sum_kind)
        self.mod = ir.Module(name="graphc_region")
        self.mod.triple = h.triple
        self.W = h.width(self.dt)
        self.t = t = LlvmTypes(self.mod, self.dt, self.W)
        params = [t.i64] * self.nd + [t.ptr if p.in_rank[k] else scalar_type(p.in_dtype[k]) for k in range(self.n_in)]
        params += [t.ptr] * (self.n_out + self.n_sum)
        if raw:  # each array operand's data pointer followed by its nd element strides
            params = params[:self.nd] + [x for k, a in enumerate(params[self.nd:])
                                         for x in ([a] + [t.i64] * self.nd if self.is_array(k) else [a])]
        self.fn = ir.Function(self.mod, ir.FunctionType(t.i32, params), name=f"{sym}_region")
        self.dims = list(self.fn.args[:self.nd])
        self.elem = {d: (t.f if d not in _ELEM else ir.IntType(_ELEM[d]))
                     for d in set(p.in_dtype) | set(p.out_dtype) | {self.dt}}
        self.dtypes = p.in_dtype + p.out_dtype + [self.dt] * self.n_sum
        self.zero = ir.Constant(t.vec, [ir.Constant(t.f, 0.0)] * self.W)
        self.bases: list = []
        self.strides: list[list] = []
        self.scalars: dict[int, Any] = {}
        self.spare = None

    def build(self):
        import llvmlite.ir as ir

        entry = ir.IRBuilder(self.fn.append_basic_block("entry"))
        b = self.raw_operands(entry) if self.raw else self.operands(entry)
        end = self.nest(b, 0, [ir.Constant(self.t.i64, 0)] * self.p.operands)
        end.ret(ir.Constant(self.t.i32, 0))
        return self.mod

    def is_array(self, k: int) -> bool:
        """Operand k is an array (a 0-d input is passed by value)."""
        return k >= self.n_in or bool(self.p.in_rank[k])

    def raw_operands(self, b):
        """The raw variant's operands: data pointers and element strides as arguments
        (the caller applies the broadcasting and layout rules `operands` checks)."""
        args = iter(self.fn.args[self.nd:])
        for k in range(self.p.operands):
            if not self.is_array(k):
                self.bases.append(None)
                self.strides.append([self.t.i64(0)] * self.nd)
                self.scalars[k] = next(args)
                continue
            self.bases.append(next(args))
            self.strides.append([next(args) for _ in range(self.nd)])
        self.spare = b.alloca(self.t.i64)
        return b

    def operands(self, b):
        """Each operand's data pointer and element strides, read from its array object
        (a 0-d input is its value); returns the builder where they all fit (the
        function returns 1 otherwise)."""
        import llvmlite.ir as ir

        p, t, nd, n_in, fn, dtypes = self.p, self.t, self.nd, self.n_in, self.fn, self.dtypes
        i64, objs = t.i64, fn.args[nd:]
        unit = [kind == "vec" for kind in p.in_kind] + [True] * self.n_out + [kind == "vec" for kind in p.sum_kind]
        ok = ir.Constant(t.i1, 1)
        bases, strides, scalars = self.bases, self.strides, self.scalars
        for k in range(p.operands):
            if k < n_in and not p.in_rank[k]:
                bases.append(None)
                strides.append([ir.Constant(i64, 0)] * nd)
                scalars[k] = objs[k]
                continue
            item = 1 if dtypes[k] == "bool" else 4 if dtypes[k] == "f32" else 8
            data, shape_p, step_p = abi.array_fields(b, objs[k])  # read where cpython_abi.abi() said so
            row = []
            for j, q in enumerate(p.axes[k]):
                if q is None:
                    row.append(ir.Constant(i64, 0))
                    continue
                qc = ir.Constant(i64, q)
                size = b.load(b.gep(shape_p, [qc], source_etype=i64), typ=i64)
                step = b.load(b.gep(step_p, [qc], source_etype=i64), typ=i64)
                ok = b.and_(ok, b.icmp_signed("==", b.and_(step, ir.Constant(i64, item - 1)), ir.Constant(i64, 0)))
                one = b.icmp_signed("==", size, ir.Constant(i64, 1))
                if j == nd - 1 and unit[k]:  # read or written as vectors: unit stride along the last axis
                    ok = b.and_(ok, b.or_(one, b.icmp_signed("==", step, ir.Constant(i64, item))))
                row.append(b.select(one, ir.Constant(i64, 0), b.sdiv(step, ir.Constant(i64, item))))
            bases.append(data)
            strides.append(row)
        self.spare = b.alloca(i64)  # where the lanes past the end of a row are stored
        go, refuse = fn.append_basic_block("go"), fn.append_basic_block("refuse")
        b.cbranch(ok, go, refuse)
        ir.IRBuilder(refuse).ret(ir.Constant(t.i32, 1))
        return ir.IRBuilder(go)

    # ------------------------------------------------ vectors

    def masked_load(self, e):
        """llvm.masked.load over <W x e> (stores go lane by lane: `LlvmTypes.store_lanes`)."""
        import llvmlite.ir as ir

        t, W = self.t, self.W
        vt = ir.VectorType(e, W)
        name = f"llvm.masked.load.v{W}{'f' if e is t.f else 'i'}{self.bits(e)}.p0"
        return self.mod.globals.get(name) or ir.Function(self.mod, ir.FunctionType(vt, [t.ptr, t.i32, t.mask_t, vt]),
                                                         name=name)

    def bits(self, e) -> int:
        return self.t.size * 8 if e is self.t.f else e.width

    def splat(self, bb, v, e):
        return splat(bb, v, self.W)

    def as_lanes(self, bb, v, d: str) -> tuple:
        """A loaded vector as Lower's (value, kind): floats as they are, bools as i1 lanes,
        integers converted to the float type."""
        import llvmlite.ir as ir

        if d == "bool":
            return bb.icmp_unsigned("!=", v, ir.Constant(v.type, None)), "b"
        if d == "i64":
            return bb.sitofp(v, self.t.vec), "f"
        return v, "f"

    # ------------------------------------------------ the loops

    def nest(self, bb, j: int, offs: list) -> Any:
        """Loops over axes j.. with each operand's element offset `offs`; returns the
        builder after them."""
        if j < self.nd - 1:
            def step(sb, i):
                return self.nest(sb, j + 1, [sb.add(o, sb.mul(i, self.strides[k][j])) for k, o in enumerate(offs)])
            return count_loop(self.fn, bb, self.dims[j], f"axis{j}", step)
        return self.inner(bb, offs)

    def compute(self, cb, vals: dict, mask) -> tuple[list, list]:
        """The element's lines over input vectors `vals` (by input index): the outputs
        to store and the summands, masked-off lanes (mask not None) zeroed in the
        summands."""
        import llvmlite.ir as ir

        p, body, W = self.p, self.body, self.W
        low = Lower(cb, self.mod, self.dt, W, self.h)
        for name, rhs in self.consts:
            low.line(name, rhs)
        for k in range(self.n_in):
            low.env[self.names[k]] = vals[k]
        for name, rhs in self.lines:
            low.line(name, rhs)
        results = []
        for j, d in enumerate(p.out_dtype):
            v = low.env[body.outputs[j]]
            if d == "bool":
                results.append(cb.zext(low.as_bool(v), ir.VectorType(self.elem[d], W)))
            elif d == "i64":
                raise GraphcError("the llvm target stores no integer region outputs")
            else:
                results.append(low.as_float(v))
        summands = [low.as_float(low.env[body.outputs[self.n_out + s]]) for s in range(self.n_sum)]
        if mask is not None:
            summands = [cb.select(mask, v, self.zero) for v in summands]
        return results, summands

    def row_inputs(self, bb, addr: list) -> dict:
        """The inputs read once per row (0-d or broadcast along the innermost axis), splat."""
        p, rows = self.p, {}
        for k, kind in enumerate(p.in_kind):
            if kind == "row":
                e = self.elem[p.in_dtype[k]]
                v = self.scalars[k] if k in self.scalars else bb.load(addr[k], typ=e)
                rows[k] = self.as_lanes(bb, self.splat(bb, v, e), p.in_dtype[k])
        return rows

    def vector_inputs(self, bb, addr: list, i, rows: dict, mask=None) -> dict:
        """Every input's vector at column i: plain loads, or masked (the last vector)."""
        import llvmlite.ir as ir

        p, W, vals = self.p, self.W, dict(rows)
        for k, kind in enumerate(p.in_kind):
            if kind != "vec":
                continue
            e = self.elem[p.in_dtype[k]]
            vt = ir.VectorType(e, W)
            if mask is None:
                v = bb.load(bb.gep(addr[k], [i], source_etype=e), typ=vt, align=self.bits(e) // 8)
            else:
                one = ir.Constant(vt, [ir.Constant(e, 1.0 if e is self.t.f else 1)] * W)  # no trap in dead lanes
                v = bb.call(self.masked_load(e), [bb.gep(addr[k], [i], source_etype=e),
                                                  ir.Constant(self.t.i32, self.bits(e) // 8), mask, one])
            vals[k] = self.as_lanes(bb, v, p.in_dtype[k])
        return vals

    def store(self, sb, addr: list, i, results: list, summands: list, left=None) -> None:
        """The outputs at column i and the kept-axis sums added there; lane by lane
        below `left` when given (the last vector)."""
        p, t, n_in, n_out = self.p, self.t, self.n_in, self.n_out
        for j, d in enumerate(p.out_dtype):
            a = sb.gep(addr[n_in + j], [i], source_etype=self.elem[d])
            if left is not None:
                t.store_lanes(sb, results[j], a, left, self.spare)
            else:
                sb.store(results[j], a, align=self.bits(self.elem[d]) // 8)
        for s, kind in enumerate(p.sum_kind):
            if kind != "vec":
                continue
            a = sb.gep(addr[n_in + n_out + s], [i], source_etype=t.f)
            if left is not None:
                old = sb.call(self.masked_load(t.f), [a, t.align, t.mask(sb, left), self.zero])
                t.store_lanes(sb, sb.fadd(old, summands[s]), a, left, self.spare)
            else:
                sb.store(sb.fadd(sb.load(a, typ=t.vec, align=t.size), summands[s]), a, align=t.size)

    def inner(self, bb, offs: list) -> Any:
        """The innermost axis: full vectors in a loop of plain loads and stores (LLVM
        unrolls it), then the last partial vector once, masked loads and lane stores;
        the innermost-axis sums in a register each, added into their cells after."""
        import llvmlite.ir as ir

        p, t, fn, W, i64 = self.p, self.t, self.fn, self.W, self.t.i64
        n = self.dims[self.nd - 1]
        addr = [bb.gep(self.bases[k], [offs[k]], source_etype=self.elem[d]) if self.bases[k] is not None else None
                for k, d in enumerate(self.dtypes)]
        rows = self.row_inputs(bb, addr)
        wc = ir.Constant(i64, W)
        pre = bb.block
        head, full, check, tail, after = (fn.append_basic_block(x) for x in
                                          ("head", "full", "check", "tail", "after"))
        bb.branch(head)
        hb = ir.IRBuilder(head)
        i = hb.phi(i64, "i")
        i.add_incoming(ir.Constant(i64, 0), pre)
        hsums = [s for s, kind in enumerate(p.sum_kind) if kind == "hsum"]
        accs = {s: hb.phi(t.vec) for s in hsums}  # a register per row
        for a in accs.values():
            a.add_incoming(self.zero, pre)
        hb.cbranch(hb.icmp_signed("<=", hb.add(i, wc), n), full, check)

        fb = ir.IRBuilder(full)
        results, summands = self.compute(fb, self.vector_inputs(fb, addr, i, rows), None)
        self.store(fb, addr, i, results, summands)
        i.add_incoming(fb.add(i, wc), fb.block)
        for s in hsums:
            accs[s].add_incoming(fb.fadd(accs[s], summands[s]), fb.block)
        fb.branch(head)

        cb = ir.IRBuilder(check)
        cb.cbranch(cb.icmp_signed("<", i, n), tail, after)
        tb = ir.IRBuilder(tail)
        left = tb.sub(n, i)
        mask = t.mask(tb, left)
        results, summands = self.compute(tb, self.vector_inputs(tb, addr, i, rows, mask), mask)
        self.store(tb, addr, i, results, summands, left)
        tail_accs = {s: tb.fadd(accs[s], summands[s]) for s in hsums}
        tb.branch(after)
        ab = ir.IRBuilder(after)
        ends = {s: ab.phi(t.vec) for s in hsums}  # phis first, then the adds
        for s in hsums:  # a row's register, its lanes added in order, into the sum's cell
            acc = ends[s]
            acc.add_incoming(accs[s], check)
            acc.add_incoming(tail_accs[s], tb.block)
            total = ab.extract_element(acc, ir.Constant(t.i32, 0))
            for lane in range(1, W):
                total = ab.fadd(total, ab.extract_element(acc, ir.Constant(t.i32, lane)))
            cell = addr[self.n_in + self.n_out + s]
            ab.store(ab.fadd(ab.load(cell, typ=t.f), total), cell)
        return ab


def region_module(p: RegionPlan, h: Host, sym: str, raw: bool = False):
    """`<sym>_region(d0.., operands..) -> i32`: the loop nest over dims d0..,
    each operand a NumPy array object (its data pointer and strides read from the
    array itself: no marshalling per call) or, for a 0-d input, its value.
    Returns 1, doing nothing, when an operand read or written as vectors is
    strided along its last axis (the caller then passes contiguous copies).
    `raw`: each array operand is its data pointer and its nd element strides
    instead (0 on a broadcast axis; unit along the last axis where read or written
    as vectors), returning 0 (the LLVM whole step, `llvm_step.py`)."""
    return _RegionBuilder(p, h, sym, raw).build()


# ------------------------------------------------------------------ cross_entropy rows


def _array(b, obj, rank: int, item: int):
    """An array object's data pointer, sizes and byte strides (PyArrayObject's fields),
    and whether it is C-contiguous (an axis of size 1 may have any stride)."""
    import llvmlite.ir as ir

    i64 = ir.IntType(64)
    data, shape_p, step_p = abi.array_fields(b, obj)
    sizes = [b.load(b.gep(shape_p, [ir.Constant(i64, q)], source_etype=i64), typ=i64) for q in range(rank)]
    steps = [b.load(b.gep(step_p, [ir.Constant(i64, q)], source_etype=i64), typ=i64) for q in range(rank)]
    ok, span = ir.Constant(ir.IntType(1), 1), ir.Constant(i64, item)
    for q in reversed(range(rank)):
        fits = b.or_(b.icmp_signed("==", sizes[q], ir.Constant(i64, 1)), b.icmp_signed("==", steps[q], span))
        ok = b.and_(ok, fits)
        span = b.mul(span, sizes[q])
    return data, sizes, steps, ok


def xent_module(dtype: str, h: Host, sym: str, raw: bool = False):
    """`<sym>_xent(s, y, p, d, losses, with_diff) -> i32`: the passes of
    `plan.XENT_ROW` per row of the scores, each row in vectors of the host's width (masked last
    vector; libmvec's exp where present). The arguments are NumPy array objects;
    returns 1, doing nothing, unless they are C-contiguous. Labels are checked in
    range by the caller. `raw`: `<sym>_xent(s, y, p, d, losses, n, c, with_diff)`
    over C-contiguous data pointers, returning 2, doing nothing, when a label is
    out of range (the LLVM whole step, `llvm_step.py`)."""
    import llvmlite.ir as ir

    mod = ir.Module(name="graphc_xent")
    mod.triple = h.triple
    W = h.width(dtype)
    t = LlvmTypes(mod, dtype, W)
    i64, i32, ptr, f, vec = t.i64, t.i32, t.ptr, t.f, t.vec
    fn = ir.Function(mod, ir.FunctionType(i32, [ptr] * 5 + [i64] * (3 if raw else 1)), name=f"{sym}_xent")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    m_slot, z_slot = b.alloca(vec), b.alloca(vec)  # in the entry block: promoted to registers
    spare = b.alloca(i64)
    go, refuse = fn.append_basic_block("go"), fn.append_basic_block("refuse")
    if raw:
        s, y, p, d, losses, n, c, with_diff = fn.args
        diff = b.icmp_signed("!=", with_diff, ir.Constant(i64, 0))
        bad = b.alloca(i64)
        b.store(ir.Constant(i64, 0), bad)

        def check(lb, i):  # a label outside [0, c), counted without a branch
            label = lb.load(lb.gep(y, [i], source_etype=i64), typ=i64)
            out = lb.or_(lb.icmp_signed("<", label, ir.Constant(i64, 0)), lb.icmp_signed(">=", label, c))
            lb.store(lb.add(lb.load(bad, typ=i64), lb.zext(out, i64)), bad)
        b = count_loop(fn, b, n, "labels", check)
        ok = b.icmp_signed("==", b.load(bad, typ=i64), ir.Constant(i64, 0))
    else:
        so, yo, po, do, lo, with_diff = fn.args
        s, (n, c), _, ok = _array(b, so, 2, t.size)
        y, _, _, ok_y = _array(b, yo, 1, 8)
        p, _, _, ok_p = _array(b, po, 2, t.size)
        d, _, _, ok_d = _array(b, do, 2, t.size)
        losses, _, _, ok_l = _array(b, lo, 1, t.size)
        diff = b.icmp_signed("!=", with_diff, ir.Constant(i64, 0))
        ok = b.and_(b.and_(ok, ok_y), b.and_(b.and_(ok_p, ok_l), b.or_(b.not_(diff), ok_d)))
    b.cbranch(ok, go, refuse)
    ir.IRBuilder(refuse).ret(ir.Constant(i32, 2 if raw else 1))
    b = ir.IRBuilder(go)
    zero, one = ir.Constant(f, 0.0), ir.Constant(f, 1.0)
    vzero = ir.Constant(vec, [zero] * W)
    vninf = ir.Constant(vec, [ir.Constant(f, float("-inf"))] * W)
    wc = ir.Constant(i64, W)
    chunks = b.sdiv(b.add(c, ir.Constant(i64, W - 1)), wc)

    def lanes(bb, k):
        """The k-th vector of a row: its first column and the mask of columns below c."""
        j = bb.mul(k, wc)
        return j, t.mask(bb, bb.sub(c, j))

    def hreduce(bb, v, pick):
        acc = bb.extract_element(v, ir.Constant(i32, 0))
        for lane in range(1, W):
            acc = pick(bb, acc, bb.extract_element(v, ir.Constant(i32, lane)))
        return acc

    def bigger(bb, m, v):  # v > m or v is NaN: NaN propagates, as numpy.max
        return bb.select(bb.or_(bb.fcmp_ordered(">", v, m), bb.fcmp_unordered("uno", v, v)), v, m)

    vone = ir.Constant(vec, [one] * W)

    def row_max(rb, r):
        rb.store(vninf, m_slot)

        def find_max(mb, k):
            j, mask = lanes(mb, k)
            v = mb.call(t.mload, [mb.gep(r["s"], [j], source_etype=f), t.align, mask, vninf])
            mb.store(bigger(mb, mb.load(m_slot, typ=vec), v), m_slot)
        rb = count_loop(fn, rb, chunks, "max", find_max)
        m = hreduce(rb, rb.load(m_slot, typ=vec), bigger)
        r["m"] = rb.select(rb.fcmp_ordered("==", rb.fsub(m, m), zero), m, zero)  # infinite or NaN: shift by 0
        return rb

    def row_exp_sum(rb, r):
        vm = splat(rb, r["m"], W)
        rb.store(vzero, z_slot)

        def expo(eb, k):
            j, mask = lanes(eb, k)
            # lanes past the row read the max: exp(0) there, not exp(-inf), which sends libmvec's
            # vector exp to its scalar fallback for every such lane (3 classes in 16 lanes: 13 calls)
            v = eb.call(t.mload, [eb.gep(r["s"], [j], source_etype=f), t.align, mask, vm])
            e = Lower(eb, mod, dtype, W, h).libm("exp", eb.fsub(v, vm))
            e = eb.select(mask, e, vzero)
            eb.store(eb.fadd(eb.load(z_slot, typ=vec), e), z_slot)
            t.store_tail(eb, e, eb.gep(r["p"], [j], source_etype=f), eb.sub(c, j), spare)
        rb = count_loop(fn, rb, chunks, "exp", expo)
        r["z"] = hreduce(rb, rb.load(z_slot, typ=vec), lambda bb, a, x: bb.fadd(a, x))
        return rb

    def row_normalize(rb, r):
        vz = splat(rb, r["z"], W)
        vlabel = splat(rb, r["y"], W)

        def norm(nb, k):
            j, mask = lanes(nb, k)
            a = nb.gep(r["p"], [j], source_etype=f)
            q = nb.fdiv(nb.call(t.mload, [a, t.align, mask, vone]), vz)
            left = nb.sub(c, j)
            cols = nb.add(t.lanes, splat(nb, j, W))
            hot = nb.select(nb.icmp_signed("==", cols, vlabel), vone, vzero)
            t.store_tail(nb, q, a, left, spare)
            t.store_tail(nb, nb.fsub(q, hot), nb.gep(r["d"], [j], source_etype=f),
                         nb.select(diff, left, ir.Constant(i64, 0)), spare)  # no d: every lane to the spare slot
        return count_loop(fn, rb, chunks, "norm", norm)

    def row_nll(rb, r):
        picked = rb.load(rb.gep(r["s"], [r["y"]], source_etype=f), typ=f)
        loss = rb.fneg(rb.fsub(picked, rb.fadd(Lower(rb, mod, dtype, None, h).libm("log", r["z"]), r["m"])))
        rb.store(loss, rb.gep(losses, [r["i"]], source_etype=f))
        return rb

    passes = {"max": row_max, "exp_sum": row_exp_sum, "normalize": row_normalize, "nll": row_nll}

    def row(rb, i):
        base = rb.mul(i, c)
        r = {"i": i, "s": rb.gep(s, [base], source_etype=f), "p": rb.gep(p, [base], source_etype=f),
             "d": rb.gep(d, [base], source_etype=f), "y": rb.load(rb.gep(y, [i], source_etype=i64), typ=i64)}
        for op in XENT_ROW:  # the plan's passes, in its order
            rb = passes[op.kind](rb, r)
        return rb

    count_loop(fn, b, n, "row", row).ret(ir.Constant(i32, 0))
    return mod


# ------------------------------------------------------------------ the kernel


def _strides(a: np.ndarray, nd: int, item: int) -> list[int]:
    """Element strides of `a` over the region's nd axes (right-aligned; a missing or
    size-1 axis reads index 0: stride 0)."""
    off = nd - a.ndim
    return [0] * off + [0 if d == 1 else s // item for d, s in zip(a.shape, a.strides)]


class LlvmTensorKernel(PlanKernel):
    """The tensor plan with its loop and row steps compiled by llvmlite."""

    def __init__(self, graph: Graph, target: str, parallel: bool):
        super().__init__(graph, target, parallel)
        self._host = h = host()
        self._loops: dict[str, RegionPlan] = {}  # a region's key -> its static loop layout
        for s in self.steps:
            if isinstance(s, Region):
                layout = RegionPlan(s, graph.dtype)
                s.key = _key(h, "region", layout.signature)
                self._loops[s.key] = layout
            elif isinstance(s, Xent):
                s.key = _key(h, "xent", graph.dtype)
        from .step import whole_step

        self._step = whole_step(self)  # the plan as one LLVM function, where every step has a form there

    def run_tensor(self, arrays, dims, out=None):
        if self._step is not None and out is None:  # the whole step makes its outputs: no Python between
            with self._lock:
                got = self._step.call(arrays, dims)
            if got is not None:
                return got
        return super().run_tensor(arrays, dims, out)

    def _run_fast(self, arrays, dims, buffer, given):
        return self._step.run(arrays, dims, given) if self._step is not None and given else None

    # what the whole step (llvm_step.py) builds from: this module's loops and rows, raw variants
    @property
    def host(self) -> Host:
        return self._host

    def cache_key(self, *parts: str) -> str:
        return _key(self._host, *parts)

    def region_plan(self, r: Region) -> RegionPlan:
        return self._loops.get(r.key) or RegionPlan(r, self.graph.dtype)

    def raw_region(self, p: RegionPlan, sym: str):
        """The raw loop nest's builder: `.fn.ftype` its type, `.build()` its module."""
        return _RegionBuilder(p, self._host, sym, raw=True)

    def raw_xent(self, sym: str) -> str:
        return str(xent_module(self.graph.dtype, self._host, sym, raw=True))

    def _module(self, s: Region | Xent) -> str:
        sym = "graphc_t" + s.key[:20]
        if isinstance(s, Region):
            return str(region_module(self._loops[s.key], self._host, sym))
        return str(xent_module(self.graph.dtype, self._host, sym))

    def loop_function(self, step: LoopStep):
        r = step.region
        if not abi.abi():  # the LLVM steps read array objects' fields: not on a layout cpython_abi did not check
            return _numpy_region(r)
        h, layout = self._host, self._loops[r.key]
        sym = "graphc_t" + r.key[:20]
        try:
            obj = machine_code(r.key, lambda: self._module(r), h, (f"{sym}_region",), (f"{sym}_",))
        except GraphcError:  # a template outside what Lower handles: the region's NumPy form
            return _numpy_region(r)
        return _region_caller(Compiled(obj, h, sym, "region", region_prototype(layout)).kernel, layout)

    def row_function(self, step: RowStep):
        if not abi.abi():
            return _numpy_xent
        x, h = step.xent, self._host
        sym = "graphc_t" + x.key[:20]
        proto = ctypes.CFUNCTYPE(ctypes.c_int32, *([ctypes.py_object] * 5), ctypes.c_int64)
        obj = machine_code(x.key, lambda: self._module(x), h, (f"{sym}_xent",), (f"{sym}_",))
        return _xent_caller(Compiled(obj, h, sym, "xent", proto).kernel, self.np_dtype)

    def describe(self) -> str:
        """The schedule, then each fused step's LLVM IR (built on demand)."""
        text = describe_schedule(self.graph, self.steps, self.target)
        kernels = [s for s in self.steps if isinstance(s, (Region, Xent))]
        head = text.split("\n\n# ---- kernel 0")[0]
        parts = [head] + [f"\n# ---- kernel {k}\n{self._module(s)}" for k, s in enumerate(kernels)]
        if self._step is not None:
            parts.append(self._step.describe())
        return "\n".join(parts)


_CTYPE = {"f64": ctypes.c_double, "f32": ctypes.c_float, "i64": ctypes.c_int64, "bool": ctypes.c_bool}
_CONVERT = {"f64": float, "f32": float, "i64": int, "bool": bool}


def region_prototype(p: RegionPlan):
    """The ctypes type of a region's function: dims, then array objects (0-d inputs by value)."""
    ins = [ctypes.py_object if p.in_rank[k] else _CTYPE[d] for k, d in enumerate(p.in_dtype)]
    return ctypes.CFUNCTYPE(ctypes.c_int32, *([ctypes.c_int64] * p.nd), *ins,
                            *([ctypes.py_object] * (len(p.out_dtype) + len(p.sum_kind))))


def _region_caller(entry, p: RegionPlan):
    """A Python callable with the Numba region's signature (dims, inputs, outputs,
    sums). Arrays go to the function as objects: it reads their pointers and
    strides itself, so a call costs one ctypes call and a type check per array;
    one refused for a strided last axis is called again with contiguous copies."""
    nd, n_in = p.nd, len(p.in_kind)
    dts = [np.dtype(DTYPE_NUMPY[d]) for d in p.in_dtype + p.out_dtype] + \
        [np.dtype(DTYPE_NUMPY[p.dtype])] * len(p.sum_kind)
    arrays = [(nd + k, dts[k]) for k in range(p.operands) if k >= n_in or p.in_rank[k]]
    scalars = [(nd + k, _CONVERT[d]) for k, d in enumerate(p.in_dtype) if not p.in_rank[k]]

    def call(*args):
        args = list(args)
        for k, conv in scalars:
            args[k] = conv(args[k])
        for k, dt in arrays:
            a = args[k]
            if type(a) is not np.ndarray or (a.dtype is not dt and a.dtype != dt):
                if k >= nd + n_in:
                    raise GraphcError("a fused loop's buffer has the wrong type")  # never the user's data
                args[k] = np.asarray(a, dtype=dt)
        if entry(*args):  # an operand strided along its last axis: contiguous copies, written back
            copies = []
            for k, _ in arrays:
                w = np.ascontiguousarray(args[k])
                if w is not args[k] and k >= nd + n_in:
                    copies.append((args[k], w))
                args[k] = w
            if entry(*args):
                raise GraphcError("the llvm region refused contiguous operands")
            for o, w in copies:
                np.copyto(o, w)
    return call


def _xent_caller(entry, dt: np.dtype):
    """The Numba xent's signature over the LLVM function (array objects in; one
    refused for its layout is called again with contiguous copies)."""
    i64 = np.dtype(np.int64)

    def call(scores, labels, p, d, losses, with_diff):
        args = [scores, labels, p, d, losses]
        for k, want in enumerate((dt, i64, dt, dt, dt)):
            a = args[k]
            if type(a) is not np.ndarray or (a.dtype is not want and a.dtype != want):
                args[k] = np.asarray(a, dtype=want)
        flag = 1 if with_diff else 0
        if entry(*args, flag):
            ws = [np.ascontiguousarray(a) for a in args]
            if entry(*ws, flag):
                raise GraphcError("the llvm cross_entropy kernel refused contiguous operands")
            for a, w in zip(args[2:], ws[2:]):
                if w is not a:
                    np.copyto(a, w)
        return True
    return call


def _numpy_region(r: Region):
    """A region the llvm lowering does not take, run as its NumPy form (same signature)."""
    g = region_graph(r)
    nd, n_in, n_out = len(r.shape), len(r.inputs), len(r.outputs)
    axes = [(n.attrs["axis"], n.attrs["keepdims"]) for n in r.reductions]

    def call(*args):
        ins = args[nd:nd + n_in]
        outs, sums = args[nd + n_in:nd + n_in + n_out], args[nd + n_in + n_out:]
        vals = evaluate(g, [np.asarray(a) for a in ins])
        for o, v in zip(outs, vals):
            o[...] = np.broadcast_to(v, o.shape)
        for acc, v, (ax, keep) in zip(sums, vals[n_out:], axes):
            v = np.broadcast_to(v, tuple(args[:nd]))
            acc += np.sum(v, axis=ax, keepdims=keep).reshape(acc.shape)
    return call


def _numpy_xent(scores, labels, p, d, losses, with_diff) -> bool:
    """`plan.XENT_ROW` over every row at once in NumPy, with the LLVM xent's
    signature: the step where the LLVM one may not read array objects."""
    s, y = np.asarray(scores), np.asarray(labels, dtype=np.int64)
    m = np.max(s, axis=1)  # NaN propagates
    m = np.where(m - m == 0, m, np.zeros_like(m))  # an infinite or NaN max shifts by 0
    np.exp(s - m[:, None], out=p)
    z = np.sum(p, axis=1)
    p /= z[:, None]
    rows = np.arange(s.shape[0])
    losses[...] = -(s[rows, y] - (np.log(z) + m))
    if with_diff:
        d[...] = p
        d[rows, y] -= 1
    return True
