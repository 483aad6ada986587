"""The `graphc` command: eval, ir, emit, check, cache.

Errors go to stderr with exit status 2 and no traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence

from .errors import GraphcError

MAX_DIM = 100  # --dims: every element of a tensor check is a SymPy symbol

def _num(x: float) -> float | str:
    """JSON has no inf/NaN: those are written as the strings "inf", "-inf", "nan"."""
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _parse_assignments(items: Sequence[str], tensors: bool = False) -> dict[str, object]:
    """NAME=VALUE; for tensor programs VALUE may be JSON nested lists ('[[1,2],[3,4]]')."""
    values: dict[str, object] = {}
    for item in items:
        if "=" not in item:
            raise GraphcError(f"expected NAME=VALUE, got {_clip(item)!r}")
        name, text = item.split("=", 1)
        name = name.strip()
        if name in values:
            raise GraphcError(f"{name!r} is given a value twice")
        try:
            values[name] = json.loads(text) if tensors else float(text)
        except ValueError:
            what = "a number or JSON nested lists" if tensors else "a number"
            raise GraphcError(f"value of {name!r} is not {what}: {_clip(text)!r}") from None
        except RecursionError:  # json's decoder recurses per nesting level
            raise GraphcError(f"value of {name!r} is nested too deeply to be an array: {_clip(text)!r}") from None
        if tensors and not _numeric(values[name]):
            raise GraphcError(f"value of {name!r} is not a number or nested lists of numbers: {text!r}")
    return values


def _numeric(v: object) -> bool:
    """A number or nested lists of numbers (iteratively: any depth)."""
    stack = [v]
    while stack:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(x)
        elif not isinstance(x, (int, float)) or isinstance(x, bool):
            return False
    return True


def _clip(text: str, width: int = 60) -> str:
    """A long command-line item shortened for a one-line error message."""
    return text if len(text) <= width else text[:width] + "..."


def _parse_shapes(items: Sequence[str] | None) -> dict[str, tuple] | None:
    """--shape X=N,3 --shape b= (a scalar) -> {"X": ("N", 3), "b": ()}."""
    if not items:
        return None
    out: dict[str, tuple] = {}
    for item in items:
        if "=" not in item:
            raise GraphcError(f"--shape expects NAME=DIMS like X=N,3 (b= for a scalar), got {item!r}")
        name, dims = item.split("=", 1)
        if name.strip() in out:
            raise GraphcError(f"--shape {name.strip()} is given twice")
        out[name.strip()] = tuple(d.strip() for d in dims.split(",") if d.strip())
    return out


def _parse_dims(items: Sequence[str] | None, shapes: dict[str, tuple] | None = None) -> dict[str, int]:
    """--dims N=3: a symbolic dimension of the declared shapes, sized 1 to MAX_DIM."""
    names = {d for dims in (shapes or {}).values() for d in dims if not d.isdigit()}
    out: dict[str, int] = {}
    for item in items or ():
        name, _, size = item.partition("=")
        name, size = name.strip(), size.strip()
        if not name or not re.fullmatch(r"[0-9]+", size) or not 1 <= int(size) <= MAX_DIM:
            raise GraphcError(f"--dims expects NAME=SIZE like N=3 with SIZE from 1 to {MAX_DIM}, got {_clip(item)!r}")
        if shapes is not None and name not in names:
            known = ", ".join(sorted(names)) or "none"
            raise GraphcError(f"--dims {name}: not a dimension of the declared shapes (dimensions: {known})")
        out[name] = int(size)
    return out


def _check_numbers(args: argparse.Namespace) -> None:
    """graphc check's numeric options in range, or a one-line error naming the option."""
    from .verify.pointwise import MAX_POINTS, MAX_TIME_LIMIT

    if not 1 <= args.points <= MAX_POINTS:
        raise GraphcError(f"points must be an integer from 1 to {MAX_POINTS:,}, got {args.points}")
    if args.seed < 0:
        raise GraphcError(f"seed must be a non-negative integer, got {args.seed}")
    t = args.time_limit
    if not (math.isfinite(t) and 0 < t <= MAX_TIME_LIMIT):
        raise GraphcError(f"time limit must be a positive number of seconds, at most {MAX_TIME_LIMIT:,.0f} "
                          f"(a day), got {t:g}")


