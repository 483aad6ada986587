"""IR-building helpers shared by the llvmlite modules (pointwise, tensor, step,
entries)."""

from __future__ import annotations

from typing import Any


def count_loop(fn, b, count, name: str, body, start=0) -> Any:
    """`for k in range(start, count): body(builder, k)` in IR (bounds: ints or i64
    values); returns a builder after the loop. The body may branch and leave its
    builder in another block, or return the builder it ends in (a nested loop)."""
    import llvmlite.ir as ir

    i64 = ir.IntType(64)
    pre = b.block
    head, step, after = (fn.append_basic_block(f"{name}_{x}") for x in ("head", "body", "after"))
    b.branch(head)
    hb = ir.IRBuilder(head)
    k = hb.phi(i64, f"{name}_k")
    k.add_incoming(ir.Constant(i64, start) if isinstance(start, int) else start, pre)
    hb.cbranch(hb.icmp_signed("<", k, ir.Constant(i64, count) if isinstance(count, int) else count), step, after)
    sb = ir.IRBuilder(step)
    end = body(sb, k)
    sb = end if isinstance(end, ir.IRBuilder) else sb
    k.add_incoming(sb.add(k, ir.Constant(i64, 1)), sb.block)
    sb.branch(head)
    return ir.IRBuilder(after)


def splat(b, v, width: int) -> Any:
    """A vector of `width` lanes, each the scalar `v` (LLVM's insert + shuffle idiom)."""
    import llvmlite.ir as ir

    i32 = ir.IntType(32)
    vt = ir.VectorType(v.type, width)
    x = b.insert_element(ir.Constant(vt, ir.Undefined), v, ir.Constant(i32, 0))
    return b.shuffle_vector(x, ir.Constant(vt, ir.Undefined), ir.Constant(ir.VectorType(i32, width),
                                                                          [ir.Constant(i32, 0)] * width))
