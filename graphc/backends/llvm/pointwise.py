"""The llvmlite backend (target "llvm"): graphc IR -> LLVM IR -> machine code,
with no Numba on the path.

The per-element code is the op registry's CPU templates (the same text the
Numba backend compiles), read as Python expressions and lowered by `Lower`:
arithmetic to IEEE instructions (no fast-math flags, no FMA contraction, so
results match the Numba targets bit for bit outside the vector math), `a if c
else b` to `select`, comparisons to ordered `fcmp` (`!=` unordered, as Python),
`math.f` to libm, sqrt/fabs/floor/ceil to LLVM intrinsics.

One kernel per formula serves every mix of scalar and array arguments:
`kernel(n, ins, strides, outs)` loops over n elements, input k read at
`ins[k][i * strides[k]]` (stride 1: an array, stride 0: a broadcast value, passed
as a small buffer of copies so a vector load of it stays in bounds). The body
is emitted once, over vectors of the host's width (AVX-512: 8 doubles,
AVX2/AVX: 4, SSE: 2; float32 twice as many), with the vector math of glibc's
libmvec (`_ZGVdN4v_exp`, ...; up to 4 ULP) where it is present and the
function has a vector form, else lane by lane through libm; loads and stores
are masked to the lanes below n, so the last partial vector and a single point
(n = 1) run the same code.

Machine code is cached as an object file beside the LLVM IR text (readable),
both checksummed, keyed with a hash of graphc's source (`cache.code_hash`); a
cached object is loaded only after its symbol table was read (`object_fits`:
a well-formed object of this host defining the expected symbols, no others), else
rebuilt; a cached kernel loads without Numba.
"""

from __future__ import annotations

import ast
import ctypes
import ctypes.util
import hashlib
import os
import platform
import re
import struct
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ...errors import GraphcError
from ...ir import Graph, print_graph
from .. import cache, targets
from ..buffers import OverlapMemo, host_outputs
from ..kernel import Kernel
from ..scalar import Body
from .ir import count_loop, splat

# math functions by their libm name; the float32 form adds "f"
LIBM_1 = {"exp", "log", "log10", "log2", "log1p", "expm1", "sin", "cos", "tan", "asin", "acos", "atan", "sinh",
          "cosh", "tanh", "asinh", "acosh", "atanh", "erf", "erfc", "exp2", "cbrt"}
LIBM_2 = {"atan2", "hypot", "pow"}
INTRINSIC_1 = {"sqrt": "llvm.sqrt", "fabs": "llvm.fabs", "floor": "llvm.floor", "ceil": "llvm.ceil"}


class LlvmUnavailableError(GraphcError):
    """llvmlite cannot build kernels for this machine."""


class Host:
    """The machine the kernels are built for: LLVM's target machine, the vector
    width, and which libmvec vector functions exist (detected, never assumed)."""

    def __init__(self) -> None:
        import llvmlite.binding as llvm

        self.llvm = llvm
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        self.cpu = llvm.get_host_cpu_name()
        features = llvm.get_host_cpu_features()
        self.features = features.flatten()
        target = llvm.Target.from_default_triple()
        self.triple = llvm.get_process_triple()
        self.tm = target.create_target_machine(cpu=self.cpu, features=self.features, opt=3, reloc="default",
                                               codemodel="jitdefault")
        x86 = platform.machine().lower() in ("x86_64", "amd64")
        has = {k for k, v in features.items() if v}
        if x86 and "avx512f" in has:
            self.bits, self.isa = 512, "e"
        elif x86 and "avx2" in has:
            self.bits, self.isa = 256, "d"
        elif x86 and "avx" in has:
            self.bits, self.isa = 256, "c"
        else:
            self.bits, self.isa = 128, "b"
        self.mvec: ctypes.CDLL | None = None
        if x86 and os.environ.get("GRAPHC_NO_LIBMVEC", "") in ("", "0"):
            name = ctypes.util.find_library("mvec")
            if name:
                try:
                    self.mvec = ctypes.CDLL(name)
                    llvm.load_library_permanently(name)
                except OSError:
                    self.mvec = None
        from . import entries as llvm_python

        self.pyapi = llvm_python.link(llvm)  # kernels get METH_FASTCALL entries (llvm_python.py, cpython_abi.py)
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), self.tm)
        self.lock = threading.Lock()
        self._target, self._fast_tm = target, None

    def machine(self, fast: bool = False):
        """The target machine that emits code: optimising (the default), or for a
        huge module LLVM's fast instruction selection (opt 0: ~4x quicker codegen)."""
        if not fast:
            return self.tm
        if self._fast_tm is None:
            self._fast_tm = self._target.create_target_machine(cpu=self.cpu, features=self.features, opt=0,
                                                               reloc="default", codemodel="jitdefault")
        return self._fast_tm

    def width(self, dtype: str) -> int:
        return self.bits // (64 if dtype == "f64" else 32)

    def vector_name(self, fn: str, dtype: str, nargs: int) -> str | None:
        """libmvec's name for `fn` over the host's vectors, if the library has it."""
        if self.mvec is None:
            return None
        name = f"_ZGV{self.isa}N{self.width(dtype)}{'v' * nargs}_{fn}{'f' if dtype == 'f32' else ''}"
        return name if hasattr(self.mvec, name) else None

    def describe(self) -> str:
        lib = "libmvec" if self.mvec is not None else "no libmvec (scalar libm calls)"
        return f"{self.triple} {self.cpu}, {self.bits}-bit vectors, {lib}"


_HOST: Host | None = None
_HOST_LOCK = threading.Lock()


def host() -> Host:
    global _HOST
    if _HOST is None:
        with _HOST_LOCK:
            if _HOST is None:
                try:
                    _HOST = Host()
                except Exception as exc:  # llvmlite missing or unable to target this machine
                    raise LlvmUnavailableError(f"the llvm target is not usable here ({type(exc).__name__}: "
                                               f"{exc}); use target='cpu'") from None
    return _HOST


# ------------------------------------------------------------------ lowering


