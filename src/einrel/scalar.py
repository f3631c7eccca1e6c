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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from .errors import JoinError

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


# ---------------------------------------------------------------------------------------------
# Tracing: Python callables on symbolic scalars
# ---------------------------------------------------------------------------------------------


class Sym:
    """A symbolic scalar handed to join callables; arithmetic on it builds an `Expr`."""

    __slots__ = ("expr",)
    __array_priority__ = 1000

    def __init__(self, expr: Expr) -> None:
        self.expr = expr

    def __repr__(self) -> str:
        return f"Sym({self.expr})"

    def _bin(self, other: Any, fn: Callable[[Expr, Expr], Expr], swap: bool = False) -> Any:
        if getattr(other, "_einrel_tensor", False):
            return NotImplemented  # scalar (op) tensor: the Tensor's reflected operator builds it
        o = as_expr(other)
        return Sym(fn(o, self.expr) if swap else fn(self.expr, o))

    def __add__(self, o: Any) -> Sym:
        return self._bin(o, add)

    def __radd__(self, o: Any) -> Sym:
        return self._bin(o, add, True)

    def __sub__(self, o: Any) -> Sym:
        return self._bin(o, sub)

    def __rsub__(self, o: Any) -> Sym:
        return self._bin(o, sub, True)

    def __mul__(self, o: Any) -> Sym:
        return self._bin(o, mul)

    def __rmul__(self, o: Any) -> Sym:
        return self._bin(o, mul, True)

    def __truediv__(self, o: Any) -> Sym:
        return self._bin(o, div)

    def __rtruediv__(self, o: Any) -> Sym:
        return self._bin(o, div, True)

    def __pow__(self, o: Any) -> Sym:
        return self._bin(o, power)

    def __rpow__(self, o: Any) -> Sym:
        return self._bin(o, power, True)

    def __neg__(self) -> Sym:
        return Sym(Expr("neg", (self.expr,)))

    def __pos__(self) -> Sym:
        return self

    def __abs__(self) -> Sym:
        return Sym(absolute(self.expr))

    def _cmp(self, o: Any, cmp: str) -> Cond:
        return Cond(cmp, self.expr, as_expr(o))

    def __lt__(self, o: Any) -> Cond:
        return self._cmp(o, "lt")

    def __le__(self, o: Any) -> Cond:
        return self._cmp(o, "le")

    def __gt__(self, o: Any) -> Cond:
        return self._cmp(o, "gt")

    def __ge__(self, o: Any) -> Cond:
        return self._cmp(o, "ge")

    def __eq__(self, o: Any) -> Cond:  # type: ignore[override]
        return self._cmp(o, "eq")

    def __ne__(self, o: Any) -> Cond:  # type: ignore[override]
        return self._cmp(o, "ne")

    __hash__ = None  # type: ignore[assignment]

    def __bool__(self) -> bool:
        raise JoinError(
            "a join cannot branch on a symbolic value in Python (`if`, `and`, `or`, `max()`); "
            "use er.where(cond, a, b), er.maximum or er.minimum instead"
        )

    def __float__(self) -> float:
        raise JoinError(
            "a join used an operation outside einrel's scalar language (it asked for a float, "
            "as math.* functions do); use er.exp, er.log, er.sqrt, er.tanh, ... instead"
        )

    __int__ = __float__
    __index__ = __float__
    __complex__ = __float__

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        fn = _UFUNCS.get(ufunc.__name__)
        if method != "__call__" or fn is None or kwargs:
            raise JoinError(
                f"numpy.{ufunc.__name__} is not in einrel's scalar language; supported: "
                f"{sorted(_UFUNCS)}"
            )
        return fn(*(as_sym(x) for x in inputs))


