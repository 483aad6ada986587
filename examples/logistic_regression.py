"""Logistic regression on 2-D data with graphc: binary cross-entropy written as
softplus (graphc's stable form of log(1 + exp(z))), trained by gradient descent.

    python examples/logistic_regression.py          # writes logistic.png if matplotlib is installed
    python examples/logistic_regression.py --fast   # what CI runs
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import graphc
import graphc.nn as nn
import graphc.numpy as gnp


def data(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    centres = np.array([[-1.0, -0.5], [1.0, 0.75]])
    X = centres[y] + rng.normal(size=(n, 2)) * 0.8
    return X, np.where(y == 1, 1.0, -1.0)  # labels +-1


def loss(w, b, X, y):
    # -log sigmoid(y * z) = softplus(-y * z): never overflows, gradient sigmoid(y z) - 1 without cancellation
    return gnp.mean(nn.softplus(-y * (X @ w + b))) + 1e-3 * gnp.sum(w * w)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--png", default="logistic.png")
    args = ap.parse_args(argv)
    X, y = data()
    w, b = np.zeros(2), 0.0
    step = graphc.value_and_grad(loss, argnums=(0, 1))
    print(step.lower(w, b, X, y).ir)
    losses = []
    for k in range(300 if args.fast else 1000):
        value, (gw, gb) = step(w, b, X, y)
        w, b = w - 0.5 * gw, b - 0.5 * gb
        losses.append(value)
        if k % 100 == 0:
            print(f"step {k:4d}  loss {value:.4f}", file=sys.stderr)
    accuracy = float(np.mean(np.sign(X @ w + b) == y))
    print(f"w = {w}, b = {b:.4f}: loss {losses[-1]:.4f}, training accuracy {accuracy:.1%}")
    if not args.fast:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, (a, c) = plt.subplots(1, 2, figsize=(10, 4.5))
            a.scatter(X[:, 0], X[:, 1], c=y, s=10, cmap="coolwarm")
            xs = np.linspace(X[:, 0].min(), X[:, 0].max(), 2)
            a.plot(xs, -(w[0] * xs + b) / w[1], "k-")
            a.set_title("decision boundary")
            c.plot(losses)
            c.set_title("training loss")
            fig.savefig(args.png, dpi=100)
            print(f"wrote {args.png}")
        except ImportError:
            print("matplotlib is not installed (pip install 'graphc[examples]'): no picture")
    return 0 if accuracy >= 0.85 else 1


if __name__ == "__main__":
    sys.exit(main())
