"""Neural-network functions: each works on traced values and on NumPy arrays,
with the same stable forms and gradient conventions as the formula language."""

from __future__ import annotations

from typing import Any

from .trace import apply


def sigmoid(x: Any) -> Any:
    """1 / (1 + exp(-x)), stable for any x."""
    return apply("sigmoid", x)


def relu(x: Any) -> Any:
    """max(x, 0); relu'(0) = 0."""
    return apply("relu", x)


def softplus(x: Any) -> Any:
    """log(1 + exp(x)), never overflows."""
    return apply("softplus", x)


def gelu(x: Any) -> Any:
    """x * Phi(x), the exact (erf) GELU."""
    return apply("gelu", x)


def softmax(x: Any, axis: int = -1) -> Any:
    return apply("softmax", x, axis=axis)


def log_softmax(x: Any, axis: int = -1) -> Any:
    return apply("log_softmax", x, axis=axis)


def logsumexp(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
    return apply("logsumexp", x, axis=axis, keepdims=keepdims)


def cross_entropy(scores: Any, labels: Any, reduction: str = "mean") -> Any:
    """-log_softmax(scores)[row, label], reduced: 'mean' (default), 'sum' or 'none'."""
    return apply("cross_entropy", scores, labels, reduction=reduction)


def pick(x: Any, labels: Any) -> Any:
    """The entry of each row at its label: x[arange(N), labels]."""
    return apply("pick", x, labels)


def one_hot(labels: Any, n: int, dtype: str = "f64") -> Any:
    return apply("one_hot", labels, n=n, dtype=dtype)


__all__ = ["sigmoid", "relu", "softplus", "gelu", "softmax", "log_softmax", "logsumexp", "cross_entropy", "pick",
           "one_hot"]
