"""EinDecomp: a partition for every graph node that minimises modelled elements moved.

The search (the EinDecomp paper, details in `treedp.py`) covers the graph with trees and solves each
tree exactly by dynamic programming over the candidate space (`candidates.py`), greedily across
trees. Greedy choices made early (say, which of two equally cheap labels a shared activation is
cut on) decide what is cheap later, so several complete plans are built and each is then
improved tree by tree against the exact plan cost:
- the DP with trees in producer-first order, and in reader-first order;
- seeds: the data-parallel, model-parallel and largest-dim plans, each moved to the nearest
  candidates of the space (`seeds=()` turns them off).
The cheapest plan wins. Improvement never raises a plan's cost, so when a seed plan lies inside
the space EinDecomp costs at most as much as that baseline.

The default space is `contraction` (contractions get exactly n blocks, other nodes any divisor
of n), the one the paper's inference experiments use: the cost model has no compute term, so a
space is what forces parallelism, and this one still contains the usual baseline plans.
`all_range` (n, 2n or 4n blocks everywhere) is the paper's default; under this cost model it
never gains from the extra blocks and costs more planning time.

Leaves (inputs, fills) are free wherever they are read; they get the partition their first
reader needs. A reshape that is not a pure squeeze stays whole.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import CompileError
from ..ir.graph import Graph
from .baselines import data_parallel, largest_dim, model_parallel
from .candidates import SMALL_JOIN, SPACES, check_ndev
from .cost import LEAVES
from .partition import Partition
from .treedp import TreeSearch
from .usage import (
    Grid,
    full_grid,
    grid_of,
    partition_of,
    partition_shape,
    producer_usages,
    whole_grid,
)

REPARTITION_MODES = ("exact", "approx")
SEEDS: Mapping[str, Callable[[Graph, int], dict[int, Partition]]] = {
    "data-parallel": data_parallel,
    "model-parallel": model_parallel,
    "largest-dim": largest_dim,
}
ORDERS = ("both", "forward", "reverse")


def _complete(graph: Graph, grids: dict[int, Grid], fixed: Mapping[int, Grid]) -> None:
    """Give every leaf the partition its first reader needs (or its fixed one)."""
    for n in graph.nodes:
        if n.op not in LEAVES:
            continue
        if n.id in fixed:
            grids[n.id] = fixed[n.id]
            continue
        readers = graph.consumers(n.id)
        if readers:
            v = readers[0]
            use = producer_usages(graph, v, grids[v])[n.id]
            grids[n.id] = full_grid(use, n.shape)
        else:
            grids[n.id] = whole_grid(n.shape)


def resolve_fixed(graph: Graph, fixed: Mapping[Any, Partition] | None) -> dict[int, Grid]:
    """Node ids (or input names) -> Partition, checked against each node's partition space."""
    out: dict[int, Grid] = {}
    names = {n.name: n.id for n in graph.nodes}
    for key, part in (fixed or {}).items():
        v = names.get(key) if isinstance(key, str) else key
        if not isinstance(v, int) or not 0 <= v < len(graph):
            raise CompileError(f"fixed partition for unknown node {key!r}")
        node = graph[v]
        if not isinstance(part, Partition):
            raise CompileError(f"fixed partition for node {node.name} is not a Partition: {part!r}")
        want = partition_shape(node)
        if part.shape != tuple(want):
            raise CompileError(
                f"node {node.name}: fixed partition {part} over {part.shape} does not fit its "
                f"partition space {tuple(want)}"
            )
        out[v] = grid_of(part)
    return out


def eindecomp(
    graph: Graph,
    ndev: int,
    *,
    space: str = "contraction",
    slots: int = 1,
    input_discount: float = 1.0,
    repartition: str = "exact",
    order: str = "both",
    sweeps: int = 4,
    seeds: Sequence[str] = ("data-parallel", "model-parallel", "largest-dim"),
    fixed: Mapping[Any, Partition] | None = None,
    small_join: float = SMALL_JOIN,
) -> dict[int, Partition]:
    """A partition per node that minimises modelled elements moved, over `space` with
    n = ndev · slots blocks.

    `order`: which first passes of the tree DP to run ("both", "forward", "reverse");
    `seeds`: baseline plans used as further starts; `sweeps`: rounds of tree-by-tree
    improvement (0 for none); `repartition`: the first passes' edge cost ("approx" is the
    paper's search estimate; improvement and the final choice use the exact cost);
    `input_discount`: divides the join replication of graph inputs and fills; `fixed`: pins
    nodes (by id, or inputs by name) to a Partition; `small_join`: contractions that read
    fewer elements may stay whole (0: every contraction takes n blocks, as in the paper).
    """
    n = check_ndev(ndev) * _positive_int(slots, "slots")
    if order not in ORDERS:
        raise CompileError(f"unknown pass order {order!r}; expected one of {ORDERS}")
    if isinstance(sweeps, bool) or not isinstance(sweeps, int) or sweeps < 0:
        raise CompileError(f"sweeps must be an int >= 0, got {sweeps!r}")
    if space not in SPACES:
        raise CompileError(f"unknown candidate space {space!r}; expected one of {SPACES}")
    if repartition not in REPARTITION_MODES:
        raise CompileError(
            f"unknown repartition cost {repartition!r}; expected one of {REPARTITION_MODES}"
        )
    if not isinstance(input_discount, int | float) or not input_discount > 0:
        raise CompileError(f"input_discount must be positive, got {input_discount!r}")
    if isinstance(small_join, bool) or not isinstance(small_join, int | float) or small_join < 0:
        raise CompileError(f"small_join must be a number >= 0, got {small_join!r}")
    pinned = resolve_fixed(graph, fixed)
    exact = repartition == "exact"
    search = TreeSearch(graph, n, space, float(input_discount), exact, pinned, small_join)
    orders = ("forward", "reverse") if order == "both" else (order,)
    plans = [search.first_pass(o) for o in orders]
    for name in _check_seeds(seeds):
        plans.append(search.project(SEEDS[name](graph, n)))
    if sweeps:
        plans = [search.improve(c, sweeps) for c in plans]
    choice = min(plans, key=search.total)
    grids = {v: search.spaces[v].grids[c] for v, c in choice.items()}
    _complete(graph, grids, pinned)
    return {n.id: partition_of(grids[n.id]) for n in graph.nodes}


def _check_seeds(seeds: Sequence[str]) -> list[str]:
    given = [seeds] if isinstance(seeds, str) else list(seeds)
    bad = [x for x in given if x not in SEEDS]
    if bad:
        raise CompileError(f"unknown seed plan(s) {bad}; expected some of {sorted(SEEDS)}")
    return given


def _positive_int(x: Any, what: str) -> int:
    if isinstance(x, bool) or not isinstance(x, int) or x < 1:
        raise CompileError(f"{what} must be a positive int, got {x!r}")
    return x