class Lower:
    """Lowers the per-element lines (Python expressions over x*, c*, t*, p*) to
    LLVM instructions over one lane type: a scalar, or a vector of `width`."""

    def __init__(self, builder, module, dtype: str, width: int | None, host: Host):
        import llvmlite.ir as ir

        self.ir, self.b, self.module, self.dtype, self.width, self.host = ir, builder, module, dtype, width, host
        self.f = ir.DoubleType() if dtype == "f64" else ir.FloatType()
        self.t = ir.VectorType(self.f, width) if width else self.f
        self.bool_t = ir.VectorType(ir.IntType(1), width) if width else ir.IntType(1)
        self.env: dict[str, tuple[Any, str]] = {}  # name -> (value, "f" float lanes | "b" bool lanes)

    # values
    def const(self, x: float):
        c = self.ir.Constant(self.f, float(x))
        return self.ir.Constant(self.t, [c] * self.width) if self.width else c

    def as_float(self, v: tuple) -> Any:
        val, kind = v
        return val if kind == "f" else self.b.uitofp(val, self.t)

    def as_bool(self, v: tuple) -> Any:
        val, kind = v
        return val if kind == "b" else self.b.fcmp_unordered("!=", val, self.const(0.0))  # truthiness

    # functions
    def _declare(self, name: str, ret, args: list):
        fn = self.module.globals.get(name)
        if fn is None:
            fn = self.ir.Function(self.module, self.ir.FunctionType(ret, args), name=name)
        return fn

    def intrinsic(self, base: str, *args):
        suffix = f"v{self.width}f{32 if self.dtype == 'f32' else 64}" if self.width else \
            ("f32" if self.dtype == "f32" else "f64")
        return self.b.call(self._declare(f"{base}.{suffix}", self.t, [self.t] * len(args)), list(args))

    def libm(self, fn: str, *args):
        """A math function: libmvec's vector form, else libm lane by lane."""
        if self.width:
            vname = self.host.vector_name(fn, self.dtype, len(args))
            if vname is not None:
                return self.b.call(self._declare(vname, self.t, [self.t] * len(args)), list(args))
        sname = fn + ("f" if self.dtype == "f32" else "")
        scalar = self._declare(sname, self.f, [self.f] * len(args))
        if not self.width:
            return self.b.call(scalar, list(args))
        out = self.ir.Constant(self.t, self.ir.Undefined)
        for lane in range(self.width):
            idx = self.ir.Constant(self.ir.IntType(32), lane)
            r = self.b.call(scalar, [self.b.extract_element(a, idx) for a in args])
            out = self.b.insert_element(out, r, idx)
        return out

    # expressions
    def line(self, name: str, expr: str) -> None:
        self.env[name] = self.expr(ast.parse(expr, mode="eval").body)

    def expr(self, e: ast.AST) -> tuple:
        b = self.b
        if isinstance(e, ast.Name):
            return self.env[e.id]
        if isinstance(e, ast.Constant) and isinstance(e.value, (int, float)) and not isinstance(e.value, bool):
            return self.const(e.value), "f"
        if isinstance(e, ast.Call):
            return self.call(e)
        if isinstance(e, ast.UnaryOp):
            v = self.expr(e.operand)
            if isinstance(e.op, ast.USub):
                return b.fneg(self.as_float(v)), "f"
            if isinstance(e.op, ast.Not):
                return b.not_(self.as_bool(v)), "b"
        if isinstance(e, ast.BinOp):
            x, y = self.as_float(self.expr(e.left)), self.as_float(self.expr(e.right))
            ops = {ast.Add: b.fadd, ast.Sub: b.fsub, ast.Mult: b.fmul, ast.Div: b.fdiv}
            if type(e.op) in ops:
                return ops[type(e.op)](x, y), "f"
            if isinstance(e.op, ast.Pow):
                return self.libm("pow", x, y), "f"
        if isinstance(e, ast.Compare) and len(e.ops) == 1:
            x, y = self.as_float(self.expr(e.left)), self.as_float(self.expr(e.comparators[0]))
            op = {ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<=", ast.Eq: "=="}.get(type(e.ops[0]))
            if op is not None:
                return b.fcmp_ordered(op, x, y), "b"
            if isinstance(e.ops[0], ast.NotEq):
                return b.fcmp_unordered("!=", x, y), "b"
        if isinstance(e, ast.BoolOp):
            vals = [self.as_bool(self.expr(v)) for v in e.values]
            acc = vals[0]
            for v in vals[1:]:
                acc = b.or_(acc, v) if isinstance(e.op, ast.Or) else b.and_(acc, v)
            return acc, "b"
        if isinstance(e, ast.IfExp):
            cond = self.as_bool(self.expr(e.test))
            yes, no = self.expr(e.body), self.expr(e.orelse)
            if yes[1] == "b" and no[1] == "b":
                return b.select(cond, yes[0], no[0]), "b"
            return b.select(cond, self.as_float(yes), self.as_float(no)), "f"
        raise GraphcError(f"the llvm target cannot lower {ast.unparse(e)!r}")  # a template outside the subset

    def call(self, e: ast.Call) -> tuple:
        f = ast.unparse(e.func)
        if f == "F":  # a typed constant: F(1.5), F(math.nan), F(-math.inf)
            return self.const(_number(e.args[0])), "f"
        args = [self.as_float(self.expr(a)) for a in e.args]
        name = f.split(".")[-1]
        if f == "abs":
            return self.intrinsic("llvm.fabs", *args), "f"
        if f == "max" and len(args) == 2:  # Python's max(a, b): b only when b > a
            return self.b.select(self.b.fcmp_ordered(">", args[1], args[0]), args[1], args[0]), "f"
        if f in ("np.floor", "np.ceil", "math.sqrt") or (f.startswith("math.") and name in INTRINSIC_1):
            return self.intrinsic(INTRINSIC_1[name], *args), "f"
        if f.startswith("math.") and (name in LIBM_1 and len(args) == 1 or name in LIBM_2 and len(args) == 2):
            return self.libm(name, *args), "f"
        raise GraphcError(f"the llvm target cannot lower the call {ast.unparse(e)!r}")


def _number(e: ast.AST) -> float:
    if isinstance(e, ast.Constant):
        return float(e.value)
    if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.USub):
        return -_number(e.operand)
    text = ast.unparse(e)
    if text in ("math.nan", "math.inf"):
        return float(text.split(".")[1])
    raise GraphcError(f"not a constant: {text!r}")


