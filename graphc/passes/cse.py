"""Common-subexpression elimination.

Hash-consing already makes structurally equal nodes one object; this pass adds
a canonical operand order for commutative ops, so `x*y` and `y*x` become one
node. The order is deterministic across processes (inputs by position, then
ops by a content digest, then constants), so the printed IR -- the cache key --
is stable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from ..ir import Graph, Node, rebuild
from ..registry import REGISTRY

# Ops whose node only carries a rule for reverse mode (graphc.custom's custom_vjp_out: a value with
# a custom VJP): op -> the node that computes its value. Once no autodiff follows, CSE replaces each
# such node by it, and the node holding the rule is dead.
FORWARD: dict[str, Callable[[Node], Node]] = {}


def cse(graph: Graph, ctx=None) -> Graph:
    strip = bool(FORWARD) and not (ctx is not None and ctx.autodiff_follows)
    dropped: set[int] = set()  # the nodes FORWARD replaced, and the nodes holding their rules
    pos = {id(n): i for i, n in enumerate(graph.inputs)}
    digest: dict[int, bytes] = {}
    mapping: dict[int, Node] = {}

    def key(n: Node) -> tuple:
        if n.op == "input":
            return (0, pos.get(id(n), 0), str(n.attr))
        if n.op == "const":
            return (2, n.value)
        return (1, digest[id(n)])

    for n in graph.body:  # dependency order
        if n.args:
            args = [mapping.get(id(a), a) for a in n.args]
            if REGISTRY[n.op].commutative:
                args.sort(key=key)
            new = rebuild(n, args)
            if strip and new.op in FORWARD:
                dropped.update((id(new), id(new.args[0])))
                new = FORWARD[new.op](new)
        else:
            new = n
        mapping[id(n)] = new
        if new.op not in ("input", "const") and id(new) not in digest:  # an op of no arguments too (a loop)
            h = hashlib.blake2b(new.op.encode() + repr(new.attr).encode(), digest_size=8)
            for a in new.args:
                h.update(digest[id(a)] if a.args else repr(key(a)).encode())
            digest[id(new)] = h.digest()
    out = Graph(graph.inputs, [(name, mapping.get(id(v), v)) for name, v in graph.outputs])
    merged = len(graph.body) - len(out.body) - len(dropped)
    if ctx is not None and merged > 0:
        ctx.fired["nodes merged"] += merged
    if ctx is not None and dropped:
        ctx.fired["reverse-mode rule dropped"] += len(dropped)
    return out
