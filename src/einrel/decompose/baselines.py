"""Baseline partitioners, all `(graph, ndev, **options) -> {node id: Partition}`.

- `none`: every node whole (one block; no parallelism, the trivial floor of the cost model).
- `data-parallel`: cut only the batch class. The batch is the class (see `classes.py`) of dim 0
  of the data inputs. `data=("x", ...)` names the data inputs; by default they are the graph
  inputs whose dim-0 class is carried by the most einsums (ties: the lowest node id). For the
  workloads here that is the class of x's batch dim; weights, whose dim 0 is contracted away,
  lose. With fewer batch rows than devices the batch is cut into one row per block.
- `model-parallel` (Megatron style): walking contractions in order, the first weight operand
  (a non-data graph input) of a contraction that touches no chosen class yet gets the classes of
  its labels that survive into the output (heads, then head dim; a column-parallel layer); a
  contraction that already reads a chosen class is row-parallel and adds nothing. Every slot in a
  chosen class is cut, heads first, as far as the devices allow.
- `largest-dim` (`apart04`): every contraction repeatedly cuts its dimension with the largest
  blocks by the next prime factor of ndev (halving, for powers of two) until it has ndev
  blocks; other nodes copy their producers' cuts forward (never beyond ndev blocks), and nodes
  that read only leaves copy what their first reader needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..errors import CompileError
from ..ir.graph import Graph
from .candidates import check_ndev, is_contraction
from .classes import Classes, Slot, label_classes, links, partitions_from_classes
from .cost import LEAVES
from .partition import Partition
from .usage import is_whole_reshape, partition_shape


def _build(graph: Graph, parts: Sequence[Sequence[int]]) -> dict[int, Partition]:
    out: dict[int, Partition] = {}
    for n in graph.nodes:
        shape = partition_shape(n)
        p = (1,) * len(shape) if is_whole_reshape(graph, n) else tuple(parts[n.id])
        out[n.id] = Partition.even(shape, p)
    return out


def whole(graph: Graph, ndev: int) -> dict[int, Partition]:
    """Every node in one block: the no-parallelism baseline every partitioner must beat."""
    check_ndev(ndev)
    return {n.id: Partition.whole(partition_shape(n)) for n in graph.nodes}


def _data_inputs(graph: Graph, classes: Classes, data: Sequence[str] | None) -> list[int]:
    inputs = [n for n in graph.nodes if n.op == "input" and n.shape]
    if data is not None:
        names = {n.name: n.id for n in inputs}
        given = [data] if isinstance(data, str) else list(data)
        bad = [x for x in given if x not in names]
        if bad:
            raise CompileError(
                f"data inputs {bad} are not graph inputs of rank >= 1; inputs: {sorted(names)}"
            )
        return [names[x] for x in given]
    if not inputs:
        return []
    carried: dict[Slot, int] = {}
    for n in graph.nodes:
        if n.op == "einsum":
            for c in set(classes.of[n.id]):
                carried[c] = carried.get(c, 0) + 1
    best = max(inputs, key=lambda n: (carried.get(classes.of[n.id][0], 0), -n.id))
    batch = classes.of[best.id][0]
    return [n.id for n in inputs if classes.of[n.id][0] == batch]


def batch_classes(graph: Graph, data: Sequence[str] | None = None) -> list[Slot]:
    """The class(es) of dim 0 of the data inputs, in input order."""
    classes = label_classes(graph)
    return list(dict.fromkeys(classes.of[i][0] for i in _data_inputs(graph, classes, data)))


def data_parallel(
    graph: Graph, ndev: int, *, data: Sequence[str] | None = None
) -> dict[int, Partition]:
    """Cut only the batch class; weights and their updates stay whole."""
    check_ndev(ndev)
    classes = label_classes(graph)
    order = list(dict.fromkeys(classes.of[i][0] for i in _data_inputs(graph, classes, data)))
    return _build(graph, partitions_from_classes(graph, classes, order, ndev))


def model_classes(graph: Graph, classes: Classes, data: Sequence[str] | None) -> list[Slot]:
    """The classes a Megatron-style split cuts, in priority order."""
    data_ids = set(_data_inputs(graph, classes, data))
    chosen: dict[Slot, None] = {}
    for n in graph.nodes:
        if not is_contraction(n) or any(c in chosen for c in classes.of[n.id]):
            continue
        op = n.einsum
        for u, labs in zip(n.inputs, op.inputs):
            w = graph[u]
            if w.op != "input" or u in data_ids:
                continue
            at = {lab: i for i, lab in enumerate(op.labels)}
            chosen.update((classes.of[n.id][at[lab]], None) for lab in labs if lab in op.output)
            break
    return list(chosen)


def model_parallel(
    graph: Graph, ndev: int, *, data: Sequence[str] | None = None
) -> dict[int, Partition]:
    """Cut the weights' output (head) classes everywhere they flow."""
    check_ndev(ndev)
    classes = label_classes(graph)
    order = model_classes(graph, classes, data)
    return _build(graph, partitions_from_classes(graph, classes, order, ndev))


def _prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return sorted(out, reverse=True)


def halve_largest(shape: Sequence[int], ndev: int) -> tuple[int, ...]:
    """Cut the dim with the largest blocks by each prime factor of ndev in turn."""
    parts = [1] * len(shape)
    for f in _prime_factors(ndev):
        fits = [d for d in range(len(shape)) if parts[d] * f <= shape[d]]
        if not fits:
            break
        d = max(fits, key=lambda d: (math.ceil(shape[d] / parts[d]), -d))
        parts[d] *= f
    return tuple(parts)


def largest_dim(graph: Graph, ndev: int) -> dict[int, Partition]:
    """Contractions cut by `halve_largest`; everything else inferred from its neighbours."""
    check_ndev(ndev)
    parts: dict[int, list[int]] = {}
    for n in graph.nodes:
        if is_contraction(n):
            parts[n.id] = list(halve_largest(partition_shape(n), ndev))
    for n in graph.nodes:
        if n.id in parts or n.op in LEAVES or is_whole_reshape(graph, n):
            continue
        grid = [1] * len(partition_shape(n))
        for d, u, j in links(graph, n.id):
            if u in parts and grid[d] == 1:
                p = _out_parts(graph, u, parts[u])[j]
                if math.prod(grid) * p <= ndev:
                    grid[d] = p
        parts[n.id] = grid
    for n in reversed(graph.nodes):
        if n.id in parts and (math.prod(parts[n.id]) > 1 or is_contraction(n)):
            continue
        if is_whole_reshape(graph, n):
            continue
        grid = [1] * len(partition_shape(n))
        for c in graph.consumers(n.id):
            for d, u, j in links(graph, c):
                if u == n.id and c in parts and grid[j] == 1:
                    p = parts[c][d]
                    if math.prod(grid) * p <= ndev:
                        grid[j] = p
            if math.prod(grid) > 1:
                break
        parts[n.id] = grid
    return _build(graph, [parts.get(n.id, [1] * len(partition_shape(n))) for n in graph.nodes])


def _out_parts(graph: Graph, u: int, parts: Sequence[int]) -> list[int]:
    node = graph[u]
    if node.op == "einsum":
        return list(parts[: len(node.einsum.output)])
    return list(parts)
