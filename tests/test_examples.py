"""The training examples run in their fast mode and reach their bars (the
spiral: >= 97 % training accuracy and a gradient check below 1e-5)."""

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_spiral_trains_to_97_percent_and_its_gradient_checks(capsys):
    spiral = _load("spiral")
    assert spiral.main(["--fast"]) == 0
    out = capsys.readouterr().out
    err = float(out.split("max relative error ")[1].split()[0])
    acc = float(out.split("training accuracy ")[1].split("%")[0])
    assert err < 1e-5 and acc >= 97.0, out


@pytest.mark.parametrize("name", ["logistic_regression", "svm"])
def test_small_examples_train(name):
    assert _load(name).main(["--fast"]) == 0


@pytest.mark.slow  # 10^6 rows in chunks; test_dask covers the same calls on small data
def test_dask_logistic_regression_learns_the_true_model(capsys):
    pytest.importorskip("dask.array")
    assert _load("dask_logistic").main(["--fast"]) == 0  # 10^6 rows generated lazily in chunks
    out = capsys.readouterr().out
    assert "1,000,000 rows" in out and "largest weight error" in out


@pytest.mark.slow  # ~20 s: 50 epochs of a two-convolution network
def test_cnn_digits_reaches_97_percent_on_held_out_digits(capsys):
    pytest.importorskip("sklearn")
    assert _load("cnn_digits").main(["--fast"]) == 0
    out = capsys.readouterr().out
    assert float(out.split("test accuracy ")[1].split("%")[0]) >= 97.0, out


@pytest.mark.slow  # ~20 s: 200 steps of a transformer block
def test_attention_block_learns_to_reverse_digits(capsys):
    assert _load("attention").main(["--fast"]) == 0
    out = capsys.readouterr().out
    assert float(out.split("held-out token accuracy ")[1].split("%")[0]) >= 99.0, out


@pytest.mark.slow  # ~10-40 s: 250 steps of a 64-step scan, forward and backward
def test_char_rnn_loss_falls_steadily_and_it_samples(capsys):
    assert _load("char_rnn").main(["--fast"]) == 0
    out = capsys.readouterr().out
    assert "sample: The gradient " in out and "OK" in out, out
