"""The block interpreter: runs a placed task graph one task at a time with numpy, and
tiles graph outputs from their blocks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from .. import kernels
from ..errors import ExecutionError
from ..ir.relation import support_of
from ..kernels import coo
from ..kernels.ops import NUMPY
from .execute import execute
from .ir import Task, TaskGraph


class Runner(Protocol):
    """What an engine calls to compute one block (`run_task`, or a test's wrapper of it)."""

    def __call__(
        self,
        t: Task,
        args: Sequence[np.ndarray],
        inputs: Mapping[int, np.ndarray],
        variables: Mapping[str, float],
        out: np.ndarray | None = None,
    ) -> Any: ...


def run_task(
    t: Task,
    args: Sequence[np.ndarray],
    inputs: Mapping[int, np.ndarray],
    variables: Mapping[str, float],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Execute one task on numpy blocks (`inputs` holds whole graph-input arrays by node id),
    into `out` when given."""
    return execute(NUMPY, t, args, inputs, variables, out)


def assemble_outputs(
    tg: TaskGraph,
    value: Mapping[int, Any],
    assembled: Mapping[int, np.ndarray] | None = None,
    inputs: Mapping[int, Any] | None = None,
) -> list[Any]:
    """Tile every graph output from its blocks (a relation: a Coo in the feed's order, whose
    indices are the feed's own when `inputs` holds it and the keys are in its order); an
    output in `assembled` is whole already."""
    results: list[Any] = []
    for k, blocks in enumerate(tg.outputs):
        if assembled and k in assembled:
            results.append(assembled[k])
            continue
        node = tg.graph[tg.graph.outputs[k]]
        sup = support_of(node)
        if sup is not None:  # every tuple back at its place in the feed's order
            feed = None
            if inputs is not None and sup.order == tuple(range(sup.nkeys)):
                feed = next(inputs[n.id] for n in tg.graph.relations if n.name == sup.relation)
            blocks_of = [(value[t], off) for t, off in blocks]
            results.append(coo.whole(blocks_of, node.shape, feed))
            continue
        out = np.empty(node.shape, dtype=kernels.storage_dtype(node.dtype))
        for t, off in blocks:
            blk = value[t]
            out[tuple(slice(o, o + s) for o, s in zip(off, blk.shape))] = blk
        results.append(out)
    return results


def interpret_tasks(
    tg: TaskGraph, feeds: Mapping[str, Any], strict: bool = True
) -> list[np.ndarray]:
    """Run the task graph sequentially with numpy, keeping one dictionary of blocks per device
    and checking that every task reads only blocks on its own device (`strict=False` ignores
    feeds the graph does not read)."""
    from ..frontend.reference import bind_feeds

    inputs, variables = bind_feeds(tg.graph, feeds, strict=strict)
    stores: dict[int, dict[int, np.ndarray]] = {}
    where: dict[int, int] = {}
    for t in tg.tasks:
        args = []
        for i in t.inputs:
            src = where[i]
            if t.kind != "move" and src != t.device:
                raise ExecutionError(f"task t{t.id} on device {t.device} reads t{i} on {src}")
            args.append(stores[src][i])
        stores.setdefault(t.device, {})[t.id] = run_task(t, args, inputs, variables)
        where[t.id] = t.device
    flat = {i: stores[where[i]][i] for blocks in tg.outputs for i, _ in blocks}
    return assemble_outputs(tg, flat)