def split_line(line: str) -> tuple[str, str]:
    name, _, rhs = line.partition(" = ")
    return name.strip(), rhs.split("  #")[0].strip()


def symbol(graph: Graph) -> str:
    """The module's symbol prefix: one engine holds every kernel of the process."""
    return "graphc_" + hashlib.sha256(f"{graph.dtype}\n{print_graph(graph)}".encode()).hexdigest()[:20]


# A kernel is cut into parts of CHUNK lines when its body has more than INLINE_MAX lines and
# either many arguments (inputs + outputs > WIDE) or more than HUGE lines: LLVM's codegen of
# one huge block is superlinear (a 1,500-input sum: 15.6 s in one block, 2.6 s in parts),
# while a long chain of few arguments compiles faster in one (1,000 tanh: 1.8 s vs 2.5 s)
INLINE_MAX, WIDE, HUGE, CHUNK = 400, 64, 4000, 64
_NAME = re.compile(r"\b[xctp]\d+\b")


class LlvmTypes:
    """The LLVM types and masked-memory intrinsics one module's segments share."""

    def __init__(self, mod, dt: str, width: int):
        import llvmlite.ir as ir

        self.ir, self.width = ir, width
        self.i64, self.i32, self.i1, self.ptr = ir.IntType(64), ir.IntType(32), ir.IntType(1), ir.PointerType()
        self.f = ir.DoubleType() if dt == "f64" else ir.FloatType()
        self.vec, self.mask_t = ir.VectorType(self.f, width), ir.VectorType(self.i1, width)
        self.size = 8 if dt == "f64" else 4
        suffix = f"v{width}f{self.size * 8}.p0"
        self.mload = ir.Function(mod, ir.FunctionType(self.vec, [self.ptr, self.i32, self.mask_t, self.vec]),
                                 name=f"llvm.masked.load.{suffix}")
        self.mstore = ir.Function(mod, ir.FunctionType(ir.VoidType(), [self.vec, self.ptr, self.i32, self.mask_t]),
                                  name=f"llvm.masked.store.{suffix}")
        self.lanes = ir.Constant(ir.VectorType(self.i64, width), [ir.Constant(self.i64, k) for k in range(width)])
        self.align = ir.Constant(self.i32, self.size)

    def store_lanes(self, b, v, addr, left, spare) -> None:
        """Store the lanes of vector `v` below `left` at `addr`, lane by lane (a lane
        past the end stores into `spare`, a stack slot of 8 bytes): masked vector
        stores are microcoded on AMD Zen, ~8x slower than the plain stores here."""
        ir = self.ir
        e = v.type.element
        for lane in range(self.width):
            inside = b.icmp_signed("<", ir.Constant(self.i64, lane), left)
            dst = b.select(inside, b.gep(addr, [ir.Constant(self.i64, lane)], source_etype=e), spare)
            b.store(b.extract_element(v, ir.Constant(self.i32, lane)), dst)

    def store_tail(self, b, v, addr, left, spare) -> None:
        """`store_lanes`, or one plain vector store when all `width` lanes are below
        `left`; `b` ends positioned after both."""
        ir = self.ir
        fn = b.function
        full, part, join = (fn.append_basic_block(x) for x in ("store_all", "store_some", "stored"))
        b.cbranch(b.icmp_signed(">=", left, ir.Constant(self.i64, self.width)), full, part)
        b.position_at_end(full)
        b.store(v, addr, align=_bytes(v.type.element))
        b.branch(join)
        b.position_at_end(part)
        self.store_lanes(b, v, addr, left, spare)
        b.branch(join)
        b.position_at_end(join)

    def mask(self, b, left):
        """Lanes below `left`: the last, partial vector's."""
        return b.icmp_signed("<", self.lanes, splat(b, left, self.width))