def _tensor_opts(args: argparse.Namespace) -> dict[str, object]:
    shapes = _parse_shapes(getattr(args, "shape", None))
    ints = getattr(args, "int", None) or []
    if ints and shapes is None:
        raise GraphcError("--int declares labels of a tensor program: give --shape for every variable too")
    return {"shapes": shapes, "dtypes": {n: "int64" for n in ints} or None}


def _jsonable(v: object) -> object:
    import numpy as np

    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v] if v.ndim else _num(float(v))
    return _num(float(v))  # type: ignore[arg-type]


def _target_help(names: Sequence[str] | None = None) -> str:
    import graphc

    rows = graphc.targets()
    return "; ".join(f"{n}: {rows[n]}" for n in (names or rows))


def _add_compile_opts(p: argparse.ArgumentParser, target_default: str | None = None,
                      targets: Sequence[str] | None = None) -> None:
    p.add_argument("--target", default=target_default, help=_target_help(targets))
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--wrt", default=None, help="comma-separated names to differentiate by (default: all)")
    p.add_argument("--passes", default=None, help="comma-separated pipeline, e.g. simplify,fuse,autodiff,cse,dce")
    _add_tensor_opts(p)


def _add_tensor_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shape", action="append", metavar="NAME=DIMS",
                   help="declare a variable's shape, e.g. --shape X=N,3 --shape b= (scalar): a tensor program")
    p.add_argument("--int", action="append", metavar="NAME", help="an integer (labels) input of a tensor program")


def cmd_eval(args: argparse.Namespace) -> int:
    import graphc

    fn = graphc.compile(args.formula, wrt=args.wrt, target=args.target, dtype=args.dtype, passes=args.passes,
                        **_tensor_opts(args))
    value, grads = fn(**_parse_assignments(args.values, tensors=fn.tensor))
    if args.json:
        print(json.dumps({"value": _jsonable(value), "grad": {k: _jsonable(v) for k, v in grads.items()}}))
    elif fn.tensor:
        import numpy as np

        with np.printoptions(precision=17):
            print(f"f = {value!r}")
            for k, v in grads.items():
                print(f"df/d{k} =\n{np.asarray(v)!s}" if np.ndim(v) else f"df/d{k} = {v!r}")
    else:
        print(f"f = {value!r}")
        for k, v in grads.items():
            print(f"df/d{k} = {v!r}")
    return 0


def cmd_ir(args: argparse.Namespace) -> int:
    import graphc

    topts = _tensor_opts(args)
    source: object = args.formula
    if args.formula.endswith(".ir"):  # IR text (print_graph's, e.g. a traced function's with its loops)
        try:
            with open(args.formula, encoding="utf-8") as fh:
                source = graphc.parse_graph(fh.read())
        except OSError as exc:
            raise GraphcError(f"cannot read {args.formula}: {exc.strerror}") from None
        topts = {}
    prog = graphc.Program(source, wrt=None if args.no_grad else args.wrt, dtype=args.dtype,
                          passes=args.passes, grad=not args.no_grad, **topts)
    if args.at is not None or args.format in ("svg", "png"):
        from .picture import render

        at = None
        if args.at is not None:
            at = {k: _at_array(k, v, k in (getattr(args, "int", None) or []), prog.dtype)
                  for k, v in _parse_assignments(args.at, tensors=prog.tensor).items()}
        dot = prog.dot(at)
        if args.format == "dot":
            print(dot)
        elif args.format in ("svg", "png"):
            data = render(dot, args.format)
            if args.output:
                with open(args.output, "wb") as fh:
                    fh.write(data)
                print(f"wrote {args.output}", file=sys.stderr)
            elif args.format == "svg":
                print(data.decode())
            else:
                raise GraphcError("--format png writes binary data: give -o FILE.png")
        else:
            raise GraphcError("--at annotates a picture: use --format dot, svg or png")
        return 0
    if args.print_after_all:
        print(prog.print_after_all())
        print()
    elif args.format == "json":
        print(graphc.to_json(prog.graph))
    elif args.format == "dot":
        print(graphc.to_dot(prog.graph))
    else:
        print(prog.ir)
    if args.stats:
        print(prog.stats(), file=sys.stderr if args.format == "json" else sys.stdout)
    return 0


