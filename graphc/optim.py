"""Optimizers over pytrees of NumPy arrays: PyTorch's update equations, optax's objects.

`opt = graphc.optim.adam(1e-3)`; `state = opt.init(params)`; then per step
`params, state = opt.update(grads, state, params)`. Each optimizer computes what
`torch.optim`'s single-tensor implementation computes, operation for operation
(lerp for the first moment, addcmul/addcdiv's order of products), so the two agree
to rounding; the documented algorithm it implements is named in its docstring.

Three layers, so that one formula serves eager training and a compiled step:

- a **rule** per optimizer, `rule(p, g, *slots, step, hyper, out=None)`: one
  parameter's update, written with NumPy ufuncs only. With `out=None` it is pure
  (new arrays; on graphc tracers the ufuncs record IR, so `graphc.jit` of a rule
  traces the same formula into a program). With `out=Into(...)` every ufunc writes
  into the given buffers: that is the eager in-place update, the same operations
  in the same order, so eager and pure agree bit for bit.
- `Optimizer.apply(grads, state, params, lr=None)`: the rule over the pytree, pure,
  for arrays and tracers alike (what a compiled `train_step` traces; `step` and
  `lr` may be traced scalars there).
- `Optimizer.update(grads, state, params, donate=False)`: the eager step, NumPy
  in place. By default the caller's params and state are not touched: each comes
  back as a new array, written once by `out=` ufuncs. `donate=True` (JAX's buffer
  donation, PyTorch's in-place step) updates the given params and state arrays
  themselves and returns them; the donated inputs must not be reused. Grads are
  never written. Per update the only temporaries are two scratch buffers per
  dtype, each the size of the largest parameter, shared by every leaf.

Params are a pytree (dicts, lists, tuples) of float arrays; a number leaf (what a traced
program returns for a 0-d result) is taken as a 0-d float64 array and comes back as one.
Gradients have the params' structure and shapes; they are used in the params' dtype (a
float64 gradient of a float32 parameter is rounded), so float32 training stays float32.
The state is `{"step": int, <slot>: <params-shaped pytree of arrays>, ...}`, the
slots named as PyTorch names them in `optimizer.state` (`exp_avg`, ...), so it
flattens with graphc's pytree helpers and can be an argument of a traced function.

`lr` is a float or a schedule: a plain function of the number of updates already
taken (0 for the first, as a torch LR scheduler stepped after each
`optimizer.step()`) returning a float; `constant`, `cosine` and `warmup` build them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from numbers import Real
from typing import Any

import numpy as np

from .describe import describe
from .errors import ArgumentError, ShapeError
from .trace import TreeDef, flatten, unflatten


class OptimizerError(ArgumentError, ValueError):
    """A bad optimizer argument or pytree: a GraphcError, and a ValueError as torch.optim raises."""


Schedule = Callable[[int], float]


# ------------------------------------------------------------------ where a rule writes


class Into:
    """Where a rule writes each value it computes: `param`, each slot by its name, and the
    scratch buffers `tmp` and `tmp2`; a name not given is None, which makes a ufunc return a
    new value (or, on tracers, record a node). `Into()` is the pure rule."""

    def __init__(self, **buffers: Any):
        self.__dict__.update(buffers)

    def __getattr__(self, name: str) -> None:  # only for names not given
        return None


_PURE = Into()


def _lerp(a: Any, b: Any, w: float, into: Any, tmp: Any) -> Any:
    """torch.lerp(a, b, w) as ATen computes it: a + w*(b - a) for |w| < 0.5, else b - (b - a)*(1 - w)."""
    d = np.subtract(b, a, out=tmp)
    if abs(w) < 0.5:
        return np.add(a, np.multiply(d, w, out=tmp), out=into)
    return np.subtract(b, np.multiply(d, 1 - w, out=tmp), out=into)


# ------------------------------------------------------------------ the rules


def _sgd_slots(h: dict) -> tuple[str, ...]:
    return ("momentum_buffer",) if h["momentum"] != 0 else ()


def sgd_rule(p: Any, g: Any, *slots: Any, step: Any, hyper: dict, out: Into | None = None) -> tuple:
    """One parameter's torch.optim.SGD step (single-tensor form):
    g += weight_decay*p; b = g at step 1, else momentum*b + (1 - dampening)*g;
    g = g + momentum*b (nesterov) or b; p += -lr*g.
    The buffer starts at zero, and its first-step coefficient is 1: 0*momentum + 1*g is g exactly,
    so the first step is torch's `buf = grad.clone()` without a branch on the step."""
    o = _PURE if out is None else out
    lr, mu, damp, wd = hyper["lr"], hyper["momentum"], hyper["dampening"], hyper["weight_decay"]
    if wd != 0:
        g = np.add(g, np.multiply(p, wd, out=o.tmp), out=o.tmp)
    new = ()
    if mu != 0:
        (buf,) = slots
        buf = np.multiply(buf, mu, out=o.momentum_buffer)
        if damp != 0:
            c = 1 - damp * (step > 1)  # 1 on the first step; a mask times a number when the step is traced
            buf = np.add(buf, np.multiply(g, c, out=o.tmp2), out=o.momentum_buffer)
        else:
            buf = np.add(buf, g, out=o.momentum_buffer)
        g = np.add(g, np.multiply(buf, mu, out=o.tmp2), out=o.tmp2) if hyper["nesterov"] else buf
        new = (buf,)
    p = np.add(p, np.multiply(g, -lr, out=o.tmp2), out=o.param)
    return (p, *new)


