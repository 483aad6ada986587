"""The schedule of a tensor program, shared by the CPU and CUDA backends.

Steps in a topological order: maximal **fused regions** of elementwise ops over
one shape (each one loop nest; a region sinks to the latest of its inputs and
merges with same-shape siblings; sums of its values join it as epilogues),
`cross_entropy` with its softmax (and softmax - one_hot) as one pass per row
(`Xent`), and the remaining nodes (GEMMs, reshapes, other tensor ops) as single
steps. `region_code` is a region's per-element code; `describe_schedule` its text.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..backends.scalar import Body
from ..ir import Graph, Node, fmt_shape, input_node, make
from ..registry import REGISTRY

MIN_FUSED = 2  # a region of one op runs as its NumPy form: a loop of its own would gain nothing


def _fusible(n: Node) -> bool:
    return n.op not in ("const", "input") and REGISTRY[n.op].per_element and bool(n.shape)


def _through(a: Node, inside: set[int]) -> Node:
    while a.op == "broadcast_to" and id(a) not in inside:
        a = a.args[0]
    return a


@dataclass
class Region:
    """Elementwise nodes over one shape, computed in one loop nest."""

    shape: tuple
    start: int  # position of its first node in the graph order
    at: int  # its run position: after its latest input (>= start)
    nodes: list[Node] = field(default_factory=list)
    inputs: list[Node] = field(default_factory=list)
    outputs: list[Node] = field(default_factory=list)
    reductions: list[Node] = field(default_factory=list)  # sums of region values, accumulated in the loop
    source: str = ""
    key: str = ""


@dataclass
class Xent:
    """cross_entropy(s, y) with softmax(s) (its gradient's) -- and softmax(s) - one_hot(y)
    when the graph has it -- in one pass per row of the scores."""

    ce: Node
    softmax: Node
    diff: Node | None
    source: str = ""
    key: str = ""

    @property
    def nodes(self) -> list[Node]:
        return [self.ce, self.softmax] + ([self.diff] if self.diff is not None else [])


def _xents(order: list[Node]) -> list[Xent]:
    """Each cross_entropy over 2-D scores whose softmax (last axis) the graph also computes."""
    soft = {id(n.args[0]): n for n in order if n.op == "softmax" and n.type.ndim == 2 and n.attrs["axis"] == 1}
    out = []
    for n in order:
        if n.op == "cross_entropy" and id(n.args[0]) in soft:
            sm = soft.pop(id(n.args[0]))  # one pass per softmax: a second loss on the same scores runs as NumPy
            y = n.args[1]
            diff = next((d for d in order if d.op == "sub" and d.args[0] is sm and d.args[1].op == "one_hot"
                         and d.args[1].args[0] is y and d.args[1].dtype == sm.dtype), None)
            out.append(Xent(n, sm, diff))
    return out




def regions(graph: Graph) -> list:
    """Steps in order: a Node (run by NumPy), a Region or an Xent.

    A node joins the region of an argument of its shape when the region can run
    after every other argument is ready and still before anything outside reads
    its values: a region *sinks* to the latest of its inputs (so `X.T @ dh + reg*W1`
    joins the `reg*W1` loop after the GEMM, and `reg*W1` is never written). Steps
    are then ordered topologically, each as early as the graph order put it."""
    order = [n for n in graph.body if n.op != "const"]
    pos = {id(n): k for k, n in enumerate(order)}
    users: dict[int, list[Node]] = {}
    for n in order:
        for a in n.args:
            users.setdefault(id(a), []).append(n)
    xents = _xents(order)
    taken = {id(n): x for x in xents for n in x.nodes}
    member: dict[int, Region] = {}
    found: list[Region] = []

    def when(v: Node) -> int:
        """When a value is ready: its region's run position, else its own."""
        r = member.get(id(v))
        return r.at if r is not None else pos.get(id(v), -1)

    def reaches(vals: list[Node], targets: set[int]) -> bool:
        """Whether computing any of `vals` needs a node in `targets`, counting a
        region as one step (all of its nodes' arguments)."""
        seen: set[int] = set()
        stack = list(vals)
        while stack:
            v = stack.pop()
            if id(v) in seen or v.op in ("const", "input"):
                continue
            seen.add(id(v))
            if id(v) in targets:
                return True
            step = member.get(id(v)) or taken.get(id(v))
            for m in (step.nodes + getattr(step, "reductions", [])) if step is not None else [v]:
                seen.add(id(m))
                if id(m) in targets:
                    return True
                stack.extend(m.args)
        return False

    def join(r: Region, n: Node) -> bool:
        ext = [b for b in n.args if member.get(id(b)) is not r]
        if reaches(ext, {id(m) for m in r.nodes}):
            return False  # r would wait for a value that waits for r
        r.at = max([r.at, *(when(b) for b in ext)])
        r.nodes.append(n)
        member[id(n)] = r
        for b in n.args:  # a same-shape region of an argument that reads only inputs joins too (one pass)
            f = member.get(id(b))
            if f is None or f is r or f.shape != r.shape or not free(f):
                continue
            fin = {id(m) for m in f.nodes}
            outside = [a for m in r.nodes for a in m.args if member.get(id(a)) is not r and id(a) not in fin]
            if reaches(outside, fin):
                continue
            r.nodes[:0] = f.nodes
            for m in f.nodes:
                member[id(m)] = r
            found.remove(f)
        return True

    def free(r: Region) -> bool:
        """A region that reads only inputs and constants: it can run anywhere, so it
        merges into a region that needs it rather than making a loop of its own
        (`b2 * v` of an Adam update joins the loop that finishes the gradient)."""
        return all(a.op in ("const", "input") or member.get(id(a)) is r for m in r.nodes for a in m.args)

    for k, n in enumerate(order):
        if not _fusible(n) or id(n) in taken:
            continue
        # vertically, into the region of an argument; else beside a region of its shape that
        # reads one of its arguments too (one pass reads that argument once)
        homes = [member[id(a)] for a in n.args if id(a) in member]
        shared = {id(a) for a in n.args if a.op != "const"}
        homes += [r for r in found if any(id(b) in shared for m in r.nodes for b in m.args)]
        homes.sort(key=free)  # a region that reads only inputs last: it can join n's instead
        if not any(r.shape == n.shape and join(r, n) for r in homes):
            r = Region(n.shape, k, at=k)
            found.append(r)
            r.nodes.append(n)
            member[id(n)] = r
    # sums over a region's values join it as epilogues, accumulated in the same loop (the bias
    # gradient sum(dh, axis=0) in the pass that makes dh); after every region is formed, so no
    # elementwise node ever reads a sum that is still accumulating
    for n in order:
        if n.op == "sum" and n.type.is_float and id(n.args[0]) in member:
            r = member[id(n.args[0])]
            inputs = [b for m in r.nodes for b in m.args if member.get(id(b)) is not r]
            if n.args[0].shape == r.shape and not reaches(inputs, {id(n)}):
                r.reductions.append(n)
                member[id(n)] = r
    # regions of one op and no epilogue run as NumPy
    for r in found:
        if len(r.nodes) + len(r.reductions) < MIN_FUSED:
            for n in r.nodes + r.reductions:
                del member[id(n)]
            r.reductions = []
    found = [r for r in found if len(r.nodes) + len(r.reductions) >= MIN_FUSED]
    out_ids = {id(v) for _, v in graph.outputs}
    for r in found:
        inside = {id(n) for n in r.nodes}
        seen: set[int] = set()
        for n in r.nodes:
            for a in n.args:
                a = _through(a, inside)  # a broadcast is read through: the loop's indexing broadcasts
                if id(a) not in inside and a.op != "const" and id(a) not in seen:
                    seen.add(id(a))
                    r.inputs.append(a)
        reds = {id(n) for n in r.reductions}
        r.outputs = [n for n in r.nodes if id(n) in out_ids or any(
            id(u) not in inside and id(u) not in reds for u in users.get(id(n), []))]
    return _ordered(order, pos, member, taken, out_ids)


def _reads(s) -> list[Node]:
    if isinstance(s, Region):
        return s.inputs
    if isinstance(s, Xent):
        return list(s.ce.args)
    return list(s.args)


def _ordered(order: list[Node], pos: dict, member: dict, taken: dict, out_ids: set) -> list:
    """The steps in a topological order, each as early as its place in `order`
    allows (a region at its run position), keeping only what an output needs."""
    step_of: dict[int, object] = {}
    steps: dict[int, object] = {}
    for n in order:
        s = member.get(id(n)) or taken.get(id(n)) or n
        steps.setdefault(id(s), s)
        step_of[id(n)] = s
    deps = {k: {id(step_of[id(a)]) for a in _reads(s) if id(a) in step_of} - {k} for k, s in steps.items()}
    waiting = {k: len(d) for k, d in deps.items()}
    feeds: dict[int, list[int]] = {}
    for k, d in deps.items():
        for j in d:
            feeds.setdefault(j, []).append(k)
    heap = [(_place(s, pos), k) for k, s in steps.items() if not waiting[k]]
    heapq.heapify(heap)
    out = []
    while heap:
        _, k = heapq.heappop(heap)
        out.append(steps[k])
        for j in feeds.get(k, []):
            waiting[j] -= 1
            if not waiting[j]:
                heapq.heappush(heap, (_place(steps[j], pos), j))
    if len(out) != len(steps):
        raise AssertionError("tensor schedule: a cycle between fused steps")
    # drop NumPy steps nothing reads any more (a broadcast_to that every region reads through)
    needed = set(out_ids)
    kept = []
    for s in reversed(out):
        if isinstance(s, (Region, Xent)) or id(s) in needed:
            kept.append(s)
            needed.update(id(a) for a in _reads(s))
    return kept[::-1]


def _place(s, pos: dict) -> tuple:
    if isinstance(s, Region):
        return (s.at, 1, s.start)  # after the step at its run position
    if isinstance(s, Xent):
        return (min(pos[id(n)] for n in s.nodes), 0, 0)
    return (pos[id(s)], 0, 0)


@dataclass
class RegionCode:
    """A region's per-element code, shared by the CPU loop nest and the CUDA kernel."""

    consts: list[str]  # hoisted constants
    scalar_loads: list[str]  # 0-d inputs, read once
    loads: list[str]  # per element, indexed by i0, i1, ... (a broadcast axis reads 0)
    lines: list[str]  # the element's ops
    stores: list[tuple[str, str]]  # (output array, value) at the loop index
    sums: list[tuple[str, str, str]]  # (accumulator, index, value): sums over the region's values
    params: list[str]  # n0.., a0.., o0.., s0..


def region_graph(r: Region) -> Graph:
    """A region's per-element computation as a pointwise graph: one scalar input
    per region input (its dtype), one output per stored value, then one per sum's
    summand."""
    scalars = [input_node(f"r{k}", a.dtype) for k, a in enumerate(r.inputs)]
    mapped: dict[int, Node] = {id(a): s for a, s in zip(r.inputs, scalars)}
    inside = {id(n) for n in r.nodes}
    for n in r.nodes:
        args = [_through(a, inside) for a in n.args]
        mapped[id(n)] = make(n.op, *(mapped.get(id(a), a) for a in args))  # constants stay constants
    reduced = [n.args[0] for n in r.reductions]
    # an output may be a constant or an input itself (a pointwise formula's gradient of x is 1)
    return Graph(scalars, [(f"o{k}", mapped.get(id(o), o)) for k, o in enumerate(r.outputs + reduced)])


def region_code(r: Region, backend: str, by_value: Sequence[bool] | None = None,
                boxed: bool = False) -> RegionCode:
    """The region's per-element code. by_value[k]: input k is one value for every
    element (default: the 0-d inputs), read before the loop; `boxed`: such a value
    arrives as a 1-element array (the pointwise kernels' convention). Any other
    input is read per element, broadcast axes at 0 (a pointwise input, 0-d in its
    graph, has one entry per element)."""
    if by_value is None:
        by_value = [not a.shape for a in r.inputs]
    sub = region_graph(r)
    scalars = sub.inputs
    body = Body(sub, backend=backend)
    nd = len(r.shape)
    idx = [f"i{k}" for k in range(nd)]
    params = [*(f"n{k}" for k in range(nd)), *(f"a{k}" for k in range(len(r.inputs))),
              *(f"o{k}" for k in range(len(r.outputs))), *(f"s{k}" for k in range(len(r.reductions)))]
    outer: list[str] = []
    inner: list[str] = []
    for k, a in enumerate(r.inputs):
        var = body.var[id(scalars[k])]
        if by_value[k]:
            outer.append(f"{var} = a{k}[0]" if boxed else f"{var} = a{k}")
            continue
        shape = a.shape or r.shape
        off = nd - len(shape)
        sub_idx = ["0" if (d == 1 and r.shape[off + j] != 1) else idx[off + j] for j, d in enumerate(shape)]
        inner.append(f"{var} = a{k}[{', '.join(sub_idx)}]")
    stores = [(f"o{k}", v) for k, v in enumerate(body.outputs[:len(r.outputs)])]
    sums = []
    for k, (n, v) in enumerate(zip(r.reductions, body.outputs[len(r.outputs):])):
        ax, keep = n.attrs["axis"], n.attrs["keepdims"]
        at = [("0" if keep else None) if j in ax else i for j, i in enumerate(idx)]
        at = [i for i in at if i is not None] or ["0"]  # a full reduction accumulates into one cell
        sums.append((f"s{k}", ", ".join(at), v))
    return RegionCode(list(body.consts), outer, inner, list(body.lines), stores, sums, params)


def describe_schedule(graph: Graph, steps: list, target: str, gemm: str = "gemm", other: str = "numpy") -> str:
    """A schedule as text: each step with its shapes, then each fused kernel's source."""
    names = {id(n): f"%{n.attr}" for n in graph.inputs}
    j = 0
    for n in graph.body:
        if n.op != "const":
            names[id(n)] = f"%{j}"
            j += 1
    out = [f"# graphc schedule: target {target}, {graph.dtype}", ""]
    kernels = []
    for s in steps:
        if isinstance(s, Region):
            k = len(kernels)
            kernels.append(s)
            ins = ", ".join(f"{names.get(id(a), '?')}{fmt_shape(a.shape)}" for a in s.inputs)
            outs = ", ".join(f"{names[id(o)]}" for o in s.outputs)
            red = "".join(f"; sum {names[id(n)]} over axes {n.attrs['axis']} in the same loop"
                          for n in s.reductions)
            out.append(f"kernel {k}: fused loop nest over {fmt_shape(s.shape)}, {len(s.nodes)} ops "
                       f"({', '.join(n.op for n in s.nodes)}); reads {ins}; writes {outs or 'nothing'}{red}")
        elif isinstance(s, Xent):
            diff = f" and {names[id(s.diff)]} = softmax - one_hot" if s.diff is not None else ""
            out.append(f"kernel {len(kernels)}: one pass per row of {names.get(id(s.ce.args[0]), '?')}"
                       f"{fmt_shape(s.ce.args[0].shape)}: {names[id(s.ce)]} = cross_entropy, "
                       f"{names[id(s.softmax)]} = softmax{diff}")
            kernels.append(s)
        elif s.op == "matmul":
            a, b = s.args
            fold = [names[id(x)].split("%")[-1] for x in (a, b) if x.op == "transpose"]
            note = f" (transpose of %{', %'.join(fold)} folded: a view)" if fold else ""
            out.append(f"{gemm}: {names[id(s)]} = {names.get(id(a), '?')}{fmt_shape(a.shape)} @ "
                       f"{names.get(id(b), '?')}{fmt_shape(b.shape)}{note}")
        elif s.op == "scan":  # graphc.loops: the body is a program of its own, compiled once
            a = s.attrs
            reads = ", ".join(names.get(id(x), "?") + fmt_shape(x.shape) for x in s.args)
            out.append(f"loop: {names[id(s)]} = scan over {a['n']} steps{' (from the last)' if a['reverse'] else ''}"
                       f"; reads {reads or 'nothing'}; its body ({a['body'].op_count()} ops) compiled once for "
                       f"{target}, called per step from a host loop; results stored in buffers")
        elif s.op == "scan_out":
            out.append(f"  {names[id(s)]} = its result {s.attrs['index']} {fmt_shape(s.shape)}")
        else:
            out.append(f"{other}: {names[id(s)]} = {s.op} {fmt_shape(s.shape)}")
    for k, r in enumerate(kernels):
        out += ["", f"# ---- kernel {k}", r.source]
    return "\n".join(out)
