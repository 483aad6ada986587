"""What the kernel cache trusts (issue 23, items 4 and 7): keys that change with
graphc's own source, folders private to the user, and entries checked before
they run. Every crash test runs in a subprocess (a bad object file can kill the
interpreter)."""

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_cache import FORMULA, check_result, run_probe

import graphc
from graphc.backends import cache
from graphc.backends.llvm import pointwise as llvm_cpu

NEURON = "sigmoid(w0*x0 + w1*x1 + w2)"
OTHER = "tanh(w0*x0 + w1*x1 + w2)"  # same inputs, another kernel
ARGS = (0.5, -1.5, 2.0, 0.25, -0.75)
PKG = Path(graphc.__file__).resolve().parent


def neuron_value():
    w0, x0, w1, x1, w2 = ARGS  # the inputs in order of appearance
    return 1 / (1 + np.exp(-(w0 * x0 + w1 * x1 + w2)))


def run(script: str, cache_dir, path: Path | None = None) -> dict:
    """Run `script` in a fresh interpreter with GRAPHC_CACHE_DIR=cache_dir (and the
    graphc package at `path` first on sys.path); its last stdout line is JSON."""
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_dir))
    head = f"import sys\nsys.path.insert(0, {str(path)!r})\n" if path is not None else ""
    r = subprocess.run([sys.executable, "-c", head + textwrap.dedent(script)], capture_output=True, text=True,
                       env=env, timeout=300)
    assert r.returncode == 0, f"rc={r.returncode}\n{r.stderr[-3000:]}"
    return json.loads(r.stdout.strip().splitlines()[-1])


COMPILE = f"""
import json, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as w:
    import graphc
    from graphc.backends import cache
    fn = graphc.compile({NEURON!r}, target=TARGET)
    v, g = fn(*{ARGS!r})
print(json.dumps({{"value": float(v), "file": graphc.__file__,
                  "warnings": [(x.category.__name__, str(x.message)) for x in w]}}))
"""


def compile_in(cache_dir, target="llvm", path=None, before="") -> dict:
    return run(before + COMPILE.replace("TARGET", repr(target)), cache_dir, path)


def entries(d: Path) -> set[str]:
    return {p.name for p in d.glob("graphc_*") if p.suffix in (".o", ".ll", ".py")}


# ----------------------------------------------------------------- item 4: keys follow the source


@pytest.mark.slow  # a copy of the package and six compiling processes
def test_editing_a_code_generator_misses_the_cache(tmp_path):
    """Regression: keys changed only with hand-bumped version constants, so object
    code made by an edited generator was served (0 new entries)."""
    pkg = tmp_path / "pkg"
    shutil.copytree(PKG, pkg / "graphc", ignore=shutil.ignore_patterns("__pycache__"))
    store = tmp_path / "cache"
    for target in ("llvm", "cpu"):  # the two kinds of cached kernel: object code and Numba source
        res = compile_in(store, target, pkg)
        assert res["file"].startswith(str(pkg)) and res["value"] == pytest.approx(neuron_value(), rel=1e-14)
    first = entries(store)
    assert any(n.endswith(".o") for n in first) and any(n.endswith(".py") for n in first)
    for target in ("llvm", "cpu"):
        compile_in(store, target, pkg)
    assert entries(store) == first  # unchanged source: every entry is a hit
    with open(pkg / "graphc" / "backends" / "llvm" / "pointwise.py", "a") as f:
        f.write("\n# an edit to the code generator\n")
    for target in ("llvm", "cpu"):
        res = compile_in(store, target, pkg)
        assert res["value"] == pytest.approx(neuron_value(), rel=1e-14)
    new = entries(store) - first
    assert {n.rsplit(".", 1)[1] for n in new} == {"o", "ll", "py"}, new  # every kind missed and was rebuilt
    assert len([n for n in new if n.endswith(".o")]) == len([n for n in first if n.endswith(".o")])


def test_code_hash_covers_every_module():
    h = cache.code_hash()
    assert len(h) == 64 and h == cache.code_hash()
    for name in ("pointwise", "tensor", "entries", "step"):
        assert not any(k.endswith("_VERSION") and k != "__version__" for k in vars(__import__(
            f"graphc.backends.llvm.{name}", fromlist=["x"])))


# ----------------------------------------------------------------- item 7a: whose folder


def shared(tmp_path) -> Path:
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(0o777)  # anyone may write it
    (d / "__pycache__").mkdir()
    (d / "__pycache__").chmod(0o777)
    return d


def assert_refused(res, d):
    assert res["value"] == pytest.approx(neuron_value(), rel=1e-14)
    assert [c for c, _ in res["warnings"]] == ["CacheWarning"], res["warnings"]
    assert "not private" in res["warnings"][0][1] and "compiling in memory" in res["warnings"][0][1]


