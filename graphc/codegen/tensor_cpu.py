"""Compiled tensor programs on the CPU (targets "cpu" and "parallel").

The parallel target runs the same serial loops: BLAS already uses every core
for the matrix products, and a prange loop between two GEMMs measured about
2x slower on the medium MLP step (Numba's and OpenBLAS's threads contend).

A schedule per graph: maximal **fused regions** of elementwise ops over one
shape become one Numba loop nest each (inputs broadcast by index arithmetic,
intermediates in registers, only values needed outside written to memory);
matrix products are NumPy's `matmul` on the host (BLAS; a transpose is a view,
folded into the GEMM call, never copied); the remaining tensor ops (softmax,
cross_entropy, reductions, reshapes) run as their NumPy forms between kernels.
`schedule.describe()` (`graphc emit F --shape ...`) lists the steps and each
kernel's source.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..ir import DTYPE_NUMPY, Graph, Node, fmt_shape, input_node, make, print_graph
from ..registry import REGISTRY
from ..shapes import bound
from . import cache
from .kernel import Kernel
from .loader import _first_use, _load
from .numpy_ref import op_step, run_op
from .scalar import Body, indent

# A loop writing over its own input stops LLVM's vectoriser (its overlap check fails, the scalar loop
# runs): on the medium step's ReLU loop 2.0 ms instead of 0.15 ms. Off: speed over 2 MB of memory.
IN_PLACE = False
WHOLE_MNK = 4 * 65536  # OpenBLAS runs a GEMM of at most this m*n*k on one thread
WHOLE_STEP = True  # run the schedule as one Numba function where every step has a Numba form (tensor_step)
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


XENT_SOURCE = """import math

import numpy as np
from numba import njit

F = np.{dtype}


@njit(error_model="numpy", cache=True, nogil=True)
def xent(s, y, p, d, losses, with_diff):
    n, c = s.shape
    for i in range(n):
        m = s[i, 0]
        for j in range(1, c):
            v = s[i, j]
            if v > m or v != v:  # NaN propagates, as numpy.max
                m = v
        if not (m - m == F(0.0)):  # an infinite or NaN max shifts by 0, as the NumPy forms
            m = F(0.0)
        z = F(0.0)
        for j in range(c):
            e = math.exp(s[i, j] - m)
            p[i, j] = e
            z += e
        for j in range(c):
            p[i, j] = p[i, j] / z
        losses[i] = -(s[i, y[i]] - (math.log(z) + m))
        if with_diff:
            for j in range(c):
                d[i, j] = p[i, j] - (F(1.0) if j == y[i] else F(0.0))
