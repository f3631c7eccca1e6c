"""List-scheduling placers: Doppler's critical-path baseline (the Doppler paper) and HEFT.

Both return their own estimated schedule as well as the assignment; only the assignment goes
to the engine (or the simulator), which chooses its own run-time order.
"""

from __future__ import annotations

import heapq
import random
from bisect import insort
from dataclasses import dataclass

from .dag import PlaceGraph, b_levels, check_ndev


@dataclass(frozen=True)
class ListSchedule:
    """The order ops were placed in, their devices and the estimated start/end times."""

    order: tuple[int, ...]
    device: tuple[int, ...]
    start: tuple[float, ...]
    end: tuple[float, ...]

    @property
    def makespan(self) -> float:
        return max(self.end, default=0.0)


def earliest_start(
    graph: PlaceGraph, v: int, dev: int, free: float, device: list[int], end: list[float]
) -> float:
    """EST(v, d) = max(d's free time, max over preds u of end(u) + comm_u if u is elsewhere)."""
    est = free
    for u in graph.preds[v]:
        arrive = end[u] if device[u] == dev else end[u] + graph.comm[u]
        if arrive > est:
            est = arrive
    return est


def critical_path_schedule(graph: PlaceGraph, ndev: int, seed: int | None = None) -> ListSchedule:
    """Take a legal op of largest b-level (SEL*), put it on a device of smallest EST (PLC*).

    Legal = every predecessor already placed; a device is free once its last op ends (no
    insertion). With `seed=None` ties go to the smallest op id and device id; with a seed they
    are drawn uniformly from the tied sets themselves, never from all legal ops (the released
    code's bug, as the paper notes); it reports best/median CP over such tie-break seeds.
    """
    check_ndev(ndev)
    n = graph.num_ops
    b = b_levels(graph)
    rng = random.Random(seed) if seed is not None else None
    remaining = [len(p) for p in graph.preds]
    legal = [(-b[v], v) for v in range(n) if not remaining[v]]
    heapq.heapify(legal)
    device = [-1] * n
    start = [0.0] * n
    end = [0.0] * n
    free = [0.0] * ndev
    order: list[int] = []
    while legal:
        if rng is None:
            v = heapq.heappop(legal)[1]
        else:
            top = legal[0][0]
            tied = sorted(e for e in legal if e[0] == top)
            pick = tied[rng.randrange(len(tied))]
            legal.remove(pick)
            heapq.heapify(legal)
            v = pick[1]
        ests = [earliest_start(graph, v, d, free[d], device, end) for d in range(ndev)]
        best = min(ests)
        ties = [d for d in range(ndev) if ests[d] == best]
        d = ties[0] if rng is None else ties[rng.randrange(len(ties))]
        order.append(v)
        device[v] = d
        start[v] = best
        end[v] = best + graph.comp[v]
        free[d] = end[v]
        for s in graph.succs[v]:
            remaining[s] -= 1
            if not remaining[s]:
                heapq.heappush(legal, (-b[s], s))
    return ListSchedule(tuple(order), tuple(device), tuple(start), tuple(end))


def critical_path(graph: PlaceGraph, ndev: int, seed: int | None = None) -> list[int]:
    """The assignment of `critical_path_schedule`."""
    return list(critical_path_schedule(graph, ndev, seed).device)


def upward_ranks(graph: PlaceGraph) -> tuple[float, ...]:
    """HEFT's rank_u with the mean transfer cost over pairs of distinct devices.

    Links are homogeneous here, so that mean is comm_v and rank_u equals the b-level.
    """
    return b_levels(graph)


def heft_schedule(graph: PlaceGraph, ndev: int) -> ListSchedule:
    """HEFT (Topcuoglu et al. 2002): ops by decreasing upward rank, each on the device of earliest
    finish time, allowed to fill an idle gap between ops already scheduled there (insertion).

    Rank ties keep topological order, finish-time ties go to the smaller device id.
    """
    check_ndev(ndev)
    n = graph.num_ops
    rank = upward_ranks(graph)
    position = {v: i for i, v in enumerate(graph.topo)}
    order = sorted(range(n), key=lambda v: (-rank[v], position[v]))
    device = [-1] * n
    start = [0.0] * n
    end = [0.0] * n
    slots: list[list[tuple[float, float]]] = [[] for _ in range(ndev)]
    for v in order:
        best_end, best_dev, best_start = float("inf"), 0, 0.0
        for d in range(ndev):
            ready = earliest_start(graph, v, d, 0.0, device, end)
            s = _first_gap(slots[d], ready, graph.comp[v])
            if s + graph.comp[v] < best_end:
                best_end, best_dev, best_start = s + graph.comp[v], d, s
        device[v] = best_dev
        start[v] = best_start
        end[v] = best_end
        insort(slots[best_dev], (best_start, best_end))
    return ListSchedule(tuple(order), tuple(device), tuple(start), tuple(end))


def heft(graph: PlaceGraph, ndev: int) -> list[int]:
    """The assignment of `heft_schedule`."""
    return list(heft_schedule(graph, ndev).device)


def _first_gap(busy: list[tuple[float, float]], ready: float, length: float) -> float:
    """Earliest start >= ready of an interval of `length` that overlaps no busy interval."""
    t = ready
    for s, e in busy:
        if t + length <= s:
            return t
        t = max(t, e)
    return t
