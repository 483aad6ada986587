"""One CPython ABI module (cpython_abi.py): every object-layout offset the
generated code uses is there, checked once against the running interpreter and
NumPy (`abi()`), and no other module knows one; where the check fails the
pointwise entries and the tensor loops alike take their general paths. The
entries check every C API call that can fail (release what they made, return
NULL with CPython's MemoryError), and their PyMethodDefs are shared, not made
per kernel."""

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphc
from graphc.backends import cpython_abi
from graphc.backends.llvm import entries as llvm_python
from graphc.backends.llvm import pointwise as llvm_cpu
from graphc.backends.llvm import tensor as llvm_tensor

ROOT = Path(graphc.__file__).resolve().parent
NEURON = "sigmoid(w0*x0 + w1*x1 + w2)"
LAYOUT = ("OB_TYPE", "VAR_SIZE", "FLOAT_VALUE", "TUPLE_ITEMS", "ARRAY_DATA", "ARRAY_ND", "ARRAY_DIMS",
          "ARRAY_STRIDES", "ARRAY_BASE", "ARRAY_DESCR", "ARRAY_FLAGS", "HEAD", "NEW_ARRAY", "TYPE_NUM",
          "C_CONTIGUOUS", "ALIGNED", "WRITEABLE", "METH_FASTCALL")
needs_abi = pytest.mark.skipif(not cpython_abi.abi(), reason="this interpreter's layout is not the one checked")


def _run(code: str, tmp_path) -> str:
    env = {**os.environ, "GRAPHC_CACHE_DIR": os.environ.get("GRAPHC_CACHE_DIR", str(tmp_path))}
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         env=env, timeout=600)
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout}\n{res.stderr[-3000:]}"
    return res.stdout


# ----------------------------------------------------------------- the gate


@needs_abi
def test_the_gate_is_checked_once_and_every_offset_is_read_back():
    assert cpython_abi.abi() is True and cpython_abi.abi.cache_info().misses == 1
    assert set(cpython_abi.symbols()) == {*cpython_abi.SYMBOLS, "graphc_PyArray_New"}
    assert llvm_cpu.host().pyapi


@pytest.mark.parametrize("name, wrong", [
    ("OB_TYPE", "HEAD"), ("VAR_SIZE", "OB_TYPE"), ("FLOAT_VALUE", "OB_TYPE"), ("TUPLE_ITEMS", "VAR_SIZE"),
    ("ARRAY_DATA", "ARRAY_BASE"), ("ARRAY_ND", "ARRAY_FLAGS"), ("ARRAY_DIMS", "ARRAY_STRIDES"),
    ("ARRAY_STRIDES", "ARRAY_DIMS"), ("ARRAY_BASE", "ARRAY_DESCR"), ("ARRAY_DESCR", "ARRAY_BASE"),
    ("ARRAY_FLAGS", "ARRAY_ND"), ("TYPE_NUM", {"f64": 11, "f32": 12}), ("WRITEABLE", 0x800),
    ("SYMBOLS", ("PyFloat_FromDouble", "PyNo_SuchFunction")),
])
@needs_abi
def test_a_wrong_offset_fails_the_check(monkeypatch, name, wrong):
    """Each constant is compared with the live objects (offsets swapped for
    another field's, so that nothing is read outside an object)."""
    assert cpython_abi._check()
    monkeypatch.setattr(cpython_abi, name, getattr(cpython_abi, wrong) if isinstance(wrong, str) else wrong)
    assert not cpython_abi._check()


def test_no_object_layout_outside_the_abi_module():
    """grep: no other module of graphc computes, names or hard-codes an offset into
    a Python object: no __basicsize__, no byte-addressed field reads in LLVM IR
    (a gep over i8 at a constant), no layout constant of its own."""
    abi_file = ROOT / "backends" / "cpython_abi.py"
    text_rules = [r"__basicsize__", r"__itemsize__", r"_ARRAY_API", r"PyCapsule_", r"from_address\(\s*id\(",
                  r"PyTuple_SetItem", r"ml_meth", r"\bARRAY_DATA\s*[+-]", r"\bTUPLE_ITEMS\s*[+-]"]
    byte_types = {"i8", "ir.IntType(8)"}
    for f in sorted(ROOT.rglob("*.py")):
        if f == abi_file:
            continue
        src = f.read_text()
        for rule in text_rules:
            assert not re.search(rule, src), f"{f.relative_to(ROOT)}: {rule}"
        tree = ast.parse(src)
        for node in ast.walk(tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)):  # a constant of its own: OB_TYPE = 8
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    for n in ast.walk(t):
                        assert not (isinstance(n, ast.Name) and n.id in LAYOUT), f"{f.name}:{node.lineno}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "gep":
                for kw in node.keywords:  # b.gep(obj, [16], source_etype=i8): a byte offset into something
                    assert not (kw.arg == "source_etype" and ast.unparse(kw.value) in byte_types), \
                        f"{f.relative_to(ROOT)}:{node.lineno}: a byte-addressed read belongs in cpython_abi.py"
    # the object-reading modules take their offsets from the ABI module
    for mod in (llvm_python, llvm_tensor):
        assert "cpython_abi" in Path(mod.__file__).read_text()