def _bytes(e) -> int:
    """The size of an LLVM scalar type in bytes (double, float, or an integer)."""
    import llvmlite.ir as ir

    return 8 if isinstance(e, ir.DoubleType) else 4 if isinstance(e, ir.FloatType) else max(1, e.width // 8)


class _Segment:
    """Some of the body's lines with what they read and write: inputs (by index),
    outputs (by index), and values kept in the scratch area between segments."""

    def __init__(self, lines, consts, inputs, outputs, loads, stores):
        self.lines, self.consts, self.inputs, self.outputs = lines, consts, inputs, outputs
        self.loads, self.stores = loads, stores  # [(name, slot)]


def _lines(t: LlvmTypes, fn, b, h: Host, dt: str, seg: _Segment, names: list[str], out_names: list[str],
           values: list, scratch) -> list:
    """A segment's lines over its input vectors `values`: constants, values from
    scratch slots, the lines, values to scratch slots; returns its outputs."""
    import llvmlite.ir as ir

    low = Lower(b, fn.module, dt, t.width, h)
    for name, rhs in seg.consts:
        low.line(name, rhs)
    for k, v in zip(seg.inputs, values):
        low.env[names[k]] = (v, "f")
    for name, slot in seg.loads:
        low.env[name] = (b.load(b.gep(scratch, [ir.Constant(t.i64, slot)], source_etype=t.vec), typ=t.vec), "f")
    for name, rhs in seg.lines:
        low.line(name, rhs)
    for name, slot in seg.stores:
        b.store(low.as_float(low.env[name]), b.gep(scratch, [ir.Constant(t.i64, slot)], source_etype=t.vec))
    return [low.as_float(low.env[out_names[j]]) for j in seg.outputs]


def _emit_segment(t: LlvmTypes, fn, b, h: Host, dt: str, seg: _Segment, names: list[str], out_names: list[str],
                  i, left, in_ptr, in_stride, out_ptr, scratch, after):
    """One iteration's work for a segment, from builder `b` to block `after`:
    full vectors load and store plainly; only the last, partial one is masked
    (masked stores are microcoded on AMD Zen: ~8x slower per element); the lines
    between are emitted once. With `left` None, every vector is full (a part of
    a big kernel, whose caller stages the tail)."""
    import llvmlite.ir as ir

    addrs = [b.gep(in_ptr(k), [b.mul(i, in_stride(k))], source_etype=t.f) for k in seg.inputs]
    oaddrs = [b.gep(out_ptr(j), [i], source_etype=t.f) for j in seg.outputs]
    if left is None:
        values = [b.load(a, typ=t.vec, align=t.size) for a in addrs]
        for r, a in zip(_lines(t, fn, b, h, dt, seg, names, out_names, values, scratch), oaddrs):
            b.store(r, a, align=t.size)
        b.branch(after)
        return
    full = b.icmp_signed(">=", left, ir.Constant(t.i64, t.width))
    lfull, lmask, body, sfull, smask = (fn.append_basic_block(x) for x in
                                        ("load_full", "load_masked", "body", "store_full", "store_masked"))
    b.cbranch(full, lfull, lmask)
    b = ir.IRBuilder(lfull)
    plain = [b.load(a, typ=t.vec, align=t.size) for a in addrs]
    b.branch(body)
    b = ir.IRBuilder(lmask)
    mask = t.mask(b, left)
    one = ir.Constant(t.vec, [ir.Constant(t.f, 1.0)] * t.width)  # masked-off lanes compute on 1.0; none traps
    masked = [b.call(t.mload, [a, t.align, mask, one]) for a in addrs]
    b.branch(body)
    b = ir.IRBuilder(body)
    phis = []
    for x, y in zip(plain, masked):
        phi = b.phi(t.vec)
        phi.add_incoming(x, lfull)
        phi.add_incoming(y, lmask)
        phis.append(phi)
    results = _lines(t, fn, b, h, dt, seg, names, out_names, phis, scratch)
    b.cbranch(full, sfull, smask)
    b = ir.IRBuilder(sfull)
    for r, a in zip(results, oaddrs):
        b.store(r, a, align=t.size)
    b.branch(after)
    b = ir.IRBuilder(smask)
    mask2 = t.mask(b, left)
    for r, a in zip(results, oaddrs):
        b.call(t.mstore, [r, a, t.align, mask2])
    b.branch(after)


def _segments(consts: list, lines: list, names: list[str], outputs: list[str]) -> tuple[list[_Segment], int]:
    """The body cut into segments of CHUNK lines; values read by a later segment
    pass through scratch slots, reused once their last reader has loaded them.
    Returns the segments and the number of slots."""
    index = {v: k for k, v in enumerate(names)}
    const_rhs = dict(consts)
    const_at = {n: k for k, (n, _) in enumerate(consts)}  # constants in their order (a constant may name one)
    chunks = [lines[a:a + CHUNK] for a in range(0, len(lines), CHUNK)] or [[]]
    defined = {name: c for c, chunk in enumerate(chunks) for name, _ in chunk}
    # an output is stored by the segment computing it, up to CHUNK stores a segment; the
    # rest (and outputs that are inputs or constants) by store-only segments at the end
    out_chunk, stored = [], [0] * len(chunks)
    overflow = []
    for j, r in enumerate(outputs):
        c = defined.get(r)
        if c is not None and stored[c] < CHUNK:
            stored[c] += 1
            out_chunk.append(c)
        else:
            out_chunk.append(-1)
            overflow.append(j)
    for a in range(0, len(overflow), CHUNK):
        for j in overflow[a:a + CHUNK]:
            out_chunk[j] = len(chunks)
        chunks.append([])
    reads = [set() for _ in chunks]
    for c, chunk in enumerate(chunks):
        for _, rhs in chunk:
            reads[c].update(_NAME.findall(rhs))
    outs_of: dict[int, list[int]] = {}
    for j, c in enumerate(out_chunk):
        reads[c].add(outputs[j])
        outs_of.setdefault(c, []).append(j)
    last_use: dict[str, int] = {}
    for c, rs in enumerate(reads):
        for r in rs:
            if r in defined and defined[r] != c:
                last_use[r] = max(last_use.get(r, c), c)
    free: list[int] = []
    slots: dict[str, int] = {}
    n_slots = 0
    segs = []
    for c, chunk in enumerate(chunks):
        loads = sorted((r, slots[r]) for r in reads[c] if r in defined and defined[r] != c)
        for r, slot in loads:
            if last_use[r] == c:
                free.append(slot)
        stores = []
        for name, _ in chunk:
            if name in last_use:
                if free:
                    slot = free.pop()
                else:
                    slot, n_slots = n_slots, n_slots + 1
                slots[name] = slot
                stores.append((name, slot))
        used = set(reads[c])
        need = [r for r in used if r in const_rhs]
        seen = set(need)
        while need:  # constants may name constants
            for r in _NAME.findall(const_rhs[need.pop()]):
                if r in const_rhs and r not in seen:
                    seen.add(r)
                    need.append(r)
        segs.append(_Segment(chunk, [(n, const_rhs[n]) for n in sorted(seen, key=const_at.__getitem__)],
                             sorted(index[r] for r in used if r in index), outs_of.get(c, []), loads, stores))
    return segs, n_slots


def build_module(graph: Graph, h: Host):
    """The LLVM module of a graph: `<symbol>_kernel(n, ins, strides, outs)`, one
    loop over vectors of the host's width whose loads and stores are masked to
    the lanes below n (all of them but in the last iteration), so the body is
    emitted once: no scalar copy for the tail, none for single points. A body of
    more than CHUNK lines is cut into `noinline` functions called in turn each
    iteration (values between them in a stack scratch area), so compile time
    stays linear in the formula's size."""
    import llvmlite.ir as ir

    sym = symbol(graph)
    body = Body(graph, backend="cpu")
    dt = graph.dtype
    consts = [split_line(c) for c in body.consts]
    lines = [split_line(ln) for ln in body.lines]
    names, out_names = body.input_vars(), list(body.outputs)
    mod = ir.Module(name="graphc")
    mod.triple = h.triple
    t = LlvmTypes(mod, dt, h.width(dt))
    i64, ptr = t.i64, t.ptr
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [i64, ptr, ptr, ptr]), name=f"{sym}_kernel")
    n, ins, strides, outs = fn.args
    entry, head, loop, latch, done = (fn.append_basic_block(x) for x in ("entry", "head", "loop", "latch", "done"))
    b = ir.IRBuilder(entry)
    if len(lines) <= INLINE_MAX or (len(names) + len(out_names) <= WIDE and len(lines) <= HUGE):
        segs, n_slots = [_Segment(lines, consts, list(range(len(names))), list(range(len(out_names))), [], [])], 0
    else:
        segs, n_slots = _segments(consts, lines, names, out_names)
    scratch = b.alloca(ir.ArrayType(t.vec, max(1, n_slots)), name="scratch") if n_slots else None

    def loader(base, typ, block_builder):
        cache_: dict[int, Any] = {}

        def get(k: int):
            if k not in cache_:
                cache_[k] = block_builder.load(block_builder.gep(base, [ir.Constant(i64, k)], source_etype=typ), typ=typ)
            return cache_[k]
        return get

    if len(segs) == 1:  # inline: the pointers and strides are read once, before the loop
        b.branch(head)
        hb = ir.IRBuilder(head)
        i = hb.phi(i64, "i")
        i.add_incoming(ir.Constant(i64, 0), entry)
        hb.cbranch(hb.icmp_signed("<", i, n), loop, done)
        b = ir.IRBuilder(loop)
        left = b.sub(n, i)
        eb = ir.IRBuilder(entry)
        eb.position_before(entry.instructions[-1])
        _emit_segment(t, fn, b, h, dt, segs[0], names, out_names, i, left, loader(ins, ptr, eb),
                      loader(strides, i64, eb), loader(outs, ptr, eb), scratch, latch)
        lb = ir.IRBuilder(latch)
        i.add_incoming(lb.add(i, ir.Constant(i64, t.width)), latch)
        lb.branch(head)
        ir.IRBuilder(done).ret_void()
        return mod
    # a big kernel: `noinline` parts over full vectors; the last, partial vector is staged
    # through heap buffers (padded with 1.0) so the parts need no masked code at all
    sig = ir.FunctionType(ir.VoidType(), [i64, ptr, ptr, ptr, ptr])
    parts = []
    for c, seg in enumerate(segs):
        part = ir.Function(mod, sig, name=f"{sym}_part{c}")
        part.attributes.add("noinline")
        pi, pins, pstrides, pouts, pscratch = part.args
        pentry, pdone = part.append_basic_block("entry"), part.append_basic_block("done")
        pb = ir.IRBuilder(pentry)
        _emit_segment(t, part, pb, h, dt, seg, names, out_names, pi, None, loader(pins, ptr, pb),
                      loader(pstrides, i64, pb), loader(pouts, ptr, pb), pscratch, pdone)
        ir.IRBuilder(pdone).ret_void()
        parts.append(part)
    scratch_arg = scratch if scratch is not None else ir.Constant(ptr, None)
    w = ir.Constant(i64, t.width)
    b.branch(head)
    hb = ir.IRBuilder(head)
    i = hb.phi(i64, "i")
    i.add_incoming(ir.Constant(i64, 0), entry)
    tail = fn.append_basic_block("tail")
    hb.cbranch(hb.icmp_signed("<=", hb.add(i, w), n), loop, tail)
    b = ir.IRBuilder(loop)
    for part in parts:
        b.call(part, [i, ins, strides, outs, scratch_arg])
    b.branch(latch)
    lb = ir.IRBuilder(latch)
    i.add_incoming(lb.add(i, w), latch)
    lb.branch(head)
    _staged_tail(t, fn, ir.IRBuilder(tail), parts, i, n, ins, strides, outs, scratch_arg, len(names),
                 len(out_names), done)
    ir.IRBuilder(done).ret_void()
    return mod


