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

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..ir import DTYPE_NUMPY, Graph, Node, fmt_shape, input_node, make, print_graph
from ..registry import REGISTRY
from . import cache
from .kernel import Kernel
from .loader import _first_use, _load
from .numpy_ref import op_step, run_op
from .scalar import Body, indent

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
    start: int  # position of its first node in the schedule order
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
    """Steps in order: a Node (run by NumPy), a Region or an Xent. A node joins the
    region of an argument of its shape when every other argument is computed before
    that region starts (so running the region as one step keeps the order valid)."""
    order = [n for n in graph.body if n.op != "const"]
    pos = {id(n): k for k, n in enumerate(order)}
    xents = _xents(order)
    taken = {id(n): x for x in xents for n in x.nodes}
    member: dict[int, Region] = {}
    regions: list[Region] = []
    for k, n in enumerate(order):
        if not _fusible(n) or id(n) in taken:
            continue
        home = None
        for a in n.args:
            r = member.get(id(a))
            if r is not None and r.shape == n.shape and all(
                    member.get(id(b)) is r or b.op in ("const", "input") or pos.get(id(b), -1) < r.start
                    for b in n.args):
                home = r
                break
        if home is None:
            home = Region(n.shape, k)
            regions.append(home)
        home.nodes.append(n)
        member[id(n)] = home
    # sums over a region's values join it as epilogues, accumulated in the same loop (the bias
    # gradient sum(dh, axis=0) in the pass that makes dh); after every region is formed, so no
    # elementwise node ever reads a sum that is still accumulating
    for n in order:
        if n.op == "sum" and n.type.is_float and id(n.args[0]) in member:
            r = member[id(n.args[0])]
            if n.args[0].shape == r.shape:
                r.reductions.append(n)
                member[id(n)] = r
    # regions of one op and no epilogue run as NumPy
    for r in regions:
        if len(r.nodes) + len(r.reductions) < MIN_FUSED:
            for n in r.nodes + r.reductions:
                del member[id(n)]
            r.reductions = []
    regions = [r for r in regions if len(r.nodes) + len(r.reductions) >= MIN_FUSED]
    users: dict[int, list[Node]] = {}
    for n in order:
        for a in n.args:
            users.setdefault(id(a), []).append(n)
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
    steps: list = []
    placed: set[int] = set()
    for n in order:
        r = member.get(id(n)) or taken.get(id(n))
        if r is None:
            steps.append(n)
        elif id(r) not in placed:  # a region or an Xent runs where its first node was
            placed.add(id(r))
            steps.append(r)
    # drop NumPy steps nothing reads any more (a broadcast_to that every region reads through)
    needed = set(out_ids)
    for s in reversed(steps):
        if isinstance(s, Region):
            needed.update(id(a) for a in s.inputs)
        elif isinstance(s, Xent):
            needed.update(id(a) for a in s.ce.args)
        elif id(s) in needed:
            needed.update(id(a) for a in s.args)
    return [s for s in steps if isinstance(s, (Region, Xent)) or id(s) in needed]


