"""The loop plan of a tensor program: its schedule (`schedule.py`) lowered once
to typed steps over value slots, which every tensor backend renders.

Each value of the program has a slot (inputs first, then constants, then what
the steps make). A step says what it reads and writes:

- `LoopStep`: a fused region, one loop nest over its shape (inputs broadcast by
  indexing, 0-d inputs by value; outputs stored per element; sums accumulated
  in the loop into cells);
- `RowStep`: cross_entropy with its softmax (and softmax - one_hot), the
  passes of `XENT_ROW` per row of the scores;
- `GemmStep`: a 2-D matrix product into a buffer;
- `HostStep`: any other op, its NumPy form.

`lower(graph, steps)` makes the `Plan`; `memory.py` plans its buffers; a
backend decides how to spell each step, never which steps there are. Each step
class names its `kind`; a renderer has one function per kind (`PlanKernel.run_<kind>`
on the CPU), so a new kind of step is a class here and one function per renderer
(tests/test_plan.py adds a toy one); a whole-step renderer that lacks it leaves
the plan to the step-by-step runner.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..backends.host_kernels import FAST
from ..backends.numpy_ref import op_step
from ..ir import DTYPE_NUMPY, Graph, Node
from .regions import Region, Xent


def np_dtype(n: Node) -> np.dtype:
    return np.dtype(DTYPE_NUMPY[n.dtype])


@dataclass(frozen=True, slots=True)
class Value:
    """A slot with the shape (symbolic dimensions) and dtype of its value."""

    slot: int
    shape: tuple
    dtype: np.dtype


@dataclass(frozen=True, slots=True, eq=False)
class LoopStep:
    """A fused region: `region.shape`'s loop nest reading `ins` (a 0-d input is
    passed by value, converted by its `scalars` type; arrays have None), storing
    `outs` per element and accumulating `sums` (each into a cell of its shape, or
    of shape (1,) when 0-d)."""

    kind: ClassVar[str] = "loop"  # renderers run a step by its kind: `run_loop`

    region: Region
    ins: tuple[int, ...]
    scalars: tuple[type | None, ...]
    outs: tuple[Value, ...]
    sums: tuple[Value, ...]

    @property
    def reads(self) -> tuple[int, ...]:
        return self.ins

    @property
    def writes(self) -> tuple[int, ...]:
        return tuple(v.slot for v in self.outs + self.sums)


@dataclass(frozen=True, slots=True)
class RowOp:
    """One pass of a row step over the c entries of row i of the scores `s` (its
    label `y`), reading and writing the row's named values."""

    kind: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    doc: str


# The cross-entropy row, once for every backend: each renderer spells these four passes
# in order (one function per kind), and decides nothing else. The NumPy forms agree.
XENT_ROW: tuple[RowOp, ...] = (
    RowOp("max", ("s",), ("m",),
          "m = max_j s[j]; NaN propagates (numpy.max); an infinite or NaN m becomes 0 (the shift only)"),
    RowOp("exp_sum", ("s", "m"), ("p", "z"), "p[j] = exp(s[j] - m); z = sum_j p[j], in column order"),
    RowOp("normalize", ("p", "z", "y"), ("p", "d"),
          "p[j] = p[j] / z; d[j] = p[j] - (1 if j == y else 0), where the step keeps d"),
    RowOp("nll", ("s", "y", "z", "m"), ("loss",), "loss = -(s[y] - (log(z) + m))"),
)


@dataclass(frozen=True, slots=True, eq=False)
class RowStep:
    """cross_entropy(scores, labels) with its softmax (and softmax - one_hot when
    `diff` is not None), one pass per row; `loss` is a NumPy scalar or vector, the
    others (n, c) buffers."""

    kind: ClassVar[str] = "row"  # renderers run a step by its kind: `run_row`

    xent: Xent
    scores: int
    labels: int
    loss: int
    softmax: int
    diff: int | None
    dtype: np.dtype
    ops: tuple[RowOp, ...] = XENT_ROW

    @property
    def reduction(self) -> str:
        return self.xent.ce.attrs["reduction"]

    @property
    def reads(self) -> tuple[int, ...]:
        return (self.scores, self.labels)

    @property
    def writes(self) -> tuple[int, ...]:
        return (self.loss, self.softmax) + ((self.diff,) if self.diff is not None else ())