def test_planted_object_code_in_a_shared_folder_is_not_run(tmp_path, monkeypatch):
    """Regression: a world-writable cache folder was used as it is: a planted
    `graphc_<key>.o` (the key can be computed, the checksum only detects
    corruption) ran in the next process."""
    private = tmp_path / "private"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(private))
    a, b = graphc.compile(NEURON, target="llvm").kernel, graphc.compile(OTHER, target="llvm").kernel
    sym_a, sym_b = llvm_cpu.symbol(a.graph), llvm_cpu.symbol(b.graph)
    planted = cache.load_blob(b.key, ".o").replace(sym_b.encode(), sym_a.encode())  # tanh under sigmoid's name
    d = shared(tmp_path)
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(d))
    seal = cache.BLOB_HEADER + hashlib.sha256(planted).hexdigest().encode() + b"\n"
    (d / f"graphc_{a.key}.o").write_bytes(seal + planted)
    before = sorted(p.name for p in d.rglob("*"))
    res = compile_in(d)
    assert_refused(res, d)
    assert sorted(p.name for p in d.rglob("*")) == before  # nothing read, nothing written
    # the plant is live: where the folder were trusted, it would have run (tanh's value)
    trusting = "import graphc.backends.cache as c\nc._untrusted = lambda d: None\n"
    w0, x0, w1, x1, w2 = ARGS  # the inputs in order of appearance
    assert compile_in(d, before=trusting)["value"] == pytest.approx(np.tanh(w0 * x0 + w1 * x1 + w2), rel=1e-14)


@pytest.mark.slow  # three compiling processes
def test_planted_numba_index_in_a_shared_folder_is_not_run(tmp_path):
    """Regression: a planted Numba index pickle in a shared folder's `__pycache__`
    ran in the next process."""
    private = tmp_path / "private"
    check_result(run_probe(private))
    d = shared(tmp_path)
    mark = tmp_path / "ran"
    (src,) = private.glob("graphc_*.py")
    shutil.copy(src, d / src.name)
    nbis = list((private / "__pycache__").glob("graphc_*.nbi"))
    assert nbis

    class Payload:
        def __reduce__(self):
            return exec, (f"open({str(mark)!r}, 'w').write('ran')",)

    for f in nbis:
        (d / "__pycache__" / f.name).write_bytes(pickle.dumps(Payload()))
    res = run_probe(d)
    check_result(res)
    assert res["path"] == "None" and not mark.exists()
    assert len(res["warnings"]) == 1 and "not private" in res["warnings"][0]
    # the plant is live: where the folder were trusted, Numba would have unpickled it
    trusting = "import graphc.backends.cache as c\nc._untrusted = lambda d: None\n"
    run(trusting + f"import graphc\ngraphc.compile({FORMULA!r}, target='cpu')(1.0, 2.0, 3.0, 4.0, 5.0)\n"
        "print('{}')", d)
    assert mark.exists()


@pytest.mark.slow  # two compiling processes
def test_planted_source_in_a_shared_folder_is_not_run(tmp_path):
    """Regression: a planted `graphc_<key>.py` whose checksum line matches its own
    text ran in the next process."""
    private = tmp_path / "private"
    check_result(run_probe(private))
    (src,) = private.glob("graphc_*.py")
    d, mark = shared(tmp_path), tmp_path / "ran"
    (d / src.name).write_text(cache._seal(f"open({str(mark)!r}, 'w').write('ran')\n"))
    res = run_probe(d)
    check_result(res)
    assert not mark.exists() and len(res["warnings"]) == 1


def test_a_folder_owned_by_someone_else_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    assert cache.store_blob("a" * 24, ".o", b"object") is not None
    monkeypatch.setattr(cache, "_uid", lambda: os.geteuid() + 1)  # (the tests run as root)
    monkeypatch.setattr(cache, "_warned", set())
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert cache.load_blob("a" * 24, ".o") is None
        assert cache.usable_dir() is None and cache.trusted_dir() is None
        assert cache.store("b" * 24, "x = 1\n") is None
    assert len(w) == 1 and issubclass(w[0].category, graphc.CacheWarning)
    assert "owned by uid" in str(w[0].message)
    assert issubclass(graphc.CacheWarning, Warning) and cache.CacheWarning is graphc.CacheWarning


def test_group_writable_folder_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(cache, "_warned", set())
    tmp_path.chmod(0o770)
    with pytest.warns(graphc.CacheWarning, match="writable by group"):
        assert cache.usable_dir() is None


def test_cache_folders_are_created_private(tmp_path, monkeypatch):
    d = tmp_path / "new" / "cache"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(d))
    old = os.umask(0)  # even with a permissive umask
    try:
        assert cache.usable_dir() == d
    finally:
        os.umask(old)
    assert d.stat().st_mode & 0o777 == 0o700 and (d / "__pycache__").stat().st_mode & 0o777 == 0o700


