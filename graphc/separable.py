"""Is a loss separable over the batch? Proven from the IR, then split.

A loss over data chunked by rows (the leading, batch dimension of the data
inputs) can be computed chunk by chunk and the results added only if it is a
sum of terms of two kinds:

- **separable**: linear in per-row contributions, i.e. built from a sum or
  mean over the batch axis of an expression whose row i depends on row i of
  the data alone (elementwise ops, `X @ W` with W not data, reductions and
  softmaxes along other axes, cross_entropy), then only scaled, added,
  negated or summed further;
- **data-free**: no data input at all (L2 regularisation, priors), added once.

`split` classifies every node, names the first one that breaks these rules
(a mean over the rows inside a nonlinear function, `X.T @ X`, a max over the
batch, ...) in a GraphcError, and returns two forward graphs: the separable
part with every mean over the batch rewritten as a sum times `1/N` (a new
scalar input, N the whole batch's row count, so chunk results add up exactly),
and the data-free part.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .errors import GraphcError
from .ir import Graph, Node, const, input_node, make
from .registry import REGISTRY

ROW, FREE, SEP = "row", "free", "sep"  # row-aligned, data-free, separable (linear in row contributions)

# ops whose per-row result reads only that row when their axis avoids 0
_ALONG = {"sum", "mean", "amax", "amin", "logsumexp"}
_ROWWISE = {"softmax", "log_softmax"}


class NotSeparableError(GraphcError):
    """The loss cannot be computed chunk by chunk over the batch."""


@dataclass
class Split:
    separable: Graph  # inputs: the original ones plus `inv_n`; output "f"
    free: Graph | None  # the data-free terms over the inputs that are not data (None: there are none)
    inv_n: str  # the name of the 1/N input of `separable`


def _axes(node: Node) -> tuple[int, ...]:
    axis = node.attrs.get("axis")
    nd = len(node.args[0].shape)
    if axis is None:
        return tuple(range(nd))
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(a % nd for a in axis)


class _Classifier:
    def __init__(self, batch: set[str], dim: str):
        self.batch, self.dim = batch, dim
        self.kind: dict[int, str] = {}

    def why(self, n: Node, text: str) -> NotSeparableError:
        return NotSeparableError(f"the loss is not separable over the batch dimension {self.dim!r}: {text} "
                                 f"(`{n.op}` of shape {list(n.shape)})")

    def rows(self, n: Node) -> bool:
        return bool(n.shape) and n.shape[0] == self.dim

    def of(self, n: Node) -> str:
        k = self.kind.get(id(n))
        if k is None:
            k = self.kind[id(n)] = self._classify(n)
        return k

    def _classify(self, n: Node) -> str:
        if n.op == "input":
            if n.attr in self.batch:
                return ROW
            if self.rows(n):
                raise self.why(n, f"input {n.attr!r} has the batch dimension but is not chunked with the data")
            return FREE
        if n.op == "const":
            return FREE
        kinds = [self.of(a) for a in n.args]
        if all(k == FREE for k in kinds):
            return FREE
        spec = REGISTRY[n.op]
        if SEP in kinds:
            return self._linear(n, kinds)
        # row-aligned arguments from here
        if spec.per_element or n.op == "to_float":  # integers or a mask as numbers: per row too
            for a, k in zip(n.args, kinds):
                if k == ROW and len(a.shape) != len(n.shape):
                    raise self.why(n, "a per-row value is broadcast along a new leading axis")
                if k == FREE and len(a.shape) == len(n.shape) and a.shape and a.shape[0] != 1:
                    raise self.why(n, "a value without the batch dimension is combined along the rows")
            return ROW
        if n.op == "matmul":
            if kinds[0] == ROW and kinds[1] == FREE and len(n.args[0].shape) == 2:
                return ROW
            raise self.why(n, "a matrix product mixes rows (only data @ parameters keeps row i to row i)")
        if n.op in _ALONG:
            axes = _axes(n)
            if 0 not in axes:
                return ROW
            if n.op in ("sum", "mean"):
                return SEP
            raise self.why(n, f"{n.op} over the batch axis is not a sum of per-row terms")
        if n.op in _ROWWISE:
            if n.attrs.get("axis", -1) % len(n.args[0].shape) != 0:
                return ROW
            raise self.why(n, f"{n.op} along the batch axis mixes rows")
        if n.op == "cross_entropy":
            if n.attrs.get("reduction") == "none":
                return ROW
            return SEP
        if n.op in ("one_hot", "pick"):
            return ROW
        if n.op in ("transpose", "reshape"):
            raise self.why(n, f"a {n.op} moves the batch axis, so rows no longer stay apart")
        if n.op == "broadcast_to" and self.rows(n) and kinds[0] == ROW and len(n.args[0].shape) == len(n.shape):
            return ROW
        raise self.why(n, f"`{n.op}` of per-row values is not known to keep rows apart")

    def _linear(self, n: Node, kinds: list[str]) -> str:
        """A separable value may only be scaled, added to another, negated or summed."""
        if n.op in ("add", "sub") and all(k == SEP for k in kinds):
            return SEP
        if n.op == "neg":
            return SEP
        if n.op == "mul" and sorted(kinds) == [FREE, SEP]:
            return SEP
        if n.op == "div" and kinds == [SEP, FREE]:
            return SEP
        if n.op == "sum":
            return SEP
        if n.op in ("add", "sub"):
            raise self.why(n, "a separable term is added to a per-row or data-free value inside an expression")
        raise self.why(n, f"`{n.op}` of a sum or mean over the batch is not linear in the rows")


def _terms(n: Node, sign: float, out: list[tuple[float, Node]]) -> None:
    """The loss as a signed sum of terms (through add, sub and neg)."""
    if n.op == "add":
        _terms(n.args[0], sign, out)
        _terms(n.args[1], sign, out)
    elif n.op == "sub":
        _terms(n.args[0], sign, out)
        _terms(n.args[1], -sign, out)
    elif n.op == "neg":
        _terms(n.args[0], -sign, out)
    else:
        out.append((sign, n))


def _as_sums(n: Node, inv_n: Node, memo: dict[int, Node], dim: str) -> Node:
    """`n` with every mean over the batch axis as sum * 1/N (times 1/size of the
    other axes it averages), and cross_entropy's mean as its sum * 1/N."""
    got = memo.get(id(n))
    if got is not None:
        return got
    if not n.args:
        return n
    args = [_as_sums(a, inv_n, memo, dim) for a in n.args]
    attrs = n.attrs
    if n.op == "mean" and 0 in _axes(n):
        other = 1
        for a in _axes(n):
            if a != 0:
                d = n.args[0].shape[a]
                if not isinstance(d, int):
                    raise NotSeparableError(f"a mean over the batch and the symbolic dimension {d!r} cannot be "
                                            "split by rows (declare that dimension's size)")
                other *= d
        new = make("mul", make("sum", *args, **attrs), inv_n)
        if other != 1:
            new = make("mul", new, const(1.0 / other, n.dtype))
    elif n.op == "cross_entropy" and attrs.get("reduction") == "mean":
        new = make("mul", make("cross_entropy", *args, **dict(attrs, reduction="sum")), inv_n)
    else:
        new = make(n.op, *args, **attrs)
    memo[id(n)] = new
    return new


