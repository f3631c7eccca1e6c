"""The array operations a block backend provides, and numpy's.

The block executor (`taskgraph.execute`) writes each task kind once in terms of these few
operations; numpy blocks (`NumpyOps`) and torch tensors in arenas (`torch_dense.TorchOps`) each
implement them. Every operation takes an optional `out`: an engine that keeps blocks in arenas
passes the view the plan reserved, and the result is written there; without it the operation
returns a fresh array (or, for a reshape or an input block, a view where that is safe).

Precision: float32 and float64 compute in their own dtype; float16 and bfloat16 compute in
float32 and round once into the result (an accumulation into a low-precision block rounds at
every step, since the block is the accumulator).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from ..ir import scalar as S
from ..ir.einsum import Einsum
from ..ir.graph import Fill
from .dense import einsum, fill
from .dtypes import AGG_UFUNC, compute_dtype, finish, storage_dtype

Array = Any  # a numpy array or a torch tensor, by backend


class BlockOps(Protocol):
    """What a backend does with blocks (see the module docstring for `out`)."""

    def empty(self, shape: Sequence[int], dtype: str) -> Array: ...

    def window(self, a: Array, offset: Sequence[int], size: Sequence[int]) -> Array: ...

    def copy(self, out: Array | None, src: Array, shape: Sequence[int], dtype: str) -> Array: ...

    def view_as(self, a: Array, shape: Sequence[int]) -> Array:
        """`a` with another shape of the same size (a view where the layout allows)."""
        ...

    def take(
        self,
        whole: np.ndarray,
        offset: Sequence[int],
        shape: Sequence[int],
        dtype: str,
        out: Array | None,
    ) -> Array: ...

    def fill(
        self,
        f: Fill,
        shape: Sequence[int],
        dtype: str,
        offset: Sequence[int],
        out: Array | None,
    ) -> Array: ...

    def einsum(
        self,
        op: Einsum,
        args: Sequence[Array],
        variables: Mapping[str, float],
        dtype: str,
        out: Array | None,
    ) -> Array: ...

    def aggregate(self, agg: str, args: Sequence[Array], dtype: str, out: Array | None) -> Array:
        """All partials of one block combined (computed unrounded, rounded once)."""
        ...

    def accumulate(self, agg: str, acc: Array, x: Array, dtype: str) -> None:
        """acc <- acc AGG x in place (a low-precision accumulator is rounded each time)."""
        ...


def _slices(offset: Sequence[int], size: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(o, o + s) for o, s in zip(offset, size))


@functools.lru_cache(maxsize=4096)
def _swapped(op: Einsum) -> Einsum | None:
    """For a plain two-operand contraction whose batched GEMM would come out transposed
    (`dense.contract2` keeps the operand order), the same contraction with its operands
    swapped, whose GEMM result is already in output order; else None."""
    if op.arity != 2 or op.agg != "sum" or not S.is_product_of_holes(op.join, 2):
        return None
    la, lb = op.inputs
    out = op.output
    if len(set(la)) != len(la) or len(set(lb)) != len(lb) or not set(out) <= set(la) | set(lb):
        return None
    batch = "".join(c for c in out if c in la and c in lb)
    left = "".join(c for c in out if c in la and c not in lb)
    right = "".join(c for c in out if c in lb and c not in la)
    if batch + left + right == out or batch + right + left != out:
        return None
    return Einsum((lb, la), out, op.sizes, op.join, op.agg)


class NumpyOps:
    """Blocks as numpy arrays of their storage dtype."""

    name = "numpy"

    def empty(self, shape: Sequence[int], dtype: str) -> np.ndarray:
        return np.empty(tuple(shape), dtype=storage_dtype(dtype))

    def window(self, a: np.ndarray, offset: Sequence[int], size: Sequence[int]) -> np.ndarray:
        return a[_slices(offset, size)]

    def copy(
        self, out: np.ndarray | None, src: np.ndarray, shape: Sequence[int], dtype: str
    ) -> np.ndarray:
        if out is None:
            return np.array(src, dtype=storage_dtype(dtype), order="C").reshape(tuple(shape))
        np.copyto(out, np.reshape(src, out.shape), casting="unsafe")
        return out

    def view_as(self, a: np.ndarray, shape: Sequence[int]) -> np.ndarray:
        return np.asarray(a, order="C").reshape(tuple(shape))

    def take(
        self,
        whole: np.ndarray,
        offset: Sequence[int],
        shape: Sequence[int],
        dtype: str,
        out: np.ndarray | None,
    ) -> np.ndarray:
        part = whole[_slices(offset, shape)]
        if out is None:  # a view of the caller's array (strided too: kernels read strided
            return part  # operands, BLAS with its leading dimension): never written
        np.copyto(out, part, casting="unsafe")
        return out

    def fill(
        self,
        f: Fill,
        shape: Sequence[int],
        dtype: str,
        offset: Sequence[int],
        out: np.ndarray | None,
    ) -> np.ndarray:
        value = fill(f, shape, dtype, offset)
        if out is None:
            return value
        np.copyto(out, value)
        return out

    def einsum(
        self,
        op: Einsum,
        args: Sequence[np.ndarray],
        variables: Mapping[str, float],
        dtype: str,
        out: np.ndarray | None,
    ) -> np.ndarray:
        if out is not None:
            swapped = _swapped(op)
            if swapped is not None:  # the GEMM writes straight into the arena block
                return einsum(swapped, list(args)[::-1], variables, dtype, out=out)
        return einsum(op, args, variables, dtype, out=out)

    def aggregate(
        self, agg: str, args: Sequence[np.ndarray], dtype: str, out: np.ndarray | None
    ) -> np.ndarray:
        ufunc = AGG_UFUNC[agg]
        if out is not None and out.dtype == compute_dtype(dtype):
            np.copyto(out, args[0])
            for a in args[1:]:  # the arena block is the accumulator
                ufunc(out, a, out=out)
            return out
        acc = np.array(args[0], dtype=compute_dtype(dtype))
        for a in args[1:]:
            ufunc(acc, a, out=acc)
        res = finish(acc, dtype)
        if out is None:
            return res
        np.copyto(out, res)
        return out

    def accumulate(self, agg: str, acc: np.ndarray, x: np.ndarray, dtype: str) -> None:
        ufunc = AGG_UFUNC[agg]
        if acc.dtype == compute_dtype(dtype):
            ufunc(acc, x, out=acc)
        else:
            wide = ufunc(acc.astype(compute_dtype(dtype)), x)
            acc[...] = finish(wide, dtype)


NUMPY = NumpyOps()
