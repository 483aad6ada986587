"""What a value is, in words, for error messages: every message that names a wrong
argument's type says it the same way, with its article. Imports nothing of graphc's,
so the frontend, the tracer and the backends can all use it."""

from __future__ import annotations

from typing import Any

import numpy as np


def _article(word: str) -> str:
    """'a' or 'an' before `word`, by its sound: an ndarray, an xarray, a uint8, a Python ..."""
    w = word.lower()
    if w.startswith(("uni", "use", "usa", "uint", "ufunc", "one")):
        return "a"
    return "an" if w[:1] in ("a", "e", "i", "o", "u") or w.startswith(("nd", "x", "hdf", "mx", "lx")) else "a"


def describe(x: Any) -> str:
    """What `x` is, for messages, with its article: 'a Python str', 'a Python complex
    number', 'an ndarray of complex128', 'a NumPy complex128 scalar', 'a dask Array
    (dask.array.core.Array)', 'a traced value (a graphc Tracer)'."""
    t = type(x)
    if getattr(t, "graphc_tracer", False):  # graphc.trace.Tracer (not imported: trace imports this)
        return "a traced value (a graphc Tracer)"
    if isinstance(x, np.ndarray):
        return f"an ndarray of {x.dtype}"
    if isinstance(x, np.generic):
        return f"a NumPy {t.__name__} scalar"
    module, name = t.__module__ or "", t.__qualname__
    if module == "builtins":
        return {"complex": "a Python complex number", "NoneType": "None"}.get(name, f"a Python {name}")
    top = module.split(".")[0]
    full = f" ({module}.{name})" if module != top else ""
    return f"{_article(top)} {top} {name}{full}"