def _adam_slots(h: dict) -> tuple[str, ...]:
    return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq") if h["amsgrad"] else ("exp_avg", "exp_avg_sq")


def adam_rule(p: Any, g: Any, *slots: Any, step: Any, hyper: dict, out: Into | None = None) -> tuple:
    """One parameter's torch.optim.Adam / AdamW step (single-tensor form), t = step:
    g += weight_decay*p (Adam) or p *= 1 - lr*weight_decay (AdamW, `decoupled`);
    m = lerp(m, g, 1 - b1); v = b2*v + (1 - b2)*g*g; vmax = max(vmax, v) (amsgrad);
    p += (-lr/(1 - b1^t) * m) / (sqrt(v or vmax)/sqrt(1 - b2^t) + eps)."""
    o = _PURE if out is None else out
    lr, b1, b2, eps, wd = hyper["lr"], hyper["b1"], hyper["b2"], hyper["eps"], hyper["weight_decay"]
    m, v = slots[0], slots[1]
    if wd != 0:
        if hyper["decoupled"]:
            p = np.multiply(p, 1 - lr * wd, out=o.param)
        else:
            g = np.add(g, np.multiply(p, wd, out=o.tmp), out=o.tmp)
    m = _lerp(m, g, 1 - b1, o.exp_avg, o.tmp2)
    v = np.multiply(v, b2, out=o.exp_avg_sq)
    v = np.add(v, np.multiply(np.multiply(g, 1 - b2, out=o.tmp2), g, out=o.tmp2), out=o.exp_avg_sq)
    bias_correction1 = 1 - b1 ** step
    bias_correction2 = 1 - b2 ** step
    step_size = lr / bias_correction1
    bias_correction2_sqrt = bias_correction2 ** 0.5
    new: tuple = (m, v)
    second = v
    if hyper["amsgrad"]:
        second = np.maximum(slots[2], v, out=o.max_exp_avg_sq)
        new = (m, v, second)
    denom = np.divide(np.sqrt(second, out=o.tmp2), bias_correction2_sqrt, out=o.tmp2)
    denom = np.add(denom, eps, out=o.tmp2)
    p = np.add(p, np.divide(np.multiply(m, -step_size, out=o.tmp), denom, out=o.tmp), out=o.param)
    return (p, *new)


def _rmsprop_slots(h: dict) -> tuple[str, ...]:
    return (("square_avg",) + (("momentum_buffer",) if h["momentum"] > 0 else ())
            + (("grad_avg",) if h["centered"] else ()))


