"""The `graphc` command: eval, ir, emit, check, cache.

Errors go to stderr with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

from .errors import GraphcError


def _num(x: float) -> float | str:
    """JSON has no inf/NaN: those are written as the strings "inf", "-inf", "nan"."""
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _parse_assignments(items: Sequence[str]) -> dict[str, float]:
    values: dict[str, float] = {}
    for item in items:
        if "=" not in item:
            raise GraphcError(f"expected NAME=VALUE, got {item!r}")
        name, text = item.split("=", 1)
        name = name.strip()
        try:
            values[name] = float(text)
        except ValueError:
            raise GraphcError(f"value of {name!r} is not a number: {text!r}") from None
    return values


def _add_compile_opts(p: argparse.ArgumentParser, target_default: str | None = None) -> None:
    p.add_argument("--target", default=target_default, help="cpu (default), parallel, cuda or numpy (reference)")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--wrt", default=None, help="comma-separated names to differentiate by (default: all)")
    p.add_argument("--passes", default=None, help="comma-separated pipeline, e.g. simplify,fuse,autodiff,cse,dce")


def cmd_eval(args: argparse.Namespace) -> int:
    import graphc

    fn = graphc.compile(args.formula, wrt=args.wrt, target=args.target, dtype=args.dtype, passes=args.passes)
    value, grads = fn(**_parse_assignments(args.values))
    if args.json:
        print(json.dumps({"value": _num(value), "grad": {k: _num(v) for k, v in grads.items()}}))
    else:
        print(f"f = {value!r}")
        for k, v in grads.items():
            print(f"df/d{k} = {v!r}")
    return 0


def cmd_ir(args: argparse.Namespace) -> int:
    import graphc

    from .frontend import parse
    from .ir import canonical_dtype, print_graph, to_dot, to_json
    from .passes.manager import (
        PassContext,
        format_print_after_all,
        format_stats,
        normalize_pipeline,
        run_pipeline,
    )

    if args.no_grad:
        fwd = parse(args.formula, dtype=canonical_dtype(args.dtype))
        pipeline = normalize_pipeline(args.passes, grad=False)
        graph, records = run_pipeline(fwd, pipeline, PassContext(), keep_ir=args.print_after_all)
        forward_ops = graph.op_count()
    else:
        fn = graphc.compile(args.formula, wrt=args.wrt, target="numpy", dtype=args.dtype, passes=args.passes)
        graph, records, fwd = fn.graph, fn.records, fn.forward_graph
        forward_ops = fn.optimised_forward().op_count()
    if args.print_after_all:
        print(format_print_after_all(records, fwd))
        print()
    elif args.format == "json":
        print(to_json(graph))
    elif args.format == "dot":
        print(to_dot(graph))
    else:
        print(print_graph(graph))
    if args.stats:
        print(format_stats(records, forward_ops=None if args.no_grad else forward_ops),
              file=sys.stderr if args.format == "json" else sys.stdout)
    return 0


def cmd_emit(args: argparse.Namespace) -> int:
    import graphc

    if args.target not in ("cpu", "parallel", "cuda"):
        raise GraphcError(f"emit: target {args.target!r} generates no kernel; use --target cpu, parallel or cuda")
    if args.target == "cuda":  # source and PTX need no GPU
        from .codegen import numba_cuda

        fn = graphc.compile(args.formula, wrt=args.wrt, target="numpy", dtype=args.dtype, passes=args.passes)
        if args.ptx:
            try:
                major, minor = (int(x) for x in args.cc.split("."))
            except ValueError:
                raise GraphcError(f"--cc expects MAJOR.MINOR such as 9.0, got {args.cc!r}") from None
            print(numba_cuda.ptx(fn.graph, (major, minor)))
        else:
            print(numba_cuda.generate_source(fn.graph, (True,) * len(fn.inputs)))
        return 0
    if args.ptx:
        raise GraphcError("--ptx needs --target cuda")
    fn = graphc.compile(args.formula, wrt=args.wrt, target=args.target, dtype=args.dtype, passes=args.passes)
    if args.llvm:
        print(fn._kernel.llvm())
    else:
        print(fn.source)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .checker import check, format_swell, swell

    if args.swell:
        res = swell(args.formula, time_limit=args.time_limit)
        print(json.dumps(res, indent=1) if args.json else format_swell(res))
        return 0
    report = check(args.formula, target=args.target, dtype=args.dtype, points=args.points, seed=args.seed,
                   wrt=args.wrt, time_limit=args.time_limit, symbolic=not args.no_symbolic)
    print(report.to_json() if args.json else report)
    return 0 if report.ok else 1


def cmd_cache(args: argparse.Namespace) -> int:
    from .codegen import cache

    if args.action == "info":
        i = cache.info()
        print(f"cache folder: {i['dir']}")
        print(f"kernels:      {i['entries']}")
        print(f"size:         {i['bytes'] / 1e6:.2f} MB")
    else:
        n = cache.clear()
        print(f"removed {n} cached kernel(s) from {cache.cache_dir()}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphc", description="Compile formulas to value+gradient functions.")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("eval", help="value and gradient at one point: graphc eval '(x+y)*z' x=-2 y=5 z=-4")
    e.add_argument("formula")
    e.add_argument("values", nargs="*", help="NAME=VALUE for every input")
    e.add_argument("--json", action="store_true", help='one JSON object {"value": ..., "grad": {...}}')
    _add_compile_opts(e)
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("ir", help="print the IR (value+gradient, or --no-grad)")
    r.add_argument("formula")
    r.add_argument("--no-grad", action="store_true", help="the optimised forward graph only")
    r.add_argument("--format", default="text", choices=["text", "json", "dot"])
    r.add_argument("--print-after-all", action="store_true", help="the IR after every pass")
    r.add_argument("--stats", action="store_true", help="per-pass table: ops, time, rules fired")
    r.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    r.add_argument("--wrt", default=None)
    r.add_argument("--passes", default=None)
    r.set_defaults(func=cmd_ir)

    m = sub.add_parser("emit", help="print the generated kernel source (or its LLVM IR)")
    m.add_argument("formula")
    m.add_argument("--llvm", action="store_true", help="the LLVM IR Numba made for the kernel")
    m.add_argument("--ptx", action="store_true", help="PTX for --target cuda (no GPU needed)")
    m.add_argument("--cc", default="9.0", help="compute capability for --ptx (default 9.0)")
    _add_compile_opts(m, target_default="cpu")
    m.set_defaults(func=cmd_emit)

    k = sub.add_parser("check", help="check every output against SymPy's exact derivatives (exit 1 on disagreement)")
    k.add_argument("formula")
    k.add_argument("--points", type=int, default=64, help="random points (adversarial points are added)")
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--json", action="store_true")
    k.add_argument("--swell", action="store_true", help="expression-swell report: graphc vs SymPy op counts")
    k.add_argument("--time-limit", type=float, default=20.0, help="seconds SymPy may take per task")
    k.add_argument("--no-symbolic", action="store_true", help="numeric verdict only")
    k.add_argument("--target", default="cpu", help="cpu (default), parallel or numpy")
    k.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    k.add_argument("--wrt", default=None)
    k.set_defaults(func=cmd_check)

    c = sub.add_parser("cache", help="the on-disk kernel cache: info or clear")
    c.add_argument("action", choices=["info", "clear"])
    c.set_defaults(func=cmd_cache)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except GraphcError as exc:
        print(f"graphc: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
