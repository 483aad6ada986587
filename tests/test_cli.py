"""The `graphc` command, run as a user would (a subprocess)."""

import json
import subprocess
import sys

import pytest


def run(*args):
    return subprocess.run([sys.executable, "-m", "graphc", *args], capture_output=True, text=True, timeout=120)


def test_eval_json_seed_example():
    r = run("eval", "(x + y) * z", "x=-2", "y=5", "z=-4", "--json")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == '{"value": -12.0, "grad": {"x": -4.0, "y": -4.0, "z": 3.0}}'


def test_eval_text():
    r = run("eval", "1/(1+exp(-(w0*x0 + w1*x1 + w2)))", "w0=2", "x0=-1", "w1=-3", "x1=-2", "w2=-3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("f = 0.7310585786")
    assert [ln.split(" = ")[0] for ln in lines[1:]] == ["df/dw0", "df/dx0", "df/dw1", "df/dx1", "df/dw2"]


@pytest.mark.parametrize(
    "args,phrase",
    [
        (("eval", "exp(x", "x=1"), "expected ')'"),
        (("eval", "x*y", "x=1"), "missing argument"),
        (("eval", "x", "x=abc"), "not a number"),
        (("ir", "sigmod(x)"), "did you mean"),
    ],
)
def test_errors_exit_2_without_traceback(args, phrase):
    r = run(*args)
    assert r.returncode == 2
    assert phrase in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_ir_formats():
    r = run("ir", "(x + y) * z")
    assert r.returncode == 0 and r.stdout.startswith("graph(%x: f64, %y: f64, %z: f64)")
    assert "df/dz" in r.stdout
    r = run("ir", "(x + y) * z", "--no-grad")
    assert "df/dz" not in r.stdout and "return f = " in r.stdout
    r = run("ir", "(x + y) * z", "--format", "json")
    data = json.loads(r.stdout)
    assert all("op" in n for n in data["nodes"])
    r = run("ir", "(x + y) * z", "--format", "dot")
    assert r.stdout.startswith("digraph")


def test_ir_sigmoid_fused_json():
    r = run("ir", "1/(1+exp(-(w0*x0 + w1*x1 + w2)))", "--no-grad", "--format", "json")
    assert r.returncode == 0, r.stderr
    ops = [n["op"] for n in json.loads(r.stdout)["nodes"]]
    assert ops.count("sigmoid") == 1 and "exp" not in ops


def test_ir_print_after_all_and_stats():
    r = run("ir", "log(1+exp(x*y))", "--print-after-all")
    assert r.returncode == 0, r.stderr
    for name in ("simplify", "fuse", "autodiff", "cse", "dce"):
        assert f"IR after pass '{name}'" in r.stdout
    r = run("ir", "log(1+exp(x*y))", "--stats")
    assert "softplus" in r.stdout and "rules fired" in r.stdout and "forward graph" in r.stdout
    r = run("ir", "log(1+exp(x*y))", "--passes", "autodiff,dce", "--stats")
    assert "softplus" not in r.stdout.split("pass ")[0]
    assert "fuse" not in r.stdout


def test_ir_of_a_traced_loop_prints_one_scan_node_with_its_body(tmp_path):
    """`graphc ir FILE.ir`: IR text, as print_graph writes a traced function's, loops included."""
    import numpy as np

    import graphc
    import graphc.numpy as gnp

    def loss(W, xs):
        h, _ = graphc.scan(lambda h, x: (gnp.tanh(h @ W + x), None), np.zeros(3), xs)
        return gnp.sum(h)

    rng = np.random.default_rng(0)
    forward = graphc.value_and_grad(loss).lower(rng.normal(size=(3, 3)), rng.normal(size=(50, 3))).forward
    path = tmp_path / "rnn.ir"
    path.write_text(graphc.print_graph(forward))
    r = run("ir", str(path), "--no-grad")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(" = scan ") == 1 and "tanh" in r.stdout, r.stdout  # one loop node, its body inside
    r = run("ir", str(path))  # with gradients: the backward loop is a second scan
    assert r.returncode == 0 and r.stdout.count(" = scan ") == 2, r.stdout + r.stderr
    r = run("ir", str(tmp_path / "missing.ir"))
    assert r.returncode == 2 and "cannot read" in r.stderr
