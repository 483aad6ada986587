"""Formula text -> IR. A hand-written tokenizer and an iterative operator-precedence
parser: user text is never given to eval/exec or to Python's own parser, and no
nesting depth can hit Python's recursion limit.

Grammar (Python's expression syntax, restricted):
    expr  := expr ('<'|'<='|'>'|'>='|'=='|'!=') expr   (masks, for where(); lowest)
           | expr ('+'|'-') expr | expr ('*'|'/'|'@') expr | ('-'|'+') expr
           | expr '**' expr          (right-associative, binds tighter than unary minus)
           | expr '.T'
           | NUMBER | NAME | NAME '(' args ')' | '(' expr ')'
    args  := expr (',' expr)* (',' NAME '=' literal)*
    literal := ['-'] INT | '(' literal (',' literal)* ')' | NAME | True | False | None | 'string'
`^` is not a power operator (in Python it is xor): it is an error suggesting `**`.
Names `pi` and `e` are constants; other names are variables, in order of first
appearance.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any  # noqa: F401

from ..describe import describe
from ..errors import ArityError, IRError, LimitError, ParseError, ShapeError, UnknownFunctionError
from ..ir import Graph, Node, canonical_any_dtype, canonical_shape, const, input_node, make
from ..registry import get, user_function, user_functions

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

_BINARY = {"+": (10, "add"), "-": (10, "sub"), "*": (20, "mul"), "/": (20, "div"), "@": (20, "matmul"),
           "**": (40, "pow"), "<": (5, "lt"), "<=": (5, "le"), ">": (5, "gt"), ">=": (5, "ge"),
           "==": (5, "eq"), "!=": (5, "ne")}
_CALL_ALIASES = {"dot": "matmul"}  # accepted spellings of a registry op
_REDUCING = {"max": "amax", "min": "amin"}  # max(x, axis=...) reduces; max(a, b) is elementwise
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
            if word in ("True", "False", "None") and toks and toks[-1].kind == "=":
                toks.append(_Tok("lit", word, i))
                i = m.end()
                continue
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
            toks.append(_Tok("op", two, i))
            i += 2
            continue
        if two in (":=", "+=", "-=", "*=", "/="):
            raise ParseError(f"assignment '{two}' is not allowed in a formula", text, i)
        if ch in "+-*/@<>":
            toks.append(_Tok("op", ch, i))
        elif ch in "(),":
            toks.append(_Tok(ch, ch, i))
        elif ch == "^":
            raise ParseError("'^' is not a power operator in graphc (in Python it is xor): write x**y", text, i)
        elif ch == "=":
            toks.append(_Tok("=", ch, i))
        elif ch == "." and text[i + 1:i + 2] == "T" and not _is_name_char(text[i + 2:i + 3] or " ") \
                and not text[i + 2:i + 3].isdigit():
            toks.append(_Tok("postfix", ".T", i))
            i += 2
            continue
        elif ch == ".":
            raise ParseError("attribute access is not allowed in a formula (only x.T, the transpose)", text, i)
        elif ch in "[]":
            raise ParseError("subscripts '[...]' are not supported: name each variable (x0, x1, ...)", text, i)
        elif ch in "'\"" and toks and toks[-1].kind == "=":
            end = text.find(ch, i + 1)
            if end < 0 or "\n" in text[i:end]:
                raise ParseError("unterminated string", text, i)
            toks.append(_Tok("str", text[i + 1:end], i))
            i = end + 1
            continue
        elif ch in "'\"":
            raise ParseError("strings are not allowed in a formula (only as keyword values: reduction='sum')",
                             text, i)
        elif ch == ";":
            raise ParseError("';' separates statements: a formula is one expression", text, i)
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
    nargs: int = 0  # positional arguments completed
    kwargs: dict | None = None  # keyword arguments (literals), in order given


def parse_formula(text: str, dtype: str = "f64", inputs: tuple[str, ...] | None = None,
                  shapes: dict | None = None, dtypes: dict | None = None) -> Graph:
    """Parse formula text into a forward Graph with one output named 'f'.

    shapes: variable -> shape (tuple of ints and dimension names): the formula
    is then a tensor program and every variable must be declared (() for a
    scalar). dtypes: variable -> 'int64' for integer labels."""
    if not isinstance(text, str):
        raise ParseError(f"a formula must be a string, got {describe(text)}")
    if len(text) > MAX_FORMULA_CHARS:
        raise LimitError(f"formula is {len(text):,} characters; the limit is {MAX_FORMULA_CHARS:,}")
    if not text.strip():
        raise ParseError("empty formula", text, 0)
    var_types = _declared(shapes, dtypes, dtype)
    toks = _tokenize(text)
    order: list[str] = []
    vars_: dict[str, Node] = {}
    # operand stack: (node, col, is_literal); operator stack: (prec, op, col, right_assoc) or _Frame
    vals: list[tuple[Node, int, bool]] = []
    ops: list[object] = []

    def build(op: str, args: list[Node], col: int, **attrs: object) -> Node:
        try:
            return make(op, *args, **attrs)
        except ShapeError as exc:
            raise ShapeError(exc.reason, text, col) from None
        except IRError as exc:
            raise ParseError(str(exc), text, col) from None

    def apply(entry: tuple) -> None:
        prec, op, col, _ = entry
        if op == "neg" or op == "pos":
            node, c, lit = vals.pop()
            if op == "pos":
                vals.append((node, col, lit))
            elif lit:
                vals.append((const(-node.value, dtype), col, True))
            else:
                vals.append((build("neg", [node], col), col, False))
            return
        b, _, _ = vals.pop()
        a, ca, _ = vals.pop()
        node = build(op, [a, b], col)
        vals.append((node, col if node.dtype == "bool" else ca, False))  # a mask points at its operator

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

    def finish_call(frame: _Frame) -> None:
        nargs = frame.nargs
        args = [vals.pop() for _ in range(nargs)][::-1]
        vals.append((_call(text, frame, args, dtype, build, var_types is not None), frame.func_col, False))

    expect_operand = True
    i = 0
    while True:
        tok = toks[i]
        i += 1
        if expect_operand:
            if tok.kind == "num":
                vals.append((const(float(tok.text), dtype), tok.col, True))
                expect_operand = False
            elif tok.kind == "name" and toks[i].kind == "=" and ops and isinstance(ops[-1], _Frame) \
                    and ops[-1].func is not None:
                frame = ops[-1]
                if frame.kwargs is None:
                    frame.kwargs = {}
                if tok.text in frame.kwargs:
                    raise ParseError(f"keyword argument {tok.text}= given twice", text, tok.col)
                value, i = _literal(text, toks, i + 1)
                frame.kwargs[tok.text] = (value, tok.col)
                nxt = toks[i]
                i += 1
                if nxt.kind == ",":
                    continue  # still expecting an operand (another keyword)
                if nxt.kind != ")":
                    raise ParseError("expected ',' or ')' after a keyword argument", text, nxt.col)
                ops.pop()
                finish_call(frame)
                expect_operand = False
            elif tok.kind == "name":
                word = tok.text
                nxt = toks[i]
                if nxt.kind == "(":
                    func = word
                    if word in CONSTANTS:
                        raise ParseError(f"'{word}' is a constant, not a function", text, tok.col)
                    if user_function(_CALL_ALIASES.get(func, func)) is None:
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
                        if var_types is not None and word not in var_types:
                            raise ParseError(f"variable '{word}' has no declared shape: add it to shapes= "
                                             "(() for a scalar)", text, tok.col)
                        vdtype, vshape = var_types[word] if var_types is not None else (dtype, ())
                        node = vars_[word] = input_node(word, vdtype, vshape)
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
            elif tok.kind == "=":
                raise ParseError("assignment '=' is not allowed in a formula: write only the expression", text, tok.col)
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
        elif tok.kind == "postfix":  # x.T binds tightest: to the operand just read
            node, c, _ = vals.pop()
            vals.append((build("transpose", [node], tok.col), c, False))
        elif tok.kind == ",":
            frame = close_frame(tok, ",")
            if frame.func is None:
                raise ParseError("',' outside a function call: a formula is one expression", text, tok.col)
            if frame.kwargs:
                raise ParseError("positional argument after a keyword argument", text, tok.col)
            frame.nargs += 1
            expect_operand = True
        elif tok.kind == ")":
            frame = close_frame(tok, ")")
            ops.pop()
            if frame.func is not None:
                frame.nargs += 1
                finish_call(frame)
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
        elif tok.kind == "=":
            raise ParseError("assignment '=' is not allowed in a formula: write only the expression "
                             "(keyword arguments go inside a call: sum(x, axis=0))", text, tok.col)
        else:
            raise ParseError(f"missing operator before {tok.text!r}", text, tok.col)
    (root, rcol, _), = vals
    if root.dtype == "bool":
        raise ParseError("a comparison gives a mask, not a number: use it inside where(mask, a, b)", text, rcol)
    if not root.type.is_float:
        raise ParseError(f"the formula's value is {root.type}, not a float", text, rcol)
    return _make_graph(root, order, vars_, dtype, inputs, var_types)


def _declared(shapes: dict | None, dtypes: dict | None, dtype: str) -> dict[str, tuple[str, tuple]] | None:
    """name -> (dtype, shape) for a tensor program; None in pointwise mode."""
    if shapes is None and not dtypes:
        return None
    out: dict[str, tuple[str, tuple]] = {}
    for name, shape in (shapes or {}).items():
        try:
            out[str(name)] = (dtype, canonical_shape(shape))
        except IRError as exc:
            raise ParseError(f"shapes[{name!r}]: {exc}") from None
    for name, dt in (dtypes or {}).items():
        try:
            d = canonical_any_dtype(dt)
        except IRError as exc:
            raise ParseError(f"dtypes[{name!r}]: {exc}") from None
        if d not in ("i64", dtype):
            raise ParseError(f"dtypes[{name!r}] = {dt!r}: a variable is the formula's float dtype or int64 "
                             "(labels)")
        out[str(name)] = (d, out.get(str(name), (d, ()))[1])
    return out


def _literal(text: str, toks: list[_Tok], i: int) -> tuple[object, int]:
    """A keyword argument's value: an int, a tuple of ints and dimension names,
    True/False/None or a string. Returns (value, index of the next token)."""
    tok = toks[i]
    if tok.kind == "op" and tok.text == "-" and toks[i + 1].kind == "num":
        v, j = _literal(text, toks, i + 1)
        return -v, j  # type: ignore[operator]
    if tok.kind == "num":
        v = float(tok.text)
        return (int(v) if v.is_integer() and "." not in tok.text and "e" not in tok.text.lower() else v), i + 1
    if tok.kind == "lit":
        return {"True": True, "False": False, "None": None}[tok.text], i + 1
    if tok.kind == "str":
        return tok.text, i + 1
    if tok.kind == "name":
        return tok.text, i + 1
    if tok.kind == "(":
        items: list[object] = []
        i += 1
        while toks[i].kind != ")":
            v, i = _literal(text, toks, i)
            if isinstance(v, tuple):
                raise ParseError("nested tuples are not allowed here", text, toks[i].col)
            items.append(v)
            if toks[i].kind == ",":
                i += 1
            elif toks[i].kind != ")":
                raise ParseError("expected ',' or ')' in a tuple", text, toks[i].col)
        return tuple(items), i + 1
    raise ParseError("a keyword argument's value is a number, a tuple like (0, 1), True/False/None or a "
                     "quoted string", text, tok.col)


def _call(text: str, frame: _Frame, args: list[tuple[Node, int, bool]], dtype: str, build,
          tensor: bool) -> Node:
    """Apply the function of a closed call to its positional and keyword arguments."""
    func = _CALL_ALIASES.get(frame.func, frame.func)  # type: ignore[arg-type]
    kwargs = {k: v for k, (v, _) in (frame.kwargs or {}).items()}
    if func in _REDUCING and (len(args) == 1 or kwargs):
        if len(args) == 1 and not args[0][0].shape and not kwargs:
            raise ArityError(f"{func}() takes 2 arguments, got 1 (with one argument it reduces an array, and this "
                             "one is a scalar)", text, frame.func_col)
        if len(args) != 1:
            raise ArityError(f"{func}(x, axis=..., keepdims=...) reduces one argument; max(a, b) takes no keywords",
                             text, frame.func_col)
        func = _REDUCING[func]
    spec = user_function(func) or get(func)  # amax/amin: internal names of max/min reductions
    npos = len(args)
    extra = npos - spec.arity
    if extra < 0 or extra > len(spec.keywords):
        raise ArityError(_arity_msg(frame.func, npos), text, frame.func_col)  # type: ignore[arg-type]
    for (node, col, lit), key in zip(args[spec.arity:], spec.keywords):
        if not lit or not float(node.value).is_integer():
            raise ParseError(f"{frame.func}(): argument {key} must be an integer literal (or write {key}=...)",
                             text, col)
        if key in kwargs:
            raise ParseError(f"{frame.func}(): {key} given twice", text, col)
        kwargs[key] = int(node.value)
    for k, (_, col) in (frame.kwargs or {}).items():
        if k not in spec.keywords:
            ok = ", ".join(f"{w}=" for w in spec.keywords) or "none"
            raise ParseError(f"{frame.func}() takes no keyword argument {k}= (accepted: {ok})", text, col)
    if "dtype" in spec.keywords:
        kwargs.setdefault("dtype", dtype)
    if not tensor and "keepdims" in spec.keywords and not args[0][0].shape:
        raise ParseError(f"{frame.func}() reduces over axes, but in a pointwise formula every variable is a scalar "
                         f"(arrays passed in are batches of independent points): declare shapes=, e.g. "
                         f"shapes={{'x': ('N',)}}, to reduce over a dataset", text, frame.func_col)
    return build(func, [a[0] for a in args[:spec.arity]], frame.func_col, **kwargs)


def _make_graph(root: Node, order: list[str], vars_: dict[str, Node], dtype: str,
                inputs: tuple[str, ...] | None, var_types: dict | None = None) -> Graph:
    from ..errors import ArgumentError

    if var_types is not None:
        unused = [n for n in var_types if n not in vars_]
        if unused:
            raise ArgumentError(f"shapes=/dtypes= name {', '.join(map(repr, unused))}, not variable(s) of the "
                                f"formula (variables: {', '.join(order)})")
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
    spec = user_function(_CALL_ALIASES.get(func, func))
    assert spec is not None
    want = spec.arity
    plural = "argument" if want == 1 else "arguments"
    if func in _REDUCING:
        return f"{func}() takes 1 argument (a reduction, with axis=, keepdims=) or 2 (elementwise), got {got}"
    more = f" (and {', '.join(spec.keywords)})" if spec.keywords else ""
    return f"{func}() takes {want} {plural}{more}, got {got}"
