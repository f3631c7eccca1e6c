"""`er.concat`: tensors joined along an axis, a structural node (blocks are copied into
place, nothing is computed)."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ShapeError
from ..ir.graph import Concat, Node
from .tensor import Tensor, _axes, _dense


def concat(tensors: Sequence[Tensor], axis: int = 0) -> Tensor:
    """Tensors joined along `axis`; all other dims and the dtype must agree."""
    ts = [_dense(t, "concat") for t in tensors]
    if not ts:
        raise ShapeError("concat needs at least one tensor")
    if len(ts) == 1:
        return ts[0]
    ax = _axes(ts[0], axis, "concat")[0]
    for t in ts[1:]:
        if t.ndim != ts[0].ndim or any(
            a != b for d, (a, b) in enumerate(zip(t.shape, ts[0].shape)) if d != ax
        ):
            raise ShapeError(f"concat on axis {ax}: shapes {[t.shape for t in ts]} do not fit")
        if t.dtype != ts[0].dtype:
            raise ShapeError(f"concat: dtypes {[t.dtype for t in ts]} differ")
    shape = list(ts[0].shape)
    shape[ax] = sum(t.shape[ax] for t in ts)
    return Tensor(Node("concat", tuple(t.node for t in ts), tuple(shape), ts[0].dtype, Concat(ax)))
