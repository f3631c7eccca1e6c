"""The block executor: what each task kind computes, written once for every backend.

`RULES` maps a task kind to its rule, as JAX keeps one rule per primitive. A rule gets a
backend's array operations (`kernels.ops.BlockOps`: numpy blocks or torch tensors), the task,
its argument blocks in `task.inputs` order, and `out`, the view an arena engine reserved for
the result (None: the rule returns a fresh block, or a safe view). The block interpreter, the
local engine, the memory interpreter, both arena backends and the Ray actors all execute tasks
through `execute`; a memory plan's grouped accumulations go through `touch`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import ExecutionError
from ..kernels import coo
from ..kernels.coo import Coo
from ..kernels.coo_slot import CooSlot
from ..kernels.dtypes import storage_dtype
from ..kernels.ops import Array, BlockOps
from ..kernels.sparse import sparse_einsum
from .ir import Task

Rule = Callable[
    [BlockOps, Task, Sequence[Array], Array | None, Mapping[int, np.ndarray], Mapping[str, float]],
    Array,
]


def _input(ops: BlockOps, t: Task, args: Any, out: Any, inputs: Any, variables: Any) -> Array:
    if t.support is not None:  # the feed's tuples in the box (cut once per feed: cached)
        return _held(ops, coo.block(inputs[t.node], (t.offset, t.shape), t.support.order), out)
    return ops.take(inputs[t.node], t.offset, t.shape, t.dtype, out)


def _held(ops: BlockOps, c: Coo, out: Any) -> Any:
    """A relation block, written into `out` (a `CooSlot`) when an arena engine reserved one."""
    return c if out is None else out.write(c)


def _fill(ops: BlockOps, t: Task, args: Any, out: Any, inputs: Any, variables: Any) -> Array:
    return ops.fill(t.op, t.shape, t.dtype, t.offset, out)


def _apply(ops: BlockOps, t: Task, args: Any, out: Any, inputs: Any, variables: Any) -> Array:
    return ops.einsum(t.op, args, variables, t.dtype, out)


def _agg(ops: BlockOps, t: Task, args: Any, out: Any, inputs: Any, variables: Any) -> Array:
    if t.support is not None:  # partials on one set of tuples: their values combine
        vals = ops.aggregate(t.op, [a.values for a in args], t.dtype, None)
        return _held(ops, args[0].with_values(vals), out)
    return ops.aggregate(t.op, args, t.dtype, out)


def _assemble(ops: BlockOps, t: Task, args: Any, out: Any, inputs: Any, variables: Any) -> Array:
    if t.support is not None:  # the tuples of each piece's box, in the block's order
        k = t.support.nkeys
        pieces = []
        for p in t.op:
            src = args[p.src]
            offs = tuple(o + s for o, s in zip(src.offsets, p.src_offset)) + p.src_offset[k:]
            pieces.append((coo.block(src, (offs, p.size), src.order), p.dst_offset[k:]))
        first, p0 = pieces[0][0], t.op[0]
        origin = tuple(o - d for o, d in zip(first.offsets, p0.dst_offset))
        return _held(ops, coo.assemble(pieces, t.shape, origin, t.support.order), out)
    out = ops.empty(t.shape, t.dtype) if out is None else out
    for p in t.op:
        src = ops.window(args[p.src], p.src_offset, p.size)
        ops.copy(ops.window(out, p.dst_offset, p.size), src, p.size, t.dtype)
    return out


def _reshape(ops: BlockOps, t: Task, args: Any, out: Any, inputs: Any, variables: Any) -> Array:
    if out is None:
        return ops.view_as(args[0], t.shape)
    return ops.copy(out, args[0], t.shape, t.dtype)


def _move(ops: BlockOps, t: Task, args: Any, out: Any, inputs: Any, variables: Any) -> Array:
    if t.support is not None:  # its indices, positions and values travel; the copy lists the
        a = args[0]  # same tuples, so it shares what was derived from them
        if out is not None:
            return out.write(a)
        pos = a.pos.copy() if isinstance(a.pos, np.ndarray) else a.pos
        c = Coo(a.indices.copy(), a.values.copy(), a.shape, False, pos, a.origin, a.order, a.cache)
        return _held(ops, c, out)
    return ops.copy(out, args[0], t.shape, t.dtype)


def _sparse(ops: BlockOps, t: Task, args: Any, out: Any, inputs: Any, variables: Any) -> Any:
    whole = isinstance(out, np.ndarray)  # a dense block, or a relation output's whole values
    res = sparse_einsum(t.op, args, variables, t.dtype, out if whole else None)
    if isinstance(res, Coo):
        return res if whole else _held(ops, res, out)
    return res if out is None or res is out else ops.copy(out, res, t.shape, t.dtype)


def _densify(ops: BlockOps, t: Task, args: Any, out: Any, inputs: Any, variables: Any) -> Any:
    dense = args[0].to_dense()
    return dense if out is None else ops.copy(out, dense, t.shape, t.dtype)


RULES: dict[str, Rule] = {
    "input": _input,
    "fill": _fill,
    "apply": _apply,
    "agg": _agg,
    "assemble": _assemble,
    "reshape": _reshape,
    "move": _move,
    "sparse": _sparse,
    "densify": _densify,
}


def execute(
    ops: BlockOps,
    t: Task,
    args: Sequence[Array],
    inputs: Mapping[int, np.ndarray],
    variables: Mapping[str, float],
    out: Array | None = None,
) -> Array:
    """Run task `t` on `args` with backend `ops`; returns its block (`out` when given)."""
    rule = RULES.get(t.kind)
    if rule is None:
        raise ExecutionError(f"no rule for task kind {t.kind!r}; known: {sorted(RULES)}")
    return rule(ops, t, args, out, inputs, variables)


def coo_slot(raw: np.ndarray, t: Task) -> CooSlot:
    """The bytes an arena holds for relation task `t`'s block, as that block's slot."""
    sup = t.support
    assert sup is not None
    index = np.dtype(np.int32 if sup.index_bytes == 4 else np.int64)
    dtype = storage_dtype(t.dtype)
    return CooSlot(raw, sup.capacity, index, t.shape, dtype, sup.order, sup.nkeys)


def touch(ops: BlockOps, t: Task, partial: Array, acc: Array, first: bool) -> None:
    """One grouped accumulation of aggregation task `t` into its block `acc`: the first of
    its group to run copies its partial, later ones combine theirs in (a relation block's
    values, in place: the partials list the same tuples)."""
    if t.support is not None:
        if first:
            acc.write(partial.read())
        else:
            ops.accumulate(t.op, acc.read().values, partial.read().values, t.dtype)
        return
    if first:
        ops.copy(acc, partial, t.shape, t.dtype)
    else:
        ops.accumulate(t.op, acc, partial, t.dtype)
