"""Train the seed's 2-layer network on the classic 3-class spiral, with graphc.

    python examples/spiral.py            # 10,000 steps, writes spiral.png if matplotlib is installed
    python examples/spiral.py --fast     # what CI runs: fewer steps, same accuracy bar

Forward (compute loss), backward (compute gradients), update (gradient
descent); repeat -- the three traced and compiled as one program by
graphc.train_step. Before training, the gradient is checked against centred
differences, as the seed advises.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import graphc
import graphc.nn as nn
import graphc.numpy as gnp


def spiral(points_per_class: int = 100, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = np.zeros((points_per_class * classes, 2))
    y = np.zeros(points_per_class * classes, dtype=np.int64)
    for k in range(classes):
        i = slice(points_per_class * k, points_per_class * (k + 1))
        r = np.linspace(0.0, 1, points_per_class)
        t = np.linspace(k * 4, (k + 1) * 4, points_per_class) + rng.normal(size=points_per_class) * 0.2
        X[i] = np.c_[r * np.sin(t), r * np.cos(t)]
        y[i] = k
    return X, y


def loss(params, X, y, reg=1e-3):
    hidden = nn.relu(X @ params["W1"] + params["b1"])
    scores = hidden @ params["W2"] + params["b2"]
    return nn.cross_entropy(scores, y) + 0.5 * reg * (gnp.sum(params["W1"] ** 2) + gnp.sum(params["W2"] ** 2))


def predict(params, X):
    hidden = np.maximum(X @ params["W1"] + params["b1"], 0)
    return np.argmax(hidden @ params["W2"] + params["b2"], axis=1)


def gradient_check(params, X, y, h=1e-5, per_param=10, seed=0):
    """Max relative error of graphc's gradient against centred differences."""
    rng = np.random.default_rng(seed)
    _, grads = graphc.value_and_grad(loss)(params, X, y)
    worst = 0.0
    for name, p in params.items():
        for i in rng.choice(p.size, size=min(per_param, p.size), replace=False):
            up, down = p.copy().reshape(-1), p.copy().reshape(-1)
            up[i] += h
            down[i] -= h
            fd = (loss({**params, name: up.reshape(p.shape)}, X, y)
                  - loss({**params, name: down.reshape(p.shape)}, X, y)) / (2 * h)
            g = grads[name].reshape(-1)[i]
            worst = max(worst, abs(g - fd) / max(abs(g), abs(fd), 1e-8))
    return worst


def train(steps: int, step_size: float = 1.0, hidden: int = 100, seed: int = 0, report_every: int = 500):
    X, y = spiral(seed=seed)
    rng = np.random.default_rng(seed)
    params = {"W1": 0.01 * rng.normal(size=(2, hidden)), "b1": np.zeros(hidden),
              "W2": 0.01 * rng.normal(size=(hidden, 3)), "b2": np.zeros(3)}
    # at the initial weights most gradients are ~1e-6, below centred differences' own noise; check
    # the gradient code at weights of unit scale instead
    probe = {name: rng.normal(size=p.shape) for name, p in params.items()}
    err = gradient_check(probe, X, y)
    print(f"gradient check: max relative error {err:.2e} (centred differences, h = 1e-5, 40 entries)")
    opt = graphc.optim.sgd(step_size)                 # p <- p - step_size * grad, PyTorch's SGD
    step = graphc.train_step(loss, opt)               # forward, backward and update: one compiled program
    state = opt.init(params)
    losses = []
    t0 = time.perf_counter()
    for k in range(steps):
        params, state, value = step(params, state, X, y)
        losses.append(value)
        if k % report_every == 0 or k == steps - 1:
            acc = np.mean(predict(params, X) == y)
            print(f"step {k:5d}  loss {value:.4f}  accuracy {acc:.1%}", file=sys.stderr)
    accuracy = float(np.mean(predict(params, X) == y))
    print(f"trained {steps} steps in {time.perf_counter() - t0:.1f} s: training accuracy {accuracy:.1%}")
    return params, X, y, losses, accuracy, err


def plot(params, X, y, losses, path: str = "spiral.png") -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'graphc[examples]'): no picture")
        return None
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.5))
    xx, yy = np.meshgrid(np.linspace(-1.1, 1.1, 300), np.linspace(-1.1, 1.1, 300))
    zz = predict(params, np.c_[xx.ravel(), yy.ravel()]).reshape(xx.shape)
    a.contourf(xx, yy, zz, cmap="Spectral", alpha=0.6)
    a.scatter(X[:, 0], X[:, 1], c=y, s=12, cmap="Spectral", edgecolors="k", linewidths=0.3)
    a.set_title("decision regions")
    b.plot(losses)
    b.set_yscale("log")
    b.set_xlabel("step")
    b.set_title("training loss")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fast", action="store_true", help="fewer steps (what CI runs)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--png", default="spiral.png")
    args = ap.parse_args(argv)
    steps = args.steps or (3000 if args.fast else 10000)
    params, X, y, losses, accuracy, err = train(steps)
    if not args.fast:
        plot(params, X, y, losses, args.png)
    ok = accuracy >= 0.97 and err < 1e-5
    print("OK" if ok else "FAILED: accuracy below 97 % or gradient check above 1e-5")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