def region_source(r: Region, dtype: str) -> str:
    """`region`: a Numba loop nest over the region's shape, inputs broadcast by
    indexing, sums accumulated in the loop."""
    scalars = [input_node(f"r{k}", a.dtype) for k, a in enumerate(r.inputs)]
    mapped: dict[int, Node] = {id(a): s for a, s in zip(r.inputs, scalars)}
    inside = {id(n) for n in r.nodes}
    for n in r.nodes:
        args = [_through(a, inside) for a in n.args]
        mapped[id(n)] = make(n.op, *(mapped.get(id(a), a) for a in args))  # constants stay constants
    reduced = [n.args[0] for n in r.reductions]
    sub = Graph(scalars, [(f"o{k}", mapped[id(o)]) for k, o in enumerate(r.outputs + reduced)])
    body = Body(sub, backend="cpu")
    nd = len(r.shape)
    idx = [f"i{k}" for k in range(nd)]
    dims = [f"n{k}" for k in range(nd)]
    params = [*dims, *(f"a{k}" for k in range(len(r.inputs))), *(f"o{k}" for k in range(len(r.outputs))),
              *(f"s{k}" for k in range(len(r.reductions)))]
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
        f"def region({', '.join(params)}):",
    ]
    lines += indent(body.consts, 4)
    loads_outer: list[str] = []
    loads_inner: list[str] = []
    for k, a in enumerate(r.inputs):
        var = body.var[id(scalars[k])]
        if not a.shape:  # a 0-d value arrives as a NumPy scalar of the dtype
            loads_outer.append(f"{var} = a{k}")
            continue
        off = nd - len(a.shape)
        sub_idx = ["0" if (d == 1 and r.shape[off + j] != 1) else idx[off + j] for j, d in enumerate(a.shape)]
        loads_inner.append(f"{var} = a{k}[{', '.join(sub_idx)}]")
    lines += indent(loads_outer, 4)
    pad = 4
    for k in range(nd):
        lines.append(" " * pad + f"for {idx[k]} in range({dims[k]}):")
        pad += 4
    stores = [f"o{k}[{', '.join(idx)}] = {v}" for k, v in enumerate(body.outputs[:len(r.outputs)])]
    for k, (n, v) in enumerate(zip(r.reductions, body.outputs[len(r.outputs):])):
        ax, keep = n.attrs["axis"], n.attrs["keepdims"]
        at = [("0" if keep else None) if j in ax else i for j, i in enumerate(idx)]
        at = [i for i in at if i is not None] or ["0"]  # a full reduction accumulates into one cell
        stores.append(f"s{k}[{', '.join(at)}] += {v}")
    inner = loads_inner + body.lines + stores
    lines += indent(inner, pad)
    return "\n".join(lines) + "\n"


