"""Tracing: a Python callable becomes an `Expr` by running it on `Sym` placeholders,
whose arithmetic, comparisons and numpy ufuncs build the expression."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

from ...errors import JoinError
from .expr import (
    ONE,
    ZERO,
    Expr,
    absolute,
    add,
    const,
    div,
    exp,
    gelu,
    hole,
    log,
    maximum,
    minimum,
    mul,
    power,
    relu,
    select,
    sigmoid,
    silu,
    sqrt,
    sub,
    tanh,
)
from .rewrite import simplify


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
