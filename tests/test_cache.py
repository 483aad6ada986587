"""The on-disk kernel cache, exercised across real processes."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from graphc.backends import cache

FORMULA = "1/(1+exp(-(w0*x0 + w1*x1 + w2)))"

PROBE = textwrap.dedent(
    """
    import json, time, warnings
    t0 = time.perf_counter()
    import graphc
    from graphc.backends.numba import pointwise as numba_cpu
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as w:
        t1 = time.perf_counter()
        fn = graphc.compile(FORMULA, target="cpu")  # the Numba target's .py entries and its own cache
        v, g = fn(2.0, -1.0, -3.0, -2.0, -3.0)
        t2 = time.perf_counter()
    key, mod = fn.kernel.module((True,) * 5)
    print(json.dumps({
        "value": v, "grad": g, "seconds": t2 - t1,
        "hits": sum(mod.scalar.stats.cache_hits.values()),
        "misses": sum(mod.scalar.stats.cache_misses.values()),
        "path": str(getattr(mod, "__graphc_path__", None)),
        "warnings": [str(x.message) for x in w],
    }))
    """
).replace("FORMULA", repr(FORMULA))


def run_probe(cache_dir, prefix=()):
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(cache_dir))
    r = subprocess.run([*prefix, sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def check_result(res):
    assert res["value"] == pytest.approx(0.7310585786300049, rel=1e-15)
    assert res["grad"]["x1"] == pytest.approx(-0.5898357997244457, rel=1e-14)


def test_second_process_hits_the_cache(tmp_path):
    first = run_probe(tmp_path)
    check_result(first)
    assert first["misses"] == 1 and first["hits"] == 0
    entries = list(tmp_path.glob("graphc_*.py"))
    assert entries and all(cache._intact(p.read_text()) for p in entries)
    assert "def kernel(" in entries[0].read_text()
    assert list((tmp_path / "__pycache__").glob("graphc_*.nbi"))  # Numba's code beside it
    second = run_probe(tmp_path)
    check_result(second)
    assert second["hits"] == 1 and second["misses"] == 0, second


@pytest.mark.slow  # three compiling processes
def test_corrupted_source_entry_is_rebuilt(tmp_path):
    check_result(run_probe(tmp_path))
    (entry,) = tmp_path.glob("graphc_*.py")
    text = entry.read_text()
    entry.write_text(text[: len(text) // 2])  # truncated
    res = run_probe(tmp_path)
    check_result(res)
    assert entry.read_text() == text and not res["warnings"]
    entry.write_text(text.replace("t5 = g_dsigmoid(t3)", "t5 = t3"))  # tampered, header no longer matches
    check_result(run_probe(tmp_path))
    assert entry.read_text() == text


@pytest.mark.slow  # three compiling processes
def test_corrupted_numba_cache_is_rebuilt(tmp_path):
    check_result(run_probe(tmp_path))
    for f in (tmp_path / "__pycache__").glob("graphc_*"):
        f.write_bytes(b"\x80garbage")
    res = run_probe(tmp_path)
    check_result(res)
    check_result(run_probe(tmp_path))


@pytest.mark.slow  # several compiling processes at once; test_second_process_hits_the_cache stays fast
def test_concurrent_compiles_of_one_formula(tmp_path):
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-c", PROBE], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        check_result(json.loads(out.strip().splitlines()[-1]))
    assert all(cache._intact(p.read_text()) for p in tmp_path.glob("graphc_*.py"))
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_cache_folder_falls_back_with_one_warning(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = run_probe(blocker / "cache")
    check_result(res)
    assert res["path"] == "None"
    assert len(res["warnings"]) == 1 and "compiling in memory" in res["warnings"][0]


def test_read_only_cache_folder_falls_back(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() != 0:
        ro.chmod(0o555)
        res = run_probe(ro)
    else:  # root ignores permission bits: mount the folder read-only in a private namespace
        if shutil.which("unshare") is None:
            pytest.fail("need unshare(1) to make a read-only folder as root")
        script = f'mount --bind -o ro {ro} {ro} && exec "$@"'
        res = run_probe(ro, prefix=("unshare", "-m", "sh", "-c", script, "sh"))
    check_result(res)
    assert res["path"] == "None"
    assert len(res["warnings"]) == 1 and "not usable" in res["warnings"][0]
    assert not list(ro.iterdir())


def test_cache_cli_info_and_clear(tmp_path):
    run_probe(tmp_path)
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path))
    r = subprocess.run([sys.executable, "-m", "graphc", "cache", "info"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and str(tmp_path) in r.stdout and "kernels:" in r.stdout
    r = subprocess.run([sys.executable, "-m", "graphc", "cache", "clear"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "removed" in r.stdout
    assert not list(tmp_path.glob("graphc_*.py")) and not list(tmp_path.glob("__pycache__/graphc_*"))


def test_clear_removes_only_what_graphc_wrote(tmp_path, monkeypatch):
    """Regression: clear deleted any graphc_*.py (a user's graphc_helpers.py) and
    the whole __pycache__ (another module's .pyc)."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    assert cache.store("0" * 24, "x = 1\n") is not None
    (tmp_path / "graphc_helpers.py").write_text("users = 1\n")
    (tmp_path / "__pycache__" / "graphc_helpers.cpython-311.pyc").write_bytes(b"pyc")
    (tmp_path / "__pycache__" / "other.cpython-311.pyc").write_bytes(b"pyc")
    (tmp_path / "__pycache__" / f"graphc_{'0' * 24}.kernel-1.py311.nbi").write_bytes(b"nb")
    assert cache.clear() == 1
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert left == [".graphc-cache", "__pycache__/graphc_helpers.cpython-311.pyc",
                    "__pycache__/other.cpython-311.pyc", "graphc_helpers.py"]


def test_clear_refuses_a_folder_that_is_not_a_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    (tmp_path / f"graphc_{'a' * 24}.py").write_text("precious = 1\n")
    r = subprocess.run([sys.executable, "-m", "graphc", "cache", "clear"], capture_output=True, text=True)
    assert r.returncode == 2 and "is not a graphc kernel cache" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / f"graphc_{'a' * 24}.py").exists()


@pytest.mark.skipif(os.geteuid() == 0 if hasattr(os, "geteuid") else True, reason="root ignores permissions")
def test_clear_read_only_folder_is_a_clean_error(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    cache.store("1" * 24, "x = 1\n")
    tmp_path.chmod(0o555)
    try:
        r = subprocess.run([sys.executable, "-m", "graphc", "cache", "clear"], capture_output=True, text=True)
    finally:
        tmp_path.chmod(0o755)
    assert r.returncode == 2 and "cannot clear" in r.stderr and "Traceback" not in r.stderr


def test_clear_read_only_error_path(tmp_path, monkeypatch):
    """The same path as above where the tests run as root (which ignores permissions)."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    cache.store("1" * 24, "x = 1\n")

    def refuse(self, *a, **k):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(type(tmp_path), "unlink", refuse)
    from graphc.errors import GraphcError

    with pytest.raises(GraphcError, match="cannot clear the kernel cache .*Permission denied"):
        cache.clear()


@pytest.mark.slow  # two compiling processes
def test_non_utf8_entry_is_rebuilt(tmp_path):
    """Regression: random bytes in a cached .py gave UnicodeDecodeError on every compile."""
    run_probe(tmp_path)
    (entry,) = tmp_path.glob("graphc_*.py")
    entry.write_bytes(os.urandom(300) + b"\xff\xfe")
    out = run_probe(tmp_path)
    assert out["value"] == pytest.approx(0.7310585786300049)
    assert cache._intact(entry.read_text())


def test_key_changes_with_ir_target_dtype():
    a = cache.cache_key("ir1", "cpu", "f64")
    assert a == cache.cache_key("ir1", "cpu", "f64")
    assert len({a, cache.cache_key("ir2", "cpu", "f64"), cache.cache_key("ir1", "parallel", "f64"),
                cache.cache_key("ir1", "cpu", "f32")}) == 4
