"""Loading generated kernel modules: from the disk cache (Numba's machine code
beside them) or in memory, once per process, with a corrupted cache entry
purged and rebuilt on first use. Shared by the pointwise and tensor CPU kernels."""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

from . import cache

_LOADED: dict[str, object] = {}  # cache key -> loaded module (one per process)
_LOCK = threading.Lock()


def _load(key: str, source: str):
    """Import the generated module from the disk cache, or in memory."""
    mod = _LOADED.get(key)
    if mod is not None:
        return mod
    with _LOCK:
        mod = _LOADED.get(key)
        if mod is not None:
            return mod
        path = cache.store(key, source)
        if path is None:
            mod = _exec_in_memory(key, source.replace("cache=True", "cache=False"))
        else:
            mod = _import_file(key, path)
        _LOADED[key] = mod
        return mod


def _import_file(key: str, path: Path):
    name = f"graphc_kernel_{key}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)  # generated from verified IR, never user text
    mod.__graphc_path__ = path  # type: ignore[attr-defined]
    return mod


def _exec_in_memory(key: str, source: str):
    import types

    name = f"graphc_kernel_{key}"
    mod = types.ModuleType(name)
    code = compile(source, f"<graphc kernel {key}>", "exec")
    exec(code, mod.__dict__)  # exec of source generated from verified IR, never user text
    mod.__graphc_path__ = None  # type: ignore[attr-defined]
    return mod


def _first_use(key: str, mod, use):
    """`use(mod)` on a freshly loaded module. A corrupted Numba cache entry makes
    the first use fail: its files are purged and the module reloaded, not crashed."""
    try:
        return use(mod)
    except Exception:
        path = getattr(mod, "__graphc_path__", None)
        if path is None:
            raise
        cache.purge_numba(path)
        _LOADED.pop(key, None)
        sys.modules.pop(f"graphc_kernel_{key}", None)
        mod = _import_file(key, path)
        _LOADED[key] = mod
        return use(mod)
