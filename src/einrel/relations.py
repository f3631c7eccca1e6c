"""How many tuples a relation's blocks hold: counted from a feed given at compile time
(`er.compile(..., structure=...)`), and checked against a memory plan before each run."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .errors import CompileError, FeedError
from .frontend.relation import bind_relation
from .ir.graph import Graph
from .kernels import coo
from .taskgraph.ir import TaskGraph

Counts = Callable[[tuple[int, ...], tuple[int, ...]], int]


def tuple_counts(
    graph: Graph, structure: Mapping[str, Any] | None, relabeling: Any = None
) -> dict[str, Counts]:
    """For each relation of `structure` (name -> a feed like the ones it will get), the
    tuples it has in a key box, scaled to the relation's `nnz` bound (in its new labels when
    keys are relabeled)."""
    if not structure:
        return {}
    if not isinstance(structure, Mapping):
        raise CompileError(f"structure must map relation names to feeds, got {structure!r}")
    relations = {n.name: n for n in graph.relations}
    unknown = sorted(set(structure) - set(relations))
    if unknown:
        raise CompileError(
            f"structure names {unknown}, which are not relations of the graph {sorted(relations)}"
        )
    samples = {
        name: bind_relation(name, relations[name], feed, True) for name, feed in structure.items()
    }
    if relabeling is not None and set(samples) == set(relations):
        moved, _ = relabeling.apply(graph, {relations[k].id: v for k, v in samples.items()})
        samples = {k: moved[relations[k].id] for k in samples}
    return {name: _counter(sample, relations[name].attrs.nnz) for name, sample in samples.items()}


def _counter(sample: coo.Coo, nnz: int) -> Counts:
    scale = nnz / max(1, sample.nnz)

    def count(offsets: tuple[int, ...], sizes: tuple[int, ...]) -> int:
        inside = np.ones(sample.nnz, dtype=bool)
        for k, (row, o, n) in enumerate(zip(sample.indices, offsets, sizes)):
            if (o, n) != (0, sample.shape[k]):
                inside &= (row >= o) & (row < o + n)
        return math.ceil(int(inside.sum()) * scale)

    return count


def check_capacities(tg: TaskGraph, inputs: Mapping[int, Any]) -> None:
    """A FeedError when a relation feed has more tuples in some block than the memory plan
    holds for it, before anything runs."""
    for t in tg.tasks:
        if t.kind != "input" or t.support is None:
            continue
        got = coo.block(inputs[t.node], (t.offset, t.shape), t.support.order).nnz
        if got > t.support.capacity:
            node = tg.graph[t.node]
            k = t.support.nkeys
            box = ", ".join(
                f"{key} in [{o}, {o + n})"
                for key, o, n in zip(node.attrs.keys, t.offset[:k], t.shape[:k])
            )
            raise FeedError(
                f"feed {node.name!r}: the block of relation {node.name} with {box} has {got} "
                f"tuples, but the memory plan holds {t.support.capacity} there (planned for "
                f"nnz={node.attrs.nnz} spread evenly over the keys). Compile with "
                f"structure={{{node.name!r}: a feed like this one}} so the plan counts each "
                "block's tuples, or with a larger budget"
            )
