"""The memory plan of a tensor `Plan`: the values steps write into buffers share
one arena per signature, each at a byte offset no value alive at the same time
uses.

A value lives from the step that writes it to the last step that reads it, or
that reads a view of it (a transpose or reshape of a pooled buffer is that
buffer; an output is read after the last step, so a pooled value an output views
lives to the end). With `in_place`, a fused loop's output may take the buffer of
a same-shape input that dies in that loop. Offsets are Python integers: asking
about any size (`layout`, `planned`) allocates nothing and cannot overflow.
Arenas are kept per signature, the most recently used last, at most POOLS_KEPT
of them and, beyond the newest, no more than its size again plus POOL_SLACK.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..shapes import bound
from .plan import HostStep, LoopStep, Plan

POOLS_KEPT = 4  # arenas kept per kernel (one per signature), the most recently used
POOL_SLACK = 1 << 20  # ... and beyond the newest one, at most its size again plus this many bytes
VIEW_OPS = ("transpose", "reshape", "broadcast_to", "slice")  # NumPy steps whose result may view their argument


def nbytes(shape: tuple, dtype: np.dtype, dims: dict[str, int]) -> int:
    return math.prod(bound(shape, dims)) * dtype.itemsize


class MemoryPlan:
    """Lifetimes, aliases and release points of a plan's values (static), and the
    arenas laid out from them per signature (`arena`)."""

    def __init__(self, plan: Plan, in_place: bool = False):
        self.plan = plan
        self.pooled = plan.pooled
        steps, outs = plan.steps, plan.out_slots
        last: dict[int, int] = {k: len(steps) for k in outs}  # outputs are read after the last step
        for i in reversed(range(len(steps))):
            s = steps[i]
            for k in s.writes:
                last.setdefault(k, i)
            view = isinstance(s, HostStep) and s.node.op in VIEW_OPS
            for k in s.reads:
                last.setdefault(k, i)
                if view:
                    last[k] = max(last[k], last.get(s.out, i))
        first = {k: i for i, s in enumerate(steps) for k in s.writes}
        lives = {k: [first[k], last.get(k, first[k])] for k in self.pooled}
        self.alias: dict[int, int] = self._in_place(lives) if in_place else {}
        self.lives: dict[int, tuple[int, int]] = {k: (a, b) for k, (a, b) in lives.items()}
        # a NumPy result (not pooled) is dropped after its last reader
        self.release: list[list[int]] = [[] for _ in steps]
        for i, s in enumerate(steps):
            for k in s.writes:
                if k not in self.pooled and k not in outs:
                    self.release[min(last.get(k, i), len(steps) - 1)].append(k)
        self._arenas: dict[tuple, tuple] = {}  # signature -> (arena, views, bytes), least recently used first
        self._recent: tuple | None = None
        self.on_evict: Callable[[], None] | None = None  # told when an arena is dropped

    def _in_place(self, lives: dict[int, list[int]]) -> dict[int, int]:
        """A fused loop reads each full-shape input at the index it writes, so an
        output may take the buffer of an input that dies in that loop (dh = g * mask
        over g). Updates `lives`; returns slot -> the slot whose buffer it takes."""
        alias: dict[int, int] = {}
        pooled = self.pooled
        for i, s in enumerate(self.plan.steps):
            if not isinstance(s, LoopStep):
                continue
            free = [k for k, a in zip(s.ins, s.region.inputs) if k in pooled and a.shape == s.region.shape
                    and lives[alias.get(k, k)][1] == i]
            for o in s.outs:
                take = next((j for j in free if o.slot in pooled and pooled[j][1] == o.dtype), None)
                if take is not None:
                    free.remove(take)
                    root = alias.get(take, take)
                    alias[o.slot] = root
                    lives[root][1] = max(lives[root][1], lives.pop(o.slot)[1])
        return alias

    def layout(self, dims: dict[str, int]) -> tuple[dict[int, int], int]:
        """The arena's plan for these dimensions, without making it: each pooled value's
        byte offset (the biggest placed first, each at the lowest offset free over its
        lifetime) and the arena's size."""
        placed: list[tuple[int, int, int, int]] = []  # (offset, end, first step, last step)
        offsets: dict[int, int] = {}
        size_of = {k: -(-math.prod(bound(sh, dims)) * dt.itemsize // 64) * 64 for k, (sh, dt) in self.pooled.items()}
        for k in sorted(self.lives, key=lambda k: (-size_of[k], self.lives[k])):  # the biggest first
            size = size_of[k]
            lo, hi = self.lives[k]
            busy = sorted((a, b) for a, b, f, t in placed if f <= hi and lo <= t)
            off = 0
            for a, b in busy:
                if off + size <= a:
                    break
                off = max(off, b)
            offsets[k] = off
            placed.append((off, off + size, lo, hi))
        offsets.update((k, offsets[root]) for k, root in self.alias.items())
        return offsets, max((b for _, b, _, _ in placed), default=0)

    def arena(self, dims: dict[str, int]) -> tuple[np.ndarray, dict[int, np.ndarray], int]:
        """The arena for these dimensions, each pooled value a view into it: (arena,
        views by slot, bytes). Kept per signature; making one may drop the least
        recently used ones (`on_evict` is told)."""
        key = tuple(sorted(dims.items()))
        got = self._arenas.get(key)
        if got is not None:
            if key != self._recent:  # least recently used first: this one moves to the end
                self._arenas[key] = self._arenas.pop(key)
                self._recent = key
            return got
        offsets, size = self.layout(dims)
        arena = np.empty(size, dtype=np.uint8)
        views = {}
        for k, off in offsets.items():
            shape, dt = self.pooled[k]
            shape = bound(shape, dims)
            views[k] = arena[off:off + math.prod(shape) * dt.itemsize].view(dt).reshape(shape)
        got = self._arenas[key] = (arena, views, size)
        self._recent = key
        total = sum(s for _, _, s in self._arenas.values())
        while len(self._arenas) > 1 and (len(self._arenas) > POOLS_KEPT or total > 2 * size + POOL_SLACK):
            total -= self._arenas.pop(next(iter(self._arenas)))[2]
            if self.on_evict is not None:
                self.on_evict()
        return got

    def clear(self) -> None:
        """Drop every arena."""
        self._arenas.clear()
        self._recent = None
        if self.on_evict is not None:
            self.on_evict()

    def pool_bytes(self) -> int:
        """Bytes of the arenas held (all signatures kept)."""
        return sum(a.nbytes for a, _, _ in self._arenas.values())

    def planned(self, dims: dict[str, int]) -> dict[str, int]:
        """Bytes, for these dimensions: `pool` (the arena), `outputs` (new arrays per
        call), `temporaries` (the most NumPy-step results alive at once) and `peak`
        (their sum; the arguments and NumPy's own scratch inside one op are not
        counted). Asking allocates nothing, whatever the sizes."""
        _, pool = self.layout(dims)
        made = {s.out: nbytes(s.node.shape, s.dtype, dims) for s in self.plan.steps
                if isinstance(s, HostStep) and s.node.op not in VIEW_OPS}  # a view allocates nothing
        outs = sum(nbytes(v.shape, v.dtype, dims) for v in self.plan.outputs)
        out_slots = self.plan.out_slots
        live, most = 0, 0
        for i, s in enumerate(self.plan.steps):
            if isinstance(s, HostStep) and s.out not in out_slots:
                live += made.get(s.out, 0)
            most = max(most, live)
            live -= sum(made.get(k, 0) for k in self.release[i])
        return {"pool": pool, "outputs": outs, "temporaries": most, "peak": pool + outs + most}