def _at_array(name: str, value: object, labels: bool, dtype: str):
    """An --at value as an array: rectangular, and integers in int64 range for --int labels."""
    import numpy as np

    try:
        arr = np.asarray(value)
    except ValueError:
        raise GraphcError(f"value of {name!r} is not a rectangular array (rows of different lengths)") from None
    if labels:
        if arr.dtype.kind not in "iu" or (arr.dtype.kind == "u" and arr.size and arr.max() > np.iinfo(np.int64).max):
            raise GraphcError(f"value of {name!r} must be integer labels (--int {name}), in int64 range")
        return arr.astype(np.int64)
    return arr.astype(dtype)


def cmd_emit(args: argparse.Namespace) -> int:
    import graphc

    if args.llvm + args.ptx + args.asm > 1:
        raise GraphcError("--llvm, --ptx and --asm: choose one")
    kind = "llvm" if args.llvm else "ptx" if args.ptx else "asm" if args.asm else "source"
    prog = graphc.Program(args.formula, wrt=args.wrt, dtype=args.dtype, passes=args.passes, **_tensor_opts(args))
    print(graphc.emit(prog, target=args.target, kind=kind, cc=args.cc))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .verify.pointwise import check, format_swell, swell

    _check_numbers(args)
    if args.swell:
        res = swell(args.formula, time_limit=args.time_limit)
        print(json.dumps(res, indent=1) if args.json else format_swell(res))
        return 0
    topts = _tensor_opts(args)
    if args.dims and topts["shapes"] is None:
        raise GraphcError("--dims sizes the dimensions of a tensor check: declare the shapes with --shape too")
    if topts["shapes"] is not None:
        import graphc

        from .verify.tensor import check_tensor

        dims = _parse_dims(args.dims, topts["shapes"])
        fn = graphc.compile(args.formula, wrt=args.wrt, dtype=args.dtype, **topts)
        tr = check_tensor(fn, dims=dims, points=min(args.points, 4), seed=args.seed,
                          adversarial=True)
        print(tr.to_json() if args.json else tr)
        return 0 if tr.ok else 1
    report = check(args.formula, target=args.target, dtype=args.dtype, points=args.points, seed=args.seed,
                   wrt=args.wrt, time_limit=args.time_limit, symbolic=not args.no_symbolic)
    print(report.to_json() if args.json else report)
    return 0 if report.ok else 1


def cmd_cache(args: argparse.Namespace) -> int:
    from .backends import cache

    if args.action == "info":
        i = cache.info()
        print(f"cache folder: {i['dir']}")
        print(f"kernels:      {i['entries']}")
        print(f"size:         {i['bytes'] / 1e6:.2f} MB")
    else:
        n = cache.clear()
        print(f"removed {n} cached kernel(s) from {cache.cache_dir()}")
    return 0


def _emitting(kind: str | None = None) -> list[str]:
    from .backends.targets import TARGETS

    return [n for n, t in TARGETS.items() if t.emits and (kind is None or kind in t.emits)]


