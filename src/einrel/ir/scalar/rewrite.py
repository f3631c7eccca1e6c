"""Rewriting expressions: simplification that keeps every IEEE value, and symbolic
derivatives."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Any

from ...errors import JoinError
from .expr import ONE, ZERO, Expr, add, const, div, log, mul, power, select, sub


def _nan_or(fn: Callable[[float, float], float]) -> Callable[[float, float], float]:
    """numpy's maximum/minimum: a NaN on either side wins (Python's max/min drop it)."""
    return lambda a, b: a if a != a else b if b != b else fn(a, b)


def _exp(a: float) -> float:
    try:
        return math.exp(a)
    except OverflowError:
        return math.inf


def _div(a: float, b: float) -> float:
    if b != 0:
        return a / b
    return math.nan if a == 0 or a != a else math.copysign(math.inf, a) * math.copysign(1, b)


_FOLD: dict[str, Callable[..., float]] = {
    "neg": lambda a: -a,
    "exp": _exp,
    "log": lambda a: math.log(a) if a > 0 else (-math.inf if a == 0 else math.nan),
    "add": lambda a, b: a + b,
    "mul": lambda a, b: a * b,
    "div": _div,
    "pow": lambda a, b: _real(a**b),
    "max": _nan_or(max),
    "min": _nan_or(min),
}


def _real(x: Any) -> float:
    if isinstance(x, complex):  # (-8) ** (1/3): numpy gives nan; leave it unfolded
        raise ValueError("complex power")
    return x


_CMP_FN: dict[str, Callable[[float, float], bool]] = {
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
}


def simplify(e: Expr) -> Expr:
    """Constant folding and the identity rules that hold for every IEEE value, NaN and inf
    included (x*1, x/1, x**1, x**0, --x, x*(-1), (-x)*(-y), x+x, max(x, x), ...), bottom-up.

    Rules that would change a NaN or an infinity are not applied: x*0 and 0/x stay (NaN and inf
    inputs give NaN, as in numpy), x+0 stays (-0 + 0 is +0), constants are not reassociated
    (c1*(c2*x) may overflow where (c1 c2)*x does not), and (x**a)**b becomes x**(ab) only for
    integer a and b ((x**0.5)**2 is NaN for x < 0, x**1 is not). Derivatives drop the terms of
    inputs an expression does not depend on when they are built (`derivative`), not here.
    """
    return _simplify(e)


def _is_int_const(e: Expr) -> bool:
    return e.is_const and math.isfinite(e.value) and float(e.value).is_integer()


@cache
def _simplify(e: Expr) -> Expr:
    if not e.args:
        return e
    args = tuple(_simplify(a) for a in e.args)
    op = e.op
    if op == "select":
        a, b, t, f = args
        if a.is_const and b.is_const:
            return t if _CMP_FN[e.value](a.value, b.value) else f
        if t == f:
            return t
        return Expr(op, args, e.value)
    if all(a.is_const for a in args):
        try:
            return const(_FOLD[op](*(float(a.value) for a in args)))
        except (OverflowError, ZeroDivisionError, ValueError):
            pass
    if op == "neg":
        (a,) = args
        if a.op == "neg":
            return a.args[0]
    elif op == "add":
        a, b = args
        if a.is_const:  # constants go right: x + c
            return Expr("add", (b, a))
        if a == b:
            return _simplify(mul(const(2), a))
    elif op == "mul":
        a, b = args
        if a == ONE:
            return b
        if b == ONE:
            return a
        if b.is_const and b.value == -1:
            return _simplify(Expr("neg", (a,)))
        if b.is_const:  # constants go left: c * x
            return _simplify(Expr("mul", (b, a)))
        if a.is_const and a.value == -1:
            return _simplify(Expr("neg", (b,)))
        if a.op == "neg" and b.op == "neg":
            return _simplify(mul(a.args[0], b.args[0]))
    elif op == "div":
        a, b = args
        if b == ONE:
            return a
    elif op == "pow":
        a, b = args
        if b == ONE:
            return a
        if b == ZERO:
            return ONE
        if a.op == "pow" and _is_int_const(a.args[1]) and _is_int_const(b):
            return _simplify(power(a.args[0], const(a.args[1].value * b.value)))
    elif op in ("max", "min") and args[0] == args[1]:
        return args[0]
    return Expr(op, args, e.value)


def derivative(e: Expr, i: int) -> Expr:
    """d e / d x_i, simplified. Comparisons are piecewise constant; max/min pick a side (>=)."""
    memo: dict[Expr, Expr] = {}

    def d(x: Expr) -> Expr:
        if x in memo:
            return memo[x]
        if i not in x.holes():
            r = ZERO
        elif x.op == "hole":
            r = ONE
        else:
            r = _rule(x, d)
        memo[x] = r
        return r

    return simplify(d(e))


# Builders for derivative terms: ZERO here is the derivative of a part that does not depend on
# the input (a structural zero, as an absent edge in reverse-mode autodiff), so the terms it
# multiplies are dropped instead of computed as 0 * y (NaN for an infinite y).
def _dmul(a: Expr, b: Expr) -> Expr:
    return ZERO if ZERO in (a, b) else mul(a, b)


def _dadd(a: Expr, b: Expr) -> Expr:
    return b if a == ZERO else a if b == ZERO else add(a, b)


def _dneg(a: Expr) -> Expr:
    return ZERO if a == ZERO else Expr("neg", (a,))


def _ddiv(a: Expr, b: Expr) -> Expr:
    return ZERO if a == ZERO else div(a, b)


def _rule(x: Expr, d: Callable[[Expr], Expr]) -> Expr:
    op, args = x.op, x.args
    if op == "neg":
        return _dneg(d(args[0]))
    if op == "exp":
        return _dmul(x, d(args[0]))
    if op == "log":
        return _ddiv(d(args[0]), args[0])
    a = args[0]
    if op == "select":
        return select(x.value, args[0], args[1], d(args[2]), d(args[3]))
    b = args[1]
    if op == "add":
        return _dadd(d(a), d(b))
    if op == "mul":
        return _dadd(_dmul(d(a), b), _dmul(a, d(b)))
    if op == "div":
        da, db = d(a), d(b)
        if db == ZERO:
            return _ddiv(da, b)
        return div(_dadd(_dmul(da, b), _dneg(_dmul(a, db))), mul(b, b))
    if op == "pow":
        if not b.holes():
            return _dmul(_dmul(b, power(a, simplify(sub(b, ONE)))), d(a))
        return _dmul(x, _dadd(_dmul(d(b), log(a)), _ddiv(_dmul(b, d(a)), a)))
    if op in ("max", "min"):
        # At a tie the first side wins (so |x| = max(x, -x), and the sigmoid and tanh built on
        # it, have the right derivative at 0), except against a constant side: relu's kink
        # gets 0, as in torch.
        cmp = "ge" if op == "max" else "le"
        if not b.holes():
            cmp = "gt" if op == "max" else "lt"
        return select(cmp, a, b, d(a), d(b))
    raise JoinError(f"no derivative rule for {op!r}")
