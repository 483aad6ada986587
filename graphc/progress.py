"""A progress line on stderr for work that runs longer than a couple of seconds."""

from __future__ import annotations

import sys
import time
from typing import Any

AFTER = 2.0  # seconds of work before a progress line appears


class Progress:
    """`graphc check: reference values 1,234/20,000` on stderr, redrawn at most 4
    times a second, from 2 s on, and only when stderr is a terminal: long work
    shows it is moving, short work and pipes stay quiet."""

    def __init__(self, what: str, total: int, stream: Any = None, after: float | None = None,
                 prefix: str = "graphc check"):
        self.what, self.total, self.prefix = what, total, prefix
        self.after = AFTER if after is None else after
        self.stream = stream if stream is not None else sys.stderr
        self.on = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.shown = False

    def __call__(self, done: int) -> None:
        if not self.on:
            return
        now = time.perf_counter()
        if now - self.t0 < self.after or (now - self.last < 0.25 and done < self.total):
            return
        self.last, self.shown = now, True
        self.stream.write(f"\r{self.prefix}: {self.what} {done:,}/{self.total:,}")
        if done >= self.total:
            self.stream.write("\n")
        self.stream.flush()
