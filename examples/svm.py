"""The seed's linear SVM, trained with graphc: scores s = W x, margins
s_j - s_y + 1 for the wrong classes, hinge sum(max(0, margins)), plus the L2
penalty lambda * sum(W**2) -- the five-node pipeline, over a whole dataset.

    python examples/svm.py          # full run
    python examples/svm.py --fast   # what CI runs
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import graphc
import graphc.nn as nn
import graphc.numpy as gnp


def data(per_class: int = 100, classes: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 4.0]])[:classes]
    y = np.repeat(np.arange(classes), per_class)
    X = centres[y] + rng.normal(size=(per_class * classes, 2))
    return np.c_[X, np.ones(len(X))], y  # a constant feature for the bias, as in the seed


def svm_loss(W, X, y, lam=1e-3):
    scores = X @ W.T                                   # node 1: s = W x, one row per example
    correct = nn.pick(scores, y)                       # s_y
    margins = scores - gnp.reshape(correct, (-1, 1)) + 1.0   # node 2: s_j - s_y + 1
    wrong = 1.0 - nn.one_hot(y, W.shape[0])            # only j != y counts
    hinge = gnp.sum(gnp.maximum(margins, 0.0) * wrong) / X.shape[0]   # node 3: sum of max(0, .)
    return hinge + lam * gnp.sum(W ** 2)               # nodes 4 and 5: penalty, total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fast", action="store_true")
    args = ap.parse_args(argv)
    X, y = data()
    W = np.random.default_rng(1).normal(size=(3, 3)) * 0.01
    step = graphc.value_and_grad(svm_loss)
    for k in range(200 if args.fast else 1000):
        value, g = step(W, X, y)
        W = W - 0.5 * g
        if k % 50 == 0:
            print(f"step {k:4d}  loss {value:.4f}", file=sys.stderr)
    accuracy = float(np.mean(np.argmax(X @ W.T, axis=1) == y))
    print(f"loss {value:.4f}, training accuracy {accuracy:.1%}")
    return 0 if accuracy >= 0.9 else 1


if __name__ == "__main__":
    sys.exit(main())