def _staged_tail(t: LlvmTypes, fn, b, parts, i, n, ins, strides, outs, scratch, n_in: int, n_out: int, done) -> None:
    """The last n - i < width elements of a big kernel: inputs copied lane by lane
    into a buffer (lanes past n read 1.0), the parts run on it at index 0, and
    the valid lanes of each output copied back."""
    import llvmlite.ir as ir

    i64, ptr = t.i64, t.ptr
    run = fn.append_basic_block("tail_run")
    b.cbranch(b.icmp_signed("<", i, n), run, done)
    b = ir.IRBuilder(run)
    left = b.sub(n, i)
    malloc = fn.module.globals.get("malloc") or ir.Function(fn.module, ir.FunctionType(ptr, [i64]), name="malloc")
    free = fn.module.globals.get("free") or ir.Function(fn.module, ir.FunctionType(ir.VoidType(), [ptr]), name="free")
    vbytes = t.width * t.size
    stage_in = b.call(malloc, [ir.Constant(i64, max(1, n_in) * vbytes)])
    stage_out = b.call(malloc, [ir.Constant(i64, max(1, n_out) * vbytes)])
    sins = b.call(malloc, [ir.Constant(i64, max(1, n_in) * 8)])
    souts = b.call(malloc, [ir.Constant(i64, max(1, n_out) * 8)])
    sstrides = b.call(malloc, [ir.Constant(i64, max(1, n_in) * 8)])
    one = ir.Constant(t.f, 1.0)

    def copy_in(sb, k):
        src = sb.load(sb.gep(ins, [k], source_etype=ptr), typ=ptr)
        step = sb.load(sb.gep(strides, [k], source_etype=i64), typ=i64)
        dst = sb.gep(stage_in, [sb.mul(k, ir.Constant(i64, t.width))], source_etype=t.f)
        for lane in range(t.width):  # a lane past n reads element i (always there) and keeps 1.0
            inside = sb.icmp_signed("<", ir.Constant(i64, lane), left)
            idx = sb.select(inside, sb.add(i, ir.Constant(i64, lane)), i)
            v = sb.load(sb.gep(src, [sb.mul(idx, step)], source_etype=t.f), typ=t.f)
            sb.store(sb.select(inside, v, one), sb.gep(dst, [ir.Constant(i64, lane)], source_etype=t.f))
        sb.store(dst, sb.gep(sins, [k], source_etype=ptr))
        sb.store(ir.Constant(i64, 1), sb.gep(sstrides, [k], source_etype=i64))

    def point_out(sb, j):
        sb.store(sb.gep(stage_out, [sb.mul(j, ir.Constant(i64, t.width))], source_etype=t.f),
                 sb.gep(souts, [j], source_etype=ptr))

    b = count_loop(fn, b, n_in, "stage_in", copy_in)
    b = count_loop(fn, b, n_out, "stage_out", point_out)
    for part in parts:
        b.call(part, [ir.Constant(i64, 0), sins, sstrides, souts, scratch])
    spare = b.alloca(t.f)  # where the lanes past n are "stored"

    def copy_out(sb, j):
        dst = sb.load(sb.gep(outs, [j], source_etype=ptr), typ=ptr)
        src = sb.gep(stage_out, [sb.mul(j, ir.Constant(i64, t.width))], source_etype=t.f)
        for lane in range(t.width):
            inside = sb.icmp_signed("<", ir.Constant(i64, lane), left)
            v = sb.load(sb.gep(src, [ir.Constant(i64, lane)], source_etype=t.f), typ=t.f)
            sb.store(v, sb.select(inside, sb.gep(dst, [sb.add(i, ir.Constant(i64, lane))], source_etype=t.f), spare))

    b = count_loop(fn, b, n_out, "copy_out", copy_out)
    for p in (stage_in, stage_out, sins, souts, sstrides):
        b.call(free, [p])
    b.branch(done)