"""


def _regions(graph: Graph) -> list:
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
    regions: list[Region] = []

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
        return True

    for k, n in enumerate(order):
        if not _fusible(n) or id(n) in taken:
            continue
        # vertically, into the region of an argument; else beside a region of its shape that
        # reads one of its arguments too (one pass reads that argument once)
        homes = [member[id(a)] for a in n.args if id(a) in member]
        shared = {id(a) for a in n.args if a.op != "const"}
        homes += [r for r in regions if any(id(b) in shared for m in r.nodes for b in m.args)]
        if not any(r.shape == n.shape and join(r, n) for r in homes):
            r = Region(n.shape, k, at=k)
            regions.append(r)
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
    for r in regions:
        if len(r.nodes) + len(r.reductions) < MIN_FUSED:
            for n in r.nodes + r.reductions:
                del member[id(n)]
            r.reductions = []
    regions = [r for r in regions if len(r.nodes) + len(r.reductions) >= MIN_FUSED]
    out_ids = {id(v) for _, v in graph.outputs}
    for r in regions:
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


def region_code(r: Region, backend: str) -> RegionCode:
    scalars = [input_node(f"r{k}", a.dtype) for k, a in enumerate(r.inputs)]
    mapped: dict[int, Node] = {id(a): s for a, s in zip(r.inputs, scalars)}
    inside = {id(n) for n in r.nodes}
    for n in r.nodes:
        args = [_through(a, inside) for a in n.args]
        mapped[id(n)] = make(n.op, *(mapped.get(id(a), a) for a in args))  # constants stay constants
    reduced = [n.args[0] for n in r.reductions]
    sub = Graph(scalars, [(f"o{k}", mapped[id(o)]) for k, o in enumerate(r.outputs + reduced)])
    body = Body(sub, backend=backend)
    nd = len(r.shape)
    idx = [f"i{k}" for k in range(nd)]
    params = [*(f"n{k}" for k in range(nd)), *(f"a{k}" for k in range(len(r.inputs))),
              *(f"o{k}" for k in range(len(r.outputs))), *(f"s{k}" for k in range(len(r.reductions)))]
    outer: list[str] = []
    inner: list[str] = []
    for k, a in enumerate(r.inputs):
        var = body.var[id(scalars[k])]
        if not a.shape:  # a 0-d value arrives as a scalar of the dtype
            outer.append(f"{var} = a{k}")
            continue
        off = nd - len(a.shape)
        sub_idx = ["0" if (d == 1 and r.shape[off + j] != 1) else idx[off + j] for j, d in enumerate(a.shape)]
        inner.append(f"{var} = a{k}[{', '.join(sub_idx)}]")
    stores = [(f"o{k}", v) for k, v in enumerate(body.outputs[:len(r.outputs)])]
    sums = []
    for k, (n, v) in enumerate(zip(r.reductions, body.outputs[len(r.outputs):])):
        ax, keep = n.attrs["axis"], n.attrs["keepdims"]
        at = [("0" if keep else None) if j in ax else i for j, i in enumerate(idx)]
        at = [i for i in at if i is not None] or ["0"]  # a full reduction accumulates into one cell
        sums.append((f"s{k}", ", ".join(at), v))
    return RegionCode(list(body.consts), outer, inner, list(body.lines), stores, sums, params)


def region_source(r: Region, dtype: str) -> str:
    """`region`: a Numba loop nest over the region's shape, inputs broadcast by
    indexing, sums accumulated in the loop."""
    c = region_code(r, "cpu")
    nd = len(r.shape)
    lines = [
        "import math",
        "",
        "import numpy as np",
        "from numba import njit",
        "",
        f"F = np.{DTYPE_NUMPY[dtype]}",
        "",
        "",
        '@njit(error_model="numpy", cache=True, nogil=True)',
        f"def region({', '.join(c.params)}):",
    ]
    lines += indent(c.consts + c.scalar_loads, 4)
    pad = 4
    for k in range(nd):
        lines.append(" " * pad + f"for i{k} in range(n{k}):")
        pad += 4
    here = ", ".join(f"i{k}" for k in range(nd))
    stores = [f"{o}[{here}] = {v}" for o, v in c.stores] + [f"{a}[{at}] += {v}" for a, at, v in c.sums]
    lines += indent(c.loads + c.lines + stores, pad)
    return "\n".join(lines) + "\n"


VIEW_OPS = ("transpose", "reshape", "broadcast_to")  # NumPy steps whose result may view their argument


def _nbytes(n: Node, dims: dict[str, int]) -> int:
    return int(np.prod(bound(n.shape, dims), dtype=np.int64)) * np.dtype(DTYPE_NUMPY[n.dtype]).itemsize


def _arg(v: object, node: Node) -> object:
    """An input of a fused kernel: arrays as they are (views included), 0-d as a typed scalar."""
    if node.shape:
        return v
    return np.dtype(DTYPE_NUMPY[node.dtype]).type(v)


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
        else:
            out.append(f"{other}: {names[id(s)]} = {s.op} {fmt_shape(s.shape)}")
    for k, r in enumerate(kernels):
        out += ["", f"# ---- kernel {k}", r.source]
    return "\n".join(out)


class TensorKernel(Kernel):
    """Runs a tensor program's schedule: NumPy steps and compiled fused regions."""

    def __init__(self, graph: Graph, target: str, parallel: bool):
        super().__init__(graph)
        self.target = target
        self.parallel = parallel
        self.steps = _regions(graph)
        ir_text = print_graph(graph)
        for s in self.steps:
            if isinstance(s, Region):
                s.source = region_source(s, graph.dtype)
                s.key = cache.cache_key(ir_text, target, "region", s.source)
            elif isinstance(s, Xent):
                s.source = XENT_SOURCE.format(dtype=DTYPE_NUMPY[graph.dtype])
                s.key = cache.cache_key(target, "xent", s.source)
        self._compiled: dict[str, object] = {}
        self._plan = None
        self._arenas: dict[tuple, tuple] = {}
        self._fits: dict[tuple, bool] = {}
        self._lock = threading.Lock()
        self._prepare()
        self.source = self.describe()

    def describe(self) -> str:
        """The schedule: each step with its shapes, then each fused kernel's source."""
        text = describe_schedule(self.graph, self.steps, self.target)
        if self._whole is None:
            return text
        head, sep, rest = text.partition("\n\n# ----")
        return (head + "\n\nAll steps run in one Numba function (the GEMMs as np.dot into the planned buffers): "
                "`step` below; the kernels are the functions it calls.\n\n# ---- step\n" + self._whole[1])

    def _run_xent(self, step: tuple, env: list, buffer) -> None:
        from ..tensor_ops import _check_labels

        _, x, si, yi, outs, dt = step
        scores, labels = env[si], env[yi]
        n, c = scores.shape
        _check_labels(labels, c)
        p = buffer(outs[1], (n, c), dt)
        d = buffer(outs[2], (n, c), dt) if x.diff is not None else np.empty((0, c), dtype=dt)
        losses = np.empty(n, dtype=dt)
        if n and c:
            self._region_fn(x, "xent")(scores, labels, p, d, losses, x.diff is not None)
        red = x.ce.attrs["reduction"]
        loss = losses if red == "none" else dt.type(np.sum(losses) if red == "sum" else np.mean(losses))
        env[outs[0]], env[outs[1]] = loss, p
        if x.diff is not None:
            env[outs[2]] = d

    def _region_fn(self, r: Region | Xent, name: str = "region"):
        fn = self._compiled.get(r.key)
        if fn is None:
            mod = _load(r.key, r.source)
            fn = self._compiled[r.key] = _first_use(r.key, mod, lambda m: getattr(m, name))
        return fn

    def _prepare(self) -> None:
        """Slots instead of dicts: each value has an index; steps become tuples.
        Then the memory plan's static half: which values live in the pool, from
        which step to which."""
        slot: dict[int, int] = {}
        for n in self.graph.inputs:
            slot[id(n)] = len(slot)
        self._consts = []
        for n in self.graph.body:
            if n.op == "const":
                self._consts.append((len(slot), np.dtype(DTYPE_NUMPY[n.dtype]).type(n.value)))
                slot[id(n)] = len(slot)
        out_ids = {id(v) for _, v in self.graph.outputs}
        plan, pooled, reads, made = [], {}, [], []  # pooled: slot -> (shape, dtype); reads/made: per step

        self._made: dict[int, tuple] = {}  # slot -> (shape, dtype) of each value a step writes into a buffer

        def keep(n: Node, shape: tuple | None = None) -> int:
            k = slot[id(n)] = len(slot)
            self._made[k] = (shape if shape is not None else n.shape, np.dtype(DTYPE_NUMPY[n.dtype]))
            if id(n) not in out_ids:
                pooled[k] = self._made[k]
            return k

        for s in self.steps:
            if isinstance(s, Xent):
                ins = [slot[id(a)] for a in s.ce.args]
                slot[id(s.ce)] = len(slot)  # the loss itself is a NumPy scalar or vector
                ks = [slot[id(s.ce)]] + [keep(n) for n in s.nodes[1:]]
                plan.append(("xent", s, *ins, ks, np.dtype(DTYPE_NUMPY[s.ce.dtype])))
            elif isinstance(s, Region):
                ins = [slot[id(a)] for a in s.inputs]
                plan.append((True, s, ins,
                             [np.dtype(DTYPE_NUMPY[a.dtype]).type if not a.shape else None for a in s.inputs],
                             [(keep(o), np.dtype(DTYPE_NUMPY[o.dtype])) for o in s.outputs],
                             [(keep(n, n.shape or (1,)), n.shape, np.dtype(DTYPE_NUMPY[n.dtype]))
                              for n in s.reductions]))
            elif s.op == "matmul" and s.type.ndim == 2 and s.args[0].type.ndim == 2 and s.args[1].type.ndim == 2:
                ins = [slot[id(a)] for a in s.args]
                plan.append(("gemm", *ins, keep(s), np.dtype(DTYPE_NUMPY[s.dtype])))
            else:
                ins = [slot[id(a)] for a in s.args]
                slot[id(s)] = len(slot)
                fn, attrs, symbolic, dt = op_step(s)
                plan.append((False, fn, ins, attrs, symbolic, dt, slot[id(s)]))
            reads.append(ins)
            made.append([slot[id(n)] for n in (s.nodes + getattr(s, "reductions", []) if not isinstance(s, Node)
                                               else [s]) if id(n) in slot])
        self._plan = plan
        self._nslots = len(slot)
        self._outs = [(slot[id(v)], DTYPE_NUMPY[v.dtype]) for _, v in self.graph.outputs]
        self._out_slots = {k for k, _ in self._outs}
        # lifetimes: a value lives from the step that makes it to the last step that reads it, or
        # reads a view of it (a transpose or reshape of a pooled buffer is that buffer)
        last: dict[int, int] = {}
        for i in reversed(range(len(plan))):
            s = self.steps[i]
            for k in made[i]:
                last.setdefault(k, i)
            extend = isinstance(s, Node) and s.op in VIEW_OPS
            for k in reads[i]:
                last.setdefault(k, i)
                if extend:
                    last[k] = max(last[k], last.get(made[i][0], i))
        first = {k: i for i in range(len(plan)) for k in made[i]}
        lives = {k: [first[k], last.get(k, first[k])] for k in pooled}
        # in place: a fused loop reads each full-shape input at the index it writes, so an
        # output may take the buffer of an input that dies in that loop (dh = g * mask over g)
        self._alias: dict[int, int] = {}
        for i, (step, s) in enumerate(zip(plan, self.steps)):
            if step[0] is not True or not IN_PLACE:
                continue
            free = [k for k, a in zip(step[2], s.inputs) if k in pooled and a.shape == s.shape
                    and lives[self._alias.get(k, k)][1] == i]
            for k, dt in step[4]:
                take = next((j for j in free if k in pooled and pooled[j][1] == dt), None)
                if take is not None:
                    free.remove(take)
                    root = self._alias.get(take, take)
                    self._alias[k] = root
                    lives[root][1] = max(lives[root][1], lives.pop(k)[1])
        self._lives = {k: tuple(v) for k, v in lives.items()}
        self._pooled = pooled
        self._release: list[list[int]] = [[] for _ in plan]
        for i, ks in enumerate(made):
            for k in ks:
                if k not in pooled and k not in self._out_slots:
                    self._release[last.get(k, i)].append(k)  # a NumPy result is dropped after its last reader
        self._whole_step(plan)

    def _whole_step(self, plan: list) -> None:
        """The one-function form of the schedule (tensor_step), where every step has one."""
        from .tensor_step import dims_of, scipy_blas, whole_step_source

        self._whole = None
        if not WHOLE_STEP or not scipy_blas():
            return
        bufs = []  # slots whose values the steps write into buffers, in plan order
        for step in plan:
            if step[0] is True:
                bufs += [k for k, _ in step[4]] + [k for k, _, _ in step[5]]
            elif step[0] == "xent":
                bufs += step[4][1:]
            elif step[0] == "gemm":
                bufs.append(step[3])
        n_in = len(self.graph.inputs)
        src = whole_step_source(self.graph, self.steps, plan, bufs, [k for k, _ in self._outs], n_in, self._consts)
        if src is None:
            return
        self._whole = (cache.cache_key(self.target, "step", src), src, bufs, dims_of(self.graph))

    def _layout(self, dims: dict[str, int]) -> tuple[np.ndarray, dict[int, np.ndarray], int]:
        """The pool for these dimensions: one arena, each pooled value a view at an
        offset no value alive at the same time uses (the biggest placed first, each at
        the lowest offset free over its lifetime)."""
        key = tuple(sorted(dims.items()))
        got = self._arenas.get(key)
        if got is not None:
            return got
        placed: list[tuple[int, int, int, int]] = []  # (offset, end, first step, last step)
        offsets: dict[int, int] = {}
        size_of = {k: -(-int(np.prod(bound(sh, dims), dtype=np.int64)) * dt.itemsize // 64) * 64
                   for k, (sh, dt) in self._pooled.items()}
        for k in sorted(self._lives, key=lambda k: (-size_of[k], self._lives[k])):  # the biggest first
            nbytes = size_of[k]
            lo, hi = self._lives[k]
            busy = sorted((a, b) for a, b, f, t in placed if f <= hi and lo <= t)
            off = 0
            for a, b in busy:
                if off + nbytes <= a:
                    break
                off = max(off, b)
            offsets[k] = off
            placed.append((off, off + nbytes, lo, hi))
        size = max((b for _, b, _, _ in placed), default=0)
        arena = np.empty(size, dtype=np.uint8)
        views = {}
        offsets.update((k, offsets[root]) for k, root in self._alias.items())
        for k, off in offsets.items():
            shape, dt = self._pooled[k]
            shape = bound(shape, dims)
            views[k] = arena[off:off + int(np.prod(shape, dtype=np.int64)) * dt.itemsize].view(dt).reshape(shape)
        if len(self._arenas) >= 4:  # a pool per signature, the last few kept
            self._arenas.pop(next(iter(self._arenas)))
        got = self._arenas[key] = (arena, views, size)
        return got

    def planned_memory(self, dims: dict[str, int]) -> dict[str, int]:
        """Bytes, for these dimensions: `pool` (intermediates, shared by lifetime and
        kept between calls), `outputs` (new arrays per call), `temporaries` (the most
        NumPy-step results alive at once) and `peak` (their sum; the arguments and
        NumPy's own scratch inside one op are not counted)."""
        if self._plan is None:
            self._prepare()
        _, _, pool = self._layout(dims)
        nbytes = {}
        for step, s in zip(self._plan, self.steps):
            if isinstance(s, Node) and step[0] is False and s.op not in VIEW_OPS:  # a view allocates nothing
                nbytes[step[-1]] = _nbytes(s, dims)
        outs = sum(_nbytes(v, dims) for _, v in self.graph.outputs)
        live, most = 0, 0
        for i, step in enumerate(self._plan):
            if step[0] is False and step[-1] not in self._out_slots:
                live += nbytes.get(step[-1], 0)
            most = max(most, live)
            live -= sum(nbytes.get(k, 0) for k in self._release[i])
        return {"pool": pool, "outputs": outs, "temporaries": most, "peak": pool + outs + most}

    def pool_bytes(self) -> int:
        """Bytes of the pool held between calls (all signatures kept)."""
        return sum(a.nbytes for a, _, _ in self._arenas.values())

    def run_tensor(self, arrays: Sequence[np.ndarray], dims: dict[str, int], out: list | None = None) -> list:
        with self._lock:  # the pool's buffers belong to one call at a time
            return self._run_tensor(arrays, dims, out)

    def _run_tensor(self, arrays: Sequence[np.ndarray], dims: dict[str, int], out: list | None) -> list:
        if self._plan is None:
            self._prepare()
        arena, pool, _ = self._layout(dims)
        given = dict(zip((k for k, _ in self._outs), out)) if out is not None else {}

        def buffer(k: int, shape: tuple, dt: np.dtype) -> np.ndarray:
            b = pool.get(k)
            if b is None:
                b = given.get(k)
                if b is None or b.shape != shape:  # a 0-d output accumulates in a cell, then is copied
                    b = np.empty(shape, dtype=dt)
            return b

        if self._whole is not None and self._whole_fits(dims):
            return self._run_whole(arrays, dims, buffer, given)
        env: list = [None] * self._nslots
        for k, (n, a) in enumerate(zip(self.graph.inputs, arrays)):
            env[k] = a if type(a) is np.ndarray and a.dtype == DTYPE_NUMPY[n.dtype] else \
                np.asarray(a, dtype=DTYPE_NUMPY[n.dtype])
        for k, v in self._consts:
            env[k] = v
        with np.errstate(all="ignore"):
            for i, step in enumerate(self._plan):
                kind = step[0]
                if kind is True:
                    _, r, ins, scal, outs, sums = step
                    shape = bound(r.shape, dims)
                    args = [env[k] if t is None else t(env[k]) for k, t in zip(ins, scal)]
                    out_arrays = [buffer(k, shape, dt) for k, dt in outs]
                    acc = [buffer(k, bound(sh, dims) or (1,), dt) for k, sh, dt in sums]
                    for a in acc:
                        a.fill(0)
                    if 0 not in shape:
                        self._region_fn(r)(*shape, *args, *out_arrays, *acc)
                    for (k, _), v in zip(outs, out_arrays):
                        env[k] = v
                    for (k, sh, _), v in zip(sums, acc):
                        env[k] = v if sh else v[0]
                elif kind is False:
                    _, fn, ins, attrs, symbolic, dt, k = step
                    env[k] = run_op(fn, [env[j] for j in ins], attrs, symbolic, dims, dt)
                elif kind == "gemm":
                    _, a, b, k, dt = step
                    x, y = env[a], env[b]
                    env[k] = np.matmul(x, y, out=buffer(k, (x.shape[0], y.shape[1]), dt))
                else:
                    self._run_xent(step, env, buffer)
                for k in self._release[i]:
                    env[k] = None
        results = []
        for k, dt in self._outs:
            v = env[k]
            b = given.get(k)
            if b is not None:
                if v is not b:
                    np.copyto(b, v)
                v = b
            elif type(v) is not np.ndarray or v.dtype != dt:
                v = np.asarray(v, dtype=dt)
            elif arena.size and v.base is not None and np.may_share_memory(v, arena):
                v = v.copy()  # a view of a pooled buffer (a reshape of an intermediate): the caller keeps it
            results.append(v)
        return results

    def _whole_fits(self, dims: dict[str, int]) -> bool:
        """Whether this signature runs as one function: when every GEMM is small enough
        that OpenBLAS runs it on one thread (m*n*k <= 4 * 65536). Numba's np.dot calls
        SciPy's OpenBLAS, NumPy's matmul NumPy's own; above that size both libraries'
        thread pools spin on the same cores (the medium step took twice as long
        alternating with NumPy), so big steps call NumPy's matmul from Python."""
        key = tuple(sorted(dims.items()))
        fits = self._fits.get(key)
        if fits is None:
            fits = self._fits[key] = all(
                int(np.prod(bound((s.shape[0], s.shape[1], s.args[0].shape[1]), dims), dtype=np.int64)) <= WHOLE_MNK
                for s in self.steps if isinstance(s, Node) and s.op == "matmul")
        return fits

    def _run_whole(self, arrays, dims, buffer, given) -> list:
        key, src, bufs, names = self._whole
        fn = self._compiled.get(key)
        if fn is None:
            mod = _load(key, src)
            fn = self._compiled[key] = _first_use(key, mod, lambda m: m.step)
        args: list = [dims[d] for d in names]
        for n, a in zip(self.graph.inputs, arrays):
            dt = DTYPE_NUMPY[n.dtype]
            args.append(np.dtype(dt).type(a) if not n.shape else np.ascontiguousarray(a, dtype=dt))
        vals = {k: buffer(k, bound(self._made[k][0], dims), self._made[k][1]) for k in bufs}
        args += [vals[k] for k in bufs]
        ends = []
        for (k, dt), (_, v) in zip(self._outs, self.graph.outputs):
            if v.shape and k in vals:
                ends.append(vals[k])  # written by its step; the end of `step` leaves it alone
            else:
                g = given.get(k)
                ends.append(g if g is not None and v.shape else np.empty(bound(v.shape, dims) or (1,), dtype=dt))
        with np.errstate(all="ignore"):
            ok = fn(*args, *ends)
        if not ok:
            self._bad_labels(arrays, dims)
        results = []
        for (k, _), (_, v), b in zip(self._outs, self.graph.outputs, ends):
            r = b if v.shape else b[0]
            g = given.get(k)
            if g is not None and r is not g:
                np.copyto(g, r)
                r = g
            results.append(r)
        return results

    def _bad_labels(self, arrays, dims) -> None:
        """The ArgumentError naming the label the whole-step function found out of range."""
        from ..errors import ArgumentError
        from ..tensor_ops import _check_labels

        for step in self._plan:
            if step[0] == "xent" and step[3] < len(arrays):
                _check_labels(np.asarray(arrays[step[3]]), bound(step[1].ce.args[0].shape, dims)[-1])
        raise ArgumentError("a label is out of range for its number of classes")

    def run(self, arrays, shape, out=None, **options):
        from ..errors import UnsupportedError

        raise UnsupportedError("a tensor program is called through CompiledFunction (shapes are bound there)")