def rmsprop_rule(p: Any, g: Any, *slots: Any, step: Any, hyper: dict, out: Into | None = None) -> tuple:
    """One parameter's torch.optim.RMSprop step (single-tensor form):
    g += weight_decay*p; s = alpha*s + (1 - alpha)*g*g;
    centered: ga = lerp(ga, g, 1 - alpha), avg = sqrt(s - ga*ga) + eps; else avg = sqrt(s) + eps;
    momentum: b = momentum*b + g/avg, p += -lr*b; else p += (-lr*g)/avg."""
    o = _PURE if out is None else out
    lr, alpha, eps, mu, wd = hyper["lr"], hyper["alpha"], hyper["eps"], hyper["momentum"], hyper["weight_decay"]
    named = dict(zip(_rmsprop_slots(hyper), slots))
    if wd != 0:
        g = np.add(g, np.multiply(p, wd, out=o.tmp), out=o.tmp)
    s = np.multiply(named["square_avg"], alpha, out=o.square_avg)
    s = np.add(s, np.multiply(np.multiply(g, 1 - alpha, out=o.tmp2), g, out=o.tmp2), out=o.square_avg)
    new = {"square_avg": s}
    if hyper["centered"]:
        ga = new["grad_avg"] = _lerp(named["grad_avg"], g, 1 - alpha, o.grad_avg, o.tmp2)
        avg = np.sqrt(np.subtract(s, np.multiply(ga, ga, out=o.tmp2), out=o.tmp2), out=o.tmp2)
    else:
        avg = np.sqrt(s, out=o.tmp2)
    avg = np.add(avg, eps, out=o.tmp2)
    if mu > 0:
        buf = np.multiply(named["momentum_buffer"], mu, out=o.momentum_buffer)
        buf = new["momentum_buffer"] = np.add(buf, np.divide(g, avg, out=o.tmp2), out=o.momentum_buffer)
        p = np.add(p, np.multiply(buf, -lr, out=o.tmp2), out=o.param)
    else:
        p = np.add(p, np.divide(np.multiply(g, -lr, out=o.tmp), avg, out=o.tmp), out=o.param)
    return (p, *(new[k] for k in named))


# ------------------------------------------------------------------ checks


