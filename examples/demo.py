"""graphc demo: compile the seed's sigmoid neuron, show its IR, value and
gradients, and check them against SymPy's exact derivatives."""

import graphc
from graphc.verify import oracle

FORMULA = "1/(1+exp(-(w0*x0 + w1*x1 + w2)))"
POINT = dict(w0=2.0, x0=-1.0, w1=-3.0, x1=-2.0, w2=-3.0)

fn = graphc.compile(FORMULA)
print(f"formula: {FORMULA}")
print(f"inputs:  {fn.inputs}\n")
print("forward IR as parsed:")
print(graphc.print_graph(fn.forward_graph))
print("\noptimised value+gradient IR (one fused sigmoid node, stable local gradient):")
print(fn.ir)
print("\npasses:")
print(fn.stats())

value, grads = fn(**POINT)
ref = oracle.exact(fn.forward_graph, POINT)
print(f"\nat {POINT}:")
print(f"  f       = {value:.16g}   (SymPy: {ref['f']:.16g})")
worst = abs(value - ref["f"]) / abs(ref["f"])
for name, g in grads.items():
    r = ref[f"df/d{name}"]
    worst = max(worst, abs(g - r) / abs(r))
    print(f"  df/d{name:<3} = {g: .16g}   (SymPy: {r: .16g})")
ok = worst <= 1e-12
print(f"\ncheck against SymPy: max relative error {worst:.2e} -> {'OK' if ok else 'FAILED'}")
raise SystemExit(0 if ok else 1)