FAST_IR_LINES = 100_000  # a longer module is compiled for compile time: O2, fast instruction selection


def is_huge(ir_text: str) -> bool:
    """A module past FAST_IR_LINES (a 20,000-term formula has ~360,000 lines): O2
    and opt-0 codegen halve its LLVM time (2,000 terms: 2.1 s -> 1.1 s)."""
    return ir_text.count("\n") > FAST_IR_LINES


def optimise(ir_text: str, h: Host):
    llvm = h.llvm
    mod = llvm.parse_assembly(ir_text)
    mod.triple = h.triple
    mod.data_layout = str(h.tm.target_data)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=2 if is_huge(ir_text) else 3)
    pb = llvm.create_pass_builder(h.tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return mod


def cache_key(graph: Graph, h: Host) -> str:
    """The entry of a graph's machine code: its IR text and dtype, the host (triple,
    CPU, features, libmvec), the versions and graphc's source; a hit skips building
    the LLVM IR."""
    import llvmlite

    from ...version import __version__

    parts = (graph.dtype, print_graph(graph), h.triple, h.cpu, h.features, str(h.mvec is not None),
             llvmlite.__version__, __version__, cache.code_hash(), f"{INLINE_MAX}/{WIDE}/{HUGE}/{CHUNK}")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:24]


def machine_key(h: Host, *parts: str) -> str:
    """A cache key for machine code made from `parts` on this host (its triple, CPU,
    features and libmvec) by these versions of llvmlite and graphc and by this source
    of graphc (`cache.code_hash`: any edit to the generators changes every key)."""
    import llvmlite

    from ...version import __version__

    text = "\0".join((*parts, h.triple, h.cpu, h.features, str(h.mvec is not None), llvmlite.__version__,
                      __version__, cache.code_hash()))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# ELF machine numbers of the hosts llvmlite runs on, by the triple's architecture
_ELF_MACHINE = {"x86_64": 62, "aarch64": 183, "arm64": 183, "i386": 3, "i686": 3, "powerpc64le": 21,
                "ppc64le": 21, "s390x": 22, "riscv64": 243}


