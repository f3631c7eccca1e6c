"""Discrete-event simulator of a work-conserving engine, the cost oracle of placers.

Semantics: each device is a capacity-1 resource served FIFO by request time. An op requests its
device once every in-edge transfer has arrived; a transfer starts when its producer finishes and
lasts comm[producer] across devices, 0 on the same device; links never contend.

Ties. Requests made at the same instant are served in the order the simulator learned of them,
as in an event-queue (SimPy-style) engine: every event gets a sequence number when it is created;
ops without predecessors are created first, in id order; when an op finishes, its successors that
become complete are created in ascending id; events at one instant run in creation order. This
rule is what reproduces the published round-robin column (breaking ties by op id does not:
it gives 240.4 instead of 255.0 on transformer_block).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from heapq import heappop, heappush

from ..errors import CompileError
from .dag import PlaceGraph

Assignment = Sequence[int]


@dataclass(frozen=True)
class Schedule:
    """What one simulated run did: raw-unit times (divide by 1e10 for the papers' units).

    `request[v]` is when v's last input arrived; `cause[v]` is the op whose finish let v start:
    the op before it on its device when v queued, else the predecessor whose transfer arrived
    last, -1 for an op without predecessors that started at once.
    """

    makespan: float
    start: tuple[float, ...]
    end: tuple[float, ...]
    request: tuple[float, ...]
    cause: tuple[int, ...]
    assignment: tuple[int, ...]

    def critical_chain(self) -> list[int]:
        """Ops from a source to the last finisher, each started by the previous one's finish
        (a data dependency or, on one device, a queue wait); the ops that set the makespan."""
        if not self.end:
            return []
        v = max(range(len(self.end)), key=self.end.__getitem__)
        chain = [v]
        while self.cause[v] >= 0:
            v = self.cause[v]
            chain.append(v)
        chain.reverse()
        return chain


def check_assignment(
    graph: PlaceGraph, assignment: Assignment, ndev: int | None = None
) -> tuple[int, ...]:
    """The assignment as a tuple of ints; CompileError unless every op has a device in range."""
    if len(assignment) != graph.num_ops:
        raise CompileError(
            f"assignment has {len(assignment)} entries for {graph.num_ops} ops of {graph.name!r}"
        )
    bound = f"0..{ndev - 1}" if ndev is not None else "a non-negative int"
    out: list[int] = []
    for v, d in enumerate(assignment):
        try:
            i = operator.index(d)
        except TypeError:
            raise CompileError(f"op {v} is assigned to device {d!r}, expected {bound}") from None
        if i < 0 or (ndev is not None and i >= ndev):
            raise CompileError(f"op {v} is assigned to device {d!r}, expected {bound}")
        out.append(i)
    return tuple(out)


def _run(
    comp: tuple[float, ...],
    comm: tuple[float, ...],
    succs: tuple[tuple[int, ...], ...],
    indegree: list[int],
    assignment: Assignment,
    ndev: int,
    times: tuple[list[float], list[float], list[float], list[int]] | None,
) -> float:
    """The event loop. Heap entries are (time, seq * 2n + code): code v is the finish of op v,
    n + v its request; packing the creation number in front gives the documented tie order."""
    n = len(comp)
    width = 2 * n
    remaining = indegree.copy()
    ready = [0.0] * n
    busy = [False] * ndev
    pending: list[list[tuple[float, int]]] = [[] for _ in range(ndev)]
    heap: list[tuple[float, int]] = []
    seq = 0
    for v in range(n):
        if not remaining[v]:
            heap.append((0.0, seq + n + v))  # ascending keys at one time: already a heap
            seq += width
    last = 0.0
    done = 0
    while heap:
        t, key = heappop(heap)
        code = key % width
        if code >= n:
            v = code - n
            d = assignment[v]
            if busy[d]:
                heappush(pending[d], (t, key))
            else:
                busy[d] = True
                if times is not None:
                    times[0][v] = t
                heappush(heap, (t + comp[v], seq + v))
                seq += width
            continue
        v = code
        last = t
        done += 1
        d = assignment[v]
        queue = pending[d]
        if queue:
            w = heappop(queue)[1] % width - n
            if times is not None:
                times[0][w] = t
                times[3][w] = v
            heappush(heap, (t + comp[w], seq + w))
            seq += width
        else:
            busy[d] = False
        if times is not None:
            times[1][v] = t
        arrive = t + comm[v]
        for s in succs[v]:
            a = t if assignment[s] == d else arrive
            if a > ready[s]:
                ready[s] = a
                if times is not None:
                    times[3][s] = v
            elif times is not None and a == ready[s] and times[3][s] < 0:
                times[3][s] = v
            remaining[s] -= 1
            if remaining[s] == 0:
                if times is not None:
                    times[2][s] = ready[s]
                heappush(heap, (ready[s], seq + n + s))
                seq += width
    if done != n:  # unreachable for a validated PlaceGraph, kept as a guard
        raise CompileError(f"simulation finished {done} of {n} ops")
    return last


def make_simulator(graph: PlaceGraph) -> Callable[[Assignment], float]:
    """A makespan function for one graph with its tables built once; for search loops.

    It skips assignment checks: callers that build assignments themselves know they are valid.
    """
    comp, comm, succs = graph.comp, graph.comm, graph.succs
    indegree = [len(p) for p in graph.preds]

    def makespan_of(assignment: Assignment) -> float:
        ndev = max(assignment, default=0) + 1
        return _run(comp, comm, succs, indegree, assignment, ndev, None)

    return makespan_of


def simulate(graph: PlaceGraph, assignment: Assignment, ndev: int | None = None) -> Schedule:
    """Run `assignment` (a device id per op) and return the makespan with per-op times."""
    assignment = check_assignment(graph, assignment, ndev)
    n = graph.num_ops
    indegree = [len(p) for p in graph.preds]
    start, end, request, cause = [0.0] * n, [0.0] * n, [0.0] * n, [-1] * n
    width = max(assignment, default=0) + 1
    times = (start, end, request, cause)
    span = _run(graph.comp, graph.comm, graph.succs, indegree, assignment, width, times)
    return Schedule(span, tuple(start), tuple(end), tuple(request), tuple(cause), assignment)


def makespan(graph: PlaceGraph, assignment: Assignment, ndev: int | None = None) -> float:
    """Just the makespan of `assignment`, in raw cost units."""
    return make_simulator(graph)(check_assignment(graph, assignment, ndev))
