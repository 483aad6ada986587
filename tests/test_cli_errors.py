"""Every command-line error is one line on stderr, exit status 2, no traceback;
--version; deep formulas on the command line (issue 23, items 5 and 7)."""

import subprocess
import sys

import pytest

import graphc
from graphc.cli import main

DEEP_JSON = "X=" + "[" * 100_000 + "1" + "]" * 100_000
LABELS = ["ir", "cross_entropy(S, y)", "--shape", "S=N,3", "--shape", "y=N", "--int", "y", "--format", "dot", "--at",
          "S=[[1,2,3]]"]

BAD = [
    # (argv, phrase in stderr)
    (["eval", "x*y", "x=1", "y=2", "--target", "nope"], "unknown target 'nope'"),
    (["eval", "sum(X)", "--target", "numpy", "--shape", "X", "X=[1]"], "--shape expects NAME=DIMS"),
    (["eval", "sum(X)", "--target", "numpy", "--shape", "X=N;", "X=[1]"], "bad dimension name"),
    (["eval", "sum(X)", "--target", "numpy", "--shape", "X=N", "--shape", "X=3", "X=[1]"], "given twice"),
    (["eval", "x", "x=abc"], "not a number"),
    (["eval", "x", "--target", "numpy", "x=1", "x=2"], "given a value twice"),
    (["eval", "sum(X)", "--target", "numpy", "--shape", "X=N", DEEP_JSON], "nested too deeply"),
    (["eval", "-x", "x=1"], "goes after '--'"),
    (["eval", "x", "x=1", "--bogus"], "unrecognized arguments: --bogus"),
    (["eval", "x", "x=1", "--dtype", "float16"], "invalid choice: 'float16'"),
    (["check", "x*y", "--points", "1.5"], "invalid int value: '1.5'"),
    (["check", "x*y", "--points", "abc"], "invalid int value"),
    (["check", "x*y", "--points", "99999999999999999999"], "points must be"),
    (["check", "x*y", "--time-limit", "abc"], "invalid float value"),
    (["check", "x*y", "--time-limit", "1e20"], "time limit"),
    (["check", "x*y", "--time-limit", "1e308"], "time limit"),
    (["check", "x*y", "--time-limit", "1e400"], "time limit"),
    (["check", "x*y", "--swell", "--time-limit", "1e20"], "time limit"),
    (["check", "x*y", "--time-limit", "nan"], "time limit"),
    (["check", "x*y", "--time-limit", "0"], "time limit"),
    (["check", "x*y", "--dims", "N=3"], "declare the shapes"),
    (["check", "sum(X)", "--shape", "X=N", "--points", "0"], "points must be"),
    (["check", "sum(X)", "--shape", "X=N", "--dims", "N=99999999999999999999"], "--dims expects"),
    (["check", "sum(X)", "--shape", "X=N", "--dims", "N=0"], "--dims expects"),
    (["check", "sum(X)", "--shape", "X=N", "--dims", "N=\u00b2"], "--dims expects"),
    (["check", "sum(X)", "--shape", "X=N", "--dims", "M=3"], "not a dimension of the declared shapes"),
    (["ir", "sum(X)", "--shape", "X=N", "--format", "dot", "--at", "X=[[1],[2,3]]"], "not a rectangular array"),
    ([*LABELS, "y=[1.5]"], "must be integer labels"),
    ([*LABELS, "y=[99999999999999999999999]"], "must be integer labels"),
    (["eval"], "required: formula"),
    (["check"], "required: formula"),
    ([], "required: command"),
    (["frobnicate", "x"], "invalid choice: 'frobnicate'"),
    (["cache", "bogus"], "invalid choice: 'bogus'"),
]


@pytest.mark.parametrize("argv,phrase", BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_command_lines_are_one_line_exit_2(argv, phrase, capsys):
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert phrase in err and "Traceback" not in err and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert len(err) < 400  # a 200,000-character argument is not echoed whole


def test_parse_errors_keep_their_caret(capsys):
    assert main(["eval", "exp(x", "x=1"]) == 2
    out, err = capsys.readouterr()
    lines = err.rstrip().splitlines()
    assert lines[0].startswith("graphc: error: expected ')'") and lines[-1].strip() == "^"
    assert "Traceback" not in err and out == ""


def test_the_command_exits_2_on_an_argparse_error():
    r = subprocess.run([sys.executable, "-m", "graphc", "check", "x*y", "--time-limit", "1e20"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "time limit" in r.stderr
    r = subprocess.run([sys.executable, "-m", "graphc", "eval"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "usage" not in r.stderr


def test_version():
    r = subprocess.run([sys.executable, "-m", "graphc", "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    from graphc.version import __version__

    lines = r.stdout.splitlines()
    assert lines[0] == f"graphc {__version__}"
    for word in ("Python", "NumPy", "Numba", "llvmlite", "host CPU"):
        assert word in r.stdout
    assert "Traceback" not in r.stderr


def test_help_returns_0(capsys):
    assert main(["--help"]) == 0
    assert "--version" in capsys.readouterr().out


def test_deep_brackets_on_the_command_line():
    formula = "(" * 5000 + "x" + ")" * 5000  # the case, as a user runs it
    r = subprocess.run([sys.executable, "-m", "graphc", "eval", formula, "x=2", "--json"], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == '{"value": 2.0, "grad": {"x": 1.0}}'


@pytest.mark.parametrize("formula", ["(" * 100_000 + "x" + ")" * 100_000, "-" * 100_000 + "x"])
def test_formula_100000_deep(formula, capsys):
    assert main(["eval", "--target", "numpy", "--json", "--", formula, "x=2"]) == 0
    assert capsys.readouterr().out.strip() == '{"value": 2.0, "grad": {"x": 1.0}}'


def test_check_from_python_refuses_a_time_limit_too_large_for_a_timer():
    """Regression: graphc.check(..., time_limit=1e20) overflowed (OverflowError) in the SymPy timer."""
    with pytest.raises(graphc.GraphcError, match="at most 86,400"):
        graphc.check("x*y", time_limit=1e20)


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400"])
def test_picture_annotates_non_finite_values(value):
    """Regression: `graphc ir x --at x=inf` crashed in the picture's number format (int(inf))."""
    from graphc.picture import annotations

    fn = graphc.compile("x*2")
    nodes, _ = annotations(fn.program.forward, {"x": float(value)})
    assert any(str(float(value)) in str(t) for t in nodes.values())
