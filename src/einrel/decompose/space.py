"""Candidate sets of one node, and repartition costs between whole sets at once.

A `NodeSpace` holds a node's candidate grids with their local (join + aggregation) cost, and
groups them: candidates with the same output grid, and candidates that read a producer the same
way, share one entry. `edge_matrix` then prices every (output grid, usage grid) pair with
numpy, from per-dimension sums memoised in `cost.dim_sums`: the exact repartition cost factors
over dimensions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..ir.graph import Graph
from .cost import LEAVES, agg_cost, dim_sums, join_cost
from .usage import Bounds, Grid, output_grid, producer_usages


@dataclass
class NodeSpace:
    """A DP node's candidates with their local cost, grouped by output and by operand usage.

    `groups[g]` lists the operand slots that read the g-th distinct producer.
    """

    grids: list[Grid]
    local: np.ndarray
    outs: GridSet
    out_of: np.ndarray
    groups: tuple[tuple[int, ...], ...]
    uses: list[GridSet]
    use_of: list[np.ndarray]

    @property
    def distinct_outs(self) -> bool:
        return len(self.outs) == len(self.grids)


def _index(items: list[Grid]) -> tuple[list[Grid], np.ndarray]:
    seen: dict[Grid, int] = {}
    idx = [seen.setdefault(g, len(seen)) for g in items]
    return list(seen), np.asarray(idx, dtype=np.int64)


def _slot_groups(graph: Graph, v: int) -> tuple[tuple[int, ...], ...]:
    by: dict[int, list[int]] = {}
    for k, u in enumerate(graph[v].inputs):
        by.setdefault(u, []).append(k)
    return tuple(tuple(ks) for ks in by.values())


def build_space(graph: Graph, v: int, grids: list[Grid], input_discount: float) -> NodeSpace:
    """Local costs and output / usage grouping of node v's candidate grids."""
    node = graph[v]
    local = np.array(
        [
            join_cost(graph, v, parts, input_discount) + agg_cost(graph, v, parts)
            for parts in (tuple(len(b) - 1 for b in g) for g in grids)
        ],
        dtype=np.float64,
    )
    outs, out_of = _index([output_grid(graph, v, g) for g in grids])
    groups = _slot_groups(graph, v)
    uses: list[GridSet] = []
    use_of: list[np.ndarray] = []
    for slots in groups:
        u = node.inputs[slots[0]]
        per = [producer_usages(graph, v, g)[u] for g in grids]
        lst, idx = _index(per)
        uses.append(GridSet.of(lst))
        use_of.append(idx)
    return NodeSpace(grids, local, GridSet.of(outs), out_of, groups, uses, use_of)


def space_key(graph: Graph, v: int, counts_key: Any) -> Any:
    node = graph[v]
    leaves = tuple(graph[u].op in LEAVES for u in node.inputs)
    shapes = tuple(graph[u].shape for u in node.inputs)
    if node.op == "einsum":
        op = node.einsum
        what: Any = (op.inputs, op.output, op.sizes, op.agg is not None, op.factored)
    else:
        what = (node.attrs, node.shape)
    density = (node.density, *(graph[u].density for u in node.inputs))
    feeds = (v in graph.outputs, *(graph[u].op == "input" for u in node.inputs))  # strided rows
    return (node.op, what, leaves, shapes, density, feeds, _slot_groups(graph, v), counts_key)


@dataclass
class GridSet:
    """Distinct grids with, per dim, their distinct split points and each grid's index."""

    grids: list[Grid]
    keys: list[list[Bounds]]
    idx: list[np.ndarray]

    @staticmethod
    def of(grids: list[Grid]) -> GridSet:
        keys, idx = [], []
        for d in range(len(grids[0])):
            seen: dict[Bounds, int] = {}
            idx.append(np.array([seen.setdefault(g[d], len(seen)) for g in grids], np.int64))
            keys.append(list(seen))
        return GridSet(grids, keys, idx)

    def __len__(self) -> int:
        return len(self.grids)


def edge_matrix(
    outs: GridSet, uses: GridSet, exact: bool = True, base: Grid | None = None
) -> np.ndarray:
    """Repartition cost from each producer output grid to each consumer usage grid (each
    usage first refined with `base`, what the producer's other readers need)."""
    no, nu = len(outs), len(uses)
    if not outs.keys:
        return np.zeros((no, nu))
    pa = np.ones((no, nu))
    pr = np.ones((no, nu))
    pi = np.ones((no, nu))
    same = np.ones((no, nu), dtype=bool)
    for d, (ka, ia, kr, ir) in enumerate(zip(outs.keys, outs.idx, uses.keys, uses.idx)):
        if base is not None:
            kr = [b if b == base[d] else tuple(sorted(set(b) | set(base[d]))) for b in kr]
        if exact:
            table = np.array([[dim_sums(a, r) for r in kr] for a in ka], dtype=np.float64)
            pa *= table[ia][:, ir, 0]
            pr *= table[ia][:, ir, 1]
            pi *= table[ia][:, ir, 2]
        else:
            parts_a = np.array([len(k) - 1 for k in ka], dtype=np.float64)
            parts_r = np.array([len(k) - 1 for k in kr], dtype=np.float64)
            pa *= np.array([_largest(k) for k in ka], dtype=np.float64)[ia][:, None]
            pr *= np.array([_largest(k) for k in kr], dtype=np.float64)[ir][None, :]
            pi *= np.maximum(parts_a[ia][:, None], parts_r[ir][None, :])
        eq = np.array([[a == r for r in kr] for a in ka], dtype=bool)
        same &= eq[ia][:, ir]
    cost = pa + pr - 2 * pi if exact else (pa + pr) * pi
    cost[same] = 0.0
    return cost


def _largest(b: tuple[int, ...]) -> int:
    return max(y - x for x, y in zip(b, b[1:]))


def group_min(values: np.ndarray, keys: np.ndarray, nkeys: int) -> tuple[np.ndarray, np.ndarray]:
    """Per key: the minimum value and the first index attaining it."""
    order = np.lexsort((np.arange(len(values)), values, keys))
    first = np.ones(len(order), dtype=bool)
    first[1:] = keys[order][1:] != keys[order][:-1]
    pick = order[first]
    best = np.full(nkeys, np.inf)
    arg = np.zeros(nkeys, dtype=np.int64)
    best[keys[pick]] = values[pick]
    arg[keys[pick]] = pick
    return best, arg