def _number(fn: str, name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise OptimizerError(f"graphc.optim.{fn}: {name} must be a number, not {describe(value)}")
    return float(value)


def _check(fn: str, name: str, value: Any, ok: bool, torch_says: str, rule: str) -> None:
    if not ok:
        raise OptimizerError(f"graphc.optim.{fn}: {torch_says}: {value!r} ({name} must be {rule})")


def _lr_argument(fn: str, lr: Any) -> Schedule:
    """A float lr (checked as torch checks it) as a constant schedule, or a schedule as given."""
    if callable(lr):
        return lr
    if isinstance(lr, (bool, np.bool_)) or not isinstance(lr, Real):
        raise OptimizerError(f"graphc.optim.{fn}: lr must be a number or a schedule (a function of the step "
                             f"count), not {describe(lr)}")
    value = float(lr)
    _check(fn, "lr", lr, math.isfinite(value) and value >= 0, "Invalid learning rate", "a finite number >= 0")
    return constant(value)


# ------------------------------------------------------------------ the optimizer object


class Optimizer:
    """An optimizer (optax's convention): `init(params) -> state`, `update(grads, state, params)`
    -> (new params, new state) eagerly in NumPy, `apply(...)` the same as a pure function that
    also traces. `rule`, `slots` and `hyper(count)` describe one parameter's update for a
    compiled training step."""

    __slots__ = ("name", "rule", "lr", "options", "slots")

    def __init__(self, name: str, rule: Callable[..., tuple], lr: Schedule, options: dict[str, Any],
                 slots: tuple[str, ...]):
        self.name, self.rule, self.lr, self.options, self.slots = name, rule, lr, options, slots

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={v!r}" for k, v in self.options.items() if k != "decoupled")
        return f"graphc.optim.{self.name}(lr={getattr(self.lr, 'graphc_repr', self.lr)!r}, {shown})"

    def learning_rate(self, count: int) -> float:
        """The learning rate of the update after `count` updates (the schedule's value, checked)."""
        value = self.lr(count)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real) or not (
                math.isfinite(float(value)) and float(value) >= 0):
            raise OptimizerError(f"graphc.optim.{self.name}: the lr schedule gave {describe(value)} "
                                 f"({value!r}) at step {count}: a learning rate is a finite number >= 0")
        return float(value)

    def hyper(self, count: int) -> dict[str, Any]:
        """The rule's `hyper` for the update after `count` updates: the options and that step's lr."""
        return {**self.options, "lr": self.learning_rate(count)}

    def init(self, params: Any) -> dict[str, Any]:
        """{"step": 0, <slot>: zeros shaped as params, ...}: PyTorch's state, as a pytree."""
        leaves, paths, tree = flatten(params, "params")
        leaves = [_param_leaf(self.name, x, path) for x, path in zip(leaves, paths)]
        state: dict[str, Any] = {"step": 0}
        for slot in self.slots:
            state[slot] = unflatten(tree, [np.zeros_like(x) for x in leaves])
        return state

    def update(self, grads: Any, state: dict[str, Any], params: Any, *, donate: bool = False) -> tuple[Any, dict]:
        """One step in NumPy, in place where possible: (new params, new state). The caller's
        params and state are left as they were unless donate=True, which updates their arrays
        in place (and returns them); grads are never written."""
        count, p_leaves, p_paths, tree, g_leaves, slot_leaves = self._unpack(grads, state, params, eager=True)
        hyper = self.hyper(count)
        step = count + 1
        scratch: dict[np.dtype, np.ndarray] = {}
        biggest: dict[np.dtype, int] = {}
        for p in p_leaves:
            biggest[p.dtype] = max(biggest.get(p.dtype, 0), p.size)
        for dt, n in biggest.items():
            scratch[dt] = np.empty(2 * n, dtype=dt)
        results: list[tuple] = []
        for k, (p, g, path) in enumerate(zip(p_leaves, g_leaves, p_paths)):
            slots = [leaves[k] for leaves in slot_leaves]
            if donate:
                for name, x in (("params", p), *((f"state[{s!r}]", x) for s, x in zip(self.slots, slots))):
                    if not x.flags.writeable:
                        raise OptimizerError(f"graphc.optim.{self.name}.update: donate=True, but {name} leaf "
                                             f"{path.removeprefix('params_') or 'at the top'} is read-only")
                if any(np.may_share_memory(g, x) for x in (p, *slots)):
                    g = g.copy()  # grads that view a donated buffer would be overwritten while read
                outs = (p, *slots)
            else:
                outs = (np.empty_like(p), *(np.empty_like(x) for x in slots))
            flat = scratch[p.dtype]
            half = flat.size // 2
            into = Into(param=outs[0], tmp=flat[:p.size].reshape(p.shape),
                        tmp2=flat[half:half + p.size].reshape(p.shape), **dict(zip(self.slots, outs[1:])))
            result = self.rule(p, g, *slots, step=step, hyper=hyper, out=into)
            results.append(result)
        return self._assemble(tree, results, step)

    def apply(self, grads: Any, state: dict[str, Any], params: Any, lr: Any = None) -> tuple[Any, dict]:
        """One step as a pure function: (new params, new state), nothing written. Works on NumPy
        arrays and on graphc tracers (inside graphc.jit), where state["step"] and `lr` may be
        traced scalars; `lr` (a number or a traced scalar) overrides the schedule, which is
        otherwise evaluated at state["step"] (then a Python int)."""
        count, p_leaves, _, tree, g_leaves, slot_leaves = self._unpack(grads, state, params, eager=False)
        if lr is None and (isinstance(count, (bool, np.bool_)) or not isinstance(count, (int, np.integer))):
            raise OptimizerError(f"graphc.optim.{self.name}.apply: state['step'] is {describe(count)}, so the lr "
                                 "schedule cannot be evaluated here: pass lr= (a number or a traced scalar)")
        hyper = {**self.options, "lr": lr} if lr is not None else self.hyper(count)
        step = count + 1
        results: list[tuple] = []
        for k, (p, g) in enumerate(zip(p_leaves, g_leaves)):
            result = self.rule(p, g, *(leaves[k] for leaves in slot_leaves), step=step, hyper=hyper)
            results.append(result)
        return self._assemble(tree, results, step)

    def _assemble(self, tree: TreeDef, results: list[tuple], step: Any) -> tuple[Any, dict]:
        """(new params, new state) from each leaf's rule result (param, *slots)."""
        state: dict[str, Any] = {"step": step}
        for j, name in enumerate(self.slots):
            state[name] = unflatten(tree, [r[1 + j] for r in results])
        return unflatten(tree, [r[0] for r in results]), state

    def _unpack(self, grads: Any, state: Any, params: Any, eager: bool) -> tuple:
        """Checked leaves: (count, params, their paths, structure, grads, per slot its leaves)."""
        where = f"graphc.optim.{self.name}.{'update' if eager else 'apply'}"
        p_leaves, p_paths, tree = flatten(params, "params")
        g_leaves, _, g_tree = flatten(grads, "grads")
        if g_tree != tree:
            raise OptimizerError(f"{where}: grads do not have the structure of params: "
                                 f"{_difference(g_tree, tree, 'grads', 'params')}")
        if not isinstance(state, dict) or "step" not in state:
            raise OptimizerError(f"{where}: state must be the dict that init() or update() returned (with 'step'), "
                                 f"not {describe(state)}")
        missing = [s for s in self.slots if s not in state]
        extra = sorted(set(state) - {"step", *self.slots}, key=str)
        if missing or extra:
            raise OptimizerError(f"{where}: state has slots {sorted(set(state) - {'step'}, key=str)}, but "
                                 f"{self!r} keeps {list(self.slots)}: pass the state its init() made")
        count = state["step"]
        if eager:  # an int; a whole float too (a step that came back from a traced program)
            whole = (not isinstance(count, (bool, np.bool_)) and isinstance(count, (Real, np.ndarray))
                     and np.ndim(count) == 0 and float(count) >= 0 and float(count).is_integer())
            if not whole:
                raise OptimizerError(f"{where}: state['step'] must be a whole number >= 0 (the count of updates "
                                     f"taken), not {describe(count)} ({count!r})")
            count = int(count)
        slot_leaves = []
        for s in self.slots:
            leaves, _, s_tree = flatten(state[s], s)
            if s_tree != tree:
                raise OptimizerError(f"{where}: state[{s!r}] does not have the structure of params: "
                                     f"{_difference(s_tree, tree, f'state[{s!r}]', 'params')}")
            slot_leaves.append(leaves)
        grads_out = []
        for k, (p, g, path) in enumerate(zip(p_leaves, g_leaves, p_paths)):
            leaf = path.removeprefix("params_") or "at the top"
            if eager:
                p = p_leaves[k] = _param_leaf(self.name, p, path, where)
                g = _grad_leaf(where, g, p, leaf)
                for s, leaves in zip(self.slots, slot_leaves):
                    x = leaves[k]
                    if p.shape == () and isinstance(x, (float, np.floating)):  # as a traced program returns it
                        x = leaves[k] = np.array(x, dtype=p.dtype)
                    if not (type(x) is np.ndarray and x.shape == p.shape and x.dtype == p.dtype):
                        raise OptimizerError(f"{where}: state[{s!r}] leaf {leaf} is {describe(x)} of shape "
                                             f"{getattr(x, 'shape', None)}; the parameter is {describe(p)} of "
                                             f"shape {p.shape}: pass the state its init() made")
            elif tuple(np.shape(g)) != tuple(np.shape(p)):
                raise ShapeError(f"{where}: grads leaf {leaf} has shape {tuple(np.shape(g))}, its parameter "
                                 f"{tuple(np.shape(p))}")
            grads_out.append(g)
        return count, p_leaves, p_paths, tree, grads_out, slot_leaves


