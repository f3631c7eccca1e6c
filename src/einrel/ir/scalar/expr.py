"""The scalar expression language: the `join` of an extended einsum.

An `Expr` is an immutable tree over a few primitives (constants, holes = the einsum's inputs,
named run-time variables, add, mul, neg, div, pow, exp, log, max, min and compare-and-select).
Everything else (sub, sqrt, relu, sigmoid, silu, tanh, gelu) is sugar that builds these trees.
A Python callable becomes an `Expr` by tracing it on `Sym` placeholders; an `Expr` prints,
simplifies, differentiates symbolically and compiles to vectorised numpy or torch functions.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from ...errors import JoinError

UNARY = ("neg", "exp", "log")


BINARY = ("add", "mul", "div", "pow", "max", "min")


COMPARES = ("lt", "le", "gt", "ge", "eq", "ne")


_CMP_SYMBOL = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}


@dataclass(frozen=True)
class Expr:
    """A node of a scalar expression; structural equality, so expressions are dict keys.

    `value` holds the constant (op "const"), the hole index ("hole"), the variable name ("var")
    or the comparison ("select": `args = (a, b, then, else)` means `then if a CMP b else else`).
    """

    op: str
    args: tuple[Expr, ...] = ()
    value: Any = None

    def __str__(self) -> str:
        return _format(self)

    def __repr__(self) -> str:
        return f"Expr({_format(self)})"

    @property
    def is_const(self) -> bool:
        return self.op == "const"

    def holes(self) -> frozenset[int]:
        return _holes(self)

    def variables(self) -> frozenset[str]:
        return _variables(self)


def const(value: float) -> Expr:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise JoinError(f"scalar constant must be a real number, got {value!r}")
    v = float(value)
    if v == 0 and math.copysign(1.0, v) < 0:  # -0.0 (x / -0.0 is -inf): kept as -(0), since
        return Expr("neg", (Expr("const", (), 0),))  # a constant -0.0 would equal 0
    return Expr("const", (), int(v) if v.is_integer() and abs(v) < 2**53 else v)


def hole(i: int) -> Expr:
    return Expr("hole", (), i)


def var(name: str) -> Expr:
    if not isinstance(name, str) or not name.isidentifier():
        raise JoinError(f"variable name must be an identifier, got {name!r}")
    return Expr("var", (), name)


ZERO, ONE = const(0), const(1)


def select(cmp: str, a: Expr, b: Expr, then: Expr, other: Expr) -> Expr:
    if cmp not in COMPARES:
        raise JoinError(f"unknown comparison {cmp!r}; expected one of {COMPARES}")
    return Expr("select", (a, b, then, other), cmp)


def add(a: Expr, b: Expr) -> Expr:
    return Expr("add", (a, b))


def mul(a: Expr, b: Expr) -> Expr:
    return Expr("mul", (a, b))


def sub(a: Expr, b: Expr) -> Expr:
    return Expr("add", (a, Expr("neg", (b,))))


def div(a: Expr, b: Expr) -> Expr:
    return Expr("div", (a, b))


def power(a: Expr, b: Expr) -> Expr:
    return Expr("pow", (a, b))


def exp(a: Expr) -> Expr:
    return Expr("exp", (a,))


def log(a: Expr) -> Expr:
    return Expr("log", (a,))


def sqrt(a: Expr) -> Expr:
    return Expr("pow", (a, const(0.5)))


def maximum(a: Expr, b: Expr) -> Expr:
    return Expr("max", (a, b))


def minimum(a: Expr, b: Expr) -> Expr:
    return Expr("min", (a, b))


def absolute(a: Expr) -> Expr:
    return maximum(a, Expr("neg", (a,)))


def relu(a: Expr) -> Expr:
    return maximum(a, ZERO)


def sigmoid(a: Expr) -> Expr:
    """1 / (1 + e^-x), written with e^-|x| so that neither branch overflows."""
    t = exp(Expr("neg", (absolute(a),)))
    return select("ge", a, ZERO, div(ONE, add(ONE, t)), div(t, add(ONE, t)))


def silu(a: Expr) -> Expr:
    return mul(a, sigmoid(a))


def tanh(a: Expr) -> Expr:
    """sign(x) (1 - e^-2|x|) / (1 + e^-2|x|): no overflow for any x."""
    t = exp(mul(const(-2), absolute(a)))
    mag = div(sub(ONE, t), add(ONE, t))
    return select("ge", a, ZERO, mag, Expr("neg", (mag,)))


def gelu(a: Expr) -> Expr:
    """The tanh approximation of GELU (as in GPT-2 and torch's approximate="tanh").

    The tanh argument uses x clamped to [-100, 100]: tanh is exactly +-1 there in float32 and
    float64 (its argument exceeds 3600), and the clamp keeps x**3 and its derivative 3x**2 from
    overflowing into inf * 0 = NaN for large |x|.
    """
    c = minimum(maximum(a, const(-100)), const(100))
    inner = mul(const(math.sqrt(2 / math.pi)), add(c, mul(const(0.044715), power(c, const(3)))))
    return mul(mul(const(0.5), a), add(ONE, tanh(inner)))


@cache
def _holes(e: Expr) -> frozenset[int]:
    if e.op == "hole":
        return frozenset([e.value])
    return frozenset().union(*(_holes(a) for a in e.args)) if e.args else frozenset()


@cache
def _variables(e: Expr) -> frozenset[str]:
    if e.op == "var":
        return frozenset([e.value])
    return frozenset().union(*(_variables(a) for a in e.args)) if e.args else frozenset()


def substitute(e: Expr, holes: Mapping[int, Expr]) -> Expr:
    """Replace hole i by `holes[i]` (composition of expressions); other holes stay."""
    memo: dict[Expr, Expr] = {}

    def go(x: Expr) -> Expr:
        if x in memo:
            return memo[x]
        if x.op == "hole":
            r = holes.get(x.value, x)
        elif not x.args:
            r = x
        else:
            r = Expr(x.op, tuple(go(a) for a in x.args), x.value)
        memo[x] = r
        return r

    return go(e)


def remap_holes(e: Expr, mapping: Mapping[int, int]) -> Expr:
    return substitute(e, {i: hole(j) for i, j in mapping.items()})


def is_product_of_holes(e: Expr, arity: int) -> bool:
    """True when `e` is exactly x0 * x1 * ... * x{arity-1}, each hole once (a plain contraction)."""
    c, factors = product_factors(e)
    return (
        c == 1
        and sorted(factors) == list(range(arity))
        and all(f == hole(i) for i, f in factors.items())
    )


def scaled_product(e: Expr) -> tuple[float, Expr | None, dict[int, Expr]] | None:
    """Split `e` as c * s * prod_i f_i(x_i) when it factors that way, else None: c a number,
    s the product of the factors that use run-time variables but no input (None when there are
    none), f_i the factors of input i.

    Factoring lets the reference and block kernels run an einsum with an arbitrary per-input
    map as a BLAS contraction: apply each f_i elementwise first, then contract, scaled by c * s
    (a learning rate times a gradient contraction stays one GEMM)."""
    factors: dict[int, list[Expr]] = {}
    scalars: list[Expr] = []
    coef = 1.0
    stack = [e]
    while stack:
        x = stack.pop()
        if x.op == "mul":
            stack.extend(x.args)
            continue
        if x.op == "neg":
            coef = -coef
            stack.append(x.args[0])
            continue
        if x.op == "const":
            coef *= x.value
            continue
        hs = x.holes()
        if not hs:  # constants and run-time variables only
            scalars.append(x)
            continue
        if len(hs) != 1 or x.variables():
            return None
        factors.setdefault(next(iter(hs)), []).append(x)
    out: dict[int, Expr] = {}
    for i, fs in factors.items():
        f = fs[0]
        for g in fs[1:]:
            f = mul(f, g)
        out[i] = f
    scale = None
    for x in scalars:
        scale = x if scale is None else mul(scale, x)
    return coef, scale, out


def product_factors(e: Expr) -> tuple[float, dict[int, Expr]]:
    """Split `e` as c * prod_i f_i(x_i) with c a number (see `scaled_product`), else return
    (nan, {})."""
    split = scaled_product(e)
    if split is None or split[1] is not None:
        return math.nan, {}
    return split[0], split[2]


_PREC = {"add": 1, "neg": 2, "mul": 3, "div": 3, "pow": 5}


def _format(e: Expr, parent: int = 0) -> str:
    op = e.op
    if op == "const":
        s = repr(e.value)
        return f"({s})" if e.value < 0 and parent else s
    if op == "hole":
        return f"x{e.value}"
    if op == "var":
        return f"${e.value}"
    if op == "select":
        a, b, t, f = (_format(y) for y in e.args)
        return f"where({a} {_CMP_SYMBOL[e.value]} {b}, {t}, {f})"
    if op in ("exp", "log"):
        return f"{op}({_format(e.args[0])})"
    if op in ("max", "min"):
        return f"{op}({_format(e.args[0])}, {_format(e.args[1])})"
    prec = _PREC[op]
    if op == "neg":
        s = f"-{_format(e.args[0], prec + 1)}"
    elif op == "add" and e.args[1].op == "neg":
        s = f"{_format(e.args[0], prec)} - {_format(e.args[1].args[0], prec + 1)}"
    elif op == "add" and e.args[1].is_const and e.args[1].value < 0:  # x + (-2) prints x - 2
        s = f"{_format(e.args[0], prec)} - {_format(const(-e.args[1].value))}"
    elif op == "pow" and e.args[1] == const(0.5):
        return f"sqrt({_format(e.args[0])})"
    else:
        sym = {"add": " + ", "mul": "*", "div": "/", "pow": "**"}[op]
        left = _format(e.args[0], prec + (op == "pow"))
        right = _format(e.args[1], prec + (op in ("div", "pow")))
        s = f"{left}{sym}{right}"
    return f"({s})" if prec < parent else s
