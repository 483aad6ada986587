"""Formula text -> IR. A hand-written tokenizer and an iterative operator-precedence
parser: user text is never given to eval/exec or to Python's own parser, and no
nesting depth can hit Python's recursion limit.

Grammar (Python's expression syntax, restricted):
    expr  := expr ('+'|'-') expr | expr ('*'|'/') expr | ('-'|'+') expr
           | expr '**' expr          (right-associative, binds tighter than unary minus)
           | NUMBER | NAME | NAME '(' expr (',' expr)* ')' | '(' expr ')'
`^` is not a power operator (in Python it is xor): it is an error suggesting `**`.
Names `pi` and `e` are constants; other names are variables, in order of first
appearance.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass

from ..errors import ArityError, LimitError, ParseError, UnknownFunctionError
from ..ir import Graph, Node, const, input_node, make
from ..registry import user_function, user_functions

CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}

MAX_FORMULA_CHARS = 5_000_000

_KEYWORDS = {
    "lambda": "lambda expressions are not allowed: a formula is one expression",
    "for": "comprehensions and loops are not allowed: a formula is one expression",
    "if": "conditional expressions are not supported: use max/min/relu/abs",
    "else": "conditional expressions are not supported: use max/min/relu/abs",
    "import": "statements are not allowed: a formula is one expression",
    "and": "boolean operators are not supported",
    "or": "boolean operators are not supported",
    "not": "boolean operators are not supported",
    "in": "membership tests are not supported",
    "is": "identity tests are not supported",
    "def": "statements are not allowed: a formula is one expression",
    "class": "statements are not allowed: a formula is one expression",
    "return": "statements are not allowed: a formula is one expression",
    "del": "statements are not allowed: a formula is one expression",
    "global": "statements are not allowed: a formula is one expression",
    "while": "statements are not allowed: a formula is one expression",
    "with": "statements are not allowed: a formula is one expression",
    "yield": "statements are not allowed: a formula is one expression",
    "await": "statements are not allowed: a formula is one expression",
    "async": "statements are not allowed: a formula is one expression",
    "None": "None is not a number",
    "True": "booleans are not numbers here: write 1 or 0",
    "False": "booleans are not numbers here: write 1 or 0",
}
# Names from other libraries, suggested (never silently accepted) when unknown.
_ALIASES = {"ln": "log", "logistic": "sigmoid", "expit": "sigmoid", "maximum": "max", "minimum": "min",
            "power": "pow", "fabs": "abs", "Abs": "abs", "Max": "max", "Min": "min",
            "arctan": "atan", "arcsin": "asin", "arccos": "acos", "arctan2": "atan2", "arcsinh": "asinh",
            "arccosh": "acosh", "arctanh": "atanh", "clamp": "clip", "ceiling": "ceil", "signum": "sign"}

_NUMBER_RE = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
_DIGITS = "0123456789"
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")

_BINARY = {"+": (10, "add"), "-": (10, "sub"), "*": (20, "mul"), "/": (20, "div"), "**": (40, "pow")}
_UNARY_PREC = 30


def _is_name_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalpha() or ch == "_")


@dataclass
class _Tok:
    kind: str  # num, name, op, (, ), ",", end
    text: str
    col: int


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t\r\n":
            i += 1
            continue
        if ch in _DIGITS or (ch == "." and i + 1 < n and text[i + 1] in _DIGITS):
            m = _NUMBER_RE.match(text, i)
            assert m is not None
            end = m.end()
            if end < n and (_is_name_char(text[end])):
                if text[end] in "eE":
                    raise ParseError("malformed number: exponent has no digits", text, end)
                if text[i:end] == "0" and text[end] in "xXbBoO":
                    raise ParseError("only decimal numbers are supported", text, i)
                raise ParseError(
                    f"missing operator between {text[i:end]!r} and {text[end]!r}: write {text[i:end]}*{text[end]}...",
                    text, end,
                )
            if end < n and text[end] == ".":
                raise ParseError("attribute access is not allowed in a formula", text, end)
            if end < n and text[end] == "_":
                raise ParseError("digit separators '_' are not supported", text, end)
            toks.append(_Tok("num", text[i:end], i))
            i = end
            continue
        if not ch.isascii() and (ch.isalnum() or ch == "\u00b2" or ch == "\u00b3"):
            raise ParseError(
                f"non-ASCII character {ch!r}: names are ASCII letters, digits and '_', powers are written **",
                text, i,
            )
        if _is_name_char(ch):
            m = _NAME_RE.match(text, i)
            assert m is not None
            word = m.group(0)
            if word in _KEYWORDS:
                raise ParseError(f"'{word}': {_KEYWORDS[word]}", text, i)
            toks.append(_Tok("name", word, i))
            i = m.end()
            continue
        two = text[i:i + 2]
        if two == "**":
            toks.append(_Tok("op", "**", i))
            i += 2
            continue
        if two == "//":
            raise ParseError("floor division '//' is not supported: use '/'", text, i)
        if two in ("==", "!=", "<=", ">="):
            raise ParseError(f"comparison '{two}' is not supported: a formula computes a number", text, i)
        if two in (":=", "+=", "-=", "*=", "/="):
            raise ParseError(f"assignment '{two}' is not allowed in a formula", text, i)
        if ch in "+-*/":
            toks.append(_Tok("op", ch, i))
        elif ch in "(),":
            toks.append(_Tok(ch, ch, i))
        elif ch == "^":
            raise ParseError("'^' is not a power operator in graphc (in Python it is xor): write x**y", text, i)
        elif ch == "=":
            raise ParseError("assignment '=' is not allowed in a formula: write only the expression", text, i)
        elif ch == ".":
            raise ParseError("attribute access is not allowed in a formula", text, i)
        elif ch in "[]":
            raise ParseError("subscripts '[...]' are not supported: name each variable (x0, x1, ...)", text, i)
        elif ch in "'\"":
            raise ParseError("strings are not allowed in a formula", text, i)
        elif ch == ";":
            raise ParseError("';' separates statements: a formula is one expression", text, i)
        elif ch in "<>":
            raise ParseError(f"comparison '{ch}' is not supported: a formula computes a number", text, i)
        elif ch in "{}":
            raise ParseError("braces are not allowed in a formula", text, i)
        elif ch == ":":
            raise ParseError("':' is not allowed in a formula (slices, annotations, lambdas)", text, i)
        else:
            raise ParseError(f"unexpected character {ch!r}", text, i)
        i += 1
    toks.append(_Tok("end", "", n))
    return toks


@dataclass
class _Frame:
    """An open parenthesis: a group, or a call collecting arguments."""

    col: int
    func: str | None
    func_col: int
    nargs: int = 0


def parse_formula(text: str, dtype: str = "f64", inputs: tuple[str, ...] | None = None) -> Graph:
    """Parse formula text into a forward Graph with one output named 'f'."""
    if not isinstance(text, str):
        raise ParseError(f"a formula must be a string, got {type(text).__name__}")
    if len(text) > MAX_FORMULA_CHARS:
        raise LimitError(f"formula is {len(text):,} characters; the limit is {MAX_FORMULA_CHARS:,}")
    if not text.strip():
        raise ParseError("empty formula", text, 0)
    toks = _tokenize(text)
    order: list[str] = []
    vars_: dict[str, Node] = {}
    # operand stack: (node, col, is_literal); operator stack: (prec, op, col, right_assoc) or _Frame
    vals: list[tuple[Node, int, bool]] = []
    ops: list[object] = []

    def apply(entry: tuple) -> None:
        prec, op, col, _ = entry
        if op == "neg" or op == "pos":
            node, c, lit = vals.pop()
            if op == "pos":
                vals.append((node, col, lit))
            elif lit:
                vals.append((const(-node.value, dtype), col, True))
            else:
                vals.append((make("neg", node), col, False))
            return
        b, _, _ = vals.pop()
        a, ca, _ = vals.pop()
        vals.append((make(op, a, b), ca, False))

    def reduce_to(prec: int, right_assoc: bool) -> None:
        while ops and isinstance(ops[-1], tuple):
            top = ops[-1]
            if top[0] > prec or (top[0] == prec and not right_assoc):
                ops.pop()
                apply(top)
            else:
                break

    def close_frame(tok: _Tok, closing: str) -> _Frame:
        while ops and isinstance(ops[-1], tuple):
            apply(ops.pop())
        if not ops:
            what = "')'" if closing == ")" else "','"
            raise ParseError(f"unmatched {what}", text, tok.col)
        return ops[-1]  # type: ignore[return-value]

    expect_operand = True
    i = 0
    while True:
        tok = toks[i]
        i += 1
        if expect_operand:
            if tok.kind == "num":
                vals.append((const(float(tok.text), dtype), tok.col, True))
                expect_operand = False
            elif tok.kind == "name":
                word = tok.text
                nxt = toks[i]
                if nxt.kind == "(":
                    func = word
                    if word in CONSTANTS:
                        raise ParseError(f"'{word}' is a constant, not a function", text, tok.col)
                    if user_function(func) is None:
                        raise UnknownFunctionError(_unknown_function(word), text, tok.col)
                    ops.append(_Frame(nxt.col, func, tok.col))
                    i += 1
                    if toks[i].kind == ")":
                        raise ArityError(_arity_msg(func, 0), text, toks[i].col)
                    continue  # still expecting an operand
                if user_function(word) is not None:
                    raise ParseError(f"'{word}' is a function: call it as {word}(...)", text, tok.col)
                if word in CONSTANTS:
                    vals.append((const(CONSTANTS[word], dtype), tok.col, False))
                else:
                    node = vars_.get(word)
                    if node is None:
                        node = vars_[word] = input_node(word, dtype)
                        order.append(word)
                    vals.append((node, tok.col, False))
                expect_operand = False
            elif tok.kind == "op" and tok.text in "+-":
                ops.append((_UNARY_PREC, "neg" if tok.text == "-" else "pos", tok.col, True))
            elif tok.kind == "(":
                if toks[i].kind == ")":
                    raise ParseError("empty parentheses", text, toks[i].col)
                ops.append(_Frame(tok.col, None, tok.col))
            elif tok.kind == "end":
                if not vals and not ops:
                    raise ParseError("empty formula", text, tok.col)
                raise ParseError("unexpected end of formula: expected a number, name or '('", text, tok.col)
            else:
                raise ParseError(f"expected a number, name or '(' but found {tok.text!r}", text, tok.col)
            continue
        # expecting an operator
        if tok.kind == "op":
            prec, op = _BINARY[tok.text]
            right = tok.text == "**"
            reduce_to(prec, right)
            ops.append((prec, op, tok.col, right))
            expect_operand = True
        elif tok.kind == ",":
            frame = close_frame(tok, ",")
            if frame.func is None:
                raise ParseError("',' outside a function call: a formula is one expression", text, tok.col)
            frame.nargs += 1
            expect_operand = True
        elif tok.kind == ")":
            frame = close_frame(tok, ")")
            ops.pop()
            if frame.func is not None:
                nargs = frame.nargs + 1
                spec = user_function(frame.func)
                assert spec is not None  # checked when the call opened
                if nargs != spec.arity:
                    raise ArityError(_arity_msg(frame.func, nargs), text, frame.func_col)
                args = [vals.pop()[0] for _ in range(nargs)][::-1]
                vals.append((make(frame.func, *args), frame.func_col, False))
            else:
                node, _, lit = vals.pop()
                vals.append((node, frame.col, lit))
        elif tok.kind == "end":
            while ops:
                top = ops.pop()
                if isinstance(top, _Frame):
                    raise ParseError(
                        f"expected ')' to close the '(' at column {top.col + 1}", text, tok.col
                    )
                apply(top)
            break
        elif tok.kind == "(":
            raise ParseError("missing operator before '(': write a*(...)", text, tok.col)
        else:
            raise ParseError(f"missing operator before {tok.text!r}", text, tok.col)
    (root, _, _), = vals
    return _make_graph(root, order, vars_, dtype, inputs)


def _make_graph(root: Node, order: list[str], vars_: dict[str, Node], dtype: str,
                inputs: tuple[str, ...] | None) -> Graph:
    from ..errors import ArgumentError

    if inputs is not None:
        inputs = tuple(inputs)
        missing = [v for v in order if v not in inputs]
        if missing:
            raise ArgumentError(f"inputs= does not list variable(s) {', '.join(missing)} of the formula")
        if len(set(inputs)) != len(inputs):
            raise ArgumentError("inputs= names a variable twice")
        order = list(inputs)
    nodes = [vars_.get(name) or input_node(name, dtype) for name in order]
    return Graph(nodes, [("f", root)])


def _unknown_function(name: str) -> str:
    known = [s.name for s in user_functions()]
    if name in _ALIASES and _ALIASES[name] in known:
        return f"unknown function '{name}': did you mean '{_ALIASES[name]}'?"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    if close:
        return f"unknown function '{name}': did you mean '{close[0]}'?"
    return f"unknown function '{name}'; known functions: {', '.join(known)}"


def _arity_msg(func: str, got: int) -> str:
    spec = user_function(func)
    assert spec is not None
    want = spec.arity
    plural = "argument" if want == 1 else "arguments"
    return f"{func}() takes {want} {plural}, got {got}"
