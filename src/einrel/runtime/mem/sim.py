"""A simulated clock for the memory engine: the same ready queues, priorities, resources, group
locks and memory books as `MemEngine`, driven by modelled durations instead of threads.

Kernels take what the cost model says, host transfers `nbytes / bandwidth` stretched by the
engine's jitter (an evicted input block costs nothing: its host copy is the caller's array),
markers nothing. It predicts how a priority or the fixed order fares on a memory graph without
noise from the machine, and it checks that a schedule can always finish.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from heapq import heappop, heappush

from ...errors import ExecutionError
from ...memory import MemGraph
from ...taskgraph.cost import CostModel
from .engine import MemEngine, _Run
from .schedule import MemEvent, node_seconds


@dataclass
class MemSimResult:
    makespan_s: float
    peak_bytes: dict[int, int]
    busy_s: dict[int, float]
    bytes_offloaded: int
    events: list[MemEvent] = field(default_factory=list)
    order: list[int] = field(default_factory=list)


def simulate_memory(
    mg: MemGraph,
    priority: str | Sequence[float] = "given",
    ndev: int | None = None,
    workers_per_device: int = 1,
    transfer_bandwidth: float | str | None = None,
    jitter: float = 0.0,
    seed: int | None = None,
    cost_model: CostModel | None = None,
    max_running: int | None = None,
    durations: Callable[[int], float] | None = None,
) -> MemSimResult:
    """Simulate one run of `mg`; `durations(i)` overrides the modelled time of node i."""
    eng = MemEngine(
        ndev or mg.ndev,
        priority=priority,
        workers_per_device=workers_per_device,
        transfer_bandwidth=transfer_bandwidth,
        jitter=jitter,
        seed=seed,
        cost_model=cost_model or CostModel.default(),
        max_running=max_running if max_running is not None else 1 << 30,
    )
    sched = eng.schedule(mg)
    run = _Run(eng, sched, {}, {}, record=True)
    n = len(mg.nodes)
    model = node_seconds(mg, eng.cost_model, None)
    tasks = mg.taskgraph.tasks

    def seconds(i: int, r: int) -> float:
        if durations is not None:
            return float(durations(i))
        link = run.links.get(r)
        if i >= n:
            f = sched.fetch[i - n]
            return link.seconds(tasks[f.block].nbytes) if link else 0.0
        node = mg.nodes[i]
        if link is not None and eng.bandwidth is not None:
            if node.kind == "evict" and tasks[node.block].kind == "input":
                return 0.0
            return link.seconds(tasks[node.block].nbytes)
        return model[i]

    heap: list[tuple[float, int, int, int]] = []
    seq = 0

    def launch(now: float) -> None:
        nonlocal seq
        for i, slot in run.dispatch(now):
            seq += 1
            heappush(heap, (now + seconds(i, run.slot_res[slot]), seq, i, slot))

    for i in range(sched.size):
        if sched.deps[i] == 0:
            run.ready(i, 0.0)
    launch(0.0)
    now = 0.0
    while heap:
        now = heap[0][0]
        while heap and heap[0][0] == now:
            _, _, i, slot = heappop(heap)
            run.assigned[slot] = -1
            run.complete(i, slot, now)
        launch(now)
    if run.done != sched.size:
        raise ExecutionError(run._stall_message())
    return MemSimResult(
        makespan_s=now,
        peak_bytes=dict(enumerate(run.peak)),
        busy_s=dict(enumerate(run.busy)),
        bytes_offloaded=run.offloaded,
        events=run.events or [],
        order=run.order,
    )
