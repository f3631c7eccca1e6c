"""The EinDecomp cost model, in tensor elements moved (the EinDecomp paper).

For an einsum cut into B = ∏ p_l join blocks:
- join: every input block is replicated to the join blocks that need it,
  `Σ_k |X_k| · B / B_k` (graph inputs and fills divided by `input_discount`); a relation
  counts its tuples, `|X_k|` times its density;
- aggregation: each output element has ∏_{l aggregated} p_l partials to combine,
  `|Z| · (∏_{l∈A} p_l − 1)`;
- repartition: the node's output blocks are cut and reassembled into the common refinement of
  what its consumers read, `Σ over intersecting (producer block a, required block r) of
  |a| + |r|`, where a pair with a == r is free (so identical partitions cost 0).
Leaves (inputs, fills) are materialised wherever they are read, so they pay no repartition.
A fused (non-BLAS) kernel also pays `STRIDED_ROW` per row of the strided blocks it reads or
writes (cuts of the last dim of a graph input or output). There is no other compute term and
no balance term: parallelism comes from the candidate space.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

from ..ir.graph import Graph
from .partition import Partition
from .usage import Bounds, Grid, grid_of, output_grid, parts_of, producer_usages, refine_all

LEAVES = ("input", "fill")


@functools.lru_cache(maxsize=1 << 16)
def _dim_sums(a: Bounds, r: Bounds) -> tuple[int, int, int]:
    """Over intersecting interval pairs of one dim: Σ|a_i|, Σ|r_j|, Σ|a_i| where a_i == r_j."""
    sa = sr = si = 0
    i = j = 0
    while i < len(a) - 1 and j < len(r) - 1:
        a0, a1, r0, r1 = a[i], a[i + 1], r[j], r[j + 1]
        if a1 <= r0:
            i += 1
            continue
        if r1 <= a0:
            j += 1
            continue
        sa += a1 - a0
        sr += r1 - r0
        if a0 == r0 and a1 == r1:
            si += a1 - a0
        if a1 <= r1:
            i += 1
        else:
            j += 1
    return sa, sr, si


def dim_sums(a: Bounds, r: Bounds) -> tuple[int, int, int]:
    """Memoised per-dimension sums that the exact repartition cost multiplies together."""
    return _dim_sums(a, r)


def repartition_cost(src: Grid | Partition, dst: Grid | Partition) -> float:
    """Exact: Σ over intersecting block pairs (a, r) with a != r of |a| + |r|.

    Pairs factor over dimensions, so the sum is ∏_d ΣA_d + ∏_d ΣR_d − 2·∏_d ΣI_d.
    """
    a = grid_of(src) if isinstance(src, Partition) else src
    r = grid_of(dst) if isinstance(dst, Partition) else dst
    if a == r:
        return 0.0
    pa = pr = pi = 1
    for x, y in zip(a, r):
        sa, sr, si = _dim_sums(x, y)
        pa *= sa
        pr *= sr
        pi *= si
    return float(pa + pr - 2 * pi)


def repartition_cost_approx(src: Grid | Partition, dst: Grid | Partition) -> float:
    """The search-time estimate: (maxblock(P) + maxblock(R)) · ∏_d max(parts_P, parts_R)."""
    a = grid_of(src) if isinstance(src, Partition) else src
    r = grid_of(dst) if isinstance(dst, Partition) else dst
    if a == r:
        return 0.0
    big_a = math.prod(max(y - x for x, y in zip(b, b[1:])) for b in a)
    big_r = math.prod(max(y - x for x, y in zip(b, b[1:])) for b in r)
    pairs = math.prod(max(len(x), len(y)) - 1 for x, y in zip(a, r))
    return float((big_a + big_r) * pairs)


# What a fused (non-BLAS) kernel pays per row of a strided block, in elements: numpy loops over
# a column block of a C-ordered array row by row. Measured for a product of two (10^6, 32)
# column blocks of (10^6, 64) float32 arrays on one core: 46 ms, against 11 ms for a row block
# of the same size, about 12 ns per row of each of the three arrays, where a contiguous element
# costs 0.11 ns.
STRIDED_ROW = 100.0


def join_cost(graph: Graph, v: int, parts: tuple[int, ...], input_discount: float = 1.0) -> float:
    """Σ_k |X_k| · B / B_k for einsum v cut into `parts` per join label, plus the strided rows
    of a fused kernel (`strided_rows`); 0 for other nodes."""
    node = graph[v]
    if node.op != "einsum":
        return 0.0
    op = node.einsum
    at = dict(zip(op.labels, parts))
    total = math.prod(parts)
    cost = 0.0
    for u, labs, shape in zip(node.inputs, op.inputs, op.input_shapes):
        share = math.prod(shape) * graph[u].density * total / math.prod(at[lab] for lab in labs)
        cost += share / input_discount if graph[u].op in LEAVES else share
    return cost + STRIDED_ROW * strided_rows(graph, v, at)


def strided_rows(graph: Graph, v: int, at: Mapping[str, int]) -> float:
    """Rows of strided blocks that the fused kernel of dense einsum v reads and writes when its
    labels are cut `at`: the blocks of a graph input (a view of the array fed) and of a graph
    output (written in place into the array returned) are strided when their last dim is cut.
    Such a cut of a (10^6, 64) table makes Adam's update several times slower than a row cut."""
    node = graph[v]
    op = node.einsum
    if op.factored or any(graph[u].density != 1.0 for u in (v, *node.inputs)):
        return 0.0  # a BLAS contraction takes strides; a join over a relation gathers rows
    total = math.prod(at.values())
    rows = 0.0
    for u, labs, shape in zip(node.inputs, op.inputs, op.input_shapes):
        if graph[u].op == "input" and labs and shape[-1] > 1 and at[labs[-1]] > 1:
            rows += math.prod(shape[:-1]) * total / math.prod(at[lab] for lab in labs)
    out = op.output
    if v in graph.outputs and out and node.shape[-1] > 1 and at[out[-1]] > 1:
        rows += math.prod(node.shape[:-1])
    return rows


