"""The operation DAG that placers assign to devices, and the list-scheduling quantities on it."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Any

from ..errors import CompileError

Edge = tuple[int, int]


@dataclass(frozen=True)
class PlaceGraph:
    """Operations with a compute cost and a cost of shipping their output to another device.

    `preds`/`succs` are derived from `edges` (duplicates removed, ascending ids) and `topo` is a
    topological order (smallest ready id first), so simulators and placers never rebuild them.
    `groups` and `origin` (not compared) say where the ops of an einrel task graph came from.
    """

    comp: tuple[float, ...]
    comm: tuple[float, ...]
    edges: tuple[Edge, ...]
    name: str = ""
    # For graphs made from an einrel task graph: each op's graph node (its group), and the task
    # graph with the task id of each op, for placers that read blocks.
    groups: tuple[int, ...] | None = field(default=None, repr=False, compare=False)
    origin: Any = field(default=None, repr=False, compare=False)
    preds: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)
    succs: tuple[tuple[int, ...], ...] = field(init=False, repr=False, compare=False)
    topo: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        comp = tuple(float(c) for c in self.comp)
        comm = tuple(float(c) for c in self.comm)
        edges = tuple((int(a), int(b)) for a, b in self.edges)
        n = len(comp)
        if len(comm) != n:
            raise CompileError(f"graph {self.name!r}: {n} compute costs but {len(comm)} comm costs")
        for kind, costs in (("compute", comp), ("comm", comm)):
            for v, c in enumerate(costs):
                if not math.isfinite(c) or c < 0:
                    raise CompileError(f"graph {self.name!r}: op {v} has {kind} cost {c}")
        for k, (a, b) in enumerate(edges):
            if not (0 <= a < n and 0 <= b < n):
                raise CompileError(
                    f"graph {self.name!r}: edge {k} ({a}->{b}) leaves ops 0..{n - 1}"
                )
        preds, succs = _adjacency(n, edges)
        topo = _topological_order(n, preds, succs)
        if topo is None:
            raise CompileError(f"graph {self.name!r}: the edges contain a cycle")
        object.__setattr__(self, "comp", comp)
        object.__setattr__(self, "comm", comm)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "preds", preds)
        object.__setattr__(self, "succs", succs)
        object.__setattr__(self, "topo", topo)

    @property
    def num_ops(self) -> int:
        return len(self.comp)


def _adjacency(
    n: int, edges: tuple[Edge, ...]
) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
    preds: list[set[int]] = [set() for _ in range(n)]
    succs: list[set[int]] = [set() for _ in range(n)]
    for a, b in edges:
        preds[b].add(a)
        succs[a].add(b)
    return tuple(tuple(sorted(p)) for p in preds), tuple(tuple(sorted(s)) for s in succs)


def _topological_order(
    n: int, preds: tuple[tuple[int, ...], ...], succs: tuple[tuple[int, ...], ...]
) -> tuple[int, ...] | None:
    """Kahn's algorithm with a min-heap, so the order is unique; None on a cycle."""
    remaining = [len(p) for p in preds]
    ready = [v for v in range(n) if remaining[v] == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        v = heapq.heappop(ready)
        order.append(v)
        for s in succs[v]:
            remaining[s] -= 1
            if remaining[s] == 0:
                heapq.heappush(ready, s)
    return tuple(order) if len(order) == n else None


def topological_order(graph: PlaceGraph) -> tuple[int, ...]:
    """A topological order; among ready ops the smallest id comes first."""
    return graph.topo


def b_levels(graph: PlaceGraph) -> tuple[float, ...]:
    """b(v) = comp_v + comm_v + max child b; a sink has b = comp_v (Doppler's CP priority)."""
    b = [0.0] * graph.num_ops
    for v in reversed(graph.topo):
        kids = graph.succs[v]
        if kids:
            b[v] = graph.comp[v] + graph.comm[v] + max(b[c] for c in kids)
        else:
            b[v] = graph.comp[v]
    return tuple(b)


def t_levels(graph: PlaceGraph) -> tuple[float, ...]:
    """t(v) = max over preds u of t(u) + comp_u + comm_u; 0 for entry ops."""
    t = [0.0] * graph.num_ops
    for v in graph.topo:
        ps = graph.preds[v]
        if ps:
            t[v] = max(t[u] + graph.comp[u] + graph.comm[u] for u in ps)
    return tuple(t)


def longest_compute_path(graph: PlaceGraph) -> float:
    """Longest path counting compute only; a bound, since co-located edges cost nothing."""
    finish = [0.0] * graph.num_ops
    for v in graph.topo:
        ps = graph.preds[v]
        finish[v] = graph.comp[v] + (max(finish[u] for u in ps) if ps else 0.0)
    return max(finish, default=0.0)


def single_device_makespan(graph: PlaceGraph) -> float:
    """On one device nothing is shipped and the device never idles, so the makespan is Σ comp."""
    return math.fsum(graph.comp)


def check_ndev(ndev: int) -> None:
    """Raise CompileError unless `ndev` is a positive int."""
    if not isinstance(ndev, int) or isinstance(ndev, bool) or ndev < 1:
        raise CompileError(f"need a positive number of devices, got {ndev!r}")


def lower_bound(graph: PlaceGraph, ndev: int) -> float:
    """max(Σ comp / ndev, longest compute-only path): no assignment on `ndev` devices beats it."""
    check_ndev(ndev)
    return max(single_device_makespan(graph) / ndev, longest_compute_path(graph))