def elf_symbols(data: bytes) -> tuple[int, set[str]] | None:
    """(e_machine, names of the global symbols it defines) of an ELF relocatable
    object, or None where `data` is not one; every offset is bounds-checked, so any
    bytes are safe to pass (LLVM's loader is not: random bytes crash the process)."""
    try:
        if data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
            return None
        wide, end = data[4] == 2, "<" if data[5] == 1 else ">"
        head = struct.unpack_from(end + ("HHIQQQIHHHHHH" if wide else "HHIIIIIHHHHHH"), data, 16)
        e_type, machine, shoff, shentsize, shnum = head[0], head[1], head[5], head[10], head[11]
        shdr = end + ("IIQQQQIIQQ" if wide else "IIIIIIIIII")
        if e_type != 1 or shentsize < struct.calcsize(shdr) or not 0 < shnum <= 1 << 16:
            return None
        secs = [struct.unpack_from(shdr, data, shoff + k * shentsize) for k in range(shnum)]
        for sec in secs:  # name, type, flags, addr, offset, size, link, info, align, entsize
            if sec[1] != 8 and sec[4] + sec[5] > len(data):  # 8: SHT_NOBITS (no bytes in the file)
                return None
        tabs = [sec for sec in secs if sec[1] == 2]  # SHT_SYMTAB
        if len(tabs) != 1 or not 0 < tabs[0][6] < shnum:
            return None
        tab, strs = tabs[0], secs[tabs[0][6]]
        sym = end + ("IBBHQQ" if wide else "IIIBBH")
        size = struct.calcsize(sym)
        names = set()
        for k in range(tab[5] // size):
            f = struct.unpack_from(sym, data, tab[4] + k * size)
            name, info, shndx = (f[0], f[1], f[3]) if wide else (f[0], f[3], f[5])
            if info >> 4 in (1, 2) and shndx != 0:  # STB_GLOBAL, STB_WEAK; defined here
                if name >= strs[5]:
                    return None
                at = strs[4] + name
                stop = data.index(b"\0", at, strs[4] + strs[5])
                names.add(data[at:stop].decode("ascii"))
        return machine, names
    except (IndexError, ValueError, struct.error, UnicodeDecodeError):
        return None


def object_fits(data: bytes, h: Host, names: Sequence[str], prefixes: tuple[str, ...]) -> bool:
    """Whether cached object code may be linked: an object file of this host that LLVM
    reads, defining every one of `names` and nothing outside `prefixes` (another
    kernel's object under this key, random bytes, an empty file: False, rebuilt)."""
    arch = h.triple.split("-")[0]
    if data[:4] == b"\x7fELF" or not any(k in h.triple for k in ("darwin", "windows", "msvc", "mingw")):
        got = elf_symbols(data)
        if got is None or (arch in _ELF_MACHINE and got[0] != _ELF_MACHINE[arch]):
            return False
        if not set(names) <= got[1] or not all(n.startswith(prefixes) for n in got[1]):
            return False
    elif not all(n.encode() in data for n in names):  # Mach-O, COFF: the names in its string table
        return False
    ref = h.llvm.ObjectFileRef.from_data(data)  # NULL where LLVM cannot read it
    ok = bool(ref._ptr)
    if ok:
        ref.close()
    else:
        ref.detach()
    return ok


class Compiled:
    """A module's machine code loaded into the process: a ctypes entry point for
    its function `name` (the kernel's, by default)."""

    def __init__(self, obj: bytes, h: Host, sym: str, name: str = "kernel", proto=None):
        llvm = h.llvm
        with h.lock:
            kaddr = h.engine.get_function_address(f"{sym}_{name}")  # loaded already in this process?
            if not kaddr:
                ref = llvm.ObjectFileRef.from_data(obj)
                if not ref._ptr:  # (machine_code checked a cached object; this is never reached)
                    ref.detach()
                    raise GraphcError(f"LLVM cannot read the object code of {sym}")
                h.engine.add_object_file(ref)
                h.engine.finalize_object()
                kaddr = h.engine.get_function_address(f"{sym}_{name}")
            if not kaddr:
                raise GraphcError(f"the object code of {sym} has no function {sym}_{name}")
        proto = proto or ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
        self.kernel = proto(kaddr)


def object_code(graph: Graph) -> tuple[str, bytes]:
    """(key, object code) for a graph, from the disk cache when an intact entry
    exists (the LLVM IR is built only on a miss)."""
    h = host()
    key = cache_key(graph, h)
    sym = symbol(graph)
    return key, machine_code(key, lambda: str(build_module(graph, h)), h, (f"{sym}_kernel",), (f"{sym}_",))


def machine_code(key: str, make_ir, h: Host, names: Sequence[str], prefixes: tuple[str, ...]) -> bytes:
    """The object code of cache entry `key`: from the disk cache when intact and it
    defines the symbols `names` and no others than `prefixes` begin (`object_fits`),
    else `make_ir()` (LLVM IR text) optimised and compiled, and stored."""
    hit = cache.load_blob(key, ".o")
    if hit is not None and object_fits(hit, h, names, prefixes):
        return hit
    from ...progress import Progress

    step = Progress("LLVM stages (IR, optimise, machine code)", 3, prefix="graphc compile")
    text = make_ir()
    step(1)
    mod = optimise(text, h)
    step(2)
    obj = h.machine(is_huge(text)).emit_object(mod)
    step(3)
    # the optimised IR beside the object code (readable); a huge module keeps graphc's own IR
    # instead: printing 360,000 optimised lines costs seconds for a file nobody reads whole
    cache.store_blob(key, ".ll", (text if is_huge(text) else str(mod)).encode())
    cache.store_blob(key, ".o", obj)
    return obj


_ENTRIES: dict[str, tuple[int, int]] = {}
_ENTRIES_LOCK = threading.Lock()


def _entries(h: Host, dtype: str) -> tuple[int, int]:
    """The addresses of this dtype's two Python entries (llvm_python.py), compiled
    or read from the cache and loaded once per process, their type globals set."""
    from .. import cpython_abi
    from . import entries as py

    with _ENTRIES_LOCK:
        got = _ENTRIES.get(dtype)
        if got is not None:
            return got
        key = machine_key(h, "entries", dtype, cpython_abi.layout_key())
        names = (f"graphc_pyscalar_{dtype}", f"graphc_pyarrays_{dtype}",
                 *(f"graphc_entries_{dtype}_{g}" for g in ("ndarray_type", "float_type", "descr")))
        obj = machine_code(key, lambda: py.entry_module(dtype, h.triple), h, names, names)
        Compiled(obj, h, "graphc", f"pyscalar_{dtype}", ctypes.CFUNCTYPE(None))  # loads the object
        addrs = tuple(h.engine.get_function_address(f"graphc_{k}_{dtype}") for k in ("pyscalar", "pyarrays"))
        for g, value in (("ndarray_type", id(np.ndarray)), ("float_type", id(float)),
                         ("descr", id(np.dtype("float64" if dtype == "f64" else "float32")))):
            at = h.engine.get_global_value_address(f"graphc_entries_{dtype}_{g}")
            ctypes.c_void_p.from_address(at).value = value
        got = _ENTRIES[dtype] = (addrs[0], addrs[1])
        return got


def python_functions(h: Host, kernel: int, n_in: int, n_out: int, dtype: str, names: tuple[str, ...]) -> tuple:
    """(pyscalar, pyarrays) builtins for the kernel at address `kernel`, results
    keyed by `names` (one per gradient); None each where the interpreter's layout
    is not the one `cpython_abi.abi` checked, or the kernel has too many arguments."""
    from . import entries as py

    if not h.pyapi or n_in + n_out > py.MAX_ARGS or len(names) != n_out - 1:
        return None, None
    addrs = _entries(h, dtype)
    me = (np.array([kernel, n_in, n_out, targets.parallel_min_cell()], dtype=np.int64), tuple(names))
    return tuple(py.builtin(name, addr, me) for name, addr in zip(("graphc_pyscalar", "graphc_pyarrays"), addrs))


def _address(a: np.ndarray) -> int:
    """The data pointer of an array: through the buffer protocol where it is
    writable (3x cheaper than `a.ctypes.data`)."""
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(a))
    except (TypeError, ValueError):  # read-only, or empty
        return a.ctypes.data


_RELEASE = ThreadPoolExecutor(max_workers=max(1, (os.cpu_count() or 1)), thread_name_prefix="graphc-llvm")


