"""The backend contract: a toy backend defined here -- one module with
`build` and `emit`, one row in the target table -- runs the core formulas
through the ordinary API, and the API, CLI help and errors list it without
any other change. Also: the shared out= validator, the Program object, and
the CLI's use of public API only."""

import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import TARGETS as HOST_TARGETS
from formulas import CORE, sample

import graphc
from graphc.backends import buffers
from graphc.backends.kernel import Kernel
from graphc.backends.scalar import Body, indent
from graphc.backends.targets import TARGETS, Target, register_target, unregister_target
from graphc.errors import ArgumentError, GraphcError


class LoopKernel(Kernel):
    """A pure-Python loop over elements, from the registry's per-element templates."""

    def __init__(self, graph):
        super().__init__(graph)
        body = Body(graph, backend="toy")
        names = body.input_vars()
        lines = [f"def element({', '.join(names)}):"]
        lines += indent(body.consts + body.lines + [f"return ({', '.join(body.outputs)},)"], 4)
        self.source = "\n".join(lines)
        ns = {"math": __import__("math"), "np": np, "F": self.np_dtype.type}
        exec(compile(self.source, "<toy kernel>", "exec"), ns)
        self.element = ns["element"]

    def run(self, arrays, shape, out=None, **options):
        outs = buffers.host_outputs(out, self.output_names, shape, self.np_dtype)
        flat = [np.broadcast_to(a, shape).reshape(-1) for a in arrays]
        views = [o.reshape(-1) for o in outs]
        with np.errstate(all="ignore"):
            for i in range(int(np.prod(shape)) if shape else 1):
                for v, r in zip(views, self.element(*(f[i] for f in flat))):
                    v[i] = r
        return outs


def _build(graph, target):
    return LoopKernel(graph)


def _emit(graph, kind, target, **opts):
    return LoopKernel(graph).source


@pytest.fixture
def toy():
    module = types.ModuleType("graphc_toy_backend")
    module.build, module.emit = _build, _emit
    sys.modules[module.__name__] = module
    register_target(Target("toy", module.__name__, "a pure-Python loop (test backend)", emits=("source",)))
    try:
        yield
    finally:
        unregister_target("toy")
        del sys.modules[module.__name__]


def test_toy_backend_runs_the_core_formulas(toy):
    for formula, ranges in CORE:
        fn = graphc.compile(formula, target="toy")
        ref = graphc.compile(formula, target="numpy")
        pts = sample(fn.inputs, ranges, np.random.default_rng(len(formula)), n=7)
        v, g = fn(**pts)
        rv, rg = ref(**pts)
        np.testing.assert_allclose(v, rv, rtol=1e-13, err_msg=formula)
        for k in rg:
            np.testing.assert_allclose(g[k], rg[k], rtol=1e-12, atol=1e-300, err_msg=f"{formula} d/d{k}")
        scalar = fn(**{k: float(a[0]) for k, a in pts.items()})
        assert scalar[0] == pytest.approx(float(rv[0]), rel=1e-13)


def test_the_table_is_the_only_list_of_targets(toy):
    assert "toy" in graphc.targets()
    assert graphc.emit("x*y", target="toy").startswith("def element(")
    with pytest.raises(GraphcError, match="emits source, not 'llvm'"):
        graphc.emit("x*y", target="toy", kind="llvm")
    with pytest.raises(GraphcError, match=r"unknown target 'nope'; targets: cpu, parallel, numpy, llvm, cuda, toy"):
        graphc.compile("x*y", target="nope")
    from graphc.cli import build_parser

    helptext = build_parser()._subparsers._group_actions[0].choices["eval"].format_help()
    assert "toy: a pure-Python loop" in re.sub(r"-\s+", "-", re.sub(r"\s+", " ", helptext))  # argparse wraps at "-"
    # out= through the shared validator
    fn = graphc.compile("x*y", target="toy")
    bufs = [np.empty(3) for _ in range(3)]
    v, g = fn(np.arange(3.0), 2.0, out=bufs)
    assert v is bufs[0] and list(g["y"]) == [0.0, 1.0, 2.0]
    with pytest.raises(ArgumentError, match="stream= is for target 'cuda' only"):
        fn(1.0, 2.0, stream=0)


