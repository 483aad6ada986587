"""A small convolutional network on scikit-learn's 8x8 digits, trained with graphc.

    python examples/cnn_digits.py          # 60 epochs; loss curve and misclassified digits in cnn_digits.png
    python examples/cnn_digits.py --fast   # what CI runs: 50 epochs, the same test-accuracy bar (97 %)

conv(1->8, 3x3, pad 1) - relu - max_pool 2 - conv(8->16, 3x3, pad 1) - relu - max_pool 2 - linear(64->10),
written with graphc.nn (PyTorch's torch.nn.functional semantics) and trained with Adam on a held-out split:
the digits (1,797 images, shipped inside scikit-learn: no download) are split 75/25 with a fixed seed,
and the accuracy reported is the test split's, which training never sees.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import graphc
import graphc.nn as nn
import graphc.numpy as gnp
from graphc import optim


def digits(seed: int = 0, test_fraction: float = 0.25):
    """(X_train, y_train, X_test, y_test): images (N, 1, 8, 8) scaled to [0, 1], int64 labels."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("this example needs scikit-learn: pip install 'graphc[examples]'") from None
    d = load_digits()
    X = (d.images / 16.0).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(len(y) * (1 - test_fraction))
    tr, te = order[:cut], order[cut:]
    return X[tr], y[tr], X[te], y[te]


def init(seed: int = 0, dtype=np.float64) -> dict:
    """He-initialised weights (PyTorch's layouts: OIHW convolutions, (in, out) linear)."""
    rng = np.random.default_rng(seed)

    def he(shape, fan_in):
        return (rng.normal(size=shape) * np.sqrt(2.0 / fan_in)).astype(dtype)

    return {"c1": he((8, 1, 3, 3), 9), "b1": np.zeros(8, dtype), "c2": he((16, 8, 3, 3), 72),
            "b2": np.zeros(16, dtype), "W": he((64, 10), 64), "b": np.zeros(10, dtype)}


def scores(params, X):
    h = nn.max_pool2d(nn.relu(nn.conv2d(X, params["c1"], params["b1"], padding=1)), 2)   # (N, 8, 4, 4)
    h = nn.max_pool2d(nn.relu(nn.conv2d(h, params["c2"], params["b2"], padding=1)), 2)   # (N, 16, 2, 2)
    return gnp.reshape(h, (h.shape[0], 64)) @ params["W"] + params["b"]


def loss(params, X, y):
    s = scores(params, X)
    return nn.cross_entropy(s, y), gnp.mean(gnp.argmax(s, axis=1) == y)  # (loss, accuracy)


def accuracy(params, X, y) -> float:
    return float(np.mean(np.argmax(scores(params, X), axis=1) == y))


def train(epochs: int, batch: int = 256, lr: float = 2e-2, seed: int = 0):
    Xtr, ytr, Xte, yte = digits(seed)
    params = init(seed)
    opt = optim.adam(optim.cosine(lr, epochs * -(-len(ytr) // batch)))
    state = opt.init(params)
    step = graphc.train_step(loss, opt, has_aux=True)  # loss, gradients and Adam's update: one program
    rng = np.random.default_rng(seed)
    losses = []
    t0 = time.perf_counter()
    for epoch in range(epochs):
        order = rng.permutation(len(ytr))
        for i in range(0, len(ytr), batch):
            idx = order[i:i + batch]
            params, state, value, _ = step(params, state, Xtr[idx], ytr[idx])
            losses.append(value)
        if epoch % 5 == 0 or epoch == epochs - 1:
            print(f"epoch {epoch:3d}  loss {losses[-1]:.4f}  test accuracy {accuracy(params, Xte, yte):.1%}",
                  file=sys.stderr)
    test_acc = accuracy(params, Xte, yte)
    print(f"trained {epochs} epochs ({len(losses)} steps of {batch}) in {time.perf_counter() - t0:.1f} s: "
          f"training accuracy {accuracy(params, Xtr, ytr):.1%}, test accuracy {test_acc:.1%} "
          f"({len(yte)} held-out digits)")
    return params, (Xte, yte), losses, test_acc


def plot(params, test, losses, path: str = "cnn_digits.png") -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install 'graphc[examples]'): no picture")
        return None
    X, y = test
    pred = np.argmax(scores(params, X), axis=1)
    wrong = np.flatnonzero(pred != y)[:12]
    fig = plt.figure(figsize=(11, 4))
    ax = fig.add_subplot(1, 2, 1)
    ax.plot(losses)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title("training loss")
    for k, i in enumerate(wrong):
        a = fig.add_subplot(3, 8, 8 * (k // 4) + 5 + k % 4)
        a.imshow(X[i, 0], cmap="gray_r")
        a.set_title(f"{y[i]} read as {pred[i]}", fontsize=8)
        a.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fast", action="store_true", help="fewer epochs (what CI runs)")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--png", default="cnn_digits.png")
    args = ap.parse_args(argv)
    epochs = args.epochs or (50 if args.fast else 60)
    params, test, losses, test_acc = train(epochs)
    if not args.fast:
        plot(params, test, losses, args.png)
    ok = test_acc >= 0.97
    print("OK" if ok else "FAILED: test accuracy below 97 %")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