class LlvmKernel(Kernel):
    """Runs a graph through the llvmlite kernel; `source` is its LLVM IR."""

    def __init__(self, graph: Graph, target: str, parallel: bool):
        super().__init__(graph)
        self.target, self.parallel = target, parallel
        self.n_in = len(graph.inputs)
        h = host()
        self.key, obj = object_code(graph)
        self.compiled = Compiled(obj, h, symbol(graph))
        self._scalar_lock = threading.Lock()
        self.width = h.width(graph.dtype)
        # one point: the kernel with n = 1 over fixed buffers (lane 0 of the masked loop)
        c_t = ctypes.c_double if graph.dtype == "f64" else ctypes.c_float
        self._sin = (c_t * max(1, self.n_in))()
        self._sout = (c_t * max(1, self.n_out))()
        item = ctypes.sizeof(c_t)
        self._sins = (ctypes.c_void_p * max(1, self.n_in))(
            *(ctypes.addressof(self._sin) + k * item for k in range(self.n_in)))
        self._souts = (ctypes.c_void_p * max(1, self.n_out))(
            *(ctypes.addressof(self._sout) + j * item for j in range(self.n_out)))
        self._zero = (ctypes.c_int64 * max(1, self.n_in))()

        self._ins = (ctypes.c_void_p * max(1, self.n_in))()  # reused by small calls, under the lock
        self._outs = (ctypes.c_void_p * max(1, self.n_out))()
        self._ones = (ctypes.c_int64 * max(1, self.n_in))(*([1] * self.n_in))
        self._item = ctypes.sizeof(c_t)
        self._workers = os.cpu_count() or 1
        self.fast_scalar = self.run_scalar  # the API's path for Python floats when it has no entry below
        self._pyarrays = self._entries(tuple(f"_{j}" for j in range(self.n_out - 1)))[1]  # for out= buffers
        self._overlap = OverlapMemo(self.output_names, graph.input_names)

    def _entries(self, names: tuple) -> tuple:
        kaddr = ctypes.cast(self.compiled.kernel, ctypes.c_void_p).value
        return python_functions(host(), kaddr, self.n_in, self.n_out, self.graph.dtype, names)

    def python_entries(self, names: Sequence[str]) -> tuple:
        """METH_FASTCALL functions returning `(value, {name: gradient})` for Python
        floats and for 1-D arrays (llvm_python.py), or None each."""
        return self._entries(tuple(names))

    def run_scalar(self, *args: float) -> tuple:
        with self._scalar_lock:
            self._sin[: self.n_in] = args
            self.compiled.kernel(1, self._sins, self._zero, self._souts)
            return tuple(self._sout[: self.n_out])

    def _call(self, n: int, in_ptrs: list[int], strides, out_ptrs: list[int]) -> None:
        ins = (ctypes.c_void_p * max(1, len(in_ptrs)))(*in_ptrs)
        outs = (ctypes.c_void_p * max(1, len(out_ptrs)))(*out_ptrs)
        self.compiled.kernel(n, ins, strides, outs)

    def _launch(self, n: int, in_ptrs: list[int], steps: Sequence[int], out_ptrs: list[int]) -> None:
        strides = (ctypes.c_int64 * max(1, len(steps)))(*steps)
        workers = self._workers
        if not self.parallel or n < targets.parallel_min() or workers < 2:
            self._call(n, in_ptrs, strides, out_ptrs)
            return
        # ctypes releases the GIL: the range split over a thread pool, chunks of whole vectors
        item = 8 if self.graph.dtype == "f64" else 4
        chunk = -(-n // workers // self.width) * self.width
        parts = []
        for lo in range(0, n, chunk):
            m = min(chunk, n - lo)
            parts.append((m, [p + lo * s * item for p, s in zip(in_ptrs, steps)], [p + lo * item for p in out_ptrs]))
        jobs = [_RELEASE.submit(self._call, m, ins, strides, outs) for m, ins, outs in parts[1:]]
        self._call(*parts[0][:2], strides, parts[0][2])  # the first part on this thread: one hand-off fewer
        for j in jobs:
            j.result()

    def run_contiguous(self, arrays: Sequence[np.ndarray], out: Any = None) -> list | None:
        """Same-length 1-D C-contiguous arrays of the kernel's dtype (and out=
        buffers like them, or none): straight to the kernel. None: the general path."""
        a0 = arrays[0]
        if a0.ndim != 1 or a0.shape[0] < 2:
            return None
        n = a0.shape[0]
        dt = self.np_dtype
        for a in arrays:
            if type(a) is not np.ndarray or a.dtype != dt or a.shape != (n,) or not a.flags.c_contiguous:
                return None
        if out is None:
            outs = np.empty((self.n_out, n), dtype=dt)  # one block: rows of it, a heap block reused call to call
            if n < targets.parallel_min() and self._pyarrays is not None and not self._pyarrays(*arrays, *outs):
                return list(outs)
            base, step = _address(outs), n * self._item
            optrs = [base + j * step for j in range(self.n_out)]
            result = list(outs)
        elif type(out) in (list, tuple) and len(out) == self.n_out and all(
                type(o) is np.ndarray and o.dtype == dt and o.shape == (n,) and o.flags.c_contiguous
                and o.flags.writeable for o in out):
            self._overlap.check(out, arrays)
            if self._pyarrays is not None and not self._pyarrays(*arrays, *out):  # 1: not taken
                return list(out)
            optrs, result = [_address(o) for o in out], list(out)
        else:
            return None
        if n >= targets.parallel_min():
            self._launch(n, [_address(a) for a in arrays], [1] * self.n_in, optrs)
            return result
        with self._scalar_lock:  # the reused pointer arrays belong to one call at a time
            ins, o = self._ins, self._outs
            for k, a in enumerate(arrays):
                ins[k] = _address(a)
            for j, p in enumerate(optrs):
                o[j] = p
            self.compiled.kernel(n, ins, self._ones, o)
        return result

    def run(self, arrays: Sequence[np.ndarray], shape: tuple, out=None, **options) -> list[np.ndarray]:
        n = int(np.prod(shape)) if shape else 1
        dt = self.np_dtype
        keep, ptrs, steps = [], [], []
        for a in arrays:
            if a.size == 1 and n != 1:  # a broadcast value: one vector of copies, stride 0
                a = np.full(self.width, np.asarray(a, dtype=dt).reshape(()), dtype=dt)
                steps.append(0)
            else:
                if a.shape != shape:
                    a = np.broadcast_to(a, shape)
                a = np.ascontiguousarray(a, dtype=dt)
                steps.append(1)
            keep.append(a)
            ptrs.append(_address(a))
        outs = host_outputs(out, self.output_names, shape, dt, arrays, self.graph.input_names)
        if n:
            self._launch(n, ptrs, steps, [_address(o) for o in outs])
        return outs

    @property
    def ir(self) -> str:
        """graphc's LLVM IR for this kernel (built on demand: a cached kernel loads without it)."""
        return str(build_module(self.graph, host()))

    @property
    def source(self) -> str:
        """`fn.source`: the readable form of the kernel, its LLVM IR."""
        return self.ir

    @source.setter
    def source(self, value) -> None:  # the base class's placeholder; the IR is derived
        pass

    def assembly(self) -> str:
        h = host()
        text = self.ir
        return h.machine(is_huge(text)).emit_assembly(optimise(text, h))

    def optimised_ir(self) -> str:
        return str(optimise(self.ir, host()))