def test_readme_lists_every_target():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("Targets (the table"):readme.index("## Known limits")]
    assert sorted(re.findall(r'^- `"(\w+)"`', section, re.M)) == sorted(TARGETS)


def test_every_target_row_is_complete():
    for name, t in TARGETS.items():
        module = t.backend() if name != "cuda" or _numba_cuda() else None
        if module is not None:
            assert callable(module.build) and callable(module.emit), name
        assert t.summary and set(t.emits) <= {"source", "llvm", "ptx", "asm"}, name


def _numba_cuda():
    try:
        import numba.cuda  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.parametrize("bad,match", [
    (5, "must be a list or dict"),
    ([np.empty(3)] * 3, "one buffer for both f and df/dx"),
    ({"f": np.empty(3), "df/dx": np.empty(3), "df/dy": np.empty(3), "g": np.empty(3)}, "not outputs"),
    ([np.empty(3), np.empty(3), np.empty((3, 1))], "of shape"),
    ([np.empty(3), np.empty(3), np.empty(6)[::2]], "C-contiguous"),
])
@pytest.mark.parametrize("target", HOST_TARGETS)
def test_one_out_validator(target, bad, match):
    fn = graphc.compile("x*y", target=target)
    with pytest.raises(ArgumentError, match=match):
        fn(np.arange(3.0), np.arange(3.0), out=bad)


def test_device_buffers_are_validated_by_the_same_rules():
    class FakeDevice:  # anything with __cuda_array_interface__
        def __init__(self, shape, typestr="<f8", strides=None, readonly=False, ptr=None):
            self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "strides": strides,
                                             "data": (id(self) * 64 if ptr is None else ptr, readonly),
                                             "version": 3}

    names = ("f", "df/dx")
    ok = [FakeDevice((4,)), FakeDevice((4,))]
    assert buffers.check_out(ok, names, (4,), np.dtype("float64"), device=True) == ok
    for bad, match in [([FakeDevice((4,)), FakeDevice((4,), "<f4")], "df/dx"),
                       ([FakeDevice((4,)), FakeDevice((4,), strides=(16,))], "C-contiguous"),
                       ([FakeDevice((4,), readonly=True), FakeDevice((4,))], "writable"),
                       ([np.empty(4), FakeDevice((4,))], "device"),
                       ([FakeDevice((4,), ptr=1024), FakeDevice((4,), ptr=1040)], "overlap in memory")]:
        with pytest.raises(ArgumentError, match=match):
            buffers.check_out(bad, names, (4,), np.dtype("float64"), device=True)


def test_program_is_the_pipeline_object():
    prog = graphc.Program("log(1 + exp(x*y))", wrt="x")
    assert prog.inputs == ("x", "y") and prog.wrt == ("x",) and prog.outputs == ("f", "df/dx")
    assert [r.name for r in prog.records] == list(prog.passes)
    assert "softplus" in prog.ir and "IR after pass 'fuse'" in prog.explain()
    fwd = graphc.Program("log(1 + exp(x*y))", grad=False)
    assert fwd.outputs == ("f",) and fwd.graph == prog.optimised_forward()
    fn = graphc.compile(prog, target="numpy")
    assert fn.program is prog and fn.graph is prog.graph
    with pytest.raises(GraphcError, match="grad=False"):
        graphc.compile(fwd)


def test_cli_uses_only_public_attributes():
    text = Path(graphc.__file__).with_name("cli.py").read_text()
    private = re.findall(r"\w+\._[a-z]\w*", text)
    assert private == [], private
    r = subprocess.run([sys.executable, "-m", "graphc", "emit", "x*y", "--target", "numpy"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "generates no kernel" in r.stderr and "cpu (source, llvm)" in r.stderr
