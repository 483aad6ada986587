"""Ops with several results (a loop, a custom-VJP call) and the op that picks one of them.

An IR node has one type, so a node with several results (`scan`, `custom_vjp`) is read
through pick nodes (`scan_out`, `custom_vjp_out` with `index=k`). Both kinds share what
is here: the pick's registry entry, and the derivative rule that refuses to be used one
result at a time (autodiff takes such a node's adjoints together, `autodiff.SEVERAL`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .errors import IRError
from .ir import Node, Type
from .registry import OpSpec, register_op


def pick(t: tuple, index: int) -> Any:
    """The NumPy (and SymPy) form of a pick: result `index` of the node's tuple."""
    return t[index]


def whole_rule(what: str) -> Callable[[Node, Node], tuple]:
    """A derivative rule for `what`'s node and its picks, which autodiff never calls one at a
    time: it raises if something does."""
    def rule(node: Node, g: Node) -> tuple:
        raise IRError(f"{node.op}: its adjoints are taken by {what}'s own rule (autodiff.SEVERAL), every result "
                      "at once")

    return rule


def register_pick(name: str, owner: str, types: Callable[[Node], list[Type]], doc: str, what: str) -> None:
    """Register `name(node, index=k)`: result k of an `owner` node, typed by `types(node)`."""
    def infer(op: str, args: tuple, attrs: dict) -> tuple[dict, Type]:
        (src,) = args
        if src.op != owner:
            raise IRError(f"{name}: picks a result of a {owner} node, got {src.op}")
        if set(attrs) != {"index"}:
            raise IRError(f"{name}: takes one attribute, index; got {', '.join(sorted(attrs)) or 'none'}")
        k, got = attrs["index"], types(src)
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < len(got):
            raise IRError(f"{name}: index {k!r}, but the {owner} node has {len(got)} result(s)")
        return {"index": int(k)}, got[int(k)]

    register_op(OpSpec(name, 1, pick, whole_rule(what), None, "", doc, infer=infer, symbolic=pick, internal=True))
