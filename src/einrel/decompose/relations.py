"""Decomposing graphs with relations: the partitioners see every relational node as the dense
node it would be, with its density, and cut it like any other.

In that view a relation input is an input, an einsum over a relation is the same einsum, and a
densify is an identity einsum; each relation-valued node carries `density`, what its tuples
cost over its dense extent (`_density`), so the join and aggregation costs count tuples. A cut
of a key label is a cut of the relation by key ranges, aligned with the blocks of the dense
operands that carry the same label (co-partitioning), so EinDecomp's choice for a graph that
mixes dense and sparse operands is one search. Repartitioning a relation is priced at its
dense extent, which keeps the relations of a chain cut alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace

from ..ir.einsum import _LETTERS, make_einsum
from ..ir.graph import DTYPE_BYTES, GNode, Graph
from ..kernels.coo import index_dtype as coo_index_dtype
from .partition import Partition

RELATIONAL = ("relation", "sparse", "densify")


def has_relations(graph: Graph) -> bool:
    return any(n.op in RELATIONAL for n in graph.nodes)


TUPLE_OVERHEAD = 24  # elements: what touching one tuple costs beyond its bytes (see below)


def _dense_node(n: GNode) -> GNode:
    if n.op == "relation":
        keys = n.shape[: len(n.attrs.keys)]
        vals = math.prod(n.shape[len(keys) :])
        return replace(n, op="input", attrs=None, density=_density(n, n.attrs.nnz, keys, vals))
    if n.op == "sparse":
        sp = n.attrs
        keys = sp.key_shape
        vals = math.prod(n.shape[len(keys) :])
        density = _density(n, sp.nnz, keys, vals) if sp.out is not None else 1.0
        return replace(n, op="einsum", attrs=sp.einsum, density=density)
    labs = _LETTERS[: len(n.shape)]  # densify
    op = make_einsum(f"{labs}->{labs}", [n.shape], agg=None, node=n.name)
    return replace(n, op="einsum", attrs=op)


def _density(n: GNode, nnz: int, keys: tuple[int, ...], vals: int) -> float:
    """Elements the relation stands for, per element of its dense extent: each tuple its
    values, its key indices and positions in elements of its dtype, and `TUPLE_OVERHEAD`.

    The overhead is the per-tuple term of the SparseEinSum cost: the fixed work of touching a
    tuple (its indices, the random access of the rows it gathers), which a cut that makes
    several join blocks read every tuple (a cut of a dense label) repeats. Measured with
    torch's CSR product on one core (N = 10^6 rows, 4·10^6 tuples): 39 ns per tuple at 8
    columns, 110 at 64, so about 1.3 ns per gathered element and 29 ns, some 23 elements,
    per tuple."""
    index = coo_index_dtype(max(max(keys, default=1), nnz)).itemsize
    per_tuple = vals + (len(keys) + 1) * index / DTYPE_BYTES[n.dtype] + TUPLE_OVERHEAD
    return nnz * per_tuple / max(1, math.prod(keys) * vals)


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