def _param_leaf(name: str, x: Any, path: str, where: str | None = None) -> np.ndarray:
    """A parameter leaf: a float array as given, or a number (as graphc's traced programs return a 0-d
    result) as a 0-d float64 array."""
    if type(x) is np.ndarray and x.dtype.kind == "f":
        return x
    if isinstance(x, (float, int, np.floating, np.integer)) and not isinstance(x, (bool, np.bool_)):
        return np.array(x, dtype=np.float64)
    leaf = path.removeprefix("params_") or "at the top"
    raise OptimizerError(f"{where or f'graphc.optim.{name}.init'}: params leaf {leaf} is {describe(x)}: an "
                         "optimizer updates float NumPy arrays (or numbers)")


def _grad_leaf(where: str, g: Any, p: np.ndarray, leaf: str) -> np.ndarray:
    """A gradient leaf as an array of its parameter's dtype and shape (a float for a 0-d parameter, as
    graphc.value_and_grad returns it, is fine; a float64 gradient of a float32 parameter is rounded)."""
    if type(g) is not np.ndarray or g.dtype != p.dtype:
        try:
            a = np.asarray(g)
        except Exception:  # noqa: BLE001 -- whatever it is, it is not a gradient
            a = None
        if a is None or a.dtype.kind not in "fiu":
            raise OptimizerError(f"{where}: grads leaf {leaf} is {describe(g)}: gradients are float arrays")
        g = a.astype(p.dtype, copy=False)
    if g.shape != p.shape:
        raise ShapeError(f"{where}: grads leaf {leaf} has shape {g.shape}, its parameter {p.shape}")
    return g


