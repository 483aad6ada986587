"""One error family: everything graphc raises on bad input is a GraphcError."""

from __future__ import annotations


class GraphcError(Exception):
    """Root of every error graphc raises on purpose."""


class ParseError(GraphcError):
    """Formula text that is not a valid formula; the message carries a caret."""

    def __init__(self, message: str, text: str = "", col: int | None = None):
        self.reason = message
        self.text = text
        self.col = col
        if text and col is not None:
            shown = text.replace("\n", " ").replace("\t", " ")
            message = f"{message}\n  {shown}\n  {' ' * col}^"
        super().__init__(message)


class UnknownFunctionError(ParseError):
    """A call to a function graphc does not know."""


class ArityError(ParseError):
    """A known function called with the wrong number of arguments."""


class LimitError(GraphcError):
    """A formula beyond one of graphc's documented size limits."""


class IRError(GraphcError):
    """A graph that fails verification, or IR text that does not parse."""


class ShapeError(ParseError, IRError):
    """Shapes that do not fit an op (`X @ W` with unequal inner dimensions, arguments
    that do not broadcast); from formula text the message carries a caret under
    the operator."""


class ArgumentError(GraphcError):
    """Bad arguments to a compiled function: missing, unknown, non-numeric, shapes."""


class UnsupportedError(GraphcError):
    """Input graphc understands but cannot handle (e.g. an unsupported SymPy function)."""


class BackendUnavailableError(GraphcError):
    """A compile target whose runtime is missing on this machine."""


class CacheWarning(UserWarning):
    """The kernel cache folder is not used (it cannot be written, or it is not private to
    this user: owned by someone else, or writable by group or others); kernels compile in
    memory. A warning, not an error: every result is still computed."""
