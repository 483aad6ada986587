"""A character-level RNN over the seed's backprop notes, its time loop one graphc.scan.

    python examples/char_rnn.py          # 1,500 steps, then samples a few lines
    python examples/char_rnn.py --fast   # what CI runs: 250 steps; the loss must fall steadily

h_t = tanh(W_x[c_t] + h_{t-1} W_h + b), scores_t = h_t W_y + b_y, trained with Adam on 64-character
windows of docs/backprop-notes.txt (the text ships with graphc). The 64 steps are one `scan` node:
the cell is traced once, compile time and program size do not depend on the window's length, and
the backward pass is a scan the other way (graphc stores each step's hidden state).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import graphc
import graphc.nn as nn
import graphc.numpy as gnp
from graphc import optim

TEXT = Path(__file__).resolve().parent.parent / "docs" / "backprop-notes.txt"
H, T, B = 128, 64, 32  # hidden units, characters per window, windows per step


def corpus() -> tuple[np.ndarray, list[str]]:
    text = TEXT.read_text(encoding="utf-8")
    chars = sorted(set(text))
    index = {c: i for i, c in enumerate(chars)}
    return np.array([index[c] for c in text], dtype=np.int64), chars


def init(vocab: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"Wx": rng.normal(size=(vocab, H)) * 0.1, "Wh": np.eye(H) * 0.5 + rng.normal(size=(H, H)) * 0.02,
            "b": np.zeros(H), "Wy": rng.normal(size=(H, vocab)) / np.sqrt(H), "by": np.zeros(vocab)}


def loss(p, x, y):
    """Mean cross-entropy of each next character; x, y: (T, B) character ids, time first."""
    def cell(h, c):
        h = gnp.tanh(nn.embedding(p["Wx"], c) + h @ p["Wh"] + p["b"])
        return h, h
    _, hs = graphc.scan(cell, np.zeros((x.shape[1], H)), x)            # hs: (T, B, H), one node
    scores = gnp.reshape(hs, (x.shape[0] * x.shape[1], H)) @ p["Wy"] + p["by"]
    return nn.cross_entropy(scores, gnp.reshape(y, (x.shape[0] * x.shape[1],)))


def windows(ids: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    start = rng.integers(0, len(ids) - T - 1, size=B)
    w = np.stack([ids[s:s + T + 1] for s in start], axis=1)             # (T + 1, B)
    return w[:-1], w[1:]


def sample(p, chars: list[str], seed_text: str, n: int, rng: np.random.Generator, temperature: float = 0.6) -> str:
    """Continue seed_text for n characters (NumPy, the same cell)."""
    index = {c: i for i, c in enumerate(chars)}
    h = np.zeros(H)
    out = list(seed_text)
    for c in seed_text:
        h = np.tanh(p["Wx"][index[c]] + h @ p["Wh"] + p["b"])
    for _ in range(n):
        s = (h @ p["Wy"] + p["by"]) / temperature
        q = np.exp(s - s.max())
        c = int(rng.choice(len(chars), p=q / q.sum()))
        out.append(chars[c])
        h = np.tanh(p["Wx"][c] + h @ p["Wh"] + p["b"])
    return "".join(out)


def train(steps: int, lr: float = 3e-3, seed: int = 0):
    ids, chars = corpus()
    p = init(len(chars), seed)
    opt = optim.adam(optim.cosine(lr, steps, final=lr / 10))
    state = opt.init(p)
    step = graphc.value_and_grad(loss)
    rng = np.random.default_rng(seed)
    losses = []
    t0 = time.perf_counter()
    for k in range(steps):
        value, grads = step(p, *windows(ids, rng))
        p, state = opt.update(grads, state, p)
        losses.append(value)
        if k % 100 == 0 or k == steps - 1:
            print(f"step {k:5d}  loss {np.mean(losses[-20:]):.3f}", file=sys.stderr)
    first, last = float(np.mean(losses[:20])), float(np.mean(losses[-20:]))
    print(f"trained {steps} steps ({B} windows of {T} characters, vocabulary {len(chars)}) in "
          f"{time.perf_counter() - t0:.1f} s: loss {first:.3f} -> {last:.3f} (nats per character)")
    return p, chars, losses


def falls_steadily(losses: list[float], parts: int = 5) -> bool:
    """Each fifth of training ends lower than the one before (means of 20 steps)."""
    marks = [np.mean(losses[max(0, i - 20):i]) for i in np.linspace(20, len(losses), parts + 1).astype(int)]
    return all(b < a for a, b in zip(marks, marks[1:]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fast", action="store_true", help="fewer steps (what CI runs)")
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args(argv)
    p, chars, losses = train(args.steps or (250 if args.fast else 1500))
    print("sample:", sample(p, chars, "The gradient ", 120, np.random.default_rng(1)).replace("\n", " "))
    ok = falls_steadily(losses) and np.mean(losses[-20:]) < 0.75 * np.mean(losses[:20])
    print("OK" if ok else "FAILED: the loss did not fall steadily")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
