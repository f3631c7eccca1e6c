"""Decomposing graphs with relations: every relation is one block for now, and the dense rest
is decomposed as usual around them.

The partitioners see a dense view of the graph in which each relation input, each einsum over
a relation and each densify is a leaf of its own shape; they choose partitions for the dense
nodes, and the relational nodes keep the whole extent. Dense operands of a relational node are
assembled whole for it, and its dense result is cut for its consumers like any leaf's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..ir.graph import GNode, Graph
from .partition import Partition

RELATIONAL = ("relation", "sparse", "densify")


def has_relations(graph: Graph) -> bool:
    return any(n.op in RELATIONAL for n in graph.nodes)


def dense_view(graph: Graph) -> Graph:
    """`graph` with its relational nodes made leaves (inputs under their own names)."""
    if not has_relations(graph):
        return graph
    nodes = tuple(
        GNode(n.id, "input", (), n.shape, n.dtype, None, n.name) if n.op in RELATIONAL else n
        for n in graph.nodes
    )
    return Graph(nodes, graph.outputs)


def decompose(
    partition: Callable[[Graph, int], Mapping[int, Partition]], graph: Graph, ndev: int
) -> dict[int, Partition]:
    """A partition per node of `graph`: `partition`'s on the dense view, whole for relations."""
    decomposition = dict(partition(dense_view(graph), ndev))
    for n in graph.nodes:
        if n.op in RELATIONAL:
            decomposition[n.id] = Partition.whole(n.shape)
    return decomposition