# ----------------------------------------------------------------- failing C API calls

FALLIBLE = ("PyFloat_FromDouble", "PyTuple_New", "PyDict_New", "PyDict_SetItem", "graphc_PyArray_New",
            "PyLong_FromLong")


def _blocks(fn_text: str) -> dict[str, list[str]]:
    blocks, label = {}, "entry"
    for line in fn_text.splitlines()[1:]:
        m = re.match(r'^"?([\w.$-]+)"?:', line)
        if m:
            label = m.group(1)
            continue
        if line.strip() and line.strip() != "}":
            blocks.setdefault(label, []).append(line.strip())
    return blocks


def _targets(term: str) -> list[str]:
    return [t.strip('"') for t in re.findall(r'label %("[^"]+"|[\w.$-]+)', term)]


@pytest.mark.parametrize("dtype", ["f64", "f32"])
def test_every_failing_c_api_call_is_checked_and_released(dtype):
    """In the entries' IR, every call that can fail either returns its result as
    it is (NULL with the exception set) or is compared with NULL (or its int with
    0) and branched on, and from the failing branch only `ret ptr null` is
    reachable, through the block that releases what was made."""
    text = llvm_python.entry_module(dtype, "x86_64-unknown-linux-gnu")
    declared = set(re.findall(r"^declare .*@\"?([\w.]+)\"?\(", text, re.M))
    assert declared <= {*cpython_abi.SYMBOLS, "graphc_PyArray_New"}, declared  # all registered with the linker
    assert "PyTuple_SetItem" not in text
    funcs = re.findall(r"^define .*?^}", text, re.M | re.S)
    assert len(funcs) == 2
    seen = set()
    for fn_text in funcs:
        blocks = _blocks(fn_text)
        for lines in blocks.values():
            for k, line in enumerate(lines):
                m = re.match(r'(%"?[\w.$-]+"?) = call \w+ @"?(\w+)"?\(', line)
                if not m or m.group(2) not in FALLIBLE:
                    continue
                res, callee = m.group(1), m.group(2)
                seen.add(callee)
                rest = lines[k + 1:]
                if rest and rest[0] == f"ret ptr {res}":
                    continue
                cmp = next(ln for ln in rest if re.search(rf"icmp \w+ \w+ {re.escape(res)}, (null|0)$", ln))
                c, op = re.match(r'(%"?[\w.$-]+"?) = icmp (\w+)', cmp).groups()
                br = lines[-1]
                assert br.startswith(f"br i1 {c},"), (callee, br)
                ok, bad = _targets(br)
                if op in ("eq", "slt"):  # true: the call failed
                    ok, bad = bad, ok
                assert op in ("ne", "eq", "sge", "slt"), cmp
                todo, reach = [bad], set()
                while todo:
                    b = todo.pop()
                    if b not in reach:
                        reach.add(b)
                        todo += _targets(blocks[b][-1])
                rets = {blocks[b][-1] for b in reach if blocks[b][-1].startswith("ret")}
                assert rets == {"ret ptr null"}, (callee, rets)
                assert any(re.search(r"call void @\"?Py_DecRef", ln) for b in reach for ln in blocks[b]), callee
    assert {"PyFloat_FromDouble", "PyTuple_New", "PyDict_New", "PyDict_SetItem", "graphc_PyArray_New"} <= seen


@needs_abi
def test_failed_allocations_raise_memory_error_and_leak_nothing(tmp_path):
    """Every allocation of a call in turn made to fail (CPython's _testcapi hooks,
    free lists drained first so that the call's objects are allocated): the entry
    raises MemoryError -- no crash, no SystemError -- releases what it made, and
    once nothing fails returns the right result."""
    pytest.importorskip("_testcapi")
    out = _run(f"""
        import gc, sys
        import _testcapi
        import numpy as np
        import graphc

        fn = graphc.compile({NEURON!r}, target="llvm")
        scalar, arrays = fn._py_scalar, fn._py_arrays
        xs = [np.linspace(-1, 1, 7) + k for k in range(5)]
        want = {{"scalar": scalar(0.5, 0.25, 1.0, 2.0, 3.0), "arrays": arrays(*xs)}}
        calls = {{"scalar": lambda: scalar(0.5, 0.25, 1.0, 2.0, 3.0), "arrays": lambda: arrays(*xs)}}
        refs = [sys.getrefcount(n) for n in fn._wrt]

        def attempt(call, k):
            keep = [[float(i) + 0.5 for i in range(300)], [(i, i) for i in range(2500)], [{{}} for i in range(100)]]
            _testcapi.set_nomemory(k, k + 1)  # the k-th allocation from here fails
            try:
                return call()
            except MemoryError:
                return None
            finally:
                _testcapi.remove_mem_hooks()
                del keep

        def failures(kind):
            # the number of allocations the call makes (each made to fail in turn), and its result
            for k in range(100):
                got = attempt(calls[kind], k)
                if got is not None:
                    return k, got
            raise AssertionError(kind)

        for kind in calls:
            for _ in range(40):  # warm up (free lists, MemoryError's, ...: some blocks settle)
                n, got = failures(kind)
            assert type(got) is tuple and list(got[1]) == list(want[kind][1]), got
            for a, b in zip((got[0], *got[1].values()), (want[kind][0], *want[kind][1].values())):
                np.testing.assert_array_equal(a, b)
            del got, a, b
            gc.collect()
            before = sys.getallocatedblocks()
            for _ in range(20):
                n = failures(kind)[0]
            gc.collect()
            print(kind, n, sys.getallocatedblocks() - before)
        assert [sys.getrefcount(n) for n in fn._wrt] == refs, "a failed call kept its dict"
    """, tmp_path)
    for line in out.splitlines():
        kind, n, grown = line.split()
        assert int(n) >= 6, line  # calls that met a failed allocation and raised MemoryError
        assert int(grown) < 10, f"{kind}: {grown} blocks more after {20 * int(n)} failed calls"


