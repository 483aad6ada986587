"""The open op registry: an op registered after graphs exist is parsed,
differentiated, checked against SymPy, fuzzed and compiled on every target;
internal ops stay out of user formulas; malformed specs are refused."""

import dataclasses
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import TARGETS
from strategies import covered_ops

import graphc
from graphc import ir
from graphc.errors import IRError, UnknownFunctionError
from graphc.registry import REGISTRY, OpSpec, register_op, unregister_op, user_functions

# softsign(x) = x / (1 + |x|); softsign'(x) = 1 / (1 + |x|)^2
SOFTSIGN = textwrap.dedent('''
    import numpy as np
    import sympy
    from graphc import OpSpec, register_op
    from graphc.ir import const, make

    def _grad(n, g):
        x = n.args[0]
        d = make("add", const(1.0, x.dtype), make("abs", x))
        return (make("div", g, make("mul", d, d)),)

    register_op(OpSpec(
        "softsign", 1, lambda x: x / (1 + np.abs(x)), _grad, lambda a: a / (1 + sympy.Abs(a)),
        "({0} / (F(1.0) + abs({0})))", "x / (1 + |x|)"))
''')


@pytest.fixture
def softsign():
    before = graphc.compile("x*y + 1", target="numpy")  # graphs exist before the op does
    exec(SOFTSIGN, {})
    try:
        yield before
    finally:
        unregister_op("softsign")


def test_late_registration_works_everywhere(softsign):
    assert softsign(2.0, 3.0)[0] == 7.0
    fn = graphc.compile("softsign(x) * y", target="numpy")
    v, g = fn(-1.5, 2.0)
    assert v == pytest.approx(-1.5 / 2.5 * 2.0)
    assert g["x"] == pytest.approx(2.0 / 2.5**2) and g["y"] == pytest.approx(-0.6)
    assert "softsign" in [s.name for s in user_functions()]
    assert "softsign" in covered_ops()  # the fuzzer's strategy reads the registry too
    # the printed IR parses back with the new op
    assert ir.parse_graph(fn.ir) == fn.graph
    # checked against SymPy's exact derivative, on the reference and a compiled target
    for target in TARGETS:
        rep = graphc.check("softsign(x) * y + softsign(x*y)", target=target, points=16)
        assert rep.ok, str(rep)
        assert all(o.symbolic in ("proved", "undecided") for o in rep.outputs)


def test_late_op_compiles_on_every_target(softsign):
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-3, 3, 101), rng.uniform(-3, 3, 101)
    ref_v, ref_g = graphc.compile("softsign(x*y) - x", target="numpy")(x, y)
    for target in TARGETS:
        v, g = graphc.compile("softsign(x*y) - x", target=target)(x, y)
        np.testing.assert_allclose(v, ref_v, rtol=1e-14)
        np.testing.assert_allclose(g["x"], ref_g["x"], rtol=1e-14)
    assert "/ (F(1.0) + abs(" in graphc.compile("softsign(x*y) - x", target="cpu").source  # its code template
    ptx = graphc.emit("softsign(x*y) - x", target="cuda", kind="ptx")
    assert ".entry" in ptx


def test_late_op_runs_in_the_cuda_simulator():
    code = SOFTSIGN + textwrap.dedent('''
        import json
        import numpy as np
        import graphc
        x = np.linspace(-2, 2, 33)
        v, g = graphc.compile("softsign(x) * x", target="cuda")(x)
        rv, rg = graphc.compile("softsign(x) * x", target="numpy")(x)
        print(json.dumps([float(np.max(np.abs(v - rv))), float(np.max(np.abs(g["x"] - rg["x"])))]))
    ''')
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert max(json.loads(r.stdout.strip().splitlines()[-1])) < 1e-14


def test_internal_ops_are_not_user_functions():
    internal = sorted(n for n, s in REGISTRY.items() if s.internal)
    assert internal == ["amax", "amin", "array", "cmpw", "concatenate", "count", "custom_vjp", "custom_vjp_out",
                        "diag_embed", "diff_t", "dpow", "dsigmoid", "dtanh", "fold", "gather", "index_array",
                        "index_mask", "iota", "put_along", "random_normal", "random_split", "random_uniform",
                        "remat_barrier", "scan", "scan_out", "scatter", "slice", "sort_by", "step", "take_along",
                        "tile_max", "tile_max_grad", "to_float", "triangle", "unfold", "unslice", "unsort"]
    for name in internal:
        with pytest.raises(UnknownFunctionError):
            graphc.parse(f"{name}(x)" if REGISTRY[name].arity == 1 else f"{name}(x, y)")
    with pytest.raises(UnknownFunctionError) as exc:
        graphc.parse("dsigmoi(x)")
    assert "dsigmoid" not in str(exc.value)
    with pytest.raises(UnknownFunctionError) as exc:
        graphc.parse("frobnicate(x)")
    listed = str(exc.value)
    assert "atan2" in listed and "gelu" in listed
    assert not any(name in listed.replace("sigmoid", "") for name in ("dtanh", "cmpw", "step"))
    # autodiff still makes them, and the IR text (not a user formula) accepts them
    g = graphc.compile("sigmoid(x)", target="numpy").graph
    assert ir.parse_graph(ir.print_graph(g)) == g
    assert "dsigmoid" in ir.print_graph(g)


def _spec(**changes):
    base = OpSpec("okname", 1, np.negative, lambda n, g: (g,), lambda a: -a, "(-{0})", "negation")
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize("changes,match", [
    ({"name": "Bad-Name"}, "op name"),
    ({"name": "pi"}, "reserved"),
    ({"arity": 0}, "arity"),
    ({"numpy": None}, "numpy facet"),
    ({"doc": ""}, "doc"),
    ({"code": "(-{1})"}, "code template"),
    ({"code": "(-{0}"}, "code template"),
    ({"code": "(-{0} + {p})"}, "prelude"),
    ({"codes": {"cuda": "{0} +"}}, "for cuda"),
])
def test_malformed_specs_are_refused(changes, match):
    with pytest.raises(IRError, match=match):
        register_op(_spec(**changes))
    assert "okname" not in REGISTRY


def test_a_name_is_registered_once():
    with pytest.raises(IRError, match="already registered"):
        register_op(_spec(name="exp"))
    with pytest.raises(IRError, match="unknown op"):
        unregister_op("no_such_op")
    with pytest.raises(TypeError):
        REGISTRY["x"] = REGISTRY["exp"]  # the registry is read-only outside register_op


README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_lists_every_function_and_its_example_runs():
    text = README.read_text()
    language = text[text.index("## The formula language"):text.index("## The pipeline")]
    for spec in user_functions():
        assert re.search(rf"\b{spec.name}\b", language), f"README's formula language omits {spec.name}"
    arch = (README.parent / "ARCHITECTURE.md").read_text()  # the register_op example moved there
    section = arch[arch.index("**Add an op.**"):]
    code = section[section.index("```python") + len("```python"):section.index("```", section.index("```python") + 3)]
    r = subprocess.run([sys.executable, "-c", code + "\nprint(graphc.compile('softsign(x) * y', target='numpy')(1.0, 2.0))"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "(1.0, {'x': 0.5, 'y': 0.5})" in r.stdout
