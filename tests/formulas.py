"""The core formula set shared by tests: (formula, {var: (lo, hi)}) with
sampling ranges away from kinks and outside-domain regions (default -2..2)."""

CORE = [
    ("(x + y) * z", {}),
    ("1/(1+exp(-(w0*x0 + w1*x1 + w2)))", {}),
    ("sigmoid(w0*x0 + w1*x1 + w2)", {}),
    ("2*x + x**2", {}),
    ("-(2*x)**3", {}),
    ("x*y*z + x*y + x", {}),
    ("x / y", {"y": (0.5, 2.0)}),
    ("x ** y", {"x": (0.5, 3.0)}),
    ("pow(x, 3) - 2*pow(y, 2)", {}),
    ("exp(x) * sin(y)", {}),
    ("log(x) + sqrt(y)", {"x": (0.1, 5.0), "y": (0.1, 5.0)}),
    ("cos(x*y) - tan(x)", {"x": (-1.2, 1.2)}),
    ("tanh(x) * y", {}),
    ("softplus(x - y)", {}),
    ("relu(x) + relu(-y)", {"x": (0.1, 2.0), "y": (0.1, 2.0)}),
    ("abs(x - y) * z", {"x": (1.0, 2.0), "y": (-2.0, -1.0)}),
    ("max(x, y) + min(x, y)*x", {"x": (1.0, 2.0), "y": (-2.0, -1.0)}),
    ("log1p(x*x) + expm1(y)", {}),
    ("log(1 + exp(x))", {}),
    ("exp(x)/(1+exp(x))", {}),
    ("log(exp(a) + exp(b))", {}),
    ("(exp(x)-exp(-x))/(exp(x)+exp(-x))", {}),
    ("sin(x)**2 + cos(x)**2", {}),
    ("x*exp(-x*x/2)", {}),
    ("sqrt(x*x + y*y)", {"x": (0.3, 2.0)}),
    ("1/(1+x*x)", {}),
    ("tanh(tanh(tanh(x)))", {}),
    ("x**-1 + y**-2", {"x": (0.5, 2.0), "y": (0.5, 2.0)}),
    ("pi*x + e*y", {}),
    ("exp(sin(x)) * log(2 + cos(y))", {}),
    ("sigmoid(x)*(1 - sigmoid(x))", {}),
    ("x - (-y) + --z", {}),
    ("log(sigmoid(x)) + log(1 - sigmoid(y))", {}),
    ("2*sigmoid(2*x) - 1", {}),
    ("(x*y + 1)**2 / (1 + exp(z))", {}),
    ("relu(w0*x0 + w1*x1 + b)", {"w0": (0.5, 2.0), "x0": (0.5, 2.0), "w1": (0.5, 2.0), "x1": (0.5, 2.0), "b": (0.5, 1.0)}),
]

SECOND_ORDER = [
    ("x*x*y", {}),
    ("sigmoid(x*y)", {}),
    ("exp(x)*sin(y)", {}),
    ("log(x) * y**3", {"x": (0.5, 2.0)}),
    ("tanh(x + 2*y)", {}),
    ("softplus(x*y)", {}),
    ("x ** y", {"x": (0.5, 2.0)}),
]


def sample(inputs, ranges, rng, n=None):
    """Random points, one array (or float if n is None) per input, in input order."""
    pts = {}
    for name in inputs:
        lo, hi = ranges.get(name, (-2.0, 2.0))
        pts[name] = rng.uniform(lo, hi) if n is None else rng.uniform(lo, hi, n)
    return pts

# The functions added with the open registry, five formulas covering all nineteen
# (ranges keep arguments inside domains and away from floor/ceil's jumps at integers)
FUNCTIONS = [
    ("atan(x) * asin(y) + acos(y) * sinh(x)", {"y": (-0.9, 0.9)}),
    ("cosh(x) - asinh(x*y) + acosh(z) * atanh(y)", {"y": (-0.9, 0.9), "z": (1.1, 3.0)}),
    ("erf(x) * erfc(y) + log2(z) - log10(z) * exp2(x)", {"z": (0.1, 5.0)}),
    ("hypot(x, y) + atan2(x, y) * clip(x, y - 1, y + 1)", {"x": (0.2, 2.0), "y": (0.2, 2.0)}),
    ("gelu(x*y) + floor(x) * y + ceil(y) * x", {"x": (0.1, 0.9), "y": (1.1, 1.9)}),
]