# ----------------------------------------------------------------- shared method definitions


@needs_abi
def test_method_definitions_do_not_grow_with_kernels():
    fns = [graphc.compile(NEURON, target="llvm")]
    size = len(llvm_python._DEFS)
    assert size >= 2  # (pyscalar, pyarrays) per dtype, and the whole steps' entries of tests run before
    for k in range(40):
        fn = graphc.compile(f"sigmoid(w0*x0 + w1*x1 + {k + 2}.5)", target="llvm")
        fns.append(fn)
        assert fn._py_scalar is not None
        fn.kernel.python_entries(("a", "b", "c", "d"))  # more builtins for the same kernel
    assert len(llvm_python._DEFS) == size
    for k, fn in enumerate(fns[1:]):  # each builtin still runs its own kernel
        v, g = fn._py_scalar(0.5, 1.0, -0.5, 2.0)
        assert v == pytest.approx(1 / (1 + np.exp(-(0.5 * 1.0 - 0.5 * 2.0 + k + 2.5))), rel=1e-14)


# ----------------------------------------------------------------- where the gate says no

MLP = ("cross_entropy(relu(X @ W1 + b1) @ W2 + b2, y)", {"X": "N,3", "W1": "3,4", "b1": "4", "W2": "4,2", "b2": "2",
                                                          "y": "N"}, {"y": "int64"})


def _mlp_args(rng):
    return {"X": rng.normal(size=(9, 3)), "W1": rng.normal(size=(3, 4)), "b1": rng.normal(size=4),
            "W2": rng.normal(size=(4, 2)), "b2": rng.normal(size=2), "y": rng.integers(0, 2, size=9)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_tensor_loops_refuse_an_unchecked_layout(monkeypatch, dtype):
    """abi() false: the fused regions and cross_entropy run their NumPy forms, with
    the same results."""
    formula, shapes, dtypes = MLP
    ref = graphc.compile(formula, shapes=shapes, dtypes=dtypes, target="numpy", dtype=dtype)
    rng = np.random.default_rng(0)
    pt = _mlp_args(rng)
    monkeypatch.setattr(cpython_abi, "abi", lambda: False)
    fn = graphc.compile(formula, shapes=shapes, dtypes=dtypes, target="llvm", dtype=dtype)
    v, g = fn(**pt)
    rv, rg = ref(**pt)
    tol = 1e-12 if dtype == "float64" else 1e-5
    assert v == pytest.approx(rv, rel=tol)
    for k in rg:
        np.testing.assert_allclose(g[k], rg[k], rtol=tol, atol=tol)
    loaded = list(fn.kernel._compiled.values())
    assert loaded and all(f is llvm_tensor._numpy_xent or f.__qualname__.startswith("_numpy_region")
                          for f in loaded)


def test_pointwise_entries_refuse_an_unchecked_layout(tmp_path):
    """abi() false from the start of a process: no entry is made, calls take the
    ctypes path, results unchanged."""
    out = _run(f"""
        import numpy as np
        from graphc.backends import cpython_abi
        cpython_abi.abi = lambda: False
        import graphc
        from graphc.backends.llvm import pointwise as llvm_cpu
        fn = graphc.compile({NEURON!r}, target="llvm")
        ref = graphc.compile({NEURON!r}, target="numpy")
        assert not llvm_cpu.host().pyapi and fn._py_scalar is None and fn._py_arrays is None
        xs = (0.3, -1.2, 0.7, 2.0, 0.1)
        (v, g), (rv, rg) = fn(*xs), ref(*xs)
        assert abs(v - rv) < 1e-14 and all(abs(g[k] - rg[k]) < 1e-14 for k in rg)
        a = [np.linspace(-1, 1, 9) + k for k in range(5)]
        (v, g), (rv, rg) = fn(*a), ref(*a)
        np.testing.assert_allclose(v, rv, rtol=1e-14)
        print("ok")
    """, tmp_path)
    assert out.strip() == "ok"