def agg_cost(graph: Graph, v: int, parts: tuple[int, ...]) -> float:
    """|Z| · (∏_{aggregated l} p_l − 1) for einsum v; 0 for other nodes."""
    node = graph[v]
    if node.op != "einsum":
        return 0.0
    nout = len(node.einsum.output)
    return float(math.prod(node.shape) * node.density * (math.prod(parts[nout:]) - 1))


@dataclass(frozen=True)
class NodeCost:
    """One node's share of the plan cost, in elements moved."""

    node: int
    join: float
    agg: float
    repartition: float

    @property
    def total(self) -> float:
        return self.join + self.agg + self.repartition


def _grids(graph: Graph, decomposition: Mapping[int, Partition]) -> dict[int, Grid]:
    return {n.id: grid_of(decomposition[n.id]) for n in graph.nodes}


def required_grid(graph: Graph, grids: Mapping[int, Grid], u: int) -> Grid | None:
    """The common refinement of what u's consumers read (None when nothing reads u)."""
    uses = [producer_usages(graph, v, grids[v])[u] for v in graph.consumers(u)]
    return refine_all(uses) if uses else None


def node_costs(
    graph: Graph, decomposition: Mapping[int, Partition], *, input_discount: float = 1.0
) -> dict[int, NodeCost]:
    """Join, aggregation and exact repartition cost of every node."""
    grids = _grids(graph, decomposition)
    out: dict[int, NodeCost] = {}
    for n in graph.nodes:
        parts = parts_of(grids[n.id])
        rep = 0.0
        if n.op not in LEAVES:
            need = required_grid(graph, grids, n.id)
            if need is not None:
                rep = repartition_cost(output_grid(graph, n.id, grids[n.id]), need)
        out[n.id] = NodeCost(
            n.id,
            join_cost(graph, n.id, parts, input_discount),
            agg_cost(graph, n.id, parts),
            rep,
        )
    return out


def plan_cost(
    graph: Graph, decomposition: Mapping[int, Partition], *, input_discount: float = 1.0
) -> float:
    """Total modelled elements moved: Σ over nodes of join + aggregation + exact repartition."""
    return sum(
        c.total for c in node_costs(graph, decomposition, input_discount=input_discount).values()
    )