def _difference(a: TreeDef, b: TreeDef, a_name: str, b_name: str, at: str = "") -> str:
    """Where two pytree structures first differ, in words."""
    here = at or "the top"
    kinds = {"leaf": "an array", "dict": "a dict", "list": "a list", "tuple": "a tuple", "none": "None"}
    if a.kind != b.kind:
        return f"at {here}, {a_name} has {kinds[a.kind]} where {b_name} has {kinds[b.kind]}"
    if a.kind == "dict" and a.keys != b.keys:
        only_a = [k for k in a.keys if k not in b.keys]
        only_b = [k for k in b.keys if k not in a.keys]
        parts = ([f"{a_name} has keys {only_a} that {b_name} lacks"] if only_a else []) + (
            [f"{b_name} has keys {only_b} that {a_name} lacks"] if only_b else [])
        return f"at {here}, " + " and ".join(parts)
    if len(a.children) != len(b.children):
        return f"at {here}, {a_name} has {len(a.children)} entries and {b_name} {len(b.children)}"
    labels = [repr(k) for k in a.keys] if a.kind == "dict" else [str(i) for i in range(len(a.children))]
    for label, x, y in zip(labels, a.children, b.children):
        if x != y:
            return _difference(x, y, a_name, b_name, f"{at}[{label}]")
    return "the same structure"  # not reached: the caller compared them


# ------------------------------------------------------------------ the optimizers


def sgd(lr: float | Schedule, momentum: float = 0, dampening: float = 0, nesterov: bool = False,
        weight_decay: float = 0) -> Optimizer:
    """torch.optim.SGD's algorithm (stochastic gradient descent, optionally with momentum and
    Nesterov momentum, Sutskever et al. 2013, as PyTorch formulates them): with
    g_t = grad + weight_decay*theta; b_1 = g_1, b_t = momentum*b_{t-1} + (1 - dampening)*g_t;
    g_t <- g_t + momentum*b_t (nesterov) or b_t; theta_t = theta_{t-1} - lr*g_t.
    State slot: momentum_buffer (when momentum != 0). Arguments are checked as torch checks them."""
    schedule = _lr_argument("sgd", lr)
    momentum = _number("sgd", "momentum", momentum)
    dampening = _number("sgd", "dampening", dampening)
    weight_decay = _number("sgd", "weight_decay", weight_decay)
    _check("sgd", "momentum", momentum, momentum >= 0, "Invalid momentum value", ">= 0")
    _check("sgd", "weight_decay", weight_decay, weight_decay >= 0, "Invalid weight_decay value", ">= 0")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise OptimizerError("graphc.optim.sgd: Nesterov momentum requires a momentum and zero dampening "
                             f"(nesterov=True with momentum={momentum!r}, dampening={dampening!r})")
    options = {"momentum": momentum, "dampening": dampening, "nesterov": bool(nesterov),
               "weight_decay": weight_decay}
    return Optimizer("sgd", sgd_rule, schedule, options, _sgd_slots(options))


