"""Rewrites as data: a rule is a (pattern, replacement) pair written in the
formula language, e.g. Rule("1/(1+exp(-x))", "sigmoid(x)"). Pattern names are
variables; numbers match constants of that value; commutative ops (add, mul,
max, min, logaddexp) match in either operand order. A function rule is the
escape hatch. A table is applied bottom-up, sweep after sweep, to a fixed point.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..ir import Graph, Node, const, make, rebuild
from ..registry import REGISTRY

MAX_SWEEPS = 64


def _pattern(text: str) -> Node:
    from ..frontend.text import parse_formula

    return parse_formula(text).outputs[0][1]


@dataclass
class Rule:
    """`pattern -> replacement`, both formula text over pattern variables."""

    pattern_text: str
    replacement_text: str
    name: str = ""
    pattern: Node = field(init=False)
    replacement: Node = field(init=False)

    def __post_init__(self) -> None:
        self.pattern = _pattern(self.pattern_text)
        self.replacement = _pattern(self.replacement_text)
        if not self.name:
            self.name = f"{self.pattern_text} -> {self.replacement_text}"

    @property
    def root_op(self) -> str | None:
        return None if self.pattern.op in ("input", "const") else self.pattern.op

    def apply(self, node: Node) -> Node | None:
        env: dict[str, Node] = {}
        if not _match(self.pattern, node, env):
            return None
        return _instantiate(self.replacement, env, node.dtype)


@dataclass
class FnRule:
    """Escape hatch: a function node -> replacement or None."""

    name: str
    fn: Callable[[Node], Node | None]
    root_op: str | None = None

    def apply(self, node: Node) -> Node | None:
        return self.fn(node)


def _match(p: Node, n: Node, env: dict[str, Node]) -> bool:
    """Structural match; recursion depth is bounded by the (small) pattern."""
    if p.op == "input":
        bound = env.get(p.attr)  # type: ignore[arg-type]
        if bound is None:
            env[p.attr] = n  # type: ignore[index]
            return True
        return bound is n
    if p.op == "const":
        return n.op == "const" and (n.value == p.value)
    if p.op != n.op or (p.attr is not None and p.attr != n.attr):
        return False
    if len(p.args) == 2 and REGISTRY[p.op].commutative:
        for order in ((0, 1), (1, 0)):
            trial = dict(env)
            if _match(p.args[0], n.args[order[0]], trial) and _match(p.args[1], n.args[order[1]], trial):
                env.clear()
                env.update(trial)
                return True
        return False
    for pa, na in zip(p.args, n.args):
        if not _match(pa, na, env):
            return False
    return True


def _instantiate(r: Node, env: dict[str, Node], dtype: str) -> Node:
    if r.op == "input":
        return env[r.attr]  # type: ignore[index]
    if r.op == "const":
        return const(r.value, dtype)
    return make(r.op, *(_instantiate(a, env, dtype) for a in r.args), **r.attrs)


class Table:
    """Rules indexed by the op at the pattern's root."""

    def __init__(self, rules: Sequence[Rule | FnRule]):
        self.rules = list(rules)
        self.by_op: dict[str | None, list[Rule | FnRule]] = {}
        for r in self.rules:
            self.by_op.setdefault(r.root_op, []).append(r)

    def first_match(self, node: Node) -> tuple[Rule | FnRule, Node] | None:
        # a rule written over scalars may not change a value's type (x ** 0 -> 1 on a vector)
        for r in self.by_op.get(node.op, ()):
            out = r.apply(node)
            if out is not None and out is not node and out.type == node.type:
                return r, out
        for r in self.by_op.get(None, ()):
            out = r.apply(node)
            if out is not None and out is not node and out.type == node.type:
                return r, out
        return None


def rewrite(graph: Graph, table: Table, fired: Counter | None = None) -> Graph:
    """Apply `table` bottom-up to a fixed point; count rule firings in `fired`."""
    fired = fired if fired is not None else Counter()
    for _ in range(MAX_SWEEPS):
        changed = False
        mapping: dict[int, Node] = {}
        for n in graph.body:  # already in dependency order
            if not n.args:
                mapping[id(n)] = n
                continue
            args = tuple(mapping.get(id(a), a) for a in n.args)
            new = rebuild(n, args)
            for _ in range(16):  # a few rules in a row on one node; the rest next sweep
                hit = table.first_match(new)
                if hit is None:
                    break
                rule, new = hit
                fired[rule.name] += 1
                changed = True
            mapping[id(n)] = new
        if not changed:
            return graph
        graph = Graph(graph.inputs, [(name, mapping.get(id(v), v)) for name, v in graph.outputs])  # an input stays
    return graph
