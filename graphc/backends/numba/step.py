"""The whole training step as one Numba function (targets "cpu" and "parallel").

`PlanKernel` runs a plan's steps from Python: a Numba call per fused loop, a
NumPy call per GEMM and per small op, 5-15 µs each. At the seed's small size
(300 points) that overhead is most of the step. When every step of a plan
(`plan.py`) has a Numba form, this module writes them into one `step` function
-- the fused loops and the cross_entropy rows as functions it calls, the GEMMs
as `np.dot` into their planned buffers (BLAS through SciPy, transposes as
views), the scalar ops inline -- so a call is one dispatch. The buffers are
the same memory plan's, passed in; `TensorKernel` falls back to the step-wise
plan when a step has no Numba form here (a reshape, a softmax on its own,
a reduction that is not a loop's epilogue, ...) or SciPy is missing.
"""

from __future__ import annotations

import numpy as np

from ...ir import DTYPE_NUMPY, Graph, Node, input_node, make
from ...registry import REGISTRY
from ...schedule.plan import XENT_ROW, GemmStep, HostStep, LoopStep, Plan, RowStep
from ...schedule.regions import Region, region_code
from ..scalar import Body, indent, literal, xent_function

XENT_FN = "\n\n" + xent_function(XENT_ROW, '@njit(error_model="numpy", cache=True, nogil=True)')


def scipy_blas() -> bool:
    """Numba's np.dot calls BLAS through SciPy."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401
    except ImportError:
        return False
    return True


def dims_of(graph: Graph) -> list[str]:
    """The symbolic dimensions of a graph's inputs, in order of first appearance."""
    out: list[str] = []
    for n in graph.inputs:
        out += [d for d in n.shape if isinstance(d, str) and d not in out]
    return out


def _dim(d: int | str, dims: list[str]) -> str:
    return str(d) if isinstance(d, int) else f"D{dims.index(d)}"


def whole_step_source(graph: Graph, plan: Plan) -> str | None:
    """The module source of `step(D0.., v0.., b.., o..)`, or None when a step has
    no Numba form here. The `b` buffers are the plan's (`plan.buffers`, in its
    order: the memory plan's views or fresh arrays); a 0-d or non-buffer output
    arrives as an `o` buffer and is written at the end."""
    dims = dims_of(graph)
    dt = DTYPE_NUMPY[graph.dtype]
    val: dict[int, str] = {v.slot: f"v{v.slot}" for v in plan.inputs}
    buffers = list(plan.buffers)
    for k in buffers:
        val[k] = f"b{k}"
    head = ["import math", "", "import numpy as np", "from numba import njit", "", f"F = np.{dt}", ""]
    fns: list[str] = []
    body: list[str] = [f"v{k} = {literal(float(v))}" if np.ndim(v) == 0 else None for k, v in plan.consts]
    if None in body:
        return None
    for k, _ in plan.consts:
        val[k] = f"v{k}"
    has_xent = False
    for i, step in enumerate(plan.steps):
        match step:
            case LoopStep(region=r, ins=ins, outs=outs, sums=sums):
                _loop(r, f"region{i}", fns)
                body += [f"b{o.slot}.fill(0)" for o in sums]
                args = [_dim(d, dims) for d in r.shape] + [val[k] for k in ins] + [f"b{o.slot}" for o in outs + sums]
                body.append(f"region{i}({', '.join(args)})")
                for o in sums:
                    if not o.shape:
                        val[o.slot] = f"v{o.slot}"
                        body.append(f"v{o.slot} = b{o.slot}[0]")
            case RowStep(xent=x, scores=si, labels=yi, loss=ce, softmax=p, diff=diff):
                has_xent = True
                n, c = (_dim(d, dims) for d in x.ce.args[0].shape)
                d = f"b{diff}" if diff is not None else f"np.empty((0, {c}), dtype=F)"
                body += [f"losses = np.empty({n}, dtype=F)",
                         f"if not xent({val[si]}, {val[yi]}, b{p}, {d}, losses, {diff is not None}):",
                         "    return False"]
                red = step.reduction
                val[ce] = f"v{ce}"
                body.append(f"v{ce} = " + ("losses" if red == "none" else f"F(np.{'sum' if red == 'sum' else 'mean'}"
                                                                             f"(losses))"))
            case GemmStep(a=a, b=b, out=k):
                body.append(f"np.dot({val[a]}, {val[b]}, b{k})")
            case HostStep(node=s, ins=ins, out=k) if REGISTRY[s.op].per_element and s.shape and \
                    all(a.op != "broadcast_to" for a in s.args):
                # an elementwise op of its own (the step-wise plan runs it as NumPy): a loop, into a new array
                r = Region(s.shape, i, i, nodes=[s], outputs=[s])
                r.inputs = [a for a in dict.fromkeys(s.args) if a.op != "const"]
                slots = {id(a): j for a, j in zip(s.args, ins)}
                _loop(r, f"region{i}", fns)
                shape = ", ".join(_dim(d, dims) for d in s.shape)
                val[k] = f"v{k}"
                body.append(f"v{k} = np.empty(({shape},), dtype=np.{DTYPE_NUMPY[s.dtype]})")
                body.append(f"region{i}({', '.join([_dim(d, dims) for d in s.shape] + [val[slots[id(a)]] for a in r.inputs] + [f'v{k}'])})")
            case HostStep(node=s, ins=ins, out=k):
                line = _small(s, [val[j] for j in ins], dims, i, fns)
                if line is None:
                    return None
                val[k] = f"v{k}"
                body.append(f"v{k} = {line}")
            case _:  # a kind this renderer does not spell: the step-by-step runner takes the plan
                return None
    if has_xent:
        fns.append(XENT_FN)
    ends = []
    for j, v in enumerate(plan.outputs):
        if v.slot in plan.buffers and v.shape:
            continue
        ends.append(f"o{j}[:] = {val[v.slot]}" if v.shape else f"o{j}[0] = {val[v.slot]}")
    params = [f"D{j}" for j in range(len(dims))] + [f"v{v.slot}" for v in plan.inputs] + \
        [f"b{k}" for k in buffers] + [f"o{j}" for j in range(len(plan.outputs))]
    lines = head + fns + ["", "", '@njit(error_model="numpy", cache=True, nogil=True)',
                          f"def step({', '.join(params)}):"]
    lines += indent(body + ends + ["return True"], 4)
    return "\n".join(lines) + "\n"