def _adam_options(fn: str, b1: Any, b2: Any, eps: Any, weight_decay: Any, amsgrad: Any, decoupled: bool) -> dict:
    b1, b2 = _number(fn, "b1", b1), _number(fn, "b2", b2)
    eps, weight_decay = _number(fn, "eps", eps), _number(fn, "weight_decay", weight_decay)
    _check(fn, "eps", eps, eps >= 0, "Invalid epsilon value", ">= 0")
    _check(fn, "b1", b1, 0 <= b1 < 1, "Invalid beta parameter at index 0", "in [0, 1)")
    _check(fn, "b2", b2, 0 <= b2 < 1, "Invalid beta parameter at index 1", "in [0, 1)")
    _check(fn, "weight_decay", weight_decay, weight_decay >= 0, "Invalid weight_decay value", ">= 0")
    return {"b1": b1, "b2": b2, "eps": eps, "weight_decay": weight_decay, "amsgrad": bool(amsgrad),
            "decoupled": decoupled}


def adam(lr: float | Schedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
         weight_decay: float = 0, amsgrad: bool = False) -> Optimizer:
    """torch.optim.Adam's algorithm (Kingma & Ba 2014; AMSGrad, Reddi et al. 2018, with
    amsgrad=True): g_t = grad + weight_decay*theta; m_t = b1*m + (1 - b1)*g_t;
    v_t = b2*v + (1 - b2)*g_t^2; vmax_t = max(vmax, v_t) (amsgrad);
    theta_t = theta_{t-1} - lr * m_t/(1 - b1^t) / (sqrt(v_t or vmax_t)/sqrt(1 - b2^t) + eps).
    State slots: exp_avg, exp_avg_sq (and max_exp_avg_sq with amsgrad); betas are b1, b2."""
    schedule = _lr_argument("adam", lr)
    options = _adam_options("adam", b1, b2, eps, weight_decay, amsgrad, decoupled=False)
    return Optimizer("adam", adam_rule, schedule, options, _adam_slots(options))


def adamw(lr: float | Schedule = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          weight_decay: float = 1e-2, amsgrad: bool = False) -> Optimizer:
    """torch.optim.AdamW's algorithm (decoupled weight decay, Loshchilov & Hutter 2019):
    theta <- theta*(1 - lr*weight_decay) first, then Adam's step without weight decay in the
    gradient (amsgrad as in Adam). State slots as Adam's."""
    schedule = _lr_argument("adamw", lr)
    options = _adam_options("adamw", b1, b2, eps, weight_decay, amsgrad, decoupled=True)
    return Optimizer("adamw", adam_rule, schedule, options, _adam_slots(options))


def rmsprop(lr: float | Schedule = 1e-2, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0,
            centered: bool = False, weight_decay: float = 0) -> Optimizer:
    """torch.optim.RMSprop's algorithm (Hinton's RMSprop; centred as in Graves 2013):
    g_t = grad + weight_decay*theta; v_t = alpha*v + (1 - alpha)*g_t^2;
    centered: ga_t = alpha*ga + (1 - alpha)*g_t, d = sqrt(v_t - ga_t^2) + eps; else d = sqrt(v_t) + eps;
    momentum > 0: b_t = momentum*b + g_t/d, theta_t = theta - lr*b_t; else theta_t = theta - lr*g_t/d.
    (eps is added outside the square root, as PyTorch does.) State slots: square_avg, and
    momentum_buffer (momentum > 0), grad_avg (centered)."""
    schedule = _lr_argument("rmsprop", lr)
    alpha, eps = _number("rmsprop", "alpha", alpha), _number("rmsprop", "eps", eps)
    momentum, weight_decay = _number("rmsprop", "momentum", momentum), _number("rmsprop", "weight_decay", weight_decay)
    _check("rmsprop", "eps", eps, eps >= 0, "Invalid epsilon value", ">= 0")
    _check("rmsprop", "momentum", momentum, momentum >= 0, "Invalid momentum value", ">= 0")
    _check("rmsprop", "weight_decay", weight_decay, weight_decay >= 0, "Invalid weight_decay value", ">= 0")
    _check("rmsprop", "alpha", alpha, alpha >= 0, "Invalid alpha value", ">= 0")
    options = {"alpha": alpha, "eps": eps, "momentum": momentum, "centered": bool(centered),
               "weight_decay": weight_decay}
    return Optimizer("rmsprop", rmsprop_rule, schedule, options, _rmsprop_slots(options))


