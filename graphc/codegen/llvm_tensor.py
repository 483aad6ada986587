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
import hashlib
from typing import Any

import numpy as np

from ..errors import GraphcError
from ..ir import DTYPE_NUMPY, Graph
from .llvm_cpu import CODEGEN_VERSION, Compiled, Host, Lower, _address, _count_loop, _split, _Types, host, machine_code
from .numpy_ref import evaluate
from .scalar import Body
from .schedule import Region, Xent, describe_schedule, region_graph
from .tensor_cpu import TensorKernel

TENSOR_VERSION = "1"  # bump when the region or xent module changes for the same step
_ELEM = {"bool": 8, "i64": 64}  # integer element widths by dtype


def _key(h: Host, *parts: str) -> str:
    import llvmlite

    from ..version import __version__

    text = "\0".join((*parts, h.triple, h.cpu, h.features, str(h.mvec is not None), llvmlite.__version__,
                      __version__, CODEGEN_VERSION, TENSOR_VERSION))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


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
        self.sum_kind = ["hsum" if self.nd - 1 in n.attrs["axis"] else "vec" for n in r.reductions]
        self.graph = region_graph(r)
        self.signature = "\n".join([dtype, repr(self.in_kind), repr(self.in_dtype), repr(self.out_dtype),
                                    repr(self.sum_kind), str(self.nd), _graph_text(self.graph)])

    @property
    def operands(self) -> int:
        return len(self.in_kind) + len(self.out_dtype) + len(self.sum_kind)


def _graph_text(g: Graph) -> str:
    from ..ir import print_graph

    return print_graph(g)


