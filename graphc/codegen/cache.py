"""The on-disk kernel cache: content-addressed generated source, Numba's machine
code beside it.

Key: sha256 of the optimised IR text + target + dtype + variant + graphc and
Numba versions. Each entry is a readable `.py` file whose first line carries a
sha256 of the rest, so a corrupted or truncated entry is detected and rebuilt.
Writes are atomic (temp file + os.replace), so concurrent compiles of one
formula both succeed. A folder that cannot be written falls back to compiling
in memory, with one warning.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import warnings
from pathlib import Path

from ..errors import GraphcError

HEADER = "# graphc-kernel sha256="
BLOB_HEADER = b"graphc-blob sha256="
MARKER = ".graphc-cache"  # written into every folder graphc uses: `clear` touches no other folder
_ENTRY = re.compile(r"^graphc_[0-9a-f]{24}\.(py|ll|o)\Z")  # exactly the names `store` and `store_blob` write


class CacheWarning(UserWarning):
    """The kernel cache folder cannot be used; kernels compile in memory."""


_warned: set[str] = set()


def cache_dir() -> Path:
    env = os.environ.get("GRAPHC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphc"


def cache_key(*parts: str) -> str:
    import numba

    from ..version import __version__

    h = hashlib.sha256()
    for p in (*parts, __version__, numba.__version__):
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _seal(source: str) -> str:
    return f"{HEADER}{hashlib.sha256(source.encode()).hexdigest()}\n{source}"


def _intact(text: str) -> bool:
    first, _, rest = text.partition("\n")
    return first.startswith(HEADER) and first[len(HEADER):] == hashlib.sha256(rest.encode()).hexdigest()


def usable_dir() -> Path | None:
    """The cache folder, created if needed; None (with one warning) if unusable."""
    d = cache_dir()
    try:
        d.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=d, prefix=".probe-", delete=True)
        probe.close()
        marker = d / MARKER
        if not marker.exists():
            marker.write_text("graphc kernel cache: `graphc cache clear` removes only graphc_<key>.py files "
                              "and their compiled code in __pycache__\n")
        pyc = d / "__pycache__"
        pyc.mkdir(exist_ok=True)
        if not os.access(pyc, os.W_OK):
            raise PermissionError(f"{pyc} is not writable")
        return d
    except OSError as exc:
        if str(d) not in _warned:
            _warned.add(str(d))
            warnings.warn(
                f"graphc: kernel cache folder {d} is not usable ({exc}); compiling in memory "
                "(set GRAPHC_CACHE_DIR to a writable folder to cache kernels)",
                CacheWarning,
                stacklevel=4,
            )
        return None


def store(key: str, source: str) -> Path | None:
    """Path of an intact cache entry holding `source`, writing it if needed."""
    d = usable_dir()
    if d is None:
        return None
    path = d / f"graphc_{key}.py"
    try:
        if path.exists() and _intact(path.read_bytes().decode("utf-8", errors="replace")):
            return path  # (bytes that are not UTF-8 fail the checksum: the entry is rebuilt)
        purge_numba(path)
    except OSError as exc:
        return _unwritable(exc)
    return _write_atomic(path, _seal(source).encode())


def store_blob(key: str, suffix: str, data: bytes) -> Path | None:
    """Write `graphc_<key><suffix>` (".o" object code, ".ll" LLVM IR): a sha256 line,
    then the bytes; atomic, so concurrent writers of one key both succeed."""
    d = usable_dir()
    if d is None:
        return None
    return _write_atomic(d / f"graphc_{key}{suffix}",
                         BLOB_HEADER + hashlib.sha256(data).hexdigest().encode() + b"\n" + data)


def _write_atomic(path: Path, data: bytes) -> Path | None:
    """`data` into `path` through a temporary file and os.replace: concurrent
    writers of one entry all succeed, a reader never sees half a file."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return path
    except OSError as exc:
        return _unwritable(exc)


def _unwritable(exc: OSError) -> None:
    warnings.warn(f"graphc: cannot write the kernel cache ({exc}); compiling in memory", CacheWarning,
                  stacklevel=5)
    return None


def load_blob(key: str, suffix: str) -> bytes | None:
    """The bytes of an intact `graphc_<key><suffix>` entry, else None (missing,
    truncated or corrupted: the caller rebuilds it)."""
    d = cache_dir()
    try:
        raw = (d / f"graphc_{key}{suffix}").read_bytes()
    except OSError:
        return None
    head, _, data = raw.partition(b"\n")
    if head != BLOB_HEADER + hashlib.sha256(data).hexdigest().encode():
        return None
    return data


def purge_numba(path: Path) -> None:
    """Remove Numba's cached machine code for one generated module."""
    pyc = path.parent / "__pycache__"
    if pyc.is_dir():
        for f in pyc.glob(f"{path.stem}.*"):
            try:
                f.unlink()
            except OSError:
                pass


def _entries(d: Path) -> list[Path]:
    return sorted(f for f in d.glob("graphc_*") if _ENTRY.match(f.name)) if d.is_dir() else []


def info() -> dict:
    d = cache_dir()
    entries = _entries(d)
    size = sum(f.stat().st_size for f in d.rglob("*") if f.is_file()) if d.is_dir() else 0
    return {"dir": str(d), "entries": len(entries), "bytes": size}


def clear() -> int:
    """Remove the kernels graphc wrote -- `graphc_<key>.py` entries, their compiled
    code in __pycache__, the llvm target's `.ll` and `.o` files and stray temporary
    files -- and nothing else. A folder
    without graphc's marker file is refused."""
    d = cache_dir()
    if not d.is_dir():
        return 0
    if not (d / MARKER).exists():
        raise GraphcError(f"{d} is not a graphc kernel cache (it has no {MARKER} file); nothing was removed")
    n = 0
    try:
        for f in _entries(d):
            purge_numba(f)
            f.unlink()
            n += 1
        for f in d.glob(".graphc_*.tmp"):
            if re.match(r"^\.graphc_[0-9a-f]{24}-.*\.tmp\Z", f.name):
                f.unlink()
    except OSError as exc:
        raise GraphcError(f"cannot clear the kernel cache {d}: {exc.strerror or exc} "
                          f"({n} kernel(s) removed before that)") from None
    return n
