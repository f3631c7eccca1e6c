"""Which dimensions of a graph are "the same dimension": label classes across nodes.

A slot is (node id, dim) of a node's partition space: an einsum's join labels (output labels
first, so output dim j is slot j), every other node's shape dims. Slots are joined when data
flows through them unchanged: an einsum label with the matching dim of each operand that
carries it, a concat's non-axis dims, a slice's untouched dims, a squeeze's kept dims. The
baseline partitioners name a few classes (the batch, the heads) and cut every slot in them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..ir.graph import Graph
from .usage import partition_shape, squeeze_map

Slot = tuple[int, int]


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[Slot, Slot] = {}

    def find(self, x: Slot) -> Slot:
        root = x
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while x != root:
            nxt = self.parent.get(x, x)
            self.parent[x] = root
            x = nxt
        return root

    def union(self, a: Slot, b: Slot) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = min(ra, rb), max(ra, rb)
            self.parent[hi] = lo


@dataclass(frozen=True)
class Classes:
    """`of[v][d]` is the class id of slot (v, d); ids are the smallest slot of the class."""

    of: tuple[tuple[Slot, ...], ...]

    def members(self, cls: Slot) -> list[Slot]:
        return [(v, d) for v, row in enumerate(self.of) for d, c in enumerate(row) if c == cls]


def links(graph: Graph, v: int) -> list[tuple[int, int, int]]:
    """(slot dim of v, producer u, output dim of u) for every dim that flows unchanged."""
    node = graph[v]
    out: list[tuple[int, int, int]] = []
    if node.op == "einsum":
        at = {lab: i for i, lab in enumerate(node.einsum.labels)}
        for u, labs in zip(node.inputs, node.einsum.inputs):
            out.extend((at[lab], u, j) for j, lab in enumerate(labs))
    elif node.op == "slice":
        src = graph[node.inputs[0]].shape
        for d, (a, b) in enumerate(zip(node.attrs.starts, node.attrs.stops)):
            if a == 0 and b == src[d]:
                out.append((d, node.inputs[0], d))
    elif node.op == "concat":
        for u in node.inputs:
            out.extend((d, u, d) for d in range(len(node.shape)) if d != node.attrs.axis)
    elif node.op == "reshape":
        dims = squeeze_map(graph[node.inputs[0]].shape, node.shape)
        if dims is not None:
            out.extend((d, node.inputs[0], j) for d, j in enumerate(dims) if j is not None)
    return out


def label_classes(graph: Graph) -> Classes:
    uf = _UnionFind()
    for n in graph.nodes:
        for d, u, j in links(graph, n.id):
            uf.union((n.id, d), (u, j))
    return Classes(
        tuple(
            tuple(uf.find((n.id, d)) for d in range(len(partition_shape(n)))) for n in graph.nodes
        )
    )


def allocate(
    shape: Sequence[int], slot_classes: Sequence[Slot], rank: Mapping[Slot, int], ndev: int
) -> tuple[int, ...]:
    """Parts per dim: walk the node's ranked classes in rank order; the first dim of each gets
    as many parts as the devices left allow (capped by its size); the rest stay whole."""
    parts = [1] * len(shape)
    first: dict[Slot, int] = {}
    for d, c in enumerate(slot_classes):
        if c in rank:
            first.setdefault(c, d)
    left = ndev
    for c in sorted(first, key=rank.__getitem__):
        if left <= 1:
            break
        d = first[c]
        parts[d] = min(left, shape[d])
        left //= parts[d]
    return tuple(parts)


def partitions_from_classes(
    graph: Graph, classes: Classes, order: Sequence[Slot], ndev: int
) -> list[tuple[int, ...]]:
    """Parts per dim for every node, cutting the classes in `order` (see `allocate`)."""
    rank = {c: i for i, c in enumerate(order)}
    return [allocate(partition_shape(n), classes.of[n.id], rank, ndev) for n in graph.nodes]


def first_class(classes: Classes, pred: Callable[[Slot], bool]) -> Slot | None:
    for row in classes.of:
        for c in row:
            if pred(c):
                return c
    return None
