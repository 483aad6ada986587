"""Per-element code from the op registry's templates, shared by the Numba CPU
and CUDA backends: one statement per IR node, all intermediates as locals."""

from __future__ import annotations

import math

from ..ir import Graph
from ..registry import REGISTRY


def literal(value: float) -> str:
    """A constant as typed source: F(...) keeps float32 kernels in float32."""
    if math.isnan(value):
        return "F(math.nan)"
    if math.isinf(value):
        return "F(math.inf)" if value > 0 else "F(-math.inf)"
    return f"F({value!r})"


class Body:
    """The straight-line code computing a graph's outputs for one element."""

    def __init__(self, graph: Graph, backend: str = "cpu"):
        self.graph = graph
        self.var: dict[int, str] = {}
        self.consts: list[str] = []  # "c0 = F(1.0)" lines, hoisted out of loops
        self.lines: list[str] = []  # "t3 = math.exp(t2)  # exp" lines
        for k, n in enumerate(graph.inputs):  # positional names: no user text reaches the code
            self.var[id(n)] = f"x{k}"
        preludes: dict[str, str] = {}
        k = 0
        for n in graph.body:
            if n.op == "const":
                name = f"c{len(self.consts)}"
                self.consts.append(f"{name} = {literal(n.value)}")
                self.var[id(n)] = name
                continue
            spec = REGISTRY[n.op]
            template = spec.code_for(backend)
            args = [self.var[id(a)] for a in n.args]
            pvar = ""
            if spec.prelude:
                pexpr = spec.prelude.format(*args)
                pvar = preludes.get(pexpr, "")
                if not pvar:
                    pvar = preludes[pexpr] = f"p{len(preludes)}"
                    self.lines.append(f"{pvar} = {pexpr}  # shared by {n.op} and its kin")
            expr = template.format(*args, p=pvar)
            name = f"t{k}"
            k += 1
            self.lines.append(f"{name} = {expr}  # {n.op}")
            self.var[id(n)] = name
        self.outputs = [self.var[id(v)] for _, v in graph.outputs]

    def input_vars(self) -> list[str]:
        return [self.var[id(n)] for n in self.graph.inputs]


def module_header(numba_import: str, dtype: str) -> list[str]:
    """The first lines of a generated kernel module: its imports and F, the dtype."""
    return ["import math", "", "import numpy as np", numba_import, "", f"F = np.{dtype}", "", ""]


def indent(lines: list[str], n: int) -> list[str]:
    pad = " " * n
    return [pad + ln for ln in lines]


# The Python spelling of each row pass (plan.XENT_ROW), for the Numba and numba-cuda
# renderers: row i of s (n, c), label y[i], into p, d (when with_diff) and losses[i].
ROW_PASSES: dict[str, list[str]] = {
    "max": [
        "m = s[i, 0]",
        "for j in range(1, c):",
        "    v = s[i, j]",
        "    if v > m or v != v:  # NaN propagates, as numpy.max",
        "        m = v",
        "if not (m - m == F(0.0)):  # an infinite or NaN max shifts by 0, as the NumPy forms",
        "    m = F(0.0)",
    ],
    "exp_sum": [
        "z = F(0.0)",
        "for j in range(c):",
        "    e = math.exp(s[i, j] - m)",
        "    p[i, j] = e",
        "    z += e",
    ],
    "normalize": [
        "for j in range(c):",
        "    q = p[i, j] / z",
        "    p[i, j] = q",
        "    if with_diff:",
        "        d[i, j] = q - (F(1.0) if j == y[i] else F(0.0))",
    ],
    "nll": ["losses[i] = -(s[i, y[i]] - (math.log(z) + m))"],
}


def row_lines(ops) -> list[str]:
    """A row step's passes (`plan.RowOp`s) as Python lines over row i."""
    return [ln for op in ops for ln in ROW_PASSES[op.kind]]


def xent_function(ops, decorator: str, gpu: bool = False) -> str:
    """`xent(s, y, p, d, losses, with_diff)`: the cross-entropy row's passes (`ops`:
    plan.XENT_ROW) per
    loop turn (CPU: False when a label is outside 0..c-1, the caller then names it) or
    per GPU thread, grid-stride (the launch caps its blocks, so one thread may take
    several rows)."""
    row = row_lines(ops)
    if gpu:
        body = ["c = s.shape[1]", "for i in range(cuda.grid(1), s.shape[0], cuda.gridsize(1)):"]
        body += ["    " + ln for ln in row]
    else:
        body = ["n, c = s.shape", "for i in range(n):", "    if y[i] < 0 or y[i] >= c:", "        return False"]
        body += ["    " + ln for ln in row] + ["return True"]
    return "\n".join([decorator, "def xent(s, y, p, d, losses, with_diff):"] + ["    " + ln for ln in body]) + "\n"
