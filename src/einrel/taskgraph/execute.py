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
from ..kernels.coo import Coo
from ..kernels.ops import Array, BlockOps
from ..kernels.sparse import sparse_einsum
from .ir import Task

Rule = Callable[
    [BlockOps, Task, Sequence[Array], Array | None, Mapping[int, np.ndarray], Mapping[str, float]],
    Array,
]


def _input(ops: BlockOps, t: Task, args: Any, out: Any, inputs: Any, variables: Any) -> Array:
    if t.support is not None:  # a relation: its feed, whole (blocks are never written)
        return inputs[t.node]
    return ops.take(inputs[t.node], t.offset, t.shape, t.dtype, out)


def _fill(ops: BlockOps, t: Task, args: Any, out: Any, inputs: Any, variables: Any) -> Array:
    return ops.fill(t.op, t.shape, t.dtype, t.offset, out)


def _apply(ops: BlockOps, t: Task, args: Any, out: Any, inputs: Any, variables: Any) -> Array:
    return ops.einsum(t.op, args, variables, t.dtype, out)


def _agg(ops: BlockOps, t: Task, args: Any, out: Any, inputs: Any, variables: Any) -> Array:
    return ops.aggregate(t.op, args, t.dtype, out)


def _assemble(ops: BlockOps, t: Task, args: Any, out: Any, inputs: Any, variables: Any) -> Array:
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
    if isinstance(args[0], Coo):  # a relation travels as its index array and its values
        a = args[0]
        return Coo(a.indices.copy(), a.values.copy(), a.shape)
    return ops.copy(out, args[0], t.shape, t.dtype)


def _sparse(ops: BlockOps, t: Task, args: Any, out: Any, inputs: Any, variables: Any) -> Any:
    return sparse_einsum(t.op, args, variables, t.dtype)


def _densify(ops: BlockOps, t: Task, args: Any, out: Any, inputs: Any, variables: Any) -> Any:
    return args[0].to_dense()


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


def touch(ops: BlockOps, t: Task, partial: Array, acc: Array, first: bool) -> None:
    """One grouped accumulation of aggregation task `t` into its block `acc`: the first of
    its group to run copies its partial, later ones combine theirs in."""
    if first:
        ops.copy(acc, partial, t.shape, t.dtype)
    else:
        ops.accumulate(t.op, acc, partial, t.dtype)