@dataclass(frozen=True, slots=True, eq=False)
class GemmStep:
    """out = a @ b, all 2-D, into a buffer."""

    kind: ClassVar[str] = "gemm"  # renderers run a step by its kind: `run_gemm`

    node: Node
    a: int
    b: int
    out: int
    dtype: np.dtype

    @property
    def reads(self) -> tuple[int, ...]:
        return (self.a, self.b)

    @property
    def writes(self) -> tuple[int, ...]:
        return (self.out,)


@dataclass(frozen=True, slots=True, eq=False)
class HostStep:
    """One op's NumPy form (`numpy_ref.op_step`): out = fn(*ins, **attrs); with `into`,
    a compiled form (`backends.host_kernels.FAST`) that writes into its buffer `out=`
    (a runner that passes none gets a new array)."""

    kind: ClassVar[str] = "host"  # renderers run a step by its kind: `run_host`

    node: Node
    fn: Any
    ins: tuple[int, ...]
    attrs: Mapping | None
    symbolic: bool
    dtype: np.dtype
    out: int
    into: bool = False

    @property
    def reads(self) -> tuple[int, ...]:
        return self.ins

    @property
    def writes(self) -> tuple[int, ...]:
        return (self.out,)


@dataclass(frozen=True, slots=True, eq=False)
class ScanStep:
    """A loop (graphc.loops' `scan` node): its body graph, which a runner compiles once for
    its own target and calls once per step from a host loop (`loops.run_loop`). `outs[i]`
    is the buffer of result i -- the final carry's leaves, the stacked ys, the stacked
    carries (what the backward loop reads) -- or None where nothing reads it (not stored)."""

    kind: ClassVar[str] = "scan"  # renderers run a step by its kind: `run_scan`

    node: Node
    ins: tuple[int, ...]
    outs: tuple[Value | None, ...]

    @property
    def body(self) -> Graph:
        return self.node.attrs["body"]

    @property
    def reads(self) -> tuple[int, ...]:
        return self.ins

    @property
    def writes(self) -> tuple[int, ...]:
        return tuple(v.slot for v in self.outs if v is not None)


Step = LoopStep | RowStep | GemmStep | HostStep | ScanStep
LOOP, RESULT = "scan", "scan_out"  # graphc.loops' ops: a loop, and the node that picks one of its results


@dataclass(frozen=True, slots=True)
class Plan:
    """The lowered schedule. `inputs` are slots 0..; `consts` (slot, value);
    `buffers` each value a step writes into a buffer (its buffer's shape: a 0-d
    sum has a cell of shape (1,)), in step order; `pooled` those of them that are
    no output (the memory plan shares them by lifetime); `outputs` the graph's."""

    steps: tuple[Step, ...]
    nslots: int
    inputs: tuple[Value, ...]
    consts: tuple[tuple[int, Any], ...]
    outputs: tuple[Value, ...]
    buffers: Mapping[int, tuple[tuple, np.dtype]]
    pooled: Mapping[int, tuple[tuple, np.dtype]]

    @property
    def out_slots(self) -> frozenset[int]:
        return frozenset(v.slot for v in self.outputs)


def pointwise(graph: Graph, arrays: Sequence[bool]) -> LoopStep:
    """A pointwise formula as the plan's one-region case: one loop over n
    elements, input k read per element where arrays[k] (else one value for all),
    every output stored per element. Slots: the inputs, then the outputs."""
    region = Region(("n",), 0, 0, nodes=[n for n in graph.body if n.op != "const"], inputs=list(graph.inputs),
                    outputs=[v for _, v in graph.outputs])
    k = len(graph.inputs)
    scalars = tuple(None if full else np_dtype(n).type for n, full in zip(graph.inputs, arrays))
    outs = tuple(Value(k + j, ("n",), np_dtype(v)) for j, (_, v) in enumerate(graph.outputs))
    return LoopStep(region, tuple(range(k)), scalars, outs, ())


