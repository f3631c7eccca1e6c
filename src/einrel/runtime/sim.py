"""The simulated engine: the scheduling core driven by a discrete-event clock.

Task durations come from the cost model (or a `durations` function). Same priorities, the same
resources as the local engine (compute workers per device, one inbound transfer channel per
device for moves, optional global cap on running compute tasks) and the same memory accounting,
so placement search and policy training see what the real engine would do, minus noise.

All completions at one instant are processed (in task-id order) before anything is launched at
that instant, matching the core's "frees before launches" rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from heapq import heappop, heappush

from ..errors import ExecutionError
from ..taskgraph.cost import CostModel
from ..taskgraph.ir import Task, TaskGraph
from .core import Core, Event, Plan, Priority, make_plan


@dataclass
class SimResult:
    """One simulated run: makespan, per-device peak live bytes and busy compute seconds."""

    makespan_s: float
    peak_bytes: dict[int, int]
    busy_s: dict[int, float]
    bytes_moved: int
    events: list[Event] = field(default_factory=list)


class SimEngine:
    """Predicts a run of a placed task graph on `ndev` devices under a cost model."""

    def __init__(
        self,
        ndev: int,
        cost_model: CostModel | None = None,
        workers_per_device: int = 1,
        priority: Priority = "critical-path",
        max_running: int | None = None,
        durations: Callable[[Task], float] | None = None,
    ) -> None:
        if ndev < 1 or workers_per_device < 1:
            raise ValueError(
                f"need ndev >= 1 and workers_per_device >= 1, got {ndev}, {workers_per_device}"
            )
        self.ndev = ndev
        self.cost_model = cost_model if cost_model is not None else CostModel.load_or_default()
        self.workers_per_device = workers_per_device
        self.priority = priority
        self.max_running = max_running
        self.durations = durations if durations is not None else self.cost_model.task_seconds

    def plan(self, tg: TaskGraph) -> Plan:
        return make_plan(tg, self.ndev, self.priority, self.durations)

    def simulate(self, tg: TaskGraph, trace: bool = True) -> SimResult:
        plan = self.plan(tg)
        dur = [float(self.durations(t)) for t in tg.tasks]
        bad = [t for t, d in enumerate(dur) if not d >= 0.0]
        if bad:
            raise ExecutionError(f"negative or NaN durations for tasks {bad[:5]}")
        core = Core(plan, self.workers_per_device, self.max_running, record=trace)
        heap: list[tuple[float, int]] = []
        for t, _ in core.dispatch(0.0):
            heappush(heap, (dur[t], t))
        now = 0.0
        while heap:
            now = heap[0][0]
            while heap and heap[0][0] == now:
                core.finish(heappop(heap)[1], now)
            for t, _ in core.dispatch(now):
                heappush(heap, (now + dur[t], t))
        if not core.finished:  # pragma: no cover - a placed task graph is a DAG
            raise ExecutionError(f"simulation stalled after {core.done} of {plan.ntasks} tasks")
        return SimResult(
            makespan_s=now,
            peak_bytes=dict(enumerate(core.peak)),
            busy_s=dict(enumerate(core.busy)),
            bytes_moved=core.bytes_moved,
            events=core.events or [],
        )
