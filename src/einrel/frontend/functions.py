"""Elementwise functions of tensors, and of symbolic scalars inside a join."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..ir import scalar as S
from .tensor import Operand, Tensor, elementwise


def maximum(a: Operand, b: Operand) -> Any:
    """The elementwise maximum of `a` and `b` (numbers broadcast); ties split the gradient."""
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        return S.SYM_FUNCS["maximum"](a, b)
    return elementwise(S.SYM_FUNCS["maximum"], a, b, what="maximum")


def minimum(a: Operand, b: Operand) -> Any:
    """The elementwise minimum of `a` and `b` (numbers broadcast); ties split the gradient."""
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        return S.SYM_FUNCS["minimum"](a, b)
    return elementwise(S.SYM_FUNCS["minimum"], a, b, what="minimum")


def _unary(name: str) -> Callable[[Any], Any]:
    fn = S.SYM_FUNCS[name]

    def apply(x: Any) -> Any:
        if isinstance(x, Tensor):
            return elementwise(fn, x, what=name)
        return fn(x)  # a symbolic scalar inside a join

    apply.__name__ = name
    apply.__doc__ = f"Elementwise {name} of a Tensor, or of a symbolic scalar inside a join."
    return apply


exp = _unary("exp")


log = _unary("log")


sqrt = _unary("sqrt")


abs_ = _unary("abs")


relu = _unary("relu")


sigmoid = _unary("sigmoid")


silu = _unary("silu")


tanh = _unary("tanh")


gelu = _unary("gelu")


where = S.where