def _arg(v: object, node: Node) -> object:
    """An input of a fused kernel: arrays as they are (views included), 0-d as a typed scalar."""
    if node.shape:
        return v
    return np.dtype(DTYPE_NUMPY[node.dtype]).type(v)


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
        self._pool: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        self.source = self.describe()

    def describe(self) -> str:
        """The schedule: each step with its shapes, then each fused kernel's source."""
        names = {id(n): f"%{n.attr}" for n in self.graph.inputs}
        j = 0
        for n in self.graph.body:
            if n.op != "const":
                names[id(n)] = f"%{j}"
                j += 1
        out = [f"# graphc schedule: target {self.target}, {self.graph.dtype}", ""]
        kernels = []
        for s in self.steps:
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
                out.append(f"gemm: {names[id(s)]} = {names.get(id(a), '?')}{fmt_shape(a.shape)} @ "
                           f"{names.get(id(b), '?')}{fmt_shape(b.shape)}{note}")
            else:
                out.append(f"numpy: {names[id(s)]} = {s.op} {fmt_shape(s.shape)}")
        for k, r in enumerate(kernels):
            out += ["", f"# ---- kernel {k}", r.source]
        return "\n".join(out)

    def _run_xent(self, step: tuple, env: list) -> None:
        from ..tensor_ops import _check_labels

        _, x, si, yi, outs, dt = step
        scores, labels = env[si], env[yi]
        n, c = scores.shape
        _check_labels(labels, c)
        p = self._buffer(outs[1], (n, c), dt)
        d = self._buffer(outs[2], (n, c), dt) if x.diff is not None else np.empty((0, c), dtype=dt)
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
        """Slots instead of dicts: each value has an index; steps become tuples."""
        slot: dict[int, int] = {}
        for n in self.graph.inputs:
            slot[id(n)] = len(slot)
        self._consts = []
        for n in self.graph.body:
            if n.op == "const":
                self._consts.append((len(slot), np.dtype(DTYPE_NUMPY[n.dtype]).type(n.value)))
                slot[id(n)] = len(slot)
        plan = []
        for s in self.steps:
            if isinstance(s, Xent):
                for n in s.nodes:
                    slot[id(n)] = len(slot)
                plan.append(("xent", s, slot[id(s.ce.args[0])], slot[id(s.ce.args[1])],
                             [slot[id(n)] for n in s.nodes], np.dtype(DTYPE_NUMPY[s.ce.dtype])))
                continue
            if isinstance(s, Region):
                for n in s.outputs + s.reductions:
                    slot[id(n)] = len(slot)
                plan.append((True, s, [slot[id(a)] for a in s.inputs],
                             [np.dtype(DTYPE_NUMPY[a.dtype]).type if not a.shape else None for a in s.inputs],
                             [(slot[id(o)], np.dtype(DTYPE_NUMPY[o.dtype])) for o in s.outputs],
                             [(slot[id(n)], n.shape, np.dtype(DTYPE_NUMPY[n.dtype])) for n in s.reductions]))
            else:
                slot[id(s)] = len(slot)
                fn, attrs, symbolic, dt = op_step(s)
                plan.append((False, fn, [slot[id(a)] for a in s.args], attrs, symbolic, dt, slot[id(s)]))
        self._plan = plan
        self._nslots = len(slot)
        self._outs = [(slot[id(v)], DTYPE_NUMPY[v.dtype]) for _, v in self.graph.outputs]
        self._out_slots = {k for k, _ in self._outs}

    def _buffer(self, slot: int, shape: tuple, dt: np.dtype, zero: bool = False) -> np.ndarray:
        """An intermediate's buffer, kept from call to call (the memory pool); a graph
        output always gets a fresh array, since the caller keeps it."""
        if slot in self._out_slots:
            return np.zeros(shape, dtype=dt) if zero else np.empty(shape, dtype=dt)
        buf = self._pool.get(slot)
        if buf is None or buf.shape != shape or buf.dtype != dt:
            buf = self._pool[slot] = np.empty(shape, dtype=dt)
        if zero:
            buf.fill(0)
        return buf

    def pool_bytes(self) -> int:
        """Bytes of intermediate buffers held between calls (at the last call's sizes)."""
        return sum(b.nbytes for b in self._pool.values())

    def run_tensor(self, arrays: Sequence[np.ndarray], dims: dict[str, int]) -> list:
        with self._lock:  # the pool's buffers belong to one call at a time
            return self._run_tensor(arrays, dims)

    def _run_tensor(self, arrays: Sequence[np.ndarray], dims: dict[str, int]) -> list:
        if self._plan is None:
            self._prepare()
        env: list = [None] * self._nslots
        for k, (n, a) in enumerate(zip(self.graph.inputs, arrays)):
            env[k] = a if type(a) is np.ndarray and a.dtype == DTYPE_NUMPY[n.dtype] else \
                np.asarray(a, dtype=DTYPE_NUMPY[n.dtype])
        for k, v in self._consts:
            env[k] = v
        with np.errstate(all="ignore"):
            for step in self._plan:
                if step[0] == "xent":
                    self._run_xent(step, env)
                    continue
                if step[0] is True:
                    _, r, ins, scal, outs, sums = step
                    shape = r.shape if all(isinstance(d, int) for d in r.shape) else tuple(
                        d if isinstance(d, int) else dims[d] for d in r.shape)
                    args = [env[k] if t is None else t(env[k]) for k, t in zip(ins, scal)]
                    out_arrays = [self._buffer(k, shape, dt) for k, dt in outs]
                    acc = [self._buffer(k, tuple(d if isinstance(d, int) else dims[d] for d in sh) or (1,), dt,
                                        zero=True) for k, sh, dt in sums]
                    if 0 not in shape:
                        self._region_fn(r)(*shape, *args, *out_arrays, *acc)
                    for (k, _), v in zip(outs, out_arrays):
                        env[k] = v
                    for (k, sh, _), v in zip(sums, acc):
                        env[k] = v if sh else v[0]
                    continue
                _, fn, ins, attrs, symbolic, dt, k = step
                env[k] = run_op(fn, [env[j] for j in ins], attrs, symbolic, dims, dt)
        outs = [np.asarray(env[k], dtype=dt) for k, dt in self._outs]
        pool = list(self._pool.values())
        # an output that views a pooled buffer (a reshape or transpose of an intermediate) is copied:
        # the caller keeps it, the pool overwrites it on the next call
        return [o.copy() if o.base is not None and any(np.may_share_memory(o, b) for b in pool) else o
                for o in outs]

    def run(self, arrays, shape, out=None, **options):
        from ..errors import UnsupportedError

        raise UnsupportedError("a tensor program is called through CompiledFunction (shapes are bound there)")