def test_cached_source_is_compared_with_the_generated_one(tmp_path, monkeypatch):
    """Regression: a `.py` entry was accepted when its checksum line matched its own
    text, whoever wrote it."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    key = "c" * 24
    (tmp_path / f"graphc_{key}.py").write_text(cache._seal("planted = 1\n"))
    path = cache.store(key, "x = 1\n")
    assert path is not None and path.read_text() == cache._seal("x = 1\n")


# ----------------------------------------------------------------- item 7b: entries that crash


def llvm_key(monkeypatch, d: Path, formula=NEURON) -> str:
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(d))
    return graphc.compile(formula, target="llvm").kernel.key


def assert_rebuilt(d: Path, key: str, res: dict):
    assert res["value"] == pytest.approx(neuron_value(), rel=1e-14) and not res["warnings"]
    obj = cache.load_blob(key, ".o")
    assert obj is not None and llvm_cpu.elf_symbols(obj) is not None


@pytest.mark.parametrize("junk", [b"", os.urandom(4096), b"\x7fELF\x02\x01\x01" + os.urandom(2000)],
                         ids=["empty", "random", "elf-header-then-random"])
def test_sealed_junk_object_is_rebuilt_not_a_segfault(tmp_path, monkeypatch, junk):
    """Regression: a sealed `.o` of random bytes, or an empty one, killed the
    interpreter with SIGSEGV."""
    key = llvm_key(monkeypatch, tmp_path)
    cache.store_blob(key, ".o", junk)
    assert cache.load_blob(key, ".o") == junk
    assert_rebuilt(tmp_path, key, compile_in(tmp_path))


def test_another_kernels_object_under_a_key_is_rebuilt(tmp_path, monkeypatch):
    """Regression: another kernel's `.o` under a key gave TypeError, not a rebuild."""
    key = llvm_key(monkeypatch, tmp_path)
    other = cache.load_blob(llvm_key(monkeypatch, tmp_path, OTHER), ".o")
    cache.store_blob(key, ".o", other)
    assert_rebuilt(tmp_path, key, compile_in(tmp_path))
    sym = llvm_cpu.symbol(graphc.Program(NEURON).graph)
    assert not llvm_cpu.object_fits(other, llvm_cpu.host(), (f"{sym}_kernel",), ("graphc_",))


def test_python_entries_object_of_another_dtype_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    if not llvm_cpu.host().pyapi:
        pytest.skip("no Python entries on this interpreter")
    run(f"import graphc\nfor dt in ('float64', 'float32'):\n    graphc.compile({NEURON!r}, target='llvm', dtype=dt)\n"
        "print('{}')", tmp_path)  # (a fresh process: this one has its entries loaded already)
    objs = {o.stem[7:]: cache.load_blob(o.stem[7:], ".o") for o in tmp_path.glob("graphc_*.o")}
    ent = {k: v for k, v in objs.items() if b"graphc_pyscalar_f" in v}
    (k64,) = [k for k, v in ent.items() if b"graphc_pyscalar_f64" in v]
    (k32,) = [k for k in ent if k != k64]
    cache.store_blob(k64, ".o", ent[k32])
    res = compile_in(tmp_path)
    assert res["value"] == pytest.approx(neuron_value(), rel=1e-14)
    assert b"graphc_pyscalar_f64" in cache.load_blob(k64, ".o")


@pytest.mark.slow  # two compiling processes
def test_sealed_source_with_a_syntax_error_is_rebuilt(tmp_path):
    """Regression: a sealed `.py` entry with a syntax error raised SyntaxError."""
    check_result(run_probe(tmp_path))
    (entry,) = tmp_path.glob("graphc_*.py")
    text = entry.read_text()
    entry.write_text(cache._seal("def kernel(:\n"))
    res = run_probe(tmp_path)
    check_result(res)
    assert entry.read_text() == text and not res["warnings"]


DELETE = f"""
import json, shutil, numpy as np
import graphc
from graphc.backends import cache
out = {{}}
for target in ("cpu", "llvm"):
    fn = graphc.compile({NEURON!r}, target=target)
    fn(*{ARGS!r})  # compiled, its module loaded
    shutil.rmtree(cache.cache_dir())
    v, g = fn(*(np.full(3, a) for a in {ARGS!r}))  # the first array call
    out[target] = float(v[0])
    out[target + "_recreated"] = cache.cache_dir().is_dir()
t = graphc.compile("sum(tanh(x))", shapes={{"x": ("n",)}}, target="cpu")
shutil.rmtree(cache.cache_dir(), ignore_errors=True)  # (the llvm calls above wrote nothing)
out["tensor"] = float(t(np.ones(4))[0])
print(json.dumps(out))
"""


@pytest.mark.slow  # a process compiling for three targets
def test_cache_folder_deleted_while_running(tmp_path):
    """Regression: the cache folder deleted while a process ran: a compiled cpu
    function failed its first array call with FileNotFoundError."""
    res = run(DELETE, tmp_path / "cache")
    assert res["cpu"] == pytest.approx(neuron_value(), rel=1e-14)
    assert res["llvm"] == pytest.approx(neuron_value(), rel=1e-14)
    assert res["cpu_recreated"]
    assert res["tensor"] == pytest.approx(4 * np.tanh(1.0), rel=1e-14)
