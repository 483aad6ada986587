"""Neural-network functions: each works on traced values and on NumPy arrays,
with the same stable forms and gradient conventions as the formula language."""

from __future__ import annotations

from typing import Any

from .errors import ArgumentError
from .nn_conv import *  # noqa: F403  (conv1d, conv2d, pooling: graphc/nn_conv.py)
from .nn_conv import __all__ as _conv_all
from .nn_layers import *  # noqa: F403  (normalisation, dropout, attention, losses: graphc/nn_layers.py)
from .nn_layers import __all__ as _layers_all
from .nn_layers import gelu_tanh as _gelu_tanh
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


def gelu(x: Any, approximate: str = "none") -> Any:
    """torch.nn.functional.gelu: x * Phi(x), the exact (erf) GELU (approximate="none", the gelu
    op), or PyTorch's tanh approximation (approximate="tanh")."""
    if approximate == "none":
        return apply("gelu", x)
    if approximate == "tanh":
        return _gelu_tanh(x)
    raise ArgumentError(f"gelu: approximate={approximate!r}; use 'none' (the default, exact) or 'tanh'")


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
           "one_hot", *_conv_all, *_layers_all]
