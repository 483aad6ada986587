"""Annotated pictures: the seed's circuit diagrams, values above and gradients below."""

import re
import shutil

import numpy as np

import graphc
from graphc.cli import main


def _parse(dot):
    """node id -> (title, [green numbers], [red numbers]); (src, dst) -> (green, red)."""
    nodes, edges = {}, {}
    for m in re.finditer(r"^\s*(n\d+) \[label=<(.*?)>, shape", dot, re.M):
        title = m.group(2).split("<br/>")[0]
        nodes[m.group(1)] = (title, re.findall(r'darkgreen">([^<]*)<', m.group(2)),
                             re.findall(r'red">([^<]*)<', m.group(2)))
    for m in re.finditer(r"^\s*(n\d+) -> (n\d+) \[label=<(.*)>\];", dot, re.M):
        edges[m.group(1), m.group(2)] = (re.findall(r'darkgreen">([^<]*)<', m.group(3)),
                                         re.findall(r'red">([^<]*)<', m.group(3)))
    return nodes, edges


def test_seed_circuit_values_and_gradients(capsys):
    assert main(["ir", "(x + y) * z", "--format", "dot", "--at", "x=-2", "y=5", "z=-4"]) == 0
    nodes, edges = _parse(capsys.readouterr().out)
    by_title = {t: (g, r) for t, g, r in nodes.values()}
    assert by_title["x"] == (["-2"], ["-4"]) and by_title["y"] == (["5"], ["-4"]) and by_title["z"] == (["-4"], ["3"])
    assert by_title["%0 add"] == (["3"], ["-4"]) and by_title["%1 mul"] == (["-12"], ["1"])
    ids = {t: k for k, (t, _, _) in nodes.items()}
    assert edges[ids["x"], ids["%0 add"]] == (["-2"], ["-4"])
    assert edges[ids["z"], ids["%1 mul"]] == (["-4"], ["3"])


def test_sigmoid_neuron_at_the_seeds_point():
    prog = graphc.Program("1/(1+exp(-(w0*x0 + w1*x1 + w2)))", grad=False)
    dot = prog.dot(at=dict(w0=2.0, x0=-1.0, w1=-3.0, x1=-2.0, w2=-3.0))
    nodes, _ = _parse(dot)
    by_title = {t: (g, r) for t, g, r in nodes.values()}
    assert by_title["w0"] == (["2"], ["-0.1966"]) and by_title["x0"] == (["-1"], ["0.3932"])
    assert by_title["w1"] == (["-3"], ["-0.3932"]) and by_title["x1"] == (["-2"], ["-0.5898"])
    assert by_title["w2"] == (["-3"], ["0.1966"])
    assert ["0.7311"] in [g for g, _ in by_title.values()]  # the output, sigmoid(1)


def test_fan_out_edges_carry_their_own_contribution():
    dot = graphc.Program("x * x + x", grad=False).dot(at={"x": 3.0})
    nodes, edges = _parse(dot)
    x = next(k for k, (t, _, _) in nodes.items() if t == "x")
    assert nodes[x][2] == ["7"]  # 2x + 1
    wires = re.findall(rf"^\s*{x} -> n\d+ \[label=<.*red\">([^<]*)<", dot, re.M)
    reds = sorted(int(r) for r in wires)
    assert reds == [1, 3, 3]  # the two wires into x*x carry 3 each, the wire into + carries 1


def test_tensor_pictures_show_shapes_and_a_summary():
    prog = graphc.Program("sum(relu(x @ W))", shapes={"x": (2,), "W": (2, 3)}, grad=False)
    dot = prog.dot(at={"x": np.array([1.0, 2.0]), "W": np.ones((2, 3))})
    assert "f64[2,3] mean 1" in dot and "f64[3] mean 3" in dot


def test_rendering_needs_graphviz_or_says_how_to_install(capsys, tmp_path):
    argv = ["ir", "(x + y) * z", "--format", "svg", "--at", "x=-2", "y=5", "z=-4"]
    if shutil.which("dot") is None:
        assert main(argv) == 2
        assert "apt install graphviz" in capsys.readouterr().err
    else:
        assert main(argv + ["-o", str(tmp_path / "g.svg")]) == 0
        assert "<svg" in (tmp_path / "g.svg").read_text()
        assert graphc.Program("x * y")._repr_svg_().lstrip().startswith("<")