class Cond:
    """A comparison `a CMP b`; use it in `where`, or as a number (1.0 if true, else 0.0)."""

    __slots__ = ("a", "b", "cmp")

    def __init__(self, cmp: str, a: Expr, b: Expr) -> None:
        self.cmp, self.a, self.b = cmp, a, b

    def as_expr(self) -> Expr:
        return select(self.cmp, self.a, self.b, ONE, ZERO)

    def __bool__(self) -> bool:
        raise JoinError(
            "a join cannot branch on a symbolic comparison (`if`, `and`, `or`, `max()`, "
            "`min()`); use er.where(cond, a, b), er.maximum or er.minimum instead"
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(Sym(self.as_expr()), name)

    def __mul__(self, o: Any) -> Sym:
        return Sym(self.as_expr()) * o

    def __rmul__(self, o: Any) -> Sym:
        return o * Sym(self.as_expr())

    def __add__(self, o: Any) -> Sym:
        return Sym(self.as_expr()) + o

    def __radd__(self, o: Any) -> Sym:
        return o + Sym(self.as_expr())

    def __sub__(self, o: Any) -> Sym:
        return Sym(self.as_expr()) - o

    def __rsub__(self, o: Any) -> Sym:
        return o - Sym(self.as_expr())

    def __truediv__(self, o: Any) -> Sym:
        return Sym(self.as_expr()) / o

    def __rtruediv__(self, o: Any) -> Sym:
        return o / Sym(self.as_expr())

    def __neg__(self) -> Sym:
        return -Sym(self.as_expr())


def as_expr(x: Any) -> Expr:
    if isinstance(x, Sym):
        return x.expr
    if isinstance(x, Cond):
        return x.as_expr()
    if isinstance(x, Expr):
        return x
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return const(float(x))
    if hasattr(x, "shape") and getattr(x, "shape", None) == () and hasattr(x, "item"):
        return const(float(x.item()))
    raise JoinError(
        f"a join combined a symbolic scalar with {type(x).__name__} {x!r}; only numbers, "
        "symbolic scalars and er.var(...) run-time variables are allowed"
    )


def as_sym(x: Any) -> Sym:
    return x if isinstance(x, Sym) else Sym(as_expr(x))


def where(cond: Cond, then: Any, other: Any) -> Sym:
    """Compare-and-select on symbolic scalars."""
    if not isinstance(cond, Cond):
        raise JoinError(f"where() needs a comparison of symbolic scalars, got {cond!r}")
    return Sym(select(cond.cmp, cond.a, cond.b, as_expr(then), as_expr(other)))


def _lift1(fn: Callable[[Expr], Expr]) -> Callable[[Any], Sym]:
    return lambda x: Sym(fn(as_expr(x)))


def _lift2(fn: Callable[[Expr, Expr], Expr]) -> Callable[[Any, Any], Sym]:
    return lambda x, y: Sym(fn(as_expr(x), as_expr(y)))


# Functions on symbolic scalars, also reachable through numpy's ufuncs.
SYM_FUNCS: dict[str, Callable[..., Sym]] = {
    "exp": _lift1(exp),
    "log": _lift1(log),
    "sqrt": _lift1(sqrt),
    "abs": _lift1(absolute),
    "relu": _lift1(relu),
    "sigmoid": _lift1(sigmoid),
    "silu": _lift1(silu),
    "tanh": _lift1(tanh),
    "gelu": _lift1(gelu),
    "maximum": _lift2(maximum),
    "minimum": _lift2(minimum),
}
_UFUNCS: dict[str, Callable[..., Sym]] = {
    "exp": SYM_FUNCS["exp"],
    "log": SYM_FUNCS["log"],
    "sqrt": SYM_FUNCS["sqrt"],
    "absolute": SYM_FUNCS["abs"],
    "tanh": SYM_FUNCS["tanh"],
    "maximum": SYM_FUNCS["maximum"],
    "minimum": SYM_FUNCS["minimum"],
    "add": lambda a, b: a + b,
    "subtract": lambda a, b: a - b,
    "multiply": lambda a, b: a * b,
    "true_divide": lambda a, b: a / b,
    "divide": lambda a, b: a / b,
    "power": lambda a, b: a**b,
    "negative": lambda a: -a,
    "square": lambda a: a * a,
    "reciprocal": lambda a: 1 / a,
}


def trace(fn: Callable[..., Any], arity: int, where_: str = "join") -> Expr:
    """Call `fn` on `arity` symbolic inputs and return the simplified expression it built."""
    import inspect

    try:
        sig = inspect.signature(fn)
        sig.bind(*range(arity))
    except TypeError as e:
        raise JoinError(
            f"{where_}: the callable takes the wrong number of inputs for {arity} operand(s): {e}"
        ) from None
    except ValueError:  # builtins without a signature: let the call decide
        pass
    try:
        out = fn(*(Sym(hole(i)) for i in range(arity)))
    except JoinError as e:
        raise JoinError(f"{where_}: {e}") from None
    except Exception as e:  # anything the callable did that symbolic scalars cannot do
        raise JoinError(
            f"{where_}: tracing the callable on symbolic scalars failed with "
            f"{type(e).__name__}: {e}; a join may only use arithmetic, comparisons with "
            "er.where, and einrel's scalar functions"
        ) from None
    try:
        return simplify(as_expr(out))
    except JoinError as e:
        raise JoinError(f"{where_}: the callable returned {out!r}: {e}") from None


# ---------------------------------------------------------------------------------------------
# Structure: holes, variables, substitution
# ---------------------------------------------------------------------------------------------


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


def product_factors(e: Expr) -> tuple[float, dict[int, Expr]]:
    """Split `e` as c * prod_i f_i(x_i) when it factors that way, else return (nan, {}).

    Factoring lets the reference and block kernels run an einsum with an arbitrary per-input
    map as a BLAS contraction: apply each f_i elementwise first, then contract.
    """
    factors: dict[int, list[Expr]] = {}
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
        if len(hs) != 1 or x.variables():
            return math.nan, {}
        factors.setdefault(next(iter(hs)), []).append(x)
    out: dict[int, Expr] = {}
    for i, fs in factors.items():
        f = fs[0]
        for g in fs[1:]:
            f = mul(f, g)
        out[i] = f
    return coef, out


# ---------------------------------------------------------------------------------------------
# Simplification
# ---------------------------------------------------------------------------------------------


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
            return const(_FOLD[op](*(a.value for a in args)))
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


# ---------------------------------------------------------------------------------------------
# Symbolic derivative
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------------------------

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


# ---------------------------------------------------------------------------------------------
# Compilation to vectorised numpy / torch functions
# ---------------------------------------------------------------------------------------------


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