def _sum(terms: Sequence[tuple[float, Node]], dtype: str) -> Node:
    total = None
    for sign, t in terms:
        total = t if total is None and sign > 0 else \
            make("neg", t) if total is None else make("add" if sign > 0 else "sub", total, t)
    return total if total is not None else const(0.0, dtype)


def split(graph: Graph, batch: Sequence[str]) -> Split:
    """The forward graph's scalar output as separable + data-free parts, with
    `batch` the data inputs chunked by rows (they must share their leading,
    symbolic dimension)."""
    if len(graph.outputs) != 1 or graph.outputs[0][1].shape:
        raise NotSeparableError("a batch split needs one scalar loss")
    by_name = {n.attr: n for n in graph.inputs}
    dims = set()
    for name in batch:
        n = by_name.get(name)
        if n is None:
            raise NotSeparableError(f"{name!r} is not an input")
        if not n.shape or isinstance(n.shape[0], int):
            raise NotSeparableError(f"data input {name!r} has no symbolic leading (batch) dimension: shape "
                                    f"{list(n.shape)}")
        dims.add(n.shape[0])
    if len(dims) != 1:
        raise NotSeparableError(f"the chunked data inputs do not share one batch dimension: {sorted(map(str, dims))}")
    dim = dims.pop()
    cls = _Classifier(set(batch), dim)
    loss = graph.outputs[0][1]
    terms: list[tuple[float, Node]] = []
    _terms(loss, 1.0, terms)
    sep, free = [], []
    for sign, t in terms:
        kind = cls.of(t)
        if kind == ROW:
            raise cls.why(t, "a per-row value reaches the loss without a sum or mean over the batch")
        (sep if kind == SEP else free).append((sign, t))
    taken = set(graph.input_names)
    name = "inv_n"
    while name in taken:
        name = "_" + name
    inv = input_node(name, graph.dtype)
    memo: dict[int, Node] = {}
    sep_out = _sum([(s, _as_sums(t, inv, memo, dim)) for s, t in sep], graph.dtype)
    separable = Graph([*graph.inputs, inv], [("f", sep_out)])
    params = [n for n in graph.inputs if n.attr not in cls.batch]
    free_graph = Graph(params, [("f", _sum(free, graph.dtype))]) if free else None
    return Split(separable, free_graph, name)
