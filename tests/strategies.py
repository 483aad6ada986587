"""A hypothesis strategy for random well-formed formulas over every op in the
registry: bounded size, domain-safe (restricted arguments are wrapped so they
stay inside the op's domain), shrinking to a minimal formula on failure."""

from hypothesis import strategies as st

from graphc.ops import REGISTRY

VARIABLES = ("x", "y", "z")
CONSTANTS = ("0.5", "2", "1.5", "3", "-1.25", "pi")
ARITH = {"add", "sub", "mul", "div", "neg", "pow"}

# how each restricted argument is kept inside its domain
SAFE_ARG = {
    "positive": "(abs({}) + 0.5)",
    "gt-1": "abs({})",
    "nonzero": "(abs({}) + 0.5)",
    "tan": "tanh({})",
    "real": "{}",
}


def _call(op: str, args: list[str]) -> str:
    spec = REGISTRY[op]
    wrapped = [SAFE_ARG[d].format(a) for d, a in zip(spec.domain, args)]
    if op == "pow":  # keep exponents moderate: x**y overflows quickly otherwise
        return f"({wrapped[0]} ** tanh({wrapped[1]}))"
    if op == "div":
        return f"({wrapped[0]} / {wrapped[1]})"
    return f"{op}({', '.join(wrapped)})"


FUNCS_1 = sorted(n for n, s in REGISTRY.items() if s.arity == 1 and n not in ARITH)
FUNCS_2 = sorted(n for n, s in REGISTRY.items() if s.arity == 2 and n not in ARITH) + ["pow", "div"]


def formulas(max_leaves: int = 10) -> st.SearchStrategy[str]:
    leaf = st.sampled_from(VARIABLES) | st.sampled_from(CONSTANTS)

    def extend(children):
        return st.one_of(
            st.builds(lambda op, a, b: f"({a} {op} {b})", st.sampled_from(["+", "-", "*"]), children, children),
            st.builds(lambda a: f"-{a}", children),
            st.builds(lambda op, a: _call(op, [a]), st.sampled_from(FUNCS_1), children),
            st.builds(lambda op, a, b: _call(op, [a, b]), st.sampled_from(FUNCS_2), children, children),
        )

    # at least one variable, so there is a gradient to check
    return st.recursive(leaf, extend, max_leaves=max_leaves).filter(lambda f: any(v in f for v in VARIABLES))


def covered_ops() -> set[str]:
    """Ops the strategy can produce (the registry-coverage test checks it is all)."""
    return set(FUNCS_1) | set(FUNCS_2) | ARITH
