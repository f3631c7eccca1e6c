"""Compiling an expression to a vectorised numpy or torch function (Python source
with common subexpressions shared, executed once and cached)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Any

from ...errors import JoinError
from .expr import _CMP_SYMBOL, Expr


def _codegen(e: Expr, arity: int, backend: str) -> str:
    """Python source of `def f(x0, ..., *, variables)` with common subexpressions shared."""
    lines: list[str] = []
    names: dict[Expr, str] = {}
    torch_ = backend != "numpy"

    def emit(x: Expr) -> str:
        if x in names:
            return names[x]
        op = x.op
        if op == "const":
            v = float(x.value)
            return repr(v) if math.isfinite(v) else f"float({str(v)!r})"
        if op == "hole":
            return f"x{x.value}"
        if op == "var":
            return f"v[{x.value!r}]"
        a = [emit(y) for y in x.args]
        # A part without holes (constants and run-time variables only) is computed on numpy
        # float64 scalars, so that it follows numpy's rules (1/0 is inf, not ZeroDivisionError);
        # torch functions want tensors, so for torch that part becomes a Python float.
        scalar = not x.holes()
        lib = "torch" if torch_ and not scalar else "np"
        if scalar:
            a = [f"np.float64({s})" for s in a]
        if op == "add":
            s = f"{a[0]} + {a[1]}"
        elif op == "mul":
            s = f"{a[0]} * {a[1]}"
        elif op == "div":
            s = f"{a[0]} / {a[1]}"
        elif op == "neg":
            s = f"-{a[0]}"
        elif op == "pow":
            s = _pow_source(a[0], x.args[1], a[1], lib)
        elif op in ("exp", "log"):
            s = f"{lib}.{op}({a[0]})"
        elif op in ("max", "min"):
            s = _minmax_source(op, x.args, a, lib)
        elif op == "select":
            cond = f"({a[0]} {_CMP_SYMBOL[x.value]} {a[1]})"
            ref = a[0] if x.args[0].holes() else a[1]
            if lib == "torch" and not (x.args[0].holes() or x.args[1].holes()):
                s = f"({a[2]} if {cond} else {a[3]})"  # a Python bool picks a branch
            elif lib == "torch" and not (x.args[2].holes() or x.args[3].holes()):
                # two Python floats would make a default-dtype (float32) tensor
                s = f"torch.where({cond}, torch.full_like({ref}, {a[2]}), {a[3]})"
            else:
                s = f"{lib}.where({cond}, {a[2]}, {a[3]})"
        else:  # pragma: no cover - the Expr constructors only make the ops above
            raise JoinError(f"cannot compile op {op!r}")
        if torch_ and scalar:
            s = f"float({s})"
        name = f"t{len(lines)}"
        lines.append(f"    {name} = {s}")
        names[x] = name
        return name

    result = emit(e)
    params = ", ".join(f"x{i}" for i in range(arity))
    head = f"def f({params}{', ' if params else ''}v):"
    return "\n".join([head, *lines, f"    return {result}"])


def _pow_source(base: str, exponent: Expr, exp_src: str, lib: str) -> str:
    if exponent.is_const:
        p = exponent.value
        if p == 2:
            return f"{base} * {base}"
        if p == 0.5:
            return f"{lib}.sqrt({base})"
        if p == -1:
            return f"1.0 / {base}"
        if p == -0.5:
            return f"1.0 / {lib}.sqrt({base})"
        return f"{base} ** {float(p)!r}"
    return f"{lib}.pow({base}, {exp_src})" if lib == "torch" else f"np.power({base}, {exp_src})"


def _minmax_source(op: str, args: tuple[Expr, ...], a: list[str], lib: str) -> str:
    full = "maximum" if op == "max" else "minimum"
    if lib == "torch":
        # torch.maximum wants two tensors; a side without holes (a float) becomes a clamp.
        if not args[1].holes():
            return f"torch.clamp({a[0]}, {'min' if op == 'max' else 'max'}={a[1]})"
        if not args[0].holes():
            return f"torch.clamp({a[1]}, {'min' if op == 'max' else 'max'}={a[0]})"
    return f"{lib}.{full}({a[0]}, {a[1]})"


@cache
def compile_numpy(e: Expr, arity: int) -> Callable[..., Any]:
    """A vectorised numpy function `f(*arrays, v={name: value})` computing `e` elementwise.

    The result may be a 0-d value or have a wider dtype than the inputs; callers broadcast and
    cast it to the node's shape and dtype.
    """
    import numpy as np

    ns: dict[str, Any] = {"np": np}
    exec(_codegen(e, arity, "numpy"), ns)
    return ns["f"]


@cache
def compile_torch(e: Expr, arity: int) -> Callable[..., Any]:
    """The torch twin of `compile_numpy` (inputs are tensors on one device)."""
    import numpy as np
    import torch

    ns: dict[str, Any] = {"torch": torch, "np": np}
    exec(_codegen(e, arity, "torch"), ns)
    return ns["f"]


def source(e: Expr, arity: int, backend: str = "numpy") -> str:
    """The generated kernel source, for debugging and `explain()`."""
    return _codegen(e, arity, backend)
