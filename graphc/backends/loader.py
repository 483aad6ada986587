"""Loading generated kernel modules: from the disk cache (Numba's machine code
beside them) or in memory, once per process. An entry that fails to import, or
whose first use fails (Numba's cached code corrupt, the cache folder deleted
meanwhile), is purged and written again from the source in hand, else run in
memory. Shared by the pointwise and tensor CPU kernels."""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

from . import cache

_LOADED: dict[str, object] = {}  # cache key -> loaded module, the most recently loaded last
_SOURCE: dict[str, str] = {}  # cache key -> the generated source (to rebuild an entry from)
_LOCK = threading.Lock()
MODULES_KEPT = 256  # a process compiling many formulas keeps the last few hundred modules, not every one


def _remember(key: str, source: str, mod: object) -> object:
    """Record a loaded module, dropping the oldest beyond MODULES_KEPT (a kernel that
    still uses one keeps its functions; a later load of the key imports it again)."""
    _LOADED.pop(key, None)
    _LOADED[key], _SOURCE[key] = mod, source
    while len(_LOADED) > MODULES_KEPT:
        old = next(iter(_LOADED))
        _LOADED.pop(old)
        _SOURCE.pop(old, None)
        sys.modules.pop(f"graphc_kernel_{old}", None)
    return mod


def load_module(key: str, source: str):
    """Import the generated module from the disk cache, or in memory."""
    mod = _LOADED.get(key)
    if mod is not None:
        return mod
    with _LOCK:
        mod = _LOADED.get(key)
        if mod is not None:
            return mod
        return _remember(key, source, _store_and_import(key, source))


def _store_and_import(key: str, source: str):
    """The module from its (re)written cache entry; in memory where there is no usable
    cache folder, or the entry will not import (its folder deleted meanwhile, say)."""
    path = cache.store(key, source)  # the entry is exactly `source` (or rewritten so)
    if path is not None:
        try:
            return _import_file(key, path)
        except Exception:
            sys.modules.pop(f"graphc_kernel_{key}", None)
            cache.purge_numba(path)
    return exec_in_memory(key, source.replace("cache=True", "cache=False"))


def _import_file(key: str, path: Path):
    name = f"graphc_kernel_{key}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)  # generated from verified IR, never user text
    mod.__graphc_path__ = path  # type: ignore[attr-defined]
    return mod


def exec_in_memory(key: str, source: str):
    import types

    name = f"graphc_kernel_{key}"
    mod = types.ModuleType(name)
    code = compile(source, f"<graphc kernel {key}>", "exec")
    exec(code, mod.__dict__)  # exec of source generated from verified IR, never user text
    mod.__graphc_path__ = None  # type: ignore[attr-defined]
    return mod


def first_use(key: str, mod, use):
    """`use(mod)` on a freshly loaded module. A corrupted Numba cache entry, or a
    cache folder deleted since the module was loaded, makes the first use fail: the
    entry's files are purged, the entry written again (its folder recreated) and
    the module reloaded, not crashed."""
    try:
        return use(mod)
    except Exception:
        path = getattr(mod, "__graphc_path__", None)
        source = _SOURCE.get(key)
        if path is None or source is None:
            raise
        cache.purge_numba(path)
        with _LOCK:
            sys.modules.pop(f"graphc_kernel_{key}", None)
            mod = _remember(key, source, _store_and_import(key, source))
        return use(mod)