def region_module(p: RegionPlan, h: Host, sym: str):
    """`<sym>_region(dims, ptrs, strides)`: the loop nest. `ptrs`: inputs, outputs,
    sums; `strides`: nd element strides per operand, in the same order."""
    import llvmlite.ir as ir

    dt = p.dtype
    body = Body(p.graph, backend="cpu")
    consts = [_split(c) for c in body.consts]
    lines = [_split(ln) for ln in body.lines]
    names = body.input_vars()
    n_in, n_out, n_sum = len(p.in_kind), len(p.out_dtype), len(p.sum_kind)
    mod = ir.Module(name="graphc_region")
    mod.triple = h.triple
    W = h.width(dt)
    t = _Types(mod, dt, W)
    i64, ptr = t.i64, t.ptr
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [ptr, ptr, ptr]), name=f"{sym}_region")
    dims_p, ptrs_p, strides_p = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    def at(base, k, typ):
        return b.load(b.gep(base, [ir.Constant(i64, k)], source_etype=typ), typ=typ)

    nd = p.nd
    dims = [at(dims_p, j, i64) for j in range(nd)]
    bases = [at(ptrs_p, k, ptr) for k in range(p.operands)]
    strides = [[at(strides_p, k * nd + j, i64) for j in range(nd)] for k in range(p.operands)]
    elem = {d: (t.f if d not in _ELEM else ir.IntType(_ELEM[d])) for d in set(p.in_dtype) | set(p.out_dtype) | {dt}}
    def intrinsic(kind: str, e):
        """llvm.masked.load / store over <W x e>."""
        vt = ir.VectorType(e, W)
        name = f"llvm.masked.{kind}.v{W}{'f' if e is t.f else 'i'}{_bits(e)}.p0"
        ty = ir.FunctionType(vt, [ptr, t.i32, t.mask_t, vt]) if kind == "load" else \
            ir.FunctionType(ir.VoidType(), [vt, ptr, t.i32, t.mask_t])
        return mod.globals.get(name) or ir.Function(mod, ty, name=name)

    def _bits(e) -> int:
        return t.size * 8 if e is t.f else e.width

    def splat(bb, v, e):
        vt = ir.VectorType(e, W)
        s = bb.insert_element(ir.Constant(vt, ir.Undefined), v, ir.Constant(t.i32, 0))
        return bb.shuffle_vector(s, ir.Constant(vt, ir.Undefined),
                                 ir.Constant(ir.VectorType(t.i32, W), [ir.Constant(t.i32, 0)] * W))

    def as_lanes(bb, v, d: str) -> tuple:
        """A loaded vector as Lower's (value, kind): floats as they are, bools as i1 lanes,
        integers converted to the float type."""
        if d == "bool":
            return bb.icmp_unsigned("!=", v, ir.Constant(v.type, None)), "b"
        if d == "i64":
            return bb.sitofp(v, t.vec), "f"
        return v, "f"

    def nest(bb, j: int, offs: list) -> Any:
        """Loops over axes j.. with each operand's element offset `offs`; returns the
        builder after them."""
        if j < nd - 1:
            def step(sb, i):
                return nest(sb, j + 1, [sb.add(o, sb.mul(i, strides[k][j])) for k, o in enumerate(offs)])
            return _count_loop_b(fn, bb, dims[j], f"axis{j}", step)
        return inner(bb, offs)

    def inner(bb, offs: list) -> Any:
        n = dims[nd - 1]
        addr = [bb.gep(bases[k], [offs[k]], source_etype=elem[d]) for k, d in
                enumerate(p.in_dtype + p.out_dtype)]
        addr += [bb.gep(bases[n_in + n_out + s], [offs[n_in + n_out + s]], source_etype=t.f) for s in range(n_sum)]
        rows = {}
        for k, kind in enumerate(p.in_kind):  # one value per row, splat to a vector
            if kind == "row":
                e = elem[p.in_dtype[k]]
                rows[k] = as_lanes(bb, splat(bb, bb.load(addr[k], typ=e), e), p.in_dtype[k])
        zero = ir.Constant(t.vec, [ir.Constant(t.f, 0.0)] * W)
        pre = bb.block
        head, test, lfull, lmask, work, sfull, smask, latch, after = (
            fn.append_basic_block(x) for x in ("head", "test", "load_full", "load_masked", "body", "store_full",
                                               "store_masked", "latch", "after"))
        bb.branch(head)
        hb = ir.IRBuilder(head)
        i = hb.phi(i64, "i")
        i.add_incoming(ir.Constant(i64, 0), pre)
        accs = [hb.phi(t.vec) if kind == "hsum" else None for kind in p.sum_kind]  # a register per row
        for a in accs:
            if a is not None:
                a.add_incoming(zero, pre)
        hb.cbranch(hb.icmp_signed("<", i, n), test, after)
        tb = ir.IRBuilder(test)
        left = tb.sub(n, i)
        full = tb.icmp_signed(">=", left, ir.Constant(i64, W))
        tb.cbranch(full, lfull, lmask)

        def loads(lb, masked_: bool):
            mask = t.mask(lb, left) if masked_ else ir.Constant(t.mask_t, [ir.Constant(t.i1, 1)] * W)
            vals = []
            for k, kind in enumerate(p.in_kind):
                if kind != "vec":
                    continue
                e = elem[p.in_dtype[k]]
                vt = ir.VectorType(e, W)
                a = lb.gep(addr[k], [i], source_etype=e)
                if masked_:
                    one = ir.Constant(vt, [ir.Constant(e, 1.0 if e is t.f else 1)] * W)  # no trap in dead lanes
                    vals.append(lb.call(intrinsic("load", e), [a, ir.Constant(t.i32, _bits(e) // 8), mask, one]))
                else:
                    vals.append(lb.load(a, typ=vt, align=_bits(e) // 8))
            return vals, mask

        lb = ir.IRBuilder(lfull)
        vf, mf = loads(lb, False)
        lb.branch(work)
        lb = ir.IRBuilder(lmask)
        vm, mm = loads(lb, True)
        lb.branch(work)
        wb = ir.IRBuilder(work)
        mask = wb.phi(t.mask_t)
        mask.add_incoming(mf, lfull)
        mask.add_incoming(mm, lmask)
        phis = {}
        for vi, k in enumerate(k for k, kind in enumerate(p.in_kind) if kind == "vec"):  # phis first
            phis[k] = wb.phi(vf[vi].type)
            phis[k].add_incoming(vf[vi], lfull)
            phis[k].add_incoming(vm[vi], lmask)
        low = Lower(wb, mod, dt, W, h)
        for name, rhs in consts:
            low.line(name, rhs)
        for k in range(n_in):
            low.env[names[k]] = rows[k] if k in rows else as_lanes(wb, phis[k], p.in_dtype[k])
        for name, rhs in lines:
            low.line(name, rhs)
        results = []
        for j, d in enumerate(p.out_dtype):
            v = low.env[body.outputs[j]]
            if d == "bool":
                results.append(wb.zext(low.as_bool(v), ir.VectorType(elem[d], W)))
            elif d == "i64":
                raise GraphcError("the llvm target stores no integer region outputs")
            else:
                results.append(low.as_float(v))
        summands = [low.as_float(low.env[body.outputs[n_out + s]]) for s in range(n_sum)]
        new_accs = []
        for s, kind in enumerate(p.sum_kind):
            new_accs.append(wb.fadd(accs[s], wb.select(mask, summands[s], zero)) if kind == "hsum" else None)
        wb.cbranch(full, sfull, smask)
        for blk, masked_ in ((sfull, False), (smask, True)):
            sb = ir.IRBuilder(blk)
            for j, d in enumerate(p.out_dtype):
                e = elem[d]
                a = sb.gep(addr[n_in + j], [i], source_etype=e)
                if masked_:
                    sb.call(intrinsic("store", e), [results[j], a, ir.Constant(t.i32, _bits(e) // 8), mask])
                else:
                    sb.store(results[j], a, align=_bits(e) // 8)
            for s, kind in enumerate(p.sum_kind):
                if kind != "vec":
                    continue
                a = sb.gep(addr[n_in + n_out + s], [i], source_etype=t.f)
                if masked_:
                    old = sb.call(intrinsic("load", t.f), [a, t.align, mask, zero])
                    sb.call(intrinsic("store", t.f), [sb.fadd(old, summands[s]), a, t.align, mask])
                else:
                    old = sb.load(a, typ=t.vec, align=t.size)
                    sb.store(sb.fadd(old, summands[s]), a, align=t.size)
            sb.branch(latch)
        lt = ir.IRBuilder(latch)
        i.add_incoming(lt.add(i, ir.Constant(i64, W)), latch)
        for a, na in zip(accs, new_accs):
            if a is not None:
                a.add_incoming(na, latch)
        lt.branch(head)
        ab = ir.IRBuilder(after)
        for s, kind in enumerate(p.sum_kind):  # a row's register, its lanes added in order, into the sum's cell
            if kind == "hsum":
                total = ab.extract_element(accs[s], ir.Constant(t.i32, 0))
                for lane in range(1, W):
                    total = ab.fadd(total, ab.extract_element(accs[s], ir.Constant(t.i32, lane)))
                cell = addr[n_in + n_out + s]
                ab.store(ab.fadd(ab.load(cell, typ=t.f), total), cell)
        return ab

    end = nest(b, 0, [ir.Constant(i64, 0)] * p.operands)
    end.ret_void()
    return mod


def _count_loop_b(fn, b, count, name: str, body) -> Any:
    """`_count_loop` whose body returns the builder it ends in (a nested loop)."""
    import llvmlite.ir as ir

    i64 = ir.IntType(64)
    pre = b.block
    head, step, after = (fn.append_basic_block(f"{name}_{x}") for x in ("head", "body", "after"))
    b.branch(head)
    hb = ir.IRBuilder(head)
    k = hb.phi(i64, f"{name}_k")
    k.add_incoming(ir.Constant(i64, 0), pre)
    hb.cbranch(hb.icmp_signed("<", k, count), step, after)
    sb = body(ir.IRBuilder(step), k)
    k.add_incoming(sb.add(k, ir.Constant(i64, 1)), sb.block)
    sb.branch(head)
    return ir.IRBuilder(after)


# ------------------------------------------------------------------ cross_entropy rows


def xent_module(dtype: str, h: Host, sym: str):
    """`<sym>_xent(n, c, s, y, p, d, losses, with_diff)`: XENT_ROW (schedule.py)
    per row of the C-contiguous scores; labels already checked in range."""
    import llvmlite.ir as ir

    mod = ir.Module(name="graphc_xent")
    mod.triple = h.triple
    t = _Types(mod, dtype, h.width(dtype))
    i64, ptr, f = t.i64, t.ptr, t.f
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [i64, i64, ptr, ptr, ptr, ptr, ptr, i64]),
                     name=f"{sym}_xent")
    n, c, s, y, p, d, losses, with_diff = fn.args
    suffix = "f" if dtype == "f32" else ""
    exp = ir.Function(mod, ir.FunctionType(f, [f]), name="exp" + suffix)
    log = ir.Function(mod, ir.FunctionType(f, [f]), name="log" + suffix)
    zero, one = ir.Constant(f, 0.0), ir.Constant(f, 1.0)
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    m_slot, z_slot = b.alloca(f), b.alloca(f)  # in the entry block: one slot each for every row

    def row(rb, i):
        base = rb.mul(i, c)
        srow = rb.gep(s, [base], source_etype=f)
        prow = rb.gep(p, [base], source_etype=f)
        rb.store(rb.load(srow, typ=f), m_slot)

        def find_max(mb, j):
            v = mb.load(mb.gep(srow, [j], source_etype=f), typ=f)
            m = mb.load(m_slot, typ=f)
            take = mb.or_(mb.fcmp_ordered(">", v, m), mb.fcmp_unordered("uno", v, v))  # NaN propagates
            mb.store(mb.select(take, v, m), m_slot)
        rb = _count_loop(fn, rb, c, "max", find_max, start=1)
        m = rb.load(m_slot, typ=f)
        finite = rb.fcmp_ordered("==", rb.fsub(m, m), zero)  # an infinite or NaN max shifts by 0
        m = rb.select(finite, m, zero)
        rb.store(zero, z_slot)

        def expo(eb, j):
            e = eb.call(exp, [eb.fsub(eb.load(eb.gep(srow, [j], source_etype=f), typ=f), m)])
            eb.store(e, eb.gep(prow, [j], source_etype=f))
            eb.store(eb.fadd(eb.load(z_slot, typ=f), e), z_slot)
        rb = _count_loop(fn, rb, c, "exp", expo)
        z = rb.load(z_slot, typ=f)

        def norm(nb, j):
            a = nb.gep(prow, [j], source_etype=f)
            nb.store(nb.fdiv(nb.load(a, typ=f), z), a)
        rb = _count_loop(fn, rb, c, "norm", norm)
        label = rb.load(rb.gep(y, [i], source_etype=i64), typ=i64)
        picked = rb.load(rb.gep(srow, [label], source_etype=f), typ=f)
        loss = rb.fneg(rb.fsub(picked, rb.fadd(rb.call(log, [z]), m)))
        rb.store(loss, rb.gep(losses, [i], source_etype=f))
        diff, done = fn.append_basic_block("diff"), fn.append_basic_block("row_done")
        rb.cbranch(rb.icmp_signed("!=", with_diff, ir.Constant(i64, 0)), diff, done)
        db = ir.IRBuilder(diff)
        drow = db.gep(d, [base], source_etype=f)

        def sub_hot(xb, j):
            hot = xb.select(xb.icmp_signed("==", j, label), one, zero)
            v = xb.load(xb.gep(prow, [j], source_etype=f), typ=f)
            xb.store(xb.fsub(v, hot), xb.gep(drow, [j], source_etype=f))
        db = _count_loop(fn, db, c, "diff", sub_hot)
        db.branch(done)
        return ir.IRBuilder(done)

    _count_loop_b(fn, b, n, "row", row).ret_void()
    return mod


# ------------------------------------------------------------------ the kernel


def _strides(a: np.ndarray, nd: int, item: int) -> list[int]:
    """Element strides of `a` over the region's nd axes (right-aligned; a missing or
    size-1 axis reads index 0: stride 0)."""
    off = nd - a.ndim
    return [0] * off + [0 if d == 1 else s // item for d, s in zip(a.shape, a.strides)]


class LlvmTensorKernel(TensorKernel):
    """The cpu target's tensor schedule with its fused steps compiled by llvmlite."""

    def __init__(self, graph: Graph, target: str, parallel: bool):
        self._host = host()
        super().__init__(graph, target, parallel)

    def _kernel_sources(self) -> None:
        h = self._host
        for s in self.steps:
            if isinstance(s, Region):
                plan = RegionPlan(s, self.graph.dtype)
                s.key = _key(h, "region", plan.signature)
                s.plan = plan
            elif isinstance(s, Xent):
                s.key = _key(h, "xent", self.graph.dtype)

    def _whole_step(self, plan: list) -> None:
        self._whole = None  # the one-function form is Numba's; here every step runs from the plan

    def _module(self, s) -> str:
        sym = "graphc_t" + s.key[:20]
        if isinstance(s, Region):
            return str(region_module(s.plan, self._host, sym))
        return str(xent_module(self.graph.dtype, self._host, sym))

    def _region_fn(self, r: Region | Xent, name: str = "region"):
        fn = self._compiled.get(r.key)
        if fn is None:
            fn = self._compiled[r.key] = self._load(r)
        return fn

    def _load(self, s):
        h = self._host
        sym = "graphc_t" + s.key[:20]
        if isinstance(s, Xent):
            proto = ctypes.CFUNCTYPE(None, *([ctypes.c_int64] * 2), *([ctypes.c_void_p] * 5), ctypes.c_int64)
            entry = Compiled(machine_code(s.key, lambda: self._module(s), h), h, sym, "xent", proto).kernel
            return _xent_caller(entry, np.dtype(DTYPE_NUMPY[self.graph.dtype]))
        try:
            obj = machine_code(s.key, lambda: self._module(s), h)
        except GraphcError:  # a template outside what Lower handles: the region's NumPy form
            return _numpy_region(s)
        proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
        return _region_caller(Compiled(obj, h, sym, "region", proto).kernel, s.plan)

    @property
    def source(self) -> str:
        """The schedule, then each fused step's LLVM IR (built on demand)."""
        text = describe_schedule(self.graph, self.steps, self.target)
        kernels = [s for s in self.steps if isinstance(s, (Region, Xent))]
        head = text.split("\n\n# ---- kernel 0")[0]
        parts = [head] + [f"\n# ---- kernel {k}\n{self._module(s)}" for k, s in enumerate(kernels)]
        return "\n".join(parts)

    @source.setter
    def source(self, value) -> None:  # TensorKernel sets it; here it is derived
        pass


def _region_caller(entry, p: RegionPlan):
    """A Python callable with the Numba region's signature (dims, inputs, outputs,
    sums) that passes pointers and strides to the LLVM function."""
    nd, n_in, n_out, n_sum = p.nd, len(p.in_kind), len(p.out_dtype), len(p.sum_kind)
    total = n_in + n_out + n_sum
    in_dt = [np.dtype(DTYPE_NUMPY[d]) for d in p.in_dtype]
    out_dt = [np.dtype(DTYPE_NUMPY[d]) for d in p.out_dtype]
    f_dt = np.dtype(DTYPE_NUMPY[p.dtype])
    axes = [(n.attrs["axis"], n.attrs["keepdims"]) for n in p.region.reductions]
    i64p = ctypes.c_int64 * nd
    ptrs_t, strides_t = ctypes.c_void_p * total, ctypes.c_int64 * (total * nd)

    def call(*args):
        dims = args[:nd]
        ins, outs, sums = args[nd:nd + n_in], args[nd + n_in:nd + n_in + n_out], args[nd + n_in + n_out:]
        keep, ptrs, strides = [], [], []
        for k, a in enumerate(ins):
            dt = in_dt[k]
            if type(a) is not np.ndarray or a.dtype != dt:
                a = np.asarray(a, dtype=dt)
            if a.ndim and (p.in_kind[k] == "vec" and a.shape[-1] != 1 and a.strides[-1] != dt.itemsize
                           or any(s % dt.itemsize for s in a.strides)):
                a = np.ascontiguousarray(a)
            keep.append(a)
            ptrs.append(_address(a) if a.ndim else a.reshape(1).ctypes.data)
            strides += _strides(a, nd, dt.itemsize) if a.ndim else [0] * nd
        copies = []
        for j, o in enumerate(outs):
            w = o if o.flags.c_contiguous and o.flags.writeable else np.empty(o.shape, dtype=out_dt[j])
            if w is not o:
                copies.append((o, w))
            ptrs.append(_address(w))
            strides += _strides(w, nd, out_dt[j].itemsize)
        for s, acc in enumerate(sums):
            ptrs.append(_address(acc))
            ax, keepdims = axes[s]
            st = [x // f_dt.itemsize for x in acc.strides]
            row, q = [], 0
            for j in range(nd):
                if j in ax:
                    row.append(0)
                    q += 1 if keepdims else 0
                else:
                    row.append(st[q] if q < len(st) and acc.shape[q] != 1 else 0)
                    q += 1
            strides += row
        entry(i64p(*dims), ptrs_t(*ptrs), strides_t(*strides))
        for o, w in copies:
            np.copyto(o, w)
    return call


def _xent_caller(entry, dt: np.dtype):
    def call(scores, labels, p, d, losses, with_diff):
        s = np.ascontiguousarray(scores, dtype=dt)
        y = np.ascontiguousarray(labels, dtype=np.int64)
        n, c = s.shape
        ws = [b if b.flags.c_contiguous and b.flags.writeable else np.empty_like(b) for b in (p, d, losses)]
        entry(n, c, s.ctypes.data, y.ctypes.data, ws[0].ctypes.data, ws[1].ctypes.data if d.size else 0,
              ws[2].ctypes.data, 1 if with_diff else 0)
        for b, w in zip((p, d, losses), ws):
            if w is not b:
                np.copyto(b, w)
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