def _loop(r: Region, name: str, fns: list[str]) -> None:
    """A fused region's loop nest as a function of the module (the CPU region's code)."""
    c = region_code(r, "cpu")
    fns += ["", "", '@njit(error_model="numpy", cache=True, nogil=True)', f"def {name}({', '.join(c.params)}):"]
    fns += indent(c.consts + c.scalar_loads, 4)
    pad = 4
    for j in range(len(r.shape)):
        fns.append(" " * pad + f"for i{j} in range(n{j}):")
        pad += 4
    here = ", ".join(f"i{j}" for j in range(len(r.shape)))
    fns += indent(c.loads + c.lines + [f"{o}[{here}] = {v}" for o, v in c.stores]
                  + [f"{a}[{at}] += {v}" for a, at, v in c.sums], pad)


def _small(n: Node, args: list[str], dims: list[str], i: int, fns: list[str]) -> str | None:
    """A NumPy step's Numba form: 0-d elementwise ops (a function of their own),
    count, 2-D transposes (views) and full sums and means; None for others."""
    spec = REGISTRY[n.op]
    if spec.per_element and not n.shape:
        scalars = [input_node(f"x{j}", a.dtype) for j, a in enumerate(n.args)]
        sub = Graph(scalars, [("o", make(n.op, *scalars))])
        b = Body(sub, backend="cpu")
        fns += ["", "", '@njit(error_model="numpy", cache=True, nogil=True)',
                f"def op{i}({', '.join(b.input_vars())}):"]
        fns += indent(b.consts + b.lines + [f"return {b.outputs[0]}"], 4)
        return f"op{i}({', '.join(args)})"
    if n.op == "count":
        x = n.args[0]
        return f"F({' * '.join(_dim(x.shape[a], dims) for a in n.attrs['axis']) or '1'})"
    if n.op == "transpose" and n.type.ndim == 2 and n.attrs.get("axes") in (None, (1, 0)):
        return f"{args[0]}.T"
    if n.op in ("sum", "mean") and not n.shape and n.args[0].shape:
        return f"F(np.{n.op}({args[0]}))"
    return None
