"""Leaves of a model: named inputs, constant fills and run-time scalar variables.

They are the nodes with no operands; everything else is built from them by the
operators in `tensor`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import EinrelError, ShapeError
from ..ir import scalar as S
from ..ir.graph import Fill, Node, check_dtype, check_shape
from .tensor import Tensor


def input(name: str, shape: Sequence[int], dtype: str = "float32") -> Tensor:
    """A named graph input; feeds are matched by this name."""
    if not isinstance(name, str) or not name:
        raise EinrelError(f"input name must be a non-empty string, got {name!r}")
    where = f"input {name!r}"
    return Tensor(
        Node("input", (), check_shape(shape, where), check_dtype(dtype, where), None, name)
    )


def fill(shape: Sequence[int], value: float, dtype: str = "float32") -> Tensor:
    """A constant tensor of `shape` filled with `value` (made on each device that reads it)."""
    where = f"fill {value!r}"
    return Tensor(
        Node("fill", (), check_shape(shape, where), check_dtype(dtype, where), Fill(float(value)))
    )


def zeros(shape: Sequence[int], dtype: str = "float32") -> Tensor:
    """A tensor of zeros (a fill)."""
    return fill(shape, 0.0, dtype)


def ones(shape: Sequence[int], dtype: str = "float32") -> Tensor:
    """A tensor of ones (a fill)."""
    return fill(shape, 1.0, dtype)


def causal_mask(shape: Sequence[int], dtype: str = "float32") -> Tensor:
    """Additive causal mask: -inf strictly above the diagonal of the last two dims, else 0."""
    shape = check_shape(shape, "causal_mask")
    if len(shape) < 2:
        raise ShapeError(f"causal_mask needs at least 2 dims, got shape {shape}")
    return Tensor(
        Node("fill", (), shape, check_dtype(dtype, "causal_mask"), Fill(-math.inf, triu=True))
    )


def var(name: str) -> S.Sym:
    """A named run-time scalar (learning rate, step count): bound by the feeds at run time."""
    return S.Sym(S.var(name))
