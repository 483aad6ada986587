"""The pass pipeline: one list of named Graph -> Graph passes.

The manager verifies the graph after every pass, times it, counts nodes
before and after, records how often each rewrite rule fired, and can print
the IR after every pass (like LLVM's -print-after-all).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import GraphcError
from ..ir import Graph, Node, make, print_graph, rebuild, verify

PassFn = Callable[[Graph, "PassContext"], Graph]


@dataclass
class PassContext:
    """What passes may read (wrt, options) and write (rule counters)."""

    wrt: Sequence[str] | None = None
    order: int = 1
    unsafe: bool = False
    autodiff_follows: bool = False  # set by the manager: an autodiff pass comes later
    fired: Counter = field(default_factory=Counter)


@dataclass
class PassRecord:
    name: str
    seconds: float
    ops_before: int
    ops_after: int
    fired: dict[str, int]
    graph: Graph | None = None

    @property
    def ir(self) -> str:
        return print_graph(self.graph) if self.graph is not None else ""


def _autodiff(graph: Graph, ctx: PassContext) -> Graph:
    from .autodiff import autodiff, hessian_graph

    if ctx.order == 2:
        return hessian_graph(graph, ctx.wrt)
    if ctx.order != 1:
        raise GraphcError(f"order={ctx.order}: graphc offers order 1 (gradient) and 2 (Hessian)")
    return autodiff(graph, ctx.wrt)


def _registry() -> dict[str, PassFn]:
    from .cse import cse
    from .dce import dce
    from .fuse import fuse
    from .simplify import simplify

    return {"simplify": simplify, "fuse": fuse, "autodiff": _autodiff, "cse": cse, "dce": dce}


def in_bodies(graph: Graph, fn: PassFn, ctx: PassContext) -> Graph:
    """`graph` with the pass applied inside every graph a node holds as an attribute (a loop's
    body, graphc.loops), innermost first, so a body is optimised as the same nodes unrolled would
    be; the nodes after a changed one rebuilt. Autodiff is not applied this way: a loop's own rule
    differentiates its body."""
    if not any(isinstance(v, Graph) for n in graph.body for v in n.attrs.values()):
        return graph
    mapping: dict[int, Node] = {}
    for n in graph.body:
        args = [mapping.get(id(a), a) for a in n.args]
        attrs = n.attrs
        if any(isinstance(v, Graph) for v in attrs.values()):
            attrs = {k: fn(in_bodies(v, fn, ctx), ctx) if isinstance(v, Graph) else v for k, v in attrs.items()}
            mapping[id(n)] = make(n.op, *args, **attrs)
        elif n.args:
            mapping[id(n)] = rebuild(n, args)
    return Graph(graph.inputs, [(name, mapping.get(id(v), v)) for name, v in graph.outputs])


DEFAULT_PIPELINE: tuple[str, ...] = ("simplify", "fuse", "autodiff", "simplify", "cse", "dce")
FORWARD_PIPELINE: tuple[str, ...] = ("simplify", "fuse", "simplify", "cse", "dce")


def normalize_pipeline(passes: Sequence[str] | str | None, grad: bool = True) -> tuple[str, ...]:
    """`None` -> default; `()` -> autodiff alone; a comma string or list of names.
    Autodiff is added (first) when a gradient is wanted and the list lacks it."""
    if passes is None:
        names = DEFAULT_PIPELINE if grad else FORWARD_PIPELINE
    else:
        if isinstance(passes, str):
            passes = [p.strip() for p in passes.split(",") if p.strip()]
        names = tuple(passes)
        known = _registry()
        for p in names:
            if p not in known:
                raise GraphcError(f"unknown pass {p!r}; passes: {', '.join(known)}")
    if grad and "autodiff" not in names:
        names = ("autodiff",) + tuple(names)
    if not grad:
        names = tuple(p for p in names if p != "autodiff")
    return names


def run_pipeline(
    graph: Graph,
    passes: Sequence[str],
    ctx: PassContext | None = None,
    keep_ir: bool = False,
) -> tuple[Graph, list[PassRecord]]:
    """Run the named passes in order; verify after each; return the graph and records."""
    ctx = ctx or PassContext()
    registry = _registry()
    verify(graph)
    records = []
    from ..progress import Progress

    step = Progress("passes", len(passes), prefix="graphc compile")
    for i, name in enumerate(passes):
        fn = registry[name]
        ctx.autodiff_follows = "autodiff" in passes[i + 1:]
        before = graph.op_count()
        ctx.fired = Counter()
        t0 = time.perf_counter()
        graph = fn(graph if name == "autodiff" else in_bodies(graph, fn, ctx), ctx)
        dt = time.perf_counter() - t0
        try:
            verify(graph)
        except GraphcError as exc:  # a pass bug, not a user error: say which pass
            raise GraphcError(f"internal error: the IR is invalid after pass {name!r}: {exc}") from exc
        records.append(
            PassRecord(name, dt, before, graph.op_count(), dict(ctx.fired), graph if keep_ir else None)
        )
        step(i + 1)
    return graph, records


def format_stats(records: Sequence[PassRecord], forward_ops: int | None = None) -> str:
    """The per-pass table: nodes before/after, time, rules fired."""
    lines = [f"{'pass':<10} {'ops in':>7} {'ops out':>7} {'ms':>8}  rules fired"]
    total = 0.0
    for r in records:
        total += r.seconds
        rules = ", ".join(f"{k} x{v}" for k, v in sorted(r.fired.items(), key=lambda kv: -kv[1])) or "-"
        lines.append(f"{r.name:<10} {r.ops_before:>7} {r.ops_after:>7} {r.seconds * 1e3:>8.2f}  {rules}")
    lines.append(f"{'total':<10} {'':>7} {'':>7} {total * 1e3:>8.2f}")
    if forward_ops is not None and records:
        final = records[-1].ops_after
        ratio = final / forward_ops if forward_ops else float("nan")
        lines.append(
            f"optimised forward graph: {forward_ops} ops; value+gradient graph: {final} ops "
            f"({ratio:.2f}x the forward graph)"
        )
    return "\n".join(lines)


def format_print_after_all(records: Sequence[PassRecord], initial: Graph) -> str:
    out = [f"; IR before any pass ({initial.op_count()} ops)", print_graph(initial)]
    for r in records:
        out.append(
            f"\n; IR after pass '{r.name}' ({r.seconds * 1e3:.2f} ms, ops {r.ops_before} -> {r.ops_after})"
        )
        out.append(r.ir)
    return "\n".join(out)