def is_gemm(n: Node) -> bool:
    """A matrix product the plan runs as a GEMM: 2-D by 2-D."""
    return n.op == "matmul" and n.type.ndim == 2 and all(a.type.ndim == 2 for a in n.args)


def lower(graph: Graph, steps: list) -> Plan:
    """The plan of a schedule (`schedule.regions(graph)`): slots for values,
    typed steps over them, and which values go into buffers."""
    slot: dict[int, int] = {}
    for n in graph.inputs:
        slot[id(n)] = len(slot)
    inputs = tuple(Value(slot[id(n)], n.shape, np_dtype(n)) for n in graph.inputs)
    consts = []
    for n in graph.body:
        if n.op == "const":
            consts.append((len(slot), np_dtype(n).type(n.value)))
            slot[id(n)] = len(slot)
    out_ids = {id(v) for _, v in graph.outputs}
    buffers: dict[int, tuple[tuple, np.dtype]] = {}
    pooled: dict[int, tuple[tuple, np.dtype]] = {}

    def new(n: Node) -> int:
        slot[id(n)] = len(slot)
        return slot[id(n)]

    def keep(n: Node, shape: tuple | None = None) -> Value:
        """A slot for a value its step writes into a buffer."""
        k = new(n)
        buffers[k] = (shape if shape is not None else n.shape, np_dtype(n))
        if id(n) not in out_ids:
            pooled[k] = buffers[k]
        return Value(k, n.shape, np_dtype(n))

    picks: dict[int, dict[int, Node]] = {}  # a loop's results that the graph reads, by index
    for n in graph.body:
        if n.op == RESULT:
            picks.setdefault(id(n.args[0]), {})[n.attrs["index"]] = n
    out: list[Step] = []
    for s in steps:
        if isinstance(s, Node) and s.op == RESULT:
            continue  # its loop's step wrote it
        if isinstance(s, Xent):
            scores, labels = (slot[id(a)] for a in s.ce.args)
            loss = new(s.ce)  # the loss itself is a NumPy scalar or vector
            p = keep(s.softmax).slot
            d = keep(s.diff).slot if s.diff is not None else None
            out.append(RowStep(s, scores, labels, loss, p, d, np_dtype(s.ce)))
        elif isinstance(s, Region):
            ins = tuple(slot[id(a)] for a in s.inputs)
            scalars = tuple(np_dtype(a).type if not a.shape else None for a in s.inputs)
            outs = tuple(keep(o) for o in s.outputs)
            sums = tuple(keep(n, n.shape or (1,)) for n in s.reductions)
            out.append(LoopStep(s, ins, scalars, outs, sums))
        elif s.op == LOOP:
            got = picks.get(id(s), {})
            outs = tuple(keep(got[i]) if i in got else None for i in range(max(got, default=-1) + 1))
            out.append(ScanStep(s, tuple(slot[id(a)] for a in s.args), outs))
        elif is_gemm(s):
            a, b = (slot[id(x)] for x in s.args)
            out.append(GemmStep(s, a, b, keep(s).slot, np_dtype(s)))
        else:
            ins = tuple(slot[id(a)] for a in s.args)
            fn, attrs, symbolic, dt = op_step(s)
            if s.op in FAST:  # a compiled form into a buffer of the plan's (the numpy target keeps NumPy's)
                out.append(HostStep(s, FAST[s.op], ins, attrs, symbolic, dt, keep(s).slot, into=True))
            else:
                out.append(HostStep(s, fn, ins, attrs, symbolic, dt, new(s)))
    outputs = tuple(Value(slot[id(v)], v.shape, np_dtype(v)) for _, v in graph.outputs)
    return Plan(tuple(out), len(slot), inputs, tuple(consts), outputs, buffers, pooled)