# ------------------------------------------------------------------ schedules


def _schedule(f: Schedule, shown: str) -> Schedule:
    f.graphc_repr = _Shown(shown)  # type: ignore[attr-defined]
    f.__qualname__ = f.__name__ = shown.split("(")[0]
    f.__doc__ = f"graphc.optim.{shown}: the learning rate after `step` updates."
    return f


class _Shown(str):
    def __repr__(self) -> str:
        return str(self)


def _step_count(fn: str, step: Any) -> int:
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)) or step < 0:
        raise OptimizerError(f"graphc.optim.{fn}: the step must be an int >= 0, not {describe(step)}")
    return int(step)


def _positive_steps(fn: str, steps: Any) -> int:
    if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise OptimizerError(f"graphc.optim.{fn}: steps must be an int >= 1, not {steps!r}")
    return int(steps)


def constant(lr: float) -> Schedule:
    """lr at every step."""
    value = _number("constant", "lr", lr)
    _check("constant", "lr", lr, math.isfinite(value) and value >= 0, "Invalid learning rate", "a finite number >= 0")

    def schedule(step: int) -> float:
        _step_count("constant", step)
        return value

    return _schedule(schedule, f"constant({value!r})")


def cosine(lr: float, steps: int, final: float = 0.0) -> Schedule:
    """torch.optim.lr_scheduler.CosineAnnealingLR's formula (T_max = steps, eta_min = final):
    final + (lr - final)*(1 + cos(pi*t/steps))/2 for t <= steps, and `final` after that (where
    torch's annealing would rise again: SGDR restarts are not what a decay schedule means)."""
    value, low = _number("cosine", "lr", lr), _number("cosine", "final", final)
    _check("cosine", "lr", lr, math.isfinite(value) and value >= 0, "Invalid learning rate", "a finite number >= 0")
    _check("cosine", "final", final, math.isfinite(low) and low >= 0, "Invalid learning rate", "a finite number >= 0")
    n = _positive_steps("cosine", steps)

    def schedule(step: int) -> float:
        t = min(_step_count("cosine", step), n)
        return low + (value - low) * (1 + math.cos(math.pi * t / n)) / 2

    return _schedule(schedule, f"cosine({value!r}, {n}, final={low!r})")


def warmup(lr: float, steps: int, then: Schedule | float | None = None) -> Schedule:
    """Linear warmup: lr*(t + 1)/steps for t < steps (torch.optim.lr_scheduler.LinearLR with
    start_factor=1/steps, total_iters=steps - 1: the first update already moves, the last
    warmup update uses lr), then `then(t - steps)` (a schedule, e.g. cosine(lr, n)), or lr
    when `then` is None (a number: that constant)."""
    value = _number("warmup", "lr", lr)
    _check("warmup", "lr", lr, math.isfinite(value) and value >= 0, "Invalid learning rate", "a finite number >= 0")
    n = _positive_steps("warmup", steps)
    if then is None:
        after: Schedule = constant(value)
    elif callable(then):
        after = then
    else:
        after = constant(_number("warmup", "then", then))

    def schedule(step: int) -> float:
        t = _step_count("warmup", step)
        return value * (t + 1) / n if t < n else after(t - n)

    return _schedule(schedule, f"warmup({value!r}, {n}, then={getattr(after, 'graphc_repr', after)!r})")


__all__ = ["sgd", "adam", "adamw", "rmsprop", "constant", "cosine", "warmup", "Optimizer", "OptimizerError", "Into",
           "sgd_rule", "adam_rule", "rmsprop_rule"]
