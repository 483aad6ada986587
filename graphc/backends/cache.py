"""The on-disk kernel cache: content-addressed generated source, Numba's machine
code beside it.

Key: sha256 of the optimised IR text + target + dtype + variant + graphc and
Numba versions + a hash of graphc's own source (`code_hash`: code made by an
edited or upgraded generator is never served). Each entry is a readable `.py`
file; a cached one is used only where it is byte for byte the source graphc
generates now (anything else is rewritten). Writes are atomic (temp file +
os.replace), so concurrent compiles of one formula both succeed.

What the cache trusts: only a folder private to this user (owned by them, not
writable by group or others; graphc creates its folders 0700), since whatever
is in it runs -- Numba's index pickles and object code, the llvm target's `.o`
files. Any other folder, or one that cannot be written, is not used: kernels
compile in memory, with one CacheWarning.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
import warnings
from pathlib import Path

from ..errors import CacheWarning, GraphcError

HEADER = "# graphc-kernel sha256="
BLOB_HEADER = b"graphc-blob sha256="
MARKER = ".graphc-cache"  # written into every folder graphc uses: `clear` touches no other folder
_ENTRY = re.compile(r"^graphc_[0-9a-f]{24}\.(py|ll|o)\Z")  # exactly the names `store` and `store_blob` write


_warned: set[str] = set()


def cache_dir() -> Path:
    env = os.environ.get("GRAPHC_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "graphc"


_CODE_HASH: str | None = None


def code_hash() -> str:
    """sha256 of graphc's own source: every `.py` file of the package (its path in the
    package and its bytes, in sorted order), read once per process. Part of every cache
    key, so a kernel made by other code -- an edited, patched or upgraded generator --
    is never served; no version constant to remember to bump. A file that cannot be
    read makes a key of this process only (nothing cached by another is served)."""
    global _CODE_HASH
    if _CODE_HASH is None:
        root = Path(__file__).resolve().parent.parent
        h = hashlib.sha256()
        try:
            for f in sorted(root.rglob("*.py")):
                h.update(f.relative_to(root).as_posix().encode() + b"\0")
                h.update(f.read_bytes() + b"\0")
        except OSError:
            h.update(os.urandom(32))
        _CODE_HASH = h.hexdigest()
    return _CODE_HASH


def cache_key(*parts: str) -> str:
    import numba

    from ..version import __version__

    h = hashlib.sha256()
    for p in (*parts, __version__, numba.__version__, code_hash()):
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:24]


def _seal(source: str) -> str:
    return f"{HEADER}{hashlib.sha256(source.encode()).hexdigest()}\n{source}"


def _intact(text: str) -> bool:
    first, _, rest = text.partition("\n")
    return first.startswith(HEADER) and first[len(HEADER):] == hashlib.sha256(rest.encode()).hexdigest()


def _uid() -> int:
    return os.geteuid()


def _untrusted(d: Path) -> str | None:
    """Why folder `d` may hold code someone else wrote, or None: it is not owned by
    this user, or group or others may write it (as ssh and pip judge their folders)."""
    if not hasattr(os, "geteuid"):  # Windows: ACLs, not mode bits; the user's profile folder is private
        return None
    st = os.stat(d)  # a link is judged by the folder it names
    if not stat.S_ISDIR(st.st_mode):
        return "not a folder"
    if st.st_uid != _uid():
        return f"owned by uid {st.st_uid}, not by this user (uid {_uid()})"
    if st.st_mode & 0o022:
        who = {0o022: "group and others", 0o020: "group", 0o002: "others"}[st.st_mode & 0o022]
        return f"writable by {who} (mode {stat.S_IMODE(st.st_mode):o})"
    return None


def _refuse(d: Path, why: str) -> None:
    if str(d) not in _warned:
        _warned.add(str(d))
        warnings.warn(
            f"graphc: kernel cache folder {d} is not private to this user ({why}), so code in it may not be "
            "graphc's; it is not used: compiling in memory (set GRAPHC_CACHE_DIR to a folder of your own, "
            "mode 700)",
            CacheWarning,
            stacklevel=5,
        )
    return None


def trusted_dir() -> Path | None:
    """The cache folder to read entries from: None where it does not exist, or is not
    private to this user (one warning)."""
    d = cache_dir()
    try:
        why = _untrusted(d)
    except OSError:
        return None
    return d if why is None else _refuse(d, why)


def usable_dir() -> Path | None:
    """The cache folder, created (0700) if needed; None (with one warning) if it cannot
    be written or is not private to this user (see `_untrusted`)."""
    d = cache_dir()
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        why = _untrusted(d)
        if why is not None:
            return _refuse(d, why)
        probe = tempfile.NamedTemporaryFile(dir=d, prefix=".probe-", delete=True)
        probe.close()
        marker = d / MARKER
        if not marker.exists():
            marker.write_text("graphc kernel cache: `graphc cache clear` removes only graphc_<key>.py files "
                              "and their compiled code in __pycache__\n")
        pyc = d / "__pycache__"
        pyc.mkdir(mode=0o700, exist_ok=True)
        why = _untrusted(pyc)  # Numba's index pickles and machine code: loaded by the next process
        if why is not None:
            return _refuse(pyc, why)
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
    """Path of a cache entry holding exactly `source` (the code graphc generated, in
    hand): an entry with any other bytes -- truncated, corrupted, planted -- is
    rewritten and Numba's code for it purged."""
    d = usable_dir()
    if d is None:
        return None
    path = d / f"graphc_{key}.py"
    want = _seal(source).encode()
    try:
        if path.is_file() and path.read_bytes() == want:
            return path
        purge_numba(path)
    except OSError as exc:
        return _unwritable(exc)
    return _write_atomic(path, want)


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
    truncated or corrupted: the caller rebuilds it; a folder not private to this
    user is not read). The checksum detects corruption only: a caller checks that
    object code defines the symbols it expects before loading it."""
    d = trusted_dir()
    if d is None:
        return None
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
