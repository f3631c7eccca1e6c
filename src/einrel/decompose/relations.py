"""Decomposing graphs with relations: the partitioners see every relational node as the dense
node it would be, with its density, and cut it like any other.

In that view a relation input is an input, an einsum over a relation is the same einsum, and a
densify is an identity einsum; each relation-valued node carries `density`, its tuple bound
over its key space, so the join and aggregation costs count tuples. A cut of a key label is a
cut of the relation by key ranges, aligned with the blocks of the dense operands that carry the
same label (co-partitioning), so EinDecomp's choice for a graph that mixes dense and sparse
operands is one search. Repartitioning a relation is priced at its dense extent, which keeps
the relations of a chain cut alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace

from ..ir.einsum import _LETTERS, make_einsum
from ..ir.graph import GNode, Graph
from .partition import Partition

RELATIONAL = ("relation", "sparse", "densify")


def has_relations(graph: Graph) -> bool:
    return any(n.op in RELATIONAL for n in graph.nodes)


def _dense_node(n: GNode) -> GNode:
    if n.op == "relation":
        keys = n.shape[: len(n.attrs.keys)]
        return replace(n, op="input", attrs=None, density=_density(n.attrs.nnz, keys))
    if n.op == "sparse":
        sp = n.attrs
        density = _density(sp.nnz, sp.key_shape) if sp.out is not None else 1.0
        return replace(n, op="einsum", attrs=sp.einsum, density=density)
    labs = _LETTERS[: len(n.shape)]  # densify
    op = make_einsum(f"{labs}->{labs}", [n.shape], agg=None, node=n.name)
    return replace(n, op="einsum", attrs=op)


def _density(nnz: int, keys: tuple[int, ...]) -> float:
    return min(1.0, nnz / max(1, math.prod(keys)))


def dense_view(graph: Graph) -> Graph:
    """`graph` with its relational nodes shown as the dense nodes they would be."""
    if not has_relations(graph):
        return graph
    nodes = tuple(_dense_node(n) if n.op in RELATIONAL else n for n in graph.nodes)
    return Graph(nodes, graph.outputs)


def decompose(
    partition: Callable[[Graph, int], Mapping[int, Partition]], graph: Graph, ndev: int
) -> dict[int, Partition]:
    """A partition per node of `graph`, chosen by `partition` on its dense view."""
    return dict(partition(dense_view(graph), ndev))