def _emitters(kind: str) -> str:
    return "--target " + " or ".join(_emitting(kind))


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage block): every command-line error
    is one line on stderr and exit status 2. Subcommand parsers inherit it."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def version_report() -> str:
    """graphc's version, the versions it runs on and the host CPU (`numba -s`, in short)."""
    import platform
    from importlib import metadata

    from .version import __version__

    def dist(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    lines = [f"graphc {__version__}",
             f"Python {platform.python_version()} ({platform.python_implementation()}, {platform.system()} "
             f"{platform.machine()})",
             f"NumPy {dist('numpy')}, Numba {dist('numba')}, llvmlite {dist('llvmlite')}"]
    try:
        import llvmlite.binding as llvm

        cpu = llvm.get_host_cpu_name()
        try:
            feats = llvm.get_host_cpu_features()
            on = {f for f, v in feats.items() if v}
        except RuntimeError:  # LLVM cannot list features on some hosts
            on = set()
        simd = [f for f in ("sse2", "sse4.2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "neon", "sve",
                            "sve2", "altivec", "vsx") if f in on]
        lines.append(f"LLVM {'.'.join(map(str, llvm.llvm_version_info))}, host CPU {cpu} "
                     f"({len(on)} features; vector: {' '.join(simd) or 'none found'})")
    except Exception as exc:  # noqa: BLE001 -- a report, never a failure
        lines.append(f"host CPU: unknown ({type(exc).__name__}: {exc})")
    return "\n".join(lines)


class _Version(argparse.Action):
    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_report())
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="graphc", description="Compile formulas to value+gradient functions.")
    p.add_argument("--version", action=_Version,
                   help="print the version of graphc, NumPy, Numba and llvmlite and the host CPU, and exit")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("eval", help="value and gradient at one point: graphc eval '(x+y)*z' x=-2 y=5 z=-4")
    e.add_argument("formula")
    e.add_argument("values", nargs="*", default=[], help="NAME=VALUE for every input")
    e.add_argument("--json", action="store_true", help='one JSON object {"value": ..., "grad": {...}}')
    _add_compile_opts(e)
    e.set_defaults(func=cmd_eval)

    r = sub.add_parser("ir", help="print the IR (value+gradient, or --no-grad)")
    r.add_argument("formula", help="a formula, or a FILE.ir of IR text (graphc.print_graph's, loops included)")
    r.add_argument("--no-grad", action="store_true", help="the optimised forward graph only")
    r.add_argument("--format", default="text", choices=["text", "json", "dot", "svg", "png"],
                   help="dot: Graphviz text; svg, png: rendered by Graphviz's dot (when installed)")
    r.add_argument("--at", nargs="+", metavar="NAME=VALUE", default=None,
                   help="annotate the forward graph with values and gradients at this point (the seed's pictures)")
    r.add_argument("-o", "--output", default=None, help="write the svg/png here")
    r.add_argument("--print-after-all", action="store_true", help="the IR after every pass")
    r.add_argument("--stats", action="store_true", help="per-pass table: ops, time, rules fired")
    r.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    r.add_argument("--wrt", default=None)
    r.add_argument("--passes", default=None)
    _add_tensor_opts(r)
    r.set_defaults(func=cmd_ir)

    m = sub.add_parser("emit", help="print the generated kernel source (or its LLVM IR)")
    m.add_argument("formula")
    m.add_argument("--llvm", action="store_true", help="the LLVM IR of the kernel (" + _emitters("llvm") + ")")
    m.add_argument("--ptx", action="store_true", help="PTX, no GPU needed (" + _emitters("ptx") + ")")
    m.add_argument("--asm", action="store_true", help="the host assembly of the kernel (" + _emitters("asm") + ")")
    m.add_argument("--cc", default="9.0", help="compute capability for --ptx (default 9.0)")
    _add_compile_opts(m, targets=_emitting())  # default: the library's (llvm)
    m.set_defaults(func=cmd_emit)

    k = sub.add_parser("check", help="check every output against SymPy's exact derivatives (exit 1 on disagreement)")
    k.add_argument("formula")
    k.add_argument("--points", type=int, default=64, help="random points (adversarial points are added)")
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--json", action="store_true")
    k.add_argument("--swell", action="store_true", help="expression-swell report: graphc vs SymPy op counts")
    k.add_argument("--time-limit", type=float, default=20.0, help="seconds SymPy may take per task")
    k.add_argument("--no-symbolic", action="store_true", help="numeric verdict only")
    k.add_argument("--target", default=None, help=_target_help() + " (default: the library's, llvm)")
    k.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    k.add_argument("--wrt", default=None)
    _add_tensor_opts(k)
    k.add_argument("--dims", action="append", metavar="N=SIZE",
                   help="size of a symbolic dimension in a tensor check (default 3)")
    k.set_defaults(func=cmd_check)

    c = sub.add_parser("cache", help="the on-disk kernel cache: info or clear")
    c.add_argument("action", choices=["info", "clear"])
    c.set_defaults(func=cmd_cache)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (argparse's errors, --help and --version too)."""
    try:
        args = _parse(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        return int(args.func(args) or 0)
    except GraphcError as exc:
        print(f"graphc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("graphc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # NAME=VALUE items after options (graphc eval F --shape X=N,3 X='[[1,2]]') are values too
    if extra and getattr(args, "command", None) == "eval" and all("=" in e and not e.startswith("-") for e in extra):
        args.values = list(args.values) + extra
    elif extra:
        msg = f"unrecognized arguments: {' '.join(_clip(e, 40) for e in extra)}"
        if any(e.startswith("-") and e[1:2] not in ("", "-") for e in extra):
            msg += "; a formula that starts with '-' goes after '--': graphc eval -- '-x*y' x=1 y=2"
        parser.error(msg)
    return args


if __name__ == "__main__":
    sys.exit(main())
