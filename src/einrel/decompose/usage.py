"""Partitions as plain split points, and how each node reads its operands under a partition.

The cost model and the search work on `Grid`s: one tuple of split points per dimension. A grid
over a node's partition space (the join shape for an einsum, the shape otherwise) says how the
node is cut; `output_grid` says how its result is cut; `operand_usage` says which boxes of an
operand the node reads. A usage may cover only part of the operand (a slice reads a window), so
its first and last split points need not be 0 and the dimension size.

These rules mirror `einrel.taskgraph.build_tasks`, which is what really runs.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

from ..ir.graph import GNode, Graph
from .partition import PartDim, Partition

Bounds = tuple[int, ...]
Grid = tuple[Bounds, ...]


def even_bounds(n: int, parts: int) -> Bounds:
    """Split points of `parts` near-equal pieces of n (as `PartDim.split`)."""
    q, r = divmod(n, parts)
    out = [0]
    for i in range(parts):
        out.append(out[-1] + q + (i < r))
    return tuple(out)


def even_grid(shape: Sequence[int], parts: Sequence[int]) -> Grid:
    return tuple(even_bounds(n, p) for n, p in zip(shape, parts))


def whole_grid(shape: Sequence[int]) -> Grid:
    return tuple((0, n) for n in shape)


def grid_of(p: Partition) -> Grid:
    return tuple(d.bounds for d in p.dims)


def partition_of(g: Grid) -> Partition:
    return Partition(tuple(PartDim(b) for b in g))


def parts_of(g: Grid) -> tuple[int, ...]:
    return tuple(len(b) - 1 for b in g)


def nblocks(g: Grid) -> int:
    return math.prod(len(b) - 1 for b in g)


def refine(a: Grid, b: Grid) -> Grid:
    """Union of split points per dimension (the common refinement, over the joint window)."""
    return tuple(x if x == y else tuple(sorted(set(x) | set(y))) for x, y in zip(a, b))


def refine_all(grids: Sequence[Grid]) -> Grid:
    out = grids[0]
    for g in grids[1:]:
        out = refine(out, g)
    return out


def squeeze_map(src: Sequence[int], dst: Sequence[int]) -> list[int | None] | None:
    """For a reshape that only adds or drops size-1 dims: the source dim of each target dim."""
    if [n for n in src if n != 1] != [n for n in dst if n != 1]:
        return None
    out: list[int | None] = []
    j = 0
    for n in dst:
        if n == 1:
            out.append(None)
            continue
        while src[j] == 1:
            j += 1
        out.append(j)
        j += 1
    return out


def partition_shape(node: GNode) -> tuple[int, ...]:
    """The shape a node's partition covers: the join shape of an einsum, else its shape."""
    return node.einsum.join_shape if node.op == "einsum" else node.shape


def is_whole_reshape(graph: Graph, node: GNode) -> bool:
    """A reshape that merges or splits dimensions: its blocks cannot follow its input's."""
    return node.op == "reshape" and squeeze_map(graph[node.inputs[0]].shape, node.shape) is None


@functools.lru_cache(maxsize=1 << 14)
def label_positions(inputs: tuple[str, ...], output: str, agg: str) -> tuple[tuple[int, ...], ...]:
    """For each operand, the join-space position of each of its labels."""
    at = {lab: i for i, lab in enumerate(output + agg)}
    return tuple(tuple(at[lab] for lab in labs) for labs in inputs)


def output_grid(graph: Graph, v: int, grid: Grid) -> Grid:
    """How node v's result is cut when v is cut by `grid`."""
    node = graph[v]
    if node.op == "einsum":
        return grid[: len(node.einsum.output)]
    if is_whole_reshape(graph, node):
        return whole_grid(node.shape)
    return grid


def operand_usage(graph: Graph, v: int, grid: Grid, k: int) -> Grid:
    """The boxes of operand k that node v reads when cut by `grid`."""
    node = graph[v]
    src = graph[node.inputs[k]]
    if node.op == "einsum":
        op = node.einsum
        return tuple(grid[i] for i in label_positions(op.inputs, op.output, op.agg_labels)[k])
    if node.op == "slice":
        return tuple(tuple(b + s for b in bs) for bs, s in zip(grid, node.attrs.starts))
    if node.op == "concat":
        ax = node.attrs.axis
        lo = sum(graph[u].shape[ax] for u in node.inputs[:k])
        width = src.shape[ax]
        inner = tuple(b - lo for b in grid[ax] if lo < b < lo + width)
        return grid[:ax] + ((0, *inner, width),) + grid[ax + 1 :]
    if node.op == "reshape":
        dims = squeeze_map(src.shape, node.shape)
        if dims is None:
            return whole_grid(src.shape)
        out: list[Bounds] = [(0, 1)] * len(src.shape)
        for d, j in enumerate(dims):
            if j is not None:
                out[j] = grid[d]
        return tuple(out)
    raise ValueError(f"node {node.name} ({node.op}) has no operands")


def producer_usages(graph: Graph, v: int, grid: Grid) -> dict[int, Grid]:
    """Per distinct producer of v: the refinement of every operand slot that reads it."""
    out: dict[int, Grid] = {}
    for k, u in enumerate(graph[v].inputs):
        use = operand_usage(graph, v, grid, k)
        out[u] = refine(out[u], use) if u in out else use
    return out


def full_grid(use: Grid, shape: Sequence[int]) -> Grid:
    """A usage widened to the whole tensor (a partition of it)."""
    return tuple(
        tuple(sorted({0, n, *b})) if b[0] != 0 or b[-1] != n else b for b, n in zip(use, shape)
    )
