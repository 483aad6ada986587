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


def indent(lines: list[str], n: int) -> list[str]:
    pad = " " * n
    return [pad + ln for ln in lines]
