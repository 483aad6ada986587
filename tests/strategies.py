"""A hypothesis strategy for random well-formed formulas over every function
in the registry: bounded size, domain-safe (each restricted argument is
wrapped by its domain's `wrap` text so it stays inside), shrinking to a
minimal formula on failure. It reads the registry when called, so ops
registered later are covered too."""

from hypothesis import strategies as st

from graphc.registry import REGISTRY, pointwise_functions

VARIABLES = ("x", "y", "z")
CONSTANTS = ("0", "0.5", "2", "1.5", "3", "-1.25", "pi")
ARITH = {"add", "sub", "mul", "div", "neg", "pow"}


def _call(op: str, args: list[str]) -> str:
    spec = REGISTRY[op]
    wrapped = [d.wrap.format(a) for d, a in zip(spec.domain, args)]
    if op == "pow":  # a base that reaches 0 (the kink rows set variables to 0), a moderate positive exponent
        return f"(abs({args[0]}) ** (tanh({args[1]}) + 1.5))"
    if op == "div":
        return f"({wrapped[0]} / {wrapped[1]})"
    return f"{op}({', '.join(wrapped)})"


def functions_by_arity() -> dict[int, list[str]]:
    """Every callable function (pow included) by arity, plus division."""
    out: dict[int, list[str]] = {}
    for spec in pointwise_functions():
        out.setdefault(spec.arity, []).append(spec.name)
    out.setdefault(2, []).append("div")
    return {k: sorted(v) for k, v in out.items()}


def formulas(max_leaves: int = 10) -> st.SearchStrategy[str]:
    leaf = st.sampled_from(VARIABLES) | st.sampled_from(CONSTANTS)
    funcs = functions_by_arity()

    def extend(children):
        calls = [
            st.builds(lambda op, *a: _call(op, list(a)), st.sampled_from(names), *([children] * arity))
            for arity, names in sorted(funcs.items())
        ]
        return st.one_of(
            st.builds(lambda op, a, b: f"({a} {op} {b})", st.sampled_from(["+", "-", "*"]), children, children),
            st.builds(lambda a: f"-{a}", children),
            *calls,
        )

    # at least one variable, so there is a gradient to check
    return st.recursive(leaf, extend, max_leaves=max_leaves).filter(lambda f: any(v in f for v in VARIABLES))


def covered_ops() -> set[str]:
    """Ops the strategy can write (the coverage test checks every user function is here)."""
    return {name for names in functions_by_arity().values() for name in names} | ARITH
